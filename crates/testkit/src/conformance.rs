//! The `Allocator` contract suite (DESIGN §4), callable on any allocator
//! with one line.
//!
//! Each check panics with `conformance: <check>: <what went wrong>`, so a
//! failing test names the broken promise. What is checked:
//!
//! - **zero size**: a zero-size request succeeds with a dangling, aligned
//!   pointer, freeing it is a no-op, and it costs the heap nothing;
//! - **alignment**: every power of two from 1 to [`Config::max_align`], at
//!   several sizes, comes back aligned, and the block is fully writable;
//! - **excess**: every byte of the returned length is usable, and
//!   `deallocate` accepts every size from the request to the returned length;
//! - **grow/shrink**: contents survive, `grow_zeroed` zeroes, shrink to zero
//!   and grow from zero work;
//! - **huge layouts**: requests the address space cannot hold are `Err`, not
//!   a panic or a wrapped small block;
//! - **out of memory** (bounded heaps): allocating until `Err` ends in `Err`,
//!   and after freeing everything the heap serves at least as much again,
//!   including its largest single block (nothing was lost).
//!
//! ```
//! use freespace_core::alloc::Global;
//! use freespace_testkit::conformance::{self, Config};
//! conformance::run(&Global, &Config::default());
//! ```

use crate::shadow::{self, Shadow};
use crate::Check;
use freespace_core::alloc::{Allocator, Layout};
use std::ptr::NonNull;

/// What the suite may assume about the allocator under test.
pub struct Config<'a> {
    max_align: usize,
    bounded: bool,
    max_block: usize,
    check: Check<'a>,
}

impl Default for Config<'_> {
    fn default() -> Self {
        Self {
            max_align: 4096,
            bounded: false,
            max_block: 1 << 16,
            check: &|| Ok(()),
        }
    }
}

impl<'a> Config<'a> {
    /// The heap has a fixed capacity: also run the out-of-memory checks.
    pub fn bounded(mut self) -> Self {
        self.bounded = true;
        self
    }

    /// Largest alignment tried (default 4096).
    pub fn max_align(mut self, align: usize) -> Self {
        self.max_align = align;
        self
    }

    /// Largest block size the suite asks for outside the out-of-memory
    /// checks (default 64 KiB); lower it for tiny heaps.
    pub fn max_block(mut self, size: usize) -> Self {
        self.max_block = size;
        self
    }

    /// The heap's invariant check, called after every step.
    pub fn check(mut self, check: Check<'a>) -> Self {
        self.check = check;
        self
    }
}

macro_rules! ensure {
    ($cond:expr, $name:expr, $($msg:tt)+) => {
        if !$cond {
            panic!("conformance: {}: {}", $name, format!($($msg)+));
        }
    };
}

fn layout(size: usize, align: usize) -> Layout {
    Layout::from_size_align(size, align).expect("the suite only builds valid layouts")
}

fn addr(p: NonNull<u8>) -> usize {
    p.as_ptr() as usize
}

struct Suite<'c, 'a, A: Allocator + ?Sized> {
    alloc: &'a A,
    cfg: &'c Config<'c>,
    step: &'static str,
}

impl<A: Allocator + ?Sized> Suite<'_, '_, A> {
    fn check(&self) {
        if let Err(v) = (self.cfg.check)() {
            panic!("conformance: {}: invariant broken: {v}", self.step);
        }
    }

    /// Allocates, checks alignment/length, fills every byte.
    fn alloc_filled(&self, l: Layout, seed: u8) -> Option<NonNull<[u8]>> {
        let block = self.alloc.allocate(l).ok()?;
        let p = block.cast::<u8>();
        ensure!(
            addr(p) % l.align() == 0,
            self.step,
            "{:#x} is not aligned to {} (size {})",
            addr(p),
            l.align(),
            l.size()
        );
        ensure!(
            block.len() >= l.size(),
            self.step,
            "asked {} bytes, got {}",
            l.size(),
            block.len()
        );
        // SAFETY: the allocator returned `block.len()` writable bytes.
        unsafe { shadow::fill(p, 0, block.len(), seed) };
        Some(block)
    }

    fn verify(&self, block: NonNull<[u8]>, upto: usize, seed: u8) {
        // SAFETY: `block` is live with at least `upto` bytes.
        if let Err(e) = unsafe { shadow::verify_fill(block.cast(), 0, upto, seed) } {
            panic!("conformance: {}: {e}", self.step);
        }
    }

    fn free(&self, block: NonNull<[u8]>, l: Layout) {
        // SAFETY: `block` was allocated by `alloc` with `l`, and is live.
        unsafe { self.alloc.deallocate(block.cast(), l) };
        self.check();
    }

