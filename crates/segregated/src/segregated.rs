//! [`Segregated`]: exact free lists for a few popular sizes in front of a
//! general allocator.

use core::cell::Cell;
use core::ptr::NonNull;

use freespace_core::alloc::{AllocError, Allocator, Layout};
use freespace_core::layout::{dangling, is_aligned};
use freespace_core::{
    report, BlockInfo, BlockState, CheckedFree, Corruption, Inspect, Owns, Violation,
};

use freespace_core::resize::{empty_side, relocate};

/// The name [`Segregated`] reports corruption under.
const NAME: &str = "segregated";

/// Alignment of every cached block, and the largest request alignment a
/// size class serves. Every class size is a multiple of it.
pub const CLASS_ALIGN: usize = 16;

/// Most size classes one [`Segregated`] can have.
pub const MAX_CLASSES: usize = 16;

/// The size classes of [`Segregated::new`]: the popular small sizes.
pub const DEFAULT_SIZES: &[usize] = &[16, 32, 64, 128, 256, 512];

/// Default cap on the bytes each list may hold ([`Segregated::with_cap`]).
pub const DEFAULT_CAP: usize = 64 * 1024;

/// Default number of blocks an empty list asks its parent for at once
/// ([`Segregated::with_batch`]).
pub const DEFAULT_BATCH: usize = 8;

