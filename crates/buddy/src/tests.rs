//! Unit tests: split and merge, odd regions, contiguous growth, the checked
//! frees, in-place resizing. The Allocator contract suite, the op
//! interpreter and the child-process corruption tests are in `tests/`.

use core::cell::Cell;
use core::ptr::NonNull;
use std::vec::Vec;

use freespace_core::alloc::{Allocator, Layout};
use freespace_core::{BlockInfo, BlockSize, BlockState, Corruption, Inspect, Owns, Source};
use quickcheck::{QuickCheck, TestResult};

use crate::Buddy;

/// Hands out pieces of one buffer, one after another: contiguous when `gap`
/// is 0. Starts and lengths may be odd (more than the `Source` contract
/// allows, to show the heap never touches a byte outside a region).
struct Pieces {
    mem: NonNull<u8>,
    len: usize,
    cursor: Cell<usize>,
    gap: usize,
    /// Length of each piece (at least what is asked); 0 = exactly `min_len`.
    piece: usize,
}

impl Pieces {
    fn new(len: usize, offset: usize, gap: usize, piece: usize) -> Self {
        let words = (len + offset).div_ceil(16) + 1;
        let mem = Vec::leak(std::vec![0u128; words]);
        Pieces {
            mem: NonNull::from(mem).cast(),
            len: words * 16,
            cursor: Cell::new(offset),
            gap,
            piece,
        }
    }

    fn addr(&self) -> usize {
        self.mem.as_ptr().addr()
    }
}

impl Drop for Pieces {
    fn drop(&mut self) {
        let words = self.len / 16;
        // SAFETY: `mem` is the leaked `Vec` of `words` u128s made in `new`;
        // the heap that used it has been dropped before its source.
        drop(unsafe {
            std::boxed::Box::from_raw(core::ptr::slice_from_raw_parts_mut(
                self.mem.as_ptr().cast::<u128>(),
                words,
            ))
        });
    }
}

// SAFETY: pieces never overlap (the cursor only moves forward) and lie in
// the buffer this source owns; acquire never panics. (Starts and lengths
// are not rounded to 16 on purpose: the heap must cope.)
unsafe impl Source for Pieces {
    fn acquire(&self, min_len: usize) -> Option<NonNull<[u8]>> {
        let at = self.cursor.get();
        let len = if self.piece == 0 {
            min_len
        } else {
            self.piece.max(min_len)
        };
        if at.checked_add(len)? > self.len {
            return None;
        }
        self.cursor.set(at + len + self.gap);
        // SAFETY: `at + len <= self.len`: inside the buffer.
        let p = unsafe { self.mem.add(at) };
        Some(NonNull::slice_from_raw_parts(p, len))
    }
}

fn blocks<I: Inspect>(heap: &I) -> Vec<BlockInfo> {
    let mut v = Vec::new();
    heap.inspect(&mut |b| v.push(b));
    v
}

/// The largest naturally aligned blocks tiling `[lo, hi)` (`min`-granular,
/// orders below `orders`), computed independently of the heap.
fn greedy(lo: usize, hi: usize, min: usize, orders: usize) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut a = lo;
    while a < hi {
        let mut size = min;
        while size < min << (orders - 1) && a % (size * 2) == 0 && a + size * 2 <= hi {
            size *= 2;
        }
        out.push((a, size));
        a += size;
    }
    out
}

/// "Free everything, then the heap is one block again": with nothing
/// allocated, every zone's free space is exactly the greedy tiling of the
/// gap between its trimmed start and its metadata.
fn assert_coalesced<S: Source, const MIN: usize, const ORDERS: usize>(
    heap: &Buddy<S, MIN, ORDERS>,
) {
    heap.check().unwrap();
    let all = blocks(heap);
    assert!(all.iter().all(|b| b.state != BlockState::Used), "{all:x?}");
    let mut free: Vec<(usize, usize)> = Vec::new();
    let mut runs: Vec<(usize, usize)> = Vec::new();
    for b in &all {
        match b.state {
            BlockState::Free => {
                free.push((b.addr, b.len));
                match runs.last_mut() {
                    Some(r) if r.1 == b.addr => r.1 += b.len,
                    _ => runs.push((b.addr, b.addr + b.len)),
                }
            }
            _ => runs.push((usize::MAX, usize::MAX)),
        }
    }
    let mut expected = Vec::new();
    for (lo, hi) in runs.into_iter().filter(|r| r.0 != usize::MAX) {
        expected.extend(greedy(lo, hi, MIN, ORDERS));
    }
    assert_eq!(free, expected);
}

