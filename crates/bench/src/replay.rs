//! Replaying a recorded trace (`FREESPACE_TRACE`, the format of
//! [`freespace_stats::trace`]) against a subject, and what it says about
//! the subject's use of memory, the way Johnstone and Wilson (1998)
//! measured it.
//!
//! [`prepare`] turns the records into the slot-numbered ops of
//! [`crate::trace`]: sorted by `seq`, each block id mapped to a slot while
//! its block is live (so the replay is in order, on one thread, with ids
//! remapped to the subject's pointers). [`measure`] replays them against one
//! subject and reports [`Figures`]:
//!
//! - **footprint**: how far into the arena any block reached, from the
//!   end the subject grows from (arena subjects only): the highest block
//!   end over the arena's start, or the arena's end over the lowest block
//!   start, whichever is smaller — the heap's extent had it grown from that
//!   end with `sbrk` (J&W's "memory used by the allocator"). Its peak over
//!   the peak of live (requested) bytes is J&W's fragmentation measure
//!   (1.0 = none).
//! - **internal**: bytes granted over bytes requested, over the blocks
//!   live at the moment live bytes peak (subjects that report their
//!   granted length: the freespace blocks and stacks).
//! - **external at the peak**: `1 - largest free / total free` over the
//!   free blocks below the footprint at that moment (subjects that can
//!   walk their blocks); the untouched rest of the arena does not count.
//! - **failures**: allocations and resizes that returned null.
//!
//! ```
//! use freespace_bench::replay::{measure, prepare};
//! use freespace_bench::subjects::Heap;
//! use freespace_stats::trace::Record;
//!
//! // malloc 100 (id 1), malloc 50 (id 2), free 1, malloc 60 (id 3).
//! let mut records = vec![
//!     Record::alloc(0, 1, 100, 16, 0),
//!     Record::alloc(1, 2, 50, 16, 0),
//!     Record::free(2, 1, 0),
//!     Record::alloc(3, 3, 60, 16, 0),
//! ];
//! let p = prepare(&mut records).unwrap();
//! assert_eq!((p.peak_live, p.peak_at, p.appended_frees), (150, 2, 2));
//! let figures = measure(&Heap(freespace_core::alloc::Global), &p, None);
//! assert_eq!(figures.failures, 0);
//! assert_eq!(figures.requested_at_peak, 150);
//! ```

use std::cell::Cell;
use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use freespace_core::{BlockInfo, BlockState, Inspect};
use freespace_stats::trace::{self as recorded, Record, TraceError};
use freespace_stats::{Fragmentation, SvgMap};

use crate::subjects::{with_subject, Memory, Subject, Visit, SUBJECTS};
use crate::trace::Op;
use crate::workloads::{measured_replay, thread_cpu_ns, EMPTY};

#[cfg(test)]
mod tests;

/// Why a trace cannot be replayed.
///
/// ```
/// use freespace_bench::replay::ReplayError;
/// let e = ReplayError::LiveId { seq: 4, id: 0x20 };
/// assert_eq!(e.to_string(), "call 4 allocates block 0x20, which is still live");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplayError {
    /// The file is not a readable trace.
    Read(TraceError),
    /// A free or realloc of a block id that is not live.
    UnknownId {
        /// The record's `seq`.
        seq: u64,
        /// The id.
        id: u64,
    },
    /// An allocation (or a realloc's new block) under an id still live.
    LiveId {
        /// The record's `seq`.
        seq: u64,
        /// The id.
        id: u64,
    },
    /// A size or alignment beyond what a replay op holds (4 GiB).
    TooLarge {
        /// The record's `seq`.
        seq: u64,
    },
}

impl fmt::Display for ReplayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ReplayError::Read(e) => e.fmt(f),
            ReplayError::UnknownId { seq, id } => {
                write!(
                    f,
                    "call {seq} frees or resizes block {id:#x}, which is not live \
                     (allocated before tracing began? --skip-unknown replays the rest)"
                )
            }
            ReplayError::LiveId { seq, id } => {
                write!(f, "call {seq} allocates block {id:#x}, which is still live")
            }
            ReplayError::TooLarge { seq } => {
                write!(
                    f,
                    "call {seq} asks for 4 GiB or more, beyond what a replay holds"
                )
            }
        }
    }
}

