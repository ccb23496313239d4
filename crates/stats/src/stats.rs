//! [`Stats`]: a transparent layer that counts what passes through it, and
//! [`Snapshot`], the counters read out at one moment.
//!
//! ```text
//!   caller ──allocate/grow/shrink/deallocate──▶ Stats<A> ──same call──▶ A
//!                                                  │
//!                      relaxed atomic counters ◀───┘ (after A answers)
//! ```
//!
//! The counters are relaxed atomics, so a `Stats` may be shared as freely
//! as `A` is: `Stats<Locked<H>>` counts in front of the lock (no counter is
//! touched under it), `Locked<Stats<H>>` counts behind it, and
//! `Stats<std::alloc::System>` is a `#[global_allocator]`.
//!
//! ```
//! use freespace_core::alloc::{Global, Vec};
//! use freespace_stats::stats::Stats;
//!
//! let heap = Stats::new(Global);
//! let v: Vec<u8, _> = Vec::with_capacity_in(100, &heap);
//! assert_eq!(heap.snapshot().live_bytes, 100);
//! drop(v);
//! assert_eq!(heap.snapshot().frees, 1);
//! ```

use core::alloc::GlobalAlloc;
use core::fmt;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use freespace_core::alloc::{AllocError, Allocator, Layout};
use freespace_core::{layout, BlockInfo, BlockSize, Corruption, Inspect, Owns, Violation};

#[cfg(test)]
mod tests;

/// Number of power-of-two size classes in a [`Snapshot::histogram`]: one
/// for every possible request size (a `Layout` is at most `isize::MAX`
/// bytes, class 63 on a 64-bit target).
///
/// ```
/// assert_eq!(freespace_stats::SIZE_CLASSES, usize::BITS as usize);
/// ```
pub const SIZE_CLASSES: usize = usize::BITS as usize;

/// The power-of-two class of a request of `size` bytes: class `k` holds the
/// sizes `2^(k-1) + 1 ..= 2^k` (class 0 holds 0 and 1), so `2^k` is the
/// largest size in it. Sizes beyond the last class land in the last class.
///
/// ```
/// use freespace_stats::size_class;
/// assert_eq!([1, 2, 3, 4, 5, 8, 9, 4096].map(size_class), [0, 1, 2, 2, 3, 3, 4, 12]);
/// ```
pub const fn size_class(size: usize) -> usize {
    if size <= 1 {
        return 0;
    }
    let class = (usize::BITS - (size - 1).leading_zeros()) as usize;
    if class < SIZE_CLASSES {
        class
    } else {
        SIZE_CLASSES - 1
    }
}

