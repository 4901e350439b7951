// pxs::reports: builds the DICOM Structured Report (TID 1500 "Measurement Report",
// Enhanced SR) that carries a study's PXS score and its comparison with the
// patient's prior studies back to PACS. The content (every code, every row) is listed
// in docs/sr-content.md.
//
// The input is a plain struct so that this module needs neither the scoring engine
// nor the database: the pipeline gathers the numbers and calls BuildStructuredReport().
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "pxs/common/status.h"

namespace pxs {

// A severity band of the model's scale: scores below `upper` (or any score when
// upper is empty, the last band) read as `label`.
struct SeverityBand {
  std::optional<double> upper;
  std::string label;
};

// How a change between two PXS values is read. From the model package's metadata
// ("trend"), possibly overridden by the config ([reports] stable_delta).
struct TrendThresholds {
  double stable_delta = 1.0;        // |change| below this is "stable" (not meaningful)
  std::vector<SeverityBand> bands;  // ascending; may be empty (no band reported)
};

struct SrModelInfo {
  std::string name;     // e.g. "pxs-demo-cxr14"
  std::string version;  // e.g. "1.0.0"
  std::string intended_use;
  bool not_for_clinical_use = true;
  std::string calibration_scale;  // empty: the model has no calibration
  std::string calibration_unit;   // UCUM, e.g. "{score}"
  TrendThresholds trend;
};

// An image the score was computed from (referenced in the image library).
struct SrScoredImage {
  std::string sop_class_uid;
  std::string sop_instance_uid;
  std::string series_uid;  // empty: the source image's series
};

// An earlier scored study of the same patient.
struct SrPriorStudy {
  std::string study_uid;
  std::string study_date;  // DICOM DA (YYYYMMDD), may be empty
  std::string study_time;  // DICOM TM, may be empty
  std::string sop_instance_uid;  // the scored image of that study, may be empty
  double pxs = 0;
  std::optional<double> calibrated;
  std::string model_name;
  std::string model_version;
  // Embedding distance between this prior's image and the current one. The caller
  // sets it for the most recent prior scored with the same model; it is ignored on
  // any other prior.
  std::optional<double> siamese_change;
};

// The SR this one replaces (a new version after another image of the study came in).
struct SrPredecessor {
  std::string sop_instance_uid;
  std::string sop_class_uid;  // empty: the class this builder writes (Enhanced SR)
  std::string series_uid;  // empty: SrSeriesUidForStudy(study)
  std::string study_uid;   // empty: the source image's study
};

// Who made the report: the node, as device observer and in the equipment module.
struct SrNodeIdentity {
  std::string manufacturer = "PXS Node";
  std::string model_name = "PXS Node";
  std::string software_version;
  std::string device_serial_number;  // may be empty
  std::string device_observer_uid;   // a stable UID of this node installation
  std::string device_observer_name;  // e.g. the host name
  std::string station_name;          // e.g. the AE title
  std::string ae_title;
};

struct SrInput {
  // The scored DICOM file: Patient and General Study modules, the character set and
  // the image reference are copied from it.
  std::string source_image_path;
  // The image(s) the score belongs to; empty means the source image alone.
  std::vector<SrScoredImage> scored_images;
  SrModelInfo model;
  double pxs = 0;
  std::optional<double> calibrated;
  // Other scored studies of the same patient, any order (sorted by date/time inside).
  // Those scored by another model name or version are listed but not compared
  // numerically; those dated after this study (received late) are left out.
  std::vector<SrPriorStudy> priors;
  // 1 for the patient's first (baseline) study. 0: derived as 1 + the number of
  // priors not dated after this study.
  int time_point_order = 0;
  // Empty: TrackingUidForPatient(patient id, issuer) of the source image (or, for a
  // patient without id, a UID derived from the study so it is at least stable).
  std::string tracking_uid;
  std::string tracking_identifier = "PXS score";
  // >= 0: replaces model.trend.stable_delta (config [reports] stable_delta).
  double stable_delta_override = -1.0;
  // The report version for this study: 1, 2, ... (Instance Number).
  int version = 1;
  std::optional<SrPredecessor> predecessor;
  SrNodeIdentity node;
};

struct SrResult {
  std::string sop_instance_uid;
  std::string series_uid;
  std::string summary;  // the one-line plain-text summary, also in the SR
};

// Builds the SR and writes it durably to output_path (temp file + fsync + rename +
// folder fsync); the folder must exist. Errors name the source file or the DCMTK
// call that failed.
StatusOr<SrResult> BuildStructuredReport(const SrInput& input, const std::string& output_path);

// The tracking UID of the PXS measurement of a patient: 2.25.<decimal of the first
// 128 bits of SHA-256("PXS" + issuer + patient id)>, the same in every study and
// after restarts, so viewers can link the patient's time points.
std::string TrackingUidForPatient(const std::string& patient_id, const std::string& issuer);

// The Series Instance UID of the node's SRs in a study (all versions share it).
std::string SrSeriesUidForStudy(const std::string& study_uid);

// The qualitative reading of a change from prior_pxs to pxs.
enum class PxsTrend { kImproved, kStable, kWorsened };
PxsTrend ClassifyTrend(double pxs, double prior_pxs, double stable_delta);
const char* PxsTrendName(PxsTrend trend);  // "improved", "stable", "worsened"

// The band label for a score, or "" when the thresholds have no bands.
std::string SeverityBandLabel(const TrendThresholds& thresholds, double pxs);

// The thresholds of the published PXS scale (Li et al. 2020): <2.5 normal/minimal,
// 2.5-5 mild, 5-9 moderate, >9 severe; a change under 1 point is not meaningful.
TrendThresholds PublishedPxsThresholds();

}  // namespace pxs
