// Ingest first: the background workers (scoring, hashing) wait while images are arriving,
// because every C-STORE sender waits on ingest and their work can wait a moment. The wait
// is bounded so that a steady stream cannot starve them.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>

namespace pxs {

// Waits while busy() says images are arriving, at most max_ms (no wait when max_ms <= 0
// or busy is empty). Returns false as soon as `stopping` (guarded by mu, signalled on cv)
// is true.
inline bool WaitWhileIngestBusy(const std::function<bool()>& busy, int max_ms, std::mutex& mu,
                                std::condition_variable& cv, const bool& stopping) {
  if (max_ms <= 0 || !busy) return true;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(max_ms);
  while (std::chrono::steady_clock::now() < deadline && busy()) {
    std::unique_lock<std::mutex> lock(mu);
    if (cv.wait_for(lock, std::chrono::milliseconds(5), [&] { return stopping; })) return false;
  }
  std::lock_guard<std::mutex> lock(mu);
  return !stopping;
}

}  // namespace pxs
