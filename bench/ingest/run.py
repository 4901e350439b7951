#!/usr/bin/python3
"""bench/ingest: durable DICOM ingest throughput of pxsnode against peers, same machine,
same files, alternating runs.

Receivers: (a) pxsnode (fsync + SQLite commit before every Success), (b) DCMTK storescp
writing files (page cache only), (c) storescp with a per-file sync
(--exec-sync -xcr 'sync #p/#f'), (d) Orthanc from Debian (fsyncs every file), each as
shipped and with TCP_NODELAY=1 in the environment of both ends. Senders: DCMTK storescu at
concurrency 1 and 4 (4 processes, one association each). Also prints the disk's own
fdatasync write bandwidth (dd conv=fdatasync), the physical ceiling for durable ingest.
Last line: one JSON object.

    bench/ingest/run.py [--count 100] [--reps 3] [--work DIR] [--no-orthanc] [--tls]

--tls adds DICOM TLS receivers (certificates made here with openssl): pxsnode with [tls]
and storescp +tls with the per-file sync, senders storescu +tla (BCP 195), and prints the
ratios TLS/plain for pxsnode and pxsnode-TLS/storescp-TLS-sync. --scrape adds pxsnode with its
web face on and a scraper polling /metrics every second, paired with plain pxsnode in each
repetition (issue 14: the scraped ingest must stay within 5 % of the unscraped).
--pg-socket adds pxsnode-pg (the node on a PostgreSQL database of its own) and
pxsnode-pg-2nodes (issue 16): two pxsnode processes with their own [node] id and data_dir on
ONE PostgreSQL database, each fed by half of the senders with its own half of the files, at
the same time; the figure is the aggregate, all files / wall time of the slowest sender.
At concurrency c each node gets c/2 senders, so pxsnode-pg and pxsnode get the same c
senders in the same repetition. After each two-node run the database must hold every
instance exactly once, scored, and each node must have stored and scored only its own
(its /metrics counters and `pxsctl --node-id ID verify`); otherwise the run fails.
"""
import argparse
import hashlib
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from benchlib import free_port, stop_process, wait_port  # noqa: E402
ROOT = os.path.realpath(os.path.join(HERE, "..", ".."))
PG_BIN = os.environ.get("PXS_PG_BIN", "/usr/lib/postgresql/15/bin")


def disk_fdatasync_mb_s(work):
    target = os.path.join(work, "dd.bin")
    out = subprocess.run(["dd", "if=/dev/zero", "of=" + target, "bs=1M", "count=1024", "conv=fdatasync"],
                         capture_output=True, text=True).stderr
    os.remove(target)
    # "... copied, 2.1 s, 500 MB/s"
    last = out.strip().splitlines()[-1]
    value, unit = last.split(",")[-1].split()
    factor = {"kB/s": 1e-3, "MB/s": 1.0, "GB/s": 1e3}.get(unit, 1.0)
    return float(value) * factor


