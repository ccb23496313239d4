//! [`RegionError`]: why a heap could not set up its first region, from the
//! checked constructor [`FreeListHeap::try_new`](crate::FreeListHeap::try_new).

use core::fmt;

use freespace_freelist::chunk::{FENCE, REGION_HEADER};
use freespace_freelist::MIN_CHUNK;

/// The smallest region a free-list heap can use: its region header, one
/// chunk of [`MIN_CHUNK`] bytes and the fencepost (112 bytes). A smaller
/// region holds nothing but metadata, so the heap refuses it.
///
/// ```
/// assert_eq!(freespace_split_coalesce::MIN_REGION, 64 + 32 + 16);
/// ```
pub const MIN_REGION: usize = REGION_HEADER + MIN_CHUNK + FENCE;

/// Why [`FreeListHeap::try_new`](crate::FreeListHeap::try_new) could not
/// set up the heap's first region.
///
/// ```
/// use freespace_split_coalesce::{RegionError, MIN_REGION};
/// let e = RegionError::TooSmall { len: 32, min: MIN_REGION };
/// assert_eq!(
///     e.to_string(),
///     "the region (32 bytes) is smaller than the free-list heap's metadata: \
///      at least 112 bytes are needed (64-byte region header, 32-byte smallest chunk, 16-byte fencepost)"
/// );
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RegionError {
    /// The source's region is smaller than the heap's metadata: every
    /// allocation from it would fail.
    TooSmall {
        /// The region's length in bytes.
        len: usize,
        /// The least the heap needs: [`MIN_REGION`].
        min: usize,
    },
    /// The source gave no region at all (it is exhausted, or has none).
    NoRegion {
        /// The least the heap needs: [`MIN_REGION`].
        min: usize,
    },
}

impl fmt::Display for RegionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            RegionError::TooSmall { len, min } => write!(
                f,
                "the region ({len} bytes) is smaller than the free-list heap's metadata: \
                 at least {min} bytes are needed ({})",
                Parts
            ),
            RegionError::NoRegion { min } => write!(
                f,
                "the source gave no region; the free-list heap needs at least {min} bytes ({})",
                Parts
            ),
        }
    }
}

impl core::error::Error for RegionError {}

/// What [`MIN_REGION`] is made of, in words.
struct Parts;

impl fmt::Display for Parts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{REGION_HEADER}-byte region header, {MIN_CHUNK}-byte smallest chunk, \
             {FENCE}-byte fencepost"
        )
    }
}
