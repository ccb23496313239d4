//! The cross-block fault matrix: the corruption cases the blocks' own tests
//! do not already cover, each tried twice — through the checked free
//! (`try_deallocate` must return exactly the expected `Corruption` and leave
//! the heap as it was) and through the plain free in a child process (which
//! must abort with exactly `freespace: <what> at 0x<addr> (<block>)`) — and
//! out-of-memory injected at every allocation of a workload with
//! [`FailAfter`].
//!
//! Every case prints one line (`FAULT\t<block>\t<fault>\t<checked>\t<abort>`,
//! `OOM\t<stack>\t<runs>\t<result>`) that `cargo xtask reliability` turns
//! into the table of docs/reliability.md; run with `--nocapture` to see them.
//!
//! Covered elsewhere, not repeated here: the free-list heap's double frees
//! (immediate, after coalescing, after reuse), foreign/interior/misaligned
//! pointers, one overwritten header byte, an 8-byte overflow freeing the
//! block that overflowed, size and alignment mismatches and header
//! lookalikes in user data (crates/split-coalesce/tests/heap.rs); the
//! buddy's double free, foreign/interior/misaligned pointers, size mismatch
//! and corrupt free list (crates/buddy/tests/buddy.rs); the slab's double
//! free, foreign and interior pointers (crates/slab/tests/slab.rs);
//! segregated double frees (crates/segregated/tests/segregated.rs); a
//! foreign, an interior and a double-freed pointer through every layer's
//! checked free (`freespace_testkit::misuse`, in each layer's tests).

use std::ptr::NonNull;

use freespace_buddy::Buddy;
use freespace_core::alloc::{Allocator, GlobalAlloc, Layout};
use freespace_core::{Corruption, Inspect, Violation};
use freespace_first_fit::FirstFitHeap;
use freespace_slab::Slab;
use freespace_source::Arena;
use freespace_stats::{FailAfter, FailMode};
use freespace_sync::Locked;

/// Bytes of header before every free-list payload.
const HEADER: usize = 16;
/// Bytes of a slab header: seal, two links, class, list, free count,
/// search start, identity, a zero word.
const SLAB_HEADER: usize = 48;
const SLAB_SIZE: usize = freespace_slab::DEFAULT_SLAB_SIZE;

const CHILD_VAR: &str = "FREESPACE_FAULT_CASE";
const MODE_VAR: &str = "FREESPACE_FAULT_MODE";

// ---------------------------------------------------------------------------
// heaps over leaked arenas (a child aborts; the parent leaks a little)
// ---------------------------------------------------------------------------

fn arena(len: usize) -> Arena {
    let words: &'static mut [u128] = Box::leak(vec![0u128; len / 16].into_boxed_slice());
    // SAFETY: the buffer is leaked, 16-aligned, `len` bytes, and used only
    // through this arena.
    unsafe { Arena::from_raw_parts(words.as_mut_ptr().cast(), len) }
}

fn leak<T>(x: T) -> &'static T {
    Box::leak(Box::new(x))
}

type ListHeap = FirstFitHeap<Arena>;
type BuddyHeap = Buddy<Arena>;
type SlabHeap = Slab<&'static BuddyHeap>;

fn addr(p: NonNull<u8>) -> usize {
    p.as_ptr() as usize
}

fn l(size: usize, align: usize) -> Layout {
    Layout::from_size_align(size, align).unwrap()
}

// ---------------------------------------------------------------------------
// cases
// ---------------------------------------------------------------------------

/// What a free must report.
#[derive(Clone, Copy)]
enum Expect {
    /// Exactly this.
    Exact(Corruption),
    /// Some corruption (damaged metadata may be read as more than one kind);
    /// the abort must then print exactly what the checked free returned.
    Any,
    /// Nothing: the free is legitimate (user data that looks like metadata).
    Nothing,
}

/// One fault, set up on a fresh heap: the free that must be reported.
struct Case {
    /// The block whose report is expected (the name in the message).
    block: &'static str,
    /// What the free must report.
    expect: Expect,
    /// The free: checked (`true`, returns the result) or plain (`false`,
    /// aborts on corruption; returns `Ok` if it does not).
    free: Box<dyn Fn(bool) -> Result<(), Corruption>>,
    /// The heap's invariant check afterwards.
    check: Box<dyn Fn() -> Result<(), Violation>>,
    /// Whether the heap's metadata is intact (so `check` must pass after a
    /// refused free) or damaged on purpose (so `check` must see it).
    intact: bool,
}

