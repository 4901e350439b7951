// What the end-to-end tests of reports share: a DCMTK storescp standing in for the PACS
// the node sends its SRs to, the files it received, and real ralo courses made into
// DICOM studies (tools/make_ralo_studies.py).
#pragma once

#include <algorithm>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "node_process.h"

namespace pxs::testing {

// The regular files of `dir` whose names start with `prefix` and end with `extension`,
// sorted by name (storescp names files <modality>.<SOP Instance UID>).
inline std::vector<std::filesystem::path> FilesIn(const std::filesystem::path& dir, const std::string& prefix = "",
                                                  const std::string& extension = "") {
  std::vector<std::filesystem::path> out;
  std::error_code ec;
  for (auto& e : std::filesystem::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (!e.is_regular_file() || name.rfind(prefix, 0) != 0) continue;
    if (!extension.empty() && e.path().extension() != extension) continue;
    out.push_back(e.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

// storescp -aet PACS on a free port, writing what it receives into `dir`.
class PacsPeer {
 public:
  explicit PacsPeer(std::filesystem::path dir) : dir_(std::move(dir)) {}
  // Starts it and waits until it listens.
  bool Start(const std::string& log_path) {
    std::filesystem::create_directories(dir_);
    proc_ = std::make_unique<Process>(
        std::vector<std::string>{"storescp", "-aet", "PACS", "-od", dir_.string(), std::to_string(port_)}, log_path);
    return WaitFor([&] { return PortOpen(port_); }, std::chrono::seconds(10));
  }
  uint16_t port() const { return port_; }
  const std::filesystem::path& dir() const { return dir_; }
  // The node's config lines that send every SR here.
  std::string ConfigTail() const {
    return "[[destinations]]\nname = \"pacs\"\nae_title = \"PACS\"\nhost = \"127.0.0.1\"\nport = " +
           std::to_string(port_) + "\n[reports]\nsend_to = [\"pacs\"]\nretry_initial_s = 1\n";
  }

 private:
  std::filesystem::path dir_;
  uint16_t port_ = FreePort();
  std::unique_ptr<Process> proc_;
};

// Real ralo courses (`ralo`: ../shared/data/ralo) as DICOM CR studies in `out`, one file
// per exam plus out/index.csv; `args` choose the subjects and exams.
inline CommandResult MakeRaloStudies(const std::filesystem::path& out, const std::string& ralo,
                                     const std::vector<std::string>& args, const std::string& log_path) {
  std::vector<std::string> argv = {"/usr/bin/python3", std::string(PXS_SOURCE_DIR) + "/tools/make_ralo_studies.py",
                                   out.string(), "--ralo", ralo};
  argv.insert(argv.end(), args.begin(), args.end());
  return RunCommand(argv, log_path);
}

}  // namespace pxs::testing
