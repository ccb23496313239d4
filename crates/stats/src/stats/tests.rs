//! Unit tests: every counter, peak tracking, the histogram, reset, the
//! `GlobalAlloc` path, the forwarded traits and the invariant check. The
//! contract suite, the op interpreter and the thread test are in
//! `tests/stats.rs`; the `#[global_allocator]` test is `tests/global.rs`.

use core::alloc::GlobalAlloc;
use core::cell::Cell;
use core::ptr::NonNull;
use std::alloc::System;

use freespace_core::alloc::{AllocError, Allocator, Global, Layout};
use freespace_core::{BlockSize, Corruption, Owns};
use freespace_source::FromAllocator;

use super::*;
use crate::{FailAfter, FailMode};

fn l(size: usize) -> Layout {
    Layout::from_size_align(size, 8).unwrap()
}

/// Every block lives in a `Global` block of `room(size)` bytes, so a resize
/// within 256 bytes stays in place and one across it moves; `fail` makes
/// every request fail. `calls` counts the requests that reached it.
#[derive(Default)]
struct Roomy {
    fail: Cell<bool>,
    calls: Cell<usize>,
}

const ROOM: usize = 256;

fn room(size: usize) -> Layout {
    l(size.max(ROOM))
}

impl Roomy {
    fn enter(&self) -> Result<(), AllocError> {
        self.calls.set(self.calls.get() + 1);
        if self.fail.get() {
            Err(AllocError)
        } else {
            Ok(())
        }
    }
}

// SAFETY: each block is a live `Global` block of `room(size)` bytes; a
// resize keeps the block when `room` of both sizes is the same allocation
// size, else moves the contents to a fresh one; failures change nothing.
unsafe impl Allocator for Roomy {
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        self.enter()?;
        Global.allocate(room(layout.size()))
    }

    unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
        self.calls.set(self.calls.get() + 1);
        // SAFETY: allocated with `room(layout.size())` (caller contract).
        unsafe { Global.deallocate(ptr, room(layout.size())) }
    }

    unsafe fn grow(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        self.enter()?;
        if room(old.size()) == room(new.size()) {
            return Ok(NonNull::slice_from_raw_parts(ptr, ROOM));
        }
        // Always a fresh block (a `realloc` might extend in place).
        let fresh = Global.allocate(room(new.size()))?;
        // SAFETY: both blocks are live, distinct, and at least `old.size()`
        // bytes long.
        unsafe {
            core::ptr::copy_nonoverlapping(ptr.as_ptr(), fresh.cast().as_ptr(), old.size());
            Global.deallocate(ptr, room(old.size()));
        }
        Ok(fresh)
    }

    unsafe fn shrink(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        self.enter()?;
        if room(old.size()) == room(new.size()) {
            return Ok(NonNull::slice_from_raw_parts(ptr, ROOM));
        }
        let fresh = Global.allocate(room(new.size()))?;
        // SAFETY: both blocks are live, distinct, and at least `new.size()`
        // bytes long.
        unsafe {
            core::ptr::copy_nonoverlapping(ptr.as_ptr(), fresh.cast().as_ptr(), new.size());
            Global.deallocate(ptr, room(old.size()));
        }
        Ok(fresh)
    }
}

#[test]
fn allocations_and_frees_are_counted_with_their_bytes() {
    let heap = Stats::new(Roomy::default());
    let a = heap.allocate(l(24)).unwrap();
    let b = heap.allocate_zeroed(l(1000)).unwrap();
    assert_eq!(a.len(), 24, "the request, not the inner block's 256");
    assert_eq!(b.len(), 1000);
    let s = heap.snapshot();
    assert_eq!((s.allocations, s.frees, s.live_blocks), (2, 0, 2));
    assert_eq!(
        (s.live_bytes, s.peak_live_bytes, s.total_requested_bytes),
        (1024, 1024, 1024)
    );
    // SAFETY: both are live with these layouts.
    unsafe {
        heap.deallocate(a.cast(), l(24));
        heap.deallocate(b.cast(), l(1000));
    }
    let s = heap.snapshot();
    assert_eq!(
        (s.allocations, s.frees, s.live_blocks, s.live_bytes),
        (2, 2, 0, 0)
    );
    assert_eq!((s.peak_live_bytes, s.total_requested_bytes), (1024, 1024));
    assert_eq!(s.failures(), 0);
    heap.check().unwrap();
}

