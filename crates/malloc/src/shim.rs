//! The exported C functions, the stack behind them, and the per-call
//! bookkeeping (re-entrancy depth, fork gate, counters).
//!
//! # The stack
//!
//! freespace's threaded stack, spelled out here (the facade sits above this
//! crate, so it is built from the blocks):
//!
//! ```text
//!   thread.cache = ThreadCache<Locked<General<&Mmap>>>   per-thread magazines, classes 16 B … 16 KiB
//!   DEPOT = Depot<Locked<General<&Mmap>>>         full/empty magazines per class, one lock each
//!           Locked<…>                             one lock for the heap (spins briefly, then sleeps)
//!           Slab<…>                               size classes 16 B … 512 B, 16 KiB slabs
//!           Tiered<&Mmap>                         best fit for everything larger, in regions
//!                                                 from a buddy that also serves the slabs;
//!                                                 64 GiB reserved
//! ```
//!
//! (`General` is [`freespace::stacks::General`]; the `Mmap` is the static
//! [`MMAP`], lent to the buddy as `&MMAP`, so that `free` can range-check a
//! pointer against it without the lock.)
//!
//! The magazines are the thread-cache layer's explicit per-thread handle
//! (`ThreadCache`, the same racks and depot as its thread-local
//! `Magazines`), kept in the shim's own thread-local next to the re-entrancy
//! depth and the fork gate's slot: a call does one thread-local lookup, not
//! one per layer, and that lookup is two loads ([`crate::tls`]).
//!
//! `Mmap` and not `Sbrk` at the bottom: the C library's own code (and
//! anything calling `sbrk` directly) may move the program break, so the
//! heap keeps to its own reservation.
//!
//! # Re-entrancy
//!
//! glibc calls `malloc` from inside the shim's own first call on a thread:
//! registering a thread-local destructor (the one that flushes the
//! magazines at thread exit, the one that gives back the fork gate's slot)
//! goes through `__cxa_thread_atexit_impl`, which `calloc`s. A per-thread
//! depth counter (in a thread-local *without* destructor, so always
//! usable) sends such nested calls straight to the shared heap, marking
//! their blocks *direct* in the header so that `free` sends them back there
//! and not into a thread cache (a cache round must be exactly its class's
//! size; a heap block need not be). A bare block (no header, below) is
//! direct when its slab class is none of the magazines' ([`CACHED_CLASS`]). The same path serves the allocations
//! `pthread_atfork` makes while the shim registers its fork handlers.
//! Calls after a thread's magazines were flushed at its exit (from later
//! destructors) also go straight to the shared heap.
//!
//! # What the thread caches hold
//!
//! Blocks of up to [`CACHED_MAX`] bytes (4 KiB, the shim's header
//! included) go through the thread caches; larger ones are direct blocks
//! of the shared heap (its best-fit heap, which rounds to 16 bytes). C
//! programs keep many blocks just above a page — `malloc(4096)` is 4112
//! bytes with the header, sqlite's page cache entries 4384 — which a class
//! would round up (to 4352 and 4608 bytes: the magazines' classes are 256
//! bytes apart there) and a thread's magazines would hold idle, where at
//! their own size they go straight back to the heap. glibc draws the same
//! line lower: its tcache holds blocks of up to 1032 bytes.
//!
//! # Small blocks without a header
//!
//! Requests of up to [`BARE_MAX`] bytes (512, the slab's largest class)
//! aligned to at most 16 are *bare* blocks: slab objects handed out as they
//! are, no header. `free` finds their class in the slab's header through
//! [`MAP`] (`freespace_slab::ObjectMap`: the slab's identity word, fixed
//! while the slab lives, so no lock), and marks a freed one with the freed
//! tag in its second word ([`MARK`]), so double frees are still named
//! (see [`crate::header`] and docs/malloc.md).
//!
//! # The first blocks of a class: the small heap
//!
//! A slab class makes a page resident for its first object, so the first
//! few KiB of each class's requests ([`small::admits`]) come instead from
//! the small heap ([`small`]), with a header marking them *small*, packed
//! among blocks of every other size; `free` sends them back there. Once a
//! class has served [`small::COLD_BYTES`] that way, its blocks are bare
//! slab objects as above.
//!
//! # The fast path
//!
//! `malloc` and `free` inline the common case ([`Fast`]): one thread-local
//! lookup, three checks (not nested, magazines live, a gate slot of its
//! own), the gate's store and load, the header (or a bare block's mark),
//! and a pop from or a push to the loaded magazine (`ThreadCache::try_allocate_loaded`,
//! `try_deallocate_loaded`, which call nothing). Everything else — a
//! nested call, a thread's first or last calls, an empty or full magazine
//! — is out of line and cold ([`Call`]), and passes the gate again.

use core::cell::Cell;
use core::cell::UnsafeCell;
use core::ffi::{c_int, c_void};
use core::mem::MaybeUninit;
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use freespace::stacks::{GENERAL_CLASSES, GENERAL_SLAB_SIZE};
use freespace::ObjectMap;
use freespace_core::alloc::{AllocError, Allocator, Layout};
use freespace_core::layout::with_addr;
use freespace_core::source::CLEAR_BY_DECOMMIT;
use freespace_core::{report, Corruption, Owns, Trim};
use freespace_source::Mmap;
use freespace_sync::{Depot, ThreadCache};

use crate::extras;
use crate::fork;
use crate::header::{memalign_align, page_round, posix_align_ok, Bad, Block, Header, Plan};
use crate::header::{BARE_MAX, HEADER, MIN_ALIGN};
use crate::small;
use crate::stats::{self, Counter};
use crate::trace;

/// The name corruption reports carry: `freespace: double free at 0x… (malloc)`.
///
/// ```
/// use freespace_core::Corruption;
/// let line = Corruption::DoubleFree { addr: 0x10 }.message(freespace_malloc::NAME);
/// assert_eq!(&*line, "freespace: double free at 0x10 (malloc)");
/// ```
pub const NAME: &str = "malloc";

/// The shared heap: freespace's [`stacks::Shared`](freespace::stacks::Shared)
/// (a slab over a best-fit heap and a buddy, behind one lock) over the shim's own `mmap`
/// reservation, so a change of that stack's shape reaches the shim too.
///
/// ```
/// let shared: &freespace_malloc::Shared = freespace_malloc::shared();
/// assert!(shared.check().is_ok(), "the lock is free between calls");
/// ```
pub type Shared = freespace::stacks::Shared<&'static Mmap>;

/// Address space the heap reserves: `Mmap`'s default (64 GiB), or 4 GiB
/// with the `valgrind` feature (valgrind refuses the larger reservation).
const RESERVE: usize = if cfg!(feature = "valgrind") {
    4 << 30
} else {
    freespace_source::mmap::DEFAULT_RESERVE
};

/// The one reservation every block of the shim lies in. Its own static,
/// so that `free` can range-check a pointer against it
/// ([`Mmap::committed_range`], no lock) before reading any header.
pub(crate) static MMAP: Mmap = Mmap::with_reserve(RESERVE);

/// Where the shared heap's slab lays out its objects: how `free` learns the
/// class of a bare block (no header) from its address alone.
pub(crate) static MAP: ObjectMap<GENERAL_SLAB_SIZE> = ObjectMap::new(GENERAL_CLASSES);

/// For each class of [`MAP`]: whether its size is one of the thread caches'
/// classes ([`freespace_sync::is_class_size`]). A bare block of another
/// class (the slab's finer classes, which only a block from the shared
/// heap itself has) goes back to the shared heap, never into a magazine,
/// whose rounds must be exactly its class's size.
pub(crate) static CACHED_CLASS: [bool; GENERAL_CLASSES.len()] = {
    let mut cached = [false; GENERAL_CLASSES.len()];
    let mut c = 0;
    while c < GENERAL_CLASSES.len() {
        cached[c] = freespace_sync::is_class_size(GENERAL_CLASSES[c]);
        c += 1;
    }
    cached
};

// Every bare block is a slab object (the slab serves every size up to
// its largest class, 16-aligned: its classes are multiples of 16).
const _: () = assert!(BARE_MAX == GENERAL_CLASSES[GENERAL_CLASSES.len() - 1]);

static DEPOT: Depot<Shared> = Depot::new(freespace::stacks::shared_over(&MMAP));

/// The shared heap behind the thread caches, for inspection (its `check`,
/// `HeapSummary`): every block the shim hands out lives in it, but for
/// the first blocks of each slab class, which live in the small heap
/// ([`with_small_heap`]).
///
/// ```
/// let shared = freespace_malloc::shared();
/// shared.lock().check().unwrap();
/// ```
pub fn shared() -> &'static Shared {
    DEPOT.parent()
}

