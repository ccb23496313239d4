//! A cache of one object size: its slabs on three lists (Bonwick 1994 §3).
//!
//! ```text
//!  partial ──▶ [slab]⇄[slab]⇄[slab]     allocate from here first
//!  empty   ──▶ [slab]                   then here (no construction needed)
//!  full    ──▶ [slab]⇄[slab]            only to find them when checking
//!                                       and on drop
//! ```
//!
//! A slab moves between lists as its free count crosses `0` and
//! `capacity`. Empty slabs beyond `max_empty` go back to the parent at once;
//! `reap` sends back every empty slab. Both [`crate::Slab`] (one cache per
//! size class) and [`crate::ObjectCache`] (one cache) are built on this type;
//! [`Hooks`] is how an object cache constructs objects when a slab is made
//! and destructs them when it goes back.

use crate::index::Index;
use crate::one_slab::{Geometry, List, SlabPtr};
use core::cell::Cell;
use core::ptr::NonNull;
use freespace_core::alloc::{AllocError, Allocator, Layout};
use freespace_core::{report, BlockInfo, BlockState, Corruption, Violation};

/// What happens to the objects of a slab when it is made and when it is
/// given back to the parent.
pub(crate) trait Hooks {
    /// Called once for every object of a new slab, before any is handed out.
    ///
    /// # Safety
    /// `object` is an object of a new slab, not yet constructed.
    unsafe fn construct(&self, object: NonNull<u8>);

    /// Called once for every object of a slab going back to the parent that
    /// is free (constructed, owned by the cache).
    ///
    /// # Safety
    /// `object` was constructed by `construct` and is free.
    unsafe fn destruct(&self, object: NonNull<u8>);
}

/// Plain memory: nothing to construct or destruct.
pub(crate) struct NoHooks;

impl Hooks for NoHooks {
    #[inline(always)]
    unsafe fn construct(&self, _: NonNull<u8>) {}
    #[inline(always)]
    unsafe fn destruct(&self, _: NonNull<u8>) {}
}

/// A free that [`Cache::validate`] cleared: the object, and the list move
/// it causes (every header the move rewrites already verified).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Validated {
    /// Index of the object in its slab.
    index: usize,
    /// The list the slab is on.
    from: List,
    /// The list it belongs on after the free.
    to: List,
    /// The parked slab (SLAB-C1), when this free brings a full slab onto
    /// the partial list: it moves to the empty list then (its header, its
    /// neighbours' and the empty list's head already verified).
    unpark: Option<SlabPtr>,
}

/// The slabs of one object size.
///
/// # Invariants
/// - SLAB-C1: a slab is on `lists[List::for_count(free, capacity)]`, and its
///   header's `list` says so, with one exception: the *parked* slab, a slab
///   with every object free that stays on the partial list because it was
///   the only slab there when its last object came back (so a program that
///   allocates and frees one object at a time moves no slab between lists).
///   A parked slab is always the partial list's only slab ([`List::holds`];
///   a slab that joins the list moves it to the empty list).
/// - SLAB-C2: each list is doubly linked (`next.prev == self`), starts with
///   `prev == None`, and `counts[l]` is its length.
/// - SLAB-C3: every slab on the lists is in the owner's index and carries this
///   cache's `class` (the slab invariants SLAB-S1–S3 hold for it).
///
/// No link is followed and no header rewritten by a free or a list move
/// until that header's seal (SLAB-S1) has been verified.
/// - SLAB-C4: after every public operation, `counts[Empty]` plus the parked
///   slab (if any) is at most `max_empty`.
pub(crate) struct Cache {
    pub(crate) geometry: Geometry,
    class: u32,
    heads: [Cell<Option<SlabPtr>>; 3],
    counts: [Cell<usize>; 3],
}

