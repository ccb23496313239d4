//! Op sequences and the interpreter that runs them against an allocator.
//!
//! A byte string [`decode`]s to a sequence of [`Op`]s, so quickcheck (through
//! [`Ops`]'s `Arbitrary`) and cargo-fuzz (through [`run_bytes`]) drive the
//! same code. [`run`] plays the ops against an allocator and a
//! [`Shadow`] model and calls the allocator's invariant check after every op;
//! it returns the first failure as an `Err` with a description, and frees
//! everything still live at the end.
//!
//! Ops refer to live blocks by `slot`, taken modulo the number of live
//! blocks, so every decoded op is meaningful whatever came before it.

use crate::shadow::{self, Shadow};
use crate::Check;
use freespace_core::alloc::{Allocator, Layout};
use quickcheck::{Arbitrary, Gen};
use std::fmt;
use std::ptr::NonNull;

/// One step of a test trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `allocate` (or `allocate_zeroed`) `size` bytes aligned to `align`.
    Alloc {
        /// Requested size.
        size: usize,
        /// Requested alignment (a power of two).
        align: usize,
        /// Use `allocate_zeroed` and check the block is zeroed.
        zeroed: bool,
    },
    /// `deallocate` the live block in `slot`, passing a size `excess`/255 of
    /// the way from the requested size to the returned length (every
    /// fitting size must be accepted).
    Free {
        /// Which live block (modulo the number live).
        slot: usize,
        /// Where between requested size and returned length the size passed lies.
        excess: u8,
    },
    /// `grow` (or `grow_zeroed`) the block in `slot` by `by` bytes.
    Grow {
        /// Which live block.
        slot: usize,
        /// Bytes added to the requested size.
        by: usize,
        /// Use `grow_zeroed` and check the new bytes are zero.
        zeroed: bool,
    },
    /// `shrink` the block in `slot` to `keep`/255 of its requested size.
    Shrink {
        /// Which live block.
        slot: usize,
        /// Fraction of the requested size kept, out of 255.
        keep: u8,
    },
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Op::Alloc {
                size,
                align,
                zeroed,
            } => {
                write!(
                    f,
                    "alloc{} {size}B align {align}",
                    if zeroed { "_zeroed" } else { "" }
                )
            }
            Op::Free { slot, excess } => write!(f, "free slot {slot} (excess {excess}/255)"),
            Op::Grow { slot, by, zeroed } => write!(
                f,
                "grow{} slot {slot} by {by}B",
                if zeroed { "_zeroed" } else { "" }
            ),
            Op::Shrink { slot, keep } => write!(f, "shrink slot {slot} to {keep}/255"),
        }
    }
}

/// A size drawn from `class` (0..4): mostly small, now and then large.
fn size_of_class(class: u8, raw: u16) -> usize {
    match class % 8 {
        0..=3 => (raw % 129) as usize,  // 0..=128: the common case
        4 | 5 => (raw % 1025) as usize, // up to 1 KiB
        6 => (raw % 8193) as usize,     // up to 8 KiB
        _ => raw as usize,              // up to 64 KiB
    }
}

/// An alignment from one byte: mostly ≤ 16, sometimes up to 4096.
fn align_of_byte(b: u8) -> usize {
    if b < 200 {
        1 << (b % 5)
    } else {
        1 << (b % 13)
    }
}

/// Decodes a byte string into ops, 4 bytes per op; a short tail is ignored.
///
/// Any byte string is a valid trace, so a fuzzer can feed its input straight in.
///
/// ```
/// let ops = freespace_testkit::ops::decode(&[0, 10, 0, 3, 255, 0, 0, 0]);
/// assert_eq!(ops.len(), 2);
/// ```
pub fn decode(bytes: &[u8]) -> Vec<Op> {
    bytes
        .chunks_exact(4)
        .map(|c| {
            let raw = u16::from_le_bytes([c[1], c[2]]);
            match c[0] % 16 {
                0..=6 => Op::Alloc {
                    size: size_of_class(c[3], raw),
                    align: align_of_byte(c[3].rotate_left(3) ^ c[0]),
                    zeroed: c[0] == 6,
                },
                7..=11 => Op::Free {
                    slot: raw as usize,
                    excess: c[3],
                },
                12 | 13 => Op::Grow {
                    slot: raw as usize,
                    by: size_of_class(c[3], u16::from(c[2]) << 4),
                    zeroed: c[0] % 16 == 13,
                },
                _ => Op::Shrink {
                    slot: raw as usize,
                    keep: c[3],
                },
            }
        })
        .collect()
}

