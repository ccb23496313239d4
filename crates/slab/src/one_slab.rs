//! One slab: a `SLAB_SIZE`-byte block from the parent, aligned to its own
//! size, holding a header, a free bitmap and equal-sized objects.
//!
//! ```text
//!  base (aligned to SLAB_SIZE)                                  base + SLAB_SIZE
//!  │                                                                        │
//!  ├────────┬────────────┬─────┬──────┬──────┬──────┬─── ─ ─ ──┬──────┬─────┤
//!  │ Header │ bitmap     │ pad │ obj0 │ obj1 │ obj2 │          │ objN │tail │
//!  │        │ 1 bit/obj  │     │      │      │      │          │      │slack│
//!  └────────┴────────────┴─────┴──────┴──────┴──────┴─── ─ ─ ──┴──────┴─────┘
//!   <────────── first ────────> <─ object_size ─>
//! ```
//!
//! The header is at offset 0, so no object ever starts at a slab-aligned
//! address, and `ptr & !(SLAB_SIZE - 1)` is the slab of any object pointer.
//! Free objects are recorded in the bitmap (bit set = free), never inside the
//! objects themselves: an object cache keeps its free objects *constructed*,
//! so their bytes are not ours to reuse as links, and a free that writes
//! nothing into the object it frees does not pull that object's cache line
//! back in (a link written into every freed object, Bonwick's free list,
//! made freeing a million blocks about twice as slow: see the crate docs).
//! The bitmap also makes a double free an exact O(1) test.
//!
//! The header carries a seal ([`SlabPtr::verify`]): a stray write into it
//! (an overflow from the block before the slab, a use after free of the
//! parent's block) is caught before the allocator believes a damaged link,
//! count or tag.

use core::mem::size_of;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicUsize, Ordering};
use freespace_core::layout::{align_up, is_aligned};
use freespace_core::{Corruption, KeySource, Violation};

/// Key of the header seal, folded into the address word (invariant SLAB-S1): a
/// per-process secret, drawn from the OS when the first slab is set up
/// ([`seal_key`]), so that bytes written over a header (an overflow from
/// the memory before a slab) cannot forge a seal that passes. 0 until then.
static SEAL_KEY: AtomicUsize = AtomicUsize::new(0);

/// The seal key ([`SEAL_KEY`]), drawn on first use: called where a slab
/// header is first written, so every header that exists was sealed after
/// the key was drawn.
#[inline]
fn seal_key() -> u64 {
    match SEAL_KEY.load(Ordering::Relaxed) {
        0 => draw_seal_key(),
        k => k as u64,
    }
}

/// The seal key for a header that exists: drawn already (its slab was set
/// up after [`seal_key`] ran, and reached this thread through whatever
/// handed the allocator over: a lock, or a move between threads, each of
/// which orders the key's store before this load).
#[inline(always)]
fn drawn_seal_key() -> u64 {
    SEAL_KEY.load(Ordering::Relaxed) as u64
}

/// Draws the seal key once per process (the first caller's draw wins a
/// race): `getrandom` where there is an OS (see `freespace_core::secret`;
/// without one, only addresses, which are not secret).
#[cold]
#[inline(never)]
fn draw_seal_key() -> u64 {
    let k = KeySource::Os.key(core::ptr::addr_of!(SEAL_KEY).addr());
    match SEAL_KEY.compare_exchange(0, k, Ordering::Relaxed, Ordering::Relaxed) {
        Ok(_) => k as u64,
        Err(first) => first as u64,
    }
}

/// Weights of the header words in the seal: odd, so multiplying by one is a
/// bijection of `u64`. Each is a 32-bit constant sign-extended to 64 bits
/// (the low halves of the SplitMix64 / MurmurHash3 finaliser constants),
/// so that it is an immediate operand of the multiply on x86-64: a seal's
/// verification loads no constants. Oddness is what the seal's guarantee
/// rests on (see [`seal_of`]): a change confined to one word changes the
/// seal whatever the odd weight.
const SEAL_WEIGHTS: [u64; 6] = [
    sign_extended(0x7f4a_7c15),
    sign_extended(0x1ce4_e5b9),
    sign_extended(0x1331_11eb),
    sign_extended(0x6659_fd93),
    sign_extended(0xed55_8ccd),
    sign_extended(0x1a85_ec53),
];

/// `low` as a signed 32-bit value widened to 64 bits.
const fn sign_extended(low: u32) -> u64 {
    low as i32 as i64 as u64
}

// Every weight odd.
const _: () = {
    let mut i = 0;
    while i < SEAL_WEIGHTS.len() {
        assert!(SEAL_WEIGHTS[i] % 2 == 1);
        i += 1;
    }
};

/// The multiplier of [`identity_of`]'s hash, whose high half it keeps: a
/// full 64-bit odd constant (the MurmurHash3 finaliser's), so every bit of
/// the keyed address reaches the high half.
const IDENTITY_MUL: u64 = 0xff51_afd7_ed55_8ccd;

/// Seal word holding the links (see [`words`]).
const NEXT_WORD: usize = 1;
/// Seal word holding the back link.
const PREV_WORD: usize = 2;
/// Seal word holding the class and list tag.
const CLASS_LIST_WORD: usize = 3;
/// Seal word holding the free count and the search start (both may
/// change on every allocation and free: one amend).
const COUNTS_WORD: usize = 4;

