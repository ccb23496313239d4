//! [`FromAllocator`]: any [`Allocator`] as a [`Source`].

use crate::region_len;
use core::cell::Cell;
use core::fmt;
use core::ptr::NonNull;
use freespace_core::alloc::{Allocator, Layout};
use freespace_core::layout::{align_down, is_aligned};
use freespace_core::{Source, Violation, REGION_ALIGN};

#[cfg(test)]
mod tests;

/// The bookkeeping in front of every region: which allocation it is, so
/// `release` can confirm a region is whole and give it back with the right
/// layout.
#[repr(C, align(16))]
struct Header {
    /// The next region lent out (newer regions come first).
    next: Option<NonNull<Header>>,
    /// The region's length (the allocation is `HEADER + len` bytes).
    len: usize,
}

/// Bytes in front of every region.
const HEADER: usize = core::mem::size_of::<Header>();
const _: () = assert!(HEADER == REGION_ALIGN);
const _: () = assert!(core::mem::align_of::<Header>() == REGION_ALIGN);

/// A [`Source`] that takes its regions from an [`Allocator`] `A`.
///
/// Each [`acquire`](Source::acquire) allocates `16 + len` bytes aligned to
/// 16 from `A` (`len` is the request rounded up to [`REGION_ALIGN`]) and
/// returns all but the first 16. Those 16 bytes are a header linking every
/// region lent out into a list, with its length:
///
/// ```text
///  allocation from A:  [ next | len ][ region ........................ ]
///                       ^ header     ^ returned to the heap
/// ```
///
/// [`release`](Source::release) takes back exactly a whole region it lent
/// (found on that list, so a region is confirmed before anything is freed)
/// and declines anything else, a part of a region included. Dropping the
/// source gives every region still lent back to `A`: regions live as long
/// as the source.
///
/// If `A` returns more than asked, the region includes the excess (whole
/// multiples of 16) and `A` is given the matching size on free, which the
/// `Allocator` contract allows. Regions are not contiguous in general.
///
/// `FromAllocator` is `Send` when `A` is, and never `Sync`.
///
/// # Invariants
/// - SRC-F1: `head` starts a null-terminated list of the headers of the regions
///   lent out and not released, each header at the start of a live
///   allocation of `A` with layout `(HEADER + len, REGION_ALIGN)`, its
///   region the `len` bytes after it.
/// - SRC-F2: each `len` is a non-zero multiple of [`REGION_ALIGN`].
/// - SRC-F3: `count` is the length of the list.
///
/// # Example
///
/// ```
/// use freespace_core::alloc::Global;
/// use freespace_core::Source;
/// use freespace_source::FromAllocator;
///
/// let source = FromAllocator::new(Global);
/// let region = source.acquire(100).unwrap();
/// assert_eq!(region.len(), 112);
/// // SAFETY: `region` came from `source` and nothing in it is in use.
/// assert!(unsafe { source.release(region) });
/// ```
pub struct FromAllocator<A: Allocator> {
    alloc: A,
    /// The list of regions lent out (SRC-F1).
    head: Cell<Option<NonNull<Header>>>,
    /// How many there are (SRC-F3).
    count: Cell<usize>,
}

// SAFETY: the allocations on the list belong to this source alone (SRC-F1);
// moving the source moves them, and `A: Send` lets `A` free them on the new
// thread. Not `Sync`: the list is in plain `Cell`s.
unsafe impl<A: Allocator + Send> Send for FromAllocator<A> {}

impl<A: Allocator> FromAllocator<A> {
    /// A source over `alloc`. Does no work.
    ///
    /// ```
    /// use freespace_core::alloc::Global;
    /// use freespace_core::Source;
    /// use freespace_source::FromAllocator;
    /// let source = FromAllocator::new(Global);
    /// assert!(source.acquire(4096).is_some());
    /// ```
    pub const fn new(alloc: A) -> Self {
        Self {
            alloc,
            head: Cell::new(None),
            count: Cell::new(0),
        }
    }

    /// The allocator regions come from.
    ///
    /// ```
    /// use freespace_core::alloc::Global;
    /// use freespace_source::FromAllocator;
    /// let _global: &Global = FromAllocator::new(Global).allocator();
    /// ```
    pub const fn allocator(&self) -> &A {
        &self.alloc
    }

    /// How many regions are lent out now (SRC-F3).
    ///
    /// ```
    /// use freespace_core::alloc::Global;
    /// use freespace_core::Source;
    /// use freespace_source::FromAllocator;
    /// let source = FromAllocator::new(Global);
    /// let _a = source.acquire(1);
    /// let _b = source.acquire(1);
    /// assert_eq!(source.regions(), 2);
    /// ```
    pub fn regions(&self) -> usize {
        self.count.get()
    }

