#include "pxs/filestore/file_store.h"

#include <unistd.h>

#include <filesystem>

namespace pxs {

namespace fs = std::filesystem;

FileStore::FileStore(std::string data_dir, FileSystem* file_system)
    : data_dir_(std::move(data_dir)),
      incoming_dir_((fs::path(data_dir_) / "incoming").string()),
      fs_(file_system ? file_system : PosixFileSystem()) {}

Status FileStore::EnsureFolders() {
  std::error_code ec;
  for (const char* sub : {"dicom", "incoming", "reports"}) {
    fs::create_directories(fs::path(data_dir_) / sub, ec);
    if (ec) return Status::IoError("cannot create " + (fs::path(data_dir_) / sub).string() + ": " + ec.message());
  }
  return Status::Ok();
}

StatusOr<int> FileStore::Open() {
  PXS_RETURN_IF_ERROR(EnsureFolders());
  std::error_code ec;
  int removed = 0;
  for (const auto& entry : fs::directory_iterator(incoming_dir_, ec)) {
    if (fs_->RemoveFile(entry.path().string()).ok()) ++removed;
  }
  if (ec) return Status::IoError("cannot list " + incoming_dir_ + ": " + ec.message());
  return removed;
}

std::string FileStore::InstancePath(const std::string& study_uid, const std::string& series_uid,
                                    const std::string& sop_instance_uid) {
  return (fs::path("dicom") / study_uid / series_uid / (sop_instance_uid + ".dcm")).string();
}

std::string FileStore::ReportPath(const std::string& study_uid, const std::string& model_name, int version) {
  // Model names are config-checked to [A-Za-z0-9._-], so they are safe as a file name part.
  const std::string prefix = model_name.empty() ? "" : model_name + "-";
  return (fs::path("reports") / study_uid / (prefix + "sr-v" + std::to_string(version) + ".dcm")).string();
}

std::string FileStore::Absolute(const std::string& relative_path) const {
  return (fs::path(data_dir_) / relative_path).string();
}

std::string FileStore::NewTempPath() {
  return (fs::path(incoming_dir_) /
          ("rx." + std::to_string(::getpid()) + "." + std::to_string(temp_counter_.fetch_add(1)) + ".tmp"))
      .string();
}

// Creates the file's missing parent folders below data_dir one level at a time, so that
// each new folder's own parent is in *dirs_to_sync (a new folder is a new name, too).
Status FileStore::CreateParents(const std::string& absolute_file, std::vector<std::string>* dirs_to_sync) {
  fs::path base(data_dir_);
  fs::path rel = fs::path(absolute_file).parent_path().lexically_relative(base);
  fs::path dir = base;
  for (const fs::path& part : rel) {
    dir /= part;
    bool created = false;
    PXS_RETURN_IF_ERROR(fs_->CreateDirectory(dir.string(), &created));
    if (created) dirs_to_sync->push_back(dir.parent_path().string());
  }
  return Status::Ok();
}

Status FileStore::Place(const std::string& temp_path, const std::string& relative_path, bool replace_leftover,
                        uint64_t* size, std::vector<std::string>* dirs_to_sync) {
  const std::string final_path = Absolute(relative_path);
  auto fail = [&](Status s) {
    RemoveQuietly(temp_path);
    return s;
  };
  StatusOr<uint64_t> synced = fs_->SyncFile(temp_path);
  if (!synced.ok()) return fail(synced.status());
  *size = *synced;
  if (Status s = CreateParents(final_path, dirs_to_sync); !s.ok()) return fail(s);
  Status linked = fs_->Link(temp_path, final_path);
  if (linked.code() == Status::Code::kAlreadyExists && replace_leftover) {
    linked = fs_->Rename(temp_path, final_path);
    if (!linked.ok()) return fail(linked);
  } else if (!linked.ok()) {
    return fail(linked);
  } else {
    RemoveQuietly(temp_path);
  }
  dirs_to_sync->push_back(fs::path(final_path).parent_path().string());
  return Status::Ok();
}

Status FileStore::SyncDirectories(const std::vector<std::string>& dirs) {
  for (const std::string& dir : dirs) PXS_RETURN_IF_ERROR(fs_->SyncDirectory(dir));
  return Status::Ok();
}

Status FileStore::Replace(const std::string& temp_path, const std::string& relative_path, uint64_t* size) {
  const std::string final_path = Absolute(relative_path);
  StatusOr<uint64_t> synced = fs_->SyncFile(temp_path);
  if (!synced.ok()) {
    RemoveQuietly(temp_path);
    return synced.status();
  }
  *size = *synced;
  std::vector<std::string> dirs;
  if (Status s = CreateParents(final_path, &dirs); !s.ok()) {
    RemoveQuietly(temp_path);
    return s;
  }
  if (Status s = fs_->Rename(temp_path, final_path); !s.ok()) {
    RemoveQuietly(temp_path);
    return s;
  }
  dirs.push_back(fs::path(final_path).parent_path().string());
  return SyncDirectories(dirs);
}

Status FileStore::Remove(const std::string& relative_or_absolute_path) {
  fs::path p(relative_or_absolute_path);
  return fs_->RemoveFile(p.is_absolute() ? p.string() : Absolute(p.string()));
}

void FileStore::RemoveQuietly(const std::string& absolute_path) { (void)fs_->RemoveFile(absolute_path); }

FileStore::Claim FileStore::ClaimInstance(const std::string& sop_instance_uid) {
  std::unique_lock<std::mutex> lock(claims_mu_);
  claims_cv_.wait(lock, [&] { return claimed_.count(sop_instance_uid) == 0; });
  claimed_.insert(sop_instance_uid);
  return Claim(this, sop_instance_uid);
}

void FileStore::Release(const std::string& uid) {
  {
    std::lock_guard<std::mutex> lock(claims_mu_);
    claimed_.erase(uid);
  }
  claims_cv_.notify_all();
}

FileStore::Claim::~Claim() {
  if (store_) store_->Release(uid_);
}

}  // namespace pxs
