//! [`Sbrk`]: regions from the program break, the classic way a heap grows.

use crate::region_len;
use core::ffi::c_void;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicUsize, Ordering};
use freespace_core::layout::align_up;
use freespace_core::lock::DefaultLock;
use freespace_core::{Source, Violation, REGION_ALIGN};
use lock_api::{Mutex, RawMutex};

#[cfg(test)]
mod tests;

/// Serialises every `sbrk` call made by every [`Sbrk`] in the process: the
/// break is one per process, so one lock for all instances.
static BREAK: Mutex<DefaultLock, ()> = Mutex::const_new(DefaultLock::INIT, ());

/// How many times `acquire` retries when the break moved under it (see
/// [`Sbrk`]'s docs) before giving up.
const ATTEMPTS: usize = 4;

/// A [`Source`] that grows the program break with `sbrk` (unix only).
///
/// Each [`acquire`](Source::acquire) moves the break up by the request,
/// rounded up to [`REGION_ALIGN`] (first padding the break up to that
/// alignment if it is not there already), and returns the bytes between the
/// old and the new break. [`release`](Source::release) lowers the break
/// again, but only for a region that ends exactly at the current break.
///
/// # Beside the C library's `malloc`
///
/// In a Rust program the C library's allocator moves the break too (glibc's
/// main arena grows with `brk` for small requests; large ones use `mmap`).
/// So `Sbrk` never assumes that its next region follows its last one: every
/// region is whatever `sbrk` returned, and two regions are contiguous only
/// when nobody moved the break in between. A heap over `Sbrk` notices that
/// by comparing addresses and merges only then. Likewise `release` lowers
/// the break only when the break is still exactly at the region's end
/// (glibc's trim applies the same rule to itself, and treats a break moved
/// by someone else as a "foreign sbrk" it steps around).
///
/// All `Sbrk` instances share one lock ([`DefaultLock`]), so their `sbrk` calls never
/// interleave; the lock cannot cover `malloc`'s own calls. glibc's `sbrk` is
/// not atomic, so a `malloc` on another thread that grows the main arena at
/// the very moment `Sbrk` grows the break is a race this type cannot
/// prevent. Used as the source of the `#[global_allocator]` that race
/// disappears for Rust code (it no longer calls `malloc`); in a program that
/// also calls `malloc` from several threads, prefer [`Mmap`](crate::Mmap).
/// When the break moves between the two `sbrk` calls of one acquire so that
/// the new bytes cannot hold an aligned region, `acquire` gives them back if
/// it can (or leaves them, at most a few bytes) and tries again.
///
/// An optional [limit](Sbrk::with_limit) caps the bytes lent out at once, so
/// a heap can be bounded (and tests can reach exhaustion cheaply).
///
/// # Invariants
/// - SRC-K1: every call to `sbrk` made by this type happens with `BREAK` held.
/// - SRC-K2: `outstanding` is the total length of regions acquired and not
///   released, and never exceeds `limit`; it only changes with `BREAK` held.
///
/// # Example
///
/// ```
/// # #[cfg(not(miri))] { // Miri cannot call sbrk/mmap
/// use freespace_core::Source;
/// use freespace_source::Sbrk;
///
/// static SOURCE: Sbrk = Sbrk::with_limit(1 << 20);
/// let region = SOURCE.acquire(100).unwrap();
/// assert!(region.len() >= 100 && region.len() % 16 == 0);
/// // SAFETY: the region is ours alone (CORE-S2) and valid for its whole length.
/// unsafe { region.cast::<u8>().as_ptr().write_bytes(0, region.len()) };
/// assert!(SOURCE.acquire(2 << 20).is_none()); // over the limit
/// # }
/// ```
#[derive(Debug)]
pub struct Sbrk {
    /// Largest total of lent-out bytes (SRC-K2).
    limit: usize,
    /// Bytes lent out now (SRC-K2).
    outstanding: AtomicUsize,
}

