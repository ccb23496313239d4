//! Segregated free lists for popular sizes, and the two routing combinators
//! that put allocators side by side: [`Segregator`] (by size) and
//! [`Fallback`] (by failure, then by ownership).
//!
//! | type | what it does |
//! |---|---|
//! | [`Segregated<A>`] | exact free lists for a few popular sizes, refilled in batches from `A`, each capped; the rest goes straight to `A` |
//! | [`Segregator<T, S, L>`] | sizes `<= T` to `S`, larger ones to `L`; lengths from `S` clamped to `T` so frees route back |
//! | [`Fallback<P, S>`] | try `P`, then `S`; free by `P::owns` |
//!
//! All three own what they route to by value (`&A` is an allocator too, to
//! share one), keep their state in `Cell`s, are `!Sync`, and are built by a
//! `const fn` that does no work, so any stack of them can be a `static`
//! behind a lock.
//!
//! ```text
//!                 Segregator<256, _, _>
//!                 ┌────────┴─────────┐
//!          size <= 256           size > 256
//!                 │                  │
//!     Segregated<&Heap>              │      lists 16 32 64 128 256 …
//!     (lists, batch refill,          │      ●→●  ○  ●→●→●  ○  ●
//!      capped per list)              │
//!                 └──────► Heap ◄────┘      a general allocator
//! ```
//!
//! # Routing rules, in one place
//!
//! - **Zero-size** requests return a dangling aligned pointer and reach no
//!   parent; freeing one is a no-op. A resize to or from zero is a free or a
//!   fresh allocation.
//! - **`Segregated`**: `align <= 16` and `size <= ` the largest class → the
//!   smallest class `S >= size`, reported as exactly `S` bytes; anything
//!   else → the parent, unchanged. A free with any size from the request to
//!   the reported length lands in the same place.
//! - **`Segregator<T>`**: `size <= T` → small side, its length clamped to
//!   `T`; else → large side. A resize across `T` moves the block.
//! - **`Fallback`**: allocate from the primary, else the secondary; free,
//!   grow and shrink go to the primary if it owns the pointer, else to the
//!   secondary; a grow the primary cannot do moves the block to the
//!   secondary.
//!
//! # Corruption
//!
//! A pointer freed into the wrong layer is reported, not absorbed, as far as
//! each layer can see: `Segregated` reports a double free of a cached block
//! and a misaligned class pointer through [`freespace_core::report`] (as
//! `"segregated"`), and every type has a checked `try_deallocate` (where its
//! parents have a checked free, [`freespace_core::CheckedFree`], and for
//! the routers are [`freespace_core::Owns`]) that returns the
//! [`freespace_core::Corruption`] — foreign or interior pointer, size on
//! the wrong side of a threshold, double free — without freeing or writing
//! anything and without a report: what a layer cannot see itself goes to
//! its parent's checked free, never to a reporting `deallocate`.
//!
//! # Example
//!
//! ```
//! use freespace_core::alloc::{Global, Vec};
//! use freespace_segregated::{Segregated, Segregator};
//!
//! let heap: Segregator<512, _, _> = Segregator::new(Segregated::new(Global), Global);
//! let mut words = Vec::new_in(&heap);
//! for i in 0..100u64 {
//!     words.push(i); // grows through the classes, then past 512 B to Global
//! }
//! assert_eq!(words.iter().sum::<u64>(), 4950);
//! drop(words);
//! heap.small().release_cached();
//! assert_eq!(heap.small().cached_bytes(), 0);
//! ```
#![no_std]

#[cfg(test)]
extern crate std;

mod fallback;
mod segregated;
mod segregator;

pub use fallback::Fallback;
pub use segregated::{
    Segregated, CLASS_ALIGN, DEFAULT_BATCH, DEFAULT_CAP, DEFAULT_SIZES, MAX_CLASSES,
};
pub use segregator::Segregator;

/// The README's example, run as a doctest so it cannot go stale.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
