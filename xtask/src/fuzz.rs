//! `cargo xtask fuzz` and `cargo xtask reliability`.
//!
//! ```text
//! cargo xtask fuzz [TARGET..] [--seconds N]   fuzz each target (default: all, 60 s each)
//! cargo xtask fuzz --long [TARGET..]          each target to at least 10^6 executions
//! cargo xtask fuzz --smoke [TARGET..]         a few seconds each + replay fuzz/regressions/<target>/*
//! cargo xtask fuzz ... --no-asan              built without AddressSanitizer (`-s none`; debug
//!                                             assertions stay on): 3-4x the executions/s; recorded
//! cargo xtask reliability [--fuzz-seconds N]  regenerate docs/reliability.md (fuzzing first if N given)
//! ```
//!
//! Every run lets libFuzzer make inputs of up to [`MAX_LEN`] bytes (a few
//! hundred ops: deep heap states) from the start ([`LEN_CONTROL`] 0:
//! libFuzzer's default grows the length limit slowly from a few bytes, so
//! short runs never left 10–20 ops). `--long` runs each target for
//! [`LONG_RUNS`] executions instead of a time, and records the date and
//! the commit with the figures.
//!
//! Fuzzing runs `cargo +nightly fuzz run` (cargo-fuzz, libFuzzer) in
//! `fuzz/`, its own workspace. Every run records the executions libFuzzer
//! reports in its final stats (`stat::number_of_executed_units`) in
//! `fuzz/stats.tsv`, which the reliability page reads. A crash is copied
//! to `fuzz/regressions/<target>/` (commit it: the smoke run replays every
//! file there) and makes the command fail. The smoke run (the test
//! matrix's `fuzz` step) writes no tracked file: it leaves `fuzz/stats.tsv`
//! alone and a crash where libFuzzer put it (`fuzz/artifacts/`, ignored by
//! git), saying where, so `cargo xtask test` leaves a clean tree. Without cargo-fuzz or a nightly
//! toolchain the command prints SKIPPED and succeeds, so the test matrix
//! runs on machines without them.
//!
//! Every run starts from the target's minimized corpus kept in the
//! repository, `fuzz/corpus/<target>/` ([`CORPUS`]; `cargo xtask fuzz
//! --minimize` rewrites it from what the runs found), so a smoke run starts
//! deep. libFuzzer writes the inputs it finds into the *first* corpus
//! directory it is given: that is a scratch directory under the target
//! directory (`<target dir>/fuzz-corpus/<target>/`, kept from run to run),
//! never the tracked one, so a run leaves the tree clean.
//!
//! Only the standard library is used, like the rest of the xtask: the
//! progress bar is drawn by hand.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::{cargo_target_dir, root};

/// Seconds per target of `cargo xtask fuzz` without `--seconds`.
const DEFAULT_SECONDS: u64 = 60;
/// Seconds per target of the smoke run.
pub const SMOKE_SECONDS: u64 = 4;
/// Executions per target of `cargo xtask fuzz --long`.
pub const LONG_RUNS: u64 = 1_000_000;
/// Longest input libFuzzer makes (`-max_len`): 4 KiB, a few hundred ops.
pub const MAX_LEN: usize = 4096;
/// libFuzzer's `-len_control`: 0 uses [`MAX_LEN`] from the first input on,
/// instead of raising the limit slowly (its default, 100, kept a smoke
/// run's inputs at 38–80 bytes; with 0, a 4-minute run of the segregator
/// target covered 755 edges instead of 565).
pub const LEN_CONTROL: u32 = 0;

/// How long one target is fuzzed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Budget {
    /// For this many seconds (`-max_total_time`).
    Seconds(u64),
    /// For this many executions (`-runs`).
    Runs(u64),
}

impl Budget {
    /// libFuzzer's flag for it.
    fn flag(self) -> String {
        match self {
            Budget::Seconds(n) => format!("-max_total_time={n}"),
            Budget::Runs(n) => format!("-runs={n}"),
        }
    }
}

/// Where the targets are built: one directory per sanitizer setting, so
/// switching does not rebuild.
fn target_dir(root: &Path, asan: bool) -> PathBuf {
    cargo_target_dir(root).join(if asan { "fuzz" } else { "fuzz-no-asan" })
}

/// The tracked, minimized corpus of each target: `fuzz/corpus/<target>/`.
pub const CORPUS: &str = "fuzz/corpus";

/// Bytes of tracked corpus kept per target (about 2 MiB for all of them).
pub const CORPUS_BUDGET: u64 = 96 << 10;

/// The scratch corpus of `target`, where libFuzzer writes what it finds.
fn scratch_corpus(root: &Path, target: &str) -> PathBuf {
    cargo_target_dir(root).join("fuzz-corpus").join(target)
}

