//! The counting layer: `Stats<Buddy<Arena>>` over 256 KiB. After the ops
//! (which free everything) the counts must balance exactly.
#![no_main]
use freespace_buddy::Buddy;
use freespace_core::Check;
use freespace_source::Arena;
use freespace_stats::Stats;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // SAFETY: the previous run's heap over slot 0 has been dropped.
    let buddy: Buddy<Arena> = Buddy::new(unsafe { freespace_fuzz::arena(0, 256 << 10) });
    let heap = Stats::new(buddy);
    freespace_fuzz::run(&heap, data, &|| heap.check_all());
    let s = heap.snapshot();
    assert_eq!((s.live_blocks, s.live_bytes), (0, 0), "{s}");
    assert_eq!(s.allocations, s.frees, "{s}");
});
