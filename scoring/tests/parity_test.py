#!/usr/bin/python3
"""Parity: the C++ scoring engine against the published Python pipeline.

Runs tools/reference_pxs.py (pydicom + OpenCV + PIL + torchvision, cached anchors one at a
time) and scoring_parity_helper (pxs::imaging + pxs::scoring) on every scorable file of
../shared/data/dicom (manifest expected_scoring starting with "score") and on a few
longitudinal samples (written by ../shared/data/longitudinal/make_dicom.py into a temporary
folder), for each parity package in tests/fixtures, and asserts:
  * the PXS agrees within 1e-3 relative;
  * the preprocessed tensors agree within 2/255 per pixel (in [0,1] units).
Exit 77 (ctest SKIP_RETURN_CODE) with a SKIPPED message when python3-torch & co. or
../shared/data are absent.
"""

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile

SKIP = 77
PACKAGES = ["pxs_test_model_320.pt", "pxs_test_model.pt", "pxs_test_model_autocrop.pt"]
LONGITUDINAL_PATIENTS = "PXSLONG-001,PXSLONG-002"


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
    import numpy as np

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
            py_dir, cc_dir = os.path.join(tmp, "py"), os.path.join(tmp, "cc")
            py = run_jsonl([sys.executable, os.path.join(args.repo, "tools", "reference_pxs.py"),
                            "--package", package, "--dump-tensor-dir", py_dir, *files])
            cc = run_jsonl([args.helper, "--package", package, "--dump-tensor-dir", cc_dir, *files])
            for path in files:
                name = os.path.basename(path)
                where = f"{package_name} {name}"
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
                std = np.repeat(np.array(json.loads(_metadata(package))["preprocessing"]["std"], dtype=np.float32),
                                tp.size // 3)
                diff = np.abs(tp - tc) * std
                rel = abs(c["pxs"] - p["pxs"]) / max(abs(p["pxs"]), 1e-12)
                differing = int((diff > 1e-6).sum())
                print(f"{where}: pxs python {p['pxs']:.6f} c++ {c['pxs']:.6f} rel {rel:.2e}; "
                      f"tensor max diff {diff.max() * 255:.3f}/255, {differing} of {tp.size} values differ")
                compared += 1
                if rel > 1e-3:
                    failures.append(f"{where}: PXS differs by {rel:.2e} relative (> 1e-3)")
                if diff.max() > 2 / 255 + 1e-6:
                    failures.append(f"{where}: tensor differs by {diff.max() * 255:.2f}/255 (> 2/255)")
                os.remove(p["tensor"])
                os.remove(c["tensor"])
        print(f"compared {compared} (package, file) pairs over {len(files)} files")
        if failures:
            print("FAIL:\n  " + "\n  ".join(failures))
            sys.exit(1)
        print("PASS")


def _metadata(package):
    import torch
    extra = {"metadata.json": ""}
    torch.jit.load(package, map_location="cpu", _extra_files=extra)
    return extra["metadata.json"]


if __name__ == "__main__":
    main()
