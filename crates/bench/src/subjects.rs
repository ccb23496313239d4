//! The subjects: every freespace block and stack, and the anchors, behind
//! one small interface the workloads are generic over (no `dyn`: each
//! workload is compiled once per subject, so calls inline as they would
//! in a program using that allocator).
//!
//! | adapter | for |
//! |---|---|
//! | [`Global<G>`] | `GlobalAlloc` types: glibc (`System`), mimalloc, jemalloc |
//! | [`Heap<A>`] | `Allocator` types: every freespace block and stack |
//! | [`Trimmed<A>`] | an `Allocator` that can give memory back: `general-mmap` |
//! | [`Excl<T>`] | the `&mut self` arena allocators: talc, rlsf, linked_list_allocator, buddy_system_allocator, dlmalloc |
//!
//! For the two-thread workload a subject that is not `Sync` goes behind
//! `freespace_sync::Locked` (its `DefaultLock`: spins briefly, then sleeps
//! on a futex), the same lock for all of them.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::{Cell, UnsafeCell};
use std::ptr::{self, NonNull};

use freespace::stacks::SegregatedBestFit;
use freespace_best_fit::BestFitHeap;
use freespace_buddy::Buddy;
use freespace_core::alloc::{AllocError, Allocator};
use freespace_core::{BlockInfo, Inspect, Trim};
use freespace_first_fit::FirstFitHeap;
use freespace_next_fit::NextFitHeap;
use freespace_source::Arena;
use freespace_sync::{Depot, Locked, Magazines};
use freespace_worst_fit::WorstFitHeap;

/// What the workloads need of an allocator. Null means "failed"; a failed
/// `realloc` leaves the block as it was.
pub trait Subject {
    /// A block for `layout` (`layout.size() > 0`), or null.
    fn alloc(&self, layout: Layout) -> *mut u8;
    /// Frees a block.
    ///
    /// # Safety
    /// `ptr` came from `alloc`/`realloc` of `self` with `layout` and is live.
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout);
    /// Resizes a block to `new_size` (> 0), keeping `layout.align()`.
    ///
    /// # Safety
    /// As for `dealloc`; on success `ptr` is no longer live.
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8;

    /// [`alloc`](Self::alloc), and the bytes the subject granted (the
    /// length an `Allocator` returns) when it says.
    #[inline]
    fn alloc_granted(&self, layout: Layout) -> (*mut u8, Option<usize>) {
        (self.alloc(layout), None)
    }

    /// [`realloc`](Self::realloc), and the bytes granted when the subject
    /// says.
    ///
    /// # Safety
    /// As for [`realloc`](Self::realloc).
    #[inline]
    unsafe fn realloc_granted(
        &self,
        ptr: *mut u8,
        layout: Layout,
        new_size: usize,
    ) -> (*mut u8, Option<usize>) {
        // SAFETY: the caller's contract.
        (unsafe { self.realloc(ptr, layout, new_size) }, None)
    }

    /// Walks the subject's blocks (its [`Inspect`]) and returns `true`, or
    /// returns `false` when it cannot.
    fn inspect(&self, visit: &mut dyn FnMut(BlockInfo)) -> bool {
        let _ = visit;
        false
    }

    /// Gives back to the OS what the subject holds free and says how
    /// (`"malloc_trim(0)"`, ...), or returns `None` when it has no way to.
    fn trim(&self) -> Option<&'static str> {
        None
    }
}

/// How a `GlobalAlloc` anchor gives free memory back to the OS, for
/// [`Subject::trim`] of [`Global`].
pub trait GiveBack {
    /// Gives back what the allocator holds free (process-wide) and says
    /// how, or returns `None` when it has no way to.
    fn give_back(&self) -> Option<&'static str>;
}

impl GiveBack for System {
    fn give_back(&self) -> Option<&'static str> {
        // SAFETY: `malloc_trim` only reads and updates glibc's own heap
        // state, under its locks; any argument is valid.
        unsafe { libc::malloc_trim(0) };
        Some("malloc_trim(0)")
    }
}

