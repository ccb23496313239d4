//! Size classes, [`Magazine`]s and the per-thread [`Rack`] of loaded and
//! previous magazines (Bonwick and Adams 2001, §3).
//!
//! ```text
//!   thread A rack            depot (one per class, under its own lock)       thread B rack
//!  ┌────────┬──────────┐    ┌─────────────────────────────────────┐    ┌────────┬──────────┐
//!  │ loaded │ previous │ ⇄  │ full:  [■■■■] → [■■■■] → …          │ ⇄  │ loaded │ previous │
//!  │ [■■□□] │ [■■■■]   │    │ empty: [□□□□] → …                   │    │ [■□□□] │ [□□□□]   │
//!  └────────┴──────────┘    └─────────────────────────────────────┘    └────────┴──────────┘
//!         alloc pops a round from `loaded`; free pushes one
//! ```

use core::mem::MaybeUninit;
use core::ptr::NonNull;

use freespace_core::alloc::Layout;
use freespace_core::Batch;
use freespace_core::{report, size_class, Corruption};

use crate::depot::Depot;

/// Largest request (in bytes) the cache serves; larger ones go to the parent.
pub const MAX_CACHED: usize = 16 * 1024;
/// Number of size classes the cache serves (96, 21 under loom; see
/// [`class_sizes`]): the
/// classes of [`freespace_core::size_class::SERIES`] up to 512 bytes, the
/// slab's classes (16, 32, 48, 64, 80, 96, 112, 128, 160, …, 448, 512),
/// then sixteen per doubling up to [`MAX_CACHED`] (544, 576, …, 1024,
/// 1088, …, 16384).
///
/// Why finer above 512 bytes than the slab below: in the named stacks the
/// slab serves the classes up to 512 bytes, so a cached block of those is
/// the very block the slab would hand out; larger blocks come from the
/// best-fit heap, which would serve a request at its own size, and a
/// cached class rounds it up to the class for as long as it lives. With
/// the slab's four classes per doubling that rounding held a 16 B–1 KiB
/// heap's last 4 % (`cargo xtask bench`, efficiency-1k: `Threaded` 88.1 %
/// against `General`'s 90.3 %, about 340 KB of an 8 MiB arena in blocks of
/// 513 B–1 KiB rounded up); sixteen per doubling round by 3 % at most.
pub const CLASSES: usize = SLAB_CLASSES + FINE_STEPS * FINE_DOUBLINGS;
/// Classes of the series the slab serves (up to [`FINE_FROM`]).
const SLAB_CLASSES: usize = size_class::count_up_to(FINE_FROM);
/// The largest class of the series' own; above it the classes are finer.
pub const FINE_FROM: usize = 512;
/// Classes per doubling above [`FINE_FROM`] (one under loom, whose models
/// build the depot and racks on a coroutine's small stack: the same code,
/// fewer classes).
const FINE_STEPS: usize = if cfg!(loom) { 1 } else { 16 };
/// Doublings from [`FINE_FROM`] to [`MAX_CACHED`].
const FINE_DOUBLINGS: usize = (MAX_CACHED / FINE_FROM).trailing_zeros() as usize;
/// The class sizes, smallest first.
static SIZES: [usize; CLASSES] = {
    let mut sizes = [0; CLASSES];
    let mut c = 0;
    while c < CLASSES {
        sizes[c] = if c < SLAB_CLASSES {
            size_class::SERIES[c]
        } else {
            let k = c - SLAB_CLASSES;
            let from = FINE_FROM << (k / FINE_STEPS);
            from + (k % FINE_STEPS + 1) * (from / FINE_STEPS)
        };
        c += 1;
    }
    sizes
};
const _: () = assert!(CLASSES < u8::MAX as usize, "CLASS_OF holds u8");
const _: () = assert!(SIZES[CLASSES - 1] == MAX_CACHED);

