//! [`Fallback`]: try one allocator, and another when it fails.

use core::ptr::NonNull;

use freespace_core::alloc::{AllocError, Allocator, Layout};
use freespace_core::layout::dangling;
use freespace_core::{BlockInfo, BlockSize, CheckedFree, Corruption, Inspect, Owns, Violation};

use freespace_core::resize::{empty_side, relocate};

/// Allocates from `P` (primary), and from `S` (secondary) when `P` fails;
/// frees by asking `P` whether the block is its own.
///
/// ```text
///   allocate(layout)                    deallocate(ptr, layout)
///         │                                      │
///         ▼       Err                      P::owns(ptr) ?
///      ┌─────┐ ──────► ┌─────┐             yes │      │ no
///      │  P  │         │  S  │                 ▼      ▼
///      └─────┘         └─────┘              ┌─────┐ ┌─────┐
///                                           │  P  │ │  S  │
///                                           └─────┘ └─────┘
/// ```
///
/// # Routing
///
/// - `allocate` tries `P`; on `Err` it tries `S`. Lengths pass through
///   unchanged: frees are routed by address, not size.
/// - `deallocate` goes to `P` if `P::owns(ptr)`, otherwise to `S`, which is
///   the catch-all: a pointer neither side handed out reaches `S`, whose own
///   checks report it (every freespace heap's `deallocate` does; `Global`
///   cannot). When both sides are [`Owns`] and have a checked free,
///   [`try_deallocate`](Self::try_deallocate) routes the same way to the
///   owner's checked free, and refuses a pointer neither owns (foreign, or
///   a double free) without touching either side.
/// - `grow` of a `P` block tries `P`'s grow, and if `P` cannot, moves the
///   block to `S` (allocate, copy, free in `P`); a failed move leaves it
///   where it was. `shrink` stays on the block's own side. Zero-size
///   requests reach neither side.
///
/// # Invariants
/// - SEG-F1: every live block for which `P::owns` is `true` is a live block of
///   `P`; every other live block is a live block of `S`.
///
/// SEG-F1 holds because `P` and `S` never hand out the same bytes and `Owns` is
/// exact for live blocks; the `Fallback` keeps no state of its own, so
/// [`check`](Self::check) has nothing to walk.
///
/// If `S` is [`Owns`], so is the `Fallback`; if `P` and `S` are
/// [`BlockSize`], so is it; [`Inspect`] walks `P`, then `S`.
///
/// # Example
///
/// ```
/// use freespace_core::alloc::{Allocator, Global, Layout};
/// use freespace_segregated::Fallback;
/// # use core::ptr::NonNull;
/// # use freespace_core::{alloc::AllocError, Owns};
/// # /// A primary that never has memory (and so owns nothing).
/// # struct Empty;
/// # unsafe impl Allocator for Empty {
/// #     fn allocate(&self, _: Layout) -> Result<NonNull<[u8]>, AllocError> { Err(AllocError) }
/// #     unsafe fn deallocate(&self, _: NonNull<u8>, _: Layout) { unreachable!() }
/// # }
/// # unsafe impl Owns for Empty { fn owns(&self, _: NonNull<u8>) -> bool { false } }
///
/// let heap = Fallback::new(Empty, Global);
/// let mut v = freespace_core::alloc::Vec::new_in(&heap);
/// v.push(1u8); // `Empty` fails, `Global` serves
/// assert_eq!(v[0], 1);
/// ```
pub struct Fallback<P, S> {
    primary: P,
    secondary: S,
}

impl<P, S> Fallback<P, S> {
    /// Tries `primary` first, `secondary` when it fails. Does no work.
    ///
    /// ```
    /// use freespace_core::alloc::Global;
    /// use freespace_segregated::{Fallback, Segregated};
    /// let _heap = Fallback::new(Segregated::new(Global), Global);
    /// ```
    pub const fn new(primary: P, secondary: S) -> Self {
        Self { primary, secondary }
    }

    /// The allocator tried first.
    ///
    /// ```
    /// use freespace_core::alloc::Global;
    /// let heap = freespace_segregated::Fallback::new(1u8, Global);
    /// assert_eq!(*heap.primary(), 1);
    /// ```
    pub const fn primary(&self) -> &P {
        &self.primary
    }

    /// The allocator tried when the primary fails.
    ///
    /// ```
    /// use freespace_core::alloc::Global;
    /// let heap = freespace_segregated::Fallback::new(Global, 2u8);
    /// assert_eq!(*heap.secondary(), 2);
    /// ```
    pub const fn secondary(&self) -> &S {
        &self.secondary
    }

