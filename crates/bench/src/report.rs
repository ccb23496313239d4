//! Tables and plots: markdown for the terminal and `docs/benchmarks.md`,
//! hand-written SVG (bars with min–max whiskers) beside it.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::subjects::{Group, SUBJECTS};
use crate::workloads::Outcome;
use crate::{Row, RssTable, Table};

/// Where and when the numbers were taken.
pub struct RunInfo {
    date: String,
    cpus: usize,
    cpu_model: String,
    load: String,
    commit: String,
    runs: usize,
    budget: Duration,
    elapsed: Duration,
    quick: bool,
}

impl RunInfo {
    /// Reads the clock, `/proc/cpuinfo`, `/proc/loadavg` and the git commit.
    pub fn collect(runs: usize, budget: Duration, elapsed: Duration, quick: bool) -> Self {
        let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, m)| m.trim().to_string())
            })
            .unwrap_or_else(|| "unknown".into());
        let load = std::fs::read_to_string("/proc/loadavg")
            .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
            .unwrap_or_else(|_| "unknown".into());
        let commit = std::process::Command::new("git")
            .args(["rev-parse", "--short", "HEAD"])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_else(|| "unknown".into());
        RunInfo {
            date: utc_now(),
            cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
            cpu_model,
            load,
            commit,
            runs,
            budget,
            elapsed,
            quick,
        }
    }
}

/// `2025-01-31 14:05 UTC`.
fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    // Civil-from-days (Howard Hinnant's algorithm).
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
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
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60
    )
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Median, min and max of a row's values (None if it has none).
struct Summary {
    median: f64,
    min: f64,
    max: f64,
}

fn summary(mut v: Vec<f64>) -> Option<Summary> {
    if v.is_empty() {
        return None;
    }
    let median = median(&mut v);
    Some(Summary {
        median,
        min: v[0],
        max: v[v.len() - 1],
    })
}

/// Per round, this row's value ÷ the `base` row's value (glibc's, talc's,
/// rlsf's) in the same round.
fn ratios(row: &Row, base: Option<&Row>) -> Vec<f64> {
    let Some(g) = base else { return Vec::new() };
    row.rounds
        .iter()
        .zip(&g.rounds)
        .filter_map(|(a, b)| match (a, b) {
            (Some(a), Some(b)) if b[0] > 0.0 => Some(a[0] / b[0]),
            _ => None,
        })
        .collect()
}

fn why(stopped: &Option<Outcome>, budget_note: &str) -> String {
    match stopped {
        Some(Outcome::Timeout) => format!("timed out ({budget_note})"),
        Some(Outcome::OutOfMemory) => "out of memory".into(),
        _ => "—".into(),
    }
}

fn fmt_ns(x: f64) -> String {
    if x >= 100.0 {
        format!("{x:.0}")
    } else if x >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

fn fmt_ratio(x: f64) -> String {
    if x >= 10.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.2}")
    }
}

/// One timed table in markdown.
fn timed_table(t: &Table, info: &RunInfo, out: &mut String) {
    let find = |name: &str| t.rows.iter().find(|r| SUBJECTS[r.subject].name == name);
    let (glibc, talc, rlsf) = (find("glibc"), find("talc"), find("rlsf"));
    // The median of the same-round ratios to another subject, or a dash.
    let median_ratio = |row: &Row, base: Option<&Row>| {
        summary(ratios(row, base)).map_or("—".to_string(), |r| fmt_ratio(r.median))
    };
    let _ = writeln!(
        out,
        "| subject | ns/op (median) | min–max | time ÷ glibc (median) | min–max | ÷ talc | ÷ rlsf |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|");
    for row in &t.rows {
        let name = SUBJECTS[row.subject].name;
        let note = why(
            &row.stopped,
            &format!("one run > {} s CPU", info.budget.as_secs_f64()),
        );
        match (summary(row.values()), &row.stopped) {
            (Some(s), None) => {
                let r = summary(ratios(row, glibc));
                let (rm, rr) = r.map_or(("—".into(), "—".into()), |r| {
                    (
                        format!("**{}**", fmt_ratio(r.median)),
                        format!("{}–{}", fmt_ratio(r.min), fmt_ratio(r.max)),
                    )
                });
                let _ = writeln!(
                    out,
                    "| {name} | {} | {}–{} | {rm} | {rr} | {} | {} |",
                    fmt_ns(s.median),
                    fmt_ns(s.min),
                    fmt_ns(s.max),
                    median_ratio(row, talc),
                    median_ratio(row, rlsf)
                );
            }
            _ => {
                let _ = writeln!(out, "| {name} | {note} | | | | | |");
            }
        }
    }
}

