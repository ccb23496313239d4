//! The plain scans: a [`Scanned`] policy keeps its free chunks in the
//! address-ordered [`FreeSet`] and picks one by a [`Scan`] rule that walks
//! it, the textbook way. Each policy crate keeps its scan as the
//! reference its index is tested against (same choices, op for op).

use freespace_core::{Corruption, Violation};

use crate::chunk::{Chunk, Flags};
use crate::fit::{Fit, Request};
use crate::set::FreeSet;

/// A rule that picks a free chunk by walking the address-ordered
/// [`FreeSet`], and may keep state (next fit's rover) that follows the
/// set's changes.
///
/// # Safety
///
/// - FL-R1: [`choose`](Scan::choose) returns `None` or a member `c` of `set`
///   with `req.fits(c, size of c)`;
/// - FL-R2: the rule's state only names members of the set (or nothing);
/// - FL-R3: no method panics.
///
/// # Example
///
/// ```
/// use freespace_freelist::{Chunk, FreeSet, Request, Scan};
/// struct Lowest;
/// // SAFETY: returns a fitting member or nothing, keeps no state, cannot panic.
/// unsafe impl Scan for Lowest {
///     const INIT: Self = Lowest;
///     const NAME: &'static str = "lowest";
///     fn choose(&mut self, set: &FreeSet, req: &Request) -> Option<Chunk> {
///         set.iter().find(|f| req.fits(f.chunk, f.size)).map(|f| f.chunk)
///     }
/// }
/// let r = Request::new(core::alloc::Layout::new::<u8>()).unwrap();
/// assert!(Lowest.choose(&FreeSet::new(), &r).is_none());
/// ```
pub unsafe trait Scan {
    /// The rule's state in a new heap.
    const INIT: Self;

    /// The policy's name.
    const NAME: &'static str;

    /// Whether the set is kept most recently inserted first instead of in
    /// address order: every `insert`, `replace` and `resize` puts its chunk
    /// at the head of the list. A rule that breaks ties by list order then
    /// breaks them as [`Bins`](crate::bins::Bins) do (most recent first).
    const RECENT_FIRST: bool = false;

    /// Picks the free chunk that serves `req`, or `None` if none fits.
    fn choose(&mut self, set: &FreeSet, req: &Request) -> Option<Chunk>;

    /// `chunk` was just taken out of `set`; `successor` is the member that
    /// followed it (now in its place in address order), if any.
    #[inline]
    fn removed(&mut self, set: &FreeSet, chunk: Chunk, successor: Option<Chunk>) {
        let _ = (set, chunk, successor);
    }

    /// Member `old` was just replaced by `new` at the same list position.
    #[inline]
    fn replaced(&mut self, set: &FreeSet, old: Chunk, new: Chunk) {
        let _ = (set, old, new);
    }

    /// Checks the rule's own invariants against `set`.
    ///
    /// # Errors
    ///
    /// The first [`Violation`] found.
    fn check(&self, set: &FreeSet) -> Result<(), Violation> {
        let _ = set;
        Ok(())
    }
}

/// A [`Fit`] that keeps the free chunks in an address-ordered [`FreeSet`]
/// and chooses by the plain scan `R`: O(n) per search, and O(n) per
/// insertion of a chunk with no free neighbour. The reference the indexed
/// policies must agree with.
///
/// # Invariants
///
/// - The set's FL-L1–L3 ([`FreeSet`]), and the rule's own.
///
/// ```
/// use freespace_freelist::{Chunk, Fit, FreeSet, Request, Scan, Scanned};
/// struct Any;
/// // SAFETY: returns a fitting member or nothing, no state, no panic.
/// unsafe impl Scan for Any {
///     const INIT: Self = Any;
///     const NAME: &'static str = "any";
///     fn choose(&mut self, set: &FreeSet, req: &Request) -> Option<Chunk> {
///         set.iter().find(|f| req.fits(f.chunk, f.size)).map(|f| f.chunk)
///     }
/// }
/// let policy = Scanned::<Any>::INIT;
/// assert_eq!(policy.len(), 0);
/// assert!(policy.check().is_ok());
/// ```
#[derive(Debug)]
pub struct Scanned<R> {
    set: FreeSet,
    rule: R,
}

impl<R> Scanned<R> {
    /// The address-ordered set.
    ///
    /// ```
    /// # use freespace_freelist::{Chunk, Fit, FreeSet, Request, Scan, Scanned};
    /// # struct Any;
    /// # unsafe impl Scan for Any {
    /// #     const INIT: Self = Any;
    /// #     const NAME: &'static str = "any";
    /// #     fn choose(&mut self, _: &FreeSet, _: &Request) -> Option<Chunk> { None }
    /// # }
    /// assert!(Scanned::<Any>::INIT.set().is_empty());
    /// ```
    pub fn set(&self) -> &FreeSet {
        &self.set
    }

