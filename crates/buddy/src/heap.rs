//! The heap state behind [`Buddy`](crate::Buddy): free lists, zones, and the
//! split/merge operations on them. Everything here works on `&mut State`;
//! `Buddy` adds the cell, the source and the trait impls.

use core::mem::{align_of, size_of};
use core::ptr::NonNull;

use freespace_core::layout::{align_down, align_up};
use freespace_core::{Corruption, Violation};

use crate::zone::{self, Zone, ZonePtr, WORD_BITS};

/// The heap is refusing work: a walk is in progress ([`WALKING`]) or a free
/// list was found corrupt ([`POISONED`]).
pub(crate) const POISONED: u8 = 1;
/// See [`POISONED`].
pub(crate) const WALKING: u8 = 2;

/// The links a free block carries in its first bytes.
#[repr(C)]
pub(crate) struct FreeNode {
    next: Option<NonNull<FreeNode>>,
    prev: Option<NonNull<FreeNode>>,
}

/// Bytes of a free-list node: the smallest `MIN` allowed.
pub(crate) const NODE_BYTES: usize = size_of::<FreeNode>();
/// The alignment free-list nodes and zone headers need.
pub(crate) const NODE_ALIGN: usize = {
    let a = align_of::<FreeNode>();
    let z = align_of::<Zone>();
    if a > z {
        a
    } else {
        z
    }
};

/// One zone's header fields and bitmaps, copied out: the heap keeps the
/// view of the zone it used last (`State::hot`), so the common lookup reads
/// no zone header.
///
/// The bit accessors come in two kinds: the `unsafe` ones (`free_at`,
/// `split_at`, `mark_*`) trust their caller that the node lies in the tree
/// and do no bounds check (the hot paths establish that with the range
/// checks they need anyway); the safe ones (`is_free`, `is_split`,
/// `set_*`) check and are for the cold paths and `check`.
#[derive(Clone, Copy)]
pub(crate) struct View<const MIN: usize, const ORDERS: usize> {
    pub(crate) base: NonNull<u8>,
    pub(crate) raw_start: usize,
    pub(crate) raw_end: usize,
    pub(crate) lo: usize,
    pub(crate) hi: usize,
    pub(crate) meta_lo: usize,
    /// The zone's biased bitmap pointer ([`ZonePtr::biased_bitmap`]).
    bitmap: *mut usize,
}

impl<const MIN: usize, const ORDERS: usize> View<MIN, ORDERS> {
    const SHIFT: u32 = MIN.trailing_zeros();

    /// The view of no zone: it contains no address (`lo == hi == meta_lo`),
    /// so no bitmap access is ever made through it.
    pub(crate) const EMPTY: Self = View {
        base: NonNull::dangling(),
        raw_start: 0,
        raw_end: 0,
        lo: 0,
        hi: 0,
        meta_lo: 0,
        bitmap: core::ptr::null_mut(),
    };

    #[inline(always)]
    fn new(zone: ZonePtr) -> Self {
        let z = zone.get();
        let bitmap = zone.biased_bitmap();
        View {
            base: z.base,
            raw_start: z.raw_start,
            raw_end: z.raw_end,
            lo: z.lo,
            hi: z.hi,
            meta_lo: z.meta_lo,
            bitmap,
        }
    }

    #[inline(always)]
    fn size(&self, k: usize) -> usize {
        MIN << k
    }

    /// Whether `a` lies in the buddy tree, `[lo, hi)`.
    #[inline(always)]
    pub(crate) fn in_zone(&self, a: usize) -> bool {
        a.wrapping_sub(self.lo) < self.hi - self.lo
    }

    /// Whether `a` lies in the block range users get, `[lo, meta_lo)`.
    #[inline(always)]
    pub(crate) fn in_blocks(&self, a: usize) -> bool {
        a.wrapping_sub(self.lo) < self.meta_lo - self.lo
    }

    /// Whether the node of level `j` starting at `p` lies inside the tree:
    /// `j` is a valid order and the node is inside `[lo, hi)`.
    #[inline(always)]
    pub(crate) fn in_tree(&self, p: usize, j: usize) -> bool {
        j < ORDERS && p >= self.lo && p <= self.hi && self.hi - p >= self.size(j)
    }

    /// [`in_tree`](Self::in_tree) for a node that starts at or below a
    /// granule of the tree (`p <= a < hi` for some `a`), as every parent
    /// does: one comparison fewer.
    #[inline(always)]
    fn parent_in_tree(&self, p: usize, j: usize) -> bool {
        debug_assert!(p < self.hi);
        j < ORDERS && p >= self.lo && self.hi - p >= self.size(j)
    }

    #[inline(always)]
    fn free_index(&self, a: usize) -> usize {
        a >> Self::SHIFT
    }

    /// The split-bit number of the node of level `j >= 1` starting at `p`.
    #[inline(always)]
    fn split_index(&self, j: usize, p: usize) -> usize {
        (p >> Self::SHIFT) + (1 << (j - 1)) - 1
    }

