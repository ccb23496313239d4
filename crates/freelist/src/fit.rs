//! The [`Fit`] trait (a placement policy) and the [`Request`] it places.

use crate::chunk::{chunk_size_for, Chunk, GRANULE, HEADER, MIN_CHUNK};
use crate::set::FreeSet;
use freespace_core::alloc::Layout;
use freespace_core::Violation;

/// A request as the heap sees it: a chunk size and an alignment.
///
/// ```
/// use freespace_core::alloc::Layout;
/// use freespace_freelist::Request;
/// let r = Request::new(Layout::from_size_align(20, 8).unwrap()).unwrap();
/// assert_eq!((r.size(), r.align()), (48, 16));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    size: usize,
    align: usize,
}

impl Request {
    /// The request for `layout`, or `None` when its chunk size overflows.
    pub const fn new(layout: Layout) -> Option<Self> {
        let align = if layout.align() > GRANULE {
            layout.align()
        } else {
            GRANULE
        };
        match chunk_size_for(layout.size()) {
            Some(size) => Some(Self { size, align }),
            None => None,
        }
    }

    /// The chunk size needed, header included.
    pub const fn size(&self) -> usize {
        self.size
    }

    /// The payload alignment (at least [`GRANULE`]).
    pub const fn align(&self) -> usize {
        self.align
    }

    /// Where the request goes in a free chunk at `addr` of `size` bytes: the
    /// front padding (0, or at least [`MIN_CHUNK`] so it can stay a free
    /// chunk; never a sliver that would be lost), or `None` if it does not
    /// fit.
    ///
    /// ```
    /// use freespace_core::alloc::Layout;
    /// use freespace_freelist::Request;
    /// let r = Request::new(Layout::from_size_align(64, 256).unwrap()).unwrap();
    /// // The payload must be 256-aligned: a chunk at 0x1000 puts it at 0x1100
    /// // (padding 0xF0), since 0x1010 is not aligned.
    /// assert_eq!(r.placement(0x1000, 0x200), Some(0xF0));
    /// // At 0x10F0 the payload lands at 0x1100 with no padding.
    /// assert_eq!(r.placement(0x10F0, 80), Some(0));
    /// // At 0x10E0 the padding would be 16 bytes, too small to be a chunk:
    /// // the next aligned spot is used instead.
    /// assert_eq!(r.placement(0x10E0, 0x400), Some(0x110));
    /// assert_eq!(r.placement(0x10E0, 0x100), None);
    /// ```
    #[inline]
    pub const fn placement(&self, addr: usize, size: usize) -> Option<usize> {
        let pad = if self.align <= GRANULE {
            0
        } else {
            let start = match addr.checked_add(HEADER) {
                Some(s) => s,
                None => return None,
            };
            let payload = match freespace_core::layout::align_up(start, self.align) {
                Some(p) => p,
                None => return None,
            };
            let pad = payload - start;
            if pad != 0 && pad < MIN_CHUNK {
                // `align > GRANULE` means `align >= MIN_CHUNK`, so one more
                // step makes the padding a whole chunk.
                pad + self.align
            } else {
                pad
            }
        };
        match pad.checked_add(self.size) {
            Some(need) if need <= size => Some(pad),
            _ => None,
        }
    }

    /// Whether the request fits in a free chunk at `chunk` of `size` bytes.
    ///
    /// ```
    /// use core::ptr::NonNull;
    /// use freespace_core::alloc::Layout;
    /// use freespace_freelist::{Chunk, Request};
    /// let r = Request::new(Layout::from_size_align(40, 8).unwrap()).unwrap();
    /// let mut words = [0u128; 4];
    /// let c = Chunk::new(NonNull::from(&mut words).cast());
    /// assert!(r.fits(c, 64) && !r.fits(c, 48));
    /// ```
    #[inline]
    pub fn fits(&self, chunk: Chunk, size: usize) -> bool {
        self.placement(chunk.addr(), size).is_some()
    }
}

/// A placement policy: which free chunk serves a request.
///
/// The heap owns one value of the policy (starting as [`INIT`](Fit::INIT))
/// and tells it about every change to the free set, so a policy with state
/// (next fit's roving pointer, an index) stays in step with the set.
///
/// # Safety
///
/// The heap trusts the policy to the point of writing through its answers.
/// Implementors promise:
///
/// - P1: [`choose`](Fit::choose) returns `None` or a current member `c` of
///   `set` with `req.fits(c, size of c)`;
/// - P2: the policy's state only names members of the set (or nothing), and
///   only passes members to the set's `unsafe` methods;
/// - P3: no method panics.
///
/// # Example
///
/// A policy that takes the highest-addressed chunk that fits:
///
/// ```
/// use freespace_freelist::{Chunk, Fit, FreeSet, Request};
///
/// struct LastFit;
/// // SAFETY: `choose` only returns members that fit (P1), keeps no state (P2)
/// // and cannot panic (P3).
/// unsafe impl Fit for LastFit {
///     const INIT: Self = LastFit;
///     const NAME: &'static str = "last fit";
///     fn choose(&mut self, set: &FreeSet, req: &Request) -> Option<Chunk> {
///         set.iter().filter(|f| req.fits(f.chunk, f.size)).last().map(|f| f.chunk)
///     }
/// }
/// assert!(LastFit.choose(&FreeSet::new(), &Request::new(core::alloc::Layout::new::<u8>()).unwrap()).is_none());
/// ```
pub unsafe trait Fit {
    /// The policy's state in a new heap.
    const INIT: Self;

    /// A short name for messages and benchmark tables (`"best fit"`).
    const NAME: &'static str;

    /// Picks the free chunk that serves `req`, or `None` if none fits.
    fn choose(&mut self, set: &FreeSet, req: &Request) -> Option<Chunk>;

    /// `chunk` was just added to `set`.
    #[inline]
    fn inserted(&mut self, set: &FreeSet, chunk: Chunk) {
        let _ = (set, chunk);
    }

    /// `chunk` was just taken out of `set`; `successor` is the member that
    /// followed it (now in its place in address order), if any.
    #[inline]
    fn removed(&mut self, set: &FreeSet, chunk: Chunk, successor: Option<Chunk>) {
        let _ = (set, chunk, successor);
    }

    /// Member `old` was just replaced by `new` at the same list position
    /// (a chunk split from its front, or merged with the chunk before it).
    #[inline]
    fn replaced(&mut self, set: &FreeSet, old: Chunk, new: Chunk) {
        let _ = (set, old, new);
    }

    /// Member `chunk` changed size from `old_size` (it absorbed a neighbour
    /// or gave its tail away) and kept its address.
    #[inline]
    fn resized(&mut self, set: &FreeSet, chunk: Chunk, old_size: usize) {
        let _ = (set, chunk, old_size);
    }

    /// Checks the policy's own invariants against `set` (the heap's
    /// `check()` calls it).
    fn check(&self, set: &FreeSet) -> Result<(), Violation> {
        let _ = set;
        Ok(())
    }
}
