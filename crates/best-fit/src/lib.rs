//! The best-fit policy for the freespace free-list heap: serve each request
//! from the **smallest** free chunk that fits, the lowest-addressed one on
//! a tie.
//!
//! Best fit keeps large chunks whole for large requests and, in Wilson et
//! al.'s measurements, fragments about as little as any policy; a plain
//! list scan has to look at every free chunk (it stops early only on an
//! exact fit). [`BestFit`] keeps the free chunks in a
//! [`Binned`] index: one exact-size list per chunk size up to
//! [`LARGEST_BINNED`] bytes with a bitmap of the non-empty ones, and an AVL
//! tree ordered [`BySize`] for the larger chunks. The smallest binned chunk
//! that fits is the head of the first non-empty bin at or above the
//! request's: one bit scan, O(1); above the bins it is one O(log n)
//! `lower_bound` in the tree. Freeing and splitting cost O(1) for binned
//! chunks. When that choice is handed out whole (the request's own bin or
//! the next one up: a chunk less than `MIN_CHUNK` bytes over the request
//! is not split), [`Fit::pick`] unlinks it where the search found it and
//! the heap only writes its header: no placement, no carve.
//!
//! # Ties
//!
//! Among free chunks of the smallest fitting size, a binned size
//! (at most [`LARGEST_BINNED`] bytes) gives the **most recently freed**
//! one (the head of its bin; a chunk counts as freed again whenever it
//! changes size or place: split, merged, or grown in place); a larger size
//! gives the **lowest address** (the tree's order). The plain scan
//! ([`BestFitScan`], the reference [`BestFit`] is tested against) keeps its
//! list most recent first ([`Scan::RECENT_FIRST`]) and applies the same
//! rule, so the two choose exactly the same chunk at every step.
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

use freespace_core::Corruption;
use freespace_freelist::bins::{bin_of, size_of_bin, Binned, LARGEST_BINNED};
use freespace_freelist::tree::{Key, Order};
use freespace_freelist::{Chunk, Fit, FreeSet, Pick, Request, Scan, Scanned, GRANULE, MIN_CHUNK};
use freespace_split_coalesce::FreeListHeap;

/// Best fit's tree order: smallest first, lowest address among equal
/// sizes.
///
/// ```
/// use freespace_best_fit::BySize;
/// use freespace_freelist::tree::{Key, Order};
/// assert!(BySize::before(Key { addr: 64, size: 32 }, Key { addr: 32, size: 48 }));
/// assert!(BySize::before(Key { addr: 32, size: 48 }, Key { addr: 64, size: 48 }));
/// ```
#[derive(Debug)]
pub enum BySize {}

impl Order for BySize {
    const AUGMENTED: bool = false;
    const BY_SIZE: bool = true;
    #[inline]
    fn before(a: Key, b: Key) -> bool {
        (a.size, a.addr) < (b.size, b.addr)
    }
}

/// Best fit: the smallest free chunk that fits; among equals the most
/// recently freed (binned sizes) or the lowest address (larger sizes).
///
/// # Invariants
///
/// - BF-B1: `index` holds exactly the heap's free chunks (FL-I1, FL-N1–N5, FL-T1–T5),
///   its tree ordered [`BySize`].
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
    index: Binned<BySize>,
}

impl BestFit {
    /// The search for a request whose alignment is above [`GRANULE`]: a
    /// chunk large enough may still not fit (the padding depends on its
    /// address), so candidates are tried in the policy's order: bin by bin
    /// upwards, each bin most recent first, then the tree in order.
    ///
    /// # Time complexity
    ///
    /// O(1) per binned candidate, O(log n) per tree candidate.
    fn choose_aligned(&self, req: &Request) -> Option<Chunk> {
        let bins = self.index.bins();
        if let Some(mut from) = bin_of(req.size()) {
            while let Some(bin) = bins.first_bin_at_or_above(from) {
                let mut at = bins.head(bin);
                while let Some(c) = at {
                    if req.fits(c, size_of_bin(bin)) {
                        return Some(c);
                    }
                    // SAFETY: `c` is a member of the bins (FL-N1).
                    at = unsafe { bins.next(c) };
                }
                from = bin + 1;
            }
        }
        let index = &self.index;
        let mut at = index.lower_bound(Key {
            addr: 0,
            size: req.size(),
        });
        while let Some(c) = at {
            // SAFETY: `c` is a large member (FL-T1, FL-I2).
            let size = unsafe { c.size() };
            if req.fits(c, size) {
                return Some(c);
            }
            at = index.after(Key {
                addr: c.addr(),
                size,
            });
        }
        None
    }

