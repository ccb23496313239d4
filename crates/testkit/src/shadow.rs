//! A shadow model of an allocator's live blocks.
//!
//! Every block an allocator hands out is recorded here with the fill pattern
//! written into it. The model fails on a block that overlaps another live
//! block, is shorter than asked, is misaligned, or whose contents changed
//! while its owner was not looking.

use std::collections::BTreeMap;
use std::ptr::NonNull;

/// One live block as the model sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// Bytes the user asked for.
    pub size: usize,
    /// Bytes the allocator returned (at least `size`).
    pub len: usize,
    /// Alignment asked for.
    pub align: usize,
    /// Seed of the fill pattern written over all `len` bytes.
    pub seed: u8,
}

/// Period of the fill pattern: a prime, so no power-of-two shift of a block
/// (a copy from the wrong offset) reproduces it.
const PERIOD: usize = 251;

/// The fill byte at offset `i` of a block filled with `seed`.
#[inline]
pub const fn pattern(seed: u8, i: usize) -> u8 {
    let j = (i % PERIOD) as u8;
    j.wrapping_mul(31).wrapping_add(seed) ^ (j >> 3)
}

/// One period of every seed's pattern, computed at compile time (64 KiB):
/// filling and verifying copy and compare slices of it instead of
/// recomputing the pattern for each block.
static ROWS: [[u8; PERIOD]; 256] = {
    let mut rows = [[0; PERIOD]; 256];
    let mut seed = 0;
    while seed < 256 {
        let mut i = 0;
        while i < PERIOD {
            rows[seed][i] = pattern(seed as u8, i);
            i += 1;
        }
        seed += 1;
    }
    rows
};

/// One period of `seed`'s pattern.
fn row(seed: u8) -> &'static [u8; PERIOD] {
    &ROWS[usize::from(seed)]
}

/// The live blocks of one allocator, keyed by address.
///
/// ```
/// use std::ptr::NonNull;
/// use freespace_testkit::shadow::Shadow;
/// let mut buf = [0u8; 64];
/// let p = NonNull::from(&mut buf).cast::<u8>();
/// let mut s = Shadow::new();
/// // SAFETY: `buf` is 64 writable bytes that only the shadow touches now.
/// unsafe { s.insert(p, 16, 64, 1, 7).unwrap() };
/// // SAFETY: the block is still live and unchanged.
/// unsafe { s.verify(p).unwrap() };
/// assert!(unsafe { s.insert(p, 8, 8, 1, 9) }.is_err(), "overlap is caught");
/// ```
#[derive(Debug, Default)]
pub struct Shadow {
    live: BTreeMap<usize, (NonNull<u8>, Entry)>,
    /// Sum of the live entries' `size`s, kept as they come and go.
    live_bytes: usize,
}

impl Shadow {
    /// An empty model.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of live blocks.
    pub fn len(&self) -> usize {
        self.live.len()
    }

    /// Whether no block is live.
    pub fn is_empty(&self) -> bool {
        self.live.is_empty()
    }

    /// Sum of the requested sizes of the live blocks.
    pub fn live_bytes(&self) -> usize {
        self.live_bytes
    }

    /// Records a fresh block of `len` bytes at `ptr` (asked: `size` bytes
    /// aligned to `align`), checks it, and fills it with `seed`'s pattern.
    ///
    /// # Safety
    ///
    /// `ptr` must be valid for writes of `len` bytes if the checks pass (the
    /// allocator under test promised it).
    pub unsafe fn insert(
        &mut self,
        ptr: NonNull<u8>,
        size: usize,
        len: usize,
        align: usize,
        seed: u8,
    ) -> Result<(), String> {
        let addr = ptr.as_ptr() as usize;
        if len < size {
            return Err(format!(
                "short block: asked {size} bytes, got {len} at {addr:#x}"
            ));
        }
        if addr % align != 0 {
            return Err(format!(
                "misaligned block: {addr:#x} is not aligned to {align}"
            ));
        }
        let end = addr
            .checked_add(len)
            .ok_or_else(|| format!("block at {addr:#x} of {len} bytes wraps the address space"))?;
        if len == 0 {
            // Zero-length blocks (the dangling pointer of a zero-size
            // request) may share an address; there is nothing to track.
            return Ok(());
        }
        if let Some((&a, &(_, e))) = self.live.range(..end).next_back() {
            if a + e.len > addr {
                return Err(format!(
                    "overlap: new block {addr:#x}..{end:#x} overlaps live block {a:#x}..{:#x}",
                    a + e.len
                ));
            }
        }
        // SAFETY: the checks passed and the caller vouches for `len` writable
        // bytes at `ptr`.
        unsafe { fill(ptr, 0, len, seed) };
        self.live_bytes += size;
        self.live.insert(
            addr,
            (
                ptr,
                Entry {
                    size,
                    len,
                    align,
                    seed,
                },
            ),
        );
        Ok(())
    }

