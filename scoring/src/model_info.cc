#include "pxs/scoring/model_info.h"

#include <algorithm>
#include <cmath>

#include <nlohmann/json.hpp>

namespace pxs::scoring {

double Calibration::Apply(double raw) const {
  if (points.empty()) return raw;
  if (raw <= points.front().first) return points.front().second;
  if (raw >= points.back().first) return points.back().second;
  auto hi = std::upper_bound(points.begin(), points.end(), raw,
                             [](double v, const std::pair<double, double>& p) { return v < p.first; });
  auto lo = hi - 1;
  double t = (raw - lo->first) / (hi->first - lo->first);
  return lo->second + t * (hi->second - lo->second);
}

namespace {

using Json = nlohmann::json;

// The member `key` of an object, or nullptr (also when `parent` is not an object).
const Json* Find(const Json& parent, const std::string& key) {
  if (!parent.is_object()) return nullptr;
  auto it = parent.find(key);
  return it == parent.end() ? nullptr : &*it;
}

// Reads typed members of metadata.json and collects every problem, so one error
// message lists everything a package author has to fix, not just the first key.
class MetadataReader {
 public:
  void Missing(const std::string& key) { problems_.push_back("missing key '" + key + "'"); }
  void Invalid(const std::string& key, const std::string& why) {
    problems_.push_back("key '" + key + "' " + why);
  }

  const Json* Get(const Json& parent, const std::string& prefix, const std::string& key) {
    const Json* v = Find(parent, key);
    if (v == nullptr || v->is_null()) {
      Missing(prefix + key);
      return nullptr;
    }
    return v;
  }
  std::string String(const Json& parent, const std::string& prefix, const std::string& key) {
    const Json* v = Get(parent, prefix, key);
    if (v == nullptr) return {};
    if (!v->is_string()) {
      Invalid(prefix + key, "must be a string");
      return {};
    }
    if (v->get_ref<const std::string&>().empty()) Invalid(prefix + key, "must not be empty");
    return v->get_ref<const std::string&>();
  }
  bool Bool(const Json& parent, const std::string& prefix, const std::string& key) {
    const Json* v = Get(parent, prefix, key);
    if (v == nullptr) return false;
    if (!v->is_boolean()) {
      Invalid(prefix + key, "must be true or false");
      return false;
    }
    return v->get<bool>();
  }
  double Number(const Json& parent, const std::string& prefix, const std::string& key) {
    const Json* v = Get(parent, prefix, key);
    if (v == nullptr) return 0;
    if (!v->is_number() || !std::isfinite(v->get<double>())) {
      Invalid(prefix + key, "must be a number");
      return 0;
    }
    return v->get<double>();
  }
  // A whole number in [min_value, max_value].
  int Int(const Json& parent, const std::string& prefix, const std::string& key, int min_value,
          int max_value) {
    const Json* v = Get(parent, prefix, key);
    if (v == nullptr) return 0;
    const double n = v->is_number() ? v->get<double>() : std::nan("");
    if (!(n == std::floor(n) && n >= min_value && n <= max_value)) {
      Invalid(prefix + key, "must be a whole number from " + std::to_string(min_value) + " to " +
                                std::to_string(max_value));
      return 0;
    }
    return static_cast<int>(n);
  }
  const Json* Object(const Json& parent, const std::string& prefix, const std::string& key) {
    const Json* v = Get(parent, prefix, key);
    if (v != nullptr && !v->is_object()) {
      Invalid(prefix + key, "must be an object");
      return nullptr;
    }
    return v;
  }
  void Triple(const Json& parent, const std::string& prefix, const std::string& key, float out[3]) {
    const Json* v = Get(parent, prefix, key);
    if (v == nullptr) return;
    if (!v->is_array() || v->size() != 3 ||
        std::any_of(v->begin(), v->end(),
                    [](const Json& x) { return !x.is_number() || !std::isfinite(x.get<double>()); })) {
      Invalid(prefix + key, "must be an array of 3 numbers (one per channel)");
      return;
    }
    for (int i = 0; i < 3; ++i) out[i] = static_cast<float>((*v)[i].get<double>());
  }

  bool ok() const { return problems_.empty(); }
  Status ToStatus() const {
    std::string msg = "model package metadata.json: ";
    for (size_t i = 0; i < problems_.size(); ++i) msg += (i ? "; " : "") + problems_[i];
    return Status::InvalidArgument(msg);
  }