/// Sets the heap's purge budget: after each `mib` MiB freed, the free
/// blocks of 1 MiB or more of the best-fit heap and of the buddy give their
/// pages back (`0`: never; the default is 64). The library's constructor calls it with `FREESPACE_MALLOC_PURGE`.
///
/// ```
/// freespace_malloc::set_purge_mib(16);
/// assert_eq!(freespace_malloc::shared().lock().parent().purge_after(), 16 << 20);
/// freespace_malloc::set_purge_mib(64);
/// ```
pub fn set_purge_mib(mib: usize) {
    let bytes = match mib {
        0 => usize::MAX,
        n => n.saturating_mul(1 << 20),
    };
    shared().lock().parent().set_purge_after(bytes);
}

/// Checks every layer of the stack — the calling thread's magazines, the
/// depot, the slab, the best-fit heap and the buddy — and the fork gate's invariant MALLOC-F1 as
/// seen from outside (no call in flight). Meant for quiescent points: with
/// other threads allocating, the gate's counts move under it.
///
/// ```
/// unsafe { freespace_malloc::free(freespace_malloc::malloc(100)) };
/// freespace_malloc::check().unwrap();
/// ```
pub fn check() -> Result<(), freespace_core::Violation> {
    let call = Call::begin();
    let stack = call
        .cache()
        .map_or(Ok(()), Cache::check)
        .and_then(|()| DEPOT.check())
        .and_then(|()| {
            let heap = shared().lock();
            heap.check().and_then(|()| heap.parent().check())?;
            // SAFETY: the shared heap's lock is held (MALLOC-C1).
            unsafe { small::heap() }.check()
        });
    drop(call);
    stack?;
    fork::check_quiescent()
}

/// Runs `f` inside a call, as glibc's own allocations during the shim's
/// first use on a thread are: every allocation `f` makes is nested.
#[cfg(test)]
pub(crate) fn nested<R>(f: impl FnOnce() -> R) -> R {
    let call = Call::begin();
    let r = f();
    drop(call);
    r
}

/// Whether `p`'s block came straight from the shared heap.
///
/// # Safety
/// `p` is a live block of the shim.
#[cfg(test)]
pub(crate) unsafe fn is_direct(p: *mut c_void) -> bool {
    // SAFETY: the caller's contract.
    unsafe { block_of(NonNull::new(p.cast()).unwrap(), key()) }.is_some_and(|b| b.direct)
}

/// Whether `p` came from the small heap (a cold class's block).
///
/// # Safety
/// `p` is a live block of the shim.
#[cfg(test)]
pub(crate) unsafe fn is_small(p: *mut c_void) -> bool {
    // SAFETY: the caller's contract.
    unsafe { block_of(NonNull::new(p.cast()).unwrap(), key()) }.is_some_and(|b| b.small)
}

/// Hands the calling thread's cached blocks to the depot, and everything
/// the depot holds back to the heap.
#[cfg(test)]
pub(crate) fn trim() {
    let call = Call::begin();
    if let Some(cache) = call.cache() {
        cache.flush();
    }
    drop(call);
    DEPOT.reap();
}

// ---------------------------------------------------------------------------
// Per-thread state and the call guard
// ---------------------------------------------------------------------------

/// A thread's magazines: freespace-sync's explicit per-thread handle on
/// the shared [`DEPOT`], kept in [`ThreadState`] with the rest of the thread's
/// state, so a call finds everything it needs with one thread-local lookup.
type Cache = ThreadCache<'static, Shared>;

/// `ThreadState::cache_state`: the thread has not used its magazines yet.
const NEW: u8 = 0;
/// `ThreadState::cache_state`: [`exit_flush`] is registered; the magazines
/// are in use.
const LIVE: u8 = 1;
/// `ThreadState::cache_state`: the thread is exiting and its magazines were
/// flushed; its calls go straight to the shared heap.
const GONE: u8 = 2;

/// What the shim keeps per thread: the re-entrancy depth, the fork gate's
/// slot, the tracing state and the thread's magazines. No destructor (the
/// magazines are flushed by [`exit_flush`], registered with the C library
/// on the thread's first call), so the state is usable at every point of a
/// thread's life, its exit included, and reaching it is a plain address
/// computation ([`crate::tls`]).
///
/// # Invariants
/// - MALLOC-S0: all-zero bytes are a thread's initial state ([`ThreadState::zero`]):
///   `depth` 0, `slot` [`fork::UNCLAIMED`], no gate, `cache_state` [`NEW`],
///   `cache` uninitialised, tracing unset. So a thread's state needs no
///   constructor: zero-filled thread-local storage (`.tbss`) is it.
/// - MALLOC-S1: `depth` is the number of calls of this thread inside the shim.
/// - MALLOC-S2: `cache` is initialised when `cache_state` leaves [`NEW`],
///   and only used by a call at depth 1 (never by a nested one) while
///   `cache_state` is [`LIVE`]; nothing such a call does re-enters the shim,
///   so the handle is never reached twice at once (`ThreadCache`'s SYNC-T1).
/// - MALLOC-S3: `cache_state` goes [`NEW`] → [`LIVE`] → [`GONE`], never back. It
///   is [`LIVE`] only while [`exit_flush`] is registered for this thread
///   and has not run; it flushes `cache` to the depot before setting
///   [`GONE`]. So every block the magazines hold reaches the depot when the
///   thread exits.
/// - MALLOC-S4: `epoch` is this thread's *reuse stamp*: its id (from
///   [`THREAD_IDS`], unique per thread, in the top [`THREAD_ID_BITS`]
///   bits; 0 until the magazines are live) and a count. It changes on every
///   call that is not a fast one ([`Call::begin`]: anything that may move
///   a block between the loaded magazines and the rest of the stack) and on
///   every fast allocation of a block whose user pointer is neither 16
///   bytes in nor at its start (a bare block, whose stamp is its third
///   word: another placement of the header over the same memory). So a
///   freed block stamped with the current epoch was written by this thread's own
///   fast `free` since then, and the block has stayed in a loaded magazine,
///   untouched by anyone, ever since: the write-after-free check
///   ([`reused`]).
pub(crate) struct ThreadState {
    /// Calls of this thread inside the shim (more than one: re-entered).
    depth: Cell<u32>,
    /// The complement of this thread's slot in the fork gate (so that 0 is
    /// `fork::UNCLAIMED`, MALLOC-S0): see [`slot`](Self::slot).
    slot_not: Cell<usize>,
    /// The fork gate's stripe for this thread, when it has no slot.
    pub(crate) stripe: Cell<usize>,
    /// This thread is forking: it passes the closed gate.
    pub(crate) forking: Cell<bool>,
    /// The slot a call enters the gate on without further checks (the fork
    /// gate's MALLOC-F4).
    pub(crate) gate: Cell<Option<&'static fork::Slot>>,
    /// [`NEW`], [`LIVE`] or [`GONE`] (MALLOC-S3).
    cache_state: Cell<u8>,
    /// The reuse stamp (MALLOC-S4).
    epoch: Cell<usize>,
    /// The thread's tracing state (`FREESPACE_TRACE`).
    pub(crate) trace: trace::Mine,
    /// The thread's magazines (MALLOC-S2). Never dropped: [`exit_flush`]
    /// empties them, and an empty handle owns nothing.
    cache: UnsafeCell<MaybeUninit<Cache>>,
}

impl ThreadState {
    /// A thread's initial state: all zeros (MALLOC-S0).
    // SAFETY: every field is valid as zeros: integers, `bool`, an
    // `Option<&_>` (`None`), `MaybeUninit`, and `trace::Mine` (integers).
    // (On x86-64 the zero-filled `.tbss` block is this value, and only the
    // tests name it.)
    #[cfg(any(test, not(target_arch = "x86_64")))]
    pub(crate) const fn zero() -> ThreadState {
        // SAFETY: as above.
        unsafe { core::mem::zeroed() }
    }

    /// This thread's slot in the fork gate, or `fork::UNCLAIMED`,
    /// `fork::NO_SLOT`.
    #[inline(always)]
    pub(crate) fn slot(&self) -> usize {
        !self.slot_not.get()
    }

    /// Sets what [`slot`](Self::slot) returns.
    #[inline(always)]
    pub(crate) fn set_slot(&self, slot: usize) {
        self.slot_not.set(!slot);
    }

    /// Whether the thread has not used its magazines yet ([`NEW`]).
    #[cfg(test)]
    pub(crate) fn is_new(&self) -> bool {
        self.cache_state.get() == NEW
    }

    /// The thread's magazines, once `cache_state` has left [`NEW`].
    ///
    /// # Safety
    ///
    /// `cache_state` is not [`NEW`] (MALLOC-S2: then `cache` is initialised).
    #[inline(always)]
    unsafe fn cache(&self) -> &Cache {
        // SAFETY: initialised (caller); never written again.
        unsafe { (*self.cache.get()).assume_init_ref() }
    }
}

