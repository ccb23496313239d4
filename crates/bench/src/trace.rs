//! Deterministic op traces: generated once per workload from a fixed seed,
//! then replayed, op for op, against every subject.
//!
//! A trace names blocks by *slot*: `Alloc { slot, .. }` fills a slot,
//! `Free { slot }` empties it, `Realloc { slot, .. }` resizes the block in
//! it. Slots are reused (a stack of empty ones), so the replay needs one
//! pointer table as large as the peak number of live blocks. Every trace
//! ends with every block freed, so a subject is empty after a replay.
//! Every draw comes from the testkit's seeded [`Rng`] (`Rng::spread`), the
//! generator the tests use.

use freespace_testkit::Rng;

/// One step of a trace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// Allocate `size` bytes aligned to `align` into the empty `slot`.
    Alloc {
        /// The slot the block goes into.
        slot: u32,
        /// Requested size in bytes (never 0).
        size: u32,
        /// Requested alignment (a power of two).
        align: u32,
    },
    /// Free the block in `slot`.
    Free {
        /// The slot to empty.
        slot: u32,
    },
    /// Resize the block in `slot` to `size` bytes, keeping its alignment.
    Realloc {
        /// The slot whose block is resized.
        slot: u32,
        /// The new size in bytes (never 0).
        size: u32,
    },
}

/// A generated trace and the pointer-table size its replay needs.
pub struct Trace {
    /// The steps, in order.
    pub ops: Vec<Op>,
    /// One more than the largest slot number used.
    pub slots: usize,
    /// The steps that are timed (and counted under callgrind): all of them,
    /// except where a workload measures one phase (the scaling pairs, not
    /// the heap built before them or the frees after).
    pub measured: core::ops::Range<usize>,
}

impl Trace {
    /// The steps before the measured ones, the measured ones, and the
    /// rest.
    pub fn parts(&self) -> (&[Op], &[Op], &[Op]) {
        let (before, rest) = self.ops.split_at(self.measured.start);
        let (measured, after) = rest.split_at(self.measured.len());
        (before, measured, after)
    }
}

/// How request sizes are drawn.
#[derive(Clone, Copy, Debug)]
pub enum Sizes {
    /// Uniform in `lo..=hi`.
    Uniform(u32, u32),
    /// Log-uniform in `lo..=hi`: as many requests in 16–32 B as in 8–16 KiB.
    LogUniform(u32, u32),
}

impl Sizes {
    /// One size.
    pub fn draw(self, rng: &mut Rng) -> u32 {
        match self {
            Sizes::Uniform(lo, hi) => lo + rng.below((hi - lo + 1) as usize) as u32,
            Sizes::LogUniform(lo, hi) => {
                let (a, b) = ((lo as f64).ln(), (hi as f64 + 1.0).ln());
                ((a + rng.unit() * (b - a)).exp() as u32).clamp(lo, hi)
            }
        }
    }

    /// How the distribution reads in a table: `8–256 B uniform`.
    pub fn describe(self) -> String {
        let (lo, hi, kind) = match self {
            Sizes::Uniform(lo, hi) => (lo, hi, "uniform"),
            Sizes::LogUniform(lo, hi) => (lo, hi, "log-uniform"),
        };
        format!("{}–{} {kind}", bytes(lo as usize), bytes(hi as usize))
    }
}

/// `16 B`, `16 KiB`, `8 MiB`.
pub fn bytes(n: usize) -> String {
    if n >= 1 << 20 && n % (1 << 20) == 0 {
        format!("{} MiB", n >> 20)
    } else if n >= 1 << 10 && n % (1 << 10) == 0 {
        format!("{} KiB", n >> 10)
    } else {
        format!("{n} B")
    }
}

/// Builds a trace while keeping track of which slots are live.
struct Builder {
    rng: Rng,
    ops: Vec<Op>,
    /// `live[i]` is a live slot; `free` the empty slots below `slots`.
    live: Vec<u32>,
    empty: Vec<u32>,
    slots: u32,
}

impl Builder {
    fn new(seed: u64, capacity: usize) -> Self {
        Builder {
            rng: Rng::spread(seed),
            ops: Vec::with_capacity(capacity),
            live: Vec::new(),
            empty: Vec::new(),
            slots: 0,
        }
    }

    fn alloc(&mut self, size: u32, align: u32) {
        let slot = self.empty.pop().unwrap_or_else(|| {
            self.slots += 1;
            self.slots - 1
        });
        self.live.push(slot);
        self.ops.push(Op::Alloc { slot, size, align });
    }

    /// Frees a random live block.
    fn free_random(&mut self) {
        let i = self.rng.below(self.live.len());
        let slot = self.live.swap_remove(i);
        self.empty.push(slot);
        self.ops.push(Op::Free { slot });
    }

    fn realloc_random(&mut self, size: u32) {
        let slot = self.live[self.rng.below(self.live.len())];
        self.ops.push(Op::Realloc { slot, size });
    }