    /// Whether a free block starts at `a`, without a bounds check.
    ///
    /// # Safety
    ///
    /// `self` is the view of a live zone and `lo <= a < hi`: then the
    /// granule's bit is inside the bitmap (BUDDY-Z1: one bit per granule).
    #[inline(always)]
    pub(crate) unsafe fn free_at(&self, a: usize) -> bool {
        debug_assert!(self.in_zone(a));
        // SAFETY: `free_index(a)` is a granule of the tree (caller
        // contract), so its bit is inside the bitmaps (BUDDY-Z1).
        unsafe { zone::test(self.bitmap, zone::FREE, self.free_index(a)) }
    }

    /// Sets or clears the free bit of `a`, without a bounds check.
    ///
    /// # Safety
    ///
    /// As for [`free_at`](Self::free_at).
    #[inline(always)]
    unsafe fn mark_free(&self, a: usize, on: bool) {
        debug_assert!(self.in_zone(a));
        let i = self.free_index(a);
        // SAFETY: `i` is inside the bitmap (caller contract, BUDDY-Z1).
        unsafe {
            if on {
                zone::set(self.bitmap, zone::FREE, i)
            } else {
                zone::clear(self.bitmap, zone::FREE, i)
            }
        }
    }

    /// Whether the node of level `j` at `p` is split, without a bounds check.
    ///
    /// # Safety
    ///
    /// `self` is the view of a live zone, `j >= 1`, and the node lies in
    /// the tree (`lo <= p` and `p + (MIN << j) <= hi`): its split bit is the
    /// number of a granule inside it, so inside the bitmap (BUDDY-Z1).
    #[inline(always)]
    pub(crate) unsafe fn split_at(&self, j: usize, p: usize) -> bool {
        debug_assert!(j >= 1 && p >= self.lo && p <= self.hi && self.hi - p >= self.size(j));
        // SAFETY: the index is inside the bitmap (caller contract, BUDDY-Z1).
        unsafe { zone::test(self.bitmap, zone::SPLIT, self.split_index(j, p)) }
    }

    /// Sets or clears the split bit of the node of level `j` at `p`,
    /// without a bounds check.
    ///
    /// # Safety
    ///
    /// As for [`split_at`](Self::split_at).
    #[inline(always)]
    unsafe fn mark_split(&self, j: usize, p: usize, on: bool) {
        debug_assert!(j >= 1 && p >= self.lo && p <= self.hi && self.hi - p >= self.size(j));
        let i = self.split_index(j, p);
        // SAFETY: `i` is inside the bitmap (caller contract, BUDDY-Z1).
        unsafe {
            if on {
                zone::set(self.bitmap, zone::SPLIT, i)
            } else {
                zone::clear(self.bitmap, zone::SPLIT, i)
            }
        }
    }

    /// Whether a free block starts at `a` (any address).
    #[inline(always)]
    pub(crate) fn is_free(&self, a: usize) -> bool {
        // SAFETY: `a` is in the tree (checked first).
        self.in_zone(a) && unsafe { self.free_at(a) }
    }

    /// Sets or clears the free bit of `a`; nothing if `a` is outside the tree.
    #[inline(always)]
    fn set_free(&self, a: usize, on: bool) {
        debug_assert!(self.in_zone(a));
        if self.in_zone(a) {
            // SAFETY: `a` is in the tree (checked above).
            unsafe { self.mark_free(a, on) }
        }
    }

    /// Whether the node of level `j` at `p` is split. Level 0 never is, nor
    /// is a node outside the tree.
    #[inline(always)]
    pub(crate) fn is_split(&self, j: usize, p: usize) -> bool {
        // SAFETY: `j >= 1` and the node is in the tree (checked first).
        j >= 1 && self.in_tree(p, j) && unsafe { self.split_at(j, p) }
    }

    /// Sets or clears the split bit of the node of level `j` at `p`; nothing
    /// if the node is level 0 or outside the tree.
    #[inline(always)]
    fn set_split(&self, j: usize, p: usize, on: bool) {
        debug_assert!(j >= 1 && self.in_tree(p, j));
        if j >= 1 && self.in_tree(p, j) {
            // SAFETY: `j >= 1` and the node is in the tree (checked above).
            unsafe { self.mark_split(j, p, on) }
        }
    }

    /// Whether the node of order `k` at `a` is a block (free or used): it is
    /// in the tree, not split, and its parent is split or outside the tree
    /// (BUDDY-B4).
    #[inline(always)]
    pub(crate) fn is_block(&self, a: usize, k: usize) -> bool {
        let s = self.size(k);
        if a & (s - 1) != 0 || !self.in_tree(a, k) || self.is_split(k, a) {
            return false;
        }
        let p = a & !s;
        !self.in_tree(p, k + 1) || self.is_split(k + 1, p)
    }

    /// The order of the block containing granule `a` (in `[lo, hi)`): the
    /// first level whose parent is split or outside the tree. Nodes inside a
    /// block are never split (BUDDY-B4), so the walk passes through them.
    ///
    /// # Time complexity
    ///
    /// O(order of the block).
    #[inline]
    pub(crate) fn order_of(&self, a: usize) -> usize {
        debug_assert!(self.in_zone(a));
        let mut j = 0;
        loop {
            let p = a & !(self.size(j + 1) - 1);
            // `p <= a < hi`. SAFETY: level `j + 1 >= 1`, and the node is in
            // the tree (checked first).
            if !self.parent_in_tree(p, j + 1) || unsafe { self.split_at(j + 1, p) } {
                return j;
            }
            j += 1;
        }
    }