/// Frees `p` into `heap` through the checked free (`true`) or the plain one.
fn free_into<H: freespace_core::CheckedFree>(
    heap: &'static H,
    p: NonNull<u8>,
    lay: Layout,
) -> impl Fn(bool) -> Result<(), Corruption> {
    move |checked| {
        // SAFETY: the fault under test; a valid heap reports before acting.
        unsafe {
            if checked {
                freespace_core::CheckedFree::try_deallocate(heap, p, lay)
            } else {
                heap.deallocate(p, lay);
                Ok(())
            }
        }
    }
}

/// A first-fit heap with three live 48-byte blocks `a`, `b`, `c` in a row.
fn list_heap() -> (&'static ListHeap, [NonNull<u8>; 3], usize) {
    let heap = leak(ListHeap::new(arena(1 << 14)));
    let blocks = [0; 3].map(|_| heap.allocate(l(48, 8)).unwrap());
    let len = blocks[0].len();
    (heap, blocks.map(|b| b.cast::<u8>()), len)
}

fn buddy_heap() -> &'static BuddyHeap {
    leak(Buddy::new(arena(1 << 18)))
}

fn slab_heap() -> (&'static BuddyHeap, &'static SlabHeap) {
    let buddy = buddy_heap();
    (buddy, leak(Slab::new(buddy)))
}

/// Every case's name, in table order.
fn case_names() -> Vec<String> {
    let mut names = Vec::new();
    for i in 0..HEADER {
        names.push(format!("free-list/header byte {i:02} flipped"));
    }
    names.extend(
        [
            "free-list/1-byte overflow into the next header, next freed",
            "free-list/1-byte overflow into the next header, overflowing block freed",
            "free-list/8-byte overflow into the next header, next freed",
            "free-list/double free through GlobalAlloc (Locked)",
        ]
        .map(String::from),
    );
    for i in 0..SLAB_HEADER {
        names.push(format!("slab/slab header byte {i:02} flipped"));
    }
    names.extend(
        [
            "slab/slab pointer freed to the buddy",
            "slab/wrong layout on free (another class)",
            "slab/user data equal to the slab header (no false report)",
            "slab/foreign pointer, layout routed to the parent",
            "slab/interior pointer, layout routed to the parent",
            "slab/double free, layout routed to the parent",
            "buddy/double free after coalescing",
            "buddy/double free after reuse",
            "buddy/wrong layout on free (larger order)",
        ]
        .map(String::from),
    );
    names
}

fn build(name: &str) -> Case {
    let (group, fault) = name.split_once('/').unwrap();
    match group {
        "free-list" => list_case(fault),
        "slab" => slab_case(fault),
        "buddy" => buddy_case(fault),
        _ => panic!("no case {name}"),
    }
}

