use super::*;
use core::ptr::NonNull;
use freespace_core::Corruption;
use std::vec::Vec;

/// A 16-aligned buffer of `n` granules to lay chunks out in.
fn buffer(granules: usize) -> (Vec<u128>, NonNull<u8>) {
    let mut v = std::vec![0u128; granules];
    let p = NonNull::new(v.as_mut_ptr().cast::<u8>()).unwrap();
    (v, p)
}

#[test]
fn magic_changes_with_any_single_bit_of_word0() {
    let m = chunk::magic(0x4000, 0x61, 99);
    for bit in 0..usize::BITS {
        assert_ne!(chunk::magic(0x4000, 0x61 ^ (1 << bit), 99), m, "bit {bit}");
    }
}

#[test]
fn allocated_header_round_trips_and_detects_flips() {
    let (_keep, p) = buffer(4);
    let c = Chunk::new(p);
    // SAFETY: the buffer is 64 bytes, ours alone.
    unsafe {
        c.write_allocated(48, Flags::ALLOCATED | Flags::PREV_FREE, 7);
        assert_eq!(c.size(), 48);
        assert_eq!(c.flags(), Flags::ALLOCATED | Flags::PREV_FREE);
        assert!(c.magic_ok(7));
        assert!(!c.magic_ok(8));
        c.set_prev_free_allocated(false);
        assert!(c.magic_ok(7) && !c.flags().contains(Flags::PREV_FREE));
        for byte in 0..HEADER {
            let b = p.as_ptr().add(byte);
            b.write(b.read() ^ 0x10);
            assert!(!c.magic_ok(7), "flip in byte {byte} went unnoticed");
            b.write(b.read() ^ 0x10);
        }
        c.bury(7);
        assert!(c.is_buried(7) && !c.magic_ok(7) && c.size() == 0);
    }
}

#[test]
fn flag_flips_keep_a_valid_header_valid_and_a_damaged_one_damaged() {
    let (_keep, p) = buffer(4);
    let c = Chunk::new(p);
    // SAFETY: the buffer is 64 bytes, ours alone.
    unsafe {
        c.write_allocated(48, Flags::ALLOCATED, 7);
        for prev_free in [true, true, false, false, true] {
            c.set_prev_free_allocated(prev_free);
            assert!(c.magic_ok(7));
            assert_eq!(c.flags().contains(Flags::PREV_FREE), prev_free);
            assert_eq!(c.size(), 48);
        }
        // Damage the size word, then change the flag: the header must not
        // be re-sealed over the damage.
        p.cast::<usize>().write(c.word0() ^ 0x100);
        for prev_free in [false, true] {
            c.set_prev_free_allocated(prev_free);
            assert!(!c.magic_ok(7), "damage sealed over (prev_free {prev_free})");
        }
    }
}

#[test]
#[cfg_attr(
    miri,
    ignore = "arithmetic only, 270 000 cases: minutes under Miri for nothing it can find"
)]
fn serves_is_the_slack_rule_written_out() {
    // The rule `serves` stands for: the chunk is at least the size the
    // request needs and at most one granule more.
    let rule = |chunk: usize, size: usize| {
        chunk::chunk_size_for(size).is_some_and(|need| need <= chunk && chunk - need <= GRANULE)
    };
    for chunk in (MIN_CHUNK..=2048).step_by(GRANULE) {
        for size in (1..=2100).chain([isize::MAX as usize - 15, isize::MAX as usize]) {
            assert_eq!(
                chunk::serves(chunk, size),
                rule(chunk, size),
                "{chunk} {size}"
            );
        }
    }
    let big = (isize::MAX as usize) & !(GRANULE - 1);
    for size in [big - 64, big - 33, big - 32, big - 31, big - 16, big] {
        assert_eq!(chunk::serves(big, size), rule(big, size), "{size}");
    }
}

