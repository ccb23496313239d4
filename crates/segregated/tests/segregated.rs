//! Integration tests for freespace-segregated, one binary: conformance and
//! the op interpreter on every block, caps and trimming, routing of every
//! fitting free size, and corruption reports (in-process and, for the
//! default abort, in a child process).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::ptr::NonNull;
use std::sync::Once;

use freespace_core::alloc::{AllocError, Allocator, Global, Layout};
use freespace_core::{
    corruption, layout, report, BlockInfo, BlockState, CheckedFree, Corruption, HeapSummary,
    Inspect, Owns,
};
use freespace_segregated::{Fallback, Segregated, Segregator};
use freespace_testkit::conformance::{self, Config};
use freespace_testkit::ops::{self, Ops};

// ===== test allocators ======================================================

/// A parent that counts, and that checks every free against what it handed
/// out: a free with a layout that does not fit (wrong alignment, size outside
/// request..=len) or of a pointer it never gave is a *misfit*, counted and
/// never passed on. It owns exactly its live blocks.
struct Counting<A: Allocator> {
    inner: A,
    blocks: RefCell<HashMap<usize, (Layout, usize)>>,
    /// Addresses freed and not handed out since (for the checked free).
    freed: RefCell<std::collections::HashSet<usize>>,
    allocs: Cell<usize>,
    deallocs: Cell<usize>,
    misfits: Cell<usize>,
}

impl<A: Allocator> Counting<A> {
    fn new(inner: A) -> Self {
        Self {
            inner,
            blocks: RefCell::default(),
            freed: RefCell::default(),
            allocs: Cell::new(0),
            deallocs: Cell::new(0),
            misfits: Cell::new(0),
        }
    }

    fn live(&self) -> usize {
        self.blocks.borrow().len()
    }

    /// The recorded layout if `layout` fits the live block at `ptr`.
    fn fits(&self, ptr: NonNull<u8>, layout: Layout) -> Option<Layout> {
        let blocks = self.blocks.borrow();
        let &(asked, len) = blocks.get(&ptr.as_ptr().addr())?;
        (asked.align() == layout.align() && asked.size() <= layout.size() && layout.size() <= len)
            .then_some(asked)
    }

    fn record(&self, block: NonNull<[u8]>, layout: Layout) {
        let addr = block.cast::<u8>().as_ptr().addr();
        self.freed.borrow_mut().remove(&addr);
        self.blocks.borrow_mut().insert(addr, (layout, block.len()));
    }
}

// SAFETY: only a live block with a fitting layout is freed (through
// `deallocate`, which then passes it on); anything else is refused having
// read the ledger alone, and is not counted.
unsafe impl<A: Allocator> CheckedFree for Counting<A> {
    unsafe fn try_deallocate(&self, ptr: NonNull<u8>, layout: Layout) -> Result<(), Corruption> {
        if layout.size() == 0 {
            return Ok(());
        }
        let addr = ptr.as_ptr().addr();
        if self.fits(ptr, layout).is_none() {
            return Err(if self.blocks.borrow().contains_key(&addr) {
                Corruption::SizeMismatch { addr }
            } else if self.freed.borrow().contains(&addr) {
                Corruption::DoubleFree { addr }
            } else if self
                .blocks
                .borrow()
                .iter()
                .any(|(&a, &(_, len))| a < addr && addr < a + len)
            {
                Corruption::InteriorPointer { addr }
            } else {
                Corruption::ForeignPointer { addr }
            });
        }
        // SAFETY: a live block with a fitting layout (checked).
        unsafe { self.deallocate(ptr, layout) };
        Ok(())
    }
}

/// Miri cannot refuse a huge request the way an operating system does (it
/// stops with "resource exhaustion"), so under Miri `Counting` plays the
/// operating system and refuses anything above this.
const MIRI_LIMIT: usize = 1 << 20;

fn refused(layout: Layout) -> bool {
    cfg!(miri) && layout.size() > MIRI_LIMIT
}

// SAFETY: forwards to `inner`; frees that do not fit are dropped, never
// forwarded, so `inner` only sees calls that honour its contract.
unsafe impl<A: Allocator> Allocator for Counting<A> {
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        if refused(layout) {
            return Err(AllocError);
        }
        let block = self.inner.allocate(layout)?;
        if layout.size() > 0 {
            self.allocs.set(self.allocs.get() + 1);
            self.record(block, layout);
        }
        Ok(block)
    }

    unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
        if layout.size() == 0 {
            return;
        }
        self.deallocs.set(self.deallocs.get() + 1);
        if self.fits(ptr, layout).is_none() {
            self.misfits.set(self.misfits.get() + 1);
            return;
        }
        self.blocks.borrow_mut().remove(&ptr.as_ptr().addr());
        self.freed.borrow_mut().insert(ptr.as_ptr().addr());
        // SAFETY: a live block of `inner` with a fitting layout (checked).
        unsafe { self.inner.deallocate(ptr, layout) }
    }

    unsafe fn grow(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        if self.fits(ptr, old).is_none() {
            self.misfits.set(self.misfits.get() + 1);
            return Err(AllocError);
        }
        if refused(new) {
            return Err(AllocError);
        }
        // SAFETY: checked to be a live block with a fitting `old`.
        let block = unsafe { self.inner.grow(ptr, old, new) }?;
        self.blocks.borrow_mut().remove(&ptr.as_ptr().addr());
        self.record(block, new);
        Ok(block)
    }

    unsafe fn shrink(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        if self.fits(ptr, old).is_none() {
            self.misfits.set(self.misfits.get() + 1);
            return Err(AllocError);
        }
        // SAFETY: checked to be a live block with a fitting `old`.
        let block = unsafe { self.inner.shrink(ptr, old, new) }?;
        self.blocks.borrow_mut().remove(&ptr.as_ptr().addr());
        if new.size() > 0 {
            self.record(block, new);
        }
        Ok(block)
    }
}

