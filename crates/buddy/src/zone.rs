//! A zone: one maximal contiguous run of memory from the source, with its
//! header and its two bitmaps at its top.
//!
//! ```text
//!  raw_start  lo                                   meta_lo            hi  raw_end
//!      |      |<------------ blocks ------------->|<---- metadata --->|     |
//!      | trim | 512 K | 256 K |  ...  | 32 | 16   | Zone | bitmaps   |trim |
//! ```
//!
//! Both bitmaps have one bit per `MIN`-byte granule of `[lo, hi)`, numbered
//! by absolute granule (`address / MIN`) from `first_granule` (`lo / MIN`
//! rounded down to a whole word, so bit `g` is bit `g % WORD_BITS` of its
//! word), and are interleaved a word at a time (see `word`):
//!
//! - **free**: bit `g` is set iff a free block starts at granule `g`;
//! - **split**: bit `id` is set iff the buddy-tree node with in-order number
//!   `id` is split (an interior node). The node of level `j ≥ 1` starting at
//!   granule `g` has the number `g + 2^(j-1) - 1`: the position of its middle
//!   granule minus one. Numbers of distinct nodes differ (`id + 1` has exactly
//!   `j - 1` trailing zeros), and a node's number lies inside the node, so a
//!   node inside the zone has its bit inside the bitmap.
//!
//! Leaves (level 0) have no split bit: a single granule cannot be split.

use core::mem::size_of;
use core::ptr::NonNull;

/// Bits in one bitmap word.
pub(crate) const WORD_BITS: usize = usize::BITS as usize;

/// The header of a zone, written at `meta_lo`; the two bitmaps follow it,
/// `words` words each, interleaved a word at a time.
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct Zone {
    /// The next zone of the heap (newest first).
    pub(crate) next: Option<NonNull<Zone>>,
    /// The region pointer of the zone's first region: every block pointer is
    /// derived from it.
    pub(crate) base: NonNull<u8>,
    /// First byte of the first region the source returned.
    pub(crate) raw_start: usize,
    /// One past the last byte of the last region joined into the zone.
    pub(crate) raw_end: usize,
    /// `raw_start` rounded up to a granule: the first block byte.
    pub(crate) lo: usize,
    /// `raw_end` rounded down to a granule: the end of the buddy tree.
    pub(crate) hi: usize,
    /// Start of the metadata (this header); blocks users get lie in `[lo, meta_lo)`.
    pub(crate) meta_lo: usize,
    /// `lo / MIN` rounded down to a multiple of `WORD_BITS`: the granule
    /// number of bit 0 of both bitmaps.
    pub(crate) first_granule: usize,
    /// Words in each bitmap: enough for the granules up to `hi / MIN`.
    pub(crate) words: usize,
    /// How many source regions the zone is made of (1 unless joined).
    pub(crate) regions: usize,
}

impl Zone {
    /// The granule number of bit 0 of the bitmaps of a zone whose tree
    /// starts at granule `lo_granule`.
    pub(crate) const fn first_granule(lo_granule: usize) -> usize {
        lo_granule - lo_granule % WORD_BITS
    }

    /// Words in each bitmap of a zone whose tree is granules
    /// `[lo_granule, hi_granule)`.
    pub(crate) const fn words(lo_granule: usize, hi_granule: usize) -> usize {
        hi_granule.div_ceil(WORD_BITS) - Self::first_granule(lo_granule) / WORD_BITS
    }

    /// Bytes of header plus both bitmaps of `words` words each.
    pub(crate) const fn meta_bytes(words: usize) -> Option<usize> {
        match words.checked_mul(2 * size_of::<usize>()) {
            Some(b) => b.checked_add(size_of::<Zone>()),
            None => None,
        }
    }
}

