// ModelInfo: what a model package says about itself (docs/model-package.md), parsed
// from the package's metadata.json. Everything the preprocessing, the SR and the
// trend logic need comes from here, never from constants in the code.
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "pxs/common/status.h"

namespace pxs::scoring {

// How stored values become 8 bit (docs/model-package.md, "Preprocessing", step 2).
enum class IntensityMode {
  kMinMax,      // the published (v - min) / (max - min) * 255, truncated
  kPercentile,  // the same between two percentiles of the stored values, clipped to [0, 1]
};

struct PreprocessingParams {
  // Optional keys: their defaults are the published pipeline, so a package without them
  // preprocesses exactly as before they existed.
  IntensityMode intensity = IntensityMode::kMinMax;
  double intensity_percentiles[2] = {0.5, 99.5};  // [lo, hi] in percent, for kPercentile
  bool body_crop = false;           // crop to the body before equalising (BodyCropBox)
  int body_crop_flat_range = 8;     // an edge row/column with max - min <= this is a border
  double body_crop_fraction = 0.3;  // body rows/columns: mean >= fraction * the box's mean
  double body_crop_min_size = 0.5;  // each side keeps at least this fraction of the image
  // Required keys.
  bool equalize_histogram = true;   // OpenCV equalizeHist on the 8-bit image
  bool autocrop = false;            // PXS-updated: crop rows/columns whose max <= threshold
  int autocrop_threshold = 2;
  int resize_short_side = 336;      // PIL bilinear (antialiased) resize of the short side
  int center_crop = 320;            // square centre crop after the resize
  float mean[3] = {0.f, 0.f, 0.f};  // applied last: (x - mean) / std per channel
  float std[3] = {1.f, 1.f, 1.f};   // the published pipeline uses none (0 and 1)
};

// A monotone piecewise-linear map from the raw PXS (median distance) to a named
// clinical scale; values outside the points are clamped to the end points.
struct Calibration {
  std::string scale;  // e.g. "mRALE"
  std::string unit;   // UCUM, e.g. "{score}"
  std::optional<double> min, max;
  std::vector<std::pair<double, double>> points;  // (raw, calibrated), raw increasing
  double Apply(double raw) const;
};

struct TrendBand {
  std::optional<double> upper;  // exclusive upper bound of the raw PXS; none: open-ended
  std::string label;            // e.g. "mild"
};

// What the package's metadata says; how a band or trend is decided from it is the
// longitudinal library's (pxs::longitudinal), the one place for that rule.
struct TrendSettings {
  double stable_delta = 1.0;  // the raw-PXS stable threshold (see longitudinal/course.h)
  std::vector<TrendBand> bands;
};

// A coded concept (DICOM Coding Scheme Designator, Code Value, Code Meaning).
struct CodedConcept {
  std::string scheme;   // e.g. "SCT"
  std::string value;    // e.g. "19242006"
  std::string meaning;  // e.g. "Pulmonary edema"
};

struct ModelInfo {
  std::string name;
  std::string version;
  int input_channels = 3;
  int input_height = 0;
  int input_width = 0;
  PreprocessingParams preprocessing;
  int embedding_dim = 0;
  int anchor_count = 0;
  std::string training_data;
  std::string intended_use;
  bool not_for_clinical_use = true;
  std::optional<Calibration> calibration;
  TrendSettings trend;
  // What the score measures (optional key `finding`): the SR's Finding of each group.
  std::optional<CodedConcept> finding;
  std::string metadata_json;  // the raw metadata.json, as stored in the package
};

// Parses and validates metadata.json. The error names every missing or invalid key
// (e.g. "metadata.json: missing key 'preprocessing.center_crop'").
StatusOr<ModelInfo> ParseModelMetadata(const std::string& json);

}  // namespace pxs::scoring
