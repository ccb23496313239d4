//! The invariant check ([`FreeListHeap::check`]) and the block walk
//! ([`Inspect`]).

use core::ptr::NonNull;

use freespace_core::{BlockInfo, BlockState, Corruption, Inspect, Source, Violation};
use freespace_freelist::chunk::{Chunk, Flags, FENCE, REGION_HEADER};
use freespace_freelist::{Fit, HEADER, MIN_CHUNK};

use crate::heap::{FreeListHeap, State};

impl<F: Fit, S: Source> FreeListHeap<F, S> {
    /// Verifies every invariant SC-H1–H8 listed on the type (SC-H8 only as far as
    /// the chunk sizes allow: the requests are not stored), walking all
    /// regions and the whole free set.
    ///
    /// # Time complexity
    ///
    /// O(chunks × the policy's lookup + regions): O(n log n) for the
    /// indexed policies, O(n²) for the plain scans.
    ///
    /// # Errors
    ///
    /// The first [`Violation`] found, labelled with the invariant's number.
    ///
    /// ```
    /// use core::mem::MaybeUninit;
    /// use freespace_core::alloc::{Allocator, Layout};
    /// use freespace_worst_fit::WorstFitHeap;
    /// use freespace_source::Arena;
    ///
    /// let heap = WorstFitHeap::new(Arena::new(Box::leak(Box::new([MaybeUninit::uninit(); 4096]))));
    /// let l = Layout::from_size_align(100, 8).unwrap();
    /// let a = heap.allocate(l).unwrap().cast::<u8>();
    /// heap.check().unwrap();
    /// // SAFETY: `a` is live with layout `l`.
    /// unsafe { heap.deallocate(a, l) };
    /// heap.check().unwrap();
    /// ```
    pub fn check(&self) -> Result<(), Violation> {
        // SAFETY: a read-only walk; nothing calls out.
        let st: &State<F> = unsafe { self.state() };
        // SAFETY: every read below is bounds-checked against the region
        // being walked before it happens; regions are the heap's memory.
        unsafe { check_state(st) }
    }
}