#[test]
fn set_keeps_address_order_and_catches_broken_links() {
    let (_keep, p) = buffer(16);
    // Four free chunks of 64 bytes.
    // SAFETY: each chunk is 64 bytes inside the 256-byte buffer.
    let cs: Vec<Chunk> = (0..4)
        .map(|i| unsafe { Chunk::new(p).forward(64 * i) })
        .collect();
    let mut set = FreeSet::new();
    // SAFETY: the chunks are disjoint, free and not yet members.
    unsafe {
        for &i in &[2usize, 0, 3, 1] {
            cs[i].write_free(64, Flags::empty());
            set.insert(cs[i]);
        }
    }
    let order: Vec<usize> = set.iter().map(|f| f.chunk.addr()).collect();
    assert_eq!(order, cs.iter().map(|c| c.addr()).collect::<Vec<_>>());
    assert_eq!(set.len(), 4);
    // SAFETY: members; the replacement sits at the same position.
    unsafe {
        assert_eq!(set.remove(cs[1]).unwrap(), Some(cs[2]));
        let inner = cs[2].forward(32);
        inner.write_free(32, Flags::empty());
        set.replace(cs[2], inner);
        assert_eq!(set.next(cs[0]), Some(inner));
        assert_eq!(set.prev(cs[3]), Some(inner));
        // Damage the back link of cs[3]: unlinking it must refuse.
        cs[3].set_link(2, Some(cs[0]));
        assert_eq!(
            set.remove(cs[3]),
            Err(freespace_core::Corruption::CorruptFreeList { addr: cs[3].addr() })
        );
    }
}

#[test]
fn placement_never_leaves_a_sliver() {
    for align in [32usize, 64, 128, 4096] {
        let r = Request::new(core::alloc::Layout::from_size_align(1, align).unwrap()).unwrap();
        for addr in (0x10000..0x10000 + 2 * align).step_by(16) {
            let pad = r.placement(addr, 1 << 20).unwrap();
            assert!(pad == 0 || pad >= MIN_CHUNK);
            assert_eq!((addr + pad + HEADER) % align, 0);
        }
    }
}

// ----------------------------------------------------------------------
// the tree, against a model
// ----------------------------------------------------------------------

use crate::bins::{Binned, Bins, LARGEST_BINNED};
use crate::index::AddressIndex;
use crate::tree::{ByAddress, ByAddressMax, Key, Order, Tree};

/// Smallest first, lowest address among equals: best fit's order (its
/// crate has its own copy), to test the tree's size-keyed paths here.
enum BySize {}

impl Order for BySize {
    const AUGMENTED: bool = false;
    const BY_SIZE: bool = true;
    fn before(a: Key, b: Key) -> bool {
        (a.size, a.addr) < (b.size, b.addr)
    }
}

/// Largest first, lowest address among equals: worst fit's order.
enum ByLargest {}

impl Order for ByLargest {
    const AUGMENTED: bool = false;
    const BY_SIZE: bool = true;
    fn before(a: Key, b: Key) -> bool {
        a.size > b.size || (a.size == b.size && a.addr < b.addr)
    }
}

/// Bytes per slot of the test buffer: each slot holds at most one chunk,
/// at its start or 16 bytes in (so `replace` can move it within the slot
/// without changing its place in address order).
const SLOT: usize = 256;

#[cfg(not(miri))]
const STEPS: usize = 20_000;
#[cfg(miri)]
const STEPS: usize = 60;

/// Slots (so at most this many members) in the model tests.
#[cfg(not(miri))]
const SLOTS: usize = 64;
#[cfg(miri)]
const SLOTS: usize = 12;

/// Chunks in the sorted-insert test.
#[cfg(not(miri))]
const SORTED: usize = 500;
#[cfg(miri)]
const SORTED: usize = 40;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 as usize
    }
    fn below(&mut self, n: usize) -> usize {
        self.next() % n
    }
}

/// The members, as the model sees them, in `O` order.
fn model_order<O: Order>(members: &[Option<(Chunk, usize)>]) -> Vec<(Chunk, usize)> {
    let mut v: Vec<(Chunk, usize)> = members.iter().flatten().copied().collect();
    v.sort_by(|a, b| {
        let (ka, kb) = (
            Key {
                addr: a.0.addr(),
                size: a.1,
            },
            Key {
                addr: b.0.addr(),
                size: b.1,
            },
        );
        if O::before(ka, kb) {
            core::cmp::Ordering::Less
        } else if O::before(kb, ka) {
            core::cmp::Ordering::Greater
        } else {
            core::cmp::Ordering::Equal
        }
    });
    v
}

