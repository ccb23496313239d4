//! `cargo xtask demo`: the slab → buddy → sbrk stack on a mixed workload,
//! with a per-layer table of what each layer holds; then the best-fit
//! free-list heap over `Arena` and over `Sbrk`, step by step with a heap map.
//!
//! This file is the `demo` *example* of the xtask package (see
//! `xtask/Cargo.toml`), not a module of the xtask binary: it needs the
//! allocator crates, which are dev-dependencies, so the task runner itself
//! still builds while they are broken. `cargo xtask demo` runs
//! `cargo run --package xtask --example demo`.
//!
//! The workload, the same on every heap:
//!
//! 1. allocate 300 blocks of 8..=512 bytes (alignments 8..=64), each filled
//!    with its own byte pattern;
//! 2. free every other one;
//! 3. allocate 100 more in the holes (or wherever the heap puts them);
//! 4. grow a `Vec` through the heap by pushing to it;
//! 5. check every surviving pattern, free everything.
//!
//! The stack part runs `Slab<Buddy<Sbrk>>` on 3000 blocks of 16 B – 16 KiB
//! (log-uniform), frees a random half, allocates 1500 more, and prints for
//! each layer its live blocks, free memory, slabs partial/full/empty, and
//! the buddy's blocks per order and heap map.
//!
//! "Fragmentation" is `1 - largest free block / total free bytes`
//! (`HeapSummary::fragmentation`): 0 when all free memory is one block,
//! near 1 when it is scattered in small pieces. It measures the free
//! memory's shape, not waste, so it can be well above 0 with nothing live
//! (the demo says why when that happens).

use std::cell::Cell;
use std::mem::MaybeUninit;
use std::ptr::NonNull;

use freespace_core::alloc::{Allocator, Layout};
use freespace_core::{BlockState, HeapSummary, Inspect, Source, Violation};
use freespace_source::{Arena, Sbrk};
use freespace_stats::{AsciiMap, ASCII_LEGEND};
use freespace_testkit::Rng;

/// The heap the demo runs: the free-list heap with the best-fit policy,
/// which splits chunks on allocation and coalesces them on free.
type Heap<S> = freespace_best_fit::BestFitHeap<S>;
const HEAP_NAME: &str =
    "freespace_best_fit::BestFitHeap (free list; best fit, split on allocate, coalesce on free)";

fn heap<S: Source>(source: S) -> Heap<S> {
    Heap::new(source)
}

const ARENA_BYTES: usize = 256 * 1024;
const FIRST_ROUND: usize = 300;
const SECOND_ROUND: usize = 100;
const MAP_WIDTH: usize = 64;

/// What the demo means by fragmentation, printed before the figures.
const FRAGMENTATION: &str = "fragmentation = 1 - largest free block / total free bytes \
(0: all free memory in one block; near 1: scattered in small pieces)";

fn main() {
    println!("{FRAGMENTATION}");
    println!();
    stack_demo();
    println!();
    println!("freespace demo: one free-list heap, step by step");
    println!("heap: {HEAP_NAME}");
    println!("map:  the heap's address span, {MAP_WIDTH} cells: {ASCII_LEGEND}");

    let memory: &'static mut [MaybeUninit<u8>] =
        Box::leak(vec![MaybeUninit::uninit(); ARENA_BYTES].into_boxed_slice());
    let arena = Counted::new(Arena::new(memory));
    let arena_heap = heap(&arena);
    workload(&Subject {
        name: &format!("Arena ({} KiB, fixed)", ARENA_BYTES / 1024),
        heap: &arena_heap,
        source: &arena,
        check: &|| arena_heap.check(),
    });

    let sbrk = Counted::new(Sbrk::with_limit(4 << 20));
    let sbrk_heap = heap(&sbrk);
    workload(&Subject {
        name: "Sbrk (program break, limit 4 MiB)",
        heap: &sbrk_heap,
        source: &sbrk,
        check: &|| sbrk_heap.check(),
    });
}

/// The stack of the README: slabs for small objects, a binary buddy for
/// everything else, memory from the program break.
type Stack = freespace::Slab<freespace::Buddy<Counted<Sbrk>>>;

