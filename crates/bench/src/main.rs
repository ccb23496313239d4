//! freespace's benchmark harness (see `cargo xtask bench`).
fn main() {}