/// Flushes the thread's magazines to the depot when it exits, *through
/// the fork gate* (a fork at that moment cannot copy a depot or heap lock
/// held by the exiting thread), and sends the thread's later calls (from
/// destructors that run after this one) straight to the shared heap
/// (MALLOC-S3). Registered on the thread's first call, before its
/// magazines hold anything.
extern "C" fn exit_flush(_: *mut c_void) {
    let call = Call::begin();
    // A thread does not exit from inside `malloc`, so this call is not
    // nested and the magazines are this call's (MALLOC-S2).
    if let Some(cache) = call.cache() {
        cache.flush();
    }
    trace::thread_exit();
    // SAFETY: as in `Call::drop`.
    if let Some(t) = unsafe { call.thread.as_ref() } {
        t.cache_state.set(GONE);
    }
    drop(call);
}

/// Bits of a reuse stamp holding the thread's id (MALLOC-S4); the count has the
/// rest (40 bits: a thread would need 2^40 slow calls to wrap it).
const THREAD_ID_BITS: u32 = 24;

/// The next thread id for reuse stamps (MALLOC-S4); ids start at 1, so a stamp is
/// never 0 (nor a small number: a live header's `len` never equals one).
static THREAD_IDS: AtomicUsize = AtomicUsize::new(1);

/// Turns the write-after-free check on or off: a fast `free` leaves a
/// canary in the block and a reuse stamp in its header, and a fast
/// `malloc` that gets the block back before this thread's next slow call
/// checks the canary. Off by default: the check reads the header of every
/// block a fast `malloc` hands out, and for a block never used before that
/// read is the first touch of its page, which then faults twice (a read
/// maps the zero page, the write that follows copies it): with 8 threads
/// each allocating 100 MB it made the shim about three times slower
/// (`bench/threads.c`). The library's constructor turns it on when
/// `FREESPACE_MALLOC_REUSE_CHECK=1`.
///
/// ```
/// freespace_malloc::set_reuse_check(true);
/// freespace_malloc::set_reuse_check(false);
/// ```
pub fn set_reuse_check(on: bool) {
    extras::set(extras::REUSE, on);
}

/// One call inside the shim: counted by the fork gate, and told whether it
/// may use the thread's magazines.
struct Call {
    /// How the call passed the fork gate (`Through` for a nested call: it
    /// did not).
    pass: fork::Pass,
    /// The thread's magazines when this call may use them (MALLOC-S2), else null:
    /// a nested call, or a thread whose magazines are not live.
    cache: *const Cache,
    /// This thread's state, for the depth count in `drop` (null: the
    /// thread-local was unavailable). Raw pointers: `Call` stays on its
    /// thread (`!Send`), within one call.
    thread: *const ThreadState,
}

impl Call {
    /// Enters the shim: one thread-local lookup, the depth count (MALLOC-S1), the
    /// fork gate. Every case (`malloc` and `free` try [`Fast`] first).
    #[inline]
    fn begin() -> Call {
        // SAFETY: null or this thread's `ThreadState` (TLS-1), which has no
        // destructor and so lives as long as the thread.
        let Some(t) = (unsafe { crate::tls::get().as_ref() }) else {
            // A thread-local without destructor is never unavailable; if it
            // were, the shared heap is always a correct place to go.
            return Call {
                pass: fork::Pass::Through,
                cache: ptr::null(),
                thread: ptr::null(),
            };
        };
        // MALLOC-S4: this call may move blocks in or out of the loaded
        // magazines.
        t.epoch.set(t.epoch.get().wrapping_add(1));
        let depth = t.depth.get();
        t.depth.set(depth + 1);
        if depth == 0 && t.cache_state.get() == LIVE {
            // An outermost call on a thread whose magazines are set up (so
            // `first_use` has run).
            return Call {
                pass: fork::enter(t),
                // SAFETY: `LIVE`, so initialised (MALLOC-S2).
                cache: unsafe { t.cache() },
                thread: t,
            };
        }
        Call::begin_slow(t, depth)
    }

    /// A nested call, the thread's first call, or a call after the
    /// thread's magazines are gone.
    #[cold]
    fn begin_slow(t: &ThreadState, depth: u32) -> Call {
        if depth > 0 {
            // Inside an outer call, which holds the gate already.
            return Call {
                pass: fork::Pass::Through,
                cache: ptr::null(),
                thread: t,
            };
        }
        if !READY.load(Ordering::Acquire) {
            first_use();
        }
        let pass = fork::enter(t);
        if t.cache_state.get() == NEW {
            // SAFETY: `cache_state` is `NEW`, so nothing uses `cache`
            // (MALLOC-S2); it is initialised before it leaves `NEW`.
            unsafe { (*t.cache.get()).write(ThreadCache::new(&DEPOT)) };
            // Inside the call: the C library's allocation for the
            // registration is a nested one. If it fails, the magazines are
            // never used.
            let registered = crate::tls::at_thread_exit(exit_flush, ptr::null_mut());
            t.cache_state.set(if registered { LIVE } else { GONE });
            // MALLOC-S4: the thread's id (ids wrap after 2^24 threads).
            let id = THREAD_IDS.fetch_add(1, Ordering::Relaxed);
            t.epoch.set(id << (usize::BITS - THREAD_ID_BITS));
        }
        Call {
            pass,
            cache: if t.cache_state.get() == LIVE {
                // SAFETY: `LIVE`, so initialised (MALLOC-S2).
                unsafe { t.cache() }
            } else {
                ptr::null()
            },
            thread: t,
        }
    }

    /// The thread's magazines, if this call may use them (MALLOC-S2).
    #[inline(always)]
    fn cache(&self) -> Option<&Cache> {
        // SAFETY: `cache` is null or this thread's `ThreadState::cache`, which
        // lives as long as the thread (a thread-local without destructor);
        // only this call, the outermost, uses it (MALLOC-S2).
        unsafe { self.cache.as_ref() }
    }
}

impl Drop for Call {
    #[inline(always)]
    fn drop(&mut self) {
        fork::leave(&self.pass);
        // SAFETY: `thread` is null or this thread's `ThreadState`, a thread-local
        // without destructor, which lives as long as the thread; the `Call`
        // never leaves the thread (it is `!Send`).
        if let Some(t) = unsafe { self.thread.as_ref() } {
            t.depth.set(t.depth.get().saturating_sub(1));
        }
    }
}

/// The common case of a call, inlined: an outermost call on a thread
/// whose magazines are live (MALLOC-S3) and which owns a slot of the fork gate
/// (its `gate`, MALLOC-F4). One thread-local lookup, three checks, the gate's
/// store, fence and load; ended by `drop`. Every other case goes through
/// [`Call`].
struct Fast {
    /// This thread's state (a raw pointer, as in [`Call`]).
    thread: *const ThreadState,
    slot: &'static fork::Slot,
}

impl Fast {
    /// Begins the call if it is the common case; `None` (and nothing done)
    /// otherwise, a fork under way included: the fast path does not wait
    /// for it ([`fork::try_enter_slot`]), the full path does.
    #[inline(always)]
    fn begin() -> Option<Fast> {
        Fast::begin_on(Fast::thread())
    }

    /// The calling thread's state, for [`begin_on`](Self::begin_on): the
    /// thread-local lookup alone (two loads, [`crate::tls`]), so that a
    /// caller can make it before it has values to keep across it.
    #[inline(always)]
    fn thread() -> *const ThreadState {
        crate::tls::get()
    }

    /// [`begin`](Self::begin) with the state from [`thread`](Self::thread),
    /// on the same thread.
    #[inline(always)]
    fn begin_on(thread: *const ThreadState) -> Option<Fast> {
        // SAFETY: null or this thread's `ThreadState` (caller), which has no
        // destructor and so lives as long as the thread; the reference
        // does not outlive this function.
        let t = unsafe { thread.as_ref() }?;
        if t.depth.get() != 0 || t.cache_state.get() != LIVE {
            return None;
        }
        let slot = t.gate.get()?;
        t.depth.set(1);
        if !fork::try_enter_slot(slot) {
            t.depth.set(0);
            return None;
        }
        Some(Fast { thread, slot })
    }

    /// The thread's magazines: this call is the outermost one and they are
    /// live, so they are its own (MALLOC-S2).
    #[inline(always)]
    fn cache(&self) -> &Cache {
        // SAFETY: as in `Call::drop`: `thread` is this thread's state,
        // whose `cache_state` was `LIVE` in `begin_on`, so `cache` is
        // initialised (MALLOC-S2).
        unsafe { (*self.thread).cache() }
    }
}

impl Drop for Fast {
    #[inline(always)]
    fn drop(&mut self) {
        fork::leave_slot(self.slot);
        // SAFETY: as in `cache`.
        unsafe { (*self.thread).depth.set(0) };
    }
}

static READY: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// The first call in the process: the header key, the fork handlers.
#[cold]
fn first_use() {
    key();
    fork::register_once();
    READY.store(true, Ordering::Release);
}

// ---------------------------------------------------------------------------
// The header key, errno, the page size
// ---------------------------------------------------------------------------

static KEY: AtomicU64 = AtomicU64::new(0);

