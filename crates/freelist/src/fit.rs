//! The [`Fit`] trait (a placement policy) and the [`Request`] it places.

use crate::chunk::{chunk_size_for, Chunk, GRANULE, HEADER, MIN_CHUNK};
#[cfg(doc)]
use crate::set::FreeSet;
use freespace_core::alloc::Layout;
use freespace_core::{Corruption, Violation};

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
    #[inline]
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

/// What [`Fit::pick`] found for a request.
///
/// ```
/// use freespace_freelist::Pick;
/// assert_eq!(Pick::Nothing, Pick::Nothing);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pick {
    /// The chosen chunk, of the given size, already taken out of the
    /// index: the heap hands it out whole.
    Whole(Chunk, usize),
    /// The chosen chunk, still a member: the heap carves the request from
    /// it.
    Carve(Chunk),
    /// No member fits.
    Nothing,
}

/// A placement policy together with the index of free chunks it chooses
/// from.
///
/// The heap owns one value of the policy (starting as [`INIT`](Fit::INIT))
/// and hands it every free chunk, takes chunks back out, and tells it about
/// every change of a free chunk's address or size, so the policy can keep
/// the chunks in whatever order makes its choice fast.
///
/// What the heap promises about the chunks it passes (the calls'
/// `# Safety` sections): each is a free chunk of the heap's memory, no user
/// holds it, and its size word is as each method says. [`MIN_CHUNK`] bytes
/// are the smallest chunk, so words 1 and 2 (and the footer) are always
/// the policy's to use; a larger chunk has more.
///
/// # Safety
///
/// The heap trusts the policy to the point of writing through its answers.
/// Implementors promise:
///
/// - FL-P1: [`choose`](Fit::choose) returns `None` or a current member `c`
///   with `req.fits(c, size of c)`; [`pick`](Fit::pick) returns what
///   `choose` would, as [`Pick::Carve`] (still a member) or
///   [`Pick::Nothing`], or as [`Pick::Whole`] only with
///   `req.align() <= GRANULE` and
///   `req.size() <= size < req.size() + MIN_CHUNK` for the size returned
///   (the chunk's), having taken it out;
/// - FL-P2: the members are exactly the chunks inserted (or put in by
///   `replace`) and not yet removed (or replaced); the policy writes only
///   to words 1 up to the footer (exclusive) of members;
/// - FL-P3: no method panics;
/// - FL-P4: [`len`](Fit::len) is the number of members and
///   [`contains`](Fit::contains) is exact.
///
/// # Example
///
/// The plain scans of the four policies are [`Scanned`](crate::Scanned)
/// policies: an address-ordered [free set](crate::FreeSet) and a [`Scan`](crate::Scan)
/// rule. A rule that takes the highest-addressed chunk that fits:
///
/// ```
/// use freespace_freelist::{Chunk, Fit, FreeSet, Request, Scan, Scanned};
///
/// struct LastFit;
/// // SAFETY: `choose` only returns members that fit, keeps no state and
/// // cannot panic.
/// unsafe impl Scan for LastFit {
///     const INIT: Self = LastFit;
///     const NAME: &'static str = "last fit";
///     fn choose(&mut self, set: &FreeSet, req: &Request) -> Option<Chunk> {
///         set.iter().filter(|f| req.fits(f.chunk, f.size)).last().map(|f| f.chunk)
///     }
/// }
/// let mut policy = Scanned::<LastFit>::INIT;
/// let r = Request::new(core::alloc::Layout::new::<u8>()).unwrap();
/// assert!(policy.choose(&r).is_none());
/// assert_eq!(Scanned::<LastFit>::NAME, "last fit");
/// ```
pub unsafe trait Fit {
    /// The policy's state in a new heap: no free chunks.
    const INIT: Self;

    /// A short name for messages and benchmark tables (`"best fit"`).
    const NAME: &'static str;

    /// Whether [`pick`](Fit::pick) may return [`Pick::Whole`]. The heap
    /// then keeps the carve out of line, so that the whole chunk's path
    /// saves no registers; for a policy that never hands a chunk over
    /// whole (the default) the carve stays inline, with no call.
    ///
    /// ```
    /// use freespace_freelist::{Fit, FreeSet, Request, Scan, Scanned, Chunk};
    /// # struct Any;
    /// # // SAFETY: a member that fits or nothing; no state; no panic.
    /// # unsafe impl Scan for Any {
    /// #     const INIT: Self = Any;
    /// #     const NAME: &'static str = "any";
    /// #     fn choose(&mut self, set: &FreeSet, req: &Request) -> Option<Chunk> {
    /// #         set.iter().find(|f| req.fits(f.chunk, f.size)).map(|f| f.chunk)
    /// #     }
    /// # }
    /// assert!(!Scanned::<Any>::PICKS_WHOLE);
    /// ```
    const PICKS_WHOLE: bool = false;

