#!/usr/bin/env bash
# PXS Node demo: a self-contained round trip on this machine.
#   1. starts a DCMTK storescp as the receiving PACS (AE DEMOPACS, port 11114),
#   2. starts a demo pxsnode (AE PXSNODE, port 11113, data in var/demo) that sends its SRs there,
#   3. sends real courses with storescu, one study at a time, as a modality would: the
#      serial X-rays of ralo subjects (../shared/data/ralo; the same person over time,
#      the real exam times as study dates; tools/make_ralo_studies.py),
#   4. waits for the SRs, prints `pxsctl history` for those patients and one SR as text.
# Without ralo it sends the synthetic courses of ../shared/data/longitudinal (images of
# different people), and without ../shared/data generated noise images; it says which.
# Needs a build (scripts/build.sh or README command one). Leaves everything in var/demo.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
bin=${PXS_BIN_DIR:-$root/build/bin}
[ -x "$bin/pxsnode" ] || { echo "demo: build first (scripts/build.sh)"; exit 1; }
demo=${PXS_DEMO_DIR:-$root/var/demo}
rm -rf "$demo"
mkdir -p "$demo/courses" "$demo/pacs"
node_port=${PXS_DEMO_NODE_PORT:-11113}
pacs_port=${PXS_DEMO_PACS_PORT:-11114}
patients=${PXS_DEMO_PATIENTS:-4}
export TCP_NODELAY=1

shared=$root/../shared/data
subjects=${PXS_DEMO_SUBJECTS:-2}
if [ -f "$shared/ralo/scores.csv" ] && /usr/bin/python3 -c 'import pydicom, numpy, PIL' 2>/dev/null; then
  echo "demo: building the real courses of $subjects ralo patients from ../shared/data/ralo (serial AP chest X-rays of one person each, real exam times; RALO data set, CC BY-SA 4.0)"
  /usr/bin/python3 "$root/tools/make_ralo_studies.py" "$demo/courses" --ralo "$shared/ralo" \
    --max-subjects "$subjects" --min-exams 6 --max-exams "${PXS_DEMO_EXAMS:-8}" >/dev/null
elif [ -f "$shared/longitudinal/make_dicom.py" ] && /usr/bin/python3 -c 'import pydicom, numpy, PIL' 2>/dev/null; then
  echo "demo: building $patients synthetic longitudinal courses from ../shared/data (images of different real people; mechanics only, not clinical)"
  /usr/bin/python3 "$shared/longitudinal/make_dicom.py" "$demo/courses" --max-patients "$patients" >/dev/null
else
  echo "demo: ../shared/data is not here: generating synthetic courses (noise images, not X-rays) with scripts/make_demo_dicom.py"
  /usr/bin/python3 "$root/scripts/make_demo_dicom.py" "$demo/courses" --patients "$patients"
fi

cat > "$demo/pxsnode.toml" <<TOML
[node]
ae_title = "PXSNODE"
port = $node_port
data_dir = "data"
[scp]
min_free_gb = 0.5
min_free_percent = 1.0
[scoring]
model = "$root/models/pxs-demo-cxr14.pt"
[[destinations]]
name = "demo-pacs"
ae_title = "DEMOPACS"
host = "127.0.0.1"
port = $pacs_port
[reports]
send_to = ["demo-pacs"]
retry_initial_s = 1
TOML

# Stops both servers; their exit statuses (143 after SIGTERM) are not the demo's.
cleanup() {
  local status=$?
  if [ -n "${node_pid:-}" ]; then kill "$node_pid" 2>/dev/null || true; wait "$node_pid" 2>/dev/null || true; fi
  if [ -n "${pacs_pid:-}" ]; then kill "$pacs_pid" 2>/dev/null || true; wait "$pacs_pid" 2>/dev/null || true; fi
  exit "$status"
}
trap cleanup EXIT
storescp -aet DEMOPACS -od "$demo/pacs" "$pacs_port" >"$demo/storescp.log" 2>&1 &
pacs_pid=$!
"$bin/pxsnode" --config "$demo/pxsnode.toml" >"$demo/pxsnode.log" 2>&1 &
node_pid=$!
for _ in $(seq 1 120); do
  echoscu -aec PXSNODE 127.0.0.1 "$node_port" >/dev/null 2>&1 && break
  sleep 0.5
done
echoscu -aec PXSNODE 127.0.0.1 "$node_port" >/dev/null || { echo "demo: pxsnode did not start:"; cat "$demo/pxsnode.log"; exit 1; }

files=("$demo"/courses/*.dcm)
echo "demo: sending ${#files[@]} studies to PXSNODE@127.0.0.1:$node_port"
for f in "${files[@]}"; do
  storescu -aec PXSNODE 127.0.0.1 "$node_port" "$f"
done

echo "demo: waiting for ${#files[@]} SRs at DEMOPACS ..."
for _ in $(seq 1 240); do
  n=$(find "$demo/pacs" -type f | wc -l)
  [ "$n" -ge "${#files[@]}" ] && break
  sleep 0.5
done
echo "demo: $(find "$demo/pacs" -type f | wc -l) SRs received"

cfg="$demo/pxsnode.toml"
mapfile -t ids < <("$bin/pxsctl" --config "$cfg" patients --json | /usr/bin/python3 -c '
import json, sys
rows = json.load(sys.stdin)
rows = rows.get("patients", rows) if isinstance(rows, dict) else rows
for r in rows[:2]:
    print(r["patient_id"] + "\t" + (r.get("issuer") or ""))')
for row in "${ids[@]}"; do
  id=${row%%$'\t'*}; issuer=${row#*$'\t'}
  echo; echo "== pxsctl history $id =="
  if [ -n "$issuer" ]; then "$bin/pxsctl" --config "$cfg" history "$id" --issuer "$issuer"; else "$bin/pxsctl" --config "$cfg" history "$id"; fi
done
sr=$(ls -t "$demo"/pacs/* | head -1)
echo; echo "== the newest SR ($sr), as dsrdump shows it =="
dsrdump "$sr"
echo; echo "demo: done. Files, logs and the database are in $demo (pxsctl --config $demo/pxsnode.toml ...)."