/// Bits in one bitmap word.
const WORD_BITS: usize = 64;

/// The bits `lo .. hi` of a bitmap word (`lo < hi <= 64`).
#[inline(always)]
const fn bit_range(lo: usize, hi: usize) -> u64 {
    let upto = if hi == WORD_BITS {
        u64::MAX
    } else {
        (1 << hi) - 1
    };
    upto & !((1u64 << lo) - 1)
}

/// The bitmap bits of objects `lo .. hi`, a word at a time: each word
/// index with the mask of those bits in it.
#[inline(always)]
fn word_masks(lo: usize, hi: usize) -> impl Iterator<Item = (usize, u64)> {
    let mut i = lo;
    core::iter::from_fn(move || {
        if i >= hi {
            return None;
        }
        let w = i / WORD_BITS;
        let end = hi.min((w + 1) * WORD_BITS);
        let mask = bit_range(i % WORD_BITS, end - w * WORD_BITS);
        i = end;
        Some((w, mask))
    })
}

/// Which list of its cache a slab is on. The header stores it as a plain
/// `u32` tag ([`List::from_tag`] validates it on read), never as this enum:
/// a stray write must not be able to make an invalid enum value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum List {
    /// Some objects free, some in use.
    Partial = 0,
    /// No object free.
    Full = 1,
    /// Every object free.
    Empty = 2,
}

impl List {
    /// The list a header tag names, if it names one.
    pub(crate) const fn from_tag(tag: u32) -> Option<Self> {
        match tag {
            0 => Some(List::Partial),
            1 => Some(List::Full),
            2 => Some(List::Empty),
            _ => None,
        }
    }

    /// Whether a slab with `free` of `capacity` objects free may be on
    /// this list: the list [`List::for_count`] names, or the partial list
    /// for a slab with every object free (the parked slab, SLAB-C1; that
    /// there is at most one is the cache's to check).
    pub(crate) fn holds(self, free: usize, capacity: usize) -> bool {
        self == List::for_count(free, capacity) || (self == List::Partial && free == capacity)
    }

    /// The list a slab with `free` of `capacity` objects free belongs on.
    pub(crate) const fn for_count(free: usize, capacity: usize) -> Self {
        if free == 0 {
            List::Full
        } else if free == capacity {
            List::Empty
        } else {
            List::Partial
        }
    }
}

/// The descriptor at offset 0 of every slab. The free bitmap (`u64` words)
/// follows at [`BITMAP_OFFSET`].
///
/// ```text
///  0        8        16       24    28    32    36    40    44    48  (64-bit)
///  ├────────┼────────┼────────┼─────┼─────┼─────┼─────┼─────┼─────┤
///  │ seal   │ next   │ prev   │class│list │free │search ident│  0  │
///  └────────┴────────┴────────┴─────┴─────┴─────┴─────┴─────┴─────┘
///   seal = keyed weighted sum of (header address, next, prev,
///          class|list, free|search, identity|0), amended by every change we make
/// ```
///
/// Every field is plain data for which any bit pattern is a valid value
/// (`Option<SlabPtr>` is a nullable pointer, the list is a `u32` tag), so a
/// damaged header can always be *read*; the seal says whether it may be
/// *believed*.
#[repr(C)]
#[derive(Clone, Copy)]
struct Header {
    /// [`seal_of`] this header's address and other fields (invariant SLAB-S1).
    seal: u64,
    /// Next slab on the same list.
    next: Option<SlabPtr>,
    /// Previous slab on the same list.
    prev: Option<SlabPtr>,
    /// Index of the owning cache within its allocator (a size class).
    class: u32,
    /// Which list the slab is on: a [`List`] tag, validated on read.
    list: u32,
    /// Number of free objects (set bits in the bitmap).
    free: u32,
    /// Every bitmap word below this index is zero (invariant SLAB-S3): where
    /// the search for a free object starts.
    search_from: u32,
    /// The slab's identity, [`identity_of`] its address and class: written
    /// when the slab is set up, never changed while it lives, erased (0,
    /// which no identity is) before it goes back to the parent. Sealed like
    /// every other word, so that no header byte is outside the seal; read
    /// without the seal by [`crate::ObjectMap`] (invariant SLAB-S4).
    identity: u32,
    /// Always 0: the header's last four bytes, a field so that they are
    /// sealed too (a stray write there is damage like any other).
    zero: u32,
}

/// The identity of a slab at `addr` holding objects of `class` (its
/// header's `identity` word): a keyed 32-bit hash, never 0, so that memory
/// that is not a live slab of ours (a slab given back, the parent's other
/// blocks, anybody's bytes) matches it only by a 1 in 2^32 chance, and
/// bytes written without the key cannot forge it.
#[inline(always)]
pub(crate) fn identity_of(addr: usize, class: u32) -> u32 {
    let k = (drawn_seal_key() ^ addr as u64)
        .wrapping_add(u64::from(class))
        .wrapping_mul(IDENTITY_MUL);
    (k >> 32) as u32 | 1
}

