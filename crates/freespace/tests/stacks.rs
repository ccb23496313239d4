//! Every named stack passes the conformance suite and the op interpreter
//! with the stack's invariant checks after every op; a pointer from one
//! layer freed into another is reported, not absorbed.

use freespace::alloc::{Allocator, Global, Layout};
use freespace::tiered::{Tiered, PAGE_ALIGN};
use freespace::{
    stacks, Arena, BestFitHeap, BlockSize, Buddy, Check, Corruption, FromAllocator, Inspect,
    Segregated, Slab, StaticMemory,
};
use freespace_testkit::conformance::{self, Config};
use freespace_testkit::ops::{self, Ops};
use quickcheck::QuickCheck;
use std::sync::atomic::{AtomicUsize, Ordering};

/// quickcheck cases per stack: fewer under Miri.
const CASES: u64 = if cfg!(miri) { 4 } else { 300 };

/// A fixed arena of `len` bytes (leaked: sources hand out `'static` memory).
fn arena(len: usize) -> Arena {
    let mem =
        Box::leak(vec![core::mem::MaybeUninit::<u128>::uninit(); len / 16].into_boxed_slice());
    // SAFETY: `mem` is leaked, so valid and exclusively ours forever; `u128`
    // makes it 16-aligned.
    unsafe { Arena::from_raw_parts(mem.as_mut_ptr().cast(), len) }
}

#[test]
#[cfg_attr(miri, ignore = "mmap is not supported by Miri")]
fn general_stack_conforms() {
    let heap = stacks::general();
    let check = || heap.check_all();
    conformance::run(&heap, &Config::default().check(&check));
    fn prop(ops: Ops) -> Result<(), String> {
        let heap = stacks::general();
        ops::run(&heap, &ops.0, &|| heap.check_all()).map(|_| ())
    }
    QuickCheck::new()
        .tests(CASES)
        .quickcheck(prop as fn(Ops) -> Result<(), String>);
}

#[test]
#[cfg_attr(miri, ignore = "mmap is not supported by Miri")]
fn shared_stack_conforms() {
    let heap = stacks::shared();
    let check = || heap.check_all();
    conformance::run(&heap, &Config::default().check(&check));
}

#[test]
#[cfg_attr(miri, ignore = "mmap is not supported by Miri")]
fn segregated_best_fit_stack_conforms() {
    let heap = stacks::segregated_best_fit();
    let check = || heap.check_all();
    conformance::run(&heap, &Config::default().check(&check));
    fn prop(ops: Ops) -> Result<(), String> {
        let heap = stacks::segregated_best_fit();
        ops::run(&heap, &ops.0, &|| heap.check_all()).map(|_| ())
    }
    QuickCheck::new()
        .tests(CASES)
        .quickcheck(prop as fn(Ops) -> Result<(), String>);
}

#[test]
fn embedded_stack_conforms() {
    let len = if cfg!(miri) { 64 << 10 } else { 1 << 20 };
    let heap: stacks::Embedded = BestFitHeap::new(arena(len));
    let check = || heap.check();
    let cfg = Config::default().bounded().check(&check);
    let cfg = if cfg!(miri) {
        cfg.max_align(256).max_block(2048)
    } else {
        cfg
    };
    conformance::run(&heap, &cfg);
    fn prop(ops: Ops) -> Result<(), String> {
        let heap: stacks::Embedded = BestFitHeap::new(arena(256 << 10));
        ops::run(&heap, &ops.0, &|| heap.check()).map(|_| ())
    }
    QuickCheck::new()
        .tests(CASES)
        .quickcheck(prop as fn(Ops) -> Result<(), String>);
}

#[test]
#[cfg_attr(miri, ignore = "mmap is not supported by Miri")]
fn slab_buddy_stack_conforms() {
    let heap = stacks::slab_buddy();
    let check = || heap.check_all();
    conformance::run(&heap, &Config::default().check(&check));
}

