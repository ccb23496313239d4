//! [`Locked`]: any block made `Sync` behind a lock, usable as a
//! `#[global_allocator]`.

use core::alloc::GlobalAlloc;
use core::mem::ManuallyDrop;
use core::ops::{Deref, DerefMut};
use core::ptr::NonNull;

use freespace_core::alloc::{AllocError, Allocator, Layout};
use freespace_core::{BlockInfo, BlockSize, Inspect, Owns, Violation};
use lock_api::RawMutex;

use crate::sync::{MutPtr, UnsafeCell};
use crate::DefaultLock;

/// A block `A` behind a lock `R` ([`DefaultLock`] by default: a lock that
/// spins briefly and then sleeps on Linux, a spin lock on bare metal): `Sync` whenever `A`
/// is `Send`, an [`Allocator`] and a [`GlobalAlloc`].
///
/// Every method takes the lock, forwards to `A` and releases it. `realloc`
/// goes through `A`'s `grow`/`shrink`, so a heap that resizes in place
/// (the free-list heap, buddy) does so here too.
///
/// ```
/// use freespace_sync::Locked;
/// use freespace_core::alloc::{Global, Vec};
///
/// // `Global` stands in for any freespace heap.
/// static HEAP: Locked<Global> = Locked::new(Global);
/// let t = std::thread::spawn(|| {
///     let mut v = Vec::new_in(&HEAP);
///     v.extend(0..100u32);
///     v.iter().sum::<u32>()
/// });
/// assert_eq!(t.join().unwrap(), 4950);
/// ```
///
/// # Re-entrancy
///
/// The lock is not re-entrant. Nothing `A` does while serving a request may
/// come back to the same `Locked`: in particular, when a `Locked` is the
/// `#[global_allocator]`, its heap's `Source` must get memory from the
/// operating system (`Sbrk`, `Mmap`, an `Arena`), never through
/// `FromAllocator<Global>`, which would call the global allocator, reach
/// this lock again and spin forever. The same holds for the visitor of
/// [`Inspect::inspect`], which runs under the lock. Corruption reports are
/// safe: `freespace_core::report` does not allocate.
///
/// # Invariants
/// - SYNC-L1: `inner` is only reached through a [`LockedGuard`] (or `&mut self`),
///   and a guard exists only while `raw` is held by its thread; so at most
///   one thread touches `inner` at a time.
/// - SYNC-L2: nothing here panics while holding the lock: `A`'s methods do not
///   panic (the `Allocator` contract of every freespace block), and the
///   guard releases the lock when dropped.
pub struct Locked<A, R: RawMutex = DefaultLock> {
    raw: R,
    inner: UnsafeCell<A>,
}

// SAFETY: `inner` is only reached while `raw` is held (SYNC-L1), so sharing a
// `Locked` moves exclusive access to `A` between threads one at a time: that
// needs `A: Send`, not `A: Sync`. `R` is a lock made to be shared.
unsafe impl<A: Send, R: RawMutex + Sync> Sync for Locked<A, R> {}

impl<A, R: RawMutex> Locked<A, R> {
    /// Puts `inner` behind an unlocked `R`. Does no other work, so a
    /// `Locked` can be a `static`.
    ///
    /// (Under `--cfg loom` this is not `const`: loom's cells and atomics
    /// are registered with the model when they are created.)
    ///
    /// ```
    /// use freespace_sync::Locked;
    /// use freespace_core::alloc::Global;
    /// static HEAP: Locked<Global> = Locked::new(Global);
    /// # let _ = &HEAP;
    /// ```
    #[cfg(not(loom))]
    pub const fn new(inner: A) -> Self {
        Self {
            raw: R::INIT,
            inner: UnsafeCell::new(inner),
        }
    }

    /// Puts `inner` behind an unlocked `R` (loom build: not `const`).
    #[cfg(loom)]
    pub fn new(inner: A) -> Self {
        let raw = R::INIT;
        // The locks create their loom primitives on first use; do that here, on the
        // constructing thread, so every later use happens-after it in the
        // model (a creation racing with another thread's first load is a
        // causality violation to loom).
        let _ = raw.is_locked();
        Self {
            raw,
            inner: UnsafeCell::new(inner),
        }
    }

