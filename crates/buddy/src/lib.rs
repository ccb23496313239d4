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
//! `cargo bench -p freespace-buddy --bench churn`: 1 000 000 operations of
//! mixed-size churn (16 B–16 KiB, log-uniform, about 1 000 live blocks)
//! against buddy_system_allocator 0.13 on the same trace and arena in the
//! same process, 11 rounds taking turns; heap efficiency (requested live
//! bytes ÷ arena at the first failed allocation, 1 MiB arena, mean of 50
//! seeds). Instructions per operation are callgrind counts inside each
//! heap's allocate and free on a 200 000-operation trace. One run on a
//! shared 2-core machine:
//!
//! | | ns/op (median) | speed ratio, median (min–max) | instructions/op | efficiency (fill) | efficiency (fill + frees) |
//! |---|---:|---:|---:|---:|---:|
//! | `Buddy<_, 16>` | 14.5 | 1.58× (1.52–1.66) | 113 | 70.7 % | 70.2 % |
//! | buddy_system_allocator | 22.8 | 1.00× | 72 | 71.8 % | 71.2 % |
//! | buddy_system_allocator on the arena less 16 464 B | | | | 70.7 % | 70.2 % |
//! | `Buddy<_, 32>` | | | | 71.3 % | 70.6 % |
//!
//! The speed comes from the O(1) buddy test: buddy_system_allocator scans a
//! singly linked list to find a buddy; here it is two bit reads, and the
//! common free that does not merge touches one bitmap cache line and the
//! block. The efficiency gap is exactly the in-arena metadata (the
//! bitmaps, 2 bits per 16 bytes, and the zone header: 16 464 B of a 1 MiB
//! arena): buddy_system_allocator given the arena less those bytes scores
//! the same as this heap. That metadata is what makes the buddy test O(1)
//! and the order of a live block recoverable from its address, so this
//! heap trades about one point of efficiency for it.
//!
//! Shrinking moves the block when a free block of a smaller order than the
//! old one exists, and halves it in place otherwise: halving in place
//! always leaves the small block pinning its whole old block. In the
//! benchmark workload that resizes (`cargo xtask bench`,
//! `efficiency-realloc`: 8 MiB, 20 seeds, 30 % of steps resize) halving
//! every time scored 56.4 %; moving into holes scores 70.9 % against
//! buddy_system_allocator's 72.2 % (which always moves).
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