/// Random inserts, removes, resizes and replaces on a `Tree<O>` of up to
/// `slots` chunks, with `check()` and every lookup compared to the model
/// after each step.
fn tree_against_model<O: Order>(slots: usize, min_size: usize, seed: u64) {
    let (_keep, p) = buffer(slots * SLOT / 16);
    let mut rng = Rng(seed);
    let mut tree = Tree::<O>::new();
    let mut members: Vec<Option<(Chunk, usize)>> = std::vec![None; slots];
    let size = |rng: &mut Rng| min_size + 16 * rng.below((SLOT - 16 - min_size) / 16 + 1);
    for step in 0..STEPS {
        let i = rng.below(slots);
        // SAFETY: every chunk lies inside its own slot of the buffer, which
        // only this test uses; members are written only through the tree.
        unsafe {
            let slot = Chunk::new(p).forward(i * SLOT);
            match members[i] {
                None => {
                    let s = size(&mut rng);
                    let c = if rng.below(2) == 0 {
                        slot
                    } else {
                        slot.forward(16)
                    };
                    c.write_free(s, Flags::empty());
                    tree.insert(c, s).unwrap();
                    members[i] = Some((c, s));
                }
                Some((c, s)) => match rng.below(3) {
                    0 => {
                        tree.remove(c, s).unwrap();
                        members[i] = None;
                    }
                    1 => {
                        let n = size(&mut rng);
                        c.write_free(n, Flags::empty());
                        tree.resize(c, s, n).unwrap();
                        members[i] = Some((c, n));
                    }
                    _ => {
                        // Move to the slot's other start: same place in
                        // address order.
                        let new = if c == slot { slot.forward(16) } else { slot };
                        let n = size(&mut rng);
                        tree.replace(c, s, new, n).unwrap();
                        new.write_free(n, Flags::empty());
                        members[i] = Some((new, n));
                    }
                },
            }
        }
        let model = model_order::<O>(&members);
        let mut seen = Vec::new();
        tree.check(&mut |c, s| {
            seen.push((c, s));
            Ok(())
        })
        .unwrap_or_else(|v| panic!("step {step}: {v}"));
        assert_eq!(seen, model, "step {step}: in-order walk");
        assert_eq!(tree.len(), model.len());
        assert_eq!(tree.first(), model.first().map(|m| m.0));
        // Lookups from a random key.
        let key = Key {
            addr: p.as_ptr() as usize + rng.below(slots * SLOT),
            size: 32 + 16 * rng.below(SLOT / 16),
        };
        let k = |m: &(Chunk, usize)| Key {
            addr: m.0.addr(),
            size: m.1,
        };
        let lower = model.iter().find(|m| !O::before(k(m), key)).map(|m| m.0);
        let after = model.iter().find(|m| O::before(key, k(m))).map(|m| m.0);
        assert_eq!(tree.lower_bound(key), lower, "step {step}: lower_bound");
        assert_eq!(tree.after(key), after, "step {step}: after");
        let mut at_least = Vec::new();
        tree.for_each_at_least(key.size, &mut |c, s| at_least.push((c, s)));
        let expected: Vec<_> = model.iter().copied().filter(|m| m.1 >= key.size).collect();
        assert_eq!(at_least, expected, "step {step}: for_each_at_least");
        let at_or_before = model
            .iter()
            .rev()
            .find(|m| !O::before(key, k(m)))
            .map(|m| m.0);
        assert_eq!(
            tree.at_or_before(key),
            at_or_before,
            "step {step}: at_or_before"
        );
        let at_least = model
            .iter()
            .find(|m| !O::before(k(m), key) && m.1 >= key.size)
            .map(|m| m.0);
        assert_eq!(
            tree.first_at_least(key),
            at_least,
            "step {step}: first_at_least"
        );
        for m in &model {
            assert!(tree.contains(m.0, m.1));
        }
    }
    // Empty it again.
    for m in members.iter().flatten() {
        // SAFETY: `m` is a member with this size.
        unsafe { tree.remove(m.0, m.1).unwrap() };
    }
    assert!(tree.is_empty() && tree.first().is_none());
    tree.check(&mut |_, _| Ok(())).unwrap();
}

#[test]
fn tree_by_address_matches_the_model() {
    tree_against_model::<ByAddress>(SLOTS, 32, 1);
}

#[test]
fn tree_by_address_with_max_matches_the_model() {
    tree_against_model::<ByAddressMax>(SLOTS, 48, 2);
}

#[test]
fn tree_by_size_matches_the_model() {
    tree_against_model::<BySize>(SLOTS, 32, 3);
}

#[test]
fn tree_by_largest_matches_the_model() {
    tree_against_model::<ByLargest>(SLOTS, 32, 4);
}