/// Exact free lists for a configured set of popular sizes, refilled in
/// batches from the general allocator `A` behind them.
///
/// ```text
///              allocate(24, align 8)             allocate(700) / align 64
///                      │                                  │
///   class 16  32  64 128 256 512                          │
///   list  ○   ●→●→●   ○   ●   ○   ○   ← cached blocks     │
///              │   ▲  (≤ cap bytes each)                  │
///   refill: a batch│of Layout(32, 16) blocks    ┌─────────┘
///              ▼   │ free beyond the cap, trim()│          ▼
///   ┌──────────────────────────────────────────────────────────┐
///   │ parent A (any Allocator: a free-list heap, buddy, Global) │
///   └──────────────────────────────────────────────────────────┘
/// ```
///
/// # Routing
///
/// A request of `size > 0` and `align <= 16` (`CLASS_ALIGN`) is served by the
/// **smallest class `S >= size`**; its block comes from the parent as
/// `Layout(S, 16)` and is reported to the caller as exactly `S` bytes, even
/// if the parent gave more. Everything else — `align > 16`, or `size` above
/// the largest class — goes straight to the parent, whose answer (and its
/// reported length) is passed through unchanged.
///
/// The rule is closed under the contract's "free with any size between the
/// request and the returned length": a size in `request..=S` rounds up to
/// the same class `S`; a forwarded block keeps routing to the parent because
/// its alignment is still above 16, or its size is still above the largest
/// class. A `grow`/`shrink` whose new layout routes elsewhere moves the
/// block (allocate, copy, free); within one class it is free of charge; two
/// forwarded layouts are the parent's `grow`/`shrink`.
///
/// # Caching
///
/// A free of a class block pushes it on that class's list (intrusive, linked
/// through the block's first word) unless the list already holds
/// `cap / S` blocks, in which case it goes back to the parent with
/// `Layout(S, 16)`. An empty list asks the parent for
/// `min(batch, cap / S + 1)` blocks at once: one for the caller, the rest
/// cached. [`release_cached`](Self::release_cached), [`Trim::trim`](freespace_core::Trim::trim) and
/// `Drop` give every cached block back.
///
/// # Corruption
///
/// Cached blocks carry no header, so detection is what the lists allow:
///
/// - a class free of a pointer not 16-aligned is a misaligned pointer;
/// - freeing the block at the head of its list (the most recent free of that
///   class — the common `free(p); free(p)`) is a double free, always (O(1));
/// - in debug builds, and always in [`try_deallocate`](Self::try_deallocate),
///   the whole list is searched (at most `cap / S` links), so any double
///   free of a block still cached is found;
/// - [`try_deallocate`](Self::try_deallocate) (for a parent with a checked
///   free) gives the block to the parent's checked free instead of the
///   list, so a foreign, interior or already returned pointer is refused
///   there, without a report and without a write.
///
/// Each goes through [`freespace_core::report`] as `"segregated"`; if the
/// handler returns, the block is left alone. A double free of a block that
/// already went back to the parent is the parent's to detect. There is no
/// magic word in cached blocks: reading the caller's bytes on free to look
/// for one could read memory the caller left uninitialised.
///
/// # Under Miri
///
/// A free writes the list link into the block's first word, which may lie
/// past the bytes the caller asked for (a 4-byte request is served by the
/// 16-byte class). A pointer whose provenance was narrowed to the request —
/// allocator-api2's `Box` hands `deallocate` one derived from `&mut T` —
/// then trips Stacked Borrows (rust-lang/miri#2104, a known limit of that
/// model for any allocator that keeps metadata in freed blocks). Pointers
/// straight from `allocate` (as `Vec` keeps them) are fine.
///
/// # Invariants
/// - SEG-G1: `sizes` is strictly increasing, has at most [`MAX_CLASSES`]
///   entries, and each is a non-zero multiple of [`CLASS_ALIGN`] no larger
///   than `isize::MAX` (checked when built).
/// - SEG-G2: list `i` holds exactly `counts[i]` blocks, and
///   `counts[i] <= limits[i] == cap / sizes[i]`.
/// - SEG-G3: every block on list `i` is a live parent block allocated with
///   `Layout(sizes[i], 16)`, is 16-aligned, and is not held by a caller; its
///   first word is the link to the next block of the list.
/// - SEG-G4: no block is on a list twice.
///
/// `check` verifies SEG-G2, the alignment of SEG-G3, and SEG-G4 within each list.
///
/// # Example
///
/// ```
/// use freespace_core::alloc::{Global, Vec};
/// use freespace_segregated::Segregated;
///
/// let heap = Segregated::new(Global).with_cap(4096);
/// let mut v: Vec<u64, _> = Vec::with_capacity_in(3, &heap); // 24 B → class 32
/// v.extend_from_slice(&[1, 2, 3]);
/// assert_eq!(v.iter().sum::<u64>(), 6);
/// drop(v);
/// assert_eq!(heap.cached_bytes(), 8 * 32); // the batch of 8 is cached
/// heap.release_cached();
/// assert_eq!(heap.cached_bytes(), 0);
/// # heap.check().unwrap();
/// ```
///
/// It is `!Sync` (wrap it in a lock to share it):
///
/// ```compile_fail
/// fn shared<T: Sync>() {}
/// shared::<freespace_segregated::Segregated<freespace_core::alloc::Global>>();
/// ```
pub struct Segregated<A: Allocator> {
    parent: A,
    /// SEG-G1.
    sizes: &'static [usize],
    /// `limits[i] == cap / sizes[i]`: the most blocks list `i` holds (SEG-G2).
    limits: [usize; MAX_CLASSES],
    cap: usize,
    /// At least 1.
    batch: usize,
    /// SEG-G2, SEG-G3: the first block of each list.
    heads: [Cell<Option<NonNull<u8>>>; MAX_CLASSES],
    /// SEG-G2: the length of each list.
    counts: [Cell<usize>; MAX_CLASSES],
}

// SAFETY: the cached blocks are owned by the `Segregated` alone (SEG-G3: no
// caller holds them) and reached only through `&self` methods, which a
// `!Sync` value runs on one thread at a time. Moving the value to another
// thread moves the parent (`A: Send`) with the blocks, and every cached block
// goes back to that same parent.
unsafe impl<A: Allocator + Send> Send for Segregated<A> {}

/// Whether `sizes` satisfies SEG-G1.
const fn valid_sizes(sizes: &[usize]) -> bool {
    if sizes.len() > MAX_CLASSES {
        return false;
    }
    let mut i = 0;
    while i < sizes.len() {
        let s = sizes[i];
        if s == 0 || s % CLASS_ALIGN != 0 || s > isize::MAX as usize {
            return false;
        }
        if i > 0 && sizes[i - 1] >= s {
            return false;
        }
        i += 1;
    }
    true
}

