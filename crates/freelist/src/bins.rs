//! [`Bins`]: one list per small chunk size, a bitmap of the non-empty
//! ones, and [`Binned`]: bins in front of a [`Tree`] for the larger chunks.
//!
//! ```text
//!  summary 1 0 0 1 0 0 0 0            (bit w set iff bitmap word w is non-zero)
//!  bitmap  0 1 1 0 0 1 ...            (bit i set iff bin i is non-empty)
//!  bin 0   (32 B)    empty
//!  bin 1   (48 B)    head ──► [48 B] ◄──► [48 B] ──► null    most recent first
//!  bin 2   (64 B)    head ──► [64 B] ──► null
//!  ...
//!  bin 1023 (16 400 B)
//!  larger chunks: a Tree in the policy's order (size, then address)
//! ```
//!
//! Every bin holds chunks of exactly one size, so "the smallest free chunk
//! of at least `n` bytes" among them is the head of the first non-empty bin
//! at or above `n`'s: a bit scan of `n`'s bitmap word, or of the summary
//! and the word it points to. Insertion pushes at the head and
//! removal unlinks (the lists are doubly linked through words 1 and 2 of
//! the chunks, like [`FreeSet`](crate::FreeSet)), so both are O(1); within
//! a bin the most recently inserted chunk comes first. That is the order a
//! policy built on [`Binned`] breaks ties in among binned sizes, and what
//! its reference scan must reproduce (see
//! [`Scan::RECENT_FIRST`](crate::Scan::RECENT_FIRST)).
//!
//! # Checking the links
//!
//! A chunk is unlinked only after its neighbours confirm it: the previous
//! chunk's next link (or the bin's head) and the next chunk's previous link
//! must name it (dlmalloc's safe unlinking). Before a neighbour is read,
//! its address must be [`GRANULE`]-aligned and inside the span of every
//! chunk the bins have held; a link that fails is reported as
//! [`Corruption::CorruptFreeList`] and nothing is written.

use freespace_core::{Corruption, Violation};

use crate::chunk::{Chunk, Flags, GRANULE, MIN_CHUNK};
use crate::tree::{Key, Order, Tree};

/// Number of exact-size bins.
pub const BINS: usize = 1024;

/// The largest chunk size with a bin: bins hold [`MIN_CHUNK`],
/// `MIN_CHUNK + GRANULE`, ... up to this.
pub const LARGEST_BINNED: usize = MIN_CHUNK + (BINS - 1) * GRANULE;

/// Bitmap words.
const WORDS: usize = BINS / 64;
// The summary has a bit per bitmap word.
const _: () = assert!(WORDS <= 64 && BINS % 64 == 0);

/// Word of a binned chunk holding the next chunk of its bin.
const NEXT: usize = 1;
/// Word of a binned chunk holding the previous chunk of its bin.
const PREV: usize = 2;

/// The bin of chunks of `size` bytes, or `None` when it is larger than
/// [`LARGEST_BINNED`].
///
/// ```
/// use freespace_freelist::bins::{bin_of, LARGEST_BINNED};
/// assert_eq!(bin_of(32), Some(0));
/// assert_eq!(bin_of(48), Some(1));
/// assert_eq!(bin_of(LARGEST_BINNED + 16), None);
/// ```
#[inline]
pub const fn bin_of(size: usize) -> Option<usize> {
    if size > LARGEST_BINNED {
        None
    } else {
        Some(size.saturating_sub(MIN_CHUNK) / GRANULE)
    }
}

/// The chunk size of bin `bin`.
///
/// ```
/// assert_eq!(freespace_freelist::bins::size_of_bin(2), 64);
/// ```
#[inline]
pub const fn size_of_bin(bin: usize) -> usize {
    MIN_CHUNK + bin * GRANULE
}

