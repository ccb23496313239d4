//! [`Fragmentation`]: how well a heap's free memory can serve the next
//! request, from one [`Inspect`] walk.
//!
//! The totals are freespace-core's [`HeapSummary`]; this adds the ratios a
//! reader wants and how the free memory is spread over block sizes.
//!
//! ```text
//!   free bytes 96 in 3 blocks:  [ 64 ][ 16 ][ 16 ]   largest 64
//!   external fragmentation = 1 - largest / free = 1 - 64/96 = 0.33
//!   a 65-byte request fails although 96 bytes are free
//! ```
//!
//! ```
//! use freespace_core::{BlockInfo, BlockState, Inspect};
//! use freespace_stats::fragmentation::Fragmentation;
//!
//! struct Heap;
//! impl Inspect for Heap {
//!     fn inspect(&self, visit: &mut dyn FnMut(BlockInfo)) {
//!         for (addr, len, state) in [(0, 64, BlockState::Free), (64, 8, BlockState::Used),
//!                                    (72, 16, BlockState::Free), (88, 8, BlockState::Used),
//!                                    (96, 16, BlockState::Free)] {
//!             visit(BlockInfo { addr, len, state });
//!         }
//!     }
//! }
//! let f = Fragmentation::of(&Heap);
//! assert_eq!((f.free_bytes(), f.free_blocks(), f.largest_free()), (96, 3, 64));
//! assert!((f.external() - 1.0 / 3.0).abs() < 1e-12);
//! ```

use core::cell::Cell;
use core::fmt;

use freespace_core::{BlockInfo, BlockState, HeapSummary, Inspect};

use crate::stats::{write_pow2, Label, SIZE_CLASSES};

#[cfg(test)]
mod tests;

/// A heap's free memory, how it is split, and how much of the heap is in
/// use, from one walk.
///
/// - **external fragmentation** ([`external`](Self::external)):
///   `1 - largest_free / free_bytes`. 0 when all free memory is one block
///   (any request up to the free total fits); towards 1 when it is in many
///   small pieces (requests fail although the bytes are there).
/// - **utilisation** ([`utilisation`](Self::utilisation)): used bytes over
///   every byte the walk covered (used + free + metadata).
/// - **metadata overhead** ([`meta_share`](Self::meta_share)): metadata
///   bytes over every byte covered.
/// - **internal fragmentation** ([`internal_bytes`](Self::internal_bytes)):
///   bytes in used blocks beyond what was requested; needs the requested
///   total, which a [`Stats`](crate::Stats) layer in front of the heap knows.
///
/// # Example
///
/// ```
/// use freespace_core::{BlockInfo, BlockState, Inspect};
/// use freespace_stats::Fragmentation;
///
/// struct Heap;
/// impl Inspect for Heap {
///     fn inspect(&self, visit: &mut dyn FnMut(BlockInfo)) {
///         let mut at = 0x1000;
///         for (len, state) in [(16, BlockState::Meta), (48, BlockState::Used),
///                              (64, BlockState::Free), (112, BlockState::Used),
///                              (16, BlockState::Free), (32, BlockState::Used),
///                              (16, BlockState::Free)] {
///             visit(BlockInfo { addr: at, len, state });
///             at += len;
///         }
///     }
/// }
/// let f = Fragmentation::of(&Heap);
/// assert_eq!((f.free_bytes(), f.free_blocks(), f.largest_free()), (96, 3, 64));
/// assert!((f.external() - (1.0 - 64.0 / 96.0)).abs() < 1e-12);
/// assert!((f.utilisation() - 192.0 / 304.0).abs() < 1e-12);
/// println!("{f}");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fragmentation {
    /// The walk's totals (freespace-core computes them).
    pub summary: HeapSummary,
    /// Free blocks by size: entry `k` counts the free blocks of
    /// `2^k ..= 2^(k+1) - 1` bytes (the largest power of two each can
    /// serve).
    pub free_histogram: [usize; SIZE_CLASSES],
}

impl Fragmentation {
    /// Walks `heap` once.
    ///
    /// ```
    /// use freespace_core::{BlockInfo, Inspect};
    /// use freespace_stats::Fragmentation;
    /// struct Empty;
    /// impl Inspect for Empty { fn inspect(&self, _: &mut dyn FnMut(BlockInfo)) {} }
    /// let f = Fragmentation::of(&Empty);
    /// assert_eq!((f.free_bytes(), f.external(), f.utilisation()), (0, 0.0, 0.0));
    /// ```
    pub fn of<I: Inspect + ?Sized>(heap: &I) -> Self {
        let histogram = Cell::new([0usize; SIZE_CLASSES]);
        // One walk feeds both: the free blocks are binned on their way to
        // `HeapSummary::of`.
        let summary = HeapSummary::of(&Tee {
            heap,
            free: &histogram,
        });
        Self {
            summary,
            free_histogram: histogram.get(),
        }
    }

