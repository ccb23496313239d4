//! Fork safety: a gate every call passes, closed around `fork()` by
//! `pthread_atfork` handlers.
//!
//! A process that forks while another thread is inside the allocator
//! would give the child a heap whose locks are held by a thread that does
//! not exist there: the child's first `malloc` would spin forever. The
//! stack has locks in two places — the heap's `Locked` and the depot's
//! per-class lists — and only the first is reachable from outside
//! `freespace-sync`. So rather than take each lock before the fork, the
//! shim makes sure no thread is inside the stack at all when the address
//! space is copied; then every lock in it is free, whatever lock it is.
//! Nothing takes a lock of the stack outside a call: the thread caches
//! live in the shim's own thread-local and are flushed at thread exit by a
//! destructor that passes the gate like any call.
//!
//! ```text
//!   call:     in_call = true; light barrier; if FORKING { in_call = false; wait; retry }
//!             … stack …
//!             in_call = false
//!   prepare:  FORK_LOCK; FORKING = true; heavy barrier; wait until no in_call is set
//!   parent:   FORKING = false; unlock FORK_LOCK
//!   child:    forget the other threads' slots; FORKING = false; unlock FORK_LOCK
//! ```
//!
//! # The fast path costs no atomic read-modify-write
//!
//! Each thread owns a slot (one of [`SLOTS`], claimed on its first call,
//! released by a thread-local destructor when it exits) holding its
//! `in_call` flag, so a call only *stores* to memory no other thread
//! writes. The call and `prepare` follow Dekker's pattern — each writes its
//! flag, then reads the other's — which needs a full barrier on both sides.
//! The barrier is asymmetric: a call issues only a compiler fence, and
//! `prepare`, which runs once per fork, issues
//! `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)`, which makes every running
//! thread of the process execute a full memory barrier (the scheme of
//! Folly's `asymmetricHeavyBarrier`). Where the kernel refuses `membarrier`,
//! or with `FREESPACE_MALLOC_FENCE=1` in the environment, calls use a real
//! `SeqCst` fence instead (the exit summary says which: `gate membarrier`
//! or `gate fence`).
//!
//! A thread's first call (it claims its slot during it), threads that find
//! no free slot, and calls after a thread's slot was
//! released (a thread's last frees, from later destructors), count on
//! [`STRIPES`] shared counters with atomic increments instead (the same
//! protocol, with `SeqCst` read-modify-writes as the barrier).
//!
//! The forking thread itself may allocate between `prepare` and the end of
//! the fork (other fork handlers do): it passes the gate while it holds
//! `FORK_LOCK`.
//!
//! # Invariants
//! - MALLOC-F1: a slot's `in_call` is set only by its owner thread, and is set
//!   during every call that passed the gate on that slot; a stripe's count
//!   is the number of calls that passed the gate on it and have not left.
//! - MALLOC-F2: while `FORKING` is set, the thread holding `FORK_LOCK` is the only
//!   one that can pass the gate.
//! - MALLOC-F3: `HEAVY` (calls use a compiler fence only) implies `MEMBARRIER`
//!   (private expedited `membarrier` is registered for this process, and
//!   `prepare` issues it). `HEAVY` may be cleared at any time — `prepare`
//!   keeps issuing `membarrier` for the calls already under way — but only
//!   set together with a successful registration.
//! - MALLOC-F4: a thread's `gate` (its fast path) is its slot when it owns one and
//!   is not forking, and `None` otherwise; a call with `gate` set goes
//!   straight to that slot.
//! - MALLOC-F5: a call passes the gate *before* it does anything that can
//!   allocate: a nested call (`Pass::Through`) is let in on the strength of
//!   its outer call, so that outer call must already be counted. (A thread's
//!   first call claims its slot while counted on a stripe, because claiming
//!   registers a thread-local destructor, which allocates.)

use core::sync::atomic::{compiler_fence, fence, AtomicBool, AtomicUsize, Ordering};

use freespace_sync::DefaultLock;
use lock_api::RawMutex;

use crate::shim::ThreadState;

/// Threads that get a slot of their own (the fast path).
pub const SLOTS: usize = 256;

/// Shared call counters for threads without a slot.
pub const STRIPES: usize = 16;

/// `ThreadState::slot` of a thread that has not tried to claim a slot yet.
pub(crate) const UNCLAIMED: usize = usize::MAX;
/// `ThreadState::slot` of a thread that counts on a stripe.
pub(crate) const NO_SLOT: usize = usize::MAX - 1;

