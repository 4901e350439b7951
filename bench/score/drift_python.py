#!/usr/bin/python3
"""Score drift of CPU bfloat16 against float32, in Python, for model packages.

  bench/score/drift_python.py [--package models/pxs-demo-cxr14.pt --package models/pxs-demo-edema.pt]
        [--images ../shared/data/cxr14/images] [--threads 1] [--batch-size 16]

For every package: the images are preprocessed once with the package's own preprocessing
(tools/pxsmodel, the node's steps), then embedded three ways and scored against the package's
stored float32 anchors (PXS = median distance, as the node does):
  fp32      the TorchScript module as shipped;
  autocast  the same module under torch.autocast("cpu", dtype=torch.bfloat16): what a Python
            user would try first;
  bf16      a copy with bfloat16 weights and bfloat16 input (everything bf16 but the
            distances, which are computed in float64 from the float32-cast embedding).
Drift = |PXS(variant) - PXS(fp32)| per image: p50, p99 and max, in PXS units and as % of the
score's range, two ways: (a) the range of the fp32 PXS over these images (max - min), and
(b) for a calibrated package, the calibrated value's drift as % of the calibration scale
(calibration.max - calibration.min, e.g. 8 points of RALE extent). Also the forward-pass
time of each variant (informational: the host may be busy; the comparison against the C++
engine is bench_score.cc's). The last line printed is one JSON object.
"""

import argparse
import copy
import json
import os
import platform
import sys
import time
import warnings

import numpy as np
import torch

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(REPO, "tools"))
from pxsmodel import calibration, package, preprocess  # noqa: E402

DEFAULT_PACKAGES = ("models/pxs-demo-cxr14.pt", "models/pxs-demo-edema.pt")
DEFAULT_IMAGES = os.path.join(REPO, "..", "shared", "data", "cxr14", "images")


def cpu_has_bf16() -> bool:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            flags = handle.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def embed(module, batch: torch.Tensor, batch_size: int, mode: str):
    """Embeddings [N, D] as float32 and the seconds spent in forward passes."""
    outs, spent = [], 0.0
    with torch.no_grad():
        for start in range(0, len(batch), batch_size):
            x = batch[start:start + batch_size]
            t0 = time.perf_counter()
            if mode == "autocast":
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    y = module(x)
            elif mode == "bf16":
                y = module(x.to(torch.bfloat16))
            else:
                y = module(x)
            spent += time.perf_counter() - t0
            outs.append(y.float())
    return torch.cat(outs), spent


def drift_stats(diff: np.ndarray, scale: float) -> dict:
    out = {"p50": float(np.quantile(diff, 0.5)), "p99": float(np.quantile(diff, 0.99)),
           "max": float(diff.max())}
    if scale > 0:
        out.update({f"{k}_pct": 100.0 * v / scale for k, v in list(out.items())})
    out["range"] = scale
    return out


def measure(path: str, paths, batch_size: int) -> dict:
    module, meta = package.load_package(path)
    pre = meta["preprocessing"]
    batch = preprocess.preprocess_files(paths, pre)
    anchors = module.anchors
    with warnings.catch_warnings():  # .to() on a ScriptModule touches .grad of non-leaves: harmless
        warnings.simplefilter("ignore", UserWarning)
        bf16_module = copy.deepcopy(module).to(torch.bfloat16)
    result = {"package": os.path.relpath(path, REPO), "name": meta["name"],
              "version": meta["version"], "images": len(paths),
              "input": f"{pre['center_crop']}px"}
    for mode, mod in (("fp32", module), ("autocast", module), ("bf16", bf16_module)):
        for _ in range(2):  # TorchScript's profiling executor optimises after the first calls
            embed(mod, batch[:batch_size], batch_size, mode)
    emb32, t32 = embed(module, batch, batch_size, "fp32")
    pxs32 = np.asarray(package.median_distance(emb32, anchors))
    result["fp32"] = {"seconds": t32, "pxs_min": float(pxs32.min()), "pxs_max": float(pxs32.max())}
    cal = meta.get("calibration")
    for mode, mod in (("autocast", module), ("bf16", bf16_module)):
        emb, spent = embed(mod, batch, batch_size, mode)
        pxs = np.asarray(package.median_distance(emb, anchors))
        entry = {"seconds": spent, "speedup_vs_fp32": t32 / spent if spent > 0 else None,
                 "raw": drift_stats(np.abs(pxs - pxs32), float(pxs32.max() - pxs32.min()))}
        if cal and cal.get("points"):
            c32 = calibration.apply(cal["points"], pxs32)
            c16 = calibration.apply(cal["points"], pxs)
            entry["calibrated"] = drift_stats(np.abs(c16 - c32),
                                              float(cal.get("max", 0) - cal.get("min", 0)))
            entry["calibrated"]["scale"] = cal.get("scale")
        result[mode] = entry
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--package", action="append", default=[],
                        help="model package (repeatable; default: both demo packages)")
    parser.add_argument("--images", default=DEFAULT_IMAGES, help="folder of images (PNG/DICOM)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--limit", type=int, default=0, help="use only the first N images")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if not cpu_has_bf16():
        print("note: this CPU has neither AVX512-BF16 nor AMX: bf16 runs emulated (slow); "
              "the drift figures still hold, the times do not", file=sys.stderr)
    paths = preprocess.list_images(args.images)
    if args.limit:
        paths = paths[:args.limit]
    if not paths:
        sys.exit(f"no images in {args.images}")
    packages = args.package or [os.path.join(REPO, p) for p in DEFAULT_PACKAGES]
    results = []
    for path in packages:
        r = measure(path, paths, args.batch_size)
        results.append(r)
        print(f"{r['name']} {r['version']} ({r['input']}, {r['images']} images): fp32 PXS "
              f"{r['fp32']['pxs_min']:.4f}-{r['fp32']['pxs_max']:.4f}, forward {r['fp32']['seconds']:.1f} s")
        for mode in ("autocast", "bf16"):
            e = r[mode]
            raw = e["raw"]
            line = (f"  {mode:8s} forward {e['seconds']:.1f} s ({e['speedup_vs_fp32']:.2f}x fp32); "
                    f"|dPXS| p50 {raw['p50']:.2e} p99 {raw['p99']:.2e} max {raw['max']:.2e} = "
                    f"p99 {raw.get('p99_pct', float('nan')):.3f} % of the fp32 PXS range")
            if "calibrated" in e:
                c = e["calibrated"]
                line += (f"; calibrated p99 {c['p99']:.4f} = {c.get('p99_pct', float('nan')):.3f} % "
                         f"of the {c['range']:g}-point scale")
            print(line)
    summary = {"benchmark": "bf16_drift_python", "torch": torch.__version__,
               "cpu": platform.processor() or platform.machine(), "cpu_bf16": cpu_has_bf16(),
               "threads": args.threads, "batch_size": args.batch_size, "results": results}
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