/// Free chunks of sizes up to [`LARGEST_BINNED`], one doubly linked list
/// per size, most recently inserted first.
///
/// # Invariants
///
/// - FL-N1 (lists): `heads[i]` starts a list whose next links (word 1) visit
///   each member of bin `i` once and end in null; each member's previous
///   link (word 2) names the member before it, null for the head.
/// - FL-N2 (sizes): every member of bin `i` is a free chunk of
///   [`size_of_bin(i)`](size_of_bin) bytes.
/// - FL-N3 (bitmap): bit `i` of `bitmap` is set iff `heads[i]` is some;
///   bit `w` of `summary` is set iff `bitmap[w]` is not zero.
/// - FL-N4 (count): `len` is the number of members.
/// - FL-N5 (span): every member lies in `lo..=hi`.
///
/// [`check`](Self::check) verifies all five.
///
/// ```
/// use core::ptr::NonNull;
/// use freespace_freelist::bins::Bins;
/// use freespace_freelist::{Chunk, Flags};
///
/// let mut memory = [0u128; 8]; // 128 bytes: free chunks of 48 and 64 (+16 spare)
/// let base = Chunk::new(NonNull::from(&mut memory).cast());
/// let mut bins = Bins::new();
/// // SAFETY: the chunks are disjoint parts of `memory`, ours alone.
/// unsafe {
///     base.write_free(48, Flags::empty());
///     bins.push(base, 48);
///     let c = base.forward(48);
///     c.write_free(64, Flags::empty());
///     bins.push(c, 64);
///     assert_eq!(bins.first_at_or_above(0), Some(base)); // smallest: 48
///     assert_eq!(bins.first_at_or_above(2), Some(c));    // 64 or more
///     bins.remove(base, 48).unwrap();
/// }
/// bins.check().unwrap();
/// assert_eq!(bins.len(), 1);
/// ```
#[derive(Debug)]
pub struct Bins {
    heads: [Option<Chunk>; BINS],
    bitmap: [u64; WORDS],
    /// A bit per non-zero bitmap word: a search that finds nothing in the
    /// request's word goes straight to the next non-empty one.
    summary: u64,
    len: usize,
    lo: usize,
    hi: usize,
}

impl Default for Bins {
    fn default() -> Self {
        Self::new()
    }
}

impl Bins {
    /// No chunks.
    ///
    /// ```
    /// assert!(freespace_freelist::bins::Bins::new().is_empty());
    /// ```
    pub const fn new() -> Self {
        Self {
            heads: [None; BINS],
            bitmap: [0; WORDS],
            summary: 0,
            len: 0,
            lo: usize::MAX,
            hi: 0,
        }
    }

    /// Number of members.
    ///
    /// ```
    /// assert_eq!(freespace_freelist::bins::Bins::new().len(), 0);
    /// ```
    pub const fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no members.
    ///
    /// ```
    /// assert!(freespace_freelist::bins::Bins::new().is_empty());
    /// ```
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The head of bin `bin` (its most recent member).
    ///
    /// ```
    /// assert!(freespace_freelist::bins::Bins::new().head(3).is_none());
    /// ```
    #[inline]
    pub fn head(&self, bin: usize) -> Option<Chunk> {
        self.heads.get(bin).copied().flatten()
    }

    /// The member after `c` in its bin.
    ///
    /// # Safety
    ///
    /// `c` is a member.
    #[inline]
    pub unsafe fn next(&self, c: Chunk) -> Option<Chunk> {
        // SAFETY: a member's word 1 is its next link (FL-N1).
        unsafe { c.link(NEXT) }
    }

    /// The lowest non-empty bin at `bin` or above: a bit scan of the
    /// request's bitmap word, else of the summary and the word it names.
    #[inline(always)]
    pub fn first_bin_at_or_above(&self, bin: usize) -> Option<usize> {
        let word = bin / 64;
        if word >= WORDS {
            return None;
        }
        let bits = self.bitmap[word] & (u64::MAX << (bin % 64));
        if bits != 0 {
            return Some(word * 64 + bits.trailing_zeros() as usize);
        }
        // Words above `word` (`word + 1 <= WORDS <= 64`).
        let higher = self.summary & u64::MAX.checked_shl(word as u32 + 1).unwrap_or(0);
        if higher == 0 {
            return None;
        }
        let word = higher.trailing_zeros() as usize;
        Some(word * 64 + self.bitmap[word].trailing_zeros() as usize)
    }

