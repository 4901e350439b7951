// pxs::sender, part 2: SenderWorker owns the report outbox loop. It takes due reports
// from the database (Database::DueReports), resolves each destination, sends them
// grouped by receiver over one association each (StoreFiles), and records the outcome
// (MarkReportSent / MarkReportAttemptFailed with exponential backoff). Because the
// outbox is in the database, a restart loses nothing and re-sends nothing confirmed.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "pxs/common/status.h"
#include "pxs/sender/dicom_sender.h"

namespace pxs {

class Database;

// A receiver of reports, as [[destinations]] describes it (the app maps the config).
struct ReportDestination {
  std::string name;      // what [reports] send_to names
  std::string ae_title;  // called AE title
  std::string host;
  uint16_t port = 104;
  bool tls = false;      // DICOM TLS, with SenderWorkerOptions::store.tls
};

struct SenderWorkerOptions {
  std::string data_dir;                   // OutgoingReport::file_path is relative to it
  std::vector<ReportDestination> destinations;  // [[destinations]]
  StoreOptions store;                     // calling AE, timeouts, PDU size
  int max_attempts = 8;                   // [reports] max_attempts: then failed
  int retry_initial_s = 5;                // first retry delay; doubles each attempt
  int retry_max_s = 600;                  // cap of the delay
  int batch_size = 64;                    // reports taken from the outbox per pass
  int idle_poll_ms = 1000;                // how often the loop looks when not woken
  // The clock (Unix epoch ms); tests may replace it.
  std::function<int64_t()> now_ms;
};

// Where a report goes: "caller:<AE>" is looked up by AE title among the destinations,
// anything else by destination name. NotFound names what is unknown.
StatusOr<ReportDestination> ResolveDestination(const std::string& destination,
                                         const std::vector<ReportDestination>& destinations);

// Delay before the next attempt after `attempts` failed ones (1, 2, ...):
// min(initial * 2^(attempts-1), max), in milliseconds.
int64_t RetryDelayMs(int attempts, int initial_s, int max_s);

class SenderWorker {
 public:
  // db must outlive the worker.
  SenderWorker(Database* db, SenderWorkerOptions options);
  ~SenderWorker();  // Stop()
  SenderWorker(const SenderWorker&) = delete;
  SenderWorker& operator=(const SenderWorker&) = delete;

  // Starts the loop thread. Idempotent.
  void Start();
  // Asks the loop to finish the association in progress and return; joins it.
  void Stop();
  // A new report was recorded: send now instead of at the next poll.
  void Wake();
  // SIGHUP: a new [[destinations]] list for the next pass (thread-safe).
  void SetDestinations(std::vector<ReportDestination> destinations);

  // One pass over what is due now: returns how many reports were confirmed sent.
  // Start() calls it in a loop; tests and `pxsctl` may call it directly (not while
  // the loop runs).
  StatusOr<int> SendDueReports();

 private:
  void Loop();
  int64_t Now() const;

  Database* db_;
  SenderWorkerOptions options_;
  std::thread thread_;
  std::mutex mutex_;
  std::condition_variable wake_cv_;
  bool woken_ = false;
  bool stopping_ = false;
  std::atomic<bool> running_{false};
};

}  // namespace pxs
