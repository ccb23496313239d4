//! Giving memory back from the free-list heap: `trim` decommits only the
//! inside of free chunks, for every fit policy, and a zeroed allocation is
//! cleared by decommit — over the testkit's `Recording` source (decommit =
//! zeros written over whole pages, logged), so it runs under Miri.

use core::ptr::NonNull;
use freespace_best_fit::BestFit;
use freespace_core::alloc::{Allocator, Layout};
use freespace_core::Trim;
use freespace_first_fit::FirstFit;
use freespace_freelist::Fit;
use freespace_next_fit::NextFit;
use freespace_split_coalesce::FreeListHeap;
use freespace_testkit::recording::{Event, Recording};
use freespace_testkit::Rng;
use freespace_worst_fit::WorstFit;

const PAGE: usize = 4096;

fn layout(size: usize) -> Layout {
    Layout::from_size_align(size, 16).unwrap()
}

/// Live blocks keep a byte pattern through trims between operations; the
/// heap's checks pass after each trim, so no chunk head, footer or index
/// link was decommitted; and freed memory keeps being reused.
fn trim_keeps_live_blocks_and_metadata<F: Fit + Default>() {
    let heap: FreeListHeap<F, Recording> = FreeListHeap::new(Recording::new(PAGE, 64 << 20));
    let mut rng = Rng::new(11);
    let mut live: Vec<(NonNull<u8>, usize, u8)> = Vec::new();
    let rounds = if cfg!(miri) { 40 } else { 800 };
    for i in 0..rounds {
        if live.len() < 6 || rng.below(3) != 0 {
            let size = rng.range(16, 40_000);
            let p = heap.allocate(layout(size)).unwrap().cast::<u8>();
            let tag = (i % 251) as u8 + 1;
            // SAFETY: a fresh block of at least `size` bytes.
            unsafe { p.write_bytes(tag, size) };
            live.push((p, size, tag));
        } else {
            let (p, size, _) = live.swap_remove(rng.below(live.len()));
            // SAFETY: live, allocated with this layout.
            unsafe { heap.deallocate(p, layout(size)) };
        }
        if i % 10 == 0 {
            let before = heap.source().decommitted();
            let given = heap.trim();
            assert_eq!(heap.source().decommitted() - before, given);
            heap.check().unwrap();
            for &(p, size, tag) in &live {
                // SAFETY: a live block of `size` bytes.
                let bytes = unsafe { std::slice::from_raw_parts(p.as_ptr(), size) };
                assert!(
                    bytes.iter().all(|&b| b == tag),
                    "a live block was decommitted"
                );
            }
        }
    }
    for (p, size, _) in live {
        // SAFETY: live, allocated with this layout.
        unsafe { heap.deallocate(p, layout(size)) };
    }
    assert!(
        heap.trim() > 0,
        "an empty heap has whole pages to give back"
    );
    heap.check().unwrap();
}

#[test]
fn best_fit_trim() {
    trim_keeps_live_blocks_and_metadata::<BestFit>();
}

#[test]
fn first_fit_trim() {
    trim_keeps_live_blocks_and_metadata::<FirstFit>();
}

#[test]
fn next_fit_trim() {
    trim_keeps_live_blocks_and_metadata::<NextFit>();
}

#[test]
fn worst_fit_trim() {
    trim_keeps_live_blocks_and_metadata::<WorstFit>();
}

#[test]
fn large_zeroed_blocks_are_cleared_by_decommit() {
    let heap: FreeListHeap<BestFit, Recording> = FreeListHeap::new(Recording::new(PAGE, 64 << 20));
    let size = 256 << 10;
    let p = heap.allocate(layout(size)).unwrap().cast::<u8>();
    // SAFETY: a fresh block of `size` bytes.
    unsafe { p.write_bytes(0xEE, size) };
    // SAFETY: live with this layout.
    unsafe { heap.deallocate(p, layout(size)) };
    let decommits = |h: &FreeListHeap<BestFit, Recording>| {
        h.source()
            .events()
            .iter()
            .filter(|e| matches!(e, Event::Decommit { pages: Some(_), .. }))
            .count()
    };
    let before = decommits(&heap);
    let z = heap.allocate_zeroed(layout(size)).unwrap();
    // SAFETY: a block of `z.len()` bytes.
    let bytes = unsafe { std::slice::from_raw_parts(z.cast::<u8>().as_ptr(), z.len()) };
    assert!(bytes.iter().all(|&b| b == 0));
    assert_eq!(decommits(&heap), before + 1);
    heap.check().unwrap();
}