    /// The rule and its state.
    ///
    /// ```
    /// # use freespace_freelist::{Chunk, Fit, FreeSet, Request, Scan, Scanned};
    /// # struct Any;
    /// # unsafe impl Scan for Any {
    /// #     const INIT: Self = Any;
    /// #     const NAME: &'static str = "any";
    /// #     fn choose(&mut self, _: &FreeSet, _: &Request) -> Option<Chunk> { None }
    /// # }
    /// let _rule: &Any = Scanned::<Any>::INIT.rule();
    /// ```
    pub fn rule(&self) -> &R {
        &self.rule
    }
}

// SAFETY: the members are exactly the set's (FL-P2, FL-P4: `len` and `contains`
// read the set); `choose` is the rule's, which returns fitting members
// (FL-R1 gives FL-P1); the set writes only links (words 1 and 2); nothing panics
// (FL-R3, and the set's methods do not).
unsafe impl<R: Scan> Fit for Scanned<R> {
    const INIT: Self = Scanned {
        set: FreeSet::new(),
        rule: R::INIT,
    };
    const NAME: &'static str = R::NAME;

    #[inline]
    fn choose(&mut self, req: &Request) -> Option<Chunk> {
        self.rule.choose(&self.set, req)
    }

    unsafe fn insert(&mut self, chunk: Chunk) -> Result<(), Corruption> {
        // SAFETY: caller contract is the set's.
        unsafe {
            if R::RECENT_FIRST {
                self.set.insert_after(None, chunk);
            } else {
                self.set.insert(chunk);
            }
        }
        Ok(())
    }

    unsafe fn remove(&mut self, chunk: Chunk) -> Result<(), Corruption> {
        // SAFETY: caller contract: `chunk` is a member.
        let successor = unsafe {
            if R::RECENT_FIRST {
                self.set.remove_unordered(chunk)
            } else {
                self.set.remove(chunk)
            }
        }?;
        self.rule.removed(&self.set, chunk, successor);
        Ok(())
    }

    unsafe fn replace(
        &mut self,
        old: Chunk,
        new: Chunk,
        _new_size: usize,
    ) -> Result<(), Corruption> {
        if R::RECENT_FIRST {
            // SAFETY: caller contract: `old` is a member, `new` is not; `old`
            // is unlinked (its links read) before `new`'s are written.
            unsafe {
                let successor = self.set.remove_unordered(old)?;
                self.rule.removed(&self.set, old, successor);
                self.set.insert_after(None, new);
            }
            return Ok(());
        }
        // SAFETY: caller contract is the set's (same position, links read
        // before written).
        unsafe { self.set.replace(old, new) };
        self.rule.replaced(&self.set, old, new);
        Ok(())
    }

    unsafe fn resize(&mut self, chunk: Chunk, _old_size: usize) -> Result<(), Corruption> {
        if R::RECENT_FIRST {
            // SAFETY: caller contract: `chunk` is a member; it goes back in
            // at the head.
            unsafe {
                let successor = self.set.remove_unordered(chunk)?;
                self.rule.removed(&self.set, chunk, successor);
                self.set.insert_after(None, chunk);
            }
        }
        Ok(())
    }

    fn len(&self) -> usize {
        self.set.len()
    }

    unsafe fn contains(&self, chunk: Chunk) -> bool {
        self.set.iter().any(|f| f.chunk == chunk)
    }

    fn check(&self) -> Result<(), Violation> {
        let mut prev: Option<Chunk> = None;
        let mut count = 0;
        for f in self.set.iter() {
            let c = f.chunk;
            // SAFETY: members are readable free chunks (FL-L1).
            let (back, free) = unsafe { (self.set.prev(c), !c.flags().contains(Flags::ALLOCATED)) };
            let out_of_order = !R::RECENT_FIRST && prev.is_some_and(|p| p.addr() >= c.addr());
            if out_of_order || back != prev {
                return Err(Violation::new(
                    "FL-L2",
                    c.addr(),
                    "free list out of order or back link broken",
                ));
            }
            if !free {
                return Err(Violation::new(
                    "FL-L1",
                    c.addr(),
                    "free list member is allocated",
                ));
            }
            prev = Some(c);
            count += 1;
        }
        if count != self.set.len() {
            return Err(Violation::new("FL-L3", 0, "free list length is wrong"));
        }
        self.rule.check(&self.set)
    }
}
