//! Integration tests of freespace-slab: the conformance suite and the op
//! interpreter on every configuration, reaping checked through the parent's
//! `Inspect`, constructor counts, and corruption reports (checked API and
//! the aborting default, in a child process).

use freespace_core::alloc::{AllocError, Allocator, Global, Layout};
use freespace_core::{
    layout::with_addr, BlockInfo, BlockSize, BlockState, CheckedFree, Corruption, HeapSummary,
    Inspect, Owns, Source,
};
use freespace_slab::{ObjectCache, Slab};
use freespace_testkit::misuse::{refuses_misuse, Tracked as Ledger};
use freespace_testkit::{assert_all_free, conformance, ops, Bump};
use quickcheck::{Gen, QuickCheck, TestResult};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::mem::MaybeUninit;
use std::ptr::NonNull;

// ---------------------------------------------------------------------------
// Parents used by the tests
// ---------------------------------------------------------------------------

/// A parent over `Global` that records every live block, so tests can see
/// through `Inspect` what the layer above still holds, and can make the heap
/// bounded with a byte budget.
struct Counting {
    live: RefCell<HashMap<usize, Layout>>,
    budget: usize,
    in_use: Cell<usize>,
    allocs: Cell<usize>,
}

impl Counting {
    /// Unbounded in practice; refuses only requests past 1 GiB.
    fn new() -> Self {
        Self::bounded(1 << 30)
    }

    fn bounded(budget: usize) -> Self {
        Self {
            live: RefCell::default(),
            budget,
            in_use: Cell::new(0),
            allocs: Cell::new(0),
        }
    }

    fn live_blocks(&self) -> usize {
        self.live.borrow().len()
    }
}

// SAFETY: every block is a `Global` block, freed with the layout recorded
// when it was made.
unsafe impl Allocator for Counting {
    fn allocate(&self, l: Layout) -> Result<NonNull<[u8]>, AllocError> {
        if l.size() > self.budget - self.in_use.get() {
            return Err(AllocError);
        }
        let b = Global.allocate(l)?;
        self.in_use.set(self.in_use.get() + l.size());
        self.allocs.set(self.allocs.get() + 1);
        let old = self
            .live
            .borrow_mut()
            .insert(b.cast::<u8>().as_ptr() as usize, l);
        assert!(old.is_none(), "Global returned a live block twice");
        Ok(NonNull::slice_from_raw_parts(b.cast(), l.size()))
    }

    unsafe fn deallocate(&self, ptr: NonNull<u8>, l: Layout) {
        if l.size() == 0 {
            return;
        }
        let recorded = self
            .live
            .borrow_mut()
            .remove(&(ptr.as_ptr() as usize))
            .unwrap_or_else(|| panic!("parent: free of {ptr:p}, not a live parent block"));
        assert_eq!(
            recorded.align(),
            l.align(),
            "parent: freed with another alignment"
        );
        assert!(
            recorded.size() == l.size(),
            "parent: freed with another size"
        );
        self.in_use.set(self.in_use.get() - l.size());
        // SAFETY: a live `Global` block with its layout.
        unsafe { Global.deallocate(ptr, recorded) }
    }
}

impl Inspect for Counting {
    fn inspect(&self, visit: &mut dyn FnMut(BlockInfo)) {
        for (&addr, l) in self.live.borrow().iter() {
            visit(BlockInfo {
                addr,
                len: l.size(),
                state: BlockState::Used,
            });
        }
    }
}

// SAFETY: exactly the live blocks' starts answer `true`.
unsafe impl Owns for Counting {
    fn owns(&self, ptr: NonNull<u8>) -> bool {
        self.live.borrow().contains_key(&(ptr.as_ptr() as usize))
    }
}

// SAFETY: only a recorded live block freed with its own layout is freed;
// anything else is refused having read the ledger alone.
unsafe impl CheckedFree for Counting {
    unsafe fn try_deallocate(&self, ptr: NonNull<u8>, l: Layout) -> Result<(), Corruption> {
        if l.size() == 0 {
            return Ok(());
        }
        let addr = ptr.as_ptr() as usize;
        match self.live.borrow().get(&addr) {
            None => return Err(Corruption::ForeignPointer { addr }),
            Some(r) if *r != l => return Err(Corruption::SizeMismatch { addr }),
            Some(_) => {}
        }
        // SAFETY: a live parent block with its recorded layout.
        unsafe { self.deallocate(ptr, l) };
        Ok(())
    }
}

// SAFETY: the recorded layout's size is what the block was allocated with;
// `free` deallocates with it.
unsafe impl BlockSize for Counting {
    unsafe fn usable_size(&self, ptr: NonNull<u8>) -> usize {
        self.live.borrow()[&(ptr.as_ptr() as usize)].size()
    }

    unsafe fn free(&self, ptr: NonNull<u8>) {
        let l = self.live.borrow()[&(ptr.as_ptr() as usize)];
        // SAFETY: live block with its recorded layout.
        unsafe { self.deallocate(ptr, l) }
    }
}

/// A source of 16-aligned regions from `Global`, freed when it is dropped.
#[derive(Default)]
struct GlobalSource(RefCell<Vec<(NonNull<u8>, Layout)>>);

// SAFETY: each region is a fresh `Global` block of the rounded length, ours
// until the source is dropped; `acquire` never panics on allocation failure.
unsafe impl Source for GlobalSource {
    fn acquire(&self, min_len: usize) -> Option<NonNull<[u8]>> {
        if min_len > 1 << 30 {
            return None;
        }
        let len = freespace_core::layout::align_up(min_len.max(16), 16)?;
        let l = Layout::from_size_align(len, 16).ok()?;
        let p = Global.allocate(l).ok()?.cast::<u8>();
        self.0.borrow_mut().push((p, l));
        Some(NonNull::slice_from_raw_parts(p, len))
    }
}

impl Drop for GlobalSource {
    fn drop(&mut self) {
        for (p, l) in self.0.take() {
            // SAFETY: allocated in `acquire` with `l`.
            unsafe { Global.deallocate(p, l) }
        }
    }
}

