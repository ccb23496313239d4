//! [`Mmap`]: a reservation of address space, committed a chunk at a time.

use core::ffi::c_void;
use core::fmt;
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicUsize, Ordering};
use freespace_core::layout::{align_up, is_aligned};
use freespace_core::lock::DefaultLock;
use freespace_core::{Source, Violation, REGION_ALIGN};
use lock_api::Mutex;

#[cfg(test)]
mod tests;

/// How much address space [`Mmap::new`] reserves: 64 GiB on 64-bit targets,
/// 256 MiB on smaller ones. Only committed pages cost memory.
///
/// ```
/// # #[cfg(target_pointer_width = "64")]
/// assert_eq!(freespace_source::mmap::DEFAULT_RESERVE, 64 << 30);
/// ```
#[cfg(target_pointer_width = "64")]
pub const DEFAULT_RESERVE: usize = 64 << 30;
/// How much address space [`Mmap::new`] reserves: 64 GiB on 64-bit targets,
/// 256 MiB on smaller ones. Only committed pages cost memory.
#[cfg(not(target_pointer_width = "64"))]
pub const DEFAULT_RESERVE: usize = 256 << 20;

/// `MAP_NORESERVE` where it exists: do not count the `PROT_NONE` reservation
/// against the commit limit.
#[cfg(any(target_os = "linux", target_os = "android"))]
const NORESERVE: libc::c_int = libc::MAP_NORESERVE;
#[cfg(not(any(target_os = "linux", target_os = "android")))]
const NORESERVE: libc::c_int = 0;

/// A [`Source`] that grows without moving (unix only).
///
/// On the first [`acquire`](Source::acquire) it reserves a large range of
/// address space ([`DEFAULT_RESERVE`], or the size given to
/// [`with_reserve`](Mmap::with_reserve)) with `mmap(PROT_NONE,
/// MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE)`, which costs no memory.
/// Each acquire then commits the next chunk, the request rounded up to whole
/// pages, with `mprotect(PROT_READ | PROT_WRITE)`, so successive regions are
/// always contiguous and a heap over `Mmap` grows in place:
///
/// ```text
///  base                                                   base + reserved
///  [ region 1 | region 2 | region 3 |........ PROT_NONE ..........]
///                                   ^ committed end
/// ```
///
/// When the reservation is used up, acquire returns `None`.
/// [`release`](Source::release) takes back a page-aligned tail (a region
/// that ends at the committed end): it makes it `PROT_NONE` again, returns
/// its pages to the system with `madvise(MADV_DONTNEED)` and moves the
/// committed end back; anything else is declined.
/// [`decommit`](Source::decommit) gives back the pages inside any region
/// lent out, keeping it committed: `madvise(MADV_DONTNEED)`, after which the
/// pages read as zeros. Regions fresh from `acquire` read as zeros too
/// (pages never touched since the reservation, or given back).
///
/// Dropping an `Mmap` unmaps the whole reservation: regions live as long as
/// the source that gave them (a heap owns its source, so this is the heap's
/// lifetime). A `static` `Mmap` is never dropped.
///
/// `Mmap` is `Sync`: a lock ([`DefaultLock`]: it sleeps rather than spins
/// when the holder is preempted) serialises acquire and release.
///
/// # Invariants
/// - SRC-M1: `base` is `None` and `reserved == committed == 0`, or `base` is the
///   start of an anonymous mapping of `reserved` bytes that this source made
///   and alone uses, `reserved` a non-zero multiple of `page`.
/// - SRC-M2: `committed` is a multiple of `page` and at most `reserved`; the
///   pages of `base .. base + committed` are readable and writable, the rest
///   of the reservation is `PROT_NONE`.
/// - SRC-M3: every region lent out and not released lies in
///   `base .. base + committed`; an acquire hands out the bytes from
///   `base + committed` on and only then advances `committed`, so regions
///   never overlap.
/// - SRC-M4: `page` is a power of two, at least [`REGION_ALIGN`] (0 before the
///   first acquire).
/// - SRC-M5: outside a call, `start..end` is `base..base + committed` (`0..0`
///   without a reservation); `end` moves up only after pages are made
///   readable and down before they are made inaccessible, so every address
///   in `start..end` is readable whenever it is loaded (unless a release
///   runs at the same time).
///
/// # Example
///
/// ```
/// # #[cfg(not(miri))] { // Miri cannot call sbrk/mmap
/// use freespace_core::Source;
/// use freespace_source::Mmap;
///
/// static SOURCE: Mmap = Mmap::new();
/// let a = SOURCE.acquire(100).unwrap();
/// let b = SOURCE.acquire(100).unwrap();
/// let page = a.len(); // one page, more than asked
/// assert_eq!(b.cast::<u8>().as_ptr() as usize, a.cast::<u8>().as_ptr() as usize + page);
/// // SAFETY: `b` came from SOURCE, is the last region, and is unused.
/// assert!(unsafe { SOURCE.release(b) });
/// # }
/// ```
pub struct Mmap {
    /// Bytes of address space to reserve on first use.
    reserve: usize,
    state: Mutex<DefaultLock, State>,
    /// `base + committed` and `base` as addresses (0 before the first
    /// acquire and after drop), mirrored outside the lock for
    /// [`committed_range`](Mmap::committed_range). Written only under the
    /// lock: `start` once, `end` after a commit and before a release
    /// (SRC-M5).
    start: AtomicUsize,
    end: AtomicUsize,
}

