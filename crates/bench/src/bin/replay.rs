//! `replay`: replays recorded traces (`FREESPACE_TRACE`) against every
//! subject of freespace-bench and prints, per trace, Johnstone–Wilson
//! style figures (`cargo xtask replay TRACE..` runs it in release).
//!
//! ```text
//! replay [--subject S[,S..]] [--arena-mib N] [--budget SECONDS]
//!        [--skip-unknown] [--out DIR] TRACE..
//! ```
//!
//! With `--out DIR` it also writes, per trace, `DIR/fragmentation-NAME.svg`
//! (footprint over time, one line per subject) and
//! `DIR/fragmentation-NAME-FIT.svg` (heap maps at the peak of live bytes,
//! for the four fits), and `DIR/fragmentation.md`: the tables, the
//! pictures, and the comparison with Johnstone and Wilson (1998), every
//! figure in it computed here.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use freespace_bench::replay::{self, Figures, Prepared, Settings};
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
  --out DIR           also write DIR/fragmentation.md and the pictures beside it
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
    out: Option<PathBuf>,
    traces: Vec<String>,
}

fn parse(args: &[String]) -> Result<Option<Options>, String> {
    let mut o = Options {
        subjects: Vec::new(),
        arena_mib: None,
        budget: Duration::from_secs(60),
        skip_unknown: false,
        out: None,
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
            "--out" => o.out = Some(PathBuf::from(value()?)),
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
    let mut done = Vec::new();
    for path in &o.traces {
        match one(path, &o) {
            Ok(t) => done.push(t),
            Err(e) => {
                eprintln!("error: {path}: {e}");
                failed = true;
            }
        }
    }
    if let Some(dir) = &o.out {
        if let Err(e) = write_doc(dir, &done, &o) {
            eprintln!("error: {}: {e}", dir.display());
            failed = true;
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// The four fits: their heap maps at the peak go in the pictures.
const FITS: [&str; 4] = ["first-fit", "next-fit", "best-fit", "worst-fit"];

/// The arena for a trace whose live bytes peak at `peak_live`.
fn arena_len(peak_live: usize, o: &Options) -> usize {
    match o.arena_mib {
        Some(mib) => mib << 20,
        None => (peak_live.saturating_mul(8))
            .next_power_of_two()
            .max(64 << 20),
    }
}

/// How subject `i` is measured: a footprint curve, and a map for a fit
/// when pictures are written.
fn settings(i: usize, o: &Options) -> Settings {
    Settings {
        samples: 400,
        budget: o.budget,
        map: o.out.is_some() && FITS.contains(&SUBJECTS[i].name),
    }
}

/// One replayed trace.
struct Done {
    name: String,
    summary: String,
    p: Prepared,
    rows: Vec<(usize, Figures, Option<f64>)>,
}

fn one(path: &str, o: &Options) -> Result<Done, String> {
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    let p = replay::read_with(&bytes, o.skip_unknown).map_err(|e| e.to_string())?;
    let arena = arena_len(p.peak_live, o);
    let name = Path::new(path)
        .file_stem()
        .map_or(path.to_string(), |n| n.to_string_lossy().into_owned());
    let summary = format!(
        "{} calls, {} ops replayed ({} frees added for blocks never freed, \
         {} calls on blocks from before tracing skipped), at most {} live blocks; \
         live bytes peak at {} after op {}; arena {} MiB",
        p.records,
        p.ops.len(),
        p.appended_frees,
        p.skipped_unknown,
        p.slots,
        p.peak_live,
        p.peak_at,
        arena >> 20
    );
    println!("## {name}\n\n{summary}\n");
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
            replay::measure_subject(i, &mut memory, arena, &p, &settings(i, o), &mut |n| {
                bar.inc(n as u64)
            });
        let ns = replay::time_subject(i, &mut memory, arena, &p, o.budget);
        bar.inc(p.ops.len() as u64);
        rows.push((i, figures, ns));
    }
    bar.finish_and_clear();
    println!("{}", table(&p, &rows));
    Ok(Done {
        name,
        summary,
        p,
        rows,
    })
}

/// The plain table: one row per subject.
fn table(p: &Prepared, rows: &[(usize, Figures, Option<f64>)]) -> String {
    let mut out = String::from(
        "| subject | footprint ÷ peak live | granted ÷ requested | external frag. at peak | ns/op | failures |\n\
         |---|---:|---:|---:|---:|---:|\n",
    );
    for (i, f, ns) in rows {
        // A replay that ran out of time covers only part of the trace.
        let whole = |x: Option<f64>| if f.stopped_at.is_some() { None } else { x };
        out += &format!(
            "| {} | {} | {} | {} | {} | {} |\n",
            SUBJECTS[*i].name,
            ratio(whole(f.footprint_ratio(p.peak_live))),
            ratio(whole(f.internal())),
            ratio(whole(f.external_at_peak)),
            ns.map_or("—".to_string(), |ns| format!("{ns:.0}")),
            match f.stopped_at {
                Some(at) => format!("{} (out of time after {at} ops)", f.failures),
                None => f.failures.to_string(),
            }
        );
    }
    out
}

fn ratio(x: Option<f64>) -> String {
    x.map_or("—".to_string(), |x| format!("{x:.3}"))
}

/// Writes `dir/fragmentation.md` and its pictures.
fn write_doc(dir: &Path, done: &[Done], o: &Options) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut doc = String::new();
    let _ = writeln!(
        doc,
        "# Fragmentation on real programs\n\n\
         <!-- Generated by crates/bench/fragmentation.sh (cargo xtask replay --out docs ...): \
         do not edit by hand. -->\n\n\
         Each program below ran under `freespace-malloc` with `FREESPACE_TRACE` set \
         (`cargo xtask trace`); each trace was then replayed, in call order and on one \
         thread, against every subject (`cargo xtask replay`). Arena subjects run in one \
         arena aligned to its length; the footprint is how far into it any block reached \
         from the end the subject grows from, so footprint ÷ peak live bytes is Johnstone \
         and Wilson's fragmentation measure (1.000 = none; headers and rounding count \
         against the allocator). Granted ÷ requested covers the blocks live at the peak \
         of live bytes; external fragmentation (1 − largest free ÷ total free, below the \
         footprint) is taken at that moment. — : the subject cannot say (glibc, mimalloc \
         and jemalloc take memory from the OS; the other anchors report no granted length \
         and cannot walk their blocks).\n"
    );
    for t in done {
        let _ = writeln!(
            doc,
            "## {}\n\n{}.\n\n{}",
            t.name,
            t.summary,
            table(&t.p, &t.rows)
        );
        let curves: Vec<(&str, &[(usize, usize)])> = t
            .rows
            .iter()
            .filter(|(_, f, _)| !f.curve.is_empty())
            .map(|(i, f, _)| (SUBJECTS[*i].name, f.curve.as_slice()))
            .collect();
        let file = format!("fragmentation-{}.svg", t.name);
        std::fs::write(
            dir.join(&file),
            replay::footprint_svg(&t.name, t.p.peak_live, &curves),
        )?;
        let _ = writeln!(doc, "![footprint over time, {}]({file})\n", t.name);
        for (i, f, _) in &t.rows {
            if let Some(map) = &f.peak_map {
                let file = format!("fragmentation-{}-{}.svg", t.name, SUBJECTS[*i].name);
                std::fs::write(dir.join(&file), map)?;
                let _ = write!(doc, "![{} at the peak]({file}) ", SUBJECTS[*i].name);
            }
        }
        doc.push_str("\n\n");
    }
    doc.push_str(&comparison(done));
    let _ = writeln!(
        doc,
        "\nGenerated with `--budget {}`{}.",
        o.budget.as_secs(),
        if o.skip_unknown {
            " `--skip-unknown`"
        } else {
            ""
        }
    );
    std::fs::write(dir.join("fragmentation.md"), doc)
}

/// Footprint ÷ peak live of subject `name` on each trace (where it ran to
/// the end).
fn ratios(done: &[Done], name: &str) -> Vec<(String, f64)> {
    done.iter()
        .filter_map(|t| {
            let (_, f, _) = t.rows.iter().find(|(i, _, _)| SUBJECTS[*i].name == name)?;
            if f.stopped_at.is_some() {
                return None;
            }
            Some((t.name.clone(), f.footprint_ratio(t.p.peak_live)?))
        })
        .collect()
}

/// Johnstone and Wilson's conclusions, each with what these traces say.
fn comparison(done: &[Done]) -> String {
    let mut out = String::from("## Compared with Johnstone and Wilson (1998)\n\n");
    let list = |name: &str| {
        let r = ratios(done, name);
        if r.is_empty() {
            return "no figure".to_string();
        }
        r.iter()
            .map(|(t, x)| format!("{t} {x:.3}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    // Per trace, is `a` at most `b`?
    let at_most = |a: &str, b: &str| {
        let (ra, rb) = (ratios(done, a), ratios(done, b));
        let pairs: Vec<bool> = ra
            .iter()
            .filter_map(|(t, x)| rb.iter().find(|(u, _)| u == t).map(|(_, y)| x <= y))
            .collect();
        (pairs.iter().filter(|&&x| x).count(), pairs.len())
    };
    let best_of = |name: &str| {
        done.iter()
            .filter(|t| {
                let r: Vec<(usize, f64)> = t
                    .rows
                    .iter()
                    .filter(|(_, f, _)| f.stopped_at.is_none())
                    .filter_map(|(i, f, _)| Some((*i, f.footprint_ratio(t.p.peak_live)?)))
                    .collect();
                let min = r.iter().map(|x| x.1).fold(f64::INFINITY, f64::min);
                r.iter()
                    .any(|&(i, x)| SUBJECTS[i].name == name && x <= min * 1.01)
            })
            .count()
    };
    let claims: [(&str, String); 4] = [
        (
            "Best fit and address-ordered first fit fragment almost not at all: their \
             footprint is close to the live bytes.",
            {
                let (n, of) = at_most("best-fit", "worst-fit");
                format!(
                    "best-fit: {}; first-fit: {}. Best fit is within 1% of the smallest \
                     footprint of all subjects on {} of {} traces, first fit on {}; best fit \
                     is at most worst fit on {n} of {of}. The ratios include the 16-byte \
                     header and 16-byte rounding of every block, which J&W's 'actual \
                     fragmentation' measure leaves out.",
                    list("best-fit"),
                    list("first-fit"),
                    best_of("best-fit"),
                    done.len(),
                    best_of("first-fit")
                )
            },
        ),
        (
            "Next fit (the roving pointer) fragments more than address-ordered first fit.",
            {
                let (n, of) = at_most("first-fit", "next-fit");
                format!(
                    "next-fit: {}. First fit's footprint is at most next fit's on {n} of \
                     {of} traces.",
                    list("next-fit")
                )
            },
        ),
        (
            "Policies that split and coalesce (the fits) beat the binary buddy, whose \
             power-of-two rounding wastes memory.",
            {
                let (n, of) = at_most("best-fit", "buddy");
                format!(
                    "buddy: {}; buddy_system_allocator: {}. Best fit's footprint is at \
                     most the buddy's on {n} of {of} traces.",
                    list("buddy"),
                    list("buddy_system_allocator")
                )
            },
        ),
        (
            "Segregated storage with size classes and no coalescing across classes \
             trades memory for speed.",
            {
                let (n, of) = at_most("best-fit", "general");
                let (m, of2) = at_most("best-fit", "segregated-best-fit");
                format!(
                    "general (slab size classes over a buddy): {}; segregated-best-fit: {}. \
                     Best fit is at most general on {n} of {of} traces and at most \
                     segregated-best-fit on {m} of {of2}.",
                    list("general"),
                    list("segregated-best-fit")
                )
            },
        ),
    ];
    for (claim, here) in claims {
        let _ = writeln!(out, "- **J&W:** {claim}\n  **Here:** {here}\n");
    }
    out
}