fn layout(size: usize, align: usize) -> Layout {
    Layout::from_size_align(size, align).unwrap()
}

fn addr<T: ?Sized>(p: NonNull<T>) -> usize {
    p.cast::<u8>().as_ptr() as usize
}

const SMALL_CLASSES: &[usize] = &[8, 24, 40, 64, 100, 128];

/// A quickcheck runner for `n` cases; under Miri a few short traces.
fn quickcheck(n: u64) -> QuickCheck {
    if cfg!(miri) {
        QuickCheck::new().tests(3).rng(Gen::new(8))
    } else {
        QuickCheck::new().tests(n)
    }
}

fn conformance_config<'a>(
    check: &'a dyn Fn() -> Result<(), freespace_core::Violation>,
) -> conformance::Config<'a> {
    let cfg = conformance::Config::default().check(check);
    if cfg!(miri) {
        cfg.max_align(64).max_block(4096)
    } else {
        cfg
    }
}

// ---------------------------------------------------------------------------
// Conformance
// ---------------------------------------------------------------------------

#[test]
#[cfg_attr(
    miri,
    ignore = "Miri aborts on huge Global requests instead of failing them"
)]
fn conformance_default_over_global() {
    let slab = Slab::new(Global);
    conformance::run(&slab, &conformance_config(&|| slab.check()));
    slab.reap();
    assert_eq!(slab.slab_counts(), (0, 0, 0));
}

#[test]
fn conformance_default_classes() {
    // The same over a parent that refuses requests past 1 GiB, so the
    // huge-layout checks also run under Miri.
    let parent = Counting::new();
    let slab = Slab::new(&parent);
    conformance::run(&slab, &conformance_config(&|| slab.check()));
    slab.reap();
    assert_eq!(parent.live_blocks(), 0);
}

#[test]
fn conformance_small_slabs_custom_classes() {
    let parent = Counting::new();
    let slab: Slab<&Counting, 1024> = Slab::sized_with_classes(&parent, SMALL_CLASSES);
    conformance::run(&slab, &conformance_config(&|| slab.check()));
    assert_all_free(&slab);
    slab.reap();
    assert_eq!(parent.live_blocks(), 0);
}

#[test]
fn conformance_over_bump() {
    let bump = Bump::new(GlobalSource::default());
    let slab: Slab<&Bump<GlobalSource>, 4096> = Slab::sized(&bump);
    conformance::run(&slab, &conformance_config(&|| slab.check()));
}

#[test]
#[cfg_attr(miri, ignore = "fills the heap with thousands of blocks")]
fn conformance_bounded_heap() {
    // max_empty 0: every empty slab goes straight back, so after freeing
    // everything the parent's whole budget is available again.
    let parent = Counting::bounded(1 << 20);
    let slab: Slab<&Counting, 16384> = Slab::sized(&parent).with_max_empty(0);
    conformance::run(
        &slab,
        &conformance::Config::default()
            .bounded()
            .max_block(1 << 16)
            .check(&|| slab.check()),
    );
    assert_eq!(parent.live_blocks(), 0);
}

// ---------------------------------------------------------------------------
// Op interpreter
// ---------------------------------------------------------------------------

fn ops_default(trace: ops::Ops) -> Result<(), String> {
    let parent = Counting::new();
    let slab = Slab::new(&parent);
    ops::run(&slab, &trace.0, &|| slab.check())?;
    assert_all_free(&slab);
    Ok(())
}

fn ops_small(trace: ops::Ops) -> Result<(), String> {
    let parent = Counting::new();
    let slab: Slab<&Counting, 512> =
        Slab::sized_with_classes(&parent, SMALL_CLASSES).with_max_empty(2);
    ops::run(&slab, &trace.0, &|| slab.check())?;
    assert_all_free(&slab);
    slab.reap();
    if parent.live_blocks() != 0 {
        return Err(format!(
            "{} parent blocks left after reap",
            parent.live_blocks()
        ));
    }
    Ok(())
}

fn ops_bump(trace: ops::Ops) -> Result<(), String> {
    let bump = Bump::new(GlobalSource::default());
    let slab: Slab<&Bump<GlobalSource>, 2048> = Slab::sized(&bump).with_max_empty(0);
    ops::run(&slab, &trace.0, &|| slab.check())?;
    assert_all_free(&slab);
    Ok(())
}

fn ops_bounded(trace: ops::Ops) -> Result<(), String> {
    let parent = Counting::bounded(48 * 1024);
    let slab: Slab<&Counting, 4096> = Slab::sized(&parent);
    ops::run(&slab, &trace.0, &|| slab.check())?;
    slab.reap();
    if parent.live_blocks() != 0 {
        return Err(format!(
            "{} parent blocks left after reap",
            parent.live_blocks()
        ));
    }
    Ok(())
}

#[test]
fn ops_interpreter_default_classes() {
    quickcheck(1000).quickcheck(ops_default as fn(ops::Ops) -> Result<(), String>);
}

#[test]
fn ops_interpreter_small_slabs() {
    quickcheck(2000).quickcheck(ops_small as fn(ops::Ops) -> Result<(), String>);
}

#[test]
fn ops_interpreter_over_bump() {
    quickcheck(1000).quickcheck(ops_bump as fn(ops::Ops) -> Result<(), String>);
}

#[test]
fn ops_interpreter_out_of_memory() {
    quickcheck(1000).quickcheck(ops_bounded as fn(ops::Ops) -> Result<(), String>);
}