fn layout(size: usize, align: usize) -> Layout {
    Layout::from_size_align(size, align).unwrap()
}

const KIB: usize = 1024;

fn free_sizes<I: Inspect>(heap: &I) -> Vec<usize> {
    let mut v: Vec<usize> = blocks(heap)
        .iter()
        .filter(|b| b.state == BlockState::Free)
        .map(|b| b.len)
        .collect();
    v.sort();
    v
}

#[test]
fn split_takes_the_smallest_block_and_halves_it() {
    let src = Pieces::new(64 * KIB, 0, 0, 64 * KIB);
    let heap: Buddy<_> = Buddy::new(&src);
    // Warm up: the first allocation takes the region.
    let w = heap.allocate(layout(1, 1)).unwrap();
    // SAFETY: live with this layout.
    unsafe { heap.deallocate(w.cast(), layout(1, 1)) };
    for need in [16, 128, 1024, 16, 32, 4096, 64] {
        let before = free_sizes(&heap);
        let taken = *before.iter().find(|&&s| s >= need).unwrap();
        let p = heap.allocate(layout(need, 1)).unwrap();
        assert_eq!(p.len(), need);
        heap.check().unwrap();
        // The smallest block that fits was taken, and halved down to `need`:
        // one free half of every size from `need` up to half of it.
        let mut expected = before.clone();
        expected.remove(expected.iter().position(|&s| s == taken).unwrap());
        let mut half = taken / 2;
        while half >= need {
            expected.push(half);
            half /= 2;
        }
        expected.sort();
        assert_eq!(free_sizes(&heap), expected, "allocating {need}");
    }
    // SAFETY: nothing is live except what `inspect` reports as used, each
    // freed once without its layout.
    unsafe {
        for b in blocks(&heap)
            .into_iter()
            .filter(|b| b.state == BlockState::Used)
        {
            let p = w
                .cast::<u8>()
                .with_addr(core::num::NonZeroUsize::new(b.addr).unwrap());
            heap.free(p);
        }
    }
    assert_coalesced(&heap);
}

#[test]
fn blocks_are_aligned_to_their_size() {
    let src = Pieces::new(256 * KIB, 0, 0, 0);
    let heap: Buddy<_> = Buddy::new(&src);
    let mut live = Vec::new();
    for (size, align) in [
        (1, 1),
        (17, 8),
        (100, 64),
        (3000, 4096),
        (5, 2048),
        (65536, 8),
    ] {
        let l = layout(size, align);
        let p = heap.allocate(l).unwrap();
        let want = size.max(align).next_power_of_two().max(16);
        assert_eq!(p.len(), want);
        assert_eq!(p.cast::<u8>().as_ptr().addr() % want, 0);
        live.push((p, l));
        heap.check().unwrap();
    }
    for (p, l) in live {
        // SAFETY: live with `l`.
        unsafe { heap.deallocate(p.cast(), l) };
        heap.check().unwrap();
    }
    assert_coalesced(&heap);
}

#[test]
fn zero_size_and_huge_requests() {
    let src = Pieces::new(64 * KIB, 0, 0, 0);
    let heap: Buddy<_> = Buddy::new(&src);
    let z = heap.allocate(layout(0, 64)).unwrap();
    assert_eq!(z.len(), 0);
    // SAFETY: zero-size blocks are freed as a no-op.
    unsafe { heap.deallocate(z.cast(), layout(0, 64)) };
    assert!(
        blocks(&heap).is_empty(),
        "a zero-size request reached the source"
    );
    assert!(heap.allocate(layout(isize::MAX as usize, 1)).is_err());
    assert!(heap
        .allocate(layout(Buddy::<&Pieces>::MAX_BLOCK + 1, 1))
        .is_err());
    assert!(heap.allocate(layout(1 << 20, 1)).is_err()); // more than the source has
    heap.check().unwrap();
}

