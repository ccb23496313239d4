//! [`Source`]: where heaps get the raw regions they carve into blocks.
//!
//! A heap does not know whether its memory is a `static` array, the program
//! break or a reservation of address space; it only asks its source for a
//! region of at least some length. Sources live in `freespace-source`
//! (`Arena`, `Sbrk`, `Mmap`, `FromAllocator`); this trait is their contract.
//!
//! A heap notices by itself when a new region starts exactly where its last
//! one ended (as with `Sbrk` and `Mmap`) and merges the two; the source makes
//! no promise about contiguity.

use core::ptr::NonNull;

/// Alignment of the start and granularity of the length of every region a
/// [`Source`] hands out.
///
/// Sixteen bytes is the alignment `malloc` gives on 64-bit targets, so any
/// heap may place a header at the very start of a region without padding.
pub const REGION_ALIGN: usize = 16;

/// A supplier of raw memory regions.
///
/// # Safety
///
/// Implementors promise, for every region `r` returned by [`acquire`](Source::acquire):
///
/// - CORE-S1: `r` is valid for reads and writes over its whole length for as long
///   as the source lives (a source may unmap or free its regions when it is
///   dropped), and its pointer's provenance covers all of it (heaps derive
///   every block pointer from it);
/// - CORE-S2: `r` belongs to the caller alone until the caller gives it (or part of
///   it) back through [`release`](Source::release) with a `true` answer; it
///   overlaps no other region this source has handed out and not taken back;
/// - CORE-S3: `r`'s start is aligned to [`REGION_ALIGN`], and its length is a
///   multiple of [`REGION_ALIGN`] and at least the `min_len` asked for;
/// - CORE-S4: `acquire` never panics or unwinds; running out is `None`.
/// - CORE-S6: if [`zeroed`](Source::zeroed) is `true`, every region `acquire`
///   returns reads as zeros (so a heap need not clear its own metadata in
///   it, nor a zeroed block carved from it);
/// - CORE-S5: when [`decommit`](Source::decommit) returns `Some(pages)`,
///   `pages` lies inside the region it was given, is page-aligned, and
///   from then on reads as zeros and holds no memory until it is written
///   again; the caller keeps it (CORE-S1 and CORE-S2 still hold for it). A source
///   that returns `None` has changed nothing.
///
/// # Example
///
/// A source over one static array is what `freespace_source::Arena` is; here
/// is a source that never has anything, which is enough to show the shape:
///
/// ```
/// use core::ptr::NonNull;
/// use freespace_core::Source;
///
/// struct Empty;
/// // SAFETY: `acquire` never returns a region, so CORE-S1–S3 hold vacuously, and
/// // it cannot panic (CORE-S4).
/// unsafe impl Source for Empty {
///     fn acquire(&self, _min_len: usize) -> Option<NonNull<[u8]>> { None }
/// }
/// assert!(Empty.acquire(64).is_none());
/// ```
pub unsafe trait Source {
    /// Returns a fresh region of at least `min_len` bytes (rounded up to
    /// [`REGION_ALIGN`]), or `None` when the source is exhausted or
    /// `min_len` is too large to ever be served. The region may be longer
    /// than asked; all of it belongs to the caller.
    fn acquire(&self, min_len: usize) -> Option<NonNull<[u8]>>;

    /// Offers `region` back to the source. Returns `true` when the source took
    /// it (the caller must not touch it again), `false` when it declined (the
    /// caller still owns it, unchanged). The default declines everything.
    ///
    /// # Safety
    ///
    /// - `region` lies within regions this source returned from `acquire` and
    ///   has not already been taken back;
    /// - its start and length are multiples of [`REGION_ALIGN`];
    /// - the caller holds no live reference or block inside it.
    unsafe fn release(&self, region: NonNull<[u8]>) -> bool {
        let _ = region;
        false
    }

    /// Whether every region [`acquire`](Source::acquire) returns reads as
    /// zeros (CORE-S6): `true` for `Mmap` (fresh anonymous pages), `false` by
    /// default (a static array, the program break, another allocator's
    /// blocks may hold old bytes). A method rather than a constant so that
    /// `dyn Source` stays possible; for a known source it folds away.
    #[inline]
    fn zeroed(&self) -> bool {
        false
    }

