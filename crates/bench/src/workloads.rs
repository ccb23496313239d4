//! The workloads: what each one does, and how one run of one subject is
//! measured.
//!
//! - **Trace workloads** (`small`, `mixed`, `many-live`, `realloc`): one
//!   deterministic [`Trace`](crate::trace::Trace), replayed by every
//!   subject; the measure is this thread's CPU time per op.
//! - **`prodcons`**: a producer thread allocates, a consumer thread frees
//!   (batches of 256 through a channel); the measure is wall time per block.
//! - **`two-threads`**: two threads each replay a trace of their own at
//!   the same time, through the one subject; the measure is the wall time
//!   of both, per op of one thread (so the two threads' throughput is twice
//!   the ops over it).
//! - **Efficiency** (`efficiency`, `efficiency-realloc`): in a fixed arena,
//!   allocate and free (and resize) random sizes until the first failure;
//!   the measure is live requested bytes ÷ arena bytes at that moment,
//!   one trial per seed.

use std::alloc::Layout;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::subjects::{Subject, Visit};
use crate::trace::{self, Op, Sizes, Trace};
use freespace_testkit::Rng;

/// What a workload runs.
pub enum Kind {
    /// Replay a trace on one thread.
    Trace(Trace),
    /// Producer/consumer over two threads: the producer's request sizes.
    ProdCons(Vec<u32>),
    /// One trace per thread, all replayed at once through one subject.
    Parallel(Vec<Trace>),
    /// Fill a fixed arena until the first failure, `trials` seeds.
    Efficiency {
        /// Resize live blocks too.
        realloc: bool,
        /// The share of steps that free a block (when not resizing).
        free_share: f64,
        /// How many seeds.
        trials: usize,
        /// Request sizes.
        sizes: Sizes,
    },
}

/// One workload of the set.
pub struct Workload {
    /// The name on the command line and in the tables.
    pub name: &'static str,
    /// What it does, for the docs.
    pub what: String,
    /// The arena length arena subjects get.
    pub arena: usize,
    /// What runs.
    pub kind: Kind,
}

impl Workload {
    /// Operations measured in one run (the divisor of "ns per op").
    pub fn ops(&self) -> usize {
        match &self.kind {
            Kind::Trace(t) => t.measured.len(),
            Kind::ProdCons(sizes) => sizes.len(),
            Kind::Parallel(traces) => traces.first().map_or(0, |t| t.measured.len()),
            Kind::Efficiency { trials, .. } => *trials,
        }
    }

    /// Whether a run takes more than one thread (the subject is shared,
    /// behind a lock if it is not `Sync`).
    pub fn is_threaded(&self) -> bool {
        matches!(self.kind, Kind::ProdCons(_) | Kind::Parallel(_))
    }

    /// Whether this is an efficiency workload (arena subjects only, no timing).
    pub fn is_efficiency(&self) -> bool {
        matches!(self.kind, Kind::Efficiency { .. })
    }
}

/// The workload names, in report order.
pub const NAMES: &[&str] = &[
    "small",
    "mixed",
    "many-live",
    "realloc",
    "long-short",
    "build",
    "teardown-lifo",
    "teardown-fifo",
    "teardown-random",
    "scaling-100",
    "scaling-100k",
    "prodcons",
    "two-threads",
    "efficiency",
    "efficiency-realloc",
    "efficiency-1k",
    "efficiency-64k",
];

/// How big the set is.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    /// The standard set (`cargo xtask bench`).
    Standard,
    /// Seconds in all, for CI (`--quick`).
    Quick,
    /// Under valgrind: a tenth of the standard ops.
    Callgrind,
}