fn stack_demo() {
    const BLOCKS: usize = 3000;
    println!("freespace demo: the slab -> buddy -> sbrk stack, Slab<Buddy<Sbrk>>");
    println!("buddy map: the buddy's address span, {MAP_WIDTH} cells: {ASCII_LEGEND}");
    let heap: Stack = freespace::Slab::new(freespace::Buddy::new(Counted::new(Sbrk::new())));
    let mut rng = Rng::new(0xD15C_0B0F_F1CE_5EED);
    let mut blocks = Vec::new();
    let refused = allocate_mixed(&heap, &mut rng, BLOCKS, &mut blocks);
    stack_table(
        &format!(
            "1. {} blocks of 16 B..16 KiB ({refused} refused)",
            blocks.len()
        ),
        &heap,
        &blocks,
    );

    // Free a random half.
    let mut kept = Vec::new();
    for block in blocks {
        if rng.next().is_multiple_of(2) {
            verify(&block);
            // SAFETY: allocated by `heap` with this layout, freed once.
            unsafe { heap.deallocate(block.ptr, block.layout) };
        } else {
            kept.push(block);
        }
    }
    let mut blocks = kept;
    stack_table(
        &format!("2. freed a random half, {} live", blocks.len()),
        &heap,
        &blocks,
    );

    let refused = allocate_mixed(&heap, &mut rng, BLOCKS / 2, &mut blocks);
    stack_table(
        &format!(
            "3. {} more ({refused} refused), {} live",
            BLOCKS / 2,
            blocks.len()
        ),
        &heap,
        &blocks,
    );

    for block in blocks.drain(..) {
        verify(&block);
        // SAFETY: allocated by `heap` with this layout, freed once.
        unsafe { heap.deallocate(block.ptr, block.layout) };
    }
    let reaped = heap.reap();
    stack_table(
        &format!("4. freed everything; reap() returned {reaped} empty slab(s) to the buddy"),
        &heap,
        &blocks,
    );
    let buddy = HeapSummary::of(heap.parent());
    if buddy.fragmentation() > 0.0 {
        println!(
            "   Why fragmentation is {:.2} with nothing live: the buddy's {} KiB from sbrk is not \
             a power of two, so it is cut\n   \
             into aligned power-of-two blocks (the free row above), and a block only ever merges \
             with its buddy.\n   \
             All {} KiB are free; the largest block is {} KiB, so only a request above that \
             would need more from sbrk.",
            buddy.fragmentation(),
            (buddy.free_bytes + buddy.used_bytes + buddy.meta_bytes) / 1024,
            buddy.free_bytes / 1024,
            buddy.largest_free / 1024,
        );
    }
}

/// Allocates `count` blocks of 16 B..16 KiB (log-uniform, align 8), filled.
fn allocate_mixed<H: Allocator>(
    heap: &H,
    rng: &mut Rng,
    count: usize,
    blocks: &mut Vec<Block>,
) -> usize {
    let mut refused = 0;
    for _ in 0..count {
        let exp = 4.0 + (rng.next() % 10_000) as f64 / 10_000.0 * 10.0; // 2^4 .. 2^14
        let size = 2f64.powf(exp) as usize;
        let layout = Layout::from_size_align(size, 8).expect("small sizes");
        let Ok(region) = heap.allocate(layout) else {
            refused += 1;
            continue;
        };
        let fill = (blocks.len() % 251) as u8 + 1;
        // SAFETY: the heap just gave us at least `size` bytes at `region`.
        unsafe { region.cast::<u8>().as_ptr().write_bytes(fill, size) };
        blocks.push(Block {
            ptr: region.cast(),
            layout,
            fill,
        });
    }
    refused
}

