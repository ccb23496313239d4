//! [`Arena`]: one fixed region, the seed's "single fixed-size heap".

use core::cell::Cell;
use core::fmt;
use core::mem::MaybeUninit;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, Ordering};
use freespace_core::layout::{align_down, align_up, is_aligned};
use freespace_core::{Source, Violation, REGION_ALIGN};

#[cfg(test)]
mod tests;

/// A [`Source`] over one fixed region of memory, handed out whole.
///
/// The first [`acquire`](Source::acquire) returns the entire usable region
/// (more than asked is allowed) if it is at least `min_len` long; every later
/// acquire returns `None` until the region is [released](Source::release)
/// whole. A heap over an `Arena` is a heap of fixed size.
///
/// The `const` constructors ([`new`](Arena::new),
/// [`from_raw_parts`](Arena::from_raw_parts)) cannot look at the address at
/// compile time, so they accept any region and *trim* it on first use: the
/// front up to the next multiple of [`REGION_ALIGN`], the tail down to one.
/// No byte outside the usable part is ever handed out, so nothing outside the
/// region you gave is ever written:
///
/// ```text
///  given:   |··[==============================]···|
///           ^ptr  ^align_up(ptr)       align_down(ptr+len)^   ^ptr+len
///  usable:     [==============================]
/// ```
///
/// A region too small to keep any aligned 16 bytes just makes `acquire`
/// return `None`. The checked constructors ([`try_new`](Arena::try_new),
/// [`try_from_raw_parts`](Arena::try_from_raw_parts)) instead reject a null,
/// misaligned or too-small region with an [`ArenaError`].
///
/// An `Arena` is `Send` but not `Sync`; wrap it (or the heap over it) in a
/// lock to share it.
///
/// ```compile_fail
/// fn shared<T: Sync>() {}
/// shared::<freespace_source::Arena>();
/// ```
///
/// # Invariants
/// - SRC-A1: `base..base + len` is valid for reads and writes for as long as the
///   arena lives, and belongs to the arena alone (constructor contract); in
///   particular `base + len` does not overflow.
/// - SRC-A2: the only region the arena ever hands out is the usable part
///   `align_up(base, 16) .. align_down(base + len, 16)`, whole, and only when
///   it is non-empty.
/// - SRC-A3: `lent` is true exactly while that region is in a caller's hands
///   (acquired and not released); it is only ever true when the usable part
///   is non-empty.
///
/// # Example
///
/// ```
/// use freespace_core::Source;
/// use freespace_source::{Arena, StaticMemory};
///
/// static MEMORY: StaticMemory<4096> = StaticMemory::new();
/// let arena = Arena::new(MEMORY.take().unwrap());
/// let region = arena.acquire(1000).unwrap();
/// assert_eq!(region.len(), 4096); // the whole arena
/// assert!(arena.acquire(16).is_none()); // only one region
/// // SAFETY: `region` came from `arena` and nothing in it is in use.
/// assert!(unsafe { arena.release(region) });
/// assert!(arena.acquire(4096).is_some()); // available again
/// ```
pub struct Arena {
    /// Start of the region as given (SRC-A1); the provenance every region
    /// pointer is derived from.
    base: *mut u8,
    /// Length of the region as given (SRC-A1).
    len: usize,
    /// Whether the usable region is lent out (SRC-A3).
    lent: Cell<bool>,
}

// SAFETY: the arena owns its region exclusively (SRC-A1) and holds no reference
// to anything tied to a thread; moving it moves that ownership. It is not
// `Sync`: `lent` is a plain `Cell`.
unsafe impl Send for Arena {}

impl Arena {
    /// The smallest region [`try_new`](Arena::try_new) and
    /// [`try_from_raw_parts`](Arena::try_from_raw_parts) accept, in bytes.
    ///
    /// ```
    /// assert_eq!(freespace_source::Arena::MIN_LEN, 64);
    /// ```
    pub const MIN_LEN: usize = 64;

    /// An arena over `mem`, which it keeps for the rest of the program.
    ///
    /// Does no work: `mem` is trimmed to [`REGION_ALIGN`] on the first
    /// acquire (see the type's docs). Usable in a `const` or `static`
    /// initializer. [`StaticMemory`] gives such memory without `static mut`
    /// (or leak a `Box` of `MaybeUninit<u8>`s).
    ///
    /// ```
    /// use freespace_core::Source;
    /// use freespace_source::{Arena, StaticMemory};
    ///
    /// static MEMORY: StaticMemory<256> = StaticMemory::new();
    /// let arena = Arena::new(MEMORY.take().unwrap());
    /// assert!(arena.acquire(256).is_some());
    /// ```
    pub const fn new(mem: &'static mut [MaybeUninit<u8>]) -> Self {
        Self {
            base: mem.as_mut_ptr().cast::<u8>(),
            len: mem.len(),
            lent: Cell::new(false),
        }
    }