/// A pointer to a live zone header.
///
/// # Invariant
///
/// BUDDY-Z1: the pointer is the `meta_lo` of a zone of the heap that made it, the
/// header there is initialised, and `2 * words` bitmap words follow it, all
/// inside the zone and touched only by that heap.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct ZonePtr(pub(crate) NonNull<Zone>);

impl ZonePtr {
    /// A copy of the header (after inlining, only the fields used are read).
    #[inline(always)]
    pub(crate) fn get(self) -> Zone {
        // SAFETY: BUDDY-Z1: the header is initialised and only the owning heap
        // writes it; a copy holds no reference into it.
        unsafe { self.0.as_ptr().read() }
    }

    /// Sets the header's link to the next zone.
    pub(crate) fn set_next(self, next: Option<NonNull<Zone>>) {
        // SAFETY: BUDDY-Z1: the header is initialised and belongs to the heap
        // calling this, which holds no reference into it.
        unsafe { (*self.0.as_ptr()).next = next }
    }

    /// The first word of the bitmaps.
    #[inline(always)]
    pub(crate) fn bitmap(self) -> *mut usize {
        // SAFETY: BUDDY-Z1: the bitmaps follow the header in the same zone.
        unsafe { self.0.as_ptr().add(1).cast::<usize>() }
    }

    /// The bitmaps' *biased* pointer: the first word moved back by the
    /// words bit 0 skips (`2 * first_granule / WORD_BITS`), so that the bit
    /// of absolute granule `g` is at `word(lane, g)` from it. It may point
    /// outside the zone (it is made with `wrapping_sub`, keeping the
    /// zone's provenance) and is only dereferenced at such words, which
    /// are inside the bitmaps for every granule of the zone.
    #[inline(always)]
    pub(crate) fn biased_bitmap(self) -> *mut usize {
        let first = self.get().first_granule;
        self.bitmap().wrapping_sub(2 * (first / WORD_BITS))
    }
}

/// The split bits' lane of the interleaved bitmaps.
pub(crate) const SPLIT: usize = 0;
/// The free bits' lane of the interleaved bitmaps.
pub(crate) const FREE: usize = 1;

/// The word holding bit `i` of `lane`: the two bitmaps are interleaved a
/// word at a time (split word, free word, split word, ...), so the free bit
/// of a granule and the split bits of the small nodes around it share a
/// cache line.
#[inline(always)]
fn word(lane: usize, i: usize) -> usize {
    2 * (i / WORD_BITS) + lane
}

/// Reads bit `i` of `lane` of the bitmaps whose biased pointer is `words`.
///
/// # Safety
///
/// `words` is the biased bitmap pointer of a live zone (BUDDY-Z1) and `i` the
/// absolute number of a granule of its tree, `lo / MIN <= i < hi / MIN`:
/// then `word(lane, i)` is inside the bitmaps.
#[inline(always)]
pub(crate) unsafe fn test(words: *mut usize, lane: usize, i: usize) -> bool {
    // SAFETY: the word is inside the bitmaps (caller contract).
    unsafe { *words.wrapping_add(word(lane, i)) & (1 << (i % WORD_BITS)) != 0 }
}

/// Sets bit `i` of `lane` of the bitmaps whose biased pointer is `words`.
///
/// # Safety
///
/// As for [`test`].
#[inline(always)]
pub(crate) unsafe fn set(words: *mut usize, lane: usize, i: usize) {
    // SAFETY: the word is inside the bitmaps (caller contract).
    unsafe { *words.wrapping_add(word(lane, i)) |= 1 << (i % WORD_BITS) }
}

/// Clears bit `i` of `lane` of the bitmaps whose biased pointer is `words`.
///
/// # Safety
///
/// As for [`test`].
#[inline(always)]
pub(crate) unsafe fn clear(words: *mut usize, lane: usize, i: usize) {
    // SAFETY: the word is inside the bitmaps (caller contract).
    unsafe { *words.wrapping_add(word(lane, i)) &= !(1 << (i % WORD_BITS)) }
}
