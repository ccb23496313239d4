//! Measuring layers for freespace stacks.
//!
//! | module | what it holds |
//! |---|---|
//! | [`stats`] | [`Stats`], a counting layer (allocations, frees, resizes in place or moved, failures, live and peak bytes, a size histogram) and its [`Snapshot`] |
//! | [`fragmentation`] | [`Fragmentation`]: free bytes, largest free block, external fragmentation, utilisation, from any [`Inspect`](freespace_core::Inspect) heap |
//! | [`heapmap`] | heap maps of any `Inspect` heap: [`AsciiMap`] (text) and [`SvgMap`] (a picture) |
//! | [`fail_after`] | [`FailAfter`], out-of-memory injection: the i-th allocation fails |
//! | [`trace`] | the allocation trace format `freespace-malloc` records (`FREESPACE_TRACE`) and `cargo xtask replay` reads: [`trace::Header`], [`trace::Record`], [`trace::records`] |
//!
//! The cross-block fault matrix (double frees, foreign and interior
//! pointers, every header byte flipped, overflows into the next header,
//! frees to the wrong layer, OOM at every allocation of a workload) lives in
//! this crate's `tests/faults.rs`; `cargo xtask reliability` turns its output
//! into `docs/reliability.md`.
//!
//! # Examples
//!
//! Counting what a workload asks of a heap, then looking at the heap:
//!
//! ```
//! use freespace_core::alloc::{Global, Vec};
//! use freespace_core::{BlockInfo, BlockState, Inspect};
//! use freespace_stats::{AsciiMap, Fragmentation, Stats};
//!
//! let heap = Stats::new(Global);
//! let mut v: Vec<u64, _> = Vec::new_in(&heap);
//! v.extend(0..1000);
//! let s = heap.snapshot();
//! assert_eq!((s.allocations, s.live_blocks, s.live_bytes), (1, 1, 8 * v.capacity()));
//! drop(v);
//! assert_eq!(heap.snapshot().live_bytes, 0);
//!
//! // Any heap that can walk its blocks has a fragmentation report and a map.
//! struct Pretend;
//! impl Inspect for Pretend {
//!     fn inspect(&self, visit: &mut dyn FnMut(BlockInfo)) {
//!         visit(BlockInfo { addr: 0, len: 64, state: BlockState::Used });
//!         visit(BlockInfo { addr: 64, len: 64, state: BlockState::Free });
//!     }
//! }
//! assert_eq!(Fragmentation::of(&Pretend).free_bytes(), 64);
//! assert_eq!(AsciiMap::new(16, 8).display(&Pretend).to_string(), "+0x00 |####....|\n");
//! ```
//!
//! A workload that must surface every out-of-memory as an `Err`:
//!
//! ```
//! use freespace_core::alloc::{Global, Vec};
//! use freespace_stats::FailAfter;
//!
//! let heap = FailAfter::new(Global, 1); // the second request fails
//! let mut v: Vec<u8, _> = Vec::new_in(&heap);
//! assert!(v.try_reserve(10).is_ok()); // request 0
//! assert!(v.try_reserve(100).is_err()); // request 1: injected
//! assert!(v.try_reserve(100).is_ok()); // request 2
//! assert_eq!((heap.requests(), heap.failures()), (3, 1));
//! ```
#![no_std]

#[cfg(test)]
extern crate std;

pub mod fail_after;
pub mod fragmentation;
pub mod heapmap;
pub mod stats;
pub mod trace;

pub use fail_after::{FailAfter, FailMode};
pub use fragmentation::Fragmentation;
pub use heapmap::{AsciiMap, SvgMap, ASCII_LEGEND, SVG_COLOURS};
pub use stats::{size_class, Snapshot, Stats, SIZE_CLASSES};

/// The README's example, run as a doctest so it cannot go stale.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