/// The general stack over one fixed arena (as the benchmarks run it): the
/// buddy, the best-fit heap inside it and the slabs share the arena, and
/// once everything is freed the whole of it can be had again.
#[test]
fn general_stack_over_an_arena_conforms() {
    let len = if cfg!(miri) { 256 << 10 } else { 1 << 20 };
    let heap = stacks::general_over(arena(len));
    let check = || heap.check_all();
    let cfg = Config::default().bounded().check(&check);
    let cfg = if cfg!(miri) {
        cfg.max_align(256).max_block(2048)
    } else {
        cfg
    };
    conformance::run(&heap, &cfg);
}

/// The general stack's shape over a source Miri can run: slabs over a
/// best-fit heap and a buddy over memory from `Global`.
#[test]
fn general_over_global_runs_the_ops() {
    fn prop(ops: Ops) -> Result<(), String> {
        let heap = stacks::general_over(FromAllocator::new(Global));
        ops::run(&heap, &ops.0, &|| heap.check_all()).map(|_| ())
    }
    QuickCheck::new()
        .tests(CASES)
        .quickcheck(prop as fn(Ops) -> Result<(), String>);
}

/// The classic shape, [`stacks::SlabBuddy`], over a source Miri can run:
/// slabs over a buddy over memory from `Global`.
#[test]
fn slab_over_buddy_over_global_runs_the_ops() {
    fn prop(ops: Ops) -> Result<(), String> {
        let heap: Slab<Buddy<FromAllocator<Global>>> =
            Slab::new(Buddy::new(FromAllocator::new(Global)));
        ops::run(&heap, &ops.0, &|| heap.check_all()).map(|_| ())
    }
    QuickCheck::new()
        .tests(CASES)
        .quickcheck(prop as fn(Ops) -> Result<(), String>);
}

/// A block of one stack freed into another stack is reported through the
/// checked free, and the receiving heap is unchanged.
#[test]
fn a_pointer_from_another_layer_is_reported_not_absorbed() {
    // Static memory, not leaked boxes: this test also runs under Miri, whose
    // leak check would flag the boxes.
    static MEMORY_A: StaticMemory<{ 64 << 10 }> = StaticMemory::new();
    static MEMORY_B: StaticMemory<{ 64 << 10 }> = StaticMemory::new();
    let a: stacks::Embedded = BestFitHeap::new(Arena::new(MEMORY_A.take().unwrap()));
    let b: Buddy<Arena> = Buddy::new(Arena::new(MEMORY_B.take().unwrap()));
    let l = Layout::from_size_align(64, 8).unwrap();
    let p = a.allocate(l).unwrap().cast::<u8>();

    // SAFETY: the checked frees only inspect `p`; it is not freed by either.
    let into_buddy = unsafe { b.try_deallocate(p, l) };
    assert!(
        matches!(into_buddy, Err(Corruption::ForeignPointer { .. })),
        "{into_buddy:?}"
    );
    b.check().unwrap();

    let q = b.allocate(l).unwrap().cast::<u8>();
    // SAFETY: as above.
    let into_free_list = unsafe { a.try_deallocate(q, l) };
    assert!(
        matches!(into_free_list, Err(Corruption::ForeignPointer { .. })),
        "{into_free_list:?}"
    );
    a.check().unwrap();

    // A slab layer over the buddy does not take the free-list block either.
    let s: Slab<&Buddy<Arena>> = Slab::new(&b);
    let small = Layout::from_size_align(24, 8).unwrap();
    let r = a.allocate(small).unwrap().cast::<u8>();
    // SAFETY: as above.
    let into_slab = unsafe { s.try_deallocate(r, small) };
    assert!(into_slab.is_err(), "{into_slab:?}");
    s.check().unwrap();

    // A segregated front passes a size it has no list for to its parent,
    // which reports the foreign block (through a handler that returns, so
    // the block is left alone instead of the process aborting).
    static REPORTS: AtomicUsize = AtomicUsize::new(0);
    fn count(c: Corruption, block: &'static str) {
        assert!(
            matches!(c, Corruption::ForeignPointer { .. }),
            "{c:?} from {block}"
        );
        REPORTS.fetch_add(1, Ordering::SeqCst);
    }
    let seg: Segregated<&stacks::Embedded> = Segregated::new(&a);
    let big = Layout::from_size_align(4000, 8).unwrap();
    let foreign = b.allocate(big).unwrap().cast::<u8>();
    let previous = freespace::set_handler(count);
    // SAFETY: deliberately wrong (`foreign` is the buddy's); the heap detects
    // it before touching anything, and the handler returns.
    unsafe { seg.deallocate(foreign, big) };
    freespace::set_handler(previous);
    assert_eq!(REPORTS.load(Ordering::SeqCst), 1);
    a.check().unwrap();
    // SAFETY: `foreign` is still a live block of `b`.
    unsafe { b.deallocate(foreign, big) };

    // SAFETY: every block is live and freed once, by its own heap.
    unsafe {
        a.deallocate(p, l);
        a.deallocate(r, small);
        b.deallocate(q, l);
    }
    a.check().unwrap();
    b.check().unwrap();
}

