//! The committed small trace (sqlite3 under `FREESPACE_TRACE`, recorded
//! by `crates/bench/fragmentation.sh --small-trace-only`) replayed against
//! every subject: what must hold of any replay of a real trace.

use std::time::Duration;

use freespace_bench::replay::{self, Settings};
use freespace_bench::subjects::{Memory, SUBJECTS};
use freespace_stats::trace;

const TRACE: &[u8] = include_bytes!("data/sqlite-small.trace");

#[test]
fn the_committed_trace_reads_whole_and_in_order() {
    let records: Vec<_> = trace::records(TRACE)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let mut seqs: Vec<u64> = records.iter().map(|r| r.seq).collect();
    seqs.sort_unstable();
    assert!(seqs.iter().enumerate().all(|(i, &s)| s == i as u64));
    // Strict: every free and realloc names a block the trace allocated.
    let p = replay::read(TRACE).unwrap();
    assert_eq!((p.records, p.skipped_unknown), (records.len(), 0));
    assert!(p.peak_at > 0 && p.peak_at <= p.ops.len());
}

#[test]
fn every_subject_replays_it_and_its_figures_are_consistent() {
    let p = replay::read(TRACE).unwrap();
    let arena = 16 << 20;
    let mut memory = Memory::aligned(arena, arena);
    let settings = Settings {
        samples: 50,
        budget: Duration::from_secs(60),
        map: true,
    };
    for (i, s) in SUBJECTS.iter().enumerate() {
        let f = replay::measure_subject(i, &mut memory, arena, &p, &settings, &mut |_| {});
        let name = s.name;
        assert_eq!((f.failures, f.stopped_at), (0, None), "{name}");
        assert_eq!(f.requested_at_peak, p.peak_live, "{name}");
        // Every block live at the peak lies inside the footprint.
        if let Some(r) = f.footprint_ratio(p.peak_live) {
            assert!(s.arena && r >= 1.0, "{name}: {r}");
            assert!(
                f.curve.windows(2).all(|w| w[0].1 <= w[1].1),
                "{name}: the footprint only grows"
            );
        } else {
            assert!(!s.arena, "{name}");
        }
        if let Some(r) = f.internal() {
            assert!(r >= 1.0, "{name}: granted {r} of requested");
        }
        if let Some(x) = f.external_at_peak {
            assert!((0.0..=1.0).contains(&x), "{name}: {x}");
            let map = f.peak_map.as_deref().unwrap_or("<svg");
            assert!(map.starts_with("<svg"), "{name}");
        }
        assert!(
            replay::time_subject(i, &mut memory, arena, &p, Duration::from_secs(60)).is_some(),
            "{name}"
        );
    }
}
