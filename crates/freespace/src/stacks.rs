//! Named, ready-made stacks: the combinations most programs want, each a
//! type alias plus a `const fn` that builds it (so it can be a `static`).
//!
//! | stack | type | for |
//! |---|---|---|
//! | [`General`] | `Slab<Buddy<Mmap>>` | a general-purpose heap: slabs serve the small sizes, the buddy everything up to its largest order, address space committed on demand |
//! | [`Shared`] | `Locked<General>` | the same, `Sync`: a `#[global_allocator]` |
//! | [`Threaded`] | `Magazines<Locked<General>>` | per-thread magazines in front of [`Shared`], so threads rarely share a lock |
//! | [`Embedded`] | `BestFitHeap<Arena>` | one fixed region, best fit, no operating system (`no_std`, no `unix`) |
//! | [`SegregatedBestFit`] | `Segregated<BestFitHeap<Mmap>>` | exact lists for the popular small sizes in front of a best-fit free list |
//!
//! `Mmap` rather than `Sbrk` backs the general stacks: it reserves its own
//! address space, so it never races the C library's `malloc` for the
//! program break. Any [`Source`](crate::Source) can be put in instead:
//! `General<Sbrk>` is `Slab<Buddy<Sbrk>>`.
//!
//! ```
//! use freespace::alloc::Vec;
//! use freespace::stacks;
//!
//! let heap = stacks::general();
//! let mut v = Vec::new_in(&heap);
//! v.extend_from_slice(b"free space");
//! assert_eq!(&v[..], b"free space");
//! ```

use crate::{Arena, BestFitHeap};
#[cfg(unix)]
use crate::{Buddy, Locked, Mmap, Segregated, Slab};
use core::mem::MaybeUninit;

/// A general-purpose heap: [`Slab`] size classes (16 B … 8 KiB) in front of
/// a [`Buddy`] heap over the source `S` (by default [`Mmap`]).
#[cfg(unix)]
pub type General<S = Mmap> = Slab<Buddy<S>>;

/// Builds a [`General`] stack over a fresh [`Mmap`] reservation. Does no
/// work until the first allocation.
///
/// ```
/// let heap = freespace::stacks::general();
/// let b = freespace::alloc::Box::new_in(7u64, &heap);
/// assert_eq!(*b, 7);
/// ```
#[cfg(unix)]
pub const fn general() -> General {
    general_over(Mmap::new())
}

/// Builds a [`General`] stack over `source`: for example a `&'static Mmap`
/// that other code range-checks pointers against, as the malloc shim does.
///
/// ```
/// use freespace::Mmap;
/// static RESERVATION: Mmap = Mmap::new();
/// let heap = freespace::stacks::general_over(&RESERVATION);
/// let b = freespace::alloc::Box::new_in(7u64, &heap);
/// assert!(RESERVATION.committed_range().contains(&(&*b as *const u64 as usize)));
/// ```
#[cfg(unix)]
pub const fn general_over<S: crate::Source>(source: S) -> General<S> {
    Slab::new(Buddy::new(source))
}

/// [`General`] behind a lock (`freespace_sync::DefaultLock`: spins briefly,
/// then sleeps, on Linux): `Sync`, and a `GlobalAlloc`.
///
/// ```
/// use freespace::stacks::{self, Shared};
/// static HEAP: Shared = stacks::shared();
/// let v = freespace::alloc::Vec::<u8, _>::with_capacity_in(100, &HEAP);
/// assert!(v.capacity() >= 100);
/// ```
///
/// As the program's allocator (see `examples/global.rs`):
///
/// ```no_run
/// #[global_allocator]
/// static HEAP: freespace::stacks::Shared = freespace::stacks::shared();
/// # fn main() {}
/// ```
#[cfg(unix)]
pub type Shared<S = Mmap> = Locked<General<S>>;

/// Builds a [`Shared`] stack.
#[cfg(unix)]
pub const fn shared() -> Shared {
    Locked::new(general())
}