/// The mutable part of an [`Mmap`], under its lock (fields: SRC-M1–M4).
struct State {
    base: Option<NonNull<u8>>,
    reserved: usize,
    committed: usize,
    page: usize,
}

// SAFETY: `State` only describes a mapping owned by its `Mmap` (SRC-M1); its
// pointer is not tied to any thread.
unsafe impl Send for State {}

impl Mmap {
    /// A source that reserves [`DEFAULT_RESERVE`] bytes of address space on
    /// first use. Does no work.
    ///
    /// ```
    /// # #[cfg(not(miri))] { // Miri cannot call sbrk/mmap
    /// use freespace_core::Source;
    /// use freespace_source::Mmap;
    /// let source = Mmap::new();
    /// assert!(source.acquire(1 << 20).is_some());
    /// # }
    /// ```
    pub const fn new() -> Self {
        Self::with_reserve(DEFAULT_RESERVE)
    }

    /// A source that reserves `bytes` (rounded up to whole pages) of address
    /// space on first use, and returns `None` once that is all committed.
    /// Does no work.
    ///
    /// ```
    /// # #[cfg(not(miri))] { // Miri cannot call sbrk/mmap
    /// use freespace_core::Source;
    /// use freespace_source::Mmap;
    /// let source = Mmap::with_reserve(1 << 20);
    /// assert!(source.acquire(1 << 20).is_some());
    /// assert!(source.acquire(1).is_none());
    /// # }
    /// ```
    pub const fn with_reserve(bytes: usize) -> Self {
        Self {
            reserve: bytes,
            state: Mutex::const_new(
                <DefaultLock as lock_api::RawMutex>::INIT,
                State {
                    base: None,
                    reserved: 0,
                    committed: 0,
                    page: 0,
                },
            ),
            start: AtomicUsize::new(0),
            end: AtomicUsize::new(0),
        }
    }

    /// The committed part of the reservation, `base..base + committed`, read
    /// without the lock (two atomic loads): every address in it is memory
    /// this source has made readable and writable (SRC-M5). Empty before the
    /// first acquire.
    ///
    /// For a range check before reading memory a pointer claims is ours:
    /// the malloc shim tells a foreign `free` by it without touching the
    /// pointer. A release running at the same time may take the tail back
    /// just after the load; only a pointer into that tail (not a live block)
    /// could then fault.
    ///
    /// ```
    /// # #[cfg(not(miri))] { // Miri cannot call sbrk/mmap
    /// use freespace_core::Source;
    /// use freespace_source::Mmap;
    /// let source = Mmap::new();
    /// assert!(source.committed_range().is_empty());
    /// let region = source.acquire(100).unwrap();
    /// let start = region.cast::<u8>().as_ptr() as usize;
    /// assert_eq!(source.committed_range(), start..start + region.len());
    /// # }
    /// ```
    #[inline]
    pub fn committed_range(&self) -> core::ops::Range<usize> {
        let start = self.start.load(Ordering::Acquire);
        let end = self.end.load(Ordering::Acquire);
        start..end.max(start)
    }

