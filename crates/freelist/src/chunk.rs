//! The chunk format: what a chunk's first and last words hold, the magic
//! number, and the raw reads and writes of them.
//!
//! ```text
//!  allocated chunk (ALLOCATED set)            free chunk (ALLOCATED clear)
//!  +------------------------------+ c         +------------------------------+ c
//!  | size | flags          (word 0)|           | size | flags          (word 0)|
//!  | magic(c, word 0, key) (word 1)|           | next free chunk or null (w 1)|
//!  +------------------------------+ c + 16    | previous free chunk or null  |
//!  | payload: size - 16 bytes     |           | ...                          |
//!  | (16-aligned, the user's)     |           | footer: size     (last word) |
//!  +------------------------------+ c + size  +------------------------------+ c + size
//! ```
//!
//! `size` is the whole chunk in bytes, a multiple of [`GRANULE`], so its low
//! four bits are free for [`Flags`]. The footer of a free chunk lets the chunk
//! after it (whose `PREV_FREE` flag is then set) find its start in O(1): the
//! boundary-tag trick of Knuth and dlmalloc. An allocated chunk has no footer,
//! so its whole payload is the user's.

use core::ptr::NonNull;

use bitflags::bitflags;
use static_assertions::const_assert;

/// Every chunk starts and ends on a multiple of this many bytes (relative to
/// a 16-aligned region start), so payloads are 16-aligned like `malloc`'s.
pub const GRANULE: usize = 16;

/// Bytes of header in front of every payload: the size/flags word and the
/// magic word, padded to [`GRANULE`].
pub const HEADER: usize = 16;

/// The smallest chunk: a free chunk must hold its size word, two links and a
/// footer (four words), and an allocated one a header and a granule of payload.
pub const MIN_CHUNK: usize = 32;

/// Size of a fencepost chunk, the allocated sentinel at each region's end.
pub const FENCE: usize = HEADER;

const WORD: usize = core::mem::size_of::<usize>();

/// The two words every chunk starts with, as a type, so their size and
/// alignment are pinned at compile time.
#[repr(C, align(16))]
pub struct Header {
    /// Chunk size in bytes with [`Flags`] in the low bits.
    pub size_and_flags: usize,
    /// The magic number (allocated chunk) or the next free chunk (free chunk).
    pub magic_or_next: usize,
}

const_assert!(core::mem::size_of::<Header>() == HEADER);
const_assert!(core::mem::align_of::<Header>() == GRANULE);
const_assert!(MIN_CHUNK >= 4 * WORD && MIN_CHUNK % GRANULE == 0);
const_assert!(HEADER >= 2 * WORD);
const_assert!(GRANULE == freespace_core::REGION_ALIGN);

bitflags! {
    /// The flags in the low bits of a chunk's size word.
    ///
    /// ```
    /// use freespace_freelist::Flags;
    /// let f = Flags::ALLOCATED | Flags::PREV_FREE;
    /// assert_eq!(f.bits(), 3);
    /// ```
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Flags: usize {
        /// The chunk is handed out (or is a fencepost); its word 1 is a magic number.
        const ALLOCATED = 1;
        /// The chunk just before this one is free; its last word (just before
        /// this header) is its size.
        const PREV_FREE = 2;
        /// The chunk is a region's own bookkeeping: the region header at its
        /// start or the fencepost at its end. Always also `ALLOCATED`, so
        /// coalescing stops there.
        const FENCE = 4;
    }
}

/// Mask of the flag bits in the size word.
pub const FLAG_MASK: usize = GRANULE - 1;