/// The words a seal covers: the keyed header address, then every header
/// field but the seal, packed in `u64`s.
#[inline]
fn words(addr: usize, h: &Header) -> [u64; 6] {
    [
        drawn_seal_key() ^ addr as u64,
        link_word(h.next),
        link_word(h.prev),
        class_list_word(h.class, h.list),
        pair_word(h.free, h.search_from),
        pair_word(h.identity, h.zero),
    ]
}

#[inline]
fn link_word(link: Option<SlabPtr>) -> u64 {
    link.map_or(0, |s| s.addr() as u64)
}

#[inline]
fn class_list_word(class: u32, list: u32) -> u64 {
    u64::from(class) | u64::from(list) << 32
}

#[inline]
fn pair_word(low: u32, high: u32) -> u64 {
    u64::from(low) | u64::from(high) << 32
}

/// The seal of a header at `addr` holding `h`: `Σ words[i] · WEIGHTS[i]`
/// (mod 2^64), six independent multiplies.
///
/// - Any change confined to one word — the address (a header copied
///   elsewhere), a link, the class and list tag, the counts, or the seal
///   itself — always changes it (each weight is odd, so `δ · weight ≠ 0` for
///   `δ ≠ 0`); damage across several words passes only by a 64-bit
///   coincidence.
/// - It is additive, so the allocator *amends* it when it changes a field
///   (`seal += (new − old) · weight`, one multiply; see
///   [`SlabPtr::amend`]) and never recomputes it from a header it has not
///   verified. `seal − seal_of(header)` is therefore unchanged by every
///   write of ours: damage made behind the allocator's back stays visible
///   until a free or a list move verifies the header, however many
///   allocations touch the slab in between.
#[inline]
fn seal_of(addr: usize, h: &Header) -> u64 {
    let w = words(addr, h);
    let mut seal = 0u64;
    for i in 0..w.len() {
        seal = seal.wrapping_add(w[i].wrapping_mul(SEAL_WEIGHTS[i]));
    }
    seal
}

/// Offset of the free bitmap: right after the header, 8-aligned.
pub(crate) const BITMAP_OFFSET: usize = match align_up(size_of::<Header>(), 8) {
    Some(o) => o,
    None => panic!("header size overflows"),
};

/// Smallest supported slab size: room for a header, a bitmap word and a few
/// objects.
///
/// ```
/// use freespace_core::alloc::Global;
/// use freespace_slab::{Slab, MIN_SLAB_SIZE};
/// let tiny: Slab<Global, MIN_SLAB_SIZE> = Slab::sized_with_classes(Global, &[16]);
/// assert_eq!(tiny.classes(), &[16]);
/// ```
pub const MIN_SLAB_SIZE: usize = 256;

/// Where the objects of a slab lie, for one object size and slab size. All
/// slabs of a cache share one geometry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Geometry {
    /// Bytes per slab (a power of two; slabs are aligned to it).
    pub(crate) slab_size: usize,
    /// Bytes per object: the stride between objects.
    pub(crate) object_size: usize,
    /// Alignment every object has.
    pub(crate) object_align: usize,
    /// Offset of object 0 from the slab base (after header and bitmap).
    pub(crate) first: usize,
    /// Objects per slab (at least 1).
    pub(crate) capacity: usize,
    /// Bitmap words: `ceil(capacity / 64)`.
    pub(crate) words: usize,
    /// `capacity * object_size`: the bytes the objects span.
    span: usize,
    /// The multiplier whose product with an offset below `slab_size` has
    /// the offset divided by `object_size` in its high word (see
    /// [`Geometry::divisor`]); 0 means "divide".
    div_mul: u64,
}

impl Geometry {
    /// A geometry that fits no object: the placeholder for unused classes.
    pub(crate) const NONE: Geometry = Geometry {
        slab_size: 0,
        object_size: 0,
        object_align: 0,
        first: 0,
        capacity: 0,
        words: 0,
        span: 0,
        div_mul: 0,
    };

    /// Lays out objects of `object_size` bytes aligned to `object_align` in
    /// slabs of `slab_size` bytes; `None` if the slab size is unusable or not
    /// even one object fits.
    pub(crate) const fn new(
        slab_size: usize,
        object_size: usize,
        object_align: usize,
    ) -> Option<Geometry> {
        if !slab_size.is_power_of_two()
            || slab_size < MIN_SLAB_SIZE
            || slab_size > isize::MAX as usize
            || object_size == 0
            || !object_align.is_power_of_two()
            || object_size >= slab_size
            || object_align >= slab_size
        {
            return None;
        }
        // Fewer objects need fewer bitmap words, which may leave room for
        // more objects: step down from the upper bound to a capacity that
        // fits, then up while one more still fits.
        let mut capacity = (slab_size - BITMAP_OFFSET) / object_size;
        loop {
            if capacity == 0 || capacity > u32::MAX as usize {
                return None;
            }
            match Self::first_for(slab_size, object_align, capacity) {
                Some(first) if (slab_size - first) / object_size >= capacity => break,
                Some(first) if first < slab_size => capacity = (slab_size - first) / object_size,
                _ => capacity -= 1,
            }
        }
        while capacity < u32::MAX as usize {
            match Self::first_for(slab_size, object_align, capacity + 1) {
                Some(first) if (slab_size - first) / object_size > capacity => capacity += 1,
                _ => break,
            }
        }
        let first = match Self::first_for(slab_size, object_align, capacity) {
            Some(f) => f,
            None => return None,
        };
        let div_mul = Self::divisor(slab_size, object_size);
        Some(Geometry {
            slab_size,
            object_size,
            object_align,
            first,
            capacity,
            words: capacity.div_ceil(WORD_BITS),
            span: capacity * object_size,
            div_mul,
        })
    }

