//! [`Slab`]: size classes, one object cache each, in front of a parent
//! allocator that serves everything larger.

use crate::cache::{Cache, NoHooks};
use crate::index::Index;
use crate::one_slab::{Geometry, List, SlabPtr, MIN_SLAB_SIZE};
use core::ptr::NonNull;
use freespace_core::alloc::{AllocError, Allocator, Layout};
use freespace_core::resize::empty_side;
use freespace_core::{
    layout, report, BlockInfo, BlockSize, BlockState, CheckedFree, Corruption, Inspect, Owns,
    Violation,
};

/// Slab size used by [`Slab::new`]: 64 KiB.
///
/// ```
/// assert_eq!(freespace_slab::DEFAULT_SLAB_SIZE, 65536);
/// ```
pub const DEFAULT_SLAB_SIZE: usize = 64 * 1024;

/// Most size classes one [`Slab`] can have.
///
/// ```
/// assert!(freespace_slab::DEFAULT_CLASSES.len() <= freespace_slab::MAX_CLASSES);
/// ```
pub const MAX_CLASSES: usize = 48;

/// Largest alignment a class gives its objects: a class's objects are
/// aligned to the largest power of two dividing its size, capped here.
///
/// ```
/// use freespace_core::alloc::{Allocator, Global, Layout};
/// let slab = freespace_slab::Slab::new(Global);
/// // 4096-byte objects are 4096-aligned, so a page-aligned page is a slab object.
/// let l = Layout::from_size_align(4096, freespace_slab::MAX_CLASS_ALIGN).unwrap();
/// let p = slab.allocate(l).unwrap();
/// assert_eq!(slab.slab_counts().0, 1);
/// # unsafe { slab.deallocate(p.cast(), l) };
/// ```
pub const MAX_CLASS_ALIGN: usize = 4096;

/// The default size classes: 16-byte steps to 64, then four classes per
/// doubling. [`Slab::new`] uses those up to `SLAB_SIZE / 8` (so a slab holds
/// at least seven objects of its largest class).
///
/// ```
/// use freespace_slab::DEFAULT_CLASSES;
/// assert_eq!(&DEFAULT_CLASSES[..6], &[16, 32, 48, 64, 80, 96]);
/// assert!(DEFAULT_CLASSES.windows(2).all(|w| w[0] < w[1]));
/// ```
pub const DEFAULT_CLASSES: &[usize] = freespace_core::size_class::SERIES;

/// Why a class table or slab size was rejected.
///
/// The panicking constructors turn it into a panic, which in a `const` or
/// `static` is a compile error:
///
/// ```compile_fail
/// use freespace_core::alloc::Global;
/// use freespace_slab::Slab;
/// const BAD: Slab<Global> = Slab::with_classes(Global, &[64, 32]);
/// let _ = BAD;
/// ```
///
/// ```
/// use freespace_core::alloc::Global;
/// use freespace_slab::{ConfigError, Slab};
/// let r = Slab::<Global, 1024>::try_sized_with_classes(Global, &[16, 4096]);
/// assert_eq!(r.err().map(|(e, _)| e), Some(ConfigError::ClassTooLarge(4096)));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigError {
    /// `SLAB_SIZE` is not a power of two of at least [`MIN_SLAB_SIZE`]
    /// bytes (or too large for a `Layout`).
    SlabSize,
    /// More than [`MAX_CLASSES`] classes.
    TooManyClasses,
    /// Classes are not strictly increasing, or one is zero.
    NotIncreasing,
    /// Not even one object of this class fits in a slab.
    ClassTooLarge(usize),
}

impl ConfigError {
    pub(crate) const fn message(self) -> &'static str {
        match self {
            ConfigError::SlabSize => "freespace-slab: SLAB_SIZE must be a power of two >= 256",
            ConfigError::TooManyClasses => "freespace-slab: more than MAX_CLASSES size classes",
            ConfigError::NotIncreasing => {
                "freespace-slab: size classes must be non-zero and strictly increasing"
            }
            ConfigError::ClassTooLarge(_) => "freespace-slab: a size class does not fit in a slab",
        }
    }
}

/// Request sizes up to this are routed by a table lookup ([`lookup_table`]);
/// larger ones by a binary search of the classes.
const LOOKUP_MAX: usize = 8192;
/// Entries of the routing table: one per 16 bytes of request size.
const LOOKUP_LEN: usize = LOOKUP_MAX / 16 + 1;

/// The routing table of `classes`: entry `k >= 1` is the first class of at
/// least `16 (k - 1) + 1` bytes, the smallest request size with
/// `ceil(size / 16) == k` (`classes.len()` if none is). A request of `size`
/// bytes starts its class search there, so it skips every class too small
/// for all sizes sharing its entry and, with the default classes (every one
/// a multiple of 16), lands on its class at once.
const fn lookup_table(classes: &[usize]) -> [u8; LOOKUP_LEN] {
    let mut table = [0u8; LOOKUP_LEN];
    let (mut k, mut i) = (1, 0);
    while k < LOOKUP_LEN {
        while i < classes.len() && classes[i] < 16 * (k - 1) + 1 {
            i += 1;
        }
        // `i <= classes.len() <= MAX_CLASSES < 256`.
        table[k] = i as u8;
        k += 1;
    }
    table
}

const _: () = assert!(MAX_CLASSES < u8::MAX as usize);

/// Whether every class is a multiple of 16 bytes: then the routing table's
/// entry for a request of at most 16-byte alignment *is* its class (the
/// first class of at least `16 (k - 1) + 1` bytes is at least `16 k`, so at
/// least the request, and aligned to 16 or more), and the route checks
/// nothing further.
const fn lookup_is_exact(classes: &[usize]) -> bool {
    let mut i = 0;
    while i < classes.len() {
        if classes[i] % 16 != 0 {
            return false;
        }
        i += 1;
    }
    true
}

/// The object alignment of a class of `size` bytes.
const fn class_align(size: usize) -> usize {
    let pow2 = 1usize << size.trailing_zeros();
    if pow2 > MAX_CLASS_ALIGN {
        MAX_CLASS_ALIGN
    } else {
        pow2
    }
}