/// Builds the workload `name` at `scale` (generating its trace: call only
/// for workloads that will run).
pub fn build(name: &str, scale: Scale) -> Workload {
    let n = |standard: usize, quick: usize| match scale {
        Scale::Standard => standard,
        Scale::Quick => quick,
        Scale::Callgrind => standard / 10,
    };
    const SEED: u64 = 0x5eed_f4ee;
    // Room for the largest live set of the scale (many-live, prodcons).
    let arena_len = match scale {
        Scale::Standard => 256 << 20,
        Scale::Quick => 16 << 20,
        Scale::Callgrind => 64 << 20,
    };
    let small = Sizes::Uniform(8, 256);
    let mixed = Sizes::LogUniform(16, 16 << 10);
    match name {
        "small" => {
            let (ops, live) = (n(2_000_000, 10_000), 1000);
            Workload {
                name: "small",
                what: format!(
                    "random churn, {} ops, sizes {}, about {live} blocks live",
                    ops,
                    small.describe()
                ),
                arena: arena_len,
                kind: Kind::Trace(trace::churn(SEED, ops, live, small, 0.0)),
            }
        }
        "mixed" => {
            let (ops, live) = (n(1_000_000, 10_000), 1000);
            Workload {
                name: "mixed",
                what: format!(
                    "random churn, {} ops, sizes {}, about {live} blocks live",
                    ops,
                    mixed.describe()
                ),
                arena: arena_len,
                kind: Kind::Trace(trace::churn(SEED + 1, ops, live, mixed, 0.0)),
            }
        }
        "many-live" => {
            let (live, ops) = (n(200_000, 2_000), n(200_000, 2_000));
            let sizes = Sizes::LogUniform(8, 512);
            Workload {
                name: "many-live",
                what: format!(
                    "allocate {live} blocks ({}), then {ops} × (free a random one, allocate one), then free all in random order",
                    sizes.describe()
                ),
                arena: arena_len,
                kind: Kind::Trace(trace::many_live(SEED + 2, live, ops, sizes)),
            }
        }
        "realloc" => {
            let (ops, live) = (n(1_000_000, 10_000), 1000);
            let sizes = Sizes::LogUniform(8, 8 << 10);
            Workload {
                name: "realloc",
                what: format!(
                    "random churn, {ops} ops, half of them resizing a random live block; sizes {}, about {live} blocks live",
                    sizes.describe()
                ),
                arena: arena_len,
                kind: Kind::Trace(trace::churn(SEED + 3, ops, live, sizes, 0.5)),
            }
        }
        "long-short" => {
            let (ops, short, share) = (n(1_000_000, 10_000), 100, 0.1);
            let sizes = Sizes::LogUniform(16, 1024);
            Workload {
                name: "long-short",
                what: format!(
                    "{ops} steps, each allocating a block ({}) and freeing the blocks whose time is up: 90 % live 1–{} steps, 10 % a hundred times longer (about {} live)",
                    sizes.describe(),
                    2 * short,
                    (short as f64 * (1.0 - share + 100.0 * share)) as usize
                ),
                arena: arena_len,
                kind: Kind::Trace(trace::long_short(SEED + 5, ops, short, share, sizes)),
            }
        }
        "build" | "teardown-lifo" | "teardown-fifo" | "teardown-random" => {
            // One trace for all four (the same seed, count and sizes): `build`
            // times its allocations, each teardown its frees.
            use trace::{Phase, Teardown};
            let blocks = n(1_000_000, 10_000);
            let sizes = Sizes::LogUniform(16, 256);
            let (name, order, phase) = match name {
                "build" => ("build", Teardown::Lifo, Phase::Build),
                "teardown-lifo" => ("teardown-lifo", Teardown::Lifo, Phase::Free),
                "teardown-fifo" => ("teardown-fifo", Teardown::Fifo, Phase::Free),
                _ => ("teardown-random", Teardown::Random, Phase::Free),
            };
            let what = match phase {
                Phase::Build => format!(
                    "allocate {blocks} blocks ({}); only the allocations are timed \
                     (the frees after them, last allocated first, are not)",
                    sizes.describe()
                ),
                Phase::Free => format!(
                    "allocate {blocks} blocks ({}), then free them all, {}; only the \
                     frees are timed (the allocations are the `build` workload)",
                    sizes.describe(),
                    match order {
                        Teardown::Lifo => "last allocated first",
                        Teardown::Fifo => "first allocated first",
                        Teardown::Random => "in random order",
                    }
                ),
            };
            Workload {
                name,
                what,
                arena: arena_len,
                kind: Kind::Trace(trace::build_teardown(SEED + 6, blocks, sizes, order, phase)),
            }
        }
        "scaling-100" | "scaling-100k" => {
            let (name, chunks) = if name == "scaling-100" {
                ("scaling-100", 100)
            } else {
                ("scaling-100k", n(100_000, 1_000))
            };
            let pairs = n(1_000_000, 10_000);
            Workload {
                name,
                what: format!(
                    "{chunks} free 32 B chunks (every other one of {} blocks freed) below the rest of the heap, then {pairs} × (allocate 256 B, free it); only the pairs are measured",
                    2 * chunks
                ),
                arena: arena_len,
                kind: Kind::Trace(trace::scaling(chunks, pairs, 32, 256)),
            }
        }
        "prodcons" => {
            let blocks = n(1_000_000, 10_000);
            let sizes = Sizes::LogUniform(16, 1024);
            Workload {
                name: "prodcons",
                what: format!(
                    "two threads: one allocates {blocks} blocks ({}), the other frees them, batches of {BATCH} through a channel",
                    sizes.describe()
                ),
                arena: arena_len,
                kind: Kind::ProdCons(trace::sizes(SEED + 4, blocks, sizes)),
            }
        }
        "two-threads" => {
            let (ops, live) = (n(1_000_000, 10_000), 64);
            Workload {
                name: "two-threads",
                what: format!(
                    "two threads at once, each its own random churn: {ops} ops, sizes {}, about {live} blocks live",
                    small.describe()
                ),
                arena: arena_len,
                kind: Kind::Parallel(vec![
                    trace::churn(SEED + 7, ops, live, small, 0.0),
                    trace::churn(SEED + 8, ops, live, small, 0.0),
                ]),
            }
        }
        "efficiency-1k" | "efficiency-64k" => {
            let (name, sizes) = if name == "efficiency-1k" {
                ("efficiency-1k", Sizes::LogUniform(16, 1024))
            } else {
                ("efficiency-64k", Sizes::LogUniform(16, 64 << 10))
            };
            let arena = match scale {
                Scale::Quick => 4 << 20,
                _ => 8 << 20,
            };
            let trials = n(10, 2).max(2);
            Workload {
                name,
                what: format!(
                    "{} arena; allocate 70 %, free 30 % (sizes {}) until the first failure; live requested bytes ÷ arena bytes; {trials} seeds",
                    trace::bytes(arena),
                    sizes.describe()
                ),
                arena,
                kind: Kind::Efficiency {
                    realloc: false,
                    free_share: 0.30,
                    trials,
                    sizes,
                },
            }
        }
        "efficiency" | "efficiency-realloc" => {
            let realloc = name == "efficiency-realloc";
            let arena = match scale {
                Scale::Quick => 4 << 20,
                _ => 8 << 20,
            };
            let trials = n(20, 2).max(2);
            let sizes = Sizes::LogUniform(16, 16 << 10);
            let steps = if realloc {
                "allocate 45 %, free 25 %, resize 30 %"
            } else {
                "allocate 65 %, free 35 %"
            };
            Workload {
                name: if realloc { "efficiency-realloc" } else { "efficiency" },
                what: format!(
                    "{} arena; {steps} (sizes {}) until the first failure; live requested bytes ÷ arena bytes; {trials} seeds",
                    trace::bytes(arena),
                    sizes.describe()
                ),
                arena,
                kind: Kind::Efficiency {
                    realloc,
                    free_share: 0.35,
                    trials,
                    sizes,
                },
            }
        }
        other => panic!("no workload named {other}"),
    }
}

