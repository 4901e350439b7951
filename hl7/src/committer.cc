#include "pxs/hl7/committer.h"

#include <future>
#include <vector>

#include "pxs/common/thread_name.h"

namespace pxs::hl7 {

ObservationCommitter::ObservationCommitter(ObservationStore* store)
    : store_(store), thread_([this] {
        NameThisThread("pxs-hl7-commit");
        Run();
      }) {}

ObservationCommitter::~ObservationCommitter() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  work_cv_.notify_all();
  thread_.join();
}

void ObservationCommitter::Submit(ObservationMessage message, Done done) {
  {
    std::unique_lock lock(mu_);
    if (!stopping_) {
      queue_.push_back({std::move(message), std::move(done)});
      lock.unlock();
      work_cv_.notify_one();
      return;
    }
  }
  done(Status::Unavailable("node is shutting down"), MessageOutcome::kStored);
}

StatusOr<MessageOutcome> ObservationCommitter::Commit(ObservationMessage message) {
  std::promise<StatusOr<MessageOutcome>> promise;
  auto future = promise.get_future();
  Submit(std::move(message), [&promise](const Status& st, MessageOutcome outcome) {
    if (st.ok()) promise.set_value(outcome);
    else promise.set_value(st);
  });
  return future.get();
}

uint64_t ObservationCommitter::commits() const {
  std::lock_guard lock(mu_);
  return commits_;
}

uint64_t ObservationCommitter::committed_messages() const {
  std::lock_guard lock(mu_);
  return committed_messages_;
}

void ObservationCommitter::Run() {
  for (;;) {
    std::vector<Pending> batch;
    {
      std::unique_lock lock(mu_);
      work_cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping and nothing left
      const size_t n = std::min(queue_.size(), kMaxBatch);
      for (size_t i = 0; i < n; ++i) {
        batch.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
    }
    std::vector<ObservationMessage> rows;
    rows.reserve(batch.size());
    for (Pending& p : batch) rows.push_back(std::move(p.message));
    std::vector<Status> statuses(batch.size());
    std::vector<MessageOutcome> outcomes(batch.size(), MessageOutcome::kStored);
    std::vector<MessageOutcome> together;
    Status st = store_->RecordMessages(rows, &together);
    uint64_t commits = 1;
    if (st.ok() && together.size() == rows.size()) {
      outcomes = std::move(together);
    } else if (rows.size() == 1) {
      statuses[0] = st.ok() ? Status::Internal("the store returned no outcome") : st;
    } else {
      // One bad message must not fail the others: each alone.
      commits = rows.size();
      for (size_t i = 0; i < rows.size(); ++i) {
        std::vector<MessageOutcome> one;
        statuses[i] = store_->RecordMessages({rows[i]}, &one);
        if (statuses[i].ok() && one.size() == 1) outcomes[i] = one[0];
      }
    }
    {
      std::lock_guard lock(mu_);
      commits_ += commits;
      for (const Status& s : statuses) committed_messages_ += s.ok();
    }
    for (size_t i = 0; i < batch.size(); ++i) batch[i].done(statuses[i], outcomes[i]);
  }
}

}  // namespace pxs::hl7