/// The caches for `classes` in slabs of `slab_size` bytes.
pub(crate) const fn build(
    slab_size: usize,
    classes: &[usize],
) -> Result<[Cache; MAX_CLASSES], ConfigError> {
    if !slab_size.is_power_of_two() || slab_size < MIN_SLAB_SIZE || slab_size > isize::MAX as usize
    {
        return Err(ConfigError::SlabSize);
    }
    if classes.len() > MAX_CLASSES {
        return Err(ConfigError::TooManyClasses);
    }
    let mut caches = [Cache::UNUSED; MAX_CLASSES];
    let mut i = 0;
    while i < classes.len() {
        let size = classes[i];
        if size == 0 || (i > 0 && classes[i - 1] >= size) {
            return Err(ConfigError::NotIncreasing);
        }
        caches[i] = match Geometry::new(slab_size, size, class_align(size)) {
            Some(g) => Cache::new(g, i as u32),
            None => return Err(ConfigError::ClassTooLarge(size)),
        };
        i += 1;
    }
    Ok(caches)
}

/// How many of the default classes a slab of `slab_size` bytes uses.
const fn default_count(slab_size: usize) -> usize {
    let mut n = 0;
    while n < DEFAULT_CLASSES.len() && DEFAULT_CLASSES[n] <= slab_size / 8 {
        n += 1;
    }
    n
}

/// Bonwick's slab allocator as a size-class layer: requests that fit a class
/// are objects of that class's cache; everything else goes to `A`.
///
/// ```text
///             Slab<A, SLAB_SIZE>
///  ┌──────────────────────────────────────────────┐
///  │ classes: 16  32  48  64  80 ... 8192         │   size ≤ class and
///  │          │   │   │   │                       │   align ≤ class align
///  │ caches:  C0  C1  C2  C3  ...                 │──▶ object of that class
///  │ index:   { slab base → slab }  (hash set)    │
///  └───────────────────┬──────────────────────────┘
///     slabs (SLAB_SIZE,│aligned to SLAB_SIZE) and everything larger
///                      ▼
///                   parent A
/// ```
///
/// # Routing
///
/// A layout goes to the first class `c` with `size <= c` and
/// `align <= align(c)` (the largest power of two dividing `c`, at most
/// [`MAX_CLASS_ALIGN`]); if there is none, to the parent. A slab object is
/// reported as `c` bytes long, and a free with any size between the request
/// and `c` (same alignment) routes to `c` again: no class before `c` fit the
/// request, and a larger size fits fewer. A forwarded block freed with a
/// larger size still fits no class, so the parent's excess needs no clamp
/// (DESIGN §7 "Excess and routing").
///
/// # Frees and corruption
///
/// The slab of a pointer is `ptr & !(SLAB_SIZE - 1)`. A plain
/// [`deallocate`](Allocator::deallocate), whose contract vouches that the
/// pointer is ours, reads that header straight away if it lies within the
/// span of our slabs (a pointer outside it is foreign and its memory is not
/// read); a checked free ([`Slab::try_deallocate`]), `Owns` and `BlockSize`
/// first look the slab up in the index (a hash set of our slabs), which
/// also names the fault when a plain free's fast checks fail. A contract
/// breach the fast path cannot survive: a foreign pointer whose slab-aligned
/// base lies between two of our slabs in memory that is not mapped, which
/// needs a parent whose blocks have unmapped gaps between them (a buddy or
/// free-list heap over `Mmap`, `Sbrk` or an `Arena` has none; a system
/// allocator may). Where a pointer's origin is in doubt, use the checked
/// free. Then the header's
/// seal is checked (SLAB-S1: a keyed weighted sum of its address and every other
/// header word, so damage to any one word — links, class, list tag, free
/// count, search start or the seal itself — is always caught), then the
/// pointer must start an object that is in use, the free count must agree
/// with the list, and, if the free moves the slab to another list, the
/// headers of its neighbours and of the new list's head are checked too.
/// Nothing is changed before all of that passes. Failures are reported
/// through [`freespace_core::report`] as `(slab)`: foreign pointer,
/// overwritten header (naming the damaged header's address), size mismatch
/// (an object freed with a layout of another class), interior pointer,
/// double free. A plain free whose layout routes to the parent goes there
/// without a lookup, as the contract vouches the block is the parent's: a
/// slab object freed that way is a pointer inside one of the parent's
/// blocks (its slab), which every parent in this workspace reports.
/// [`Slab::try_deallocate`] (for a parent with a checked free) returns the
/// faults instead, refuses a slab object with a layout that routes to the
/// parent (size mismatch), and hands any other such block to the parent's
/// checked free, so it never reports and never writes on an `Err`.
///
/// An allocation that keeps its slab on the same list checks only the list
/// tag and free count it acts on (the fast path); one that moves the slab
/// verifies every header it touches, and damage is reported (the request
/// then fails). `reap` and drop verify each slab before following its link.
///
/// # Empty slabs
///
/// A slab whose last object is freed stays on the empty list while there are
/// at most `max_empty` (default 1) empty slabs in its class; past that it goes
/// back to the parent at once. [`Slab::reap`] gives back every empty slab,
/// and so does a request the parent cannot serve (a new slab or a large
/// block), before it is tried once more: memory kept for one class never
/// makes another class's request fail.
///
/// # Configuration
///
/// `SLAB_SIZE` (a power of two, at least 256) and the class table are fixed
/// at construction; the constructors are `const` and panic on an invalid
/// configuration, which in a `static` is a compile error. Nothing is
/// allocated until the first request.
///
/// # Invariants
///
/// Per slab:
/// - SLAB-S1: the header's seal is the keyed weighted sum of its address and its
///   other words, its list tag names a list, the slab is aligned to
///   `SLAB_SIZE`, and the header names the class of the cache that lists it;
/// - SLAB-S2: the header's free count is the number of set bits in the bitmap, and
///   no bit past the last object is set;
/// - SLAB-S3: every word of the bitmap below the header's search start is
///   zero (free objects are found in the bitmap, from there on; nothing is
///   kept inside free objects);
/// - SLAB-S4: the header's identity word is the keyed hash of the slab's
///   address and class, set when the slab is made and not written again
///   until it is erased, just before the slab goes back to the parent (what
///   lets an [`ObjectMap`](crate::ObjectMap) name a live object's class without the
///   allocator).
///
/// Per class cache:
/// - SLAB-C1: a slab is on the partial, full or empty list exactly when its free
///   count is between, zero, or its capacity, and its header says which;
/// - SLAB-C2: each list is doubly linked and its length is its count;
/// - SLAB-C3: every listed slab is in the index, and the index holds only listed
///   slabs;
/// - SLAB-C4: after each operation, at most `max_empty` slabs are empty.
///
/// The slab index:
/// - SLAB-I1: its table (from the parent) has a power-of-two capacity, at least
///   twice its length, and no table while it is empty;
/// - SLAB-I2: every entry is reachable by probing from its home slot.
/// - SLAB-I3: its span is the lowest and highest base of a slab in it.
///
/// [`Slab::check`] verifies all of them.
///
/// `Slab` is `!Sync` (wrap it in a lock to share it):
///
/// ```compile_fail
/// fn shared<T: Sync>() {}
/// shared::<freespace_slab::Slab<freespace_core::alloc::Global>>();
/// ```
///
/// # Example
///
/// ```
/// use freespace_core::alloc::{Global, Vec};
/// use freespace_slab::Slab;
///
/// let slab = Slab::new(Global);
/// let mut v = Vec::new_in(&slab);
/// v.extend(0..100u32);
/// assert_eq!(v.iter().sum::<u32>(), 4950);
/// ```
pub struct Slab<A: Allocator, const SLAB_SIZE: usize = DEFAULT_SLAB_SIZE> {
    parent: A,
    classes: &'static [usize],
    pub(crate) caches: [Cache; MAX_CLASSES],
    /// Where a request's class search starts ([`lookup_table`]).
    lookup: [u8; LOOKUP_LEN],
    /// The table's entry is the class of every request aligned to at most
    /// 16 ([`lookup_is_exact`]).
    lookup_exact: bool,
    index: Index,
    max_empty: usize,
}

