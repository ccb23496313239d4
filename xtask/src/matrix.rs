//! The test matrix: its steps, how each one runs, and the summary table.
//!
//! A step is a name, a one-line description of what it runs, and a function
//! that runs it and says [`Outcome::Pass`], [`Outcome::Fail`] or
//! [`Outcome::Skipped`] (with the reason). Steps run in order; a failing step
//! does not stop the ones after it. Each step prints a header, then its
//! commands' output streams straight through; at the end [`run`] prints one
//! table of every step's result and time.
//!
//! | step     | what it runs |
//! |----------|--------------|
//! | fmt      | `cargo fmt --all --check` |
//! | clippy   | `cargo clippy --workspace --all-targets -- -D warnings` |
//! | test     | `cargo nextest run --workspace` (or `cargo test --workspace --all-targets`) |
//! | doc      | `cargo test --workspace --doc` |
//! | no_std   | `cargo build --target thumbv7em-none-eabihf -p <crate>` for every library crate |
//! | demo     | `cargo xtask demo` |
//! | preload  | freespace-malloc under `LD_PRELOAD`: C test programs, python3, git, sqlite3, redis (`preload.rs`) |
//! | loom     | `cargo test --release --lib --tests -p <crates with loom>` under `--cfg loom` |
//! | miri     | `cargo +nightly miri test -p <crate>` for every library crate |

use std::env;
use std::fmt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::json::Json;

/// The bare-metal target every library crate must build for: no `std`, no OS.
pub const NO_STD_TARGET: &str = "thumbv7em-none-eabihf";

/// Library crates that are deliberately not `no_std`, and why.
const STD_ONLY: &[(&str, &str)] = &[("freespace-testkit", "dev-only harness, uses std")];

/// Library crates that must also build with `--no-default-features`.
const NO_DEFAULT_FEATURES: &[&str] = &["freespace-core"];

/// Overrides the list of crates Miri tests (comma- or space-separated).
pub const MIRI_CRATES_VAR: &str = "FREESPACE_MIRI_CRATES";

/// Seconds all the crates' Miri runs may take together (environment).
pub const MIRI_BUDGET_VAR: &str = "FREESPACE_MIRI_BUDGET";

/// Integration tests Miri runs besides each crate's unit tests: the ones
/// sized for Miri (small heaps, few quickcheck cases) that cover code the
/// unit tests do not reach. `(crate, test target, name filters)`.
const MIRI_INTEGRATION: &[(&str, &str, &[&str])] = &[
    (
        "freespace-split-coalesce",
        "heap",
        &[
            "first_fit::ops_over_arena",
            "first_fit::worked_example",
            "first_fit::alignment_padding_is_recovered",
            "first_fit::exhaustion_over_arena",
            "first_fit::growth_merges_contiguous_regions",
            "checked_free_returns_each_corruption",
            "header_lookalikes_in_user_data",
        ],
    ),
    (
        "freespace-buddy",
        "buddy",
        &[
            "op_interpreter_checks_after_every_op",
            "fuzz_bytes_decode_and_run",
        ],
    ),
    (
        "freespace-segregated",
        "segregated",
        &[
            "ops_",
            "routes_every_fitting_size_home",
            "checked_frees_name",
        ],
    ),
    ("freespace", "stacks", &["a_pointer_from_another_layer"]),
];

/// Rough Miri seconds per crate (unit tests plus its integration
/// selection), measured in CI, to balance the two lanes; others count 10.
const MIRI_WEIGHT: &[(&str, u64)] = &[
    ("freespace-sync", 200),
    ("freespace-segregated", 110),
    ("freespace-buddy", 90),
    ("freespace-split-coalesce", 40),
    ("freespace-slab", 30),
];

/// Set to `1` (as `cargo xtask miri` does) to write `docs/miri.txt`.
pub const MIRI_DOC_VAR: &str = "FREESPACE_MIRI_DOC";

/// Set to `1` to run every test target under Miri, not only unit tests.
pub const MIRI_FULL_VAR: &str = "FREESPACE_MIRI_FULL";

