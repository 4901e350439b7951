#!/usr/bin/python3
"""PXS scoring benchmark: the C++ engine next to the Python pipelines, same machine, one run.

  bench/score/bench_python.py --cpp-bench BUILD/bin/pxs_bench_score [--threads 0]
        [--device cpu|cuda] [--precision fp32|fp16] [--anchors 10] [--quick]

Measures, per study (a synthetic 2048x2500 12-bit image, as bench_score.cc makes):
  published  the reference pipeline as published (QTIM-Lab/PXS-score): Python
             preprocessing, then for each of N anchors forward(anchor) and forward(study):
             2N DenseNet121 passes per study, batch 1, eager torchvision model;
  py-cached  Python preprocessing + one forward pass + distances to cached anchors:
             eager model at batch 1 and 8, and the package's TorchScript frozen and
             optimize_for_inference'd at batch 1 and 8 (the best of these is "best Python");
  c++        bench/score/pxs_bench_score: preprocessing in C++ overlapped with batched
             inference (batch 8), plus images/s and p50/p99 latency at batch 1, 8, 32 for the
             tiny test model and the DenseNet121 package.
All with the same thread count (default: all cores) and the same BLAS. Prints the ratios;
the last line is one JSON object. The DenseNet121 package (random weights, 320x320) is
written on first use by tools/make_test_model.py into --cache (not committed).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
import torchvision

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(REPO, "tools"))
import reference_pxs  # noqa: E402  (the published preprocessing steps)


def synthetic_image(width, height, seed):
    """The same 12-bit pattern as SyntheticImage() in bench_score.cc."""
    x = np.arange(width, dtype=np.int64)[None, :]
    y = np.arange(height, dtype=np.int64)[:, None]
    return ((x * 3 + y * 2 + ((x * y + seed * 7919) % 97) * 5 + seed * 13) % 4096).astype(np.uint16)


def published_preprocess(raw, pre):
    """PXS_preprocessing.py's steps on stored values (12 bits in 16, MONOCHROME2), then the
    published transforms: the same code as tools/reference_pxs.py."""
    raw = np.bitwise_and(raw, (2 ** 12 - 1)).astype(np.float64)
    raw = raw - raw.min()
    image = (raw / raw.max() * 255).astype(np.uint8)
    if pre["autocrop"]:
        image = reference_pxs.autocrop(image, pre["autocrop_threshold"])
    if pre["equalize_histogram"]:
        import cv2
        image = cv2.equalizeHist(image)
    return reference_pxs.to_tensor(image, pre)


def timed(fn, repeat):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def run_cpp(binary, model, args, batches, iters, studies):
    cmd = [binary, "--model", model, "--device", args.device, "--precision", args.precision,
           "--threads", str(args.threads), "--batches", batches, "--iters", str(iters), "--studies", str(studies)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    sys.stdout.write(proc.stdout)
    if proc.returncode != 0:
        sys.exit(f"pxs_bench_score failed: {proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cpp-bench", required=True, help="path of pxs_bench_score")
    ap.add_argument("--cache", default=os.path.join(REPO, "build-scoring", "bench-cache"))
    ap.add_argument("--threads", type=int, default=0, help="intra-op threads for every variant (0: all cores)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--anchors", type=int, default=10)
    ap.add_argument("--quick", action="store_true", help="fewest iterations (shared machines)")
    ap.add_argument("--rounds", type=int, default=2, help="alternating C++/Python rounds; best round kept")
    args = ap.parse_args()

    threads = args.threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    device = torch.device(args.device)
    half = args.precision == "fp16"
    if half and device.type != "cuda":
        sys.exit("--precision fp16 needs --device cuda")
    dense_pkg = os.path.join(args.cache, f"densenet121_random_n{args.anchors}.pt")
    if not os.path.exists(dense_pkg):
        subprocess.run([sys.executable, os.path.join(REPO, "tools", "make_test_model.py"),
                        "--densenet121", dense_pkg, "--anchors", str(args.anchors)], check=True)
    tiny_pkg = os.path.join(REPO, "tests", "fixtures", "pxs_test_model.pt")
    iters = 2 if args.quick else 5
    load_avg = os.getloadavg()[0]
    print(f"threads {threads}, device {args.device}, precision {args.precision}, "
          f"load average at start {load_avg:.1f} on {os.cpu_count()} cores")

    # The machine may be shared: measure in rounds that alternate C++ and Python, and keep
    # each variant's best round (the least disturbed), so both see the same conditions.
    extra = {"metadata.json": ""}
    scripted = torch.jit.load(dense_pkg, map_location="cpu", _extra_files=extra).eval()
    meta = json.loads(extra["metadata.json"])
    pre = meta["preprocessing"]
    anchors = scripted.anchors.float().to(device)
    torch.manual_seed(0)
    eager = torchvision.models.densenet121(weights=None).eval().to(device)
    frozen = torch.jit.optimize_for_inference(torch.jit.freeze(scripted)) if device.type == "cpu" else \
        torch.jit.freeze(scripted.to(device))
    if half:
        eager = eager.half()
    images = [synthetic_image(2048, 2500, s) for s in range(8)]

    def as_input(x):
        x = x.to(device)
        return x.half() if half else x

    anchor_inputs = [as_input(published_preprocess(synthetic_image(2048, 2500, 100 + j), pre))
                     for j in range(args.anchors)]

    def published_study(raw):
        x = as_input(published_preprocess(raw, pre))
        d = []
        for a in anchor_inputs:
            o1, o2 = eager(a), eager(x)
            d.append(F.pairwise_distance(o1.float(), o2.float()).item())
        return statistics.median(d)

    def cached(model, batch):
        def run():
            x = torch.cat([as_input(published_preprocess(images[i % 8], pre)) for i in range(batch)])
            out = model(x).float()
            for row in out:
                statistics.median(F.pairwise_distance(anchors, row.unsqueeze(0)).tolist())
        return run

    results, cpp_rounds, py_pre = {}, [], []
    cpp_tiny = run_cpp(args.cpp_bench, tiny_pkg, args, "1,8,32", 20, 16)
    with torch.inference_mode():
        for name, model in (("eager", eager), ("frozen", frozen)):  # warm-up / JIT profiling
            for batch in (1, 8):
                cached(model, batch)()
                cached(model, batch)()
        published_study(images[0])
        for r in range(args.rounds):
            print(f"--- round {r + 1} of {args.rounds} (load average {os.getloadavg()[0]:.1f})")
            cpp_rounds.append(run_cpp(args.cpp_bench, dense_pkg, args, "1,8,32" if r == 0 else "1,8",
                                      iters, 16))
            py_pre.append(statistics.median(timed(lambda: published_preprocess(images[0], pre), 3)) * 1e3)
            t = timed(lambda: published_study(images[1]), 1)
            results["published"] = max(results.get("published", 0), 1.0 / t[0])
            print(f"published (2N={2 * args.anchors} passes/study): {1.0 / t[0]:.4f} studies/s")
            for name, model in (("py-cached eager", eager), ("py-cached frozen", frozen)):
                for batch in (1, 8):
                    t = timed(cached(model, batch), 2 if batch == 1 else 1)
                    sps = batch / min(t)
                    key = f"{name} b{batch}"
                    results[key] = max(results.get(key, 0), sps)
                    print(f"{name} batch {batch}: {sps:.3f} studies/s")
    py_pre_ms = min(py_pre)
    print(f"python preprocessing 2048x2500: best-round p50 {py_pre_ms:.1f} ms per image")
    cpp_dense = cpp_rounds[0]
    cpp_dense["pipeline"] = max((c["pipeline"] for c in cpp_rounds), key=lambda p: p["studies_per_s"])
    cpp_dense["preprocess_ms"] = min(c["preprocess_ms"] for c in cpp_rounds)
    for entry in cpp_dense["batches"]:
        entry["images_per_s"] = max(b["images_per_s"] for c in cpp_rounds for b in c["batches"]
                                    if b["batch"] == entry["batch"])

    best_py_name = max((k for k in results if k.startswith("py-cached")), key=lambda k: results[k])
    cpp_sps = cpp_dense["pipeline"]["studies_per_s"]
    ratio_published = cpp_sps / results["published"]
    ratio_best = cpp_sps / results[best_py_name]
    print(f"c++ pipeline ({cpp_dense['pipeline'].get('mode', 'overlapped')}, batch {cpp_dense['pipeline']['batch']}) "
          f"{cpp_sps:.3f} studies/s = {ratio_published:.1f}x the published reference "
          f"(goal >= 20x), {ratio_best:.2f}x the best Python with cached anchors ({best_py_name}; goal >= 1.25x)")
    summary = {
        "bench": "score", "threads": threads, "device": args.device, "precision": args.precision,
        "anchors": args.anchors, "load_average_start": round(load_avg, 2), "load_average_end": round(os.getloadavg()[0], 2),
        "python_preprocess_ms": round(py_pre_ms, 2), "cpp_preprocess_ms": cpp_dense["preprocess_ms"],
        "studies_per_s": {k: round(v, 4) for k, v in results.items()},
        "cpp_studies_per_s": round(cpp_sps, 4), "cpp_pipeline": cpp_dense["pipeline"],
        "cpp_densenet_batches": cpp_dense["batches"], "cpp_tiny_batches": cpp_tiny["batches"],
        "ratio_vs_published": round(ratio_published, 2), "ratio_vs_best_python_cached": round(ratio_best, 3),
        "best_python_cached": best_py_name,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
