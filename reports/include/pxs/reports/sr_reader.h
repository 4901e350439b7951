// Reads the numbers back out of an SR written by BuildStructuredReport(), with DCMTK's
// DSRDocument: for tests that compare them with the database and for `pxsctl` to show
// what was sent.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "pxs/common/status.h"
#include "pxs/reports/clinical_context.h"

namespace pxs {

// One measurement group of the SR (the current study or one prior).
struct SrMeasurementGroupContent {
  std::string tracking_identifier;
  std::string tracking_uid;
  std::string time_point;             // e.g. "2026-03-02"
  std::string time_point_type;        // code meaning: "Baseline", "Follow-up", "Prior"
  std::optional<int> time_point_order;
  std::string study_uid;              // the study the group's values belong to
  std::optional<double> pxs;
  std::optional<double> calibrated;
  std::optional<double> pxs_change;       // current group only, vs the most recent prior
  std::optional<double> siamese_change;   // current group only
  std::optional<double> calibrated_change;        // current group only, both calibrated
  std::optional<double> stable_delta;             // current group: the raw threshold in force
  std::optional<double> stable_delta_calibrated;  // current group, when the trend used it
  std::string severity_band;                      // current group
  // longitudinal::TrendText of the trend code; "" when the SR has none (not compared).
  std::string trend;
  std::string algorithm_name;
  std::string algorithm_version;
  std::vector<std::string> algorithm_parameters;
  std::string comparison_note;            // e.g. why a prior is not compared
};

struct SrContent {
  std::string sop_instance_uid;
  std::string series_uid;
  std::string study_uid;
  std::string patient_id;
  std::string completion_flag;    // "COMPLETE"
  std::string verification_flag;  // "UNVERIFIED"
  std::vector<std::string> predecessor_sop_instance_uids;
  std::vector<std::string> referenced_image_uids;  // image library entries
  std::string summary;
  std::string intended_use;
  std::vector<SrMeasurementGroupContent> groups;  // [0] is the current study
  // The "Clinical Context" container's NUM items, in SR order (display = code meaning,
  // unit = UCUM code, observed_at = the item's Observation DateTime).
  std::vector<ClinicalObservation> clinical_context;
};

StatusOr<SrContent> ReadStructuredReport(const std::string& path);

}  // namespace pxs