/// A quickcheck-generated op sequence (see [`decode`] for the distribution).
///
/// ```
/// use freespace_core::alloc::Global;
/// use freespace_testkit::ops::{self, Ops};
/// fn prop(ops: Ops) -> Result<(), String> {
///     ops::run(&Global, &ops.0, &|| Ok(())).map(|_| ())
/// }
/// quickcheck::QuickCheck::new().tests(20).quickcheck(prop as fn(Ops) -> Result<(), String>);
/// ```
#[derive(Debug, Clone)]
pub struct Ops(pub Vec<Op>);

impl Arbitrary for Op {
    fn arbitrary(g: &mut Gen) -> Self {
        let bytes: [u8; 4] = [
            u8::arbitrary(g),
            u8::arbitrary(g),
            u8::arbitrary(g),
            u8::arbitrary(g),
        ];
        decode(&bytes)[0]
    }
}

impl Arbitrary for Ops {
    fn arbitrary(g: &mut Gen) -> Self {
        let len = usize::arbitrary(g) % (g.size() * 4 + 1);
        Ops((0..len).map(|_| Op::arbitrary(g)).collect())
    }

    fn shrink(&self) -> Box<dyn Iterator<Item = Self>> {
        Box::new(self.0.shrink().map(Ops))
    }
}

/// What a run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Report {
    /// Ops executed.
    pub ops: usize,
    /// Successful allocations.
    pub allocs: usize,
    /// Allocations that returned `Err` (out of memory).
    pub failed_allocs: usize,
    /// Grows and shrinks that succeeded.
    pub resizes: usize,
    /// Grows and shrinks that returned `Err`.
    pub failed_resizes: usize,
    /// Largest sum of requested sizes live at once.
    pub peak_live_bytes: usize,
}

struct Live {
    ptr: NonNull<u8>,
    layout: Layout,
    len: usize,
}

/// How often the interpreter re-verifies every live block's contents.
const FULL_VERIFY_EVERY: usize = 16;

/// Decodes `bytes` and [`run`]s the trace.
pub fn run_bytes<A: Allocator + ?Sized>(
    alloc: &A,
    bytes: &[u8],
    check: Check<'_>,
) -> Result<Report, String> {
    run(alloc, &decode(bytes), check)
}

/// Decodes `bytes` and runs the trace like [`run`], but calls `check` only
/// after every `every`-th op (and after the last op, and after freeing
/// everything): the fuzzing entry point. A heap's `check()` walks the
/// whole heap, so calling it after each of a 4 KiB input's few hundred ops
/// made the run quadratic in its length; a fault is still caught, at most
/// `every - 1` ops after the op that made it. `every` of 0 counts as 1.
///
/// ```
/// use std::cell::Cell;
/// use freespace_core::alloc::Global;
/// let checks = Cell::new(0);
/// let check = || {
///     checks.set(checks.get() + 1);
///     Ok(())
/// };
/// let twenty_allocations = [0u8, 1, 0, 0].repeat(20);
/// freespace_testkit::ops::run_bytes_every(&Global, &twenty_allocations, &check, 8).unwrap();
/// // After ops #7 and #15, after the last op (#19), after freeing everything.
/// assert_eq!(checks.get(), 4);
///
/// // A heap broken from the start is caught at the first checkpoint.
/// let broken = freespace_core::Violation { invariant: "H1", addr: 0, what: "broken" };
/// let failing = || Err(broken);
/// let e = freespace_testkit::ops::run_bytes_every(&Global, &twenty_allocations, &failing, 8);
/// assert!(e.unwrap_err().starts_with("after op #7"));
/// ```
pub fn run_bytes_every<A: Allocator + ?Sized>(
    alloc: &A,
    bytes: &[u8],
    check: Check<'_>,
    every: usize,
) -> Result<Report, String> {
    run_every(alloc, &decode(bytes), check, every)
}

