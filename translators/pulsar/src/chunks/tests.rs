use super::*;
use crate::proto::compression;

const T: Duration = Duration::ZERO;

fn e(entry: u64) -> EntryId {
    EntryId { ledger: 7, entry }
}

/// A chunk's metadata and payload.
type Chunk = (Box<MessageMetadata>, Bytes);

/// The chunks of `value` as a Java producer sends it, `size` bytes a chunk (no compression).
fn chunks(uuid: &str, value: &[u8], size: usize) -> Vec<Chunk> {
    let parts: Vec<&[u8]> = value.chunks(size).collect();
    parts
        .iter()
        .enumerate()
        .map(|(i, part)| {
            let metadata = MessageMetadata {
                producer_name: "p".into(),
                sequence_id: 3,
                publish_time: 1_000,
                properties: vec![crate::proto::KeyValue {
                    key: "k".into(),
                    value: "v".into(),
                }],
                partition_key: Some("key".into()),
                uncompressed_size: Some(value.len() as u32),
                uuid: Some(uuid.into()),
                num_chunks_from_msg: Some(parts.len() as i32),
                total_chunk_msg_size: Some(value.len() as i32),
                chunk_id: Some(i as i32),
                ..Default::default()
            };
            (Box::new(metadata), Bytes::copy_from_slice(part))
        })
        .collect()
}

fn raw(id: EntryId, chunk: &Chunk) -> RawEntry {
    RawEntry {
        id,
        redelivery_count: 0,
        metadata: chunk.0.clone(),
        payload: chunk.1.clone(),
    }
}

fn plain(id: EntryId) -> RawEntry {
    RawEntry {
        id,
        redelivery_count: 0,
        metadata: Box::default(),
        payload: Bytes::from_static(b"x"),
    }
}

fn value(n: usize, seed: u8) -> Vec<u8> {
    (0..n).map(|i| (i as u8).wrapping_mul(31) ^ seed).collect()
}

fn complete(step: Step) -> Assembled {
    match step {
        Step::Complete(m) => m,
        other => panic!("expected a whole message, got {other:?}"),
    }
}

fn assembler() -> Assembler {
    Assembler::new("t", Limits::READER)
}

#[test]
fn interleaved_messages_come_back_whole_at_their_last_chunk() {
    let (a, b) = (value(50, 1), value(35, 2));
    let (ca, cb) = (chunks("p-1", &a, 10), chunks("q-1", &b, 10));
    assert_eq!((ca.len(), cb.len()), (5, 4));
    let mut s = assembler();
    // a0 b0 a1 plain b1 a2 b2 a3 b3 a4
    let order: Vec<(EntryId, Option<&Chunk>)> = vec![
        (e(1), Some(&ca[0])),
        (e(2), Some(&cb[0])),
        (e(3), Some(&ca[1])),
        (e(4), None),
        (e(5), Some(&cb[1])),
        (e(6), Some(&ca[2])),
        (e(7), Some(&cb[2])),
        (e(8), Some(&ca[3])),
        (e(9), Some(&cb[3])),
        (e(10), Some(&ca[4])),
    ];
    let mut whole = Vec::new();
    for (id, chunk) in order {
        match s.push(chunk.map_or_else(|| plain(id), |c| raw(id, c)), T) {
            Step::Whole(r) => whole.push((r.id, None)),
            Step::Complete(m) => whole.push((m.id, Some(m))),
            Step::Nothing => {}
            Step::Missing(m) => panic!("nothing is missing: {m:?}"),
        }
    }
    let ids: Vec<EntryId> = whole.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, [e(4), e(9), e(10)]);
    let mb = whole[1].1.as_ref().unwrap();
    assert_eq!(mb.payload, b);
    assert_eq!(mb.entries, [e(2), e(5), e(7), e(9)]);
    let ma = whole[2].1.as_ref().unwrap();
    assert_eq!(ma.payload, a);
    assert_eq!(ma.entries, [e(1), e(3), e(6), e(8), e(10)]);
    // The message's own metadata, for decoding.
    assert_eq!(ma.metadata.partition_key.as_deref(), Some("key"));
    assert_eq!(ma.metadata.chunk_id, Some(4));
    assert_eq!((s.pending_messages(), s.pending_bytes()), (0, 0));
    assert!(s.take_discarded().is_empty());
}

