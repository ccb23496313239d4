//! The free-list core of freespace: the chunk format with magic numbers, the
//! set of free chunks, and the [`Fit`] trait that placement policies
//! implement.
//!
//! The heap that splits and coalesces these chunks is
//! `freespace_split_coalesce::FreeListHeap`; the policies are the crates
//! `freespace-first-fit`, `-next-fit`, `-best-fit` and `-worst-fit`.
//!
//! | module | what it holds |
//! |---|---|
//! | [`chunk`] | [`Chunk`], the header/footer layout, [`Flags`], the [`magic`](chunk::magic) number |
//! | [`fit`] | [`Fit`] (a placement policy and its index of free chunks) and [`Request`] |
//! | [`tree`] | [`Tree`](tree::Tree): the intrusive AVL tree the indexes are made of |
//! | [`bins`] | [`Bins`](bins::Bins): exact-size lists with a bitmap; [`Binned`](bins::Binned): bins in front of a tree (best, worst fit) |
//! | [`index`] | [`AddressIndex`](index::AddressIndex): the address-ordered index of first and next fit |
//! | [`set`] | [`FreeSet`]: free chunks doubly linked in address order, the plain list |
//! | [`scan`] | [`Scanned`]: a policy that scans a [`FreeSet`] by a [`Scan`] rule, the reference for the indexes |
//!
//! # The chunk format
//!
//! A region from a `Source` is tiled by chunks, bracketed by two allocated
//! sentinels so that coalescing never runs off either end:
//!
//! ```text
//!  region start                                                  region end
//!  | region header |  chunk  |  chunk  | ... |  chunk  | fencepost |
//!  |  32 B, FENCE  | A or F  | A or F  |     | A or F  | 16 B FENCE|
//!
//!  allocated chunk (A)                     free chunk (F)
//!  +-------------------------+ c          +-------------------------+ c
//!  | size | flags  (word 0)  |            | size | flags  (word 0)  |
//!  | magic          (word 1) |            | policy link    (word 1) |
//!  +-------------------------+ c + 16     | policy link    (word 2) |
//!  | payload (16-aligned)    |            | (word 3 if > 32 bytes)  |
//!  |                         |            | size   (footer, last w) |
//!  +-------------------------+ c + size   +-------------------------+ c + size
//! ```
//!
//! - Every chunk size is a multiple of the 16-byte [`GRANULE`]; the low four
//!   bits of word 0 hold [`Flags`]: `ALLOCATED`, `PREV_FREE` (the chunk
//!   before is free, so the word before this header is its size) and
//!   `FENCE`.
//! - The magic depends on the chunk's address, its size word and a per-heap
//!   *secret* key (drawn from the OS when the heap's first region is set
//!   up, see `freespace_core::secret`): it is the size word XOR a keyed mix
//!   of the address, so a flag that changes flips the same bit in both
//!   words without a new mix. An overwritten header, a header
//!   copied elsewhere, a pointer into another heap, or a header forged by
//!   user data all fail the check: for a fixed address and size word the
//!   magic is a bijection of the key, so a forger who does not know the key
//!   guesses right with probability 2^-64 per attempt (2^-32 on 32-bit
//!   targets). [`magic`](chunk::magic) is a mix, not a MAC: anyone who can
//!   *read* one live header's two words (an out-of-bounds read) can solve
//!   for the key.
//! - A header swallowed by coalescing is *buried*: its size word zeroed and
//!   its magic replaced by a [dead mark](chunk::dead_mark), so a stale
//!   pointer to it never passes as live.
//! - An allocated chunk carries 16 bytes of overhead and no footer; the
//!   smallest chunk is 32 bytes (four words: a free chunk's size, two links
//!   and footer). The links are the policy's: bin links (next, previous)
//!   for best and worst fit's binned sizes, tree children for the chunks in
//!   a tree (word 3, in chunks larger than 32 bytes, holds a subtree's
//!   largest size for first and next fit), list links for the plain scans.
//!
//! # Example
//!
//! A [`Request`] knows where it would sit in a free chunk; a [`Fit`] picks
//! the chunk:
//!
//! ```
//! use freespace_core::alloc::Layout;
//! use freespace_freelist::{FreeSet, Request, MIN_CHUNK};
//!
//! let r = Request::new(Layout::from_size_align(100, 8).unwrap()).unwrap();
//! assert_eq!(r.size(), 128); // 16-byte header + 100 bytes, rounded to 16
//! assert_eq!(r.placement(0x1000, 128), Some(0));
//! assert!(r.placement(0x1000, 112).is_none());
//! assert!(FreeSet::new().iter().all(|f| f.size >= MIN_CHUNK));
//! ```
#![no_std]

#[cfg(test)]
extern crate std;

pub mod bins;
pub mod chunk;
pub mod fit;
pub mod index;
pub mod scan;
pub mod set;
pub mod tree;

pub use chunk::{Chunk, Flags, GRANULE, HEADER, MIN_CHUNK};
pub use fit::{Fit, Pick, Request};
pub use scan::{Scan, Scanned};
pub use set::{Free, FreeSet};

#[cfg(test)]
mod tests;

/// The README's example, run as a doctest so it cannot go stale.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
