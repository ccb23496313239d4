//! Tests that move the real program break. The C library's `malloc` may move
//! it too (the test harness allocates on other threads), so assertions about
//! *where* the break is are made on attempts that nobody disturbed: each such
//! test retries a few times and requires at least one clean attempt, which a
//! broken `Sbrk` would never produce.

use super::*;
use crate::test_util::{assert_usable, end, start, HUGE};
use std::sync::Mutex;
use std::vec::Vec;

/// Serialises these tests, so one test's regions never sit between another
/// test's two acquires.
static TESTS: Mutex<()> = Mutex::new(());

const TRIES: usize = 8;

fn lock() -> std::sync::MutexGuard<'static, ()> {
    TESTS.lock().unwrap_or_else(|e| e.into_inner())
}

fn break_addr() -> usize {
    let _guard = BREAK.lock();
    current_break().unwrap().as_ptr().addr()
}

/// Gives regions back newest first; returns how many were taken.
fn release_all(source: &Sbrk, regions: &[NonNull<[u8]>]) -> usize {
    regions
        .iter()
        .rev()
        // SAFETY: each region came from `source` and is unused.
        .filter(|&&r| unsafe { source.release(r) })
        .count()
}

#[test]
#[cfg_attr(miri, ignore)]
fn regions_are_aligned_writable_and_long_enough() {
    let _t = lock();
    let source = Sbrk::new();
    let mut regions = Vec::new();
    for min_len in [0, 1, 15, 16, 17, 100, 4096, 65_539] {
        let region = source.acquire(min_len).unwrap();
        assert_usable(region, min_len);
        assert_eq!(region.len(), crate::region_len(min_len).unwrap());
        regions.push(region);
    }
    let total: usize = regions.iter().map(|r| r.len()).sum();
    assert_eq!(source.outstanding(), total);
    // Regions never overlap.
    let mut spans: Vec<_> = regions.iter().map(|&r| (start(r), end(r))).collect();
    spans.sort();
    assert!(spans.windows(2).all(|w| w[0].1 <= w[1].0));
    assert_eq!(source.check(), Ok(()));
    release_all(&source, &regions);
}

#[test]
#[cfg_attr(miri, ignore)]
fn limit_is_reached_without_panicking() {
    let _t = lock();
    let source = Sbrk::with_limit(4096);
    let region = source.acquire(4000).unwrap(); // rounded to 4000
    assert_eq!(region.len(), 4000);
    assert!(source.acquire(97).is_none()); // 4000 + 112 > 4096
    let rest = source.acquire(96).unwrap(); // exactly 4096
    assert_eq!(source.outstanding(), 4096);
    for min_len in [0, 1, 16, 4096] {
        assert!(source.acquire(min_len).is_none());
    }
    assert_eq!(source.outstanding(), 4096);
    assert_eq!(source.check(), Ok(()));
    // Rounding counts against the limit: 100 bytes need 112.
    assert!(Sbrk::with_limit(100).acquire(100).is_none());
    release_all(&source, &[region, rest]);
}

#[test]
#[cfg_attr(miri, ignore)]
fn huge_requests_are_none() {
    let _t = lock();
    let source = Sbrk::new();
    for huge in HUGE {
        assert!(source.acquire(huge).is_none(), "{huge:#x}");
    }
    // Fits the arithmetic, but no break can move that far: `sbrk` fails.
    assert!(source.acquire(1 << 62).is_none());
    assert_eq!(source.outstanding(), 0);
    assert_eq!(source.check(), Ok(()));
}

#[test]
#[cfg_attr(miri, ignore)]
fn back_to_back_regions_are_contiguous() {
    let _t = lock();
    let source = Sbrk::new();
    let mut contiguous = 0;
    for _ in 0..TRIES {
        // Nothing allocates between these two calls.
        let a = source.acquire(64).unwrap();
        let b = source.acquire(48).unwrap();
        if end(a) == start(b) {
            contiguous += 1;
        }
        release_all(&source, &[a, b]);
    }
    assert!(
        contiguous > 0,
        "no two back-to-back regions were contiguous"
    );
}

#[test]
#[cfg_attr(miri, ignore)]
fn releasing_the_tail_lowers_the_break() {
    let _t = lock();
    let source = Sbrk::new();
    let mut lowered = 0;
    for _ in 0..TRIES {
        let region = source.acquire(256).unwrap();
        assert_usable(region, 256);
        // SAFETY: `region` came from `source` and is unused.
        if unsafe { source.release(region) } {
            assert_eq!(source.outstanding(), 0);
            if break_addr() == start(region) {
                lowered += 1;
            }
        }
    }
    assert!(
        lowered > 0,
        "releasing the last region never lowered the break"
    );
}

#[test]
#[cfg_attr(miri, ignore)]
fn releasing_a_region_below_the_tail_declines() {
    let _t = lock();
    let source = Sbrk::new();
    let a = source.acquire(64).unwrap();
    let b = source.acquire(64).unwrap();
    let break_before = break_addr();
    // `a` ends at or below `b`'s start, so never at the break.
    // SAFETY: `a` came from `source` and is unused.
    assert!(!unsafe { source.release(a) });
    assert_eq!(source.outstanding(), 128);
    assert!(
        break_addr() >= break_before,
        "a declined release moved the break down"
    );
    // A part of `b` that does not reach the break: declined too.
    let head = NonNull::slice_from_raw_parts(b.cast::<u8>(), 32);
    // SAFETY: `head` lies in `b`, which came from `source` and is unused.
    assert!(!unsafe { source.release(head) });
    assert_usable(a, 64);
    assert_usable(b, 64);
    release_all(&source, &[a, b]);
}

#[test]
#[cfg_attr(miri, ignore)]
fn threads_get_disjoint_regions() {
    static SHARED: Sbrk = Sbrk::new();
    let _t = lock();
    let threads: Vec<_> = (0..4)
        .map(|i| {
            std::thread::spawn(move || {
                (0..50)
                    .map(|j| {
                        let r = SHARED.acquire(16 * (1 + (i + j) % 5)).unwrap();
                        assert_usable(r, 16);
                        (start(r), end(r))
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut spans: Vec<_> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    spans.sort();
    assert!(
        spans.windows(2).all(|w| w[0].1 <= w[1].0),
        "overlapping regions"
    );
    assert_eq!(SHARED.check(), Ok(()));
}