/// Builds a [`Shared`] stack over `source` (see [`general_over`]).
///
/// ```
/// use freespace::Mmap;
/// static RESERVATION: Mmap = Mmap::new();
/// static HEAP: freespace::stacks::Shared<&Mmap> = freespace::stacks::shared_over(&RESERVATION);
/// let v = freespace::alloc::Vec::<u8, _>::with_capacity_in(100, &HEAP);
/// assert!(v.capacity() >= 100);
/// ```
#[cfg(unix)]
pub const fn shared_over<S: crate::Source>(source: S) -> Shared<S> {
    Locked::new(general_over(source))
}

/// Per-thread magazines in front of a [`Shared`] heap held by a
/// [`Depot`](crate::Depot): threads allocate and free small blocks without
/// taking the heap's lock. Needs a `'static` depot, so it is built in two
/// statics:
///
/// ```
/// use freespace::stacks::{self, Threaded, ThreadedDepot};
/// static DEPOT: ThreadedDepot = stacks::threaded_depot();
/// static HEAP: Threaded = stacks::threaded(&DEPOT);
///
/// let handles: Vec<_> = (0..2)
///     .map(|t| std::thread::spawn(move || {
///         let mut v = freespace::alloc::Vec::new_in(&HEAP);
///         v.extend(0..1000u64 * (t + 1));
///         v.len()
///     }))
///     .collect();
/// let total: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
/// assert_eq!(total, 3000);
/// ```
#[cfg(all(unix, feature = "std"))]
pub type Threaded = crate::Magazines<'static, Shared>;

/// The depot a [`Threaded`] stack exchanges magazines with.
#[cfg(unix)]
pub type ThreadedDepot = crate::Depot<Shared>;

/// Builds the depot of a [`Threaded`] stack.
#[cfg(unix)]
pub const fn threaded_depot() -> ThreadedDepot {
    crate::Depot::new(shared())
}

/// Builds a [`Threaded`] stack over `depot`.
#[cfg(all(unix, feature = "std"))]
pub const fn threaded(depot: &'static ThreadedDepot) -> Threaded {
    crate::Magazines::new(depot)
}

/// A best-fit free-list heap over one fixed region: the embedded stack
/// (`no_std`, no operating system, no growth).
///
/// ```
/// use freespace::{stacks, StaticMemory};
/// static MEMORY: StaticMemory<16384> = StaticMemory::new();
/// let heap = stacks::embedded(MEMORY.take().unwrap());
/// let v = freespace::alloc::Vec::<u32, _>::with_capacity_in(1000, &heap);
/// assert!(v.capacity() >= 1000);
/// // 16 KiB is all there is: a request for more fails cleanly.
/// assert!(freespace::alloc::Vec::<u8, _>::new_in(&heap).try_reserve(20_000).is_err());
/// ```
pub type Embedded = BestFitHeap<Arena>;

/// Builds an [`Embedded`] stack over `memory`.
pub const fn embedded(memory: &'static mut [MaybeUninit<u8>]) -> Embedded {
    BestFitHeap::new(Arena::new(memory))
}

/// Exact free lists for popular sizes (16 … 512 B) in front of a best-fit
/// free list over `S` (by default [`Mmap`]).
///
/// ```
/// let heap = freespace::stacks::segregated_best_fit();
/// let mut s = freespace::alloc::Vec::new_in(&heap);
/// s.extend_from_slice("segregated".as_bytes());
/// assert_eq!(s.len(), 10);
/// ```
#[cfg(unix)]
pub type SegregatedBestFit<S = Mmap> = Segregated<BestFitHeap<S>>;

/// Builds a [`SegregatedBestFit`] stack over a fresh [`Mmap`] reservation.
#[cfg(unix)]
pub const fn segregated_best_fit() -> SegregatedBestFit {
    Segregated::new(BestFitHeap::new(Mmap::new()))
}