// SAFETY: `true` exactly for live blocks.
unsafe impl<A: Allocator> Owns for Counting<A> {
    fn owns(&self, ptr: NonNull<u8>) -> bool {
        self.blocks.borrow().contains_key(&ptr.as_ptr().addr())
    }
}

impl<A: Allocator> Inspect for Counting<A> {
    /// Every live block, as used.
    fn inspect(&self, visit: &mut dyn FnMut(BlockInfo)) {
        for (&addr, &(_, len)) in self.blocks.borrow().iter() {
            visit(BlockInfo {
                addr,
                len,
                state: BlockState::Used,
            });
        }
    }
}

/// A small bounded bump heap over one buffer of its own, owning its address
/// range. Space comes back when every block is free, or when the most recent
/// one is. A free of a pointer outside the buffer is reported as foreign
/// (`"test region"`) and ignored, as every freespace heap does.
struct Region {
    base: NonNull<u8>,
    len: usize,
    cursor: Cell<usize>,
    last: Cell<usize>,
    live: Cell<usize>,
}

const REGION_ALIGN: usize = 4096;

impl Region {
    fn new(len: usize) -> Self {
        let l = Layout::from_size_align(len, REGION_ALIGN).unwrap();
        // SAFETY: `len > 0` in every test.
        let base = NonNull::new(unsafe { std::alloc::alloc(l) }).expect("test buffer");
        Self {
            base,
            len,
            cursor: Cell::new(0),
            last: Cell::new(0),
            live: Cell::new(0),
        }
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        let l = Layout::from_size_align(self.len, REGION_ALIGN).unwrap();
        // SAFETY: allocated in `new` with this layout.
        unsafe { std::alloc::dealloc(self.base.as_ptr(), l) }
    }
}

// SAFETY: blocks are disjoint ranges of the buffer, which is ours; the
// cursor only moves back over blocks that are free.
unsafe impl Allocator for Region {
    fn allocate(&self, l: Layout) -> Result<NonNull<[u8]>, AllocError> {
        if l.size() == 0 {
            return Ok(layout::dangling(l));
        }
        let at = layout::align_up(self.cursor.get(), l.align()).ok_or(AllocError)?;
        let end = at.checked_add(l.size()).ok_or(AllocError)?;
        if end > self.len {
            return Err(AllocError);
        }
        self.last.set(self.cursor.get());
        self.cursor.set(end);
        self.live.set(self.live.get() + 1);
        // SAFETY: `at < end <= len`: inside the buffer.
        let p = unsafe { self.base.add(at) };
        Ok(NonNull::slice_from_raw_parts(p, l.size()))
    }

    unsafe fn deallocate(&self, ptr: NonNull<u8>, l: Layout) {
        if l.size() == 0 {
            return;
        }
        if !self.owns(ptr) {
            report(
                Corruption::ForeignPointer {
                    addr: ptr.as_ptr().addr(),
                },
                "test region",
            );
            return;
        }
        let at = ptr.as_ptr().addr() - self.base.as_ptr().addr();
        self.live.set(self.live.get() - 1);
        if self.live.get() == 0 {
            self.cursor.set(0);
        } else if at + l.size() == self.cursor.get() && self.last.get() <= at {
            self.cursor.set(self.last.get());
        }
    }
}

// SAFETY: every block lies inside the buffer; nothing outside it is ours.
unsafe impl Owns for Region {
    fn owns(&self, ptr: NonNull<u8>) -> bool {
        let a = ptr.as_ptr().addr();
        let b = self.base.as_ptr().addr();
        (b..b + self.len).contains(&a)
    }
}

// ===== harness ==============================================================

fn l(size: usize, align: usize) -> Layout {
    Layout::from_size_align(size, align).unwrap()
}

/// `n` quickcheck cases; under Miri three short traces.
fn quickcheck(n: u64) -> quickcheck::QuickCheck {
    if cfg!(miri) {
        quickcheck::QuickCheck::new()
            .tests(3)
            .rng(quickcheck::Gen::new(8))
    } else {
        quickcheck::QuickCheck::new().tests(n)
    }
}

