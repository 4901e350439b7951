// Decodes the pixel data of a grey-scale DICOM image into scoring::DecodedImage: the
// stored values (no Modality LUT, no VOI LUT, no MONOCHROME1 inversion), with the bits
// above HighBit masked off. Handles every transfer syntax the SCP accepts: implicit and
// explicit VR little endian, explicit VR big endian, deflated, JPEG baseline / extended /
// lossless (process 14, SV1), JPEG-LS lossless and near-lossless, RLE. A multi-frame
// object gives its first frame.
//
// Never crashes on bad input and never allocates from Rows x Columns before checking
// them against the pixel data actually present. Errors:
//   kNotFound     file missing
//   kCorrupt      empty file, not DICOM, truncated, no Pixel Data, dimensions that
//                 do not match the pixel data, undecodable compressed data
//   kUnsupported  colour (SamplesPerPixel != 1), BitsAllocated other than 8/16, a frame > 512 MiB,
//                 a transfer syntax DCMTK cannot decode (JPEG 2000)
#pragma once

#include <string>

#include "pxs/common/status.h"
#include "pxs/scoring/decoded_image.h"

class DcmDataset;  // DCMTK

namespace pxs::imaging {

StatusOr<scoring::DecodedImage> DecodeDicomFile(const std::string& path);

// Same, on a data set already in memory (e.g. just received by the SCP). May change the
// data set's representation (decompresses it in place). `what` names it in errors.
StatusOr<scoring::DecodedImage> DecodeDicomDataset(DcmDataset& dataset, const std::string& what);

// Registers DCMTK's JPEG, JPEG-LS and RLE decoders; idempotent and thread-safe. Called by
// the functions above; call it yourself before using DCMTK decompression elsewhere.
void RegisterDicomDecoders();

}  // namespace pxs::imaging
