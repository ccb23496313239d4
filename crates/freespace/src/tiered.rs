//! [`Tiered`]: a buddy for page-aligned blocks, and a best-fit free list
//! inside the buddy for everything else — the parent of
//! [`General`](crate::stacks::General)'s slab.
//!
//! A slab asks its parent for `Layout(SLAB_SIZE, SLAB_SIZE)`. A buddy
//! packs such blocks side by side, but rounds every other request up to a
//! power of two (a quarter of the memory, on average, for sizes spread
//! evenly). A best-fit free list serves any size at its own size (a
//! 16-byte header, rounding to 16), but cannot put two aligned blocks side
//! by side: each block's header sits in front of it, so every slab would
//! leave a slab-sized gap behind it. `Tiered` gives each request to the one
//! that serves it well, in one stretch of memory:
//!
//! ```text
//!                       Tiered<S, PAGE>
//!      align >= PAGE                    everything else
//!      (the slab's pages)               (blocks above the slab's classes,
//!             │                          the slab's index table)
//!             │                                    ▼
//!             │                       BestFitHeap<FromBuddy<S>>
//!             ▼                                    │ regions: whole buddy
//!      Buddy<S, 4 KiB>  ◀──────────────────────────┘ blocks, 64 KiB or more
//!             │
//!             ▼ regions
//!             S
//! ```
//!
//! The best-fit heap's regions are buddy blocks, so both heaps share one
//! source and neither holds memory the other may need until it asks: a
//! page the slab gives back merges in the buddy and may become a best-fit
//! region, and a region's free space serves every size the best-fit heap
//! sees. Routing is by alignment (and, past the buddy's largest block, by
//! size), which a free repeats exactly (the `Allocator` contract frees with
//! the alignment the block was asked with, and a size no buddy block
//! straddles).
//!
//! A request larger than the buddy's largest block ([`BUDDY_MAX`], 2 GiB),
//! or one that would need a best-fit region that large, is no exception:
//! the best-fit heap then takes a region of its own straight from the
//! source ([`FromBuddy`] asks `S` instead of the buddy), so `General`
//! serves a 3 GiB request as the C library does, untouched until written.
//! A page-aligned request of that size goes to the best-fit heap too.
//!
//! What it does not do: the best-fit heap does not give its regions back to
//! the buddy (or, for those large regions, to the source) while it lives
//! (it offers their pages to the source through the release on free,
//! `trim` and its purge budget instead), so memory that served mid-sized
//! blocks does not become slab pages later.

use core::ptr::NonNull;

use crate::alloc::{AllocError, Allocator, Layout};
use crate::{
    BestFitHeap, BlockInfo, BlockSize, Buddy, CheckedFree, Corruption, Inspect, Owns, Source, Trim,
    Violation,
};
use freespace_core::layout::dangling;
use freespace_core::resize::{empty_side, relocate_within, resize_in};

/// The alignment at and above which a [`Tiered`] routes a request to its
/// buddy by default: 16 KiB, the slab size of
/// [`General`](crate::stacks::General).
///
/// ```
/// assert_eq!(freespace::tiered::PAGE_ALIGN, 16 * 1024);
/// ```
pub const PAGE_ALIGN: usize = 16 * 1024;

/// The smallest block of a [`Tiered`]'s buddy: it serves pages and the
/// best-fit heap's regions, never anything smaller, so its bitmaps need
/// one bit pair per 4 KiB, not per 16 bytes.
///
/// ```
/// assert_eq!(freespace::tiered::PageBuddy::<freespace::Mmap>::MIN_BLOCK, freespace::tiered::BUDDY_MIN);
/// ```
pub const BUDDY_MIN: usize = 4096;