/// Heap sizes for the bounded tests: a sixteenth under Miri, where the
/// out-of-memory check (filling the heap with 16-byte blocks) is slow.
fn kib(n: usize) -> usize {
    if cfg!(miri) {
        n << 6
    } else {
        n << 10
    }
}

fn config<'a>() -> Config<'a> {
    if cfg!(miri) {
        Config::default().max_align(256).max_block(2048)
    } else {
        Config::default()
    }
}

thread_local! {
    static SEEN: RefCell<Vec<(Corruption, &'static str)>> = const { RefCell::new(Vec::new()) };
    static RECORDING: Cell<bool> = const { Cell::new(false) };
}

/// Records reports on threads that asked for it; aborts (the default) on
/// every other thread, so an unexpected report still fails loudly.
fn recording_handler(c: Corruption, block: &'static str) {
    if RECORDING.with(Cell::get) {
        SEEN.with(|s| s.borrow_mut().push((c, block)));
    } else {
        corruption::abort_handler(c, block);
    }
}

/// Runs `f` with reports on this thread recorded, and returns them.
fn reports_of(f: impl FnOnce()) -> Vec<(Corruption, &'static str)> {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        corruption::set_handler(recording_handler);
    });
    RECORDING.with(|r| r.set(true));
    f();
    RECORDING.with(|r| r.set(false));
    SEEN.with(|s| s.take())
}

// ===== conformance ==========================================================

#[test]
fn conformance_segregated_over_global() {
    let heap = Segregated::new(Counting::new(Global));
    conformance::run(&heap, &config().check(&|| heap.check()));
    heap.release_cached();
    assert_eq!(heap.parent().live(), 0, "trim gives every block back");
    assert_eq!(heap.parent().misfits.get(), 0);
}

#[test]
fn conformance_segregated_small_cap_odd_sizes() {
    static SIZES: [usize; 4] = [16, 48, 96, 1024];
    let heap = Segregated::with_sizes(Counting::new(Global), &SIZES)
        .with_cap(256)
        .with_batch(3);
    conformance::run(&heap, &config().check(&|| heap.check()));
    heap.release_cached();
    assert_eq!(heap.parent().live(), 0);
    assert_eq!(heap.parent().misfits.get(), 0);
}

#[test]
fn conformance_segregator() {
    let heap: Segregator<200, _, _> = Segregator::new(
        Segregated::new(Counting::new(Global)),
        Counting::new(Global),
    );
    conformance::run(&heap, &config().check(&|| heap.small().check()));
    heap.small().release_cached();
    assert_eq!(heap.small().parent().live() + heap.large().live(), 0);
    assert_eq!(heap.small().parent().misfits.get(), 0);
    assert_eq!(heap.large().misfits.get(), 0);
}

#[test]
fn conformance_segregator_bounded() {
    let heap: Segregator<64, _, _> = Segregator::new(Region::new(kib(64)), Region::new(kib(256)));
    conformance::run(&heap, &config().bounded());
}

#[test]
fn conformance_fallback_over_global() {
    let heap = Fallback::new(Region::new(16 << 10), Counting::new(Global));
    conformance::run(&heap, &config());
    assert_eq!(heap.primary().live.get(), 0);
    assert_eq!(heap.secondary().live(), 0);
    assert_eq!(heap.secondary().misfits.get(), 0);
}

#[test]
fn conformance_fallback_bounded() {
    let heap = Fallback::new(Region::new(kib(16)), Region::new(kib(128)));
    conformance::run(&heap, &config().bounded());
}

// ===== the op interpreter ===================================================

fn prop_segregated(ops: Ops) -> Result<(), String> {
    let heap = Segregated::new(Counting::new(Global)).with_cap(1024);
    ops::run(&heap, &ops.0, &|| heap.check())?;
    heap.release_cached();
    let parent = heap.parent();
    if parent.live() != 0 || parent.misfits.get() != 0 {
        return Err(format!(
            "after trim: {} parent blocks live, {} misfit frees",
            parent.live(),
            parent.misfits.get()
        ));
    }
    Ok(())
}

fn prop_segregator(ops: Ops) -> Result<(), String> {
    // 200 sits inside the 256 class: lengths from the small side are clamped.
    let heap: Segregator<200, _, _> = Segregator::new(
        Segregated::new(Counting::new(Global)).with_cap(512),
        Counting::new(Global),
    );
    ops::run(&heap, &ops.0, &|| heap.small().check())?;
    heap.small().release_cached();
    let (small, large) = (heap.small().parent(), heap.large());
    if small.live() + large.live() + small.misfits.get() + large.misfits.get() != 0 {
        return Err(format!(
            "after trim: live {}/{}, misfits {}/{}",
            small.live(),
            large.live(),
            small.misfits.get(),
            large.misfits.get()
        ));
    }
    Ok(())
}

