//! [`Batch`]: several blocks of one layout in one call.
//!
//! A thread cache refills a magazine with a run of blocks from its parent
//! and gives a magazine's blocks back together. One at a time, each block
//! pays for whatever serialises the parent — a lock taken and released per
//! block. `Batch` lets a layer do the whole run at that price once:
//! [`Locked`](https://docs.rs/freespace-sync) takes its lock once for all
//! the blocks. The provided methods go one block at a time, so any
//! allocator opts in with an empty `impl`.

use core::ptr::NonNull;

use crate::alloc::{Allocator, Layout};

/// An allocator that can hand out and take back several blocks of one
/// layout in one call.
///
/// The provided methods call [`Allocator::allocate`] and
/// [`Allocator::deallocate`] once per block; a layer overrides them where
/// doing the run at once is cheaper (a lock taken once) and forwards them
/// where it wraps another `Batch`.
///
/// ```
/// use core::ptr::NonNull;
/// use freespace_core::alloc::{Allocator, Global, Layout};
/// use freespace_core::Batch;
///
/// let layout = Layout::new::<[u64; 4]>();
/// let mut blocks = [NonNull::dangling(); 8];
/// assert_eq!(Global.allocate_batch(layout, &mut blocks), 8);
/// // SAFETY: the eight blocks were just allocated with `layout`.
/// unsafe { Global.deallocate_batch(&blocks, layout) };
/// ```
pub trait Batch: Allocator {
    /// Fills `out` from the front with blocks of `layout`, stopping at the
    /// first request that fails; returns how many it filled. The blocks are
    /// live as if each came from [`Allocator::allocate`] with `layout`.
    fn allocate_batch(&self, layout: Layout, out: &mut [NonNull<u8>]) -> usize {
        allocate_each(self, layout, out)
    }

    /// Frees every block of `blocks`.
    ///
    /// # Safety
    /// Each block is live, was allocated by this allocator with a layout
    /// `layout` fits (as for [`Allocator::deallocate`]), and appears once.
    unsafe fn deallocate_batch(&self, blocks: &[NonNull<u8>], layout: Layout) {
        // SAFETY: the caller's contract.
        unsafe { deallocate_each(self, blocks, layout) }
    }
}

/// [`Batch::allocate_batch`] one block at a time through `a`: the provided
/// method, and what a layer that batches by other means (a lock held for
/// the run) calls on its inner allocator.
///
/// ```
/// use core::ptr::NonNull;
/// use freespace_core::alloc::{Global, Layout};
/// let mut out = [NonNull::dangling(); 2];
/// assert_eq!(freespace_core::batch::allocate_each(&Global, Layout::new::<u8>(), &mut out), 2);
/// # unsafe { freespace_core::batch::deallocate_each(&Global, &out, Layout::new::<u8>()) };
/// ```
pub fn allocate_each<A: Allocator + ?Sized>(
    a: &A,
    layout: Layout,
    out: &mut [NonNull<u8>],
) -> usize {
    let mut n = 0;
    for slot in out.iter_mut() {
        match a.allocate(layout) {
            Ok(block) => {
                *slot = block.cast();
                n += 1;
            }
            Err(_) => break,
        }
    }
    n
}

/// [`Batch::deallocate_batch`] one block at a time through `a`.
///
/// # Safety
/// As for [`Batch::deallocate_batch`], with `a` the allocator.
pub unsafe fn deallocate_each<A: Allocator + ?Sized>(
    a: &A,
    blocks: &[NonNull<u8>],
    layout: Layout,
) {
    for &block in blocks {
        // SAFETY: the caller's contract, block by block.
        unsafe { a.deallocate(block, layout) };
    }
}

impl<A: Batch + ?Sized> Batch for &A {
    #[inline]
    fn allocate_batch(&self, layout: Layout, out: &mut [NonNull<u8>]) -> usize {
        (**self).allocate_batch(layout, out)
    }

    #[inline]
    unsafe fn deallocate_batch(&self, blocks: &[NonNull<u8>], layout: Layout) {
        // SAFETY: the caller's contract, passed on.
        unsafe { (**self).deallocate_batch(blocks, layout) }
    }
}

/// One block at a time: the system allocator has its own locks.
#[cfg(feature = "alloc")]
impl Batch for crate::alloc::Global {}
