// pxs::longitudinal: THE longitudinal rule of PXS Node, in one place. The SR (reports/,
// pipeline/), `pxsctl history` and `pxsctl export` all call it; tools/pxsmodel mirrors it
// in Python and a test runs both on the same tables. Pure C++: no SQL, no DCMTK, no
// LibTorch; callers hand in plain rows (storage/ provides them).
//
// The rule (docs/sr-content.md "Longitudinal rule" says the same for readers):
// - A course is one patient (PatientID + issuer) under ONE model (same name AND
//   version). A study scored by several models is in several courses; courses are
//   never compared with each other.
// - A study's value is its latest-scored instance by that model (tie: higher score id).
// - A study's time is its StudyDate + StudyTime (missing time = 00:00:00). A study
//   without StudyDate is placed at the UTC scoring time of its value instance.
// - Priors are the course's studies whose time is strictly earlier; the previous study
//   is the latest of them (tie: the one scored later). A study dated later is never a
//   prior, whatever order the studies arrived in.
// - change = value - previous (raw PXS); calibrated_change = the difference of the
//   calibrated values when both have one.
// - The trend compares calibrated_change with trend.stable_delta_calibrated when both
//   values are calibrated and the model has that threshold, else change with
//   trend.stable_delta (an override, e.g. [reports] stable_delta, replaces the latter):
//   |d| <= delta stable, d > delta worse, d < -delta better; no previous: not
//   compared. Each course uses the thresholds of its own model.
// - The severity band is the first band whose upper bound is null or above the raw PXS.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace pxs::longitudinal {

// One vocabulary for every surface; the SR maps it to its coded concepts (reports/).
enum class Trend { kNotCompared, kBetter, kStable, kWorse };
// "not compared", "better", "stable", "worse" (the words pxsctl and tools/pxsmodel use;
// the SR codes them as IMPROVED / STABLE / WORSENED, reports/).
const char* TrendText(Trend trend);

struct SeverityBand {
  std::optional<double> upper;  // exclusive upper bound of the raw PXS; none: open-ended
  std::string label;
};

// A model's reading of changes and scores: the "trend" block of its metadata.json.
struct ModelTrend {
  double stable_delta = 1.0;                       // raw PXS units
  std::optional<double> stable_delta_calibrated;   // calibrated-scale units, optional
  std::vector<SeverityBand> bands;                 // ascending; may be empty
};

// The published PXS reading (Li et al. 2020): <2.5 normal/minimal, 2.5-5 mild, 5-9
// moderate, >9 severe; a change up to 1 point is not meaningful.
ModelTrend PublishedPxsTrend();

// Reads "trend" (stable_delta, stable_delta_calibrated, bands) from a model package's
// metadata.json as stored in the database. Keys that are absent or malformed keep the
// defaults of ModelTrend (so an old package still reads); nullopt when the text is not
// a JSON object at all.
std::optional<ModelTrend> ModelTrendFromMetadata(const std::string& metadata_json);

// The label of the first band whose upper bound is null or above pxs; "" when none.
std::string BandFor(const std::vector<SeverityBand>& bands, double pxs);

struct ModelId {
  std::string name;
  std::string version;
  std::string Label() const { return version.empty() ? name : name + " " + version; }
  friend bool operator==(const ModelId& a, const ModelId& b) { return a.name == b.name && a.version == b.version; }
  friend bool operator<(const ModelId& a, const ModelId& b) {
    return a.name != b.name ? a.name < b.name : a.version < b.version;
  }
};

// One scored instance of the patient (what storage returns, one row per score).
struct ScoredInstance {
  std::string study_uid;
  std::string study_date;  // DICOM DA (YYYYMMDD), may be empty
  std::string study_time;  // DICOM TM, may be empty
  std::string sop_instance_uid;
  ModelId model;
  double pxs = 0;
  std::optional<double> calibrated;
  std::string calibrated_scale;
  int64_t scored_at_ms = 0;
  int64_t score_id = 0;  // breaks ties of scored_at_ms: the higher id was scored later
};

// The time a study is placed at, as a sortable text "YYYYMMDDHHMMSS.ffffff": the
// study date and time, or the UTC scoring time when the date is missing.
std::string StudyTimeKey(const std::string& study_date, const std::string& study_time, int64_t scored_at_ms);

// The comparison of one study with its previous one.
struct Comparison {
  std::optional<double> change;             // raw PXS, value - previous
  std::optional<double> calibrated_change;  // when both have a calibrated value
  Trend trend = Trend::kNotCompared;
  bool on_calibrated_scale = false;  // the trend compared calibrated_change
  double stable_delta_used = 0;      // the threshold it was compared with (its scale)
};

// Compares current with previous under a model's thresholds (the trend step of the
// rule on its own; BuildCourses uses it for every study).
Comparison Compare(const ScoredInstance& current, const ScoredInstance& previous, const ModelTrend& trend);

// One study of one course.
struct StudyPoint {
  ScoredInstance value;   // the instance that stands for the study
  std::string time_key;   // StudyTimeKey of the study
  int scored_instances = 0;           // instances of the study scored by this model
  std::optional<size_t> previous;     // index in Course::studies
  Comparison comparison;              // trend kNotCompared when there is no previous
  std::string band;                   // BandFor(model bands, value.pxs)
};

struct Course {
  ModelId model;
  ModelTrend trend;                 // the thresholds in force (override applied)
  std::vector<StudyPoint> studies;  // oldest first
  const StudyPoint* Find(const std::string& study_uid) const;
};

struct CourseOptions {
  std::optional<double> stable_delta_override;  // replaces every model's stable_delta
};

// The thresholds of a model, e.g. from the metadata the database stored for it.
using TrendLookup = std::function<ModelTrend(const ModelId&)>;

// One course per model found in rows (one patient's scored instances, any order),
// sorted by model name and version.
std::vector<Course> BuildCourses(const std::vector<ScoredInstance>& rows, const TrendLookup& trend_of,
                                 const CourseOptions& options = {});

}  // namespace pxs::longitudinal
