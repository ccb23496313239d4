//! Freeing: validating the pointer (magic number, confirmed), coalescing
//! with free neighbours, and classifying whatever does not validate.

use core::ptr::NonNull;

use freespace_core::alloc::Layout;
use freespace_core::layout::{is_aligned, with_addr};
use freespace_core::{report, BlockSize, Corruption, Owns, Source};
use freespace_freelist::chunk::{serves, Chunk, Flags};
use freespace_freelist::{Fit, GRANULE, HEADER, MIN_CHUNK};

use crate::heap::{FreeListHeap, FreeResult, State, NAME};
use crate::region::Region;

impl<F: Fit, S: Source> FreeListHeap<F, S> {
    /// Frees `ptr` if it is a live block (and `layout`, when given, fits
    /// it); otherwise says what is wrong and changes nothing.
    ///
    /// # Safety
    ///
    /// No reference into the heap's state is live. If `ptr` is a live block
    /// its owner is done with it.
    pub(crate) unsafe fn free_block(&self, ptr: NonNull<u8>, layout: Option<Layout>) -> FreeResult {
        // SAFETY: caller contract; nothing below calls out.
        let st = unsafe { self.state() };
        let addr = ptr.as_ptr().addr();
        if !is_aligned(addr, GRANULE) {
            return Err(Corruption::MisalignedPointer { addr });
        }
        let region = find_region(st, addr).ok_or(Corruption::ForeignPointer { addr })?;
        if addr < region.first_chunk().addr() + HEADER {
            // Inside the region header: the heap's own bookkeeping.
            return Err(Corruption::InteriorPointer { addr });
        }
        // Derived from the region's pointer: its provenance covers the header.
        let h = Chunk::new(
            with_addr(region.0.ptr(), addr - HEADER).ok_or(Corruption::ForeignPointer { addr })?,
        );
        // SAFETY: `h` lies inside `region` (checked above), whose header is
        // intact (SC-H1).
        let size = match unsafe { validate(st, region, h) } {
            Some(size) => size,
            // SAFETY: as above; the walk stays inside the region.
            None => return Err(unsafe { classify(st, region, h, addr) }),
        };
        if let Some(l) = layout {
            if !serves(size, l.size()) || !is_aligned(addr, l.align()) {
                return Err(Corruption::SizeMismatch { addr });
            }
        }
        // SAFETY: `h` is a validated allocated chunk of `size` bytes.
        unsafe { coalesce(st, region, h, size) }?;
        // SAFETY: `h` was a live chunk of `size` bytes and is now part of a
        // free chunk; `st` is not used again.
        unsafe { self.count_free(h, size) };
        Ok(())
    }