/// The sizes of the [`CLASSES`] classes, smallest first (each a multiple
/// of 16).
///
/// ```
/// let sizes = freespace_sync::class_sizes();
/// assert_eq!(sizes.len(), freespace_sync::CLASSES);
/// assert_eq!(&sizes[..4], &[16, 32, 48, 64]);
/// let at = sizes.iter().position(|&s| s == 512).unwrap();
/// assert_eq!(&sizes[at..at + 3], &[512, 544, 576]);
/// assert_eq!(sizes.last(), Some(&freespace_sync::MAX_CACHED));
/// ```
pub fn class_sizes() -> &'static [usize] {
    &SIZES
}

/// Whether `size` is exactly the size of one of the classes: a block of
/// that many bytes, freed with a layout of that size, becomes a round of a
/// class whose rounds are all that large. A block of another size (one a
/// parent served at its own size) must not be given to a cache as a
/// round, since the class would hand it out for requests up to the class's
/// size.
///
/// ```
/// use freespace_sync::is_class_size;
/// assert!(is_class_size(128) && is_class_size(160) && is_class_size(544));
/// assert!(!is_class_size(144), "between the classes 128 and 160");
/// assert!(!is_class_size(0));
/// ```
pub const fn is_class_size(size: usize) -> bool {
    let mut c = 0;
    while c < CLASSES {
        if SIZES[c] == size {
            return true;
        }
        c += 1;
    }
    false
}

/// Smallest class, in bytes.
pub const MIN_CLASS: usize = size_class::SERIES[0];
/// Alignment of every cached block; requests aligned more go to the parent.
pub const CLASS_ALIGN: usize = 16;
/// Most blocks one magazine holds (2 under loom, so the models reach every
/// exchange in a few operations). How many a magazine of a class holds — its
/// *capacity* — adapts between [`initial_rounds`] and [`max_rounds`]: the
/// depot doubles it for new magazines of a class each time a thread finds
/// that class's depot lock held (Bonwick and Adams 2001, §3.6: contention
/// on the depot is the sign that magazines are too small for the load).
pub const ROUNDS: usize = if cfg!(loom) { 2 } else { 64 };
/// Bytes of blocks a new magazine holds, which sets [`initial_rounds`]: a
/// magazine of blocks of up to 128 bytes holds 32, one of 1 KiB blocks 4,
/// one of 16 KiB blocks 2, so that a thread does not sit on free blocks of
/// the larger classes while nothing contends for them: a small program
/// under the malloc shim otherwise keeps tens of free blocks of each class
/// above 512 bytes resident and unusable by any other size. Contention
/// grows the magazines back ([`MAX_GROWTH`]), as Bonwick and Adams start
/// small and grow.
pub const MAGAZINE_BYTES: usize = 4 * 1024;
/// How far contention may grow a class's magazines: to this many times
/// [`MAGAZINE_BYTES`] of blocks (and at most [`ROUNDS`]): 128 KiB, as
/// many blocks as a magazine may hold when threads meet on the depot.
pub const MAX_GROWTH: usize = 32;
/// Blocks a thread takes from the parent at once when no full magazine is
/// to be had (at most a magazine's capacity and one more), in one batch
/// (one lock for a `Locked` parent): its new blocks then lie next to each
/// other, not interleaved with another thread's on shared cache lines, and
/// a thread building up many blocks goes to the parent once per batch.
pub const REFILL: usize = if ROUNDS < 16 { ROUNDS } else { 16 };

/// The capacity of the first magazines of `class`: [`MAGAZINE_BYTES`] of
/// blocks, between 2 and half of [`ROUNDS`] (all of it under loom).
/// Classes are numbered from 0 (16 bytes) up to `CLASSES - 1`.
///
/// ```
/// use freespace_sync::{initial_rounds, max_rounds, ROUNDS};
/// assert_eq!(initial_rounds(0), ROUNDS / 2); // 16-byte blocks: 32
/// use freespace_sync::CLASSES;
/// assert!(initial_rounds(CLASSES - 1) < initial_rounds(0)); // 16 KiB blocks: 2
/// assert!(max_rounds(CLASSES - 1) > initial_rounds(CLASSES - 1));
/// ```
pub const fn initial_rounds(class: usize) -> usize {
    let most = if cfg!(loom) { ROUNDS } else { ROUNDS / 2 };
    clamp_rounds(MAGAZINE_BYTES / class_size(class), most)
}

