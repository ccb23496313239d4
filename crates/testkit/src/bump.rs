//! [`Bump`]: the smallest heap over a [`Source`], for testing sources and the
//! harness itself.

use freespace_core::alloc::{AllocError, Allocator, Layout};
use freespace_core::{layout, BlockInfo, BlockState, Inspect, Source};
use std::cell::Cell;
use std::ptr::NonNull;

/// A bump allocator over regions from `S`.
///
/// Blocks are carved from the current region front to back. Memory comes
/// back only when *every* block is free (the cursor returns to the start of
/// the current region) or when the most recent block is freed. A request
/// that does not fit asks the source for a new region and abandons the rest
/// of the old one. `!Sync`.
///
/// # Invariants
/// - TK-U1: `start <= cursor <= end`, all inside the current source region.
/// - TK-U2: `live == 0` implies every byte of the current region is free.
///
/// ```
/// use core::ptr::NonNull;
/// use freespace_core::Source;
/// use freespace_testkit::Bump;
///
/// /// One leaked 64 KiB buffer, handed out once.
/// struct Once(std::cell::Cell<bool>);
/// // SAFETY: the buffer is leaked (valid forever), 16-aligned via u128,
/// // handed out at most once, and acquire cannot panic.
/// unsafe impl Source for Once {
///     fn acquire(&self, min_len: usize) -> Option<NonNull<[u8]>> {
///         if self.0.replace(true) || min_len > 65536 { return None; }
///         let buf: &'static mut [u128] = Box::leak(vec![0u128; 4096].into_boxed_slice());
///         Some(NonNull::slice_from_raw_parts(NonNull::from(buf).cast(), 65536))
///     }
/// }
/// let heap = Bump::new(Once(Default::default()));
/// let mut v = freespace_core::alloc::Vec::new_in(&heap);
/// v.push(42u64);
/// assert_eq!(v[0], 42);
/// ```
pub struct Bump<S: Source> {
    source: S,
    start: Cell<Option<NonNull<u8>>>,
    cursor: Cell<usize>,
    end: Cell<usize>,
    last: Cell<usize>,
    live: Cell<usize>,
}

/// Smallest region a [`Bump`] asks its source for.
const MIN_REGION: usize = 64 * 1024;

impl<S: Source> Bump<S> {
    /// A bump heap that has not yet asked `source` for anything.
    pub const fn new(source: S) -> Self {
        Self {
            source,
            start: Cell::new(None),
            cursor: Cell::new(0),
            end: Cell::new(0),
            last: Cell::new(0),
            live: Cell::new(0),
        }
    }

    /// Checks TK-U1.
    pub fn check(&self) -> Result<(), freespace_core::Violation> {
        let Some(start) = self.start.get() else {
            return Ok(());
        };
        let start = start.as_ptr() as usize;
        if !(start <= self.cursor.get() && self.cursor.get() <= self.end.get()) {
            return Err(freespace_core::Violation::new(
                "TK-U1",
                self.cursor.get(),
                "cursor outside its region",
            ));
        }
        Ok(())
    }

    fn carve(&self, l: Layout) -> Option<NonNull<u8>> {
        let base = self.start.get()?;
        let at = layout::align_up(self.cursor.get(), l.align())?;
        let end = at.checked_add(l.size())?;
        if end > self.end.get() {
            return None;
        }
        self.last.set(self.cursor.get());
        self.cursor.set(end);
        // Provenance: derived from the region pointer the source returned.
        layout::with_addr(base, at)
    }
}

/// Block by block (the provided methods).
impl<S: Source> freespace_core::Batch for Bump<S> {}

// SAFETY: blocks are disjoint ranges of source regions, which are ours alone
// (CORE-S2, `Source`); the cursor only moves back over blocks that are all free.
unsafe impl<S: Source> Allocator for Bump<S> {
    fn allocate(&self, l: Layout) -> Result<NonNull<[u8]>, AllocError> {
        if l.size() == 0 {
            return Ok(layout::dangling(l));
        }
        let p = match self.carve(l) {
            Some(p) => p,
            None => {
                let want = l
                    .size()
                    .checked_add(l.align())
                    .ok_or(AllocError)?
                    .max(MIN_REGION);
                let region = self.source.acquire(want).ok_or(AllocError)?;
                let start = region.cast::<u8>();
                self.start.set(Some(start));
                self.cursor.set(start.as_ptr() as usize);
                self.end.set(start.as_ptr() as usize + region.len());
                self.live.set(0);
                self.carve(l).ok_or(AllocError)?
            }
        };
        self.live.set(self.live.get() + 1);
        Ok(NonNull::slice_from_raw_parts(p, l.size()))
    }

    unsafe fn deallocate(&self, ptr: NonNull<u8>, l: Layout) {
        if l.size() == 0 {
            return;
        }
        let addr = ptr.as_ptr() as usize;
        let in_current = self
            .start
            .get()
            .is_some_and(|s| (s.as_ptr() as usize..self.end.get()).contains(&addr));
        if !in_current {
            return; // a block of an abandoned region: leaked with its region.
        }
        self.live.set(self.live.get().saturating_sub(1));
        if self.live.get() == 0 {
            if let Some(s) = self.start.get() {
                self.cursor.set(s.as_ptr() as usize);
            }
        } else if addr + l.size() == self.cursor.get() && self.last.get() <= addr {
            // The most recent block: the cursor steps back over it.
            self.cursor.set(self.last.get());
        }
    }
}

impl<S: Source> Inspect for Bump<S> {
    fn inspect(&self, visit: &mut dyn FnMut(BlockInfo)) {
        let Some(s) = self.start.get() else { return };
        let s = s.as_ptr() as usize;
        let used = self.cursor.get() - s;
        if used > 0 {
            visit(BlockInfo {
                addr: s,
                len: used,
                state: BlockState::Used,
            });
        }
        if self.end.get() > self.cursor.get() {
            visit(BlockInfo {
                addr: self.cursor.get(),
                len: self.end.get() - self.cursor.get(),
                state: BlockState::Free,
            });
        }
    }
}
