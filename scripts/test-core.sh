#!/usr/bin/env bash
# The C++ core's own tests under AddressSanitizer + UndefinedBehaviorSanitizer, then a bounded libFuzzer run.
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build-core -G Ninja -DKNOCKD_TESTS=ON -DKNOCKD_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug >/dev/null
cmake --build build-core
ctest --test-dir build-core --output-on-failure
if command -v clang++ >/dev/null; then
  cmake -S . -B build-fuzz -G Ninja -DKNOCKD_FUZZ=ON -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=Debug >/dev/null
  cmake --build build-fuzz --target fuzz_frames fuzz_spa
  mkdir -p build-fuzz/corpus build-fuzz/corpus-spa
  ./build-fuzz/fuzz_frames -max_total_time="${KNOCKD_FUZZ_SECONDS:-60}" -max_len=4096 build-fuzz/corpus native/fuzz/corpus
  # the SPA check against a plain reference; mode byte 1 appends the right MAC (docs/SPA.md §4)
  ./build-fuzz/fuzz_spa -max_total_time="${KNOCKD_FUZZ_SPA_SECONDS:-30}" -max_len=1600 build-fuzz/corpus-spa native/fuzz/corpus-spa
else
  echo "clang++ not found: skipping the fuzz run (apt-get install clang libclang-rt-14-dev)" >&2
  exit 1
fi