    /// Picks the free chunk that serves `req`, or `None` if none fits.
    fn choose(&mut self, req: &Request) -> Option<Chunk>;

    /// [`choose`](Fit::choose) for the heap's allocation, which may take
    /// the chunk out at once: when the chosen chunk serves `req` **whole**
    /// — no front padding, and fewer than [`MIN_CHUNK`] bytes over the
    /// request, so the heap will not split it — a policy may return
    /// [`Pick::Whole`] with it already out of the index (as
    /// [`remove`](Fit::remove) takes it), saving the heap the placement,
    /// the carve and a second look-up of the chunk's bin. Otherwise it
    /// returns the chosen chunk as [`Pick::Carve`], or [`Pick::Nothing`].
    ///
    /// The default is `choose`, never taking: first and next fit choose by
    /// address and worst fit by size from the top, whose choices are rarely
    /// whole. Best fit's is one search for both: the head of the first
    /// non-empty bin at or above the request, unlinked there and then when
    /// that bin is within [`MIN_CHUNK`] of the request.
    ///
    /// # Errors
    ///
    /// [`Corruption::CorruptFreeList`] when the chunk to take has links
    /// that do not check (as [`remove`](Fit::remove)); nothing is changed
    /// then.
    ///
    /// ```
    /// use freespace_freelist::{Fit, Pick, Request};
    /// # use freespace_freelist::{Chunk, FreeSet, Scan, Scanned};
    /// # struct Any;
    /// # // SAFETY: a member that fits or nothing; no state; no panic.
    /// # unsafe impl Scan for Any {
    /// #     const INIT: Self = Any;
    /// #     const NAME: &'static str = "any";
    /// #     fn choose(&mut self, set: &FreeSet, req: &Request) -> Option<Chunk> {
    /// #         set.iter().find(|f| req.fits(f.chunk, f.size)).map(|f| f.chunk)
    /// #     }
    /// # }
    /// let r = Request::new(core::alloc::Layout::new::<u64>()).unwrap();
    /// // An empty index has nothing to pick.
    /// assert_eq!(Scanned::<Any>::INIT.pick(&r), Ok(Pick::Nothing));
    /// ```
    #[inline(always)]
    fn pick(&mut self, req: &Request) -> Result<Pick, Corruption> {
        Ok(match self.choose(req) {
            Some(c) => Pick::Carve(c),
            None => Pick::Nothing,
        })
    }

    /// Adds the free chunk `chunk`.
    ///
    /// # Safety
    ///
    /// `chunk` is a free chunk of the heap, not a member, no user holds it,
    /// its size word and footer are written.
    ///
    /// # Errors
    ///
    /// [`Corruption::CorruptFreeList`] when the index is found damaged.
    unsafe fn insert(&mut self, chunk: Chunk) -> Result<(), Corruption>;

    /// Takes member `chunk` out, checking first that it is where the
    /// index's links say (the "safe unlinking" check).
    ///
    /// # Safety
    ///
    /// `chunk` is heap memory whose size word and the policy's words are
    /// as the policy left them.
    ///
    /// # Errors
    ///
    /// [`Corruption::CorruptFreeList`] when the chunk or the index is
    /// damaged; nothing is changed then.
    unsafe fn remove(&mut self, chunk: Chunk) -> Result<(), Corruption>;

    /// Puts the free chunk `new` of `new_size` bytes in member `old`'s
    /// place: `new` lies inside or right before `old`'s old bytes, so no
    /// member lies between them in address order (a chunk split from its
    /// front, or merged with the chunk before it).
    ///
    /// # Safety
    ///
    /// `old` as for [`remove`](Fit::remove); `new` as for
    /// [`insert`](Fit::insert) except that its size word is **not yet**
    /// written (the heap writes it after this call). `new`'s words may
    /// overlap `old`'s.
    ///
    /// # Errors
    ///
    /// As [`remove`](Fit::remove).
    unsafe fn replace(&mut self, old: Chunk, new: Chunk, new_size: usize)
        -> Result<(), Corruption>;

    /// Member `chunk` changed size from `old_size` (it absorbed a
    /// neighbour or gave its tail away) and kept its address; its size
    /// word and footer already say the new size.
    ///
    /// # Safety
    ///
    /// As [`remove`](Fit::remove), apart from the size word.
    ///
    /// # Errors
    ///
    /// As [`remove`](Fit::remove).
    unsafe fn resize(&mut self, chunk: Chunk, old_size: usize) -> Result<(), Corruption>;

    /// Number of members.
    fn len(&self) -> usize;

    /// Whether there are no members.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the free chunk `chunk` is a member.
    ///
    /// # Safety
    ///
    /// `chunk` is a free chunk of the heap (size word readable).
    unsafe fn contains(&self, chunk: Chunk) -> bool;

