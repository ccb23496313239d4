//! [`Inspect`]: walk every block of a heap. Heap maps, fragmentation figures
//! and invariant checks are built on it.

/// What a byte range of a heap is being used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BlockState {
    /// Free: available to the next allocation.
    Free,
    /// Handed out to a user (including any internal fragmentation the
    /// block carries).
    Used,
    /// The heap's own bookkeeping: headers, descriptors, bitmaps.
    Meta,
}

/// One block of a heap, as [`Inspect::inspect`] reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BlockInfo {
    /// Address of the first byte of the block.
    pub addr: usize,
    /// Length in bytes.
    pub len: usize,
    /// What the bytes are used for.
    pub state: BlockState,
}

/// A heap that can report every block it manages.
///
/// The walk reports blocks in address order within each region; a heap
/// without a natural order (a slab's free objects, say) documents its own.
///
/// # Example
///
/// ```
/// use freespace_core::{BlockInfo, BlockState, HeapSummary, Inspect};
///
/// /// A pretend heap: 64 bytes used, then 192 free.
/// struct Two;
/// impl Inspect for Two {
///     fn inspect(&self, visit: &mut dyn FnMut(BlockInfo)) {
///         visit(BlockInfo { addr: 0x1000, len: 64, state: BlockState::Used });
///         visit(BlockInfo { addr: 0x1040, len: 192, state: BlockState::Free });
///     }
/// }
/// let s = HeapSummary::of(&Two);
/// assert_eq!((s.used_bytes, s.free_bytes, s.largest_free), (64, 192, 192));
/// ```
pub trait Inspect {
    /// Calls `visit` once for every block, free, used or metadata.
    fn inspect(&self, visit: &mut dyn FnMut(BlockInfo));
}

impl<I: Inspect + ?Sized> Inspect for &I {
    fn inspect(&self, visit: &mut dyn FnMut(BlockInfo)) {
        (**self).inspect(visit)
    }
}

/// Totals over one [`Inspect`] walk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HeapSummary {
    /// Number of used blocks.
    pub used_blocks: usize,
    /// Bytes in used blocks.
    pub used_bytes: usize,
    /// Number of free blocks.
    pub free_blocks: usize,
    /// Bytes in free blocks.
    pub free_bytes: usize,
    /// Length of the largest free block.
    pub largest_free: usize,
    /// Bytes of metadata.
    pub meta_bytes: usize,
}

impl HeapSummary {
    /// Walks `heap` once and adds up its blocks.
    ///
    /// ```
    /// # use freespace_core::{HeapSummary, BlockInfo, BlockState, Inspect};
    /// struct Empty;
    /// impl Inspect for Empty { fn inspect(&self, _: &mut dyn FnMut(BlockInfo)) {} }
    /// assert_eq!(HeapSummary::of(&Empty), HeapSummary::default());
    /// ```
    pub fn of<I: Inspect + ?Sized>(heap: &I) -> Self {
        let mut s = Self::default();
        heap.inspect(&mut |b| match b.state {
            BlockState::Used => {
                s.used_blocks += 1;
                s.used_bytes += b.len;
            }
            BlockState::Free => {
                s.free_blocks += 1;
                s.free_bytes += b.len;
                s.largest_free = s.largest_free.max(b.len);
            }
            BlockState::Meta => s.meta_bytes += b.len,
        });
        s
    }

    /// Total bytes the walk covered.
    pub fn total_bytes(&self) -> usize {
        self.used_bytes + self.free_bytes + self.meta_bytes
    }

    /// External fragmentation: `1 - largest_free / free_bytes`, from 0 (all
    /// free memory in one block) towards 1 (free memory in many small
    /// pieces). Zero when nothing is free.
    ///
    /// ```
    /// # use freespace_core::HeapSummary;
    /// let s = HeapSummary { free_bytes: 100, largest_free: 25, free_blocks: 4, ..Default::default() };
    /// assert!((s.fragmentation() - 0.75).abs() < 1e-9);
    /// ```
    pub fn fragmentation(&self) -> f64 {
        if self.free_bytes == 0 {
            0.0
        } else {
            1.0 - self.largest_free as f64 / self.free_bytes as f64
        }
    }
}
