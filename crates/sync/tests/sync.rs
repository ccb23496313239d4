//! Integration tests of freespace-sync over a real heap (the buddy
//! allocator): the conformance suite and quickcheck op sequences through
//! every layer, and a multi-thread stress test with a shadow model per
//! thread and cross-thread frees.

#![cfg(not(loom))]

use freespace_testkit::Rng;
use std::cell::Cell;
use std::ptr::NonNull;
use std::sync::mpsc;

use freespace_buddy::Buddy;
use freespace_core::alloc::{Allocator, Global, Layout};
use freespace_core::{HeapSummary, Source};
use freespace_source::FromAllocator;
use freespace_sync::{Depot, Locked, Magazines, ThreadCache};
use freespace_testkit::shadow::{self, Entry, Shadow};
use freespace_testkit::{assert_all_free, conformance, ops};

/// One fixed region of `len` bytes, handed out once (a bounded heap).
struct OneRegion {
    /// From `Box::into_raw`, so the region pointer may write (freed on drop).
    buf: NonNull<[u128]>,
    taken: Cell<bool>,
}

impl OneRegion {
    fn new(len: usize) -> Self {
        let buf = Box::into_raw(vec![0u128; len / 16].into_boxed_slice());
        Self {
            buf: NonNull::new(buf).unwrap(),
            taken: Cell::new(false),
        }
    }
}

impl Drop for OneRegion {
    fn drop(&mut self) {
        // SAFETY: from `Box::into_raw` in `new`; the heap using the region
        // is dropped before its source.
        drop(unsafe { Box::from_raw(self.buf.as_ptr()) });
    }
}

// SAFETY: the buffer is owned by the source alone.
unsafe impl Send for OneRegion {}

// SAFETY: the buffer is owned by the source, lives as long as it, is
// 16-aligned (u128), handed out at most once; `acquire` cannot panic.
unsafe impl Source for OneRegion {
    fn acquire(&self, min_len: usize) -> Option<NonNull<[u8]>> {
        let len = self.buf.len() * 16;
        if self.taken.replace(true) || min_len > len {
            return None;
        }
        Some(NonNull::slice_from_raw_parts(self.buf.cast::<u8>(), len))
    }
}

type Bounded = Locked<Buddy<OneRegion>>;
type Growing = Locked<Buddy<FromAllocator<Global>>>;

/// 256 KiB: the out-of-memory check fills it with 16-byte blocks.
fn bounded() -> Bounded {
    Locked::new(Buddy::new(OneRegion::new(1 << 18)))
}

fn growing() -> Growing {
    Locked::new(Buddy::new(FromAllocator::new(Global)))
}

fn small() -> bool {
    cfg!(miri)
}

// ---------------------------------------------------------------------------
// Conformance
// ---------------------------------------------------------------------------

#[test]
fn locked_buddy_conforms() {
    let heap = growing();
    let check = || heap.check().and_then(|()| heap.lock().check());
    conformance::run(&heap, &conformance::Config::default().check(&check));
    assert_all_free(&heap);
}

/// The out-of-memory checks, without the per-step whole-heap check (which
/// would make filling the heap with 16-byte blocks quadratic).
#[test]
#[cfg_attr(
    miri,
    ignore = "fills 256 KiB with 16-byte blocks: hours under Miri; runs natively"
)]
fn locked_bounded_buddy_conforms() {
    let heap = bounded();
    conformance::run(&heap, &conformance::Config::default().bounded());
    heap.lock().check().unwrap();
    assert_all_free(&heap);
}

#[test]
fn thread_cache_conforms() {
    let depot = Depot::new(growing());
    {
        let cache = ThreadCache::new(&depot);
        let check = || {
            cache
                .check()
                .and_then(|()| depot.check())
                .and_then(|()| depot.parent().lock().check())
        };
        conformance::run(&cache, &conformance::Config::default().check(&check));
    }
    depot.reap();
    assert_all_free(depot.parent());
}

#[test]
fn magazines_conform() {
    let depot = Depot::new(growing());
    let heap = Magazines::new(&depot);
    let check = || heap.check().and_then(|()| depot.check());
    conformance::run(&heap, &conformance::Config::default().check(&check));
    drop(heap);
    depot.reap();
    assert_all_free(depot.parent());
}

