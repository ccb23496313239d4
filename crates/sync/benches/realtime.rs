//! A real-time thread and a normal thread pinned to one CPU, sharing one
//! lock: the real-time thread's worst wait, with the pure [`Spin`] lock and
//! with the default [`Futex`] lock.
//!
//! `cargo bench -p freespace-sync --bench realtime` (needs root or
//! `CAP_SYS_NICE` for `SCHED_FIFO`; says so and exits otherwise). The
//! normal thread takes the lock, works about a microsecond inside (a heap
//! splitting, merging or copying), releases it, works as long outside. The
//! real-time thread sleeps 200 µs, then takes the lock once, and records
//! how long that took. When it wakes while the normal thread holds the
//! lock, the normal thread is preempted inside its critical section: a
//! waiter that spins keeps the only CPU it may use until the kernel's
//! real-time throttling (or its fair-server) lets the holder run — tens to
//! thousands of milliseconds; a waiter that sleeps hands the CPU back at
//! once. `SECONDS` (default 2) sets each run's length.
#![allow(missing_docs)]

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use freespace_sync::{Futex, Spin};
use lock_api::{Mutex, RawMutex};

fn pin_to_cpu0() -> bool {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET writes
    // within it; sched_setaffinity(0, …) reads it for the calling thread.
    unsafe {
        let mut set: libc::cpu_set_t = core::mem::zeroed();
        libc::CPU_SET(0, &mut set);
        libc::sched_setaffinity(0, core::mem::size_of::<libc::cpu_set_t>(), &set) == 0
    }
}

fn make_realtime() -> bool {
    let param = libc::sched_param { sched_priority: 10 };
    // SAFETY: `param` is a valid sched_param for the calling thread.
    unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) == 0 }
}

/// About `n` units of work the compiler cannot remove.
fn work(n: u64) -> u64 {
    let mut x = 0u64;
    for i in 0..n {
        x = black_box(x.wrapping_mul(31).wrapping_add(i));
    }
    x
}

/// The worst single lock acquisition of the real-time thread, or `None`
/// if the thread may not be made real-time.
fn worst_wait<R: RawMutex + Send + Sync + 'static>(seconds: f64) -> Option<Duration> {
    let lock = Arc::new(Mutex::<R, u64>::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let normal = {
        let (lock, stop) = (Arc::clone(&lock), Arc::clone(&stop));
        std::thread::spawn(move || {
            pin_to_cpu0();
            while !stop.load(Ordering::Relaxed) {
                *lock.lock() += work(300);
                black_box(work(300));
            }
        })
    };
    let realtime = {
        let (lock, stop) = (Arc::clone(&lock), Arc::clone(&stop));
        std::thread::spawn(move || {
            let ok = pin_to_cpu0() && make_realtime();
            let mut worst = Duration::ZERO;
            let end = Instant::now() + Duration::from_secs_f64(seconds);
            while ok && Instant::now() < end {
                std::thread::sleep(Duration::from_micros(200));
                let start = Instant::now();
                *lock.lock() += 1;
                worst = worst.max(start.elapsed());
            }
            stop.store(true, Ordering::Relaxed);
            ok.then_some(worst)
        })
    };
    let worst = realtime.join().unwrap();
    normal.join().unwrap();
    worst
}

fn main() {
    let seconds: f64 = std::env::var("SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2.0);
    println!(
        "A SCHED_FIFO thread and a normal thread on one CPU, one lock, {seconds} s each:\n\
         the real-time thread's worst wait for the lock\n"
    );
    println!("| lock | worst wait (ms) |");
    println!("|---|---:|");
    for (name, worst) in [
        ("Futex (DefaultLock on Linux)", worst_wait::<Futex>(seconds)),
        ("Spin", worst_wait::<Spin>(seconds)),
    ] {
        match worst {
            Some(w) => println!("| {name} | {:.3} |", w.as_secs_f64() * 1e3),
            None => {
                println!("| {name} | cannot run: SCHED_FIFO refused (needs root or CAP_SYS_NICE) |")
            }
        }
    }
}
