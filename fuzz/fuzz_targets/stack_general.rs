//! The `General` stack (`freespace::stacks::General<S> = Slab<Buddy<S>>`)
//! over a 1 MiB arena.
#![no_main]
use freespace_buddy::Buddy;
use freespace_core::Check;
use freespace_slab::Slab;
use freespace_source::Arena;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // SAFETY: the previous run's heap over slot 0 has been dropped.
    let buddy: Buddy<Arena> = Buddy::new(unsafe { freespace_fuzz::arena(0, 1 << 20) });
    let heap = Slab::new(buddy);
    freespace_fuzz::run(&heap, data, &|| heap.check_all());
});