#[test]
fn compressed_messages_decode_from_the_concatenated_chunks() {
    let text = b"a chunked message, compressed once and then sliced ".repeat(40);
    let compressed = lz4::block::compress(&text, None, false).unwrap();
    let mut parts = chunks("p-9", &compressed, 16);
    assert!(parts.len() > 2);
    for (metadata, _) in &mut parts {
        metadata.compression = Some(compression::LZ4);
        metadata.uncompressed_size = Some(text.len() as u32);
    }
    let mut s = assembler();
    let mut done = None;
    for (i, part) in parts.iter().enumerate() {
        if let Step::Complete(m) = s.push(raw(e(i as u64), part), T) {
            done = Some(m);
        }
    }
    let m = done.expect("complete");
    let messages = crate::batch::decode_entry(&m.metadata, m.payload).unwrap();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].value.as_deref(), Some(&text[..]));
    assert_eq!(messages[0].key.as_deref(), Some(&b"key"[..]));
    assert_eq!(messages[0].properties, [("k".to_owned(), "v".to_owned())]);
}

#[test]
fn missing_chunks_are_asked_for_and_filled_from_a_look_back() {
    let v = value(40, 3);
    let c = chunks("p-2", &v, 10);
    let mut s = assembler();
    // A reader started at the third chunk: it sees 2 and 3 only.
    assert!(matches!(s.push(raw(e(12), &c[2]), T), Step::Nothing));
    let Step::Missing(missing) = s.push(raw(e(13), &c[3]), T) else {
        panic!("chunks 0 and 1 are missing");
    };
    assert_eq!(
        missing,
        Missing {
            uuid: "p-2".into(),
            last: e(13),
            num_chunks: 4
        }
    );
    // The look-back reads older entries: other ones are ignored, and so is anything at or
    // after the last chunk.
    s.offer(&missing, plain(e(9)));
    s.offer(&missing, raw(e(10), &c[0]));
    assert!(matches!(s.finish("p-2"), Finish::Missing));
    s.offer(&missing, raw(e(14), &c[1]));
    assert!(matches!(s.finish("p-2"), Finish::Missing));
    // Nor a piece larger than what the message's size leaves room for.
    let mut bloated = raw(e(11), &c[1]);
    bloated.payload = Bytes::from(vec![0; 11]);
    s.offer(&missing, bloated);
    assert!(matches!(s.finish("p-2"), Finish::Missing));
    s.offer(&missing, raw(e(11), &c[1]));
    let Finish::Done(m) = s.finish("p-2") else {
        panic!("complete");
    };
    assert_eq!(m.payload, v);
    assert_eq!(m.entries, [e(10), e(11), e(12), e(13)]);
    assert_eq!(m.id, e(13));
}

#[test]
fn a_look_back_takes_the_copy_nearest_the_last_chunk() {
    // The producer started the message over: chunks 0-1 at 1-2, then 0-2 at 3-5.
    let v = value(30, 4);
    let c = chunks("p-3", &v, 10);
    let mut s = assembler();
    let Step::Missing(missing) = s.push(raw(e(5), &c[2]), T) else {
        panic!("missing");
    };
    for (id, chunk) in [(1, &c[0]), (2, &c[1]), (3, &c[0]), (4, &c[1])] {
        s.offer(&missing, raw(e(id), chunk));
    }
    let Finish::Done(m) = s.finish("p-3") else {
        panic!("complete");
    };
    assert_eq!(m.entries, [e(3), e(4), e(5)]);
    assert_eq!(s.pending_bytes(), 0);
}

