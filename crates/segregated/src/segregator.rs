//! [`Segregator`]: route by size to one of two allocators.

use core::ptr::NonNull;

use freespace_core::alloc::{AllocError, Allocator, Layout};
use freespace_core::layout::dangling;
use freespace_core::{BlockInfo, BlockSize, CheckedFree, Corruption, Inspect, Owns, Violation};

use freespace_core::resize::{empty_side, relocate_within, resize_in};

/// Requests of at most `THRESHOLD` bytes go to `S` (small), larger ones to
/// `L` (large).
///
/// ```text
///          allocate(layout)           deallocate(ptr, layout)
///                 │                            │
///        size <= THRESHOLD ?          size <= THRESHOLD ?
///          yes │      │ no              yes │      │ no
///              ▼      ▼                     ▼      ▼
///           ┌─────┐ ┌─────┐              ┌─────┐ ┌─────┐
///           │  S  │ │  L  │              │  S  │ │  L  │
///           └─────┘ └─────┘              └─────┘ └─────┘
///   len reported: min(S's len, THRESHOLD)    L's len (> THRESHOLD already)
/// ```
///
/// # Routing
///
/// - A free is routed by the size it is given, so the length reported for a
///   block of `S` is **clamped to `THRESHOLD`**: every size the caller may
///   then free with (request ..= reported length) is still `<= THRESHOLD`
///   and goes back to `S`. A block of `L` was asked for with more than
///   `THRESHOLD` bytes, so every fitting size is above it and goes to `L`.
/// - `grow`/`shrink` within one side is that side's; across the threshold
///   the block moves (allocate on the other side, copy, free the old one). A
///   move that cannot allocate fails and leaves the block as it was.
/// - Zero-size requests reach neither side.
///
/// The alignment plays no part in the routing.
///
/// # Invariants
/// - SEG-R1: every live block of at most `THRESHOLD` requested bytes is a live
///   block of `S`, reported with a length of at most `THRESHOLD`.
/// - SEG-R2: every live block of more than `THRESHOLD` requested bytes is a live
///   block of `L`.
///
/// Both hold by construction (each method routes and clamps); the
/// `Segregator` keeps no state of its own, so [`check`](Self::check) has
/// nothing to walk. Check the sides through [`small`](Self::small) and
/// [`large`](Self::large).
///
/// If `S` and `L` are both [`Owns`], so is the `Segregator`; if both are
/// also [`BlockSize`], so is it (a free without layout is routed by
/// `S::owns`); [`Inspect`] walks `S` then `L`.
///
/// # Sharing a parent
///
/// `Segregator<T, &A, &A>` (or two layers over one `&A`) routes
/// `allocate`/`deallocate` correctly — by size — but its `Owns` answer is
/// only as fine as `A`'s, `BlockSize` cannot tell the sides apart (do not
/// use it there), and `Inspect` walks `A` twice.
///
/// # Example
///
/// ```
/// use freespace_core::alloc::{Allocator, Global, Layout, Vec};
/// use freespace_segregated::{Segregated, Segregator};
///
/// // Lists for the small sizes, the general allocator for the rest.
/// let heap: Segregator<256, _, _> = Segregator::new(Segregated::new(Global), Global);
/// let mut v = Vec::new_in(&heap);
/// v.extend(0..1000u32); // starts small, crosses 256 B, ends large
/// assert_eq!(v.iter().sum::<u32>(), 499_500);
/// ```
pub struct Segregator<const THRESHOLD: usize, S, L> {
    small: S,
    large: L,
}

impl<const THRESHOLD: usize, S, L> Segregator<THRESHOLD, S, L> {
    /// Routes requests of at most `THRESHOLD` bytes to `small`, the rest to
    /// `large`. Does no work.
    ///
    /// ```
    /// use freespace_core::alloc::Global;
    /// use freespace_segregated::{Segregated, Segregator};
    /// const _: Segregator<128, Segregated<Global>, Global> =
    ///     Segregator::new(Segregated::new(Global), Global);
    /// ```
    pub const fn new(small: S, large: L) -> Self {
        Self { small, large }
    }

    /// The allocator for requests of at most `THRESHOLD` bytes.
    ///
    /// ```
    /// use freespace_core::alloc::Global;
    /// let heap = freespace_segregated::Segregator::<64, _, _>::new(Global, Global);
    /// let _small: &Global = heap.small();
    /// ```
    pub const fn small(&self) -> &S {
        &self.small
    }

    /// The allocator for requests of more than `THRESHOLD` bytes.
    ///
    /// ```
    /// use freespace_core::alloc::Global;
    /// let heap = freespace_segregated::Segregator::<64, _, _>::new(Global, Global);
    /// let _large: &Global = heap.large();
    /// ```
    pub const fn large(&self) -> &L {
        &self.large
    }

    /// SEG-R1 and SEG-R2 hold by construction and the `Segregator` has no state of
    /// its own: always `Ok`. Check the sides with their own `check`.
    ///
    /// ```
    /// use freespace_core::alloc::Global;
    /// use freespace_segregated::{Segregated, Segregator};
    /// let heap = Segregator::<64, _, _>::new(Segregated::new(Global), Global);
    /// heap.check().and_then(|()| heap.small().check()).unwrap();
    /// ```
    pub fn check(&self) -> Result<(), Violation> {
        Ok(())
    }