    fn zero_size(&mut self) {
        self.step = "zero size";
        for align in [1, 8, 64, self.cfg.max_align] {
            let l = layout(0, align);
            let Ok(b) = self.alloc.allocate(l) else {
                panic!("conformance: zero size: allocate(0, align {align}) failed")
            };
            ensure!(
                addr(b.cast()) % align == 0,
                self.step,
                "zero-size block {:#x} not aligned to {align}",
                addr(b.cast())
            );
            self.free(b, l);
        }
        // Zero-size requests never reach a parent: a thousand of them cost nothing.
        let l = layout(0, 16);
        let blocks: Vec<_> = (0..1000)
            .map(|_| self.alloc.allocate(l).expect("zero-size allocate"))
            .collect();
        self.check();
        for b in blocks {
            self.free(b, l);
        }
    }

    fn alignments(&mut self) {
        self.step = "alignment";
        let mut shadow = Shadow::new();
        let mut live = Vec::new();
        let mut align = 1;
        while align <= self.cfg.max_align {
            for size in [1, 7, align, 3 * align / 2 + 1, 200] {
                if size > self.cfg.max_block {
                    continue;
                }
                let l = layout(size, align);
                let Ok(b) = self.alloc.allocate(l) else {
                    continue;
                };
                let seed = (size ^ align) as u8;
                // SAFETY: `b` is a fresh block of `b.len()` bytes.
                let inserted = unsafe { shadow.insert(b.cast(), size, b.len(), align, seed) };
                if let Err(e) = inserted {
                    panic!("conformance: alignment: {e}");
                }
                live.push((b, l));
                self.check();
            }
            align *= 2;
        }
        // SAFETY: every block in the shadow is live.
        if let Err(e) = unsafe { shadow.verify_all() } {
            panic!("conformance: alignment: {e}");
        }
        for (b, l) in live {
            self.free(b, l);
        }
    }

    fn excess(&mut self) {
        self.step = "excess length";
        for size in [1, 8, 24, 100, 1000, 5000] {
            if size > self.cfg.max_block {
                continue;
            }
            let l = layout(size, 8);
            let Some(b) = self.alloc_filled(l, 0x5a) else {
                continue;
            };
            self.verify(b, b.len(), 0x5a);
            let len = b.len();
            self.free(b, l);
            // `deallocate` must accept every size from the request to the
            // returned length (a sample of them, each on a fresh block).
            let mut fits: Vec<usize> = vec![size, len, size + (len - size) / 2];
            fits.extend((size..=len).step_by(((len - size) / 8).max(1)));
            for fit in fits {
                let Some(b) = self.alloc_filled(l, 0x33) else {
                    continue;
                };
                let n = b.len().min(fit.max(size));
                self.free(b, layout(n, 8));
            }
        }
    }

    fn resize(&mut self) {
        self.step = "grow/shrink";
        for align in [1, 16, 256] {
            let mut l = layout(8, align);
            let Some(mut b) = self.alloc_filled(l, 0x11) else {
                return;
            };
            // Grow through a range of sizes; the old contents stay each time.
            for size in [16, 40, 100, 1000, 4000, self.cfg.max_block.min(20_000)] {
                if size <= l.size() {
                    continue;
                }
                let new = layout(size, align);
                // SAFETY: `b` is live with layout `l`; `new` is larger.
                let Ok(g) = (unsafe { self.alloc.grow(b.cast(), l, new) }) else {
                    self.verify(b, l.size(), 0x11);
                    break;
                };
                self.check();
                ensure!(
                    addr(g.cast()) % align == 0,
                    self.step,
                    "grown block not aligned to {align}"
                );
                ensure!(
                    g.len() >= size,
                    self.step,
                    "grow to {size} gave {} bytes",
                    g.len()
                );
                self.verify(g, l.size(), 0x11);
                // SAFETY: `g` has `g.len()` writable bytes.
                unsafe { shadow::fill(g.cast(), 0, g.len(), 0x11) };
                b = g;
                l = new;
            }
            // Shrink back down; the kept prefix stays.
            for size in [600, 60, 6] {
                if size >= l.size() {
                    continue;
                }
                let new = layout(size, align);
                // SAFETY: `b` is live with layout `l`; `new` is smaller.
                let Ok(s) = (unsafe { self.alloc.shrink(b.cast(), l, new) }) else {
                    self.verify(b, l.size(), 0x11);
                    continue;
                };
                self.check();
                ensure!(
                    addr(s.cast()) % align == 0,
                    self.step,
                    "shrunk block not aligned to {align}"
                );
                ensure!(
                    s.len() >= size,
                    self.step,
                    "shrink to {size} gave {} bytes",
                    s.len()
                );
                self.verify(s, size, 0x11);
                b = s;
                l = new;
            }
            // grow_zeroed: the new bytes are zero.
            let new = layout(l.size() + 300, align);
            let old_len = b.len();
            // SAFETY: `b` is live with layout `l`; `new` is larger.
            if let Ok(g) = unsafe { self.alloc.grow_zeroed(b.cast(), l, new) } {
                self.check();
                self.verify(g, l.size(), 0x11);
                for i in old_len..new.size() {
                    // SAFETY: `i < new.size() <= g.len()`.
                    let v = unsafe { g.cast::<u8>().add(i).read() };
                    ensure!(v == 0, self.step, "grow_zeroed left byte {i} = {v:#x}");
                }
                b = g;
                l = new;
            }
            // Shrink to zero frees the block; grow from zero allocates anew.
            let zero = layout(0, align);
            // SAFETY: `b` is live with layout `l`; zero is smaller.
            let z = unsafe { self.alloc.shrink(b.cast(), l, zero) }
                .unwrap_or_else(|_| panic!("conformance: grow/shrink: shrink to zero failed"));
            self.check();
            // SAFETY: `z` is a (zero-size) block with layout `zero`.
            let g = unsafe { self.alloc.grow(z.cast(), zero, layout(64, align)) };
            self.check();
            match g {
                Ok(g) => {
                    ensure!(
                        addr(g.cast()) % align == 0,
                        self.step,
                        "grow from zero not aligned"
                    );
                    self.free(g, layout(64, align));
                }
                Err(_) => self.free(z, zero),
            }
        }
    }

