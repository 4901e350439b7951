// Small file-system helpers shared by the SCP (durable writes), storage (verify) and tools.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "pxs/common/status.h"

namespace pxs {

// SHA-256 of a file's bytes as 64 lowercase hex digits.
StatusOr<std::string> Sha256HexOfFile(const std::string& path);

// SHA-256 over bytes that arrive piece by piece (e.g. a file while it is being written).
class Sha256Stream {
 public:
  Sha256Stream();
  ~Sha256Stream();
  Sha256Stream(const Sha256Stream&) = delete;
  Sha256Stream& operator=(const Sha256Stream&) = delete;
  void Reset();
  void Update(const void* data, size_t size);
  // Reads from fd at *offset until end of file, hashing and advancing *offset.
  Status UpdateFromFile(int fd, uint64_t* offset, const std::string& path_for_errors);
  // The digest of everything since the last Reset(), as 64 lowercase hex digits.
  std::string HexDigest();

 private:
  struct Ctx;
  Ctx* ctx_;
};
// SHA-256 of a buffer as 64 lowercase hex digits.
std::string Sha256Hex(std::string_view bytes);

// fsync() of a folder, so that a rename or create inside it survives a power cut.
Status SyncDirectory(const std::string& dir);

// Free bytes and total bytes of the file system holding path.
struct DiskSpace {
  uint64_t free_bytes = 0;
  uint64_t total_bytes = 0;
};
StatusOr<DiskSpace> QueryDiskSpace(const std::string& path);

}  // namespace pxs
