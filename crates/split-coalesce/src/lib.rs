//! Splitting and coalescing, and the free-list heap that uses them:
//! [`FreeListHeap<F, S>`](FreeListHeap).
//!
//! The heap hands its free chunks to a [`Fit`](freespace_freelist::Fit)
//! policy, which keeps them in its own index (exact-size bins and an
//! intrusive AVL tree inside the free chunks, see `freespace_freelist::bins`
//! and `freespace_freelist::tree`) and picks the chunk for each request.
//! The policies live in their own crates, each with an alias:
//! `FirstFitHeap<S>`, `NextFitHeap<S>`, `BestFitHeap<S>`, `WorstFitHeap<S>`;
//! the plain list scans they are tested against are `FirstFitScanHeap<S>`
//! and so on.
//!
//! | module | what it does |
//! |---|---|
//! | `heap` | [`FreeListHeap`], placement and **splitting**, growth through the `Source`, in-place `grow`/`shrink` |
//! | `free` | validation of a freed pointer, **coalescing**, classification of corruption, `Owns`, `BlockSize` |
//! | `check` | [`FreeListHeap::check`] (invariants SC-H1–H8) and `Inspect` |
//! | `region` | the region list: header and fencepost sentinels |
//! | `error` | [`RegionError`]: why [`FreeListHeap::try_new`] refused a source |
//!
//! # Splitting and coalescing
//!
//! ```text
//!  allocate 40 B from a 256 B free chunk (split: the tail stays free)
//!    [ free 256                          ]
//!    [ used 64 ][ free 192               ]
//!
//!  free the middle of three (coalesce with both free neighbours, O(1)
//!  through the boundary tags: the footer before, the flags after)
//!    [ free 64 ][ used 64 ][ free 128    ]
//!    [ free 256                          ]
//! ```
//!
//! A request whose remainder would be smaller than a chunk (32 B) takes the
//! whole chunk: at most 16 bytes of internal fragmentation, visible through
//! `Inspect` as a used block longer than asked. An over-aligned request
//! (any power of two; 4096 is tested) is placed so the front padding is
//! either zero or a whole free chunk: no sliver is ever lost.
//!
//! # Costs
//!
//! | operation | cost |
//! |---|---|
//! | allocate | the policy's search (O(log n) for the four policies here; O(n) for their plain scans) + a split (O(log n) index update) |
//! | free | O(1) validation and coalescing, plus one O(log n) index update (O(n) insertion for the plain scans when neither neighbour is free) |
//! | a free that is not valid | a walk of the pointer's region, to say exactly what is wrong |
//! | grow/shrink in place | O(1) plus one O(log n) index update |
//!
//! # Corruption
//!
//! `deallocate` checks, in order: alignment (16), which region the pointer
//! is in (none: *foreign pointer*), then the header: allocated, magic
//! matching address and size, sane size, and the match *confirmed* by the
//! next chunk (its `PREV_FREE` clear and its own header intact). On any
//! failure it walks the region to name the problem: *double free* (the
//! chunk is free, or the pointer is inside a free chunk it was coalesced
//! into, or inside a live chunk with its old header still buried there),
//! *interior pointer*, or *overwritten header* (with the damaged header's
//! address). A layout whose size could not have produced the chunk is a
//! *size mismatch*. The problem goes to `freespace_core::report` (default:
//! message and abort); [`FreeListHeap::try_deallocate`] returns it instead.
//!
//! A plain `deallocate` takes its contract's word for the pointer's origin
//! (a live block of this heap) in its common case: if the pointer lies in
//! the span of the heap's regions (lowest first chunk to highest
//! fencepost, two comparisons), it reads the header in front of it and
//! the one after the chunk first, and a chunk whose magic matches, whose
//! layout fits and whose neighbours are both allocated (the next one with
//! its magic right) is freed without the region lookup. A chunk that
//! passed those checks but may have a free neighbour looks its region up
//! for the merge's bounds and goes on without checking its header again.
//! Anything else — a pointer outside the span, or any check failing —
//! takes the order above, so every fault is named as before.
//! The contract breach this cannot survive: a foreign pointer between two
//! of the heap's regions whose 16 bytes in front are not mapped (a heap
//! with one region, or over `Arena`, `Sbrk` or `Mmap` directly, has no
//! such gap). Where a pointer's origin is in doubt, use the checked free.
//!
//! Classifying an invalid pointer reads the 16 bytes before it, which
//! may be user data or memory nobody has written yet: adding a region
//! writes only its boundary headers (never the whole region, so a 2 GiB
//! region over `Mmap` does not become 2 GiB of resident memory). A pointer
//! into a block whose bytes there were never written (or hold
//! uninitialised bytes: struct padding, `MaybeUninit`) makes that read one
//! of uninitialised memory; such a free already breaks `deallocate`'s
//! contract, and the check is best effort. Pointers at chunk boundaries
//! (double frees, stale pointers) read headers the heap wrote.
//!
//! What cannot be detected: a stale pointer that happens to be the start of
//! a new live block (it is indistinguishable from that block). A pointer
//! into a live block whose user data imitates a header is caught unless the
//! imitation carries the right magic, and the magic is keyed by a secret.
//!
//! # Forged headers and the secret key
//!
//! The magic of a header is `magic(address, size word, key)`, and `key` is
//! a per-heap secret drawn when the first region is set up: from the OS
//! (`getrandom`, else `AT_RANDOM`) for [`FreeListHeap::new`], from the
//! caller's seed for [`FreeListHeap::with_seed`] (the `no_std` way, and the
//! deterministic one for tests). Addresses are not secret (`Inspect` shows
//! them), so without the key a forged header in user data (an allocated
//! header inside a live block, lined up with the next real header) would be
//! accepted by the checked free, and the chunk it claims would be handed out
//! again over the live block. With the key:
//!
//! - for a fixed address and size word the magic is a bijection of the key,
//!   so a forger who does not know the key passes the check with
//!   probability **2^-64 per attempt** (2^-32 on 32-bit targets); a failed
//!   attempt is reported (by default: abort), so a process gives one try;
//! - accidental matches (user data that happens to look like a header) are
//!   as unlikely, and must also be *confirmed* by the next chunk's header;
//! - what the key does not protect against: a program that can **read** a
//!   live header (an out-of-bounds read) learns `magic`, address and size
//!   word and can solve for the key (`magic` is a cheap mix, not a MAC), and
//!   a heap built with a seed the attacker knows.
//!
//! The cost is one `getrandom` call per heap, when its first region is set
//! up; the check on each free is the same multiply-and-shift as before.
//!
//! Regions that arrive contiguous with an existing one are merged, in
//! whichever order they come: a piece that continues a region upwards turns
//! its fencepost into free space, one that ends where a region begins takes
//! that region's header down to its own start, and one that closes the gap
//! between two regions joins all three. A heap over a buddy or `mmap`,
//! which hand out memory top down or out of order, stays a few regions.
//! This assumes the source's regions share provenance when contiguous
//! (true for `Sbrk`, `Mmap` and a buddy's blocks).
//!
//! # Example
//!
//! ```
//! use core::mem::MaybeUninit;
//! use freespace_best_fit::BestFitHeap;
//! use freespace_core::alloc::{Allocator, Layout};
//! use freespace_source::Arena;
//!
//! let heap = BestFitHeap::new(Arena::new(Box::leak(Box::new([MaybeUninit::uninit(); 1 << 16]))));
//! let mut names = allocator_api2::vec::Vec::new_in(&heap);
//! names.extend_from_slice(b"first, next, best, worst");
//! let l = Layout::from_size_align(100, 4096).unwrap();
//! let page = heap.allocate(l).unwrap();
//! assert_eq!(page.cast::<u8>().as_ptr() as usize % 4096, 0);
//! // SAFETY: `page` is live with layout `l`.
//! unsafe { heap.deallocate(page.cast(), l) };
//! heap.check().unwrap();
//! ```
#![no_std]

#[cfg(test)]
extern crate std;

mod check;
mod error;
mod free;
mod heap;
mod region;
mod trim;

pub use error::{RegionError, MIN_REGION};
pub use heap::{FreeListHeap, GROWTH};

#[doc(hidden)]
pub mod testing;

/// The README's example, run as a doctest so it cannot go stale.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