impl GiveBack for mimalloc::MiMalloc {
    fn give_back(&self) -> Option<&'static str> {
        extern "C" {
            // In every build of mimalloc (`mimalloc.h`); the `mimalloc`
            // crate declares it only with its `extended` feature.
            fn mi_collect(force: bool);
        }
        // SAFETY: `mi_collect` takes a plain bool and touches only
        // mimalloc's own state (this thread's heap and the abandoned
        // segments), which it may do at any time.
        unsafe { mi_collect(true) };
        Some("mi_collect(true)")
    }
}

impl GiveBack for tikv_jemallocator::Jemalloc {
    fn give_back(&self) -> Option<&'static str> {
        // `arena.<MALLCTL_ARENAS_ALL>.purge`; MALLCTL_ARENAS_ALL is 4096.
        let name = c"arena.4096.purge";
        // SAFETY: a NUL-terminated control name, and null old/new values
        // with lengths 0: `purge` reads and writes nothing.
        let rc = unsafe {
            tikv_jemalloc_sys::mallctl(
                name.as_ptr(),
                ptr::null_mut(),
                ptr::null_mut(),
                ptr::null_mut(),
                0,
            )
        };
        (rc == 0).then_some("mallctl arena.<MALLCTL_ARENAS_ALL>.purge")
    }
}

/// A `GlobalAlloc` as a subject.
pub struct Global<G>(pub G);

impl<G: GlobalAlloc + GiveBack> Subject for Global<G> {
    #[inline]
    fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the workloads never ask for size 0.
        unsafe { self.0.alloc(layout) }
    }
    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: caller contract.
        unsafe { self.0.dealloc(ptr, layout) }
    }
    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: caller contract; `new_size > 0`.
        unsafe { self.0.realloc(ptr, layout, new_size) }
    }
    fn trim(&self) -> Option<&'static str> {
        self.0.give_back()
    }
}

/// An `Allocator` (every freespace block and stack) as a subject.
pub struct Heap<A>(pub A);

impl<A: Allocator> Subject for Heap<A> {
    #[inline]
    fn alloc(&self, layout: Layout) -> *mut u8 {
        match self.0.allocate(layout) {
            Ok(block) => block.cast::<u8>().as_ptr(),
            Err(_) => ptr::null_mut(),
        }
    }
    #[inline]
    fn alloc_granted(&self, layout: Layout) -> (*mut u8, Option<usize>) {
        match self.0.allocate(layout) {
            Ok(block) => (block.cast::<u8>().as_ptr(), Some(block.len())),
            Err(_) => (ptr::null_mut(), None),
        }
    }
    #[inline]
    unsafe fn realloc_granted(
        &self,
        ptr: *mut u8,
        layout: Layout,
        new_size: usize,
    ) -> (*mut u8, Option<usize>) {
        // SAFETY: as in `realloc`.
        match unsafe { self.resize(ptr, layout, new_size) } {
            Ok(block) => (block.cast::<u8>().as_ptr(), Some(block.len())),
            Err(_) => (ptr::null_mut(), None),
        }
    }
    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: caller contract: `ptr` is a live block of `self`, so not null.
        unsafe { self.0.deallocate(NonNull::new_unchecked(ptr), layout) }
    }
    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller's contract.
        match unsafe { self.resize(ptr, layout, new_size) } {
            Ok(block) => block.cast::<u8>().as_ptr(),
            Err(_) => ptr::null_mut(),
        }
    }
}

impl<A: Allocator> Heap<A> {
    /// `grow` or `shrink` to `new_size`.
    ///
    /// # Safety
    /// As for [`Subject::realloc`].
    #[inline]
    unsafe fn resize(
        &self,
        ptr: *mut u8,
        layout: Layout,
        new_size: usize,
    ) -> Result<NonNull<[u8]>, AllocError> {
        // SAFETY: `layout.align()` is valid and `new_size` came from a
        // trace (far below isize::MAX).
        let new = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        // SAFETY: caller contract (live block with `layout`); grow gets a
        // larger size, shrink a smaller one.
        unsafe {
            let p = NonNull::new_unchecked(ptr);
            if new_size >= layout.size() {
                self.0.grow(p, layout, new)
            } else {
                self.0.shrink(p, layout, new)
            }
        }
    }
}