fn list_case(fault: &str) -> Case {
    let (heap, [a, b, _c], len) = list_heap();
    let lay = l(48, 8);
    let header = |p: NonNull<u8>| addr(p) - HEADER;
    let mk = |p, expect: Corruption, intact| Case {
        block: "free-list heap",
        expect: Expect::Exact(expect),
        free: Box::new(free_into(heap, p, lay)),
        check: Box::new(move || heap.check()),
        intact,
    };
    if let Some(i) = fault
        .strip_prefix("header byte ")
        .and_then(|r| r.split(' ').next())
    {
        let i: usize = i.parse().unwrap();
        // SAFETY: byte `i` of `a`'s header lies in the heap's arena.
        unsafe {
            let byte = a.sub(HEADER - i);
            byte.write(byte.read() ^ 0xFF);
        }
        return mk(a, Corruption::OverwrittenHeader { addr: header(a) }, false);
    }
    let overflow = |n: usize| {
        // SAFETY: `n` bytes right past `a`'s usable length: `b`'s header,
        // inside the arena.
        unsafe { a.add(len).write_bytes(0xA5, n) }
    };
    match fault {
        "1-byte overflow into the next header, next freed" => {
            overflow(1);
            mk(b, Corruption::OverwrittenHeader { addr: header(b) }, false)
        }
        "1-byte overflow into the next header, overflowing block freed" => {
            overflow(1);
            mk(a, Corruption::OverwrittenHeader { addr: header(b) }, false)
        }
        "8-byte overflow into the next header, next freed" => {
            overflow(8);
            mk(b, Corruption::OverwrittenHeader { addr: header(b) }, false)
        }
        "double free through GlobalAlloc (Locked)" => {
            let locked: &'static Locked<ListHeap> =
                leak(Locked::new(ListHeap::new(arena(1 << 14))));
            // SAFETY: `p` is allocated and freed once through `GlobalAlloc`;
            // the second free is the fault under test.
            let p = unsafe { locked.alloc(lay) };
            // SAFETY: `p` is live with `lay` (freed once here).
            unsafe { locked.dealloc(p, lay) };
            let p = NonNull::new(p).unwrap();
            Case {
                block: "free-list heap",
                expect: Expect::Exact(Corruption::DoubleFree { addr: addr(p) }),
                free: Box::new(move |checked| {
                    // SAFETY: the fault under test.
                    unsafe {
                        if checked {
                            locked.lock().try_deallocate(p, lay)
                        } else {
                            locked.dealloc(p.as_ptr(), lay);
                            Ok(())
                        }
                    }
                }),
                check: Box::new(move || locked.check().and_then(|()| locked.lock().check())),
                intact: true,
            }
        }
        _ => panic!("no free-list case {fault}"),
    }
}

fn slab_case(fault: &str) -> Case {
    let (buddy, slab) = slab_heap();
    let lay = l(32, 8);
    let objects = [0; 4].map(|_| slab.allocate(lay).unwrap().cast::<u8>());
    let p = objects[1];
    let base = addr(p) & !(SLAB_SIZE - 1);
    let check = move || slab.check().and_then(|()| buddy.check());
    let mk = |block, p, lay, expect: Expect, intact| Case {
        block,
        expect,
        free: Box::new(free_into(slab, p, lay)),
        check: Box::new(check),
        intact,
    };
    if let Some(i) = fault
        .strip_prefix("slab header byte ")
        .and_then(|r| r.split(' ').next())
    {
        let i: usize = i.parse().unwrap();
        let slab_start = freespace_core::layout::with_addr(p, base).unwrap();
        // SAFETY: byte `i` of the slab header, inside the slab (a live
        // buddy block).
        unsafe {
            let byte = slab_start.add(i);
            byte.write(byte.read() ^ 0xFF);
        }
        return mk("slab", p, lay, Expect::Any, false);
    }
    match fault {
        "slab pointer freed to the buddy" => Case {
            block: "buddy",
            expect: Expect::Exact(Corruption::InteriorPointer { addr: addr(p) }),
            free: Box::new(free_into(buddy, p, lay)),
            check: Box::new(check),
            intact: true,
        },
        "wrong layout on free (another class)" => mk(
            "slab",
            p,
            l(100, 8),
            Expect::Exact(Corruption::SizeMismatch { addr: addr(p) }),
            true,
        ),
        "user data equal to the slab header (no false report)" => {
            let slab_start = freespace_core::layout::with_addr(p, base).unwrap();
            // SAFETY: every object is a live 32-byte block; the slab header
            // is readable slab memory. The objects now hold exactly the
            // bytes of the header, magic included.
            unsafe {
                for o in objects {
                    o.copy_from_nonoverlapping(slab_start, 32);
                }
            }
            mk("slab", p, lay, Expect::Nothing, true)
        }
        // Issue 16: a free whose layout routes past the slab to its parent
        // is checked by the parent's checked free (its plain free reports).
        "foreign pointer, layout routed to the parent" => {
            let outside: &'static mut [u128; 4] = Box::leak(Box::new([0; 4]));
            let q = NonNull::from(&mut outside[2]).cast::<u8>();
            let big = l(20_000, 8);
            let expect = Expect::Exact(Corruption::ForeignPointer { addr: addr(q) });
            mk("buddy", q, big, expect, true)
        }
        "interior pointer, layout routed to the parent" => {
            let big = l(20_000, 8);
            let b = slab.allocate(big).unwrap().cast::<u8>();
            // SAFETY: 16 bytes into a live 20000-byte block.
            let q = unsafe { b.add(16) };
            let expect = Expect::Exact(Corruption::InteriorPointer { addr: addr(q) });
            mk("buddy", q, big, expect, true)
        }
        "double free, layout routed to the parent" => {
            let big = l(20_000, 8);
            let b = slab.allocate(big).unwrap().cast::<u8>();
            // SAFETY: `b` is live with `big`, freed once here.
            unsafe { slab.deallocate(b, big) };
            let expect = Expect::Exact(Corruption::DoubleFree { addr: addr(b) });
            mk("buddy", b, big, expect, true)
        }
        _ => panic!("no slab case {fault}"),
    }
}