/// The fuzz targets: `fuzz/fuzz_targets/*.rs`, sorted.
pub fn targets(root: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(root.join("fuzz/fuzz_targets"))
        .map(|dir| {
            dir.filter_map(|e| e.ok())
                .filter_map(|e| {
                    e.file_name()
                        .to_str()
                        .and_then(|n| n.strip_suffix(".rs"))
                        .map(String::from)
                })
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Why fuzzing cannot run here, if it cannot.
pub fn unavailable() -> Option<String> {
    let ok = |cmd: &mut Command| {
        cmd.stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !ok(Command::new("cargo").args(["+nightly", "--version"])) {
        return Some("no nightly toolchain (rustup toolchain install nightly)".into());
    }
    if !ok(Command::new("cargo").args(["+nightly", "fuzz", "--version"])) {
        return Some("cargo-fuzz is not installed (cargo install cargo-fuzz --locked)".into());
    }
    None
}

/// What one libFuzzer run did.
struct Run {
    execs: u64,
    crash: Option<PathBuf>,
    ok: bool,
    tail: Vec<String>,
}

fn fuzz_command(root: &Path, target: &str, asan: bool) -> Command {
    let mut cmd = Command::new("cargo");
    cmd.current_dir(root).args(["+nightly", "fuzz", "run"]);
    if !asan {
        cmd.args(["-s", "none"]);
    }
    cmd.args([target, "--fuzz-dir", "fuzz", "--target-dir"]);
    cmd.arg(target_dir(root, asan));
    cmd
}

/// Builds every target once, so the progress bars time fuzzing, not compiling.
fn build(root: &Path, asan: bool) -> bool {
    eprintln!(
        "fuzz: building the targets (cargo +nightly fuzz build{})",
        if asan { "" } else { " -s none" }
    );
    let mut cmd = Command::new("cargo");
    cmd.current_dir(root).args(["+nightly", "fuzz", "build"]);
    if !asan {
        cmd.args(["-s", "none"]);
    }
    cmd.args(["--fuzz-dir", "fuzz", "--target-dir"])
        .arg(target_dir(root, asan))
        .status()
        .is_ok_and(|s| s.success())
}

/// The libFuzzer flags every run passes, after the budget's: inputs up to
/// [`MAX_LEN`] bytes from the start.
pub fn depth_flags() -> [String; 2] {
    [
        format!("-max_len={MAX_LEN}"),
        format!("-len_control={LEN_CONTROL}"),
    ]
}

/// Fuzzes `target` within `budget`, drawing a progress bar; with `keep`,
/// copies any crash input to `fuzz/regressions/<target>/`. New inputs go
/// to the scratch corpus; the tracked one is only read.
fn fuzz_one(root: &Path, target: &str, budget: Budget, label: &str, keep: bool, asan: bool) -> Run {
    let scratch = scratch_corpus(root, target);
    let _ = fs::create_dir_all(&scratch);
    let mut cmd = fuzz_command(root, target, asan);
    cmd.arg(&scratch);
    let tracked = root.join(CORPUS).join(target);
    if tracked.is_dir() {
        cmd.arg(&tracked);
    }
    cmd.arg("--")
        .arg(budget.flag())
        .args(depth_flags())
        .arg("-print_final_stats=1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let Ok(mut child) = cmd.spawn() else {
        return Run {
            execs: 0,
            crash: None,
            ok: false,
            tail: vec!["could not run cargo".into()],
        };
    };
    let (tx, rx) = mpsc::channel();
    for pipe in [
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
    ]
    .into_iter()
    .flatten()
    {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
    }
    drop(tx);
    let start = Instant::now();
    let tty = std::io::stderr().is_terminal();
    let mut run = Run {
        execs: 0,
        crash: None,
        ok: false,
        tail: Vec::new(),
    };
    let mut artifact = None;
    let mut last_draw = Instant::now() - Duration::from_secs(1);
    loop {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(line) => {
                if let Some(n) = line
                    .strip_prefix('#')
                    .and_then(|r| r.split_whitespace().next())
                    .and_then(|n| n.parse().ok())
                {
                    run.execs = n;
                }
                if let Some(n) = line
                    .strip_prefix("stat::number_of_executed_units:")
                    .and_then(|n| n.trim().parse().ok())
                {
                    run.execs = n;
                }
                if let Some(path) = line.split("Test unit written to ").nth(1) {
                    artifact = Some(root.join("fuzz").join(path.trim()));
                }
                run.tail.push(line);
                if run.tail.len() > 40 {
                    run.tail.remove(0);
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        if tty && last_draw.elapsed() >= Duration::from_millis(250) {
            last_draw = Instant::now();
            draw(label, start.elapsed(), budget, run.execs);
        }
    }
    run.ok = child.wait().is_ok_and(|s| s.success());
    if tty {
        eprint!("\r\x1b[2K");
    }
    if let Some(found) = artifact {
        // cargo-fuzz runs libFuzzer in fuzz/, so the path may be relative to it
        let found = if found.exists() {
            found
        } else {
            PathBuf::from(found.to_string_lossy().replace("/fuzz/fuzz/", "/fuzz/"))
        };
        run.crash = Some(if keep {
            keep_crash(root, target, found)
        } else {
            found
        });
    }
    run
}

/// Copies the crash input `found` to `fuzz/regressions/<target>/` and
/// returns where it is now (`found` if the copy failed).
fn keep_crash(root: &Path, target: &str, found: PathBuf) -> PathBuf {
    let dir = root.join("fuzz/regressions").join(target);
    let _ = fs::create_dir_all(&dir);
    let kept = dir.join(found.file_name().unwrap_or_default());
    if fs::copy(&found, &kept).is_ok() {
        kept
    } else {
        found
    }
}

fn draw(label: &str, elapsed: Duration, budget: Budget, execs: u64) {
    const WIDTH: usize = 30;
    let (frac, of) = match budget {
        Budget::Seconds(n) => (elapsed.as_secs_f64() / n.max(1) as f64, format!("/{n}s")),
        Budget::Runs(n) => (execs as f64 / n.max(1) as f64, String::from("s")),
    };
    let filled = (frac.min(1.0) * WIDTH as f64) as usize;
    eprint!(
        "\r\x1b[2K{label} [{}{}] {:>4}{of} {execs:>10} execs",
        "#".repeat(filled),
        "-".repeat(WIDTH - filled),
        elapsed.as_secs()
    );
    let _ = std::io::stderr().flush();
}

/// Replays every file in `fuzz/regressions/<target>/` once.
fn replay(root: &Path, target: &str) -> Result<usize, Vec<String>> {
    let dir = root.join("fuzz/regressions").join(target);
    let count = fs::read_dir(&dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| e.path().is_file())
                .count()
        })
        .unwrap_or(0);
    if count == 0 {
        return Ok(0);
    }
    let out = fuzz_command(root, target, true)
        .arg(&dir)
        .args(["--", "-runs=0"])
        .output();
    match out {
        Ok(o) if o.status.success() => Ok(count),
        Ok(o) => Err(String::from_utf8_lossy(&o.stderr)
            .lines()
            .rev()
            .take(30)
            .map(String::from)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect()),
        Err(e) => Err(vec![e.to_string()]),
    }
}

/// `cargo xtask fuzz --minimize [TARGET..]`: rewrites each target's tracked
/// corpus as `cargo fuzz cmin` of the tracked and the scratch corpus
/// together (libFuzzer's merge: a small set of inputs covering the same
/// edges, hit counts ignored: `-use_counters=0`), then, if that is more than
/// [`CORPUS_BUDGET`] bytes, only its largest inputs (the longest op
/// sequences: the deepest heap states) up to the budget.
fn minimize(root: &Path, chosen: &[String]) -> bool {
    if let Some(why) = unavailable() {
        eprintln!("\n*** fuzz: SKIPPED: {why} ***\n");
        return true;
    }
    let mut ok = true;
    for target in chosen {
        let tracked = root.join(CORPUS).join(target);
        let scratch = scratch_corpus(root, target);
        let _ = fs::create_dir_all(&tracked);
        let _ = fs::create_dir_all(&scratch);
        // cmin merges its extra directories into the first: merge
        // everything into a fresh directory, then swap it in.
        let fresh = cargo_target_dir(root).join("fuzz-cmin").join(target);
        let _ = fs::remove_dir_all(&fresh);
        let _ = fs::create_dir_all(&fresh);
        let status = Command::new("cargo")
            .current_dir(root)
            .args([
                "+nightly",
                "fuzz",
                "run",
                target,
                "--fuzz-dir",
                "fuzz",
                "--target-dir",
            ])
            .arg(target_dir(root, true))
            .arg(&fresh)
            .arg(&tracked)
            .arg(&scratch)
            .arg("--")
            .arg("-merge=1")
            .arg("-use_counters=0")
            .args(depth_flags())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if !status.is_ok_and(|s| s.success()) {
            eprintln!("{target}: minimizing FAILED");
            ok = false;
            continue;
        }
        let _ = fs::remove_dir_all(&tracked);
        if fs::rename(&fresh, &tracked).is_err() {
            eprintln!("{target}: could not move the minimized corpus into place");
            ok = false;
            continue;
        }
        let mut inputs: Vec<(u64, PathBuf)> = fs::read_dir(&tracked)
            .map(|d| {
                d.filter_map(|e| {
                    let e = e.ok()?;
                    Some((e.metadata().ok()?.len(), e.path()))
                })
                .collect()
            })
            .unwrap_or_default();
        // Largest first, ties by name: the same corpus from the same inputs.
        inputs.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        let (mut files, mut bytes, mut dropped) = (0, 0, 0);
        for (len, path) in inputs {
            if bytes + len <= CORPUS_BUDGET {
                files += 1;
                bytes += len;
            } else {
                let _ = fs::remove_file(path);
                dropped += 1;
            }
        }
        eprintln!(
            "{target}: {files} inputs, {bytes} bytes in {CORPUS}/{target} \
             ({dropped} more over the budget left out)"
        );
    }
    ok
}

// ---------------------------------------------------------------------------
// fuzz/stats.tsv: target, seconds, executions, unix time, result, commit
// ---------------------------------------------------------------------------

struct Stat {
    seconds: u64,
    execs: u64,
    when: u64,
    result: String,
    /// The commit fuzzed (empty in lines written before it was recorded).
    commit: String,
}

fn stats_path(root: &Path) -> PathBuf {
    root.join("fuzz/stats.tsv")
}

fn read_stats(root: &Path) -> BTreeMap<String, Stat> {
    let text = fs::read_to_string(stats_path(root)).unwrap_or_default();
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            Some((
                f.first()?.to_string(),
                Stat {
                    seconds: f.get(1)?.parse().ok()?,
                    execs: f.get(2)?.parse().ok()?,
                    when: f.get(3)?.parse().ok()?,
                    result: f.get(4)?.to_string(),
                    commit: f.get(5).unwrap_or(&"").to_string(),
                },
            ))
        })
        .collect()
}

fn write_stats(root: &Path, stats: &BTreeMap<String, Stat>) {
    let mut text = String::from("# target\tseconds\texecutions\tunix time\tresult\tcommit\n");
    for (t, s) in stats {
        let _ = writeln!(
            text,
            "{t}\t{}\t{}\t{}\t{}\t{}",
            s.seconds, s.execs, s.when, s.result, s.commit
        );
    }
    let _ = fs::write(stats_path(root), text);
}

/// The commit being fuzzed: `git rev-parse --short HEAD`, with `+` when
/// the tree has uncommitted changes other than `fuzz/stats.tsv` (which
/// the runs themselves write: a campaign of several targets in one tree
/// fuzzes the same commit throughout); `unknown` without git.
fn commit(root: &Path) -> String {
    let git = |args: &[&str]| {
        Command::new("git")
            .current_dir(root)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    match git(&["rev-parse", "--short", "HEAD"]) {
        Some(hash) if !hash.is_empty() => {
            let dirty = git(&[
                "status",
                "--porcelain",
                "--untracked-files=no",
                "--",
                ".",
                ":(exclude)fuzz/stats.tsv",
            ])
            .is_some_and(|s| !s.is_empty());
            if dirty {
                format!("{hash}+")
            } else {
                hash
            }
        }
        _ => "unknown".into(),
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------
// commands
// ---------------------------------------------------------------------------

/// `cargo xtask fuzz [TARGET..] [--seconds N | --long] [--smoke]`.
pub fn command(args: &[String]) -> ExitCode {
    let root = root();
    let all = targets(&root);
    let mut seconds = None;
    let mut smoke = false;
    let mut long = false;
    let mut asan = true;
    let mut minimize = false;
    let mut chosen = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--smoke" => smoke = true,
            "--long" => long = true,
            "--no-asan" => asan = false,
            "--minimize" => minimize = true,
            "--seconds" => match it.next().and_then(|n| n.parse().ok()) {
                Some(n) => seconds = Some(n),
                None => return fail("--seconds needs a number"),
            },
            s if s.starts_with("--seconds=") => match s["--seconds=".len()..].parse() {
                Ok(n) => seconds = Some(n),
                Err(_) => return fail("--seconds needs a number"),
            },
            s if s.starts_with('-') => return fail(&format!("unknown option for fuzz: {s}")),
            t if all.iter().any(|x| x == t) => chosen.push(t.to_string()),
            t => {
                return fail(&format!(
                    "no fuzz target {t:?}; targets: {}",
                    all.join(", ")
                ))
            }
        }
    }
    if chosen.is_empty() {
        chosen = all;
    }
    if minimize {
        return if self::minimize(&root, &chosen) {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        };
    }
    if long && (smoke || seconds.is_some()) {
        return fail(
            "--long runs each target to a number of executions: not with --smoke or --seconds",
        );
    }
    let budget = if long {
        Budget::Runs(LONG_RUNS)
    } else {
        Budget::Seconds(seconds.unwrap_or(if smoke {
            SMOKE_SECONDS
        } else {
            DEFAULT_SECONDS
        }))
    };
    if run(&root, &chosen, budget, smoke, asan) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(2)
}

/// Fuzzes `chosen` within `budget` each (and replays the regressions when
/// `smoke`); true unless something crashed (or, for a [`Budget::Runs`],
/// a target stopped short of it). Prints SKIPPED and returns true when
/// fuzzing is unavailable here. Without `asan`, the targets are built
/// without AddressSanitizer and the results say so.
pub fn run(root: &Path, chosen: &[String], budget: Budget, smoke: bool, asan: bool) -> bool {
    if let Some(why) = unavailable() {
        eprintln!("\n*** fuzz: SKIPPED: {why} ***\n");
        return true;
    }
    if !build(root, asan) {
        eprintln!("fuzz: FAILED: the fuzz targets do not build");
        return false;
    }
    let mut stats = read_stats(root);
    let mut failed = Vec::new();
    let fuzzed = commit(root);
    let width = chosen.iter().map(String::len).max().unwrap_or(0);
    for (i, target) in chosen.iter().enumerate() {
        let label = format!("[{}/{}] {target:<width$}", i + 1, chosen.len());
        if smoke {
            match replay(root, target) {
                Ok(0) => {}
                Ok(n) => eprintln!("{label} replayed {n} regression input(s): ok"),
                Err(tail) => {
                    eprintln!("{label} REGRESSION replay FAILED:\n{}", tail.join("\n"));
                    failed.push(format!("{target} (regression replay)"));
                }
            }
        }
        let started = Instant::now();
        let r = fuzz_one(root, target, budget, &label, !smoke, asan);
        let seconds = started.elapsed().as_secs();
        let short = matches!(budget, Budget::Runs(n) if r.execs < n);
        let result = match (&r.crash, r.ok) {
            (Some(path), _) => {
                eprintln!(
                    "{label} CRASH after {} execs; input kept at {}\n{}",
                    r.execs,
                    path.display(),
                    r.tail.join("\n")
                );
                failed.push(format!("{target} (crash: {})", path.display()));
                format!(
                    "crash ({})",
                    path.file_name().unwrap_or_default().to_string_lossy()
                )
            }
            (None, false) => {
                eprintln!("{label} FAILED\n{}", r.tail.join("\n"));
                failed.push(format!("{target} (failed)"));
                "failed".into()
            }
            (None, true) if short => {
                eprintln!(
                    "{label} FAILED: stopped after {} execs, short of {budget:?}\n{}",
                    r.execs,
                    r.tail.join("\n")
                );
                failed.push(format!("{target} (short run)"));
                "short".into()
            }
            (None, true) => {
                eprintln!("{label} ok: {} execs in {seconds}s", r.execs);
                "ok".into()
            }
        };
        let result = if asan {
            result
        } else {
            format!("{result} (no ASan)")
        };
        // A smoke run records nothing: its few seconds are no figures for
        // the reliability page, and the test matrix must not rewrite a
        // tracked file. Anything else is written as soon as the target is
        // done, so a long campaign that is stopped keeps what it finished.
        if !smoke {
            stats.insert(
                target.clone(),
                Stat {
                    seconds,
                    execs: r.execs,
                    when: now(),
                    result,
                    commit: fuzzed.clone(),
                },
            );
            write_stats(root, &stats);
        }
    }
    if failed.is_empty() {
        eprintln!("fuzz: {} target(s) ok", chosen.len());
        true
    } else {
        eprintln!("fuzz: FAILED: {}", failed.join(", "));
        false
    }
}

// ---------------------------------------------------------------------------
// docs/reliability.md
// ---------------------------------------------------------------------------

/// `cargo xtask reliability [--fuzz-seconds N]`.
pub fn reliability(args: &[String]) -> ExitCode {
    let root = root();
    let mut fuzz_seconds = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--fuzz-seconds" => match it.next().and_then(|n| n.parse().ok()) {
                Some(n) => fuzz_seconds = Some(n),
                None => return fail("--fuzz-seconds needs a number"),
            },
            other => return fail(&format!("unknown option for reliability: {other}")),
        }
    }
    let mut ok = true;
    if let Some(n) = fuzz_seconds {
        ok &= run(&root, &targets(&root), Budget::Seconds(n), false, true);
    }
    eprintln!(
        "reliability: running the fault matrix (cargo test -p freespace-stats --test faults)"
    );
    let out = Command::new("cargo")
        .current_dir(&root)
        .args([
            "test",
            "-p",
            "freespace-stats",
            "--test",
            "faults",
            "--",
            "--nocapture",
            "--test-threads=1",
        ])
        .output();
    let (faults_text, faults_ok) = match out {
        Ok(o) => (
            String::from_utf8_lossy(&o.stdout).into_owned(),
            o.status.success(),
        ),
        Err(e) => (format!("could not run cargo: {e}"), false),
    };
    ok &= faults_ok;
    let page = render(&root, &faults_text, faults_ok);
    let path = root.join("docs/reliability.md");
    if let Err(e) = fs::write(&path, page) {
        eprintln!("could not write {}: {e}", path.display());
        return ExitCode::FAILURE;
    }
    eprintln!("reliability: wrote {}", path.display());
    if ok {
        ExitCode::SUCCESS
    } else {
        eprintln!("reliability: some runs FAILED (the page says which)");
        ExitCode::FAILURE
    }
}

