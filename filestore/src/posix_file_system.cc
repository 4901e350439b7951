#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "pxs/filestore/file_system.h"

namespace pxs {
namespace {

// ENOSPC is its own code: the SCP answers it with "out of resources (disk full)".
Status ErrnoStatus(int err, const std::string& what, const std::string& path) {
  std::string message = what + " " + path + ": " + std::strerror(err);
  if (err == ENOSPC || err == EDQUOT) return Status::NoSpace(message);
  if (err == EEXIST) return Status::AlreadyExists(message);
  if (err == ENOENT) return Status::NotFound(message);
  return Status::IoError(message);
}

class Posix final : public FileSystem {
 public:
  StatusOr<uint64_t> SyncFile(const std::string& path) override {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return ErrnoStatus(errno, "cannot open", path);
    struct stat st {};
    int rc = ::fstat(fd, &st);
    if (rc == 0) rc = ::fdatasync(fd);
    int err = errno;
    ::close(fd);
    if (rc != 0) return ErrnoStatus(err, "cannot fsync", path);
    return static_cast<uint64_t>(st.st_size);
  }

  Status SyncDirectory(const std::string& dir) override {
    int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return ErrnoStatus(errno, "cannot open folder", dir);
    int rc = ::fsync(fd);
    int err = errno;
    ::close(fd);
    return rc == 0 ? Status::Ok() : ErrnoStatus(err, "cannot fsync folder", dir);
  }

  Status CreateDirectory(const std::string& dir, bool* created) override {
    *created = false;
    if (::mkdir(dir.c_str(), 0750) == 0) {
      *created = true;
      return Status::Ok();
    }
    if (errno == EEXIST) return Status::Ok();
    return ErrnoStatus(errno, "cannot create folder", dir);
  }

  Status Link(const std::string& from, const std::string& to) override {
    if (::link(from.c_str(), to.c_str()) == 0) return Status::Ok();
    return ErrnoStatus(errno, "cannot link", to);
  }

  Status Rename(const std::string& from, const std::string& to) override {
    if (::rename(from.c_str(), to.c_str()) == 0) return Status::Ok();
    return ErrnoStatus(errno, "cannot rename to", to);
  }

  Status RemoveFile(const std::string& path) override {
    if (::unlink(path.c_str()) == 0 || errno == ENOENT) return Status::Ok();
    return ErrnoStatus(errno, "cannot remove", path);
  }
};

}  // namespace

FileSystem* PosixFileSystem() {
  static Posix* posix = new Posix();  // never destroyed: used by threads until exit
  return posix;
}

}  // namespace pxs
