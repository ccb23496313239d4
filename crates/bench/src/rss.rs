//! Resident memory of the subjects that get their memory from the OS
//! (glibc, mimalloc, jemalloc, `general-mmap`): one trace replay in a fresh
//! process (`freespace-bench --rss-child`), so that nothing else the
//! harness did is in the figures.
//!
//! The child, in order:
//!
//! 1. resets the kernel's high-water mark (`5` into `/proc/self/clear_refs`)
//!    and reads `VmRSS` from `/proc/self/status`: the *baseline*;
//! 2. replays the trace once;
//! 3. reads `VmHWM`: the *peak*;
//! 4. frees every block still live, asks the subject to give back what it
//!    holds free ([`Subject::trim`](crate::subjects::Subject::trim)), and
//!    reads `VmRSS` again: *after free+trim*;
//!
//! and prints one [`Footprint`] line the parent parses.

use crate::subjects::{Subject, Visit};
use crate::workloads::{measured_replay, thread_cpu_ns, Kind, Outcome, Stop, Workload, EMPTY};
use std::time::Duration;

/// One field of `/proc/self/status` in KiB (`VmRSS`, `VmHWM`, ...).
///
/// ```
/// let rss = freespace_bench::rss::status_kib("VmRSS").expect("Linux");
/// assert!(rss > 0);
/// ```
pub fn status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// Resets this process's `VmHWM` to its current `VmRSS`; `false` if the
/// kernel does not allow it (before Linux 4.0).
pub fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// What one child measured, in KiB.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Footprint {
    /// `VmRSS` just before the replay (after the peak was reset).
    pub baseline: u64,
    /// `VmHWM` after the replay.
    pub peak: u64,
    /// `VmRSS` after every block was freed and the subject trimmed.
    pub after: u64,
    /// How the subject was trimmed (`"no trim"` when it cannot be).
    pub trim: String,
}

impl Footprint {
    /// The line the child prints.
    ///
    /// ```
    /// use freespace_bench::rss::Footprint;
    /// let f = Footprint { baseline: 10, peak: 30, after: 12, trim: "malloc_trim(0)".into() };
    /// assert_eq!(Footprint::parse(&f.line()), Some(f));
    /// ```
    pub fn line(&self) -> String {
        format!(
            "rss baseline={} peak={} after={} trim={}",
            self.baseline, self.peak, self.after, self.trim
        )
    }

    /// Parses [`line`](Self::line) out of a child's output.
    pub fn parse(text: &str) -> Option<Footprint> {
        let line = text.lines().find_map(|l| l.strip_prefix("rss "))?;
        let (nums, trim) = line.split_once(" trim=")?;
        let mut f = Footprint {
            baseline: 0,
            peak: 0,
            after: 0,
            trim: trim.to_string(),
        };
        for field in nums.split_whitespace() {
            let (k, v) = field.split_once('=')?;
            let v = v.parse().ok()?;
            match k {
                "baseline" => f.baseline = v,
                "peak" => f.peak = v,
                "after" => f.after = v,
                _ => return None,
            }
        }
        Some(f)
    }
}

/// One measured replay of a trace workload (see the module docs); the
/// result is in `outcome`.
pub struct RssRun<'w> {
    /// The workload (a trace workload).
    pub workload: &'w Workload,
    /// Give up after this much CPU time.
    pub budget: Duration,
    /// What happened.
    pub outcome: Result<Footprint, Outcome>,
}

impl<'w> RssRun<'w> {
    /// A run of `workload` with `budget`.
    pub fn new(workload: &'w Workload, budget: Duration) -> Self {
        RssRun {
            workload,
            budget,
            outcome: Err(Outcome::Timeout),
        }
    }
}

impl Visit for RssRun<'_> {
    fn single<S: Subject>(&mut self, s: &S) {
        let Kind::Trace(t) = &self.workload.kind else {
            unreachable!("the RSS pass runs trace workloads only")
        };
        let mut slots = vec![EMPTY; t.slots];
        reset_peak();
        let baseline = status_kib("VmRSS").unwrap_or(0);
        let deadline = thread_cpu_ns() + self.budget.as_nanos() as u64;
        match measured_replay(s, &t.ops, &mut slots, deadline) {
            Ok(()) => {}
            Err(Stop::OutOfMemory) => return self.outcome = Err(Outcome::OutOfMemory),
            Err(Stop::Timeout) => return self.outcome = Err(Outcome::Timeout),
        }
        let peak = status_kib("VmHWM").unwrap_or(0);
        for slot in &mut slots {
            // SAFETY: a non-null slot holds a live block of `s` with the
            // slot's layout (what `measured_replay` keeps); it is emptied
            // so it is freed once.
            unsafe { slot.free(s) };
        }
        let trim = s.trim().unwrap_or("no trim").to_string();
        let after = status_kib("VmRSS").unwrap_or(0);
        // The slot table was resident at the baseline: freed only now, so
        // that giving it back does not count as the subject's trim.
        drop(slots);
        self.outcome = Ok(Footprint {
            baseline,
            peak,
            after,
            trim,
        });
    }

    fn shared<S: Subject + Sync>(&mut self, s: &S) {
        self.single(s)
    }
}
