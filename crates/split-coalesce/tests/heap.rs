//! The integration tests of the free-list heap, run for all four policies:
//! the testkit conformance suite and op interpreter, the seed's examples,
//! growth and exhaustion, and every corruption case (in a child process,
//! and through the checked API).

use core::cell::Cell;
use core::mem::MaybeUninit;
use core::ptr::NonNull;

use freespace_best_fit::{BestFit, BestFitScan};
use freespace_core::alloc::{Allocator, Layout};
use freespace_core::{BlockSize, BlockState, Corruption, HeapSummary, Inspect, Owns, Source};
use freespace_first_fit::{FirstFit, FirstFitScan};
use freespace_freelist::chunk::REGION_HEADER;
use freespace_freelist::{Fit, Scanned, HEADER};
use freespace_next_fit::{NextFit, NextFitScan};
use freespace_source::Arena;
use freespace_split_coalesce::testing::{
    arena_for, placed, policy_heap, units, POLICY_UNITS, UNIT,
};
use freespace_split_coalesce::FreeListHeap;
use freespace_testkit::calls::Logged;
use freespace_testkit::{assert_all_free, conformance, ops, Rng};
use freespace_worst_fit::{WorstFit, WorstFitScan};

// ----------------------------------------------------------------------
// sources
// ----------------------------------------------------------------------

fn arena(len: usize) -> Arena {
    Arena::new(leak(
        vec![MaybeUninit::uninit(); len + 15].into_boxed_slice(),
    ))
}

/// A pointer kept in a static so that deliberately leaked test memory stays
/// reachable (Miri's leak check ignores what a global can reach).
struct Kept(#[allow(dead_code)] *mut u8);
// SAFETY: the pointer is never used, only kept.
unsafe impl Send for Kept {}
static KEPT: std::sync::Mutex<Vec<Kept>> = std::sync::Mutex::new(Vec::new());

/// `Box::leak`, keeping the memory reachable for Miri's leak check.
fn leak<T: ?Sized>(b: Box<T>) -> &'static mut T {
    let r = Box::leak(b);
    KEPT.lock().unwrap().push(Kept((r as *mut T).cast()));
    r
}

/// A growable source over one leaked buffer, handed out in consecutive
/// pieces: with `gap == 0` every piece is contiguous with the last (so the
/// heap merges them, as over sbrk); with a gap, every piece is a new region.
/// Unlike `Sbrk` it runs under Miri, and all pieces share one provenance.
struct Pieces {
    base: NonNull<u8>,
    len: usize,
    used: Cell<usize>,
    gap: usize,
    acquires: Cell<usize>,
    /// Pieces from the top of the buffer down (as `mmap` places mappings),
    /// so that no new piece continues the one before it.
    top_down: bool,
}

/// `len` zeroed bytes aligned to 4096, freed when dropped, so two heaps
/// over two such buffers see the same addresses modulo every alignment the
/// op interpreter asks for.
struct PageAligned {
    ptr: NonNull<u8>,
    layout: std::alloc::Layout,
}

impl PageAligned {
    fn new(len: usize) -> Self {
        let layout = std::alloc::Layout::from_size_align(len, 4096).unwrap();
        // SAFETY: `layout` has a non-zero size.
        let ptr = NonNull::new(unsafe { std::alloc::alloc_zeroed(layout) }).unwrap();
        Self { ptr, layout }
    }
}

impl Drop for PageAligned {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout; the heaps over it
        // are gone (they borrow nothing, but are dropped before it).
        unsafe { std::alloc::dealloc(self.ptr.as_ptr(), self.layout) }
    }
}

impl Pieces {
    fn new(len: usize, gap: usize) -> Self {
        let buf: &'static mut [u128] = leak(vec![0u128; len / 16].into_boxed_slice());
        Self::over(NonNull::new(buf.as_mut_ptr().cast()).unwrap(), len, gap)
    }

    /// Over `len` bytes at `base` (16-aligned, outliving the source and its
    /// heap, used by nothing else).
    fn over(base: NonNull<u8>, len: usize, gap: usize) -> Self {
        Self {
            base,
            len: len / 16 * 16,
            used: Cell::new(0),
            gap,
            acquires: Cell::new(0),
            top_down: false,
        }
    }

    /// Pieces handed out from the top of `len` bytes down, `gap` bytes
    /// apart.
    fn top_down(len: usize, gap: usize) -> Self {
        Self {
            top_down: true,
            ..Self::new(len, gap)
        }
    }
}

// SAFETY: pieces are disjoint parts of a leaked buffer owned by the source
// (CORE-S1, CORE-S2), 16-aligned with 16-multiple lengths (CORE-S3), and nothing panics (CORE-S4).
unsafe impl Source for Pieces {
    fn acquire(&self, min_len: usize) -> Option<NonNull<[u8]>> {
        let want = min_len.checked_add(15)? / 16 * 16;
        let start = self.used.get();
        if want > self.len - start {
            return None;
        }
        self.used.set((start + want + self.gap).min(self.len));
        self.acquires.set(self.acquires.get() + 1);
        // Counted from the top, the piece is `len - start - want ..
        // len - start`.
        let offset = if self.top_down {
            self.len - start - want
        } else {
            start
        };
        // SAFETY: `offset + want <= len`: inside the buffer.
        let p = unsafe { self.base.add(offset) };
        Some(NonNull::slice_from_raw_parts(p, want))
    }
}

// ----------------------------------------------------------------------
// the suite, once per policy
// ----------------------------------------------------------------------

#[cfg(not(miri))]
const CASES: u64 = 2000;
#[cfg(miri)]
const CASES: u64 = 4;

#[cfg(not(miri))]
const ARENA: usize = 1 << 20;
#[cfg(miri)]
const ARENA: usize = 1 << 14;

/// Bytes behind a growable test source.
#[cfg(not(miri))]
const PIECES: usize = 1 << 22;
#[cfg(miri)]
const PIECES: usize = 1 << 20;

/// quickcheck's size: op sequences are up to four times this long.
#[cfg(not(miri))]
const GEN_SIZE: usize = 100;
#[cfg(miri)]
const GEN_SIZE: usize = 8;

fn conformance_bounded<F: Fit>() {
    let heap: FreeListHeap<F, _> = FreeListHeap::new(arena(ARENA));
    let check = || heap.check();
    let cfg = conformance::Config::default()
        .bounded()
        .max_block(ARENA / 8)
        .check(&check);
    conformance::run(&heap, &cfg);
    heap.check().unwrap();
    assert_all_free(&heap);
}