/// Blocks per producer/consumer batch.
pub const BATCH: usize = 256;

/// How one run ended.
#[derive(Clone, Debug)]
pub enum Outcome {
    /// Nanoseconds per op (timed workloads) or per-trial efficiencies.
    Done(Vec<f64>),
    /// An allocation failed where it should not have.
    OutOfMemory,
    /// The run took longer than the budget and was abandoned.
    Timeout,
}

impl Outcome {
    /// The outcome of a timed run that ended with `result`, taking
    /// `ns_per_op` nanoseconds per op if it went through.
    fn timed(result: Result<(), Stop>, ns_per_op: f64) -> Self {
        match result {
            Ok(()) => Outcome::Done(vec![ns_per_op]),
            Err(Stop::OutOfMemory) => Outcome::OutOfMemory,
            Err(Stop::Timeout) => Outcome::Timeout,
        }
    }
}

/// CPU time of this thread, in nanoseconds: time spent descheduled on a
/// shared machine does not count.
pub fn thread_cpu_ns() -> u64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid out-pointer; the clock id is a Linux constant.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// A live block of a replay.
#[derive(Clone, Copy)]
pub struct Slot {
    ptr: *mut u8,
    size: u32,
    align: u32,
}

impl Slot {
    fn layout(self) -> Layout {
        // SAFETY: size and align came from a trace: align a power of two,
        // size far below isize::MAX.
        unsafe { Layout::from_size_align_unchecked(self.size as usize, self.align as usize) }
    }
}