#[test]
fn tree_of_many_chunks_inserted_in_order_stays_balanced() {
    // `SORTED` chunks inserted in address order (the worst order for an
    // unbalanced tree), then every other one removed: check() verifies the
    // balance of every node (FL-T3), so the height stays logarithmic.
    let (_keep, p) = buffer(SORTED * 4);
    // SAFETY: 64-byte slots of a buffer only this test uses.
    let cs: Vec<Chunk> = (0..SORTED)
        .map(|i| unsafe { Chunk::new(p).forward(i * 64) })
        .collect();
    let mut tree = Tree::<ByAddressMax>::new();
    // SAFETY: as above; members are removed with the size they have.
    unsafe {
        for (i, &c) in cs.iter().enumerate() {
            let size = 48 + 16 * (i % 2);
            c.write_free(size, Flags::empty());
            tree.insert(c, size).unwrap();
        }
        tree.check(&mut |_, _| Ok(())).unwrap();
        for &c in cs.iter().step_by(2) {
            tree.remove(c, 48).unwrap();
        }
    }
    tree.check(&mut |_, _| Ok(())).unwrap();
    assert_eq!(tree.len(), SORTED / 2);
    assert_eq!(tree.first(), Some(cs[1]));
    assert_eq!(tree.first_at_least(Key { addr: 0, size: 64 }), Some(cs[1]));
    assert_eq!(tree.first_at_least(Key { addr: 0, size: 65 }), None);
}

#[test]
fn a_refused_insert_leaves_every_subtree_maximum_as_it_was() {
    // An insert raises word 3 on its way down; when the search then meets
    // the chunk itself (already a member), every raised word is put back.
    let (_keep, p) = buffer(64 * 16);
    let mut tree = Tree::<ByAddressMax>::new();
    // SAFETY: 256-byte slots of a buffer only this test uses.
    let cs: Vec<Chunk> = (0..64)
        .map(|i| unsafe { Chunk::new(p).forward(i * 256) })
        .collect();
    // SAFETY: as above.
    unsafe {
        for &c in &cs {
            c.write_free(64, Flags::empty());
            tree.insert(c, 64).unwrap();
        }
        let maxima = |cs: &[Chunk]| cs.iter().map(|c| c.field(3)).collect::<Vec<usize>>();
        let before = maxima(&cs);
        for &c in &cs {
            // Sorted under a larger size than any member's: every node on
            // the path would take it as its subtree's largest.
            assert_eq!(
                tree.insert(c, 192),
                Err(Corruption::CorruptFreeList { addr: c.addr() })
            );
            assert_eq!(maxima(&cs), before);
            tree.check(&mut |_, _| Ok(())).unwrap();
        }
        assert_eq!(tree.first_at_least(Key { addr: 0, size: 65 }), None);
    }
}

#[test]
fn tree_refuses_to_unlink_a_chunk_it_cannot_reach() {
    let (_keep, p) = buffer(64);
    let mut tree = Tree::<BySize>::new();
    // SAFETY: 64-byte slots of a buffer only this test uses.
    let cs: Vec<Chunk> = (0..16)
        .map(|i| unsafe { Chunk::new(p).forward(i * 64) })
        .collect();
    // SAFETY: as above; the damage is done to the test's own memory.
    unsafe {
        for &c in &cs {
            c.write_free(64, Flags::empty());
            tree.insert(c, 64).unwrap();
        }
        // Not a member: refused, nothing changed.
        let stranger = Chunk::new(p).forward(16);
        assert_eq!(
            tree.remove(stranger, 64),
            Err(Corruption::CorruptFreeList {
                addr: stranger.addr()
            })
        );
        // The wrong key for a member: not where the key says.
        assert!(tree.remove(cs[3], 48).is_err());
        tree.check(&mut |_, _| Ok(())).unwrap();
        // A damaged size word puts the last member out of order: check()
        // sees it, and unlinking it by that size is refused.
        cs[15].write_free(32, Flags::empty());
        assert!(tree.check(&mut |_, _| Ok(())).is_err());
        assert!(tree.remove(cs[15], 32).is_err());
        cs[15].write_free(64, Flags::empty());
        tree.check(&mut |_, _| Ok(())).unwrap();
        // A left link pointing at the right child (out of order) is
        // refused before anything is unlinked.
        let victim = cs
            .iter()
            .copied()
            .find(|c| !c.raw_link(1).is_null() && c.link(2).is_some())
            .expect("a tree of 16 has a node with two children");
        let right = victim.link(2).unwrap();
        let left = victim.raw_link(1);
        victim.set_raw_link(1, right.ptr().as_ptr());
        assert!(tree.remove(victim, 64).is_err());
        assert!(tree.check(&mut |_, _| Ok(())).is_err());
        victim.set_raw_link(1, left);
        tree.check(&mut |_, _| Ok(())).unwrap();
        tree.remove(victim, 64).unwrap();
        tree.check(&mut |_, _| Ok(())).unwrap();
    }
}

