//! The 16-byte header in front of every block `malloc` returns above
//! [`BARE_MAX`] bytes (or over-aligned), and the size arithmetic that
//! places every block, bare or not. Pure logic: no memory is touched here, so the
//! module runs under Miri and builds without `std`.
//!
//! `free(p)` gets no size, so the block's shape travels with it, in the 16
//! bytes just before `p`:
//!
//! ```text
//!  base = what the stack returned, aligned to `align` (>= 16)
//!  │                          p = base + offset   (offset = align)
//!  ▼                          ▼
//!  [ padding … | len | tag ][ user bytes …………………………… | excess ]
//!               └─ Header ─┘
//!  |<─────────────────── len (the stack's block) ───────────────────>|
//! ```
//!
//! - `len` is the length the stack returned for the block (so
//!   `malloc_usable_size(p) = len - offset` is the real room, and the
//!   block is freed with a layout of exactly that size, which the allocator
//!   contract accepts);
//! - `tag` holds, in its low byte, `log2(align)` (bits 0–5) and the
//!   *direct* route bit (bit 7: the block came straight from the shared
//!   heap, not through the thread caches); its other 56 bits are a seal: a
//!   keyed hash of the user address, `len` and the low byte.
//!
//! A freed block gets a different tag (a keyed hash of the address alone,
//! low byte 0, which no live tag has), so a second `free` of it is told
//! apart from a pointer that was never ours (whose 16 bytes match neither).
//! The key is secret per process, so user data that happens to sit before
//! a pointer cannot forge a tag by accident.
//!
//! A fast `free` (into the thread's loaded magazine) also puts a *reuse
//! stamp* in the freed header's `len` word and the freed tag again in the
//! block's first 8 user bytes, a canary: when the same thread's fast path
//! hands the block out again with the stamp still current, a changed
//! canary means a write through a dangling pointer (the shim's
//! `reused`, docs/malloc.md "Stale pointers").
//!
//! glibc pays 8 bytes per chunk (`size`; `prev_size` lies in the previous
//! chunk's user bytes while it is in use).
//!
//! **Small blocks have no header.** A request of up to [`BARE_MAX`] bytes
//! aligned to at most 16 is a *bare* block: an object of the slab's class,
//! its user pointer the object's start. `free` learns its size from the
//! slab's header (`freespace_slab::ObjectMap`, which names the class of a
//! live object from its address alone), and a freed bare block carries the
//! freed tag in its second word (bytes 8–16, which the slab's own free
//! list never writes), so a second `free` of it is still told apart. For
//! the small blocks that make up most of a C program's heap this saves the
//! 16 bytes a header costs and the class step they push a block into
//! (docs/malloc.md, "free() without a size: the slab's header, or the
//! block's own").

use freespace_core::alloc::Layout;

/// Bytes of header before every user pointer.
///
/// ```
/// assert_eq!(freespace_malloc::header::HEADER, 16);
/// ```
pub const HEADER: usize = 16;

/// The largest request served as a *bare* block, without a header: the
/// largest class of the shared heap's slab
/// ([`GENERAL_CLASSES`](freespace::stacks::GENERAL_CLASSES)), so that every
/// such block is a slab object.
///
/// ```
/// assert_eq!(freespace_malloc::header::BARE_MAX, 512);
/// ```
pub const BARE_MAX: usize = {
    let classes = freespace::stacks::GENERAL_CLASSES;
    classes[classes.len() - 1]
};

/// Alignment of every pointer the shim returns: 16, what glibc gives on
/// 64-bit targets (`alignof(max_align_t)`).
///
/// ```
/// assert_eq!(freespace_malloc::header::MIN_ALIGN, 16);
/// ```
pub const MIN_ALIGN: usize = 16;

/// Low-byte bit of a tag: the block came straight from the shared heap.
const DIRECT: usize = 0x80;
/// Low-byte bit of a tag: the block came from the small heap (a block of
/// a cold class, `crate::small`); set with [`DIRECT`].
const SMALL: usize = 0x40;
/// Low-byte bits of a tag holding `log2(align)`.
const SHIFT_MASK: usize = 0x3f;

