//! Giving memory back from the free-list heap: `trim` decommits only the
//! inside of free chunks, for every fit policy, and a zeroed allocation is
//! cleared by decommit — over the testkit's `Recording` source (decommit =
//! zeros written over whole pages, logged), so it runs under Miri.

use freespace_best_fit::BestFit;
use freespace_core::alloc::{Allocator, Layout};
use freespace_core::Trim;
use freespace_first_fit::FirstFit;
use freespace_freelist::Fit;
use freespace_next_fit::NextFit;
use freespace_split_coalesce::FreeListHeap;
use freespace_testkit::recording::{trim_keeps_live_blocks, Event, Recording, TrimRun};
use freespace_worst_fit::WorstFit;

const PAGE: usize = 4096;

fn layout(size: usize) -> Layout {
    Layout::from_size_align(size, 16).unwrap()
}

/// Live blocks keep a byte pattern through trims between operations; the
/// heap's checks pass after each trim, so no chunk head, footer or index
/// link was decommitted; and freed memory keeps being reused.
fn trim_keeps_live_blocks_and_metadata<F: Fit + Default>() {
    let heap: FreeListHeap<F, Recording> = FreeListHeap::new(Recording::new(PAGE, 64 << 20));
    trim_keeps_live_blocks(
        &heap,
        heap.source(),
        &|| heap.check(),
        TrimRun {
            seed: 11,
            rounds: if cfg!(miri) { 40 } else { 800 },
            trim_every: 10,
            min_live: 6,
            size: &mut |rng| rng.range(16, 40_000),
        },
    );
    assert!(
        heap.trim() > 0,
        "an empty heap has whole pages to give back"
    );
    heap.check().unwrap();
}

#[test]
fn best_fit_trim() {
    trim_keeps_live_blocks_and_metadata::<BestFit>();
}

#[test]
fn first_fit_trim() {
    trim_keeps_live_blocks_and_metadata::<FirstFit>();
}

#[test]
fn next_fit_trim() {
    trim_keeps_live_blocks_and_metadata::<NextFit>();
}

#[test]
fn worst_fit_trim() {
    trim_keeps_live_blocks_and_metadata::<WorstFit>();
}

#[test]
fn large_zeroed_blocks_are_cleared_by_decommit() {
    let heap: FreeListHeap<BestFit, Recording> = FreeListHeap::new(Recording::new(PAGE, 64 << 20));
    let size = 256 << 10;
    let p = heap.allocate(layout(size)).unwrap().cast::<u8>();
    // SAFETY: a fresh block of `size` bytes.
    unsafe { p.write_bytes(0xEE, size) };
    // SAFETY: live with this layout.
    unsafe { heap.deallocate(p, layout(size)) };
    let decommits = |h: &FreeListHeap<BestFit, Recording>| {
        h.source()
            .events()
            .iter()
            .filter(|e| matches!(e, Event::Decommit { pages: Some(_), .. }))
            .count()
    };
    let before = decommits(&heap);
    let z = heap.allocate_zeroed(layout(size)).unwrap();
    // SAFETY: a block of `z.len()` bytes.
    let bytes = unsafe { std::slice::from_raw_parts(z.cast::<u8>().as_ptr(), z.len()) };
    assert!(bytes.iter().all(|&b| b == 0));
    assert_eq!(decommits(&heap), before + 1);
    heap.check().unwrap();
}