    /// The highest non-empty bin at `bin` or below.
    #[inline]
    pub fn last_bin_at_or_below(&self, bin: usize) -> Option<usize> {
        let bin = bin.min(BINS - 1);
        let word = bin / 64;
        let bits = self.bitmap[word] & (u64::MAX >> (63 - bin % 64));
        if bits != 0 {
            return Some(word * 64 + 63 - bits.leading_zeros() as usize);
        }
        let lower = self.summary & ((1u64 << word) - 1);
        if lower == 0 {
            return None;
        }
        let word = 63 - lower.leading_zeros() as usize;
        Some(word * 64 + 63 - self.bitmap[word].leading_zeros() as usize)
    }

    /// The head of the lowest non-empty bin at `bin` or above: the smallest
    /// binned chunk of at least [`size_of_bin(bin)`](size_of_bin) bytes,
    /// the most recent of its size.
    ///
    /// # Time complexity
    ///
    /// O(1): at most two bit scans of the bitmap and one of its summary.
    #[inline(always)]
    pub fn first_at_or_above(&self, bin: usize) -> Option<Chunk> {
        self.heads[self.first_bin_at_or_above(bin)?]
    }

    /// Pushes the free chunk `c` of `size` bytes at the head of its bin.
    ///
    /// # Safety
    ///
    /// `c` is a free chunk of `size <= LARGEST_BINNED` bytes (a multiple of
    /// [`GRANULE`], at least [`MIN_CHUNK`]) that is not a member, in memory
    /// no user holds, whose words 1 and 2 the bins may write.
    #[inline(always)]
    pub unsafe fn push(&mut self, c: Chunk, size: usize) {
        debug_assert!((MIN_CHUNK..=LARGEST_BINNED).contains(&size));
        let bin = (size - MIN_CHUNK) / GRANULE;
        let head = self.heads[bin];
        // SAFETY: `c` is ours to link (caller); `head` is a member (FL-N1).
        unsafe {
            c.set_link(NEXT, head);
            c.set_link(PREV, None);
            if let Some(h) = head {
                h.set_link(PREV, Some(c));
            }
        }
        self.heads[bin] = Some(c);
        self.bitmap[bin / 64] |= 1 << (bin % 64);
        self.summary |= 1 << (bin / 64);
        self.len += 1;
        if c.addr() < self.lo || c.addr() > self.hi {
            self.widen_span(c.addr());
        }
    }

    /// Widens the span (FL-N5) to take in `addr`. Out of line: once the
    /// bins have held a chunk near each end of the heap, no push widens it
    /// again, and the common push only compares.
    #[cold]
    #[inline(never)]
    fn widen_span(&mut self, addr: usize) {
        self.lo = self.lo.min(addr);
        self.hi = self.hi.max(addr);
    }

    /// Reads link `index` of `c` as a chunk, refusing one that cannot be a
    /// member (misaligned or outside the span of members, FL-N5).
    ///
    /// # Safety
    ///
    /// `c`'s first three words are readable.
    #[inline(always)]
    unsafe fn checked_link(&self, c: Chunk, index: usize) -> Result<Option<Chunk>, Corruption> {
        // SAFETY: caller contract.
        let link = unsafe { c.link(index) };
        match link {
            Some(l) if l.addr() % GRANULE != 0 || l.addr() < self.lo || l.addr() > self.hi => {
                Err(Corruption::CorruptFreeList { addr: c.addr() })
            }
            other => Ok(other),
        }
    }

    /// Unlinks member `c` of `size` bytes, after its neighbours confirm its
    /// links.
    ///
    /// # Safety
    ///
    /// `c` is a free chunk of the heap of `size` bytes, its first three
    /// words readable, and the bins' members are as the bins left them
    /// (their links may be damaged: that is what is checked).
    ///
    /// # Errors
    ///
    /// [`Corruption::CorruptFreeList`] when `c` is not where its links say;
    /// nothing is changed then.
    #[inline(always)]
    pub unsafe fn remove(&mut self, c: Chunk, size: usize) -> Result<(), Corruption> {
        let bad = Corruption::CorruptFreeList { addr: c.addr() };
        let bin = bin_of(size).ok_or(bad)?;
        // SAFETY: `c` is readable (caller); `prev` and `next` passed the
        // span check, so they are members if the links are intact (FL-N1, FL-N5),
        // and each is confirmed by reading back its link to `c` before any
        // write.
        unsafe {
            let next = self.checked_link(c, NEXT)?;
            let prev = self.checked_link(c, PREV)?;
            let prev_ok = match prev {
                Some(p) => p.link(NEXT) == Some(c),
                None => self.heads[bin] == Some(c),
            };
            let next_ok = match next {
                Some(n) => n.link(PREV) == Some(c),
                None => true,
            };
            if !(prev_ok && next_ok) {
                return Err(bad);
            }
            match prev {
                Some(p) => p.set_link(NEXT, next),
                None => {
                    self.heads[bin] = next;
                    if next.is_none() {
                        self.bitmap[bin / 64] &= !(1 << (bin % 64));
                        if self.bitmap[bin / 64] == 0 {
                            self.summary &= !(1 << (bin / 64));
                        }
                    }
                }
            }
            if let Some(n) = next {
                n.set_link(PREV, prev);
            }
        }
        self.len -= 1;
        Ok(())
    }