// SAFETY: every pointer a `Slab` holds is into memory it owns exclusively
// (slabs and the index table, from `parent`), so moving the whole allocator
// to another thread moves that ownership with it; `A: Send` covers the parent.
unsafe impl<A: Allocator + Send, const SLAB_SIZE: usize> Send for Slab<A, SLAB_SIZE> {}

impl<A: Allocator> Slab<A> {
    /// A slab layer over `parent` with 64 KiB slabs and the default classes
    /// (16 B to 8 KiB). Allocates nothing.
    ///
    /// ```
    /// use freespace_core::alloc::{Allocator, Global, Layout};
    /// use freespace_slab::Slab;
    /// static_assertions::assert_not_impl_any!(Slab<Global>: Sync);
    /// let slab = Slab::new(Global);
    /// let b = slab.allocate(Layout::new::<[u8; 40]>()).unwrap();
    /// assert_eq!(b.len(), 48); // the 48-byte class
    /// # unsafe { slab.deallocate(b.cast(), Layout::new::<[u8; 40]>()) };
    /// ```
    pub const fn new(parent: A) -> Self {
        Self::sized(parent)
    }

    /// A slab layer over `parent` with 64 KiB slabs and the given classes.
    ///
    /// # Panics
    /// If the table is invalid (see [`ConfigError`]).
    ///
    /// ```
    /// use freespace_core::alloc::{Allocator, Global, Layout};
    /// use freespace_slab::Slab;
    /// let slab = Slab::with_classes(Global, &[24, 40, 1000]);
    /// let b = slab.allocate(Layout::new::<[u64; 3]>()).unwrap();
    /// assert_eq!(b.len(), 24);
    /// # unsafe { slab.deallocate(b.cast(), Layout::new::<[u64; 3]>()) };
    /// ```
    pub const fn with_classes(parent: A, classes: &'static [usize]) -> Self {
        Self::sized_with_classes(parent, classes)
    }
}

impl<A: Allocator, const SLAB_SIZE: usize> Slab<A, SLAB_SIZE> {
    /// A slab layer with slabs of `SLAB_SIZE` bytes and the default classes
    /// up to `SLAB_SIZE / 8`.
    ///
    /// # Panics
    /// If `SLAB_SIZE` is invalid (see [`ConfigError::SlabSize`]).
    ///
    /// ```
    /// use freespace_core::alloc::Global;
    /// use freespace_slab::Slab;
    /// let slab: Slab<Global, 4096> = Slab::sized(Global);
    /// assert_eq!(slab.classes().last(), Some(&512));
    /// ```
    pub const fn sized(parent: A) -> Self {
        let n = default_count(SLAB_SIZE);
        let (classes, _) = DEFAULT_CLASSES.split_at(n);
        Self::sized_with_classes(parent, classes)
    }

    /// A slab layer with slabs of `SLAB_SIZE` bytes and the given classes.
    ///
    /// # Panics
    /// If the configuration is invalid (see [`ConfigError`]); use
    /// [`Slab::try_sized_with_classes`] to get the error instead.
    ///
    /// ```
    /// use freespace_core::alloc::Global;
    /// use freespace_slab::Slab;
    /// let slab: Slab<Global, 8192> = Slab::sized_with_classes(Global, &[64, 256]);
    /// assert_eq!(slab.classes(), &[64, 256]);
    /// ```
    pub const fn sized_with_classes(parent: A, classes: &'static [usize]) -> Self {
        let caches = match build(SLAB_SIZE, classes) {
            Ok(caches) => caches,
            Err(e) => panic!("{}", e.message()),
        };
        Self::from_parts(parent, classes, caches)
    }

    /// Like [`Slab::sized_with_classes`], but returns the configuration
    /// error instead of panicking.
    ///
    /// ```
    /// use freespace_core::alloc::Global;
    /// use freespace_slab::{ConfigError, Slab};
    /// let r = Slab::<Global, 4096>::try_sized_with_classes(Global, &[64, 32]);
    /// assert_eq!(r.err().map(|(e, _)| e), Some(ConfigError::NotIncreasing));
    /// ```
    pub const fn try_sized_with_classes(
        parent: A,
        classes: &'static [usize],
    ) -> Result<Self, (ConfigError, A)> {
        match build(SLAB_SIZE, classes) {
            Ok(caches) => Ok(Self::from_parts(parent, classes, caches)),
            Err(e) => Err((e, parent)),
        }
    }

    const fn from_parts(
        parent: A,
        classes: &'static [usize],
        caches: [Cache; MAX_CLASSES],
    ) -> Self {
        Self {
            parent,
            classes,
            caches,
            lookup: lookup_table(classes),
            lookup_exact: lookup_is_exact(classes),
            index: Index::new(SLAB_SIZE),
            max_empty: 1,
        }
    }

    /// Keeps at most `max_empty` empty slabs per class (default 1) before
    /// giving them back to the parent.
    ///
    /// ```
    /// use freespace_core::alloc::Global;
    /// use freespace_slab::Slab;
    /// let slab = Slab::new(Global).with_max_empty(0);
    /// assert_eq!(slab.max_empty(), 0);
    /// ```
    pub const fn with_max_empty(mut self, max_empty: usize) -> Self {
        self.max_empty = max_empty;
        self
    }

    /// The number of empty slabs kept per class.
    ///
    /// ```
    /// # use freespace_core::alloc::Global;
    /// assert_eq!(freespace_slab::Slab::new(Global).max_empty(), 1);
    /// ```
    pub const fn max_empty(&self) -> usize {
        self.max_empty
    }

