//! Heap maps of two heaps after the same churn: the best-fit free-list heap
//! and the binary buddy heap, each over a 64 KiB `Arena`, each behind a
//! `Stats` layer.
//!
//! ```text
//! cargo run -p freespace-stats --example heapmap [-- OUT_DIR]
//! ```
//!
//! Prints, for each heap, the `Stats` table, the `Fragmentation` report and
//! an ASCII map, and writes `OUT_DIR/heapmap-best-fit.svg` and
//! `OUT_DIR/heapmap-buddy.svg` (`OUT_DIR` defaults to the workspace's
//! `docs/`). docs/stats.md shows the output.
//!
//! The workload: 3000 steps of churn, each allocating (60%) a block of
//! 16 B..2 KiB, log-uniform, or freeing (40%) a random live block, which
//! fills the heap until allocations start to fail; then a random half of
//! the live blocks is freed. The maps show the heap at that point; then
//! everything is freed and the counts must balance.

use freespace_testkit::Rng;
use std::mem::MaybeUninit;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;

use freespace_best_fit::BestFitHeap;
use freespace_buddy::Buddy;
use freespace_core::alloc::{Allocator, Layout};
use freespace_core::Inspect;
use freespace_source::Arena;
use freespace_stats::{AsciiMap, Fragmentation, Stats, SvgMap, ASCII_LEGEND};

const ARENA: usize = 64 * 1024;
const STEPS: usize = 3000;

/// An arena aligned to its size, so the buddy heap cuts it the same way on
/// every run (its blocks are aligned to their size in absolute addresses).
fn arena() -> Arena {
    let layout = std::alloc::Layout::from_size_align(ARENA, ARENA).expect("a power of two");
    // SAFETY: `layout` has a non-zero size.
    let ptr = unsafe { std::alloc::alloc(layout) }.cast::<MaybeUninit<u8>>();
    assert!(!ptr.is_null(), "out of memory");
    // SAFETY: `ptr` is a fresh allocation of `ARENA` bytes, never freed, so
    // the slice may live for the rest of the program and is ours alone.
    let memory: &'static mut [MaybeUninit<u8>] =
        unsafe { std::slice::from_raw_parts_mut(ptr, ARENA) };
    Arena::new(memory)
}

/// Runs the churn on `heap` and returns the blocks still live.
fn churn<H: Allocator>(heap: &Stats<H>) -> Vec<(NonNull<u8>, Layout)> {
    let mut rng = Rng::new(0x05EE_D0FC_4A5E);
    let mut live: Vec<(NonNull<u8>, Layout)> = Vec::new();
    for _ in 0..STEPS {
        if live.is_empty() || rng.next() % 10 < 6 {
            let exp = 4.0 + (rng.next() % 10_000) as f64 / 10_000.0 * 7.0; // 2^4 .. 2^11
            let size = 2f64.powf(exp) as usize;
            let layout = Layout::from_size_align(size, 8).expect("small sizes");
            if let Ok(block) = heap.allocate(layout) {
                live.push((block.cast(), layout));
            }
        } else {
            let i = rng.below(live.len());
            let (p, layout) = live.swap_remove(i);
            // SAFETY: `p` was allocated by `heap` with `layout`, freed once.
            unsafe { heap.deallocate(p, layout) };
        }
    }
    live
}

/// Frees a random half of `live` (the same half on every heap).
fn free_half<H: Allocator>(
    heap: &Stats<H>,
    live: Vec<(NonNull<u8>, Layout)>,
) -> Vec<(NonNull<u8>, Layout)> {
    let mut rng = Rng::new(0x004A_1F0F_1175);
    let mut kept = Vec::new();
    for (p, layout) in live {
        if rng.next() % 2 == 0 {
            // SAFETY: `p` was allocated by `heap` with `layout`, freed once.
            unsafe { heap.deallocate(p, layout) };
        } else {
            kept.push((p, layout));
        }
    }
    kept
}

fn show<H: Allocator + Inspect>(name: &str, file: &str, heap: &Stats<H>, out: &Path) {
    let live = churn(heap);
    let full = Fragmentation::of(heap);
    println!("== {name}\n");
    println!(
        "-- after {STEPS} steps of churn ({} live blocks):\n",
        live.len()
    );
    println!("{full}");
    let live = free_half(heap, live);
    let s = heap.snapshot();
    let f = Fragmentation::of(heap);
    println!(
        "-- after freeing a random half ({} live blocks):\n",
        live.len()
    );
    println!("{s}");
    println!("{f}");
    println!(
        "internal fragmentation: {} B in used blocks beyond the {} B requested\n",
        f.internal_bytes(s.live_bytes),
        s.live_bytes
    );
    println!("{ASCII_LEGEND}; one character = 64 B");
    print!("{}", AsciiMap::new(64, 64).display(heap));
    println!();

    let mut svg = String::new();
    let title = format!(
        "{name}: churn until full, then a random half freed ({} live blocks)",
        live.len()
    );
    SvgMap::fitted(heap, 64)
        .title(&title)
        .render(heap, &mut svg)
        .expect("writing to a String");
    let path = out.join(file);
    std::fs::write(&path, svg).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    println!("wrote {}\n", path.display());

    for (p, layout) in live {
        // SAFETY: as in `churn`.
        unsafe { heap.deallocate(p, layout) };
    }
    let s = heap.snapshot();
    assert_eq!((s.live_blocks, s.live_bytes), (0, 0));
    assert_eq!(s.allocations, s.frees);
    heap.check().expect("Stats invariants");
}

fn main() {
    let out = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs")));
    std::fs::create_dir_all(&out).expect("the output directory");

    let best_fit = Stats::new(BestFitHeap::new(arena()));
    show(
        "BestFitHeap<Arena> (64 KiB)",
        "heapmap-best-fit.svg",
        &best_fit,
        &out,
    );
    best_fit.inner().check().expect("best-fit invariants");

    let buddy: Stats<Buddy<Arena>> = Stats::new(Buddy::new(arena()));
    show("Buddy<Arena> (64 KiB)", "heapmap-buddy.svg", &buddy, &out);
    buddy.inner().check().expect("buddy invariants");
}
