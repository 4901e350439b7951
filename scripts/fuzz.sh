#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/) with clang into build-fuzz/ and runs each for a
# bounded time (PXS_FUZZ_SECONDS, default 30) over a corpus seeded from the repository
# and ../shared/data (copied; nothing is written there), after replaying every kept
# regression input (fuzz/regressions/<target>/). Exits non-zero on any crash, leak or
# timeout, leaving the input under build-fuzz/artifacts/<target>/.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
seconds=${PXS_FUZZ_SECONDS:-30}
build=$root/build-fuzz
cxx=${PXS_FUZZ_CXX:-clang++-14}
if ! command -v "$cxx" >/dev/null; then
  echo "fuzz: $cxx not installed; skipped" >&2
  exit 0
fi
mkdir -p "$build"
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER="$cxx" -DPXS_FUZZ=ON \
      -DPXS_BUILD_TESTS=OFF > "$build/configure.log" 2>&1 || { cat "$build/configure.log"; exit 1; }
targets=(fuzz_config fuzz_model_metadata fuzz_sr_reader fuzz_ingest fuzz_hl7 fuzz_fhir)
cmake --build "$build" --target "${targets[@]}" -j"$(nproc)" > "$build/build.log" 2>&1 || { tail -50 "$build/build.log"; exit 1; }

shared=$root/../shared/data
seed() {  # target, files...
  local dir=$build/corpus/$1
  shift
  mkdir -p "$dir"
  for f in "$@"; do [ -f "$f" ] && cp -f "$f" "$dir/" || true; done
}
seed fuzz_config config/pxsnode.example.toml
seed fuzz_hl7 fuzz/seeds/fuzz_hl7/*
seed fuzz_fhir fuzz/seeds/fuzz_fhir/*
mkdir -p "$build/corpus/fuzz_model_metadata"
/usr/bin/python3 - "$build/corpus/fuzz_model_metadata" models/*.pt tests/fixtures/*.pt <<'PY'
import sys, zipfile, os
out = sys.argv[1]
for i, pt in enumerate(sys.argv[2:]):
    with zipfile.ZipFile(pt) as z:
        for n in z.namelist():
            if n.endswith("extra/metadata.json"):
                open(os.path.join(out, "meta%d.json" % i), "wb").write(z.read(n))
PY
if [ -d "$shared/dicom" ]; then
  seed fuzz_ingest "$shared"/dicom/*.dcm "$shared"/dicom/bad/*.dcm
  seed fuzz_sr_reader "$shared"/dicom/sc_mono2_8bit_chest.dcm "$shared"/dicom/cr_mono2_explicit_le.dcm
else
  echo "fuzz: ../shared/data absent; corpora start from the repository's seeds only" >&2
  mkdir -p "$build/corpus/fuzz_ingest" "$build/corpus/fuzz_sr_reader"
fi

status=0
for t in "${targets[@]}"; do
  art=$build/artifacts/$t
  mkdir -p "$art"
  reg=$root/fuzz/regressions/$t
  if [ -d "$reg" ] && [ -n "$(ls -A "$reg")" ]; then
    "$build/fuzz/$t" -runs=0 "$reg" > "$build/$t.regressions.log" 2>&1 || {
      echo "fuzz: $t fails a kept regression input:"; tail -30 "$build/$t.regressions.log"; status=1; }
  fi
  # -rss_limit_mb: DCMTK may allocate what a header claims; 2 GB stays inside the machine.
  if "$build/fuzz/$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=1048576 \
       -artifact_prefix="$art/" -print_final_stats=1 "$build/corpus/$t" > "$build/$t.log" 2>&1; then
    echo "fuzz: $t ok: $(grep -o 'stat::number_of_executed_units: [0-9]*' "$build/$t.log" | awk '{print $2}') inputs in ${seconds}s"
  else
    echo "fuzz: $t FAILED (input in $art):"; tail -40 "$build/$t.log"; status=1
  fi
done
rm -rf /dev/shm/pxs-fuzz-*  # the targets' scratch files and data folders
exit $status