    /// Takes the head of bin `bin` (its most recent member) out and
    /// returns it, or `None` when the bin is empty: [`remove`](Self::remove)
    /// of the head, with the same checks of its links.
    ///
    /// # Errors
    ///
    /// As [`remove`](Self::remove); nothing is changed then.
    ///
    /// # Example
    ///
    /// ```
    /// use core::ptr::NonNull;
    /// use freespace_freelist::bins::{bin_of, Bins};
    /// use freespace_freelist::{Chunk, Flags};
    /// let mut memory = [0u128; 4];
    /// let c = Chunk::new(NonNull::from(&mut memory).cast());
    /// let mut bins = Bins::new();
    /// // SAFETY: a 64-byte free chunk in `memory`, ours alone.
    /// unsafe {
    ///     c.write_free(64, Flags::empty());
    ///     bins.push(c, 64);
    /// }
    /// let bin = bin_of(64).unwrap();
    /// assert_eq!(bins.pop(bin), Ok(Some(c)));
    /// assert_eq!(bins.pop(bin), Ok(None));
    /// assert!(bins.is_empty() && bins.check().is_ok());
    /// ```
    #[inline(always)]
    pub fn pop(&mut self, bin: usize) -> Result<Option<Chunk>, Corruption> {
        let Some(c) = self.head(bin) else {
            return Ok(None);
        };
        // SAFETY: a head is a member (FL-N1) of the bin's size (FL-N2): a
        // free chunk of the heap whose first three words are readable.
        unsafe { self.remove(c, size_of_bin(bin))? };
        Ok(Some(c))
    }

    /// Whether `c` is a member of the bin of `size`.
    ///
    /// # Time complexity
    ///
    /// O(members of that bin).
    pub fn contains(&self, c: Chunk, size: usize) -> bool {
        let Some(bin) = bin_of(size) else {
            return false;
        };
        let mut at = self.heads[bin];
        while let Some(x) = at {
            if x == c {
                return true;
            }
            // SAFETY: `x` is a member (FL-N1).
            at = unsafe { self.next(x) };
        }
        false
    }

    /// Calls `visit` with every member and its size, bin by bin.
    pub fn for_each(&self, visit: &mut dyn FnMut(Chunk, usize)) {
        for bin in 0..BINS {
            let mut at = self.heads[bin];
            while let Some(x) = at {
                visit(x, size_of_bin(bin));
                // SAFETY: `x` is a member (FL-N1).
                at = unsafe { self.next(x) };
            }
        }
    }

    /// Calls `visit` with every member of `min` bytes or more and its
    /// size: the non-empty bins from `min`'s up, found by bit scans.
    ///
    /// ```
    /// let mut n = 0;
    /// freespace_freelist::bins::Bins::new().for_each_at_least(4096, &mut |_, _| n += 1);
    /// assert_eq!(n, 0);
    /// ```
    pub fn for_each_at_least(&self, min: usize, visit: &mut dyn FnMut(Chunk, usize)) {
        // The first bin whose size is `min` or more.
        let Some(mut bin) = bin_of(min.div_ceil(GRANULE) * GRANULE) else {
            return;
        };
        while let Some(b) = self.first_bin_at_or_above(bin) {
            let mut at = self.heads[b];
            while let Some(x) = at {
                visit(x, size_of_bin(b));
                // SAFETY: `x` is a member (FL-N1).
                at = unsafe { self.next(x) };
            }
            bin = b + 1;
        }
    }

