#!/usr/bin/python3
"""bench/hl7: durable HL7 v2 ingest of pxsnode (issue 15), beside C-STORE ingest.

Each repetition starts a fresh pxsnode with [hl7] enabled and measures, with the real
clients (python3-hl7's mllp_send, DCMTK's storescu):
  hl7-alone     SENDERS mllp_send processes, each one connection sending its messages
                one after the other (every message waits for its ACK, which the node
                sends after the group commit made it durable);
  cstore-alone  SENDERS storescu processes (one association each) sending CR images,
                which the node stores (fsync + commit) and scores;
  cstore-beside-peer  C-STORE while the same mllp_send clients send to the peer below
                (the clients' own CPU, no HL7 work in the node);
  both          the two at once (fresh message ids and image UIDs), each rate over its
                own duration: neither may starve the other.
Peer in the same run: the same mllp_send processes against a minimal MLLP server that
ACKs without storing anything (the clients' own ceiling on this machine), so
pxsnode/peer says what durability costs. The node's database is checked afterwards:
every message ACKed AA is stored exactly once.
Last line: one JSON object.

    bench/hl7/run.py [--messages 4000] [--images 48] [--senders 4] [--reps 3] [--work DIR]
"""
import argparse
import glob
import json
import os
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from benchlib import free_port, stop_process, wait_port  # noqa: E402
ROOT = os.path.realpath(os.path.join(HERE, "..", ".."))
PXSNODE = os.path.join(ROOT, "build", "bin", "pxsnode")
MODEL = os.path.join(ROOT, "tests", "fixtures", "pxs_test_model.pt")
IMAGE = os.path.join(ROOT, "..", "shared", "data", "dicom", "cr_mono2_explicit_be_1024.dcm")