/// Unix time (seconds) by which the whole run must be over; CI sets it.
/// The miri step stops at this deadline even within its budget.
pub const DEADLINE_VAR: &str = "FREESPACE_DEADLINE";

/// The Miri share of CI's 30 minutes on 2 cores: the other steps take
/// about 5 minutes from a cold start.
const DEFAULT_MIRI_BUDGET_SECS: u64 = 15 * 60;

/// What became of one step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// It ran and everything in it succeeded.
    Pass,
    /// It ran and something failed; the string says what.
    Fail(String),
    /// It did not run; the string says why.
    Skipped(String),
}

impl Outcome {
    fn label(&self) -> &'static str {
        match self {
            Outcome::Pass => "PASS",
            Outcome::Fail(_) => "FAIL",
            Outcome::Skipped(_) => "SKIPPED",
        }
    }

    fn detail(&self) -> &str {
        match self {
            Outcome::Pass => "",
            Outcome::Fail(why) | Outcome::Skipped(why) => why,
        }
    }
}

/// A step's outcome, plus the outcome of each part for steps that run one
/// command per crate (shown indented under the step in the table).
struct Report {
    outcome: Outcome,
    parts: Vec<Part>,
}

struct Part {
    name: String,
    outcome: Outcome,
    time: Duration,
}

impl From<Outcome> for Report {
    fn from(outcome: Outcome) -> Self {
        Report {
            outcome,
            parts: Vec::new(),
        }
    }
}

/// One row of the matrix.
pub struct Step {
    /// Short name, as `--only` and the table spell it.
    pub name: &'static str,
    /// What it runs, for the header and `help`.
    pub what: &'static str,
    run: fn(&Workspace) -> Report,
}

/// Every step, in the order they run.
pub fn steps() -> Vec<Step> {
    vec![
        Step { name: "fmt", what: "cargo fmt --all --check", run: fmt },
        Step {
            name: "clippy",
            what: "cargo clippy --workspace --all-targets -- -D warnings",
            run: clippy,
        },
        Step {
            name: "test",
            what: "cargo nextest run --workspace (cargo test --workspace --all-targets without nextest)",
            run: test,
        },
        Step { name: "doc", what: "cargo test --workspace --doc", run: doc },
        Step {
            name: "no_std",
            what: "cargo build --target thumbv7em-none-eabihf -p <crate>, every library crate",
            run: no_std,
        },
        Step { name: "demo", what: "cargo xtask demo", run: demo },
        Step {
            name: "examples",
            what: "cargo run -p freespace --example <each example>",
            run: examples,
        },
        Step {
            name: "bench",
            what: "cargo run --release -p freespace-bench -- --quick (builds and completes; no timing is judged)",
            run: bench_quick,
        },
        Step {
            name: "preload",
            what: "cargo test -p freespace-malloc --test preload -- --include-ignored: C programs, python3, git, sqlite3, redis under LD_PRELOAD",
            run: |ws| crate::preload::run(&ws.root).into(),
        },
        Step {
            name: "loom",
            what: "RUSTFLAGS='--cfg loom' cargo test --release --lib --tests -p <crates with loom models>",
            run: loom,
        },
        Step {
            name: "fuzz",
            what: "cargo xtask fuzz --smoke: replay fuzz/regressions, a few seconds per target",
            run: fuzz_smoke,
        },
        Step {
            name: "miri",
            what: "cargo +nightly miri test -p <crate> --lib, every library crate, strict provenance and tree borrows",
            run: miri,
        },
    ]
}

