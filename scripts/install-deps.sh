#!/usr/bin/env bash
# Installs everything PXS Node needs to build, run and test, from Debian bookworm
# packages only (no downloads outside apt). Idempotent; run as root (or via sudo).
#   scripts/install-deps.sh            build + run + test dependencies
#   PXS_WITH_BENCH=1 scripts/install-deps.sh   also the benchmark peers (Orthanc)
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
  exec sudo -E "$0" "$@"
fi

export DEBIAN_FRONTEND=noninteractive

packages=(
  # toolchain
  build-essential cmake pkg-config git
  # libraries the C++ code links
  libdcmtk-dev libtorch-dev libsqlite3-dev libboost-dev libspdlog-dev libfmt-dev
  libssl-dev libgtest-dev libgmock-dev libtomlplusplus-dev libsystemd-dev libcli11-dev nlohmann-json3-dev
  # Debian's libtorch links the generic BLAS; without OpenBLAS it resolves to the
  # slow reference BLAS (several times slower inference).
  libopenblas0-pthread
  # DICOM peers and microscopes used by tests, demo and operators
  dcmtk dicom3tools sqlite3
  # bounded fuzzing of the parsers (scripts/fuzz.sh): clang with libFuzzer's runtime
  clang-14 libclang-rt-14-dev
  # model tools (tools/pxs-model, tools/reference_pxs.py) run on Debian's Python
  python3 python3-torch python3-torchvision python3-numpy python3-pil python3-pydicom
  python3-opencv python3-gdcm python3-matplotlib python3-scipy
  # the web face: Chart.js for the dashboard (served by the node, no CDN); curl,
  # promtool (Debian's prometheus) and headless chromium for its tests
  libjs-chart.js curl prometheus chromium
  # the shared PostgreSQL backend (libpqxx) and the real PostgreSQL 15 its tests start
  libpqxx-dev postgresql-15
  # the trend sheet (a Secondary Capture drawn with cairo) and HL7 v2 test clients (mllp_send)
  libcairo2-dev python3-hl7
  # pixelmed's DicomSRValidator (the SR templates and context groups) in the e2e tests
  pixelmed-apps default-jre-headless
)
if [ "${PXS_WITH_BENCH:-0}" = 1 ]; then
  packages+=(orthanc)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
echo "install-deps: all ${#packages[@]} packages present"

# The interoperability test sends with an independent DICOM implementation (dcmjs-dimse,
# from the npm registry, pinned in tests/interop/package-lock.json).
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  apt-get install -y -q --no-install-recommends nodejs npm
fi
here=$(cd "$(dirname "$0")/.." && pwd)
if [ ! -d "$here/tests/interop/node_modules/dcmjs-dimse" ]; then
  npm ci --prefix "$here/tests/interop" --no-audit --no-fund --loglevel=error || \
    echo "install-deps: npm ci failed; the interoperability test will be skipped"
fi