/// Regions that start one byte past a block boundary and end anywhere: the
/// heap uses only whole granules inside, and after freeing everything it is
/// fully merged again.
#[test]
fn odd_regions_are_cut_into_aligned_blocks() {
    for (offset, len) in [
        (1, 5000),
        (15, 4097),
        (16, 4096),
        (17, 70001),
        (4095, 12345),
        (8, 200),
    ] {
        let src = Pieces::new(len, offset, 0, len);
        let heap: Buddy<_> = Buddy::new(&src);
        let region_start = src.addr() + offset;
        let Ok(p) = heap.allocate(layout(16, 16)) else {
            assert!(len < 300, "region of {len} unusable");
            continue;
        };
        for b in blocks(&heap)
            .into_iter()
            .filter(|b| b.state != BlockState::Meta)
        {
            assert!(
                b.addr >= region_start && b.addr + b.len <= region_start + len,
                "{b:x?} outside"
            );
            assert_eq!(b.addr % 16, 0);
        }
        // SAFETY: live with this layout.
        unsafe { heap.deallocate(p.cast(), layout(16, 16)) };
        assert_coalesced(&heap);
    }
}

#[test]
fn contiguous_regions_join_and_merge_across_the_boundary() {
    // Regions of exactly what is asked: the heap grows by several joins.
    let src = Pieces::new(4 << 20, 0, 0, 0);
    let heap: Buddy<_> = Buddy::new(&src);
    let mut live = Vec::new();
    for i in 0..200 {
        let l = layout(1000 + i * 37, 8);
        live.push((heap.allocate(l).unwrap(), l));
    }
    heap.check().unwrap();
    let metas = blocks(&heap)
        .iter()
        .filter(|b| b.state == BlockState::Meta)
        .count();
    assert_eq!(
        metas, 1,
        "the contiguous regions did not join into one zone"
    );
    for (p, l) in live.drain(..).rev() {
        // SAFETY: live with `l`.
        unsafe { heap.deallocate(p.cast(), l) };
    }
    assert_coalesced(&heap);
    // The merged blocks span the old boundaries: a block larger than the
    // first region now fits without asking the source again.
    let first_region = 64 * KIB + 4 * KIB;
    let cursor = src.cursor.get();
    let big = layout(first_region * 2, 8);
    let p = heap.allocate(big).unwrap();
    assert_eq!(src.cursor.get(), cursor);
    // SAFETY: live with `big`.
    unsafe { heap.deallocate(p.cast(), big) };
    assert_coalesced(&heap);
}

#[test]
fn separate_regions_make_separate_zones() {
    let src = Pieces::new(4 << 20, 8, 48, 0);
    let heap: Buddy<_> = Buddy::new(&src);
    let mut live = Vec::new();
    for i in 0..100 {
        let l = layout(2000 + i * 100, 16);
        live.push((heap.allocate(l).unwrap(), l));
    }
    let metas = blocks(&heap)
        .iter()
        .filter(|b| b.state == BlockState::Meta)
        .count();
    assert!(metas > 1);
    for (p, l) in live {
        assert!(heap.owns(p.cast()));
        // SAFETY: live with `l`.
        unsafe { heap.deallocate(p.cast(), l) };
    }
    assert_coalesced(&heap);
}

#[test]
fn checked_free_names_every_misuse() {
    let src = Pieces::new(64 * KIB, 0, 0, 64 * KIB);
    let heap: Buddy<_> = Buddy::new(&src);
    let l = layout(64, 8);
    let p = heap.allocate(l).unwrap().cast::<u8>();
    let keep = heap.allocate(l).unwrap().cast::<u8>();
    let a = p.as_ptr().addr();
    let mut outside = 0u64;
    let foreign = NonNull::from(&mut outside).cast::<u8>();
    // SAFETY: every call below either frees the live `p` once, or only
    // looks at a pointer that is not a live block.
    unsafe {
        assert_eq!(
            heap.try_deallocate(foreign, l),
            Err(Corruption::ForeignPointer {
                addr: foreign.as_ptr().addr()
            })
        );
        assert_eq!(
            heap.try_deallocate(p.add(3), l),
            Err(Corruption::MisalignedPointer { addr: a + 3 })
        );
        assert_eq!(
            heap.try_deallocate(p.add(16), l),
            Err(Corruption::InteriorPointer { addr: a + 16 })
        );
        assert_eq!(
            heap.try_deallocate(p, layout(128, 8)),
            Err(Corruption::SizeMismatch { addr: a })
        );
        assert_eq!(
            heap.try_deallocate(p, layout(16, 8)),
            Err(Corruption::SizeMismatch { addr: a })
        );
        heap.check().unwrap();
        // Any size from the request up to the usable size is accepted.
        assert_eq!(heap.try_deallocate(p, layout(33, 1)), Ok(()));
        assert_eq!(
            heap.try_deallocate(p, l),
            Err(Corruption::DoubleFree { addr: a })
        );
        // Freed and merged into a larger free block: still a double free.
        assert_eq!(
            heap.try_deallocate(p.add(16), layout(16, 1)),
            Err(Corruption::DoubleFree { addr: a + 16 })
        );
        assert_eq!(heap.try_free(p), Err(Corruption::DoubleFree { addr: a }));
        // The metadata is not a block users can free.
        let meta = blocks(&heap)
            .into_iter()
            .find(|b| b.state == BlockState::Meta)
            .unwrap();
        let meta_ptr = p.with_addr(core::num::NonZeroUsize::new(meta.addr).unwrap());
        assert_eq!(
            heap.try_free(meta_ptr),
            Err(Corruption::ForeignPointer { addr: meta.addr })
        );
        assert!(!heap.owns(meta_ptr));
        heap.check().unwrap();
        heap.deallocate(keep, l);
    }
    assert_coalesced(&heap);
}

