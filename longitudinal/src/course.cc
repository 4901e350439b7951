// The longitudinal rule (see course.h for the rule in words).
#include "pxs/longitudinal/course.h"

#include <fmt/chrono.h>
#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <map>
#include <tuple>

#include <nlohmann/json.hpp>

namespace pxs::longitudinal {
namespace {

bool AllDigits(const std::string& s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](unsigned char c) { return std::isdigit(c) != 0; });
}

// DICOM TM (HH, HHMM, HHMMSS, HHMMSS.F..., or the old HH:MM:SS) as "HHMMSS.ffffff";
// anything else reads as the start of the day.
std::string NormalizedTime(std::string tm) {
  tm.erase(std::remove(tm.begin(), tm.end(), ':'), tm.end());
  while (!tm.empty() && tm.back() == ' ') tm.pop_back();
  const size_t dot = tm.find('.');
  std::string whole = tm.substr(0, dot);
  std::string fraction = dot == std::string::npos ? std::string() : tm.substr(dot + 1);
  if (whole.empty() || whole.size() > 6 || whole.size() % 2 != 0 || !AllDigits(whole) ||
      (!fraction.empty() && !AllDigits(fraction))) {
    return "000000.000000";
  }
  whole.resize(6, '0');
  fraction.resize(6, '0');
  return whole + "." + fraction;
}

// A later point in the course order: time, then scoring order.
bool OrderedBefore(const StudyPoint& a, const StudyPoint& b) {
  return std::tie(a.time_key, a.value.scored_at_ms, a.value.score_id, a.value.study_uid) <
         std::tie(b.time_key, b.value.scored_at_ms, b.value.score_id, b.value.study_uid);
}

// Which of two scored instances of one study stands for it: the later scored.
bool ScoredLater(const ScoredInstance& a, const ScoredInstance& b) {
  return std::tie(a.scored_at_ms, a.score_id) > std::tie(b.scored_at_ms, b.score_id);
}

Trend Classify(double change, double delta) {
  if (std::fabs(change) <= delta) return Trend::kStable;
  return change > 0 ? Trend::kWorse : Trend::kBetter;
}

}  // namespace

const char* TrendText(Trend trend) {
  switch (trend) {
    case Trend::kBetter: return "better";
    case Trend::kStable: return "stable";
    case Trend::kWorse: return "worse";
    case Trend::kNotCompared: break;
  }
  return "not compared";
}

ModelTrend PublishedPxsTrend() {
  ModelTrend t;
  t.stable_delta = 1.0;
  t.bands = {{2.5, "normal/minimal"}, {5.0, "mild"}, {9.0, "moderate"}, {std::nullopt, "severe"}};
  return t;
}

std::optional<ModelTrend> ModelTrendFromMetadata(const std::string& metadata_json) {
  using Json = nlohmann::json;
  const Json root = Json::parse(metadata_json, nullptr, /*allow_exceptions=*/false);
  if (!root.is_object()) return std::nullopt;
  ModelTrend out;
  const auto trend = root.find("trend");
  if (trend == root.end() || !trend->is_object()) return out;
  auto non_negative = [&](const char* key) -> std::optional<double> {
    auto it = trend->find(key);
    if (it == trend->end() || !it->is_number() || it->get<double>() < 0) return std::nullopt;
    return it->get<double>();
  };
  if (auto d = non_negative("stable_delta")) out.stable_delta = *d;
  out.stable_delta_calibrated = non_negative("stable_delta_calibrated");
  if (auto bands = trend->find("bands"); bands != trend->end() && bands->is_array()) {
    for (const Json& b : *bands) {
      if (!b.is_object() || !b.contains("label") || !b["label"].is_string()) continue;
      SeverityBand band;
      band.label = b["label"].get<std::string>();
      if (b.contains("upper") && b["upper"].is_number()) band.upper = b["upper"].get<double>();
      out.bands.push_back(std::move(band));
    }
  }
  return out;
}

std::string BandFor(const std::vector<SeverityBand>& bands, double pxs) {
  for (const SeverityBand& band : bands) {
    if (!band.upper || pxs < *band.upper) return band.label;
  }
  return {};
}

std::string StudyTimeKey(const std::string& study_date, const std::string& study_time, int64_t scored_at_ms) {
  if (study_date.size() == 8 && AllDigits(study_date)) return study_date + NormalizedTime(study_time);
  // No usable date: the study is placed when its value was scored (UTC).
  const std::time_t seconds = static_cast<std::time_t>(scored_at_ms / 1000);
  const int millis = static_cast<int>(((scored_at_ms % 1000) + 1000) % 1000);
  return fmt::format("{:%Y%m%d%H%M%S}.{:03d}000", fmt::gmtime(seconds), millis);
}

Comparison Compare(const ScoredInstance& current, const ScoredInstance& previous, const ModelTrend& trend) {
  Comparison c;
  c.change = current.pxs - previous.pxs;
  if (current.calibrated && previous.calibrated) c.calibrated_change = *current.calibrated - *previous.calibrated;
  if (c.calibrated_change && trend.stable_delta_calibrated) {
    c.on_calibrated_scale = true;
    c.stable_delta_used = *trend.stable_delta_calibrated;
    c.trend = Classify(*c.calibrated_change, c.stable_delta_used);
  } else {
    c.stable_delta_used = trend.stable_delta;
    c.trend = Classify(*c.change, c.stable_delta_used);
  }
  return c;
}

const StudyPoint* Course::Find(const std::string& study_uid) const {
  for (const StudyPoint& p : studies) {
    if (p.value.study_uid == study_uid) return &p;
  }
  return nullptr;
}

std::vector<Course> BuildCourses(const std::vector<ScoredInstance>& rows, const TrendLookup& trend_of,
                                 const CourseOptions& options) {
  // model -> study -> its value and how many of its instances the model scored
  std::map<ModelId, std::map<std::string, StudyPoint>> by_model;
  for (const ScoredInstance& row : rows) {
    StudyPoint& point = by_model[row.model][row.study_uid];
    if (point.scored_instances == 0 || ScoredLater(row, point.value)) point.value = row;
    ++point.scored_instances;
  }
  std::vector<Course> courses;
  for (auto& [model, studies] : by_model) {
    Course course;
    course.model = model;
    course.trend = trend_of ? trend_of(model) : ModelTrend{};
    if (options.stable_delta_override) course.trend.stable_delta = *options.stable_delta_override;
    for (auto& [uid, point] : studies) {
      point.time_key = StudyTimeKey(point.value.study_date, point.value.study_time, point.value.scored_at_ms);
      point.band = BandFor(course.trend.bands, point.value.pxs);
      course.studies.push_back(std::move(point));
    }
    std::sort(course.studies.begin(), course.studies.end(), OrderedBefore);
    for (size_t i = 0; i < course.studies.size(); ++i) {
      StudyPoint& point = course.studies[i];
      // The latest study placed strictly earlier; equal times are not priors of each other.
      for (size_t j = i; j-- > 0;) {
        if (course.studies[j].time_key < point.time_key) {
          point.previous = j;
          break;
        }
      }
      if (point.previous) point.comparison = Compare(point.value, course.studies[*point.previous].value, course.trend);
    }
    courses.push_back(std::move(course));
  }
  return courses;
}

}  // namespace pxs::longitudinal
