//! Splitting and coalescing, and the free-list heap that uses them: FreeListHeap<F, S>.
#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(
    missing_docs,
    clippy::undocumented_unsafe_blocks,
    clippy::missing_safety_doc
)]
