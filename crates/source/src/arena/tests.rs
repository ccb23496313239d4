use super::*;
use crate::test_util::{assert_usable, end, start, HUGE};
use std::vec;
use std::vec::Vec;

/// A 16-aligned heap buffer of `len` bytes (as `u128`s).
fn aligned_buffer(len: usize) -> Vec<u128> {
    vec![0u128; len.div_ceil(16)]
}

#[test]
fn first_acquire_hands_out_the_whole_region() {
    let mut buf = aligned_buffer(256);
    // SAFETY: `buf` outlives the arena and is only used through it.
    let arena = unsafe { Arena::from_raw_parts(buf.as_mut_ptr().cast(), 256) };
    assert_eq!(arena.capacity(), 256);
    let region = arena.acquire(10).unwrap();
    assert_eq!(start(region), buf.as_ptr() as usize);
    assert_eq!(region.len(), 256);
    assert_usable(region, 10);
    assert!(arena.is_lent());
    assert_eq!(arena.check(), Ok(()));
}

#[test]
fn exhausted_after_first_acquire() {
    let mut buf = aligned_buffer(128);
    // SAFETY: `buf` outlives the arena and is only used through it.
    let arena = unsafe { Arena::from_raw_parts(buf.as_mut_ptr().cast(), 128) };
    let _region = arena.acquire(0).unwrap();
    for min_len in [0, 1, 16, 128, 4096] {
        assert!(arena.acquire(min_len).is_none());
    }
    assert_eq!(arena.check(), Ok(()));
}

#[test]
fn too_large_request_is_none_and_leaves_region_available() {
    let mut buf = aligned_buffer(128);
    // SAFETY: `buf` outlives the arena and is only used through it.
    let arena = unsafe { Arena::from_raw_parts(buf.as_mut_ptr().cast(), 128) };
    assert!(arena.acquire(129).is_none());
    for huge in HUGE {
        assert!(arena.acquire(huge).is_none());
    }
    assert!(!arena.is_lent());
    assert_eq!(arena.acquire(128).map(|r| r.len()), Some(128));
}

#[test]
fn whole_region_release_then_reacquire() {
    let mut buf = aligned_buffer(96);
    // SAFETY: `buf` outlives the arena and is only used through it.
    let arena = unsafe { Arena::from_raw_parts(buf.as_mut_ptr().cast(), 96) };
    let first = arena.acquire(96).unwrap();
    // SAFETY: `first` came from `arena` and holds nothing in use.
    assert!(unsafe { arena.release(first) });
    assert!(!arena.is_lent());
    let second = arena.acquire(16).unwrap();
    assert_eq!(second, first);
    assert_usable(second, 16);
    assert_eq!(arena.check(), Ok(()));
}

#[test]
fn release_declines_parts_and_unlent_regions() {
    let mut buf = aligned_buffer(96);
    // SAFETY: `buf` outlives the arena and is only used through it.
    let arena = unsafe { Arena::from_raw_parts(buf.as_mut_ptr().cast(), 96) };
    let region = arena.acquire(16).unwrap();
    let head = NonNull::slice_from_raw_parts(region.cast::<u8>(), 32);
    // SAFETY: `head` lies inside `region` and nothing in it is in use.
    assert!(!unsafe { arena.release(head) });
    // SAFETY: `region.add(32)` stays inside the region.
    let tail = NonNull::slice_from_raw_parts(unsafe { region.cast::<u8>().add(32) }, 64);
    // SAFETY: as above.
    assert!(!unsafe { arena.release(tail) });
    assert!(arena.is_lent(), "a declined release leaves the region lent");
    // SAFETY: the whole region, from `arena`.
    assert!(unsafe { arena.release(region) });
    // Releasing it a second time is declined: it is no longer lent.
    // (The contract forbids this call, but the arena must not corrupt
    // itself if a heap gets it wrong.)
    // SAFETY: the region is not used by anyone.
    assert!(!unsafe { arena.release(region) });
    assert_eq!(arena.check(), Ok(()));
}

/// An arena over an odd, misaligned slice of a larger buffer: everything it
/// hands out lies inside the slice, and the guard bytes around it survive
/// a full write of the region.
#[test]
fn odd_misaligned_region_never_touches_bytes_outside() {
    const GUARD: u8 = 0xC3;
    let mut buf = aligned_buffer(1040);
    let bytes: *mut u8 = buf.as_mut_ptr().cast();
    // SAFETY: `buf` is 1040 bytes long.
    unsafe { bytes.write_bytes(GUARD, 1040) };
    let (offset, len) = (3, 1001);
    // SAFETY: 3..1004 lies inside `buf`, which outlives the arena and is
    // only used through it.
    let arena = unsafe { Arena::from_raw_parts(bytes.add(offset), len) };
    let lo = bytes as usize + offset;
    let hi = lo + len;
    let region = arena.acquire(1).unwrap();
    assert!(start(region) >= lo && end(region) <= hi);
    // Trimmed to 16 at both ends: starts at 16, ends at 992 (the largest
    // multiple of 16 not above 1004).
    assert_eq!(start(region) - bytes as usize, 16);
    assert_eq!(end(region) - bytes as usize, 992);
    assert_eq!(arena.capacity(), 976);
    assert_usable(region, 1);
    // SAFETY: `buf` is 1040 bytes long and no region is in use any more.
    let all = unsafe { core::slice::from_raw_parts(bytes, 1040) };
    let guard_before = &all[..16];
    let guard_after = &all[992..];
    assert!(
        guard_before.iter().all(|&b| b == GUARD),
        "front trimmed bytes written"
    );
    assert!(
        guard_after.iter().all(|&b| b == GUARD),
        "tail trimmed bytes written"
    );
}