/// The process's secret for header seals: the kernel's 16 random bytes
/// (`AT_RANDOM`), folded with where this library was loaded.
#[inline(always)]
fn key() -> u64 {
    match KEY.load(Ordering::Relaxed) {
        0 => init_key(),
        k => k,
    }
}

/// The header key if it has been drawn, without drawing it: a load and a
/// test, and no call. It has been by the time a fast path can be taken
/// (`first_use` draws it before any thread's magazines are live).
#[inline(always)]
fn drawn_key() -> Option<u64> {
    match KEY.load(Ordering::Relaxed) {
        0 => None,
        k => Some(k),
    }
}

#[cold]
#[inline(never)]
fn init_key() -> u64 {
    // SAFETY: `getauxval` has no preconditions; `AT_RANDOM` is the address
    // of 16 bytes the kernel placed on the initial stack, valid for the
    // life of the process (or 0 where there are none).
    let random = unsafe { libc::getauxval(libc::AT_RANDOM) } as *const u64;
    let mut k = (&KEY as *const AtomicU64).addr() as u64 ^ 0x6672_6565_7370_6163;
    if !random.is_null() {
        // SAFETY: see above; read unaligned, the kernel promises no alignment.
        k ^= unsafe { random.read_unaligned() };
    }
    let k = k | 1; // never 0, which means "not yet"
    match KEY.compare_exchange(0, k, Ordering::Relaxed, Ordering::Relaxed) {
        Ok(_) => k,
        Err(first) => first,
    }
}

fn set_errno(code: c_int) {
    // SAFETY: `__errno_location` returns this thread's `errno`.
    unsafe { *libc::__errno_location() = code };
}

fn errno() -> c_int {
    // SAFETY: as in `set_errno`.
    unsafe { *libc::__errno_location() }
}

static PAGE: AtomicUsize = AtomicUsize::new(0);

fn page_size() -> usize {
    match PAGE.load(Ordering::Relaxed) {
        0 => {
            // SAFETY: `sysconf` has no preconditions and does not allocate.
            let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
            let page = if page > 0 && (page as usize).is_power_of_two() {
                page as usize
            } else {
                4096
            };
            PAGE.store(page, Ordering::Relaxed);
            page
        }
        page => page,
    }
}

// ---------------------------------------------------------------------------
// The core: allocate, free, resize, all in terms of the header
// ---------------------------------------------------------------------------

/// The header slot of user pointer `p`.
///
/// # Safety
/// `p` is at least [`HEADER`] bytes into an allocation (true of every
/// pointer the shim returns; a foreign pointer is the caller's bug, as with
/// any `free`).
#[inline(always)]
unsafe fn header_of(p: NonNull<u8>) -> NonNull<Header> {
    // SAFETY: the caller's contract.
    unsafe { p.sub(HEADER) }.cast()
}

/// The mark slot of bare block `p` ([`MARK`]: its second word).
///
/// # Safety
/// `p` starts a slab object of at least 16 bytes (every bare block).
#[inline(always)]
unsafe fn mark_of(p: NonNull<u8>) -> NonNull<usize> {
    // SAFETY: the caller's contract: bytes 8..16 of the object are in it,
    // and 8-aligned (the object is 16-aligned).
    unsafe { p.add(MARK) }.cast()
}

/// Allocates `size` bytes aligned to `align` (a power of two). `None` on
/// failure; never touches `errno`.
#[inline(always)]
fn allocate(size: usize, align: usize, zero: bool) -> Option<NonNull<u8>> {
    let plan = Plan::new(size, align)?;
    if zero && size >= CLEAR_BY_DECOMMIT {
        // Large and zeroed: the stack clears it without writing it (pages
        // decommitted read as zeros), so `calloc(1, 1 GiB)` touches a page.
        return allocate_zeroed_large(size, align);
    }
    // The common case: a round from the loaded magazine.
    let user = match from_loaded(&plan, key(), extras::on(extras::REUSE)) {
        Some(user) => user,
        None => allocate_slow(size, align)?,
    };
    if zero {
        // SAFETY: the `size` bytes after `user` are in the block (`place`).
        unsafe { user.write_bytes(0, size) };
    }
    Some(user)
}

/// The largest block (the shim's header included) the thread caches
/// serve; larger ones come straight from the shared heap, at their own size
/// rounded to 16 bytes rather than to a magazine class (see the module
/// docs, "What the thread caches hold"). Checked only where a block enters
/// the caches (`allocate_slow`, `resize`): the fast paths need no check,
/// since a class above it never gets a round, so its loaded magazine stays
/// empty, and a block above it is direct, so `free` never offers it.
pub(crate) const CACHED_MAX: usize = 4096;

// A large zeroed block is never a cached size (`allocate_zeroed_large`).
const _: () = assert!(CLEAR_BY_DECOMMIT > CACHED_MAX);

/// [`allocate`]'s call when it is not the common case (or the loaded
/// magazine was empty, or the request is not a cached class): through the
/// thread's magazines if this call may use them, else straight from the
/// shared heap (a *direct* block). Takes the request, not the plan: two
/// registers rather than a copy on the stack in the fast path.
#[cold]
#[inline(never)]
fn allocate_slow(size: usize, align: usize) -> Option<NonNull<u8>> {
    let plan = &Plan::new(size, align)?;
    if plan.is_bare() && small::admits(size) {
        if let Some(user) = allocate_small(size) {
            return Some(user);
        }
    }
    let call = Call::begin();
    let (block, direct) = match call.cache() {
        Some(cache) if plan.layout.size() <= CACHED_MAX => (cache.allocate(plan.layout), false),
        _ => (shared().allocate(plan.layout), true),
    };
    drop(call);
    // SAFETY: a fresh block for `plan.layout`, direct if from the shared heap.
    Some(unsafe { place(block.ok()?, plan, direct) })
}

/// A request of a cold class ([`small::admits`]): `size` bytes with a
/// header from the small heap, marked so that `free` sends it back there.
/// `None` if the small heap cannot serve it (the caller then asks the
/// slab).
#[cold]
#[inline(never)]
fn allocate_small(size: usize) -> Option<NonNull<u8>> {
    let plan = Plan::headed(size, MIN_ALIGN)?;
    let block = with_small_heap(|heap| heap.allocate(plan.layout)).ok()?;
    // SAFETY: the block is at least `plan.layout.size() = 16 + size`
    // bytes (MALLOC-P2), so `base + 16` and the `size` bytes after it are
    // in it.
    let user = unsafe { block.cast::<u8>().add(plan.offset) };
    // SAFETY: `user` is 16 bytes into the block and 16-aligned: its header
    // slot is the block's.
    unsafe {
        header_of(user).write(Header::live_small(
            key(),
            user.as_ptr().addr(),
            block.len(),
            plan.offset.trailing_zeros(),
        ))
    };
    Some(user)
}

/// Runs `f` on the small heap (the first blocks of each slab class,
/// [`small`]), under the shared heap's lock (MALLOC-C1): every use of the
/// small heap but those already holding that lock goes through here, and
/// so can inspection (its `check`, its blocks).
///
/// ```
/// freespace_malloc::with_small_heap(|heap| heap.check()).unwrap();
/// ```
pub fn with_small_heap<R>(f: impl FnOnce(&small::SmallHeap) -> R) -> R {
    let call = Call::begin();
    let guard = shared().lock();
    // SAFETY: the shared heap's lock is held while `f` runs (MALLOC-C1).
    let r = f(unsafe { small::heap() });
    drop(guard);
    drop(call);
    r
}

/// [`allocate`] of `size >= CLEAR_BY_DECOMMIT` zeroed bytes: the stack's
/// `allocate_zeroed` (the buddy decommits the block's whole pages, so they
/// read as zeros without being written or made resident), then the header.
#[cold]
#[inline(never)]
fn allocate_zeroed_large(size: usize, align: usize) -> Option<NonNull<u8>> {
    let plan = &Plan::new(size, align)?;
    let call = Call::begin();
    // Never a cached size (`CLEAR_BY_DECOMMIT` is far above `CACHED_MAX`).
    let direct = shared().allocate_zeroed(plan.layout);
    drop(call);
    // SAFETY: a fresh block for `plan.layout`, all zeros, from the shared
    // heap; `place` writes only the header, before the user bytes.
    Some(unsafe { place(direct.ok()?, plan, true) })
}

/// Bytes of the canary a fast `free` writes at the start of a block it
/// stamps (MALLOC-S4): the freed tag again, checked when the block is reused.
const CANARY: usize = core::mem::size_of::<usize>();

