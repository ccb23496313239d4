//! Checked frees under misuse: the pointers every layer's `try_deallocate`
//! ([`CheckedFree`]) must refuse — a foreign pointer, an interior pointer,
//! a double free — with an `Err`, without aborting (a report would end the
//! test process) and without writing anything; and [`Tracked`], a checked
//! heap to put under a layer in tests and examples.
//!
//! # Example
//!
//! ```
//! use freespace_core::alloc::Layout;
//! use freespace_testkit::misuse::{refuses_misuse, Tracked};
//!
//! let heap = Tracked::new();
//! refuses_misuse(&heap, Layout::from_size_align(48, 8).unwrap(), &|| Ok(()));
//! ```

use core::cell::RefCell;
use core::ptr::NonNull;

use freespace_core::alloc::{AllocError, Allocator, Global, Layout};
use freespace_core::{report, CheckedFree, Corruption, Owns, Violation};

use crate::Check;

/// A checked heap over `Global` that keeps an exact ledger of its live
/// blocks: its `try_deallocate` tells a foreign, interior or double-freed
/// pointer and a wrong layout apart without touching the memory (it reads
/// only the ledger), and [`Owns`] is exact. Slow (a linear ledger); for
/// tests and examples, as the parent of a layer under test.
///
/// ```
/// use freespace_core::alloc::{Allocator, Layout};
/// use freespace_core::{CheckedFree, Corruption};
/// use freespace_testkit::misuse::Tracked;
///
/// let heap = Tracked::new();
/// let l = Layout::new::<[u64; 4]>();
/// let p = heap.allocate(l).unwrap().cast::<u8>();
/// // SAFETY: `p` is live with `l`, freed once; the rest only checks.
/// unsafe {
///     let inner = p.add(8);
///     assert_eq!(heap.try_deallocate(inner, l), Err(Corruption::InteriorPointer { addr: inner.as_ptr() as usize }));
///     assert_eq!(heap.try_deallocate(p, l), Ok(()));
///     assert_eq!(heap.try_deallocate(p, l), Err(Corruption::DoubleFree { addr: p.as_ptr() as usize }));
/// }
/// ```
#[derive(Default)]
pub struct Tracked {
    /// Live blocks: address, the layout asked for, the length returned.
    live: RefCell<Vec<(usize, Layout, usize)>>,
    /// Addresses freed and not handed out again since.
    freed: RefCell<Vec<usize>>,
}

impl Tracked {
    /// An empty ledger.
    pub fn new() -> Self {
        Self::default()
    }

    /// Live blocks.
    ///
    /// ```
    /// let heap = freespace_testkit::misuse::Tracked::new();
    /// assert_eq!(heap.live(), 0);
    /// ```
    pub fn live(&self) -> usize {
        self.live.borrow().len()
    }
}

/// Block by block (the provided methods), each block tracked.
impl freespace_core::Batch for Tracked {}

// SAFETY: every block is `Global`'s, handed out once and recorded; a free
// goes back to `Global` with the layout it was allocated with.
unsafe impl Allocator for Tracked {
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        let block = Global.allocate(layout)?;
        let addr = block.cast::<u8>().as_ptr() as usize;
        if layout.size() > 0 {
            self.live.borrow_mut().push((addr, layout, block.len()));
            self.freed.borrow_mut().retain(|&a| a != addr);
        }
        Ok(block)
    }

    unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
        // SAFETY: the caller's contract is stronger than the checked one's.
        if let Err(c) = unsafe { self.try_deallocate(ptr, layout) } {
            report(c, "tracked");
        }
    }
}

// SAFETY: only a pointer in the ledger with a fitting layout is freed (to
// `Global`, with its own layout); every other call reads the ledger alone.
unsafe impl CheckedFree for Tracked {
    unsafe fn try_deallocate(&self, ptr: NonNull<u8>, layout: Layout) -> Result<(), Corruption> {
        if layout.size() == 0 {
            return Ok(());
        }
        let addr = ptr.as_ptr() as usize;
        let mut live = self.live.borrow_mut();
        if let Some(i) = live.iter().position(|&(a, _, _)| a == addr) {
            let (_, asked, len) = live[i];
            if layout.align() != asked.align()
                || layout.size() < asked.size()
                || layout.size() > len
            {
                return Err(Corruption::SizeMismatch { addr });
            }
            live.swap_remove(i);
            self.freed.borrow_mut().push(addr);
            // SAFETY: `Global` allocated it with `asked` (the ledger).
            unsafe { Global.deallocate(ptr, asked) };
            return Ok(());
        }
        if live.iter().any(|&(a, _, len)| a < addr && addr < a + len) {
            Err(Corruption::InteriorPointer { addr })
        } else if self.freed.borrow().contains(&addr) {
            Err(Corruption::DoubleFree { addr })
        } else {
            Err(Corruption::ForeignPointer { addr })
        }
    }
}

// SAFETY: exact: `true` for every byte of a live block, `false` elsewhere.
unsafe impl Owns for Tracked {
    fn owns(&self, ptr: NonNull<u8>) -> bool {
        let addr = ptr.as_ptr() as usize;
        self.live
            .borrow()
            .iter()
            .any(|&(a, _, len)| a <= addr && addr < a + len)
    }
}

impl freespace_core::Check for Tracked {
    fn check_all(&self) -> Result<(), Violation> {
        Ok(())
    }
}