/// A counting layer: forwards every call to `A` unchanged and counts it.
///
/// What is counted (read with [`snapshot`](Stats::snapshot)):
///
/// | counter | counts |
/// |---|---|
/// | `allocations` | successful non-zero-size `allocate`/`allocate_zeroed`, and `grow` from size 0 |
/// | `frees` | non-zero-size `deallocate`, `shrink` to size 0, [`BlockSize::free`] |
/// | `zero_size` | zero-size requests, answered here with a dangling pointer (they never reach `A`) |
/// | `grows_in_place` / `grows_moved` | successful grows: the same pointer came back / a new one |
/// | `shrinks_in_place` / `shrinks_moved` | the same for shrinks |
/// | `failed_allocations` / `failed_grows` / `failed_shrinks` | `Err(AllocError)` (or null) from `A`, by kind |
/// | `corruptions` | errors returned by a checked free through [`try_deallocate_with`](Stats::try_deallocate_with) |
/// | `live_blocks`, `live_bytes` | blocks and requested bytes allocated and not yet freed |
/// | `peak_live_bytes` | the largest `live_bytes` has been (since the last [`reset`](Stats::reset)) |
/// | `total_requested_bytes` | bytes asked for in all: every allocation's size plus what grows added |
/// | `histogram` | allocations by the [`size_class`] of their size |
///
/// # Exactness
///
/// `Stats` hands out exactly the requested length, even when `A` gave
/// more: the `Allocator` contract then makes the requested size the only
/// one a block may be freed or resized with, so `live_bytes` is exact (a
/// layer that passed `A`'s excess on could be freed with any size up to
/// it). The one estimate is [`BlockSize::free`], which has no layout: it
/// subtracts the block's usable size, saturating at zero, so `live_bytes`
/// never grows too large and returns to 0 when every block is freed.
///
/// The counters are relaxed atomics, each exact on its own; a snapshot
/// taken while other threads allocate may combine counters from slightly
/// different moments. A count is taken *after* `A` answers an allocation
/// and *before* a free reaches `A`, so `peak_live_bytes` never counts a
/// block that was already being freed (a checked free, whose outcome is
/// only known afterwards, is counted once it succeeded).
///
/// # Forwarding
///
/// `Stats<A>` is an [`Allocator`] when `A` is, a [`GlobalAlloc`] when `A`
/// is, and [`Owns`], [`BlockSize`] and [`Inspect`] when `A` is; it is
/// `Sync` exactly when `A` is. `grow` and `shrink` go to `A`'s own, so a
/// resize `A` does in place stays in place. `A`'s inherent `check()` and
/// `try_deallocate` are reached through [`inner`](Stats::inner) and
/// [`try_deallocate_with`](Stats::try_deallocate_with).
///
/// # Invariants
///
/// At a quiescent point (no call in flight):
/// - STATS-S1: `live_bytes <= peak_live_bytes`.
/// - STATS-S2: the histogram's counts add up to `allocations`.
/// - STATS-S3: `live_blocks == 0` implies `live_bytes == 0`.
///
/// # Example
///
/// ```
/// use freespace_core::alloc::{Global, Vec};
/// use freespace_stats::Stats;
///
/// let heap = Stats::new(Global);
/// let mut v: Vec<u32, _> = Vec::with_capacity_in(4, &heap);
/// v.extend(0..100); // grows the block a few times
/// drop(v);
/// let s = heap.snapshot();
/// assert_eq!((s.allocations, s.frees, s.live_bytes), (1, 1, 0));
/// assert!(s.grows() >= 1);
/// assert!(s.peak_live_bytes >= 400);
/// println!("{s}"); // a small table
/// heap.check().unwrap();
/// ```
pub struct Stats<A> {
    inner: A,
    allocations: AtomicUsize,
    frees: AtomicUsize,
    zero_size: AtomicUsize,
    grows_in_place: AtomicUsize,
    grows_moved: AtomicUsize,
    shrinks_in_place: AtomicUsize,
    shrinks_moved: AtomicUsize,
    failed_allocations: AtomicUsize,
    failed_grows: AtomicUsize,
    failed_shrinks: AtomicUsize,
    corruptions: AtomicUsize,
    /// Kept across [`Stats::reset`]: blocks still live stay live.
    live_blocks: AtomicUsize,
    /// Kept across [`Stats::reset`] (STATS-S1, STATS-S3).
    live_bytes: AtomicUsize,
    peak_live_bytes: AtomicUsize,
    total_requested_bytes: AtomicUsize,
    /// Allocations per [`size_class`] (STATS-S2).
    histogram: [AtomicUsize; SIZE_CLASSES],
}

impl<A> Stats<A> {
    /// A counting layer over `inner`, every counter at zero. Does no other
    /// work, so a `Stats` can be a `static`.
    ///
    /// ```
    /// use freespace_core::alloc::Global;
    /// use freespace_stats::Stats;
    /// static HEAP: Stats<Global> = Stats::new(Global);
    /// assert_eq!(HEAP.snapshot().allocations, 0);
    /// ```
    pub const fn new(inner: A) -> Self {
        Self {
            inner,
            allocations: AtomicUsize::new(0),
            frees: AtomicUsize::new(0),
            zero_size: AtomicUsize::new(0),
            grows_in_place: AtomicUsize::new(0),
            grows_moved: AtomicUsize::new(0),
            shrinks_in_place: AtomicUsize::new(0),
            shrinks_moved: AtomicUsize::new(0),
            failed_allocations: AtomicUsize::new(0),
            failed_grows: AtomicUsize::new(0),
            failed_shrinks: AtomicUsize::new(0),
            corruptions: AtomicUsize::new(0),
            live_blocks: AtomicUsize::new(0),
            live_bytes: AtomicUsize::new(0),
            peak_live_bytes: AtomicUsize::new(0),
            total_requested_bytes: AtomicUsize::new(0),
            histogram: [const { AtomicUsize::new(0) }; SIZE_CLASSES],
        }
    }

