//! `GlobalAlloc` in terms of `Allocator`: the four functions every `Sync`
//! layer's `GlobalAlloc` impl is made of, and
//! [`forward_global_alloc!`](crate::forward_global_alloc), which writes that
//! impl's body.
//!
//! One home for the translation (null for `Err`, a null free ignored,
//! `realloc` through `grow`/`shrink` so a block that can resize in place
//! does), so its safety argument is written once.

use core::ptr::{self, NonNull};

use crate::alloc::{Allocator, Layout};

/// `GlobalAlloc::alloc` through [`Allocator::allocate`]: the block's
/// address, or null on `Err`.
///
/// ```
/// use freespace_core::alloc::{Allocator, Global, Layout};
/// let l = Layout::new::<u64>();
/// let p = freespace_core::global::alloc(&Global, l);
/// assert!(!p.is_null());
/// // SAFETY: `p` came from `Global` with `l`.
/// unsafe { freespace_core::global::dealloc(&Global, p, l) };
/// ```
#[inline]
pub fn alloc<A: Allocator + ?Sized>(a: &A, layout: Layout) -> *mut u8 {
    match a.allocate(layout) {
        Ok(block) => block.as_ptr().cast(),
        Err(_) => ptr::null_mut(),
    }
}

/// `GlobalAlloc::alloc_zeroed` through [`Allocator::allocate_zeroed`].
///
/// ```
/// use freespace_core::alloc::{Global, Layout};
/// let l = Layout::new::<u64>();
/// let p = freespace_core::global::alloc_zeroed(&Global, l);
/// // SAFETY: `p` is a fresh zeroed block of 8 bytes, aligned for `u64`.
/// unsafe {
///     assert_eq!(p.cast::<u64>().read(), 0);
///     freespace_core::global::dealloc(&Global, p, l);
/// }
/// ```
#[inline]
pub fn alloc_zeroed<A: Allocator + ?Sized>(a: &A, layout: Layout) -> *mut u8 {
    match a.allocate_zeroed(layout) {
        Ok(block) => block.as_ptr().cast(),
        Err(_) => ptr::null_mut(),
    }
}

/// `GlobalAlloc::dealloc` through [`Allocator::deallocate`]; a null `ptr`
/// is ignored.
///
/// # Safety
///
/// `GlobalAlloc::dealloc`'s: `ptr` is null or came from `a` with `layout`.
///
/// ```
/// use freespace_core::alloc::{Global, Layout};
/// // SAFETY: null is ignored.
/// unsafe { freespace_core::global::dealloc(&Global, core::ptr::null_mut(), Layout::new::<u8>()) };
/// ```
#[inline]
pub unsafe fn dealloc<A: Allocator + ?Sized>(a: &A, ptr: *mut u8, layout: Layout) {
    if let Some(ptr) = NonNull::new(ptr) {
        // SAFETY: `ptr` came from `a` with `layout` (caller contract).
        unsafe { a.deallocate(ptr, layout) }
    }
}

/// `GlobalAlloc::realloc` through `grow`/`shrink`, so a block that can
/// resize in place does. Null on failure (or a `new_size` that makes no
/// valid layout), the old block then untouched.
///
/// # Safety
///
/// `GlobalAlloc::realloc`'s: `ptr` is live, from `a`, with `layout`.
///
/// ```
/// use freespace_core::alloc::{Global, Layout};
/// let l = Layout::new::<u32>();
/// let p = freespace_core::global::alloc(&Global, l);
/// // SAFETY: `p` is live from `Global` with `l`.
/// let q = unsafe { freespace_core::global::realloc(&Global, p, l, 64) };
/// assert!(!q.is_null());
/// // SAFETY: `q` is live from `Global` with 64 bytes, align 4.
/// unsafe { freespace_core::global::dealloc(&Global, q, Layout::from_size_align(64, 4).unwrap()) };
/// ```
#[inline]
pub unsafe fn realloc<A: Allocator + ?Sized>(
    a: &A,
    ptr: *mut u8,
    layout: Layout,
    new_size: usize,
) -> *mut u8 {
    let (Some(old), Ok(new)) = (
        NonNull::new(ptr),
        Layout::from_size_align(new_size, layout.align()),
    ) else {
        return ptr::null_mut();
    };
    let result = if new_size >= layout.size() {
        // SAFETY: `old` is live with `layout` (caller) and `new` is no smaller.
        unsafe { a.grow(old, layout, new) }
    } else {
        // SAFETY: `old` is live with `layout` (caller) and `new` is smaller.
        unsafe { a.shrink(old, layout, new) }
    };
    match result {
        Ok(block) => block.as_ptr().cast(),
        Err(_) => ptr::null_mut(),
    }
}

/// Writes the body of a `GlobalAlloc` impl for a type that is an
/// `Allocator`: each method calls the function of the same name in
/// [`global`](crate::global) on `self`. Used inside the `unsafe impl
/// GlobalAlloc` block, whose SAFETY comment states that the type's
/// `Allocator` impl is sound (the translation itself is written once, here).
///
/// ```
/// use core::alloc::GlobalAlloc;
/// use core::ptr::NonNull;
/// use freespace_core::alloc::{AllocError, Allocator, Global, Layout};
///
/// struct Passthrough;
///
/// // SAFETY: every block is a block of `Global`.
/// unsafe impl Allocator for Passthrough {
///     fn allocate(&self, l: Layout) -> Result<NonNull<[u8]>, AllocError> { Global.allocate(l) }
///     unsafe fn deallocate(&self, p: NonNull<u8>, l: Layout) {
///         // SAFETY: the caller's contract, and `p` is `Global`'s.
///         unsafe { Global.deallocate(p, l) }
///     }
/// }
///
/// // SAFETY: through the `Allocator` impl above (see `freespace_core::global`).
/// unsafe impl GlobalAlloc for Passthrough {
///     freespace_core::forward_global_alloc!();
/// }
///
/// let l = Layout::new::<u64>();
/// // SAFETY: `l` is not zero-sized; `p` is freed with `l`.
/// unsafe {
///     let p = Passthrough.alloc(l);
///     assert!(!p.is_null());
///     Passthrough.dealloc(p, l);
/// }
/// ```
#[macro_export]
macro_rules! forward_global_alloc {
    () => {
        #[inline]
        unsafe fn alloc(&self, layout: $crate::alloc::Layout) -> *mut u8 {
            $crate::global::alloc(self, layout)
        }

        #[inline]
        unsafe fn alloc_zeroed(&self, layout: $crate::alloc::Layout) -> *mut u8 {
            $crate::global::alloc_zeroed(self, layout)
        }

        #[inline]
        unsafe fn dealloc(&self, ptr: *mut u8, layout: $crate::alloc::Layout) {
            // SAFETY: the caller's `GlobalAlloc::dealloc` contract.
            unsafe { $crate::global::dealloc(self, ptr, layout) }
        }

        #[inline]
        unsafe fn realloc(
            &self,
            ptr: *mut u8,
            layout: $crate::alloc::Layout,
            new_size: usize,
        ) -> *mut u8 {
            // SAFETY: the caller's `GlobalAlloc::realloc` contract.
            unsafe { $crate::global::realloc(self, ptr, layout, new_size) }
        }
    };
}
