#!/usr/bin/python3
"""The published PXS pipeline in Python, for parity checks and benchmarks.

Reproduces QTIM-Lab/PXS-score as published (PXS_preprocessing.py for the DICOM steps,
PXS_test.py / PXS_test_direct_from_DICOM.py for the transforms and the score):

  pydicom pixel_array -> mask bits above HighBit -> float64 min-max, *255, astype(uint8)
  (truncation) -> cv2.bitwise_not for MONOCHROME1 -> [autocrop, PXS-updated, before the
  equalisation] -> cv2.equalizeHist -> [JPEG q95 write/read, only with --jpeg-roundtrip]
  -> PIL Image -> torchvision Resize(short side) -> CenterCrop -> ToTensor -> 3 channels
  -> Normalize(mean, std) (identity for the published model) -> embedding network.

All parameters come from the package's metadata.json (docs/model-package.md).

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


def autocrop(image, threshold):
    """PXS-updated's autocrop: the bounding box of rows/columns with a value > threshold."""
    cols = np.where(np.max(image, 0) > threshold)[0]
    if cols.size:
        rows = np.where(np.max(image, 1) > threshold)[0]
        return image[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    return image[:1, :1]


def dicom_to_8bit(path, pre, jpeg_roundtrip=False):
    """The published DICOM steps; returns the equalised uint8 image."""
    ds = pydicom.dcmread(path)
    raw = ds.pixel_array
    if raw.ndim == 3 and int(ds.get("SamplesPerPixel", 1)) == 1:
        raw = raw[0]  # multi-frame: the first frame
    if raw.ndim != 2:
        raise ValueError(f"{path}: expecting a single-channel (grey-scale) image")
    if int(ds.get("PixelRepresentation", 0)) == 0:  # as PXS_preprocessing.py (unsigned)
        raw = np.bitwise_and(raw, (2 ** (ds.HighBit + 1) - 2 ** (ds.HighBit - ds.BitsStored + 1)))
    raw = raw.astype(np.float64)
    raw = raw - raw.min()
    if raw.max() == 0:
        raise ValueError(f"{path}: blank image (all pixels equal)")
    image = (raw / raw.max() * 255).astype(np.uint8)
    if ds.PhotometricInterpretation == "MONOCHROME1":
        image = cv2.bitwise_not(image)
    if pre["autocrop"]:
        image = autocrop(image, pre["autocrop_threshold"])
    if pre["equalize_histogram"]:
        image = cv2.equalizeHist(image)
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
