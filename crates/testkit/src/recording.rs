//! [`Recording`]: a source over heap memory that records what it is asked,
//! and decommits by filling with zeros, so the decommit contract (CORE-S5) can
//! be tested under Miri, where no system call is available.

use freespace_core::Source;
use std::cell::RefCell;
use std::ptr::NonNull;
use std::vec::Vec;

/// What a [`Recording`] source was asked to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// `acquire(min_len)` returned a region of `len` bytes at `addr`
    /// (`len == 0`: it declined).
    Acquire {
        /// The length asked for.
        min_len: usize,
        /// Start of the region handed out.
        addr: usize,
        /// Its length.
        len: usize,
    },
    /// `decommit` of `len` bytes at `addr` gave back the pages `pages`
    /// (`(start, len)`, `None`: no whole page inside).
    Decommit {
        /// Start of the range asked for.
        addr: usize,
        /// Its length.
        len: usize,
        /// The page-aligned part decommitted.
        pages: Option<(usize, usize)>,
    },
}

/// A [`Source`] of `page`-aligned regions allocated from the Rust heap, each a
/// whole number of pages, that logs every call. `decommit` gives back the
/// whole `page`s inside the range by writing zeros over them (what
/// `MADV_DONTNEED` makes them read as), and logs the pages, so a test can
/// check that a heap decommits only memory it does not hand out and that a
/// zeroed allocation relies only on decommitted pages. Regions live until
/// the source is dropped (CORE-S1), then go back to the Rust heap. `!Sync`.
///
/// ```
/// use freespace_core::Source;
/// use freespace_testkit::recording::{Event, Recording};
///
/// let source = Recording::new(256, 4096);
/// let region = source.acquire(1000).unwrap();
/// assert_eq!(region.len(), 1024);
/// unsafe { region.cast::<u8>().write_bytes(9, 1024) };
/// // SAFETY: ours, contents not needed.
/// let pages = unsafe { source.decommit(region) }.unwrap();
/// assert_eq!(pages.len(), 1024);
/// assert_eq!(unsafe { *region.cast::<u8>().as_ptr().add(500) }, 0);
/// assert_eq!(source.decommitted(), 1024);
/// assert!(matches!(source.events()[1], Event::Decommit { .. }));
/// ```
pub struct Recording {
    page: usize,
    limit: usize,
    log: RefCell<Vec<Event>>,
    lent: std::cell::Cell<usize>,
    /// Every region handed out, freed when the source is dropped.
    regions: RefCell<Vec<(NonNull<u8>, std::alloc::Layout)>>,
}

impl Recording {
    /// A source with pages of `page` bytes (a power of two, at least 16)
    /// that hands out at most `limit` bytes in all.
    pub fn new(page: usize, limit: usize) -> Self {
        assert!(page.is_power_of_two() && page >= 16);
        Recording {
            page,
            limit,
            log: RefCell::new(Vec::new()),
            lent: std::cell::Cell::new(0),
            regions: RefCell::new(Vec::new()),
        }
    }

    /// Every call so far, in order.
    pub fn events(&self) -> Vec<Event> {
        self.log.borrow().clone()
    }

    /// Bytes given back by `decommit` so far.
    pub fn decommitted(&self) -> usize {
        self.log
            .borrow()
            .iter()
            .map(|e| match e {
                Event::Decommit {
                    pages: Some((_, len)),
                    ..
                } => *len,
                _ => 0,
            })
            .sum()
    }
}

impl Drop for Recording {
    fn drop(&mut self) {
        for (ptr, layout) in self.regions.get_mut().drain(..) {
            // SAFETY: allocated in `acquire` with this layout, freed once;
            // regions live only as long as the source (CORE-S1).
            unsafe { std::alloc::dealloc(ptr.as_ptr(), layout) };
        }
    }
}

// SAFETY: each region is a fresh allocation of `len` bytes aligned
// to `page >= 16`, freed only when the source is dropped (CORE-S1, CORE-S3: the
// length is a multiple of `page`, a multiple of 16), handed out once and
// never reused (CORE-S2); `decommit` writes zeros
// only over the whole pages inside the range it is given, which the caller
// owns (CORE-S5); nothing here panics on a request the source cannot serve
// (CORE-S4: an impossible layout is `None`); regions come from `alloc_zeroed`
// (CORE-S6).
unsafe impl Source for Recording {
    /// Regions come from `alloc_zeroed` (CORE-S6).
    fn zeroed(&self) -> bool {
        true
    }

    fn acquire(&self, min_len: usize) -> Option<NonNull<[u8]>> {
        let len = min_len.max(1).checked_next_multiple_of(self.page)?;
        let lent = self.lent.get().checked_add(len)?;
        if lent > self.limit {
            self.log.borrow_mut().push(Event::Acquire {
                min_len,
                addr: 0,
                len: 0,
            });
            return None;
        }
        let layout = std::alloc::Layout::from_size_align(len, self.page).ok()?;
        // SAFETY: `layout` has a non-zero size.
        let ptr = NonNull::new(unsafe { std::alloc::alloc_zeroed(layout) })?;
        self.lent.set(lent);
        self.regions.borrow_mut().push((ptr, layout));
        self.log.borrow_mut().push(Event::Acquire {
            min_len,
            addr: ptr.as_ptr() as usize,
            len,
        });
        Some(NonNull::slice_from_raw_parts(ptr, len))
    }