/// The orders of a [`Tiered`]'s buddy: blocks up to 4 KiB << 19 = 2 GiB
/// ([`BUDDY_MAX`]), the largest block of a default [`Buddy`] too; only a
/// best-fit region longer than that is asked of the source directly.
///
/// ```
/// assert_eq!(freespace::tiered::BUDDY_MIN << (freespace::tiered::BUDDY_ORDERS - 1), 2 << 30);
/// ```
pub const BUDDY_ORDERS: usize = 20;

/// The largest block of a [`Tiered`]'s buddy, 2 GiB: a region the best-fit
/// heap needs beyond it comes from the source itself.
///
/// ```
/// assert_eq!(freespace::tiered::BUDDY_MAX, 2 << 30);
/// ```
pub const BUDDY_MAX: usize = BUDDY_MIN << (BUDDY_ORDERS - 1);

/// A [`Tiered`]'s buddy: blocks of 4 KiB to 2 GiB.
///
/// ```
/// use freespace::alloc::{Allocator, Layout};
/// let buddy: freespace::tiered::PageBuddy<_> = freespace::Buddy::new(freespace::Mmap::new());
/// let b = buddy.allocate(Layout::from_size_align(100, 16).unwrap()).unwrap();
/// assert_eq!(b.len(), 4096);
/// # unsafe { buddy.deallocate(b.cast(), Layout::from_size_align(100, 16).unwrap()) };
/// ```
pub type PageBuddy<S> = Buddy<S, BUDDY_MIN, BUDDY_ORDERS>;

/// A [`Source`] whose regions are blocks of a [`Buddy`] over `S`: where
/// [`Tiered`]'s best-fit heap gets its memory.
///
/// A region is the whole buddy block (a power of two, aligned to its size),
/// so two regions that are buddies or neighbours are contiguous and the
/// best-fit heap joins them. A region longer than the buddy's largest
/// block ([`BUDDY_MAX`]) is a region of `S` itself, asked for directly.
/// A buddy block's pages are given back to `S` ([`Source::decommit`]) as
/// it becomes a region: blocks of the buddy that lay there before (slabs,
/// the free-list nodes of split halves) may have left pages resident,
/// which the best-fit heap, writing only a region's boundaries, would
/// otherwise carry idle inside a free chunk. `release` gives a buddy
/// block back to the buddy (and keeps a region of `S`: `false`);
/// `decommit` is the buddy's source's, since both kinds of region lie
/// inside one of that source's regions.
///
/// ```
/// use freespace::tiered::FromBuddy;
/// use freespace::{Buddy, Mmap, Source};
/// let regions = FromBuddy::new(Buddy::new(Mmap::new()));
/// let region = regions.acquire(100_000).unwrap();
/// assert_eq!(region.len(), 128 * 1024);
/// // SAFETY: `region` came from `regions` and nothing in it is in use.
/// assert!(unsafe { regions.release(region) });
/// ```
pub struct FromBuddy<S: Source> {
    buddy: PageBuddy<S>,
}

impl<S: Source> FromBuddy<S> {
    /// Regions from `buddy`. Does no work.
    ///
    /// ```
    /// use freespace::{tiered::FromBuddy, Buddy, Mmap};
    /// let _regions = FromBuddy::new(Buddy::new(Mmap::new()));
    /// ```
    pub const fn new(buddy: PageBuddy<S>) -> Self {
        Self { buddy }
    }

    /// The buddy the regions come from.
    ///
    /// ```
    /// use freespace::{tiered::FromBuddy, Buddy, Mmap};
    /// let regions = FromBuddy::new(Buddy::new(Mmap::new()));
    /// assert!(regions.buddy().check().is_ok());
    /// ```
    pub const fn buddy(&self) -> &PageBuddy<S> {
        &self.buddy
    }
}