impl Slot {
    /// Frees the block in this slot, if there is one, and empties it.
    ///
    /// # Safety
    /// A non-null slot holds a live block of `s` allocated with the slot's
    /// size and alignment (as [`measured_replay`] leaves its slots).
    pub unsafe fn free<S: Subject>(&mut self, s: &S) {
        let block = std::mem::replace(self, EMPTY);
        if !block.ptr.is_null() {
            // SAFETY: the caller's contract: live, of `s`, with this layout.
            unsafe { s.dealloc(block.ptr, block.layout()) };
        }
    }
}

/// An empty slot: what a replay's slot table starts as.
pub const EMPTY: Slot = Slot {
    ptr: std::ptr::null_mut(),
    size: 0,
    align: 1,
};

/// Why a replay stopped early.
pub enum Stop {
    /// An allocation or resize returned null.
    OutOfMemory,
    /// The CPU-time deadline passed.
    Timeout,
}

/// Replays `ops` against `s`. The one function callgrind counts
/// (`--toggle-collect=*measured_replay*`): the trace walk plus the
/// subject's work, one byte written into each new block.
///
/// On an early stop the live blocks are abandoned (an arena subject is
/// dropped with its arena; a system allocator leaks them).
#[inline(never)]
pub fn measured_replay<S: Subject>(
    s: &S,
    ops: &[Op],
    slots: &mut [Slot],
    deadline_cpu_ns: u64,
) -> Result<(), Stop> {
    replay(s, ops, slots, deadline_cpu_ns)
}

/// [`measured_replay`] under another name, for the steps of a trace that
/// are not measured (a workload's setup and cleanup): callgrind counts
/// only `measured_replay`.
#[inline(never)]
pub fn untimed_replay<S: Subject>(
    s: &S,
    ops: &[Op],
    slots: &mut [Slot],
    deadline_cpu_ns: u64,
) -> Result<(), Stop> {
    replay(s, ops, slots, deadline_cpu_ns)
}

/// The body of both replays.
#[inline(always)]
fn replay<S: Subject>(
    s: &S,
    ops: &[Op],
    slots: &mut [Slot],
    deadline_cpu_ns: u64,
) -> Result<(), Stop> {
    for chunk in ops.chunks(4096) {
        if thread_cpu_ns() > deadline_cpu_ns {
            return Err(Stop::Timeout);
        }
        for op in chunk {
            match *op {
                Op::Alloc { slot, size, align } => {
                    let block = Slot {
                        ptr: std::ptr::null_mut(),
                        size,
                        align,
                    };
                    let p = s.alloc(block.layout());
                    if p.is_null() {
                        return Err(Stop::OutOfMemory);
                    }
                    // SAFETY: a fresh block of at least `size >= 1` bytes.
                    unsafe { p.write(slot as u8) };
                    slots[slot as usize] = Slot { ptr: p, ..block };
                }
                Op::Free { slot } => {
                    let block = std::mem::replace(&mut slots[slot as usize], EMPTY);
                    // SAFETY: the trace frees only live slots, with their layout.
                    unsafe { s.dealloc(block.ptr, block.layout()) };
                }
                Op::Realloc { slot, size } => {
                    let block = slots[slot as usize];
                    // SAFETY: the slot is live (trace invariant) with this layout.
                    let p = unsafe { s.realloc(block.ptr, block.layout(), size as usize) };
                    if p.is_null() {
                        return Err(Stop::OutOfMemory);
                    }
                    // SAFETY: `p` is a live block of at least `size >= 1` bytes.
                    unsafe { p.write(slot as u8) };
                    slots[slot as usize] = Slot {
                        ptr: p,
                        size,
                        ..block
                    };
                }
            }
        }
    }
    Ok(())
}

/// One run of `workload` against a subject; the result is in `outcome`.
pub struct Run<'w> {
    /// The workload.
    pub workload: &'w Workload,
    /// Give up after this much time.
    pub budget: Duration,
    /// What happened (set by the visit).
    pub outcome: Outcome,
}

