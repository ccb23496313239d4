//! The testkit proves it can fail: every harness is run against allocators
//! broken in one specific way, and must catch each of them.

use freespace_core::alloc::{AllocError, Allocator, Global, Layout};
use freespace_testkit::conformance::{self, Config};
use freespace_testkit::ops::{self, Op, Ops};
use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr::NonNull;

/// Runs `f`, expecting a panic whose message contains `needle`.
fn expect_panic(needle: &str, f: impl FnOnce()) {
    let err = catch_unwind(AssertUnwindSafe(f))
        .expect_err("the harness did not catch the broken allocator");
    let msg = err
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| err.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default();
    assert!(
        msg.contains(needle),
        "expected a failure about {needle:?}, got: {msg}"
    );
}

/// A small trace that allocates several blocks, grows and frees some.
fn busy_trace() -> Vec<Op> {
    let mut ops = Vec::new();
    for i in 0..12 {
        ops.push(Op::Alloc {
            size: 24 + i * 8,
            align: 8,
            zeroed: false,
        });
    }
    for i in 0..6 {
        ops.push(Op::Grow {
            slot: i,
            by: 100,
            zeroed: false,
        });
        ops.push(Op::Free {
            slot: i * 3,
            excess: 0,
        });
    }
    ops
}

// ---------------------------------------------------------------------------
// Broken allocator 1: every third allocation hands out the previous block again.

#[derive(Default)]
struct Overlapping {
    n: Cell<usize>,
    last: Cell<Option<(NonNull<u8>, usize)>>,
}

// SAFETY: deliberately broken (returns overlapping blocks); only ever used
// where the harness must stop it before any harm is done.
unsafe impl Allocator for Overlapping {
    fn allocate(&self, l: Layout) -> Result<NonNull<[u8]>, AllocError> {
        self.n.set(self.n.get() + 1);
        if let (2, Some((p, len))) = (self.n.get() % 3, self.last.get()) {
            if len >= l.size() && l.size() > 0 && p.as_ptr() as usize % l.align() == 0 {
                return Ok(NonNull::slice_from_raw_parts(p, l.size()));
            }
        }
        let b = Global.allocate(l)?;
        self.last.set(Some((b.cast(), b.len())));
        Ok(b)
    }
    unsafe fn deallocate(&self, _: NonNull<u8>, _: Layout) {
        // Leaks on purpose: a shared block must not be freed twice.
    }
}

#[test]
fn shadow_catches_overlapping_blocks() {
    let r = ops::run(&Overlapping::default(), &busy_trace(), &|| Ok(()));
    let e = r.expect_err("overlap not caught");
    assert!(e.contains("overlap"), "{e}");
}

#[test]
#[cfg_attr(miri, ignore = "harness logic, no unsafe of interest; slow under Miri")]
fn conformance_catches_overlapping_blocks() {
    expect_panic("overlap", || {
        conformance::run(&Overlapping::default(), &Config::default())
    });
}

// ---------------------------------------------------------------------------
// Broken allocator 2: results one byte past the aligned address.

struct Misaligned;

// SAFETY: deliberately broken (misaligned results); blocks are in bounds of
// a larger Global block, which is leaked.
unsafe impl Allocator for Misaligned {
    fn allocate(&self, l: Layout) -> Result<NonNull<[u8]>, AllocError> {
        let big =
            Layout::from_size_align(l.size() + l.align() + 1, l.align()).map_err(|_| AllocError)?;
        let b = Global.allocate(big)?;
        let off = if l.align() > 1 { 1 } else { 0 };
        // SAFETY: `off + l.size() < big.size()`.
        Ok(NonNull::slice_from_raw_parts(
            unsafe { b.cast::<u8>().add(off) },
            l.size(),
        ))
    }
    unsafe fn deallocate(&self, _: NonNull<u8>, _: Layout) {}
}

#[test]
fn shadow_catches_misaligned_blocks() {
    let trace = [Op::Alloc {
        size: 32,
        align: 16,
        zeroed: false,
    }];
    let e = ops::run(&Misaligned, &trace, &|| Ok(())).expect_err("misalignment not caught");
    assert!(e.contains("misaligned"), "{e}");
}