#[test]
fn region_with_no_aligned_sixteen_bytes_is_never_handed_out() {
    let mut buf = aligned_buffer(64);
    let bytes: *mut u8 = buf.as_mut_ptr().cast();
    // 1..31 contains no aligned 16-byte run: 16..32 would end past 31.
    // SAFETY: inside `buf`, which outlives the arena.
    let arena = unsafe { Arena::from_raw_parts(bytes.add(1), 30) };
    assert_eq!(arena.capacity(), 0);
    assert!(arena.acquire(0).is_none());
    assert!(!arena.is_lent());
    assert_eq!(arena.check(), Ok(()));
    // Empty and null regions likewise.
    // SAFETY: a zero-length region is trivially valid.
    let empty = unsafe { Arena::from_raw_parts(bytes, 0) };
    assert!(empty.acquire(0).is_none());
    // SAFETY: a null arena never touches memory.
    let null = unsafe { Arena::from_raw_parts(core::ptr::null_mut(), 4096) };
    assert!(null.acquire(0).is_none());
    assert_eq!(null.capacity(), 0);
}

#[test]
fn checked_constructors_reject_with_the_right_error() {
    let mut buf = aligned_buffer(256);
    let bytes: *mut u8 = buf.as_mut_ptr().cast();
    // SAFETY: for all the calls below, each range lies inside `buf`, which outlives
    // the arenas; a rejected region is never read.
    unsafe {
        assert_eq!(
            Arena::try_from_raw_parts(core::ptr::null_mut(), 256).err(),
            Some(ArenaError::Null)
        );
        assert_eq!(
            Arena::try_from_raw_parts(bytes.add(3), 200).err(),
            Some(ArenaError::Misaligned {
                addr: bytes as usize + 3
            })
        );
        assert_eq!(
            Arena::try_from_raw_parts(bytes.add(8), 200).err(),
            Some(ArenaError::Misaligned {
                addr: bytes as usize + 8
            })
        );
        assert_eq!(
            Arena::try_from_raw_parts(bytes, 63).err(),
            Some(ArenaError::TooSmall { len: 63 })
        );
        assert_eq!(
            Arena::try_from_raw_parts(bytes, 0).err(),
            Some(ArenaError::TooSmall { len: 0 })
        );
        // Null is reported before size, misalignment before size.
        assert_eq!(
            Arena::try_from_raw_parts(core::ptr::null_mut(), 0).err(),
            Some(ArenaError::Null)
        );
        assert!(matches!(
            Arena::try_from_raw_parts(bytes.add(1), 0),
            Err(ArenaError::Misaligned { .. })
        ));
        let ok = Arena::try_from_raw_parts(bytes.add(16), 70).unwrap();
        // 70 bytes: the tail is trimmed to 64.
        assert_eq!(ok.capacity(), 64);
        assert_usable(ok.acquire(64).unwrap(), 64);
    }
}

#[test]
fn try_new_checks_static_memory() {
    let mut vec = core::mem::ManuallyDrop::new(vec![MaybeUninit::<u8>::uninit(); 8]);
    let (ptr, len, cap) = (vec.as_mut_ptr(), vec.len(), vec.capacity());
    // SAFETY: the Vec's buffer is never freed while `mem` is used (it is
    // reclaimed below, after the arena is gone).
    let mem: &'static mut [MaybeUninit<u8>] = unsafe { core::slice::from_raw_parts_mut(ptr, len) };
    let addr = ptr as usize;
    let err = Arena::try_new(mem).err().unwrap();
    // An 8-byte Vec<u8> may or may not be 16-aligned; both answers are right.
    if addr % 16 == 0 {
        assert_eq!(err, ArenaError::TooSmall { len });
    } else {
        assert_eq!(err, ArenaError::Misaligned { addr });
    }
    // Reclaim the buffer so Miri's leak check stays quiet.
    // SAFETY: `ptr`, `len` and `cap` describe the Vec's buffer, which nothing
    // refers to any more (the rejected arena was never built).
    drop(unsafe { Vec::from_raw_parts(ptr, len, cap) });
}

#[test]
fn error_messages() {
    assert_eq!(std::format!("{}", ArenaError::Null), "arena region is null");
    assert_eq!(
        std::format!("{}", ArenaError::TooSmall { len: 8 }),
        "arena region of 8 bytes is smaller than the minimum of 64 bytes"
    );
    assert_eq!(
        std::format!("{}", ArenaError::Misaligned { addr: 0x10 }),
        "arena region at 0x10 is not aligned to 16 bytes"
    );
}

#[test]
fn constructors_are_const() {
    let empty = const {
        // SAFETY: a null arena never touches memory.
        unsafe { Arena::from_raw_parts(core::ptr::null_mut(), 0) }
    };
    assert!(empty.acquire(0).is_none());
}

#[test]
fn static_memory_is_aligned_and_taken_once() {
    static MEMORY: StaticMemory<100> = StaticMemory::new();
    let ptr = MEMORY.as_mut_ptr();
    assert_eq!(ptr as usize % REGION_ALIGN, 0);
    let mem = MEMORY.take().unwrap();
    assert_eq!((mem.as_mut_ptr().cast::<u8>(), mem.len()), (ptr, 100));
    assert!(MEMORY.take().is_none());
    let arena = Arena::try_new(mem).unwrap();
    // 100 bytes: the tail is trimmed to 96.
    assert_eq!(arena.capacity(), 96);
    assert_usable(arena.acquire(96).unwrap(), 96);
}