/// `cap / size` for each class (SEG-G2).
const fn limits_for(sizes: &[usize], cap: usize) -> [usize; MAX_CLASSES] {
    let mut limits = [0; MAX_CLASSES];
    let mut i = 0;
    while i < sizes.len() {
        limits[i] = cap / sizes[i];
        i += 1;
    }
    limits
}

impl<A: Allocator> Segregated<A> {
    /// Lists for [`DEFAULT_SIZES`] in front of `parent`, each capped at
    /// [`DEFAULT_CAP`] bytes, refilled [`DEFAULT_BATCH`] blocks at a time.
    /// Asks the parent for nothing until the first allocation.
    ///
    /// ```
    /// use freespace_core::alloc::{Global, Vec};
    /// use freespace_segregated::Segregated;
    /// const _: Segregated<Global> = Segregated::new(Global); // a `const fn`: fits a `static`
    /// let heap = Segregated::new(Global);
    /// let mut v = Vec::with_capacity_in(100, &heap); // class 128
    /// v.resize(100, 7u8);
    /// assert_eq!(v[99], 7);
    /// ```
    pub const fn new(parent: A) -> Self {
        Self::with_sizes(parent, DEFAULT_SIZES)
    }

    /// Lists for the given `sizes` in front of `parent`.
    ///
    /// # Panics
    ///
    /// If `sizes` breaks SEG-G1 (not strictly increasing, more than
    /// [`MAX_CLASSES`], or a size that is zero or not a multiple of 16). In a
    /// `static` that is a compile error.
    ///
    /// ```
    /// use freespace_core::alloc::{Allocator, Global, Layout};
    /// use freespace_segregated::Segregated;
    /// let heap = Segregated::with_sizes(Global, &[48, 96]);
    /// let b = heap.allocate(Layout::from_size_align(40, 8).unwrap()).unwrap();
    /// assert_eq!(b.len(), 48);
    /// // SAFETY: allocated just above with this layout.
    /// unsafe { heap.deallocate(b.cast(), Layout::from_size_align(40, 8).unwrap()) };
    /// ```
    pub const fn with_sizes(parent: A, sizes: &'static [usize]) -> Self {
        assert!(
            valid_sizes(sizes),
            "Segregated sizes must be strictly increasing non-zero multiples of 16, at most 16 of them"
        );
        Self {
            parent,
            sizes,
            limits: limits_for(sizes, DEFAULT_CAP),
            cap: DEFAULT_CAP,
            batch: DEFAULT_BATCH,
            heads: [const { Cell::new(None) }; MAX_CLASSES],
            counts: [const { Cell::new(0) }; MAX_CLASSES],
        }
    }

    /// Caps each list at `bytes` (so list `S` holds at most `bytes / S`
    /// blocks); frees beyond the cap go straight back to the parent. A cap
    /// below a class's size makes that class a pass-through.
    ///
    /// ```
    /// use freespace_core::alloc::{Global, Vec};
    /// use freespace_segregated::Segregated;
    /// let heap = Segregated::new(Global).with_cap(64); // two 32 B blocks at most
    /// let blocks: std::vec::Vec<Vec<u8, _>> =
    ///     (0..5).map(|_| Vec::with_capacity_in(20, &heap)).collect();
    /// drop(blocks);
    /// assert_eq!(heap.cached_bytes(), 64);
    /// ```
    pub const fn with_cap(mut self, bytes: usize) -> Self {
        self.cap = bytes;
        self.limits = limits_for(self.sizes, bytes);
        self
    }

    /// Refills an empty list with up to `blocks` parent blocks at once (at
    /// least one; never more than the cap allows plus the one handed out).
    ///
    /// ```
    /// use freespace_core::alloc::{Global, Vec};
    /// use freespace_segregated::Segregated;
    /// let heap = Segregated::new(Global).with_batch(4);
    /// let b: Vec<u64, _> = Vec::with_capacity_in(1, &heap);
    /// assert_eq!(heap.cached_bytes(), 3 * 16); // 4 asked for, 1 handed out
    /// # drop(b);
    /// ```
    pub const fn with_batch(mut self, blocks: usize) -> Self {
        self.batch = if blocks == 0 { 1 } else { blocks };
        self
    }

