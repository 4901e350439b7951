#include "pxs/scoring/preprocess.h"

#include <algorithm>
#include <array>
#include <cfenv>
#include <cmath>
#include <cstdint>

namespace pxs::scoring {

namespace {

Status CheckGray(const DecodedImage& image) {
  if (image.samples_per_pixel != 1) return Status::Unsupported("colour image (samples per pixel " +
                                                               std::to_string(image.samples_per_pixel) + ")");
  if (image.width <= 0 || image.height <= 0 ||
      image.pixels.size() != static_cast<size_t>(image.width) * static_cast<size_t>(image.height))
    return Status::InvalidArgument("decoded image: " + std::to_string(image.width) + "x" +
                                   std::to_string(image.height) + " does not match its " +
                                   std::to_string(image.pixels.size()) + " pixels");
  return Status::Ok();
}

std::vector<int64_t> Histogram16(const DecodedImage& image) {
  std::vector<int64_t> hist(65536, 0);
  for (uint16_t v : image.pixels) ++hist[v];
  return hist;
}

// The k-th smallest stored value (0-based), what np.partition / a full sort give.
int KthValue(const std::vector<int64_t>& hist, int64_t k) {
  int64_t seen = 0;
  for (int v = 0; v < 65536; ++v) {
    seen += hist[v];
    if (seen > k) return v;
  }
  return 65535;
}

// The intensity step as a table over the stored values lo..hi (the image's min and max):
// lut[v - lo] is the 8-bit value before any MONOCHROME1 inversion. A table gives the same
// doubles as the per-pixel formula with one division per distinct value.
struct IntensityTable {
  int lo = 0, hi = 0;
  std::vector<uint8_t> lut;
};

StatusOr<IntensityTable> MakeIntensityTable(const std::vector<int64_t>& hist, int64_t count,
                                            const PreprocessingParams& params) {
  IntensityTable t;
  t.lo = 0;
  t.hi = 65535;
  while (hist[t.lo] == 0) ++t.lo;
  while (hist[t.hi] == 0) --t.hi;
  if (t.lo == t.hi) return Status::Unsupported("blank image: every pixel is " + std::to_string(t.lo));
  t.lut.resize(static_cast<size_t>(t.hi - t.lo) + 1);
  if (params.intensity == IntensityMode::kPercentile) {
    // Python: k = int(floor(p / 100.0 * (n - 1))), the same double operations in this order.
    auto index = [&](double p) { return static_cast<int64_t>(std::floor(p / 100.0 * static_cast<double>(count - 1))); };
    const int p_lo = KthValue(hist, index(params.intensity_percentiles[0]));
    const int p_hi = KthValue(hist, index(params.intensity_percentiles[1]));
    if (p_hi > p_lo) {  // else a mostly uniform image: min-max below
      const double low = p_lo, range = static_cast<double>(p_hi) - low;
      for (int v = t.lo; v <= t.hi; ++v)
        t.lut[v - t.lo] = static_cast<uint8_t>(std::clamp((static_cast<double>(v) - low) / range, 0.0, 1.0) * 255.0);
      return t;
    }
  }
  // The published code computes (v - min) / max(v - min) * 255 in float64 and truncates
  // (numpy astype(uint8)).
  const double range = static_cast<double>(t.hi - t.lo);
  for (int v = 0; v <= t.hi - t.lo; ++v) t.lut[v] = static_cast<uint8_t>(static_cast<double>(v) / range * 255.0);
  return t;
}

}  // namespace

StatusOr<Image8> IntensityTo8Bit(const DecodedImage& image, const PreprocessingParams& params) {
  if (Status s = CheckGray(image); !s.ok()) return s;
  StatusOr<IntensityTable> table =
      MakeIntensityTable(Histogram16(image), static_cast<int64_t>(image.pixels.size()), params);
  if (!table.ok()) return table.status();
  Image8 out{image.width, image.height, std::vector<uint8_t>(image.pixels.size())};
  for (size_t i = 0; i < image.pixels.size(); ++i) out.pixels[i] = table->lut[image.pixels[i] - table->lo];
  return out;
}

StatusOr<Image8> MinMaxTo8Bit(const DecodedImage& image) { return IntensityTo8Bit(image, PreprocessingParams{}); }

void Invert(Image8& image) {
  for (uint8_t& v : image.pixels) v = static_cast<uint8_t>(255 - v);
}

CropBox AutocropBox(const Image8& image, int threshold) {
  int x0 = image.width, x1 = -1, y0 = image.height, y1 = -1;
  for (int y = 0; y < image.height; ++y) {
    const uint8_t* row = &image.pixels[static_cast<size_t>(y) * image.width];
    for (int x = 0; x < image.width; ++x) {
      if (row[x] > threshold) {
        x0 = std::min(x0, x);
        x1 = std::max(x1, x);
        y0 = std::min(y0, y);
        y1 = std::max(y1, y);
      }
    }
  }
  if (x1 < 0) return CropBox{0, 0, 0, 0};  // as published: the first pixel
  return CropBox{y0, y1, x0, x1};
}

Image8 Autocrop(const Image8& image, int threshold) {
  if (image.pixels.empty()) return Image8{1, 1, {0}};
  return Crop(image, AutocropBox(image, threshold));
}

namespace {

template <typename T>
std::vector<T> CropRows(const std::vector<T>& pixels, int width, const CropBox& box) {
  std::vector<T> out;
  out.reserve(static_cast<size_t>(box.x1 - box.x0 + 1) * (box.y1 - box.y0 + 1));
  for (int y = box.y0; y <= box.y1; ++y) {
    auto begin = pixels.begin() + static_cast<ptrdiff_t>(y) * width + box.x0;
    out.insert(out.end(), begin, begin + (box.x1 - box.x0 + 1));
  }
  return out;
}

}  // namespace

Image8 Crop(const Image8& image, const CropBox& box) {
  return Image8{box.x1 - box.x0 + 1, box.y1 - box.y0 + 1, CropRows(image.pixels, image.width, box)};
}

DecodedImage Crop(const DecodedImage& image, const CropBox& box) {
  DecodedImage out = image;
  out.width = box.x1 - box.x0 + 1;
  out.height = box.y1 - box.y0 + 1;
  out.pixels = CropRows(image.pixels, image.width, box);
  return out;
}

namespace {

// Grows [first, last] symmetrically to at least min_size, kept inside [0, size).
void Grow(int& first, int& last, int min_size, int size) {
  const int need = min_size - (last - first + 1);
  if (need <= 0) return;
  first -= need / 2;
  last += need - need / 2;
  if (first < 0) {
    last -= first;
    first = 0;
  }
  if (last > size - 1) {
    first = std::max(first - (last - (size - 1)), 0);
    last = size - 1;
  }
}

// The longest run of indices whose sum over `length` pixels is >= fraction * mean * length,
// the first of equally long runs; false when none qualifies.
bool BrightRun(const std::vector<int64_t>& sums, int length, double fraction, double mean, int& first, int& last) {
  const double limit = fraction * mean * static_cast<double>(length);
  int best_first = -1, best_last = -2, start = -1;
  for (int i = 0; i <= static_cast<int>(sums.size()); ++i) {
    const bool bright = i < static_cast<int>(sums.size()) && static_cast<double>(sums[i]) >= limit;
    if (bright && start < 0) start = i;
    if (!bright && start >= 0) {
      if (i - start > best_last - best_first + 1) {
        best_first = start;
        best_last = i - 1;
      }
      start = -1;
    }
  }
  if (best_first < 0) return false;
  first = best_first;
  last = best_last;
  return true;
}

double Mean(const std::vector<int64_t>& sums, int64_t count) {
  int64_t total = 0;
  for (int64_t s : sums) total += s;
  return static_cast<double>(total) / static_cast<double>(count);
}

}  // namespace

CropBox BodyCropBox(const Image8& image, const PreprocessingParams& params) {
  const int w = image.width, h = image.height;
  const int flat = params.body_crop_flat_range;
  // 1. Flat edge rows (over the whole width), then flat edge columns (within those rows).
  std::vector<bool> row_flat(h);
  for (int y = 0; y < h; ++y) {
    const uint8_t* row = &image.pixels[static_cast<size_t>(y) * w];
    auto [lo, hi] = std::minmax_element(row, row + w);
    row_flat[y] = *hi - *lo <= flat;
  }
  CropBox t{0, h - 1, 0, w - 1};
  while (t.y0 < h && row_flat[t.y0]) ++t.y0;
  if (t.y0 == h) {
    t.y0 = 0;  // every row flat: keep the image
  } else {
    while (row_flat[t.y1]) --t.y1;
    std::vector<uint8_t> col_lo(w, 255), col_hi(w, 0);
    for (int y = t.y0; y <= t.y1; ++y) {
      const uint8_t* row = &image.pixels[static_cast<size_t>(y) * w];
      for (int x = 0; x < w; ++x) {
        col_lo[x] = std::min(col_lo[x], row[x]);
        col_hi[x] = std::max(col_hi[x], row[x]);
      }
    }
    auto col_flat = [&](int x) { return col_hi[x] - col_lo[x] <= flat; };
    while (t.x0 < w && col_flat(t.x0)) ++t.x0;
    if (t.x0 == w) {
      t.x0 = 0;
    } else {
      while (col_flat(t.x1)) --t.x1;
    }
  }
  // 2. Rows: the longest bright run in the trimmed box.
  const int box_w = t.x1 - t.x0 + 1;
  std::vector<int64_t> sums(t.y1 - t.y0 + 1, 0);
  for (int y = t.y0; y <= t.y1; ++y) {
    const uint8_t* row = &image.pixels[static_cast<size_t>(y) * w];
    for (int x = t.x0; x <= t.x1; ++x) sums[y - t.y0] += row[x];
  }
  CropBox box = t;
  int first = 0, last = 0;
  if (BrightRun(sums, box_w, params.body_crop_fraction,
                Mean(sums, static_cast<int64_t>(sums.size()) * box_w), first, last)) {
    box.y0 = t.y0 + first;
    box.y1 = t.y0 + last;
  }
  Grow(box.y0, box.y1, std::max(1, static_cast<int>(params.body_crop_min_size * h)), h);
  // 3. Columns: the same within those rows.
  const int band_h = box.y1 - box.y0 + 1;
  sums.assign(box_w, 0);
  for (int y = box.y0; y <= box.y1; ++y) {
    const uint8_t* row = &image.pixels[static_cast<size_t>(y) * w];
    for (int x = t.x0; x <= t.x1; ++x) sums[x - t.x0] += row[x];
  }
  if (BrightRun(sums, band_h, params.body_crop_fraction,
                Mean(sums, static_cast<int64_t>(band_h) * box_w), first, last)) {
    box.x0 = t.x0 + first;
    box.x1 = t.x0 + last;
  }
  Grow(box.x0, box.x1, std::max(1, static_cast<int>(params.body_crop_min_size * w)), w);
  return box;
}

namespace {

// cv2.equalizeHist's lookup table for a histogram of `total` pixels: lut[first] = 0 and
// lut[i] = saturate_cast<uchar>(cumsum * scale) with a float scale and cvRound (round half
// to even), the cumulative sum excluding hist[first]. A one-value image keeps its value.
std::array<uint8_t, 256> EqualizationLut(const std::array<int64_t, 256>& hist, int64_t total) {
  std::array<uint8_t, 256> lut{};
  int first = 0;
  while (first < 255 && hist[first] == 0) ++first;
  if (hist[first] == total) {
    lut.fill(static_cast<uint8_t>(first));
    return lut;
  }
  const float scale = 255.f / static_cast<float>(total - hist[first]);
  int64_t sum = 0;
  for (int i = first + 1; i < 256; ++i) {
    sum += hist[i];
    const float scaled = static_cast<float>(sum) * scale;
    lut[i] = static_cast<uint8_t>(std::clamp(std::lrint(scaled), 0L, 255L));  // lrint: half to even
  }
  return lut;
}

}  // namespace

Image8 EqualizeHistogram(const Image8& image) {
  std::array<int64_t, 256> hist{};
  for (uint8_t v : image.pixels) ++hist[v];
  const std::array<uint8_t, 256> lut = EqualizationLut(hist, static_cast<int64_t>(image.pixels.size()));
  Image8 out{image.width, image.height, std::vector<uint8_t>(image.pixels.size())};
  for (size_t i = 0; i < image.pixels.size(); ++i) out.pixels[i] = lut[image.pixels[i]];
  return out;
}

namespace {

// Pillow's Resample.c, 8 bits per channel: coefficients are computed in double for a
// triangle filter stretched by the scale factor (that stretch is the antialiasing),
// normalised per output pixel, then rounded to fixed point with 22 fractional bits.
constexpr int kPrecisionBits = 32 - 8 - 2;

struct ResampleCoefficients {
  int kernel_size = 0;
  std::vector<int> first;          // first input index per output index
  std::vector<int> count;          // number of inputs per output index
  std::vector<int32_t> weights;    // out_size * kernel_size fixed-point weights
};

ResampleCoefficients ComputeCoefficients(int in_size, int out_size) {
  const double scale = static_cast<double>(static_cast<float>(in_size)) / out_size;
  const double filter_scale = std::max(scale, 1.0);
  const double support = 1.0 * filter_scale;  // bilinear filter support is 1
  ResampleCoefficients c;
  c.kernel_size = static_cast<int>(std::ceil(support)) * 2 + 1;
  c.first.resize(out_size);
  c.count.resize(out_size);
  c.weights.assign(static_cast<size_t>(out_size) * c.kernel_size, 0);
  std::vector<double> k(c.kernel_size);
  for (int xx = 0; xx < out_size; ++xx) {
    const double center = (xx + 0.5) * scale;
    const double inv = 1.0 / filter_scale;
    int xmin = static_cast<int>(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    int xmax = static_cast<int>(center + support + 0.5);
    if (xmax > in_size) xmax = in_size;
    xmax -= xmin;
    double sum = 0;
    for (int x = 0; x < xmax; ++x) {
      double t = std::fabs((x + xmin - center + 0.5) * inv);
      k[x] = t < 1.0 ? 1.0 - t : 0.0;
      sum += k[x];
    }
    for (int x = 0; x < xmax; ++x) {
      double w = sum != 0.0 ? k[x] / sum : k[x];
      double fixed = w * (1 << kPrecisionBits);
      c.weights[static_cast<size_t>(xx) * c.kernel_size + x] =
          static_cast<int32_t>(w < 0 ? -0.5 + fixed : 0.5 + fixed);
    }
    c.first[xx] = xmin;
    c.count[xx] = xmax;
  }
  return c;
}

inline uint8_t Clip8(int32_t v) {
  if (v >= (1 << kPrecisionBits << 8)) return 255;
  if (v <= 0) return 0;
  return static_cast<uint8_t>(v >> kPrecisionBits);
}

}  // namespace

namespace {

// Pillow's two passes (horizontal into an 8-bit intermediate, then vertical), computing
// only the output window [left, left + crop_w) x [top, top + crop_h). Each output pixel of
// the separable filter depends only on its own coefficients, so the window is bit-identical
// to cropping the full resize, and the input rows the window does not need are never read.
// `row(y, buffer)` writes input row y (in_width 8-bit values) into buffer.
template <typename RowSource>
Image8 ResampleWindow(int in_width, int in_height, RowSource&& row, int out_width, int out_height, int left,
                      int top, int crop_w, int crop_h) {
  const bool horizontal = out_width != in_width;
  const bool vertical = out_height != in_height;
  const ResampleCoefficients ch = horizontal ? ComputeCoefficients(in_width, out_width) : ResampleCoefficients{};
  const ResampleCoefficients cv = vertical ? ComputeCoefficients(in_height, out_height) : ResampleCoefficients{};
  // Input rows needed by the window's output rows.
  const int y_first = vertical ? cv.first[top] : top;
  const int y_last = vertical ? cv.first[top + crop_h - 1] + cv.count[top + crop_h - 1] : top + crop_h;
  // Horizontal pass into rows [y_first, y_last) of the window's columns.
  const int rows = y_last - y_first;
  std::vector<uint8_t> mid(static_cast<size_t>(rows) * crop_w);
  std::vector<uint8_t> line(in_width);
  for (int y = y_first; y < y_last; ++y) {
    row(y, line.data());
    uint8_t* out = &mid[static_cast<size_t>(y - y_first) * crop_w];
    if (!horizontal) {
      std::copy(line.begin() + left, line.begin() + left + crop_w, out);
      continue;
    }
    for (int xx = left; xx < left + crop_w; ++xx) {
      const int32_t* w = &ch.weights[static_cast<size_t>(xx) * ch.kernel_size];
      const uint8_t* src = line.data() + ch.first[xx];
      int32_t acc = 1 << (kPrecisionBits - 1);
      for (int x = 0; x < ch.count[xx]; ++x) acc += src[x] * w[x];
      out[xx - left] = Clip8(acc);
    }
  }
  Image8 result{crop_w, crop_h, std::vector<uint8_t>(static_cast<size_t>(crop_w) * crop_h)};
  if (!vertical) {
    std::copy(mid.begin(), mid.end(), result.pixels.begin());
    return result;
  }
  std::vector<int32_t> acc(crop_w);
  for (int yy = top; yy < top + crop_h; ++yy) {
    std::fill(acc.begin(), acc.end(), 1 << (kPrecisionBits - 1));
    const int32_t* w = &cv.weights[static_cast<size_t>(yy) * cv.kernel_size];
    // Row-wise accumulation: the same sums as Pillow's column loop, in cache order.
    for (int y = 0; y < cv.count[yy]; ++y) {
      const uint8_t* in = &mid[static_cast<size_t>(cv.first[yy] + y - y_first) * crop_w];
      const int32_t wy = w[y];
      for (int x = 0; x < crop_w; ++x) acc[x] += in[x] * wy;
    }
    uint8_t* out = &result.pixels[static_cast<size_t>(yy - top) * crop_w];
    for (int x = 0; x < crop_w; ++x) out[x] = Clip8(acc[x]);
  }
  return result;
}

// torchvision CenterCrop offset: int(round((size_in - crop) / 2.0)) with Python's round
// half to even, as nearbyint does in the default rounding mode.
int CropOffset(int size_in, int crop) { return static_cast<int>(std::nearbyint((size_in - crop) / 2.0)); }

}  // namespace

Image8 ResizeBilinearAntialias(const Image8& image, int out_width, int out_height) {
  if (out_width == image.width && out_height == image.height) return image;  // PIL copies
  auto row = [&](int y, uint8_t* buffer) {
    std::copy_n(image.pixels.begin() + static_cast<ptrdiff_t>(y) * image.width, image.width, buffer);
  };
  return ResampleWindow(image.width, image.height, row, out_width, out_height, 0, 0, out_width, out_height);
}

void ResizedSize(int width, int height, int short_side, int* out_width, int* out_height) {
  const int short_in = std::min(width, height), long_in = std::max(width, height);
  // Python: int(size * long / short), a true (double) division then truncation.
  const int long_out = static_cast<int>(static_cast<double>(static_cast<int64_t>(short_side) * long_in) / short_in);
  if (width <= height) {
    *out_width = short_side;
    *out_height = long_out;
  } else {
    *out_width = long_out;
    *out_height = short_side;
  }
}

StatusOr<Image8> CenterCrop(const Image8& image, int size) {
  if (image.width < size || image.height < size)
    return Status::InvalidArgument("centre crop " + std::to_string(size) + " larger than the " +
                                   std::to_string(image.width) + "x" + std::to_string(image.height) + " image");
  const int top = CropOffset(image.height, size);
  const int left = CropOffset(image.width, size);
  Image8 out{size, size, {}};
  out.pixels.reserve(static_cast<size_t>(size) * size);
  for (int y = 0; y < size; ++y) {
    auto begin = image.pixels.begin() + static_cast<ptrdiff_t>(top + y) * image.width + left;
    out.pixels.insert(out.pixels.end(), begin, begin + size);
  }
  return out;
}

namespace {

// The intensity step and the MONOCHROME1 inversion.
StatusOr<Image8> To8BitInverted(const DecodedImage& image, const PreprocessingParams& params) {
  StatusOr<Image8> scaled = IntensityTo8Bit(image, params);
  if (scaled.ok() && image.monochrome1) Invert(*scaled);
  return scaled;
}

}  // namespace

// Steps 2-6 one after the other: intensity, inversion, the crops, equalisation.
StatusOr<Image8> CroppedAndEqualised(const DecodedImage& image, const PreprocessingParams& params) {
  StatusOr<Image8> scaled = To8BitInverted(image, params);
  if (!scaled.ok()) return scaled.status();
  Image8 img = std::move(scaled).value();
  // PXS-updated crops before equalising (the threshold applies to the min-max image); the
  // body crop likewise, so that the equalisation sees the body, not its borders.
  // Each body crop pass computes the intensity step again over the stored values inside
  // the crop (docs/model-package.md, step 5): they are cropped alongside the image.
  const bool body = params.body_crop;
  DecodedImage stored = body ? image : DecodedImage{};
  if (params.autocrop) {
    const CropBox box = AutocropBox(img, params.autocrop_threshold);
    img = Crop(img, box);
    if (body) stored = Crop(stored, box);
  }
  for (int pass = 0; body && pass < kBodyCropPasses; ++pass) {
    stored = Crop(stored, BodyCropBox(img, params));
    StatusOr<Image8> again = To8BitInverted(stored, params);
    if (!again.ok()) return again.status();
    img = std::move(again).value();
  }
  if (params.equalize_histogram) img = EqualizeHistogram(img);
  return img;
}

namespace {

Status CheckResizedSize(int w, int h, int crop) {
  if (w < crop || h < crop)
    return Status::Unsupported("image too small after resize (" + std::to_string(w) + "x" + std::to_string(h) + ")");
  return Status::Ok();
}

}  // namespace

StatusOr<PreprocessedImage> PreprocessStepByStep(const DecodedImage& image, const PreprocessingParams& params) {
  StatusOr<Image8> equalised = CroppedAndEqualised(image, params);
  if (!equalised.ok()) return equalised.status();
  Image8 img = std::move(equalised).value();
  int w = 0, h = 0;
  ResizedSize(img.width, img.height, params.resize_short_side, &w, &h);
  if (Status s = CheckResizedSize(w, h, params.center_crop); !s.ok()) return s;
  img = ResizeBilinearAntialias(img, w, h);
  StatusOr<Image8> cropped = CenterCrop(img, params.center_crop);
  if (!cropped.ok()) return cropped.status();
  return PreprocessedImage{std::move(cropped).value()};
}

bool HasFullResolutionSteps(const PreprocessingParams& params) { return params.autocrop || params.body_crop; }

StatusOr<PreprocessedImage> ResizeAndCrop(const Image8& img, const PreprocessingParams& params) {
  // Only the resize window that the centre crop keeps is computed (bit-identical to
  // resizing all, then cropping).
  int w = 0, h = 0;
  ResizedSize(img.width, img.height, params.resize_short_side, &w, &h);
  const int crop = params.center_crop;
  if (Status s = CheckResizedSize(w, h, crop); !s.ok()) return s;
  auto row = [&](int y, uint8_t* buffer) {
    std::copy_n(img.pixels.begin() + static_cast<ptrdiff_t>(y) * img.width, img.width, buffer);
  };
  return PreprocessedImage{
      ResampleWindow(img.width, img.height, row, w, h, CropOffset(w, crop), CropOffset(h, crop), crop, crop)};
}

std::string FullResolutionKey(const PreprocessingParams& p) {
  std::string key;
  auto add = [&key](double v) { key += std::to_string(v) + "|"; };
  add(static_cast<int>(p.intensity));
  add(p.intensity_percentiles[0]);
  add(p.intensity_percentiles[1]);
  add(p.body_crop);
  add(p.body_crop_flat_range);
  add(p.body_crop_fraction);
  add(p.body_crop_min_size);
  add(p.equalize_histogram);
  add(p.autocrop);
  add(p.autocrop_threshold);
  return key;
}

std::string PreprocessingKey(const ModelInfo& m) {
  const PreprocessingParams& p = m.preprocessing;
  std::string key = std::to_string(m.input_channels) + "x" + std::to_string(m.input_height) + "x" +
                    std::to_string(m.input_width) + "|" + FullResolutionKey(p);
  auto add = [&key](double v) { key += std::to_string(v) + "|"; };
  add(p.resize_short_side);
  add(p.center_crop);
  for (int c = 0; c < 3; ++c) {
    add(p.mean[c]);
    add(p.std[c]);
  }
  return key;
}

StatusOr<PreprocessedImage> Preprocess(const DecodedImage& image, const PreprocessingParams& params) {
  if (HasFullResolutionSteps(params)) {
    // The crops need the 8-bit image before equalisation.
    StatusOr<Image8> equalised = CroppedAndEqualised(image, params);
    if (!equalised.ok()) return equalised.status();
    return ResizeAndCrop(*equalised, params);
  }
  if (!CheckGray(image).ok()) return PreprocessStepByStep(image, params);  // for its error message

  // Fused path, identical results: the intensity step, inversion and equalisation are all
  // per-value maps, so one histogram of the stored values gives the composed 16-bit ->
  // 8-bit table, and the full-resolution 8-bit image is never materialised (rows are
  // mapped as the resize reads them). About 3x faster than the step-by-step path on a
  // 2048x2500 image.
  const std::vector<int64_t> hist16 = Histogram16(image);
  StatusOr<IntensityTable> table = MakeIntensityTable(hist16, static_cast<int64_t>(image.pixels.size()), params);
  if (!table.ok()) return table.status();
  const int lo = table->lo, hi = table->hi;
  std::vector<uint8_t> lut(65536, 0);
  std::array<int64_t, 256> hist8{};
  for (int v = lo; v <= hi; ++v) {
    uint8_t b = table->lut[v - lo];
    if (image.monochrome1) b = static_cast<uint8_t>(255 - b);
    lut[v] = b;
    hist8[b] += hist16[v];
  }
  if (params.equalize_histogram) {
    const std::array<uint8_t, 256> eq = EqualizationLut(hist8, static_cast<int64_t>(image.pixels.size()));
    for (int v = lo; v <= hi; ++v) lut[v] = eq[lut[v]];
  }
  int w = 0, h = 0;
  ResizedSize(image.width, image.height, params.resize_short_side, &w, &h);
  const int crop = params.center_crop;
  if (Status s = CheckResizedSize(w, h, crop); !s.ok()) return s;
  auto row = [&](int y, uint8_t* buffer) {
    const uint16_t* src = &image.pixels[static_cast<size_t>(y) * image.width];
    for (int x = 0; x < image.width; ++x) buffer[x] = lut[src[x]];
  };
  return PreprocessedImage{
      ResampleWindow(image.width, image.height, row, w, h, CropOffset(w, crop), CropOffset(h, crop), crop, crop)};
}

std::vector<float> ToModelInput(const PreprocessedImage& image, const PreprocessingParams& params) {
  const size_t plane = image.gray.pixels.size();
  std::vector<float> out(3 * plane);
  for (int c = 0; c < 3; ++c) {
    float* dst = &out[c * plane];
    for (size_t i = 0; i < plane; ++i)
      dst[i] = (static_cast<float>(image.gray.pixels[i]) / 255.f - params.mean[c]) / params.std[c];
  }
  return out;
}

}  // namespace pxs::scoring
