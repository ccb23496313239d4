//! Unit tests: the header logic (also under Miri), then the C functions
//! called in-process (not under Miri: they reach `mmap`, thread-locals and
//! `pthread_atfork`). In a test build the functions are not exported
//! (`#[no_mangle]` is off under `cfg(test)`), so the test harness itself
//! keeps the C library's `malloc`.

use crate::header::{memalign_align, page_round, posix_align_ok, Bad, Block, Header, Plan};
use crate::header::{HEADER, MIN_ALIGN};

const KEY: u64 = 0x005e_ed0f_f5ee_d0ff;

#[test]
fn plan_places_the_user_pointer_after_a_header() {
    use crate::header::BARE_MAX;
    for align in [1, 2, 8, 16, 32, 64, 4096, 1 << 20] {
        for size in [0, 1, 15, 16, 17, BARE_MAX, BARE_MAX + 1, 1000, 1 << 20] {
            let plan = Plan::new(size, align).unwrap();
            plan.check(size).unwrap();
            if align <= MIN_ALIGN && size <= BARE_MAX {
                // Small: bare, the user pointer the block's start.
                assert!(plan.is_bare());
                assert_eq!(plan.offset, 0);
                assert_eq!(plan.layout.align(), MIN_ALIGN);
                assert_eq!(plan.layout.size(), size.max(1));
            } else {
                assert!(plan.offset >= HEADER);
                assert_eq!(plan.offset, align.max(MIN_ALIGN));
                assert_eq!(plan.layout.size(), size.max(1) + plan.offset);
            }
        }
    }
}

#[test]
fn plan_refuses_overflow_and_bad_alignment() {
    assert!(Plan::new(usize::MAX, 16).is_none());
    assert!(Plan::new(usize::MAX - 15, 16).is_none());
    assert!(
        Plan::new(isize::MAX as usize, 16).is_none(),
        "beyond Layout's limit"
    );
    assert!(Plan::new(10, 0).is_none());
    assert!(Plan::new(10, 24).is_none());
    assert!(Plan::new(10, 1 << (usize::BITS - 1)).is_none());
}

#[test]
fn live_header_round_trips() {
    for (addr, len, shift, direct) in [
        (0x1000, 16, 4, false),
        (0x7f00_0000_1230, 1040, 4, true),
        (0x10_0000, 1 << 21, 20, false),
    ] {
        let h = Header::live(KEY, addr, len, shift, direct);
        assert_eq!(
            h.decode(KEY, addr),
            Ok(Block {
                len,
                shift,
                direct,
                small: false,
                bare: false
            })
        );
        // Another key, another address, another length: not ours.
        assert_eq!(h.decode(KEY ^ 1, addr), Err(Bad::Unknown));
        assert_eq!(h.decode(KEY, addr + 16), Err(Bad::Unknown));
        let longer = Header { len: len + 16, ..h };
        assert_eq!(longer.decode(KEY, addr), Err(Bad::Unknown));
    }
}

#[test]
fn freed_header_reads_as_a_double_free_even_with_len_overwritten() {
    let f = Header::freed(KEY, 0x4000);
    assert_eq!(f.decode(KEY, 0x4000), Err(Bad::Freed));
    // A free-list link written over `len` by the stack changes nothing.
    let linked = Header {
        len: 0xdead_beef,
        ..f
    };
    assert_eq!(linked.decode(KEY, 0x4000), Err(Bad::Freed));
    // Freed at another address: unknown here.
    assert_eq!(f.decode(KEY, 0x4010), Err(Bad::Unknown));
}

#[test]
fn every_single_bit_flip_of_a_live_header_is_caught() {
    let (addr, len, shift) = (0x7f12_3456_7890, 2048, 6);
    let h = Header::live(KEY, addr, len, shift, false);
    for bit in 0..usize::BITS {
        let t = Header {
            tag: h.tag ^ (1 << bit),
            ..h
        };
        assert!(t.decode(KEY, addr).is_err(), "tag bit {bit}");
        let l = Header {
            len: h.len ^ (1 << bit),
            ..h
        };
        assert!(l.decode(KEY, addr).is_err(), "len bit {bit}");
    }
}

