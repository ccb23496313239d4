//! The next-fit policy for the freespace free-list heap: first fit, but
//! each search **starts where the last one ended** (a *roving pointer*)
//! and wraps around to the lowest address.
//!
//! Next fit spreads allocations over the whole heap instead of piling
//! small leftovers at the front, so searches are short; the price is worse
//! locality and, in Wilson et al.'s measurements, more fragmentation than
//! first fit. The rover must survive the chunk it names being split
//! (it moves to the remainder), coalesced into a neighbour or handed out
//! whole (it moves to the next free chunk): the heap tells the policy about
//! every such change through the [`Fit`] notifications.
//!
//! # Example
//!
//! Free chunks of 30, 10, 20 and 50 units in address order. A 15-unit
//! request takes the 30 (the search starts at the lowest address); a
//! 16-unit request then goes on from the 30's remainder to the 20; a 2-unit
//! request continues in the 20's remainder, where first fit would go back
//! to the 30's.
//!
//! ```
//! use core::mem::MaybeUninit;
//! use freespace_core::alloc::Allocator;
//! use freespace_next_fit::NextFit;
//! use freespace_source::Arena;
//! use freespace_split_coalesce::testing::{placed, policy_heap, units, POLICY_ARENA};
//!
//! let memory = Box::leak(vec![MaybeUninit::uninit(); POLICY_ARENA].into_boxed_slice());
//! let (heap, starts) = policy_heap::<NextFit, _>(Arena::new(memory));
//! assert_eq!(placed(&starts, heap.allocate(units(15)).unwrap()), (0, 0));
//! assert_eq!(placed(&starts, heap.allocate(units(16)).unwrap()), (2, 0));
//! assert_eq!(placed(&starts, heap.allocate(units(2)).unwrap()), (2, 16));
//! heap.check().unwrap();
//! ```
#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(
    missing_docs,
    clippy::undocumented_unsafe_blocks,
    clippy::missing_safety_doc
)]

use freespace_core::Violation;
use freespace_freelist::{Chunk, Fit, FreeSet, Request};
use freespace_split_coalesce::FreeListHeap;

/// Next fit: first fit from the roving pointer, wrapping.
///
/// # Invariants
///
/// - N1: `rover` is `None` or a member of the heap's free set.
///
/// ```
/// use freespace_next_fit::NextFit;
/// use freespace_freelist::{Fit, FreeSet, Request};
/// let r = Request::new(core::alloc::Layout::new::<u64>()).unwrap();
/// let mut policy = NextFit::INIT;
/// assert!(policy.choose(&FreeSet::new(), &r).is_none());
/// assert!(policy.check(&FreeSet::new()).is_ok());
/// ```
#[derive(Debug, Default, Clone, Copy)]
pub struct NextFit {
    /// Where the next search starts (N1); `None` means the lowest address.
    rover: Option<Chunk>,
}

// SAFETY: `choose` returns a member that fits (P1); the rover only ever
// names a member, because every removal or replacement of the chunk it
// names moves it (N1, P2); nothing here panics (P3).
unsafe impl Fit for NextFit {
    const INIT: Self = NextFit { rover: None };
    const NAME: &'static str = "next fit";

    fn choose(&mut self, set: &FreeSet, req: &Request) -> Option<Chunk> {
        let start = self.rover.or(set.first())?;
        // SAFETY: `start` is the rover or the first member, a member (N1).
        let upper = unsafe { set.iter_from(start) };
        let lower = set.iter().take_while(|f| f.chunk != start);
        let found = upper
            .chain(lower)
            .find(|f| req.fits(f.chunk, f.size))
            .map(|f| f.chunk);
        if found.is_some() {
            self.rover = found;
        }
        found
    }

    #[inline]
    fn removed(&mut self, _set: &FreeSet, chunk: Chunk, successor: Option<Chunk>) {
        if self.rover == Some(chunk) {
            self.rover = successor;
        }
    }

    #[inline]
    fn replaced(&mut self, _set: &FreeSet, old: Chunk, new: Chunk) {
        if self.rover == Some(old) {
            self.rover = Some(new);
        }
    }

    fn check(&self, set: &FreeSet) -> Result<(), Violation> {
        match self.rover {
            Some(r) if !set.iter().any(|f| f.chunk == r) => Err(Violation::new(
                "N1",
                r.addr(),
                "next fit's rover is not a free chunk",
            )),
            _ => Ok(()),
        }
    }
}

/// A free-list heap over `S` placing by next fit.
///
/// ```
/// use freespace_next_fit::NextFitHeap;
/// use freespace_source::Sbrk;
/// let heap: NextFitHeap<Sbrk> = NextFitHeap::new(Sbrk::new());
/// # let _ = heap;
/// ```
pub type NextFitHeap<S> = FreeListHeap<NextFit, S>;
