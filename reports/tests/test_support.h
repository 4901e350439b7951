// What the reports/ tests share: running the real DICOM tools and a temp folder.
#pragma once

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <sstream>
#include <string>

namespace pxs::report_tests {

struct CommandResult {
  int rc = -1;
  std::string output;  // stdout and stderr together
};

inline CommandResult RunCommand(const std::string& cmd) {
  CommandResult r;
  FILE* p = ::popen((cmd + " 2>&1").c_str(), "r");
  if (!p) return r;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) r.output.append(buf, n);
  int status = ::pclose(p);
  r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

// dciodvfy prints an "Error - ..." line for every IOD violation.
inline int DciodvfyErrors(const std::string& path, std::string* output) {
  CommandResult v = RunCommand("dciodvfy '" + path + "'");
  if (output) *output = v.output;
  int errors = 0;
  std::istringstream lines(v.output);
  for (std::string line; std::getline(lines, line);) errors += line.find("Error") != std::string::npos;
  return errors;
}

// One attribute of a DICOM file as text ("<unreadable>" when the file is not DICOM).
inline std::string Header(const std::string& path, const DcmTagKey& tag) {
  DcmFileFormat f;
  if (f.loadFile(path.c_str()).bad()) return "<unreadable>";
  OFString v;
  f.getDataset()->findAndGetOFStringArray(tag, v);
  return v.c_str();
}

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "pxs-reports-test-XXXXXX").string();
    path_ = ::mkdtemp(tmpl.data());
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

}  // namespace pxs::report_tests