impl<'w> Run<'w> {
    /// A run of `workload` with `budget`.
    pub fn new(workload: &'w Workload, budget: Duration) -> Self {
        Run {
            workload,
            budget,
            outcome: Outcome::Timeout,
        }
    }
}

/// Allocates and frees one small block so lazy setup (a heap's first
/// region, a thread cache) happens before the clock starts.
fn warm_up<S: Subject>(s: &S) {
    let l = Layout::from_size_align(8, 8).expect("valid layout");
    let p = s.alloc(l);
    if !p.is_null() {
        // SAFETY: just allocated with `l`.
        unsafe { s.dealloc(p, l) };
    }
}

impl Visit for Run<'_> {
    fn single<S: Subject>(&mut self, s: &S) {
        match &self.workload.kind {
            Kind::Trace(t) => {
                let mut slots = vec![EMPTY; t.slots];
                warm_up(s);
                let deadline = thread_cpu_ns() + self.budget.as_nanos() as u64;
                let (before, measured, after) = t.parts();
                let mut result = untimed_replay(s, before, &mut slots, deadline);
                let start = thread_cpu_ns();
                if result.is_ok() {
                    result = measured_replay(s, measured, &mut slots, deadline);
                }
                let ns = (thread_cpu_ns() - start) as f64;
                if result.is_ok() {
                    result = untimed_replay(s, after, &mut slots, deadline);
                }
                self.outcome = Outcome::timed(result, ns / measured.len().max(1) as f64);
            }
            Kind::Efficiency { .. } => unreachable!("efficiency runs go through `trial`"),
            Kind::ProdCons(_) | Kind::Parallel(_) => unreachable!("threaded runs are shared"),
        }
    }

    fn shared<S: Subject + Sync>(&mut self, s: &S) {
        if let Kind::Parallel(traces) = &self.workload.kind {
            warm_up(s);
            let (ns, result) = parallel_replay(s, traces, self.budget);
            self.outcome = Outcome::timed(result, ns / self.workload.ops().max(1) as f64);
            return;
        }
        let Kind::ProdCons(sizes) = &self.workload.kind else {
            return self.single(s);
        };
        warm_up(s);
        let deadline = Instant::now() + self.budget;
        let start = Instant::now();
        let ok = producer_consumer(s, sizes, deadline);
        let ns = start.elapsed().as_nanos() as f64;
        self.outcome = Outcome::timed(ok, ns / sizes.len() as f64);
    }
}

/// Each trace on a thread of its own, all through `s`: the untimed part
/// first, then (after all threads are there) the measured part, timed
/// from the moment all start until all are done; the wall time in
/// nanoseconds, and the first stop any thread hit.
fn parallel_replay<S: Subject + Sync>(
    s: &S,
    traces: &[Trace],
    budget: Duration,
) -> (f64, Result<(), Stop>) {
    let start = std::sync::Barrier::new(traces.len() + 1);
    let end = std::sync::Barrier::new(traces.len() + 1);
    std::thread::scope(|scope| {
        let workers: Vec<_> = traces
            .iter()
            .map(|t| {
                let (start, end) = (&start, &end);
                scope.spawn(move || {
                    let mut slots = vec![EMPTY; t.slots];
                    warm_up(s);
                    let (before, measured, after) = t.parts();
                    let deadline = thread_cpu_ns() + budget.as_nanos() as u64;
                    let mut result = untimed_replay(s, before, &mut slots, deadline);
                    start.wait();
                    if result.is_ok() {
                        result = measured_replay(s, measured, &mut slots, deadline);
                    }
                    end.wait();
                    // As on one thread: the rest (freeing what is live)
                    // only after a whole measured part.
                    if result.is_ok() {
                        result = untimed_replay(s, after, &mut slots, u64::MAX);
                    }
                    result
                })
            })
            .collect();
        start.wait();
        let clock = Instant::now();
        end.wait();
        let ns = clock.elapsed().as_nanos() as f64;
        let mut result = Ok(());
        for w in workers {
            let r = w.join().expect("replay thread panicked");
            if result.is_ok() {
                result = r;
            }
        }
        (ns, result)
    })
}

/// A batch of live blocks on its way to the consumer.
struct Batch(Vec<(*mut u8, u32)>);

// SAFETY: the blocks are handed over whole: after the send only the
// consumer touches them, and the subject is `Sync`.
unsafe impl Send for Batch {}

