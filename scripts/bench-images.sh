#!/usr/bin/env bash
# Import and save benchmarks on the 340 MB / 20,000-file tree of ../shared/bench/mkctx.sh, side by side
# with `docker save` (Docker's daemon) and `skopeo copy` to an OCI layout. Prints one line per measurement:
# name, strata seconds, reference seconds, ratio (below 1.0: strata is faster).
#
# Usage: scripts/bench-images.sh [RUNS]        (default 3 runs; medians)
# Needs: docker.io (daemon started here if not running), skopeo. Env: STRATA=path to skip the release build.
set -euo pipefail

runs="${1:-3}"
repo="$(cd "$(dirname "$0")/.." && pwd)"
mkctx="${MKCTX:-$repo/../shared/bench/mkctx.sh}"
source "$repo/scripts/bench-lib.sh"
strata_bin "$repo"
need_packages skopeo docker.io
ensure_dockerd

work="$(mktemp -d /var/tmp/strata-bench.XXXXXX)"
trap 'rm -rf "$work"' EXIT
# The image: the busybox rootfs plus the 20,000 files of the big context under /app.
make_tree "$work" "$mkctx"
echo "tree: $(du -sh "$work/tree" | cut -f1), $(find "$work/tree" -type f | wc -l) files" >&2

timeit() { local t0 t1; t0=$(date +%s.%N); "$@" >/dev/null 2>&1; t1=$(date +%s.%N); echo "$t1 - $t0" | bc; }
row() { printf '%-34s %8.2f %8.2f %6.2f\n' "$1" "$2" "$3" "$(echo "$2 / $3" | bc -l)"; }

root="$work/root"
imp=(); save=(); save2=(); ocig=(); dsave=(); skop=(); copy=()
for i in $(seq "$runs"); do
    rm -rf "$root"
    imp+=("$(timeit "$STRATA" --root "$root" import "$work/tree.tar" bench/big:latest)")
    rm -f "$work/s.tar"
    save+=("$(timeit "$STRATA" --root "$root" save -o "$work/s.tar" bench/big:latest)")
    save2+=("$(timeit "$STRATA" --root "$root" save -o "$work/s2.tar" bench/big:latest)")
    rm -f "$work/c.tar"
    copy+=("$(timeit cp "$work/s.tar" "$work/c.tar")")
    rm -f "$work/o.tar"
    ocig+=("$(timeit "$STRATA" --root "$root" save --format oci -o "$work/o.tar" bench/big:latest)")
    docker rmi -f bench/big:latest >/dev/null 2>&1 || true
    docker load -i "$work/s.tar" >/dev/null
    dsave+=("$(timeit docker save -o "$work/d.tar" bench/big:latest)")
    rm -rf "$work/oci"
    skop+=("$(timeit skopeo copy --dest-compress docker-archive:"$work/s.tar" oci:"$work/oci":latest)")
done
m() { printf '%s\n' "$@" | median; }
printf '%-34s %8s %8s %6s\n' measurement strata reference ratio
printf '%-34s %8.2f\n' "import (no reference)" "$(m "${imp[@]}")"
row "save docker-archive vs docker save" "$(m "${save[@]}")" "$(m "${dsave[@]}")"
row "second save vs cp of the archive" "$(m "${save2[@]}")" "$(m "${copy[@]}")"
row "save oci+gzip vs skopeo copy oci" "$(m "${ocig[@]}")" "$(m "${skop[@]}")"