    /// SEG-F1 holds by construction and the `Fallback` has no state of its own:
    /// always `Ok`. Check the two sides with their own `check`.
    ///
    /// ```
    /// use freespace_core::alloc::Global;
    /// let heap = freespace_segregated::Fallback::new(Global, Global);
    /// heap.check().unwrap();
    /// ```
    pub fn check(&self) -> Result<(), Violation> {
        Ok(())
    }
}

/// Block by block (the provided methods), so each block finds its own allocator.
impl<P: Allocator + Owns, S: Allocator> freespace_core::Batch for Fallback<P, S> {}

// SAFETY: every block is a block of `P` or `S`, passed on unchanged; SEG-F1
// sends each free to the side that allocated it.
unsafe impl<P: Allocator + Owns, S: Allocator> Allocator for Fallback<P, S> {
    #[inline]
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        if layout.size() == 0 {
            return Ok(dangling(layout));
        }
        self.primary
            .allocate(layout)
            .or_else(|_| self.secondary.allocate(layout))
    }

    fn allocate_zeroed(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        if layout.size() == 0 {
            return Ok(dangling(layout));
        }
        self.primary
            .allocate_zeroed(layout)
            .or_else(|_| self.secondary.allocate_zeroed(layout))
    }

    #[inline]
    unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
        if layout.size() == 0 {
        } else if self.primary.owns(ptr) {
            // SAFETY: `P` owns it, so it is `P`'s live block (SEG-F1).
            unsafe { self.primary.deallocate(ptr, layout) }
        } else {
            // SAFETY: a live block of ours not owned by `P` is `S`'s (SEG-F1).
            unsafe { self.secondary.deallocate(ptr, layout) }
        }
    }

    freespace_core::forward_resize!(method resize);
}

impl<P: Allocator + Owns, S: Allocator> Fallback<P, S> {
    /// `grow`, `grow_zeroed` and `shrink` in one. A shrink stays with the
    /// side that owns the block; a grow is tried in place there, and a
    /// block of `P` that cannot grow in place moves to `S`.
    ///
    /// # Safety
    /// The caller's contract for `grow`/`grow_zeroed` (`zeroed` says which)
    /// or, when `new` is smaller than `old`, for `shrink`.
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
        if new.size() < old.size() {
            return if self.primary.owns(ptr) {
                // SAFETY: `P`'s live block (SEG-F1); the caller's contract otherwise.
                unsafe { self.primary.shrink(ptr, old, new) }
            } else {
                // SAFETY: `S`'s live block (SEG-F1); the caller's contract otherwise.
                unsafe { self.secondary.shrink(ptr, old, new) }
            };
        }
        if !self.primary.owns(ptr) {
            // SAFETY: `S`'s live block (SEG-F1); the caller's contract otherwise.
            return unsafe {
                if zeroed {
                    self.secondary.grow_zeroed(ptr, old, new)
                } else {
                    self.secondary.grow(ptr, old, new)
                }
            };
        }
        // SAFETY: `P`'s live block (SEG-F1); the caller's contract otherwise.
        let in_place = unsafe {
            if zeroed {
                self.primary.grow_zeroed(ptr, old, new)
            } else {
                self.primary.grow(ptr, old, new)
            }
        };
        match in_place {
            Ok(block) => Ok(block),
            // SAFETY: a failed grow left `ptr` live with `old` in `P`; a
            // fresh `S` block does not overlap it.
            Err(AllocError) => unsafe {
                relocate(
                    ptr,
                    old,
                    new,
                    |l| {
                        if zeroed {
                            self.secondary.allocate_zeroed(l)
                        } else {
                            self.secondary.allocate(l)
                        }
                    },
                    |p, l| self.primary.deallocate(p, l),
                )
            },
        }
    }
}

