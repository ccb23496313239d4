//! The trace format: round trips, and every way a file can be wrong.

use std::string::ToString;
use std::vec::Vec;

use quickcheck::{quickcheck, TestResult};

use super::*;

fn file(records: &[Record]) -> Vec<u8> {
    let mut out = Header::CURRENT.encode().to_vec();
    for r in records {
        out.extend_from_slice(&r.encode());
    }
    out
}

fn read(bytes: &[u8]) -> Result<Vec<Record>, TraceError> {
    records(bytes)?.collect()
}

#[test]
fn header_layout_is_the_documented_one() {
    let h = Header::CURRENT.encode();
    assert_eq!(&h[..8], b"FSTRACE\0");
    assert_eq!(h[8..12], 1u32.to_le_bytes());
    assert_eq!(h[12..16], 32u32.to_le_bytes());
}

#[test]
fn record_layout_is_the_documented_one() {
    let r = Record {
        seq: 0x0102_0304_0506_0708,
        size: 0x1122,
        id: 0xaabb_ccdd_eeff,
        new_id: 0x1234_5678_9abc,
        thread: 0x4321,
        op: Op::Realloc,
        align_log2: 12,
    };
    let b = r.encode();
    assert_eq!(b[0..8], 0x0102_0304_0506_0708u64.to_le_bytes());
    assert_eq!(b[8..16], 0x1122u64.to_le_bytes());
    assert_eq!(b[16..22], [0xff, 0xee, 0xdd, 0xcc, 0xbb, 0xaa]);
    assert_eq!(b[22..24], [0x21, 0x43]);
    assert_eq!(b[24..30], [0xbc, 0x9a, 0x78, 0x56, 0x34, 0x12]);
    assert_eq!((b[30], b[31]), (3, 12));
    assert_eq!(Record::decode(&b, 0), Ok(r));
}

#[test]
fn a_small_trace_round_trips() {
    let rs = [
        Record::alloc(0, 1, 10, 16, 0),
        Record::alloc(1, 2, 0, 4096, 1),
        Record::realloc(2, 1, 3, 100, 0),
        Record::free(3, 2, 1),
        Record::free(4, 3, 0),
    ];
    assert_eq!(read(&file(&rs)).unwrap(), rs);
    assert_eq!(read(&file(&[])).unwrap(), []);
}

quickcheck! {
    fn any_valid_record_round_trips(seq: u64, size: u64, id: u64, new_id: u64, thread: u16, op: u8, align_log2: u8) -> TestResult {
        let id = id & MAX_ID;
        let Some(op) = Op::from_byte(op % 3 + 1) else { return TestResult::discard() };
        let new_id = if op == Op::Realloc { new_id & MAX_ID } else { 0 };
        if id == 0 || (op == Op::Realloc && new_id == 0) {
            return TestResult::discard();
        }
        let r = Record { seq, size, id, new_id, thread, op, align_log2: align_log2 % 64 };
        TestResult::from_bool(read(&file(&[r])) == Ok(std::vec![r]))
    }

    /// Any bytes at all: an error or records, never a panic; and a
    /// record that decodes encodes back to the same bytes.
    fn arbitrary_bytes_never_panic(body: Vec<u8>) -> bool {
        let mut bytes = Header::CURRENT.encode().to_vec();
        bytes.extend(&body);
        let items: Vec<_> = records(&bytes).unwrap().collect();
        let whole = body.len() / RECORD;
        items.len() == body.len().div_ceil(RECORD)
            && items.iter().enumerate().all(|(i, item)| match item {
                Ok(r) => r.encode()[..] == body[i * RECORD..(i + 1) * RECORD],
                Err(TraceError::Truncated { index, .. }) => i == whole && *index == i as u64,
                Err(_) => i < whole,
            })
    }
}

#[test]
fn ids_are_kept_to_48_bits() {
    let r = Record::alloc(0, u64::MAX, 1, 1, 0);
    assert_eq!(r.id, MAX_ID);
    assert_eq!(Record::decode(&r.encode(), 0).unwrap().id, MAX_ID);
}

#[test]
fn a_truncated_file_is_an_error_at_its_last_record() {
    let bytes = file(&[Record::alloc(0, 1, 10, 16, 0), Record::free(1, 1, 0)]);
    for cut in 1..RECORD {
        let short = &bytes[..bytes.len() - cut];
        let items: Vec<_> = records(short).unwrap().collect();
        assert_eq!(items.len(), 2);
        assert!(items[0].is_ok());
        assert_eq!(
            items[1],
            Err(TraceError::Truncated {
                index: 1,
                offset: HEADER + RECORD,
                have: RECORD - cut
            })
        );
    }
}

#[test]
fn bad_headers_are_errors() {
    let good = Header::CURRENT.encode();
    for len in 0..HEADER {
        assert_eq!(read(&good[..len]), Err(TraceError::ShortHeader { len }));
    }
    let mut magic = good;
    magic[3] ^= 1;
    assert_eq!(read(&magic), Err(TraceError::BadMagic));
    let newer = Header {
        version: 2,
        ..Header::CURRENT
    };
    assert_eq!(
        read(&newer.encode()),
        Err(TraceError::BadVersion { found: 2 })
    );
    let wide = Header {
        record_len: 40,
        ..Header::CURRENT
    };
    assert_eq!(
        read(&wide.encode()),
        Err(TraceError::BadRecordLength { found: 40 })
    );
    assert_eq!(
        TraceError::BadVersion { found: 2 }.to_string(),
        "freespace trace version 2; this reader knows version 1"
    );
}

#[test]
fn records_that_break_the_invariants_are_errors() {
    let zero_id = Record {
        id: 0,
        ..Record::free(0, 1, 0)
    };
    assert!(matches!(
        Record::decode(&zero_id.encode(), 7),
        Err(TraceError::BadRecord { index: 7, .. })
    ));
    let realloc_without_new = Record {
        new_id: 0,
        ..Record::realloc(0, 1, 2, 3, 0)
    };
    assert!(Record::decode(&realloc_without_new.encode(), 0).is_err());
    let free_with_new = Record {
        new_id: 5,
        ..Record::free(0, 1, 0)
    };
    assert!(Record::decode(&free_with_new.encode(), 0).is_err());
    let mut bad_align = Record::alloc(0, 1, 1, 1, 0).encode();
    bad_align[31] = 64;
    assert!(Record::decode(&bad_align, 0).is_err());
    let mut bad_op = Record::alloc(0, 1, 1, 1, 0).encode();
    bad_op[30] = 0;
    assert_eq!(
        Record::decode(&bad_op, 3),
        Err(TraceError::BadOp { index: 3, op: 0 })
    );
}