#[test]
fn grows_and_shrinks_in_place_and_moved() {
    let heap = Stats::new(Roomy::default());
    let p = heap.allocate(l(16)).unwrap().cast::<u8>();
    // SAFETY: `p` stays live through the chain; each call gets the current
    // pointer and layout.
    unsafe {
        let q = heap.grow(p, l(16), l(200)).unwrap().cast::<u8>();
        assert_eq!(q, p, "within the room: in place");
        let r = heap.grow_zeroed(q, l(200), l(600)).unwrap().cast::<u8>();
        let s = heap.shrink(r, l(600), l(400)).unwrap().cast::<u8>();
        let t = heap.shrink(s, l(400), l(100)).unwrap().cast::<u8>();
        let u = heap.shrink(t, l(100), l(50)).unwrap();
        assert_eq!(u.len(), 50);
        heap.deallocate(u.cast(), l(50));
    }
    let s = heap.snapshot();
    assert_eq!((s.grows_in_place, s.grows_moved), (1, 1));
    // 600 -> 400 moves (room 600 vs 400), 400 -> 100 moves, 100 -> 50 stays.
    assert_eq!((s.shrinks_in_place, s.shrinks_moved), (1, 2));
    assert_eq!((s.grows(), s.shrinks()), (2, 3));
    assert_eq!((s.allocations, s.frees, s.live_bytes), (1, 1, 0));
    assert_eq!(s.peak_live_bytes, 600);
    assert_eq!(s.total_requested_bytes, 16 + 184 + 400);
    heap.check().unwrap();
}

#[test]
fn zero_size_requests_are_counted_apart_and_never_reach_the_inner_allocator() {
    let heap = Stats::new(Roomy::default());
    let z = heap.allocate(l(0)).unwrap();
    let z2 = heap.allocate_zeroed(l(0)).unwrap();
    assert_eq!((z.len(), z2.len()), (0, 0));
    // SAFETY: zero-size blocks: freeing is a no-op, growing allocates,
    // shrinking to zero frees.
    unsafe {
        heap.deallocate(z.cast(), l(0));
        let b = heap.grow(z2.cast(), l(0), l(32)).unwrap();
        let z3 = heap.shrink(b.cast(), l(32), l(0)).unwrap();
        assert_eq!(z3.len(), 0);
        heap.deallocate(z3.cast(), l(0));
    }
    let s = heap.snapshot();
    assert_eq!(s.zero_size, 2);
    assert_eq!((s.allocations, s.frees, s.live_bytes), (1, 1, 0));
    assert_eq!(
        (s.grows(), s.shrinks()),
        (0, 0),
        "from/to zero is allocate/free"
    );
    assert_eq!(
        heap.inner().calls.get(),
        2,
        "only the 32-byte block reached it"
    );
    heap.check().unwrap();
}

#[test]
fn failures_are_counted_by_kind() {
    let heap = Stats::new(Roomy::default());
    let p = heap.allocate(l(100)).unwrap().cast::<u8>();
    heap.inner().fail.set(true);
    assert!(heap.allocate(l(8)).is_err());
    assert!(heap.allocate_zeroed(l(8)).is_err());
    // SAFETY: `p` is live with `l(100)`; failed resizes leave it so.
    unsafe {
        assert!(heap.grow(p, l(100), l(120)).is_err());
        assert!(heap.grow_zeroed(p, l(100), l(120)).is_err());
        assert!(heap.shrink(p, l(100), l(10)).is_err());
        heap.inner().fail.set(false);
        heap.deallocate(p, l(100));
    }
    let s = heap.snapshot();
    assert_eq!(
        (s.failed_allocations, s.failed_grows, s.failed_shrinks),
        (2, 2, 1)
    );
    assert_eq!(s.failures(), 5);
    assert_eq!(
        (s.allocations, s.grows(), s.shrinks(), s.live_bytes),
        (1, 0, 0, 0)
    );
    heap.check().unwrap();
}

