//! The set of slabs an allocator holds, keyed by slab base address.
//!
//! Address arithmetic (`ptr & !(SLAB_SIZE - 1)`) names the slab a pointer
//! *would* belong to; the index says whether that slab is really ours before
//! a single byte of it is read. Reading a "header" at a masked address of a
//! pointer we never handed out would read memory we do not own (undefined
//! behaviour, and a segfault if it is unmapped) and would let user data
//! that imitates a header pass as one. With the index:
//!
//! - a foreign pointer is reported without touching its memory;
//! - `Owns` and `BlockSize` give exact answers, even for a block forwarded
//!   to the parent that happens to start at a slab-aligned address;
//! - the header is read through the pointer the parent returned for the
//!   slab, so provenance is always the whole slab's.
//!
//! The index also keeps the *span* of its slabs (lowest and highest base):
//! [`crate::Slab`]'s plain free, whose pointer's origin the `deallocate`
//! contract vouches for, reads the header of a pointer in the span without
//! a lookup (the seal then says whether it is one of ours); the lookup is
//! for pointers whose origin is in doubt (`try_deallocate`, `Owns`,
//! `BlockSize`, and any free that fails the fast checks).
//!
//! It is an open-addressing hash set (linear probing, backward-shift
//! deletion, load at most 1/2) whose table is itself allocated from the
//! parent and freed when the last slab leaves.
//!
//! # Invariants
//! - SLAB-I1: `len` slots are `Some`; `cap` is 0 (no table) or a power of two
//!   `>= MIN_CAP` with `len * 2 <= cap`.
//! - SLAB-I2: every slab is reachable from its home slot by probing forward
//!   without crossing a `None`.
//! - SLAB-I3: `lo` and `hi` are the lowest and highest base of a slab in the
//!   index (`usize::MAX` and 0 when it is empty).

use crate::one_slab::SlabPtr;
use core::cell::Cell;
use core::ptr::NonNull;
use freespace_core::alloc::{AllocError, Allocator, Layout};
use freespace_core::Violation;

/// Smallest table.
const MIN_CAP: usize = 8;

/// Fibonacci hashing multiplier (2^64 / φ, truncated on 32-bit targets).
const PHI: usize = 0x9e37_79b9_7f4a_7c15_u64 as usize;

type Slot = Option<SlabPtr>;

pub(crate) struct Index {
    table: Cell<Option<NonNull<Slot>>>,
    cap: Cell<usize>,
    len: Cell<usize>,
    /// `log2(slab size)`: slab bases differ in the bits above it.
    shift: u32,
    /// Lowest slab base (SLAB-I3).
    lo: Cell<usize>,
    /// Highest slab base (SLAB-I3).
    hi: Cell<usize>,
}

impl Index {
    pub(crate) const fn new(slab_size: usize) -> Self {
        Self {
            table: Cell::new(None),
            cap: Cell::new(0),
            len: Cell::new(0),
            shift: slab_size.trailing_zeros(),
            lo: Cell::new(usize::MAX),
            hi: Cell::new(0),
        }
    }

    /// Whether `base` lies between the lowest and highest slab (both
    /// included): the only places a slab-aligned header of ours can be.
    #[inline(always)]
    pub(crate) fn in_span(&self, base: usize) -> bool {
        base >= self.lo.get() && base <= self.hi.get()
    }

    /// Recomputes the span from the table (after the lowest or highest slab
    /// left).
    fn respan(&self) {
        let (mut lo, mut hi) = (usize::MAX, 0);
        for i in 0..self.cap.get() {
            // SAFETY: `i < cap`; the table exists when `cap > 0` (SLAB-I1).
            if let Some(s) = unsafe { self.slot(i).read() } {
                lo = lo.min(s.addr());
                hi = hi.max(s.addr());
            }
        }
        self.lo.set(lo);
        self.hi.set(hi);
    }

    pub(crate) fn len(&self) -> usize {
        self.len.get()
    }

    fn home(&self, base: usize) -> usize {
        let bits = self.cap.get().trailing_zeros();
        (base >> self.shift).wrapping_mul(PHI) >> (usize::BITS - bits)
    }

    /// # Safety
    /// `i < cap` and the table exists.
    unsafe fn slot(&self, i: usize) -> *mut Slot {
        let table = self.table.get().unwrap_or(NonNull::dangling());
        // SAFETY: `i < cap`, the table has `cap` slots (caller).
        unsafe { table.as_ptr().add(i) }
    }

    /// The slab whose base is `base`, if it is ours. O(1) expected.
    pub(crate) fn find(&self, base: usize) -> Option<SlabPtr> {
        let cap = self.cap.get();
        if cap == 0 {
            return None;
        }
        let mut i = self.home(base);
        loop {
            // SAFETY: `i < cap` (masked), the table exists since cap > 0 (SLAB-I1).
            match unsafe { self.slot(i).read() } {
                None => return None,
                Some(s) if s.addr() == base => return Some(s),
                Some(_) => i = (i + 1) & (cap - 1),
            }
        }
    }

    /// Adds `slab`, growing the table from `parent` if needed.
    pub(crate) fn insert<A: Allocator>(&self, parent: &A, slab: SlabPtr) -> Result<(), AllocError> {
        if (self.len.get() + 1) * 2 > self.cap.get() {
            self.grow(parent)?;
        }
        self.place(slab);
        self.len.set(self.len.get() + 1);
        self.lo.set(self.lo.get().min(slab.addr()));
        self.hi.set(self.hi.get().max(slab.addr()));
        Ok(())
    }

