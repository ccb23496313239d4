//! The calling thread's [`ThreadState`], and the hook that runs when a
//! thread exits: per-thread storage without the standard library.
//!
//! On x86-64 the state is a block of **initial-exec** thread-local
//! storage defined here in assembly: `.tbss`, so the C library zero-fills
//! it for every thread, and all-zero bytes are a thread's initial state
//! (MALLOC-S0). [`get`] is two instructions (the thread pointer, plus an
//! offset the dynamic linker writes once into the GOT): no
//! `__tls_get_addr` call, as rustc's general-dynamic model for a shared
//! library would make on every `malloc` and `free` (stable Rust cannot
//! ask for another model: `-Z tls-model=initial-exec` is nightly), and no
//! `std::thread_local!`, so the library needs no standard library at all
//! (`freespace-malloc-so` builds it `no_std`, a third of its former size).
//!
//! The module's invariant, **TLS-1**: [`get`] returns the address of the
//! *calling* thread's state, valid (and the same) for the thread's whole
//! life, its exit included: the storage is the thread's TLS block, which
//! the C library frees only after the thread's last destructor. After
//! `fork` the child's one thread is a copy of the forking thread, its TLS
//! included.
//!
//! On other targets the state is a `std::thread_local!` without
//! destructor, initialised to the same zeros.
//!
//! The cost of initial-exec TLS: the state (under 2 KiB, most of it the
//! rack's two magazine pointers per class; `readelf -l` shows the TLS
//! segment) becomes part of the static TLS block. Preloaded or linked, it is laid out at
//! start-up; a `dlopen` after start-up must find room for it in the
//! reserve glibc keeps for such libraries (`python3 -c "import ctypes;
//! ctypes.CDLL(...)"` loads it), and fails with "cannot allocate memory
//! in static TLS block" where other libraries used that reserve up
//! (glibc's tunable `glibc.rtld.optional_static_tls` enlarges it).

use core::ffi::{c_int, c_void};

use crate::shim::ThreadState;

#[cfg(target_arch = "x86_64")]
core::arch::global_asm!(
    // The state: zero-filled, visible to this library's code only.
    ".pushsection .tbss.freespace_malloc_thread,\"awT\",@nobits",
    ".p2align {align}",
    ".globl freespace_malloc_thread",
    ".hidden freespace_malloc_thread",
    ".type freespace_malloc_thread,@object",
    ".size freespace_malloc_thread,{size}",
    "freespace_malloc_thread:",
    ".zero {size}",
    ".popsection",
    size = const core::mem::size_of::<ThreadState>(),
    align = const core::mem::align_of::<ThreadState>().trailing_zeros(),
);

/// The calling thread's state (TLS-1). Never null.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) fn get() -> *const ThreadState {
    let thread: *const ThreadState;
    // SAFETY: reads the thread pointer (`%fs:0` holds the TCB's own
    // address, x86-64 TLS ABI) and the GOT entry the dynamic linker filled
    // with the state's offset from it; their sum is the calling thread's
    // state, `size_of::<ThreadState>()` bytes aligned as it needs.
    unsafe {
        core::arch::asm!(
            "mov {t}, qword ptr fs:[0]",
            "add {t}, qword ptr [rip + freespace_malloc_thread@GOTTPOFF]",
            t = out(reg) thread,
            options(nostack, pure, readonly),
        );
    }
    thread
}

#[cfg(not(target_arch = "x86_64"))]
extern crate std;

#[cfg(not(target_arch = "x86_64"))]
std::thread_local! {
    static THREAD: ThreadState = const { ThreadState::zero() };
}

/// The calling thread's state (TLS-1): the `thread_local!` lookup, which
/// for a thread-local without destructor never fails.
#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
pub(crate) fn get() -> *const ThreadState {
    THREAD
        .try_with(|t| t as *const ThreadState)
        .unwrap_or(core::ptr::null())
}

unsafe extern "C" {
    /// glibc's registration of a thread-exit destructor (what C++
    /// `thread_local` and `std::thread_local!` use): run on the exiting
    /// thread, last registered first, before its TLS is freed; one
    /// registered while destructors run still runs. Allocates (`calloc`).
    fn __cxa_thread_atexit_impl(
        dtor: extern "C" fn(*mut c_void),
        arg: *mut c_void,
        dso: *mut c_void,
    ) -> c_int;

    /// The handle of the object this code is linked into (defined by the
    /// C runtime's `crtbegin`, in every shared library and program).
    static __dso_handle: u8;
}

/// Runs `dtor(arg)` when the calling thread exits (after destructors
/// registered later). False if the C library could not register it.
pub(crate) fn at_thread_exit(dtor: extern "C" fn(*mut c_void), arg: *mut c_void) -> bool {
    // SAFETY: `dtor` may run at any later point on this thread, and stays
    // mapped until it has: the handle names the object holding it, which
    // the C library keeps loaded while it has destructors to run (a null
    // handle is not allowed: glibc would count them against no object).
    unsafe {
        let dso = (&raw const __dso_handle).cast_mut().cast();
        __cxa_thread_atexit_impl(dtor, arg, dso) == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every thread gets its own state, the same one on every call, zeroed
    /// at first (MALLOC-S0).
    #[test]
    fn each_thread_sees_its_own_state() {
        let main = get();
        assert!(!main.is_null());
        assert_eq!(get(), main);
        let other = std::thread::spawn(|| {
            let first = get();
            assert_eq!(get(), first);
            // SAFETY: this thread's state, alive while it runs.
            let t = unsafe { &*first };
            assert_eq!(t.slot(), crate::fork::UNCLAIMED);
            first as usize
        })
        .join()
        .unwrap();
        assert_ne!(other, main as usize);
        assert_eq!(get(), main);
        assert_eq!(main.align_offset(core::mem::align_of::<ThreadState>()), 0);
    }

    /// All zeros is a thread's initial state (MALLOC-S0): what a new
    /// thread finds in its zero-filled storage.
    #[test]
    fn zero_is_the_initial_state() {
        let t = ThreadState::zero();
        assert_eq!(t.slot(), crate::fork::UNCLAIMED);
        assert!(t.gate.get().is_none());
        assert!(!t.forking.get());
        assert!(t.is_new());
    }

    /// A registered exit hook runs on its thread, with its argument.
    #[test]
    fn exit_hooks_run_when_the_thread_exits() {
        use core::sync::atomic::{AtomicUsize, Ordering};
        static SEEN: AtomicUsize = AtomicUsize::new(0);
        extern "C" fn hook(arg: *mut c_void) {
            SEEN.fetch_add(arg.addr(), Ordering::SeqCst);
        }
        std::thread::spawn(|| {
            assert!(at_thread_exit(hook, core::ptr::without_provenance_mut(5)));
            assert_eq!(SEEN.load(Ordering::SeqCst), 0);
        })
        .join()
        .unwrap();
        assert_eq!(SEEN.load(Ordering::SeqCst), 5);
    }
}
