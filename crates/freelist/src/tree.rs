//! [`Tree`]: an intrusive AVL tree of free chunks, its nodes stored inside
//! the chunks themselves, so the indexes of the fit policies cost no memory
//! and no allocation.
//!
//! ```text
//!  free chunk as a tree node (word = 8 bytes on 64-bit targets)
//!  +---------------------------------------+ c
//!  | size | flags                  (word 0) |
//!  | left child | balance (low 2 bits) (w 1)|
//!  | right child                    (word 2) |
//!  | largest size in subtree        (word 3) |  augmented orders only,
//!  | ...                                    |  so chunks > MIN_CHUNK
//!  | footer: size              (last word)  |
//!  +---------------------------------------+ c + size
//! ```
//!
//! A 32-byte chunk ([`MIN_CHUNK`](crate::MIN_CHUNK)) has exactly the two link words 1 and 2
//! between its size word and its footer, so every free chunk can be a node
//! of a plain tree; only trees whose [`Order`] is augmented need word 3,
//! and they hold only larger chunks.
//!
//! There are no parent pointers: every update searches from the root by
//! key, remembering the path on a fixed-size stack ([`MAX_DEPTH`] entries,
//! more than an AVL tree of any possible number of chunks is tall), and
//! rebalances and re-augments on the way back up. Because a chunk is always
//! reached from the root before it is unlinked, a node whose key or links
//! have been damaged is reported as [`Corruption::CorruptFreeList`] instead
//! of being written through blindly.
//!
//! # Time complexity
//!
//! Insert, remove, replace, resize, lookup: O(log n). [`Tree::check`]: O(n).

use core::marker::PhantomData;
use core::mem::MaybeUninit;
use core::ptr::NonNull;

use freespace_core::{Corruption, Violation};

use crate::chunk::{Chunk, Flags, GRANULE};

/// Word of a node holding its left child, tagged with its balance.
const LEFT: usize = 1;
/// Word of a node holding its right child.
const RIGHT: usize = 2;
/// Word of a node holding the largest chunk size in its subtree (augmented
/// orders only).
const MAX: usize = 3;
/// Low bits of the left link that hold the balance plus one: 0 = left
/// taller, 1 = even, 2 = right taller, 3 never written (a damaged link);
/// chunks are 16-aligned, so 4 bits are free. Plus one, so that reading
/// and writing it is an addition, not a branch.
const BALANCE_MASK: usize = 3;

/// How deep a search may go: an AVL tree of `n` nodes is less than
/// `1.4405 * log2(n + 2)` tall, so 96 levels hold far more chunks than an
/// address space has room for. A deeper path can only come from damaged
/// links (a cycle), and is reported as corruption.
pub const MAX_DEPTH: usize = 96;

/// What a tree sorts a chunk by: its address and its size.
///
/// ```
/// use freespace_freelist::tree::{ByAddress, Key, Order};
/// let high = Key { addr: 0x2000, size: 32 };
/// let low = Key { addr: 0x1000, size: 64 };
/// assert!(ByAddress::before(low, high));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key {
    /// The chunk's address.
    pub addr: usize,
    /// The chunk's size in bytes.
    pub size: usize,
}

/// How a [`Tree`] orders its chunks, and whether it keeps each subtree's
/// largest size.
///
/// Orders must be strict and total on distinct addresses (two chunks never
/// share an address), which every order here is because the address breaks
/// ties.
pub trait Order {
    /// Whether every node keeps, in word 3, the largest chunk size in its
    /// subtree. Such a tree may only hold chunks larger than
    /// [`MIN_CHUNK`](crate::MIN_CHUNK) (word 3 of a 32-byte chunk is its
    /// footer).
    const AUGMENTED: bool;
    /// Whether the size is part of the key, so a chunk that changes size
    /// must move.
    const BY_SIZE: bool;
    /// Whether `a` sorts before `b`.
    fn before(a: Key, b: Key) -> bool;
}

/// Address order: first and next fit's order, for chunks of one size.
///
/// ```
/// use freespace_freelist::tree::{ByAddress, Key, Order};
/// assert!(ByAddress::before(Key { addr: 16, size: 99 }, Key { addr: 32, size: 1 }));
/// ```
#[derive(Debug)]
pub enum ByAddress {}

impl Order for ByAddress {
    const AUGMENTED: bool = false;
    const BY_SIZE: bool = false;
    #[inline]
    fn before(a: Key, b: Key) -> bool {
        a.addr < b.addr
    }
}

/// Address order, each node knowing the largest size below it, so "the
/// lowest address whose size is at least `n`" is one descent.
///
/// ```
/// use freespace_freelist::tree::{ByAddressMax, Key, Order};
/// assert!(ByAddressMax::AUGMENTED);
/// assert!(ByAddressMax::before(Key { addr: 16, size: 99 }, Key { addr: 32, size: 1 }));
/// ```
#[derive(Debug)]
pub enum ByAddressMax {}

impl Order for ByAddressMax {
    const AUGMENTED: bool = true;
    const BY_SIZE: bool = false;
    #[inline]
    fn before(a: Key, b: Key) -> bool {
        a.addr < b.addr
    }
}

/// An intrusive AVL tree of free chunks in the order `O`.
///
/// # Invariants
///
/// - FL-T1 (members): every member is a free chunk (`ALLOCATED` clear) in
///   memory the owner manages, readable and writable by the tree while it
///   is a member; its key is its address and the size in its size word.
///   Under an augmented order every member is larger than
///   [`MIN_CHUNK`](crate::MIN_CHUNK).
/// - FL-T2 (order): an in-order walk visits the members in strictly increasing
///   `O` order; each member is reached exactly once from `root`.
/// - FL-T3 (balance): the two subtrees of every node differ in height by at
///   most one, and the node's balance tag says which (if any) is taller.
/// - FL-T4 (augment): under an augmented order, word 3 of every node is the
///   largest size in its subtree.
/// - FL-T5 (count): `len` is the number of members.
///
/// [`check`](Self::check) verifies all five.
///
/// # Example
///
/// ```
/// use core::ptr::NonNull;
/// use freespace_freelist::tree::Tree;
/// use freespace_freelist::{Chunk, Flags};
/// # use freespace_freelist::tree::{Key, Order};
/// # /// Smallest first (best fit's order, which lives in its crate).
/// # enum BySize {}
/// # impl Order for BySize {
/// #     const AUGMENTED: bool = false;
/// #     const BY_SIZE: bool = true;
/// #     fn before(a: Key, b: Key) -> bool { (a.size, a.addr) < (b.size, b.addr) }
/// # }
///
/// let mut memory = [0u128; 16]; // 256 bytes: free chunks of 96, 32, 128
/// let base = Chunk::new(NonNull::from(&mut memory).cast());
/// let mut tree = Tree::<BySize>::new();
/// // SAFETY: the three chunks are disjoint parts of `memory`, ours alone.
/// unsafe {
///     for (offset, size) in [(0, 96), (96, 32), (128, 128)] {
///         let c = base.forward(offset);
///         c.write_free(size, Flags::empty());
///         tree.insert(c, size).unwrap();
///     }
/// }
/// assert_eq!(tree.first(), Some(unsafe { base.forward(96) })); // the smallest
/// tree.check(&mut |_, _| Ok(())).unwrap();
/// assert_eq!(tree.len(), 3);
/// ```
pub struct Tree<O: Order> {
    /// The root (FL-T2).
    root: Option<Chunk>,
    /// Number of members (FL-T5).
    len: usize,
    order: PhantomData<fn() -> O>,
}

