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
//! every such change through the [`Fit`] methods.
//!
//! [`NextFit`] keeps the free chunks in an [`AddressIndex`], so "the first
//! chunk at or after the rover that fits, else the first from the bottom"
//! is first fit's search ([`first_fit_from`]) from the rover and then from
//! the bottom: two O(log n) descents, and moving the rover to the next free chunk
//! is one; it chooses exactly what the plain scan ([`NextFitScan`], the
//! reference it is tested against) chooses.
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

use freespace_core::{Corruption, Violation};
use freespace_first_fit::first_fit_from;
use freespace_freelist::index::AddressIndex;
use freespace_freelist::{Chunk, Fit, FreeSet, Request, Scan, Scanned};
use freespace_split_coalesce::FreeListHeap;

/// Next fit: first fit from the roving pointer, wrapping, over an
/// [`AddressIndex`].
///
/// # Invariants
///
/// - NF-N1: `rover` is `None` or a member of `index`.
/// - NF-N2: `index` holds exactly the heap's free chunks (FL-A1, FL-T1–T5).
///
/// ```
/// use freespace_next_fit::NextFit;
/// use freespace_freelist::{Fit, Request};
/// let r = Request::new(core::alloc::Layout::new::<u64>()).unwrap();
/// let mut policy = NextFit::INIT;
/// assert!(policy.choose(&r).is_none());
/// assert!(policy.check().is_ok());
/// ```
#[derive(Debug, Default)]
pub struct NextFit {
    index: AddressIndex,
    /// Where the next search starts (NF-N1); `None` means the lowest address.
    rover: Option<Chunk>,
}

// SAFETY: `choose` returns a fitting member found by the index (FL-P1); the
// rover only names a member, because every removal or replacement of the
// chunk it names moves it (NF-N1); the members are the index's, which writes
// only link words (FL-P2); nothing panics (FL-P3); `len` and `contains` are the
// index's (FL-P4).
unsafe impl Fit for NextFit {
    const INIT: Self = NextFit {
        index: AddressIndex::new(),
        rover: None,
    };
    const NAME: &'static str = "next fit";

    #[inline]
    fn choose(&mut self, req: &Request) -> Option<Chunk> {
        let from = self.rover.map_or(0, Chunk::addr);
        // From the rover up; if nothing there fits, whatever fits from the
        // bottom lies below the rover: the wrap.
        let found = first_fit_from(&self.index, from, req).or_else(|| {
            if from == 0 {
                None
            } else {
                first_fit_from(&self.index, 0, req)
            }
        });
        if found.is_some() {
            self.rover = found;
        }
        found
    }

    freespace_freelist::forward_to_index!(index: insert, resize, len, contains, for_each_at_least);

    #[inline]
    unsafe fn remove(&mut self, chunk: Chunk) -> Result<(), Corruption> {
        // SAFETY: caller contract (Fit::remove) is the index's.
        unsafe { self.index.remove(chunk)? };
        if self.rover == Some(chunk) {
            // The scan's rover moves to the chunk that followed.
            self.rover = self.index.successor(chunk);
        }
        Ok(())
    }

    // Always inlined, like the index's forwarders: it runs on every split
    // and every merge.
    #[inline(always)]
    unsafe fn replace(
        &mut self,
        old: Chunk,
        new: Chunk,
        new_size: usize,
    ) -> Result<(), Corruption> {
        // SAFETY: caller contract (Fit::replace) is the index's.
        unsafe { self.index.replace(old, new, new_size)? };
        if self.rover == Some(old) {
            self.rover = Some(new);
        }
        Ok(())
    }

    fn check(&self) -> Result<(), Violation> {
        self.index.check()?;
        let mut rover_found = self.rover.is_none();
        self.index
            .for_each(&mut |c, _| rover_found |= Some(c) == self.rover);
        match self.rover {
            Some(r) if !rover_found => Err(Violation::new(
                "NF-N1",
                r.addr(),
                "next fit's rover is not a free chunk",
            )),
            _ => Ok(()),
        }
    }
}

/// The plain next-fit scan: walk the address-ordered list from the rover
/// to the end, then from the start up to the rover. The reference
/// [`NextFit`] is tested against.
///
/// # Invariants
///
/// - NF-N1: `rover` is `None` or a member of the free set.
///
/// ```
/// use freespace_next_fit::NextFitScan;
/// use freespace_freelist::{FreeSet, Request, Scan};
/// let r = Request::new(core::alloc::Layout::new::<u64>()).unwrap();
/// let mut rule = NextFitScan::INIT;
/// assert!(rule.choose(&FreeSet::new(), &r).is_none());
/// assert!(rule.check(&FreeSet::new()).is_ok());
/// ```
#[derive(Debug, Default, Clone, Copy)]
pub struct NextFitScan {
    /// Where the next search starts (NF-N1); `None` means the lowest address.
    rover: Option<Chunk>,
}

// SAFETY: `choose` returns a member that fits (FL-R1); the rover only ever
// names a member, because every removal or replacement of the chunk it
// names moves it (NF-N1, FL-R2); nothing here panics (FL-R3).
unsafe impl Scan for NextFitScan {
    const INIT: Self = NextFitScan { rover: None };
    const NAME: &'static str = "next fit (scan)";

    fn choose(&mut self, set: &FreeSet, req: &Request) -> Option<Chunk> {
        let start = self.rover.or(set.first())?;
        // SAFETY: `start` is the rover or the first member, a member (NF-N1).
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
                "NF-N1",
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

/// A free-list heap over `S` placing by the plain next-fit scan.
///
/// ```
/// use freespace_next_fit::NextFitScanHeap;
/// use freespace_source::Sbrk;
/// let heap: NextFitScanHeap<Sbrk> = NextFitScanHeap::new(Sbrk::new());
/// # let _ = heap;
/// ```
pub type NextFitScanHeap<S> = FreeListHeap<Scanned<NextFitScan>, S>;

/// The README's example, run as a doctest so it cannot go stale.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