    /// The plain free's common case, on the strength of `deallocate`'s
    /// contract (the pointer is a live block of this heap): the header in
    /// front of `ptr` is read without looking its region up first, if it
    /// lies in the span of the regions (SC-H9). A header that is allocated,
    /// not a fencepost, with its magic right and a layout it serves is
    /// *validated*; then the chunk after it is read (the magic vouches for
    /// the size that leads there, so it lies in the region), and when both
    /// neighbours are allocated (the next one's magic right, the
    /// confirmation [`validate`] asks for) the chunk is freed on its own.
    ///
    /// [`Common::Merge`] when the header is validated but a neighbour may
    /// be free (its `PREV_FREE` flag, or the next chunk's header, says so):
    /// [`free_merging`](Self::free_merging) goes on from there without
    /// checking the header again. [`Common::Other`], with nothing written,
    /// for everything else: the full path ([`free_block`](Self::free_block))
    /// names what is wrong.
    ///
    /// # Safety
    ///
    /// `ptr` is a live block of this heap and `layout` fits it (the
    /// `deallocate` contract), its owner is done with it; no reference
    /// into the heap's state is live.
    #[inline(always)]
    pub(crate) unsafe fn free_common(&self, ptr: NonNull<u8>, layout: Layout) -> Common {
        // SAFETY: caller contract; nothing below calls out.
        let st = unsafe { self.state() };
        let addr = ptr.as_ptr().addr();
        // A header outside the span of the regions (SC-H9) is not read
        // here: a pointer from elsewhere goes to the full path, which
        // names it without reading.
        let outside = addr.wrapping_sub(HEADER) < st.span_lo || addr >= st.span_hi;
        if outside || !is_aligned(addr, GRANULE) {
            return Common::Other;
        }
        // SAFETY: (for the whole body) `ptr` is a live block of ours
        // (caller), made from its region's pointer, so the 16 bytes of its
        // header in front of it lie in the region and `ptr`'s provenance
        // covers them; the chunk after it is read only once the header's
        // magic has vouched for the size that leads there (SC-H3), and it
        // lies in the region then (SC-H2).
        unsafe {
            let h = Chunk::new(ptr.sub(HEADER));
            let flags = h.flags();
            if flags & (Flags::ALLOCATED | Flags::FENCE) != Flags::ALLOCATED || !h.magic_ok(st.key)
            {
                return Common::Other;
            }
            let size = h.size();
            if !serves(size, layout.size()) || !is_aligned(addr, layout.align()) {
                return Common::Other;
            }
            let n = h.forward(size);
            if flags.contains(Flags::PREV_FREE)
                || n.flags() & (Flags::ALLOCATED | Flags::PREV_FREE) != Flags::ALLOCATED
            {
                return Common::Merge(h, size);
            }
            if !n.magic_ok(st.key) {
                return Common::Other;
            }
            if let Err(c) = free_alone(st, h, n, size) {
                return Common::Done(Err(c));
            }
            // `st` is not used again: `count_free` takes the state afresh.
            self.count_free(h, size);
        }
        Common::Done(Ok(()))
    }

    /// The free of chunk `h` of `size` bytes, whose header
    /// [`free_common`](Self::free_common) validated (allocated, magic
    /// right, a layout it serves), when a neighbour may be free: the
    /// region is looked up for the bounds the merge needs, the chunk after
    /// `h` is confirmed as [`validate`] does, and `h` is merged with its
    /// free neighbours. Whatever fails is named by the walk of
    /// [`classify`], as on the full path.
    ///
    /// What fails is reported here ([`report`]), so that `deallocate`
    /// ends in this call and keeps nothing across it.
    ///
    /// # Safety
    ///
    /// As for [`free_common`](Self::free_common), which returned
    /// `Merge(h, size)` for `ptr`.
    #[inline(never)]
    pub(crate) unsafe fn free_merging(&self, ptr: NonNull<u8>, h: Chunk, size: usize) {
        // SAFETY: the caller's contract.
        if let Err(c) = unsafe { self.merge_validated(ptr, h, size) } {
            report(c, NAME);
        }
    }

    /// [`free_merging`](Self::free_merging) before the report.
    ///
    /// # Safety
    ///
    /// As for [`free_merging`](Self::free_merging).
    #[inline(always)]
    unsafe fn merge_validated(&self, ptr: NonNull<u8>, h: Chunk, size: usize) -> FreeResult {
        // SAFETY: caller contract; nothing below calls out.
        let st = unsafe { self.state() };
        let addr = ptr.as_ptr().addr();
        let region = find_region(st, addr).ok_or(Corruption::ForeignPointer { addr })?;
        // SAFETY: `h` lies in `region` (a header whose magic matched, SC-H3)
        // and the region is intact (SC-H1); the next chunk is read only
        // inside it.
        unsafe {
            let fence = region.fence();
            if !confirmed_by_next(st, fence, h, size) {
                return Err(classify(st, region, h, addr));
            }
            coalesce(st, region, h, size)?;
            // `st` is not used again: `count_free` takes the state afresh.
            self.count_free(h, size);
        }
        Ok(())
    }