impl<O: Order> core::fmt::Debug for Tree<O> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Tree")
            .field("root", &self.root)
            .field("len", &self.len)
            .finish()
    }
}

/// The chunk an operation is about, with its size: the one node whose size
/// word the tree does not read (it may be stale or not yet written, see
/// each operation).
#[derive(Clone, Copy)]
struct Subject {
    chunk: Chunk,
    size: usize,
}

/// The root-to-node path of a search: nodes and the direction taken from
/// each (in the low bit of the node's pointer: chunks are 16-aligned).
///
/// # Invariants
///
/// - FL-S1: `len <= MAX_DEPTH` and `nodes[..len]` are initialised, each a
///   member's pointer with bit 0 set when the path went right from it.
struct Path {
    nodes: [MaybeUninit<*mut u8>; MAX_DEPTH],
    len: usize,
}

impl Path {
    #[inline]
    fn new() -> Self {
        Self {
            nodes: [const { MaybeUninit::uninit() }; MAX_DEPTH],
            len: 0,
        }
    }

    /// Appends `n`, left from it or right; `Err` when the path is already
    /// [`MAX_DEPTH`] long (damaged links).
    #[inline]
    fn push(&mut self, n: Chunk, right: bool) -> Result<(), ()> {
        self.len = self.write_at(self.len, n, right)?;
        Ok(())
    }

    /// Writes entry `len` (`n`, left from it or right) without touching
    /// the length, and returns `len + 1`; `Err` when `len` is
    /// [`MAX_DEPTH`]. A descent keeps its length in a local and stores it
    /// once at the end ([`Path::set_len`]): kept in the struct, it is
    /// reloaded after every read of a node, which the compiler cannot
    /// tell apart from the path's memory.
    #[inline(always)]
    fn write_at(&mut self, len: usize, n: Chunk, right: bool) -> Result<usize, ()> {
        let slot = self.nodes.get_mut(len).ok_or(())?;
        // Bit 0 of a chunk's address is clear (chunks are 16-aligned), so
        // adding the direction sets it: one addition, where an `or` made
        // the compiler (which cannot see the alignment) test the bit first.
        slot.write(n.ptr().as_ptr().wrapping_add(usize::from(right)));
        Ok(len + 1)
    }

    /// Sets the length after a descent that wrote entries `..len` with
    /// [`Path::write_at`].
    #[inline(always)]
    fn set_len(&mut self, len: usize) {
        debug_assert!(len <= MAX_DEPTH);
        self.len = len;
    }

    /// Entry `i`, tagged.
    ///
    /// # Safety
    ///
    /// `i < self.len`.
    #[inline]
    unsafe fn entry(&self, i: usize) -> *mut u8 {
        debug_assert!(i < self.len);
        // SAFETY: `i < len` (caller), and `nodes[..len]` are initialised (FL-S1).
        unsafe { self.nodes.get_unchecked(i).assume_init() }
    }

    /// Node `i`.
    ///
    /// # Safety
    ///
    /// `i < self.len`.
    #[inline]
    unsafe fn node(&self, i: usize) -> Chunk {
        // SAFETY: caller contract; the entry is a chunk's (non-null,
        // 16-aligned) pointer with at most bit 0 set, so clearing it gives
        // the chunk's pointer back, non-null.
        unsafe { Chunk::new(NonNull::new_unchecked(self.entry(i).map_addr(|a| a & !1))) }
    }

    /// Replaces node `i` (keeping the direction).
    ///
    /// # Safety
    ///
    /// `i < self.len`.
    #[inline]
    unsafe fn set_node(&mut self, i: usize, n: Chunk) {
        // SAFETY: `i < len` (caller, FL-S1).
        let right = unsafe { self.went_right(i) };
        // SAFETY: `i < len <= MAX_DEPTH` (caller, FL-S1).
        unsafe {
            self.nodes
                .get_unchecked_mut(i)
                .write(n.ptr().as_ptr().wrapping_add(usize::from(right)))
        };
    }

    /// Whether the path went right from node `i`.
    ///
    /// # Safety
    ///
    /// `i < self.len`.
    #[inline]
    unsafe fn went_right(&self, i: usize) -> bool {
        // SAFETY: caller contract.
        unsafe { self.entry(i) }.addr() & 1 != 0
    }
}

// ----------------------------------------------------------------------
// node words
// ----------------------------------------------------------------------

/// # Safety (all node accessors)
///
/// `n` is a member of a tree (or a free chunk being made one), so its link
/// words (and word 3 under an augmented order) are its own (FL-T1).
#[inline]
unsafe fn left(n: Chunk) -> Option<Chunk> {
    // SAFETY: see above.
    let p = unsafe { n.raw_link(LEFT) };
    NonNull::new(p.map_addr(|a| a & !BALANCE_MASK)).map(Chunk::new)
}

#[inline]
unsafe fn right(n: Chunk) -> Option<Chunk> {
    // SAFETY: see `left`.
    NonNull::new(unsafe { n.raw_link(RIGHT) }).map(Chunk::new)
}

/// Height of the right subtree minus that of the left one (the tag minus
/// one, [`BALANCE_MASK`]).
#[inline]
unsafe fn balance(n: Chunk) -> i8 {
    // SAFETY: see `left`.
    ((unsafe { n.raw_link(LEFT) }.addr() & BALANCE_MASK) as i8) - 1
}

/// The tag of balance `b` (-1, 0 or 1).
#[inline]
fn balance_tag(b: i8) -> usize {
    (b + 1) as usize
}

#[inline]
unsafe fn set_left_and_balance(n: Chunk, to: Option<Chunk>, b: i8) {
    let p = to.map_or(core::ptr::null_mut(), |c| c.ptr().as_ptr());
    // SAFETY: see `left`; the tag is kept in the pointer's low bits, which
    // are zero for a 16-aligned chunk (and for null), so adding it sets
    // them (an `or` the compiler, blind to the alignment, would not fold).
    unsafe { n.set_raw_link(LEFT, p.wrapping_add(balance_tag(b))) }
}

#[inline]
unsafe fn set_left(n: Chunk, to: Option<Chunk>) {
    // SAFETY: see `left`.
    unsafe { set_left_and_balance(n, to, balance(n)) }
}

