//! [`Buddy`]: the allocator type and its trait impls.

use core::cell::UnsafeCell;
use core::ptr::NonNull;

use freespace_core::alloc::{AllocError, Allocator, Layout};
use freespace_core::layout::dangling;
use freespace_core::source::clear;
use freespace_core::{
    report, BlockInfo, BlockSize, BlockState, Corruption, Inspect, Owns, Source, Trim, Violation,
};

use crate::heap::{State, View, NODE_ALIGN, NODE_BYTES, WALKING};
use crate::zone::Zone;

/// The name reports carry: `freespace: double free at 0x… (buddy)`.
pub const NAME: &str = "buddy";

/// The least the heap asks its source for when it grows.
const GROW_MIN: usize = 64 * 1024;

/// A binary buddy heap over regions from `S`.
///
/// Every block is `MIN << k` bytes for an order `k < ORDERS`, and starts at
/// an address that is a multiple of its size (natural alignment in absolute
/// terms, so any alignment up to the block size comes for free). The
/// defaults give blocks from 16 bytes to 2 GiB.
///
/// ```text
///  allocate 16 B from a free 128 B block:          free 16 B at 0x00 again:
///
///  [              128               ]               [ 16 ][ 16 ][  32  ][      64      ]
///  [      64      ][      64       ]  split            └merge┘     │             │
///  [  32  ][  32  ][      64       ]  split         [    32    ][  32  ] …        │
///  [16][16][  32  ][      64       ]  split            └─ merge ─┘                │
///   ^^ used, the other halves are free               [        64        ][  64   ]
///                                                        └──── merge ────┘
///                                                    [              128               ]
/// ```
///
/// # Metadata
///
/// Each *zone* (a maximal run of contiguous source memory) keeps, at its
/// top, a header and two bitmaps with one bit per `MIN` bytes: a **free**
/// bit per granule (a free block starts here) and a **split** bit per node
/// of the buddy tree (this node is an interior node). With them the buddy
/// test is two bit reads, and the order of a live block follows from its
/// address alone (walk up until the parent is split), which is
/// [`BlockSize`]. A free with a layout needs no walk: the layout gives the
/// order, and three bit reads confirm it (not free, not split, parent
/// split). The cost is 2 bits per 16 bytes, 1.6 %. Free blocks carry
/// their doubly linked list node in their first 16 bytes, so unlinking a
/// merged buddy is O(1).
///
/// When the source returns a region that starts where a zone ends (`Sbrk`,
/// `Mmap`), the zone grows over it: new metadata for the whole run goes to
/// the new top, the old bitmaps are copied into it, and the new bytes and
/// the old metadata are freed, so they merge with the blocks below the old
/// boundary. Other regions become zones of their own. Blocks pointers are
/// derived from the first region of their zone.
///
/// # Invariants
///
/// - BUDDY-B1: a block on `free[k]` is `MIN << k` bytes, aligned to `MIN << k`,
///   and lies in a zone's block range `[lo, meta_lo)`.
/// - BUDDY-B2: a block and its buddy are never both free.
/// - BUDDY-B3: the free bit of a granule is set iff a free block starts there;
///   every free block is on exactly one list, the one of its order; bit `k`
///   of the non-empty mask is set iff `free[k]` is non-empty.
/// - BUDDY-B4: the split bits mark exactly the interior nodes of each zone's
///   buddy tree: the blocks are the unsplit nodes whose parent is split or
///   outside the zone, and they tile the zone.
/// - BUDDY-B5: the free lists are doubly linked: `n.next.prev == n` for every
///   node `n` with a successor (a head's `prev` is stale and never read).
/// - BUDDY-B6: a zone's header and bitmaps fill `[meta_lo, hi)`, which is made of
///   used blocks that are never handed out or freed.
///
/// [`check`](Self::check) verifies all of them.
///
/// # Threads
///
/// `Buddy` is `Send` (when `S` is) but not `Sync`: it changes its state
/// through `&self` without locking. Wrap it in a lock to share it.
///
/// ```compile_fail
/// fn shared<T: Sync>() {}
/// shared::<freespace_buddy::Buddy<freespace_source::Arena>>();
/// ```
///
/// # Example
///
/// ```
/// use freespace_buddy::Buddy;
/// # use freespace_source::{Arena, StaticMemory};
/// # static MEMORY: StaticMemory<{ 256 * 1024 }> = StaticMemory::new();
/// # let source = Arena::new(MEMORY.take().unwrap());
/// let heap: Buddy<Arena> = Buddy::new(source);
/// let mut v = allocator_api2::vec::Vec::new_in(&heap);
/// v.extend_from_slice(b"buddy");
/// assert_eq!(&v[..], b"buddy");
/// drop(v);
/// heap.check().unwrap();
/// ```
pub struct Buddy<S: Source, const MIN: usize = 16, const ORDERS: usize = 28> {
    source: S,
    state: UnsafeCell<State<MIN, ORDERS>>,
    /// Bytes freed between automatic trims of the largest free blocks
    /// (`usize::MAX`: never).
    purge_after: core::cell::Cell<usize>,
}

