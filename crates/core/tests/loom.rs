//! loom models of the raw locks in `freespace_core::lock`: run with
//! `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 cargo test --release -p freespace-core --test loom`
//! (`cargo xtask test` does).
//!
//! Under loom the kernel's futex is a loom `Mutex` and `Condvar` per lock
//! (see the module docs), so a wake-up that is lost leaves a thread asleep
//! for ever, which loom reports as a deadlock; and the guarded value is a
//! `loom::cell::UnsafeCell`, so two holders at once are a reported race.
#![cfg(loom)]

use freespace_core::lock::{Futex, Spin};
use lock_api::RawMutex;
use loom::cell::UnsafeCell;
use loom::sync::Arc;
use loom::thread;

/// A counter behind a raw lock `R`.
struct Counter<R> {
    lock: R,
    value: UnsafeCell<usize>,
}

// SAFETY: `value` is only touched while `lock` is held.
unsafe impl<R: RawMutex + Sync> Sync for Counter<R> {}

impl<R: RawMutex> Counter<R> {
    fn new() -> Self {
        let lock = R::INIT;
        // Create the lock's loom primitives on this thread, before any other
        // thread can see them.
        let _ = lock.is_locked();
        Self {
            lock,
            value: UnsafeCell::new(0),
        }
    }

    fn increment(&self) {
        self.lock.lock();
        // SAFETY: the lock is held.
        self.value.with_mut(|v| unsafe { *v += 1 });
        // SAFETY: taken just above by this thread.
        unsafe { self.lock.unlock() };
    }

    fn get(&self) -> usize {
        self.lock.lock();
        // SAFETY: the lock is held.
        let v = self.value.with(|v| unsafe { *v });
        // SAFETY: taken just above by this thread.
        unsafe { self.lock.unlock() };
        v
    }
}

/// Two threads increment under the lock: no race, nothing lost.
fn two_threads_exclude<R: RawMutex + Send + Sync + 'static>() {
    loom::model(|| {
        let c = Arc::new(Counter::<R>::new());
        let t = {
            let c = Arc::clone(&c);
            thread::spawn(move || c.increment())
        };
        c.increment();
        t.join().unwrap();
        assert_eq!(c.get(), 2);
    });
}

#[test]
fn spin_two_threads_exclude() {
    two_threads_exclude::<Spin>();
}

#[test]
fn futex_two_threads_exclude() {
    two_threads_exclude::<Futex>();
}

/// The holder releases while a waiter is spinning, about to sleep, or
/// asleep: in every interleaving the waiter gets the lock (a lost wake-up
/// would leave it asleep, and loom reports the deadlock).
#[test]
fn futex_unlock_wakes_a_sleeping_waiter() {
    loom::model(|| {
        let c = Arc::new(Counter::<Futex>::new());
        c.lock.lock();
        let t = {
            let c = Arc::clone(&c);
            thread::spawn(move || c.increment())
        };
        // SAFETY: taken above by this thread.
        unsafe { c.lock.unlock() };
        t.join().unwrap();
        assert_eq!(c.get(), 1);
        c.lock.check_unlocked().unwrap();
    });
}

/// Three threads, two of them waiting at once: each release wakes one
/// sleeper, and a thread that takes the lock by marking it contended passes
/// the wake-up on when it releases; nobody is left asleep.
#[test]
fn futex_two_waiters_are_both_woken() {
    let mut builder = loom::model::Builder::new();
    // Three threads contending explode the state space; two preemptions
    // already reach every order of the two sleepers and the releases.
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(2);
    }
    builder.check(|| {
        let c = Arc::new(Counter::<Futex>::new());
        c.lock.lock();
        let waiters: Vec<_> = (0..2)
            .map(|_| {
                let c = Arc::clone(&c);
                thread::spawn(move || c.increment())
            })
            .collect();
        // SAFETY: taken above by this thread.
        unsafe { c.lock.unlock() };
        for t in waiters {
            t.join().unwrap();
        }
        assert_eq!(c.get(), 2);
        c.lock.check_unlocked().unwrap();
    });
}
