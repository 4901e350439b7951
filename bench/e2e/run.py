#!/usr/bin/python3
"""bench/e2e: end-to-end report latency. 4 senders stream the 30 synthetic longitudinal
courses (../shared/data/longitudinal, each patient's studies in order, one storescu per
study) to pxsnode with the demo model on CPU; a DCMTK storescp is the PACS. Latency is
from the C-STORE response of the scored image (storescu returning) to the SR arriving at
the PACS (its file's modification time). Per-stage split from the database (pxsctl study
--json): queue wait, decode+preprocess, inference (the worker's own measurements), SR
build (scored -> report queued), send (queued -> confirmed). Last line: one JSON object.

    bench/e2e/run.py [--patients 30] [--senders 4] [--work DIR]
"""
import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import threading
import time

import pydicom

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from benchlib import free_port, wait_port  # noqa: E402
ROOT = os.path.realpath(os.path.join(HERE, "..", ".."))
BIN = os.path.join(ROOT, "build", "bin")


def iso_ms(text):
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc).timestamp() * 1000.0


def pct(values, q):
    values = sorted(values)
    if not values:
        return float("nan")
    k = min(len(values) - 1, max(0, int(round(q / 100.0 * (len(values) - 1)))))
    return values[k]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--patients", type=int, default=30)
    ap.add_argument("--senders", type=int, default=4)
    ap.add_argument("--work", default=os.path.join(ROOT, "build", "bench-e2e"))
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "pxs-demo-cxr14.pt"))
    ap.add_argument("--yield-ms", type=int, default=None,
                    help="[scoring] yield_to_ingest_ms for the node (default: the node's default)")
    args = ap.parse_args()
    shared = os.path.realpath(os.path.join(ROOT, "..", "shared", "data", "longitudinal"))
    if not os.path.exists(os.path.join(shared, "make_dicom.py")):
        sys.exit("bench/e2e: SKIPPED: ../shared/data/longitudinal not found")
    shutil.rmtree(args.work, ignore_errors=True)
    courses, pacs_dir, data = (os.path.join(args.work, d) for d in ("courses", "pacs", "node"))
    for d in (courses, pacs_dir, data):
        os.makedirs(d)
    subprocess.run(["/usr/bin/python3", os.path.join(shared, "make_dicom.py"), courses, "--max-patients",
                    str(args.patients)], check=True, stdout=subprocess.DEVNULL)
    files = sorted(f for f in os.listdir(courses) if f.endswith(".dcm"))
    by_patient = {}
    for f in files:  # PXSLONG-001_tp1_20230818.dcm
        by_patient.setdefault(f.split("_tp")[0], []).append(os.path.join(courses, f))
    study_of = {p: pydicom.dcmread(p, stop_before_pixels=True).StudyInstanceUID
                for fs in by_patient.values() for p in fs}

    env = dict(os.environ, TCP_NODELAY="1")
    pacs_port, node_port = free_port(), free_port()
    pacs = subprocess.Popen(["storescp", "-aet", "PACS", "-od", pacs_dir, str(pacs_port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    cfg = os.path.join(args.work, "pxsnode.toml")
    with open(cfg, "w") as f:
        f.write('[node]\nport = %d\ndata_dir = "node"\nlog_level = "warn"\n[scp]\nmin_free_gb = 0.0\n'
                'min_free_percent = 0.0\n[scoring]\nmodel = "%s"\n%s[[destinations]]\nname = "pacs"\n'
                'ae_title = "PACS"\nhost = "127.0.0.1"\nport = %d\n[reports]\nsend_to = ["pacs"]\n'
                % (node_port, args.model,
                   "" if args.yield_ms is None else "yield_to_ingest_ms = %d\n" % args.yield_ms, pacs_port))
    node = subprocess.Popen([os.path.join(BIN, "pxsnode"), "--config", cfg], env=env,
                            stdout=open(os.path.join(args.work, "pxsnode.log"), "w"), stderr=subprocess.STDOUT)
    try:
        if not (wait_port(pacs_port) and wait_port(node_port)):
            sys.exit("bench/e2e: receivers did not start")
        responded = {}  # study uid -> epoch ms of the C-STORE response
        patients = sorted(by_patient)

        def sender(k):
            for p in patients[k::args.senders]:
                for path in by_patient[p]:
                    r = subprocess.run(["storescu", "-aec", "PXSNODE", "127.0.0.1", str(node_port), path], env=env,
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                    if r.returncode == 0:
                        responded[study_of[path]] = time.time() * 1000.0

        t0 = time.time()
        threads = [threading.Thread(target=sender, args=(k,)) for k in range(args.senders)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        send_secs = time.time() - t0
        deadline = time.time() + 300
        while len(os.listdir(pacs_dir)) < len(responded) and time.time() < deadline:
            time.sleep(0.2)
    finally:
        node.terminate()
        node.wait(60)
        pacs.terminate()
        pacs.wait(10)

    latency, stages = [], {"queue": [], "decode": [], "inference": [], "sr_build": [], "send": []}
    for name in os.listdir(pacs_dir):
        path = os.path.join(pacs_dir, name)
        study = pydicom.dcmread(path, stop_before_pixels=True).StudyInstanceUID
        if study in responded:
            latency.append(os.stat(path).st_mtime * 1000.0 - responded[study])
    for study in responded:
        out = subprocess.run([os.path.join(BIN, "pxsctl"), "--config", cfg, "study", study, "--json"],
                             capture_output=True, text=True)
        if out.returncode != 0:
            continue
        d = json.loads(out.stdout)[0]
        inst = [i for i in d["instances"] if i.get("scored_at")]
        reps = [r for r in d["reports"] if r.get("sent_at")]
        if not inst or not reps:
            continue
        i, r = inst[0], reps[0]
        stages["queue"].append(i["queue_ms"])
        stages["decode"].append(i["decode_ms"])
        stages["inference"].append(i["inference_ms"])
        if r["attempts"] == 1:  # next_attempt_at is then the time the report was queued
            stages["sr_build"].append(iso_ms(r["next_attempt_at"]) - iso_ms(i["scored_at"]))
            stages["send"].append(iso_ms(r["sent_at"]) - iso_ms(r["next_attempt_at"]))

    result = {"studies_sent": len(responded), "srs_received": len(latency), "senders": args.senders,
              "send_wall_s": round(send_secs, 1),
              "latency_ms": {"p50": round(pct(latency, 50), 1), "p99": round(pct(latency, 99), 1),
                             "max": round(max(latency) if latency else float("nan"), 1)},
              "stages_ms": {k: {"p50": round(pct(v, 50), 1), "p99": round(pct(v, 99), 1)} for k, v in stages.items()}}
    print("studies sent: %d, SRs received: %d, %d senders, %.1f s of sending" %
          (len(responded), len(latency), args.senders, send_secs))
    print("C-STORE response -> SR at PACS: p50 %.0f ms, p99 %.0f ms" % (pct(latency, 50), pct(latency, 99)))
    for k, v in stages.items():
        print("  %-10s p50 %7.1f ms  p99 %7.1f ms" % (k, pct(v, 50), pct(v, 99)))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