/// The magic number of an allocated chunk at `addr` whose size word is
/// `word0`, in the heap keyed `key`: `word0` XOR a keyed mix of the
/// address (the chunk's *tag*).
///
/// For a fixed address and key it is a bijection of `word0`: any change to
/// the size or flags gives a different magic. For a fixed `word0` and key
/// it is a bijection of the address, so a header copied to another address
/// fails, and for a fixed address and `word0` a bijection of the key, so a
/// header of another heap fails. A stray write that changes word 0 or
/// word 1 is caught unless it writes exactly the magic of the new word 0.
///
/// The XOR is what lets a flag change without a new mix:
/// [`Chunk::set_prev_free_allocated`] flips the same bit in both words, so
/// the header stays valid if it was and stays damaged if it was damaged.
///
/// The heap's `key` is a secret (`freespace_core::secret`), so this
/// function being public does not let anyone compute a valid magic: with a
/// uniformly random key every magic value is equally likely and a guess is
/// right with probability 2^-[`usize::BITS`].
///
/// ```
/// use freespace_freelist::chunk::magic;
/// assert_ne!(magic(0x1000, 0x41, 7), magic(0x1010, 0x41, 7));
/// assert_ne!(magic(0x1000, 0x41, 7), magic(0x1000, 0x43, 7));
/// assert_ne!(magic(0x1000, 0x41, 7), magic(0x1000, 0x41, 8));
/// ```
#[inline]
pub const fn magic(addr: usize, word0: usize, key: usize) -> usize {
    word0 ^ tag(addr, key)
}

/// The keyed mix of a chunk's address that [`magic`] XORs its size word
/// with: a bijection of `addr ^ key` (an xor, an odd multiplier, an
/// xor-shift), so distinct addresses in one heap never share a tag.
///
/// Both constants fit in 31 bits (the low halves of the SplitMix64
/// constants), immediate operands on x86-64, so a tag loads none: the
/// secret is the key, and any odd multiplier keeps the mix a bijection.
#[inline]
const fn tag(addr: usize, key: usize) -> usize {
    const SEED: usize = 0x7F4A_7C15;
    const ODD: usize = 0x1CE4_E5B9;
    let x = (addr ^ key ^ SEED).wrapping_mul(ODD);
    x ^ (x >> (usize::BITS / 2 - 3))
}

/// What word 1 of a header becomes when the chunk is merged into a neighbour:
/// never the magic of any live header at `addr`, so a stale pointer cannot
/// pass the magic check, and recognisable by the corruption classifier as
/// "a chunk started here once" (a double free after coalescing or reuse).
///
/// ```
/// use freespace_freelist::chunk::{dead_mark, magic};
/// assert_ne!(dead_mark(0x1000, 5), magic(0x1000, 0x21, 5));
/// ```
#[inline]
pub const fn dead_mark(addr: usize, key: usize) -> usize {
    !magic(addr, 0, key)
}

/// A chunk, named by the address of its first header byte.
///
/// A `Chunk` is only a name: the functions that read or write through it are
/// `unsafe` and say what must hold. Its pointer carries the provenance of the
/// region it lies in.
///
/// ```
/// use core::ptr::NonNull;
/// use freespace_freelist::Chunk;
/// let mut words = [0u128; 2];
/// let c = Chunk::new(NonNull::from(&mut words).cast());
/// assert_eq!(c.addr() % 16, 0);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunk(NonNull<u8>);

impl Chunk {
    /// Names the chunk starting at `ptr`.
    #[inline]
    pub const fn new(ptr: NonNull<u8>) -> Self {
        Self(ptr)
    }

    /// The chunk's start.
    #[inline]
    pub const fn ptr(self) -> NonNull<u8> {
        self.0
    }

    /// The chunk's address.
    #[inline]
    pub fn addr(self) -> usize {
        self.0.as_ptr().addr()
    }

    /// The chunk `bytes` after this one's start.
    ///
    /// # Safety
    ///
    /// The result lies within (or one past) the region this chunk is in.
    #[inline]
    pub unsafe fn forward(self, bytes: usize) -> Chunk {
        // SAFETY: in bounds of the same region (caller contract).
        Chunk(unsafe { self.0.add(bytes) })
    }

    /// The chunk `bytes` before this one's start.
    ///
    /// # Safety
    ///
    /// The result lies within the region this chunk is in.
    #[inline]
    pub unsafe fn back(self, bytes: usize) -> Chunk {
        // SAFETY: in bounds of the same region (caller contract).
        Chunk(unsafe { self.0.sub(bytes) })
    }