impl std::error::Error for ReplayError {}

impl From<TraceError> for ReplayError {
    fn from(e: TraceError) -> Self {
        ReplayError::Read(e)
    }
}

/// A recorded trace ready to replay.
///
/// ```
/// use freespace_bench::replay::prepare;
/// use freespace_stats::trace::Record;
/// let p = prepare(&mut [Record::alloc(0, 1, 24, 16, 0), Record::free(1, 1, 0)]).unwrap();
/// assert_eq!((p.ops.len(), p.slots, p.peak_live, p.peak_at), (2, 1, 24, 1));
/// ```
///
/// # Invariants
/// - BENCH-P1: `ops` is well formed: an `Alloc` fills an empty slot below
///   `slots`, `Free` and `Realloc` name a full one, and every slot is empty
///   at the end.
/// - BENCH-P2: after the first `peak_at` ops the live requested bytes are
///   `peak_live`, and never more at any point.
#[derive(Clone, Debug)]
pub struct Prepared {
    /// The ops, in call order.
    pub ops: Vec<Op>,
    /// Slots the replay needs (the peak number of live blocks).
    pub slots: usize,
    /// Records in the trace.
    pub records: usize,
    /// The peak of live requested bytes (a request of 0 counts as 1).
    pub peak_live: usize,
    /// How many ops have run when the live bytes first reach their peak.
    pub peak_at: usize,
    /// Frees added at the end for blocks the program never freed.
    pub appended_frees: usize,
    /// Frees of unknown blocks skipped, and reallocs of unknown blocks
    /// replayed as allocations ([`prepare_with`] with `skip_unknown`).
    pub skipped_unknown: usize,
}

/// Reads, sorts and [`prepare`]s the trace in `bytes`.
///
/// ```
/// use freespace_bench::replay::{read, ReplayError};
/// use freespace_stats::trace::{Header, Record};
/// let mut file = Header::CURRENT.encode().to_vec();
/// file.extend(Record::free(0, 7, 0).encode());
/// assert_eq!(read(&file).unwrap_err(), ReplayError::UnknownId { seq: 0, id: 7 });
/// assert!(read(&file[..20]).unwrap_err().to_string().starts_with("trace truncated"));
/// ```
pub fn read(bytes: &[u8]) -> Result<Prepared, ReplayError> {
    read_with(bytes, false)
}

/// [`read`], then [`prepare_with`] `skip_unknown`.
///
/// ```
/// use freespace_bench::replay::read_with;
/// use freespace_stats::trace::{Header, Record};
/// let mut file = Header::CURRENT.encode().to_vec();
/// file.extend(Record::free(0, 7, 0).encode());
/// assert_eq!(read_with(&file, true).unwrap().skipped_unknown, 1);
/// ```
pub fn read_with(bytes: &[u8], skip_unknown: bool) -> Result<Prepared, ReplayError> {
    let mut records = recorded::records(bytes)?.collect::<Result<Vec<Record>, _>>()?;
    prepare_with(&mut records, skip_unknown)
}

/// Sorts `records` by `seq` and maps block ids to slots.
///
/// A request of 0 bytes is replayed as 1 (the subjects never see size 0);
/// blocks still live at the end are freed by appended ops.
///
/// ```
/// use freespace_bench::replay::{prepare, ReplayError};
/// use freespace_stats::trace::Record;
/// let mut twice = vec![Record::alloc(0, 5, 8, 8, 0), Record::alloc(1, 5, 8, 8, 0)];
/// assert_eq!(prepare(&mut twice).unwrap_err(), ReplayError::LiveId { seq: 1, id: 5 });
/// ```
pub fn prepare(records: &mut [Record]) -> Result<Prepared, ReplayError> {
    prepare_with(records, false)
}

