#!/usr/bin/env bash
# The README's first command: builds strata, makes a busybox base image from Debian's
# busybox-static (installed if missing), builds examples/hello with `strata build` and runs it.
# `strata run` comes with the runner issue; until then the image's root filesystem is exported
# (`--output type=local`) and its CMD runs in strata's own sandbox (`strata debug sandbox`) with
# the image's user, working directory and environment.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
[[ -x /bin/busybox ]] || missing+=(busybox-static)
command -v python3 >/dev/null || missing+=(python3)
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

# Run it: the exported root filesystem as the lower dir of a sandbox, with the image's config.
"$strata" --root "$root" build -q --output "type=local,dest=$work/image" examples/hello >/dev/null
config=$("$strata" --root "$root" inspect --format '{{json .Config}}' hello)
echo "config: $config"
# The config's Env, User, WorkingDir and Cmd as sandbox arguments (NUL-separated).
mapfile -d '' -t args < <(printf '%s' "$config" | python3 -c '
import json, sys
c = json.load(sys.stdin)
out = []
for e in c.get("Env") or []:
    out += ["--env", e]
out += ["--user", c.get("User") or "0:0", "--cwd", c.get("WorkingDir") or "/", "--"]
out += (c.get("Entrypoint") or []) + (c.get("Cmd") or [])
sys.stdout.write("\0".join(out) + "\0")
')
mkdir -p "$work/upper" "$work/ovl"
"$strata" --root "$root" debug sandbox --lower "$work/image" --upper "$work/upper" \
    --work "$work/ovl" --network none "${args[@]}"
