//! [`FreeSet`]: the free chunks of a heap, as a doubly linked list in
//! address order.
//!
//! ```text
//!  head ──► [free A] ◄──► [free B] ◄──► [free C] ──► null
//!           addr A   <    addr B   <    addr C
//! ```
//!
//! The links live inside the free chunks themselves (words 1 and 2, see
//! [`crate::chunk`]), so the set costs no memory beyond its head. Address
//! order is what first fit needs and what makes the plain scans of every
//! policy choose deterministically; it costs a walk on insertion when the
//! freed chunk has no free neighbour (its position cannot be read off the
//! boundary tags). Removal and replacement are O(1).

use crate::chunk::Chunk;
use freespace_core::Corruption;

const NEXT: usize = 1;
const PREV: usize = 2;

/// The set of free chunks, doubly linked in increasing address order.
///
/// # Invariants
///
/// - FL-L1: every member is a free chunk (`ALLOCATED` clear) in memory the
///   owning heap manages, readable while the set is.
/// - FL-L2: `head` is the lowest member; following `next` from it visits every
///   member exactly once in strictly increasing address order and ends in
///   null; for every member `c`, `c.next.prev == c` and `c.prev.next == c`
///   (`head.prev` is null). A set whose owner inserts only at the head
///   ([`insert_after(None, ..)`](Self::insert_after) and
///   [`remove_unordered`](Self::remove_unordered), a
///   [`Scan`](crate::Scan) with `RECENT_FIRST`) keeps the links but not the
///   address order.
/// - FL-L3: `len` is the number of members.
///
/// The owning heap checks these with the rest of its invariants; the set
/// checks FL-L2 locally when a chunk is unlinked ([`remove`](Self::remove)).
#[derive(Debug)]
pub struct FreeSet {
    head: Option<Chunk>,
    len: usize,
}

/// One member of a [`FreeSet`], as its iterator yields it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Free {
    /// The free chunk.
    pub chunk: Chunk,
    /// Its size in bytes, header included.
    pub size: usize,
}

impl FreeSet {
    /// An empty set.
    ///
    /// ```
    /// let set = freespace_freelist::FreeSet::new();
    /// assert!(set.is_empty() && set.first().is_none());
    /// ```
    pub const fn new() -> Self {
        Self { head: None, len: 0 }
    }

    /// Number of free chunks.
    ///
    /// ```
    /// assert_eq!(freespace_freelist::FreeSet::new().len(), 0);
    /// ```
    pub const fn len(&self) -> usize {
        self.len
    }

    /// Whether the set is empty.
    ///
    /// ```
    /// assert!(freespace_freelist::FreeSet::new().is_empty());
    /// ```
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The lowest free chunk.
    ///
    /// ```
    /// assert_eq!(freespace_freelist::FreeSet::new().first(), None);
    /// ```
    pub const fn first(&self) -> Option<Chunk> {
        self.head
    }