    /// [`free_block`](Self::free_block) for a free that
    /// [`free_common`](Self::free_common) left alone, its fault reported:
    /// out of line, so the common free saves no registers for it.
    ///
    /// # Safety
    ///
    /// As [`free_block`](Self::free_block).
    #[inline(never)]
    pub(crate) unsafe fn free_other(&self, ptr: NonNull<u8>, layout: Layout) {
        // SAFETY: caller contract.
        if let Err(c) = unsafe { self.free_block(ptr, Some(layout)) } {
            report(c, NAME);
        }
    }

    /// Counts a free of `size` bytes against the release threshold and the
    /// purge budget: the common case (neither reached) is one comparison
    /// each.
    ///
    /// # Safety
    ///
    /// No reference into the heap's state is used after the call (the
    /// caller's is invalidated: this takes the state afresh, and so does
    /// the release or purge it may call, so the state is not passed in);
    /// `h` was a live chunk of `size` bytes and is now part of a free
    /// chunk.
    #[inline(always)]
    unsafe fn count_free(&self, h: Chunk, size: usize) {
        // SAFETY: the caller's contract: no other reference is used.
        let st = unsafe { self.state() };
        if size < st.release_at && size < st.until_purge {
            st.until_purge -= size;
        } else {
            // SAFETY: the caller's contract.
            unsafe { self.thresholds_reached(h, size) };
        }
    }
}

/// What [`FreeListHeap::free_common`] made of a plain free.
pub(crate) enum Common {
    /// Freed (or the index was found damaged): nothing more to do.
    Done(FreeResult),
    /// The header is validated; a neighbour may be free:
    /// [`FreeListHeap::free_merging`] goes on with the chunk and its size.
    Merge(Chunk, usize),
    /// Not the common case, nothing written: the full path.
    Other,
}

/// The region holding `addr`, if any: the lowest region, else a search
/// of the region tree.
#[inline(always)]
fn find_region<F>(st: &State<F>, addr: usize) -> Option<Region> {
    // SAFETY: the tree's members are the nodes of the heap's regions, whose
    // headers are intact (SC-H1).
    unsafe { Region::containing(st.regions, &st.region_index, addr) }
}

/// The fast check of a chunk about to be freed: an allocated, non-fence
/// header whose magic matches, with a sane size, *confirmed* by the chunk
/// after it (which must not think its predecessor is free, and must itself
/// look intact). Returns the chunk size, or `None` if anything is off.
///
/// The confirmation is what keeps a magic match from being trusted alone:
/// a header-shaped value in user data (or a stale header left in memory)
/// also has to line up with a real chunk boundary whose own header agrees.
///
/// # Safety
///
/// `h` lies inside `region`, past its header, and the region is intact.
#[inline(always)]
unsafe fn validate<F>(st: &State<F>, region: Region, h: Chunk) -> Option<usize> {
    // SAFETY: (for the whole body) every chunk read lies inside `region` (bounds are
    // checked before each read).
    unsafe {
        let fence = region.fence();
        let flags = h.flags();
        if !flags.contains(Flags::ALLOCATED) || flags.contains(Flags::FENCE) || !h.magic_ok(st.key)
        {
            return None;
        }
        let size = h.size();
        (size >= MIN_CHUNK && confirmed_by_next(st, fence, h, size)).then_some(size)
    }
}