impl Cache {
    /// A cache with no geometry, for unused class slots. Only ever used as
    /// the template of an array repeat expression (each element is a fresh
    /// copy, so no cell is shared).
    #[allow(clippy::declare_interior_mutable_const)]
    pub(crate) const UNUSED: Cache = Cache::new(Geometry::NONE, 0);

    pub(crate) const fn new(geometry: Geometry, class: u32) -> Cache {
        Cache {
            geometry,
            class,
            heads: [Cell::new(None), Cell::new(None), Cell::new(None)],
            counts: [Cell::new(0), Cell::new(0), Cell::new(0)],
        }
    }

    /// Number of slabs on `list`.
    pub(crate) fn count(&self, list: List) -> usize {
        self.counts[list as usize].get()
    }

    /// Files `slab` at the head of `list`.
    ///
    /// The old head (if any) must have passed [`SlabPtr::verify`]: its back
    /// link is about to be rewritten.
    fn push(&self, list: List, slab: SlabPtr) {
        let head = &self.heads[list as usize];
        let old = head.get();
        slab.link(list, None, old);
        if let Some(old) = old {
            old.set_prev(Some(slab));
        }
        head.set(Some(slab));
        let count = &self.counts[list as usize];
        count.set(count.get() + 1);
    }

    /// Takes `slab` off `list`, which it is on. Its neighbours must have
    /// passed [`SlabPtr::verify`] (see [`Cache::push`]).
    fn unlink(&self, slab: SlabPtr, list: List) {
        let (prev, next) = (slab.prev(), slab.next());
        match prev {
            Some(p) => p.set_next(next),
            None => self.heads[list as usize].set(next),
        }
        if let Some(n) = next {
            n.set_prev(prev);
        }
        let count = &self.counts[list as usize];
        count.set(count.get() - 1);
    }

    /// Before `slab` (verified, on `from`) moves to `to`: verifies every
    /// header the move rewrites — its neighbours and the head of `to` — and
    /// that a slab without a back link really is the head of `from`.
    fn check_move(&self, slab: SlabPtr, from: List, to: List) -> Result<(), Corruption> {
        if from == to {
            return Ok(());
        }
        if slab.prev().is_none() && self.heads[from as usize].get() != Some(slab) {
            return Err(Corruption::OverwrittenHeader { addr: slab.addr() });
        }
        for other in [slab.prev(), slab.next(), self.heads[to as usize].get()]
            .into_iter()
            .flatten()
        {
            other.verify()?;
        }
        Ok(())
    }

    /// Moves `slab` from `from` to `to` (cleared by [`Cache::check_move`]).
    fn move_to(&self, slab: SlabPtr, from: List, to: List) {
        if from != to {
            self.unlink(slab, from);
            self.push(to, slab);
        }
    }

    /// Whether a free that empties `slab` (verified, naming the partial
    /// list) parks it there (SLAB-C1): it is the partial list's only slab,
    /// and the cache keeps fewer than `max_empty` empty slabs (the parked
    /// slab is one of those it keeps, SLAB-C4; while it is parked no other
    /// slab can become empty, since none is partial, and no slab is made,
    /// since it has free objects).
    ///
    /// Out of line, and cold: a free asks only when it empties its slab,
    /// and inlined, the links it reads are those the seal's verification
    /// read just before, which the compiler then kept (on the stack) on
    /// every free for this rare one.
    #[cold]
    #[inline(never)]
    fn may_park(&self, slab: SlabPtr, max_empty: usize) -> bool {
        self.count(List::Empty) < max_empty
            && slab.prev().is_none()
            && slab.next().is_none()
            && self.heads[List::Partial as usize].get() == Some(slab)
    }

    /// The number of partial, full and empty slabs by what they hold: the
    /// parked slab (on the partial list, every object free) counts as
    /// empty. A damaged header ends the walk of the partial list.
    pub(crate) fn counts_by_state(&self) -> (usize, usize, usize) {
        let parked = self.parked().is_some() as usize;
        (
            self.count(List::Partial) - parked,
            self.count(List::Full),
            self.count(List::Empty) + parked,
        )
    }

