//! The malloc shim's C API seen as an `Allocator`, so the testkit's
//! interpreter and shadow model drive `malloc`, `calloc`, `realloc`,
//! `free`, `posix_memalign`, `aligned_alloc` and `memalign`.
//!
//! Every block is a real shim block, zero sizes included (`malloc(0)`
//! returns a unique pointer, freed like any other). A block's length is
//! `malloc_usable_size`, so the shadow model fills and checks every usable
//! byte: usable size at least the request, usable ranges never overlapping.

use std::ffi::c_void;
use std::ptr::NonNull;

use freespace_core::alloc::{AllocError, Allocator, Layout};
use freespace_malloc as shim;

/// The alignment `malloc`, `calloc` and `realloc` promise.
pub const MIN_ALIGN: usize = 16;

/// The shim's C functions as an [`Allocator`] (see the module docs).
pub struct ViaMalloc;

/// The block at `p` (null: `Err`), after checking `malloc`'s own promise
/// of 16-byte alignment; its length is the usable size.
fn block(p: *mut c_void) -> Result<NonNull<[u8]>, AllocError> {
    let p = NonNull::new(p.cast::<u8>()).ok_or(AllocError)?;
    assert_eq!(
        p.as_ptr() as usize % MIN_ALIGN,
        0,
        "the shim returned {p:p}, not {MIN_ALIGN}-aligned"
    );
    // SAFETY: `p` is a live block of the shim, just returned.
    let usable = unsafe { shim::malloc_usable_size(p.as_ptr().cast()) };
    Ok(NonNull::slice_from_raw_parts(p, usable))
}

// SAFETY: every block comes from the shim's allocation functions and is
// given back with `free` or `realloc` exactly once (the caller's contract);
// its length is the shim's usable size, which the shim lets the caller use.
unsafe impl Allocator for ViaMalloc {
    fn allocate(&self, l: Layout) -> Result<NonNull<[u8]>, AllocError> {
        let (size, align) = (l.size(), l.align());
        // SAFETY: the C functions have no preconditions beyond valid
        // arguments; `out` is a valid place for the result.
        let p = unsafe {
            if align <= MIN_ALIGN {
                shim::malloc(size)
            } else {
                // The three aligned entry points in turn.
                match size % 3 {
                    0 => {
                        let mut out = std::ptr::null_mut();
                        match shim::posix_memalign(&mut out, align, size) {
                            0 => out,
                            _ => std::ptr::null_mut(),
                        }
                    }
                    1 => shim::aligned_alloc(align, size),
                    _ => shim::memalign(align, size),
                }
            }
        };
        block(p)
    }

    fn allocate_zeroed(&self, l: Layout) -> Result<NonNull<[u8]>, AllocError> {
        if l.align() > MIN_ALIGN {
            // No aligned calloc in C: zero it here.
            let b = self.allocate(l)?;
            // SAFETY: the block is `b.len() >= l.size()` writable bytes.
            unsafe { b.cast::<u8>().write_bytes(0, l.size()) };
            return Ok(b);
        }
        let (n, each) = if l.size().is_multiple_of(8) {
            (l.size() / 8, 8)
        } else {
            (1, l.size())
        };
        // SAFETY: no preconditions.
        block(unsafe { shim::calloc(n, each) })
    }

    unsafe fn deallocate(&self, ptr: NonNull<u8>, _: Layout) {
        // SAFETY: `ptr` is a live shim block (caller contract).
        unsafe { shim::free(ptr.as_ptr().cast()) }
    }

    unsafe fn grow(
        &self,
        ptr: NonNull<u8>,
        _old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        // SAFETY: as `shrink`.
        unsafe { self.resize(ptr, new) }
    }

    unsafe fn grow_zeroed(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        // SAFETY: the caller's contract.
        let b = unsafe { self.grow(ptr, old, new) }?;
        // SAFETY: the block has `b.len() >= new.size()` writable bytes.
        unsafe {
            b.cast::<u8>()
                .add(old.size())
                .write_bytes(0, b.len() - old.size())
        };
        Ok(b)
    }

    unsafe fn shrink(
        &self,
        ptr: NonNull<u8>,
        _old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        // SAFETY: the caller's contract.
        unsafe { self.resize(ptr, new) }
    }
}

impl ViaMalloc {
    /// `realloc(ptr, new.size())`; `realloc(p, 0)` frees and returns null
    /// (glibc's behaviour, which the shim keeps), so a new size of 0 then
    /// takes a fresh `malloc(0)` block.
    ///
    /// # Safety
    ///
    /// `ptr` is a live shim block, not used again if this succeeds.
    unsafe fn resize(&self, ptr: NonNull<u8>, new: Layout) -> Result<NonNull<[u8]>, AllocError> {
        // SAFETY: `ptr` is live (caller contract).
        let p = unsafe { shim::realloc(ptr.as_ptr().cast(), new.size()) };
        if new.size() == 0 {
            assert!(p.is_null(), "realloc(p, 0) returned {p:p}, not null");
            return self.allocate(new);
        }
        block(p)
    }
}
