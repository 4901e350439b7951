// pxs::ReportMaker turns a scored job into the study's Structured Report: it gathers
// the patient's scored history from the database, applies the longitudinal rule
// (pxs/longitudinal/course.h: study value, previous study of the same model, change,
// trend), computes the Siamese change to that previous study, builds the SR (reports/),
// writes it under data_dir/reports/<study>/ and records it in the outbox for each
// configured destination.
#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "pxs/common/status.h"
#include "pxs/config/config.h"
#include "pxs/storage/database.h"
#include "pxs/storage/observations.h"

namespace pxs {

class FileStore;

struct SrInput;

namespace scoring {
struct ModelInfo;
}

struct ReportMakerOptions {
  std::string data_dir;
  std::string ae_title;
  std::string software_version;
  std::vector<std::string> send_to;  // destination names and/or "caller"
  double stable_delta_override = -1.0;
  // The data folder's owner (SR paths, durable placement); nullptr: the maker makes its
  // own on data_dir. Must outlive the maker.
  FileStore* file_store = nullptr;
  // Clinical observations (HL7 v2 / FHIR, issue 15) for the SR's "Clinical Context"
  // container (per LOINC code the nearest within clinical_window_s of the image) and the
  // trend sheet's SpO2 panel and table; nullptr: none. Must outlive the maker.
  ObservationStore* observations = nullptr;
  double clinical_window_s = 24 * 3600.0;
  // [reports] trend_sheet: a Secondary Capture (reports/trend_sheet.h) beside each SR
  // version, queued to the SR's destinations.
  bool trend_sheet = false;
};

// The metadata of the model version that made a score (package name, version); nullptr
// when that version is unknown here.
using ModelLookup =
    std::function<std::shared_ptr<const scoring::ModelInfo>(const std::string& model_name, const std::string& version)>;

class ReportMaker {
 public:
  // on_recorded is called after a report was queued in the outbox (e.g. to wake the sender).
  // Each model has its own SR of a study (docs/models.md): the SR of a score is that
  // model's, interpreted with the metadata `models` gives for its version.
  ReportMaker(const ReportMakerOptions& options, Database* db, ModelLookup models, std::function<void()> on_recorded);
  ~ReportMaker();

  // Builds, writes and records the SR for the study of `job`. Returns the SR's SOP
  // Instance UID, or "" when another image of the study was scored later: that image
  // stands for the study (the longitudinal rule) and its own report follows.
  StatusOr<std::string> MakeReport(const Job& job, const ScoreRecord& score);

  // SIGHUP: new destinations list.
  void SetSendTo(const std::vector<std::string>& send_to);

 private:
  void MakeTrendSheet(const SrInput& in, const Job& job, const ScoreRecord& score, const std::string& sr_rel,
                      const std::vector<std::string>& destinations);

  ReportMakerOptions options_;
  Database* db_;
  ModelLookup models_;
  std::function<void()> on_recorded_;
  std::string device_observer_uid_;
  std::unique_ptr<FileStore> own_store_;
  FileStore* store_;
  std::mutex mu_;  // guards options_.send_to
};

}  // namespace pxs