#[inline]
unsafe fn set_balance(n: Chunk, b: i8) {
    // SAFETY: see `left`.
    unsafe { set_left_and_balance(n, left(n), b) }
}

#[inline]
unsafe fn set_right(n: Chunk, to: Option<Chunk>) {
    let p = to.map_or(core::ptr::null_mut(), |c| c.ptr().as_ptr());
    // SAFETY: see `left`.
    unsafe { n.set_raw_link(RIGHT, p) }
}

/// The left or right child: word 1 or 2, read without a branch on the
/// direction (which in a descent is as good as random, so a branch on it
/// is mispredicted half the time); the mask clears the left link's
/// balance tag and leaves a right link (16-aligned) as it is.
#[inline]
unsafe fn child(n: Chunk, go_right: bool) -> Option<Chunk> {
    // SAFETY: see `left`.
    let p = unsafe { n.raw_link(LEFT + usize::from(go_right)) };
    NonNull::new(p.map_addr(|a| a & !BALANCE_MASK)).map(Chunk::new)
}

#[inline]
unsafe fn set_child(n: Chunk, go_right: bool, to: Option<Chunk>) {
    // SAFETY: see `left`.
    unsafe {
        if go_right {
            set_right(n, to)
        } else {
            set_left(n, to)
        }
    }
}

/// Word 3: the largest size in `n`'s subtree (augmented orders).
#[inline]
unsafe fn max(n: Chunk) -> usize {
    // SAFETY: see `left`; augmented trees hold chunks with a word 3.
    unsafe { n.field(MAX) }
}

impl<O: Order> Tree<O> {
    /// An empty tree.
    ///
    /// ```
    /// use freespace_freelist::tree::{ByAddress, Tree};
    /// let tree = Tree::<ByAddress>::new();
    /// assert!(tree.is_empty() && tree.first().is_none());
    /// ```
    pub const fn new() -> Self {
        Self {
            root: None,
            len: 0,
            order: PhantomData,
        }
    }

    /// Number of members.
    ///
    /// ```
    /// assert_eq!(freespace_freelist::tree::Tree::<freespace_freelist::tree::ByAddress>::new().len(), 0);
    /// ```
    pub const fn len(&self) -> usize {
        self.len
    }

    /// Whether the tree is empty.
    ///
    /// ```
    /// assert!(freespace_freelist::tree::Tree::<freespace_freelist::tree::ByAddress>::new().is_empty());
    /// ```
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    // ------------------------------------------------------------------
    // helpers
    // ------------------------------------------------------------------

    /// The size of `n`: the subject's given size, or `n`'s size word.
    #[inline]
    unsafe fn size_of(n: Chunk, s: Subject) -> usize {
        if n == s.chunk {
            s.size
        } else {
            // SAFETY: `n` is a member (caller), readable (FL-T1).
            unsafe { n.size() }
        }
    }

    /// The key of `n` (its size read only when the order looks at it).
    #[inline]
    unsafe fn key_of(n: Chunk, s: Subject) -> Key {
        Key {
            addr: n.addr(),
            size: if O::BY_SIZE {
                // SAFETY: caller contract.
                unsafe { Self::size_of(n, s) }
            } else {
                0
            },
        }
    }

    /// Recomputes word 3 of `n` from its size and its children's (FL-T4);
    /// returns whether it changed.
    #[inline]
    unsafe fn fix_max(n: Chunk, s: Subject) -> bool {
        if !O::AUGMENTED {
            return false;
        }
        // SAFETY: `n` and its children are members of an augmented tree.
        unsafe {
            let mut m = Self::size_of(n, s);
            if let Some(l) = left(n) {
                m = m.max(max(l));
            }
            if let Some(r) = right(n) {
                m = m.max(max(r));
            }
            let changed = max(n) != m;
            n.set_field(MAX, m);
            changed
        }
    }

    /// Recomputes word 3 up `path` from its deepest entry, stopping where
    /// a value does not change (nothing above it can then).
    #[inline]
    unsafe fn fix_max_up(path: &Path, s: Subject) {
        if !O::AUGMENTED {
            return;
        }
        for i in (0..path.len).rev() {
            // SAFETY: `i < path.len`; the path's nodes are members.
            if !unsafe { Self::fix_max(path.node(i), s) } {
                break;
            }
        }
    }

    /// Points the link that led to `path`'s entry `i` (the root when
    /// `i == 0`) at `to`.
    ///
    /// # Safety
    ///
    /// `i <= path.len`; the path's nodes are members.
    #[inline]
    unsafe fn relink(&mut self, path: &Path, i: usize, to: Option<Chunk>) {
        if i == 0 {
            self.root = to;
        } else {
            // SAFETY: `i - 1 < path.len` (caller).
            unsafe { set_child(path.node(i - 1), path.went_right(i - 1), to) }
        }
    }

    /// Searches for `s.chunk` by its key, recording the path to it (not
    /// including it).
    ///
    /// # Errors
    ///
    /// The chunk is not where its key says (not a member, or damaged
    /// links or keys), or the path is too deep.
    unsafe fn path_to(&self, s: Subject, path: &mut Path) -> Result<(), Corruption> {
        let bad = Corruption::CorruptFreeList {
            addr: s.chunk.addr(),
        };
        let key = Key {
            addr: s.chunk.addr(),
            size: s.size,
        };
        let mut at = self.root;
        let mut len = path.len;
        loop {
            let Some(n) = at else { return Err(bad) };
            if n == s.chunk {
                path.set_len(len);
                return Ok(());
            }
            // SAFETY: `n` was reached from the root: a member (FL-T2).
            let go_right = !O::before(key, unsafe { Self::key_of(n, s) });
            len = path.write_at(len, n, go_right).map_err(|()| bad)?;
            // SAFETY: as above.
            at = unsafe { child(n, go_right) };
        }
    }

    /// The children and balance of member `s.chunk`, after checking that
    /// they look like a node's: a valid balance tag, children 16-aligned
    /// and on the right side of it in order. (Damaged links are refused
    /// before the tree adopts them.)
    ///
    /// # Safety
    ///
    /// `s.chunk` was reached from the root (a member's place); its
    /// children, if its links are intact, are members.
    unsafe fn links_of(s: Subject) -> Result<(Option<Chunk>, Option<Chunk>, i8), Corruption> {
        let c = s.chunk;
        let bad = Corruption::CorruptFreeList { addr: c.addr() };
        // SAFETY: (for the whole body) caller contract; a child is only
        // read after its address passed the alignment check.
        unsafe {
            if c.raw_link(LEFT).addr() & BALANCE_MASK == BALANCE_MASK {
                return Err(bad);
            }
            let key = Key {
                addr: c.addr(),
                size: s.size,
            };
            let (l, r) = (left(c), right(c));
            for (kid, is_right) in [(l, false), (r, true)] {
                if let Some(k) = kid {
                    if k.addr() % GRANULE != 0 || O::before(key, Self::key_of(k, s)) != is_right {
                        return Err(bad);
                    }
                }
            }
            Ok((l, r, balance(c)))
        }
    }