/// Free blocks this large or larger are trimmed automatically, once
/// [`Buddy::purge_after`] bytes have been freed since the last trim: 1 MiB,
/// as for every heap with a purge budget
/// ([`freespace_core::source::PURGE_MIN`]). (An explicit [`Trim::trim`]
/// takes every free block of a page or more.)
pub const PURGE_MIN: usize = freespace_core::source::PURGE_MIN;

/// The default [`Buddy::purge_after`]: 64 MiB freed between automatic trims
/// ([`freespace_core::source::DEFAULT_PURGE_AFTER`]).
pub const DEFAULT_PURGE_AFTER: usize = freespace_core::source::DEFAULT_PURGE_AFTER;

/// The smallest free block [`Trim::trim`] looks at: one 4 KiB page (on
/// systems with larger pages the source finds no whole page inside smaller
/// blocks and declines at no cost).
const TRIM_MIN: usize = 4096;

// SAFETY: the heap owns its regions exclusively (CORE-S2) and its state holds
// only pointers into them; moving it to another thread moves that
// ownership. `S: Send` covers the source.
unsafe impl<S: Source + Send, const MIN: usize, const ORDERS: usize> Send
    for Buddy<S, MIN, ORDERS>
{
}

impl<S: Source, const MIN: usize, const ORDERS: usize> Buddy<S, MIN, ORDERS> {
    const VALID: () = {
        assert!(MIN.is_power_of_two(), "MIN must be a power of two");
        assert!(
            MIN >= NODE_BYTES,
            "MIN must hold a free-list node (two pointers)"
        );
        assert!(MIN >= NODE_ALIGN, "MIN must align a free-list node");
        assert!(ORDERS >= 1, "ORDERS must be at least 1");
        assert!(
            MIN.trailing_zeros() as usize + ORDERS < usize::BITS as usize,
            "MIN << (ORDERS - 1) must fit in an isize"
        );
    };

    /// Bytes of the smallest block.
    pub const MIN_BLOCK: usize = MIN;
    /// Bytes of the largest block, `MIN << (ORDERS - 1)`.
    pub const MAX_BLOCK: usize = MIN << (ORDERS - 1);

    /// A heap that takes its memory from `source`. Does no work: the first
    /// allocation asks the source for a region.
    ///
    /// ```
    /// use freespace_buddy::Buddy;
    /// # struct Nothing;
    /// # unsafe impl freespace_core::Source for Nothing {
    /// #     fn acquire(&self, _: usize) -> Option<core::ptr::NonNull<[u8]>> { None }
    /// # }
    /// let heap: Buddy<Nothing> = Buddy::new(Nothing);
    /// assert!(heap.check().is_ok());
    /// ```
    pub const fn new(source: S) -> Self {
        #[allow(clippy::let_unit_value)]
        let () = Self::VALID;
        Buddy {
            source,
            state: UnsafeCell::new(State::new()),
            purge_after: core::cell::Cell::new(DEFAULT_PURGE_AFTER),
        }
    }

    /// Sets the purge budget: each time this many bytes have been freed,
    /// the free blocks of [`PURGE_MIN`] or more give their pages back to
    /// the source (as [`Trim::trim`] does for all free blocks of a page or
    /// more). `usize::MAX` never purges on its own; the default is
    /// [`DEFAULT_PURGE_AFTER`]. Over a source that cannot decommit (an
    /// `Arena`) a purge finds nothing to do.
    ///
    /// ```
    /// use freespace_buddy::Buddy;
    /// # struct Nothing;
    /// # unsafe impl freespace_core::Source for Nothing {
    /// #     fn acquire(&self, _: usize) -> Option<core::ptr::NonNull<[u8]>> { None }
    /// # }
    /// let heap: Buddy<Nothing> = Buddy::new(Nothing).with_purge_after(usize::MAX);
    /// assert_eq!(heap.purge_after(), usize::MAX);
    /// ```
    pub const fn with_purge_after(mut self, bytes: usize) -> Self {
        self.purge_after = core::cell::Cell::new(bytes);
        self
    }

    /// Changes the purge budget of a heap in use (a `static` stack set up
    /// from the environment, say); the count of bytes freed carries on.
    ///
    /// ```
    /// use freespace_buddy::Buddy;
    /// # struct Nothing;
    /// # unsafe impl freespace_core::Source for Nothing {
    /// #     fn acquire(&self, _: usize) -> Option<core::ptr::NonNull<[u8]>> { None }
    /// # }
    /// let heap: Buddy<Nothing> = Buddy::new(Nothing);
    /// heap.set_purge_after(1 << 20);
    /// assert_eq!(heap.purge_after(), 1 << 20);
    /// ```
    pub fn set_purge_after(&self, bytes: usize) {
        self.purge_after.set(bytes);
    }

    /// The purge budget ([`with_purge_after`](Self::with_purge_after)).
    pub fn purge_after(&self) -> usize {
        self.purge_after.get()
    }

