// pxs::ReportWorker makes the SRs on its own thread, so that building and writing a
// report (tens of ms: it reads the source image and fsyncs the SR) never holds up
// scoring. Its queue is in memory; what a crash loses there is found again at the next
// start from the database (scored jobs without a later report).
#pragma once

#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

#include "pxs/common/status.h"
#include "pxs/storage/database.h"

namespace pxs {

class ReportMaker;

class ReportWorker {
 public:
  // maker and db must outlive the worker.
  ReportWorker(ReportMaker* maker, Database* db, int recover_days = 7);
  ~ReportWorker();  // Stop()s

  // Queues the reports lost by an earlier crash, then starts the thread.
  Status Start();
  // Makes every report already queued, then stops.
  void Stop();
  // Called by the scoring worker for each recorded score.
  void Enqueue(const Job& job, const ScoreRecord& score);

 private:
  void Run();

  ReportMaker* maker_;
  Database* db_;
  int recover_days_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Database::ScoredJob> queue_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace pxs
