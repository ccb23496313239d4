//! Out-of-memory injection: [`FailAfter`] makes a chosen allocation fail.
//!
//! A program that must survive running out of memory (every `try_reserve`,
//! every `Box::try_new_in`, every layer's refill) is tested by re-running
//! one scenario with the 0th, 1st, 2nd … allocation failing in turn, until
//! a run makes no more requests than the index: every error path has then
//! been taken once.
//!
//! ```text
//!   run 0:  req0 ✗
//!   run 1:  req0 ✓  req1 ✗
//!   run 2:  req0 ✓  req1 ✓  req2 ✗  ...
//!   run n:  req0 ✓ ... req(n-1) ✓        (no request n: done)
//! ```

use core::cell::Cell;
use core::ptr::NonNull;

use freespace_core::alloc::{AllocError, Allocator, Layout};
use freespace_core::{layout, BlockInfo, BlockSize, Corruption, Inspect, Owns, Violation};

/// Which requests a [`FailAfter`] fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailMode {
    /// Only request number `n` fails; the ones after it succeed again (as
    /// far as the inner allocator can serve them). This is "the i-th
    /// allocation fails", the default.
    Once,
    /// Request `n` and every later one fail: memory runs out for good.
    FromThenOn,
}

/// An allocator layer that fails the `n`-th allocation request (counted from
/// **0**) and forwards everything else to `A`.
///
/// Requests are counted by `allocate`, `allocate_zeroed`, `grow` and
/// `grow_zeroed` with a non-zero size: the calls that may need new memory.
/// `shrink` and `deallocate` are forwarded uncounted and never fail here
/// (collections treat a failed shrink as fatal, and no real allocator runs
/// out of memory giving it back). Zero-size requests never reach `A`
/// (freespace's contract): `allocate` returns a dangling aligned pointer,
/// uncounted; a `grow` from size 0 is a fresh, counted, `allocate`; a
/// `shrink` to size 0 frees the block.
///
/// Like every building block it keeps its state in `Cell`s and is `!Sync`;
/// put it behind `freespace_sync::Locked` to share it.
///
/// # Invariants
/// - STATS-FA1: `failures() <= requests()`.
/// - STATS-FA2: in [`FailMode::Once`], `failures() <= 1`, and it is 1 exactly
///   when `requests() > n`.
/// - STATS-FA3: in [`FailMode::FromThenOn`], `failures() == requests() - n`
///   whenever `requests() > n`, and 0 otherwise.
///
/// # Example
///
/// ```
/// use freespace_core::alloc::{Box, Global};
/// use freespace_stats::{FailAfter, FailMode};
///
/// let heap = FailAfter::new(Global, 2).with_mode(FailMode::FromThenOn);
/// assert!(Box::try_new_in(1u64, &heap).is_ok()); // request 0
/// assert!(Box::try_new_in(2u64, &heap).is_ok()); // request 1
/// assert!(Box::try_new_in(3u64, &heap).is_err()); // request 2: out of memory
/// assert!(Box::try_new_in(4u64, &heap).is_err()); // and for good
/// heap.check().unwrap();
/// ```
#[derive(Debug)]
pub struct FailAfter<A> {
    inner: A,
    /// The index of the first request that fails.
    n: Cell<usize>,
    mode: FailMode,
    /// Requests counted so far.
    requests: Cell<usize>,
    /// Requests failed on purpose so far.
    failures: Cell<usize>,
}

impl<A> FailAfter<A> {
    /// A layer over `inner` that fails request number `n` (0-based) and only
    /// it ([`FailMode::Once`]). Does no work; `usize::MAX` never fails.
    ///
    /// ```
    /// use freespace_core::alloc::{Allocator, Global, Layout};
    /// let heap = freespace_stats::FailAfter::new(Global, 0);
    /// assert!(heap.allocate(Layout::new::<u32>()).is_err());
    /// let b = heap.allocate(Layout::new::<u32>()).unwrap();
    /// // SAFETY: `b` is live with this layout.
    /// unsafe { heap.deallocate(b.cast(), Layout::new::<u32>()) };
    /// ```
    pub const fn new(inner: A, n: usize) -> Self {
        Self {
            inner,
            n: Cell::new(n),
            mode: FailMode::Once,
            requests: Cell::new(0),
            failures: Cell::new(0),
        }
    }