    /// Gives back the pages of the free blocks of at least `min` bytes
    /// (all but the first page of each, which holds the block's free-list
    /// node) through [`Source::decommit`]; returns the bytes given back.
    fn trim_from(&self, st: &mut State<MIN, ORDERS>, min: usize) -> usize {
        st.freed = 0;
        // A source that cannot decommit (an arena) would decline every
        // block: no walk.
        if st.blocked != 0 || !self.source.decommits() {
            return 0;
        }
        let mut given = 0;
        for k in 0..ORDERS {
            let s = State::<MIN, ORDERS>::size(k);
            if s < min || st.nonempty & (1 << k) == 0 {
                continue;
            }
            st.each_free(k, |block| {
                // SAFETY: `block` is a free block of `s` bytes in a region
                // from the source; past its node nobody uses its bytes or
                // needs their contents (a free block carries only its node,
                // BUDDY-B3).
                let rest =
                    unsafe { NonNull::slice_from_raw_parts(block.add(NODE_BYTES), s - NODE_BYTES) };
                // SAFETY: as above: the source's memory, unused.
                if let Some(pages) = unsafe { self.source.decommit(rest) } {
                    given += pages.len();
                }
            });
        }
        given
    }

    /// Counts a free of `s` bytes against the purge budget.
    #[inline(always)]
    fn count_free(&self, st: &mut State<MIN, ORDERS>, s: usize) {
        st.freed = st.freed.saturating_add(s);
        if st.freed >= self.purge_after.get() {
            self.purge(st);
        }
    }

    #[cold]
    #[inline(never)]
    fn purge(&self, st: &mut State<MIN, ORDERS>) {
        self.trim_from(st, PURGE_MIN);
    }

    /// The source the heap draws from.
    ///
    /// ```
    /// # use freespace_buddy::Buddy;
    /// # struct Nothing;
    /// # unsafe impl freespace_core::Source for Nothing {
    /// #     fn acquire(&self, _: usize) -> Option<core::ptr::NonNull<[u8]>> { None }
    /// # }
    /// let heap: Buddy<Nothing> = Buddy::new(Nothing);
    /// let _source: &Nothing = heap.source();
    /// ```
    pub fn source(&self) -> &S {
        &self.source
    }

    /// The order of the block `layout` needs: `max(size, align)` rounded up
    /// to a power of two, at least `MIN`; `None` above the largest block.
    /// (The ceiling log2 directly, rather than via the power of two: no
    /// overflow case, since a layout's size and alignment are at most
    /// `isize::MAX + 1`.)
    #[inline(always)]
    fn order_for(layout: Layout) -> Option<usize> {
        let bytes = layout.size().max(layout.align());
        if bytes <= MIN {
            return Some(0);
        }
        // `bytes - 1 >= MIN`, so `k >= 1`: `2^(BITS - lz) >= bytes > 2^(BITS - lz - 1)`.
        let k = (usize::BITS - (bytes - 1).leading_zeros() - MIN.trailing_zeros()) as usize;
        (k < ORDERS).then_some(k)
    }

    /// The state, for the length of one method that does not call out.
    ///
    /// # Safety
    ///
    /// No other reference to the state is live: the heap is `!Sync`, no
    /// method calls user code while holding the reference, and
    /// [`inspect`](Inspect::inspect) holds none while it calls `visit`.
    #[allow(clippy::mut_from_ref)]
    #[inline(always)]
    unsafe fn state(&self) -> &mut State<MIN, ORDERS> {
        // SAFETY: caller contract.
        unsafe { &mut *self.state.get() }
    }

    /// Asks the source for a region that will hold a block of order `k` and
    /// adds it. Prefers a region of an eighth of the heap (at least 64 KiB),
    /// so that a contiguous source grows the heap geometrically and each
    /// join has room for the larger metadata; falls back to just enough.
    #[cold]
    fn refill(&self, st: &mut State<MIN, ORDERS>, k: usize) -> bool {
        let Some(two) = State::<MIN, ORDERS>::size(k).checked_mul(2) else {
            return false;
        };
        let with_meta = |len: usize| -> Option<usize> {
            let meta = State::<MIN, ORDERS>::meta_len(st.total.checked_add(len)?)?;
            len.checked_add(meta)?.checked_add(MIN)
        };
        let preferred = with_meta(two.max(GROW_MIN).max(st.total / 8));
        let minimal = with_meta(two);
        let region = preferred
            .and_then(|len| self.source.acquire(len))
            .or_else(|| minimal.and_then(|len| self.source.acquire(len)));
        let Some(region) = region else {
            return false;
        };
        if st.add_region(region, self.source.zeroed()) {
            return true;
        }
        // SAFETY: the region came from `acquire` just now, whole, with its
        // alignment and length (CORE-S3), and nothing of it is in use.
        unsafe { self.source.release(region) };
        false
    }

    /// Allocates a block of order `k`, growing the heap if needed.
    #[inline(always)]
    fn allocate_order(&self, k: usize) -> Result<NonNull<u8>, AllocError> {
        // SAFETY: no other reference to the state is live (see `state`).
        let st = unsafe { self.state() };
        if st.blocked != 0 {
            return Err(AllocError);
        }
        match st.take(k) {
            Ok(Some(p)) => Ok(p),
            taken => self.allocate_slow(k, taken.map(|_| ())),
        }
    }