fn prop_fallback(ops: Ops) -> Result<(), String> {
    let heap = Fallback::new(Region::new(4096), Counting::new(Global));
    ops::run(&heap, &ops.0, &|| heap.check())?;
    let (p, s) = (heap.primary(), heap.secondary());
    if p.live.get() + s.live() + s.misfits.get() != 0 {
        return Err(format!(
            "after freeing all: live {}/{}, misfits {}",
            p.live.get(),
            s.live(),
            s.misfits.get()
        ));
    }
    Ok(())
}

/// A segregated primary over a bounded heap, falling back to `Global`.
fn prop_fallback_of_segregated(ops: Ops) -> Result<(), String> {
    let heap = Fallback::new(
        Segregated::new(Region::new(8192)).with_cap(256),
        Counting::new(Global),
    );
    ops::run(&heap, &ops.0, &|| heap.primary().check())?;
    heap.primary().release_cached();
    if heap.primary().parent().live.get() + heap.secondary().live() != 0 {
        return Err("blocks left after trim".into());
    }
    Ok(())
}

#[test]
fn ops_segregated() {
    quickcheck(2000).quickcheck(prop_segregated as fn(Ops) -> Result<(), String>);
}

#[test]
fn ops_segregator() {
    quickcheck(2000).quickcheck(prop_segregator as fn(Ops) -> Result<(), String>);
}

#[test]
fn ops_fallback() {
    quickcheck(2000).quickcheck(prop_fallback as fn(Ops) -> Result<(), String>);
}

#[test]
fn ops_fallback_of_segregated() {
    quickcheck(1000).quickcheck(prop_fallback_of_segregated as fn(Ops) -> Result<(), String>);
}

// ===== caps, batches, trim ==================================================

#[test]
fn refill_is_batched_and_frees_beyond_the_cap_go_back() {
    static SIZES: [usize; 1] = [32];
    // Room for 4 cached blocks; refills ask for 2 at a time.
    let heap = Segregated::with_sizes(Counting::new(Global), &SIZES)
        .with_cap(4 * 32)
        .with_batch(2);
    let parent = heap.parent();
    let blocks: Vec<_> = (0..10).map(|_| heap.allocate(l(20, 8)).unwrap()).collect();
    assert!(blocks.iter().all(|b| b.len() == 32));
    assert_eq!(parent.allocs.get(), 10, "5 refills of 2");
    assert_eq!(heap.cached_bytes(), 0);
    for b in blocks {
        // SAFETY: allocated above with this layout.
        unsafe { heap.deallocate(b.cast(), l(20, 8)) };
    }
    assert_eq!(heap.cached_bytes(), 4 * 32, "the list keeps up to its cap");
    assert_eq!(parent.deallocs.get(), 6, "the other 6 go back at once");
    assert_eq!(parent.live(), 4);
    // A cached block is reused without asking the parent.
    let b = heap.allocate(l(32, 16)).unwrap();
    assert_eq!(parent.allocs.get(), 10);
    // SAFETY: allocated just above.
    unsafe { heap.deallocate(b.cast(), l(32, 16)) };
    heap.release_cached();
    assert_eq!(parent.live(), 0);
    assert_eq!(parent.misfits.get(), 0);
    heap.check().unwrap();
}

#[test]
fn a_zero_cap_passes_every_block_through() {
    let heap = Segregated::new(Counting::new(Global)).with_cap(0);
    let b = heap.allocate(l(100, 4)).unwrap();
    assert_eq!(b.len(), 128);
    assert_eq!(heap.parent().allocs.get(), 1, "no batch beyond the cap");
    // SAFETY: allocated above with this layout.
    unsafe { heap.deallocate(b.cast(), l(100, 4)) };
    assert_eq!(heap.parent().live(), 0);
    assert_eq!(heap.parent().misfits.get(), 0);
}

#[test]
fn dropping_the_lists_gives_the_cache_back() {
    let parent = Counting::new(Global);
    {
        let heap = Segregated::new(&parent);
        let b = heap.allocate(l(8, 8)).unwrap();
        // SAFETY: allocated above with this layout.
        unsafe { heap.deallocate(b.cast(), l(8, 8)) };
        assert!(parent.live() > 0);
    }
    assert_eq!(parent.live(), 0);
}

#[test]
fn a_failing_batch_still_serves_the_first_block() {
    // Room for exactly three 64-byte blocks: the batch of 8 stops short.
    let heap = Segregated::new(Region::new(3 * 64));
    let a = heap.allocate(l(64, 8)).unwrap();
    assert_eq!(heap.cached_bytes(), 2 * 64);
    let b = heap.allocate(l(64, 8)).unwrap();
    let c = heap.allocate(l(64, 8)).unwrap();
    assert!(heap.allocate(l(64, 8)).is_err());
    for p in [a, b, c] {
        // SAFETY: allocated above with this layout.
        unsafe { heap.deallocate(p.cast(), l(64, 8)) };
    }
    heap.release_cached();
    assert_eq!(heap.parent().live.get(), 0);
}

// ===== inspection, threads ==================================================