unsafe fn check_state<F: Fit>(st: &State<F>) -> Result<(), Violation> {
    let key = st.key;
    let mut free_seen = 0usize;
    let mut last_end = 0usize;
    let (mut lo, mut hi) = (usize::MAX, 0);
    let mut at = st.regions;
    // SAFETY: (for the whole body) see `check`; each region header is validated
    // before its fields are trusted, each chunk's size before stepping.
    unsafe {
        while let Some(r) = at {
            let hdr = r.0;
            if hdr.addr() < last_end {
                return Err(Violation::new(
                    "SC-H1",
                    hdr.addr(),
                    "regions out of order or overlapping",
                ));
            }
            let hf = hdr.flags();
            if !hdr.magic_ok(key)
                || hdr.size() != REGION_HEADER
                || !hf.contains(Flags::ALLOCATED | Flags::FENCE)
            {
                return Err(Violation::new("SC-H1", hdr.addr(), "region header damaged"));
            }
            let fence = r.fence();
            if fence.addr() < hdr.addr() + REGION_HEADER + MIN_CHUNK
                || !fence.magic_ok(key)
                || fence.size() != FENCE
                || !fence.flags().contains(Flags::ALLOCATED | Flags::FENCE)
            {
                return Err(Violation::new(
                    "SC-H1",
                    fence.addr(),
                    "region fencepost damaged",
                ));
            }
            let mut c = r.first_chunk();
            let mut prev_free = false;
            while c != fence {
                let flags = c.flags();
                let size = c.size();
                if size < MIN_CHUNK || size % HEADER != 0 || fence.addr() - c.addr() < size {
                    return Err(Violation::new(
                        "SC-H2",
                        c.addr(),
                        "chunk size does not tile the region",
                    ));
                }
                if flags.contains(Flags::PREV_FREE) != prev_free {
                    return Err(Violation::new(
                        "SC-H4",
                        c.addr(),
                        "PREV_FREE disagrees with the chunk before",
                    ));
                }
                let free = !flags.contains(Flags::ALLOCATED);
                if free {
                    if prev_free {
                        return Err(Violation::new(
                            "SC-H5",
                            c.addr(),
                            "two adjacent free chunks",
                        ));
                    }
                    if c.forward(size).footer_before() != size {
                        return Err(Violation::new(
                            "SC-H4",
                            c.addr(),
                            "free chunk footer is not its size",
                        ));
                    }
                    if !st.fit.contains(c) {
                        return Err(Violation::new(
                            "SC-H6",
                            c.addr(),
                            "free chunk missing from the policy's index",
                        ));
                    }
                    free_seen += 1;
                } else if flags.contains(Flags::FENCE) || !c.magic_ok(key) {
                    return Err(Violation::new(
                        "SC-H3",
                        c.addr(),
                        "allocated header fails its magic check",
                    ));
                }
                prev_free = free;
                c = c.forward(size);
            }
            if fence.flags().contains(Flags::PREV_FREE) != prev_free {
                return Err(Violation::new(
                    "SC-H4",
                    fence.addr(),
                    "fencepost PREV_FREE disagrees",
                ));
            }
            last_end = r.end();
            lo = lo.min(r.first_chunk().addr());
            hi = hi.max(fence.addr());
            at = r.next();
        }
        if (lo, hi) != (st.span_lo, st.span_hi) {
            return Err(Violation::new(
                "SC-H9",
                st.span_lo,
                "the span is not from the lowest first chunk to the highest fencepost",
            ));
        }
        if free_seen != st.fit.len() {
            return Err(Violation::new(
                "SC-H6",
                0,
                "the policy's index holds chunks that are not free chunks of the heap",
            ));
        }
    }
    // SAFETY: the list was just checked (SC-H1 above), so each listed
    // region's header can be read for its node.
    unsafe { check_region_index(st) }?;
    st.fit.check()
}

/// SC-H1's index half: the region tree is a sound tree (FL-T1–T5) whose
/// in-order walk is the region list, node for node.
///
/// # Safety
///
/// The region list is intact (SC-H1, checked before).
unsafe fn check_region_index<F>(st: &State<F>) -> Result<(), Violation> {
    let mut listed = st.regions;
    st.region_index.check(&mut |node, _| {
        match listed {
            Some(r) if r.node() == node => {
                // SAFETY: a listed region, intact (caller contract).
                listed = unsafe { r.next() };
                Ok(())
            }
            _ => Err(Violation::new(
                "SC-H1",
                node.addr(),
                "the region index disagrees with the region list",
            )),
        }
    })?;
    match listed {
        None => Ok(()),
        Some(r) => Err(Violation::new(
            "SC-H1",
            r.0.addr(),
            "a region is missing from the region index",
        )),
    }
}

impl<F: Fit, S: Source> FreeListHeap<F, S> {
    /// Names the block at `ptr` for a fault report, from the heap's own
    /// chunk headers (never the memory at `ptr`): `Ok(len)` for a live
    /// block that starts there (its usable length), else what `ptr` is — a
    /// pointer into a free chunk is [`Corruption::DoubleFree`], into a live
    /// block or the heap's own headers [`Corruption::InteriorPointer`],
    /// outside the heap [`Corruption::ForeignPointer`].
    ///
    /// # Time complexity
    /// O(blocks): a walk of the heap ([`Inspect`]), meant for error paths.
    ///
    /// ```
    /// use freespace_best_fit::BestFitHeap;
    /// use freespace_core::alloc::{Allocator, Layout};
    /// use freespace_core::Corruption;
    /// use freespace_source::{Arena, StaticMemory};
    /// static MEMORY: StaticMemory<4096> = StaticMemory::new();
    /// let heap = BestFitHeap::new(Arena::new(MEMORY.take().unwrap()));
    /// let l = Layout::from_size_align(100, 16).unwrap();
    /// let p = heap.allocate(l).unwrap().cast::<u8>();
    /// assert_eq!(heap.block_at(p), Ok(112));
    /// // SAFETY: `p` is live with `l`, freed once.
    /// unsafe { heap.deallocate(p, l) };
    /// assert_eq!(heap.block_at(p), Err(Corruption::DoubleFree { addr: p.as_ptr() as usize }));
    /// ```
    pub fn block_at(&self, ptr: NonNull<u8>) -> Result<usize, Corruption> {
        let addr = ptr.as_ptr().addr();
        let mut found = Err(Corruption::ForeignPointer { addr });
        self.inspect(&mut |b| {
            if b.addr <= addr && addr - b.addr < b.len {
                found = match b.state {
                    BlockState::Used if b.addr == addr => Ok(b.len),
                    BlockState::Free => Err(Corruption::DoubleFree { addr }),
                    _ => Err(Corruption::InteriorPointer { addr }),
                };
            }
        });
        found
    }
}