    /// [`allocate_order`](Self::allocate_order) when the free lists had
    /// nothing large enough (`Ok`: grow and retry) or were found corrupt
    /// (`Err`: report it).
    #[cold]
    #[inline(never)]
    fn allocate_slow(
        &self,
        k: usize,
        taken: Result<(), Corruption>,
    ) -> Result<NonNull<u8>, AllocError> {
        if let Err(c) = taken {
            report(c, NAME);
            return Err(AllocError);
        }
        // SAFETY: no other reference to the state is live (see `state`).
        let st = unsafe { self.state() };
        for _ in 0..2 {
            if !self.refill(st, k) {
                return Err(AllocError);
            }
            match st.take(k) {
                Ok(Some(p)) => return Ok(p),
                Ok(None) => {}
                Err(c) => {
                    report(c, NAME);
                    return Err(AllocError);
                }
            }
        }
        Err(AllocError)
    }

    /// Frees `ptr`, allocated with `layout`, or says what is wrong with the
    /// call without changing anything: the checked form of
    /// [`deallocate`](Allocator::deallocate).
    ///
    /// Reports, in order of precedence: a pointer outside the heap
    /// (`ForeignPointer`), not on a `MIN` boundary (`MisalignedPointer`),
    /// inside a free block (`DoubleFree`), inside a used block but not at
    /// its start (`InteriorPointer`), at a used block whose order is not
    /// the one `layout` asks for (`SizeMismatch`). A free list found
    /// damaged while merging is `CorruptFreeList`, after which the heap
    /// refuses all work.
    ///
    /// # Safety
    ///
    /// If `ptr` is a live block of this heap, the caller gives it up (as for
    /// `deallocate`); any other pointer is only looked at, never written.
    ///
    /// ```
    /// # use freespace_buddy::Buddy;
    /// # use freespace_core::{alloc::{Allocator, Layout}, Corruption};
    /// # use core::ptr::NonNull;
    /// # use freespace_source::{Arena, StaticMemory};
    /// # static MEMORY: StaticMemory<{ 256 * 1024 }> = StaticMemory::new();
    /// # let source = Arena::new(MEMORY.take().unwrap());
    /// let heap: Buddy<Arena> = Buddy::new(source);
    /// let layout = Layout::from_size_align(100, 8).unwrap();
    /// let p = heap.allocate(layout).unwrap().cast::<u8>();
    /// // SAFETY: `p` is live with `layout`; the second call only looks.
    /// unsafe {
    ///     assert_eq!(heap.try_deallocate(p, layout), Ok(()));
    ///     let addr = p.as_ptr() as usize;
    ///     assert_eq!(heap.try_deallocate(p, layout), Err(Corruption::DoubleFree { addr }));
    /// }
    /// ```
    pub unsafe fn try_deallocate(
        &self,
        ptr: NonNull<u8>,
        layout: Layout,
    ) -> Result<(), Corruption> {
        if layout.size() == 0 {
            return Ok(());
        }
        let a = ptr.as_ptr().addr();
        // SAFETY: no other reference to the state is live (see `state`).
        let st = unsafe { self.state() };
        if st.blocked != 0 {
            return Ok(());
        }
        if let Some(k) = Self::order_for(layout) {
            if st.focus(a) && st.release_if_used(a, k)? {
                self.count_free(st, State::<MIN, ORDERS>::size(k));
                return Ok(());
            }
        }
        Err(Self::misuse(st, a))
    }

    /// Why `a` is not a used block of the order its layout asks for.
    #[cold]
    #[inline(never)]
    fn misuse(st: &State<MIN, ORDERS>, a: usize) -> Corruption {
        let Some(v) = st.user_zone_of(a) else {
            return Corruption::ForeignPointer { addr: a };
        };
        match Self::classify(&v, a) {
            Err(c) => c,
            Ok(_) => Corruption::SizeMismatch { addr: a },
        }
    }

    /// Frees `ptr` without its layout, or says what is wrong (the checked
    /// form of [`BlockSize::free`]).
    ///
    /// # Safety
    ///
    /// As for [`try_deallocate`](Self::try_deallocate).
    ///
    /// ```
    /// # use freespace_buddy::Buddy;
    /// # use freespace_core::{alloc::{Allocator, Layout}, Corruption};
    /// # use core::ptr::NonNull;
    /// # use freespace_source::{Arena, StaticMemory};
    /// # static MEMORY: StaticMemory<{ 256 * 1024 }> = StaticMemory::new();
    /// # let source = Arena::new(MEMORY.take().unwrap());
    /// let heap: Buddy<Arena> = Buddy::new(source);
    /// let p = heap.allocate(Layout::new::<[u64; 5]>()).unwrap().cast::<u8>();
    /// // SAFETY: `p` is live; freeing it twice is detected, not performed.
    /// unsafe {
    ///     let inner = p.add(16);
    ///     assert_eq!(heap.try_free(inner), Err(Corruption::InteriorPointer { addr: inner.as_ptr() as usize }));
    ///     assert_eq!(heap.try_free(p), Ok(()));
    /// }
    /// ```
    pub unsafe fn try_free(&self, ptr: NonNull<u8>) -> Result<(), Corruption> {
        let a = ptr.as_ptr().addr();
        // SAFETY: no other reference to the state is live (see `state`).
        let st = unsafe { self.state() };
        if st.blocked != 0 {
            return Ok(());
        }
        if !st.focus(a) {
            return Err(Corruption::ForeignPointer { addr: a });
        }
        let k = Self::classify(&st.hot, a)?;
        st.release(a, k)?;
        self.count_free(st, State::<MIN, ORDERS>::size(k));
        Ok(())
    }

