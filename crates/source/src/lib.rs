//! Memory sources for freespace heaps: a fixed Arena, sbrk, mmap, and any Allocator.
#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(
    missing_docs,
    clippy::undocumented_unsafe_blocks,
    clippy::missing_safety_doc
)]
