#!/usr/bin/env bash
# Instructions per malloc+free pair (bench/micro.c, one thread, 1-128 B)
# under callgrind, for glibc and for freespace-malloc: repeatable where wall
# time on a shared machine is not. Each allocator runs twice, with N and 2N
# pairs, and the difference is divided by N, so start-up, thread creation
# and exit drop out; the benchmark's own loop (about 18 instructions a
# pair) stays in both figures.
#
#   crates/malloc/callgrind.sh [N]          (default 200000)
#
# The shim is built with the `valgrind` feature (a 4 GiB address-space
# reservation instead of 64 GiB, which valgrind refuses), in the target
# directory's `valgrind/` (so the plain build is left alone). Needs
# valgrind and a C compiler. With ANNOTATE=1 it also prints
# callgrind_annotate's per-function table of the freespace run.
set -euo pipefail
cd "$(dirname "$0")/../.."
N="${1:-200000}"
TARGET="${CARGO_TARGET_DIR:-target}/valgrind"
CARGO_TARGET_DIR="$TARGET" cargo build --release -q -p freespace-malloc --features valgrind
SO="$(cd "$TARGET/release" && pwd)/libfreespace_malloc.so"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
cc -O2 -g -pthread -o "$WORK/micro" crates/malloc/bench/micro.c

# Total instructions of one run: `count PRELOAD PAIRS` (PRELOAD may be "").
count() {
    local pre="$1" pairs="$2" out="$WORK/cg.$RANDOM"
    # `env` execs the benchmark; --trace-children follows it, and its
    # output file (same pid) is the one left, with the last total.
    valgrind --tool=callgrind --trace-children=yes --callgrind-out-file="$out" \
        env ${pre:+LD_PRELOAD=$pre} "$WORK/micro" 1 "$pairs" 2>&1 >/dev/null \
        | awk '/Collected/ { n = $4 } END { print n }'
    LAST="$out"
}

echo "| allocator | instructions per malloc+free pair |"
echo "|---|---|"
for who in glibc freespace-malloc; do
    pre=""
    [ "$who" = freespace-malloc ] && pre="$SO"
    a=$(count "$pre" "$N")
    b=$(count "$pre" "$((2 * N))")
    printf '| %s | %.1f |\n' "$who" "$(echo "($b - $a) / $N" | bc -l)"
done
if [ "${ANNOTATE:-0}" = 1 ]; then
    callgrind_annotate --inclusive=yes "$LAST" | head -40
fi
