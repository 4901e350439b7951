// WorkerSignal: the stop/wake state each background worker of the pipeline (scoring,
// hashing) needs. Other threads call RequestStop() and Notify(); the worker's own thread
// waits. It also holds the "ingest first" wait: every C-STORE sender waits on ingest,
// while scoring and hashing can wait a moment, so a worker pauses while images arrive,
// for a bounded time so that a steady stream cannot starve it.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>

namespace pxs {

class WorkerSignal {
 public:
  using Clock = std::chrono::steady_clock;

  void RequestStop() { Set(&stopping_); }
  void Notify() { Set(&notified_); }

  bool Stopping() {
    std::lock_guard<std::mutex> lock(mu_);
    return stopping_;
  }

  // Waits until notified, stopping or the deadline, and clears the notification.
  // False when stopping.
  bool WaitUntil(Clock::time_point deadline) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_until(lock, deadline, [&] { return stopping_ || notified_; });
    notified_ = false;
    return !stopping_;
  }
  bool WaitFor(std::chrono::milliseconds timeout) { return WaitUntil(Clock::now() + timeout); }

  // Waits while busy() says images are arriving, at most max_ms (no wait when max_ms <= 0
  // or busy is empty). False as soon as a stop is requested.
  bool WaitWhileIngestBusy(const std::function<bool()>& busy, int max_ms) {
    if (max_ms > 0 && busy) {
      const auto deadline = Clock::now() + std::chrono::milliseconds(max_ms);
      while (Clock::now() < deadline && busy()) {
        std::unique_lock<std::mutex> lock(mu_);
        if (cv_.wait_for(lock, std::chrono::milliseconds(5), [&] { return stopping_; })) return false;
      }
    }
    return !Stopping();
  }

 private:
  void Set(bool* flag) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      *flag = true;
    }
    cv_.notify_all();
  }

  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  bool notified_ = false;
};

}  // namespace pxs
