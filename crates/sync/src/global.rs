//! `GlobalAlloc` in terms of `Allocator`, shared by [`Locked`](crate::Locked)
//! and the thread-cache layer.

use core::ptr::{self, NonNull};

use freespace_core::alloc::{Allocator, Layout};

#[inline]
pub(crate) fn alloc<A: Allocator + ?Sized>(a: &A, layout: Layout) -> *mut u8 {
    match a.allocate(layout) {
        Ok(block) => block.as_ptr().cast(),
        Err(_) => ptr::null_mut(),
    }
}

#[inline]
pub(crate) fn alloc_zeroed<A: Allocator + ?Sized>(a: &A, layout: Layout) -> *mut u8 {
    match a.allocate_zeroed(layout) {
        Ok(block) => block.as_ptr().cast(),
        Err(_) => ptr::null_mut(),
    }
}

/// # Safety
///
/// `GlobalAlloc::dealloc`'s: `ptr` came from `a` with `layout`.
#[inline]
pub(crate) unsafe fn dealloc<A: Allocator + ?Sized>(a: &A, ptr: *mut u8, layout: Layout) {
    if let Some(ptr) = NonNull::new(ptr) {
        // SAFETY: the caller's contract.
        unsafe { a.deallocate(ptr, layout) }
    }
}

/// `realloc` through `grow`/`shrink`, so a block that can resize in place
/// does. Null on failure (or a `new_size` that makes no valid layout), the
/// old block then untouched.
///
/// # Safety
///
/// `GlobalAlloc::realloc`'s: `ptr` is live, from `a`, with `layout`.
#[inline]
pub(crate) unsafe fn realloc<A: Allocator + ?Sized>(
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
