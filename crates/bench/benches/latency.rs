//! Per-op latency of each block and stack (and the anchors): one
//! allocate + free of a block of 16 B, 256 B and 4 KiB, with 500 other
//! blocks live in a fragmented heap (1000 allocated, every other one
//! freed), so the list-scanning policies have something to scan.
//!
//! ```text
//! cargo bench -p freespace-bench --bench latency [-- FILTER]
//! ```
//!
//! Not run in CI; the subjects are the ones `cargo xtask bench` measures.

#![allow(missing_docs, dead_code)]

#[path = "../src/subjects.rs"]
mod subjects;
#[path = "../src/trace.rs"]
mod trace;

use std::alloc::Layout;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use subjects::{with_subject, Memory, Subject, Visit, SUBJECTS};

const ARENA: usize = 64 << 20;
const SIZES: [usize; 3] = [16, 256, 4096];

struct Latency<'c, 'g> {
    group: &'c mut criterion::BenchmarkGroup<'g, criterion::measurement::WallTime>,
    name: &'static str,
}

impl Visit for Latency<'_, '_> {
    fn single<S: Subject>(&mut self, s: &S) {
        // A fragmented heap: 1000 blocks of mixed sizes, every other one freed.
        let mut rng = freespace_testkit::Rng::spread(42);
        let mut live = Vec::new();
        for i in 0..1000 {
            let size = trace::Sizes::LogUniform(16, 4096).draw(&mut rng) as usize;
            let l = Layout::from_size_align(size, 8).unwrap();
            let p = s.alloc(l);
            assert!(!p.is_null(), "{} cannot set up", self.name);
            if i % 2 == 0 {
                // SAFETY: just allocated with `l`.
                unsafe { s.dealloc(p, l) };
            } else {
                live.push((p, l));
            }
        }
        for size in SIZES {
            let l = Layout::from_size_align(size, 8).unwrap();
            self.group
                .bench_function(BenchmarkId::new(self.name, size), |b| {
                    b.iter(|| {
                        let p = s.alloc(black_box(l));
                        assert!(!p.is_null());
                        // SAFETY: just allocated with `l`.
                        unsafe { s.dealloc(black_box(p), l) };
                    })
                });
        }
        for (p, l) in live {
            // SAFETY: live with `l`.
            unsafe { s.dealloc(p, l) };
        }
    }

    fn shared<S: Subject + Sync>(&mut self, s: &S) {
        self.single(s)
    }
}

fn latency(c: &mut Criterion) {
    let mut memory = Memory::new(ARENA);
    let mut group = c.benchmark_group("alloc+free");
    for (i, info) in SUBJECTS.iter().enumerate() {
        let mut v = Latency {
            group: &mut group,
            name: info.name,
        };
        with_subject(i, &mut memory, ARENA, false, &mut v);
    }
    group.finish();
}

criterion_group!(benches, latency);
criterion_main!(benches);
