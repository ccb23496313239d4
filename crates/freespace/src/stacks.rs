//! Named, ready-made stacks: the combinations most programs want, each a
//! type alias plus a `const fn` that builds it (so it can be a `static`).
//!
//! | stack | type | for |
//! |---|---|---|
//! | [`General`] | `Slab<Tiered<Mmap>, 16 KiB>` | a general-purpose heap that wastes little: slabs for the small sizes (16 B … 512 B), a best-fit free list for every larger size, a buddy for the slabs' pages and the free list's regions, address space committed on demand |
//! | [`Shared`] | `Locked<General>` | the same, `Sync`: a `#[global_allocator]` |
//! | [`Threaded`] | `Magazines<Locked<General>>` | per-thread magazines in front of [`Shared`], so threads rarely share a lock |
//! | [`SlabBuddy`] | `Slab<Buddy<Mmap>>` | the textbook stack: slabs (16 B … 8 KiB) over a binary buddy; fast, but the buddy rounds every larger block up to a power of two |
//! | [`Embedded`] | `BestFitHeap<Arena>` | one fixed region, best fit, no operating system (`no_std`, no `unix`) |
//! | [`SegregatedBestFit`] | `Segregated<BestFitHeap<Mmap>>` | exact lists for the popular small sizes in front of a best-fit free list |
//!
//! # Why `General` is shaped as it is
//!
//! Each layer serves the sizes it wastes least on (issue 13: compose for
//! memory as well as speed):
//!
//! - **Small sizes, 16 B … 512 B: a slab.** A free-list block carries a
//!   16-byte header, a third of a 48-byte object; a slab object carries
//!   none, and the slab is the fast path. The classes are fine (16-byte
//!   steps to 256 B, 32-byte steps to 512 B, [`GENERAL_CLASSES`]) so
//!   rounding stays small, and slabs are small ([`GENERAL_SLAB_SIZE`],
//!   16 KiB) so the partly used slab of each class holds little.
//! - **Larger sizes: best fit.** Past 512 B the header is a few percent,
//!   and best fit serves a block at its own size (rounded to 16 bytes),
//!   where a buddy rounds it up to a power of two and slab classes round
//!   it to the next class.
//! - **The slabs' pages: a buddy.** A slab must be aligned to its own
//!   size; a buddy packs such blocks side by side, where a free list would
//!   leave a gap behind each (its next header). The best-fit heap's
//!   regions come from the same buddy ([`Tiered`]), so the two share one
//!   source.
//! - **Large blocks: still best fit.** A block larger than the best-fit
//!   heap's 64 KiB growth step takes a buddy block of the next power of
//!   two as a region of its own; what it leaves is free space of the
//!   best-fit heap, for other blocks, and the purge gives the pages of
//!   large free blocks back to `Mmap`. (They are not mapped one by one.)
//!
//! The price is speed for the sizes past 512 B, which best fit serves more
//! slowly than a slab or a buddy: [`SlabBuddy`] keeps the classic shape
//! for programs that want that speed and can spend the memory. The
//! figures are generated, not written here: `cargo xtask bench` measures
//! `general` and `slab-buddy` side by side (time per workload and heap
//! efficiency, `docs/benchmarks.md`), and `cargo xtask test --only
//! preload` the malloc shim's peak resident memory under real programs.
//!
//! `Mmap` rather than `Sbrk` backs the general stacks: it reserves its own
//! address space, so it never races the C library's `malloc` for the
//! program break. Any [`Source`](crate::Source) can be put in instead:
//! `General<Sbrk>` is `Slab<Tiered<Sbrk>, 16 KiB>`.
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

#[cfg(unix)]
use crate::tiered::Tiered;
use crate::{Arena, BestFitHeap};
#[cfg(unix)]
use crate::{Buddy, Locked, Mmap, Segregated, Slab};
use core::mem::MaybeUninit;

/// The slab size of [`General`]: 16 KiB (a [`Tiered`] page).
///
/// ```
/// assert_eq!(freespace::stacks::GENERAL_SLAB_SIZE, freespace::tiered::PAGE_ALIGN);
/// ```
pub const GENERAL_SLAB_SIZE: usize = crate::tiered::PAGE_ALIGN;