fn render(root: &Path, faults: &str, faults_ok: bool) -> String {
    let mut p = String::new();
    let _ = writeln!(
        p,
        "# Reliability\n\n\
         Generated by `cargo xtask reliability` from the runs themselves; do not edit by hand.\n\
         Faults: `crates/stats/tests/faults.rs` (`cargo test -p freespace-stats --test faults -- --nocapture`).\n\
         Fuzzing: `cargo xtask fuzz` (figures in `fuzz/stats.tsv`). loom: `crates/*/tests/loom.rs`. Miri: `docs/miri.txt`.\n"
    );

    // -- faults ------------------------------------------------------------
    let _ = writeln!(
        p,
        "## Faults tried\n\n\
         Each fault is set up on a fresh heap and tried twice: through the checked free \
         (`try_deallocate` must return exactly the expected `Corruption` and leave the heap \
         unchanged; for damaged metadata, whether the heap's `check()` sees the damage too) and \
         through the plain free in a child process (which must die of SIGABRT printing exactly \
         `freespace: <what> at 0x<addr> (<block>)`).\n"
    );
    if !faults_ok {
        let _ = writeln!(p, "**The fault matrix FAILED in this run.**\n");
    }
    let _ = writeln!(
        p,
        "| block | fault | checked free | abort in a child |\n|---|---|---|---|"
    );
    let mut rows = 0;
    let (mut caught, mut gaps) = (0, 0);
    for line in marked(faults, "FAULT\t") {
        let f: Vec<&str> = line.split('\t').collect();
        if f.len() >= 5 {
            rows += 1;
            if f[3].starts_with("ok") && f[4].starts_with("ok") {
                caught += 1;
            } else {
                gaps += 1;
            }
            let _ = writeln!(
                p,
                "| {} | {} | {} | {} |",
                f[1],
                f[2],
                cell(f[3]),
                cell(f[4])
            );
        }
    }
    if rows == 0 {
        let _ = writeln!(p, "| | (no results: the fault test did not run) | | |");
    }
    let _ = writeln!(
        p,
        "\n{caught} of {rows} faults caught by both paths; {gaps} not (each one reported to the block's owner).\n\n\
         Covered by the blocks' own tests and not repeated above: the free-list heap's double frees \
         (immediate, after coalescing, after reuse), foreign, interior and misaligned pointers, an \
         overwritten size word and magic, an 8-byte overflow freeing the block that overflowed, size \
         and alignment mismatches, header lookalikes in user data, a header forged in user data (refused: the magic is keyed by a per-heap secret) (`crates/split-coalesce/tests/heap.rs`); \
         the buddy's double free, foreign, interior and misaligned pointers, size mismatch and corrupt \
         free list (`crates/buddy/tests/buddy.rs`); the slab's double free, foreign and interior pointers \
         (`crates/slab/tests/slab.rs`); segregated double frees (`crates/segregated/tests/segregated.rs`); \
         a thread cache's double free in debug builds (`crates/sync/src/tests.rs`); a foreign, an \
         interior and a double-freed pointer through the checked free of every layer and \
         combinator, on each of its routes, which must return the error without a report and \
         without a write (`freespace_testkit::misuse::refuses_misuse`, in each layer's tests); the \
         malloc shim's double free at every size and foreign pointers outside its reservation \
         (`crates/malloc-so/tests/preload.rs`).\n"
    );

    // -- stale pointers -------------------------------------------------------
    p.push_str(STALE_POINTERS);

    // -- OOM --------------------------------------------------------------
    let _ = writeln!(
        p,
        "## Out of memory at every allocation\n\n\
         `FailAfter<A>` (freespace-stats) fails the n-th allocation request (0-based; `once`: only it, \
         `from then on`: it and every later one). A workload of nested collections using `try_reserve` and \
         `Box::try_new_in` is re-run with n = 0, 1, 2, … until a run makes fewer than n + 1 requests; after \
         each run the heap underneath must show no used block (`Inspect`) and pass `check()`, the workload \
         must not panic, and every injected failure must come back as `Err`.\n\n\
         | stack (failing layer) | runs | result |\n|---|---|---|"
    );
    let mut oom_rows = 0;
    for line in marked(faults, "OOM\t") {
        let f: Vec<&str> = line.split('\t').collect();
        if f.len() >= 4 {
            oom_rows += 1;
            let _ = writeln!(p, "| `{}` | {} | {} |", f[1], f[2], f[3]);
        }
    }
    if oom_rows == 0 {
        let _ = writeln!(
            p,
            "| (no results: the OOM test did not run or failed) | | |"
        );
    }

    // -- fuzzing ------------------------------------------------------------
    let _ = writeln!(
        p,
        "\n## Fuzzing\n\n\
         Every target decodes its input into allocate/free/grow/shrink ops (`freespace_testkit::ops`), \
         plays them against a fresh heap over a zeroed arena and the shadow model, and calls the \
         blocks' `check()` after every 8th op (`freespace_fuzz::CHECK_EVERY`), the last op and the final \
         free-everything (`fuzz/fuzz_targets/`; a check walks the whole heap, so after every op \
         it made a 4 KiB input quadratic). Inputs up to {MAX_LEN} bytes \
         (`-max_len={MAX_LEN} -len_control={LEN_CONTROL}`: deep heap states from the first input). \
         Differential targets play one input through two allocators and compare them: \
         `fit_vs_scan` (each indexed fit heap and its plain list scan: every block at the same \
         offset), `stacks_differential` (`Locked<SlabBuddy>` and the same behind a thread cache: the \
         same outcomes while neither can be short of memory); `malloc_shadow` drives the malloc shim's C API \
         (its process-wide heap) against the shadow model. Each run starts from the minimized \
         corpus kept in `fuzz/corpus/<target>/`. \
         `cargo xtask fuzz --long` runs each target to {LONG_RUNS} executions; a result marked \
         `(no ASan)` was built without AddressSanitizer (`--no-asan`: `cargo fuzz run -s none`, \
         debug assertions still on). Executions from \
         libFuzzer's final stats, latest run per target, with the commit it fuzzed (`+`: with \
         uncommitted changes; a row without a commit was recorded before the commit was, with \
         libFuzzer's default input lengths).\n\n\
         | target | seconds | executions | result | when (UTC) | commit |\n|---|---|---|---|---|---|"
    );
    let stats = read_stats(root);
    for t in targets(root) {
        match stats.get(&t) {
            Some(s) => {
                let _ = writeln!(
                    p,
                    "| `{t}` | {} | {} | {} | {} | {} |",
                    s.seconds,
                    s.execs,
                    s.result,
                    date(s.when),
                    s.commit
                );
            }
            None => {
                let _ = writeln!(p, "| `{t}` | | | not run yet | | |");
            }
        }
    }
    let regressions: usize = targets(root)
        .iter()
        .map(|t| {
            fs::read_dir(root.join("fuzz/regressions").join(t))
                .map(|d| d.count())
                .unwrap_or(0)
        })
        .sum();
    let _ = writeln!(
        p,
        "\nSaved crash inputs replayed by `cargo xtask fuzz --smoke`: {regressions} (`fuzz/regressions/<target>/`).\n"
    );

    // -- loom ---------------------------------------------------------------
    p.push_str(&loom_section(root));

    // -- Miri ---------------------------------------------------------------
    p.push_str(&miri_section(root));
    p
}