/// The [`Subject`] methods of a wrapper around a [`Heap`] (`self.0`) that
/// adds one capability (inspection, trimming) and passes the rest through.
macro_rules! forward_to_heap {
    () => {
        #[inline]
        fn alloc(&self, layout: Layout) -> *mut u8 {
            self.0.alloc(layout)
        }
        #[inline]
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: caller contract.
            unsafe { self.0.dealloc(ptr, layout) }
        }
        #[inline]
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            // SAFETY: caller contract.
            unsafe { self.0.realloc(ptr, layout, new_size) }
        }
        #[inline]
        fn alloc_granted(&self, layout: Layout) -> (*mut u8, Option<usize>) {
            self.0.alloc_granted(layout)
        }
        #[inline]
        unsafe fn realloc_granted(
            &self,
            ptr: *mut u8,
            layout: Layout,
            new_size: usize,
        ) -> (*mut u8, Option<usize>) {
            // SAFETY: caller contract.
            unsafe { self.0.realloc_granted(ptr, layout, new_size) }
        }
    };
}

/// A [`Heap`] whose blocks can be walked (`Inspect`): the replay reads
/// its external fragmentation.
///
/// ```
/// use freespace_bench::subjects::{Heap, Inspected, Subject};
/// use freespace_best_fit::BestFitHeap;
/// use freespace_source::Arena;
/// use std::alloc::Layout;
///
/// let mut buf = vec![0u8; 1 << 16];
/// // SAFETY: the buffer outlives the heap and nothing else uses it.
/// let arena = unsafe { Arena::from_raw_parts(buf.as_mut_ptr(), buf.len()) };
/// let heap = Inspected(Heap(BestFitHeap::new(arena)));
/// let layout = Layout::from_size_align(100, 16).unwrap();
/// let (p, granted) = heap.alloc_granted(layout);
/// assert!(!p.is_null() && granted >= Some(100));
/// let mut used = 0;
/// assert!(heap.inspect(&mut |b| used += (b.state == freespace_core::BlockState::Used) as usize));
/// assert_eq!(used, 1);
/// unsafe { heap.dealloc(p, layout) };
/// ```
pub struct Inspected<A>(pub Heap<A>);

impl<A: Allocator + Inspect> Subject for Inspected<A> {
    forward_to_heap!();
    fn inspect(&self, visit: &mut dyn FnMut(BlockInfo)) -> bool {
        self.0 .0.inspect(visit);
        true
    }
}

/// A [`Heap`] whose allocator can give memory back ([`Trim`]), with
/// [`Subject::trim`] calling [`Trim::trim`].
///
/// ```
/// use freespace_bench::subjects::{Heap, Subject, Trimmed};
/// let heap = Trimmed(Heap(freespace::stacks::general()));
/// let layout = std::alloc::Layout::from_size_align(100, 8).unwrap();
/// let p = heap.alloc(layout);
/// assert!(!p.is_null());
/// unsafe { heap.dealloc(p, layout) };
/// assert_eq!(heap.trim(), Some("Trim::trim"));
/// ```
pub struct Trimmed<A>(pub Heap<A>);

impl<A: Allocator + Trim> Subject for Trimmed<A> {
    forward_to_heap!();
    fn trim(&self) -> Option<&'static str> {
        self.0 .0.trim();
        Some("Trim::trim")
    }
}

/// A `&mut self` allocator made usable through `&self`: only ever touched
/// by one thread at a time (a single-threaded workload, or behind
/// [`Locked`]).
pub struct Excl<T>(UnsafeCell<T>);

impl<T> Excl<T> {
    fn new(inner: T) -> Self {
        Excl(UnsafeCell::new(inner))
    }

    /// # Safety
    /// No other reference from `get` is alive (the subject is used by one
    /// thread at a time, and no method re-enters).
    #[allow(clippy::mut_from_ref)]
    #[inline]
    unsafe fn get(&self) -> &mut T {
        // SAFETY: caller contract.
        unsafe { &mut *self.0.get() }
    }
}