    /// The allocator behind the lists.
    ///
    /// ```
    /// use freespace_core::alloc::Global;
    /// let heap = freespace_segregated::Segregated::new(Global);
    /// let _parent: &Global = heap.parent();
    /// ```
    pub const fn parent(&self) -> &A {
        &self.parent
    }

    /// The class sizes, smallest first.
    ///
    /// ```
    /// use freespace_core::alloc::Global;
    /// let heap = freespace_segregated::Segregated::new(Global);
    /// assert_eq!(heap.sizes(), freespace_segregated::DEFAULT_SIZES);
    /// ```
    pub const fn sizes(&self) -> &'static [usize] {
        self.sizes
    }

    /// The cap on each list, in bytes.
    ///
    /// ```
    /// use freespace_core::alloc::Global;
    /// let heap = freespace_segregated::Segregated::new(Global).with_cap(1024);
    /// assert_eq!(heap.cap(), 1024);
    /// ```
    pub const fn cap(&self) -> usize {
        self.cap
    }

    /// Bytes held in the lists right now (blocks taken from the parent and
    /// not handed out).
    ///
    /// ```
    /// use freespace_core::alloc::Global;
    /// let heap = freespace_segregated::Segregated::new(Global);
    /// assert_eq!(heap.cached_bytes(), 0); // nothing asked for yet
    /// ```
    pub fn cached_bytes(&self) -> usize {
        (0..self.sizes.len())
            .map(|i| self.counts[i].get() * self.sizes[i])
            .sum()
    }

    /// Gives every cached block back to the parent.
    ///
    /// # Time complexity
    /// O(cached blocks), one parent `deallocate` each.
    ///
    /// ```
    /// use freespace_core::alloc::{Global, Vec};
    /// let heap = freespace_segregated::Segregated::new(Global);
    /// drop(Vec::<u32, _>::with_capacity_in(1, &heap));
    /// assert!(heap.cached_bytes() > 0);
    /// heap.release_cached();
    /// assert_eq!(heap.cached_bytes(), 0);
    /// ```
    pub fn release_cached(&self) {
        for i in 0..self.sizes.len() {
            while let Some(block) = self.pop(i) {
                // SAFETY: `block` was on list `i`, so it is a live parent
                // block allocated with `class_layout(i)` that nobody else
                // holds (SEG-G3); popping it made it ours alone.
                unsafe { self.parent.deallocate(block, self.class_layout(i)) };
            }
        }
    }

    /// Checks SEG-G2, SEG-G3 (alignment) and SEG-G4 within each list.
    ///
    /// # Time complexity
    /// O(cached blocks).
    ///
    /// ```
    /// use freespace_core::alloc::{Global, Vec};
    /// let heap = freespace_segregated::Segregated::new(Global);
    /// drop(Vec::<u8, _>::with_capacity_in(60, &heap));
    /// heap.check().unwrap();
    /// ```
    pub fn check(&self) -> Result<(), Violation> {
        for i in 0..self.sizes.len() {
            let count = self.counts[i].get();
            if count > self.limits[i] {
                return Err(Violation::new(
                    "SEG-G2",
                    self.sizes[i],
                    "list holds more blocks than its cap allows",
                ));
            }
            let mut link = self.heads[i].get();
            for _ in 0..count {
                let Some(block) = link else {
                    return Err(Violation::new(
                        "SEG-G2",
                        self.sizes[i],
                        "list is shorter than its count",
                    ));
                };
                if !is_aligned(block.as_ptr().addr(), CLASS_ALIGN) {
                    return Err(Violation::new(
                        "SEG-G3",
                        block.as_ptr().addr(),
                        "cached block is not 16-aligned",
                    ));
                }
                // SAFETY: `block` is on list `i` (reached from its head in
                // fewer than `count` steps), so its first word is a link (SEG-G3).
                link = unsafe { Self::next(block) };
            }
            if let Some(extra) = link {
                // Longer than its count, or a cycle: a block linked twice (SEG-G4).
                return Err(Violation::new(
                    "SEG-G4",
                    extra.as_ptr().addr(),
                    "list is longer than its count or cyclic",
                ));
            }
        }
        Ok(())
    }

    // ----- routing ---------------------------------------------------------

    /// The class serving `layout` (size > 0), or `None` for the parent.
    #[inline]
    fn class_of(&self, layout: Layout) -> Option<usize> {
        if layout.align() > CLASS_ALIGN {
            return None;
        }
        self.sizes.iter().position(|&s| layout.size() <= s)
    }

    /// The layout class `i`'s blocks have in the parent.
    #[inline]
    fn class_layout(&self, i: usize) -> Layout {
        // SAFETY: `sizes[i]` is a non-zero multiple of 16 no larger than
        // `isize::MAX` (SEG-G1), so rounding it up to 16 does not overflow
        // `isize`; 16 is a power of two.
        unsafe { Layout::from_size_align_unchecked(self.sizes[i], CLASS_ALIGN) }
    }

    // ----- the lists -------------------------------------------------------

    /// The link stored in `block`'s first word.
    ///
    /// # Safety
    /// `block` is on a list (SEG-G3).
    #[inline]
    unsafe fn next(block: NonNull<u8>) -> Option<NonNull<u8>> {
        // SAFETY: a listed block is a 16-aligned block of at least 16 bytes
        // owned by us whose first word we wrote as a link (SEG-G1, SEG-G3).
        unsafe { block.cast::<Option<NonNull<u8>>>().read() }
    }

    #[inline]
    fn pop(&self, i: usize) -> Option<NonNull<u8>> {
        let block = self.heads[i].get()?;
        // SAFETY: `block` is the head of list `i` (SEG-G3).
        self.heads[i].set(unsafe { Self::next(block) });
        self.counts[i].set(self.counts[i].get() - 1);
        Some(block)
    }

    /// Puts `block` on list `i`.
    ///
    /// # Safety
    /// `block` is a live parent block allocated with `class_layout(i)` that
    /// no caller holds any more, and it is not on any list; the list has
    /// room (`counts[i] < limits[i]`).
    #[inline]
    unsafe fn push(&self, i: usize, block: NonNull<u8>) {
        // SAFETY: the block has at least `sizes[i] >= 16` writable bytes and
        // is 16-aligned (parent allocated it with `class_layout(i)`), and it
        // is ours alone (caller contract).
        unsafe {
            block
                .cast::<Option<NonNull<u8>>>()
                .write(self.heads[i].get())
        };
        self.heads[i].set(Some(block));
        self.counts[i].set(self.counts[i].get() + 1);
    }

    /// Whether `addr` is on list `i` (at most `counts[i]` steps).
    fn listed(&self, i: usize, addr: usize) -> bool {
        let mut link = self.heads[i].get();
        while let Some(block) = link {
            if block.as_ptr().addr() == addr {
                return true;
            }
            // SAFETY: `block` was reached from the head of list `i` (SEG-G3).
            link = unsafe { Self::next(block) };
        }
        false
    }

    /// A block of class `i`: from the list, or from a fresh batch.
    fn take(&self, i: usize) -> Result<NonNull<u8>, AllocError> {
        if let Some(block) = self.pop(i) {
            return Ok(block);
        }
        let layout = self.class_layout(i);
        let first = self.parent.allocate(layout)?.cast::<u8>();
        let extra = (self.batch - 1).min(self.limits[i] - self.counts[i].get());
        for _ in 0..extra {
            let Ok(block) = self.parent.allocate(layout) else {
                break; // the parent is running low: what we have will do.
            };
            // SAFETY: a fresh parent block of `class_layout(i)`, held by
            // nobody, not listed; `extra` keeps the list within its cap.
            unsafe { self.push(i, block.cast()) };
        }
        Ok(first)
    }

    /// What is wrong with freeing `ptr` into class `i`, if anything can be
    /// seen; `thorough` searches the whole list.
    fn diagnose(&self, i: usize, ptr: NonNull<u8>, thorough: bool) -> Option<Corruption> {
        let addr = ptr.as_ptr().addr();
        if !is_aligned(addr, CLASS_ALIGN) {
            return Some(Corruption::MisalignedPointer { addr });
        }
        if self.heads[i].get() == Some(ptr) || (thorough && self.listed(i, addr)) {
            return Some(Corruption::DoubleFree { addr });
        }
        None
    }

    /// Frees a class-`i` block the checks passed: onto the list, or back to
    /// the parent if the list is full.
    ///
    /// # Safety
    /// `ptr` is a live class-`i` block from `take(i)`, no longer used.
    unsafe fn release(&self, i: usize, ptr: NonNull<u8>) {
        if self.counts[i].get() < self.limits[i] {
            // SAFETY: a block from `take(i)` is a parent block of
            // `class_layout(i)` (SEG-G3); the caller gave it up; it passed the
            // double-free check, and the list has room.
            unsafe { self.push(i, ptr) }
        } else {
            // SAFETY: as above; the parent allocated it with this layout.
            unsafe { self.parent.deallocate(ptr, self.class_layout(i)) }
        }
    }
}