    /// The size classes, ascending.
    ///
    /// ```
    /// # use freespace_core::alloc::Global;
    /// let slab = freespace_slab::Slab::new(Global);
    /// assert_eq!(slab.classes().last(), Some(&8192));
    /// ```
    pub const fn classes(&self) -> &'static [usize] {
        self.classes
    }

    /// The parent allocator.
    ///
    /// ```
    /// # use freespace_core::alloc::Global;
    /// let slab = freespace_slab::Slab::new(Global);
    /// let _global: &Global = slab.parent();
    /// ```
    pub const fn parent(&self) -> &A {
        &self.parent
    }

    /// The class that serves `layout`, or `None` for the parent.
    #[inline]
    pub(crate) fn route(&self, layout: Layout) -> Option<usize> {
        let classes = self.classes;
        let size = layout.size();
        // Start at the routing table's entry (past it, nothing when the
        // largest class is smaller, as for most blocks that large, else a
        // binary search), then the first class from there that is large
        // and aligned enough.
        let mut i = match self.lookup.get(size.div_ceil(16)) {
            Some(&i) if self.lookup_exact && layout.align() <= 16 => {
                // The entry is the class (`lookup_is_exact`), or past the
                // last class when none is large enough.
                let i = i as usize;
                return (i < classes.len()).then_some(i);
            }
            Some(&i) => i as usize,
            None if classes.last().is_none_or(|&c| c < size) => return None,
            None => classes.partition_point(|&c| c < size),
        };
        while i < classes.len() {
            if classes[i] >= size && self.caches[i].geometry.object_align >= layout.align() {
                return Some(i);
            }
            i += 1;
        }
        None
    }

    /// The slab of `ptr`, if `ptr` lies in one of ours.
    #[inline]
    fn slab_of(&self, ptr: NonNull<u8>) -> Option<SlabPtr> {
        self.index.find(ptr.as_ptr().addr() & !(SLAB_SIZE - 1))
    }

    /// Statistics: the number of slabs on the partial, full and empty lists
    /// of every class together.
    ///
    /// ```
    /// use freespace_core::alloc::{Allocator, Global, Layout};
    /// use freespace_slab::Slab;
    /// let slab = Slab::new(Global);
    /// let l = Layout::new::<u64>();
    /// let p = slab.allocate(l).unwrap();
    /// assert_eq!(slab.slab_counts(), (1, 0, 0));
    /// unsafe { slab.deallocate(p.cast(), l) };
    /// assert_eq!(slab.slab_counts(), (0, 0, 1));
    /// ```
    pub fn slab_counts(&self) -> (usize, usize, usize) {
        let mut c = (0, 0, 0);
        for cache in &self.caches[..self.classes.len()] {
            let (partial, full, empty) = cache.counts_by_state();
            c.0 += partial;
            c.1 += full;
            c.2 += empty;
        }
        c
    }

    /// Checks every invariant: each cache's lists (SLAB-C1–C4), each slab's header
    /// and bitmap (SLAB-S1–S3), the index (SLAB-I1–I3), and that the index holds
    /// exactly the listed slabs.
    ///
    /// ```
    /// use freespace_core::alloc::{Global, Vec};
    /// let slab = freespace_slab::Slab::new(Global);
    /// let mut v = Vec::new_in(&slab);
    /// v.push(1u8);
    /// assert_eq!(slab.check(), Ok(()));
    /// ```
    pub fn check(&self) -> Result<(), Violation> {
        self.index.check()?;
        let mut total = 0;
        for cache in &self.caches[..self.classes.len()] {
            total += cache.check(&self.index, self.max_empty)?;
        }
        if total != self.index.len() {
            return Err(Violation::new(
                "SLAB-C3",
                0,
                "index holds slabs that are on no list",
            ));
        }
        Ok(())
    }
}

impl<A: Allocator, const SLAB_SIZE: usize> Slab<A, SLAB_SIZE> {
    /// Gives every empty slab back to the parent; returns how many.
    ///
    /// ```
    /// use freespace_core::alloc::{Allocator, Global, Layout};
    /// use freespace_slab::Slab;
    /// let slab = Slab::new(Global);
    /// let l = Layout::new::<u64>();
    /// let p = slab.allocate(l).unwrap();
    /// unsafe { slab.deallocate(p.cast(), l) };
    /// assert_eq!(slab.reap(), 1);
    /// assert_eq!(slab.slab_counts(), (0, 0, 0));
    /// ```
    pub fn reap(&self) -> usize {
        let mut n = 0;
        for cache in &self.caches[..self.classes.len()] {
            n += cache.reap(&self.parent, &self.index, &NoHooks);
        }
        n
    }

    /// The free of a slab object, or the verdict that `ptr` is the parent's:
    /// `Ok(true)` freed here, `Ok(false)` a block for the parent (its layout
    /// routes there and it lies in none of our slabs), `Err` refused with
    /// nothing changed.
    ///
    /// # Safety
    /// As for [`try_deallocate`](Self::try_deallocate).
    #[inline]
    unsafe fn free_here(&self, ptr: NonNull<u8>, layout: Layout) -> Result<bool, Corruption> {
        let addr = ptr.as_ptr().addr();
        match self.route(layout) {
            Some(class) => {
                let slab = self
                    .slab_of(ptr)
                    .ok_or(Corruption::ForeignPointer { addr })?;
                // The index proved `slab` ours; its header is believed only
                // after its seal passes (SLAB-S1).
                let list = slab.verify()?;
                if slab.class() as usize != class {
                    return Err(Corruption::SizeMismatch { addr });
                }
                self.free_validated(slab, list, class, addr)?;
                Ok(true)
            }
            None => {
                if self.slab_of(ptr).is_some() {
                    // A slab object freed with a layout that no class
                    // serves: it must not reach the parent.
                    return Err(Corruption::SizeMismatch { addr });
                }
                Ok(false)
            }
        }
    }
}

