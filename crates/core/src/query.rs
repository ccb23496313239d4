//! [`Owns`] and [`BlockSize`]: the two questions a layer above may ask about
//! a pointer — "did you hand this out?" and "how big is it?".
//!
//! `Fallback` routes a free by `Owns`; the malloc shim serves C's
//! `free(p)` and `malloc_usable_size(p)` through `BlockSize`.

use core::ptr::NonNull;

/// An allocator that can tell its own blocks from others'.
///
/// # Safety
///
/// Implementors promise that `owns(p)` is `true` for the start of every block
/// this allocator has handed out and not yet freed, and `false` for every
/// pointer outside the memory this allocator manages. For pointers into its
/// memory that are not live block starts (freed blocks, interiors) it may
/// answer either way: a `true` there routes the pointer to this allocator's
/// `deallocate`, which then reports the misuse.
///
/// # Example
///
/// ```
/// use core::ptr::NonNull;
/// use freespace_core::Owns;
///
/// /// Owns exactly the bytes of one array.
/// struct Region { start: usize, len: usize }
/// // SAFETY: a live block of this "allocator" can only lie inside the array,
/// // and every address outside it answers `false`.
/// unsafe impl Owns for Region {
///     fn owns(&self, ptr: NonNull<u8>) -> bool {
///         (self.start..self.start + self.len).contains(&ptr.as_ptr().addr())
///     }
/// }
/// let mut bytes = [0u8; 32];
/// let r = Region { start: bytes.as_ptr().addr(), len: 32 };
/// assert!(r.owns(NonNull::from(&mut bytes[5])));
/// assert!(!r.owns(NonNull::from(&mut 0u8)));
/// ```
pub unsafe trait Owns {
    /// Whether `ptr` may be a block of this allocator (see the trait's
    /// contract for exactly what `true` and `false` promise).
    fn owns(&self, ptr: NonNull<u8>) -> bool;
}

// SAFETY: forwards to `A`, which upholds the contract itself.
unsafe impl<A: Owns + ?Sized> Owns for &A {
    #[inline]
    fn owns(&self, ptr: NonNull<u8>) -> bool {
        (**self).owns(ptr)
    }
}

/// An allocator whose metadata knows the size of each live block, so a block
/// can be measured and freed without its layout (C's `malloc_usable_size`
/// and `free`).
///
/// # Safety
///
/// Implementors promise that for every live block `p` of this allocator,
/// `usable_size(p)` is at least the size it was allocated with, the whole
/// `usable_size(p)` bytes at `p` may be used by its owner, and
/// `deallocate(p, l)` accepts any layout `l` with the block's alignment and a
/// size between the requested size and `usable_size(p)`; and that `free(p)`
/// has the same effect as such a `deallocate`.
///
/// # Example
///
/// Any block that implements it is used like this (here `Global`'s blocks
/// are measured by remembering the layout, which is what a header does):
///
/// ```
/// use core::ptr::NonNull;
/// use freespace_core::alloc::{Allocator, Global, Layout};
/// use freespace_core::BlockSize;
///
/// /// Every block is 64 bytes aligned to 8: the size is known from the pointer alone.
/// struct Fixed64;
/// const L: Layout = match Layout::from_size_align(64, 8) { Ok(l) => l, Err(_) => panic!() };
/// // SAFETY: every block of `Fixed64` is a 64-byte `Global` block, so 64 is
/// // its usable size and `free` is `deallocate` with that layout.
/// unsafe impl BlockSize for Fixed64 {
///     unsafe fn usable_size(&self, _: NonNull<u8>) -> usize { 64 }
///     unsafe fn free(&self, ptr: NonNull<u8>) {
///         // SAFETY: `ptr` is a live 64-byte block (caller contract).
///         unsafe { Global.deallocate(ptr, L) }
///     }
/// }
/// let p = Global.allocate(L).unwrap().cast::<u8>();
/// // SAFETY: `p` is a live block of `Fixed64`'s kind.
/// unsafe {
///     assert_eq!(Fixed64.usable_size(p), 64);
///     Fixed64.free(p);
/// }
/// ```
pub unsafe trait BlockSize {
    /// The number of bytes usable at `ptr`, at least the size it was
    /// allocated with.
    ///
    /// # Safety
    ///
    /// `ptr` is a live block allocated by `self`.
    unsafe fn usable_size(&self, ptr: NonNull<u8>) -> usize;

    /// Frees the live block at `ptr` without its layout.
    ///
    /// # Safety
    ///
    /// `ptr` is a live block allocated by `self`; it is dead afterwards.
    /// (A heap that detects a violation reports it through
    /// [`crate::report`] rather than relying on this.)
    unsafe fn free(&self, ptr: NonNull<u8>);
}

// SAFETY: forwards to `A`, which upholds the contract itself.
unsafe impl<A: BlockSize + ?Sized> BlockSize for &A {
    #[inline]
    unsafe fn usable_size(&self, ptr: NonNull<u8>) -> usize {
        // SAFETY: the caller's contract is `A`'s.
        unsafe { (**self).usable_size(ptr) }
    }

    #[inline]
    unsafe fn free(&self, ptr: NonNull<u8>) {
        // SAFETY: the caller's contract is `A`'s.
        unsafe { (**self).free(ptr) }
    }
}
