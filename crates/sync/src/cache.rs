//! [`ThreadCache`]: one thread's explicit handle on a [`Depot`], and the
//! `Allocator` semantics shared with the thread-local [`Magazines`](crate::Magazines) layer.

use core::cell::UnsafeCell;
use core::ptr::NonNull;

use freespace_core::alloc::{AllocError, Allocator, Layout};
use freespace_core::Batch;
use freespace_core::{layout, CheckedFree, Corruption, Violation};

use crate::depot::Depot;
use crate::magazine::{class_layout, class_of, class_size, Rack};

/// A per-thread cache of free blocks in front of a shared [`Depot`]: an
/// [`Allocator`] that serves requests of up to
/// [`MAX_CACHED`](crate::MAX_CACHED) bytes (aligned to at most 16) from this
/// thread's magazines and passes the rest to the parent.
///
/// `no_std`: the handle *is* the thread-local state, so a thread (or a
/// task, or a CPU in a kernel) makes one and uses it. A block may be freed
/// through a different handle (another thread's) than the one that
/// allocated it: blocks of one class are interchangeable, since every one
/// came from the same parent with the same layout. Dropping the handle
/// flushes its magazines to the depot, so nothing is lost when a thread
/// ends.
///
/// A handle is `!Sync` (one thread uses it at a time).
///
/// ```
/// use freespace_core::alloc::{Global, Vec};
/// use freespace_sync::{Depot, ThreadCache};
///
/// let depot = Depot::new(Global);
/// let cache = ThreadCache::new(&depot);
/// let mut v = Vec::new_in(&cache);
/// v.extend_from_slice(b"magazines");
/// assert_eq!(&v[..], b"magazines");
/// ```
///
/// # Double frees
///
/// In debug builds a free is checked against this thread's magazines of its
/// class (up to 64 rounds) and a repeat is reported as
/// `Corruption::DoubleFree` ("thread cache"); a double free whose first
/// free has already moved to the depot or another thread is not detected
/// here (nor in release builds). Wrap the parent's heap in `Locked` and
/// free through it directly for exact detection.
///
/// # Invariants
/// - SYNC-T1: the rack (SYNC-R1, SYNC-R2) is only touched by the thread holding `&self`,
///   and never across a call that could reach this handle again (the parent
///   cannot: it does not know the handle).
pub struct ThreadCache<'d, P: Batch> {
    depot: &'d Depot<P>,
    rack: UnsafeCell<Rack>,
}

impl<'d, P: Batch> ThreadCache<'d, P> {
    /// An empty cache on `depot`.
    pub const fn new(depot: &'d Depot<P>) -> Self {
        Self {
            depot,
            rack: UnsafeCell::new(Rack::new()),
        }
    }