/// One efficiency table in markdown.
fn efficiency_table(t: &Table, info: &RunInfo, out: &mut String) {
    let _ = writeln!(out, "| subject | live ÷ arena (median) | min–max | mean |");
    let _ = writeln!(out, "|---|---:|---:|---:|");
    for row in &t.rows {
        let name = SUBJECTS[row.subject].name;
        let values = row.values();
        let mean = values.iter().sum::<f64>() / values.len().max(1) as f64;
        match (summary(values), &row.stopped) {
            (Some(s), None) => {
                let _ = writeln!(
                    out,
                    "| {name} | **{:.1} %** | {:.1}–{:.1} % | {:.1} % |",
                    s.median * 100.0,
                    s.min * 100.0,
                    s.max * 100.0,
                    mean * 100.0
                );
            }
            _ => {
                let note = why(
                    &row.stopped,
                    &format!("one trial > {} s CPU", info.budget.as_secs_f64()),
                );
                let _ = writeln!(out, "| {name} | {note} | | |");
            }
        }
    }
}

/// The tables, as printed and as in the doc (without the intro).
pub fn tables(results: &[Table], info: &RunInfo) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Run of {}: {} CPUs ({}), load average at the end {}, commit {}, {} rounds, {:.0} s in all{}.\n",
        info.date,
        info.cpus,
        info.cpu_model,
        info.load,
        info.commit,
        info.runs,
        info.elapsed.as_secs_f64(),
        if info.quick { ", QUICK (tiny) run" } else { "" }
    );
    out.push_str(
        "Other processes (builds, tests, fuzzing) may have been running on this shared \
         machine during the run; the load average hints how busy it was, and the \
         interleaved rounds and same-round ratios are there to cancel most of it.\n\n",
    );
    for t in results {
        let _ = writeln!(out, "### {}\n\n{}.\n", t.name, t.what);
        if t.efficiency {
            efficiency_table(t, info, &mut out);
        } else {
            timed_table(t, info, &mut out);
        }
        out.push('\n');
    }
    out
}

const INTRO: &str = "\
# Benchmarks

*Generated by `cargo xtask bench` (the `freespace-bench` crate); do not edit
the numbers by hand — rerun it.*

Every freespace block and stack side by side with the allocators people use
today, in one process, on the same deterministic op traces.

## Method

- **Same work for everyone.** Each workload's op trace (sizes, which block
  is freed or resized when) is generated once from a fixed seed and
  replayed by every subject; one byte is written into each new block.
- **Interleaved rounds.** Within a round every subject runs once, in an
  order that rotates (and reverses) from round to round, so a noisy
  neighbour on this shared machine slows all subjects alike. Cells are the
  median over rounds with min–max.
- **Ratios, not absolute times.** `time ÷ glibc` is computed within each
  round (subject's time ÷ glibc's time in that same round), then its
  median and min–max are taken: below 1 is faster than glibc.
