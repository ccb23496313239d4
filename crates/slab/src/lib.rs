//! Bonwick's slab allocator (USENIX 1994): typed object caches and an
//! untyped size-class layer, over any parent allocator.
//!
//! | type | what it is |
//! |---|---|
//! | [`Slab<A>`](Slab) | size classes (16 B … 8 KiB by default), one object cache each; anything larger goes to the parent `A` |
//! | [`ObjectCache<T, A>`](ObjectCache) | a cache of `T`s with an optional constructor: objects come back already built |
//!
//! | module | what it holds |
//! |---|---|
//! | `size_classes` | [`Slab<A>`](Slab), the size-class allocator: the class table, routing by layout, frees and resizes |
//! | `object_cache` | [`ObjectCache<T, A>`](ObjectCache): one cache of constructed `T`s |
//! | `cache` | one object size's partial, full and empty slab lists, shared by both types |
//! | `one_slab` | *one* slab: its header (with the seal), its free bitmap and its geometry |
//! | `index` | the hash set of our slab bases, consulted before any header is read |
//!
//! # How it fits together
//!
//! ```text
//!  Slab<A>                          ObjectCache<T, A>
//!   ├─ class 16  ─┐                  └─ cache ─┐
//!   ├─ class 32  ─┤ cache.rs:                  │   cache.rs: partial / full /
//!   ├─ ...       ─┤ one object size,           │   empty lists of slabs
//!   └─ class 8K  ─┘ three slab lists           │
//!         │                                    │
//!         ▼  one_slab.rs: one slab = SLAB_SIZE bytes aligned to SLAB_SIZE
//!   ┌────────┬────────┬──────┬──────┬─ ─ ─ ┬──────┬───────┐
//!   │ header │ bitmap │ obj0 │ obj1 │       │ objN │ slack │
//!   └────────┴────────┴──────┴──────┴─ ─ ─ ┴──────┴───────┘
//!   ▲ ptr & !(SLAB_SIZE - 1)       index.rs: hash set of our slab bases,
//!                                  for pointers whose origin is in doubt
//! ```
//!
//! - **Slabs come from the parent** with `Layout(SLAB_SIZE, SLAB_SIZE)`, so
//!   the slab of an object is found by masking its address. The header sits
//!   at offset 0 (no object ever starts there) with the object size class,
//!   the free count, the list links and tag, and a *seal* over all of them
//!   (a keyed weighted sum of the header's address and every other header
//!   word; the key is a per-process secret drawn from the OS with the first
//!   slab, so bytes written over a header cannot forge a seal that passes);
//!   a bitmap of free objects follows, which makes a double free an exact
//!   O(1) test.
//! - **Free objects are found in the bitmap**, for the size classes as for
//!   the object caches: allocation takes the lowest set bit at or after the
//!   header's *search start* (every bitmap word below it is zero, so the
//!   search rarely reads more than one word), free sets the object's bit
//!   and lowers the search start to its word. Nothing is written into a
//!   free object, so a free does not touch the object's memory at all, and
//!   a use after free cannot damage the slab. (Bonwick's free list threaded
//!   through the free objects was tried, and measured: the link it writes
//!   into every freed object, whose memory is usually no longer cached,
//!   was most of the cost of freeing a million blocks in allocation order
//!   or its reverse — the `teardown-*` workloads of `docs/benchmarks.md`,
//!   `cargo xtask bench` — and cost instructions on every workload, for no
//!   gain in churn.) A run of
//!   objects for a thread cache is taken a bitmap word at a time, the
//!   header's counts amended once for the run; a run given back whose
//!   objects are neighbours (each one object after the last, or one
//!   before: freed in the order they were allocated, or the reverse) is
//!   checked by comparing each address with the one the stride predicts,
//!   and its bits, one range, are checked clear and set a word at a time.
//! - **Partial, full and empty slabs**: allocation takes from a partial slab,
//!   then an empty one, then makes a new slab. A slab that becomes empty is
//!   kept while its cache has at most `max_empty` (default 1) empty slabs,
//!   otherwise it goes back to the parent at once; `reap()` gives back every
//!   empty slab. A slab that empties while it is the *only* partial slab
//!   stays *parked* on the partial list (it still counts as one of the
//!   `max_empty` empty slabs kept), so a program that allocates and frees
//!   one object of a size at a time moves no slab between lists — each
//!   move verifies and rewrites up to three headers; a slab that joins the
//!   partial list moves the parked one to the empty list.
//! - **The slab index** (an open-addressing hash set of slab bases, its table
//!   allocated from the parent) says whether a masked address really is one
//!   of our slabs before its header is read, wherever a pointer's origin is
//!   in doubt: the checked frees, [`Owns`](freespace_core::Owns) and
//!   [`BlockSize`](freespace_core::BlockSize) are exact, and never read
//!   memory that is not ours: a block the parent served directly can start
//!   at a slab-aligned address and hold bytes that look like a header, and
//!   it is still never mistaken for a slab. A plain `deallocate`, whose
//!   contract vouches for the pointer, skips the lookup: it reads the header
//!   if the slab base lies within the span of our slabs (the index keeps the
//!   lowest and highest), and the header's seal says whether it is ours (see
//!   [`Slab`], "Frees and corruption").
//! - **Header damage** is caught before it is acted on: every free checks
//!   the seal of its slab's header (any change confined to one header word,
//!   seal included, always breaks it), and so does every list move before
//!   it follows or rewrites a link, for each header it touches. The list tag
//!   is a plain integer validated on read, never an enum built from
//!   unchecked bytes. The allocator amends the seal by each change it makes
//!   instead of recomputing it, so damage stays visible until verified.
//! - **Corruption** (foreign pointer, interior pointer, double free,
//!   overwritten header, a layout of the wrong class) is reported through
//!   [`freespace_core::report`] as `freespace: double free at 0x… (slab)`;
//!   the checked frees ([`Slab::try_deallocate`], [`ObjectCache::try_free`])
//!   return it as an `Err`.
//!
//! Routing by layout in [`Slab`] is explained on the type.
//!
//! # Example
//!
//! ```
//! use freespace_core::alloc::{Global, Vec};
//! use freespace_slab::{ObjectCache, Slab};
//!
//! // A size-class layer over the system allocator.
//! let slab = Slab::new(Global);
//! let mut v = Vec::new_in(&slab);
//! v.extend_from_slice(b"hello");
//! assert_eq!(&v[..], b"hello");
//!
//! // An object cache whose objects come back constructed.
//! let cache = ObjectCache::with_ctor(&slab, || [0u64; 8], None);
//! let obj = cache.alloc().unwrap();
//! // SAFETY: `obj` is a live object of `cache`, constructed.
//! unsafe {
//!     assert_eq!(obj.as_ref()[7], 0);
//!     cache.free(obj);
//! }
//! ```
#![no_std]

#[cfg(test)]
extern crate std;

mod cache;
mod index;
mod object_cache;
mod object_map;
mod one_slab;
mod size_classes;

pub use object_cache::{ObjectCache, DEFAULT_OBJECT_SLAB_SIZE};
pub use object_map::ObjectMap;
pub use one_slab::MIN_SLAB_SIZE;
pub use size_classes::{
    ConfigError, Slab, DEFAULT_CLASSES, DEFAULT_SLAB_SIZE, MAX_CLASSES, MAX_CLASS_ALIGN,
};

#[cfg(test)]
mod tests;

/// The README's example, run as a doctest so it cannot go stale.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
