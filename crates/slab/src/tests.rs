//! Unit tests of the internals: slab geometry, the slab index, routing.

use crate::index::Index;
use crate::one_slab::{Geometry, SlabPtr, BITMAP_OFFSET};
use crate::Slab;
use freespace_core::alloc::{AllocError, Allocator, Global, Layout};
use std::vec::Vec;

#[test]
fn geometry_keeps_objects_inside_the_slab_and_off_offset_zero() {
    let sizes: &[usize] = if cfg!(miri) {
        &[1, 16, 24, 100, 4096]
    } else {
        &[1, 2, 3, 7, 8, 16, 24, 48, 100, 255, 1000, 4096, 10000]
    };
    for &slab in &[256usize, 1024, 4096, 65536] {
        for &size in sizes {
            for align in [1usize, 8, 64, 256] {
                let Some(g) = Geometry::new(slab, size, align) else {
                    // Only refused when not even one object fits.
                    assert!(
                        BITMAP_OFFSET + 8 + size > slab || align >= slab || size >= slab,
                        "{slab} {size} {align}"
                    );
                    continue;
                };
                assert!(
                    g.first >= BITMAP_OFFSET + g.words * 8,
                    "bitmap overlaps objects"
                );
                assert!(g.first > 0 && g.first % align == 0);
                assert!(g.objects_end() <= slab);
                assert_eq!(g.words, g.capacity.div_ceil(64));
                // No room was left for one more object (with its bitmap bit).
                let more = g.capacity + 1;
                let first = (BITMAP_OFFSET + more.div_ceil(64) * 8).next_multiple_of(align);
                assert!(
                    first + more * size > slab,
                    "{slab} {size} {align}: capacity {} not maximal",
                    g.capacity
                );
            }
        }
    }
    assert!(
        Geometry::new(1000, 16, 16).is_none(),
        "slab size must be a power of two"
    );
    assert!(Geometry::new(128, 16, 16).is_none(), "slab too small");
}

/// Slab-aligned blocks from `Global`, for index tests.
fn slabs(n: usize, size: usize) -> Vec<SlabPtr> {
    let g = Geometry::new(size, 64, 8).unwrap();
    (0..n)
        .map(|_| {
            let base = Global
                .allocate(Layout::from_size_align(size, size).unwrap())
                .unwrap()
                .cast::<u8>();
            // SAFETY: a fresh, aligned block of `size` bytes.
            unsafe { SlabPtr::init(base, &g, 0) }
        })
        .collect()
}

fn free_slabs(s: Vec<SlabPtr>, size: usize) {
    for slab in s {
        // SAFETY: allocated by `slabs` with this layout.
        unsafe { Global.deallocate(slab.base(), Layout::from_size_align(size, size).unwrap()) };
    }
}

#[test]
fn index_finds_exactly_what_was_inserted_through_growth_and_removal() {
    const S: usize = 256;
    let n = if cfg!(miri) { 40 } else { 300 };
    let all = slabs(n, S);
    let index = Index::new(S);
    for (k, &s) in all.iter().enumerate() {
        index.insert(&Global, s).unwrap();
        if k % 7 == 0 {
            index.check().unwrap();
        }
    }
    assert_eq!(index.len(), n);
    for &s in &all {
        assert_eq!(index.find(s.addr()), Some(s));
        assert_eq!(index.find(s.addr() + S * 1_000_000), None);
    }
    // Remove in a scrambled order, checking after each removal that every
    // remaining slab is still reachable (backward-shift deletion).
    let mut order: Vec<usize> = (0..n).map(|i| (i * 37) % n).collect();
    order.dedup();
    let mut removed = std::vec![false; n];
    for &i in &order {
        if removed[i] {
            continue;
        }
        removed[i] = true;
        index.remove(&Global, all[i]);
        index.check().unwrap();
        assert_eq!(index.find(all[i].addr()), None);
        for (j, &s) in all.iter().enumerate() {
            if !removed[j] {
                assert_eq!(index.find(s.addr()), Some(s));
            }
        }
    }
    for (i, &s) in all.iter().enumerate() {
        if !removed[i] {
            index.remove(&Global, s);
        }
    }
    assert_eq!(index.len(), 0);
    assert!(
        index.table_block().is_none(),
        "the table goes back with the last slab"
    );
    free_slabs(all, S);
}

