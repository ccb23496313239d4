//! Replays of tiny traces whose figures are computed by hand.

use freespace_core::{BlockInfo, BlockState, Inspect};
use freespace_stats::trace::Record;

use super::*;
use crate::subjects::index_of;

/// A, C of 100 bytes and B, D of 50 alternate; A and C are freed (two
/// holes of the same size, kept apart by B and D); then E of 300 bytes,
/// which fits neither hole: the peak of live bytes, 50 + 50 + 300 = 400.
fn two_holes() -> Vec<Record> {
    vec![
        Record::alloc(0, 0xa, 100, 16, 0),
        Record::alloc(1, 0xb, 50, 16, 0),
        Record::alloc(2, 0xc, 100, 16, 0),
        Record::alloc(3, 0xd, 50, 16, 0),
        Record::free(4, 0xa, 0),
        Record::free(5, 0xc, 0),
        Record::alloc(6, 0xe, 300, 16, 0),
        Record::free(7, 0xe, 0),
    ]
}

#[test]
fn prepare_maps_ids_to_slots_and_finds_the_peak() {
    let mut records = two_holes();
    records.reverse(); // the file order does not matter, `seq` does
    let p = prepare(&mut records).unwrap();
    assert_eq!(p.records, 8);
    assert_eq!((p.peak_live, p.peak_at), (400, 7));
    // A's slot (0) is reused by E after A and C are freed (C's slot 2 is
    // on top of the empty stack).
    assert_eq!(p.slots, 4);
    assert!(matches!(
        p.ops[6],
        Op::Alloc {
            slot: 2,
            size: 300,
            align: 16
        }
    ));
    // B and D are never freed: the replay frees them at the end.
    assert_eq!(p.appended_frees, 2);
    assert_eq!(p.ops.len(), 10);
}

#[test]
fn realloc_keeps_the_slot_and_moves_the_id() {
    let mut records = vec![
        Record::alloc(0, 1, 10, 16, 0),
        Record::realloc(1, 1, 2, 1000, 0),
        Record::free(2, 2, 0),
    ];
    let p = prepare(&mut records).unwrap();
    assert_eq!((p.peak_live, p.peak_at, p.appended_frees), (1000, 2, 0));
    assert!(matches!(
        p.ops[1],
        Op::Realloc {
            slot: 0,
            size: 1000
        }
    ));
    let mut stale = vec![
        Record::alloc(0, 1, 10, 16, 0),
        Record::realloc(1, 1, 2, 1000, 0),
        Record::free(2, 1, 0),
    ];
    assert_eq!(
        prepare(&mut stale).unwrap_err(),
        ReplayError::UnknownId { seq: 2, id: 1 }
    );
}

#[test]
fn errors_name_the_call() {
    assert_eq!(
        ReplayError::UnknownId { seq: 3, id: 0x10 }.to_string(),
        "call 3 frees or resizes block 0x10, which is not live \
         (allocated before tracing began? --skip-unknown replays the rest)"
    );
    let mut huge = vec![Record::alloc(0, 1, 1 << 40, 16, 0)];
    assert_eq!(
        prepare(&mut huge).unwrap_err(),
        ReplayError::TooLarge { seq: 0 }
    );
}

/// First fit over the arena, by hand. The heap's region starts with a
/// 64-byte header; a chunk is a 16-byte header plus the request, rounded
/// up to 16 (freespace-freelist's chunk format), and the length the heap
/// grants is the chunk less its header:
///
/// ```text
///   A 100 -> chunk 128 at  64..192     B 50 -> chunk 80 at 192..272
///   C 100 -> chunk 128 at 272..400     D 50 -> chunk 80 at 400..480
///   free A, free C: holes of 128 at 64 and 272 (B and D keep them apart)
///   E 300 -> chunk 320: no hole fits, at 480..800
/// ```
///
/// Peak footprint 800 over peak live 400; granted at the peak 64 + 64 +
/// 304 = 432 over 400 requested; external fragmentation at the peak
/// 1 - 128 / 256 = 0.5.
#[test]
fn first_fit_footprints_match_the_hand_computation() {
    let p = prepare(&mut two_holes()).unwrap();
    let mut memory = Memory::new(1 << 20);
    for name in ["first-fit", "best-fit", "next-fit"] {
        let f = measure_subject(
            index_of(name).unwrap(),
            &mut memory,
            1 << 20,
            &p,
            &Settings {
                samples: 100,
                budget: Duration::MAX,
                map: false,
            },
            &mut |_| {},
        );
        assert_eq!(f.failures, 0, "{name}");
        assert_eq!(f.peak_footprint, Some(800), "{name}");
        assert_eq!(
            (f.granted_at_peak, f.requested_at_peak),
            (Some(432), 400),
            "{name}"
        );
        assert_eq!(f.external_at_peak, Some(0.5), "{name}");
        assert_eq!(f.footprint_ratio(p.peak_live), Some(800.0 / 400.0));
        // The curve: one point per op, ending at the peak footprint.
        assert_eq!(f.curve.len(), p.ops.len(), "{name}");
        assert_eq!(f.curve[0], (1, 192), "{name}");
        assert_eq!(f.curve.last(), Some(&(p.ops.len(), 800)), "{name}");
    }
}