/// [`prepare`]; with `skip_unknown`, a free of a block id that is not live
/// is skipped and a realloc of one replayed as an allocation, counted in
/// [`Prepared::skipped_unknown`] (a program's blocks from before tracing
/// began: the shim starts tracing in its constructor, after the dynamic
/// loader's first allocations), instead of an error.
///
/// ```
/// use freespace_bench::replay::prepare_with;
/// use freespace_stats::trace::Record;
/// let mut early = vec![Record::realloc(0, 3, 4, 64, 0), Record::free(1, 4, 0), Record::free(2, 9, 0)];
/// let p = prepare_with(&mut early, true).unwrap();
/// assert_eq!((p.skipped_unknown, p.ops.len(), p.peak_live), (2, 2, 64));
/// ```
pub fn prepare_with(records: &mut [Record], skip_unknown: bool) -> Result<Prepared, ReplayError> {
    records.sort_by_key(|r| r.seq);
    let mut skipped_unknown = 0;
    let mut ops = Vec::with_capacity(records.len() + 16);
    // id -> (slot, size)
    let mut live: HashMap<u64, (u32, u32)> = HashMap::new();
    let mut empty: Vec<u32> = Vec::new();
    let mut slots = 0u32;
    let (mut live_bytes, mut peak_live, mut peak_at) = (0usize, 0usize, 0usize);
    for r in records.iter() {
        let size =
            u32::try_from(r.size.max(1)).map_err(|_| ReplayError::TooLarge { seq: r.seq })?;
        match r.op {
            recorded::Op::Alloc => {
                let align =
                    u32::try_from(r.align()).map_err(|_| ReplayError::TooLarge { seq: r.seq })?;
                let slot = empty.pop().unwrap_or_else(|| {
                    slots += 1;
                    slots - 1
                });
                if live.insert(r.id, (slot, size)).is_some() {
                    return Err(ReplayError::LiveId {
                        seq: r.seq,
                        id: r.id,
                    });
                }
                live_bytes += size as usize;
                ops.push(Op::Alloc { slot, size, align });
            }
            recorded::Op::Free => match live.remove(&r.id) {
                Some((slot, old)) => {
                    live_bytes -= old as usize;
                    empty.push(slot);
                    ops.push(Op::Free { slot });
                }
                None if skip_unknown => skipped_unknown += 1,
                None => {
                    return Err(ReplayError::UnknownId {
                        seq: r.seq,
                        id: r.id,
                    })
                }
            },
            recorded::Op::Realloc => {
                let (slot, old) = match live.remove(&r.id) {
                    Some(known) => known,
                    None if skip_unknown => {
                        skipped_unknown += 1;
                        let slot = empty.pop().unwrap_or_else(|| {
                            slots += 1;
                            slots - 1
                        });
                        // An allocation at the C library's alignment.
                        ops.push(Op::Alloc {
                            slot,
                            size,
                            align: 16,
                        });
                        (slot, 0)
                    }
                    None => {
                        return Err(ReplayError::UnknownId {
                            seq: r.seq,
                            id: r.id,
                        })
                    }
                };
                if live.insert(r.new_id, (slot, size)).is_some() {
                    return Err(ReplayError::LiveId {
                        seq: r.seq,
                        id: r.new_id,
                    });
                }
                live_bytes = live_bytes - old as usize + size as usize;
                if old != 0 {
                    ops.push(Op::Realloc { slot, size });
                }
            }
        }
        if live_bytes > peak_live {
            (peak_live, peak_at) = (live_bytes, ops.len());
        }
    }
    let mut left: Vec<u32> = live.values().map(|&(slot, _)| slot).collect();
    left.sort_unstable();
    let appended_frees = left.len();
    ops.extend(left.into_iter().map(|slot| Op::Free { slot }));
    Ok(Prepared {
        ops,
        slots: slots as usize,
        records: records.len(),
        peak_live,
        peak_at,
        appended_frees,
        skipped_unknown,
    })
}