    /// Checks FL-N1–N5.
    ///
    /// # Errors
    ///
    /// The first [`Violation`] found.
    ///
    /// ```
    /// assert!(freespace_freelist::bins::Bins::new().check().is_ok());
    /// ```
    pub fn check(&self) -> Result<(), Violation> {
        for (word, &bits) in self.bitmap.iter().enumerate() {
            if (self.summary >> word & 1 != 0) != (bits != 0) {
                return Err(Violation::new(
                    "FL-N3",
                    word,
                    "summary bit disagrees with its bitmap word",
                ));
            }
        }
        if self.summary.checked_shr(WORDS as u32).unwrap_or(0) != 0 {
            return Err(Violation::new(
                "FL-N3",
                WORDS,
                "summary bit past the bitmap",
            ));
        }
        let mut count = 0usize;
        for bin in 0..BINS {
            let bit = self.bitmap[bin / 64] & (1 << (bin % 64)) != 0;
            if bit != self.heads[bin].is_some() {
                return Err(Violation::new(
                    "FL-N3",
                    bin,
                    "bitmap bit disagrees with its bin",
                ));
            }
            let mut prev: Option<Chunk> = None;
            let mut at = self.heads[bin];
            while let Some(x) = at {
                if x.addr() < self.lo || x.addr() > self.hi {
                    return Err(Violation::new(
                        "FL-N5",
                        x.addr(),
                        "bin member outside the span",
                    ));
                }
                // SAFETY: `x` is reached from a head through next links, so a
                // member (FL-N1) and a readable free chunk.
                let (size, flags, back, next) =
                    unsafe { (x.size(), x.flags(), x.link(PREV), x.link(NEXT)) };
                if flags.contains(Flags::ALLOCATED) || size != size_of_bin(bin) {
                    return Err(Violation::new(
                        "FL-N2",
                        x.addr(),
                        "bin member is allocated or of another size",
                    ));
                }
                if back != prev {
                    return Err(Violation::new("FL-N1", x.addr(), "bin back link broken"));
                }
                count += 1;
                if count > self.len {
                    return Err(Violation::new(
                        "FL-N4",
                        x.addr(),
                        "more members than counted (a cycle?)",
                    ));
                }
                prev = Some(x);
                at = next;
            }
        }
        if count != self.len {
            return Err(Violation::new("FL-N4", 0, "bin member count is wrong"));
        }
        Ok(())
    }
}

/// The key of tree member `t`.
#[inline]
fn tree_key(t: Chunk) -> Key {
    Key {
        addr: t.addr(),
        // SAFETY: a tree member is a free chunk of the heap, its size word
        // written (FL-T1).
        size: unsafe { t.size() },
    }
}

/// Bins for the small free chunks in front of a [`Tree`] ordered by `O`
/// for the others: the index of the size-based policies (best and worst
/// fit), which write their search over [`bins`](Self::bins) and the large
/// chunks in order ([`lower_bound`](Self::lower_bound),
/// [`first`](Self::first), [`after`](Self::after)).
///
/// One large chunk, the *spare*, is kept out of the tree: the first large
/// chunk added while there is none, and after it any tree member whose
/// change of size puts it before the spare in `O`'s order (the two change
/// places). In a heap that grows at its end that is the wilderness, the
/// chunk nearly every request is carved from and every last block merges
/// back into; in a heap being emptied in address order, the free space the
/// frees keep merging into. As the spare, carving from it or merging into
/// it changes one field instead of taking it out of the tree and putting
/// it back under its new size (the size-ordered tree's key). The ordered
/// walks take the spare in its place in `O`'s order, so a policy's choice
/// does not change.
///
/// # Invariants
///
/// - FL-I1: chunks of at most [`LARGEST_BINNED`] bytes are in `bins` (FL-N1–N5),
///   larger ones in `tree` (FL-T1–T5) or the spare; nothing is in two.
/// - FL-I2: the spare, if any, is a free chunk of more than
///   [`LARGEST_BINNED`] bytes, not in the tree.
///
/// ```
/// use freespace_freelist::bins::Binned;
/// use freespace_freelist::tree::ByAddress;
/// let index = Binned::<ByAddress>::new();
/// assert!(index.is_empty() && index.check().is_ok());
/// ```
#[derive(Debug)]
pub struct Binned<O: Order> {
    bins: Bins,
    tree: Tree<O>,
    /// The large member kept out of the tree (FL-I2).
    spare: Option<Chunk>,
}

