//! allocator-api2's `Vec` and hashbrown's `HashMap` on a freespace stack.
//!
//! Run with `cargo run -p freespace --example collections`.

use freespace::alloc::Vec;
use freespace::{stacks, HeapSummary};

fn main() {
    let heap = stacks::segregated_best_fit();

    let mut words = hashbrown::HashMap::new_in(&heap);
    let text = "the free list splits and coalesces the free chunks the heap holds";
    for w in text.split(' ') {
        *words.entry(w).or_insert(0) += 1;
    }
    let mut counts = Vec::new_in(&heap);
    counts.extend(words.iter().map(|(w, n)| (*n, *w)));
    counts.sort_unstable_by(|a, b| b.cmp(a));
    println!("most frequent: {:?}", &counts[..3]);
    assert_eq!(counts[0], (3, "the"));

    let summary = HeapSummary::of(heap.parent());
    println!(
        "best-fit heap under the lists: {} used blocks, {} free blocks, fragmentation {:.2}",
        summary.used_blocks,
        summary.free_blocks,
        summary.fragmentation()
    );
}
