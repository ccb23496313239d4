//! Call counters, and the one-line summary `FREESPACE_MALLOC_STATS=1` prints
//! to standard error when the process exits.
//!
//! The counters only move when the variable is set (read once, by the
//! library's constructor, after the C library is initialised), so the
//! shared cache line they live on costs nothing otherwise. The summary is
//! formatted into a fixed buffer and written with `write(2)`: nothing
//! allocates while the process is going away.
//!
//! ```text
//! freespace-malloc: pid 4242: malloc 18234 calloc 912 realloc 1406 aligned 3 free 17020 failed 0 bytes 9145612 gate membarrier
//! ```

use core::sync::atomic::{AtomicU64, Ordering};

use crate::extras;

/// Which counter a call moves.
#[derive(Clone, Copy)]
pub(crate) enum Counter {
    Malloc = 0,
    Calloc,
    Realloc,
    Aligned,
    Free,
    Failed,
}

const NAMES: [&str; 6] = ["malloc", "calloc", "realloc", "aligned", "free", "failed"];

static COUNTS: [AtomicU64; 6] = [const { AtomicU64::new(0) }; 6];
static BYTES: AtomicU64 = AtomicU64::new(0);

/// Counts one call of `counter` that asked for `bytes`.
#[inline]
pub(crate) fn count(counter: Counter, bytes: usize) {
    if extras::on(extras::STATS) {
        COUNTS[counter as usize].fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(bytes as u64, Ordering::Relaxed);
    }
}

/// Called by the library's constructor ([`crate::lifecycle`], after the C
/// library is initialised, so the environment is readable): turns counting on if
/// `FREESPACE_MALLOC_STATS` is `1`, and makes the fork gate use full fences
/// instead of `membarrier` if `FREESPACE_MALLOC_FENCE` is `1` (for a
/// sandbox where `membarrier` misbehaves; the tests use it to cover that
/// path), and sets the heap's purge budget from `FREESPACE_MALLOC_PURGE`
/// (MiB freed between automatic give-backs; `0`: none), and turns the
/// write-after-free check on if `FREESPACE_MALLOC_REUSE_CHECK` is `1`.
#[cfg(not(test))]
pub(crate) fn init() {
    extras::set(extras::STATS, env_is_one(c"FREESPACE_MALLOC_STATS"));
    if let Some(mib) = env_number(c"FREESPACE_MALLOC_PURGE") {
        crate::shim::set_purge_mib(mib);
    }
    if env_is_one(c"FREESPACE_MALLOC_FENCE") {
        crate::fork::use_fences();
    }
    if env_is_one(c"FREESPACE_MALLOC_REUSE_CHECK") {
        crate::shim::set_reuse_check(true);
    }
}

/// Whether the environment variable `name` is exactly `1`.
#[cfg(not(test))]
fn env_is_one(name: &core::ffi::CStr) -> bool {
    // SAFETY: a NUL-terminated name; `getenv` returns null or a
    // NUL-terminated string that stays valid while we read it (nothing
    // changes the environment during a constructor).
    unsafe {
        let v = libc::getenv(name.as_ptr());
        !v.is_null() && *v == b'1' as libc::c_char && *v.add(1) == 0
    }
}

/// The environment variable `name` as a decimal number, if it is one.
#[cfg(not(test))]
fn env_number(name: &core::ffi::CStr) -> Option<usize> {
    // SAFETY: as in `env_is_one`; the digits are read up to the NUL.
    unsafe {
        let mut v = libc::getenv(name.as_ptr());
        if v.is_null() || *v == 0 {
            return None;
        }
        let mut n: usize = 0;
        while *v != 0 {
            let d = (*v as u8).checked_sub(b'0').filter(|d| *d <= 9)?;
            n = n.checked_mul(10)?.checked_add(usize::from(d))?;
            v = v.add(1);
        }
        Some(n)
    }
}

/// Called by the library's destructor ([`crate::lifecycle`]): prints the
/// summary if counting is on.
#[cfg(not(test))]
pub(crate) fn fini() {
    if extras::on(extras::STATS) {
        let mut line = Line::new();
        summary(&mut line);
        line.write_to_stderr();
    }
}

/// Writes the summary line (with its newline) into `line`.
pub(crate) fn summary(line: &mut Line) {
    line.push(b"freespace-malloc: pid ");
    // SAFETY: `getpid` has no preconditions.
    line.number(unsafe { libc::getpid() } as u64);
    line.push(b":");
    for (name, count) in NAMES.iter().zip(&COUNTS) {
        line.push(b" ");
        line.push(name.as_bytes());
        line.push(b" ");
        line.number(count.load(Ordering::Relaxed));
    }
    line.push(b" bytes ");
    line.number(BYTES.load(Ordering::Relaxed));
    line.push(if crate::fork::uses_membarrier() {
        b" gate membarrier"
    } else {
        b" gate fence"
    });
    line.push(b"\n");
}

/// A line of text in a fixed buffer; what does not fit is dropped.
pub(crate) struct Line {
    buf: [u8; 256],
    len: usize,
}

impl Line {
    pub(crate) const fn new() -> Self {
        Line {
            buf: [0; 256],
            len: 0,
        }
    }

    pub(crate) fn push(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if let Some(slot) = self.buf.get_mut(self.len) {
                *slot = b;
                self.len += 1;
            }
        }
    }

    /// Appends `n` in decimal.
    pub(crate) fn number(&mut self, mut n: u64) {
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        self.push(&digits[i..]);
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    #[cfg_attr(test, allow(dead_code))]
    fn write_to_stderr(&self) {
        let mut rest = self.as_bytes();
        while !rest.is_empty() {
            // SAFETY: `rest` is a live byte slice; `write` reads at most
            // `rest.len()` bytes of it.
            let n = unsafe { libc::write(2, rest.as_ptr().cast(), rest.len()) };
            if n <= 0 {
                break;
            }
            rest = &rest[n as usize..];
        }
    }
}
