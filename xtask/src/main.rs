//! `cargo xtask`: freespace's task runner.
//!
//! ```text
//! cargo xtask test [--only STEP[,STEP..]] [--skip STEP] [--skip-miri]
//! cargo xtask miri [CRATE..]
//! cargo xtask demo
//! cargo xtask help
//! ```
//!
//! The xtask depends on nothing but the standard library, so it builds and
//! reports even while every other crate in the workspace is broken. The demo
//! needs the allocator crates, so it is a separate target (the `demo` example
//! of this package, `src/demo.rs`) that `cargo xtask demo` builds and runs.

mod bench;
mod fuzz;
mod json;
mod matrix;
mod preload;

use std::env;
use std::path::Path;
use std::process::{Command, ExitCode};

use matrix::{Step, MIRI_CRATES_VAR};

const USAGE: &str = "\
usage: cargo xtask <command>

commands:
  test [options]    run the test matrix and print a summary table
      --only STEP       run only these steps (repeat, or separate with commas)
      --skip STEP       do not run STEP (it shows as SKIPPED)
      --skip-miri       same as --skip miri
  miri [CRATE..]    only the Miri step, over the crates named (default: every library crate)
  demo              build heaps over Arena and Sbrk, run a short workload, print what happened
  bench [ARGS..]    benchmarks next to glibc, mimalloc, jemalloc, ...: writes docs/benchmarks.md
                    (ARGS go to freespace-bench: --quick, --workload W, --subject S, --runs N, --callgrind)
  fuzz [TARGET..] [--seconds N] [--smoke]
                    cargo-fuzz every target (default 60 s each); --smoke: a few seconds each
                    and replay fuzz/regressions (SKIPPED without cargo-fuzz/nightly)
  reliability [--fuzz-seconds N]
                    regenerate docs/reliability.md: fault matrix, OOM, fuzz figures, loom, Miri
  help              this text

environment:
  FREESPACE_MIRI_CRATES   crates the miri step tests (comma- or space-separated)
  FREESPACE_MIRI_BUDGET   seconds all crates' Miri runs may take together (default 1200)
  FREESPACE_DEADLINE      unix time by which the run must end; Miri stops there (CI sets it)
  CARGO_TARGET_DIR        honoured by every step";

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("test") => test(&args[1..]),
        Some("miri") => miri(&args[1..]),
        Some("demo") if args.len() == 1 => demo(),
        Some("bench") => bench::bench(&args[1..]),
        Some("fuzz") => fuzz::command(&args[1..]),
        Some("reliability") => fuzz::reliability(&args[1..]),
        None | Some("help" | "-h" | "--help") => {
            println!("{USAGE}\n\nsteps of `test`:");
            for step in matrix::steps() {
                println!("  {:<8} {}", step.name, step.what);
            }
            ExitCode::SUCCESS
        }
        Some(other) => usage_error(&format!("unknown command or argument: {other}")),
    }
}

fn usage_error(message: &str) -> ExitCode {
    eprintln!("error: {message}\n\n{USAGE}");
    ExitCode::from(2)
}

fn test(args: &[String]) -> ExitCode {
    let names: Vec<&str> = matrix::steps().iter().map(|s| s.name).collect();
    let mut only: Vec<String> = Vec::new();
    let mut skip: Vec<(String, String)> = Vec::new();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) => (flag, Some(value.to_string())),
            None => (arg.as_str(), None),
        };
        match flag {
            "--only" | "--skip" => {
                let Some(value) = inline.or_else(|| args.next().cloned()) else {
                    return usage_error(&format!("{flag} needs a step name"));
                };
                for name in value.split(',').filter(|s| !s.is_empty()) {
                    if !names.contains(&name) {
                        return usage_error(&format!(
                            "no step named {name:?}; steps: {}",
                            names.join(", ")
                        ));
                    }
                    if flag == "--only" {
                        only.push(name.to_string());
                    } else {
                        skip.push((name.to_string(), "--skip".to_string()));
                    }
                }
            }
            "--skip-miri" => skip.push(("miri".to_string(), "--skip-miri".to_string())),
            _ => return usage_error(&format!("unknown option for test: {arg}")),
        }
    }
    let plan: Vec<(Step, Option<String>)> = matrix::steps()
        .into_iter()
        .filter(|s| only.is_empty() || only.iter().any(|o| o == s.name))
        .map(|s| {
            let reason = skip
                .iter()
                .find(|(name, _)| name == s.name)
                .map(|(_, why)| format!("{why} given"));
            (s, reason)
        })
        .collect();
    finish(matrix::run(&plan))
}

fn miri(crates: &[String]) -> ExitCode {
    if let Some(flag) = crates.iter().find(|c| c.starts_with('-')) {
        return usage_error(&format!("unknown option for miri: {flag}"));
    }
    if !crates.is_empty() {
        // Single-threaded here, before any step runs.
        env::set_var(MIRI_CRATES_VAR, crates.join(","));
    }
    // The standalone command records its coverage for docs/reliability.md.
    env::set_var(matrix::MIRI_DOC_VAR, "1");
    let plan: Vec<_> = matrix::steps()
        .into_iter()
        .filter(|s| s.name == "miri")
        .map(|s| (s, None))
        .collect();
    finish(matrix::run(&plan))
}

fn finish(passed: bool) -> ExitCode {
    if passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// `cargo run` of the demo example: the command `cargo xtask demo` and the
/// matrix's `demo` step both run.
pub fn demo_command(root: &Path) -> Command {
    let mut cmd = Command::new("cargo");
    cmd.current_dir(root)
        .args(["run", "--quiet", "--package", "xtask", "--example", "demo"]);
    cmd
}

fn demo() -> ExitCode {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace");
    match demo_command(root).status() {
        Ok(s) if s.success() => ExitCode::SUCCESS,
        Ok(s) => {
            eprintln!("demo failed: {s}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("could not run cargo: {e}");
            ExitCode::FAILURE
        }
    }
}
