// pxs::metrics: the node's process counters for /metrics (http/ renders them in the
// Prometheus text format). Lock-free relaxed atomics, so that the SCP, the scoring
// worker and the sender pay one atomic add per event; the values live for the process.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>

namespace pxs::metrics {

// Cumulative histogram with fixed bounds in seconds (Prometheus "le" buckets).
class Histogram {
 public:
  static constexpr std::array<double, 15> kBounds = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                                    0.5,   1,      2.5,   10,   30,    60,   300};
  void Observe(double seconds) {
    size_t i = 0;
    while (i < kBounds.size() && seconds > kBounds[i]) ++i;
    buckets_[i].fetch_add(1, std::memory_order_relaxed);
    sum_us_.fetch_add(static_cast<uint64_t>(seconds * 1e6), std::memory_order_relaxed);
  }
  // The time from a Unix-ms timestamp (e.g. an image's receipt) until now; none when unset.
  void ObserveSinceUnixMs(int64_t unix_ms) {
    if (unix_ms <= 0) return;
    const auto now = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::chrono::system_clock::now().time_since_epoch()).count();
    Observe(static_cast<double>(now > unix_ms ? now - unix_ms : 0) / 1000);
  }
  // Observations in bucket i only (i == kBounds.size(): above the last bound).
  uint64_t bucket(size_t i) const { return buckets_[i].load(std::memory_order_relaxed); }
  double sum_seconds() const { return static_cast<double>(sum_us_.load(std::memory_order_relaxed)) / 1e6; }

 private:
  std::array<std::atomic<uint64_t>, kBounds.size() + 1> buckets_{};
  std::atomic<uint64_t> sum_us_{0};
};

// C-STORE response statuses counted separately; anything else is "other".
enum class StoreStatus { kSuccess, kOutOfResources /* A700 */, kDataSetMismatch /* A900 */, kCannotUnderstand /* C000 */, kOther };
inline constexpr int kStoreStatusCount = 5;

struct Registry {
  std::atomic<uint64_t> associations{0};
  std::array<std::atomic<uint64_t>, kStoreStatusCount> instances_by_status{};
  std::atomic<uint64_t> jobs_scored{0};
  std::atomic<uint64_t> jobs_failed{0};
  std::atomic<uint64_t> reports_sent{0};
  std::atomic<uint64_t> reports_failed{0};   // deliveries failed for good
  std::atomic<uint64_t> report_retries{0};   // failed attempts rescheduled
  Histogram cstore_ack_seconds;             // C-STORE request received -> response status known
  Histogram scoring_seconds;                // one observation per scored batch
  Histogram image_to_sr_seconds;            // image received -> its SR recorded in the outbox

  // One C-STORE answered with this DIMSE status after `seconds`.
  void ObserveStore(uint16_t dimse_status, double seconds) {
    StoreStatus s = dimse_status == 0x0000   ? StoreStatus::kSuccess
                    : dimse_status == 0xA700 ? StoreStatus::kOutOfResources
                    : dimse_status == 0xA900 ? StoreStatus::kDataSetMismatch
                    : dimse_status == 0xC000 ? StoreStatus::kCannotUnderstand
                                             : StoreStatus::kOther;
    instances_by_status[static_cast<int>(s)].fetch_add(1, std::memory_order_relaxed);
    cstore_ack_seconds.Observe(seconds);
  }
  // A batch of `jobs` scores recorded, `seconds` after the batch started.
  void ObserveScoredBatch(size_t jobs, double seconds) {
    jobs_scored.fetch_add(jobs, std::memory_order_relaxed);
    scoring_seconds.Observe(seconds);
  }
  static void Add(std::atomic<uint64_t>& counter) { counter.fetch_add(1, std::memory_order_relaxed); }
};

// The process's registry.
inline Registry& Global() {
  static Registry registry;
  return registry;
}

}  // namespace pxs::metrics