/// Runs the steps of `plan` in order, prints the summary table, and returns
/// whether every step that ran passed. A step paired with `Some(reason)` is
/// not run and shows as SKIPPED with that reason.
pub fn run(plan: &[(Step, Option<String>)]) -> bool {
    let started = Instant::now();
    let workspace = Workspace::load();
    let mut rows = Vec::new();
    for (i, (step, skip)) in plan.iter().enumerate() {
        println!();
        println!(
            "==> [{}/{}] {}: {}",
            i + 1,
            plan.len(),
            step.name,
            step.what
        );
        let t = Instant::now();
        let report = match skip {
            Some(reason) => Outcome::Skipped(reason.clone()).into(),
            None => (step.run)(&workspace),
        };
        let time = t.elapsed();
        match &report.outcome {
            Outcome::Pass => println!("==> {}: PASS ({})", step.name, Secs(time)),
            Outcome::Fail(why) => println!("==> {}: FAIL ({}): {why}", step.name, Secs(time)),
            Outcome::Skipped(why) => shout(&format!("SKIPPED {}: {why}", step.name)),
        }
        rows.push((step.name, report, time));
    }

    println!();
    print_table(&rows);
    let failed: Vec<_> = rows
        .iter()
        .filter(|r| matches!(r.1.outcome, Outcome::Fail(_)))
        .map(|r| r.0)
        .collect();
    let skipped: Vec<_> = rows
        .iter()
        .filter(|r| matches!(r.1.outcome, Outcome::Skipped(_)))
        .map(|r| r.0)
        .collect();
    println!("total {}", Secs(started.elapsed()));
    if !skipped.is_empty() {
        shout(&format!(
            "{} step(s) SKIPPED: {} (see the table for why)",
            skipped.len(),
            skipped.join(", ")
        ));
    }
    if failed.is_empty() {
        println!("all steps that ran passed");
        true
    } else {
        println!("FAILED: {}", failed.join(", "));
        false
    }
}

/// The summary: one line per step, its parts indented under it.
fn print_table(rows: &[(&str, Report, Duration)]) {
    let mut lines = Vec::new();
    for (name, report, time) in rows {
        lines.push((name.to_string(), &report.outcome, *time));
        for part in &report.parts {
            lines.push((format!("  {}", part.name), &part.outcome, part.time));
        }
    }
    let width = lines.iter().map(|l| l.0.len()).max().unwrap_or(0).max(4);
    let rule = "-".repeat(width + 30);
    println!("{:<width$}  {:<7}  {:>9}  detail", "step", "result", "time");
    println!("{rule}");
    for (name, outcome, time) in lines {
        let time = Secs(time).to_string();
        println!(
            "{name:<width$}  {:<7}  {time:>9}  {}",
            outcome.label(),
            outcome.detail()
        );
    }
    println!("{rule}");
}

/// Prints `message` so it cannot be missed in a CI log.
fn shout(message: &str) {
    let bar = "!".repeat(72);
    println!("{bar}\n!!! {message}\n{bar}");
}

/// A duration printed as `4.2s` or `3m 07.5s`.
struct Secs(Duration);

impl fmt::Display for Secs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0.as_secs_f64();
        if s < 60.0 {
            write!(f, "{s:.1}s")
        } else {
            write!(f, "{}m {:04.1}s", (s / 60.0) as u64, s % 60.0)
        }
    }
}

// ---------------------------------------------------------------------------
// The workspace, as `cargo metadata` describes it
// ---------------------------------------------------------------------------

/// What the steps need to know about the workspace.
pub struct Workspace {
    /// The directory holding the root `Cargo.toml`.
    pub root: PathBuf,
    /// Cargo's target directory (honours `CARGO_TARGET_DIR`).
    pub target_dir: PathBuf,
    /// The workspace's packages, or why `cargo metadata` could not list them.
    pub packages: Result<Vec<Package>, String>,
}

/// One workspace member.
pub struct Package {
    pub name: String,
    /// Has a `lib` / `rlib` target (a crate other crates link).
    pub is_library: bool,
    /// Depends on `loom` in any section (dev-dependency or `cfg(loom)`).
    pub has_loom: bool,
    /// Has a feature named `std` (which cannot build without std).
    pub has_std_feature: bool,
    /// The features of `default`.
    pub default_features: Vec<String>,
}