impl<A: CheckedFree, const SLAB_SIZE: usize> Slab<A, SLAB_SIZE> {
    /// Frees `ptr` like [`Allocator::deallocate`], but returns what is wrong
    /// with it instead of reporting it; a rejected pointer is left alone
    /// (nothing is written) and nothing is reported, at this layer or the
    /// parent's.
    ///
    /// A pointer whose layout routes to a size class is checked here
    /// (foreign, interior, double free, wrong class, damaged slab header);
    /// one whose layout routes to the parent is refused here if it lies in
    /// one of our slabs, and otherwise goes to the parent's checked free.
    ///
    /// # Safety
    /// If `ptr` is a live block of this allocator, `layout` fits it (as for
    /// `deallocate`), and the caller is done with it.
    ///
    /// ```
    /// use freespace_core::alloc::{Allocator, Layout};
    /// use freespace_core::Corruption;
    /// use freespace_slab::Slab;
    /// use freespace_testkit::misuse::Tracked;
    ///
    /// let slab = Slab::new(Tracked::new()); // any parent with a checked free
    /// let l = Layout::new::<u64>();
    /// let p = slab.allocate(l).unwrap().cast::<u8>();
    /// let big = Layout::from_size_align(100_000, 8).unwrap(); // the parent's
    /// let q = slab.allocate(big).unwrap().cast::<u8>();
    /// unsafe {
    ///     assert_eq!(slab.try_deallocate(p, l), Ok(()));
    ///     let addr = p.as_ptr() as usize;
    ///     assert_eq!(slab.try_deallocate(p, l), Err(Corruption::DoubleFree { addr }));
    ///     assert_eq!(slab.try_deallocate(q, big), Ok(()));
    ///     let addr = q.as_ptr() as usize;
    ///     assert_eq!(slab.try_deallocate(q, big), Err(Corruption::DoubleFree { addr }));
    /// }
    /// ```
    pub unsafe fn try_deallocate(
        &self,
        ptr: NonNull<u8>,
        layout: Layout,
    ) -> Result<(), Corruption> {
        if layout.size() == 0 {
            return Ok(());
        }
        // SAFETY: the caller's contract.
        if unsafe { self.free_here(ptr, layout)? } {
            return Ok(());
        }
        // SAFETY: the layout routes to the parent and `ptr` is in none of
        // our slabs: if it is a live block of ours, the parent served it
        // (caller contract); if not, the parent's checked free says so.
        unsafe { self.parent.try_deallocate(ptr, layout) }
    }
}

impl<A: Allocator, const SLAB_SIZE: usize> Slab<A, SLAB_SIZE> {
    /// An object of `class` when the first partial slab has none to
    /// spare ([`Cache::allocate`]: a list move, a new slab, a reap). Out of
    /// line, and the last thing [`allocate`](Allocator::allocate) does, so
    /// that the common allocation keeps nothing across a call.
    #[inline(never)]
    fn allocate_in(&self, class: usize) -> Result<NonNull<[u8]>, AllocError> {
        let p =
            self.or_reap(|| self.caches[class].allocate(&self.parent, &self.index, &NoHooks))?;
        Ok(NonNull::slice_from_raw_parts(p, self.classes[class]))
    }

    /// A request no class serves: the parent's. Kept out of line so that
    /// the parent's code does not weigh on the class path.
    #[inline(never)]
    fn allocate_large(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        self.or_reap(|| self.parent.allocate(layout))
    }

    /// `request` (to the parent, or to a cache, which may ask the parent),
    /// and if that is out of memory, once more after the empty slabs every
    /// class keeps went back to the parent.
    #[inline]
    fn or_reap<T>(&self, request: impl Fn() -> Result<T, AllocError>) -> Result<T, AllocError> {
        request().or_else(|_| self.after_reap(request))
    }

    /// A request that failed for want of memory from the parent, tried
    /// once more after the empty slabs every class keeps (up to
    /// `max_empty` each) went back to the parent ([`Slab::reap`]); not
    /// tried if there were none.
    #[cold]
    #[inline(never)]
    fn after_reap<T>(&self, request: impl Fn() -> Result<T, AllocError>) -> Result<T, AllocError> {
        if self.reap() == 0 {
            return Err(AllocError);
        }
        request()
    }

    /// Every free [`Slab::free_fast`] does not finish: a slab moving
    /// between lists, or a fault to name.
    ///
    /// # Safety
    /// As for `deallocate`.
    #[inline(never)]
    unsafe fn deallocate_slow(&self, ptr: NonNull<u8>, layout: Layout) {
        // SAFETY: the caller meets `deallocate`'s contract, which is
        // stronger than `free_here`'s.
        match unsafe { self.free_here(ptr, layout) } {
            Ok(true) => {}
            // SAFETY: the layout routes to the parent, which served the
            // block (caller contract).
            Ok(false) => unsafe { self.parent.deallocate(ptr, layout) },
            Err(c) => report(c, "slab"),
        }
    }

    /// The plain free of an object of `class` (the route of its layout): no
    /// index lookup, since the `deallocate` contract says the pointer is
    /// ours. Its slab's header is read if the slab base lies in the span of
    /// our slabs, believed only if its seal verifies (SLAB-S1) and it names
    /// `class`; a free that keeps the slab on its list is done at once, one
    /// that moves it goes through the full validation first
    /// ([`Slab::free_moving_or_slow`]). Anything else goes down the full
    /// path ([`Slab::deallocate_slow`]), which looks the slab up in the
    /// index and names what is wrong.
    ///
    /// Every call here is the last thing done, so nothing is kept across
    /// one: the free saves no registers for the paths it does not take.
    ///
    /// # Safety
    /// As for `deallocate`: `ptr` is a live block of this allocator whose
    /// layout is `layout` and routes to `class`.
    #[inline(always)]
    unsafe fn free_fast(&self, ptr: NonNull<u8>, layout: Layout, class: usize) {
        let addr = ptr.as_ptr().addr();
        // SAFETY: the caller's contract.
        let Some((slab, list)) = (unsafe { self.sealed_slab_of(ptr, class) }) else {
            // SAFETY: as above.
            return unsafe { self.deallocate_slow(ptr, layout) };
        };
        if !self.caches[class].free_in_place(slab, list, addr, self.max_empty) {
            // SAFETY: as above.
            unsafe { self.free_moving_or_slow(slab, list, class, ptr, layout) }
        }
    }

    /// [`Slab::free_moving`], and the full path
    /// ([`Slab::deallocate_slow`]) if that refuses: one call for the free
    /// path, which then keeps nothing across it.
    ///
    /// # Safety
    /// As for [`Slab::free_fast`]; `slab` is `ptr`'s slab, its seal
    /// verified, naming `list`.
    #[inline(never)]
    unsafe fn free_moving_or_slow(
        &self,
        slab: SlabPtr,
        list: List,
        class: usize,
        ptr: NonNull<u8>,
        layout: Layout,
    ) {
        if !self.free_moving(slab, list, class, ptr.as_ptr().addr()) {
            // SAFETY: the caller's contract.
            unsafe { self.deallocate_slow(ptr, layout) }
        }
    }

