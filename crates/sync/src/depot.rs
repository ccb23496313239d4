//! [`Depot`]: the shared half of the thread-cache layer — the parent, and
//! per size class a lock-protected stack of full and of empty magazines.

use core::ptr::NonNull;

use freespace_core::Batch;
use freespace_core::Violation;

use crate::magazine::{
    class_layout, initial_rounds, mag, max_rounds, Mag, Magazine, CLASSES, ROUNDS,
};
use crate::{Locked, LockedGuard};

/// Full magazines a class keeps in the depot; beyond this, rounds go back
/// to the parent (so idle memory is returned, not hoarded). 1 under loom.
pub const MAX_FULL: usize = if cfg!(loom) { 1 } else { 16 };
/// Empty magazines a class keeps in the depot; beyond this, magazines are
/// freed to the parent. 1 under loom.
pub const MAX_EMPTY: usize = if cfg!(loom) { 1 } else { 16 };

/// The two magazine stacks of one class, and the capacity of the magazines
/// it makes.
pub(crate) struct Lists {
    full: Option<Mag>,
    full_len: usize,
    empty: Option<Mag>,
    empty_len: usize,
    /// Capacity of the next magazine made for the class; 0 until the first
    /// (then [`initial_rounds`]), doubled on contention up to
    /// [`max_rounds`].
    cap: usize,
}

// SAFETY: `Lists` owns the magazines linked from it (SYNC-M2), which live in
// parent memory that any thread may use; it holds no thread-bound state.
unsafe impl Send for Lists {}

impl Lists {
    const EMPTY: Lists = Lists {
        full: None,
        full_len: 0,
        empty: None,
        empty_len: 0,
        cap: 0,
    };

    /// # Safety
    /// `m` is owned by the caller and handed to the list (SYNC-M2).
    unsafe fn push(head: &mut Option<Mag>, len: &mut usize, m: Mag) {
        // SAFETY: the caller owns `m`.
        unsafe { (*m.as_ptr()).next = head.take() };
        *head = Some(m);
        *len += 1;
    }

    /// The capacity of the next magazine made for class `c` (the class's
    /// [`initial_rounds`] until contention has grown it).
    fn rounds(&self, c: usize) -> usize {
        match self.cap {
            0 => initial_rounds(c),
            cap => cap,
        }
    }

    fn pop(head: &mut Option<Mag>, len: &mut usize) -> Option<Mag> {
        let m = (*head)?;
        // SAFETY: magazines on the list are owned by it (SYNC-M2), and the list is
        // under its lock (the caller holds `&mut`).
        *head = unsafe { (*m.as_ptr()).next.take() };
        *len -= 1;
        Some(m)
    }
}

/// The shared depot of a thread-cache layer over the parent `P`.
///
/// Threads exchange whole magazines here — an empty one for a full one on
/// allocation, a full one for an empty one on free — so the depot lock is
/// taken once per magazine's worth of operations at most, and each class
/// has its own lock. A thread that finds a class's lock held doubles the
/// capacity of the magazines the class makes from then on (up to
/// [`max_rounds`](crate::max_rounds)): busier classes get larger magazines
/// and go to the depot less (Bonwick and Adams 2001, §3.6). Magazines are
/// themselves allocated from `P` (they are fixed-size), never from `std`. A `Depot` is `Sync` when `P` is (wrap a
/// heap in [`Locked`] first).
///
/// Use it through [`ThreadCache`](crate::ThreadCache) handles (explicit,
/// `no_std`) or the thread-local [`Magazines`](crate::Magazines) layer.
///
/// ```
/// use freespace_core::alloc::{Allocator, Global, Layout};
/// use freespace_sync::{Depot, ThreadCache, ROUNDS};
///
/// let depot = Depot::new(Global);
/// let layout = Layout::new::<[u64; 8]>();
/// std::thread::scope(|s| {
///     for _ in 0..2 {
///         s.spawn(|| {
///             let cache = ThreadCache::new(&depot);
///             let blocks: Vec<_> = (0..4 * ROUNDS).map(|_| cache.allocate(layout).unwrap()).collect();
///             for b in blocks {
///                 // SAFETY: allocated above with `layout`, freed once.
///                 unsafe { cache.deallocate(b.cast(), layout) };
///             } // full magazines went to the depot on the way
///         }); // and the handle's own ones when it is dropped
///     }
/// });
/// depot.check().unwrap();
/// assert!(depot.cached_blocks() >= 4 * ROUNDS);
/// depot.reap(); // everything back to the parent
/// assert_eq!(depot.cached_blocks(), 0);
/// ```
///
/// # Invariants
/// - SYNC-D1: every magazine on a `full` list is full (holds its capacity of
///   rounds); every one on an `empty` list holds none.
/// - SYNC-D4: a class's capacity for new magazines is 0 (none made yet) or
///   between [`initial_rounds`] and [`max_rounds`] of the class.
/// - SYNC-D2: `full_len`/`empty_len` are the lists' lengths, at most
///   [`MAX_FULL`]/[`MAX_EMPTY`].
/// - SYNC-D3: the lists own their magazines (SYNC-M2); a round appears once in the
///   whole layer (depot and every rack).
pub struct Depot<P: Batch> {
    parent: P,
    classes: [Line<Locked<Lists>>; CLASSES],
}