#[test]
fn inspect_reports_cached_blocks_as_free() {
    let heap = Segregated::new(Counting::new(Global));
    let a = heap.allocate(l(40, 8)).unwrap(); // class 64: a batch of 8
    let s = HeapSummary::of(&heap);
    assert_eq!((s.used_blocks, s.used_bytes), (1, 64));
    assert_eq!((s.free_blocks, s.free_bytes), (7, 7 * 64));
    // SAFETY: allocated above with this layout.
    unsafe { heap.deallocate(a.cast(), l(40, 8)) };
    freespace_testkit::assert_all_free(&heap);
    assert_eq!(HeapSummary::of(&heap).free_blocks, 8);
    heap.release_cached();
    assert_eq!(HeapSummary::of(&heap), HeapSummary::default());
}

#[test]
fn composites_walk_both_sides() {
    let sg: Segregator<64, _, _> = Segregator::new(Counting::new(Global), Counting::new(Global));
    let fb = Fallback::new(Counting::new(Global), Counting::new(Global));
    let (a, b) = (
        sg.allocate(l(10, 1)).unwrap(),
        sg.allocate(l(100, 1)).unwrap(),
    );
    let c = fb.allocate(l(10, 1)).unwrap();
    assert_eq!(HeapSummary::of(&sg).used_bytes, 110);
    assert_eq!(HeapSummary::of(&fb).used_bytes, 10);
    // SAFETY: allocated above with these layouts.
    unsafe {
        sg.deallocate(a.cast(), l(10, 1));
        sg.deallocate(b.cast(), l(100, 1));
        fb.deallocate(c.cast(), l(10, 1));
    }
    freespace_testkit::assert_all_free(&sg);
    freespace_testkit::assert_all_free(&fb);
}

#[test]
fn every_block_can_move_to_another_thread() {
    fn send<T: Send>(_: &T) {}
    let heap = Segregator::<256, _, _>::new(Segregated::new(Global), Global);
    send(&heap);
    let handle = std::thread::spawn(move || {
        let b = heap.allocate(l(24, 8)).unwrap();
        // SAFETY: allocated just above.
        unsafe { heap.deallocate(b.cast(), l(24, 8)) };
        heap.small().cached_bytes()
    });
    assert_eq!(handle.join().unwrap(), 8 * 32);
}

// ===== routing ==============================================================

/// Every size between the request and the reported length frees back to the
/// side that allocated the block, and the parent always sees a fitting
/// layout (the strict `Counting` parent would count a misfit). Both sides
/// return more than asked (size classes, no cache), and the small side's
/// 64-byte class straddles the threshold of 40, so its length must be
/// clamped for the frees to come home.
#[test]
fn segregator_routes_every_fitting_size_home() {
    static LARGE: [usize; 3] = [64, 128, 256];
    let heap: Segregator<40, _, _> = Segregator::new(
        Segregated::new(Counting::new(Global)).with_cap(0),
        Segregated::with_sizes(Counting::new(Global), &LARGE).with_cap(0),
    );
    let (small, large) = (heap.small().parent(), heap.large().parent());
    let step = if cfg!(miri) { 13 } else { 1 };
    for size in (1..=300).step_by(step) {
        for align in [1, 8, 64] {
            let probe = heap.allocate(l(size, align)).unwrap();
            let len = probe.len();
            // SAFETY: allocated just above.
            unsafe { heap.deallocate(probe.cast(), l(size, align)) };
            assert!(size > 40 || len <= 40, "small lengths are clamped");
            for free_size in size..=len {
                let (before_small, before_large) = (small.deallocs.get(), large.deallocs.get());
                let b = heap.allocate(l(size, align)).unwrap();
                // SAFETY: live, freed with a size in request..=len.
                unsafe { heap.deallocate(b.cast(), l(free_size, align)) };
                let went_small = small.deallocs.get() == before_small + 1;
                let went_large = large.deallocs.get() == before_large + 1;
                assert!(
                    went_small == (size <= 40) && went_large == (size > 40),
                    "request {size} freed as {free_size}: routed to the wrong side"
                );
            }
        }
    }
    assert_eq!(small.misfits.get() + large.misfits.get(), 0);
    assert_eq!(small.live() + large.live(), 0);
}

#[test]
fn segregated_routes_every_fitting_size_home() {
    // No cache, so every free reaches the strict parent at once.
    let heap = Segregated::new(Counting::new(Global)).with_cap(0);
    let step = if cfg!(miri) { 37 } else { 1 };
    for size in (1..=600).step_by(step) {
        for align in [1, 16, 32] {
            let b = heap.allocate(l(size, align)).unwrap();
            let len = b.len();
            // SAFETY: allocated just above.
            unsafe { heap.deallocate(b.cast(), l(size, align)) };
            for free_size in (size..=len).step_by(step) {
                let b = heap.allocate(l(size, align)).unwrap();
                // SAFETY: live, freed with a size in request..=len.
                unsafe { heap.deallocate(b.cast(), l(free_size, align)) };
            }
        }
    }
    let parent = heap.parent();
    assert_eq!(
        parent.misfits.get(),
        0,
        "a free reached the parent with the wrong layout"
    );
    assert_eq!(parent.live(), 0);
}

