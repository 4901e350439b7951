#include "pxs/pipeline/scoring_worker.h"

#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <future>
#include <mutex>
#include <thread>

#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>
#include <spdlog/spdlog.h>

#include "worker_signal.h"
#include "pxs/imaging/dicom_decoder.h"
#include "pxs/scoring/scorer.h"
#include "pxs/common/metrics.h"
#include "pxs/common/thread_name.h"

namespace pxs {
namespace {

using Clock = std::chrono::steady_clock;

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

double MsSince(Clock::time_point t) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}

// One job's way through decode and preprocessing.
struct Prepared {
  StatusOr<scoring::PreprocessedImage> image = Status::Internal("not prepared");
  double decode_ms = 0;
};

}  // namespace

class ScoringWorker::Impl {
 public:
  Impl(const ScoringWorkerOptions& options, Database* db, scoring::Scorer* scorer, ScoredCallback on_scored)
      : options_(options), db_(db), scorer_(scorer), on_scored_(std::move(on_scored)),
        decode_pool_(std::max(1, options.decode_threads)) {}

  ~Impl() {
    Stop();
    decode_pool_.join();
  }

  Status Start() {
    auto requeued = db_->RequeueInterruptedJobs();
    if (!requeued.ok()) return requeued.status();
    if (*requeued > 0) spdlog::info("scoring: {} job(s) interrupted by a stop were queued again", *requeued);
    thread_ = std::thread([this] {
      NameThisThread("pxs-score");
      Run();
    });
    return Status::Ok();
  }

  void Stop() {
    signal_.RequestStop();
    if (thread_.joinable()) thread_.join();
  }

  void Notify() { signal_.Notify(); }

 private:
  // Scoring is background work; C-STORE senders wait on ingest. The worker and its decode
  // threads (and the inference threads they start, which inherit it) run at nice +10,
  // about 1/10 of an ingest thread's CPU share when both want a core; on Linux nice is
  // per thread. (SCHED_IDLE was tried: no measurable gain for ingest, twice the report
  // latency. What does help ingest is waiting while images arrive: YieldToIngest().)
  static void LowerThreadPriority() { setpriority(PRIO_PROCESS, static_cast<id_t>(gettid()), 10); }

  void Run() {
    LowerThreadPriority();
    while (true) {
      if (!signal_.WaitFor(std::chrono::milliseconds(options_.poll_interval_ms))) return;
      // Drain everything queued, batch by batch, before sleeping again. One batch is
      // "in flight": while its inference runs, the next batch is already being decoded
      // and preprocessed on the decode pool.
      std::unique_ptr<Batch> in_flight;
      while (true) {
        if (signal_.Stopping()) break;
        auto queued = db_->CountJobs(JobState::kQueued);
        if (!queued.ok()) {
          spdlog::error("scoring: cannot read the queue: {}", queued.status().ToString());
          break;
        }
        if (*queued == 0) break;
        if (IngestBusy()) {
          // Finish what is in flight first, so its reports are not held up by the wait.
          if (in_flight) FinishBatch(*in_flight);
          in_flight.reset();
          if (!YieldToIngest()) break;
        }
        // Dynamic batching: a partial batch waits a little for more jobs to arrive
        // (not while another batch is in flight: that one is waiting for us).
        if (!in_flight && *queued < options_.max_batch && options_.max_wait_ms > 0 && !WaitToFillBatch()) break;
        auto jobs = db_->ClaimJobs(options_.max_batch);
        if (!jobs.ok()) {
          spdlog::error("scoring: cannot claim jobs: {}", jobs.status().ToString());
          break;
        }
        if (jobs->empty()) break;
        std::unique_ptr<Batch> next = StartBatch(*jobs);
        if (in_flight) FinishBatch(*in_flight);
        in_flight = std::move(next);
      }
      // What was claimed is finished even when stopping (its jobs are in state scoring).
      if (in_flight) FinishBatch(*in_flight);
      if (signal_.Stopping()) return;
    }
  }