#[test]
fn sealed_headers_of_impossible_shapes_are_not_blocks() {
    // Correctly sealed, but no stack returns these: refused, so that a
    // decoded block always has a valid layout (MALLOC-H1).
    let addr = 0x7f00_0000_1000;
    for (len, shift) in [
        (8, 4),                                    // shorter than its alignment
        (usize::MAX, 4),                           // beyond `Layout`'s limit
        (isize::MAX as usize + 2 - (1 << 20), 20), // one past it
        (1 << 10, 3),                              // alignment below 16
        (1 << 63, 63),                             // alignment beyond 1 << 62
    ] {
        let h = Header::live(KEY, addr, len, shift, false);
        assert_eq!(h.decode(KEY, addr), Err(Bad::Unknown), "{len} {shift}");
    }
    // The largest shape that is allowed.
    let len = isize::MAX as usize + 1 - (1 << 20);
    let h = Header::live(KEY, addr, len, 20, false);
    let b = h.decode(KEY, addr).unwrap();
    assert!(b.layout().is_some());
}

#[test]
fn zeroed_and_all_ones_headers_are_not_blocks() {
    for word in [0, usize::MAX] {
        let h = Header {
            len: word,
            tag: word,
        };
        assert_eq!(h.decode(KEY, 0x1000), Err(Bad::Unknown));
    }
}

#[test]
fn block_geometry() {
    let b = Block {
        len: 4096 + 100,
        shift: 12,
        direct: false,
        small: false,
        bare: false,
    };
    assert_eq!((b.align(), b.usable()), (4096, 100));
    let bare = Block { bare: true, ..b };
    assert_eq!((bare.offset(), bare.usable()), (0, 4196));
    let l = b.layout().unwrap();
    assert_eq!((l.size(), l.align()), (4196, 4096));
}

#[test]
fn alignment_helpers() {
    assert_eq!(memalign_align(1), Some(16));
    assert_eq!(memalign_align(33), Some(64));
    assert_eq!(memalign_align(1 << 40), Some(1 << 40));
    assert_eq!(memalign_align((1 << (usize::BITS - 1)) + 1), None);
    assert!(posix_align_ok(16) && !posix_align_ok(12) && !posix_align_ok(2));
    assert_eq!(page_round(1, 4096), Some(4096));
    assert_eq!(page_round(8192, 4096), Some(8192));
}

#[test]
fn quickcheck_live_headers_decode_to_what_was_encoded() {
    fn prop(key: u64, addr: usize, len: usize, shift: u8, direct: bool) -> bool {
        let shift = 4 + u32::from(shift) % 40;
        let addr = addr & !((1usize << shift) - 1) & !15;
        // MALLOC-H1's shape: at least the alignment, and a valid `Layout` with it.
        let len = len
            .max(1 << shift)
            .min(isize::MAX as usize + 1 - (1 << shift));
        let h = Header::live(key, addr, len, shift, direct);
        let small = Header::live_small(key, addr, len, shift);
        h.decode(key, addr)
            == Ok(Block {
                len,
                shift,
                direct,
                small: false,
                bare: false,
            })
            && small.decode(key, addr)
                == Ok(Block {
                    len,
                    shift,
                    direct: true,
                    small: true,
                    bare: false,
                })
            // The route is sealed in: the same header with another route's
            // low byte is no block.
            && Header { tag: small.tag & !0x40, ..small }.decode(key, addr) == Err(Bad::Unknown)
            && Header { tag: h.tag | 0x40, ..h }.decode(key, addr) == Err(Bad::Unknown)
            && Header::freed(key, addr).decode(key, addr) == Err(Bad::Freed)
    }
    let tests = if cfg!(miri) { 20 } else { 2000 };
    quickcheck::QuickCheck::new()
        .tests(tests)
        .quickcheck(prop as fn(u64, usize, usize, u8, bool) -> bool);
}