impl<O: Order> Default for Binned<O> {
    fn default() -> Self {
        Self::new()
    }
}

impl<O: Order> Binned<O> {
    /// Empty.
    ///
    /// ```
    /// use freespace_freelist::{bins::Binned, tree::ByAddress};
    /// assert_eq!(Binned::<ByAddress>::new().len(), 0);
    /// ```
    pub const fn new() -> Self {
        Self {
            bins: Bins::new(),
            tree: Tree::new(),
            spare: None,
        }
    }

    /// The bins (chunks up to [`LARGEST_BINNED`] bytes).
    ///
    /// ```
    /// use freespace_freelist::{bins::Binned, tree::ByAddress};
    /// assert!(Binned::<ByAddress>::new().bins().is_empty());
    /// ```
    #[inline]
    pub const fn bins(&self) -> &Bins {
        &self.bins
    }

    /// The tree (the larger chunks but the spare).
    ///
    /// ```
    /// use freespace_freelist::{bins::Binned, tree::ByAddress};
    /// assert!(Binned::<ByAddress>::new().tree().is_empty());
    /// ```
    #[inline]
    pub const fn tree(&self) -> &Tree<O> {
        &self.tree
    }

    /// The spare's key, if there is a spare.
    #[inline]
    fn spare_key(&self) -> Option<(Chunk, Key)> {
        self.spare.map(|c| {
            // SAFETY: the spare is a free chunk of the heap (FL-I2), its
            // size word written.
            let size = unsafe { c.size() };
            (
                c,
                Key {
                    addr: c.addr(),
                    size,
                },
            )
        })
    }

    /// The earlier in `O`'s order of a tree candidate and the spare, if
    /// `spare_counts` says the spare is a candidate.
    #[inline]
    fn earlier(&self, tree: Option<Chunk>, spare_counts: impl Fn(Key) -> bool) -> Option<Chunk> {
        let Some((spare, key)) = self.spare_key().filter(|&(_, k)| spare_counts(k)) else {
            return tree;
        };
        match tree {
            Some(t) if O::before(tree_key(t), key) => Some(t),
            _ => Some(spare),
        }
    }

    /// The first large member in `O`'s order that is not before `key`
    /// ([`Tree::lower_bound`] with the spare in its place).
    ///
    /// ```
    /// use freespace_freelist::{bins::Binned, tree::{ByAddress, Key}};
    /// assert!(Binned::<ByAddress>::new().lower_bound(Key { addr: 0, size: 0 }).is_none());
    /// ```
    #[inline]
    pub fn lower_bound(&self, key: Key) -> Option<Chunk> {
        self.earlier(self.tree.lower_bound(key), |k| !O::before(k, key))
    }

    /// The first large member in `O`'s order ([`Tree::first`] with the
    /// spare in its place).
    ///
    /// ```
    /// use freespace_freelist::{bins::Binned, tree::ByAddress};
    /// assert!(Binned::<ByAddress>::new().first().is_none());
    /// ```
    #[inline]
    pub fn first(&self) -> Option<Chunk> {
        self.earlier(self.tree.first(), |_| true)
    }

    /// The first large member in `O`'s order after `key` ([`Tree::after`]
    /// with the spare in its place).
    ///
    /// ```
    /// use freespace_freelist::{bins::Binned, tree::{ByAddress, Key}};
    /// assert!(Binned::<ByAddress>::new().after(Key { addr: 0, size: 0 }).is_none());
    /// ```
    #[inline]
    pub fn after(&self, key: Key) -> Option<Chunk> {
        self.earlier(self.tree.after(key), |k| O::before(key, k))
    }

    /// Number of members.
    ///
    /// ```
    /// use freespace_freelist::{bins::Binned, tree::ByAddress};
    /// assert_eq!(Binned::<ByAddress>::new().len(), 0);
    /// ```
    pub const fn len(&self) -> usize {
        self.bins.len() + self.tree.len() + if self.spare.is_some() { 1 } else { 0 }
    }

