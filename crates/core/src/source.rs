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
/// - S1: `r` is valid for reads and writes over its whole length for as long
///   as the source lives (a source may unmap or free its regions when it is
///   dropped), and its pointer's provenance covers all of it (heaps derive
///   every block pointer from it);
/// - S2: `r` belongs to the caller alone until the caller gives it (or part of
///   it) back through [`release`](Source::release) with a `true` answer; it
///   overlaps no other region this source has handed out and not taken back;
/// - S3: `r`'s start is aligned to [`REGION_ALIGN`], and its length is a
///   multiple of [`REGION_ALIGN`] and at least the `min_len` asked for;
/// - S4: `acquire` never panics or unwinds; running out is `None`.
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
/// // SAFETY: `acquire` never returns a region, so S1–S3 hold vacuously, and
/// // it cannot panic (S4).
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
}

// SAFETY: forwards to `S`, which upholds S1–S4 itself.
unsafe impl<S: Source + ?Sized> Source for &S {
    #[inline]
    fn acquire(&self, min_len: usize) -> Option<NonNull<[u8]>> {
        (**self).acquire(min_len)
    }

    #[inline]
    unsafe fn release(&self, region: NonNull<[u8]>) -> bool {
        // SAFETY: the caller upholds `release`'s contract for `S`.
        unsafe { (**self).release(region) }
    }
}