// ---------------------------------------------------------------------------
// The C functions, in-process
// ---------------------------------------------------------------------------

#[cfg(all(feature = "std", target_os = "linux", not(miri)))]
mod c_functions {
    use crate::shim::*;
    use core::ffi::c_void;
    use core::ptr::null_mut;
    use freespace_core::HeapSummary;
    use std::sync::Mutex;
    use std::vec::Vec;

    /// Tests that measure the heap run one at a time.
    static EXCLUSIVE: Mutex<()> = Mutex::new(());

    fn exclusive() -> std::sync::MutexGuard<'static, ()> {
        EXCLUSIVE.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn errno() -> i32 {
        // SAFETY: this thread's errno.
        unsafe { *libc::__errno_location() }
    }

    fn set_errno(v: i32) {
        // SAFETY: this thread's errno.
        unsafe { *libc::__errno_location() = v };
    }

    /// The write-after-free check never fires on correct use: blocks of
    /// one size class freed and reused on the fast path, their first bytes
    /// written while live, interleaved with aligned blocks (which the
    /// magazines do not cache today; if they ever do, such a block's header
    /// sits elsewhere in the same memory, and the check must not read a
    /// stale one), `calloc`,
    /// in-place and moving `realloc`, and slow calls (full and empty
    /// magazines). A false report would abort this test process.
    #[test]
    fn write_after_free_check_has_no_false_alarm() {
        let _only = exclusive();
        /// Turns the opt-in check on for this test and off after it.
        struct On;
        impl Drop for On {
            fn drop(&mut self) {
                crate::set_reuse_check(false);
            }
        }
        crate::set_reuse_check(true);
        let _on = On;
        let mut rng = freespace_testkit::Rng::new(0x2545_f491_4f6c_dd1d);
        let mut next = move || rng.next() as usize;
        let mut live: Vec<*mut c_void> = Vec::new();
        // SAFETY: C calls on blocks this test allocated, each freed once,
        // written only within the size asked for.
        unsafe {
            for _ in 0..200_000 {
                let r = next();
                if live.len() < 8 || r % 3 != 0 {
                    let size = 8 + (r >> 8) % 40;
                    let p = match (r >> 16) % 8 {
                        0 => aligned_alloc(32, size),
                        1 => memalign(64, size),
                        2 => calloc(1, size),
                        3 if !live.is_empty() => {
                            let i = (r >> 24) % live.len();
                            let q = realloc(live.swap_remove(i), size);
                            assert!(!q.is_null());
                            q
                        }
                        _ => malloc(size),
                    };
                    assert!(!p.is_null());
                    p.cast::<u8>().write_bytes(r as u8, size);
                    live.push(p);
                } else {
                    let i = (r >> 24) % live.len();
                    free(live.swap_remove(i));
                }
            }
            for p in live {
                free(p);
            }
        }
        check().unwrap();
    }

    #[test]
    fn malloc_zero_is_unique_and_freeable() {
        let _only = exclusive();
        // SAFETY: C calls on blocks this test allocated, each freed once and
        // used only within its size.
        unsafe {
            let ps: Vec<*mut c_void> = (0..100).map(|_| malloc(0)).collect();
            for (i, p) in ps.iter().enumerate() {
                assert!(!p.is_null());
                assert_eq!(*p as usize % 16, 0);
                assert!(!ps[..i].contains(p), "malloc(0) returned a pointer twice");
            }
            for p in ps {
                free(p);
            }
            free(null_mut());
        }
    }

    /// Runs `call`, which must fail with null and `errno = code`.
    fn fails(what: &str, code: i32, call: impl FnOnce() -> *mut c_void) {
        set_errno(0);
        assert!(call().is_null(), "{what}");
        assert_eq!(errno(), code, "{what}");
    }