    /// Frees every live block, in random order.
    fn finish(mut self) -> Trace {
        while !self.live.is_empty() {
            self.free_random();
        }
        Trace {
            measured: 0..self.ops.len(),
            ops: self.ops,
            slots: self.slots as usize,
        }
    }
}

/// Random churn: `ops` steps, each an allocation or a free (or, with
/// probability `realloc_share`, a resize of a random live block), with the
/// number of live blocks pulled towards `live`: an allocation is chosen
/// with probability `1 - n / (2 live)`.
pub fn churn(seed: u64, ops: usize, live: usize, sizes: Sizes, realloc_share: f64) -> Trace {
    let mut b = Builder::new(seed, ops + live * 2);
    for _ in 0..ops {
        let n = b.live.len();
        if n > 0 && b.rng.unit() < realloc_share {
            let size = sizes.draw(&mut b.rng);
            b.realloc_random(size);
        } else if n == 0 || b.rng.unit() >= n as f64 / (2 * live) as f64 {
            let size = sizes.draw(&mut b.rng);
            b.alloc(size, 8);
        } else {
            b.free_random();
        }
    }
    b.finish()
}

/// Many live blocks: allocate `live` blocks, then `ops` steps that each
/// free a random live block and allocate a new one, then free everything.
pub fn many_live(seed: u64, live: usize, ops: usize, sizes: Sizes) -> Trace {
    let mut b = Builder::new(seed, 2 * live + 2 * ops);
    for _ in 0..live {
        let size = sizes.draw(&mut b.rng);
        b.alloc(size, 8);
    }
    for _ in 0..ops {
        b.free_random();
        let size = sizes.draw(&mut b.rng);
        b.alloc(size, 8);
    }
    b.finish()
}

/// Long- and short-lived blocks mixed: every step allocates one block
/// and then frees those whose time is up. A block lives `1..=2 short`
/// steps, or with probability `long_share` a hundred times longer, so
/// about `short × (1 - long_share + 100 long_share)` blocks are live and
/// the long-lived ones pin memory between the short-lived ones.
pub fn long_short(seed: u64, ops: usize, short: usize, long_share: f64, sizes: Sizes) -> Trace {
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;
    let mut b = Builder::new(seed, 2 * ops);
    let mut due: BinaryHeap<Reverse<(usize, u32)>> = BinaryHeap::new();
    for step in 0..ops {
        let size = sizes.draw(&mut b.rng);
        b.alloc(size, 8);
        let slot = b.live.pop().expect("just allocated");
        let span = if b.rng.unit() < long_share {
            100 * short
        } else {
            short
        };
        let life = 1 + b.rng.below(2 * span);
        due.push(Reverse((step + life, slot)));
        while let Some(&Reverse((t, slot))) = due.peek() {
            if t > step {
                break;
            }
            due.pop();
            b.empty.push(slot);
            b.ops.push(Op::Free { slot });
        }
    }
    b.live = due.into_iter().map(|Reverse((_, slot))| slot).collect();
    b.finish()
}

/// The order [`build_teardown`] frees in.
#[derive(Clone, Copy, Debug)]
pub enum Teardown {
    /// Last allocated, first freed.
    Lifo,
    /// First allocated, first freed.
    Fifo,
    /// Random order.
    Random,
}

/// Which phase of a [`build_teardown`] trace is [`measured`](Trace::measured).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// The `n` allocations (the frees after them are not timed).
    Build,
    /// The `n` frees (the allocations before them are not timed).
    Free,
}

/// Allocate `n` blocks, then free them all in `order`; only `phase` is
/// [`measured`](Trace::measured). The two phases cost differently (a
/// build carves fresh memory, a free merges or files what it returns) and
/// are compared separately, so a gap in one is not hidden by the other.
///
/// ```
/// use freespace_bench::trace::{build_teardown, Phase, Sizes, Teardown};
/// let s = Sizes::LogUniform(16, 256);
/// let build = build_teardown(1, 100, s, Teardown::Lifo, Phase::Build);
/// let free = build_teardown(1, 100, s, Teardown::Lifo, Phase::Free);
/// assert_eq!((build.measured, free.measured), (0..100, 100..200));
/// assert_eq!(build.ops, free.ops);
/// ```
pub fn build_teardown(seed: u64, n: usize, sizes: Sizes, order: Teardown, phase: Phase) -> Trace {
    let mut b = Builder::new(seed, 2 * n);
    for _ in 0..n {
        let size = sizes.draw(&mut b.rng);
        b.alloc(size, 8);
    }
    match order {
        Teardown::Lifo => {
            while let Some(slot) = b.live.pop() {
                b.empty.push(slot);
                b.ops.push(Op::Free { slot });
            }
        }
        Teardown::Fifo => {
            for slot in std::mem::take(&mut b.live) {
                b.empty.push(slot);
                b.ops.push(Op::Free { slot });
            }
        }
        Teardown::Random => {}
    }
    let mut t = b.finish();
    t.measured = match phase {
        Phase::Build => 0..n,
        Phase::Free => n..2 * n,
    };
    t
}