/// The purge budget: once `purge_after` bytes have been freed, the pages
/// inside free chunks of `PURGE_MIN` or more go back on their own; a small
/// free chunk stays; `usize::MAX` never purges.
fn the_purge_budget_gives_back_large_free_chunks<F: Fit + Default>() {
    use freespace_core::source::PURGE_MIN;
    // Release on free off, so that only the budget gives pages back here
    // (the release threshold has its own test below).
    let heap: FreeListHeap<F, Recording> = FreeListHeap::new(Recording::new(PAGE, 64 << 20))
        .with_purge_after(2 * PURGE_MIN)
        .with_release_at(usize::MAX);
    let big = layout(PURGE_MIN);
    let a = heap.allocate(big).unwrap().cast::<u8>();
    let guard = heap.allocate(layout(64)).unwrap().cast::<u8>();
    let b = heap.allocate(big).unwrap().cast::<u8>();
    let guard2 = heap.allocate(layout(64)).unwrap().cast::<u8>();
    // SAFETY: live with `big`.
    unsafe { heap.deallocate(a, big) };
    assert_eq!(heap.source().decommitted(), 0, "under the budget");
    // SAFETY: live with `big`.
    unsafe { heap.deallocate(b, big) };
    // Both free chunks (apart by the guards, so not merged) lose their
    // inner pages: at most a page at each end of each is kept.
    assert!(
        heap.source().decommitted() >= 2 * PURGE_MIN - 4 * PAGE,
        "{}",
        heap.source().decommitted()
    );
    heap.check().unwrap();
    // SAFETY: live with `layout(64)`.
    unsafe {
        heap.deallocate(guard, layout(64));
        heap.deallocate(guard2, layout(64));
    }
    heap.check().unwrap();
    let keep: FreeListHeap<F, Recording> = FreeListHeap::new(Recording::new(PAGE, 64 << 20))
        .with_purge_after(usize::MAX)
        .with_release_at(usize::MAX);
    let c = keep.allocate(big).unwrap().cast::<u8>();
    // SAFETY: live with `big`.
    unsafe { keep.deallocate(c, big) };
    assert_eq!(keep.source().decommitted(), 0);
}

#[test]
fn purge_budget_best_fit() {
    the_purge_budget_gives_back_large_free_chunks::<BestFit>();
}

#[test]
fn purge_budget_first_fit() {
    the_purge_budget_gives_back_large_free_chunks::<FirstFit>();
}

/// The release threshold: a free of a block of `DEFAULT_RELEASE_AT` or more
/// gives its whole pages back at once, while a live neighbour keeps its
/// bytes and the heap's checks pass; the threshold then rises past that
/// block, so freeing the same size again releases nothing, and a larger
/// block is released again; a smaller block never is; `usize::MAX` turns
/// it off.
fn large_frees_give_their_pages_back_at_once<F: Fit + Default>() {
    use freespace_core::source::{DEFAULT_RELEASE_AT, RELEASE_AT_MAX};
    let heap: FreeListHeap<F, Recording> =
        FreeListHeap::new(Recording::new(PAGE, 64 << 20)).with_purge_after(usize::MAX);
    assert_eq!(heap.release_at(), DEFAULT_RELEASE_AT);
    let free_written = |size: usize| {
        let l = layout(size);
        let p = heap.allocate(l).unwrap().cast::<u8>();
        let guard = heap.allocate(layout(48)).unwrap().cast::<u8>();
        // SAFETY: fresh blocks of `size` and 48 bytes.
        unsafe {
            p.write_bytes(0xAB, size);
            guard.write_bytes(0xCD, 48);
        }
        let before = heap.source().decommitted();
        // SAFETY: live with `l`.
        unsafe { heap.deallocate(p, l) };
        heap.check().unwrap();
        // SAFETY: the guard is live, 48 bytes.
        let kept = unsafe { std::slice::from_raw_parts(guard.as_ptr(), 48) };
        assert!(
            kept.iter().all(|&b| b == 0xCD),
            "a live neighbour lost bytes"
        );
        heap.source().decommitted() - before
    };
    // Below the threshold: kept.
    assert_eq!(free_written(DEFAULT_RELEASE_AT / 2), 0);
    // At it: all but at most a page at each end given back.
    let size = DEFAULT_RELEASE_AT;
    let given = free_written(size);
    assert!(given >= size - 2 * PAGE && given <= size, "{given}");
    assert!(heap.release_at() > size && heap.release_at() <= RELEASE_AT_MAX);
    // The same size again: the threshold rose past it.
    assert_eq!(free_written(size), 0);
    // Twice as large: released, and the threshold rises again.
    assert!(free_written(2 * size) >= 2 * size - 2 * PAGE);
    assert!(heap.release_at() > 2 * size);
    // The released pages come back as zeros, then as written.
    let again = heap.allocate(layout(2 * size)).unwrap().cast::<u8>();
    // SAFETY: a fresh block of `2 * size` bytes.
    unsafe { again.write_bytes(1, 2 * size) };
    heap.check().unwrap();
    // SAFETY: live with this layout.
    unsafe { heap.deallocate(again, layout(2 * size)) };

    let keep: FreeListHeap<F, Recording> = FreeListHeap::new(Recording::new(PAGE, 64 << 20))
        .with_purge_after(usize::MAX)
        .with_release_at(usize::MAX);
    let big = layout(4 * DEFAULT_RELEASE_AT);
    let c = keep.allocate(big).unwrap().cast::<u8>();
    // SAFETY: live with `big`.
    unsafe { keep.deallocate(c, big) };
    assert_eq!(keep.source().decommitted(), 0);
    assert_eq!(keep.release_at(), usize::MAX);
}

