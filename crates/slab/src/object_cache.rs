//! [`ObjectCache`]: a typed cache of constructed objects (Bonwick 1994).

use crate::cache::{Cache, Hooks};
use crate::index::Index;
use crate::one_slab::Geometry;
use core::marker::PhantomData;
use core::mem::{align_of, size_of};
use core::ptr::NonNull;
use freespace_core::alloc::Allocator;
use freespace_core::{
    report, BlockInfo, BlockSize, BlockState, Corruption, Inspect, Owns, Violation,
};

/// Slab size used by [`ObjectCache::new`]: 16 KiB, so making a slab
/// constructs a bounded number of objects.
///
/// ```
/// assert_eq!(freespace_slab::DEFAULT_OBJECT_SLAB_SIZE, 16384);
/// ```
pub const DEFAULT_OBJECT_SLAB_SIZE: usize = 16 * 1024;

/// The constructor and destructor of an object cache.
struct ObjectHooks<T> {
    ctor: Option<fn() -> T>,
    dtor: Option<fn(&mut T)>,
}

impl<T> Hooks for ObjectHooks<T> {
    unsafe fn construct(&self, object: NonNull<u8>) {
        if let Some(ctor) = self.ctor {
            // SAFETY: `object` is a fresh slot of `size_of::<T>()` bytes
            // aligned to `align_of::<T>()` (the cache's geometry).
            unsafe { object.cast::<T>().write(ctor()) };
        }
    }

    unsafe fn destruct(&self, object: NonNull<u8>) {
        if self.ctor.is_some() {
            // SAFETY: with a constructor, every free object is a valid `T`
            // owned by the cache (Hooks contract, `free`'s contract).
            let value = unsafe { &mut *object.cast::<T>().as_ptr() };
            if let Some(dtor) = self.dtor {
                dtor(value);
            }
            // SAFETY: `value` is valid and never used again.
            unsafe { core::ptr::drop_in_place(value) };
        }
    }
}

/// A cache of objects of one type `T`, made up front, in slabs of
/// `SLAB_SIZE` bytes from the parent `A` (Bonwick's object cache).
///
/// With a constructor ([`ObjectCache::with_ctor`]) objects are built once,
/// when their slab is made, and kept built:
///
/// ```text
///   parent ──slab──▶ construct every object ──▶ [ free, constructed ]
///                                               alloc │   ▲ free
///                                                     ▼   │ (in constructed state)
///                                                   [ in use ]
///   parent ◀──slab── destruct every object ◀── slab empty, reaped or past max_empty
/// ```
///
/// - `alloc` hands out an object that is already a valid `T`; no
///   constructor runs unless a new slab has to be made, and then it runs for
///   every object of that slab;
/// - `free` takes the object back *as it is*: the caller returns it in its
///   constructed state (Bonwick's contract), so the next `alloc` can reuse it;
/// - when a slab goes back to the parent (on [`ObjectCache::reap`], when
///   more than `max_empty` slabs are empty, or on drop), each of its free
///   objects is destructed: the destructor hook (if any) runs, then `T`'s
///   `Drop`.
///
/// Without a constructor ([`ObjectCache::new`]) the cache hands out
/// uninitialised memory for a `T` and never drops anything.
///
/// Slabs, free bitmaps and corruption checks are those of [`crate::Slab`]
/// (one cache, one class). `!Sync`; all constructors are `const`.
///
/// # Invariants
/// - SLAB-S1–S3 for each slab, SLAB-C1–C4 for its one cache, SLAB-I1–I3 for its slab index,
///   as stated on [`crate::Slab`] (checked by [`ObjectCache::check`]);
/// - SLAB-O1: with a constructor, every free object is a constructed `T`, and
///   every object of a slab was constructed exactly once, when the slab was
///   made (the callers' side of it, returning objects constructed, is
///   `free`'s safety contract).
///
/// # Example
///
/// ```
/// use freespace_core::alloc::Global;
/// use freespace_slab::ObjectCache;
///
/// #[derive(Default)]
/// struct Conn { buf: [u8; 32], used: usize }
///
/// let cache = ObjectCache::with_ctor(Global, Conn::default, None);
/// let c = cache.alloc().unwrap();
/// // SAFETY: `c` is a live, constructed object of the cache.
/// unsafe {
///     assert_eq!(c.as_ref().used, 0);
///     cache.free(c);
/// }
/// ```
pub struct ObjectCache<T, A: Allocator, const SLAB_SIZE: usize = DEFAULT_OBJECT_SLAB_SIZE> {
    parent: A,
    cache: Cache,
    index: Index,
    hooks: ObjectHooks<T>,
    max_empty: usize,
    _owns: PhantomData<T>,
}

