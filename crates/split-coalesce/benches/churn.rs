//! Churn benchmark: the four fit policies next to linked_list_allocator,
//! on the same deterministic workloads over the same pre-touched arena, in
//! one run. Prints ns/op and ratios, then heap efficiency (requested bytes
//! live ÷ arena bytes at the first failed allocation; talc's method).
//!
//! `cargo bench -p freespace-split-coalesce --bench churn`

use freespace_testkit::Rng;
use std::hint::black_box;
use std::ptr::NonNull;
use std::time::Instant;

use freespace_best_fit::BestFit;
use freespace_core::alloc::{Allocator, Layout};
use freespace_first_fit::FirstFit;
use freespace_freelist::Fit;
use freespace_next_fit::NextFit;
use freespace_source::Arena;
use freespace_split_coalesce::FreeListHeap;
use freespace_worst_fit::WorstFit;

const ARENA: usize = 32 << 20;
const LIVE: usize = 1000;
const OPS: usize = 200_000;
const EFFICIENCY_ARENA: usize = 1 << 20;
const TRIALS: u64 = 5;

#[derive(Clone, Copy)]
enum Sizes {
    Small,
    Mixed,
}

impl Sizes {
    fn layout(self, rng: &mut Rng) -> Layout {
        let size = match self {
            Sizes::Small => rng.range(8, 256),
            // Mostly small, a tail up to 16 KiB (log-uniform-ish).
            Sizes::Mixed => {
                let shift = rng.range(4, 14);
                rng.range(1 << (shift - 1), 1 << shift)
            }
        };
        Layout::from_size_align(size, 8).unwrap()
    }
    fn name(self) -> &'static str {
        match self {
            Sizes::Small => "small 8-256 B",
            Sizes::Mixed => "mixed 16 B-16 KiB",
        }
    }
}

/// What the benchmark needs of an allocator.
trait Heap {
    fn alloc(&mut self, l: Layout) -> Option<NonNull<u8>>;
    /// # Safety
    /// `p` is live with layout `l`.
    unsafe fn free(&mut self, p: NonNull<u8>, l: Layout);
}

struct Ours<F: Fit>(FreeListHeap<F, Arena>);
impl<F: Fit> Heap for Ours<F> {
    fn alloc(&mut self, l: Layout) -> Option<NonNull<u8>> {
        self.0.allocate(l).ok().map(|b| b.cast())
    }
    unsafe fn free(&mut self, p: NonNull<u8>, l: Layout) {
        // SAFETY: caller contract.
        unsafe { self.0.deallocate(p, l) }
    }
}

struct Lla(linked_list_allocator::Heap);
impl Heap for Lla {
    fn alloc(&mut self, l: Layout) -> Option<NonNull<u8>> {
        self.0.allocate_first_fit(l).ok()
    }
    unsafe fn free(&mut self, p: NonNull<u8>, l: Layout) {
        // SAFETY: caller contract.
        unsafe { self.0.deallocate(p, l) }
    }
}

/// One buffer reused by every heap in turn (each heap is dropped, with all
/// its blocks gone, before the next is made), touched once up front.
struct Memory(Vec<u128>);
impl Memory {
    fn new(len: usize) -> Self {
        Memory(vec![1u128; len / 16])
    }
    fn ptr(&mut self) -> *mut u8 {
        self.0.as_mut_ptr().cast()
    }
    fn ours<F: Fit>(&mut self, len: usize) -> Ours<F> {
        // SAFETY: the buffer outlives the heap (dropped before the next is
        // made), and nothing else uses it meanwhile.
        Ours(FreeListHeap::new(unsafe {
            Arena::from_raw_parts(self.ptr(), len)
        }))
    }
    fn lla(&mut self, len: usize) -> Lla {
        // SAFETY: as above.
        Lla(unsafe { linked_list_allocator::Heap::new(self.ptr(), len) })
    }
}

/// Fill `LIVE` blocks, then `OPS` times free a random one and allocate a
/// new random size in its place. Returns ns per (alloc + free) pair.
fn churn<H: Heap>(mut h: H, sizes: Sizes) -> f64 {
    let mut rng = Rng::new(0x9E37_79B9_7F4A_7C15);
    let mut live: Vec<(NonNull<u8>, Layout)> = (0..LIVE)
        .map(|_| {
            let l = sizes.layout(&mut rng);
            (h.alloc(l).expect("arena big enough"), l)
        })
        .collect();
    let start = Instant::now();
    for _ in 0..OPS {
        let i = rng.range(0, LIVE - 1);
        let (p, l) = live[i];
        // SAFETY: `p` is live with `l`.
        unsafe { h.free(p, l) };
        let l = sizes.layout(&mut rng);
        let p = h.alloc(l).expect("arena big enough");
        // Touch the block like a program would.
        // SAFETY: `p` is a fresh block of at least `l.size()` bytes.
        unsafe { p.as_ptr().write(black_box(1)) };
        live[i] = (p, l);
    }
    let ns = start.elapsed().as_nanos() as f64 / OPS as f64;
    for (p, l) in live {
        // SAFETY: live blocks.
        unsafe { h.free(p, l) };
    }
    ns
}

