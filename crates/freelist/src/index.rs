//! [`AddressIndex`], the index first and next fit keep their free chunks
//! in, built on [`Tree`]: address order. Chunks larger than [`MIN_CHUNK`]
//! sit in a tree whose nodes know their subtree's largest size, so "the
//! lowest address at or after `a` that is at least `n` bytes" is one
//! descent; chunks of exactly [`MIN_CHUNK`] (no room for that word) sit in
//! a plain address tree beside it, and only a request of [`MIN_CHUNK`]
//! looks there. (Best and worst fit keep theirs in
//! [`Binned`](crate::bins::Binned).)
//!
//! ```text
//!  free chunks (address: size)  0x100:48  0x300:32  0x400:96  0x700:32  0x900:512
//!
//!  AddressIndex: big (ByAddressMax)          tiny (ByAddress)
//!        [0x400 96 | max 512]                   [0x300 32]
//!         /               \                              \
//!  [0x100 48 | 48]   [0x900 512 | 512]                [0x700 32]
//! ```
//!
//! A request whose alignment is above [`GRANULE`] may not fit a chunk
//! that is large enough (the padding depends on the address): the index
//! then walks the candidates in address order until one fits, which is
//! exactly the chunk the plain scan finds.

use freespace_core::{Corruption, Violation};

use crate::chunk::{Chunk, GRANULE, MIN_CHUNK};
use crate::tree::{ByAddress, ByAddressMax, Key, Tree};

/// The free chunks in address order, for first and next fit.
///
/// The highest-addressed free chunk — in a heap that grows at its end, the
/// one before the last fencepost, from which new space is carved and into
/// which the last block merges when freed — is kept out of the trees in
/// `top`: taking from it, giving back to it and finding it when nothing
/// below fits are O(1), however many smaller chunks the trees hold. (The
/// "wilderness" of Korn and Vo; the choice stays exactly first fit's,
/// since `top` is above every tree member.)
///
/// # Invariants
///
/// - FL-A1: `tiny` holds exactly the tree members of [`MIN_CHUNK`] bytes,
///   `big` the larger ones; both are valid trees (FL-T1–T5).
/// - FL-A2: `top` is `None` only when both trees are empty; otherwise it is a
///   member in neither tree, with a higher address than every tree member.
///
/// ```
/// use freespace_freelist::index::AddressIndex;
/// let index = AddressIndex::new();
/// assert!(index.lowest_at_least(0, 32).is_none());
/// assert!(index.check().is_ok());
/// ```
#[derive(Debug, Default)]
pub struct AddressIndex {
    tiny: Tree<ByAddress>,
    big: Tree<ByAddressMax>,
    /// The highest-addressed member (FL-A2).
    top: Option<Chunk>,
}

#[inline]
fn is_tiny(size: usize) -> bool {
    size <= MIN_CHUNK
}

impl AddressIndex {
    /// An empty index.
    ///
    /// ```
    /// assert_eq!(freespace_freelist::index::AddressIndex::new().len(), 0);
    /// ```
    pub const fn new() -> Self {
        Self {
            tiny: Tree::new(),
            big: Tree::new(),
            top: None,
        }
    }

    /// Number of free chunks.
    ///
    /// ```
    /// assert!(freespace_freelist::index::AddressIndex::new().len() == 0);
    /// ```
    pub const fn len(&self) -> usize {
        self.tiny.len() + self.big.len() + if self.top.is_some() { 1 } else { 0 }
    }