/// The misuses every checked free must refuse, tried on `heap` with blocks
/// of `layout` (at least 32 bytes, alignment at most 16, so that 16 bytes
/// in is an aligned interior pointer). `check` is the heap's invariant
/// check, run after every step.
///
/// 1. a **foreign** pointer (16 bytes into a buffer the heap never saw) is
///    `Err(ForeignPointer)`, and the buffer is unchanged;
/// 2. an **interior** pointer (16 bytes into a live block) is
///    `Err(InteriorPointer)`, and the block's bytes are unchanged;
/// 3. a **double free** is `Err(DoubleFree)`, twice over: after a checked
///    first free and after a plain one (which a caching layer keeps in its
///    cache); then two fresh blocks must not be the same block (the refused
///    pointer was not taken back).
///
/// A report (the default handler aborts) ends the test process: that a
/// call returns at all is the "never aborts" half.
///
/// # Panics
///
/// When any of the above does not hold.
///
/// ```
/// use freespace_core::alloc::Layout;
/// use freespace_testkit::misuse::{refuses_misuse, Tracked};
/// refuses_misuse(&Tracked::new(), Layout::from_size_align(100, 16).unwrap(), &|| Ok(()));
/// ```
#[track_caller]
pub fn refuses_misuse<H: CheckedFree + ?Sized>(heap: &H, layout: Layout, check: Check<'_>) {
    assert!(layout.size() >= 32 && layout.align() <= 16);
    let verify = |step: &str| {
        if let Err(v) = check() {
            panic!("{step}: the heap's check failed: {v}");
        }
    };
    let fill = |p: NonNull<u8>, n: usize, seed: u8| {
        // SAFETY: `p` is `n` writable bytes (a live block or our buffer).
        unsafe { crate::shadow::fill(p, 0, n, seed) }
    };
    let intact = |p: NonNull<u8>, n: usize, seed: u8, step: &str| {
        // SAFETY: `p` is `n` readable bytes filled with `seed`'s pattern.
        if let Err(e) = unsafe { crate::shadow::verify_fill(p, 0, n, seed) } {
            panic!("{step}: a refused free wrote memory: {e}");
        }
    };

    // 1. foreign
    let mut buffer = vec![0u128; 8];
    let base = NonNull::new(buffer.as_mut_ptr().cast::<u8>()).unwrap();
    fill(base, 128, 0x3c);
    // SAFETY: 16 bytes into a 128-byte buffer.
    let foreign = unsafe { base.add(16) };
    // SAFETY: not a block of `heap`: a checked free only looks at it.
    let got = unsafe { heap.try_deallocate(foreign, layout) };
    assert_eq!(
        got,
        Err(Corruption::ForeignPointer {
            addr: foreign.as_ptr() as usize
        }),
        "foreign pointer"
    );
    intact(base, 128, 0x3c, "foreign pointer");
    verify("foreign pointer");

    // 2. interior
    let p = heap.allocate(layout).expect("allocate").cast::<u8>();
    fill(p, layout.size(), 0x5a);
    // SAFETY: 16 bytes into a live block of at least 32 bytes.
    let inner = unsafe { p.add(16) };
    // SAFETY: not a block's start: a checked free only looks at it.
    let got = unsafe { heap.try_deallocate(inner, layout) };
    assert_eq!(
        got,
        Err(Corruption::InteriorPointer {
            addr: inner.as_ptr() as usize
        }),
        "interior pointer"
    );
    intact(p, layout.size(), 0x5a, "interior pointer");
    verify("interior pointer");

    // 3a. double free after a checked free
    // SAFETY: `p` is live with `layout`, freed once here.
    let got = unsafe { heap.try_deallocate(p, layout) };
    assert_eq!(got, Ok(()), "valid free");
    verify("valid free");
    let double = Err(Corruption::DoubleFree {
        addr: p.as_ptr() as usize,
    });
    // SAFETY: the double free under test: only checked.
    let got = unsafe { heap.try_deallocate(p, layout) };
    assert_eq!(got, double, "double free (checked first)");
    verify("double free (checked first)");
    not_handed_out_twice(heap, layout, "double free (checked first)");

    // 3b. double free after a plain free (a cache keeps it)
    let q = heap.allocate(layout).expect("allocate").cast::<u8>();
    // SAFETY: `q` is live with `layout`, freed once here.
    unsafe { heap.deallocate(q, layout) };
    let double = Err(Corruption::DoubleFree {
        addr: q.as_ptr() as usize,
    });
    // SAFETY: the double free under test: only checked.
    let got = unsafe { heap.try_deallocate(q, layout) };
    assert_eq!(got, double, "double free (plain first)");
    verify("double free (plain first)");
    not_handed_out_twice(heap, layout, "double free (plain first)");
    drop(buffer);
}

/// Allocates two blocks of `layout` and panics if they are the same (a
/// refused free took its block back after all); frees both.
#[track_caller]
fn not_handed_out_twice<H: CheckedFree + ?Sized>(heap: &H, layout: Layout, step: &str) {
    let a = heap.allocate(layout).expect("allocate").cast::<u8>();
    let b = heap.allocate(layout).expect("allocate").cast::<u8>();
    assert_ne!(a, b, "{step}: the refused block was handed out twice");
    // SAFETY: both are live with `layout`, freed once each.
    unsafe {
        heap.deallocate(a, layout);
        heap.deallocate(b, layout);
    }
}