impl Workspace {
    /// Asks `cargo metadata` about the workspace this xtask belongs to.
    pub fn load() -> Workspace {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("xtask lives in the workspace")
            .to_path_buf();
        let fallback_target = env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("target"));
        let output = cargo(&root)
            .args(["metadata", "--format-version", "1", "--no-deps"])
            .stderr(Stdio::inherit())
            .output();
        let doc = match output {
            Ok(o) if o.status.success() => Json::parse(&String::from_utf8_lossy(&o.stdout)),
            Ok(o) => Err(format!("cargo metadata: {}", o.status)),
            Err(e) => Err(format!("cargo metadata: {e}")),
        };
        let doc = match doc {
            Ok(doc) => doc,
            Err(e) => {
                return Workspace {
                    root,
                    target_dir: fallback_target,
                    packages: Err(e),
                }
            }
        };
        let target_dir = doc
            .get("target_directory")
            .as_str()
            .map(PathBuf::from)
            .unwrap_or(fallback_target);
        let packages = doc
            .get("packages")
            .items()
            .iter()
            .map(|p| Package {
                name: p.get("name").as_str().unwrap_or_default().to_string(),
                is_library: p.get("targets").items().iter().any(|t| {
                    t.get("kind")
                        .items()
                        .iter()
                        .any(|k| matches!(k.as_str(), Some("lib" | "rlib")))
                }),
                has_loom: p
                    .get("dependencies")
                    .items()
                    .iter()
                    .any(|d| d.get("name").as_str() == Some("loom")),
                has_std_feature: p.get("features").get("std") != &Json::Null,
                default_features: p
                    .get("features")
                    .get("default")
                    .items()
                    .iter()
                    .filter_map(|f| f.as_str().map(String::from))
                    .collect(),
            })
            .collect();
        Workspace {
            root,
            target_dir,
            packages: Ok(packages),
        }
    }

    /// The freespace library crates: the facade `freespace` and every
    /// `freespace-*` crate with a library target.
    pub fn library_crates(&self) -> Result<Vec<&Package>, String> {
        let packages = self.packages.as_ref().map_err(Clone::clone)?;
        Ok(packages
            .iter()
            .filter(|p| p.is_library && (p.name == "freespace" || p.name.starts_with("freespace-")))
            .collect())
    }

    /// Library crates that must build without `std`.
    pub fn no_std_crates(&self) -> Result<Vec<&Package>, String> {
        Ok(self
            .library_crates()?
            .into_iter()
            .filter(|p| !STD_ONLY.iter().any(|(name, _)| *name == p.name))
            .collect())
    }
}

/// `cargo` with the workspace root as working directory.
fn cargo(root: &std::path::Path) -> Command {
    let mut c = Command::new("cargo");
    c.current_dir(root);
    c
}

/// `cargo +nightly`, with the variables the stable toolchain that runs this
/// xtask exported removed, so nothing of stable leaks into the nightly build.
fn cargo_nightly(root: &std::path::Path) -> Command {
    let mut c = cargo(root);
    c.arg("+nightly");
    for var in ["RUSTUP_TOOLCHAIN", "CARGO", "RUSTC", "RUSTDOC"] {
        c.env_remove(var);
    }
    c
}

/// Runs `cmd` with its output streaming to ours. `Err` says how it failed.
fn exec(cmd: &mut Command) -> Result<(), String> {
    println!("$ {}", show(cmd));
    match cmd.status() {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => Err(s
            .code()
            .map_or("killed by a signal".into(), |c| format!("exit code {c}"))),
        Err(e) => Err(format!("could not start `{}`: {e}", short(cmd))),
    }
}

/// Like [`exec`], but stops `cmd` (and every process it started) at
/// `deadline`. A timeout's message holds `{budget}` for the caller to fill.
fn exec_until(cmd: &mut Command, deadline: Instant) -> Result<(), String> {
    println!("$ {}", show(cmd));
    // Its own process group, so a timeout can stop everything it started,
    // grandchildren that were re-parented included.
    std::os::unix::process::CommandExt::process_group(cmd, 0);
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("could not start `{}`: {e}", short(cmd)))?;
    loop {
        match child.try_wait() {
            Ok(Some(s)) if s.success() => return Ok(()),
            Ok(Some(s)) => {
                return Err(s
                    .code()
                    .map_or("killed by a signal".into(), |c| format!("exit code {c}")))
            }
            Ok(None) if Instant::now() >= deadline => {
                // cargo runs the tests in grandchildren: stop them all,
                // youngest first, so nothing keeps running after the step.
                let mut family = descendants(child.id());
                family.reverse();
                for pid in family {
                    let _ = Command::new("kill")
                        .args(["-KILL", &pid.to_string()])
                        .status();
                }
                let _ = Command::new("kill")
                    .args(["-KILL", "--", &format!("-{}", child.id())])
                    .status();
                let _ = child.kill();
                let _ = child.wait();
                return Err("timed out: the {budget}s budget was spent".into());
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(200)),
            Err(e) => return Err(format!("waiting for `{}`: {e}", short(cmd))),
        }
    }
}