#[test]
fn a_message_that_cannot_be_completed_is_dropped_and_its_chunks_discarded() {
    let c = chunks("p-4", &value(30, 5), 10);
    let mut s = assembler();
    s.push(raw(e(2), &c[1]), T);
    let Step::Missing(_) = s.push(raw(e(3), &c[2]), T) else {
        panic!("missing");
    };
    s.give_up("p-4", "not found");
    assert!(matches!(s.finish("p-4"), Finish::Gone));
    assert_eq!(s.take_discarded(), [e(2), e(3)]);
    assert_eq!((s.pending_messages(), s.pending_bytes()), (0, 0));
}

#[test]
fn redelivered_chunks_are_taken_once_and_duplicates_discarded() {
    let v = value(30, 6);
    let c = chunks("p-5", &v, 10);
    let mut s = assembler();
    s.push(raw(e(1), &c[0]), T);
    s.push(raw(e(2), &c[1]), T);
    // Redelivery (a nack, a reconnect): the same entries again.
    s.push(raw(e(1), &c[0]), T);
    s.push(raw(e(2), &c[1]), T);
    // A producer resending chunk 1 into another entry.
    assert!(matches!(s.push(raw(e(3), &c[1]), T), Step::Nothing));
    let m = complete(s.push(raw(e(4), &c[2]), T));
    assert_eq!(m.payload, v);
    assert_eq!(m.entries, [e(1), e(2), e(4)]);
    assert_eq!(s.take_discarded(), [e(3)]);
    // After delivery, the whole message redelivered comes back whole again.
    s.push(raw(e(1), &c[0]), T);
    s.push(raw(e(2), &c[1]), T);
    assert_eq!(complete(s.push(raw(e(4), &c[2]), T)).payload, v);
}

#[test]
fn a_message_started_over_replaces_the_old_chunks() {
    let v = value(30, 7);
    let c = chunks("p-6", &v, 10);
    let mut s = assembler();
    s.push(raw(e(1), &c[0]), T);
    s.push(raw(e(2), &c[1]), T);
    s.push(raw(e(3), &c[0]), T);
    s.push(raw(e(4), &c[1]), T);
    let m = complete(s.push(raw(e(5), &c[2]), T));
    assert_eq!(m.entries, [e(3), e(4), e(5)]);
    assert_eq!(s.take_discarded(), [e(1), e(2)]);
}

#[test]
fn a_message_over_the_size_limit_is_refused_chunk_by_chunk() {
    let limits = Limits {
        max_message_bytes: 25,
        ..Limits::READER
    };
    let mut s = Assembler::new("t", limits);
    let big = chunks("p-7", &value(30, 8), 10);
    let small = chunks("p-8", &value(25, 9), 10);
    for (i, chunk) in big.iter().enumerate() {
        assert!(matches!(s.push(raw(e(i as u64), chunk), T), Step::Nothing));
    }
    assert_eq!(s.pending_messages(), 0, "nothing of it is held");
    assert_eq!(s.take_discarded(), [e(0), e(1), e(2)]);
    let mut done = None;
    for (i, chunk) in small.iter().enumerate() {
        if let Step::Complete(m) = s.push(raw(e(10 + i as u64), chunk), T) {
            done = Some(m);
        }
    }
    assert_eq!(done.expect("at the limit is fine").payload.len(), 25);
}

#[test]
fn the_oldest_incomplete_message_makes_room_and_is_not_discarded() {
    let limits = Limits {
        max_pending_messages: 2,
        ..Limits::READER
    };
    let mut s = Assembler::new("t", limits);
    let msgs: Vec<_> = (0..3)
        .map(|i| chunks(&format!("p-{i}"), &value(20, i as u8), 10))
        .collect();
    for (i, m) in msgs.iter().enumerate() {
        s.push(raw(e(i as u64), &m[0]), T);
    }
    assert_eq!(s.pending_messages(), 2);
    // The first was set aside, unacknowledged (a consumer gets it back on redelivery).
    assert!(s.take_discarded().is_empty());
    assert_eq!(complete(s.push(raw(e(11), &msgs[1][1]), T)).id, e(11));
    assert_eq!(complete(s.push(raw(e(12), &msgs[2][1]), T)).id, e(12));
    // Its last chunk finds the first one missing, and a look-back finds it again.
    let Step::Missing(missing) = s.push(raw(e(10), &msgs[0][1]), T) else {
        panic!("missing");
    };
    s.offer(&missing, raw(e(0), &msgs[0][0]));
    let Finish::Done(m) = s.finish("p-0") else {
        panic!("complete");
    };
    assert_eq!(m.entries, [e(0), e(10)]);
}

