#include "pxs/scoring/preprocess.h"

#include <algorithm>
#include <array>
#include <cfenv>
#include <cmath>
#include <cstdint>

namespace pxs::scoring {

StatusOr<Image8> MinMaxTo8Bit(const DecodedImage& image) {
  if (image.samples_per_pixel != 1) return Status::Unsupported("colour image (samples per pixel " +
                                                               std::to_string(image.samples_per_pixel) + ")");
  if (image.width <= 0 || image.height <= 0 ||
      image.pixels.size() != static_cast<size_t>(image.width) * static_cast<size_t>(image.height))
    return Status::InvalidArgument("decoded image: " + std::to_string(image.width) + "x" +
                                   std::to_string(image.height) + " does not match its " +
                                   std::to_string(image.pixels.size()) + " pixels");
  auto [lo_it, hi_it] = std::minmax_element(image.pixels.begin(), image.pixels.end());
  const unsigned lo = *lo_it, hi = *hi_it;
  if (lo == hi) return Status::Unsupported("blank image: every pixel is " + std::to_string(lo));
  // The published code computes (v - min) / max(v - min) * 255 in float64 and truncates
  // (numpy astype(uint8)). A lookup table over the value range gives the same doubles
  // with one division per distinct value instead of per pixel.
  std::vector<uint8_t> lut(hi - lo + 1);
  const double range = static_cast<double>(hi - lo);
  for (unsigned v = 0; v <= hi - lo; ++v) lut[v] = static_cast<uint8_t>(static_cast<double>(v) / range * 255.0);
  Image8 out{image.width, image.height, std::vector<uint8_t>(image.pixels.size())};
  for (size_t i = 0; i < image.pixels.size(); ++i) out.pixels[i] = lut[image.pixels[i] - lo];
  return out;
}

void Invert(Image8& image) {
  for (uint8_t& v : image.pixels) v = static_cast<uint8_t>(255 - v);
}

Image8 Autocrop(const Image8& image, int threshold) {
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
  if (x1 < 0) return Image8{1, 1, {image.pixels.empty() ? uint8_t{0} : image.pixels[0]}};
  Image8 out{x1 - x0 + 1, y1 - y0 + 1, {}};
  out.pixels.reserve(static_cast<size_t>(out.width) * out.height);
  for (int y = y0; y <= y1; ++y) {
    auto begin = image.pixels.begin() + static_cast<ptrdiff_t>(y) * image.width + x0;
    out.pixels.insert(out.pixels.end(), begin, begin + out.width);
  }
  return out;
}

Image8 EqualizeHistogram(const Image8& image) {
  std::array<int, 256> hist{};
  for (uint8_t v : image.pixels) ++hist[v];
  Image8 out{image.width, image.height, std::vector<uint8_t>(image.pixels.size())};
  const int total = static_cast<int>(image.pixels.size());
  int first = 0;
  while (first < 255 && hist[first] == 0) ++first;
  if (hist[first] == total) {  // one value only: OpenCV sets the whole image to it
    std::fill(out.pixels.begin(), out.pixels.end(), static_cast<uint8_t>(first));
    return out;
  }
  // OpenCV: lut[first] = 0; lut[i] = saturate_cast<uchar>(cumsum * scale) with a float
  // scale and cvRound (round half to even), the cumulative sum excluding hist[first].
  const float scale = 255.f / static_cast<float>(total - hist[first]);
  std::array<uint8_t, 256> lut{};
  int sum = 0;
  for (int i = first + 1; i < 256; ++i) {
    sum += hist[i];
    float scaled = static_cast<float>(sum) * scale;
    long rounded = std::lrint(scaled);  // default FE_TONEAREST: half to even, as cvRound
    lut[i] = static_cast<uint8_t>(std::clamp(rounded, 0L, 255L));
  }
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

Image8 ResizeBilinearAntialias(const Image8& image, int out_width, int out_height) {
  if (out_width == image.width && out_height == image.height) return image;  // PIL copies
  Image8 current = image;
  if (out_width != image.width) {
    const ResampleCoefficients c = ComputeCoefficients(image.width, out_width);
    Image8 tmp{out_width, image.height, std::vector<uint8_t>(static_cast<size_t>(out_width) * image.height)};
    for (int y = 0; y < image.height; ++y) {
      const uint8_t* in = &image.pixels[static_cast<size_t>(y) * image.width];
      uint8_t* out = &tmp.pixels[static_cast<size_t>(y) * out_width];
      for (int xx = 0; xx < out_width; ++xx) {
        const int32_t* w = &c.weights[static_cast<size_t>(xx) * c.kernel_size];
        const uint8_t* src = in + c.first[xx];
        int32_t acc = 1 << (kPrecisionBits - 1);
        for (int x = 0; x < c.count[xx]; ++x) acc += src[x] * w[x];
        out[xx] = Clip8(acc);
      }
    }
    current = std::move(tmp);
  }
  if (out_height != current.height) {
    const ResampleCoefficients c = ComputeCoefficients(current.height, out_height);
    Image8 tmp{current.width, out_height, std::vector<uint8_t>(static_cast<size_t>(current.width) * out_height)};
    std::vector<int32_t> acc(current.width);
    for (int yy = 0; yy < out_height; ++yy) {
      std::fill(acc.begin(), acc.end(), 1 << (kPrecisionBits - 1));
      const int32_t* w = &c.weights[static_cast<size_t>(yy) * c.kernel_size];
      // Row-wise accumulation (same sums as PIL's column loop, cache-friendly order).
      for (int y = 0; y < c.count[yy]; ++y) {
        const uint8_t* in = &current.pixels[static_cast<size_t>(c.first[yy] + y) * current.width];
        const int32_t wy = w[y];
        for (int x = 0; x < current.width; ++x) acc[x] += in[x] * wy;
      }
      uint8_t* out = &tmp.pixels[static_cast<size_t>(yy) * current.width];
      for (int x = 0; x < current.width; ++x) out[x] = Clip8(acc[x]);
    }
    current = std::move(tmp);
  }
  return current;
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
  // torchvision: int(round((h - size) / 2.0)); Python rounds half to even, as nearbyint
  // does in the default rounding mode.
  const int top = static_cast<int>(std::nearbyint((image.height - size) / 2.0));
  const int left = static_cast<int>(std::nearbyint((image.width - size) / 2.0));
  Image8 out{size, size, {}};
  out.pixels.reserve(static_cast<size_t>(size) * size);
  for (int y = 0; y < size; ++y) {
    auto begin = image.pixels.begin() + static_cast<ptrdiff_t>(top + y) * image.width + left;
    out.pixels.insert(out.pixels.end(), begin, begin + size);
  }
  return out;
}

StatusOr<PreprocessedImage> Preprocess(const DecodedImage& image, const PreprocessingParams& params) {
  StatusOr<Image8> scaled = MinMaxTo8Bit(image);
  if (!scaled.ok()) return scaled.status();
  Image8 img = std::move(scaled).value();
  if (image.monochrome1) Invert(img);
  // PXS-updated crops before equalising (the threshold applies to the min-max image).
  if (params.autocrop) img = Autocrop(img, params.autocrop_threshold);
  if (params.equalize_histogram) img = EqualizeHistogram(img);
  int w = 0, h = 0;
  ResizedSize(img.width, img.height, params.resize_short_side, &w, &h);
  if (w < params.center_crop || h < params.center_crop)
    return Status::Unsupported("image too small after resize (" + std::to_string(w) + "x" + std::to_string(h) + ")");
  img = ResizeBilinearAntialias(img, w, h);
  StatusOr<Image8> cropped = CenterCrop(img, params.center_crop);
  if (!cropped.ok()) return cropped.status();
  return PreprocessedImage{std::move(cropped).value()};
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
