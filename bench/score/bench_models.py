#!/usr/bin/python3
"""Several models per node and CPU bf16: the C++ engine next to its peers, one run.

  bench/score/bench_models.py --cpp BUILD/bin/pxs_bench_models [--threads 0] [--rounds 5]
        [--package models/pxs-demo-cxr14.pt --package models/pxs-demo-edema.pt]
        [--dicom ../shared/data/dicom] [--images ../shared/data/cxr14/images] [--timed 128]

Measures, with the same intra-op thread count everywhere (default: all cores):
  multi      the worker's pattern on the chest DICOM files of ../shared/data/dicom (those
             the manifest says to score): decode once, preprocess per distinct
             preprocessing, score each model; two models per image against one model per
             image (image i scored by model i % 2), alternating rounds in one process;
             goal <= 1.7x;
  precision  per package, C++ ScoreBatch at batch --batch, fp32 and bf16 (the node's
             "convert" mode), on the cxr14 images preprocessed by the node's C++ path;
             goal bf16 >= 1.5x fp32;
  python     the same package and images in Python (tools/pxsmodel preprocessing; forward
             passes timed, drift_python.embed): fp32, bf16 autocast (what a user would try
             first) and bf16 weights; goal C++ bf16 >= 1.25x Python autocast;
  paired     per package, pxs_bench_models paired: C++ fp32, bf16 convert, bf16 autocast
             and a Python-equivalent autocast peer interleaved pass by pass in one
             process; medians of the per-round ratios (the figures to trust on a busy host);
  drift      |PXS(bf16) - PXS(fp32)| of the C++ engine over every image (500 cxr14),
             p50/p99/max in % of the fp32 PXS range over those images (and of the
             calibration scale for a calibrated package); goal p99 <= 2 %.
C++ and Python alternate round by round and each variant keeps its best round, so both
see the same conditions on a shared machine. The last line printed is one JSON object.
"""

import argparse
import copy
import csv
import json
import os
import struct
import subprocess
import sys
import tempfile
import warnings

import numpy as np
import torch

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(REPO, "tools"))
from pxsmodel import calibration, package, preprocess  # noqa: E402
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from drift_python import embed  # noqa: E402  (the Python variants, as the drift script runs them)

DEFAULT_PACKAGES = ("models/pxs-demo-cxr14.pt", "models/pxs-demo-edema.pt")
SHARED = os.path.join(REPO, "..", "shared", "data")


def machine():
    info = {"cores": os.cpu_count()}
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "Model name":
                info["cpu"] = value.strip()
            if key.strip() == "Flags":
                flags = value.split()
                info["flags"] = [f for f in flags if f.startswith(("avx512", "amx", "avx2", "fma"))]
    except OSError:
        pass
    return info


def run_cpp(argv):
    proc = subprocess.run(argv, capture_output=True, text=True)
    for line in proc.stdout.splitlines()[:-1]:
        print("  " + line)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(argv[:3])} failed: {proc.stderr.strip()}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def write_raw(paths, out_path):
    """The images as pxs_bench_models reads them: uint32 width, height, then 8-bit grey."""
    with open(out_path, "wb") as out:
        for p in paths:
            pixels = preprocess.decode_image(p).pixels
            if pixels.dtype != np.uint8:
                sys.exit(f"{p}: not an 8-bit image (the raw format is 8-bit)")
            out.write(struct.pack("<II", pixels.shape[1], pixels.shape[0]))
            out.write(np.ascontiguousarray(pixels).tobytes())


def python_rounds(module, bf16_module, batch, batch_size):
    """Images/s of the forward passes per variant, one round (drift_python.embed: the
    distances are not timed, which favours Python a little over ScoreBatch)."""
    out = {}
    for name, mod, kind in (("fp32", module, "fp32"), ("autocast", module, "autocast"),
                            ("bf16_weights", bf16_module, "bf16")):
        with torch.inference_mode():
            _, spent = embed(mod, batch, batch_size, kind)
        out[name] = len(batch) / spent
    return out