#[test]
fn fail_after_inside_stats_shows_up_as_failures() {
    // Stats over FailAfter: the injected failures reach Stats and count.
    let heap = Stats::new(FailAfter::new(Global, 1).with_mode(FailMode::FromThenOn));
    let p = heap.allocate(l(64)).unwrap().cast::<u8>(); // request 0
    assert!(heap.allocate(l(64)).is_err()); // request 1
                                            // SAFETY: `p` is live with `l(64)`; the failed grow leaves it so.
    unsafe {
        assert!(heap.grow(p, l(64), l(128)).is_err()); // request 2
        let q = heap.shrink(p, l(64), l(32)).unwrap(); // not a request
        heap.deallocate(q.cast(), l(32));
    }
    let s = heap.snapshot();
    assert_eq!(
        (s.allocations, s.failed_allocations, s.failed_grows),
        (1, 1, 1)
    );
    assert_eq!(
        (s.shrinks(), s.frees, s.live_bytes, s.peak_live_bytes),
        (1, 1, 0, 64)
    );
    assert_eq!(
        (heap.inner().requests(), heap.inner().failures()),
        (3, 2),
        "FailAfter's own view agrees"
    );
    heap.check().unwrap();
    heap.inner().check().unwrap();
}

#[test]
fn stats_inside_fail_after_sees_only_what_gets_through() {
    // FailAfter over Stats: the injected failures never reach Stats.
    let heap = FailAfter::new(Stats::new(Global), 1);
    let a = heap.allocate(l(8)).unwrap(); // request 0
    assert!(heap.allocate(l(8)).is_err()); // request 1, refused above Stats
    let b = heap.allocate(l(16)).unwrap(); // request 2
                                           // SAFETY: both are live with these layouts.
    unsafe {
        heap.deallocate(a.cast(), l(8));
        heap.deallocate(b.cast(), l(16));
    }
    let s = heap.inner().snapshot();
    assert_eq!((s.allocations, s.frees, s.failures()), (2, 2, 0));
    assert_eq!((s.total_requested_bytes, s.peak_live_bytes), (24, 24));
    heap.inner().check().unwrap();
}

#[test]
fn peak_is_the_largest_live_total_ever() {
    let heap = Stats::new(Global);
    let a = heap.allocate(l(100)).unwrap();
    let b = heap.allocate(l(200)).unwrap();
    // SAFETY: live blocks with these layouts, each freed once.
    unsafe { heap.deallocate(a.cast(), l(100)) };
    let c = heap.allocate(l(50)).unwrap();
    let s = heap.snapshot();
    assert_eq!((s.live_bytes, s.peak_live_bytes), (250, 300));
    let d = heap.allocate(l(60)).unwrap();
    assert_eq!(heap.snapshot().peak_live_bytes, 310);
    // SAFETY: as above.
    unsafe {
        heap.deallocate(b.cast(), l(200));
        heap.deallocate(c.cast(), l(50));
        heap.deallocate(d.cast(), l(60));
    }
    let s = heap.snapshot();
    assert_eq!(
        (s.live_bytes, s.peak_live_bytes, s.total_requested_bytes),
        (0, 310, 410)
    );
}

#[test]
fn histogram_bins_by_power_of_two_class() {
    assert_eq!(size_class(0), 0);
    assert_eq!(size_class(1), 0);
    assert_eq!(size_class(2), 1);
    assert_eq!(size_class(16), 4);
    assert_eq!(size_class(17), 5);
    assert_eq!(size_class(isize::MAX as usize), SIZE_CLASSES - 1);
    assert_eq!(size_class(usize::MAX), SIZE_CLASSES - 1);
    let heap = Stats::new(Global);
    let sizes = [1, 2, 3, 4, 5, 16, 17, 32, 33, 1000, 1024, 1025];
    let blocks: std::vec::Vec<_> = sizes
        .iter()
        .map(|&n| heap.allocate(l(n)).unwrap())
        .collect();
    let h = heap.snapshot().histogram;
    let mut expect = [0usize; SIZE_CLASSES];
    for (class, n) in [
        (0, 1),
        (1, 1),
        (2, 2),
        (3, 1),
        (4, 1),
        (5, 2),
        (6, 1),
        (10, 2),
        (11, 1),
    ] {
        expect[class] = n;
    }
    assert_eq!(h, expect);
    for (b, &n) in blocks.iter().zip(&sizes) {
        // SAFETY: each is live with `l(n)`.
        unsafe { heap.deallocate(b.cast(), l(n)) };
    }
    assert_eq!(heap.snapshot().histogram, expect, "frees do not unbin");
    heap.check().unwrap();
}