fn buddy_case(fault: &str) -> Case {
    let heap = buddy_heap();
    let lay = l(64, 8);
    let mk = |p, lay, expect| Case {
        block: "buddy",
        expect: Expect::Exact(expect),
        free: Box::new(free_into(heap, p, lay)),
        check: Box::new(move || heap.check()),
        intact: true,
    };
    // Two buddies: 64-byte blocks whose addresses differ only in bit 6.
    // The others stay live.
    let live: Vec<NonNull<u8>> = (0..16)
        .map(|_| heap.allocate(lay).unwrap().cast::<u8>())
        .collect();
    let (a, b) = live
        .iter()
        .find_map(|&a| {
            live.iter()
                .find(|&&b| addr(a) ^ addr(b) == 64)
                .map(|&b| (a, b))
        })
        .expect("two of 16 blocks are buddies");
    match fault {
        "double free after coalescing" => {
            // SAFETY: `a` and `b` are live with `lay`; freed once each.
            unsafe {
                heap.deallocate(a, lay);
                heap.deallocate(b, lay); // merges with `a`
            }
            mk(b, lay, Corruption::DoubleFree { addr: addr(b) })
        }
        "double free after reuse" => {
            // SAFETY: as above; then the merged 128 bytes are handed out
            // again, so `b` now points into the middle of a live block.
            unsafe {
                heap.deallocate(a, lay);
                heap.deallocate(b, lay);
            }
            let lo = addr(a).min(addr(b));
            let big = loop {
                let big = heap.allocate(l(128, 128)).unwrap().cast::<u8>();
                if addr(big) == lo {
                    break big;
                }
            };
            let stale = if addr(a) == lo { b } else { a };
            let _ = big;
            mk(
                stale,
                lay,
                Corruption::InteriorPointer { addr: addr(stale) },
            )
        }
        "wrong layout on free (larger order)" => {
            mk(a, l(4096, 8), Corruption::SizeMismatch { addr: addr(a) })
        }
        _ => panic!("no buddy case {fault}"),
    }
}

// ---------------------------------------------------------------------------
// the matrix
// ---------------------------------------------------------------------------

/// Cases the blocks do not catch yet (reported to their owners): they are
/// still run and shown in the table as missed, and the matrix fails if one
/// starts being caught, so this list is kept exact.
///
/// Empty at present: the slab header's seal (a keyed hash of the header's
/// address and every other header word, verified on every free) now catches
/// a flip of any slab header byte.
fn known_gap(name: &str) -> bool {
    const GAPS: &[&str] = &[];
    GAPS.contains(&name)
}

/// The checked free of `name`: the expected result, the heap left
/// unchanged when intact; for damaged metadata, whether `check()` (run
/// before the free) sees the damage. Runs in the child (a missed fault may
/// crash).
fn checked(name: &str) -> Result<String, String> {
    let case = build(name);
    let seen = if case.intact {
        String::new()
    } else {
        match (case.check)() {
            Ok(()) => "; check() misses it".into(),
            Err(v) => format!("; check() sees it ({})", v.invariant),
        }
    };
    let got = (case.free)(true);
    let report = match (case.expect, got) {
        (Expect::Nothing, Ok(())) => {
            (case.check)().map_err(|v| format!("check after a legitimate free: {v}"))?;
            return Ok("no report (correct)".into());
        }
        (Expect::Nothing, Err(c)) => return Err(format!("false report: {c}")),
        (Expect::Exact(e), got) if got != Err(e) => {
            return Err(format!("expected Err({e}), got {got:?}{seen}"))
        }
        (_, Ok(())) => return Err(format!("not reported{seen}")),
        (_, Err(c)) => c,
    };
    match ((case.check)(), case.intact) {
        (Ok(()), true) | (Err(_), false) => Ok(format!("Err({}){seen}", report.what())),
        (Err(v), true) => Err(format!("refused free damaged the heap: {v}")),
        (Ok(()), false) => Err(format!("Err({}); check() misses the damage", report.what())),
    }
}

