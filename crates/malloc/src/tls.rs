//! The calling thread's [`ThreadState`] in two loads: a word of
//! initial-exec thread-local storage that caches its address.
//!
//! [`THREAD`] is a `std::thread_local!`. In a shared library rustc reaches
//! it through the general-dynamic TLS model: a call into the C library's
//! `__tls_get_addr` (about 13 instructions with the call) on every
//! `malloc` and every `free`. A library that is preloaded, or linked into
//! the program, may use the initial-exec model instead, since its TLS is
//! laid out with the program's at start-up: the thread pointer plus an
//! offset the dynamic linker writes once into the GOT. Stable Rust cannot
//! ask for that model (`-Z tls-model=initial-exec` is nightly), so this
//! module defines one word of TLS itself, in assembly, holding the address
//! of the thread's [`THREAD`]: [`get`] is a load of the offset and a load
//! through `%fs`, and only a thread's first call finds null and fills it in
//! ([`fill`]).
//!
//! The module's invariant, **TLS-1**: a thread's word is null or the
//! address of *that* thread's [`THREAD`]. It holds because only [`fill`]
//! writes the word, with the address `THREAD` gives the calling thread; a
//! new thread's word starts null (`.tbss` is zero-filled); and the address
//! stays valid for the thread's life, `THREAD` having no destructor. After
//! `fork` the child's one thread is a copy of the forking thread, at the
//! same addresses, so its word still names its own state.
//!
//! On targets other than x86-64 Linux [`get`] is the `thread_local!`
//! lookup itself.
//!
//! The cost of initial-exec TLS: the library's whole TLS block (this word
//! and [`THREAD`], under a kilobyte) becomes part of the static TLS block.
//! Preloaded or linked, it is laid out at start-up; a `dlopen` after
//! start-up must find room for it in the reserve glibc keeps for such
//! libraries (`python3 -c "import ctypes; ctypes.CDLL(...)"` loads it), and
//! fails with "cannot allocate memory in static TLS block" where other
//! libraries used that reserve up (glibc's tunable
//! `glibc.rtld.optional_static_tls` enlarges it).

use core::ptr;

use crate::shim::{ThreadState, THREAD};

#[cfg(target_arch = "x86_64")]
core::arch::global_asm!(
    // One zero-initialised, 8-byte-aligned word of TLS, visible to this
    // library's code only.
    ".pushsection .tbss.freespace_malloc_thread,\"awT\",@nobits",
    ".p2align 3",
    ".globl freespace_malloc_thread",
    ".hidden freespace_malloc_thread",
    ".type freespace_malloc_thread,@object",
    ".size freespace_malloc_thread,8",
    "freespace_malloc_thread:",
    ".zero 8",
    ".popsection",
);

/// The calling thread's state, or null if its thread-local is unavailable
/// (never, for a thread-local without destructor; the callers go to the
/// shared heap then).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) fn get() -> *const ThreadState {
    let thread: *const ThreadState;
    // SAFETY: reads the calling thread's word: the GOT entry holds its
    // offset from the thread pointer (`%fs` base), written by the dynamic
    // linker at load time; the word is 8 bytes, 8-aligned. Nothing else is
    // read or written.
    unsafe {
        core::arch::asm!(
            "mov {t}, qword ptr [rip + freespace_malloc_thread@GOTTPOFF]",
            "mov {t}, qword ptr fs:[{t}]",
            t = out(reg) thread,
            options(nostack, readonly, preserves_flags),
        );
    }
    if thread.is_null() {
        fill()
    } else {
        // TLS-1: this thread's `THREAD`.
        thread
    }
}

/// A thread's first [`get`]: looks [`THREAD`] up and keeps its address in
/// the thread's word (TLS-1).
#[cfg(target_arch = "x86_64")]
#[cold]
#[inline(never)]
fn fill() -> *const ThreadState {
    let thread = lookup();
    // SAFETY: writes the calling thread's word (as in `get`) with the
    // address of the calling thread's `THREAD` (or null, which asks again
    // next time): TLS-1 holds after the write.
    unsafe {
        core::arch::asm!(
            "mov {t}, qword ptr [rip + freespace_malloc_thread@GOTTPOFF]",
            "mov qword ptr fs:[{t}], {p}",
            t = out(reg) _,
            p = in(reg) thread,
            options(nostack, preserves_flags),
        );
    }
    thread
}

/// The calling thread's state, or null (see the x86-64 [`get`]).
#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
pub(crate) fn get() -> *const ThreadState {
    lookup()
}

/// The `thread_local!` lookup.
#[inline(always)]
fn lookup() -> *const ThreadState {
    THREAD
        .try_with(|t| t as *const ThreadState)
        .unwrap_or(ptr::null())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every thread gets its own `THREAD`, the same one on every call.
    #[test]
    fn each_thread_sees_its_own_state() {
        let main = get();
        assert!(!main.is_null());
        assert_eq!(get(), main);
        assert_eq!(get(), lookup());
        let other = std::thread::spawn(|| {
            let first = get();
            assert_eq!(get(), first);
            assert_eq!(first, lookup());
            first as usize
        })
        .join()
        .unwrap();
        assert_ne!(other, main as usize);
        assert_eq!(get(), main);
    }
}