impl<P: CheckedFree + Owns, S: CheckedFree + Owns> Fallback<P, S> {
    /// The checked free: frees `ptr` through the **checked** free of the
    /// side that owns it. A pointer neither side owns is refused: a
    /// [`Corruption::DoubleFree`] if either side's checked free recognises
    /// it as one of its freed blocks, else [`Corruption::ForeignPointer`].
    /// Never reports, and on `Err` nothing was freed or written.
    ///
    /// # Safety
    ///
    /// If `ptr` is a live block of this allocator, `layout` must fit it, and
    /// the caller is done with it.
    ///
    /// ```
    /// use freespace_core::alloc::{Allocator, Global, Layout};
    /// use freespace_core::Corruption;
    /// use freespace_segregated::Fallback;
    /// use freespace_testkit::misuse::Tracked;
    ///
    /// let heap = Fallback::new(Tracked::new(), Tracked::new());
    /// let l = Layout::new::<[u64; 4]>();
    /// let mine = heap.allocate(l).unwrap().cast::<u8>();
    /// let theirs = Global.allocate(l).unwrap().cast::<u8>();
    /// // SAFETY: `mine` is live with `l`; `theirs` is owned by neither side,
    /// // so it is only checked, then freed where it came from; `mine + 8`
    /// // is inside a block the primary owns: its checked free refuses it.
    /// unsafe {
    ///     let inner = mine.add(8);
    ///     assert_eq!(heap.try_deallocate(inner, l), Err(Corruption::InteriorPointer { addr: inner.as_ptr().addr() }));
    ///     assert_eq!(heap.try_deallocate(mine, l), Ok(()));
    ///     assert_eq!(heap.try_deallocate(theirs, l),
    ///                Err(Corruption::ForeignPointer { addr: theirs.as_ptr().addr() }));
    ///     Global.deallocate(theirs, l);
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
        if self.primary.owns(ptr) {
            // SAFETY: `P` owns it: a live block of ours there is `P`'s (SEG-F1);
            // anything else `P`'s checked free refuses.
            unsafe { self.primary.try_deallocate(ptr, layout) }
        } else if self.secondary.owns(ptr) {
            // SAFETY: as above, for `S`.
            unsafe { self.secondary.try_deallocate(ptr, layout) }
        } else {
            // Owned by neither, so a live block of neither: a foreign
            // pointer or a double free. Only the sides' checked frees can
            // tell which (they refuse it either way, writing nothing); a
            // double free found by either wins over "foreign".
            // SAFETY: not a live block of either side (`Owns` is exact for
            // live blocks): both checked frees refuse it.
            match unsafe { self.primary.try_deallocate(ptr, layout) } {
                // SAFETY: as above.
                Err(Corruption::ForeignPointer { .. }) => unsafe {
                    self.secondary.try_deallocate(ptr, layout)
                },
                other => other,
            }
        }
    }
}

// SAFETY: a live block of ours is a live block of `P` or `S`, which answer
// `true` for it; memory outside both sides gets `false` from both.
unsafe impl<P: Owns, S: Owns> Owns for Fallback<P, S> {
    #[inline]
    fn owns(&self, ptr: NonNull<u8>) -> bool {
        self.primary.owns(ptr) || self.secondary.owns(ptr)
    }
}

// SAFETY: routed as `deallocate` is (SEG-F1), each side answering for its own
// live blocks; lengths are passed through unchanged, as in `allocate`.
unsafe impl<P: BlockSize + Owns, S: BlockSize> BlockSize for Fallback<P, S> {
    #[inline]
    unsafe fn usable_size(&self, ptr: NonNull<u8>) -> usize {
        if self.primary.owns(ptr) {
            // SAFETY: `P`'s live block (SEG-F1).
            unsafe { self.primary.usable_size(ptr) }
        } else {
            // SAFETY: `S`'s live block (SEG-F1).
            unsafe { self.secondary.usable_size(ptr) }
        }
    }

    #[inline]
    unsafe fn free(&self, ptr: NonNull<u8>) {
        if self.primary.owns(ptr) {
            // SAFETY: `P`'s live block (SEG-F1).
            unsafe { self.primary.free(ptr) }
        } else {
            // SAFETY: `S`'s live block (SEG-F1).
            unsafe { self.secondary.free(ptr) }
        }
    }
}

impl<P: Inspect, S: Inspect> Inspect for Fallback<P, S> {
    /// Walks `P`, then `S`.
    fn inspect(&self, visit: &mut dyn FnMut(BlockInfo)) {
        self.primary.inspect(visit);
        self.secondary.inspect(visit);
    }
}

impl<P: freespace_core::Check, S: freespace_core::Check> freespace_core::Check for Fallback<P, S> {
    /// Both sides' whole stacks (the router has no state of its own).
    fn check_all(&self) -> Result<(), Violation> {
        self.primary.check_all()?;
        self.secondary.check_all()
    }
}

// SAFETY: `try_deallocate` frees through the checked free of the side that
// owns the block (whose `Err` changed nothing), and returns `Err` having
// touched nothing otherwise.
unsafe impl<P: CheckedFree + Owns, S: CheckedFree + Owns> CheckedFree for Fallback<P, S> {
    #[inline]
    unsafe fn try_deallocate(&self, ptr: NonNull<u8>, layout: Layout) -> Result<(), Corruption> {
        // SAFETY: the caller's contract is the inherent method's.
        unsafe { Fallback::try_deallocate(self, ptr, layout) }
    }
}

/// Trims both parts.
impl<P: freespace_core::Trim, S: freespace_core::Trim> freespace_core::Trim for Fallback<P, S> {
    fn trim(&self) -> usize {
        self.primary.trim() + self.secondary.trim()
    }
}
