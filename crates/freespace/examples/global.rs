//! A whole program on a freespace stack: `#[global_allocator]` with per-thread
//! magazines over a locked slab/buddy heap, doing ordinary std work
//! (strings, maps, vectors, threads).
//!
//! Run with `cargo run -p freespace --example global`.

use freespace::stacks::{self, Threaded, ThreadedDepot};
use std::collections::{BTreeMap, HashMap};

static DEPOT: ThreadedDepot = stacks::threaded_depot();
#[global_allocator]
static HEAP: Threaded = stacks::threaded(&DEPOT);

fn main() {
    // Strings and a hash map.
    let mut index: HashMap<String, Vec<usize>> = HashMap::new();
    let text = "a slab in front of a buddy allocator backed by mmap shared by threads";
    for (i, word) in text.split_whitespace().enumerate() {
        index.entry(word.to_uppercase()).or_default().push(i);
    }
    assert_eq!(index["A"], vec![0, 5]);

    // Threads allocating, and freeing each other's blocks.
    let workers: Vec<_> = (0..4)
        .map(|t| {
            std::thread::spawn(move || {
                let mut tree = BTreeMap::new();
                for i in 0..20_000u64 {
                    tree.insert(i * 7 % 10_007, format!("{t}:{i}"));
                }
                tree // dropped by the main thread: cross-thread frees
            })
        })
        .collect();
    let total: usize = workers.into_iter().map(|w| w.join().unwrap().len()).sum();
    assert_eq!(total, 4 * 10_007);

    // Inspect the heap under its lock, then let go before printing: anything
    // that allocates while the guard is held would wait for itself.
    let buddy = {
        let heap = DEPOT.parent().lock();
        heap.check().expect("slab invariants");
        heap.parent().check().expect("buddy invariants");
        freespace::HeapSummary::of(heap.parent())
    };
    println!(
        "{} words indexed; {total} tree nodes built by 4 threads; buddy: {} used blocks, {} KiB free",
        index.len(),
        buddy.used_blocks,
        buddy.free_bytes / 1024
    );
}