fn conformance_growing<F: Fit>(gap: usize) {
    let source = Pieces::new(PIECES, gap);
    let heap: FreeListHeap<F, _> = FreeListHeap::new(&source);
    let check = || heap.check();
    let cfg = conformance::Config::default()
        .max_block(ARENA / 8)
        .check(&check);
    conformance::run(&heap, &cfg);
    heap.check().unwrap();
    assert_all_free(&heap);
}

fn ops_prop<F: Fit>(bounded: bool) {
    fn over_arena<F: Fit>(o: ops::Ops) -> Result<(), String> {
        let heap: FreeListHeap<F, _> = FreeListHeap::new(arena(ARENA));
        ops::run(&heap, &o.0, &|| heap.check()).map(|_| ())?;
        check_all_free(&heap)
    }
    fn over_pieces<F: Fit>(o: ops::Ops) -> Result<(), String> {
        let source = Pieces::new(PIECES, 0);
        let heap: FreeListHeap<F, _> = FreeListHeap::new(&source);
        ops::run(&heap, &o.0, &|| heap.check()).map(|_| ())?;
        check_all_free(&heap)
    }
    let prop: fn(ops::Ops) -> Result<(), String> = if bounded {
        over_arena::<F>
    } else {
        over_pieces::<F>
    };
    quickcheck::QuickCheck::new()
        .tests(CASES)
        .max_tests(CASES * 10)
        .rng(quickcheck::Gen::new(GEN_SIZE))
        .quickcheck(prop);

    fn check_all_free<I: Inspect>(heap: &I) -> Result<(), String> {
        let s = HeapSummary::of(heap);
        if s.used_blocks != 0 || s.free_blocks != region_count(heap) {
            return Err(format!("after freeing everything: {s:?}"));
        }
        Ok(())
    }
}

/// The seed's worked example, in units of 32 bytes: a 30-unit heap with 10
/// units used in the middle is two free 10-unit chunks; freeing the middle
/// leaves one free 30-unit chunk.
fn worked_example<F: Fit>() {
    let heap: FreeListHeap<F, _> = FreeListHeap::new(arena(arena_for(30)));
    let a = heap.allocate(units(10)).unwrap().cast::<u8>();
    let b = heap.allocate(units(10)).unwrap().cast::<u8>();
    let c = heap.allocate(units(10)).unwrap().cast::<u8>();
    assert!(
        heap.allocate(units(1)).is_err(),
        "the heap is exactly 30 units"
    );
    // SAFETY: `a`, `c` and then `b` are live blocks of `units(10)`.
    unsafe {
        heap.deallocate(a, units(10));
        heap.deallocate(c, units(10));
        heap.check().unwrap();
        assert_eq!(free_chunks(&heap), vec![10 * UNIT, 10 * UNIT]);
        heap.deallocate(b, units(10));
    }
    heap.check().unwrap();
    assert_eq!(free_chunks(&heap), vec![30 * UNIT]);
}

fn free_chunks<I: Inspect>(heap: &I) -> Vec<usize> {
    let mut v = Vec::new();
    heap.inspect(&mut |b| {
        if b.state == BlockState::Free {
            v.push(b.len)
        }
    });
    v
}

/// Over-aligned blocks: the front padding is a free chunk or nothing, and
/// comes back when the block is freed (linked_list_allocator #66).
fn alignment_padding_is_recovered<F: Fit>() {
    let heap: FreeListHeap<F, _> = FreeListHeap::new(arena(1 << 16));
    let small = heap.allocate(units(1)).unwrap();
    let start = HeapSummary::of(&heap);
    let mut live = Vec::new();
    for (i, align) in [32usize, 64, 128, 256, 512, 1024, 2048, 4096]
        .into_iter()
        .enumerate()
    {
        let l = Layout::from_size_align(8 + i * 40, align).unwrap();
        let p = heap.allocate(l).unwrap();
        assert_eq!(p.cast::<u8>().as_ptr() as usize % align, 0);
        heap.check().unwrap();
        live.push((p, l));
    }
    for (p, l) in live.into_iter().rev() {
        // SAFETY: live blocks with their layouts.
        unsafe { heap.deallocate(p.cast(), l) };
        heap.check().unwrap();
    }
    let end = HeapSummary::of(&heap);
    assert_eq!(
        (end.free_bytes, end.free_blocks),
        (start.free_bytes, start.free_blocks)
    );
    // SAFETY: live block of `units(1)`.
    unsafe { heap.deallocate(small.cast(), units(1)) };
}

/// A fixed arena runs out with an `Err`, and smaller requests still work.
fn exhaustion<F: Fit>() {
    let heap: FreeListHeap<F, _> = FreeListHeap::new(arena(1 << 14));
    let big = Layout::from_size_align(1000, 8).unwrap();
    let mut live = Vec::new();
    while let Ok(p) = heap.allocate(big) {
        live.push((p, big));
    }
    assert!(!live.is_empty());
    let small = Layout::from_size_align(24, 8).unwrap();
    let mut smalls = 0;
    while let Ok(p) = heap.allocate(small) {
        live.push((p, small));
        smalls += 1;
    }
    assert!(
        smalls > 0,
        "a smaller request must still fit after a larger one failed"
    );
    heap.check().unwrap();
    assert!(heap
        .allocate(Layout::from_size_align(1 << 20, 8).unwrap())
        .is_err());
    for (p, l) in live {
        // SAFETY: live blocks with their layouts.
        unsafe { heap.deallocate(p.cast(), l) };
    }
    heap.check().unwrap();
    assert_eq!(free_chunks(&heap).len(), 1);
}

/// Growth through a contiguous source merges regions; through a gapped one
/// it links new regions. Either way everything comes back as one free chunk
/// per region.
fn growth<F: Fit>(gap: usize) {
    let source = Pieces::new(PIECES, gap);
    let heap: FreeListHeap<F, _> = FreeListHeap::new(&source);
    let l = Layout::from_size_align(20_000, 16).unwrap();
    let live: Vec<_> = (0..12).map(|_| heap.allocate(l).unwrap()).collect();
    heap.check().unwrap();
    assert!(source.acquires.get() >= 3, "the heap grew several times");
    let headers = region_count(&heap);
    if gap == 0 {
        assert_eq!(headers, 1, "contiguous regions merge into one");
    } else {
        assert_eq!(headers, source.acquires.get());
    }
    for p in &live {
        assert!(heap.owns(p.cast()));
        // SAFETY: live block.
        assert!(unsafe { heap.usable_size(p.cast()) } >= 20_000);
    }
    for p in live {
        // SAFETY: live block of layout `l`.
        unsafe { heap.deallocate(p.cast(), l) };
    }
    heap.check().unwrap();
    assert_eq!(free_chunks(&heap).len(), headers);
}

