//! A minimal spin lock on `AtomicBool`, for the sources that must be `Sync`
//! without `std` ([`Sbrk`](crate::Sbrk) and [`Mmap`](crate::Mmap)).
//!
//! Critical sections are a few system calls long and never allocate, so
//! spinning is cheap and the lock can sit under a global allocator.

use core::cell::UnsafeCell;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicBool, Ordering};

/// A value guarded by a spin lock.
///
/// # Invariants
/// - L1: `value` is only reached through a [`SpinGuard`], and at most one
///   guard exists at a time (`locked` is true exactly while it does).
pub(crate) struct SpinLock<T> {
    locked: AtomicBool,
    value: UnsafeCell<T>,
}

// SAFETY: L1 — the lock hands `&mut T` to one thread at a time, which is
// exactly what `T: Send` permits.
unsafe impl<T: Send> Sync for SpinLock<T> {}

impl<T> SpinLock<T> {
    /// An unlocked lock around `value`.
    pub(crate) const fn new(value: T) -> Self {
        Self {
            locked: AtomicBool::new(false),
            value: UnsafeCell::new(value),
        }
    }

    /// Spins until the lock is free, then holds it until the guard drops.
    pub(crate) fn lock(&self) -> SpinGuard<'_, T> {
        while self
            .locked
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            while self.locked.load(Ordering::Relaxed) {
                core::hint::spin_loop();
            }
        }
        SpinGuard { lock: self }
    }
}

/// Proof that the lock is held; releases it when dropped.
pub(crate) struct SpinGuard<'a, T> {
    lock: &'a SpinLock<T>,
}

impl<T> Deref for SpinGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: this guard holds the lock, so no other reference to the
        // value exists (L1).
        unsafe { &*self.lock.value.get() }
    }
}

impl<T> DerefMut for SpinGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`; `&mut self` makes this the only borrow.
        unsafe { &mut *self.lock.value.get() }
    }
}

impl<T> Drop for SpinGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.locked.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::SpinLock;
    use std::sync::Arc;
    use std::vec::Vec;

    #[test]
    fn serialises_increments() {
        let threads = if cfg!(miri) { 2 } else { 4 };
        let rounds = if cfg!(miri) { 20 } else { 10_000 };
        let lock = Arc::new(SpinLock::new(0usize));
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let lock = Arc::clone(&lock);
                std::thread::spawn(move || {
                    for _ in 0..rounds {
                        // A read and a separate write: lost updates would
                        // show if two threads were inside at once.
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
}
