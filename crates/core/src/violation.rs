//! [`Violation`]: what a heap's `check()` returns when one of its stated
//! invariants does not hold.

use core::fmt;

/// A broken invariant, found by a heap's `check()`.
///
/// `invariant` is the label the type's docs give the invariant
/// (`"BUDDY-B2"`, `"SC-H3"`), so a failing test points straight at the
/// sentence it broke. Labels are unique across the workspace: the crate's
/// tag, a dash, then a letter for the structure and a number
/// (docs/architecture.md, "Invariant labels").
///
/// ```
/// use freespace_core::Violation;
/// let v = Violation::new("BUDDY-B2", 0x1000, "block and its buddy both free");
/// assert_eq!(
///     v.to_string_lossy(),
///     "invariant BUDDY-B2 broken at 0x1000: block and its buddy both free"
/// );
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Violation {
    /// The invariant's label in the type's documentation.
    pub invariant: &'static str,
    /// The address where it was found broken.
    pub addr: usize,
    /// What was wrong.
    pub what: &'static str,
}

impl Violation {
    /// A violation of `invariant` at `addr`.
    pub const fn new(invariant: &'static str, addr: usize, what: &'static str) -> Self {
        Self {
            invariant,
            addr,
            what,
        }
    }

    /// The `Display` text in a fixed buffer (no allocation), for tests and
    /// messages in `no_std`.
    pub fn to_string_lossy(&self) -> crate::corruption::Message {
        let mut m = crate::corruption::Message::new();
        let _ = fmt::write(&mut m, format_args!("{self}"));
        m
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invariant {} broken at {:#x}: {}",
            self.invariant, self.addr, self.what
        )
    }
}