/// The largest capacity contention can grow the magazines of `class` to:
/// [`MAX_GROWTH`] × [`MAGAZINE_BYTES`] of blocks, at most [`ROUNDS`].
pub const fn max_rounds(class: usize) -> usize {
    clamp_rounds(MAX_GROWTH * MAGAZINE_BYTES / class_size(class), ROUNDS)
}

/// `n` between 2 (or [`ROUNDS`] if smaller) and `most`.
const fn clamp_rounds(n: usize, most: usize) -> usize {
    let least = if ROUNDS < 2 { ROUNDS } else { 2 };
    if n < least {
        least
    } else if n > most {
        most
    } else {
        n
    }
}

/// `CLASS_OF[(size + 15) / 16]`: the class of a request of `size` bytes
/// (`1..=MAX_CACHED`), one load instead of a search.
static CLASS_OF: [u8; MAX_CACHED / 16 + 1] = {
    let mut table = [0u8; MAX_CACHED / 16 + 1];
    let mut i = 0;
    while i < table.len() {
        let mut c = 0;
        while SIZES[c] < i * 16 {
            c += 1;
        }
        table[i] = c as u8;
        i += 1;
    }
    table
};

/// The class serving `layout`, or `None` when the cache does not serve it
/// (zero size, larger than [`MAX_CACHED`], or aligned to more than
/// [`CLASS_ALIGN`]).
///
/// Every size between a request and the class size maps to the same class,
/// so a block can be freed with any size the `Allocator` contract allows.
#[inline(always)]
pub(crate) fn class_of(layout: Layout) -> Option<usize> {
    let size = layout.size();
    // `size - 1 < MAX_CACHED` is `0 < size <= MAX_CACHED` in one compare.
    if size.wrapping_sub(1) >= MAX_CACHED || layout.align() > CLASS_ALIGN {
        return None;
    }
    let c = CLASS_OF[size.div_ceil(16)] as usize;
    // SAFETY: every entry of `CLASS_OF` is an index of `SIZES`: the
    // constant evaluation that built the table read `SIZES[c]` for the `c`
    // it stored, and an index out of bounds there fails the build. Said to
    // the compiler, it drops the bounds checks of the rack's per-class
    // arrays from the fast path.
    unsafe { core::hint::assert_unchecked(c < CLASSES) };
    Some(c)
}

/// Bytes in a block of `class`.
#[inline(always)]
pub(crate) const fn class_size(class: usize) -> usize {
    SIZES[class]
}

/// The layout every block of `class` is allocated from the parent with.
#[inline]
pub(crate) fn class_layout(class: usize) -> Layout {
    // SAFETY: `class_size` is a multiple of 16 = `CLASS_ALIGN` (a power of
    // two) no larger than `MAX_CACHED`, far from overflowing when rounded.
    unsafe { Layout::from_size_align_unchecked(class_size(class), CLASS_ALIGN) }
}

