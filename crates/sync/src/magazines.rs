//! [`Magazines`]: the thread-cache layer with its per-thread state in
//! `std::thread_local!`, ready to be a `#[global_allocator]`.
//!
//! Each thread has one fixed table of [`SLOTS`] racks, created with a
//! `const` initialiser (no allocation). A `Magazines` gets a process-unique
//! id the first time it is used, and a thread's rack for it is the slot
//! tagged with that id. When a thread exits, every rack goes to its
//! depot, so the memory of exited threads is not lost. A process-wide registry of live ids (a fixed array under a
//! [`DefaultLock`](crate::DefaultLock)) lets that destructor tell a live depot from
//! one whose `Magazines` is gone.
//!
//! ```text
//!   thread-local table            registry (lock)         depots
//!   ┌────┬───────────────┐        ┌──────────────┐
//!   │ id │ rack, &depot  │  ───▶  │ live ids     │   Magazines #3 ──▶ Depot A
//!   │  3 │ …             │        │ 3, 5, …      │   Magazines #5 ──▶ Depot B
//!   │  5 │ …             │        └──────────────┘
//!   └────┴───────────────┘
//! ```
//!
//! Nothing on the allocation path allocates through this layer itself: the
//! table is `const`-initialised and the registry is a fixed array. The
//! table has **no destructor**, so using it is a plain thread-local access
//! (no "initialised yet?" test, no "destroyed yet?" test on every request).
//! The flush on exit is the destructor of a second thread-local, an empty
//! guard, touched once per thread when its first rack is claimed.
//! Registering that destructor is the one allocation in sight, std's (on
//! Linux with glibc through `__cxa_thread_atexit_impl`, which calls
//! `calloc`). As a Rust `#[global_allocator]` that `calloc` is the C
//! library's own; but when this layer *is* the C `malloc` (an `LD_PRELOAD`
//! shim), it comes back here while the table is busy claiming the rack,
//! and a busy table sends the nested call on. When the table cannot be
//! used (a nested call, or a thread whose table was closed on exit) a
//! request goes straight to the depot's parent, which is always correct,
//! just slower.
//!
//! A process that forks while another thread is inside the layer would
//! copy its locks held; [`fork`] has the `pthread_atfork` handlers for the
//! registry lock (the depot and the parent are the caller's to quiesce).

extern crate std;

use core::cell::{Cell, UnsafeCell};
use core::ptr::NonNull;
use core::sync::atomic::{AtomicUsize, Ordering};

use freespace_core::alloc::{AllocError, Allocator, Layout};
use freespace_core::Batch;

use crate::cache::{front_allocator, Front};
use crate::depot::Depot;
use crate::magazine::Rack;
use crate::Locked;

/// Racks one thread keeps: the number of `Magazines` layers a thread can
/// cache for at once. Beyond that a layer serves the thread uncached.
pub const SLOTS: usize = 4;

/// `Magazines` alive at once that get thread caches; later ones run
/// uncached (straight to their depot's parent) until one is dropped.
pub const MAX_LIVE: usize = 64;

/// `id` of a layer that found the registry full: never cached.
const NO_CACHE: usize = usize::MAX;

/// `id` of a layer not used yet. Neither it nor [`NO_CACHE`] is ever a
/// slot's id, and a free slot's (0) is never a layer's, so the fast path
/// finds a layer's rack with one comparison of the two ids: every other
/// case fails it and is sorted out off the fast path ([`Magazines::first_use`]).
const UNREGISTERED: usize = usize::MAX - 1;

static NEXT_ID: AtomicUsize = AtomicUsize::new(1);
pub(crate) static REGISTRY: Locked<[usize; MAX_LIVE]> = Locked::new([0; MAX_LIVE]);

