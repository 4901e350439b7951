#include "pxs/routing/route.h"

#include <algorithm>
#include <cctype>

namespace pxs::routing {
namespace {

std::string Upper(std::string s) {
  for (char& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

bool AnyOf(const std::vector<std::string>& allowed, const std::string& value) {
  if (allowed.empty()) return true;
  const std::string v = Upper(value);
  return std::any_of(allowed.begin(), allowed.end(), [&](const std::string& a) { return Upper(a) == v; });
}

std::string List(const std::vector<std::string>& values) {
  std::string out;
  for (const std::string& v : values) out += (out.empty() ? "" : ", ") + (v.empty() ? std::string("(none)") : v);
  return out;
}

// "BodyPartExamined HAND is not one of CHEST, (none)", or "" when the value is allowed.
std::string Check(const char* attribute, const std::vector<std::string>& allowed, const std::string& value) {
  if (AnyOf(allowed, value)) return "";
  return std::string(attribute) + " " + (value.empty() ? std::string("(none)") : value) + " is not one of " +
         List(allowed);
}

}  // namespace

Route Route::DefaultChest() {
  Route r;
  r.body_part = {"CHEST", ""};
  r.view_position = {"PA", "AP", ""};
  return r;
}

const std::vector<std::string>& RouteKeys() {
  static const std::vector<std::string> keys = {"modality",     "sop_class", "body_part", "view_position",
                                                "calling_ae",   "station_name", "min_rows", "min_columns"};
  return keys;
}

std::string WhyNotSelected(const Route& route, const InstanceFacts& f) {
  for (const std::string& why : {Check("Modality", route.modality, f.modality),
                                 Check("SOPClassUID", route.sop_class, f.sop_class_uid),
                                 Check("BodyPartExamined", route.body_part, f.body_part),
                                 Check("ViewPosition", route.view_position, f.view_position),
                                 Check("calling AE", route.calling_ae, f.calling_ae),
                                 Check("StationName", route.station_name, f.station_name)}) {
    if (!why.empty()) return why;
  }
  if (f.rows < route.min_rows) {
    return "Rows " + std::to_string(f.rows) + " below the route's min_rows " + std::to_string(route.min_rows);
  }
  if (f.columns < route.min_columns) {
    return "Columns " + std::to_string(f.columns) + " below the route's min_columns " +
           std::to_string(route.min_columns);
  }
  return "";
}

Decision Router::Decide(const InstanceFacts& facts) const {
  Decision d;
  std::string reasons;
  for (const RoutedModel& m : models_) {
    std::string why = WhyNotSelected(m.route, facts);
    if (why.empty()) {
      d.models.push_back(m.name);
    } else {
      reasons += (reasons.empty() ? "" : "; ") + (m.name.empty() ? std::string("model") : m.name) + ": " + why;
    }
  }
  if (d.models.empty()) {
    d.no_model_reason = models_.empty() ? "no model applies (no model is configured)" : "no model applies (" + reasons + ")";
  }
  return d;
}

}  // namespace pxs::routing