#[test]
fn reset_clears_events_and_keeps_what_is_live() {
    let heap = Stats::new(Roomy::default());
    let kept = heap.allocate(l(40)).unwrap();
    let gone = heap.allocate(l(400)).unwrap();
    // SAFETY: live with `l(400)`.
    unsafe { heap.deallocate(gone.cast(), l(400)) };
    heap.inner().fail.set(true);
    assert!(heap.allocate(l(1)).is_err());
    heap.inner().fail.set(false);
    assert!(heap.allocate(l(0)).is_ok());
    heap.reset();
    let s = heap.snapshot();
    assert_eq!(
        s,
        Snapshot {
            live_blocks: 1,
            live_bytes: 40,
            peak_live_bytes: 40,
            ..Snapshot::default()
        }
    );
    heap.check().unwrap();
    // SAFETY: live with `l(40)`.
    unsafe { heap.deallocate(kept.cast(), l(40)) };
    let s = heap.snapshot();
    assert_eq!(
        (s.allocations, s.frees, s.live_blocks, s.live_bytes),
        (0, 1, 0, 0)
    );
    heap.check().unwrap();
}

#[test]
fn check_reports_each_broken_invariant() {
    let heap = Stats::new(Global);
    heap.check().unwrap();
    heap.histogram[3].store(1, Relaxed);
    assert_eq!(heap.check().unwrap_err().invariant, "STATS-S2");
    heap.allocations.store(1, Relaxed);
    heap.check().unwrap();
    heap.live_bytes.store(5, Relaxed);
    assert_eq!(heap.check().unwrap_err().invariant, "STATS-S1");
    heap.peak_live_bytes.store(5, Relaxed);
    assert_eq!(heap.check().unwrap_err().invariant, "STATS-S3");
    heap.live_blocks.store(1, Relaxed);
    heap.check().unwrap();
}

#[test]
fn display_is_a_table_of_every_counter() {
    let heap = Stats::new(Global);
    let b = heap.allocate(l(24)).unwrap();
    // SAFETY: live with `l(24)`.
    let b = unsafe { heap.grow(b.cast(), l(24), l(48)) }.unwrap();
    // SAFETY: live with `l(48)`.
    unsafe { heap.deallocate(b.cast(), l(48)) };
    let text = std::format!("{}", heap.snapshot());
    let moved = heap.snapshot().grows_moved;
    let expect = std::format!(
        "                   count  in place     moved    failed\n\
         allocations            1                             0\n\
         frees                  1\n\
         grows                  1         {:>1}         {:>1}         0\n\
         shrinks                0         0         0         0\n\
         zero-size              0\n\
         corruptions            0\n\
         live          0 blocks, 0 B (peak 48 B); 48 B requested in all\n\
         allocations by size (up to):\n\
         \x20      32 B          1\n",
        1 - moved,
        moved
    );
    assert_eq!(text, expect);
}

/// A `GlobalAlloc` that refuses everything.
struct Refuses;

// SAFETY: never hands out memory; `dealloc` is never reached (no block).
unsafe impl GlobalAlloc for Refuses {
    unsafe fn alloc(&self, _: Layout) -> *mut u8 {
        core::ptr::null_mut()
    }
    unsafe fn dealloc(&self, _: *mut u8, _: Layout) {}
}

