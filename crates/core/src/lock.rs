//! The raw locks every `Sync` layer of freespace waits on.
//!
//! | lock | waits by | for |
//! |---|---|---|
//! | [`Futex`] (Linux) | spinning briefly, then sleeping in the kernel (`futex(2)`) | every stack on an operating system: [`DefaultLock`] there |
//! | [`Spin`] | spinning, forever | bare metal, where there is no kernel to sleep in: [`DefaultLock`] there |
//!
//! Both implement [`lock_api::RawMutex`], so either can be handed to
//! `freespace_sync::Locked<A, R>` or wrapped in a [`lock_api::Mutex`].
//! Neither allocates, panics or poisons, so either can guard a
//! `#[global_allocator]`; neither is re-entrant.
//!
//! # Why not spin
//!
//! A spin lock is only as good as the scheduler's promise that the holder
//! is running. With more threads than cores the holder is preempted while
//! the waiters burn their whole time slices spinning on it, and a waiter
//! with a real-time priority (`SCHED_FIFO`) on the holder's core never lets
//! it run again at all: the wait ends only when the kernel's real-time
//! throttling steps in, seconds later. [`Futex`] spins for about as long as
//! a short critical section lasts and then sleeps, which hands the core to
//! the holder.
//!
//! # loom
//!
//! Under `--cfg loom` the atomics are loom's and the kernel's futex is
//! modelled by a loom `Mutex` and `Condvar` per lock (a wait checks the
//! word under the mutex, a wake notifies under it: exactly futex's
//! "compare and sleep atomically" contract), so `tests/loom.rs` checks
//! mutual exclusion and that no wake-up is lost under every interleaving.

#[cfg(loom)]
use loom::{
    hint::spin_loop,
    sync::atomic::{AtomicBool, AtomicU32, Ordering},
};

#[cfg(all(not(loom), any(target_os = "linux", target_os = "android")))]
use core::sync::atomic::AtomicU32;
#[cfg(not(loom))]
use core::{
    hint::spin_loop,
    sync::atomic::{AtomicBool, Ordering},
};

use crate::Violation;

/// The lock a `Sync` stack takes unless told otherwise: [`Futex`] where the
/// kernel offers one (Linux, Android), [`Spin`] elsewhere (bare metal).
#[cfg(any(target_os = "linux", target_os = "android"))]
pub type DefaultLock = Futex;

/// The lock a `Sync` stack takes unless told otherwise: [`Futex`] where the
/// kernel offers one (Linux, Android), [`Spin`] elsewhere (bare metal).
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub type DefaultLock = Spin;

// ---------------------------------------------------------------------------
// Spin
// ---------------------------------------------------------------------------

/// A test-and-test-and-set spin lock: one `AtomicBool`, taken with
/// `compare_exchange_weak` and waited on with plain loads and
/// [`core::hint::spin_loop`], so waiting threads do not fight over the
/// cache line.
///
/// **For bare metal only**, where there is no scheduler to hand the core
/// to: on an operating system a waiter spins for as long as the holder is
/// preempted (a whole time slice, or forever when the waiter has a
/// real-time priority), which is why [`DefaultLock`] is [`Futex`] there.
/// Not fair, not re-entrant: a thread that takes it twice waits for itself
/// forever.
///
/// # Invariants
/// - CORE-LK1: the flag is `true` exactly while one holder is between a
///   successful `lock`/`try_lock` and its `unlock`.
///
/// ```
/// use freespace_core::lock::Spin;
/// use lock_api::RawMutex;
///
/// let lock = Spin::INIT;
/// lock.lock();
/// assert!(lock.is_locked() && !lock.try_lock());
/// // SAFETY: this thread holds the lock.
/// unsafe { lock.unlock() };
/// assert!(lock.try_lock());
/// # unsafe { lock.unlock() };
/// ```
pub struct Spin {
    #[cfg(not(loom))]
    locked: AtomicBool,
    // loom's atomics cannot be built in a `const` (they register with the
    // model when created), and `RawMutex::INIT` is a `const`: under loom the
    // flag is created on first use inside the model.
    #[cfg(loom)]
    locked: std::sync::OnceLock<AtomicBool>,
}