    /// `m` such that `n / object_size == (n * m) >> 64` for every
    /// `n < slab_size` (Granlund and Montgomery's division by invariant
    /// integers). With `m = ceil(2^64 / object_size)`, that is `(2^64 + e) /
    /// object_size` for some `e < object_size`, the error term `n e /
    /// (object_size 2^64)` stays below `1 / object_size` when `slab_size
    /// object_size` is at most `2^64`: too little to carry `n / object_size`
    /// past an integer. 0 when that does not hold, or for 1-byte objects
    /// (`m` would be `2^64`): then [`Geometry::index_of`] divides.
    const fn divisor(slab_size: usize, object_size: usize) -> u64 {
        if object_size < 2 || slab_size as u128 * object_size as u128 > 1u128 << 64 {
            return 0;
        }
        (1u128 << 64).div_ceil(object_size as u128) as u64
    }

    /// The index of the object that starts `offset` bytes into its slab, or
    /// `None` if no object starts there. One multiply, no division.
    #[inline(always)]
    pub(crate) fn index_of(&self, offset: usize) -> Option<usize> {
        let rel = offset.wrapping_sub(self.first);
        if rel >= self.span {
            return None;
        }
        let i = if self.div_mul != 0 {
            ((rel as u128 * self.div_mul as u128) >> 64) as usize
        } else {
            rel / self.object_size
        };
        (i * self.object_size == rel).then_some(i)
    }

    /// Offset of object 0 when a slab holds `capacity` objects, if it is
    /// inside the slab.
    const fn first_for(slab_size: usize, object_align: usize, capacity: usize) -> Option<usize> {
        let words = capacity.div_ceil(WORD_BITS);
        match align_up(BITMAP_OFFSET + words * 8, object_align) {
            Some(f) if f < slab_size => Some(f),
            _ => None,
        }
    }

    /// Offset of the first byte after the last object.
    pub(crate) const fn objects_end(&self) -> usize {
        self.first + self.capacity * self.object_size
    }
}

/// A pointer to a slab's header, with provenance over the whole slab (it is
/// the pointer the parent returned).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SlabPtr(NonNull<Header>);

impl SlabPtr {
    /// Writes a fresh header and an all-free bitmap at the start of `base`.
    ///
    /// # Safety
    /// - `base` points to `geometry.slab_size` writable bytes that belong to
    ///   the caller, aligned to `geometry.slab_size`;
    /// - `geometry` is a value returned by [`Geometry::new`].
    pub(crate) unsafe fn init(base: NonNull<u8>, geometry: &Geometry, class: u32) -> SlabPtr {
        let slab = SlabPtr(base.cast());
        // SAFETY: the header and bitmap lie in the first `geometry.first`
        // bytes of the slab, which the caller gave us; `base` is aligned to
        // the slab size, hence to 8.
        unsafe {
            let mut header = Header {
                seal: 0,
                next: None,
                prev: None,
                class,
                list: List::Empty as u32,
                free: geometry.capacity as u32,
                search_from: 0,
                identity: 0,
                zero: 0,
            };
            // The key exists before the first seal that uses it.
            seal_key();
            header.identity = identity_of(slab.addr(), class);
            header.seal = seal_of(slab.addr(), &header);
            slab.0.as_ptr().write(header);
            for (w, mask) in word_masks(0, geometry.capacity) {
                slab.word_ptr(w).write(mask);
            }
        }
        slab
    }

    /// Erases the identity (SLAB-S4), just before the slab goes back to the
    /// parent: its memory then names no class to an [`crate::ObjectMap`].
    /// The seal no longer verifies either; nothing reads this header again.
    pub(crate) fn erase_identity(self) {
        // SAFETY: see the banner above.
        unsafe { (*self.header()).identity = 0 };
    }

    /// The identity word (SLAB-S4), read on its own.
    ///
    /// # Safety
    /// `self` points to readable memory of `size_of::<Header>()` bytes that
    /// no one writes during the call (true of a live slab's identity, and
    /// of its class, which are never written while it lives).
    #[inline(always)]
    pub(crate) unsafe fn identity_and_class(self) -> (u32, u32) {
        // SAFETY: the caller's contract.
        unsafe {
            let h = self.header();
            ((*h).identity, (*h).class)
        }
    }

    /// The slab whose header is at `base`.
    ///
    /// # Safety
    /// `base` is the base of a live slab of ours and has provenance over it,
    /// or at least points to readable memory of `size_of::<Header>()` bytes
    /// (whose seal will then not verify).
    #[inline(always)]
    pub(crate) unsafe fn from_base(base: NonNull<u8>) -> SlabPtr {
        SlabPtr(base.cast())
    }