/// Plays `ops` against `alloc` and a shadow model, calling `check` after
/// every op; frees everything still live at the end and checks once more.
///
/// Fails on: a block overlapping another, out of bounds or misaligned; a
/// block's contents changing while it is live; a grow/shrink that loses
/// bytes, or that fails but still changes the block; a zeroed allocation or
/// grow that is not zero; an invariant violation; a panic inside the
/// allocator. Running out of memory is not a failure.
pub fn run<A: Allocator + ?Sized>(
    alloc: &A,
    ops: &[Op],
    check: Check<'_>,
) -> Result<Report, String> {
    run_every(alloc, ops, check, 1)
}

/// [`run`], calling `check` after every `every`-th op and the last one.
fn run_every<A: Allocator + ?Sized>(
    alloc: &A,
    ops: &[Op],
    check: Check<'_>,
    every: usize,
) -> Result<Report, String> {
    let every = every.max(1);
    let mut state = Interp {
        alloc,
        shadow: Shadow::new(),
        live: Vec::new(),
        report: Report::default(),
        seed: 1,
    };
    let result = (|| -> Result<(), String> {
        for (i, op) in ops.iter().enumerate() {
            state
                .step(*op)
                .map_err(|e| format!("op #{i} ({op}): {e}"))?;
            if i % every == every - 1 || i + 1 == ops.len() {
                check().map_err(|v| format!("after op #{i} ({op}): {v}"))?;
            }
            if i % FULL_VERIFY_EVERY == FULL_VERIFY_EVERY - 1 {
                // SAFETY: the shadow records exactly the blocks in `live`.
                unsafe { state.shadow.verify_all() }
                    .map_err(|e| format!("after op #{i} ({op}): {e}"))?;
            }
            state.report.ops += 1;
        }
        Ok(())
    })();
    let cleanup = state.free_all();
    result?;
    cleanup?;
    check().map_err(|v| format!("after freeing everything: {v}"))?;
    Ok(state.report)
}

struct Interp<'a, A: Allocator + ?Sized> {
    alloc: &'a A,
    shadow: Shadow,
    live: Vec<Live>,
    report: Report,
    seed: u8,
}

