//! The `General` stack (`freespace::stacks::General<S> = Slab<Tiered<S>,
//! 16 KiB>`: slab classes to 512 B over a best-fit heap and a buddy) over a
//! 1 MiB arena.
#![no_main]
use freespace_core::Check;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // SAFETY: the previous run's heap over slot 0 has been dropped.
    let heap = freespace::stacks::general_over(unsafe { freespace_fuzz::arena(0, 1 << 20) });
    freespace_fuzz::run(&heap, data, &|| heap.check_all());
});
