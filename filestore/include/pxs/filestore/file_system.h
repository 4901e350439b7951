// pxs::FileSystem: the seam between the node and the file-system calls whose order makes
// stored data durable (sync a file, sync a folder, create a second name, rename, remove).
// Production uses PosixFileSystem(); tests put a FaultInjectionFileSystem in between to
// simulate a power cut (everything not yet synced is lost) or to fail one call with EIO or
// ENOSPC (the shape of LevelDB's Env and its fault-injection test).
//
// Only the calls that decide durability go through here. Bytes are written by DCMTK
// (the receive path writes the data set straight into the temp file), so the seam starts
// where those bytes must be made to last.
#pragma once

#include <cstdint>
#include <string>

#include "pxs/common/status.h"

namespace pxs {

class FileSystem {
 public:
  virtual ~FileSystem() = default;

  // fdatasync: the file's data and size reach the disk. Returns the size.
  virtual StatusOr<uint64_t> SyncFile(const std::string& path) = 0;
  // fsync of a folder: names created, renamed or removed in it survive a power cut.
  virtual Status SyncDirectory(const std::string& dir) = 0;
  // mkdir with mode 0750; *created says whether it is new (an existing folder is fine).
  virtual Status CreateDirectory(const std::string& dir, bool* created) = 0;
  // link(): `to` becomes a second name of `from`. Never replaces: an existing `to` gives
  // kAlreadyExists. This is what makes "an acknowledged file is never replaced" hold.
  virtual Status Link(const std::string& from, const std::string& to) = 0;
  // rename(): replaces `to` if it exists. Only for files nobody acknowledged.
  virtual Status Rename(const std::string& from, const std::string& to) = 0;
  // unlink(); a missing file is not an error.
  virtual Status RemoveFile(const std::string& path) = 0;
};

// The real one (process-wide, never destroyed).
FileSystem* PosixFileSystem();

}  // namespace pxs