    /// The allocator underneath: its own `check()`, its heap walk, its
    /// settings. Calls made on it directly are not counted.
    ///
    /// ```
    /// use freespace_core::alloc::Global;
    /// let heap = freespace_stats::Stats::new(Global);
    /// let _: &Global = heap.inner();
    /// ```
    pub const fn inner(&self) -> &A {
        &self.inner
    }

    /// The allocator underneath, taken out of the layer.
    ///
    /// ```
    /// let heap = freespace_stats::Stats::new(7u8);
    /// assert_eq!(heap.into_inner(), 7);
    /// ```
    pub fn into_inner(self) -> A {
        self.inner
    }

    /// Every counter, read now (each with a relaxed load).
    ///
    /// ```
    /// use freespace_core::alloc::{Box, Global};
    /// let heap = freespace_stats::Stats::new(Global);
    /// let b = Box::new_in([0u8; 24], &heap);
    /// let s = heap.snapshot();
    /// assert_eq!((s.live_blocks, s.live_bytes), (1, 24));
    /// assert_eq!(s.histogram[5], 1); // 24 bytes: the class up to 32
    /// drop(b);
    /// ```
    pub fn snapshot(&self) -> Snapshot {
        let mut histogram = [0; SIZE_CLASSES];
        for (count, counter) in histogram.iter_mut().zip(&self.histogram) {
            *count = counter.load(Relaxed);
        }
        Snapshot {
            allocations: self.allocations.load(Relaxed),
            frees: self.frees.load(Relaxed),
            zero_size: self.zero_size.load(Relaxed),
            grows_in_place: self.grows_in_place.load(Relaxed),
            grows_moved: self.grows_moved.load(Relaxed),
            shrinks_in_place: self.shrinks_in_place.load(Relaxed),
            shrinks_moved: self.shrinks_moved.load(Relaxed),
            failed_allocations: self.failed_allocations.load(Relaxed),
            failed_grows: self.failed_grows.load(Relaxed),
            failed_shrinks: self.failed_shrinks.load(Relaxed),
            corruptions: self.corruptions.load(Relaxed),
            live_blocks: self.live_blocks.load(Relaxed),
            live_bytes: self.live_bytes.load(Relaxed),
            peak_live_bytes: self.peak_live_bytes.load(Relaxed),
            total_requested_bytes: self.total_requested_bytes.load(Relaxed),
            histogram,
        }
    }

    /// Sets every event counter back to zero, to measure one phase of a
    /// program. What is live stays live: `live_blocks` and `live_bytes` are
    /// kept, and `peak_live_bytes` restarts from `live_bytes`.
    ///
    /// ```
    /// use freespace_core::alloc::{Box, Global};
    /// let heap = freespace_stats::Stats::new(Global);
    /// let kept = Box::new_in(1u64, &heap);
    /// drop(Box::new_in([0u8; 100], &heap));
    /// heap.reset();
    /// let s = heap.snapshot();
    /// assert_eq!((s.allocations, s.frees), (0, 0));
    /// assert_eq!((s.live_blocks, s.live_bytes, s.peak_live_bytes), (1, 8, 8));
    /// drop(kept);
    /// ```
    pub fn reset(&self) {
        for counter in [
            &self.allocations,
            &self.frees,
            &self.zero_size,
            &self.grows_in_place,
            &self.grows_moved,
            &self.shrinks_in_place,
            &self.shrinks_moved,
            &self.failed_allocations,
            &self.failed_grows,
            &self.failed_shrinks,
            &self.corruptions,
            &self.total_requested_bytes,
        ] {
            counter.store(0, Relaxed);
        }
        for counter in &self.histogram {
            counter.store(0, Relaxed);
        }
        self.peak_live_bytes
            .store(self.live_bytes.load(Relaxed), Relaxed);
    }