def make_certificates(work):
    """A self-signed CA and a server certificate for 127.0.0.1 (openssl command line)."""
    d = os.path.join(work, "tls")
    os.makedirs(d, exist_ok=True)
    run = lambda *a: subprocess.run(list(a), check=True, capture_output=True, cwd=d)  # noqa: E731
    run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
        "-days", "2", "-subj", "/CN=bench CA")
    run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
        "-subj", "/CN=127.0.0.1")
    with open(os.path.join(d, "ext.cnf"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1\n")
    run("openssl", "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "server.pem", "-days", "2", "-extfile", "ext.cnf")
    return d


def create_pg_database(tag):
    db = "pxs_bench_%d_%d" % (os.getpid(), tag)
    subprocess.run([os.path.join(PG_BIN, "createdb"), "-h", Receiver.PG_SOCKET, "-U", Receiver.PG_USER, db], check=True)
    return db


def pg_url(db):
    return "postgresql:///%s?host=%s&user=%s" % (db, Receiver.PG_SOCKET, Receiver.PG_USER)


def sop_instance_uids(files):
    """(0008,0018) of each file, in order (dcmdump, one process for all files)."""
    out = subprocess.run(["dcmdump", "-q", "-s", "+P", "0008,0018"] + files, capture_output=True, text=True,
                         check=True).stdout
    uids = [line.split("[", 1)[1].split("]", 1)[0] for line in out.splitlines() if "(0008,0018)" in line]
    if len(uids) != len(files):
        raise RuntimeError("dcmdump found %d SOP Instance UIDs in %d files" % (len(uids), len(files)))
    return uids


class Receiver:
    """Starts one receiver with an empty folder; stop() removes it."""

    TLS_DIR = None  # set by main() with --tls
    PG_SOCKET = None  # set by main() with --pg-socket: pxsnode-pg's PostgreSQL (a fresh database per start)
    PG_USER = "pxs"
    PXSNODE = os.path.join(ROOT, "build", "bin", "pxsnode")  # main(): --pxsnode

    def __init__(self, kind, work, nodelay, model, pg_db=None, node_id=None):
        """pg_db, node_id: a pxsnode-pg that joins database pg_db (made by the caller) as
        node node_id, with its web face on for the two-node checks (TwoNodes)."""
        self.kind, self.nodelay = kind, nodelay
        self.tls = kind.endswith("-tls") or "-tls-" in kind
        self.dir = os.path.join(work, "recv-" + kind + ("-" + node_id if node_id else ""))
        self.ports = None  # one receiver: all senders go to self.port
        shutil.rmtree(self.dir, ignore_errors=True)
        os.makedirs(self.dir)
        self.port = free_port()
        env = dict(os.environ)
        env.pop("TCP_NODELAY", None)
        if nodelay:
            env["TCP_NODELAY"] = "1"
        log = open(os.path.join(self.dir, "log.txt"), "w")
        t = Receiver.TLS_DIR
        self.http_port = None
        if kind in ("pxsnode", "pxsnode-tls", "pxsnode-scraped", "pxsnode-pg"):
            self.aet = "PXSNODE"
            cfg = os.path.join(self.dir, "pxsnode.toml")
            with open(cfg, "w") as f:
                if node_id:
                    f.write('[node]\nid = "%s"\n' % node_id)
                f.write(('' if node_id else '[node]\n') + 'port = %d\ndata_dir = "data"\nlog_level = "warn"\n'
                        '[scp]\nmax_associations = 8\nmin_free_gb = 0.0\nmin_free_percent = 0.0\n'
                        '[scoring]\nmodel = "%s"\n' % (self.port, model))
                if kind == "pxsnode-scraped" or node_id:  # the web face on, a Prometheus-like poller on /metrics
                    self.http_port = free_port()
                    f.write('[http]\nenabled = true\nbind = "127.0.0.1"\nport = %d\n'
                            '[[http.tokens]]\nname = "bench"\nrole = "viewer"\nsha256 = "%s"\n'
                            % (self.http_port, hashlib.sha256(SCRAPE_TOKEN.encode()).hexdigest()))
                if kind == "pxsnode-pg":  # issue 16: the same node on a PostgreSQL database of its own
                    db = pg_db or create_pg_database(self.port)
                    f.write('[database]\nurl = "%s"\n' % pg_url(db))
                if self.tls:
                    f.write('[tls]\ncertificate = "%s/server.pem"\nprivate_key = "%s/server.key"\n' % (t, t))
            cmd = [Receiver.PXSNODE, "--config", cfg]
        elif kind in ("storescp", "storescp-sync", "storescp-tls-sync"):
            self.aet = "STORESCP"
            out = os.path.join(self.dir, "out")
            os.makedirs(out)
            cmd = ["storescp", "--fork", "-aet", "STORESCP", "-od", out]
            if kind.endswith("sync"):
                cmd += ["--exec-sync", "-xcr", "sync #p/#f"]
            if self.tls:
                cmd += ["+tls", t + "/server.key", t + "/server.pem", "+px", "-ic"]
            cmd.append(str(self.port))
        elif kind == "orthanc":
            self.aet = "ORTHANC"
            cfg = os.path.join(self.dir, "orthanc.json")
            with open(cfg, "w") as f:
                json.dump({"Name": "bench", "StorageDirectory": os.path.join(self.dir, "db"),
                           "IndexDirectory": os.path.join(self.dir, "db"), "DicomAet": "ORTHANC",
                           "DicomPort": self.port, "HttpPort": free_port(), "RemoteAccessAllowed": False,
                           "Plugins": [], "DicomAlwaysAllowStore": True, "DicomCheckCalledAet": False}, f)
            cmd = ["Orthanc", cfg]
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.dir)
        if not wait_port(self.port, 120):
            self.stop()
            raise RuntimeError("%s did not start; see %s/log.txt" % (kind, self.dir))

    def cpu_s(self):
        """The receiver process's own CPU seconds so far (storescp --fork's children not
        included, so only pxsnode's figure is complete)."""
        try:
            with open("/proc/%d/stat" % self.proc.pid) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except OSError:
            return float("nan")

    def stop(self):
        stop_process(self.proc)
        subprocess.run(["pkill", "-f", self.dir], capture_output=True)  # storescp --fork children
        shutil.rmtree(self.dir, ignore_errors=True)


SCRAPE_TOKEN = "bench-scraper-token"


def metric_sum(port, name):
    """The sum of a counter over its labels, read from the node's /metrics. name may end
    in a label prefix ('pxs_instances_total{outcome="stored"') to sum only those series."""
    req = urllib.request.Request("http://127.0.0.1:%d/metrics" % port,
                                 headers={"Authorization": "Bearer " + SCRAPE_TOKEN})
    with urllib.request.urlopen(req, timeout=10) as r:
        text = r.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name) and ("{" in name or line[len(name)] in " {"))


