#include "incoming_file.h"
#include "pxs/common/thread_name.h"

#include <fcntl.h>
#include <unistd.h>

namespace pxs {
namespace {
constexpr uint64_t kWritebackStep = 1u << 20;
}  // namespace

IncomingFile::IncomingFile()
    : hasher_([this] {
        NameThisThread("pxs-hash");
        HashLoop();
      }) {}

IncomingFile::~IncomingFile() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  hasher_.join();
  if (fd_ >= 0) ::close(fd_);
}

void IncomingFile::Begin(const std::string& path) {
  std::lock_guard<std::mutex> lock(mu_);
  path_ = path;
  received_ = 0;
  next_writeback_at_ = kWritebackStep;
  hashed_ = 0;
  read_failed_ = false;
  more_data_ = false;
  sha_.Reset();
  state_ = State::kReceiving;
}

void IncomingFile::Progress(uint64_t dataset_bytes) {
  std::unique_lock<std::mutex> lock(mu_);
  received_ = dataset_bytes;
  if (state_ != State::kReceiving || dataset_bytes < next_writeback_at_) return;
  next_writeback_at_ = dataset_bytes + kWritebackStep;
  // DCMTK creates the file just before the first PDV arrives; open it on first use.
  if (fd_ < 0) fd_ = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
  int fd = fd_;
  more_data_ = true;
  lock.unlock();
  cv_.notify_all();
  if (fd >= 0) ::sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE);  // start write-back, do not wait
}

IncomingFile::Received IncomingFile::Finish() {
  std::unique_lock<std::mutex> lock(mu_);
  if (state_ != State::kReceiving) return {};
  state_ = State::kFinishing;
  cv_.notify_all();
  cv_.wait(lock, [&] { return state_ == State::kDone; });
  Received out;
  out.dataset_bytes = received_;
  if (!read_failed_) out.sha256 = sha_.HexDigest();
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  state_ = State::kIdle;
  return out;
}

void IncomingFile::HashLoop() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    cv_.wait(lock, [&] { return stop_ || state_ == State::kFinishing || (state_ == State::kReceiving && more_data_); });
    if (stop_) return;
    bool finishing = state_ == State::kFinishing;
    more_data_ = false;
    if (fd_ < 0) fd_ = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
    int fd = fd_;
    std::string path = path_;
    lock.unlock();
    // Everything up to the current end of file is data DCMTK has written (the file only
    // grows while it is received); the rest is read once DCMTK has closed it.
    bool ok = fd >= 0 && !read_failed_ && sha_.UpdateFromFile(fd, &hashed_, path).ok();
    lock.lock();
    if (!ok) read_failed_ = true;
    if (finishing) {
      state_ = State::kDone;
      cv_.notify_all();
    }
  }
}

}  // namespace pxs
