//! A big heap of mid-sized blocks: `General` against the global allocator
//! (the C library's, unless the program sets another), each filled with
//! `n` blocks of `size` bytes and then emptied in random order, nanoseconds
//! per allocation and per free.
//!
//! Blocks above the slab's classes live in `General`'s best-fit tier, whose
//! regions are buddy blocks: a gigabyte of them is a few hundred regions,
//! which a free finds in its region tree (O(log regions)), and whose
//! large free chunks the purge finds through the fit's index.
//!
//! Run with `cargo run --release -p freespace --example big_heap -- 1000000 1000`
//! (`n`, then `size`; defaults 100 000 and 1000).

use std::time::Instant;

use freespace::alloc::{Allocator, Global, Layout};

fn main() {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<usize>());
    let n = args.next().and_then(Result::ok).unwrap_or(100_000);
    let size = args.next().and_then(Result::ok).unwrap_or(1000);
    let layout = Layout::from_size_align(size, 8).expect("a valid size");
    let general = freespace::stacks::general();
    for (name, ns) in [
        ("General", fill_and_empty(&general, n, layout)),
        ("global", fill_and_empty(&Global, n, layout)),
    ] {
        match ns {
            Some((alloc, free)) => {
                println!(
                    "{name:>8}: {n} blocks of {size} B: allocate {alloc:.1} ns, free {free:.1} ns"
                )
            }
            None => println!("{name:>8}: out of memory"),
        }
    }
}

/// Nanoseconds per allocation and per free of `n` blocks of `layout`,
/// freed in a random order (a fixed xorshift shuffle).
fn fill_and_empty<A: Allocator>(a: &A, n: usize, layout: Layout) -> Option<(f64, f64)> {
    let mut blocks = Vec::with_capacity(n);
    let start = Instant::now();
    for _ in 0..n {
        blocks.push(a.allocate(layout).ok()?.cast::<u8>());
    }
    let alloc = start.elapsed();
    let mut x = 0x9E37_79B9_7F4A_7C15_u64;
    for i in (1..blocks.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        blocks.swap(i, (x % (i as u64 + 1)) as usize);
    }
    let start = Instant::now();
    for p in blocks {
        // SAFETY: each block is live with `layout`, freed once.
        unsafe { a.deallocate(p, layout) };
    }
    let free = start.elapsed();
    let per = |d: std::time::Duration| d.as_nanos() as f64 / n.max(1) as f64;
    Some((per(alloc), per(free)))
}
