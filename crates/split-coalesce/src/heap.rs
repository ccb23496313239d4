//! [`FreeListHeap`]: allocation (placement, splitting), growth through the
//! source, and the in-place `grow`/`shrink`.

use core::cell::UnsafeCell;
use core::ptr::NonNull;

use freespace_core::alloc::{AllocError, Allocator, Layout};
use freespace_core::layout::{self, dangling};
use freespace_core::{report, Corruption, KeySource, Source};
use freespace_freelist::chunk::{chunk_size_for, Chunk, Flags, FENCE, REGION_HEADER};
use freespace_freelist::tree::{ByAddress, Key, Tree};
use freespace_freelist::{Fit, Pick, Request, GRANULE, HEADER, MIN_CHUNK};

use crate::error::RegionError;
use crate::free::Common;
use crate::region::Region;

/// The name corruption reports give this heap.
pub(crate) const NAME: &str = "free-list heap";

/// How much a heap asks its source for at least, when it grows: fewer,
/// larger regions mean fewer fenceposts and a shorter region list.
pub const GROWTH: usize = 64 * 1024;

/// A heap that keeps a list of free chunks, splits a chunk to serve a
/// smaller request, coalesces freed chunks with their free neighbours,
/// checks a magic number on every free, grows through its [`Source`] `S`,
/// and lets the policy `F` choose which free chunk serves a request.
///
/// The chunk format is `freespace_freelist`'s (see its crate docs for the
/// diagram): a 16-byte header in front of every payload, boundary tags on
/// free chunks, fenceposts at both ends of every region.
///
/// # Invariants
///
/// Numbered as [`check`](Self::check) reports them:
///
/// - SC-H1 (regions): the regions are linked in increasing address order and
///   do not overlap; each starts with an intact region header and ends with
///   an intact 16-byte fencepost, both `ALLOCATED | FENCE`; the region
///   index (an address tree of nodes inside the region headers) holds
///   exactly the listed regions.
/// - SC-H2 (tiling): within a region the chunk sizes tile the bytes between
///   header and fencepost exactly; every size is a multiple of 16 and at
///   least [`MIN_CHUNK`].
/// - SC-H3 (headers): every allocated chunk's magic matches its address and
///   size word; no inner chunk carries `FENCE`.
/// - SC-H4 (boundary tags): a chunk (fencepost included) has `PREV_FREE` set
///   exactly when the chunk before it is free, and every free chunk's last
///   word is its size.
/// - SC-H5 (coalesced): no two free chunks are adjacent.
/// - SC-H6 (free set): the policy's index holds every free chunk exactly once
///   and nothing else ([`Fit::contains`], [`Fit::len`]).
/// - SC-H7 (policy): the policy's own invariants hold ([`Fit::check`]: for
///   the indexed policies, the trees' order, balance and augmented sizes).
/// - SC-H8 (slack): an allocated chunk is at most 16 bytes larger than the
///   chunk its request needs (a remainder under [`MIN_CHUNK`] is not split
///   off: that is the internal fragmentation [`Inspect`](freespace_core::Inspect)
///   shows as part of the used block). `deallocate` relies on this to check
///   the layout.
/// - SC-H9 (span): the state's span runs from the lowest region's first
///   chunk to the highest region's fencepost (empty while there is no
///   region): the plain free's common case reads a header only inside it.
///
/// # Example
///
/// ```
/// use core::mem::MaybeUninit;
/// use freespace_core::HeapSummary;
/// use freespace_first_fit::FirstFit;
/// use freespace_source::Arena;
/// use freespace_split_coalesce::FreeListHeap;
///
/// let memory = Box::leak(Box::new([MaybeUninit::uninit(); 8192]));
/// let heap: FreeListHeap<FirstFit, Arena> = FreeListHeap::new(Arena::new(memory));
/// let mut v = allocator_api2::vec::Vec::new_in(&heap);
/// v.extend(0..100u32);
/// assert_eq!(v.iter().sum::<u32>(), 4950);
/// heap.check().unwrap();
/// drop(v);
/// assert_eq!(HeapSummary::of(&heap).used_blocks, 0);
/// ```
pub struct FreeListHeap<F: Fit, S: Source> {
    source: S,
    state: UnsafeCell<State<F>>,
}

pub(crate) struct State<F> {
    /// The placement policy and its index of the free chunks (SC-H6, SC-H7).
    pub(crate) fit: F,
    /// The lowest region (SC-H1).
    pub(crate) regions: Option<Region>,
    /// The regions again, as an address tree of their headers' nodes
    /// (SC-H1): a free finds its region in O(log regions).
    pub(crate) region_index: Tree<ByAddress>,
    /// The secret mixed into every magic, so user data cannot forge a
    /// header and a pointer into another heap fails the check. Derived
    /// from the seed by the constructor of a seeded heap; otherwise 0
    /// until the first region arrives, drawn from the OS then, before any
    /// header is written. Never changed once non-zero.
    pub(crate) key: usize,
    /// Bytes freed between automatic purges (`usize::MAX`: never).
    pub(crate) purge_after: usize,
    /// Bytes still to be freed before the next automatic purge: counts
    /// down from `purge_after`, so a free tests it with one comparison.
    pub(crate) until_purge: usize,
    /// The lowest region's first chunk (SC-H9; `usize::MAX` with no region).
    pub(crate) span_lo: usize,
    /// The highest region's fencepost (SC-H9; 0 with no region).
    pub(crate) span_hi: usize,
    /// A free of a chunk at least this large gives its whole pages back at
    /// once (`usize::MAX`: never); raised past each chunk so released, up
    /// to `RELEASE_AT_MAX`.
    pub(crate) release_at: usize,
}

