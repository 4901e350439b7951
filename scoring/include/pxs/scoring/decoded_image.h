// DecodedImage: the stored pixel values of one grey-scale DICOM frame, as the
// imaging/ decoder hands them to scoring/. It lives here (not in imaging/) so that
// scoring/ depends on LibTorch alone and can be fed from any decoder or a test.
#pragma once

#include <cstdint>
#include <vector>

namespace pxs::scoring {

struct DecodedImage {
  int width = 0;              // Columns
  int height = 0;             // Rows
  int bits_stored = 0;        // BitsStored; values above it were masked off by the decoder
  int bits_allocated = 16;    // 8 or 16: how the values were stored (8: every value < 256)
  int samples_per_pixel = 1;  // scoring accepts 1 only (grey-scale)
  bool monochrome1 = false;   // PhotometricInterpretation MONOCHROME1: low values are white
  // Row-major stored values, width * height of them: no Modality LUT, no VOI LUT, no
  // MONOCHROME1 inversion (the preprocessing does what the published pipeline does).
  // Signed data (PixelRepresentation 1) is shifted by 2^(bits_stored-1) so that the
  // order of values is kept; the min-max step makes that shift irrelevant.
  std::vector<uint16_t> pixels;
};

}  // namespace pxs::scoring