#[test]
fn bytes_held_stay_under_the_limit() {
    let limits = Limits {
        max_pending_bytes: 45,
        ..Limits::READER
    };
    let mut s = Assembler::new("t", limits);
    let [a, b, c] = ["a", "b", "c"].map(|u| chunks(u, &value(30, 1), 10));
    s.push(raw(e(1), &a[0]), T);
    s.push(raw(e(2), &a[1]), T);
    s.push(raw(e(3), &b[0]), T);
    s.push(raw(e(4), &b[1]), T);
    assert_eq!(s.pending_bytes(), 40);
    // 50 bytes with c's first chunk: the oldest, a, is set aside.
    s.push(raw(e(5), &c[0]), T);
    assert_eq!((s.pending_messages(), s.pending_bytes()), (2, 30));
    assert!(s.take_discarded().is_empty());
    assert_eq!(complete(s.push(raw(e(6), &b[2]), T)).payload.len(), 30);
    assert_eq!(s.pending_bytes(), 10);
    // A message alone over the limit cannot be held at all.
    let d = chunks("d", &value(50, 3), 10);
    for (i, chunk) in d.iter().enumerate() {
        assert!(matches!(
            s.push(raw(e(10 + i as u64), chunk), T),
            Step::Nothing
        ));
    }
    assert_eq!(s.pending_messages(), 0, "c made room for d, then d went");
    assert_eq!(s.take_discarded(), (10..15).map(e).collect::<Vec<_>>());
    assert_eq!(s.pending_bytes(), 0);
}

#[test]
fn incomplete_messages_expire_on_the_callers_clock() {
    let mut s = Assembler::new("t", Limits::CONSUMER);
    let a = chunks("a", &value(30, 1), 10);
    let b = chunks("b", &value(30, 2), 10);
    s.push(raw(e(1), &a[0]), Duration::from_secs(0));
    s.push(raw(e(2), &b[0]), Duration::from_secs(30));
    s.push(raw(e(3), &a[1]), Duration::from_secs(50));
    s.expire(Duration::from_secs(89));
    assert_eq!(s.pending_messages(), 2);
    s.expire(Duration::from_secs(90));
    assert_eq!(s.pending_messages(), 1, "b waited 60 s");
    assert_eq!(s.take_discarded(), [e(2)]);
    s.expire(Duration::from_secs(110));
    assert_eq!(s.take_discarded(), [e(1), e(3)]);
    // Readers never expire anything.
    let mut r = assembler();
    r.push(raw(e(1), &a[0]), Duration::ZERO);
    r.expire(Duration::from_secs(3600));
    assert_eq!(r.pending_messages(), 1);
}

#[test]
fn malformed_chunks_are_dropped() {
    let mut s = assembler();
    let mut c = chunks("p", &value(30, 1), 10);
    c[1].0.chunk_id = Some(5);
    assert!(matches!(s.push(raw(e(1), &c[1]), T), Step::Nothing));
    c[0].0.uuid = None;
    assert!(matches!(s.push(raw(e(2), &c[0]), T), Step::Nothing));
    assert_eq!(s.take_discarded(), [e(1), e(2)]);
    // Chunks that add up to more than the total.
    let mut d = chunks("q", &value(30, 2), 10);
    d[1].1 = Bytes::from(vec![0; 25]);
    s.push(raw(e(3), &d[0]), T);
    assert!(matches!(s.push(raw(e(4), &d[1]), T), Step::Nothing));
    assert_eq!(s.take_discarded(), [e(3), e(4)]);
    // A single chunk, or a batch, is an ordinary entry.
    let mut single = chunks("r", &value(5, 3), 10);
    assert_eq!(single.len(), 1);
    single[0].0.num_chunks_from_msg = Some(1);
    assert!(matches!(s.push(raw(e(5), &single[0]), T), Step::Whole(_)));
}
