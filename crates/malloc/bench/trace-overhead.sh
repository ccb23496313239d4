#!/usr/bin/env bash
# What FREESPACE_TRACE costs: the same programs under the shim untraced and
# traced, alternating so that machine noise falls on both, CPU time
# (user + sys, from bash's `times` over the child) median of RUNS runs.
# Prints a markdown table (the budget is 1.5x the untraced run):
#
#   crates/malloc/bench/trace-overhead.sh [RUNS]        (RUNS default 5)
#
# Workloads: the Python program of tests/workload.py twice, with pymalloc
# (only blocks over 512 B reach malloc) and with PYTHONMALLOC=malloc (every
# object is a malloc call: the worst case for a tracer); sqlite3 inserting
# 100 000 rows. The trace goes to a file in a temporary directory.
set -euo pipefail
cd "$(dirname "$0")/../../.."
RUNS="${1:-5}"
. crates/malloc/bench/common.sh
PY=/usr/bin/python3
[ -x "$PY" ] || PY="$(command -v python3)"
cp crates/malloc-so/tests/workload.py "$WORK/workload.py"
{
    echo "CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT, v REAL);"
    echo "BEGIN;"
    for i in $(seq 1 100000); do echo "INSERT INTO t VALUES($i, 'name$i', $i.5);"; done
    echo "COMMIT;"
    echo "CREATE INDEX t_name ON t(name);"
} > "$WORK/insert.sql"

# CPU seconds (user + sys, the process and its children) of one run of the
# shell command "$1" (with the environment of this script plus "$2").
cpu() {
    env $2 python3 -c '
import resource, subprocess, sys
subprocess.run(["bash", "-c", sys.argv[1]], check=True, stdout=subprocess.DEVNULL)
r = resource.getrusage(resource.RUSAGE_CHILDREN)
print(f"{r.ru_utime + r.ru_stime:.3f}")' "$1"
}

export SO PY WORK
PY_CMD='LD_PRELOAD="$SO" "$PY" "$WORK/workload.py"'
PY_MALLOC_CMD='PYTHONMALLOC=malloc LD_PRELOAD="$SO" "$PY" "$WORK/workload.py"'
SQLITE_CMD='rm -f "$WORK/db"; LD_PRELOAD="$SO" sqlite3 "$WORK/db" < "$WORK/insert.sql"'

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

echo "| workload | untraced (s CPU) | traced (s CPU) | ratio | trace size |"
echo "|---|---|---|---|---|"
for w in py py_malloc sqlite; do
    if [ "$w" = sqlite ] && ! command -v sqlite3 > /dev/null; then continue; fi
    : > "$WORK/plain"; : > "$WORK/traced"
    for _ in $(seq "$RUNS"); do
        case $w in
            py) cmd=$PY_CMD;; py_malloc) cmd=$PY_MALLOC_CMD;; sqlite) cmd=$SQLITE_CMD;;
        esac
        cpu "$cmd" "" >> "$WORK/plain"
        cpu "$cmd" "FREESPACE_TRACE=$WORK/t.trace" >> "$WORK/traced"
    done
    p=$(median < "$WORK/plain"); t=$(median < "$WORK/traced")
    size=$(stat -c %s "$WORK/t.trace")
    case $w in
        py) name="python3 workload.py (pymalloc)";;
        py_malloc) name="python3 workload.py, PYTHONMALLOC=malloc";;
        sqlite) name="sqlite3, 100 000 inserts";;
    esac
    echo "| $name | $p | $t | $(python3 -c "print(f'{$t / $p:.2f}x')") | $((size / 32)) records |"
done