class TwoNodes:
    """pxsnode-pg-2nodes (issue 16): nodes "bench-a" and "bench-b", each with its own
    data_dir and web face, on one fresh PostgreSQL database. send_files() gives node k the
    files files[k::2] over its own senders."""

    IDS = ("bench-a", "bench-b")

    def __init__(self, kind, work, nodelay, model):
        self.kind, self.nodelay, self.tls, self.aet = kind, nodelay, False, "PXSNODE"
        self.http_port = None  # no scraper during the run: the faces are read after it
        self.db = create_pg_database(free_port())
        self.nodes = []
        try:
            for node_id in TwoNodes.IDS:
                self.nodes.append(Receiver("pxsnode-pg", work, nodelay, model, pg_db=self.db, node_id=node_id))
        except Exception:
            self.stop()
            raise
        self.ports = [n.port for n in self.nodes]

    def cpu_s(self):
        return sum(n.cpu_s() for n in self.nodes)

    def stop(self):
        for n in self.nodes:
            n.stop()

    def check(self, files, uids, timeout_s=600):
        """Every instance in the database exactly once and scored; each node stored and
        scored only its own half. Returns the seconds waited for scoring to finish."""
        start = time.monotonic()
        for k, n in enumerate(self.nodes):
            mine = len(files[k::2])
            while True:  # scoring goes on after the last C-STORE is acknowledged
                done = metric_sum(n.http_port, "pxs_jobs_scored_total") + metric_sum(n.http_port, "pxs_jobs_failed_total")
                if done >= mine or time.monotonic() - start > timeout_s:
                    break
                time.sleep(0.5)
            stored = metric_sum(n.http_port, 'pxs_instances_total{outcome="stored"')
            scored = metric_sum(n.http_port, "pxs_jobs_scored_total")
            if stored != mine or scored != mine:
                raise RuntimeError("node %s: %d files sent to it, %d stored, %d scored (see %s/log.txt)"
                                   % (TwoNodes.IDS[k], mine, stored, scored, n.dir))
            # verify walks the node's own rows (received_by = its id): exactly its files, all present.
            v = subprocess.run([os.path.join(os.path.dirname(Receiver.PXSNODE), "pxsctl"), "--db", pg_url(self.db),
                                "--node-id", TwoNodes.IDS[k], "--data-dir", os.path.join(n.dir, "data"), "--json", "verify",
                                "--no-hash"], capture_output=True, text=True)
            report = json.loads(v.stdout) if v.stdout.strip() else {}
            if report.get("files_checked") != mine or not report.get("ok"):
                raise RuntimeError("pxsctl verify --node-id %s: %s %s (expected %d files, ok)"
                                   % (TwoNodes.IDS[k], v.stdout.strip()[:500], v.stderr.strip()[:500], mine))
        waited = time.monotonic() - start
        out = subprocess.run([os.path.join(os.path.dirname(Receiver.PXSNODE), "pxsctl"), "--db", pg_url(self.db),
                              "export", "--format", "json"], capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError("pxsctl export failed: %s" % out.stderr.strip()[:500])
        rows = json.loads(out.stdout)
        seen = {}
        for r in rows:
            seen[r["sop_instance_uid"]] = seen.get(r["sop_instance_uid"], 0) + 1
        wrong = [u for u in uids if seen.get(u) != 1] + [u for u in seen if u not in set(uids)]
        unscored = [r["sop_instance_uid"] for r in rows if r.get("state") != "scored"]
        if wrong or unscored or len(rows) != len(uids):
            raise RuntimeError("database %s: %d rows for %d files; not exactly once: %s; not scored: %s"
                               % (self.db, len(rows), len(uids), wrong[:3], unscored[:3]))
        return waited


class Scraper(threading.Thread):
    """Polls /metrics once a second (as a Prometheus scrape interval of 1 s would) while
    the senders run; counts the scrapes and fails loudly if one is refused."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.port, self.done, self.scrapes, self.errors = port, threading.Event(), 0, []

    def run(self):
        req = urllib.request.Request("http://127.0.0.1:%d/metrics" % self.port,
                                     headers={"Authorization": "Bearer " + SCRAPE_TOKEN})
        while not self.done.is_set():
            try:
                with urllib.request.urlopen(req, timeout=5) as r:
                    if b"pxs_" not in r.read():
                        self.errors.append("no pxs_ metrics in the answer")
                self.scrapes += 1
            except Exception as e:  # noqa: BLE001 -- reported after the run
                self.errors.append(str(e))
            self.done.wait(1.0)


def send(receiver, files, concurrency, nodelay):
    scraper = Scraper(receiver.http_port) if receiver.http_port else None
    if scraper:
        scraper.start()
    try:
        return send_files(receiver, files, concurrency, nodelay)
    finally:
        if scraper:
            scraper.done.set()
            scraper.join()
            if scraper.errors or scraper.scrapes == 0:
                raise RuntimeError("the /metrics scraper failed: %s" % (scraper.errors[:3] or "no scrape"))


def send_files(receiver, files, concurrency, nodelay):
    env = dict(os.environ)
    env.pop("TCP_NODELAY", None)
    if nodelay:
        env["TCP_NODELAY"] = "1"
    ports = receiver.ports or [receiver.port]
    if concurrency % len(ports):
        raise RuntimeError("%s: %d senders do not split over %d nodes" % (receiver.kind, concurrency, len(ports)))
    per_node = concurrency // len(ports)
    # Node k gets files[k::nodes] (disjoint), over its own per_node senders.
    groups = [(port, part[i::per_node]) for k, port in enumerate(ports)
              for part in [files[k::len(ports)]] for i in range(per_node)]
    receiver.cpu_before_s = receiver.cpu_s()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    tls = ["+tla", "+cf", Receiver.TLS_DIR + "/ca.pem", "+px"] if receiver.tls else []
    procs = [subprocess.Popen(["storescu", "-aec", receiver.aet] + tls + ["127.0.0.1", str(port)] + g,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env) for port, g in groups]
    failed = sum(p.wait() != 0 for p in procs)
    elapsed = time.monotonic() - start
    # The senders' CPU (user + system) for these files: on a small machine the senders share
    # the cores with the receiver, so what TLS costs them is taken from the receiver too.
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    receiver.sender_cpu_s = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    if failed:
        raise RuntimeError("%d storescu process(es) failed against %s" % (failed, receiver.kind))
    return elapsed


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=100)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--work", default=os.path.join(ROOT, "build", "bench-ingest"))
    ap.add_argument("--cache", default=os.environ.get("PXS_BENCH_CACHE", os.path.join(ROOT, "build", "bench-cache")))
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "pxs-demo-cxr14.pt"))
    ap.add_argument("--no-orthanc", action="store_true")
    ap.add_argument("--tls", action="store_true", help="also DICOM TLS receivers (pxsnode, storescp with sync)")
    ap.add_argument("--scrape", action="store_true",
                    help="also pxsnode with the web face on and /metrics polled every second (issue 14)")
    ap.add_argument("--pg-socket", help="also pxsnode on PostgreSQL: the socket folder of a running server "
                    "(durable settings: fsync and synchronous_commit on) where user pxs may create databases")
    ap.add_argument("--kinds", help="comma-separated receivers to run (default: all)")
    ap.add_argument("--concurrency", default="1,4", help="comma-separated sender counts (default: 1,4)")
    ap.add_argument("--nodelay-only", action="store_true", help="skip the runs without TCP_NODELAY in the env")
    ap.add_argument("--pxsnode", default=Receiver.PXSNODE,
                    help="the pxsnode binary (a copy keeps a rebuild from changing it mid-run)")
    args = ap.parse_args()
    Receiver.PXSNODE = args.pxsnode
    if not os.path.exists(args.pxsnode):
        sys.exit("bench/ingest: build first (%s missing)" % args.pxsnode)
    subprocess.run([sys.executable, os.path.join(HERE, "make_cache.py"), args.cache, "--count", str(args.count)],
                   check=True)
    files = sorted(os.path.join(args.cache, f) for f in os.listdir(args.cache) if f.endswith(".dcm"))[: args.count]
    mb = sum(os.path.getsize(f) for f in files) / 1e6
    os.makedirs(args.work, exist_ok=True)

    kinds = ["pxsnode", "storescp", "storescp-sync"]
    if not args.no_orthanc and shutil.which("Orthanc"):
        kinds.append("orthanc")
    if args.tls:
        Receiver.TLS_DIR = make_certificates(args.work)
        kinds += ["pxsnode-tls", "storescp-tls-sync"]
    if args.scrape:
        kinds.append("pxsnode-scraped")
    if args.pg_socket:
        Receiver.PG_SOCKET = args.pg_socket
        kinds += ["pxsnode-pg", "pxsnode-pg-2nodes"]
    if args.kinds:
        kinds = [k for k in kinds if k in args.kinds.split(",")]
    disk = disk_fdatasync_mb_s(args.work)
    print("disk fdatasync write bandwidth: %.0f MB/s" % disk)
    levels = [int(c) for c in args.concurrency.split(",")]
    modes = (True,) if args.nodelay_only else (True, False)
    results = {}  # (kind, nodelay, concurrency) -> [files/s]
    cpu = {}  # (kind, nodelay, concurrency) -> [(senders' CPU ms per file, receiver's CPU ms per file)]
    uids = sop_instance_uids(files) if "pxsnode-pg-2nodes" in kinds else []
    checks = []  # the two-node runs whose database check passed
    for rep in range(args.reps):
        for concurrency in levels:
            for nodelay in modes:
                for kind in kinds:  # alternate receivers within each repetition
                    r = (TwoNodes if kind == "pxsnode-pg-2nodes" else Receiver)(kind, args.work, nodelay, args.model)
                    try:
                        secs = send(r, files, concurrency, nodelay)
                        receiver_cpu = r.cpu_s() - r.cpu_before_s
                        if kind == "pxsnode-pg-2nodes":
                            waited = r.check(files, uids)
                            checks.append({"rep": rep + 1, "c": concurrency, "scoring_wait_s": round(waited, 1)})
                    finally:
                        r.stop()
                    rate = len(files) / secs
                    results.setdefault((kind, nodelay, concurrency), []).append(rate)
                    cpu.setdefault((kind, nodelay, concurrency), []).append(
                        (1000 * r.sender_cpu_s / len(files), 1000 * receiver_cpu / len(files)))
                    print("rep %d c=%d %-8s %-14s %6.1f files/s %7.0f MB/s  CPU ms/file: senders %5.1f, receiver %5.1f" %
                          (rep + 1, concurrency, "nodelay" if nodelay else "shipped", kind, rate, rate * mb / len(files),
                           cpu[(kind, nodelay, concurrency)][-1][0], cpu[(kind, nodelay, concurrency)][-1][1]), flush=True)

    def med(kind, nodelay, c):
        return statistics.median(results[(kind, nodelay, c)])

    print("\nmedian of %d runs, %d files of %.1f MB" % (args.reps, len(files), mb / len(files)))
    summary = {"files": len(files), "mb_per_file": round(mb / len(files), 2), "reps": args.reps,
               "disk_fdatasync_mb_s": round(disk), "receivers": {}, "ratios": {}}
    for nodelay in modes:
        for kind in kinds:
            row = {}
            for c in levels:
                fps = med(kind, nodelay, c)
                row["c%d_files_s" % c] = round(fps, 1)
                row["c%d_mb_s" % c] = round(fps * mb / len(files), 1)
                row["c%d_range" % c] = [round(min(results[(kind, nodelay, c)]), 1),
                                        round(max(results[(kind, nodelay, c)]), 1)]
                if nodelay:
                    row["c%d_cpu_ms_per_file" % c] = {
                        "senders": round(statistics.median(x[0] for x in cpu[(kind, nodelay, c)]), 1),
                        "receiver": round(statistics.median(x[1] for x in cpu[(kind, nodelay, c)]), 1)}
            summary["receivers"]["%s%s" % (kind, "" if nodelay else " (shipped)")] = row
            print("%-26s " % (kind + ("" if nodelay else " as shipped")) + "  ".join(
                "c=%d %6.1f files/s (%5.0f MB/s)" % (c, row["c%d_files_s" % c], row["c%d_mb_s" % c]) for c in levels))
    for c in levels:
        if "pxsnode" not in kinds:
            break
        node = med("pxsnode", True, c)
        if "pxsnode-pg" in kinds:  # issue 16: PostgreSQL against SQLite, paired per repetition
            paired = [g / p for g, p in zip(results[("pxsnode-pg", True, c)], results[("pxsnode", True, c)])]
            summary["ratios"]["c%d_postgres_vs_sqlite_paired" % c] = [round(statistics.median(paired), 2),
                                                                     round(min(paired), 2), round(max(paired), 2)]
        if "pxsnode-pg-2nodes" in kinds:  # the aggregate of two nodes against one, same senders
            for peer in ("pxsnode-pg", "pxsnode"):
                if peer not in kinds:
                    continue
                paired = [t / p for t, p in zip(results[("pxsnode-pg-2nodes", True, c)], results[(peer, True, c)])]
                summary["ratios"]["c%d_2nodes_vs_%s_paired" % (c, peer.replace("-", "_"))] = [
                    round(statistics.median(paired), 2), round(min(paired), 2), round(max(paired), 2)]
        if "pxsnode-tls" in kinds:
            summary["ratios"]["c%d_tls_vs_plain" % c] = round(med("pxsnode-tls", True, c) / node, 2)
            # Paired within each repetition (same minute of a noisy host): median and range.
            paired = [t / p for t, p in zip(results[("pxsnode-tls", True, c)], results[("pxsnode", True, c)])]
            summary["ratios"]["c%d_tls_vs_plain_paired" % c] = [round(statistics.median(paired), 2),
                                                                round(min(paired), 2), round(max(paired), 2)]
        if "pxsnode-scraped" in kinds:
            paired = [s / p for s, p in zip(results[("pxsnode-scraped", True, c)], results[("pxsnode", True, c)])]
            summary["ratios"]["c%d_scraped_vs_plain_paired" % c] = [round(statistics.median(paired), 3),
                                                                    round(min(paired), 3), round(max(paired), 3)]
        if "pxsnode-tls" in kinds and "storescp-tls-sync" in kinds:
            summary["ratios"]["c%d_tls_vs_storescp_tls_sync" % c] = round(
                med("pxsnode-tls", True, c) / med("storescp-tls-sync", True, c), 2)
        for peer, key in (("storescp-sync", "vs_storescp_sync"), ("storescp", "vs_storescp"), ("orthanc", "vs_orthanc")):
            if peer in kinds:  # --kinds may leave any peer out
                summary["ratios"]["c%d_%s" % (c, key)] = round(node / med(peer, True, c), 2)
        summary["ratios"]["c%d_of_disk_fdatasync" % c] = round(node * mb / len(files) / disk, 2)
    if checks:
        summary["two_node_checks_passed"] = checks
    for k, v in summary["ratios"].items():
        print("pxsnode %s: %s" % (k, v))
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