#[test]
#[cfg_attr(miri, ignore = "harness logic, no unsafe of interest; slow under Miri")]
fn conformance_catches_misaligned_blocks() {
    expect_panic("not aligned", || {
        conformance::run(&Misaligned, &Config::default())
    });
}

// ---------------------------------------------------------------------------
// Broken allocator 3: grow copies only half of the old contents.

struct HalfCopyGrow;

// SAFETY: allocation and free are Global's; only `grow` is broken (it loses
// contents, never memory safety).
unsafe impl Allocator for HalfCopyGrow {
    fn allocate(&self, l: Layout) -> Result<NonNull<[u8]>, AllocError> {
        Global.allocate(l)
    }
    unsafe fn deallocate(&self, p: NonNull<u8>, l: Layout) {
        // SAFETY: `p` came from `Global` with `l` (caller contract).
        unsafe { Global.deallocate(p, l) }
    }
    unsafe fn grow(
        &self,
        p: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        let n = Global.allocate(new)?;
        // SAFETY: both blocks are live and at least `old.size() / 2` long.
        unsafe {
            core::ptr::copy_nonoverlapping(p.as_ptr(), n.cast::<u8>().as_ptr(), old.size() / 2);
            Global.deallocate(p, old);
        }
        Ok(n)
    }
}

#[test]
fn interpreter_catches_grow_that_drops_bytes() {
    let trace = [
        Op::Alloc {
            size: 64,
            align: 8,
            zeroed: false,
        },
        Op::Grow {
            slot: 0,
            by: 64,
            zeroed: false,
        },
    ];
    let e = ops::run(&HalfCopyGrow, &trace, &|| Ok(())).expect_err("lost bytes not caught");
    assert!(e.contains("lost contents"), "{e}");
}

#[test]
#[cfg_attr(miri, ignore = "harness logic, no unsafe of interest; slow under Miri")]
fn conformance_catches_grow_that_drops_bytes() {
    expect_panic("contents lost", || {
        conformance::run(&HalfCopyGrow, &Config::default())
    });
}

// ---------------------------------------------------------------------------
// Broken allocator 4: a bounded heap whose deallocate leaks.

struct LeakyArena {
    buf: NonNull<u8>,
    len: usize,
    used: Cell<usize>,
}

impl LeakyArena {
    fn new(len: usize) -> Self {
        let buf = Box::leak(vec![0u8; len].into_boxed_slice());
        Self {
            buf: NonNull::from(buf).cast(),
            len,
            used: Cell::new(0),
        }
    }
}

// SAFETY: blocks are disjoint ranges of a leaked buffer; freeing never reuses
// (that is the bug under test: memory is lost, never double-used).
unsafe impl Allocator for LeakyArena {
    fn allocate(&self, l: Layout) -> Result<NonNull<[u8]>, AllocError> {
        if l.size() == 0 {
            return Ok(freespace_core::layout::dangling(l));
        }
        let base = self.buf.as_ptr() as usize;
        let at = freespace_core::layout::align_up(base + self.used.get(), l.align())
            .ok_or(AllocError)?;
        let end = at.checked_add(l.size()).ok_or(AllocError)?;
        if end > base + self.len {
            return Err(AllocError);
        }
        self.used.set(end - base);
        // SAFETY: `at - base < len`.
        Ok(NonNull::slice_from_raw_parts(
            unsafe { self.buf.add(at - base) },
            l.size(),
        ))
    }
    unsafe fn deallocate(&self, _: NonNull<u8>, _: Layout) {}
}

impl freespace_core::Inspect for LeakyArena {
    fn inspect(&self, visit: &mut dyn FnMut(freespace_core::BlockInfo)) {
        let addr = self.buf.as_ptr() as usize;
        visit(freespace_core::BlockInfo {
            addr,
            len: self.used.get(),
            state: freespace_core::BlockState::Used,
        });
    }
}

#[test]
#[cfg_attr(miri, ignore = "harness logic, no unsafe of interest; slow under Miri")]
fn conformance_catches_a_leaking_free() {
    expect_panic("fit again", || {
        conformance::run(&LeakyArena::new(4 << 20), &Config::default().bounded())
    });
}

#[test]
fn assert_all_free_catches_a_leak() {
    let heap = LeakyArena::new(4096);
    ops::run(&heap, &busy_trace(), &|| Ok(())).unwrap();
    expect_panic("leak", || freespace_testkit::assert_all_free(&heap));
}