    #[test]
    fn failures_are_null_with_enomem() {
        let _only = exclusive();
        // Every call below: C allocation calls without pointer arguments;
        // each must fail, so there is nothing to free.
        // SAFETY: as said.
        fails("malloc(SIZE_MAX)", libc::ENOMEM, || unsafe {
            malloc(usize::MAX)
        });
        // SAFETY: as above.
        fails("malloc(SIZE_MAX/2)", libc::ENOMEM, || unsafe {
            malloc(usize::MAX / 2)
        });
        // More than the whole reservation (64 GiB): refused cleanly. (A
        // block larger than the buddy's largest, 2 GiB, is served:
        // `blocks_of_two_gib_and_more_are_served`.)
        // SAFETY: as above.
        fails("malloc(1 TiB)", libc::ENOMEM, || unsafe { malloc(1 << 40) });
        // SAFETY: as above.
        fails("calloc", libc::ENOMEM, || unsafe {
            calloc(usize::MAX / 2, 3)
        });
        // SAFETY: as above.
        fails("calloc", libc::ENOMEM, || unsafe {
            calloc(1 << 40, 1 << 40)
        });
        // SAFETY: as above.
        fails("aligned_alloc", libc::ENOMEM, || unsafe {
            aligned_alloc(16, usize::MAX - 8)
        });
        // SAFETY: as above.
        fails("aligned_alloc(24)", libc::EINVAL, || unsafe {
            aligned_alloc(24, 10)
        });
        // SAFETY: as above.
        fails("memalign", libc::ENOMEM, || unsafe {
            memalign(4096, usize::MAX - 4000)
        });
        // SAFETY: as above.
        fails("valloc", libc::ENOMEM, || unsafe { valloc(usize::MAX) });
        // SAFETY: as above.
        fails("pvalloc", libc::ENOMEM, || unsafe {
            pvalloc(usize::MAX - 1)
        });
    }

    /// Blocks of 2 GiB and more are served, as the C library serves them
    /// (the buddy's largest block is 2 GiB; the best-fit heap takes a
    /// region of the reservation itself), aligned or not, zeroed, shrunk.
    #[test]
    fn blocks_of_two_gib_and_more_are_served() {
        let _only = exclusive();
        const GIB: usize = 1 << 30;
        // SAFETY: C calls on blocks this test allocated, each freed once and
        // used only within its size.
        unsafe {
            for size in [2 * GIB, 3 * GIB] {
                let p = malloc(size).cast::<u8>();
                assert!(!p.is_null(), "malloc({size})");
                p.write(1);
                p.add(size - 1).write(2);
                assert!(malloc_usable_size(p.cast()) >= size);
                // Shrunk (growing would copy gigabytes the test never wrote).
                let q = realloc(p.cast(), size - GIB).cast::<u8>();
                assert!(!q.is_null(), "realloc to {}", size - GIB);
                assert_eq!(q.read(), 1);
                free(q.cast());
                let mut a = null_mut();
                assert_eq!(posix_memalign(&mut a, 1 << 16, size), 0);
                assert_eq!(a as usize % (1 << 16), 0);
                a.cast::<u8>().add(size - 1).write(3);
                free(a);
                let z = calloc(size, 1).cast::<u8>();
                assert!(!z.is_null(), "calloc({size})");
                assert_eq!(z.add(size / 2).read(), 0);
                free(z.cast());
            }
        }
        check().unwrap();
    }

    #[test]
    fn calloc_zeroes_recycled_memory() {
        let _only = exclusive();
        // SAFETY: C calls on blocks this test allocated, each freed once and
        // used only within its size.
        unsafe {
            for size in [1usize, 16, 100, 1000, 5000, 70_000] {
                let p = malloc(size).cast::<u8>();
                p.write_bytes(0xee, size);
                free(p.cast());
                let q = calloc(size, 1).cast::<u8>();
                assert!(std::slice::from_raw_parts(q, size).iter().all(|&b| b == 0));
                free(q.cast());
            }
        }
    }