#[test]
// Safe code only (building two slabs and routing every size and alignment
// through their tables): nothing in it for Miri to check, and under Miri it
// was most of the crate's run, twice (Stacked and Tree Borrows).
#[cfg_attr(miri, ignore = "safe code only; runs natively, exhaustively")]
fn routing_is_consistent_for_every_size_up_to_the_returned_length() {
    // Every layout and every size between it and what `allocate` would
    // return route to the same place (DESIGN §7 "Excess and routing").
    routes_consistently(&Slab::<Global, 65536>::sized(Global));
    // Classes past the routing table (binary search).
    routes_consistently(&Slab::<Global, { 1 << 18 }>::sized(Global));
}

fn routes_consistently<const S: usize>(slab: &Slab<Global, S>) {
    let classes = slab.classes();
    // Past the largest class too (`route` answers that without a search).
    let largest = *classes.last().unwrap();
    let max_size = largest + 200;
    let mut align = 1;
    while align <= 8192 {
        let mut size = 1;
        while size <= max_size {
            let l = Layout::from_size_align(size, align).unwrap();
            let route = slab.route(l);
            // The smallest class large and aligned enough, by a plain scan.
            let smallest = (0..classes.len())
                .find(|&i| classes[i] >= size && slab.caches[i].geometry.object_align >= align);
            assert_eq!(route, smallest, "{size}/{align}");
            if let Some(c) = route {
                assert!(classes[c] >= size);
                assert!(slab.caches[c].geometry.object_align >= align);
                for s in [size, (size + classes[c]) / 2, classes[c]] {
                    let l2 = Layout::from_size_align(s, align).unwrap();
                    assert_eq!(slab.route(l2), route, "{size}/{align} vs {s}");
                }
            } else {
                for s in [size, size * 2, usize::MAX / 4] {
                    let l2 = Layout::from_size_align(s, align).unwrap();
                    assert_eq!(slab.route(l2), None, "{size}/{align} vs {s}");
                }
            }
            size += 1;
        }
        align *= 2;
    }
}

#[test]
fn slab_header_survives_object_writes() {
    // Writing every byte of every object never touches the header or
    // bitmap: check() still passes, and freeing works.
    let slab: Slab<Global, 1024> = Slab::sized_with_classes(Global, &[8, 40]);
    let l = Layout::from_size_align(40, 8).unwrap();
    let mut blocks = Vec::new();
    while blocks.len() < 60 {
        let b = slab.allocate(l).unwrap();
        // SAFETY: the block is `b.len()` bytes, ours.
        unsafe { b.cast::<u8>().write_bytes(0xff, b.len()) };
        blocks.push(b.cast::<u8>());
    }
    slab.check().unwrap();
    for b in blocks {
        // SAFETY: live, allocated with `l`.
        unsafe { slab.deallocate(b, l) };
    }
    slab.check().unwrap();
}

#[test]
fn routing_table_agrees_with_a_linear_search() {
    // Classes that are not multiples of 16, and one past the table's reach.
    static CLASSES: &[usize] = &[3, 24, 40, 100, 1000, 5000, 8200, 9000];
    let slab: Slab<Global, 65536> = Slab::sized_with_classes(Global, CLASSES);
    let step = if cfg!(miri) { 61 } else { 1 };
    for align in [1usize, 8, 16, 64] {
        for size in (0..=10_000).step_by(step) {
            let l = Layout::from_size_align(size, align).unwrap();
            let expected = (0..CLASSES.len())
                .find(|&c| CLASSES[c] >= size && slab.caches[c].geometry.object_align >= align);
            assert_eq!(slab.route(l), expected, "{size}/{align}");
        }
    }
}

#[test]
fn object_index_by_multiplication_agrees_with_division() {
    let cases: &[(usize, usize, usize)] = if cfg!(miri) {
        &[(256, 24, 8), (4096, 48, 16), (65536, 8192, 4096)]
    } else {
        &[
            (256, 3, 1),
            (256, 24, 8),
            (4096, 48, 16),
            (4096, 1, 1),
            (65536, 16, 16),
            (65536, 112, 16),
            (65536, 1000, 8),
            (65536, 8192, 4096),
            (1 << 20, 5000, 8),
        ]
    };
    for &(slab, size, align) in cases {
        let g = Geometry::new(slab, size, align).unwrap();
        let stride = if cfg!(miri) { 7 } else { 1 };
        for offset in (0..slab).step_by(stride) {
            let expected =
                (offset >= g.first && offset < g.objects_end() && (offset - g.first) % size == 0)
                    .then(|| (offset - g.first) / size);
            assert_eq!(g.index_of(offset), expected, "{slab} {size} {offset}");
        }
    }
}