/// A fixed-capacity stack of free blocks ("rounds") of one class, living
/// in memory from the parent: this header, then room for at least `cap`
/// rounds ([`Magazine::layout`]), so a magazine of four rounds takes 80
/// bytes rather than room for [`ROUNDS`]. Only reached through raw pointers
/// ([`mag`]): no reference to a whole magazine is ever made, since the
/// memory behind one ends after its own rounds.
///
/// # Invariants
/// - SYNC-M1: `1 <= cap <= ROUNDS` and `count <= cap`; the memory holds
///   at least `cap` round slots after the header (it came from the parent
///   with `Magazine::layout(cap)`); the first `count` slots are initialised,
///   distinct, free blocks of the magazine's class, allocated from the
///   parent with `class_layout(class)` and handed to no user.
/// - SYNC-M2: a magazine is owned by exactly one place: a rack's `loaded` or
///   `previous` slot, or one depot list (linked through `next`). Only its
///   owner reads or writes it.
#[repr(C)]
pub(crate) struct Magazine {
    pub(crate) next: Option<NonNull<Magazine>>,
    count: u32,
    /// Rounds this magazine holds when full (fixed when it is made).
    cap: u32,
    /// The first of `cap` round slots (the rest follow it in memory).
    rounds: [MaybeUninit<NonNull<u8>>; 0],
}

/// Round slots of a small magazine ([`Magazine::layout`]): what the
/// first magazines of classes of 512 bytes and more hold
/// ([`MAGAZINE_BYTES`] of blocks).
pub(crate) const SMALL_SLOTS: usize = 8;

/// A pointer to a [`Magazine`] owned by whoever holds it (SYNC-M2).
pub(crate) type Mag = NonNull<Magazine>;

impl Magazine {
    /// The memory of a magazine of `cap` rounds: room for
    /// [`SMALL_SLOTS`] rounds up to that many, else for [`ROUNDS`]. Two
    /// sizes only, so that magazines take few of the parent's size classes
    /// (a slab parent makes a page resident for each class it serves);
    /// the magazines of classes above a few hundred bytes, which hold a
    /// handful of rounds, take 80 bytes instead of 528.
    pub(crate) const fn layout(cap: usize) -> Layout {
        let slots = if cap <= SMALL_SLOTS {
            SMALL_SLOTS
        } else {
            ROUNDS
        };
        let size = size_of::<Magazine>() + slots * size_of::<NonNull<u8>>();
        // SAFETY: `size` is at most a few hundred bytes (ROUNDS slots), and
        // the alignment is a type's.
        unsafe { Layout::from_size_align_unchecked(size, align_of::<Magazine>()) }
    }

    /// Writes an empty magazine of capacity `cap` (clamped to 1..=ROUNDS)
    /// over fresh memory.
    ///
    /// # Safety
    /// `at` is valid for writes of `Magazine::layout(cap)` and aligned for
    /// it.
    pub(crate) unsafe fn init(at: NonNull<u8>, cap: usize) -> Mag {
        let m = at.cast::<Magazine>();
        let cap = cap.clamp(1, ROUNDS) as u32;
        // SAFETY: the caller vouches for the memory; only the header is
        // written (the rounds are uninitialised until pushed).
        unsafe {
            (&raw mut (*m.as_ptr()).next).write(None);
            (&raw mut (*m.as_ptr()).count).write(0);
            (&raw mut (*m.as_ptr()).cap).write(cap);
        }
        m
    }
}

/// Accessors on a magazine pointer. Every function requires that the caller
/// owns the magazine (SYNC-M2), which makes the access exclusive.
pub(crate) mod mag {
    use super::*;

    /// # Safety
    /// The caller owns `m` (SYNC-M2).
    #[inline]
    pub(crate) unsafe fn count(m: Mag) -> usize {
        // SAFETY: owned, initialised magazine (caller).
        unsafe { (*m.as_ptr()).count as usize }
    }

    /// The rounds `m` holds when full.
    ///
    /// # Safety
    /// The caller owns `m` (SYNC-M2).
    #[inline]
    pub(crate) unsafe fn cap(m: Mag) -> usize {
        // SAFETY: owned, initialised magazine (caller).
        unsafe { (*m.as_ptr()).cap as usize }
    }

    /// # Safety
    /// The caller owns `m` (SYNC-M2).
    #[inline]
    pub(crate) unsafe fn is_full(m: Mag) -> bool {
        // SAFETY: forwarded.
        unsafe { count(m) == cap(m) }
    }