    /// Checks STATS-S1–S3. Meaningful at a quiescent point; `A`'s own invariants
    /// are `heap.inner().check()`.
    ///
    /// ```
    /// use freespace_core::alloc::{Box, Global};
    /// let heap = freespace_stats::Stats::new(Global);
    /// drop(Box::new_in(5u32, &heap));
    /// heap.check().unwrap();
    /// ```
    pub fn check(&self) -> Result<(), Violation> {
        let s = self.snapshot();
        let me = self as *const Self as usize;
        if s.live_bytes > s.peak_live_bytes {
            return Err(Violation::new("STATS-S1", me, "live bytes above the peak"));
        }
        let binned = s
            .histogram
            .iter()
            .fold(0usize, |sum, &n| sum.wrapping_add(n));
        if binned != s.allocations {
            return Err(Violation::new(
                "STATS-S2",
                me,
                "histogram does not add up to the allocations",
            ));
        }
        if s.live_blocks == 0 && s.live_bytes != 0 {
            return Err(Violation::new(
                "STATS-S3",
                me,
                "live bytes with no live block",
            ));
        }
        Ok(())
    }

    /// A checked free through `A`'s own checked free, counted: `free` is
    /// called with the inner allocator (typically
    /// `|heap, p, l| heap.try_deallocate(p, l)`); `Ok` counts a free, `Err`
    /// counts a corruption and changes nothing else. A zero-size layout is
    /// `Ok` without calling `free`, as `deallocate` is a no-op for it.
    ///
    /// # Safety
    ///
    /// What `free` requires (for a heap's `try_deallocate`: `ptr` was
    /// allocated by this layer with a layout `layout` fits, or is a pointer
    /// the heap can recognise as not one of its live blocks); and when
    /// `free` returns `Ok`, the block was live with `layout`, so the counts
    /// stay exact.
    ///
    /// ```
    /// use core::ptr::NonNull;
    /// use freespace_core::alloc::{Allocator, Global, Layout};
    /// use freespace_core::Corruption;
    /// use freespace_stats::Stats;
    ///
    /// // A stand-in for a heap's checked free: refuses a null-page pointer.
    /// unsafe fn checked(heap: &Global, p: NonNull<u8>, l: Layout) -> Result<(), Corruption> {
    ///     if p.as_ptr().addr() < 4096 {
    ///         return Err(Corruption::ForeignPointer { addr: p.as_ptr().addr() });
    ///     }
    ///     // SAFETY: anything else passed here is a live `Global` block with `l`.
    ///     unsafe { heap.deallocate(p, l) };
    ///     Ok(())
    /// }
    /// let heap = Stats::new(Global);
    /// let l = Layout::new::<u64>();
    /// let p = heap.allocate(l).unwrap().cast::<u8>();
    /// let bogus = NonNull::<u64>::dangling().cast::<u8>();
    /// // SAFETY: `p` is live with `l`; `bogus` is refused before any use.
    /// unsafe {
    ///     assert!(heap.try_deallocate_with(bogus, l, |h, p, l| checked(h, p, l)).is_err());
    ///     assert!(heap.try_deallocate_with(p, l, |h, p, l| checked(h, p, l)).is_ok());
    /// }
    /// let s = heap.snapshot();
    /// assert_eq!((s.frees, s.corruptions, s.live_bytes), (1, 1, 0));
    /// ```
    pub unsafe fn try_deallocate_with(
        &self,
        ptr: NonNull<u8>,
        layout: Layout,
        free: impl FnOnce(&A, NonNull<u8>, Layout) -> Result<(), Corruption>,
    ) -> Result<(), Corruption> {
        if layout.size() == 0 {
            return Ok(());
        }
        match free(&self.inner, ptr, layout) {
            Ok(()) => {
                self.count_free(layout.size());
                Ok(())
            }
            Err(c) => {
                bump(&self.corruptions);
                Err(c)
            }
        }
    }

    /// Counts the outcome of `A`'s allocation for `layout` and passes it on
    /// (cut to exactly `layout.size()`).
    #[inline]
    fn counted_allocation(
        &self,
        layout: Layout,
        block: Result<NonNull<[u8]>, AllocError>,
    ) -> Result<NonNull<[u8]>, AllocError> {
        match block {
            Ok(block) => {
                self.count_allocation(layout.size());
                Ok(exactly(block, layout.size()))
            }
            Err(e) => {
                bump(&self.failed_allocations);
                Err(e)
            }
        }
    }

