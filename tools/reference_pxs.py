#!/usr/bin/python3
"""The published PXS pipeline in Python, for parity checks and benchmarks.

Reproduces QTIM-Lab/PXS-score as published (PXS_preprocessing.py for the DICOM steps,
PXS_test.py / PXS_test_direct_from_DICOM.py for the transforms and the score):

  pydicom pixel_array -> mask bits above HighBit -> float64 min-max, *255, astype(uint8)
  (truncation) -> cv2.bitwise_not for MONOCHROME1 -> [autocrop, PXS-updated, before the
  equalisation] -> cv2.equalizeHist -> [JPEG q95 write/read, only with --jpeg-roundtrip]
  -> PIL Image -> torchvision Resize(short side) -> CenterCrop -> ToTensor -> 3 channels
  -> Normalize(mean, std) (identity for the published model) -> embedding network.

plus this project's optional steps (docs/model-package.md, absent in the published code):
`intensity: "percentile"` in place of the min-max and `body_crop` after the autocrop. They
are written here independently of tools/pxsmodel/preprocess.py (full sort instead of
np.partition, explicit scans instead of flatnonzero) so that the parity tests cross-check
two implementations, not one with itself.

All parameters come from the package's metadata.json (docs/model-package.md). Files that
are not DICOM (PNG, JPEG) are read with PIL as 8-bit grey ("L") and go through the same
steps from the intensity step on (the node itself decodes only DICOM).

The score, one anchor at a time as the reference code does (F.pairwise_distance per
anchor, then statistics.median):
  * default: the package's cached anchor embeddings (`anchors` buffer): N distances, one
    forward pass for the study;
  * --anchor-images FILE...: the published Siamese method, 2N forward passes per study
    (for each anchor image, forward(anchor) and forward(study) again).

Prints one JSON object per input file (JSON Lines); --dump-tensor-dir writes each
preprocessed tensor as raw little-endian float32 [3,H,W] to DIR/<file name>.f32.

  reference_pxs.py --package tests/fixtures/pxs_test_model.pt image.dcm [more.dcm ...]
"""

import argparse
import json
import math
import os
import statistics
import sys
import time

import cv2
import numpy as np
import pydicom
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision import transforms


def load_package(path):
    extra = {"metadata.json": ""}
    module = torch.jit.load(path, map_location="cpu", _extra_files=extra)
    module.eval()
    meta = json.loads(extra["metadata.json"])
    anchors = module.anchors.detach().float() if hasattr(module, "anchors") else None
    return module, meta, anchors


def autocrop_box(image, threshold):
    """PXS-updated's autocrop: the bounding box of rows/columns with a value > threshold
    (as (rows, cols) slices; one pixel when there is none, as the published function)."""
    cols = np.where(np.max(image, 0) > threshold)[0]
    if cols.size:
        rows = np.where(np.max(image, 1) > threshold)[0]
        return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)
    return slice(0, 1), slice(0, 1)


def percentile_8bit(raw, p_low, p_high):
    """intensity "percentile": lo/hi = sorted values at floor(p / 100 * (n - 1))."""
    ordered = np.sort(raw, axis=None)
    n = ordered.size
    lo = ordered[math.floor(p_low / 100.0 * (n - 1))]
    hi = ordered[math.floor(p_high / 100.0 * (n - 1))]
    if hi <= lo:
        lo, hi = ordered[0], ordered[-1]
    scaled = (raw - lo) / (hi - lo)
    return (np.minimum(np.maximum(scaled, 0.0), 1.0) * 255).astype(np.uint8)


def longest_run(ok):
    """(first, last) of the longest run of True (the first of equal runs), or None."""
    best, i, n = None, 0, len(ok)
    while i < n:
        if not ok[i]:
            i += 1
            continue
        j = i
        while j + 1 < n and ok[j + 1]:
            j += 1
        if best is None or j - i > best[1] - best[0]:
            best = (i, j)
        i = j + 1
    return best


def grow(first, last, min_size, size):
    need = min_size - (last - first + 1)
    if need > 0:
        first, last = first - need // 2, last + (need - need // 2)
        if first < 0:
            first, last = 0, last - first
        if last >= size:
            first, last = max(0, first - (last - size + 1)), size - 1
    return first, last


