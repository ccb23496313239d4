//! The first-fit policy for the freespace free-list heap: serve each
//! request from the free chunk at the **lowest address** that fits.
//!
//! First fit is fast when the fitting chunk is near the front, and it
//! leaves the large chunks at high addresses alone; its cost is that small
//! leftovers pile up at the front of the list, which every later search
//! walks past (Wilson et al. 1995, §3.5). Because the free set is kept in
//! address order, the scan can stop at the first chunk that fits.
//!
//! This plain scan is the reference every faster first-fit index will be
//! tested against: it must choose exactly the same chunk.
//!
//! # Example
//!
//! Free chunks of 30, 10, 20 and 50 units in address order: a 15-unit
//! request takes the 30.
//!
//! ```
//! use core::mem::MaybeUninit;
//! use freespace_core::alloc::Allocator;
//! use freespace_first_fit::FirstFit;
//! use freespace_source::Arena;
//! use freespace_split_coalesce::testing::{placed, policy_heap, units, POLICY_ARENA};
//!
//! let memory = Box::leak(vec![MaybeUninit::uninit(); POLICY_ARENA].into_boxed_slice());
//! let (heap, starts) = policy_heap::<FirstFit, _>(Arena::new(memory));
//! let block = heap.allocate(units(15)).unwrap();
//! assert_eq!(placed(&starts, block), (0, 0)); // the 30-unit chunk, at its start
//! heap.check().unwrap();
//! ```
#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(
    missing_docs,
    clippy::undocumented_unsafe_blocks,
    clippy::missing_safety_doc
)]

use freespace_freelist::{Chunk, Fit, FreeSet, Request};
use freespace_split_coalesce::FreeListHeap;

/// First fit: the lowest-addressed free chunk that fits. Stateless.
///
/// ```
/// use freespace_first_fit::FirstFit;
/// use freespace_freelist::{Fit, FreeSet, Request};
/// let r = Request::new(core::alloc::Layout::new::<u64>()).unwrap();
/// assert!(FirstFit.choose(&FreeSet::new(), &r).is_none());
/// ```
#[derive(Debug, Default, Clone, Copy)]
pub struct FirstFit;

// SAFETY: `choose` returns a member of `set` that fits (P1), the policy has
// no state (P2), and nothing here panics (P3).
unsafe impl Fit for FirstFit {
    const INIT: Self = FirstFit;
    const NAME: &'static str = "first fit";

    #[inline]
    fn choose(&mut self, set: &FreeSet, req: &Request) -> Option<Chunk> {
        set.iter()
            .find(|f| req.fits(f.chunk, f.size))
            .map(|f| f.chunk)
    }
}

/// A free-list heap over `S` placing by first fit.
///
/// ```
/// use freespace_first_fit::FirstFitHeap;
/// use freespace_source::Sbrk;
/// let heap: FirstFitHeap<Sbrk> = FirstFitHeap::new(Sbrk::new());
/// # let _ = heap;
/// ```
pub type FirstFitHeap<S> = FreeListHeap<FirstFit, S>;
