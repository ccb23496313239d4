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
use crate::slab::{Geometry, List, SlabPtr};
use core::cell::Cell;
use core::ptr::NonNull;
use freespace_core::alloc::{AllocError, Allocator, Layout};
use freespace_core::{BlockInfo, BlockState, Corruption, Violation};

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

/// The slabs of one object size.
///
/// # Invariants
/// - C1: a slab is on `lists[List::for_count(free, capacity)]`, and its
///   header's `list` says so.
/// - C2: each list is doubly linked (`next.prev == self`), starts with
///   `prev == None`, and `counts[l]` is its length.
/// - C3: every slab on the lists is in the owner's index and carries this
///   cache's `class` (the slab invariants S1–S3 hold for it).
/// - C4: after every public operation, `counts[Empty] <= max_empty`.
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

    fn push(&self, list: List, slab: SlabPtr) {
        let head = &self.heads[list as usize];
        slab.set_list(list);
        slab.set_prev(None);
        slab.set_next(head.get());
        if let Some(old) = head.get() {
            old.set_prev(Some(slab));
        }
        head.set(Some(slab));
        let count = &self.counts[list as usize];
        count.set(count.get() + 1);
    }

    fn unlink(&self, slab: SlabPtr) {
        let list = slab.list();
        match slab.prev() {
            Some(p) => p.set_next(slab.next()),
            None => self.heads[list as usize].set(slab.next()),
        }
        if let Some(n) = slab.next() {
            n.set_prev(slab.prev());
        }
        let count = &self.counts[list as usize];
        count.set(count.get() - 1);
    }

    /// Moves `slab` to the list its free count calls for (C1).
    fn refile(&self, slab: SlabPtr) {
        let want = List::for_count(slab.free_count(), self.geometry.capacity);
        if slab.list() != want {
            self.unlink(slab);
            self.push(want, slab);
        }
    }

    /// Takes a free object, making a new slab from `parent` if no slab has
    /// one.
    pub(crate) fn allocate<A: Allocator, H: Hooks>(
        &self,
        parent: &A,
        index: &Index,
        hooks: &H,
    ) -> Result<NonNull<u8>, AllocError> {
        let slab = match self.heads[List::Partial as usize].get() {
            Some(s) => s,
            None => match self.heads[List::Empty as usize].get() {
                Some(s) => s,
                None => self.grow(parent, index, hooks)?,
            },
        };
        // SAFETY: `slab` is one of ours (C3), made with `self.geometry`.
        let object = unsafe { slab.take(&self.geometry) }.ok_or(AllocError)?;
        self.refile(slab);
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
                parent.deallocate(base, layout);
            }
            return Err(AllocError);
        }
        self.push(List::Empty, slab);
        Ok(slab)
    }

    /// Gives `slab` back to `parent`, destructing its free objects.
    fn release<A: Allocator, H: Hooks>(&self, parent: &A, index: &Index, hooks: &H, slab: SlabPtr) {
        self.unlink(slab);
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
        if let Ok(layout) = Layout::from_size_align(g.slab_size, g.slab_size) {
            // SAFETY: the slab came from `parent` with this layout (`grow`),
            // and nothing in it is used any more.
            unsafe { parent.deallocate(slab.base(), layout) };
        }
    }

    /// Validates that `addr` is a live object of `slab` and returns its
    /// index; the slab must be one of this cache's.
    pub(crate) fn validate(&self, slab: SlabPtr, addr: usize) -> Result<usize, Corruption> {
        if !slab.magic_ok() {
            return Err(Corruption::OverwrittenHeader { addr: slab.addr() });
        }
        let i = slab.object_index(&self.geometry, addr)?;
        // SAFETY: `i < capacity` (object_index), `slab` is ours with this geometry.
        if unsafe { slab.is_free(i) } {
            return Err(Corruption::DoubleFree { addr });
        }
        Ok(i)
    }

    /// Returns object `i` of `slab` (validated by [`Cache::validate`]); an
    /// empty slab past `max_empty` goes back to the parent.
    pub(crate) fn free<A: Allocator, H: Hooks>(
        &self,
        parent: &A,
        index: &Index,
        hooks: &H,
        max_empty: usize,
        slab: SlabPtr,
        i: usize,
    ) {
        // SAFETY: `i` is a used object of `slab` (validate).
        unsafe { slab.put(i) };
        self.refile(slab);
        if slab.list() == List::Empty && self.count(List::Empty) > max_empty {
            self.release(parent, index, hooks, slab);
        }
    }

    /// Gives every empty slab back to the parent; returns how many.
    pub(crate) fn reap<A: Allocator, H: Hooks>(
        &self,
        parent: &A,
        index: &Index,
        hooks: &H,
    ) -> usize {
        let mut n = 0;
        while let Some(slab) = self.heads[List::Empty as usize].get() {
            self.release(parent, index, hooks, slab);
            n += 1;
        }
        n
    }

    /// Gives every slab back to the parent, used objects included (drop).
    pub(crate) fn release_all<A: Allocator, H: Hooks>(&self, parent: &A, index: &Index, hooks: &H) {
        for list in [List::Partial, List::Full, List::Empty] {
            while let Some(slab) = self.heads[list as usize].get() {
                self.release(parent, index, hooks, slab);
            }
        }
    }

    /// Calls `visit` for every slab on every list.
    pub(crate) fn for_each_slab(&self, mut visit: impl FnMut(SlabPtr)) {
        for head in &self.heads {
            let mut at = head.get();
            while let Some(slab) = at {
                visit(slab);
                at = slab.next();
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

    /// Checks C1–C4 and, for every slab, S1–S3; returns the number of slabs.
    pub(crate) fn check(&self, index: &Index, max_empty: usize) -> Result<usize, Violation> {
        let mut total = 0;
        for list in [List::Partial, List::Full, List::Empty] {
            let mut n = 0;
            let mut prev: Option<SlabPtr> = None;
            let mut at = self.heads[list as usize].get();
            while let Some(slab) = at {
                if index.find(slab.addr()) != Some(slab) {
                    return Err(Violation::new(
                        "C3",
                        slab.addr(),
                        "listed slab missing from the index",
                    ));
                }
                if slab.prev() != prev {
                    return Err(Violation::new("C2", slab.addr(), "broken back link"));
                }
                if slab.list() != list {
                    return Err(Violation::new(
                        "C1",
                        slab.addr(),
                        "slab header names another list",
                    ));
                }
                // SAFETY: `slab` is ours (in the index), made with our geometry.
                unsafe { slab.check(&self.geometry, self.class)? };
                n += 1;
                if n > index.len() {
                    return Err(Violation::new(
                        "C2",
                        slab.addr(),
                        "list longer than the index (cycle?)",
                    ));
                }
                prev = Some(slab);
                at = slab.next();
            }
            if n != self.count(list) {
                return Err(Violation::new(
                    "C2",
                    0,
                    "list count differs from its length",
                ));
            }
            total += n;
        }
        if self.count(List::Empty) > max_empty {
            return Err(Violation::new(
                "C4",
                0,
                "more empty slabs kept than max_empty",
            ));
        }
        Ok(total)
    }
}
