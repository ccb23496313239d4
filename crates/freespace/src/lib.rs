//! **freespace**: composable memory allocators, one classic idea per crate,
//! all speaking one trait.
//!
//! Every building block implements [`Allocator`](alloc::Allocator)
//! (allocator-api2's, the version `hashbrown` uses), owns its parent by
//! value, and has a `const fn` constructor that does no work, so a stack is
//! written as a type and can be a `static`:
//!
//! ```text
//!   Locked<Slab<Buddy<Mmap>>>
//!   │      │    │     └─ source: address space reserved once, committed on demand
//!   │      │    └─ binary buddy: power-of-two blocks, O(1) merge test
//!   │      └─ Bonwick slabs: size classes for small objects
//!   └─ a lock that spins briefly, then sleeps: Sync + GlobalAlloc
//! ```
//!
//! | idea | crate | types re-exported here |
//! |---|---|---|
//! | the contract | `freespace-core` | [`alloc`], [`Source`], [`Trim`], [`Owns`], [`BlockSize`], [`Inspect`], [`Check`], [`CheckedFree`], [`Corruption`], [`Violation`] |
//! | memory sources | `freespace-source` | [`Arena`], [`StaticMemory`], [`Sbrk`], [`Mmap`], [`FromAllocator`] |
//! | free list: splitting, coalescing, magic numbers | `freespace-freelist`, `freespace-split-coalesce` | [`FreeListHeap`], [`Fit`], [`RegionError`], [`MIN_REGION`] |
//! | fit policies | `freespace-{first,next,best,worst}-fit` | [`FirstFit`], [`NextFit`], [`BestFit`], [`WorstFit`] and their `…Heap<S>` aliases; [`first_fit_from`] |
//! | binary buddy | `freespace-buddy` | [`Buddy`] |
//! | slab (object caches) | `freespace-slab` | [`Slab`], [`ObjectCache`] |
//! | segregated lists, routing | `freespace-segregated` | [`Segregated`], [`Segregator`], [`Fallback`] |
//! | concurrency | `freespace-sync` | [`Locked`], its locks [`DefaultLock`] ([`Futex`] on Linux, [`Spin`] elsewhere), [`Depot`], [`ThreadCache`], `Magazines` (feature `std`) |
//! | counting, fragmentation, heap maps, fault injection | `freespace-stats` | [`Stats`], [`Snapshot`], [`Fragmentation`], [`AsciiMap`], [`SvgMap`], [`FailAfter`] |
//!
//! Ready-made stacks with names live in [`stacks`]; [`tiered`] holds the
//! parent of the general stack's slab (a buddy for pages with a best-fit
//! heap inside it).
//!
//! # The program's allocator
//!
//! A slab in front of a buddy allocator, memory from `sbrk`, behind a lock
//! so threads can share it, as the `#[global_allocator]`:
//!
//! ```
//! use freespace::{Buddy, Locked, Sbrk, Slab};
//!
//! #[global_allocator]
//! static HEAP: Locked<Slab<Buddy<Sbrk>>> = Locked::new(Slab::new(Buddy::new(Sbrk::new())));
//!
//! fn main() {
//!     // Every allocation of the program now goes through the stack.
//!     let v: Vec<u64> = (0..1000).collect();
//!     assert_eq!(v.iter().sum::<u64>(), 499_500);
//! }
//! ```
//!
//! # A heap of your own
//!
//! A best-fit heap over a fixed arena, used by a `Vec` and a `HashMap`
//! (`hashbrown::HashMap::new_in` needs hashbrown's `allocator-api2`
//! feature):
//!
//! ```
//! use freespace::alloc::Vec;
//! use freespace::{Arena, BestFitHeap, StaticMemory};
//!
//! static MEMORY: StaticMemory<65536> = StaticMemory::new();
//! let heap = BestFitHeap::new(Arena::new(MEMORY.take().unwrap()));
//!
//! let mut v = Vec::new_in(&heap);
//! v.extend(1..=100u32);
//! assert_eq!(v.iter().sum::<u32>(), 5050);
//!
//! let mut map = hashbrown::HashMap::new_in(&heap);
//! map.insert("slab", 1994);
//! map.insert("buddy", 1965);
//! assert_eq!(map["buddy"], 1965);
//! heap.check().unwrap();
//! ```
#![no_std]

// Not under loom (the malloc shim's loom build links the facade): the
// stacks are `const` statics, and loom's `Locked::new` is not `const`.
#[cfg(not(loom))]
pub mod stacks;
pub mod tiered;

/// Every Rust snippet of the workspace's README, compiled and run as a doc
/// test (`cargo test -p freespace --doc`), so the front page cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;

pub use freespace_core::{
    alloc, corruption, layout, report, secret, set_handler, size_class, BlockInfo, BlockSize,
    BlockState, Check, CheckedFree, Corruption, HeapSummary, Inspect, KeySource, Owns, Source,
    Trim, Violation,
};

pub use freespace_source::{Arena, ArenaError, FromAllocator, StaticMemory};
#[cfg(unix)]
pub use freespace_source::{Mmap, Sbrk};

pub use freespace_best_fit::{BestFit, BestFitHeap};
pub use freespace_first_fit::{first_fit_from, FirstFit, FirstFitHeap};
pub use freespace_freelist::Fit;
pub use freespace_next_fit::{NextFit, NextFitHeap};
pub use freespace_split_coalesce::{FreeListHeap, RegionError, MIN_REGION};
pub use freespace_worst_fit::{WorstFit, WorstFitHeap};

pub use freespace_buddy::Buddy;
pub use freespace_segregated::{Fallback, Segregated, Segregator};
pub use freespace_slab::{ObjectCache, ObjectMap, Slab};

#[cfg(any(target_os = "linux", target_os = "android"))]
pub use freespace_sync::Futex;
#[cfg(all(feature = "std", not(loom)))]
pub use freespace_sync::Magazines;
pub use freespace_sync::{DefaultLock, Depot, Locked, Spin, ThreadCache};

pub use freespace_stats::{AsciiMap, FailAfter, FailMode, Fragmentation, Snapshot, Stats, SvgMap};

/// This crate's own README (`crates/freespace/README.md`), run as a doctest so it cannot go stale.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct CrateReadmeDoctests;