    /// The slab base address.
    pub(crate) fn addr(self) -> usize {
        self.0.as_ptr().addr()
    }

    /// The slab base pointer (provenance over the whole slab).
    pub(crate) fn base(self) -> NonNull<u8> {
        self.0.cast()
    }

    fn header(self) -> *mut Header {
        self.0.as_ptr()
    }

    /// # Safety
    /// `w` is less than the geometry's `words`, and the slab is live.
    unsafe fn word_ptr(self, w: usize) -> *mut u64 {
        // SAFETY: the bitmap lies inside the slab (Geometry::new put
        // `first` after it), so the offset stays in bounds.
        unsafe { self.base().as_ptr().add(BITMAP_OFFSET + w * 8).cast() }
    }

    // ---------------------------------------------------------------------
    // Header fields. Every accessor requires (not restated on each) that the
    // slab is live: its memory belongs to the cache that hands out `self`.
    // SAFETY for all of them: the header is initialised by `init` and only
    // accessed through raw places, never through long-lived references, so
    // no reference to it can alias the one-field read or write; every field
    // is valid for any bit pattern, so even a damaged header reads soundly.
    //
    // The getters return what the header says; only after `verify` has
    // passed is that believed (SLAB-S1). Every setter amends the seal by the
    // change it makes (`amend`), never recomputes it, so damage done behind
    // our back survives our own writes until a `verify` sees it.
    // ---------------------------------------------------------------------

    /// Checks the seal (SLAB-S1) and the list tag: `Ok(list)` if the header is
    /// exactly as this allocator last wrote it, else `OverwrittenHeader`
    /// naming the header. Call it before believing a link or acting on a
    /// field that a free or a list move depends on.
    #[inline]
    pub(crate) fn verify(self) -> Result<List, Corruption> {
        // SAFETY: see the banner above.
        let h = unsafe { self.header().read() };
        match List::from_tag(h.list) {
            Some(list) if h.seal == seal_of(self.addr(), &h) => Ok(list),
            _ => Err(Corruption::OverwrittenHeader { addr: self.addr() }),
        }
    }

    /// Amends the seal for seal word `word` changing from `old` to `new`.
    #[inline(always)]
    fn amend(self, word: usize, old: u64, new: u64) {
        let delta = new.wrapping_sub(old).wrapping_mul(SEAL_WEIGHTS[word]);
        // SAFETY: see the banner above.
        unsafe {
            let h = self.header();
            (*h).seal = (*h).seal.wrapping_add(delta);
        }
    }

    pub(crate) fn class(self) -> u32 {
        // SAFETY: see the banner above.
        unsafe { (*self.header()).class }
    }

    /// The list the header names, if its tag is a valid one.
    pub(crate) fn list(self) -> Option<List> {
        // SAFETY: see the banner above.
        List::from_tag(unsafe { (*self.header()).list })
    }

    pub(crate) fn free_count(self) -> usize {
        // SAFETY: see the banner above.
        unsafe { (*self.header()).free as usize }
    }

    pub(crate) fn next(self) -> Option<SlabPtr> {
        // SAFETY: see the banner above.
        unsafe { (*self.header()).next }
    }

    pub(crate) fn prev(self) -> Option<SlabPtr> {
        // SAFETY: see the banner above.
        unsafe { (*self.header()).prev }
    }

    /// Files the slab on `list` between `prev` and `next`.
    pub(crate) fn link(self, list: List, prev: Option<SlabPtr>, next: Option<SlabPtr>) {
        // SAFETY: see the banner above.
        let (class, old) = unsafe {
            let h = self.header();
            let old = (*h).list;
            (*h).list = list as u32;
            ((*h).class, old)
        };
        self.amend(
            CLASS_LIST_WORD,
            class_list_word(class, old),
            class_list_word(class, list as u32),
        );
        self.set_prev(prev);
        self.set_next(next);
    }

    pub(crate) fn set_next(self, next: Option<SlabPtr>) {
        // SAFETY: see the banner above.
        let old = unsafe { core::ptr::replace(&raw mut (*self.header()).next, next) };
        self.amend(NEXT_WORD, link_word(old), link_word(next));
    }

    pub(crate) fn set_prev(self, prev: Option<SlabPtr>) {
        // SAFETY: see the banner above.
        let old = unsafe { core::ptr::replace(&raw mut (*self.header()).prev, prev) };
        self.amend(PREV_WORD, link_word(old), link_word(prev));
    }

    /// The free count and the search start.
    #[inline(always)]
    fn counts(self) -> (u32, u32) {
        // SAFETY: see the banner above.
        unsafe {
            let h = self.header();
            ((*h).free, (*h).search_from)
        }
    }

    /// Sets the free count and the search start: one word of the seal, one
    /// amend.
    #[inline(always)]
    fn set_counts(self, free: u32, search_from: u32) {
        // SAFETY: see the banner above.
        let old = unsafe {
            let h = self.header();
            let old = pair_word((*h).free, (*h).search_from);
            (*h).free = free;
            (*h).search_from = search_from;
            old
        };
        self.amend(COUNTS_WORD, old, pair_word(free, search_from));
    }

