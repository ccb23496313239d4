//! loom models of freespace-sync: run with
//! `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 cargo test --release -p freespace-sync --test loom`
//! (`cargo xtask test` does). Under loom a magazine holds 2 rounds and the
//! depot keeps 1 full and 1 empty magazine per class, so a handful of
//! operations reaches every exchange and every limit.
#![cfg(loom)]

use std::cell::UnsafeCell;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize as StdAtomicUsize, Ordering::SeqCst};

use freespace_core::alloc::{AllocError, Allocator, Layout};
use freespace_core::{corruption, report, Corruption};
use freespace_sync::{Depot, Locked, ThreadCache};
use loom::sync::atomic::AtomicBool;
use loom::sync::Arc;

const BLOCK: usize = 64;
const BLOCKS: usize = 12;

/// A tiny heap of `BLOCKS` fixed 64-byte blocks with a used flag each: a
/// second free of a block is reported as a double free. `!Sync`.
struct Pool {
    /// From `Box::into_raw` (so block pointers may write); freed on drop.
    buf: NonNull<[[u128; BLOCK / 16]]>,
    used: UnsafeCell<[bool; BLOCKS]>,
}

impl Pool {
    fn new() -> Self {
        Self {
            buf: NonNull::new(Box::into_raw(
                vec![[0u128; BLOCK / 16]; BLOCKS].into_boxed_slice(),
            ))
            .unwrap(),
            used: UnsafeCell::new([false; BLOCKS]),
        }
    }
    fn base(&self) -> NonNull<u8> {
        self.buf.cast()
    }
    fn index(&self, p: NonNull<u8>) -> usize {
        (p.as_ptr() as usize - self.base().as_ptr() as usize) / BLOCK
    }
    fn with_used<R>(&self, f: impl FnOnce(&mut [bool; BLOCKS]) -> R) -> R {
        // SAFETY: `Pool` is `!Sync` and `f` cannot reach the pool again.
        f(unsafe { &mut *self.used.get() })
    }
    fn live(&self) -> usize {
        self.with_used(|u| u.iter().filter(|u| **u).count())
    }
    /// The checked free: `Err` on a double free.
    fn try_free(&self, p: NonNull<u8>) -> Result<(), Corruption> {
        let i = self.index(p);
        if !self.with_used(|u| std::mem::replace(&mut u[i], false)) {
            return Err(Corruption::DoubleFree {
                addr: p.as_ptr() as usize,
            });
        }
        Ok(())
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // SAFETY: from `Box::into_raw` in `new`, freed once.
        drop(unsafe { Box::from_raw(self.buf.as_ptr()) });
    }
}

// SAFETY: the buffer is owned by the pool alone.
unsafe impl Send for Pool {}

/// Runs block by block (the provided methods), so a refill or a return
/// under `Locked`'s lock is the same pool operations as single requests.
impl freespace_core::Batch for Pool {}

// SAFETY: each block is handed out only while its flag is clear, and the
// flag is set until it is freed.
unsafe impl Allocator for Pool {
    fn allocate(&self, l: Layout) -> Result<NonNull<[u8]>, AllocError> {
        if l.size() > BLOCK || l.align() > 16 {
            return Err(AllocError);
        }
        let i = self.with_used(|u| {
            let i = u.iter().position(|u| !*u)?;
            u[i] = true;
            Some(i)
        });
        let i = i.ok_or(AllocError)?;
        // SAFETY: `i < BLOCKS`.
        let p = unsafe { self.base().add(i * BLOCK) };
        Ok(NonNull::slice_from_raw_parts(p, BLOCK))
    }
    unsafe fn deallocate(&self, p: NonNull<u8>, _: Layout) {
        if let Err(c) = self.try_free(p) {
            report(c, "loom pool");
        }
    }
}

/// A block pointer moving between model threads.
#[derive(Clone, Copy)]
struct Block(NonNull<u8>);
// SAFETY: ownership of the block moves with it.
unsafe impl Send for Block {}
// SAFETY: only the address is shared; ownership is passed on explicitly.
unsafe impl Sync for Block {}

/// Which blocks a user holds right now: handing one out twice trips it.
struct Users {
    base: usize,
    held: Vec<AtomicBool>,
}

impl Users {
    fn new(pool: &Locked<Pool>) -> Self {
        Self {
            base: pool.lock().base().as_ptr() as usize,
            held: (0..BLOCKS).map(|_| AtomicBool::new(false)).collect(),
        }
    }
    fn take(&self, p: NonNull<u8>) {
        let i = (p.as_ptr() as usize - self.base) / BLOCK;
        assert!(
            !self.held[i].swap(true, SeqCst),
            "block {i} handed to two users"
        );
    }
    fn give(&self, p: NonNull<u8>) {
        let i = (p.as_ptr() as usize - self.base) / BLOCK;
        assert!(
            self.held[i].swap(false, SeqCst),
            "block {i} freed while not held"
        );
    }
}

fn l16() -> Layout {
    Layout::from_size_align(16, 8).unwrap()
}