    /// The parked slab, if any: the partial list's only slab, with every
    /// object free (SLAB-C1). `None` if its header fails
    /// [`SlabPtr::verify`].
    pub(crate) fn parked(&self) -> Option<SlabPtr> {
        let slab = self.heads[List::Partial as usize].get()?;
        let parked = slab.verify() == Ok(List::Partial) && self.is_parked(slab);
        parked.then_some(slab)
    }

    /// Whether `slab`, the head of the partial list with its header
    /// verified, is parked: the list's only slab, every object free.
    fn is_parked(&self, slab: SlabPtr) -> bool {
        slab.next().is_none() && slab.free_count() == self.geometry.capacity
    }

    /// Verifies the head `slab` of `list` and its successor before the slab
    /// is unlinked and given back.
    fn check_head(&self, slab: SlabPtr, list: List) -> Result<(), Corruption> {
        if slab.verify()? != list || slab.prev().is_some() {
            return Err(Corruption::OverwrittenHeader { addr: slab.addr() });
        }
        match slab.next() {
            Some(next) => next.verify().map(|_| ()),
            None => Ok(()),
        }
    }

    /// Takes a free object, making a new slab from `parent` if no slab has
    /// one. A damaged slab header on the way is reported (and the request
    /// fails if the report returns).
    #[inline]
    pub(crate) fn allocate<A: Allocator, H: Hooks>(
        &self,
        parent: &A,
        index: &Index,
        hooks: &H,
    ) -> Result<NonNull<u8>, AllocError> {
        match self.allocate_spare() {
            Some(object) => Ok(object),
            None => self.allocate_slow(parent, index, hooks),
        }
    }

    /// [`allocate`](Self::allocate)'s common case alone, which calls
    /// nothing: a free object of the first partial slab when that slab
    /// keeps another after it ([`spare_partial`](Self::spare_partial));
    /// `None`, with nothing changed, otherwise.
    #[inline(always)]
    pub(crate) fn allocate_spare(&self) -> Option<NonNull<u8>> {
        let (slab, _) = self.spare_partial()?;
        // SAFETY: `slab` is one of ours (SLAB-C3), made with our geometry.
        let object = unsafe { slab.take(&self.geometry) }.ok()?;
        // The object after it is the next one handed out while the slab is
        // filled for the first time, and the caller is about to write into
        // both: its line is on its way by then (`build` in
        // docs/benchmarks.md).
        freespace_core::hint::prefetch_write(
            object.as_ptr().wrapping_add(self.geometry.object_size),
        );
        Some(object)
    }

    /// The common case of an allocation: the first partial slab, with its
    /// free count, when it keeps a free object after this one, so it stays
    /// on its list (the checks of `take_from`, in the order they are
    /// cheapest; `free == capacity` is the parked slab, SLAB-C1).
    #[inline(always)]
    fn spare_partial(&self) -> Option<(SlabPtr, usize)> {
        let slab = self.heads[List::Partial as usize].get()?;
        let free = slab.free_count();
        let stays =
            free > 1 && free <= self.geometry.capacity && slab.list() == Some(List::Partial);
        stays.then_some((slab, free))
    }

    /// Takes up to `out.len()` objects from the first partial slab, all
    /// but its last free one (so it stays on its list), with the checks of
    /// [`Cache::allocate`]'s common case; returns how many. 0 when that
    /// case does not apply, fewer than it could when the slab's bitmap has
    /// fewer free objects than its count says: the caller then takes
    /// [`Cache::allocate`], which names the damage.
    pub(crate) fn take_run(&self, out: &mut [NonNull<u8>]) -> usize {
        let Some((slab, free)) = self.spare_partial() else {
            return 0;
        };
        let run = (free - 1).min(out.len());
        // SAFETY: `slab` is one of ours (SLAB-C3), made with our geometry;
        // `run < free`.
        unsafe { slab.take_run(&self.geometry, &mut out[..run]) }
    }