/// The write-after-free check of a round the fast path just popped from
/// this thread's loaded magazine, before its header is written: if the
/// freed header there carries the thread's current reuse stamp (MALLOC-S4), the
/// block was freed by this thread's fast `free` and has lain in the
/// magazine since, so the canary that `free` wrote at its start must still
/// be there; if it is not, something wrote through a dangling pointer
/// (reported as [`Corruption::WriteAfterFree`]; a handler that returns
/// gets the block handed out all the same). A block placed with its user
/// pointer elsewhere than 16 bytes in changes the stamp instead (MALLOC-S4).
///
/// Catches writes into the first 8 bytes of a freed block reused by the
/// same thread before its next slow call: the immediate reuse (LIFO) of a
/// block of the same size class, where a dangling pointer's write would
/// corrupt the new owner's data.
///
/// # Safety
/// `block` is a fresh round of at least `plan.layout.size()` bytes from
/// the loaded magazine; `thread` is the calling thread's state.
#[cold]
#[inline(never)]
unsafe fn reused(block: NonNull<[u8]>, plan: &Plan, thread: *const ThreadState) {
    // SAFETY: the caller's contract: this thread's `ThreadState`, alive as long
    // as the thread.
    let t = unsafe { &*thread };
    let (user, stamp) = if plan.is_bare() {
        if block.len() < BARE_STAMPED {
            return;
        }
        let user = block.cast::<u8>();
        // SAFETY: the block is at least `BARE_STAMPED` bytes, ours (a
        // fresh round), 16-aligned: its third word is the stamp's.
        (user, unsafe { user.cast::<usize>().add(2).read() })
    } else if plan.offset == MIN_ALIGN {
        // SAFETY: the block is at least `offset = 16` bytes, all of them ours
        // (a fresh round), 16-aligned: the header slot of `base + 16`.
        let user = unsafe { block.cast::<u8>().add(MIN_ALIGN) };
        // SAFETY: as above.
        (user, unsafe { header_of(user).read() }.len)
    } else {
        t.epoch.set(t.epoch.get().wrapping_add(1));
        return;
    };
    if stamp == t.epoch.get() {
        // SAFETY: a stamp of the current epoch was written by this
        // thread's fast `free` of this very block (MALLOC-S4), which stamps
        // only blocks with `CANARY` bytes at the user pointer, and wrote
        // them: the freed tag.
        let canary = unsafe { user.cast::<usize>().read() };
        if canary != Header::freed_tag(key(), user.as_ptr().addr()) {
            report(
                Corruption::WriteAfterFree {
                    addr: user.as_ptr().addr(),
                },
                NAME,
            );
        }
    }
}

/// The smallest bare block a fast `free` stamps (MALLOC-S4): three words,
/// the canary, the freed mark ([`MARK`]) and the stamp.
const BARE_STAMPED: usize = 3 * core::mem::size_of::<usize>();

/// Offset of a freed bare block's mark: its second word, which holds the
/// freed tag from its `free` until it is handed out again (cleared then).
/// The slab writes nothing into a free object, so the mark is the shim's
/// alone; the first word holds the canary of a stamped block.
const MARK: usize = core::mem::size_of::<usize>();

/// Writes the header of a fresh `block` served for `plan` and returns the
/// user pointer, `plan.offset` bytes into it (so `plan.layout.size() -
/// plan.offset` bytes after it are the user's).
///
/// # Safety
/// `block` is a fresh block the stack returned for `plan.layout` (from the
/// shared heap itself if `direct`), not yet handed to anyone.
#[inline(always)]
unsafe fn place(block: NonNull<[u8]>, plan: &Plan, direct: bool) -> NonNull<u8> {
    // SAFETY: the caller's contract, and the process's key.
    unsafe { place_keyed(block, plan, direct, key()) }
}

/// [`place`] with the header key given (`malloc`'s fast path reads it
/// without drawing it: [`drawn_key`]).
///
/// # Safety
/// As [`place`]; `key` is [`key`]'s value.
#[inline(always)]
unsafe fn place_keyed(block: NonNull<[u8]>, plan: &Plan, direct: bool, key: u64) -> NonNull<u8> {
    let base = block.cast::<u8>();
    if plan.is_bare() {
        // SAFETY: a bare block is a slab object of at least 16 bytes,
        // 16-aligned (its class), all of it ours: clear the mark a `free`
        // of its previous life left, or the next `free` would take it for
        // a double free.
        unsafe { mark_of(base).write(0) };
        return base;
    }
    // SAFETY: the block is at least `plan.layout.size() = offset + size`
    // bytes (MALLOC-P2), so `base + offset` and the `size` bytes after it are in it.
    let user = unsafe { base.add(plan.offset) };
    let shift = plan.offset.trailing_zeros();
    // SAFETY: `user` is `offset >= HEADER` bytes into the block (MALLOC-P1), and
    // aligned to 16, as `Header` needs.
    unsafe {
        header_of(user).write(Header::live(
            key,
            user.as_ptr().addr(),
            block.len(),
            shift,
            direct,
        ))
    };
    user
}

/// The block at user pointer `p`: a bare block if `p` is an object of the
/// slab ([`MAP`]; its mark, the second word, says whether it was freed),
/// else what its header says, checked against the process's `key` (from
/// [`key`]); reports (and returns `None`) when it is not a live block of
/// ours.
///
/// A pointer outside the committed part of the shim's reservation (or in
/// its first 16 bytes, where no header can be) is a *foreign pointer*,
/// reported without reading anything: `free((void *)0x10)`, or of the
/// first byte of a mapping whose previous page is unmapped, must not fault.
///
/// The slab is asked first: a bare block has no header, and the 16 bytes
/// before it are its neighbour's, whatever they hold. A block with a
/// header is never taken for a slab object: it is a block of the heap
/// below the slab (whose slab-aligned address below it is no live slab's,
/// so its identity does not match, SLAB-S4), or one over-aligned block
/// inside a slab object, which starts no object.
///
/// # Safety
/// Any pointer: memory is read only once it is known to lie in the shim's
/// committed memory. For a pointer that is no live block of ours, another
/// thread may be writing what is read (a report may then misname it).
#[inline(always)]
unsafe fn block_of(p: NonNull<u8>, key: u64) -> Option<Block> {
    // SAFETY: the caller's contract.
    match unsafe { decode_block(p, key) } {
        Ok(block) => Some(block),
        Err(fault) => {
            report(fault.corruption(p), NAME);
            None
        }
    }
}

/// What [`decode_block`] found wrong with a pointer: which report
/// [`block_of`] makes.
#[derive(Clone, Copy)]
enum Fault {
    /// Not 16-aligned.
    Misaligned,
    /// Outside the committed part of the reservation.
    Foreign,
    /// A slab object or a header with the freed tag.
    DoubleFree,
    /// A header that matches nothing: [`unknown`] tells what it is.
    Unknown,
}

impl Fault {
    /// The corruption to report for `p`.
    #[cold]
    fn corruption(self, p: NonNull<u8>) -> Corruption {
        let addr = p.as_ptr().addr();
        match self {
            Fault::Misaligned => Corruption::MisalignedPointer { addr },
            Fault::Foreign => Corruption::ForeignPointer { addr },
            Fault::DoubleFree => Corruption::DoubleFree { addr },
            Fault::Unknown => unknown(p),
        }
    }
}

/// [`block_of`] without the report: the block at `p`, or what is wrong
/// with it. Calls nothing, for `free`'s fast path.
///
/// # Safety
/// As [`block_of`].
#[inline(always)]
unsafe fn decode_block(p: NonNull<u8>, key: u64) -> Result<Block, Fault> {
    let addr = p.as_ptr().addr();
    if addr % MIN_ALIGN != 0 {
        return Err(Fault::Misaligned);
    }
    let ours = MMAP.committed_range();
    if addr < ours.start.saturating_add(HEADER) || addr >= ours.end {
        return Err(Fault::Foreign);
    }
    if addr & !(GENERAL_SLAB_SIZE - 1) >= ours.start {
        // SAFETY: the slab-aligned address below `p` lies in the
        // committed part (from its start up to `p`), readable (Mmap's M5);
        // a live block's slab header is not written while it lives
        // (SLAB-S4), and for other pointers see above.
        if let Some(class) = unsafe { MAP.class_of(p) } {
            // SAFETY: `p` starts an object of at least 16 bytes, 16-aligned.
            let mark = unsafe { mark_of(p).read() };
            if mark == Header::freed_tag(key, addr) {
                return Err(Fault::DoubleFree);
            }
            return Ok(Block {
                len: MAP.classes()[class],
                shift: MIN_ALIGN.trailing_zeros(),
                direct: !CACHED_CLASS[class],
                small: false,
                bare: true,
            });
        }
    }
    // SAFETY: `addr - 16 .. addr` lies in the reservation's committed part,
    // readable (Mmap's M5); 16-aligned, so aligned for `Header`.
    let header = unsafe { header_of(p).read() };
    match header.decode(key, addr) {
        Ok(block) => Ok(block),
        Err(Bad::Freed) => Err(Fault::DoubleFree),
        Err(Bad::Unknown) => Err(Fault::Unknown),
    }
}

