// GroupCommitter: makes received instances durable in batches. Association threads hand
// in an instance whose file is already fsynced and linked into place; one committer
// thread takes everything waiting, fsyncs each touched folder once and records the whole
// batch in ONE SQLite transaction, then wakes the waiting threads. Under load several
// associations share one folder sync and one commit (the same shape as LevelDB's
// DBImpl::Write writer group), which is what lets durable ingest keep up with the disk.
// This is the node's only group commit: storage's RecordInstances is one plain
// transaction. A batch holds at most kMaxBatch instances, so one commit never keeps the
// first waiter waiting for an unbounded crowd.
#pragma once

#include <condition_variable>
#include <deque>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "pxs/common/status.h"
#include "pxs/filestore/file_store.h"
#include "pxs/storage/database.h"

namespace pxs {

class GroupCommitter {
 public:
  static constexpr size_t kMaxBatch = 64;
  // Both must outlive the committer.
  GroupCommitter(Database* db, FileStore* store);
  ~GroupCommitter();  // finishes what was handed in, then stops

  struct Outcome {
    Status status;
    InsertOutcome insert = InsertOutcome::kInserted;
  };
  // Blocks until the instance is recorded (or failed). dirs_to_sync: folders whose
  // entries changed for this instance (new file, new sub-folder).
  Outcome Commit(const ReceivedInstance& instance, const std::vector<std::string>& dirs_to_sync);

 private:
  struct Pending {
    const ReceivedInstance* instance;
    const std::vector<std::string>* dirs;
    Outcome outcome;
    bool done = false;
  };
  void Run();

  Database* db_;
  FileStore* store_;
  std::mutex mu_;
  std::condition_variable work_cv_;  // committer waits for work
  std::condition_variable done_cv_;  // callers wait for their batch
  std::deque<Pending*> queue_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace pxs