    /// The slab of `ptr` for [`Slab::free_fast`], with the list its header
    /// names, if its base lies in the span of our slabs, its seal verifies
    /// (SLAB-S1) and it names `class`; `None` otherwise.
    ///
    /// # Safety
    /// As for [`Slab::free_fast`].
    #[inline(always)]
    unsafe fn sealed_slab_of(&self, ptr: NonNull<u8>, class: usize) -> Option<(SlabPtr, List)> {
        let base = ptr.as_ptr().addr() & !(SLAB_SIZE - 1);
        if !self.index.in_span(base) {
            return None;
        }
        let header = layout::with_addr(ptr, base)?;
        // SAFETY: `ptr` is one of our objects (caller), so `base` is its
        // slab's base, and `ptr`, derived from the slab's own pointer, has
        // provenance over the whole slab. (Were the caller to break the
        // contract, `base` still lies between two of our slabs, in memory
        // the parent handed out: see "Frees and corruption".)
        let slab = unsafe { SlabPtr::from_base(header) };
        let list = slab.verify().ok()?;
        (slab.class() as usize == class).then_some((slab, list))
    }

    /// [`Slab::free_fast`] for a free that moves its slab to another list
    /// (or finds something wrong): the full validation of
    /// [`Cache::validate_object`] — every header the move rewrites verified —
    /// without the index lookup. `false`, with nothing changed, if the
    /// validation fails: the full path then names the fault.
    #[inline(never)]
    fn free_moving(&self, slab: SlabPtr, list: List, class: usize, addr: usize) -> bool {
        self.free_validated(slab, list, class, addr).is_ok()
    }

    /// Frees the object at `addr` of `slab` (its seal verified, naming
    /// `list`; one of ours, of `class`) after [`Cache::validate_object`]
    /// clears it; on `Err` nothing has changed.
    fn free_validated(
        &self,
        slab: SlabPtr,
        list: List,
        class: usize,
        addr: usize,
    ) -> Result<(), Corruption> {
        let cache = &self.caches[class];
        let valid = cache.validate_object(slab, list, addr, self.max_empty)?;
        cache.free(
            &self.parent,
            &self.index,
            &NoHooks,
            self.max_empty,
            slab,
            valid,
        );
        Ok(())
    }

    /// Frees the slab object at `ptr` whose slab is `slab`, validating it
    /// against the class its header names.
    fn free_object(&self, slab: SlabPtr, ptr: NonNull<u8>) -> Result<(), Corruption> {
        let addr = ptr.as_ptr().addr();
        let list = slab.verify()?;
        let class = slab.class() as usize;
        if class >= self.classes.len() {
            return Err(Corruption::OverwrittenHeader { addr: slab.addr() });
        }
        self.free_validated(slab, list, class, addr)
    }

    /// Size of the class object at `ptr` in `slab` (header already in the
    /// index; its class is checked against the table).
    fn class_size(&self, slab: SlabPtr) -> usize {
        let class = slab.class() as usize;
        if class < self.classes.len() {
            self.classes[class]
        } else {
            0
        }
    }
}

// SAFETY: slab objects are disjoint parts of slabs, which are parent blocks
// owned by this layer; forwarded blocks are the parent's, and the routing
// rule (see the type docs) sends every free back where its block came from.
// Objects are aligned to their class alignment, which is at least the
// requested alignment; the reported length is the class size, all of it
// inside the object.
unsafe impl<A: Allocator, const SLAB_SIZE: usize> Allocator for Slab<A, SLAB_SIZE> {
    #[inline]
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        if layout.size() == 0 {
            return Ok(layout::dangling(layout));
        }
        self.allocate_routed(self.route(layout), layout)
    }

    fn allocate_zeroed(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        if self.route(layout).is_none() && layout.size() != 0 {
            return self.or_reap(|| self.parent.allocate_zeroed(layout));
        }
        let block = self.allocate(layout)?;
        // SAFETY: `block` is `block.len()` writable bytes we just allocated.
        unsafe { block.cast::<u8>().write_bytes(0, block.len()) };
        Ok(block)
    }

    #[inline]
    unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
        if layout.size() == 0 {
            return;
        }
        // SAFETY: the caller meets `deallocate`'s contract.
        unsafe { self.deallocate_routed(ptr, layout, self.route(layout)) }
    }

    freespace_core::forward_resize!(method resize);
}

/// Runs of one class in one call, as a thread cache's refills and returns
/// come: an allocation takes every object it can from the first partial
/// slab before it looks further, and a free of several objects of one slab
/// verifies that slab's header once (SLAB-S1: between two frees of the run
/// nothing but this allocator has written to it, and each write amended the
/// seal) and amends its counts once for the objects that follow each other
/// in the run. Each object is still checked as a single free checks it (an object
/// starts there, it is in use), and anything unusual — another slab, a list
/// move, a fault — takes the single-block path, so a double free or a
/// foreign pointer in a batch is named exactly as it would be alone.
/// Layouts no class serves go one block at a time.
///
/// ```
/// use core::ptr::NonNull;
/// use freespace_core::alloc::{Global, Layout};
/// use freespace_core::Batch;
/// use freespace_slab::Slab;
///
/// let slab = Slab::new(Global);
/// let l = Layout::new::<[u64; 4]>();
/// let mut run = [NonNull::dangling(); 16];
/// assert_eq!(slab.allocate_batch(l, &mut run), 16);
/// assert_eq!(slab.slab_counts(), (1, 0, 0)); // one slab served them all
/// // SAFETY: allocated just above with `l`, each freed once.
/// unsafe { slab.deallocate_batch(&run, l) };
/// slab.check().unwrap();
/// ```
impl<A: Allocator, const SLAB_SIZE: usize> freespace_core::Batch for Slab<A, SLAB_SIZE> {
    fn allocate_batch(&self, layout: Layout, out: &mut [NonNull<u8>]) -> usize {
        match self.route(layout) {
            Some(class) if layout.size() != 0 => self.allocate_run(class, out),
            _ => freespace_core::batch::allocate_each(self, layout, out),
        }
    }

    unsafe fn deallocate_batch(&self, blocks: &[NonNull<u8>], layout: Layout) {
        match self.route(layout) {
            // SAFETY: the caller's contract.
            Some(class) if layout.size() != 0 => unsafe { self.free_run(class, blocks, layout) },
            // SAFETY: the caller's contract, block by block.
            _ => unsafe { freespace_core::batch::deallocate_each(self, blocks, layout) },
        }
    }
}

/// How many blocks ahead [`Slab::free_run`] asks for a slab header: far
/// enough for a fetch from memory to arrive while the frees before it run
/// (each a few tens of nanoseconds), near enough that the lines fetched
/// are still in the cache when their turn comes.
const PREFETCH_AHEAD: usize = 12;