// SAFETY: every `T` here is an allocator that owns its arena exclusively
// (raw pointers into memory nobody else uses); moving it to another thread
// moves that ownership with it. `Locked` serialises all access.
unsafe impl<T> Send for Excl<T> {}

/// Alloc, copy, free: a realloc for allocators that have none.
///
/// # Safety
/// As for [`Subject::realloc`].
unsafe fn move_block<S: Subject + ?Sized>(
    s: &S,
    ptr: *mut u8,
    layout: Layout,
    new_size: usize,
) -> *mut u8 {
    // SAFETY: valid alignment, size from a trace.
    let new = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
    let p = s.alloc(new);
    if !p.is_null() {
        // SAFETY: both blocks are live, distinct, and at least this long.
        unsafe {
            ptr::copy_nonoverlapping(ptr, p, layout.size().min(new_size));
            s.dealloc(ptr, layout);
        }
    }
    p
}

/// talc's arena type.
pub type Talc = talc::Talc<talc::ErrOnOom>;

impl Subject for Excl<Talc> {
    #[inline]
    fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: one user at a time (Excl); size > 0.
        match unsafe { self.get().malloc(layout) } {
            Ok(p) => p.as_ptr(),
            Err(()) => ptr::null_mut(),
        }
    }
    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: caller contract; one user at a time.
        unsafe { self.get().free(NonNull::new_unchecked(ptr), layout) }
    }
    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: caller contract; one user at a time.
        unsafe {
            let p = NonNull::new_unchecked(ptr);
            if new_size >= layout.size() {
                match self.get().grow(p, layout, new_size) {
                    Ok(p) => p.as_ptr(),
                    Err(()) => ptr::null_mut(),
                }
            } else {
                self.get().shrink(p, layout, new_size);
                ptr
            }
        }
    }
}

/// rlsf's TLSF: 28 first-level classes (blocks up to 8 GiB), 16 second-level.
pub type Tlsf = rlsf::Tlsf<'static, u32, u16, 28, 16>;

impl Subject for Excl<Tlsf> {
    #[inline]
    fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: one user at a time.
        match unsafe { self.get().allocate(layout) } {
            Some(p) => p.as_ptr(),
            None => ptr::null_mut(),
        }
    }
    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: caller contract; one user at a time.
        unsafe {
            self.get()
                .deallocate(NonNull::new_unchecked(ptr), layout.align())
        }
    }
    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: caller contract; one user at a time.
        unsafe {
            let new = Layout::from_size_align_unchecked(new_size, layout.align());
            match self.get().reallocate(NonNull::new_unchecked(ptr), new) {
                Some(p) => p.as_ptr(),
                None => ptr::null_mut(),
            }
        }
    }
}

impl Subject for Excl<linked_list_allocator::Heap> {
    #[inline]
    fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: one user at a time.
        match unsafe { self.get().allocate_first_fit(layout) } {
            Ok(p) => p.as_ptr(),
            Err(()) => ptr::null_mut(),
        }
    }
    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: caller contract; one user at a time.
        unsafe { self.get().deallocate(NonNull::new_unchecked(ptr), layout) }
    }
    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: caller contract.
        unsafe { move_block(self, ptr, layout, new_size) }
    }
}

/// buddy_system_allocator's heap, orders up to 2^31 bytes.
pub type Bsa = buddy_system_allocator::Heap<32>;

impl Subject for Excl<Bsa> {
    #[inline]
    fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: one user at a time.
        match unsafe { self.get().alloc(layout) } {
            Ok(p) => p.as_ptr(),
            Err(()) => ptr::null_mut(),
        }
    }
    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: caller contract; one user at a time.
        unsafe { self.get().dealloc(NonNull::new_unchecked(ptr), layout) }
    }
    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: caller contract.
        unsafe { move_block(self, ptr, layout, new_size) }
    }
}

/// dlmalloc's "system": one bump region over the shared arena, so dlmalloc
/// works in the same fixed memory as the other arena subjects. Segments it
/// asks for one after the other are contiguous, and dlmalloc merges them.
pub struct ArenaSystem {
    base: *mut u8,
    len: usize,
    used: Cell<usize>,
}

