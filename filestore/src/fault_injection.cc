#include "pxs/filestore/fault_injection.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <vector>

namespace pxs {

namespace fs = std::filesystem;

FaultInjectionFileSystem::FaultInjectionFileSystem(std::string root) : root_(std::move(root)) {
  std::error_code ec;
  durable_names_.insert(fs::path(root_).string());
  for (auto it = fs::recursive_directory_iterator(root_, ec); !ec && it != fs::recursive_directory_iterator();
       it.increment(ec)) {
    durable_names_.insert(it->path().string());
    struct stat st {};
    if (::stat(it->path().c_str(), &st) == 0 && S_ISREG(st.st_mode)) preexisting_inodes_.insert(st.st_ino);
  }
}

Status FaultInjectionFileSystem::Before(const std::string& what, const std::string& path) {
  bool cut_now = false;
  Status failure;
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++calls_;
    if (calls_ == crash_at_ && !crashed_) {
      crashed_ = true;
      cut_now = true;
    }
    if (crashed_) {
      failure = Status::IoError(what + " " + path + ": " + std::strerror(EIO) + " (simulated power cut)");
    } else if (calls_ == fail_at_) {
      std::string message = what + " " + path + ": " + std::strerror(fail_errno_) + " (injected)";
      failure = fail_errno_ == ENOSPC ? Status::NoSpace(message) : Status::IoError(message);
    }
  }
  // Outside the lock: PowerCut() takes it. Every later call fails above, so nothing
  // touches the tree meanwhile.
  if (cut_now) PowerCut();
  return failure;
}

StatusOr<uint64_t> FaultInjectionFileSystem::SyncFile(const std::string& path) {
  PXS_RETURN_IF_ERROR(Before("cannot fsync", path));
  StatusOr<uint64_t> size = PosixFileSystem()->SyncFile(path);
  if (size.ok()) {
    struct stat st {};
    if (::stat(path.c_str(), &st) == 0) {
      std::lock_guard<std::mutex> lock(mu_);
      synced_size_[st.st_ino] = *size;
    }
  }
  return size;
}

Status FaultInjectionFileSystem::SyncDirectory(const std::string& dir) {
  PXS_RETURN_IF_ERROR(Before("cannot fsync folder", dir));
  PXS_RETURN_IF_ERROR(PosixFileSystem()->SyncDirectory(dir));
  std::lock_guard<std::mutex> lock(mu_);
  // The folder's entries as they are now become the durable ones.
  for (auto it = durable_names_.begin(); it != durable_names_.end();) {
    if (fs::path(*it).parent_path() == fs::path(dir)) it = durable_names_.erase(it);
    else ++it;
  }
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) durable_names_.insert(entry.path().string());
  return Status::Ok();
}

Status FaultInjectionFileSystem::CreateDirectory(const std::string& dir, bool* created) {
  PXS_RETURN_IF_ERROR(Before("cannot create folder", dir));
  return PosixFileSystem()->CreateDirectory(dir, created);
}

Status FaultInjectionFileSystem::Link(const std::string& from, const std::string& to) {
  PXS_RETURN_IF_ERROR(Before("cannot link", to));
  return PosixFileSystem()->Link(from, to);
}

Status FaultInjectionFileSystem::Rename(const std::string& from, const std::string& to) {
  PXS_RETURN_IF_ERROR(Before("cannot rename to", to));
  return PosixFileSystem()->Rename(from, to);
}

Status FaultInjectionFileSystem::RemoveFile(const std::string& path) {
  PXS_RETURN_IF_ERROR(Before("cannot remove", path));
  return PosixFileSystem()->RemoveFile(path);
}

void FaultInjectionFileSystem::PowerCut() {
  std::lock_guard<std::mutex> lock(mu_);
  std::error_code ec;
  std::vector<fs::path> entries;
  for (auto it = fs::recursive_directory_iterator(root_, ec); !ec && it != fs::recursive_directory_iterator();
       it.increment(ec)) {
    entries.push_back(it->path());
  }
  // Deepest first, so a folder whose name is lost goes with everything in it.
  for (auto it = entries.rbegin(); it != entries.rend(); ++it) {
    const fs::path& p = *it;
    const fs::path under_root = p.lexically_relative(root_);
    const std::string top = under_root.begin() == under_root.end() ? "" : under_root.begin()->string();
    if (top != "dicom" && top != "incoming" && top != "reports") continue;
    struct stat st {};
    if (::lstat(p.c_str(), &st) != 0) continue;
    if (durable_names_.count(p.string()) == 0) {
      fs::remove_all(p, ec);
      continue;
    }
    if (!S_ISREG(st.st_mode) || preexisting_inodes_.count(st.st_ino)) continue;
    auto synced = synced_size_.find(st.st_ino);
    uint64_t keep = synced == synced_size_.end() ? 0 : synced->second;
    if (static_cast<uint64_t>(st.st_size) > keep) {
      if (::truncate(p.c_str(), static_cast<off_t>(keep)) != 0) continue;
    }
  }
}

}  // namespace pxs