// SAFETY: the heap owns its regions outright (CORE-S2, `Source`) and the policy's
// state only names chunks inside them (FL-P2, `Fit`), so moving the heap to
// another thread moves everything it points to with it.
unsafe impl<F: Fit, S: Source + Send> Send for FreeListHeap<F, S> {}

/// How a free went wrong, before the report.
pub(crate) type FreeResult = Result<(), Corruption>;

impl<F: Fit, S: Source> FreeListHeap<F, S> {
    /// A heap over `source`; no memory is asked for until the first
    /// allocation.
    ///
    /// The key its header magic numbers are computed with is drawn from the
    /// operating system when the first region is set up
    /// ([`KeySource::Os`]: `getrandom` on Linux). On a target without an OS
    /// random source (bare metal) that key is derived from addresses and is
    /// **not secret**: use [`with_seed`](Self::with_seed) there.
    ///
    /// ```
    /// use freespace_best_fit::BestFit;
    /// use freespace_source::Sbrk;
    /// use freespace_split_coalesce::FreeListHeap;
    /// // `const`: usable in a `static` once wrapped in a lock.
    /// const HEAP: FreeListHeap<BestFit, Sbrk> = FreeListHeap::new(Sbrk::new());
    /// let heap = HEAP;
    /// # let _ = heap;
    /// ```
    pub const fn new(source: S) -> Self {
        Self::with_key(source, 0)
    }

    /// A heap over `source` whose header key is derived from `seed` alone
    /// ([`KeySource::Seed`]): the same seed gives the same key.
    ///
    /// Two uses: on `no_std` targets without an OS random source, pass a
    /// seed from a hardware RNG (the key is then as secret as the seed);
    /// where a test wants the same key on every run, pass a constant (the
    /// key is then not secret: anyone who knows the seed can forge a
    /// header). Give different heaps different seeds.
    ///
    /// ```
    /// use core::mem::MaybeUninit;
    /// use freespace_first_fit::FirstFitHeap;
    /// use freespace_source::Arena;
    /// # fn hardware_rng() -> u64 { 0x2545_F491_4F6C_DD1D }
    /// // `const`, like `new`.
    /// const fn make(arena: Arena, seed: u64) -> FirstFitHeap<Arena> {
    ///     FirstFitHeap::with_seed(arena, seed)
    /// }
    /// let heap = make(Arena::new(Box::leak(Box::new([MaybeUninit::uninit(); 4096]))), hardware_rng());
    /// let mut v = allocator_api2::vec::Vec::new_in(&heap);
    /// v.push(1u64);
    /// heap.check().unwrap();
    /// ```
    pub const fn with_seed(source: S, seed: u64) -> Self {
        Self::with_key(source, freespace_core::secret::key_from_seed(seed))
    }

    /// A heap whose key is `key`, or drawn from the OS with the first
    /// region if `key` is 0.
    const fn with_key(source: S, key: usize) -> Self {
        Self {
            source,
            state: UnsafeCell::new(State {
                fit: F::INIT,
                regions: None,
                region_index: Tree::new(),
                key,
                purge_after: freespace_core::source::DEFAULT_PURGE_AFTER,
                until_purge: freespace_core::source::DEFAULT_PURGE_AFTER,
                span_lo: usize::MAX,
                span_hi: 0,
                release_at: freespace_core::source::DEFAULT_RELEASE_AT,
            }),
        }
    }

    /// Sets the purge budget: each time this many bytes have been freed,
    /// the whole pages inside free chunks of
    /// [`PURGE_MIN`](freespace_core::source::PURGE_MIN) (1 MiB) or more go
    /// back to the source ([`Source::decommit`]), as [`Trim::trim`] does
    /// for every free chunk of a page or more. `usize::MAX` never purges on
    /// its own; the default is
    /// [`DEFAULT_PURGE_AFTER`](freespace_core::source::DEFAULT_PURGE_AFTER)
    /// (64 MiB). Over a source that keeps everything (an `Arena`) a purge
    /// finds nothing to do.
    ///
    /// [`Trim::trim`]: freespace_core::Trim::trim
    ///
    /// ```
    /// use freespace_best_fit::BestFitHeap;
    /// use freespace_source::Sbrk;
    /// const HEAP: BestFitHeap<Sbrk> = BestFitHeap::new(Sbrk::new()).with_purge_after(1 << 20);
    /// assert_eq!(HEAP.purge_after(), 1 << 20);
    /// ```
    pub const fn with_purge_after(mut self, bytes: usize) -> Self {
        let st = self.state.get_mut();
        st.purge_after = bytes;
        st.until_purge = bytes;
        self
    }

    /// Changes the purge budget of a heap in use (see
    /// [`with_purge_after`](Self::with_purge_after)); the count of bytes
    /// freed starts again from zero.
    ///
    /// ```
    /// use freespace_first_fit::FirstFitHeap;
    /// use freespace_source::Sbrk;
    /// let heap = FirstFitHeap::new(Sbrk::new());
    /// heap.set_purge_after(usize::MAX);
    /// assert_eq!(heap.purge_after(), usize::MAX);
    /// ```
    pub fn set_purge_after(&self, bytes: usize) {
        // SAFETY: one field write; no other reference to the state is live
        // (the heap is `!Sync` and this calls nothing).
        let st = unsafe { self.state() };
        st.purge_after = bytes;
        st.until_purge = bytes;
    }