/// What a header that matches nothing means: outside the heap, a pointer
/// that was never ours; a header in a block the heap holds as free, a
/// double free (the best-fit heap's or the buddy's free-list links
/// overwrote the freed tag of a block it took back: every block above the
/// slab's classes, whose header is the block's first 16 bytes); otherwise
/// a header overwritten (or a pointer into the middle of a block).
#[cold]
fn unknown(p: NonNull<u8>) -> Corruption {
    let addr = p.as_ptr().addr();
    let call = Call::begin();
    let heap = shared().lock();
    // SAFETY: the shared heap's lock is held (MALLOC-C1).
    let small = unsafe { small::heap() };
    // The header's own address: the block's start when its alignment is
    // 16 (every `malloc`), where the heaps write their links. The lookup
    // reads only the heaps' own metadata (the buddy's bitmaps, the
    // best-fit heaps' chunk headers), never the block.
    let header = with_addr(p, addr - HEADER);
    let found = if small.owns(p) {
        header.map(|h| small.block_at(h))
    } else if heap.owns(p) {
        header.map(|h| heap.parent().block_at(h))
    } else {
        Some(Err(Corruption::ForeignPointer { addr }))
    };
    let what = match found {
        Some(Err(Corruption::DoubleFree { .. })) => Corruption::DoubleFree { addr },
        Some(Err(Corruption::ForeignPointer { .. })) => Corruption::ForeignPointer { addr },
        _ => Corruption::OverwrittenHeader { addr },
    };
    drop(heap);
    drop(call);
    what
}

/// Frees the live block `block` at user pointer `p`; `reuse_check` is
/// whether the write-after-free check runs ([`extras::REUSE`], which
/// `free`'s fast path knows to be off without reading it again).
///
/// # Safety
/// `block` was decoded from `p`'s header with `key`, and the block is not
/// used again; `thread` is [`Fast::thread`] of the calling thread.
#[inline(always)]
unsafe fn free_block(
    p: NonNull<u8>,
    block: Block,
    key: u64,
    thread: *const ThreadState,
    reuse_check: bool,
) {
    // SAFETY: `Header::decode` returns only shapes that make a valid
    // `Layout` (MALLOC-H1, its shape check), and `block` came from it or
    // is a slab object (16-aligned, its class's size) (caller).
    let layout = unsafe { Layout::from_size_align_unchecked(block.len, block.align()) };
    let tag = Header::freed_tag(key, p.as_ptr().addr());
    // SAFETY: a live header sits before `p`, or `p` is a bare block of at
    // least 16 bytes (caller): the freed tag goes in its header, or in its
    // second word (its mark).
    unsafe {
        if block.bare {
            mark_of(p).write(tag);
        } else {
            header_of(p).write(Header::freed_stamped(tag, 0));
        }
    }
    // SAFETY: the block starts `offset` bytes before `p` (MALLOC-H1, or
    // bare: at `p`).
    let base = unsafe { p.sub(block.offset()) };
    if !block.direct {
        if let Some(call) = Fast::begin_on(thread) {
            // MALLOC-S4: on the fast path, stamped with this thread's epoch and a
            // canary when the block has room for it; checked if this
            // thread's fast path reuses it before its next slow call
            // (`reused`). If the push below fails, the slow call changes
            // the epoch and the stamp means nothing.
            if reuse_check {
                // SAFETY: `call.thread` is this thread's state; `p` is
                // the freed block's user pointer, 16-aligned.
                unsafe { stamp(p, &block, tag, (*call.thread).epoch.get()) };
            }
            // SAFETY: the block came from the thread caches with a layout of
            // this alignment and returned length `len` (MALLOC-H1; a bare
            // block of a cached class is exactly that class's size), so
            // `layout` fits it; any thread's magazines take any block of
            // the depot's classes.
            if unsafe { call.cache().try_deallocate_loaded(base, layout) } {
                return;
            }
        }
    }
    // SAFETY: as above.
    unsafe { free_slow(base, layout, block) }
}

/// Leaves the write-after-free check's canary (the freed `tag`) at `p` and
/// the reuse `stamp` (MALLOC-S4) where [`reused`] looks: the header's `len`
/// slot, or a bare block's third word. Blocks without room for both are
/// left alone.
///
/// # Safety
/// `p` is the user pointer of `block`, just freed by this thread's fast
/// path (its header or mark already written).
#[inline(always)]
unsafe fn stamp(p: NonNull<u8>, block: &Block, tag: usize, stamp: usize) {
    let words = p.cast::<usize>();
    // SAFETY: the block has room for what is written (checked), `p` is
    // 16-aligned; the header slot is ours and `Header` is `repr(C)` with
    // `len` first.
    unsafe {
        if block.bare {
            if block.len >= BARE_STAMPED {
                words.write(tag);
                words.add(2).write(stamp);
            }
        } else if block.len >= block.align() + CANARY {
            header_of(p).cast::<usize>().write(stamp);
            words.write(tag);
        }
    }
}

/// [`free_block`]'s call when it is not the common case (or the loaded
/// magazine was full, or the block is not a cached class).
///
/// # Safety
/// `base` is the start of the live block `block` of the shim, and
/// `layout` fits it.
#[cold]
#[inline(never)]
unsafe fn free_slow(base: NonNull<u8>, layout: Layout, block: Block) {
    if block.small {
        // SAFETY: the block came from the small heap with this layout
        // (MALLOC-H1).
        return with_small_heap(|heap| unsafe { heap.deallocate(base, layout) });
    }
    let call = Call::begin();
    // SAFETY: the block came from the stack with a layout of this alignment
    // and returned length `len` (MALLOC-H1), so `layout` fits it. A thread-cache
    // block may also go straight to the shared heap: the cache asked it for
    // exactly `len` bytes (a class's size) at this alignment.
    unsafe {
        match call.cache() {
            Some(cache) if !block.direct => cache.deallocate(base, layout),
            _ => shared().deallocate(base, layout),
        }
    }
}

/// `realloc` for a live `p` and `size > 0`. Null (and the block untouched)
/// on failure.
///
/// # Safety
/// `p` is a live block of the shim.
unsafe fn resize(p: NonNull<u8>, size: usize) -> Option<NonNull<u8>> {
    // SAFETY: the caller's contract.
    let block = unsafe { block_of(p, key()) }?;
    let usable = block.usable();
    // Room already, and not wasting more than half of it: stay.
    if size <= usable && (size >= usable / 2 || block.len <= 64) {
        return Some(p);
    }
    let plan = Plan::new(size, block.align())?;
    let call = Call::begin();
    // A direct block resizes in the shared heap and stays direct; a cached
    // one in the thread caches while it stays a cached size. Anything else
    // (a cached block growing past `CACHED_MAX`, a bare block, which
    // the slab would move anyway, a block becoming bare, or a re-entrant
    // call) moves by hand.
    let headed = !block.bare && !block.small && !plan.is_bare();
    let moved = if headed && block.direct {
        // SAFETY: `p` is live and direct: it came from the shared heap
        // (MALLOC-H1).
        unsafe { resize_in(shared(), p, &block, &plan) }
    } else if let Some(cache) = call
        .cache()
        .filter(|_| headed && plan.layout.size() <= CACHED_MAX)
    {
        // SAFETY: `p` is live and came from the thread caches (MALLOC-H1;
        // any thread's handle takes any block of the depot's classes).
        unsafe { resize_in(cache, p, &block, &plan) }
    } else {
        drop(call);
        let Some(q) = allocate(size, block.align(), false) else {
            // A shrink that cannot move keeps the larger block.
            return (size <= usable).then_some(p);
        };
        // SAFETY: both blocks are live and distinct; `p` has `usable`
        // bytes, `q` has `size`.
        unsafe { ptr::copy_nonoverlapping(p.as_ptr(), q.as_ptr(), size.min(usable)) };
        // SAFETY: decoded from `p` above; not used again.
        unsafe { free_block(p, block, key(), Fast::thread(), extras::on(extras::REUSE)) };
        return Some(q);
    };
    drop(call);
    // A shrink that cannot move keeps the larger block.
    moved.or_else(|| (size <= usable).then_some(p))
}

/// Resizes the live block at `p` to `plan` through `from`, the allocator it
/// came from (the shared heap for a direct block, the thread caches for
/// another); the block keeps its kind. `None`, with the block live and
/// unchanged, if `from` cannot.
///
/// # Safety
/// `p` is a live block of the shim, decoded as `block`, that came from
/// `from` with `block.layout()`; `plan` has the block's alignment.
unsafe fn resize_in<A: Allocator + ?Sized>(
    from: &A,
    p: NonNull<u8>,
    block: &Block,
    plan: &Plan,
) -> Option<NonNull<u8>> {
    let old = block.layout()?;
    // SAFETY: `p` is live; until the resize ends the block is ours alone.
    // Marked freed first: if the block moves, its old place is freed by the
    // stack at once and may belong to another thread right after.
    unsafe { header_of(p).write(Header::freed(key(), p.as_ptr().addr())) };
    // SAFETY: the block came from `from` with `old` (caller); `plan.layout`
    // has the same alignment and a size on the right side of `old`'s.
    let moved: Result<NonNull<[u8]>, AllocError> = unsafe {
        if plan.layout.size() > block.len {
            from.grow(p.sub(block.align()), old, plan.layout)
        } else {
            from.shrink(p.sub(block.align()), old, plan.layout)
        }
    };
    let (at, len) = match moved {
        // SAFETY: as in `allocate`: the user pointer is `offset` into a
        // block of at least `offset + size` bytes.
        Ok(new) => (unsafe { new.cast::<u8>().add(plan.offset) }, new.len()),
        // Untouched by the failed resize: live again.
        Err(AllocError) => (p, block.len),
    };
    // SAFETY: the header slot before `at` is ours (as in `allocate`).
    unsafe {
        header_of(at).write(Header::live(
            key(),
            at.as_ptr().addr(),
            len,
            block.shift,
            block.direct,
        ))
    };
    moved.is_ok().then_some(at)
}

