//! Unit tests of the internals: slab geometry, the slab index, routing.

use crate::index::Index;
use crate::one_slab::{Geometry, SlabPtr, BITMAP_OFFSET};
use crate::Slab;
use freespace_core::alloc::{Allocator, Global, Layout};
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
fn routing_is_consistent_for_every_size_up_to_the_returned_length() {
    // Every layout and every size between it and what `allocate` would
    // return route to the same place (DESIGN §7 "Excess and routing").
    let slab: Slab<Global, 65536> = Slab::sized(Global);
    let classes = slab.classes();
    let (max_size, step) = if cfg!(miri) { (9000, 97) } else { (9000, 1) };
    let mut align = 1;
    while align <= 8192 {
        let mut size = 1;
        while size <= max_size {
            let l = Layout::from_size_align(size, align).unwrap();
            let route = slab.route(l);
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
            size += step;
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