    /// A pointer to `a` (inside the zone) with the zone's provenance.
    #[inline(always)]
    pub(crate) fn ptr(&self, a: usize) -> NonNull<u8> {
        debug_assert!(a >= self.raw_start && a < self.raw_end);
        // SAFETY: `a >= raw_start > 0`: the zone lies in a region, and no
        // region starts at address 0.
        unsafe { NonNull::new_unchecked(self.base.as_ptr().with_addr(a)) }
    }

    /// The order of the largest naturally aligned block starting at `a`
    /// that fits in `[a, end)` (which is at least one granule).
    #[inline]
    fn piece(&self, a: usize, end: usize) -> usize {
        let aligned = (a >> Self::SHIFT).trailing_zeros() as usize;
        let fits = (usize::BITS - 1 - ((end - a) >> Self::SHIFT).leading_zeros()) as usize;
        aligned.min(fits).min(ORDERS - 1)
    }
}

/// The mutable state of a buddy heap.
pub(crate) struct State<const MIN: usize, const ORDERS: usize> {
    /// `free[k]`: the doubly linked list of free blocks of order `k`.
    pub(crate) free: [Option<NonNull<FreeNode>>; ORDERS],
    /// Bit `k` is set iff `free[k]` is non-empty.
    pub(crate) nonempty: usize,
    /// The zones, newest first.
    pub(crate) zones: Option<NonNull<Zone>>,
    /// A copy of the view of the zone used last ([`View::EMPTY`] before
    /// the first), so the common lookup is one comparison and reads no zone
    /// header. Zone headers never change once linked, except by a join,
    /// which replaces this copy with the joined zone's, so it is never
    /// stale.
    pub(crate) hot: View<MIN, ORDERS>,
    /// Bytes of all regions taken from the source.
    pub(crate) total: usize,
    /// [`POISONED`] | [`WALKING`]: the heap refuses to allocate or free.
    pub(crate) blocked: u8,
    /// Bytes freed since the free blocks were last trimmed (the purge
    /// budget's count, `Buddy::with_purge_after`).
    pub(crate) freed: usize,
}

impl<const MIN: usize, const ORDERS: usize> State<MIN, ORDERS> {
    pub(crate) const SHIFT: u32 = MIN.trailing_zeros();

    pub(crate) const fn new() -> Self {
        State {
            free: [None; ORDERS],
            nonempty: 0,
            zones: None,
            hot: View::EMPTY,
            total: 0,
            blocked: 0,
            freed: 0,
        }
    }

    /// Calls `f` with every free block of order `k` (its pointer), in list
    /// order. The walk is bounded by the heap's size, so a list damaged
    /// into a cycle ends it rather than looping.
    pub(crate) fn each_free(&self, k: usize, mut f: impl FnMut(NonNull<u8>)) {
        let mut left = self.total / Self::size(k) + 1;
        let mut n = self.free[k];
        while let Some(node) = n {
            if left == 0 {
                return;
            }
            left -= 1;
            // SAFETY: `node` is on `free[k]`, so it is a free block with an
            // initialised node (BUDDY-B3); its `next` is read before `f` runs.
            n = unsafe { (*node.as_ptr()).next };
            f(node.cast());
        }
    }

    #[inline(always)]
    pub(crate) const fn size(k: usize) -> usize {
        MIN << k
    }

    #[inline(always)]
    pub(crate) fn view(z: NonNull<Zone>) -> View<MIN, ORDERS> {
        View::new(ZonePtr(z))
    }

    /// The zone whose tree contains `a` (`lo <= a < hi`).
    #[inline(always)]
    pub(crate) fn zone_of(&self, a: usize) -> Option<View<MIN, ORDERS>> {
        if self.hot.in_zone(a) {
            return Some(self.hot);
        }
        self.find_zone(a)
    }

    /// The zone list walk behind [`zone_of`](Self::zone_of).
    #[cold]
    #[inline(never)]
    fn find_zone(&self, a: usize) -> Option<View<MIN, ORDERS>> {
        let mut cur = self.zones;
        while let Some(z) = cur {
            let h = ZonePtr(z).get();
            if a >= h.lo && a < h.hi {
                return Some(Self::view(z));
            }
            cur = h.next;
        }
        None
    }

    /// The zone whose block range (`lo <= a < meta_lo`) contains `a`.
    #[inline(always)]
    pub(crate) fn user_zone_of(&self, a: usize) -> Option<View<MIN, ORDERS>> {
        self.zone_of(a).filter(|v| a < v.meta_lo)
    }

    /// Whether `a` is in the block range (`lo <= a < meta_lo`) of a zone;
    /// if so, that zone is now the hot one (`self.hot`).
    #[inline(always)]
    pub(crate) fn focus(&mut self, a: usize) -> bool {
        self.hot.in_blocks(a) || self.refocus(a)
    }