impl<A: Allocator + ?Sized> Interp<'_, A> {
    fn next_seed(&mut self) -> u8 {
        self.seed = self.seed.wrapping_mul(13).wrapping_add(7);
        self.seed
    }

    fn pick(&self, slot: usize) -> Option<usize> {
        (!self.live.is_empty()).then(|| slot % self.live.len())
    }

    /// Records `block` as the new contents of a live slot: shadow check + fill.
    fn adopt(
        &mut self,
        block: NonNull<[u8]>,
        layout: Layout,
        zeroed_from: Option<usize>,
    ) -> Result<Live, String> {
        let ptr = block.cast::<u8>();
        let len = block.len();
        if let Some(from) = zeroed_from {
            for i in from..layout.size().min(len) {
                // SAFETY: the allocator returned `len` bytes at `ptr`; `i < len`.
                let b = unsafe { ptr.add(i).read() };
                if b != 0 {
                    return Err(format!(
                        "zeroed block {:#x}: byte {i} is {b:#04x}",
                        ptr.as_ptr() as usize
                    ));
                }
            }
        }
        let seed = self.next_seed();
        // SAFETY: the allocator promised `len` writable bytes at `ptr`.
        unsafe {
            self.shadow
                .insert(ptr, layout.size(), len, layout.align(), seed)
        }?;
        Ok(Live { ptr, layout, len })
    }

    fn step(&mut self, op: Op) -> Result<(), String> {
        match op {
            Op::Alloc {
                size,
                align,
                zeroed,
            } => {
                let layout = Layout::from_size_align(size, align).map_err(|e| e.to_string())?;
                let got = if zeroed {
                    self.alloc.allocate_zeroed(layout)
                } else {
                    self.alloc.allocate(layout)
                };
                match got {
                    Ok(block) => {
                        let live = self.adopt(block, layout, zeroed.then_some(0))?;
                        self.live.push(live);
                        self.report.allocs += 1;
                        self.report.peak_live_bytes =
                            self.report.peak_live_bytes.max(self.shadow.live_bytes());
                    }
                    Err(_) => self.report.failed_allocs += 1,
                }
            }
            Op::Free { slot, excess } => {
                let Some(i) = self.pick(slot) else {
                    return Ok(());
                };
                let b = self.live.swap_remove(i);
                self.release(b, excess)?;
            }
            Op::Grow { slot, by, zeroed } => {
                let Some(i) = self.pick(slot) else {
                    return Ok(());
                };
                let b = &self.live[i];
                let (ptr, old, len) = (b.ptr, b.layout, b.len);
                let Ok(new) = Layout::from_size_align(old.size() + by, old.align()) else {
                    return Ok(());
                };
                // SAFETY: the block is live, allocated by `alloc` with `old`
                // (a size inside requested..=len also fits; `old` does), and
                // `new.size() >= old.size()`.
                let got = unsafe {
                    if zeroed {
                        self.alloc.grow_zeroed(ptr, old, new)
                    } else {
                        self.alloc.grow(ptr, old, new)
                    }
                };
                self.resized(i, got, old, new, len, zeroed)?;
            }
            Op::Shrink { slot, keep } => {
                let Some(i) = self.pick(slot) else {
                    return Ok(());
                };
                let b = &self.live[i];
                let (ptr, old, len) = (b.ptr, b.layout, b.len);
                let size = old.size() * keep as usize / 255;
                let new = Layout::from_size_align(size, old.align()).map_err(|e| e.to_string())?;
                // SAFETY: the block is live, allocated with `old`, and
                // `new.size() <= old.size()`.
                let got = unsafe { self.alloc.shrink(ptr, old, new) };
                self.resized(i, got, old, new, len, false)?;
            }
        }
        Ok(())
    }

    /// Checks the outcome of a grow or shrink of slot `i`.
    fn resized(
        &mut self,
        i: usize,
        got: Result<NonNull<[u8]>, freespace_core::alloc::AllocError>,
        old: Layout,
        new: Layout,
        old_len: usize,
        zeroed: bool,
    ) -> Result<(), String> {
        let old_ptr = self.live[i].ptr;
        let entry = self.shadow.get(old_ptr);
        match got {
            Err(_) => {
                // A failed resize leaves the block as it was.
                if old_len > 0 {
                    // SAFETY: the block is still live after a failed resize.
                    unsafe { self.shadow.verify(old_ptr) }
                        .map_err(|e| format!("failed resize changed the block: {e}"))?;
                }
                self.report.failed_resizes += 1;
            }
            Ok(block) => {
                let ptr = block.cast::<u8>();
                self.shadow.remove(old_ptr);
                // The old block is gone: from here on the slot holds the new
                // one, whatever the checks below find, so cleanup frees it.
                self.live[i] = Live {
                    ptr,
                    layout: new,
                    len: block.len(),
                };
                let kept = old.size().min(new.size()).min(old_len);
                if let Some(e) = entry {
                    // SAFETY: the allocator promised the first
                    // `min(old, new)` bytes were kept and `block.len() >=
                    // new.size() >= kept`.
                    unsafe { shadow::verify_fill(ptr, 0, kept, e.seed) }.map_err(|m| {
                        format!("resize {} -> {} lost contents: {m}", old.size(), new.size())
                    })?;
                }
                let live = self.adopt(block, new, zeroed.then_some(old_len))?;
                self.live[i] = live;
                self.report.resizes += 1;
                self.report.peak_live_bytes =
                    self.report.peak_live_bytes.max(self.shadow.live_bytes());
            }
        }
        Ok(())
    }

    fn release(&mut self, b: Live, excess: u8) -> Result<(), String> {
        if b.len > 0 {
            // SAFETY: the block is live until the deallocate below.
            unsafe { self.shadow.verify(b.ptr) }?;
        }
        self.shadow.remove(b.ptr);
        let spare = b.len.saturating_sub(b.layout.size());
        let size = b.layout.size() + spare * excess as usize / 255;
        let layout = Layout::from_size_align(size, b.layout.align()).map_err(|e| e.to_string())?;
        // SAFETY: the block is live, allocated by `alloc`; `layout` has its
        // alignment and a size between the request and the returned length.
        unsafe { self.alloc.deallocate(b.ptr, layout) };
        Ok(())
    }

    fn free_all(&mut self) -> Result<(), String> {
        // SAFETY: the shadow records exactly the blocks in `live`.
        let verified = unsafe { self.shadow.verify_all() };
        while let Some(b) = self.live.pop() {
            self.shadow.remove(b.ptr);
            // SAFETY: live block of `alloc`, freed with its own layout.
            unsafe { self.alloc.deallocate(b.ptr, b.layout) };
        }
        verified
    }
}
