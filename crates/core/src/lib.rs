//! The shared contract of every freespace allocator.
//!
//! freespace is a set of small allocator crates that all speak one trait,
//! [`alloc::Allocator`], so that a user stacks them in code. This crate is the
//! floor they all stand on:
//!
//! | module | what it holds |
//! |---|---|
//! | [`alloc`] | the single re-export of allocator-api2 (`Allocator`, `Layout`, `AllocError`, `Global`) |
//! | [`source`] | [`Source`]: where heaps get raw regions from |
//! | [`query`] | [`Owns`] and [`BlockSize`]: "is this mine?" and "how big is it?" |
//! | [`inspect`] | [`Inspect`]: walk every block of a heap, and [`HeapSummary`] built on it |
//! | [`lock`] | the raw locks `Sync` layers wait on: [`lock::Futex`] (spin briefly, then sleep; the default on Linux) and [`lock::Spin`] (bare metal) |
//! | [`layout`] | checked size and alignment arithmetic (overflow is `None`, never a wrap) |
//! | [`corruption`] | [`Corruption`] and the one reporting function, [`report`] |
//! | [`check`] | [`Check`] (a whole stack's invariants, layer by layer) and [`CheckedFree`] (any heap's checked free) |
//! | [`size_class`] | the size-class series the slab and the thread caches round to |
//! | [`resize`] | moving a block to a fresh one when a resize cannot happen in place, and [`forward_resize!`] (an `Allocator`'s `grow`/`grow_zeroed`/`shrink` through one resize function) |
//! | [`global`] | `GlobalAlloc` in terms of `Allocator`, and [`forward_global_alloc!`] (a `GlobalAlloc` impl's body) |
//! | [`hint`] | [`hint::prefetch_write`]: a cache line fetched for a write before the write |
//! | [`secret`] | [`KeySource`]: the secret a heap keys its header check values by (OS randomness or a seed) |
//! | [`violation`] | [`Violation`], what a heap's `check()` returns when an invariant is broken |
//!
//! # Example
//!
//! A tiny bump allocator written against this contract, used through
//! allocator-api2's `Vec` (re-exported as [`alloc::Vec`]):
//!
//! ```
//! use core::cell::Cell;
//! use core::ptr::NonNull;
//! use freespace_core::alloc::{AllocError, Allocator, Layout};
//! use freespace_core::layout;
//!
//! struct Bump { buf: NonNull<u8>, len: usize, used: Cell<usize> }
//!
//! unsafe impl Allocator for Bump {
//!     fn allocate(&self, l: Layout) -> Result<NonNull<[u8]>, AllocError> {
//!         if l.size() == 0 { return Ok(layout::dangling(l)); }
//!         let base = self.buf.as_ptr() as usize;
//!         let start = layout::align_up(base + self.used.get(), l.align()).ok_or(AllocError)?;
//!         let end = start.checked_add(l.size()).ok_or(AllocError)?;
//!         if end > base + self.len { return Err(AllocError); }
//!         self.used.set(end - base);
//!         // SAFETY: `start - base < len`, so the offset stays inside `buf`.
//!         let p = unsafe { self.buf.add(start - base) };
//!         Ok(NonNull::slice_from_raw_parts(p, l.size()))
//!     }
//!     unsafe fn deallocate(&self, _: NonNull<u8>, _: Layout) {}
//! }
//!
//! let mut storage = [0u8; 256];
//! let bump = Bump { buf: NonNull::from(&mut storage).cast(), len: 256, used: Cell::new(0) };
//! let mut v = freespace_core::alloc::Vec::new_in(&bump);
//! v.extend_from_slice(&[1u32, 2, 3]);
//! assert_eq!(v.iter().sum::<u32>(), 6);
//! ```
#![no_std]

#[cfg(any(test, loom))]
extern crate std;

pub mod batch;
pub mod check;
pub mod corruption;
pub mod global;
pub mod hint;
pub mod inspect;
pub mod layout;
pub mod lock;
pub mod query;
pub mod resize;
pub mod secret;
pub mod size_class;
pub mod source;
pub mod trim;
pub mod violation;

/// The allocator API every freespace block speaks: allocator-api2's mirror of
/// `core::alloc::Allocator`, pinned once for the whole workspace.
///
/// When `core::alloc::Allocator` is stable this module changes and nothing
/// else does.
///
/// ```
/// use freespace_core::alloc::{Allocator, Global, Layout};
/// let layout = Layout::new::<u64>();
/// let block = Global.allocate(layout).unwrap();
/// // SAFETY: `block` was just allocated by `Global` with `layout`.
/// unsafe { Global.deallocate(block.cast(), layout) };
/// ```
pub mod alloc {
    #[cfg(feature = "alloc")]
    pub use allocator_api2::alloc::Global;
    pub use allocator_api2::alloc::{AllocError, Allocator, GlobalAlloc, Layout, LayoutError};
    /// `Vec` and `Box` parameterised by an allocator, so every block can be
    /// used with them today (`Vec::new_in(&heap)`).
    #[cfg(feature = "alloc")]
    pub use allocator_api2::{boxed, boxed::Box, vec, vec::Vec};
}

pub use batch::Batch;
pub use check::{Check, CheckedFree};
pub use corruption::{report, set_handler, Corruption, Handler};
pub use inspect::{BlockInfo, BlockState, HeapSummary, Inspect};
pub use query::{BlockSize, Owns};
pub use secret::KeySource;
pub use source::{Source, REGION_ALIGN};
pub use trim::Trim;
pub use violation::Violation;

/// The README's example, run as a doctest so it cannot go stale.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
