use super::*;
use crate::test_util::{assert_usable, end, start, HUGE};
use std::vec;
use std::vec::Vec;

fn page() -> usize {
    // SAFETY: `sysconf` only reads a system constant.
    usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap()
}

#[test]
#[cfg_attr(miri, ignore)]
fn regions_are_aligned_writable_and_contiguous() {
    let source = Mmap::new();
    assert_eq!(source.check(), Ok(()));
    let mut regions = Vec::new();
    for min_len in [0, 1, 16, 100, page(), page() + 1, 3 * page() + 7] {
        let region = source.acquire(min_len).unwrap();
        assert_usable(region, min_len);
        assert_eq!(start(region) % page(), 0);
        assert_eq!(region.len() % page(), 0);
        assert!(
            region.len() < min_len.max(1) + page(),
            "more than a page extra"
        );
        if let Some(&last) = regions.last() {
            assert_eq!(start(region), end(last), "not contiguous");
        }
        regions.push(region);
        assert_eq!(source.check(), Ok(()));
    }
    let total: usize = regions.iter().map(|r| r.len()).sum();
    assert_eq!(source.committed(), total);
}

#[test]
#[cfg_attr(miri, ignore)]
fn small_reservation_runs_out_with_none() {
    let source = Mmap::with_reserve(4 * page());
    let a = source.acquire(3 * page()).unwrap();
    assert!(source.acquire(page() + 1).is_none());
    let b = source.acquire(page()).unwrap();
    assert_eq!(start(b), end(a));
    for min_len in [0, 1, page()] {
        assert!(source.acquire(min_len).is_none());
    }
    assert_eq!(source.committed(), 4 * page());
    assert_usable(a, 3 * page());
    assert_usable(b, page());
    assert_eq!(source.check(), Ok(()));
}

#[test]
#[cfg_attr(miri, ignore)]
fn reservation_is_rounded_to_pages() {
    let source = Mmap::with_reserve(page() + 1);
    assert_eq!(
        source.acquire(2 * page()).map(|r| r.len()),
        Some(2 * page())
    );
    assert!(source.acquire(1).is_none());
    // A reservation of nothing never hands anything out.
    assert!(Mmap::with_reserve(0).acquire(1).is_none());
}

#[test]
#[cfg_attr(miri, ignore)]
fn huge_requests_are_none() {
    let source = Mmap::new();
    for huge in HUGE {
        assert!(source.acquire(huge).is_none(), "{huge:#x}");
    }
    assert!(source.acquire(DEFAULT_RESERVE + 1).is_none());
    assert_eq!(source.committed(), 0);
    // An impossible reservation: `mmap` fails, so does every acquire.
    let impossible = Mmap::with_reserve(1 << 62);
    assert!(impossible.acquire(1).is_none());
    assert!(impossible.acquire(1).is_none());
    assert_eq!(impossible.check(), Ok(()));
}

#[test]
#[cfg_attr(miri, ignore)]
fn releasing_the_tail_moves_the_committed_end_back() {
    let source = Mmap::new();
    let a = source.acquire(page()).unwrap();
    let b = source.acquire(2 * page()).unwrap();
    assert_usable(b, 2 * page());
    // SAFETY: `b` came from `source`, is the tail, and is unused.
    assert!(unsafe { source.release(b) });
    assert_eq!(source.committed(), page());
    // The released range is handed out again, from the same place.
    let c = source.acquire(page()).unwrap();
    assert_eq!(start(c), start(b));
    assert_usable(c, page());
    // Newest first, each release is of the tail.
    // SAFETY: `a` and `c` came from `source` and are unused.
    unsafe {
        assert!(source.release(c));
        assert!(source.release(a));
    }
    assert_eq!(source.committed(), 0);
    assert_eq!(source.check(), Ok(()));
}

#[test]
#[cfg_attr(miri, ignore)]
fn releasing_anything_but_the_tail_declines() {
    let source = Mmap::new();
    let a = source.acquire(page()).unwrap();
    let b = source.acquire(2 * page()).unwrap();
    // SAFETY: for all the releases below, the ranges lie in regions from `source`
    // that nothing uses.
    unsafe {
        // Not the tail.
        assert!(!source.release(a));
        // Ends at the committed end but does not start on a page.
        let part = NonNull::slice_from_raw_parts(b.cast::<u8>().add(16), b.len() - 16);
        assert!(!source.release(part));
        // Starts on a page but ends short of the committed end.
        let head = NonNull::slice_from_raw_parts(b.cast::<u8>(), page());
        assert!(!source.release(head));
        assert_eq!(source.committed(), 3 * page());
        // A page-aligned tail part of `b` is taken.
        let tail = NonNull::slice_from_raw_parts(b.cast::<u8>().add(page()), page());
        assert!(source.release(tail));
        assert_eq!(source.committed(), 2 * page());
    }
    // Everything declined is still ours and writable.
    assert_usable(a, page());
    assert_usable(
        NonNull::slice_from_raw_parts(b.cast::<u8>(), page()),
        page(),
    );
    // A source that never reserved declines everything.
    let fresh = Mmap::new();
    // SAFETY: the contract is broken on purpose (`a` is not `fresh`'s); the
    // source must decline, touching nothing.
    assert!(!unsafe { fresh.release(a) });
}

