// scoring_parity_helper: the C++ side of the parity test (scoring/tests/parity_test.py).
// Decodes DICOM files with pxs::imaging, scores them with pxs::scoring on the CPU and
// prints one JSON object per file: {"file", "pxs", "tensor"} or {"file", "error"}; with
// --dump-tensor-dir DIR it writes the model input as raw float32 [3,H,W] to
// DIR/<file name>.f32 (the same layout as tools/reference_pxs.py).
//
//   scoring_parity_helper --package P.pt [--dump-tensor-dir DIR] FILE.dcm...
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "pxs/imaging/dicom_decoder.h"
#include "pxs/scoring/scorer.h"

namespace {

std::string JsonString(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    if (static_cast<unsigned char>(c) < 0x20) {
      out += ' ';
      continue;
    }
    out += c;
  }
  return out + "\"";
}

}  // namespace

int main(int argc, char** argv) {
  std::string package, dump_dir;
  std::vector<std::string> files;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--package" && i + 1 < argc) package = argv[++i];
    else if (a == "--dump-tensor-dir" && i + 1 < argc) dump_dir = argv[++i];
    else files.push_back(a);
  }
  if (package.empty() || files.empty()) {
    std::cerr << "usage: scoring_parity_helper --package P.pt [--dump-tensor-dir DIR] FILE.dcm...\n";
    return 2;
  }
  pxs::scoring::ScorerOptions options;
  options.model_path = package;
  options.device = "cpu";
  auto scorer = pxs::scoring::Scorer::Create(options);
  if (!scorer.ok()) {
    std::cerr << scorer.status().ToString() << "\n";
    return 1;
  }
  int failures = 0;
  for (const std::string& file : files) {
    std::string line = "{\"file\": " + JsonString(file);
    auto decoded = pxs::imaging::DecodeDicomFile(file);
    auto pre = decoded.ok() ? (*scorer)->Preprocess(*decoded)
                            : pxs::StatusOr<pxs::scoring::PreprocessedImage>(decoded.status());
    if (!pre.ok()) {
      std::cout << line << ", \"error\": " << JsonString(pre.status().ToString()) << "}" << std::endl;
      ++failures;
      continue;
    }
    auto result = std::move((*scorer)->ScoreBatch({*pre}).front());
    if (!result.ok()) {
      std::cout << line << ", \"error\": " << JsonString(result.status().ToString()) << "}" << std::endl;
      ++failures;
      continue;
    }
    char pxs[64];
    std::snprintf(pxs, sizeof pxs, "%.17g", result->pxs);
    line += ", \"pxs\": " + std::string(pxs);
    if (!dump_dir.empty()) {
      std::filesystem::create_directories(dump_dir);
      const std::string out = dump_dir + "/" + std::filesystem::path(file).filename().string() + ".f32";
      const std::vector<float> x = pxs::scoring::ToModelInput(*pre, (*scorer)->model().preprocessing);
      std::ofstream(out, std::ios::binary).write(reinterpret_cast<const char*>(x.data()),
                                                 static_cast<std::streamsize>(x.size() * sizeof(float)));
      line += ", \"tensor\": " + JsonString(out);
    }
    std::cout << line << "}" << std::endl;
  }
  return failures ? 1 : 0;
}
