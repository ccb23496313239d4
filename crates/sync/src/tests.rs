//! Unit tests: size classes, the lock, `Locked`'s forwarding and `realloc`,
//! the rack/depot exchange, thread exit and the thread-local table.

use std::alloc::GlobalAlloc;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::vec::Vec;

use freespace_core::alloc::{AllocError, Allocator, Global, Layout};
use lock_api::RawMutex;

use crate::magazine::{class_of, class_size};
use crate::*;

/// `Global`, counting live blocks and which methods were called.
#[derive(Default)]
struct Counting {
    live: AtomicUsize,
    allocs: AtomicUsize,
    grows: AtomicUsize,
    shrinks: AtomicUsize,
}

/// One block at a time (the provided methods).
impl freespace_core::Batch for Counting {}

// SAFETY: forwards to `Global`.
unsafe impl Allocator for Counting {
    fn allocate(&self, l: Layout) -> Result<NonNull<[u8]>, AllocError> {
        let b = Global.allocate(l)?;
        self.live.fetch_add(1, Relaxed);
        self.allocs.fetch_add(1, Relaxed);
        Ok(b)
    }
    unsafe fn deallocate(&self, p: NonNull<u8>, l: Layout) {
        self.live.fetch_sub(1, Relaxed);
        // SAFETY: caller's contract.
        unsafe { Global.deallocate(p, l) }
    }
    unsafe fn grow(
        &self,
        p: NonNull<u8>,
        o: Layout,
        n: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        self.grows.fetch_add(1, Relaxed);
        // SAFETY: caller's contract.
        unsafe { Global.grow(p, o, n) }
    }
    unsafe fn shrink(
        &self,
        p: NonNull<u8>,
        o: Layout,
        n: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        self.shrinks.fetch_add(1, Relaxed);
        // SAFETY: caller's contract.
        unsafe { Global.shrink(p, o, n) }
    }
}

/// A block pointer sent to the thread that frees it.
struct SendPtr(NonNull<u8>);
// SAFETY: the block is owned by whoever holds the `SendPtr`.
unsafe impl Send for SendPtr {}

fn layout(size: usize) -> Layout {
    Layout::from_size_align(size, 8).unwrap()
}

#[test]
fn every_size_a_block_may_be_freed_with_maps_to_its_class() {
    // Under Miri a sample (every 37th size; three sizes up to the class
    // size): the whole square is millions of lookups.
    let step = if cfg!(miri) { 37 } else { 1 };
    for size in (1..=MAX_CACHED).step_by(step) {
        let c = class_of(layout(size)).unwrap();
        let len = class_size(c);
        assert!(len >= size && len >= MIN_CLASS);
        let others: Vec<usize> = if cfg!(miri) {
            std::vec![size, (size + len) / 2, len]
        } else {
            (size..=len).collect()
        };
        for other in others {
            assert_eq!(
                class_of(layout(other)),
                Some(c),
                "size {other} of a {size}-byte request"
            );
        }
    }
    assert_eq!(class_of(layout(MAX_CACHED + 1)), None);
    assert_eq!(class_of(layout(0)), None);
    assert_eq!(class_of(Layout::from_size_align(16, 32).unwrap()), None);
}

#[test]
fn spin_excludes_and_releases() {
    let lock = Spin::INIT;
    lock.lock();
    assert!(!lock.try_lock());
    // SAFETY: held by this thread.
    unsafe { lock.unlock() };
    assert!(lock.try_lock());
    // SAFETY: held by this thread.
    unsafe { lock.unlock() };
    lock.check_unlocked().unwrap();
}

#[test]
fn locked_counter_is_exact_across_threads() {
    let n = if cfg!(miri) { 50 } else { 20_000 };
    let counter = Locked::<u64>::new(0);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..n {
                    *counter.lock() += 1;
                }
            });
        }
    });
    assert_eq!(counter.into_inner(), 4 * n);
}

#[test]
fn realloc_goes_through_grow_and_shrink() {
    let heap = Locked::<Counting>::new(Counting::default());
    let l = layout(64);
    // SAFETY: a non-zero layout; every pointer below is live when used.
    unsafe {
        let p = heap.alloc(l);
        assert!(!p.is_null());
        p.write_bytes(7, 64);
        let q = heap.realloc(p, l, 4096);
        assert!(!q.is_null());
        assert_eq!(*q.add(63), 7);
        let r = heap.realloc(q, layout(4096), 32);
        assert_eq!(*r.add(31), 7);
        heap.dealloc(r, layout(32));
    }
    let c = heap.into_inner();
    assert_eq!(
        (
            c.grows.load(Relaxed),
            c.shrinks.load(Relaxed),
            c.allocs.load(Relaxed)
        ),
        (1, 1, 1)
    );
    assert_eq!(c.live.load(Relaxed), 0);
}

