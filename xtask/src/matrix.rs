//! The test matrix: its steps, how each one runs, and the summary table.
//!
//! A step is a name, a one-line description of what it runs, notes, and a
//! function that runs it and says [`Outcome::Pass`], [`Outcome::Fail`],
//! [`Outcome::OutOfTime`] or [`Outcome::Skipped`] (with the reason). Steps run in order; a failing step
//! does not stop the ones after it. Each step prints a header, then its
//! commands' output streams straight through; at the end [`run`] prints one
//! table of every step's result and time.
//!
//! The steps themselves are the list in [`steps`]: `cargo xtask help` prints
//! it, and the step table of docs/testing.md is generated from it
//! ([`markdown_table`], `cargo xtask docs`), so neither can fall behind.
//!
//! A step with a time budget (miri, preload) that runs out says
//! [`Outcome::OutOfTime`] (`BUDGET` in the table): nothing failed, but the
//! step did not finish. It fails the run all the same, so a run that did
//! not check everything is never green; docs/testing.md says why.

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

/// Packages with a library target that are tools, not allocator crates:
/// the benchmark and replay harness (std, timing, subprocesses). They are
/// linted, tested and documented with the workspace, but not built for
/// `no_std` nor run under Miri.
const TOOLS: &[&str] = &["freespace-bench"];

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
            "forged_header_is_refused_first_fit",
            "forged_header_with_the_key_is_accepted",
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
            "checked_frees_refuse_misuse",
        ],
    ),
    // The purge budgets (issue 14) over the testkit's `Recording` source.
    (
        "freespace-buddy",
        "memory",
        &["the_purge_budget_trims_large_free_blocks_on_its_own"],
    ),
    (
        "freespace-split-coalesce",
        "memory",
        &["purge_budget_best_fit"],
    ),
    ("freespace-slab", "slab", &["checked_free_refuses_misuse"]),
    ("freespace-sync", "sync", &["checked_free"]),
    ("freespace", "stacks", &["a_pointer_from_another_layer"]),
];

/// Rough Miri seconds per crate (unit tests in both modes plus its
/// integration selection), measured with both lanes running on a 2-core
/// machine at load 3 (8.5 minutes in all), to balance the two lanes; others
/// count 10.
const MIRI_WEIGHT: &[(&str, u64)] = &[
    ("freespace-buddy", 250),
    ("freespace-sync", 215),
    ("freespace-segregated", 175),
    ("freespace-split-coalesce", 85),
    ("freespace-slab", 85),
    ("freespace-stats", 75),
    ("freespace-freelist", 70),
];

/// Set to `1` (as `cargo xtask miri --doc` does) to write `docs/miri.txt`.
/// Nothing else writes it: `cargo xtask test` leaves tracked files alone.
pub const MIRI_DOC_VAR: &str = "FREESPACE_MIRI_DOC";

/// Set to `1` to run every test target under Miri, not only unit tests.
pub const MIRI_FULL_VAR: &str = "FREESPACE_MIRI_FULL";

/// Unix time (seconds) by which the whole run must be over; CI sets it.
/// The miri step stops at this deadline even within its budget.
pub const DEADLINE_VAR: &str = "FREESPACE_DEADLINE";

/// How long all the Miri runs may take together unless
/// `FREESPACE_MIRI_BUDGET` says otherwise: 40 minutes. On a quiet 2-core
/// machine they take about 6 (two lanes); a machine busy with other builds
/// has been seen 3-8 times slower, and the budget leaves room for that.
/// Under CI the run's deadline (`.ci/run`: start + 80 minutes) caps it too.
pub const DEFAULT_MIRI_BUDGET_SECS: u64 = 40 * 60;

/// What became of one step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// It ran and everything in it succeeded.
    Pass,
    /// It ran and something failed (a test, a build, Miri found undefined
    /// behaviour); the string says what.
    Fail(String),
    /// Its time budget ran out before it finished: nothing it ran failed,
    /// but some of it timed out or never started, so it proved nothing
    /// either. Fails the run (it must never pass silently), labelled
    /// `BUDGET` so it cannot be mistaken for a failure of the code.
    OutOfTime(String),
    /// It did not run; the string says why.
    Skipped(String),
}