// SAFETY: a region is a whole live block of the buddy, as long as the
// buddy reported (the `Allocator` contract makes all of it usable):
// valid for reads and writes, with the buddy's provenance, for as long as
// the buddy — and so `self` — lives (CORE-S1); it stays live until
// `release` frees it, so it overlaps no other block and belongs to the
// caller alone (CORE-S2); buddy blocks are powers of two of at least 16
// bytes aligned to their size (CORE-S3); `allocate` returns `Err` rather
// than panicking (CORE-S4). Or it is a region of the buddy's source,
// asked for directly, with that source's guarantees (CORE-S1 to S4): the
// source never hands out memory twice, so it overlaps no buddy block, and
// it is never released (`release` answers `false` for it, the buddy not
// owning it). `zeroed` is `false`, so CORE-S6 asks nothing. `decommit`
// passes on to the buddy's source a range inside one of that source's
// regions (a buddy block lies in a region of its source; a direct region
// is one), so CORE-S5 is the source's.
unsafe impl<S: Source> Source for FromBuddy<S> {
    fn acquire(&self, min_len: usize) -> Option<NonNull<[u8]>> {
        if min_len > BUDDY_MAX {
            // No buddy block is that large: a region of the source itself.
            return self.buddy.source().acquire(min_len);
        }
        let layout = Layout::from_size_align(min_len.max(1), freespace_core::REGION_ALIGN).ok()?;
        let region = self.buddy.allocate(layout).ok()?;
        // Buddy blocks that lay here before (slabs, the free-list nodes of
        // split halves) may have left pages resident that the best-fit
        // heap would carry idle inside a free chunk: give them back now
        // (one call per region; the heap writes only the region's
        // boundaries).
        // SAFETY: `region` is a live block of the buddy, ours alone (just
        // allocated), inside one of the buddy's source's regions; nothing
        // reads its contents (the buddy reads nothing inside a live block,
        // and the caller gets it as a fresh region, `zeroed` false).
        unsafe { self.buddy.source().decommit(region) };
        Some(region)
    }

    unsafe fn release(&self, region: NonNull<[u8]>) -> bool {
        // Only a whole block is taken back: a region `acquire` returned
        // starts a live block of exactly its length.
        let ptr = region.cast::<u8>();
        if !self.buddy.owns(ptr) || self.buddy.block_at(ptr) != Ok(region.len()) {
            return false;
        }
        // SAFETY: `region` is a whole live block of the buddy (checked
        // above; the caller vouches it lies within a region we returned
        // and holds nothing inside it), freed with its own length.
        unsafe {
            self.buddy.deallocate(
                ptr,
                Layout::from_size_align_unchecked(region.len(), freespace_core::REGION_ALIGN),
            )
        };
        true
    }

    unsafe fn decommit(&self, region: NonNull<[u8]>) -> Option<NonNull<[u8]>> {
        // SAFETY: `region` lies within a region `acquire` returned (caller
        // contract): a live block of the buddy, which lies within a region
        // the buddy's source returned and has not taken back, or such a
        // region of the source itself, never taken back; the caller
        // holds nothing inside it and does not need its contents, and the
        // buddy reads nothing inside a live block.
        unsafe { self.buddy.source().decommit(region) }
    }

    fn decommits(&self) -> bool {
        self.buddy.source().decommits()
    }
}