/// `allocate` with the C conventions: null and `errno = ENOMEM` on failure.
#[inline(always)]
fn c_allocate(size: usize, align: usize, zero: bool, counter: Counter) -> *mut c_void {
    match allocate(size, align, zero) {
        Some(p) => {
            stats::count(counter, size);
            if trace::on() {
                trace::alloc(p, size, align);
            }
            p.as_ptr().cast()
        }
        None => {
            stats::count(counter, 0);
            stats::count(Counter::Failed, 0);
            set_errno(libc::ENOMEM);
            ptr::null_mut()
        }
    }
}

// ---------------------------------------------------------------------------
// The C malloc family
// ---------------------------------------------------------------------------

/// `malloc(3)`: `size` bytes aligned to 16, or null with `errno = ENOMEM`.
/// `malloc(0)` returns a unique pointer that `free` accepts.
///
/// # Safety
/// Always safe to call; `unsafe` for the C ABI's sake (the result must be
/// freed once, with [`free`]).
///
/// ```
/// use freespace_malloc::{free, malloc};
/// unsafe {
///     let p = malloc(100).cast::<u8>();
///     assert!(!p.is_null() && p as usize % 16 == 0);
///     p.write_bytes(7, 100);
///     let (a, b) = (malloc(0), malloc(0));
///     assert!(!a.is_null() && a != b);
///     free(p.cast());
///     free(a);
///     free(b);
/// }
/// ```
#[cfg_attr(not(any(test, feature = "unexported")), no_mangle)]
pub unsafe extern "C" fn malloc(size: usize) -> *mut c_void {
    if extras::none() {
        if let Some(user) = malloc_fast(size) {
            return user.as_ptr().cast();
        }
    }
    malloc_general(size)
}

/// `malloc`'s common case, when no [`extras`] are on: a round from the
/// loaded magazine of the thread's outermost call, placed. `None` (and
/// nothing done) otherwise — the header key not yet drawn, a nested or
/// first call, a fork under way, an empty magazine, a class the
/// magazines do not hold — and [`malloc_general`] does it all.
///
/// It calls nothing, so `malloc` keeps its values in scratch registers and
/// saves none on entry (its only call is the jump to `malloc_general`):
/// the fork gate does not wait here ([`Fast::begin_on`]), and the key is
/// read, not drawn.
#[inline(always)]
fn malloc_fast(size: usize) -> Option<NonNull<u8>> {
    let plan = Plan::new(size, MIN_ALIGN)?;
    from_loaded(&plan, drawn_key()?, false)
}

/// A round from the loaded magazine of the thread's outermost call, for
/// `plan`, placed with the header key `key` (the call ends before the
/// block is placed: the header is the block's own business); `reuse_check`
/// is whether the write-after-free check runs ([`extras::REUSE`], which
/// `malloc`'s fast path knows to be off). `None`, with nothing done, when
/// the call is not the common case or the magazine is empty.
#[inline(always)]
fn from_loaded(plan: &Plan, key: u64, reuse_check: bool) -> Option<NonNull<u8>> {
    let call = Fast::begin()?;
    let block = call.cache().try_allocate_loaded(plan.layout)?;
    if reuse_check {
        // SAFETY: a fresh round from this thread's loaded magazine, and
        // `call.thread` is this thread's state.
        unsafe { reused(block, plan, call.thread) };
    }
    drop(call);
    // SAFETY: a fresh block for `plan.layout`, from the thread caches;
    // `key` is the process's key (caller).
    Some(unsafe { place_keyed(block, plan, false, key) })
}

/// `malloc` in full: [`c_allocate`], out of line so that `malloc`'s fast
/// path is a leaf.
#[inline(never)]
fn malloc_general(size: usize) -> *mut c_void {
    c_allocate(size, MIN_ALIGN, false, Counter::Malloc)
}

/// `free(3)`: gives back a block from this shim; `free(NULL)` does
/// nothing. A pointer whose header is not a live block's is reported
/// through [`freespace_core::report`] (by default: the message
/// `freespace: double free at 0x… (malloc)`, or `foreign pointer`,
/// `overwritten header`, `misaligned pointer`, then `abort()`).
///
/// # Safety
/// `p` is null or a live pointer from this shim's allocation functions,
/// not used after.
///
/// ```
/// unsafe {
///     freespace_malloc::free(core::ptr::null_mut());
///     let p = freespace_malloc::malloc(10);
///     freespace_malloc::free(p);
/// }
/// ```
#[cfg_attr(not(any(test, feature = "unexported")), no_mangle)]
pub unsafe extern "C" fn free(p: *mut c_void) {
    let Some(p) = NonNull::new(p.cast::<u8>()) else {
        return;
    };
    match drawn_key() {
        // As `malloc_fast`: with no extras on and the key drawn, `free`
        // calls nothing but (in tail position) the slow paths, so it saves
        // few registers (and tells `free_block` the reuse check is off). A pointer that does not decode goes to
        // `free_general`, which decodes it again and reports it.
        Some(key) if extras::none() => {
            let thread = Fast::thread();
            // SAFETY: the caller's contract.
            match unsafe { decode_block(p, key) } {
                // SAFETY: decoded from `p`; the caller does not use `p` again.
                Ok(block) => unsafe { free_block(p, block, key, thread, false) },
                // SAFETY: the caller's contract.
                Err(_) => unsafe { free_general(p) },
            }
        }
        // SAFETY: the caller's contract.
        _ => unsafe { free_general(p) },
    }
}

/// `free` in full: counted and traced when those are on, every fault
/// reported.
///
/// # Safety
/// As [`free`], `p` not null.
#[inline(never)]
unsafe fn free_general(p: NonNull<u8>) {
    stats::count(Counter::Free, 0);
    if trace::on() {
        trace::free(p);
    }
    let key = key();
    // Before the header's values are live: fewer registers to keep.
    let thread = Fast::thread();
    // SAFETY: the caller's contract.
    if let Some(block) = unsafe { block_of(p, key) } {
        // SAFETY: decoded from `p`; the caller does not use `p` again.
        unsafe { free_block(p, block, key, thread, extras::on(extras::REUSE)) }
    }
}

/// `calloc(3)`: `n * size` zeroed bytes; null with `errno = ENOMEM` when
/// the product overflows or memory runs out.
///
/// # Safety
/// As [`malloc`].
///
/// ```
/// unsafe {
///     let p = freespace_malloc::calloc(10, 8).cast::<u64>();
///     assert_eq!(*p.add(9), 0);
///     freespace_malloc::free(p.cast());
///     assert!(freespace_malloc::calloc(usize::MAX, 2).is_null());
/// }
/// ```
#[cfg_attr(not(any(test, feature = "unexported")), no_mangle)]
pub unsafe extern "C" fn calloc(n: usize, size: usize) -> *mut c_void {
    match n.checked_mul(size) {
        Some(bytes) => c_allocate(bytes, MIN_ALIGN, true, Counter::Calloc),
        None => {
            stats::count(Counter::Calloc, 0);
            stats::count(Counter::Failed, 0);
            set_errno(libc::ENOMEM);
            ptr::null_mut()
        }
    }
}

