//! Giving memory back: `trim`, the purge budget and zeroed allocation by
//! decommit, over the testkit's `Recording` source (decommit = zeros
//! written over whole pages, logged), so every case runs under Miri.

use freespace_buddy::{Buddy, PURGE_MIN};
use freespace_core::alloc::{Allocator, Layout};
use freespace_core::Trim;
use freespace_testkit::recording::{trim_keeps_live_blocks, Event, Recording, TrimRun};

const PAGE: usize = 4096;

fn layout(size: usize) -> Layout {
    Layout::from_size_align(size, 16).unwrap()
}

/// The decommitted page ranges of `source`'s log.
fn decommits(source: &Recording) -> Vec<(usize, usize)> {
    source
        .events()
        .iter()
        .filter_map(|e| match e {
            Event::Decommit { pages, .. } => *pages,
            _ => None,
        })
        .collect()
}

/// Live blocks keep a byte pattern; `trim` between the operations must
/// decommit only bytes of free blocks (past their nodes), so no pattern
/// changes, and the heap stays consistent.
#[test]
fn trim_gives_back_only_free_memory() {
    let heap: Buddy<Recording> =
        Buddy::new(Recording::new(PAGE, 64 << 20)).with_purge_after(usize::MAX);
    trim_keeps_live_blocks(
        &heap,
        heap.source(),
        &|| heap.check(),
        TrimRun {
            seed: 7,
            rounds: if cfg!(miri) { 60 } else { 600 },
            trim_every: 20,
            min_live: 8,
            size: &mut |rng| 1 << rng.range(4, 16),
        },
    );
    // Everything free: all but one page of each free block comes back.
    let given = heap.trim();
    assert!(given > 0);
    heap.check().unwrap();
}

#[test]
fn large_zeroed_blocks_are_cleared_by_decommit() {
    let heap: Buddy<Recording> =
        Buddy::new(Recording::new(PAGE, 64 << 20)).with_purge_after(usize::MAX);
    let size = 512 << 10;
    let p = heap.allocate(layout(size)).unwrap().cast::<u8>();
    // SAFETY: a fresh block of `size` bytes.
    unsafe { p.write_bytes(0xFF, size) };
    // SAFETY: live, with this layout.
    unsafe { heap.deallocate(p, layout(size)) };
    let before = decommits(heap.source()).len();
    let z = heap.allocate_zeroed(layout(size)).unwrap();
    // SAFETY: a block of `z.len()` bytes.
    let bytes = unsafe { std::slice::from_raw_parts(z.cast::<u8>().as_ptr(), z.len()) };
    assert!(bytes.iter().all(|&b| b == 0));
    let after = decommits(heap.source());
    assert_eq!(after.len(), before + 1, "one decommit clears the block");
    assert_eq!(after.last().unwrap().1, z.len());
    // A small zeroed block is written, not decommitted.
    let s = heap.allocate_zeroed(layout(100)).unwrap();
    // SAFETY: a block of `s.len()` bytes.
    let small = unsafe { std::slice::from_raw_parts(s.cast::<u8>().as_ptr(), s.len()) };
    assert!(small.iter().all(|&b| b == 0));
    assert_eq!(decommits(heap.source()).len(), before + 1);
    heap.check().unwrap();
}

#[test]
fn the_purge_budget_trims_large_free_blocks_on_its_own() {
    let heap: Buddy<Recording> =
        Buddy::new(Recording::new(PAGE, 64 << 20)).with_purge_after(2 * PURGE_MIN);
    let l = layout(PURGE_MIN);
    let a = heap.allocate(l).unwrap().cast::<u8>();
    let b = heap.allocate(l).unwrap().cast::<u8>();
    // SAFETY: live with `l`.
    unsafe { heap.deallocate(a, l) };
    assert_eq!(
        heap.source().decommitted(),
        0,
        "under the budget: nothing yet"
    );
    // SAFETY: live with `l`.
    unsafe { heap.deallocate(b, l) };
    assert!(heap.source().decommitted() >= 2 * PURGE_MIN - 2 * PAGE);
    heap.check().unwrap();
    // Never: no purge at all.
    let keep: Buddy<Recording> =
        Buddy::new(Recording::new(PAGE, 64 << 20)).with_purge_after(usize::MAX);
    let c = keep.allocate(l).unwrap().cast::<u8>();
    // SAFETY: live with `l`.
    unsafe { keep.deallocate(c, l) };
    assert_eq!(keep.source().decommitted(), 0);
}
