//! A loom model of the fork gate's protocol (`src/fork.rs`): a thread's
//! calls against `prepare`, checking that when `prepare` lets the fork go
//! ahead no call is inside the heap (else the child would inherit the
//! heap's lock held). The model restates the protocol over loom's atomics
//! rather than running the shim's code, which lives in statics and the C
//! library's thread-locals; each step below names the function it models.
//!
//! Two deviations, both because loom models `SeqCst` *accesses* as
//! acquire/release (a fence it models exactly): the stripe path's `SeqCst`
//! read-modify-write and load are written as relaxed accesses around a
//! `SeqCst` fence, and so is the slot path in its fence mode
//! (`FREESPACE_MALLOC_FENCE=1`; with `membarrier` the call's fence is a
//! compiler fence and `prepare`'s system call is the other half, which loom
//! cannot model).
//!
//! `first_call_claiming_before_the_gate_is_caught` keeps the order this
//! gate had before the fix (a thread's first call claimed its slot, whose
//! thread-local registration allocates, before passing the gate), to show
//! the model finds that fork with a call inside.
#![cfg(loom)]

use loom::sync::atomic::{fence, AtomicBool, AtomicUsize, Ordering};
use loom::sync::Arc;
use loom::thread;

#[derive(Default)]
struct Gate {
    /// `FORKING`.
    forking: AtomicBool,
    /// The calling thread's slot (`Slot::in_call`).
    in_call: AtomicBool,
    /// One stripe (`Stripe`).
    stripe: AtomicUsize,
    /// Calls inside the heap right now (what the child must not inherit).
    inside: AtomicUsize,
}

impl Gate {
    /// `wait_for_fork`.
    fn wait(&self) {
        while self.forking.load(Ordering::Acquire) {
            thread::yield_now();
        }
    }

    /// `enter_slot` (fence mode).
    fn enter_slot(&self) {
        loop {
            self.in_call.store(true, Ordering::Relaxed);
            fence(Ordering::SeqCst);
            if !self.forking.load(Ordering::Relaxed) {
                return;
            }
            self.in_call.store(false, Ordering::Release);
            self.wait();
        }
    }

    /// `leave_slot`.
    fn leave_slot(&self) {
        self.in_call.store(false, Ordering::Release);
    }

    /// `enter_stripe`.
    fn enter_stripe(&self) {
        loop {
            self.stripe.fetch_add(1, Ordering::Relaxed);
            fence(Ordering::SeqCst);
            if !self.forking.load(Ordering::Relaxed) {
                return;
            }
            self.stripe.fetch_sub(1, Ordering::Release);
            self.wait();
        }
    }

    /// `leave` of a stripe pass.
    fn leave_stripe(&self) {
        self.stripe.fetch_sub(1, Ordering::Release);
    }

    /// A call's work in the heap (under its lock).
    fn heap(&self) {
        self.inside.fetch_add(1, Ordering::Relaxed);
        self.inside.fetch_sub(1, Ordering::Release);
    }

    /// `prepare`, then the moment of the fork: nothing may be inside.
    fn fork(&self) {
        self.forking.store(true, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        while self.in_call.load(Ordering::Acquire) {
            thread::yield_now();
        }
        while self.stripe.load(Ordering::Acquire) != 0 {
            thread::yield_now();
        }
        assert_eq!(
            self.inside.load(Ordering::Acquire),
            0,
            "forked with a call inside the heap"
        );
        // `parent`: the gate opens again.
        self.forking.store(false, Ordering::Release);
    }
}

/// A thread's first call and its second, against one fork.
fn model(claim_before_gate: bool) {
    loom::model(move || {
        let gate = Arc::new(Gate::default());
        let caller = {
            let gate = Arc::clone(&gate);
            thread::spawn(move || {
                // First call: `enter_slow` on an unclaimed slot.
                if claim_before_gate {
                    // The old order: `claim`'s registration allocates (a
                    // nested call, let through) before any pass.
                    gate.heap();
                    gate.enter_stripe();
                } else {
                    gate.enter_stripe();
                    gate.heap(); // `claim`'s nested allocation
                }
                gate.heap(); // the call itself
                gate.leave_stripe();
                // Second call: on the claimed slot.
                gate.enter_slot();
                gate.heap();
                gate.leave_slot();
            })
        };
        gate.fork();
        caller.join().unwrap();
    });
}

#[test]
fn no_fork_with_a_call_inside() {
    model(false);
}

#[test]
#[should_panic(expected = "forked with a call inside the heap")]
fn first_call_claiming_before_the_gate_is_caught() {
    model(true);
}
