#include "pxs/imaging/dicom_decoder.h"

#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcpixel.h>
#include <dcmtk/dcmdata/dcrledrg.h>
#include <dcmtk/dcmdata/dcxfer.h>
#include <dcmtk/dcmjpeg/djdecode.h>
#include <dcmtk/dcmjpls/djdecode.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <mutex>

namespace pxs::imaging {

using scoring::DecodedImage;

void RegisterDicomDecoders() {
  static std::once_flag once;
  std::call_once(once, [] {
    DJDecoderRegistration::registerCodecs();    // JPEG baseline, extended, lossless
    DJLSDecoderRegistration::registerCodecs();  // JPEG-LS lossless, near-lossless
    DcmRLEDecoderRegistration::registerCodecs();
  });
}

namespace {

// A decompressed frame larger than this is refused before DCMTK allocates it: a chest
// X-ray is at most ~4k x 4k x 2 bytes (32 MiB); this leaves room for very large detectors.
constexpr uint64_t kMaxFrameBytes = uint64_t{512} << 20;

StatusOr<uint16_t> RequiredUint16(DcmDataset& ds, const DcmTagKey& tag, const char* name, const std::string& what) {
  Uint16 v = 0;
  if (ds.findAndGetUint16(tag, v).bad()) return Status::Corrupt(what + ": missing or invalid " + name);
  return static_cast<uint16_t>(v);
}

}  // namespace

StatusOr<DecodedImage> DecodeDicomDataset(DcmDataset& ds, const std::string& what) {
  RegisterDicomDecoders();
  DcmElement* pixel_element = nullptr;
  if (ds.findAndGetElement(DCM_PixelData, pixel_element).bad() || pixel_element == nullptr)
    return Status::Corrupt(what + ": no Pixel Data (7FE0,0010)");

  // Geometry first, checked before anything is allocated from it.
  auto rows = RequiredUint16(ds, DCM_Rows, "Rows", what);
  auto cols = RequiredUint16(ds, DCM_Columns, "Columns", what);
  auto bits_allocated = RequiredUint16(ds, DCM_BitsAllocated, "BitsAllocated", what);
  auto bits_stored = RequiredUint16(ds, DCM_BitsStored, "BitsStored", what);
  if (!rows.ok()) return rows.status();
  if (!cols.ok()) return cols.status();
  if (!bits_allocated.ok()) return bits_allocated.status();
  if (!bits_stored.ok()) return bits_stored.status();
  Uint16 samples = 1, high_bit = 0, pixel_representation = 0;
  ds.findAndGetUint16(DCM_SamplesPerPixel, samples);
  if (ds.findAndGetUint16(DCM_HighBit, high_bit).bad()) high_bit = static_cast<Uint16>(*bits_stored - 1);
  ds.findAndGetUint16(DCM_PixelRepresentation, pixel_representation);
  OFString photometric;
  ds.findAndGetOFString(DCM_PhotometricInterpretation, photometric);

  if (samples != 1 || (photometric != "MONOCHROME1" && photometric != "MONOCHROME2"))
    return Status::Unsupported(what + ": colour image (SamplesPerPixel " + std::to_string(samples) +
                               ", PhotometricInterpretation '" + std::string(photometric.c_str()) +
                               "'); only MONOCHROME1/2 grey-scale images are scored");
  if (*rows == 0 || *cols == 0) return Status::Corrupt(what + ": Rows or Columns is 0");
  if (*bits_allocated != 8 && *bits_allocated != 16)
    return Status::Unsupported(what + ": BitsAllocated " + std::to_string(*bits_allocated) + " (8 or 16 supported)");
  if (*bits_stored == 0 || *bits_stored > *bits_allocated || high_bit >= *bits_allocated ||
      high_bit + 1 < *bits_stored)
    return Status::Corrupt(what + ": inconsistent BitsStored " + std::to_string(*bits_stored) + " / HighBit " +
                           std::to_string(high_bit) + " / BitsAllocated " + std::to_string(*bits_allocated));

  const uint64_t pixel_count = uint64_t{*rows} * *cols;
  const uint64_t bytes_per_sample = *bits_allocated / 8;
  const uint64_t frame_bytes = pixel_count * bytes_per_sample;
  if (frame_bytes > kMaxFrameBytes)
    return Status::Unsupported(what + ": " + std::to_string(*cols) + "x" + std::to_string(*rows) +
                               " frame is larger than the decoder's limit");

  // Compressed transfer syntaxes: decompress in place (DCMTK's registered codecs).
  const E_TransferSyntax original = ds.getOriginalXfer();
  const DcmXfer xfer(original);
  if (xfer.isEncapsulated()) {
    OFCondition c = ds.chooseRepresentation(EXS_LittleEndianExplicit, nullptr);
    if (c.bad() || !ds.canWriteXfer(EXS_LittleEndianExplicit))
      return Status::Unsupported(what + ": cannot decompress " + std::string(xfer.getXferName()) + " (" +
                                 std::string(c.text()) + ")");
    if (ds.findAndGetElement(DCM_PixelData, pixel_element).bad() || pixel_element == nullptr)
      return Status::Corrupt(what + ": no Pixel Data after decompression");
  }

  // The pixel data must hold at least one frame of the declared size: never read past it.
  const uint64_t available = pixel_element->getLength();
  if (available < frame_bytes)
    return Status::Corrupt(what + ": Rows x Columns = " + std::to_string(*rows) + " x " + std::to_string(*cols) +
                           " at " + std::to_string(*bits_allocated) + " bits needs " + std::to_string(frame_bytes) +
                           " bytes, Pixel Data holds " + std::to_string(available));

  DecodedImage out;
  out.width = *cols;
  out.height = *rows;
  out.bits_stored = *bits_stored;
  out.bits_allocated = *bits_allocated;
  out.samples_per_pixel = 1;
  out.monochrome1 = photometric == "MONOCHROME1";
  out.pixels.resize(pixel_count);

  // Stored value = the bits from HighBit - BitsStored + 1 to HighBit, the others masked.
  const int shift = high_bit + 1 - *bits_stored;
  const uint32_t mask = (uint32_t{1} << *bits_stored) - 1;
  const uint32_t sign_bit = uint32_t{1} << (*bits_stored - 1);
  auto store = [&](size_t i, uint32_t raw) {
    uint32_t v = (raw >> shift) & mask;
    // Signed data: shift by 2^(BitsStored-1) so that unsigned order equals signed order.
    if (pixel_representation == 1) v ^= sign_bit;
    out.pixels[i] = static_cast<uint16_t>(v);
  };
  if (*bits_allocated == 8) {
    Uint8* data = nullptr;
    if (pixel_element->getUint8Array(data).bad() || data == nullptr)
      return Status::Corrupt(what + ": cannot read 8-bit Pixel Data");
    for (size_t i = 0; i < pixel_count; ++i) store(i, data[i]);
  } else {
    Uint16* data = nullptr;
    if (pixel_element->getUint16Array(data).bad() || data == nullptr)
      return Status::Corrupt(what + ": cannot read 16-bit Pixel Data");
    for (size_t i = 0; i < pixel_count; ++i) store(i, data[i]);
  }
  return out;
}

StatusOr<DecodedImage> DecodeDicomFile(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) return Status::NotFound(path + ": no such file");
  const auto size = std::filesystem::file_size(path, ec);
  if (ec) return Status::IoError(path + ": " + ec.message());
  if (size == 0) return Status::Corrupt(path + ": empty file (0 bytes), not DICOM");

  DcmFileFormat file;
  // Read-only mode: only a Part 10 file (preamble + DICM) is accepted, so a PNG or text
  // file is "not DICOM" rather than a data set of garbage tags.
  OFCondition c = file.loadFile(path.c_str(), EXS_Unknown, EGL_noChange, DCM_MaxReadLength, ERM_fileOnly);
  if (c.bad()) {
    if (c == EC_FileMetaInfoHeaderMissing || c == EC_InvalidStream || c == EC_IllegalCall)
      return Status::Corrupt(path + ": not a DICOM Part 10 file (" + std::string(c.text()) + ")");
    return Status::Corrupt(path + ": cannot read DICOM (" + std::string(c.text()) + "; truncated or corrupt)");
  }
  return DecodeDicomDataset(*file.getDataset(), path);
}

}  // namespace pxs::imaging