    /// What `ptr` is to this heap, looked up without changing anything:
    /// `Ok(size)` when a used block of `size` bytes starts at `ptr`, else
    /// the [`Corruption`] a free of it would be — a foreign or misaligned
    /// pointer, an interior pointer, or a double free (`ptr` lies in a free
    /// block: freed, perhaps since merged with its buddy).
    ///
    /// Reads only the heap's bitmaps, never the memory at `ptr`: a layer
    /// above whose own tag in the block was overwritten by the free list's
    /// links (the malloc shim's header) asks this to name the fault.
    ///
    /// # Time complexity
    /// O(1) for a pointer in the zone used last, else O(zones).
    ///
    /// ```
    /// # use freespace_buddy::Buddy;
    /// # use freespace_core::{alloc::{Allocator, Layout}, Corruption};
    /// # use freespace_source::{Arena, StaticMemory};
    /// # static MEMORY: StaticMemory<{ 256 * 1024 }> = StaticMemory::new();
    /// let heap: Buddy<Arena> = Buddy::new(Arena::new(MEMORY.take().unwrap()));
    /// let l = Layout::from_size_align(100, 8).unwrap();
    /// let p = heap.allocate(l).unwrap().cast::<u8>();
    /// assert_eq!(heap.block_at(p), Ok(128));
    /// // SAFETY: 16 bytes into the 128-byte block.
    /// let inner = unsafe { p.add(16) };
    /// assert_eq!(heap.block_at(inner), Err(Corruption::InteriorPointer { addr: inner.as_ptr() as usize }));
    /// // SAFETY: `p` is live with `l`, freed once.
    /// unsafe { heap.deallocate(p, l) };
    /// assert_eq!(heap.block_at(p), Err(Corruption::DoubleFree { addr: p.as_ptr() as usize }));
    /// ```
    pub fn block_at(&self, ptr: NonNull<u8>) -> Result<usize, Corruption> {
        // SAFETY: no mutable reference to the state is live (see `state`);
        // this only reads it.
        let st = unsafe { &*self.state.get() };
        let a = ptr.as_ptr().addr();
        let Some(v) = st.user_zone_of(a) else {
            return Err(Corruption::ForeignPointer { addr: a });
        };
        Self::classify(&v, a).map(State::<MIN, ORDERS>::size)
    }

    /// For `a` in a zone's block range: the order of the used block starting
    /// at `a`, or why `a` is not one.
    fn classify(v: &View<MIN, ORDERS>, a: usize) -> Result<usize, Corruption> {
        if a % MIN != 0 {
            return Err(Corruption::MisalignedPointer { addr: a });
        }
        let k = v.order_of(a);
        let start = a & !(State::<MIN, ORDERS>::size(k) - 1);
        if v.is_free(start) {
            Err(Corruption::DoubleFree { addr: a })
        } else if start != a {
            Err(Corruption::InteriorPointer { addr: a })
        } else {
            Ok(k)
        }
    }

    /// Checks the invariants BUDDY-B1–B6 by walking every zone and every list.
    ///
    /// # Time complexity
    ///
    /// O(heap bytes / `MIN` + free blocks · `ORDERS`).
    ///
    /// ```
    /// # use freespace_buddy::Buddy;
    /// # struct Nothing;
    /// # unsafe impl freespace_core::Source for Nothing {
    /// #     fn acquire(&self, _: usize) -> Option<core::ptr::NonNull<[u8]>> { None }
    /// # }
    /// let heap: Buddy<Nothing> = Buddy::new(Nothing);
    /// assert_eq!(heap.check(), Ok(()));
    /// ```
    pub fn check(&self) -> Result<(), Violation> {
        // SAFETY: no mutable reference to the state is live (see `state`).
        let st = unsafe { &*self.state.get() };
        st.check()
    }

