//! `FREESPACE_TRACE=path`: a record of every call, for `cargo xtask replay`.
//!
//! When the variable is set (read once, by the library's constructor), the
//! shim writes every successful `malloc`-family call to `path` as one
//! 32-byte record in freespace-stats' [trace format](freespace_stats::trace).
//! A `%p` in the path is replaced by the process id, and then every process
//! (forked children, exec'd programs) writes a trace of its own; without
//! `%p` only the first process traces: the constructor removes the variable
//! from the environment, so programs it starts are not traced, and a forked
//! child stops tracing (its records would interleave with the parent's in
//! one file).
//!
//! # How a record is written
//!
//! ```text
//!   call ──► thread's buffer (64 KiB, mmap'd, one of SLOTS) ──full──► write(2)
//!                     │
//!   thread exit ──────┤ (the shim's ExitFlush)        process exit (.fini_array):
//!   fork, child ──────┘ dropped: the parent writes it  every claimed buffer
//! ```
//!
//! Nothing here allocates through the shim or panics: the buffers come from
//! `mmap`, the thread's state is a thread-local without destructor, files
//! are written with `write(2)`. A thread that finds no free buffer (more
//! than [`SLOTS`] live threads), or calls after its buffer was flushed at
//! its exit, writes each record straight to the file.
//!
//! # Order
//!
//! Every record takes its `seq` from one process-wide counter: a free
//! before the block goes back, an allocation after it was handed out, so
//! a block freed by one thread and reused by another has its free first.
//! A realloc takes its number after the call: if it moved the block and
//! another thread got the old address in between, that thread's record
//! comes first (a window of a few instructions; the replay reports it
//! as an allocation of a live id).
//!
//! Before each write the file's inode is compared with the one opened: a
//! program that closed the descriptor and reused the number for a file of
//! its own stops the trace instead of having records written into it.

// The unit tests link no constructor, so tracing is never started there.
#![cfg_attr(test, allow(dead_code))]

use core::cell::Cell;
use core::ffi::{c_char, c_int};
use core::ptr::{self, NonNull};
use core::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use core::sync::atomic::{AtomicBool, AtomicI32, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize};

use freespace_stats::trace::{Header, Record, RECORD};

use crate::extras;

/// Buffers, one per live thread; more threads write unbuffered.
pub(crate) const SLOTS: usize = 256;
/// Bytes per buffer (2048 records).
const BUFFER: usize = 64 << 10;

/// Process exit has begun: every record goes straight to the file.
static DIRECT: AtomicBool = AtomicBool::new(false);
/// The trace file (-1: none).
static FD: AtomicI32 = AtomicI32::new(-1);
/// Device and inode of the trace file, to notice a descriptor reused.
static DEV: AtomicU64 = AtomicU64::new(0);
static INO: AtomicU64 = AtomicU64::new(0);
/// The next record's `seq`.
static SEQ: AtomicU64 = AtomicU64::new(0);
/// Threads numbered so far.
static THREADS: AtomicU32 = AtomicU32::new(0);
/// Held while writing to the file, so that flushes do not interleave.
static WRITING: AtomicBool = AtomicBool::new(false);

/// One thread's record buffer.
///
/// # Invariants
/// - MALLOC-B1: `mem` is null or `BUFFER` bytes from `mmap`, never unmapped.
/// - MALLOC-B2: `len` (a multiple of `RECORD`, at most `BUFFER`) and the bytes
///   of `mem` are only touched by whoever holds `busy`.
/// - MALLOC-B3: while `claimed`, the buffer belongs to one thread (the one whose
///   `Mine::slot` names it); the exit flush and the fork child handler may
///   reach it too, through `busy`.
struct Buffer {
    claimed: AtomicBool,
    busy: AtomicBool,
    len: AtomicUsize,
    mem: AtomicPtr<u8>,
}

static BUFFERS: [Buffer; SLOTS] = [const {
    Buffer {
        claimed: AtomicBool::new(false),
        busy: AtomicBool::new(false),
        len: AtomicUsize::new(0),
        mem: AtomicPtr::new(ptr::null_mut()),
    }
}; SLOTS];

/// `Mine::slot` before the thread's first record.
const UNSET: u32 = u32::MAX;
/// `Mine::slot` of a thread that writes each record straight to the file.
const UNBUFFERED: u32 = u32::MAX - 1;

/// A thread's tracing state, a field of the shim's per-thread state. No
/// destructor (the shim's exit flush calls [`thread_exit`]), so it is
/// usable at every point of the thread's life; all zeros is its initial
/// state (MALLOC-S0).
pub(crate) struct Mine {
    /// The complement of `UNSET`, `UNBUFFERED`, or the index of the
    /// thread's buffer (MALLOC-B3): see [`slot`](Self::slot).
    slot_not: Cell<u32>,
    /// The thread's number in the records.
    thread: Cell<u16>,
}