/// The per-layer table: what the slab layer, the buddy and the source hold.
fn stack_table(step: &str, heap: &Stack, blocks: &[Block]) {
    heap.check()
        .unwrap_or_else(|v| panic!("slab invariant after \"{step}\": {v}"));
    heap.parent()
        .check()
        .unwrap_or_else(|v| panic!("buddy invariant after \"{step}\": {v}"));
    let live: usize = blocks.iter().map(|b| b.layout.size()).sum();
    let slab = HeapSummary::of(heap);
    let buddy = HeapSummary::of(heap.parent());
    let (partial, full, empty) = heap.slab_counts();
    let source = heap.parent().source();
    println!();
    println!(
        "{step}: the program holds {} blocks, {} KiB",
        blocks.len(),
        live / 1024
    );
    println!("   layer   live blocks   live KiB   free KiB   meta KiB  detail");
    // The buddy's live blocks are the program's large blocks plus the
    // slab layer's slabs: the slab layer allocates its slabs from it.
    println!(
        "   slab    {:>11} {:>10} {:>10} {:>10}  slabs: {partial} partial, {full} full, {empty} empty",
        slab.used_blocks,
        slab.used_bytes / 1024,
        slab.free_bytes / 1024,
        slab.meta_bytes / 1024,
    );
    println!(
        "   buddy   {:>11} {:>10} {:>10} {:>10}  largest free {} KiB, fragmentation {:.2}",
        buddy.used_blocks,
        buddy.used_bytes / 1024,
        buddy.free_bytes / 1024,
        buddy.meta_bytes / 1024,
        buddy.largest_free / 1024,
        buddy.fragmentation(),
    );
    println!(
        "   sbrk    {:>11} {:>10} {:>10} {:>10}  {} region(s) from the program break",
        "-",
        source.bytes.get() / 1024,
        "-",
        "-",
        source.regions.get(),
    );
    // The buddy's blocks per order (block size): used / free.
    let mut orders = std::collections::BTreeMap::<usize, (usize, usize)>::new();
    heap.parent().inspect(&mut |b| {
        let e = orders.entry(b.len).or_default();
        match b.state {
            BlockState::Used => e.0 += 1,
            BlockState::Free => e.1 += 1,
            BlockState::Meta => {}
        }
    });
    let row: Vec<String> = orders
        .iter()
        .filter(|(len, (u, f))| len.is_power_of_two() && u + f > 0)
        .map(|(len, (u, f))| format!("{}:{u}/{f}", human(*len)))
        .collect();
    println!(
        "   buddy blocks per order (size:used/free): {}",
        row.join(" ")
    );
    if partial + full + empty > 0 {
        println!(
            "   (the buddy's live blocks include the slab layer's {} slabs: they are buddy blocks too)",
            partial + full + empty
        );
    }
    let map = AsciiMap::fitted(heap.parent(), MAP_WIDTH)
        .display(heap.parent())
        .to_string();
    println!("   buddy map [{}]", map.trim_end_matches('\n'));
}

/// `16B`, `4K`, `1M`.
fn human(len: usize) -> String {
    match len {
        l if l >= 1 << 20 => format!("{}M", l >> 20),
        l if l >= 1 << 10 => format!("{}K", l >> 10),
        l => format!("{l}B"),
    }
}

/// A heap under the workload, with its source and its invariant check.
struct Subject<'a, H, S> {
    name: &'a str,
    heap: &'a H,
    source: &'a Counted<S>,
    check: &'a dyn Fn() -> Result<(), Violation>,
}

/// A [`Source`] that counts what it hands out, so the report can say how
/// much memory the heap asked for (a heap's own walk may not cover regions
/// it abandoned).
struct Counted<S> {
    inner: S,
    regions: Cell<usize>,
    bytes: Cell<usize>,
}

impl<S> Counted<S> {
    fn new(inner: S) -> Self {
        Counted {
            inner,
            regions: Cell::new(0),
            bytes: Cell::new(0),
        }
    }
}

// SAFETY: every region comes unchanged from `inner`, which upholds CORE-S1–S4;
// counting cannot panic (wrapping adds).
unsafe impl<S: Source> Source for Counted<S> {
    fn acquire(&self, min_len: usize) -> Option<NonNull<[u8]>> {
        let region = self.inner.acquire(min_len)?;
        self.regions.set(self.regions.get().wrapping_add(1));
        self.bytes.set(self.bytes.get().wrapping_add(region.len()));
        Some(region)
    }

    unsafe fn release(&self, region: NonNull<[u8]>) -> bool {
        // SAFETY: the caller upholds `release`'s contract, and `region` came
        // from `inner` through `acquire` above.
        let taken = unsafe { self.inner.release(region) };
        if taken {
            self.regions.set(self.regions.get().wrapping_sub(1));
            self.bytes.set(self.bytes.get().wrapping_sub(region.len()));
        }
        taken
    }
}

/// One block the workload holds: where, how it was asked for, its fill byte.
struct Block {
    ptr: NonNull<u8>,
    layout: Layout,
    fill: u8,
}

/// A size in 8..=512 and an alignment in {8, 16, 32, 64}.
fn random_layout(rng: &mut Rng) -> Layout {
    let size = 8 + (rng.next() % 505) as usize;
    let align = 8 << (rng.next() % 4);
    Layout::from_size_align(size, align).expect("small sizes and power-of-two alignments")
}