// SAFETY: the cache owns its slabs and index table exclusively and may drop
// `T`s (so `T: Send`); moving it moves that ownership with the parent.
unsafe impl<T: Send, A: Allocator + Send, const SLAB_SIZE: usize> Send
    for ObjectCache<T, A, SLAB_SIZE>
{
}

impl<T, A: Allocator> ObjectCache<T, A> {
    /// A cache of uninitialised `T`s over `parent`, 16 KiB slabs.
    ///
    /// # Panics
    /// If not even one `T` fits in a slab.
    ///
    /// ```
    /// use freespace_core::alloc::Global;
    /// use freespace_slab::ObjectCache;
    /// let cache: ObjectCache<u64, Global> = ObjectCache::new(Global);
    /// let p = cache.alloc().unwrap();
    /// unsafe {
    ///     p.as_ptr().write(7);
    ///     cache.free(p);
    /// }
    /// ```
    pub const fn new(parent: A) -> Self {
        Self::sized(parent)
    }

    /// A cache whose objects are made by `ctor` when their slab is made and
    /// torn down by `dtor` (then `Drop`) when it goes back; 16 KiB slabs.
    ///
    /// # Panics
    /// If not even one `T` fits in a slab.
    ///
    /// ```
    /// use freespace_core::alloc::Global;
    /// use freespace_slab::ObjectCache;
    /// let cache = ObjectCache::with_ctor(Global, || [1u32; 4], Some(|x: &mut [u32; 4]| x[0] = 0));
    /// let p = cache.alloc().unwrap();
    /// unsafe {
    ///     assert_eq!(*p.as_ref(), [1; 4]);
    ///     cache.free(p);
    /// }
    /// ```
    pub const fn with_ctor(parent: A, ctor: fn() -> T, dtor: Option<fn(&mut T)>) -> Self {
        Self::sized_with_ctor(parent, ctor, dtor)
    }
}

impl<T, A: Allocator, const SLAB_SIZE: usize> ObjectCache<T, A, SLAB_SIZE> {
    const fn build(parent: A, hooks: ObjectHooks<T>) -> Self {
        let size = if size_of::<T>() == 0 {
            align_of::<T>()
        } else {
            size_of::<T>()
        };
        let geometry = match Geometry::new(SLAB_SIZE, size, align_of::<T>()) {
            Some(g) => g,
            None => panic!("freespace-slab: SLAB_SIZE is not a power of two >= 256, or no object fits in a slab"),
        };
        Self {
            parent,
            cache: Cache::new(geometry, 0),
            index: Index::new(SLAB_SIZE),
            hooks,
            max_empty: 1,
            _owns: PhantomData,
        }
    }

    /// [`ObjectCache::new`] with slabs of `SLAB_SIZE` bytes.
    ///
    /// # Panics
    /// If `SLAB_SIZE` is invalid or not even one `T` fits in a slab.
    ///
    /// ```
    /// use freespace_core::alloc::Global;
    /// use freespace_slab::ObjectCache;
    /// let cache: ObjectCache<[u8; 100], Global, 1024> = ObjectCache::sized(Global);
    /// assert_eq!(cache.objects_per_slab(), 9);
    /// ```
    pub const fn sized(parent: A) -> Self {
        Self::build(
            parent,
            ObjectHooks {
                ctor: None,
                dtor: None,
            },
        )
    }