#[test]
fn failed_realloc_is_null_and_keeps_the_block() {
    let heap = Locked::<Global>::new(Global);
    let l = layout(16);
    // SAFETY: live pointers only.
    unsafe {
        let p = heap.alloc(l);
        p.write_bytes(9, 16);
        // A size that makes no valid layout.
        assert!(heap.realloc(p, l, isize::MAX as usize).is_null());
        assert_eq!(*p.add(15), 9);
        heap.dealloc(p, l);
    }
}

#[test]
fn magazines_exchange_with_the_depot_and_nothing_is_lost() {
    let depot = Depot::new(Counting::default());
    let n = if cfg!(miri) { 100 } else { 2000 };
    let l = layout(60); // class 64
    {
        let cache = ThreadCache::new(&depot);
        let blocks: Vec<_> = (0..n).map(|_| cache.allocate(l).unwrap()).collect();
        assert!(blocks.iter().all(|b| b.len() == 64));
        for (i, b) in blocks.iter().enumerate() {
            // SAFETY: live, from `cache`, freed once.
            unsafe { cache.deallocate(b.cast(), l) };
            // After every free natively; under Miri, where each check
            // walks every cached block, after every tenth and the last.
            if !cfg!(miri) || i % 10 == 9 || i + 1 == blocks.len() {
                cache.check().unwrap();
            }
        }
        assert!(cache.cached_blocks() <= 2 * ROUNDS);
        depot.check().unwrap();
        // Full magazines went to the depot, up to its limit; the rest to the parent.
        assert!(depot.cached_blocks() <= MAX_FULL * ROUNDS);
        assert!(depot.cached_blocks() > 0);
        // Allocating again takes the cached blocks back before asking the parent.
        let before = depot.parent().allocs.load(Relaxed);
        let rounds = depot.magazine_rounds(class_of(l).unwrap());
        let again: Vec<_> = (0..2 * rounds)
            .map(|_| cache.allocate(l).unwrap())
            .collect();
        assert_eq!(depot.parent().allocs.load(Relaxed), before);
        for b in again {
            // SAFETY: live, from `cache`, freed once.
            unsafe { cache.deallocate(b.cast(), l) };
        }
    } // the handle flushes to the depot
    depot.check().unwrap();
    depot.reap();
    assert_eq!(
        depot.parent().live.load(Relaxed),
        0,
        "every block and magazine is back"
    );
}

#[test]
fn a_block_freed_by_another_thread_is_reused_there() {
    let depot = Depot::new(Counting::default());
    let l = layout(100);
    let n = if cfg!(miri) { 40 } else { 1000 };
    let (tx, rx) = std::sync::mpsc::channel::<SendPtr>();
    std::thread::scope(|s| {
        let depot = &depot;
        s.spawn(move || {
            let cache = ThreadCache::new(depot);
            for i in 0..n {
                let b = cache.allocate(l).unwrap().cast::<u8>();
                // SAFETY: a fresh 128-byte block.
                unsafe { b.write_bytes(i as u8, 100) };
                tx.send(SendPtr(b)).unwrap();
            }
        });
        s.spawn(move || {
            let cache = ThreadCache::new(depot);
            let mut i = 0u8;
            for SendPtr(p) in rx {
                // SAFETY: the block is live and filled with `i` by the producer.
                unsafe {
                    assert_eq!(*p.as_ptr().add(99), i);
                    cache.deallocate(p, l);
                }
                i = i.wrapping_add(1);
            }
        });
    });
    depot.reap();
    assert_eq!(depot.parent().live.load(Relaxed), 0);
}