/// Thread caches over a shared [`Depot`], kept in thread-local storage: an
/// [`Allocator`] and a [`GlobalAlloc`](core::alloc::GlobalAlloc).
///
/// Requests of up to [`MAX_CACHED`](crate::MAX_CACHED) bytes (aligned to at
/// most 16) are served from the
/// calling thread's magazines, which exchange full and empty magazines with
/// the depot; larger ones go to the depot's parent. A block freed by
/// another thread goes into that thread's magazine (blocks of a class are
/// interchangeable). On thread exit the thread's magazines go to the
/// depot.
///
/// The depot is borrowed, so it cannot move or go away while threads hold
/// magazines for it:
///
/// ```
/// use freespace_core::alloc::{Global, Vec};
/// use freespace_sync::{Depot, Locked, Magazines};
///
/// // Any `Sync` allocator can be the parent; `Locked<Heap>` is the usual one.
/// static DEPOT: Depot<Global> = Depot::new(Global);
/// static HEAP: Magazines<'static, Global> = Magazines::new(&DEPOT);
/// // #[global_allocator] would make it the program's allocator.
///
/// let handles: Vec<_> = (0..2)
///     .map(|i| std::thread::spawn(move || {
///         let mut v = Vec::new_in(&HEAP);
///         v.extend(0..100u64 * i);
///         v.len()
///     }))
///     .collect();
/// for h in handles { h.join().unwrap(); }
/// DEPOT.check().unwrap();
/// ```
///
/// Dropping a `Magazines` returns the calling thread's magazines to the
/// depot; magazines other threads still hold for it are abandoned (their
/// blocks stay allocated in the parent). Threads that exited before the
/// drop have already returned theirs. Dropping the [`Depot`] returns
/// everything it holds to the parent.
///
/// # Re-entrancy
///
/// As for [`Locked`]: the parent must not allocate through this layer. If
/// it does anyway, the nested request bypasses the thread cache (it is
/// detected with a per-thread flag) instead of corrupting it.
///
/// # Invariants
/// - SYNC-G1: a thread's slot tagged `id` holds a rack of the `Magazines` with
///   that id, whose depot is at `slot.depot`; while `id` is in the
///   registry, that depot is alive and has not moved.
/// - SYNC-G2: a slot's rack is only touched by its thread, with `busy`
///   set, or with `busy` clear by a step that calls nothing (the pop or
///   push of the fast path), so that nothing can enter the table while it
///   runs.
// On a cache line of its own: every operation reads `id`, and a lock or
// counter that happened to share the line would make each of its writes a
// miss on every other core.
#[repr(align(64))]
pub struct Magazines<'d, P: Batch> {
    depot: &'d Depot<P>,
    id: AtomicUsize,
}

impl<'d, P: Batch> Magazines<'d, P> {
    /// Thread caches over `depot`; does no work (a `static` is fine).
    pub const fn new(depot: &'d Depot<P>) -> Self {
        Self {
            depot,
            id: AtomicUsize::new(UNREGISTERED),
        }
    }

