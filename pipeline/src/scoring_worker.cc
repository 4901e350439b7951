#include "pxs/pipeline/scoring_worker.h"

#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <future>
#include <map>
#include <mutex>
#include <thread>

#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>
#include <spdlog/spdlog.h>

#include "worker_signal.h"
#include "pxs/imaging/dicom_decoder.h"
#include "pxs/pipeline/model_registry.h"
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

// One image of a batch: decoded once, preprocessed once per distinct preprocessing of
// the models that score it.
struct PreparedImage {
  std::string file_path;
  std::vector<size_t> jobs;  // indexes into Batch::jobs
  std::map<std::string, StatusOr<scoring::PreprocessedImage>> by_preprocessing;
  Status decode_status;
  double decode_ms = 0;
};

}  // namespace

class ScoringWorker::Impl {
 public:
  Impl(const ScoringWorkerOptions& options, Database* db, const ModelRegistry* models, ScoredCallback on_scored)
      : options_(options), db_(db), models_(models), on_scored_(std::move(on_scored)),
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
        // The models loaded now; a SIGHUP swap takes effect at the next batch, while a
        // batch in flight finishes with the versions it was claimed for.
        std::shared_ptr<const ModelSet> models = models_->Current();
        if (models->empty()) break;
        claimable_ = ClaimableModels(*models);
        auto queued = db_->CountQueuedJobs(claimable_);
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
        auto jobs = db_->ClaimJobs(options_.max_batch, claimable_);
        if (!jobs.ok()) {
          spdlog::error("scoring: cannot claim jobs: {}", jobs.status().ToString());
          break;
        }
        if (jobs->empty()) break;
        std::unique_ptr<Batch> next = StartBatch(*jobs, models);
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
      auto now_queued = db_->CountQueuedJobs(claimable_);
      if (now_queued.ok() && *now_queued >= options_.max_batch) break;
    }
    return true;
  }

  // The job model names this worker claims: the loaded models, and '' (jobs queued
  // without a model, by an ingest without routes): the first model scores those.
  static std::vector<std::string> ClaimableModels(const ModelSet& models) {
    std::vector<std::string> names{""};
    for (const auto& m : models) names.push_back(m->name);
    return names;
  }

  // A claimed batch whose decoding runs on the pool. Heap-allocated: the decode tasks
  // hold pointers into it. It holds the model versions it was claimed for.
  struct Batch {
    Clock::time_point start;
    std::shared_ptr<const ModelSet> models;
    std::vector<Job> jobs;
    std::vector<const LoadedModel*> job_model;  // per job
    std::vector<PreparedImage> images;
    std::vector<std::future<void>> decoded;
  };

  std::unique_ptr<Batch> StartBatch(const std::vector<Job>& claimed, std::shared_ptr<const ModelSet> models) {
    auto batch = std::make_unique<Batch>();
    batch->start = Clock::now();
    batch->models = std::move(models);
    std::map<std::string, size_t> image_of_file;
    for (const Job& job : claimed) {
      // A job claimed more often than allowed was interrupted by crashes each time (an
      // image that takes the process down): it is failed here, never tried again.
      if (job.attempts > options_.max_attempts) {
        LogResult(db_->FailJobAttempt(job.id, "scoring was interrupted " + std::to_string(job.attempts - 1) +
                                                  " times (the node stopped while scoring it)",
                                      options_.max_attempts),
                  job, "failed: interrupted too often");
        continue;
      }
      const LoadedModel* model = nullptr;
      for (const auto& m : *batch->models) {
        if (m->name == job.model_name || (job.model_name.empty() && !model)) model = m.get();
        if (m->name == job.model_name) break;
      }
      if (!model) {  // unloaded between the claim's snapshot and now: back to the queue
        LogResult(db_->FailJobAttempt(job.id, "model " + job.model_name + " is not loaded", options_.max_attempts + 1),
                  job, "attempt failed: model " + job.model_name + " is not loaded");
        continue;
      }
      auto [it, fresh] = image_of_file.try_emplace(job.file_path, batch->images.size());
      if (fresh) batch->images.push_back(PreparedImage{.file_path = job.file_path});
      batch->images[it->second].jobs.push_back(batch->jobs.size());
      batch->jobs.push_back(job);
      batch->job_model.push_back(model);
    }
    // Decode each image once and preprocess it once per distinct preprocessing, in
    // parallel on the pool.
    for (size_t i = 0; i < batch->images.size(); ++i) {
      auto task = std::make_shared<std::packaged_task<void()>>([this, b = batch.get(), i] {
        LowerThreadPriority();
        auto t0 = Clock::now();
        PreparedImage& image = b->images[i];
        std::string path = (std::filesystem::path(options_.data_dir) / image.file_path).string();
        auto decoded = imaging::DecodeDicomFile(path);
        if (!decoded.ok()) {
          image.decode_status = decoded.status();
        } else {
          // Packages that differ only in their input size (the demo packages) share the
          // full-resolution steps, the costly part; only the resize and crop are per model.
          std::map<std::string, StatusOr<scoring::Image8>> full_resolution;
          for (size_t j : image.jobs) {
            const scoring::Scorer& scorer = *b->job_model[j]->scorer;
            const std::string key = scoring::PreprocessingKey(scorer.model());
            if (image.by_preprocessing.count(key)) continue;
            const scoring::PreprocessingParams& params = scorer.model().preprocessing;
            if (!scoring::HasFullResolutionSteps(params)) {
              image.by_preprocessing.emplace(key, scorer.Preprocess(*decoded));
              continue;
            }
            const std::string shared = scoring::FullResolutionKey(params);
            auto it = full_resolution.find(shared);
            if (it == full_resolution.end()) {
              it = full_resolution.emplace(shared, scoring::CroppedAndEqualised(*decoded, params)).first;
            }
            image.by_preprocessing.emplace(key, it->second.ok() ? scoring::ResizeAndCrop(*it->second, params)
                                                                : StatusOr<scoring::PreprocessedImage>(it->second.status()));
          }
        }
        image.decode_ms = MsSince(t0);
      });
      batch->decoded.push_back(task->get_future());
      boost::asio::post(decode_pool_, [task] {
        NameThisThread("pxs-decode");  // asio gives its pool threads no names
        (*task)();
      });
    }
    return batch;
  }

  // A job whose image could not be decoded or preprocessed: bad pixel data does not get
  // better by retrying (fail or skip it now); an I/O error may.
  void RecordPreparationFailure(const Job& job, const Status& st) {
    if (st.code() == Status::Code::kUnsupported) {
      LogResult(db_->SkipJob(job.id, st.message()), job, "skipped: " + st.message());
    } else if (st.code() == Status::Code::kIoError) {
      LogResult(db_->FailJobAttempt(job.id, st.ToString(), options_.max_attempts), job,
                "attempt failed: " + st.ToString());
    } else {
      LogResult(db_->FailJobAttempt(job.id, st.ToString(), job.attempts), job, "failed: " + st.ToString());
    }
  }

  void FinishBatch(Batch& batch) {
    for (auto& d : batch.decoded) d.wait();
    const std::vector<Job>& jobs = batch.jobs;
    if (jobs.empty()) return;
    std::vector<double> decode_ms(jobs.size(), 0);
    // Each model's inputs (one batch per model), in job order.
    std::map<const LoadedModel*, std::vector<size_t>> jobs_of_model;
    std::map<const LoadedModel*, std::vector<scoring::PreprocessedImage>> inputs_of_model;
    for (PreparedImage& image : batch.images) {
      for (size_t j : image.jobs) {
        decode_ms[j] = image.decode_ms;
        if (!image.decode_status.ok()) {
          RecordPreparationFailure(jobs[j], image.decode_status);
          continue;
        }
        const LoadedModel* model = batch.job_model[j];
        const StatusOr<scoring::PreprocessedImage>& pre =
            image.by_preprocessing.at(scoring::PreprocessingKey(model->scorer->model()));
        if (!pre.ok()) {
          RecordPreparationFailure(jobs[j], pre.status());
          continue;
        }
        jobs_of_model[model].push_back(j);
        inputs_of_model[model].push_back(*pre);
      }
    }

    std::vector<ScoreRecord> records;
    std::vector<const Job*> scored_jobs;
    const int64_t now = NowMs();
    for (auto& [model, inputs] : inputs_of_model) {
      const std::vector<size_t>& model_jobs = jobs_of_model[model];
      auto infer_start = Clock::now();
      std::vector<StatusOr<scoring::ScoreResult>> results = model->scorer->ScoreBatch(inputs);
      const double infer_ms = MsSince(infer_start) / static_cast<double>(inputs.size());
      const scoring::ModelInfo& info = model->scorer->model();
      for (size_t k = 0; k < results.size(); ++k) {
        const Job& job = jobs[model_jobs[k]];
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
        if (info.calibration) rec.calibrated_scale = info.calibration->scale;
        rec.embedding = std::move(results[k]->embedding);
        rec.model_name = info.name;
        rec.model_version = info.version;
        rec.queue_ms = std::max<double>(0, static_cast<double>(now - job.received_at_ms) - MsSince(batch.start));
        rec.decode_ms = decode_ms[model_jobs[k]];
        rec.inference_ms = infer_ms;
        rec.scored_at_ms = now;
        records.push_back(std::move(rec));
        scored_jobs.push_back(&job);
      }
    }
    if (records.empty()) return;
    Status saved = db_->CompleteJobs(records);
    if (!saved.ok()) {
      // The jobs stay in state scoring and are retried after the next start.
      spdlog::error("scoring: cannot record {} score(s): {}", records.size(), saved.ToString());
      return;
    }
    metrics::Global().ObserveScoredBatch(records.size(), MsSince(batch.start) / 1000);
    for (size_t k = 0; k < records.size(); ++k) {
      spdlog::info("scored {} model={} score={:.3f} decode={:.0f}ms inference={:.0f}ms batch={}",
                   scored_jobs[k]->sop_instance_uid, records[k].model_name, records[k].pxs, records[k].decode_ms,
                   records[k].inference_ms, records.size());
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
  const ModelRegistry* models_;
  std::vector<std::string> claimable_;  // worker thread only
  ScoredCallback on_scored_;
  boost::asio::thread_pool decode_pool_;
  std::thread thread_;
  WorkerSignal signal_;
};

ScoringWorker::ScoringWorker(const ScoringWorkerOptions& options, Database* db, const ModelRegistry* models,
                             ScoredCallback on_scored)
    : impl_(std::make_unique<Impl>(options, db, models, std::move(on_scored))) {}
ScoringWorker::~ScoringWorker() = default;
Status ScoringWorker::Start() { return impl_->Start(); }
void ScoringWorker::Stop() { impl_->Stop(); }
void ScoringWorker::Notify() { impl_->Notify(); }

}  // namespace pxs