    /// Grows or shrinks `ptr` from `old` to `new` in place when the buddy
    /// tree allows, else `None`. `zeroed`: zero the bytes past `old.size()`.
    ///
    /// # Safety
    ///
    /// `ptr` is a live block allocated with `old` (`old.size() > 0`).
    unsafe fn resize_in_place(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
        zeroed: bool,
    ) -> Result<Option<NonNull<[u8]>>, AllocError> {
        let k_old = Self::order_for(old).ok_or(AllocError)?;
        let Some(k_new) = Self::order_for(new) else {
            return Err(AllocError);
        };
        let a = ptr.as_ptr().addr();
        // SAFETY: no other reference to the state is live (see `state`).
        let st = unsafe { self.state() };
        if st.blocked != 0 {
            return Err(AllocError);
        }
        let Some(v) = st.user_zone_of(a) else {
            return Err(AllocError);
        };
        if !v.is_block(a, k_old) || v.is_free(a) {
            return Err(AllocError);
        }
        if k_new <= k_old {
            st.shrink_in_place(&v, a, k_old, k_new);
        } else {
            match st.grow_in_place(&v, a, k_old, k_new) {
                Ok(true) => {}
                Ok(false) => return Ok(None),
                Err(c) => {
                    report(c, NAME);
                    return Err(AllocError);
                }
            }
        }
        let len = State::<MIN, ORDERS>::size(k_new);
        let p = v.ptr(a);
        if zeroed && len > old.size() {
            // SAFETY: the block `[a, a + len)` is ours and now live, and
            // `old.size() < len`.
            unsafe { p.add(old.size()).write_bytes(0, len - old.size()) };
        }
        Ok(Some(NonNull::slice_from_raw_parts(p, len)))
    }

    /// Whether a shrink from `old` to `new` should move the block rather
    /// than halve it in place: when it drops to a smaller order and a free
    /// block of an order in `[new, old)` exists elsewhere. Halving in place
    /// leaves the small block pinning its whole old block (none of the freed
    /// upper halves can merge past it); moving it into an existing smaller
    /// hole frees the old block whole, to merge with its buddy. Without such
    /// a hole, moving would split a block larger than the old one, so the
    /// block is halved in place instead (which cannot fail).
    fn shrink_moves(&self, old: Layout, new: Layout) -> bool {
        let (Some(k_old), Some(k_new)) = (Self::order_for(old), Self::order_for(new)) else {
            return false;
        };
        if k_new >= k_old {
            return false;
        }
        // SAFETY: no other reference to the state is live (see `state`).
        let st = unsafe { self.state() };
        let between = (usize::MAX << k_new) & !(usize::MAX << k_old);
        st.nonempty & between != 0
    }

    /// The moving half of `grow`/`shrink`: a new block, the contents copied,
    /// the old block freed.
    ///
    /// # Safety
    ///
    /// `ptr` is live with `old`; `new` is a valid target for `grow`/`shrink`.
    unsafe fn relocate(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
        zeroed: bool,
    ) -> Result<NonNull<[u8]>, AllocError> {
        // SAFETY: `ptr` is a live block of `self` with `old` (caller).
        unsafe { freespace_core::resize::relocate_within(self, ptr, old, new, zeroed) }
    }
}

/// Block by block (the provided methods): under a [`Locked`](https://docs.rs/freespace-sync) lock a run costs one acquisition.
impl<S: Source, const MIN: usize, const ORDERS: usize> freespace_core::Batch
    for Buddy<S, MIN, ORDERS>
{
}

// SAFETY: every block handed out is a distinct buddy block of at least
// `max(size, align)` bytes rounded to a power of two, aligned to its size,
// inside a region the heap owns (CORE-S1, CORE-S2); it stays untouched until freed
// (BUDDY-B3: only free blocks carry list nodes). Grow/shrink keep the contents
// (in place, or copied) and leave the block alone on failure. Nothing
// panics: every size computation is checked.
unsafe impl<S: Source, const MIN: usize, const ORDERS: usize> Allocator for Buddy<S, MIN, ORDERS> {
    #[inline]
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        if layout.size() == 0 {
            return Ok(dangling(layout));
        }
        let k = Self::order_for(layout).ok_or(AllocError)?;
        let p = self.allocate_order(k)?;
        Ok(NonNull::slice_from_raw_parts(
            p,
            State::<MIN, ORDERS>::size(k),
        ))
    }

    /// A block from [`allocate`](Allocator::allocate), cleared with
    /// [`freespace_core::source::clear`]: a large one by decommitting its
    /// pages (over `Mmap` or `Sbrk` a `1 GiB` zeroed block touches a page),
    /// a small one by writing.
    fn allocate_zeroed(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        let block = self.allocate(layout)?;
        // SAFETY: a fresh block of ours, in a region from the source,
        // whose contents nobody needs.
        unsafe { clear(&self.source, block) };
        Ok(block)
    }

    #[inline]
    unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
        // SAFETY: the caller gives up the live block `ptr` (`deallocate`'s contract).
        if let Err(c) = unsafe { self.try_deallocate(ptr, layout) } {
            report(c, NAME);
        }
    }

    unsafe fn grow(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        if old.size() == 0 {
            return self.allocate(new);
        }
        // SAFETY: `ptr` is live with `old` (`grow`'s contract).
        match unsafe { self.resize_in_place(ptr, old, new, false) }? {
            Some(block) => Ok(block),
            // SAFETY: as above.
            None => unsafe { self.relocate(ptr, old, new, false) },
        }
    }

    unsafe fn grow_zeroed(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        if old.size() == 0 {
            return self.allocate_zeroed(new);
        }
        // SAFETY: `ptr` is live with `old` (`grow_zeroed`'s contract).
        match unsafe { self.resize_in_place(ptr, old, new, true) }? {
            Some(block) => Ok(block),
            // SAFETY: as above.
            None => unsafe { self.relocate(ptr, old, new, true) },
        }
    }

    unsafe fn shrink(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        if new.size() == 0 {
            // SAFETY: `ptr` is live with `old` (`shrink`'s contract).
            unsafe { self.deallocate(ptr, old) };
            return Ok(dangling(new));
        }
        if self.shrink_moves(old, new) {
            // SAFETY: `ptr` is live with `old` (`shrink`'s contract); on
            // failure the block is untouched and halving in place follows.
            if let Ok(block) = unsafe { self.relocate(ptr, old, new, false) } {
                return Ok(block);
            }
        }
        // SAFETY: `ptr` is live with `old`, and `old.size() >= new.size() > 0`.
        match unsafe { self.resize_in_place(ptr, old, new, false) }? {
            Some(block) => Ok(block),
            // A larger alignment than the block has: move.
            // SAFETY: as above.
            None => unsafe { self.relocate(ptr, old, new, false) },
        }
    }
}

