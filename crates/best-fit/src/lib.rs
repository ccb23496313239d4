//! The best-fit policy for the freespace free-list heap: serve each request
//! from the **smallest** free chunk that fits, the lowest-addressed one on
//! a tie.
//!
//! Best fit keeps large chunks whole for large requests and, in Wilson et
//! al.'s measurements, fragments about as little as any policy; a plain
//! list scan has to look at every free chunk (it stops early only on an
//! exact fit). [`BestFit`] keeps the free chunks in a [`SizeIndex`], an AVL
//! tree ordered by size then address, so its choice is one O(log n)
//! search: the first chunk not smaller than the request. It chooses exactly
//! what the plain scan ([`BestFitScan`], the reference it is tested against)
//! chooses.
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

use freespace_freelist::index::SizeIndex;
use freespace_freelist::tree::{BySize, Key};
use freespace_freelist::{Chunk, Fit, FreeSet, Request, Scan, Scanned};
use freespace_split_coalesce::FreeListHeap;

/// Best fit: the smallest free chunk that fits, the lowest address among
/// equals, found in a [`SizeIndex`] ordered [`BySize`].
///
/// # Invariants
///
/// - B1: `index` holds exactly the heap's free chunks (T1–T5).
///
/// ```
/// use freespace_best_fit::BestFit;
/// use freespace_freelist::{Fit, Request};
/// let r = Request::new(core::alloc::Layout::new::<u64>()).unwrap();
/// let mut policy = BestFit::INIT;
/// assert!(policy.choose(&r).is_none());
/// assert!(policy.check().is_ok());
/// ```
#[derive(Debug, Default)]
pub struct BestFit {
    index: SizeIndex<BySize>,
}

// SAFETY: `choose` returns a fitting member found by the index (P1); the
// members are exactly those inserted and not removed, and the index writes
// only link words 1 and 2 (P2); nothing panics (P3); `len` and `contains`
// are the index's (P4).
unsafe impl Fit for BestFit {
    const INIT: Self = BestFit {
        index: SizeIndex::new(),
    };
    const NAME: &'static str = "best fit";

    #[inline]
    fn choose(&mut self, req: &Request) -> Option<Chunk> {
        // The first chunk of the request's size or more, lowest address
        // first; over-aligned requests walk on from there.
        let start = self.index.tree().lower_bound(Key {
            addr: 0,
            size: req.size(),
        });
        self.index.first_fit(start, req)
    }

    freespace_freelist::forward_to_index!(index: insert, remove, replace, resize, len, contains, check);
}

/// The plain best-fit scan: look at every free chunk, keep the smallest
/// that fits (the first of equals in address order), stop early on an
/// exact fit. The reference [`BestFit`] is tested against.
///
/// ```
/// use freespace_best_fit::BestFitScan;
/// use freespace_freelist::{FreeSet, Request, Scan};
/// let r = Request::new(core::alloc::Layout::new::<u64>()).unwrap();
/// assert!(BestFitScan.choose(&FreeSet::new(), &r).is_none());
/// ```
#[derive(Debug, Default, Clone, Copy)]
pub struct BestFitScan;

// SAFETY: `choose` returns a member of `set` that fits (R1), the rule has
// no state (R2), and nothing here panics (R3).
unsafe impl Scan for BestFitScan {
    const INIT: Self = BestFitScan;
    const NAME: &'static str = "best fit (scan)";

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

/// A free-list heap over `S` placing by the plain best-fit scan.
///
/// ```
/// use freespace_best_fit::BestFitScanHeap;
/// use freespace_source::Sbrk;
/// let heap: BestFitScanHeap<Sbrk> = BestFitScanHeap::new(Sbrk::new());
/// # let _ = heap;
/// ```
pub type BestFitScanHeap<S> = FreeListHeap<Scanned<BestFitScan>, S>;