// SAFETY: the region is this system's alone; see `Excl`'s `Send`.
unsafe impl Send for ArenaSystem {}

// SAFETY: `alloc` hands out disjoint, in-bounds pieces of a region we own;
// nothing is ever released or remapped.
unsafe impl dlmalloc::Allocator for ArenaSystem {
    fn alloc(&self, size: usize) -> (*mut u8, usize, u32) {
        let used = self.used.get();
        if size > self.len - used {
            return (ptr::null_mut(), 0, 0);
        }
        self.used.set(used + size);
        // SAFETY: `used + size <= len`: in bounds of the region.
        (unsafe { self.base.add(used) }, size, 0)
    }
    fn remap(&self, _: *mut u8, _: usize, _: usize, _: bool) -> *mut u8 {
        ptr::null_mut()
    }
    fn free_part(&self, _: *mut u8, _: usize, _: usize) -> bool {
        false
    }
    fn free(&self, _: *mut u8, _: usize) -> bool {
        false
    }
    fn can_release_part(&self, _: u32) -> bool {
        false
    }
    fn allocates_zeros(&self) -> bool {
        false
    }
    fn page_size(&self) -> usize {
        4096
    }
}

/// dlmalloc over the shared arena.
pub type Dl = dlmalloc::Dlmalloc<ArenaSystem>;

impl Subject for Excl<Dl> {
    #[inline]
    fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: one user at a time; size > 0, align a power of two.
        unsafe { self.get().malloc(layout.size(), layout.align()) }
    }
    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: caller contract; one user at a time.
        unsafe { self.get().free(ptr, layout.size(), layout.align()) }
    }
    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: caller contract; one user at a time.
        unsafe {
            self.get()
                .realloc(ptr, layout.size(), layout.align(), new_size)
        }
    }
}

impl<T: Subject> Subject for Locked<T> {
    #[inline]
    fn alloc(&self, layout: Layout) -> *mut u8 {
        self.lock().alloc(layout)
    }
    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: caller contract.
        unsafe { self.lock().dealloc(ptr, layout) }
    }
    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: caller contract.
        unsafe { self.lock().realloc(ptr, layout, new_size) }
    }
    #[inline]
    fn alloc_granted(&self, layout: Layout) -> (*mut u8, Option<usize>) {
        self.lock().alloc_granted(layout)
    }
    #[inline]
    unsafe fn realloc_granted(
        &self,
        ptr: *mut u8,
        layout: Layout,
        new_size: usize,
    ) -> (*mut u8, Option<usize>) {
        // SAFETY: caller contract.
        unsafe { self.lock().realloc_granted(ptr, layout, new_size) }
    }
    fn trim(&self) -> Option<&'static str> {
        self.lock().trim()
    }
    fn inspect(&self, visit: &mut dyn FnMut(BlockInfo)) -> bool {
        self.lock().inspect(visit)
    }
}

/// Which family a subject belongs to.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Group {
    /// An allocator people use today.
    Anchor,
    /// One freespace block over an arena.
    Block,
    /// A freespace stack of blocks.
    Stack,
}

/// A subject's name and what it is.
pub struct Info {
    /// The name on the command line and in the tables.
    pub name: &'static str,
    /// What it is, for the docs.
    pub what: &'static str,
    /// Its family.
    pub group: Group,
    /// Runs in the shared fixed arena (so it takes part in the efficiency
    /// workload); otherwise it gets its memory from the OS itself.
    pub arena: bool,
}

const fn info(name: &'static str, what: &'static str, group: Group, arena: bool) -> Info {
    Info {
        name,
        what,
        group,
        arena,
    }
}