const MEMBARRIER_CMD_PRIVATE_EXPEDITED: libc::c_int = 1 << 3;
const MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED: libc::c_int = 1 << 4;

/// One thread's flags, alone on its cache line (two lines: the
/// adjacent-line prefetcher pairs them).
#[repr(align(128))]
pub(crate) struct Slot {
    owned: AtomicBool,
    in_call: AtomicBool,
}

/// One shared call counter, alone on its cache line.
#[repr(align(128))]
pub(crate) struct Stripe(AtomicUsize);

static OWNERS: [Slot; SLOTS] = [const {
    Slot {
        owned: AtomicBool::new(false),
        in_call: AtomicBool::new(false),
    }
}; SLOTS];
static COUNTS: [Stripe; STRIPES] = [const { Stripe(AtomicUsize::new(0)) }; STRIPES];
static NEXT: AtomicUsize = AtomicUsize::new(0);
static FORKING: AtomicBool = AtomicBool::new(false);
static FORK_LOCK: DefaultLock = DefaultLock::INIT;
static REGISTERED: AtomicBool = AtomicBool::new(false);
static HEAVY: AtomicBool = AtomicBool::new(false);
static MEMBARRIER: AtomicBool = AtomicBool::new(false);
/// Set by [`use_fences`]: `HEAVY` stays clear.
static FENCES: AtomicBool = AtomicBool::new(false);