- **What is timed.** Single-threaded workloads: this thread's CPU time
  (`CLOCK_THREAD_CPUTIME_ID`), so time spent descheduled does not count.
  `prodcons` and `two-threads`: wall time of the two threads (per op of
  one thread in `two-threads`, so the pair's throughput is twice the ops
  over it). One small allocate/free before
  the clock starts lets lazy setup (a heap's first region, a thread cache)
  happen outside the measurement.
- **Memory.** glibc, mimalloc and jemalloc get their memory from the
  kernel as usual. Every other subject (the freespace blocks and stacks,
  dlmalloc, talc, rlsf, linked_list_allocator, buddy_system_allocator)
  runs in the *same* page-aligned, pre-touched arena of the workload's
  size, freshly set up for each run; in `prodcons` and `two-threads` those that are not
  `Sync` sit behind `freespace_sync::Locked` (one lock for all: `DefaultLock`, a futex lock on Linux).
- **Budget.** A subject whose run takes longer than the budget (CPU time)
  is dropped from that workload and shown as *timed out*: the plain list
  scans of the fit policies are O(free chunks) per request by design.
- **Heap efficiency** (talc's method): in a fixed arena, allocate, free
  (and resize) random sizes until the first request fails; the figure is
  the requested bytes live at that moment ÷ the arena's bytes, one trial
  per seed. Only arena subjects take part (the system allocators cannot be
  confined to an arena).
- **Resident memory.** For the subjects that get their memory from the
  kernel (glibc, mimalloc, jemalloc, `general-mmap`), each trace workload
  is replayed once more per subject in a fresh child process, which reads
  `/proc/self/status`: `VmRSS` before the replay (with the high-water mark
  reset through `/proc/self/clear_refs`), `VmHWM` after it, and `VmRSS`
  again after freeing every live block and asking the allocator to give
  back what it holds free (the trim named in each row). The arena subjects
  run in memory the harness touched beforehand, so resident memory says
  nothing about them: their measure is heap efficiency.
- **Instruction counts.** `cargo xtask bench --callgrind` runs each
  subject once per single-threaded workload under
  `valgrind --tool=callgrind`, counting only the replay, and writes
  `benchmarks-callgrind.md`: repeatable where timings are not.
- **Latency.** `cargo bench -p freespace-bench` runs criterion
  microbenchmarks of one allocate+free per block at a few sizes.

Benchmarks are never timed tests: CI only checks that this harness builds
and that a tiny run (`--quick`) completes.
";

/// The subject list for the doc.
fn subject_list(out: &mut String) {
    let _ = writeln!(
        out,
        "## Subjects\n\n| subject | family | what |\n|---|---|---|"
    );
    for s in SUBJECTS {
        let family = match s.group {
            Group::Anchor => "anchor",
            Group::Block => "freespace block",
            Group::Stack => "freespace stack",
        };
        let _ = writeln!(out, "| {} | {family} | {} |", s.name, s.what);
    }
    out.push_str(
        "\nThe stacks are the facade's named stacks (`freespace::stacks`) put over \
         the shared `Arena`, so they compete on equal memory with the other arena \
         subjects; `general-mmap` is `stacks::general()` exactly as shipped, over \
         `Mmap` (not an arena subject, so not in the efficiency tables). `Sbrk` \
         stacks are not measured (the program break is glibc's too).\n\n",
    );
    out.push_str(
        "## Left out\n\n\
         - Every anchor the issue names builds here and is measured; none is left out.\n\
         - glibc, mimalloc and jemalloc cannot be confined to a fixed arena, so they \
         have no efficiency figure.\n\
         - linked_list_allocator and buddy_system_allocator have no realloc of their \
         own: the harness moves the block (allocate, copy, free).\n\
         - Multi-threaded scaling beyond two threads, and the `freespace-malloc` shim \
         under real programs, are not part of this set.\n\n",
    );
}

/// Writes `dir/benchmarks.md` (the timing and efficiency tables, then
/// `rss`, the resident-memory section from [`rss_tables`]) and one SVG per
/// workload; returns the paths.
pub fn write(
    dir: &Path,
    results: &[Table],
    info: &RunInfo,
    rss: &str,
) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut written = Vec::new();
    let mut doc = String::from(INTRO);
    doc.push('\n');
    subject_list(&mut doc);
    doc.push_str("## Results\n\n");
    let body = tables(results, info);
    // Put each workload's plot under its heading's table.
    for section in body.split("### ") {
        if section.is_empty() {
            continue;
        }
        if !section.starts_with(|c: char| c.is_ascii_lowercase()) {
            doc.push_str(section);
            continue;
        }
        let name = section.split_whitespace().next().unwrap_or("");
        doc.push_str("### ");
        doc.push_str(section.trim_end());
        let _ = write!(doc, "\n\n![{name}](benchmarks-{name}.svg)\n\n");
    }
    let _ = write!(doc, "## Resident memory\n\n{}\n", rss.trim_end());
    for t in results {
        let svg = if t.efficiency {
            efficiency_svg(t)
        } else {
            timed_svg(t)
        };
        let path = dir.join(format!("benchmarks-{}.svg", t.name));
        std::fs::write(&path, svg)?;
        written.push(path);
    }
    let path = dir.join("benchmarks.md");
    std::fs::write(&path, doc)?;
    written.insert(0, path);
    Ok(written)
}

// ---------------------------------------------------------------- SVG --

const LABEL_W: f64 = 190.0;
const PLOT_W: f64 = 480.0;
const ROW_H: f64 = 20.0;
const TOP: f64 = 36.0;

fn color(group: Group) -> &'static str {
    match group {
        Group::Anchor => "#8c8c8c",
        Group::Block => "#3b75af",
        Group::Stack => "#3a923a",
    }
}