/// How a request is served: the layout asked of the stack, and where the
/// user pointer sits in the block (`offset` bytes after its start).
///
/// # Invariants
/// - MALLOC-P1: `offset` is the layout's alignment, a power of two of at least
///   [`MIN_ALIGN`] (so at least [`HEADER`]); or 0 for a *bare* plan (no
///   header), whose alignment is [`MIN_ALIGN`] and size at most
///   [`BARE_MAX`].
/// - MALLOC-P2: `layout.size() == offset + max(size, 1)` for the request's
///   `size`. At least one byte after the user pointer, so that the user
///   pointer of an over-aligned block inside a slab object is never
///   another object's start (the next object begins after it), which
///   `free` relies on to tell bare blocks apart.
///
/// ```
/// use freespace_malloc::header::Plan;
/// let plan = Plan::new(100, 8).unwrap(); // small: bare
/// assert_eq!((plan.offset, plan.layout.size(), plan.layout.align()), (0, 100, 16));
/// let plan = Plan::new(1000, 8).unwrap();
/// assert_eq!((plan.offset, plan.layout.size(), plan.layout.align()), (16, 1016, 16));
/// let plan = Plan::new(100, 4096).unwrap();
/// assert_eq!((plan.offset, plan.layout.size()), (4096, 4196));
/// assert!(Plan::new(usize::MAX - 8, 16).is_none(), "overflow is refused");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// What to ask the stack for.
    pub layout: Layout,
    /// Bytes from the block's start to the user pointer (0: bare).
    pub offset: usize,
}

impl Plan {
    /// The plan for `size` user bytes aligned to `align` (a power of two;
    /// anything below [`MIN_ALIGN`] counts as [`MIN_ALIGN`]): bare when
    /// `size <= BARE_MAX` and `align <= MIN_ALIGN`. `None` when `align` is
    /// not a power of two or the total overflows a `Layout`.
    ///
    /// ```
    /// use freespace_malloc::header::Plan;
    /// assert_eq!(Plan::new(0, 1).map(|p| p.layout.size()), Some(1), "malloc(0) still gets a block");
    /// assert_eq!(Plan::new(600, 1).map(|p| p.layout.size()), Some(616));
    /// assert_eq!(Plan::new(0, 32).map(|p| p.layout.size()), Some(33));
    /// assert!(Plan::new(10, 24).is_none());
    /// ```
    #[inline(always)]
    pub fn new(size: usize, align: usize) -> Option<Plan> {
        if !align.is_power_of_two() {
            return None;
        }
        if align <= MIN_ALIGN && size <= BARE_MAX {
            // SAFETY: `1 <= size.max(1) <= BARE_MAX`, far from overflowing
            // when rounded to 16, a power of two.
            let layout = unsafe { Layout::from_size_align_unchecked(size.max(1), MIN_ALIGN) };
            return Some(Plan { layout, offset: 0 });
        }
        Self::headed(size, align)
    }

    /// The plan with a header for `size` user bytes aligned to `align`,
    /// even where [`new`](Self::new) would make a bare one.
    ///
    /// ```
    /// use freespace_malloc::header::Plan;
    /// let plan = Plan::headed(24, 8).unwrap();
    /// assert_eq!((plan.offset, plan.layout.size()), (16, 40));
    /// ```
    #[inline]
    pub fn headed(size: usize, align: usize) -> Option<Plan> {
        if !align.is_power_of_two() {
            return None;
        }
        let align = align.max(MIN_ALIGN);
        let total = size.max(1).checked_add(align)?;
        let layout = Layout::from_size_align(total, align).ok()?;
        Some(Plan {
            layout,
            offset: align,
        })
    }

    /// Whether the block has no header (MALLOC-P1).
    ///
    /// ```
    /// use freespace_malloc::header::Plan;
    /// assert!(Plan::new(24, 16).unwrap().is_bare());
    /// assert!(!Plan::new(24, 32).unwrap().is_bare());
    /// ```
    #[inline(always)]
    pub const fn is_bare(&self) -> bool {
        self.offset == 0
    }