impl Mine {
    /// `UNSET`, `UNBUFFERED`, or the index of the thread's buffer.
    fn slot(&self) -> u32 {
        !self.slot_not.get()
    }

    fn set_slot(&self, slot: u32) {
        self.slot_not.set(!slot);
    }
}

/// Runs `f` on the calling thread's tracing state.
fn with_mine<R>(f: impl FnOnce(&Mine) -> R) -> Option<R> {
    // SAFETY: the calling thread's state (TLS-1), alive for the thread's
    // life; the reference does not outlive `f`.
    unsafe { crate::tls::get().as_ref() }.map(|t| f(&t.trace))
}

/// Whether calls are being traced: the file is open and the header
/// written ([`extras::TRACE`], set by the constructor or the fork child
/// handler, cleared when the trace must stop); one relaxed load, for the
/// hooks.
#[inline(always)]
pub(crate) fn on() -> bool {
    extras::on(extras::TRACE)
}

/// Records an allocation of `size` bytes at `align` now at `p`.
#[cold]
pub(crate) fn alloc(p: NonNull<u8>, size: usize, align: usize) {
    record(|seq, thread| Record::alloc(seq, id(p), size as u64, align as u64, thread));
}

/// Records the free of `p`; called before the block goes back.
#[cold]
pub(crate) fn free(p: NonNull<u8>) {
    record(|seq, thread| Record::free(seq, id(p), thread));
}

/// Records that `old` was resized to `size` bytes and is now `new`.
#[cold]
pub(crate) fn realloc(old: NonNull<u8>, new: NonNull<u8>, size: usize) {
    record(|seq, thread| Record::realloc(seq, id(old), id(new), size as u64, thread));
}

/// A block's id: its user address over 16 (every user pointer is
/// 16-aligned), never 0 for a non-null pointer.
fn id(p: NonNull<u8>) -> u64 {
    (p.as_ptr().addr() >> 4) as u64
}

/// Writes one record: into the thread's buffer, or straight to the file.
fn record(make: impl Fn(u64, u16) -> Record) {
    let mine = with_mine(|mine| {
        if mine.slot() == UNSET {
            let (slot, thread) = claim();
            mine.set_slot(slot);
            mine.thread.set(thread);
        }
        (mine.slot(), mine.thread.get())
    });
    let Some((slot, thread)) = mine else {
        return direct(&make(SEQ.fetch_add(1, Relaxed), u16::MAX));
    };
    let Some(buffer) = BUFFERS.get(slot as usize) else {
        return direct(&make(SEQ.fetch_add(1, Relaxed), thread));
    };
    lock(&buffer.busy);
    // Checked under `busy`: the exit flush sets `DIRECT` and then empties
    // every buffer, taking `busy`, so nothing is appended after it.
    let seq = SEQ.fetch_add(1, Relaxed);
    let bytes = make(seq, thread).encode();
    if DIRECT.load(Acquire) {
        buffer.busy.store(false, Release);
        return direct_bytes(&bytes);
    }
    let len = buffer.len.load(Relaxed);
    let mem = buffer.mem.load(Relaxed);
    // SAFETY: `mem` is this thread's claimed buffer of `BUFFER` bytes (MALLOC-B1,
    // `claim` mapped it) and `len + RECORD <= BUFFER` (MALLOC-B2: it is flushed
    // when full); we hold `busy` (MALLOC-B2).
    unsafe { ptr::copy_nonoverlapping(bytes.as_ptr(), mem.add(len), RECORD) };
    let len = len + RECORD;
    if len == BUFFER {
        // SAFETY: `mem` holds `len` written bytes; we hold `busy`.
        unsafe { write_out(mem, len) };
        buffer.len.store(0, Relaxed);
    } else {
        buffer.len.store(len, Relaxed);
    }
    buffer.busy.store(false, Release);
}

/// A buffer and a number for the calling thread (`UNBUFFERED` when none
/// is free or mapping one fails).
#[cold]
fn claim() -> (u32, u16) {
    let thread = THREADS.fetch_add(1, Relaxed) as u16;
    for (i, b) in BUFFERS.iter().enumerate() {
        if b.claimed.swap(true, Acquire) {
            continue;
        }
        if b.mem.load(Relaxed).is_null() {
            // SAFETY: an anonymous private mapping; no pointer is passed in.
            let mem = unsafe {
                libc::mmap(
                    ptr::null_mut(),
                    BUFFER,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                )
            };
            if mem == libc::MAP_FAILED {
                b.claimed.store(false, Release);
                return (UNBUFFERED, thread);
            }
            b.mem.store(mem.cast(), Relaxed);
        }
        return (i as u32, thread);
    }
    (UNBUFFERED, thread)
}