/// A value on a cache line of its own, so two threads exchanging magazines
/// of different classes never write the same line.
#[repr(align(64))]
struct Line<T>(T);

impl<T> core::ops::Deref for Line<T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<P: Batch> Depot<P> {
    /// An empty depot over `parent`; does no work.
    #[cfg(not(loom))]
    pub const fn new(parent: P) -> Self {
        Self {
            parent,
            classes: [const { Line(Locked::new(Lists::EMPTY)) }; CLASSES],
        }
    }

    /// An empty depot over `parent` (loom build: not `const`).
    #[cfg(loom)]
    pub fn new(parent: P) -> Self {
        Self {
            parent,
            classes: core::array::from_fn(|_| Line(Locked::new(Lists::EMPTY))),
        }
    }

    /// The parent blocks come from.
    pub fn parent(&self) -> &P {
        &self.parent
    }

    /// Free blocks held in the depot's full magazines.
    pub fn cached_blocks(&self) -> usize {
        let mut n = 0;
        for l in &self.classes {
            let l = l.lock();
            let mut at = l.full;
            while let Some(m) = at {
                // SAFETY: the list owns `m` (SYNC-M2) and is locked.
                unsafe {
                    n += mag::count(m);
                    at = (*m.as_ptr()).next;
                }
            }
        }
        n
    }

    /// The capacity of the next magazine class `c` makes (see
    /// [`initial_rounds`](crate::initial_rounds)): it grows when threads
    /// meet on the class's depot lock.
    ///
    /// ```
    /// use freespace_core::alloc::Global;
    /// use freespace_sync::{initial_rounds, Depot};
    /// let depot = Depot::new(Global);
    /// assert_eq!(depot.magazine_rounds(0), initial_rounds(0));
    /// ```
    pub fn magazine_rounds(&self, c: usize) -> usize {
        self.classes[c].lock().rounds(c)
    }