/// The scaling measurement: `2 free_chunks` blocks of `small` bytes, every
/// other one freed (so `free_chunks` free chunks too small for what
/// follows sit below the rest of the heap), then `pairs` × (allocate a
/// `large` block, free it). Only the pairs are [`measured`](Trace::measured):
/// the cost of one allocate+free with that many chunks below the fit, not
/// of building the heap or freeing it.
///
/// ```
/// let t = freespace_bench::trace::scaling(100, 1000, 32, 256);
/// assert_eq!(t.measured, 300..2300); // 200 allocations and 100 frees first
/// ```
pub fn scaling(free_chunks: usize, pairs: usize, small: u32, large: u32) -> Trace {
    let mut b = Builder::new(0, 4 * free_chunks + 2 * pairs);
    for _ in 0..2 * free_chunks {
        b.alloc(small, 8);
    }
    let slots = std::mem::take(&mut b.live);
    for (i, slot) in slots.into_iter().enumerate() {
        if i % 2 == 1 {
            b.empty.push(slot);
            b.ops.push(Op::Free { slot });
        } else {
            b.live.push(slot);
        }
    }
    let start = b.ops.len();
    for _ in 0..pairs {
        b.alloc(large, 8);
        let slot = b.live.pop().expect("just allocated");
        b.empty.push(slot);
        b.ops.push(Op::Free { slot });
    }
    let end = b.ops.len();
    Trace {
        measured: start..end,
        ..b.finish()
    }
}

/// Request sizes for the producer of a producer/consumer run.
pub fn sizes(seed: u64, n: usize, sizes: Sizes) -> Vec<u32> {
    let mut rng = Rng::spread(seed);
    (0..n).map(|_| sizes.draw(&mut rng)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Replays a trace against a model of the slot table: every op names a
    /// slot in the state it requires, and the trace ends empty.
    fn well_formed(t: &Trace) {
        let mut full = vec![false; t.slots];
        for op in &t.ops {
            match *op {
                Op::Alloc { slot, size, align } => {
                    assert!(!full[slot as usize] && size > 0 && align.is_power_of_two());
                    full[slot as usize] = true;
                }
                Op::Free { slot } => {
                    assert!(full[slot as usize]);
                    full[slot as usize] = false;
                }
                Op::Realloc { slot, size } => assert!(full[slot as usize] && size > 0),
            }
        }
        assert!(full.iter().all(|f| !f), "trace ends with live blocks");
    }

    #[test]
    fn traces_are_well_formed_and_deterministic() {
        let a = churn(7, 10_000, 100, Sizes::LogUniform(16, 16384), 0.3);
        well_formed(&a);
        let b = churn(7, 10_000, 100, Sizes::LogUniform(16, 16384), 0.3);
        assert_eq!(format!("{:?}", a.ops), format!("{:?}", b.ops));
        well_formed(&many_live(1, 1000, 1000, Sizes::Uniform(8, 256)));
        well_formed(&long_short(2, 10_000, 20, 0.1, Sizes::LogUniform(16, 1024)));
        for order in [Teardown::Lifo, Teardown::Fifo, Teardown::Random] {
            for phase in [Phase::Build, Phase::Free] {
                let t = build_teardown(3, 1000, Sizes::LogUniform(16, 256), order, phase);
                well_formed(&t);
                let (before, measured, after) = t.parts();
                let alloc = |o: &Op| matches!(o, Op::Alloc { .. });
                // The measured phase is all allocations or all frees, and
                // the other phase is the rest of the trace.
                match phase {
                    Phase::Build => {
                        assert!(before.is_empty() && measured.iter().all(alloc));
                        assert!(after.len() == 1000 && !after.iter().any(alloc));
                    }
                    Phase::Free => {
                        assert!(after.is_empty() && !measured.iter().any(alloc));
                        assert!(before.len() == 1000 && before.iter().all(alloc));
                    }
                }
            }
        }
        well_formed(&scaling(100, 1000, 32, 256));
    }

    #[test]
    fn sizes_stay_in_range() {
        let mut rng = Rng::spread(3);
        for _ in 0..10_000 {
            let s = Sizes::LogUniform(16, 16384).draw(&mut rng);
            assert!((16..=16384).contains(&s));
            let s = Sizes::Uniform(8, 256).draw(&mut rng);
            assert!((8..=256).contains(&s));
        }
    }

    #[test]
    fn churn_keeps_near_its_target() {
        let t = churn(5, 100_000, 1000, Sizes::Uniform(8, 256), 0.0);
        assert!(t.slots > 1000 && t.slots < 1400, "peak live {}", t.slots);
    }
}
