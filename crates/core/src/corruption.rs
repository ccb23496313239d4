//! Heap corruption: what was detected ([`Corruption`]) and the one function
//! every block reports it through ([`report`]).
//!
//! By default a report prints
//!
//! ```text
//! freespace: double free at 0x7f3a1c000040 (free-list heap)
//! ```
//!
//! to standard error and aborts the process without unwinding: continuing
//! on a corrupt heap turns a bug into an exploit. A program (or a test) may
//! install its own [`Handler`] with [`set_handler`]; if the handler returns,
//! the block that reported leaves the offending pointer alone (the memory is
//! leaked, never reused). Blocks also offer a checked free,
//! `try_deallocate`, that returns the same [`Corruption`] as an `Err`.
//!
//! Nothing here allocates: the message is formatted into a fixed buffer, so a
//! report is safe from inside a `#[global_allocator]`.

use core::fmt;
use core::sync::atomic::{AtomicPtr, Ordering};

/// A misuse of the allocator API or damage to a heap's metadata, detected
/// when a block is freed, resized or checked.
///
/// `addr` is the address the caller passed (for a free) or the address of
/// the damaged metadata.
///
/// `Debug` prints the address in hex, as `Display` and the report do, so a
/// test failure's `{:?}` reads like the abort message:
///
/// ```
/// # use freespace_core::Corruption;
/// let c = Corruption::DoubleFree { addr: 0x7f00 };
/// assert_eq!(format!("{c:?}"), "DoubleFree { addr: 0x7f00 }");
/// assert_eq!(format!("{c}"), "double free at 0x7f00");
/// ```
#[non_exhaustive]
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub enum Corruption {
    /// The block was already free (possibly since coalesced or reused).
    DoubleFree {
        /// The pointer passed to `deallocate`.
        addr: usize,
    },
    /// The pointer is not inside memory this allocator manages.
    ForeignPointer {
        /// The pointer passed to `deallocate`.
        addr: usize,
    },
    /// The pointer is inside a block but not at its start.
    InteriorPointer {
        /// The pointer passed to `deallocate`.
        addr: usize,
    },
    /// The pointer is not aligned as every block of this allocator is.
    MisalignedPointer {
        /// The pointer passed to `deallocate`.
        addr: usize,
    },
    /// A block header failed its integrity check (overwritten by an overflow
    /// from the block before it, or by a stray write).
    OverwrittenHeader {
        /// The block whose header is damaged.
        addr: usize,
    },
    /// The layout passed to `deallocate` does not fit the block (size outside
    /// the requested..usable range, or a different alignment/size class).
    SizeMismatch {
        /// The pointer passed to `deallocate`.
        addr: usize,
    },
    /// A free-list link failed its check when the chunk was unlinked.
    CorruptFreeList {
        /// The free chunk whose links are damaged.
        addr: usize,
    },
    /// A freed block was written to before it was handed out again (a
    /// write through a dangling pointer), found when it was reused.
    WriteAfterFree {
        /// The block's address (the pointer it was freed as and is reused as).
        addr: usize,
    },
}

impl Corruption {
    /// The address the report is about.
    ///
    /// ```
    /// # use freespace_core::Corruption;
    /// assert_eq!(Corruption::DoubleFree { addr: 0x40 }.addr(), 0x40);
    /// ```
    pub const fn addr(&self) -> usize {
        match *self {
            Self::DoubleFree { addr }
            | Self::ForeignPointer { addr }
            | Self::InteriorPointer { addr }
            | Self::MisalignedPointer { addr }
            | Self::OverwrittenHeader { addr }
            | Self::SizeMismatch { addr }
            | Self::CorruptFreeList { addr }
            | Self::WriteAfterFree { addr } => addr,
        }
    }

    /// What was detected, in the words the report uses.
    ///
    /// ```
    /// # use freespace_core::Corruption;
    /// assert_eq!(Corruption::InteriorPointer { addr: 1 }.what(), "interior pointer");
    /// ```
    pub const fn what(&self) -> &'static str {
        match self {
            Self::DoubleFree { .. } => "double free",
            Self::ForeignPointer { .. } => "foreign pointer",
            Self::InteriorPointer { .. } => "interior pointer",
            Self::MisalignedPointer { .. } => "misaligned pointer",
            Self::OverwrittenHeader { .. } => "overwritten header",
            Self::SizeMismatch { .. } => "size mismatch",
            Self::CorruptFreeList { .. } => "corrupt free list",
            Self::WriteAfterFree { .. } => "write after free",
        }
    }

    /// The full report line for `block`, as the default handler prints it
    /// (without the trailing newline).
    ///
    /// ```
    /// # use freespace_core::Corruption;
    /// let m = Corruption::DoubleFree { addr: 0x7f00 }.message("free-list heap");
    /// assert_eq!(&*m, "freespace: double free at 0x7f00 (free-list heap)");
    /// ```
    pub fn message(&self, block: &str) -> Message {
        let mut m = Message::new();
        let _ = fmt::write(&mut m, format_args!("freespace: {self} ({block})"));
        m
    }
}

