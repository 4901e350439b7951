#include "pxs/sender/sender_worker.h"

#include "pxs/common/metrics.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <map>
#include <tuple>

#include "pxs/storage/database.h"
#include "pxs/common/thread_name.h"

namespace pxs {
namespace {

constexpr const char* kCallerPrefix = "caller:";

int64_t SystemNowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

StatusOr<ReportDestination> ResolveDestination(const std::string& destination,
                                         const std::vector<ReportDestination>& destinations) {
  if (destination.rfind(kCallerPrefix, 0) == 0) {
    const std::string ae = destination.substr(std::string(kCallerPrefix).size());
    for (const auto& d : destinations) {
      if (d.ae_title == ae) return d;
    }
    return Status::NotFound("unknown caller AE '" + ae +
                            "': no [[destinations]] entry has this ae_title, so its host/port are unknown");
  }
  for (const auto& d : destinations) {
    if (d.name == destination) return d;
  }
  return Status::NotFound("unknown destination '" + destination + "': not in [[destinations]]");
}

int64_t RetryDelayMs(int attempts, int initial_s, int max_s) {
  const int64_t cap = static_cast<int64_t>(std::max(max_s, 0)) * 1000;
  int64_t delay = static_cast<int64_t>(std::max(initial_s, 0)) * 1000;
  for (int i = 1; i < attempts && delay < cap; ++i) delay *= 2;
  return std::min(delay, cap);
}

SenderWorker::SenderWorker(Database* db, SenderWorkerOptions options)
    : db_(db), options_(std::move(options)) {}

SenderWorker::~SenderWorker() { Stop(); }

int64_t SenderWorker::Now() const { return options_.now_ms ? options_.now_ms() : SystemNowMs(); }

void SenderWorker::Start() {
  if (running_.exchange(true)) return;
  {
    std::lock_guard lock(mutex_);
    stopping_ = false;
  }
  thread_ = std::thread([this] {
    NameThisThread("pxs-send");
    Loop();
  });
}

void SenderWorker::Stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  running_ = false;
}

void SenderWorker::Wake() {
  {
    std::lock_guard lock(mutex_);
    woken_ = true;
  }
  wake_cv_.notify_all();
}

void SenderWorker::Loop() {
  while (true) {
    {
      std::lock_guard lock(mutex_);
      if (stopping_) return;
      woken_ = false;
    }
    StatusOr<int> sent = SendDueReports();
    if (!sent.ok()) spdlog::error("sender: outbox pass failed: {}", sent.status().ToString());
    std::unique_lock lock(mutex_);
    // A full batch may mean more is due: go round again at once.
    if (sent.ok() && *sent >= options_.batch_size) continue;
    wake_cv_.wait_for(lock, std::chrono::milliseconds(options_.idle_poll_ms),
                      [this] { return stopping_ || woken_; });
  }
}

StatusOr<int> SenderWorker::SendDueReports() {
  StatusOr<std::vector<OutgoingReport>> due = db_->DueReports(Now(), options_.batch_size);
  if (!due.ok()) return due.status();

  // Reports grouped per receiver, so each receiver gets one association for all of them.
  using ReceiverKey = std::tuple<std::string, uint16_t, std::string, bool>;  // host, port, AE, TLS
  std::map<ReceiverKey, std::vector<const OutgoingReport*>> by_receiver;
  std::map<ReceiverKey, std::string> receiver_names;

  auto record_failure = [&](const OutgoingReport& r, const std::string& error, bool force_final) {
    const int attempts = r.attempts + 1;
    const bool final = force_final || attempts >= options_.max_attempts;
    const int64_t next = Now() + RetryDelayMs(attempts, options_.retry_initial_s, options_.retry_max_s);
    Status s = db_->MarkReportAttemptFailed(r.id, error, next, final);
    metrics::Registry::Add(final ? metrics::Global().reports_failed : metrics::Global().report_retries);
    if (!s.ok()) spdlog::error("sender: report {}: cannot record failed attempt: {}", r.id, s.ToString());
    if (final) {
      spdlog::warn("sender: report {} (SR {}) to '{}' failed for good after {} attempt(s): {}", r.id,
                   r.sr_sop_instance_uid, r.destination, attempts, error);
    }
  };

  std::vector<ReportDestination> destinations;
  {
    std::lock_guard lock(mutex_);  // SetDestinations() may swap the list (SIGHUP)
    destinations = options_.destinations;
  }
  for (const auto& r : *due) {
    StatusOr<ReportDestination> dest = ResolveDestination(r.destination, destinations);
    if (!dest.ok()) {
      // Retrying cannot help until the config changes; keep the SR, mark it failed so
      // it shows in `pxsctl failures` and can be retried after the fix.
      spdlog::warn("sender: report {} (SR {}): {}", r.id, r.sr_sop_instance_uid, dest.status().message());
      record_failure(r, dest.status().message(), /*force_final=*/true);
      continue;
    }
    ReceiverKey key{dest->host, dest->port, dest->ae_title, dest->tls};
    by_receiver[key].push_back(&r);
    receiver_names[key] = dest->name;
  }

  int sent = 0;
  for (const auto& [key, reports] : by_receiver) {
    {
      std::lock_guard lock(mutex_);
      if (stopping_ && running_) break;  // shutting down: the rest stays due in the outbox
    }
    const auto& [host, port, ae, tls] = key;
    std::vector<std::string> files;
    for (const auto* r : reports) {
      std::filesystem::path p(r->file_path);
      files.push_back(p.is_absolute() ? p.string() : (std::filesystem::path(options_.data_dir) / p).string());
    }
    // Reports are recorded without waiting for the disk; before any of them can reach a
    // receiver, make them (and their scores) durable, so a power cut cannot lose an SR
    // the receiver already has.
    std::vector<int64_t> delivery_ids;
    for (const auto* r : reports) delivery_ids.push_back(r->id);
    if (Status durable = db_->MarkDeliveriesStarting(delivery_ids); !durable.ok()) {
      spdlog::error("sender: cannot record the start of {} delivery(ies); not sending now: {}", reports.size(),
                    durable.ToString());
      continue;
    }
    const auto started = std::chrono::steady_clock::now();
    std::vector<StoreFileResult> results = StoreFiles(StoreTarget{host, port, ae, tls}, files, options_.store);
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                        std::chrono::steady_clock::now() - started).count();
    int ok_here = 0;
    std::string first_error;
    for (size_t i = 0; i < reports.size(); ++i) {
      const OutgoingReport& r = *reports[i];
      const StoreFileResult& res = results[i];
      if (res.ok) {
        Status s = db_->MarkReportSent(r.id);
        metrics::Registry::Add(metrics::Global().reports_sent);
        if (!s.ok()) spdlog::error("sender: report {}: sent but cannot record it: {}", r.id, s.ToString());
        ++ok_here;
        continue;
      }
      if (first_error.empty()) first_error = res.error;
      record_failure(r, res.error, /*force_final=*/false);
    }
    sent += ok_here;
    const std::string line = fmt::format("sender: association {}@{}:{}{} ('{}'): {}/{} SR(s) stored in {} ms",
                                         ae, host, port, tls ? " (TLS)" : "", receiver_names[key], ok_here,
                                         reports.size(), ms);
    if (ok_here == static_cast<int>(reports.size())) spdlog::info("{}", line);
    else spdlog::warn("{}; first error: {}", line, first_error);
  }
  return sent;
}

void SenderWorker::SetDestinations(std::vector<ReportDestination> destinations) {
  std::lock_guard lock(mutex_);
  options_.destinations = std::move(destinations);
}

}  // namespace pxs
