#!/bin/sh
# Re-records the build conformance expectations (tests/fixtures/build/<case>/expected*.txt) with
# real BuildKit: docker's `DOCKER_BUILDKIT=1 docker build --network=none --no-cache`, then
# `docker save`, normalised by tests/common/snapshot.rs through the ignored test
# `conformance::record`. CI never needs docker: it compares strata against the committed files.
#
# Usage: scripts/record-build-fixtures.sh [case,case,...]
# Needs: dockerd (started here if not running; --iptables=false --bridge=none, no registry
# access needed: every case builds FROM strata-test/busybox:latest, made by `docker import` of
# the deterministic busybox rootfs, or FROM scratch), and /bin/busybox (Debian busybox-static).
set -eu

cd "$(dirname "$0")/.."

if ! docker info >/dev/null 2>&1; then
    echo "starting dockerd (log: /tmp/dockerd.log)" >&2
    dockerd --iptables=false --bridge=none >/tmp/dockerd.log 2>&1 &
    i=0
    until docker info >/dev/null 2>&1; do
        i=$((i + 1))
        [ "$i" -lt 60 ] || { echo "dockerd did not come up, see /tmp/dockerd.log" >&2; exit 1; }
        sleep 1
    done
fi

# The docker client must build with BuildKit. A client with the buildx plugin does; an older
# client (Debian's docker.io 20.10 at /usr/bin/docker) talks to dockerd's embedded BuildKit
# itself. A newer client without buildx refuses DOCKER_BUILDKIT=1, so fall back to Debian's.
uses_buildkit() {
    dir=$(mktemp -d)
    printf 'FROM scratch\nENV PROBE=1\n' >"$dir/Dockerfile"
    out=$(DOCKER_BUILDKIT=1 "$1" build --progress=plain --no-cache "$dir" 2>&1 || true)
    rm -rf "$dir"
    case "$out" in *"#1 [internal] load build definition"*) return 0 ;; esac
    return 1
}
if [ -z "${STRATA_DOCKER:-}" ]; then
    for d in docker /usr/bin/docker; do
        if command -v "$d" >/dev/null 2>&1 && uses_buildkit "$d"; then
            STRATA_DOCKER=$d
            break
        fi
    done
fi
[ -n "${STRATA_DOCKER:-}" ] || { echo "no docker client that builds with BuildKit" >&2; exit 1; }
echo "recording with $STRATA_DOCKER ($("$STRATA_DOCKER" version --format '{{.Server.Version}}'))" >&2

STRATA_RECORD=1 STRATA_DOCKER=$STRATA_DOCKER STRATA_CONFORMANCE_CASES=${1:-} \
    cargo test --test tests conformance::record -- --ignored --exact --nocapture