impl Outcome {
    fn label(&self) -> &'static str {
        match self {
            Outcome::Pass => "PASS",
            Outcome::Fail(_) => "FAIL",
            Outcome::OutOfTime(_) => "BUDGET",
            Outcome::Skipped(_) => "SKIPPED",
        }
    }

    fn detail(&self) -> &str {
        match self {
            Outcome::Pass => "",
            Outcome::Fail(why) | Outcome::OutOfTime(why) | Outcome::Skipped(why) => why,
        }
    }
}

/// A step's outcome, plus the outcome of each part for steps that run one
/// command per crate (shown indented under the step in the table).
struct Report {
    outcome: Outcome,
    parts: Vec<Part>,
    /// Informational lines shown under the step (the preload step's peak
    /// resident memory per program); they never change its outcome.
    notes: Vec<String>,
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
            notes: Vec::new(),
        }
    }
}

/// One row of the matrix.
pub struct Step {
    /// Short name, as `--only` and the table spell it.
    pub name: &'static str,
    /// What it runs, for the header, `help` and docs/testing.md.
    pub what: &'static str,
    /// What else to know (docs/testing.md's notes column).
    pub notes: &'static str,
    run: fn(&Workspace) -> Report,
}

/// Every step, in the order they run. `cargo xtask help` and the step
/// table of docs/testing.md are generated from this list
/// ([`markdown_table`]; a test keeps the page in step).
pub fn steps() -> Vec<Step> {
    vec![
        Step {
            name: "fmt",
            what: "cargo fmt --all --check",
            notes: "",
            run: fmt,
        },
        Step {
            name: "clippy",
            what: "cargo clippy --workspace --all-targets -- -D warnings; cargo clippy -p freespace-malloc --features unexported --examples -- -D warnings",
            notes: "the workspace lints (`missing_docs`, `undocumented_unsafe_blocks`, \
                    `missing_safety_doc`) are warnings, so `-D warnings` makes them errors here",
            run: clippy,
        },
        Step {
            name: "test",
            what: "cargo nextest run --workspace --no-tests=warn",
            notes: "without cargo-nextest: `cargo test --workspace --all-targets`",
            run: test,
        },
        Step {
            name: "doc",
            what: "cargo test --workspace --doc && RUSTDOCFLAGS='-D rustdoc::broken_intra_doc_links' cargo doc --workspace",
            notes: "doc tests (nextest does not run them), the README's snippets among them \
                    (the facade includes README.md as a doc-only item). Then `cargo doc --workspace \
                    --exclude freespace-bench --exclude xtask` and `cargo doc --no-deps -p \
                    freespace-bench -p xtask`, both with `RUSTDOCFLAGS='-D \
                    rustdoc::broken_intra_doc_links'`, and a scan of the pages for links rustdoc \
                    dropped without a warning (a `[name]` left as text: rustdoc drops a \
                    link into a crate whose pages do not exist yet, which `--no-deps` makes a \
                    race between crates, so the dependencies are documented too)",
            run: doc,
        },
        Step {
            name: "no_std",
            what: "cargo build --target thumbv7em-none-eabihf -p <crate>",
            notes: "every library crate: the facade `freespace` and every `freespace-*` package \
                    with a library target, except `freespace-testkit` (dev-only, uses std). \
                    `freespace-core` is also built with `--no-default-features`; a crate with a \
                    `std` feature is built with its default features minus `std`. The target is \
                    installed with `rustup target add`; if that fails the step is SKIPPED",
            run: no_std,
        },
        Step {
            name: "package",
            what: "cargo package --workspace --no-verify --exclude <publish = false>",
            notes: "every publishable crate packages (path dependencies carry versions, no \
                    dependency cycle reaches a published manifest), so a user can depend on \
                    any one crate. Needs the crates.io index; without it the step FAILs saying \
                    so. `--no-verify`: the test step builds the same sources",
            run: package,
        },
        Step {
            name: "demo",
            what: "cargo xtask demo",
            notes: "the README's demo must keep running (it checks every heap's invariants)",
            run: demo,
        },
        Step {
            name: "examples",
            what: "cargo run -p freespace --example <each example>",
            notes: "the facade's examples (`compose`, `collections`, `global`), each run to \
                    completion; they assert what they print",
            run: examples,
        },
        Step {
            name: "bench",
            what: "cargo run --release -p freespace-bench -- --quick",
            notes: "only that the benchmark builds and a tiny run completes; no timing is judged \
                    and nothing is written (the full run is `cargo xtask bench`)",
            run: bench_quick,
        },
        Step {
            name: "preload",
            what: "cargo build --profile shim -p freespace-malloc-so; FREESPACE_MALLOC_SO=<target>/shim/libfreespace_malloc.so cargo test -p freespace-malloc-so --test preload -- --include-ignored",
            notes: "freespace-malloc, built as shipped (the `shim` profile), under `LD_PRELOAD`: C test programs (every function, threads, \
                    fork in a threaded process, misuse aborting with the report line), then \
                    python3, perl, gcc, git, sqlite3 and redis-server + redis-benchmark; each \
                    must print the shim's stats line. Each real program also runs once without \
                    the shim; the report shows both peak RSS and CPU time (`RSS <program>: \
                    glibc X MiB, freespace Y MiB, ratio Z; CPU glibc A s, freespace B s, ratio \
                    C`, informational, never a failure). A missing program makes the step \
                    SKIPPED; under `CI=true` it fails. Budget 600 s (BUDGET when spent). See \
                    [malloc.md](malloc.md)",
            run: |ws| {
                let (outcome, notes) = crate::preload::run(&ws.root);
                Report {
                    outcome,
                    parts: Vec::new(),
                    notes,
                }
            },
        },
        Step {
            name: "loom",
            what: "RUSTFLAGS='--cfg loom' LOOM_MAX_PREEMPTIONS=2 cargo test --release --lib --tests -p <crates with loom>",
            notes: "every workspace package with a `loom` dependency in any section; builds in \
                    `<target>/loom` so the other RUSTFLAGS do not rebuild the main target \
                    directory. No doc tests: they would use the loom-built library outside \
                    `loom::model`",
            run: loom,
        },
        Step {
            name: "fuzz",
            what: "cargo xtask fuzz --smoke",
            notes: "replays `fuzz/regressions/<target>/*` and fuzzes every target for a few \
                    seconds; writes no tracked file (a crash stays in `fuzz/artifacts/`). SKIPPED \
                    when nightly or cargo-fuzz is missing (`.ci/run` installs cargo-fuzz)",
            run: fuzz_smoke,
        },
        Step {
            name: "miri",
            what: "cargo +nightly miri test -p <crate> --lib",
            notes: "every library crate (as for `no_std`), under Stacked Borrows and again under \
                    Tree Borrows (`-Zmiri-tree-borrows`), plus the Miri-sized integration tests of \
                    `MIRI_INTEGRATION` (Stacked Borrows only); `-Zmiri-strict-provenance` \
                    throughout. Two lanes in parallel. \
                    `FREESPACE_MIRI_FULL=1`: every test target in both modes. Runs that time out \
                    or never start show as BUDGET, not FAIL (see \"Time budgets\" below)",
            run: miri,
        },
    ]
}