    /// Whether a node with key `key` may take the place of `s.chunk` (at
    /// the end of `path`, with children `l` and `r`) without breaking the
    /// order: its in-order neighbours sort before and after `key`. Then a
    /// chunk that changed size (best and worst fit's split remainders, a
    /// chunk that grew by a merge) stays where it is, with no rebalancing.
    ///
    /// # Safety
    ///
    /// `path` leads from the root to `s.chunk`, a member; `l` and `r` are
    /// its children.
    unsafe fn sorts_in_place(
        path: &Path,
        l: Option<Chunk>,
        r: Option<Chunk>,
        key: Key,
        s: Subject,
    ) -> bool {
        let old = Key {
            addr: s.chunk.addr(),
            size: s.size,
        };
        // Only the neighbour on the side the key moved to can be passed.
        let toward_first = O::before(key, old);
        // SAFETY: (for the whole body) every node read is reached from the
        // root or from `s.chunk`'s children: members (FL-T2).
        unsafe {
            let neighbour = match if toward_first { l } else { r } {
                Some(kid) => match Self::extreme(kid, toward_first) {
                    Some(n) => Some(n),
                    None => return false,
                },
                // The nearest ancestor on that side: the deepest one the
                // path left in the other direction.
                None => (0..path.len)
                    .rev()
                    .find(|&i| path.went_right(i) == toward_first)
                    .map(|i| path.node(i)),
            };
            neighbour.is_none_or(|n| {
                let k = Self::key_of(n, s);
                if toward_first {
                    O::before(k, key)
                } else {
                    O::before(key, k)
                }
            })
        }
    }

    /// The last (`rightmost`) or first node of the subtree at `n`; `None`
    /// if it is deeper than any AVL tree (damaged links).
    ///
    /// # Safety
    ///
    /// `n` is a member.
    unsafe fn extreme(mut n: Chunk, rightmost: bool) -> Option<Chunk> {
        for _ in 0..MAX_DEPTH {
            // SAFETY: `n` is a member (caller, FL-T2).
            match unsafe { child(n, rightmost) } {
                Some(c) => n = c,
                None => return Some(n),
            }
        }
        None
    }

    /// Restores balance at `n`, whose balance would be `b` (±2). Returns
    /// the subtree's new root and whether the subtree got shorter.
    unsafe fn rebalance(n: Chunk, b: i8, s: Subject) -> (Chunk, bool) {
        // SAFETY: (for the whole body) `n` and the nodes below it are
        // members; a ±2 balance means the taller side has a child (FL-T3).
        unsafe {
            let go_right = b > 0;
            let sign = if go_right { 1 } else { -1 };
            let Some(c) = child(n, go_right) else {
                return (n, false);
            };
            let cb = balance(c);
            if cb != -sign {
                // Single rotation: `c` rises, `n` becomes its child.
                set_child(n, go_right, child(c, !go_right));
                set_child(c, !go_right, Some(n));
                let shorter = cb == sign;
                if shorter {
                    set_balance(n, 0);
                    set_balance(c, 0);
                } else {
                    set_balance(n, sign);
                    set_balance(c, -sign);
                }
                Self::fix_max(n, s);
                Self::fix_max(c, s);
                (c, shorter)
            } else {
                // Double rotation: the grandchild `g` rises.
                let Some(g) = child(c, !go_right) else {
                    return (n, false);
                };
                let gb = balance(g);
                set_child(c, !go_right, child(g, go_right));
                set_child(n, go_right, child(g, !go_right));
                set_child(g, !go_right, Some(n));
                set_child(g, go_right, Some(c));
                set_balance(n, if gb == sign { -sign } else { 0 });
                set_balance(c, if gb == -sign { sign } else { 0 });
                set_balance(g, 0);
                Self::fix_max(n, s);
                Self::fix_max(c, s);
                Self::fix_max(g, s);
                (g, true)
            }
        }
    }

    // ------------------------------------------------------------------
    // updates
    // ------------------------------------------------------------------

    /// Undoes what a failed [`insert`](Self::insert) wrote on its way down
    /// (word 3 of the nodes on `path` raised to the new chunk's size):
    /// recomputes word 3 from the deepest node up, each from its children,
    /// which are then right again, so the tree is as it was. Returns `bad`.
    ///
    /// # Safety
    ///
    /// `path` is the failed insert's, its nodes reached from the root.
    #[cold]
    #[inline(never)]
    unsafe fn undo_raise(path: &Path, s: Subject, bad: Corruption) -> Corruption {
        if O::AUGMENTED {
            for i in (0..path.len).rev() {
                // SAFETY: `i < path.len`; the path's nodes are members
                // (caller), none of them the new chunk (`s`), which the
                // failed insert never linked.
                unsafe { Self::fix_max(path.node(i), s) };
            }
        }
        bad
    }

    /// Adds the free chunk `c` of `size` bytes.
    ///
    /// # Safety
    ///
    /// `c` is a free chunk of at least `size` bytes that is not a member,
    /// in memory the owner manages and no user holds; under an augmented
    /// order `size` is larger than [`MIN_CHUNK`](crate::MIN_CHUNK). Its
    /// link words are overwritten; its size word is not read.
    ///
    /// # Errors
    ///
    /// [`Corruption::CorruptFreeList`] when the search meets `c` itself or
    /// goes deeper than [`MAX_DEPTH`] (damaged links); nothing is changed.
    ///
    /// # Example
    ///
    /// ```
    /// use core::ptr::NonNull;
    /// use freespace_freelist::tree::{ByAddress, Tree};
    /// use freespace_freelist::{Chunk, Flags};
    /// let mut memory = [0u128; 4];
    /// let c = Chunk::new(NonNull::from(&mut memory).cast());
    /// let mut tree = Tree::<ByAddress>::new();
    /// // SAFETY: a 64-byte free chunk in `memory`, ours alone.
    /// unsafe {
    ///     c.write_free(64, Flags::empty());
    ///     tree.insert(c, 64).unwrap();
    ///     assert!(tree.insert(c, 64).is_err()); // already a member
    /// }
    /// assert!(tree.contains(c, 64));
    /// ```
    pub unsafe fn insert(&mut self, c: Chunk, size: usize) -> Result<(), Corruption> {
        let bad = Corruption::CorruptFreeList { addr: c.addr() };
        let s = Subject { chunk: c, size };
        let key = Key {
            addr: c.addr(),
            size,
        };
        let mut path = Path::new();
        let mut at = self.root;
        // SAFETY: (for the whole body) every node reached from the root is
        // a member (FL-T2); `c` is ours to write (caller).
        unsafe {
            let mut len = 0;
            while let Some(n) = at {
                if n == c {
                    path.set_len(len);
                    return Err(Self::undo_raise(&path, s, bad));
                }
                let go_right = !O::before(key, Self::key_of(n, s));
                let Ok(next) = path.write_at(len, n, go_right) else {
                    path.set_len(len);
                    return Err(Self::undo_raise(&path, s, bad));
                };
                len = next;
                // Every node on the path gains `c` below it: raise word 3
                // on the way down, while the node's line is in cache (the
                // siblings need not be read). Rotations below recompute
                // their nodes; a search that fails undoes it.
                if O::AUGMENTED && max(n) < size {
                    n.set_field(MAX, size);
                }
                at = child(n, go_right);
            }
            path.set_len(len);
            if O::AUGMENTED {
                c.set_field(MAX, size);
            }
            set_left_and_balance(c, None, 0);
            set_right(c, None);
            self.relink(&path, path.len, Some(c));
            self.len += 1;
            let mut i = path.len;
            while i > 0 {
                i -= 1;
                let n = path.node(i);
                let b = balance(n) + if path.went_right(i) { 1 } else { -1 };
                match b {
                    0 => {
                        set_balance(n, 0);
                        break;
                    }
                    -1 | 1 => set_balance(n, b),
                    _ => {
                        let (top, _) = Self::rebalance(n, b, s);
                        self.relink(&path, i, Some(top));
                        break;
                    }
                }
            }
        }
        Ok(())
    }