// SAFETY: `owns` is true exactly for addresses in a zone's block range
// `[lo, meta_lo)`, which contains every live block and nothing outside the
// heap.
unsafe impl<S: Source, const MIN: usize, const ORDERS: usize> Owns for Buddy<S, MIN, ORDERS> {
    /// ```
    /// # use freespace_buddy::Buddy;
    /// # use freespace_core::{alloc::{Allocator, Layout}, Owns};
    /// # use core::ptr::NonNull;
    /// # use freespace_source::{Arena, StaticMemory};
    /// # static MEMORY: StaticMemory<{ 256 * 1024 }> = StaticMemory::new();
    /// # let source = Arena::new(MEMORY.take().unwrap());
    /// let heap: Buddy<Arena> = Buddy::new(source);
    /// let p = heap.allocate(Layout::new::<u32>()).unwrap().cast::<u8>();
    /// assert!(heap.owns(p));
    /// assert!(!heap.owns(NonNull::from(&0u8)));
    /// ```
    fn owns(&self, ptr: NonNull<u8>) -> bool {
        // SAFETY: no mutable reference to the state is live (see `state`).
        let st = unsafe { &*self.state.get() };
        st.user_zone_of(ptr.as_ptr().addr()).is_some()
    }
}

// SAFETY: `usable_size` is the size of the block at `ptr` (its order from
// the split bits, BUDDY-B4), which is what `allocate` returned for it; `free`
// frees exactly that block, as `deallocate` with a layout of that order.
unsafe impl<S: Source, const MIN: usize, const ORDERS: usize> BlockSize for Buddy<S, MIN, ORDERS> {
    /// ```
    /// # use freespace_buddy::Buddy;
    /// # use freespace_core::{alloc::{Allocator, Layout}, BlockSize};
    /// # use core::ptr::NonNull;
    /// # use freespace_source::{Arena, StaticMemory};
    /// # static MEMORY: StaticMemory<{ 256 * 1024 }> = StaticMemory::new();
    /// # let source = Arena::new(MEMORY.take().unwrap());
    /// let heap: Buddy<Arena> = Buddy::new(source);
    /// let p = heap.allocate(Layout::from_size_align(100, 4).unwrap()).unwrap().cast::<u8>();
    /// // SAFETY: `p` is a live block of `heap`.
    /// unsafe {
    ///     assert_eq!(heap.usable_size(p), 128);
    ///     heap.free(p);
    /// }
    /// ```
    unsafe fn usable_size(&self, ptr: NonNull<u8>) -> usize {
        // SAFETY: no mutable reference to the state is live (see `state`).
        let st = unsafe { &*self.state.get() };
        let a = ptr.as_ptr().addr();
        match st.user_zone_of(a) {
            Some(v) => State::<MIN, ORDERS>::size(v.order_of(a)),
            None => 0,
        }
    }

    unsafe fn free(&self, ptr: NonNull<u8>) {
        // SAFETY: the caller gives up the live block `ptr`.
        if let Err(c) = unsafe { self.try_free(ptr) } {
            report(c, NAME);
        }
    }
}

/// Clears [`WALKING`] when a walk ends, even by unwinding out of `visit`.
struct WalkGuard(*mut u8);

impl Drop for WalkGuard {
    fn drop(&mut self) {
        // SAFETY: points at the `blocked` field of the live state of the
        // heap being walked; no reference to the state is live meanwhile.
        unsafe { *self.0 &= !WALKING };
    }
}