impl<A: CheckedFree> Segregated<A> {
    /// The checked free: like `deallocate`, but returns what it detects
    /// instead of reporting it, never reports (here or in the parent), and
    /// changes nothing on `Err`.
    ///
    /// A class block is first looked for in its list (a double free of a
    /// block still cached, found by comparing addresses: the pointer is
    /// never read), then given **straight back to the parent** through the
    /// parent's checked free with the class's layout, instead of onto the
    /// list: only the parent can tell a live block from a foreign, interior
    /// or already freed pointer, and its checked free does so before it
    /// writes. A forwarded block goes to the parent's checked free as it
    /// is. So checked frees do not refill the lists (they are the careful
    /// path, not the fast one).
    ///
    /// # Safety
    ///
    /// If `ptr` is a live block of this allocator, `layout` must fit it (its
    /// alignment, a size between the request and the returned length), and
    /// the caller is done with it.
    ///
    /// ```
    /// use core::ptr::NonNull;
    /// use freespace_core::alloc::{Allocator, Layout};
    /// use freespace_core::Corruption;
    /// use freespace_segregated::Segregated;
    /// use freespace_testkit::misuse::Tracked;
    ///
    /// let heap = Segregated::new(Tracked::new()); // any parent with a checked free
    /// let l = Layout::new::<[u64; 2]>();
    /// let p = heap.allocate(l).unwrap().cast::<u8>();
    /// // SAFETY: `p` is live with layout `l`; afterwards it is not, and the
    /// // checked free only inspects it.
    /// unsafe {
    ///     assert_eq!(heap.try_deallocate(p, l), Ok(()));
    ///     assert_eq!(heap.try_deallocate(p, l), Err(Corruption::DoubleFree { addr: p.as_ptr().addr() }));
    /// }
    /// let mut local = [0u128; 1];
    /// let foreign = NonNull::from(&mut local).cast::<u8>();
    /// // SAFETY: not a block of `heap`: only checked, never freed.
    /// assert!(matches!(unsafe { heap.try_deallocate(foreign, l) }, Err(Corruption::ForeignPointer { .. })));
    /// ```
    pub unsafe fn try_deallocate(
        &self,
        ptr: NonNull<u8>,
        layout: Layout,
    ) -> Result<(), Corruption> {
        if layout.size() == 0 {
            return Ok(());
        }
        match self.class_of(layout) {
            Some(i) => {
                if let Some(c) = self.diagnose(i, ptr, true) {
                    return Err(c);
                }
                // SAFETY: not cached (SEG-G4 with the search above), so if it is
                // a live class-`i` block of ours it is a live parent block of
                // `class_layout(i)` (SEG-G3, caller contract); if it is not, the
                // parent's checked free refuses it without writing.
                unsafe { self.parent.try_deallocate(ptr, self.class_layout(i)) }
            }
            // SAFETY: a forwarded block is the parent's, with a fitting
            // layout (caller contract); anything else the parent refuses.
            None => unsafe { self.parent.try_deallocate(ptr, layout) },
        }
    }
}