#[test]
fn ops_from_fixed_bytes() {
    // A deterministic trace so Miri always sees a long run.
    let len = if cfg!(miri) { 400 } else { 4000 };
    let bytes: Vec<u8> = (0..len)
        .map(|i: u32| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let parent = Counting::new();
    let slab: Slab<&Counting, 1024> = Slab::sized_with_classes(&parent, SMALL_CLASSES);
    let report = ops::run_bytes(&slab, &bytes, &|| slab.check()).unwrap();
    assert!(report.allocs > 0);
    slab.reap();
    assert_eq!(parent.live_blocks(), 0);
}

// ---------------------------------------------------------------------------
// Routing, reaping, Owns / BlockSize / Inspect
// ---------------------------------------------------------------------------

#[test]
fn requests_route_by_size_and_alignment() {
    let parent = Counting::new();
    let slab = Slab::new(&parent);
    let cases = [
        (1, 1, Some(16)),
        (16, 16, Some(16)),
        (17, 8, Some(32)),
        (40, 8, Some(48)),
        (40, 32, Some(64)), // 48 is only 16-aligned
        (100, 128, Some(128)),
        (8192, 8, Some(8192)),
        (8193, 8, None),
        (100, 8192, None), // no class is 8192-aligned
    ];
    for (size, align, class) in cases {
        let l = layout(size, align);
        let before = parent.allocs.get();
        let b = slab.allocate(l).unwrap();
        match class {
            Some(c) => assert_eq!(b.len(), c, "{size}/{align}"),
            None => {
                assert_eq!(
                    parent.allocs.get(),
                    before + 1,
                    "{size}/{align} not forwarded"
                );
                assert!(parent.owns(b.cast()));
            }
        }
        // Every size up to the returned length frees back to the same place.
        // SAFETY: live block of `slab`, freed with its alignment and its returned length.
        unsafe { slab.try_deallocate(b.cast(), layout(b.len(), align)) }.unwrap();
    }
    slab.check().unwrap();
}

#[test]
fn reap_returns_every_empty_slab_to_the_parent() {
    let parent = Counting::new();
    let slab: Slab<&Counting, 4096> = Slab::sized(&parent).with_max_empty(3);
    let mut blocks = Vec::new();
    for i in 0..600 {
        let l = layout(1 + (i * 37) % 512, 8);
        blocks.push((slab.allocate(l).unwrap(), l));
    }
    let slabs_in_use = {
        let (p, f, e) = slab.slab_counts();
        p + f + e
    };
    assert!(slabs_in_use > 10);
    // Slabs plus the index table.
    assert_eq!(parent.live_blocks(), slabs_in_use + 1);
    for (b, l) in blocks {
        // SAFETY: each block is live, freed once with the layout it was allocated with.
        unsafe { slab.deallocate(b.cast(), l) };
    }
    slab.check().unwrap();
    let (p, f, e) = slab.slab_counts();
    assert_eq!((p, f), (0, 0));
    assert!(e <= 3 * slab.classes().len());
    assert!(e > 0);
    assert_eq!(HeapSummary::of(&parent).used_blocks, e + 1);
    assert_eq!(slab.reap(), e);
    // Every slab and the index table are back: the parent holds nothing.
    assert_all_free(&parent);
    assert_eq!(HeapSummary::of(&parent).used_blocks, 0);
    assert_eq!(HeapSummary::of(&slab), HeapSummary::default());
    slab.check().unwrap();
}

#[test]
fn empty_slabs_beyond_max_empty_go_back_at_once() {
    let parent = Counting::new();
    let slab: Slab<&Counting, 1024> = Slab::sized_with_classes(&parent, &[64]).with_max_empty(1);
    let l = layout(64, 8);
    let per_slab = {
        let p = slab.allocate(l).unwrap();
        let n = HeapSummary::of(&slab).free_blocks + 1;
        // SAFETY: `p` was just allocated with `l`.
        unsafe { slab.deallocate(p.cast(), l) };
        n
    };
    let blocks: Vec<_> = (0..per_slab * 4)
        .map(|_| slab.allocate(l).unwrap())
        .collect();
    assert_eq!(slab.slab_counts(), (0, 4, 0));
    for b in blocks {
        // SAFETY: each block is live, freed once with its layout.
        unsafe { slab.deallocate(b.cast(), l) };
        slab.check().unwrap();
    }
    assert_eq!(slab.slab_counts(), (0, 0, 1));
    assert_eq!(parent.live_blocks(), 2); // one kept slab + the index table
    drop(slab);
    assert_eq!(parent.live_blocks(), 0);
}

#[test]
fn inspect_covers_every_slab_byte() {
    let parent = Counting::new();
    let slab: Slab<&Counting, 2048> = Slab::sized_with_classes(&parent, &[24, 100]);
    let a = slab.allocate(layout(20, 8)).unwrap();
    let b = slab.allocate(layout(90, 4)).unwrap();
    let s = HeapSummary::of(&slab);
    let table = parent
        .live
        .borrow()
        .values()
        .filter(|l| l.size() != 2048)
        .map(|l| l.size())
        .sum::<usize>();
    assert_eq!(s.total_bytes(), 2 * 2048 + table);
    assert_eq!((s.used_blocks, s.used_bytes), (2, 124));
    let mut blocks = Vec::new();
    slab.inspect(&mut |b| blocks.push(b));
    for w in blocks.iter().filter(|b| b.len != table) {
        assert!(
            slab.owns(NonNull::new(std::ptr::without_provenance_mut(w.addr)).unwrap())
                || w.state == BlockState::Meta
        );
    }
    // SAFETY: `a` and `b` are live with these layouts.
    unsafe {
        slab.deallocate(a.cast(), layout(20, 8));
        slab.deallocate(b.cast(), layout(90, 4));
    }
    assert_all_free(&slab);
}

#[test]
fn owns_and_block_size_are_exact() {
    let parent = Counting::new();
    let slab: Slab<&Counting, 4096> = Slab::sized(&parent);
    let small = slab.allocate(layout(70, 8)).unwrap().cast::<u8>();
    let big = slab.allocate(layout(5000, 8)).unwrap().cast::<u8>();
    assert!(slab.owns(small) && slab.owns(big));
    assert!(!slab.owns(NonNull::from(&0u64).cast()));
    // SAFETY: `small` and `big` are live blocks of `slab`, freed once.
    unsafe {
        assert_eq!(slab.usable_size(small), 80);
        assert_eq!(slab.usable_size(big), 5000);
        slab.free(small);
        slab.free(big);
    }
    slab.reap();
    assert_eq!(parent.live_blocks(), 0);
}

#[test]
fn forwarded_block_imitating_a_slab_header_is_not_a_slab() {
    // A block the parent serves directly may start at a slab-aligned address
    // and contain a perfect copy of a real header; the index is not fooled.
    const S: usize = 1024;
    let parent = Counting::new();
    let slab: Slab<&Counting, S> = Slab::sized(&parent);
    let obj = slab.allocate(layout(16, 8)).unwrap().cast::<u8>();
    let header = with_addr(obj, addr(obj) & !(S - 1)).unwrap();
    let fake = slab.allocate(layout(S, S)).unwrap().cast::<u8>();
    assert_eq!(addr(fake) % S, 0);
    assert!(parent.owns(fake), "a slab-sized block is forwarded");
    // SAFETY: `fake` is a live forwarded block of `S` bytes, so the copy and `add(128)` stay inside it; `obj` and `fake` are freed once with their layouts.
    unsafe {
        core::ptr::copy_nonoverlapping(header.as_ptr(), fake.as_ptr(), 128);
        assert_eq!(slab.usable_size(fake), S, "answered by the parent");
        let inside = fake.add(128);
        assert_eq!(
            slab.try_deallocate(inside, layout(16, 8)),
            Err(Corruption::ForeignPointer { addr: addr(inside) })
        );
        slab.deallocate(fake, layout(S, S));
        slab.deallocate(obj, layout(16, 8));
    }
    slab.check().unwrap();
}

#[test]
fn statics_and_consts_are_built_at_compile_time() {
    #[allow(clippy::declare_interior_mutable_const)] // a const is the point of the test
    const SLAB: Slab<Global, 8192> = Slab::sized_with_classes(Global, &[32, 96]).with_max_empty(0);
    thread_local! {
        static CACHE: ObjectCache<[u64; 3], Global> = const { ObjectCache::new(Global) };
    }
    let slab = SLAB;
    assert_eq!(slab.classes(), &[32, 96]);
    assert_eq!(slab.slab_counts(), (0, 0, 0));
    CACHE.with(|c| {
        let p = c.alloc().unwrap();
        // SAFETY: `p` came from `c.alloc()` (no constructor: any contents are fine).
        unsafe { c.free(p) };
        c.check().unwrap();
    });
}

#[test]
fn invalid_configurations_are_rejected() {
    use freespace_slab::ConfigError;
    let e = |r: Result<Slab<Global, 1024>, (ConfigError, Global)>| r.err().map(|(e, _)| e);
    assert_eq!(
        e(Slab::try_sized_with_classes(Global, &[16, 16])),
        Some(ConfigError::NotIncreasing)
    );
    assert_eq!(
        e(Slab::try_sized_with_classes(Global, &[0])),
        Some(ConfigError::NotIncreasing)
    );
    assert_eq!(
        e(Slab::try_sized_with_classes(Global, &[2000])),
        Some(ConfigError::ClassTooLarge(2000))
    );
    assert_eq!(
        e(Slab::try_sized_with_classes(Global, &[16; 49])),
        Some(ConfigError::TooManyClasses)
    );
    let odd = Slab::<Global, 1000>::try_sized_with_classes(Global, &[16]);
    assert_eq!(odd.err().map(|(e, _)| e), Some(ConfigError::SlabSize));
    let r =
        std::panic::catch_unwind(|| Slab::<Global, 1024>::sized_with_classes(Global, &[64, 32]));
    assert!(r.is_err());
    // An empty table is valid: everything goes to the parent.
    let all_parent: Slab<Global, 1024> = Slab::sized_with_classes(Global, &[]);
    let b = all_parent.allocate(layout(8, 8)).unwrap();
    assert_eq!(all_parent.slab_counts(), (0, 0, 0));
    // SAFETY: `b` was allocated by `all_parent` with this layout.
    unsafe { all_parent.deallocate(b.cast(), layout(8, 8)) };
}

// ---------------------------------------------------------------------------
// Corruption
// ---------------------------------------------------------------------------

/// The plain free trusts its contract for a layout that routes to the
/// parent: the block goes to the parent without an index lookup. A slab
/// object freed that way (a contract breach) therefore reaches the parent,
/// whose own checks see a pointer that is not one of its blocks (this
/// parent panics; the workspace's heaps report it), and the slab layer is
/// left as it was. The checked free still refuses it at the slab
/// (`checked_free_reports_every_misuse`).
#[test]
fn plain_free_of_a_parent_layout_goes_to_the_parent_unlooked() {
    let parent = Counting::new();
    let slab: Slab<&Counting, 2048> = Slab::sized(&parent);
    let l = layout(24, 8);
    let p = slab.allocate(l).unwrap().cast::<u8>();
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        // SAFETY: the contract breach under test; the parent refuses the
        // pointer before it changes anything.
        unsafe { slab.deallocate(p, layout(4000, 8)) }
    }));
    let message = caught.expect_err("the parent was not asked");
    let message = message
        .downcast_ref::<String>()
        .map(String::as_str)
        .unwrap_or_default();
    assert!(message.contains("not a live parent block"), "{message}");
    slab.check().unwrap();
    // SAFETY: `p` is still live with `l`.
    unsafe { slab.deallocate(p, l) };
    slab.check().unwrap();
}

