#!/usr/bin/env bash
# README command two: install the dependencies, build, and run the whole test suite
# (unit, end-to-end against the real binaries, the crash test). Ends with ctest's summary.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
# Bounded fuzzing of the parsers that face the outside (fuzz/, clang + libFuzzer), about
# PXS_FUZZ_SECONDS (30) per target, before ctest so that ctest's summary ends the output.
scripts/fuzz.sh
cd build
# The end-to-end tests start servers on loopback ports and use both cores: run serially.
ctest --output-on-failure --timeout 1500 "$@"