#[test]
#[cfg_attr(
    miri,
    ignore = "mmap and thread-locals with destructors; covered by freespace-sync under Miri"
)]
fn shared_stack_runs_the_ops() {
    fn prop(ops: Ops) -> Result<(), String> {
        let heap = stacks::shared();
        ops::run(&heap, &ops.0, &|| heap.check_all()).map(|_| ())
    }
    QuickCheck::new()
        .tests(CASES)
        .quickcheck(prop as fn(Ops) -> Result<(), String>);
}

#[test]
#[cfg_attr(
    miri,
    ignore = "mmap and thread-locals with destructors; covered by freespace-sync under Miri"
)]
fn threaded_stack_conforms_and_runs_the_ops() {
    static DEPOT: stacks::ThreadedDepot = stacks::threaded_depot();
    static HEAP: stacks::Threaded = stacks::threaded(&DEPOT);
    let check = || HEAP.check_all();
    conformance::run(&HEAP, &Config::default().check(&check));
    fn prop(ops: Ops) -> Result<(), String> {
        ops::run(&HEAP, &ops.0, &|| HEAP.check_all()).map(|_| ())
    }
    QuickCheck::new()
        .tests(CASES)
        .quickcheck(prop as fn(Ops) -> Result<(), String>);
    // Everything the ops allocated is back (in magazines, the depot or the heap).
    HEAP.flush();
    DEPOT.reap();
    let heap = DEPOT.parent().lock();
    heap.reap();
    freespace_testkit::assert_all_free(&*heap);
    freespace_testkit::assert_all_free(heap.parent());
}

/// A parent whose invariants are broken on demand: `check_all` from the top
/// of a stack must reach it through every layer in between.
#[derive(Default)]
struct Breakable {
    broken: std::cell::Cell<bool>,
}

// SAFETY: every call goes to `Global`.
unsafe impl Allocator for Breakable {
    fn allocate(
        &self,
        l: Layout,
    ) -> Result<core::ptr::NonNull<[u8]>, freespace::alloc::AllocError> {
        Global.allocate(l)
    }
    unsafe fn deallocate(&self, p: core::ptr::NonNull<u8>, l: Layout) {
        // SAFETY: the caller's contract, passed on.
        unsafe { Global.deallocate(p, l) }
    }
}

impl Check for Breakable {
    fn check_all(&self) -> Result<(), freespace::Violation> {
        if self.broken.get() {
            Err(freespace::Violation::new("DEMO-X1", 0, "broken on purpose"))
        } else {
            Ok(())
        }
    }
}

