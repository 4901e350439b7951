#!/usr/bin/env bash
# The README's demo as a new user runs it: scripts/demo.sh must exit 0, every study it
# sends must come back as an SR at its PACS, the SR text must carry the PXS score, and
# (with ralo) pxsctl history must show a real patient's compared course.
# Runs on its own ports and folder, so a user's var/demo is left alone.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=${1:?usage: demo_test.sh WORK_DIR}
rm -rf "$work"
export PXS_DEMO_DIR=$work PXS_DEMO_NODE_PORT=${PXS_DEMO_NODE_PORT:-11213} PXS_DEMO_PACS_PORT=${PXS_DEMO_PACS_PORT:-11214}
out=$(bash "$root/scripts/demo.sh" 2>&1)
status=$?
echo "$out" | tail -40
fail() { echo "demo_test: FAILED: $*"; exit 1; }
[ "$status" -eq 0 ] || fail "scripts/demo.sh exited with $status"
sent=$(echo "$out" | sed -n 's/^demo: sending \([0-9]*\) studies.*/\1/p')
received=$(echo "$out" | sed -n 's/^demo: \([0-9]*\) SRs received.*/\1/p')
[ -n "$sent" ] && [ "$sent" -gt 0 ] || fail "the demo sent no studies"
[ "$received" = "$sent" ] || fail "$sent studies sent but $received SRs received"
echo "$out" | grep -q 'Pulmonary X-ray Severity score' || fail "the SR text has no PXS score"
echo "$out" | grep -q '== pxsctl history' || fail "no pxsctl history printed"
# With ../shared/data/ralo the demo shows one real person's course: history per model,
# compared study by study (a trend word on every follow-up).
if echo "$out" | grep -q '^demo: building the real courses'; then
  echo "$out" | grep -q '(issuer RALO)' || fail "no ralo patient in pxsctl history"
  echo "$out" | grep -q '^Model ' || fail "pxsctl history shows no model course"
  echo "$out" | grep -Eq ' (worse|stable|better) ' || fail "pxsctl history compares no study"
fi
echo "demo_test: ok ($sent studies, $received SRs)"