    /// The purge budget ([`with_purge_after`](Self::with_purge_after)).
    ///
    /// ```
    /// use freespace_worst_fit::WorstFitHeap;
    /// use freespace_source::Sbrk;
    /// let heap = WorstFitHeap::new(Sbrk::new());
    /// assert_eq!(heap.purge_after(), freespace_core::source::DEFAULT_PURGE_AFTER);
    /// ```
    pub fn purge_after(&self) -> usize {
        // SAFETY: one field read; no other reference to the state is live.
        unsafe { self.state() }.purge_after
    }

    /// Sets the release threshold: a free of a block of at least this many
    /// bytes gives the block's whole pages back to the source at once
    /// ([`Source::decommit`]), keeping the head and footer of the free chunk
    /// it joins, as glibc's `free` unmaps a block above its mmap threshold.
    /// After each such release the threshold rises past the block's size,
    /// up to [`RELEASE_AT_MAX`](freespace_core::source::RELEASE_AT_MAX), so
    /// freeing and reallocating blocks of one size does not release and
    /// fault in the same pages over and over. The default is
    /// [`DEFAULT_RELEASE_AT`](freespace_core::source::DEFAULT_RELEASE_AT)
    /// (128 KiB); `usize::MAX` never releases on a free (the purge budget
    /// and [`Trim::trim`](freespace_core::Trim::trim) still do).
    ///
    /// ```
    /// use freespace_best_fit::BestFitHeap;
    /// use freespace_source::Mmap;
    /// const HEAP: BestFitHeap<Mmap> = BestFitHeap::new(Mmap::new()).with_release_at(1 << 20);
    /// assert_eq!(HEAP.release_at(), 1 << 20);
    /// ```
    pub const fn with_release_at(mut self, bytes: usize) -> Self {
        self.state.get_mut().release_at = bytes;
        self
    }

    /// Changes the release threshold of a heap in use (see
    /// [`with_release_at`](Self::with_release_at)).
    ///
    /// ```
    /// use freespace_first_fit::FirstFitHeap;
    /// use freespace_source::Sbrk;
    /// let heap = FirstFitHeap::new(Sbrk::new());
    /// heap.set_release_at(usize::MAX);
    /// assert_eq!(heap.release_at(), usize::MAX);
    /// ```
    pub fn set_release_at(&self, bytes: usize) {
        // SAFETY: one field write; no other reference to the state is live
        // (the heap is `!Sync` and this calls nothing).
        unsafe { self.state() }.release_at = bytes;
    }

    /// The release threshold now
    /// ([`with_release_at`](Self::with_release_at)): it rises as blocks
    /// are released.
    ///
    /// ```
    /// use freespace_worst_fit::WorstFitHeap;
    /// use freespace_source::Sbrk;
    /// let heap = WorstFitHeap::new(Sbrk::new());
    /// assert_eq!(heap.release_at(), freespace_core::source::DEFAULT_RELEASE_AT);
    /// ```
    pub fn release_at(&self) -> usize {
        // SAFETY: one field read; no other reference to the state is live.
        unsafe { self.state() }.release_at
    }

    /// The checked constructor: a heap over `source` whose first region is
    /// set up now, so that a source too small to ever serve a request is an
    /// error that says so instead of an `AllocError` on every allocation.
    ///
    /// It asks the source for a region of any size; a region shorter than
    /// [`MIN_REGION`](crate::MIN_REGION) (region header, one chunk,
    /// fencepost) is offered back to the source and refused. Unlike
    /// [`new`](Self::new) it is not `const` and does work.
    ///
    /// # Errors
    ///
    /// [`RegionError::TooSmall`] with the region's length and the minimum;
    /// [`RegionError::NoRegion`] when the source gave nothing.
    ///
    /// ```
    /// use core::mem::MaybeUninit;
    /// use freespace_best_fit::BestFitHeap;
    /// use freespace_source::Arena;
    /// use freespace_split_coalesce::{RegionError, MIN_REGION};
    ///
    /// let tiny = Box::leak(Box::new([MaybeUninit::uninit(); 32]));
    /// match BestFitHeap::try_new(Arena::new(tiny)) {
    ///     Err(RegionError::TooSmall { len, min }) => assert!(len < min && min == MIN_REGION),
    ///     _ => panic!("a 32-byte arena cannot hold the heap's metadata"),
    /// }
    /// let memory = Box::leak(Box::new([MaybeUninit::uninit(); 4096]));
    /// let heap = BestFitHeap::try_new(Arena::new(memory)).unwrap();
    /// let mut v = allocator_api2::vec::Vec::new_in(&heap);
    /// v.push(1u8);
    /// ```
    pub fn try_new(source: S) -> Result<Self, RegionError> {
        let heap = Self::new(source);
        let min = crate::MIN_REGION;
        let Some(region) = heap.source.acquire(1) else {
            return Err(RegionError::NoRegion { min });
        };
        if region.len() < min {
            // SAFETY: `region` is exactly what the source just returned, and
            // nothing of it was touched.
            unsafe { heap.source.release(region) };
            return Err(RegionError::TooSmall {
                len: region.len(),
                min,
            });
        }
        // SAFETY: no reference into the state is live; `add_region` does
        // not call out; `region` came from the source just now.
        match unsafe { add_region(heap.state(), region) } {
            Ok(true) => Ok(heap),
            // A fresh heap has no index to find damaged, and the region is
            // long enough: neither happens.
            _ => Err(RegionError::TooSmall {
                len: region.len(),
                min,
            }),
        }
    }

