#!/usr/bin/env bash
# README command two: install the dependencies, build, and run the whole test suite
# (unit, end-to-end against the real binaries, the crash test). Ends with ctest's summary.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
cd build
# The end-to-end tests start servers on loopback ports and use both cores: run serially.
ctest --output-on-failure --timeout 1500 "$@"