impl Spin {
    #[inline]
    fn flag(&self) -> &AtomicBool {
        #[cfg(not(loom))]
        return &self.locked;
        #[cfg(loom)]
        return self.locked.get_or_init(|| AtomicBool::new(false));
    }

    /// Checks CORE-LK1 as far as it can be seen from outside: at a quiescent
    /// point (no thread inside the lock) the flag must be clear.
    ///
    /// ```
    /// use freespace_core::lock::Spin;
    /// use lock_api::RawMutex;
    /// let lock = Spin::INIT;
    /// assert!(lock.check_unlocked().is_ok());
    /// lock.lock();
    /// assert!(lock.check_unlocked().is_err());
    /// # unsafe { lock.unlock() };
    /// ```
    pub fn check_unlocked(&self) -> Result<(), Violation> {
        if self.flag().load(Ordering::Relaxed) {
            Err(Violation::new(
                "CORE-LK1",
                self as *const Self as usize,
                "spin lock held at a quiescent point",
            ))
        } else {
            Ok(())
        }
    }
}

// SAFETY: `lock` returns only after swapping the flag from false to true
// with Acquire ordering, and `unlock` stores false with Release ordering, so
// at most one holder exists at a time (CORE-LK1) and everything a holder wrote
// happens-before the next holder's critical section.
unsafe impl lock_api::RawMutex for Spin {
    #[cfg(not(loom))]
    const INIT: Self = Self {
        locked: AtomicBool::new(false),
    };
    #[cfg(loom)]
    const INIT: Self = Self {
        locked: std::sync::OnceLock::new(),
    };

    type GuardMarker = lock_api::GuardSend;

    #[inline]
    fn lock(&self) {
        let flag = self.flag();
        while flag
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            while flag.load(Ordering::Relaxed) {
                spin_loop();
            }
        }
    }

    #[inline]
    fn try_lock(&self) -> bool {
        // The strong exchange: `try_lock` on a free lock must not fail.
        self.flag()
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }

    #[inline]
    unsafe fn unlock(&self) {
        self.flag().store(false, Ordering::Release);
    }

    #[inline]
    fn is_locked(&self) -> bool {
        self.flag().load(Ordering::Relaxed)
    }
}

impl core::fmt::Debug for Spin {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Spin")
            .field("locked", &self.flag().load(Ordering::Relaxed))
            .finish()
    }
}

// ---------------------------------------------------------------------------
// Futex
// ---------------------------------------------------------------------------

#[cfg(any(target_os = "linux", target_os = "android"))]
pub use futex::Futex;

#[cfg(any(target_os = "linux", target_os = "android"))]
mod futex {
    use super::*;

    /// Unlocked.
    const UNLOCKED: u32 = 0;
    /// Locked, and no thread sleeps on the word.
    const LOCKED: u32 = 1;
    /// Locked, and threads may sleep on the word: the unlock must wake one.
    const CONTENDED: u32 = 2;

    /// How many times a waiter re-reads the word before it sleeps: about as
    /// long as one of the heap's critical sections lasts (a few hundred
    /// nanoseconds), so a short wait never costs two system calls, and a
    /// long one (the holder preempted) costs a few hundred loads at most.
    #[cfg(not(loom))]
    const SPINS: u32 = 100;
    // Under loom a spin's `spin_loop` is a yield, after which loom runs the
    // other threads until they block, so a spinning waiter would never
    // reach its sleep while the holder still holds the lock: the model
    // would miss the very interleavings it is for. Spinning is only an
    // optimisation (the word read last decides what happens next either
    // way), so the model does not spin.
    #[cfg(loom)]
    const SPINS: u32 = 0;