/// The parent of [`General`](crate::stacks::General)'s slab: requests
/// aligned to at least `PAGE` bytes (the slab's pages) go to a buddy over
/// `S`; every other request goes to a best-fit heap whose regions are
/// blocks of that buddy. See the [module docs](self).
///
/// # Invariants
/// - TIER-1: a live block asked for with an alignment of at least `PAGE`
///   and at most [`BUDDY_MAX`] bytes is a live block of the buddy outside
///   the best-fit heap's regions; every other live block is a live block
///   of the best-fit heap.
/// - TIER-2: every region of the best-fit heap is made of live blocks of
///   the buddy and of regions of the source longer than [`BUDDY_MAX`]
///   (what it got from [`FromBuddy`], joined when contiguous).
///
/// It holds by construction: every method routes by the layout's
/// alignment and size, which the contract keeps from allocation to free
/// (a block may be freed with any size between the one asked for and the
/// one returned, and a buddy block is never longer than [`BUDDY_MAX`]), and
/// a resize that changes sides moves the block.
///
/// `Tiered` is `Send` when `S` is, and `!Sync` (wrap it in a lock to share
/// it, as [`Shared`](crate::stacks::Shared) does):
///
/// ```compile_fail
/// fn shared<T: Sync>() {}
/// shared::<freespace::tiered::Tiered<freespace::Mmap>>();
/// ```
///
/// ```
/// use freespace::alloc::{Allocator, Layout};
/// use freespace::tiered::{Tiered, PAGE_ALIGN};
/// use freespace::Mmap;
/// let heap = Tiered::new(Mmap::new());
/// // A 40 000-byte block is 40 000 bytes of the best-fit heap (not 64 KiB) ...
/// let block = heap.allocate(Layout::from_size_align(40_000, 16).unwrap()).unwrap();
/// assert!(block.len() < 40_100);
/// // ... and a page is a buddy block, side by side with the next one.
/// let page = Layout::from_size_align(PAGE_ALIGN, PAGE_ALIGN).unwrap();
/// let (a, b) = (heap.allocate(page).unwrap(), heap.allocate(page).unwrap());
/// assert_eq!((a.cast::<u8>().as_ptr() as usize).abs_diff(b.cast::<u8>().as_ptr() as usize), PAGE_ALIGN);
/// # unsafe { heap.deallocate(block.cast(), Layout::from_size_align(40_000, 16).unwrap()) };
/// # unsafe { heap.deallocate(a.cast(), page); heap.deallocate(b.cast(), page) };
/// heap.check().unwrap();
/// ```
pub struct Tiered<S: Source, const PAGE: usize = PAGE_ALIGN> {
    heap: BestFitHeap<FromBuddy<S>>,
}

impl<S: Source> Tiered<S> {
    /// A buddy over `source` for pages of [`PAGE_ALIGN`] (16 KiB) or more,
    /// with a best-fit heap inside it for everything else. Does no work.
    ///
    /// ```
    /// let _heap = freespace::tiered::Tiered::new(freespace::Mmap::new());
    /// ```
    pub const fn new(source: S) -> Self {
        Self::sized(source)
    }
}

impl<S: Source, const PAGE: usize> Tiered<S, PAGE> {
    /// [`Tiered::new`] with pages of `PAGE` bytes: requests aligned to at
    /// least `PAGE` go to the buddy.
    ///
    /// ```
    /// use freespace::tiered::Tiered;
    /// let _heap: Tiered<_, 65536> = Tiered::sized(freespace::Mmap::new());
    /// ```
    pub const fn sized(source: S) -> Self {
        Self {
            heap: BestFitHeap::new(FromBuddy::new(Buddy::new(source))),
        }
    }

    /// The buddy that serves the pages.
    ///
    /// ```
    /// let heap = freespace::tiered::Tiered::new(freespace::Mmap::new());
    /// assert!(heap.buddy().check().is_ok());
    /// ```
    pub fn buddy(&self) -> &PageBuddy<S> {
        self.heap.source().buddy()
    }

    /// The best-fit heap that serves everything but the pages.
    ///
    /// ```
    /// let heap = freespace::tiered::Tiered::new(freespace::Mmap::new());
    /// assert!(heap.best_fit().check().is_ok());
    /// ```
    pub const fn best_fit(&self) -> &BestFitHeap<FromBuddy<S>> {
        &self.heap
    }

    /// Sets both heaps' purge budget: after each `bytes` freed, their large
    /// free blocks give their pages back to the source.
    ///
    /// ```
    /// let heap = freespace::tiered::Tiered::new(freespace::Mmap::new());
    /// heap.set_purge_after(1 << 20);
    /// assert_eq!(heap.purge_after(), 1 << 20);
    /// ```
    pub fn set_purge_after(&self, bytes: usize) {
        self.buddy().set_purge_after(bytes);
        self.best_fit().set_purge_after(bytes);
    }

