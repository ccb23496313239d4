//! Fragmentation figures of hand-built heaps, and of a real one.

use freespace_core::alloc::{Allocator, Global, Layout};
use freespace_core::BlockState::{Free, Meta, Used};
use freespace_source::FromAllocator;

use super::*;
use crate::heapmap::tests::laid_out;

#[test]
fn figures_of_a_known_heap() {
    // meta 64 | used 100 | free 300 | used 36 | free 50 | meta 16 | free 1024
    let heap = laid_out(
        0x8000,
        &[
            (0, 64, Meta),
            (0, 100, Used),
            (0, 300, Free),
            (0, 36, Used),
            (0, 50, Free),
            (0, 16, Meta),
            (4000, 1024, Free),
        ],
    );
    let f = Fragmentation::of(&heap);
    assert_eq!(
        f.summary,
        HeapSummary {
            used_blocks: 2,
            used_bytes: 136,
            free_blocks: 3,
            free_bytes: 1374,
            largest_free: 1024,
            meta_bytes: 80,
        }
    );
    assert_eq!(
        f.total_bytes(),
        1590,
        "the 4000-byte gap is not in any block"
    );
    assert_eq!(f.average_free(), 458);
    assert!((f.external() - (1.0 - 1024.0 / 1374.0)).abs() < 1e-12);
    assert!((f.utilisation() - 136.0 / 1590.0).abs() < 1e-12);
    assert!((f.meta_share() - 80.0 / 1590.0).abs() < 1e-12);
    assert_eq!(f.internal_bytes(120), 16);
    assert_eq!(f.internal_bytes(500), 0);
    let mut bins = [0usize; SIZE_CLASSES];
    bins[8] = 1; // 300: 256..=511
    bins[5] = 1; // 50: 32..=63
    bins[10] = 1; // 1024
    assert_eq!(f.free_histogram, bins);
    assert_eq!(
        std::format!("{f}"),
        "free  1374 B in 3 blocks (largest 1024 B, average 458 B)\n\
         used  136 B in 2 blocks; metadata 80 B; 1590 B in all\n\
         external fragmentation 0.255, utilisation 0.086, metadata share 0.050\n\
         free blocks by size (at least):\n\
         \x20      32 B          1\n\
         \x20     256 B          1\n\
         \x20     1 KiB          1\n"
    );
}

#[test]
fn one_free_block_is_no_fragmentation() {
    let heap = laid_out(0, &[(0, 16, Meta), (0, 4080, Free)]);
    let f = Fragmentation::of(&heap);
    assert_eq!((f.external(), f.utilisation()), (0.0, 0.0));
    assert_eq!(f.free_blocks(), 1);
}

#[test]
fn a_full_heap_has_nothing_free() {
    let heap = laid_out(0, &[(0, 64, Used), (0, 64, Used)]);
    let f = Fragmentation::of(&heap);
    assert_eq!(
        (f.free_bytes(), f.largest_free(), f.external()),
        (0, 0, 0.0)
    );
    assert_eq!(f.utilisation(), 1.0);
    assert!(!std::format!("{f}").contains("free blocks by size"));
}

#[test]
fn holes_in_a_real_heap_fragment_it_and_coalescing_heals_it() {
    let heap = freespace_best_fit::BestFitHeap::new(FromAllocator::new(Global));
    let l = Layout::from_size_align(if cfg!(miri) { 64 } else { 256 }, 16).unwrap();
    let blocks: std::vec::Vec<_> = (0..8).map(|_| heap.allocate(l).unwrap()).collect();
    let before = Fragmentation::of(&heap);
    // Free blocks 0, 2, 4, 6: four holes with a used block between each.
    for b in blocks.iter().step_by(2) {
        // SAFETY: live with `l`, freed once.
        unsafe { heap.deallocate(b.cast(), l) };
    }
    let holes = Fragmentation::of(&heap);
    assert!(holes.free_blocks() >= before.free_blocks() + 3, "{holes}");
    assert!(holes.external() > before.external());
    assert!(
        holes.free_histogram[l.size().ilog2() as usize] >= 3,
        "{holes}"
    );
    // Free the rest: every hole merges with its neighbours.
    for b in blocks.iter().skip(1).step_by(2) {
        // SAFETY: as above.
        unsafe { heap.deallocate(b.cast(), l) };
    }
    let healed = Fragmentation::of(&heap);
    assert_eq!(healed.summary.used_blocks, 0);
    assert!(
        healed.free_blocks() <= before.free_blocks().max(1),
        "{healed}"
    );
    assert_eq!(healed.external(), 0.0, "{healed}");
    heap.check().unwrap();
}