    /// Calls `visit` with every member of `min` bytes or more and its size,
    /// in no particular order, and returns `true`; or returns `false`
    /// without calling it, for an index that cannot find them faster than
    /// a walk of the heap (the default), which the heap then walks
    /// instead. The heap's `trim` and purge look for large free chunks
    /// this way, so their cost follows the free chunks they give pages
    /// back from, not every block of the heap.
    ///
    /// `visit` must not change the index (the heap's trim only hands the
    /// pages inside each chunk to its source).
    fn for_each_at_least(&self, min: usize, visit: &mut dyn FnMut(Chunk, usize)) -> bool {
        let _ = (min, visit);
        false
    }

    /// Checks the policy's own invariants (the heap's `check()` calls it,
    /// after checking that every free chunk is a member and that there are
    /// as many members as free chunks).
    ///
    /// # Errors
    ///
    /// The first [`Violation`] found.
    fn check(&self) -> Result<(), Violation>;
}

/// Writes [`Fit`] methods that hand the call to an index field (an
/// [`AddressIndex`](crate::index::AddressIndex) or a
/// [`Binned`](crate::bins::Binned)), for the policies whose work is
/// all in `choose`: `forward_to_index!(index: insert, remove, len, ...)`
/// inside the `unsafe impl Fit`. Each name is one of `insert`, `remove`,
/// `replace`, `resize`, `len`, `contains`, `check`; a policy with state
/// (next fit's rover) writes the methods that must update it itself.
///
/// ```
/// use freespace_freelist::index::AddressIndex;
/// use freespace_freelist::{Chunk, Fit, Request, GRANULE};
///
/// /// First fit for requests aligned to at most 16 bytes (it refuses the
/// /// others).
/// struct LowestFirst { index: AddressIndex }
///
/// // SAFETY: `choose` returns the lowest member of at least the request's
/// // size, which fits when the alignment is at most GRANULE (FL-P1); the rest
/// // is the index's own (FL-P2–P4).
/// unsafe impl Fit for LowestFirst {
///     const INIT: Self = LowestFirst { index: AddressIndex::new() };
///     const NAME: &'static str = "lowest first";
///     fn choose(&mut self, req: &Request) -> Option<Chunk> {
///         if req.align() > GRANULE {
///             return None;
///         }
///         self.index.lowest_at_least(0, req.size())
///     }
///     freespace_freelist::forward_to_index!(index: insert, remove, replace, resize, len, contains, check);
/// }
/// let r = Request::new(core::alloc::Layout::new::<u64>()).unwrap();
/// assert!(LowestFirst::INIT.choose(&r).is_none());
/// ```
#[macro_export]
macro_rules! forward_to_index {
    ($field:ident: $($method:ident),+ $(,)?) => {
        $($crate::forward_to_index!(@ $field $method);)+
    };
    (@ $f:ident insert) => {
        #[inline(always)]
        unsafe fn insert(&mut self, chunk: $crate::Chunk) -> ::core::result::Result<(), ::freespace_core::Corruption> {
            // SAFETY: the caller's contract (`Fit::insert`) is the index's.
            unsafe { self.$f.insert(chunk) }
        }
    };
    (@ $f:ident remove) => {
        #[inline(always)]
        unsafe fn remove(&mut self, chunk: $crate::Chunk) -> ::core::result::Result<(), ::freespace_core::Corruption> {
            // SAFETY: the caller's contract (`Fit::remove`) is the index's.
            unsafe { self.$f.remove(chunk) }
        }
    };
    (@ $f:ident replace) => {
        #[inline(always)]
        unsafe fn replace(
            &mut self,
            old: $crate::Chunk,
            new: $crate::Chunk,
            new_size: usize,
        ) -> ::core::result::Result<(), ::freespace_core::Corruption> {
            // SAFETY: the caller's contract (`Fit::replace`) is the index's.
            unsafe { self.$f.replace(old, new, new_size) }
        }
    };
    (@ $f:ident resize) => {
        #[inline(always)]
        unsafe fn resize(&mut self, chunk: $crate::Chunk, old_size: usize) -> ::core::result::Result<(), ::freespace_core::Corruption> {
            // SAFETY: the caller's contract (`Fit::resize`) is the index's.
            unsafe { self.$f.resize(chunk, old_size) }
        }
    };
    (@ $f:ident len) => {
        #[inline]
        fn len(&self) -> usize {
            self.$f.len()
        }
    };
    (@ $f:ident contains) => {
        #[inline]
        unsafe fn contains(&self, chunk: $crate::Chunk) -> bool {
            // SAFETY: the caller's contract (`Fit::contains`) is the index's.
            unsafe { self.$f.contains(chunk) }
        }
    };
    (@ $f:ident for_each_at_least) => {
        fn for_each_at_least(
            &self,
            min: usize,
            visit: &mut dyn FnMut($crate::Chunk, usize),
        ) -> bool {
            self.$f.for_each_at_least(min, visit);
            true
        }
    };
    (@ $f:ident check) => {
        fn check(&self) -> ::core::result::Result<(), ::freespace_core::Violation> {
            self.$f.check()
        }
    };
}
