// ObservationCommitter: makes received observation messages durable in batches, the
// same shape as the SCP's GroupCommitter (scp/src/group_commit.h) but asynchronous:
// MLLP connections hand in a message with a callback and go on reading; one committer
// thread takes everything waiting and records it in ONE transaction (one WAL fsync),
// then runs the callbacks, which send the ACKs. Under load many senders share a
// commit, which is what lets durable ingest reach >= 1000 messages/s on a disk whose
// fsync takes milliseconds. The FHIR endpoint uses the blocking Commit().
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>

#include "pxs/common/status.h"
#include "pxs/storage/observations.h"

namespace pxs::hl7 {

class ObservationCommitter {
 public:
  static constexpr size_t kMaxBatch = 256;
  // store must outlive the committer.
  explicit ObservationCommitter(ObservationStore* store);
  ~ObservationCommitter();  // records what was handed in, then stops

  using Done = std::function<void(const Status&, MessageOutcome)>;
  // Queues the message; done runs on the committer thread after the commit (Ok: it is
  // durable) or its failure. Must not block for long.
  void Submit(ObservationMessage message, Done done);
  // Blocks until the message is recorded (or failed).
  StatusOr<MessageOutcome> Commit(ObservationMessage message);

  // Commits so far and messages in them (for the benchmark's report and logs).
  uint64_t commits() const;
  uint64_t committed_messages() const;

 private:
  struct Pending {
    ObservationMessage message;
    Done done;
  };
  void Run();

  ObservationStore* store_;
  mutable std::mutex mu_;
  std::condition_variable work_cv_;
  std::deque<Pending> queue_;
  bool stopping_ = false;
  uint64_t commits_ = 0, committed_messages_ = 0;
  std::thread thread_;
};

}  // namespace pxs::hl7
