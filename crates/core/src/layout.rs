//! Checked size and alignment arithmetic.
//!
//! Every function here returns `None` where the exact answer does not fit in
//! a `usize`; none of them wraps or panics. Heaps build `size + header +
//! padding` from these so a huge layout becomes `Err(AllocError)`, not a
//! small wrapped size (the bug behind linked_list_allocator #60 and #85).

use crate::alloc::Layout;
use core::ptr::NonNull;

/// Rounds `value` up to a multiple of `align`, or `None` on overflow.
///
/// `align` must be a power of two; any other `align` gives `None`.
///
/// ```
/// use freespace_core::layout::align_up;
/// assert_eq!(align_up(17, 16), Some(32));
/// assert_eq!(align_up(32, 16), Some(32));
/// assert_eq!(align_up(usize::MAX, 16), None);
/// assert_eq!(align_up(5, 3), None);
/// ```
#[inline]
pub const fn align_up(value: usize, align: usize) -> Option<usize> {
    if !align.is_power_of_two() {
        return None;
    }
    let mask = align - 1;
    match value.checked_add(mask) {
        Some(v) => Some(v & !mask),
        None => None,
    }
}

/// Rounds `value` down to a multiple of `align` (a power of two).
///
/// ```
/// use freespace_core::layout::align_down;
/// assert_eq!(align_down(31, 16), 16);
/// ```
#[inline]
pub const fn align_down(value: usize, align: usize) -> usize {
    debug_assert!(align.is_power_of_two());
    value & !(align.wrapping_sub(1))
}

/// The whole `page`s (a power of two) inside `[start, start + len)`: their
/// start and length, or `None` when not one fits (or `page` is not a power
/// of two). What a source may decommit of a range it is given (CORE-S5).
///
/// ```
/// use freespace_core::layout::pages_inside;
/// assert_eq!(pages_inside(4096 + 16, 3 * 4096, 4096), Some((8192, 8192)));
/// assert_eq!(pages_inside(16, 4000, 4096), None);
/// ```
pub const fn pages_inside(start: usize, len: usize, page: usize) -> Option<(usize, usize)> {
    let Some(lo) = align_up(start, page) else {
        return None;
    };
    let Some(end) = start.checked_add(len) else {
        return None;
    };
    let hi = align_down(end, page);
    if hi > lo {
        Some((lo, hi - lo))
    } else {
        None
    }
}

/// Whether `value` is a multiple of `align` (a power of two).
///
/// ```
/// use freespace_core::layout::is_aligned;
/// assert!(is_aligned(4096, 4096) && !is_aligned(4097, 2));
/// ```
#[inline]
pub const fn is_aligned(value: usize, align: usize) -> bool {
    value & align.wrapping_sub(1) == 0
}

/// `a + b`, or `None` on overflow; a `const` spelling of
/// [`usize::checked_add`] that chains with `?` in the same expressions as the
/// other helpers.
///
/// ```
/// use freespace_core::layout::add;
/// assert_eq!(add(usize::MAX, 1), None);
/// ```
#[inline]
pub const fn add(a: usize, b: usize) -> Option<usize> {
    a.checked_add(b)
}

/// The request size rounded up to `granule` (a power of two) and to at least
/// `min`: the size class arithmetic every heap does first. `None` on overflow.
///
/// ```
/// use freespace_core::layout::round_request;
/// assert_eq!(round_request(1, 16, 32), Some(32));
/// assert_eq!(round_request(33, 16, 32), Some(48));
/// assert_eq!(round_request(usize::MAX - 3, 16, 32), None);
/// ```
#[inline]
pub const fn round_request(size: usize, granule: usize, min: usize) -> Option<usize> {
    let size = if size < min { min } else { size };
    align_up(size, granule)
}

/// The smallest power of two at least `max(layout.size(), layout.align())`,
/// or `None` if that does not fit: the block size a buddy or power-of-two
/// size class needs for `layout`.
///
/// ```
/// use freespace_core::alloc::Layout;
/// use freespace_core::layout::pow2_block;
/// assert_eq!(pow2_block(Layout::from_size_align(24, 8).unwrap()), Some(32));
/// assert_eq!(pow2_block(Layout::from_size_align(8, 64).unwrap()), Some(64));
/// ```
#[inline]
pub const fn pow2_block(layout: Layout) -> Option<usize> {
    let size = if layout.size() > layout.align() {
        layout.size()
    } else {
        layout.align()
    };
    size.checked_next_power_of_two()
}

/// The block every allocator returns for a zero-size request: a dangling,
/// well-aligned, zero-length pointer that never reaches a parent and whose
/// `deallocate` is a no-op.
///
/// ```
/// use freespace_core::alloc::Layout;
/// use freespace_core::layout::dangling;
/// let b = dangling(Layout::from_size_align(0, 64).unwrap());
/// assert_eq!(b.len(), 0);
/// assert_eq!(b.cast::<u8>().as_ptr() as usize % 64, 0);
/// ```
#[inline]
pub const fn dangling(layout: Layout) -> NonNull<[u8]> {
    // A pointer whose address is the alignment, with no provenance: it is
    // never dereferenced (its length is zero).
    let ptr = core::ptr::without_provenance_mut::<u8>(layout.align());
    // SAFETY: `layout.align()` is a non-zero power of two.
    let ptr = unsafe { NonNull::new_unchecked(ptr) };
    NonNull::slice_from_raw_parts(ptr, 0)
}

/// A pointer to `addr` that carries `base`'s provenance: every block pointer a
/// heap hands out is made with this (or `NonNull::add`) from the region
/// pointer its source returned, never cast from an integer.
///
/// Returns `None` for address 0.
///
/// ```
/// use core::ptr::NonNull;
/// use freespace_core::layout::with_addr;
/// let mut buf = [0u8; 8];
/// let base = NonNull::from(&mut buf).cast::<u8>();
/// let p = with_addr(base, base.as_ptr() as usize + 3).unwrap();
/// assert_eq!(p.as_ptr() as usize - base.as_ptr() as usize, 3);
/// ```
#[inline]
pub fn with_addr(base: NonNull<u8>, addr: usize) -> Option<NonNull<u8>> {
    NonNull::new(base.as_ptr().with_addr(addr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn align_up_never_wraps() {
        for align in [1usize, 2, 8, 16, 4096, 1 << 40] {
            for v in [
                0,
                1,
                align - 1,
                align,
                usize::MAX - align,
                usize::MAX - 1,
                usize::MAX,
            ] {
                match align_up(v, align) {
                    Some(r) => {
                        assert!(r >= v && r % align == 0 && r - v < align);
                    }
                    None => assert!(v > usize::MAX - (align - 1)),
                }
            }
        }
    }

    #[test]
    fn pow2_block_of_largest_layout_does_not_wrap() {
        // The largest valid layout is `isize::MAX` bytes; its power of two is
        // the top bit, which still fits.
        let l = Layout::from_size_align(isize::MAX as usize, 1).unwrap();
        assert_eq!(pow2_block(l), Some(1usize << (usize::BITS - 1)));
    }
}
