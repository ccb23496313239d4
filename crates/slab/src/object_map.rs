//! The class of a live object from its address alone: no allocator, no
//! lock, no index.
//!
//! A layer above the slab that keeps no size of its own with a block (a
//! `malloc` that puts no header in front of small blocks, as mimalloc
//! does) still has to learn, in `free(p)`, how large `p` is. The slab
//! knows: `p & !(SLAB_SIZE - 1)` is the slab's header, and the header names
//! the class. But the header's other words change with every allocation
//! and free, under the allocator's lock, so its seal (SLAB-S1) can only be
//! checked by the lock's holder. The header's *identity* word (SLAB-S4) is
//! different: a keyed hash of the slab's address and class, written when
//! the slab is made and not again until it is erased as the slab goes back
//! to the parent. So while an object is live, the identity and class of its
//! slab are fixed, and anyone may read them.
//!
//! ```text
//!  p & !(SLAB_SIZE - 1)
//!  │
//!  [ seal | next | prev | class | list | free | search | identity | 0 ][ bitmap ] … [ obj ] …
//!                          ▲                                    ▲                        ▲
//!                          └── fixed while the slab lives ──────┘                        p
//! ```
//!
//! [`ObjectMap::class_of`] reads those two words, believes the class only
//! if the identity matches it (keyed: bytes that are not a live slab of
//! ours match by a 1 in 2^32 chance, and cannot be made to match without
//! the key), and checks that an object of that class starts at `p`.

use core::ptr::NonNull;

use freespace_core::{layout, Violation};

use crate::one_slab::{identity_of, Geometry, SlabPtr};
use crate::size_classes::{build, MAX_CLASSES};
use crate::DEFAULT_SLAB_SIZE;

/// Where the objects of a [`Slab`](crate::Slab) with these classes and
/// `SLAB_SIZE` lie: what [`ObjectMap::class_of`] needs to name the class of
/// a live object from its address. Built in a `const` (a `static` beside the
/// allocator), from the same table, so it lays slabs out exactly as the
/// allocator does.
///
/// ```
/// use freespace_core::alloc::{Allocator, Global, Layout};
/// use freespace_slab::{ObjectMap, Slab, DEFAULT_CLASSES};
///
/// static MAP: ObjectMap = ObjectMap::new(DEFAULT_CLASSES);
/// let slab = Slab::new(Global);
/// let l = Layout::from_size_align(100, 8).unwrap();
/// let p = slab.allocate(l).unwrap().cast::<u8>();
/// // SAFETY: `p` is a live object of `slab`, whose classes and slab size
/// // are `MAP`'s.
/// let class = unsafe { MAP.class_of(p) }.unwrap();
/// assert_eq!(MAP.classes()[class], 112);
/// // SAFETY: allocated above with `l`.
/// unsafe { slab.deallocate(p, l) };
/// ```
///
/// # Invariants
/// - SLAB-M1: `geometry[c]` is the geometry a `Slab<_, SLAB_SIZE>` built
///   with `classes` gives class `c`, for every class (so the map reads
///   slabs exactly as the allocator lays them out); [`ObjectMap::check`]
///   verifies it.
#[derive(Debug, Clone, Copy)]
pub struct ObjectMap<const SLAB_SIZE: usize = DEFAULT_SLAB_SIZE> {
    classes: &'static [usize],
    geometry: [Geometry; MAX_CLASSES],
}

impl<const SLAB_SIZE: usize> ObjectMap<SLAB_SIZE> {
    /// The map of a `Slab<_, SLAB_SIZE>` built with `classes`.
    ///
    /// # Panics
    /// If the table is invalid, as [`Slab::sized_with_classes`](crate::Slab::sized_with_classes)
    /// does (in a `static`, a compile error).
    ///
    /// ```
    /// let map: freespace_slab::ObjectMap<4096> = freespace_slab::ObjectMap::new(&[16, 64]);
    /// assert_eq!(map.classes(), &[16, 64]);
    /// ```
    pub const fn new(classes: &'static [usize]) -> Self {
        let caches = match build(SLAB_SIZE, classes) {
            Ok(caches) => caches,
            Err(e) => panic!("{}", e.message()),
        };
        let mut geometry = [Geometry::NONE; MAX_CLASSES];
        let mut i = 0;
        while i < classes.len() {
            geometry[i] = caches[i].geometry;
            i += 1;
        }
        ObjectMap { classes, geometry }
    }