/// What one replay showed of one subject.
///
/// ```
/// use freespace_bench::replay::Figures;
/// let f = Figures::default();
/// assert_eq!((f.footprint_ratio(100), f.internal(), f.failures), (None, None, 0));
/// ```
#[derive(Clone, Debug, Default)]
pub struct Figures {
    /// The highest extent of the heap over the arena's start (arena
    /// subjects only).
    pub peak_footprint: Option<usize>,
    /// Bytes granted to the blocks live at the peak of live bytes (when
    /// the subject reports what it grants).
    pub granted_at_peak: Option<usize>,
    /// Bytes requested by the blocks live at that moment (the trace's peak
    /// less what failed).
    pub requested_at_peak: usize,
    /// External fragmentation at that moment, below the footprint (when
    /// the subject can walk its blocks).
    pub external_at_peak: Option<f64>,
    /// Allocations and resizes that returned null.
    pub failures: usize,
    /// The replay ran out of its CPU-time budget after this many ops and
    /// stopped (the other figures cover the ops before).
    pub stopped_at: Option<usize>,
    /// `(ops run, footprint)`, at most `samples + 1` points, for the plot.
    pub curve: Vec<(usize, usize)>,
    /// The heap map at the peak of live bytes (SVG), if asked for and the
    /// subject can walk its blocks.
    pub peak_map: Option<String>,
}

impl Figures {
    /// Peak footprint over peak live bytes (J&W: 1.0 is no fragmentation).
    ///
    /// ```
    /// use freespace_bench::replay::Figures;
    /// let f = Figures { peak_footprint: Some(300), ..Figures::default() };
    /// assert_eq!(f.footprint_ratio(200), Some(1.5));
    /// ```
    pub fn footprint_ratio(&self, peak_live: usize) -> Option<f64> {
        Some(self.peak_footprint? as f64 / peak_live.max(1) as f64)
    }

    /// Granted over requested bytes at the peak (1.0: no internal
    /// fragmentation).
    ///
    /// ```
    /// use freespace_bench::replay::Figures;
    /// let f = Figures { granted_at_peak: Some(160), requested_at_peak: 150, ..Figures::default() };
    /// assert!((f.internal().unwrap() - 160.0 / 150.0).abs() < 1e-12);
    /// ```
    pub fn internal(&self) -> Option<f64> {
        Some(self.granted_at_peak? as f64 / self.requested_at_peak.max(1) as f64)
    }
}

/// A live block of the measuring replay (null `ptr`: its allocation
/// failed, so the ops on it are skipped).
#[derive(Clone, Copy)]
struct Block {
    ptr: *mut u8,
    size: u32,
    align: u32,
    granted: Option<usize>,
}

impl Block {
    fn layout(&self) -> std::alloc::Layout {
        // SAFETY: size and align came from `prepare`: align a power of two
        // below 2^32, size below 2^32.
        unsafe {
            std::alloc::Layout::from_size_align_unchecked(self.size as usize, self.align as usize)
        }
    }
}

/// The free blocks of a subject below `hi` (and from `lo`), clipped to
/// that range.
struct Below<'a, S: ?Sized> {
    subject: &'a S,
    lo: usize,
    hi: usize,
    walked: Cell<bool>,
}

impl<S: Subject + ?Sized> Inspect for Below<'_, S> {
    fn inspect(&self, visit: &mut dyn FnMut(BlockInfo)) {
        let walked = self.subject.inspect(&mut |b: BlockInfo| {
            let start = b.addr.max(self.lo);
            let end = b.addr.saturating_add(b.len).min(self.hi);
            if start < end {
                visit(BlockInfo {
                    addr: start,
                    len: end - start,
                    state: b.state,
                });
            }
        });
        self.walked.set(walked);
    }
}

/// How a measuring replay runs.
///
/// ```
/// let s = freespace_bench::replay::Settings::default();
/// assert_eq!((s.samples, s.map), (0, false));
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    /// Points of the footprint curve to keep (0: none).
    pub samples: usize,
    /// CPU time the replay may take before it stops.
    pub budget: Duration,
    /// Draw an SVG heap map at the peak of live bytes ([`Figures::peak_map`]),
    /// if the subject can walk its blocks.
    pub map: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            samples: 0,
            budget: Duration::MAX,
            map: false,
        }
    }
}