/// The confirmation of [`validate`] for the allocated chunk `h` of `size`
/// bytes: it ends inside its region (at or before `fence`), and the chunk
/// `n` right after it does not think its predecessor is free and looks
/// intact itself — an allocated header with its magic right (a fencepost
/// only at the region's end), or a free chunk whose size stays in the
/// region and whose footer agrees.
///
/// # Safety
///
/// `h` is a chunk boundary of an intact region ending at `fence`.
#[inline(always)]
unsafe fn confirmed_by_next<F>(st: &State<F>, fence: Chunk, h: Chunk, size: usize) -> bool {
    if fence.addr() - h.addr() < size {
        return false;
    }
    // SAFETY: (for the whole body) `h` ends at or before `fence` (checked
    // above), so `n` lies in the region; the footer is read only after
    // the size is checked to stay inside it.
    unsafe {
        let n = h.forward(size);
        let nf = n.flags();
        if nf.contains(Flags::PREV_FREE) {
            return false;
        }
        if nf.contains(Flags::ALLOCATED) {
            n.magic_ok(st.key) && (!nf.contains(Flags::FENCE) || n == fence)
        } else {
            let n_size = n.size();
            n_size >= MIN_CHUNK
                && fence.addr() - n.addr() >= n_size
                && n.forward(n_size).footer_before() == n_size
        }
    }
}

/// Works out what an invalid pointer is by walking its region from the
/// start: the slow path, taken only when something is wrong.
///
/// # Safety
///
/// `h` lies inside `region`, past its header, and the region header is
/// intact.
unsafe fn classify<F>(st: &State<F>, region: Region, h: Chunk, addr: usize) -> Corruption {
    // SAFETY: (for the whole body) the walk only steps to chunks whose sizes were
    // checked to stay inside the region.
    unsafe {
        let fence = region.fence();
        let mut c = region.first_chunk();
        while c.addr() < fence.addr() {
            let flags = c.flags();
            let size = c.size();
            let allocated = flags.contains(Flags::ALLOCATED);
            let sane = size >= MIN_CHUNK
                && fence.addr() - c.addr() >= size
                && !flags.contains(Flags::FENCE)
                && (!allocated || c.magic_ok(st.key));
            if !sane {
                return Corruption::OverwrittenHeader { addr: c.addr() };
            }
            if c == h {
                return if allocated {
                    // Its own header is fine: what failed is the chunk after.
                    Corruption::OverwrittenHeader {
                        addr: c.addr() + size,
                    }
                } else {
                    Corruption::DoubleFree { addr }
                };
            }
            if h.addr() < c.addr() + size {
                // `h` is inside chunk `c`.
                return if !allocated || h.is_buried(st.key) {
                    Corruption::DoubleFree { addr }
                } else {
                    Corruption::InteriorPointer { addr }
                };
            }
            c = c.forward(size);
        }
        // `h` is the fencepost itself.
        Corruption::InteriorPointer { addr }
    }
}

/// Frees the validated allocated chunk `h` of `size` bytes and merges it
/// with whichever neighbours are free (four cases; SC-H5 holds after each).
///
/// ```text
///  prev free, next free:   [P free][h][N free]  ->  [P .............. ]
///  prev free only:         [P free][h][used]    ->  [P ......][used]
///  next free only:         [used][h][N free]    ->  [used][h .........]
///  neither:                [used][h][used]      ->  [used][h][used]  (+ insert)
/// ```
///
/// # Safety
///
/// `h` is a validated allocated chunk of `size` bytes in `region`.
#[inline(always)]
unsafe fn coalesce<F: Fit>(st: &mut State<F>, region: Region, h: Chunk, size: usize) -> FreeResult {
    let key = st.key;
    // SAFETY: (for the whole body) `h` and its neighbours are chunks of `region`
    // (SC-H2); the previous one is found through its footer only when SC-H4 says
    // it is free, and checked before use.
    unsafe {
        let n = h.forward(size);
        let next_free = !n.flags().contains(Flags::ALLOCATED);
        let prev = if h.flags().contains(Flags::PREV_FREE) {
            let p_size = h.footer_before();
            let room = h.addr() - region.first_chunk().addr();
            if p_size < MIN_CHUNK || p_size > room {
                return Err(Corruption::CorruptFreeList { addr: h.addr() });
            }
            let p = h.back(p_size);
            if p.flags().contains(Flags::ALLOCATED) || p.size() != p_size {
                return Err(Corruption::CorruptFreeList { addr: p.addr() });
            }
            Some(p)
        } else {
            None
        };
        let n_size = if next_free { n.size() } else { 0 };
        match (prev, next_free) {
            (Some(p), true) => {
                st.fit.remove(n)?;
                let old = p.size();
                p.write_free(old + size + n_size, p.flags());
                h.bury(key);
                n.bury(key);
                st.fit.resize(p, old)?;
            }
            (Some(p), false) => {
                let old = p.size();
                p.write_free(old + size, p.flags());
                h.bury(key);
                n.set_prev_free_allocated(true);
                st.fit.resize(p, old)?;
            }
            (None, true) => {
                st.fit.replace(n, h, size + n_size)?;
                h.write_free(size + n_size, Flags::empty());
                n.bury(key);
            }
            (None, false) => free_alone(st, h, n, size)?,
        }
        Ok(())
    }
}