    /// The source the heap grows through.
    ///
    /// ```
    /// use freespace_first_fit::FirstFitHeap;
    /// use freespace_source::Sbrk;
    /// let heap = FirstFitHeap::new(Sbrk::new());
    /// let _: &Sbrk = heap.source();
    /// ```
    pub fn source(&self) -> &S {
        &self.source
    }

    /// The heap's state.
    ///
    /// # Safety
    ///
    /// No other reference from `state` is live: the heap is `!Sync`, and no
    /// method calls out (to the source or a report handler) while holding
    /// the one this returns.
    #[allow(clippy::mut_from_ref)]
    #[inline]
    pub(crate) unsafe fn state(&self) -> &mut State<F> {
        // SAFETY: caller contract.
        unsafe { &mut *self.state.get() }
    }

    /// The checked free: like [`deallocate`](Allocator::deallocate), but a
    /// detected misuse comes back as an `Err` (and the block is left alone)
    /// instead of going to [`report`].
    ///
    /// # Safety
    ///
    /// Any pointer may be passed: the heap only reads its own memory to
    /// decide. But if `ptr` is a live block of this heap, it is freed, so
    /// the caller must be done with it. A pointer into another live block
    /// whose user data imitates a header is rejected unless the imitation
    /// carries the right magic, which depends on the heap's secret key: a
    /// forger who does not know the key succeeds with probability 2^-64 per
    /// attempt (2^-32 on 32-bit targets; see the crate docs).
    ///
    /// # Errors
    ///
    /// The [`Corruption`] found: double free (also of a block since
    /// coalesced, or whose memory now lies inside another live block with
    /// the old header still buried there), foreign, interior or misaligned
    /// pointer, overwritten header, size mismatch, corrupt free list.
    ///
    /// ```
    /// use core::mem::MaybeUninit;
    /// use freespace_core::alloc::{Allocator, Layout};
    /// use freespace_core::Corruption;
    /// use freespace_first_fit::FirstFitHeap;
    /// use freespace_source::Arena;
    ///
    /// let heap = FirstFitHeap::new(Arena::new(Box::leak(Box::new([MaybeUninit::uninit(); 4096]))));
    /// let l = Layout::new::<[u64; 4]>();
    /// let p = heap.allocate(l).unwrap().cast::<u8>();
    /// // SAFETY: `p` is live, then freed once; the second call is the misuse under test.
    /// unsafe {
    ///     assert_eq!(heap.try_deallocate(p, l), Ok(()));
    ///     assert_eq!(heap.try_deallocate(p, l), Err(Corruption::DoubleFree { addr: p.as_ptr() as usize }));
    /// }
    /// ```
    pub unsafe fn try_deallocate(&self, ptr: NonNull<u8>, layout: Layout) -> FreeResult {
        if layout.size() == 0 {
            return Ok(());
        }
        // SAFETY: no reference into the state is live here; `free_block`
        // does not call out.
        unsafe { self.free_block(ptr, Some(layout)) }
    }

    // ------------------------------------------------------------------
    // allocation
    // ------------------------------------------------------------------

    /// The allocation of a policy that may hand chunks over whole
    /// ([`Fit::PICKS_WHOLE`]): [`Fit::pick`], then the whole chunk handed
    /// out here, or the carve and the growth out of line, so that this
    /// path saves no registers.
    #[inline(always)]
    fn allocate_picked(&self, req: Request) -> Result<NonNull<[u8]>, AllocError> {
        // SAFETY: no reference into the state is live; `pick` does not call
        // out, and `st` is not used past the match's arms.
        let st = unsafe { self.state() };
        match st.fit.pick(&req) {
            // SAFETY: `c` was a member of `size` bytes that `req` fits
            // whole, and is out of the index now (FL-P1).
            Ok(Pick::Whole(c, size)) => Ok(unsafe { hand_out_whole(st, c, size) }),
            // SAFETY: `c` is a member that fits `req` (FL-P1); `st` is dead.
            Ok(Pick::Carve(c)) => unsafe { self.carve_chosen(c, req) },
            Ok(Pick::Nothing) => self.grow_and_allocate(req),
            Err(corruption) => Err(refuse(corruption)),
        }
    }

    /// Carves `req` from `c`, the member [`Fit::pick`] chose: out of line
    /// (`req` by value, so the call passes it in registers).
    ///
    /// # Safety
    ///
    /// `c` is a member that fits `req` (FL-P1); no reference into the
    /// state is live.
    #[inline(never)]
    unsafe fn carve_chosen(&self, c: Chunk, req: Request) -> Result<NonNull<[u8]>, AllocError> {
        // SAFETY: caller contract; `carve` does not call out.
        unsafe { carve_or_report(self.state(), c, &req) }
    }

