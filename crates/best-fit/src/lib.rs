//! The best-fit policy for the freespace free-list heap: serve each request
//! from the **smallest** free chunk that fits, the lowest-addressed one on
//! a tie.
//!
//! Best fit keeps large chunks whole for large requests and, in Wilson et
//! al.'s measurements, fragments about as little as any policy; a plain
//! list scan has to look at every free chunk (it stops early only on an
//! exact fit). This scan is the reference a faster size index will be
//! tested against: it must choose exactly the same chunk.
//!
//! # Example
//!
//! Free chunks of 30, 10, 20 and 50 units in address order: a 15-unit
//! request takes the 20.
//!
//! ```
//! use core::mem::MaybeUninit;
//! use freespace_core::alloc::Allocator;
//! use freespace_best_fit::BestFit;
//! use freespace_source::Arena;
//! use freespace_split_coalesce::testing::{placed, policy_heap, units, POLICY_ARENA};
//!
//! let memory = Box::leak(vec![MaybeUninit::uninit(); POLICY_ARENA].into_boxed_slice());
//! let (heap, starts) = policy_heap::<BestFit, _>(Arena::new(memory));
//! let block = heap.allocate(units(15)).unwrap();
//! assert_eq!(placed(&starts, block), (2, 0)); // the 20-unit chunk
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

/// Best fit: the smallest free chunk that fits; ties go to the lowest
/// address. Stateless.
///
/// ```
/// use freespace_best_fit::BestFit;
/// use freespace_freelist::{Fit, FreeSet, Request};
/// let r = Request::new(core::alloc::Layout::new::<u64>()).unwrap();
/// assert!(BestFit.choose(&FreeSet::new(), &r).is_none());
/// ```
#[derive(Debug, Default, Clone, Copy)]
pub struct BestFit;

// SAFETY: `choose` returns a member of `set` that fits (P1), the policy has
// no state (P2), and nothing here panics (P3).
unsafe impl Fit for BestFit {
    const INIT: Self = BestFit;
    const NAME: &'static str = "best fit";

    #[inline]
    fn choose(&mut self, set: &FreeSet, req: &Request) -> Option<Chunk> {
        let mut best: Option<(Chunk, usize)> = None;
        for f in set.iter() {
            if !req.fits(f.chunk, f.size) {
                continue;
            }
            // Strictly smaller only: the address-ordered scan makes the
            // first of equal sizes, the lowest address, win.
            if best.is_none_or(|(_, size)| f.size < size) {
                best = Some((f.chunk, f.size));
                if f.size == req.size() {
                    break; // exact: nothing smaller can fit
                }
            }
        }
        best.map(|(c, _)| c)
    }
}

/// A free-list heap over `S` placing by best fit.
///
/// ```
/// use freespace_best_fit::BestFitHeap;
/// use freespace_source::Sbrk;
/// let heap: BestFitHeap<Sbrk> = BestFitHeap::new(Sbrk::new());
/// # let _ = heap;
/// ```
pub type BestFitHeap<S> = FreeListHeap<BestFit, S>;
