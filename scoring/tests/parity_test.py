#!/usr/bin/python3
"""Parity: the C++ scoring engine against the published Python pipeline.

Runs tools/reference_pxs.py (pydicom + OpenCV + PIL + torchvision, cached anchors one at a
time) and scoring_parity_helper (pxs::imaging + pxs::scoring) on every scorable file of
../shared/data/dicom (manifest expected_scoring starting with "score") and on a few
longitudinal samples (written by ../shared/data/longitudinal/make_dicom.py into a temporary
folder), for each parity package in tests/fixtures, and asserts:
  * the PXS agrees within 1e-3 relative;
  * the preprocessed tensors agree within 2/255 per pixel (in [0,1] units).

Then the optional preprocessing keys (percentile intensity, body crop; docs/model-package.md):
packages made here from pxs_test_model_320.pt with those keys in their metadata, on EVERY
file of ../shared/data/dicom (the non-chest and the CT too: preprocessing must hold for
them even where the node's policy declines to score), where the tensors must be identical
(bit for bit) and the PXS agree within 1e-3; and the Python tools' preprocessing
(tools/pxsmodel/preprocess.py, what training uses) must give the reference's tensor bit for
bit on those files and on a few ../shared/data/ralo JPEGs (the node decodes DICOM only).
Exit 77 (ctest SKIP_RETURN_CODE) with a SKIPPED message when python3-torch & co. or
../shared/data are absent.
"""

import argparse
import csv
import glob
import json
import os
import subprocess
import sys
import tempfile

SKIP = 77
PACKAGES = ["pxs_test_model_320.pt", "pxs_test_model.pt", "pxs_test_model_autocrop.pt"]
LONGITUDINAL_PATIENTS = "PXSLONG-001,PXSLONG-002"
# Packages with the optional keys, made from this fixture (its network takes any size):
BASE_PACKAGE = "pxs_test_model_320.pt"
OPTIONAL_VARIANTS = {
    # The recommended robust settings (tools/pxsmodel/preprocess.py ROBUST_PREPROCESSING).
    "robust": {"intensity": "percentile", "intensity_percentiles": [0.5, 99.5], "body_crop": True,
               "body_crop_flat_range": 8, "body_crop_fraction": 0.3, "body_crop_min_size": 0.5,
               "resize_short_side": 240, "center_crop": 224},
    # Percentiles alone take the node's fused path.
    "percentile_fused": {"intensity": "percentile", "intensity_percentiles": [2, 98],
                         "resize_short_side": 72, "center_crop": 64},
    # Everything on, unusual values, no equalisation: the crops show in the tensor directly.
    "tight_autocrop": {"intensity": "percentile", "intensity_percentiles": [0, 100], "autocrop": True,
                       "body_crop": True, "body_crop_flat_range": 0, "body_crop_fraction": 0.8,
                       "body_crop_min_size": 0.25, "equalize_histogram": False,
                       "resize_short_side": 72, "center_crop": 64},
}
RALO_SAMPLES = 8
FRAMED_SOURCE = []  # the shared DICOM the framed variants are made from (set in main)


def skip(msg):
    print(f"SKIPPED: {msg}")
    sys.exit(SKIP)


