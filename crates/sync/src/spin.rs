//! [`Spin`]: the default lock of [`Locked`](crate::Locked), a test-and-test-and-set
//! spin lock.

use crate::sync::{spin_loop, AtomicBool, Ordering};

/// A spin lock implementing [`lock_api::RawMutex`]: one `AtomicBool`, taken
/// with `compare_exchange_weak` and waited on with plain loads and
/// [`core::hint::spin_loop`] (test-and-test-and-set, so waiting threads do
/// not fight over the cache line).
///
/// It never allocates, never panics and has no poisoning, so it can guard a
/// `#[global_allocator]`. It is not fair and not re-entrant: a thread that
/// takes it twice waits for itself forever.
///
/// # Invariants
/// - S1: the flag is `true` exactly while one holder is between a successful
///   `lock`/`try_lock` and its `unlock`.
///
/// ```
/// use freespace_sync::Spin;
/// use lock_api::RawMutex;
///
/// let lock = Spin::INIT;
/// lock.lock();
/// assert!(lock.is_locked() && !lock.try_lock());
/// // SAFETY: this thread holds the lock.
/// unsafe { lock.unlock() };
/// assert!(lock.try_lock());
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

    /// Checks S1 as far as it can be seen from outside: at a quiescent point
    /// (no thread inside the lock) the flag must be clear.
    ///
    /// ```
    /// use freespace_sync::Spin;
    /// use lock_api::RawMutex;
    /// let lock = Spin::INIT;
    /// assert!(lock.check_unlocked().is_ok());
    /// lock.lock();
    /// assert!(lock.check_unlocked().is_err());
    /// # unsafe { lock.unlock() };
    /// ```
    pub fn check_unlocked(&self) -> Result<(), freespace_core::Violation> {
        if self.flag().load(Ordering::Relaxed) {
            Err(freespace_core::Violation::new(
                "S1",
                self as *const Self as usize,
                "lock held at a quiescent point",
            ))
        } else {
            Ok(())
        }
    }
}

// SAFETY: `lock` returns only after swapping the flag from false to true
// with Acquire ordering, and `unlock` stores false with Release ordering, so
// at most one holder exists at a time (S1) and everything a holder wrote
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