/// Many regions, none continuing another (handed out top down, a page
/// apart): every block is found in its region (owned, sized, freed in a
/// scrambled order with the heap checked along the way, the region index
/// with it), and a pointer into a gap between regions belongs to none.
fn growth_top_down<F: Fit>() {
    growth_top_down_apart::<F>(4096);
}

/// Pieces handed out top down `gap` bytes apart: with no gap each one
/// continues the region above it downwards, and the heap stays one region.
fn growth_top_down_apart<F: Fit>(gap: usize) {
    let source = Pieces::top_down(PIECES, gap);
    let heap: FreeListHeap<F, _> = FreeListHeap::new(&source);
    let mut rng = Rng::new(0x7090_d0e5);
    let mut live = Vec::new();
    loop {
        let l = Layout::from_size_align(rng.range(16, 30_000), 16).unwrap();
        match heap.allocate(l) {
            Ok(p) => live.push((p.cast::<u8>(), l)),
            Err(_) => break,
        }
    }
    heap.check().unwrap();
    let regions = region_count(&heap);
    let pieces = source.acquires.get();
    assert!(pieces >= 8, "the heap grew in many pieces, got {pieces}");
    if gap == 0 {
        assert_eq!(regions, 1, "each piece continues the region above it");
    } else {
        assert_eq!(regions, pieces, "no region continues another");
    }
    let mut headers = Vec::new();
    heap.inspect(&mut |b| {
        if b.state == BlockState::Meta && b.len == REGION_HEADER {
            headers.push(b.addr);
        }
    });
    for &h in headers.iter().filter(|_| gap > 0) {
        // The gap's middle, below the region: no region's.
        let gap = NonNull::new(core::ptr::without_provenance_mut::<u8>(h - 2048)).unwrap();
        assert!(!heap.owns(gap));
        // SAFETY: a pointer outside every region: refused without a read.
        let refused = unsafe { heap.try_deallocate(gap, Layout::new::<u64>()) };
        assert_eq!(refused, Err(Corruption::ForeignPointer { addr: h - 2048 }));
    }
    for (p, l) in &live {
        assert!(heap.owns(*p));
        // SAFETY: a live block.
        assert!(unsafe { heap.usable_size(*p) } >= l.size());
    }
    for i in (1..live.len()).rev() {
        live.swap(i, rng.below(i + 1));
    }
    for (i, (p, l)) in live.into_iter().enumerate() {
        // SAFETY: a live block with its layout, freed once.
        unsafe { heap.deallocate(p, l) };
        if i % 16 == 0 {
            heap.check().unwrap();
        }
    }
    heap.check().unwrap();
    assert_eq!(free_chunks(&heap).len(), regions);
}

/// Equal slots of one buffer handed out in a shuffled order: whatever the
/// order, once every slot is the heap's they make one region (a piece
/// continues the region below it, the region above it, or closes the gap
/// between two), and everything comes back as one free chunk.
fn growth_in_shuffled_slots<F: Fit>() {
    const SLOT: usize = 64 * 1024;
    struct Slots {
        base: NonNull<u8>,
        order: Vec<usize>,
        next: Cell<usize>,
    }
    // SAFETY: slots are disjoint parts of a leaked buffer, each handed out
    // once (CORE-S1, CORE-S2), 16-aligned and 16-multiple long (CORE-S3);
    // nothing panics (CORE-S4).
    unsafe impl Source for Slots {
        fn acquire(&self, min_len: usize) -> Option<NonNull<[u8]>> {
            let i = self.next.get();
            let &slot = self.order.get(i).filter(|_| min_len <= SLOT)?;
            self.next.set(i + 1);
            // SAFETY: slot `slot` lies inside the buffer.
            let p = unsafe { self.base.add(slot * SLOT) };
            Some(NonNull::slice_from_raw_parts(p, SLOT))
        }
    }
    let slots = PIECES / SLOT;
    let buf: &'static mut [u128] = leak(vec![0u128; PIECES / 16].into_boxed_slice());
    let mut rng = Rng::new(0x5107);
    let mut order: Vec<usize> = (0..slots).collect();
    for i in (1..slots).rev() {
        order.swap(i, rng.below(i + 1));
    }
    let source = Slots {
        base: NonNull::new(buf.as_mut_ptr().cast()).unwrap(),
        order,
        next: Cell::new(0),
    };
    let heap: FreeListHeap<F, _> = FreeListHeap::new(&source);
    let mut live = Vec::new();
    while let Ok(p) = heap.allocate(Layout::from_size_align(rng.range(16, 20_000), 16).unwrap()) {
        live.push(p.cast::<u8>());
        if live.len() % 8 == 0 {
            heap.check().unwrap();
        }
    }
    heap.check().unwrap();
    assert_eq!(source.next.get(), slots, "every slot was taken");
    assert_eq!(region_count(&heap), 1, "the slots joined into one region");
    for i in (1..live.len()).rev() {
        live.swap(i, rng.below(i + 1));
    }
    for p in live {
        // SAFETY: a live block, freed once (`free` takes any layout it fits).
        unsafe { heap.free(p) };
    }
    heap.check().unwrap();
    assert_eq!(free_chunks(&heap).len(), 1);
}

fn region_count<I: Inspect>(heap: &I) -> usize {
    let mut n = 0;
    heap.inspect(&mut |b| {
        if b.state == BlockState::Meta && b.len == REGION_HEADER {
            n += 1
        }
    });
    n
}

/// Growth over the real program break.
#[cfg(all(unix, not(miri)))]
fn growth_over_sbrk<F: Fit>() {
    let heap: FreeListHeap<F, _> = FreeListHeap::new(freespace_source::Sbrk::with_limit(8 << 20));
    let l = Layout::from_size_align(100_000, 16).unwrap();
    let mut live = Vec::new();
    while let Ok(p) = heap.allocate(l) {
        live.push(p);
        heap.check().unwrap();
    }
    assert!(
        live.len() >= 40,
        "an 8 MiB limit holds at least 40 blocks of 100 kB, got {}",
        live.len()
    );
    // Smaller requests still fit after the source ran dry.
    let small = heap.allocate(Layout::new::<u64>()).unwrap();
    for p in live {
        // SAFETY: live blocks of layout `l`.
        unsafe { heap.deallocate(p.cast(), l) };
    }
    // SAFETY: live block of a `u64` layout.
    unsafe { heap.deallocate(small.cast(), Layout::new::<u64>()) };
    heap.check().unwrap();
    assert_all_free(&heap);
}