    #[test]
    fn realloc_keeps_contents_while_growing_and_shrinking() {
        let _only = exclusive();
        // SAFETY: C calls on blocks this test allocated, each freed once and
        // used only within its size.
        unsafe {
            let mut p = realloc(null_mut(), 1).cast::<u8>();
            *p = 0;
            let mut size = 1usize;
            for next in [
                2,
                17,
                100,
                1023,
                1025,
                9000,
                100_000,
                1 << 21,
                50,
                3,
                40_000,
                7,
            ] {
                p = realloc(p.cast(), next).cast();
                assert!(!p.is_null() && p as usize % 16 == 0);
                let keep = size.min(next);
                for i in 0..keep {
                    assert_eq!(
                        *p.add(i),
                        (i % 251) as u8,
                        "byte {i} after realloc to {next}"
                    );
                }
                for i in 0..next {
                    *p.add(i) = (i % 251) as u8;
                }
                assert!(malloc_usable_size(p.cast()) >= next);
                size = next;
            }
            assert!(realloc(p.cast(), 0).is_null(), "realloc(p, 0) frees");
        }
    }

    #[test]
    fn failed_realloc_leaves_the_block() {
        let _only = exclusive();
        // SAFETY: C calls on blocks this test allocated, each freed once and
        // used only within its size.
        unsafe {
            let p = malloc(64).cast::<u8>();
            p.write_bytes(5, 64);
            set_errno(0);
            assert!(realloc(p.cast(), usize::MAX - 100).is_null());
            assert_eq!(errno(), libc::ENOMEM);
            assert!(reallocarray(p.cast(), usize::MAX, 4).is_null());
            assert_eq!(*p.add(63), 5);
            free(p.cast());
        }
    }

    #[test]
    fn alignments_up_to_a_megabyte() {
        let _only = exclusive();
        // SAFETY: C calls on blocks this test allocated, each freed once and
        // used only within its size.
        unsafe {
            let mut align = 1usize;
            while align <= 1 << 20 {
                for size in [0, 1, align, 3 * align + 1] {
                    let a = aligned_alloc(align, size);
                    let m = memalign(align, size);
                    let mut p = null_mut();
                    let before = 1234;
                    set_errno(before);
                    let rc = posix_memalign(&mut p, align.max(8), size);
                    assert_eq!(errno(), before, "posix_memalign never sets errno");
                    assert_eq!(rc, 0);
                    for q in [a, m, p] {
                        assert!(!q.is_null());
                        assert_eq!(q as usize % align.max(16), 0);
                        assert!(malloc_usable_size(q) >= size);
                        q.cast::<u8>().write_bytes(1, size);
                    }
                    // realloc keeps the alignment of an aligned block.
                    let r = realloc(a, size + 5000);
                    assert_eq!(r as usize % align.max(16), 0);
                    free(r);
                    free(m);
                    free(p);
                }
                align <<= 1;
            }
            let mut p = 0x55 as *mut c_void;
            for bad in [0, 4, 12, 24, 100] {
                assert_eq!(posix_memalign(&mut p, bad, 8), libc::EINVAL);
            }
            assert_eq!(p as usize, 0x55, "untouched on failure");
            let v = valloc(10);
            assert_eq!(v as usize % 4096, 0);
            let pv = pvalloc(0);
            assert!(malloc_usable_size(pv) >= 4096);
            free(v);
            free(pv);
        }
    }

    /// The thread caches' classes among the slab's, as the shim counts
    /// them, are exactly those freespace-sync's magazines have.
    #[test]
    fn cached_classes_are_the_magazines_classes() {
        crate::shim::MAP.check().unwrap();
        let classes = crate::shim::MAP.classes();
        assert_eq!(classes, freespace::stacks::GENERAL_CLASSES);
        for (c, &size) in classes.iter().enumerate() {
            let magazine = freespace_sync::class_sizes().contains(&size);
            assert_eq!(crate::shim::CACHED_CLASS[c], magazine, "{size}");
        }
        assert!(crate::shim::CACHED_CLASS.iter().filter(|&&c| c).count() >= 16);
    }

