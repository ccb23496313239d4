//! Where a traced program's resident memory goes, page by page.
//!
//! ```text
//! FREESPACE_TRACE=prog.trace LD_PRELOAD=target/shim/libfreespace_malloc.so prog ...
//! cargo run --release -p freespace-malloc --features unexported --example resident -- prog.trace
//! cargo run --release -p freespace-malloc --features unexported --example resident -- prog.trace --glibc
//! ```
//!
//! Replays the trace (`cargo xtask trace` writes one too) in this process
//! up to its live peak, touching each block as a program does (every byte
//! of a block under 128 KiB, the first page of a larger one), through the
//! shim's own stack (this build keeps the shim's C functions under their
//! Rust names, `unexported`, so this program's own allocations still go to
//! the C library), or with `--glibc` through the C library's `malloc`.
//! Then it prints how much anonymous memory the replay made resident
//! (`RssAnon` from `/proc/self/status`, before and after; run both to
//! compare) and, for the shim, every resident page of its reservation by
//! what holds it: a slab, a free or used block of the slab's parent (a
//! used block that is no live block of the trace is a round cached in a
//! magazine, or a magazine) or of the small heap (the first blocks of each
//! class), or metadata; with the bytes on those pages
//! that hold no live block. This is how docs/malloc.md's "Where the memory
//! goes" was found.
//!
//! Walks the heap through [`freespace_core::Inspect`] (the slab, its
//! parent, the small heap) and asks the kernel which pages are resident (`mincore`).

use std::collections::{BTreeMap, HashMap};

use freespace_core::{BlockState, Inspect};
use freespace_malloc as shim;
use freespace_stats::trace::{self, Op};

/// Blocks at least this large are touched on their first page only.
const LARGE: usize = 128 * 1024;
const PAGE: usize = 4096;
/// The shim's header in front of every block that has one (not the bare
/// blocks, slab objects whose start is the user pointer).
const HEADER: usize = 16;
/// The slab size of the shim's stack.
const SLAB: usize = freespace::stacks::GENERAL_SLAB_SIZE;

/// The allocator a replay goes through.
#[derive(Clone, Copy, PartialEq)]
enum Via {
    Shim,
    Glibc,
}

impl Via {
    unsafe fn malloc(self, size: usize, align: usize) -> *mut u8 {
        let mut p = std::ptr::null_mut();
        // SAFETY: plain calls of the C allocation functions.
        unsafe {
            match (self, align > 16) {
                (Via::Shim, false) => shim::malloc(size).cast(),
                (Via::Glibc, false) => libc::malloc(size).cast(),
                (Via::Shim, true) => {
                    shim::posix_memalign(&mut p, align, size);
                    p.cast()
                }
                (Via::Glibc, true) => {
                    libc::posix_memalign(&mut p, align, size);
                    p.cast()
                }
            }
        }
    }

    /// # Safety
    /// `p` is null or a live block of this allocator.
    unsafe fn realloc(self, p: *mut u8, size: usize) -> *mut u8 {
        // SAFETY: the caller's contract.
        unsafe {
            match self {
                Via::Shim => shim::realloc(p.cast(), size).cast(),
                Via::Glibc => libc::realloc(p.cast(), size).cast(),
            }
        }
    }

    /// # Safety
    /// `p` is a live block of this allocator.
    unsafe fn free(self, p: *mut u8) {
        // SAFETY: the caller's contract.
        unsafe {
            match self {
                Via::Shim => shim::free(p.cast()),
                Via::Glibc => libc::free(p.cast()),
            }
        }
    }

    /// # Safety
    /// `p` is a live block of this allocator.
    unsafe fn usable(self, p: *mut u8) -> usize {
        // SAFETY: the caller's contract.
        unsafe {
            match self {
                Via::Shim => shim::malloc_usable_size(p.cast()),
                Via::Glibc => libc::malloc_usable_size(p.cast()),
            }
        }
    }
}

