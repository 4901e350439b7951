// FaultInjectionFileSystem (tests only): the real file system, plus
//   - a model of what a power cut keeps: file data only up to its last SyncFile (per
//     inode, so a synced temp file that got a second name keeps its data), and names only
//     once their folder was synced; PowerCut() throws away everything else;
//   - a crash point: the Nth call first cuts the power, then it and every later call fail
//     with EIO (the machine is gone; nothing more reaches the disk);
//   - an error point: the Nth call fails with a chosen errno (EIO, ENOSPC) and changes
//     nothing.
// Calls are counted from construction. Names that existed under `root` at construction
// count as durable. Only the data folder's file-store parts (dicom/, incoming/, reports/)
// are modelled: the database files beside them are SQLite's, which syncs its own files
// and folder entries. Writes that bypass the seam (DCMTK writing the received bytes) are
// covered by the model: they are lost unless SyncFile ran afterwards.
#pragma once

#include <sys/types.h>

#include <map>
#include <mutex>
#include <set>
#include <string>

#include "pxs/filestore/file_system.h"

namespace pxs {

class FaultInjectionFileSystem final : public FileSystem {
 public:
  explicit FaultInjectionFileSystem(std::string root);

  void CrashAtCall(int n) { crash_at_ = n; }
  void FailCall(int n, int err) {
    fail_at_ = n;
    fail_errno_ = err;
  }
  int calls() const { return calls_; }
  bool crashed() const { return crashed_; }
  // Applies the power-cut model to the tree under root now.
  void PowerCut();

  StatusOr<uint64_t> SyncFile(const std::string& path) override;
  Status SyncDirectory(const std::string& dir) override;
  Status CreateDirectory(const std::string& dir, bool* created) override;
  Status Link(const std::string& from, const std::string& to) override;
  Status Rename(const std::string& from, const std::string& to) override;
  Status RemoveFile(const std::string& path) override;

 private:
  // Counts the call; at the crash point cuts the power. Returns the failure to give
  // instead of running the call, if any.
  Status Before(const std::string& what, const std::string& path);

  std::string root_;
  std::mutex mu_;
  int calls_ = 0;
  int crash_at_ = -1;
  int fail_at_ = -1;
  int fail_errno_ = 0;
  bool crashed_ = false;
  std::set<std::string> durable_names_;      // paths whose folder entry survives a power cut
  std::map<ino_t, uint64_t> synced_size_;    // inode -> bytes that reached the disk
  std::set<ino_t> preexisting_inodes_;       // files that were complete at construction
};

}  // namespace pxs