/// `realloc(3)`: resizes `p` to `size` bytes, keeping its contents up to
/// the smaller size; in place when the block has room (or the stack can
/// grow it in place). `realloc(NULL, size)` is `malloc(size)`;
/// `realloc(p, 0)` frees `p` and returns null, as glibc does. On failure
/// returns null with `errno = ENOMEM` and leaves `p` as it was. A block
/// from `memalign` and friends keeps its alignment.
///
/// # Safety
/// `p` is null or live from this shim; on success it must not be used
/// again (only the result).
///
/// ```
/// unsafe {
///     let p = freespace_malloc::malloc(4).cast::<u8>();
///     p.copy_from(b"abcd".as_ptr(), 4);
///     let q = freespace_malloc::realloc(p.cast(), 100_000).cast::<u8>();
///     assert_eq!(core::slice::from_raw_parts(q, 4), b"abcd");
///     assert!(freespace_malloc::realloc(q.cast(), 0).is_null()); // freed
/// }
/// ```
#[cfg_attr(not(any(test, feature = "unexported")), no_mangle)]
pub unsafe extern "C" fn realloc(p: *mut c_void, size: usize) -> *mut c_void {
    let Some(old) = NonNull::new(p.cast::<u8>()) else {
        return c_allocate(size, MIN_ALIGN, false, Counter::Malloc);
    };
    if size == 0 {
        // SAFETY: the caller's contract.
        unsafe { free(p) };
        return ptr::null_mut();
    }
    // SAFETY: `old` is live (caller).
    match unsafe { resize(old, size) } {
        Some(q) => {
            stats::count(Counter::Realloc, size);
            if trace::on() {
                trace::realloc(old, q, size);
            }
            q.as_ptr().cast()
        }
        None => {
            stats::count(Counter::Realloc, 0);
            stats::count(Counter::Failed, 0);
            set_errno(libc::ENOMEM);
            ptr::null_mut()
        }
    }
}

/// `reallocarray(3)`: `realloc(p, n * size)`, except that an overflowing
/// product fails (null, `errno = ENOMEM`, `p` untouched).
///
/// # Safety
/// As [`realloc`].
///
/// ```
/// unsafe {
///     let p = freespace_malloc::reallocarray(core::ptr::null_mut(), 4, 8);
///     assert!(!p.is_null());
///     assert!(freespace_malloc::reallocarray(p, usize::MAX, 2).is_null());
///     freespace_malloc::free(p); // still live
/// }
/// ```
#[cfg_attr(not(any(test, feature = "unexported")), no_mangle)]
pub unsafe extern "C" fn reallocarray(p: *mut c_void, n: usize, size: usize) -> *mut c_void {
    match n.checked_mul(size) {
        // SAFETY: the caller's contract.
        Some(bytes) => unsafe { realloc(p, bytes) },
        None => {
            set_errno(libc::ENOMEM);
            ptr::null_mut()
        }
    }
}

/// `posix_memalign(3)`: stores in `*out` a block of `size` bytes aligned
/// to `align` and returns 0; returns `EINVAL` when `align` is not a power
/// of two multiple of `sizeof(void *)`, `ENOMEM` when memory runs out
/// (`*out` untouched on failure). Never changes `errno`.
///
/// # Safety
/// `out` is valid for a pointer-sized write.
///
/// ```
/// unsafe {
///     let mut p = core::ptr::null_mut();
///     assert_eq!(freespace_malloc::posix_memalign(&mut p, 4096, 10), 0);
///     assert_eq!(p as usize % 4096, 0);
///     freespace_malloc::free(p);
///     assert_eq!(freespace_malloc::posix_memalign(&mut p, 24, 10), libc::EINVAL);
/// }
/// ```
#[cfg_attr(not(any(test, feature = "unexported")), no_mangle)]
pub unsafe extern "C" fn posix_memalign(out: *mut *mut c_void, align: usize, size: usize) -> c_int {
    if !posix_align_ok(align) {
        return libc::EINVAL;
    }
    let saved = errno();
    let result = allocate(size, align, false);
    set_errno(saved);
    stats::count(Counter::Aligned, if result.is_some() { size } else { 0 });
    match result {
        Some(p) => {
            if trace::on() {
                trace::alloc(p, size, align);
            }
            // SAFETY: the caller's contract.
            unsafe { out.write(p.as_ptr().cast()) };
            0
        }
        None => {
            stats::count(Counter::Failed, 0);
            libc::ENOMEM
        }
    }
}

/// `aligned_alloc(3)` (C11): `size` bytes aligned to `align`, any power of
/// two. An alignment that is not a power of two fails with `errno =
/// EINVAL`, as in glibc 2.38 and later; `size` need not be a multiple of
/// `align`.
///
/// # Safety
/// As [`malloc`].
///
/// ```
/// unsafe {
///     let p = freespace_malloc::aligned_alloc(1 << 16, 100);
///     assert_eq!(p as usize % (1 << 16), 0);
///     freespace_malloc::free(p);
///     assert!(freespace_malloc::aligned_alloc(48, 100).is_null());
/// }
/// ```
#[cfg_attr(not(any(test, feature = "unexported")), no_mangle)]
pub unsafe extern "C" fn aligned_alloc(align: usize, size: usize) -> *mut c_void {
    if !align.is_power_of_two() {
        set_errno(libc::EINVAL);
        return ptr::null_mut();
    }
    c_allocate(size, align, false, Counter::Aligned)
}

/// `memalign(3)` (obsolete): like [`aligned_alloc`], but, as glibc does, an
/// alignment that is not a power of two is rounded up to the next one
/// (`EINVAL` only when there is none).
///
/// # Safety
/// As [`malloc`].
///
/// ```
/// unsafe {
///     let p = freespace_malloc::memalign(48, 10); // 64-aligned
///     assert_eq!(p as usize % 64, 0);
///     freespace_malloc::free(p);
/// }
/// ```
#[cfg_attr(not(any(test, feature = "unexported")), no_mangle)]
pub unsafe extern "C" fn memalign(align: usize, size: usize) -> *mut c_void {
    match memalign_align(align) {
        Some(align) => c_allocate(size, align, false, Counter::Aligned),
        None => {
            set_errno(libc::EINVAL);
            ptr::null_mut()
        }
    }
}

/// `valloc(3)` (obsolete): `size` bytes aligned to the page size.
///
/// # Safety
/// As [`malloc`].
///
/// ```
/// unsafe {
///     let p = freespace_malloc::valloc(1);
///     assert_eq!(p as usize % 4096, 0);
///     freespace_malloc::free(p);
/// }
/// ```
#[cfg_attr(not(any(test, feature = "unexported")), no_mangle)]
pub unsafe extern "C" fn valloc(size: usize) -> *mut c_void {
    c_allocate(size, page_size(), false, Counter::Aligned)
}

/// `pvalloc(3)` (obsolete): [`valloc`] of `size` rounded up to whole pages
/// (one page for 0).
///
/// # Safety
/// As [`malloc`].
///
/// ```
/// unsafe {
///     let p = freespace_malloc::pvalloc(1);
///     assert!(freespace_malloc::malloc_usable_size(p) >= 4096);
///     freespace_malloc::free(p);
/// }
/// ```
#[cfg_attr(not(any(test, feature = "unexported")), no_mangle)]
pub unsafe extern "C" fn pvalloc(size: usize) -> *mut c_void {
    let page = page_size();
    match page_round(size, page) {
        Some(size) => c_allocate(size, page, false, Counter::Aligned),
        None => {
            set_errno(libc::ENOMEM);
            ptr::null_mut()
        }
    }
}

/// `malloc_usable_size(3)`: the bytes the caller may really use at `p`
/// (at least what it asked for: the stack's block, less the header and
/// alignment padding); 0 for null.
///
/// # Safety
/// `p` is null or live from this shim.
///
/// ```
/// unsafe {
///     let p = freespace_malloc::malloc(20);
///     assert!(freespace_malloc::malloc_usable_size(p) >= 20);
///     freespace_malloc::free(p);
///     assert_eq!(freespace_malloc::malloc_usable_size(core::ptr::null_mut()), 0);
/// }
/// ```
#[cfg_attr(not(any(test, feature = "unexported")), no_mangle)]
pub unsafe extern "C" fn malloc_usable_size(p: *mut c_void) -> usize {
    match NonNull::new(p.cast::<u8>()) {
        // SAFETY: the caller's contract.
        Some(p) => unsafe { block_of(p, key()) }.map_or(0, |b| b.usable()),
        None => 0,
    }
}

/// `malloc_trim(3)`: gives free memory back to the system. The calling
/// thread's magazines go back to the depot, the depot's to the slab, the
/// slab's empty slabs to the buddy, and the best-fit heap and the buddy
/// give back the pages of every free block of a page or more (`madvise(MADV_DONTNEED)`: the
/// address space stays, the memory goes). Other threads' magazines stay
/// with them until they exit. `pad` is ignored. Returns 1 if any memory
/// was given back, else 0, as glibc does.
///
/// # Safety
/// Always safe to call; `unsafe` for the C ABI's sake.
///
/// ```
/// unsafe {
///     let p = freespace_malloc::malloc(8 << 20);
///     p.cast::<u8>().write_bytes(1, 8 << 20);
///     freespace_malloc::free(p);
///     assert_eq!(freespace_malloc::malloc_trim(0), 1);
/// }
/// ```
#[cfg_attr(not(any(test, feature = "unexported")), no_mangle)]
pub unsafe extern "C" fn malloc_trim(pad: usize) -> c_int {
    let _ = pad;
    let call = Call::begin();
    let given = match call.cache() {
        Some(cache) => cache.trim(),
        None => DEPOT.trim(),
    };
    drop(call);
    let given = given + with_small_heap(|heap| heap.trim());
    c_int::from(given > 0)
}
