//! Thread scaling and producer/consumer throughput of the thread-cached
//! stack, next to glibc (`System`) and mimalloc, in one run.
//!
//! `cargo bench -p freespace-sync --bench threads` (not a timed test: the
//! numbers go to the notes). Workloads:
//!
//! - **churn**: each thread keeps 64 live blocks of 8–256 bytes and
//!   replaces a random one per op; throughput with 2 threads ÷ with 1 (each
//!   thread doing the same number of ops; 2.0 is perfect scaling on 2 cores);
//! - **producer/consumer**: one thread allocates 16–256-byte blocks and
//!   sends them in batches of 64 to another that frees them.
//!
//! Allocators are called through `GlobalAlloc`, so all of them pay the same
//! interface cost.
#![allow(missing_docs)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use freespace_buddy::Buddy;
use freespace_core::alloc::Global;
use freespace_source::FromAllocator;
use freespace_sync::{Depot, Locked, Magazines};
use mimalloc::MiMalloc;

type Heap = Locked<Buddy<FromAllocator<Global>>>;

static LOCKED: Heap = Locked::new(Buddy::new(FromAllocator::new(Global)));
static DEPOT: Depot<Heap> = Depot::new(Locked::new(Buddy::new(FromAllocator::new(Global))));
static CACHED: Magazines<'static, Heap> = Magazines::new(&DEPOT);
static MIMALLOC: MiMalloc = MiMalloc;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn layout(rng: &mut Rng, lo: usize, hi: usize) -> Layout {
    Layout::from_size_align(lo + (rng.next() as usize % (hi - lo + 1)), 8).unwrap()
}

/// One thread's churn: `ops` frees + allocations over 64 live blocks.
fn churn<A: GlobalAlloc>(a: &A, seed: u64, ops: usize) {
    let mut rng = Rng(seed);
    let mut live: Vec<(*mut u8, Layout)> = (0..64)
        .map(|_| {
            let l = layout(&mut rng, 8, 256);
            // SAFETY: non-zero size.
            (unsafe { a.alloc(l) }, l)
        })
        .collect();
    for _ in 0..ops {
        let i = rng.next() as usize % live.len();
        let (p, l) = live[i];
        // SAFETY: `p` is live with `l`; the new block has a non-zero size.
        unsafe {
            a.dealloc(p, l);
            let l = layout(&mut rng, 8, 256);
            let q = a.alloc(l);
            assert!(!q.is_null());
            q.write(1);
            live[i] = (black_box(q), l);
        }
    }
    for (p, l) in live {
        // SAFETY: live with `l`.
        unsafe { a.dealloc(p, l) };
    }
}

/// Ops per second of `threads` threads each doing `ops` churn ops.
fn churn_rate<A: GlobalAlloc + Sync>(a: &A, threads: usize, ops: usize) -> f64 {
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            s.spawn(move || churn(a, 0x9E37_79B9 + t as u64, ops));
        }
    });
    (threads * ops) as f64 / start.elapsed().as_secs_f64()
}

struct Batch(Vec<(*mut u8, Layout)>);
// SAFETY: the blocks are owned by whoever holds the batch.
unsafe impl Send for Batch {}

/// Seconds for one thread to allocate `n` blocks that another frees.
fn producer_consumer<A: GlobalAlloc + Sync>(a: &A, n: usize) -> Duration {
    let start = Instant::now();
    let (tx, rx) = mpsc::sync_channel::<Batch>(16);
    std::thread::scope(|s| {
        s.spawn(move || {
            let mut rng = Rng(7);
            let mut batch = Vec::with_capacity(64);
            for _ in 0..n {
                let l = layout(&mut rng, 16, 256);
                // SAFETY: non-zero size.
                let p = unsafe { a.alloc(l) };
                assert!(!p.is_null());
                // SAFETY: fresh block of at least 16 bytes.
                unsafe { p.write(1) };
                batch.push((p, l));
                if batch.len() == 64 {
                    tx.send(Batch(std::mem::replace(&mut batch, Vec::with_capacity(64))))
                        .unwrap();
                }
            }
            tx.send(Batch(batch)).unwrap();
        });
        s.spawn(move || {
            for Batch(b) in rx {
                for (p, l) in b {
                    // SAFETY: allocated by the producer with `l`, freed once.
                    unsafe { a.dealloc(p, l) };
                }
            }
        });
    });
    start.elapsed()
}

fn best_of<T: PartialOrd + Copy>(
    runs: usize,
    mut f: impl FnMut() -> T,
    better: fn(T, T) -> bool,
) -> T {
    let mut best = f();
    for _ in 1..runs {
        let x = f();
        if better(x, best) {
            best = x;
        }
    }
    best
}

fn main() {
    let ops = 2_000_000;
    let runs = 5;
    println!("churn: 64 live blocks of 8-256 B per thread, {ops} ops per thread, best of {runs}");
    println!(
        "{:<34} {:>14} {:>14} {:>8}",
        "allocator", "1 thread op/s", "2 threads op/s", "2t/1t"
    );
    fn row<A: GlobalAlloc + Sync>(name: &str, a: &A, ops: usize, runs: usize) {
        let one = best_of(runs, || churn_rate(a, 1, ops), |x, y| x > y);
        let two = best_of(runs, || churn_rate(a, 2, ops), |x, y| x > y);
        println!(
            "{name:<34} {:>14.3e} {:>14.3e} {:>8.2}",
            one,
            two,
            two / one
        );
    }
    row("Magazines<Locked<Buddy>>", &CACHED, ops, runs);
    row("Locked<Buddy> (no thread cache)", &LOCKED, ops, runs);
    row("glibc (System)", &System, ops, runs);
    row("mimalloc", &MIMALLOC, ops, runs);

    let n = 4_000_000;
    println!();
    println!("producer/consumer: {n} blocks of 16-256 B, batches of 64, best of {runs}");
    println!(
        "{:<34} {:>10} {:>12} {:>10}",
        "allocator", "seconds", "blocks/s", "glibc/this"
    );
    fn pc<A: GlobalAlloc + Sync>(a: &A, n: usize, runs: usize) -> Duration {
        best_of(runs, || producer_consumer(a, n), |x, y| x < y)
    }
    let times = [
        ("Magazines<Locked<Buddy>>", pc(&CACHED, n, runs)),
        ("Locked<Buddy> (no thread cache)", pc(&LOCKED, n, runs)),
        ("glibc (System)", pc(&System, n, runs)),
        ("mimalloc", pc(&MIMALLOC, n, runs)),
    ];
    let glibc = times[2].1.as_secs_f64();
    for (name, t) in times {
        let t = t.as_secs_f64();
        println!(
            "{name:<34} {t:>10.3} {:>12.3e} {:>10.2}",
            n as f64 / t,
            glibc / t
        );
    }
    DEPOT.check().unwrap();
}
