#!/usr/bin/env bash
# Measures glibc's malloc against freespace-malloc (LD_PRELOAD) on the same
# workloads, in one run, alternating the two so that machine noise falls on
# both: wall time (hyperfine, or a loop of runs), peak RSS (/usr/bin/time -v)
# and redis-benchmark throughput. Writes the generated page
# docs/malloc-measured.md (linked from docs/malloc.md), and prints it.
#
#   crates/malloc/measure.sh [RUNS] [OUT]  (default 5 runs, OUT docs/malloc-measured.md;
#                                           OUT - only prints)
#
# Needs: the shim as shipped, `--profile shim` (built here), python3, sqlite3,
# redis-server + redis-benchmark; perl, gcc and git, hyperfine and
# /usr/bin/time if present (a program that is missing gets a row saying so).
set -euo pipefail
cd "$(dirname "$0")/../.."
RUNS="${1:-5}"
OUT="${2:-docs/malloc-measured.md}"
TARGET="${CARGO_TARGET_DIR:-target}"
cargo build --profile shim -q -p freespace-malloc-so
SO="$(cd "$TARGET/shim" && pwd)/libfreespace_malloc.so"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

# The workloads of tests/preload.rs (the Python and Perl ones are its
# files; the C file and the git session are made as it makes them).
cp crates/malloc-so/tests/workload.py "$WORK/workload.py"
cp crates/malloc-so/tests/workload.pl "$WORK/workload.pl"
# `c_source(400)`: 400 small functions calling one another.
{
    echo '#include <stdio.h>'
    for i in $(seq 0 399); do
        callee=$((i > 0 ? i - 1 : 0))
        echo "static int f$i(int x) { int a[16]; int s = 0;"
        echo "for (int j = 0; j < 16; j++) a[j] = x * $i + j;"
        echo "for (int j = 0; j < 16; j++) s += a[j] * (j ^ $((i % 13)));"
        echo "if (s % 3 == 0) return s / 7;"
        echo "return s + (x > 0 ? f$callee(x - 1) : 0); }"
    done
    echo 'int main(void) { long s = 0;'
    for i in $(seq 0 399); do echo "  s += f$i($((i % 5)));"; done
    echo '  printf("%ld\n", s);'
    echo '  return 0;'
    echo '}'
} > "$WORK/many.c"
# `git_session`: a repository of 200 files (made once, copied in), two
# commits, a log, an aggressive gc (pack-objects runs threads) and fsck,
# from scratch each run.
mkdir -p "$WORK/files"
for i in $(seq 0 199); do
    for j in $(seq 0 49); do echo "line $j of file $i"; done > "$WORK/files/f$i.txt"
done
cat > "$WORK/git.sh" << 'GIT'
set -e
dir="$1"
rm -rf "$dir" && mkdir -p "$dir" && cp -r "$2" "$dir/src" && cd "$dir"
export HOME="$dir" GIT_CONFIG_NOSYSTEM=1 GIT_AUTHOR_NAME=freespace GIT_COMMITTER_NAME=freespace \
    GIT_AUTHOR_EMAIL=malloc@freespace.invalid GIT_COMMITTER_EMAIL=malloc@freespace.invalid
git init -q .
git add .
git commit -q -m "free space, committed"
echo changed > src/f0.txt
git commit -q -a -m second
git log --oneline --stat > /dev/null
git gc --quiet --aggressive
git fsck --full > /dev/null 2>&1
GIT
{
    echo "PRAGMA journal_mode=WAL;"
    echo "CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT, v REAL);"
    echo "BEGIN;"
    for i in $(seq 1 100000); do echo "INSERT INTO t VALUES($i, 'name$i', $i.5);"; done
    echo "COMMIT;"
    echo "CREATE INDEX t_name ON t(name);"
    echo "SELECT count(*) FROM t WHERE name LIKE 'name9%';"
} > "$WORK/insert.sql"

PY=/usr/bin/python3
[ -x "$PY" ] || PY="$(command -v python3)"
PY_CMD="$PY $WORK/workload.py"
SQL_CMD="rm -f $WORK/db*; sqlite3 $WORK/db < $WORK/insert.sql > /dev/null"
PERL_CMD="perl $WORK/workload.pl"
GCC_CMD="gcc -O2 -c -o $WORK/many.o $WORK/many.c"
GIT_CMD="sh $WORK/git.sh $WORK/repo $WORK/files"

if command -v hyperfine > /dev/null; then
    HOW="hyperfine: mean of $RUNS runs after a warm-up, glibc's runs then the shim's"
