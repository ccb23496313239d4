//! The worst-fit policy for the freespace free-list heap: serve each
//! request from the **largest** free chunk, the lowest-addressed one on a
//! tie.
//!
//! The idea is that the leftover of the largest chunk is the most likely to
//! stay useful; in practice worst fit breaks up the large chunks that large
//! requests need, and fragments badly (Wilson et al. 1995, §3.5). It is
//! here because the seed names it. The plain scan looks at every free
//! chunk; it is the reference a faster index will be tested against.
//!
//! # Example
//!
//! Free chunks of 30, 10, 20 and 50 units in address order: a 15-unit
//! request takes the 50.
//!
//! ```
//! use core::mem::MaybeUninit;
//! use freespace_core::alloc::Allocator;
//! use freespace_worst_fit::WorstFit;
//! use freespace_source::Arena;
//! use freespace_split_coalesce::testing::{placed, policy_heap, units, POLICY_ARENA};
//!
//! let memory = Box::leak(vec![MaybeUninit::uninit(); POLICY_ARENA].into_boxed_slice());
//! let (heap, starts) = policy_heap::<WorstFit, _>(Arena::new(memory));
//! let block = heap.allocate(units(15)).unwrap();
//! assert_eq!(placed(&starts, block), (3, 0)); // the 50-unit chunk
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

/// Worst fit: the largest free chunk, if it fits; ties go to the lowest
/// address. Stateless.
///
/// Over-aligned requests are the one case where the largest chunk may not
/// fit while a smaller one does (padding depends on the address); worst fit
/// then takes the largest chunk that does fit.
///
/// ```
/// use freespace_worst_fit::WorstFit;
/// use freespace_freelist::{Fit, FreeSet, Request};
/// let r = Request::new(core::alloc::Layout::new::<u64>()).unwrap();
/// assert!(WorstFit.choose(&FreeSet::new(), &r).is_none());
/// ```
#[derive(Debug, Default, Clone, Copy)]
pub struct WorstFit;

// SAFETY: `choose` returns a member of `set` that fits (P1), the policy has
// no state (P2), and nothing here panics (P3).
unsafe impl Fit for WorstFit {
    const INIT: Self = WorstFit;
    const NAME: &'static str = "worst fit";

    #[inline]
    fn choose(&mut self, set: &FreeSet, req: &Request) -> Option<Chunk> {
        let mut worst: Option<(Chunk, usize)> = None;
        for f in set.iter() {
            // Strictly larger only: ties go to the lowest address.
            if worst.is_none_or(|(_, size)| f.size > size) && req.fits(f.chunk, f.size) {
                worst = Some((f.chunk, f.size));
            }
        }
        worst.map(|(c, _)| c)
    }
}

/// A free-list heap over `S` placing by worst fit.
///
/// ```
/// use freespace_worst_fit::WorstFitHeap;
/// use freespace_source::Sbrk;
/// let heap: WorstFitHeap<Sbrk> = WorstFitHeap::new(Sbrk::new());
/// # let _ = heap;
/// ```
pub type WorstFitHeap<S> = FreeListHeap<WorstFit, S>;