    /// Counts the outcome of `A`'s grow of `ptr` from `old` to `new` and
    /// passes it on (cut to exactly `new.size()`).
    #[inline]
    fn counted_grow(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
        grown: Result<NonNull<[u8]>, AllocError>,
    ) -> Result<NonNull<[u8]>, AllocError> {
        match grown {
            Ok(block) => {
                self.count_grow(block.cast() == ptr, old.size(), new.size());
                Ok(exactly(block, new.size()))
            }
            Err(e) => {
                bump(&self.failed_grows);
                Err(e)
            }
        }
    }

    // ---- counting -------------------------------------------------------

    /// A block of `size > 0` bytes was handed out.
    fn count_allocation(&self, size: usize) {
        bump(&self.allocations);
        bump(&self.histogram[size_class(size)]);
        bump(&self.live_blocks);
        self.total_requested_bytes.fetch_add(size, Relaxed);
        self.add_live(size);
    }

    /// A block of `size` requested bytes is about to be freed.
    fn count_free(&self, size: usize) {
        bump(&self.frees);
        self.live_blocks.fetch_sub(1, Relaxed);
        self.live_bytes.fetch_sub(size, Relaxed);
    }

    /// A grow from `old` to `new` bytes succeeded, in place or not.
    fn count_grow(&self, in_place: bool, old: usize, new: usize) {
        bump(if in_place {
            &self.grows_in_place
        } else {
            &self.grows_moved
        });
        let added = new.saturating_sub(old);
        self.total_requested_bytes.fetch_add(added, Relaxed);
        self.add_live(added);
    }

    /// A shrink from `old` to `new` bytes succeeded, in place or not.
    fn count_shrink(&self, in_place: bool, old: usize, new: usize) {
        bump(if in_place {
            &self.shrinks_in_place
        } else {
            &self.shrinks_moved
        });
        self.live_bytes.fetch_sub(old.saturating_sub(new), Relaxed);
    }

    fn add_live(&self, bytes: usize) {
        // The value this add produced is exact in the counter's
        // modification order, so the peak is the true maximum of that order.
        let now = self
            .live_bytes
            .fetch_add(bytes, Relaxed)
            .wrapping_add(bytes);
        self.peak_live_bytes.fetch_max(now, Relaxed);
    }
}

fn bump(counter: &AtomicUsize) {
    counter.fetch_add(1, Relaxed);
}

/// The block `ptr` as `len` bytes: what `Stats` hands out (see
/// "Exactness").
fn exactly(ptr: NonNull<[u8]>, len: usize) -> NonNull<[u8]> {
    NonNull::slice_from_raw_parts(ptr.cast::<u8>(), len)
}

impl<A: Default> Default for Stats<A> {
    fn default() -> Self {
        Self::new(A::default())
    }
}

impl<A: fmt::Debug> fmt::Debug for Stats<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.snapshot();
        f.debug_struct("Stats")
            .field("inner", &self.inner)
            .field("allocations", &s.allocations)
            .field("frees", &s.frees)
            .field("live_bytes", &s.live_bytes)
            .field("peak_live_bytes", &s.peak_live_bytes)
            .finish_non_exhaustive()
    }
}

/// Block by block (the provided methods), so every block is counted.
impl<A: Allocator> freespace_core::Batch for Stats<A> {}