    /// Takes member `c`, sorted under `size`, out of the tree.
    ///
    /// # Safety
    ///
    /// `c` is readable heap memory the owner manages; its link words are
    /// those the tree wrote (its size word is not read: `size` is the size
    /// it was inserted, replaced or resized with).
    ///
    /// # Errors
    ///
    /// [`Corruption::CorruptFreeList`] when `c` is not found where its key
    /// says, or a child link of `c` is misaligned or out of order: the
    /// check that keeps a damaged node from being unlinked blindly.
    /// Nothing is changed then.
    ///
    /// # Example
    ///
    /// ```
    /// use core::ptr::NonNull;
    /// use freespace_freelist::tree::{ByAddress, Tree};
    /// use freespace_freelist::{Chunk, Flags};
    /// let mut memory = [0u128; 4];
    /// let (a, b) = (Chunk::new(NonNull::from(&mut memory).cast()), unsafe {
    ///     Chunk::new(NonNull::from(&mut memory).cast()).forward(32)
    /// });
    /// let mut tree = Tree::<ByAddress>::new();
    /// // SAFETY: two 32-byte free chunks in `memory`, ours alone.
    /// unsafe {
    ///     a.write_free(32, Flags::empty());
    ///     b.write_free(32, Flags::empty());
    ///     tree.insert(a, 32).unwrap();
    ///     tree.insert(b, 32).unwrap();
    ///     tree.remove(a, 32).unwrap();
    ///     assert!(tree.remove(a, 32).is_err()); // no longer a member
    /// }
    /// assert_eq!(tree.first(), Some(b));
    /// ```
    pub unsafe fn remove(&mut self, c: Chunk, size: usize) -> Result<(), Corruption> {
        let s = Subject { chunk: c, size };
        let mut path = Path::new();
        // SAFETY: `c` is found from the root, its links checked, before
        // anything is written.
        unsafe {
            self.path_to(s, &mut path)?;
            let links = Self::links_of(s)?;
            self.unlink(s, &mut path, links)
        }
    }

    /// Unlinks member `s.chunk`, found at the end of `path` with the
    /// checked `links` (children and balance), and rebalances.
    ///
    /// # Safety
    ///
    /// `path` leads from the root to `s.chunk` (a member) and `links` are
    /// its own, from [`links_of`](Self::links_of).
    ///
    /// # Errors
    ///
    /// [`Corruption::CorruptFreeList`] when the path to the successor is
    /// too deep; nothing is changed then.
    unsafe fn unlink(
        &mut self,
        s: Subject,
        path: &mut Path,
        (l, r, b): (Option<Chunk>, Option<Chunk>, i8),
    ) -> Result<(), Corruption> {
        let c = s.chunk;
        let bad = Corruption::CorruptFreeList { addr: c.addr() };
        // SAFETY: (for the whole body) `c` and every node on the path or
        // below `c` are members (caller contract, FL-T2).
        unsafe {
            let idx = path.len;
            match (l, r) {
                (Some(l), Some(r)) => {
                    // Swap in the in-order successor `n`: the leftmost of
                    // the right subtree.
                    path.push(c, true).map_err(|()| bad)?;
                    let mut n = r;
                    while let Some(x) = left(n) {
                        path.push(n, false).map_err(|()| bad)?;
                        n = x;
                    }
                    if path.len - 1 != idx {
                        set_left(path.node(path.len - 1), right(n));
                        set_right(n, Some(r));
                    }
                    set_left_and_balance(n, Some(l), b);
                    if O::AUGMENTED {
                        // `n` takes over `c`'s word 3 with its place, so
                        // that an unchanged value stops the walk up.
                        n.set_field(MAX, max(c));
                    }
                    path.set_node(idx, n);
                    self.relink(path, idx, Some(n));
                }
                (only, None) | (None, only) => self.relink(path, idx, only),
            }
            self.len -= 1;
            let mut shrunk = true;
            let mut i = path.len;
            while i > 0 {
                i -= 1;
                let n = path.node(i);
                if shrunk {
                    let b = balance(n) - if path.went_right(i) { 1 } else { -1 };
                    match b {
                        -1 | 1 => {
                            set_balance(n, b);
                            shrunk = false;
                            Self::fix_max(n, s);
                        }
                        0 => {
                            set_balance(n, 0);
                            Self::fix_max(n, s);
                        }
                        _ => {
                            let (top, shorter) = Self::rebalance(n, b, s);
                            self.relink(path, i, Some(top));
                            shrunk = shorter;
                        }
                    }
                } else if i > idx {
                    // On the way to the successor's old place: it left
                    // these subtrees; `idx` itself must still count that.
                    Self::fix_max(n, s);
                } else if (O::AUGMENTED && max(n) > s.size) || !Self::fix_max(n, s) {
                    // Balanced, and word 3 unchanged (a larger chunk than
                    // the one removed is still below, or the recomputed
                    // value is the same): nothing above moves.
                    break;
                }
            }
        }
        Ok(())
    }

