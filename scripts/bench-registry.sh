#!/usr/bin/env bash
# Push and pull benchmark against Debian's docker-registry on 127.0.0.1: the 340 MB / 20,000-file
# tree of ../shared/bench/mkctx.sh as a one-layer image, next to `skopeo copy` of the same image.
# Prints wall and CPU (user+sys, children included) seconds per run, and the medians.
#
# Usage: scripts/bench-registry.sh [RUNS]        (default 3)
# Needs: docker-registry, skopeo (installed if missing). Env: STRATA=path to skip the release build.
set -euo pipefail

runs="${1:-3}"
repo="$(cd "$(dirname "$0")/.." && pwd)"
mkctx="${MKCTX:-$repo/../shared/bench/mkctx.sh}"
source "$repo/scripts/bench-lib.sh"
strata_bin "$repo"
need_packages docker-registry skopeo

work="$(mktemp -d /var/tmp/strata-bench-reg.XXXXXX)"
registry=
trap 'kill $registry 2>/dev/null; rm -rf "$work"' EXIT
# A registry with empty storage on a new port (each run pushes into an empty registry, so nothing
# is skipped or mounted from an earlier run). Sets $reg.
fresh_registry() {
    if [ -n "$registry" ]; then
        kill "$registry" 2>/dev/null || true
        wait "$registry" 2>/dev/null || true
    fi
    rm -rf "$work/storage"
    local port=$((20000 + RANDOM % 20000))
    cat >"$work/config.yml" <<EOF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $work/storage
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
EOF
    /usr/bin/docker-registry serve "$work/config.yml" >"$work/registry.log" 2>&1 &
    registry=$!
    for _ in $(seq 100); do
        (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
        sleep 0.1
    done
    reg="127.0.0.1:$port"
}

make_tree "$work" "$mkctx"
src="$work/src-root"
"$STRATA" --root "$src" import "$work/tree.tar" bench/big:latest >/dev/null
"$STRATA" --root "$src" save --format oci -o "$work/big.oci.tar" bench/big:latest
mkdir -p "$work/oci" && tar -C "$work/oci" -xf "$work/big.oci.tar"
echo "image: $(du -sh "$work/tree" | cut -f1), $(find "$work/tree" -type f | wc -l) files" >&2

# "wall cpu" of a command: GNU time's elapsed, and user+sys of it and its children.
measure() {
    /usr/bin/time -f '%e %U %S' -o "$work/time" "$@" >/dev/null 2>&1
    awk '{printf "%.2f %.2f\n", $1, $2 + $3}' "$work/time"
}
declare -A wall cpu
add() { wall[$1]+="$2 "; cpu[$1]+="$3 "; }

for i in $(seq "$runs"); do
    fresh_registry
    # Push: strata's compressed blob is already cached by the OCI save above (as docker keeps
    # its compressed layers), and skopeo copies that same OCI layout: both upload the same blob.
    "$STRATA" --root "$src" tag bench/big "$reg/s$i/big:latest"
    read -r w c < <(measure "$STRATA" --root "$src" push -q "$reg/s$i/big:latest")
    add "push strata" "$w" "$c"
    read -r w c < <(measure skopeo copy --dest-tls-verify=false "oci:$work/oci:latest" \
        "docker://$reg/k$i/big:latest")
    add "push skopeo" "$w" "$c"
    # Pull into an empty root (strata unpacks into its store, ready to run) vs skopeo to an OCI
    # layout (blobs only), in alternating order. The pulled trees stay until the end: on ext4
    # without a journal (this machine's root), the inode allocator skips inodes freed in the last
    # minute one by one (`recently_deleted()` in fs/ext4/ialloc.c), so a tree of 20,000 files
    # created right after another was deleted pays over a second of system time for it: an
    # artefact of the benchmark's own clean-up that no real pull meets.
    strata_pull() {
        read -r w c < <(measure "$STRATA" --root "$work/pull$i" pull -q "$reg/s$i/big:latest")
        add "pull strata" "$w" "$c"
    }
    skopeo_pull() {
        read -r w c < <(measure skopeo copy --src-tls-verify=false \
            "docker://$reg/s$i/big:latest" "oci:$work/skopeo$i:big")
        add "pull skopeo" "$w" "$c"
    }
    if [ $((i % 2)) = 1 ]; then strata_pull; skopeo_pull; else skopeo_pull; strata_pull; fi
done
for name in "push strata" "push skopeo" "pull strata" "pull skopeo"; do
    printf '%-12s wall %6.2f s  cpu %6.2f s   (runs: %s)\n' "$name" \
        "$(echo "${wall[$name]}" | median)" "$(echo "${cpu[$name]}" | median)" "${wall[$name]}"
done