// ---------------------------------------------------------------------------
// Broken allocator 5: free scribbles over the next block.

struct Scribbler;

// SAFETY: blocks are Global's plus 64 bytes of slack; `deallocate` writes
// into a *different live block* of the interpreter when the next one follows
// directly: here it scribbles its own slack only, which the shadow sees as
// the tail of the returned length.
unsafe impl Allocator for Scribbler {
    fn allocate(&self, l: Layout) -> Result<NonNull<[u8]>, AllocError> {
        let b = Global.allocate(l)?;
        Ok(b)
    }
    unsafe fn deallocate(&self, p: NonNull<u8>, l: Layout) {
        // SAFETY: `p` came from `Global` with `l`.
        unsafe { Global.deallocate(p, l) }
    }
    unsafe fn shrink(
        &self,
        p: NonNull<u8>,
        _old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        // In-place shrink that corrupts the kept prefix.
        if new.size() > 0 {
            // SAFETY: `p` has at least `new.size() > 0` bytes.
            unsafe { p.write(p.read() ^ 0xff) };
        }
        Ok(NonNull::slice_from_raw_parts(p, new.size()))
    }
}

#[test]
fn interpreter_catches_corrupting_shrink() {
    let trace = [
        Op::Alloc {
            size: 64,
            align: 8,
            zeroed: false,
        },
        Op::Shrink { slot: 0, keep: 128 },
    ];
    let e = ops::run(&Scribbler, &trace, &|| Ok(())).expect_err("corrupting shrink not caught");
    assert!(e.contains("lost contents"), "{e}");
}

// ---------------------------------------------------------------------------
// Broken allocator 6: allocate_zeroed that does not zero; a short block.

struct Dirty;

// SAFETY: Global's blocks; only the zeroing promise is broken.
unsafe impl Allocator for Dirty {
    fn allocate(&self, l: Layout) -> Result<NonNull<[u8]>, AllocError> {
        let b = Global.allocate(l)?;
        // SAFETY: `b` has `b.len()` writable bytes.
        unsafe { b.cast::<u8>().as_ptr().write_bytes(0xAA, b.len()) };
        Ok(b)
    }
    unsafe fn deallocate(&self, p: NonNull<u8>, l: Layout) {
        // SAFETY: `p` came from `Global` with `l`.
        unsafe { Global.deallocate(p, l) }
    }
    fn allocate_zeroed(&self, l: Layout) -> Result<NonNull<[u8]>, AllocError> {
        self.allocate(l)
    }
}

#[test]
fn interpreter_catches_dirty_zeroed_allocation() {
    let trace = [Op::Alloc {
        size: 64,
        align: 8,
        zeroed: true,
    }];
    let e = ops::run(&Dirty, &trace, &|| Ok(())).expect_err("dirty zeroed block not caught");
    assert!(e.contains("zeroed block"), "{e}");
}

struct Short;

// SAFETY: returns a prefix of a real Global block: short, but in bounds.
unsafe impl Allocator for Short {
    fn allocate(&self, l: Layout) -> Result<NonNull<[u8]>, AllocError> {
        let b = Global.allocate(l)?;
        Ok(NonNull::slice_from_raw_parts(
            b.cast(),
            l.size().saturating_sub(1),
        ))
    }
    unsafe fn deallocate(&self, _: NonNull<u8>, _: Layout) {}
}

#[test]
fn shadow_catches_short_blocks() {
    let e = ops::run(
        &Short,
        &[Op::Alloc {
            size: 10,
            align: 1,
            zeroed: false,
        }],
        &|| Ok(()),
    )
    .unwrap_err();
    assert!(e.contains("short block"), "{e}");
}

// ---------------------------------------------------------------------------
// Huge layouts that "succeed", and the invariant hook.

struct AcceptsHuge;

