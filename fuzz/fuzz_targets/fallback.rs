//! Routing by failure and ownership: `Fallback<Buddy<Arena>, FirstFitHeap<Arena>>`,
//! a 64 KiB buddy that runs out early in front of a 512 KiB first-fit heap.
//! Grows the primary cannot do move blocks to the secondary.
#![no_main]
use freespace_buddy::Buddy;
use freespace_core::Check;
use freespace_first_fit::FirstFitHeap;
use freespace_segregated::Fallback;
use freespace_source::Arena;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // SAFETY: the previous run's heaps over slots 0 and 1 have been dropped.
    let (small, large) = unsafe {
        (
            freespace_fuzz::arena(0, 64 << 10),
            freespace_fuzz::arena(1, 512 << 10),
        )
    };
    let primary: Buddy<Arena> = Buddy::new(small);
    let heap = Fallback::new(primary, FirstFitHeap::new(large));
    freespace_fuzz::run(&heap, data, &|| heap.check_all());
});