impl Sbrk {
    /// An unlimited source over the program break. Does no work.
    ///
    /// ```
    /// # #[cfg(not(miri))] { // Miri cannot call sbrk/mmap
    /// use freespace_core::Source;
    /// use freespace_source::Sbrk;
    /// static SOURCE: Sbrk = Sbrk::new();
    /// assert!(SOURCE.acquire(64).is_some());
    /// # }
    /// ```
    pub const fn new() -> Self {
        Self::with_limit(usize::MAX)
    }

    /// A source that lends out at most `limit` bytes at once: an acquire that
    /// would take the total above `limit` returns `None`. Does no work.
    ///
    /// ```
    /// # #[cfg(not(miri))] { // Miri cannot call sbrk/mmap
    /// use freespace_core::Source;
    /// use freespace_source::Sbrk;
    /// let source = Sbrk::with_limit(64);
    /// let region = source.acquire(64).unwrap();
    /// assert!(source.acquire(16).is_none());
    /// # }
    /// ```
    pub const fn with_limit(limit: usize) -> Self {
        Self {
            limit,
            outstanding: AtomicUsize::new(0),
        }
    }

    /// The limit given to [`with_limit`](Sbrk::with_limit) (`usize::MAX` for
    /// [`new`](Sbrk::new)).
    ///
    /// ```
    /// assert_eq!(freespace_source::Sbrk::with_limit(4096).limit(), 4096);
    /// ```
    pub const fn limit(&self) -> usize {
        self.limit
    }

    /// Bytes lent out now: acquired and not released (SRC-K2).
    ///
    /// ```
    /// # #[cfg(not(miri))] { // Miri cannot call sbrk/mmap
    /// use freespace_core::Source;
    /// use freespace_source::Sbrk;
    /// let source = Sbrk::new();
    /// let _region = source.acquire(20).unwrap();
    /// assert_eq!(source.outstanding(), 32);
    /// # }
    /// ```
    pub fn outstanding(&self) -> usize {
        self.outstanding.load(Ordering::Relaxed)
    }

    /// Checks SRC-K2: the bytes lent out do not exceed the limit.
    ///
    /// ```
    /// # #[cfg(not(miri))] { // Miri cannot call sbrk/mmap
    /// use freespace_core::Source;
    /// use freespace_source::Sbrk;
    /// let source = Sbrk::with_limit(1024);
    /// let _region = source.acquire(1000);
    /// assert_eq!(source.check(), Ok(()));
    /// # }
    /// ```
    pub fn check(&self) -> Result<(), Violation> {
        let _guard = BREAK.lock();
        if self.outstanding() > self.limit {
            return Err(Violation::new(
                "SRC-K2",
                0,
                "more bytes lent out than the limit",
            ));
        }
        Ok(())
    }
}

impl Default for Sbrk {
    fn default() -> Self {
        Self::new()
    }
}

/// The current break, or `None` if `sbrk` failed. Call with `BREAK` held.
fn current_break() -> Option<NonNull<u8>> {
    // SAFETY: `sbrk(0)` only reports the break (SRC-K1: the caller holds BREAK).
    from_sbrk(unsafe { libc::sbrk(0) })
}

/// `sbrk`'s answer as a pointer: `(void*)-1` (and null) mean failure.
fn from_sbrk(ret: *mut c_void) -> Option<NonNull<u8>> {
    if ret.addr() == usize::MAX {
        return None;
    }
    NonNull::new(ret.cast::<u8>())
}

/// Moves the break by `increment` bytes; returns the old break, or `None`.
/// Call with `BREAK` held.
///
/// # Safety
///
/// - when `increment` is negative, the `-increment` bytes below the break
///   belong to the caller and nothing uses them any more.
unsafe fn move_break(increment: isize) -> Option<NonNull<u8>> {
    // SAFETY: growing the break gives new memory nobody else has; shrinking
    // it only frees bytes the caller owns and no longer uses (caller
    // contract).
    from_sbrk(unsafe { libc::sbrk(increment as libc::intptr_t) })
}