def oru(control_id, patient, minute):
    """An ORU^R01 v2.5.1 with SpO2, O2 flow and CRP (segments end in CR)."""
    t = "202601%02d%02d%02d00" % (1 + minute // 1440 % 28, minute // 60 % 24, minute % 60)
    return ("MSH|^~\\&|MONITOR|ICU|PXSNODE|PXS|%s||ORU^R01^ORU_R01|%s|P|2.5.1\r"
            "PID|1||%s^^^HOSP^MR||DOE^JANE\r"
            "OBR|1|||VITALS^Vital signs|||%s\r"
            "OBX|1|NM|59408-5^SpO2^LN||%d|%%|||||F|||%s\r"
            "OBX|2|NM|3151-8^O2 flow^LN||%d|L/min|||||F|||%s\r"
            "OBX|3|NM|1988-5^CRP^LN||%d.5|mg/L|||||F|||%s\r"
            % (t, control_id, patient, t, 88 + minute % 10, t, minute % 6, t, 10 + minute % 90, t))


def write_hl7_files(work, tag, messages, senders):
    files = []
    each = messages // senders
    for s in range(senders):
        path = os.path.join(work, "hl7-%s-%d.txt" % (tag, s))
        with open(path, "wb") as f:
            for i in range(each):
                m = oru("%s-%d-%d" % (tag, s, i), "BENCH-%d" % (i % 200), s * each + i)
                f.write(b"\x0b" + m.encode() + b"\x1c\r")
        files.append(path)
    return files, each * senders


def run_senders(port, files):
    """Runs one mllp_send per file at once; returns (seconds, AA count, other ACK count)."""
    start = time.monotonic()
    procs = [subprocess.Popen(["mllp_send", "--port", str(port), "--file", f, "127.0.0.1"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for f in files]
    outs = [p.communicate()[0] for p in procs]
    seconds = time.monotonic() - start
    if any(p.returncode != 0 for p in procs):
        raise RuntimeError("mllp_send failed: " + b"".join(outs)[-500:].decode(errors="replace"))
    aa = sum(o.count(b"MSA|AA|") for o in outs)
    other = sum(o.count(b"MSA|AE|") + o.count(b"MSA|AR|") for o in outs)
    return seconds, aa, other


def prepare_images(work, count, senders):
    d = os.path.join(work, "images")
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    for i in range(count):
        shutil.copy(IMAGE, os.path.join(d, "img%03d.dcm" % i))
        os.chmod(os.path.join(d, "img%03d.dcm" % i), 0o644)
    files = sorted(glob.glob(os.path.join(d, "*.dcm")))
    return [files[s::senders] for s in range(senders)]


def fresh_uids(groups):
    """New Study/Series/SOP Instance UIDs in every file: the node sees new instances."""
    files = [f for g in groups for f in g]
    subprocess.run(["dcmodify", "-nb", "-q", "-gst", "-gse", "-gin"] + files, check=True)


def run_storescu(port, groups):
    start = time.monotonic()
    procs = [subprocess.Popen(["storescu", "-aec", "PXSNODE", "127.0.0.1", str(port)] + g,
                              stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT) for g in groups]
    for p in procs:
        p.wait()
    seconds = time.monotonic() - start
    if any(p.returncode != 0 for p in procs):
        raise RuntimeError("storescu failed")
    return seconds, sum(len(g) for g in groups)


class AckServer:
    """The peer: MLLP with an AA for every frame, nothing stored (a thread per connection)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=self.serve, args=(conn,), daemon=True).start()

    @staticmethod
    def serve(conn):
        buf = b""
        while True:
            data = conn.recv(65536)
            if not data:
                conn.close()
                return
            buf += data
            while b"\x1c\r" in buf:
                frame, buf = buf.split(b"\x1c\r", 1)
                msh = frame.lstrip(b"\x0b").split(b"\r", 1)[0].split(b"|")
                cid = msh[9] if len(msh) > 9 else b""
                conn.sendall(b"\x0bMSH|^~\\&|PEER|PEER|||20260101||ACK^R01^ACK|A|P|2.5.1\rMSA|AA|" + cid + b"\r\x1c\r")


class Node:
    def __init__(self, work, rep):
        self.dir = os.path.join(work, "node-%d" % rep)
        shutil.rmtree(self.dir, ignore_errors=True)
        os.makedirs(self.dir)
        os.chmod(self.dir, 0o755)
        self.port, self.hl7_port = free_port(), free_port()
        cfg = os.path.join(self.dir, "pxsnode.toml")
        with open(cfg, "w") as f:
            f.write('[node]\nport = %d\ndata_dir = "data"\nlog_level = "warn"\n'
                    '[scp]\nmax_associations = 8\nmin_free_gb = 0.0\nmin_free_percent = 0.0\n'
                    '[scoring]\nmodel = "%s"\ndevice = "cpu"\n'
                    '[hl7]\nenabled = true\nport = %d\n' % (self.port, MODEL, self.hl7_port))
        self.log = open(os.path.join(self.dir, "log.txt"), "w")
        self.proc = subprocess.Popen([PXSNODE, "--config", cfg], stdout=self.log, stderr=subprocess.STDOUT, cwd=self.dir)
        if not wait_port(self.port, 120) or not wait_port(self.hl7_port, 10):
            self.stop()
            raise RuntimeError("pxsnode did not start; see %s/log.txt" % self.dir)

    def stored_messages(self):
        db = sqlite3.connect("file:%s?mode=ro" % os.path.join(self.dir, "data", "pxsnode.db"), uri=True)
        n = db.execute("SELECT COUNT(*), COUNT(DISTINCT sender || '|' || message_id) FROM observation_messages").fetchone()
        obs = db.execute("SELECT COUNT(*) FROM observations").fetchone()[0]
        db.close()
        return n[0], n[1], obs

    def stop(self):
        stop_process(self.proc)
        self.log.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=4000, help="HL7 messages per phase (split over the senders)")
    ap.add_argument("--images", type=int, default=48, help="images per C-STORE phase")
    ap.add_argument("--senders", type=int, default=4)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--work", default="/tmp/pxs-bench-hl7")
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    groups = prepare_images(a.work, a.images, a.senders)
    peer = AckServer()
    rows = {k: [] for k in ("peer", "hl7_alone", "cstore_alone", "cstore_beside_peer", "hl7_beside", "cstore_beside")}
    checks = []
    for rep in range(a.reps):
        files, n = write_hl7_files(a.work, "peer%d" % rep, a.messages, a.senders)
        s, aa, _ = run_senders(peer.port, files)
        rows["peer"].append(aa / s)
        node = Node(a.work, rep)
        try:
            files, n = write_hl7_files(a.work, "alone%d" % rep, a.messages, a.senders)
            s, aa, other = run_senders(node.hl7_port, files)
            assert aa == n and other == 0, (aa, other, n)
            rows["hl7_alone"].append(aa / s)
            fresh_uids(groups)
            s, k = run_storescu(node.port, groups)
            rows["cstore_alone"].append(k / s)
            # C-STORE beside the same clients sending to the ACK-only peer: what the
            # clients' own CPU takes from C-STORE on this machine (no HL7 work in the node).
            files_p, _ = write_hl7_files(a.work, "peerside%d" % rep, a.messages, a.senders)
            fresh_uids(groups)
            result = {}
            t = threading.Thread(target=lambda: result.update(c=run_storescu(node.port, groups)))
            t.start()
            run_senders(peer.port, files_p)
            t.join()
            rows["cstore_beside_peer"].append(result["c"][1] / result["c"][0])
            # Both at once: each rate over its own duration.
            files, n2 = write_hl7_files(a.work, "beside%d" % rep, a.messages, a.senders)
            fresh_uids(groups)
            result = {}
            t = threading.Thread(target=lambda: result.update(c=run_storescu(node.port, groups)))
            t.start()
            s, aa, other = run_senders(node.hl7_port, files)
            t.join()
            assert aa == n2 and other == 0, (aa, other, n2)
            rows["hl7_beside"].append(aa / s)
            rows["cstore_beside"].append(result["c"][1] / result["c"][0])
            # Everything ACKed AA is stored, once (a resend of the first file: all duplicates).
            s_dup, aa_dup, _ = run_senders(node.hl7_port, files[:1])
            total, distinct, observations = node.stored_messages()
            checks.append({"stored": total, "distinct": distinct, "expected": n + n2, "observations": observations,
                           "resend_acked": aa_dup})
            assert total == distinct == n + n2 and observations == 3 * (n + n2), checks[-1]
        finally:
            node.stop()
        print("rep %d: %s" % (rep, {k: round(v[-1], 1) for k, v in rows.items()}), flush=True)
    med = {k: statistics.median(v) for k, v in rows.items()}
    out = {
        "benchmark": "hl7",
        "senders": a.senders,
        "messages_per_phase": a.messages,
        "images_per_phase": a.images,
        "reps": a.reps,
        "hl7_msgs_per_s_alone": round(med["hl7_alone"], 1),
        "hl7_msgs_per_s_beside_cstore": round(med["hl7_beside"], 1),
        "peer_ack_only_msgs_per_s": round(med["peer"], 1),
        "cstore_images_per_s_alone": round(med["cstore_alone"], 2),
        "cstore_images_per_s_beside_hl7": round(med["cstore_beside"], 2),
        "ratio_hl7_beside_over_alone": round(med["hl7_beside"] / med["hl7_alone"], 3),
        "cstore_images_per_s_beside_peer_clients": round(med["cstore_beside_peer"], 2),
        "ratio_cstore_beside_over_alone": round(med["cstore_beside"] / med["cstore_alone"], 3),
        "ratio_cstore_beside_peer_clients_over_alone": round(med["cstore_beside_peer"] / med["cstore_alone"], 3),
        "ratio_hl7_alone_over_peer": round(med["hl7_alone"] / med["peer"], 3),
        "all_reps": {k: [round(x, 1) for x in v] for k, v in rows.items()},
        "checks": checks,
        "loadavg_end": os.getloadavg(),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