#[test]
fn release_at_best_fit() {
    large_frees_give_their_pages_back_at_once::<BestFit>();
}

#[test]
fn release_at_first_fit() {
    large_frees_give_their_pages_back_at_once::<FirstFit>();
}

#[test]
fn release_at_next_fit() {
    large_frees_give_their_pages_back_at_once::<NextFit>();
}

#[test]
fn release_at_worst_fit() {
    large_frees_give_their_pages_back_at_once::<WorstFit>();
}

/// `trim` gives back the inside of exactly the free chunks of 4 KiB and 80
/// bytes or more (a chunk keeps its first 64 bytes, its links, and its last
/// 16, its footer): found through the policy's index where it lists them
/// (`Fit::for_each_at_least`), by a walk of the regions for the plain
/// scans, the same set either way.
fn trim_gives_back_exactly_the_large_free_chunks<F: Fit>() {
    use freespace_core::{BlockState, Inspect};
    const HEAD: usize = 64;
    const TAIL: usize = 16;
    let heap: FreeListHeap<F, Recording> = FreeListHeap::new(Recording::new(PAGE, 64 << 20))
        .with_purge_after(usize::MAX)
        .with_release_at(usize::MAX);
    let mut rng = freespace_testkit::Rng::new(0x7219);
    let n = if cfg!(miri) { 40 } else { 400 };
    let mut live: Vec<_> = (0..n)
        .map(|_| {
            let l = layout(rng.range(16, 40_000));
            (heap.allocate(l).unwrap().cast::<u8>(), l)
        })
        .collect();
    for i in (1..live.len()).rev() {
        live.swap(i, rng.below(i + 1));
    }
    for (p, l) in live.drain(..n / 2) {
        // SAFETY: live with `l`, freed once.
        unsafe { heap.deallocate(p, l) };
    }
    let mut expected = Vec::new();
    heap.inspect(&mut |b| {
        if b.state == BlockState::Free && b.len >= PAGE + HEAD + TAIL {
            expected.push((b.addr + HEAD, b.len - HEAD - TAIL));
        }
    });
    assert!(expected.len() > 1, "the frees left large free chunks");
    let from = heap.source().events().len();
    assert!(heap.trim() > 0);
    let mut asked: Vec<_> = heap.source().events()[from..]
        .iter()
        .filter_map(|e| match *e {
            Event::Decommit { addr, len, .. } => Some((addr, len)),
            _ => None,
        })
        .collect();
    asked.sort_unstable();
    assert_eq!(asked, expected);
    heap.check().unwrap();
    for (p, l) in live {
        // SAFETY: live with `l`, freed once.
        unsafe { heap.deallocate(p, l) };
    }
    heap.check().unwrap();
}

#[test]
fn trim_finds_the_large_free_chunks_of_every_policy() {
    use freespace_best_fit::BestFitScan;
    use freespace_freelist::Scanned;
    trim_gives_back_exactly_the_large_free_chunks::<BestFit>();
    trim_gives_back_exactly_the_large_free_chunks::<FirstFit>();
    trim_gives_back_exactly_the_large_free_chunks::<NextFit>();
    trim_gives_back_exactly_the_large_free_chunks::<WorstFit>();
    // The reference scan lists nothing: the heap walks its regions.
    trim_gives_back_exactly_the_large_free_chunks::<Scanned<BestFitScan>>();
}