    /// Bytes committed now: the total length of the regions lent out (SRC-M3).
    ///
    /// ```
    /// # #[cfg(not(miri))] { // Miri cannot call sbrk/mmap
    /// use freespace_core::Source;
    /// use freespace_source::Mmap;
    /// let source = Mmap::new();
    /// assert_eq!(source.committed(), 0);
    /// let region = source.acquire(1).unwrap();
    /// assert_eq!(source.committed(), region.len());
    /// # }
    /// ```
    pub fn committed(&self) -> usize {
        self.state.lock().committed
    }

    /// Checks SRC-M1, SRC-M2, SRC-M4 and SRC-M5 (the arithmetic; page protections are the
    /// kernel's).
    ///
    /// ```
    /// # #[cfg(not(miri))] { // Miri cannot call sbrk/mmap
    /// use freespace_core::Source;
    /// use freespace_source::Mmap;
    /// let source = Mmap::new();
    /// let _ = source.acquire(5000);
    /// assert_eq!(source.check(), Ok(()));
    /// # }
    /// ```
    pub fn check(&self) -> Result<(), Violation> {
        let s = self.state.lock();
        let Some(base) = s.base else {
            if s.reserved != 0 || s.committed != 0 {
                return Err(Violation::new("SRC-M1", 0, "sizes without a reservation"));
            }
            return Ok(());
        };
        let addr = base.as_ptr().addr();
        if !s.page.is_power_of_two() || s.page < REGION_ALIGN {
            return Err(Violation::new("SRC-M4", addr, "page size unusable"));
        }
        if s.reserved == 0 || !is_aligned(s.reserved, s.page) || !is_aligned(addr, s.page) {
            return Err(Violation::new(
                "SRC-M1",
                addr,
                "reservation not whole pages",
            ));
        }
        if s.committed > s.reserved || !is_aligned(s.committed, s.page) {
            return Err(Violation::new("SRC-M2", addr, "committed end out of place"));
        }
        let range = self.committed_range();
        if s.committed > 0 && range != (addr..addr + s.committed) {
            return Err(Violation::new(
                "SRC-M5",
                addr,
                "committed_range disagrees with the committed end",
            ));
        }
        Ok(())
    }
}

impl Default for Mmap {
    fn default() -> Self {
        Self::new()
    }
}

impl State {
    /// Reserves the address space (first acquire), filling SRC-M1 and SRC-M4.
    fn reserve(&mut self, bytes: usize) -> Option<NonNull<u8>> {
        if let Some(base) = self.base {
            return Some(base);
        }
        // SAFETY: `sysconf` only reads a system constant.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        let page = usize::try_from(page).ok()?;
        if !page.is_power_of_two() || page < REGION_ALIGN {
            return None;
        }
        let reserved = align_up(bytes, page)?;
        if reserved == 0 {
            return None;
        }
        // SAFETY: a fresh anonymous mapping at an address of the kernel's
        // choosing replaces nothing.
        let ret = unsafe {
            libc::mmap(
                ptr::null_mut(),
                reserved,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | NORESERVE,
                -1,
                0,
            )
        };
        if ret == libc::MAP_FAILED {
            return None;
        }
        let base = NonNull::new(ret.cast::<u8>())?;
        *self = State {
            base: Some(base),
            reserved,
            committed: 0,
            page,
        };
        Some(base)
    }
}

// SAFETY: a region is `len` bytes of the reservation from the committed end
// on, made readable and writable just now (CORE-S1); `committed` then moves past
// it, so no later region overlaps it until it is released (SRC-M3, CORE-S2); it
// starts at `base + committed`, a multiple of the page size, which is a
// multiple of REGION_ALIGN, and `len` is `min_len` rounded up to whole pages
// (CORE-S3); all arithmetic is checked (CORE-S4).
unsafe impl Source for Mmap {
    /// Regions are pages committed from the reservation: never written
    /// since it was mapped, or given back with `MADV_DONTNEED` (`release`,
    /// `decommit`), so they read as zeros (CORE-S6).
    #[inline]
    fn zeroed(&self) -> bool {
        true
    }