def bright_span(sums, pixels, length, fraction, offset, fallback, min_size, size):
    """The longest run of sums >= fraction * mean * length (mean = total / pixels), moved by
    offset (fallback if none), then grown to min_size of size."""
    limit = fraction * (float(sums.sum()) / float(pixels)) * float(length)
    run = longest_run([float(v) >= limit for v in sums])
    first, last = (offset + run[0], offset + run[1]) if run else fallback
    return grow(first, last, max(1, int(min_size * size)), size)


def body_crop_box(image, pre):
    """One pass of the optional body crop (docs/model-package.md, "Preprocessing", step 5),
    as (rows, cols) slices."""
    flat = int(pre.get("body_crop_flat_range", 8))
    fraction = float(pre.get("body_crop_fraction", 0.3))
    min_size = float(pre.get("body_crop_min_size", 0.5))
    h, w = image.shape
    wide = image.astype(np.int64)
    rng_rows = wide.max(1) - wide.min(1)
    top, bottom = 0, h - 1
    while top < h and rng_rows[top] <= flat:
        top += 1
    if top == h:
        top, left, right = 0, 0, w - 1
    else:
        while rng_rows[bottom] <= flat:
            bottom -= 1
        band = wide[top:bottom + 1]
        rng_cols = band.max(0) - band.min(0)
        left, right = 0, w - 1
        while left < w and rng_cols[left] <= flat:
            left += 1
        if left == w:
            left = 0
        else:
            while rng_cols[right] <= flat:
                right -= 1
    box = wide[top:bottom + 1, left:right + 1]
    y0, y1 = bright_span(box.sum(1), box.size, box.shape[1], fraction, top, (top, bottom), min_size, h)
    band = wide[y0:y1 + 1, left:right + 1]
    x0, x1 = bright_span(band.sum(0), band.size, band.shape[0], fraction, left, (left, right), min_size, w)
    return slice(y0, y1 + 1), slice(x0, x1 + 1)


def read_stored(path):
    """Stored values (bits above HighBit masked, as PXS_preprocessing.py) and whether the
    image is MONOCHROME1; PIL "L" for files that are not DICOM."""
    with open(path, "rb") as handle:
        handle.seek(128)
        is_dicom = handle.read(4) == b"DICM"
    if not is_dicom:
        with Image.open(path) as img:
            return np.array(img.convert("L")), False
    ds = pydicom.dcmread(path)
    raw = ds.pixel_array
    if raw.ndim == 3 and int(ds.get("SamplesPerPixel", 1)) == 1:
        raw = raw[0]  # multi-frame: the first frame
    if raw.ndim != 2:
        raise ValueError(f"{path}: expecting a single-channel (grey-scale) image")
    if int(ds.get("PixelRepresentation", 0)) == 0:  # as PXS_preprocessing.py (unsigned)
        raw = np.bitwise_and(raw, (2 ** (ds.HighBit + 1) - 2 ** (ds.HighBit - ds.BitsStored + 1)))
    return raw, ds.PhotometricInterpretation == "MONOCHROME1"


def intensity_8bit(raw, pre, monochrome1, path):
    """The intensity step (min-max as published, or percentiles) and MONOCHROME1 inversion."""
    raw = raw.astype(np.float64)
    if raw.max() == raw.min():
        raise ValueError(f"{path}: blank image (all pixels equal)")
    intensity = pre.get("intensity") or "minmax"
    if intensity == "percentile":
        p_low, p_high = pre.get("intensity_percentiles") or [0.5, 99.5]
        image = percentile_8bit(raw, float(p_low), float(p_high))
    elif intensity == "minmax":
        raw = raw - raw.min()
        image = (raw / raw.max() * 255).astype(np.uint8)
    else:
        raise ValueError(f"unknown preprocessing.intensity {intensity!r}")
    if monochrome1:
        image = cv2.bitwise_not(image)
    return image


