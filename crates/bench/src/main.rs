//! freespace's benchmark harness: every freespace block and stack next to
//! the allocators people use today, in one run (`cargo xtask bench`).
//!
//! ```text
//! freespace-bench [--quick] [--runs N] [--workload W[,W..]] [--subject S[,S..]]
//!                 [--budget SECONDS] [--out DIR] [--callgrind] [--rss] [--list]
//! ```
//!
//! - Every subject replays the same deterministic op trace; subjects take
//!   turns within each round (the order rotates from round to round), so
//!   a noisy neighbour slows all of them alike. Each cell is the median of
//!   the rounds with min–max, and the ratio to glibc is taken within each
//!   round before its median is.
//! - `--quick`: a tiny run of every workload (seconds; CI runs it).
//! - `--callgrind`: instead of timing, run each subject once under
//!   `valgrind --tool=callgrind` (counting only the replay) and tabulate
//!   instructions: repeatable on a busy machine.
//! - `--rss`: only the resident-memory pass: each subject that gets its
//!   memory from the OS replays each trace workload once in a fresh child
//!   process (`--rss-child`), which reports its peak and what stays
//!   resident after freeing everything and trimming (see
//!   `freespace_bench::rss`). A standard run does this pass after timing
//!   and puts its tables in the report; `--quick` runs it at quick scale.
//! - `--out DIR`: write `DIR/benchmarks.md` and the SVG plots beside it.

mod report;

use freespace_bench::rss::{Footprint, RssRun};
use freespace_bench::{subjects, workloads};

use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use subjects::{with_subject, Memory, SUBJECTS};
use workloads::{Kind, Outcome, Run, Scale, Trial, Workload};

const USAGE: &str = "\
usage: freespace-bench [options]

  --quick               tiny run of every workload (seconds; what CI runs)
  --runs N              rounds per workload (default 7; quick 2)
  --workload W[,W..]    only these workloads (default: all)
  --subject S[,S..]     only these subjects (glibc is always added: ratios are against it)
  --budget SECONDS      CPU time one run may take before the subject is dropped
                        from that workload (default 3; quick 2)
  --out DIR             write DIR/benchmarks.md and DIR/benchmarks-*.svg
  --callgrind           count instructions under valgrind instead of timing
  --rss                 only the resident-memory pass (subjects over the OS, trace workloads;
                        a standard or quick run does it after timing)
  --list                list workloads and subjects";

/// What the command line asked for.
struct Options {
    scale: Scale,
    runs: usize,
    workloads: Vec<String>,
    subjects: Vec<usize>,
    budget: Duration,
    out: Option<PathBuf>,
    callgrind: bool,
    /// Internal: run one subject on one workload once (under valgrind).
    child: bool,
    /// Only the resident-memory pass.
    rss: bool,
    /// Internal: one subject, one workload, one replay, its [`Footprint`].
    rss_child: bool,
}