    /// Gives back the memory of the whole pages inside `region`, keeping
    /// the address range: returns the part decommitted (page-aligned, inside
    /// `region`), which now reads as zeros and costs no memory until it is
    /// written (CORE-S5), or `None` when the source cannot or there is no whole
    /// page inside. The caller still owns all of `region`. The default
    /// declines; `Mmap` uses `madvise(MADV_DONTNEED)`.
    ///
    /// Heaps use it to give back the pages of large free blocks (`trim`)
    /// and to clear large zeroed allocations without writing them.
    ///
    /// # Safety
    ///
    /// - `region` lies within a region this source returned from `acquire`
    ///   and has not taken back;
    /// - the caller holds no live block or reference inside it, and does
    ///   not need its contents.
    ///
    /// A source that keeps everything (as `Arena` does) declines;
    /// `freespace_source::Mmap`'s docs show one that takes pages back.
    ///
    /// ```
    /// use core::ptr::NonNull;
    /// use freespace_core::Source;
    ///
    /// struct Keeps;
    /// // SAFETY: never hands out a region (CORE-S1–S4 hold vacuously), and the
    /// // default `decommit` changes nothing (CORE-S5).
    /// unsafe impl Source for Keeps {
    ///     fn acquire(&self, _: usize) -> Option<NonNull<[u8]>> { None }
    /// }
    /// let mut bytes = [7u8; 64];
    /// let region = NonNull::from(&mut bytes[..]);
    /// // SAFETY: (vacuous for this source) nothing in `region` is needed.
    /// assert!(unsafe { Keeps.decommit(region) }.is_none());
    /// assert_eq!(bytes, [7; 64]);
    /// ```
    unsafe fn decommit(&self, region: NonNull<[u8]>) -> Option<NonNull<[u8]>> {
        let _ = region;
        None
    }

    /// Whether [`decommit`](Source::decommit) can ever give pages back:
    /// `false` by default, with the default `decommit` that declines
    /// everything; `true` for `Mmap` and `Sbrk`. A heap over a source that
    /// cannot decommit skips the work that would only find pages to offer
    /// it: the walk of its automatic purge over every free chunk or block
    /// (a single `decommit` that declines needs no such test). A source
    /// that overrides `decommit` overrides this too.
    ///
    /// ```
    /// use core::ptr::NonNull;
    /// use freespace_core::Source;
    ///
    /// struct Keeps;
    /// // SAFETY: never hands out a region (CORE-S1–S4 hold vacuously).
    /// unsafe impl Source for Keeps {
    ///     fn acquire(&self, _: usize) -> Option<NonNull<[u8]>> { None }
    /// }
    /// assert!(!Keeps.decommits());
    /// ```
    #[inline]
    fn decommits(&self) -> bool {
        false
    }
}

// SAFETY: forwards to `S`, which upholds CORE-S1–S6 itself.
unsafe impl<S: Source + ?Sized> Source for &S {
    #[inline]
    fn zeroed(&self) -> bool {
        (**self).zeroed()
    }

    #[inline]
    fn acquire(&self, min_len: usize) -> Option<NonNull<[u8]>> {
        (**self).acquire(min_len)
    }

    #[inline]
    unsafe fn release(&self, region: NonNull<[u8]>) -> bool {
        // SAFETY: the caller upholds `release`'s contract for `S`.
        unsafe { (**self).release(region) }
    }

    #[inline]
    unsafe fn decommit(&self, region: NonNull<[u8]>) -> Option<NonNull<[u8]>> {
        // SAFETY: the caller upholds `decommit`'s contract for `S`.
        unsafe { (**self).decommit(region) }
    }

    #[inline]
    fn decommits(&self) -> bool {
        (**self).decommits()
    }
}

/// Blocks at least this large are cleared by [`clear`] through
/// [`Source::decommit`] (whole pages given back, reading as zeros) rather
/// than written: 128 KiB, where glibc's `calloc` stops clearing (its
/// default mmap threshold). Below it writing is cheaper than a system call
/// and the page faults after it.
pub const CLEAR_BY_DECOMMIT: usize = 128 << 10;