/// The size classes of [`General`]'s slab: 16-byte steps to 256 B, then
/// 32-byte steps to 512 B. Larger requests go to the best-fit heap.
///
/// ```
/// use freespace::stacks::GENERAL_CLASSES;
/// assert_eq!(GENERAL_CLASSES.len(), 24);
/// assert_eq!(GENERAL_CLASSES.last(), Some(&512));
/// ```
pub const GENERAL_CLASSES: &[usize] = &[
    16, 32, 48, 64, 80, 96, 112, 128, 144, 160, 176, 192, 208, 224, 240, 256, 288, 320, 352, 384,
    416, 448, 480, 512,
];

/// A general-purpose heap that wastes little: [`Slab`] size classes
/// (16 B … 512 B, [`GENERAL_CLASSES`]) in 16 KiB slabs, in front of a
/// [`Tiered`] heap over the source `S` (by default [`Mmap`]): a best-fit
/// free list for every larger block, inside a buddy that also serves the
/// slabs. See [the module docs](self) for why.
///
/// ```
/// use freespace::alloc::{Allocator, Layout};
/// let heap = freespace::stacks::general();
/// // 40 bytes: an object of the 48-byte class.
/// let small = heap.allocate(Layout::new::<[u8; 40]>()).unwrap();
/// assert_eq!(small.len(), 48);
/// // 5000 bytes: a best-fit block, not an 8 KiB one.
/// let large = heap.allocate(Layout::from_size_align(5000, 8).unwrap()).unwrap();
/// assert!(large.len() < 5100);
/// # unsafe { heap.deallocate(small.cast(), Layout::new::<[u8; 40]>()) };
/// # unsafe { heap.deallocate(large.cast(), Layout::from_size_align(5000, 8).unwrap()) };
/// ```
#[cfg(unix)]
pub type General<S = Mmap> = Slab<Tiered<S, GENERAL_SLAB_SIZE>, GENERAL_SLAB_SIZE>;

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
    Slab::sized_with_classes(Tiered::sized(source), GENERAL_CLASSES)
}

/// The textbook stack: [`Slab`] size classes (16 B … 8 KiB, 64 KiB slabs)
/// in front of a [`Buddy`] heap over `S` (by default [`Mmap`]) that serves
/// the slabs and every larger block, rounded up to a power of two.
///
/// Faster than [`General`] for blocks past 512 B, at the cost of memory
/// (the rounding); the stack `General` was until issue 13.
///
/// ```
/// use freespace::alloc::{Allocator, Layout};
/// let heap = freespace::stacks::slab_buddy();
/// let large = heap.allocate(Layout::from_size_align(10_000, 8).unwrap()).unwrap();
/// assert_eq!(large.len(), 16384); // a power of two
/// # unsafe { heap.deallocate(large.cast(), Layout::from_size_align(10_000, 8).unwrap()) };
/// ```
#[cfg(unix)]
pub type SlabBuddy<S = Mmap> = Slab<Buddy<S>>;

/// Builds a [`SlabBuddy`] stack over a fresh [`Mmap`] reservation.
///
/// ```
/// let heap = freespace::stacks::slab_buddy();
/// let b = freespace::alloc::Box::new_in(7u64, &heap);
/// assert_eq!(*b, 7);
/// ```
#[cfg(unix)]
pub const fn slab_buddy() -> SlabBuddy {
    slab_buddy_over(Mmap::new())
}

/// Builds a [`SlabBuddy`] stack over `source`.
///
/// ```
/// use freespace::{Arena, StaticMemory};
/// static MEMORY: StaticMemory<{ 1 << 20 }> = StaticMemory::new();
/// let heap = freespace::stacks::slab_buddy_over(Arena::new(MEMORY.take().unwrap()));
/// let v = freespace::alloc::Vec::<u8, _>::with_capacity_in(1000, &heap);
/// assert!(v.capacity() >= 1000);
/// ```
#[cfg(unix)]
pub const fn slab_buddy_over<S: crate::Source>(source: S) -> SlabBuddy<S> {
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