/// With a bounded parent the cache still never runs the heap dry for good:
/// after everything is freed and the depot reaped, all memory is back.
#[test]
#[cfg_attr(
    miri,
    ignore = "fills 256 KiB with 16-byte blocks: hours under Miri; runs natively"
)]
fn thread_cache_over_a_bounded_heap_conforms() {
    let depot = Depot::new(bounded());
    {
        let cache = ThreadCache::new(&depot);
        conformance::run(
            &cache,
            &conformance::Config::default().bounded().max_block(1 << 12),
        );
    }
    depot.reap();
    assert_all_free(depot.parent());
    assert_eq!(HeapSummary::of(depot.parent()).used_blocks, 0);
}

// ---------------------------------------------------------------------------
// quickcheck op sequences
// ---------------------------------------------------------------------------

fn tests() -> u64 {
    if small() {
        4
    } else {
        300
    }
}

#[test]
#[cfg_attr(
    miri,
    ignore = "the buddy's whole-heap check after every op takes minutes per case under Miri"
)]
fn ops_over_locked_buddy() {
    fn prop(o: ops::Ops) -> Result<(), String> {
        let heap = bounded();
        ops::run(&heap, &o.0, &|| heap.lock().check()).map(|_| ())?;
        assert_all_free(&heap);
        Ok(())
    }
    quickcheck::QuickCheck::new()
        .tests(tests())
        .quickcheck(prop as fn(ops::Ops) -> Result<(), String>);
}

#[test]
#[cfg_attr(
    miri,
    ignore = "the buddy's whole-heap check after every op takes minutes per case under Miri"
)]
fn ops_over_thread_cache() {
    fn prop(o: ops::Ops) -> Result<(), String> {
        let depot = Depot::new(bounded());
        {
            let cache = ThreadCache::new(&depot);
            ops::run(&cache, &o.0, &|| cache.check().and_then(|()| depot.check())).map(|_| ())?;
        }
        depot.reap();
        assert_all_free(depot.parent());
        Ok(())
    }
    quickcheck::QuickCheck::new()
        .tests(tests())
        .quickcheck(prop as fn(ops::Ops) -> Result<(), String>);
}

#[test]
#[cfg_attr(
    miri,
    ignore = "the buddy's whole-heap check after every op takes minutes per case under Miri"
)]
fn ops_over_magazines() {
    fn prop(o: ops::Ops) -> Result<(), String> {
        let depot = Depot::new(bounded());
        let heap = Magazines::new(&depot);
        ops::run(&heap, &o.0, &|| heap.check().and_then(|()| depot.check())).map(|_| ())?;
        drop(heap);
        depot.reap();
        assert_all_free(depot.parent());
        Ok(())
    }
    quickcheck::QuickCheck::new()
        .tests(tests())
        .quickcheck(prop as fn(ops::Ops) -> Result<(), String>);
}

// ---------------------------------------------------------------------------
// Stress: several threads, random ops, a shadow per thread, cross-thread frees
// ---------------------------------------------------------------------------

/// A live block handed to the next thread to free.
struct Parcel {
    ptr: NonNull<u8>,
    entry: Entry,
}
// SAFETY: the block is owned by whoever holds the parcel.
unsafe impl Send for Parcel {}

#[derive(Default, Debug, Clone, Copy, PartialEq, Eq)]
struct Tally {
    allocs: usize,
    frees: usize,
    received: usize,
    resizes: usize,
}

fn layout_of(e: &Entry) -> Layout {
    Layout::from_size_align(e.size, e.align).unwrap()
}

