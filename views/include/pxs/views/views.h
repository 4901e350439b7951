// pxs::views: THE mapper from the admin database's rows to JSON. `pxsctl --json` and the
// node's HTTP API (/api/v1, http/) both print these, so the two always agree. Reads go
// through storage's AdminDatabase only; the longitudinal rule is pxs::longitudinal's.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "pxs/common/status.h"
#include "pxs/longitudinal/course.h"
#include "pxs/storage/admin.h"
#include "pxs/storage/observations.h"

namespace pxs::views {

using Json = nlohmann::ordered_json;

// The longitudinal library fed from the database: each model's thresholds come from
// the metadata the node stored for that name and version (never from another model),
// the raw stable_delta replaced by an override (--stable-delta, [reports] stable_delta).
class CourseBuilder {
 public:
  CourseBuilder(AdminDatabase& db, std::optional<double> stable_delta_override);
  std::vector<longitudinal::Course> Build(const std::vector<longitudinal::ScoredInstance>& rows);

 private:
  longitudinal::ModelTrend TrendOf(const longitudinal::ModelId& model);

  AdminDatabase& db_;
  longitudinal::CourseOptions options_;
  std::map<longitudinal::ModelId, longitudinal::ModelTrend> cache_;
};

// Whether a model filter (a name, or "name version") selects this model; empty selects all.
bool ModelSelected(const std::string& filter, const longitudinal::ModelId& model);

struct HistoryQuery {
  std::string patient_id;
  std::optional<std::string> issuer;  // unset: the id must be unique across issuers
  std::string model;                  // "" every model
  std::optional<double> stable_delta_override;
  // Clinical context (issue 15): beside each study the nearest SpO2 / O2 / CRP within
  // clinical_window_h of the study time, read from this store; nullptr: none.
  ObservationStore* observations = nullptr;
  double clinical_window_h = 24.0;
};

// The observations nearest to one study (each unset when none is in the window).
struct StudyClinical {
  std::optional<Observation> spo2;  // 59408-5 or 2708-6
  std::optional<Observation> o2;    // O2 flow 3151-8, else FiO2 3150-0
  std::optional<Observation> crp;   // 1988-5 or 30522-7
};

struct History {
  PatientKey key;
  std::vector<StudyHistoryEntry> studies;
  std::vector<longitudinal::Course> courses;
  // By Study Instance UID; empty without HistoryQuery::observations.
  std::map<std::string, StudyClinical> clinical;
  std::optional<double> clinical_window_h;  // set when clinical was looked up
};

// One patient's studies and courses. NotFound: unknown id or no studies; InvalidArgument:
// the id exists under several issuers and none was given (the message lists them).
StatusOr<History> LoadHistory(AdminDatabase& db, const HistoryQuery& query);

Json OptionalJson(const std::optional<double>& v);
Json OptionalTimeJson(const std::optional<int64_t>& ms);

Json PatientsJson(const std::vector<PatientSummary>& patients);
Json HistoryJson(const History& history);
// {"loinc", "display", "value", "unit", "observed_at" (the sender's text), "hours_from_study"}
// or null.
Json ClinicalJson(const std::optional<Observation>& o, const std::string& study_date, const std::string& study_time);
Json StudiesJson(const std::vector<StudyDetails>& studies);
Json DeliveryJson(const ReportDelivery& d);
Json QueueJson(const QueueView& view);
Json FailuresJson(const FailuresView& view);
Json StatsJson(const Stats& stats);
Json AuditJson(const std::vector<AuditEntry>& entries);
// A retry's outcome (also the audit row's details): target, counts or the error.
Json RetryJson(const std::string& target, const StatusOr<RetryResult>& result);
// A model as stored by the node: name, version, not_for_clinical_use and its metadata
// (model card fields) parsed; metadata null when it is not JSON.
Json ModelJson(const std::string& name, const std::string& version, const std::string& metadata_json);

}  // namespace pxs::views
