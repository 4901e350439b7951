#!/usr/bin/env bash
# Configures and builds PXS Node (Release) into build/. Used by run-node.sh and run-tests.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release
cmake --build build -j"$(nproc)"
