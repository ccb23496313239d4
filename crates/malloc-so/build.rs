//! Links the unwinder statically into `libfreespace_malloc.so`.
//!
//! As shipped (the `shim` profile, `no_std`) the library references no
//! unwinder at all, and the linker's `--gc-sections` drops every part of
//! the archive below. Built with the standard library (the workspace's
//! unwinding profiles, which the tests use), it does: the standard
//! library's backtraces call the unwinder (`_Unwind_*`),
//! which rustc links as the shared `libgcc_s.so.1`. Every program the shim
//! is preloaded into then maps that library too: 100 KiB resident in a
//! `git log`, measured with smaps, for code the shim never runs unless it
//! panics. On Linux with glibc this script links `libgcc_eh.a` (the same
//! unwinder, static) into the cdylib alone, whole, at the end of its link
//! line: its definitions take the place of libgcc_s's, the linker's
//! `--as-needed` then drops libgcc_s, and the cdylib's version script keeps
//! them local. The rlib, the tests and every other target link as before.
//! Where the C compiler knows no `libgcc_eh.a`, nothing changes (and a
//! warning says so); nor does it in a cross build, whose C compiler this
//! script does not know.

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=CC");
    let os = env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let abi = env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    // The C compiler asked below is the host's: a cross build keeps libgcc_s.
    let native = env::var("TARGET").ok() == env::var("HOST").ok();
    if os != "linux" || abi != "gnu" || !native {
        return;
    }
    match static_unwinder() {
        Some(archive) => {
            println!("cargo::rustc-cdylib-link-arg=-Wl,--whole-archive");
            println!("cargo::rustc-cdylib-link-arg={}", archive.display());
            println!("cargo::rustc-cdylib-link-arg=-Wl,--no-whole-archive");
        }
        None => println!(
            "cargo::warning=libgcc_eh.a not found: libfreespace_malloc.so will need libgcc_s.so.1"
        ),
    }
}

/// The path of `libgcc_eh.a` as the C compiler (`$CC`, else `cc`) reports
/// it, if it exists.
fn static_unwinder() -> Option<PathBuf> {
    let cc = env::var("CC").unwrap_or_else(|_| "cc".into());
    let out = Command::new(cc)
        .arg("-print-file-name=libgcc_eh.a")
        .output()
        .ok()?;
    let path = PathBuf::from(String::from_utf8(out.stdout).ok()?.trim());
    // Without the file, the compiler prints the bare name back.
    (out.status.success() && path.is_absolute() && path.is_file()).then_some(path)
}