    /// The payload: [`HEADER`] bytes after the start.
    ///
    /// # Safety
    ///
    /// The chunk is at least [`HEADER`] bytes long inside its region.
    #[inline]
    pub unsafe fn payload(self) -> NonNull<u8> {
        // SAFETY: the chunk holds at least a header (caller contract).
        unsafe { self.0.add(HEADER) }
    }

    /// The word `index` words after the start.
    ///
    /// # Safety
    ///
    /// The chunk is readable for `(index + 1) * WORD` bytes.
    #[inline]
    unsafe fn word(self, index: usize) -> *mut usize {
        // SAFETY: in bounds (caller contract).
        unsafe { self.0.as_ptr().add(index * WORD).cast::<usize>() }
    }

    /// Word 0: size and flags.
    ///
    /// # Safety
    ///
    /// The chunk's first word is readable heap memory.
    #[inline]
    pub unsafe fn word0(self) -> usize {
        // SAFETY: readable and word-aligned (chunks are 16-aligned).
        unsafe { self.word(0).read() }
    }

    /// Word 1 read as an integer: the magic of an allocated chunk.
    ///
    /// # Safety
    ///
    /// The chunk's first two words are readable heap memory.
    #[inline]
    pub unsafe fn word1(self) -> usize {
        // SAFETY: readable and aligned (caller contract).
        unsafe { self.word(1).read() }
    }

    /// The size in bytes (word 0 without the flags).
    ///
    /// # Safety
    ///
    /// As [`word0`](Self::word0).
    #[inline]
    pub unsafe fn size(self) -> usize {
        // SAFETY: caller contract.
        unsafe { self.word0() & !FLAG_MASK }
    }

    /// The flags in word 0 (unknown bits dropped).
    ///
    /// # Safety
    ///
    /// As [`word0`](Self::word0).
    #[inline]
    pub unsafe fn flags(self) -> Flags {
        // SAFETY: caller contract.
        Flags::from_bits_truncate(unsafe { self.word0() } & FLAG_MASK)
    }

    /// Whether word 1 is the magic for word 0 at this address in heap `key`.
    ///
    /// # Safety
    ///
    /// As [`word1`](Self::word1).
    #[inline]
    pub unsafe fn magic_ok(self, key: usize) -> bool {
        // SAFETY: caller contract.
        unsafe { self.word1() == magic(self.addr(), self.word0(), key) }
    }

    /// Writes an allocated header: word 0 = `size | flags`, word 1 its magic.
    ///
    /// # Safety
    ///
    /// The chunk's first [`HEADER`] bytes are writable heap memory that no
    /// user holds; `size` is a multiple of [`GRANULE`]; `flags` contains
    /// `ALLOCATED`.
    #[inline]
    pub unsafe fn write_allocated(self, size: usize, flags: Flags, key: usize) {
        let word0 = size | flags.bits();
        // SAFETY: writable header (caller contract).
        unsafe {
            self.word(0).write(word0);
            self.word(1).write(magic(self.addr(), word0, key));
        }
    }

    /// Sets or clears `PREV_FREE` on an allocated (or fencepost) chunk,
    /// keeping its magic right without a new mix: the magic is word 0 XOR
    /// the chunk's tag ([`magic`]), so the bit that changes in word 0 is
    /// flipped in word 1 too. A header that was valid stays valid; one that
    /// was damaged stays damaged (it is not re-sealed over the damage).
    ///
    /// # Safety
    ///
    /// The chunk's header is heap memory that no user holds.
    #[inline]
    pub unsafe fn set_prev_free_allocated(self, prev_free: bool) {
        // SAFETY: caller contract.
        unsafe {
            let word0 = self.word0();
            let want = if prev_free {
                Flags::PREV_FREE.bits()
            } else {
                0
            };
            let flip = (word0 ^ want) & Flags::PREV_FREE.bits();
            self.word(0).write(word0 ^ flip);
            self.word(1).write(self.word1() ^ flip);
        }
    }