/// The calling thread exits (the shim's exit flush): writes out its
/// buffer and gives it back; its later calls write unbuffered.
pub(crate) fn thread_exit() {
    with_mine(|m| {
        if let Some(buffer) = BUFFERS.get(m.slot() as usize) {
            flush(buffer);
            buffer.claimed.store(false, Release);
            m.set_slot(UNBUFFERED);
        }
    });
}

/// Writes out what `buffer` holds.
fn flush(buffer: &Buffer) {
    lock(&buffer.busy);
    let len = buffer.len.load(Relaxed);
    if len > 0 {
        // SAFETY: a non-empty buffer is mapped (MALLOC-B1) with `len` bytes
        // written; we hold `busy` (MALLOC-B2).
        unsafe { write_out(buffer.mem.load(Relaxed), len) };
        buffer.len.store(0, Relaxed);
    }
    buffer.busy.store(false, Release);
}

fn direct(record: &Record) {
    direct_bytes(&record.encode());
}

fn direct_bytes(bytes: &[u8; RECORD]) {
    // SAFETY: `bytes` is `RECORD` readable bytes.
    unsafe { write_out(bytes.as_ptr(), RECORD) };
}

/// Writes `len` bytes at `mem` to the trace file, whole, under `WRITING`.
///
/// # Safety
/// `mem` is readable for `len` bytes.
unsafe fn write_out(mem: *const u8, len: usize) {
    lock(&WRITING);
    let fd = FD.load(Relaxed);
    if on() && same_file(fd) {
        // SAFETY: the caller's contract.
        unsafe { write_all(fd, mem, len) };
    }
    WRITING.store(false, Release);
}

/// Whether `fd` is still the file the trace opened; if not, the trace
/// stops.
fn same_file(fd: c_int) -> bool {
    // SAFETY: an all-zero `stat` is a valid value of the C struct.
    let mut st: libc::stat = unsafe { core::mem::zeroed() };
    // SAFETY: `st` is a valid out-pointer.
    let ok = unsafe { libc::fstat(fd, &mut st) } == 0
        && st.st_dev as u64 == DEV.load(Relaxed)
        && st.st_ino as u64 == INO.load(Relaxed);
    if !ok {
        extras::set(extras::TRACE, false);
    }
    ok
}

/// `write(2)` until every byte is out or the file refuses.
///
/// # Safety
/// `mem` is readable for `len` bytes.
unsafe fn write_all(fd: c_int, mut mem: *const u8, mut len: usize) {
    while len > 0 {
        // SAFETY: the caller's contract.
        let n = unsafe { libc::write(fd, mem.cast(), len) };
        if n > 0 {
            // SAFETY: `n <= len` bytes were written; the rest follows.
            mem = unsafe { mem.add(n as usize) };
            len -= n as usize;
        } else if n < 0 && errno() == libc::EINTR {
            continue;
        } else {
            return;
        }
    }
}

fn errno() -> c_int {
    // SAFETY: `__errno_location` returns this thread's `errno`.
    unsafe { *libc::__errno_location() }
}

/// Takes a spin flag (held for a record copy, or one `write(2)`).
fn lock(flag: &AtomicBool) {
    while flag
        .compare_exchange_weak(false, true, Acquire, Relaxed)
        .is_err()
    {
        // SAFETY: no preconditions.
        unsafe { libc::sched_yield() };
    }
}

// ---------------------------------------------------------------------------
// Starting and stopping: the constructor, fork, process exit
// ---------------------------------------------------------------------------

/// The path template from `FREESPACE_TRACE` (NUL-terminated), kept for a
/// forked child that opens its own trace.
///
/// # Invariants
/// - MALLOC-TP1: written only by [`init`] (the constructor, before other threads
///   exist), and read only after it.
struct Template(core::cell::UnsafeCell<[u8; PATH_MAX]>);

// SAFETY: MALLOC-TP1: written once before any other thread can exist, read-only
// after.
unsafe impl Sync for Template {}

const PATH_MAX: usize = 4096;
static TEMPLATE: Template = Template(core::cell::UnsafeCell::new([0; PATH_MAX]));
/// The template holds `%p`: every process traces into a file of its own.
static PER_PROCESS: AtomicBool = AtomicBool::new(false);