/// What a free of a *stale* pointer (one freed before) meets in each block,
/// depending on what became of its memory since: prose, not figures (each
/// case is a test named here).
const STALE_POINTERS: &str = "\
## Stale pointers: what a second free can and cannot be told

A pointer freed once and freed (or resized) again is caught when the memory still says it \
was freed; it cannot be told apart when a new block now starts at the same address. No header \
field can change that: the pointer itself carries nothing (C's `free(p)`), so a generation \
count in the header would only say what the header already says. Only a tag in the pointer \
(hardware memory tagging, which freespace does not use) could. What a stamp in the header can \
do is vouch that a freed block has not moved since: the malloc shim uses one to catch a write \
through the dangling pointer when the block is reused (last row; docs/malloc.md, \
\"Stale pointers\", for how and what it costs).

| what became of the memory | free-list heap | buddy | slab | segregated lists, magazines | malloc shim |
|---|---|---|---|---|---|
| still free, as freed | double free (the chunk is free) | double free (bitmap) | double free (bitmap) | double free while cached (list head always; whole list in debug and checked frees; this thread and the depot for magazines) | double free (freed tag, in the header or a bare block's second word; for blocks above 8 KiB, the buddy's bitmap; for a block of the small heap, its free chunk) |
| merged into a free neighbour | double free (the header is buried with a dead mark) | double free (inside a free block) | — | given back to the parent: the parent's answer | double free (buddy's bitmap) |
| reused by a block that starts elsewhere and covers it | double free while the dead mark survives, else interior pointer: refused either way | interior pointer: refused | — (objects do not merge) | the parent's answer | overwritten header: refused (a bare block under a new slab's object at the same address: **not detected**) |
| reused by a new block at the same address | **not detected**: the new block is freed | **not detected** | **not detected** | **not detected** | **not detected** |
| a round cached in another thread's magazine | — | — | — | **not detected** by the magazines (the parent counts it live) | double free (the freed tag is in the header or a bare block's second word, wherever the block is cached) |
| given back by the layer (an empty slab to its parent; pages off the shim's committed end) | — (regions are kept while the heap lives) | — (as the free-list heap) | foreign pointer (in no slab) | the parent's answer | foreign pointer (outside the committed reservation: the range check) |
| still free, but **written** through the dangling pointer, then reused | corrupt free list if the write hit the chunk's links (checked when unlinked); else **not detected** | corrupt free list if it hit the links; else **not detected** | **not detected** | **not detected** | write after free, when the same thread's fast path reuses the block before its next slow call and the write hit its first 8 bytes (a canary vouched for by a reuse stamp in the header, or a bare block's third word: bare blocks of 24 B and more); else **not detected** (a write into a freed bare block's bytes 8–16 also erases its double-free mark; the small heap's blocks, a class's first 8 KiB, are not checked) |

Tests: `crates/split-coalesce/tests/heap.rs` (double free immediate, after coalescing, after \
reuse), `crates/buddy/tests/buddy.rs` and this matrix (after coalescing, after reuse), \
`crates/slab/tests/slab.rs`, `crates/sync/tests/sync.rs` (`checked_free_finds_a_double_free_in_the_depot`), \
`crates/malloc-so/tests/preload.rs` (`double_free_is_named_at_every_size`, \
`double_free_across_threads_is_named`, `write_after_free_is_caught_at_reuse`) and \
`crates/malloc/src/tests.rs` (`write_after_free_check_has_no_false_alarm`).

";

/// The lines of the test output carrying `marker`, from the marker on (the
/// first one a test prints shares its line with libtest's `test name ... `).
fn marked<'a>(text: &'a str, marker: &'a str) -> impl Iterator<Item = &'a str> {
    text.lines()
        .filter_map(move |l| l.find(marker).map(|i| &l[i..]))
}

fn cell(s: &str) -> String {
    s.replace('|', "\\|")
}

/// `YYYY-MM-DD HH:MM` of a unix time (civil-from-days, Howard Hinnant).
fn date(t: u64) -> String {
    if t == 0 {
        return String::new();
    }
    let days = (t / 86400) as i64;
    let secs = t % 86400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}",
        secs / 3600,
        secs % 3600 / 60
    )
}