    /// A lock that spins briefly, then sleeps in the kernel: the three-state
    /// futex mutex of Drepper's "Futexes Are Tricky" (2011), as the Rust
    /// standard library's own `Mutex` is built on Linux.
    ///
    /// The word is 0 (unlocked), 1 (locked) or 2 (locked, and someone may be
    /// asleep on it). Taking a free lock is one compare-and-swap; releasing
    /// an uncontended one is one swap, and only a release that finds 2
    /// makes a system call (`FUTEX_WAKE` of one thread). A waiter first
    /// spins a while on a lock held without sleepers, then sets 2 and sleeps
    /// (`FUTEX_WAIT` on the value 2, which the kernel re-checks atomically
    /// with going to sleep, so a release between the waiter's look and its
    /// sleep is never missed).
    ///
    /// It never allocates (the futex is the word itself; the kernel keeps
    /// its wait queue), never panics and does not poison, so it can guard a
    /// `#[global_allocator]`, and its constant initialiser makes every
    /// stack a `static`. Not fair, not re-entrant.
    ///
    /// # Invariants
    /// - CORE-LK2: the word is 0 exactly while no thread holds the lock (between
    ///   a successful `lock`/`try_lock` and its `unlock`).
    /// - CORE-LK3: while a thread sleeps in `FUTEX_WAIT` on the word (or is about
    ///   to, having seen 2), the word is 2 or a release has woken a thread
    ///   after the sleeper set 2: a sleeper is never left with nobody to
    ///   wake it.
    ///
    /// ```
    /// use freespace_core::lock::Futex;
    /// use lock_api::{Mutex, RawMutex};
    /// use std::sync::Arc;
    ///
    /// let counter = Arc::new(Mutex::<Futex, u64>::new(0));
    /// let threads: Vec<_> = (0..4)
    ///     .map(|_| {
    ///         let counter = Arc::clone(&counter);
    ///         std::thread::spawn(move || {
    ///             for _ in 0..1000 {
    ///                 *counter.lock() += 1;
    ///             }
    ///         })
    ///     })
    ///     .collect();
    /// for t in threads {
    ///     t.join().unwrap();
    /// }
    /// assert_eq!(*counter.lock(), 4000);
    /// ```
    pub struct Futex {
        #[cfg(not(loom))]
        word: AtomicU32,
        // As for `Spin`: loom's primitives are made on first use.
        #[cfg(loom)]
        model: std::sync::OnceLock<model::Word>,
    }

    impl Futex {
        #[inline]
        pub(super) fn word(&self) -> &AtomicU32 {
            #[cfg(not(loom))]
            return &self.word;
            #[cfg(loom)]
            return &self.model.get_or_init(model::Word::new).word;
        }

        /// Checks CORE-LK2 as far as it can be seen from outside: at a quiescent
        /// point (no thread inside or waiting) the word must be 0.
        ///
        /// ```
        /// use freespace_core::lock::Futex;
        /// use lock_api::RawMutex;
        /// let lock = Futex::INIT;
        /// assert!(lock.check_unlocked().is_ok());
        /// lock.lock();
        /// assert!(lock.check_unlocked().is_err());
        /// # unsafe { lock.unlock() };
        /// ```
        pub fn check_unlocked(&self) -> Result<(), Violation> {
            match self.word().load(Ordering::Relaxed) {
                UNLOCKED => Ok(()),
                LOCKED | CONTENDED => Err(Violation::new(
                    "CORE-LK2",
                    self as *const Self as usize,
                    "futex lock held at a quiescent point",
                )),
                _ => Err(Violation::new(
                    "CORE-LK2",
                    self as *const Self as usize,
                    "futex word is neither 0, 1 nor 2",
                )),
            }
        }

        /// Spins while the lock is held without sleepers, at most
        /// [`SPINS`] reads; returns the last value read.
        #[inline]
        fn spin(&self) -> u32 {
            let mut left = SPINS;
            loop {
                let state = self.word().load(Ordering::Relaxed);
                if state != LOCKED || left == 0 {
                    return state;
                }
                spin_loop();
                left -= 1;
            }
        }