    /// Puts the free chunk `new` (of `new_size` bytes) in member `old`'s
    /// place. Under an address order `new` must sort where `old` did (no
    /// member lies between them), and takes over `old`'s node in O(log n)
    /// without rebalancing; under a size order it does so too when its key
    /// still sorts between `old`'s neighbours, and is otherwise a remove
    /// and an insert.
    ///
    /// # Safety
    ///
    /// `old` is as for [`remove`](Self::remove) with `old_size`; `new` is
    /// as for [`insert`](Self::insert) with `new_size`. `new`'s words may
    /// overlap `old`'s: `old`'s are read before `new`'s are written.
    ///
    /// # Errors
    ///
    /// As [`remove`](Self::remove) (`old`'s links are checked the same
    /// way); nothing is changed then.
    ///
    /// # Example
    ///
    /// A chunk split from its front: the remainder takes its place.
    ///
    /// ```
    /// use core::ptr::NonNull;
    /// use freespace_freelist::tree::{ByAddressMax, Tree};
    /// use freespace_freelist::{Chunk, Flags};
    /// let mut memory = [0u128; 8];
    /// let c = Chunk::new(NonNull::from(&mut memory).cast());
    /// let mut tree = Tree::<ByAddressMax>::new();
    /// // SAFETY: a 128-byte free chunk in `memory`, ours alone; the
    /// // remainder lies inside it.
    /// unsafe {
    ///     c.write_free(128, Flags::empty());
    ///     tree.insert(c, 128).unwrap();
    ///     let rest = c.forward(48);
    ///     tree.replace(c, 128, rest, 80).unwrap();
    ///     rest.write_free(80, Flags::empty());
    ///     assert_eq!(tree.first(), Some(rest));
    /// }
    /// tree.check(&mut |_, size| { assert_eq!(size, 80); Ok(()) }).unwrap();
    /// ```
    pub unsafe fn replace(
        &mut self,
        old: Chunk,
        old_size: usize,
        new: Chunk,
        new_size: usize,
    ) -> Result<(), Corruption> {
        // SAFETY: (for the whole body) caller contract; `old` is found from
        // the root before anything is written.
        unsafe {
            let old_s = Subject {
                chunk: old,
                size: old_size,
            };
            let mut path = Path::new();
            self.path_to(old_s, &mut path)?;
            let (l, r, b) = Self::links_of(old_s)?;
            let new_key = Key {
                addr: new.addr(),
                size: new_size,
            };
            if O::BY_SIZE && !Self::sorts_in_place(&path, l, r, new_key, old_s) {
                self.unlink(old_s, &mut path, (l, r, b))?;
                return self.insert(new, new_size);
            }
            let old_max = if O::AUGMENTED { max(old) } else { 0 };
            set_left_and_balance(new, l, b);
            set_right(new, r);
            self.relink(&path, path.len, Some(new));
            let s = Subject {
                chunk: new,
                size: new_size,
            };
            // `new` inherits `old`'s word 3, so that an unchanged value
            // stops the walk up.
            if O::AUGMENTED {
                new.set_field(MAX, old_max);
            }
            if Self::fix_max(new, s) {
                Self::fix_max_up(&path, s);
            }
        }
        Ok(())
    }

    /// Member `c` changed size from `old_size` to `new_size` (its size word
    /// may already say either).
    ///
    /// # Safety
    ///
    /// As [`remove`](Self::remove) with `old_size`, and `c` stays a free
    /// chunk of at least `new_size` bytes (larger than
    /// [`MIN_CHUNK`](crate::MIN_CHUNK) under an augmented order).
    ///
    /// # Errors
    ///
    /// As [`remove`](Self::remove); nothing is changed then.
    ///
    /// # Example
    ///
    /// ```
    /// use core::ptr::NonNull;
    /// use freespace_freelist::tree::Tree;
    /// use freespace_freelist::{Chunk, Flags};
    /// # use freespace_freelist::tree::{Key, Order};
    /// # /// Smallest first (best fit's order, which lives in its crate).
    /// # enum BySize {}
    /// # impl Order for BySize {
    /// #     const AUGMENTED: bool = false;
    /// #     const BY_SIZE: bool = true;
    /// #     fn before(a: Key, b: Key) -> bool { (a.size, a.addr) < (b.size, b.addr) }
    /// # }
    /// let mut memory = [0u128; 8];
    /// let c = Chunk::new(NonNull::from(&mut memory).cast());
    /// let mut tree = Tree::<BySize>::new();
    /// // SAFETY: a free chunk in `memory`, ours alone, shrunk in place.
    /// unsafe {
    ///     c.write_free(128, Flags::empty());
    ///     tree.insert(c, 128).unwrap();
    ///     c.write_free(64, Flags::empty());
    ///     tree.resize(c, 128, 64).unwrap();
    /// }
    /// assert_eq!(tree.lower_bound(Key { addr: 0, size: 65 }), None);
    /// assert_eq!(tree.lower_bound(Key { addr: 0, size: 64 }), Some(c));
    /// ```
    pub unsafe fn resize(
        &mut self,
        c: Chunk,
        old_size: usize,
        new_size: usize,
    ) -> Result<(), Corruption> {
        // SAFETY: (for the whole body) caller contract.
        unsafe {
            if O::BY_SIZE {
                if old_size == new_size {
                    return Ok(());
                }
                let old_s = Subject {
                    chunk: c,
                    size: old_size,
                };
                let mut path = Path::new();
                self.path_to(old_s, &mut path)?;
                let (l, r, b) = Self::links_of(old_s)?;
                let new_key = Key {
                    addr: c.addr(),
                    size: new_size,
                };
                if !Self::sorts_in_place(&path, l, r, new_key, old_s) {
                    self.unlink(old_s, &mut path, (l, r, b))?;
                    self.insert(c, new_size)?;
                }
                return Ok(());
            }
            if !O::AUGMENTED {
                return Ok(());
            }
            let mut path = Path::new();
            self.path_to(
                Subject {
                    chunk: c,
                    size: old_size,
                },
                &mut path,
            )?;
            let s = Subject {
                chunk: c,
                size: new_size,
            };
            if Self::fix_max(c, s) {
                Self::fix_max_up(&path, s);
            }
        }
        Ok(())
    }

    // ------------------------------------------------------------------
    // lookups
    // ------------------------------------------------------------------

    /// Whether `c`, sorted under `size`, is a member.
    ///
    /// ```
    /// use core::ptr::NonNull;
    /// use freespace_freelist::tree::{ByAddress, Tree};
    /// use freespace_freelist::Chunk;
    /// let mut x = [0u128; 2];
    /// let c = Chunk::new(NonNull::from(&mut x).cast());
    /// assert!(!Tree::<ByAddress>::new().contains(c, 32));
    /// ```
    pub fn contains(&self, c: Chunk, size: usize) -> bool {
        let mut path = Path::new();
        // SAFETY: only members are read (FL-T1, FL-T2); `c` itself is compared,
        // not read.
        unsafe { self.path_to(Subject { chunk: c, size }, &mut path) }.is_ok()
    }

