//! The thread-cached stack as this test binary's `#[global_allocator]`:
//! every allocation of the test harness, of `std` and of the tests goes
//! through `Magazines<Locked<Slab<Buddy<Sbrk>>, Probe>>`.
//!
//! - **The lock is never re-entered.** `Probe` is the default lock with a
//!   per-thread count of holds: a thread that asks for the lock while it
//!   holds it (the stack allocating through the global allocator inside
//!   its own critical section — sbrk's bookkeeping, a `Vec` in a layer,
//!   `thread_local!` registration under the lock) would deadlock on a
//!   sleeping lock and spin forever on a spinning one. `Probe` reports it
//!   and aborts the test binary instead, naming the fault, so the tests
//!   below fail loudly where a real program would hang.
//! - **More threads than cores**: four times as many threads as the machine
//!   has cores (at least 8), each doing `Vec`/`String`/`HashMap` churn, with
//!   threads ending (their magazines go back to the depot) while others
//!   run. Bounded in time by its size (a few hundred thousand operations in
//!   all), not by a timer; the heap is checked afterwards.

// Under loom the stack's statics are not const (loom's primitives are
// made at run time), and a global allocator cannot run inside a model.
#![cfg(not(loom))]

use std::cell::Cell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use freespace_buddy::Buddy;
use freespace_core::Check;
use freespace_slab::Slab;
use freespace_source::Sbrk;
use freespace_sync::{Depot, Futex, Locked, Magazines};
use freespace_testkit::Rng;
use lock_api::{GuardSend, RawMutex};

std::thread_local! {
    /// How many times this thread holds the probed lock (0 or 1 unless the
    /// lock is re-entered). Const, no destructor: using it never allocates.
    static HELD: Cell<u32> = const { Cell::new(0) };
}

/// Acquisitions of the probed lock, all threads (to show the tests reach it).
static ACQUIRED: AtomicUsize = AtomicUsize::new(0);

/// The default lock, counting holds per thread; re-entry aborts.
struct Probe(Futex);

fn reentered() -> ! {
    let msg = b"global.rs: the stack's lock was re-entered by the thread holding it\n";
    // SAFETY: writes `msg.len()` bytes from a live buffer to stderr; abort
    // has no preconditions. Nothing here allocates.
    unsafe {
        libc::write(2, msg.as_ptr().cast(), msg.len());
        libc::abort();
    }
}

// SAFETY: a thin wrapper: `Futex` provides the mutual exclusion, `Probe`
// only counts (in a thread-local) around its lock and unlock.
unsafe impl RawMutex for Probe {
    #[allow(clippy::declare_interior_mutable_const)]
    const INIT: Self = Probe(Futex::INIT);
    type GuardMarker = GuardSend;

    fn lock(&self) {
        if HELD.with(|h| h.replace(h.get() + 1)) > 0 {
            reentered();
        }
        self.0.lock();
        ACQUIRED.fetch_add(1, Ordering::Relaxed);
    }

    fn try_lock(&self) -> bool {
        if HELD.with(|h| h.get()) > 0 {
            reentered();
        }
        let ok = self.0.try_lock();
        if ok {
            HELD.with(|h| h.set(1));
            ACQUIRED.fetch_add(1, Ordering::Relaxed);
        }
        ok
    }

    unsafe fn unlock(&self) {
        HELD.with(|h| h.set(h.get() - 1));
        // SAFETY: the caller holds the lock (lock_api's contract).
        unsafe { self.0.unlock() };
    }
}

type Shared = Locked<Slab<Buddy<Sbrk>>, Probe>;

static DEPOT: Depot<Shared> = Depot::new(Locked::new(Slab::new(Buddy::new(Sbrk::new()))));

#[global_allocator]
static GLOBAL: Magazines<'static, Shared> = Magazines::new(&DEPOT);

/// `ops` replacements among 200 live `Vec`s, `String`s and `HashMap`s, with
/// sizes from a few bytes to a few hundred KiB (past the slab's classes and
/// the magazines' limit, so the buddy and sbrk are reached under the lock).
fn churn(seed: u64, ops: usize) -> usize {
    enum Item {
        List(Vec<u64>),
        Text(String),
        Map(HashMap<u32, String>),
    }
    let mut rng = Rng::new(seed);
    let mut live: Vec<Option<Item>> = (0..200).map(|_| None).collect();
    let mut sum = 0usize;
    for op in 0..ops {
        let item = match rng.below(4) {
            0 => {
                let mut v = Vec::new();
                for i in 0..rng.range(1, 128) {
                    v.push((op + i) as u64);
                }
                Item::List(v)
            }
            1 => Item::Text(format!("{op}:{}", "x".repeat(rng.below(300)))),
            2 => Item::Map(
                (0..rng.range(1, 32) as u32)
                    .map(|k| (k, k.to_string()))
                    .collect(),
            ),
            _ => Item::List(vec![op as u64; rng.range(1, 40_000)]),
        };
        let slot = rng.below(live.len());
        if let Some(old) = live[slot].replace(item) {
            sum = sum.wrapping_add(match old {
                Item::List(v) => v.len(),
                Item::Text(s) => s.len(),
                Item::Map(m) => m.len(),
            });
        }
    }
    sum
}

#[test]
fn one_thread_never_reenters_the_lock() {
    let before = ACQUIRED.load(Ordering::Relaxed);
    assert!(churn(1, 20_000) > 0);
    // Large blocks bypass the magazines: the lock was taken.
    assert!(ACQUIRED.load(Ordering::Relaxed) > before);
    assert_eq!(HELD.with(|h| h.get()), 0);
}

#[test]
fn more_threads_than_cores() {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let threads = (4 * cores).max(8);
    // Two waves, so threads end (and hand their magazines back) while
    // others are still allocating.
    for wave in 0..2u64 {
        let handles: Vec<_> = (0..threads as u64)
            .map(|t| std::thread::spawn(move || churn(wave * 1000 + t + 1, 4_000)))
            .collect();
        for h in handles {
            assert!(h.join().unwrap() > 0);
        }
    }
    GLOBAL.flush();
    DEPOT.check_all().unwrap();
}