/// The markdown table of docs/testing.md's "The steps": one row per step.
pub fn markdown_table() -> String {
    let mut table = String::from("| step | command | notes |\n|---|---|---|\n");
    for step in steps() {
        table += &format!("| `{}` | `{}` | {} |\n", step.name, step.what, step.notes);
    }
    table
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
            Outcome::OutOfTime(why) => shout(&format!(
                "BUDGET EXHAUSTED {} ({}): {why}",
                step.name,
                Secs(time)
            )),
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
    let out_of_time: Vec<_> = rows
        .iter()
        .filter(|r| matches!(r.1.outcome, Outcome::OutOfTime(_)))
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
    if !out_of_time.is_empty() {
        shout(&format!(
            "{} step(s) ran out of their time budget: {} -- nothing in them failed, \
             but they did not finish, so the run is not green (see docs/testing.md)",
            out_of_time.len(),
            out_of_time.join(", ")
        ));
    }
    if !failed.is_empty() {
        println!("FAILED: {}", failed.join(", "));
    }
    if failed.is_empty() && out_of_time.is_empty() {
        println!("all steps that ran passed");
        true
    } else {
        false
    }
}

/// The summary: one line per step, its parts indented under it.
fn print_table(rows: &[(&str, Report, Duration)]) {
    // (name, result, time, detail)
    let mut lines: Vec<(String, &str, String, &str)> = Vec::new();
    for (name, report, time) in rows {
        let o = &report.outcome;
        lines.push((
            name.to_string(),
            o.label(),
            Secs(*time).to_string(),
            o.detail(),
        ));
        for part in &report.parts {
            let o = &part.outcome;
            lines.push((
                format!("  {}", part.name),
                o.label(),
                Secs(part.time).to_string(),
                o.detail(),
            ));
        }
        for note in &report.notes {
            lines.push(("  (note)".to_string(), "info", String::new(), note));
        }
    }
    let width = lines.iter().map(|l| l.0.len()).max().unwrap_or(0).max(4);
    let rule = "-".repeat(width + 30);
    println!("{:<width$}  {:<7}  {:>9}  detail", "step", "result", "time");
    println!("{rule}");
    for (name, label, time, detail) in lines {
        println!("{name:<width$}  {label:<7}  {time:>9}  {detail}");
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
    /// May be published (no `publish = false`).
    pub publishable: bool,
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
                // `publish = false` is an empty list of registries.
                publishable: p.get("publish") == &Json::Null
                    || !p.get("publish").items().is_empty(),
            })
            .collect();
        Workspace {
            root,
            target_dir,
            packages: Ok(packages),
        }
    }

    /// The freespace library crates: the facade `freespace` and every
    /// `freespace-*` crate with a library target, except the tools in
    /// [`TOOLS`] (a library only to share code with their binaries).
    pub fn library_crates(&self) -> Result<Vec<&Package>, String> {
        let packages = self.packages.as_ref().map_err(Clone::clone)?;
        Ok(packages
            .iter()
            .filter(|p| p.is_library && (p.name == "freespace" || p.name.starts_with("freespace-")))
            .filter(|p| !TOOLS.contains(&p.name.as_str()))
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

/// The flags in the environment variable `var` with `extra` added.
fn flags_plus(var: &str, extra: &str) -> String {
    match env::var(var) {
        Ok(flags) if !flags.trim().is_empty() => format!("{flags} {extra}"),
        _ => extra.to_string(),
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
/// `deadline`, the end of a `budget`: then [`Outcome::OutOfTime`].
fn exec_until(cmd: &mut Command, deadline: Instant, budget: Duration) -> Outcome {
    println!("$ {}", show(cmd));
    // Its own process group, so a timeout can stop everything it started,
    // grandchildren that were re-parented included.
    std::os::unix::process::CommandExt::process_group(cmd, 0);
    let mut child = match cmd.spawn() {
        Ok(child) => child,
        Err(e) => return Outcome::Fail(format!("could not start `{}`: {e}", short(cmd))),
    };
    loop {
        match child.try_wait() {
            Ok(Some(s)) if s.success() => return Outcome::Pass,
            Ok(Some(s)) => {
                return Outcome::Fail(
                    s.code()
                        .map_or("killed by a signal".into(), |c| format!("exit code {c}")),
                )
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
                return Outcome::OutOfTime(format!(
                    "timed out: the {}s budget was spent",
                    budget.as_secs()
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(200)),
            Err(e) => return Outcome::Fail(format!("waiting for `{}`: {e}", short(cmd))),
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
/// started; both show as [`Outcome::OutOfTime`], not as failures.
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
            let outcome = match deadline {
                None => match exec(&mut cmd) {
                    Ok(()) => Outcome::Pass,
                    Err(e) => Outcome::Fail(e),
                },
                Some((at, budget)) if Instant::now() >= at => Outcome::OutOfTime(format!(
                    "never started: the {}s budget was spent",
                    budget.as_secs()
                )),
                Some((at, budget)) => exec_until(&mut cmd, at, budget),
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
    let outcome = sum_up(&parts);
    Report {
        outcome,
        parts,
        notes: Vec::new(),
    }
}

/// A step's outcome from its parts': FAIL if any part failed, else BUDGET
/// if any ran out of time, else PASS.
fn sum_up(parts: &[Part]) -> Outcome {
    let named = |pick: fn(&Outcome) -> bool| -> Vec<&str> {
        parts
            .iter()
            .filter(|p| pick(&p.outcome))
            .map(|p| p.name.as_str())
            .collect()
    };
    let failed = named(|o| matches!(o, Outcome::Fail(_)));
    let timed_out = named(|o| matches!(o, Outcome::OutOfTime(why) if why.starts_with("timed out")));
    let never_started = named(|o| matches!(o, Outcome::OutOfTime(why) if why.starts_with("never")));
    let budget = if timed_out.is_empty() && never_started.is_empty() {
        String::new()
    } else {
        format!(
            "budget exhausted: {} timed out, {} never started (none of them failed)",
            timed_out.len(),
            never_started.len()
        )
    };
    if !failed.is_empty() {
        let mut why = format!(
            "{} of {} failed: {}",
            failed.len(),
            parts.len(),
            failed.join(", ")
        );
        if !budget.is_empty() {
            why += &format!("; also {budget}");
        }
        Outcome::Fail(why)
    } else if !budget.is_empty() {
        Outcome::OutOfTime(format!(
            "{budget}; {} of {} passed",
            parts.len() - timed_out.len() - never_started.len(),
            parts.len()
        ))
    } else {
        Outcome::Pass
    }
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
    outcome(
        exec(cargo(&ws.root).args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]))
        // The examples a feature gates, which `--all-targets` leaves out.
        .and_then(|()| {
            exec(cargo(&ws.root).args([
                "clippy",
                "-p",
                "freespace-malloc",
                "--features",
                "unexported",
                "--examples",
                "--",
                "-D",
                "warnings",
            ]))
        }),
    )
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

/// Workspace members documented without their dependencies: tools, whose
/// dependencies (benchmark anchors, C libraries) are not worth documenting.
const DOC_NO_DEPS: &[&str] = &["freespace-bench", "xtask"];

fn doc(ws: &Workspace) -> Report {
    let mut parts = Vec::new();
    let mut part = |name: &str, cmd: &mut Command| {
        let t = Instant::now();
        let outcome = match exec(cmd) {
            Ok(()) => Outcome::Pass,
            Err(e) => Outcome::Fail(e),
        };
        parts.push(Part {
            name: name.to_string(),
            outcome,
            time: t.elapsed(),
        });
    };
    part(
        "doc tests",
        cargo(&ws.root).args(["test", "--workspace", "--doc"]),
    );
    let rustdocflags = flags_plus("RUSTDOCFLAGS", "-D rustdoc::broken_intra_doc_links");
    let cargo_doc = |first: &str, per_tool: &str| {
        let mut cmd = cargo(&ws.root);
        cmd.env("RUSTDOCFLAGS", &rustdocflags).args(["doc", first]);
        for name in DOC_NO_DEPS {
            cmd.args([per_tool, name]);
        }
        cmd
    };
    // With `--no-deps`, cargo documents the crates in any order and rustdoc
    // silently drops a link into a crate whose pages do not exist yet; with
    // the dependencies documented, each crate's pages come after its
    // dependencies'.
    part(
        "cargo doc (libraries and dependencies)",
        &mut cargo_doc("--workspace", "--exclude"),
    );
    part("cargo doc (tools)", &mut cargo_doc("--no-deps", "-p"));
    let t = Instant::now();
    let dropped = dropped_links(&ws.target_dir.join("doc"));
    let outcome = if dropped.is_empty() {
        Outcome::Pass
    } else {
        for (page, text) in &dropped {
            println!("dropped link: {page}: [{text}]");
        }
        Outcome::Fail(format!(
            "{} link(s) left as text, first: {} [{}]",
            dropped.len(),
            dropped[0].0,
            dropped[0].1
        ))
    };
    parts.push(Part {
        name: "no dropped links".to_string(),
        outcome,
        time: t.elapsed(),
    });
    Report {
        outcome: sum_up(&parts),
        parts,
        notes: Vec::new(),
    }
}

/// Links rustdoc left as text in the workspace's pages under `doc_dir`:
/// `(page, link text)` for every `[<code>name</code>]` (a link written
/// ``[`name`]`` that rustdoc could not, or silently did not, turn into a
/// link). The `alloc` modules are allocator-api2's pages, re-exported, and
/// theirs to fix.
fn dropped_links(doc_dir: &std::path::Path) -> Vec<(String, String)> {
    fn walk(dir: &std::path::Path, pages: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                if entry.file_name() != "alloc" {
                    walk(&path, pages);
                }
            } else if path.extension().is_some_and(|e| e == "html") {
                pages.push(path);
            }
        }
    }
    let mut pages = Vec::new();
    if let Ok(entries) = std::fs::read_dir(doc_dir) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name == "freespace" || name.starts_with("freespace_") || name == "xtask" {
                walk(&entry.path(), &mut pages);
            }
        }
    }
    pages.sort();
    let mut dropped = Vec::new();
    for page in pages {
        let Ok(html) = std::fs::read_to_string(&page) else {
            continue;
        };
        let name = page
            .strip_prefix(doc_dir)
            .unwrap_or(&page)
            .display()
            .to_string();
        let mut rest = html.as_str();
        while let Some(at) = rest.find("[<code>") {
            rest = &rest[at + "[<code>".len()..];
            if let Some(end) = rest.find("</code>]") {
                if !rest[..end].contains('<') {
                    dropped.push((name.clone(), rest[..end].to_string()));
                }
            }
        }
    }
    dropped
}

fn package(ws: &Workspace) -> Report {
    let packages = match ws.packages.as_ref() {
        Ok(p) => p,
        Err(e) => return Outcome::Fail(format!("cannot list the packages: {e}")).into(),
    };
    let mut cmd = cargo(&ws.root);
    cmd.args(["package", "--workspace", "--no-verify", "--allow-dirty"]);
    for p in packages.iter().filter(|p| !p.publishable) {
        cmd.args(["--exclude", &p.name]);
    }
    outcome(exec(&mut cmd))
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
    let budget = crate::fuzz::Budget::Seconds(crate::fuzz::SMOKE_SECONDS);
    if crate::fuzz::run(&ws.root, &targets, budget, true, true) {
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
    let rustflags = flags_plus("RUSTFLAGS", "--cfg loom");
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
            Outcome::OutOfTime(why) => format!("not finished, budget exhausted ({why})"),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_left_as_text_is_found_and_a_link_is_not() {
        let dir = env::temp_dir().join(format!("xtask-dropped-links-{}", std::process::id()));
        let page_dir = dir.join("freespace_demo").join("module");
        std::fs::create_dir_all(&page_dir).unwrap();
        std::fs::create_dir_all(dir.join("freespace_demo").join("alloc")).unwrap();
        std::fs::write(
            page_dir.join("struct.X.html"),
            "<p>trimmed to [<code>REGION_ALIGN</code>] and <a href=\"y.html\"><code>Y</code></a>, \
             see [<code>Z</code>].</p>",
        )
        .unwrap();
        // allocator-api2's pages and other crates' pages are not ours.
        std::fs::write(
            dir.join("freespace_demo/alloc/struct.Vec.html"),
            "[<code>vec!</code>]",
        )
        .unwrap();
        std::fs::create_dir_all(dir.join("libc")).unwrap();
        std::fs::write(dir.join("libc/index.html"), "[<code>x</code>]").unwrap();
        let found = dropped_links(&dir);
        std::fs::remove_dir_all(&dir).unwrap();
        let page = "freespace_demo/module/struct.X.html".to_string();
        assert_eq!(
            found,
            vec![
                (page.clone(), "REGION_ALIGN".to_string()),
                (page, "Z".to_string())
            ]
        );
    }

    #[test]
    fn a_budget_shortfall_is_not_a_failure_but_a_failure_wins() {
        let part = |name: &str, outcome: Outcome| Part {
            name: name.to_string(),
            outcome,
            time: Duration::ZERO,
        };
        let late = || Outcome::OutOfTime("timed out: the 10s budget was spent".into());
        let never = || Outcome::OutOfTime("never started: the 10s budget was spent".into());
        let parts = [
            part("a", Outcome::Pass),
            part("b", late()),
            part("c", never()),
        ];
        match sum_up(&parts) {
            Outcome::OutOfTime(why) => assert_eq!(
                why,
                "budget exhausted: 1 timed out, 1 never started (none of them failed); 1 of 3 passed"
            ),
            other => panic!("{other:?}"),
        }
        let parts = [
            part("a", Outcome::Fail("exit code 1".into())),
            part("b", late()),
        ];
        assert!(
            matches!(sum_up(&parts), Outcome::Fail(why) if why.contains("also budget exhausted"))
        );
        assert_eq!(sum_up(&[part("a", Outcome::Pass)]), Outcome::Pass);
    }
}