/// Every process descended from `pid`, parents before children (read from
/// `/proc`; empty where there is none).
fn descendants(pid: u32) -> Vec<u32> {
    let mut parent_of = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Ok(child) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            // /proc/<pid>/stat: "pid (comm) state ppid ..."; comm may hold spaces.
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|p| p.parse::<u32>().ok());
            if let Some(ppid) = ppid {
                parent_of.push((child, ppid));
            }
        }
    }
    let mut found = vec![pid];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(
            parent_of
                .iter()
                .filter(|(_, p)| *p == parent)
                .map(|(c, _)| *c),
        );
        i += 1;
    }
    found.remove(0);
    found
}

/// Runs `cmd` quietly; `Err` holds the tail of its output, for a SKIPPED reason.
fn exec_quiet(cmd: &mut Command) -> Result<(), String> {
    println!("$ {}", show(cmd));
    match cmd.stdin(Stdio::null()).output() {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => {
            let text = String::from_utf8_lossy(&o.stderr);
            let last = text
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("no output")
                .trim();
            print!("{text}");
            Err(format!("`{}` failed: {last}", short(cmd)))
        }
        Err(e) => Err(format!("could not start `{}`: {e}", short(cmd))),
    }
}

/// Program and arguments, as a shell line (environment changes first).
fn show(cmd: &Command) -> String {
    let mut line = String::new();
    for (key, value) in cmd.get_envs() {
        if let Some(value) = value {
            line += &format!("{}='{}' ", key.to_string_lossy(), value.to_string_lossy());
        }
    }
    line + &short(cmd)
}

fn short(cmd: &Command) -> String {
    let mut line = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        line.push(' ');
        line += &arg.to_string_lossy();
    }
    line
}

/// Runs one command per item, each a part of the step; the step fails if any part does.
///
/// With a `budget`, all the parts together may take that long: the part
/// running when it runs out is stopped, and the ones after it are not
/// started; both fail, saying so.
fn per_crate(items: Vec<(String, Command)>, budget: Option<Duration>) -> Report {
    per_crate_in_lanes(vec![items], budget)
}

/// Runs each lane (a list of commands) on its own thread, the commands of a
/// lane one after another, all within `budget`; one part per command, in
/// the order given.
fn per_crate_in_lanes(lanes: Vec<Vec<(String, Command)>>, budget: Option<Duration>) -> Report {
    let deadline = budget.map(|b| (Instant::now() + b, b));
    let run_lane = move |items: Vec<(String, Command)>| {
        let mut parts = Vec::new();
        for (name, mut cmd) in items {
            let t = Instant::now();
            let result = match deadline {
                None => exec(&mut cmd),
                Some((at, budget)) if Instant::now() >= at => Err(format!(
                    "not run: the {}s budget was spent",
                    budget.as_secs()
                )),
                Some((at, budget)) => exec_until(&mut cmd, at)
                    .map_err(|e| e.replace("{budget}", &budget.as_secs().to_string())),
            };
            let outcome = match result {
                Ok(()) => Outcome::Pass,
                Err(e) => Outcome::Fail(e),
            };
            parts.push(Part {
                name,
                outcome,
                time: t.elapsed(),
            });
        }
        parts
    };
    let parts: Vec<Part> = std::thread::scope(|scope| {
        let handles: Vec<_> = lanes
            .into_iter()
            .map(|lane| scope.spawn(move || run_lane(lane)))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    });
    let failed: Vec<_> = parts
        .iter()
        .filter(|p| p.outcome != Outcome::Pass)
        .map(|p| p.name.as_str())
        .collect();
    let outcome = if failed.is_empty() {
        Outcome::Pass
    } else {
        Outcome::Fail(format!(
            "{} of {} failed: {}",
            failed.len(),
            parts.len(),
            failed.join(", ")
        ))
    };
    Report { outcome, parts }
}

