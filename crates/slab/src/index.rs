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
//! It is an open-addressing hash set (linear probing, backward-shift
//! deletion, load at most 1/2) whose table is itself allocated from the
//! parent and freed when the last slab leaves.
//!
//! # Invariants
//! - SLAB-I1: `len` slots are `Some`; `cap` is 0 (no table) or a power of two
//!   `>= MIN_CAP` with `len * 2 <= cap`.
//! - SLAB-I2: every slab is reachable from its home slot by probing forward
//!   without crossing a `None`.

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
}

impl Index {
    pub(crate) const fn new(slab_size: usize) -> Self {
        Self {
            table: Cell::new(None),
            cap: Cell::new(0),
            len: Cell::new(0),
            shift: slab_size.trailing_zeros(),
        }
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
        }
    }

    /// Frees the table (the index must be empty, or its slabs forgotten).
    pub(crate) fn release_table<A: Allocator>(&self, parent: &A) {
        if let Some(table) = self.table.take() {
            let cap = self.cap.replace(0);
            self.len.set(0);
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

    /// Checks SLAB-I1 and SLAB-I2.
    pub(crate) fn check(&self) -> Result<(), Violation> {
        let cap = self.cap.get();
        let at = self.table.get().map_or(0, |t| t.as_ptr().addr());
        if cap == 0 {
            return if self.len.get() == 0 && self.table.get().is_none() {
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
        for i in 0..cap {
            // SAFETY: `i < cap`, the table exists.
            if let Some(s) = unsafe { self.slot(i).read() } {
                len += 1;
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
        Ok(())
    }
}