    /// The members in address order.
    ///
    /// ```
    /// assert_eq!(freespace_freelist::FreeSet::new().iter().count(), 0);
    /// ```
    pub fn iter(&self) -> Iter<'_> {
        Iter {
            _set: self,
            at: self.head,
        }
    }

    /// The members from `start` (included) to the end, in address order.
    ///
    /// # Safety
    ///
    /// `start` is a member of the set.
    ///
    /// ```
    /// let set = freespace_freelist::FreeSet::new();
    /// if let Some(c) = set.first() {
    ///     // SAFETY: `first` is a member.
    ///     assert!(unsafe { set.iter_from(c) }.count() >= 1);
    /// }
    /// ```
    pub unsafe fn iter_from(&self, start: Chunk) -> Iter<'_> {
        Iter {
            _set: self,
            at: Some(start),
        }
    }

    /// The member after `c`.
    ///
    /// # Safety
    ///
    /// `c` is a member of the set.
    #[inline]
    pub unsafe fn next(&self, c: Chunk) -> Option<Chunk> {
        // SAFETY: `c` is a member, so a free chunk with links (FL-L1).
        unsafe { c.link(NEXT) }
    }

    /// The member before `c`.
    ///
    /// # Safety
    ///
    /// `c` is a member of the set.
    #[inline]
    pub unsafe fn prev(&self, c: Chunk) -> Option<Chunk> {
        // SAFETY: `c` is a member, so a free chunk with links (FL-L1).
        unsafe { c.link(PREV) }
    }

    /// Links the free chunk `c` in at its address-ordered position, found by
    /// walking from the head, and returns the member now before it.
    ///
    /// # Time complexity
    ///
    /// O(number of members below `c`).
    ///
    /// # Safety
    ///
    /// `c` is a free chunk (word 0 and footer written) that is not a member,
    /// in memory the heap owns and no user holds.
    pub unsafe fn insert(&mut self, c: Chunk) -> Option<Chunk> {
        let mut before = None;
        let mut at = self.head;
        while let Some(x) = at {
            if x.addr() > c.addr() {
                break;
            }
            before = Some(x);
            // SAFETY: `x` is a member (FL-L2).
            at = unsafe { self.next(x) };
        }
        // SAFETY: `before` is a member or None and is the last member below
        // `c`, so inserting after it keeps FL-L2; `c` is not a member (caller).
        unsafe { self.insert_after(before, c) };
        before
    }

    /// Links `c` in right after `before` (at the head when `None`).
    ///
    /// # Safety
    ///
    /// As [`insert`](Self::insert), and `before` is a member (or `None`)
    /// such that no member lies between it and `c` in address order.
    pub unsafe fn insert_after(&mut self, before: Option<Chunk>, c: Chunk) {
        // SAFETY: `before` and its successor are members; `c` is a free chunk
        // no user holds (caller contract).
        unsafe {
            let after = match before {
                Some(b) => self.next(b),
                None => self.head,
            };
            c.set_link(NEXT, after);
            c.set_link(PREV, before);
            match before {
                Some(b) => b.set_link(NEXT, Some(c)),
                None => self.head = Some(c),
            }
            if let Some(a) = after {
                a.set_link(PREV, Some(c));
            }
        }
        self.len += 1;
    }

    /// Unlinks member `c` and returns its successor, after checking that its
    /// neighbours point back at it (the "safe unlinking" check that turns a
    /// corrupted link into a report instead of a write through it).
    ///
    /// # Safety
    ///
    /// `c` is a member of the set.
    ///
    /// # Errors
    ///
    /// [`Corruption::CorruptFreeList`] when a link of `c` or a neighbour's link
    /// back to it is damaged; nothing is changed then.
    pub unsafe fn remove(&mut self, c: Chunk) -> Result<Option<Chunk>, Corruption> {
        // SAFETY: caller contract.
        unsafe { self.unlink(c, true) }
    }

    /// Like [`remove`](Self::remove), for a list kept in another order
    /// than by address (the recency order of a [`Scan`](crate::Scan) with
    /// [`RECENT_FIRST`](crate::Scan::RECENT_FIRST)): the neighbours' links
    /// back to `c` are checked, their addresses are not compared with it.
    ///
    /// # Safety
    ///
    /// `c` is a member of the set.
    ///
    /// # Errors
    ///
    /// As [`remove`](Self::remove).
    pub unsafe fn remove_unordered(&mut self, c: Chunk) -> Result<Option<Chunk>, Corruption> {
        // SAFETY: caller contract.
        unsafe { self.unlink(c, false) }
    }

    /// [`remove`](Self::remove), checking the address order of the
    /// neighbours when `ordered`.
    ///
    /// # Safety
    ///
    /// `c` is a member of the set.
    unsafe fn unlink(&mut self, c: Chunk, ordered: bool) -> Result<Option<Chunk>, Corruption> {
        let bad = Corruption::CorruptFreeList { addr: c.addr() };
        // SAFETY: `c` is a member; its neighbours, if the links are intact,
        // are members too, which is what the comparisons check before any
        // write.
        unsafe {
            let next = self.next(c);
            let prev = self.prev(c);
            let prev_ok = match prev {
                Some(p) => (!ordered || p.addr() < c.addr()) && self.next(p) == Some(c),
                None => self.head == Some(c),
            };
            let next_ok = match next {
                Some(n) => (!ordered || n.addr() > c.addr()) && self.prev(n) == Some(c),
                None => true,
            };
            if !(prev_ok && next_ok) {
                return Err(bad);
            }
            match prev {
                Some(p) => p.set_link(NEXT, next),
                None => self.head = next,
            }
            if let Some(n) = next {
                n.set_link(PREV, prev);
            }
            self.len -= 1;
            Ok(next)
        }
    }

    /// Puts the free chunk `new` in member `old`'s place. `new` must sort in
    /// the same position: no other member lies between them.
    ///
    /// # Safety
    ///
    /// `old` is a member; `new` is a free chunk, not a member, no user holds
    /// it, and no member lies strictly between `old` and `new` in address
    /// order. `old`'s header may be reused by `new` (same address).
    pub unsafe fn replace(&mut self, old: Chunk, new: Chunk) {
        // SAFETY: caller contract; the links are read before `new`'s
        // (possibly the same memory) are written.
        unsafe {
            let next = self.next(old);
            let prev = self.prev(old);
            new.set_link(NEXT, next);
            new.set_link(PREV, prev);
            match prev {
                Some(p) => p.set_link(NEXT, Some(new)),
                None => self.head = Some(new),
            }
            if let Some(n) = next {
                n.set_link(PREV, Some(new));
            }
        }
    }
}

impl Default for FreeSet {
    fn default() -> Self {
        Self::new()
    }
}

/// Iterator over a [`FreeSet`] in address order.
///
/// ```
/// let set = freespace_freelist::FreeSet::new();
/// let total: usize = set.iter().map(|f| f.size).sum();
/// assert_eq!(total, 0);
/// ```
#[derive(Debug)]
pub struct Iter<'a> {
    _set: &'a FreeSet,
    at: Option<Chunk>,
}

impl Iterator for Iter<'_> {
    type Item = Free;

    #[inline]
    fn next(&mut self) -> Option<Free> {
        let chunk = self.at?;
        // SAFETY: `chunk` is a member (it is the head, the `start` the caller
        // vouched for, or reached by `next` links, FL-L2), so a readable free
        // chunk (FL-L1).
        unsafe {
            self.at = chunk.link(NEXT);
            Some(Free {
                chunk,
                size: chunk.size(),
            })
        }
    }
}
