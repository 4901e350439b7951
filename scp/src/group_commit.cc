#include "group_commit.h"

#include <algorithm>
#include <set>
#include "pxs/common/thread_name.h"

namespace pxs {

GroupCommitter::GroupCommitter(Database* db, FileStore* store) : db_(db), store_(store), thread_([this] {
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
      const size_t n = std::min(queue_.size(), kMaxBatch);
      batch.assign(queue_.begin(), queue_.begin() + static_cast<std::ptrdiff_t>(n));
      queue_.erase(queue_.begin(), queue_.begin() + static_cast<std::ptrdiff_t>(n));
    }

    // 1. Folder entries first: once the database says "stored", the file must be findable
    //    after a power cut. Each folder is synced once for the whole batch.
    std::set<std::string> unique_dirs;
    for (Pending* p : batch) unique_dirs.insert(p->dirs->begin(), p->dirs->end());
    Status sync_status = store_->SyncDirectories({unique_dirs.begin(), unique_dirs.end()});

    // 2. One transaction for every instance in the batch. Should it fail (one instance
    //    lacking a UID, say), each is tried alone, so that one bad instance fails alone.
    std::vector<Status> statuses(batch.size(), sync_status);
    std::vector<InsertOutcome> outcomes(batch.size(), InsertOutcome::kInserted);
    if (sync_status.ok()) {
      std::vector<ReceivedInstance> rows;
      rows.reserve(batch.size());
      for (Pending* p : batch) rows.push_back(*p->instance);
      std::vector<InsertOutcome> together;
      Status db_status = db_->RecordInstances(rows, &together);
      if (db_status.ok() && together.size() == batch.size()) {
        outcomes = std::move(together);
        statuses.assign(batch.size(), Status::Ok());
      } else if (batch.size() == 1) {
        statuses[0] = db_status.ok() ? Status::Internal("database returned no outcome") : db_status;
      } else {
        for (size_t i = 0; i < batch.size(); ++i) {
          std::vector<InsertOutcome> one;
          statuses[i] = db_->RecordInstances({rows[i]}, &one);
          if (statuses[i].ok() && one.size() == 1) outcomes[i] = one[0];
        }
      }
    }

    {
      std::lock_guard<std::mutex> lock(mu_);
      for (size_t i = 0; i < batch.size(); ++i) {
        batch[i]->outcome.status = statuses[i];
        if (statuses[i].ok()) batch[i]->outcome.insert = outcomes[i];
        batch[i]->done = true;
      }
    }
    done_cv_.notify_all();
  }
}

}  // namespace pxs