    /// An arena over the `len` bytes at `ptr`.
    ///
    /// Does no work: the region is trimmed to [`REGION_ALIGN`] on the first
    /// acquire (see the type's docs); a null `ptr` or a region with no
    /// aligned 16 bytes in it gives an arena whose `acquire` is always
    /// `None`.
    ///
    /// # Safety
    ///
    /// Unless `ptr` is null:
    /// - `ptr..ptr + len` is valid for reads and writes for as long as the
    ///   arena (and any region it handed out) is in use;
    /// - nothing else reads or writes it during that time (except through
    ///   the regions the arena hands out).
    ///
    /// # Example
    ///
    /// ```
    /// use freespace_core::Source;
    /// use freespace_source::Arena;
    ///
    /// let mut buffer = vec![0u8; 1001];
    /// // SAFETY: `buffer` outlives the arena and is only used through it.
    /// let arena = unsafe { Arena::from_raw_parts(buffer.as_mut_ptr().wrapping_add(3), 998) };
    /// let region = arena.acquire(16).unwrap();
    /// assert!(region.len() >= 960 && region.len() % 16 == 0);
    /// ```
    pub const unsafe fn from_raw_parts(ptr: *mut u8, len: usize) -> Self {
        Self {
            base: ptr,
            len,
            lent: Cell::new(false),
        }
    }

    /// An arena over `mem`, or an [`ArenaError`] if `mem` is not aligned to
    /// [`REGION_ALIGN`] or shorter than [`MIN_LEN`](Arena::MIN_LEN).
    ///
    /// A length that is not a multiple of [`REGION_ALIGN`] is accepted; the
    /// tail is trimmed.
    ///
    /// ```
    /// use freespace_source::{Arena, ArenaError, StaticMemory};
    ///
    /// static TINY: StaticMemory<8> = StaticMemory::new();
    /// let err = Arena::try_new(TINY.take().unwrap()).err();
    /// assert_eq!(err, Some(ArenaError::TooSmall { len: 8 }));
    /// ```
    pub fn try_new(mem: &'static mut [MaybeUninit<u8>]) -> Result<Self, ArenaError> {
        validate(mem.as_mut_ptr().cast::<u8>(), mem.len())?;
        Ok(Self::new(mem))
    }

    /// An arena over the `len` bytes at `ptr`, or an [`ArenaError`] if `ptr`
    /// is null, not aligned to [`REGION_ALIGN`], or `len` is shorter than
    /// [`MIN_LEN`](Arena::MIN_LEN).
    ///
    /// # Safety
    ///
    /// As for [`from_raw_parts`](Arena::from_raw_parts) (nothing is read or
    /// written when an error is returned).
    ///
    /// # Example
    ///
    /// ```
    /// use freespace_source::{Arena, ArenaError};
    ///
    /// let mut buffer = vec![0u128; 8]; // 128 bytes, 16-aligned
    /// let ptr = buffer.as_mut_ptr().cast::<u8>();
    /// // SAFETY: `buffer` outlives the arenas and is only used through them.
    /// assert!(unsafe { Arena::try_from_raw_parts(ptr, 128) }.is_ok());
    /// let err = unsafe { Arena::try_from_raw_parts(ptr.wrapping_add(1), 127) }.err();
    /// assert!(matches!(err, Some(ArenaError::Misaligned { .. })));
    /// ```
    pub unsafe fn try_from_raw_parts(ptr: *mut u8, len: usize) -> Result<Self, ArenaError> {
        validate(ptr, len)?;
        // SAFETY: the caller's contract is the one `from_raw_parts` needs.
        Ok(unsafe { Self::from_raw_parts(ptr, len) })
    }

    /// The length of the region the arena hands out: the given region after
    /// trimming to [`REGION_ALIGN`] (SRC-A2), or 0 if nothing usable is left.
    ///
    /// ```
    /// use freespace_source::Arena;
    /// let mut buffer = vec![0u128; 4];
    /// // SAFETY: `buffer` outlives the arena and is only used through it.
    /// let arena = unsafe { Arena::from_raw_parts(buffer.as_mut_ptr().cast(), 60) };
    /// assert_eq!(arena.capacity(), 48);
    /// ```
    pub fn capacity(&self) -> usize {
        self.usable().map_or(0, |r| r.len())
    }