#[test]
fn check_all_reaches_the_bottom_of_every_stack_shape() {
    use freespace::{Fallback, Locked, Segregator, Stats};
    let bottom = Breakable::default();
    let slab = Slab::new(&bottom);
    let seg = Segregated::new(&bottom);
    let routed = Segregator::<256, _, _>::new(&slab, &seg);
    let stack: Locked<Stats<_>> = Locked::new(Stats::new(&routed));
    let fallback = Fallback::new(&slab, &bottom);
    let l = Layout::new::<[u64; 4]>();
    let p = stack.allocate(l).unwrap();
    assert_eq!(stack.check_all(), Ok(()));
    assert_eq!(fallback.check_all(), Ok(()));
    bottom.broken.set(true);
    // The top layers' own checks see nothing wrong...
    assert_eq!(stack.check(), Ok(()));
    assert_eq!(slab.check(), Ok(()));
    // ...the whole-stack check finds the bottom through every router.
    assert_eq!(stack.check_all().unwrap_err().invariant, "DEMO-X1");
    assert_eq!(fallback.check_all().unwrap_err().invariant, "DEMO-X1");
    bottom.broken.set(false);
    // SAFETY: allocated above with `l`.
    unsafe { stack.deallocate(p.cast(), l) };
    assert_eq!(stack.check_all(), Ok(()));
}

// ---------------------------------------------------------------------------
// Tiered: the general stack's parent
// ---------------------------------------------------------------------------

/// `Tiered` alone, pages and all: the conformance suite (alignments up to
/// 4096 stay with the best-fit heap; the suite's page-sized blocks with
/// their own alignment go to the buddy) and the op interpreter.
#[test]
fn tiered_conforms_and_runs_the_ops() {
    let len = if cfg!(miri) { 256 << 10 } else { 1 << 20 };
    let heap: Tiered<Arena> = Tiered::new(arena(len));
    let check = || heap.check();
    let cfg = Config::default().bounded().check(&check);
    let cfg = if cfg!(miri) {
        cfg.max_align(256).max_block(2048)
    } else {
        cfg
    };
    conformance::run(&heap, &cfg);
    fn prop(ops: Ops) -> Result<(), String> {
        let heap: Tiered<FromAllocator<Global>, 4096> = Tiered::sized(FromAllocator::new(Global));
        ops::run(&heap, &ops.0, &|| heap.check()).map(|_| ())
    }
    QuickCheck::new()
        .tests(CASES)
        .quickcheck(prop as fn(Ops) -> Result<(), String>);
}

/// A block larger than the buddy's largest (2 GiB) is served from a region
/// of the source itself, for a plain and a page-aligned request, through
/// the named stacks: usable at both ends, owned, freed, and the stack
/// stays consistent (the C library serves such requests too; before, the
/// stack refused them).
#[test]
#[cfg_attr(miri, ignore = "maps gigabytes")]
fn stacks_serve_blocks_beyond_the_buddys_largest() {
    use freespace::tiered::BUDDY_MAX;
    use freespace::{stacks, Check, Owns};
    let general = stacks::general();
    let shared = stacks::shared();
    let len = BUDDY_MAX + (1 << 30);
    for align in [16, PAGE_ALIGN] {
        let l = Layout::from_size_align(len, align).unwrap();
        for heap in [&general as &dyn Allocator, &shared] {
            let p = heap.allocate(l).unwrap();
            assert!(p.len() >= len);
            let p = p.cast::<u8>();
            assert_eq!(p.as_ptr() as usize % align, 0);
            // SAFETY: a live block of `len` bytes or more.
            unsafe {
                p.as_ptr().write(1);
                p.as_ptr().add(len - 1).write(2);
                assert_eq!(*p.as_ptr().add(len / 2), 0, "fresh memory reads zero");
            }
            // SAFETY: live with `l`, freed once.
            unsafe { heap.deallocate(p, l) };
        }
        let p = general.allocate(l).unwrap().cast::<u8>();
        assert!(general.parent().owns(p));
        general.check_all().unwrap();
        // SAFETY: live with `l`, freed once.
        unsafe { general.deallocate(p, l) };
    }
    general.check_all().unwrap();
    shared.check_all().unwrap();
}