#[test]
fn resizes_across_the_threshold_move_the_block() {
    let heap: Segregator<64, _, _> = Segregator::new(Counting::new(Global), Counting::new(Global));
    let p = heap.allocate(l(60, 8)).unwrap().cast::<u8>();
    // SAFETY: 60 writable bytes.
    unsafe { p.write_bytes(0xAB, 60) };
    // SAFETY: live with (60, 8); 100 >= 60.
    let q = unsafe { heap.grow(p, l(60, 8), l(100, 8)) }.unwrap();
    assert_eq!((heap.small().live(), heap.large().live()), (0, 1));
    // SAFETY: the first 60 bytes were kept.
    assert!(unsafe { q.cast::<u8>().as_ref() } == &0xAB);
    // SAFETY: live with (100, 8); 10 <= 100.
    let r = unsafe { heap.shrink(q.cast(), l(100, 8), l(10, 8)) }.unwrap();
    assert_eq!((heap.small().live(), heap.large().live()), (1, 0));
    // SAFETY: 10 bytes kept.
    assert_eq!(unsafe { r.cast::<[u8; 10]>().read() }, [0xAB; 10]);
    // SAFETY: live with (10, 8).
    unsafe { heap.deallocate(r.cast(), l(10, 8)) };
    assert_eq!(heap.small().live() + heap.large().live(), 0);
}

#[test]
fn segregated_resizes_within_a_class_in_place_and_move_between() {
    let heap = Segregated::new(Counting::new(Global));
    let p = heap.allocate(l(20, 4)).unwrap().cast::<u8>();
    // SAFETY: live with (20, 4); 30 >= 20, same class (32).
    let q = unsafe { heap.grow(p, l(20, 4), l(30, 4)) }.unwrap();
    assert_eq!((q.cast::<u8>(), q.len()), (p, 32), "same class: in place");
    // SAFETY: live with (30, 4); 40 is class 64.
    let r = unsafe { heap.grow(p, l(30, 4), l(40, 4)) }.unwrap();
    assert_eq!(r.len(), 64);
    assert_ne!(r.cast::<u8>(), p, "a new class: moved");
    // SAFETY: live with (40, 4); 8 is class 16.
    let s = unsafe { heap.shrink(r.cast(), l(40, 4), l(8, 4)) }.unwrap();
    assert_eq!(s.len(), 16);
    // SAFETY: live with (8, 4); align 64 goes to the parent.
    let t = unsafe { heap.grow(s.cast(), l(8, 4), l(8, 64)) }.unwrap();
    assert_eq!(t.cast::<u8>().as_ptr().addr() % 64, 0);
    // SAFETY: live with (8, 64).
    unsafe { heap.deallocate(t.cast(), l(8, 64)) };
    heap.release_cached();
    assert_eq!(heap.parent().live(), 0);
    assert_eq!(heap.parent().misfits.get(), 0);
}

#[test]
fn fallback_moves_a_block_its_primary_cannot_grow() {
    let heap = Fallback::new(Region::new(256), Counting::new(Global));
    let p = heap.allocate(l(200, 8)).unwrap().cast::<u8>();
    assert!(heap.primary().owns(p));
    // SAFETY: 200 writable bytes.
    unsafe { p.write_bytes(7, 200) };
    // SAFETY: live with (200, 8).
    let q = unsafe { heap.grow(p, l(200, 8), l(400, 8)) }.unwrap();
    assert!(heap.secondary().owns(q.cast()));
    assert_eq!(heap.primary().live.get(), 0, "freed in the primary");
    // SAFETY: 200 bytes kept.
    assert_eq!(unsafe { q.cast::<[u8; 200]>().read() }, [7; 200]);
    // The primary serves again, and frees route by ownership.
    let r = heap.allocate(l(100, 8)).unwrap();
    assert!(heap.primary().owns(r.cast()));
    // SAFETY: both live with these layouts.
    unsafe {
        heap.deallocate(r.cast(), l(100, 8));
        heap.deallocate(q.cast(), l(400, 8));
    }
    assert_eq!(heap.primary().live.get() + heap.secondary().live(), 0);
}

// ===== corruption ===========================================================

#[test]
fn double_free_of_the_latest_free_is_reported() {
    let heap = Segregated::new(Counting::new(Global));
    let p = heap.allocate(l(24, 8)).unwrap().cast::<u8>();
    let cached = heap.cached_bytes();
    let seen = reports_of(|| {
        // SAFETY: the first free is valid; the second is the misuse under
        // test, which the heap detects without touching the block.
        unsafe {
            heap.deallocate(p, l(24, 8));
            heap.deallocate(p, l(24, 8));
        }
    });
    assert_eq!(
        seen,
        [(
            Corruption::DoubleFree {
                addr: p.as_ptr().addr()
            },
            "segregated"
        )]
    );
    assert_eq!(heap.cached_bytes(), cached + 32, "cached once, not twice");
    heap.check().unwrap();
}