#[test]
fn order_is_recovered_from_the_address() {
    let src = Pieces::new(256 * KIB, 0, 0, 0);
    let heap: Buddy<_> = Buddy::new(&src);
    let sizes = [1, 16, 17, 100, 1000, 4096, 4097, 30000];
    let ps: Vec<_> = sizes
        .iter()
        .map(|&s| heap.allocate(layout(s, 1)).unwrap())
        .collect();
    for (p, &s) in ps.iter().zip(&sizes) {
        // SAFETY: `p` is live.
        let usable = unsafe { heap.usable_size(p.cast()) };
        assert_eq!(usable, s.next_power_of_two().max(16));
    }
    for p in ps {
        // SAFETY: `p` is live; freed once, without its layout.
        unsafe { heap.free(p.cast()) };
        heap.check().unwrap();
    }
    assert_coalesced(&heap);
}

/// Allocates every free block smaller than `below` bytes (so no hole of a
/// lower order is left); returns them with their layouts.
fn fill_holes_below<S: Source>(heap: &Buddy<S>, below: usize) -> Vec<(NonNull<u8>, Layout)> {
    let mut held = Vec::new();
    for b in blocks(heap) {
        if b.state == BlockState::Free && b.len < below {
            let l = layout(b.len, 1);
            held.push((heap.allocate(l).unwrap().cast::<u8>(), l));
        }
    }
    assert!(free_sizes(heap).iter().all(|&s| s >= below));
    held
}

#[test]
fn grow_in_place_when_the_buddy_is_free_and_shrink_by_halving() {
    let src = Pieces::new(64 * KIB, 0, 0, 64 * KIB);
    let heap: Buddy<_> = Buddy::new(&src);
    let small = layout(16, 8);
    let big = layout(2048, 8);
    let p = heap.allocate(big).unwrap().cast::<u8>();
    // No free block smaller than `big` anywhere: a shrink cannot move into
    // a hole, so it halves in place.
    let held = fill_holes_below(&heap, 2048);
    // SAFETY: `p` is live with the layouts passed; each call's result
    // replaces it.
    unsafe {
        // Shrink by halving: same address, the upper halves go free.
        let s = heap.shrink(p, big, small).unwrap();
        assert_eq!((s.cast::<u8>(), s.len()), (p, 16));
        let all = blocks(&heap);
        let base = p.as_ptr().addr();
        for size in [16, 32, 64, 128, 256, 512, 1024] {
            let half = BlockInfo {
                addr: base + size,
                len: size,
                state: BlockState::Free,
            };
            assert!(all.contains(&half), "{half:x?} missing");
        }
        heap.check().unwrap();
        p.as_ptr().write_bytes(0xAB, 16);
        // The fresh block is the lowest of a chain of free upper buddies.
        let g = heap.grow(p, small, layout(200, 8)).unwrap();
        assert_eq!(g.cast::<u8>(), p);
        assert_eq!(g.len(), 256);
        heap.check().unwrap();
        let z = heap
            .grow_zeroed(p, layout(200, 8), layout(1000, 8))
            .unwrap();
        assert_eq!(z.cast::<u8>(), p);
        let bytes = core::slice::from_raw_parts(p.as_ptr(), 1024);
        assert!(bytes[..16].iter().all(|&b| b == 0xAB));
        assert!(bytes[200..].iter().all(|&b| b == 0));
        // Block the buddy: the next grow must move.
        let blocker = heap.allocate(layout(1024, 1)).unwrap().cast::<u8>();
        assert_eq!(blocker.as_ptr().addr(), p.as_ptr().addr() + 1024);
        let moved = heap
            .grow(p, layout(1000, 8), layout(2000, 8))
            .unwrap()
            .cast::<u8>();
        assert_ne!(moved, p);
        assert!(core::slice::from_raw_parts(moved.as_ptr(), 16)
            .iter()
            .all(|&b| b == 0xAB));
        heap.check().unwrap();
        // Now `p`'s old 1024-byte block is a free hole smaller than `moved`'s
        // block: the shrink moves into it (its lowest 32 bytes) and frees the
        // whole 2048-byte block instead of pinning it with 32 bytes.
        assert!(free_sizes(&heap).contains(&1024));
        let s = heap.shrink(moved, layout(2000, 8), layout(20, 8)).unwrap();
        assert_eq!((s.cast::<u8>(), s.len()), (p, 32));
        assert!(core::slice::from_raw_parts(p.as_ptr(), 16)
            .iter()
            .all(|&b| b == 0xAB));
        let old = moved.as_ptr().addr();
        assert!(
            blocks(&heap).iter().any(|b| b.state == BlockState::Free
                && b.addr <= old
                && old + 2048 <= b.addr + b.len),
            "the old block is not free whole"
        );
        heap.check().unwrap();
        // Shrinking to a larger alignment than the block has moves it.
        let aligned = heap.shrink(p, layout(20, 8), layout(8, 128)).unwrap();
        assert_eq!(aligned.cast::<u8>().as_ptr().addr() % 128, 0);
        heap.deallocate(aligned.cast(), layout(8, 128));
        heap.deallocate(blocker, layout(1024, 1));
        for (b, l) in held {
            heap.deallocate(b, l);
        }
    }
    assert_coalesced(&heap);
}