impl Corruption {
    /// The variant's name, for `Debug`.
    const fn variant(&self) -> &'static str {
        match self {
            Self::DoubleFree { .. } => "DoubleFree",
            Self::ForeignPointer { .. } => "ForeignPointer",
            Self::InteriorPointer { .. } => "InteriorPointer",
            Self::MisalignedPointer { .. } => "MisalignedPointer",
            Self::OverwrittenHeader { .. } => "OverwrittenHeader",
            Self::SizeMismatch { .. } => "SizeMismatch",
            Self::CorruptFreeList { .. } => "CorruptFreeList",
            Self::WriteAfterFree { .. } => "WriteAfterFree",
        }
    }
}

/// As the derived `Debug` would print it, but with the address in hex
/// (`DoubleFree { addr: 0x7f00 }`), like [`Display`](fmt::Display).
impl fmt::Debug for Corruption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct(self.variant())
            .field("addr", &format_args!("{:#x}", self.addr()))
            .finish()
    }
}

impl fmt::Display for Corruption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at {:#x}", self.what(), self.addr())
    }
}

/// A line of text in a fixed 192-byte buffer: formatting into it never
/// allocates, and text past its capacity is cut off at a character boundary.
#[derive(Clone, Copy)]
pub struct Message {
    buf: [u8; Message::CAPACITY],
    len: usize,
}

impl Message {
    /// Bytes a message holds.
    pub const CAPACITY: usize = 192;

    /// An empty message.
    pub const fn new() -> Self {
        Self {
            buf: [0; Self::CAPACITY],
            len: 0,
        }
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        // Only whole `&str`s (or their char-boundary prefixes) are ever copied in.
        core::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }
}

impl Default for Message {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Write for Message {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = Self::CAPACITY - self.len;
        let mut take = s.len().min(room);
        while !s.is_char_boundary(take) {
            take -= 1;
        }
        self.buf[self.len..self.len + take].copy_from_slice(&s.as_bytes()[..take]);
        self.len += take;
        if take < s.len() {
            Err(fmt::Error)
        } else {
            Ok(())
        }
    }
}