/// Runs `name` in a child process, `mode` "checked" or "abort", and
/// judges what it did.
#[cfg(unix)]
fn in_child(name: &str, mode: &str) -> Result<String, String> {
    use std::os::unix::process::ExitStatusExt;
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "fault_child", "--nocapture", "--test-threads=1"])
        .env(CHILD_VAR, name)
        .env(MODE_VAR, mode)
        .output()
        .map_err(|e| e.to_string())?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let died = || {
        format!(
            "child died: {:?}; stderr {:?}",
            out.status,
            stderr.trim_end()
        )
    };
    if mode == "checked" {
        return stdout
            .split("checked: ")
            .nth(1)
            .and_then(|r| r.lines().next())
            .map(|r| match r.strip_prefix("FAILED ") {
                Some(e) => Err(e.to_string()),
                None => Ok(r.to_string()),
            })
            .unwrap_or_else(|| Err(died()));
    }
    let expect = stdout
        .split("expect: ")
        .nth(1)
        .and_then(|r| r.lines().next())
        .ok_or_else(died)?;
    if expect == "missed" {
        return Err("the free does not report it".into());
    }
    if expect == "nothing" {
        return if out.status.success() && stdout.contains("returned") {
            Ok("returned (correct)".into())
        } else {
            Err(format!("legitimate free did not return: {}", died()))
        };
    }
    if out.status.signal() != Some(libc::SIGABRT) {
        return Err(format!("no SIGABRT: {}", died()));
    }
    if stdout.contains("returned") {
        return Err("the free returned".into());
    }
    if !stderr.lines().any(|l| l == expect) {
        return Err(format!(
            "expected the line {expect:?} on stderr, got {stderr:?}"
        ));
    }
    Ok("SIGABRT + exact message".into())
}

#[cfg(not(unix))]
fn in_child(_: &str, _: &str) -> Result<String, String> {
    Ok("not run (not unix)".into())
}

/// In the child only: set up the case and free, checked or plain.
#[test]
fn fault_child() {
    let (Ok(name), Ok(mode)) = (std::env::var(CHILD_VAR), std::env::var(MODE_VAR)) else {
        return;
    };
    use std::io::Write;
    if mode == "checked" {
        match checked(&name) {
            Ok(s) => println!("checked: {s}"),
            Err(e) => println!("checked: FAILED {}", e.replace('\n', " ")),
        }
        return;
    }
    let case = build(&name);
    match case.expect {
        Expect::Exact(c) => println!("expect: {}", c.message(case.block)),
        // The checked free reports without acting: ask it what the plain
        // free must then print.
        Expect::Any => match (case.free)(true) {
            Err(c) => println!("expect: {}", c.message(case.block)),
            Ok(()) => {
                println!("expect: missed");
                return;
            }
        },
        Expect::Nothing => println!("expect: nothing"),
    }
    std::io::stdout().flush().unwrap();
    let _ = (case.free)(false);
    println!("returned");
}

