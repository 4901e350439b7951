#include "pxs/pipeline/report_worker.h"

#include <chrono>

#include <spdlog/spdlog.h>

#include "pxs/pipeline/report_maker.h"
#include "pxs/common/thread_name.h"

namespace pxs {

ReportWorker::ReportWorker(ReportMaker* maker, Database* db, int recover_days)
    : maker_(maker), db_(db), recover_days_(recover_days) {}

ReportWorker::~ReportWorker() { Stop(); }

Status ReportWorker::Start() {
  int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                       std::chrono::system_clock::now().time_since_epoch())
                       .count();
  auto lost = db_->ScoredWithoutReport(now_ms - int64_t{recover_days_} * 86400 * 1000);
  if (!lost.ok()) return lost.status();
  if (!lost->empty()) spdlog::info("reports: {} scored image(s) had no report yet (stopped before); making them", lost->size());
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& sj : *lost) queue_.push_back(std::move(sj));
  }
  thread_ = std::thread([this] {
    NameThisThread("pxs-report");
    Run();
  });
  return Status::Ok();
}

void ReportWorker::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void ReportWorker::Enqueue(const Job& job, const ScoreRecord& score) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    queue_.push_back({job, score});
  }
  cv_.notify_one();
}

void ReportWorker::Run() {
  while (true) {
    Database::ScoredJob next;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping, and everything queued is done
      next = std::move(queue_.front());
      queue_.pop_front();
    }
    auto made = maker_->MakeReport(next.job, next.score);
    if (!made.ok()) {
      // Not retried in this run (the same input would fail the same way); a restart
      // tries again through ScoredWithoutReport.
      spdlog::error("report for study {} (image {}) not made: {}", next.job.study_uid, next.job.sop_instance_uid,
                    made.status().ToString());
    }
  }
}

}  // namespace pxs