    /// Whether there are no members.
    ///
    /// ```
    /// use freespace_freelist::{bins::Binned, tree::ByAddress};
    /// assert!(Binned::<ByAddress>::new().is_empty());
    /// ```
    pub const fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds `c` of `size` bytes.
    ///
    /// # Safety
    ///
    /// `c` is a free chunk of `size` bytes, not a member, in memory no user
    /// holds (for a tree chunk: [`Tree::insert`]'s contract).
    #[inline(always)]
    unsafe fn add(&mut self, c: Chunk, size: usize) -> Result<(), Corruption> {
        if size <= LARGEST_BINNED {
            // SAFETY: caller contract.
            unsafe { self.bins.push(c, size) };
            Ok(())
        } else if self.spare.is_none() {
            self.spare = Some(c);
            Ok(())
        } else {
            // SAFETY: caller contract.
            unsafe { self.tree.insert(c, size) }
        }
    }

    /// Takes member `c` of `size` bytes out.
    ///
    /// # Safety
    ///
    /// As [`Bins::remove`] or [`Tree::remove`], by size.
    #[inline(always)]
    unsafe fn take(&mut self, c: Chunk, size: usize) -> Result<(), Corruption> {
        if size <= LARGEST_BINNED {
            // SAFETY: caller contract.
            unsafe { self.bins.remove(c, size) }
        } else if self.spare == Some(c) {
            self.spare = None;
            Ok(())
        } else {
            // SAFETY: caller contract.
            unsafe { self.tree.remove(c, size) }
        }
    }

    /// [`Fit::insert`](crate::Fit::insert): `c`'s size word is written.
    ///
    /// # Safety
    ///
    /// As [`Fit::insert`](crate::Fit::insert).
    ///
    /// # Errors
    ///
    /// As [`Tree::insert`].
    #[inline(always)]
    pub unsafe fn insert(&mut self, c: Chunk) -> Result<(), Corruption> {
        // SAFETY: caller contract.
        unsafe { self.add(c, c.size()) }
    }

    /// [`Fit::remove`](crate::Fit::remove).
    ///
    /// # Safety
    ///
    /// As [`Fit::remove`](crate::Fit::remove).
    ///
    /// # Errors
    ///
    /// [`Corruption::CorruptFreeList`] when the chunk's links do not check.
    #[inline(always)]
    pub unsafe fn remove(&mut self, c: Chunk) -> Result<(), Corruption> {
        // SAFETY: caller contract.
        unsafe { self.take(c, c.size()) }
    }

    /// [`Fit::replace`](crate::Fit::replace): `new` (of `new_size` bytes,
    /// size word not yet written) in `old`'s place. A binned `new` goes to
    /// the head of its bin.
    ///
    /// # Safety
    ///
    /// As [`Fit::replace`](crate::Fit::replace).
    ///
    /// # Errors
    ///
    /// As [`remove`](Self::remove); nothing is changed then.
    #[inline(always)]
    pub unsafe fn replace(
        &mut self,
        old: Chunk,
        new: Chunk,
        new_size: usize,
    ) -> Result<(), Corruption> {
        // SAFETY: caller contract. `old` is unlinked (its links read) before
        // `new`'s words, which may overlap them, are written.
        unsafe {
            let old_size = old.size();
            if old_size > LARGEST_BINNED && new_size > LARGEST_BINNED {
                if self.spare == Some(old) {
                    self.spare = Some(new);
                    return Ok(());
                }
                return self.tree.replace(old, old_size, new, new_size);
            }
            self.take(old, old_size)?;
            self.add(new, new_size)
        }
    }