    /// # Safety
    /// The caller owns `m` (SYNC-M2).
    #[inline]
    pub(crate) unsafe fn is_empty(m: Mag) -> bool {
        // SAFETY: forwarded.
        unsafe { count(m) == 0 }
    }

    /// Slot `i` of `m`'s rounds.
    ///
    /// # Safety
    /// `m` is an initialised magazine and `i < cap` (SYNC-M1: the slot
    /// lies in its memory).
    #[inline(always)]
    unsafe fn slot(m: Mag, i: usize) -> *mut MaybeUninit<NonNull<u8>> {
        // SAFETY: the slots follow the header in the magazine's memory
        // (SYNC-M1), `i` of them in bounds (caller); a raw projection, no
        // reference to the whole magazine.
        unsafe {
            (&raw mut (*m.as_ptr()).rounds)
                .cast::<MaybeUninit<NonNull<u8>>>()
                .add(i)
        }
    }

    /// Pops the top round, and asks for the one under it to be fetched
    /// for a write ([`prefetch_write`](freespace_core::hint::prefetch_write)):
    /// the caller is about to write into each block it is handed, and the
    /// next round's line is then on its way (a thread that allocates many
    /// blocks in a row waited for each line in turn).
    ///
    /// # Safety
    /// The caller owns `m` (SYNC-M2).
    #[inline(always)]
    pub(crate) unsafe fn pop(m: Mag) -> Option<NonNull<u8>> {
        let p = m.as_ptr();
        // SAFETY: exclusive access to an initialised magazine (caller,
        // SYNC-M2), through its header's fields only.
        let top = unsafe { (*p).count }.checked_sub(1)?;
        // SAFETY: as above; `top < count <= cap` and `top - 1` (or `top`
        // itself, for the last round) are initialised slots (SYNC-M1).
        unsafe {
            (*p).count = top;
            let next = slot(m, top.saturating_sub(1) as usize).read().assume_init();
            freespace_core::hint::prefetch_write(next.as_ptr());
            Some(slot(m, top as usize).read().assume_init())
        }
    }

    /// Pushes `block`; returns `false` (and keeps nothing) when full.
    ///
    /// # Safety
    /// The caller owns `m` (SYNC-M2); `block` is a free block of the
    /// magazine's class (SYNC-M1).
    #[inline(always)]
    pub(crate) unsafe fn push(m: Mag, block: NonNull<u8>) -> bool {
        let p = m.as_ptr();
        // SAFETY: exclusive access to an initialised magazine (caller,
        // SYNC-M2), through its header's fields only.
        let (count, cap) = unsafe { ((*p).count, (*p).cap) };
        // Full when `count == cap` (SYNC-M1).
        if count >= cap {
            return false;
        }
        // SAFETY: `count < cap`: a slot in the magazine's memory (SYNC-M1).
        unsafe {
            slot(m, count as usize).write(MaybeUninit::new(block));
            (*p).count = count + 1;
        }
        true
    }

    /// Forgets every round (they have been handed back elsewhere).
    ///
    /// # Safety
    /// The caller owns `m` (SYNC-M2), and the rounds are no longer the
    /// magazine's to give.
    pub(crate) unsafe fn clear(m: Mag) {
        // SAFETY: exclusive access to an initialised magazine (caller).
        unsafe { (*m.as_ptr()).count = 0 };
    }

    /// Whether `block` is one of the rounds (a second free of it).
    ///
    /// # Safety
    /// The caller owns `m` (SYNC-M2).
    pub(crate) unsafe fn contains(m: Mag, block: NonNull<u8>) -> bool {
        // SAFETY: the caller owns `m` (SYNC-M2), which it does not change
        // meanwhile.
        unsafe { rounds(m) }.contains(&block)
    }

