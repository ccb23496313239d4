//! Mixed-size churn and heap efficiency: freespace-buddy next to
//! buddy_system_allocator, same workload, same seed, same arena size, in one
//! run. Not a timed test: it prints a table.
//!
//! ```text
//! cargo bench -p freespace-buddy --bench churn
//! ```
//!
//! - **churn**: `OPS` operations on sizes 16 B–16 KiB (log-uniform), the
//!   number of live blocks pulled towards `LIVE`; ns per operation of this
//!   thread's CPU time, median of `ROUNDS` rounds, and the speed ratio
//!   (buddy_system_allocator's time ÷ ours) of each round: median and
//!   min–max. The allocators take turns within a round, first one then the
//!   other first, so machine noise hits both.
//! - **efficiency**: allocate random sizes (same distribution) until the
//!   first failure in a 1 MiB arena, with and without frees mixed in;
//!   requested live bytes ÷ arena bytes, averaged over `TRIALS` seeds
//!   (talc's method). A last row runs buddy_system_allocator on the arena
//!   less the bytes of our metadata (bitmaps and zone header), which shows
//!   how much of the efficiency gap that metadata is.

use freespace_testkit::Rng;
use std::alloc::Layout;
use std::hint::black_box;
use std::ptr::NonNull;

use freespace_buddy::Buddy;
use freespace_core::alloc::Allocator;
use freespace_source::Arena;

const OPS: usize = 1_000_000;
/// `CHURN_OPS`/`CHURN_ROUNDS` override the defaults (e.g. for callgrind).
fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
const LIVE: usize = 1000;
const ROUNDS: usize = 11;
const CHURN_ARENA: usize = 32 << 20;
const EFF_ARENA: usize = 1 << 20;
const TRIALS: u64 = 50;

/// 16 B ..= 16 KiB, log-uniform.
fn size(rng: &mut Rng) -> usize {
    let r = rng.next();
    let log = 4.0 + (r >> 11) as f64 / (1u64 << 53) as f64 * 10.0;
    (log.exp2() as usize).clamp(16, 16 * 1024)
}

/// The one interface both heaps are driven through.
trait Heap {
    fn alloc(&mut self, l: Layout) -> Option<NonNull<u8>>;
    /// # Safety
    /// `p` is live with `l`.
    unsafe fn free(&mut self, p: NonNull<u8>, l: Layout);
}

impl<const MIN: usize, const ORDERS: usize> Heap for Buddy<Arena, MIN, ORDERS> {
    #[inline(never)]
    fn alloc(&mut self, l: Layout) -> Option<NonNull<u8>> {
        self.allocate(l).ok().map(|b| b.cast())
    }
    #[inline(never)]
    unsafe fn free(&mut self, p: NonNull<u8>, l: Layout) {
        // SAFETY: caller contract.
        unsafe { self.deallocate(p, l) }
    }
}

impl Heap for buddy_system_allocator::Heap<32> {
    #[inline(never)]
    fn alloc(&mut self, l: Layout) -> Option<NonNull<u8>> {
        buddy_system_allocator::Heap::alloc(self, l).ok()
    }
    #[inline(never)]
    unsafe fn free(&mut self, p: NonNull<u8>, l: Layout) {
        // SAFETY: caller contract.
        unsafe { self.dealloc(p, l) }
    }
}

/// A page-aligned, pre-touched buffer of `len` bytes.
struct Memory {
    buf: Vec<u8>,
    off: usize,
    len: usize,
}

impl Memory {
    fn new(len: usize) -> Self {
        let mut buf = vec![0u8; len + 4096];
        let off = buf.as_ptr().align_offset(4096);
        buf.iter_mut().for_each(|b| *b = 1);
        Memory { buf, off, len }
    }

    fn ptr(&mut self) -> *mut u8 {
        self.buf[self.off..].as_mut_ptr()
    }