else
    HOW="mean of $RUNS runs, glibc and the shim alternating (hyperfine is not installed)"
fi

# Mean wall seconds of `sh -c CMD`, with or without the shim, alternating.
time_pair() {
    local cmd="$1" g=0 f=0 t0 t1
    for _ in $(seq 1 "$RUNS"); do
        t0=$(date +%s.%N); sh -c "$cmd" > /dev/null; t1=$(date +%s.%N)
        g=$(echo "$g + $t1 - $t0" | bc -l)
        t0=$(date +%s.%N); LD_PRELOAD="$SO" sh -c "$cmd" > /dev/null; t1=$(date +%s.%N)
        f=$(echo "$f + $t1 - $t0" | bc -l)
    done
    printf '%.3f %.3f\n' "$(echo "$g / $RUNS" | bc -l)" "$(echo "$f / $RUNS" | bc -l)"
}

# Mean wall seconds via hyperfine when installed (it alternates nothing, but
# warms up and reports the mean of RUNS).
hyper_pair() {
    local cmd="$1"
    hyperfine --warmup 1 --runs "$RUNS" --export-json "$WORK/h.json" \
        --shell sh -- "$cmd" "LD_PRELOAD=$SO $cmd" > /dev/null 2>&1 || return 1
    "$PY" -c 'import json,sys; r=json.load(open(sys.argv[1]))["results"]; print("%.3f %.3f" % (r[0]["mean"], r[1]["mean"]))' "$WORK/h.json"
}

wall() {
    local name="$1" cmd="$2" pair
    if command -v hyperfine > /dev/null && pair=$(hyper_pair "$cmd"); then :; else pair=$(time_pair "$cmd"); fi
    read -r g f <<< "$pair"
    printf '| %s, wall time | %.3f s | %.3f s | %.2f |\n' "$name" "$g" "$f" "$(echo "$f / $g" | bc -l)"
}

# Peak RSS in MiB of `sh -c CMD` (the largest process of the command).
rss() {
    local cmd="$1" pre="${2:-}"
    env ${pre:+LD_PRELOAD=$pre} /usr/bin/time -v sh -c "$cmd" 2>&1 >/dev/null \
        | awk -F: '/Maximum resident set size/ { printf "%.1f", $2 / 1024 }'
}

peak() {
    local name="$1" cmd="$2" g f
    [ -x /usr/bin/time ] || { echo "| $name, peak RSS | (no /usr/bin/time) | | |"; return; }
    g=$(rss "$cmd"); f=$(rss "$cmd" "$SO")
    printf '| %s, peak RSS | %s MiB | %s MiB | %.2f |\n' "$name" "$g" "$f" "$(echo "$f / $g" | bc -l)"
}

# Wall time and peak RSS of NAME's workload, or a row saying that the
# program is missing (never a silent gap).
program() {
    local exe="$1" name="$2" cmd="$3"
    if command -v "$exe" > /dev/null; then
        wall "$name" "$cmd"
        peak "$name" "$cmd"
    else
        echo "| $name | ($exe is not installed) | | |"
    fi
}

