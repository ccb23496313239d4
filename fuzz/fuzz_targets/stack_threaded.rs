//! The `Threaded` stack's layers, one thread: a `ThreadCache` (the explicit
//! form of `Magazines`) on a `Depot<Locked<Slab<Buddy<Arena>>>>` over 1 MiB.
#![no_main]
use freespace_buddy::Buddy;
use freespace_core::Check;
use freespace_slab::Slab;
use freespace_source::Arena;
use freespace_sync::{Depot, Locked, ThreadCache};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // SAFETY: the previous run's heap over slot 0 has been dropped.
    let buddy: Buddy<Arena> = Buddy::new(unsafe { freespace_fuzz::arena(0, 1 << 20) });
    let locked: Locked<_> = Locked::new(Slab::new(buddy));
    let depot = Depot::new(locked);
    let heap = ThreadCache::new(&depot);
    freespace_fuzz::run(&heap, data, &|| heap.check_all());
});
