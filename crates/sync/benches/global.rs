//! A stack as the program's `#[global_allocator]`, threads doing
//! `Vec`/`String`/`HashMap` churn: the lock of `Locked` when every
//! allocation of a real Rust program takes it, with more threads than cores.
//!
//! `cargo bench -p freespace-sync --bench global` (not a timed test: the
//! numbers go to the notes and to docs/concurrency.md). The stack is
//! `Locked<Slab<Buddy<Sbrk>>, L>` with `L` the default lock
//! ([`Futex`](freespace_sync::Futex) on Linux) or the pure
//! [`Spin`](freespace_sync::Spin) lock; glibc (`System`) is the anchor.
//!
//! A process has one global allocator, so the bench runs itself once per
//! (allocator, thread count): the parent starts a child with
//! `FREESPACE_GLOBAL_ALLOC` set to `glibc`, `futex`, `spin` or `magazines`
//! (the futex-locked stack with per-thread magazines in front, as the
//! facade's `Threaded`) and
//! `FREESPACE_GLOBAL_THREADS` to 1, 2 or 8; the child's global allocator
//! reads the first of these when the program first allocates (through
//! `libc::getenv`, which does not allocate) and sends every request there.
//! Each child prints the wall time of its workload (threads started
//! together at a barrier); rounds alternate the allocators, and the table
//! shows the median of each and its ratio to glibc's in the same run. A
//! child that runs longer than `TIMEOUT` seconds (default 60) is killed
//! and shown as `>TIMEOUT s` — the spin lock with 8 threads on 2 cores is
//! the case that can. `OPS` (per thread, default 200 000) and `RUNS`
//! (default 3) override the size of the run.
//!
//! Each op replaces one of 500 live slots per thread with a fresh
//! `Vec<u64>` (1–256 elements, pushed one by one, so it grows through
//! `realloc`), a formatted `String`, or a `HashMap<u32, String>` of 1–16
//! entries: the allocation pattern of ordinary Rust code.
#![allow(missing_docs)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use freespace_buddy::Buddy;
use freespace_slab::Slab;
use freespace_source::Sbrk;
use freespace_sync::{Depot, Futex, Locked, Magazines, Spin};
use freespace_testkit::Rng;

type Stack<L> = Locked<Slab<Buddy<Sbrk>>, L>;

static FUTEX: Stack<Futex> = Locked::new(Slab::new(Buddy::new(Sbrk::new())));
static SPIN: Stack<Spin> = Locked::new(Slab::new(Buddy::new(Sbrk::new())));
/// The same stack with per-thread magazines in front (the facade's
/// `Threaded`): most requests never take the lock.
static DEPOT: Depot<Stack<Futex>> = Depot::new(Locked::new(Slab::new(Buddy::new(Sbrk::new()))));
static CACHED: Magazines<'static, Stack<Futex>> = Magazines::new(&DEPOT);

const ALLOCATORS: [&str; 4] = ["glibc", "futex", "spin", "magazines"];
const UNSET: u8 = u8::MAX;
/// Index into [`ALLOCATORS`], read once from the environment.
static CHOSEN: AtomicU8 = AtomicU8::new(UNSET);

/// The allocator this process was started for (glibc when the variable is
/// unset, as in the parent).
fn chosen() -> u8 {
    let c = CHOSEN.load(Ordering::Relaxed);
    if c != UNSET {
        return c;
    }
    // SAFETY: the name is a NUL-terminated literal; getenv returns null or
    // a NUL-terminated string that lives as long as the environment, which
    // this program does not modify. It does not allocate, so calling it
    // from inside the global allocator cannot recurse.
    let value = unsafe { libc::getenv(c"FREESPACE_GLOBAL_ALLOC".as_ptr()) };
    let c = if value.is_null() {
        0
    } else {
        // SAFETY: non-null, NUL-terminated (see above).
        let value = unsafe { core::ffi::CStr::from_ptr(value) }.to_bytes();
        ALLOCATORS
            .iter()
            .position(|a| a.as_bytes() == value)
            .unwrap_or(0) as u8
    };
    // Every thread computes the same value from the same environment.
    CHOSEN.store(c, Ordering::Relaxed);
    c
}

struct Switch;

// SAFETY: every call goes to the one allocator `chosen()` names, which is
// fixed for the life of the process (the environment is read once and never
// changes), so a block is always freed and resized by the allocator that
// gave it; each of the three is a `GlobalAlloc`.
unsafe impl GlobalAlloc for Switch {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's contract.
        unsafe {
            match chosen() {
                1 => FUTEX.alloc(layout),
                2 => SPIN.alloc(layout),
                3 => CACHED.alloc(layout),
                _ => System.alloc(layout),
            }
        }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded with the caller's contract (same allocator).
        unsafe {
            match chosen() {
                1 => FUTEX.dealloc(ptr, layout),
                2 => SPIN.dealloc(ptr, layout),
                3 => CACHED.dealloc(ptr, layout),
                _ => System.dealloc(ptr, layout),
            }
        }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded with the caller's contract (same allocator).
        unsafe {
            match chosen() {
                1 => FUTEX.realloc(ptr, layout, new_size),
                2 => SPIN.realloc(ptr, layout, new_size),
                3 => CACHED.realloc(ptr, layout, new_size),
                _ => System.realloc(ptr, layout, new_size),
            }
        }
    }
}

#[global_allocator]
static GLOBAL: Switch = Switch;

enum Item {
    List(Vec<u64>),
    Text(String),
    Map(HashMap<u32, String>),
}

