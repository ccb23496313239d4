//! The `SegregatedBestFit` stack (`Segregated<BestFitHeap<S>>`) over a
//! 256 KiB arena.
#![no_main]
use freespace_best_fit::BestFitHeap;
use freespace_core::Check;
use freespace_segregated::Segregated;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // SAFETY: the previous run's heap over slot 0 has been dropped.
    let heap = Segregated::new(BestFitHeap::new(unsafe {
        freespace_fuzz::arena(0, 256 << 10)
    }));
    freespace_fuzz::run(&heap, data, &|| heap.check_all());
});