    /// [`Fit::resize`](crate::Fit::resize): `c` was `old_size` bytes, its
    /// size word says the new size. A binned chunk goes to the head of its
    /// new bin.
    ///
    /// # Safety
    ///
    /// As [`Fit::resize`](crate::Fit::resize).
    ///
    /// # Errors
    ///
    /// As [`remove`](Self::remove).
    #[inline(always)]
    pub unsafe fn resize(&mut self, c: Chunk, old_size: usize) -> Result<(), Corruption> {
        // SAFETY: caller contract.
        unsafe {
            let new_size = c.size();
            if old_size > LARGEST_BINNED && new_size > LARGEST_BINNED {
                if self.spare == Some(c) {
                    return Ok(());
                }
                if let Some(spare) = self.spare {
                    let spare_key = Key {
                        addr: spare.addr(),
                        size: spare.size(),
                    };
                    let key = Key {
                        addr: c.addr(),
                        size: new_size,
                    };
                    if O::before(key, spare_key) {
                        // `c` now sorts before the spare, nearer the front
                        // of the policy's order (where its searches look
                        // first): it becomes the spare, and the spare takes
                        // its node. A chunk that keeps changing there (the
                        // free space of a heap emptied in address order,
                        // each free merging into it; under worst fit, the
                        // largest chunk) then changes one field each time,
                        // not a tree key. The spare is a free chunk in no
                        // tree (FL-I2), so the tree may take it in `c`'s
                        // place.
                        self.tree.replace(c, old_size, spare, spare_key.size)?;
                        self.spare = Some(c);
                        return Ok(());
                    }
                }
                return self.tree.resize(c, old_size, new_size);
            }
            self.take(c, old_size)?;
            self.add(c, new_size)
        }
    }

    /// Takes the head of bin `bin` out ([`Bins::pop`]).
    ///
    /// # Errors
    ///
    /// As [`Bins::pop`]; nothing is changed then.
    ///
    /// ```
    /// use freespace_freelist::{bins::Binned, tree::ByAddress};
    /// assert_eq!(Binned::<ByAddress>::new().pop_bin(0), Ok(None));
    /// ```
    #[inline(always)]
    pub fn pop_bin(&mut self, bin: usize) -> Result<Option<Chunk>, Corruption> {
        self.bins.pop(bin)
    }

    /// Calls `visit` with every member of `min` bytes or more and its
    /// size: the bins from `min`'s up, the spare, the tree's members.
    ///
    /// ```
    /// use freespace_freelist::bins::Binned;
    /// use freespace_freelist::tree::ByAddress;
    /// let mut n = 0;
    /// Binned::<ByAddress>::new().for_each_at_least(4096, &mut |_, _| n += 1);
    /// assert_eq!(n, 0);
    /// ```
    pub fn for_each_at_least(&self, min: usize, visit: &mut dyn FnMut(Chunk, usize)) {
        self.bins.for_each_at_least(min, visit);
        if let Some(s) = self.spare {
            // SAFETY: the spare is a free chunk of the heap (FL-I2), its size
            // word readable.
            let size = unsafe { s.size() };
            if size >= min {
                visit(s, size);
            }
        }
        self.tree.for_each_at_least(min, visit);
    }

    /// Whether `c` is a member.
    ///
    /// # Safety
    ///
    /// `c`'s size word is readable.
    pub unsafe fn contains(&self, c: Chunk) -> bool {
        // SAFETY: caller contract.
        let size = unsafe { c.size() };
        if size <= LARGEST_BINNED {
            self.bins.contains(c, size)
        } else {
            self.spare == Some(c) || self.tree.contains(c, size)
        }
    }

    /// Checks FL-I1 (the tree's members are larger than [`LARGEST_BINNED`]),
    /// FL-I2 (the spare), FL-N1–N5 and FL-T1–T5.
    ///
    /// # Errors
    ///
    /// The first [`Violation`] found.
    pub fn check(&self) -> Result<(), Violation> {
        self.bins.check()?;
        if let Some((spare, key)) = self.spare_key() {
            // SAFETY: the spare is a free chunk of the heap (FL-I2).
            let allocated = unsafe { spare.flags() }.contains(Flags::ALLOCATED);
            if allocated || key.size <= LARGEST_BINNED || self.tree.contains(spare, key.size) {
                return Err(Violation::new(
                    "FL-I2",
                    spare.addr(),
                    "the spare is allocated, small enough for a bin, or also in the tree",
                ));
            }
        }
        self.tree.check(&mut |c, size| {
            if size > LARGEST_BINNED {
                Ok(())
            } else {
                Err(Violation::new(
                    "FL-I1",
                    c.addr(),
                    "a chunk small enough for a bin is in the tree",
                ))
            }
        })
    }
}
