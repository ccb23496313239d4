//! What the fuzz targets share: arenas reused from one run to the next, the
//! adapter that drives a `GlobalAlloc` through the `Allocator` interface
//! (so the testkit's interpreter exercises `alloc`/`dealloc`/`realloc`), and
//! [`run`], the body of every target.
//!
//! Every target decodes its input with `freespace_testkit::ops` and plays it
//! against a fresh heap over a zeroed arena, calling the heap's `check()`
//! after every [`CHECK_EVERY`]-th op; any failure panics, which libFuzzer records as a crash.
#![deny(unsafe_op_in_unsafe_fn)]

pub mod malloc;

use std::alloc::GlobalAlloc;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicPtr, Ordering};

use freespace_core::alloc::{AllocError, Allocator, Layout};
use freespace_core::{layout, Violation};
use freespace_source::Arena;

/// Bytes in each arena buffer.
pub const ARENA: usize = 1 << 20;

/// How many arenas one target may use at once.
pub const SLOTS: usize = 4;

static BUFFERS: [AtomicPtr<u8>; SLOTS] = [const { AtomicPtr::new(std::ptr::null_mut()) }; SLOTS];

/// An [`Arena`] over the first `len` bytes (at most [`ARENA`]) of buffer
/// `slot`, zeroed first so every run of an input starts from the same bytes.
/// The buffer is allocated once, on first use, and reused by later runs.
///
/// # Safety
///
/// No heap built on an earlier arena of the same `slot` is alive, and the
/// fuzz target runs on one thread.
pub unsafe fn arena(slot: usize, len: usize) -> Arena {
    let len = len.min(ARENA);
    let mut ptr = BUFFERS[slot].load(Ordering::Acquire);
    if ptr.is_null() {
        let l = Layout::from_size_align(ARENA, 4096).unwrap();
        // SAFETY: `l` has a non-zero size.
        ptr = unsafe { std::alloc::alloc(l) };
        assert!(!ptr.is_null(), "no memory for the fuzz arena");
        BUFFERS[slot].store(ptr, Ordering::Release);
    }
    // SAFETY: the buffer is `ARENA >= len` bytes, allocated above and never
    // freed; no earlier heap over it is alive (caller contract).
    unsafe {
        ptr.write_bytes(0, len);
        Arena::try_from_raw_parts(ptr, len).expect("arena buffer is aligned and long enough")
    }
}

/// The address of arena buffer `slot` (after [`arena`] made it; 0
/// before): differential targets log offsets from it.
pub fn buffer(slot: usize) -> usize {
    BUFFERS[slot].load(Ordering::Acquire) as usize
}

/// How often [`run`] calls the heap's `check()`: after every
/// `CHECK_EVERY`-th op, the last op and the final free-everything. A check
/// walks the whole heap; after every op of a 4 KiB input it took most of
/// each execution (the buddy target ran 330 inputs/s).
pub const CHECK_EVERY: usize = 8;

/// Runs the fuzz input `data` against `heap`, calling `check` after every
/// [`CHECK_EVERY`]-th op, and panics with the interpreter's description on
/// any failure.
pub fn run<A: Allocator + ?Sized>(
    heap: &A,
    data: &[u8],
    check: &dyn Fn() -> Result<(), Violation>,
) {
    if let Err(e) = freespace_testkit::ops::run_bytes_every(heap, data, check, CHECK_EVERY) {
        panic!("{e}");
    }
}

/// A `GlobalAlloc` seen as an `Allocator`: `allocate` is `alloc`, `grow`
/// and `shrink` are `realloc` (the path `#[global_allocator]` users take),
/// `deallocate` is `dealloc`. Zero sizes never reach the `GlobalAlloc`
/// (for which they are undefined behaviour).
pub struct ViaGlobalAlloc<'a, G>(pub &'a G);

impl<G: GlobalAlloc> ViaGlobalAlloc<'_, G> {
    /// `realloc` of a live block `ptr` with `old` (non-zero) to `new`.
    ///
    /// # Safety
    ///
    /// `ptr` is live with `old`; `new.size() > 0`; `new.align() == old.align()`.
    unsafe fn realloc(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        debug_assert_eq!(old.align(), new.align());
        // SAFETY: caller contract: `ptr` is live with `old`, `new.size()`
        // is non-zero and fits `isize` with `old.align()` (it is a Layout).
        let p = unsafe { self.0.realloc(ptr.as_ptr(), old, new.size()) };
        NonNull::new(p)
            .map(|p| NonNull::slice_from_raw_parts(p, new.size()))
            .ok_or(AllocError)
    }

    /// A resize that changes the alignment: allocate, copy, free.
    ///
    /// # Safety
    ///
    /// `ptr` is live with `old` (non-zero size); `new.size() > 0`.
    unsafe fn moved(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        let block = self.allocate(new)?;
        // SAFETY: both blocks are live, distinct, and at least
        // `min(old, new)` bytes long; `ptr` is freed once, with `old`.
        unsafe {
            block
                .cast::<u8>()
                .copy_from_nonoverlapping(ptr, old.size().min(new.size()));
            self.0.dealloc(ptr.as_ptr(), old);
        }
        Ok(block)
    }
}

// SAFETY: every non-empty block is a `GlobalAlloc` block of exactly the
// layout's size, freed and resized with the layout it was made with (the
// caller's `Allocator` contract); zero-size blocks are dangling and never
// passed on.
unsafe impl<G: GlobalAlloc> Allocator for ViaGlobalAlloc<'_, G> {
    fn allocate(&self, l: Layout) -> Result<NonNull<[u8]>, AllocError> {
        if l.size() == 0 {
            return Ok(layout::dangling(l));
        }
        // SAFETY: `l` has a non-zero size.
        let p = unsafe { self.0.alloc(l) };
        NonNull::new(p)
            .map(|p| NonNull::slice_from_raw_parts(p, l.size()))
            .ok_or(AllocError)
    }

    fn allocate_zeroed(&self, l: Layout) -> Result<NonNull<[u8]>, AllocError> {
        if l.size() == 0 {
            return Ok(layout::dangling(l));
        }
        // SAFETY: `l` has a non-zero size.
        let p = unsafe { self.0.alloc_zeroed(l) };
        NonNull::new(p)
            .map(|p| NonNull::slice_from_raw_parts(p, l.size()))
            .ok_or(AllocError)
    }

    unsafe fn deallocate(&self, ptr: NonNull<u8>, l: Layout) {
        if l.size() != 0 {
            // SAFETY: `ptr` is a live block made with `l` (caller contract).
            unsafe { self.0.dealloc(ptr.as_ptr(), l) }
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
        // SAFETY: `ptr` is live with `old` (caller contract), `new.size()
        // >= old.size() > 0`.
        unsafe {
            if new.align() == old.align() {
                self.realloc(ptr, old, new)
            } else {
                self.moved(ptr, old, new)
            }
        }
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
        // SAFETY: as in `grow`.
        let block = unsafe { self.grow(ptr, old, new) }?;
        // SAFETY: the block is `new.size()` bytes; its tail past the old
        // size is ours to write.
        unsafe {
            block
                .cast::<u8>()
                .add(old.size())
                .write_bytes(0, new.size() - old.size())
        };
        Ok(block)
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
        // SAFETY: `ptr` is live with `old`, `old.size() >= new.size() > 0`.
        unsafe {
            if new.align() == old.align() {
                self.realloc(ptr, old, new)
            } else {
                self.moved(ptr, old, new)
            }
        }
    }
}
