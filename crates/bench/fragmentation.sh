#!/usr/bin/env bash
# Generates docs/fragmentation.md: records allocation traces of real
# programs under freespace-malloc (FREESPACE_TRACE, `cargo xtask trace`),
# then replays them against every subject (`cargo xtask replay --out docs`),
# which writes the page, its tables, its pictures and the comparison with
# Johnstone and Wilson (1998), and appends what recording costs
# (crates/malloc/bench/trace-overhead.sh). Every figure on the page comes
# from this run.
#
#   crates/bench/fragmentation.sh [BUDGET_SECONDS] [--from DIR]   (default 60)
#
# --from DIR: replay the traces in DIR (*.trace, kept from an earlier run
# with KEEP=DIR) instead of recording new ones.
#
# The traces (python3, sqlite3, git, perl, gcc compiling a generated C file,
# redis-server under redis-benchmark) go to a temporary directory and are not
# kept: they are large. A program that is not installed is left out, and the
# page says which traces it covers. One small trace is committed for the
# tests (crates/bench/tests/data/sqlite-small.trace); it is recorded here too
# with --small-trace-only. KEEP=DIR keeps the recorded traces in DIR.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT="$PWD"
BUDGET=60
FROM=""
KEEP="${KEEP:-}"
while [ $# -gt 0 ]; do
    case "$1" in
        --from) FROM="$2"; shift 2;;
        --small-trace-only) SMALL=1; shift;;
        *) BUDGET="$1"; shift;;
    esac
done
TARGET="${CARGO_TARGET_DIR:-target}"
cargo build --profile shim -q -p freespace-malloc-so
SO="$(cd "$TARGET/shim" && pwd)/libfreespace_malloc.so"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

# Runs "$@" with tracing on; the trace of the process that made the most
# calls (the compiler proper, not the gcc driver) becomes $WORK/$NAME.trace.
record() {
    local name="$1"
    shift
    mkdir -p "$WORK/$name"
    if ! FREESPACE_TRACE="$WORK/$name/%p.trace" LD_PRELOAD="$SO" "$@" > /dev/null 2> "$WORK/$name.err"; then
        echo "skipped $name: it failed under the shim" >&2
        tail -5 "$WORK/$name.err" >&2
        return 0
    fi
    local biggest
    biggest=$(ls -S "$WORK/$name"/*.trace | head -1)
    mv "$biggest" "$WORK/$name.trace"
    rm -rf "${WORK:?}/$name"
    echo "recorded $name: $(( ($(stat -c %s "$WORK/$name.trace") - 16) / 32 )) calls" >&2
}

have() { command -v "$1" > /dev/null; }

if [ -n "${SMALL:-}" ]; then
    record sqlite-small sqlite3 "$WORK/small.db" \
        "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT); \
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 300) \
         INSERT INTO t SELECT i, printf('%.*c', i % 200, 'x') FROM n; \
         CREATE INDEX t_v ON t(v); DELETE FROM t WHERE id % 3 = 0; SELECT count(*) FROM t;"
    mkdir -p crates/bench/tests/data
    cp "$WORK/sqlite-small.trace" crates/bench/tests/data/sqlite-small.trace
    exit 0
fi

PY=/usr/bin/python3
[ -x "$PY" ] || PY="$(command -v python3)"
if [ -n "$FROM" ]; then
    cp "$FROM"/*.trace "$WORK"/
elif [ -x "$PY" ]; then
    # Every object a malloc call (no pymalloc arenas in between).
    PYTHONMALLOC=malloc record python3 "$PY" -c '
import json
d = {i: str(i) * 20 for i in range(100000)}
text = json.dumps({"k%d" % i: [i, str(i), {"x": i}] for i in range(30000)})
assert len(json.loads(text)) == 30000
words = sorted(set(text.split(",")))
del d
'
fi
if [ -z "$FROM" ] && have sqlite3; then
    {
        echo "CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT, v REAL);"
        echo "BEGIN;"
        for i in $(seq 1 30000); do echo "INSERT INTO t VALUES($i, 'name$i', $i.5);"; done
        echo "COMMIT;"
        echo "CREATE INDEX t_name ON t(name);"
        echo "DELETE FROM t WHERE id % 3 = 0;"
        echo "VACUUM;"
    } > "$WORK/insert.sql"
    record sqlite3 sh -c "sqlite3 '$WORK/db' < '$WORK/insert.sql'"
fi
if [ -z "$FROM" ] && have git; then
    record git git -C "$ROOT" log -p -n 300 --stat
fi
if [ -z "$FROM" ] && have perl; then
    record perl perl -e 'my %h; for my $i (1..200000) { $h{"k$i"} = [$i, "v" x ($i % 50)] } for my $i (1..200000) { delete $h{"k$i"} if $i % 3 } my @s = sort keys %h; print scalar(@s), "\n";'
fi
if [ -z "$FROM" ] && have gcc; then
    python3 - > "$WORK/generated.c" <<'PY'
for i in range(1500):
    print(f"static int f{i}(int x) {{ int a[{i % 17 + 1}] = {{0}}; for (int j = 0; j < {i % 13 + 2}; j++) a[j % {i % 17 + 1}] += x * j + {i}; return a[0] + f{max(i - 1, 0)}(x - 1); }}" if i else "static int f0(int x) { return x; }")
print("int main(void) { return f1499(3) & 1; }")
PY
    record gcc gcc -O2 -c -o "$WORK/generated.o" "$WORK/generated.c"
fi
if [ -z "$FROM" ] && have redis-server && have redis-benchmark; then
    PORT=$(( 20000 + RANDOM % 10000 ))
    mkdir -p "$WORK/redis"
    FREESPACE_TRACE="$WORK/redis/%p.trace" LD_PRELOAD="$SO" redis-server --port "$PORT" --save "" --appendonly no --dir "$WORK" > /dev/null 2>&1 &
    SERVER=$!
    for _ in $(seq 50); do redis-cli -p "$PORT" ping > /dev/null 2>&1 && break; sleep 0.1; done
    redis-benchmark -p "$PORT" -q -n 20000 -r 10000 -d 100 -t set,get,lpush,lpop,sadd > /dev/null 2>&1 || true
    redis-cli -p "$PORT" shutdown nosave > /dev/null 2>&1 || kill "$SERVER"
    wait "$SERVER" 2> /dev/null || true
    biggest=$(ls -S "$WORK/redis"/*.trace 2> /dev/null | head -1 || true)
    if [ -n "$biggest" ]; then
        mv "$biggest" "$WORK/redis.trace"
        echo "recorded redis: $(( ($(stat -c %s "$WORK/redis.trace") - 16) / 32 )) calls" >&2
    fi
fi

if [ -n "$KEEP" ]; then mkdir -p "$KEEP" && cp "$WORK"/*.trace "$KEEP"/; fi
cargo run --release -q -p freespace-bench --bin replay -- \
    --skip-unknown --budget "$BUDGET" --out docs "$WORK"/*.trace

{
    echo
    echo "## What recording costs"
    echo
    echo "CPU time of the same programs under the shim, untraced and traced"
    echo "(\`crates/malloc/bench/trace-overhead.sh 3\`, median of 3 runs each, $(nproc) cores):"
    echo
    crates/malloc/bench/trace-overhead.sh 3
} >> docs/fragmentation.md