    /// The same layer with another [`FailMode`].
    ///
    /// ```
    /// use freespace_core::alloc::Global;
    /// use freespace_stats::{FailAfter, FailMode};
    /// let heap = FailAfter::new(Global, 3).with_mode(FailMode::FromThenOn);
    /// assert_eq!(heap.mode(), FailMode::FromThenOn);
    /// ```
    pub const fn with_mode(mut self, mode: FailMode) -> Self {
        self.mode = mode;
        self
    }

    /// The mode it was built with.
    ///
    /// ```
    /// # use freespace_core::alloc::Global;
    /// # use freespace_stats::{FailAfter, FailMode};
    /// assert_eq!(FailAfter::new(Global, 3).mode(), FailMode::Once);
    /// ```
    pub const fn mode(&self) -> FailMode {
        self.mode
    }

    /// The allocator underneath.
    ///
    /// ```
    /// # use freespace_core::alloc::Global;
    /// let heap = freespace_stats::FailAfter::new(Global, 0);
    /// let _: &Global = heap.inner();
    /// ```
    pub const fn inner(&self) -> &A {
        &self.inner
    }

    /// Allocation requests counted so far (see the type's docs for which
    /// calls count).
    ///
    /// ```
    /// use freespace_core::alloc::{Box, Global};
    /// let heap = freespace_stats::FailAfter::new(Global, usize::MAX);
    /// drop(Box::new_in(5u8, &heap));
    /// drop(Box::new_in((), &heap)); // zero-size: not a request
    /// assert_eq!(heap.requests(), 1);
    /// ```
    pub fn requests(&self) -> usize {
        self.requests.get()
    }

    /// Requests failed on purpose so far.
    ///
    /// ```
    /// use freespace_core::alloc::{Box, Global};
    /// let heap = freespace_stats::FailAfter::new(Global, 0);
    /// assert!(Box::try_new_in(5u8, &heap).is_err());
    /// assert_eq!(heap.failures(), 1);
    /// ```
    pub fn failures(&self) -> usize {
        self.failures.get()
    }

    /// Starts counting again from 0, now failing request number `n`.
    ///
    /// ```
    /// use freespace_core::alloc::{Box, Global};
    /// let heap = freespace_stats::FailAfter::new(Global, 0);
    /// assert!(Box::try_new_in(5u8, &heap).is_err());
    /// heap.reset(1);
    /// assert!(Box::try_new_in(5u8, &heap).is_ok());
    /// assert!(Box::try_new_in(5u8, &heap).is_err());
    /// ```
    pub fn reset(&self, n: usize) {
        self.n.set(n);
        self.requests.set(0);
        self.failures.set(0);
    }

    /// Checks STATS-FA1–FA3. The inner allocator's invariants are its own
    /// `check`'s.
    ///
    /// ```
    /// use freespace_core::alloc::{Box, Global};
    /// let heap = freespace_stats::FailAfter::new(Global, 1);
    /// for i in 0..4u8 {
    ///     let _ = Box::try_new_in(i, &heap);
    ///     heap.check().unwrap();
    /// }
    /// ```
    pub fn check(&self) -> Result<(), Violation> {
        let (n, requests, failures) = (self.n.get(), self.requests(), self.failures());
        let me = self as *const Self as usize;
        if failures > requests {
            return Err(Violation::new(
                "STATS-FA1",
                me,
                "more failures than requests",
            ));
        }
        let expected = match self.mode {
            FailMode::Once => usize::from(requests > n),
            FailMode::FromThenOn => requests.saturating_sub(n),
        };
        if failures != expected {
            let which = match self.mode {
                FailMode::Once => "STATS-FA2",
                FailMode::FromThenOn => "STATS-FA3",
            };
            return Err(Violation::new(
                which,
                me,
                "failures do not match the schedule",
            ));
        }
        Ok(())
    }