    /// Best fit's choice and, for a binned chunk aligned to at most
    /// [`GRANULE`], its bin: [`choose`](Fit::choose) and
    /// [`pick`](Fit::pick) share it.
    ///
    /// # Time complexity
    ///
    /// O(1) for a binned chunk (two bit scans at most), O(log n) for a
    /// larger one; over-aligned requests as
    /// [`choose_aligned`](Self::choose_aligned).
    #[inline(always)]
    fn search(&self, req: &Request) -> Option<(Chunk, Option<usize>)> {
        if req.align() > GRANULE {
            return self.choose_aligned(req).map(|c| (c, None));
        }
        // The first non-empty bin at or above the request's size is the
        // smallest binned size that fits; its head the most recent chunk.
        if let Some(bin) = bin_of(req.size()) {
            let bins = self.index.bins();
            if let Some(found) = bins.first_bin_at_or_above(bin) {
                if let Some(c) = bins.head(found) {
                    return Some((c, Some(found)));
                }
            }
        }
        // Above the bins: the first chunk of the request's size or more,
        // lowest address first.
        self.index
            .lower_bound(Key {
                addr: 0,
                size: req.size(),
            })
            .map(|c| (c, None))
    }
}

// SAFETY: `choose` returns a fitting member found in the index (FL-P1): a
// bin's head is a chunk of that bin's size, at least the request's, and
// alignment up to GRANULE always fits a large-enough chunk; the members are
// exactly those inserted and not removed, and the index writes only link
// words 1 and 2 (FL-P2); nothing panics (FL-P3); `len` and `contains` are the
// index's (FL-P4).
unsafe impl Fit for BestFit {
    const INIT: Self = BestFit {
        index: Binned::new(),
    };
    const NAME: &'static str = "best fit";
    const PICKS_WHOLE: bool = true;

    // Always inlined: it is the whole search, and a heap that stops inlining
    // it pays a call and a spill on every allocation.
    #[inline(always)]
    fn choose(&mut self, req: &Request) -> Option<Chunk> {
        self.search(req).map(|(c, _)| c)
    }

    /// The search of [`choose`](Fit::choose), and when its answer is the
    /// head of a bin less than [`MIN_CHUNK`] bytes above the request (the
    /// request's own bin or the next: the heap will not split it), that
    /// head unlinked there and then: in a heap whose sizes recur, most
    /// allocations, each without a placement, a carve or a second look-up
    /// of its bin.
    #[inline(always)]
    fn pick(&mut self, req: &Request) -> Result<Pick, Corruption> {
        // Bins below `bin_of(req.size()) + WHOLE` hold chunks under
        // `req.size() + MIN_CHUNK` (a binned request size is its bin's size).
        const WHOLE: usize = MIN_CHUNK / GRANULE;
        Ok(match self.search(req) {
            Some((c, Some(bin))) if bin_of(req.size()).is_some_and(|r| bin < r + WHOLE) => {
                match self.index.pop_bin(bin)? {
                    Some(head) => Pick::Whole(head, size_of_bin(bin)),
                    // A non-empty bin has a head (FL-N3): not reached.
                    None => Pick::Carve(c),
                }
            }
            Some((c, _)) => Pick::Carve(c),
            None => Pick::Nothing,
        })
    }

    freespace_freelist::forward_to_index!(
        index: insert, remove, replace, resize, len, contains, for_each_at_least, check
    );
}

/// The plain best-fit scan: look at every free chunk, keep the smallest
/// that fits; among equal sizes the first in the list (most recent first,
/// [`Scan::RECENT_FIRST`]) for sizes up to [`LARGEST_BINNED`], the lowest
/// address for larger ones; stop early on an exact fit of a binned size.
/// The reference [`BestFit`] is tested against.
///
/// ```
/// use freespace_best_fit::BestFitScan;
/// use freespace_freelist::{FreeSet, Request, Scan};
/// let r = Request::new(core::alloc::Layout::new::<u64>()).unwrap();
/// assert!(BestFitScan.choose(&FreeSet::new(), &r).is_none());
/// ```
#[derive(Debug, Default, Clone, Copy)]
pub struct BestFitScan;

// SAFETY: `choose` returns a member of `set` that fits (FL-R1), the rule has
// no state (FL-R2), and nothing here panics (FL-R3).
unsafe impl Scan for BestFitScan {
    const INIT: Self = BestFitScan;
    const NAME: &'static str = "best fit (scan)";
    const RECENT_FIRST: bool = true;