    /// Pointer to object `i`.
    ///
    /// # Safety
    /// `i < g.capacity` and `g` is this slab's geometry.
    pub(crate) unsafe fn object(self, g: &Geometry, i: usize) -> NonNull<u8> {
        // SAFETY: object `i` lies inside the slab (`objects_end <= slab_size`).
        unsafe { self.base().add(g.first + i * g.object_size) }
    }

    /// The index of the object that starts at `addr`, which lies in this
    /// slab; `InteriorPointer` if no object starts there.
    #[inline(always)]
    pub(crate) fn object_index(self, g: &Geometry, addr: usize) -> Result<usize, Corruption> {
        g.index_of(addr.wrapping_sub(self.addr()))
            .ok_or(Corruption::InteriorPointer { addr })
    }

    /// Whether object `i` is free.
    ///
    /// # Safety
    /// `i < g.capacity`, `g` is this slab's geometry.
    #[inline(always)]
    pub(crate) unsafe fn is_free(self, i: usize) -> bool {
        // SAFETY: `i / 64 < words` since `i < capacity`.
        unsafe { self.word_ptr(i / WORD_BITS).read() & (1 << (i % WORD_BITS)) != 0 }
    }

    /// Takes the lowest free object at or after the search start. `Err` if
    /// the header or bitmap has none to give or is inconsistent (a damaged
    /// header or bitmap: SLAB-S2, SLAB-S3); nothing is handed out then.
    ///
    /// # Safety
    /// `g` is this slab's geometry. The header need not be verified (a
    /// damaged free count or search start costs no memory safety here: only
    /// an object whose bit says free, below the last object, is handed out,
    /// and the amended seal keeps the damage visible).
    #[inline(always)]
    pub(crate) unsafe fn take(self, g: &Geometry) -> Result<NonNull<u8>, Corruption> {
        let mut one = [NonNull::dangling()];
        // SAFETY: as for this function.
        match unsafe { self.take_run(g, &mut one) } {
            1 => Ok(one[0]),
            _ => Err(Corruption::OverwrittenHeader { addr: self.addr() }),
        }
    }

