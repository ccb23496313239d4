//! A binary buddy allocator over any freespace [`Source`](freespace_core::Source).
//!
//! [`Buddy`] hands out blocks whose sizes are powers of two, each aligned to
//! its own size. A request takes the smallest free block that fits and
//! halves it until it just fits; a free merges the block with its *buddy*
//! (the other half of the block it was split from) for as long as the buddy
//! is free too:
//!
//! ```text
//!  order 3 [                 128                 ]
//!  order 2 [        64        ][        64        ]
//!  order 1 [   32   ][   32   ][   32   ][   32   ]
//!  order 0 [16 ][16 ][16 ][16 ][16 ][16 ][16 ][16 ]
//!
//!  the buddy of the block at a, order k, is at a XOR (16 << k)
//! ```
//!
//! Whether the buddy is free is two bit reads in the zone's bitmaps, the
//! free lists are intrusive and doubly linked, and the smallest non-empty
//! list is one `trailing_zeros`, so both paths are O(orders) at worst and
//! O(1) per step. Regions from the source may start and end anywhere: they
//! are cut into the largest naturally aligned blocks that fit, and a region
//! that continues the previous one joins it, so blocks merge across the old
//! boundary.
//!
//! | module | what it holds |
//! |---|---|
//! | `buddy` | [`Buddy`], its `Allocator`, `Owns`, `BlockSize` and `Inspect` impls, the checked frees |
//! | `heap` | the state: free lists, split/merge, growth, `check` |
//! | `zone` | the per-zone header and bitmaps |
//!
//! # Example
//!
//! ```
//! use freespace_buddy::Buddy;
//! use freespace_core::alloc::{Allocator, Layout};
//! use freespace_core::{BlockSize, HeapSummary};
//! use freespace_source::{Arena, StaticMemory};
//!
//! static MEMORY: StaticMemory<{ 256 * 1024 }> = StaticMemory::new();
//! let heap: Buddy<Arena> = Buddy::new(Arena::new(MEMORY.take().unwrap()));
//!
//! // 100 bytes aligned to 64 take a 128-byte block, aligned to 128.
//! let layout = Layout::from_size_align(100, 64).unwrap();
//! let block = heap.allocate(layout).unwrap();
//! assert_eq!(block.len(), 128);
//! assert_eq!(block.cast::<u8>().as_ptr() as usize % 128, 0);
//!
//! // Its size is known from the address alone, so it can be freed without the layout.
//! // SAFETY: `block` is live and not used again.
//! unsafe {
//!     assert_eq!(heap.usable_size(block.cast()), 128);
//!     heap.free(block.cast());
//! }
//! heap.check().unwrap();
//!
//! // Everything merged back: the free memory is a handful of large blocks.
//! let s = HeapSummary::of(&heap);
//! assert_eq!(s.used_blocks, 0);
//! assert_eq!(s.largest_free, 128 * 1024);
//! ```
#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(
    missing_docs,
    clippy::undocumented_unsafe_blocks,
    clippy::missing_safety_doc
)]

#[cfg(test)]
extern crate std;

mod buddy;
mod heap;
mod zone;

#[cfg(test)]
mod tests;

pub use buddy::{Buddy, NAME};
