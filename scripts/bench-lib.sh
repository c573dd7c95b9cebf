# Shared by the bench-*.sh scripts (sourced, not run).

# Sets STRATA to the strata binary: $STRATA when given, else a release build of the repo at $1.
strata_bin() {
    if [ -z "${STRATA:-}" ]; then
        (cd "$1" && cargo build --release --quiet --bin strata)
        STRATA="${CARGO_TARGET_DIR:-$1/target}/release/strata"
    fi
}

# Installs the Debian packages named (those missing).
need_packages() {
    local pkg
    for pkg in "$@"; do
        dpkg -s "$pkg" >/dev/null 2>&1 || apt-get install -y "$pkg" >/dev/null
    done
}

# Starts Docker's daemon (no iptables, no bridge) unless it answers already.
ensure_dockerd() {
    if ! /usr/bin/docker info >/dev/null 2>&1; then
        (dockerd --iptables=false --bridge=none >/tmp/dockerd.log 2>&1 &)
        for _ in $(seq 60); do /usr/bin/docker info >/dev/null 2>&1 && break; sleep 1; done
    fi
}

# The median of the numbers on stdin (one per line, or separated by spaces).
median() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# Makes $1/ctx with mkctx.sh ($2), then the image tree $1/tree (the busybox rootfs plus the
# 20,000 files of the big context under /app) and its tar $1/tree.tar.
make_tree() {
    "$2" "$1/ctx" >/dev/null
    mkdir -p "$1/tree"
    tar -C "$1/tree" -xf "$1/ctx/busybox.tar"
    cp -a "$1/ctx/big/src" "$1/tree/app"
    tar -C "$1/tree" -cf "$1/tree.tar" .
}
