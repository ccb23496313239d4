//! The sources through their public API only, and the workspace's
//! conformance suite run on `freespace_testkit::Bump` over each of them.

use std::ptr::NonNull;
use std::sync::Mutex;

use freespace_core::alloc::{AllocError, Allocator, Global, Layout};
use freespace_core::{Source, REGION_ALIGN};
use freespace_source::{Arena, FromAllocator, StaticMemory};
use freespace_testkit::{conformance, Bump};

/// The suite on a bump heap over `source` (with the out-of-memory checks
/// when `bounded`).
fn conformance_over<S: Source>(source: S, bounded: bool) {
    let heap = Bump::new(source);
    let check = || heap.check();
    let mut cfg = conformance::Config::default().check(&check);
    if cfg!(miri) {
        // Miri interprets every byte the suite writes: keep blocks small.
        cfg = cfg.max_align(256).max_block(1024);
    }
    if bounded {
        cfg = cfg.bounded();
    }
    conformance::run(&heap, &cfg);
}

#[test]
fn conformance_on_bump_over_arena() {
    // `Bump` asks for 64 KiB at least; under Miri that is all it gets.
    const LEN: usize = if cfg!(miri) { 64 << 10 } else { 1 << 20 };
    static MEMORY: StaticMemory<LEN> = StaticMemory::new();
    conformance_over(Arena::new(MEMORY.take().unwrap()), true);
}

#[test]
fn conformance_on_bump_over_from_allocator() {
    if cfg!(miri) {
        // Miri stops at an allocation larger than the machine instead of
        // failing it, and the suite asks for huge layouts.
        conformance_over(FromAllocator::new(Capped), false);
    } else {
        conformance_over(FromAllocator::new(Global), false);
    }
}

/// `Global`, refusing anything over 16 MiB.
struct Capped;

// SAFETY: forwards to `Global`, or fails.
unsafe impl Allocator for Capped {
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        if layout.size() > 16 << 20 {
            return Err(AllocError);
        }
        Global.allocate(layout)
    }
    unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
        // SAFETY: every block came from `Global` with this layout.
        unsafe { Global.deallocate(ptr, layout) }
    }
}

#[test]
#[cfg_attr(miri, ignore)]
fn conformance_on_bump_over_sbrk() {
    let _t = SBRK_TESTS.lock();
    // Unbounded: `Bump` abandons the rest of a region when it takes the next,
    // so "free everything, allocate as much again" only holds over one
    // region (the Arena test above).
    conformance_over(freespace_source::Sbrk::with_limit(64 << 20), false);
}

#[test]
#[cfg_attr(miri, ignore)]
fn conformance_on_bump_over_mmap() {
    // Unbounded, as for Sbrk.
    conformance_over(freespace_source::Mmap::with_reserve(64 << 20), false);
}

/// The sbrk tests in this binary take turns.
static SBRK_TESTS: Mutex<()> = Mutex::new(());

/// A `static` arena built at compile time, with no `static mut`: the kind
/// of definition a `#[global_allocator]` stack needs.
#[test]
fn arena_in_a_static_initializer() {
    static MEMORY: StaticMemory<4096> = StaticMemory::new();
    /// Stands in for a lock: `Arena` is `!Sync`.
    struct Shared(Arena);
    // SAFETY: this test touches `ARENA` from one thread only.
    unsafe impl Sync for Shared {}
    // SAFETY: MEMORY is used by this arena alone.
    static ARENA: Shared = Shared(unsafe { Arena::from_raw_parts(MEMORY.as_mut_ptr(), 4096) });

    let region = ARENA.0.acquire(4096).unwrap();
    assert_eq!(region.cast::<u8>().as_ptr(), MEMORY.as_mut_ptr());
    assert_eq!(region.len(), 4096);
    assert_eq!(ARENA.0.check(), Ok(()));
}

/// Regions from every source carry a heap's blocks: an allocator-api2 `Vec`
/// on a bump heap over each one.
#[test]
fn a_vec_lives_in_each_source() {
    fn fill<S: Source>(source: S) {
        let heap = Bump::new(source);
        let mut v = freespace_core::alloc::Vec::new_in(&heap);
        v.extend(0..1000u32);
        assert_eq!(v.iter().sum::<u32>(), 999 * 1000 / 2);
    }
    static MEMORY: StaticMemory<{ 128 << 10 }> = StaticMemory::new();
    fill(Arena::new(MEMORY.take().unwrap()));
    fill(FromAllocator::new(Global));
    #[cfg(not(miri))]
    {
        let _t = SBRK_TESTS.lock();
        fill(freespace_source::Sbrk::new());
        fill(freespace_source::Mmap::new());
    }
}

/// `Sbrk` and `Mmap` are `Sync`: one static instance serves threads.
#[test]
#[cfg_attr(miri, ignore)]
fn sbrk_and_mmap_are_shared_by_threads() {
    static SBRK: freespace_source::Sbrk = freespace_source::Sbrk::new();
    static MMAP: freespace_source::Mmap = freespace_source::Mmap::with_reserve(1 << 30);
    let _t = SBRK_TESTS.lock();
    let spans: Vec<(usize, usize)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|i| {
                scope.spawn(move || {
                    let source: &dyn Source = if i % 2 == 0 { &SBRK } else { &MMAP };
                    (0..20)
                        .map(|_| {
                            let r = source.acquire(100).unwrap();
                            let p = r.cast::<u8>().as_ptr();
                            assert_eq!(p as usize % REGION_ALIGN, 0);
                            // SAFETY: the region is ours and `r.len()` long.
                            unsafe { p.write_bytes(i as u8, r.len()) };
                            (p as usize, p as usize + r.len())
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let mut spans = spans;
    spans.sort();
    assert!(
        spans.windows(2).all(|w| w[0].1 <= w[1].0),
        "regions overlap"
    );
}

/// A heap-allocated buffer as an arena, with the layout a test would use.
#[test]
fn arena_over_a_heap_buffer() {
    let layout = Layout::from_size_align(1000, 16).unwrap();
    let buffer = Global.allocate(layout).unwrap();
    {
        // SAFETY: `buffer` is 1000 bytes, 16-aligned, freed only after the
        // arena is gone (end of this block), and used only through it.
        let arena = unsafe { Arena::try_from_raw_parts(buffer.cast().as_ptr(), 1000) }.unwrap();
        // The tail is trimmed to a multiple of 16: 1000 bytes are not there.
        assert!(arena.acquire(1000).is_none());
        let region = arena.acquire(992).unwrap_or_else(|| panic!("{arena:?}"));
        assert_eq!(region.len(), 992);
    }
    // SAFETY: allocated above with `layout`; nothing uses it any more.
    unsafe { Global.deallocate(buffer.cast(), layout) };
}