    unsafe fn decommit(&self, region: NonNull<[u8]>) -> Option<NonNull<[u8]>> {
        let start = region.cast::<u8>().as_ptr() as usize;
        let pages = freespace_core::layout::pages_inside(start, region.len(), self.page);
        self.log.borrow_mut().push(Event::Decommit {
            addr: start,
            len: region.len(),
            pages,
        });
        let (lo, len) = pages?;
        // SAFETY: `lo - start < region.len()`: inside the caller's region,
        // whose provenance the pointer keeps.
        let p = unsafe { region.cast::<u8>().add(lo - start) };
        // SAFETY: the caller owns the range and gives up its contents.
        unsafe { p.write_bytes(0, len) };
        Some(NonNull::slice_from_raw_parts(p, len))
    }

    fn decommits(&self) -> bool {
        true
    }
}

/// How [`trim_keeps_live_blocks`] drives a heap.
pub struct TrimRun<'a> {
    /// Seed of the operation stream.
    pub seed: u64,
    /// Operations (allocate or free) in all.
    pub rounds: usize,
    /// `trim` (and the checks) after every this many operations.
    pub trim_every: usize,
    /// Below this many live blocks every operation allocates.
    pub min_live: usize,
    /// The size of the next block.
    pub size: &'a mut dyn FnMut(&mut crate::Rng) -> usize,
}

/// Allocates and frees blocks of `heap` (over `source`), each live block
/// filled with its own byte, and trims every `trim_every` operations;
/// after each trim asserts that the bytes `trim` reported are the bytes the
/// source decommitted, that `check` passes (no chunk head, footer, list
/// link or bitmap was decommitted) and that every live block still holds
/// its byte (no live memory was decommitted). Frees everything at the end;
/// the caller checks what a trim of the empty heap gives back.
///
/// ```
/// use freespace_core::{alloc::Global, Trim};
/// use freespace_testkit::recording::{trim_keeps_live_blocks, TrimRun};
/// use freespace_testkit::Recording;
///
/// struct NoTrim(Global);
/// # unsafe impl freespace_core::alloc::Allocator for NoTrim {
/// #     fn allocate(&self, l: core::alloc::Layout) -> Result<core::ptr::NonNull<[u8]>, freespace_core::alloc::AllocError> { self.0.allocate(l) }
/// #     unsafe fn deallocate(&self, p: core::ptr::NonNull<u8>, l: core::alloc::Layout) { unsafe { self.0.deallocate(p, l) } }
/// # }
/// impl Trim for NoTrim {
///     fn trim(&self) -> usize { 0 }
/// }
/// let source = Recording::new(4096, 1 << 20); // untouched: Global holds the blocks
/// let run = TrimRun { seed: 1, rounds: 50, trim_every: 10, min_live: 4, size: &mut |r| r.range(16, 256) };
/// trim_keeps_live_blocks(&NoTrim(Global), &source, &|| Ok(()), run);
/// ```
pub fn trim_keeps_live_blocks<H>(
    heap: &H,
    source: &Recording,
    check: crate::Check<'_>,
    run: TrimRun<'_>,
) where
    H: freespace_core::alloc::Allocator + freespace_core::Trim,
{
    let layout = |size: usize| std::alloc::Layout::from_size_align(size, 16).unwrap();
    let mut rng = crate::Rng::new(run.seed);
    let mut live: Vec<(NonNull<u8>, usize, u8)> = Vec::new();
    for i in 0..run.rounds {
        if live.len() < run.min_live || rng.below(3) != 0 {
            let size = (run.size)(&mut rng);
            let p = heap.allocate(layout(size)).unwrap().cast::<u8>();
            let tag = (i % 251) as u8 + 1;
            // SAFETY: a fresh block of at least `size` bytes.
            unsafe { p.write_bytes(tag, size) };
            live.push((p, size, tag));
        } else {
            let (p, size, _) = live.swap_remove(rng.below(live.len()));
            // SAFETY: live, allocated with this layout.
            unsafe { heap.deallocate(p, layout(size)) };
        }
        if i % run.trim_every == 0 {
            let before = source.decommitted();
            let given = heap.trim();
            assert_eq!(source.decommitted() - before, given);
            check().unwrap();
            for &(p, size, tag) in &live {
                // SAFETY: a live block of `size` bytes.
                let bytes = unsafe { std::slice::from_raw_parts(p.as_ptr(), size) };
                assert!(
                    bytes.iter().all(|&b| b == tag),
                    "a live block was decommitted"
                );
            }
        }
    }
    for (p, size, _) in live {
        // SAFETY: live, allocated with this layout.
        unsafe { heap.deallocate(p, layout(size)) };
    }
}