        #[cold]
        #[inline(never)]
        fn lock_contended(&self) {
            let mut state = self.spin();
            if state == UNLOCKED {
                match self.word().compare_exchange(
                    UNLOCKED,
                    LOCKED,
                    Ordering::Acquire,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => return,
                    Err(s) => state = s,
                }
            }
            loop {
                // Mark the lock contended before sleeping (CORE-LK3). Taking a
                // lock this way leaves it marked 2 though nobody may sleep:
                // its release then makes one needless wake call, never a
                // missed one.
                if state != CONTENDED && self.word().swap(CONTENDED, Ordering::Acquire) == UNLOCKED
                {
                    return;
                }
                self.wait(CONTENDED);
                state = self.spin();
            }
        }

        /// Sleeps while the word is `expected` (returns at once if it is
        /// not, and may return spuriously).
        #[cfg(not(loom))]
        fn wait(&self, expected: u32) {
            // SAFETY: `FUTEX_WAIT` reads the aligned `u32` the pointer
            // names, which lives as long as `self`; a null timeout means
            // "no timeout". An error (EAGAIN: the word changed; EINTR) is
            // a spurious return, which the caller's loop absorbs.
            unsafe {
                libc::syscall(
                    libc::SYS_futex,
                    self.word.as_ptr(),
                    libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
                    expected,
                    core::ptr::null::<libc::timespec>(),
                );
            }
        }

        /// Wakes one thread sleeping on the word, if any.
        #[cfg(not(loom))]
        #[cold]
        fn wake_one(&self) {
            // SAFETY: `FUTEX_WAKE` only uses the address as a key for the
            // kernel's wait queue; it reads no memory.
            unsafe {
                libc::syscall(
                    libc::SYS_futex,
                    self.word.as_ptr(),
                    libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
                    1,
                );
            }
        }

        #[cfg(loom)]
        fn wait(&self, expected: u32) {
            self.model.get_or_init(model::Word::new).wait(expected);
        }

        #[cfg(loom)]
        fn wake_one(&self) {
            self.model.get_or_init(model::Word::new).wake_one();
        }
    }

    // SAFETY: CORE-LK2. `lock` returns only after moving the word from 0 to 1 or
    // 2 with an Acquire read-modify-write, and `unlock` moves it to 0 with a
    // Release swap, so at most one holder exists at a time and everything
    // a holder wrote happens-before the next holder's critical section.
    // A thread that sleeps does so only on the value 2, and every unlock
    // that replaces a 2 wakes one sleeper (CORE-LK3), which then retries.
    unsafe impl lock_api::RawMutex for Futex {
        #[cfg(not(loom))]
        const INIT: Self = Self {
            word: AtomicU32::new(UNLOCKED),
        };
        #[cfg(loom)]
        const INIT: Self = Self {
            model: std::sync::OnceLock::new(),
        };

        type GuardMarker = lock_api::GuardSend;

        #[inline]
        fn lock(&self) {
            if self
                .word()
                .compare_exchange(UNLOCKED, LOCKED, Ordering::Acquire, Ordering::Relaxed)
                .is_err()
            {
                self.lock_contended();
            }
        }

        #[inline]
        fn try_lock(&self) -> bool {
            self.word()
                .compare_exchange(UNLOCKED, LOCKED, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
        }

        #[inline]
        unsafe fn unlock(&self) {
            if self.word().swap(UNLOCKED, Ordering::Release) == CONTENDED {
                self.wake_one();
            }
        }

        #[inline]
        fn is_locked(&self) -> bool {
            self.word().load(Ordering::Relaxed) != UNLOCKED
        }
    }

    impl core::fmt::Debug for Futex {
        fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            f.debug_struct("Futex")
                .field("word", &self.word().load(Ordering::Relaxed))
                .finish()
        }
    }

    /// The kernel's futex as loom sees it.
    #[cfg(loom)]
    mod model {
        use super::{AtomicU32, Ordering, UNLOCKED};

        /// The lock word and a wait queue for it. A wait holds `queue`'s
        /// mutex while it compares the word and goes to sleep on `wake`,
        /// and a wake takes the mutex before it notifies: so no wake can
        /// fall between a waiter's comparison and its sleep, which is the
        /// guarantee the kernel gives `FUTEX_WAIT`.
        pub(super) struct Word {
            pub(super) word: AtomicU32,
            queue: loom::sync::Mutex<()>,
            wake: loom::sync::Condvar,
        }

