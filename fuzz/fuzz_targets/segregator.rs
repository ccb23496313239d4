//! Routing by size over one shared heap:
//! `Segregator<256, Segregated<&BestFitHeap<Arena>>, &BestFitHeap<Arena>>`
//! over 256 KiB. Resizes across the threshold move blocks between sides.
#![no_main]
use freespace_best_fit::BestFitHeap;
use freespace_core::Check;
use freespace_segregated::{Segregated, Segregator};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // SAFETY: the previous run's heap over slot 0 has been dropped.
    let shared = BestFitHeap::new(unsafe { freespace_fuzz::arena(0, 256 << 10) });
    let heap: Segregator<256, _, _> = Segregator::new(Segregated::new(&shared), &shared);
    freespace_fuzz::run(&heap, data, &|| heap.check_all());
});
