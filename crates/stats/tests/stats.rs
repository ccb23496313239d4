//! `Stats` over real heaps: the Allocator contract suite and quickcheck op
//! sequences through the layer (the counts must balance afterwards), and
//! threads sharing one `Stats` in front of and behind a `Locked`, whose
//! counts must add up exactly.

use std::mem::MaybeUninit;
use std::ptr::NonNull;

use freespace_best_fit::BestFitHeap;
use freespace_buddy::Buddy;
use freespace_core::alloc::{Allocator, Global, Layout};
use freespace_core::Violation;
use freespace_source::{Arena, FromAllocator};
use freespace_stats::{size_class, Fragmentation, Snapshot, Stats, SIZE_CLASSES};
use freespace_sync::Locked;
use freespace_testkit::ops::{self, Ops};
use freespace_testkit::{assert_all_free, conformance};

fn arena(len: usize) -> Arena {
    let memory: &'static mut [MaybeUninit<u8>] =
        Box::leak(vec![MaybeUninit::uninit(); len].into_boxed_slice());
    Arena::new(memory)
}

/// After a workload that freed everything: nothing live, every block that
/// was handed out came back, and the layer's invariants hold.
fn balanced<A>(heap: &Stats<A>) -> Snapshot {
    let s = heap.snapshot();
    assert_eq!((s.live_blocks, s.live_bytes), (0, 0), "{s}");
    assert_eq!(s.allocations, s.frees, "{s}");
    assert_eq!(s.histogram.iter().sum::<usize>(), s.allocations);
    heap.check().unwrap();
    s
}

#[test]
fn conformance_through_stats_over_a_bounded_best_fit_heap() {
    let heap = Stats::new(BestFitHeap::new(arena(1 << 20)));
    let check = || -> Result<(), Violation> {
        heap.check()?;
        heap.inner().check()
    };
    conformance::run(
        &heap,
        &conformance::Config::default().bounded().check(&check),
    );
    assert_all_free(&heap);
    let s = balanced(&heap);
    assert!(
        s.failed_allocations > 0,
        "the out-of-memory checks ran: {s}"
    );
    assert!(s.grows() > 0 && s.shrinks() > 0 && s.zero_size > 0, "{s}");
}

#[test]
fn conformance_through_stats_over_a_growing_buddy_heap() {
    let heap: Stats<Shared> = Stats::new(Buddy::new(FromAllocator::new(Global)));
    let check = || -> Result<(), Violation> {
        heap.check()?;
        heap.inner().check()
    };
    conformance::run(&heap, &conformance::Config::default().check(&check));
    assert_all_free(&heap);
    let s = balanced(&heap);
    // A buddy heap resizes in place within a block's order, and Stats passes
    // `grow`/`shrink` on, so some resizes stayed in place.
    assert!(s.grows_in_place + s.shrinks_in_place > 0, "{s}");
}

#[test]
fn quickcheck_ops_through_stats_balance_and_match_the_shadow() {
    fn prop(ops: Ops) -> Result<(), String> {
        let heap = Stats::new(BestFitHeap::new(FromAllocator::new(Global)));
        let check = || -> Result<(), Violation> {
            heap.check()?;
            heap.inner().check()
        };
        let report = ops::run(&heap, &ops.0, &check)?;
        let s = heap.snapshot();
        if (s.live_blocks, s.live_bytes) != (0, 0) || s.allocations != s.frees {
            return Err(format!("counts do not balance:\n{s}"));
        }
        // The interpreter counts successful allocations of every size; Stats
        // puts zero-size ones apart.
        if s.allocations + s.zero_size < report.allocs {
            return Err(format!(
                "{} allocations seen, {} made:\n{s}",
                s.allocations, report.allocs
            ));
        }
        if s.peak_live_bytes < report.peak_live_bytes {
            return Err(format!(
                "peak {} below the shadow's {}",
                s.peak_live_bytes, report.peak_live_bytes
            ));
        }
        if s.failures() != report.failed_allocs + report.failed_resizes {
            return Err(format!("failures {} vs {report:?}", s.failures()));
        }
        Ok(())
    }
    quickcheck::QuickCheck::new()
        .tests(500)
        .quickcheck(prop as fn(Ops) -> Result<(), String>);
}

#[test]
fn quickcheck_ops_through_stats_over_a_small_arena() {
    // Out of memory happens often here: every failure must be counted.
    fn prop(ops: Ops) -> Result<(), String> {
        let heap = Stats::new(BestFitHeap::new(arena(16 * 1024)));
        let check = || -> Result<(), Violation> {
            heap.check()?;
            heap.inner().check()
        };
        let report = ops::run(&heap, &ops.0, &check)?;
        let s = heap.snapshot();
        if (s.live_blocks, s.live_bytes, s.allocations - s.frees) != (0, 0, 0) {
            return Err(format!("counts do not balance:\n{s}"));
        }
        if s.failures() != report.failed_allocs + report.failed_resizes {
            return Err(format!("failures {} vs {report:?}", s.failures()));
        }
        Ok(())
    }
    quickcheck::QuickCheck::new()
        .tests(300)
        .quickcheck(prop as fn(Ops) -> Result<(), String>);
}

const THREADS: usize = 4;
const ROUNDS: usize = 400;