    /// Small blocks are bare (no header): `malloc(24)` has its class's 32
    /// bytes; a bare block of one of the slab's finer classes, which only
    /// the shared heap hands out (144 bytes, between the magazines' 128
    /// and 160), goes back there when freed, never into a magazine of
    /// another size (the next 150-byte blocks, popped from the 160-byte
    /// magazine, would otherwise include it, 16 bytes short).
    #[test]
    fn bare_blocks_go_back_where_their_size_belongs() {
        let _only = exclusive();
        crate::small::warm_all();
        // SAFETY: C calls on blocks this test allocated, each freed once and
        // used only within its size.
        unsafe {
            let p = malloc(24);
            assert_eq!(malloc_usable_size(p), 32);
            free(p);
            let odd = crate::shim::nested(|| malloc(130));
            assert!(crate::shim::is_direct(odd), "144 is no magazine class");
            assert_eq!(malloc_usable_size(odd), 144);
            free(odd);
            let next: Vec<*mut c_void> = (0..100).map(|_| malloc(150)).collect();
            assert!(
                !next.contains(&odd),
                "a 144-byte block served for 150 bytes"
            );
            for q in next {
                assert_eq!(malloc_usable_size(q), 160);
                free(q);
            }
        }
        crate::shim::check().unwrap();
    }

    /// A cold class's first blocks come from the small heap (a header,
    /// packed with other sizes; `free`, `realloc` and `malloc_usable_size`
    /// know them), about `COLD_BYTES` of them, and from then on its blocks
    /// are bare slab objects; both kinds free correctly in any order, and
    /// the small heap gets every block back.
    #[test]
    fn a_class_starts_in_the_small_heap_then_gets_slabs() {
        use crate::small::COLD_BYTES;
        let _only = exclusive();
        crate::small::cool_all();
        // SAFETY: C calls on blocks this test allocated, each freed once
        // and used only within its size.
        unsafe {
            let mut small = Vec::new();
            let mut bare = Vec::new();
            for i in 0..1000 {
                let p = malloc(24);
                assert!(!p.is_null() && p as usize % 16 == 0);
                p.cast::<u8>().write_bytes(i as u8, 24);
                if is_small(p) {
                    assert!(bare.is_empty(), "a small block after the class got slabs");
                    assert!(is_direct(p), "a small block never enters a magazine");
                    assert!(malloc_usable_size(p) >= 24);
                    small.push((p, i as u8));
                } else {
                    assert_eq!(malloc_usable_size(p), 32, "a bare 32-byte object");
                    bare.push((p, i as u8));
                }
            }
            // The 32-byte class served about COLD_BYTES in 64-byte steps
            // (its size and two headers) before it got slabs.
            assert_eq!(small.len(), COLD_BYTES / 64);
            // A small block grown past the small sizes moves (contents
            // kept) and is an ordinary block then.
            let (p, fill) = small.pop().unwrap();
            let q = realloc(p, 5000).cast::<u8>();
            assert!(!q.is_null() && !is_small(q.cast()));
            assert!(std::slice::from_raw_parts(q, 24).iter().all(|&b| b == fill));
            free(q.cast());
            for (p, fill) in small.into_iter().chain(bare) {
                let bytes = std::slice::from_raw_parts(p.cast::<u8>(), 24);
                assert!(bytes.iter().all(|&b| b == fill), "a block's bytes changed");
                free(p);
            }
            let used = crate::with_small_heap(|heap| HeapSummary::of(heap).used_bytes);
            assert_eq!(used, 0, "the small heap kept a block");
        }
        crate::shim::check().unwrap();
    }