// SAFETY: never actually used for a huge block: the suite stops at the first
// success; small requests are Global's.
unsafe impl Allocator for AcceptsHuge {
    fn allocate(&self, l: Layout) -> Result<NonNull<[u8]>, AllocError> {
        if l.size() > 1 << 40 {
            return Global
                .allocate(Layout::new::<u8>())
                .map(|b| NonNull::slice_from_raw_parts(b.cast(), 0));
        }
        Global.allocate(l)
    }
    unsafe fn deallocate(&self, p: NonNull<u8>, l: Layout) {
        // SAFETY: `p` came from `Global` with `l`.
        unsafe { Global.deallocate(p, l) }
    }
}

#[test]
#[cfg_attr(miri, ignore = "harness logic, no unsafe of interest; slow under Miri")]
fn conformance_catches_huge_layout_success() {
    expect_panic("huge layouts", || {
        conformance::run(&AcceptsHuge, &Config::default())
    });
}

#[test]
fn invariant_hook_failures_are_reported() {
    let calls = Cell::new(0);
    let check = || {
        calls.set(calls.get() + 1);
        if calls.get() == 3 {
            Err(freespace_core::Violation::new("DEMO-T1", 0x40, "made up"))
        } else {
            Ok(())
        }
    };
    let e = ops::run(&Global, &busy_trace(), &check).unwrap_err();
    assert!(
        e.contains("after op #2") && e.contains("invariant DEMO-T1"),
        "{e}"
    );
    expect_panic("invariant broken", || {
        let n = Cell::new(0);
        let check = || {
            n.set(n.get() + 1);
            if n.get() > 5 {
                Err(freespace_core::Violation::new("DEMO-T1", 0, "x"))
            } else {
                Ok(())
            }
        };
        conformance::run(&Global, &Config::default().check(&check))
    });
}

// ---------------------------------------------------------------------------
// And the harness passes a correct allocator.

#[test]
fn global_passes_everything() {
    conformance::run(&Global, &Config::default());
    fn prop(ops: Ops) -> Result<(), String> {
        ops::run(&Global, &ops.0, &|| Ok(())).map(|_| ())
    }
    quickcheck::QuickCheck::new()
        .tests(if cfg!(miri) { 5 } else { 300 })
        .quickcheck(prop as fn(Ops) -> Result<(), String>);
}

#[test]
fn decode_is_total() {
    // Every byte string decodes, and a trace of each op kind is produced.
    let bytes: Vec<u8> = (0..=255u8)
        .flat_map(|b| [b, b.wrapping_mul(7), 3, b])
        .collect();
    let ops = ops::decode(&bytes);
    assert_eq!(ops.len(), 256);
    assert!(ops.iter().any(|o| matches!(o, Op::Alloc { .. })));
    assert!(ops.iter().any(|o| matches!(o, Op::Free { .. })));
    assert!(ops.iter().any(|o| matches!(o, Op::Grow { .. })));
    assert!(ops.iter().any(|o| matches!(o, Op::Shrink { .. })));
    ops::run_bytes(&Global, &bytes, &|| Ok(())).unwrap();
}

// ---------------------------------------------------------------------------
// The testkit's own Bump heap is a correct (if wasteful) allocator.

/// A source handing out one leaked 1 MiB buffer, once.
struct OneRegion(Cell<bool>);

// SAFETY: the buffer is leaked (valid forever, CORE-S1), handed out at most once
// (CORE-S2), 16-aligned through `u128` with a length that is a multiple of 16 (CORE-S3);
// acquire cannot panic (CORE-S4).
unsafe impl freespace_core::Source for OneRegion {
    fn acquire(&self, min_len: usize) -> Option<NonNull<[u8]>> {
        const LEN: usize = if cfg!(miri) { 64 << 10 } else { 1 << 20 };
        if self.0.replace(true) || min_len > LEN {
            return None;
        }
        let buf: &'static mut [u128] = Box::leak(vec![0u128; LEN / 16].into_boxed_slice());
        Some(NonNull::slice_from_raw_parts(
            NonNull::from(buf).cast(),
            LEN,
        ))
    }
}

#[test]
fn bump_passes_conformance_and_ops() {
    let heap = freespace_testkit::Bump::new(OneRegion(Cell::new(false)));
    conformance::run(&heap, &Config::default().bounded().check(&|| heap.check()));
    let heap = freespace_testkit::Bump::new(OneRegion(Cell::new(false)));
    ops::run(&heap, &busy_trace(), &|| heap.check()).unwrap();
    freespace_testkit::assert_all_free(&heap);
}
