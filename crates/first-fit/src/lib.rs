//! The first-fit policy for the freespace free-list heap: serve each
//! request from the free chunk at the **lowest address** that fits.
//!
//! First fit leaves the large chunks at high addresses alone; its cost, as
//! a list scan, is that small leftovers pile up at the front of the list,
//! which every later search walks past (Wilson et al. 1995, §3.5).
//! [`FirstFit`] does not walk: it keeps the free chunks in an
//! [`AddressIndex`] (an address-ordered AVL tree whose nodes know the
//! largest chunk below them, and the highest chunk kept apart), so a search
//! is one O(log n) descent, and chooses exactly the chunk the plain scan
//! ([`FirstFitScan`], kept as the reference and tested side by side with
//! it) would. The search is [`first_fit_from`]: candidates of the
//! request's size or more in address order, the first that fits;
//! `freespace-next-fit` runs it from its rover.
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

use freespace_freelist::index::AddressIndex;
use freespace_freelist::{Chunk, Fit, FreeSet, Request, Scan, Scanned, GRANULE};
use freespace_split_coalesce::FreeListHeap;

/// First fit's search in `index`: the lowest-addressed free chunk at
/// address `from` or above that `req` fits. Next fit is this search from
/// its rover (and again from the bottom when that finds nothing).
///
/// Candidates are the chunks of at least the request's size, in address
/// order ([`AddressIndex::lowest_at_least`]); each is checked for the front
/// padding an over-aligned request needs, so only a request with
/// alignment above [`GRANULE`] can go past the first candidate. The first
/// that fits is the chunk the address-ordered list scan returns.
///
/// # Time complexity
///
/// O(log n) when `req.align() <= GRANULE`; otherwise O(log n) for every
/// large-enough chunk tried.
///
/// ```
/// use freespace_first_fit::first_fit_from;
/// use freespace_freelist::index::AddressIndex;
/// use freespace_freelist::Request;
/// let r = Request::new(core::alloc::Layout::from_size_align(64, 4096).unwrap()).unwrap();
/// assert!(first_fit_from(&AddressIndex::new(), 0x1000, &r).is_none());
/// ```
#[inline(always)]
pub fn first_fit_from(index: &AddressIndex, from: usize, req: &Request) -> Option<Chunk> {
    let mut at = from;
    loop {
        let c = index.lowest_at_least(at, req.size())?;
        // SAFETY: `c` is a member of the index (FL-T1, FL-A2), a free chunk whose
        // size word is readable.
        if req.fits(c, unsafe { c.size() }) {
            return Some(c);
        }
        at = c.addr().checked_add(GRANULE)?;
    }
}

/// First fit: the lowest-addressed free chunk that fits, found in an
/// [`AddressIndex`].
///
/// # Invariants
///
/// - FF-F1: `index` holds exactly the heap's free chunks (FL-A1, FL-T1–T5).
///
/// ```
/// use freespace_first_fit::FirstFit;
/// use freespace_freelist::{Fit, Request};
/// let r = Request::new(core::alloc::Layout::new::<u64>()).unwrap();
/// let mut policy = FirstFit::INIT;
/// assert!(policy.choose(&r).is_none());
/// assert!(policy.check().is_ok());
/// ```
#[derive(Debug, Default)]
pub struct FirstFit {
    index: AddressIndex,
}

// SAFETY: `choose` returns the index's first fitting member (FL-P1); the
// members are exactly those inserted and not removed, the index writes only
// link words 1–3 of chunks larger than 32 bytes and 1–2 of the others (FL-P2);
// nothing panics (FL-P3); `len` and `contains` are the index's (FL-P4).
unsafe impl Fit for FirstFit {
    const INIT: Self = FirstFit {
        index: AddressIndex::new(),
    };
    const NAME: &'static str = "first fit";

    // Always inlined: a heap that stops inlining its search pays a call
    // and a spill on every allocation.
    #[inline(always)]
    fn choose(&mut self, req: &Request) -> Option<Chunk> {
        // The lowest address that fits: the search from the bottom.
        first_fit_from(&self.index, 0, req)
    }

    freespace_freelist::forward_to_index!(
        index: insert, remove, replace, resize, len, contains, for_each_at_least, check
    );
}

/// The plain first-fit scan: walk the address-ordered list, take the first
/// chunk that fits. The reference [`FirstFit`] is tested against.
///
/// ```
/// use freespace_first_fit::FirstFitScan;
/// use freespace_freelist::{FreeSet, Request, Scan};
/// let r = Request::new(core::alloc::Layout::new::<u64>()).unwrap();
/// assert!(FirstFitScan.choose(&FreeSet::new(), &r).is_none());
/// ```
#[derive(Debug, Default, Clone, Copy)]
pub struct FirstFitScan;

// SAFETY: `choose` returns a member of `set` that fits (FL-R1), the rule has
// no state (FL-R2), and nothing here panics (FL-R3).
unsafe impl Scan for FirstFitScan {
    const INIT: Self = FirstFitScan;
    const NAME: &'static str = "first fit (scan)";

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

/// A free-list heap over `S` placing by the plain first-fit scan.
///
/// ```
/// use freespace_first_fit::FirstFitScanHeap;
/// use freespace_source::Sbrk;
/// let heap: FirstFitScanHeap<Sbrk> = FirstFitScanHeap::new(Sbrk::new());
/// # let _ = heap;
/// ```
pub type FirstFitScanHeap<S> = FreeListHeap<Scanned<FirstFitScan>, S>;

/// The README's example, run as a doctest so it cannot go stale.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
