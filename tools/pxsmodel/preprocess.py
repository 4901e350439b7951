"""Image loading and preprocessing, step for step as in docs/model-package.md.

The C++ scoring engine (scoring/src/preprocess.cc) implements the same steps, faithful to
the published QTIM-Lab/PXS-score code, and tools/reference_pxs.py is its Python reference;
all three must give the same tensor for the same image, so this module does exactly what
they do:

* decode the *stored* pixel values (no Modality LUT / VOI LUT: the intensity step below
  makes linear rescales irrelevant), first frame of a multi-frame object;
* unsigned data: keep only bits HighBit-BitsStored+1 .. HighBit (some writers leave
  overlay or garbage bits above HighBit);
* intensity to 8 bit in float64, *truncated* (numpy ``astype(uint8)``):
  ``intensity: "minmax"`` (default, published) ``(v - min) / (max - min) * 255``, or
  ``"percentile"``: the same between two percentiles of the stored values, clipped to
  [0, 1] first; a uniform image is an error (nothing to score);
* MONOCHROME1 is inverted after the intensity step (``255 - v``);
* optional autocrop (PXS-updated): keep the bounding box of rows and columns with a value
  ``> threshold``; an image with none becomes 1x1;
* optional body crop (``body_crop``): see ``body_crop_box`` and ``to_8bit`` (two passes,
  the intensity step computed again over the body after each);
* histogram equalisation with ``cv2.equalizeHist`` (after both crops);
* resize so the short side is ``resize_short_side`` with PIL bilinear + antialias
  (torchvision ``Resize`` on a PIL image), centre crop (torchvision ``CenterCrop``), 3
  identical channels, float ``v / 255``, then ``(x - mean) / std`` per channel.

PNG/JPEG (and other PIL-readable) files go through the same steps from "intensity" on;
16-bit PNGs keep their full range, RGB(A) files are converted to luminance (3 equal
channels, as the ralo JPEGs, give that value exactly).
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

# Optional keys (docs/model-package.md): absent means the value here, which is the published
# pipeline, so packages written before these keys existed preprocess exactly as before.
OPTIONAL_PREPROCESSING: Dict = {
    "intensity": "minmax",
    "intensity_percentiles": [0.5, 99.5],
    "body_crop": False,
    "body_crop_flat_range": 8,
    "body_crop_fraction": 0.3,
    "body_crop_min_size": 0.5,
}
INTENSITY_MODES = ("minmax", "percentile")

# What a package for images beyond the published data should use (the demo package):
# percentiles resist burnt-in text, markers and collimator edges at the ends of 12-16-bit
# data; the body crop removes borders and labels so a full-size DICOM looks like the
# tightly framed 224-px training JPEGs.
ROBUST_PREPROCESSING: Dict = dict(OPTIONAL_PREPROCESSING, intensity="percentile", body_crop=True)


def check_optional_keys(preprocessing: Dict) -> None:
    """Raises DataError naming every optional key with a value the node would refuse
    (scoring/src/model_info.cc has the same rules), so a package is never written, nor a
    model trained, with preprocessing the node cannot reproduce."""
    problems = []

    def number(key):
        value = preprocessing.get(key)
        return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None

    if preprocessing.get("intensity") is not None and preprocessing["intensity"] not in INTENSITY_MODES:
        problems.append(f"key 'preprocessing.intensity' must be \"minmax\" or \"percentile\" "
                        f"(is {preprocessing['intensity']!r})")
    pair = preprocessing.get("intensity_percentiles")
    if pair is not None:
        ok = (isinstance(pair, (list, tuple)) and len(pair) == 2
              and all(isinstance(p, (int, float)) and not isinstance(p, bool) for p in pair)
              and 0 <= pair[0] < pair[1] <= 100)
        if not ok:
            problems.append("key 'preprocessing.intensity_percentiles' must be [low, high] with "
                            "0 <= low < high <= 100")
    if preprocessing.get("body_crop") is not None and not isinstance(preprocessing["body_crop"], bool):
        problems.append("key 'preprocessing.body_crop' must be true or false")
    if preprocessing.get("body_crop_flat_range") is not None:
        value = number("body_crop_flat_range")
        if value is None or value != int(value) or not 0 <= value <= 254:
            problems.append("key 'preprocessing.body_crop_flat_range' must be a whole number from 0 to 254")
    for key in ("body_crop_fraction", "body_crop_min_size"):
        if preprocessing.get(key) is not None:
            value = number(key)
            if value is None or not 0 < value <= 1:
                problems.append(f"key 'preprocessing.{key}' must be a number in (0, 1]")
    if problems:
        raise DataError("preprocessing: " + "; ".join(problems))


def option(preprocessing: Dict, key: str):
    """An optional preprocessing key, or its published-pipeline default."""
    value = preprocessing.get(key)
    return OPTIONAL_PREPROCESSING[key] if value is None else value


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


def to_uint8(decoded: DecodedImage, where: str = "image", preprocessing: Dict = None) -> np.ndarray:
    """Stored values to 8 bit as the package's ``intensity`` says (min-max when absent or
    when `preprocessing` is None, as the published code), then invert MONOCHROME1 (so
    bright = dense, as in MONOCHROME2)."""
    pre = preprocessing or {}
    mode = option(pre, "intensity")
    if mode not in INTENSITY_MODES:
        raise DataError(f"preprocessing.intensity {mode!r} is not one of {', '.join(INTENSITY_MODES)}")
    values = decoded.pixels.astype(np.float64)
    low, high = float(values.min()), float(values.max())
    if not high > low:
        raise DataError(f"{where}: blank image (all pixels equal {low:g}): nothing to score")
    if mode == "percentile":
        p_low, p_high = (float(p) for p in option(pre, "intensity_percentiles"))
        out = percentile_to_uint8(values, p_low, p_high)
    else:
        out = ((values - low) / (high - low) * 255.0).astype(np.uint8)
    if decoded.monochrome1:
        out = 255 - out
    return out


def percentile_index(p: float, n: int) -> int:
    """Index into the n sorted values for percentile p: floor(p / 100 * (n - 1)), computed
    in double in exactly this order (the node does the same)."""
    return int(np.floor(p / 100.0 * (n - 1)))


def percentile_to_uint8(values: np.ndarray, p_low: float, p_high: float) -> np.ndarray:
    """(v - lo) / (hi - lo) clipped to [0, 1], * 255, truncated, with lo and hi the stored
    values at the two percentiles; min-max when they coincide (a mostly uniform image)."""
    flat = values.ravel()
    k_low, k_high = percentile_index(p_low, flat.size), percentile_index(p_high, flat.size)
    ordered = np.partition(flat, (k_low, k_high))
    low, high = float(ordered[k_low]), float(ordered[k_high])
    if not high > low:
        low, high = float(flat.min()), float(flat.max())
    return (np.clip((values - low) / (high - low), 0.0, 1.0) * 255.0).astype(np.uint8)


def autocrop_box(image: np.ndarray, threshold: int):
    """(y0, y1, x0, x1), inclusive: the bounding box of pixels brighter than `threshold`;
    (0, 0, 0, 0) when there are none (the published function then keeps one pixel)."""
    rows = np.flatnonzero((image > threshold).any(axis=1))
    cols = np.flatnonzero((image > threshold).any(axis=0))
    if rows.size == 0 or cols.size == 0:
        return 0, 0, 0, 0
    return int(rows[0]), int(rows[-1]), int(cols[0]), int(cols[-1])


def autocrop(image: np.ndarray, threshold: int) -> np.ndarray:
    """Crops to the bounding box of pixels brighter than `threshold`."""
    y0, y1, x0, x1 = autocrop_box(image, threshold)
    return image[y0:y1 + 1, x0:x1 + 1]


def _expand(first: int, last: int, min_size: int, size: int):
    """Grows [first, last] (inclusive) symmetrically to at least min_size, kept in [0, size)."""
    need = min_size - (last - first + 1)
    if need <= 0:
        return first, last
    first -= need // 2
    last += need - need // 2
    if first < 0:
        last, first = last - first, 0
    if last > size - 1:
        first, last = max(first - (last - (size - 1)), 0), size - 1
    return first, last


def _flat_trim(image: np.ndarray, flat_range: int):
    """The box left after dropping flat rows, then flat columns, at the four edges (a row or
    column is flat when its max - min <= flat_range: uniform black or white borders)."""
    height, width = image.shape
    row_range = image.max(axis=1).astype(np.int32) - image.min(axis=1)
    rows = np.flatnonzero(row_range > flat_range)
    if rows.size == 0:
        return 0, height - 1, 0, width - 1
    y0, y1 = int(rows[0]), int(rows[-1])
    band = image[y0:y1 + 1]
    col_range = band.max(axis=0).astype(np.int32) - band.min(axis=0)
    cols = np.flatnonzero(col_range > flat_range)
    if cols.size == 0:
        return y0, y1, 0, width - 1
    return y0, y1, int(cols[0]), int(cols[-1])


def _bright_span(sums: np.ndarray, length: int, fraction: float, mean: float):
    """The longest run of consecutive indices whose sum over `length` pixels is >=
    fraction * mean * length (double arithmetic in this order, as the node; the first of
    equally long runs), as (first, last); None when no index qualifies. A run, not the
    bounding box, so a label or marker separated from the body by darker rows is left out."""
    keep = (sums.astype(np.float64) >= fraction * mean * float(length)).tolist()
    best, start = None, None
    for i, bright in enumerate(keep + [False]):
        if bright and start is None:
            start = i
        elif not bright and start is not None:
            if best is None or i - start > best[1] - best[0] + 1:
                best = (start, i - 1)
            start = None
    return best


def body_crop_box(image: np.ndarray, preprocessing: Dict):
    """The body crop (docs/model-package.md), on the 8-bit image after the intensity step,
    the MONOCHROME1 inversion and the optional autocrop, i.e. bright = dense:

    1. drop flat rows and then flat columns at the edges (max - min <= body_crop_flat_range):
       uniform black or white borders, collimator shutters, padding;
    2. in the box left (mean m = sum / count), rows: the longest run of consecutive rows
       whose mean is >= body_crop_fraction * m (dark borders and noise are below it, the
       lungs are not, for the mediastinum and chest wall in the same row; a label or marker
       apart from the body is its own, shorter run); none: the whole box;
    3. columns: the same within those rows, against the mean of that band;
    4. each side at least int(body_crop_min_size * the image's side) (at least 1), grown
       symmetrically about the box and kept inside the image, so it never collapses.

    Integer sums and a fixed order of double operations make it exact on both sides.
    Returns (y0, y1, x0, x1), inclusive, in the image's coordinates."""
    height, width = image.shape
    flat_range = int(option(preprocessing, "body_crop_flat_range"))
    fraction = float(option(preprocessing, "body_crop_fraction"))
    min_size = float(option(preprocessing, "body_crop_min_size"))
    ty0, ty1, tx0, tx1 = _flat_trim(image, flat_range)
    box = image[ty0:ty1 + 1, tx0:tx1 + 1]
    row_sums = box.sum(axis=1, dtype=np.int64)
    span = _bright_span(row_sums, box.shape[1], fraction, float(int(row_sums.sum())) / float(box.size))
    y0, y1 = (ty0 + span[0], ty0 + span[1]) if span else (ty0, ty1)
    y0, y1 = _expand(y0, y1, max(1, int(min_size * height)), height)
    band = image[y0:y1 + 1, tx0:tx1 + 1]
    col_sums = band.sum(axis=0, dtype=np.int64)
    span = _bright_span(col_sums, band.shape[0], fraction, float(int(col_sums.sum())) / float(band.size))
    x0, x1 = (tx0 + span[0], tx0 + span[1]) if span else (tx0, tx1)
    x0, x1 = _expand(x0, x1, max(1, int(min_size * width)), width)
    return y0, y1, x0, x1


def body_crop(image: np.ndarray, preprocessing: Dict) -> np.ndarray:
    y0, y1, x0, x1 = body_crop_box(image, preprocessing)
    return image[y0:y1 + 1, x0:x1 + 1]


# The body crop is found twice: the first pass removes the borders, labels and padding,
# the second, on the picture with its intensity computed again without them, finds the body
# as it would in the same picture taken without borders (the same picture with and without
# a border then gives nearly the same crop: the parity test prints how nearly).
BODY_CROP_PASSES = 2


def to_8bit(decoded: DecodedImage, where: str, preprocessing: Dict) -> np.ndarray:
    """Steps 2-5 of docs/model-package.md: the intensity step, the MONOCHROME1 inversion,
    the optional autocrop and the optional body crop; after each body crop pass the
    intensity step is computed again over the stored values inside the crop, so that the
    image's statistics are those of the body, not of its borders."""
    return to_8bit_with_box(decoded, where, preprocessing)[0]


def to_8bit_with_box(decoded: DecodedImage, where: str, preprocessing: Dict):
    """``to_8bit`` and the rectangle of the decoded image it shows, (y0, y1, x0, x1)
    inclusive."""
    check_optional_keys(preprocessing)
    image = to_uint8(decoded, where, preprocessing)
    stored = decoded.pixels
    top, left = 0, 0
    if preprocessing.get("autocrop", False):
        y0, y1, x0, x1 = autocrop_box(image, int(preprocessing.get("autocrop_threshold", 2)))
        image, stored = image[y0:y1 + 1, x0:x1 + 1], stored[y0:y1 + 1, x0:x1 + 1]
        top, left = y0, x0
    if option(preprocessing, "body_crop"):
        for _ in range(BODY_CROP_PASSES):
            y0, y1, x0, x1 = body_crop_box(image, preprocessing)
            stored = stored[y0:y1 + 1, x0:x1 + 1]
            top, left = top + y0, left + x0
            image = to_uint8(DecodedImage(stored, decoded.monochrome1, decoded.source_kind), where, preprocessing)
    return image, (top, top + image.shape[0] - 1, left, left + image.shape[1] - 1)


def equalize(image: np.ndarray, preprocessing: Dict) -> np.ndarray:
    """Step 6: cv2.equalizeHist if the package asks for it."""
    if preprocessing.get("equalize_histogram", True):
        return cv2.equalizeHist(np.ascontiguousarray(image))
    return image


def to_8bit_display(path: str, preprocessing: Dict) -> np.ndarray:
    """Steps up to and including the equalisation: an 8-bit 2-D image."""
    return equalize(to_8bit(decode_image(path), path, preprocessing), preprocessing)


def equalize_and_crop(image: np.ndarray, preprocessing: Dict) -> np.ndarray:
    """Optional autocrop, then histogram equalisation of an 8-bit image from ``to_uint8``
    (PXS-updated crops first: the threshold applies to the image before equalisation).
    The body crop needs the stored values: use ``to_8bit`` and ``equalize`` for it."""
    if option(preprocessing, "body_crop"):
        raise ValueError("body_crop recomputes the intensity from the stored values: call "
                         "equalize(to_8bit(decoded, where, preprocessing), preprocessing)")
    if preprocessing.get("autocrop", False):
        image = autocrop(image, int(preprocessing.get("autocrop_threshold", 2)))
    return equalize(image, preprocessing)


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
