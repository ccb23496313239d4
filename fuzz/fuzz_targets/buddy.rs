//! The binary buddy heap: `Buddy<Arena>` over 256 KiB.
#![no_main]
use freespace_buddy::Buddy;
use freespace_source::Arena;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // SAFETY: the previous run's heap over slot 0 has been dropped.
    let heap: Buddy<Arena> = Buddy::new(unsafe { freespace_fuzz::arena(0, 256 << 10) });
    freespace_fuzz::run(&heap, data, &|| heap.check());
});