/// The sizes thread `t` allocates, in order.
fn sizes(t: usize) -> impl Iterator<Item = usize> {
    (0..ROUNDS).map(move |i| 1 + (i * 37 + t * 101) % 700)
}

/// Each thread allocates `ROUNDS` blocks, grows every fourth one by 16
/// bytes, frees half of them as it goes and the rest at the end.
fn hammer<H: Allocator + Sync>(heap: &H) {
    std::thread::scope(|scope| {
        for t in 0..THREADS {
            scope.spawn(move || {
                let mut kept: Vec<(NonNull<u8>, Layout)> = Vec::new();
                for (i, size) in sizes(t).enumerate() {
                    let mut l = Layout::from_size_align(size, 8).unwrap();
                    let mut p = heap.allocate(l).unwrap().cast::<u8>();
                    if i % 4 == 0 {
                        let bigger = Layout::from_size_align(size + 16, 8).unwrap();
                        // SAFETY: `p` is live with `l`.
                        p = unsafe { heap.grow(p, l, bigger) }.unwrap().cast();
                        l = bigger;
                    }
                    if i % 2 == 0 {
                        // SAFETY: live with `l`, freed once.
                        unsafe { heap.deallocate(p, l) };
                    } else {
                        kept.push((p, l));
                    }
                }
                for (p, l) in kept {
                    // SAFETY: as above.
                    unsafe { heap.deallocate(p, l) };
                }
            });
        }
    });
}

/// What the threads' counters must add up to.
fn expected() -> Snapshot {
    let mut s = Snapshot::default();
    for t in 0..THREADS {
        for (i, size) in sizes(t).enumerate() {
            s.allocations += 1;
            s.frees += 1;
            s.histogram[size_class(size)] += 1;
            s.total_requested_bytes += size;
            if i % 4 == 0 {
                s.grows_in_place += 1; // the sum of in place and moved
                s.total_requested_bytes += 16;
            }
        }
    }
    s
}

fn assert_adds_up(s: Snapshot) {
    let e = expected();
    assert_eq!(
        (s.allocations, s.frees, s.grows(), s.total_requested_bytes),
        (
            e.allocations,
            e.frees,
            e.grows_in_place,
            e.total_requested_bytes
        ),
        "{s}"
    );
    assert_eq!(s.histogram, e.histogram);
    assert_eq!((s.live_blocks, s.live_bytes, s.failures()), (0, 0, 0));
    assert!(s.peak_live_bytes >= 716 && s.peak_live_bytes <= e.total_requested_bytes);
    assert_eq!(s.histogram.len(), SIZE_CLASSES);
}

type Shared = Buddy<FromAllocator<Global>>;

#[test]
fn threads_sharing_stats_in_front_of_a_lock_add_up_exactly() {
    let heap: Stats<Locked<Shared>> =
        Stats::new(Locked::new(Buddy::new(FromAllocator::new(Global))));
    hammer(&heap);
    assert_adds_up(heap.snapshot());
    heap.check().unwrap();
    heap.inner().lock().check().unwrap();
    assert_all_free(&heap);
}

#[test]
fn threads_sharing_stats_behind_a_lock_add_up_exactly() {
    let heap: Locked<Stats<Shared>> =
        Locked::new(Stats::new(Buddy::new(FromAllocator::new(Global))));
    hammer(&heap);
    let stats = heap.lock();
    assert_adds_up(stats.snapshot());
    stats.check().unwrap();
    stats.inner().check().unwrap();
    let f = Fragmentation::of(stats.inner());
    assert_eq!(f.summary.used_blocks, 0);
}

/// Issue 16: a foreign, an interior and a double-freed pointer through the
/// checked free of `Stats` and `FailAfter` (alone and stacked over a slab,
/// so both of the slab's routes are crossed): refused with the right `Err`,
/// nothing written, nothing reported (a report would abort this process),
/// and every refusal counted as a corruption, not a free.
#[test]
fn checked_frees_refuse_misuse_through_stats_and_fail_after() {
    use freespace_stats::FailAfter;
    use freespace_testkit::misuse::refuses_misuse;
    let class = Layout::from_size_align(48, 8).unwrap();
    let large = Layout::from_size_align(4000, 16).unwrap();

    let heap = Stats::new(BestFitHeap::new(arena(1 << 16)));
    let check = || heap.inner().check();
    refuses_misuse(&heap, class, &check);
    refuses_misuse(&heap, large, &check);
    let s = balanced(&heap);
    // Per layout: foreign, interior, and the two double frees.
    assert_eq!(s.corruptions, 2 * 4, "{s}");

    let heap = FailAfter::new(BestFitHeap::new(arena(1 << 16)), usize::MAX);
    let check = || heap.inner().check();
    refuses_misuse(&heap, class, &check);
    refuses_misuse(&heap, large, &check);
    assert_all_free(heap.inner());

    let slab = freespace_slab::Slab::new(BestFitHeap::new(arena(1 << 20)));
    let heap = FailAfter::new(Stats::new(slab), usize::MAX);
    let check = || {
        let stats = heap.inner();
        stats.check()?;
        stats.inner().check()?;
        stats.inner().parent().check()
    };
    refuses_misuse(&heap, class, &check);
    refuses_misuse(&heap, large, &check);
    balanced(heap.inner());
}