  bool IngestBusy() const {
    return options_.yield_to_ingest_ms > 0 && options_.ingest_busy && options_.ingest_busy();
  }

  bool YieldToIngest() { return signal_.WaitWhileIngestBusy(options_.ingest_busy, options_.yield_to_ingest_ms); }

  // Waits up to max_wait_ms for a full batch; false when stopping.
  bool WaitToFillBatch() {
    auto deadline = Clock::now() + std::chrono::milliseconds(options_.max_wait_ms);
    while (Clock::now() < deadline) {
      if (!signal_.WaitUntil(deadline)) return false;
      auto now_queued = db_->CountJobs(JobState::kQueued);
      if (now_queued.ok() && *now_queued >= options_.max_batch) break;
    }
    return true;
  }

  // A claimed batch whose decoding runs on the pool. Heap-allocated: the decode tasks
  // hold pointers into it.
  struct Batch {
    Clock::time_point start;
    std::vector<Job> jobs;
    std::vector<Prepared> prepared;
    std::vector<std::future<void>> decoded;
  };

  std::unique_ptr<Batch> StartBatch(const std::vector<Job>& claimed) {
    auto batch = std::make_unique<Batch>();
    batch->start = Clock::now();
    // A job claimed more often than allowed was interrupted by crashes each time (an
    // image that takes the process down): it is failed here, never tried again.
    for (const Job& job : claimed) {
      if (job.attempts > options_.max_attempts) {
        LogResult(db_->FailJobAttempt(job.id, "scoring was interrupted " + std::to_string(job.attempts - 1) +
                                                  " times (the node stopped while scoring it)",
                                      options_.max_attempts),
                  job, "failed: interrupted too often");
      } else {
        batch->jobs.push_back(job);
      }
    }
    // Decode and preprocess in parallel on the pool.
    batch->prepared.resize(batch->jobs.size());
    for (size_t i = 0; i < batch->jobs.size(); ++i) {
      auto task = std::make_shared<std::packaged_task<void()>>([this, b = batch.get(), i] {
        LowerThreadPriority();
        auto t0 = Clock::now();
        std::string path = (std::filesystem::path(options_.data_dir) / b->jobs[i].file_path).string();
        auto decoded = imaging::DecodeDicomFile(path);
        if (decoded.ok()) {
          b->prepared[i].image = scorer_->Preprocess(*decoded);
        } else {
          b->prepared[i].image = decoded.status();
        }
        b->prepared[i].decode_ms = MsSince(t0);
      });
      batch->decoded.push_back(task->get_future());
      boost::asio::post(decode_pool_, [task] {
        NameThisThread("pxs-decode");  // asio gives its pool threads no names
        (*task)();
      });
    }
    return batch;
  }

