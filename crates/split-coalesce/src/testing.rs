//! Helpers shared by the tests and examples of this crate and the four
//! policy crates (hidden from the docs: not part of the API).
//!
//! Sizes are counted in *units* of [`UNIT`] = [`MIN_CHUNK`] bytes, the
//! chunk granularity the seed's byte-sized examples are scaled to.

use core::ptr::NonNull;

use freespace_core::alloc::{Allocator, Layout};
use freespace_core::Source;
use freespace_freelist::chunk::{FENCE, REGION_HEADER};
use freespace_freelist::{Fit, HEADER, MIN_CHUNK};

use crate::FreeListHeap;

/// One unit of the scaled examples: the smallest chunk.
pub const UNIT: usize = MIN_CHUNK;

/// The layout whose chunk is exactly `n` units.
pub fn units(n: usize) -> Layout {
    Layout::from_size_align(n * UNIT - HEADER, 8).unwrap()
}

/// Bytes of arena whose single region holds exactly `n` units of chunks.
pub const fn arena_for(n: usize) -> usize {
    REGION_HEADER + n * UNIT + FENCE
}

/// The free chunks of the policy example, in address order: 30, 10, 20 and
/// 50 units, each followed by a one-unit allocated separator.
pub const POLICY_EXAMPLE: [usize; 4] = [30, 10, 20, 50];

/// Units of chunks in [`policy_heap`]'s region: the four free chunks and
/// four one-unit separators.
pub const POLICY_UNITS: usize = 30 + 10 + 20 + 50 + 4;

/// Bytes of memory to give an `Arena` for [`policy_heap`]: the region plus
/// 15 spare bytes, so that whatever the buffer's alignment, the arena's
/// trimming to 16 leaves exactly [`arena_for`]`(POLICY_UNITS)`.
pub const POLICY_ARENA: usize = arena_for(POLICY_UNITS) + 15;

/// Builds, over `source` (a region of exactly `arena_for(POLICY_UNITS)` bytes), a
/// heap whose free chunks are [`POLICY_EXAMPLE`] in address order, and
/// returns it with the chunks' start addresses.
pub fn policy_heap<F: Fit, S: Source>(source: S) -> (FreeListHeap<F, S>, [usize; 4]) {
    let heap = FreeListHeap::new(source);
    let mut starts = [0usize; 4];
    let mut blocks: [Option<NonNull<u8>>; 4] = [None; 4];
    for (i, &n) in POLICY_EXAMPLE.iter().enumerate() {
        let b = heap.allocate(units(n)).unwrap().cast::<u8>();
        starts[i] = b.as_ptr() as usize - HEADER;
        blocks[i] = Some(b);
        // The separator: never freed, so the free chunks stay apart.
        heap.allocate(units(1)).unwrap();
    }
    for (i, b) in blocks.iter().enumerate() {
        // SAFETY: each block is live with layout `units(POLICY_EXAMPLE[i])`.
        unsafe { heap.deallocate(b.unwrap(), units(POLICY_EXAMPLE[i])) };
    }
    heap.check().unwrap();
    (heap, starts)
}

/// Which of the example's chunks (index into [`POLICY_EXAMPLE`]) a block
/// returned by the heap was cut from, and at what offset in units.
pub fn placed(starts: &[usize; 4], block: NonNull<[u8]>) -> (usize, usize) {
    let chunk = block.cast::<u8>().as_ptr() as usize - HEADER;
    for (i, &s) in starts.iter().enumerate().rev() {
        if chunk >= s {
            return (i, (chunk - s) / UNIT);
        }
    }
    panic!("block {chunk:#x} is below every example chunk")
}