 private:
  std::vector<std::string> problems_;
};

// The optional keys (docs/model-package.md): absent or null keeps the published default;
// a value the node does not know is refused, never ignored, since scoring with other
// preprocessing than the model was trained with gives a wrong score, not an error.
void ReadOptionalPreprocessing(MetadataReader& r, const Json& p, PreprocessingParams& pp) {
  const std::string pre = "preprocessing.";
  auto present = [&](const char* key) {
    const Json* v = Find(p, key);
    return v != nullptr && !v->is_null();
  };
  if (present("intensity")) {
    const std::string mode = r.String(p, pre, "intensity");
    if (mode == "minmax") {
      pp.intensity = IntensityMode::kMinMax;
    } else if (mode == "percentile") {
      pp.intensity = IntensityMode::kPercentile;
    } else if (!mode.empty()) {
      r.Invalid(pre + "intensity", "must be \"minmax\" or \"percentile\" (is \"" + mode + "\")");
    }
  }
  if (present("intensity_percentiles")) {
    const Json& v = *Find(p, "intensity_percentiles");
    const bool pair = v.is_array() && v.size() == 2 &&
                      std::all_of(v.begin(), v.end(), [](const Json& x) {
                        return x.is_number() && std::isfinite(x.get<double>());
                      });
    if (!pair || !(v[0].get<double>() >= 0 && v[0].get<double>() < v[1].get<double>() && v[1].get<double>() <= 100)) {
      r.Invalid(pre + "intensity_percentiles", "must be [low, high] with 0 <= low < high <= 100");
    } else {
      pp.intensity_percentiles[0] = v[0].get<double>();
      pp.intensity_percentiles[1] = v[1].get<double>();
    }
  }
  if (present("body_crop")) pp.body_crop = r.Bool(p, pre, "body_crop");
  if (present("body_crop_flat_range")) pp.body_crop_flat_range = r.Int(p, pre, "body_crop_flat_range", 0, 254);
  auto unit_interval = [&](const char* key, double& out) {
    if (!present(key)) return;
    const double v = r.Number(p, pre, key);
    if (!Find(p, key)->is_number()) return;  // r.Number said why
    if (!(v > 0 && v <= 1)) {
      r.Invalid(pre + key, "must be a number in (0, 1]");
      return;
    }
    out = v;
  };
  unit_interval("body_crop_fraction", pp.body_crop_fraction);
  unit_interval("body_crop_min_size", pp.body_crop_min_size);
}

void ReadPreprocessing(MetadataReader& r, const Json& root, ModelInfo& info) {
  const Json* p = r.Object(root, "", "preprocessing");
  if (p == nullptr) return;
  const std::string pre = "preprocessing.";
  PreprocessingParams& pp = info.preprocessing;
  pp.equalize_histogram = r.Bool(*p, pre, "equalize_histogram");
  pp.autocrop = r.Bool(*p, pre, "autocrop");
  pp.autocrop_threshold = r.Int(*p, pre, "autocrop_threshold", 0, 254);
  pp.resize_short_side = r.Int(*p, pre, "resize_short_side", 1, 8192);
  pp.center_crop = r.Int(*p, pre, "center_crop", 1, 8192);
  r.Triple(*p, pre, "mean", pp.mean);
  r.Triple(*p, pre, "std", pp.std);
  for (float s : pp.std) {
    if (s == 0.f) r.Invalid(pre + "std", "must not contain 0");
  }
  if (pp.resize_short_side > 0 && pp.center_crop > pp.resize_short_side)
    r.Invalid(pre + "center_crop", "must not exceed resize_short_side");
  ReadOptionalPreprocessing(r, *p, pp);
}

void ReadCalibration(MetadataReader& r, const Json& root, ModelInfo& info) {
  const Json* c = Find(root, "calibration");
  if (c == nullptr || c->is_null()) return;  // optional
  if (!c->is_object()) {
    r.Invalid("calibration", "must be an object or null");
    return;
  }
  const std::string pre = "calibration.";
  Calibration cal;
  cal.scale = r.String(*c, pre, "scale");
  if (const Json* unit = Find(*c, "unit"); unit && unit->is_string()) cal.unit = unit->get_ref<const std::string&>();
  if (const Json* v = Find(*c, "min"); v && v->is_number()) cal.min = v->get<double>();
  if (const Json* v = Find(*c, "max"); v && v->is_number()) cal.max = v->get<double>();
  const Json* points = r.Get(*c, pre, "points");
  if (points == nullptr) return;
  bool shape_ok = points->is_array() && points->size() >= 2;
  for (const Json& pt : shape_ok ? *points : Json::array()) {
    if (!pt.is_array() || pt.size() != 2 || !pt[0].is_number() ||
        !pt[1].is_number()) {
      shape_ok = false;
      break;
    }
    cal.points.emplace_back(pt[0].get<double>(), pt[1].get<double>());
  }
  if (!shape_ok) {
    r.Invalid(pre + "points", "must be at least 2 pairs [raw, calibrated]");
    return;
  }
  bool raw_increasing = true, rising = true, falling = true;
  for (size_t i = 1; i < cal.points.size(); ++i) {
    raw_increasing &= cal.points[i].first > cal.points[i - 1].first;
    rising &= cal.points[i].second >= cal.points[i - 1].second;
    falling &= cal.points[i].second <= cal.points[i - 1].second;
  }
  if (!raw_increasing) r.Invalid(pre + "points", "must have strictly increasing raw values");
  if (!rising && !falling) r.Invalid(pre + "points", "must be monotone");
  info.calibration = std::move(cal);
}

void ReadTrend(MetadataReader& r, const Json& root, ModelInfo& info) {
  const Json* t = r.Object(root, "", "trend");
  if (t == nullptr) return;
  const std::string pre = "trend.";
  info.trend.stable_delta = r.Number(*t, pre, "stable_delta");
  if (info.trend.stable_delta < 0) r.Invalid(pre + "stable_delta", "must not be negative");
  const Json* bands = r.Get(*t, pre, "bands");
  if (bands == nullptr) return;
  if (!bands->is_array() || bands->empty()) {
    r.Invalid(pre + "bands", "must be a non-empty array of {upper, label}");
    return;
  }
  for (size_t i = 0; i < bands->size(); ++i) {
    const Json& b = (*bands)[i];
    const std::string where = pre + "bands[" + std::to_string(i) + "]";
    const Json* upper = Find(b, "upper");
    const Json* label = Find(b, "label");
    if (!b.is_object() || label == nullptr || !label->is_string() ||
        (upper != nullptr && !upper->is_null() && !upper->is_number())) {
      r.Invalid(where, "must be {\"upper\": number or null, \"label\": string}");
      continue;
    }
    TrendBand band;
    band.label = label->get_ref<const std::string&>();
    if (upper != nullptr && !upper->is_null()) band.upper = upper->get<double>();
    if (!info.trend.bands.empty() && (!info.trend.bands.back().upper ||
                                      (band.upper && *band.upper <= *info.trend.bands.back().upper))) {
      r.Invalid(where, "upper bounds must increase (only the last may be null)");
    }
    info.trend.bands.push_back(std::move(band));
  }
}

void ReadFinding(MetadataReader& r, const Json& root, ModelInfo& info) {
  const Json* f = Find(root, "finding");
  if (f == nullptr || f->is_null()) return;  // optional: the package does not say
  if (!f->is_object()) {
    r.Invalid("finding", "must be {\"scheme\", \"value\", \"meaning\"} or null");
    return;
  }
  CodedConcept c;
  c.scheme = r.String(*f, "finding.", "scheme");
  c.value = r.String(*f, "finding.", "value");
  c.meaning = r.String(*f, "finding.", "meaning");
  for (const auto& [key, value] : f->items()) {
    if (key != "scheme" && key != "value" && key != "meaning") r.Invalid("finding." + key, "is not a key of finding");
  }
  if (c.scheme.empty() || c.value.empty() || c.meaning.empty()) return;  // r said why when missing
  info.finding = std::move(c);
}

}  // namespace

StatusOr<ModelInfo> ParseModelMetadata(const std::string& text) {
  Json root;
  try {
    root = Json::parse(text);
  } catch (const Json::exception& e) {
    // Every nlohmann error, not just parse_error: a number too large for a double throws
    // out_of_range (found by fuzz/fuzz_model_metadata; kept in fuzz/regressions).
    // e.what() names the problem and its byte offset.
    return Status::Corrupt(std::string("metadata.json is not valid JSON: ") + e.what());
  }
  if (!root.is_object()) return Status::InvalidArgument("model package metadata.json: not a JSON object");

  MetadataReader r;
  ModelInfo info;
  info.metadata_json = text;
  std::string format = r.String(root, "", "format");
  if (!format.empty() && format != "pxs-model-package")
    r.Invalid("format", "must be \"pxs-model-package\" (is \"" + format + "\")");
  int format_version = r.Int(root, "", "format_version", 1, 1000000);
  if (format_version > 1) r.Invalid("format_version", "is " + std::to_string(format_version) + "; this node reads 1");
  info.name = r.String(root, "", "name");
  info.version = r.String(root, "", "version");
  info.embedding_dim = r.Int(root, "", "embedding_dim", 1, 1 << 20);
  info.anchor_count = r.Int(root, "", "anchor_count", 1, 1 << 20);
  if (const Json* in = r.Object(root, "", "input")) {
    info.input_channels = r.Int(*in, "input.", "channels", 3, 3);
    info.input_height = r.Int(*in, "input.", "height", 1, 8192);
    info.input_width = r.Int(*in, "input.", "width", 1, 8192);
  }
  ReadPreprocessing(r, root, info);
  if (info.input_height > 0 && info.preprocessing.center_crop > 0 &&
      (info.input_height != info.preprocessing.center_crop || info.input_width != info.preprocessing.center_crop))
    r.Invalid("input", "height and width must equal preprocessing.center_crop");
  info.training_data = r.String(root, "", "training_data");
  info.intended_use = r.String(root, "", "intended_use");
  info.not_for_clinical_use = r.Bool(root, "", "not_for_clinical_use");
  ReadCalibration(r, root, info);
  ReadTrend(r, root, info);
  ReadFinding(r, root, info);
  if (!r.ok()) return r.ToStatus();
  return info;
}

}  // namespace pxs::scoring
