//! Bonwick's slab allocator: typed object caches and an untyped size-class Slab layer over any parent allocator.
#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs, clippy::undocumented_unsafe_blocks, clippy::missing_safety_doc)]