def dicom_to_8bit(path, pre, jpeg_roundtrip=False):
    """The published DICOM steps (plus the optional ones); returns the equalised uint8 image."""
    raw, monochrome1 = read_stored(path)
    image = intensity_8bit(raw, pre, monochrome1, path)
    if pre["autocrop"]:
        box = autocrop_box(image, pre["autocrop_threshold"])
        image, raw = image[box], raw[box]
    if pre.get("body_crop"):
        for _ in range(2):  # the second pass sees the picture without its borders
            box = body_crop_box(image, pre)
            raw = raw[box]
            image = intensity_8bit(raw, pre, monochrome1, path)
    if pre["equalize_histogram"]:
        image = cv2.equalizeHist(np.ascontiguousarray(image))
    if jpeg_roundtrip:
        _, enc = cv2.imencode(".jpg", image, [int(cv2.IMWRITE_JPEG_QUALITY), 95])
        image = cv2.imdecode(enc, 0)
    return image


def to_tensor(image8, pre):
    """The published transforms on a PIL image; returns [1,3,H,W]."""
    transf = transforms.Compose([
        transforms.Resize(pre["resize_short_side"]),
        transforms.CenterCrop(pre["center_crop"]),
        transforms.ToTensor(),
    ])
    x = transf(Image.fromarray(image8)).repeat(3, 1, 1)
    mean = torch.tensor(pre["mean"], dtype=torch.float32).view(3, 1, 1)
    std = torch.tensor(pre["std"], dtype=torch.float32).view(3, 1, 1)
    if pre["mean"] != [0, 0, 0] or pre["std"] != [1, 1, 1]:
        x = (x - mean) / std
    return x.unsqueeze(0)


def pxs_cached(net, anchors, x):
    """One forward pass; distances to the cached anchors one at a time, median."""
    out = net(x)
    distances = [F.pairwise_distance(anchors[j:j + 1], out).item() for j in range(anchors.shape[0])]
    return statistics.median(distances), out


def pxs_siamese(net, anchor_tensors, x):
    """The published loop: forward(anchor_j) and forward(study) for every anchor."""
    distances = []
    for a in anchor_tensors:
        out1, out2 = net(a), net(x)
        distances.append(F.pairwise_distance(out1, out2).item())
    return statistics.median(distances), out2


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="+", help="DICOM files to score")
    ap.add_argument("--package", required=True, help="model package (.pt)")
    ap.add_argument("--anchor-images", nargs="+", metavar="DICOM",
                    help="score with the published 2N-pass Siamese method against these anchor images")
    ap.add_argument("--jpeg-roundtrip", action="store_true",
                    help="add PXS-updated's JPEG q95 write/read step (the node does not)")
    ap.add_argument("--dump-tensor-dir", help="write each preprocessed tensor as raw float32 here")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: all cores)")
    ap.add_argument("--embedding", action="store_true", help="include the embedding in the output")
    args = ap.parse_args()

    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    net, meta, anchors = load_package(args.package)
    pre = meta["preprocessing"]
    anchor_tensors = None
    if args.anchor_images:
        anchor_tensors = [to_tensor(dicom_to_8bit(p, pre, args.jpeg_roundtrip), pre) for p in args.anchor_images]
    elif anchors is None:
        sys.exit(f"{args.package}: no 'anchors' buffer; pass --anchor-images")
    failures = 0
    with torch.inference_mode():
        for path in args.files:
            record = {"file": path}
            try:
                t0 = time.perf_counter()
                x = to_tensor(dicom_to_8bit(path, pre, args.jpeg_roundtrip), pre)
                t1 = time.perf_counter()
                if anchor_tensors is not None:
                    score, emb = pxs_siamese(net, anchor_tensors, x)
                    record["method"] = f"siamese, {2 * len(anchor_tensors)} forward passes"
                else:
                    score, emb = pxs_cached(net, anchors, x)
                    record["method"] = "cached anchors, 1 forward pass"
                t2 = time.perf_counter()
                record.update(pxs=score, preprocess_ms=(t1 - t0) * 1e3, inference_ms=(t2 - t1) * 1e3)
                if args.embedding:
                    record["embedding"] = emb[0].tolist()
                if args.dump_tensor_dir:
                    os.makedirs(args.dump_tensor_dir, exist_ok=True)
                    out = os.path.join(args.dump_tensor_dir, os.path.basename(path) + ".f32")
                    x[0].contiguous().numpy().astype("<f4").tofile(out)
                    record["tensor"] = out
                    record["tensor_shape"] = list(x.shape[1:])
            except Exception as exc:  # report, go on with the next file
                record["error"] = f"{type(exc).__name__}: {exc}"
                failures += 1
            print(json.dumps(record), flush=True)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