    /// The depot this cache exchanges magazines with.
    pub fn depot(&self) -> &'d Depot<P> {
        self.depot
    }

    /// Free blocks held in this handle's magazines.
    ///
    /// ```
    /// # use freespace_core::alloc::{Allocator, Global, Layout};
    /// # use freespace_sync::{Depot, ThreadCache, REFILL};
    /// let depot = Depot::new(Global);
    /// let cache = ThreadCache::new(&depot);
    /// let l = Layout::new::<[u8; 24]>();
    /// let p = cache.allocate(l).unwrap(); // one of a batch of REFILL from the parent
    /// unsafe { cache.deallocate(p.cast(), l) };
    /// assert_eq!(cache.cached_blocks(), REFILL);
    /// ```
    pub fn cached_blocks(&self) -> usize {
        // SAFETY: SYNC-T1; no `&mut Rack` is live across this call.
        unsafe { (*self.rack.get()).cached_blocks() }
    }

    /// Hands every magazine to the depot now (what dropping the handle does).
    pub fn flush(&self) {
        // SAFETY: SYNC-T1.
        unsafe { (*self.rack.get()).flush(self.depot) }
    }

    /// Checks this thread's magazines (SYNC-R1, SYNC-M1, SYNC-M2).
    pub fn check(&self) -> Result<(), Violation> {
        // SAFETY: SYNC-T1.
        unsafe { (*self.rack.get()).check() }
    }

    /// The common case of [`allocate`](Allocator::allocate), for a fast
    /// path: a block from this thread's loaded magazine of the request's
    /// class, or `None` — nothing done — when the request is not a cached
    /// class or that magazine is empty (then call `allocate`). Calls
    /// nothing, so a caller keeps few registers across it.
    ///
    /// ```
    /// # use freespace_core::alloc::{Allocator, Global, Layout};
    /// # use freespace_sync::{Depot, ThreadCache, REFILL};
    /// let depot = Depot::new(Global);
    /// let cache = ThreadCache::new(&depot);
    /// let l = Layout::new::<[u8; 40]>();
    /// assert!(cache.try_allocate_loaded(l).is_none(), "nothing cached yet");
    /// let p = cache.allocate(l).unwrap(); // loads a batch of REFILL blocks
    /// unsafe { cache.deallocate(p.cast(), l) };
    /// let q = cache.try_allocate_loaded(l).unwrap();
    /// assert_eq!((q.cast::<u8>(), q.len()), (p.cast(), 48), "the round last freed, its class's size");
    /// let rest: Vec<_> = (1..REFILL).map(|_| cache.try_allocate_loaded(l).unwrap()).collect();
    /// assert!(cache.try_allocate_loaded(l).is_none(), "the magazine is empty now");
    /// // Not cached classes: never.
    /// assert!(cache.try_allocate_loaded(Layout::from_size_align(2000, 8).unwrap()).is_none());
    /// assert!(cache.try_allocate_loaded(Layout::from_size_align(64, 64).unwrap()).is_none());
    /// for b in rest.into_iter().chain([q]) {
    ///     unsafe { cache.deallocate(b.cast(), l) };
    /// }
    /// ```
    #[inline(always)]
    pub fn try_allocate_loaded(&self, layout: Layout) -> Option<NonNull<[u8]>> {
        let c = class_of(layout)?;
        self.with_rack(|r| r.pop_loaded(c))
            .map(|p| NonNull::slice_from_raw_parts(p, class_size(c)))
    }

    /// The common case of [`deallocate`](Allocator::deallocate), for a
    /// fast path: pushes the block into this thread's loaded magazine of
    /// its class and returns `true`, or returns `false` — nothing done —
    /// when the layout is not a cached class or that magazine is full (then
    /// call `deallocate`). Calls nothing.
    ///
    /// # Safety
    /// As for [`deallocate`](Allocator::deallocate): `ptr` is a live block
    /// of this cache's depot (through any thread's handle) and `layout`
    /// fits it; if this returns `true`, the block is not used again.
    ///
    /// ```
    /// # use freespace_core::alloc::{Allocator, Global, Layout};
    /// # use freespace_sync::{Depot, ThreadCache};
    /// let depot = Depot::new(Global);
    /// let cache = ThreadCache::new(&depot);
    /// let l = Layout::new::<u64>();
    /// // A magazine of the 16-byte class (class 0) holds this many.
    /// let rounds = depot.magazine_rounds(0);
    /// let blocks: Vec<_> = (0..rounds).map(|_| cache.allocate(l).unwrap().cast::<u8>()).collect();
    /// // The loaded magazine holds what the last batch from the parent
    /// // brought and nobody used yet; frees fill it up to `rounds`.
    /// let spare = cache.cached_blocks();
    /// let mut fast = 0;
    /// for &p in &blocks {
    ///     if unsafe { cache.try_deallocate_loaded(p, l) } {
    ///         fast += 1;
    ///     } else {
    ///         unsafe { cache.deallocate(p, l) }; // full: the caller takes the full path
    ///     }
    /// }
    /// assert_eq!(fast, rounds - spare);
    /// assert_eq!(cache.cached_blocks(), rounds + spare);
    /// ```
    #[inline(always)]
    pub unsafe fn try_deallocate_loaded(&self, ptr: NonNull<u8>, layout: Layout) -> bool {
        let Some(c) = class_of(layout) else {
            return false;
        };
        // SAFETY: `layout` fits the block (caller), and every size a block
        // of class `c` may be freed with maps to `c` (see `class_of`).
        self.with_rack(|r| unsafe { r.push_loaded(c, ptr) })
    }

    #[inline(always)]
    fn with_rack<R>(&self, f: impl FnOnce(&mut Rack) -> R) -> R {
        // SAFETY: SYNC-T1: `&self` is held by one thread (`!Sync`), and `f` only
        // calls into the rack, the depot and the parent, none of which can
        // reach this handle, so this `&mut` is unique.
        f(unsafe { &mut *self.rack.get() })
    }
}

