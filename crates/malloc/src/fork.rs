//! Fork safety: a gate every call passes, closed around `fork()` by
//! `pthread_atfork` handlers.
//!
//! A process that forks while another thread is inside the allocator
//! would give the child a heap whose locks are held by a thread that does
//! not exist there: the child's first `malloc` would spin forever. The
//! stack has locks in three places — the heap's `Locked`, the depot's
//! per-class lists and the thread-cache registry — and only the first is
//! reachable from outside `freespace-sync`. So rather than take each lock
//! before the fork, the shim makes sure no thread is inside the stack at
//! all:
//!
//! ```text
//!   call:     stripe += 1; if FORKING { stripe -= 1; wait; retry }   … stack …   stripe -= 1
//!   prepare:  FORK_LOCK; FORKING = true; wait until every stripe is 0
//!   parent:   FORKING = false; unlock FORK_LOCK
//!   child:    FORKING = false; unlock FORK_LOCK   (the only thread left)
//! ```
//!
//! With no thread inside the stack, every lock in it is free when the
//! address space is copied, whatever lock it is. The counters are spread
//! over [`STRIPES`] cache lines (a thread keeps one) so threads do not
//! share one line on every call. The forking thread itself may allocate
//! between `prepare` and the end of the fork (other fork handlers do): it
//! passes the gate while it holds `FORK_LOCK`.
//!
//! The counters follow Dekker's pattern: a call increments its stripe and
//! then reads `FORKING`; `prepare` sets `FORKING` and then reads the
//! stripes. Both are `SeqCst`, so at least one side sees the other: either
//! the call sees `FORKING` and backs out, or `prepare` sees its count and
//! waits for it.
//!
//! # Invariants
//! - F1: a stripe's count is the number of calls that passed the gate on it
//!   and have not left.
//! - F2: while `FORKING` is set, the thread holding `FORK_LOCK` is the only
//!   one that can pass the gate.

use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use freespace_sync::Spin;
use lock_api::RawMutex;

use crate::shim::ThreadState;

/// Cache lines the call counters are spread over.
pub const STRIPES: usize = 16;

/// One call counter, alone on its cache line (two lines: the adjacent-line
/// prefetcher pairs them).
#[repr(align(128))]
pub(crate) struct Stripe(AtomicUsize);

static COUNTS: [Stripe; STRIPES] = [const { Stripe(AtomicUsize::new(0)) }; STRIPES];
static NEXT_STRIPE: AtomicUsize = AtomicUsize::new(0);
static FORKING: AtomicBool = AtomicBool::new(false);
static FORK_LOCK: Spin = Spin::INIT;
static REGISTERED: AtomicBool = AtomicBool::new(false);

/// Passes the gate for a call from the thread `t`; the returned stripe
/// goes to [`leave`] when the call is done. `None`: the thread is the one
/// forking (F2), nothing to count.
#[inline]
pub(crate) fn enter(t: &ThreadState) -> Option<&'static Stripe> {
    if t.forking.get() {
        return None;
    }
    let mut i = t.stripe.get();
    if i >= STRIPES {
        i = NEXT_STRIPE.fetch_add(1, Ordering::Relaxed) % STRIPES;
        t.stripe.set(i);
    }
    let stripe = &COUNTS[i];
    loop {
        stripe.0.fetch_add(1, Ordering::SeqCst);
        if !FORKING.load(Ordering::SeqCst) {
            return Some(stripe);
        }
        // A fork is on its way: step back out and wait for it to end.
        stripe.0.fetch_sub(1, Ordering::SeqCst);
        while FORKING.load(Ordering::Acquire) {
            // SAFETY: `sched_yield` has no preconditions.
            unsafe { libc::sched_yield() };
        }
    }
}

/// Ends a call that [`enter`] let in on `stripe`.
#[inline]
pub(crate) fn leave(stripe: Option<&'static Stripe>) {
    if let Some(stripe) = stripe {
        stripe.0.fetch_sub(1, Ordering::Release);
    }
}

/// Registers the fork handlers, once per process. Called on the first
/// allocation, inside a call (so the allocations `pthread_atfork` makes
/// itself are re-entrant ones, served without the thread caches).
#[cold]
pub(crate) fn register_once() {
    if REGISTERED.swap(true, Ordering::AcqRel) {
        return;
    }
    // SAFETY: the three handlers are `extern "C" fn()` that live as long as
    // the program (the shim is never unloaded: it is preloaded).
    unsafe { libc::pthread_atfork(Some(prepare), Some(parent), Some(child)) };
}

fn set_forking(on: bool) {
    // Const thread-local without a destructor: never unavailable.
    let _ = crate::shim::THREAD.try_with(|t| t.forking.set(on));
}

/// Before `fork()`: closes the gate and waits until no call is inside.
extern "C" fn prepare() {
    FORK_LOCK.lock();
    set_forking(true);
    FORKING.store(true, Ordering::SeqCst);
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

/// After `fork()`, in the child: the forking thread is the only one; no
/// call was inside the stack when it was copied (F1 with every stripe 0),
/// so every lock in the stack is free. Opens the gate.
extern "C" fn child() {
    for stripe in &COUNTS {
        stripe.0.store(0, Ordering::Relaxed);
    }
    FORKING.store(false, Ordering::SeqCst);
    set_forking(false);
    // SAFETY: `prepare` took the lock on this thread, which the child is.
    unsafe { FORK_LOCK.unlock() };
}