#[test]
fn checked_free_reports_every_misuse() {
    let parent = Counting::new();
    let slab: Slab<&Counting, 2048> = Slab::sized(&parent);
    let l = layout(24, 8);
    let p = slab.allocate(l).unwrap().cast::<u8>();
    let keep = slab.allocate(l).unwrap().cast::<u8>();
    // SAFETY: every pointer passed to `try_deallocate` is either a live block of that layer or one it must reject without touching; the header read/write goes through `keep`'s provenance (the whole slab) and is undone before further use.
    unsafe {
        // Interior pointer, and a pointer into the header.
        let inner = p.add(8);
        assert_eq!(
            slab.try_deallocate(inner, l),
            Err(Corruption::InteriorPointer { addr: addr(inner) })
        );
        let in_header = with_addr(p, (addr(p) & !2047) + 8).unwrap();
        assert_eq!(
            slab.try_deallocate(in_header, l),
            Err(Corruption::InteriorPointer {
                addr: addr(in_header)
            })
        );
        // Freed with the layout of another class, or one that routes to the parent.
        assert_eq!(
            slab.try_deallocate(p, layout(100, 8)),
            Err(Corruption::SizeMismatch { addr: addr(p) })
        );
        let parent_blocks = parent.live_blocks();
        assert_eq!(
            slab.try_deallocate(p, layout(4000, 8)),
            Err(Corruption::SizeMismatch { addr: addr(p) })
        );
        assert_eq!(
            parent.live_blocks(),
            parent_blocks,
            "the parent absorbed a slab object"
        );
        // Foreign pointers: the system allocator's, another slab layer's.
        let g = Global.allocate(l).unwrap().cast::<u8>();
        assert_eq!(
            slab.try_deallocate(g, l),
            Err(Corruption::ForeignPointer { addr: addr(g) })
        );
        Global.deallocate(g, l);
        let other: Slab<&Counting, 2048> = Slab::sized(&parent);
        let q = other.allocate(l).unwrap().cast::<u8>();
        assert_eq!(
            slab.try_deallocate(q, l),
            Err(Corruption::ForeignPointer { addr: addr(q) })
        );
        assert_eq!(
            other.try_deallocate(p, l),
            Err(Corruption::ForeignPointer { addr: addr(p) })
        );
        other.deallocate(q, l);
        // Now the real free, then a double free.
        assert_eq!(slab.try_deallocate(p, l), Ok(()));
        assert_eq!(
            slab.try_deallocate(p, l),
            Err(Corruption::DoubleFree { addr: addr(p) })
        );
        slab.check().unwrap();
        // An overwritten header: flip a byte of the seal, then restore it.
        let header = with_addr(keep, addr(keep) & !2047).unwrap();
        let saved = header.read();
        header.write(saved ^ 0x40);
        assert_eq!(
            slab.try_deallocate(keep, l),
            Err(Corruption::OverwrittenHeader { addr: addr(header) })
        );
        assert!(slab.check().is_err());
        header.write(saved);
        slab.check().unwrap();
        slab.deallocate(keep, l);
    }
    slab.reap();
    assert_eq!(parent.live_blocks(), 0);
}