/// Two threads allocate and free through one `Locked` heap: a block is
/// never given to both, and everything returns.
#[test]
fn locked_heap_serialises_two_threads() {
    loom::model(|| {
        let heap = Arc::new(Locked::<Pool>::new(Pool::new()));
        let users = Arc::new(Users::new(&heap));
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let (heap, users) = (heap.clone(), users.clone());
                loom::thread::spawn(move || {
                    let a = heap.allocate(l16()).unwrap().cast::<u8>();
                    users.take(a);
                    let b = heap.allocate(l16()).unwrap().cast::<u8>();
                    users.take(b);
                    users.give(a);
                    // SAFETY: live, freed once.
                    unsafe { heap.deallocate(a, l16()) };
                    users.give(b);
                    // SAFETY: live, freed once.
                    unsafe { heap.deallocate(b, l16()) };
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(heap.lock().live(), 0);
        heap.check().unwrap();
    });
}

/// The lock alone: increments under it are never lost.
#[test]
fn locked_counter_loses_nothing() {
    loom::model(|| {
        let n = Arc::new(Locked::<usize>::new(0));
        let t = {
            let n = n.clone();
            loom::thread::spawn(move || *n.lock() += 1)
        };
        *n.lock() += 1;
        t.join().unwrap();
        assert_eq!(*n.lock(), 2);
    });
}

/// Two threads cycle blocks through their magazines so that full
/// magazines go to the depot and come back (ROUNDS = 2, one full and one
/// empty magazine kept per class): no block is handed out twice, and after
/// both flush and the depot is reaped the pool is empty.
#[test]
fn magazine_depot_exchange() {
    loom::model(|| {
        let depot = Arc::new(Depot::new(Locked::<Pool>::new(Pool::new())));
        let users = Arc::new(Users::new(depot.parent()));
        let spawn = |n: usize| {
            let (depot, users) = (depot.clone(), users.clone());
            loom::thread::spawn(move || {
                let cache = ThreadCache::new(&depot);
                let blocks: Vec<_> = (0..n)
                    .map(|_| {
                        let b = cache.allocate(l16()).unwrap().cast::<u8>();
                        users.take(b);
                        b
                    })
                    .collect();
                for b in blocks {
                    users.give(b);
                    // SAFETY: live, freed once.
                    unsafe { cache.deallocate(b, l16()) };
                }
                // A second round is served from the magazines (or the depot).
                let again = cache.allocate(l16()).unwrap().cast::<u8>();
                users.take(again);
                users.give(again);
                // SAFETY: live, freed once.
                unsafe { cache.deallocate(again, l16()) };
                cache.check().unwrap();
            }) // dropping `cache` flushes its magazines to the depot
        };
        let (a, b) = (spawn(3), spawn(2));
        a.join().unwrap();
        b.join().unwrap();
        depot.check().unwrap();
        depot.reap();
        assert_eq!(depot.parent().lock().live(), 0, "nothing lost");
    });
}

/// A block allocated by one thread and freed by another goes into the
/// freeing thread's magazine and is reused correctly.
#[test]
fn cross_thread_free() {
    loom::model(|| {
        let depot = Arc::new(Depot::new(Locked::<Pool>::new(Pool::new())));
        let users = Arc::new(Users::new(depot.parent()));
        let mailbox: Arc<Locked<Vec<Block>>> = Arc::new(Locked::new(Vec::new()));
        let producer = {
            let (depot, users, mailbox) = (depot.clone(), users.clone(), mailbox.clone());
            loom::thread::spawn(move || {
                let cache = ThreadCache::new(&depot);
                for _ in 0..3 {
                    let b = cache.allocate(l16()).unwrap().cast::<u8>();
                    users.take(b);
                    mailbox.lock().push(Block(b));
                }
            })
        };
        let cache = ThreadCache::new(&depot);
        let free = |Block(b): Block| {
            users.give(b);
            // SAFETY: the producer gave the block up; freed once.
            unsafe { cache.deallocate(b, l16()) };
        };
        // Free whatever has arrived while the producer is still allocating
        // (no waiting: a spin-wait would only blow up the model), then the rest.
        let early = mailbox.lock().pop();
        early.map(free);
        producer.join().unwrap();
        let rest: Vec<Block> = std::mem::take(&mut *mailbox.lock());
        rest.into_iter().for_each(free);
        let mine = cache.allocate(l16()).unwrap().cast::<u8>();
        users.take(mine);
        users.give(mine);
        // SAFETY: live, freed once.
        unsafe { cache.deallocate(mine, l16()) };
        drop(cache);
        depot.check().unwrap();
        depot.reap();
        assert_eq!(depot.parent().lock().live(), 0, "nothing lost");
    });
}

static REPORTS: StdAtomicUsize = StdAtomicUsize::new(0);
fn count_reports(c: Corruption, block: &'static str) {
    assert!(matches!(c, Corruption::DoubleFree { .. }) && block == "loom pool");
    REPORTS.fetch_add(1, SeqCst);
}

/// Two threads race to free the same block through `Locked`: exactly one
/// free happens, the other is reported as a double free.
#[test]
fn racing_double_free_one_wins_one_is_reported() {
    let previous = corruption::set_handler(count_reports);
    loom::model(|| {
        REPORTS.store(0, SeqCst);
        let heap = Arc::new(Locked::<Pool>::new(Pool::new()));
        let b = Block(heap.allocate(l16()).unwrap().cast());
        let racers: Vec<_> = (0..2)
            .map(|_| {
                let heap = heap.clone();
                loom::thread::spawn(move || {
                    let Block(p) = b;
                    // SAFETY: deliberately a double free: what is under test
                    // is that the heap, under the lock, sees it as one.
                    unsafe { heap.deallocate(p, l16()) };
                })
            })
            .collect();
        for r in racers {
            r.join().unwrap();
        }
        assert_eq!(REPORTS.load(SeqCst), 1, "exactly one free is reported");
        assert_eq!(heap.lock().live(), 0, "and the other one happened");
        // The checked free says which one lost.
        let again = heap.allocate(l16()).unwrap().cast::<u8>();
        assert_eq!(heap.lock().try_free(again), Ok(()));
        assert!(heap.lock().try_free(again).is_err());
    });
    corruption::set_handler(previous);
}