    /// The rounds, for checks.
    ///
    /// # Safety
    /// The caller owns `m` (SYNC-M2) and does not change it while using the slice.
    pub(crate) unsafe fn rounds<'a>(m: Mag) -> &'a [NonNull<u8>] {
        // SAFETY: exclusive access to an initialised magazine (caller,
        // SYNC-M2): its first `count` slots are initialised and in its
        // memory (SYNC-M1), and `MaybeUninit<T>` has `T`'s layout.
        unsafe {
            let count = (*m.as_ptr()).count as usize;
            core::slice::from_raw_parts(slot(m, 0).cast::<NonNull<u8>>(), count)
        }
    }
}

/// One thread's magazines: for each class a `loaded` magazine that allocs
/// pop from and frees push to, and the `previous` one, kept so a thread
/// that alternates alloc and free at a magazine boundary does not go to the
/// depot every time.
///
/// # Invariants
/// - SYNC-R1: `previous[c]`, when present, is full or empty (never partial).
/// - SYNC-R2: the rack owns its magazines (SYNC-M2): none of them is on a depot list.
#[derive(Debug)]
pub(crate) struct Rack {
    loaded: [Option<Mag>; CLASSES],
    previous: [Option<Mag>; CLASSES],
}

impl Rack {
    pub(crate) const fn new() -> Self {
        Self {
            loaded: [None; CLASSES],
            previous: [None; CLASSES],
        }
    }

    /// A free block of `class`: from the loaded magazine, else the previous
    /// one if full, else a full magazine from the depot, else the parent.
    #[inline(always)]
    pub(crate) fn alloc<P: Batch>(&mut self, depot: &Depot<P>, c: usize) -> Option<NonNull<u8>> {
        if let Some(m) = self.loaded[c] {
            // SAFETY: the rack owns its magazines (SYNC-R2).
            if let Some(block) = unsafe { mag::pop(m) } {
                return Some(block);
            }
        }
        self.alloc_slow(depot, c)
    }

    /// A round from the loaded magazine of `c`, or `None` (nothing done)
    /// when it is empty or absent: [`alloc`](Self::alloc)'s first step
    /// alone, which calls nothing.
    #[inline(always)]
    pub(crate) fn pop_loaded(&mut self, c: usize) -> Option<NonNull<u8>> {
        // SAFETY: the rack owns its magazines (SYNC-R2).
        self.loaded[c].and_then(|m| unsafe { mag::pop(m) })
    }

    /// Pushes `block` into the loaded magazine of `c`; `false` (nothing
    /// done) when it is full or absent: [`free`](Self::free)'s first step
    /// alone, which calls nothing. In debug builds also `false` for a block
    /// already among the rack's rounds, so that [`free`](Self::free)
    /// reports it.
    ///
    /// # Safety
    /// As for [`free`](Self::free).
    #[inline(always)]
    pub(crate) unsafe fn push_loaded(&mut self, c: usize, block: NonNull<u8>) -> bool {
        if cfg!(debug_assertions) && self.holds(c, block) {
            return false;
        }
        // SAFETY: the rack owns its magazines (SYNC-R2); `block` is a free block
        // of class `c` (caller), so SYNC-M1 holds after the push.
        self.loaded[c].is_some_and(|m| unsafe { mag::push(m, block) })
    }

    #[cold]
    fn alloc_slow<P: Batch>(&mut self, depot: &Depot<P>, c: usize) -> Option<NonNull<u8>> {
        // `loaded` is empty or absent here.
        if let Some(prev) = self.previous[c] {
            // SAFETY: the rack owns its magazines (SYNC-R2).
            if unsafe { mag::is_full(prev) } {
                core::mem::swap(&mut self.loaded[c], &mut self.previous[c]);
                // SAFETY: as above.
                return unsafe { mag::pop(prev) };
            }
        }
        if let Some(full) = depot.take_full(c) {
            // `previous` is empty (SYNC-R1, not full) and `loaded` is empty: the
            // empty `loaded` becomes `previous`, keeping SYNC-R1.
            if let Some(prev) = self.previous[c].take() {
                depot.put_empty(c, prev);
            }
            self.previous[c] = self.loaded[c].replace(full);
            // SAFETY: the depot handed `full` over to the rack (SYNC-M2).
            return unsafe { mag::pop(full) };
        }
        self.refill(depot, c).or_else(|| depot.alloc_block(c))
    }

