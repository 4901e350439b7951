#include "pxs/common/files.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <vector>

namespace pxs {
namespace {

std::string ToHex(const unsigned char* digest, unsigned int len) {
  static const char kDigits[] = "0123456789abcdef";
  std::string hex(len * 2, '0');
  for (unsigned int i = 0; i < len; ++i) {
    hex[2 * i] = kDigits[digest[i] >> 4];
    hex[2 * i + 1] = kDigits[digest[i] & 0xf];
  }
  return hex;
}

std::string ErrnoText(const std::string& what, const std::string& path) {
  return what + " " + path + ": " + std::strerror(errno);
}

}  // namespace

std::string Sha256Hex(std::string_view bytes) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(bytes.data(), bytes.size(), digest, &len, EVP_sha256(), nullptr);
  return ToHex(digest, len);
}

struct Sha256Stream::Ctx {
  EVP_MD_CTX* md = EVP_MD_CTX_new();
  ~Ctx() { EVP_MD_CTX_free(md); }
};

Sha256Stream::Sha256Stream() : ctx_(new Ctx) { Reset(); }
Sha256Stream::~Sha256Stream() { delete ctx_; }

void Sha256Stream::Reset() { EVP_DigestInit_ex(ctx_->md, EVP_sha256(), nullptr); }

void Sha256Stream::Update(const void* data, size_t size) { EVP_DigestUpdate(ctx_->md, data, size); }

Status Sha256Stream::UpdateFromFile(int fd, uint64_t* offset, const std::string& path_for_errors) {
  std::vector<char> buffer(1 << 20);
  for (;;) {
    ssize_t n = ::pread(fd, buffer.data(), buffer.size(), static_cast<off_t>(*offset));
    if (n == 0) return Status::Ok();
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status::IoError(ErrnoText("cannot read", path_for_errors));
    }
    Update(buffer.data(), static_cast<size_t>(n));
    *offset += static_cast<uint64_t>(n);
  }
}

std::string Sha256Stream::HexDigest() {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_DigestFinal_ex(ctx_->md, digest, &len);
  Reset();
  return ToHex(digest, len);
}

StatusOr<std::string> Sha256HexOfFile(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Status::IoError(ErrnoText("cannot open", path));
  Sha256Stream sha;
  uint64_t offset = 0;
  Status read = sha.UpdateFromFile(fd, &offset, path);
  ::close(fd);
  if (!read.ok()) return read;
  return sha.HexDigest();
}

Status SyncDirectory(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return Status::IoError(ErrnoText("cannot open folder", dir));
  int rc = ::fsync(fd);
  Status s = rc == 0 ? Status::Ok() : Status::IoError(ErrnoText("cannot fsync folder", dir));
  ::close(fd);
  return s;
}

StatusOr<DiskSpace> QueryDiskSpace(const std::string& path) {
  struct statvfs st {};
  if (::statvfs(path.c_str(), &st) != 0) return Status::IoError(ErrnoText("cannot statvfs", path));
  DiskSpace space;
  space.free_bytes = static_cast<uint64_t>(st.f_bavail) * st.f_frsize;
  space.total_bytes = static_cast<uint64_t>(st.f_blocks) * st.f_frsize;
  return space;
}

}  // namespace pxs