#[test]
#[cfg_attr(miri, ignore = "spawns child processes")]
fn fault_matrix() {
    let mut failures = Vec::new();
    for name in case_names() {
        let (block, fault) = name.split_once('/').unwrap();
        let results = [in_child(&name, "checked"), in_child(&name, "abort")];
        let gap = known_gap(&name);
        let show = |r: &Result<String, String>| match (r, gap) {
            (Ok(s), _) => format!("ok: {s}"),
            (Err(e), true) => format!("MISSED (known gap): {e}"),
            (Err(e), false) => format!("FAILED: {e}"),
        };
        println!(
            "FAULT\t{block}\t{fault}\t{}\t{}",
            show(&results[0]),
            show(&results[1])
        );
        match (gap, results.iter().all(Result::is_ok)) {
            (false, false) => failures.push(format!(
                "{name}: {} | {}",
                show(&results[0]),
                show(&results[1])
            )),
            (true, true) => {
                failures.push(format!("{name}: caught now: remove it from known_gap()"))
            }
            _ => {}
        }
    }
    assert!(
        failures.is_empty(),
        "{} fault case(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

// ---------------------------------------------------------------------------
// out of memory at every allocation in turn
// ---------------------------------------------------------------------------

/// A zeroed buffer that every run of an out-of-memory loop builds its heap
/// on (leaking one per run would take gigabytes).
struct Reusable {
    ptr: *mut u128,
    words: usize,
}

impl Reusable {
    fn new(len: usize) -> Self {
        let words = len / 16;
        let ptr = Box::into_raw(vec![0u128; words].into_boxed_slice()).cast::<u128>();
        Self { ptr, words }
    }

    /// An arena over the whole buffer, zeroed again.
    ///
    /// # Safety
    ///
    /// No heap over an earlier arena of this buffer is alive, and the arena
    /// does not outlive `self`.
    unsafe fn arena(&self) -> Arena {
        // SAFETY: the buffer is `words` live u128s owned by `self`, and no
        // one else uses it now (caller contract).
        unsafe {
            self.ptr.write_bytes(0, self.words);
            Arena::from_raw_parts(self.ptr.cast(), self.words * 16)
        }
    }
}

impl Drop for Reusable {
    fn drop(&mut self) {
        // SAFETY: made by `Box::into_raw` of a slice of `words` u128s.
        drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(self.ptr, self.words)) });
    }
}

/// A workload of nested collections that surfaces every allocation failure
/// as an `Err` (`try_reserve`, `Box::try_new_in`), and drops everything it
/// made before returning.
fn workload<A: Allocator>(heap: &A) -> Result<u64, ()> {
    use freespace_core::alloc::{Box, Vec};
    let mut outer: Vec<Vec<u64, &A>, &A> = Vec::new_in(heap);
    let mut boxes: Vec<Box<[u8; 200], &A>, &A> = Vec::new_in(heap);
    let mut sum = 0;
    for i in 0..24u64 {
        outer.try_reserve(1).map_err(|_| ())?;
        let mut inner = Vec::new_in(heap);
        for j in 0..(i * 7) % 40 {
            inner.try_reserve(1).map_err(|_| ())?;
            inner.push(i * j);
        }
        sum += inner.iter().sum::<u64>();
        outer.push(inner);
        if i % 3 == 0 {
            boxes.try_reserve(1).map_err(|_| ())?;
            boxes.push(Box::try_new_in([i as u8; 200], heap).map_err(|_| ())?);
        }
        if i % 5 == 4 {
            // Free some in the middle so frees interleave with failures.
            // (No `shrink_to_fit`: its failure is fatal, and a layer may
            // need memory to shrink, e.g. a slab moving a block to a
            // smaller class.)
            outer.swap_remove(0);
        }
    }
    // A big grow late in the run.
    let mut big: Vec<u8, &A> = Vec::new_in(heap);
    big.try_reserve(3000).map_err(|_| ())?;
    big.extend((0..3000).map(|x| x as u8));
    sum += big.iter().map(|&b| u64::from(b)).sum::<u64>();
    Ok(sum + boxes.len() as u64)
}

/// Runs `workload` over `FailAfter<heap>` failing request 0, 1, 2 ... until
/// a run succeeds without reaching the failing index; after each run the
/// heap must have no used block and pass its check. Returns the number of
/// runs.
fn oom_each_allocation<H: Allocator + Inspect>(
    name: &str,
    make: impl Fn() -> H,
    check: impl Fn(&H) -> Result<(), Violation>,
    mode: FailMode,
) -> usize {
    let expect = {
        let heap = make();
        workload(&heap).expect("the workload fits the heap")
    };
    for n in 0.. {
        let heap = make();
        let failing = FailAfter::new(&heap, n).with_mode(mode);
        let result = workload(&failing);
        let failed = failing.failures() > 0;
        failing.check().unwrap();
        match (failed, result) {
            (false, Ok(sum)) => {
                assert_eq!(sum, expect, "{name}: run {n}");
                check(&heap).unwrap_or_else(|v| panic!("{name}: run {n}: {v}"));
                freespace_testkit::assert_all_free(&heap);
                return n + 1;
            }
            (true, Err(())) => {}
            (false, Err(())) => panic!("{name}: run {n}: Err without an injected failure"),
            (true, Ok(_)) => panic!("{name}: run {n}: an injected failure was swallowed"),
        }
        check(&heap).unwrap_or_else(|v| panic!("{name}: run {n}: {v}"));
        freespace_testkit::assert_all_free(&heap);
    }
    unreachable!()
}