    /// Bytes in free blocks.
    ///
    /// ```
    /// # use freespace_core::{BlockInfo, BlockState, Inspect};
    /// # struct H;
    /// # impl Inspect for H { fn inspect(&self, v: &mut dyn FnMut(BlockInfo)) {
    /// #     v(BlockInfo { addr: 0, len: 40, state: BlockState::Free }); } }
    /// assert_eq!(freespace_stats::Fragmentation::of(&H).free_bytes(), 40);
    /// ```
    pub const fn free_bytes(&self) -> usize {
        self.summary.free_bytes
    }

    /// Number of free blocks.
    ///
    /// ```
    /// # use freespace_core::{BlockInfo, BlockState, Inspect};
    /// # struct H;
    /// # impl Inspect for H { fn inspect(&self, v: &mut dyn FnMut(BlockInfo)) {
    /// #     v(BlockInfo { addr: 0, len: 40, state: BlockState::Free }); } }
    /// assert_eq!(freespace_stats::Fragmentation::of(&H).free_blocks(), 1);
    /// ```
    pub const fn free_blocks(&self) -> usize {
        self.summary.free_blocks
    }

    /// The largest free block: the largest request that can succeed
    /// without the heap growing.
    ///
    /// ```
    /// # use freespace_core::{BlockInfo, BlockState, Inspect};
    /// # struct H;
    /// # impl Inspect for H { fn inspect(&self, v: &mut dyn FnMut(BlockInfo)) {
    /// #     v(BlockInfo { addr: 0, len: 40, state: BlockState::Free });
    /// #     v(BlockInfo { addr: 40, len: 8, state: BlockState::Free }); } }
    /// assert_eq!(freespace_stats::Fragmentation::of(&H).largest_free(), 40);
    /// ```
    pub const fn largest_free(&self) -> usize {
        self.summary.largest_free
    }

    /// Bytes in used blocks (internal fragmentation included).
    ///
    /// ```
    /// # use freespace_core::{BlockInfo, BlockState, Inspect};
    /// # struct H;
    /// # impl Inspect for H { fn inspect(&self, v: &mut dyn FnMut(BlockInfo)) {
    /// #     v(BlockInfo { addr: 0, len: 32, state: BlockState::Used }); } }
    /// assert_eq!(freespace_stats::Fragmentation::of(&H).used_bytes(), 32);
    /// ```
    pub const fn used_bytes(&self) -> usize {
        self.summary.used_bytes
    }

    /// Bytes of the heap's own bookkeeping.
    ///
    /// ```
    /// # use freespace_core::{BlockInfo, BlockState, Inspect};
    /// # struct H;
    /// # impl Inspect for H { fn inspect(&self, v: &mut dyn FnMut(BlockInfo)) {
    /// #     v(BlockInfo { addr: 0, len: 16, state: BlockState::Meta }); } }
    /// assert_eq!(freespace_stats::Fragmentation::of(&H).meta_bytes(), 16);
    /// ```
    pub const fn meta_bytes(&self) -> usize {
        self.summary.meta_bytes
    }

    /// Every byte the walk covered: used + free + metadata.
    ///
    /// ```
    /// # use freespace_core::{BlockInfo, BlockState, Inspect};
    /// # struct H;
    /// # impl Inspect for H { fn inspect(&self, v: &mut dyn FnMut(BlockInfo)) {
    /// #     v(BlockInfo { addr: 0, len: 16, state: BlockState::Meta });
    /// #     v(BlockInfo { addr: 16, len: 48, state: BlockState::Free }); } }
    /// assert_eq!(freespace_stats::Fragmentation::of(&H).total_bytes(), 64);
    /// ```
    pub fn total_bytes(&self) -> usize {
        self.summary.total_bytes()
    }

    /// External fragmentation, `1 - largest_free / free_bytes` (0 when
    /// nothing is free): the share of free memory a request as large as
    /// the whole free total cannot use. freespace-core's
    /// [`HeapSummary::fragmentation`].
    ///
    /// ```
    /// # use freespace_core::{BlockInfo, BlockState, Inspect};
    /// # struct H;
    /// # impl Inspect for H { fn inspect(&self, v: &mut dyn FnMut(BlockInfo)) {
    /// #     v(BlockInfo { addr: 0, len: 30, state: BlockState::Free });
    /// #     v(BlockInfo { addr: 30, len: 10, state: BlockState::Used });
    /// #     v(BlockInfo { addr: 40, len: 10, state: BlockState::Free }); } }
    /// let f = freespace_stats::Fragmentation::of(&H);
    /// assert_eq!(f.external(), 0.25); // 1 - 30/40
    /// ```
    pub fn external(&self) -> f64 {
        self.summary.fragmentation()
    }

