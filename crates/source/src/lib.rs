//! Memory sources for freespace heaps: a fixed Arena, sbrk, mmap, and any Allocator.
//!
//! A heap carves blocks out of raw regions it asks a [`Source`] for. This
//! crate holds the four sources every heap in the workspace can sit on:
//!
//! | source | where the memory comes from | contiguous? | `Sync` |
//! |---|---|---|---|
//! | [`Arena`] | one fixed region you give it (the "single fixed-size heap"), e.g. a [`StaticMemory`] | one region only | no |
//! | [`Sbrk`] (unix) | the program break, moved with `sbrk` | when nobody else moved the break | yes |
//! | [`Mmap`] (unix) | a reservation of address space, committed a chunk at a time | always | yes |
//! | [`FromAllocator`] | any [`Allocator`](freespace_core::alloc::Allocator) | no | no |
//!
//! Every constructor is a `const fn` that does no work: memory is first asked
//! for on the first [`acquire`](Source::acquire), so a source can sit inside
//! a `static` allocator stack. Every region honours the [`Source`] contract:
//! its start is aligned to [`REGION_ALIGN`], its length is a multiple of it
//! and at least what was asked, and running out is `None`, never a panic.
//!
//! # Example
//!
//! The same code runs on any source:
//!
//! ```
//! use freespace_core::{Source, REGION_ALIGN};
//! use freespace_source::{Arena, FromAllocator, StaticMemory};
//! use freespace_core::alloc::Global;
//!
//! fn fill<S: Source>(source: &S) -> usize {
//!     let region = source.acquire(100).expect("memory");
//!     assert_eq!(region.cast::<u8>().as_ptr() as usize % REGION_ALIGN, 0);
//!     // SAFETY: the region is ours alone and valid for writes (CORE-S1, CORE-S2).
//!     unsafe { region.cast::<u8>().as_ptr().write_bytes(0xAB, region.len()) };
//!     // SAFETY: `region` came from `source` and nothing in it is in use.
//!     assert!(unsafe { source.release(region) });
//!     region.len()
//! }
//!
//! static MEMORY: StaticMemory<512> = StaticMemory::new();
//! assert_eq!(fill(&Arena::new(MEMORY.take().unwrap())), 512); // the whole arena, more than asked
//! assert_eq!(fill(&FromAllocator::new(Global)), 112);
//! # #[cfg(all(unix, not(miri)))] {
//! use freespace_source::{Mmap, Sbrk};
//! assert!(fill(&Mmap::new()) >= 100); // a whole page
//! let _ = Sbrk::new(); // see `Sbrk` for why release may decline here
//! # }
//! ```
#![no_std]

#[cfg(test)]
extern crate std;

pub mod arena;
pub mod from_allocator;
#[cfg(unix)]
pub mod mmap;
#[cfg(unix)]
pub mod sbrk;

pub use arena::{Arena, ArenaError, StaticMemory};
pub use from_allocator::FromAllocator;
#[cfg(unix)]
pub use mmap::Mmap;
#[cfg(unix)]
pub use sbrk::Sbrk;

#[cfg(doc)]
use freespace_core::Source;
use freespace_core::{layout, REGION_ALIGN};

/// The length of the region to hand out for a request of `min_len`: at least
/// [`REGION_ALIGN`], rounded up to a multiple of it, and no more than
/// `isize::MAX` (no allocation can be larger). `None` when it cannot be.
pub(crate) const fn region_len(min_len: usize) -> Option<usize> {
    match layout::round_request(min_len, REGION_ALIGN, REGION_ALIGN) {
        Some(len) if len <= isize::MAX as usize => Some(len),
        _ => None,
    }
}

/// [`Source::decommit`] for memory the kernel maps privately and
/// anonymously (an `mmap` reservation, the program break): the whole pages
/// inside `region` get `madvise(MADV_DONTNEED)`, after which they read as
/// zeros and are not resident until written. `MADV_FREE` is not used: pages
/// it frees may keep their old contents until the kernel needs them, and a
/// heap counts on decommitted pages reading as zero (CORE-S5).
///
/// # Safety
/// `region` is private anonymous memory the caller owns and does not need
/// the contents of.
#[cfg(unix)]
pub(crate) unsafe fn decommit_pages(
    region: core::ptr::NonNull<[u8]>,
) -> Option<core::ptr::NonNull<[u8]>> {
    // SAFETY: `sysconf` only reads a system constant.
    let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).ok()?;
    let start = region.cast::<u8>().as_ptr().addr();
    let (lo, len) = layout::pages_inside(start, region.len(), page)?;
    // SAFETY: `lo - start < region.len()` (the pages lie inside the region): in
    // `region`, whose provenance the pointer keeps.
    let ptr = unsafe { region.cast::<u8>().add(lo - start) };
    // SAFETY: the pages `lo .. lo + len` lie inside `region`, which the caller
    // owns and gives up the contents of; `madvise` changes nothing else.
    let rc = unsafe { libc::madvise(ptr.as_ptr().cast(), len, libc::MADV_DONTNEED) };
    (rc == 0).then(|| core::ptr::NonNull::slice_from_raw_parts(ptr, len))
}

#[cfg(test)]
mod test_util;

/// The README's example, run as a doctest so it cannot go stale.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