/// Every subject, in table order; glibc first (ratios are against it).
pub const SUBJECTS: &[Info] = &[
    info(
        "glibc",
        "`std::alloc::System` (glibc malloc)",
        Group::Anchor,
        false,
    ),
    info(
        "mimalloc",
        "`mimalloc::MiMalloc` (C mimalloc, built by the `mimalloc` crate)",
        Group::Anchor,
        false,
    ),
    info(
        "jemalloc",
        "`tikv_jemallocator::Jemalloc` (C jemalloc)",
        Group::Anchor,
        false,
    ),
    info(
        "dlmalloc",
        "`dlmalloc::Dlmalloc`, its system allocator a bump region of the arena",
        Group::Anchor,
        true,
    ),
    info(
        "talc",
        "`talc::Talc<ErrOnOom>` claiming the arena",
        Group::Anchor,
        true,
    ),
    info(
        "rlsf",
        "`rlsf::Tlsf<u32, u16, 28, 16>` over the arena",
        Group::Anchor,
        true,
    ),
    info(
        "linked_list_allocator",
        "`linked_list_allocator::Heap` over the arena (no realloc: alloc+copy+free)",
        Group::Anchor,
        true,
    ),
    info(
        "buddy_system_allocator",
        "`buddy_system_allocator::Heap<32>` over the arena (no realloc: alloc+copy+free)",
        Group::Anchor,
        true,
    ),
    info("first-fit", "`FirstFitHeap<Arena>`", Group::Block, true),
    info("next-fit", "`NextFitHeap<Arena>`", Group::Block, true),
    info("best-fit", "`BestFitHeap<Arena>`", Group::Block, true),
    info("worst-fit", "`WorstFitHeap<Arena>`", Group::Block, true),
    info("buddy", "`Buddy<Arena>`", Group::Block, true),
    info("general", "`freespace::stacks::General<Arena>` = `Slab<Tiered<Arena>, 16 KiB>`: slab classes 16 B–512 B, best fit above, a buddy for the slabs and the best-fit regions", Group::Stack, true),
    info("slab-buddy", "`freespace::stacks::SlabBuddy<Arena>` = `Slab<Buddy<Arena>>` (the textbook stack; `General` until issue 13)", Group::Stack, true),
    info("segregated-best-fit", "`freespace::stacks::SegregatedBestFit<Arena>` = `Segregated<BestFitHeap<Arena>>`", Group::Stack, true),
    info("threaded", "`Magazines<Locked<General<Arena>>>` (the `freespace::stacks::Threaded` stack, over the arena)", Group::Stack, true),
    info("general-mmap", "`freespace::stacks::general()` as shipped: `Slab<Tiered<Mmap>, 16 KiB>`, a fresh `Mmap` reservation per run (page faults included)", Group::Stack, false),
];

/// A workload, generic over the subject.
pub trait Visit {
    /// Runs on one thread.
    fn single<S: Subject>(&mut self, subject: &S);
    /// Runs on several threads.
    fn shared<S: Subject + Sync>(&mut self, subject: &S);
}

/// A page-aligned buffer, written once so its pages are resident: every
/// arena subject runs in (a prefix of) this same memory.
pub struct Memory {
    buf: Vec<u8>,
    offset: usize,
    len: usize,
}

impl Memory {
    /// `len` bytes, page-aligned and touched.
    pub fn new(len: usize) -> Self {
        Memory::aligned(len, 4096)
    }

    /// `len` bytes aligned to `align` (a power of two), touched: the
    /// replay gives its arena the alignment of its length, as a heap at the
    /// start of a fresh address range would have, so that the buddies are
    /// not cut into leading and trailing pieces at both ends.
    ///
    /// ```
    /// let m = freespace_bench::subjects::Memory::aligned(1 << 16, 1 << 16);
    /// assert_eq!((m.addr() % (1 << 16), m.len()), (0, 1 << 16));
    /// ```
    pub fn aligned(len: usize, align: usize) -> Self {
        let buf = vec![1u8; len + align];
        let offset = buf.as_ptr().align_offset(align);
        Memory { buf, offset, len }
    }

    /// The usable length.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the usable length is 0.
    ///
    /// ```
    /// assert!(!freespace_bench::subjects::Memory::new(4096).is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The address of the first byte (where every arena subject's arena
    /// starts).
    pub fn addr(&self) -> usize {
        self.buf.as_ptr().addr() + self.offset
    }

    fn base(&mut self) -> *mut u8 {
        // SAFETY: `offset + len` is within the buffer.
        unsafe { self.buf.as_mut_ptr().add(self.offset) }
    }
}