    /// Used bytes over every byte covered (0 for an empty walk).
    ///
    /// ```
    /// # use freespace_core::{BlockInfo, BlockState, Inspect};
    /// # struct H;
    /// # impl Inspect for H { fn inspect(&self, v: &mut dyn FnMut(BlockInfo)) {
    /// #     v(BlockInfo { addr: 0, len: 30, state: BlockState::Used });
    /// #     v(BlockInfo { addr: 30, len: 10, state: BlockState::Free }); } }
    /// assert_eq!(freespace_stats::Fragmentation::of(&H).utilisation(), 0.75);
    /// ```
    pub fn utilisation(&self) -> f64 {
        ratio(self.used_bytes(), self.total_bytes())
    }

    /// Metadata bytes over every byte covered (0 for an empty walk).
    ///
    /// ```
    /// # use freespace_core::{BlockInfo, BlockState, Inspect};
    /// # struct H;
    /// # impl Inspect for H { fn inspect(&self, v: &mut dyn FnMut(BlockInfo)) {
    /// #     v(BlockInfo { addr: 0, len: 8, state: BlockState::Meta });
    /// #     v(BlockInfo { addr: 8, len: 24, state: BlockState::Free }); } }
    /// assert_eq!(freespace_stats::Fragmentation::of(&H).meta_share(), 0.25);
    /// ```
    pub fn meta_share(&self) -> f64 {
        ratio(self.meta_bytes(), self.total_bytes())
    }

    /// Average free block length (0 when nothing is free).
    ///
    /// ```
    /// # use freespace_core::{BlockInfo, BlockState, Inspect};
    /// # struct H;
    /// # impl Inspect for H { fn inspect(&self, v: &mut dyn FnMut(BlockInfo)) {
    /// #     v(BlockInfo { addr: 0, len: 30, state: BlockState::Free });
    /// #     v(BlockInfo { addr: 40, len: 10, state: BlockState::Free }); } }
    /// assert_eq!(freespace_stats::Fragmentation::of(&H).average_free(), 20);
    /// ```
    pub fn average_free(&self) -> usize {
        self.free_bytes()
            .checked_div(self.free_blocks())
            .unwrap_or(0)
    }

    /// Internal fragmentation: bytes in used blocks beyond
    /// `requested_live`, the bytes the program asked for (a
    /// [`Snapshot::live_bytes`](crate::Snapshot::live_bytes) of a `Stats`
    /// in front of the same heap). Headers the heap reports as metadata are
    /// not in it.
    ///
    /// ```
    /// use freespace_stats::Fragmentation;
    /// # use freespace_core::{BlockInfo, BlockState, Inspect};
    /// # struct H;
    /// # impl Inspect for H { fn inspect(&self, v: &mut dyn FnMut(BlockInfo)) {
    /// #     v(BlockInfo { addr: 0, len: 32, state: BlockState::Used }); } }
    /// // A heap that rounds a 20-byte request up to a 32-byte block:
    /// assert_eq!(Fragmentation::of(&H).internal_bytes(20), 12);
    /// ```
    pub const fn internal_bytes(&self, requested_live: usize) -> usize {
        self.used_bytes().saturating_sub(requested_live)
    }
}

fn ratio(part: usize, whole: usize) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

/// `heap`, whose walk also bins every free block into `free`.
struct Tee<'a, I: ?Sized> {
    heap: &'a I,
    free: &'a Cell<[usize; SIZE_CLASSES]>,
}

impl<I: Inspect + ?Sized> Inspect for Tee<'_, I> {
    fn inspect(&self, visit: &mut dyn FnMut(BlockInfo)) {
        let mut bins = self.free.get();
        self.heap.inspect(&mut |b| {
            if b.state == BlockState::Free && b.len > 0 {
                bins[b.len.ilog2() as usize] += 1;
            }
            visit(b)
        });
        self.free.set(bins);
    }
}

impl fmt::Display for Fragmentation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.summary;
        writeln!(
            f,
            "free  {} B in {} blocks (largest {} B, average {} B)",
            s.free_bytes,
            s.free_blocks,
            s.largest_free,
            self.average_free()
        )?;
        writeln!(
            f,
            "used  {} B in {} blocks; metadata {} B; {} B in all",
            s.used_bytes,
            s.used_blocks,
            s.meta_bytes,
            self.total_bytes()
        )?;
        writeln!(
            f,
            "external fragmentation {:.3}, utilisation {:.3}, metadata share {:.3}",
            self.external(),
            self.utilisation(),
            self.meta_share()
        )?;
        if s.free_blocks > 0 {
            writeln!(f, "free blocks by size (at least):")?;
            for (class, &n) in self.free_histogram.iter().enumerate() {
                if n > 0 {
                    let mut label = Label::new();
                    write_pow2(&mut label, class)?;
                    writeln!(f, "  {:>9} {:>10}", label.as_str(), n)?;
                }
            }
        }
        Ok(())
    }
}
