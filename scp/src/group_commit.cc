#include "group_commit.h"

#include "pxs/common/files.h"
#include "pxs/common/thread_name.h"

namespace pxs {

GroupCommitter::GroupCommitter(Database* db) : db_(db), thread_([this] {
        NameThisThread("pxs-commit");
        Run();
      }) {}

GroupCommitter::~GroupCommitter() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  work_cv_.notify_all();
  thread_.join();
}

GroupCommitter::Outcome GroupCommitter::Commit(const ReceivedInstance& instance,
                                               const std::vector<std::string>& dirs_to_sync) {
  Pending pending{&instance, &dirs_to_sync, {}, false};
  std::unique_lock<std::mutex> lock(mu_);
  if (stopping_) return {Status::Unavailable("node is shutting down"), InsertOutcome::kInserted};
  queue_.push_back(&pending);
  work_cv_.notify_one();
  done_cv_.wait(lock, [&] { return pending.done; });
  return pending.outcome;
}

void GroupCommitter::Run() {
  for (;;) {
    std::vector<Pending*> batch;
    {
      std::unique_lock<std::mutex> lock(mu_);
      work_cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping and nothing left
      batch.assign(queue_.begin(), queue_.end());
      queue_.clear();
    }

    // 1. Folder entries first: once the database says "stored", the file must be findable
    //    after a power cut. Each folder is synced once for the whole batch.
    std::set<std::string> dirs;
    for (Pending* p : batch) dirs.insert(p->dirs->begin(), p->dirs->end());
    Status sync_status;
    for (const std::string& dir : dirs) {
      sync_status = SyncDirectory(dir);
      if (!sync_status.ok()) break;
    }

    // 2. One transaction for every instance in the batch.
    std::vector<InsertOutcome> outcomes;
    Status db_status = sync_status;
    if (db_status.ok()) {
      std::vector<ReceivedInstance> rows;
      rows.reserve(batch.size());
      for (Pending* p : batch) rows.push_back(*p->instance);
      db_status = db_->RecordInstances(rows, &outcomes);
      if (db_status.ok() && outcomes.size() != batch.size()) {
        db_status = Status::Internal("database returned " + std::to_string(outcomes.size()) +
                                     " outcomes for " + std::to_string(batch.size()) + " instances");
      }
    }

    {
      std::lock_guard<std::mutex> lock(mu_);
      for (size_t i = 0; i < batch.size(); ++i) {
        batch[i]->outcome.status = db_status;
        if (db_status.ok()) batch[i]->outcome.insert = outcomes[i];
        batch[i]->done = true;
      }
    }
    done_cv_.notify_all();
  }
}

}  // namespace pxs