// SAFETY: every region returned is `len` bytes of fresh break space that
// `sbrk` just handed to this call alone, readable and writable (CORE-S1, CORE-S2: no
// other region overlaps it until it is released, because the break only
// comes down over bytes that were released); it starts at a multiple of
// REGION_ALIGN and `len` is `min_len` rounded up to one (CORE-S3); no arithmetic
// here can panic: it is all checked (CORE-S4).
unsafe impl Source for Sbrk {
    fn acquire(&self, min_len: usize) -> Option<NonNull<[u8]>> {
        let len = region_len(min_len)?;
        let _guard = BREAK.lock();
        let lent = self.outstanding().checked_add(len)?;
        if lent > self.limit {
            return None;
        }
        for _ in 0..ATTEMPTS {
            let now = current_break()?.as_ptr().addr();
            let pad = align_up(now, REGION_ALIGN)? - now;
            let total = len.checked_add(pad)?;
            if total > isize::MAX as usize {
                return None;
            }
            // SAFETY: a positive increment only grows the break.
            let old = unsafe { move_break(total as isize) }?;
            let old_addr = old.as_ptr().addr();
            let new_end = old_addr.checked_add(total)?;
            let start = align_up(old_addr, REGION_ALIGN)?;
            if start.checked_add(len).is_some_and(|end| end <= new_end) {
                self.outstanding.store(lent, Ordering::Relaxed);
                // SAFETY: `start - old < REGION_ALIGN <= total` and the
                // `total` bytes from `old` are the new break space `sbrk`
                // just gave us.
                let ptr = unsafe { old.add(start - old_addr) };
                return Some(NonNull::slice_from_raw_parts(ptr, len));
            }
            // Someone moved the break between `sbrk(0)` and our `sbrk`, to
            // an address whose padding we did not ask for. Give the bytes
            // back if the break is still at their end; else they are lost
            // (fewer than REGION_ALIGN + len, and only on a race).
            if current_break().is_some_and(|b| b.as_ptr().addr() == new_end) {
                // SAFETY: the `total` bytes below the break are the ones we
                // just got, and nothing uses them.
                let _ = unsafe { move_break(-(total as isize)) };
            }
        }
        None
    }

    /// Lowers the break by `region.len()` if `region` ends exactly at the
    /// current break, returning `true`; otherwise (the break moved since, or
    /// the region is not the last one) declines with `false`.
    unsafe fn release(&self, region: NonNull<[u8]>) -> bool {
        let len = region.len();
        if len == 0 || len > isize::MAX as usize {
            return false;
        }
        let Some(end) = region.cast::<u8>().as_ptr().addr().checked_add(len) else {
            return false;
        };
        let _guard = BREAK.lock();
        if current_break().is_none_or(|b| b.as_ptr().addr() != end) {
            return false;
        }
        // SAFETY: `region` is ours to give back and unused (caller contract
        // of `release`), and it is exactly the `len` bytes below the break.
        if unsafe { move_break(-(len as isize)) }.is_none() {
            return false;
        }
        let lent = self.outstanding().saturating_sub(len);
        self.outstanding.store(lent, Ordering::Relaxed);
        true
    }

    /// `madvise(MADV_DONTNEED)` on the whole pages inside `region` (as
    /// glibc's `malloc_trim` does inside its heap): they read as zeros
    /// after, and cost no memory until written (CORE-S5). The break stays.
    unsafe fn decommit(&self, region: NonNull<[u8]>) -> Option<NonNull<[u8]>> {
        // SAFETY: the caller's contract: break memory (private, anonymous)
        // the caller owns and does not need the contents of.
        unsafe { crate::decommit_pages(region) }
    }

    fn decommits(&self) -> bool {
        true
    }
}