/// Builds subject `index` of [`SUBJECTS`] (arena ones over the first
/// `arena_len` bytes of `memory`) and hands it to `visit`: to
/// `visit.shared` if `threads`, behind `Locked` unless it is `Sync`.
///
/// The subject lives only for the call; an arena subject's memory is
/// `memory`'s, borrowed mutably for that time.
pub fn with_subject<V: Visit>(
    index: usize,
    memory: &mut Memory,
    arena_len: usize,
    threads: bool,
    visit: &mut V,
) {
    assert!(arena_len <= memory.len());
    let base = memory.base();
    let len = arena_len;
    let arena = || {
        // SAFETY: `base..base + len` is ours alone for this call (`memory`
        // is borrowed mutably), and the heap built on it is dropped before
        // the call returns; the same holds for every arena subject below.
        unsafe { Arena::from_raw_parts(base, len) }
    };

    macro_rules! run {
        (sync $s:expr) => {{
            let s = $s;
            if threads {
                visit.shared(&s)
            } else {
                visit.single(&s)
            }
        }};
        (local $s:expr) => {{
            if threads {
                visit.shared(&Locked::<_>::new($s))
            } else {
                visit.single(&$s)
            }
        }};
    }

    match SUBJECTS[index].name {
        "glibc" => run!(sync Global(System)),
        "mimalloc" => run!(sync Global(mimalloc::MiMalloc)),
        "jemalloc" => run!(sync Global(tikv_jemallocator::Jemalloc)),
        "dlmalloc" => run!(local Excl::new(dlmalloc::Dlmalloc::new_with_allocator(ArenaSystem {
            base,
            len,
            used: Cell::new(0),
        }))),
        "talc" => {
            let mut t = Talc::new(talc::ErrOnOom);
            // SAFETY: see above: the arena is ours for the subject's life.
            unsafe { t.claim(talc::Span::from_base_size(base, len)) }
                .expect("talc claims the arena");
            run!(local Excl::new(t))
        }
        "rlsf" => {
            let mut t = Tlsf::new();
            let block = NonNull::slice_from_raw_parts(NonNull::new(base).expect("not null"), len);
            // SAFETY: see above.
            unsafe { t.insert_free_block_ptr(block) }.expect("rlsf takes the arena");
            run!(local Excl::new(t))
        }
        "linked_list_allocator" => {
            let mut h = linked_list_allocator::Heap::empty();
            // SAFETY: see above.
            unsafe { h.init(base, len) };
            run!(local Excl::new(h))
        }
        "buddy_system_allocator" => {
            let mut h = Bsa::new();
            // SAFETY: see above.
            unsafe { h.init(base as usize, len) };
            run!(local Excl::new(h))
        }
        "first-fit" => run!(local Inspected(Heap(FirstFitHeap::new(arena())))),
        "next-fit" => run!(local Inspected(Heap(NextFitHeap::new(arena())))),
        "best-fit" => run!(local Inspected(Heap(BestFitHeap::new(arena())))),
        "worst-fit" => run!(local Inspected(Heap(WorstFitHeap::new(arena())))),
        "buddy" => run!(local Inspected(Heap(Buddy::<Arena>::new(arena())))),
        "general" => run!(local Inspected(Heap(freespace::stacks::general_over(arena())))),
        "slab-buddy" => run!(local Inspected(Heap(freespace::stacks::slab_buddy_over(arena())))),
        "segregated-best-fit" => run!(local Inspected(Heap(SegregatedBestFit::<Arena>::new(
            BestFitHeap::new(arena())
        )))),
        "threaded" => {
            let depot = Depot::new(Locked::<_>::new(freespace::stacks::general_over(arena())));
            let magazines = Magazines::new(&depot);
            run!(sync Heap(&magazines))
        }
        "general-mmap" => run!(local Trimmed(Heap(freespace::stacks::general()))),
        other => unreachable!("no subject named {other}"),
    }
}

/// The index of the subject called `name`.
pub fn index_of(name: &str) -> Option<usize> {
    SUBJECTS.iter().position(|s| s.name == name)
}