    /// Whether there are no free chunks.
    ///
    /// ```
    /// assert!(freespace_freelist::index::AddressIndex::new().is_empty());
    /// ```
    pub const fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds the free chunk `c` (its size word written).
    ///
    /// # Safety
    ///
    /// As [`Tree::insert`] with `c`'s size.
    ///
    /// # Errors
    ///
    /// As [`Tree::insert`].
    ///
    /// # Example
    ///
    /// A 96-byte chunk, split to a 32-byte remainder (it moves to the
    /// tiny tree), grown back and taken out:
    ///
    /// ```
    /// use core::ptr::NonNull;
    /// use freespace_freelist::index::AddressIndex;
    /// use freespace_freelist::{Chunk, Flags};
    /// let mut memory = [0u128; 6];
    /// let c = Chunk::new(NonNull::from(&mut memory).cast());
    /// let mut index = AddressIndex::new();
    /// // SAFETY: the chunks lie in `memory`, ours alone.
    /// unsafe {
    ///     c.write_free(96, Flags::empty());
    ///     index.insert(c).unwrap();
    ///     assert_eq!(index.lowest_at_least(0, 32), Some(c));
    ///     let rest = c.forward(64);
    ///     index.replace(c, rest, 32).unwrap();
    ///     rest.write_free(32, Flags::empty());
    ///     assert_eq!(index.lowest_at_least(0, 32), Some(rest));
    ///     index.check().unwrap();
    ///     index.remove(rest).unwrap();
    /// }
    /// assert!(index.is_empty());
    /// ```
    #[inline]
    pub unsafe fn insert(&mut self, c: Chunk) -> Result<(), Corruption> {
        // SAFETY: caller contract; `top` is a member (FL-A2), its size word
        // intact.
        unsafe {
            match self.top {
                None => {
                    self.top = Some(c);
                    Ok(())
                }
                Some(t) if t == c => Err(Corruption::CorruptFreeList { addr: c.addr() }),
                Some(t) if c.addr() > t.addr() => {
                    // `c` is the new top; the old one joins the trees.
                    self.tree_insert(t, t.size())?;
                    self.top = Some(c);
                    Ok(())
                }
                Some(_) => self.tree_insert(c, c.size()),
            }
        }
    }

    /// Adds `c` of `size` bytes to its tree.
    ///
    /// # Safety
    ///
    /// As [`Tree::insert`].
    #[inline]
    unsafe fn tree_insert(&mut self, c: Chunk, size: usize) -> Result<(), Corruption> {
        // SAFETY: caller contract.
        unsafe {
            if is_tiny(size) {
                self.tiny.insert(c, size)
            } else {
                self.big.insert(c, size)
            }
        }
    }

    /// Takes member `c` (its size word intact) out.
    ///
    /// # Safety
    ///
    /// As [`Tree::remove`] with `c`'s size.
    ///
    /// # Errors
    ///
    /// As [`Tree::remove`].
    #[inline]
    pub unsafe fn remove(&mut self, c: Chunk) -> Result<(), Corruption> {
        // SAFETY: caller contract; tree members are readable (FL-T1).
        unsafe {
            if self.top == Some(c) {
                // The highest tree member becomes the top (FL-A2).
                let last = match (self.tiny.last(), self.big.last()) {
                    (Some(t), Some(b)) => Some(if t.addr() > b.addr() { t } else { b }),
                    (t, b) => t.or(b),
                };
                if let Some(l) = last {
                    self.tree_remove(l, l.size())?;
                }
                self.top = last;
                return Ok(());
            }
            self.tree_remove(c, c.size())
        }
    }

    /// Takes `c` of `size` bytes out of its tree.
    ///
    /// # Safety
    ///
    /// As [`Tree::remove`].
    #[inline]
    unsafe fn tree_remove(&mut self, c: Chunk, size: usize) -> Result<(), Corruption> {
        // SAFETY: caller contract.
        unsafe {
            if is_tiny(size) {
                self.tiny.remove(c, size)
            } else {
                self.big.remove(c, size)
            }
        }
    }