/// Cells per row and rows of a heap map at the peak.
const MAP_COLUMNS: usize = 180;
const MAP_ROWS: usize = 40;

/// An SVG heap map of `heap` between `lo` and `hi`, coarsened to
/// `MAP_ROWS` × `MAP_COLUMNS` cells (see [`Coarse`]).
fn coarse_map<I: Inspect + ?Sized>(heap: &I, lo: usize, hi: usize) -> Option<String> {
    let cells = MAP_ROWS * MAP_COLUMNS;
    let cell = (hi.saturating_sub(lo)).div_ceil(cells).div_ceil(16).max(1) * 16;
    let coarse = Coarse {
        inner: heap,
        lo,
        cell,
        cells,
    };
    let title =
        format!("at the peak of live bytes ({cell}-byte cells, each in its majority state)");
    let mut svg = String::new();
    SvgMap::new(cell * MAP_COLUMNS)
        .title(&title)
        .render(&coarse, &mut svg)
        .ok()?;
    Some(svg)
}

/// A heap walk coarsened to `cells` cells of `cell` bytes from `lo`: each
/// cell shows the state covering most of its bytes, runs of cells in one
/// state are merged, cells nothing covers are left out. A map of a heap
/// with a million blocks stays a few hundred kilobytes.
///
/// # Invariants
/// - BENCH-C1: `cell` is a multiple of 16 and `cells * cell` covers the range
///   mapped.
struct Coarse<'a, I: ?Sized> {
    inner: &'a I,
    lo: usize,
    cell: usize,
    cells: usize,
}

impl<I: Inspect + ?Sized> Inspect for Coarse<'_, I> {
    fn inspect(&self, visit: &mut dyn FnMut(BlockInfo)) {
        // Bytes per cell in each state: free, used, metadata.
        let mut bytes = vec![[0usize; 3]; self.cells];
        self.inner.inspect(&mut |b: BlockInfo| {
            let state = match b.state {
                BlockState::Free => 0,
                BlockState::Used => 1,
                _ => 2,
            };
            let (start, end) = (b.addr.max(self.lo), b.addr.saturating_add(b.len));
            let mut at = start;
            while at < end {
                let i = (at - self.lo) / self.cell;
                let Some(cell) = bytes.get_mut(i) else { break };
                let cell_end = self.lo + (i + 1) * self.cell;
                cell[state] += cell_end.min(end) - at;
                at = cell_end;
            }
        });
        let mut run: Option<BlockInfo> = None;
        for (i, b) in bytes.iter().enumerate() {
            let addr = self.lo + i * self.cell;
            let state = match (0..3).filter(|&k| b[k] > 0).max_by_key(|&k| b[k]) {
                None => None,
                Some(0) => Some(BlockState::Free),
                Some(1) => Some(BlockState::Used),
                Some(_) => Some(BlockState::Meta),
            };
            match (run.as_mut(), state) {
                (Some(r), Some(s)) if r.state == s && r.addr + r.len == addr => r.len += self.cell,
                (_, s) => {
                    if let Some(r) = run.take() {
                        visit(r);
                    }
                    run = s.map(|state| BlockInfo {
                        addr,
                        len: self.cell,
                        state,
                    });
                }
            }
        }
        if let Some(r) = run {
            visit(r);
        }
    }
}

/// Replays `p` against `s` and measures it. `arena` is the arena's first
/// address and length for an arena subject (`None` for one that gets
/// memory from the OS: no footprint).
///
/// ```
/// use freespace_bench::replay::{measure, prepare};
/// use freespace_bench::subjects::Heap;
/// use freespace_stats::trace::Record;
/// let p = prepare(&mut [Record::alloc(0, 1, 8, 8, 0)]).unwrap();
/// let f = measure(&Heap(freespace_core::alloc::Global), &p, None);
/// assert_eq!((f.failures, f.granted_at_peak.is_some()), (0, true));
/// ```
pub fn measure<S: Subject + ?Sized>(s: &S, p: &Prepared, arena: Option<(usize, usize)>) -> Figures {
    measure_with(s, p, arena, &Settings::default(), &mut |_| {})
}