/// Issue 16: the checked free never aborts and never writes, on both
/// routes: a size-class object, and a block the layout sends to the parent
/// (which used to reach the parent's reporting `deallocate`).
#[test]
fn checked_free_refuses_misuse_on_both_routes() {
    let slab = Slab::new(Ledger::new());
    let check = || slab.check();
    refuses_misuse(&slab, Layout::from_size_align(48, 8).unwrap(), &check);
    refuses_misuse(&slab, Layout::from_size_align(100_000, 16).unwrap(), &check);
    slab.reap();
    assert_eq!(slab.parent().live(), 0);
}

#[test]
fn object_cache_checked_free_reports_misuse() {
    let cache: ObjectCache<[u32; 5], Global, 1024> = ObjectCache::sized(Global);
    let slab = Slab::new(Ledger::new());
    let a = cache.alloc().unwrap();
    // SAFETY: each pointer is either a live object of that cache or layer, freed once with its layout, or one that is rejected without being touched.
    unsafe {
        let inner = a.cast::<u8>().add(4).cast::<[u32; 5]>();
        assert_eq!(
            cache.try_free(inner),
            Err(Corruption::InteriorPointer { addr: addr(inner) })
        );
        let s = slab
            .allocate(Layout::new::<[u32; 5]>())
            .unwrap()
            .cast::<[u32; 5]>();
        assert_eq!(
            cache.try_free(s),
            Err(Corruption::ForeignPointer { addr: addr(s) })
        );
        assert_eq!(
            slab.try_deallocate(a.cast(), Layout::new::<[u32; 5]>()),
            Err(Corruption::ForeignPointer { addr: addr(a) })
        );
        slab.deallocate(s.cast(), Layout::new::<[u32; 5]>());
        assert_eq!(cache.try_free(a), Ok(()));
        assert_eq!(
            cache.try_free(a),
            Err(Corruption::DoubleFree { addr: addr(a) })
        );
    }
    cache.check().unwrap();
}

/// Bytes of a slab header: seal, two links, class, list tag, free count,
/// search start.
const HEADER_BYTES: usize = 8 + 2 * std::mem::size_of::<usize>() + 4 * 4;

/// Flips byte `i` of the header at `header` (xor 0xFF).
///
/// # Safety
/// `header` is the base of a live slab and `i < HEADER_BYTES`.
unsafe fn flip(header: NonNull<u8>, i: usize) -> Flipped {
    // SAFETY: byte `i` of the header, and the aligned word around it, lie
    // in the slab (caller; headers are slab-aligned).
    unsafe {
        let word = header.add(i & !7);
        let saved = word.cast::<MaybeUninit<[u8; 8]>>().read();
        let b = header.add(i);
        b.write(b.read() ^ 0xFF);
        Flipped { word, saved }
    }
}

/// A header byte [`flip`]ped, to be undone.
struct Flipped {
    word: NonNull<u8>,
    saved: MaybeUninit<[u8; 8]>,
}

impl Flipped {
    /// Writes the aligned 8-byte word around the flipped byte back as it
    /// was, a link's provenance with it: flipping the byte back would give
    /// a link its value but no provenance (a byte written into a pointer
    /// leaves it none, under Miri's strict provenance).
    ///
    /// # Safety
    ///
    /// Nothing has changed the word since the flip but the flip.
    unsafe fn undo(self) {
        // SAFETY: the word lies in the slab (`flip`'s caller).
        unsafe { self.word.cast::<MaybeUninit<[u8; 8]>>().write(self.saved) }
    }
}