    fn buddy<const MIN: usize, const ORDERS: usize>(&mut self) -> Buddy<Arena, MIN, ORDERS> {
        // SAFETY: the buffer outlives the heap and is only used through it.
        Buddy::new(unsafe { Arena::from_raw_parts(self.ptr(), self.len) })
    }

    fn bsa(&mut self) -> buddy_system_allocator::Heap<32> {
        self.bsa_less(0)
    }

    /// buddy_system_allocator on the buffer less its last `less` bytes.
    fn bsa_less(&mut self, less: usize) -> buddy_system_allocator::Heap<32> {
        let mut h = buddy_system_allocator::Heap::<32>::new();
        // SAFETY: the buffer outlives the heap and is only used through it.
        unsafe { h.init(self.ptr() as usize, self.len - less) };
        h
    }
}

/// CPU time of this thread in nanoseconds: time spent descheduled on a
/// shared machine does not count.
fn cpu_ns() -> u128 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid out-pointer; the clock id is a constant Linux
    // and the BSDs support.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    t.tv_sec as u128 * 1_000_000_000 + t.tv_nsec as u128
}

/// One step of the churn trace, generated before timing so the timed loop
/// is the allocator's work (plus the trace walk both heaps share).
#[derive(Clone, Copy)]
enum Step {
    Alloc(Layout),
    Free(usize),
}

/// `OPS` steps; the live count is pulled towards `LIVE`.
fn trace(seed: u64, ops: usize) -> Vec<Step> {
    let mut rng = Rng::new(seed);
    let mut live = 0usize;
    (0..ops)
        .map(|_| {
            if rng.below(2 * LIVE) >= live {
                live += 1;
                Step::Alloc(Layout::from_size_align(size(&mut rng), 8).unwrap())
            } else {
                live -= 1;
                Step::Free(rng.below(live + 1))
            }
        })
        .collect()
}

/// Runs `steps`; returns ns/op.
fn churn<H: Heap>(heap: &mut H, steps: &[Step]) -> f64 {
    let mut live: Vec<(NonNull<u8>, Layout)> = Vec::with_capacity(4 * LIVE);
    let start = cpu_ns();
    for &step in steps {
        match step {
            Step::Alloc(l) => {
                let p = heap.alloc(l).expect("churn arena too small");
                // SAFETY: fresh block of at least one byte.
                unsafe { p.as_ptr().write(1) };
                live.push((p, l));
            }
            Step::Free(i) => {
                let (p, l) = live.swap_remove(i);
                // SAFETY: live with `l`.
                unsafe { heap.free(black_box(p), l) };
            }
        }
    }
    let ns = (cpu_ns() - start) as f64 / steps.len() as f64;
    for (p, l) in live {
        // SAFETY: live with `l`.
        unsafe { heap.free(p, l) };
    }
    ns
}

/// Allocates until the first failure (`free_every`: also free a random
/// live block every that many steps); live requested bytes ÷ arena bytes.
fn efficiency<H: Heap>(heap: &mut H, seed: u64, free_every: usize) -> f64 {
    let mut rng = Rng::new(seed);
    let mut live: Vec<(NonNull<u8>, Layout)> = Vec::new();
    let mut bytes = 0usize;
    for step in 1.. {
        if free_every != 0 && step % free_every == 0 && !live.is_empty() {
            let (p, l) = live.swap_remove(rng.below(live.len()));
            bytes -= l.size();
            // SAFETY: live with `l`.
            unsafe { heap.free(p, l) };
            continue;
        }
        let l = Layout::from_size_align(size(&mut rng), 8).unwrap();
        match heap.alloc(l) {
            Some(p) => {
                bytes += l.size();
                live.push((p, l));
            }
            None => break,
        }
    }
    let eff = bytes as f64 / EFF_ARENA as f64;
    for (p, l) in live {
        // SAFETY: live with `l`.
        unsafe { heap.free(p, l) };
    }
    eff
}