    #[test]
    fn usable_size_is_real_room() {
        let _only = exclusive();
        // SAFETY: C calls on blocks this test allocated, each freed once and
        // used only within its size.
        unsafe {
            for size in [
                0usize,
                1,
                15,
                16,
                17,
                31,
                33,
                100,
                1000,
                1024,
                1025,
                5000,
                1 << 16,
            ] {
                let p = malloc(size).cast::<u8>();
                let n = malloc_usable_size(p.cast());
                assert!(n >= size, "{size}: {n}");
                p.write_bytes(0x77, n); // all of it is ours
                let q = malloc(size);
                free(q);
                free(p.cast());
            }
            assert_eq!(malloc_usable_size(null_mut()), 0);
        }
    }

    /// Allocations made from inside the shim (glibc's, during a thread's
    /// first call) come straight from the shared heap, are marked direct
    /// (those with a header; a bare block is a slab object, which either
    /// route takes back), and go back there from any later call: free,
    /// realloc (which resizes them in the shared heap, contents kept,
    /// still direct), usable size.
    #[test]
    fn nested_allocations_take_the_direct_route() {
        let _only = exclusive();
        crate::small::warm_all();
        // SAFETY: C calls on blocks this test allocated, each freed once and
        // used only within its size.
        unsafe {
            let before = settled_used_bytes();
            let blocks: Vec<(*mut c_void, usize)> = crate::shim::nested(|| {
                let mut v = Vec::new();
                for size in [0usize, 8, 24, 100, 1000, 5000] {
                    let p = malloc(size);
                    assert!(!p.is_null() && p as usize % 16 == 0);
                    // A bare block (no header) is a slab object of a class
                    // the thread caches share: it may go back either way.
                    let bare = size <= crate::header::BARE_MAX;
                    assert!(crate::shim::is_direct(p) != bare, "{size}");
                    p.cast::<u8>().write_bytes(0x3c, size);
                    v.push((p, size));
                }
                let z = calloc(3, 400);
                assert!(crate::shim::is_direct(z));
                v.push((z, 0));
                v
            });
            for (i, (p, size)) in blocks.into_iter().enumerate() {
                assert!(malloc_usable_size(p) >= size);
                if i % 2 == 0 {
                    free(p);
                } else {
                    let q = realloc(p, 20_000).cast::<u8>();
                    assert!(!q.is_null());
                    assert!(
                        crate::shim::is_direct(q.cast()),
                        "resized in the shared heap"
                    );
                    let kept = std::slice::from_raw_parts(q, size);
                    assert!(kept.iter().all(|&b| b == 0x3c), "contents of {size} bytes");
                    free(q.cast());
                }
            }
            // A cached block freed inside a call goes to the shared heap too.
            let p = malloc(48);
            assert!(!crate::shim::is_direct(p));
            crate::shim::nested(|| free(p));
            crate::shim::trim();
            assert_eq!(used_bytes(), before, "a nested block was lost");
            crate::shim::check().unwrap();
            // Not quiescent inside a call: the gate counts it (MALLOC-F1).
            let inside = crate::shim::nested(crate::shim::check);
            assert_eq!(inside.map_err(|v| v.invariant), Err("MALLOC-F1"));
        }
    }