    /// [`Cache::allocate`] when the first partial slab has no object to
    /// spare: the list moves, a new slab, or a report.
    #[inline(never)]
    fn allocate_slow<A: Allocator, H: Hooks>(
        &self,
        parent: &A,
        index: &Index,
        hooks: &H,
    ) -> Result<NonNull<u8>, AllocError> {
        let (slab, on) = match self.heads[List::Partial as usize].get() {
            Some(s) => (s, List::Partial),
            None => match self.heads[List::Empty as usize].get() {
                Some(s) => (s, List::Empty),
                None => (self.grow(parent, index, hooks)?, List::Empty),
            },
        };
        self.take_from(slab, on).map_err(|c| {
            report(c, "slab");
            AllocError
        })
    }

    /// Takes the lowest free object of `slab`, the head of `on`.
    ///
    /// The common case (the slab stays on its list) reads and amends only
    /// the counts: nothing there can make it touch memory outside the slab,
    /// and damage elsewhere in the header stays visible to the next verify
    /// (see `seal_of`). A move to another list follows and rewrites links,
    /// so it first verifies the slab and every header the move rewrites.
    fn take_from(&self, slab: SlabPtr, on: List) -> Result<NonNull<u8>, Corruption> {
        let damaged = Corruption::OverwrittenHeader { addr: slab.addr() };
        let capacity = self.geometry.capacity;
        let free = slab.free_count();
        if slab.list() != Some(on) || !on.holds(free, capacity) {
            return Err(damaged);
        }
        // `on` is partial or empty, so `1 <= free <= capacity`.
        let to = List::for_count(free - 1, capacity);
        if to != on {
            slab.verify()?;
            self.check_move(slab, on, to)?;
        }
        // SAFETY: `slab` is one of ours (SLAB-C3), made with `self.geometry`.
        let object = unsafe { slab.take(&self.geometry) }?;
        self.move_to(slab, on, to);
        Ok(object)
    }

    /// Makes a new slab, constructs its objects and files it as empty.
    fn grow<A: Allocator, H: Hooks>(
        &self,
        parent: &A,
        index: &Index,
        hooks: &H,
    ) -> Result<SlabPtr, AllocError> {
        let g = &self.geometry;
        if g.capacity == 0 {
            return Err(AllocError);
        }
        let layout = Layout::from_size_align(g.slab_size, g.slab_size).map_err(|_| AllocError)?;
        let base = parent.allocate(layout)?.cast::<u8>();
        if base.as_ptr().addr() & (g.slab_size - 1) != 0 {
            // A parent that breaks its alignment promise gets its block back.
            // SAFETY: `base` was just allocated from `parent` with `layout`.
            unsafe { parent.deallocate(base, layout) };
            return Err(AllocError);
        }
        // SAFETY: `base` is `slab_size` fresh bytes aligned to `slab_size`,
        // and `g` came from `Geometry::new`.
        let slab = unsafe { SlabPtr::init(base, g, self.class) };
        // Objects are constructed once, when their slab is made. A panicking
        // constructor unwinds from here and leaks this slab, which is in no
        // list and not in the index yet: it is simply never used.
        for i in 0..g.capacity {
            // SAFETY: `i < capacity`; the object is fresh.
            unsafe { hooks.construct(slab.object(g, i)) };
        }
        if index.insert(parent, slab).is_err() {
            // SAFETY: every object is free and constructed; nothing was
            // handed out, so the slab goes straight back.
            unsafe {
                slab.for_each_object(g, |object, _| hooks.destruct(object));
                slab.erase_identity();
                parent.deallocate(base, layout);
            }
            return Err(AllocError);
        }
        // Only called with the empty list empty (`allocate`), so the push
        // rewrites no other header.
        self.push(List::Empty, slab);
        Ok(slab)
    }