impl core::ops::Deref for Message {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl PartialEq<str> for Message {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Message {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// What runs when a block detects corruption: the detected problem and the
/// name of the block that found it (`"free-list heap"`, `"buddy"`).
///
/// A handler must not allocate from the heap that reported, and must not
/// unwind. If it returns, the reporting block leaks the offending pointer.
pub type Handler = fn(Corruption, &'static str);

static HANDLER: AtomicPtr<()> = AtomicPtr::new(core::ptr::null_mut());

/// Installs `handler` for every later [`report`] and returns the one it
/// replaces ([`abort_handler`] if none was set).
///
/// ```
/// use freespace_core::{corruption, Corruption};
/// use std::sync::atomic::{AtomicUsize, Ordering};
///
/// static SEEN: AtomicUsize = AtomicUsize::new(0);
/// fn count(c: Corruption, _block: &'static str) { SEEN.store(c.addr(), Ordering::SeqCst); }
///
/// let previous = corruption::set_handler(count);
/// corruption::report(Corruption::ForeignPointer { addr: 0x99 }, "example");
/// assert_eq!(SEEN.load(Ordering::SeqCst), 0x99);
/// corruption::set_handler(previous);
/// ```
pub fn set_handler(handler: Handler) -> Handler {
    let old = HANDLER.swap(handler as *mut (), Ordering::AcqRel);
    handler_from(old)
}

fn handler_from(raw: *mut ()) -> Handler {
    if raw.is_null() {
        abort_handler
    } else {
        // SAFETY: the only non-null values ever stored in `HANDLER` are
        // `Handler` function pointers cast to `*mut ()` by `set_handler`, and
        // function pointers round-trip through data pointers on every target
        // Rust supports.
        unsafe { core::mem::transmute::<*mut (), Handler>(raw) }
    }
}

/// Reports `corruption` found by `block` to the installed handler.
///
/// With the default handler this does not return: it prints
/// `freespace: <what> at 0x<addr> (<block>)` and aborts. When a custom
/// handler returns, so does `report`, and the caller must leave the
/// offending block untouched.
///
/// ```no_run
/// use freespace_core::{report, Corruption};
/// // Prints "freespace: double free at 0x1000 (free-list heap)" and aborts.
/// report(Corruption::DoubleFree { addr: 0x1000 }, "free-list heap");
/// ```
#[cold]
#[inline(never)]
pub fn report(corruption: Corruption, block: &'static str) {
    handler_from(HANDLER.load(Ordering::Acquire))(corruption, block)
}

/// The default handler: print the message to standard error and abort.
///
/// On Unix it writes with `write(2)` from a stack buffer and calls
/// `abort(3)`. Without an operating system there is nowhere to print, so it
/// panics with the message; a `no_std` program's panic handler decides what
/// happens next (embedded targets abort; none of them unwinds through the
/// allocator when built with `panic = "abort"`).
pub fn abort_handler(corruption: Corruption, block: &'static str) {
    let mut line = corruption.message(block);
    let _ = fmt::Write::write_str(&mut line, "\n");
    abort_with(line.as_str())
}

#[cfg(unix)]
fn abort_with(line: &str) -> ! {
    let mut rest = line.as_bytes();
    while !rest.is_empty() {
        // SAFETY: `rest` is a live byte slice; `write` reads at most
        // `rest.len()` bytes from it.
        let n = unsafe { libc::write(2, rest.as_ptr().cast(), rest.len()) };
        if n <= 0 {
            break;
        }
        rest = &rest[n as usize..];
    }
    // SAFETY: `abort` has no preconditions; it ends the process without
    // running destructors or unwinding.
    unsafe { libc::abort() }
}

#[cfg(not(unix))]
fn abort_with(line: &str) -> ! {
    panic!("{}", line.trim_end())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_has_the_documented_form() {
        let cases = [
            (Corruption::DoubleFree { addr: 0x10 }, "double free"),
            (Corruption::ForeignPointer { addr: 0x10 }, "foreign pointer"),
            (
                Corruption::InteriorPointer { addr: 0x10 },
                "interior pointer",
            ),
            (
                Corruption::MisalignedPointer { addr: 0x10 },
                "misaligned pointer",
            ),
            (
                Corruption::OverwrittenHeader { addr: 0x10 },
                "overwritten header",
            ),
            (Corruption::SizeMismatch { addr: 0x10 }, "size mismatch"),
            (
                Corruption::CorruptFreeList { addr: 0x10 },
                "corrupt free list",
            ),
            (
                Corruption::WriteAfterFree { addr: 0x10 },
                "write after free",
            ),
        ];
        for (c, what) in cases {
            let expected = std::format!("freespace: {what} at 0x10 (buddy)");
            assert_eq!(c.message("buddy").as_str(), expected);
        }
    }

    #[test]
    fn debug_prints_the_address_in_hex() {
        let c = Corruption::OverwrittenHeader {
            addr: 0x7f3a_1c00_0040,
        };
        assert_eq!(
            std::format!("{c:?}"),
            "OverwrittenHeader { addr: 0x7f3a1c000040 }"
        );
        // `{:#?}` too, as `assert_eq!` on a `Result` prints it.
        assert_eq!(
            std::format!("{:#?}", Err::<(), _>(Corruption::DoubleFree { addr: 16 })),
            "Err(\n    DoubleFree {\n        addr: 0x10,\n    },\n)"
        );
        for c in [
            Corruption::DoubleFree { addr: 255 },
            Corruption::ForeignPointer { addr: 255 },
            Corruption::InteriorPointer { addr: 255 },
            Corruption::MisalignedPointer { addr: 255 },
            Corruption::OverwrittenHeader { addr: 255 },
            Corruption::SizeMismatch { addr: 255 },
            Corruption::CorruptFreeList { addr: 255 },
        ] {
            let debug = std::format!("{c:?}");
            assert!(debug.ends_with(" { addr: 0xff }"), "{debug}");
            assert!(!debug.contains("255"), "{debug}");
        }
    }

    #[test]
    fn long_messages_are_cut_not_overflowed() {
        let long = "é".repeat(300);
        let mut m = Message::new();
        assert!(
            fmt::Write::write_str(&mut m, &long).is_err(),
            "overflow is reported"
        );
        // Cut at a character boundary: 192 bytes hold 96 two-byte characters.
        assert_eq!(m.len(), Message::CAPACITY);
        assert!(m.chars().all(|c| c == 'é'));
    }
}