def drift(pxs32, pxs16, scale):
    d = np.abs(np.asarray(pxs16) - np.asarray(pxs32))
    r = {"p50": float(np.quantile(d, 0.5)), "p99": float(np.quantile(d, 0.99)), "max": float(d.max()), "range": scale}
    if scale > 0:
        r.update({k + "_pct": 100.0 * r[k] / scale for k in ("p50", "p99", "max")})
    return r


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cpp", required=True, help="path of pxs_bench_models")
    ap.add_argument("--package", action="append", default=[])
    ap.add_argument("--dicom", default=os.path.join(SHARED, "dicom"))
    ap.add_argument("--images", default=os.path.join(SHARED, "cxr14", "images"))
    ap.add_argument("--threads", type=int, default=0, help="intra-op threads everywhere (0: all cores)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--timed", type=int, default=128, help="images per timed round (precision, python)")
    args = ap.parse_args()
    threads = args.threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    packages = args.package or [os.path.join(REPO, p) for p in DEFAULT_PACKAGES]
    host = machine()
    load_start = os.getloadavg()
    print(f"{host.get('cpu', '?')}, {host['cores']} cores, flags {' '.join(host.get('flags', []))}; "
          f"{threads} threads; load average at start {load_start[0]:.2f} {load_start[1]:.2f} {load_start[2]:.2f}")
    summary = {"bench": "score-models", "machine": host, "threads": threads, "rounds": args.rounds,
               "batch": args.batch, "torch": torch.__version__, "gpu": torch.cuda.is_available(),
               "load_average_start": [round(v, 2) for v in load_start]}

    # 1. Two models on the same images vs one model per image.
    chest = []
    manifest = os.path.join(args.dicom, "manifest.csv")
    if os.path.exists(manifest):
        with open(manifest, newline="") as fh:
            chest = [os.path.join(args.dicom, r["file"]) for r in csv.DictReader(fh)
                     if r["expected_scoring"].startswith("score")]
    else:
        print(f"note: {manifest} not found: multi-model part skipped")
    if len(packages) >= 2 and chest:
        print(f"--- multi: {len(chest)} chest DICOM files, {os.path.basename(packages[0])} + {os.path.basename(packages[1])}")
        multi = run_cpp([args.cpp, "multi", "--model", packages[0], "--model", packages[1], "--threads", str(threads),
                         "--rounds", str(args.rounds)] + chest)
        summary["multi"] = multi
        summary["multi_goal_met"] = multi["ratio"] <= 1.7

    # 2-4. Per package: C++ fp32/bf16, Python fp32/autocast/bf16 weights, C++ drift.
    paths = preprocess.list_images(args.images)
    if not paths:
        sys.exit(f"no images in {args.images}")
    timed = paths[:args.timed]
    results = []
    with tempfile.TemporaryDirectory(prefix="pxs-bench-models-") as tmp:
        raw_all, raw_timed = os.path.join(tmp, "all.raw"), os.path.join(tmp, "timed.raw")
        write_raw(paths, raw_all)
        write_raw(timed, raw_timed)
        for path in packages:
            module, meta = package.load_package(path)
            module.eval()
            with warnings.catch_warnings():  # .to() on a ScriptModule touches .grad of non-leaves: harmless
                warnings.simplefilter("ignore", UserWarning)
                bf16_module = copy.deepcopy(module).to(torch.bfloat16)
            batch = preprocess.preprocess_files(timed, meta["preprocessing"])
            label = f"{meta['name']} {meta['version']}"
            print(f"--- {label} ({meta['preprocessing']['center_crop']} px), {len(paths)} images for the drift, "
                  f"{len(timed)} timed, batch {args.batch}")
            for _ in range(2):  # TorchScript's profiling executor optimises after the first calls
                python_rounds(module, bf16_module, batch[:args.batch], args.batch)
            cpp_best, py_best, pxs_of = {}, {}, {}
            for r in range(args.rounds):
                # One process per variant (as the node runs one Scorer per model); the
                # first round scores every image (the drift), later ones the timed ones.
                # bf16 is the node's default ("convert": bf16 weights, NHWC); bf16_autocast
                # the Scorer's other mode (fp32 module under CPU autocast).
                for variant, prec, mode in (("fp32", "fp32", "convert"), ("bf16", "bf16", "convert"),
                                            ("bf16_autocast", "bf16", "autocast")):
                    cpp = run_cpp([args.cpp, "precision", "--model", path, "--precision", prec, "--bf16-mode", mode,
                                   "--images", raw_all if r == 0 else raw_timed, "--batch", str(args.batch),
                                   "--threads", str(threads), "--rounds", "2", "--timed", str(len(timed))])
                    if r == 0:
                        pxs_of[variant] = cpp["pxs"]
                    cpp_best[variant] = max(cpp_best.get(variant, 0), cpp["images_per_s"])
                    print(f"  c++ {variant}: {cpp['images_per_s']:.1f} images/s")
                py = python_rounds(module, bf16_module, batch, args.batch)
                print("  python: " + ", ".join(f"{k} {v:.1f} images/s" for k, v in py.items()))
                for k, v in py.items():
                    py_best[k] = max(py_best.get(k, 0), v)
            # The same variants interleaved pass by pass in one process, with a peer that
            # makes Python autocast's libtorch calls: a busy host slows all of them alike,
            # which best rounds of separate processes do not guarantee.
            paired = run_cpp([args.cpp, "paired", "--model", path, "--images", raw_timed, "--batch", str(args.batch),
                              "--threads", str(threads), "--rounds", str(max(6, 2 * args.rounds)),
                              "--timed", str(len(timed))])
            pxs32, pxs16 = pxs_of["fp32"], pxs_of["bf16"]
            entry = {"model": label, "input_px": meta["preprocessing"]["center_crop"], "images_drift": len(pxs32),
                     "images_timed": len(timed), "cpp_images_per_s": cpp_best, "python_images_per_s": py_best,
                     "bf16_vs_fp32": cpp_best["bf16"] / cpp_best["fp32"],
                     "bf16_vs_python_autocast": cpp_best["bf16"] / py_best["autocast"],
                     "cpp_fp32_vs_python_fp32": cpp_best["fp32"] / py_best["fp32"],
                     "bf16_autocast_vs_fp32": cpp_best["bf16_autocast"] / cpp_best["fp32"],
                     "drift": drift(pxs32, pxs16, float(max(pxs32) - min(pxs32))),
                     "drift_autocast": drift(pxs32, pxs_of["bf16_autocast"], float(max(pxs32) - min(pxs32)))}
            cal = meta.get("calibration")
            if cal and cal.get("points"):
                c32 = calibration.apply(cal["points"], np.asarray(pxs32))
                c16 = calibration.apply(cal["points"], np.asarray(pxs16))
                entry["drift_calibrated"] = drift(c32, c16, float(cal.get("max", 0) - cal.get("min", 0)))
                entry["drift_calibrated"]["scale"] = cal.get("scale")
            entry["paired"] = paired
            entry["goals_met_paired"] = {"bf16_vs_fp32_1.5x": paired["median_ratio_bf16_vs_fp32"] >= 1.5,
                                         "bf16_vs_peer_autocast_1.25x": paired["median_ratio_bf16_vs_peer_autocast"] >= 1.25}
            print(f"  {label}: paired in one process, median of per-round ratios: bf16/fp32 "
                  f"{paired['median_ratio_bf16_vs_fp32']:.2f}x, bf16/peer autocast "
                  f"{paired['median_ratio_bf16_vs_peer_autocast']:.2f}x")
            entry["goals_met"] = {"bf16_vs_fp32_1.5x": entry["bf16_vs_fp32"] >= 1.5,
                                  "bf16_vs_python_autocast_1.25x": entry["bf16_vs_python_autocast"] >= 1.25,
                                  "drift_p99_2pct": entry["drift"].get("p99_pct", 100) <= 2.0}
            d = entry["drift"]
            print(f"  {label}: C++ bf16 autocast {cpp_best['bf16_autocast']:.1f} images/s "
                  f"({entry['bf16_autocast_vs_fp32']:.2f}x fp32), drift p99 "
                  f"{entry['drift_autocast'].get('p99_pct', float('nan')):.3f} %")
            print(f"  {label}: C++ bf16 {cpp_best['bf16']:.1f} vs fp32 {cpp_best['fp32']:.1f} images/s = "
                  f"{entry['bf16_vs_fp32']:.2f}x (goal >= 1.5x); vs Python autocast {py_best['autocast']:.1f} = "
                  f"{entry['bf16_vs_python_autocast']:.2f}x (goal >= 1.25x); drift p99 {d['p99']:.2e} = "
                  f"{d.get('p99_pct', float('nan')):.3f} % of the fp32 PXS range (max {d.get('max_pct', float('nan')):.3f} %)")
            results.append(entry)
    summary["precision"] = results
    summary["load_average_end"] = [round(v, 2) for v in os.getloadavg()]
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
