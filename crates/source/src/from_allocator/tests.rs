use super::*;
use crate::test_util::{assert_usable, start, HUGE};
use freespace_core::alloc::{AllocError, Global};
use std::vec::Vec;

/// An allocator that always fails.
struct Failing;

// SAFETY: never hands out memory, so there is nothing to honour.
unsafe impl Allocator for Failing {
    fn allocate(&self, _: Layout) -> Result<NonNull<[u8]>, AllocError> {
        Err(AllocError)
    }
    unsafe fn deallocate(&self, _: NonNull<u8>, _: Layout) {
        unreachable!("nothing was allocated");
    }
}

/// `Global`, rounding every size up to a multiple of 256 and returning all
/// of it; it checks that frees come with a size between the request and
/// what it returned, as the `Allocator` contract requires.
#[derive(Default)]
struct Generous {
    live: Cell<usize>,
}

const CHUNK: usize = 256;

impl Generous {
    fn rounded(layout: Layout) -> Layout {
        Layout::from_size_align(layout.size().div_ceil(CHUNK) * CHUNK, layout.align()).unwrap()
    }
}

// SAFETY: forwards to `Global` with a consistently rounded layout.
unsafe impl Allocator for Generous {
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        let block = Global.allocate(Self::rounded(layout))?;
        self.live.set(self.live.get() + 1);
        Ok(block)
    }
    unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
        self.live.set(self.live.get() - 1);
        // Freed with the rounded size: a size outside [request, returned]
        // could round to a different block size, which Miri reports.
        assert_eq!(layout.align(), REGION_ALIGN);
        // SAFETY: `ptr` came from `Global` with this rounded layout.
        unsafe { Global.deallocate(ptr, Self::rounded(layout)) };
    }
}

#[test]
fn regions_are_aligned_writable_and_long_enough() {
    let source = FromAllocator::new(Global);
    let mut regions = Vec::new();
    for min_len in [0, 1, 15, 16, 17, 100, 1000] {
        let region = source.acquire(min_len).unwrap();
        assert_usable(region, min_len);
        assert_eq!(region.len(), crate::region_len(min_len).unwrap());
        regions.push(region);
        assert_eq!(source.check(), Ok(()));
    }
    assert_eq!(source.regions(), regions.len());
    // Release in an order that unlinks from the front, middle and back.
    for i in [3, 0, 5, 1, 6, 2, 4] {
        // SAFETY: each region came from `source` and is unused.
        assert!(unsafe { source.release(regions[i]) });
        assert_eq!(source.check(), Ok(()));
    }
    assert_eq!(source.regions(), 0);
}

#[test]
fn failing_allocator_gives_none() {
    let source = FromAllocator::new(Failing);
    for min_len in [0, 1, 4096] {
        assert!(source.acquire(min_len).is_none());
    }
    assert_eq!(source.regions(), 0);
    assert_eq!(source.check(), Ok(()));
}

#[test]
fn huge_requests_are_none_without_asking_the_allocator() {
    // `Failing` would give None anyway; `Global` proves the arithmetic
    // stops first (a huge layout would abort or fail in `Global`).
    let source = FromAllocator::new(Global);
    for huge in HUGE {
        assert!(source.acquire(huge).is_none(), "{huge:#x}");
    }
    // The largest region whose layout is still valid: rejected because
    // `16 + len` no longer is.
    assert!(source.acquire(isize::MAX as usize - 15).is_none());
    assert_eq!(source.regions(), 0);
}

#[test]
fn excess_from_the_allocator_is_handed_on_and_freed_with_a_fitting_size() {
    let generous = Generous::default();
    {
        let source = FromAllocator::new(&generous);
        let region = source.acquire(20).unwrap();
        // 16 + 32 bytes asked, 256 given: the region is the 240 after the header.
        assert_eq!(region.len(), CHUNK - HEADER);
        assert_usable(region, 20);
        // SAFETY: `region` came from `source` and is unused.
        assert!(unsafe { source.release(region) });
        assert_eq!(generous.live.get(), 0);
        let _kept = source.acquire(300).unwrap();
        assert_eq!(generous.live.get(), 1);
    }
    // Dropping the source freed the region it still lent.
    assert_eq!(generous.live.get(), 0);
}

#[test]
fn release_declines_anything_but_a_whole_region() {
    let generous = Generous::default();
    let source = FromAllocator::new(&generous);
    let a = source.acquire(64).unwrap();
    let b = source.acquire(64).unwrap();
    // SAFETY: for all the releases below, the ranges lie in regions lent by
    // `source` that nothing uses; a declined release leaves them untouched.
    unsafe {
        let head = NonNull::slice_from_raw_parts(a.cast::<u8>(), 32);
        assert!(!source.release(head), "a head part");
        let tail = NonNull::slice_from_raw_parts(a.cast::<u8>().add(32), a.len() - 32);
        assert!(!source.release(tail), "a tail part");
        let longer = NonNull::slice_from_raw_parts(b.cast::<u8>(), b.len() + 16);
        assert!(!source.release(longer), "more than the region");
    }
    // A region of another source is not on this one's list.
    let other = FromAllocator::new(Global);
    let foreign = other.acquire(64).unwrap();
    // SAFETY: the contract is broken on purpose; the source must decline.
    assert!(!unsafe { source.release(foreign) });
    assert_eq!(source.regions(), 2);
    assert_eq!(generous.live.get(), 2);
    assert_usable(a, 64);
    assert_usable(b, 64);
    // SAFETY: whole regions from `source`, unused.
    unsafe {
        assert!(source.release(a));
        assert!(!source.release(a), "already released");
        assert!(source.release(b));
    }
    assert_eq!(generous.live.get(), 0);
    assert_eq!(source.check(), Ok(()));
}

#[test]
fn regions_never_overlap() {
    let source = FromAllocator::new(Global);
    let n = if cfg!(miri) { 16 } else { 200 };
    let mut spans: Vec<(usize, usize)> = (0..n)
        .map(|i| {
            let r = source.acquire(16 * (1 + i % 7)).unwrap();
            (start(r), start(r) + r.len())
        })
        .collect();
    spans.sort();
    assert!(spans.windows(2).all(|w| w[0].1 <= w[1].0));
    assert_eq!(source.check(), Ok(()));
    // Dropped with every region still lent: Miri's leak check confirms the
    // drop frees them.
}

#[test]
fn check_spots_a_broken_list() {
    let source = FromAllocator::new(Global);
    let region = source.acquire(16).unwrap();
    source.count.set(2);
    assert_eq!(source.check().map_err(|v| v.invariant), Err("SRC-F3"));
    source.count.set(0);
    assert_eq!(source.check().map_err(|v| v.invariant), Err("SRC-F3"));
    source.count.set(1);
    assert_eq!(source.check(), Ok(()));
    // SAFETY: the region came from `source` and is unused.
    assert!(unsafe { source.release(region) });
}

#[test]
fn constructor_is_const() {
    let source = const { FromAllocator::new(Failing) };
    assert!(source.acquire(1).is_none());
}
