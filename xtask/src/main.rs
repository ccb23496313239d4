//! `cargo xtask`: freespace's task runner.
//!
//! ```text
//! cargo xtask test [--only STEP[,STEP..]] [--skip STEP] [--skip-miri]
//! cargo xtask miri [--doc] [CRATE..]
//! cargo xtask demo
//! cargo xtask bench [ARGS..]
//! cargo xtask trace [--out PATH] -- CMD ARGS..
//! cargo xtask replay [ARGS..] TRACE..
//! cargo xtask fuzz [TARGET..] [--seconds N | --long] [--smoke]
//! cargo xtask reliability [--fuzz-seconds N]
//! cargo xtask docs
//! cargo xtask help
//! ```
//!
//! `cargo xtask help` says what each does and lists the steps of `test`
//! (from [`matrix::steps`], like docs/testing.md's step table). Only the
//! commands that generate docs write tracked files (`bench`, `fuzz`,
//! `reliability`, `miri --doc`, `docs`); `test` leaves the tree as it was.
//!
//! The xtask depends on nothing but the standard library, so it builds and
//! reports even while every other crate in the workspace is broken. The demo
//! needs the allocator crates, so it is a separate target (the `demo` example
//! of this package, `src/demo.rs`) that `cargo xtask demo` builds and runs.

#[cfg(test)]
mod architecture;
mod bench;
mod fuzz;
mod json;
mod matrix;
mod preload;
mod traces;

use std::env;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use matrix::{Step, MIRI_CRATES_VAR};

/// The help text; the budget is the constant the miri step uses.
fn usage() -> String {
    format!(
        "\
usage: cargo xtask <command>

commands:
  test [options]    run the test matrix and print a summary table (writes no tracked file)
      --only STEP       run only these steps (repeat, or separate with commas)
      --skip STEP       do not run STEP (it shows as SKIPPED)
      --skip-miri       same as --skip miri
  miri [--doc] [CRATE..]
                    only the Miri step, over the crates named (default: every library crate);
                    --doc also writes docs/miri.txt (read by `reliability`)
  demo              the slab -> buddy -> sbrk stack (Slab<Buddy<Sbrk>>) on 3000 mixed-size
                    blocks, layer by layer: live blocks, free memory, slabs, the buddy's orders
                    and heap map, what sbrk gave; then a best-fit free-list heap over Arena and
                    over Sbrk, step by step with heap maps and fragmentation
  bench [ARGS..]    benchmarks next to glibc, mimalloc, jemalloc, ...: writes docs/benchmarks.md
                    (ARGS go to freespace-bench: --quick, --workload W, --subject S, --runs N, --callgrind, --rss)
  trace [--out PATH] -- CMD ARGS..
                    run CMD under freespace-malloc with FREESPACE_TRACE=PATH (default
                    freespace.trace; %p in PATH: one file per process): every malloc call recorded
  replay [ARGS..] TRACE..
                    replay traces against every fit, the segregated lists, the slab, the buddy,
                    every stack and the anchors: footprint / live, granted / requested, external
                    fragmentation at the peak, time per op, failures
                    (ARGS go to freespace-bench's replay: --subject S, --arena-mib N, --budget S,
                    --skip-unknown, --out DIR; crates/bench/fragmentation.sh makes docs/fragmentation.md)
  fuzz [TARGET..] [--seconds N | --long] [--smoke]
                    cargo-fuzz every target (default 60 s each; inputs up to 4 KiB), recording
                    fuzz/stats.tsv (with date and commit); --long: each to 10^6 executions;
                    --smoke: a few seconds each and replay fuzz/regressions, recording nothing
                    (SKIPPED without cargo-fuzz/nightly)
  reliability [--fuzz-seconds N]
                    regenerate docs/reliability.md: fault matrix, OOM, fuzz figures, loom, Miri
  docs              regenerate the step table of docs/testing.md from the steps below
  help              this text

environment:
  {crates:<23} crates the miri step tests (comma- or space-separated)
  {budget:<23} seconds all crates' Miri runs may take together (default {default})
  {full:<23} 1: Miri runs every test target, in both modes (the heavy selection)
  {deadline:<23} unix time by which the run must end; Miri stops there (.ci/run sets it)
  CARGO_TARGET_DIR        honoured by every step",
        crates = MIRI_CRATES_VAR,
        budget = matrix::MIRI_BUDGET_VAR,
        default = matrix::DEFAULT_MIRI_BUDGET_SECS,
        full = matrix::MIRI_FULL_VAR,
        deadline = matrix::DEADLINE_VAR,
    )
}

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("test") => test(&args[1..]),
        Some("miri") => miri(&args[1..]),
        Some("docs") if args.len() == 1 => docs(),
        Some("demo") if args.len() == 1 => demo(),
        Some("bench") => bench::bench(&args[1..]),
        Some("trace") => traces::trace(&args[1..]),
        Some("replay") => traces::replay(&args[1..]),
        Some("fuzz") => fuzz::command(&args[1..]),
        Some("reliability") => fuzz::reliability(&args[1..]),
        None | Some("help" | "-h" | "--help") => {
            println!("{}\n\nsteps of `test`:", usage());
            for step in matrix::steps() {
                println!("  {:<8} {}", step.name, step.what);
            }
            ExitCode::SUCCESS
        }
        Some(other) => usage_error(&format!("unknown command or argument: {other}")),
    }
}