#[test]
fn every_header_byte_flip_is_refused_by_the_checked_free() {
    let slab: Slab<Ledger, 1024> = Slab::sized(Ledger::new());
    let cache: ObjectCache<[u64; 3], Global, 1024> = ObjectCache::sized(Global);
    let l = layout(32, 8);
    let objects: Vec<NonNull<u8>> = (0..4).map(|_| slab.allocate(l).unwrap().cast()).collect();
    let cached: Vec<_> = (0..4).map(|_| cache.alloc().unwrap()).collect();
    let p = objects[1];
    let o = cached[1];
    let header = with_addr(p, addr(p) & !1023).unwrap();
    let cache_header = with_addr(o.cast::<u8>(), addr(o) & !1023).unwrap();
    // SAFETY: each flip is undone before the next; the refused frees touch
    // nothing (checked below), and every object is freed once at the end.
    unsafe {
        for i in 0..HEADER_BYTES {
            let damage = flip(header, i);
            assert_eq!(
                slab.try_deallocate(p, l),
                Err(Corruption::OverwrittenHeader { addr: addr(header) }),
                "slab header byte {i}"
            );
            assert!(slab.check().is_err(), "check misses header byte {i}");
            damage.undo();
            slab.check().unwrap();

            let damage = flip(cache_header, i);
            assert_eq!(
                cache.try_free(o),
                Err(Corruption::OverwrittenHeader {
                    addr: addr(cache_header)
                }),
                "object cache header byte {i}"
            );
            assert!(cache.check().is_err(), "check misses cache header byte {i}");
            damage.undo();
            cache.check().unwrap();
        }
        // Every bit of the list tag, one at a time: never an invalid enum.
        for bit in 0..32 {
            let tag = header.add(HEADER_BYTES - 12).cast::<u32>();
            tag.write_unaligned(tag.read_unaligned() ^ 1 << bit);
            assert_eq!(
                slab.try_deallocate(p, l),
                Err(Corruption::OverwrittenHeader { addr: addr(header) })
            );
            tag.write_unaligned(tag.read_unaligned() ^ 1 << bit);
        }
        for p in objects {
            slab.deallocate(p, l);
        }
        for o in cached {
            cache.free(o);
        }
    }
    slab.check().unwrap();
    cache.check().unwrap();
    assert_eq!(cache.reap(), 1);
}

#[test]
fn damage_survives_allocations_until_a_free_sees_it() {
    // Allocations from a slab that stays on its list amend the seal without
    // verifying it: they must not launder damage into a valid seal.
    let slab: Slab<Ledger, 1024> = Slab::sized(Ledger::new());
    let l = layout(32, 8);
    let first = slab.allocate(l).unwrap().cast::<u8>();
    let header = with_addr(first, addr(first) & !1023).unwrap();
    // SAFETY: the flip is undone before the frees; every object is freed
    // once, and the refused free touches nothing.
    unsafe {
        let damage = flip(header, 9); // the `next` link
        let more: Vec<NonNull<u8>> = (0..5).map(|_| slab.allocate(l).unwrap().cast()).collect();
        assert!(more.iter().all(|&p| addr(p) & !1023 == addr(header)));
        assert_eq!(
            slab.try_deallocate(first, l),
            Err(Corruption::OverwrittenHeader { addr: addr(header) })
        );
        // Undoing the damage makes the amended seal exact again (the
        // allocations changed other words, not the link).
        damage.undo();
        slab.check().unwrap();
        slab.deallocate(first, l);
        for p in more {
            slab.deallocate(p, l);
        }
    }
    slab.check().unwrap();
}

#[test]
fn a_damaged_neighbour_is_caught_before_a_free_relinks_it() {
    // Two full slabs on the full list: B (newer, the head), then A. Freeing
    // an object of A moves A to the partial list, rewriting B's `next`.
    let cache: ObjectCache<[u64; 4], Global, 256> = ObjectCache::sized(Global);
    let n = cache.objects_per_slab();
    let objects: Vec<_> = (0..2 * n).map(|_| cache.alloc().unwrap()).collect();
    let (a, b) = (objects[0], objects[n]);
    let base = |o: NonNull<[u64; 4]>| with_addr(o.cast::<u8>(), addr(o) & !255).unwrap();
    assert_ne!(base(a), base(b), "two slabs");
    // SAFETY: the flip is undone; the refused free touches nothing, then
    // every object is freed once.
    unsafe {
        let damage = flip(base(b), 12);
        assert_eq!(
            cache.try_free(a),
            Err(Corruption::OverwrittenHeader {
                addr: addr(base(b))
            })
        );
        damage.undo();
        cache.check().unwrap();
        for o in objects {
            cache.free(o);
        }
    }
    cache.check().unwrap();
}

/// Runs this test binary again, running only `test`, with `SLAB_CHILD` set:
/// the child does something fatal. Returns (stdout, stderr, signal).
#[cfg(unix)]
fn run_child(test: &str, what: &str) -> (String, String, Option<i32>) {
    use std::os::unix::process::ExitStatusExt;
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env("SLAB_CHILD", what)
        .output()
        .unwrap();
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.signal(),
    )
}

