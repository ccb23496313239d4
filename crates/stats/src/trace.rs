//! The allocation trace format: what `freespace-malloc` writes when
//! `FREESPACE_TRACE=path` is set, and what `cargo xtask replay` reads.
//!
//! A trace is a 16-byte [`Header`] followed by fixed-size 32-byte
//! [`Record`]s, all little-endian, one record per successful call of the
//! malloc family:
//!
//! ```text
//!  header   0..8  magic  "FSTRACE\0"
//!           8..12 version (u32)           = VERSION
//!          12..16 record length (u32)     = RECORD (32)
//!
//!  record   0..8  seq     (u64)  process-wide order of the calls
//!           8..16 size    (u64)  bytes requested (0 for a free)
//!          16..22 id      (u48)  the block (a realloc: the old block)
//!          22..24 thread  (u16)  which thread made the call
//!          24..30 new_id  (u48)  a realloc's new block (0 otherwise)
//!          30     op      (u8)   1 alloc, 2 free, 3 realloc
//!          31     align   (u8)   log2 of the requested alignment
//! ```
//!
//! Records appear in the order threads flushed their buffers, not in call
//! order: a reader sorts them by `seq`. A block id names a block from its
//! allocation to its free (the shim uses the user address divided by 16),
//! so an id is reused once its block is freed.
//!
//! Reading never panics: a wrong magic, an unknown version, a record cut
//! short or a record that cannot be one is a [`TraceError`] that says what
//! and where.
//!
//! ```
//! use freespace_stats::trace::{Header, Op, Record, RECORD};
//!
//! let mut file = Header::CURRENT.encode().to_vec();
//! file.extend(Record::alloc(0, 7, 100, 16, 0).encode());
//! file.extend(Record::realloc(1, 7, 9, 200, 0).encode());
//! file.extend(Record::free(2, 9, 0).encode());
//! let records: Vec<Record> = freespace_stats::trace::records(&file)?.collect::<Result<_, _>>()?;
//! assert_eq!(records.len(), 3);
//! assert_eq!(records[1].op, Op::Realloc);
//! assert_eq!((records[1].id, records[1].new_id, records[1].size), (7, 9, 200));
//!
//! // Cut in the middle of the last record: a clear error, not a panic.
//! let cut = &file[..file.len() - RECORD / 2];
//! let err = freespace_stats::trace::records(cut)?.find_map(Result::err).unwrap();
//! assert_eq!(err.to_string(), "trace truncated: record 2 at byte 80 has 16 of 32 bytes");
//! # Ok::<(), freespace_stats::trace::TraceError>(())
//! ```

use core::fmt;

#[cfg(test)]
mod tests;

/// The first eight bytes of every trace.
pub const MAGIC: [u8; 8] = *b"FSTRACE\0";
/// The version of the format this module reads and writes.
pub const VERSION: u32 = 1;
/// Bytes in the header.
pub const HEADER: usize = 16;
/// Bytes in one record.
pub const RECORD: usize = 32;
/// The largest block id a record holds (48 bits).
pub const MAX_ID: u64 = (1 << 48) - 1;

/// What a call did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Op {
    /// A block `id` of `size` bytes at alignment `1 << align_log2` was
    /// handed out (`malloc`, `calloc`, `memalign`, `realloc(NULL, n)`, ...).
    Alloc = 1,
    /// Block `id` was given back (`free`, `realloc(p, 0)`).
    Free = 2,
    /// Block `id` was resized to `size` bytes and is now block `new_id`
    /// (the same id when it stayed in place).
    Realloc = 3,
}

impl Op {
    fn from_byte(b: u8) -> Option<Op> {
        match b {
            1 => Some(Op::Alloc),
            2 => Some(Op::Free),
            3 => Some(Op::Realloc),
            _ => None,
        }
    }
}