    /// The first member in order.
    ///
    /// ```
    /// assert!(freespace_freelist::tree::Tree::<freespace_freelist::tree::ByAddress>::new().first().is_none());
    /// ```
    pub fn first(&self) -> Option<Chunk> {
        let mut at = self.root?;
        for _ in 0..MAX_DEPTH {
            // SAFETY: `at` was reached from the root: a member (FL-T1, FL-T2).
            match unsafe { left(at) } {
                Some(l) => at = l,
                None => return Some(at),
            }
        }
        None
    }

    /// The last member in order.
    ///
    /// ```
    /// assert!(freespace_freelist::tree::Tree::<freespace_freelist::tree::ByAddress>::new().last().is_none());
    /// ```
    pub fn last(&self) -> Option<Chunk> {
        let mut at = self.root?;
        for _ in 0..MAX_DEPTH {
            // SAFETY: `at` was reached from the root: a member (FL-T1, FL-T2).
            match unsafe { right(at) } {
                Some(r) => at = r,
                None => return Some(at),
            }
        }
        None
    }

    /// The first member that does not sort before `key`.
    ///
    /// ```
    /// use freespace_freelist::tree::{ByAddress, Key, Tree};
    /// assert!(Tree::<ByAddress>::new().lower_bound(Key { addr: 0, size: 64 }).is_none());
    /// ```
    pub fn lower_bound(&self, key: Key) -> Option<Chunk> {
        self.partition::<false>(|k| !O::before(k, key))
    }

    /// The first member that sorts after `key`.
    ///
    /// ```
    /// use freespace_freelist::tree::{ByAddress, Key, Tree};
    /// assert!(Tree::<ByAddress>::new().after(Key { addr: 0, size: 0 }).is_none());
    /// ```
    pub fn after(&self, key: Key) -> Option<Chunk> {
        self.partition::<false>(|k| O::before(key, k))
    }

    /// The last member that does not sort after `key`: the member at `key`,
    /// else the one just before it. With [`ByAddress`], the member at or
    /// below an address, so a tree of the chunks that begin each range
    /// finds the range holding an address in O(log n).
    ///
    /// ```
    /// use core::ptr::NonNull;
    /// use freespace_freelist::tree::{ByAddress, Key, Tree};
    /// use freespace_freelist::{Chunk, Flags};
    /// let mut memory = [0u128; 8];
    /// let a = Chunk::new(NonNull::from(&mut memory).cast());
    /// let mut tree = Tree::<ByAddress>::new();
    /// // SAFETY: two 32-byte free chunks in `memory`, ours alone.
    /// let b = unsafe {
    ///     let b = a.forward(64);
    ///     a.write_free(32, Flags::empty());
    ///     b.write_free(32, Flags::empty());
    ///     tree.insert(a, 32).unwrap();
    ///     tree.insert(b, 32).unwrap();
    ///     b
    /// };
    /// let at = |addr| tree.at_or_before(Key { addr, size: 0 });
    /// assert_eq!(at(a.addr() + 40), Some(a));
    /// assert_eq!(at(b.addr()), Some(b));
    /// assert_eq!(at(a.addr() - 16), None);
    /// ```
    pub fn at_or_before(&self, key: Key) -> Option<Chunk> {
        self.partition::<true>(|k| O::before(key, k))
    }

    /// A member on one side of the point where `later`, a predicate that
    /// is false for a prefix of the order and true for the rest, turns
    /// true: with `LAST_BEFORE` the last member it is false for, else the
    /// first it is true for. One walk from the root; the size word is read
    /// only if the order sorts by it.
    fn partition<const LAST_BEFORE: bool>(&self, later: impl Fn(Key) -> bool) -> Option<Chunk> {
        let mut found = None;
        let mut at = self.root;
        let mut depth = 0;
        while let Some(n) = at {
            depth += 1;
            if depth > MAX_DEPTH {
                return None;
            }
            // SAFETY: `n` was reached from the root: a member (FL-T1, FL-T2).
            unsafe {
                let k = Key {
                    addr: n.addr(),
                    size: if O::BY_SIZE { n.size() } else { 0 },
                };
                if later(k) {
                    if !LAST_BEFORE {
                        found = Some(n);
                    }
                    at = left(n);
                } else {
                    if LAST_BEFORE {
                        found = Some(n);
                    }
                    at = right(n);
                }
            }
        }
        found
    }

    /// The member of `chunk`'s size or more that sorts next after `chunk`
    /// (which need not be a member). Under an augmented order this prunes
    /// every subtree whose largest size is too small: O(log n).
    ///
    /// ```
    /// use freespace_freelist::tree::{ByAddressMax, Key, Tree};
    /// let tree = Tree::<ByAddressMax>::new();
    /// assert!(tree.first_at_least(Key { addr: 0, size: 64 }).is_none());
    /// ```
    pub fn first_at_least(&self, from: Key) -> Option<Chunk> {
        if !O::AUGMENTED {
            // Without sizes in the nodes, walk the order.
            let mut at = self.lower_bound(from);
            while let Some(n) = at {
                // SAFETY: `n` is a member (FL-T1).
                let size = unsafe { n.size() };
                if size >= from.size {
                    return Some(n);
                }
                at = self.after(Key {
                    addr: n.addr(),
                    size,
                });
            }
            return None;
        }
        let need = from.size;
        if from.addr == 0 && !O::BY_SIZE {
            // From the very start (first fit): one descent.
            let root = self.root?;
            // SAFETY: the root is a member of an augmented tree (FL-T1, FL-T4).
            return unsafe {
                if max(root) < need {
                    None
                } else {
                    Self::leftmost_at_least(root, need)
                }
            };
        }
        // Candidates: the nodes at or after `from` on the search path, each
        // with its right subtree; deeper ones come first in order.
        let mut candidates = Path::new();
        let mut at = self.root;
        // SAFETY: (for the whole body) every node is reached from the root:
        // a member of an augmented tree (FL-T1, FL-T2, FL-T4).
        unsafe {
            while let Some(n) = at {
                if max(n) < need {
                    break;
                }
                let k = Key {
                    addr: n.addr(),
                    size: n.size(),
                };
                if O::before(k, from) {
                    at = right(n);
                } else {
                    candidates.push(n, false).ok()?;
                    at = left(n);
                }
            }
            for i in (0..candidates.len).rev() {
                let n = candidates.node(i);
                if n.size() >= need {
                    return Some(n);
                }
                if let Some(r) = right(n) {
                    if max(r) >= need {
                        return Self::leftmost_at_least(r, need);
                    }
                }
            }
        }
        None
    }

    /// The first node of the subtree at `n` whose size is at least `need`.
    ///
    /// # Safety
    ///
    /// `n` is a member of an augmented tree.
    unsafe fn leftmost_at_least(mut n: Chunk, need: usize) -> Option<Chunk> {
        for _ in 0..MAX_DEPTH {
            // SAFETY: `n` and its children are members (caller, FL-T2, FL-T4).
            unsafe {
                if let Some(l) = left(n) {
                    if max(l) >= need {
                        n = l;
                        continue;
                    }
                }
                if n.size() >= need {
                    return Some(n);
                }
                match right(n) {
                    Some(r) if max(r) >= need => n = r,
                    _ => return None,
                }
            }
        }
        None
    }

