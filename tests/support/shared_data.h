// Locating ../shared/data (the project's read-only test data) and reading its manifests.
// Tests that need it call SharedDataDir() and skip with a message when it is absent.
#pragma once

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

namespace pxs::testing {

// ../shared/data relative to the repository root, or "" when it is not there.
inline std::string SharedDataDir() {
  std::filesystem::path p = std::filesystem::path(PXS_SOURCE_DIR) / ".." / "shared" / "data";
  std::error_code ec;
  return std::filesystem::is_directory(p / "dicom", ec) ? p.lexically_normal().string() : std::string();
}

#define PXS_SKIP_WITHOUT_SHARED_DATA(dir)                                                       \
  if ((dir).empty()) {                                                                          \
    GTEST_SKIP() << "SKIPPED: ../shared/data/dicom not found (shared test data is not present " \
                    "on this machine)";                                                         \
  }

// A CSV manifest as rows of column -> value. The manifests here have no quoted commas
// except in free-text columns at the end, which are joined back.
inline std::vector<std::map<std::string, std::string>> ReadManifest(const std::string& path) {
  std::vector<std::map<std::string, std::string>> rows;
  std::ifstream in(path);
  std::string line;
  std::vector<std::string> header;
  auto split = [](const std::string& l) {
    std::vector<std::string> cells;
    std::string cell;
    bool quoted = false;
    for (char c : l) {
      if (c == '"') {
        quoted = !quoted;
      } else if (c == ',' && !quoted) {
        cells.push_back(cell);
        cell.clear();
      } else if (c != '\r') {
        cell += c;
      }
    }
    cells.push_back(cell);
    return cells;
  };
  if (!std::getline(in, line)) return rows;
  header = split(line);
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    std::vector<std::string> cells = split(line);
    std::map<std::string, std::string> row;
    for (size_t i = 0; i < header.size(); ++i) {
      if (i < cells.size()) row[header[i]] = cells[i];
    }
    // Extra cells (unquoted commas in the last, free-text column) go back into it.
    for (size_t i = header.size(); i < cells.size(); ++i) row[header.back()] += "," + cells[i];
    rows.push_back(std::move(row));
  }
  return rows;
}

// A fresh temp folder, removed when the object goes.
class TempDir {
 public:
  explicit TempDir(const std::string& tag) {
    path_ = std::filesystem::temp_directory_path() /
            (tag + "-" + std::to_string(::getpid()) + "-" + std::to_string(counter_++));
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::filesystem::path& path() const { return path_; }
  std::string str() const { return path_.string(); }

 private:
  static inline int counter_ = 0;
  std::filesystem::path path_;
};

}  // namespace pxs::testing