    /// Checks MALLOC-P1 and MALLOC-P2 against the request's `size`.
    ///
    /// ```
    /// let plan = freespace_malloc::header::Plan::new(5, 64).unwrap();
    /// assert!(plan.check(5).is_ok());
    /// assert!(plan.check(6).is_err());
    /// ```
    pub fn check(&self, size: usize) -> Result<(), freespace_core::Violation> {
        if self.is_bare() {
            let shaped = self.layout.align() == MIN_ALIGN
                && self.layout.size() == size.max(1)
                && size <= BARE_MAX;
            return if shaped {
                Ok(())
            } else {
                Err(freespace_core::Violation::new(
                    "MALLOC-P2",
                    self.layout.size(),
                    "bare plan of the wrong shape",
                ))
            };
        }
        if self.offset != self.layout.align() || self.offset < MIN_ALIGN {
            return Err(freespace_core::Violation::new(
                "MALLOC-P1",
                self.offset,
                "offset is not the alignment",
            ));
        }
        if self.offset.checked_add(size.max(1)) != Some(self.layout.size()) {
            return Err(freespace_core::Violation::new(
                "MALLOC-P2",
                self.layout.size(),
                "layout size is not offset + max(size, 1)",
            ));
        }
        Ok(())
    }
}

/// The two words before a user pointer.
///
/// # Invariants
/// - MALLOC-H1: for a live block at user address `p`, `tag == Header::live_tag(key,
///   p, len, shift, direct)` (or, for a block of the small heap, the tag
///   [`Header::live_small`] writes), `shift` is at least `log2(MIN_ALIGN)` and
///   `len >= 1 << shift` (and `len` and `1 << shift` make a valid
///   `Layout`); the block starts at `p - (1 << shift)` and is `len` bytes
///   long, aligned to `1 << shift`, and came from where the tag says: the
///   thread caches, the shared heap (`direct`) or the small heap.
/// - MALLOC-H2: for a block freed at `p`, `tag == Header::freed_tag(key, p)`
///   (until the stack reuses the memory).
///
/// ```
/// use freespace_malloc::header::{Block, Header};
/// let key = 0x1234_5678_9abc_def0;
/// let h = Header::live(key, 0x1000, 64, 4, false);
/// assert_eq!(h.decode(key, 0x1000), Ok(Block { len: 64, shift: 4, direct: false, small: false, bare: false }));
/// let f = Header::freed(key, 0x1000);
/// assert_eq!(f.decode(key, 0x1000), Err(freespace_malloc::header::Bad::Freed));
/// ```
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The length of the stack's block (from its start, not from the user
    /// pointer).
    pub len: usize,
    /// Route and alignment in the low byte, a keyed seal above it.
    pub tag: usize,
}

const _: () = assert!(core::mem::size_of::<Header>() <= HEADER);
const _: () = assert!(MIN_ALIGN >= HEADER && MIN_ALIGN.is_power_of_two());

/// What a live header (or, for a bare block, its slab) says about a block.
///
/// ```
/// use freespace_malloc::header::{Block, Header};
/// let b = Header::live(9, 0x3000, 64, 4, false).decode(9, 0x3000).unwrap();
/// assert_eq!(b, Block { len: 64, shift: 4, direct: false, small: false, bare: false });
/// assert_eq!(b.usable(), 48);
/// let bare = Block { len: 64, shift: 4, direct: false, small: false, bare: true };
/// assert_eq!(bare.usable(), 64);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Block {
    /// The stack block's length.
    pub len: usize,
    /// `log2` of its alignment, which is also the user pointer's offset.
    pub shift: u32,
    /// Allocated straight from the shared heap (a re-entrant call), so it
    /// goes back there, not into a thread cache.
    pub direct: bool,
    /// From the small heap (a block of a cold class), so it goes back
    /// there; always with `direct`.
    pub small: bool,
    /// No header: a slab object whose start is the user pointer, its
    /// length the class size (MALLOC-P1's bare plan).
    pub bare: bool,
}