impl<A: Allocator, const SLAB_SIZE: usize> Slab<A, SLAB_SIZE> {
    /// [`Batch::allocate_batch`](freespace_core::Batch::allocate_batch) for
    /// `class`: runs from the first partial slab, then one object at a time
    /// through [`Cache::allocate`] (a list move, a new slab, a reap).
    fn allocate_run(&self, class: usize, out: &mut [NonNull<u8>]) -> usize {
        let cache = &self.caches[class];
        let mut n = 0;
        while n < out.len() {
            n += cache.take_run(&mut out[n..]);
            let Some(slot) = out.get_mut(n) else {
                break;
            };
            match self.or_reap(|| cache.allocate(&self.parent, &self.index, &NoHooks)) {
                Ok(object) => *slot = object,
                Err(AllocError) => break,
            }
            n += 1;
        }
        n
    }

    /// [`Batch::deallocate_batch`](freespace_core::Batch::deallocate_batch)
    /// for `class`: each block is a single free, and one that is done in
    /// place takes the blocks after it that lie in the same slab along
    /// ([`Cache::free_run_in_place`]: in place too, one amend of the slab's
    /// counts for them all, its header verified by the single free just
    /// before and written since only by that free).
    ///
    /// # Safety
    /// As for `deallocate`, for each block with `layout`, which routes to
    /// `class`.
    #[inline(never)]
    unsafe fn free_run(&self, class: usize, blocks: &[NonNull<u8>], layout: Layout) {
        let cache = &self.caches[class];
        let mut k = 0;
        while let Some(&ptr) = blocks.get(k) {
            // The slab header of a block a few places on: in random order
            // every block's slab is another one, whose header is most of
            // the wait of its free; fetched now, it arrives while the
            // blocks before it are freed (`teardown-random` in
            // docs/benchmarks.md). A run of one slab's blocks, freed in a
            // single step below, asks once.
            if let Some(ahead) = blocks.get(k + PREFETCH_AHEAD) {
                let p = ahead.as_ptr();
                freespace_core::hint::prefetch_write(p.wrapping_sub(p.addr() & (SLAB_SIZE - 1)));
            }
            k += 1;
            let addr = ptr.as_ptr().addr();
            // SAFETY: the caller's contract, for this block.
            if let Some((slab, list)) = unsafe { self.sealed_slab_of(ptr, class) } {
                if cache.free_in_place(slab, list, addr, self.max_empty) {
                    // Tested here as well, so that blocks in random order
                    // (runs of one) do not pay for setting a run up.
                    let base = addr & !(SLAB_SIZE - 1);
                    if blocks
                        .get(k)
                        .is_some_and(|p| p.as_ptr().addr() & !(SLAB_SIZE - 1) == base)
                    {
                        // SAFETY: the caller's contract, for each block.
                        k += unsafe { cache.free_run_in_place(slab, list, &blocks[k..]) };
                    }
                    continue;
                }
                if self.free_moving(slab, list, class, addr) {
                    continue;
                }
            }
            // SAFETY: the caller's contract, for this block.
            unsafe { self.deallocate_slow(ptr, layout) };
        }
    }

    /// Grow or shrink: in place within a class, the parent's own resize for
    /// two forwarded layouts, otherwise allocate, copy, free.
    ///
    /// # Safety
    /// `ptr` is live with `old`; `new` is as `grow`/`shrink` require.
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
        match (self.route(old), self.route(new)) {
            (Some(a), Some(b)) if a == b => {
                let len = self.classes[a];
                if zeroed && new.size() > old.size() {
                    // SAFETY: the object is `len >= new.size()` bytes.
                    unsafe { ptr.add(old.size()).write_bytes(0, len - old.size()) };
                }
                Ok(NonNull::slice_from_raw_parts(ptr, len))
            }
            // A failed resize leaves the block as it was, so trying it again
            // after a reap is the same call.
            (None, None) if !zeroed && new.size() >= old.size() => self.or_reap(|| {
                // SAFETY: both layouts route to the parent, which served `ptr`.
                unsafe { self.parent.grow(ptr, old, new) }
            }),
            (None, None) if zeroed => self.or_reap(|| {
                // SAFETY: as above.
                unsafe { self.parent.grow_zeroed(ptr, old, new) }
            }),
            // SAFETY: as above.
            (None, None) => self.or_reap(|| unsafe { self.parent.shrink(ptr, old, new) }),
            // SAFETY: `ptr` is a live block of `self` with `old` (caller).
            _ if zeroed => unsafe {
                freespace_core::resize::relocate_within(self, ptr, old, new, true)
            },
            // From one class to another, or across to the parent: both
            // routes are known, so the new block and the free of the old
            // one do not look them up again.
            // SAFETY: `ptr` is a live block of `self` with `old`, which
            // routes to `from` (caller); a fresh block is never a live one.
            (from, to) => unsafe {
                freespace_core::resize::relocate(
                    ptr,
                    old,
                    new,
                    |l| self.allocate_routed(to, l),
                    |p, l| self.deallocate_routed(p, l, from),
                )
            },
        }
    }

    /// [`allocate`](Allocator::allocate) of a non-empty `layout` that
    /// routes to `route`.
    #[inline(always)]
    fn allocate_routed(
        &self,
        route: Option<usize>,
        layout: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        match route {
            Some(class) => match self.caches[class].allocate_spare() {
                Some(p) => Ok(NonNull::slice_from_raw_parts(p, self.classes[class])),
                None => self.allocate_in(class),
            },
            None => self.allocate_large(layout),
        }
    }

    /// [`deallocate`](Allocator::deallocate) of a non-empty `layout` that
    /// routes to `route`.
    ///
    /// # Safety
    ///
    /// As `deallocate`; `route` is `self.route(layout)`.
    #[inline(always)]
    unsafe fn deallocate_routed(&self, ptr: NonNull<u8>, layout: Layout, route: Option<usize>) {
        match route {
            // SAFETY: the caller meets `deallocate`'s contract.
            Some(class) => unsafe { self.free_fast(ptr, layout, class) },
            // A layout no class serves: the contract vouches that the block
            // is the parent's, so it goes there without an index lookup
            // (see "Frees and corruption"; the checked free looks).
            // SAFETY: the parent served the block (caller contract).
            None => unsafe { self.parent.deallocate(ptr, layout) },
        }
    }
}

