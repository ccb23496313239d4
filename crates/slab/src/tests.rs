//! Unit tests of the slab internals.