impl Block {
    /// The block's alignment, and the user pointer's offset in it.
    ///
    /// ```
    /// let b = freespace_malloc::header::Block { len: 4096 * 2, shift: 12, direct: false, small: false, bare: false };
    /// assert_eq!((b.align(), b.usable()), (4096, 4096));
    /// ```
    #[inline(always)]
    pub const fn align(&self) -> usize {
        1 << self.shift
    }

    /// Bytes from the block's start to the user pointer: the alignment,
    /// or 0 for a bare block.
    ///
    /// ```
    /// let b = freespace_malloc::header::Block { len: 32, shift: 4, direct: false, small: false, bare: true };
    /// assert_eq!(b.offset(), 0);
    /// ```
    #[inline(always)]
    pub const fn offset(&self) -> usize {
        if self.bare {
            0
        } else {
            self.align()
        }
    }

    /// Bytes the user may use: from the user pointer to the block's end.
    #[inline(always)]
    pub const fn usable(&self) -> usize {
        self.len - self.offset()
    }

    /// The layout the block is freed with (its full length; the allocator
    /// contract accepts any size up to what `allocate` returned).
    ///
    /// ```
    /// let b = freespace_malloc::header::Block { len: 48, shift: 4, direct: false, small: false, bare: false };
    /// assert_eq!(b.layout().map(|l| (l.size(), l.align())), Some((48, 16)));
    /// ```
    #[inline(always)]
    pub fn layout(&self) -> Option<Layout> {
        Layout::from_size_align(self.len, self.align()).ok()
    }
}

/// Why a header does not describe a live block.
///
/// ```
/// use freespace_malloc::header::{Bad, Header};
/// let zeros = Header { len: 0, tag: 0 };
/// assert_eq!(zeros.decode(1, 0x1000), Err(Bad::Unknown));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bad {
    /// It carries the freed tag for this address: a double free.
    Freed,
    /// It matches nothing: a pointer that is not ours, or a header
    /// overwritten by a stray write.
    Unknown,
}

impl Header {
    /// The header of a live block at user address `addr`: `len` bytes
    /// from the stack, aligned to `1 << shift`.
    ///
    /// ```
    /// use freespace_malloc::header::Header;
    /// let h = Header::live(42, 0x2000, 48, 4, false);
    /// assert_eq!((h.len, h.tag & 0xff), (48, 4));
    /// ```
    #[inline(always)]
    pub fn live(key: u64, addr: usize, len: usize, shift: u32, direct: bool) -> Header {
        Header {
            len,
            tag: Self::live_tag(key, addr, len, shift, direct),
        }
    }

    /// The header written over a block at `addr` when it is freed.
    ///
    /// ```
    /// use freespace_malloc::header::{Bad, Header};
    /// assert_eq!(Header::freed(42, 0x2000).decode(42, 0x2000), Err(Bad::Freed));
    /// ```
    #[inline(always)]
    pub fn freed(key: u64, addr: usize) -> Header {
        Header {
            len: 0,
            tag: Self::freed_tag(key, addr),
        }
    }

    /// The header a fast `free` writes: the freed tag `tag` (from
    /// [`freed_tag`](Self::freed_tag)) and, in place of `len`, a reuse
    /// `stamp` (0 for none), which the shim compares when the block is
    /// reused to decide whether the canary after it must be intact (its
    /// write-after-free check). The tag alone says "freed" (MALLOC-H2).
    ///
    /// ```
    /// use freespace_malloc::header::{Bad, Header};
    /// let h = Header::freed_stamped(Header::freed_tag(42, 0x2000), 1 << 40);
    /// assert_eq!(h.decode(42, 0x2000), Err(Bad::Freed));
    /// ```
    #[inline(always)]
    pub fn freed_stamped(tag: usize, stamp: usize) -> Header {
        Header { len: stamp, tag }
    }

