//! Concurrency for freespace: [`Locked`] makes any block `Sync` (and a
//! `GlobalAlloc`), and a thread-cache layer in the spirit of Bonwick and
//! Adams' magazines (2001) lets threads allocate small blocks without
//! sharing a lock.
//!
//! | module | what it holds |
//! |---|---|
//! | `sync` | the shim: loom's atomics and cells under `--cfg loom`, `core`'s otherwise (the one place that chooses) |
//! | (re-exported) | the raw locks of `freespace_core::lock`: [`Futex`] (spins briefly, then sleeps; [`DefaultLock`] on Linux) and [`Spin`] (bare metal) |
//! | `locked` | [`Locked`] and its [`LockedGuard`]: `Allocator`, `GlobalAlloc`, `Owns`, `BlockSize`, `Inspect` under a lock |
//! | `magazine` | size classes, magazines, and a thread's rack of loaded/previous magazines |
//! | `depot` | [`Depot`]: the parent and, per class, the shared stacks of full and empty magazines |
//! | `cache` | [`ThreadCache`]: an explicit per-thread handle on a depot (`no_std`) |
//! | `magazines` | [`Magazines`]: the same racks in `std::thread_local!`, usable as `#[global_allocator]` (feature `std`); [`fork`] handlers |
//!
//! # The thread cache
//!
//! ```text
//!          Magazines / ThreadCache      (per thread: loaded + previous magazine per class)
//!                    │  full ⇅ empty     one lock per class, taken once per magazine at most
//!                  Depot<P>
//!                    │  misses, large blocks, partial magazines
//!                    P = Locked<Heap>    (one lock for the whole heap)
//! ```
//!
//! Requests of 1 byte to [`MAX_CACHED`] (16 KiB) aligned to at most 16 are
//! rounded up to one of [`CLASSES`] classes ([`class_sizes`]: the slab's
//! classes of `freespace_core::size_class` up to 512 B — 16-byte steps to
//! 128, then four per doubling — and sixteen per doubling above, up to
//! 16384 B). Each thread pops blocks from its *loaded* magazine and pushes
//! frees onto it. A magazine holds [`MAGAZINE_BYTES`] of blocks when its
//! class is quiet (32 small blocks, 2 of 16 KiB: see [`initial_rounds`]),
//! and the depot doubles the magazines a class makes, up to [`max_rounds`],
//! whenever a thread finds the class's depot lock held (Bonwick and Adams'
//! adaptive magazine size). When it
//! runs dry, a full *previous* magazine takes its place; otherwise the
//! thread exchanges its empty magazine for a full one at the depot, and
//! only when the depot has none does it go to the parent, for a batch of
//! [`REFILL`] blocks taken one after another (so one thread's blocks sit
//! together rather than sharing cache lines with another's).
//! Frees mirror this with empty magazines. Blocks of one class are
//! interchangeable (all come from the parent with the same layout), so a
//! block freed by a thread other than the one that allocated it simply goes
//! into the freeing thread's magazine. When a thread ends its magazines go
//! to the depot ([`ThreadCache`]'s `Drop`, or [`Magazines`]' thread-local
//! destructor); the depot keeps at most 16 full and 16 empty magazines per
//! class and returns the rest to the parent, and [`Depot::reap`] (or
//! dropping the depot) returns everything. When the parent runs out of
//! memory, the layer gives back the calling thread's magazines and reaps
//! the depot, then retries once, so cached blocks never make a request fail
//! that the parent alone could serve (other threads' racks are out of
//! reach).
//!
//! # Performance
//!
//! Figures are not copied here, so they cannot drift: they are in the pages
//! the benchmark scripts generate — `docs/locks.md` (a stack as
//! `#[global_allocator]` at 1, 2 and 8 threads, with and without magazines,
//! futex and spin lock) and `docs/benchmarks.md` (the `threaded` stack
//! against glibc and mimalloc, producer/consumer included). How the thread
//! caches were made to scale, and how to run `cargo bench -p freespace-sync
//! --bench threads`, is in `docs/concurrency.md`.
//!
//! # What is detected
//!
//! [`Locked`] over a heap with checked frees (every freespace heap) turns
//! two threads racing to free the same block into one free and one
//! `Corruption::DoubleFree` report: both frees are serialised by the lock,
//! and the heap sees the second one as a double free. In front of a thread
//! cache that guarantee is gone: a second free may land in a magazine. In
//! debug builds a free is checked against the freeing thread's magazines of
//! its class, which catches the common case of freeing twice in a row.
//!
//! # Example
//!
//! A buddy heap shared by threads, with thread caches in front:
//!
//! ```
//! use freespace_core::alloc::{Global, Vec};
//! use freespace_sync::{Depot, Locked, Magazines};
//!
//! // `Global` stands in for a freespace heap such as `Buddy<Sbrk>`.
//! static DEPOT: Depot<Locked<Global>> = Depot::new(Locked::new(Global));
//! static HEAP: Magazines<'static, Locked<Global>> = Magazines::new(&DEPOT);
//!
//! let t = std::thread::spawn(|| {
//!     let mut v = Vec::new_in(&HEAP);
//!     v.extend(0..1000u32);
//!     v // freed by the main thread: a cross-thread free
//! });
//! let v = t.join().unwrap();
//! assert_eq!(v.iter().sum::<u32>(), 499_500);
//! ```
//!
//! # loom
//!
//! `tests/loom.rs` models the lock, the magazine/depot exchange, cross-thread
//! frees and racing double frees; it compiles only under `--cfg loom`
//! (`cargo xtask test` runs it with `LOOM_MAX_PREEMPTIONS=2` in release).
//! Under loom, `Locked::new` and `Depot::new` are not `const` (loom's
//! primitives register with the model when created) and [`Magazines`] is
//! absent (it is `std::thread_local!`, which loom does not model); its racks
//! are the same code as [`ThreadCache`]'s.
#![no_std]

#[cfg(any(test, loom))]
extern crate std;

mod cache;
mod depot;
mod locked;
mod magazine;
#[cfg(all(feature = "std", not(loom)))]
mod magazines;
mod sync;

pub use cache::ThreadCache;
pub use depot::{Depot, MAX_EMPTY, MAX_FULL};
#[cfg(any(target_os = "linux", target_os = "android"))]
pub use freespace_core::lock::Futex;
pub use freespace_core::lock::{DefaultLock, Spin};
pub use locked::{Locked, LockedGuard};
pub use magazine::{
    class_sizes, initial_rounds, is_class_size, max_rounds, CLASSES, CLASS_ALIGN, FINE_FROM,
    MAGAZINE_BYTES, MAX_CACHED, MAX_GROWTH, MIN_CLASS, REFILL, ROUNDS,
};
#[cfg(all(feature = "std", not(loom)))]
pub use magazines::{fork, Magazines, MAX_LIVE, SLOTS};

#[cfg(all(test, not(loom)))]
mod tests;

/// The README's example, run as a doctest so it cannot go stale.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