    /// The best-fit heap's purge budget (see [`set_purge_after`](Self::set_purge_after)).
    ///
    /// ```
    /// let heap = freespace::tiered::Tiered::new(freespace::Mmap::new());
    /// assert!(heap.purge_after() > 0);
    /// ```
    pub fn purge_after(&self) -> usize {
        self.best_fit().purge_after()
    }

    /// Checks both heaps' invariants.
    ///
    /// ```
    /// let heap = freespace::tiered::Tiered::new(freespace::Mmap::new());
    /// let v = freespace::alloc::Vec::<u8, _>::with_capacity_in(1 << 20, &heap);
    /// heap.check().unwrap();
    /// # drop(v);
    /// ```
    pub fn check(&self) -> Result<(), Violation> {
        self.best_fit().check()?;
        self.buddy().check()
    }

    /// Names the block at `ptr` for a fault report, reading only the heaps'
    /// own metadata (never the memory at `ptr`): `Ok(len)` for a live block
    /// that starts there, else what `ptr` is — a pointer into a free block
    /// is [`Corruption::DoubleFree`], into a live one
    /// [`Corruption::InteriorPointer`], outside both heaps
    /// [`Corruption::ForeignPointer`]. The malloc shim asks it when a
    /// block's own header no longer makes sense (a free-list link
    /// overwrote it).
    ///
    /// # Time complexity
    /// As [`Buddy::block_at`] for a page; a walk of the best-fit heap
    /// ([`FreeListHeap::block_at`](crate::FreeListHeap::block_at)), O(its
    /// blocks), for anything else: meant for error paths.
    ///
    /// ```
    /// use freespace::alloc::{Allocator, Layout};
    /// use freespace::Corruption;
    /// let heap = freespace::tiered::Tiered::new(freespace::Mmap::new());
    /// let l = Layout::from_size_align(5000, 16).unwrap();
    /// let p = heap.allocate(l).unwrap().cast::<u8>();
    /// assert_eq!(heap.block_at(p), Ok(5008));
    /// // SAFETY: `p` is live with `l`, freed once.
    /// unsafe { heap.deallocate(p, l) };
    /// assert_eq!(heap.block_at(p), Err(Corruption::DoubleFree { addr: p.as_ptr() as usize }));
    /// ```
    pub fn block_at(&self, ptr: NonNull<u8>) -> Result<usize, Corruption> {
        if self.heap.owns(ptr) {
            self.heap.block_at(ptr)
        } else {
            self.buddy().block_at(ptr)
        }
    }