fn workload<H: Allocator + Inspect, S>(subject: &Subject<'_, H, S>) {
    let heap = subject.heap;
    println!();
    println!("== heap over {}", subject.name);
    let mut rng = Rng::new(0x5EED_F4EE_5BAC_E5ED);
    let mut blocks: Vec<Block> = Vec::new();

    let refused = allocate(heap, &mut rng, FIRST_ROUND, &mut blocks);
    let step = format!(
        "1. allocated {} blocks of 8..=512 B, aligned to 8, 16, 32 or 64 ({refused} refused)",
        blocks.len()
    );
    report(&step, subject, &blocks);
    let first: Vec<String> = blocks
        .iter()
        .take(4)
        .map(|b| format!("{:#x} ({} B)", b.ptr.as_ptr() as usize, b.layout.size()))
        .collect();
    println!("   first blocks: {} ...", first.join(", "));

    // Free every other block: the heap now has holes between live blocks.
    let mut kept = Vec::new();
    for (i, block) in blocks.into_iter().enumerate() {
        if i % 2 == 0 {
            verify(&block);
            // SAFETY: `block` was allocated by `heap` with this layout and is freed once.
            unsafe { heap.deallocate(block.ptr, block.layout) };
        } else {
            kept.push(block);
        }
    }
    let mut blocks = kept;
    report(
        &format!("2. freed every other block, {} live", blocks.len()),
        subject,
        &blocks,
    );

    let before = blocks.len();
    let refused = allocate(heap, &mut rng, SECOND_ROUND, &mut blocks);
    let step = format!(
        "3. allocated {} more into the holes ({refused} refused)",
        blocks.len() - before
    );
    report(&step, subject, &blocks);

    let mut v = allocator_api2::vec::Vec::new_in(heap);
    let mut grows = 0;
    for i in 0..1000u32 {
        if v.len() == v.capacity() {
            if v.try_reserve(1).is_err() {
                break;
            }
            grows += 1;
        }
        v.push(i);
    }
    let sum: u64 = v.iter().map(|&x| u64::from(x)).sum();
    println!(
        "4. a Vec<u32> in the heap: {} pushes, {grows} reallocations, sum {sum}",
        v.len()
    );
    drop(v);

    for block in blocks.drain(..) {
        verify(&block);
        // SAFETY: as above: allocated by `heap` with this layout, freed once.
        unsafe { heap.deallocate(block.ptr, block.layout) };
    }
    report(
        "5. every pattern intact; freed everything",
        subject,
        &blocks,
    );
}

/// Allocates `count` blocks of random layouts, fills each with its own
/// byte, and returns how many the heap refused.
fn allocate<H: Allocator>(heap: &H, rng: &mut Rng, count: usize, blocks: &mut Vec<Block>) -> usize {
    let mut refused = 0;
    for _ in 0..count {
        let layout = random_layout(rng);
        let Ok(region) = heap.allocate(layout) else {
            refused += 1;
            continue;
        };
        let ptr = region.cast::<u8>();
        assert_eq!(
            ptr.as_ptr() as usize % layout.align(),
            0,
            "misaligned block from the heap"
        );
        let fill = (blocks.len() % 251) as u8 + 1;
        // SAFETY: the heap just gave us `region`, at least `layout.size()` bytes.
        unsafe { ptr.as_ptr().write_bytes(fill, layout.size()) };
        blocks.push(Block { ptr, layout, fill });
    }
    refused
}

/// Panics if `block`'s contents were overwritten: two blocks overlapped.
fn verify(block: &Block) {
    // SAFETY: `block` is live and `layout.size()` bytes long, all written.
    let bytes = unsafe { std::slice::from_raw_parts(block.ptr.as_ptr(), block.layout.size()) };
    assert!(
        bytes.iter().all(|&b| b == block.fill),
        "block at {:p} was overwritten",
        block.ptr
    );
}

/// One step's lines: live blocks, what the heap says about itself (and
/// its invariant check), and its map.
fn report<H: Inspect, S>(step: &str, subject: &Subject<'_, H, S>, blocks: &[Block]) {
    let live: usize = blocks.iter().map(|b| b.layout.size()).sum();
    let s = HeapSummary::of(subject.heap);
    let check = match (subject.check)() {
        Ok(()) => "ok".to_string(),
        Err(v) => panic!("the heap's invariant check failed after \"{step}\": {v}"),
    };
    println!("{step}");
    println!(
        "   live {:>3} blocks {:>6} B | heap: used {:>6} B in {:>3}, free {:>6} B in {:>3} (largest {:>6}), meta {:>4} B",
        blocks.len(),
        live,
        s.used_bytes,
        s.used_blocks,
        s.free_bytes,
        s.free_blocks,
        s.largest_free,
        s.meta_bytes,
    );
    println!(
        "   fragmentation {:.2} | check() {check} | source gave {} region(s), {} B",
        s.fragmentation(),
        subject.source.regions.get(),
        subject.source.bytes.get(),
    );
    // The one-line map from freespace-stats (see `ASCII_LEGEND`).
    let map = AsciiMap::fitted(subject.heap, MAP_WIDTH)
        .display(subject.heap)
        .to_string();
    println!("   [{}]", map.trim_end_matches('\n'));
}