fn usage_error(message: &str) -> ExitCode {
    eprintln!("error: {message}\n\n{}", usage());
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

fn miri(args: &[String]) -> ExitCode {
    let write_doc = args.iter().any(|a| a == "--doc");
    let crates: Vec<&String> = args.iter().filter(|a| *a != "--doc").collect();
    if let Some(flag) = crates.iter().find(|c| c.starts_with('-')) {
        return usage_error(&format!("unknown option for miri: {flag}"));
    }
    // Single-threaded here, before any step runs.
    if !crates.is_empty() {
        let names: Vec<&str> = crates.iter().map(|c| c.as_str()).collect();
        env::set_var(MIRI_CRATES_VAR, names.join(","));
    }
    if write_doc {
        // Asked for: record the coverage for docs/reliability.md.
        env::set_var(matrix::MIRI_DOC_VAR, "1");
    }
    let plan: Vec<_> = matrix::steps()
        .into_iter()
        .filter(|s| s.name == "miri")
        .map(|s| (s, None))
        .collect();
    finish(matrix::run(&plan))
}

/// The file whose step table `docs` regenerates, and the lines around it.
const TESTING_DOC: &str = "docs/testing.md";
const TABLE_START: &str =
    "<!-- the step table: generated by `cargo xtask docs` from xtask/src/matrix.rs -->";
const TABLE_END: &str = "<!-- end of the generated step table -->";

/// docs/testing.md with its step table replaced by the current one, or why not.
fn testing_doc_regenerated(text: &str) -> Result<String, String> {
    let (Some(start), Some(end)) = (text.find(TABLE_START), text.find(TABLE_END)) else {
        return Err(format!(
            "{TESTING_DOC} lacks the lines {TABLE_START:?} and {TABLE_END:?}"
        ));
    };
    let start = start + TABLE_START.len();
    Ok(format!(
        "{}\n{}{}",
        &text[..start],
        matrix::markdown_table(),
        &text[end..]
    ))
}

fn docs() -> ExitCode {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace");
    let path = root.join(TESTING_DOC);
    let result = std::fs::read_to_string(&path)
        .map_err(|e| format!("{}: {e}", path.display()))
        .and_then(|text| testing_doc_regenerated(&text))
        .and_then(|text| {
            std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))
        });
    match result {
        Ok(()) => {
            println!("wrote the step table of {}", path.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn finish(passed: bool) -> ExitCode {
    if passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The workspace root (the xtask's parent directory).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

/// Cargo's target directory for the workspace at `root`
/// (`CARGO_TARGET_DIR`, relative to `root` if relative; else `target`).
pub fn cargo_target_dir(root: &Path) -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from) {
        Some(dir) if dir.is_relative() => root.join(dir),
        Some(dir) => dir,
        None => root.join("target"),
    }
}

/// Builds `libfreespace_malloc.so` as it is shipped (the `shim` profile:
/// `cargo build --profile shim -p freespace-malloc-so`) and returns its path.
pub fn build_shim(root: &Path) -> Result<PathBuf, String> {
    let status = Command::new("cargo")
        .current_dir(root)
        .args([
            "build",
            "--quiet",
            "--profile",
            "shim",
            "--package",
            "freespace-malloc-so",
        ])
        .status()
        .map_err(|e| format!("could not start cargo: {e}"))?;
    if !status.success() {
        return Err(format!(
            "cargo build --profile shim -p freespace-malloc-so: {status}"
        ));
    }
    let so = cargo_target_dir(root).join("shim/libfreespace_malloc.so");
    if so.is_file() {
        Ok(so)
    } else {
        Err(format!("{} was not built", so.display()))
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
    match demo_command(&root()).status() {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn testing_doc_has_the_current_step_table() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .unwrap()
            .join(TESTING_DOC);
        let text = std::fs::read_to_string(&path).unwrap();
        let regenerated = testing_doc_regenerated(&text).unwrap();
        assert!(
            regenerated == text,
            "{TESTING_DOC}'s step table differs from xtask/src/matrix.rs: run `cargo xtask docs`"
        );
    }

    #[test]
    fn help_names_every_step_and_the_real_budget() {
        let help = usage();
        assert!(help.contains(&format!("default {}", matrix::DEFAULT_MIRI_BUDGET_SECS)));
        for var in [
            MIRI_CRATES_VAR,
            matrix::MIRI_BUDGET_VAR,
            matrix::MIRI_FULL_VAR,
            matrix::DEADLINE_VAR,
        ] {
            assert!(help.contains(var), "{var}");
        }
    }
}