/// A buffer holding chunks of `sizes` bytes in address order, each
/// followed by a 16-byte gap (as if an allocated chunk were there), and
/// `room` spare bytes after the last; the chunks' places (nothing written).
fn gapped(sizes: &[usize], room: usize) -> (Vec<u128>, Vec<Chunk>) {
    let bytes: usize = sizes.iter().map(|s| s + 16).sum::<usize>() + room;
    let (keep, p) = buffer(bytes.div_ceil(16));
    let mut at = 0;
    let mut cs = Vec::new();
    for &s in sizes {
        // SAFETY: inside the buffer, sized for every chunk and gap.
        cs.push(unsafe { Chunk::new(p).forward(at) });
        at += s + 16;
    }
    (keep, cs)
}

#[test]
fn address_index_finds_the_lowest_large_enough_chunk() {
    // Free chunks of 96, 32, 160, 64, 32 bytes in address order, with
    // 16-byte gaps (as if allocated chunks were between).
    let sizes = [96usize, 32, 160, 64, 32];
    let (_keep, cs) = gapped(&sizes, 0);
    let mut addr = AddressIndex::new();
    // SAFETY: disjoint free chunks only this test uses.
    unsafe {
        for (&c, &s) in cs.iter().zip(&sizes) {
            c.write_free(s, Flags::empty());
        }
        for &c in &cs {
            addr.insert(c).unwrap();
        }
        addr.check().unwrap();
        assert_eq!(addr.lowest_at_least(0, 32), Some(cs[0]));
        assert_eq!(addr.lowest_at_least(cs[0].addr() + 16, 32), Some(cs[1]));
        assert_eq!(addr.lowest_at_least(0, 128), Some(cs[2]));
        assert_eq!(addr.lowest_at_least(cs[2].addr() + 16, 64), Some(cs[3]));
        assert_eq!(addr.lowest_at_least(0, 176), None);
        assert_eq!(addr.successor(cs[2]), Some(cs[3]));
        assert_eq!(addr.successor(cs[4]), None);
        for &c in &cs {
            addr.remove(c).unwrap();
        }
        assert!(addr.is_empty());
    }
}

#[test]
fn bins_keep_the_most_recent_first_and_the_tree_the_rest() {
    // Free chunks (with 16-byte gaps): 48, 48, 64, LARGEST_BINNED + 16,
    // LARGEST_BINNED + 16 bytes.
    let sizes = [48usize, 48, 64, LARGEST_BINNED + 16, LARGEST_BINNED + 16];
    let (_keep, cs) = gapped(&sizes, 0);
    let mut index = Binned::<BySize>::new();
    // SAFETY: disjoint free chunks only this test uses.
    unsafe {
        for (&c, &s) in cs.iter().zip(&sizes) {
            c.write_free(s, Flags::empty());
            index.insert(c).unwrap();
        }
        index.check().unwrap();
        // The first large chunk added is the spare, the other in the tree.
        assert_eq!(
            (index.bins().len(), index.tree().len(), index.len()),
            (3, 1, 5)
        );
        // 48 bytes: bin 1, the second 48 (inserted last) first.
        assert_eq!(index.bins().first_at_or_above(1), Some(cs[1]));
        assert_eq!(index.bins().next(cs[1]), Some(cs[0]));
        assert_eq!(index.bins().first_at_or_above(2), Some(cs[2]));
        assert_eq!(index.bins().first_at_or_above(3), None);
        assert_eq!(index.first(), Some(cs[3]), "lowest address of equals");
        assert_eq!(index.tree().first(), Some(cs[4]));
        assert_eq!(
            index.after(Key {
                addr: cs[3].addr(),
                size: LARGEST_BINNED + 16
            }),
            Some(cs[4])
        );
        // The older 48 grows to 64 (coalesced): it goes to the head of bin 2.
        cs[0].write_free(64, Flags::empty());
        index.resize(cs[0], 48).unwrap();
        assert_eq!(index.bins().first_at_or_above(2), Some(cs[0]));
        // A large chunk split down to a binned size moves to its bin; a
        // binned one merged past the bins moves to the tree.
        let rest = cs[3].forward(LARGEST_BINNED - 32);
        index.replace(cs[3], rest, 48).unwrap();
        rest.write_free(48, Flags::empty());
        assert_eq!(index.bins().first_at_or_above(0), Some(rest));
        cs[2].write_free(LARGEST_BINNED + 32, Flags::empty());
        index.resize(cs[2], 64).unwrap();
        // The spare went to a bin, so the chunk merged past the bins is the
        // new spare; in order it comes after the smaller tree member.
        assert_eq!(index.tree().len(), 1);
        assert_eq!(index.first(), Some(cs[4]));
        assert_eq!(
            index.after(Key {
                addr: cs[4].addr(),
                size: LARGEST_BINNED + 16
            }),
            Some(cs[2])
        );
        index.check().unwrap();
        assert!(index.contains(cs[2]) && index.contains(rest) && !index.contains(cs[3]));
        for c in [cs[0], cs[1], cs[2], cs[4], rest] {
            index.remove(c).unwrap();
        }
        index.check().unwrap();
    }
    assert!(index.is_empty());
}