impl<P: Batch> Drop for ThreadCache<'_, P> {
    fn drop(&mut self) {
        self.rack.get_mut().flush(self.depot);
    }
}

impl<P: Batch> core::fmt::Debug for ThreadCache<'_, P> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ThreadCache")
            .field("cached_blocks", &self.cached_blocks())
            .finish_non_exhaustive()
    }
}

/// Where a thread-cache front end gets and returns blocks of a class.
pub(crate) trait Front {
    type Parent: Allocator;
    fn parent(&self) -> &Self::Parent;
    fn alloc_class(&self, class: usize) -> Option<NonNull<u8>>;
    /// # Safety
    /// `block` is a live block of `class` from this layer, not used again.
    unsafe fn free_class(&self, class: usize, block: NonNull<u8>);
    /// The parent is out of memory: give back what this thread and the
    /// depot hold, so a retry can succeed.
    fn release(&self);
    /// Whether `block` is a free round of class `class` cached where this
    /// thread can see: its own magazines or the depot's full ones.
    fn cached(&self, class: usize, block: NonNull<u8>) -> bool;
}

/// `attempt`, and once more after [`Front::release`] if it failed: cached
/// blocks never make a request fail that the parent alone could serve.
#[inline(always)]
fn or_release<F: Front + ?Sized, T>(
    f: &F,
    attempt: impl Fn() -> Result<T, AllocError>,
) -> Result<T, AllocError> {
    attempt().or_else(|AllocError| {
        f.release();
        attempt()
    })
}

impl<P: Batch> Front for ThreadCache<'_, P> {
    type Parent = P;
    #[inline]
    fn parent(&self) -> &P {
        self.depot.parent()
    }
    #[inline(always)]
    fn alloc_class(&self, class: usize) -> Option<NonNull<u8>> {
        self.with_rack(|r| r.alloc(self.depot, class))
    }
    #[inline(always)]
    unsafe fn free_class(&self, class: usize, block: NonNull<u8>) {
        // SAFETY: the caller's contract.
        self.with_rack(|r| unsafe { r.free(self.depot, class, block) })
    }
    #[cold]
    fn release(&self) {
        self.flush();
        self.depot.reap();
    }
    fn cached(&self, class: usize, block: NonNull<u8>) -> bool {
        self.with_rack(|r| r.holds(class, block)) || self.depot.holds(class, block)
    }
}

/// The checked free of a thread-cache front end ([`CheckedFree`] for
/// [`ThreadCache`] and [`Magazines`](crate::Magazines)).
///
/// A block of a cached class is looked for among the free rounds this
/// thread can see (its own magazines and the depot's full ones: a double
/// free, found by comparing addresses, the block never read), then given
/// **straight back to the parent** through the parent's checked free with
/// the class's layout, rather than into a magazine: only the parent can
/// tell a live block from a foreign, interior or freed pointer, and its
/// checked free refuses one before writing. Other blocks go to the
/// parent's checked free as they are. Never reports.
///
/// What it cannot see: a double free whose first free is a round in
/// **another thread's** magazines (the parent still counts that block as
/// live, so its checked free takes it back). Free through one thread, or
/// flush the other threads' caches, for exact detection.
///
/// # Safety
/// [`CheckedFree::try_deallocate`]'s.
pub(crate) unsafe fn try_deallocate<F: Front + ?Sized>(
    f: &F,
    ptr: NonNull<u8>,
    layout: Layout,
) -> Result<(), Corruption>
where
    F::Parent: CheckedFree,
{
    if layout.size() == 0 {
        return Ok(());
    }
    match class_of(layout) {
        Some(c) => {
            if f.cached(c, ptr) {
                return Err(Corruption::DoubleFree {
                    addr: ptr.as_ptr() as usize,
                });
            }
            // SAFETY: not a cached round, so if it is a live block of this
            // layer it is a live parent block of `class_layout(c)` (every
            // round came from the parent with it; caller contract: the
            // layout fits); if not, the parent's checked free refuses it.
            unsafe { f.parent().try_deallocate(ptr, class_layout(c)) }
        }
        // SAFETY: an uncached block is the parent's, with this layout
        // (caller); anything else the parent's checked free refuses.
        None => unsafe { f.parent().try_deallocate(ptr, layout) },
    }
}