    /// Frees `ptr` like [`deallocate`](Allocator::deallocate), or says
    /// why it cannot, touching nothing then: the side the layout routes to
    /// must hold the pointer (a block of the other side is a
    /// [`Corruption::SizeMismatch`], one of neither a
    /// [`Corruption::ForeignPointer`]), and that side's checked free
    /// names a double free, an interior pointer or a damaged header.
    ///
    /// # Safety
    /// As [`CheckedFree::try_deallocate`]: `ptr` is not used again after `Ok`.
    ///
    /// ```
    /// use freespace::alloc::{Allocator, Layout};
    /// use freespace::Corruption;
    /// let heap = freespace::tiered::Tiered::new(freespace::Mmap::new());
    /// let l = Layout::from_size_align(5000, 16).unwrap();
    /// let p = heap.allocate(l).unwrap().cast::<u8>();
    /// // SAFETY: `p` is live with `l`; the second free is refused, not done.
    /// unsafe {
    ///     assert_eq!(heap.try_deallocate(p, l), Ok(()));
    ///     assert!(matches!(heap.try_deallocate(p, l), Err(Corruption::DoubleFree { .. })));
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
        let addr = ptr.as_ptr().addr();
        let in_best_fit = self.heap.owns(ptr);
        if Self::is_page(layout) {
            if in_best_fit {
                // Inside a best-fit region, which is made of live buddy
                // blocks (or is a region of the source): never hand it to
                // the buddy's free (TIER-2).
                return Err(Corruption::SizeMismatch { addr });
            }
            // SAFETY: outside the best-fit heap's regions, so if `ptr` is a
            // live block of ours it is the buddy's (TIER-1) and `layout`
            // fits it (caller contract); if not, the buddy's checked free
            // refuses it without taking anything back.
            unsafe { CheckedFree::try_deallocate(self.buddy(), ptr, layout) }
        } else if in_best_fit {
            // SAFETY: inside the best-fit heap's regions: a live block of
            // ours there is the heap's (TIER-1); anything else its checked
            // free refuses without taking anything back.
            unsafe { CheckedFree::try_deallocate(&self.heap, ptr, layout) }
        } else if self.buddy().owns(ptr) {
            Err(Corruption::SizeMismatch { addr })
        } else {
            Err(Corruption::ForeignPointer { addr })
        }
    }

    /// Whether `layout` goes to the buddy (TIER-1).
    #[inline(always)]
    const fn is_page(layout: Layout) -> bool {
        layout.align() >= PAGE && layout.size() <= BUDDY_MAX
    }

    /// The buddy's allocation, out of line: inlined, its frame (six saved
    /// registers) was set up and torn down around every block the
    /// best-fit heap serves too; apart, `allocate` is a test and a jump to
    /// either side.
    #[inline(never)]
    fn allocate_page(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        self.buddy().allocate(layout)
    }

    /// The buddy's free, out of line, as [`allocate_page`](Self::allocate_page).
    ///
    /// # Safety
    /// As `deallocate`, for a layout that routes to the buddy (TIER-1).
    #[inline(never)]
    unsafe fn deallocate_page(&self, ptr: NonNull<u8>, layout: Layout) {
        // SAFETY: a page-aligned layout means a buddy block (TIER-1).
        unsafe { self.buddy().deallocate(ptr, layout) }
    }

    unsafe fn resize(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
        zeroed: bool,
    ) -> Result<NonNull<[u8]>, AllocError> {
        // SAFETY: `ptr` is live with `old`, or `old` is empty (caller
        // contract).
        if let Some(done) = unsafe { empty_side(self, ptr, old, new, zeroed) } {
            return done;
        }
        match (Self::is_page(old), Self::is_page(new)) {
            // SAFETY: `old` routes to the buddy, so the block is the buddy's
            // (TIER-1) and `old` fits it; the size precondition is the caller's.
            (true, true) => unsafe { resize_in(self.buddy(), ptr, old, new, zeroed) },
            // SAFETY: `old` routes to the best-fit heap, so the block is its
            // (TIER-1).
            (false, false) => unsafe { resize_in(self.best_fit(), ptr, old, new, zeroed) },
            // SAFETY: `ptr` is a live block of `self` with `old`, which
            // routes its free to the side that allocated it; a fresh block
            // from the other side never overlaps it.
            _ => unsafe { relocate_within(self, ptr, old, new, zeroed) },
        }
    }
}

/// Block by block (the provided methods): a run routes each block on its own.
impl<S: Source, const PAGE: usize> freespace_core::Batch for Tiered<S, PAGE> {}