report() {
echo "# freespace-malloc, measured"
echo
echo "*Generated by \`crates/malloc/measure.sh $RUNS\` on $(date -u +%Y-%m-%d), commit"
echo "$(git rev-parse --short HEAD 2> /dev/null || echo '?'), $(nproc) cores"
echo "($(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)), Linux $(uname -r),"
echo "load average $(cut -d' ' -f1-3 /proc/loadavg) at the start; do not edit the numbers"
echo "by hand — rerun the script.* What is measured and how to read it:"
echo "[malloc.md, What it costs](malloc.md#what-it-costs)."
echo
echo "This machine is shared with other builds: only ratios, and only the large"
echo "ones, mean anything; the wall times of the real programs vary from one run"
echo "of the script to the next, so compare a few runs before reading a small ratio."
echo
echo "Wall time: $HOW. Peak RSS: \`/usr/bin/time -v\`, one run each."
echo "The microbenchmark: $RUNS runs each, alternating."
echo
echo "| workload | glibc | freespace-malloc | ratio |"
echo "|---|---|---|---|"
wall "python3 workload" "$PY_CMD"
peak "python3 workload" "$PY_CMD"
wall "sqlite3, 100k inserts + index" "$SQL_CMD"
peak "sqlite3, 100k inserts + index" "$SQL_CMD"
program perl "perl workload (hashes, sorts, regexes)" "$PERL_CMD"
program gcc "gcc -O2 -c, 400 functions (cc1 and as)" "$GCC_CMD"
program git "git session: add 200 files, commits, log, gc --aggressive, fsck" "$GIT_CMD"

# malloc/free pairs, one and two threads.
if command -v cc > /dev/null; then
    cc -O2 -pthread -o "$WORK/micro" crates/malloc/bench/micro.c
    for threads in 1 2; do
        g=0; f=0
        for _ in $(seq 1 "$RUNS"); do
            g=$(echo "$g + $("$WORK/micro" "$threads")" | bc -l)
            f=$(echo "$f + $(LD_PRELOAD="$SO" "$WORK/micro" "$threads")" | bc -l)
        done
        printf '| malloc/free pair, 1-128 B, %s thread(s) (bench/micro.c), wall ns per pair | %.1f ns | %.1f ns | %.2f |\n' \
            "$threads" "$(echo "$g / $RUNS" | bc -l)" "$(echo "$f / $RUNS" | bc -l)" "$(echo "$f / $g" | bc -l)"
    done
fi

# redis: the server under each allocator in turn, the client the same.
# Debian links redis-server with jemalloc; preloading the C library itself
# puts glibc's malloc first in the symbol lookup, which gives the glibc row.
LIBC=$(ldd /bin/sh | awk '/libc.so/ { print $3 }')
if command -v redis-server > /dev/null && command -v redis-benchmark > /dev/null; then
    PORT=$((20000 + RANDOM % 20000))
    declare -A SET GET HWM
    WHO="jemalloc glibc freespace"
    for who in $WHO; do SET[$who]=0; GET[$who]=0; HWM[$who]=0; done
    for _ in $(seq 1 "$RUNS"); do
        for who in $WHO; do
            case $who in
                jemalloc) pre="" ;;
                glibc) pre="$LIBC" ;;
                freespace) pre="$SO" ;;
            esac
            env ${pre:+LD_PRELOAD=$pre} redis-server --port "$PORT" --bind 127.0.0.1 --save "" \
                --appendonly no --daemonize no --logfile "$WORK/redis.log" &
            pid=$!
            until redis-cli -p "$PORT" ping > /dev/null 2>&1; do sleep 0.05; done
            out=$(redis-benchmark -p "$PORT" -q -n 100000 -t set,get -r 100000 -d 100 2>/dev/null | tr '\r' '\n')
            s=$(echo "$out" | awk '/^SET:/ { print $2 }' | tail -1)
            g=$(echo "$out" | awk '/^GET:/ { print $2 }' | tail -1)
            hwm=$(awk '/VmHWM/ { print $2 }' "/proc/$pid/status")
            redis-cli -p "$PORT" shutdown nosave > /dev/null 2>&1 || true
            wait "$pid" || true
            SET[$who]=$(echo "${SET[$who]} + $s" | bc -l)
            GET[$who]=$(echo "${GET[$who]} + $g" | bc -l)
            [ "$hwm" -gt "${HWM[$who]}" ] && HWM[$who]=$hwm
        done
    done
    echo
    echo "redis-server (Debian's, linked with jemalloc), redis-benchmark -n 100000 -t set,get -r 100000 -d 100, mean of $RUNS runs:"
    echo
    echo "| redis-server | jemalloc (as shipped) | glibc | freespace-malloc | freespace / glibc |"
    echo "|---|---|---|---|---|"
    for op in SET GET; do
        declare -n T="$op"
        j=$(echo "${T[jemalloc]} / $RUNS" | bc -l); g=$(echo "${T[glibc]} / $RUNS" | bc -l)
        f=$(echo "${T[freespace]} / $RUNS" | bc -l)
        printf '| %s throughput | %.0f req/s | %.0f req/s | %.0f req/s | %.2f |\n' "$op" "$j" "$g" "$f" "$(echo "$f / $g" | bc -l)"
    done
    printf '| peak RSS (VmHWM) | %.1f MiB | %.1f MiB | %.1f MiB | %.2f |\n' \
        "$(echo "${HWM[jemalloc]} / 1024" | bc -l)" "$(echo "${HWM[glibc]} / 1024" | bc -l)" \
        "$(echo "${HWM[freespace]} / 1024" | bc -l)" "$(echo "${HWM[freespace]} / ${HWM[glibc]}" | bc -l)"
else
    echo
    echo "redis-server: not measured, \`redis-server\` or \`redis-benchmark\` is not installed (\`apt-get install redis-server\`)."
fi
}

if [ "$OUT" = - ]; then
    report
else
    report | tee "$OUT.tmp"
    mv "$OUT.tmp" "$OUT"
    echo "wrote $OUT" >&2
fi