#[test]
#[cfg(unix)]
#[cfg_attr(miri, ignore = "spawns a process")]
fn corruption_aborts_with_the_documented_message() {
    const TEST: &str = "corruption_aborts_with_the_documented_message";
    if let Ok(what) = std::env::var("SLAB_CHILD") {
        let slab = Slab::new(Global);
        let l = layout(32, 8);
        let p = slab.allocate(l).unwrap().cast::<u8>();
        // SAFETY: the child deliberately misuses the API; corruption is detected before anything is touched, and the process aborts.
        unsafe {
            match what.as_str() {
                "double free" => {
                    slab.deallocate(p, l);
                    println!("addr={:#x}", addr(p));
                    slab.deallocate(p, l);
                }
                "foreign pointer" => {
                    let g = Global.allocate(l).unwrap().cast::<u8>();
                    println!("addr={:#x}", addr(g));
                    slab.deallocate(g, l);
                }
                "interior pointer" => {
                    let i = p.add(1);
                    println!("addr={:#x}", addr(i));
                    slab.deallocate(i, l);
                }
                "overwritten header" => {
                    // The allocation path verifies the header it takes
                    // from: a bad list tag must not be acted on.
                    let header =
                        with_addr(p, addr(p) & !(freespace_slab::DEFAULT_SLAB_SIZE - 1)).unwrap();
                    let _damage = flip(header, HEADER_BYTES - 10);
                    println!("addr={:#x}", addr(header));
                    let _ = slab.allocate(l);
                }
                "object cache double free" => {
                    let cache: ObjectCache<u64, Global> = ObjectCache::new(Global);
                    let o = cache.alloc().unwrap();
                    cache.free(o);
                    println!("addr={:#x}", addr(o));
                    cache.free(o);
                }
                _ => unreachable!(),
            }
        }
        println!("survived");
        return;
    }
    for what in [
        "double free",
        "foreign pointer",
        "interior pointer",
        "object cache double free",
        "overwritten header",
    ] {
        let (stdout, stderr, signal) = run_child(TEST, what);
        assert_eq!(
            signal,
            Some(libc_sigabrt()),
            "{what}: stdout {stdout:?} stderr {stderr:?}"
        );
        assert!(!stdout.contains("survived"));
        let a = stdout
            .split("addr=")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("{what}: child printed no address: {stdout:?}"));
        let kind = what.trim_start_matches("object cache ");
        let line = format!("freespace: {kind} at {a} (slab)");
        assert!(
            stderr.lines().any(|l| l == line),
            "{what}: expected {line:?} in {stderr:?}"
        );
    }
}

const fn libc_sigabrt() -> i32 {
    6
}

// ---------------------------------------------------------------------------
// Object caches: constructors run exactly when promised
// ---------------------------------------------------------------------------

thread_local! {
    static CONSTRUCTED: Cell<usize> = const { Cell::new(0) };
    static DESTRUCTED: Cell<usize> = const { Cell::new(0) };
    static DROPPED: Cell<usize> = const { Cell::new(0) };
}

fn counts() -> (usize, usize, usize) {
    (CONSTRUCTED.get(), DESTRUCTED.get(), DROPPED.get())
}

struct Tracked {
    state: u64,
    payload: Vec<u8>,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        DROPPED.set(DROPPED.get() + 1);
    }
}

fn construct() -> Tracked {
    CONSTRUCTED.set(CONSTRUCTED.get() + 1);
    Tracked {
        state: 42,
        payload: vec![1, 2, 3],
    }
}

fn destruct(t: &mut Tracked) {
    assert_eq!(t.state, 42, "destructed an object not in constructed state");
    DESTRUCTED.set(DESTRUCTED.get() + 1);
}

#[test]
fn constructors_run_once_per_object_when_its_slab_is_made() {
    let parent = Counting::new();
    let cache: ObjectCache<Tracked, &Counting, 1024> =
        ObjectCache::sized_with_ctor(&parent, construct, Some(destruct));
    let n = cache.objects_per_slab();
    assert!(n > 4);
    assert_eq!(counts(), (0, 0, 0), "a new cache does no work");
    assert_eq!(parent.live_blocks(), 0);

    // The first alloc makes a slab: all of its objects are constructed.
    let first = cache.alloc().unwrap();
    assert_eq!(counts(), (n, 0, 0));
    let mut objects = vec![first];
    objects.extend((1..n).map(|_| cache.alloc().unwrap()));
    assert_eq!(
        counts(),
        (n, 0, 0),
        "objects of an existing slab are not constructed again"
    );
    for o in &objects {
        // SAFETY: `o` is a live object of `cache`, constructed, used by nobody else.
        let t = unsafe { &mut *o.as_ptr() };
        assert_eq!((t.state, &t.payload[..]), (42, &[1, 2, 3][..]));
        t.state = 7; // in use: the client changes it ...
    }
    // The next alloc needs a second slab.
    objects.push(cache.alloc().unwrap());
    assert_eq!(counts(), (2 * n, 0, 0));
    for o in &objects {
        // SAFETY: as above.
        unsafe { (*o.as_ptr()).state = 42 }; // ... and restores it before free
    }
    // Free and reuse: no construction.
    let last = objects.pop().unwrap();
    // SAFETY: `last` is live and back in constructed state.
    unsafe { cache.free(last) };
    let again = cache.alloc().unwrap();
    assert_eq!(again, last, "the freed object is reused");
    assert_eq!(counts(), (2 * n, 0, 0));
    objects.push(again);

    // Free everything: one slab is kept (max_empty = 1), the other goes back
    // at once and is destructed.
    for o in objects.drain(..) {
        // SAFETY: each object is live, in constructed state, freed once.
        unsafe { cache.free(o) };
    }
    assert_eq!(cache.slab_counts(), (0, 0, 1));
    assert_eq!(counts(), (2 * n, n, n));
    // The kept slab's objects come back constructed, without a constructor call.
    let o = cache.alloc().unwrap();
    // SAFETY: `o` is a live, constructed object.
    assert_eq!(unsafe { o.as_ref().state }, 42);
    assert_eq!(counts(), (2 * n, n, n));
    // SAFETY: `o` is live and in constructed state.
    unsafe { cache.free(o) };
    // Reaping destructs the rest and returns every slab to the parent.
    assert_eq!(cache.reap(), 1);
    assert_eq!(counts(), (2 * n, 2 * n, 2 * n));
    assert_eq!(parent.live_blocks(), 0);
    cache.check().unwrap();
}

#[test]
fn dropping_a_cache_destructs_only_its_free_objects() {
    let before = counts();
    let cache: ObjectCache<Tracked, Global, 1024> =
        ObjectCache::sized_with_ctor(Global, construct, None);
    let n = cache.objects_per_slab();
    let held = cache.alloc().unwrap();
    // Take the object out of the cache's memory before it goes away.
    // SAFETY: `held` is a constructed `Tracked`; reading it moves it out and the cache never drops objects in use.
    let taken = unsafe { held.as_ptr().read() };
    drop(cache);
    let after = counts();
    assert_eq!(after.0 - before.0, n);
    assert_eq!(after.1 - before.1, 0, "no destructor hook was given");
    assert_eq!(
        after.2 - before.2,
        n - 1,
        "the object in use is not dropped by the cache"
    );
    drop(taken);
}