/// One thread's share: `ops` random operations on `heap`, blocks checked
/// against the thread's own shadow; every 8th allocation or so is sent to
/// the next thread to free.
fn worker<A: Allocator>(
    heap: &A,
    seed: u64,
    ops: usize,
    tx: mpsc::Sender<Parcel>,
    rx: mpsc::Receiver<Parcel>,
) -> Tally {
    let mut rng = Rng::new(seed);
    let mut shadow = Shadow::new();
    let mut live: Vec<NonNull<u8>> = Vec::new();
    let mut t = Tally::default();
    let free_incoming = |p: Parcel, t: &mut Tally| {
        // SAFETY: the sender filled the block with `entry.seed`'s pattern and
        // gave it up; it is live until freed here.
        unsafe {
            shadow::verify_fill(p.ptr, 0, p.entry.len, p.entry.seed).unwrap();
            heap.deallocate(p.ptr, layout_of(&p.entry));
        }
        t.received += 1;
        t.frees += 1;
    };
    for i in 0..ops {
        while let Ok(p) = rx.try_recv() {
            free_incoming(p, &mut t);
        }
        let roll = rng.below(100);
        if live.is_empty() || roll < 45 && live.len() < 2000 {
            let size = match rng.below(10) {
                0 => 1 + rng.below(4000),
                1..=2 => 1 + rng.below(1024),
                _ => 1 + rng.below(128),
            };
            let align = [1, 8, 16, 64][rng.below(4)];
            let l = Layout::from_size_align(size, align).unwrap();
            let b = heap.allocate(l).expect("a growing heap does not run out");
            // SAFETY: a fresh block of `b.len()` bytes.
            unsafe {
                shadow
                    .insert(b.cast(), size, b.len(), align, i as u8)
                    .unwrap()
            };
            live.push(b.cast());
            t.allocs += 1;
        } else if roll < 55 {
            let k = rng.below(live.len());
            let ptr = live.swap_remove(k);
            let entry = shadow.remove(ptr).unwrap();
            tx.send(Parcel { ptr, entry }).unwrap();
        } else if roll < 65 {
            let k = rng.below(live.len());
            let ptr = live[k];
            let e = shadow.remove(ptr).unwrap();
            let new_size = 1 + rng.below(2048);
            let new = Layout::from_size_align(new_size, e.align).unwrap();
            // SAFETY: `ptr` is live with `e`'s layout; contents verified first.
            let b = unsafe {
                shadow::verify_fill(ptr, 0, e.len, e.seed).unwrap();
                if new_size >= e.size {
                    heap.grow(ptr, layout_of(&e), new)
                } else {
                    heap.shrink(ptr, layout_of(&e), new)
                }
            }
            .expect("a growing heap does not run out");
            let kept = e.size.min(new_size);
            // SAFETY: the resized block holds `b.len()` bytes, the first
            // `kept` of which must have survived.
            unsafe {
                shadow::verify_fill(b.cast(), 0, kept, e.seed).unwrap();
                shadow
                    .insert(b.cast(), new_size, b.len(), e.align, e.seed.wrapping_add(1))
                    .unwrap();
            }
            live[k] = b.cast();
            t.resizes += 1;
        } else {
            let k = rng.below(live.len());
            let ptr = live.swap_remove(k);
            // SAFETY: live, contents checked, freed once.
            unsafe {
                shadow.verify(ptr).unwrap();
                let e = shadow.remove(ptr).unwrap();
                heap.deallocate(ptr, layout_of(&e));
            }
            t.frees += 1;
        }
    }
    // SAFETY: every recorded block is live.
    unsafe { shadow.verify_all().unwrap() };
    drop(tx); // the next thread stops waiting once everyone upstream is done
    for ptr in live {
        let e = shadow.remove(ptr).unwrap();
        // SAFETY: live, freed once.
        unsafe { heap.deallocate(ptr, layout_of(&e)) };
        t.frees += 1;
    }
    for p in rx {
        free_incoming(p, &mut t);
    }
    t
}