/// `inspect` reports every byte once: the buddy's blocks outside the
/// best-fit heap's regions, then that heap's own blocks; and `usable_size`
/// asks the heap that holds the block.
#[test]
fn tiered_inspect_reports_every_byte_once() {
    let heap: Tiered<Arena> = Tiered::new(arena(1 << 20));
    let page = Layout::from_size_align(PAGE_ALIGN, PAGE_ALIGN).unwrap();
    let block = Layout::from_size_align(3000, 16).unwrap();
    let blocks: Vec<_> = (0..8)
        .map(|i| {
            let l = if i % 2 == 0 { page } else { block };
            (heap.allocate(l).unwrap().cast::<u8>(), l)
        })
        .collect();
    for &(p, l) in &blocks {
        // SAFETY: `p` is live.
        let usable = unsafe { heap.usable_size(p) };
        if l == page {
            assert_eq!(usable, PAGE_ALIGN);
        } else {
            assert!((3000..3100).contains(&usable), "{usable}");
        }
    }
    let mut spans = Vec::new();
    heap.inspect(&mut |b| spans.push((b.addr, b.len)));
    spans.sort_unstable();
    for w in spans.windows(2) {
        assert!(w[0].0 + w[0].1 <= w[1].0, "overlap: {w:?}");
    }
    let mut buddy_total = 0;
    heap.buddy().inspect(&mut |b| buddy_total += b.len);
    assert_eq!(spans.iter().map(|s| s.1).sum::<usize>(), buddy_total);
    heap.check().unwrap();
    for (p, l) in blocks {
        // SAFETY: live, freed once with its layout.
        unsafe { heap.deallocate(p, l) };
    }
    heap.check().unwrap();
}

/// `block_at` names what a pointer is, for the malloc shim's reports.
#[test]
fn tiered_block_at_names_the_fault() {
    let heap: Tiered<Arena> = Tiered::new(arena(1 << 20));
    let l = Layout::from_size_align(5000, 16).unwrap();
    let p = heap.allocate(l).unwrap().cast::<u8>();
    let q = heap.allocate(l).unwrap().cast::<u8>();
    let page = Layout::from_size_align(PAGE_ALIGN, PAGE_ALIGN).unwrap();
    let g = heap.allocate(page).unwrap().cast::<u8>();
    // SAFETY: `p` is live.
    assert_eq!(heap.block_at(p), Ok(unsafe { heap.usable_size(p) }));
    assert_eq!(heap.block_at(g), Ok(PAGE_ALIGN));
    // SAFETY: 16 bytes into a 5000-byte block.
    let inner = unsafe { p.add(16) };
    assert_eq!(
        heap.block_at(inner),
        Err(Corruption::InteriorPointer {
            addr: inner.as_ptr() as usize
        })
    );
    let local = 0u64;
    assert!(matches!(
        heap.block_at(core::ptr::NonNull::from(&local).cast()),
        Err(Corruption::ForeignPointer { .. })
    ));
    // SAFETY: live, freed once.
    unsafe {
        heap.deallocate(p, l);
        heap.deallocate(g, page);
    }
    assert_eq!(
        heap.block_at(p),
        Err(Corruption::DoubleFree {
            addr: p.as_ptr() as usize
        })
    );
    assert!(matches!(
        heap.block_at(g),
        Err(Corruption::DoubleFree { .. })
    ));
    // SAFETY: live, freed once.
    unsafe { heap.deallocate(q, l) };
    heap.check().unwrap();
}