    /// The tag of a live block (MALLOC-H1).
    ///
    /// ```
    /// use freespace_malloc::header::Header;
    /// let (a, b) = (Header::live_tag(7, 0x40, 32, 4, false), Header::live_tag(7, 0x50, 32, 4, false));
    /// assert_ne!(a, b, "the address is sealed in");
    /// assert_eq!(a & 0xff, 4);
    /// ```
    #[inline(always)]
    pub fn live_tag(key: u64, addr: usize, len: usize, shift: u32, direct: bool) -> usize {
        Self::sealed(
            key,
            addr,
            len,
            (shift as usize & SHIFT_MASK) | if direct { DIRECT } else { 0 },
        )
    }

    /// The header of a live block at user address `addr` from the small
    /// heap (a block of a cold class): `len` bytes aligned to `1 << shift`.
    ///
    /// ```
    /// use freespace_malloc::header::Header;
    /// let b = Header::live_small(42, 0x2000, 48, 4).decode(42, 0x2000).unwrap();
    /// assert!(b.small && b.direct && !b.bare);
    /// ```
    #[inline(always)]
    pub fn live_small(key: u64, addr: usize, len: usize, shift: u32) -> Header {
        Header {
            len,
            tag: Self::sealed(
                key,
                addr,
                len,
                (shift as usize & SHIFT_MASK) | DIRECT | SMALL,
            ),
        }
    }

    /// A live tag: the seal of `addr`, `len` and the low byte `low`, and
    /// `low`.
    #[inline(always)]
    fn sealed(key: u64, addr: usize, len: usize, low: usize) -> usize {
        let seal = mix(key ^ addr as u64 ^ (len as u64).rotate_left(29) ^ (low as u64) << 56);
        (seal as usize & !0xff) | low
    }

    /// The tag of a freed block (MALLOC-H2): depends on the address only, so it
    /// survives the stack writing a free-list link over `len`; low byte 0,
    /// which no live tag has.
    ///
    /// ```
    /// use freespace_malloc::header::Header;
    /// assert_eq!(Header::freed_tag(7, 0x40) & 0xff, 0);
    /// ```
    #[inline(always)]
    pub fn freed_tag(key: u64, addr: usize) -> usize {
        mix(!key ^ addr as u64).rotate_left(17) as usize & !0xff
    }

    /// Reads the block's shape out of a header found before user address
    /// `addr`, checking its seal (MALLOC-H1); [`Bad::Freed`] for a freed tag (MALLOC-H2).
    ///
    /// ```
    /// use freespace_malloc::header::{Bad, Header};
    /// let h = Header::live(42, 0x2000, 48, 4, true);
    /// assert!(h.decode(42, 0x2000).unwrap().direct);
    /// let stray = Header { len: 48, tag: 0x1234_5604 }; // plausible low byte, wrong seal
    /// assert_eq!(stray.decode(42, 0x2000), Err(Bad::Unknown));
    /// ```
    #[inline(always)]
    pub fn decode(&self, key: u64, addr: usize) -> Result<Block, Bad> {
        let low = self.tag & 0xff;
        let shift = (low & SHIFT_MASK) as u32;
        let direct = low & DIRECT != 0;
        let small = low & SMALL != 0;
        // The live case first (one hash). A tag equal to a live tag has
        // the low byte it was sealed with, which has `SMALL` only with
        // `DIRECT`; a freed tag has low byte 0, which fails the shape
        // check, so it never passes for live.
        if shape_ok(self.len, shift)
            && (direct || !small)
            && self.tag == Self::sealed(key, addr, self.len, low)
        {
            return Ok(Block {
                len: self.len,
                shift,
                direct,
                small,
                bare: false,
            });
        }
        if self.tag == Self::freed_tag(key, addr) {
            Err(Bad::Freed)
        } else {
            Err(Bad::Unknown)
        }
    }
}