#[cfg(debug_assertions)]
#[test]
fn double_free_deeper_in_the_list_is_reported_in_debug_builds() {
    let heap = Segregated::new(Counting::new(Global));
    let a = heap.allocate(l(16, 8)).unwrap().cast::<u8>();
    let b = heap.allocate(l(16, 8)).unwrap().cast::<u8>();
    let seen = reports_of(|| {
        // SAFETY: `a` and `b` are freed once each; `a` again is the misuse.
        unsafe {
            heap.deallocate(a, l(16, 8));
            heap.deallocate(b, l(16, 8));
            heap.deallocate(a, l(16, 8));
        }
    });
    assert_eq!(
        seen,
        [(
            Corruption::DoubleFree {
                addr: a.as_ptr().addr()
            },
            "segregated"
        )]
    );
    heap.check().unwrap();
}

#[test]
fn a_misaligned_class_pointer_is_reported_not_cached() {
    let heap = Segregated::new(Counting::new(Global));
    let p = heap.allocate(l(32, 8)).unwrap().cast::<u8>();
    let cached = heap.cached_bytes();
    // SAFETY: 8 is inside the 32-byte block.
    let inner = unsafe { p.add(8) };
    let seen = reports_of(|| {
        // SAFETY: the misuse under test: detected before anything is touched.
        unsafe { heap.deallocate(inner, l(8, 8)) };
    });
    assert_eq!(
        seen,
        [(
            Corruption::MisalignedPointer {
                addr: inner.as_ptr().addr()
            },
            "segregated"
        )]
    );
    assert_eq!(heap.cached_bytes(), cached);
    // SAFETY: still live with (32, 8).
    unsafe { heap.deallocate(p, l(32, 8)) };
}

#[test]
fn checked_frees_name_the_foreign_pointer_and_free_nothing() {
    // Aligned to 64, so that no route can call it misaligned (under Miri an
    // 8-aligned request may get an address aligned to 8 only).
    let foreign = Global.allocate(l(32, 64)).unwrap().cast::<u8>();
    let addr = foreign.as_ptr().addr();

    let seg = Segregated::new(Counting::new(Global));
    let keep = seg.allocate(l(32, 8)).unwrap();
    let cached = seg.cached_bytes();
    // SAFETY: `foreign` is not `seg`'s: only checked.
    let class_path = unsafe { seg.try_deallocate(foreign, l(32, 8)) };
    assert_eq!(class_path, Err(Corruption::ForeignPointer { addr }));
    // SAFETY: as above; the forwarded path (align 64) is checked too.
    let forwarded = unsafe { seg.try_deallocate(foreign, l(32, 64)) };
    assert_eq!(forwarded, Err(Corruption::ForeignPointer { addr }));
    assert_eq!(seg.cached_bytes(), cached, "not absorbed into a list");
    // SAFETY: `keep` is live: freed once, then the checked double free.
    unsafe {
        assert_eq!(seg.try_deallocate(keep.cast(), l(32, 8)), Ok(()));
        assert_eq!(
            seg.try_deallocate(keep.cast(), l(32, 8)),
            Err(Corruption::DoubleFree {
                addr: keep.cast::<u8>().as_ptr().addr()
            })
        );
    }

    let fb = Fallback::new(Counting::new(Global), Counting::new(Global));
    // SAFETY: owned by neither side: only checked.
    let neither = unsafe { fb.try_deallocate(foreign, l(32, 8)) };
    assert_eq!(neither, Err(Corruption::ForeignPointer { addr }));
    assert_eq!(
        fb.primary().deallocs.get() + fb.secondary().deallocs.get(),
        0
    );

    let sg: Segregator<64, _, _> = Segregator::new(Counting::new(Global), Counting::new(Global));
    let big = sg.allocate(l(100, 8)).unwrap().cast::<u8>();
    // SAFETY: neither owns `foreign`; the small side does not own `big`:
    // both only checked. Then `big` is freed properly.
    unsafe {
        assert_eq!(
            sg.try_deallocate(foreign, l(32, 8)),
            Err(Corruption::ForeignPointer { addr })
        );
        assert_eq!(
            sg.try_deallocate(big, l(10, 8)),
            Err(Corruption::SizeMismatch {
                addr: big.as_ptr().addr()
            })
        );
        assert_eq!(sg.try_deallocate(big, l(100, 8)), Ok(()));
    }
    assert_eq!(sg.small().deallocs.get(), 0);
    assert_eq!(sg.large().live(), 0);

    // SAFETY: allocated from Global above.
    unsafe { Global.deallocate(foreign, l(32, 64)) };
}

