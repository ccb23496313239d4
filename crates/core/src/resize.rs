//! Moving a block: the slow path of every `grow`/`shrink` that cannot
//! happen in place (a heap without room after the block, a router whose
//! resize crosses from one side to the other).
//!
//! One home for the copy so its safety argument is written once.

use crate::alloc::{AllocError, Allocator, Layout};
use core::ptr::NonNull;

/// Allocates a block for `new` with `allocate`, copies the first
/// `min(old.size(), new.size())` bytes of `ptr` into it, then frees `ptr`
/// with `free(ptr, old)`.
///
/// If `allocate` fails nothing has happened: the old block is untouched and
/// still live (the contract of a failed `grow`/`shrink`).
///
/// # Safety
///
/// - `ptr` is a live block with at least `old.size()` readable bytes that
///   `free(ptr, old)` may release;
/// - a block returned by `allocate` has at least `new.size()` writable bytes
///   and does not overlap `ptr` (it is a different live block).
///
/// ```
/// use freespace_core::alloc::{Allocator, Global, Layout};
/// use freespace_core::resize::relocate;
///
/// let old = Layout::from_size_align(4, 4).unwrap();
/// let new = Layout::from_size_align(64, 4).unwrap();
/// let p = Global.allocate(old).unwrap().cast::<u8>();
/// // SAFETY: `p` is a live 4-byte block.
/// unsafe { p.cast::<u32>().write(0xC0FFEE) };
/// // SAFETY: `p` is live with `old`; `Global` never hands out a live block twice.
/// let q = unsafe { relocate(p, old, new, |l| Global.allocate(l), |p, l| Global.deallocate(p, l)) }.unwrap();
/// // SAFETY: the first 4 bytes were copied; `q` is live with `new`.
/// unsafe {
///     assert_eq!(q.cast::<u32>().read(), 0xC0FFEE);
///     Global.deallocate(q.cast(), new);
/// }
/// ```
pub unsafe fn relocate(
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

/// [`relocate`] within one allocator: a fresh block from `alloc` (zeroed
/// past the copied bytes when `zeroed`), the old one freed to `alloc`.
///
/// # Safety
///
/// `ptr` is a live block of `alloc` with layout `old` (a size it accepts on
/// `deallocate`).
///
/// ```
/// use freespace_core::alloc::{Allocator, Global, Layout};
/// use freespace_core::resize::relocate_within;
///
/// let old = Layout::from_size_align(8, 8).unwrap();
/// let new = Layout::from_size_align(32, 8).unwrap();
/// let p = Global.allocate(old).unwrap().cast::<u8>();
/// // SAFETY: `p` is a live block of `Global` with `old`.
/// let q = unsafe { relocate_within(&Global, p, old, new, true) }.unwrap();
/// // SAFETY: `q` is live with `new`; bytes 8.. were zeroed.
/// unsafe {
///     assert_eq!(q.cast::<u8>().add(31).read(), 0);
///     Global.deallocate(q.cast(), new);
/// }
/// ```
pub unsafe fn relocate_within<A: Allocator + ?Sized>(
    alloc: &A,
    ptr: NonNull<u8>,
    old: Layout,
    new: Layout,
    zeroed: bool,
) -> Result<NonNull<[u8]>, AllocError> {
    let allocate = |l| {
        if zeroed {
            alloc.allocate_zeroed(l)
        } else {
            alloc.allocate(l)
        }
    };
    // SAFETY: `ptr` is live in `alloc` with `old` (caller), and a fresh block
    // from `alloc` is never a live one.
    unsafe { relocate(ptr, old, new, allocate, |p, l| alloc.deallocate(p, l)) }
}

/// The two resizes that are the same in every allocator: growing an empty
/// (dangling) block is a fresh allocation from `alloc` (zeroed when
/// `zeroed`), and shrinking a block to nothing frees it, leaving a dangling
/// block of `new`. `None` when neither side is empty: the caller resizes.
/// A router's combined resize starts with it.
///
/// # Safety
///
/// `ptr` is a live block of `alloc` that `old` fits, or `old.size()` is
/// zero.
///
/// ```
/// use freespace_core::alloc::{Allocator, Global, Layout};
/// use freespace_core::resize::empty_side;
/// use core::ptr::NonNull;
///
/// let none = Layout::from_size_align(0, 8).unwrap();
/// let some = Layout::from_size_align(24, 8).unwrap();
/// // SAFETY: an empty block: a fresh allocation.
/// let p = unsafe { empty_side(&Global, NonNull::dangling(), none, some, true) };
/// let p = p.unwrap().unwrap().cast::<u8>();
/// // SAFETY: `p` is live with `some`, zeroed.
/// assert_eq!(unsafe { p.add(23).read() }, 0);
/// // SAFETY: as above; neither side empty: the caller's to do.
/// assert!(unsafe { empty_side(&Global, p, some, some, false) }.is_none());
/// // SAFETY: as above; shrunk to nothing: freed.
/// let gone = unsafe { empty_side(&Global, p, some, none, false) }.unwrap().unwrap();
/// assert_eq!(gone.len(), 0);
/// ```
#[inline(always)]
pub unsafe fn empty_side<A: Allocator + ?Sized>(
    alloc: &A,
    ptr: NonNull<u8>,
    old: Layout,
    new: Layout,
    zeroed: bool,
) -> Option<Result<NonNull<[u8]>, AllocError>> {
    if old.size() == 0 {
        return Some(if zeroed {
            alloc.allocate_zeroed(new)
        } else {
            alloc.allocate(new)
        });
    }
    if new.size() == 0 {
        // SAFETY: `ptr` is live in `alloc` with `old` (caller contract).
        unsafe { alloc.deallocate(ptr, old) };
        return Some(Ok(crate::layout::dangling(new)));
    }
    None
}

/// `alloc`'s own `grow_zeroed`, `grow` or `shrink`, whichever `zeroed` and
/// the two sizes call for: how a router hands a resize that stays on one
/// side to that side.
///
/// # Safety
///
/// `ptr` is a live block of `alloc` that `old` fits, and `new` meets
/// `grow`'s precondition (`new.size() >= old.size()`) or `shrink`'s.
///
/// ```
/// use freespace_core::alloc::{Allocator, Global, Layout};
/// use freespace_core::resize::resize_in;
///
/// let old = Layout::from_size_align(8, 8).unwrap();
/// let new = Layout::from_size_align(32, 8).unwrap();
/// let p = Global.allocate(old).unwrap().cast::<u8>();
/// // SAFETY: `p` is a live block of `Global` with `old`; 32 >= 8.
/// let q = unsafe { resize_in(&Global, p, old, new, true) }.unwrap();
/// // SAFETY: `q` is live with `new`; `grow_zeroed` zeroed bytes 8..
/// unsafe {
///     assert_eq!(q.cast::<u8>().add(31).read(), 0);
///     Global.deallocate(q.cast(), new);
/// }
/// ```
#[inline]
pub unsafe fn resize_in<A: Allocator + ?Sized>(
    alloc: &A,
    ptr: NonNull<u8>,
    old: Layout,
    new: Layout,
    zeroed: bool,
) -> Result<NonNull<[u8]>, AllocError> {
    // SAFETY: the caller's contract, which is each method's.
    unsafe {
        match (new.size() >= old.size(), zeroed) {
            (true, true) => alloc.grow_zeroed(ptr, old, new),
            (true, false) => alloc.grow(ptr, old, new),
            (false, _) => alloc.shrink(ptr, old, new),
        }
    }
}

/// Writes an `Allocator` impl's `grow`, `grow_zeroed` and `shrink` as calls
/// to one resize function taking `(ptr, old, new, zeroed)`, the shape every
/// layer that routes a block (slab, segregated lists, routers, thread
/// caches) resizes by. Used inside the `unsafe impl Allocator` block:
///
/// - `forward_resize!(method resize)` calls `self.resize(ptr, old, new, zeroed)`;
/// - `forward_resize!(fn path::to::resize)` calls `resize(self, ptr, old, new, zeroed)`.
///
/// The resize function must be `unsafe` and accept the callers' contract of
/// `grow`/`grow_zeroed` (`new` no smaller than `old`, `zeroed` says which)
/// and of `shrink` (`new` no larger, `zeroed == false`): each generated
/// method passes its own contract on unchanged, which is the one SAFETY
/// argument written here once.
///
/// ```
/// use core::ptr::NonNull;
/// use freespace_core::alloc::{AllocError, Allocator, Global, Layout};
///
/// /// Global, with every resize moving the block.
/// struct Moving;
///
/// impl Moving {
///     /// # Safety
///     /// `ptr` is live in `self` with `old`.
///     unsafe fn resize(&self, ptr: NonNull<u8>, old: Layout, new: Layout, zeroed: bool)
///         -> Result<NonNull<[u8]>, AllocError> {
///         // SAFETY: `ptr` is live in `self` with `old` (caller).
///         unsafe { freespace_core::resize::relocate_within(self, ptr, old, new, zeroed) }
///     }
/// }
///
/// // SAFETY: every block is a block of `Global`.
/// unsafe impl Allocator for Moving {
///     fn allocate(&self, l: Layout) -> Result<NonNull<[u8]>, AllocError> { Global.allocate(l) }
///     unsafe fn deallocate(&self, p: NonNull<u8>, l: Layout) {
///         // SAFETY: the caller's contract, and `p` is `Global`'s.
///         unsafe { Global.deallocate(p, l) }
///     }
///     freespace_core::forward_resize!(method resize);
/// }
///
/// let mut v = freespace_core::alloc::Vec::new_in(Moving);
/// v.extend(0..100u32);
/// assert_eq!(v.iter().sum::<u32>(), 4950);
/// ```
#[macro_export]
macro_rules! forward_resize {
    (method $resize:ident) => {
        $crate::forward_resize!(@each |this, ptr, old, new, zeroed| this.$resize(ptr, old, new, zeroed));
    };
    (fn $resize:path) => {
        $crate::forward_resize!(@each |this, ptr, old, new, zeroed| $resize(this, ptr, old, new, zeroed));
    };
    (@each |$this:ident, $ptr:ident, $old:ident, $new:ident, $zeroed:ident| $call:expr) => {
        $crate::forward_resize!(@one grow, false, |$this, $ptr, $old, $new, $zeroed| $call);
        $crate::forward_resize!(@one grow_zeroed, true, |$this, $ptr, $old, $new, $zeroed| $call);
        $crate::forward_resize!(@one shrink, false, |$this, $ptr, $old, $new, $zeroed| $call);
    };
    (@one $method:ident, $zeroing:literal, |$this:ident, $ptr:ident, $old:ident, $new:ident, $zeroed:ident| $call:expr) => {
        #[inline]
        unsafe fn $method(
            &self,
            ptr: ::core::ptr::NonNull<u8>,
            old: $crate::alloc::Layout,
            new: $crate::alloc::Layout,
        ) -> ::core::result::Result<::core::ptr::NonNull<[u8]>, $crate::alloc::AllocError> {
            let ($this, $ptr, $old, $new, $zeroed) = (self, ptr, old, new, $zeroing);
            // SAFETY: the caller's contract of this method (`grow`,
            // `grow_zeroed` or `shrink`), passed on unchanged.
            unsafe { $call }
        }
    };
}