/// A tree member whose change of size puts it before the spare in the
/// order becomes the spare, the spare taking its place in the tree; one
/// that stays after it stays in the tree. Under both orders the walks see
/// every chunk where its size puts it.
#[test]
fn a_chunk_that_changes_to_sort_before_the_spare_becomes_the_spare() {
    fn case<O: Order>(grow_to: usize, swaps: bool) {
        // Three large chunks (16-byte gaps): the spare (added first) of
        // 4 * L, then two of L + 16 in the tree; the second grows.
        const L: usize = LARGEST_BINNED;
        let sizes = [4 * L, L + 16, L + 16];
        let (_keep, cs) = gapped(&sizes, 8 * L);
        let mut index = Binned::<O>::new();
        // SAFETY: disjoint free chunks only this test uses; the last one
        // grows into the buffer's spare room after it.
        unsafe {
            for (&c, &s) in cs.iter().zip(&sizes) {
                c.write_free(s, Flags::empty());
                index.insert(c).unwrap();
            }
            assert!(index.tree().contains(cs[1], L + 16) && index.tree().contains(cs[2], L + 16));
            cs[2].write_free(grow_to, Flags::empty());
            index.resize(cs[2], L + 16).unwrap();
            index.check().unwrap();
            assert_eq!(
                index.tree().contains(cs[0], 4 * L),
                swaps,
                "grow to {grow_to}"
            );
            assert_eq!(
                !index.tree().contains(cs[2], grow_to),
                swaps,
                "grow to {grow_to}"
            );
            // The order sees all three where their sizes put them.
            let mut seen = Vec::new();
            let mut next = index.first();
            while let Some(c) = next {
                let size = c.size();
                seen.push((c, size));
                next = index.after(Key {
                    addr: c.addr(),
                    size,
                });
            }
            let mut expected = std::vec![(cs[0], 4 * L), (cs[1], L + 16), (cs[2], grow_to)];
            expected.sort_by(|a, b| {
                let (ka, kb) = (
                    Key {
                        addr: a.0.addr(),
                        size: a.1,
                    },
                    Key {
                        addr: b.0.addr(),
                        size: b.1,
                    },
                );
                if O::before(ka, kb) {
                    core::cmp::Ordering::Less
                } else {
                    core::cmp::Ordering::Greater
                }
            });
            assert_eq!(seen, expected, "grow to {grow_to}");
            for &c in &cs {
                index.remove(c).unwrap();
            }
            index.check().unwrap();
        }
        assert!(index.is_empty());
    }
    // Smallest first: growing but still smaller than the spare, it comes
    // before it; grown past it, it does not.
    case::<BySize>(2 * LARGEST_BINNED, true);
    case::<BySize>(5 * LARGEST_BINNED, false);
    // Largest first: only growing past the spare puts it in front.
    case::<ByLargest>(2 * LARGEST_BINNED, false);
    case::<ByLargest>(5 * LARGEST_BINNED, true);
}