#[test]
fn inspect_refuses_reentrant_changes() {
    let src = Pieces::new(64 * KIB, 0, 0, 64 * KIB);
    let heap: Buddy<_> = Buddy::new(&src);
    let p = heap.allocate(layout(32, 8)).unwrap();
    let mut tried = false;
    heap.inspect(&mut |_| {
        if !tried {
            tried = true;
            assert!(heap.allocate(layout(8, 8)).is_err());
        }
    });
    assert!(tried);
    // SAFETY: live with this layout.
    unsafe { heap.deallocate(p.cast(), layout(32, 8)) };
    assert_coalesced(&heap);
}

#[test]
fn larger_granules_and_few_orders() {
    let src = Pieces::new(100_000, 40, 0, 0);
    let heap: Buddy<_, 64, 6> = Buddy::new(&src); // blocks of 64 B ..= 2 KiB
    assert!(heap.allocate(layout(4096, 1)).is_err());
    let mut live = Vec::new();
    for s in [1, 64, 65, 2048, 700] {
        let p = heap.allocate(layout(s, 1)).unwrap();
        assert_eq!(p.cast::<u8>().as_ptr().addr() % 64, 0);
        live.push((p, layout(s, 1)));
    }
    heap.check().unwrap();
    for (p, l) in live {
        // SAFETY: live with `l`.
        unsafe { heap.deallocate(p.cast(), l) };
    }
    assert_coalesced(&heap);
}

/// Split-then-merge round trip: any sequence of allocations, freed in any
/// order, leaves the heap exactly as it was (fully merged).
#[test]
fn split_then_merge_round_trip() {
    fn prop(offset: u16, len: u32, sizes: Vec<(u16, u8)>, order: Vec<usize>) -> TestResult {
        let offset = offset as usize % 4096;
        let len = 2048 + len as usize % (if cfg!(miri) { 16 * KIB } else { 512 * KIB });
        let src = Pieces::new(len, offset, 0, len);
        let heap: Buddy<_> = Buddy::new(&src);
        let mut live = Vec::new();
        for (size, align) in sizes {
            let l = layout(1 + size as usize % 5000, 1 << (align % 10));
            if let Ok(p) = heap.allocate(l) {
                live.push((p, l));
            }
        }
        if heap.check().is_err() {
            return TestResult::error(std::format!("{:?}", heap.check()));
        }
        let mut k = 0;
        while !live.is_empty() {
            let i = order.get(k).copied().unwrap_or(0) % live.len();
            k += 1;
            let (p, l) = live.swap_remove(i);
            // SAFETY: live with `l`.
            unsafe { heap.deallocate(p.cast(), l) };
        }
        assert_coalesced(&heap);
        TestResult::passed()
    }
    let tests = if cfg!(miri) { 4 } else { 300 };
    QuickCheck::new()
        .tests(tests)
        .quickcheck(prop as fn(u16, u32, Vec<(u16, u8)>, Vec<usize>) -> TestResult);
}