    /// The shared depot.
    pub fn depot(&self) -> &'d Depot<P> {
        self.depot
    }

    /// Free blocks in the calling thread's magazines for this layer.
    ///
    /// ```
    /// # use freespace_core::alloc::{Allocator, Global, Layout};
    /// # use freespace_sync::{Depot, Magazines, REFILL};
    /// let depot = Depot::new(Global);
    /// let heap = Magazines::new(&depot);
    /// let l = Layout::new::<u64>();
    /// let p = heap.allocate(l).unwrap(); // one of a batch of REFILL from the parent
    /// unsafe { heap.deallocate(p.cast(), l) };
    /// assert_eq!(heap.cached_blocks(), REFILL);
    /// heap.flush();
    /// assert_eq!(heap.cached_blocks(), 0);
    /// ```
    pub fn cached_blocks(&self) -> usize {
        self.with_rack(|r| r.cached_blocks()).unwrap_or(0)
    }

    /// Hands the calling thread's magazines to the depot now.
    pub fn flush(&self) {
        self.with_rack(|r| r.flush(self.depot));
    }

    /// Checks the calling thread's rack (SYNC-R1, SYNC-M1, SYNC-M2).
    pub fn check(&self) -> Result<(), freespace_core::Violation> {
        self.with_rack(|r| r.check()).unwrap_or(Ok(()))
    }

    /// Registers this layer (a fresh id in the registry, or [`NO_CACHE`]
    /// if it is full) unless that is done; returns the id.
    #[cold]
    fn register(&self) -> usize {
        let mut live = REGISTRY.lock();
        let id = self.id.load(Ordering::Acquire);
        if id != UNREGISTERED {
            return id;
        }
        let id = match live.iter_mut().find(|slot| **slot == 0) {
            Some(slot) => {
                *slot = NEXT_ID.fetch_add(1, Ordering::Relaxed);
                *slot
            }
            None => NO_CACHE,
        };
        self.id.store(id, Ordering::Release);
        id
    }

    /// Runs `f` on the calling thread's rack for this layer; `None` when the
    /// thread has none to offer (table busy or destroyed, no free slot,
    /// registry full).
    #[inline(always)]
    fn with_rack<R>(&self, f: impl FnOnce(&mut Rack) -> R) -> Option<R> {
        self.with_slot(|slot| f(&mut slot.rack))
    }

    /// [`Front::alloc_class`] when the loaded magazine of slot 0 had no
    /// round at hand: the rack's full path (the previous magazine, the
    /// depot, a refill), else the depot's parent.
    #[inline(never)]
    fn alloc_class_slow(&self, class: usize) -> Option<NonNull<u8>> {
        match self.with_rack(|r| r.alloc(self.depot, class)) {
            Some(block) => block,
            None => self.depot.alloc_block(class),
        }
    }

    /// [`Front::free_class`] when the loaded magazine of slot 0 did not
    /// take the block: the rack's full path, else the depot's parent.
    ///
    /// # Safety
    /// As for [`Front::free_class`].
    #[inline(never)]
    unsafe fn free_class_slow(&self, class: usize, block: NonNull<u8>) {
        if self
            // SAFETY: the caller's contract, passed to exactly one of the two.
            .with_rack(|r| unsafe { r.free(self.depot, class, block) })
            .is_none()
        {
            // SAFETY: as above (the rack did not take the block).
            unsafe { self.depot.free_block(class, block) }
        }
    }

    /// Runs `f` on the calling thread's rack in slot 0 if that is this
    /// layer's and the table is not busy, without marking the table busy:
    /// the fast path of an allocation or a free (a round popped from, or
    /// pushed onto, the loaded magazine), two stores fewer than
    /// [`with_rack`](Self::with_rack). `None` when `f` gives `None` or the
    /// rack is not at hand that way; the caller then takes the full path.
    ///
    /// # Safety
    /// `f` calls nothing that can reach this thread's table (no allocator,
    /// no depot, no parent): SYNC-G2 for a step run with `busy` clear.
    #[inline(always)]
    unsafe fn with_rack_quick<R>(&self, f: impl FnOnce(&mut Rack) -> Option<R>) -> Option<R> {
        let id = self.id.load(Ordering::Acquire);
        TABLE
            .try_with(|table| {
                if table.busy.get() {
                    return None;
                }
                // SAFETY: SYNC-G2: this thread's table, not busy, so no
                // other `&mut` to the slots exists; `f` calls nothing
                // (caller), so none is made while this one lives.
                let slot = unsafe { &mut (*table.slots.get())[0] };
                if slot.id != id {
                    return None;
                }
                f(&mut slot.rack)
            })
            .ok()
            .flatten()
    }

    /// Runs `f` on the calling thread's slot for this layer, as
    /// [`with_rack`](Self::with_rack).
    #[inline(always)]
    fn with_slot<R>(&self, f: impl FnOnce(&mut Slot) -> R) -> Option<R> {
        // Read before the table: a registered layer's id never changes, and
        // any other value fails the comparisons below (see `UNREGISTERED`).
        let id = self.id.load(Ordering::Acquire);
        // `TABLE` has no destructor, so this is a plain thread-local access:
        // no state to test, nothing registered (see the module docs).
        // (`try_with` rather than `with`: it cannot fail here, and it has
        // no panic path to keep the call from being inlined.)
        TABLE
            .try_with(|table| {
                if table.busy.replace(true) {
                    // Re-entered from inside the rack, or the thread has
                    // flushed its table on exit (`Table::close`).
                    return None;
                }
                // SAFETY: SYNC-G2: this thread's table, `busy` was clear and is
                // now set, so no other `&mut` to the slots exists.
                let slots = unsafe { &mut *table.slots.get() };
                // A thread's first layer (most programs have one) is in slot
                // 0, and a matching id is a registered one.
                let slot = if slots[0].id == id {
                    Some(&mut slots[0])
                } else {
                    self.find(slots, id)
                };
                let result = slot.map(f);
                table.busy.set(false);
                result
            })
            .ok()
            .flatten()
    }

    /// This layer's slot in `slots`, `id` as read before the table: a
    /// search of the others, then (cold) [`first_use`](Self::first_use).
    #[inline(always)]
    fn find<'s>(&self, slots: &'s mut [Slot; SLOTS], id: usize) -> Option<&'s mut Slot> {
        match slots.iter().position(|s| s.id == id) {
            Some(i) => Some(&mut slots[i]),
            None => self.first_use(slots),
        }
    }

    /// The thread's first use of this layer: registering the layer if it is
    /// not yet, then claiming a free slot (or one of a dead layer); `None`
    /// for a layer that found the registry full, or when every slot is
    /// taken by a live layer.
    #[cold]
    #[inline(never)]
    fn first_use<'s>(&self, slots: &'s mut [Slot; SLOTS]) -> Option<&'s mut Slot> {
        let id = match self.id.load(Ordering::Acquire) {
            UNREGISTERED => self.register(),
            id => id,
        };
        if id == NO_CACHE {
            return None;
        }
        self.claim(slots, id)
    }

    #[cold]
    fn claim<'s>(&self, slots: &'s mut [Slot; SLOTS], id: usize) -> Option<&'s mut Slot> {
        // The thread's first rack: make sure its racks are flushed when it
        // exits. Registering the guard's destructor may allocate (glibc's
        // `__cxa_thread_atexit_impl` calls `calloc`); if that comes back
        // to this layer, it finds the table busy and goes to the parent.
        // Only `Err` once the thread's destructors have run, and then the
        // table is closed (busy) and this is never reached.
        let _ = EXIT.try_with(|_| ());
        let i = match slots.iter().position(|s| s.id == 0) {
            Some(i) => i,
            None => {
                let live = REGISTRY.lock();
                // A slot of a dropped layer: its magazines were abandoned
                // with it (see the type docs), forget them.
                slots.iter().position(|s| !live.contains(&s.id))?
            }
        };
        slots[i] = Slot {
            id,
            depot: (self.depot as *const Depot<P>).cast(),
            flush: flush_into::<P>,
            rack: Rack::new(),
        };
        Some(&mut slots[i])
    }
}