#[test]
fn bin_searches_cross_bitmap_words_like_a_linear_scan() {
    use crate::bins::{size_of_bin, BINS};
    // One chunk in each of a few bins spread over the bitmap's words (and
    // its first and last bins), pushed and removed in turn; after every
    // change each search agrees with a scan of the occupied bins.
    let bins_used = [0, 1, 63, 64, 65, 130, 200, 320, 447, 448, 510, BINS - 1];
    let total: usize = bins_used.iter().map(|&b| size_of_bin(b)).sum();
    let (_keep, p) = buffer(total / 16);
    let mut at = 0;
    let chunks: Vec<(usize, Chunk)> = bins_used
        .iter()
        .map(|&b| {
            // SAFETY: disjoint slots of a buffer only this test uses.
            let c = unsafe { Chunk::new(p).forward(at) };
            at += size_of_bin(b);
            (b, c)
        })
        .collect();
    // Every bin natively. Under Miri (where the sweep of all 1024 bins
    // after each of the 24 changes took minutes) the bins where an answer
    // can change: each used bin and its neighbours, and the first and last
    // bin of each bitmap word.
    let probes: Vec<usize> = if cfg!(miri) {
        let mut p = std::collections::BTreeSet::new();
        for &b in &bins_used {
            p.extend([b.saturating_sub(1), b, (b + 1).min(BINS - 1)]);
        }
        for w in 0..BINS / 64 {
            p.extend([w * 64, w * 64 + 63]);
        }
        p.into_iter().collect()
    } else {
        (0..BINS).collect()
    };
    let mut bins = Bins::new();
    let mut occupied = std::collections::BTreeSet::new();
    let agree = |bins: &Bins, occupied: &std::collections::BTreeSet<usize>| {
        bins.check().unwrap();
        for &probe in &probes {
            assert_eq!(
                bins.first_bin_at_or_above(probe),
                occupied.range(probe..).next().copied(),
                "first at or above {probe}"
            );
            assert_eq!(
                bins.last_bin_at_or_below(probe),
                occupied.range(..=probe).next_back().copied(),
                "last at or below {probe}"
            );
        }
    };
    // SAFETY: each chunk is a free chunk of its bin's size in the buffer.
    unsafe {
        for &(b, c) in &chunks {
            c.write_free(size_of_bin(b), Flags::empty());
            bins.push(c, size_of_bin(b));
            occupied.insert(b);
            agree(&bins, &occupied);
        }
        for &(b, c) in chunks
            .iter()
            .rev()
            .step_by(2)
            .chain(chunks.iter().step_by(2))
        {
            if occupied.remove(&b) {
                bins.remove(c, size_of_bin(b)).unwrap();
                agree(&bins, &occupied);
            }
        }
    }
    assert!(bins.is_empty());
}

#[test]
fn bins_refuse_to_unlink_through_a_damaged_link() {
    let (_keep, p) = buffer(64);
    // SAFETY: 64-byte slots of a buffer only this test uses.
    let cs: Vec<Chunk> = (0..4)
        .map(|i| unsafe { Chunk::new(p).forward(i * 64) })
        .collect();
    let mut bins = Bins::new();
    // SAFETY: as above; the damage is done to the test's own memory.
    unsafe {
        for &c in &cs {
            c.write_free(48, Flags::empty());
            bins.push(c, 48);
        }
        // A misaligned next link, then one pointing outside every member,
        // then one to a member that does not point back: all refused, and
        // nothing changed.
        let next = cs[2].raw_link(1);
        for bad in [
            next.map_addr(|a| a + 8),
            next.map_addr(|a| a + 4096),
            cs[0].ptr().as_ptr(),
        ] {
            cs[2].set_raw_link(1, bad);
            assert_eq!(
                bins.remove(cs[2], 48),
                Err(Corruption::CorruptFreeList { addr: cs[2].addr() })
            );
            assert!(bins.check().is_err());
        }
        cs[2].set_raw_link(1, next);
        bins.check().unwrap();
        // Not a member (the head of another bin is not it): refused.
        let stranger = Chunk::new(p).forward(512);
        stranger.write_free(48, Flags::empty());
        stranger.set_link(1, None);
        stranger.set_link(2, None);
        assert!(bins.remove(stranger, 48).is_err());
        for &c in &cs {
            bins.remove(c, 48).unwrap();
        }
    }
    bins.check().unwrap();
    assert!(bins.is_empty());
}

