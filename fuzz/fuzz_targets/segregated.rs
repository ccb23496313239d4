//! Segregated lists over a buddy heap: `Segregated<Buddy<Arena>>` over
//! 256 KiB (the best-fit parent is the `stack_segregated_best_fit` target).
#![no_main]
use freespace_buddy::Buddy;
use freespace_core::Check;
use freespace_segregated::Segregated;
use freespace_source::Arena;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // SAFETY: the previous run's heap over slot 0 has been dropped.
    let buddy: Buddy<Arena> = Buddy::new(unsafe { freespace_fuzz::arena(0, 256 << 10) });
    let heap = Segregated::new(buddy);
    freespace_fuzz::run(&heap, data, &|| heap.check_all());
});
