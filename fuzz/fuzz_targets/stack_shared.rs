//! The `Shared` stack (`Locked<Slab<Buddy<S>>>`, what `#[global_allocator]`
//! users install) over a 1 MiB arena, through `GlobalAlloc` with `realloc`.
#![no_main]
use freespace_buddy::Buddy;
use freespace_core::Check;
use freespace_fuzz::ViaGlobalAlloc;
use freespace_slab::Slab;
use freespace_source::Arena;
use freespace_sync::Locked;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // SAFETY: the previous run's heap over slot 0 has been dropped.
    let buddy: Buddy<Arena> = Buddy::new(unsafe { freespace_fuzz::arena(0, 1 << 20) });
    let heap: Locked<_> = Locked::new(Slab::new(buddy));
    let global = ViaGlobalAlloc(&heap);
    freespace_fuzz::run(&global, data, &|| heap.check_all());
});