impl<F: Fit, S: Source> Inspect for FreeListHeap<F, S> {
    /// Reports, region by region in address order: the region header and
    /// fencepost and every chunk header as `Meta`, each payload as `Used`
    /// (its whole usable length, internal fragmentation included) and each
    /// free chunk, header and all, as `Free`.
    ///
    /// ```
    /// use core::mem::MaybeUninit;
    /// use freespace_core::alloc::{Allocator, Layout};
    /// use freespace_core::HeapSummary;
    /// use freespace_next_fit::NextFitHeap;
    /// use freespace_source::Arena;
    ///
    /// let heap = NextFitHeap::new(Arena::new(Box::leak(Box::new([MaybeUninit::uninit(); 1024]))));
    /// let l = Layout::from_size_align(20, 4).unwrap();
    /// let p = heap.allocate(l).unwrap();
    /// let s = HeapSummary::of(&heap);
    /// assert_eq!(s.used_bytes, 32); // 20 asked, 32 usable: 12 bytes of internal fragmentation
    /// assert_eq!(s.total_bytes(), 1024);
    /// # unsafe { heap.deallocate(p.cast(), l) };
    /// ```
    fn inspect(&self, visit: &mut dyn FnMut(BlockInfo)) {
        // SAFETY: a read-only walk; `visit` is the caller's closure and may
        // not use this heap (it only gets `BlockInfo` values).
        let st: &State<F> = unsafe { self.state() };
        let mut at = st.regions;
        while let Some(r) = at {
            // SAFETY: regions are intact (SC-H1) and tiled (SC-H2); the walk stops
            // at the first size that would leave the region.
            unsafe {
                visit(BlockInfo {
                    addr: r.0.addr(),
                    len: REGION_HEADER,
                    state: BlockState::Meta,
                });
                let fence = r.fence();
                let mut c = r.first_chunk();
                while c.addr() < fence.addr() {
                    let size = c.size();
                    if size < MIN_CHUNK || fence.addr() - c.addr() < size {
                        break;
                    }
                    visit_chunk(c, size, visit);
                    c = c.forward(size);
                }
                visit(BlockInfo {
                    addr: fence.addr(),
                    len: FENCE,
                    state: BlockState::Meta,
                });
                at = r.next();
            }
        }
    }
}

/// # Safety
///
/// `c` is a chunk of `size` bytes of the heap.
unsafe fn visit_chunk(c: Chunk, size: usize, visit: &mut dyn FnMut(BlockInfo)) {
    // SAFETY: caller contract.
    if unsafe { c.flags() }.contains(Flags::ALLOCATED) {
        visit(BlockInfo {
            addr: c.addr(),
            len: HEADER,
            state: BlockState::Meta,
        });
        visit(BlockInfo {
            addr: c.addr() + HEADER,
            len: size - HEADER,
            state: BlockState::Used,
        });
    } else {
        visit(BlockInfo {
            addr: c.addr(),
            len: size,
            state: BlockState::Free,
        });
    }
}