#[test]
fn address_index_against_a_model() {
    // Random inserts, removes, resizes and replaces in `SLOTS` slots, the
    // top moving up and down among them: after every step the index holds
    // exactly the model's chunks, passes its check, and answers
    // `lowest_at_least` as a scan of the model does.
    let (_keep, p) = buffer(SLOTS * SLOT / 16);
    let base = p.as_ptr() as usize;
    let mut rng = Rng(7);
    let mut index = AddressIndex::new();
    let mut members: Vec<Option<(Chunk, usize)>> = std::vec![None; SLOTS];
    let size = |rng: &mut Rng| 32 + 16 * rng.below((SLOT - 48) / 16 + 1);
    for step in 0..STEPS {
        let i = rng.below(SLOTS);
        // SAFETY: every chunk lies inside its own slot of the buffer, which
        // only this test uses.
        unsafe {
            let slot = Chunk::new(p).forward(i * SLOT);
            match members[i] {
                None => {
                    let c = if rng.below(2) == 0 {
                        slot
                    } else {
                        slot.forward(16)
                    };
                    let s = size(&mut rng);
                    c.write_free(s, Flags::empty());
                    index.insert(c).unwrap();
                    assert!(index.insert(c).is_err(), "step {step}: inserted twice");
                    members[i] = Some((c, s));
                }
                Some((c, s)) => match rng.below(3) {
                    0 => {
                        index.remove(c).unwrap();
                        members[i] = None;
                    }
                    1 => {
                        let n = size(&mut rng);
                        c.write_free(n, Flags::empty());
                        index.resize(c, s).unwrap();
                        members[i] = Some((c, n));
                    }
                    _ => {
                        let new = if c == slot { slot.forward(16) } else { slot };
                        let n = size(&mut rng);
                        index.replace(c, new, n).unwrap();
                        new.write_free(n, Flags::empty());
                        members[i] = Some((new, n));
                    }
                },
            }
        }
        index.check().unwrap_or_else(|v| panic!("step {step}: {v}"));
        let mut model: Vec<(Chunk, usize)> = members.iter().flatten().copied().collect();
        let mut seen = Vec::new();
        index.for_each(&mut |c, s| seen.push((c, s)));
        seen.sort_by_key(|(c, _)| c.addr());
        assert_eq!(seen, model, "step {step}: members");
        assert_eq!(index.len(), model.len());
        let from = base + 16 * rng.below(SLOTS * SLOT / 16);
        let need = 32 + 16 * rng.below(SLOT / 16);
        model.retain(|&(c, s)| c.addr() >= from && s >= need);
        assert_eq!(
            index.lowest_at_least(from, need),
            model.first().map(|m| m.0),
            "step {step}: lowest_at_least({from:#x}, {need})"
        );
    }
}

#[test]
fn address_index_keeps_the_highest_chunk_out_of_the_trees() {
    let (_keep, p) = buffer(64);
    // SAFETY: 128-byte slots of a buffer only this test uses.
    let cs: Vec<Chunk> = (0..8)
        .map(|i| unsafe { Chunk::new(p).forward(i * 128) })
        .collect();
    let mut index = AddressIndex::new();
    // SAFETY: disjoint free chunks only this test uses.
    unsafe {
        for (i, &c) in cs.iter().enumerate() {
            c.write_free(if i % 2 == 0 { 32 } else { 96 }, Flags::empty());
        }
        // Out of order: the top moves up as higher chunks arrive.
        for i in [3, 0, 7, 1, 5] {
            index.insert(cs[i]).unwrap();
            index.check().unwrap();
        }
        assert_eq!(index.len(), 5);
        assert!(index.insert(cs[7]).is_err(), "the top is already a member");
        assert_eq!(index.lowest_at_least(0, 96), Some(cs[1]));
        assert_eq!(index.lowest_at_least(cs[5].addr() + 16, 96), Some(cs[7]));
        assert_eq!(index.successor(cs[5]), Some(cs[7]));
        // Removing the top promotes the highest tree member.
        index.remove(cs[7]).unwrap();
        index.check().unwrap();
        assert_eq!(index.lowest_at_least(cs[3].addr() + 16, 96), Some(cs[5]));
        assert_eq!(index.successor(cs[3]), Some(cs[5]));
        // The top split from its front and grown in place.
        let rest = cs[5].forward(32);
        index.replace(cs[5], rest, 64).unwrap();
        rest.write_free(64, Flags::empty());
        rest.write_free(96, Flags::empty());
        index.resize(rest, 64).unwrap();
        index.check().unwrap();
        assert_eq!(index.lowest_at_least(cs[3].addr() + 16, 96), Some(rest));
        let mut seen = Vec::new();
        index.for_each(&mut |c, _| seen.push(c));
        assert_eq!(seen, [cs[0], cs[1], cs[3], rest]);
        for c in [cs[0], rest, cs[1], cs[3]] {
            index.remove(c).unwrap();
            index.check().unwrap();
        }
    }
    assert!(index.is_empty());
}