    /// Whether the region is currently lent out (SRC-A3).
    ///
    /// ```
    /// use freespace_core::Source;
    /// use freespace_source::{Arena, StaticMemory};
    ///
    /// static MEMORY: StaticMemory<64> = StaticMemory::new();
    /// let arena = Arena::new(MEMORY.take().unwrap());
    /// assert!(!arena.is_lent());
    /// let _region = arena.acquire(64).unwrap();
    /// assert!(arena.is_lent());
    /// ```
    pub fn is_lent(&self) -> bool {
        self.lent.get()
    }

    /// Checks the invariants that can be checked: SRC-A1's "`base + len` does
    /// not overflow" and SRC-A3's "lent only when the usable part is non-empty".
    ///
    /// ```
    /// use freespace_core::Source;
    /// use freespace_source::{Arena, StaticMemory};
    ///
    /// static MEMORY: StaticMemory<64> = StaticMemory::new();
    /// let arena = Arena::new(MEMORY.take().unwrap());
    /// let _region = arena.acquire(1);
    /// assert_eq!(arena.check(), Ok(()));
    /// ```
    pub fn check(&self) -> Result<(), Violation> {
        let addr = self.base.addr();
        if !self.base.is_null() && addr.checked_add(self.len).is_none() {
            return Err(Violation::new(
                "SRC-A1",
                addr,
                "region wraps the address space",
            ));
        }
        if self.lent.get() && self.usable().is_none() {
            return Err(Violation::new("SRC-A3", addr, "lent with no usable region"));
        }
        Ok(())
    }

    /// The usable part of the region (SRC-A2), or `None` if it is empty.
    fn usable(&self) -> Option<NonNull<[u8]>> {
        let base = NonNull::new(self.base)?;
        let addr = base.as_ptr().addr();
        let start = align_up(addr, REGION_ALIGN)?;
        let end = align_down(addr.checked_add(self.len)?, REGION_ALIGN);
        if start >= end {
            return None;
        }
        // SAFETY: `start - addr < REGION_ALIGN` and `start < end <= addr +
        // len`, so the offset stays inside the region, which is one
        // allocation valid for `len` bytes (SRC-A1).
        let ptr = unsafe { base.add(start - addr) };
        Some(NonNull::slice_from_raw_parts(ptr, end - start))
    }
}

/// The checks `try_new` and `try_from_raw_parts` share.
fn validate(ptr: *mut u8, len: usize) -> Result<(), ArenaError> {
    if ptr.is_null() {
        return Err(ArenaError::Null);
    }
    if !is_aligned(ptr.addr(), REGION_ALIGN) {
        return Err(ArenaError::Misaligned { addr: ptr.addr() });
    }
    if len < Arena::MIN_LEN {
        return Err(ArenaError::TooSmall { len });
    }
    Ok(())
}

// SAFETY: the only region handed out is the usable part of the arena's own
// memory (SRC-A2), valid and exclusive by SRC-A1 (CORE-S1); it is handed out at most once
// until released whole (SRC-A3), so regions never overlap (CORE-S2); its ends are
// multiples of REGION_ALIGN, and it is returned only if at least `min_len`
// long (CORE-S3); nothing here panics (CORE-S4).
unsafe impl Source for Arena {
    fn acquire(&self, min_len: usize) -> Option<NonNull<[u8]>> {
        if self.lent.get() {
            return None;
        }
        let region = self.usable()?;
        if region.len() < min_len {
            return None;
        }
        self.lent.set(true);
        Some(region)
    }

    /// Takes the region back if it is exactly the whole usable region and it
    /// is lent out; declines anything else (a part of it, or a region that
    /// was never lent).
    unsafe fn release(&self, region: NonNull<[u8]>) -> bool {
        let Some(usable) = self.usable() else {
            return false;
        };
        let whole = region.cast::<u8>() == usable.cast::<u8>() && region.len() == usable.len();
        if self.lent.get() && whole {
            self.lent.set(false);
            true
        } else {
            false
        }
    }
}

impl fmt::Debug for Arena {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Arena")
            .field("base", &self.base)
            .field("len", &self.len)
            .field("lent", &self.lent.get())
            .finish()
    }
}

/// Why [`Arena::try_new`] or [`Arena::try_from_raw_parts`] rejected a
/// region.
///
/// ```
/// use freespace_source::ArenaError;
/// assert_eq!(
///     ArenaError::Misaligned { addr: 0x1003 }.to_string(),
///     "arena region at 0x1003 is not aligned to 16 bytes",
/// );
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ArenaError {
    /// The region pointer was null.
    Null,
    /// The region did not start at a multiple of [`REGION_ALIGN`].
    Misaligned {
        /// Where it started.
        addr: usize,
    },
    /// The region was shorter than [`Arena::MIN_LEN`].
    TooSmall {
        /// Its length.
        len: usize,
    },
}