/// Free blocks this large or larger are given back to the source
/// automatically by a heap with a purge budget (the buddy, the free-list
/// heap), once its budget of bytes has been freed since the last purge:
/// 1 MiB. An explicit [`Trim::trim`](crate::Trim::trim) takes every free
/// block of a page or more.
///
/// ```
/// assert_eq!(freespace_core::source::PURGE_MIN, 1 << 20);
/// ```
pub const PURGE_MIN: usize = 1 << 20;

/// The default release threshold of the free-list heap: a free of a block
/// at least this large gives the block's whole pages back to the source at
/// once (128 KiB, glibc's initial mmap threshold, where its `free` unmaps
/// a block). After such a release the threshold rises past the block's
/// size (up to [`RELEASE_AT_MAX`]), as glibc's dynamic threshold does, so
/// a program that frees and reallocates blocks of one large size pays for
/// one release, not one per free.
///
/// ```
/// assert_eq!(freespace_core::source::DEFAULT_RELEASE_AT, 128 << 10);
/// ```
pub const DEFAULT_RELEASE_AT: usize = 128 << 10;

/// The highest the release threshold rises on its own (32 MiB, glibc's
/// `DEFAULT_MMAP_THRESHOLD_MAX` on 64-bit systems): a free of a block this
/// large or larger always gives its pages back.
///
/// ```
/// assert_eq!(freespace_core::source::RELEASE_AT_MAX, 32 << 20);
/// ```
pub const RELEASE_AT_MAX: usize = 32 << 20;

/// The default purge budget of the heaps that have one: every 64 MiB freed,
/// the pages of their free blocks of [`PURGE_MIN`] or more go back to the
/// source. The count is one addition per free; the purge itself walks the
/// free blocks off the hot path, so a program pays for at most one purge
/// per 64 MiB it frees.
///
/// ```
/// assert_eq!(freespace_core::source::DEFAULT_PURGE_AFTER, 64 << 20);
/// ```
pub const DEFAULT_PURGE_AFTER: usize = 64 << 20;

/// Sets the `block` (memory `source` handed out, now the caller's) to zero
/// the cheapest way: a large block's whole pages are decommitted (CORE-S5: they
/// read as zeros and cost nothing until written), and only the bytes
/// around them written; a small block, or one whose source declines, is
/// written. A `calloc(1 GiB)` this way touches a page or two.
///
/// # Safety
/// `block` lies in a region `source` handed out and the caller owns it and
/// does not need its contents.
///
/// ```
/// use core::ptr::NonNull;
/// use freespace_core::source::clear;
/// use freespace_core::Source;
///
/// struct Keeps; // declines to decommit: `clear` writes
/// // SAFETY: hands out nothing (CORE-S1–S5 hold vacuously).
/// unsafe impl Source for Keeps {
///     fn acquire(&self, _: usize) -> Option<NonNull<[u8]>> { None }
/// }
/// let mut bytes = [7u8; 300];
/// // SAFETY: the bytes are ours and their contents not needed.
/// unsafe { clear(&Keeps, NonNull::from(&mut bytes[..])) };
/// assert_eq!(bytes, [0; 300]);
/// ```
pub unsafe fn clear<S: Source + ?Sized>(source: &S, block: NonNull<[u8]>) {
    let base = block.cast::<u8>();
    let len = block.len();
    if len >= CLEAR_BY_DECOMMIT {
        // SAFETY: the caller's contract is `decommit`'s.
        if let Some(pages) = unsafe { source.decommit(block) } {
            let lo = pages.cast::<u8>().as_ptr().addr() - base.as_ptr().addr();
            let hi = lo + pages.len();
            // SAFETY: `pages` lies inside `block` (CORE-S5), so `0..lo` and
            // `hi..len` are the block's own bytes around it.
            unsafe {
                base.write_bytes(0, lo);
                base.add(hi).write_bytes(0, len - hi);
            }
            return;
        }
    }
    // SAFETY: the block's `len` bytes are the caller's to write.
    unsafe { base.write_bytes(0, len) };
}
