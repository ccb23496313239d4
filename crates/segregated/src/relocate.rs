//! Moving a block from one allocator to another: the slow path every router
//! here takes when a resize crosses from one side to the other.

use core::ptr::NonNull;
use freespace_core::alloc::{AllocError, Layout};

/// Allocates a block for `new` with `allocate`, copies the first
/// `min(old.size(), new.size())` bytes of `ptr` into it, then frees `ptr`
/// with `free(ptr, old)`.
///
/// If `allocate` fails, nothing has happened: the old block is untouched and
/// still live (the contract of a failed `grow`/`shrink`).
///
/// # Safety
///
/// - `ptr` is a live block of `old.size()` readable bytes that `free(ptr, old)`
///   may release;
/// - a block returned by `allocate` is at least `new.size()` bytes and does
///   not overlap `ptr` (it is a different live block).
pub(crate) unsafe fn relocate(
    ptr: NonNull<u8>,
    old: Layout,
    new: Layout,
    allocate: impl FnOnce(Layout) -> Result<NonNull<[u8]>, AllocError>,
    free: impl FnOnce(NonNull<u8>, Layout),
) -> Result<NonNull<[u8]>, AllocError> {
    let block = allocate(new)?;
    let keep = old.size().min(new.size());
    // SAFETY: `ptr` has `old.size() >= keep` readable bytes, `block` has
    // `new.size() >= keep` writable bytes, and the two are distinct live
    // blocks, so they do not overlap (caller contract).
    unsafe { core::ptr::copy_nonoverlapping(ptr.as_ptr(), block.cast::<u8>().as_ptr(), keep) };
    free(ptr, old);
    Ok(block)
}