/// Runs `threads` workers in a ring (thread i sends to thread i+1), each
/// with the allocator `per_thread` makes, and checks the books balance.
fn stress<'s, S: Sync, A: Allocator>(
    shared: &'s S,
    per_thread: impl Fn(&'s S) -> A + Sync,
    threads: usize,
    total_ops: usize,
) {
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..threads).map(|_| mpsc::channel()).unzip();
    let mut rxs: Vec<_> = rxs.into_iter().map(Some).collect();
    rxs.rotate_right(1); // thread i receives from thread i-1
    let tallies: Vec<Tally> = std::thread::scope(|s| {
        let handles: Vec<_> = txs
            .into_iter()
            .zip(rxs.iter_mut())
            .enumerate()
            .map(|(i, (tx, rx))| {
                let rx = rx.take().unwrap();
                let per_thread = &per_thread;
                s.spawn(move || {
                    let heap = per_thread(shared);
                    worker(
                        &heap,
                        0x9E37_79B9_7F4A_7C15 ^ (i as u64 * 0x1234_5678_9ABC_DEF1),
                        total_ops / threads,
                        tx,
                        rx,
                    )
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let allocs: usize = tallies.iter().map(|t| t.allocs).sum();
    let frees: usize = tallies.iter().map(|t| t.frees).sum();
    let received: usize = tallies.iter().map(|t| t.received).sum();
    assert_eq!(
        allocs, frees,
        "every block allocated was freed exactly once: {tallies:?}"
    );
    assert!(received > 0, "cross-thread frees happened");
}

fn stress_ops() -> usize {
    if small() {
        400
    } else if cfg!(debug_assertions) {
        200_000
    } else {
        1_000_000
    }
}

#[test]
fn stress_locked_buddy() {
    let heap = growing();
    stress(&heap, |h| h, 4, stress_ops());
    heap.check().unwrap();
    heap.lock().check().unwrap();
    assert_all_free(&heap);
}

#[test]
fn stress_thread_caches() {
    let depot = Depot::new(growing());
    stress(&depot, ThreadCache::new, 4, stress_ops());
    depot.check().unwrap();
    depot.reap();
    depot.parent().lock().check().unwrap();
    assert_all_free(depot.parent());
}

#[test]
fn stress_magazines() {
    let depot = Depot::new(growing());
    let heap = Magazines::new(&depot);
    stress(&heap, |h| h, 4, stress_ops());
    depot.check().unwrap();
    // Worker threads' racks went to the depot when they exited; this thread
    // has none. Dropping the layer and reaping returns everything.
    drop(heap);
    depot.reap();
    depot.parent().lock().check().unwrap();
    assert_all_free(depot.parent());
}

// ---------------------------------------------------------------------------
// Issue 16: checked frees never abort, never write
// ---------------------------------------------------------------------------

/// A foreign, an interior and a double-freed pointer through the checked
/// free of `Locked`, `ThreadCache` and `Magazines`, for a cached class and
/// for a block that goes straight to the parent: each must be refused with
/// the right `Err`, write nothing and report nothing (a report would abort
/// this process).
#[test]
fn checked_frees_refuse_misuse() {
    use freespace_testkit::misuse::refuses_misuse;
    let class = Layout::from_size_align(48, 8).unwrap();
    let large = Layout::from_size_align(4000, 16).unwrap();

    let heap = growing();
    let check = || heap.check().and_then(|()| heap.lock().check());
    refuses_misuse(&heap, class, &check);
    refuses_misuse(&heap, large, &check);
    assert_all_free(&heap);

    let depot = Depot::new(growing());
    {
        let cache = ThreadCache::new(&depot);
        let check = || cache.check().and_then(|()| depot.check());
        refuses_misuse(&cache, class, &check);
        refuses_misuse(&cache, large, &check);
    }
    {
        let heap = Magazines::new(&depot);
        let check = || heap.check().and_then(|()| depot.check());
        refuses_misuse(&heap, class, &check);
        refuses_misuse(&heap, large, &check);
    }
    depot.reap();
    depot.parent().lock().check().unwrap();
    assert_all_free(depot.parent());
}

/// A double free whose first free went into the depot (a full magazine
/// handed over) is still found by the checked free.
#[test]
fn checked_free_finds_a_double_free_in_the_depot() {
    use freespace_core::{CheckedFree, Corruption};
    let depot = Depot::new(growing());
    let l = Layout::from_size_align(64, 8).unwrap();
    let cache = ThreadCache::new(&depot);
    let blocks: Vec<NonNull<u8>> = (0..4 * freespace_sync::ROUNDS)
        .map(|_| cache.allocate(l).unwrap().cast())
        .collect();
    for &b in &blocks {
        // SAFETY: each block is live with `l`, freed once.
        unsafe { cache.deallocate(b, l) };
    }
    cache.flush(); // the rounds are in the depot (or, partial, the parent)
    assert_eq!(cache.cached_blocks(), 0);
    let in_depot = blocks
        .iter()
        .filter(|&&b| {
            // SAFETY: every block was freed: only checked.
            let got = unsafe { cache.try_deallocate(b, l) };
            assert!(got.is_err(), "{b:p}: a double free was taken back");
            got == Err(Corruption::DoubleFree {
                addr: b.as_ptr() as usize,
            })
        })
        .count();
    assert_eq!(
        in_depot,
        blocks.len(),
        "every refused free is named a double free"
    );
    drop(cache);
    depot.reap();
    assert_all_free(depot.parent());
}
