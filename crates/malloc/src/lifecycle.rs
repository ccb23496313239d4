//! The library's one constructor and one destructor, registered in
//! `.init_array` and `.fini_array`: what the modules need done when the
//! library is loaded and when the process exits, in one place and in a
//! fixed order (two registrations would run in whatever order the linker
//! laid them out).
//!
//! ```text
//!   load (.init_array) ──► stats::init   settings from the environment:
//!                                         counting, purge budget, fences
//!                      └─► trace::init   FREESPACE_TRACE: open the trace
//!   exit (.fini_array) ──► trace::fini   flush every thread's buffer
//!                      └─► stats::fini   print the summary line
//! ```
//!
//! Both run after the C library is initialised (its own constructors come
//! first), so the environment is readable; no other thread exists yet at
//! load.

/// The library's constructor.
#[cfg(not(test))]
extern "C" fn init() {
    crate::stats::init();
    crate::trace::init();
}

/// The library's destructor.
#[cfg(not(test))]
extern "C" fn fini() {
    crate::trace::fini();
    crate::stats::fini();
}

#[cfg(not(test))]
#[used]
#[link_section = ".init_array"]
static INIT: extern "C" fn() = init;

#[cfg(not(test))]
#[used]
#[link_section = ".fini_array"]
static FINI: extern "C" fn() = fini;