impl<S: Source, const MIN: usize, const ORDERS: usize> Inspect for Buddy<S, MIN, ORDERS> {
    /// Zones newest first; within a zone, in address order: trimmed bytes
    /// before `lo` (`Meta`), the blocks, then the zone's metadata (`Meta`).
    /// While the walk runs, the heap refuses allocations (they fail) and
    /// frees (the block is leaked), so `visit` cannot change what is walked.
    ///
    /// ```
    /// # use freespace_buddy::Buddy;
    /// # use freespace_core::{alloc::{Allocator, Layout}, HeapSummary};
    /// # use core::ptr::NonNull;
    /// # use freespace_source::{Arena, StaticMemory};
    /// # static MEMORY: StaticMemory<{ 256 * 1024 }> = StaticMemory::new();
    /// # let source = Arena::new(MEMORY.take().unwrap());
    /// let heap: Buddy<Arena> = Buddy::new(source);
    /// let _p = heap.allocate(Layout::new::<[u8; 1000]>()).unwrap();
    /// let s = HeapSummary::of(&heap);
    /// assert_eq!((s.used_blocks, s.used_bytes), (1, 1024));
    /// assert_eq!(s.total_bytes(), 256 * 1024); // blocks + metadata: the whole arena
    /// ```
    fn inspect(&self, visit: &mut dyn FnMut(BlockInfo)) {
        let st = self.state.get();
        // SAFETY: a short read and write through the cell, no reference kept.
        let blocked = unsafe { core::ptr::addr_of_mut!((*st).blocked) };
        // SAFETY: as above.
        if unsafe { *blocked } & WALKING != 0 {
            return;
        }
        // SAFETY: as above.
        unsafe { *blocked |= WALKING };
        let _guard = WalkGuard(blocked);
        // SAFETY: as above; the zone list cannot change during the walk
        // (WALKING makes every changing call refuse).
        let mut cur = unsafe { (*st).zones };
        while let Some(z) = cur {
            let v = State::<MIN, ORDERS>::view(z);
            if v.raw_start < v.lo {
                visit(BlockInfo {
                    addr: v.raw_start,
                    len: v.lo - v.raw_start,
                    state: BlockState::Meta,
                });
            }
            let mut a = v.lo;
            while a < v.meta_lo {
                let len = State::<MIN, ORDERS>::size(v.order_of(a));
                let state = if v.is_free(a) {
                    BlockState::Free
                } else {
                    BlockState::Used
                };
                visit(BlockInfo {
                    addr: a,
                    len,
                    state,
                });
                a += len;
            }
            visit(BlockInfo {
                addr: v.meta_lo,
                len: v.raw_end - v.meta_lo,
                state: BlockState::Meta,
            });
            cur = crate::zone::ZonePtr(z).get().next;
        }
    }
}

impl<S: Source, const MIN: usize, const ORDERS: usize> Drop for Buddy<S, MIN, ORDERS> {
    /// Offers every zone made of a single region back to the source.
    fn drop(&mut self) {
        let mut cur = self.state.get_mut().zones;
        while let Some(z) = cur {
            let h: Zone = crate::zone::ZonePtr(z).get();
            cur = h.next;
            if h.regions == 1 {
                let region = NonNull::slice_from_raw_parts(h.base, h.raw_end - h.raw_start);
                // SAFETY: `region` is exactly one region `acquire` returned
                // (CORE-S3 alignment and length); the heap is going away, so no
                // block in it is used through the heap again, and the
                // header read above is the last access to it.
                unsafe { self.source.release(region) };
            }
        }
    }
}

impl<S: Source, const MIN: usize, const ORDERS: usize> freespace_core::Check
    for Buddy<S, MIN, ORDERS>
{
    /// BUDDY-B1–B6 ([`check`](Buddy::check)); the buddy is a leaf over its source.
    fn check_all(&self) -> Result<(), Violation> {
        self.check()
    }
}

// SAFETY: `deallocate` is `try_deallocate` plus a report of its error, so a
// live block is freed the same way; an `Err` is returned before the block
// is marked free or linked (every check precedes the release).
unsafe impl<S: Source, const MIN: usize, const ORDERS: usize> freespace_core::CheckedFree
    for Buddy<S, MIN, ORDERS>
{
    #[inline]
    unsafe fn try_deallocate(&self, ptr: NonNull<u8>, layout: Layout) -> Result<(), Corruption> {
        // SAFETY: the caller's contract is the inherent method's.
        unsafe { Buddy::try_deallocate(self, ptr, layout) }
    }
}

/// Gives back the pages of every free block of a page or more (all but
/// the page holding each block's free-list node) through
/// [`Source::decommit`]. Over a source that keeps everything it gives back
/// nothing.
///
/// ```
/// # #[cfg(not(miri))] { // Miri cannot call mmap
/// use freespace_buddy::Buddy;
/// use freespace_core::alloc::{Allocator, Layout};
/// use freespace_core::Trim;
/// use freespace_source::Mmap;
///
/// let heap: Buddy<Mmap> = Buddy::new(Mmap::new());
/// let layout = Layout::from_size_align(8 << 20, 16).unwrap();
/// let block = heap.allocate(layout).unwrap();
/// unsafe { block.cast::<u8>().write_bytes(1, block.len()) }; // resident now
/// unsafe { heap.deallocate(block.cast(), layout) };
/// assert!(heap.trim() >= (8 << 20) - 4096);
/// heap.check().unwrap();
/// # }
/// ```
impl<S: Source, const MIN: usize, const ORDERS: usize> Trim for Buddy<S, MIN, ORDERS> {
    fn trim(&self) -> usize {
        // SAFETY: no other reference to the state is live (see `state`).
        let st = unsafe { self.state() };
        self.trim_from(st, TRIM_MIN)
    }
}