    #[cold]
    #[inline(never)]
    fn refocus(&mut self, a: usize) -> bool {
        match self.find_zone(a) {
            Some(v) if v.in_blocks(a) => {
                self.hot = v;
                true
            }
            _ => false,
        }
    }

    /// Whether the link `node` may be dereferenced as a block of order
    /// `k`: it is in some zone's block range and aligned to its order, so
    /// following a damaged link never reads or writes outside the heap's
    /// blocks. (It is not checked against the free bitmap here, which would
    /// cost a cache miss per link; a head is, in `take`, before it is
    /// handed out, and `unlink` confirms `prev` by its `next`.)
    #[inline(always)]
    fn plausible(&self, node: NonNull<FreeNode>, k: usize) -> bool {
        let a = node.as_ptr().addr();
        if a & (Self::size(k) - 1) != 0 {
            return false;
        }
        self.hot.in_blocks(a) || self.in_other_blocks(a)
    }

    /// Whether `a` is in the block range of a zone other than the hot one.
    #[cold]
    #[inline(never)]
    fn in_other_blocks(&self, a: usize) -> bool {
        self.find_zone(a).is_some_and(|v| v.in_blocks(a))
    }

    #[cold]
    fn poison(&mut self, node: NonNull<FreeNode>) -> Corruption {
        self.blocked |= POISONED;
        Corruption::CorruptFreeList {
            addr: node.as_ptr().addr(),
        }
    }

    /// Pushes the free block at `node` on `free[k]`.
    #[inline(always)]
    fn push(&mut self, node: NonNull<FreeNode>, k: usize) {
        let head = self.free[k];
        // SAFETY: `node` is a block of order `k >= 0` (at least `MIN >=
        // NODE_BYTES` bytes, aligned to `MIN >= NODE_ALIGN`) that the heap
        // owns and nobody else uses (it is being made free).
        unsafe {
            node.as_ptr().write(FreeNode {
                next: head,
                prev: None,
            })
        };
        if let Some(h) = head {
            // SAFETY: `h` heads `free[k]`, so it is a free block (BUDDY-B3) whose
            // node is initialised.
            unsafe { (*h.as_ptr()).prev = Some(node) };
        }
        self.free[k] = Some(node);
        self.nonempty |= 1 << k;
    }

    /// Removes the free block `node` from `free[k]`, checking its links.
    fn unlink(&mut self, node: NonNull<FreeNode>, k: usize) -> Result<(), Corruption> {
        // SAFETY: the caller found `node` marked free with order `k`, so it
        // is a free block with an initialised node (BUDDY-B3).
        let FreeNode { next, prev } = unsafe { node.as_ptr().read() };
        if let Some(n) = next {
            if !self.plausible(n, k) {
                return Err(self.poison(node));
            }
        }
        if self.free[k] == Some(node) {
            // The head: its `prev` is stale (BUDDY-B5); the next node becomes the
            // head and its `prev` need not be touched.
            self.free[k] = next;
            if next.is_none() {
                self.nonempty &= !(1 << k);
            }
            return Ok(());
        }
        let Some(p) = prev else {
            return Err(self.poison(node));
        };
        // SAFETY: `plausible` confirms `p` is a free block of ours before
        // it is read.
        if !self.plausible(p, k) || unsafe { (*p.as_ptr()).next } != Some(node) {
            return Err(self.poison(node));
        }
        // SAFETY: `p` is a free block of ours (checked above).
        unsafe { (*p.as_ptr()).next = next };
        if let Some(n) = next {
            // SAFETY: `n` is a free block of ours (checked above).
            unsafe { (*n.as_ptr()).prev = Some(p) };
        }
        Ok(())
    }

    /// Takes a block of order `k`: the smallest free block of order at
    /// least `k`, halved until it is order `k`; the upper halves go on their
    /// free lists. `Ok(None)` when no free block is large enough.
    ///
    /// The head is confirmed against the bitmap before it is handed out,
    /// and the next node before it becomes the head, so a link damaged by a
    /// write into a free block is caught here at the latest. The head's
    /// `prev` is left stale: a head's `prev` is never read (BUDDY-B5), which
    /// saves a store into a cold block on every allocation.
    ///
    /// # Time complexity
    ///
    /// O(1) to find the list (`trailing_zeros` of the non-empty mask), then
    /// one step per halving.
    #[inline(always)]
    pub(crate) fn take(&mut self, k: usize) -> Result<Option<NonNull<u8>>, Corruption> {
        let mask = self.nonempty & (usize::MAX << k);
        if mask == 0 {
            return Ok(None);
        }
        let mut j = mask.trailing_zeros() as usize;
        let Some(node) = self.free[j] else {
            return Err(self.poison(NonNull::dangling()));
        };
        let a = node.as_ptr().addr();
        let s = Self::size(j);
        if !self.focus(a) {
            return Err(self.poison(node));
        }
        let v = self.hot;
        // `a` is in the block range (focus); the block must be aligned,
        // whole, and marked free.
        if a & (s - 1) != 0 || v.hi - a < s
            // SAFETY: `lo <= a < meta_lo <= hi` (focus).
            || !unsafe { v.free_at(a) }
        {
            return Err(self.poison(node));
        }
        // SAFETY: `node` heads `free[j]` and is marked free: a free block
        // with an initialised node (BUDDY-B3).
        let next = unsafe { (*node.as_ptr()).next };
        match next {
            Some(n) if !self.plausible(n, j) => return Err(self.poison(node)),
            Some(_) => {}
            None => self.nonempty &= !(1 << j),
        }
        self.free[j] = next;
        // SAFETY: the node `(j, a)` lies in the tree (`lo <= a`, `a + s <=
        // hi`, checked above), and so do its first granule and all the nodes
        // inside it, which the loop below marks.
        unsafe { v.mark_free(a, false) };
        while j > k {
            j -= 1;
            let b = a + Self::size(j);
            // SAFETY: as above; `j + 1 >= 1`.
            unsafe {
                v.mark_split(j + 1, a, true);
                v.mark_free(b, true);
            }
            self.push(v.ptr(b).cast(), j);
        }
        Ok(Some(v.ptr(a)))
    }

