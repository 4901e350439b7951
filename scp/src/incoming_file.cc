#include "incoming_file.h"

#include <fcntl.h>
#include <unistd.h>

namespace pxs {
namespace {
constexpr uint64_t kWritebackStep = 1u << 20;
}  // namespace

IncomingFile::~IncomingFile() { Finish(); }

void IncomingFile::Begin(const std::string& path) {
  Finish();
  path_ = path;
  received_ = 0;
  next_writeback_at_ = kWritebackStep;
}

void IncomingFile::Progress(uint64_t dataset_bytes) {
  received_ = dataset_bytes;
  if (path_.empty() || dataset_bytes < next_writeback_at_) return;
  next_writeback_at_ = dataset_bytes + kWritebackStep;
  // DCMTK creates the file just before the first PDV arrives; open it on first use.
  if (fd_ < 0) fd_ = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd_ >= 0) ::sync_file_range(fd_, 0, 0, SYNC_FILE_RANGE_WRITE);  // start write-back, do not wait
}

uint64_t IncomingFile::Finish() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  path_.clear();
  return received_;
}

}  // namespace pxs