#[test]
fn oom_at_every_allocation_leaks_nothing_and_surfaces_err() {
    let mut lines = Vec::new();
    for mode in [FailMode::Once, FailMode::FromThenOn] {
        let m = match mode {
            FailMode::Once => "once",
            FailMode::FromThenOn => "from then on",
        };
        let buf = Reusable::new(1 << 17);
        // SAFETY: each run's heap is dropped before the next is made.
        let runs = oom_each_allocation(
            "first fit",
            || ListHeap::new(unsafe { buf.arena() }),
            |h| h.check(),
            mode,
        );
        lines.push(format!("FailAfter<FirstFitHeap<Arena>> ({m})\t{runs}"));
        // SAFETY: as above.
        let runs = oom_each_allocation(
            "buddy",
            || Buddy::<Arena>::new(unsafe { buf.arena() }),
            |h| h.check(),
            mode,
        );
        lines.push(format!("FailAfter<Buddy<Arena>> ({m})\t{runs}"));
        // Failures inside a layer: the slab's own requests (new slabs, the
        // slab index) fail; `Slab` must surface them and give back what it
        // took. The buddy underneath must end with nothing used.
        let runs = oom_layer("Slab<FailAfter<&Buddy<Arena>>>", mode, |buddy, n| {
            let slab = Slab::new(FailAfter::new(buddy, n).with_mode(mode));
            let r = workload(&slab);
            let failed = slab.parent().failures() > 0;
            slab.check().unwrap();
            drop(slab);
            (r, failed)
        });
        lines.push(format!("Slab<FailAfter<&Buddy<Arena>>> ({m})\t{runs}"));
        let runs = oom_layer("Segregated<FailAfter<&Buddy<Arena>>>", mode, |buddy, n| {
            let seg =
                freespace_segregated::Segregated::new(FailAfter::new(buddy, n).with_mode(mode));
            let r = workload(&seg);
            let failed = seg.parent().failures() > 0;
            seg.check().unwrap();
            drop(seg);
            (r, failed)
        });
        lines.push(format!(
            "Segregated<FailAfter<&Buddy<Arena>>> ({m})\t{runs}"
        ));
    }
    for line in lines {
        println!("OOM\t{line}\tok: no leak, no panic, every failure surfaced as Err");
    }
}

/// Like [`oom_each_allocation`] with the failing layer *inside* a stack:
/// `run(buddy, n)` builds the stack over the buddy with request `n`
/// failing, runs the workload, drops the stack and says whether the
/// injected failure happened.
fn oom_layer(
    name: &str,
    _mode: FailMode,
    run: impl Fn(&BuddyHeap, usize) -> (Result<u64, ()>, bool),
) -> usize {
    let buf = Reusable::new(4 << 20);
    // SAFETY: each buddy over `buf` is dropped before the next is made.
    let expect = run(&Buddy::new(unsafe { buf.arena() }), usize::MAX)
        .0
        .expect("the workload fits");
    for n in 0.. {
        // SAFETY: as above.
        let buddy = Buddy::<Arena>::new(unsafe { buf.arena() });
        let (result, failed) = run(&buddy, n);
        buddy
            .check()
            .unwrap_or_else(|v| panic!("{name}: run {n}: {v}"));
        freespace_testkit::assert_all_free(&buddy);
        match (failed, result) {
            (false, Ok(sum)) => {
                assert_eq!(sum, expect, "{name}: run {n}");
                return n + 1;
            }
            // A layer may absorb a failure of its own refill (a batch that
            // comes back short is still a success) — but only if the
            // workload then saw the same results.
            (true, Ok(sum)) => {
                assert_eq!(sum, expect, "{name}: run {n}: wrong result after a failure")
            }
            (true, Err(())) => {}
            (false, Err(())) => panic!("{name}: run {n}: Err without an injected failure"),
        }
    }
    unreachable!()
}