/// Worst fit differs from first fit only where a block has a choice of
/// holes; E has none, so its footprint is the same. glibc (memory from
/// the OS) has no footprint; an anchor over the arena has one but reports
/// no granted length and cannot walk its blocks.
#[test]
fn subjects_say_what_they_can() {
    let p = prepare(&mut two_holes()).unwrap();
    let mut memory = Memory::new(1 << 20);
    let glibc = measure_subject(
        index_of("glibc").unwrap(),
        &mut memory,
        1 << 20,
        &p,
        &Settings {
            samples: 0,
            budget: Duration::MAX,
            map: false,
        },
        &mut |_| {},
    );
    assert_eq!(
        (
            glibc.peak_footprint,
            glibc.granted_at_peak,
            glibc.external_at_peak
        ),
        (None, None, None)
    );
    assert!(glibc.curve.is_empty());
    let talc = measure_subject(
        index_of("talc").unwrap(),
        &mut memory,
        1 << 20,
        &p,
        &Settings {
            samples: 0,
            budget: Duration::MAX,
            map: false,
        },
        &mut |_| {},
    );
    assert!(talc.peak_footprint.is_some_and(|f| f >= 400));
    assert_eq!((talc.granted_at_peak, talc.external_at_peak), (None, None));
    let worst = measure_subject(
        index_of("worst-fit").unwrap(),
        &mut memory,
        1 << 20,
        &p,
        &Settings {
            samples: 0,
            budget: Duration::MAX,
            map: false,
        },
        &mut |_| {},
    );
    assert_eq!(worst.peak_footprint, Some(800));
}

/// A heap too small for E: one failure, counted, and the replay goes on.
#[test]
fn failures_are_counted_not_fatal() {
    let p = prepare(&mut two_holes()).unwrap();
    let mut memory = Memory::new(1 << 20);
    let f = measure_subject(
        index_of("first-fit").unwrap(),
        &mut memory,
        512,
        &p,
        &Settings {
            samples: 0,
            budget: Duration::MAX,
            map: false,
        },
        &mut |_| {},
    );
    assert_eq!(f.failures, 1);
    assert_eq!(
        f.requested_at_peak, 100,
        "E failed: B and D are live at the peak"
    );
    assert!(time_subject(
        index_of("first-fit").unwrap(),
        &mut memory,
        512,
        &p,
        Duration::from_secs(5)
    )
    .is_none());
    assert!(time_subject(
        index_of("first-fit").unwrap(),
        &mut memory,
        1 << 20,
        &p,
        Duration::from_secs(5)
    )
    .is_some());
}

/// Blocks from before tracing began: an error by default, skipped (and a
/// realloc of one replayed as an allocation) on request.
#[test]
fn unknown_blocks_are_an_error_or_skipped() {
    let early = || {
        vec![
            Record::free(0, 0x99, 0),
            Record::alloc(1, 1, 40, 16, 0),
            Record::realloc(2, 0x98, 2, 100, 0),
            Record::free(3, 2, 0),
        ]
    };
    assert_eq!(
        prepare(&mut early()).unwrap_err(),
        ReplayError::UnknownId { seq: 0, id: 0x99 }
    );
    let p = prepare_with(&mut early(), true).unwrap();
    assert_eq!(p.skipped_unknown, 2);
    assert_eq!((p.peak_live, p.peak_at), (140, 2));
    assert!(matches!(
        p.ops[1],
        Op::Alloc {
            slot: 1,
            size: 100,
            align: 16
        }
    ));
    assert_eq!(p.ops.len(), 4, "alloc, alloc, free, and the appended free");
}

/// A budget of nothing stops the measuring replay before its first op.
#[test]
fn a_spent_budget_stops_the_replay() {
    let p = prepare(&mut two_holes()).unwrap();
    let mut memory = Memory::new(1 << 20);
    let f = measure_subject(
        index_of("first-fit").unwrap(),
        &mut memory,
        1 << 20,
        &p,
        &Settings {
            samples: 0,
            budget: Duration::ZERO,
            map: false,
        },
        &mut |_| {},
    );
    assert_eq!(
        (f.stopped_at, f.failures, f.peak_footprint),
        (Some(0), 0, Some(0))
    );
}

/// The coarse map: each cell in its majority state, runs merged.
#[test]
fn coarse_cells_take_the_majority_state() {
    struct Heap;
    impl Inspect for Heap {
        fn inspect(&self, visit: &mut dyn FnMut(BlockInfo)) {
            // cell 0: 48 used + 16 free; cell 1: 64 used; cell 2: 16 used + 48 free;
            // cell 3: nothing; cell 4: 64 meta.
            for (addr, len, state) in [
                (0x1000, 48, BlockState::Used),
                (0x1030, 16, BlockState::Free),
                (0x1040, 80, BlockState::Used),
                (0x1090, 48, BlockState::Free),
                (0x1100, 64, BlockState::Meta),
            ] {
                visit(BlockInfo { addr, len, state });
            }
        }
    }
    let coarse = Coarse {
        inner: &Heap,
        lo: 0x1000,
        cell: 64,
        cells: 5,
    };
    let mut seen = Vec::new();
    coarse.inspect(&mut |b| seen.push((b.addr, b.len, b.state)));
    assert_eq!(
        seen,
        [
            (0x1000, 128, BlockState::Used),
            (0x1080, 64, BlockState::Free),
            (0x1100, 64, BlockState::Meta),
        ]
    );
    let svg = coarse_map(&Heap, 0x1000, 0x1140).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("16-byte cells"));
}
