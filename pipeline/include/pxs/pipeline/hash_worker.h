// pxs::HashWorker records the SHA-256 of stored files after they were acknowledged. The
// SCP answers a C-STORE once the file is fsynced and recorded; hashing 10 MB on that path
// cost ~5 ms of CPU per image that every sender waited for. This worker hashes on its own
// low-priority thread when no images are arriving (or after yield_to_ingest_ms), oldest
// first, and survives restarts: what is not hashed yet is found in the database.
// `pxsctl verify` checks sizes only for files not hashed yet.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "pxs/common/status.h"
#include "pxs/storage/database.h"

namespace pxs {

struct HashWorkerOptions {
  std::string data_dir;
  int batch = 16;
  int poll_interval_ms = 1000;
  std::function<bool()> ingest_busy;  // see ScoringWorkerOptions
  int yield_to_ingest_ms = 0;
};

class HashWorker {
 public:
  HashWorker(const HashWorkerOptions& options, Database* db);
  ~HashWorker();  // Stop()s
  HashWorker(const HashWorker&) = delete;
  HashWorker& operator=(const HashWorker&) = delete;

  void Start();
  // Finishes the file being hashed, records what is done, then stops.
  void Stop();
  // New files were stored: look now rather than at the next poll.
  void Notify();

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace pxs
