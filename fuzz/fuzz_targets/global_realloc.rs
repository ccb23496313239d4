//! The `GlobalAlloc` path: `Locked<BestFitHeap<Arena>>` (256 KiB) driven
//! through `alloc`/`alloc_zeroed`/`dealloc`/`realloc` (grows and shrinks
//! are `realloc`, in place when the free list allows).
#![no_main]
use freespace_best_fit::BestFitHeap;
use freespace_core::Check;
use freespace_fuzz::ViaGlobalAlloc;
use freespace_sync::Locked;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // SAFETY: the previous run's heap over slot 0 has been dropped.
    let heap: Locked<_> = Locked::new(BestFitHeap::new(unsafe {
        freespace_fuzz::arena(0, 256 << 10)
    }));
    let global = ViaGlobalAlloc(&heap);
    freespace_fuzz::run(&global, data, &|| heap.check_all());
});
