// pxs::FileStore: the one owner of data_dir's layout and of durable file placement (the
// node's "storage area", as Orthanc separates its storage area from its index):
//
//   data_dir/incoming/rx.<pid>.<n>.tmp              files being received (never acknowledged)
//   data_dir/dicom/<study>/<series>/<sop>.dcm       stored instances
//   data_dir/reports/<study>/sr-v<version>.dcm      Structured Reports the node made
//
// Paths handed to the database are relative to data_dir (RelativePath), so a data folder
// can move. Every UID that becomes a path component must have passed DICOM UID syntax
// (digits and dots), which the callers check before they get here.
//
// One SOP Instance UID, one writer: ClaimInstance() serialises every arrival of the same
// SOP Instance UID inside the process (a sender that retries after a timeout sends the
// same instance on a second association while the first is still being stored). The
// claim is held from the "already stored?" check until the database has recorded the
// outcome, so the second arrival always sees the first one's result and an acknowledged
// file is never replaced.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "pxs/common/status.h"
#include "pxs/filestore/file_system.h"

namespace pxs {

class FileStore {
 public:
  // `fs` must outlive the store; nullptr means the real file system.
  explicit FileStore(std::string data_dir, FileSystem* fs = nullptr);

  // Creates the folders and removes temp files a crash left behind (none of them was
  // acknowledged). Returns how many were removed.
  StatusOr<int> Open();
  // Only creates the folders (for a second user of a store another component Open()s:
  // removing temp files then could remove one being received).
  Status EnsureFolders();

  const std::string& data_dir() const { return data_dir_; }
  FileSystem& file_system() { return *fs_; }

  // --- layout (relative to data_dir)
  static std::string InstancePath(const std::string& study_uid, const std::string& series_uid,
                                  const std::string& sop_instance_uid);
  // reports/<study>/<model>-sr-v<N>.dcm: each model has its own SR versions of a study
  // (a model name '' from the one-model era: sr-v<N>.dcm).
  static std::string ReportPath(const std::string& study_uid, const std::string& model_name, int version);
  std::string Absolute(const std::string& relative_path) const;
  // A fresh, unique temp file name (absolute) under data_dir/incoming.
  std::string NewTempPath();

  // --- durable placement
  // Makes the complete temp file the stored file at `relative_path`: fdatasync of the
  // data, the study/series folders created, a link (never replacing a stored file), the
  // temp name removed. The new name is durable only after SyncDirectories(*dirs_to_sync),
  // which the caller batches across instances (group commit). `replace_leftover`: an
  // existing file at the destination is the leftover of a crash before its commit (the
  // caller holds the instance's claim and the database does not know the file), so it
  // may be replaced. On failure nothing is left at the destination and the temp file is
  // removed. *size gets the file size.
  Status Place(const std::string& temp_path, const std::string& relative_path, bool replace_leftover,
               uint64_t* size, std::vector<std::string>* dirs_to_sync);
  Status SyncDirectories(const std::vector<std::string>& dirs);

  // Replaces the stored file at `relative_path` with the complete temp file, durably
  // (data synced, rename, folder synced before returning). Only for an explicit
  // "replace" policy decision, never as a side effect of a race.
  Status Replace(const std::string& temp_path, const std::string& relative_path, uint64_t* size);

  // Removes a stored file (pruning) or a temp file; a missing file is not an error.
  Status Remove(const std::string& relative_or_absolute_path);
  void RemoveQuietly(const std::string& absolute_path);

  // --- one writer per SOP Instance UID
  class Claim {
   public:
    Claim(Claim&& other) noexcept : store_(other.store_), uid_(std::move(other.uid_)) { other.store_ = nullptr; }
    Claim(const Claim&) = delete;
    Claim& operator=(const Claim&) = delete;
    Claim& operator=(Claim&&) = delete;
    ~Claim();

   private:
    friend class FileStore;
    Claim(FileStore* store, std::string uid) : store_(store), uid_(std::move(uid)) {}
    FileStore* store_;
    std::string uid_;
  };
  // Blocks while another thread holds the claim for this UID.
  Claim ClaimInstance(const std::string& sop_instance_uid);

 private:
  Status CreateParents(const std::string& absolute_file, std::vector<std::string>* dirs_to_sync);
  void Release(const std::string& uid);

  std::string data_dir_;
  std::string incoming_dir_;
  FileSystem* fs_;
  std::atomic<uint64_t> temp_counter_{0};
  std::mutex claims_mu_;
  std::condition_variable claims_cv_;
  std::set<std::string> claimed_;
};

}  // namespace pxs
