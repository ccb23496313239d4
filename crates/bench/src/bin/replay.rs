//! `replay`: replays recorded traces (`FREESPACE_TRACE`) against every
//! subject of freespace-bench and prints, per trace, Johnstone–Wilson
//! style figures (`cargo xtask replay TRACE..` runs it in release).
//!
//! ```text
//! replay [--subject S[,S..]] [--arena-mib N] [--budget SECONDS] TRACE..
//! ```

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use freespace_bench::replay::{self, Figures, Prepared};
use freespace_bench::subjects::{index_of, Memory, SUBJECTS};

const USAGE: &str = "\
usage: replay [options] TRACE..

  --subject S[,S..]   only these subjects (default: all)
  --arena-mib N       the arena every arena subject runs in (default: 8 x the
                      trace's peak live bytes, a power of two, at least 64 MiB)
  --budget SECONDS    CPU time each of the two replays of one subject (measured,
                      timed) may take before it stops (default 60)
  --skip-unknown      skip frees of blocks the trace never allocated (and replay
                      reallocs of them as allocations): blocks from before
                      tracing began; without it they are an error
  --list              list the subjects

For each trace: peak footprint / peak live bytes (arena subjects: the highest
byte any block reached), granted / requested bytes at the peak of live bytes,
external fragmentation at that peak (1 - largest free / total free, below the
footprint; subjects that can walk their blocks), CPU time per op, failures.";

struct Options {
    subjects: Vec<usize>,
    arena_mib: Option<usize>,
    budget: Duration,
    skip_unknown: bool,
    traces: Vec<String>,
}

fn parse(args: &[String]) -> Result<Option<Options>, String> {
    let mut o = Options {
        subjects: Vec::new(),
        arena_mib: None,
        budget: Duration::from_secs(60),
        skip_unknown: false,
        traces: Vec::new(),
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (arg.as_str(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| it.next().cloned())
                .ok_or(format!("{flag} needs a value"))
        };
        match flag {
            "--subject" => {
                for s in value()?.split(',').filter(|s| !s.is_empty()) {
                    let i = index_of(s).ok_or_else(|| {
                        let names: Vec<_> = SUBJECTS.iter().map(|s| s.name).collect();
                        format!("no subject {s:?}; subjects: {}", names.join(", "))
                    })?;
                    o.subjects.push(i);
                }
            }
            "--arena-mib" => {
                o.arena_mib = Some(
                    value()?
                        .parse()
                        .map_err(|_| "--arena-mib needs a number".to_string())?,
                )
            }
            "--budget" => {
                let s: f64 = value()?
                    .parse()
                    .map_err(|_| "--budget needs seconds".to_string())?;
                o.budget = Duration::from_secs_f64(s);
            }
            "--skip-unknown" => o.skip_unknown = true,
            "--list" => {
                for s in SUBJECTS {
                    println!("  {:<24} {}", s.name, s.what);
                }
                return Ok(None);
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(None);
            }
            f if f.starts_with('-') => return Err(format!("unknown option: {f}")),
            path => o.traces.push(path.to_string()),
        }
    }
    if o.traces.is_empty() {
        return Err("no trace given".into());
    }
    if o.subjects.is_empty() {
        o.subjects = (0..SUBJECTS.len()).collect();
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
    let mut failed = false;
    for path in &o.traces {
        if let Err(e) = one(path, &o) {
            eprintln!("error: {path}: {e}");
            failed = true;
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// The arena for a trace whose live bytes peak at `peak_live`.
fn arena_len(peak_live: usize, o: &Options) -> usize {
    match o.arena_mib {
        Some(mib) => mib << 20,
        None => (peak_live.saturating_mul(8))
            .next_power_of_two()
            .max(64 << 20),
    }
}

fn one(path: &str, o: &Options) -> Result<(), String> {
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    let p = replay::read_with(&bytes, o.skip_unknown).map_err(|e| e.to_string())?;
    let arena = arena_len(p.peak_live, o);
    let name = Path::new(path)
        .file_name()
        .map_or(path.to_string(), |n| n.to_string_lossy().into_owned());
    println!(
        "## {name}\n\n{} calls, {} ops replayed ({} frees added for blocks never freed, \
         {} calls on blocks from before tracing skipped), at most {} live blocks; \
         live bytes peak at {} after op {}; arena {} MiB\n",
        p.records,
        p.ops.len(),
        p.appended_frees,
        p.skipped_unknown,
        p.slots,
        p.peak_live,
        p.peak_at,
        arena >> 20
    );
    let mut memory = Memory::aligned(arena, arena.next_power_of_two());
    let bar = ProgressBar::new((o.subjects.len() * p.ops.len() * 2) as u64);
    bar.set_style(
        ProgressStyle::with_template("{msg:>24} [{bar:40}] {pos}/{len} ops, {eta} left")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let mut rows = Vec::new();
    for &i in &o.subjects {
        bar.set_message(SUBJECTS[i].name);
        let figures =
            replay::measure_subject(i, &mut memory, arena, &p, 1000, o.budget, &mut |n| {
                bar.inc(n as u64)
            });
        let ns = replay::time_subject(i, &mut memory, arena, &p, o.budget);
        bar.inc(p.ops.len() as u64);
        rows.push((i, figures, ns));
    }
    bar.finish_and_clear();
    println!("{}", table(&p, &rows));
    Ok(())
}

/// The plain table: one row per subject.
fn table(p: &Prepared, rows: &[(usize, Figures, Option<f64>)]) -> String {
    let mut out = String::from(
        "| subject | footprint ÷ peak live | granted ÷ requested | external frag. at peak | ns/op | failures |\n\
         |---|---:|---:|---:|---:|---:|\n",
    );
    let ratio = |x: Option<f64>| x.map_or("—".to_string(), |x| format!("{x:.3}"));
    for (i, f, ns) in rows {
        out += &format!(
            "| {} | {} | {} | {} | {} | {} |\n",
            SUBJECTS[*i].name,
            ratio(f.footprint_ratio(p.peak_live)),
            ratio(f.internal()),
            ratio(f.external_at_peak),
            ns.map_or("—".to_string(), |ns| format!("{ns:.0}")),
            match f.stopped_at {
                Some(at) => format!("{} (out of time after {at} ops)", f.failures),
                None => f.failures.to_string(),
            }
        );
    }
    out
}
