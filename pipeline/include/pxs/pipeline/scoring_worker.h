// pxs::ScoringWorker drains the durable job queue that the SCP fills: it forms batches
// dynamically (up to max_batch images with every queued job of the loaded models for
// them, or whatever is queued after waiting at most max_wait_ms for more), decodes each
// image once and preprocesses it once per distinct preprocessing on a small thread pool,
// scores each model's jobs as one batch on its own thread (never on an association
// thread), records the scores in one transaction per batch and hands each scored job to
// the report maker.
// Bad input fails or skips its own job with a reason; it never stops the worker.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "pxs/common/status.h"
#include "pxs/storage/database.h"

namespace pxs {

class ModelRegistry;

struct ScoringWorkerOptions {
  std::string data_dir;
  int max_batch = 8;
  int max_wait_ms = 50;
  int max_attempts = 3;
  int decode_threads = 2;
  int poll_interval_ms = 1000;  // safety net: look at the queue even without a Notify()
  // Ingest first: while ingest_busy() says images are arriving, a batch waits up to
  // yield_to_ingest_ms before it starts (0 or no callback: never waits).
  std::function<bool()> ingest_busy;
  int yield_to_ingest_ms = 0;
};

// Called on the worker thread for each job whose score was recorded.
using ScoredCallback = std::function<void(const Job& job, const ScoreRecord& score)>;

class ScoringWorker {
 public:
  // models: the loaded models (several per node, swapped on SIGHUP); must outlive the worker.
  ScoringWorker(const ScoringWorkerOptions& options, Database* db, const ModelRegistry* models,
                ScoredCallback on_scored);
  ~ScoringWorker();  // Stop()s
  ScoringWorker(const ScoringWorker&) = delete;
  ScoringWorker& operator=(const ScoringWorker&) = delete;

  // Requeues jobs a crash left in state scoring, then starts the worker thread.
  Status Start();
  // Finishes the batch in flight, then stops. Jobs not started stay queued.
  void Stop();
  // New jobs were queued: look now rather than at the next poll.
  void Notify();

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace pxs
