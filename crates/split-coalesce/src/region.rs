//! Regions: the pieces of memory a heap got from its `Source`, each
//! bracketed by allocated sentinels, linked in address order and indexed
//! by an address tree whose nodes are inside the region headers.
//!
//! ```text
//!  header.addr()                                           fence.addr()   end
//!  | region header (64 B)        | chunks tiling ...      | fencepost (16 B) |
//!  | size|ALLOC|FENCE | magic    |                        | 16|ALLOC|FENCE   |
//!  | next region      | fence ───┼────────────────────────► magic            |
//!  | node: 0          | left|bal |   node = header + 32: a member of the
//!  | right            | (unused) |   state's `region_index` (ByAddress)
//! ```
//!
//! A free looks up the region of its pointer (for the bounds a merge must
//! stay inside) in the tree: the last node at or below the address, then
//! one bounds check. A list walk cost one cache miss per region before it;
//! a heap that grew in many separate pieces (a source handing out memory
//! top-down, or a buddy whose other blocks lie between them) paid for all
//! of them on every free that merged.

use freespace_freelist::chunk::{Chunk, FENCE, REGION_HEADER};
use freespace_freelist::tree::{ByAddress, Key, Tree};

use freespace_core::Corruption;

/// Field index (in words) of the next-region pointer in a region header.
const NEXT_REGION: usize = 2;
/// Field index (in words) of the fencepost pointer in a region header.
const FENCEPOST: usize = 3;
/// Offset of the region's node in the region tree, past the header's own
/// fields and 16-aligned: a free chunk's shape to the tree (its word 0,
/// the node's size, is 0; words 1 and 2 are its links).
const NODE: usize = 32;

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

    /// The region's node in the region tree.
    #[inline]
    pub(crate) fn node(self) -> Chunk {
        // SAFETY: the node lies inside the region header (`REGION_HEADER`
        // is `NODE` plus three words or more).
        unsafe { self.0.forward(NODE) }
    }

    /// The region whose node is `node`.
    ///
    /// # Safety
    ///
    /// `node` is a member of a heap's region tree.
    #[inline]
    pub(crate) unsafe fn of_node(node: Chunk) -> Region {
        // SAFETY: caller contract: `node` is `NODE` bytes into a region
        // header.
        Region(unsafe { node.back(NODE) })
    }

    /// Makes the region's node a member of `index` (SC-H1).
    ///
    /// # Safety
    ///
    /// The region header is writable heap memory and the region is not
    /// yet a member.
    ///
    /// # Errors
    ///
    /// `index` was found damaged.
    pub(crate) unsafe fn index_in(self, index: &mut Tree<ByAddress>) -> Result<(), Corruption> {
        let node = self.node();
        // SAFETY: caller contract; word 0 of the node is the header's own
        // (its size word to the tree: 0, flags clear, FL-T1).
        unsafe {
            node.set_pointer_field(0, None);
            index.insert(node, 0)
        }
    }

    /// The region that holds `addr`, if any: `lowest` when it does (the
    /// only region of a heap over one arena), else the one the search of
    /// `index` finds, O(log regions).
    ///
    /// # Safety
    ///
    /// `lowest` and every member of `index` are intact regions (SC-H1).
    #[inline(always)]
    pub(crate) unsafe fn containing(
        lowest: Option<Region>,
        index: &Tree<ByAddress>,
        addr: usize,
    ) -> Option<Region> {
        // SAFETY: caller contract.
        unsafe {
            if let Some(r) = lowest.filter(|r| r.contains(addr)) {
                return Some(r);
            }
            // A region holds `addr` only if its header is at or below it,
            // that is its node at or below `addr + NODE` (wrapped near the
            // top of the address space, the key finds a region that the
            // bounds check then turns down).
            let node = index.at_or_before(Key {
                addr: addr.wrapping_add(NODE),
                size: 0,
            })?;
            let r = Region::of_node(node);
            r.contains(addr).then_some(r)
        }
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