    fn huge(&mut self) {
        self.step = "huge layouts";
        let max = isize::MAX as usize;
        for (size, align) in [
            (max - 4095, 4096),
            (max / 2, 8),
            (max - 15, 16),
            (usize::MAX >> 2, 1),
        ] {
            let l = layout(size, align);
            ensure!(
                self.alloc.allocate(l).is_err(),
                self.step,
                "allocate({size:#x}, {align}) succeeded"
            );
            ensure!(
                self.alloc.allocate_zeroed(l).is_err(),
                self.step,
                "allocate_zeroed({size:#x}) succeeded"
            );
            self.check();
        }
        // Growing a real block to a huge size fails and leaves it intact.
        let l = layout(32, 8);
        if let Some(b) = self.alloc_filled(l, 0x77) {
            for size in [max - 7, max / 2] {
                // SAFETY: `b` is live with layout `l`; the new size is larger.
                let r = unsafe { self.alloc.grow(b.cast(), l, layout(size, 8)) };
                ensure!(r.is_err(), self.step, "grow to {size:#x} succeeded");
                self.check();
                self.verify(b, b.len(), 0x77);
            }
            self.free(b, l);
        }
    }

    /// Largest single block the heap serves now (binary search by size).
    fn largest_block(&self) -> usize {
        let (mut lo, mut hi) = (0usize, 1usize << 40);
        while lo < hi {
            let mid = lo + (hi - lo).div_ceil(2);
            let l = layout(mid, 16);
            match self.alloc.allocate(l) {
                Ok(b) => {
                    self.free(b, l);
                    lo = mid;
                }
                Err(_) => hi = mid - 1,
            }
        }
        lo
    }

    /// Allocates `size`-byte blocks until `Err`; returns them.
    fn fill_up(&self, size: usize) -> Vec<NonNull<[u8]>> {
        let l = layout(size, 16);
        let mut blocks = Vec::new();
        while let Some(b) = self.alloc_filled(l, blocks.len() as u8) {
            blocks.push(b);
            ensure!(
                blocks.len() < 50_000_000,
                self.step,
                "never ran out of memory"
            );
        }
        blocks
    }

    fn out_of_memory(&mut self) {
        self.step = "out of memory";
        let largest = self.largest_block();
        ensure!(
            largest > 0,
            self.step,
            "the heap cannot serve even one byte"
        );
        self.check();
        for size in [16, 48, 200, 1000] {
            let first = self.fill_up(size);
            self.check();
            for (i, b) in first.iter().enumerate() {
                self.verify(*b, size, i as u8);
            }
            let n = first.len();
            for b in first {
                self.free(b, layout(size, 16));
            }
            let again = self.fill_up(size);
            ensure!(
                again.len() >= n,
                self.step,
                "after freeing everything only {} of {n} blocks of {size} B fit again",
                again.len()
            );
            for b in again {
                self.free(b, layout(size, 16));
            }
        }
        // Interleaved frees, then everything back: coalescing must give the
        // largest block back.
        let mixed: Vec<_> = (0..)
            .map_while(|i| {
                let l = layout(16 + (i * 37) % 700, 16);
                self.alloc_filled(l, 0).map(|b| (b, l))
            })
            .collect();
        let (odd, even): (Vec<_>, Vec<_>) =
            mixed.into_iter().enumerate().partition(|(i, _)| i % 2 == 1);
        for (_, (b, l)) in odd.into_iter().chain(even) {
            self.free(b, l);
        }
        let after = self.largest_block();
        ensure!(
            after >= largest,
            self.step,
            "largest block was {largest} B, after churn and freeing everything it is {after} B"
        );
    }
}

/// Runs the whole suite against `alloc`, panicking at the first broken
/// promise.
pub fn run<A: Allocator + ?Sized>(alloc: &A, cfg: &Config<'_>) {
    let mut s = Suite {
        alloc,
        cfg,
        step: "start",
    };
    s.check();
    s.zero_size();
    s.alignments();
    s.excess();
    s.resize();
    s.huge();
    if cfg.bounded {
        s.out_of_memory();
    }
}
