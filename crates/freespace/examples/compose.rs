//! Composing a stack by hand: slabs for small objects over a buddy heap over
//! a fixed arena, then a look at what each layer holds.
//!
//! Run with `cargo run -p freespace --example compose`.

use freespace::alloc::{Allocator, Layout, Vec};
use freespace::{Arena, Buddy, HeapSummary, Slab, StaticMemory};

static MEMORY: StaticMemory<{ 1 << 20 }> = StaticMemory::new();

fn main() {
    // Each layer owns the one below it; nothing is allocated yet.
    let heap: Slab<Buddy<Arena>> =
        Slab::new(Buddy::new(Arena::new(MEMORY.take().expect("first use"))));

    // Small requests are slab objects, larger ones go straight to the buddy.
    let mut small = Vec::new_in(&heap);
    for i in 0..1000u32 {
        small.push(freespace::alloc::Box::new_in(i, &heap));
    }
    let big = heap
        .allocate(Layout::from_size_align(100_000, 64).unwrap())
        .unwrap();

    let (partial, full, empty) = heap.slab_counts();
    println!("slab layer: {partial} partial, {full} full, {empty} empty slabs");
    let buddy = HeapSummary::of(heap.parent());
    println!(
        "buddy layer: {} used blocks ({} B), {} free blocks ({} B, largest {} B), {} B metadata",
        buddy.used_blocks,
        buddy.used_bytes,
        buddy.free_blocks,
        buddy.free_bytes,
        buddy.largest_free,
        buddy.meta_bytes
    );

    drop(small);
    // SAFETY: `big` was allocated above with this layout and is still live.
    unsafe { heap.deallocate(big.cast(), Layout::from_size_align(100_000, 64).unwrap()) };
    let returned = heap.reap();
    println!("after freeing everything, reap() gave {returned} empty slab(s) back to the buddy");
    heap.check().unwrap();
    heap.parent().check().unwrap();
    let buddy = HeapSummary::of(heap.parent());
    assert_eq!(buddy.used_blocks, 0, "nothing is lost");
    println!("buddy layer: largest free block {} B", buddy.largest_free);
}