impl<P: Batch> Drop for Magazines<'_, P> {
    fn drop(&mut self) {
        let id = *self.id.get_mut();
        if id == UNREGISTERED || id == NO_CACHE {
            return;
        }
        // This thread's rack back to the depot and its slot free for the
        // next layer (slot 0, the fast one, in most programs); then the id
        // out of the registry: exiting threads stop flushing into the depot
        // after this, and their slots are claimed again as dead ones.
        self.with_slot(|slot| {
            slot.rack.flush(self.depot);
            slot.id = 0;
        });
        let mut live = REGISTRY.lock();
        if let Some(slot) = live.iter_mut().find(|s| **s == id) {
            *slot = 0;
        }
    }
}

impl<P: Batch> Front for Magazines<'_, P> {
    type Parent = P;
    #[inline]
    fn parent(&self) -> &P {
        self.depot.parent()
    }
    #[inline(always)]
    fn alloc_class(&self, class: usize) -> Option<NonNull<u8>> {
        // SAFETY: a pop calls nothing.
        if let Some(block) = unsafe { self.with_rack_quick(|r| r.pop_loaded(class)) } {
            return Some(block);
        }
        self.alloc_class_slow(class)
    }
    #[inline(always)]
    unsafe fn free_class(&self, class: usize, block: NonNull<u8>) {
        // SAFETY: a push calls nothing; the caller's contract is
        // `push_loaded`'s.
        if unsafe { self.with_rack_quick(|r| r.push_loaded(class, block).then_some(())) }.is_none()
        {
            // SAFETY: the caller's contract; the block was not taken.
            unsafe { self.free_class_slow(class, block) }
        }
    }
    #[cold]
    fn release(&self) {
        self.flush();
        self.depot.reap();
    }
    fn cached(&self, class: usize, block: NonNull<u8>) -> bool {
        self.with_rack(|r| r.holds(class, block)).unwrap_or(false) || self.depot.holds(class, block)
    }
}