/// [`measure`] with `settings`, calling `progress(ops done)` every 4096
/// ops, and stopping (with [`Figures::stopped_at`]) once it has taken the
/// budget.
///
/// ```
/// use freespace_bench::replay::{measure_with, prepare, Settings};
/// use freespace_bench::subjects::Heap;
/// use freespace_stats::trace::Record;
/// let p = prepare(&mut [Record::alloc(0, 1, 8, 8, 0)]).unwrap();
/// let mut done = 0;
/// let heap = Heap(freespace_core::alloc::Global);
/// measure_with(&heap, &p, None, &Settings::default(), &mut |n| done += n);
/// assert_eq!(done, 2);
/// ```
pub fn measure_with<S: Subject + ?Sized>(
    s: &S,
    p: &Prepared,
    arena: Option<(usize, usize)>,
    settings: &Settings,
    progress: &mut dyn FnMut(usize),
) -> Figures {
    let Settings {
        samples,
        budget,
        map,
    } = *settings;
    let deadline = thread_cpu_ns().saturating_add(budget.as_nanos().min(u64::MAX as u128) as u64);
    let (base, end) = match arena {
        Some((base, len)) => (base, base + len),
        None => (0, usize::MAX),
    };
    let empty = Block {
        ptr: std::ptr::null_mut(),
        size: 1,
        align: 1,
        granted: None,
    };
    let mut blocks = vec![empty; p.slots];
    let mut f = Figures::default();
    // The highest block end and the lowest block start so far.
    let (mut top, mut bottom) = (base, end);
    let footprint = |top: usize, bottom: usize| (top - base).min(end - bottom);
    let every = if samples == 0 {
        usize::MAX
    } else {
        p.ops.len().div_ceil(samples).max(1)
    };
    let end_of = |b: &Block| b.ptr.addr() + b.granted.unwrap_or(b.size as usize);
    for (chunk_index, chunk) in p.ops.chunks(4096).enumerate() {
        if thread_cpu_ns() > deadline {
            // The live blocks are abandoned with the subject.
            f.stopped_at = Some(chunk_index * 4096);
            break;
        }
        for (i, op) in chunk.iter().enumerate() {
            let done = chunk_index * 4096 + i + 1;
            match *op {
                Op::Alloc { slot, size, align } => {
                    let mut b = Block {
                        ptr: std::ptr::null_mut(),
                        size,
                        align,
                        granted: None,
                    };
                    (b.ptr, b.granted) = s.alloc_granted(b.layout());
                    if b.ptr.is_null() {
                        f.failures += 1;
                    } else {
                        top = top.max(end_of(&b));
                        bottom = bottom.min(b.ptr.addr());
                    }
                    blocks[slot as usize] = b;
                }
                Op::Free { slot } => {
                    let b = std::mem::replace(&mut blocks[slot as usize], empty);
                    if !b.ptr.is_null() {
                        // SAFETY: a live block of `s` with this layout (BENCH-P1).
                        unsafe { s.dealloc(b.ptr, b.layout()) };
                    }
                }
                Op::Realloc { slot, size } => {
                    let b = blocks[slot as usize];
                    let (ptr, granted) = if b.ptr.is_null() {
                        s.alloc_granted(Block { size, ..b }.layout())
                    } else {
                        // SAFETY: a live block of `s` with this layout (BENCH-P1);
                        // `size > 0`.
                        unsafe { s.realloc_granted(b.ptr, b.layout(), size as usize) }
                    };
                    if ptr.is_null() {
                        f.failures += 1;
                    } else {
                        let nb = Block {
                            ptr,
                            size,
                            granted,
                            ..b
                        };
                        top = top.max(end_of(&nb));
                        bottom = bottom.min(ptr.addr());
                        blocks[slot as usize] = nb;
                    }
                }
            }
            if done == p.peak_at {
                let live = blocks.iter().filter(|b| !b.ptr.is_null());
                f.requested_at_peak = live.clone().map(|b| b.size as usize).sum();
                f.granted_at_peak = live.map(|b| b.granted).sum();
                if arena.is_some() {
                    // The heap as far as it reached, from the end it grows from.
                    let (lo, hi) = if top - base <= end - bottom {
                        (base, top)
                    } else {
                        (bottom, end)
                    };
                    let below = Below {
                        subject: s,
                        lo,
                        hi,
                        walked: Cell::new(false),
                    };
                    let frag = Fragmentation::of(&below);
                    if below.walked.get() {
                        f.external_at_peak = Some(frag.external());
                        if map {
                            f.peak_map = coarse_map(&below, lo, hi);
                        }
                    }
                }
            }
            if arena.is_some() && (done % every == 0 || done == p.ops.len()) {
                f.curve.push((done, footprint(top, bottom)));
            }
        }
        progress(chunk.len());
    }
    f.peak_footprint = arena.map(|_| footprint(top, bottom));
    f
}