#[test]
fn cache_without_constructor_hands_out_raw_memory() {
    let parent = Counting::new();
    let cache: ObjectCache<u64, &Counting, 256> = ObjectCache::sized(&parent).with_max_empty(0);
    let n = cache.objects_per_slab();
    let objects: Vec<_> = (0..3 * n)
        .map(|i| {
            let o = cache.alloc().unwrap();
            // SAFETY: `o` is a live object with room for a `u64`.
            unsafe { o.as_ptr().write(i as u64) };
            o
        })
        .collect();
    for (i, o) in objects.iter().enumerate() {
        // SAFETY: written above, still live.
        assert_eq!(unsafe { o.as_ptr().read() }, i as u64);
        assert_eq!(addr(*o) % 8, 0);
    }
    assert_eq!(cache.slab_counts(), (0, 3, 0));
    for o in objects {
        // SAFETY: each object is live and freed once (no constructor).
        unsafe { cache.free(o) };
    }
    assert_eq!(
        parent.live_blocks(),
        0,
        "max_empty 0 gives every slab back at once"
    );
}

#[test]
fn zero_sized_and_overaligned_objects() {
    #[repr(align(256))]
    struct Aligned([u8; 3]);
    let big: ObjectCache<Aligned, Global, 4096> =
        ObjectCache::sized_with_ctor(Global, || Aligned([9; 3]), None);
    let zst: ObjectCache<(), Global, 256> = ObjectCache::sized(Global);
    let a = big.alloc().unwrap();
    let b = big.alloc().unwrap();
    assert_eq!(addr(a) % 256, 0);
    // SAFETY: `b` is a live object, constructed.
    assert_eq!(unsafe { b.as_ref().0 }, [9; 3]);
    let z1 = zst.alloc().unwrap();
    let z2 = zst.alloc().unwrap();
    assert_ne!(z1, z2);
    // SAFETY: all four objects are live and freed once.
    unsafe {
        big.free(a);
        big.free(b);
        zst.free(z1);
        zst.free(z2);
    }
    big.check().unwrap();
    zst.check().unwrap();
}

/// A random alloc/free sequence on an object cache, checked after every step
/// against a model of which objects are live.
fn object_cache_trace(steps: Vec<(bool, u8)>, max_empty: u8) -> TestResult {
    let before = counts();
    let parent = Counting::new();
    let cache: ObjectCache<Tracked, &Counting, 512> =
        ObjectCache::sized_with_ctor(&parent, construct, Some(destruct))
            .with_max_empty(usize::from(max_empty % 3));
    let mut live: Vec<NonNull<Tracked>> = Vec::new();
    for (alloc, pick) in steps {
        if alloc || live.is_empty() {
            let o = cache.alloc().unwrap();
            if live.contains(&o) {
                return TestResult::error("object handed out twice");
            }
            // SAFETY: `o` is a live, constructed object.
            if unsafe { o.as_ref().state } != 42 {
                return TestResult::error("object not in constructed state");
            }
            // SAFETY: as above.
            unsafe { (*o.as_ptr()).state = 1 };
            live.push(o);
        } else {
            let o = live.swap_remove(usize::from(pick) % live.len());
            // SAFETY: `o` is live; restoring the constructed state before freeing it.
            unsafe {
                (*o.as_ptr()).state = 42;
                cache.free(o);
            }
        }
        if let Err(v) = cache.check() {
            return TestResult::error(v.to_string());
        }
        let (p, f, e) = cache.slab_counts();
        let (c, d, _) = counts();
        // Constructed objects = objects of slabs ever made; every slab that
        // went back was destructed whole.
        let made = (c - before.0) / cache.objects_per_slab();
        let gone = (d - before.1) / cache.objects_per_slab();
        if made - gone != p + f + e
            || parent.live_blocks() != (p + f + e) + usize::from(p + f + e > 0)
        {
            return TestResult::error("slab accounting differs from constructor counts");
        }
    }
    for o in live {
        // SAFETY: each object is live; restored to constructed state, freed once.
        unsafe {
            (*o.as_ptr()).state = 42;
            cache.free(o);
        }
    }
    cache.reap();
    let (c, d, dropped) = counts();
    TestResult::from_bool(
        parent.live_blocks() == 0
            && c - before.0 == d - before.1
            && d - before.1 == dropped - before.2,
    )
}

#[test]
fn object_cache_random_traces() {
    quickcheck(500).quickcheck(object_cache_trace as fn(Vec<(bool, u8)>, u8) -> TestResult);
}

#[test]
fn out_of_memory_constructs_nothing_it_keeps() {
    let before = counts();
    // Room for one slab and the index table, not for a second slab.
    let parent = Counting::bounded(1024 + 64);
    let cache: ObjectCache<Tracked, &Counting, 1024> =
        ObjectCache::sized_with_ctor(&parent, construct, Some(destruct));
    let n = cache.objects_per_slab();
    let objects: Vec<_> = (0..n).map(|_| cache.alloc().unwrap()).collect();
    assert!(cache.alloc().is_none(), "the parent is out of memory");
    let c = counts();
    assert_eq!((c.0 - before.0, c.1 - before.1), (n, 0));
    for o in objects {
        // SAFETY: each object is live and untouched (still constructed).
        unsafe { cache.free(o) };
    }
    drop(cache);
    assert_eq!(parent.live_blocks(), 0);

    // Room for a slab but not for the index table: the new slab's objects
    // are constructed, then destructed as the slab goes straight back.
    let before = counts();
    let parent = Counting::bounded(1024 + 63);
    let cache: ObjectCache<Tracked, &Counting, 1024> =
        ObjectCache::sized_with_ctor(&parent, construct, Some(destruct));
    assert!(cache.alloc().is_none());
    let c = counts();
    assert_eq!((c.0 - before.0, c.1 - before.1, c.2 - before.2), (n, n, n));
    assert_eq!(parent.live_blocks(), 0);
    cache.check().unwrap();
}