    #[inline]
    const fn is_small(layout: Layout) -> bool {
        layout.size() <= THRESHOLD
    }

    /// A block of `S`, its length clamped to `THRESHOLD` (SEG-R1).
    #[inline]
    fn clamp(block: NonNull<[u8]>) -> NonNull<[u8]> {
        NonNull::slice_from_raw_parts(block.cast::<u8>(), block.len().min(THRESHOLD))
    }
}

impl<const THRESHOLD: usize, S: Allocator, L: Allocator> Segregator<THRESHOLD, S, L> {
    /// `grow`, `grow_zeroed` and `shrink` in one.
    ///
    /// # Safety
    /// `ptr` is a live block of `self` and `old` fits it (or `old.size()` is
    /// zero); `grow`'s or `shrink`'s size precondition holds.
    unsafe fn resize(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
        zeroed: bool,
    ) -> Result<NonNull<[u8]>, AllocError> {
        // SAFETY: `ptr` is live with `old`, or `old` is empty (caller
        // contract).
        if let Some(done) = unsafe { empty_side(self, ptr, old, new, zeroed) } {
            return done;
        }
        match (Self::is_small(old), Self::is_small(new)) {
            (true, true) => {
                // SAFETY: `old` is small, so the block is `S`'s (SEG-R1) and
                // `old` fits it; the size precondition is the caller's.
                unsafe { resize_in(&self.small, ptr, old, new, zeroed) }.map(Self::clamp)
            }
            // SAFETY: `old` is large, so the block is `L`'s (SEG-R2).
            (false, false) => unsafe { resize_in(&self.large, ptr, old, new, zeroed) },
            // SAFETY: `ptr` is a live block of `self` that `old` fits, and
            // `old` routes its free to the side that allocated it; a fresh
            // block from the other side never overlaps it.
            _ => unsafe { relocate_within(self, ptr, old, new, zeroed) },
        }
    }
}

// SAFETY: every block is a block of `S` or `L`, passed on unchanged except
// that `S`'s length is clamped down (never up) to `THRESHOLD`; SEG-R1 and SEG-R2
// send each free, with any fitting size, to the side that allocated it.
unsafe impl<const THRESHOLD: usize, S: Allocator, L: Allocator> Allocator
    for Segregator<THRESHOLD, S, L>
{
    #[inline]
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        if layout.size() == 0 {
            Ok(dangling(layout))
        } else if Self::is_small(layout) {
            self.small.allocate(layout).map(Self::clamp)
        } else {
            self.large.allocate(layout)
        }
    }

    fn allocate_zeroed(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        if layout.size() == 0 {
            Ok(dangling(layout))
        } else if Self::is_small(layout) {
            self.small.allocate_zeroed(layout).map(Self::clamp)
        } else {
            self.large.allocate_zeroed(layout)
        }
    }

    #[inline]
    unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
        if layout.size() == 0 {
        } else if Self::is_small(layout) {
            // SAFETY: a small fitting size means an `S` block (SEG-R1).
            unsafe { self.small.deallocate(ptr, layout) }
        } else {
            // SAFETY: a large fitting size means an `L` block (SEG-R2).
            unsafe { self.large.deallocate(ptr, layout) }
        }
    }

    freespace_core::forward_resize!(method resize);
}

impl<const THRESHOLD: usize, S: CheckedFree + Owns, L: CheckedFree + Owns>
    Segregator<THRESHOLD, S, L>
{
    /// The checked free: routes `ptr` by its size like `deallocate`, and
    /// frees it through the routed side's **checked** free if that side
    /// owns it. A pointer the other side owns is a size mismatch (freed with
    /// a size from the wrong side of the threshold); one neither owns goes
    /// to the routed side's checked free, which names it (a double free, or
    /// a foreign pointer). Never reports, and on `Err` nothing was freed or
    /// written.
    ///
    /// # Safety
    ///
    /// If `ptr` is a live block of this allocator, `layout` must fit it, and
    /// the caller is done with it.
    ///
    /// ```
    /// use freespace_core::alloc::{Allocator, Layout};
    /// use freespace_core::Corruption;
    /// use freespace_segregated::Segregator;
    /// use freespace_testkit::misuse::Tracked;
    ///
    /// let heap = Segregator::<64, Tracked, Tracked>::new(Tracked::new(), Tracked::new());
    /// let big = Layout::from_size_align(100, 8).unwrap();
    /// let p = heap.allocate(big).unwrap().cast::<u8>();
    /// let wrong = Layout::from_size_align(10, 8).unwrap();
    /// // SAFETY: the small side does not own `p`, so nothing is freed; then
    /// // `p` is freed with the layout it was allocated with, once.
    /// unsafe {
    ///     assert_eq!(heap.try_deallocate(p, wrong), Err(Corruption::SizeMismatch { addr: p.as_ptr().addr() }));
    ///     assert_eq!(heap.try_deallocate(p, big), Ok(()));
    ///     assert_eq!(heap.try_deallocate(p, big), Err(Corruption::DoubleFree { addr: p.as_ptr().addr() }));
    /// }
    /// ```
    pub unsafe fn try_deallocate(
        &self,
        ptr: NonNull<u8>,
        layout: Layout,
    ) -> Result<(), Corruption> {
        if layout.size() == 0 {
            return Ok(());
        }
        let addr = ptr.as_ptr().addr();
        let (routed, other) = if Self::is_small(layout) {
            (self.small.owns(ptr), self.large.owns(ptr))
        } else {
            (self.large.owns(ptr), self.small.owns(ptr))
        };
        if routed {
            // SAFETY: the routed side owns it: if it is a live block of ours
            // it is that side's (SEG-R1, SEG-R2) with a fitting layout (caller
            // contract); if not, that side's checked free refuses it.
            unsafe {
                if Self::is_small(layout) {
                    self.small.try_deallocate(ptr, layout)
                } else {
                    self.large.try_deallocate(ptr, layout)
                }
            }
        } else if other {
            Err(Corruption::SizeMismatch { addr })
        } else {
            // Owned by neither: not a live block of ours. The routed side's
            // checked free tells a double free from a foreign pointer,
            // refusing it either way without writing.
            // SAFETY: not a live block of either side (`Owns` is exact for
            // live blocks), so the routed side's checked free refuses it.
            unsafe {
                if Self::is_small(layout) {
                    self.small.try_deallocate(ptr, layout)
                } else {
                    self.large.try_deallocate(ptr, layout)
                }
            }
        }
    }
}

