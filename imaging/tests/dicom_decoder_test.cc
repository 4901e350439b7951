// The decoder on every file of ../shared/data/dicom (manifest.csv, bad/manifest.csv):
// stored values must hash to decoded_sha256 for lossless files; bad files must give a
// clear error (and no crash).
#include "pxs/imaging/dicom_decoder.h"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "pxs/common/files.h"

namespace pxs::imaging {
namespace {

const std::string kDicomDir = std::string(PXS_SOURCE_DIR) + "/../shared/data/dicom";

// Minimal CSV reader for the manifests (quoted fields may hold commas).
std::vector<std::map<std::string, std::string>> ReadCsv(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::vector<std::string>> rows;
  std::string line;
  while (std::getline(in, line)) {
    std::vector<std::string> fields;
    std::string field;
    bool quoted = false;
    for (size_t i = 0; i < line.size(); ++i) {
      char c = line[i];
      if (quoted) {
        if (c == '"' && i + 1 < line.size() && line[i + 1] == '"') field += '"', ++i;
        else if (c == '"') quoted = false;
        else field += c;
      } else if (c == '"') {
        quoted = true;
      } else if (c == ',') {
        fields.push_back(field);
        field.clear();
      } else if (c != '\r') {
        field += c;
      }
    }
    fields.push_back(field);
    rows.push_back(fields);
  }
  std::vector<std::map<std::string, std::string>> out;
  for (size_t r = 1; r < rows.size(); ++r) {
    std::map<std::string, std::string> m;
    for (size_t c = 0; c < rows[0].size() && c < rows[r].size(); ++c) m[rows[0][c]] = rows[r][c];
    out.push_back(m);
  }
  return out;
}

#define SKIP_WITHOUT_SHARED_DATA()                                                                  \
  if (!std::filesystem::exists(kDicomDir + "/manifest.csv"))                                        \
  GTEST_SKIP() << "SKIPPED: ../shared/data/dicom not found (shared test data is not present on this " \
                  "machine)"

std::string StoredValuesSha256(const scoring::DecodedImage& d) {
  std::string bytes;
  if (d.bits_allocated == 8) {
    for (uint16_t v : d.pixels) bytes += static_cast<char>(v);
  } else {
    for (uint16_t v : d.pixels) {
      bytes += static_cast<char>(v & 0xFF);
      bytes += static_cast<char>(v >> 8);
    }
  }
  return Sha256Hex(bytes);
}

TEST(DecodeDicomFile, EveryValidFileMatchesTheManifest) {
  SKIP_WITHOUT_SHARED_DATA();
  auto rows = ReadCsv(kDicomDir + "/manifest.csv");
  ASSERT_GE(rows.size(), 10u);
  int lossless_checked = 0;
  for (auto& row : rows) {
    SCOPED_TRACE(row["file"] + " (" + row["transfer_syntax"] + ")");
    auto d = DecodeDicomFile(kDicomDir + "/" + row["file"]);
    ASSERT_TRUE(d.ok()) << d.status().ToString();
    EXPECT_EQ(d->height, std::stoi(row["rows"]));
    EXPECT_EQ(d->width, std::stoi(row["columns"]));
    EXPECT_EQ(d->bits_stored, std::stoi(row["bits_stored"]));
    EXPECT_EQ(d->bits_allocated, std::stoi(row["bits_allocated"]));
    EXPECT_EQ(d->monochrome1, row["photometric"] == "MONOCHROME1");
    ASSERT_EQ(d->pixels.size(), static_cast<size_t>(d->width) * d->height);
    uint16_t lo = 65535, hi = 0;
    double sum = 0;
    for (uint16_t v : d->pixels) lo = std::min(lo, v), hi = std::max(hi, v), sum += v;
    EXPECT_EQ(lo, std::stoi(row["stored_min"]));
    EXPECT_EQ(hi, std::stoi(row["stored_max"]));
    EXPECT_NEAR(sum / d->pixels.size(), std::stod(row["stored_mean"]), 0.01);
    if (row["lossless"] == "yes") {
      EXPECT_EQ(StoredValuesSha256(*d), row["decoded_sha256"]);
      ++lossless_checked;
    }
  }
  EXPECT_GE(lossless_checked, 10);
}

TEST(DecodeDicomFile, BadFilesGiveClearErrors) {
  SKIP_WITHOUT_SHARED_DATA();
  // What each bad file must give: a failure code and a word of the message, or success
  // for files whose defect is in the header, not the pixels.
  struct Expectation {
    bool ok;
    Status::Code code;
    const char* words;
  };
  const std::map<std::string, Expectation> expected = {
      {"truncated_pixel_data.dcm", {false, Status::Code::kCorrupt, "truncated"}},
      {"missing_pixel_data.dcm", {false, Status::Code::kCorrupt, "no Pixel Data"}},
      {"dimensions_exceed_pixel_data.dcm", {false, Status::Code::kCorrupt, "Pixel Data holds"}},
      {"not_dicom_png.dcm", {false, Status::Code::kCorrupt, "not a DICOM"}},
      {"empty_file.dcm", {false, Status::Code::kCorrupt, "empty file"}},
      {"cr_rgb_color.dcm", {false, Status::Code::kUnsupported, "colour image"}},
      {"no_patient_id.dcm", {true, Status::Code::kOk, ""}},
      {"sop_instance_uid_empty.dcm", {true, Status::Code::kOk, ""}},
      {"sop_instance_uid_malformed.dcm", {true, Status::Code::kOk, ""}},
      {"uid_path_traversal.dcm", {true, Status::Code::kOk, ""}},
  };
  auto rows = ReadCsv(kDicomDir + "/bad/manifest.csv");
  ASSERT_GE(rows.size(), 10u);
  for (auto& row : rows) {
    SCOPED_TRACE(row["file"] + ": " + row["defect"]);
    const std::string path = kDicomDir + "/bad/" + row["file"];
    auto d = DecodeDicomFile(path);
    auto it = expected.find(row["file"]);
    if (it == expected.end()) {
      // A file added to the manifest later: it must not crash; report what it gave.
      std::cout << row["file"] << ": " << (d.ok() ? "decoded" : d.status().ToString()) << "\n";
      continue;
    }
    if (it->second.ok) {
      EXPECT_TRUE(d.ok()) << d.status().ToString();
      continue;
    }
    ASSERT_FALSE(d.ok());
    EXPECT_EQ(d.status().code(), it->second.code) << d.status().ToString();
    EXPECT_NE(d.status().message().find(it->second.words), std::string::npos) << d.status().ToString();
    EXPECT_NE(d.status().message().find(row["file"]), std::string::npos) << "error must name the file";
  }
}

TEST(DecodeDicomFile, MissingFile) {
  auto d = DecodeDicomFile("/nonexistent/pxs/nothing.dcm");
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.status().code(), Status::Code::kNotFound);
}

}  // namespace
}  // namespace pxs::imaging
