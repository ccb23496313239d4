use super::*;
use core::ptr::NonNull;
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
        c.set_prev_free_allocated(false, 7);
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
