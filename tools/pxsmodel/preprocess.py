"""Image loading and preprocessing, step for step as in docs/model-package.md.

The C++ scoring engine (scoring/src/preprocess.cc) implements the same steps, faithful to
the published QTIM-Lab/PXS-score code, and tools/reference_pxs.py is its Python reference;
both must give the same tensor for the same image, so this module does exactly what they do:

* decode the *stored* pixel values (no Modality LUT / VOI LUT: the min-max step below
  makes linear rescales irrelevant), first frame of a multi-frame object;
* unsigned data: keep only bits HighBit-BitsStored+1 .. HighBit (some writers leave
  overlay or garbage bits above HighBit);
* min-max to 8 bit in float64, ``(v - min) / (max - min) * 255``, *truncated* (numpy
  ``astype(uint8)``); a uniform image is an error (nothing to score);
* MONOCHROME1 is inverted after the min-max step (``255 - v``);
* optional autocrop (PXS-updated, *before* the equalisation): keep the bounding box of rows
  and columns with a value ``> threshold``; an image with none becomes 1x1;
* histogram equalisation with ``cv2.equalizeHist``;
* resize so the short side is ``resize_short_side`` with PIL bilinear + antialias
  (torchvision ``Resize`` on a PIL image), centre crop (torchvision ``CenterCrop``), 3
  identical channels, float ``v / 255``, then ``(x - mean) / std`` per channel.

PNG (and other PIL-readable) files go through the same steps from "min-max" on; 16-bit
PNGs keep their full range, RGB(A) PNGs are converted to luminance.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Dict, List, Sequence

import cv2
import numpy as np
import pydicom
import torch
from PIL import Image
from torchvision import transforms

from .errors import DataError

PNG_EXTENSIONS = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"}
DICOM_EXTENSIONS = {".dcm", ".dicom", ""}

DEFAULT_PREPROCESSING: Dict = {
    "equalize_histogram": True,
    "autocrop": False,
    "autocrop_threshold": 2,
    "resize_short_side": 336,
    "center_crop": 320,
    "mean": [0.0, 0.0, 0.0],
    "std": [1.0, 1.0, 1.0],
}


@dataclass
class DecodedImage:
    """Stored pixel values of one image plus what the later steps need to know."""

    pixels: np.ndarray  # 2-D, integer or float, stored values
    monochrome1: bool
    source_kind: str  # "dicom" or "png"


def _is_dicom_file(path: str) -> bool:
    """DICOM Part 10 files carry 'DICM' at offset 128; we do not guess from the name."""
    try:
        with open(path, "rb") as handle:
            handle.seek(128)
            return handle.read(4) == b"DICM"
    except OSError:
        return False


def image_kind(path: str) -> str:
    """'dicom', 'png' (any PIL raster format) or '' for files we do not read."""
    if _is_dicom_file(path):
        return "dicom"
    ext = os.path.splitext(path)[1].lower()
    if ext in PNG_EXTENSIONS:
        return "png"
    return ""


def _decode_dicom(path: str) -> DecodedImage:
    try:
        ds = pydicom.dcmread(path)
    except Exception as exc:  # pydicom raises many types for broken files
        raise DataError(f"{path}: not a readable DICOM file ({exc})") from exc
    if "PixelData" not in ds:
        raise DataError(f"{path}: DICOM file has no PixelData")
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip()
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise DataError(f"{path}: PhotometricInterpretation {photometric} is not a grayscale "
                        "radiograph (MONOCHROME1/MONOCHROME2 expected)")
    try:
        pixels = ds.pixel_array
    except Exception as exc:
        raise DataError(f"{path}: cannot decode pixel data "
                        f"(transfer syntax {ds.file_meta.get('TransferSyntaxUID', '?')}): {exc}") from exc
    if pixels.ndim == 3:  # multi-frame: the first frame is the image we score
        pixels = pixels[0]
    if pixels.ndim != 2:
        raise DataError(f"{path}: unexpected pixel array shape {pixels.shape}")
    pixel_representation = int(ds.get("PixelRepresentation", 0))
    high_bit = ds.get("HighBit")
    if pixel_representation == 0 and high_bit is not None and int(high_bit) < 31:
        high_bit = int(high_bit)
        bits_stored = int(ds.get("BitsStored", high_bit + 1))
        mask = (1 << (high_bit + 1)) - (1 << max(high_bit - bits_stored + 1, 0))
        pixels = np.bitwise_and(pixels.astype(np.int64), mask)
    return DecodedImage(pixels=pixels, monochrome1=(photometric == "MONOCHROME1"),
                        source_kind="dicom")


def _decode_png(path: str) -> DecodedImage:
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode in ("RGB", "RGBA", "P", "LA", "CMYK"):
                img = img.convert("L")
            pixels = np.array(img)
    except Exception as exc:
        raise DataError(f"{path}: not a readable image ({exc})") from exc
    if pixels.ndim != 2:
        raise DataError(f"{path}: expected a grayscale image, got shape {pixels.shape}")
    return DecodedImage(pixels=pixels, monochrome1=False, source_kind="png")


def decode_image(path: str) -> DecodedImage:
    """Reads a DICOM or PNG file; raises DataError naming the file when it cannot."""
    if not os.path.isfile(path):
        raise DataError(f"{path}: file not found")
    kind = image_kind(path)
    if kind == "dicom":
        return _decode_dicom(path)
    if kind == "png":
        return _decode_png(path)
    raise DataError(f"{path}: neither a DICOM Part 10 file nor a PNG/JPEG image")


def to_uint8(decoded: DecodedImage, where: str = "image") -> np.ndarray:
    """Min-max to 8 bit (truncating, as the published code and the node), then invert
    MONOCHROME1 (so bright = dense, as in MONOCHROME2)."""
    values = decoded.pixels.astype(np.float64)
    low, high = float(values.min()), float(values.max())
    if not high > low:
        raise DataError(f"{where}: blank image (all pixels equal {low:g}): nothing to score")
    out = ((values - low) / (high - low) * 255.0).astype(np.uint8)
    if decoded.monochrome1:
        out = 255 - out
    return out


def autocrop(image: np.ndarray, threshold: int) -> np.ndarray:
    """Crops to the bounding box of pixels brighter than `threshold`."""
    rows = np.flatnonzero((image > threshold).any(axis=1))
    cols = np.flatnonzero((image > threshold).any(axis=0))
    if rows.size == 0 or cols.size == 0:
        return image[:1, :1]  # as the published function (and the node) do
    return image[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]


def to_8bit_display(path: str, preprocessing: Dict) -> np.ndarray:
    """Steps up to and including autocrop: an equalised 8-bit 2-D image."""
    return equalize_and_crop(to_uint8(decode_image(path), path), preprocessing)


def equalize_and_crop(image: np.ndarray, preprocessing: Dict) -> np.ndarray:
    """Optional autocrop, then histogram equalisation of an 8-bit image (PXS-updated crops
    first: the threshold applies to the min-max image)."""
    if preprocessing.get("autocrop", False):
        image = autocrop(image, int(preprocessing.get("autocrop_threshold", 2)))
    if preprocessing.get("equalize_histogram", True):
        image = np.ascontiguousarray(image)
        image = cv2.equalizeHist(image)
    return image


def resize_short_side(image: np.ndarray, short_side: int) -> Image.Image:
    """PIL bilinear resize with antialiasing, exactly what torchvision Resize does on PIL."""
    return transforms.Resize(int(short_side))(Image.fromarray(image))


def finish_tensor(pil_image: Image.Image, preprocessing: Dict) -> torch.Tensor:
    """Centre crop, [0,1] float, 3 channels, mean/std. Returns [3,H,W]."""
    crop = int(preprocessing["center_crop"])
    tensor = transforms.ToTensor()(transforms.CenterCrop(crop)(pil_image))
    return normalise(tensor.repeat(3, 1, 1), preprocessing)


def normalise(tensor3: torch.Tensor, preprocessing: Dict) -> torch.Tensor:
    mean = torch.tensor(preprocessing.get("mean", [0.0] * 3), dtype=torch.float32).view(3, 1, 1)
    std = torch.tensor(preprocessing.get("std", [1.0] * 3), dtype=torch.float32).view(3, 1, 1)
    return (tensor3 - mean) / std


def preprocess_file(path: str, preprocessing: Dict) -> torch.Tensor:
    """The whole contract pipeline for one file: returns float32 [3, crop, crop]."""
    image = to_8bit_display(path, preprocessing)
    return finish_tensor(resize_short_side(image, preprocessing["resize_short_side"]), preprocessing)


def preprocess_files(paths: Sequence[str], preprocessing: Dict) -> torch.Tensor:
    return torch.stack([preprocess_file(p, preprocessing) for p in paths])


def pixel_hash(path: str) -> str:
    """Hash of the decoded 8-bit image: two files with the same picture hash alike even when
    one is DICOM and the other PNG (used to find duplicate images)."""
    return pixel_hash_of(to_uint8(decode_image(path), path))


def pixel_hash_of(image: np.ndarray) -> str:
    digest = hashlib.sha256()
    digest.update(np.asarray(image.shape, dtype=np.int64).tobytes())
    digest.update(image.tobytes())
    return digest.hexdigest()


def list_images(folder: str) -> List[str]:
    """Every DICOM or PNG file under `folder` (recursive, sorted for reproducibility)."""
    if not os.path.isdir(folder):
        raise DataError(f"{folder}: image folder not found")
    found = []
    for root, _dirs, files in os.walk(folder):
        for name in files:
            if name.startswith("."):
                continue
            path = os.path.join(root, name)
            if image_kind(path):
                found.append(path)
    return sorted(found)