// SAFETY: every non-zero-size block is `A`'s block, passed on unchanged
// except that its length is cut to the request (a block may always be used
// as less than it is; the caller then frees it with the request, which fits
// `A`'s block as `A` was asked for exactly that). Zero-size requests get a
// dangling pointer and never reach `A`. Counting cannot panic or unwind
// (atomic adds wrap).
unsafe impl<A: Allocator> Allocator for Stats<A> {
    #[inline]
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        if layout.size() == 0 {
            bump(&self.zero_size);
            return Ok(layout::dangling(layout));
        }
        self.counted_allocation(layout, self.inner.allocate(layout))
    }

    #[inline]
    fn allocate_zeroed(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        if layout.size() == 0 {
            bump(&self.zero_size);
            return Ok(layout::dangling(layout));
        }
        self.counted_allocation(layout, self.inner.allocate_zeroed(layout))
    }

    #[inline]
    unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
        if layout.size() == 0 {
            return;
        }
        self.count_free(layout.size());
        // SAFETY: a non-zero-size block of ours is `A`'s block, allocated
        // with exactly `layout.size()` (caller contract; see "Exactness").
        unsafe { self.inner.deallocate(ptr, layout) }
    }

    #[inline]
    unsafe fn grow(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        if old.size() == 0 {
            return self.allocate(new);
        }
        // SAFETY: `ptr` is a live block of `A` with `old` (caller contract,
        // non-zero size); `new` is at least as large (caller contract).
        let grown = unsafe { self.inner.grow(ptr, old, new) };
        self.counted_grow(ptr, old, new, grown)
    }

    #[inline]
    unsafe fn grow_zeroed(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        if old.size() == 0 {
            return self.allocate_zeroed(new);
        }
        // SAFETY: as in `grow`.
        let grown = unsafe { self.inner.grow_zeroed(ptr, old, new) };
        self.counted_grow(ptr, old, new, grown)
    }

    #[inline]
    unsafe fn shrink(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        if new.size() == 0 {
            // SAFETY: `ptr` is live with `old` (caller contract).
            unsafe { self.deallocate(ptr, old) };
            return Ok(layout::dangling(new));
        }
        // SAFETY: `new.size() > 0` and `old` is at least as large (caller
        // contract), so `ptr` is a live block of `A` with `old`.
        match unsafe { self.inner.shrink(ptr, old, new) } {
            Ok(block) => {
                self.count_shrink(block.cast() == ptr, old.size(), new.size());
                Ok(exactly(block, new.size()))
            }
            Err(e) => {
                bump(&self.failed_shrinks);
                Err(e)
            }
        }
    }
}

// SAFETY: every call is `A`'s, with the caller's arguments; a null result
// is passed on unchanged (and counted), so a failed `realloc` leaves the
// block as `A` left it: untouched. Counting cannot unwind.
unsafe impl<A: GlobalAlloc> GlobalAlloc for Stats<A> {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's `GlobalAlloc::alloc` contract is `A`'s.
        let p = unsafe { self.inner.alloc(layout) };
        if p.is_null() {
            bump(&self.failed_allocations);
        } else {
            self.count_allocation(layout.size());
        }
        p
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's `GlobalAlloc::alloc_zeroed` contract is `A`'s.
        let p = unsafe { self.inner.alloc_zeroed(layout) };
        if p.is_null() {
            bump(&self.failed_allocations);
        } else {
            self.count_allocation(layout.size());
        }
        p
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        self.count_free(layout.size());
        // SAFETY: the caller's `GlobalAlloc::dealloc` contract is `A`'s.
        unsafe { self.inner.dealloc(ptr, layout) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller's `GlobalAlloc::realloc` contract is `A`'s.
        let p = unsafe { self.inner.realloc(ptr, layout, new_size) };
        let growing = new_size >= layout.size();
        if p.is_null() {
            bump(if growing {
                &self.failed_grows
            } else {
                &self.failed_shrinks
            });
        } else if growing {
            self.count_grow(p == ptr, layout.size(), new_size);
        } else {
            self.count_shrink(p == ptr, layout.size(), new_size);
        }
        p
    }
}

// SAFETY: forwards to `A`; dangling zero-size pointers are never blocks.
unsafe impl<A: Owns> Owns for Stats<A> {
    #[inline]
    fn owns(&self, ptr: NonNull<u8>) -> bool {
        self.inner.owns(ptr)
    }
}

// SAFETY: every live block is a block of `A`, which answers for it; `free`
// is `A`'s free (counted first, see "Exactness").
unsafe impl<A: BlockSize> BlockSize for Stats<A> {
    #[inline]
    unsafe fn usable_size(&self, ptr: NonNull<u8>) -> usize {
        // SAFETY: the caller's contract is `A`'s.
        unsafe { self.inner.usable_size(ptr) }
    }

