#!/usr/bin/env bash
# Container start-to-exit benchmark: `strata run --rm IMAGE true` next to `podman run --rm` and
# `docker run --rm` (Debian's podman and docker.io) on the same busybox image. Prints one line per
# runtime and network mode: median, min and max wall seconds over RUNS runs, and the ratio to strata.
#
# Usage: scripts/bench-run.sh [RUNS]        (default 20 runs, after 2 untimed warm-up runs)
# Needs: podman, docker.io (daemon started here if not running). Env: STRATA=path to skip the
# release build. Docker's daemon here runs with --bridge=none, so docker is measured with
# --network none only.
set -euo pipefail

runs="${1:-20}"
repo="$(cd "$(dirname "$0")/.." && pwd)"
source "$repo/scripts/bench-lib.sh"
strata_bin "$repo"
need_packages podman docker.io
docker=/usr/bin/docker
ensure_dockerd

work="$(mktemp -d /var/tmp/strata-bench-run.XXXXXX)"
trap 'rm -rf "$work"' EXIT
root="$work/root"
mkdir -p "$work/rootfs/bin" "$work/rootfs/etc" "$work/rootfs/tmp"
cp /bin/busybox "$work/rootfs/bin/busybox"
for a in sh true echo cat; do ln -sf busybox "$work/rootfs/bin/$a"; done
echo 'root:x:0:0:root:/root:/bin/sh' >"$work/rootfs/etc/passwd"
echo 'root:x:0:' >"$work/rootfs/etc/group"
tar -C "$work/rootfs" -cf "$work/busybox.tar" .
"$STRATA" --root "$root" import "$work/busybox.tar" bench/run:latest >/dev/null
"$STRATA" --root "$root" save -o "$work/image.tar" bench/run:latest
"$docker" load -i "$work/image.tar" >/dev/null
podman load -i "$work/image.tar" >/dev/null 2>&1

podman_flags=(--runtime runc --ulimit nofile=1024:1024 --ulimit nproc=1024:1024)
declare -A cmds=(
    ["strata bridge"]="$STRATA --root $root run --rm bench/run true"
    ["strata none"]="$STRATA --root $root run --rm --network none bench/run true"
    ["podman bridge"]="podman run --rm ${podman_flags[*]} bench/run true"
    ["podman none"]="podman run --rm --network none ${podman_flags[*]} bench/run true"
    ["docker none"]="$docker run --rm --network none bench/run true"
)
order=("strata bridge" "strata none" "podman bridge" "podman none" "docker none")

stats() { sort -n | awk '{a[NR]=$1} END {printf "%.3f %.3f %.3f", a[int((NR+1)/2)], a[1], a[NR]}'; }
declare -A med
for name in "${order[@]}"; do
    read -r -a cmd <<<"${cmds[$name]}"
    for _ in 1 2; do "${cmd[@]}" >/dev/null 2>&1; done
    times=()
    for _ in $(seq "$runs"); do
        t0=$(date +%s%N)
        "${cmd[@]}" >/dev/null 2>&1
        t1=$(date +%s%N)
        times+=("$(echo "($t1 - $t0) / 1000000000" | bc -l)")
    done
    read -r m lo hi <<<"$(printf '%s\n' "${times[@]}" | stats)"
    med[$name]=$m
    base=${med["strata ${name#* }"]}
    printf '%-14s median %6.3f s  min %6.3f  max %6.3f  x%.1f of strata\n' \
        "$name" "$m" "$lo" "$hi" "$(echo "$m / $base" | bc -l)"
done