    /// Frees `(a, k)` if it is a used block of the hot zone and returns
    /// `Ok(true)`; returns `Ok(false)`, changing nothing, if it is not.
    /// The caller has made `a`'s zone hot ([`focus`](Self::focus)).
    ///
    /// # Time complexity
    ///
    /// Four bit reads to confirm the block, then as [`release`](Self::release).
    #[inline(always)]
    pub(crate) fn release_if_used(&mut self, a: usize, k: usize) -> Result<bool, Corruption> {
        let v = self.hot;
        debug_assert!(v.in_blocks(a) && k < ORDERS);
        let s = Self::size(k);
        if a & (s - 1) != 0 || v.hi - a < s {
            return Ok(false);
        }
        // SAFETY: the node `(k, a)` lies in the tree (`lo <= a` by the
        // caller, `a + s <= hi` checked above), so does its first granule,
        // and `k >= 1` for the split bit.
        if unsafe { v.free_at(a) || (k >= 1 && v.split_at(k, a)) } {
            return Ok(false);
        }
        let p = a & !s;
        let parent = v.parent_in_tree(p, k + 1);
        // SAFETY: the parent is in the tree (checked first).
        if parent && !unsafe { v.split_at(k + 1, p) } {
            return Ok(false);
        }
        self.merge(&v, a, k, parent).map(|()| true)
    }

    /// Frees the used block `(a, k)` of the hot zone: merges it with its
    /// buddy while the buddy is a free block of the same order, then puts
    /// the result on its free list. The caller has made `a`'s zone hot
    /// ([`focus`](Self::focus)).
    ///
    /// # Time complexity
    ///
    /// O(1) per merge: the buddy test is two bit reads, the unlink is O(1).
    #[inline]
    pub(crate) fn release(&mut self, a: usize, k: usize) -> Result<(), Corruption> {
        let v = self.hot;
        debug_assert!(v.is_block(a, k) && !v.is_free(a));
        let parent = v.parent_in_tree(a & !Self::size(k), k + 1);
        self.merge(&v, a, k, parent)
    }

    /// The loop of [`release`](Self::release). `parent`: whether the parent
    /// of `(a, k)` is in the tree (then it is split, BUDDY-B4).
    ///
    /// The first buddy test is inline; the merging itself is out of line,
    /// so the common free that does not merge stays small (fewer registers
    /// to save in the caller).
    #[inline(always)]
    fn merge(
        &mut self,
        v: &View<MIN, ORDERS>,
        a: usize,
        k: usize,
        parent: bool,
    ) -> Result<(), Corruption> {
        debug_assert!(v.lo == self.hot.lo && v.hi == self.hot.hi);
        if parent && Self::buddy_free(v, a, k) {
            return self.merge_up(a, k);
        }
        // SAFETY: `(k, a)` is a block of the zone, so in the tree, and so is
        // its first granule.
        unsafe { v.mark_free(a, true) };
        self.push(v.ptr(a).cast(), k);
        Ok(())
    }

    /// Whether the buddy of `(a, k)`, whose parent is in the tree, is a free
    /// block of order `k`: marked free and (above order 0) not split.
    #[inline(always)]
    fn buddy_free(v: &View<MIN, ORDERS>, a: usize, k: usize) -> bool {
        let b = a ^ Self::size(k);
        // SAFETY: the parent `(k + 1, a & !size(k))` is in the tree, so is
        // its half `(k, b)` and its first granule.
        unsafe { v.free_at(b) && (k == 0 || !v.split_at(k, b)) }
    }

    /// Merges `(a, k)` of the hot zone with its free buddy, and the result
    /// with its own free buddy while there is one, then frees the result.
    #[inline(never)]
    fn merge_up(&mut self, mut a: usize, mut k: usize) -> Result<(), Corruption> {
        // A copy: `self` changes below, the zone's view does not.
        let v = self.hot;
        loop {
            let s = Self::size(k);
            let p = a & !s;
            let b = a ^ s;
            self.unlink(v.ptr(b).cast(), k)?;
            // SAFETY: the parent `(k + 1, p)` is in the tree (the loop
            // condition), so is its half `b` and its first granule.
            unsafe {
                v.mark_free(b, false);
                v.mark_split(k + 1, p, false);
            }
            a = p;
            k += 1;
            // `p <= a < hi`: the parent's start is in the tree.
            if !(v.parent_in_tree(a & !Self::size(k), k + 1) && Self::buddy_free(&v, a, k)) {
                break;
            }
        }
        // SAFETY: `(k, a)` is the merged block, in the tree, and so is its
        // first granule.
        unsafe { v.mark_free(a, true) };
        self.push(v.ptr(a).cast(), k);
        Ok(())
    }