/// Block by block (the provided methods).
impl<A: Allocator> freespace_core::Batch for Segregated<A> {}

// SAFETY: class blocks are parent blocks of `Layout(S, 16)` reported as `S`
// bytes (no more than the parent gave) and owned by one caller until freed
// (SEG-G3); forwarded blocks are the parent's answer unchanged. Routing sends
// every fitting free back where the block came from (see "Routing").
unsafe impl<A: Allocator> Allocator for Segregated<A> {
    #[inline]
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        if layout.size() == 0 {
            return Ok(dangling(layout));
        }
        match self.class_of(layout) {
            Some(i) => Ok(NonNull::slice_from_raw_parts(self.take(i)?, self.sizes[i])),
            None => self.parent.allocate(layout),
        }
    }

    fn allocate_zeroed(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        if layout.size() == 0 {
            return Ok(dangling(layout));
        }
        match self.class_of(layout) {
            Some(i) => {
                let block = NonNull::slice_from_raw_parts(self.take(i)?, self.sizes[i]);
                // SAFETY: a class block has `sizes[i]` writable bytes (SEG-G3).
                unsafe { block.cast::<u8>().write_bytes(0, self.sizes[i]) };
                Ok(block)
            }
            None => self.parent.allocate_zeroed(layout),
        }
    }

    #[inline]
    unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
        if layout.size() == 0 {
            return;
        }
        match self.class_of(layout) {
            Some(i) => {
                if let Some(c) = self.diagnose(i, ptr, cfg!(debug_assertions)) {
                    report(c, NAME);
                    return;
                }
                // SAFETY: a fitting layout rounds to the class the block was
                // allocated from (see "Routing"); the caller gives it up.
                unsafe { self.release(i, ptr) }
            }
            // SAFETY: a forwarded block, freed with a layout that fits it.
            None => unsafe { self.parent.deallocate(ptr, layout) },
        }
    }

    freespace_core::forward_resize!(method resize);
}