// SAFETY: `try_deallocate` (above) frees a live block into the parent,
// and an `Err` is either its own (nothing touched) or the parent's
// checked free's (nothing changed).
unsafe impl<P: CheckedFree + Batch> CheckedFree for ThreadCache<'_, P> {
    #[inline]
    unsafe fn try_deallocate(&self, ptr: NonNull<u8>, layout: Layout) -> Result<(), Corruption> {
        // SAFETY: the caller's contract.
        unsafe { try_deallocate(self, ptr, layout) }
    }
}

// ---------------------------------------------------------------------------
// The `Allocator` semantics of a front end: cached classes through the rack,
// everything else straight to the parent (so large blocks resize in place).
// ---------------------------------------------------------------------------

#[inline(always)]
pub(crate) fn allocate<F: Front + ?Sized>(
    f: &F,
    layout: Layout,
) -> Result<NonNull<[u8]>, AllocError> {
    match class_of(layout) {
        // The common case inline, once: the attempt after a release is a
        // call of its own (`or_release` would take the attempt as a
        // closure called from two places, which the compiler keeps out of
        // line, a call and a register save on every allocation).
        Some(c) => match f.alloc_class(c) {
            Some(p) => Ok(NonNull::slice_from_raw_parts(p, class_size(c))),
            None => alloc_class_after_release(f, c),
        },
        // Zero size is no class: tested here, off the class path.
        None if layout.size() == 0 => Ok(layout::dangling(layout)),
        None => or_release(f, || f.parent().allocate(layout)),
    }
}

/// [`allocate`]'s second attempt at a cached class, after the parent ran
/// out: what this thread and the depot hold goes back first.
#[cold]
#[inline(never)]
fn alloc_class_after_release<F: Front + ?Sized>(
    f: &F,
    c: usize,
) -> Result<NonNull<[u8]>, AllocError> {
    f.release();
    f.alloc_class(c)
        .map(|p| NonNull::slice_from_raw_parts(p, class_size(c)))
        .ok_or(AllocError)
}

/// # Safety
/// `Allocator::deallocate`'s.
#[inline(always)]
pub(crate) unsafe fn deallocate<F: Front + ?Sized>(f: &F, ptr: NonNull<u8>, layout: Layout) {
    match class_of(layout) {
        // SAFETY: `layout` fits the block (caller), and every size a block
        // of class `c` may be freed with maps to `c` (see `class_of`).
        Some(c) => unsafe { f.free_class(c, ptr) },
        // A zero-size block is dangling: nothing to free.
        None if layout.size() == 0 => {}
        // SAFETY: uncached blocks came from the parent with a layout that
        // maps to no class, as this one does.
        None => unsafe { f.parent().deallocate(ptr, layout) },
    }
}