    /// Gives `slab`, the head of `list`, back to `parent`, destructing its
    /// free objects. Its successor must have passed [`SlabPtr::verify`].
    fn release<A: Allocator, H: Hooks>(
        &self,
        parent: &A,
        index: &Index,
        hooks: &H,
        slab: SlabPtr,
        list: List,
    ) {
        self.unlink(slab, list);
        let g = &self.geometry;
        // SAFETY: `slab` is ours, made with `g`; free objects are
        // constructed and owned by the cache (Hooks contract).
        unsafe {
            slab.for_each_object(g, |object, free| {
                if free {
                    hooks.destruct(object)
                }
            })
        };
        index.remove(parent, slab);
        slab.erase_identity();
        if let Ok(layout) = Layout::from_size_align(g.slab_size, g.slab_size) {
            // SAFETY: the slab came from `parent` with this layout (`grow`),
            // and nothing in it is used any more.
            unsafe { parent.deallocate(slab.base(), layout) };
        }
    }

    /// Validates that `addr` is a live object of `slab`, one of this
    /// cache's slabs, whose header is checked first (SLAB-S1): see
    /// [`Cache::validate_object`].
    pub(crate) fn validate(
        &self,
        slab: SlabPtr,
        addr: usize,
        max_empty: usize,
    ) -> Result<Validated, Corruption> {
        let from = slab.verify()?;
        self.validate_object(slab, from, addr, max_empty)
    }

    /// Validates that `addr` is a live object of `slab`, whose header passed
    /// [`SlabPtr::verify`] naming `from`: the object must start at `addr`
    /// and be in use, the header's free count must agree with its list, and
    /// every header the free will rewrite is verified. Nothing is changed.
    pub(crate) fn validate_object(
        &self,
        slab: SlabPtr,
        from: List,
        addr: usize,
        max_empty: usize,
    ) -> Result<Validated, Corruption> {
        let capacity = self.geometry.capacity;
        let index = slab.object_index(&self.geometry, addr)?;
        // SAFETY: `index < capacity` (object_index), `slab` is ours with this
        // geometry.
        if unsafe { slab.is_free(index) } {
            return Err(Corruption::DoubleFree { addr });
        }
        let free = slab.free_count();
        // An object in use means fewer than `capacity` are free.
        if free >= capacity || List::for_count(free, capacity) != from {
            return Err(Corruption::OverwrittenHeader { addr: slab.addr() });
        }
        let mut to = List::for_count(free + 1, capacity);
        if to == List::Empty && from == List::Partial && self.may_park(slab, max_empty) {
            // Parked (SLAB-C1): it stays where it is, no header is rewritten.
            to = List::Partial;
        }
        self.check_move(slab, from, to)?;
        let mut unpark = None;
        if to == List::Partial && from == List::Full {
            // The head of the partial list was verified by `check_move`.
            let head = self.heads[List::Partial as usize].get();
            if let Some(parked) = head.filter(|&h| self.is_parked(h)) {
                // It moves to the empty list behind `slab`: its new
                // neighbour there is the empty list's head.
                if let Some(head) = self.heads[List::Empty as usize].get() {
                    head.verify()?;
                }
                unpark = Some(parked);
            }
        }
        Ok(Validated {
            index,
            from,
            to,
            unpark,
        })
    }

    /// The free of the object at `addr` in `slab` (its seal verified, naming
    /// `list`) when nothing unusual is going on: an object starts there and
    /// is in use, and the free keeps the slab on the partial list (so no
    /// other header is touched). `false`, with nothing changed, otherwise:
    /// the caller then takes the full path ([`Cache::validate_object`] and
    /// [`Cache::free`]), which names what is wrong or moves the slab.
    #[inline(always)]
    pub(crate) fn free_in_place(
        &self,
        slab: SlabPtr,
        list: List,
        addr: usize,
        max_empty: usize,
    ) -> bool {
        let g = &self.geometry;
        let Ok(i) = slab.object_index(g, addr) else {
            return false;
        };
        let free = slab.free_count();
        if list != List::Partial || free == 0 || free >= g.capacity {
            return false;
        }
        if free + 1 == g.capacity && !self.may_park(slab, max_empty) {
            // The slab becomes empty and moves to the empty list (or back
            // to the parent).
            return false;
        }
        // SAFETY: `i < capacity` (object_index), our geometry.
        if unsafe { slab.is_free(i) } {
            return false;
        }
        // SAFETY: object `i` is in use (its bit is clear), `i < capacity`.
        unsafe { slab.put(i) };
        true
    }