impl<A: Allocator> Segregated<A> {
    /// `grow`, `grow_zeroed` and `shrink` in one: same class is free, two
    /// forwarded layouts are the parent's resize, anything else moves.
    ///
    /// # Safety
    /// `ptr` is a live block of `self` and `old` fits it (or `old.size()` is
    /// zero and `ptr` is dangling).
    unsafe fn resize(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
        zeroed: bool,
    ) -> Result<NonNull<[u8]>, AllocError> {
        // SAFETY: `ptr` is live with `old`, or `old` is empty (caller
        // contract).
        if let Some(done) = unsafe { empty_side(self, ptr, old, new, zeroed) } {
            return done;
        }
        match (self.class_of(old), self.class_of(new)) {
            (Some(i), Some(j)) if i == j => {
                let len = self.sizes[i];
                if zeroed && new.size() > old.size() {
                    // SAFETY: the class block has `len` writable bytes.
                    unsafe { ptr.add(old.size()).write_bytes(0, len - old.size()) };
                }
                Ok(NonNull::slice_from_raw_parts(ptr, len))
            }
            // SAFETY: both layouts route to the parent, which allocated the
            // block; `old` fits it (caller contract).
            (None, None) if new.size() >= old.size() => unsafe {
                if zeroed {
                    self.parent.grow_zeroed(ptr, old, new)
                } else {
                    self.parent.grow(ptr, old, new)
                }
            },
            // SAFETY: as above, and `new.size() < old.size()`.
            (None, None) => unsafe { self.parent.shrink(ptr, old, new) },
            // SAFETY: `ptr` is live with `old.size()` bytes and `old` fits
            // it, so `self.deallocate(ptr, old)` frees it where it came from;
            // a fresh block never overlaps a live one.
            _ => unsafe {
                relocate(
                    ptr,
                    old,
                    new,
                    |l| {
                        if zeroed {
                            self.allocate_zeroed(l)
                        } else {
                            self.allocate(l)
                        }
                    },
                    |p, l| self.deallocate(p, l),
                )
            },
        }
    }
}

impl<A: Allocator> Drop for Segregated<A> {
    /// Gives the cached blocks back to the parent.
    fn drop(&mut self) {
        self.release_cached();
    }
}

// SAFETY: a live block of ours is a live parent block (class blocks are
// parent blocks handed on; forwarded ones are the parent's), so the parent's
// `true` for every live block carries over, and so does its `false` for
// memory it does not manage. Cached blocks are parent memory that is not a
// live block of ours: either answer is allowed there.
unsafe impl<A: Allocator + Owns> Owns for Segregated<A> {
    #[inline]
    fn owns(&self, ptr: NonNull<u8>) -> bool {
        self.parent.owns(ptr)
    }
}

