#!/usr/bin/env bash
# Wall time and peak memory of `strata debug parse` on adversarial inputs, each at two sizes
# (N and 2N) so non-linear behaviour stands out: the 2N row should take about twice the time
# and memory of the N row.
#
# Usage: scripts/adversarial-times.sh [SCALE]
#   SCALE  multiplies every size (default 1; try 0.1 for a quick look)
# Env: STRATA=path/to/strata to skip the release build; CARGO_TARGET_DIR is honoured.
#
# Prints one table row per input, size and format (buildkit = raw layer, json = typed layer):
# exit code (0 ok, 1 clean parse error; anything else is a bug), wall seconds, max RSS in MiB.
set -euo pipefail

scale="${1:-1}"
root="$(cd "$(dirname "$0")/.." && pwd)"

if [ ! -x /usr/bin/time ]; then
    echo "GNU time is required at /usr/bin/time (apt-get install time)" >&2
    exit 2
fi
if [ -z "${STRATA:-}" ]; then
    (cd "$root" && cargo build --release --quiet --bin strata)
    STRATA="${CARGO_TARGET_DIR:-$root/target}/release/strata"
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/strata-adversarial.XXXXXX")"
trap 'rm -rf "$work"' EXIT

# n BASE: BASE times SCALE, as an integer.
n() { awk -v b="$1" -v s="$scale" 'BEGIN { v = int(b * s); print (v < 1 ? 1 : v) }'; }

# Generators: gen_KIND N > file. All are deterministic.
gen_long_line() { awk -v n="$1" 'BEGIN { printf "FROM scratch\nRUN echo "; s = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"; for (i = 0; i < n / 100; i++) printf "%s", s; print "" }'; }
gen_continuations() { awk -v n="$1" 'BEGIN { print "FROM scratch"; print "RUN echo \\"; for (i = 2; i < n; i++) print "  a \\"; print "  end" }'; }
gen_brackets() { awk -v n="$1" 'BEGIN { printf "FROM scratch\nRUN "; for (i = 0; i < n; i++) printf "["; print "" }'; }
gen_stages() { awk -v n="$1" 'BEGIN { for (i = 0; i < n; i++) printf "FROM scratch AS s%d\nRUN echo %d\n", i, i }'; }
gen_heredocs() { awk -v n="$1" 'BEGIN { print "FROM scratch"; for (i = 0; i < n; i++) printf "RUN <<EOF\necho %d\nEOF\n", i }'; }
gen_many_heredocs() { awk -v n="$1" 'BEGIN { printf "FROM scratch\nRUN cat"; for (i = 0; i < n; i++) printf " <<E%d", i; print ""; for (i = 0; i < n; i++) printf "body %d\nE%d\n", i, i }'; }
gen_unterminated() { awk -v n="$1" 'BEGIN { print "FROM scratch\nRUN <<EOF"; for (i = 0; i < n; i++) print "echo hello" }'; }
gen_flags() { awk -v n="$1" 'BEGIN { print "FROM scratch"; printf "RUN"; for (i = 0; i < n; i++) printf " --flag"; print " echo" }'; }
gen_env_pairs() { awk -v n="$1" 'BEGIN { print "FROM scratch"; printf "ENV"; for (i = 0; i < n; i++) printf " k%d=v%d", i, i; print "" }'; }
gen_comments() { awk -v n="$1" 'BEGIN { for (i = 0; i < n; i++) print (i % 2 ? "# comment" : ""); print "FROM scratch" }'; }
gen_nested_expansion() { awk -v n="$1" 'BEGIN { printf "FROM scratch\nENV b="; for (i = 0; i < n; i++) printf "${a:-"; printf "x"; for (i = 0; i < n; i++) printf "}"; print "" }'; }
gen_onbuild() { awk -v n="$1" 'BEGIN { print "FROM scratch"; for (i = 0; i < n; i++) printf "ONBUILD "; print "RUN x" }'; }
gen_garbage() { awk -v n="$1" 'BEGIN { srand(1); for (i = 0; i < n; i++) printf "%c", int(rand() * 256) }'; }

# kind base-size
cases=(
    "long_line 5000000"
    "continuations 100000"
    "brackets 100000"
    "stages 3000"
    "heredocs 50000"
    "many_heredocs 5000"
    "unterminated 500000"
    "flags 500000"
    "env_pairs 50000"
    "comments 500000"
    "nested_expansion 50000"
    "onbuild 5000"
    "garbage 1000000"
)

printf '%-18s %10s %10s  %-8s %4s %9s %9s\n' input N bytes format exit wall_s rss_MiB
for c in "${cases[@]}"; do
    read -r kind base <<<"$c"
    for mult in 1 2; do
        size=$(( $(n "$base") * mult ))
        file="$work/$kind-$size.Dockerfile"
        LC_ALL=C "gen_$kind" "$size" >"$file"
        bytes=$(wc -c <"$file")
        for format in buildkit json; do
            set +e
            /usr/bin/time -f '%e %M' -o "$work/time" \
                "$STRATA" debug parse --format "$format" "$file" >/dev/null 2>"$work/stderr"
            code=$?
            set -e
            read -r wall rss_kib < <(tail -n 1 "$work/time")
            printf '%-18s %10s %10s  %-8s %4s %9s %9s\n' "$kind" "$size" "$bytes" "$format" \
                "$code" "$wall" "$(awk -v k="$rss_kib" 'BEGIN { printf "%.1f", k / 1024 }')"
            if [ "$code" -gt 1 ]; then
                echo "  !! abnormal exit; stderr tail:" >&2
                tail -n 3 "$work/stderr" >&2
            fi
        done
    done
done