front_allocator!(unsafe impl<P: Batch> Allocator for Magazines<'_, P>);

// SAFETY: `cache::try_deallocate` frees a live block into the parent, and
// an `Err` is either its own (nothing touched) or the parent's checked
// free's (nothing changed).
unsafe impl<P: freespace_core::CheckedFree + Batch> freespace_core::CheckedFree
    for Magazines<'_, P>
{
    /// The checked free: a double free of a round this thread (or the
    /// depot) holds is refused; everything else goes straight to the
    /// parent's checked free, bypassing the magazines. A double free whose
    /// first free sits in another thread's magazines is not seen.
    ///
    /// ```
    /// use freespace_core::alloc::{Allocator, Layout};
    /// use freespace_core::{CheckedFree, Corruption};
    /// use freespace_sync::{Depot, Locked, Magazines};
    /// use freespace_testkit::misuse::Tracked;
    ///
    /// let depot: Depot<Locked<Tracked>> = Depot::new(Locked::new(Tracked::new()));
    /// let heap = Magazines::new(&depot);
    /// let l = Layout::new::<[u64; 4]>();
    /// let p = heap.allocate(l).unwrap().cast::<u8>();
    /// // SAFETY: `p` is live with `l`, freed once; the second free is only checked.
    /// unsafe {
    ///     heap.deallocate(p, l); // into this thread's magazine
    ///     let addr = p.as_ptr() as usize;
    ///     assert_eq!(heap.try_deallocate(p, l), Err(Corruption::DoubleFree { addr }));
    /// }
    /// ```
    #[inline]
    unsafe fn try_deallocate(
        &self,
        ptr: NonNull<u8>,
        layout: Layout,
    ) -> Result<(), freespace_core::Corruption> {
        // SAFETY: the caller's contract.
        unsafe { crate::cache::try_deallocate(self, ptr, layout) }
    }
}

// SAFETY: through the `Allocator` impl (see `freespace_core::global`).
unsafe impl<P: Batch> core::alloc::GlobalAlloc for Magazines<'_, P> {
    freespace_core::forward_global_alloc!();
}

impl<P: Batch> core::fmt::Debug for Magazines<'_, P> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Magazines")
            .field("id", &self.id.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

// ---------------------------------------------------------------------------
// The thread-local table
// ---------------------------------------------------------------------------

/// One thread's rack for one layer (SYNC-G1).
struct Slot {
    /// 0: free.
    id: usize,
    depot: *const (),
    flush: unsafe fn(*const (), &mut Rack),
    rack: Rack,
}

/// # Safety
/// `depot` points to a live `Depot<P>` (SYNC-G1).
unsafe fn flush_into<P: Batch>(depot: *const (), rack: &mut Rack) {
    // SAFETY: the caller's contract.
    rack.flush(unsafe { &*depot.cast::<Depot<P>>() })
}

unsafe fn flush_nothing(_: *const (), _: &mut Rack) {}

struct Table {
    busy: Cell<bool>,
    slots: UnsafeCell<[Slot; SLOTS]>,
}

impl Table {
    const fn new() -> Self {
        const FREE: Slot = Slot {
            id: 0,
            depot: core::ptr::null(),
            flush: flush_nothing,
            rack: Rack::new(),
        };
        Self {
            busy: Cell::new(false),
            slots: UnsafeCell::new([FREE; SLOTS]),
        }
    }
}

impl Table {
    /// The thread is exiting: every rack of a live layer goes to its depot,
    /// and the table stays busy for good, so whatever the thread's later
    /// destructors allocate or free goes straight to the parent.
    fn close(&self) {
        if self.busy.replace(true) {
            // Inside the layer (cannot happen from a destructor) or closed.
            return;
        }
        // SAFETY: SYNC-G2: `busy` was clear and is now set for good, so no
        // other `&mut` to the slots exists or will.
        let slots = unsafe { &mut *self.slots.get() };
        for slot in slots {
            if slot.id == 0 {
                continue;
            }
            // Held across the flush, so the layer cannot be dropped (and its
            // depot with it) half-way through.
            let live = REGISTRY.lock();
            if live.contains(&slot.id) {
                // SAFETY: the id is live, so its depot is too (SYNC-G1).
                unsafe { (slot.flush)(slot.depot, &mut slot.rack) };
            }
            drop(live);
            slot.id = 0;
        }
    }
}

/// Closes the thread's table when the thread exits ([`Table::close`]).
struct ExitGuard;

impl Drop for ExitGuard {
    fn drop(&mut self) {
        TABLE.with(Table::close);
    }
}

std::thread_local! {
    /// The thread's racks. No destructor, so every use is a plain
    /// thread-local access that never registers one (which could
    /// allocate) and never finds the table destroyed.
    static TABLE: Table = const { Table::new() };
    /// Touched when the thread claims its first rack: its destructor
    /// flushes the racks on exit.
    static EXIT: ExitGuard = const { ExitGuard };
}

/// `pthread_atfork` handlers for a process whose `malloc` is a
/// [`Magazines`] layer.
///
/// A thread that exits takes the registry lock to flush its magazines; a
/// `fork()` at that moment would give the child a registry locked forever.
/// Call [`prepare`](fork::prepare) from the prepare handler (after making
/// sure no thread is inside the layer's depot or parent, which hold locks
/// of their own), and [`parent`](fork::parent) / [`child`](fork::child)
/// from the other two.
///
/// ```
/// freespace_sync::fork::prepare();
/// // fork() happens here
/// // SAFETY: `prepare` ran on this thread just before.
/// unsafe { freespace_sync::fork::parent() };
/// ```
pub mod fork {
    use super::REGISTRY;

    /// Takes the registry lock and keeps it across the fork.
    pub fn prepare() {
        core::mem::forget(REGISTRY.lock());
    }

    /// Releases the lock [`prepare`] took, in the parent.
    ///
    /// # Safety
    ///
    /// [`prepare`] ran on this thread, and neither `parent` nor [`child`]
    /// has run since.
    pub unsafe fn parent() {
        // SAFETY: held through the guard `prepare` forgot (caller).
        unsafe { REGISTRY.force_unlock() }
    }

    /// Releases the lock [`prepare`] took, in the child (whose only thread
    /// is the one that forked).
    ///
    /// # Safety
    ///
    /// As for [`parent`].
    pub unsafe fn child() {
        // SAFETY: as in `parent`: the child's one thread is the one that
        // took the lock.
        unsafe { REGISTRY.force_unlock() }
    }
}

impl<P: Batch + freespace_core::Check> freespace_core::Check for Magazines<'_, P> {
    /// The calling thread's magazines ([`check`](Magazines::check)), then the
    /// depot's whole stack. Other threads' magazines are theirs to check.
    fn check_all(&self) -> Result<(), freespace_core::Violation> {
        self.check()?;
        self.depot.check_all()
    }
}

