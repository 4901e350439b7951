// IncomingFile: the file DCMTK is receiving one data set into, watched while it grows.
// One per association thread. While the bytes arrive it
//   - starts the kernel's write-back every MiB (sync_file_range), so the fdatasync
//     before Success has little left to flush;
//   - counts the data set bytes DCMTK reported, so the ingester can tell a complete
//     file from one cut short by a failed write (DCMTK 3.6.7 does not always say).
#pragma once

#include <cstdint>
#include <string>

namespace pxs {

class IncomingFile {
 public:
  IncomingFile() = default;
  ~IncomingFile();
  IncomingFile(const IncomingFile&) = delete;
  IncomingFile& operator=(const IncomingFile&) = delete;

  // Before DCMTK creates `path`.
  void Begin(const std::string& path);
  // From DCMTK's receive callback: data set bytes received so far.
  void Progress(uint64_t dataset_bytes);
  // After DCMTK returned: stops watching; the data set bytes that arrived.
  uint64_t Finish();

 private:
  std::string path_;
  int fd_ = -1;
  uint64_t received_ = 0;
  uint64_t next_writeback_at_ = 0;
};

}  // namespace pxs