/// The checked free of `Tiered` (and so of `General`'s slab over it):
/// a block freed with a layout of the other side, a pointer of neither
/// side and a double free come back as errors, and the heap is unchanged.
#[test]
fn tiered_checked_free_refuses_and_touches_nothing() {
    let heap: Tiered<Arena> = Tiered::new(arena(1 << 20));
    let l = Layout::from_size_align(5000, 16).unwrap();
    let page = Layout::from_size_align(PAGE_ALIGN, PAGE_ALIGN).unwrap();
    let p = heap.allocate(l).unwrap().cast::<u8>();
    let g = heap.allocate(page).unwrap().cast::<u8>();
    // SAFETY: each refused call touches nothing; each `Ok` frees a live
    // block once.
    unsafe {
        assert!(matches!(
            heap.try_deallocate(p, page),
            Err(Corruption::SizeMismatch { .. })
        ));
        assert!(matches!(
            heap.try_deallocate(g, l),
            Err(Corruption::SizeMismatch { .. })
        ));
        let local = 0u64;
        assert!(matches!(
            heap.try_deallocate(core::ptr::NonNull::from(&local).cast(), l),
            Err(Corruption::ForeignPointer { .. })
        ));
        heap.check().unwrap();
        assert_eq!(heap.try_deallocate(p, l), Ok(()));
        assert_eq!(heap.try_deallocate(g, page), Ok(()));
        assert!(matches!(
            heap.try_deallocate(p, l),
            Err(Corruption::DoubleFree { .. })
        ));
        assert!(heap.try_deallocate(g, page).is_err());
    }
    heap.check().unwrap();
    // The general stack's slab takes its checked free from here.
    let general = stacks::general_over(arena(1 << 20));
    let q = general.allocate(l).unwrap().cast::<u8>();
    // SAFETY: live, freed once; the second call is refused.
    unsafe {
        assert_eq!(general.try_deallocate(q, l), Ok(()));
        assert!(general.try_deallocate(q, l).is_err());
    }
    general.check_all().unwrap();
}

/// A buddy block that becomes a best-fit region is given back to the
/// source first (`decommit`, whole pages): what earlier blocks there left
/// (here a page-aligned block written all over, then freed) is not carried
/// idle inside the region's free chunk. Over the testkit's `Recording`
/// source, whose decommit writes zeros, so it runs under Miri.
#[test]
fn a_best_fit_region_starts_with_its_pages_given_back() {
    use freespace::tiered::FromBuddy;
    use freespace::Source;
    use freespace_testkit::recording::{Event, Recording};
    const PAGE: usize = 4096;
    let regions = FromBuddy::new(Buddy::new(Recording::new(PAGE, 4 << 20)));
    let page = Layout::from_size_align(64 << 10, PAGE).unwrap();
    let old = regions.buddy().allocate(page).unwrap().cast::<u8>();
    // SAFETY: a live block of 64 KiB.
    unsafe { old.write_bytes(0xa5, 64 << 10) };
    // SAFETY: allocated above with `page`, freed once.
    unsafe { regions.buddy().deallocate(old, page) };
    let region = regions.acquire(64 << 10).unwrap();
    assert_eq!(region.cast::<u8>(), old, "the freed block is the region");
    let decommitted = regions.buddy().source().events().into_iter().any(|e| {
        matches!(e, Event::Decommit { pages: Some((addr, len)), .. }
            if addr == old.as_ptr() as usize && len == region.len())
    });
    assert!(decommitted, "{:?}", regions.buddy().source().events());
    // SAFETY: `region` is ours alone, `len` bytes; the stale bytes are gone.
    let bytes = unsafe { core::slice::from_raw_parts(old.as_ptr(), region.len()) };
    assert!(bytes.iter().all(|&b| b == 0));
    // SAFETY: `region` came from `regions` and nothing in it is in use.
    assert!(unsafe { regions.release(region) });
    regions.buddy().check().unwrap();
}