    /// Nothing free fits `req` ([`Pick::Nothing`]): grows the heap and
    /// chooses again.
    #[cold]
    #[inline(never)]
    fn grow_and_allocate(&self, req: Request) -> Result<NonNull<[u8]>, AllocError> {
        if !self.grow_heap(&req) {
            return Err(AllocError);
        }
        // SAFETY: no reference into the state is live; `choose` does not
        // call out.
        match unsafe { self.state() }.fit.choose(&req) {
            // SAFETY: `c` is a member that fits `req` (FL-P1).
            Some(c) => unsafe { self.carve_chosen(c, req) },
            None => Err(AllocError),
        }
    }

    /// The allocation of a policy that only chooses: choose and carve,
    /// and once more after growing the heap when nothing fits; all inline.
    #[inline(always)]
    fn allocate_chunk(&self, req: &Request) -> Result<NonNull<[u8]>, AllocError> {
        for _ in 0..2 {
            // SAFETY: no reference into the state is live; `carve` does not
            // call out.
            let st = unsafe { self.state() };
            if let Some(c) = st.fit.choose(req) {
                // SAFETY: `c` is a member that fits `req` (FL-P1, `Fit`).
                return unsafe { carve_or_report(st, c, req) };
            }
            if !self.grow_heap(req) {
                return Err(AllocError);
            }
        }
        Err(AllocError)
    }

    /// Asks the source for enough memory to serve `req` and adds it.
    // Out of line: inlined, the compiler computed the growth's size on
    // every allocation, before the search that nearly always succeeds.
    #[cold]
    #[inline(never)]
    fn grow_heap(&self, req: &Request) -> bool {
        // Worst-case front padding for an over-aligned request.
        let padding = if req.align() > GRANULE {
            req.align() + MIN_CHUNK
        } else {
            0
        };
        let Some(want) = req
            .size()
            .checked_add(padding)
            .and_then(|n| n.checked_add(REGION_HEADER + FENCE))
        else {
            return false;
        };
        let region = match self.source.acquire(want.max(GROWTH)) {
            Some(r) => r,
            None => match self.source.acquire(want) {
                Some(r) => r,
                None => return false,
            },
        };
        // SAFETY: no reference into the state is live (the source has
        // returned); `add_region` does not call out.
        match unsafe { add_region(self.state(), region) } {
            Ok(added) => added,
            Err(corruption) => {
                report(corruption, NAME);
                false
            }
        }
    }
}

/// Serves `req` from the free chunk `c`: front padding stays a free chunk,
/// the tail is split off when it can be a chunk of its own.
///
/// # Safety
///
/// `c` is a member of `st.free` and `req` fits it.
#[inline(always)]
unsafe fn carve<F: Fit>(
    st: &mut State<F>,
    c: Chunk,
    req: &Request,
) -> Result<NonNull<[u8]>, Corruption> {
    // SAFETY: (for the whole body) `c` is a free chunk of the heap (SC-H6), so its
    // `size` bytes are heap memory no user holds; every chunk named below
    // lies inside it or is the chunk right after it (SC-H2).
    unsafe {
        let size = c.size();
        let pad = req
            .placement(c.addr(), size)
            .ok_or(Corruption::CorruptFreeList { addr: c.addr() })?;
        let rest = size - pad;
        let tail = rest - req.size();
        let block = c.forward(pad);
        let after = c.forward(size);
        let split = tail >= MIN_CHUNK;
        // Index updates first: they read `c`'s links, which the block's
        // header may overwrite.
        if pad == 0 && !split {
            st.fit.remove(c)?;
            return Ok(hand_out_whole(st, c, size));
        }
        if pad > 0 {
            // `c`'s previous chunk is allocated (SC-H5), so no PREV_FREE.
            c.write_free(pad, c.flags() & Flags::PREV_FREE);
            st.fit.resize(c, size)?;
        }
        let chunk_size = if split {
            let rem = block.forward(req.size());
            if pad == 0 {
                st.fit.replace(c, rem, tail)?;
                rem.write_free(tail, Flags::empty());
            } else {
                rem.write_free(tail, Flags::empty());
                st.fit.insert(rem)?;
            }
            req.size()
        } else {
            // The chunk after was preceded by free `c`; now by the block.
            after.set_prev_free_allocated(false);
            rest
        };
        let mut flags = Flags::ALLOCATED;
        flags.set(Flags::PREV_FREE, pad > 0);
        block.write_allocated(chunk_size, flags, st.key);
        Ok(NonNull::slice_from_raw_parts(
            block.payload(),
            chunk_size - HEADER,
        ))
    }
}

/// [`carve`], a damaged index reported (the allocation then fails).
///
/// # Safety
///
/// As [`carve`].
#[inline(always)]
unsafe fn carve_or_report<F: Fit>(
    st: &mut State<F>,
    c: Chunk,
    req: &Request,
) -> Result<NonNull<[u8]>, AllocError> {
    // SAFETY: caller contract.
    unsafe { carve(st, c, req) }.map_err(refuse)
}

/// An allocation that found the index damaged: the damage reported, the
/// allocation failed (if the report returns).
#[cold]
fn refuse(corruption: Corruption) -> AllocError {
    report(corruption, NAME);
    AllocError
}

