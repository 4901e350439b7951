// Test-only: the longitudinal library's course as JSON, for the cross test with the
// Python mirror (tools/pxsmodel/longitudinal.py, longitudinal/tests/cross_test.py).
//
// stdin: [{"name": ..., "model": {metadata.json of the model: name, version, trend},
//          "rows": [{"study", "study_date", "study_time", "pxs", "calibrated",
//                    "model_name", "model_version", "scored_at", "score_id"}]}, ...]
// stdout: [{"name": ..., "course": [{"study", "value", "calibrated", "previous",
//          "change", "calibrated_change", "trend", "band"}, ...]}, ...]
// The course printed is the one of "model" (other models' rows are in the table to
// show they are never compared).
#include <iostream>
#include <iterator>
#include <nlohmann/json.hpp>

#include "pxs/longitudinal/course.h"

using Json = nlohmann::json;
namespace lg = pxs::longitudinal;

namespace {

std::optional<double> OptionalNumber(const Json& j, const char* key) {
  if (!j.contains(key) || j[key].is_null()) return std::nullopt;
  return j[key].get<double>();
}

Json Number(const std::optional<double>& v) { return v ? Json(*v) : Json(nullptr); }

Json CourseOf(const Json& table) {
  const Json& model = table["model"];
  const lg::ModelId id{model.value("name", ""), model.value("version", "")};
  const lg::ModelTrend trend = lg::ModelTrendFromMetadata(model.dump()).value_or(lg::ModelTrend{});
  std::vector<lg::ScoredInstance> rows;
  for (const Json& r : table["rows"]) {
    lg::ScoredInstance s;
    s.study_uid = r.at("study").get<std::string>();
    s.study_date = r.value("study_date", "");
    s.study_time = r.value("study_time", "");
    s.pxs = r.at("pxs").get<double>();
    s.calibrated = OptionalNumber(r, "calibrated");
    s.model = {r.value("model_name", ""), r.value("model_version", "")};
    s.scored_at_ms = r.value("scored_at", int64_t{0});
    s.score_id = r.value("score_id", int64_t{0});
    s.sop_instance_uid = s.study_uid + "/" + std::to_string(s.score_id);
    rows.push_back(std::move(s));
  }
  const auto courses = lg::BuildCourses(rows, [&](const lg::ModelId& m) {
    return m == id ? trend : lg::ModelTrend{};
  });
  Json out = Json::array();
  for (const lg::Course& c : courses) {
    if (!(c.model == id)) continue;
    for (const lg::StudyPoint& p : c.studies) {
      out.push_back({{"study", p.value.study_uid},
                     {"value", p.value.pxs},
                     {"calibrated", Number(p.value.calibrated)},
                     {"previous", p.previous ? Json(c.studies[*p.previous].value.study_uid) : Json(nullptr)},
                     {"change", Number(p.comparison.change)},
                     {"calibrated_change", Number(p.comparison.calibrated_change)},
                     {"trend", lg::TrendText(p.comparison.trend)},
                     {"band", p.band}});
    }
  }
  return out;
}

}  // namespace

int main() {
  const std::string input((std::istreambuf_iterator<char>(std::cin)), std::istreambuf_iterator<char>());
  const Json tables = Json::parse(input, nullptr, /*allow_exceptions=*/false);
  if (!tables.is_array()) {
    std::cerr << "course_json: stdin is not a JSON array of tables\n";
    return 2;
  }
  Json out = Json::array();
  for (const Json& t : tables) out.push_back({{"name", t.value("name", "")}, {"course", CourseOf(t)}});
  std::cout << out.dump(1) << '\n';
  return 0;
}