    /// Up to `out.len()` free objects, lowest first: the bits cleared a
    /// word at a time and the counts amended once for them all
    /// ([`take`](Self::take) is this for one object). Returns how many it
    /// took: fewer than asked only when the bitmap has fewer free objects
    /// than that or is damaged (a bit set past the last object), which
    /// [`take`](Self::take), one at a time, then names.
    ///
    /// # Safety
    /// As for [`SlabPtr::take`]. (A caller that wants the slab to stay on
    /// its list asks for fewer objects than the header's free count.)
    #[inline(always)]
    pub(crate) unsafe fn take_run(self, g: &Geometry, out: &mut [NonNull<u8>]) -> usize {
        let (free, w) = self.counts();
        let mut w = w as usize;
        let mut n = 0;
        'words: while n < out.len() && w < g.words {
            // SAFETY: `w < words`.
            let word = unsafe { self.word_ptr(w) };
            // SAFETY: `word` points into this slab's bitmap.
            let mut bits = unsafe { word.read() };
            while bits != 0 && n < out.len() {
                let i = w * WORD_BITS + bits.trailing_zeros() as usize;
                if i >= g.capacity {
                    // A damaged bitmap (SLAB-S2): what was taken from this
                    // word is written back, nothing past the last object.
                    // SAFETY: as above.
                    unsafe { word.write(bits) };
                    break 'words;
                }
                // SAFETY: `i < capacity`.
                out[n] = unsafe { self.object(g, i) };
                bits &= bits - 1;
                n += 1;
            }
            // SAFETY: as above.
            unsafe { word.write(bits) };
            if bits != 0 {
                break;
            }
            w += 1;
        }
        if n > 0 {
            // Every word below `w` is zero now (SLAB-S3).
            self.set_counts(free.wrapping_sub(n as u32), w as u32);
        }
        n
    }

    /// Sets object `i`'s bit (free); amends nothing.
    ///
    /// # Safety
    /// `i` is below this slab's capacity.
    #[inline(always)]
    unsafe fn set_bit(self, i: usize) {
        // SAFETY: `i / 64 < words` since `i < capacity`.
        unsafe {
            let word = self.word_ptr(i / WORD_BITS);
            word.write(word.read() | 1 << (i % WORD_BITS));
        }
    }

    /// Marks object `i` free again: its bit set, the free count up by one
    /// and the search start lowered to its word. Nothing is written into
    /// the object.
    ///
    /// # Safety
    /// `i < g.capacity`, `g` is this slab's geometry, and object `i` is in
    /// use.
    #[inline(always)]
    pub(crate) unsafe fn put(self, i: usize) {
        // SAFETY: the caller's contract.
        unsafe { self.set_bit(i) };
        let w = i / WORD_BITS;
        let (free, search_from) = self.counts();
        // `w <= i < capacity <= u32::MAX`.
        self.set_counts(free.wrapping_add(1), search_from.min(w as u32));
    }

    /// [`put`](Self::put) for a run of objects: marks free, in order, as
    /// many of `blocks` from the front as lie in this slab, are objects in
    /// use (their bits clear) and leave fewer than `capacity - 1` objects
    /// free — so the slab stays partial — then amends the counts (and the
    /// search start) once for them all, where `put` amends per object.
    /// Returns how many it freed; it stops at the first block it cannot
    /// free (another slab's, an interior pointer, a double free, the one
    /// that would empty the slab), which the caller then frees alone.
    ///
    /// The bits of one bitmap word are read once and written once for all
    /// the run's objects in it.
    ///
    /// # Safety
    /// `g` is this slab's geometry, and the header's free count is below
    /// `capacity` (a partial slab's); each block that lies in this slab and
    /// starts an object whose bit is clear is in use and the caller's to
    /// free.
    #[inline(always)]
    pub(crate) unsafe fn put_run(self, g: &Geometry, blocks: &[NonNull<u8>]) -> usize {
        // SAFETY: the caller's contract.
        let k = unsafe { self.put_sequence(g, blocks) };
        if k == blocks.len() {
            return k;
        }
        // SAFETY: the caller's contract; the free count is still below
        // `capacity` (`put_sequence` leaves one object in use).
        k + unsafe { self.put_scattered(g, &blocks[k..]) }
    }

    /// The front of [`put_run`](Self::put_run) when the blocks are
    /// neighbouring objects, each one object after the last or each one
    /// before it (a thread cache hands back the objects of a slab in the
    /// order they were freed, and a program often frees in the order it
    /// allocated or the reverse): the first block is checked as
    /// [`put_scattered`](Self::put_scattered) checks every block, and each
    /// later one by one comparison with the address the stride predicts,
    /// which is an object of this slab by construction. Their bits form
    /// one range, checked clear (no double free) and set a bitmap word at
    /// a time. Returns how many it freed: 0, changing nothing, for fewer
    /// than two such blocks or a range with a bit already set (which
    /// `put_scattered` then stops at, one block at a time).
    ///
    /// # Safety
    /// As [`put_run`](Self::put_run).
    #[inline(always)]
    unsafe fn put_sequence(self, g: &Geometry, blocks: &[NonNull<u8>]) -> usize {
        let (free, search_from) = self.counts();
        // At most this many: one object stays in use, the slab partial.
        let room = g.capacity.saturating_sub(free as usize + 1);
        let blocks = &blocks[..blocks.len().min(room)];
        let (Some(first), Some(second)) = (blocks.first(), blocks.get(1)) else {
            return 0;
        };
        let (a0, a1) = (first.as_ptr().addr(), second.as_ptr().addr());
        // The stride first: blocks in no order (a random teardown) leave
        // here after one comparison, before any check of the first.
        let up = a1 == a0.wrapping_add(g.object_size);
        if !up && a1 != a0.wrapping_sub(g.object_size) {
            return 0;
        }
        if a0 & !(g.slab_size - 1) != self.addr() {
            return 0;
        }
        let Ok(i0) = self.object_index(g, a0) else {
            return 0;
        };
        let step = if up {
            g.object_size
        } else {
            g.object_size.wrapping_neg()
        };
        // Objects `i0..capacity` going up, `0..=i0` going down.
        let limit = blocks.len().min(if up { g.capacity - i0 } else { i0 + 1 });
        let mut k = 1;
        let mut expect = a0.wrapping_add(step);
        while k < limit && blocks[k].as_ptr().addr() == expect {
            k += 1;
            expect = expect.wrapping_add(step);
        }
        if k < 2 {
            return 0;
        }
        // Objects `lo..=hi`, inside `0..capacity` by the limit above.
        let (lo, hi) = if up {
            (i0, i0 + k - 1)
        } else {
            (i0 + 1 - k, i0)
        };
        let range_mask = |w: usize| {
            let from = lo.max(w * WORD_BITS) - w * WORD_BITS;
            let to = hi.min(w * WORD_BITS + WORD_BITS - 1) - w * WORD_BITS;
            (u64::MAX >> (WORD_BITS - 1 - to)) & (u64::MAX << from)
        };
        let words = lo / WORD_BITS..=hi / WORD_BITS;
        // SAFETY: `hi < capacity`, so every word of the range is a bitmap
        // word.
        let taken = |w: usize| unsafe { self.word_ptr(w).read() } & range_mask(w) != 0;
        if words.clone().any(taken) {
            return 0;
        }
        for w in words {
            // SAFETY: as above.
            unsafe { *self.word_ptr(w) |= range_mask(w) };
        }
        // `free + k < capacity` (the room), and the search start only
        // falls, both below `u32::MAX`.
        self.set_counts(free + k as u32, search_from.min((lo / WORD_BITS) as u32));
        k
    }

    /// [`put_run`](Self::put_run) block by block: each is checked to lie
    /// in this slab and start an object, and its bit to be clear.
    ///
    /// # Safety
    /// As [`put_run`](Self::put_run).
    #[inline(always)]
    unsafe fn put_scattered(self, g: &Geometry, blocks: &[NonNull<u8>]) -> usize {
        // A copy, so the bitmap writes below cannot alias it and its fields
        // stay in registers.
        let g = *g;
        let (free, search_from) = self.counts();
        // At most this many: one object stays in use, the slab partial.
        let room = g.capacity.saturating_sub(free as usize + 1);
        let mut low_word = search_from as usize;
        // The bitmap word the run is in: its index, its bits as read, and
        // the bits the run sets there (written when the run leaves it).
        let mut word = usize::MAX;
        let mut bits = 0u64;
        let mut pending = 0u64;
        let mut n = 0;
        while n < blocks.len().min(room) {
            let addr = blocks[n].as_ptr().addr();
            if addr & !(g.slab_size - 1) != self.addr() {
                break;
            }
            let Ok(i) = self.object_index(&g, addr) else {
                break;
            };
            let w = i / WORD_BITS;
            let bit = 1u64 << (i % WORD_BITS);
            if w != word {
                if pending != 0 {
                    // SAFETY: `word` is the word of an object below
                    // `capacity`, read above.
                    unsafe { self.word_ptr(word).write(bits | pending) };
                    low_word = low_word.min(word);
                }
                word = w;
                // SAFETY: `i < capacity`, so `w` is a bitmap word.
                bits = unsafe { self.word_ptr(w).read() };
                pending = 0;
            }
            // Free already, or twice in this run: a single free decides.
            if (bits | pending) & bit != 0 {
                break;
            }
            // Object `i` is in use (its bit clear) and the caller's.
            pending |= bit;
            n += 1;
        }
        if pending != 0 {
            // SAFETY: as in the loop.
            unsafe { self.word_ptr(word).write(bits | pending) };
            low_word = low_word.min(word);
        }
        if n > 0 {
            // `free + n < capacity`, and `low_word <= search_from`, both
            // below `u32::MAX`.
            self.set_counts(free + n as u32, low_word as u32);
        }
        n
    }

    /// Calls `visit(object, is_free)` for every object, in address order.
    ///
    /// # Safety
    /// `g` is this slab's geometry.
    pub(crate) unsafe fn for_each_object(
        self,
        g: &Geometry,
        mut visit: impl FnMut(NonNull<u8>, bool),
    ) {
        for i in 0..g.capacity {
            // SAFETY: `i < capacity`.
            unsafe { visit(self.object(g, i), self.is_free(i)) }
        }
    }

    /// Checks SLAB-S1–SLAB-S3 against `g` and `class`.
    ///
    /// # Safety
    /// `g` is the geometry the slab was made with.
    pub(crate) unsafe fn check(self, g: &Geometry, class: u32) -> Result<(), Violation> {
        let at = self.addr();
        let Ok(list) = self.verify() else {
            return Err(Violation::new(
                "SLAB-S1",
                at,
                "slab header seal does not match its address and contents",
            ));
        };
        if !is_aligned(at, g.slab_size) {
            return Err(Violation::new(
                "SLAB-S1",
                at,
                "slab not aligned to the slab size",
            ));
        }
        if self.class() != class {
            return Err(Violation::new(
                "SLAB-S1",
                at,
                "slab header names another class",
            ));
        }
        let mut free = 0usize;
        // SAFETY: header per the banner.
        let (search_from, identity) = unsafe {
            let h = self.header();
            ((*h).search_from as usize, (*h).identity)
        };
        if identity != identity_of(at, class) {
            return Err(Violation::new(
                "SLAB-S4",
                at,
                "slab identity does not match its address and class",
            ));
        }
        for w in 0..g.words {
            // SAFETY: `w < words`.
            let bits = unsafe { self.word_ptr(w).read() };
            let valid = (g.capacity - w * WORD_BITS).min(WORD_BITS);
            if valid < WORD_BITS && bits >> valid != 0 {
                return Err(Violation::new(
                    "SLAB-S2",
                    at,
                    "bitmap bit set past the last object",
                ));
            }
            if w < search_from && bits != 0 {
                return Err(Violation::new(
                    "SLAB-S3",
                    at,
                    "free object below the search start",
                ));
            }
            free += bits.count_ones() as usize;
        }
        if free != self.free_count() {
            return Err(Violation::new(
                "SLAB-S2",
                at,
                "free count differs from the bitmap",
            ));
        }
        if !list.holds(free, g.capacity) {
            return Err(Violation::new(
                "SLAB-C1",
                at,
                "slab on the wrong list for its free count",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod seal_tests {
    use super::*;

    /// Issue 16: the seal's key is a secret drawn at run time, so a header
    /// sealed with the key an attacker could read from the source (the
    /// constant it used to be) does not verify.
    #[test]
    fn a_seal_made_with_the_old_public_key_does_not_match() {
        const OLD_PUBLIC_KEY: u64 = 0x51ab_5eed_c0ff_ee00;
        let h = Header {
            seal: 0,
            next: None,
            prev: None,
            class: 3,
            list: List::Empty as u32,
            free: 5,
            search_from: 0,
            identity: 0,
            zero: 0,
        };
        let addr = 0x7000_0000;
        let mut w = words(addr, &h);
        w[0] = OLD_PUBLIC_KEY ^ addr as u64;
        let forged = w
            .iter()
            .zip(SEAL_WEIGHTS)
            .fold(0u64, |s, (&w, k)| s.wrapping_add(w.wrapping_mul(k)));
        assert_ne!(forged, seal_of(addr, &h));
        assert_eq!(seal_key(), seal_key(), "drawn once");
        assert_ne!(seal_key(), OLD_PUBLIC_KEY);
    }
}