/// Hands out the free chunk `c` of `size` bytes whole, already taken out
/// of the index: [`carve`] without padding or a split, the path of
/// [`Pick::Whole`].
///
/// # Safety
///
/// `c` was a free chunk of the heap (SC-H6) of `size` bytes and is no longer
/// a member of `st.fit`.
#[inline(always)]
unsafe fn hand_out_whole<F: Fit>(st: &State<F>, c: Chunk, size: usize) -> NonNull<[u8]> {
    // SAFETY: `c`'s `size` bytes are heap memory no user holds, and the
    // chunk after it is the heap's (a chunk or the fencepost, SC-H2).
    unsafe {
        // The chunk after was preceded by free `c`; now by the block.
        c.forward(size).set_prev_free_allocated(false);
        // `c`'s previous chunk is allocated (free chunks never touch, SC-H5).
        c.write_allocated(size, Flags::ALLOCATED, st.key);
        NonNull::slice_from_raw_parts(c.payload(), size - HEADER)
    }
}

/// Adds a region from the source: merged into the region it continues, or
/// set up as a new region. Returns whether any memory was added. The first
/// region of a heap without a key yet draws it from the OS.
///
/// # Safety
///
/// `region` came from the heap's source just now (CORE-S1–S3) and belongs to the
/// heap from here on.
///
/// # Errors
///
/// The policy's index was found damaged.
unsafe fn add_region<F: Fit>(st: &mut State<F>, region: NonNull<[u8]>) -> Result<bool, Corruption> {
    let start = region.cast::<u8>();
    let len = region.len();
    if st.key == 0 {
        // The first region of a heap not built with a seed: no header
        // exists yet, so the key is fixed here, once (a non-zero secret,
        // `KeySource::key`).
        st.key = draw_key(start.as_ptr().addr());
    }
    let key = st.key;
    // Only the boundary headers are written (the region header, the
    // fencepost, the free chunk's size word and footer): the rest of the
    // region stays untouched until it is handed out, so a large region
    // over `Mmap` costs no resident memory for the bytes nobody uses.
    // SAFETY: (for the whole body) every region in the list is intact (SC-H1); the new
    // region is ours and `len` bytes long, a multiple of 16 (CORE-S3), so the
    // chunks written below lie inside it.
    unsafe {
        // The region below the new one, if any: the one it may continue,
        // and the one it is linked after.
        let below = st
            .region_index
            .at_or_before(Key {
                addr: start.as_ptr().addr(),
                size: 0,
            })
            .map(|node| Region::of_node(node));
        if let Some(r) = below.filter(|r| r.end() == start.as_ptr().addr() && len >= GRANULE) {
            // Contiguous: the old fencepost becomes the start of the new
            // free space, the new fencepost goes at the new end.
            let old_fence = r.fence();
            let new_fence = Chunk::new(start).forward(len - FENCE);
            let prev_free = old_fence.flags().contains(Flags::PREV_FREE);
            new_fence.write_allocated(
                FENCE,
                Flags::ALLOCATED | Flags::FENCE | Flags::PREV_FREE,
                key,
            );
            r.set_fence(new_fence);
            st.span_hi = st.span_hi.max(new_fence.addr());
            let span = new_fence.addr() - old_fence.addr();
            if prev_free {
                let tail = old_fence.back(old_fence.footer_before());
                let old = tail.size();
                tail.write_free(old + span, tail.flags());
                old_fence.bury(key);
                st.fit.resize(tail, old)?;
            } else {
                old_fence.write_free(span, Flags::empty());
                st.fit.insert(old_fence)?;
            }
            // The new piece may close the gap to the region above as well.
            if let Some(a) = r.next().filter(|a| a.0.addr() == r.end()) {
                join_above(st, r, a)?;
            }
            return Ok(true);
        }
        // The region above, if the new one ends where it begins (a source
        // that hands out memory downwards or out of order: `mmap`, a
        // buddy): its header moves down to the new start, and the new
        // bytes and its old header become free space in front of its
        // first chunk.
        let above = match below {
            Some(b) => b.next(),
            None => st.regions,
        };
        if let Some(a) =
            above.filter(|a| a.0.addr() == start.as_ptr().addr() + len && len >= REGION_HEADER)
        {
            // Everything read from `a`'s header is read before it is
            // buried; the new header lies below it (`len >= REGION_HEADER`).
            let region = Region(Chunk::new(start));
            region
                .0
                .write_allocated(REGION_HEADER, Flags::ALLOCATED | Flags::FENCE, key);
            region.set_fence(a.fence());
            region.set_next(a.next());
            match below {
                Some(b) => b.set_next(Some(region)),
                None => st.regions = Some(region),
            }
            st.region_index.remove(a.node(), 0)?;
            region.index_in(&mut st.region_index)?;
            a.0.bury(key);
            let first = region.first_chunk();
            let old_first = a.first_chunk();
            st.span_lo = st.span_lo.min(first.addr());
            if old_first.flags().contains(Flags::ALLOCATED) {
                first.write_free(len, Flags::empty());
                st.fit.insert(first)?;
                old_first.set_prev_free_allocated(true);
            } else {
                let old = old_first.size();
                st.fit.replace(old_first, first, len + old)?;
                first.write_free(len + old, Flags::empty());
            }
            return Ok(true);
        }
        if len < REGION_HEADER + MIN_CHUNK + FENCE {
            return Ok(false);
        }
        let header = Chunk::new(start);
        let first = header.forward(REGION_HEADER);
        let fence = header.forward(len - FENCE);
        header.write_allocated(REGION_HEADER, Flags::ALLOCATED | Flags::FENCE, key);
        let region = Region(header);
        region.set_fence(fence);
        fence.write_allocated(
            FENCE,
            Flags::ALLOCATED | Flags::FENCE | Flags::PREV_FREE,
            key,
        );
        first.write_free(fence.addr() - first.addr(), Flags::empty());
        st.span_lo = st.span_lo.min(first.addr());
        st.span_hi = st.span_hi.max(fence.addr());
        // Link in address order, after the region below (SC-H1).
        match below {
            Some(b) => {
                region.set_next(b.next());
                b.set_next(Some(region));
            }
            None => {
                region.set_next(st.regions);
                st.regions = Some(region);
            }
        }
        region.index_in(&mut st.region_index)?;
        st.fit.insert(first)?;
        Ok(true)
    }
}

