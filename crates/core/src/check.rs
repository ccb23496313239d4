//! [`Check`] and [`CheckedFree`]: a heap's invariant check and its checked
//! free, as traits, so that layers compose them.
//!
//! Every freespace heap has an inherent `check()` (its own invariants) and
//! `try_deallocate()` (a free that returns [`Corruption`] instead of
//! reporting it). Those know nothing of the layers around them. The traits
//! here let generic code reach them:
//!
//! - [`Check::check_all`] checks a whole stack: each layer checks itself and
//!   then the layer below (`Locked<Slab<Buddy<_>>>` checks the lock, the
//!   slabs and the buddy tree);
//! - [`CheckedFree::try_deallocate`] is the checked free of any heap, so a
//!   wrapper (a lock, a counting layer) passes checked frees through, and a
//!   test can drive every heap's checked free with one generic function.

use core::ptr::NonNull;

use crate::alloc::{Allocator, Layout};
use crate::{Corruption, Violation};

/// A heap or layer whose invariants can be checked, together with those of
/// every layer below it.
///
/// A leaf heap checks itself; a layer over a parent checks its own state
/// first, then calls the parent's `check_all`. Call it at a quiescent point
/// (no allocation in flight on another thread).
///
/// # Example
///
/// ```
/// use freespace_core::alloc::{Allocator, Global, Layout};
/// use freespace_core::{Check, Violation};
///
/// /// A layer that counts live blocks in front of its parent.
/// struct Counting<A> { parent: A, live: core::cell::Cell<isize> }
///
/// impl<A: Check> Check for Counting<A> {
///     fn check_all(&self) -> Result<(), Violation> {
///         if self.live.get() < 0 {
///             return Err(Violation::new("DEMO-K1", 0, "more frees than allocations"));
///         }
///         self.parent.check_all()
///     }
/// }
///
/// let layer = Counting { parent: Global, live: core::cell::Cell::new(0) };
/// assert_eq!(layer.check_all(), Ok(()));
/// layer.live.set(-1);
/// assert!(layer.check_all().is_err());
/// ```
pub trait Check {
    /// Checks this layer's invariants, then those of the layers below it;
    /// the first broken one is returned.
    fn check_all(&self) -> Result<(), Violation>;
}

/// A heap whose free can be checked: a double free, a foreign or interior
/// pointer, a wrong layout or a damaged header comes back as an error
/// instead of going to [`report`](crate::report).
///
/// # Safety
///
/// Implementors promise that `try_deallocate(ptr, layout)` frees exactly
/// like [`Allocator::deallocate`] when `ptr` is a live block of this heap
/// allocated with a layout `deallocate` accepts (it may return the block to
/// a different place: a caching layer gives it to its parent), and that an
/// `Err` means the block was not taken back: this call never makes the heap
/// hand the same memory out twice. (After an error about damaged metadata
/// the heap may have stopped using the damaged part; its `check` says what
/// it found.)
///
/// Two more promises every freespace implementation keeps, and a layer
/// keeps them by passing what it cannot check itself to its parent's
/// `try_deallocate`, never to the parent's `deallocate`:
///
/// - it never calls [`report`](crate::report) (so it never aborts);
/// - on `Err` it has written nothing: not the pointed-to memory, not the
///   heap's metadata (the one exception is the parenthesis above: damaged
///   metadata found half-way through a valid free, which the heap then
///   stops using; a layer's own counters, such as `Stats`'s count of
///   corruptions, are not metadata of the heap).
///
/// `freespace_testkit::misuse::refuses_misuse` tests all three with a
/// foreign, an interior and a double-freed pointer.
///
/// # Example
///
/// A heap of one 16-byte slot that knows whether its slot is in use, and a
/// generic helper that frees through any checked heap:
///
/// ```
/// use core::cell::{Cell, UnsafeCell};
/// use core::ptr::NonNull;
/// use freespace_core::alloc::{AllocError, Allocator, Layout};
/// use freespace_core::{CheckedFree, Corruption};
///
/// #[repr(align(16))]
/// struct OneSlot { slot: UnsafeCell<[u8; 16]>, used: Cell<bool> }
///
/// unsafe impl Allocator for &OneSlot {
///     fn allocate(&self, l: Layout) -> Result<NonNull<[u8]>, AllocError> {
///         if self.used.get() || l.size() > 16 || l.align() > 16 { return Err(AllocError); }
///         self.used.set(true);
///         let p = NonNull::new(self.slot.get().cast::<u8>()).unwrap();
///         Ok(NonNull::slice_from_raw_parts(p, 16))
///     }
///     unsafe fn deallocate(&self, p: NonNull<u8>, l: Layout) {
///         unsafe { self.try_deallocate(p, l) }.unwrap();
///     }
/// }
/// // SAFETY: frees exactly like `deallocate`; on `Err` nothing changes.
/// unsafe impl CheckedFree for &OneSlot {
///     unsafe fn try_deallocate(&self, p: NonNull<u8>, _: Layout) -> Result<(), Corruption> {
///         let addr = p.as_ptr().addr();
///         if addr != self.slot.get().addr() {
///             return Err(Corruption::ForeignPointer { addr });
///         }
///         if !self.used.replace(false) {
///             return Err(Corruption::DoubleFree { addr });
///         }
///         Ok(())
///     }
/// }
///
/// /// Frees `p`, turning a detected misuse into a message.
/// unsafe fn free_or_explain<H: CheckedFree>(heap: &H, p: NonNull<u8>, l: Layout) -> &'static str {
///     // SAFETY: the caller's contract.
///     match unsafe { heap.try_deallocate(p, l) } {
///         Ok(()) => "freed",
///         Err(Corruption::DoubleFree { .. }) => "double free",
///         Err(_) => "not freed",
///     }
/// }
///
/// let heap = OneSlot { slot: UnsafeCell::new([0; 16]), used: Cell::new(false) };
/// let l = Layout::new::<u64>();
/// let p = (&heap).allocate(l).unwrap().cast::<u8>();
/// unsafe {
///     assert_eq!(free_or_explain(&&heap, p, l), "freed");
///     assert_eq!(free_or_explain(&&heap, p, l), "double free");
/// }
/// ```
pub unsafe trait CheckedFree: Allocator {
    /// Frees `ptr` (allocated with `layout`), or says why it cannot.
    ///
    /// # Safety
    ///
    /// As [`Allocator::deallocate`], except that the heap detects and
    /// reports back (rather than trusting) the misuses it documents: `ptr`
    /// must not be used again after `Ok`.
    unsafe fn try_deallocate(&self, ptr: NonNull<u8>, layout: Layout) -> Result<(), Corruption>;
}

/// The system allocator has no invariants freespace can see.
#[cfg(feature = "alloc")]
impl Check for crate::alloc::Global {
    #[inline]
    fn check_all(&self) -> Result<(), Violation> {
        Ok(())
    }
}

impl<T: Check + ?Sized> Check for &T {
    #[inline]
    fn check_all(&self) -> Result<(), Violation> {
        (**self).check_all()
    }
}

// SAFETY: forwards to `T`, whose promise covers the same blocks (`&T`
// allocates from `T`).
unsafe impl<T: CheckedFree + ?Sized> CheckedFree for &T {
    #[inline]
    unsafe fn try_deallocate(&self, ptr: NonNull<u8>, layout: Layout) -> Result<(), Corruption> {
        // SAFETY: the caller's contract, passed on.
        unsafe { (**self).try_deallocate(ptr, layout) }
    }
}