#[test]
fn a_debug_double_free_into_a_magazine_is_reported_not_absorbed() {
    if !cfg!(debug_assertions) {
        return;
    }
    static REPORTS: AtomicUsize = AtomicUsize::new(0);
    fn count(c: freespace_core::Corruption, block: &'static str) {
        assert!(matches!(c, freespace_core::Corruption::DoubleFree { .. }));
        assert_eq!(block, "thread cache");
        REPORTS.fetch_add(1, Relaxed);
    }
    let _serial = crate::tests::HANDLER.lock();
    let previous = freespace_core::corruption::set_handler(count);
    let depot = Depot::new(Counting::default());
    let cache = ThreadCache::new(&depot);
    let l = layout(24);
    let b = cache.allocate(l).unwrap().cast::<u8>();
    // SAFETY: the first free is legitimate; the second is the bug under test,
    // which the cache must catch before touching the block.
    unsafe {
        cache.deallocate(b, l);
        cache.deallocate(b, l);
    }
    freespace_core::corruption::set_handler(previous);
    assert_eq!(REPORTS.load(Relaxed), 1);
    // The refill brought REFILL blocks: one handed out and freed (once),
    // the rest never used.
    assert_eq!(cache.cached_blocks(), REFILL, "the block is cached once");
    let x = cache.allocate(l).unwrap();
    let y = cache.allocate(l).unwrap();
    assert_ne!(x, y, "never handed out twice");
    // SAFETY: both live.
    unsafe {
        cache.deallocate(x.cast(), l);
        cache.deallocate(y.cast(), l);
    }
}

/// Tests that install a corruption handler run one at a time.
pub(crate) static HANDLER: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[cfg(feature = "std")]
mod thread_local {
    use super::*;

    #[test]
    fn fork_handlers_hold_the_registry_across_the_fork() {
        crate::fork::prepare();
        assert!(crate::magazines::REGISTRY.try_lock().is_none());
        // SAFETY: `prepare` ran just before on this thread.
        unsafe { crate::fork::parent() };
        assert!(crate::magazines::REGISTRY.try_lock().is_some());
        crate::fork::prepare();
        // SAFETY: as above (the child handler releases the same way).
        unsafe { crate::fork::child() };
        assert!(crate::magazines::REGISTRY.try_lock().is_some());
    }

    #[test]
    fn an_exiting_thread_returns_its_magazines() {
        let depot = Depot::new(Counting::default());
        let heap = Magazines::new(&depot);
        let l = layout(200);
        let n = if cfg!(miri) { 40 } else { 500 };
        std::thread::scope(|s| {
            s.spawn(|| {
                let blocks: Vec<_> = (0..n).map(|_| heap.allocate(l).unwrap()).collect();
                for b in blocks {
                    // SAFETY: live, from `heap`, freed once.
                    unsafe { heap.deallocate(b.cast(), l) };
                }
                assert!(heap.cached_blocks() > 0);
            })
            .join()
            .unwrap();
        });
        // Scoped threads' TLS destructors may run just after `join`; the
        // spawned thread is gone once the registry lock is free again and the
        // depot holds its magazines. Wait for it (briefly).
        let parent_live = || depot.parent().live.load(Relaxed);
        let mut spins = 0;
        while depot.cached_blocks() == 0 && spins < 1000 {
            std::thread::yield_now();
            spins += 1;
        }
        assert!(
            depot.cached_blocks() > 0,
            "the thread's full magazines reached the depot"
        );
        assert_eq!(heap.cached_blocks(), 0, "this thread cached nothing");
        drop(heap);
        depot.reap();
        assert_eq!(parent_live(), 0, "nothing lost");
    }

    #[test]
    fn more_layers_than_slots_still_work_and_free_their_slots() {
        let depot = Depot::new(Counting::default());
        let l = layout(16);
        for round in 0..3 {
            let layers: Vec<_> = (0..SLOTS + 2).map(|_| Magazines::new(&depot)).collect();
            for (i, m) in layers.iter().enumerate() {
                let b = m.allocate(l).unwrap();
                // SAFETY: live, from `m`.
                unsafe { m.deallocate(b.cast(), l) };
                m.check().unwrap();
                // Only the first SLOTS layers get a rack in this thread
                // (earlier rounds' slots are reclaimed from dropped layers).
                // (A rack's first allocation loads REFILL blocks.)
                assert_eq!(
                    m.cached_blocks(),
                    if i < SLOTS { REFILL } else { 0 },
                    "round {round}, layer {i}"
                );
            }
        }
        depot.reap();
        assert_eq!(depot.parent().live.load(Relaxed), 0);
    }