/// The start of a trace file.
///
/// ```
/// use freespace_stats::trace::{Header, HEADER};
/// let bytes = Header::CURRENT.encode();
/// assert_eq!(bytes.len(), HEADER);
/// assert_eq!(Header::decode(&bytes), Ok(Header::CURRENT));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// The format version ([`VERSION`]).
    pub version: u32,
    /// Bytes per record ([`RECORD`]).
    pub record_len: u32,
}

impl Header {
    /// The header this module writes.
    pub const CURRENT: Header = Header {
        version: VERSION,
        record_len: RECORD as u32,
    };

    /// The header's bytes.
    pub const fn encode(&self) -> [u8; HEADER] {
        let mut out = [0u8; HEADER];
        let mut i = 0;
        while i < 8 {
            out[i] = MAGIC[i];
            i += 1;
        }
        let v = self.version.to_le_bytes();
        let r = self.record_len.to_le_bytes();
        let mut j = 0;
        while j < 4 {
            out[8 + j] = v[j];
            out[12 + j] = r[j];
            j += 1;
        }
        out
    }

    /// Reads a header from the start of `bytes`; only the current version
    /// and record length are accepted.
    ///
    /// ```
    /// use freespace_stats::trace::{Header, TraceError};
    /// assert_eq!(Header::decode(b"FSTR"), Err(TraceError::ShortHeader { len: 4 }));
    /// assert_eq!(Header::decode(&[0; 16]), Err(TraceError::BadMagic));
    /// ```
    pub fn decode(bytes: &[u8]) -> Result<Header, TraceError> {
        let Some(head) = bytes.get(..HEADER) else {
            return Err(TraceError::ShortHeader { len: bytes.len() });
        };
        if head[..8] != MAGIC {
            return Err(TraceError::BadMagic);
        }
        let version = u32_at(head, 8);
        let record_len = u32_at(head, 12);
        if version != VERSION {
            return Err(TraceError::BadVersion { found: version });
        }
        if record_len as usize != RECORD {
            return Err(TraceError::BadRecordLength { found: record_len });
        }
        Ok(Header {
            version,
            record_len,
        })
    }
}

/// One call of the malloc family.
///
/// # Invariants
/// - STATS-R1: `id` and `new_id` are at most [`MAX_ID`]; `id` is not 0.
/// - STATS-R2: `new_id` is not 0 exactly when `op` is [`Op::Realloc`].
/// - STATS-R3: `align_log2` is below 64.
///
/// The constructors keep STATS-R1 by masking to 48 bits (the writer must not
/// fail); [`Record::decode`] rejects bytes that break any of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record {
    /// Process-wide order of the call (a reader sorts by it).
    pub seq: u64,
    /// Bytes requested (0 for a free).
    pub size: u64,
    /// The block (for a realloc, the block before the call).
    pub id: u64,
    /// A realloc's block after the call; 0 for the other ops.
    pub new_id: u64,
    /// Which thread called (threads numbered in order of their first call,
    /// modulo 65536).
    pub thread: u16,
    /// What the call did.
    pub op: Op,
    /// log2 of the requested alignment.
    pub align_log2: u8,
}

impl Record {
    /// An allocation of `size` bytes aligned to `align` (a power of two)
    /// as block `id`.
    ///
    /// ```
    /// let r = freespace_stats::trace::Record::alloc(3, 0x10, 24, 16, 1);
    /// assert_eq!((r.align(), r.size), (16, 24));
    /// ```
    pub const fn alloc(seq: u64, id: u64, size: u64, align: u64, thread: u16) -> Record {
        Record {
            seq,
            size,
            id: id & MAX_ID,
            new_id: 0,
            thread,
            op: Op::Alloc,
            align_log2: align.trailing_zeros() as u8 & 63,
        }
    }