fn outcome(result: Result<(), String>) -> Report {
    match result {
        Ok(()) => Outcome::Pass.into(),
        Err(e) => Outcome::Fail(e).into(),
    }
}

// ---------------------------------------------------------------------------
// The steps
// ---------------------------------------------------------------------------

fn fmt(ws: &Workspace) -> Report {
    outcome(exec(cargo(&ws.root).args(["fmt", "--all", "--check"])))
}

fn clippy(ws: &Workspace) -> Report {
    outcome(exec(cargo(&ws.root).args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ])))
}

/// Whether `cargo nextest` is installed.
fn have_nextest(ws: &Workspace) -> bool {
    cargo(&ws.root)
        .args(["nextest", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn test(ws: &Workspace) -> Report {
    if have_nextest(ws) {
        // `--no-tests=warn`: a workspace of skeleton crates has no tests yet.
        outcome(exec(cargo(&ws.root).args([
            "nextest",
            "run",
            "--workspace",
            "--no-tests=warn",
        ])))
    } else {
        println!("(cargo-nextest is not installed; using cargo test)");
        outcome(exec(cargo(&ws.root).args([
            "test",
            "--workspace",
            "--all-targets",
        ])))
    }
}

fn doc(ws: &Workspace) -> Report {
    outcome(exec(cargo(&ws.root).args(["test", "--workspace", "--doc"])))
}

fn no_std(ws: &Workspace) -> Report {
    let crates = match ws.no_std_crates() {
        Ok(crates) => crates,
        Err(e) => return Outcome::Fail(format!("cannot list the library crates: {e}")).into(),
    };
    if let Err(e) = exec_quiet(Command::new("rustup").args(["target", "add", NO_STD_TARGET])) {
        return Outcome::Skipped(format!("cannot install the {NO_STD_TARGET} target: {e}")).into();
    }
    for (name, why) in STD_ONLY {
        println!("(not built for {NO_STD_TARGET}: {name}, {why})");
    }
    let mut items = Vec::new();
    for p in crates {
        let mut cmd = cargo(&ws.root);
        cmd.args(["build", "--target", NO_STD_TARGET, "-p", &p.name]);
        let mut label = p.name.clone();
        if p.has_std_feature {
            // A `std` feature cannot build here: the default features
            // without it.
            let features: Vec<&str> = p
                .default_features
                .iter()
                .map(String::as_str)
                .filter(|f| *f != "std")
                .collect();
            cmd.arg("--no-default-features");
            label += " (without std)";
            if !features.is_empty() {
                cmd.args(["--features", &features.join(",")]);
            }
        }
        items.push((label, cmd));
        if NO_DEFAULT_FEATURES.contains(&p.name.as_str()) && !p.has_std_feature {
            let mut cmd = cargo(&ws.root);
            cmd.args([
                "build",
                "--target",
                NO_STD_TARGET,
                "--no-default-features",
                "-p",
                &p.name,
            ]);
            items.push((format!("{} (no default features)", p.name), cmd));
        }
    }
    per_crate(items, None)
}

/// The facade's examples, each run to completion (they assert what they print).
const EXAMPLES: &[&str] = &["compose", "collections", "global"];

fn examples(ws: &Workspace) -> Report {
    let items = EXAMPLES
        .iter()
        .map(|name| {
            let mut cmd = cargo(&ws.root);
            cmd.args(["run", "--quiet", "-p", "freespace", "--example", name]);
            (name.to_string(), cmd)
        })
        .collect();
    per_crate(items, None)
}

fn bench_quick(ws: &Workspace) -> Report {
    outcome(exec(cargo(&ws.root).args([
        "run",
        "--release",
        "--quiet",
        "-p",
        "freespace-bench",
        "--",
        "--quick",
    ])))
}

fn fuzz_smoke(ws: &Workspace) -> Report {
    if let Some(why) = crate::fuzz::unavailable() {
        return Outcome::Skipped(why).into();
    }
    let targets = crate::fuzz::targets(&ws.root);
    if targets.is_empty() {
        return Outcome::Fail("no fuzz targets found in fuzz/fuzz_targets".into()).into();
    }
    if crate::fuzz::run(&ws.root, &targets, crate::fuzz::SMOKE_SECONDS, true) {
        Outcome::Pass.into()
    } else {
        Outcome::Fail("a fuzz target crashed or did not build (see above)".into()).into()
    }
}

fn demo(ws: &Workspace) -> Report {
    outcome(exec(&mut crate::demo_command(&ws.root)))
}

fn loom(ws: &Workspace) -> Report {
    let packages = match &ws.packages {
        Ok(p) => p,
        Err(e) => return Outcome::Fail(format!("cannot list the crates: {e}")).into(),
    };
    let crates: Vec<_> = packages.iter().filter(|p| p.has_loom).collect();
    if crates.is_empty() {
        return Outcome::Skipped("no loom models yet (issue: concurrency)".into()).into();
    }
    let mut cmd = cargo(&ws.root);
    let rustflags = match env::var("RUSTFLAGS") {
        Ok(flags) if !flags.trim().is_empty() => format!("{flags} --cfg loom"),
        _ => "--cfg loom".to_string(),
    };
    // Its own target directory: other RUSTFLAGS would otherwise rebuild
    // everything in the shared one, twice per run. Unit and integration
    // tests only: doc tests link the library built with loom's primitives
    // but run outside `loom::model`, which loom refuses.
    cmd.env("RUSTFLAGS", rustflags)
        .env("LOOM_MAX_PREEMPTIONS", "2")
        .env("CARGO_TARGET_DIR", ws.target_dir.join("loom"))
        .args(["test", "--release", "--lib", "--tests"]);
    for p in &crates {
        cmd.args(["-p", &p.name]);
    }
    outcome(exec(&mut cmd))
}

/// The crates Miri tests: `FREESPACE_MIRI_CRATES` if set, else every
/// library crate that is not std-only.
fn miri_crates(ws: &Workspace) -> Result<Vec<String>, String> {
    if let Ok(list) = env::var(MIRI_CRATES_VAR) {
        println!("({MIRI_CRATES_VAR}={list:?} chooses the crates)");
        return Ok(list
            .split([',', ' '])
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect());
    }
    Ok(ws
        .no_std_crates()?
        .into_iter()
        .map(|p| p.name.clone())
        .collect())
}

/// Runs Miri over `crates`, installing it first.
fn miri_over(ws: &Workspace, crates: Vec<String>) -> Report {
    if crates.is_empty() {
        return Outcome::Skipped(format!("no crates to test ({MIRI_CRATES_VAR} is empty)")).into();
    }
    let install = exec_quiet(Command::new("rustup").args([
        "component",
        "add",
        "--toolchain",
        "nightly",
        "miri",
        "rust-src",
    ]))
    .and_then(|()| exec_quiet(cargo_nightly(&ws.root).args(["miri", "setup"])));
    if let Err(e) = install {
        return Outcome::Skipped(format!("Miri is not available: {e}")).into();
    }
    let extra = env::var("MIRIFLAGS").unwrap_or_default();
    // DESIGN §4: Miri runs each crate's unit tests (small sizes, few
    // quickcheck cases under `cfg(miri)`); `FREESPACE_MIRI_FULL=1` adds the
    // integration tests. Every crate runs twice: under Stacked Borrows with
    // strict provenance, and under Tree Borrows.
    let full = env::var(MIRI_FULL_VAR).is_ok_and(|v| v == "1");
    let modes = [
        ("", "-Zmiri-strict-provenance"),
        (
            " (tree borrows)",
            "-Zmiri-strict-provenance -Zmiri-tree-borrows",
        ),
    ];
    // Two lanes, one per core, each with its own target directory (cargo
    // holds a directory's lock while the tests run).
    let mut lanes: Vec<Vec<(String, Command)>> = vec![Vec::new(), Vec::new()];
    let mut load = [0u64; 2];
    for (suffix, flags) in modes {
        for name in &crates {
            // Greedy balance by the seconds each crate took in earlier runs.
            let lane = if load[0] <= load[1] { 0 } else { 1 };
            load[lane] += MIRI_WEIGHT
                .iter()
                .find(|(n, _)| n == name)
                .map_or(10, |(_, w)| *w);
            let mut cmd = cargo_nightly(&ws.root);
            cmd.env("MIRIFLAGS", format!("{flags} {extra}").trim())
                .env(
                    "CARGO_TARGET_DIR",
                    ws.target_dir.join(format!("miri-lane{lane}")),
                )
                .args(["miri", "test", "-p", name]);
            if !full {
                cmd.arg("--lib");
            }
            lanes[lane].push((format!("{name}{suffix}"), cmd));
            // The integration selection runs once, under Stacked Borrows:
            // the Tree Borrows pass covers the unit tests (CI's time budget).
            if full || !suffix.is_empty() {
                continue;
            }
            for (krate, target, filters) in MIRI_INTEGRATION {
                if krate == name {
                    let mut cmd = cargo_nightly(&ws.root);
                    cmd.env("MIRIFLAGS", format!("{flags} {extra}").trim())
                        .env(
                            "CARGO_TARGET_DIR",
                            ws.target_dir.join(format!("miri-lane{lane}")),
                        )
                        .args(["miri", "test", "-p", name, "--test", target, "--"])
                        .args(filters.iter());
                    lanes[lane].push((format!("{name} --test {target}{suffix}"), cmd));
                }
            }
        }
    }
    let mut budget = match secs_from_env(MIRI_BUDGET_VAR) {
        Ok(secs) => secs.unwrap_or(DEFAULT_MIRI_BUDGET_SECS),
        Err(e) => return Outcome::Fail(e).into(),
    };
    // CI gives a wall-clock deadline for the whole run; Miri, the last
    // step, gets what is left of it.
    match secs_from_env(DEADLINE_VAR) {
        Ok(Some(deadline)) => {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let left = deadline.saturating_sub(now);
            println!("({DEADLINE_VAR}: {left}s left of the run's deadline)");
            budget = budget.min(left);
        }
        Ok(None) => {}
        Err(e) => return Outcome::Fail(e).into(),
    }
    println!("(Miri budget for all crates: {budget}s; {MIRI_BUDGET_VAR} changes it)");
    let report = per_crate_in_lanes(lanes, Some(Duration::from_secs(budget)));
    if env::var(MIRI_DOC_VAR).is_ok_and(|v| v == "1") {
        write_miri_doc(ws, &report, full);
    }
    report
}

/// Writes `docs/miri.txt`, the Miri coverage `cargo xtask reliability`
/// puts into `docs/reliability.md`: one line per crate and mode.
fn write_miri_doc(ws: &Workspace, report: &Report, full: bool) {
    let mut text = format!(
        "Miri runs, {} (`cargo xtask miri`; flags: -Zmiri-strict-provenance, plus -Zmiri-tree-borrows for the second mode):\n",
        if full { "every test target" } else { "unit tests plus the Miri-sized integration tests listed in xtask/src/matrix.rs" }
    );
    for part in &report.parts {
        let result = match &part.outcome {
            Outcome::Pass => "pass".to_string(),
            Outcome::Fail(why) => format!("FAIL ({why})"),
            Outcome::Skipped(why) => format!("skipped ({why})"),
        };
        text += &format!("- {}: {result}, {}\n", part.name, Secs(part.time));
    }
    let path = ws.root.join("docs").join("miri.txt");
    match std::fs::write(&path, text) {
        Ok(()) => println!("(wrote {})", path.display()),
        Err(e) => println!("(could not write {}: {e})", path.display()),
    }
}

/// A whole number of seconds from the environment variable `var`, if set.
fn secs_from_env(var: &str) -> Result<Option<u64>, String> {
    match env::var(var) {
        Ok(text) => text
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| format!("{var}={text:?} is not a whole number of seconds")),
        Err(_) => Ok(None),
    }
}

fn miri(ws: &Workspace) -> Report {
    match miri_crates(ws) {
        Ok(crates) => miri_over(ws, crates),
        Err(e) => Outcome::Fail(format!("cannot list the library crates: {e}")).into(),
    }
}