    /// Puts `slab` in the first empty slot from its home (room is ensured).
    fn place(&self, slab: SlabPtr) {
        let mask = self.cap.get() - 1;
        let mut i = self.home(slab.addr());
        // SAFETY: `i <= mask < cap`; the table exists (cap > 0). The load
        // limit (SLAB-I1) guarantees an empty slot, so the loop ends.
        unsafe {
            while self.slot(i).read().is_some() {
                i = (i + 1) & mask;
            }
            self.slot(i).write(Some(slab));
        }
    }

    fn layout(cap: usize) -> Result<Layout, AllocError> {
        Layout::array::<Slot>(cap).map_err(|_| AllocError)
    }

    fn grow<A: Allocator>(&self, parent: &A) -> Result<(), AllocError> {
        let old_cap = self.cap.get();
        let new_cap = if old_cap == 0 {
            MIN_CAP
        } else {
            old_cap.checked_mul(2).ok_or(AllocError)?
        };
        let table = parent.allocate(Self::layout(new_cap)?)?.cast::<Slot>();
        for i in 0..new_cap {
            // SAFETY: the new table has room for `new_cap` slots.
            unsafe { table.add(i).write(None) };
        }
        let old = self.table.replace(Some(table));
        self.cap.set(new_cap);
        if let Some(old) = old {
            for i in 0..old_cap {
                // SAFETY: `i < old_cap`, the old table's slot count.
                if let Some(s) = unsafe { old.add(i).read() } {
                    self.place(s);
                }
            }
            // SAFETY: `old` was allocated from `parent` with this layout
            // (Self::layout never failed for it).
            unsafe {
                parent.deallocate(
                    old.cast(),
                    Self::layout(old_cap).unwrap_or(Layout::new::<u8>()),
                )
            };
        }
        Ok(())
    }

    /// Removes `slab` (which must be present); frees the table when empty.
    pub(crate) fn remove<A: Allocator>(&self, parent: &A, slab: SlabPtr) {
        let cap = self.cap.get();
        if cap == 0 {
            return;
        }
        let mask = cap - 1;
        let mut i = self.home(slab.addr());
        // SAFETY: every slot index below is masked below `cap`, and the
        // table exists because `cap > 0` (SLAB-I1).
        unsafe {
            loop {
                match self.slot(i).read() {
                    None => return, // not present: nothing to do
                    Some(s) if s == slab => break,
                    Some(_) => i = (i + 1) & mask,
                }
            }
            // Backward-shift deletion keeps SLAB-I2 without tombstones.
            let mut hole = i;
            let mut j = (i + 1) & mask;
            while let Some(s) = self.slot(j).read() {
                let home = self.home(s.addr());
                // `s` may move into the hole iff its home is not in (hole, j].
                if (j.wrapping_sub(home) & mask) >= (j.wrapping_sub(hole) & mask) {
                    self.slot(hole).write(Some(s));
                    hole = j;
                }
                j = (j + 1) & mask;
            }
            self.slot(hole).write(None);
        }
        self.len.set(self.len.get() - 1);
        if self.len.get() == 0 {
            self.release_table(parent);
        } else if slab.addr() == self.lo.get() || slab.addr() == self.hi.get() {
            self.respan();
        }
    }

    /// Frees the table (the index must be empty, or its slabs forgotten).
    pub(crate) fn release_table<A: Allocator>(&self, parent: &A) {
        if let Some(table) = self.table.take() {
            let cap = self.cap.replace(0);
            self.len.set(0);
            self.lo.set(usize::MAX);
            self.hi.set(0);
            if let Ok(l) = Self::layout(cap) {
                // SAFETY: the table came from `parent` with this layout.
                unsafe { parent.deallocate(table.cast(), l) };
            }
        }
    }

    /// The table's address and length, for `Inspect` (reported as metadata).
    pub(crate) fn table_block(&self) -> Option<(usize, usize)> {
        let table = self.table.get()?;
        Some((
            table.as_ptr().addr(),
            self.cap.get() * core::mem::size_of::<Slot>(),
        ))
    }

    /// Checks SLAB-I1 to SLAB-I3.
    pub(crate) fn check(&self) -> Result<(), Violation> {
        let cap = self.cap.get();
        let at = self.table.get().map_or(0, |t| t.as_ptr().addr());
        if cap == 0 {
            return if self.len.get() == 0
                && self.table.get().is_none()
                && (self.lo.get(), self.hi.get()) == (usize::MAX, 0)
            {
                Ok(())
            } else {
                Err(Violation::new(
                    "SLAB-I1",
                    at,
                    "index has entries but no table",
                ))
            };
        }
        if !cap.is_power_of_two() || cap < MIN_CAP || self.len.get() * 2 > cap {
            return Err(Violation::new(
                "SLAB-I1",
                at,
                "index capacity or load out of range",
            ));
        }
        let mut len = 0;
        let (mut lo, mut hi) = (usize::MAX, 0);
        for i in 0..cap {
            // SAFETY: `i < cap`, the table exists.
            if let Some(s) = unsafe { self.slot(i).read() } {
                len += 1;
                lo = lo.min(s.addr());
                hi = hi.max(s.addr());
                if self.find(s.addr()) != Some(s) {
                    return Err(Violation::new(
                        "SLAB-I2",
                        s.addr(),
                        "slab unreachable from its home slot",
                    ));
                }
            }
        }
        if len != self.len.get() {
            return Err(Violation::new(
                "SLAB-I1",
                at,
                "index length differs from its slots",
            ));
        }
        if (lo, hi) != (self.lo.get(), self.hi.get()) {
            return Err(Violation::new(
                "SLAB-I3",
                at,
                "index span is not its lowest and highest slab",
            ));
        }
        Ok(())
    }
}