impl Item {
    /// Reads the item back, so the work cannot be optimised away.
    fn weight(&self) -> usize {
        match self {
            Item::List(v) => v.iter().sum::<u64>() as usize,
            Item::Text(s) => s.len(),
            Item::Map(m) => m.values().map(String::len).sum(),
        }
    }
}

/// One thread's share: `ops` replacements among 500 live slots.
fn churn(seed: u64, ops: usize) -> usize {
    let mut rng = Rng::new(seed);
    let mut live: Vec<Option<Item>> = (0..500).map(|_| None).collect();
    let mut bytes = 0;
    for op in 0..ops {
        let item = match rng.below(3) {
            0 => {
                let mut v = Vec::new();
                for i in 0..rng.range(1, 256) {
                    v.push((op + i) as u64);
                }
                bytes += v.len() * 8;
                Item::List(v)
            }
            1 => {
                let s = format!("op {op} of thread {seed}: {}", rng.below(1 << 20));
                bytes += s.len();
                Item::Text(s)
            }
            _ => {
                let mut m = HashMap::new();
                for k in 0..rng.range(1, 64) {
                    m.insert(k as u32, k.to_string());
                }
                bytes += m.len();
                Item::Map(m)
            }
        };
        let slot = rng.below(live.len());
        if let Some(old) = live[slot].replace(item) {
            bytes = bytes.wrapping_add(old.weight());
        }
    }
    bytes
}

/// The child: run the workload on `threads` threads, print seconds.
fn child(threads: usize, ops: usize) {
    let barrier = Arc::new(Barrier::new(threads + 1));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                barrier.wait();
                churn(t as u64 + 1, ops)
            })
        })
        .collect();
    barrier.wait();
    let start = Instant::now();
    let total: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
    let secs = start.elapsed().as_secs_f64();
    assert!(total > 0);
    println!("{secs:.6}");
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Seconds one child took, or `None` if it ran past `timeout`.
fn run_child(alloc: &str, threads: usize, ops: usize, timeout: Duration) -> Option<f64> {
    let exe = std::env::current_exe().expect("the bench's own path");
    let mut child = Command::new(exe)
        .env("FREESPACE_GLOBAL_ALLOC", alloc)
        .env("FREESPACE_GLOBAL_THREADS", threads.to_string())
        .env("OPS", ops.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the child");
    let start = Instant::now();
    loop {
        match child.try_wait().expect("wait for the child") {
            Some(status) => {
                assert!(status.success(), "{alloc} with {threads} threads: {status}");
                break;
            }
            None if start.elapsed() > timeout => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    let out = child.wait_with_output().expect("the child's output");
    let text = String::from_utf8_lossy(&out.stdout);
    Some(text.trim().parse().expect("the child prints its seconds"))
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let ops = env_or("OPS", 200_000) as usize;
    if let Ok(threads) = std::env::var("FREESPACE_GLOBAL_THREADS") {
        child(threads.parse().expect("a thread count"), ops);
        return;
    }
    // `cargo bench` passes `--bench`; any other argument filters nothing.
    let runs = env_or("RUNS", 3).max(1) as usize;
    let timeout = Duration::from_secs(env_or("TIMEOUT", 60));
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "Locked<Slab<Buddy<Sbrk>>, L> as #[global_allocator]: Vec/String/HashMap churn,\n\
         {ops} ops per thread, 500 live slots each; {cores} cores; median of {runs} rounds\n\
         (wall seconds; ÷ glibc in the same run; a run past {}s is killed)\n",
        timeout.as_secs()
    );
    let thread_counts = [1usize, 2, 8];
    // times[threads][alloc] = seconds of each round (None: timed out).
    let mut times = vec![vec![Vec::new(); ALLOCATORS.len()]; thread_counts.len()];
    for round in 0..runs {
        for (ti, &threads) in thread_counts.iter().enumerate() {
            // Alternate the order each round so no allocator always runs
            // on a warmer (or more loaded) machine.
            let mut order: Vec<usize> = (0..ALLOCATORS.len()).collect();
            if round % 2 == 1 {
                order.reverse();
            }
            for ai in order {
                times[ti][ai].push(run_child(ALLOCATORS[ai], threads, ops, timeout));
            }
        }
        eprintln!("round {} of {runs} done", round + 1);
    }
    println!(
        "| threads | glibc (s) | Locked<…, Futex> (s) | ÷ glibc | Locked<…, Spin> (s) | ÷ glibc \
         | Magazines<Locked<…, Futex>> (s) | ÷ glibc |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (ti, &threads) in thread_counts.iter().enumerate() {
        let mut cells = Vec::new();
        let mut glibc = None;
        for (ai, _) in ALLOCATORS.iter().enumerate() {
            let rounds = &times[ti][ai];
            // A median over rounds where a timeout counts as the longest.
            let done: Vec<f64> = rounds.iter().flatten().copied().collect();
            let t = if done.len() * 2 > rounds.len() {
                let mut all: Vec<f64> = rounds.iter().map(|r| r.unwrap_or(f64::INFINITY)).collect();
                Some(median(&mut all))
            } else {
                None
            };
            let shown = t.map_or(format!(">{}", timeout.as_secs()), |t| format!("{t:.2}"));
            if ai == 0 {
                glibc = t;
                cells.push(shown);
            } else {
                let ratio = match (t, glibc) {
                    (Some(t), Some(g)) => format!("{:.2}", t / g),
                    (None, Some(g)) => format!(">{:.1}", timeout.as_secs_f64() / g),
                    _ => "–".to_string(),
                };
                cells.push(shown);
                cells.push(ratio);
            }
        }
        println!("| {threads} | {} |", cells.join(" | "));
    }
}