fn main() {
    let mut mem = Memory::new(CHURN_ARENA);
    let ops = env_or("CHURN_OPS", OPS);
    let rounds = env_or("CHURN_ROUNDS", ROUNDS);
    let steps = trace(0x9e37_79b9_7f4a_7c15, ops);
    let (mut ours, mut theirs, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let run_ours = |mem: &mut Memory| {
            let mut b = mem.buddy::<16, 28>();
            let t = churn(&mut b, &steps);
            assert!(b.check().is_ok());
            t
        };
        let run_theirs = |mem: &mut Memory| churn(&mut mem.bsa(), &steps);
        let (t, u) = if round % 2 == 0 {
            let t = run_ours(&mut mem);
            (t, run_theirs(&mut mem))
        } else {
            let u = run_theirs(&mut mem);
            (run_ours(&mut mem), u)
        };
        eprintln!(
            "round {round}: buddy {t:.1} ns/op, buddy_system_allocator {u:.1} ns/op, ratio {:.2}",
            u / t
        );
        ours.push(t);
        theirs.push(u);
        ratios.push(u / t);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        (v[v.len() / 2], v[0], v[v.len() - 1])
    };
    let (ours, _, _) = median(&mut ours);
    let (theirs, _, _) = median(&mut theirs);
    let (ratio, ratio_min, ratio_max) = median(&mut ratios);

    let trials = env_or("CHURN_TRIALS", TRIALS as usize) as u64;
    let mut eff = [[0.0f64; 4]; 2];
    let mut small = Memory::new(EFF_ARENA);
    // Our in-arena metadata (zone header and bitmaps) for this arena.
    let meta = {
        let b = small.buddy::<16, 28>();
        let p = b.allocate(Layout::new::<u8>()).unwrap();
        let meta = freespace_core::HeapSummary::of(&b).meta_bytes;
        // SAFETY: `p` is live with this layout.
        unsafe { b.deallocate(p.cast(), Layout::new::<u8>()) };
        meta
    };
    for (i, free_every) in [0usize, 3].into_iter().enumerate() {
        for seed in 1..=trials {
            let mut b = small.buddy::<16, 28>();
            eff[i][0] += efficiency(&mut b, seed, free_every) / trials as f64;
            drop(b);
            let mut h = small.bsa();
            eff[i][1] += efficiency(&mut h, seed, free_every) / trials as f64;
            let mut b = small.buddy::<32, 27>();
            eff[i][2] += efficiency(&mut b, seed, free_every) / trials as f64;
            drop(b);
            let mut h = small.bsa_less(meta);
            eff[i][3] += efficiency(&mut h, seed, free_every) / trials as f64;
        }
    }

    println!("mixed-size churn: {ops} ops, sizes 16 B..16 KiB log-uniform, ~{LIVE} live, median of {rounds} rounds");
    println!("| allocator | ns/op | speed vs buddy_system_allocator (min–max) | efficiency (fill) | efficiency (fill + frees) |");
    println!("|---|---:|---:|---:|---:|");
    println!(
        "| freespace-buddy | {ours:.1} | {ratio:.2}x ({ratio_min:.2}–{ratio_max:.2}) | {:.1} % | {:.1} % |",
        eff[0][0] * 100.0,
        eff[1][0] * 100.0
    );
    println!(
        "| buddy_system_allocator 0.13 | {theirs:.1} | 1.00x | {:.1} % | {:.1} % |",
        eff[0][1] * 100.0,
        eff[1][1] * 100.0
    );
    println!(
        "| freespace-buddy, MIN = 32 | | | {:.1} % | {:.1} % |",
        eff[0][2] * 100.0,
        eff[1][2] * 100.0
    );
    println!(
        "| buddy_system_allocator, arena less our {meta} B of metadata | | | {:.1} % | {:.1} % |",
        eff[0][3] * 100.0,
        eff[1][3] * 100.0
    );
}
