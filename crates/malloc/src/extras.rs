//! The optional work a call may have to do — counting ([`crate::stats`]),
//! the trace ([`crate::trace`]), the write-after-free check
//! ([`set_reuse_check`](crate::set_reuse_check)) — as bits of one word,
//! so that `malloc`'s and `free`'s fast paths test for all of it with one
//! load: with every bit clear (the default) they do none of it and go
//! straight to the thread's magazines.
//!
//! # Invariants
//!
//! - MALLOC-X1: each bit is the one place its setting lives: [`on`] is
//!   what the setting is, and nothing else keeps a copy.

use core::sync::atomic::{AtomicU8, Ordering};

/// The bits that are set.
static EXTRAS: AtomicU8 = AtomicU8::new(0);

/// Calls are counted (`FREESPACE_MALLOC_STATS=1`).
pub(crate) const STATS: u8 = 1;
/// Calls are traced (`FREESPACE_MALLOC_TRACE`).
pub(crate) const TRACE: u8 = 2;
/// The write-after-free check runs.
pub(crate) const REUSE: u8 = 4;

/// Whether `bit` is set: one relaxed load.
#[inline(always)]
pub(crate) fn on(bit: u8) -> bool {
    EXTRAS.load(Ordering::Relaxed) & bit != 0
}

/// Whether no bit is set: the fast paths' test.
#[inline(always)]
pub(crate) fn none() -> bool {
    EXTRAS.load(Ordering::Relaxed) == 0
}

/// Sets `bit` (with `Release`: what was written before it, such as the
/// trace file's descriptor, is seen by a call that sees the bit and then
/// acquires) or clears it.
pub(crate) fn set(bit: u8, value: bool) {
    if value {
        EXTRAS.fetch_or(bit, Ordering::Release);
    } else {
        EXTRAS.fetch_and(!bit, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_are_independent() {
        // REUSE is the one the unit tests toggle; leave it as found.
        let before = on(REUSE);
        set(REUSE, true);
        assert!(on(REUSE) && !none());
        set(REUSE, false);
        assert!(!on(REUSE));
        set(REUSE, before);
    }
}