/// How a call passed the gate; hand it back to [`leave`].
pub(crate) enum Pass {
    /// Nothing to undo: the forking thread inside the fork, or a call
    /// nested in one that passed the gate.
    Through,
    /// On the thread's own slot.
    Slot(&'static Slot),
    /// On a shared stripe.
    Stripe(&'static Stripe),
}

/// Passes the gate for a call from the thread `t` (waiting while a fork is
/// under way).
#[inline(always)]
pub(crate) fn enter(t: &ThreadState) -> Pass {
    match t.gate.get() {
        // The common case: a slot of its own, not forking (MALLOC-F4).
        Some(slot) => {
            enter_slot(slot);
            Pass::Slot(slot)
        }
        None => enter_slow(t),
    }
}

/// [`enter`] for a thread that is forking, has no slot yet, or counts on a
/// stripe.
#[cold]
fn enter_slow(t: &ThreadState) -> Pass {
    if t.forking.get() {
        return Pass::Through;
    }
    if t.slot() == UNCLAIMED {
        // The thread's first call. Claiming a slot registers a thread-local
        // destructor, and the C library allocates for that: a nested call,
        // which passes no gate of its own (`Pass::Through`) because it
        // trusts this outer one to have passed it already. So this call
        // passes the gate on a stripe *before* it claims (later calls use
        // the slot): else the nested allocation could take the heap's lock
        // while `prepare` believes no thread is inside, and the child of
        // that fork would inherit the lock held (MALLOC-F1).
        t.stripe.set(NEXT.fetch_add(1, Ordering::Relaxed));
        let pass = enter_stripe(t);
        claim(t);
        return pass;
    }
    match OWNERS.get(t.slot()) {
        Some(slot) => {
            enter_slot(slot);
            Pass::Slot(slot)
        }
        None => enter_stripe(t),
    }
}

/// Passes the gate on the calling thread's own `slot` (its `gate`, MALLOC-F4);
/// undo with [`leave_slot`]. The fast path: a store, a barrier that is a
/// compiler fence when `prepare` issues `membarrier`, a load.
#[inline(always)]
pub(crate) fn enter_slot(slot: &'static Slot) {
    while !try_enter_slot(slot) {
        wait_for_fork();
    }
}

/// [`enter_slot`] without the wait: `false` (and the slot left as it was)
/// while a fork is under way. The shim's fast paths take it, so that they
/// call nothing; they leave the waiting to the full path.
#[inline(always)]
pub(crate) fn try_enter_slot(slot: &'static Slot) -> bool {
    slot.in_call.store(true, Ordering::Relaxed);
    light_barrier();
    if !FORKING.load(Ordering::Relaxed) {
        return true;
    }
    slot.in_call.store(false, Ordering::Release);
    false
}

/// Ends a call that [`enter_slot`] let in.
#[inline(always)]
pub(crate) fn leave_slot(slot: &'static Slot) {
    slot.in_call.store(false, Ordering::Release);
}

#[cold]
fn enter_stripe(t: &ThreadState) -> Pass {
    let stripe = &COUNTS[t.stripe.get() % STRIPES];
    loop {
        stripe.0.fetch_add(1, Ordering::SeqCst);
        if !FORKING.load(Ordering::SeqCst) {
            return Pass::Stripe(stripe);
        }
        stripe.0.fetch_sub(1, Ordering::SeqCst);
        wait_for_fork();
    }
}

/// The call's half of the barrier: a compiler fence when `prepare` issues
/// `membarrier` (MALLOC-F3), a full fence otherwise.
#[inline(always)]
fn light_barrier() {
    if !HEAVY.load(Ordering::Relaxed) {
        fence(Ordering::SeqCst);
    }
    compiler_fence(Ordering::SeqCst);
}

#[cold]
#[inline(never)]
fn wait_for_fork() {
    while FORKING.load(Ordering::Acquire) {
        // SAFETY: `sched_yield` has no preconditions.
        unsafe { libc::sched_yield() };
    }
}

/// Ends a call that [`enter`] let in.
#[inline(always)]
pub(crate) fn leave(pass: &Pass) {
    match pass {
        Pass::Slot(slot) => leave_slot(slot),
        Pass::Through => {}
        Pass::Stripe(stripe) => {
            stripe.0.fetch_sub(1, Ordering::Release);
        }
    }
}

/// MALLOC-F1 at a quiescent point: no slot has a call in flight, every stripe
/// count is 0, and no fork is under way.
pub(crate) fn check_quiescent() -> Result<(), freespace_core::Violation> {
    use freespace_core::Violation;
    if FORKING.load(Ordering::SeqCst) {
        return Err(Violation::new("MALLOC-F2", 0, "a fork is under way"));
    }
    for slot in &OWNERS {
        if slot.in_call.load(Ordering::SeqCst) {
            return Err(Violation::new(
                "MALLOC-F1",
                slot as *const Slot as usize,
                "a slot has a call in flight at a quiescent point",
            ));
        }
    }
    for stripe in &COUNTS {
        if stripe.0.load(Ordering::SeqCst) != 0 {
            return Err(Violation::new(
                "MALLOC-F1",
                stripe as *const Stripe as usize,
                "a stripe counts calls at a quiescent point",
            ));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Slots: claimed on a thread's first call, released when it exits
// ---------------------------------------------------------------------------

/// Gives slot `i` (the argument) back when the thread exits: registered
/// with the C library when the thread claims it, which allocates — a
/// nested call, served without the gate.
extern "C" fn release(i: *mut core::ffi::c_void) {
    // Calls from here on (later destructors) count on a stripe.
    // SAFETY: the calling thread's state (TLS-1), alive through its exit.
    if let Some(t) = unsafe { crate::tls::get().as_ref() } {
        t.gate.set(None);
        t.set_slot(NO_SLOT);
    }
    if let Some(slot) = OWNERS.get(i.addr()) {
        slot.owned.store(false, Ordering::Release);
    }
}

/// Claims a free slot for the calling thread, or settles it on stripes.
/// Called inside a call that passed the gate on a stripe (its allocations
/// are nested calls, MALLOC-F5).
#[cold]
fn claim(t: &ThreadState) -> usize {
    t.set_slot(NO_SLOT);
    let start = t.stripe.get();
    for k in 0..SLOTS {
        let i = (start + k) % SLOTS;
        let slot = &OWNERS[i];
        if !slot.owned.load(Ordering::Relaxed)
            && slot
                .owned
                .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
        {
            if crate::tls::at_thread_exit(release, core::ptr::without_provenance_mut(i)) {
                t.set_slot(i);
                t.gate.set(Some(slot));
                return i;
            }
            // No destructor to give it back.
            slot.owned.store(false, Ordering::Release);
            return NO_SLOT;
        }
    }
    NO_SLOT
}

// ---------------------------------------------------------------------------
// The handlers
// ---------------------------------------------------------------------------

/// Registers the fork handlers (and `membarrier`), once per process.
/// Called on the first allocation, inside a call, so the allocations
/// `pthread_atfork` makes itself are nested ones, served without the gate.
#[cold]
pub(crate) fn register_once() {
    if REGISTERED.swap(true, Ordering::AcqRel) {
        return;
    }
    register_membarrier();
    // SAFETY: the three handlers are `extern "C" fn()` that live as long as
    // the program (the shim is never unloaded: it is preloaded).
    unsafe { libc::pthread_atfork(Some(prepare), Some(parent), Some(child)) };
}

/// Registers private expedited `membarrier` for this process and sets
/// `MEMBARRIER` and `HEAVY` accordingly (MALLOC-F3); a fresh child must register
/// again.
fn register_membarrier() {
    // SAFETY: `membarrier` takes two integer arguments (and an unused CPU
    // id) and touches no memory of ours.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_membarrier,
            MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED,
            0,
            0,
        )
    };
    MEMBARRIER.store(rc == 0, Ordering::SeqCst);
    HEAVY.store(rc == 0 && !FENCES.load(Ordering::SeqCst), Ordering::SeqCst);
}

/// Switches the gate to full fences on the call side for good (MALLOC-F3 allows
/// clearing `HEAVY` at any time).
#[cfg_attr(test, allow(dead_code))] // called by the library's constructor
pub(crate) fn use_fences() {
    FENCES.store(true, Ordering::SeqCst);
    HEAVY.store(false, Ordering::SeqCst);
}

/// Whether calls rely on `prepare`'s `membarrier` (else on their own fence).
pub(crate) fn uses_membarrier() -> bool {
    HEAVY.load(Ordering::Relaxed)
}

/// Marks the calling thread as the forking one (or not any more), keeping
/// MALLOC-F4.
fn set_forking(on: bool) {
    // SAFETY: the calling thread's state (TLS-1).
    if let Some(t) = unsafe { crate::tls::get().as_ref() } {
        t.forking.set(on);
        t.gate.set(if on { None } else { OWNERS.get(t.slot()) });
    }
}

/// Before `fork()`: closes the gate and waits until no call is inside.
extern "C" fn prepare() {
    FORK_LOCK.lock();
    set_forking(true);
    FORKING.store(true, Ordering::SeqCst);
    fence(Ordering::SeqCst);
    if MEMBARRIER.load(Ordering::SeqCst) {
        // SAFETY: as in `register_membarrier`.
        let rc =
            unsafe { libc::syscall(libc::SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) };
        if rc != 0 {
            // Cannot happen while registered (MALLOC-F3). If it did, a call that
            // read FORKING clear may still hold its flag in a store buffer
            // (the one reordering x86 allows); waiting lets it drain.
            // SAFETY: no preconditions.
            unsafe { libc::usleep(20_000) };
        }
    }
    for slot in &OWNERS {
        while slot.in_call.load(Ordering::Acquire) {
            // SAFETY: no preconditions.
            unsafe { libc::sched_yield() };
        }
    }
    for stripe in &COUNTS {
        while stripe.0.load(Ordering::SeqCst) != 0 {
            // SAFETY: no preconditions.
            unsafe { libc::sched_yield() };
        }
    }
}

/// After `fork()`, in the parent: opens the gate.
extern "C" fn parent() {
    FORKING.store(false, Ordering::SeqCst);
    set_forking(false);
    // SAFETY: `prepare` took the lock on this thread.
    unsafe { FORK_LOCK.unlock() };
}

/// After `fork()`, in the child: the forking thread is the only one, and no
/// call was inside the stack when it was copied, so every lock in the stack
/// is free. The other threads' slots and counts belong to threads that do
/// not exist here: cleared. Opens the gate.
extern "C" fn child() {
    // SAFETY: the calling thread's state (TLS-1).
    let mine = unsafe { crate::tls::get().as_ref() }.map_or(NO_SLOT, ThreadState::slot);
    for (i, slot) in OWNERS.iter().enumerate() {
        if i != mine {
            slot.in_call.store(false, Ordering::Relaxed);
            slot.owned.store(false, Ordering::Relaxed);
        }
    }
    for stripe in &COUNTS {
        stripe.0.store(0, Ordering::Relaxed);
    }
    // `membarrier` registration is per process: the child registers anew
    // (one thread: switching modes is safe here).
    if MEMBARRIER.load(Ordering::Relaxed) {
        register_membarrier();
    }
    FORKING.store(false, Ordering::SeqCst);
    set_forking(false);
    // SAFETY: `prepare` took the lock on this thread, which the child is.
    unsafe { FORK_LOCK.unlock() };
}
