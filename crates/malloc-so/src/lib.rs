//! `libfreespace_malloc.so`: the C `malloc` family of
//! [freespace-malloc](../freespace_malloc/index.html) as a shared library
//! for `LD_PRELOAD`:
//!
//! ```text
//! cargo build --profile shim -p freespace-malloc-so
//! LD_PRELOAD=target/shim/libfreespace_malloc.so python3 -c 'print("hello")'
//! ```
//!
//! This crate holds no logic: it links freespace-malloc (whose exported
//! functions become the library's) and, built with `panic = "abort"` on
//! x86-64 (the `shim` profile), leaves the standard library out. The shim
//! needs none of it — its per-thread state is initial-exec TLS of its own
//! (`freespace_malloc`'s `tls` module), its files and locks are the C
//! library's — and the standard library's panic and backtrace machinery
//! (a symbolizer, a DWARF reader, a demangler) made up two thirds of the
//! library's code. Code is mapped from the file, and the kernel maps the
//! pages around every page a program touches, so every process the shim is
//! preloaded into carried several hundred KiB of that code resident
//! (docs/malloc.md, "What it costs in memory").
//!
//! Under unwinding profiles (the workspace's `dev`, `test` and `release`)
//! the crate links the standard library as usual, which provides the panic
//! machinery a `no_std` library would have to supply.
#![cfg_attr(all(panic = "abort", target_arch = "x86_64"), no_std)]

// The exported functions (`malloc`, `free`, ...) and the library's
// constructor and destructor are `#[no_mangle]` and `#[used]` items of
// this crate's one dependency: linking it is all the library does.
extern crate shim;

/// Nothing in the shim panics: every size is checked arithmetic and every
/// failure a null pointer or a report through `freespace_core::report`
/// (see freespace-malloc's crate docs). Should a panic happen anyway, the
/// process stops with a message, as `panic = "abort"` would with the
/// standard library.
#[cfg(all(panic = "abort", target_arch = "x86_64"))]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    const MESSAGE: &[u8] = b"freespace: panic in libfreespace_malloc.so\n";
    // SAFETY: writes a static buffer of its own length to stderr, then
    // aborts: no other state is touched.
    unsafe {
        libc::write(2, MESSAGE.as_ptr().cast(), MESSAGE.len());
        libc::abort()
    }
}
