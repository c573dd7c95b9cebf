#!/usr/bin/env bash
# The README's first command: builds strata, makes a busybox base image from Debian's
# busybox-static (installed if missing), builds examples/hello with `strata build` and runs it
# with `strata run --rm hello`.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
[[ -x /bin/busybox ]] || missing+=(busybox-static)
if ((${#missing[@]})); then
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"
fi
cargo build --release --quiet
strata=target/release/strata
root=${STRATA_ROOT:-$PWD/target/quickstart-root}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# A busybox root filesystem: the static binary, one symlink per applet, passwd and group.
mkdir -p "$work/rootfs/bin" "$work/rootfs/etc" "$work/rootfs/tmp" "$work/rootfs/root"
cp /bin/busybox "$work/rootfs/bin/busybox"
for applet in $(/bin/busybox --list); do
    [[ $applet == busybox ]] || ln -sf busybox "$work/rootfs/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n' >"$work/rootfs/etc/passwd"
printf 'root:x:0:\nuser:x:1000:\n' >"$work/rootfs/etc/group"
chmod 1777 "$work/rootfs/tmp"
tar -C "$work/rootfs" -cf "$work/busybox.tar" .

"$strata" --root "$root" import "$work/busybox.tar" busybox:latest >/dev/null
"$strata" --root "$root" build --progress plain -t hello examples/hello
"$strata" --root "$root" history hello

# Run it: a container of the image, removed when it exits.
"$strata" --root "$root" run --rm hello