fn parse(args: &[String]) -> Result<Option<Options>, String> {
    let mut o = Options {
        scale: Scale::Standard,
        runs: 0,
        workloads: Vec::new(),
        subjects: Vec::new(),
        budget: Duration::ZERO,
        out: None,
        callgrind: false,
        child: false,
        rss: false,
        rss_child: false,
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) => (f, Some(v.to_string())),
            None => (arg.as_str(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| it.next().cloned())
                .ok_or(format!("{flag} needs a value"))
        };
        match flag {
            "--quick" => o.scale = Scale::Quick,
            "--callgrind" => o.callgrind = true,
            "--callgrind-child" => o.child = true,
            "--rss" => o.rss = true,
            "--rss-child" => o.rss_child = true,
            "--runs" => {
                o.runs = value()?
                    .parse()
                    .map_err(|_| "--runs needs a number".to_string())?
            }
            "--budget" => {
                let s: f64 = value()?
                    .parse()
                    .map_err(|_| "--budget needs seconds".to_string())?;
                o.budget = Duration::from_secs_f64(s);
            }
            "--out" => o.out = Some(PathBuf::from(value()?)),
            "--workload" => {
                for w in value()?.split(',').filter(|w| !w.is_empty()) {
                    if !workloads::NAMES.contains(&w) {
                        return Err(format!(
                            "no workload {w:?}; workloads: {}",
                            workloads::NAMES.join(", ")
                        ));
                    }
                    o.workloads.push(w.to_string());
                }
            }
            "--subject" => {
                for s in value()?.split(',').filter(|s| !s.is_empty()) {
                    let Some(i) = subjects::index_of(s) else {
                        let names: Vec<_> = SUBJECTS.iter().map(|s| s.name).collect();
                        return Err(format!("no subject {s:?}; subjects: {}", names.join(", ")));
                    };
                    o.subjects.push(i);
                }
            }
            "--list" => {
                println!("workloads:");
                for w in workloads::NAMES {
                    println!("  {w}");
                }
                println!("subjects:");
                for s in SUBJECTS {
                    println!("  {:<24} {}", s.name, s.what);
                }
                return Ok(None);
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(None);
            }
            _ => return Err(format!("unknown argument: {arg}")),
        }
    }
    if o.workloads.is_empty() {
        o.workloads = workloads::NAMES.iter().map(|s| s.to_string()).collect();
    }
    if o.subjects.is_empty() {
        o.subjects = (0..SUBJECTS.len()).collect();
    } else if !o.child && !o.rss_child && !o.subjects.contains(&0) {
        o.subjects.insert(0, 0);
    }
    o.subjects.sort_unstable();
    o.subjects.dedup();
    if o.runs == 0 {
        o.runs = if o.scale == Scale::Quick { 2 } else { 7 };
    }
    if o.budget.is_zero() {
        o.budget = Duration::from_secs(match (o.callgrind, o.scale) {
            (true, _) => 60,
            (false, Scale::Quick) => 2,
            (false, _) => 3,
        });
    }
    if (o.callgrind || o.child) && o.scale == Scale::Standard {
        o.scale = Scale::Callgrind;
    }
    Ok(Some(o))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let o = match parse(&args) {
        Ok(Some(o)) => o,
        Ok(None) => return ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    if o.child {
        return callgrind_child(&o);
    }
    if o.rss_child {
        return rss_child(&o);
    }
    if o.callgrind {
        return callgrind(&o);
    }
    if o.rss {
        let text = report::rss_tables(&rss(&o), o.scale == Scale::Quick);
        println!("{text}");
        if let Some(dir) = &o.out {
            let path = dir.join("benchmarks-rss.md");
            if let Err(e) = std::fs::write(&path, format!("# Resident memory\n\n{text}")) {
                eprintln!("error: could not write {}: {e}", path.display());
                return ExitCode::FAILURE;
            }
            println!("wrote {}", path.display());
        }
        return ExitCode::SUCCESS;
    }
    let started = Instant::now();
    let results = measure(&o);
    let info =
        report::RunInfo::collect(o.runs, o.budget, started.elapsed(), o.scale == Scale::Quick);
    let text = report::tables(&results, &info);
    println!("{text}");
    let rss_text = report::rss_tables(&rss(&o), o.scale == Scale::Quick);
    println!("{rss_text}");
    if let Some(dir) = &o.out {
        match report::write(dir, &results, &info, &rss_text) {
            Ok(files) => {
                for f in files {
                    println!("wrote {}", f.display());
                }
            }
            Err(e) => {
                eprintln!(
                    "error: could not write the report to {}: {e}",
                    dir.display()
                );
                return ExitCode::FAILURE;
            }
        }
    }
    // A subject that cannot finish a workload is a result, not an error;
    // a harness that measured nothing is.
    if results
        .iter()
        .all(|r| r.rows.iter().all(|row| row.values().is_empty()))
    {
        eprintln!("error: no subject completed any workload");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

/// The result of one subject on one workload over all rounds.
pub struct Row {
    /// Index into [`SUBJECTS`].
    pub subject: usize,
    /// Per round: ns/op (timed) or the trials' efficiencies (efficiency);
    /// `None` where the subject did not run.
    pub rounds: Vec<Option<Vec<f64>>>,
    /// Why the subject stopped early, if it did.
    pub stopped: Option<Outcome>,
}

impl Row {
    /// Every value measured, over all rounds.
    pub fn values(&self) -> Vec<f64> {
        self.rounds.iter().flatten().flatten().copied().collect()
    }
}

/// One workload's results.
pub struct Table {
    /// Its name.
    pub name: &'static str,
    /// What it does.
    pub what: String,
    /// Efficiency (fraction) rather than ns/op.
    pub efficiency: bool,
    /// One row per subject that takes part.
    pub rows: Vec<Row>,
}

fn measure(o: &Options) -> Vec<Table> {
    let built: Vec<Workload> = o
        .workloads
        .iter()
        .map(|w| workloads::build(w, o.scale))
        .collect();
    let arena_max = built.iter().map(|w| w.arena).max().unwrap_or(0);
    let mut memory = Memory::new(arena_max);
    let takes_part = |w: &Workload, s: usize| !w.is_efficiency() || SUBJECTS[s].arena;
    let steps: usize = built
        .iter()
        .map(|w| {
            let n = o.subjects.iter().filter(|&&s| takes_part(w, s)).count();
            match w.kind {
                Kind::Efficiency { trials, .. } => n * trials,
                _ => n * o.runs,
            }
        })
        .sum();
    let bar = ProgressBar::new(steps as u64);
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{wide_bar}] {pos}/{len} {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    let mut tables = Vec::new();
    for w in &built {
        let mut rows: Vec<Row> = o
            .subjects
            .iter()
            .filter(|&&s| takes_part(w, s))
            .map(|&s| Row {
                subject: s,
                rounds: Vec::new(),
                stopped: None,
            })
            .collect();
        let threads = w.is_threaded();
        let rounds = match w.kind {
            Kind::Efficiency { trials, .. } => trials,
            _ => o.runs,
        };
        for round in 0..rounds {
            // Rotate, and reverse every other round: each subject runs
            // early and late, before and after each other one.
            let n = rows.len();
            let mut order: Vec<usize> = (0..n).map(|i| (i + round) % n).collect();
            if round % 2 == 1 {
                order.reverse();
            }
            for i in order {
                let row = &mut rows[i];
                bar.set_message(format!("{} / {}", w.name, SUBJECTS[row.subject].name));
                if row.stopped.is_some() {
                    row.rounds.push(None);
                    bar.inc(1);
                    continue;
                }
                let outcome = match &w.kind {
                    Kind::Efficiency {
                        realloc,
                        free_share,
                        sizes,
                        ..
                    } => {
                        let mut t = Trial {
                            seed: 1000 + round as u64,
                            realloc: *realloc,
                            free_share: *free_share,
                            sizes: *sizes,
                            arena_len: w.arena,
                            budget: o.budget,
                            outcome: Outcome::Timeout,
                        };
                        with_subject(row.subject, &mut memory, w.arena, false, &mut t);
                        t.outcome
                    }
                    _ => {
                        let mut run = Run::new(w, o.budget);
                        with_subject(row.subject, &mut memory, w.arena, threads, &mut run);
                        run.outcome
                    }
                };
                match outcome {
                    Outcome::Done(v) => row.rounds.push(Some(v)),
                    stop => {
                        row.rounds.push(None);
                        row.stopped = Some(stop);
                    }
                }
                bar.inc(1);
            }
        }
        tables.push(Table {
            name: w.name,
            what: w.what.clone(),
            efficiency: w.is_efficiency(),
            rows,
        });
    }
    bar.finish_and_clear();
    tables
}

/// The one subject and one workload a child run (`flag`) is for, or the
/// exit code of a command line without them.
fn child_of<'o>(o: &'o Options, flag: &str) -> Result<(usize, &'o String), ExitCode> {
    match (o.subjects.first(), o.workloads.first()) {
        (Some(&s), Some(w)) => Ok((s, w)),
        _ => {
            eprintln!("error: {flag} needs --subject and --workload");
            Err(ExitCode::from(2))
        }
    }
}

/// The exit code of a `--callgrind-child` that ran out of budget.
const TIMED_OUT: u8 = 3;

/// `--callgrind-child`: one subject, one workload, one replay, no timing
/// budget; valgrind counts `measured_replay` only.
fn callgrind_child(o: &Options) -> ExitCode {
    let (s, w) = match child_of(o, "--callgrind-child") {
        Ok(sw) => sw,
        Err(code) => return code,
    };
    let w = workloads::build(w, o.scale);
    let mut memory = Memory::new(w.arena);
    let mut run = Run::new(&w, o.budget);
    with_subject(s, &mut memory, w.arena, false, &mut run);
    match run.outcome {
        Outcome::Done(_) => ExitCode::SUCCESS,
        Outcome::Timeout => ExitCode::from(TIMED_OUT),
        Outcome::OutOfMemory => ExitCode::FAILURE,
    }
}

/// One subject's [`Footprint`] on one workload, or why there is none.
pub struct RssRow {
    /// Index into [`SUBJECTS`].
    pub subject: usize,
    /// What the child measured.
    pub result: Result<Footprint, Outcome>,
}

/// One workload's resident-memory results.
pub struct RssTable {
    /// Its name.
    pub name: &'static str,
    /// What it does.
    pub what: String,
    /// One row per subject over the OS.
    pub rows: Vec<RssRow>,
}

/// The trace workloads among those selected (the ones one thread replays).
fn trace_workloads(o: &Options) -> Vec<&String> {
    o.workloads
        .iter()
        .filter(|w| matches!(workloads::build(w, Scale::Quick).kind, Kind::Trace(_)))
        .collect()
}

/// The exit code of an `--rss-child` whose subject ran out of memory.
const OUT_OF_MEMORY: u8 = 4;

/// `--rss-child`: one subject over the OS, one trace workload, one replay;
/// prints the [`Footprint`] line.
fn rss_child(o: &Options) -> ExitCode {
    let (s, w) = match child_of(o, "--rss-child") {
        Ok(sw) => sw,
        Err(code) => return code,
    };
    let w = workloads::build(w, o.scale);
    // Subjects over the OS use no arena: an empty one keeps the baseline
    // free of it.
    let mut memory = Memory::new(0);
    let mut run = RssRun::new(&w, o.budget);
    with_subject(s, &mut memory, 0, false, &mut run);
    match run.outcome {
        Ok(f) => {
            println!("{}", f.line());
            ExitCode::SUCCESS
        }
        Err(Outcome::Timeout) => ExitCode::from(TIMED_OUT),
        Err(_) => ExitCode::from(OUT_OF_MEMORY),
    }
}

/// The resident-memory pass: each selected subject over the OS on each
/// selected trace workload, once, in a fresh child process.
fn rss(o: &Options) -> Vec<RssTable> {
    let exe = std::env::current_exe().expect("own path");
    let subjects: Vec<usize> = o
        .subjects
        .iter()
        .copied()
        .filter(|&s| !SUBJECTS[s].arena)
        .collect();
    let names = trace_workloads(o);
    let bar = ProgressBar::new((names.len() * subjects.len()) as u64);
    // One replay, no rounds: a budget for a slow subject, not a race.
    let budget = o.budget.max(Duration::from_secs(30));
    let mut tables = Vec::new();
    for w in names {
        let built = workloads::build(w, o.scale);
        let mut rows = Vec::new();
        for &s in &subjects {
            bar.set_message(format!("rss {w} / {}", SUBJECTS[s].name));
            let mut cmd = Command::new(&exe);
            cmd.args(["--rss-child", "--workload", w])
                .args(["--subject", SUBJECTS[s].name])
                .arg(format!("--budget={}", budget.as_secs_f64()));
            if o.scale == Scale::Quick {
                cmd.arg("--quick");
            }
            let result = match cmd.output() {
                Ok(r) if r.status.success() => {
                    Footprint::parse(&String::from_utf8_lossy(&r.stdout))
                        .ok_or(Outcome::OutOfMemory)
                }
                Ok(r) if r.status.code() == Some(TIMED_OUT.into()) => Err(Outcome::Timeout),
                _ => Err(Outcome::OutOfMemory),
            };
            rows.push(RssRow { subject: s, result });
            bar.inc(1);
        }
        tables.push(RssTable {
            name: built.name,
            what: built.what.clone(),
            rows,
        });
    }
    bar.finish_and_clear();
    tables
}

/// `--callgrind`: each subject of each single-threaded trace workload once
/// under callgrind; instructions per op and the ratio to glibc.
fn callgrind(o: &Options) -> ExitCode {
    if Command::new("valgrind").arg("--version").output().is_err() {
        eprintln!("error: --callgrind needs valgrind on PATH");
        return ExitCode::FAILURE;
    }
    let exe = std::env::current_exe().expect("own path");
    let dir = std::env::temp_dir().join(format!("freespace-callgrind-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let trace_workloads = trace_workloads(o);
    let bar = ProgressBar::new((trace_workloads.len() * o.subjects.len()) as u64);
    let mut tables = Vec::new();
    for w in trace_workloads {
        let built = workloads::build(w, o.scale);
        let mut rows = Vec::new();
        for &s in &o.subjects {
            bar.set_message(format!("{w} / {}", SUBJECTS[s].name));
            let out = dir.join(format!("{w}-{}.out", SUBJECTS[s].name));
            let mut cmd = Command::new("valgrind");
            cmd.arg("--tool=callgrind")
                .arg(format!("--callgrind-out-file={}", out.display()))
                .arg("--toggle-collect=*measured_replay*")
                .arg(&exe)
                .args(["--callgrind-child", "--workload", w])
                .args(["--subject", SUBJECTS[s].name])
                .arg(format!("--budget={}", o.budget.as_secs_f64()));
            if o.scale == Scale::Quick {
                cmd.arg("--quick");
            }
            let (ir, stopped) = match cmd.output() {
                Ok(r) if r.status.success() => match report::callgrind_total(&out) {
                    Some(ir) => (Some(ir), None),
                    None => (None, Some(Outcome::OutOfMemory)),
                },
                Ok(r) if r.status.code() == Some(TIMED_OUT.into()) => {
                    (None, Some(Outcome::Timeout))
                }
                _ => (None, Some(Outcome::OutOfMemory)),
            };
            rows.push(Row {
                subject: s,
                rounds: vec![ir.map(|ir| vec![ir as f64 / built.ops() as f64])],
                stopped,
            });
            bar.inc(1);
        }
        tables.push(Table {
            name: built.name,
            what: built.what.clone(),
            efficiency: false,
            rows,
        });
    }
    bar.finish_and_clear();
    let _ = std::fs::remove_dir_all(&dir);
    let text = report::callgrind_tables(&tables);
    println!("{text}");
    if let Some(out) = &o.out {
        let path = out.join("benchmarks-callgrind.md");
        if let Err(e) = std::fs::write(&path, &text) {
            eprintln!("error: could not write {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
        println!("wrote {}", path.display());
    }
    ExitCode::SUCCESS
}