impl Header {
    /// Checks MALLOC-H1 for a header found before user address `addr`: `Ok` for a
    /// live block, the broken invariant otherwise (MALLOC-H2 for a freed one).
    ///
    /// ```
    /// use freespace_malloc::header::Header;
    /// assert!(Header::live(3, 0x40, 32, 4, false).check(3, 0x40).is_ok());
    /// assert_eq!(Header::freed(3, 0x40).check(3, 0x40).unwrap_err().invariant, "MALLOC-H2");
    /// ```
    pub fn check(&self, key: u64, addr: usize) -> Result<(), freespace_core::Violation> {
        match self.decode(key, addr) {
            Ok(_) => Ok(()),
            Err(Bad::Freed) => Err(freespace_core::Violation::new(
                "MALLOC-H2",
                addr,
                "the block was freed",
            )),
            Err(Bad::Unknown) => Err(freespace_core::Violation::new(
                "MALLOC-H1",
                addr,
                "the header is not a live block's",
            )),
        }
    }
}

/// Whether `len` bytes aligned to `1 << shift` is a shape a live header
/// can describe (MALLOC-H1): `shift` from `log2(MIN_ALIGN)` to 62, and
/// `1 << shift <= len <= isize::MAX + 1 - (1 << shift)`, so that
/// [`Block::layout`] of a decoded block always succeeds. Written as two
/// unsigned comparisons: it runs on every `free`.
#[inline(always)]
const fn shape_ok(len: usize, shift: u32) -> bool {
    const MIN_SHIFT: u32 = MIN_ALIGN.trailing_zeros();
    if shift.wrapping_sub(MIN_SHIFT) > 62 - MIN_SHIFT {
        return false;
    }
    let align = 1usize << shift;
    // `len - align` wraps to more than the bound when `len < align`; the
    // bound is at least 0 as `align <= 1 << 62`.
    len.wrapping_sub(align) <= (isize::MAX as usize + 1) - 2 * align
}

/// One multiply and a fold: multiplying by an odd constant is a bijection
/// (so any change of the input word changes the product, at its lowest
/// changed bit and, through the carries, most bits above), and the fold
/// brings the high half down. The seal guards against accidents and stray
/// writes, not against an adversary; one multiply keeps it to a few cycles
/// on every `malloc` and `free`.
#[inline(always)]
fn mix(x: u64) -> u64 {
    let x = x.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    x ^ (x >> 29)
}

/// Rounds `size` up to a multiple of `page` (a power of two), at least one
/// page: `pvalloc`'s size. `None` on overflow.
///
/// ```
/// use freespace_malloc::header::page_round;
/// assert_eq!(page_round(0, 4096), Some(4096));
/// assert_eq!(page_round(4097, 4096), Some(8192));
/// assert_eq!(page_round(usize::MAX, 4096), None);
/// ```
pub fn page_round(size: usize, page: usize) -> Option<usize> {
    freespace_core::layout::align_up(size.max(1), page)
}

/// The alignment `memalign` uses for `align`: glibc rounds an alignment
/// that is not a power of two up to the next one (and anything below
/// [`MIN_ALIGN`] to it). `None` when no such power of two exists.
///
/// ```
/// use freespace_malloc::header::memalign_align;
/// assert_eq!(memalign_align(0), Some(16));
/// assert_eq!(memalign_align(24), Some(32));
/// assert_eq!(memalign_align(4096), Some(4096));
/// assert_eq!(memalign_align(usize::MAX), None);
/// ```
pub fn memalign_align(align: usize) -> Option<usize> {
    align.max(MIN_ALIGN).checked_next_power_of_two()
}

/// Whether `align` is one `posix_memalign` accepts: a power of two and a
/// multiple of `sizeof(void *)`.
///
/// ```
/// use freespace_malloc::header::posix_align_ok;
/// assert!(posix_align_ok(8) && posix_align_ok(1 << 20));
/// assert!(!posix_align_ok(0) && !posix_align_ok(4) && !posix_align_ok(24));
/// ```
pub fn posix_align_ok(align: usize) -> bool {
    align.is_power_of_two() && align % core::mem::size_of::<usize>() == 0
}
