//! The malloc shim's C API (`malloc`, `calloc`, `realloc`, `free`,
//! `posix_memalign`, `aligned_alloc`, `memalign`, `malloc_usable_size`,
//! `malloc_trim`) against the testkit's shadow model, through
//! [`freespace_fuzz::malloc::ViaMalloc`]: contents kept across `realloc`
//! (in place or moved, failed or not), `calloc` zeroed, every alignment
//! honoured (16 for `malloc`, the asked one for the aligned calls), usable
//! size at least the request and usable ranges disjoint; the shim's own
//! `check()` (thread cache, depot, slab, buddy, fork gate) after every op.
//!
//! The shim is one process-wide heap (over its own `mmap` reservation,
//! beside the C library's `malloc`): each run frees everything it made, so
//! a run starts from the heap the previous runs left, as a program's
//! later calls do. The first input byte, when odd, also makes every 32nd
//! check call `malloc_trim(0)` first (magazines to the depot, the depot to
//! the slab, empty slabs to the buddy, free pages back to the system),
//! under live blocks whose contents the model then verifies.
#![no_main]
use std::cell::Cell;

use freespace_fuzz::malloc::ViaMalloc;
use freespace_malloc as shim;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&case, data)) = data.split_first() else {
        return;
    };
    let trim = case & 1 == 1;
    let calls = Cell::new(0u32);
    freespace_fuzz::run(&ViaMalloc, data, &|| {
        calls.set(calls.get() + 1);
        if trim && calls.get().is_multiple_of(32) {
            // SAFETY: always safe (unsafe for the C ABI's sake).
            unsafe { shim::malloc_trim(0) };
        }
        shim::check()
    });
});
