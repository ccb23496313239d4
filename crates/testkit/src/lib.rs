//! Test harnesses shared by every freespace crate: the conformance suite, a shadow model and the op interpreter.
#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(
    missing_docs,
    clippy::undocumented_unsafe_blocks,
    clippy::missing_safety_doc
)]