#[test]
fn class_objects_are_reused_lowest_first_and_free_objects_hold_nothing_of_ours() {
    let slab: Slab<Global, 4096> = Slab::sized_with_classes(Global, &[32]);
    let l = Layout::from_size_align(32, 8).unwrap();
    let blocks: Vec<_> = (0..10)
        .map(|_| slab.allocate(l).unwrap().cast::<u8>())
        .collect();
    // Fresh objects come in address order.
    assert!(blocks.windows(2).all(|w| w[0] < w[1]));
    for &i in &[2usize, 7, 4] {
        // SAFETY: live, allocated with `l`.
        unsafe { slab.deallocate(blocks[i], l) };
    }
    slab.check().unwrap();
    // A use after free that overwrites a free object (7) cannot damage the
    // slab: free objects are found in the bitmap, nothing of ours is kept
    // in them, so check still passes and the object goes out again as any
    // other.
    // SAFETY: object 7 is free slab memory of ours, 32 bytes.
    unsafe { blocks[7].write_bytes(0xA5, 32) };
    slab.check().unwrap();
    // The lowest free object first; then the objects never handed out.
    for &i in &[2usize, 4, 7] {
        assert_eq!(slab.allocate(l).unwrap().cast::<u8>(), blocks[i]);
    }
    let next = slab.allocate(l).unwrap().cast::<u8>();
    assert!(next > blocks[9]);
    slab.check().unwrap();
    for b in blocks.into_iter().chain([next]) {
        // SAFETY: live, allocated with `l`.
        unsafe { slab.deallocate(b, l) };
    }
    slab.check().unwrap();
}

/// A parent with room for `max` blocks at a time (from `Global`).
struct Room {
    live: core::cell::Cell<usize>,
    max: usize,
}

// SAFETY: forwards to `Global`, refusing requests past `max` live blocks.
unsafe impl Allocator for Room {
    fn allocate(
        &self,
        layout: Layout,
    ) -> Result<core::ptr::NonNull<[u8]>, freespace_core::alloc::AllocError> {
        if self.live.get() == self.max {
            return Err(freespace_core::alloc::AllocError);
        }
        let block = Global.allocate(layout)?;
        self.live.set(self.live.get() + 1);
        Ok(block)
    }

    unsafe fn deallocate(&self, ptr: core::ptr::NonNull<u8>, layout: Layout) {
        self.live.set(self.live.get() - 1);
        // SAFETY: allocated by `Global` with `layout` (caller contract).
        unsafe { Global.deallocate(ptr, layout) }
    }
}

#[test]
fn a_class_short_of_memory_takes_back_the_empty_slabs_of_the_others() {
    // Room for the slab index's table and two slabs.
    let slab: Slab<Room, 4096> = Slab::sized_with_classes(
        Room {
            live: core::cell::Cell::new(0),
            max: 3,
        },
        &[32, 64],
    );
    let small = Layout::from_size_align(32, 8).unwrap();
    let big = Layout::from_size_align(64, 8).unwrap();
    // Class 32 gets a slab and keeps it empty (max_empty 1).
    let p = slab.allocate(small).unwrap().cast::<u8>();
    // SAFETY: live with `small`.
    unsafe { slab.deallocate(p, small) };
    assert_eq!(slab.slab_counts(), (0, 0, 1));
    // Class 64 fills one slab, then needs a second: the parent has no room
    // until class 32's empty slab goes back.
    let per_slab = slab.caches[1].geometry.capacity;
    let blocks: Vec<_> = (0..per_slab + 1)
        .map(|_| slab.allocate(big).unwrap().cast::<u8>())
        .collect();
    assert_eq!(slab.slab_counts(), (1, 1, 0));
    slab.check().unwrap();
    // Now nothing is left to reap: the next slab fails, cleanly.
    let more: Vec<_> = (0..per_slab - 1)
        .map(|_| slab.allocate(big).unwrap().cast::<u8>())
        .collect();
    assert!(slab.allocate(big).is_err());
    assert!(slab.allocate(small).is_err());
    for b in blocks.into_iter().chain(more) {
        // SAFETY: live with `big`.
        unsafe { slab.deallocate(b, big) };
    }
    slab.check().unwrap();
}

