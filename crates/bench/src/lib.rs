//! freespace-bench's library: the subjects (every freespace block and
//! stack, and the anchors) behind one interface, the deterministic
//! synthetic traces and workloads the `freespace-bench` binary times, and
//! the replay of recorded traces (`FREESPACE_TRACE`) the `replay` binary
//! runs (`cargo xtask replay`).
//!
//! | module | what it holds |
//! |---|---|
//! | [`subjects`] | [`subjects::Subject`], its adapters, [`subjects::SUBJECTS`] and [`subjects::with_subject`] |
//! | [`trace`] | synthetic op traces (slot-numbered) and the generators of the workloads |
//! | [`workloads`] | the benchmark workloads and their timed replay |
//! | [`rss`] | resident memory of the subjects over the OS: one replay per child process, peak and after free+trim |
//! | [`replay`] | recorded traces: ids to slots, and each subject's footprint, fragmentation and time, Johnstone–Wilson style |
//!
//! ```
//! use freespace_bench::subjects::SUBJECTS;
//! assert_eq!(SUBJECTS[0].name, "glibc");
//! ```

pub mod replay;
pub mod rss;
pub mod subjects;
pub mod trace;
pub mod workloads;