/// Hands the calling thread's magazines to the depot
/// ([`flush`](Magazines::flush)), then trims the depot and everything below.
/// Other threads' magazines stay with them (and go back when they exit).
impl<P: Batch + freespace_core::Trim> freespace_core::Trim for Magazines<'_, P> {
    fn trim(&self) -> usize {
        self.flush();
        self.depot.trim()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use freespace_core::alloc::Global;

    /// The ids in the calling thread's slots.
    fn slot_ids() -> [usize; SLOTS] {
        TABLE.with(|table| {
            assert!(!table.busy.get());
            // SAFETY: not busy, and nothing else runs on this thread while
            // the ids are copied out.
            unsafe { &*table.slots.get() }.each_ref().map(|s| s.id)
        })
    }

    #[test]
    fn the_first_layer_sits_in_slot_0_and_a_dropped_one_frees_its_slot() {
        let depot = Depot::new(Global);
        let l = Layout::new::<[u64; 2]>();
        for _ in 0..SLOTS + 1 {
            let heap = Magazines::new(&depot);
            assert_eq!(heap.id.load(Ordering::Relaxed), UNREGISTERED);
            let p = heap.allocate(l).unwrap();
            // SAFETY: live, from `heap`.
            unsafe { heap.deallocate(p.cast(), l) };
            let id = heap.id.load(Ordering::Relaxed);
            assert!(id != UNREGISTERED && id != NO_CACHE && id != 0);
            // The one live layer on this thread: slot 0, the one the fast
            // path looks at, whatever layers came and went before it.
            assert_eq!(slot_ids()[0], id);
            drop(heap);
            assert!(
                !slot_ids().contains(&id),
                "the dropped layer's slot is free"
            );
        }
        depot.reap();
    }

    #[test]
    fn a_second_layer_finds_its_slot_after_the_first() {
        let depot = Depot::new(Global);
        let l = Layout::new::<[u64; 2]>();
        let (a, b) = (Magazines::new(&depot), Magazines::new(&depot));
        for _ in 0..3 {
            for heap in [&a, &b] {
                let p = heap.allocate(l).unwrap();
                // SAFETY: live, from `heap`.
                unsafe { heap.deallocate(p.cast(), l) };
                assert!(heap.cached_blocks() > 0, "cached in its own rack");
            }
        }
        let ids = slot_ids();
        assert_eq!(
            ids[..2],
            [a.id.load(Ordering::Relaxed), b.id.load(Ordering::Relaxed)]
        );
        drop((a, b));
        depot.reap();
    }
}