    #[inline]
    unsafe fn free(&self, ptr: NonNull<u8>) {
        // SAFETY: `ptr` is a live block of `A` (caller contract).
        let usable = unsafe { self.inner.usable_size(ptr) };
        bump(&self.frees);
        self.live_blocks.fetch_sub(1, Relaxed);
        // Saturating: `usable` may exceed what was requested (STATS-S3 still
        // holds, since each free takes away at least its own request).
        let mut live = self.live_bytes.load(Relaxed);
        while let Err(now) = self.live_bytes.compare_exchange_weak(
            live,
            live.saturating_sub(usable),
            Relaxed,
            Relaxed,
        ) {
            live = now;
        }
        // SAFETY: the caller's contract is `A`'s.
        unsafe { self.inner.free(ptr) }
    }
}

impl<A: Inspect> Inspect for Stats<A> {
    fn inspect(&self, visit: &mut dyn FnMut(BlockInfo)) {
        self.inner.inspect(visit)
    }
}

/// The counters of a [`Stats`] at one moment (see [`Stats`] for what each
/// counts). A plain `Copy` value: compare two to measure a phase.
///
/// Its `Display` is a small table:
///
/// ```text
///                    count  in place     moved    failed
/// allocations            2                              1
/// ...
/// ```
///
/// ```
/// use freespace_core::alloc::{Box, Global};
/// let heap = freespace_stats::Stats::new(Global);
/// let before = heap.snapshot();
/// drop(Box::new_in(0u16, &heap));
/// let after = heap.snapshot();
/// assert_eq!(after.allocations - before.allocations, 1);
/// assert!(after.to_string().contains("allocations"));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Snapshot {
    /// Blocks handed out (non-zero size, grows from 0 included).
    pub allocations: usize,
    /// Blocks freed (shrinks to 0 and `BlockSize::free` included).
    pub frees: usize,
    /// Zero-size requests (answered without reaching the inner allocator).
    pub zero_size: usize,
    /// Grows that returned the same pointer.
    pub grows_in_place: usize,
    /// Grows that moved the block.
    pub grows_moved: usize,
    /// Shrinks that returned the same pointer.
    pub shrinks_in_place: usize,
    /// Shrinks that moved the block.
    pub shrinks_moved: usize,
    /// Allocations the inner allocator refused.
    pub failed_allocations: usize,
    /// Grows the inner allocator refused (the block stayed as it was).
    pub failed_grows: usize,
    /// Shrinks the inner allocator refused.
    pub failed_shrinks: usize,
    /// Checked frees that reported a corruption.
    pub corruptions: usize,
    /// Blocks allocated and not yet freed.
    pub live_blocks: usize,
    /// Requested bytes of those blocks.
    pub live_bytes: usize,
    /// The most `live_bytes` has been.
    pub peak_live_bytes: usize,
    /// Bytes asked for in all: allocation sizes plus what grows added.
    pub total_requested_bytes: usize,
    /// Allocations per [`size_class`] of their size.
    pub histogram: [usize; SIZE_CLASSES],
}

impl Default for Snapshot {
    fn default() -> Self {
        Self {
            allocations: 0,
            frees: 0,
            zero_size: 0,
            grows_in_place: 0,
            grows_moved: 0,
            shrinks_in_place: 0,
            shrinks_moved: 0,
            failed_allocations: 0,
            failed_grows: 0,
            failed_shrinks: 0,
            corruptions: 0,
            live_blocks: 0,
            live_bytes: 0,
            peak_live_bytes: 0,
            total_requested_bytes: 0,
            histogram: [0; SIZE_CLASSES],
        }
    }
}

impl Snapshot {
    /// Successful grows, in place or moved.
    ///
    /// ```
    /// let s = freespace_stats::Snapshot { grows_in_place: 2, grows_moved: 1, ..Default::default() };
    /// assert_eq!(s.grows(), 3);
    /// ```
    pub const fn grows(&self) -> usize {
        self.grows_in_place.wrapping_add(self.grows_moved)
    }

    /// Successful shrinks, in place or moved.
    ///
    /// ```
    /// let s = freespace_stats::Snapshot { shrinks_moved: 4, ..Default::default() };
    /// assert_eq!(s.shrinks(), 4);
    /// ```
    pub const fn shrinks(&self) -> usize {
        self.shrinks_in_place.wrapping_add(self.shrinks_moved)
    }