/// Builds subject `index` of [`SUBJECTS`] (an arena subject over the first
/// `arena_len` bytes of `memory`) and [`measure_with`]s it.
///
/// ```
/// use freespace_bench::replay::{measure_subject, prepare, time_subject, Settings};
/// use freespace_bench::subjects::{index_of, Memory};
/// use freespace_stats::trace::Record;
/// use std::time::Duration;
///
/// let p = prepare(&mut [Record::alloc(0, 1, 100, 16, 0)]).unwrap();
/// let mut memory = Memory::new(1 << 16);
/// let best = index_of("best-fit").unwrap();
/// let f = measure_subject(best, &mut memory, 1 << 16, &p, &Settings::default(), &mut |_| {});
/// // A 64-byte region header, then a 16-byte chunk header and 112 bytes.
/// assert_eq!(f.peak_footprint, Some(192));
/// assert!(time_subject(best, &mut memory, 1 << 16, &p, Duration::from_secs(1)).is_some());
/// ```
pub fn measure_subject(
    index: usize,
    memory: &mut Memory,
    arena_len: usize,
    p: &Prepared,
    settings: &Settings,
    progress: &mut dyn FnMut(usize),
) -> Figures {
    struct Visitor<'a> {
        p: &'a Prepared,
        arena: Option<(usize, usize)>,
        settings: &'a Settings,
        progress: &'a mut dyn FnMut(usize),
        figures: Figures,
    }
    impl Visit for Visitor<'_> {
        fn single<S: Subject>(&mut self, s: &S) {
            self.figures = measure_with(s, self.p, self.arena, self.settings, self.progress);
        }
        fn shared<S: Subject + Sync>(&mut self, s: &S) {
            self.single(s)
        }
    }
    let arena = SUBJECTS[index].arena.then(|| (memory.addr(), arena_len));
    let mut v = Visitor {
        p,
        arena,
        settings,
        progress,
        figures: Figures::default(),
    };
    with_subject(index, memory, arena_len, false, &mut v);
    v.figures
}

/// Times a replay of `p` against subject `index` (built as in
/// [`measure_subject`]): thread CPU nanoseconds per op, or `None` when an
/// allocation failed (the replay stops there) or it took longer than
/// `budget`. (Example: [`measure_subject`]'s.)
pub fn time_subject(
    index: usize,
    memory: &mut Memory,
    arena_len: usize,
    p: &Prepared,
    budget: Duration,
) -> Option<f64> {
    struct Visitor<'a> {
        p: &'a Prepared,
        budget: Duration,
        ns_per_op: Option<f64>,
    }
    impl Visit for Visitor<'_> {
        fn single<S: Subject>(&mut self, s: &S) {
            let mut slots = vec![EMPTY; self.p.slots];
            let start = thread_cpu_ns();
            let deadline = start + self.budget.as_nanos() as u64;
            if measured_replay(s, &self.p.ops, &mut slots, deadline).is_ok() {
                let ns = thread_cpu_ns() - start;
                self.ns_per_op = Some(ns as f64 / self.p.ops.len().max(1) as f64);
            }
        }
        fn shared<S: Subject + Sync>(&mut self, s: &S) {
            self.single(s)
        }
    }
    let mut v = Visitor {
        p,
        budget,
        ns_per_op: None,
    };
    with_subject(index, memory, arena_len, false, &mut v);
    v.ns_per_op
}