impl<A: Allocator + Inspect> Inspect for Segregated<A> {
    /// The parent's walk, with the blocks cached in the lists (which the
    /// parent sees as used) reported [`BlockState::Free`].
    ///
    /// # Time complexity
    /// O(parent blocks × cached blocks): a diagnostic, not a hot path.
    fn inspect(&self, visit: &mut dyn FnMut(BlockInfo)) {
        self.parent.inspect(&mut |block| {
            let cached = block.state == BlockState::Used
                && (0..self.sizes.len()).any(|i| self.listed(i, block.addr));
            if cached {
                visit(BlockInfo {
                    state: BlockState::Free,
                    ..block
                });
            } else {
                visit(block);
            }
        });
    }
}

impl<A: Allocator + freespace_core::Check> freespace_core::Check for Segregated<A> {
    /// The lists ([`check`](Segregated::check)), then the parent's whole stack.
    fn check_all(&self) -> Result<(), Violation> {
        self.check()?;
        self.parent.check_all()
    }
}

// SAFETY: `try_deallocate` frees a live block (to the parent, through its
// checked free), and returns `Err` before touching a list, or with the
// parent's `Err`, which changed nothing.
unsafe impl<A: CheckedFree> CheckedFree for Segregated<A> {
    #[inline]
    unsafe fn try_deallocate(&self, ptr: NonNull<u8>, layout: Layout) -> Result<(), Corruption> {
        // SAFETY: the caller's contract is the inherent method's.
        unsafe { Segregated::try_deallocate(self, ptr, layout) }
    }
}

/// Gives every cached block back to the parent
/// ([`release_cached`](Segregated::release_cached)), then trims the parent.
impl<A: Allocator + freespace_core::Trim> freespace_core::Trim for Segregated<A> {
    fn trim(&self) -> usize {
        self.release_cached();
        self.parent.trim()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use freespace_core::alloc::Global;

    #[test]
    fn sizes_are_validated() {
        assert!(valid_sizes(DEFAULT_SIZES));
        assert!(valid_sizes(&[]));
        assert!(!valid_sizes(&[16, 16]));
        assert!(!valid_sizes(&[32, 16]));
        assert!(!valid_sizes(&[0]));
        assert!(!valid_sizes(&[24]));
        assert!(!valid_sizes(&[16; MAX_CLASSES + 1]));
    }

    #[test]
    fn routing_picks_the_smallest_class_that_fits() {
        let heap = Segregated::new(Global);
        let l = |s, a| Layout::from_size_align(s, a).unwrap();
        assert_eq!(heap.class_of(l(1, 1)), Some(0));
        assert_eq!(heap.class_of(l(16, 16)), Some(0));
        assert_eq!(heap.class_of(l(17, 8)), Some(1));
        assert_eq!(heap.class_of(l(512, 16)), Some(5));
        assert_eq!(heap.class_of(l(513, 16)), None);
        assert_eq!(heap.class_of(l(16, 32)), None);
    }

    #[test]
    fn limits_follow_the_cap() {
        let heap = Segregated::new(Global).with_cap(100);
        assert_eq!(&heap.limits[..6], &[6, 3, 1, 0, 0, 0]);
    }

    #[test]
    fn check_finds_a_count_that_lies() {
        let heap = Segregated::new(Global);
        let l = Layout::new::<u64>();
        let b = heap.allocate(l).unwrap();
        heap.check().unwrap();
        heap.counts[0].set(heap.counts[0].get() + 1);
        assert_eq!(heap.check().unwrap_err().invariant, "SEG-G2");
        heap.counts[0].set(heap.counts[0].get() - 2);
        assert_eq!(heap.check().unwrap_err().invariant, "SEG-G4");
        heap.counts[0].set(heap.counts[0].get() + 1);
        // SAFETY: allocated above with `l`.
        unsafe { heap.deallocate(b.cast(), l) };
        heap.check().unwrap();
    }
}