    /// Walks the list of regions and checks SRC-F1's alignment, SRC-F2 and SRC-F3.
    ///
    /// ```
    /// use freespace_core::alloc::Global;
    /// use freespace_core::Source;
    /// use freespace_source::FromAllocator;
    /// let source = FromAllocator::new(Global);
    /// let _ = source.acquire(48);
    /// assert_eq!(source.check(), Ok(()));
    /// ```
    pub fn check(&self) -> Result<(), Violation> {
        let mut seen = 0usize;
        let mut node = self.head.get();
        while let Some(header) = node {
            let addr = header.as_ptr().addr();
            if seen == self.count.get() {
                return Err(Violation::new("SRC-F3", addr, "more regions than counted"));
            }
            if !is_aligned(addr, REGION_ALIGN) {
                return Err(Violation::new("SRC-F1", addr, "misaligned header"));
            }
            // SAFETY: `header` is on the list, so it heads a live allocation
            // of this source (SRC-F1).
            let Header { next, len } = unsafe { header.as_ptr().read() };
            if len == 0 || !is_aligned(len, REGION_ALIGN) {
                return Err(Violation::new(
                    "SRC-F2",
                    addr,
                    "region length not a multiple",
                ));
            }
            seen += 1;
            node = next;
        }
        if seen != self.count.get() {
            return Err(Violation::new("SRC-F3", 0, "fewer regions than counted"));
        }
        Ok(())
    }
}

/// The layout of the allocation behind a region of `len` bytes.
fn layout_for(len: usize) -> Option<Layout> {
    Layout::from_size_align(len.checked_add(HEADER)?, REGION_ALIGN).ok()
}

// SAFETY: a region is the part after the header of a fresh allocation of
// `A`, which `A` guarantees is valid, exclusive and aligned to 16 (CORE-S1, CORE-S2);
// it is freed only when released or when the source drops. It starts
// HEADER = 16 bytes after a 16-aligned start and its length is a multiple of
// 16, at least the request rounded up (CORE-S3). Every size is checked; `A` does
// not unwind by its own contract (CORE-S4).
unsafe impl<A: Allocator> Source for FromAllocator<A> {
    fn acquire(&self, min_len: usize) -> Option<NonNull<[u8]>> {
        let len = region_len(min_len)?;
        let layout = layout_for(len)?;
        let block = self.alloc.allocate(layout).ok()?;
        // Keep any excess the allocator gave, in whole multiples of 16.
        let len = align_down(block.len().saturating_sub(HEADER), REGION_ALIGN).max(len);
        let header = block.cast::<Header>();
        // SAFETY: `block` is at least `HEADER` bytes, aligned to 16 (the
        // layout asked for), and ours.
        unsafe {
            header.as_ptr().write(Header {
                next: self.head.get(),
                len,
            })
        };
        self.head.set(Some(header));
        self.count.set(self.count.get() + 1);
        // SAFETY: `HEADER + len <= block.len()`, so the region stays inside
        // the allocation; the pointer is derived from `block`.
        let region = unsafe { block.cast::<u8>().add(HEADER) };
        Some(NonNull::slice_from_raw_parts(region, len))
    }

    /// Gives `region` back to `A` if it is exactly a whole region lent out
    /// by this source; declines anything else.
    ///
    /// Finds the region on the list of regions lent out: O(number of
    /// regions lent out), and sources lend few, large regions.
    unsafe fn release(&self, region: NonNull<[u8]>) -> bool {
        let addr = region.cast::<u8>().as_ptr().addr();
        let mut prev: Option<NonNull<Header>> = None;
        let mut node = self.head.get();
        while let Some(header) = node {
            // SAFETY: `header` is on the list: a live allocation of ours (SRC-F1).
            let Header { next, len } = unsafe { header.as_ptr().read() };
            if header.as_ptr().addr() + HEADER == addr {
                if len != region.len() {
                    return false;
                }
                match prev {
                    None => self.head.set(next),
                    // SAFETY: `prev` is on the list too (SRC-F1).
                    Some(prev) => unsafe { (*prev.as_ptr()).next = next },
                }
                self.count.set(self.count.get() - 1);
                // SAFETY: `header` starts an allocation of `A` made with
                // `layout_for(requested)`, requested <= len, and `HEADER +
                // len` is no more than the length `A` returned (SRC-F1), so the
                // layout fits the block; the caller no longer uses it.
                unsafe { self.deallocate(header, len) };
                return true;
            }
            prev = Some(header);
            node = next;
        }
        false
    }
}

impl<A: Allocator> FromAllocator<A> {
    /// Gives the allocation headed by `header` back to `A`.
    ///
    /// # Safety
    ///
    /// - `header` heads a live allocation of this source for a region of
    ///   `len` bytes (SRC-F1), no longer on the list and not used by anyone.
    unsafe fn deallocate(&self, header: NonNull<Header>, len: usize) {
        // The layout was valid when the region was allocated with at most
        // `len` bytes, and `HEADER + len` fit in the block `A` returned.
        if let Some(layout) = layout_for(len) {
            // SAFETY: the block was allocated by `A` and `layout` fits it
            // (caller contract, SRC-F1).
            unsafe { self.alloc.deallocate(header.cast(), layout) };
        }
    }
}

impl<A: Allocator> Drop for FromAllocator<A> {
    fn drop(&mut self) {
        let mut node = self.head.take();
        while let Some(header) = node {
            // SAFETY: `header` is on the list: a live allocation of ours (SRC-F1).
            let Header { next, len } = unsafe { header.as_ptr().read() };
            // SAFETY: regions live only as long as the source; `header`
            // heads one (SRC-F1), now off the list.
            unsafe { self.deallocate(header, len) };
            node = next;
        }
        self.count.set(0);
    }
}

impl<A: Allocator + fmt::Debug> fmt::Debug for FromAllocator<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FromAllocator")
            .field("alloc", &self.alloc)
            .field("regions", &self.count.get())
            .finish()
    }
}