/// SLAB-C1's parked slab: a free that empties the partial list's only slab
/// leaves it there, so allocating and freeing one object at a time moves
/// no slab between lists; a full slab that joins the partial list moves it
/// to the empty list; `reap` gives it back; `max_empty` 0 parks nothing.
#[test]
fn the_only_partial_slab_stays_parked_when_it_empties() {
    let slab = Slab::new(Global);
    let l = Layout::from_size_align(64, 8).unwrap();
    let class = slab.route(l).unwrap();
    let cache = &slab.caches[class];
    let p = slab.allocate(l).unwrap().cast::<u8>();
    // SAFETY: live with `l`, freed once.
    unsafe { slab.deallocate(p, l) };
    let parked = cache
        .parked()
        .expect("the emptied slab stays on the partial list");
    assert_eq!(parked.verify(), Ok(crate::one_slab::List::Partial));
    assert_eq!(slab.slab_counts(), (0, 0, 1), "counted by what it holds");
    slab.check().unwrap();
    for _ in 0..100 {
        let q = slab.allocate(l).unwrap().cast::<u8>();
        assert_eq!(q, p, "the parked slab serves the next request");
        assert!(cache.parked().is_none());
        // SAFETY: live with `l`, freed once.
        unsafe { slab.deallocate(q, l) };
        assert_eq!(cache.parked(), Some(parked));
    }

    // A full slab and a parked one: a free from the full slab brings it to
    // the partial list, and the parked slab moves to the empty list.
    let capacity = cache.geometry.capacity;
    let full: Vec<_> = (0..capacity)
        .map(|_| slab.allocate(l).unwrap().cast::<u8>())
        .collect();
    assert_eq!(slab.slab_counts(), (0, 1, 0));
    let extra = slab.allocate(l).unwrap().cast::<u8>();
    assert_eq!(slab.slab_counts(), (1, 1, 0));
    // SAFETY: live with `l`, freed once.
    unsafe { slab.deallocate(extra, l) };
    assert!(cache.parked().is_some());
    assert_eq!(slab.slab_counts(), (0, 1, 1));
    slab.check().unwrap();
    // SAFETY: live with `l`, freed once.
    unsafe { slab.deallocate(full[0], l) };
    assert!(cache.parked().is_none(), "no longer the only partial slab");
    assert_eq!(slab.slab_counts(), (1, 0, 1));
    slab.check().unwrap();
    for &q in &full[1..] {
        // SAFETY: live with `l`, freed once.
        unsafe { slab.deallocate(q, l) };
    }
    slab.check().unwrap();
    assert_eq!(slab.reap(), 1);
    assert_eq!(slab.slab_counts(), (0, 0, 0));

    // Keeping no empty slab parks none.
    let strict = Slab::new(Global).with_max_empty(0);
    let p = strict.allocate(l).unwrap().cast::<u8>();
    // SAFETY: live with `l`, freed once.
    unsafe { strict.deallocate(p, l) };
    assert_eq!(strict.slab_counts(), (0, 0, 0));
    strict.check().unwrap();
}

std::thread_local! {
    static SEEN: core::cell::RefCell<Vec<freespace_core::Corruption>> =
        const { core::cell::RefCell::new(Vec::new()) };
}

fn record(c: freespace_core::Corruption, _: &'static str) {
    SEEN.with(|s| s.borrow_mut().push(c));
}