/// Frees the validated allocated chunk `h` of `size` bytes whose
/// neighbours are both allocated: it becomes a free chunk of its own, and
/// `n`, the chunk after it, learns that its predecessor is free.
///
/// # Safety
///
/// `h` is a validated allocated chunk of `size` bytes not preceded by a
/// free chunk, and `n` the allocated chunk (or fencepost) right after it.
#[inline(always)]
unsafe fn free_alone<F: Fit>(st: &mut State<F>, h: Chunk, n: Chunk, size: usize) -> FreeResult {
    // SAFETY: `h`'s `size` bytes are the heap's again (caller), `n` is an
    // allocated header of the heap that no user holds.
    unsafe {
        h.write_free(size, Flags::empty());
        st.fit.insert(h)?;
        n.set_prev_free_allocated(true);
    }
    Ok(())
}

// SAFETY: `owns` is true exactly for addresses inside the heap's regions,
// which contain every live block and nothing outside the heap's memory.
unsafe impl<F: Fit, S: Source> Owns for FreeListHeap<F, S> {
    fn owns(&self, ptr: NonNull<u8>) -> bool {
        // SAFETY: a shared read of the region list; nothing else is live.
        find_region(unsafe { self.state() }, ptr.as_ptr().addr()).is_some()
    }
}

// SAFETY: a live block's header holds its chunk size (SC-H3); the payload is
// the chunk minus the header, all usable; `free` is `deallocate` without
// the layout check.
unsafe impl<F: Fit, S: Source> BlockSize for FreeListHeap<F, S> {
    unsafe fn usable_size(&self, ptr: NonNull<u8>) -> usize {
        // SAFETY: `ptr` is live (caller contract): its header is the 16
        // bytes before it (SC-H3).
        unsafe { Chunk::new(ptr.sub(HEADER)).size() - HEADER }
    }

    unsafe fn free(&self, ptr: NonNull<u8>) {
        // SAFETY: no reference into the state is live here.
        if let Err(c) = unsafe { self.free_block(ptr, None) } {
            freespace_core::report(c, NAME);
        }
    }
}

impl<F: Fit, S: Source> freespace_core::Check for FreeListHeap<F, S> {
    /// SC-H1–H8 and the policy's index ([`check`](FreeListHeap::check)); the
    /// heap is a leaf over its source.
    fn check_all(&self) -> Result<(), freespace_core::Violation> {
        self.check()
    }
}

// SAFETY: `deallocate` is `try_deallocate` plus a report of its error, so a
// live block is freed the same way; every check (magic, flags, layout,
// the links of the neighbours it would merge with) comes before the chunk
// is marked free or joins the index, so an `Err` leaves it allocated.
unsafe impl<F: Fit, S: Source> freespace_core::CheckedFree for FreeListHeap<F, S> {
    #[inline]
    unsafe fn try_deallocate(
        &self,
        ptr: NonNull<u8>,
        layout: Layout,
    ) -> Result<(), freespace_core::Corruption> {
        // SAFETY: the caller's contract is the inherent method's.
        unsafe { FreeListHeap::try_deallocate(self, ptr, layout) }
    }
}