#[test]
fn global_alloc_path_counts_the_same_events() {
    let heap = Stats::new(System);
    // SAFETY: `GlobalAlloc` contract: non-zero layouts, each block freed
    // once with its current layout.
    unsafe {
        let p = heap.alloc(l(100));
        assert!(!p.is_null());
        let z = heap.alloc_zeroed(l(10));
        assert!(!z.is_null() && *z == 0);
        let p = heap.realloc(p, l(100), 5000);
        assert!(!p.is_null());
        let p = heap.realloc(p, l(5000), 20);
        assert!(!p.is_null());
        heap.dealloc(p, l(20));
        heap.dealloc(z, l(10));
    }
    let s = heap.snapshot();
    assert_eq!(
        (s.allocations, s.frees, s.grows(), s.shrinks()),
        (2, 2, 1, 1)
    );
    assert_eq!(
        (s.live_blocks, s.live_bytes, s.peak_live_bytes),
        (0, 0, 5010)
    );
    assert_eq!(s.total_requested_bytes, 110 + 4900);
    heap.check().unwrap();

    let refusing = Stats::new(Refuses);
    // SAFETY: non-zero layouts; nothing is handed out.
    unsafe {
        assert!(refusing.alloc(l(8)).is_null());
        assert!(refusing.alloc_zeroed(l(8)).is_null());
    }
    let s = refusing.snapshot();
    assert_eq!((s.allocations, s.failed_allocations), (0, 2));
}

type ListHeap = freespace_best_fit::BestFitHeap<FromAllocator<Global>>;
type BuddyHeap = freespace_buddy::Buddy<FromAllocator<Global>>;

#[test]
fn owns_and_inspect_are_the_inner_heaps() {
    let heap = Stats::new(ListHeap::new(FromAllocator::new(Global)));
    let p = heap.allocate(l(48)).unwrap().cast::<u8>();
    assert!(heap.owns(p));
    let mut local = 0u64;
    assert!(!heap.owns(NonNull::from(&mut local).cast()));
    let (mine, theirs) = (
        crate::Fragmentation::of(&heap),
        crate::Fragmentation::of(heap.inner()),
    );
    assert_eq!(mine, theirs);
    assert_eq!(mine.summary.used_blocks, 1);
    // SAFETY: live with `l(48)`.
    unsafe { heap.deallocate(p, l(48)) };
    heap.inner().check().unwrap();
}

#[test]
fn block_size_free_counts_a_free_and_saturates_live_bytes() {
    let heap = Stats::new(BuddyHeap::new(FromAllocator::new(Global)));
    let a = heap.allocate(l(24)).unwrap().cast::<u8>();
    let b = heap.allocate(l(100)).unwrap().cast::<u8>();
    // SAFETY: `a` and `b` are live blocks of the buddy heap.
    unsafe {
        let usable = heap.usable_size(a);
        assert!(usable >= 24);
        heap.free(a);
        let s = heap.snapshot();
        assert_eq!((s.frees, s.live_blocks), (1, 1));
        assert_eq!(s.live_bytes, 124usize.saturating_sub(usable));
        heap.free(b);
    }
    let s = heap.snapshot();
    assert_eq!((s.frees, s.live_blocks, s.live_bytes), (2, 0, 0));
    heap.check().unwrap();
    heap.inner().check().unwrap();
}

#[test]
fn checked_frees_count_frees_and_corruptions() {
    let heap = Stats::new(ListHeap::new(FromAllocator::new(Global)));
    let p = heap.allocate(l(32)).unwrap().cast::<u8>();
    // Aligned as every block of the heap is, so only its address is wrong.
    let mut local = [0u128; 2];
    let foreign = NonNull::from(&mut local).cast::<u8>();
    // SAFETY: `p` is live with `l(32)`; `foreign` is not the heap's and is
    // refused before anything is done with it.
    unsafe {
        let r = heap.try_deallocate_with(foreign, l(32), |h, p, l| h.try_deallocate(p, l));
        assert!(matches!(r, Err(Corruption::ForeignPointer { .. })), "{r:?}");
        assert_eq!(
            heap.try_deallocate_with(p, l(32), |h, p, l| h.try_deallocate(p, l)),
            Ok(())
        );
        assert_eq!(
            heap.try_deallocate_with(p, l(0), |_, _, _| unreachable!()),
            Ok(())
        );
    }
    let s = heap.snapshot();
    assert_eq!((s.frees, s.corruptions, s.live_bytes), (1, 1, 0));
    heap.check().unwrap();
    heap.inner().check().unwrap();
}

#[test]
fn a_stats_is_sync_when_its_allocator_is() {
    fn sync<T: Sync>() {}
    sync::<Stats<Global>>();
    sync::<Stats<System>>();
    sync::<Stats<freespace_sync::Locked<ListHeap>>>();
}
