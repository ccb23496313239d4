//! A call log in front of an allocator, for differential tests: the same
//! op trace played through two allocators, then their logs compared.
//!
//! [`Logged`] passes every call to the allocator behind it unchanged and
//! notes, for each call that hands out a block (`allocate`, `grow`,
//! `shrink` and their zeroed forms), what was asked, where the block went
//! (as an offset from a base address) or that the call failed, and how many
//! requested bytes were live just before. The op interpreter decides its
//! next op from the outcomes alone, so two allocators that agree on every
//! outcome see the same calls: two logs equal up to entry `i` mean the
//! runs were the same up to there.
//!
//! ```
//! use freespace_core::alloc::Global;
//! use freespace_testkit::{calls::Logged, ops};
//!
//! let trace = ops::decode(&[0, 40, 0, 0, 7, 0, 0, 0]); // alloc 40 B, free it
//! let logged = Logged::new(&Global, 0);
//! ops::run(&logged, &trace, &|| Ok(())).unwrap();
//! let log = logged.log();
//! assert_eq!(log.len(), 1);
//! assert_eq!((log[0].size, log[0].live_before), (40, 0));
//! assert!(log[0].at.is_some());
//! ```

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::ptr::NonNull;

use freespace_core::alloc::{AllocError, Allocator, Layout};

/// Which method a logged call was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `allocate`.
    Allocate,
    /// `allocate_zeroed`.
    AllocateZeroed,
    /// `grow`.
    Grow,
    /// `grow_zeroed`.
    GrowZeroed,
    /// `shrink`.
    Shrink,
}

/// One call that hands out a block, as [`Logged`] saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Call {
    /// The method called.
    pub method: Method,
    /// The size asked for (the new size, for a resize).
    pub size: usize,
    /// The alignment asked for.
    pub align: usize,
    /// Where the block went, as an offset from the log's base (`usize::MAX`
    /// below it: a zero-size request's dangling pointer); `None`: the call
    /// returned `Err`.
    pub at: Option<usize>,
    /// Requested bytes live (handed out and not yet freed) just before the
    /// call, the block being resized included.
    pub live_before: usize,
    /// Non-empty blocks live just before the call, the block being
    /// resized included.
    pub blocks_before: usize,
}

#[derive(Default)]
struct State {
    calls: Vec<Call>,
    /// Requested size of each live non-empty block, by address.
    live: BTreeMap<usize, usize>,
    live_bytes: usize,
}

/// An allocator in front of `inner` that logs every call handing out a
/// block (see the [module docs](self)).
pub struct Logged<'a, A: ?Sized> {
    inner: &'a A,
    base: usize,
    state: RefCell<State>,
}

impl<'a, A: Allocator + ?Sized> Logged<'a, A> {
    /// A log of `inner`'s calls, with offsets from the address `base`.
    pub fn new(inner: &'a A, base: usize) -> Self {
        Self {
            inner,
            base,
            state: RefCell::new(State::default()),
        }
    }

    /// The calls so far, in order.
    pub fn log(&self) -> Vec<Call> {
        self.state.borrow().calls.clone()
    }

    fn forget(&self, ptr: NonNull<u8>) {
        let mut s = self.state.borrow_mut();
        if let Some(size) = s.live.remove(&(ptr.as_ptr() as usize)) {
            s.live_bytes -= size;
        }
    }

    fn note(
        &self,
        method: Method,
        layout: Layout,
        (live_before, blocks_before): (usize, usize),
        r: Result<NonNull<[u8]>, AllocError>,
    ) -> Result<NonNull<[u8]>, AllocError> {
        let mut s = self.state.borrow_mut();
        let at = r.ok().map(|b| {
            let addr = b.cast::<u8>().as_ptr() as usize;
            if layout.size() > 0 {
                s.live.insert(addr, layout.size());
                s.live_bytes += layout.size();
            }
            addr.checked_sub(self.base).unwrap_or(usize::MAX)
        });
        s.calls.push(Call {
            method,
            size: layout.size(),
            align: layout.align(),
            at,
            live_before,
            blocks_before,
        });
        r
    }

    /// Requested bytes and non-empty blocks live now.
    fn live(&self) -> (usize, usize) {
        let s = self.state.borrow();
        (s.live_bytes, s.live.len())
    }

    /// A resize: logged, and on success the old block is replaced by the new.
    fn resized(
        &self,
        method: Method,
        ptr: NonNull<u8>,
        new: Layout,
        r: Result<NonNull<[u8]>, AllocError>,
    ) -> Result<NonNull<[u8]>, AllocError> {
        let before = self.live();
        if r.is_ok() {
            self.forget(ptr);
        }
        self.note(method, new, before, r)
    }
}

/// Block by block (the provided methods), each call logged.
impl<A: Allocator + ?Sized> freespace_core::Batch for Logged<'_, A> {}

// SAFETY: every call goes to `inner` unchanged, with the caller's
// arguments; the log only reads the results.
unsafe impl<A: Allocator + ?Sized> Allocator for Logged<'_, A> {
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        let before = self.live();
        self.note(
            Method::Allocate,
            layout,
            before,
            self.inner.allocate(layout),
        )
    }

    fn allocate_zeroed(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        let before = self.live();
        let r = self.inner.allocate_zeroed(layout);
        self.note(Method::AllocateZeroed, layout, before, r)
    }

    unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
        self.forget(ptr);
        // SAFETY: the caller's contract, passed on.
        unsafe { self.inner.deallocate(ptr, layout) }
    }

    unsafe fn grow(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        // SAFETY: the caller's contract, passed on.
        let r = unsafe { self.inner.grow(ptr, old, new) };
        self.resized(Method::Grow, ptr, new, r)
    }

    unsafe fn grow_zeroed(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        // SAFETY: the caller's contract, passed on.
        let r = unsafe { self.inner.grow_zeroed(ptr, old, new) };
        self.resized(Method::GrowZeroed, ptr, new, r)
    }

    unsafe fn shrink(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        // SAFETY: the caller's contract, passed on.
        let r = unsafe { self.inner.shrink(ptr, old, new) };
        self.resized(Method::Shrink, ptr, new, r)
    }
}

/// The first entry where logs `a` and `b` differ in where a block went
/// (`at`), with both entries (`None` past the end of the shorter log).
///
/// ```
/// use freespace_core::alloc::Global;
/// use freespace_testkit::{calls::{self, Logged}, ops};
/// let trace = ops::decode(&[0, 40, 0, 0]);
/// let (a, b) = (Logged::new(&Global, 0), Logged::new(&Global, 0));
/// ops::run(&a, &trace, &|| Ok(())).unwrap();
/// ops::run(&b, &trace, &|| Ok(())).unwrap();
/// assert!(calls::first_difference(&a.log(), &a.log()).is_none());
/// ```
pub fn first_difference(a: &[Call], b: &[Call]) -> Option<(usize, Option<Call>, Option<Call>)> {
    (0..a.len().max(b.len()))
        .find(|&i| a.get(i).map(|c| c.at) != b.get(i).map(|c| c.at))
        .map(|i| (i, a.get(i).copied(), b.get(i).copied()))
}