/// `Batch` on the slab: a run allocated across several slabs is as many
/// distinct, aligned objects as asked for; a run freed in any order, with
/// a double free and a foreign pointer mixed in, frees every real object
/// once and names the two misuses exactly as single frees would.
#[test]
fn batches_free_and_name_faults_like_single_frees() {
    use freespace_core::{corruption, Batch, Corruption};
    let previous = corruption::set_handler(record);
    let slab = Slab::new(Global);
    let l = Layout::from_size_align(64, 8).unwrap();
    let capacity = slab.caches[slab.route(l).unwrap()].geometry.capacity;
    let n = if cfg!(miri) {
        capacity + 5
    } else {
        3 * capacity + 5
    };
    let mut run = std::vec![core::ptr::NonNull::<u8>::dangling(); n];
    assert_eq!(slab.allocate_batch(l, &mut run), n);
    let mut addrs: Vec<usize> = run.iter().map(|p| p.as_ptr().addr()).collect();
    assert!(addrs.iter().all(|a| a % 64 == 0));
    addrs.sort_unstable();
    addrs.dedup();
    assert_eq!(addrs.len(), n, "every object handed out once");
    slab.check().unwrap();
    assert_eq!(
        slab.slab_counts().0 + slab.slab_counts().1,
        n.div_ceil(capacity)
    );

    // Free in an interleaved order, one object twice, one foreign block
    // (static memory, far from the slabs the heap holds; under Miri, whose
    // addresses may interleave, the double free alone).
    #[repr(align(64))]
    struct Foreign {
        _bytes: [u8; 64],
    }
    static mut FOREIGN: Foreign = Foreign { _bytes: [0; 64] };
    let foreign = core::ptr::NonNull::new(core::ptr::addr_of_mut!(FOREIGN).cast::<u8>()).unwrap();
    let mut order: Vec<_> = run
        .iter()
        .step_by(2)
        .chain(run.iter().skip(1).step_by(2))
        .copied()
        .collect();
    let twice = order[3];
    order.insert(7, twice);
    if !cfg!(miri) {
        order.insert(9, foreign);
    }
    SEEN.with(|s| s.borrow_mut().clear());
    // SAFETY: every object of `run` is live and freed once; the duplicate
    // and the foreign block are the misuses under test (the handler
    // records them and returns, so nothing is done with them; the foreign
    // block lies outside the span of our slabs, so it is not even read).
    unsafe { slab.deallocate_batch(&order, l) };
    let seen = SEEN.with(|s| s.take());
    corruption::set_handler(previous);
    let mut expected = std::vec![Corruption::DoubleFree {
        addr: twice.as_ptr().addr(),
    }];
    if !cfg!(miri) {
        expected.push(Corruption::ForeignPointer {
            addr: foreign.as_ptr().addr(),
        });
    }
    assert_eq!(seen, expected);
    slab.check().unwrap();
    let (partial, full, _) = slab.slab_counts();
    assert_eq!((partial, full), (0, 0), "every object came back");
}