    fn acquire(&self, min_len: usize) -> Option<NonNull<[u8]>> {
        let mut s = self.state.lock();
        let base = s.reserve(self.reserve)?;
        let len = align_up(min_len.max(1), s.page)?;
        let end = s.committed.checked_add(len)?;
        if end > s.reserved {
            return None;
        }
        // SAFETY: `committed < end <= reserved`, inside the mapping (SRC-M1).
        let start = unsafe { base.add(s.committed) };
        // SAFETY: `start .. start + len` lies in our reservation and is not
        // lent out (SRC-M3), so changing its protection affects nobody else.
        let rc = unsafe {
            libc::mprotect(
                start.as_ptr().cast::<c_void>(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
            )
        };
        if rc != 0 {
            return None;
        }
        s.committed = end;
        // SRC-M5: the pages are readable now; then publish them.
        let base_addr = base.as_ptr().addr();
        self.start.store(base_addr, Ordering::Release);
        self.end.store(base_addr + end, Ordering::Release);
        Some(NonNull::slice_from_raw_parts(start, len))
    }

    /// Takes back `region` if it starts on a page boundary and ends exactly
    /// at the committed end; declines anything else.
    unsafe fn release(&self, region: NonNull<[u8]>) -> bool {
        let mut s = self.state.lock();
        let Some(base) = s.base else {
            return false;
        };
        let base_addr = base.as_ptr().addr();
        let start = region.cast::<u8>().as_ptr().addr();
        let len = region.len();
        let tail = start >= base_addr
            && start.checked_add(len) == Some(base_addr + s.committed)
            && len > 0
            && is_aligned(start, s.page);
        if !tail {
            return false;
        }
        let offset = start - base_addr;
        // SAFETY: `offset < committed <= reserved`, inside the mapping (SRC-M1);
        // the pointer is derived from `base`, the mapping's own.
        let ptr = unsafe { base.add(offset) }.as_ptr().cast::<c_void>();
        // SRC-M5: withdraw the tail from the range before it stops being
        // readable.
        self.end.store(start, Ordering::Release);
        // SAFETY: the region is committed, ours, and unused (caller contract
        // of `release`); making it inaccessible touches nothing else.
        if unsafe { libc::mprotect(ptr, len, libc::PROT_NONE) } != 0 {
            self.end.store(base_addr + s.committed, Ordering::Release);
            return false;
        }
        // Give the pages back to the system. If that fails they stay
        // resident but inaccessible; the next commit reuses them.
        // SAFETY: as above.
        let _ = unsafe { libc::madvise(ptr, len, libc::MADV_DONTNEED) };
        s.committed = offset;
        true
    }

    /// `madvise(MADV_DONTNEED)` on the whole pages inside `region`: they
    /// read as zeros after, and cost no memory until written (CORE-S5).
    unsafe fn decommit(&self, region: NonNull<[u8]>) -> Option<NonNull<[u8]>> {
        // SAFETY: the caller's contract: committed pages of this mapping
        // (private, anonymous), owned by the caller, contents not needed.
        unsafe { crate::decommit_pages(region) }
    }

    fn decommits(&self) -> bool {
        true
    }
}

impl Drop for Mmap {
    fn drop(&mut self) {
        *self.start.get_mut() = 0;
        *self.end.get_mut() = 0;
        let s = self.state.lock();
        if let Some(base) = s.base {
            // SAFETY: the reservation is this source's own mapping (SRC-M1), and
            // the regions in it live only as long as the source.
            unsafe { libc::munmap(base.as_ptr().cast::<c_void>(), s.reserved) };
        }
    }
}

impl fmt::Debug for Mmap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.state.lock();
        f.debug_struct("Mmap")
            .field("reserve", &self.reserve)
            .field("base", &s.base)
            .field("committed", &s.committed)
            .finish()
    }
}
