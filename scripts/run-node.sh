#!/usr/bin/env bash
# README command one: install the dependencies, build, and run pxsnode in the foreground
# on the default config (demo model, SQLite under var/pxsnode, listening on 127.0.0.1:11112).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
config=${PXS_CONFIG:-config/pxsnode.example.toml}
cat <<MSG

PXS Node is starting with ${config} (Ctrl-C stops it).
Send it chest X-rays from another terminal, e.g.:
  echoscu -aec PXSNODE 127.0.0.1 11112
  storescu -aec PXSNODE 127.0.0.1 11112 some-chest-xray.dcm
or run the demo (sends sample courses, receives the SRs):  scripts/demo.sh
Results:  build/bin/pxsctl --config ${config} queue | history PATIENT_ID

MSG
exec build/bin/pxsnode --config "${config}"
