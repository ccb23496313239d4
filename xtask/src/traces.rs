//! `cargo xtask trace` and `cargo xtask replay`: record what a program
//! asks of malloc, then replay it against every policy.
//!
//! - `trace [--out PATH] -- CMD ARGS..` builds freespace-malloc as shipped
//!   (the `shim` profile) and runs `CMD ARGS..` with it preloaded and `FREESPACE_TRACE=PATH`
//!   (default `freespace.trace`; a `%p` in it gives every process its own
//!   file), then says how many calls were recorded.
//! - `replay [ARGS..] TRACE..` runs freespace-bench's `replay` binary in
//!   release (see its `--help`): per trace, peak footprint over peak live
//!   bytes, granted over requested bytes, external fragmentation at the
//!   peak, time per op and failures for every subject.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

/// `cargo xtask replay ARGS..`.
pub fn replay(args: &[String]) -> ExitCode {
    let mut cmd = Command::new("cargo");
    cmd.current_dir(crate::root()).args([
        "run",
        "--release",
        "--quiet",
        "--package",
        "freespace-bench",
        "--bin",
        "replay",
        "--",
    ]);
    // Trace paths are relative to where the xtask was started.
    let here = std::env::current_dir().unwrap_or_default();
    cmd.args(args.iter().map(|a| {
        let p = Path::new(a);
        if !a.starts_with('-') && p.is_relative() && here.join(p).exists() {
            here.join(p)
                .into_os_string()
                .into_string()
                .unwrap_or_else(|_| a.clone())
        } else {
            a.clone()
        }
    }));
    status(cmd, "replay")
}

/// `cargo xtask trace [--out PATH] -- CMD ARGS..`.
pub fn trace(args: &[String]) -> ExitCode {
    let mut out = PathBuf::from("freespace.trace");
    let mut it = args.iter();
    let mut program: Vec<String> = Vec::new();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--out" => match it.next() {
                Some(p) => out = PathBuf::from(p),
                None => return usage("--out needs a path"),
            },
            "--" => {
                program = it.cloned().collect();
                break;
            }
            other => {
                return usage(&format!(
                    "unknown argument {other:?} (the program goes after --)"
                ))
            }
        }
    }
    if program.is_empty() {
        return usage("no program to trace: cargo xtask trace [--out PATH] -- CMD ARGS..");
    }
    let so = match crate::build_shim(&crate::root()) {
        Ok(so) => so,
        Err(e) => {
            eprintln!("error: could not build freespace-malloc: {e}");
            return ExitCode::FAILURE;
        }
    };
    let here = std::env::current_dir().unwrap_or_default();
    let out = here.join(out);
    let mut cmd = Command::new(&program[0]);
    cmd.args(&program[1..])
        .env("LD_PRELOAD", &so)
        .env("FREESPACE_TRACE", &out);
    let code = status(cmd, &program[0]);
    match std::fs::metadata(&out) {
        Ok(m) => eprintln!(
            "trace: {} ({} calls); replay it with: cargo xtask replay {}",
            out.display(),
            m.len().saturating_sub(16) / 32,
            out.display()
        ),
        Err(_) if out.to_string_lossy().contains("%p") => {
            eprintln!("trace: one file per process, {}", out.display())
        }
        Err(e) => eprintln!("trace: no trace at {}: {e}", out.display()),
    }
    code
}

fn usage(message: &str) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(2)
}

fn status(mut cmd: Command, what: &str) -> ExitCode {
    match cmd.status() {
        Ok(s) if s.success() => ExitCode::SUCCESS,
        Ok(s) => {
            eprintln!("{what} failed: {s}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("could not run {what}: {e}");
            ExitCode::FAILURE
        }
    }
}
