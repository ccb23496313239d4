//! `Stats<System>` as the program's `#[global_allocator]`: every heap
//! allocation of this test binary goes through it.
//!
//! A binary of its own, with `harness = false` (see Cargo.toml): the test
//! harness runs tests on threads that allocate, and the counts checked
//! here are exact, so `main` runs alone on one thread.

use std::alloc::System;
use std::hint::black_box;

use freespace_stats::{size_class, Stats};

#[global_allocator]
static GLOBAL: Stats<System> = Stats::new(System);

fn main() {
    // cargo-nextest lists a binary's tests first (`--list --format terse`,
    // then again with `--ignored`): this one has one test, not ignored.
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--list") {
        if !args.iter().any(|a| a == "--ignored") {
            println!("global_allocator_counts: test");
        }
        return;
    }
    // Nothing may allocate between two snapshots except the code measured
    // (no printing until the end).
    let before = GLOBAL.snapshot();
    assert!(
        before.allocations > 0,
        "the runtime's own start-up allocations were counted"
    );

    let boxed = black_box(Box::new([7u8; 1000]));
    let one = GLOBAL.snapshot();
    assert_eq!(one.allocations - before.allocations, 1);
    assert_eq!(one.live_bytes - before.live_bytes, 1000);
    assert_eq!(
        one.histogram[size_class(1000)] - before.histogram[size_class(1000)],
        1
    );
    assert!(one.peak_live_bytes >= one.live_bytes);

    let mut v: Vec<u64> = Vec::with_capacity(4);
    v.extend(0..5); // one grow: 32 -> 64 bytes
    let grown = GLOBAL.snapshot();
    assert_eq!(grown.allocations - one.allocations, 1);
    assert_eq!(grown.grows() - one.grows(), 1);
    assert_eq!(grown.live_bytes - one.live_bytes, 8 * v.capacity());
    v.shrink_to_fit(); // one shrink: to 5 * 8 bytes
    let shrunk = GLOBAL.snapshot();
    assert_eq!(shrunk.shrinks() - grown.shrinks(), 1);
    assert_eq!(shrunk.live_bytes - one.live_bytes, 40);

    drop(v);
    drop(boxed);
    let after = GLOBAL.snapshot();
    assert_eq!(after.frees - before.frees, 2);
    assert_eq!(after.allocations - before.allocations, 2);
    assert_eq!(after.live_bytes, before.live_bytes);
    assert_eq!(after.live_blocks, before.live_blocks);
    assert_eq!(
        after.total_requested_bytes - before.total_requested_bytes,
        1000 + 32 + 32
    );
    assert_eq!(after.failures(), 0);
    GLOBAL.check().unwrap();

    // Threads allocating through the global allocator at once.
    let base = GLOBAL.snapshot();
    std::thread::scope(|s| {
        for t in 0..4u8 {
            s.spawn(move || {
                for i in 0..1000usize {
                    black_box(vec![t; 1 + i % 300]);
                }
            });
        }
    });
    let threads = GLOBAL.snapshot();
    assert!(threads.allocations - base.allocations >= 4000);
    assert_eq!(
        threads.allocations - base.allocations - (threads.frees - base.frees),
        threads.live_blocks.wrapping_sub(base.live_blocks),
        "every allocation and free counted, none lost to a race"
    );
    GLOBAL.check().unwrap();

    println!("global allocator counts ok:\n{}", GLOBAL.snapshot());
}