    /// Takes the lock, waiting for it, and gives direct access to the block
    /// (for example to call its `check()` or its `try_deallocate`).
    ///
    /// ```
    /// use freespace_sync::Locked;
    /// use freespace_core::alloc::Global;
    /// let heap = Locked::<_>::new(Global);
    /// let guard = heap.lock();
    /// let _: &Global = &guard;
    /// assert!(heap.try_lock().is_none(), "not re-entrant");
    /// drop(guard);
    /// assert!(heap.try_lock().is_some());
    /// ```
    #[inline]
    pub fn lock(&self) -> LockedGuard<'_, A, R> {
        self.raw.lock();
        // SAFETY: the lock was just taken.
        unsafe { self.guard() }
    }

    /// Takes the lock if it is free.
    #[inline]
    pub fn try_lock(&self) -> Option<LockedGuard<'_, A, R>> {
        if self.raw.try_lock() {
            // SAFETY: the lock was just taken.
            Some(unsafe { self.guard() })
        } else {
            None
        }
    }

    /// Releases a lock whose guard was forgotten (`core::mem::forget`):
    /// for a lock held across a boundary no guard can span, such as
    /// `fork()` between `pthread_atfork`'s prepare and parent/child
    /// handlers.
    ///
    /// ```
    /// use freespace_sync::Locked;
    /// let heap = Locked::<u32>::new(0);
    /// core::mem::forget(heap.lock());
    /// assert!(heap.try_lock().is_none());
    /// // SAFETY: held through the guard forgotten above, which is gone.
    /// unsafe { heap.force_unlock() };
    /// assert!(heap.try_lock().is_some());
    /// ```
    ///
    /// # Safety
    ///
    /// The lock is held through a guard that was forgotten, by this thread
    /// (or, in the child of a `fork`, by the thread that forked), and no
    /// reference obtained through that guard is used any more.
    pub unsafe fn force_unlock(&self) {
        // SAFETY: held, with no access left through it (caller).
        unsafe { self.raw.unlock() }
    }

    /// # Safety
    ///
    /// This thread holds `raw`, and gives the responsibility of releasing it
    /// to the returned guard.
    #[inline]
    unsafe fn guard(&self) -> LockedGuard<'_, A, R> {
        LockedGuard {
            lock: self,
            inner: ManuallyDrop::new(self.inner.get_mut()),
        }
    }

    /// The block, without locking: `&mut self` proves no one else holds it.
    ///
    /// ```
    /// use freespace_sync::Locked;
    /// let mut counter = Locked::<u32>::new(1);
    /// *counter.get_mut() += 1;
    /// assert_eq!(counter.into_inner(), 2);
    /// ```
    pub fn get_mut(&mut self) -> &mut A {
        // SAFETY: `&mut self` excludes every guard and every other access (SYNC-L1).
        self.inner.with_mut(|p| unsafe { &mut *p })
    }

    /// The block, taken out of the lock.
    pub fn into_inner(self) -> A {
        self.inner.into_inner()
    }

    /// Checks what can be checked of SYNC-L1 from outside: at a quiescent point
    /// (no thread inside an allocation) the lock is free. The block's own
    /// invariants are `heap.lock().check()`.
    ///
    /// ```
    /// use freespace_sync::Locked;
    /// use freespace_core::alloc::Global;
    /// let heap = Locked::<_>::new(Global);
    /// assert!(heap.check().is_ok());
    /// let g = heap.lock();
    /// assert!(heap.check().is_err());
    /// # drop(g);
    /// ```
    pub fn check(&self) -> Result<(), Violation> {
        if self.raw.is_locked() {
            Err(Violation::new(
                "SYNC-L1",
                self as *const Self as usize,
                "lock held at a quiescent point",
            ))
        } else {
            Ok(())
        }
    }
}

impl<A: Default, R: RawMutex> Default for Locked<A, R> {
    fn default() -> Self {
        Self::new(A::default())
    }
}

impl<A, R: RawMutex> core::fmt::Debug for Locked<A, R> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Locked")
            .field("locked", &self.raw.is_locked())
            .finish_non_exhaustive()
    }
}

/// Exclusive access to the block inside a [`Locked`]; the lock is released
/// when the guard is dropped.
///
/// ```
/// use freespace_sync::Locked;
/// let v = Locked::<Vec<u8>>::new(Vec::new());
/// v.lock().push(7);
/// assert_eq!(v.lock()[0], 7);
/// ```
pub struct LockedGuard<'a, A, R: RawMutex = DefaultLock> {
    lock: &'a Locked<A, R>,
    // Dropped (ending loom's record of the write access) before the unlock.
    inner: ManuallyDrop<MutPtr<A>>,
}

impl<A, R: RawMutex> Deref for LockedGuard<'_, A, R> {
    type Target = A;
    #[inline]
    fn deref(&self) -> &A {
        // SAFETY: the guard holds the lock, so no other thread reaches
        // `inner` (SYNC-L1); the reference lives no longer than the guard.
        unsafe { MutPtr::deref(&self.inner) }
    }
}

impl<A, R: RawMutex> DerefMut for LockedGuard<'_, A, R> {
    #[inline]
    fn deref_mut(&mut self) -> &mut A {
        // SAFETY: as in `deref`; `&mut self` excludes the guard's other borrows.
        unsafe { MutPtr::deref(&self.inner) }
    }
}

impl<A, R: RawMutex> Drop for LockedGuard<'_, A, R> {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: `inner` is not used again.
        unsafe { ManuallyDrop::drop(&mut self.inner) };
        // SAFETY: the guard was created holding the lock (see `guard`), and
        // is dropped once.
        unsafe { self.lock.raw.unlock() };
    }
}