        impl Word {
            pub(super) fn new() -> Self {
                Self {
                    word: AtomicU32::new(UNLOCKED),
                    queue: loom::sync::Mutex::new(()),
                    wake: loom::sync::Condvar::new(),
                }
            }

            pub(super) fn wait(&self, expected: u32) {
                let queue = self.queue.lock().unwrap();
                if self.word.load(Ordering::Relaxed) == expected {
                    drop(self.wake.wait(queue).unwrap());
                }
            }

            pub(super) fn wake_one(&self) {
                let _queue = self.queue.lock().unwrap();
                self.wake.notify_one();
            }
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use lock_api::{Mutex, RawMutex};
    use std::sync::Arc;
    use std::vec::Vec;

    /// Threads that read, then separately write, a counter under the lock:
    /// lost updates would show if two were ever inside at once. More
    /// threads than this machine's cores, so holders get preempted.
    fn serialises_increments<R: RawMutex + Send + Sync + 'static>() {
        let threads = if cfg!(miri) { 3 } else { 8 };
        let rounds = if cfg!(miri) { 20 } else { 20_000 };
        let lock = Arc::new(Mutex::<R, usize>::new(0));
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let lock = Arc::clone(&lock);
                std::thread::spawn(move || {
                    for _ in 0..rounds {
                        let mut guard = lock.lock();
                        let v = *guard;
                        std::hint::black_box(());
                        *guard = v + 1;
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(*lock.lock(), threads * rounds);
    }

    #[test]
    fn spin_serialises_increments() {
        serialises_increments::<Spin>();
    }

    #[test]
    fn spin_excludes_and_releases() {
        let lock = Spin::INIT;
        lock.lock();
        assert!(!lock.try_lock());
        assert!(lock.check_unlocked().is_err());
        // SAFETY: held by this thread.
        unsafe { lock.unlock() };
        assert!(lock.try_lock());
        // SAFETY: held by this thread.
        unsafe { lock.unlock() };
        lock.check_unlocked().unwrap();
    }

    #[cfg(any(target_os = "linux", target_os = "android"))]
    mod futex {
        use super::*;
        use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
        use std::time::Duration;

        #[test]
        fn futex_serialises_increments() {
            serialises_increments::<Futex>();
        }

        #[test]
        fn futex_excludes_and_releases() {
            let lock = Futex::INIT;
            lock.lock();
            assert!(!lock.try_lock());
            assert!(lock.is_locked());
            assert!(lock.check_unlocked().is_err());
            // SAFETY: held by this thread.
            unsafe { lock.unlock() };
            assert!(!lock.is_locked());
            assert!(lock.try_lock());
            // SAFETY: held by this thread.
            unsafe { lock.unlock() };
            lock.check_unlocked().unwrap();
        }

        /// A waiter that outlasts its spin goes to sleep (the word shows
        /// 2, contended) and the release wakes it: the hand-over a spin
        /// lock cannot make.
        #[test]
        fn a_sleeping_waiter_is_woken_by_the_release() {
            let lock = Arc::new(Futex::INIT);
            let got_it = Arc::new(AtomicBool::new(false));
            lock.lock();
            let waiter = {
                let (lock, got_it) = (Arc::clone(&lock), Arc::clone(&got_it));
                std::thread::spawn(move || {
                    lock.lock();
                    got_it.store(true, SeqCst);
                    // SAFETY: held by this thread.
                    unsafe { lock.unlock() };
                })
            };
            // The waiter marks the word contended before it sleeps.
            while lock.word().load(Ordering::Relaxed) != 2 {
                std::thread::sleep(Duration::from_millis(1));
            }
            assert!(!got_it.load(SeqCst), "a held lock was taken");
            // SAFETY: held by this thread since the start.
            unsafe { lock.unlock() };
            waiter.join().unwrap();
            assert!(got_it.load(SeqCst));
            lock.check_unlocked().unwrap();
        }
    }
}
