//! freespace-buddy against the shared harnesses: the Allocator contract
//! suite on every source, the op interpreter with `check()` after every op,
//! and corruption reports in child processes with their exact messages.

use std::ptr::NonNull;

use freespace_buddy::Buddy;
use freespace_core::alloc::{Allocator, Global, Layout};
use freespace_core::{BlockState, Inspect};
use freespace_source::{Arena, FromAllocator};
use freespace_testkit::ops::{self, Ops};
use freespace_testkit::{assert_all_free, conformance};
use quickcheck::QuickCheck;

const KIB: usize = 1024;

/// A buffer that outlives the heaps built on it, `offset` bytes into which
/// an `Arena` of `len` bytes starts.
struct Buffer(Vec<u128>);

impl Buffer {
    fn new(len: usize) -> Self {
        Buffer(vec![0; len.div_ceil(16) + 1])
    }

    fn arena(&mut self, offset: usize, len: usize) -> Arena {
        assert!(offset + len <= self.0.len() * 16);
        // SAFETY: the buffer outlives the arena (every test drops the heap
        // first) and is only used through it.
        unsafe { Arena::from_raw_parts(self.0.as_mut_ptr().cast::<u8>().add(offset), len) }
    }
}

fn heap_len() -> usize {
    if cfg!(miri) {
        16 * KIB
    } else {
        256 * KIB
    }
}

#[test]
fn conformance_on_an_arena() {
    let mut buf = Buffer::new(heap_len());
    let heap: Buddy<Arena> = Buddy::new(buf.arena(0, heap_len()));
    let check = || heap.check();
    let cfg = conformance::Config::default()
        .bounded()
        .max_block(if cfg!(miri) { 2 * KIB } else { 64 * KIB })
        .max_align(if cfg!(miri) { 512 } else { 4096 })
        .check(&check);
    conformance::run(&heap, &cfg);
    assert_all_free(&heap);
    heap.check().unwrap();
}

#[test]
fn conformance_on_an_odd_arena() {
    let mut buf = Buffer::new(heap_len() + 64);
    let heap: Buddy<Arena, 32, 16> = Buddy::new(buf.arena(7, heap_len() - 13));
    let check = || heap.check();
    let cfg = conformance::Config::default()
        .bounded()
        .max_block(if cfg!(miri) { 2 * KIB } else { 64 * KIB })
        .max_align(if cfg!(miri) { 512 } else { 4096 })
        .check(&check);
    conformance::run(&heap, &cfg);
    assert_all_free(&heap);
}

#[test]
fn conformance_on_global() {
    let heap: Buddy<FromAllocator<Global>> = Buddy::new(FromAllocator::new(Global));
    let check = || heap.check();
    let cfg = conformance::Config::default()
        .max_block(if cfg!(miri) { 2 * KIB } else { 64 * KIB })
        .max_align(if cfg!(miri) { 512 } else { 4096 })
        .check(&check);
    conformance::run(&heap, &cfg);
    assert_all_free(&heap);
}

#[cfg(all(unix, not(miri)))]
#[test]
fn conformance_on_mmap_joins_the_regions() {
    use freespace_source::Mmap;
    let heap: Buddy<Mmap> = Buddy::new(Mmap::new());
    let check = || heap.check();
    conformance::run(&heap, &conformance::Config::default().check(&check));
    // Grow well past the first region; Mmap's regions are contiguous, so
    // the heap stays one zone (one metadata range).
    let l = Layout::from_size_align(100 * KIB, 8).unwrap();
    let blocks: Vec<_> = (0..40).map(|_| heap.allocate(l).unwrap()).collect();
    heap.check().unwrap();
    let mut metas = 0;
    heap.inspect(&mut |b| metas += (b.state == BlockState::Meta) as usize);
    assert_eq!(metas, 1);
    for b in blocks {
        // SAFETY: live with `l`.
        unsafe { heap.deallocate(b.cast(), l) };
    }
    assert_all_free(&heap);
    heap.check().unwrap();
}

/// `n` quickcheck cases; under Miri three short traces (generator size 16,
/// not quickcheck's 100: a trace's length grows with it).
fn quickcheck(n: u64) -> QuickCheck {
    if cfg!(miri) {
        QuickCheck::new().tests(3).rng(quickcheck::Gen::new(16))
    } else {
        QuickCheck::new().tests(n)
    }
}

#[test]
fn op_interpreter_checks_after_every_op() {
    fn prop(ops: Ops) -> Result<(), String> {
        let len = if cfg!(miri) { 16 * KIB } else { 256 * KIB };
        let mut buf = Buffer::new(len + 16);
        let heap: Buddy<Arena> = Buddy::new(buf.arena(16, len));
        ops::run(&heap, &ops.0, &|| heap.check()).map(|_| ())?;
        assert_all_free(&heap);
        Ok(())
    }
    quickcheck(1000).quickcheck(prop as fn(Ops) -> Result<(), String>);
}

