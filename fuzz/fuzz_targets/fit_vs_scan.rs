//! Differential: the same op trace through an indexed fit heap and its
//! plain list scan (`FirstFitHeap` / `FirstFitScanHeap`, and so on), each
//! over its own arena: every block must land at the same offset, both
//! must pass the shadow model and their `check()` after every op.
//!
//! The first input byte picks the case: bits 0–1 the policy (first, next,
//! best, worst fit), bit 2 the arena (64 KiB, which the trace soon fills,
//! so the policies choose among few chunks and fail alike; or 256 KiB).
#![no_main]
use freespace_best_fit::{BestFitHeap, BestFitScanHeap};
use freespace_first_fit::{FirstFitHeap, FirstFitScanHeap};
use freespace_freelist::Fit;
use freespace_next_fit::{NextFitHeap, NextFitScanHeap};
use freespace_source::Arena;
use freespace_split_coalesce::FreeListHeap;
use freespace_testkit::calls::{self, Logged};
use freespace_worst_fit::{WorstFitHeap, WorstFitScanHeap};
use libfuzzer_sys::fuzz_target;

/// Plays `data` through a heap that `new` builds over arena `slot`,
/// logging where every block went (offsets from the arena's start).
fn placements<F: Fit>(
    slot: usize,
    len: usize,
    new: fn(Arena) -> FreeListHeap<F, Arena>,
    data: &[u8],
) -> Vec<calls::Call> {
    // SAFETY: the previous run's heap over `slot` has been dropped.
    let heap = new(unsafe { freespace_fuzz::arena(slot, len) });
    let logged = Logged::new(&heap, freespace_fuzz::buffer(slot));
    freespace_fuzz::run(&logged, data, &|| heap.check());
    logged.log()
}

/// The indexed heap `indexed` builds and the scan heap `scanned` builds
/// place every block of `data` at the same offset.
fn same<F: Fit, R: Fit>(
    len: usize,
    data: &[u8],
    indexed: fn(Arena) -> FreeListHeap<F, Arena>,
    scanned: fn(Arena) -> FreeListHeap<R, Arena>,
) {
    let a = placements(0, len, indexed, data);
    let b = placements(1, len, scanned, data);
    if let Some((i, x, y)) = calls::first_difference(&a, &b) {
        panic!(
            "{} and {} differ at call #{i}: {x:x?} vs {y:x?}",
            F::NAME,
            R::NAME
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&case, data)) = data.split_first() else {
        return;
    };
    let len = if case & 4 == 0 { 64 << 10 } else { 256 << 10 };
    match case & 3 {
        0 => same(len, data, FirstFitHeap::new, FirstFitScanHeap::new),
        1 => same(len, data, NextFitHeap::new, NextFitScanHeap::new),
        2 => same(len, data, BestFitHeap::new, BestFitScanHeap::new),
        _ => same(len, data, WorstFitHeap::new, WorstFitScanHeap::new),
    }
});