    /// Puts `new` (of `new_size` bytes, size word not yet written) in
    /// member `old`'s place (size word intact); no member lies between
    /// them.
    ///
    /// # Safety
    ///
    /// As [`Tree::replace`].
    ///
    /// # Errors
    ///
    /// As [`Tree::remove`].
    #[inline(always)]
    pub unsafe fn replace(
        &mut self,
        old: Chunk,
        new: Chunk,
        new_size: usize,
    ) -> Result<(), Corruption> {
        if self.top == Some(old) {
            // Nothing lies between `old` and `new`, so `new` is above every
            // tree member too (FL-A2).
            self.top = Some(new);
            return Ok(());
        }
        // SAFETY: caller contract.
        unsafe { self.replace_in_trees(old, new, new_size) }
    }

    /// [`replace`](Self::replace) of a tree member (not the top): out of
    /// line, so the top's case inlines into the heap as a compare and a
    /// store.
    ///
    /// # Safety
    ///
    /// As [`replace`](Self::replace); `old` is not the top.
    #[inline(never)]
    unsafe fn replace_in_trees(
        &mut self,
        old: Chunk,
        new: Chunk,
        new_size: usize,
    ) -> Result<(), Corruption> {
        // SAFETY: caller contract.
        unsafe {
            let old_size = old.size();
            match (is_tiny(old_size), is_tiny(new_size)) {
                (true, true) => self.tiny.replace(old, old_size, new, new_size),
                (false, false) => self.big.replace(old, old_size, new, new_size),
                (true, false) => {
                    self.tiny.remove(old, old_size)?;
                    self.big.insert(new, new_size)
                }
                (false, true) => {
                    self.big.remove(old, old_size)?;
                    self.tiny.insert(new, new_size)
                }
            }
        }
    }

    /// Member `c` changed size from `old_size` (its size word already
    /// says the new one).
    ///
    /// # Safety
    ///
    /// As [`Tree::resize`].
    ///
    /// # Errors
    ///
    /// As [`Tree::remove`].
    #[inline]
    pub unsafe fn resize(&mut self, c: Chunk, old_size: usize) -> Result<(), Corruption> {
        if self.top == Some(c) {
            // The top is in no tree: no key or subtree maximum to update.
            return Ok(());
        }
        // SAFETY: caller contract.
        unsafe {
            let new_size = c.size();
            match (is_tiny(old_size), is_tiny(new_size)) {
                (true, true) => Ok(()),
                (false, false) => self.big.resize(c, old_size, new_size),
                (true, false) => {
                    self.tiny.remove(c, old_size)?;
                    self.big.insert(c, new_size)
                }
                (false, true) => {
                    self.big.remove(c, old_size)?;
                    self.tiny.insert(c, new_size)
                }
            }
        }
    }

    /// Whether `c` is a member.
    ///
    /// # Safety
    ///
    /// `c`'s size word is readable.
    pub unsafe fn contains(&self, c: Chunk) -> bool {
        if self.top == Some(c) {
            return true;
        }
        // SAFETY: caller contract.
        let size = unsafe { c.size() };
        if is_tiny(size) {
            self.tiny.contains(c, size)
        } else {
            self.big.contains(c, size)
        }
    }

    /// The lowest-addressed member at address `from` or above of at least
    /// `need` bytes: the query first and next fit are built on (their
    /// crates hold the searches).
    ///
    /// # Time complexity
    ///
    /// O(log n): one descent of the large chunks' tree, which prunes every
    /// subtree whose largest size (word 3) is below `need`, one of the
    /// 32-byte chunks' tree when `need` is 32 or less, and a look at the
    /// top chunk when neither has one.
    ///
    /// ```
    /// use freespace_freelist::index::AddressIndex;
    /// assert!(AddressIndex::new().lowest_at_least(0x1000, 64).is_none());
    /// ```
    #[inline]
    pub fn lowest_at_least(&self, from: usize, need: usize) -> Option<Chunk> {
        let big = self.big.first_at_least(Key {
            addr: from,
            size: need,
        });
        let tiny = if is_tiny(need) {
            self.tiny.lower_bound(Key {
                addr: from,
                size: 0,
            })
        } else {
            None
        };
        match (big, tiny) {
            (Some(b), Some(t)) => Some(if b.addr() < t.addr() { b } else { t }),
            (None, None) => {
                // Nothing in the trees: the top, if it qualifies (FL-A2: it is
                // above every tree member).
                let t = self.top?;
                // SAFETY: the top is a member, its size word readable.
                (t.addr() >= from && unsafe { t.size() } >= need).then_some(t)
            }
            (b, t) => b.or(t),
        }
    }