// SAFETY: every block is a block of the buddy or of the best-fit heap,
// passed on unchanged; TIER-1 sends each free, with any fitting size (the
// alignment is the one it was asked with), to the side that allocated it.
unsafe impl<S: Source, const PAGE: usize> Allocator for Tiered<S, PAGE> {
    #[inline]
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        if layout.size() == 0 {
            Ok(dangling(layout))
        } else if Self::is_page(layout) {
            self.allocate_page(layout)
        } else {
            self.best_fit().allocate(layout)
        }
    }

    fn allocate_zeroed(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        if layout.size() == 0 {
            Ok(dangling(layout))
        } else if Self::is_page(layout) {
            self.buddy().allocate_zeroed(layout)
        } else {
            self.best_fit().allocate_zeroed(layout)
        }
    }

    #[inline]
    unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
        if layout.size() == 0 {
        } else if Self::is_page(layout) {
            // SAFETY: a page-aligned layout means a buddy block (TIER-1).
            unsafe { self.deallocate_page(ptr, layout) }
        } else {
            // SAFETY: any other layout means a best-fit block (TIER-1).
            unsafe { self.best_fit().deallocate(ptr, layout) }
        }
    }

    freespace_core::forward_resize!(method resize);
}

// SAFETY: every live block of ours lies in the buddy's zones or in one of
// the best-fit heap's regions (TIER-2), for which one of the two answers
// `true`; neither answers `true` outside its own memory.
unsafe impl<S: Source, const PAGE: usize> Owns for Tiered<S, PAGE> {
    #[inline]
    fn owns(&self, ptr: NonNull<u8>) -> bool {
        self.buddy().owns(ptr) || self.heap.owns(ptr)
    }
}

// SAFETY: the best-fit heap owns exactly the addresses of its regions,
// which hold all of its blocks and none of the buddy's pages (TIER-1,
// TIER-2), so a live block is asked of the heap that holds it.
unsafe impl<S: Source, const PAGE: usize> BlockSize for Tiered<S, PAGE> {
    #[inline]
    unsafe fn usable_size(&self, ptr: NonNull<u8>) -> usize {
        if self.heap.owns(ptr) {
            // SAFETY: a live block of the best-fit heap (caller contract, `owns`).
            unsafe { self.heap.usable_size(ptr) }
        } else {
            // SAFETY: a live block of ours outside the best-fit heap: the buddy's.
            unsafe { self.buddy().usable_size(ptr) }
        }
    }

    #[inline]
    unsafe fn free(&self, ptr: NonNull<u8>) {
        if self.heap.owns(ptr) {
            // SAFETY: a live block of the best-fit heap.
            unsafe { self.heap.free(ptr) }
        } else {
            // SAFETY: a live block of the buddy.
            unsafe { self.buddy().free(ptr) }
        }
    }
}

/// Walks the buddy, each of the best-fit heap's regions replaced by that
/// heap's own blocks, so every byte is reported once.
impl<S: Source, const PAGE: usize> Inspect for Tiered<S, PAGE> {
    fn inspect(&self, visit: &mut dyn FnMut(BlockInfo)) {
        self.buddy().inspect(&mut |b| {
            // Only the address is read: `owns` never dereferences.
            let inside = NonNull::new(core::ptr::without_provenance_mut::<u8>(b.addr))
                .is_some_and(|p| self.heap.owns(p));
            if !inside {
                visit(b);
            }
        });
        self.heap.inspect(visit);
    }
}

// SAFETY: the inherent `try_deallocate` frees through a side's checked
// free only when the pointer lies in that side's memory and the layout
// routes there (so a live block is freed exactly as `deallocate` would),
// and an `Err` from it, or from the checks before it, took nothing back.
unsafe impl<S: Source, const PAGE: usize> CheckedFree for Tiered<S, PAGE> {
    #[inline]
    unsafe fn try_deallocate(&self, ptr: NonNull<u8>, layout: Layout) -> Result<(), Corruption> {
        // SAFETY: the caller's contract is the inherent method's.
        unsafe { Tiered::try_deallocate(self, ptr, layout) }
    }
}

impl<S: Source, const PAGE: usize> freespace_core::Check for Tiered<S, PAGE> {
    fn check_all(&self) -> Result<(), Violation> {
        self.check()
    }
}

impl<S: Source, const PAGE: usize> Trim for Tiered<S, PAGE> {
    fn trim(&self) -> usize {
        self.buddy().trim() + self.best_fit().trim()
    }
}
