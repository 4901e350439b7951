#!/usr/bin/python3
"""Checks systemd/pxsnode.service against what the node does at run time, without needing
systemd as PID 1: the system calls the node makes on purpose must pass the unit's
SystemCallFilter (systemd kills a process that makes a filtered call unless
SystemCallErrorNumber says otherwise), and the unit must be Type=notify with a watchdog.
Uses `systemd-analyze syscall-filter` to expand the @groups; skips when it is absent.

    systemd_unit_test.py UNIT_FILE
"""
import shutil
import subprocess
import sys

# System calls pxsnode makes deliberately, and why.
NEEDED = {
    "setpriority": "scoring threads lower their priority (nice +10)",
    "fdatasync": "durable ingest",
    "sync_file_range": "early write-back of received files",
    "fsync": "folder sync in the group commit",
    "link": "placing a received file without replacing a stored one",
    "pread64": "hashing a file while it arrives",
}


def expand(name, seen=None):
    """The system calls of a name: a @group (recursively) or a single call."""
    seen = set() if seen is None else seen
    if not name.startswith("@"):
        return {name}
    if name in seen:
        return set()
    seen.add(name)
    out = subprocess.run(["systemd-analyze", "syscall-filter", name], capture_output=True, text=True, check=True)
    calls = set()
    for line in out.stdout.splitlines()[1:]:
        item = line.strip()
        if not item or item.startswith("#"):
            continue
        calls |= expand(item, seen)
    return calls


def allowed_calls(unit_lines):
    """systemd semantics: the first SystemCallFilter= decides allow- or deny-list mode;
    later lines add (no ~) or remove (~) names."""
    allowed, deny_mode = None, False
    for line in unit_lines:
        if not line.startswith("SystemCallFilter="):
            continue
        value = line.split("=", 1)[1].strip()
        negate = value.startswith("~")
        names = value.lstrip("~").split()
        calls = set().union(*(expand(n) for n in names)) if names else set()
        if allowed is None:
            deny_mode = negate
            allowed = set() if negate else set(calls)
            denied = set(calls) if negate else set()
            continue
        if deny_mode:
            denied = (denied | calls) if negate else (denied - calls)
        else:
            allowed = (allowed - calls) if negate else (allowed | calls)
    if allowed is None:
        return None, set()
    return (None, denied) if deny_mode else (allowed, set())


def main():
    unit = sys.argv[1]
    if shutil.which("systemd-analyze") is None:
        print("SKIPPED: systemd-analyze is not installed (package systemd)")
        return 0
    lines = [l.strip() for l in open(unit, encoding="utf-8")]
    failures = []
    allowed, denied = allowed_calls(lines)
    for call, why in NEEDED.items():
        ok = (allowed is None and call not in denied) or (allowed is not None and call in allowed)
        if not ok:
            failures.append(f"{call} ({why}) is filtered out by SystemCallFilter")
    if not any(l.startswith("SystemCallErrorNumber=") for l in lines):
        failures.append("no SystemCallErrorNumber=: a filtered call would kill the node with SIGSYS")
    for required in ("Type=notify", "WatchdogSec=", "NoNewPrivileges=yes", "ProtectSystem=strict"):
        if not any(l.startswith(required) for l in lines):
            failures.append(f"missing {required}")
    for f in failures:
        print("FAILED:", f)
    if not failures:
        print(f"ok: {len(NEEDED)} needed system calls pass the filter of {unit}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
