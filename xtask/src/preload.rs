//! The `preload` step: freespace-malloc under `LD_PRELOAD` in real
//! processes.
//!
//! Builds `libfreespace_malloc.so` as it is shipped (`cargo build --profile
//! shim -p freespace-malloc-so`), then runs `cargo test -p
//! freespace-malloc-so --test preload -- --include-ignored` with `FREESPACE_MALLOC_SO` naming
//! it, so the tests and the figures below are of the library users preload:
//! the C test programs (every function, threads, fork, thread-exit
//! destructors, misuse that must abort with freespace's report) and the
//! real programs the plain test run skips — python3, perl, gcc, git, sqlite3 and
//! redis-server with redis-benchmark. Each asserts that the shim's exit
//! summary (`FREESPACE_MALLOC_STATS=1`) shows it served the program.
//!
//! A program that is not installed makes its test print `SKIPPED <test>:
//! <why>`; the step collects those lines and, if there are any, shows as
//! SKIPPED with them (the rest having passed). Under `CI=true` the tests
//! fail instead, so CI cannot pass without running every program.
//!
//! Each real program also runs once without the shim, and its test prints
//! `RSS <program>: glibc X MiB, freespace Y MiB, ratio Z; CPU glibc A s,
//! freespace B s, ratio C` (peak resident memory and CPU time of both
//! runs); the step collects those lines too and shows them
//! as notes under its row of the report. They are information, not a
//! verdict: the step passes or fails on the tests alone.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::matrix::Outcome;

/// The variable that tells the preload tests which `libfreespace_malloc.so`
/// to preload (without it they use the one cargo builds beside them, in the
/// test profile).
const SO_VAR: &str = "FREESPACE_MALLOC_SO";

/// The whole step, a cold build of the crate and its test included, on a
/// machine busy with other builds (about 2 minutes when quiet).
const BUDGET: Duration = Duration::from_secs(600);

/// Runs the step from the workspace at `root`: its outcome, and the `RSS`
/// lines the real-program tests printed.
pub fn run(root: &Path) -> (Outcome, Vec<String>) {
    let rss = Arc::new(Mutex::new(Vec::new()));
    let outcome = run_tests(root, &rss);
    let rss = rss.lock().map(|r| r.clone()).unwrap_or_default();
    if !rss.is_empty() {
        println!("peak resident memory and CPU time, glibc vs the shim (informational):");
        for line in &rss {
            println!("  {line}");
        }
    }
    (outcome, rss)
}

fn run_tests(root: &Path, rss: &Arc<Mutex<Vec<String>>>) -> Outcome {
    let started = Instant::now();
    println!("$ cargo build --profile shim -p freespace-malloc-so");
    let so = match crate::build_shim(root) {
        Ok(so) => so,
        Err(e) => return Outcome::Fail(e),
    };
    let mut cmd = Command::new("cargo");
    cmd.env(SO_VAR, &so);
    cmd.current_dir(root).args([
        "test",
        "-p",
        "freespace-malloc-so",
        "--test",
        "preload",
        "--",
        "--include-ignored",
    ]);
    println!(
        "$ {SO_VAR}={} cargo test -p freespace-malloc-so --test preload -- --include-ignored   (CI={})",
        so.display(),
        std::env::var("CI").unwrap_or_default()
    );
    let mut child = match cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn() {
        Ok(child) => child,
        Err(e) => return Outcome::Fail(format!("could not start cargo: {e}")),
    };
    let skipped = Arc::new(Mutex::new(Vec::new()));
    let out = echo(
        child.stdout.take(),
        false,
        Arc::clone(&skipped),
        Arc::clone(rss),
    );
    let err = echo(
        child.stderr.take(),
        true,
        Arc::clone(&skipped),
        Arc::clone(rss),
    );
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() > BUDGET => {
                let _ = child.kill();
                let _ = child.wait();
                return Outcome::OutOfTime(format!(
                    "timed out: the {}s budget was spent",
                    BUDGET.as_secs()
                ));
            }
            Ok(None) => thread::sleep(Duration::from_millis(100)),
            Err(e) => return Outcome::Fail(format!("waiting for cargo: {e}")),
        }
    };
    let _ = out.join();
    let _ = err.join();
    let skipped = skipped.lock().map(|s| s.clone()).unwrap_or_default();
    if !status.success() {
        return Outcome::Fail(
            status
                .code()
                .map_or("killed by a signal".into(), |c| format!("exit code {c}")),
        );
    }
    if skipped.is_empty() {
        Outcome::Pass
    } else {
        Outcome::Skipped(format!("the rest passed, but: {}", skipped.join("; ")))
    }
}

/// Copies `from` to our stdout or stderr line by line, keeping the
/// `SKIPPED` lines and the `!!! RSS` lines.
fn echo(
    from: Option<impl Read + Send + 'static>,
    to_stderr: bool,
    skipped: Arc<Mutex<Vec<String>>>,
    rss: Arc<Mutex<Vec<String>>>,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let Some(from) = from else { return };
        for line in BufReader::new(from).lines().map_while(Result::ok) {
            if let Some((_, what)) = line.split_once("SKIPPED ") {
                if let Ok(mut s) = skipped.lock() {
                    s.push(what.trim().to_string());
                }
            }
            if let Some((_, what)) = line.split_once("!!! RSS ") {
                if let Ok(mut r) = rss.lock() {
                    r.push(format!("RSS {}", what.trim()));
                }
            }
            if to_stderr {
                let _ = writeln!(std::io::stderr(), "{line}");
            } else {
                let _ = writeln!(std::io::stdout(), "{line}");
            }
        }
    })
}