/// Joins region `r` with the region `a` right above it (`r` ends where
/// `a` begins): `r`'s fencepost and `a`'s header become free space, merged
/// with the free chunks on either side of them, and `a` leaves the list
/// and the region tree.
///
/// # Safety
///
/// `r` and `a` are regions of the heap (SC-H1), `a` the one after `r`,
/// and `r.end() == a.0.addr()`.
///
/// # Errors
///
/// The policy's index was found damaged.
unsafe fn join_above<F: Fit>(st: &mut State<F>, r: Region, a: Region) -> Result<(), Corruption> {
    let key = st.key;
    // SAFETY: (for the whole body) both regions are intact and contiguous
    // (caller), so every chunk named lies in one of them; `a`'s header is
    // read before it is buried.
    unsafe {
        let fence = r.fence();
        let first = a.first_chunk();
        r.set_fence(a.fence());
        r.set_next(a.next());
        st.region_index.remove(a.node(), 0)?;
        a.0.bury(key);
        // The free space runs from the free chunk before the fencepost (or
        // the fencepost) to the end of `a`'s first chunk if that is free
        // (or its start).
        let first_free = !first.flags().contains(Flags::ALLOCATED);
        let end = if first_free {
            first.addr() + first.size()
        } else {
            first.addr()
        };
        if fence.flags().contains(Flags::PREV_FREE) {
            let tail = fence.back(fence.footer_before());
            let old = tail.size();
            if first_free {
                st.fit.remove(first)?;
            }
            tail.write_free(end - tail.addr(), tail.flags());
            fence.bury(key);
            st.fit.resize(tail, old)?;
        } else if first_free {
            st.fit.replace(first, fence, end - fence.addr())?;
            fence.write_free(end - fence.addr(), Flags::empty());
        } else {
            fence.write_free(end - fence.addr(), Flags::empty());
            st.fit.insert(fence)?;
        }
        if !first_free {
            first.set_prev_free_allocated(true);
        }
    }
    Ok(())
}

/// The heap's key from the OS, drawn once per heap: out of line and cold,
/// so the system call behind it stays out of the allocation path's code.
#[cold]
#[inline(never)]
fn draw_key(region_addr: usize) -> usize {
    KeySource::Os.key(region_addr)
}

// ----------------------------------------------------------------------
// the Allocator impl
// ----------------------------------------------------------------------

/// Block by block (the provided methods): under a lock a run costs one acquisition.
impl<F: Fit, S: Source> freespace_core::Batch for FreeListHeap<F, S> {}

// SAFETY: blocks are disjoint chunks of regions the heap owns (SC-H2, CORE-S2),
// live until deallocated; the returned length is the chunk's payload, all
// of it usable; `deallocate` accepts any size between the request and that
// length (SC-H8); failed grow/shrink leave the block untouched; nothing
// panics.
unsafe impl<F: Fit, S: Source> Allocator for FreeListHeap<F, S> {
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        if layout.size() == 0 {
            return Ok(dangling(layout));
        }
        let req = Request::new(layout).ok_or(AllocError)?;
        if F::PICKS_WHOLE {
            self.allocate_picked(req)
        } else {
            self.allocate_chunk(&req)
        }
    }

    /// A block from `allocate`, cleared with
    /// [`freespace_core::source::clear`]: a large one by decommitting its
    /// whole pages (over `Mmap` they read as zeros without being written),
    /// a small one by writing.
    fn allocate_zeroed(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        let block = self.allocate(layout)?;
        // SAFETY: a fresh block of ours, in a region from the source, whose
        // contents nobody needs.
        unsafe { freespace_core::source::clear(&self.source, block) };
        Ok(block)
    }

    unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
        if layout.size() == 0 {
            return;
        }
        // Each call is the last thing done (the out-of-line paths report
        // their own faults), so the common free keeps nothing across one.
        // SAFETY: the caller's contract is `free_common`'s; no reference
        // into the state is live here.
        match unsafe { self.free_common(ptr, layout) } {
            Common::Done(Ok(())) => {}
            Common::Done(Err(c)) => report(c, NAME),
            // SAFETY: as above; `free_common` validated `h`'s header.
            Common::Merge(h, size) => unsafe { self.free_merging(ptr, h, size) },
            // SAFETY: as above.
            Common::Other => unsafe { self.free_other(ptr, layout) },
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
        if !layout::is_aligned(ptr.as_ptr().addr(), new.align()) {
            // SAFETY: caller contract of `grow`.
            return unsafe { self.move_block(ptr, old, new) };
        }
        let need = chunk_size_for(new.size()).ok_or(AllocError)?;
        // SAFETY: `ptr` is a live block of this heap (caller contract), so
        // its header is intact (SC-H3); no reference into the state is live.
        match unsafe { grow_in_place(self.state(), ptr, need) } {
            Some(block) => Ok(block),
            // SAFETY: caller contract of `grow`.
            None => unsafe { self.move_block(ptr, old, new) },
        }
    }

    unsafe fn grow_zeroed(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        // SAFETY: caller contract of `grow_zeroed` is `grow`'s.
        let block = unsafe { self.grow(ptr, old, new)? };
        // SAFETY: the block is ours to write for its whole length; its first
        // `old.size()` bytes are the caller's data, the rest must read zero.
        unsafe {
            let p = block.cast::<u8>().as_ptr().add(old.size());
            p.write_bytes(0, block.len() - old.size());
        }
        Ok(block)
    }

    unsafe fn shrink(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        if new.size() == 0 {
            // SAFETY: caller contract: `ptr` is live with layout `old`.
            unsafe { self.deallocate(ptr, old) };
            return Ok(dangling(new));
        }
        if !layout::is_aligned(ptr.as_ptr().addr(), new.align()) {
            // SAFETY: caller contract of `shrink`.
            return unsafe { self.move_block(ptr, old, new) };
        }
        let need = chunk_size_for(new.size()).ok_or(AllocError)?;
        // SAFETY: `ptr` is live (caller contract), its header intact (SC-H3).
        match unsafe { shrink_in_place(self.state(), ptr, need) } {
            Ok(block) => Ok(block),
            Err(corruption) => {
                report(corruption, NAME);
                Err(AllocError)
            }
        }
    }
}

