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
    update(&EXTRAS, bit, value);
}

/// [`set`] on `word`: the bit alone changes.
fn update(word: &AtomicU8, bit: u8, value: bool) {
    if value {
        word.fetch_or(bit, Ordering::Release);
    } else {
        word.fetch_and(!bit, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On a word of its own: the shim's tests toggle the process's word
    /// (the write-after-free check) from other threads.
    #[test]
    fn a_bit_changes_alone() {
        let word = AtomicU8::new(0);
        update(&word, STATS, true);
        update(&word, TRACE, true);
        update(&word, REUSE, true);
        update(&word, TRACE, false);
        assert_eq!(word.load(Ordering::Relaxed), STATS | REUSE);
        update(&word, STATS, false);
        update(&word, STATS, false);
        assert_eq!(word.load(Ordering::Relaxed), REUSE);
        update(&word, REUSE, false);
        assert_eq!(word.load(Ordering::Relaxed), 0);
    }
}