    /// A free of block `id`.
    ///
    /// ```
    /// let r = freespace_stats::trace::Record::free(4, 0x10, 1);
    /// assert_eq!(r.op, freespace_stats::trace::Op::Free);
    /// ```
    pub const fn free(seq: u64, id: u64, thread: u16) -> Record {
        Record {
            seq,
            size: 0,
            id: id & MAX_ID,
            new_id: 0,
            thread,
            op: Op::Free,
            align_log2: 0,
        }
    }

    /// A resize of block `id` to `size` bytes, now block `new_id`.
    ///
    /// ```
    /// let r = freespace_stats::trace::Record::realloc(5, 0x10, 0x20, 64, 0);
    /// assert_eq!((r.id, r.new_id), (0x10, 0x20));
    /// ```
    pub const fn realloc(seq: u64, id: u64, new_id: u64, size: u64, thread: u16) -> Record {
        Record {
            seq,
            size,
            id: id & MAX_ID,
            new_id: new_id & MAX_ID,
            thread,
            op: Op::Realloc,
            align_log2: 0,
        }
    }

    /// The requested alignment in bytes.
    ///
    /// ```
    /// assert_eq!(freespace_stats::trace::Record::alloc(0, 1, 1, 4096, 0).align(), 4096);
    /// ```
    pub const fn align(&self) -> u64 {
        1 << (self.align_log2 & 63)
    }

    /// The record's 32 bytes. Never fails and never allocates (the malloc
    /// shim calls it on its allocation path).
    ///
    /// ```
    /// use freespace_stats::trace::Record;
    /// let r = Record::free(9, 0xabc, 2);
    /// assert_eq!(Record::decode(&r.encode(), 0), Ok(r));
    /// ```
    #[inline]
    pub const fn encode(&self) -> [u8; RECORD] {
        let lo = (self.id & MAX_ID) | (self.thread as u64) << 48;
        let hi =
            (self.new_id & MAX_ID) | (self.op as u64) << 48 | ((self.align_log2 & 63) as u64) << 56;
        let words = [self.seq, self.size, lo, hi];
        let mut out = [0u8; RECORD];
        let mut w = 0;
        while w < 4 {
            let b = words[w].to_le_bytes();
            let mut i = 0;
            while i < 8 {
                out[w * 8 + i] = b[i];
                i += 1;
            }
            w += 1;
        }
        out
    }

    /// Reads a record; `index` (its position in the file) only goes into
    /// the error.
    ///
    /// ```
    /// use freespace_stats::trace::{Record, TraceError};
    /// let mut bytes = Record::free(1, 2, 0).encode();
    /// bytes[30] = 9;
    /// assert_eq!(Record::decode(&bytes, 4), Err(TraceError::BadOp { index: 4, op: 9 }));
    /// ```
    pub fn decode(bytes: &[u8; RECORD], index: u64) -> Result<Record, TraceError> {
        let word = |w: usize| u64_at(bytes, w * 8);
        let (seq, size, lo, hi) = (word(0), word(1), word(2), word(3));
        let op_byte = (hi >> 48) as u8;
        let op = Op::from_byte(op_byte).ok_or(TraceError::BadOp { index, op: op_byte })?;
        let align_log2 = (hi >> 56) as u8;
        let record = Record {
            seq,
            size,
            id: lo & MAX_ID,
            new_id: hi & MAX_ID,
            thread: (lo >> 48) as u16,
            op,
            align_log2,
        };
        let why = if record.id == 0 {
            Some("block id 0")
        } else if align_log2 >= 64 {
            Some("alignment of 2^64 or more")
        } else if (op == Op::Realloc) != (record.new_id != 0) {
            Some("a new block id on an op other than realloc, or none on a realloc")
        } else {
            None
        };
        match why {
            Some(why) => Err(TraceError::BadRecord { index, why }),
            None => Ok(record),
        }
    }
}

