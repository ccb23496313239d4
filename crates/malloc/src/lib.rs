//! freespace-malloc: the C `malloc` family on a freespace stack. The crate
//! `freespace-malloc-so` builds it as `libfreespace_malloc.so` (without the
//! standard library) so that any dynamically linked program can run on it
//! with `LD_PRELOAD`:
//!
//! ```text
//! cargo build --profile shim -p freespace-malloc-so
//! LD_PRELOAD=target/shim/libfreespace_malloc.so python3 -c 'print("hello")'
//! ```
//!
//! | module | what it holds |
//! |---|---|
//! | [`header`] | the 16-byte header before every block above 512 B (size, alignment, keyed seal; smaller blocks are bare slab objects), and the size arithmetic; pure logic, `no_std`, Miri-tested |
//! | `shim` | the exported functions ([`malloc`], [`free`], [`calloc`], [`realloc`], [`reallocarray`], [`posix_memalign`], [`aligned_alloc`], [`memalign`], [`valloc`], [`pvalloc`], [`malloc_usable_size`]) over the threaded stack, with the re-entrancy guard (feature `std`, Linux) |
//! | `fork` | the gate `pthread_atfork` closes around `fork()` so a child never inherits a held lock |
//! | `stats` | call counters and the exit summary of `FREESPACE_MALLOC_STATS=1` |
//! | `trace` | `FREESPACE_TRACE=path`: every call recorded in freespace-stats' trace format, buffered per thread, for `cargo xtask replay` |
//! | `tls` | the per-thread state, initial-exec TLS of its own (no `thread_local!`, no `std`), and the thread-exit hooks |
//! | `lifecycle` | the library's one constructor and one destructor (`.init_array`/`.fini_array`), calling `stats` and `trace` in a fixed order |
//!
//! The stack is freespace's threaded one: per-thread magazines in front of
//! a locked slab over a best-fit heap and a buddy in an `mmap` reservation
//! (`freespace::stacks::Shared`; see
//! `docs/malloc.md` for the design, what runs on it and what it costs).
//!
//! Nothing here panics or unwinds across the C boundary: every size is
//! checked arithmetic, every failure is a null pointer with `errno`, and
//! corruption (a double free, a foreign pointer, an overwritten header) is
//! reported through [`freespace_core::report`], which prints
//! `freespace: double free at 0x… (malloc)` and aborts.
//!
//! Linking the rlib into a program (rather than preloading the `.so`) makes
//! these functions that program's `malloc` too:
//!
//! ```
//! unsafe {
//!     let p = freespace_malloc::malloc(32).cast::<u8>();
//!     p.write_bytes(0xab, 32);
//!     let q = freespace_malloc::realloc(p.cast(), 64).cast::<u8>();
//!     assert_eq!(*q.add(31), 0xab);
//!     freespace_malloc::free(q.cast());
//! }
//! ```
// Under `--cfg loom` only the loom model of the fork gate
// (`tests/loom_gate.rs`) builds: the stack's statics need const
// constructors, which loom's primitives do not have.
#![cfg(not(loom))]
#![no_std]

#[cfg(test)]
extern crate std;

pub mod header;

#[cfg(all(feature = "std", target_os = "linux", not(miri)))]
mod extras;
#[cfg(all(feature = "std", target_os = "linux", not(miri)))]
mod fork;
#[cfg(all(feature = "std", target_os = "linux", not(miri)))]
mod lifecycle;
#[cfg(all(feature = "std", target_os = "linux", not(miri)))]
mod shim;
#[cfg(all(feature = "std", target_os = "linux", not(miri)))]
pub mod small;
#[cfg(all(feature = "std", target_os = "linux", not(miri)))]
mod stats;
#[cfg(all(feature = "std", target_os = "linux", not(miri)))]
mod tls;
#[cfg(all(feature = "std", target_os = "linux", not(miri)))]
mod trace;

#[cfg(all(feature = "std", target_os = "linux", not(miri)))]
pub use shim::{
    aligned_alloc, calloc, check, free, malloc, malloc_trim, malloc_usable_size, memalign,
    posix_memalign, pvalloc, realloc, reallocarray, set_purge_mib, set_reuse_check, shared, valloc,
    with_small_heap, Shared, NAME,
};

#[cfg(test)]
mod tests;

/// The README's example, run as a doctest so it cannot go stale.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
