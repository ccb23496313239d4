//! The free-list core of freespace: chunk format with magic numbers, the free-chunk set and the Fit trait.
#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(
    missing_docs,
    clippy::undocumented_unsafe_blocks,
    clippy::missing_safety_doc
)]
