//! Measuring layers for freespace stacks.
//!
//! | module | what it holds |
//! |---|---|
//! | [`fail_after`] | [`FailAfter`], out-of-memory injection: the i-th allocation fails |
//!
//! The cross-block fault matrix (double frees, foreign and interior
//! pointers, every header byte flipped, overflows into the next header,
//! frees to the wrong layer, OOM at every allocation of a workload) lives in
//! this crate's `tests/faults.rs`; `cargo xtask reliability` turns its output
//! into `docs/reliability.md`.
//!
//! # Example
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
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(
    missing_docs,
    clippy::undocumented_unsafe_blocks,
    clippy::missing_safety_doc
)]

#[cfg(test)]
extern crate std;

pub mod fail_after;

pub use fail_after::{FailAfter, FailMode};