/// Line colours of [`footprint_svg`], one per subject in turn.
const PALETTE: [&str; 14] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf", "#393b79", "#637939", "#8c6d31", "#843c39",
];

/// An SVG line chart of footprint over time: one line per `(name, curve)`
/// (a [`Figures::curve`]), the ops on x, the footprint in MiB on y, a
/// dashed line at `peak_live`.
///
/// ```
/// let svg = freespace_bench::replay::footprint_svg(
///     "tiny",
///     100,
///     &[("first-fit", &[(1, 50), (2, 120)][..]), ("buddy", &[(1, 64), (2, 256)][..])],
/// );
/// assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
/// assert_eq!(svg.matches("<polyline").count(), 2);
/// ```
pub fn footprint_svg(title: &str, peak_live: usize, lines: &[(&str, &[(usize, usize)])]) -> String {
    use std::fmt::Write as _;
    let (w, h, left, right, top, bottom) = (760.0, 420.0, 70.0, 180.0, 40.0, 40.0);
    let max_x = lines
        .iter()
        .flat_map(|(_, c)| c.iter().map(|p| p.0))
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let max_y = lines
        .iter()
        .flat_map(|(_, c)| c.iter().map(|p| p.1))
        .chain([peak_live])
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let x = |v: f64| left + v / max_x * (w - left - right);
    let y = |v: f64| h - bottom - v / max_y * (h - top - bottom);
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(out, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    let _ = writeln!(
        out,
        r#"<text x="{left}" y="20" font-size="14">{}: footprint over time</text>"#,
        xml(title)
    );
    for i in 0..=4 {
        let v = max_y * i as f64 / 4.0;
        let _ = writeln!(
            out,
            r##"<line x1="{left}" y1="{0:.1}" x2="{1:.1}" y2="{0:.1}" stroke="#dddddd"/><text x="{2:.1}" y="{3:.1}" text-anchor="end">{4:.1} MiB</text>"##,
            y(v),
            w - right,
            left - 4.0,
            y(v) + 4.0,
            v / (1 << 20) as f64
        );
    }
    let _ = writeln!(
        out,
        r#"<text x="{0:.1}" y="{1:.1}" text-anchor="middle">ops replayed (of {2})</text>"#,
        (left + w - right) / 2.0,
        h - 10.0,
        max_x as usize
    );
    let _ = writeln!(
        out,
        r#"<line x1="{left}" y1="{0:.1}" x2="{1:.1}" y2="{0:.1}" stroke="black" stroke-dasharray="4 3"/>"#,
        y(peak_live as f64),
        w - right
    );
    for (i, (name, curve)) in lines.iter().enumerate() {
        let colour = PALETTE[i % PALETTE.len()];
        let points: Vec<String> = curve
            .iter()
            .map(|&(a, b)| format!("{:.1},{:.1}", x(a as f64), y(b as f64)))
            .collect();
        let _ = writeln!(
            out,
            r#"<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{}"/>"#,
            points.join(" ")
        );
        let ly = top + 14.0 * i as f64;
        let _ = writeln!(
            out,
            r#"<line x1="{0:.1}" y1="{ly:.1}" x2="{1:.1}" y2="{ly:.1}" stroke="{colour}" stroke-width="3"/><text x="{2:.1}" y="{3:.1}">{4}</text>"#,
            w - right + 10.0,
            w - right + 30.0,
            w - right + 35.0,
            ly + 4.0,
            xml(name)
        );
    }
    let ly = top + 14.0 * lines.len() as f64;
    let _ = writeln!(
        out,
        r#"<line x1="{0:.1}" y1="{ly:.1}" x2="{1:.1}" y2="{ly:.1}" stroke="black" stroke-dasharray="4 3"/><text x="{2:.1}" y="{3:.1}">peak live bytes</text>"#,
        w - right + 10.0,
        w - right + 30.0,
        w - right + 35.0,
        ly + 4.0
    );
    out.push_str("</svg>\n");
    out
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