    /// Counts one request and says whether it must fail.
    fn fail_this_one(&self) -> bool {
        let index = self.requests.get();
        self.requests.set(index.saturating_add(1));
        let fail = match self.mode {
            FailMode::Once => index == self.n.get(),
            FailMode::FromThenOn => index >= self.n.get(),
        };
        if fail {
            self.failures.set(self.failures.get() + 1);
        }
        fail
    }
}

/// Block by block (the provided methods), so every block counts towards the failure.
impl<A: Allocator> freespace_core::Batch for FailAfter<A> {}

// SAFETY: every block handed out is a block of `A` (or a dangling pointer
// for a zero size, which is never passed on), so `A`'s guarantees hold for
// it; a failed request changes nothing but the counters.
unsafe impl<A: Allocator> Allocator for FailAfter<A> {
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        if layout.size() == 0 {
            return Ok(layout::dangling(layout));
        }
        if self.fail_this_one() {
            return Err(AllocError);
        }
        self.inner.allocate(layout)
    }

    fn allocate_zeroed(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        if layout.size() == 0 {
            return Ok(layout::dangling(layout));
        }
        if self.fail_this_one() {
            return Err(AllocError);
        }
        self.inner.allocate_zeroed(layout)
    }

    unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
        if layout.size() != 0 {
            // SAFETY: a non-zero-size block of `self` is a block of `inner`
            // (caller contract of `deallocate`).
            unsafe { self.inner.deallocate(ptr, layout) }
        }
    }

    unsafe fn grow(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        if old.size() == 0 {
            return self.allocate(new);
        }
        if self.fail_this_one() {
            return Err(AllocError);
        }
        // SAFETY: `ptr` is a live block of `inner` with `old` (caller
        // contract, and non-zero size).
        unsafe { self.inner.grow(ptr, old, new) }
    }

    unsafe fn grow_zeroed(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        if old.size() == 0 {
            return self.allocate_zeroed(new);
        }
        if self.fail_this_one() {
            return Err(AllocError);
        }
        // SAFETY: as in `grow`.
        unsafe { self.inner.grow_zeroed(ptr, old, new) }
    }

    unsafe fn shrink(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        if new.size() == 0 {
            // SAFETY: `ptr` is live with `old` (caller contract).
            unsafe { self.deallocate(ptr, old) };
            return Ok(layout::dangling(new));
        }
        // SAFETY: `new.size() > 0`, so `old.size() > 0`: `ptr` is a live
        // block of `inner` with `old` (caller contract).
        unsafe { self.inner.shrink(ptr, old, new) }
    }
}

// SAFETY: forwards to `A`; dangling zero-size pointers are never blocks.
unsafe impl<A: Owns> Owns for FailAfter<A> {
    fn owns(&self, ptr: NonNull<u8>) -> bool {
        self.inner.owns(ptr)
    }
}

// SAFETY: every live block is a block of `A` (a zero-size "block" is not
// live: `BlockSize`'s callers only pass blocks of non-zero size).
unsafe impl<A: BlockSize> BlockSize for FailAfter<A> {
    unsafe fn usable_size(&self, ptr: NonNull<u8>) -> usize {
        // SAFETY: the caller's contract is `A`'s.
        unsafe { self.inner.usable_size(ptr) }
    }

    unsafe fn free(&self, ptr: NonNull<u8>) {
        // SAFETY: the caller's contract is `A`'s.
        unsafe { self.inner.free(ptr) }
    }
}

impl<A: Inspect> Inspect for FailAfter<A> {
    fn inspect(&self, visit: &mut dyn FnMut(BlockInfo)) {
        self.inner.inspect(visit)
    }
}