/// An overflow that reaches the index link (word 1) of the free chunk
/// after a block but leaves its size intact: freeing the block, which
/// merges with that chunk, is refused as a corrupt free list before
/// anything is written (the index checks a node's links before adopting
/// them).
fn damaged_index_link_is_refused<F: Fit>() {
    let heap: FreeListHeap<F, _> = FreeListHeap::new(arena(1 << 14));
    let l = Layout::from_size_align(48, 8).unwrap();
    let a = heap.allocate(l).unwrap();
    let b = heap.allocate(l).unwrap().cast::<u8>();
    let _guard = heap.allocate(l).unwrap();
    // SAFETY: `b` is live with `l`; then 8 bytes past `a`'s usable length
    // plus 8 (word 1 of `b`'s free chunk) are overwritten, inside the arena.
    unsafe {
        heap.deallocate(b, l);
        a.cast::<u8>().add(a.len() + 8).write_bytes(0xA5, 8);
    }
    let before = free_chunks(&heap);
    // SAFETY: `a` is live with `l`; the heap refuses before acting.
    let got = unsafe { heap.try_deallocate(a.cast(), l) };
    assert_eq!(
        got,
        Err(Corruption::CorruptFreeList {
            addr: b.as_ptr() as usize - HEADER
        })
    );
    assert_eq!(
        free_chunks(&heap),
        before,
        "the refused free changed the heap"
    );
    assert!(heap.check().is_err(), "check() must see the damaged link");
}