    /// The lowest member above `c` (which need not be a member).
    ///
    /// ```
    /// use core::ptr::NonNull;
    /// use freespace_freelist::{index::AddressIndex, Chunk};
    /// let mut x = [0u128; 2];
    /// let c = Chunk::new(NonNull::from(&mut x).cast());
    /// assert!(AddressIndex::new().successor(c).is_none());
    /// ```
    #[inline]
    pub fn successor(&self, c: Chunk) -> Option<Chunk> {
        self.lowest_at_least(c.addr().checked_add(GRANULE)?, 0)
    }

    /// Calls `visit` with every member and its size: the tiny ones in
    /// address order, then the other tree members in address order, then
    /// the top.
    ///
    /// ```
    /// let mut n = 0;
    /// freespace_freelist::index::AddressIndex::new().for_each(&mut |_, _| n += 1);
    /// assert_eq!(n, 0);
    /// ```
    pub fn for_each(&self, visit: &mut dyn FnMut(Chunk, usize)) {
        self.tiny.for_each(visit);
        self.big.for_each(visit);
        if let Some(t) = self.top {
            // SAFETY: the top is a member, its size word readable.
            visit(t, unsafe { t.size() });
        }
    }

    /// Calls `visit` with every member of `min` bytes or more and its
    /// size: the tiny tree only when `min` is a tiny size, the other
    /// tree's subtrees only where their largest size reaches `min`, then
    /// the top.
    ///
    /// ```
    /// let mut n = 0;
    /// freespace_freelist::index::AddressIndex::new().for_each_at_least(4096, &mut |_, _| n += 1);
    /// assert_eq!(n, 0);
    /// ```
    pub fn for_each_at_least(&self, min: usize, visit: &mut dyn FnMut(Chunk, usize)) {
        if is_tiny(min) {
            self.tiny.for_each(visit);
        }
        self.big.for_each_at_least(min, visit);
        if let Some(t) = self.top {
            // SAFETY: the top is a member, its size word readable.
            let size = unsafe { t.size() };
            if size >= min {
                visit(t, size);
            }
        }
    }

    /// Checks FL-A1, FL-A2 and both trees' FL-T1–T5.
    ///
    /// # Errors
    ///
    /// The first [`Violation`] found.
    ///
    /// ```
    /// assert!(freespace_freelist::index::AddressIndex::new().check().is_ok());
    /// ```
    pub fn check(&self) -> Result<(), Violation> {
        self.tiny.check(&mut |c, size| {
            if size == MIN_CHUNK {
                Ok(())
            } else {
                Err(Violation::new(
                    "FL-A1",
                    c.addr(),
                    "chunk in the tiny tree is not MIN_CHUNK",
                ))
            }
        })?;
        self.big.check(&mut |_, _| Ok(()))?;
        match self.top {
            None if self.tiny.len() + self.big.len() > 0 => {
                Err(Violation::new("FL-A2", 0, "tree members but no top chunk"))
            }
            None => Ok(()),
            Some(t) => {
                let below = |last: Option<Chunk>| last.is_none_or(|l| l.addr() < t.addr());
                if below(self.tiny.last()) && below(self.big.last()) {
                    Ok(())
                } else {
                    Err(Violation::new(
                        "FL-A2",
                        t.addr(),
                        "a tree member is not below the top chunk",
                    ))
                }
            }
        }
    }
}