fn layout_of(size: u32) -> Layout {
    Layout::from_size_align(size as usize, 8).expect("valid layout")
}

/// The producer (this thread) allocates, the consumer frees.
fn producer_consumer<S: Subject + Sync>(
    s: &S,
    sizes: &[u32],
    deadline: Instant,
) -> Result<(), Stop> {
    let (to_consumer, inbox) = mpsc::sync_channel::<Batch>(16);
    let (to_producer, returns) = mpsc::channel::<Batch>();
    std::thread::scope(|scope| {
        scope.spawn(move || {
            for mut batch in inbox {
                for (p, size) in batch.0.drain(..) {
                    // SAFETY: the producer allocated `p` with this layout
                    // and handed it over.
                    unsafe { s.dealloc(p, layout_of(size)) };
                }
                // The producer may have stopped; then the batch just drops.
                let _ = to_producer.send(batch);
            }
        });
        let mut result = Ok(());
        'produce: for chunk in sizes.chunks(BATCH) {
            if Instant::now() > deadline {
                result = Err(Stop::Timeout);
                break;
            }
            let mut batch = returns
                .try_recv()
                .unwrap_or_else(|_| Batch(Vec::with_capacity(BATCH)));
            for &size in chunk {
                let p = s.alloc(layout_of(size));
                if p.is_null() {
                    result = Err(Stop::OutOfMemory);
                    let _ = to_consumer.send(batch);
                    break 'produce;
                }
                // SAFETY: a fresh block of `size >= 1` bytes.
                unsafe { p.write(size as u8) };
                batch.0.push((p, size));
            }
            if to_consumer.send(batch).is_err() {
                break;
            }
        }
        drop(to_consumer);
        result
    })
}

/// One efficiency trial (seed `seed`) against `s` in an arena of
/// `arena_len` bytes: the fraction of the arena that live requested bytes
/// fill when the first request fails.
pub struct Trial {
    /// The seed of this trial.
    pub seed: u64,
    /// Resize too.
    pub realloc: bool,
    /// The share of steps that free (without `realloc`).
    pub free_share: f64,
    /// Request sizes.
    pub sizes: Sizes,
    /// The arena's length.
    pub arena_len: usize,
    /// Give up after this much CPU time.
    pub budget: Duration,
    /// The result.
    pub outcome: Outcome,
}

impl Visit for Trial {
    fn single<S: Subject>(&mut self, s: &S) {
        let mut rng = Rng::spread(self.seed);
        let mut live: Vec<(*mut u8, u32)> = Vec::new();
        let mut live_bytes = 0usize;
        let deadline = thread_cpu_ns() + self.budget.as_nanos() as u64;
        let (p_resize, p_free) = if self.realloc {
            (0.30, 0.55)
        } else {
            (0.0, self.free_share)
        };
        let mut step = 0u64;
        loop {
            step += 1;
            if step % 1024 == 0 && thread_cpu_ns() > deadline {
                self.outcome = Outcome::Timeout;
                return;
            }
            let r = rng.unit();
            if !live.is_empty() && r < p_resize {
                let i = rng.below(live.len());
                let (p, old) = live[i];
                let new = self.sizes.draw(&mut rng);
                // SAFETY: `p` is live with `layout_of(old)`.
                let q = unsafe { s.realloc(p, layout_of(old), new as usize) };
                if q.is_null() {
                    break;
                }
                live[i] = (q, new);
                live_bytes = live_bytes - old as usize + new as usize;
            } else if !live.is_empty() && r < p_free {
                let (p, size) = live.swap_remove(rng.below(live.len()));
                // SAFETY: `p` is live with this layout.
                unsafe { s.dealloc(p, layout_of(size)) };
                live_bytes -= size as usize;
            } else {
                let size = self.sizes.draw(&mut rng);
                let p = s.alloc(layout_of(size));
                if p.is_null() {
                    break;
                }
                live.push((p, size));
                live_bytes += size as usize;
            }
        }
        self.outcome = Outcome::Done(vec![live_bytes as f64 / self.arena_len as f64]);
        for (p, size) in live {
            // SAFETY: every block in `live` is live with this layout.
            unsafe { s.dealloc(p, layout_of(size)) };
        }
    }

    fn shared<S: Subject + Sync>(&mut self, s: &S) {
        self.single(s)
    }
}
