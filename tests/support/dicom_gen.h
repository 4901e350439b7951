// Synthetic DICOM files for tests: small, valid frontal chest CR images with the UIDs
// and patient a test asks for (DCMTK writes them; nothing is read from ../shared).
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <random>
#include <string>
#include <vector>

#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcuid.h>

namespace pxs::testing {

struct SyntheticCr {
  std::string patient_id = "TEST-1";
  std::string issuer = "TESTS";
  std::string study_uid;
  std::string series_uid;
  std::string sop_uid;
  std::string study_date = "20260101";
  int rows = 128;
  int cols = 128;
  uint32_t seed = 1;
  // Text as raw bytes in the declared character set (set only when not empty), written
  // as given: embedded or trailing NULs, escape sequences and all.
  std::string specific_character_set;
  std::string patient_name = "SYNTHETIC^PATIENT";
  std::string study_description;  // not written when empty
};

// Puts every byte of `bytes` (NULs included) as the element's value.
inline void PutRawString(DcmDataset* ds, const DcmTagKey& tag, const std::string& bytes) {
  ds->putAndInsertString(tag, bytes.data(), static_cast<Uint32>(bytes.size()), OFTrue);
}

// Writes the CR and returns true on success.
inline bool WriteSyntheticCr(const std::string& path, const SyntheticCr& spec) {
  DcmFileFormat file;
  DcmDataset* ds = file.getDataset();
  ds->putAndInsertString(DCM_SOPClassUID, UID_ComputedRadiographyImageStorage);
  ds->putAndInsertString(DCM_SOPInstanceUID, spec.sop_uid.c_str());
  ds->putAndInsertString(DCM_StudyInstanceUID, spec.study_uid.c_str());
  ds->putAndInsertString(DCM_SeriesInstanceUID, spec.series_uid.c_str());
  if (!spec.specific_character_set.empty()) {
    ds->putAndInsertString(DCM_SpecificCharacterSet, spec.specific_character_set.c_str());
  }
  PutRawString(ds, DCM_PatientName, spec.patient_name);
  PutRawString(ds, DCM_PatientID, spec.patient_id);
  if (!spec.study_description.empty()) PutRawString(ds, DCM_StudyDescription, spec.study_description);
  ds->putAndInsertString(DCM_IssuerOfPatientID, spec.issuer.c_str());
  ds->putAndInsertString(DCM_StudyDate, spec.study_date.c_str());
  ds->putAndInsertString(DCM_StudyTime, "120000");
  ds->putAndInsertString(DCM_Modality, "CR");
  ds->putAndInsertString(DCM_BodyPartExamined, "CHEST");
  ds->putAndInsertString(DCM_ViewPosition, "PA");
  ds->putAndInsertString(DCM_PhotometricInterpretation, "MONOCHROME2");
  ds->putAndInsertUint16(DCM_Rows, static_cast<Uint16>(spec.rows));
  ds->putAndInsertUint16(DCM_Columns, static_cast<Uint16>(spec.cols));
  ds->putAndInsertUint16(DCM_BitsAllocated, 16);
  ds->putAndInsertUint16(DCM_BitsStored, 12);
  ds->putAndInsertUint16(DCM_HighBit, 11);
  ds->putAndInsertUint16(DCM_SamplesPerPixel, 1);
  ds->putAndInsertUint16(DCM_PixelRepresentation, 0);
  std::mt19937 rng(spec.seed);
  std::vector<Uint16> px(static_cast<size_t>(spec.rows) * spec.cols);
  for (int y = 0; y < spec.rows; ++y) {
    for (int x = 0; x < spec.cols; ++x) {
      // A smooth "chest-like" gradient plus noise so every file differs.
      px[static_cast<size_t>(y) * spec.cols + x] =
          static_cast<Uint16>((x * 2000 / spec.cols + y * 1500 / spec.rows + rng() % 500) & 0x0fff);
    }
  }
  ds->putAndInsertUint16Array(DCM_PixelData, px.data(), px.size());
  return file.saveFile(path.c_str(), EXS_LittleEndianExplicit).good();
}

// Writes `count` synthetic CR files of one new study/series into folder (0.dcm, 1.dcm,
// ...), size x size pixels; returns their paths, and each path's SOP Instance UID in sop_of.
inline std::vector<std::string> WriteSyntheticSeries(const std::string& folder, int count, int size,
                                                     std::map<std::string, std::string>* sop_of = nullptr);

// A fresh 2.25 UID (random 96-bit suffix: unique enough for a test run).
inline std::string NewUid() {
  static std::mt19937_64 rng(std::random_device{}());
  return "2.25." + std::to_string(rng() >> 4) + std::to_string(rng() % 100000000 + 100000000);
}

inline std::vector<std::string> WriteSyntheticSeries(const std::string& folder, int count, int size,
                                                     std::map<std::string, std::string>* sop_of) {
  std::filesystem::create_directories(folder);
  std::vector<std::string> files;
  std::string study = NewUid(), series = NewUid();
  for (int i = 0; i < count; ++i) {
    SyntheticCr spec;
    spec.study_uid = study;
    spec.series_uid = series;
    spec.sop_uid = NewUid();
    spec.rows = spec.cols = size;
    spec.seed = static_cast<uint32_t>(i);
    std::string path = folder + "/" + std::to_string(i) + ".dcm";
    if (!WriteSyntheticCr(path, spec)) return {};
    files.push_back(path);
    if (sop_of) (*sop_of)[path] = spec.sop_uid;
  }
  return files;
}

}  // namespace pxs::testing
