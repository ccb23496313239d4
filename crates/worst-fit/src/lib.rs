//! The worst-fit policy for the freespace free-list heap: serve each
//! request from the **largest** free chunk.
//!
//! The idea is that the leftover of the largest chunk is the most likely to
//! stay useful; in practice worst fit breaks up the large chunks that large
//! requests need, and fragments badly (Wilson et al. 1995, §3.5). It is
//! here because the seed names it. The plain scan looks at every free
//! chunk; [`WorstFit`] keeps them in a [`Binned`] index: exact-size bins
//! (with a bitmap) for chunks up to [`LARGEST_BINNED`] bytes and an AVL
//! tree ordered [`ByLargest`] for the larger ones. Its choice is the first
//! node of the tree, O(log n), or when the tree is empty the head of the
//! highest non-empty bin, one bit scan; freed small chunks cost O(1).
//!
//! # Ties
//!
//! Among free chunks of the largest size, a binned size gives the **most
//! recently freed** one (the head of its bin), a larger size the **lowest
//! address** (the tree's order). The plain scan ([`WorstFitScan`], the
//! reference [`WorstFit`] is tested against) keeps its list most recent
//! first ([`Scan::RECENT_FIRST`]) and applies the same rule, so the two
//! choose exactly the same chunk at every step.
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

use freespace_freelist::bins::{size_of_bin, Binned, BINS, LARGEST_BINNED};
use freespace_freelist::tree::{Key, Order};
use freespace_freelist::{Chunk, Fit, FreeSet, Request, Scan, Scanned};
use freespace_split_coalesce::FreeListHeap;

/// Worst fit's tree order: largest first, lowest address among equal
/// sizes.
///
/// ```
/// use freespace_worst_fit::ByLargest;
/// use freespace_freelist::tree::{Key, Order};
/// assert!(ByLargest::before(Key { addr: 64, size: 48 }, Key { addr: 32, size: 32 }));
/// assert!(ByLargest::before(Key { addr: 32, size: 48 }, Key { addr: 64, size: 48 }));
/// ```
#[derive(Debug)]
pub enum ByLargest {}

impl Order for ByLargest {
    const AUGMENTED: bool = false;
    const BY_SIZE: bool = true;
    #[inline]
    fn before(a: Key, b: Key) -> bool {
        a.size > b.size || (a.size == b.size && a.addr < b.addr)
    }
}

/// Worst fit: the largest free chunk, if it fits; among equals the most
/// recently freed (binned sizes) or the lowest address (larger sizes).
///
/// Over-aligned requests are the one case where the largest chunk may not
/// fit while a smaller one does (padding depends on the address); worst fit
/// then takes the largest chunk that does fit, trying them in its order.
///
/// # Invariants
///
/// - WF-W1: `index` holds exactly the heap's free chunks (FL-I1, FL-N1–N5,
///   FL-T1–T5), its tree ordered [`ByLargest`].
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
    index: Binned<ByLargest>,
}

// SAFETY: `choose` returns a member that fits (it checks `req.fits` on
// each candidate) found in the index (FL-P1); the members are exactly those
// inserted and not removed, and the index writes only link words 1 and 2
// (FL-P2); nothing panics (FL-P3); `len` and `contains` are the index's (FL-P4).
unsafe impl Fit for WorstFit {
    const INIT: Self = WorstFit {
        index: Binned::new(),
    };
    const NAME: &'static str = "worst fit";

    fn choose(&mut self, req: &Request) -> Option<Chunk> {
        // Largest first: the tree in order, then the bins from the top,
        // each most recent first; the walk stops at the first chunk too
        // small (only over-aligned requests go past the first candidate).
        let index = &self.index;
        let mut at = index.first();
        while let Some(c) = at {
            // SAFETY: `c` is a large member (FL-T1, FL-I2).
            let size = unsafe { c.size() };
            if size < req.size() {
                return None;
            }
            if req.fits(c, size) {
                return Some(c);
            }
            at = index.after(Key {
                addr: c.addr(),
                size,
            });
        }
        let bins = self.index.bins();
        let mut below = BINS - 1;
        loop {
            let bin = bins.last_bin_at_or_below(below)?;
            let size = size_of_bin(bin);
            if size < req.size() {
                return None;
            }
            let mut at = bins.head(bin);
            while let Some(c) = at {
                if req.fits(c, size) {
                    return Some(c);
                }
                // SAFETY: `c` is a member of the bins (FL-N1).
                at = unsafe { bins.next(c) };
            }
            below = bin.checked_sub(1)?;
        }
    }

    freespace_freelist::forward_to_index!(
        index: insert, remove, replace, resize, len, contains, for_each_at_least, check
    );
}

/// The plain worst-fit scan: look at every free chunk, keep the largest
/// that fits; among equal sizes the first in the list (most recent first,
/// [`Scan::RECENT_FIRST`]) for sizes up to [`LARGEST_BINNED`], the lowest
/// address for larger ones. The reference [`WorstFit`] is tested against.
///
/// ```
/// use freespace_worst_fit::WorstFitScan;
/// use freespace_freelist::{FreeSet, Request, Scan};
/// let r = Request::new(core::alloc::Layout::new::<u64>()).unwrap();
/// assert!(WorstFitScan.choose(&FreeSet::new(), &r).is_none());
/// ```
#[derive(Debug, Default, Clone, Copy)]
pub struct WorstFitScan;

// SAFETY: `choose` returns a member of `set` that fits (FL-R1), the rule has
// no state (FL-R2), and nothing here panics (FL-R3).
unsafe impl Scan for WorstFitScan {
    const INIT: Self = WorstFitScan;
    const NAME: &'static str = "worst fit (scan)";
    const RECENT_FIRST: bool = true;

    #[inline]
    fn choose(&mut self, set: &FreeSet, req: &Request) -> Option<Chunk> {
        let mut worst: Option<(Chunk, usize)> = None;
        for f in set.iter() {
            let better = worst.is_none_or(|(w, size)| {
                f.size > size
                    || (f.size == size && size > LARGEST_BINNED && f.chunk.addr() < w.addr())
            });
            if better && req.fits(f.chunk, f.size) {
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

/// The README's example, run as a doctest so it cannot go stale.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