    /// [`ObjectCache::with_ctor`] with slabs of `SLAB_SIZE` bytes.
    ///
    /// # Panics
    /// If `SLAB_SIZE` is invalid or not even one `T` fits in a slab.
    ///
    /// ```
    /// use freespace_core::alloc::Global;
    /// use freespace_slab::ObjectCache;
    /// let cache: ObjectCache<u8, Global, 256> = ObjectCache::sized_with_ctor(Global, || 5, None);
    /// let p = cache.alloc().unwrap();
    /// unsafe { assert_eq!(*p.as_ref(), 5); cache.free(p) };
    /// ```
    pub const fn sized_with_ctor(parent: A, ctor: fn() -> T, dtor: Option<fn(&mut T)>) -> Self {
        Self::build(
            parent,
            ObjectHooks {
                ctor: Some(ctor),
                dtor,
            },
        )
    }

    /// Keeps at most `max_empty` empty slabs (default 1) before giving them
    /// back to the parent.
    ///
    /// ```
    /// use freespace_core::alloc::Global;
    /// use freespace_slab::ObjectCache;
    /// let cache: ObjectCache<u64, Global> = ObjectCache::new(Global).with_max_empty(4);
    /// assert_eq!(cache.max_empty(), 4);
    /// ```
    pub const fn with_max_empty(mut self, max_empty: usize) -> Self {
        self.max_empty = max_empty;
        self
    }

    /// The number of empty slabs kept.
    ///
    /// ```
    /// # use freespace_core::alloc::Global;
    /// let cache: freespace_slab::ObjectCache<u8, Global> = freespace_slab::ObjectCache::new(Global);
    /// assert_eq!(cache.max_empty(), 1);
    /// ```
    pub const fn max_empty(&self) -> usize {
        self.max_empty
    }

    /// How many objects one slab holds (and a new slab constructs).
    ///
    /// ```
    /// # use freespace_core::alloc::Global;
    /// let cache: freespace_slab::ObjectCache<[u8; 1000], Global, 4096> = freespace_slab::ObjectCache::sized(Global);
    /// assert_eq!(cache.objects_per_slab(), 4);
    /// ```
    pub const fn objects_per_slab(&self) -> usize {
        self.cache.geometry.capacity
    }

    /// The parent allocator.
    ///
    /// ```
    /// # use freespace_core::alloc::Global;
    /// let cache: freespace_slab::ObjectCache<u8, Global> = freespace_slab::ObjectCache::new(Global);
    /// let _: &Global = cache.parent();
    /// ```
    pub const fn parent(&self) -> &A {
        &self.parent
    }

    /// An object: constructed if the cache has a constructor (built when its
    /// slab was made, or returned by `free` in constructed state), otherwise
    /// uninitialised memory for a `T`. `None` when the parent is out of
    /// memory.
    ///
    /// ```
    /// use freespace_core::alloc::Global;
    /// use freespace_slab::ObjectCache;
    /// let cache = ObjectCache::with_ctor(Global, || String::from("ready"), None);
    /// let s = cache.alloc().unwrap();
    /// unsafe {
    ///     assert_eq!(s.as_ref(), "ready");
    ///     cache.free(s);
    /// }
    /// ```
    pub fn alloc(&self) -> Option<NonNull<T>> {
        self.cache
            .allocate(&self.parent, &self.index, &self.hooks)
            .ok()
            .map(NonNull::cast)
    }

