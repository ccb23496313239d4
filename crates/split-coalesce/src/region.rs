//! Regions: the pieces of memory a heap got from its `Source`, each
//! bracketed by allocated sentinels and linked in address order.
//!
//! ```text
//!  header.addr()                                           fence.addr()   end
//!  | region header (32 B)        | chunks tiling ...      | fencepost (16 B) |
//!  | size|ALLOC|FENCE | magic    |                        | 16|ALLOC|FENCE   |
//!  | next region      | fence ───┼────────────────────────► magic            |
//! ```

use freespace_freelist::chunk::{Chunk, FENCE, REGION_HEADER};

/// Field index (in words) of the next-region pointer in a region header.
const NEXT_REGION: usize = 2;
/// Field index (in words) of the fencepost pointer in a region header.
const FENCEPOST: usize = 3;

/// A region, named by its header chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Region(pub(crate) Chunk);

impl Region {
    /// The first chunk after the header.
    #[inline]
    pub(crate) fn first_chunk(self) -> Chunk {
        // SAFETY: a region is at least header + one chunk + fencepost long,
        // so the first chunk is in bounds.
        unsafe { self.0.forward(REGION_HEADER) }
    }

    /// The region after this one in address order.
    ///
    /// # Safety
    ///
    /// The region header is intact heap memory.
    #[inline]
    pub(crate) unsafe fn next(self) -> Option<Region> {
        // SAFETY: caller contract.
        unsafe { self.0.pointer_field(NEXT_REGION) }.map(|p| Region(Chunk::new(p)))
    }

    /// # Safety
    ///
    /// The region header is writable heap memory.
    #[inline]
    pub(crate) unsafe fn set_next(self, next: Option<Region>) {
        // SAFETY: caller contract.
        unsafe {
            self.0
                .set_pointer_field(NEXT_REGION, next.map(|r| r.0.ptr()))
        }
    }

    /// The fencepost at the region's end.
    ///
    /// # Safety
    ///
    /// The region header is intact heap memory.
    #[inline]
    pub(crate) unsafe fn fence(self) -> Chunk {
        // SAFETY: caller contract; the field is written when the region is
        // set up and never null afterwards.
        match unsafe { self.0.pointer_field(FENCEPOST) } {
            Some(p) => Chunk::new(p),
            None => self.0,
        }
    }

    /// # Safety
    ///
    /// The region header is writable heap memory.
    #[inline]
    pub(crate) unsafe fn set_fence(self, fence: Chunk) {
        // SAFETY: caller contract.
        unsafe { self.0.set_pointer_field(FENCEPOST, Some(fence.ptr())) }
    }

    /// One past the region's last byte.
    ///
    /// # Safety
    ///
    /// The region header is intact heap memory.
    #[inline]
    pub(crate) unsafe fn end(self) -> usize {
        // SAFETY: caller contract.
        unsafe { self.fence() }.addr() + FENCE
    }

    /// Whether `addr` lies in this region's bytes.
    ///
    /// # Safety
    ///
    /// The region header is intact heap memory.
    #[inline]
    pub(crate) unsafe fn contains(self, addr: usize) -> bool {
        // SAFETY: caller contract.
        self.0.addr() <= addr && addr < unsafe { self.end() }
    }
}
