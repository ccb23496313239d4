//! Hints to the processor: they change no result, only when memory moves
//! into the cache.

/// Asks the processor to start fetching the cache line holding `p`, for a
/// write, so that a store to it soon after does not wait for memory.
///
/// A hint and nothing more: it never faults, reads or changes nothing, and
/// any address may be given (one past the end of a block, memory that is
/// not ours). On x86-64 it is `prefetchw` when the build targets processors
/// that have it (`-C target-feature=+prfchw`), else `prefetcht0` (the line
/// fetched for reading, which is most of the wait); nothing on other
/// targets.
///
/// A slab hands out the objects of a new slab in address order, and the
/// caller writes into each: fetching the next object while this one is
/// handed out overlaps the wait for each cache line with the work of the
/// allocation before it. A slab freeing a thread cache's run of blocks in
/// random order fetches the slab header of the block a few places on, for
/// the same reason.
///
/// ```
/// let v = [0u64; 16];
/// freespace_core::hint::prefetch_write(v.as_ptr().wrapping_add(8));
/// // Any address at all: it is only a hint.
/// freespace_core::hint::prefetch_write(core::ptr::null::<u8>());
/// ```
#[inline(always)]
pub fn prefetch_write<T>(p: *const T) {
    #[cfg(all(target_arch = "x86_64", not(miri)))]
    // SAFETY: a prefetch (`prefetchw` or `prefetcht0`) is a hint: it
    // cannot fault on any address and writes nothing; SSE, which the
    // intrinsic is declared with, is part of every x86-64 processor.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_ET0 }>(p.cast());
    }
    #[cfg(not(all(target_arch = "x86_64", not(miri))))]
    let _ = p;
}