/// # Safety
/// `Allocator::grow`'s (`new.size() >= old.size()`), or `shrink`'s.
#[inline]
pub(crate) unsafe fn resize<F: Front + ?Sized>(
    f: &F,
    ptr: NonNull<u8>,
    old: Layout,
    new: Layout,
    zeroed: bool,
) -> Result<NonNull<[u8]>, AllocError> {
    if old.size() == 0 {
        // The old block is dangling: a fresh allocation.
        return if zeroed {
            allocate_zeroed(f, new)
        } else {
            allocate(f, new)
        };
    }
    if new.size() == 0 {
        // SAFETY: `ptr` is live with `old` (caller).
        unsafe { deallocate(f, ptr, old) };
        return Ok(layout::dangling(new));
    }
    match (class_of(old), class_of(new)) {
        // Both from the parent: let it resize in place if it can.
        (None, None) => {
            // SAFETY: the caller's contract, and the block is the parent's;
            // a failed attempt leaves it untouched, so it may be retried.
            or_release(f, || unsafe {
                if new.size() < old.size() {
                    f.parent().shrink(ptr, old, new)
                } else if zeroed {
                    f.parent().grow_zeroed(ptr, old, new)
                } else {
                    f.parent().grow(ptr, old, new)
                }
            })
        }
        // Same class: the block already has room (and class alignment).
        (Some(a), Some(b)) if a == b => {
            if zeroed {
                // SAFETY: the block is `class_size(a)` bytes, so
                // `old.size()..new.size()` is inside it.
                unsafe { ptr.add(old.size()).write_bytes(0, new.size() - old.size()) };
            }
            Ok(NonNull::slice_from_raw_parts(ptr, class_size(a)))
        }
        // SAFETY: `ptr` is a live block of this layer with `old` (caller), and
        // a fresh block never overlaps a live one.
        _ => unsafe {
            freespace_core::resize::relocate(
                ptr,
                old,
                new,
                |l| {
                    if zeroed {
                        allocate_zeroed(f, l)
                    } else {
                        allocate(f, l)
                    }
                },
                |p, l| deallocate(f, p, l),
            )
        },
    }
}

#[inline]
pub(crate) fn allocate_zeroed<F: Front + ?Sized>(
    f: &F,
    layout: Layout,
) -> Result<NonNull<[u8]>, AllocError> {
    if class_of(layout).is_none() {
        return if layout.size() == 0 {
            Ok(layout::dangling(layout))
        } else {
            or_release(f, || f.parent().allocate_zeroed(layout))
        };
    }
    let block = allocate(f, layout)?;
    // SAFETY: a fresh block of `block.len()` writable bytes.
    unsafe { block.cast::<u8>().write_bytes(0, block.len()) };
    Ok(block)
}

/// Implements `Allocator` for a [`Front`] through the functions above.
macro_rules! front_allocator {
    ($($impl_head:tt)*) => {
        // SAFETY: cached blocks are parent blocks of one class layout, each
        // handed to one user at a time (SYNC-M1: a round is free until popped,
        // and popped once); uncached requests are the parent's own, and
        // `class_of` routes every free back to where its block came from.
        $($impl_head)* {
            #[inline(always)]
            fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
                $crate::cache::allocate(self, layout)
            }
            #[inline]
            fn allocate_zeroed(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
                $crate::cache::allocate_zeroed(self, layout)
            }
            #[inline(always)]
            unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
                // SAFETY: the caller's contract.
                unsafe { $crate::cache::deallocate(self, ptr, layout) }
            }
            freespace_core::forward_resize!(fn $crate::cache::resize);
        }
    };
}
#[cfg_attr(any(loom, not(feature = "std")), allow(unused_imports))]
pub(crate) use front_allocator;

front_allocator!(unsafe impl<P: Batch> Allocator for ThreadCache<'_, P>);

impl<P: Batch + freespace_core::Check> freespace_core::Check for ThreadCache<'_, P> {
    /// This handle's magazines ([`check`](ThreadCache::check)), then the
    /// depot's whole stack.
    fn check_all(&self) -> Result<(), Violation> {
        self.check()?;
        self.depot.check_all()
    }
}

/// Hands this cache's magazines to the depot ([`flush`](ThreadCache::flush)),
/// then trims the depot and everything below.
impl<P: Batch + freespace_core::Trim> freespace_core::Trim for ThreadCache<'_, P> {
    fn trim(&self) -> usize {
        self.flush();
        self.depot.trim()
    }
}
