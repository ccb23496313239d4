//! The size-class slab over a first-fit heap: `Slab<FirstFitHeap<Arena>>`
//! over 1 MiB (64 KiB slabs aligned to 64 KiB: the heap's alignment padding
//! is exercised too). The buddy parent is the `stack_general` target.
#![no_main]
use freespace_core::Check;
use freespace_first_fit::FirstFitHeap;
use freespace_slab::Slab;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // SAFETY: the previous run's heap over slot 0 has been dropped.
    let heap = Slab::new(FirstFitHeap::new(unsafe {
        freespace_fuzz::arena(0, 1 << 20)
    }));
    freespace_fuzz::run(&heap, data, &|| heap.check_all());
});
