//! Test harnesses shared by every freespace crate (dev-only, uses `std`).
//!
//! | module | what it gives a test |
//! |---|---|
//! | [`conformance`] | the `Allocator` contract suite of DESIGN §4, one call per allocator |
//! | [`shadow`] | a shadow model of the live blocks: overlap, bounds, alignment, contents |
//! | [`ops`] | a byte string ⇄ a sequence of allocate/deallocate/grow/shrink ops, and the interpreter that runs one against an allocator and the shadow model, calling an invariant hook after every op |
//! | [`calls`] | [`calls::Logged`]: a log of where every block went, to compare two allocators (or an index and its plain scan) over the same trace |
//! | [`bump`] | [`Bump`], a small bump heap over any [`freespace_core::Source`], to exercise sources |
//! | [`misuse`] | [`misuse::refuses_misuse`]: a foreign, an interior and a double-freed pointer through a layer's checked free (must be `Err`, never abort, never write); [`misuse::Tracked`], an exact checked parent |
//!
//! quickcheck and cargo-fuzz drive the same interpreter: quickcheck through
//! [`ops::Ops`]'s `Arbitrary`, the fuzzer through [`ops::run_bytes`].
//!
//! The harness is itself tested against deliberately broken allocators
//! (overlapping blocks, misaligned results, a grow that drops bytes, a free
//! that leaks): see `tests/selftest.rs`.
//!
//! # Example
//!
//! ```
//! use freespace_core::alloc::Global;
//! use freespace_testkit::{conformance, ops};
//!
//! conformance::run(&Global, &conformance::Config::default());
//! let trace = ops::decode(b"some bytes a fuzzer made up");
//! ops::run(&Global, &trace, &|| Ok(())).unwrap();
//! ```

pub mod bump;
pub mod calls;
pub mod conformance;
pub mod misuse;
pub mod ops;
pub mod recording;
pub mod rng;
pub mod shadow;

pub use bump::Bump;
pub use recording::Recording;
pub use rng::Rng;

use freespace_core::{BlockState, Inspect};

/// The invariant hook every harness calls after each step: a heap's
/// `check()`, or `&|| Ok(())` for allocators without one.
pub type Check<'a> = &'a dyn Fn() -> Result<(), freespace_core::Violation>;

/// Panics unless every block `heap` reports is free or metadata: after a test
/// freed everything it allocated, a used block is a leak.
///
/// ```
/// # use freespace_core::{BlockInfo, BlockState, Inspect};
/// struct Empty;
/// impl Inspect for Empty { fn inspect(&self, _: &mut dyn FnMut(BlockInfo)) {} }
/// freespace_testkit::assert_all_free(&Empty);
/// ```
#[track_caller]
pub fn assert_all_free<I: Inspect + ?Sized>(heap: &I) {
    let mut leaked = Vec::new();
    heap.inspect(&mut |b| {
        if b.state == BlockState::Used {
            leaked.push(b);
        }
    });
    assert!(
        leaked.is_empty(),
        "leak: {} used block(s) after everything was freed: {:x?}",
        leaked.len(),
        leaked
    );
}