/// `RssAnon` of this process, KiB.
fn rss_anon() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("RssAnon:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// The trace's records in call order, and the index of the record after
/// which the most bytes are live.
fn read(path: &str) -> (Vec<trace::Record>, usize) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut records: Vec<_> = trace::records(&bytes)
        .unwrap_or_else(|e| panic!("{path}: {e:?}"))
        .map(|r| r.unwrap_or_else(|e| panic!("{path}: {e:?}")))
        .collect();
    records.sort_by_key(|r| r.seq);
    let mut live = HashMap::new();
    let (mut now, mut peak, mut peak_at) = (0u64, 0u64, 0);
    for (i, r) in records.iter().enumerate() {
        if matches!(r.op, Op::Free | Op::Realloc) {
            now -= live.remove(&r.id).unwrap_or(0);
        }
        match r.op {
            Op::Alloc => live.insert(r.id, r.size),
            Op::Realloc => live.insert(r.new_id, r.size),
            Op::Free => None,
        };
        now += if r.op == Op::Free { 0 } else { r.size };
        if now > peak {
            (peak, peak_at) = (now, i);
        }
    }
    (records, peak_at)
}

/// Replays `records` through `via`; the live blocks at the end.
fn replay(via: Via, records: &[trace::Record]) -> HashMap<u64, *mut u8> {
    let mut live: HashMap<u64, *mut u8> = HashMap::with_capacity(records.len());
    let touch = |p: *mut u8, size: usize| {
        if !p.is_null() {
            // SAFETY: `p` is a fresh block of at least `size` bytes.
            unsafe { p.write_bytes(0xa5, if size >= LARGE { PAGE.min(size) } else { size }) };
        }
    };
    for r in records {
        let size = r.size as usize;
        // SAFETY: every pointer freed or resized is a live block of `via`
        // (the trace's ids name the blocks this replay made).
        unsafe {
            match r.op {
                Op::Alloc => {
                    let p = via.malloc(size, r.align() as usize);
                    touch(p, size);
                    live.insert(r.id, p);
                }
                Op::Realloc => {
                    let old = live.remove(&r.id).unwrap_or(std::ptr::null_mut());
                    live.insert(r.new_id, via.realloc(old, size));
                }
                Op::Free => {
                    if let Some(p) = live.remove(&r.id) {
                        via.free(p);
                    }
                }
            }
        }
    }
    live
}

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(path) = args.next() else {
        eprintln!("usage: resident TRACE [--glibc]");
        std::process::exit(2);
    };
    let via = if args.next().as_deref() == Some("--glibc") {
        Via::Glibc
    } else {
        Via::Shim
    };
    let (records, peak_at) = read(&path);
    if records.is_empty() {
        println!("{path}: no calls recorded");
        return;
    }
    let before = rss_anon();
    let live = replay(via, &records[..=peak_at]);
    let after = rss_anon();
    // SAFETY: every pointer in `live` is a live block of `via`.
    let usable: usize = live
        .values()
        .filter(|p| !p.is_null())
        .map(|&p| unsafe { via.usable(p) })
        .sum();
    println!(
        "{}: replayed {} of {} calls (the live peak): {} blocks live, {} KiB usable; RssAnon {} -> {} KiB (+{})",
        if via == Via::Shim { "shim" } else { "glibc" },
        peak_at + 1,
        records.len(),
        live.len(),
        usable >> 10,
        before,
        after,
        after.saturating_sub(before)
    );
    if via == Via::Shim {
        pages(&live);
    }
}