    /// The entry of the live block at `ptr`.
    pub fn get(&self, ptr: NonNull<u8>) -> Option<Entry> {
        self.live.get(&(ptr.as_ptr() as usize)).map(|&(_, e)| e)
    }

    /// Checks that the block at `ptr` still holds its fill pattern.
    ///
    /// # Safety
    ///
    /// The block must be live (readable for its recorded length).
    pub unsafe fn verify(&self, ptr: NonNull<u8>) -> Result<(), String> {
        let addr = ptr.as_ptr() as usize;
        let (p, e) = *self
            .live
            .get(&addr)
            .ok_or_else(|| format!("no live block at {addr:#x}"))?;
        // SAFETY: the block is live (caller) so its `len` bytes are readable.
        unsafe { verify_fill(p, 0, e.len, e.seed) }
    }

    /// Checks every live block's contents.
    ///
    /// # Safety
    ///
    /// Every recorded block must still be live.
    pub unsafe fn verify_all(&self) -> Result<(), String> {
        for (&addr, &(p, e)) in &self.live {
            // SAFETY: every recorded block is live (caller).
            unsafe { verify_fill(p, 0, e.len, e.seed) }
                .map_err(|m| format!("block {addr:#x}: {m}"))?;
        }
        Ok(())
    }

    /// Forgets the block at `ptr` (it is about to be freed or moved).
    pub fn remove(&mut self, ptr: NonNull<u8>) -> Option<Entry> {
        let (_, e) = self.live.remove(&(ptr.as_ptr() as usize))?;
        self.live_bytes -= e.size;
        Some(e)
    }

    /// Every live block, in address order.
    pub fn blocks(&self) -> impl Iterator<Item = (NonNull<u8>, Entry)> + '_ {
        self.live.values().copied()
    }
}

/// Writes `seed`'s pattern over bytes `from..to` of the block at `ptr`.
///
/// Copies whole periods at a time, so a large block costs a few `memcpy`s
/// (which keeps Miri fast) rather than a loop of byte writes.
///
/// # Safety
///
/// `ptr..ptr+to` must be valid for writes.
pub unsafe fn fill(ptr: NonNull<u8>, from: usize, to: usize, seed: u8) {
    let row = row(seed);
    let mut i = from;
    while i < to {
        let phase = i % PERIOD;
        let n = (PERIOD - phase).min(to - i);
        // SAFETY: `i + n <= to` and the caller vouches for `to` writable
        // bytes; `row[phase..phase + n]` is in bounds.
        unsafe { core::ptr::copy_nonoverlapping(row.as_ptr().add(phase), ptr.as_ptr().add(i), n) };
        i += n;
    }
}

/// Checks `seed`'s pattern over bytes `from..to` of the block at `ptr`.
///
/// # Safety
///
/// `ptr..ptr+to` must be valid for reads.
pub unsafe fn verify_fill(
    ptr: NonNull<u8>,
    from: usize,
    to: usize,
    seed: u8,
) -> Result<(), String> {
    let row = row(seed);
    let mut i = from;
    while i < to {
        let phase = i % PERIOD;
        let n = (PERIOD - phase).min(to - i);
        // SAFETY: `i + n <= to` and the caller vouches for `to` readable bytes.
        let got = unsafe { core::slice::from_raw_parts(ptr.as_ptr().add(i), n) };
        if got != &row[phase..phase + n] {
            let k = (0..n).find(|&k| got[k] != row[phase + k]).unwrap_or(0);
            return Err(format!(
                "contents lost: byte {} of block {:#x} is {:#04x}, expected {:#04x}",
                i + k,
                ptr.as_ptr() as usize,
                got[k],
                row[phase + k]
            ));
        }
        i += n;
    }
    Ok(())
}