/// Why a trace could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TraceError {
    /// The file is shorter than a header.
    ShortHeader {
        /// Its length.
        len: usize,
    },
    /// The file does not start with [`MAGIC`].
    BadMagic,
    /// A version this reader does not know.
    BadVersion {
        /// The version in the file.
        found: u32,
    },
    /// A record length other than [`RECORD`].
    BadRecordLength {
        /// The length in the file.
        found: u32,
    },
    /// The file ends inside a record.
    Truncated {
        /// The record's position (0 is the first).
        index: u64,
        /// Its byte offset in the file.
        offset: usize,
        /// How many of its bytes are there.
        have: usize,
    },
    /// A record with an unknown op byte.
    BadOp {
        /// The record's position.
        index: u64,
        /// The byte.
        op: u8,
    },
    /// A record that breaks the record invariants.
    BadRecord {
        /// The record's position.
        index: u64,
        /// What is wrong.
        why: &'static str,
    },
}

impl fmt::Display for TraceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            TraceError::ShortHeader { len } => write!(
                f,
                "not a freespace trace: {len} bytes, shorter than the {HEADER}-byte header"
            ),
            TraceError::BadMagic => f.write_str("not a freespace trace: wrong magic number"),
            TraceError::BadVersion { found } => write!(
                f,
                "freespace trace version {found}; this reader knows version {VERSION}"
            ),
            TraceError::BadRecordLength { found } => write!(
                f,
                "freespace trace with {found}-byte records; this reader knows {RECORD}"
            ),
            TraceError::Truncated {
                index,
                offset,
                have,
            } => write!(
                f,
                "trace truncated: record {index} at byte {offset} has {have} of {RECORD} bytes"
            ),
            TraceError::BadOp { index, op } => write!(f, "record {index}: unknown op {op}"),
            TraceError::BadRecord { index, why } => write!(f, "record {index}: {why}"),
        }
    }
}

/// The records of the trace in `bytes`, in file order, after checking its
/// header. A file that ends inside a record yields
/// [`TraceError::Truncated`] as its last item.
///
/// ```
/// use freespace_stats::trace::{records, Header, TraceError};
/// assert_eq!(records(&Header::CURRENT.encode())?.count(), 0);
/// assert!(matches!(records(b"hello, world, hi"), Err(TraceError::BadMagic)));
/// # Ok::<(), TraceError>(())
/// ```
pub fn records(bytes: &[u8]) -> Result<Records<'_>, TraceError> {
    Header::decode(bytes)?;
    Ok(Records {
        bytes,
        offset: HEADER,
        index: 0,
    })
}

/// The iterator [`records`] returns.
///
/// # Invariants
/// - STATS-I1: `offset` is `HEADER + index * RECORD`, or `bytes.len()` once the
///   iterator is exhausted.
pub struct Records<'a> {
    bytes: &'a [u8],
    offset: usize,
    index: u64,
}

impl Records<'_> {
    /// How many records remain, counting a truncated last one.
    ///
    /// ```
    /// use freespace_stats::trace::{records, Header, Record};
    /// let mut file = Header::CURRENT.encode().to_vec();
    /// file.extend(Record::free(0, 1, 0).encode());
    /// assert_eq!(records(&file).unwrap().remaining(), 1);
    /// ```
    pub fn remaining(&self) -> usize {
        (self.bytes.len() - self.offset).div_ceil(RECORD)
    }
}

impl Iterator for Records<'_> {
    type Item = Result<Record, TraceError>;

    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.bytes.get(self.offset..).unwrap_or(&[]);
        if rest.is_empty() {
            return None;
        }
        let index = self.index;
        let offset = self.offset;
        let Some(chunk) = rest.first_chunk::<RECORD>() else {
            self.offset = self.bytes.len();
            return Some(Err(TraceError::Truncated {
                index,
                offset,
                have: rest.len(),
            }));
        };
        self.offset += RECORD;
        self.index += 1;
        Some(Record::decode(chunk, index))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining(), Some(self.remaining()))
    }
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(b)
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(b)
}