/// Runs of neighbouring objects (each one object after the last, or one
/// before) are freed as one range of bits (`SlabPtr::put_sequence`): going
/// up and going down, from and to the slab's first and last objects, every
/// object comes back once; an object of the range that is free already is
/// named exactly as a single free names it, and the rest of the run is
/// still freed.
#[test]
fn neighbouring_objects_free_as_a_range_and_a_free_one_inside_is_named() {
    use freespace_core::{corruption, Batch, Corruption};
    // Objects of 48 bytes (one bitmap word) and of 2 (several: the range
    // crosses words); holes in the first word and, for 2, in a later one.
    let cases: [(&'static [usize], bool, Option<usize>); 8] = [
        (&[48], true, None),
        (&[48], false, None),
        (&[48], true, Some(5)),
        (&[48], false, Some(9)),
        (&[2], true, None),
        (&[2], false, None),
        (&[2], true, Some(130)),
        (&[2], false, Some(64)),
    ];
    for (classes, up, hole) in cases {
        let size = classes[0];
        let previous = corruption::set_handler(record);
        let slab: Slab<Global, 1024> =
            Slab::sized_with_classes(Global, classes).with_max_empty(usize::MAX);
        let l = Layout::from_size_align(size, 1).unwrap();
        let capacity = slab.caches[slab.route(l).unwrap()].geometry.capacity;
        assert!(capacity > hole.unwrap_or(0) + 2 && capacity >= 12);
        // Exactly one slab's objects, in address order.
        let mut objects = std::vec![core::ptr::NonNull::<u8>::dangling(); capacity];
        assert_eq!(slab.allocate_batch(l, &mut objects), capacity);
        objects.sort_by_key(|p| p.as_ptr().addr());
        assert!(objects
            .windows(2)
            .all(|w| w[1].as_ptr().addr() - w[0].as_ptr().addr() == size));
        if let Some(h) = hole {
            // SAFETY: live, freed once here; the batch frees it again.
            unsafe { slab.deallocate(objects[h], l) };
        }
        let order: Vec<_> = if up {
            objects.clone()
        } else {
            objects.iter().rev().copied().collect()
        };
        SEEN.with(|s| s.borrow_mut().clear());
        // SAFETY: every object is live and freed once, but for the hole,
        // the double free under test (recorded by the handler, not acted
        // on).
        unsafe { slab.deallocate_batch(&order, l) };
        let seen = SEEN.with(|s| s.take());
        corruption::set_handler(previous);
        let expected: Vec<_> = hole
            .map(|h| Corruption::DoubleFree {
                addr: objects[h].as_ptr().addr(),
            })
            .into_iter()
            .collect();
        assert_eq!(seen, expected, "size {size}, up {up}, hole {hole:?}");
        slab.check().unwrap();
        assert_eq!(
            slab.slab_counts(),
            (0, 0, 1),
            "size {size}, up {up}, hole {hole:?}"
        );
        // Every object is free once: a batch as large takes them all again.
        let mut again = std::vec![core::ptr::NonNull::<u8>::dangling(); capacity];
        assert_eq!(slab.allocate_batch(l, &mut again), capacity);
        again.sort_by_key(|p| p.as_ptr().addr());
        assert_eq!(again, objects, "size {size}, up {up}, hole {hole:?}");
        // SAFETY: each live, freed once.
        unsafe { slab.deallocate_batch(&again, l) };
        slab.check().unwrap();
    }
}

/// Runs of one slab's objects are freed together in place
/// (`SlabPtr::put_run`): every object comes back exactly once (the slabs
/// check, and a second batch hands out the same objects again), and a run
/// stops at another slab, a double free within it, an interior pointer and
/// the free that would empty its slab, each of which is then named or done
/// as a single free would — for objects of 2 and of 48 bytes.
#[test]
fn runs_free_in_place_and_stop_where_a_single_free_must_decide() {
    use freespace_core::{corruption, Batch, Corruption};
    let classes: [&'static [usize]; 2] = [&[2], &[48]];
    for classes in classes {
        let size = classes[0];
        let previous = corruption::set_handler(record);
        // Empty slabs are kept, so the second batch below finds the same
        // objects.
        let slab: Slab<Global, 1024> =
            Slab::sized_with_classes(Global, classes).with_max_empty(usize::MAX);
        let l = Layout::from_size_align(size, 1).unwrap();
        let geometry = slab.caches[slab.route(l).unwrap()].geometry;
        let n = 2 * geometry.capacity + 3;
        let mut run = std::vec![core::ptr::NonNull::<u8>::dangling(); n];
        assert_eq!(slab.allocate_batch(l, &mut run), n);
        let mut first: Vec<usize> = run.iter().map(|p| p.as_ptr().addr()).collect();
        first.sort_unstable();
        // Last allocated first (runs of each slab, highest object first, so
        // that a run, not the single free before it, frees the lowest
        // words), with a block freed twice and an interior pointer inside
        // the second slab's run (the last has 3 objects).
        assert!(geometry.capacity >= 20);
        // The first object stays live for now: its slab stays partial, so
        // its header keeps what the runs made of it (an emptying single free
        // would rewrite the search start).
        let mut order: Vec<_> = run[1..].iter().rev().copied().collect();
        let twice = order[10];
        // SAFETY: one byte into a live object of at least 2 bytes.
        let interior = unsafe { order[12].add(1) };
        order.insert(15, twice);
        order.insert(17, interior);
        SEEN.with(|s| s.borrow_mut().clear());
        // SAFETY: every object of `run` is live and freed once; the
        // duplicate and the interior pointer are the misuses under test (the
        // handler records them and returns, so nothing is done with them).
        unsafe { slab.deallocate_batch(&order, l) };
        let seen = SEEN.with(|s| s.take());
        corruption::set_handler(previous);
        let expected = [
            Corruption::DoubleFree {
                addr: twice.as_ptr().addr(),
            },
            Corruption::InteriorPointer {
                addr: interior.as_ptr().addr(),
            },
        ];
        assert_eq!(seen, expected, "size {size}");
        slab.check().unwrap();
        // SAFETY: live, freed once.
        unsafe { slab.deallocate(run[0], l) };
        slab.check().unwrap();
        let (partial, full, _) = slab.slab_counts();
        assert_eq!((partial, full), (0, 0), "every object came back");
        // A second batch as large is served by the same slabs (every
        // object came back to its slab), each object once.
        assert_eq!(slab.allocate_batch(l, &mut run), n);
        let mut again: Vec<usize> = run.iter().map(|p| p.as_ptr().addr()).collect();
        again.sort_unstable();
        again.dedup();
        assert_eq!(again.len(), n, "size {size}: each object once");
        let bases = |v: &[usize]| {
            let mut b: Vec<usize> = v.iter().map(|a| a & !1023).collect();
            b.dedup();
            b
        };
        assert_eq!(bases(&again), bases(&first), "size {size}: the same slabs");
        slab.check().unwrap();
        // SAFETY: each object is live and freed once.
        unsafe { slab.deallocate_batch(&run, l) };
        slab.check().unwrap();
    }
}

/// A parent that keeps the memory it takes back until it is dropped, so
/// the bytes of a slab given back stay readable afterwards.
#[derive(Default)]
struct Keep(core::cell::RefCell<Vec<(core::ptr::NonNull<u8>, Layout)>>);

// SAFETY: blocks come from `Global` and are not reused while `Keep` lives;
// dropping it gives them back to `Global`.
unsafe impl Allocator for Keep {
    fn allocate(&self, l: Layout) -> Result<core::ptr::NonNull<[u8]>, AllocError> {
        Global.allocate(l)
    }
    unsafe fn deallocate(&self, p: core::ptr::NonNull<u8>, l: Layout) {
        self.0.borrow_mut().push((p, l));
    }
}

impl Drop for Keep {
    fn drop(&mut self) {
        for (p, l) in self.0.take() {
            // SAFETY: allocated from `Global` with `l`, given back to us once.
            unsafe { Global.deallocate(p, l) };
        }
    }
}

/// The map of `Slab::new`'s slabs.
static MAP: crate::ObjectMap = crate::ObjectMap::new(crate::DEFAULT_CLASSES);

#[test]
fn the_object_map_names_live_objects_and_nothing_else() {
    MAP.check().unwrap();
    let slab = Slab::new(Keep::default()).with_max_empty(0);
    let sizes: &[usize] = if cfg!(miri) {
        &[1, 100, 8192]
    } else {
        &[1, 8, 16, 17, 48, 100, 200, 512, 513, 1000, 8192]
    };
    let mut live = Vec::new();
    for &size in sizes {
        let l = Layout::from_size_align(size, 8).unwrap();
        for _ in 0..3 {
            live.push((slab.allocate(l).unwrap().cast::<u8>(), l));
        }
    }
    for &(p, l) in &live {
        let class = slab.route(l);
        // SAFETY: `p` is a live object of `slab`, whose classes and slab
        // size are `MAP`'s.
        assert_eq!(unsafe { MAP.class_of(p) }, class, "{l:?}");
        let size = MAP.classes()[class.unwrap()];
        for inside in [1, 8, size - 1] {
            // SAFETY: as above; the address lies in the same object.
            let q = unsafe { p.add(inside) };
            // SAFETY: as above.
            assert_eq!(unsafe { MAP.class_of(q) }, None, "{l:?} + {inside}");
        }
    }
    // A slab given back is erased (SLAB-S4): its memory names no class.
    for &(p, l) in &live {
        // SAFETY: allocated above with `l`, freed once.
        unsafe { slab.deallocate(p, l) };
    }
    slab.check().unwrap();
    assert_eq!(slab.slab_counts(), (0, 0, 0), "every slab went back");
    for &(p, _) in &live {
        // SAFETY: `Keep` never reuses memory, so the slab's bytes are
        // still readable, and nobody writes them.
        assert_eq!(unsafe { MAP.class_of(p) }, None);
    }
}

#[test]
fn a_copied_header_is_not_an_identity() {
    // The identity is keyed with the slab's address: the same bytes at
    // another slab-aligned address name no class.
    const SLAB: usize = crate::DEFAULT_SLAB_SIZE;
    let slab = Slab::new(Keep::default());
    let l = Layout::from_size_align(64, 8).unwrap();
    let p = slab.allocate(l).unwrap().cast::<u8>();
    let base = p.as_ptr().addr() & !(SLAB - 1);
    let offset = p.as_ptr().addr() - base;
    let whole = Layout::from_size_align(SLAB, SLAB).unwrap();
    let copy = Global.allocate(whole).unwrap().cast::<u8>();
    let from = freespace_core::layout::with_addr(p, base).unwrap();
    // SAFETY: the slab's bytes are readable through `p` (it was carved
    // from them), the copy is ours and as large.
    unsafe { core::ptr::copy_nonoverlapping(from.as_ptr(), copy.as_ptr(), SLAB) };
    // SAFETY: `p` is live; the copy is ours, readable, unwritten.
    unsafe {
        assert_eq!(MAP.class_of(p), slab.route(l));
        assert_eq!(MAP.class_of(copy.add(offset)), None);
    }
    // SAFETY: allocated above.
    unsafe {
        slab.deallocate(p, l);
        Global.deallocate(copy, whole);
    }
}

/// A run of objects goes out together (`SlabPtr::take_run`): the lowest
/// free ones, in the order `take` would hand them out one at a time, the
/// seal still verifying and the counts as if each had been taken alone; a
/// bit set past the last object (a damaged bitmap) stops the run short of
/// it, and the one-at-a-time path then refuses it too (it names the damage).
#[test]
fn runs_go_out_lowest_first_and_a_damaged_bitmap_stops_them() {
    const S: usize = 4096;
    let g = Geometry::new(S, 48, 16).unwrap();
    assert!(g.capacity > 72 && g.capacity < 128, "two bitmap words");
    let layout = Layout::from_size_align(S, S).unwrap();
    let base = Global.allocate(layout).unwrap().cast::<u8>();
    // SAFETY: a fresh, aligned block of `S` bytes, ours until freed below.
    let slab = unsafe { SlabPtr::init(base, &g, 0) };
    let mut out = std::vec![core::ptr::NonNull::<u8>::dangling(); 70];
    // SAFETY: `slab` was made with `g` (for every call below), and every
    // run asks for fewer objects than are free.
    let n = unsafe { slab.take_run(&g, &mut out) };
    assert_eq!(n, 70, "a run that crosses a bitmap word");
    for (j, p) in out.iter().enumerate() {
        // SAFETY: `j < capacity`.
        assert_eq!(*p, unsafe { slab.object(&g, j) });
    }
    slab.verify().unwrap();
    assert_eq!(slab.free_count(), g.capacity - 70);
    // Objects freed again go out first, lowest first, then the rest.
    for i in [66, 3, 40] {
        // SAFETY: object `i < 70` was taken above.
        unsafe { slab.put(i) };
    }
    let mut four = [core::ptr::NonNull::<u8>::dangling(); 4];
    // SAFETY: as above.
    assert_eq!(unsafe { slab.take_run(&g, &mut four) }, 4);
    // SAFETY: every index is below `capacity`.
    let expected = [3, 40, 66, 70].map(|i| unsafe { slab.object(&g, i) });
    assert_eq!(four, expected);
    slab.verify().unwrap();
    // All but one of the rest.
    let mut rest = std::vec![core::ptr::NonNull::<u8>::dangling(); g.capacity - 72];
    // SAFETY: as above.
    assert_eq!(unsafe { slab.take_run(&g, &mut rest) }, g.capacity - 72);
    assert_eq!(slab.free_count(), 1);
    slab.verify().unwrap();
    // SAFETY: as above.
    let last = unsafe { slab.take(&g) }.unwrap();
    // SAFETY: `capacity - 1 < capacity`.
    assert_eq!(last, unsafe { slab.object(&g, g.capacity - 1) });

    // A second slab whose bitmap a stray write damaged: no bit below the
    // last object set, one past it.
    let base2 = Global.allocate(layout).unwrap().cast::<u8>();
    // SAFETY: as above.
    let slab2 = unsafe { SlabPtr::init(base2, &g, 0) };
    // SAFETY: the two bitmap words lie in the slab's first bytes.
    unsafe {
        let words = base2.as_ptr().add(BITMAP_OFFSET).cast::<u64>();
        words.write(0);
        words.add(1).write(1 << (g.capacity - 64));
    }
    // SAFETY: `slab2` was made with `g`.
    assert_eq!(unsafe { slab2.take_run(&g, &mut out[..5]) }, 0);
    // SAFETY: as above.
    assert!(unsafe { slab2.take(&g) }.is_err());
    // SAFETY: both blocks came from `Global` with `layout`.
    unsafe {
        Global.deallocate(base, layout);
        Global.deallocate(base2, layout);
    }
}