    /// Refused requests of every kind.
    ///
    /// ```
    /// let s = freespace_stats::Snapshot { failed_allocations: 1, failed_grows: 2, ..Default::default() };
    /// assert_eq!(s.failures(), 3);
    /// ```
    pub const fn failures(&self) -> usize {
        self.failed_allocations
            .wrapping_add(self.failed_grows)
            .wrapping_add(self.failed_shrinks)
    }
}

/// Writes `2^class` bytes as `16 B`, `4 KiB`, `2 MiB`, `1 GiB`...
pub(crate) fn write_pow2(f: &mut dyn fmt::Write, class: usize) -> fmt::Result {
    let (shift, unit) = match class {
        0..=9 => (0, "B"),
        10..=19 => (10, "KiB"),
        20..=29 => (20, "MiB"),
        30..=39 => (30, "GiB"),
        40..=49 => (40, "TiB"),
        _ => (50, "PiB"),
    };
    write!(f, "{} {unit}", 1u64 << (class - shift).min(63))
}

impl fmt::Display for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<14}{:>10}{:>10}{:>10}{:>10}",
            "", "count", "in place", "moved", "failed"
        )?;
        writeln!(
            f,
            "{:<14}{:>10}{:>10}{:>10}{:>10}",
            "allocations", self.allocations, "", "", self.failed_allocations
        )?;
        writeln!(f, "{:<14}{:>10}", "frees", self.frees)?;
        writeln!(
            f,
            "{:<14}{:>10}{:>10}{:>10}{:>10}",
            "grows",
            self.grows(),
            self.grows_in_place,
            self.grows_moved,
            self.failed_grows
        )?;
        writeln!(
            f,
            "{:<14}{:>10}{:>10}{:>10}{:>10}",
            "shrinks",
            self.shrinks(),
            self.shrinks_in_place,
            self.shrinks_moved,
            self.failed_shrinks
        )?;
        writeln!(f, "{:<14}{:>10}", "zero-size", self.zero_size)?;
        writeln!(f, "{:<14}{:>10}", "corruptions", self.corruptions)?;
        writeln!(
            f,
            "live          {} blocks, {} B (peak {} B); {} B requested in all",
            self.live_blocks, self.live_bytes, self.peak_live_bytes, self.total_requested_bytes
        )?;
        if self.histogram.iter().any(|&n| n > 0) {
            writeln!(f, "allocations by size (up to):")?;
            for (class, &n) in self.histogram.iter().enumerate() {
                if n > 0 {
                    let mut label = Label::new();
                    write_pow2(&mut label, class)?;
                    writeln!(f, "  {:>9} {:>10}", label.as_str(), n)?;
                }
            }
        }
        Ok(())
    }
}

/// A short label formatted without allocating (so `Display` pads it).
pub(crate) struct Label {
    buf: [u8; 24],
    len: usize,
}

impl Label {
    pub(crate) const fn new() -> Self {
        Self {
            buf: [0; 24],
            len: 0,
        }
    }

    pub(crate) fn as_str(&self) -> &str {
        // Only whole `&str`s are ever copied in (see `write_str`).
        core::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }
}

impl fmt::Write for Label {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len.checked_add(s.len()).ok_or(fmt::Error)?;
        let dst = self.buf.get_mut(self.len..end).ok_or(fmt::Error)?;
        dst.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

impl<A: freespace_core::Check> freespace_core::Check for Stats<A> {
    /// STATS-S1–S3 ([`check`](Stats::check)), then the inner allocator's whole stack.
    fn check_all(&self) -> Result<(), Violation> {
        self.check()?;
        self.inner.check_all()
    }
}

// SAFETY: a checked free goes to `A`'s checked free, which keeps the
// contract; the counters only record its outcome.
unsafe impl<A: freespace_core::CheckedFree> freespace_core::CheckedFree for Stats<A> {
    #[inline]
    unsafe fn try_deallocate(&self, ptr: NonNull<u8>, layout: Layout) -> Result<(), Corruption> {
        // SAFETY: the caller's contract, passed on.
        unsafe { self.try_deallocate_with(ptr, layout, |a, p, l| a.try_deallocate(p, l)) }
    }
}

/// Forwards: counting holds no memory.
impl<A: freespace_core::Trim> freespace_core::Trim for Stats<A> {
    fn trim(&self) -> usize {
        self.inner.trim()
    }
}