    /// Splits the used block `(a, k_old)` down to order `k_new`, freeing the
    /// upper halves (their buddies are the kept lower halves, which are
    /// used, so none of them merges).
    pub(crate) fn shrink_in_place(
        &mut self,
        v: &View<MIN, ORDERS>,
        a: usize,
        k_old: usize,
        k_new: usize,
    ) {
        for j in (k_new..k_old).rev() {
            v.set_split(j + 1, a, true);
            let b = a + Self::size(j);
            v.set_free(b, true);
            self.push(v.ptr(b).cast(), j);
        }
    }

    /// Grows the used block `(a, k_old)` to order `k_new` by absorbing its
    /// upper buddies, if each is a free block of the right order. Returns
    /// `Ok(false)` (changing nothing) otherwise.
    pub(crate) fn grow_in_place(
        &mut self,
        v: &View<MIN, ORDERS>,
        a: usize,
        k_old: usize,
        k_new: usize,
    ) -> Result<bool, Corruption> {
        if a & (Self::size(k_new) - 1) != 0 || !v.in_tree(a, k_new) {
            return Ok(false);
        }
        for j in k_old..k_new {
            let b = a + Self::size(j);
            if !v.is_free(b) || v.is_split(j, b) {
                return Ok(false);
            }
        }
        for j in k_old..k_new {
            let b = a + Self::size(j);
            self.unlink(v.ptr(b).cast(), j)?;
            v.set_free(b, false);
            v.set_split(j + 1, a, false);
        }
        Ok(true)
    }

    /// Marks every in-tree ancestor of the new block `(a, k)` split, so the
    /// block is one (BUDDY-B4). Stops at the first ancestor already split: the
    /// split nodes are closed under "parent of".
    fn mark_block(v: &View<MIN, ORDERS>, a: usize, k: usize) {
        let mut j = k + 1;
        while j < ORDERS {
            let p = a & !(Self::size(j) - 1);
            if !v.in_tree(p, j) || v.is_split(j, p) {
                break;
            }
            v.set_split(j, p, true);
            j += 1;
        }
    }

    /// Makes `[lo, hi)` (granule-aligned, inside the tree, not yet part of
    /// any block) into used blocks: the largest naturally aligned ones.
    fn mark_used(v: &View<MIN, ORDERS>, lo: usize, hi: usize) {
        let mut a = lo;
        while a < hi {
            let k = v.piece(a, hi);
            Self::mark_block(v, a, k);
            a += Self::size(k);
        }
    }

    /// Frees the used blocks [`mark_used`](Self::mark_used) made of `[lo,
    /// hi)`, in the hot zone.
    fn release_range(&mut self, lo: usize, hi: usize) -> Result<(), Corruption> {
        let mut a = lo;
        while a < hi {
            let k = self.hot.piece(a, hi);
            self.release(a, k)?;
            a += Self::size(k);
        }
        Ok(())
    }

    /// Adds a region from the source: joins it to the zone it continues, or
    /// makes it a zone of its own. `false` if it is too small to use (the
    /// caller gives it back). `zeroed`: the region reads as zeros (the
    /// source's CORE-S6), so the new bitmaps need no clearing — over `Mmap` a
    /// region's metadata pages are then touched only where bits are set.
    pub(crate) fn add_region(&mut self, region: NonNull<[u8]>, zeroed: bool) -> bool {
        let start = region.cast::<u8>().as_ptr().addr();
        let Some(end) = start.checked_add(region.len()) else {
            return false;
        };
        let mut prev: Option<NonNull<Zone>> = None;
        let mut cur = self.zones;
        while let Some(z) = cur {
            let h = ZonePtr(z).get();
            if h.raw_end == start {
                if self.join(prev, z, region, end, zeroed) {
                    self.total += region.len();
                    return true;
                }
                break;
            }
            prev = Some(z);
            cur = h.next;
        }
        if self.new_zone(region, start, end, zeroed) {
            self.total += region.len();
            return true;
        }
        false
    }

    /// At least the bytes of metadata, rounded to granules, for a tree of
    /// `len` bytes wherever it starts (for sizing requests to the source).
    pub(crate) fn meta_len(len: usize) -> Option<usize> {
        let words = (len >> Self::SHIFT).div_ceil(WORD_BITS).checked_add(1)?;
        align_up(Zone::meta_bytes(words)?, MIN)
    }

    /// The bitmap words and metadata bytes (rounded to granules) of a zone
    /// whose tree is `[lo, hi)`.
    fn meta_of(lo: usize, hi: usize) -> Option<(usize, usize)> {
        let words = Zone::words(lo >> Self::SHIFT, hi >> Self::SHIFT);
        Some((words, align_up(Zone::meta_bytes(words)?, MIN)?))
    }