fn svg_open(out: &mut String, rows: usize, title: &str) -> f64 {
    let h = TOP + rows as f64 * ROW_H + 40.0;
    let w = LABEL_W + PLOT_W + 30.0;
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(out, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    let _ = writeln!(
        out,
        r#"<text x="{}" y="16" font-size="13" text-anchor="middle">{}</text>"#,
        w / 2.0,
        xml(title)
    );
    h
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A row: label, a bar from `x0` to `x1`, a whisker from `lo` to `hi`.
fn svg_bar(
    out: &mut String,
    i: usize,
    label: &str,
    group: Group,
    bar: (f64, f64),
    whisker: (f64, f64),
) {
    let y = TOP + i as f64 * ROW_H;
    let _ = writeln!(
        out,
        r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#,
        LABEL_W - 6.0,
        y + ROW_H * 0.65,
        xml(label)
    );
    let (a, b) = (bar.0.min(bar.1), bar.0.max(bar.1));
    let _ = writeln!(
        out,
        r#"<rect x="{a:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{}"/>"#,
        y + 3.0,
        (b - a).max(1.0),
        ROW_H - 6.0,
        color(group)
    );
    let ym = y + ROW_H / 2.0;
    let _ = writeln!(
        out,
        r#"<path d="M{:.1} {ym:.1}H{:.1}M{:.1} {:.1}V{:.1}M{:.1} {:.1}V{:.1}" stroke="black" fill="none"/>"#,
        whisker.0,
        whisker.1,
        whisker.0,
        ym - 4.0,
        ym + 4.0,
        whisker.1,
        ym - 4.0,
        ym + 4.0
    );
}

fn svg_note(out: &mut String, i: usize, label: &str, note: &str) {
    let y = TOP + i as f64 * ROW_H + ROW_H * 0.65;
    let _ = writeln!(
        out,
        r##"<text x="{}" y="{y}" text-anchor="end">{}</text><text x="{}" y="{y}" fill="#a33">{}</text>"##,
        LABEL_W - 6.0,
        xml(label),
        LABEL_W + 4.0,
        xml(note)
    );
}

fn svg_axis(out: &mut String, rows: usize, ticks: &[(f64, String)], caption: &str, h: f64) {
    let bottom = TOP + rows as f64 * ROW_H;
    for (x, label) in ticks {
        let _ = writeln!(
            out,
            r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{bottom}" stroke="#ddd"/><text x="{x:.1}" y="{}" text-anchor="middle">{label}</text>"##,
            bottom + 14.0
        );
    }
    let _ = writeln!(
        out,
        r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
        LABEL_W + PLOT_W / 2.0,
        h - 8.0,
        xml(caption)
    );
}

/// Ratio to glibc on a log axis, bars from 1; whiskers min–max.
fn timed_svg(t: &Table) -> String {
    let glibc = t.rows.iter().find(|r| SUBJECTS[r.subject].name == "glibc");
    let rows: Vec<(&Row, Option<Summary>)> = t
        .rows
        .iter()
        .map(|r| {
            let s = if r.stopped.is_none() {
                summary(ratios(r, glibc))
            } else {
                None
            };
            (r, s)
        })
        .collect();
    let lo = rows
        .iter()
        .filter_map(|(_, s)| s.as_ref().map(|s| s.min))
        .fold(0.5f64, f64::min);
    let hi = rows
        .iter()
        .filter_map(|(_, s)| s.as_ref().map(|s| s.max))
        .fold(2.0f64, f64::max);
    let (l0, l1) = (lo.log10().floor(), hi.log10().ceil());
    let x = |v: f64| LABEL_W + (v.log10() - l0) / (l1 - l0) * PLOT_W;
    let mut out = String::new();
    let h = svg_open(
        &mut out,
        rows.len(),
        &format!(
            "{}: time ÷ glibc, same round (log scale; lower is faster)",
            t.name
        ),
    );
    let mut ticks = Vec::new();
    let mut e = l0 as i32;
    while e as f64 <= l1 {
        for m in [1.0, 2.0, 5.0] {
            let v = m * 10f64.powi(e);
            if v.log10() <= l1 + 1e-9 {
                ticks.push((x(v), format!("{}", (v * 1000.0).round() / 1000.0)));
            }
        }
        e += 1;
    }
    svg_axis(
        &mut out,
        rows.len(),
        &ticks,
        "median over rounds, whiskers min–max; gray: anchors, blue: blocks, green: stacks",
        h,
    );
    for (i, (row, s)) in rows.iter().enumerate() {
        let info = &SUBJECTS[row.subject];
        match s {
            Some(s) => svg_bar(
                &mut out,
                i,
                &format!("{} ({})", info.name, fmt_ratio(s.median)),
                info.group,
                (x(1.0), x(s.median)),
                (x(s.min), x(s.max)),
            ),
            None => svg_note(&mut out, i, info.name, &why(&row.stopped, "budget")),
        }
    }
    let _ = writeln!(
        out,
        r#"<line x1="{0:.1}" y1="{TOP}" x2="{0:.1}" y2="{1}" stroke="black"/></svg>"#,
        x(1.0),
        TOP + rows.len() as f64 * ROW_H
    );
    out
}

/// Efficiency in percent on a linear axis; whiskers min–max.
fn efficiency_svg(t: &Table) -> String {
    let x = |v: f64| LABEL_W + v * PLOT_W;
    let mut out = String::new();
    let h = svg_open(
        &mut out,
        t.rows.len(),
        &format!(
            "{}: live requested bytes ÷ arena bytes at the first failure",
            t.name
        ),
    );
    let ticks: Vec<(f64, String)> = (0..=10)
        .map(|i| (x(i as f64 / 10.0), format!("{}%", i * 10)))
        .collect();
    svg_axis(
        &mut out,
        t.rows.len(),
        &ticks,
        "median over seeds, whiskers min–max (higher is better)",
        h,
    );
    for (i, row) in t.rows.iter().enumerate() {
        let info = &SUBJECTS[row.subject];
        match (row.stopped.is_none(), summary(row.values())) {
            (true, Some(s)) => svg_bar(
                &mut out,
                i,
                &format!("{} ({:.0}%)", info.name, s.median * 100.0),
                info.group,
                (x(0.0), x(s.median)),
                (x(s.min), x(s.max)),
            ),
            _ => svg_note(&mut out, i, info.name, &why(&row.stopped, "budget")),
        }
    }
    out.push_str("</svg>\n");
    out
}

// ---------------------------------------------------------- callgrind --

/// The instruction total of a callgrind output file (`totals:` or
/// `summary:` line).
pub fn callgrind_total(path: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .rev()
        .find_map(|l| {
            l.strip_prefix("totals:")
                .or_else(|| l.strip_prefix("summary:"))
        })
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// Instructions per op and the ratio to glibc, one table per workload.
pub fn callgrind_tables(results: &[Table]) -> String {
    let mut out = String::from(
        "# Instruction counts\n\n*Generated by `cargo xtask bench --callgrind`: each subject replays each \
         single-threaded trace once (a tenth of the standard ops) under `valgrind --tool=callgrind`, \
         counting only the replay (`--toggle-collect=*measured_replay*`).*\n\n",
    );
    let _ = writeln!(out, "Run of {}.\n", utc_now());
    for t in results {
        let glibc = t
            .rows
            .iter()
            .find(|r| SUBJECTS[r.subject].name == "glibc")
            .and_then(|r| r.rounds[0].as_ref().map(|v| v[0]));
        let _ = writeln!(out, "### {}\n\n{}.\n", t.name, t.what);
        let _ = writeln!(
            out,
            "| subject | instructions/op | ÷ glibc |\n|---|---:|---:|"
        );
        for row in &t.rows {
            let name = SUBJECTS[row.subject].name;
            match row.rounds[0].as_ref().map(|v| v[0]) {
                Some(ir) => {
                    let ratio = glibc.map_or("—".into(), |g| fmt_ratio(ir / g));
                    let _ = writeln!(out, "| {name} | {ir:.0} | {ratio} |");
                }
                None => {
                    let note = match row.stopped {
                        Some(Outcome::Timeout) => "timed out",
                        _ => "failed",
                    };
                    let _ = writeln!(out, "| {name} | {note} | |");
                }
            }
        }
        out.push('\n');
    }
    out
}

// ------------------------------------------------------ resident memory --

fn fmt_mib(kib: f64) -> String {
    let mib = kib / 1024.0;
    // No "-0.0": a change below 0.05 MiB either way is shown as 0.0.
    if mib.abs() < 0.05 {
        "0.0".into()
    } else {
        format!("{mib:.1}")
    }
}

/// Resident memory per subject over the OS, one table per trace workload:
/// peak above the baseline, and what stays resident after free+trim (above
/// the baseline), each with its ratio to glibc.
pub fn rss_tables(results: &[RssTable], quick: bool) -> String {
    let mut out = format!(
        "Run of {}{}: each subject replays each trace workload once in a fresh process. \
         *Baseline*: `VmRSS` before the replay (the harness, the trace and its slot table, \
         the allocator's setup); *peak*: `VmHWM` after it, less the baseline; \
         *after free+trim*: `VmRSS` once every block is freed and the allocator trimmed, \
         less the baseline (negative when the trim also gave back memory the harness had \
         freed before the replay). ÷ glibc below 1 is less memory; — where glibc's figure \
         is under 64 KiB or the figure is negative.\n\n",
        utc_now(),
        if quick { ", QUICK (tiny) run" } else { "" }
    );
    for t in results {
        let glibc = t
            .rows
            .iter()
            .find(|r| SUBJECTS[r.subject].name == "glibc")
            .and_then(|r| r.result.as_ref().ok());
        let _ = writeln!(out, "### {}\n\n{}.\n", t.name, t.what);
        let _ = writeln!(
            out,
            "| subject | baseline MiB | peak above baseline MiB | ÷ glibc | after free+trim, above baseline MiB | ÷ glibc | trim |\n\
             |---|---:|---:|---:|---:|---:|---|"
        );
        for row in &t.rows {
            let name = SUBJECTS[row.subject].name;
            match &row.result {
                Ok(f) => {
                    let peak = f.peak.saturating_sub(f.baseline) as f64;
                    let after = f.after as f64 - f.baseline as f64;
                    // A ratio against less than 64 KiB is noise.
                    let ratio = |x: f64, g: Option<f64>| match g {
                        Some(g) if g >= 64.0 && x >= 0.0 => fmt_ratio(x / g),
                        _ => "—".into(),
                    };
                    let g_peak = glibc.map(|g| g.peak.saturating_sub(g.baseline) as f64);
                    let g_after = glibc.map(|g| g.after as f64 - g.baseline as f64);
                    let _ = writeln!(
                        out,
                        "| {name} | {} | {} | {} | {} | {} | {} |",
                        fmt_mib(f.baseline as f64),
                        fmt_mib(peak),
                        ratio(peak, g_peak),
                        fmt_mib(after),
                        ratio(after, g_after),
                        f.trim
                    );
                }
                Err(stop) => {
                    let note = match stop {
                        Outcome::Timeout => "timed out",
                        _ => "failed",
                    };
                    let _ = writeln!(out, "| {name} | {note} | | | | | |");
                }
            }
        }
        out.push('\n');
    }
    out
}
