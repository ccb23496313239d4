//! `cargo xtask bench [ARGS..]`: build `freespace-bench` in release and run
//! it, passing `ARGS` through (see `freespace-bench --help`).
//!
//! With no selection of its own (no `--quick`, `--workload`, `--subject`,
//! or `--out`), the standard set runs and the report goes to `docs/`:
//! `docs/benchmarks.md` and `docs/benchmarks-*.svg`. With `--callgrind`
//! (and no `--out`) the instruction counts go to
//! `docs/benchmarks-callgrind.md`. A partial run only prints its tables,
//! so it never overwrites the full report.

use std::path::Path;
use std::process::{Command, ExitCode};

/// Runs the benchmark harness with `args`.
pub fn bench(args: &[String]) -> ExitCode {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace");
    let partial = args.iter().any(|a| {
        let flag = a.split('=').next().unwrap_or(a);
        matches!(
            flag,
            "--quick" | "--workload" | "--subject" | "--out" | "--rss" | "--list" | "-h" | "--help"
        )
    });
    let mut cmd = Command::new("cargo");
    cmd.current_dir(root).args([
        "run",
        "--release",
        "--quiet",
        "--package",
        "freespace-bench",
        "--",
    ]);
    cmd.args(args);
    if !partial {
        cmd.arg("--out").arg(root.join("docs"));
    }
    match cmd.status() {
        Ok(s) if s.success() => ExitCode::SUCCESS,
        Ok(s) => {
            eprintln!("bench failed: {s}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("could not run cargo: {e}");
            ExitCode::FAILURE
        }
    }
}