    /// Blocks of up to `CACHED_MAX` bytes (header included) go through the
    /// thread caches; larger ones are direct blocks of the shared heap at
    /// their own size (16-byte rounding, not a magazine class). A realloc
    /// across the line moves the block to the right route, contents kept;
    /// a direct block shrunk below it stays direct, in place.
    #[test]
    fn blocks_above_cached_max_come_straight_from_the_shared_heap() {
        use crate::shim::{is_direct, CACHED_MAX};
        let _only = exclusive();
        // SAFETY: C calls on blocks this test allocated, each freed once and
        // used only within its size.
        unsafe {
            let before = settled_used_bytes();
            let cached = malloc(CACHED_MAX - 16);
            assert!(!is_direct(cached), "the largest cached size");
            let direct = malloc(CACHED_MAX - 15);
            assert!(is_direct(direct), "one byte more");
            // sqlite's page-cache entry: 4368 bytes, at its own size, not a class's.
            let page = malloc(4368);
            assert!(is_direct(page));
            assert!(
                malloc_usable_size(page) < 4368 + 16,
                "{}",
                malloc_usable_size(page)
            );
            cached.cast::<u8>().write_bytes(0x5a, CACHED_MAX - 16);
            let grown = realloc(cached, 3 * CACHED_MAX).cast::<u8>();
            assert!(is_direct(grown.cast()), "grown past the line");
            let kept = std::slice::from_raw_parts(grown, CACHED_MAX - 16);
            assert!(kept.iter().all(|&b| b == 0x5a));
            let shrunk = realloc(grown.cast(), 2000);
            assert!(is_direct(shrunk), "a direct block stays direct");
            let kept = std::slice::from_raw_parts(shrunk.cast::<u8>(), 2000);
            assert!(kept.iter().all(|&b| b == 0x5a));
            for p in [shrunk, direct, page] {
                free(p);
            }
            crate::shim::trim();
            assert_eq!(used_bytes(), before, "a block was lost");
            crate::shim::check().unwrap();
        }
    }

    /// The heap's used bytes once earlier tests' threads have exited (and
    /// flushed their caches) and everything cached is reaped.
    fn settled_used_bytes() -> usize {
        std::thread::sleep(std::time::Duration::from_millis(100));
        crate::shim::trim();
        used_bytes()
    }

    fn used_bytes() -> usize {
        let heap = shared().lock();
        HeapSummary::of(&*heap).used_bytes
    }

    /// Threads that allocate, free each other's blocks and exit leave
    /// nothing behind: their magazines go to the depot at thread exit, and
    /// a reap returns them to the heap.
    #[test]
    fn exited_threads_lose_nothing() {
        let _only = exclusive();
        let before = settled_used_bytes();
        for _round in 0..5 {
            let handles: Vec<_> = (0..4)
                .map(|t| {
                    std::thread::spawn(move || {
                        let mut mine = Vec::new();
                        for i in 0..3000usize {
                            // SAFETY: plain C calls.
                            mine.push(unsafe { malloc(1 + (i * 7 + t) % 1000) } as usize);
                        }
                        mine
                    })
                })
                .collect();
            let blocks: Vec<Vec<usize>> = handles.into_iter().map(|h| h.join().unwrap()).collect();
            // Freed by other threads than the ones that allocated.
            let frees: Vec<_> = blocks
                .into_iter()
                .map(|mine| {
                    std::thread::spawn(move || {
                        for p in mine {
                            // SAFETY: each block freed once.
                            unsafe { free(p as *mut c_void) };
                        }
                    })
                })
                .collect();
            for f in frees {
                f.join().unwrap();
            }
        }
        crate::shim::trim();
        assert_eq!(used_bytes(), before, "blocks of exited threads were lost");
        crate::shim::check().unwrap();
    }
}

#[cfg(all(feature = "std", target_os = "linux", not(miri)))]
#[test]
fn summary_line_is_formatted_without_allocating() {
    let mut line = crate::stats::Line::new();
    crate::stats::summary(&mut line);
    let text = std::str::from_utf8(line.as_bytes()).unwrap();
    assert!(text.starts_with("freespace-malloc: pid "), "{text}");
    for word in [
        " malloc ",
        " calloc ",
        " realloc ",
        " aligned ",
        " free ",
        " failed ",
        " bytes ",
    ] {
        assert!(text.contains(word), "{text}");
    }
    assert!(text.ends_with('\n'));
    let mut n = crate::stats::Line::new();
    n.number(0);
    n.push(b" ");
    n.number(u64::MAX);
    assert_eq!(n.as_bytes(), b"0 18446744073709551615");
}