#[test]
fn op_interpreter_on_growing_small_regions() {
    // `FromAllocator` regions are separate zones; small granules and few
    // orders put the order cap and zone edges under load.
    fn prop(ops: Ops) -> Result<(), String> {
        let heap: Buddy<FromAllocator<Global>, 32, 12> = Buddy::new(FromAllocator::new(Global));
        ops::run(&heap, &ops.0, &|| heap.check()).map(|_| ())?;
        assert_all_free(&heap);
        Ok(())
    }
    quickcheck(500).quickcheck(prop as fn(Ops) -> Result<(), String>);
}

#[test]
fn fuzz_bytes_decode_and_run() {
    let mut buf = Buffer::new(64 * KIB);
    let heap: Buddy<Arena> = Buddy::new(buf.arena(0, 64 * KIB));
    let bytes: Vec<u8> = (0..if cfg!(miri) { 200u32 } else { 20_000 })
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    ops::run_bytes(&heap, &bytes, &|| heap.check()).unwrap();
    assert_all_free(&heap);
}

// ---------------------------------------------------------------------------
// Corruption reports, each in a child process: the default handler prints
// one line and aborts.

const SCENARIO: &str = "FREESPACE_BUDDY_SCENARIO";

/// In the child: make the heap, commit the misuse named by `SCENARIO`, and
/// print the address the report must name before committing it.
fn run_scenario(name: &str) {
    let mut buf = Buffer::new(64 * KIB);
    let heap: Buddy<Arena> = Buddy::new(buf.arena(0, 64 * KIB));
    let l = Layout::from_size_align(64, 8).unwrap();
    let p = heap.allocate(l).unwrap().cast::<u8>();
    let _keep = heap.allocate(l).unwrap();
    let mut local = 0u64;
    if name == "corrupt_free_list" {
        // A write into a freed block (use after free) damages its list link;
        // the next allocation from that list must notice, not follow it.
        // SAFETY: `p` is live with `l`; afterwards its first word is
        // overwritten while it is free, which the heap must report.
        unsafe {
            heap.deallocate(p, l);
            p.cast::<usize>().as_ptr().write(0x1234_5678);
        }
        println!("addr={:#x}", p.as_ptr() as usize);
        let _ = heap.allocate(l);
        println!("survived");
        return;
    }
    let (target, layout, free_first) = match name {
        "double_free" => (p, l, true),
        "foreign_pointer" => (NonNull::from(&mut local).cast::<u8>(), l, false),
        // SAFETY: 16 bytes into a 64-byte block.
        "interior_pointer" => (
            unsafe { p.add(16) },
            Layout::from_size_align(16, 8).unwrap(),
            false,
        ),
        // SAFETY: 3 bytes into a 64-byte block.
        "misaligned_pointer" => (unsafe { p.add(3) }, l, false),
        "size_mismatch" => (p, Layout::from_size_align(128, 8).unwrap(), false),
        other => panic!("unknown scenario {other}"),
    };
    if free_first {
        // SAFETY: `p` is live with `l`.
        unsafe { heap.deallocate(p, l) };
    }
    println!("addr={:#x}", target.as_ptr() as usize);
    // SAFETY: deliberately wrong; the heap must report it, not act on it.
    unsafe { heap.deallocate(target, layout) };
    println!("survived");
}

/// Runs `scenario` in a child and returns its stdout and stderr.
#[cfg(unix)]
fn child(test: &str, scenario: &str) -> (String, String) {
    use std::os::unix::process::ExitStatusExt;
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(SCENARIO, scenario)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.signal(),
        Some(libc_sigabrt()),
        "child did not abort: {:?}\nstdout: {stdout}\nstderr: {stderr}",
        out.status
    );
    (stdout, stderr)
}

#[cfg(unix)]
fn libc_sigabrt() -> i32 {
    6
}

macro_rules! corruption_test {
    ($name:ident, $what:literal) => {
        #[cfg(unix)]
        #[test]
        #[cfg_attr(miri, ignore = "spawns a child process")]
        fn $name() {
            if let Ok(s) = std::env::var(SCENARIO) {
                if s == stringify!($name) {
                    run_scenario(&s);
                }
                return;
            }
            let (stdout, stderr) = child(stringify!($name), stringify!($name));
            let addr = stdout
                .split_whitespace()
                .find_map(|w| w.strip_prefix("addr="))
                .unwrap_or_else(|| panic!("no address in child stdout: {stdout}"));
            assert!(!stdout.contains("survived"));
            let expected = format!("freespace: {} at {} (buddy)\n", $what, addr);
            assert!(
                stderr.ends_with(&expected),
                "stderr {stderr:?} does not end with {expected:?}"
            );
            assert_eq!(stderr.matches("freespace:").count(), 1);
        }
    };
}

corruption_test!(double_free, "double free");
corruption_test!(foreign_pointer, "foreign pointer");
corruption_test!(interior_pointer, "interior pointer");
corruption_test!(misaligned_pointer, "misaligned pointer");
corruption_test!(size_mismatch, "size mismatch");
corruption_test!(corrupt_free_list, "corrupt free list");