    /// Writes a free chunk's size word (`size | flags`, `ALLOCATED` clear) and
    /// its footer. The links are written by the free set.
    ///
    /// # Safety
    ///
    /// The `size` bytes at the chunk are writable heap memory no user holds;
    /// `size >= MIN_CHUNK` is a multiple of [`GRANULE`].
    #[inline]
    pub unsafe fn write_free(self, size: usize, flags: Flags) {
        debug_assert!(!flags.contains(Flags::ALLOCATED));
        // SAFETY: the whole chunk is writable (caller contract).
        unsafe {
            self.word(0).write(size | flags.bits());
            self.0.as_ptr().add(size - WORD).cast::<usize>().write(size);
        }
    }

    /// The footer of the chunk just before this one: its size, if it is free.
    ///
    /// # Safety
    ///
    /// The word before this chunk is readable heap memory.
    #[inline]
    pub unsafe fn footer_before(self) -> usize {
        // SAFETY: caller contract.
        unsafe { self.0.as_ptr().sub(WORD).cast::<usize>().read() }
    }

    /// Overwrites the header of a chunk that has just been merged into a
    /// neighbour: word 0 becomes 0 (no valid size) and word 1 the
    /// [`dead_mark`], so a stale pointer to it fails the magic check.
    ///
    /// # Safety
    ///
    /// The header is writable heap memory no user holds.
    #[inline]
    pub unsafe fn bury(self, key: usize) {
        // SAFETY: caller contract.
        unsafe {
            self.word(0).write(0);
            self.word(1).write(dead_mark(self.addr(), key));
        }
    }

    /// Whether word 1 holds the [`dead_mark`] for this address.
    ///
    /// # Safety
    ///
    /// As [`word1`](Self::word1).
    #[inline]
    pub unsafe fn is_buried(self, key: usize) -> bool {
        // SAFETY: caller contract.
        unsafe { self.word1() == dead_mark(self.addr(), key) }
    }

    /// Link `index` (1 = next, 2 = previous) of a free chunk.
    ///
    /// # Safety
    ///
    /// The chunk is a free chunk (three words readable).
    #[inline]
    pub(crate) unsafe fn link(self, index: usize) -> Option<Chunk> {
        // SAFETY: caller contract; links are stored as pointers so they keep
        // their provenance.
        let p = unsafe { self.0.as_ptr().add(index * WORD).cast::<*mut u8>().read() };
        NonNull::new(p).map(Chunk)
    }

    /// Sets link `index` (1 = next, 2 = previous) of a free chunk.
    ///
    /// # Safety
    ///
    /// The chunk is a free chunk no user holds.
    #[inline]
    pub(crate) unsafe fn set_link(self, index: usize, to: Option<Chunk>) {
        let p = to.map_or(core::ptr::null_mut(), |c| c.0.as_ptr());
        // SAFETY: caller contract.
        unsafe { self.0.as_ptr().add(index * WORD).cast::<*mut u8>().write(p) }
    }

    /// Word `index` of a free chunk read as a raw pointer (tag bits
    /// included): the tree's child links.
    ///
    /// # Safety
    ///
    /// The chunk is a free chunk at least `(index + 1) * WORD` bytes long.
    #[inline]
    pub(crate) unsafe fn raw_link(self, index: usize) -> *mut u8 {
        // SAFETY: caller contract; read as a pointer to keep provenance.
        unsafe { self.0.as_ptr().add(index * WORD).cast::<*mut u8>().read() }
    }

    /// Sets word `index` of a free chunk to a raw (possibly tagged) pointer.
    ///
    /// # Safety
    ///
    /// The chunk is a free chunk no user holds, at least `(index + 1) * WORD`
    /// bytes long.
    #[inline]
    pub(crate) unsafe fn set_raw_link(self, index: usize, to: *mut u8) {
        // SAFETY: caller contract.
        unsafe {
            self.0
                .as_ptr()
                .add(index * WORD)
                .cast::<*mut u8>()
                .write(to)
        }
    }