    /// [`free_in_place`](Self::free_in_place) for a run of blocks: frees
    /// as many of `blocks` from the front as lie in `slab` (verified, its
    /// header naming `list`) and leave it partial, with one amend of its
    /// counts ([`SlabPtr::put_run`]). Returns how many; 0 (nothing
    /// changed) if the slab is not a partial one with objects in use.
    ///
    /// # Safety
    /// Every block of `blocks` that lies in `slab` and starts an object
    /// whose bit is clear is in use and the caller's to free.
    // Out of line: a call per run, where inlined its loop would cost the
    // single frees around it register spills (blocks freed in random order
    // come in runs of one).
    #[inline(never)]
    pub(crate) unsafe fn free_run_in_place(
        &self,
        slab: SlabPtr,
        list: List,
        blocks: &[NonNull<u8>],
    ) -> usize {
        let free = slab.free_count();
        if list != List::Partial || free == 0 || free >= self.geometry.capacity {
            return 0;
        }
        // SAFETY: our geometry, a free count below capacity; the blocks
        // are as the caller says.
        unsafe { slab.put_run(&self.geometry, blocks) }
    }

    /// Returns the object [`Cache::validate`] cleared; an empty slab past
    /// `max_empty` goes back to the parent.
    pub(crate) fn free<A: Allocator, H: Hooks>(
        &self,
        parent: &A,
        index: &Index,
        hooks: &H,
        max_empty: usize,
        slab: SlabPtr,
        valid: Validated,
    ) {
        // SAFETY: `valid.index` is a used object of `slab`, whose header was
        // verified with fewer than `capacity` objects free (validate).
        unsafe { slab.put(valid.index) };
        self.move_to(slab, valid.from, valid.to);
        if let Some(parked) = valid.unpark {
            // A parked slab counts against `max_empty` (SLAB-C4), so the
            // empty list has room for it.
            self.move_to(parked, List::Partial, List::Empty);
        }
        if valid.to == List::Empty && self.count(List::Empty) > max_empty {
            // `slab` is now the head of the empty list; its successor was
            // the old head, verified by `check_move`.
            self.release(parent, index, hooks, slab, List::Empty);
        }
    }

    /// Gives back every slab of `list`; returns how many. A damaged header
    /// is reported and ends the walk, leaving that slab and the rest of the
    /// list where they are (leaked, never read further).
    fn release_while<A: Allocator, H: Hooks>(
        &self,
        parent: &A,
        index: &Index,
        hooks: &H,
        list: List,
    ) -> usize {
        let mut n = 0;
        while let Some(slab) = self.heads[list as usize].get() {
            if let Err(c) = self.check_head(slab, list) {
                report(c, "slab");
                break;
            }
            self.release(parent, index, hooks, slab, list);
            n += 1;
        }
        n
    }

    /// Gives every empty slab back to the parent, the parked one
    /// included; returns how many.
    pub(crate) fn reap<A: Allocator, H: Hooks>(
        &self,
        parent: &A,
        index: &Index,
        hooks: &H,
    ) -> usize {
        let mut n = self.release_while(parent, index, hooks, List::Empty);
        if let Some(slab) = self.parked() {
            // The list's only slab: the unlink rewrites no other header.
            self.release(parent, index, hooks, slab, List::Partial);
            n += 1;
        }
        n
    }

