#!/usr/bin/env bash
# How much memory the heap itself makes resident for a traced program,
# glibc against the shim (and BEFORE=other.so, an older build), without the
# program's own noise (file pages, threads' timing): each trace is replayed
# by bench/replay.c through each allocator and the growth of anonymous
# memory printed, in KiB, at the peak (deterministic for a trace, a build
# and TOUCH). Prints a markdown table:
#
#   FREESPACE_TRACE=prog.%p.trace LD_PRELOAD=target/shim/libfreespace_malloc.so prog ...
#   crates/malloc/bench/replay.sh [--touch BYTES] TRACE...
#
# TOUCH (default 4096): bytes written at the start of each new block. The
# `resident` example (docs/malloc.md, "Where the memory goes") then says,
# page by page, what holds the shim's part.
set -euo pipefail
TOUCH=4096
if [ "${1:-}" = "--touch" ]; then
    TOUCH="$2"
    shift 2
fi
[ "$#" -gt 0 ] || { sed -n '2,14p' "$0"; exit 2; }
TRACES=()
for t in "$@"; do TRACES+=("$(cd "$(dirname "$t")" && pwd)/$(basename "$t")"); done
cd "$(dirname "$0")/../../.."
. crates/malloc/bench/common.sh replay
echo "| trace | $(IFS='|'; echo "${NAMES[*]}" | sed 's/|/ | /g') |"
echo "|---|$(for _ in "${NAMES[@]}"; do printf -- '---:|'; done)"
for t in "${TRACES[@]}"; do
    row="| $(basename "$t")"
    for i in "${!NAMES[@]}"; do
        kib=$(env ${PRELOADS[$i]:+LD_PRELOAD=${PRELOADS[$i]}} "$WORK/replay" "$t" "$TOUCH" |
            sed -n 's/.*grown by \([0-9-]*\) KiB at the peak.*/\1/p')
        row="$row | $kib"
    done
    echo "$row |"
done
echo
echo "KiB of anonymous memory the replay grew by at its peak, each block's first $TOUCH bytes written."
