//! Helpers shared by the sources' unit tests.

use core::ptr::NonNull;
use freespace_core::REGION_ALIGN;

/// Asserts `region` honours CORE-S3 for `min_len`, then writes every byte of it
/// with a pattern and reads the pattern back (CORE-S1).
pub(crate) fn assert_usable(region: NonNull<[u8]>, min_len: usize) {
    let start = region.cast::<u8>();
    assert_eq!(
        start.as_ptr() as usize % REGION_ALIGN,
        0,
        "region start misaligned"
    );
    assert_eq!(
        region.len() % REGION_ALIGN,
        0,
        "region length not a multiple"
    );
    assert!(region.len() >= min_len, "region shorter than asked");
    for i in 0..region.len() {
        // SAFETY: `i < region.len()` and the region is ours (CORE-S1, CORE-S2).
        unsafe { start.add(i).write(i as u8 ^ 0x5A) };
    }
    for i in 0..region.len() {
        // SAFETY: as above; every byte was just written.
        assert_eq!(unsafe { start.add(i).read() }, i as u8 ^ 0x5A);
    }
}

/// The address one past the end of `region`.
pub(crate) fn end(region: NonNull<[u8]>) -> usize {
    region.cast::<u8>().as_ptr() as usize + region.len()
}

/// The address of `region`'s first byte.
pub(crate) fn start(region: NonNull<[u8]>) -> usize {
    region.cast::<u8>().as_ptr() as usize
}

/// Requests no source can ever serve.
pub(crate) const HUGE: [usize; 5] = [
    usize::MAX,
    usize::MAX - 15,
    isize::MAX as usize,
    isize::MAX as usize - 14,
    isize::MAX as usize + 1,
];
