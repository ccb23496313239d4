//! The worst-fit policy for the freespace free-list heap: serve each
//! request from the **largest** free chunk, the lowest-addressed one on a
//! tie.
//!
//! The idea is that the leftover of the largest chunk is the most likely to
//! stay useful; in practice worst fit breaks up the large chunks that large
//! requests need, and fragments badly (Wilson et al. 1995, §3.5). It is
//! here because the seed names it. The plain scan looks at every free
//! chunk; [`WorstFit`] keeps them in a [`SizeIndex`] ordered largest first
//! (lowest address among equals), so its choice is the first node of the
//! tree, O(log n), and exactly what the plain scan ([`WorstFitScan`], the
//! reference it is tested against) chooses.
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

use freespace_freelist::index::SizeIndex;
use freespace_freelist::tree::ByLargest;
use freespace_freelist::{Chunk, Fit, FreeSet, Request, Scan, Scanned};
use freespace_split_coalesce::FreeListHeap;

/// Worst fit: the largest free chunk, if it fits; ties go to the lowest
/// address. Found in a [`SizeIndex`] ordered [`ByLargest`].
///
/// Over-aligned requests are the one case where the largest chunk may not
/// fit while a smaller one does (padding depends on the address); worst fit
/// then takes the largest chunk that does fit.
///
/// # Invariants
///
/// - W1: `index` holds exactly the heap's free chunks (T1–T5).
///
/// ```
/// use freespace_worst_fit::WorstFit;
/// use freespace_freelist::{Fit, Request};
/// let r = Request::new(core::alloc::Layout::new::<u64>()).unwrap();
/// let mut policy = WorstFit::INIT;
/// assert!(policy.choose(&r).is_none());
/// assert!(policy.check().is_ok());
/// ```
#[derive(Debug, Default)]
pub struct WorstFit {
    index: SizeIndex<ByLargest>,
}

// SAFETY: `choose` returns a fitting member found by the index (P1); the
// members are exactly those inserted and not removed, and the index writes
// only link words 1 and 2 (P2); nothing panics (P3); `len` and `contains`
// are the index's (P4).
unsafe impl Fit for WorstFit {
    const INIT: Self = WorstFit {
        index: SizeIndex::new(),
    };
    const NAME: &'static str = "worst fit";

    #[inline]
    fn choose(&mut self, req: &Request) -> Option<Chunk> {
        // Largest first: the walk stops at the first chunk too small.
        self.index.first_fit(self.index.tree().first(), req)
    }

    freespace_freelist::forward_to_index!(index: insert, remove, replace, resize, len, contains, check);
}

/// The plain worst-fit scan: look at every free chunk, keep the largest
/// that fits (the first of equals in address order). The reference
/// [`WorstFit`] is tested against.
///
/// ```
/// use freespace_worst_fit::WorstFitScan;
/// use freespace_freelist::{FreeSet, Request, Scan};
/// let r = Request::new(core::alloc::Layout::new::<u64>()).unwrap();
/// assert!(WorstFitScan.choose(&FreeSet::new(), &r).is_none());
/// ```
#[derive(Debug, Default, Clone, Copy)]
pub struct WorstFitScan;

// SAFETY: `choose` returns a member of `set` that fits (R1), the rule has
// no state (R2), and nothing here panics (R3).
unsafe impl Scan for WorstFitScan {
    const INIT: Self = WorstFitScan;
    const NAME: &'static str = "worst fit (scan)";

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

/// A free-list heap over `S` placing by the plain worst-fit scan.
///
/// ```
/// use freespace_worst_fit::WorstFitScanHeap;
/// use freespace_source::Sbrk;
/// let heap: WorstFitScanHeap<Sbrk> = WorstFitScanHeap::new(Sbrk::new());
/// # let _ = heap;
/// ```
pub type WorstFitScanHeap<S> = FreeListHeap<Scanned<WorstFitScan>, S>;
