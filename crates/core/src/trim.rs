//! [`Trim`]: giving free memory back, on request, through a whole stack.
//!
//! A heap keeps the memory its blocks are freed into: the next allocation
//! reuses it without a system call. A long-running program whose peak has
//! passed wants some of it back. `trim` asks a layer to give back what it
//! holds free — pages of large free blocks to the source (through
//! [`Source::decommit`](crate::Source::decommit)), empty slabs and cached
//! blocks to the parent — and to ask its parent to do the same, so one
//! call at the top of a stack reaches every layer. The malloc shim's
//! `malloc_trim` is this call.

/// A layer that can give free memory back, forwarding to the layers below.
///
/// `trim` never fails and never changes which blocks are live; it only
/// makes later allocations a little slower (pages are faulted back in,
/// slabs set up again). Layers that hold nothing free forward to their
/// parent; a heap over a source that cannot decommit returns 0.
///
/// ```
/// use freespace_core::Trim;
///
/// /// A layer that caches nothing: it only forwards.
/// struct Forward<A>(A);
/// impl<A: Trim> Trim for Forward<A> {
///     fn trim(&self) -> usize {
///         self.0.trim()
///     }
/// }
///
/// struct Keeps;
/// impl Trim for Keeps {
///     fn trim(&self) -> usize { 0 }
/// }
/// assert_eq!(Forward(Forward(Keeps)).trim(), 0);
/// ```
pub trait Trim {
    /// Gives back what this layer and those below it hold free; returns
    /// the bytes given back to the system (decommitted or released), as far
    /// as the layers know.
    fn trim(&self) -> usize;
}

impl<T: Trim + ?Sized> Trim for &T {
    #[inline]
    fn trim(&self) -> usize {
        (**self).trim()
    }
}