    /// Holds the lock of class `c` (tests: to make another thread meet it).
    #[cfg(test)]
    pub(crate) fn hold_class(&self, c: usize) -> LockedGuard<'_, Lists> {
        self.classes[c].lock()
    }

    /// The lock of class `c`. Finding it held is contention: the class's
    /// next magazines are made twice as large (SYNC-D4).
    #[inline]
    fn lock_class(&self, c: usize) -> LockedGuard<'_, Lists> {
        if let Some(l) = self.classes[c].try_lock() {
            return l;
        }
        let mut l = self.classes[c].lock();
        l.cap = (l.rounds(c) * 2).min(max_rounds(c));
        l
    }

    /// Returns every cached block and every magazine in the depot to the
    /// parent (Bonwick's reaping). Racks keep theirs.
    pub fn reap(&self) {
        for c in 0..CLASSES {
            loop {
                let (full, empty) = {
                    let mut l = self.classes[c].lock();
                    let l = &mut *l;
                    (
                        Lists::pop(&mut l.full, &mut l.full_len),
                        Lists::pop(&mut l.empty, &mut l.empty_len),
                    )
                };
                if full.is_none() && empty.is_none() {
                    break;
                }
                for m in [full, empty].into_iter().flatten() {
                    // SAFETY: popped from a list, so now owned here (SYNC-M2).
                    unsafe { self.drain(c, m) };
                    // SAFETY: `m` is drained and owned here.
                    unsafe { self.free_magazine(m) };
                }
            }
        }
    }

    /// Checks SYNC-D1–D3 over the depot's lists (rounds distinct within the
    /// depot). Takes each class's lock in turn.
    pub fn check(&self) -> Result<(), Violation> {
        for (c, l) in self.classes.iter().enumerate() {
            let l = l.lock();
            if l.cap != 0 && !(initial_rounds(c)..=max_rounds(c)).contains(&l.cap) {
                return Err(Violation::new(
                    "SYNC-D4",
                    0,
                    "magazine capacity outside its class's range",
                ));
            }
            for (head, len, full, what) in [
                (
                    l.full,
                    l.full_len,
                    true,
                    "magazine on the full list is not full",
                ),
                (
                    l.empty,
                    l.empty_len,
                    false,
                    "magazine on the empty list is not empty",
                ),
            ] {
                let mut n = 0;
                let mut at = head;
                while let Some(m) = at {
                    n += 1;
                    if n > len {
                        return Err(Violation::new(
                            "SYNC-D2",
                            m.as_ptr() as usize,
                            "list longer than its count",
                        ));
                    }
                    // SAFETY: the list owns `m` (SYNC-M2) and is locked.
                    let want = if full { unsafe { mag::cap(m) } } else { 0 };
                    // SAFETY: as above.
                    if unsafe { mag::count(m) } != want || unsafe { mag::cap(m) } > ROUNDS {
                        return Err(Violation::new("SYNC-D1", m.as_ptr() as usize, what));
                    }
                    // SAFETY: as above.
                    at = unsafe { (*m.as_ptr()).next };
                }
                if n != len || len > MAX_FULL.max(MAX_EMPTY) {
                    return Err(Violation::new(
                        "SYNC-D2",
                        0,
                        "list count does not match its length",
                    ));
                }
            }
            // Distinct rounds across the class's full magazines.
            let mut a = l.full;
            while let Some(ma) = a {
                // SAFETY: the list owns its magazines and is locked for the
                // whole walk.
                let ra = unsafe { mag::rounds(ma) };
                let mut b = Some(ma);
                while let Some(mb) = b {
                    // SAFETY: as above.
                    let rb = unsafe { mag::rounds(mb) };
                    for (i, x) in ra.iter().enumerate() {
                        let from = if mb == ma { i + 1 } else { 0 };
                        if rb[from..].contains(x) {
                            return Err(Violation::new(
                                "SYNC-D3",
                                x.as_ptr() as usize,
                                "block twice in the depot",
                            ));
                        }
                    }
                    // SAFETY: as above.
                    b = unsafe { (*mb.as_ptr()).next };
                }
                // SAFETY: as above.
                a = unsafe { (*ma.as_ptr()).next };
            }
        }
        Ok(())
    }

    // ---------------------------------------------------------------------
    // The exchange, used by racks. Each takes the class lock only for a
    // list operation; the parent is always called without a depot lock.
    // ---------------------------------------------------------------------

    /// A full magazine, now owned by the caller.
    #[inline]
    pub(crate) fn take_full(&self, c: usize) -> Option<Mag> {
        let mut l = self.lock_class(c);
        let l = &mut *l;
        Lists::pop(&mut l.full, &mut l.full_len)
    }

    /// An empty magazine, from the list or freshly allocated from the parent.
    pub(crate) fn take_empty(&self, c: usize) -> Option<Mag> {
        let (popped, cap) = {
            let mut l = self.lock_class(c);
            let l = &mut *l;
            (Lists::pop(&mut l.empty, &mut l.empty_len), l.rounds(c))
        };
        popped.or_else(|| {
            let mem = self.parent.allocate(Magazine::layout(cap)).ok()?;
            // SAFETY: fresh memory of `Magazine::layout(cap)` from the parent.
            Some(unsafe { Magazine::init(mem.cast(), cap) })
        })
    }

    /// Takes a full magazine owned by the caller.
    pub(crate) fn put_full(&self, c: usize, m: Mag) {
        {
            let mut l = self.lock_class(c);
            if l.full_len < MAX_FULL {
                let l = &mut *l;
                // SAFETY: the caller hands its magazine over (SYNC-M2); it is full
                // (caller), so SYNC-D1 holds.
                unsafe { Lists::push(&mut l.full, &mut l.full_len, m) };
                return;
            }
        }
        // SAFETY: the caller owns `m`.
        unsafe { self.drain(c, m) };
        self.put_empty(c, m);
    }

    /// Takes an empty magazine owned by the caller.
    pub(crate) fn put_empty(&self, c: usize, m: Mag) {
        {
            let mut l = self.lock_class(c);
            if l.empty_len < MAX_EMPTY {
                let l = &mut *l;
                // SAFETY: the caller hands its empty magazine over (SYNC-M2, SYNC-D1).
                unsafe { Lists::push(&mut l.empty, &mut l.empty_len, m) };
                return;
            }
        }
        // SAFETY: the caller owns `m`, which is empty.
        unsafe { self.free_magazine(m) }
    }

    /// Takes any magazine owned by the caller: full ones onto the full
    /// list, the rounds of partial ones back to the parent.
    pub(crate) fn put(&self, c: usize, m: Mag) {
        // SAFETY: the caller owns `m`.
        if unsafe { mag::is_full(m) } {
            self.put_full(c, m);
        } else {
            // SAFETY: the caller owns `m`.
            unsafe { self.drain(c, m) };
            self.put_empty(c, m);
        }
    }

    /// Whether `block` is a round of one of the full magazines of class `c`
    /// held here: the depot's part of a checked free's double-free search.
    ///
    /// # Time complexity
    /// O([`MAX_FULL`] × [`ROUNDS`]), under the class lock.
    pub(crate) fn holds(&self, c: usize, block: NonNull<u8>) -> bool {
        let l = self.classes[c].lock();
        let mut at = l.full;
        while let Some(m) = at {
            // SAFETY: magazines on the list are owned by it (SYNC-M2), and the
            // list is under its lock (held): nobody changes `m` meanwhile.
            unsafe {
                if mag::contains(m, block) {
                    return true;
                }
                at = (*m.as_ptr()).next;
            }
        }
        false
    }

    /// A block of class `c` straight from the parent.
    pub(crate) fn alloc_block(&self, c: usize) -> Option<NonNull<u8>> {
        self.parent
            .allocate(class_layout(c))
            .ok()
            .map(NonNull::cast)
    }

    /// Blocks of class `c` straight from the parent, as many as fit `out`
    /// (or the parent gives), in one batch ([`Batch`]: one lock for a
    /// `Locked` parent); returns how many.
    #[inline]
    pub(crate) fn alloc_blocks(&self, c: usize, out: &mut [NonNull<u8>]) -> usize {
        self.parent.allocate_batch(class_layout(c), out)
    }

    /// # Safety
    /// `block` is a live block of class `c` from [`alloc_block`](Self::alloc_block).
    pub(crate) unsafe fn free_block(&self, c: usize, block: NonNull<u8>) {
        // SAFETY: allocated from the parent with this layout (caller).
        unsafe { self.parent.deallocate(block, class_layout(c)) }
    }

    /// Returns every round of `m` to the parent, leaving it empty.
    ///
    /// # Safety
    /// The caller owns `m`, a magazine of class `c`.
    unsafe fn drain(&self, c: usize, m: Mag) {
        // SAFETY: owned by the caller (SYNC-M2); each round is a distinct free
        // block of class `c` from the parent (SYNC-M1), handed back in one
        // batch, after which the magazine holds none.
        unsafe {
            self.parent
                .deallocate_batch(mag::rounds(m), class_layout(c));
            mag::clear(m);
        }
    }

    /// # Safety
    /// The caller owns `m`; it is empty and not used again.
    unsafe fn free_magazine(&self, m: Mag) {
        // SAFETY: magazines are allocated from the parent with the layout
        // of their capacity (`take_empty`), which never changes.
        unsafe {
            self.parent
                .deallocate(m.cast(), Magazine::layout(mag::cap(m)))
        }
    }
}

impl<P: Batch> Drop for Depot<P> {
    /// Everything cached goes back to the parent.
    fn drop(&mut self) {
        self.reap();
    }
}

impl<P: Batch> core::fmt::Debug for Depot<P> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Depot").finish_non_exhaustive()
    }
}

impl<P: Batch + freespace_core::Check> freespace_core::Check for Depot<P> {
    /// SYNC-D1–D3 ([`check`](Depot::check)), then the parent's whole stack.
    fn check_all(&self) -> Result<(), Violation> {
        self.check()?;
        self.parent.check_all()
    }
}

/// Gives every magazine in the depot back to the parent
/// ([`reap`](Depot::reap)), then trims the parent. Threads' racks keep
/// theirs (each thread flushes its own).
impl<P: Batch + freespace_core::Trim> freespace_core::Trim for Depot<P> {
    fn trim(&self) -> usize {
        self.reap();
        self.parent.trim()
    }
}
