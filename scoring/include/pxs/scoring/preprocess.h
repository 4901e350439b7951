// The PXS preprocessing, step by step, faithful to the published Python pipeline
// (QTIM-Lab/PXS-score: PXS_preprocessing.py, PXS_test.py and the PXS-updated
// PXS_test_direct_from_DICOM.py): stored values -> min-max to 8 bit (float64,
// truncated like numpy's astype(uint8)) -> invert MONOCHROME1 -> [autocrop] ->
// equalizeHist (OpenCV) -> resize short side (PIL bilinear, antialiased) -> centre crop
// (torchvision) -> 3 identical channels in [0,1] -> (x - mean) / std; plus this
// project's optional percentile intensity (in place of the min-max) and body crop (after
// the autocrop), as tools/pxsmodel/preprocess.py and tools/reference_pxs.py do them.
//
// Every step is hand-written here rather than calling OpenCV or PIL: scoring/ must
// build against LibTorch alone (PXS_SCORING_ONLY, e.g. a CUDA LibTorch from a wheel on
// a GPU machine). Each step reproduces its library's integer arithmetic exactly, so the
// 8-bit image matches the Python pipeline bit for bit (tools/reference_pxs.py checks).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "pxs/common/status.h"
#include "pxs/scoring/decoded_image.h"
#include "pxs/scoring/model_info.h"

namespace pxs::scoring {

// An 8-bit grey image, row-major.
struct Image8 {
  int width = 0;
  int height = 0;
  std::vector<uint8_t> pixels;
  uint8_t at(int x, int y) const { return pixels[static_cast<size_t>(y) * width + x]; }
};

// The model input of one image before the final float conversion: the centre-cropped
// 8-bit grey image. Kept as bytes (not floats) so a batch is 12x smaller to copy to a
// GPU; ToModelInput() makes the [3,H,W] floats the model sees.
struct PreprocessedImage {
  Image8 gray;
};

// (v - min) / (max - min) * 255, truncated; fails on an empty or uniform image.
StatusOr<Image8> MinMaxTo8Bit(const DecodedImage& image);
// The intensity step the parameters ask for: min-max, or with kPercentile
// clip((v - lo) / (hi - lo), 0, 1) * 255 truncated, lo and hi the sorted stored values at
// index floor(p / 100 * (n - 1)) (min-max when hi <= lo). Fails as MinMaxTo8Bit does.
StatusOr<Image8> IntensityTo8Bit(const DecodedImage& image, const PreprocessingParams& params);
void Invert(Image8& image);  // 255 - v (cv2.bitwise_not), for MONOCHROME1
// PXS-updated's autocrop: keep the bounding box of rows and columns that have a value
// above `threshold`; an image with none becomes 1x1 (as the published function does).
Image8 Autocrop(const Image8& image, int threshold);

// An inclusive pixel rectangle.
struct CropBox {
  int y0 = 0, y1 = 0, x0 = 0, x1 = 0;
  bool operator==(const CropBox& o) const { return y0 == o.y0 && y1 == o.y1 && x0 == o.x0 && x1 == o.x1; }
};
// The body crop (docs/model-package.md), on the 8-bit image after the intensity step, the
// inversion and the autocrop: drop flat edge rows, then flat edge columns (max - min <=
// body_crop_flat_range); in the box left, the longest run of rows whose mean is >=
// body_crop_fraction * the box's mean, then the same for columns within those rows; each
// side grown to at least int(body_crop_min_size * the image's side) about its centre and
// kept inside the image. Integer sums and the same order of double operations as the
// Python code make it exact.
CropBox BodyCropBox(const Image8& image, const PreprocessingParams& params);
// The body crop runs twice, the intensity step computed again over the stored values
// inside the crop after each pass: the first pass removes borders and labels, the second
// finds the body as it would in the same picture without them.
constexpr int kBodyCropPasses = 2;
// Autocrop's rectangle ({0, 0, 0, 0}, the first pixel, when nothing is above threshold).
CropBox AutocropBox(const Image8& image, int threshold);
Image8 Crop(const Image8& image, const CropBox& box);
DecodedImage Crop(const DecodedImage& image, const CropBox& box);  // the stored values inside
// cv2.equalizeHist: the same cumulative-histogram LUT with float scale and
// round-half-to-even, and the same special case for a uniform image.
Image8 EqualizeHistogram(const Image8& image);
// PIL Image.resize(size, BILINEAR) on an "L" image: separable triangle filter widened
// by the scale factor (antialiasing), 22-bit fixed-point coefficients, horizontal pass
// first, 8-bit intermediate.
Image8 ResizeBilinearAntialias(const Image8& image, int out_width, int out_height);
// torchvision Resize(short_side) size rule: short side = short_side, long side =
// int(short_side * long / short).
void ResizedSize(int width, int height, int short_side, int* out_width, int* out_height);
// torchvision CenterCrop(size) on an image at least that large: offsets
// round((h - size) / 2), round((w - size) / 2) with Python's round half to even.
StatusOr<Image8> CenterCrop(const Image8& image, int size);

// All of the above, as the package's parameters say, with identical output but faster:
// without the crops one fused pass from stored values to the centre crop; with them the
// resize computes only the window the centre crop keeps.
StatusOr<PreprocessedImage> Preprocess(const DecodedImage& image, const PreprocessingParams& params);
// The same, one step after the other (reference for the fused path; used with the crops).
StatusOr<PreprocessedImage> PreprocessStepByStep(const DecodedImage& image, const PreprocessingParams& params);

// Preprocess in two parts, for packages with autocrop or body_crop (HasFullResolutionSteps):
// CroppedAndEqualised is the costly full-resolution part (intensity, inversion, crops,
// equalisation), ResizeAndCrop finishes it (only the window the centre crop keeps);
// ResizeAndCrop(CroppedAndEqualised(x, p), p) == Preprocess(x, p). Models whose packages
// have the same FullResolutionKey share the first part and differ only in the second
// (the worker does so: the demo packages differ only in their input size).
bool HasFullResolutionSteps(const PreprocessingParams& params);
StatusOr<Image8> CroppedAndEqualised(const DecodedImage& image, const PreprocessingParams& params);
StatusOr<PreprocessedImage> ResizeAndCrop(const Image8& equalised, const PreprocessingParams& params);
// What CroppedAndEqualised depends on; what all of Preprocess depends on (with the input
// size). Equal keys: the same output for the same image.
std::string FullResolutionKey(const PreprocessingParams& params);
std::string PreprocessingKey(const ModelInfo& model);

// The float model input, channel-major [3][H][W]: v / 255, then (x - mean) / std.
std::vector<float> ToModelInput(const PreprocessedImage& image, const PreprocessingParams& params);

}  // namespace pxs::scoring