// SAFETY: every method forwards to `A` under the lock, so `A`'s guarantees
// (disjoint live blocks, valid until freed) hold unchanged, and calls from
// different threads reach `A` one at a time as its `!Sync` contract needs.
unsafe impl<A: Allocator, R: RawMutex> Allocator for Locked<A, R> {
    #[inline]
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        self.lock().allocate(layout)
    }

    #[inline]
    fn allocate_zeroed(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        self.lock().allocate_zeroed(layout)
    }

    #[inline]
    unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
        // SAFETY: the caller's contract is `A`'s.
        unsafe { self.lock().deallocate(ptr, layout) }
    }

    #[inline]
    unsafe fn grow(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        // SAFETY: the caller's contract is `A`'s.
        unsafe { self.lock().grow(ptr, old, new) }
    }

    #[inline]
    unsafe fn grow_zeroed(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        // SAFETY: the caller's contract is `A`'s.
        unsafe { self.lock().grow_zeroed(ptr, old, new) }
    }

    #[inline]
    unsafe fn shrink(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        // SAFETY: the caller's contract is `A`'s.
        unsafe { self.lock().shrink(ptr, old, new) }
    }
}

/// The whole run under one acquisition of the lock: a thread cache's
/// refill or return costs one lock, not one per block. The run is passed on
/// to the inner allocator's own [`Batch`](freespace_core::Batch), which may
/// serve it faster than block by block (the slab takes a run from one slab
/// and verifies each slab's header once per run).
///
/// ```
/// use core::ptr::NonNull;
/// use freespace_core::alloc::{Global, Layout};
/// use freespace_core::Batch;
/// use freespace_sync::Locked;
///
/// let heap: Locked<Global> = Locked::new(Global);
/// let layout = Layout::new::<u64>();
/// let mut blocks = [NonNull::dangling(); 4];
/// assert_eq!(heap.allocate_batch(layout, &mut blocks), 4);
/// // SAFETY: allocated just above with `layout`.
/// unsafe { heap.deallocate_batch(&blocks, layout) };
/// ```
impl<A: freespace_core::Batch, R: RawMutex> freespace_core::Batch for Locked<A, R> {
    fn allocate_batch(&self, layout: Layout, out: &mut [NonNull<u8>]) -> usize {
        self.lock().allocate_batch(layout, out)
    }

    unsafe fn deallocate_batch(&self, blocks: &[NonNull<u8>], layout: Layout) {
        // SAFETY: the caller's contract is `A`'s.
        unsafe { self.lock().deallocate_batch(blocks, layout) }
    }
}

// SAFETY: `GlobalAlloc`'s contract is met by the `Allocator` impl above (see
// `freespace_core::global`): null on failure, the old block untouched by a failed
// `realloc`.
unsafe impl<A: Allocator, R: RawMutex> GlobalAlloc for Locked<A, R> {
    freespace_core::forward_global_alloc!();
}

// SAFETY: forwards to `A` under the lock; `A` upholds the contract.
unsafe impl<A: Owns, R: RawMutex> Owns for Locked<A, R> {
    #[inline]
    fn owns(&self, ptr: NonNull<u8>) -> bool {
        self.lock().owns(ptr)
    }
}

// SAFETY: forwards to `A` under the lock; `A` upholds the contract.
unsafe impl<A: BlockSize, R: RawMutex> BlockSize for Locked<A, R> {
    #[inline]
    unsafe fn usable_size(&self, ptr: NonNull<u8>) -> usize {
        // SAFETY: the caller's contract is `A`'s.
        unsafe { self.lock().usable_size(ptr) }
    }

    #[inline]
    unsafe fn free(&self, ptr: NonNull<u8>) {
        // SAFETY: the caller's contract is `A`'s.
        unsafe { self.lock().free(ptr) }
    }
}

/// The walk runs under the lock: `visit` must not allocate from this heap.
impl<A: Inspect, R: RawMutex> Inspect for Locked<A, R> {
    fn inspect(&self, visit: &mut dyn FnMut(BlockInfo)) {
        self.lock().inspect(visit)
    }
}

impl<A: freespace_core::Check, R: RawMutex> freespace_core::Check for Locked<A, R> {
    /// SYNC-L1 ([`check`](Locked::check): the lock is free), then, under the
    /// lock, the block's whole stack.
    fn check_all(&self) -> Result<(), Violation> {
        self.check()?;
        self.lock().check_all()
    }
}

// SAFETY: the checked free runs under the lock, like `deallocate`, and is
// the block's own, which keeps the contract.
unsafe impl<A: freespace_core::CheckedFree, R: RawMutex> freespace_core::CheckedFree
    for Locked<A, R>
{
    #[inline]
    unsafe fn try_deallocate(
        &self,
        ptr: NonNull<u8>,
        layout: Layout,
    ) -> Result<(), freespace_core::Corruption> {
        // SAFETY: the caller's contract, passed on under the lock.
        unsafe { self.lock().try_deallocate(ptr, layout) }
    }
}

/// Trims the inner allocator under the lock.
impl<A: freespace_core::Trim, R: RawMutex> freespace_core::Trim for Locked<A, R> {
    fn trim(&self) -> usize {
        self.lock().trim()
    }
}