    /// Returns `object` to the cache, reporting misuse (foreign or interior
    /// pointer, double free, a damaged slab header) through
    /// [`freespace_core::report`].
    ///
    /// # Safety
    /// `object` came from [`ObjectCache::alloc`] on `self` and is not used
    /// again; if the cache has a constructor, `*object` is a valid `T` in
    /// its constructed state (it will be handed out again as is).
    ///
    /// ```
    /// # use freespace_core::alloc::Global;
    /// let cache: freespace_slab::ObjectCache<u32, Global> = freespace_slab::ObjectCache::new(Global);
    /// let p = cache.alloc().unwrap();
    /// unsafe { cache.free(p) };
    /// ```
    pub unsafe fn free(&self, object: NonNull<T>) {
        // SAFETY: the caller's contract is `try_free`'s.
        if let Err(c) = unsafe { self.try_free(object) } {
            report(c, "slab");
        }
    }

    /// Like [`ObjectCache::free`], but returns what is wrong with `object`
    /// instead of reporting it; a rejected pointer is left alone.
    ///
    /// # Safety
    /// As for [`ObjectCache::free`] when `object` is a live object of `self`;
    /// any other pointer is detected and rejected.
    ///
    /// ```
    /// use freespace_core::alloc::Global;
    /// use freespace_core::Corruption;
    /// let cache: freespace_slab::ObjectCache<u32, Global> = freespace_slab::ObjectCache::new(Global);
    /// let p = cache.alloc().unwrap();
    /// unsafe {
    ///     assert_eq!(cache.try_free(p), Ok(()));
    ///     assert!(matches!(cache.try_free(p), Err(Corruption::DoubleFree { .. })));
    /// }
    /// ```
    pub unsafe fn try_free(&self, object: NonNull<T>) -> Result<(), Corruption> {
        let addr = object.as_ptr().addr();
        let slab = self
            .index
            .find(addr & !(SLAB_SIZE - 1))
            .ok_or(Corruption::ForeignPointer { addr })?;
        let valid = self.cache.validate(slab, addr, self.max_empty)?;
        self.cache.free(
            &self.parent,
            &self.index,
            &self.hooks,
            self.max_empty,
            slab,
            valid,
        );
        Ok(())
    }

    /// Gives every empty slab back to the parent, destructing its objects;
    /// returns how many slabs.
    ///
    /// ```
    /// # use freespace_core::alloc::Global;
    /// let cache: freespace_slab::ObjectCache<u32, Global> = freespace_slab::ObjectCache::new(Global);
    /// let p = cache.alloc().unwrap();
    /// unsafe { cache.free(p) };
    /// assert_eq!(cache.reap(), 1);
    /// ```
    pub fn reap(&self) -> usize {
        self.cache.reap(&self.parent, &self.index, &self.hooks)
    }

    /// The number of slabs on the partial, full and empty lists.
    ///
    /// ```
    /// # use freespace_core::alloc::Global;
    /// let cache: freespace_slab::ObjectCache<u32, Global> = freespace_slab::ObjectCache::new(Global);
    /// let p = cache.alloc().unwrap();
    /// assert_eq!(cache.slab_counts(), (1, 0, 0));
    /// # unsafe { cache.free(p) };
    /// ```
    pub fn slab_counts(&self) -> (usize, usize, usize) {
        self.cache.counts_by_state()
    }

    /// Checks SLAB-C1–C4, SLAB-S1–S3 and SLAB-I1–I2 (SLAB-O1 is the callers' promise).
    ///
    /// ```
    /// # use freespace_core::alloc::Global;
    /// let cache: freespace_slab::ObjectCache<u32, Global> = freespace_slab::ObjectCache::new(Global);
    /// let _p = cache.alloc().unwrap();
    /// assert_eq!(cache.check(), Ok(()));
    /// ```
    pub fn check(&self) -> Result<(), Violation> {
        self.index.check()?;
        let n = self.cache.check(&self.index, self.max_empty)?;
        if n != self.index.len() {
            return Err(Violation::new(
                "SLAB-C3",
                0,
                "index holds slabs that are on no list",
            ));
        }
        Ok(())
    }
}

