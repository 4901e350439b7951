// IncomingFile: the file DCMTK is receiving one data set into, watched while it grows.
// One per association thread. While the bytes arrive it
//   - starts the kernel's write-back every MiB (sync_file_range), so the fdatasync
//     before Success has little left to flush;
//   - hashes what is already in the file on its own thread, so the SHA-256 is ready
//     when the last byte is (instead of adding a full read of 10 MB after it);
//   - counts the data set bytes DCMTK reported, so the ingester can tell a complete
//     file from one cut short by a failed write (DCMTK 3.6.7 does not always say).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>

#include "pxs/common/files.h"

namespace pxs {

class IncomingFile {
 public:
  IncomingFile();
  ~IncomingFile();
  IncomingFile(const IncomingFile&) = delete;
  IncomingFile& operator=(const IncomingFile&) = delete;

  // Before DCMTK creates `path`.
  void Begin(const std::string& path);
  // From DCMTK's receive callback: data set bytes received so far.
  void Progress(uint64_t dataset_bytes);

  struct Received {
    uint64_t dataset_bytes = 0;
    std::string sha256;  // of the whole file; empty when it could not be read
  };
  // After DCMTK returned (file closed): hashes the rest and stops watching.
  Received Finish();

 private:
  enum class State { kIdle, kReceiving, kFinishing, kDone };
  void HashLoop();

  std::mutex mu_;
  std::condition_variable cv_;
  State state_ = State::kIdle;
  bool more_data_ = false;  // Progress() since the hasher last looked
  bool stop_ = false;
  std::string path_;
  int fd_ = -1;
  uint64_t received_ = 0;
  uint64_t next_writeback_at_ = 0;
  // Touched by the hashing thread only while state_ is kReceiving or kFinishing.
  Sha256Stream sha_;
  uint64_t hashed_ = 0;
  bool read_failed_ = false;
  std::thread hasher_;
};

}  // namespace pxs