    fn new_zone(&mut self, region: NonNull<[u8]>, start: usize, end: usize, zeroed: bool) -> bool {
        let Some(lo) = align_up(start, MIN) else {
            return false;
        };
        let hi = align_down(end, MIN);
        if hi <= lo {
            return false;
        }
        let Some((words, meta)) = Self::meta_of(lo, hi) else {
            return false;
        };
        if hi - lo < meta + MIN {
            return false;
        }
        let meta_lo = hi - meta;
        let base = region.cast::<u8>();
        // SAFETY: `meta_lo - start < region.len()`, so the pointer stays in
        // the region (CORE-S1).
        let header = unsafe { base.add(meta_lo - start) }.cast::<Zone>();
        // SAFETY: the header and both bitmaps, `meta_bytes` bytes, fit in
        // `[meta_lo, hi)`, inside the region, which is ours alone (CORE-S2);
        // `meta_lo` is a multiple of `MIN >= NODE_ALIGN`, so the header and
        // the words after it are aligned.
        unsafe {
            header.as_ptr().write(Zone {
                next: self.zones,
                base,
                raw_start: start,
                raw_end: end,
                lo,
                hi,
                meta_lo,
                first_granule: Zone::first_granule(lo >> Self::SHIFT),
                words,
                regions: 1,
            });
            if !zeroed {
                header
                    .as_ptr()
                    .add(1)
                    .cast::<usize>()
                    .write_bytes(0, 2 * words);
            }
        }
        self.zones = Some(header);
        let v = Self::view(header);
        self.hot = v;
        Self::mark_used(&v, meta_lo, hi);
        Self::mark_used(&v, lo, meta_lo);
        // The lists are sound (only our own blocks are on them) unless they
        // were already corrupt, in which case the heap is now poisoned.
        let _ = self.release_range(lo, meta_lo);
        true
    }

    /// Joins `region` (which starts at `old`'s `raw_end`) to zone `old`:
    /// new metadata for the whole run at the new top, the old bitmaps
    /// copied into it, then the new bytes and the old metadata freed so
    /// they merge with the blocks below.
    ///
    /// ```text
    /// before:  | blocks ........ | meta |              (old zone)
    ///                                   | new region ...............|
    /// after:   | blocks ........ | freed| new blocks ...... | meta' |
    /// ```
    fn join(
        &mut self,
        prev: Option<NonNull<Zone>>,
        old_zone: NonNull<Zone>,
        region: NonNull<[u8]>,
        end: usize,
        zeroed: bool,
    ) -> bool {
        let old = Self::view(old_zone);
        let old_header = ZonePtr(old_zone).get();
        let start = old.raw_end;
        let hi = align_down(end, MIN);
        if hi <= old.hi {
            return false;
        }
        let Some((words, meta)) = Self::meta_of(old.lo, hi) else {
            return false;
        };
        // The new header goes into the new region (`meta_lo >= start`).
        if hi < start || hi - start < meta {
            return false;
        }
        let meta_lo = hi - meta;
        let old_words = old_header.words;
        // SAFETY: `meta_lo - start < region.len()`: inside the region (CORE-S1).
        let header = unsafe { region.cast::<u8>().add(meta_lo - start) }.cast::<Zone>();
        let old_bitmap = ZonePtr(old_zone).bitmap();
        // SAFETY: the new header and bitmaps fit in `[meta_lo, hi)` of the
        // new region, which is ours alone (CORE-S2) and aligned as in
        // `new_zone`; the old bitmaps (`old_words` words each, BUDDY-Z1) lie
        // below `old.hi <= start`, so the copies do not overlap.
        unsafe {
            header.as_ptr().write(Zone {
                next: old_header.next,
                base: old_header.base,
                raw_start: old_header.raw_start,
                raw_end: end,
                lo: old.lo,
                hi,
                meta_lo,
                first_granule: old_header.first_granule,
                words,
                regions: old_header.regions + 1,
            });
            // Interleaved by word groups, so the old bits are a prefix.
            let bitmap = header.as_ptr().add(1).cast::<usize>();
            if zeroed {
                // The new bitmaps read as zeros: copy only the words with
                // bits set, so the pages of a large, mostly empty bitmap
                // are not made resident by writing zeros over zeros.
                for i in 0..2 * old_words {
                    let w = old_bitmap.add(i).read();
                    if w != 0 {
                        bitmap.add(i).write(w);
                    }
                }
            } else {
                bitmap.copy_from_nonoverlapping(old_bitmap, 2 * old_words);
                bitmap
                    .add(2 * old_words)
                    .write_bytes(0, 2 * (words - old_words));
            }
        }
        match prev {
            Some(p) => ZonePtr(p).set_next(Some(header)),
            None => self.zones = Some(header),
        }
        let v = Self::view(header);
        self.hot = v;
        // Every node straddling the old end contains the block at `old.hi`,
        // so marking the new blocks marks those nodes split too (BUDDY-B4).
        Self::mark_used(&v, meta_lo, hi);
        Self::mark_used(&v, old.hi, meta_lo);
        let _ = self.release_range(old.hi, meta_lo);
        let _ = self.release_range(old.meta_lo, old.hi);
        true
    }

