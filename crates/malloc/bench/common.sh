# Sourced, from the workspace root, by the measuring scripts beside it:
#
#   . crates/malloc/bench/common.sh [PROGRAM...]
#
# Builds the shim as shipped, `--profile shim` (SO: its absolute path), makes a scratch
# directory removed on exit (WORK), compiles each named C program of this
# directory into it ($WORK/PROGRAM), and lists the allocators to compare:
# NAMES and PRELOADS (the LD_PRELOAD value of each) are glibc, this shim,
# and, if BEFORE names another build of the shim, that one (shown as
# BEFORE_NAME, default "before (FILE)").
TARGET="${CARGO_TARGET_DIR:-target}"
cargo build --profile shim -q -p freespace-malloc-so
SO="$(cd "$TARGET/shim" && pwd)/libfreespace_malloc.so"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
for program in "$@"; do
    cc -O2 -pthread -o "$WORK/$program" "crates/malloc/bench/$program.c"
done
NAMES=(glibc freespace-malloc)
PRELOADS=("" "$SO")
if [ -n "${BEFORE:-}" ]; then
    NAMES+=("${BEFORE_NAME:-before ($(basename "$BEFORE"))}")
    PRELOADS+=("$(cd "$(dirname "$BEFORE")" && pwd)/$(basename "$BEFORE")")
fi