/// Allocate random sizes until the first failure (with random frees mixed
/// in, one for every three allocations, so the heap is fragmented as in
/// use); live requested bytes ÷ arena bytes at that point.
fn efficiency<H: Heap>(mut h: H, sizes: Sizes, seed: u64) -> f64 {
    let mut rng = Rng::new(seed);
    let mut live: Vec<(NonNull<u8>, Layout)> = Vec::new();
    let mut bytes = 0usize;
    loop {
        if !live.is_empty() && rng.range(0, 3) == 0 {
            let i = rng.range(0, live.len() - 1);
            let (p, l) = live.swap_remove(i);
            bytes -= l.size();
            // SAFETY: live block.
            unsafe { h.free(p, l) };
            continue;
        }
        let l = sizes.layout(&mut rng);
        match h.alloc(l) {
            Some(p) => {
                bytes += l.size();
                live.push((p, l));
            }
            None => break,
        }
    }
    for (p, l) in live {
        // SAFETY: live blocks.
        unsafe { h.free(p, l) };
    }
    bytes as f64 / EFFICIENCY_ARENA as f64
}

fn main() {
    let mut mem = Memory::new(ARENA);
    println!(
        "freespace churn: {LIVE} live blocks, {OPS} free+alloc pairs, {} MiB pre-touched arena\n",
        ARENA >> 20
    );
    for sizes in [Sizes::Small, Sizes::Mixed] {
        println!("## churn, {}", sizes.name());
        println!("| allocator | ns/op (free+alloc) | × linked_list_allocator |");
        println!("|---|---:|---:|");
        let lla = churn(mem.lla(ARENA), sizes);
        let rows = [
            (
                "FreeListHeap<FirstFit>",
                churn(mem.ours::<FirstFit>(ARENA), sizes),
            ),
            (
                "FreeListHeap<NextFit>",
                churn(mem.ours::<NextFit>(ARENA), sizes),
            ),
            (
                "FreeListHeap<BestFit>",
                churn(mem.ours::<BestFit>(ARENA), sizes),
            ),
            (
                "FreeListHeap<WorstFit>",
                churn(mem.ours::<WorstFit>(ARENA), sizes),
            ),
            ("linked_list_allocator 0.10", lla),
        ];
        for (name, ns) in rows {
            println!("| {name} | {ns:.1} | {:.2} |", ns / lla);
        }
        println!();
    }
    for sizes in [Sizes::Small, Sizes::Mixed] {
        println!(
            "## heap efficiency, {} ({} KiB arena, mean of {TRIALS} seeds)",
            sizes.name(),
            EFFICIENCY_ARENA >> 10
        );
        println!("| allocator | live ÷ arena at first failure |");
        println!("|---|---:|");
        let mut mean = |f: &mut dyn FnMut(&mut Memory, u64) -> f64| {
            (1..=TRIALS).map(|s| f(&mut mem, s * 7919)).sum::<f64>() / TRIALS as f64
        };
        let rows = [
            (
                "FreeListHeap<FirstFit>",
                mean(&mut |m, s| efficiency(m.ours::<FirstFit>(EFFICIENCY_ARENA), sizes, s)),
            ),
            (
                "FreeListHeap<NextFit>",
                mean(&mut |m, s| efficiency(m.ours::<NextFit>(EFFICIENCY_ARENA), sizes, s)),
            ),
            (
                "FreeListHeap<BestFit>",
                mean(&mut |m, s| efficiency(m.ours::<BestFit>(EFFICIENCY_ARENA), sizes, s)),
            ),
            (
                "FreeListHeap<WorstFit>",
                mean(&mut |m, s| efficiency(m.ours::<WorstFit>(EFFICIENCY_ARENA), sizes, s)),
            ),
            (
                "linked_list_allocator 0.10",
                mean(&mut |m, s| efficiency(m.lla(EFFICIENCY_ARENA), sizes, s)),
            ),
        ];
        for (name, e) in rows {
            println!("| {name} | {:.1} % |", e * 100.0);
        }
        println!();
    }
}