    /// Checks BUDDY-B1–B6 (see [`Buddy`](crate::Buddy)).
    pub(crate) fn check(&self) -> Result<(), Violation> {
        if self.blocked & POISONED != 0 {
            return Err(Violation::new(
                "BUDDY-B5",
                0,
                "heap poisoned by a corrupt free list",
            ));
        }
        let mut free_blocks = 0usize;
        let mut zones = 0usize;
        let mut cur = self.zones;
        while let Some(z) = cur {
            zones += 1;
            if zones > 1 << 20 {
                return Err(Violation::new(
                    "BUDDY-B6",
                    z.as_ptr().addr(),
                    "zone list does not end",
                ));
            }
            let v = Self::view(z);
            let h = ZonePtr(z).get();
            if !(v.raw_start <= v.lo && v.lo < v.meta_lo && v.meta_lo < v.hi && v.hi <= v.raw_end)
                || v.lo % MIN != 0
                || v.hi % MIN != 0
                || z.as_ptr().addr() != v.meta_lo
                || v.hi - v.meta_lo < Zone::meta_bytes(h.words).unwrap_or(usize::MAX)
                || h.first_granule != Zone::first_granule(v.lo >> Self::SHIFT)
                || h.words != Zone::words(v.lo >> Self::SHIFT, v.hi >> Self::SHIFT)
            {
                return Err(Violation::new(
                    "BUDDY-B6",
                    v.meta_lo,
                    "zone bounds out of order",
                ));
            }
            // Walk the tree: blocks tile [lo, hi), the metadata is used
            // blocks, and the buddy of each free block is not a free block
            // of the same order.
            let mut a = v.lo;
            while a < v.hi {
                let k = v.order_of(a);
                if !v.is_block(a, k) {
                    return Err(Violation::new(
                        "BUDDY-B4",
                        a,
                        "walk is not at a block start",
                    ));
                }
                let end = a + Self::size(k);
                if a < v.meta_lo && end > v.meta_lo {
                    return Err(Violation::new("BUDDY-B6", a, "block overlaps the metadata"));
                }
                if v.is_free(a) {
                    if a >= v.meta_lo {
                        return Err(Violation::new("BUDDY-B6", a, "metadata marked free"));
                    }
                    free_blocks += 1;
                    let b = a ^ Self::size(k);
                    if v.in_tree(a & !Self::size(k), k + 1) && v.is_free(b) && v.is_block(b, k) {
                        return Err(Violation::new(
                            "BUDDY-B2",
                            a,
                            "block and its buddy both free",
                        ));
                    }
                }
                a = end;
            }
            // Only block starts carry a free bit.
            let bitmap = ZonePtr(z).bitmap();
            let mut set = 0usize;
            for w in 0..h.words {
                // SAFETY: BUDDY-Z1: the bitmaps have `2 * words` words.
                set += unsafe { *bitmap.add(2 * w + zone::FREE) }.count_ones() as usize;
            }
            let mut walked = 0usize;
            let mut a = v.lo;
            while a < v.meta_lo {
                walked += v.is_free(a) as usize;
                a += Self::size(v.order_of(a));
            }
            if set != walked {
                return Err(Violation::new(
                    "BUDDY-B3",
                    v.lo,
                    "free bit set inside a block",
                ));
            }
            cur = h.next;
        }
        // The lists hold exactly the free blocks, each on the list of its order.
        let mut listed = 0usize;
        for k in 0..ORDERS {
            if (self.nonempty >> k & 1 == 1) != self.free[k].is_some() {
                return Err(Violation::new(
                    "BUDDY-B3",
                    k,
                    "non-empty mask disagrees with list",
                ));
            }
            let mut prev: Option<NonNull<FreeNode>> = None;
            let mut cur = self.free[k];
            while let Some(n) = cur {
                let a = n.as_ptr().addr();
                listed += 1;
                if listed > free_blocks {
                    return Err(Violation::new(
                        "BUDDY-B3",
                        a,
                        "more listed blocks than free bits",
                    ));
                }
                let Some(v) = self.user_zone_of(a) else {
                    return Err(Violation::new(
                        "BUDDY-B1",
                        a,
                        "listed block outside every zone",
                    ));
                };
                if a % Self::size(k) != 0 || !v.is_free(a) || !v.is_block(a, k) {
                    return Err(Violation::new(
                        "BUDDY-B1",
                        a,
                        "listed block not a free block of its order",
                    ));
                }
                // SAFETY: `a` is a free block of ours (just checked), so its
                // node is initialised (BUDDY-B3).
                let node = unsafe { n.as_ptr().read() };
                if prev.is_some() && node.prev != prev {
                    return Err(Violation::new("BUDDY-B5", a, "back link does not match"));
                }
                prev = Some(n);
                cur = node.next;
            }
        }
        if listed != free_blocks {
            return Err(Violation::new(
                "BUDDY-B3",
                0,
                "free block missing from the lists",
            ));
        }
        Ok(())
    }
}