macro_rules! suite {
    ($($module:ident: $fit:ty, $(#[$conformance_attr:meta])*,)*) => {$(
        mod $module {
            use super::*;
            // Under Miri the suite takes ~6 minutes per policy: run it for
            // one policy there (the heap code is shared; policies differ
            // only in `choose`, which the ops tests cover for all four).
            $(#[$conformance_attr])*
            #[test] fn conformance_over_arena() { conformance_bounded::<$fit>() }
            #[cfg_attr(miri, ignore = "slow under Miri; growth is covered by the ops and growth tests")]
            #[test] fn conformance_over_contiguous_growth() { conformance_growing::<$fit>(0) }
            #[cfg_attr(miri, ignore = "slow under Miri; growth is covered by the ops and growth tests")]
            #[test] fn conformance_over_scattered_regions() { conformance_growing::<$fit>(4096) }
            #[test] fn ops_over_arena() { ops_prop::<$fit>(true) }
            #[test] fn ops_over_growing_source() { ops_prop::<$fit>(false) }
            #[test] fn worked_example() { super::worked_example::<$fit>() }
            #[test] fn alignment_padding_is_recovered() { super::alignment_padding_is_recovered::<$fit>() }
            #[test] fn exhaustion_over_arena() { exhaustion::<$fit>() }
            #[test] fn growth_merges_contiguous_regions() { growth::<$fit>(0) }
            #[test] fn growth_links_scattered_regions() { growth::<$fit>(4096) }
            #[test] fn growth_links_regions_handed_out_top_down() { growth_top_down::<$fit>() }
            #[test] fn growth_merges_regions_handed_out_top_down() { growth_top_down_apart::<$fit>(0) }
            #[test] fn growth_joins_slots_handed_out_in_any_order() { growth_in_shuffled_slots::<$fit>() }
            #[test] fn damaged_index_link_is_refused() { super::damaged_index_link_is_refused::<$fit>() }
            #[cfg(all(unix, not(miri)))]
            #[test] fn growth_over_sbrk() { super::growth_over_sbrk::<$fit>() }
        }
    )*};
}

suite! {
    first_fit: FirstFit, ,
    next_fit: NextFit, #[cfg_attr(miri, ignore = "slow under Miri; run for first fit only")],
    best_fit: BestFit, #[cfg_attr(miri, ignore = "slow under Miri; run for first fit only")],
    worst_fit: WorstFit, #[cfg_attr(miri, ignore = "slow under Miri; run for first fit only")],
}

// ----------------------------------------------------------------------
// where the policies differ
// ----------------------------------------------------------------------

/// Free chunks of 30, 10, 20 and 50 units; the same requests, four answers.
fn choices<F: Fit>(requests: &[usize]) -> Vec<(usize, usize)> {
    let (heap, starts) = policy_heap::<F, _>(arena(arena_for(POLICY_UNITS)));
    requests
        .iter()
        .map(|&n| {
            let b = heap.allocate(units(n)).unwrap();
            heap.check().unwrap();
            placed(&starts, b)
        })
        .collect()
}

#[test]
fn a_15_unit_request_under_each_policy() {
    assert_eq!(choices::<FirstFit>(&[15]), [(0, 0)], "first fit: the 30");
    assert_eq!(choices::<BestFit>(&[15]), [(2, 0)], "best fit: the 20");
    assert_eq!(choices::<WorstFit>(&[15]), [(3, 0)], "worst fit: the 50");
    assert_eq!(
        choices::<NextFit>(&[15]),
        [(0, 0)],
        "next fit: from the lowest"
    );
}

#[test]
fn next_fit_continues_where_the_last_search_ended_and_wraps() {
    // 15 -> the 30 (15 left); 16 -> from there, the 20 (4 left); 2 -> the
    // 20's remainder (first fit goes back to the 30's); 40 -> the 50 (10
    // left); 12 -> nothing from the 50's remainder on fits: wrap to the
    // 30's remainder.
    let requests = [15, 16, 2, 40, 12];
    assert_eq!(
        choices::<NextFit>(&requests),
        [(0, 0), (2, 0), (2, 16), (3, 0), (0, 15)]
    );
    assert_eq!(
        choices::<FirstFit>(&requests),
        [(0, 0), (2, 0), (0, 15), (3, 0), (0, 17)]
    );
    assert_eq!(
        choices::<BestFit>(&[15, 5, 5, 10]),
        [(2, 0), (2, 15), (1, 0), (0, 0)]
    );
    assert_eq!(
        choices::<WorstFit>(&[15, 30, 20]),
        [(3, 0), (3, 15), (0, 0)]
    );
}

#[test]
fn a_remainder_too_small_to_be_a_chunk_stays_with_the_block() {
    let (heap, starts) = policy_heap::<FirstFit, _>(arena(arena_for(POLICY_UNITS)));
    // 10-unit chunk, request 9.5 units: the 16-byte remainder cannot be a chunk.
    let l = Layout::from_size_align(9 * UNIT + 16 - HEADER, 8).unwrap();
    let (b, _) = (heap.allocate(units(29)).unwrap(), 0); // leaves 1 unit of the 30
    let p = heap.allocate(l).unwrap();
    assert_eq!(placed(&starts, p), (1, 0));
    assert_eq!(
        p.len(),
        10 * UNIT - HEADER,
        "the whole chunk, remainder included"
    );
    heap.check().unwrap();
    // Freeing with any size from the request to the returned length works.
    // SAFETY: `p` is live; the size is within [request, len].
    unsafe {
        heap.try_deallocate(p.cast(), Layout::from_size_align(p.len(), 8).unwrap())
            .unwrap()
    };
    let _ = b;
}

// ----------------------------------------------------------------------
// corruption: the checked API, and the abort in a child process
// ----------------------------------------------------------------------

type Heap = FreeListHeap<FirstFit, Arena>;

/// A corruption scenario: sets up a heap, damages it or keeps a bad
/// pointer, and says which free must be reported as what.
struct Case {
    heap: &'static Heap,
    ptr: NonNull<u8>,
    layout: Layout,
    expect: Corruption,
    heap_intact: bool,
}

fn small() -> Layout {
    Layout::from_size_align(48, 8).unwrap()
}

/// An arena whose bytes start out zero. The heap writes only the headers
/// of a new region, not the whole region; a scenario that damages a size
/// word sends `check()` and `Inspect` (which walk the chunks by their
/// sizes) to wherever it points, which may be bytes nobody has written:
/// zeroed, they are initialised memory, as pages fresh from the operating
/// system are.
fn zeroed_arena(len: usize) -> Arena {
    Arena::new(leak(
        vec![MaybeUninit::zeroed(); len + 15].into_boxed_slice(),
    ))
}

fn case(name: &str) -> Case {
    let heap: &'static Heap = leak(Box::new(FreeListHeap::new(zeroed_arena(1 << 14))));
    let l = small();
    let a = heap.allocate(l).unwrap().cast::<u8>();
    let b = heap.allocate(l).unwrap().cast::<u8>();
    let _guard = heap.allocate(l).unwrap();
    let addr = |p: NonNull<u8>| p.as_ptr() as usize;
    let mk = |ptr: NonNull<u8>, expect, heap_intact| Case {
        heap,
        ptr,
        layout: l,
        expect,
        heap_intact,
    };
    // SAFETY: (all arms) `a` and `b` are live blocks of layout `l`; the
    // writes below damage the heap on purpose, inside its own arena.
    unsafe {
        match name {
            "double_free" => {
                heap.deallocate(a, l);
                mk(a, Corruption::DoubleFree { addr: addr(a) }, true)
            }
            "double_free_after_coalescing" => {
                heap.deallocate(a, l);
                heap.deallocate(b, l); // merges into `a`'s free chunk
                mk(b, Corruption::DoubleFree { addr: addr(b) }, true)
            }
            "double_free_after_reuse" => {
                heap.deallocate(b, l);
                heap.deallocate(a, l); // `a` absorbs `b`: b's header is buried
                let big = Layout::from_size_align(2 * 64 - HEADER, 8).unwrap();
                let reused = heap.allocate(big).unwrap().cast::<u8>();
                assert_eq!(reused, a, "the merged chunk is reused whole");
                mk(b, Corruption::DoubleFree { addr: addr(b) }, true)
            }
            "foreign_pointer" => {
                let outside: &'static mut [u128; 4] = leak(Box::new([0; 4]));
                let p = NonNull::from(&mut outside[2]).cast::<u8>();
                mk(p, Corruption::ForeignPointer { addr: addr(p) }, true)
            }
            "interior_pointer" => {
                let p = a.add(16);
                mk(p, Corruption::InteriorPointer { addr: addr(p) }, true)
            }
            "misaligned_pointer" => {
                let p = a.add(4);
                mk(p, Corruption::MisalignedPointer { addr: addr(p) }, true)
            }
            "overwritten_header" => {
                a.sub(HEADER - 1).write(a.sub(HEADER - 1).read() ^ 0x01); // size word, second byte
                mk(
                    a,
                    Corruption::OverwrittenHeader {
                        addr: addr(a) - HEADER,
                    },
                    false,
                )
            }
            "overwritten_magic" => {
                a.sub(1).write(a.sub(1).read() ^ 0x80);
                mk(
                    a,
                    Corruption::OverwrittenHeader {
                        addr: addr(a) - HEADER,
                    },
                    false,
                )
            }
            "overflow_into_next_header" => {
                // Write 8 bytes past `a`'s block: `b`'s size word.
                a.add(l.size()).write_bytes(0xEE, 8);
                mk(
                    a,
                    Corruption::OverwrittenHeader {
                        addr: addr(b) - HEADER,
                    },
                    false,
                )
            }
            "size_mismatch" => {
                let wrong = Layout::from_size_align(200, 8).unwrap();
                Case {
                    layout: wrong,
                    ..mk(a, Corruption::SizeMismatch { addr: addr(a) }, true)
                }
            }
            "alignment_mismatch" => {
                let wrong = Layout::from_size_align(48, 4096).unwrap();
                let expect = if addr(a) % 4096 == 0 {
                    None
                } else {
                    Some(Corruption::SizeMismatch { addr: addr(a) })
                };
                Case {
                    layout: wrong,
                    ..mk(
                        a,
                        expect.unwrap_or(Corruption::SizeMismatch { addr: addr(a) }),
                        true,
                    )
                }
            }
            "forged_header" => {
                // The attack of issue 16: user data in `a` forges an
                // allocated header whose chunk ends at `b`'s real header,
                // with the magic an attacker can compute from public
                // facts (addresses, and the key derivation before 16).
                let region = addr(a) - HEADER - REGION_HEADER;
                let (p, layout) = forge_header(a, l, public_key_guess(region));
                Case {
                    layout,
                    ..mk(p, Corruption::InteriorPointer { addr: addr(p) }, true)
                }
            }
            "inside_heap_metadata" => {
                // Inside the region header (the arena's first 64 bytes).
                let p = a.sub(HEADER + 16);
                mk(p, Corruption::InteriorPointer { addr: addr(p) }, true)
            }
            other => panic!("no scenario {other}"),
        }
    }
}

const CASES_ALL: [&str; 13] = [
    "double_free",
    "double_free_after_coalescing",
    "double_free_after_reuse",
    "foreign_pointer",
    "interior_pointer",
    "misaligned_pointer",
    "overwritten_header",
    "overwritten_magic",
    "overflow_into_next_header",
    "size_mismatch",
    "alignment_mismatch",
    "inside_heap_metadata",
    "forged_header",
];

/// The key a heap had before issue 16, computed from its first region's
/// address alone: what an attacker who reads addresses could compute.
fn public_key_guess(region: usize) -> usize {
    freespace_freelist::chunk::magic(region, 0x5A5A, 0x2545_F491) | 1
}

/// Writes into the live block `a` (layout `l`) a forged allocated header
/// whose chunk ends exactly at the real header after `a`'s chunk (so the
/// next chunk confirms it), its magic computed with `key`; returns the
/// forged payload pointer and the layout its chunk answers to.
///
/// # Safety
///
/// `a` is a live block of layout `l` (at least 32 bytes of payload) of a
/// free-list heap, and the chunk after it is allocated.
unsafe fn forge_header(a: NonNull<u8>, l: Layout, key: usize) -> (NonNull<u8>, Layout) {
    use freespace_freelist::chunk::{chunk_size_for, magic, Flags};
    // SAFETY: (whole body) `a`'s header is 16 bytes before it (SC-H3); the
    // forged header lies inside `a`'s payload.
    unsafe {
        let chunk = a.sub(HEADER);
        let chunk_size = chunk.cast::<usize>().read() & !15;
        let forged_size = 32;
        let h = chunk.add(chunk_size - forged_size);
        assert!(h >= a && chunk_size_for(l.size()).unwrap() <= chunk_size);
        let word0 = forged_size | Flags::ALLOCATED.bits();
        h.cast::<usize>().write(word0);
        h.cast::<usize>()
            .add(1)
            .write(magic(h.as_ptr() as usize, word0, key));
        (h.add(HEADER), Layout::from_size_align(16, 8).unwrap())
    }
}

/// The forgery, for one policy: every key guess an attacker can make from
/// public facts is refused, the heap stays intact, and the next allocation
/// of the forged chunk's size does not overlap the block it was forged in.
fn forged_header_is_refused<F: Fit>() {
    let heap: FreeListHeap<F, Arena> = FreeListHeap::new(zeroed_arena(1 << 14));
    let l = Layout::from_size_align(256, 8).unwrap();
    let a = heap.allocate(l).unwrap().cast::<u8>();
    let _b = heap.allocate(l).unwrap();
    let region = a.as_ptr() as usize - HEADER - REGION_HEADER;
    let guesses = [
        public_key_guess(region),
        public_key_guess(a.as_ptr() as usize - HEADER),
        0,
        1,
        usize::MAX,
        freespace_core::KeySource::Seed(0).key(region),
    ];
    for key in guesses {
        // SAFETY: `a` is live with layout `l`, `_b` follows it; the forged
        // free is the misuse under test (the checked free only reads).
        unsafe {
            let (p, forged) = forge_header(a, l, key);
            assert_eq!(
                heap.try_deallocate(p, forged),
                Err(Corruption::InteriorPointer {
                    addr: p.as_ptr() as usize
                }),
                "key guess {key:#x} forged a header"
            );
        }
        heap.check().unwrap();
    }
    let (lo, hi) = (a.as_ptr() as usize, a.as_ptr() as usize + l.size());
    let next = heap
        .allocate(Layout::from_size_align(16, 8).unwrap())
        .unwrap();
    let at = next.cast::<u8>().as_ptr() as usize;
    assert!(
        at + next.len() <= lo - HEADER || at >= hi,
        "{at:#x} lies inside the live block {lo:#x}..{hi:#x}"
    );
    heap.check().unwrap();
}

#[test]
fn forged_header_is_refused_first_fit() {
    forged_header_is_refused::<FirstFit>();
}
#[test]
fn forged_header_is_refused_next_fit() {
    forged_header_is_refused::<NextFit>();
}
#[test]
fn forged_header_is_refused_best_fit() {
    forged_header_is_refused::<BestFit>();
}
#[test]
fn forged_header_is_refused_worst_fit() {
    forged_header_is_refused::<WorstFit>();
}

/// The control that keeps the test above honest: the forgery is
/// well-formed, so with the key (here: a heap built from a seed the
/// attacker knows) it passes, and the heap hands out memory inside a live
/// block. The secret key is the only thing that stops it.
#[test]
fn forged_header_with_the_key_is_accepted() {
    let seed = 42;
    let heap: Heap = FreeListHeap::with_seed(zeroed_arena(1 << 14), seed);
    let l = Layout::from_size_align(256, 8).unwrap();
    let a = heap.allocate(l).unwrap().cast::<u8>();
    let _b = heap.allocate(l).unwrap();
    let key = freespace_core::KeySource::Seed(seed).key(0);
    // SAFETY: as in `forged_header_is_refused`.
    let p = unsafe {
        let (p, forged) = forge_header(a, l, key);
        assert_eq!(heap.try_deallocate(p, forged), Ok(()));
        p
    };
    assert!(heap.check().is_err(), "the forged free broke SC-H4");
    let next = heap
        .allocate(Layout::from_size_align(16, 8).unwrap())
        .unwrap();
    assert_eq!(
        next.cast::<u8>(),
        p,
        "the forged chunk is handed out inside `a`"
    );
}

#[test]
fn checked_free_returns_each_corruption_and_changes_nothing() {
    for name in CASES_ALL {
        let c = case(name);
        if name == "alignment_mismatch" && c.ptr.as_ptr() as usize % 4096 == 0 {
            continue; // the block happens to be 4096-aligned: no mismatch
        }
        let before = free_chunks(c.heap);
        // SAFETY: the checked free only reads the heap's own memory for an
        // invalid pointer.
        let got = unsafe { c.heap.try_deallocate(c.ptr, c.layout) };
        assert_eq!(got, Err(c.expect), "scenario {name}");
        assert_eq!(
            free_chunks(c.heap),
            before,
            "scenario {name} changed the heap"
        );
        if c.heap_intact {
            c.heap.check().unwrap();
        } else {
            assert!(
                c.heap.check().is_err(),
                "scenario {name}: check() must see the damage"
            );
        }
    }
}

#[test]
fn header_lookalikes_in_user_data_cause_no_false_report() {
    let heap: Heap = FreeListHeap::new(arena(1 << 14));
    let l = Layout::from_size_align(256, 8).unwrap();
    let a = heap.allocate(l).unwrap().cast::<u8>();
    let b = heap.allocate(l).unwrap().cast::<u8>();
    // SAFETY: `a` and `b` are live 256-byte blocks; we copy header words
    // (the heap's, next to them) into their payloads, as user data.
    unsafe {
        let header = a.sub(HEADER).cast::<[u8; 16]>().read();
        let other = b.sub(HEADER).cast::<[u8; 16]>().read();
        for i in 0..16 {
            let dst = a.add(i * 16).cast::<[u8; 16]>();
            dst.write(if i % 2 == 0 { header } else { other });
            b.add(i * 16).cast::<[u8; 16]>().write(header);
        }
        // Pointers into the lookalikes are still interior pointers...
        for i in 1..16 {
            let p = a.add(i * 16);
            assert_eq!(
                heap.try_deallocate(p, l),
                Err(Corruption::InteriorPointer {
                    addr: p.as_ptr() as usize
                })
            );
        }
        // ...and the real frees still succeed.
        heap.try_deallocate(b, l).unwrap();
        heap.try_deallocate(a, l).unwrap();
    }
    heap.check().unwrap();
    assert_all_free(&heap);
}

/// Runs in the child process only (selected by the environment): sets up
/// the scenario, says on stdout what must be reported, and frees.
#[test]
fn corruption_child() {
    let Ok(name) = std::env::var("FREESPACE_CORRUPTION_CASE") else {
        return;
    };
    let c = case(&name);
    println!("expect: {}", c.expect.message("free-list heap"));
    use std::io::Write;
    std::io::stdout().flush().unwrap();
    // SAFETY: the invalid free under test; the default handler aborts.
    unsafe { c.heap.deallocate(c.ptr, c.layout) };
    println!("returned");
}

#[cfg(all(unix, not(miri)))]
#[test]
fn deallocate_aborts_with_the_exact_message() {
    use std::os::unix::process::ExitStatusExt;
    for name in CASES_ALL {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "corruption_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("FREESPACE_CORRUPTION_CASE", name)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let expect = stdout
            .lines()
            .find_map(|l| l.split("expect: ").nth(1))
            .unwrap_or_else(|| panic!("{name}: child printed no expectation: {stdout}\n{stderr}"));
        if name == "alignment_mismatch" && !expect.contains("size mismatch") {
            continue;
        }
        assert_eq!(
            out.status.signal(),
            Some(libc::SIGABRT),
            "{name}: {stdout}\n{stderr}"
        );
        assert!(
            stderr.lines().any(|l| l == expect),
            "{name}: expected the line {expect:?} on stderr, got {stderr:?}"
        );
        assert!(!stdout.contains("returned"), "{name}");
    }
}

// ----------------------------------------------------------------------
// the indexes against the plain scans, side by side
// ----------------------------------------------------------------------

/// Runs `ops` on a heap of policy `F` over `len` fresh page-aligned bytes
/// (one arena, or pieces of a growing source with `gap` bytes between
/// them), through the shadow model and `check()` after every
/// `check_every`-th op (and at the end); returns where every block went.
fn placements<F: Fit>(
    ops: &[ops::Op],
    len: usize,
    growing: Option<usize>,
    check_every: usize,
) -> Result<Vec<Option<usize>>, String> {
    fn play<F: Fit, S: Source>(
        heap: &FreeListHeap<F, S>,
        base: NonNull<u8>,
        ops: &[ops::Op],
        check_every: usize,
    ) -> Result<Vec<Option<usize>>, String> {
        let rec = Logged::new(heap, base.as_ptr() as usize);
        let n = Cell::new(0usize);
        let check = || {
            n.set(n.get() + 1);
            if n.get() % check_every == 0 || n.get() > ops.len() {
                heap.check()
            } else {
                Ok(())
            }
        };
        ops::run(&rec, ops, &check)?;
        heap.check().map_err(|v| v.to_string())?;
        Ok(rec.log().iter().map(|c| c.at).collect())
    }
    let memory = PageAligned::new(len);
    let base = memory.ptr;
    match growing {
        None => {
            // SAFETY: `base` is `len` bytes of `memory`, which outlives the
            // heap, used by this arena only.
            let heap: FreeListHeap<F, _> =
                FreeListHeap::new(unsafe { Arena::from_raw_parts(base.as_ptr(), len) });
            play(&heap, base, ops, check_every)
        }
        Some(gap) => {
            let source = Pieces::over(base, len, gap);
            let heap: FreeListHeap<F, _> = FreeListHeap::new(&source);
            play(&heap, base, ops, check_every)
        }
    }
}

/// The property: the indexed policy `F` and its plain scan `R` place every
/// block of `ops` at the same offset, and both pass the shadow model and
/// their checks.
fn same_as_scan<F: Fit, R: Fit>(
    ops: &[ops::Op],
    len: usize,
    growing: Option<usize>,
    check_every: usize,
) -> Result<(), String> {
    let indexed =
        placements::<F>(ops, len, growing, check_every).map_err(|e| format!("{}: {e}", F::NAME))?;
    let scanned =
        placements::<R>(ops, len, growing, check_every).map_err(|e| format!("{}: {e}", R::NAME))?;
    if let Some(i) =
        (0..indexed.len().max(scanned.len())).find(|&i| indexed.get(i) != scanned.get(i))
    {
        return Err(format!(
            "{} and {} differ at block #{i}: {:x?} vs {:x?}",
            F::NAME,
            R::NAME,
            indexed.get(i),
            scanned.get(i)
        ));
    }
    Ok(())
}

/// Side-by-side arena size: small enough that op sequences fill it.
#[cfg(not(miri))]
const SIDE_ARENA: usize = 1 << 16;
#[cfg(miri)]
const SIDE_ARENA: usize = 1 << 13;

fn same_as_scan_prop<F: Fit, R: Fit>() {
    fn over_arena<F: Fit, R: Fit>(o: ops::Ops) -> Result<(), String> {
        same_as_scan::<F, R>(&o.0, SIDE_ARENA, None, 1)
    }
    fn over_scattered<F: Fit, R: Fit>(o: ops::Ops) -> Result<(), String> {
        same_as_scan::<F, R>(&o.0, 4 * SIDE_ARENA, Some(4096), 1)
    }
    for prop in [
        over_arena::<F, R> as fn(ops::Ops) -> Result<(), String>,
        over_scattered::<F, R>,
    ] {
        quickcheck::QuickCheck::new()
            .tests(CASES)
            .max_tests(CASES * 10)
            .rng(quickcheck::Gen::new(GEN_SIZE))
            .quickcheck(prop);
    }
}

/// One long deterministic trace of small blocks: thousands of free chunks,
/// deep trees, chunks of every small size (32-byte ones included).
fn same_as_scan_long<F: Fit, R: Fit>() {
    #[cfg(not(miri))]
    const OPS: usize = 20_000;
    #[cfg(miri)]
    const OPS: usize = 150;
    let mut rng = Rng::new(0x9E37_79B9_7F4A_7C15);
    let mut bytes = Vec::with_capacity(OPS * 4);
    for i in 0..OPS {
        let [a, b, c, d, ..] = rng.next().to_le_bytes();
        // Mostly small allocations and frees, the odd over-aligned one,
        // grows and shrinks; frees lag allocations early on so many blocks
        // are live.
        let kind = if i % 3 == 2 { 7 + a % 5 } else { a % 7 };
        bytes.extend_from_slice(&[kind | (a & 0xF0), b, c & 0x03, d]);
        if i % 97 == 0 {
            bytes.extend_from_slice(&[12, b, c & 0x0F, d]);
            bytes.extend_from_slice(&[14, b, c, d]);
        }
    }
    let trace = ops::decode(&bytes);
    // The scan's check is O(n²): check every 1000th op only.
    same_as_scan::<F, R>(&trace, 1 << 20, None, 1000).unwrap();
    same_as_scan::<F, R>(&trace, PIECES, Some(4096), 1000).unwrap();
}

/// Many chunks of a few equal sizes on both sides of the bins' limit
/// (`LARGEST_BINNED`), so ties are common: among binned sizes the policies
/// with bins break them by recency, above by address, and the scans must
/// agree at every step.
fn same_as_scan_on_ties<F: Fit, R: Fit>() {
    use freespace_freelist::bins::LARGEST_BINNED;
    #[cfg(not(miri))]
    const OPS: usize = 4_000;
    #[cfg(miri)]
    const OPS: usize = 100;
    let sizes = [
        16,
        32,
        LARGEST_BINNED - 2 * HEADER,
        LARGEST_BINNED - HEADER,
        LARGEST_BINNED,
        LARGEST_BINNED + 16,
    ];
    let mut rng = Rng::new(0x2545_F491_4F6C_DD1D);
    let trace: Vec<ops::Op> = (0..OPS)
        .map(|i| {
            let r = rng.next();
            // Allocations outnumber frees early on, then they balance.
            if r % 100 < if i < OPS / 4 { 75 } else { 50 } {
                ops::Op::Alloc {
                    size: sizes[(r >> 8) as usize % sizes.len()],
                    align: if r >> 20 & 31 == 0 { 64 } else { 8 },
                    zeroed: false,
                }
            } else {
                ops::Op::Free {
                    slot: (r >> 8) as usize,
                    excess: 0,
                }
            }
        })
        .collect();
    same_as_scan::<F, R>(&trace, 4 << 20, None, 100).unwrap();
    same_as_scan::<F, R>(&trace, PIECES, Some(4096), 100).unwrap();
}

macro_rules! side_by_side {
    ($($module:ident: $fit:ty, $scan:ty;)*) => {$(
        mod $module {
            use super::*;
            #[test] fn same_choices_as_the_plain_scan() { same_as_scan_prop::<$fit, Scanned<$scan>>() }
            #[test] fn same_choices_as_the_plain_scan_over_a_long_trace() { same_as_scan_long::<$fit, Scanned<$scan>>() }
            #[test] fn same_choices_as_the_plain_scan_on_ties() { same_as_scan_on_ties::<$fit, Scanned<$scan>>() }
        }
    )*};
}

side_by_side! {
    first_fit_vs_scan: FirstFit, FirstFitScan;
    next_fit_vs_scan: NextFit, NextFitScan;
    best_fit_vs_scan: BestFit, BestFitScan;
    worst_fit_vs_scan: WorstFit, WorstFitScan;
}

// ----------------------------------------------------------------------
// a source too small for the heap's metadata (issue 19)
// ----------------------------------------------------------------------

#[test]
fn a_region_smaller_than_the_metadata_is_an_error_that_says_so() {
    use freespace_best_fit::BestFitHeap;
    use freespace_split_coalesce::{RegionError, MIN_REGION};
    // The lazy constructor can only refuse each request.
    let lazy = BestFitHeap::new(arena(32));
    assert!(lazy.allocate(Layout::new::<u8>()).is_err());
    // The checked one says why, with the minimum.
    let err = match BestFitHeap::try_new(arena(32)) {
        Err(e) => e,
        Ok(_) => panic!("a 32-byte arena cannot hold the heap's metadata"),
    };
    assert_eq!(
        err,
        RegionError::TooSmall {
            len: 32,
            min: MIN_REGION
        }
    );
    assert_eq!(
        err.to_string(),
        "the region (32 bytes) is smaller than the free-list heap's metadata: at least 112 \
         bytes are needed (64-byte region header, 32-byte smallest chunk, 16-byte fencepost)"
    );
    // One byte short of the minimum is refused, the minimum itself serves
    // the smallest block.
    assert!(matches!(
        BestFitHeap::try_new(arena(MIN_REGION - 16)),
        Err(RegionError::TooSmall { .. })
    ));
    let heap = BestFitHeap::try_new(arena(MIN_REGION)).unwrap();
    let l = Layout::from_size_align(16, 8).unwrap();
    let p = heap.allocate(l).unwrap();
    heap.check().unwrap();
    // SAFETY: `p` is live with `l`.
    unsafe { heap.deallocate(p.cast(), l) };
    heap.check().unwrap();
    // A source with nothing to give.
    struct Empty;
    // SAFETY: never returns a region.
    unsafe impl Source for Empty {
        fn acquire(&self, _: usize) -> Option<NonNull<[u8]>> {
            None
        }
    }
    assert_eq!(
        FreeListHeap::<FirstFit, _>::try_new(Empty).err(),
        Some(RegionError::NoRegion { min: MIN_REGION })
    );
}