/// `Fallback::deallocate` hands every pointer its primary does not own to
/// the secondary, the catch-all: a pointer from a third heap reaches it, and
/// the secondary (a heap with its own checks) reports it.
#[test]
fn a_pointer_from_another_heap_freed_into_a_fallback_is_reported() {
    let other = Region::new(4096);
    let stray = other.allocate(l(64, 8)).unwrap().cast::<u8>();
    let heap = Fallback::new(Region::new(4096), Region::new(4096));
    let kept = heap.allocate(l(64, 8)).unwrap();
    let seen = reports_of(|| {
        // SAFETY: the misuse under test; the secondary detects it by range
        // and touches nothing.
        unsafe { heap.deallocate(stray, l(64, 8)) };
    });
    assert_eq!(
        seen,
        [(
            Corruption::ForeignPointer {
                addr: stray.as_ptr().addr()
            },
            "test region"
        )]
    );
    assert_eq!(heap.primary().live.get(), 1, "nothing was freed");
    // SAFETY: both live with these layouts.
    unsafe {
        heap.deallocate(kept.cast(), l(64, 8));
        other.deallocate(stray, l(64, 8));
    }
}

const CHILD: &str = "FREESPACE_SEGREGATED_CHILD";

/// With the default handler a double free prints the documented line and
/// aborts; run in a child process (this same test binary).
#[test]
#[cfg_attr(miri, ignore = "spawns a process")]
fn double_free_aborts_with_the_exact_message() {
    if std::env::var_os(CHILD).is_some() {
        corruption::set_handler(corruption::abort_handler);
        let heap = Segregated::new(Global);
        let p = heap.allocate(l(48, 8)).unwrap().cast::<u8>();
        println!("addr={:#x}", p.as_ptr().addr());
        use std::io::Write;
        std::io::stdout().flush().unwrap();
        // SAFETY: the misuse under test; the report aborts the process.
        unsafe {
            heap.deallocate(p, l(48, 8));
            heap.deallocate(p, l(48, 8));
        }
        unreachable!("the default handler aborts");
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "double_free_aborts_with_the_exact_message",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, "1")
        .output()
        .unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(out.status.signal(), Some(libc_sigabrt()), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let addr = stdout
        .lines()
        .find_map(|line| line.split("addr=").nth(1)) // the harness may prefix the line
        .expect("the child prints the block's address");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let expected = format!("freespace: double free at {addr} (segregated)\n");
    assert!(
        stderr.contains(&expected),
        "stderr was {stderr:?}, expected {expected:?}"
    );
}

/// SIGABRT, without a libc dependency for one constant (6 on every Unix
/// this workspace targets).
fn libc_sigabrt() -> i32 {
    6
}

// ===== issue 16: checked frees never abort, never write =====================

/// A foreign, an interior and a double-freed pointer through each layer's
/// checked free, on every route: each must be refused with the right `Err`,
/// write nothing and report nothing (a report would abort this process).
#[test]
fn checked_frees_refuse_misuse_on_every_route() {
    use freespace_testkit::misuse::{refuses_misuse, Tracked};
    let class = l(48, 8);
    // Above the largest class: forwarded to the parent.
    let large = l(4000, 16);

    let seg = Segregated::new(Tracked::new()).with_cap(4096);
    let check = || seg.check();
    refuses_misuse(&seg, class, &check);
    refuses_misuse(&seg, large, &check);
    seg.release_cached();
    assert_eq!(seg.parent().live(), 0);

    let sg: Segregator<64, _, _> = Segregator::new(Tracked::new(), Tracked::new());
    refuses_misuse(&sg, class, &|| Ok(()));
    refuses_misuse(&sg, large, &|| Ok(()));
    assert_eq!(sg.small().live() + sg.large().live(), 0);

    // Both sides serve: the primary is a small cap, so large requests fall
    // through to the secondary.
    let fb = Fallback::new(
        Segregator::<64, _, _>::new(Tracked::new(), Empty),
        Tracked::new(),
    );
    refuses_misuse(&fb, class, &|| Ok(()));
    refuses_misuse(&fb, large, &|| Ok(()));
    assert_eq!(fb.primary().small().live() + fb.secondary().live(), 0);
}

/// A side that never has memory: owns nothing, refuses every free.
struct Empty;

// SAFETY: hands out nothing, so there is nothing to free.
unsafe impl Allocator for Empty {
    fn allocate(&self, _: Layout) -> Result<NonNull<[u8]>, AllocError> {
        Err(AllocError)
    }
    unsafe fn deallocate(&self, ptr: NonNull<u8>, _: Layout) {
        report(
            Corruption::ForeignPointer {
                addr: ptr.as_ptr().addr(),
            },
            "empty",
        );
    }
}

// SAFETY: nothing is ever freed; every pointer is refused unread.
unsafe impl CheckedFree for Empty {
    unsafe fn try_deallocate(&self, ptr: NonNull<u8>, _: Layout) -> Result<(), Corruption> {
        Err(Corruption::ForeignPointer {
            addr: ptr.as_ptr().addr(),
        })
    }
}

// SAFETY: owns nothing, and has no live blocks.
unsafe impl Owns for Empty {
    fn owns(&self, _: NonNull<u8>) -> bool {
        false
    }
}