/// The shim's resident pages by what holds them.
fn pages(live: &HashMap<u64, *mut u8>) {
    let (mut objects, mut blocks, mut small) = (Vec::new(), Vec::new(), Vec::new());
    {
        let stack = shim::shared().lock();
        stack.inspect(&mut |b| objects.push(b));
        stack.parent().inspect(&mut |b| blocks.push(b));
    }
    shim::with_small_heap(|heap| heap.inspect(&mut |b| small.push(b)));
    // The small heap's blocks, told apart by address once merged.
    let is_small: std::collections::HashSet<usize> = small.iter().map(|b| b.addr).collect();
    blocks.extend(small);
    blocks.sort_by_key(|b| b.addr);
    let (Some(lo), Some(hi)) = (blocks.first(), blocks.iter().map(|b| b.addr + b.len).max()) else {
        return;
    };
    let lo = lo.addr & !(PAGE - 1);
    let pages = (hi - lo).div_ceil(PAGE);
    let mut resident = vec![0u8; pages];
    // SAFETY: `lo..lo + pages * PAGE` lies in the shim's reservation, which
    // is mapped (committed or not); `resident` has a byte per page.
    if unsafe { libc::mincore(lo as *mut _, pages * PAGE, resident.as_mut_ptr()) } != 0 {
        eprintln!("mincore failed");
        return;
    }
    // Where each live block starts: a bare block (a slab object) at its
    // user pointer, any other 16 bytes before it, at its header.
    let object_starts: std::collections::HashSet<usize> = objects.iter().map(|b| b.addr).collect();
    let start = |p: *mut u8| -> usize {
        let p = p as usize;
        if object_starts.contains(&p) {
            p
        } else {
            p - HEADER
        }
    };
    // Bytes of live blocks (with their headers) on each page.
    let mut used = vec![0usize; pages];
    for &p in live.values().filter(|p| !p.is_null()) {
        // SAFETY: a live block of the shim.
        let end = p as usize + unsafe { shim::malloc_usable_size(p.cast()) };
        let mut at = start(p);
        while at < end && at >= lo && at < lo + pages * PAGE {
            let next = ((at / PAGE) + 1) * PAGE;
            used[(at - lo) / PAGE] += next.min(end) - at;
            at = next;
        }
    }
    let slabs: std::collections::HashSet<usize> =
        objects.iter().map(|b| b.addr & !(SLAB - 1)).collect();
    let holder = |addr: usize| -> String {
        let i = blocks.partition_point(|b| b.addr <= addr);
        match i.checked_sub(1).map(|i| blocks[i]) {
            Some(b) if addr < b.addr + b.len => match b.state {
                BlockState::Used if b.len == SLAB && slabs.contains(&b.addr) => "a slab".into(),
                state => format!(
                    "a {} block of the {}, {} B or less",
                    name(state),
                    if is_small.contains(&b.addr) {
                        "small heap"
                    } else {
                        "slab's parent"
                    },
                    b.len.next_power_of_two()
                ),
            },
            _ => "outside every block".into(),
        }
    };
    let mut by: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for (i, _) in resident.iter().enumerate().filter(|(_, r)| **r & 1 == 1) {
        let e = by.entry(holder(lo + i * PAGE)).or_default();
        e.0 += 1;
        e.1 += PAGE - used[i].min(PAGE);
    }
    let total: usize = by.values().map(|v| v.0).sum();
    let unused: usize = by.values().map(|v| v.1).sum();
    println!(
        "resident pages of the stack: {} KiB, {} KiB of it holding no live block:",
        (total * PAGE) >> 10,
        unused >> 10
    );
    for (what, (n, free)) in &by {
        println!(
            "  {:>6} KiB on {:>4} pages held by {what}, {:>6} KiB of it unused",
            (n * PAGE) >> 10,
            n,
            free >> 10
        );
    }
    let starts: std::collections::HashSet<usize> = live
        .values()
        .filter(|p| !p.is_null())
        .map(|&p| start(p))
        .collect();
    let mut cached: BTreeMap<usize, usize> = BTreeMap::new();
    for b in blocks
        .iter()
        .filter(|b| b.state == BlockState::Used && b.len < SLAB && !starts.contains(&b.addr))
    {
        *cached.entry(b.len).or_default() += 1;
    }
    println!("used blocks of the parent that are no live block (bytes: how many): {cached:?}");
}

fn name(state: BlockState) -> &'static str {
    match state {
        BlockState::Free => "free",
        BlockState::Used => "used",
        BlockState::Meta => "metadata",
    }
}