    /// Word `index` of a free chunk read as an integer.
    ///
    /// # Safety
    ///
    /// As [`raw_link`](Self::raw_link).
    #[inline]
    pub(crate) unsafe fn field(self, index: usize) -> usize {
        // SAFETY: caller contract.
        unsafe { self.word(index).read() }
    }

    /// Sets word `index` of a free chunk to an integer.
    ///
    /// # Safety
    ///
    /// As [`set_raw_link`](Self::set_raw_link).
    #[inline]
    pub(crate) unsafe fn set_field(self, index: usize, value: usize) {
        // SAFETY: caller contract.
        unsafe { self.word(index).write(value) }
    }

    /// Word-sized field `index` of a region header chunk, read as a pointer.
    ///
    /// # Safety
    ///
    /// The chunk is a region header ([`REGION_HEADER`] bytes).
    #[inline]
    pub unsafe fn pointer_field(self, index: usize) -> Option<NonNull<u8>> {
        // SAFETY: caller contract.
        let p = unsafe { self.0.as_ptr().add(index * WORD).cast::<*mut u8>().read() };
        NonNull::new(p)
    }

    /// Sets word-sized field `index` of a region header chunk to a pointer.
    ///
    /// # Safety
    ///
    /// The chunk is a region header no user holds.
    #[inline]
    pub unsafe fn set_pointer_field(self, index: usize, to: Option<NonNull<u8>>) {
        let p = to.map_or(core::ptr::null_mut(), |p| p.as_ptr());
        // SAFETY: caller contract.
        unsafe { self.0.as_ptr().add(index * WORD).cast::<*mut u8>().write(p) }
    }
}

/// Size of a region header: the allocated fencepost chunk at a region's
/// start, holding (after its two header words) the next region and the
/// address of the region's end fencepost, and from byte 32 on the
/// region's node in its heap's address tree of regions (three words: the
/// node's size word, unused, and its two links), by which a free finds
/// the region of a pointer in O(log regions).
pub const REGION_HEADER: usize = 64;
const_assert!(REGION_HEADER >= 32 + 3 * WORD);

/// The chunk size that serves a request of `size` bytes at alignment ≤
/// [`GRANULE`]: header plus payload rounded up to [`GRANULE`], at least
/// [`MIN_CHUNK`]. `None` on overflow.
///
/// ```
/// use freespace_freelist::chunk::chunk_size_for;
/// assert_eq!(chunk_size_for(1), Some(32));
/// assert_eq!(chunk_size_for(16), Some(32));
/// assert_eq!(chunk_size_for(17), Some(48));
/// assert_eq!(chunk_size_for(usize::MAX - 8), None);
/// ```
#[inline]
pub const fn chunk_size_for(size: usize) -> Option<usize> {
    match size.checked_add(HEADER) {
        Some(s) if s <= isize::MAX as usize => {
            freespace_core::layout::round_request(s, GRANULE, MIN_CHUNK)
        }
        _ => None,
    }
}

/// Whether a chunk of `chunk` bytes (a multiple of [`GRANULE`], at least
/// [`MIN_CHUNK`]) is one that a request of `size` bytes (`0 < size <=
/// isize::MAX`, as every `Layout`'s size is) can have been given: at least
/// [`chunk_size_for`]`(size)` and at most one granule more, the remainder
/// too small to split off. What a free checks its layout against.
///
/// It is that test in one subtraction and one comparison: the payload
/// `chunk - HEADER` is a multiple of [`GRANULE`], and exactly the two
/// payloads a request may get (its size rounded up, or one granule more)
/// lie in `size .. size + 2 * GRANULE`.
///
/// ```
/// use freespace_freelist::chunk::serves;
/// assert!(serves(32, 1) && serves(48, 1) && !serves(64, 1));
/// assert!(serves(48, 17) && serves(64, 17) && !serves(32, 17));
/// assert!(!serves(64, isize::MAX as usize));
/// ```
#[inline]
pub const fn serves(chunk: usize, size: usize) -> bool {
    (chunk - HEADER).wrapping_sub(size) < 2 * GRANULE
}