    /// Gives every slab back to the parent, used objects included (drop).
    pub(crate) fn release_all<A: Allocator, H: Hooks>(&self, parent: &A, index: &Index, hooks: &H) {
        for list in [List::Partial, List::Full, List::Empty] {
            self.release_while(parent, index, hooks, list);
        }
    }

    /// Calls `visit` for every slab on every list, up to and including the
    /// first slab of a list whose header fails [`SlabPtr::verify`].
    pub(crate) fn for_each_slab(&self, mut visit: impl FnMut(SlabPtr)) {
        for head in &self.heads {
            let mut at = head.get();
            while let Some(slab) = at {
                visit(slab);
                // A damaged header's links are not followed (SLAB-S1).
                at = slab.verify().ok().and_then(|_| slab.next());
            }
        }
    }

    /// Reports each slab: header and bitmap as metadata, each object used
    /// or free, tail slack as metadata.
    pub(crate) fn inspect(&self, visit: &mut dyn FnMut(BlockInfo)) {
        let g = &self.geometry;
        self.for_each_slab(|slab| {
            visit(BlockInfo {
                addr: slab.addr(),
                len: g.first,
                state: BlockState::Meta,
            });
            // SAFETY: `slab` is ours, made with `g`.
            unsafe {
                slab.for_each_object(g, |object, free| {
                    visit(BlockInfo {
                        addr: object.as_ptr().addr(),
                        len: g.object_size,
                        state: if free {
                            BlockState::Free
                        } else {
                            BlockState::Used
                        },
                    })
                })
            };
            let end = g.objects_end();
            if end < g.slab_size {
                visit(BlockInfo {
                    addr: slab.addr() + end,
                    len: g.slab_size - end,
                    state: BlockState::Meta,
                });
            }
        });
    }

    /// Checks SLAB-C1–C4 and, for every slab, SLAB-S1–S3; returns the number of slabs.
    pub(crate) fn check(&self, index: &Index, max_empty: usize) -> Result<usize, Violation> {
        let mut total = 0;
        let mut parked = 0;
        for list in [List::Partial, List::Full, List::Empty] {
            let mut n = 0;
            let mut prev: Option<SlabPtr> = None;
            let mut at = self.heads[list as usize].get();
            while let Some(slab) = at {
                if index.find(slab.addr()) != Some(slab) {
                    return Err(Violation::new(
                        "SLAB-C3",
                        slab.addr(),
                        "listed slab missing from the index",
                    ));
                }
                // SLAB-S1 first: no other field is believed, and no link
                // followed, before the seal passes.
                // SAFETY: `slab` is ours (in the index), made with our geometry.
                unsafe { slab.check(&self.geometry, self.class)? };
                if slab.prev() != prev {
                    return Err(Violation::new("SLAB-C2", slab.addr(), "broken back link"));
                }
                if slab.list() != Some(list) {
                    return Err(Violation::new(
                        "SLAB-C1",
                        slab.addr(),
                        "slab header names another list",
                    ));
                }
                if list == List::Partial && slab.free_count() == self.geometry.capacity {
                    if prev.is_some() || slab.next().is_some() {
                        return Err(Violation::new(
                            "SLAB-C1",
                            slab.addr(),
                            "an entirely free slab on the partial list is not its only slab",
                        ));
                    }
                    parked = 1;
                }
                n += 1;
                if n > index.len() {
                    return Err(Violation::new(
                        "SLAB-C2",
                        slab.addr(),
                        "list longer than the index (cycle?)",
                    ));
                }
                prev = Some(slab);
                at = slab.next();
            }
            if n != self.count(list) {
                return Err(Violation::new(
                    "SLAB-C2",
                    0,
                    "list count differs from its length",
                ));
            }
            total += n;
        }
        if self.count(List::Empty) + parked > max_empty {
            return Err(Violation::new(
                "SLAB-C4",
                0,
                "more empty slabs kept than max_empty",
            ));
        }
        Ok(total)
    }
}