    /// No full magazine anywhere: loads up to [`REFILL`] fresh blocks from
    /// the parent into `loaded` (an empty magazine from the depot if there
    /// is none) and returns one of them. In a batch, a thread's new blocks
    /// come from the parent one after another, next to each other, instead
    /// of interleaved with another thread's: blocks of two threads that
    /// share a cache line make every write to either a transfer between
    /// cores, for as long as both stay live. `None` when there is no
    /// magazine or the parent gives nothing.
    ///
    /// Classes above [`FINE_FROM`] load one block, the one asked for: such
    /// a block spans cache lines of its own, and in the named stacks it is
    /// carved from the best-fit heap, where blocks fetched ahead and held
    /// in a magazine are placed among live ones and leave holes of their
    /// class size when they go back (efficiency-64k: `Threaded` 90.4 % with
    /// batches, 92.8 % without, `cargo xtask bench`).
    #[cold]
    fn refill<P: Batch>(&mut self, depot: &Depot<P>, c: usize) -> Option<NonNull<u8>> {
        let m = match self.loaded[c] {
            Some(m) => m,
            None => *self.loaded[c].insert(depot.take_empty(c)?),
        };
        // Above the slab's classes one block: see the doc comment.
        let batch = if class_size(c) > FINE_FROM {
            1
        } else {
            // SAFETY: the rack owns `m` (SYNC-R2).
            REFILL.min(unsafe { mag::cap(m) } + 1)
        };
        let mut blocks = [NonNull::dangling(); REFILL];
        let n = depot.alloc_blocks(c, &mut blocks[..batch]);
        let (&first, rest) = blocks[..n].split_first()?;
        // Pushed last first, so that they pop in the order the parent gave
        // them, usually rising addresses: a thread that allocates many
        // blocks in a row walks memory the way the hardware prefetches it.
        for &block in rest.iter().rev() {
            // SAFETY: the rack owns `m` (SYNC-R2); `loaded` is empty here (it
            // was when `alloc_slow` began, or is a fresh empty magazine),
            // so the pushes fit (`batch - 1 <= cap`); `block` is a fresh
            // block of class `c` from the parent (SYNC-M1).
            unsafe { mag::push(m, block) };
        }
        Some(first)
    }

    /// Takes back `block` of `class`: into the loaded magazine, else the
    /// previous one if empty, else an empty magazine from the depot (full
    /// ones go to the depot), else straight to the parent.
    ///
    /// # Safety
    /// `block` is a live block of class `c` allocated through `depot` (by
    /// any thread), not used again by the caller.
    #[inline(always)]
    pub(crate) unsafe fn free<P: Batch>(&mut self, depot: &Depot<P>, c: usize, block: NonNull<u8>) {
        if cfg!(debug_assertions) && self.holds(c, block) {
            // The block is already among this thread's free rounds. Leak it
            // (the handler returned): never hand it out twice.
            report(
                Corruption::DoubleFree {
                    addr: block.as_ptr() as usize,
                },
                "thread cache",
            );
            return;
        }
        if let Some(m) = self.loaded[c] {
            // SAFETY: the rack owns its magazines (SYNC-R2); `block` is a free
            // block of class `c` (caller), so SYNC-M1 holds after the push.
            if unsafe { mag::push(m, block) } {
                return;
            }
        }
        // SAFETY: as above.
        unsafe { self.free_slow(depot, c, block) }
    }

