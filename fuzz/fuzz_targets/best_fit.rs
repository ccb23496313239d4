//! The free-list heap under best fit: `BestFitHeap<Arena>` over 256 KiB. Also the `Embedded` stack (`freespace::stacks::Embedded = BestFitHeap<Arena>`).
#![no_main]
use freespace_best_fit::BestFitHeap;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // SAFETY: the previous run's heap over slot 0 has been dropped.
    let heap = BestFitHeap::new(unsafe { freespace_fuzz::arena(0, 256 << 10) });
    freespace_fuzz::run(&heap, data, &|| heap.check());
});