impl<A: freespace_core::Check> freespace_core::Check for FailAfter<A> {
    /// STATS-FA1 ([`check`](FailAfter::check)), then the inner allocator's whole stack.
    fn check_all(&self) -> Result<(), Violation> {
        self.check()?;
        self.inner.check_all()
    }
}

// SAFETY: frees are never failed: a checked free goes straight to `A`'s.
unsafe impl<A: freespace_core::CheckedFree> freespace_core::CheckedFree for FailAfter<A> {
    #[inline]
    unsafe fn try_deallocate(&self, ptr: NonNull<u8>, layout: Layout) -> Result<(), Corruption> {
        // SAFETY: the caller's contract, passed on.
        unsafe { self.inner.try_deallocate(ptr, layout) }
    }
}

/// Forwards (a trim is not a request, so it is never failed).
impl<A: freespace_core::Trim> freespace_core::Trim for FailAfter<A> {
    fn trim(&self) -> usize {
        self.inner.trim()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use freespace_core::alloc::Global;

    fn l(size: usize) -> Layout {
        Layout::from_size_align(size, 8).unwrap()
    }

    #[test]
    fn once_fails_exactly_the_nth_request() {
        for n in 0..5 {
            let heap = FailAfter::new(Global, n);
            let results: std::vec::Vec<bool> = (0..6)
                .map(|_| match heap.allocate(l(24)) {
                    Ok(b) => {
                        // SAFETY: `b` was just allocated with `l(24)`.
                        unsafe { heap.deallocate(b.cast(), l(24)) };
                        true
                    }
                    Err(_) => false,
                })
                .collect();
            let expect: std::vec::Vec<bool> = (0..6).map(|i| i != n).collect();
            assert_eq!(results, expect, "n = {n}");
            heap.check().unwrap();
        }
    }

    #[test]
    fn from_then_on_fails_every_later_request() {
        let heap = FailAfter::new(Global, 2).with_mode(FailMode::FromThenOn);
        let b = heap.allocate(l(8)).unwrap();
        // SAFETY: `b` is live with `l(8)`; a failed grow leaves it untouched.
        unsafe {
            let b = heap.grow(b.cast(), l(8), l(64)).unwrap();
            assert!(heap.grow(b.cast(), l(64), l(128)).is_err());
            assert!(heap.allocate(l(8)).is_err());
            // shrink is not counted and never fails here
            let b = heap.shrink(b.cast(), l(64), l(16)).unwrap();
            heap.deallocate(b.cast(), l(16));
        }
        assert_eq!((heap.requests(), heap.failures()), (4, 2));
        heap.check().unwrap();
    }

    #[test]
    fn zero_size_requests_are_neither_counted_nor_passed_on() {
        let heap = FailAfter::new(Global, 0);
        let z = heap.allocate(l(0)).unwrap();
        assert_eq!(z.len(), 0);
        assert_eq!(heap.requests(), 0);
        // SAFETY: `z` is a zero-size block: growing it is a fresh allocate
        // (request 0, which fails), then request 1 succeeds.
        unsafe {
            assert!(heap.grow(z.cast(), l(0), l(16)).is_err());
            let b = heap.grow_zeroed(z.cast(), l(0), l(16)).unwrap();
            assert!(b.as_ref().iter().all(|&x| x == 0));
            let z2 = heap.shrink(b.cast(), l(16), l(0)).unwrap();
            assert_eq!(z2.len(), 0);
            heap.deallocate(z2.cast(), l(0));
        }
        assert_eq!((heap.requests(), heap.failures()), (2, 1));
    }

    #[test]
    fn reset_restarts_the_count() {
        let heap = FailAfter::new(Global, 0);
        assert!(heap.allocate(l(8)).is_err());
        heap.reset(0);
        assert!(heap.allocate(l(8)).is_err());
        assert_eq!((heap.requests(), heap.failures()), (1, 1));
        heap.check().unwrap();
    }
}