// SAFETY: the index holds exactly our slabs, so the answer is exact for
// every pointer outside them; inside them, only object starts pass.
unsafe impl<T, A: Allocator, const SLAB_SIZE: usize> Owns for ObjectCache<T, A, SLAB_SIZE> {
    /// ```
    /// use freespace_core::{alloc::Global, Owns};
    /// let cache: freespace_slab::ObjectCache<u32, Global> = freespace_slab::ObjectCache::new(Global);
    /// let p = cache.alloc().unwrap();
    /// assert!(cache.owns(p.cast()));
    /// assert!(!cache.owns(core::ptr::NonNull::from(&0u8)));
    /// # unsafe { cache.free(p) };
    /// ```
    fn owns(&self, ptr: NonNull<u8>) -> bool {
        let addr = ptr.as_ptr().addr();
        self.index
            .find(addr & !(SLAB_SIZE - 1))
            .is_some_and(|slab| slab.object_index(&self.cache.geometry, addr).is_ok())
    }
}

// SAFETY: every object is `object_size` bytes, all usable by its owner;
// `free` is `ObjectCache::free`.
unsafe impl<T, A: Allocator, const SLAB_SIZE: usize> BlockSize for ObjectCache<T, A, SLAB_SIZE> {
    /// ```
    /// use freespace_core::{alloc::Global, BlockSize};
    /// let cache: freespace_slab::ObjectCache<[u8; 24], Global> = freespace_slab::ObjectCache::new(Global);
    /// let p = cache.alloc().unwrap();
    /// unsafe {
    ///     assert_eq!(cache.usable_size(p.cast()), 24);
    ///     BlockSize::free(&cache, p.cast());
    /// }
    /// ```
    unsafe fn usable_size(&self, _ptr: NonNull<u8>) -> usize {
        self.cache.geometry.object_size
    }

    unsafe fn free(&self, ptr: NonNull<u8>) {
        // SAFETY: `ptr` is a live object of ours (caller contract).
        unsafe { ObjectCache::free(self, ptr.cast::<T>()) }
    }
}

/// Reports each slab (header and bitmap `Meta`, objects `Used`/`Free`, tail
/// slack `Meta`) and the slab index table (`Meta`).
impl<T, A: Allocator, const SLAB_SIZE: usize> Inspect for ObjectCache<T, A, SLAB_SIZE> {
    /// ```
    /// use freespace_core::{alloc::Global, HeapSummary};
    /// let cache: freespace_slab::ObjectCache<u64, Global, 1024> = freespace_slab::ObjectCache::sized(Global);
    /// let p = cache.alloc().unwrap();
    /// let s = HeapSummary::of(&cache);
    /// assert_eq!(s.used_blocks, 1);
    /// assert_eq!(s.free_blocks, cache.objects_per_slab() - 1);
    /// # unsafe { cache.free(p) };
    /// ```
    fn inspect(&self, visit: &mut dyn FnMut(BlockInfo)) {
        self.cache.inspect(visit);
        if let Some((addr, len)) = self.index.table_block() {
            visit(BlockInfo {
                addr,
                len,
                state: BlockState::Meta,
            });
        }
    }
}

/// Dropping the cache destructs its free objects and gives every slab back
/// to the parent. Objects still in use are not dropped (they belong to their
/// users, and dangle afterwards).
impl<T, A: Allocator, const SLAB_SIZE: usize> Drop for ObjectCache<T, A, SLAB_SIZE> {
    fn drop(&mut self) {
        self.cache
            .release_all(&self.parent, &self.index, &self.hooks);
        self.index.release_table(&self.parent);
    }
}

impl<T, A: Allocator + freespace_core::Check, const SLAB_SIZE: usize> freespace_core::Check
    for ObjectCache<T, A, SLAB_SIZE>
{
    /// The cache ([`check`](ObjectCache::check)), then the parent's whole stack.
    fn check_all(&self) -> Result<(), Violation> {
        self.check()?;
        self.parent.check_all()
    }
}