#[test]
#[cfg_attr(miri, ignore)]
fn threads_get_disjoint_contiguous_regions() {
    let source = Mmap::with_reserve(1 << 30);
    let mut spans: Vec<(usize, usize)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                scope.spawn(|| {
                    (0..25)
                        .map(|i| {
                            let r = source.acquire(1 + i * 1000).unwrap();
                            assert_usable(r, 1);
                            (start(r), end(r))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    spans.sort();
    // Disjoint and, all together, one contiguous run from the base.
    assert!(spans.windows(2).all(|w| w[0].1 == w[1].0));
    assert_eq!(spans.last().unwrap().1 - spans[0].0, source.committed());
}

#[test]
fn constructors_are_const() {
    static SHARED: Mmap = Mmap::with_reserve(1 << 20);
    let fresh = const { Mmap::new() };
    assert_eq!(SHARED.committed(), 0);
    assert_eq!(fresh.check(), Ok(()));
}

/// SRC-M5: `committed_range` follows every acquire and release, so a range
/// check before a read never admits an inaccessible page.
#[test]
#[cfg_attr(miri, ignore)]
fn committed_range_follows_acquire_and_release() {
    let source = Mmap::with_reserve(8 * page());
    assert!(source.committed_range().is_empty());
    let a = source.acquire(page()).unwrap();
    let b = source.acquire(2 * page()).unwrap();
    assert_eq!(source.committed_range(), start(a)..end(b));
    // SAFETY: `b` is the last region, unused.
    assert!(unsafe { source.release(b) });
    assert_eq!(source.committed_range(), start(a)..end(a));
    assert_eq!(source.check(), Ok(()));
    // SAFETY: `a` is now the last region, unused.
    assert!(unsafe { source.release(a) });
    assert!(source.committed_range().is_empty());
    assert_eq!(source.check(), Ok(()));
}

/// Resident bytes of the pages in `region`, from `mincore(2)`.
fn resident(region: NonNull<[u8]>) -> usize {
    // SAFETY: `sysconf` only reads a system constant.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
    let pages = region.len().div_ceil(page);
    let mut v = vec![0u8; pages];
    // SAFETY: `region` is page-aligned mapped memory of `pages` pages and
    // `v` has room for one byte per page.
    let rc = unsafe {
        libc::mincore(
            region.cast::<libc::c_void>().as_ptr(),
            region.len(),
            v.as_mut_ptr(),
        )
    };
    assert_eq!(rc, 0);
    v.iter().filter(|&&b| b & 1 != 0).count() * page
}

#[test]
#[cfg_attr(miri, ignore)]
fn decommit_gives_pages_back_and_they_read_zero() {
    let source = Mmap::with_reserve(8 << 20);
    let region = source.acquire(1 << 20).unwrap();
    // Fresh from acquire: zero, and nothing resident yet.
    assert_eq!(resident(region), 0);
    // SAFETY: the region is ours.
    unsafe { region.cast::<u8>().write_bytes(0xAB, region.len()) };
    assert_eq!(resident(region), region.len());
    // SAFETY: ours, contents not needed.
    let pages = unsafe { source.decommit(region) }.unwrap();
    assert_eq!(pages, region);
    assert_eq!(resident(region), 0);
    // SAFETY: still ours (CORE-S5): readable, and zero.
    let bytes = unsafe { core::slice::from_raw_parts(region.cast::<u8>().as_ptr(), region.len()) };
    assert!(bytes.iter().all(|&b| b == 0));
    assert_eq!(source.committed(), region.len());
    source.check().unwrap();
}

#[test]
#[cfg_attr(miri, ignore)]
fn decommit_touches_only_whole_pages_inside() {
    let source = Mmap::with_reserve(8 << 20);
    let p = page();
    let region = source.acquire(3 * p).unwrap();
    let base = region.cast::<u8>();
    // SAFETY: the region is ours.
    unsafe { base.write_bytes(0xCD, region.len()) };
    // From 16 bytes in to 16 bytes before the end: only the middle page is whole.
    // SAFETY: a sub-range of our region.
    let inner = NonNull::slice_from_raw_parts(unsafe { base.add(16) }, region.len() - 32);
    // SAFETY: ours, contents of `inner` not needed.
    let pages = unsafe { source.decommit(inner) }.unwrap();
    assert_eq!(
        pages.cast::<u8>().as_ptr() as usize,
        base.as_ptr() as usize + p
    );
    assert_eq!(pages.len(), p);
    // SAFETY: reads of our region.
    unsafe {
        assert_eq!(*base.as_ptr().add(p - 1), 0xCD);
        assert_eq!(*base.as_ptr().add(p), 0);
        assert_eq!(*base.as_ptr().add(2 * p), 0xCD);
    }
    // Less than a page: nothing to give back.
    // SAFETY: as above.
    let small = NonNull::slice_from_raw_parts(unsafe { base.add(16) }, p - 32);
    // SAFETY: as above.
    let none = unsafe { source.decommit(small) };
    assert!(none.is_none());
}