impl fmt::Display for ArenaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ArenaError::Null => f.write_str("arena region is null"),
            ArenaError::Misaligned { addr } => write!(
                f,
                "arena region at {addr:#x} is not aligned to {REGION_ALIGN} bytes"
            ),
            ArenaError::TooSmall { len } => write!(
                f,
                "arena region of {len} bytes is smaller than the minimum of {} bytes",
                Arena::MIN_LEN
            ),
        }
    }
}

impl core::error::Error for ArenaError {}

/// `N` bytes in a `static`, aligned to [`REGION_ALIGN`], for an [`Arena`]:
/// memory for a fixed heap without `static mut` or a leaked `Box`.
///
/// [`take`](StaticMemory::take) hands the bytes out once, as the
/// `&'static mut` that [`Arena::new`] takes; in a `static` initializer (where
/// `take` cannot run) use [`as_mut_ptr`](StaticMemory::as_mut_ptr) with
/// [`Arena::from_raw_parts`] instead.
///
/// # Invariants
/// - SRC-T1: `taken` is true once `bytes` has been handed out by `take`; `take`
///   never hands them out again.
///
/// # Example
///
/// ```
/// use freespace_core::Source;
/// use freespace_source::{Arena, StaticMemory};
///
/// static MEMORY: StaticMemory<1024> = StaticMemory::new();
/// let arena = Arena::new(MEMORY.take().unwrap());
/// assert!(MEMORY.take().is_none()); // handed out once
/// assert_eq!(arena.acquire(1).unwrap().len(), 1024);
/// ```
#[repr(C, align(16))]
pub struct StaticMemory<const N: usize> {
    bytes: core::cell::UnsafeCell<[MaybeUninit<u8>; N]>,
    taken: AtomicBool,
}

// SAFETY: `bytes` is only reached through the one `&'static mut` that `take`
// hands out (SRC-T1), guarded by an atomic swap, or through raw pointers whose
// use the caller of `Arena::from_raw_parts` vouches for.
unsafe impl<const N: usize> Sync for StaticMemory<N> {}

impl<const N: usize> StaticMemory<N> {
    /// `N` uninitialised bytes, not yet handed out.
    ///
    /// ```
    /// static MEMORY: freespace_source::StaticMemory<64> = freespace_source::StaticMemory::new();
    /// ```
    pub const fn new() -> Self {
        Self {
            bytes: core::cell::UnsafeCell::new([MaybeUninit::uninit(); N]),
            taken: AtomicBool::new(false),
        }
    }

    /// The bytes, the first time this is called; `None` afterwards (SRC-T1).
    ///
    /// ```
    /// use freespace_source::StaticMemory;
    /// static MEMORY: StaticMemory<64> = StaticMemory::new();
    /// assert_eq!(MEMORY.take().map(|m| m.len()), Some(64));
    /// assert!(MEMORY.take().is_none());
    /// ```
    // A `&mut` from `&self` is sound here: the atomic swap lets it happen
    // once (SRC-T1), which is what the lint cannot see.
    #[allow(clippy::mut_from_ref)]
    pub fn take(&'static self) -> Option<&'static mut [MaybeUninit<u8>]> {
        if self.taken.swap(true, Ordering::AcqRel) {
            return None;
        }
        // SAFETY: the swap above succeeds once, so this is the only
        // reference `take` ever makes (SRC-T1), and it lives as long as the
        // static.
        Some(unsafe { &mut *self.bytes.get() })
    }

    /// A pointer to the first byte, for [`Arena::from_raw_parts`] in a
    /// `const` or `static` initializer. Does not mark the bytes taken: the
    /// caller of `from_raw_parts` promises nothing else uses them.
    ///
    /// ```
    /// use freespace_core::Source;
    /// use freespace_source::{Arena, StaticMemory};
    ///
    /// static MEMORY: StaticMemory<512> = StaticMemory::new();
    /// // SAFETY: MEMORY is used by this arena alone.
    /// let arena = unsafe { Arena::from_raw_parts(MEMORY.as_mut_ptr(), 512) };
    /// assert_eq!(arena.capacity(), 512);
    /// ```
    pub const fn as_mut_ptr(&self) -> *mut u8 {
        self.bytes.get().cast::<u8>()
    }
}

impl<const N: usize> Default for StaticMemory<N> {
    fn default() -> Self {
        Self::new()
    }
}
