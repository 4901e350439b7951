#include "pxs/reports/clinical_context.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>

#include "pxs/longitudinal/course.h"

namespace pxs {
namespace {

bool AllDigits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

int Number(std::string_view s) {
  int v = 0;
  for (char c : s) v = v * 10 + (c - '0');
  return v;
}

}  // namespace

bool IsLoincCode(std::string_view code) {
  const size_t dash = code.find('-');
  if (dash == std::string_view::npos || dash == 0 || dash > 7) return false;
  return AllDigits(code.substr(0, dash)) && code.size() == dash + 2 && AllDigits(code.substr(dash + 1));
}

std::optional<double> ClockSeconds(std::string_view dt) {
  // A trailing UTC offset (+ZZXX / -ZZXX) names the sender's zone; the clock time
  // before it is what is compared (see the header).
  if (dt.size() > 5 && (dt[dt.size() - 5] == '+' || dt[dt.size() - 5] == '-') &&
      AllDigits(dt.substr(dt.size() - 4))) {
    dt.remove_suffix(5);
  }
  std::string_view frac;
  if (const size_t dot = dt.find('.'); dot != std::string_view::npos) {
    frac = dt.substr(dot + 1);
    dt = dt.substr(0, dot);
    if (frac.empty() || frac.size() > 6 || !AllDigits(frac) || dt.size() != 14) return std::nullopt;
  }
  if (!AllDigits(dt) || (dt.size() != 8 && dt.size() != 10 && dt.size() != 12 && dt.size() != 14)) {
    return std::nullopt;
  }
  using namespace std::chrono;
  const year_month_day ymd{year{Number(dt.substr(0, 4))}, month{static_cast<unsigned>(Number(dt.substr(4, 2)))},
                           day{static_cast<unsigned>(Number(dt.substr(6, 2)))}};
  if (!ymd.ok()) return std::nullopt;
  const int hh = dt.size() >= 10 ? Number(dt.substr(8, 2)) : 0;
  const int mm = dt.size() >= 12 ? Number(dt.substr(10, 2)) : 0;
  const int ss = dt.size() >= 14 ? Number(dt.substr(12, 2)) : 0;
  if (hh > 23 || mm > 59 || ss > 60) return std::nullopt;
  double seconds = static_cast<double>(sys_days(ymd).time_since_epoch().count()) * 86400.0 + hh * 3600.0 +
                   mm * 60.0 + ss;
  if (!frac.empty()) seconds += Number(frac) / std::pow(10.0, static_cast<double>(frac.size()));
  return seconds;
}

std::optional<double> StudyClockSeconds(const std::string& study_date, const std::string& study_time,
                                        int64_t scored_at_ms) {
  return ClockSeconds(longitudinal::StudyTimeKey(study_date, study_time, scored_at_ms));
}

bool IsUsableObservation(const ClinicalObservation& o) {
  return IsLoincCode(o.loinc_code) && std::isfinite(o.value) && ClockSeconds(o.observed_at).has_value();
}

const ClinicalObservation* NearestObservation(const std::vector<ClinicalObservation>& all,
                                              const std::vector<std::string>& codes, double at,
                                              double window_s) {
  const ClinicalObservation* best = nullptr;
  double best_distance = 0, best_time = 0;
  for (const ClinicalObservation& o : all) {
    if (std::find(codes.begin(), codes.end(), o.loinc_code) == codes.end() || !IsUsableObservation(o)) continue;
    const double t = *ClockSeconds(o.observed_at);
    const double d = std::fabs(t - at);
    if (d > window_s) continue;
    if (!best || d < best_distance || (d == best_distance && t < best_time)) {
      best = &o;
      best_distance = d;
      best_time = t;
    }
  }
  return best;
}

std::vector<ClinicalObservation> ClinicalContextAt(const std::vector<ClinicalObservation>& all, double at,
                                                   double window_s, int* skipped) {
  std::map<std::string, const ClinicalObservation*> by_code;
  int bad = 0;
  for (const ClinicalObservation& o : all) {
    if (!IsUsableObservation(o)) {
      ++bad;
      continue;
    }
    const ClinicalObservation*& slot = by_code[o.loinc_code];
    if (!slot) slot = NearestObservation(all, {o.loinc_code}, at, window_s);
  }
  if (skipped) *skipped = bad;
  std::vector<ClinicalObservation> out;
  for (const auto& [code, o] : by_code) {
    if (o) out.push_back(*o);
  }
  return out;
}

}  // namespace pxs