// SAFETY: a live block of ours is a live block of `S` or `L`, which answer
// `true` for it; a pointer outside both sides' memory gets `false` from both.
unsafe impl<const THRESHOLD: usize, S: Owns, L: Owns> Owns for Segregator<THRESHOLD, S, L> {
    #[inline]
    fn owns(&self, ptr: NonNull<u8>) -> bool {
        self.small.owns(ptr) || self.large.owns(ptr)
    }
}

// SAFETY: `S::owns` is `true` for every live `S` block, and a live block
// of ours that `S` does not own is `L`'s (SEG-R1, SEG-R2). `S`'s usable size is
// clamped to `THRESHOLD`, so every size a caller may free it with routes
// back to `S`; an `L` block's request exceeded `THRESHOLD`, so its usable
// size does too and all its fitting sizes route to `L`. (This needs the
// sides' memory to be disjoint; see "Sharing a parent".)
unsafe impl<const THRESHOLD: usize, S, L> BlockSize for Segregator<THRESHOLD, S, L>
where
    S: BlockSize + Owns,
    L: BlockSize,
{
    #[inline]
    unsafe fn usable_size(&self, ptr: NonNull<u8>) -> usize {
        if self.small.owns(ptr) {
            // SAFETY: a live block of `S` (caller contract, `S::owns`).
            unsafe { self.small.usable_size(ptr) }.min(THRESHOLD)
        } else {
            // SAFETY: a live block of ours that `S` does not own is `L`'s.
            unsafe { self.large.usable_size(ptr) }
        }
    }

    #[inline]
    unsafe fn free(&self, ptr: NonNull<u8>) {
        if self.small.owns(ptr) {
            // SAFETY: a live block of `S`.
            unsafe { self.small.free(ptr) }
        } else {
            // SAFETY: a live block of `L`.
            unsafe { self.large.free(ptr) }
        }
    }
}

impl<const THRESHOLD: usize, S: Inspect, L: Inspect> Inspect for Segregator<THRESHOLD, S, L> {
    /// Walks `S`, then `L`.
    fn inspect(&self, visit: &mut dyn FnMut(BlockInfo)) {
        self.small.inspect(visit);
        self.large.inspect(visit);
    }
}

impl<const THRESHOLD: usize, S: freespace_core::Check, L: freespace_core::Check>
    freespace_core::Check for Segregator<THRESHOLD, S, L>
{
    /// Both sides' whole stacks (the router has no state of its own).
    fn check_all(&self) -> Result<(), Violation> {
        self.small.check_all()?;
        self.large.check_all()
    }
}

// SAFETY: `try_deallocate` frees through the routed side's checked free
// only when that side owns the block (so an `Err` from it changed
// nothing), and returns `Err` having touched nothing otherwise.
unsafe impl<const THRESHOLD: usize, S: CheckedFree + Owns, L: CheckedFree + Owns> CheckedFree
    for Segregator<THRESHOLD, S, L>
{
    #[inline]
    unsafe fn try_deallocate(&self, ptr: NonNull<u8>, layout: Layout) -> Result<(), Corruption> {
        // SAFETY: the caller's contract is the inherent method's.
        unsafe { Segregator::try_deallocate(self, ptr, layout) }
    }
}

/// Trims both parts.
impl<const THRESHOLD: usize, S: freespace_core::Trim, L: freespace_core::Trim> freespace_core::Trim
    for Segregator<THRESHOLD, S, L>
{
    fn trim(&self) -> usize {
        self.small.trim() + self.large.trim()
    }
}