/// Called by the library's constructor ([`crate::lifecycle`]): starts
/// tracing if `FREESPACE_TRACE` is set.
#[cfg(not(test))]
pub(crate) fn init() {
    // SAFETY: a NUL-terminated name; `getenv` returns null or a string
    // that stays valid while we copy it (nothing changes the environment
    // during a constructor).
    let value = unsafe { libc::getenv(c"FREESPACE_TRACE".as_ptr()) };
    if value.is_null() {
        return;
    }
    // SAFETY: MALLOC-TP1: the constructor runs before other threads exist.
    let template = unsafe { &mut *TEMPLATE.0.get() };
    let mut n = 0;
    // SAFETY: `value` is NUL-terminated; we stop at the NUL or the buffer's end.
    while n + 1 < PATH_MAX && unsafe { *value.add(n) } != 0 {
        // SAFETY: as above.
        template[n] = unsafe { *value.add(n) } as u8;
        n += 1;
    }
    template[n] = 0;
    if n == 0 {
        return;
    }
    let per_process = template[..n].windows(2).any(|w| w == b"%p");
    PER_PROCESS.store(per_process, Relaxed);
    if !per_process {
        // SAFETY: a NUL-terminated name; no other thread reads the
        // environment during the constructor.
        unsafe { libc::unsetenv(c"FREESPACE_TRACE".as_ptr()) };
    }
    start();
    // SAFETY: handlers that only touch this module's atomics and make
    // system calls (fork's child may only do async-signal-safe work).
    unsafe { libc::pthread_atfork(None, None, Some(child)) };
}

/// Opens the trace file for this process and writes the header.
fn start() {
    // SAFETY: MALLOC-TP1.
    let template = unsafe { &*TEMPLATE.0.get() };
    let mut path = [0u8; PATH_MAX];
    let pid = {
        let mut digits = [0u8; 20];
        // SAFETY: `getpid` has no preconditions.
        let mut pid = unsafe { libc::getpid() } as u64;
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = b'0' + (pid % 10) as u8;
            pid /= 10;
            if pid == 0 {
                break;
            }
        }
        (digits, i)
    };
    let (mut from, mut to) = (0, 0);
    while template[from] != 0 && to + 21 < PATH_MAX {
        if template[from] == b'%' && template[from + 1] == b'p' {
            for &d in &pid.0[pid.1..] {
                path[to] = d;
                to += 1;
            }
            from += 2;
        } else {
            path[to] = template[from];
            to += 1;
            from += 1;
        }
    }
    path[to] = 0;
    // SAFETY: `path` is NUL-terminated.
    let fd = unsafe {
        libc::open(
            path.as_ptr().cast::<c_char>(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_APPEND | libc::O_CLOEXEC,
            0o644,
        )
    };
    if fd < 0 {
        return;
    }
    // SAFETY: an all-zero `stat` is a valid value of the C struct.
    let mut st: libc::stat = unsafe { core::mem::zeroed() };
    // SAFETY: `st` is a valid out-pointer.
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        // SAFETY: our descriptor.
        unsafe { libc::close(fd) };
        return;
    }
    DEV.store(st.st_dev as u64, Relaxed);
    INO.store(st.st_ino as u64, Relaxed);
    FD.store(fd, Relaxed);
    let header = Header::CURRENT.encode();
    // SAFETY: `header` is readable for its length.
    unsafe { write_all(fd, header.as_ptr(), header.len()) };
    extras::set(extras::TRACE, true);
}

/// In a forked child: the buffers' records are the parent's (it writes
/// them), so they are dropped; the child traces into its own file
/// (`%p`) or not at all.
extern "C" fn child() {
    let mine = with_mine(Mine::slot).unwrap_or(UNSET);
    for (i, b) in BUFFERS.iter().enumerate() {
        b.len.store(0, Relaxed);
        b.busy.store(false, Relaxed);
        b.claimed.store(i as u32 == mine, Relaxed);
    }
    WRITING.store(false, Relaxed);
    if !on() {
        return;
    }
    extras::set(extras::TRACE, false);
    // SAFETY: the parent's descriptor, inherited; the child's copy is its own.
    unsafe { libc::close(FD.swap(-1, Relaxed)) };
    if PER_PROCESS.load(Relaxed) {
        // A trace of its own counts from 0.
        SEQ.store(0, Relaxed);
        start();
    }
}

/// Called by the library's destructor ([`crate::lifecycle`]): from now on
/// every record goes straight to the file; then every buffer is written
/// out.
#[cfg(not(test))]
pub(crate) fn fini() {
    DIRECT.store(true, Release);
    for b in &BUFFERS {
        if b.claimed.load(Acquire) {
            flush(b);
        }
    }
}
