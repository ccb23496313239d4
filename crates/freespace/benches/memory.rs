//! Resident memory of the named stacks on issue 14's cases, in one run:
//! what a large zeroed block, a large unwritten block, and memory written,
//! freed and trimmed cost in resident pages (`VmRSS` of this process).
//!
//! `cargo bench -p freespace --bench memory` (not a timed test: the numbers
//! go to the notes and docs/memory.md). Each stack is fresh (its own `Mmap`
//! reservation); each row is the growth of `VmRSS` over the stack's
//! starting point, in MiB.
#![allow(missing_docs)]

use std::time::Instant;

use freespace::alloc::{Allocator, Layout};
use freespace::stacks::{self, ThreadedDepot};
use freespace::Trim;
use freespace_testkit::Rng;

/// `VmRSS` of this process, in MiB.
fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

const GIB: usize = 1 << 30;

/// One stack through the cases; prints a table row.
fn row<A: Allocator + Trim>(name: &str, heap: &A) {
    let base = rss_mib();
    // 1. allocate_zeroed(1 GiB): time and resident growth.
    let l = Layout::from_size_align(GIB, 16).unwrap();
    let t = Instant::now();
    let z = heap.allocate_zeroed(l).expect("1 GiB zeroed");
    let zero_ms = t.elapsed().as_secs_f64() * 1e3;
    // SAFETY: a block of at least 1 GiB.
    let ok = unsafe { *z.cast::<u8>().as_ptr().add(GIB - 1) == 0 };
    assert!(ok, "{name}: allocate_zeroed returned non-zero memory");
    let zero_rss = rss_mib() - base;
    // SAFETY: live with `l`.
    unsafe { heap.deallocate(z.cast(), l) };
    // 2. allocate(2 GiB), unwritten.
    let l2 = Layout::from_size_align(2 * GIB, 16).unwrap();
    let big = heap.allocate(l2).expect("2 GiB");
    let big_rss = rss_mib() - base;
    // SAFETY: live with `l2`.
    unsafe { heap.deallocate(big.cast(), l2) };
    // 3. 256 MiB in 16-512 B blocks, written, freed, trimmed.
    let mut blocks = Vec::new();
    let mut bytes = 0usize;
    // The testkit's generator from its default state (seed 0).
    let mut rng = Rng::new(0);
    while bytes < 256 << 20 {
        let size = 16 + (rng.next() >> 32) as usize % 497;
        let l = Layout::from_size_align(size, 8).unwrap();
        let p = heap.allocate(l).expect("small block");
        // SAFETY: a fresh block of at least `size` bytes.
        unsafe { p.cast::<u8>().write_bytes(1, size) };
        blocks.push((p, l));
        bytes += size;
    }
    let peak = rss_mib() - base;
    for (p, l) in blocks.drain(..) {
        // SAFETY: live with `l`.
        unsafe { heap.deallocate(p.cast(), l) };
    }
    drop(blocks);
    let freed = rss_mib() - base;
    let given = heap.trim();
    let trimmed = rss_mib() - base;
    println!(
        "| {name} | {zero_ms:.3} | {zero_rss:.1} | {big_rss:.1} | {peak:.1} | {freed:.1} | {trimmed:.1} | {:.1} |",
        given as f64 / (1 << 20) as f64
    );
}

static DEPOT: ThreadedDepot = stacks::threaded_depot();

fn main() {
    println!("Resident memory growth (VmRSS, MiB) of each named stack over its own fresh Mmap:\n");
    println!(
        "| stack | allocate_zeroed(1 GiB) ms | its resident MiB | allocate(2 GiB) unwritten, MiB \
         | 256 MiB of 16–512 B blocks written, MiB | all freed, MiB | after trim(), MiB | trim gave back, MiB |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    row("General", &stacks::general());
    row("Shared", &stacks::shared());
    let threaded = stacks::threaded(&DEPOT);
    row("Threaded", &threaded);
    row("SegregatedBestFit", &stacks::segregated_best_fit());
    row("SlabBuddy", &stacks::slab_buddy());
}