    #[inline]
    fn choose(&mut self, set: &FreeSet, req: &Request) -> Option<Chunk> {
        let mut best: Option<(Chunk, usize)> = None;
        for f in set.iter() {
            if !req.fits(f.chunk, f.size) {
                continue;
            }
            let better = best.is_none_or(|(b, size)| {
                f.size < size
                    || (f.size == size && size > LARGEST_BINNED && f.chunk.addr() < b.addr())
            });
            if better {
                best = Some((f.chunk, f.size));
                if f.size == req.size() && f.size <= LARGEST_BINNED {
                    break; // exact, and the most recent of its size
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

/// The README's example, run as a doctest so it cannot go stale.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use core::alloc::Layout;
    use core::ptr::NonNull;
    use freespace_freelist::Flags;
    use std::vec::Vec;

    /// `pick` is `choose`, taking the chunk out exactly when it is handed
    /// out whole: checked on an index of chunks of many sizes (binned ones
    /// on both sides of each request, the tree's above), for every small
    /// request and two alignments, putting each chunk taken back.
    #[test]
    fn pick_is_choose_taking_what_is_handed_out_whole() {
        // Chunk sizes by a fixed pseudo-random walk over the binned sizes
        // and a few beyond them.
        let mut x = 0x9E37_79B9_7F4A_7C15_u64;
        let sizes: Vec<usize> = (0..300)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                if x % 10 == 0 {
                    LARGEST_BINNED + 16 * (1 + (x >> 8) as usize % 64)
                } else {
                    MIN_CHUNK + 16 * ((x >> 8) as usize % 48)
                }
            })
            .collect();
        let total: usize = sizes.iter().sum();
        let mut memory = std::vec![0u128; total / 16];
        let base = Chunk::new(NonNull::new(memory.as_mut_ptr().cast::<u8>()).unwrap());
        let mut policy = BestFit::INIT;
        let mut at = 0;
        let mut chunks = Vec::new();
        for &size in &sizes {
            // SAFETY: the chunks tile `memory`, which only this test uses.
            let c = unsafe { base.forward(at) };
            at += size;
            // Every third chunk stays out: bins with gaps between them.
            if chunks.len() % 3 != 2 {
                // SAFETY: as above; `c` is not a member.
                unsafe {
                    c.write_free(size, Flags::empty());
                    policy.insert(c).unwrap();
                }
            }
            chunks.push(c);
        }
        policy.check().unwrap();
        let mut whole = 0;
        // Every request up to 1200 bytes natively; under Miri every 7th.
        let step = if cfg!(miri) { 7 } else { 1 };
        for bytes in (1..1200).step_by(step) {
            for align in [8, 64] {
                let req = Request::new(Layout::from_size_align(bytes, align).unwrap()).unwrap();
                let chosen = policy.choose(&req);
                match policy.pick(&req).unwrap() {
                    Pick::Whole(c, size) => {
                        whole += 1;
                        assert_eq!(Some(c), chosen, "{bytes} B, align {align}");
                        // SAFETY: `c` was a member; its size word is intact.
                        assert_eq!(unsafe { c.size() }, size);
                        assert!(req.size() <= size && size < req.size() + MIN_CHUNK);
                        // SAFETY: as above.
                        assert!(!unsafe { policy.contains(c) });
                        if !cfg!(miri) {
                            policy.check().unwrap();
                        }
                        // SAFETY: `c` is free and no longer a member.
                        unsafe { policy.insert(c).unwrap() };
                    }
                    Pick::Carve(c) => {
                        assert_eq!(Some(c), chosen, "{bytes} B, align {align}");
                        // SAFETY: a member, its size word intact.
                        let size = unsafe { c.size() };
                        assert!(
                            req.align() > GRANULE || size >= req.size() + MIN_CHUNK,
                            "{bytes} B, align {align}: {size}-byte choice not taken"
                        );
                        // SAFETY: as above.
                        assert!(unsafe { policy.contains(c) });
                    }
                    Pick::Nothing => assert_eq!(chosen, None),
                }
            }
        }
        assert!(
            whole > 100 / step,
            "the fast path was taken only {whole} times"
        );
        policy.check().unwrap();
    }

    /// A damaged link in the head `pick` would take is refused, and the
    /// index is left as it was.
    #[test]
    fn pick_refuses_a_damaged_head() {
        let mut memory = std::vec![0u128; 8];
        let base = Chunk::new(NonNull::new(memory.as_mut_ptr().cast::<u8>()).unwrap());
        let mut policy = BestFit::INIT;
        // SAFETY: two 64-byte free chunks in `memory`, ours alone; the
        // damage is done to that memory.
        unsafe {
            let (a, b) = (base, base.forward(64));
            for c in [a, b] {
                c.write_free(64, Flags::empty());
                policy.insert(c).unwrap();
            }
            // `b` is the head (most recent); its next link is `a`.
            let next = b.pointer_field(1);
            b.set_pointer_field(1, next.map(|p| p.byte_add(8)));
            let req = Request::new(Layout::from_size_align(40, 8).unwrap()).unwrap();
            assert_eq!(
                policy.pick(&req),
                Err(Corruption::CorruptFreeList { addr: b.addr() })
            );
            b.set_pointer_field(1, next);
            policy.check().unwrap();
            assert_eq!(policy.pick(&req), Ok(Pick::Whole(b, 64)));
        }
    }
}