impl<F: Fit, S: Source> FreeListHeap<F, S> {
    /// Allocates `new`, copies the data and frees `ptr`: the grow/shrink
    /// that cannot happen in place.
    ///
    /// # Safety
    ///
    /// `ptr` is a live block with layout `old`.
    unsafe fn move_block(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        // SAFETY: `ptr` is a live block of `self` with `old` (caller).
        unsafe { freespace_core::resize::relocate_within(self, ptr, old, new, false) }
    }
}

/// Grows the block at `ptr` to a chunk of `need` bytes by taking from the
/// free chunk after it; `None` (nothing changed) when that is not enough.
///
/// # Safety
///
/// `ptr` is a live block of the heap whose state is `st`.
unsafe fn grow_in_place<F: Fit>(
    st: &mut State<F>,
    ptr: NonNull<u8>,
    need: usize,
) -> Option<NonNull<[u8]>> {
    // SAFETY: (for the whole body) the header is HEADER bytes before a live block
    // (SC-H3); the chunk after it is inside the region (SC-H2), and if free, its
    // bytes are heap memory no user holds.
    unsafe {
        let h = Chunk::new(ptr.sub(HEADER));
        let size = h.size();
        if need <= size {
            return Some(NonNull::slice_from_raw_parts(ptr, size - HEADER));
        }
        let n = h.forward(size);
        if n.flags().contains(Flags::ALLOCATED) {
            return None;
        }
        let n_size = n.size();
        let total = size + n_size;
        if total < need {
            return None;
        }
        let tail = total - need;
        let new_size = if tail >= MIN_CHUNK {
            let rem = h.forward(need);
            // `rem`'s words may overlap `n`'s links: the index reads them
            // first.
            st.fit.replace(n, rem, tail).ok()?;
            rem.write_free(tail, Flags::empty());
            n.bury(st.key);
            need
        } else {
            st.fit.remove(n).ok()?;
            n.bury(st.key);
            h.forward(total).set_prev_free_allocated(false);
            total
        };
        h.write_allocated(new_size, h.flags(), st.key);
        Some(NonNull::slice_from_raw_parts(ptr, new_size - HEADER))
    }
}

/// Shrinks the block at `ptr` to a chunk of `need` bytes, giving the tail
/// to a following free chunk or splitting it off when it can be a chunk.
///
/// # Safety
///
/// `ptr` is a live block of the heap whose state is `st`, and `need` is at
/// most its chunk size.
///
/// # Errors
///
/// The policy's index was found damaged (the block keeps its size).
unsafe fn shrink_in_place<F: Fit>(
    st: &mut State<F>,
    ptr: NonNull<u8>,
    need: usize,
) -> Result<NonNull<[u8]>, Corruption> {
    // SAFETY: (for the whole body) as in `grow_in_place`; the tail lies inside the
    // block's own chunk.
    unsafe {
        let h = Chunk::new(ptr.sub(HEADER));
        let size = h.size();
        let tail = size.saturating_sub(need);
        let n = h.forward(size);
        let t = h.forward(size - tail);
        let new_size = if tail == 0 {
            size
        } else if !n.flags().contains(Flags::ALLOCATED) {
            let n_size = n.size();
            // `t`'s words may overlap `n`'s links: the index reads them
            // first.
            st.fit.replace(n, t, tail + n_size)?;
            t.write_free(tail + n_size, Flags::empty());
            if tail >= MIN_CHUNK {
                // Otherwise `n`'s header now holds `t`'s links.
                n.bury(st.key);
            }
            need
        } else if tail >= MIN_CHUNK {
            t.write_free(tail, Flags::empty());
            st.fit.insert(t)?;
            n.set_prev_free_allocated(true);
            need
        } else {
            size
        };
        if new_size != size {
            h.write_allocated(new_size, h.flags(), st.key);
        }
        Ok(NonNull::slice_from_raw_parts(ptr, new_size - HEADER))
    }
}
