#!/usr/bin/env bash
# Long fuzzing run of the parser's cargo-fuzz targets (fuzz/fuzz_targets/*).
#
# Usage: scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#   SECONDS_PER_TARGET  default 600 (10 minutes)
#   TARGET              default: every target (`cargo fuzz list`)
#
# Needs a nightly toolchain (rustup toolchain install nightly); installs cargo-fuzz if missing.
# Corpora grow under fuzz/corpus/<target>, crashes land in fuzz/artifacts/<target>.
# Exits 1 if any target found a crash.
set -euo pipefail

duration="${1:-600}"
shift || true
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root/fuzz"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "installing cargo-fuzz..." >&2
    cargo install --locked cargo-fuzz
fi
if ! rustup run nightly rustc --version >/dev/null 2>&1; then
    echo "a nightly toolchain is required: rustup toolchain install nightly" >&2
    exit 2
fi

if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo +nightly fuzz list)
fi

failed=()
for target in "${targets[@]}"; do
    echo "=== fuzzing $target for ${duration}s" >&2
    mkdir -p "corpus/$target"
    if ! cargo +nightly fuzz run "$target" "corpus/$target" -- \
        -max_total_time="$duration" -max_len=65536 -timeout=10 -rss_limit_mb=4096 \
        -print_final_stats=1; then
        failed+=("$target")
    fi
done

if [ "${#failed[@]}" -gt 0 ]; then
    echo "crashes in: ${failed[*]} (see fuzz/artifacts/)" >&2
    exit 1
fi
echo "no crashes" >&2
