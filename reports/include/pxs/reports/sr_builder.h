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
#include "pxs/longitudinal/course.h"
#include "pxs/reports/clinical_context.h"

namespace pxs {

// The model's reading of scores and changes (stable_delta, stable_delta_calibrated,
// bands): the longitudinal library's ModelTrend, from the package's "trend" metadata.
using SeverityBand = longitudinal::SeverityBand;
using TrendThresholds = longitudinal::ModelTrend;

struct SrModelInfo {
  std::string name;     // e.g. "pxs-demo-cxr14"
  std::string version;  // e.g. "1.0.0"
  std::string intended_use;
  bool not_for_clinical_use = true;
  std::string calibration_scale;  // empty: the model has no calibration
  std::string calibration_unit;   // UCUM, e.g. "{score}"
  TrendThresholds trend;
  // What the score measures (the package's `finding`), written as each measurement
  // group's Finding (TID 1501); empty scheme: the package does not say, no Finding row.
  std::string finding_scheme, finding_value, finding_meaning;
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
  // sets it for the previous study of the same model (longitudinal::BuildCourses); it
  // is ignored on any other prior.
  std::optional<double> siamese_change;
  int64_t scored_at_ms = 0;  // places a study without StudyDate (the longitudinal rule)
  int64_t score_id = 0;      // orders scores of equal time
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
  // When this score was made: places this study when it has no StudyDate.
  int64_t scored_at_ms = 0;
  // Other scored studies of the same patient (one value per study), any order. The
  // comparison follows the longitudinal rule (pxs/longitudinal/course.h): those dated
  // strictly before this study are listed oldest first; the previous one of the same
  // model name and version is compared, those of another model are listed but not
  // compared; those dated later (received late) are left out.
  std::vector<SrPriorStudy> priors;
  // 1 for the patient's first (baseline) study. 0: derived as 1 + the number of
  // priors not dated after this study.
  int time_point_order = 0;
  // Empty: TrackingUidForPatient(patient id, issuer) of the source image (or, for a
  // patient without id, a UID derived from the study so it is at least stable).
  std::string tracking_uid;
  std::string tracking_identifier = "PXS score";
  // >= 0: replaces model.trend.stable_delta, the raw threshold (config [reports]
  // stable_delta); the calibrated threshold is the model's.
  double stable_delta_override = -1.0;
  // The report version for this study: 1, 2, ... (Instance Number).
  int version = 1;
  std::optional<SrPredecessor> predecessor;
  SrNodeIdentity node;
  // The patient's clinical observations (vitals, labs), any order, may be empty. The SR
  // lists the clinical context of this image in a "Clinical Context" container: per
  // LOINC code the observation nearest to the study time within
  // clinical_context_window_s (ClinicalContextAt); unusable rows are skipped. The
  // trend sheet plots SpO2 from all of them.
  std::vector<ClinicalObservation> observations;
  double clinical_context_window_s = 24 * 3600.0;
};

struct SrResult {
  std::string sop_instance_uid;
  std::string series_uid;
  std::string summary;  // the one-line plain-text summary, also in the SR
  // Source values that could not be copied as they were (not decodable from the source's
  // character set, control characters): each tag and why, no values. For the log.
  std::vector<std::string> text_problems;
  int clinical_items = 0;          // NUM items in the Clinical Context container
  int observations_skipped = 0;    // observations not usable (code, value or time)
};

// Builds the SR and writes it to output_path (the folder must exist). Not synced: the
// caller makes it durable (the node places it with pxs::FileStore before recording it). Errors name the source file or the DCMTK
// call that failed.
StatusOr<SrResult> BuildStructuredReport(const SrInput& input, const std::string& output_path);

// The tracking UID of a model's measurement of a patient: 2.25.<decimal of the first
// 128 bits of SHA-256("PXS" + model name + issuer + patient id)>, the same in every study
// and after restarts, so viewers can link the patient's time points of one model (each
// model its own course; model_name "" gives the one-model era's UID, without it).
std::string TrackingUidForPatient(const std::string& patient_id, const std::string& issuer,
                                  const std::string& model_name = "");

// The Series Instance UID of the node's SRs in a study (all versions share it).
std::string SrSeriesUidForStudy(const std::string& study_uid);

// A prior as a row of the longitudinal rule (its score id and scoring time included).
longitudinal::ScoredInstance ToScoredInstance(const SrPriorStudy& prior);

// The thresholds of the published PXS scale (Li et al. 2020): <2.5 normal/minimal,
// 2.5-5 mild, 5-9 moderate, >9 severe; a change up to 1 point is not meaningful.
inline TrendThresholds PublishedPxsThresholds() { return longitudinal::PublishedPxsTrend(); }

}  // namespace pxs