/// The loom models: each `#[test]` in `crates/*/tests/loom.rs` that calls
/// `loom::model` (or a `loom::model::Builder`).
pub fn loom_section(root: &Path) -> String {
    let mut s = String::from(
        "## loom models\n\n\
         Run by the `loom` step of `cargo xtask test` (`RUSTFLAGS='--cfg loom'`, release, \
         `LOOM_MAX_PREEMPTIONS=2`); loom explores every interleaving up to that bound.\n\n\
         | crate | model |\n|---|---|\n",
    );
    let mut count = 0;
    let mut dirs: Vec<_> = fs::read_dir(root.join("crates"))
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    dirs.sort();
    for dir in dirs {
        let Ok(text) = fs::read_to_string(dir.join("tests/loom.rs")) else {
            continue;
        };
        let krate = dir
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let mut pending_test = false;
        let mut current: Option<String> = None;
        for line in text.lines() {
            let t = line.trim();
            if t.starts_with("#[test]") {
                pending_test = true;
            } else if let Some(rest) = t.strip_prefix("fn ").filter(|_| pending_test) {
                current = rest.split('(').next().map(String::from);
                pending_test = false;
            }
            if t.contains("loom::model") {
                if let Some(name) = current.take() {
                    count += 1;
                    let _ = writeln!(s, "| freespace-{krate} | `{name}` |");
                }
            }
        }
    }
    let _ = writeln!(s, "\n{count} models.\n");
    s
}

/// The Miri section: `docs/miri.txt` as the Miri step writes it (one line
/// per crate or test binary), or a note that it has not been written yet.
pub fn miri_section(root: &Path) -> String {
    let mut s = String::from("## Miri\n\n");
    match fs::read_to_string(root.join("docs/miri.txt")) {
        Ok(text) if !text.trim().is_empty() => {
            s.push_str("From `docs/miri.txt` (written by `cargo xtask miri --doc`):\n\n```text\n");
            s.push_str(text.trim_end());
            s.push_str("\n```\n");
        }
        _ => s.push_str(
            "`docs/miri.txt` has not been written yet: `cargo xtask miri --doc` runs every library \
             crate's unit tests under Miri with `-Zmiri-strict-provenance`.\n",
        ),
    }
    s
}
