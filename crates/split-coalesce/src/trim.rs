//! [`Trim`] for the free-list heap: the pages inside large free chunks go
//! back to the source.

use core::ptr::NonNull;

use freespace_core::source::PURGE_MIN;
use freespace_core::{Source, Trim};
use freespace_freelist::chunk::{Chunk, Flags, MIN_CHUNK};
use freespace_freelist::Fit;

use crate::heap::FreeListHeap;

/// Bytes at the start of a free chunk that its index may use: the size
/// word, then the link words of a tree node or a bin (words 1 to 3), with
/// room to spare. Nothing past them is read or written while the chunk is
/// free, except its footer (the last word).
const FREE_HEAD: usize = 64;
/// The footer of a free chunk: its last word.
const FREE_TAIL: usize = 16;
/// The smallest free chunk worth a system call: one 4 KiB page past its
/// head and tail (on systems with larger pages the source finds no whole
/// page inside and declines).
const TRIM_MIN: usize = 4096 + FREE_HEAD + FREE_TAIL;

/// Gives back the whole pages inside every free chunk of at least about a
/// page, leaving the chunk's head (size word, index links) and footer in
/// place, through [`Source::decommit`]; returns the bytes given back. The
/// heap never reads the rest of a free chunk, so nothing changes for it;
/// the pages come back, zero, when the chunk is handed out and written.
///
/// ```
/// # #[cfg(not(miri))] { // Miri cannot call mmap
/// use freespace_best_fit::BestFitHeap;
/// use freespace_core::alloc::{Allocator, Layout};
/// use freespace_core::Trim;
/// use freespace_source::Mmap;
///
/// let heap = BestFitHeap::new(Mmap::new());
/// let layout = Layout::from_size_align(1 << 20, 16).unwrap();
/// let block = heap.allocate(layout).unwrap();
/// unsafe { block.cast::<u8>().write_bytes(1, block.len()) }; // resident
/// unsafe { heap.deallocate(block.cast(), layout) };
/// assert!(heap.trim() >= (1 << 20) - 8192);
/// heap.check().unwrap();
/// # }
/// ```
impl<F: Fit, S: Source> Trim for FreeListHeap<F, S> {
    fn trim(&self) -> usize {
        self.trim_from(TRIM_MIN)
    }
}

impl<F: Fit, S: Source> FreeListHeap<F, S> {
    /// What a free does when the chunk it freed reaches the release
    /// threshold or the bytes freed reach the purge budget: a large block
    /// goes back at once (the threshold then rises past it, so one size
    /// freed over and over is released once), and a spent budget purges
    /// and starts again.
    ///
    /// # Safety
    ///
    /// As [`release`](Self::release): `c` was a live chunk of `size` bytes
    /// and is now part of a free chunk; no reference into the heap's state
    /// is live.
    #[cold]
    #[inline(never)]
    pub(crate) unsafe fn thresholds_reached(&self, c: Chunk, size: usize) {
        // SAFETY: no other reference to the state is live (caller
        // contract); `st` is not used past the release and the purge, which
        // go through the source and take the state afresh.
        let st = unsafe { self.state() };
        let release = size >= st.release_at;
        if release {
            st.release_at = size
                .saturating_add(1)
                .min(freespace_core::source::RELEASE_AT_MAX)
                .max(st.release_at);
        }
        let purge = size >= st.until_purge;
        st.until_purge = if purge {
            st.purge_after
        } else {
            st.until_purge - size
        };
        if release {
            // SAFETY: the caller's contract.
            unsafe { self.release(c, size) };
        }
        if purge {
            self.purge();
        }
    }

    /// The automatic purge (see
    /// [`with_purge_after`](FreeListHeap::with_purge_after)): the pages
    /// inside free chunks of [`PURGE_MIN`] or more.
    #[cold]
    #[inline(never)]
    pub(crate) fn purge(&self) {
        self.trim_from(PURGE_MIN.max(TRIM_MIN));
    }

    /// Gives back the whole pages of the just-freed chunk `c` of `size`
    /// bytes, now part of a free chunk (alone or joined with free
    /// neighbours): the automatic release of a large free (see
    /// [`with_release_at`](FreeListHeap::with_release_at)).
    ///
    /// # Safety
    ///
    /// `c` lies in one of this heap's regions and its `size` bytes are free
    /// (coalesced); no reference into the heap's state is live.
    #[cold]
    #[inline(never)]
    pub(crate) unsafe fn release(&self, c: Chunk, size: usize) {
        if size >= TRIM_MIN {
            // SAFETY: the caller's contract.
            unsafe { self.decommit_inside(c, size) };
        }
    }

    /// Gives back the whole pages of the `size` bytes at `c` past its first
    /// [`FREE_HEAD`] and before its last [`FREE_TAIL`]; returns the bytes
    /// given back. Those bytes lie inside a free chunk, past its head and
    /// before its footer, so nothing reads them while it is free.
    ///
    /// # Safety
    ///
    /// `size >= TRIM_MIN`; `c`'s `size` bytes lie in one of this heap's
    /// regions and are part of a free chunk (the chunk itself, or a chunk
    /// just coalesced into a free neighbour).
    unsafe fn decommit_inside(&self, c: Chunk, size: usize) -> usize {
        // SAFETY: `FREE_HEAD + FREE_TAIL < size` (`size >= TRIM_MIN`), so
        // the slice lies inside the chunk, in a region from our source.
        let inner = unsafe {
            NonNull::slice_from_raw_parts(c.ptr().add(FREE_HEAD), size - FREE_HEAD - FREE_TAIL)
        };
        // SAFETY: no one needs `inner`'s contents (free bytes nobody reads,
        // above).
        unsafe { self.source().decommit(inner) }.map_or(0, |pages| pages.len())
    }

    /// Gives back the whole pages inside every free chunk of at least `min`
    /// bytes (`min >= TRIM_MIN`); returns the bytes given back.
    fn trim_from(&self, min: usize) -> usize {
        if !self.source().decommits() {
            // Every chunk would be declined (an arena): no walk.
            return 0;
        }
        // SAFETY: a walk that reads headers only; no other reference to the
        // state is live during this call (the heap is `!Sync`, callers hold
        // no reference into the state, and nothing here can re-enter it).
        let st = unsafe { self.state() };
        let mut given = 0;
        // The index's members of `min` bytes or more, where it can list
        // them (the trim hands the pages inside each to the source and
        // leaves the chunk's head, footer and links, and so the index, as
        // they were).
        let listed = st.fit.for_each_at_least(min, &mut |c, size| {
            // SAFETY: a member is a free chunk of ours (FL-P2) of `size >=
            // min >= TRIM_MIN` bytes.
            given += unsafe { self.decommit_inside(c, size) }
        });
        if listed {
            return given;
        }
        let mut at = st.regions;
        while let Some(r) = at {
            // SAFETY: regions are intact (SC-H1) and tiled by chunks (SC-H2); the
            // walk stops at the first size that would leave the region.
            unsafe {
                let fence = r.fence();
                let mut c = r.first_chunk();
                while c.addr() < fence.addr() {
                    let size = c.size();
                    if size < MIN_CHUNK || fence.addr() - c.addr() < size {
                        break;
                    }
                    if size >= min && !c.flags().contains(Flags::ALLOCATED) {
                        // A free chunk of ours of `size >= min >= TRIM_MIN`
                        // bytes.
                        given += self.decommit_inside(c, size);
                    }
                    c = c.forward(size);
                }
                at = r.next();
            }
        }
        given
    }
}
