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
//! O(1) per step. The heap keeps a copy of the last zone it used, so
//! finding a pointer's zone is usually one comparison. Regions from the source may start and end anywhere: they
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
//! # Performance
//!
//! Measured figures are not copied here, so they cannot drift: the
//! generated pages hold them — `docs/benchmarks.md` (`cargo xtask bench`:
//! `Buddy` and the stacks built on it next to buddy_system_allocator,
//! glibc, mimalloc and others, speed and heap efficiency, the resizing
//! workload `efficiency-realloc` included) and `docs/benchmarks-callgrind.md`
//! (instructions per operation). `cargo bench -p freespace-buddy --bench
//! churn` runs this heap against buddy_system_allocator on one trace.
//!
//! Where the speed comes from: the O(1) buddy test. buddy_system_allocator
//! scans a singly linked list to find a buddy; here it is two bit reads,
//! and the common free that does not merge touches one bitmap cache line
//! and the block. What it costs is the in-arena metadata (the bitmaps, 2
//! bits per 16 bytes, and the zone header: 16 464 B of a 1 MiB arena),
//! which is exactly the efficiency gap to buddy_system_allocator: given the
//! arena less those bytes, it scores the same as this heap. That metadata
//! is what makes the buddy test O(1) and the order of a live block
//! recoverable from its address.
//!
//! Shrinking moves the block when a free block of a smaller order than the
//! old one exists, and halves it in place otherwise: halving in place
//! always leaves the small block pinning its whole old block, and in the
//! resizing workload, halving every time scored far below moving into
//! holes (which is what buddy_system_allocator always does).
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
//! // Everything merged back: all but the metadata is free, in a handful of
//! // large blocks (how large depends on where the static lands: blocks are
//! // aligned to their size in absolute terms).
//! let s = HeapSummary::of(&heap);
//! assert_eq!(s.used_blocks, 0);
//! assert_eq!(s.free_bytes + s.meta_bytes, 256 * 1024);
//! assert!(s.largest_free >= 64 * 1024 && s.free_blocks <= 2 * 14);
//! ```
#![no_std]

#[cfg(test)]
extern crate std;

mod buddy;
mod heap;
mod zone;

#[cfg(test)]
mod tests;

pub use buddy::{Buddy, DEFAULT_PURGE_AFTER, NAME, PURGE_MIN};

/// The README's example, run as a doctest so it cannot go stale.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