    /// # Safety
    /// As for [`free`](Self::free).
    #[cold]
    unsafe fn free_slow<P: Batch>(&mut self, depot: &Depot<P>, c: usize, block: NonNull<u8>) {
        // `loaded` is full or absent here.
        if let Some(prev) = self.previous[c] {
            // SAFETY: the rack owns its magazines (SYNC-R2).
            if unsafe { mag::is_empty(prev) } {
                core::mem::swap(&mut self.loaded[c], &mut self.previous[c]);
                // SAFETY: owned (SYNC-R2); `block` is a free block of class `c`
                // (caller), so SYNC-M1 holds after the push.
                let pushed = unsafe { mag::push(prev, block) };
                debug_assert!(pushed);
                return;
            }
        }
        if let Some(empty) = depot.take_empty(c) {
            // `previous` is full (SYNC-R1, not empty) and `loaded` is full: the
            // full `loaded` becomes `previous`, keeping SYNC-R1.
            if let Some(prev) = self.previous[c].take() {
                depot.put_full(c, prev);
            }
            self.previous[c] = self.loaded[c].replace(empty);
            // SAFETY: the depot handed `empty` over (SYNC-M2); `block` is a free
            // block of class `c` (caller).
            let pushed = unsafe { mag::push(empty, block) };
            debug_assert!(pushed);
            return;
        }
        // SAFETY: the caller's contract.
        unsafe { depot.free_block(c, block) }
    }

    /// Whether `block` is already a free round of this rack (debug check,
    /// and the checked free's search).
    pub(crate) fn holds(&self, c: usize, block: NonNull<u8>) -> bool {
        [self.loaded[c], self.previous[c]]
            .into_iter()
            .flatten()
            // SAFETY: the rack owns its magazines (SYNC-R2).
            .any(|m| unsafe { mag::contains(m, block) })
    }

    /// Hands every magazine to the depot (which returns partial ones' rounds
    /// to the parent): the thread is leaving or the cache is going away.
    pub(crate) fn flush<P: Batch>(&mut self, depot: &Depot<P>) {
        for c in 0..CLASSES {
            for m in [self.loaded[c].take(), self.previous[c].take()]
                .into_iter()
                .flatten()
            {
                depot.put(c, m);
            }
        }
    }

    /// Free rounds this rack holds.
    pub(crate) fn cached_blocks(&self) -> usize {
        self.loaded
            .iter()
            .chain(&self.previous)
            .flatten()
            // SAFETY: the rack owns its magazines (SYNC-R2).
            .map(|&m| unsafe { mag::count(m) })
            .sum()
    }

    /// Checks SYNC-R1 and SYNC-M1's count bound and distinctness within each class.
    pub(crate) fn check(&self) -> Result<(), freespace_core::Violation> {
        use freespace_core::Violation;
        for c in 0..CLASSES {
            if let Some(p) = self.previous[c] {
                // SAFETY: the rack owns its magazines (SYNC-R2).
                let n = unsafe { mag::count(p) };
                // SAFETY: as above.
                if n != 0 && n != unsafe { mag::cap(p) } {
                    return Err(Violation::new(
                        "SYNC-R1",
                        p.as_ptr() as usize,
                        "previous magazine is partial",
                    ));
                }
                if self.loaded[c] == Some(p) {
                    return Err(Violation::new(
                        "SYNC-M2",
                        p.as_ptr() as usize,
                        "magazine both loaded and previous",
                    ));
                }
            }
            let mut seen: [&[NonNull<u8>]; 2] = [&[], &[]];
            for (i, m) in [self.loaded[c], self.previous[c]].into_iter().enumerate() {
                if let Some(m) = m {
                    // SAFETY: the rack owns its magazines (SYNC-R2); the rack is
                    // not changed during the check.
                    seen[i] = unsafe { mag::rounds(m) };
                }
            }
            let all = || seen[0].iter().chain(seen[1]);
            for (i, a) in all().enumerate() {
                if all().skip(i + 1).any(|b| b == a) {
                    return Err(Violation::new(
                        "SYNC-M1",
                        a.as_ptr() as usize,
                        "block twice in a thread's magazines",
                    ));
                }
            }
        }
        Ok(())
    }
}
