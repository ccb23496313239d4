//! The size-class series the caching layers share.
//!
//! A layer that rounds requests up to a class (the slab allocator's default
//! classes, the thread caches' magazines) wastes at most the gap to the next
//! class. This series keeps that gap small: 16-byte steps up to 64 bytes,
//! then four classes per doubling (at most 25 % over a request beyond 64
//! bytes, about 12.5 % on average), the spacing of jemalloc and mimalloc.
//!
//! ```
//! use freespace_core::size_class::{class_for, SERIES};
//! assert_eq!(&SERIES[..8], &[16, 32, 48, 64, 80, 96, 112, 128]);
//! assert_eq!(class_for(100), Some(6)); // the 112-byte class
//! assert_eq!(class_for(SERIES[SERIES.len() - 1] + 1), None);
//! ```

/// Every class size, increasing: multiples of 16 from 16 B to 32 KiB.
pub const SERIES: &[usize] = &[
    16, 32, 48, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384, 448, 512, 640, 768, 896, 1024,
    1280, 1536, 1792, 2048, 2560, 3072, 3584, 4096, 5120, 6144, 7168, 8192, 10240, 12288, 14336,
    16384, 20480, 24576, 28672, 32768,
];

/// How many classes of [`SERIES`] are at most `limit` bytes.
///
/// ```
/// assert_eq!(freespace_core::size_class::count_up_to(1024), 20);
/// ```
pub const fn count_up_to(limit: usize) -> usize {
    let mut n = 0;
    while n < SERIES.len() && SERIES[n] <= limit {
        n += 1;
    }
    n
}

/// The index of the smallest class of at least `size` bytes, or `None` when
/// `size` is larger than every class. A search; layers on a hot path build
/// a lookup table from it at compile time.
///
/// ```
/// use freespace_core::size_class::class_for;
/// assert_eq!(class_for(0), Some(0));
/// assert_eq!(class_for(16), Some(0));
/// assert_eq!(class_for(17), Some(1));
/// ```
pub const fn class_for(size: usize) -> Option<usize> {
    let mut n = 0;
    while n < SERIES.len() {
        if SERIES[n] >= size {
            return Some(n);
        }
        n += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_series_is_increasing_granular_and_gaps_stay_within_a_quarter() {
        assert!(SERIES.windows(2).all(|w| w[0] < w[1]));
        assert!(SERIES.iter().all(|&s| s % 16 == 0));
        for w in SERIES.windows(2).filter(|w| w[0] >= 64) {
            assert!(w[1] - w[0] <= w[0] / 4, "{w:?}");
        }
        // Every size natively; under Miri (slow) the sizes next to each
        // class boundary, where an off-by-one would show.
        let sizes: std::vec::Vec<usize> = if cfg!(miri) {
            SERIES.iter().flat_map(|&s| [s - 1, s, s + 1]).collect()
        } else {
            (1..=SERIES[SERIES.len() - 1] + 1).collect()
        };
        for size in sizes {
            match class_for(size) {
                Some(c) => assert!(SERIES[c] >= size && (c == 0 || SERIES[c - 1] < size)),
                None => assert!(size > SERIES[SERIES.len() - 1]),
            }
        }
    }
}