    /// The class sizes, ascending: `classes()[class_of(p)]` is the size of
    /// `p`'s object.
    ///
    /// ```
    /// let map = freespace_slab::ObjectMap::<4096>::new(&[32]);
    /// assert_eq!(map.classes(), &[32]);
    /// ```
    pub const fn classes(&self) -> &'static [usize] {
        self.classes
    }

    /// Checks SLAB-M1: every class's geometry is the one the allocator
    /// builds for it.
    ///
    /// ```
    /// let map = freespace_slab::ObjectMap::<4096>::new(&[16, 64]);
    /// assert!(map.check().is_ok());
    /// ```
    pub fn check(&self) -> Result<(), Violation> {
        let Ok(caches) = build(SLAB_SIZE, self.classes) else {
            return Err(Violation::new(
                "SLAB-M1",
                0,
                "classes the allocator refuses",
            ));
        };
        for (c, cache) in caches.iter().enumerate().take(self.classes.len()) {
            if self.geometry[c] != cache.geometry {
                return Err(Violation::new(
                    "SLAB-M1",
                    self.classes[c],
                    "class geometry differs from the allocator's",
                ));
            }
        }
        Ok(())
    }

    /// The class of the object that starts at `ptr`, if `ptr` is a live
    /// object of a slab allocator with this map's classes and slab size:
    /// read from its slab's header, the identity checked (SLAB-S4) and an
    /// object of that class starting at `ptr`. `None` for an address inside
    /// an object, and (but for a 1 in 2^32 chance, for bytes made without
    /// the allocator's key) for memory that is no live slab's. Reads two
    /// words of the slab's header and nothing else: no lock, no index.
    ///
    /// A pointer that is not a live object may still be named a class: an
    /// object already freed (its slab still lives), or one of a slab being
    /// made. A caller that must tell those apart keeps its own mark in the
    /// object (as a `free` that detects double frees does).
    ///
    /// # Safety
    /// The `SLAB_SIZE`-aligned address at or below `ptr` (its slab's base,
    /// if it is an object) is readable for a slab header, and `ptr` may be
    /// used to read there (provenance), and no one writes those header
    /// bytes during the call. True of a live object of a slab allocator
    /// with this map's classes and slab size: its slab's identity and class
    /// are never written while it lives (SLAB-S4).
    ///
    /// ```
    /// use freespace_slab::ObjectMap;
    /// #[repr(C, align(4096))]
    /// struct Page([u8; 4096]);
    /// let page = Page([0x5a; 4096]);
    /// let map = ObjectMap::<4096>::new(&[64]);
    /// let p = core::ptr::NonNull::from(&page.0[128]);
    /// // SAFETY: the page is readable and nobody writes it.
    /// assert_eq!(unsafe { map.class_of(p) }, None, "not a slab");
    /// ```
    #[inline(always)]
    pub unsafe fn class_of(&self, ptr: NonNull<u8>) -> Option<usize> {
        let addr = ptr.as_ptr().addr();
        let base = addr & !(SLAB_SIZE - 1);
        let header = layout::with_addr(ptr, base)?;
        // SAFETY: the caller's contract: the header at `base` is readable
        // through `ptr`'s provenance, and its identity and class are not
        // written during the call.
        let (identity, class) = unsafe { SlabPtr::from_base(header).identity_and_class() };
        let c = class as usize;
        if c >= self.classes.len() || identity != identity_of(base, class) {
            return None;
        }
        self.geometry[c].index_of(addr - base).map(|_| c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_sees_a_geometry_that_is_not_the_allocators() {
        let mut map = ObjectMap::<4096>::new(&[16, 64]);
        map.check().unwrap();
        map.geometry[1] = Geometry::NONE;
        assert_eq!(map.check().map_err(|v| v.invariant), Err("SLAB-M1"));
    }
}