  void FinishBatch(Batch& batch) {
    for (auto& d : batch.decoded) d.wait();
    const std::vector<Job>& jobs = batch.jobs;
    std::vector<Prepared>& prepared = batch.prepared;
    auto batch_start = batch.start;
    if (jobs.empty()) return;

    std::vector<scoring::PreprocessedImage> inputs;
    std::vector<size_t> input_job;
    for (size_t i = 0; i < jobs.size(); ++i) {
      if (prepared[i].image.ok()) {
        inputs.push_back(std::move(*prepared[i].image));
        input_job.push_back(i);
        continue;
      }
      const Status& st = prepared[i].image.status();
      // Bad pixel data does not get better by retrying: fail (or skip) the job now.
      if (st.code() == Status::Code::kUnsupported) {
        LogResult(db_->SkipJob(jobs[i].id, st.message()), jobs[i], "skipped: " + st.message());
      } else if (st.code() == Status::Code::kIoError) {
        LogResult(db_->FailJobAttempt(jobs[i].id, st.ToString(), options_.max_attempts), jobs[i],
                  "attempt failed: " + st.ToString());
      } else {
        LogResult(db_->FailJobAttempt(jobs[i].id, st.ToString(), jobs[i].attempts), jobs[i],
                  "failed: " + st.ToString());
      }
    }
    if (inputs.empty()) return;

    auto infer_start = Clock::now();
    std::vector<StatusOr<scoring::ScoreResult>> results = scorer_->ScoreBatch(inputs);
    double infer_ms = MsSince(infer_start) / static_cast<double>(inputs.size());

    std::vector<ScoreRecord> records;
    std::vector<const Job*> scored_jobs;
    const scoring::ModelInfo& model = scorer_->model();
    int64_t now = NowMs();
    for (size_t k = 0; k < results.size(); ++k) {
      const Job& job = jobs[input_job[k]];
      if (!results[k].ok()) {
        LogResult(db_->FailJobAttempt(job.id, results[k].status().ToString(), options_.max_attempts), job,
                  "attempt failed: " + results[k].status().ToString());
        continue;
      }
      ScoreRecord rec;
      rec.job_id = job.id;
      rec.pxs = results[k]->pxs;
      rec.raw_distance = results[k]->pxs;
      rec.calibrated = results[k]->calibrated;
      if (model.calibration) rec.calibrated_scale = model.calibration->scale;
      rec.embedding = std::move(results[k]->embedding);
      rec.model_name = model.name;
      rec.model_version = model.version;
      rec.queue_ms = std::max<double>(0, static_cast<double>(now - job.received_at_ms) - MsSince(batch_start));
      rec.decode_ms = prepared[input_job[k]].decode_ms;
      rec.inference_ms = infer_ms;
      rec.scored_at_ms = now;
      records.push_back(std::move(rec));
      scored_jobs.push_back(&job);
    }
    if (records.empty()) return;
    Status saved = db_->CompleteJobs(records);
    if (!saved.ok()) {
      // The jobs stay in state scoring and are retried after the next start.
      spdlog::error("scoring: cannot record {} score(s): {}", records.size(), saved.ToString());
      return;
    }
    metrics::Global().ObserveScoredBatch(records.size(), MsSince(batch_start) / 1000);
    for (size_t k = 0; k < records.size(); ++k) {
      spdlog::info("scored {} pxs={:.3f} decode={:.0f}ms inference={:.0f}ms batch={}", scored_jobs[k]->sop_instance_uid,
                   records[k].pxs, records[k].decode_ms, records[k].inference_ms, records.size());
      if (on_scored_) on_scored_(*scored_jobs[k], records[k]);
    }
  }

  void LogResult(const Status& st, const Job& job, const std::string& what) {
    if (what.rfind("skipped", 0) != 0) metrics::Registry::Add(metrics::Global().jobs_failed);  // a failed attempt
    if (!st.ok()) {
      spdlog::error("scoring: job {} ({}): cannot record '{}': {}", job.id, job.sop_instance_uid, what, st.ToString());
    } else {
      spdlog::warn("scoring: job {} ({}) {}", job.id, job.sop_instance_uid, what);
    }
  }

  ScoringWorkerOptions options_;
  Database* db_;
  scoring::Scorer* scorer_;
  ScoredCallback on_scored_;
  boost::asio::thread_pool decode_pool_;
  std::thread thread_;
  WorkerSignal signal_;
};

ScoringWorker::ScoringWorker(const ScoringWorkerOptions& options, Database* db, scoring::Scorer* scorer,
                             ScoredCallback on_scored)
    : impl_(std::make_unique<Impl>(options, db, scorer, std::move(on_scored))) {}
ScoringWorker::~ScoringWorker() = default;
Status ScoringWorker::Start() { return impl_->Start(); }
void ScoringWorker::Stop() { impl_->Stop(); }
void ScoringWorker::Notify() { impl_->Notify(); }

}  // namespace pxs