    /// Calls `visit` with every member and its size, in order.
    ///
    /// ```
    /// let tree = freespace_freelist::tree::Tree::<freespace_freelist::tree::ByAddress>::new();
    /// let mut n = 0;
    /// tree.for_each(&mut |_, _| n += 1);
    /// assert_eq!(n, 0);
    /// ```
    pub fn for_each(&self, visit: &mut dyn FnMut(Chunk, usize)) {
        fn walk(n: Option<Chunk>, depth: usize, visit: &mut dyn FnMut(Chunk, usize)) {
            let Some(n) = n else { return };
            if depth > MAX_DEPTH {
                return;
            }
            // SAFETY: reached from the root: a member (FL-T1, FL-T2).
            unsafe {
                walk(left(n), depth + 1, visit);
                visit(n, n.size());
                walk(right(n), depth + 1, visit);
            }
        }
        walk(self.root, 0, visit);
    }

    /// Calls `visit` with every member of `min` bytes or more and its size,
    /// in order. An augmented tree skips every subtree whose largest size
    /// is below `min`, so finding the `k` such members of `n` costs
    /// O(k log n) however many smaller ones there are.
    ///
    /// ```
    /// use core::ptr::NonNull;
    /// use freespace_freelist::tree::{ByAddressMax, Tree};
    /// use freespace_freelist::{Chunk, Flags};
    /// let mut memory = [0u128; 16];
    /// let base = Chunk::new(NonNull::from(&mut memory).cast());
    /// let mut tree = Tree::<ByAddressMax>::new();
    /// // SAFETY: free chunks of 48, 160 and 48 bytes, disjoint parts of
    /// // `memory`, ours alone.
    /// unsafe {
    ///     for (offset, size) in [(0, 48), (48, 160), (208, 48)] {
    ///         let c = base.forward(offset);
    ///         c.write_free(size, Flags::empty());
    ///         tree.insert(c, size).unwrap();
    ///     }
    /// }
    /// let mut found = Vec::new();
    /// tree.for_each_at_least(64, &mut |c, size| found.push((c.addr() - base.addr(), size)));
    /// assert_eq!(found, [(48, 160)]);
    /// ```
    pub fn for_each_at_least(&self, min: usize, visit: &mut dyn FnMut(Chunk, usize)) {
        fn walk<O: Order>(
            n: Option<Chunk>,
            depth: usize,
            min: usize,
            visit: &mut dyn FnMut(Chunk, usize),
        ) {
            let Some(n) = n else { return };
            if depth > MAX_DEPTH {
                return;
            }
            // SAFETY: reached from the root: a member (FL-T1, FL-T2), whose
            // word 3 is its subtree's largest size if augmented (FL-T4).
            unsafe {
                if O::AUGMENTED && max(n) < min {
                    return;
                }
                walk::<O>(left(n), depth + 1, min, visit);
                let size = n.size();
                if size >= min {
                    visit(n, size);
                }
                walk::<O>(right(n), depth + 1, min, visit);
            }
        }
        walk::<O>(self.root, 0, min, visit);
    }

    /// Verifies FL-T1–T5, calling `each` with every member and its size (the
    /// owner's own checks on members).
    ///
    /// # Time complexity
    ///
    /// O(n).
    ///
    /// # Errors
    ///
    /// The first [`Violation`] found (labelled FL-T1–T5), or the first `each`
    /// returned.
    ///
    /// ```
    /// let tree = freespace_freelist::tree::Tree::<freespace_freelist::tree::ByAddress>::new();
    /// assert!(tree.check(&mut |_, _| Ok(())).is_ok());
    /// ```
    pub fn check(
        &self,
        each: &mut dyn FnMut(Chunk, usize) -> Result<(), Violation>,
    ) -> Result<(), Violation> {
        struct Walk<'a> {
            count: usize,
            prev: Option<Key>,
            each: &'a mut dyn FnMut(Chunk, usize) -> Result<(), Violation>,
        }
        /// Returns the subtree's height and largest size.
        fn walk<O: Order>(
            n: Option<Chunk>,
            depth: usize,
            w: &mut Walk<'_>,
        ) -> Result<(usize, usize), Violation> {
            let Some(n) = n else { return Ok((0, 0)) };
            let addr = n.addr();
            if depth >= MAX_DEPTH {
                return Err(Violation::new(
                    "FL-T3",
                    addr,
                    "tree deeper than any AVL tree",
                ));
            }
            if addr % GRANULE != 0 {
                return Err(Violation::new("FL-T1", addr, "tree node misaligned"));
            }
            // SAFETY: (for the whole body) reached from the root by links
            // that FL-T2 says lead to members; the checks stop at the first
            // sign they do not.
            unsafe {
                if n.flags().contains(Flags::ALLOCATED) {
                    return Err(Violation::new(
                        "FL-T1",
                        addr,
                        "tree node is not a free chunk",
                    ));
                }
                let size = n.size();
                if O::AUGMENTED && size <= crate::MIN_CHUNK {
                    return Err(Violation::new(
                        "FL-T1",
                        addr,
                        "chunk too small for an augmented tree",
                    ));
                }
                let (lh, lmax) = walk::<O>(left(n), depth + 1, w)?;
                let key = Key { addr, size };
                if let Some(p) = w.prev {
                    if !O::before(p, key) {
                        return Err(Violation::new("FL-T2", addr, "tree out of order"));
                    }
                }
                w.prev = Some(key);
                w.count += 1;
                (w.each)(n, size)?;
                let (rh, rmax) = walk::<O>(right(n), depth + 1, w)?;
                let b = rh as isize - lh as isize;
                let tag = n.raw_link(LEFT).addr() & BALANCE_MASK;
                if !(-1..=1).contains(&b) || tag != balance_tag(b as i8) {
                    return Err(Violation::new("FL-T3", addr, "tree node out of balance"));
                }
                let m = size.max(lmax).max(rmax);
                if O::AUGMENTED && max(n) != m {
                    return Err(Violation::new(
                        "FL-T4",
                        addr,
                        "subtree's largest size is wrong",
                    ));
                }
                Ok((1 + lh.max(rh), m))
            }
        }
        let mut w = Walk {
            count: 0,
            prev: None,
            each,
        };
        walk::<O>(self.root, 0, &mut w)?;
        if w.count != self.len {
            return Err(Violation::new("FL-T5", 0, "tree length is wrong"));
        }
        Ok(())
    }
}

impl<O: Order> Default for Tree<O> {
    fn default() -> Self {
        Self::new()
    }
}