// SAFETY: a slab object is owned iff its slab is in our index (exact:
// slabs are ours alone); any other pointer is ours only if it is a block we
// forwarded, which only the parent can tell. A shared parent also owns its
// other users' blocks, so `true` then means "this layer or its parent".
unsafe impl<A: Allocator + Owns, const SLAB_SIZE: usize> Owns for Slab<A, SLAB_SIZE> {
    /// ```
    /// use freespace_core::alloc::{Allocator, Global, Layout};
    /// use freespace_core::Owns;
    /// # struct G; unsafe impl Allocator for G {
    /// #   fn allocate(&self, l: Layout) -> Result<core::ptr::NonNull<[u8]>, freespace_core::alloc::AllocError> { Global.allocate(l) }
    /// #   unsafe fn deallocate(&self, p: core::ptr::NonNull<u8>, l: Layout) { unsafe { Global.deallocate(p, l) } } }
    /// # unsafe impl Owns for G { fn owns(&self, _: core::ptr::NonNull<u8>) -> bool { false } }
    /// let slab = freespace_slab::Slab::new(G);
    /// let l = Layout::new::<u32>();
    /// let p = slab.allocate(l).unwrap().cast::<u8>();
    /// assert!(slab.owns(p));
    /// assert!(!slab.owns(core::ptr::NonNull::from(&0u8)));
    /// # unsafe { slab.deallocate(p, l) };
    /// ```
    fn owns(&self, ptr: NonNull<u8>) -> bool {
        self.slab_of(ptr).is_some() || self.parent.owns(ptr)
    }
}

// SAFETY: a pointer in one of our slabs (index lookup, exact) is a slab
// object whose usable size is its class size and which `deallocate` routes
// back to that class for every size up to it; any other live block was
// forwarded, and the parent answers for it and frees it.
unsafe impl<A: Allocator + BlockSize, const SLAB_SIZE: usize> BlockSize for Slab<A, SLAB_SIZE> {
    /// ```
    /// use freespace_core::alloc::{Allocator, Global, Layout};
    /// use freespace_core::BlockSize;
    /// # use core::ptr::NonNull;
    /// # struct G; unsafe impl Allocator for G {
    /// #   fn allocate(&self, l: Layout) -> Result<NonNull<[u8]>, freespace_core::alloc::AllocError> { Global.allocate(l) }
    /// #   unsafe fn deallocate(&self, p: NonNull<u8>, l: Layout) { unsafe { Global.deallocate(p, l) } } }
    /// # unsafe impl BlockSize for G { unsafe fn usable_size(&self, _: NonNull<u8>) -> usize { unreachable!() }
    /// #   unsafe fn free(&self, _: NonNull<u8>) { unreachable!() } }
    /// let slab = freespace_slab::Slab::new(G);
    /// let p = slab.allocate(Layout::new::<[u8; 100]>()).unwrap().cast::<u8>();
    /// unsafe {
    ///     assert_eq!(slab.usable_size(p), 112);
    ///     slab.free(p);
    /// }
    /// ```
    unsafe fn usable_size(&self, ptr: NonNull<u8>) -> usize {
        match self.slab_of(ptr) {
            Some(slab) => self.class_size(slab),
            // SAFETY: not in a slab, so a forwarded live block (caller contract).
            None => unsafe { self.parent.usable_size(ptr) },
        }
    }

    unsafe fn free(&self, ptr: NonNull<u8>) {
        match self.slab_of(ptr) {
            Some(slab) => {
                if let Err(c) = self.free_object(slab, ptr) {
                    report(c, "slab");
                }
            }
            // SAFETY: not in a slab, so a forwarded live block (caller contract).
            None => unsafe { self.parent.free(ptr) },
        }
    }
}

/// Reports this layer's own memory: for each slab its header and bitmap
/// (`Meta`), every object (`Used` or `Free`) and the tail slack (`Meta`),
/// plus the slab index table (`Meta`). Blocks forwarded to the parent are
/// the parent's to report.
impl<A: Allocator, const SLAB_SIZE: usize> Inspect for Slab<A, SLAB_SIZE> {
    /// ```
    /// use freespace_core::alloc::{Allocator, Global, Layout};
    /// use freespace_core::HeapSummary;
    /// let slab = freespace_slab::Slab::new(Global);
    /// let l = Layout::new::<[u8; 64]>();
    /// let p = slab.allocate(l).unwrap();
    /// let s = HeapSummary::of(&slab);
    /// assert_eq!((s.used_blocks, s.used_bytes), (1, 64));
    /// # unsafe { freespace_core::alloc::Allocator::deallocate(&slab, p.cast(), l) };
    /// ```
    fn inspect(&self, visit: &mut dyn FnMut(BlockInfo)) {
        for cache in &self.caches[..self.classes.len()] {
            cache.inspect(visit);
        }
        if let Some((addr, len)) = self.index.table_block() {
            visit(BlockInfo {
                addr,
                len,
                state: BlockState::Meta,
            });
        }
    }
}

/// Dropping the layer gives every slab back to the parent, objects still in
/// use included (they dangle afterwards, as with any allocator).
impl<A: Allocator, const SLAB_SIZE: usize> Drop for Slab<A, SLAB_SIZE> {
    fn drop(&mut self) {
        for cache in &self.caches[..self.classes.len()] {
            cache.release_all(&self.parent, &self.index, &NoHooks);
        }
        self.index.release_table(&self.parent);
    }
}

impl<A: Allocator + freespace_core::Check, const SLAB_SIZE: usize> freespace_core::Check
    for Slab<A, SLAB_SIZE>
{
    /// The slabs ([`check`](Slab::check)), then the parent's whole stack.
    fn check_all(&self) -> Result<(), Violation> {
        self.check()?;
        self.parent.check_all()
    }
}

// SAFETY: a slab object's free is `deallocate`'s (`free_here`), with its
// slab header, class and bitmap bit checked before anything is changed; a
// block routed to the parent goes to the parent's checked free, whose `Err`
// leaves it where it was. So an `Err` changes nothing.
unsafe impl<A: CheckedFree, const SLAB_SIZE: usize> CheckedFree for Slab<A, SLAB_SIZE> {
    #[inline]
    unsafe fn try_deallocate(&self, ptr: NonNull<u8>, layout: Layout) -> Result<(), Corruption> {
        // SAFETY: the caller's contract is the inherent method's.
        unsafe { Slab::try_deallocate(self, ptr, layout) }
    }
}

/// Gives every empty slab back to the parent ([`reap`](Slab::reap)), then
/// trims the parent.
impl<A: Allocator + freespace_core::Trim, const SLAB_SIZE: usize> freespace_core::Trim
    for Slab<A, SLAB_SIZE>
{
    fn trim(&self) -> usize {
        self.reap();
        self.parent.trim()
    }
}