def run_jsonl(cmd):
    proc = subprocess.run(cmd, capture_output=True, text=True)
    records = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    if not records:
        sys.exit(f"FAIL: no output from {' '.join(cmd[:3])} ...\n{proc.stderr[-2000:]}")
    return {os.path.basename(r["file"]): r for r in records}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--helper", required=True)
    ap.add_argument("--repo", required=True)
    args = ap.parse_args()
    try:
        import numpy as np  # noqa: F401
        import torch  # noqa: F401
        import torchvision  # noqa: F401
        import cv2  # noqa: F401
        import pydicom  # noqa: F401
    except ImportError as exc:
        skip(f"/usr/bin/python3 cannot import {exc.name} (python3-torch, -torchvision, -opencv, "
             "-pydicom are needed for the reference pipeline)")

    data = os.path.join(args.repo, "..", "shared", "data")
    manifest = os.path.join(data, "dicom", "manifest.csv")
    if not os.path.exists(manifest):
        skip("../shared/data/dicom not found (shared test data is not present on this machine)")
    with open(manifest, newline="") as f:
        files = [os.path.join(data, "dicom", r["file"]) for r in csv.DictReader(f)
                 if r["expected_scoring"].startswith("score")]

    with tempfile.TemporaryDirectory(prefix="pxs_parity_") as tmp:
        longitudinal = os.path.join(tmp, "longitudinal")
        make = os.path.join(data, "longitudinal", "make_dicom.py")
        if os.path.exists(make):
            subprocess.run([sys.executable, make, longitudinal, "--patients", LONGITUDINAL_PATIENTS],
                           check=True, capture_output=True)
            files += sorted(os.path.join(longitudinal, n) for n in os.listdir(longitudinal) if n.endswith(".dcm"))
        else:
            print("note: ../shared/data/longitudinal/make_dicom.py not found; DICOM folder only")

        failures, compared = [], 0
        for package_name in PACKAGES:
            package = os.path.join(args.repo, "tests", "fixtures", package_name)
            compared += compare_node(args, package, package_name, files, tmp, failures, exact=False)
        all_dicom = sorted(os.path.join(data, "dicom", n) for n in os.listdir(os.path.join(data, "dicom"))
                           if n.endswith(".dcm"))
        all_dicom += [f for f in files if f.startswith(longitudinal)]
        FRAMED_SOURCE[:] = [os.path.join(data, "dicom", "cr_mono2_explicit_le.dcm")]
        all_dicom += make_framed(FRAMED_SOURCE[0], os.path.join(tmp, "framed"))
        ralo = sorted(glob.glob(os.path.join(data, "ralo", "images", "*.jpg")))
        ralo = ralo[:RALO_SAMPLES // 2] + ralo[-(RALO_SAMPLES // 2):] if ralo else []
        if not ralo:
            print("note: ../shared/data/ralo/images not found; JPEG parity (tools vs reference) not run")
        for variant, keys in OPTIONAL_VARIANTS.items():
            package = make_package(os.path.join(args.repo, "tests", "fixtures", BASE_PACKAGE), keys,
                                   os.path.join(tmp, f"pxs_{variant}.pt"))
            compared += compare_node(args, package, variant, all_dicom, tmp, failures, exact=True)
            compared += compare_tools(args.repo, package, variant, all_dicom + ralo, failures)
        report_crops(args.repo, OPTIONAL_VARIANTS["robust"], all_dicom + ralo, failures)
        print(f"compared {compared} (package, file) pairs")
        if failures:
            print("FAIL:\n  " + "\n  ".join(failures))
            sys.exit(1)
        print("PASS")


def compare_node(args, package, label, files, tmp, failures, exact):
    """reference_pxs.py against scoring_parity_helper on `files`; returns the pairs compared.
    exact: the tensors must be identical, else within 2/255."""
    import numpy as np
    py_dir, cc_dir = os.path.join(tmp, "py"), os.path.join(tmp, "cc")
    py = run_jsonl([sys.executable, os.path.join(args.repo, "tools", "reference_pxs.py"),
                    "--package", package, "--dump-tensor-dir", py_dir, *files])
    cc = run_jsonl([args.helper, "--package", package, "--dump-tensor-dir", cc_dir, *files])
    std = np.array(json.loads(_metadata(package))["preprocessing"]["std"], dtype=np.float32)
    compared = 0
    for path in files:
        name = os.path.basename(path)
        where = f"{label} {name}"
        p, c = py.get(name), cc.get(name)
        if p is None or c is None or "error" in p or "error" in c:
            failures.append(f"{where}: python {p and p.get('error', 'ok')}, c++ {c and c.get('error', 'ok')}")
            continue
        tp = np.fromfile(p["tensor"], dtype="<f4")
        tc = np.fromfile(c["tensor"], dtype="<f4")
        if tp.shape != tc.shape:
            failures.append(f"{where}: tensor sizes {tp.shape} vs {tc.shape}")
            continue
        # Compare in [0,1] pixel units: undo the package's std (mean cancels).
        diff = np.abs(tp - tc) * np.repeat(std, tp.size // 3)
        rel = abs(c["pxs"] - p["pxs"]) / max(abs(p["pxs"]), 1e-12)
        differing = int((diff > 1e-6).sum())
        print(f"{where}: pxs python {p['pxs']:.6f} c++ {c['pxs']:.6f} rel {rel:.2e}; "
              f"tensor max diff {diff.max() * 255:.3f}/255, {differing} of {tp.size} values differ")
        compared += 1
        if rel > 1e-3:
            failures.append(f"{where}: PXS differs by {rel:.2e} relative (> 1e-3)")
        if exact and not np.array_equal(tp, tc):
            failures.append(f"{where}: {differing} tensor values differ (must be identical)")
        elif diff.max() > 2 / 255 + 1e-6:
            failures.append(f"{where}: tensor differs by {diff.max() * 255:.2f}/255 (> 2/255)")
        os.remove(p["tensor"])
        os.remove(c["tensor"])
    return compared


def _tools_modules(repo):
    sys.path.insert(0, os.path.join(repo, "tools"))
    import importlib.util
    from pxsmodel import preprocess
    spec = importlib.util.spec_from_file_location("reference_pxs", os.path.join(repo, "tools", "reference_pxs.py"))
    reference = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(reference)
    return preprocess, reference


def compare_tools(repo, package, label, files, failures):
    """tools/pxsmodel/preprocess.py (training) against reference_pxs.py: identical tensors."""
    import torch
    preprocess, reference = _tools_modules(repo)
    pre = json.loads(_metadata(package))["preprocessing"]
    same = 0
    for path in files:
        ours = preprocess.preprocess_file(path, pre)
        theirs = reference.to_tensor(reference.dicom_to_8bit(path, pre), pre)[0]
        if torch.equal(ours, theirs):
            same += 1
        else:
            failures.append(f"{label} {os.path.basename(path)}: tools/pxsmodel tensor differs from the reference's")
    print(f"{label}: tools/pxsmodel and reference_pxs.py identical on {same} of {len(files)} files")
    return len(files)


def report_crops(repo, keys, files, failures):
    """Prints the body crop (fractions of the image) of each file at full size and after a
    224-px downsample (ralo's size), and how far the tensor of each framed file is from the
    unframed original's, with the published and with these steps. Asserts that the two
    crops agree within 3 % of a side and that the body crop brings a framed picture within
    8/255 (mean) of its unframed original."""
    import numpy as np
    from PIL import Image
    preprocess, _ = _tools_modules(repo)
    pre = dict(preprocess.DEFAULT_PREPROCESSING, **keys)
    print("body crop (rows y0-y1, columns x0-x1 as fractions), full size | 224-px downsample:")
    for path in files:
        decoded = preprocess.decode_image(path)
        small_pixels = np.array(Image.fromarray(preprocess.to_uint8(decoded, path)).resize((224, 224), Image.BILINEAR))
        small = preprocess.DecodedImage(small_pixels, False, "png")  # to_uint8 inverted MONOCHROME1
        rel = []
        for image in (decoded, small):
            _, (y0, y1, x0, x1) = preprocess.to_8bit_with_box(image, path, pre)
            h, w = image.pixels.shape
            rel.append((y0 / h, (y1 + 1) / h, x0 / w, (x1 + 1) / w))
        worst = max(abs(a - b) for a, b in zip(*rel))
        print(f"  {os.path.basename(path):40s} {decoded.pixels.shape[1]}x{decoded.pixels.shape[0]} "
              f"y {rel[0][0]:.3f}-{rel[0][1]:.3f} x {rel[0][2]:.3f}-{rel[0][3]:.3f} | "
              f"y {rel[1][0]:.3f}-{rel[1][1]:.3f} x {rel[1][2]:.3f}-{rel[1][3]:.3f}  (largest difference {worst:.3f})")
        if worst > 0.03:
            failures.append(f"{os.path.basename(path)}: full-size and 224-px crops differ by {worst:.3f} of a side")
    framed = [f for f in files if os.path.basename(f).startswith("framed_")]
    if framed:
        original = FRAMED_SOURCE[0]
        size = dict(resize_short_side=240, center_crop=224)
        for label, p in (("published", dict(preprocess.DEFAULT_PREPROCESSING, **size)),
                         ("robust", dict(pre, **size))):
            reference = preprocess.preprocess_file(original, p)
            for path in framed:
                diff = float((preprocess.preprocess_file(path, p) - reference).abs().mean()) * 255
                print(f"  {label:9s} {os.path.basename(path)}: mean |tensor - unframed original's| {diff:.1f}/255")
                if label == "robust" and diff > 8:
                    failures.append(f"{os.path.basename(path)}: {diff:.1f}/255 from the unframed original (> 8)")


def make_framed(source, folder):
    """Full-size variants of a shared DICOM as real CR/DX often come: the picture inside a
    noisy dark border with a burnt-in label and a flat white collimator band, as 12-bit
    MONOCHROME2 and as 16-bit MONOCHROME1. The body crop must find the picture again."""
    import numpy as np
    import pydicom
    if not os.path.exists(source):
        return []
    os.makedirs(folder, exist_ok=True)
    ds = pydicom.dcmread(source)
    picture = ds.pixel_array.astype(np.int64)  # 12-bit, 2048x2048
    rng = np.random.default_rng(20261203)
    out = []
    for name, bits, mono1 in (("framed_mono2_12bit.dcm", 12, False), ("framed_mono1_16bit.dcm", 16, True)):
        full = (1 << bits) - 1
        scaled = picture * full // 4095
        canvas = rng.integers(0, full // 40, (2400, 2300))
        canvas[200:2248, 150:2198] = scaled
        canvas[40:140, 40:700] = full        # a burnt-in label (white text block)
        canvas[2330:, :] = full * 9 // 10    # collimator band: flat, bright
        stored = (full - canvas) if mono1 else canvas
        framed = ds.copy()
        framed.Rows, framed.Columns = stored.shape
        framed.BitsStored, framed.HighBit = bits, bits - 1
        framed.PhotometricInterpretation = "MONOCHROME1" if mono1 else "MONOCHROME2"
        framed.PixelData = stored.astype("<u2").tobytes()
        path = os.path.join(folder, name)
        framed.save_as(path, write_like_original=False)
        out.append(path)
    return out


def make_package(base, keys, out):
    """`base` re-saved with `keys` merged into its metadata's preprocessing (and input size)."""
    import torch
    meta = json.loads(_metadata(base))
    meta["preprocessing"].update(keys)
    meta["input"]["height"] = meta["input"]["width"] = meta["preprocessing"]["center_crop"]
    module = torch.jit.load(base, map_location="cpu")
    torch.jit.save(module, out, _extra_files={"metadata.json": json.dumps(meta)})
    return out


def _metadata(package):
    import torch
    extra = {"metadata.json": ""}
    torch.jit.load(package, map_location="cpu", _extra_files=extra)
    return extra["metadata.json"]


if __name__ == "__main__":
    main()