    #[test]
    fn global_alloc_entry_points_round_trip() {
        let depot = Depot::new(Locked::<Counting>::new(Counting::default()));
        let heap = Magazines::new(&depot);
        // SAFETY: live pointers, layouts as allocated.
        unsafe {
            let p = heap.alloc_zeroed(layout(50));
            assert!((0..50).all(|i| *p.add(i) == 0));
            p.write_bytes(3, 50);
            let q = heap.realloc(p, layout(50), 60); // same class (64): in place
            assert_eq!(p, q);
            let big = MAX_CACHED + 1000;
            let r = heap.realloc(q, layout(60), big); // to the parent
            assert_eq!(*r.add(47), 3);
            let s = heap.realloc(r, layout(big), 2 * big); // parent grows
            assert_eq!(*s.add(47), 3);
            heap.dealloc(s, layout(2 * big));
        }
        assert_eq!(depot.parent().lock().grows.load(Relaxed), 1);
        drop(heap);
        depot.reap();
        assert_eq!(depot.parent().lock().live.load(Relaxed), 0);
    }
}

#[test]
fn contention_on_a_depot_lock_grows_the_class_magazines() {
    let depot = Depot::new(Counting::default());
    let c = class_of(layout(60)).unwrap();
    let first = depot.magazine_rounds(c);
    assert_eq!(first, initial_rounds(c));
    assert!(max_rounds(c) >= 2 * first);
    // Another thread asks for a magazine while this one holds the class
    // lock: it finds the lock held, waits, and doubles the capacity.
    /// A magazine handed from the asking thread back to this one.
    struct Handed(crate::magazine::Mag);
    // SAFETY: the magazine is owned by whoever holds the `Handed` (SYNC-M2);
    // it lives in parent memory any thread may use.
    unsafe impl Send for Handed {}
    let m = std::thread::scope(|s| {
        let held = depot.hold_class(c);
        let asker = s.spawn(|| depot.take_empty(c).map(Handed));
        std::thread::sleep(std::time::Duration::from_millis(50));
        drop(held);
        asker.join().unwrap().unwrap().0
    });
    assert_eq!(depot.magazine_rounds(c), 2 * first);
    // SAFETY: the depot handed `m` over; it is empty.
    assert_eq!(unsafe { crate::magazine::mag::cap(m) }, 2 * first);
    depot.put_empty(c, m);
    depot.check().unwrap();
    // Growth stops at the class's maximum.
    for _ in 0..16 {
        std::thread::scope(|s| {
            let held = depot.hold_class(c);
            let asker = s.spawn(|| depot.take_full(c).is_none());
            std::thread::sleep(std::time::Duration::from_millis(5));
            drop(held);
            assert!(asker.join().unwrap());
        });
    }
    assert_eq!(depot.magazine_rounds(c), max_rounds(c));
    depot.check().unwrap();
    depot.reap();
    assert_eq!(depot.parent().live.load(Relaxed), 0);
}

/// A magazine's memory ends after its own rounds (two sizes,
/// `Magazine::layout`): each capacity fills to exactly its `cap`, refuses
/// one more, and gives its rounds back last in, first out, all inside that
/// memory (Miri checks the bounds).
#[test]
fn magazines_of_every_capacity_stay_inside_their_memory() {
    use crate::magazine::{mag, Magazine, ROUNDS};
    for cap in [1, 2, 4, 7, 8, 9, 16, 32, ROUNDS] {
        let layout = Magazine::layout(cap);
        assert!(layout.size() >= 16 + 8 * cap && layout.size() <= 16 + 8 * ROUNDS);
        let mem = Global.allocate(layout).unwrap().cast::<u8>();
        // SAFETY: fresh memory of `Magazine::layout(cap)`.
        let m = unsafe { Magazine::init(mem, cap) };
        let blocks: Vec<NonNull<u8>> = (1..=cap)
            .map(|i| NonNull::new(core::ptr::without_provenance_mut(i * 16)).unwrap())
            .collect();
        // SAFETY: we own `m` (made above); the "blocks" are never
        // dereferenced, only stored and compared.
        unsafe {
            assert_eq!(mag::cap(m), cap);
            for &b in &blocks {
                assert!(mag::push(m, b));
            }
            assert!(mag::is_full(m) && !mag::push(m, blocks[0]));
            assert_eq!(mag::rounds(m), &blocks[..]);
            assert!(mag::contains(m, blocks[cap - 1]));
            for &b in blocks.iter().rev() {
                assert_eq!(mag::pop(m), Some(b));
            }
            assert_eq!(mag::pop(m), None);
            Global.deallocate(mem, layout);
        }
    }
}
