//! Chunked messages (Pulsar's PIP-37), put back together with no I/O.
//!
//! A producer with chunking on (Java's `enableChunking(true)`, batching off) splits a message
//! larger than its chunk size or the broker's `maxMessageSize` into chunks, one entry each, which
//! other producers' entries may interleave. The producer compresses the message once and slices
//! the result, and every chunk carries the whole message's metadata (properties, keys, event
//! time, publish time, compression and uncompressed size) plus `uuid` (`<producer>-<sequence
//! id>`), `num_chunks_from_msg`, `total_chunk_msg_size` (the compressed size) and `chunk_id`. The
//! payloads concatenated in chunk order are the compressed message.
//!
//! As in Java's `ConsumerImpl.processMessageChunk`, chunks are kept by uuid until the last one
//! arrives and the message is decoded with the last chunk's metadata. Unlike it, a message is
//! delivered at its last chunk's position even when chunks before it were not seen (a reader
//! started inside the message, a seek, chunks given to another consumer of a Shared
//! subscription): the assembler answers `Step::Missing` and the caller looks for them in the
//! entries before the last chunk (`offer`, then `finish` or `give_up`).
//!
//! Limits (`Limits`): a message larger than `max_message_bytes` is refused; at most
//! `max_pending_messages` and `max_pending_bytes` of incomplete messages are held, the oldest
//! set aside first; a consumer's incomplete message expires after `expire_after`. Every message
//! dropped is logged at warn and counted in `pulsar_chunked_messages_dropped_total{reason}`.
//! Entries that no delivery will ever acknowledge (refused messages, duplicate chunks, expired
//! or unassemblable messages) collect in `take_discarded` for a durable consumer to acknowledge;
//! a message set aside for room is not acknowledged, so that it comes back with the next
//! redelivery.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use gateway_core::EntryId;

use crate::proto::MessageMetadata;

/// An entry as the broker pushed it.
pub struct RawEntry {
    pub id: EntryId,
    pub redelivery_count: u32,
    pub metadata: Box<MessageMetadata>,
    pub payload: Bytes,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest message (compressed and uncompressed) put together; larger ones are refused.
    pub max_message_bytes: usize,
    /// Incomplete messages held at once (Java's `maxPendingChunkedMessage`).
    pub max_pending_messages: usize,
    /// Bytes of incomplete messages held at once.
    pub max_pending_bytes: usize,
    /// How long an incomplete message waits for its next chunk (Java's
    /// `expireTimeOfIncompleteChunkedMessage`), on the caller's clock; `None`: never.
    pub expire_after: Option<Duration>,
}

/// The size the gateway decompresses at most (`batch.rs`), so the largest message it can read.
const MAX_MESSAGE: usize = 64 * 1024 * 1024;

impl Limits {
    /// Kafka readers: no expiry, since a reader reads at its Kafka client's pace, and time says
    /// nothing about whether the rest of a message will come; the caps bound what it holds.
    pub const READER: Limits = Limits {
        max_message_bytes: MAX_MESSAGE,
        max_pending_messages: 10,
        max_pending_bytes: 2 * MAX_MESSAGE,
        expire_after: None,
    };
    /// Durable consumers: as readers, and an incomplete message expires (and is acknowledged)
    /// after 60 s spent waiting for entries without its next chunk arriving.
    pub const CONSUMER: Limits = Limits {
        expire_after: Some(Duration::from_secs(60)),
        ..Limits::READER
    };
}

/// Why a chunked message was dropped: the `reason` label of the metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Larger than `max_message_bytes`.
    TooLarge,
    /// Chunk metadata or payload sizes that do not add up, or a payload that does not decode.
    Malformed,
    /// The last chunk arrived and earlier ones could not be found.
    Incomplete,
    /// Set aside to stay within `max_pending_messages` or `max_pending_bytes`.
    Evicted,
    /// No next chunk for `expire_after`.
    Expired,
}

impl Reason {
    pub fn label(self) -> &'static str {
        match self {
            Reason::TooLarge => "too_large",
            Reason::Malformed => "malformed",
            Reason::Incomplete => "incomplete",
            Reason::Evicted => "evicted",
            Reason::Expired => "expired",
        }
    }
}

/// A whole message: at its last chunk's entry, with that chunk's metadata and the compressed
/// payload of all chunks.
#[derive(Debug)]
pub struct Assembled {
    pub id: EntryId,
    /// Every chunk's entry, in chunk order (the last is `id`).
    pub entries: Vec<EntryId>,
    pub metadata: Box<MessageMetadata>,
    pub payload: Bytes,
    pub redelivery_count: u32,
}

/// A message whose last chunk arrived while earlier chunks had not: they are in entries before
/// `last`, unless the topic lost them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing {
    pub uuid: String,
    pub last: EntryId,
    pub num_chunks: u32,
}

/// What an entry pushed to the assembler yields.
#[derive(Debug)]
pub enum Step {
    /// Not a chunk of a chunked message: decode it as usual.
    Whole(RawEntry),
    /// Kept, or dropped; nothing to deliver now.
    Nothing,
    Complete(Assembled),
    /// Look for the missing chunks, `offer` them, then `finish` (or `give_up`).
    Missing(Missing),
}

impl std::fmt::Debug for RawEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawEntry")
            .field("id", &self.id)
            .field("payload", &self.payload.len())
            .finish()
    }
}

/// What `finish` found.
#[derive(Debug)]
pub enum Finish {
    Done(Assembled),
    /// Chunks are still missing.
    Missing,
    /// The message is gone (dropped as malformed, or never pending).
    Gone,
}

/// The chunk fields of an entry's metadata.
struct Header {
    uuid: String,
    chunk_id: u32,
    num_chunks: u32,
    total_size: usize,
}

/// `None` for an entry that is not a chunk (a message in one chunk is an ordinary message, and a
/// batch is never chunked, as in Java's consumer); `Err` for chunk fields that make no sense.
fn header(metadata: &MessageMetadata) -> Option<Result<Header, &'static str>> {
    let num_chunks = metadata.num_chunks_from_msg?;
    if num_chunks <= 1 || metadata.num_messages_in_batch.is_some() {
        return None;
    }
    let check = || {
        let uuid = metadata.uuid.clone().ok_or("a chunk without uuid")?;
        let chunk_id = metadata
            .chunk_id
            .filter(|c| (0..num_chunks).contains(c))
            .ok_or("a chunk id outside the chunk count")?;
        let total_size = metadata
            .total_chunk_msg_size
            .filter(|t| *t >= num_chunks)
            .ok_or("a total size smaller than the chunk count")?;
        Ok(Header {
            uuid,
            chunk_id: chunk_id as u32,
            num_chunks: num_chunks as u32,
            total_size: total_size as usize,
        })
    };
    Some(check())
}

struct Piece {
    id: EntryId,
    payload: Bytes,
    /// Found by a look-back, not pushed: a later copy found then replaces it.
    looked_up: bool,
}

/// An incomplete message.
struct Pending {
    num_chunks: u32,
    total_size: usize,
    pieces: BTreeMap<u32, Piece>,
    /// The last chunk's metadata and redelivery count, once it arrived.
    last: Option<(Box<MessageMetadata>, u32)>,
    bytes: usize,
    /// The caller's clock when a chunk last arrived.
    touched: Duration,
    /// Arrival order, for setting the oldest aside.
    order: u64,
}

impl Pending {
    fn entries(&self) -> Vec<EntryId> {
        self.pieces.values().map(|p| p.id).collect()
    }
}

pub struct Assembler {
    topic: String,
    limits: Limits,
    pending: HashMap<String, Pending>,
    bytes: usize,
    next_order: u64,
    discarded: Vec<EntryId>,
}

impl Assembler {
    pub fn new(topic: &str, limits: Limits) -> Assembler {
        Assembler {
            topic: topic.to_owned(),
            limits,
            pending: HashMap::new(),
            bytes: 0,
            next_order: 0,
            discarded: Vec::new(),
        }
    }

    /// Takes one entry; `now` is the caller's clock for expiry.
    pub fn push(&mut self, raw: RawEntry, now: Duration) -> Step {
        let h = match header(&raw.metadata) {
            None => return Step::Whole(raw),
            Some(Err(why)) => {
                self.discarded.push(raw.id);
                self.report(Reason::Malformed, raw.metadata.uuid.as_deref(), 1, why);
                return Step::Nothing;
            }
            Some(Ok(h)) => h,
        };
        if let Some(why) = self.too_large(&h, &raw.metadata) {
            // Every chunk says so: each is dropped as it comes, the message counted once, at
            // its last chunk (its position).
            self.discarded.push(raw.id);
            if h.chunk_id + 1 == h.num_chunks {
                self.report(Reason::TooLarge, Some(&h.uuid), h.num_chunks, &why);
            }
            return Step::Nothing;
        }
        // The same uuid for another message: a producer that started it over (a first chunk in
        // another entry, as Java's consumer reads it) or other chunk fields. The pieces held are
        // garbage, acknowledged as Java does.
        if let Some(p) = self.pending.get(&h.uuid) {
            let restarted = p.num_chunks != h.num_chunks
                || p.total_size != h.total_size
                || (h.chunk_id == 0 && p.pieces.get(&0).is_some_and(|first| first.id != raw.id));
            if restarted {
                let old = self.remove(&h.uuid).expect("pending");
                tracing::debug!(topic = %self.topic, uuid = %h.uuid, "chunked message started over");
                self.discarded.extend(old.entries());
            }
        }
        if !self.pending.contains_key(&h.uuid) {
            self.make_room_for_one();
            self.next_order += 1;
            self.pending.insert(
                h.uuid.clone(),
                Pending {
                    num_chunks: h.num_chunks,
                    total_size: h.total_size,
                    pieces: BTreeMap::new(),
                    last: None,
                    bytes: 0,
                    touched: now,
                    order: self.next_order,
                },
            );
        }
        let p = self.pending.get_mut(&h.uuid).expect("pending");
        p.touched = now;
        match p.pieces.get(&h.chunk_id) {
            // Redelivered: already held.
            Some(held) if held.id == raw.id => {}
            // A duplicate in another entry (a producer resending): the first one is kept.
            Some(_) => {
                tracing::debug!(topic = %self.topic, uuid = %h.uuid, chunk = h.chunk_id, "duplicate chunk");
                self.discarded.push(raw.id);
                return Step::Nothing;
            }
            None => {
                let len = raw.payload.len();
                p.pieces.insert(
                    h.chunk_id,
                    Piece {
                        id: raw.id,
                        payload: raw.payload,
                        looked_up: false,
                    },
                );
                p.bytes += len;
                self.bytes += len;
            }
        }
        if h.chunk_id + 1 == h.num_chunks && p.last.is_none() {
            p.last = Some((raw.metadata, raw.redelivery_count));
        }
        if p.bytes > p.total_size {
            self.drop_pending(
                &h.uuid,
                Reason::Malformed,
                "chunks larger than the total size",
            );
            return Step::Nothing;
        }
        self.keep_bytes_within_limit(&h.uuid);
        let Some(p) = self.pending.get(&h.uuid) else {
            return Step::Nothing;
        };
        if p.last.is_none() {
            return Step::Nothing;
        }
        match self.finish(&h.uuid) {
            Finish::Done(m) => Step::Complete(m),
            Finish::Missing => Step::Missing(Missing {
                uuid: h.uuid,
                last: raw.id,
                num_chunks: h.num_chunks,
            }),
            Finish::Gone => Step::Nothing,
        }
    }

    /// An entry found looking back for `missing`'s chunks: kept if it is one of them.
    pub fn offer(&mut self, missing: &Missing, raw: RawEntry) {
        let Some(Ok(h)) = header(&raw.metadata) else {
            return;
        };
        if h.uuid != missing.uuid || raw.id >= missing.last {
            return;
        }
        let Some(p) = self.pending.get_mut(&h.uuid) else {
            return;
        };
        if h.num_chunks != p.num_chunks || h.total_size != p.total_size {
            return;
        }
        let len = raw.payload.len();
        let replaced = match p.pieces.get(&h.chunk_id) {
            None => 0,
            // A message started over leaves older copies: the one nearest the last chunk is
            // the message's (entries are read oldest first within a window).
            Some(held) if held.looked_up && held.id < raw.id => held.payload.len(),
            Some(_) => return,
        };
        if p.bytes + len - replaced > p.total_size {
            return; // not a piece of this message as its size says
        }
        p.pieces.insert(
            h.chunk_id,
            Piece {
                id: raw.id,
                payload: raw.payload,
                looked_up: true,
            },
        );
        p.bytes = p.bytes + len - replaced;
        self.bytes = self.bytes + len - replaced;
    }

    /// The message `uuid` if every chunk is here now.
    pub fn finish(&mut self, uuid: &str) -> Finish {
        let Some(p) = self.pending.get(uuid) else {
            return Finish::Gone;
        };
        if p.pieces.len() < p.num_chunks as usize || p.last.is_none() {
            return Finish::Missing;
        }
        let p = self.remove(uuid).expect("pending");
        if p.bytes != p.total_size {
            self.discarded.extend(p.entries());
            self.report(
                Reason::Malformed,
                Some(uuid),
                p.num_chunks,
                "chunks do not add up to the total size",
            );
            return Finish::Gone;
        }
        let entries = p.entries();
        let mut payload = BytesMut::with_capacity(p.total_size);
        for piece in p.pieces.into_values() {
            payload.extend_from_slice(&piece.payload);
        }
        let (metadata, redelivery_count) = p.last.expect("last chunk");
        Finish::Done(Assembled {
            id: *entries.last().expect("chunks"),
            entries,
            metadata,
            payload: payload.freeze(),
            redelivery_count,
        })
    }

    /// The chunks of `uuid` still missing cannot be found: the message is dropped.
    pub fn give_up(&mut self, uuid: &str, why: &str) {
        self.drop_pending(uuid, Reason::Incomplete, why);
    }

    /// An assembled message whose payload does not decode.
    pub fn undecodable(&mut self, m: &Assembled, why: &str) {
        self.discarded.extend(&m.entries);
        let uuid = m.metadata.uuid.as_deref();
        self.report(Reason::Malformed, uuid, m.entries.len() as u32, why);
    }

    /// Drops incomplete messages whose next chunk has not come for `expire_after`.
    pub fn expire(&mut self, now: Duration) {
        let Some(after) = self.limits.expire_after else {
            return;
        };
        let expired: Vec<String> = self
            .pending
            .iter()
            .filter(|(_, p)| p.last.is_none() && now.saturating_sub(p.touched) >= after)
            .map(|(uuid, _)| uuid.clone())
            .collect();
        for uuid in expired {
            self.drop_pending(&uuid, Reason::Expired, "no next chunk in time");
        }
    }

    /// Entries of dropped messages and duplicate chunks since the last call: nobody will
    /// deliver them, so a durable consumer acknowledges them.
    pub fn take_discarded(&mut self) -> Vec<EntryId> {
        std::mem::take(&mut self.discarded)
    }

    /// The entries of incomplete messages.
    pub fn held(&self) -> impl Iterator<Item = EntryId> + '_ {
        self.pending
            .values()
            .flat_map(|p| p.pieces.values().map(|piece| piece.id))
    }

    #[cfg(test)]
    pub fn pending_messages(&self) -> usize {
        self.pending.len()
    }

    /// Bytes of the incomplete messages held.
    pub fn pending_bytes(&self) -> usize {
        self.bytes
    }

    /// Forgets everything (a seek): nothing is reported or acknowledged.
    pub fn clear(&mut self) {
        self.pending.clear();
        self.bytes = 0;
        self.discarded.clear();
    }

    fn too_large(&self, h: &Header, metadata: &MessageMetadata) -> Option<String> {
        let max = self.limits.max_message_bytes;
        let uncompressed = metadata.uncompressed_size.unwrap_or(0) as usize;
        if h.total_size > max {
            Some(format!("{} bytes, over the limit of {max}", h.total_size))
        } else if metadata.compression.is_some_and(|c| c != 0) && uncompressed > max {
            Some(format!(
                "{uncompressed} bytes uncompressed, over the limit of {max}"
            ))
        } else {
            None
        }
    }

    fn remove(&mut self, uuid: &str) -> Option<Pending> {
        let p = self.pending.remove(uuid)?;
        self.bytes -= p.bytes;
        Some(p)
    }

    /// Drops an incomplete message: its entries will not be delivered.
    fn drop_pending(&mut self, uuid: &str, reason: Reason, why: &str) {
        if let Some(p) = self.remove(uuid) {
            self.discarded.extend(p.entries());
            self.report(reason, Some(uuid), p.num_chunks, why);
        }
    }

    /// Sets the oldest incomplete message aside, unacknowledged: a consumer gets it again with
    /// the next redelivery, and a reader that reaches its last chunk looks the rest up again.
    fn evict_oldest(&mut self, keep: Option<&str>) -> bool {
        let oldest = self
            .pending
            .iter()
            .filter(|(uuid, p)| Some(uuid.as_str()) != keep && p.last.is_none())
            .min_by_key(|(_, p)| p.order)
            .map(|(uuid, _)| uuid.clone());
        let Some(uuid) = oldest else {
            return false;
        };
        let p = self.remove(&uuid).expect("pending");
        self.report(
            Reason::Evicted,
            Some(&uuid),
            p.num_chunks,
            "too many incomplete chunked messages held",
        );
        true
    }

    fn make_room_for_one(&mut self) {
        while self.pending.len() >= self.limits.max_pending_messages.max(1) {
            if !self.evict_oldest(None) {
                break;
            }
        }
    }

    fn keep_bytes_within_limit(&mut self, current: &str) {
        while self.bytes > self.limits.max_pending_bytes {
            if !self.evict_oldest(Some(current)) {
                // The current message alone is over the limit.
                let why = format!(
                    "incomplete messages over the limit of {} bytes",
                    self.limits.max_pending_bytes
                );
                self.drop_pending(current, Reason::TooLarge, &why);
                return;
            }
        }
    }

    fn report(&self, reason: Reason, uuid: Option<&str>, chunks: u32, why: &str) {
        metrics::counter!("pulsar_chunked_messages_dropped_total", "reason" => reason.label())
            .increment(1);
        tracing::warn!(
            topic = %self.topic,
            uuid = uuid.unwrap_or("-"),
            chunks,
            reason = reason.label(),
            "chunked message dropped: {why}"
        );
    }
}

/// Where a look-back window of `span` entries that ends just before `hi` starts, given the
/// topic's ledgers (id and entry count, oldest first); `None` when nothing precedes `hi`. A
/// window that reaches the topic's first entry is shorter.
pub fn window_start(hi: EntryId, span: u64, ledgers: &[(u64, u64)]) -> Option<EntryId> {
    if hi.entry >= span {
        return Some(EntryId {
            ledger: hi.ledger,
            entry: hi.entry - span,
        });
    }
    let mut left = span - hi.entry;
    let mut start = (hi.entry > 0).then_some(EntryId {
        ledger: hi.ledger,
        entry: 0,
    });
    for &(ledger, entries) in ledgers.iter().rev() {
        if ledger >= hi.ledger || entries == 0 {
            continue;
        }
        if entries >= left {
            return Some(EntryId {
                ledger,
                entry: entries - left,
            });
        }
        left -= entries;
        start = Some(EntryId { ledger, entry: 0 });
    }
    start
}

#[cfg(test)]
mod tests {
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

    #[test]
    fn windows_reach_back_across_ledgers() {
        let at = |ledger, entry| EntryId { ledger, entry };
        let ledgers = [(3, 10), (5, 0), (8, 4), (9, 6)];
        assert_eq!(window_start(at(9, 5), 3, &[]), Some(at(9, 2)));
        assert_eq!(window_start(at(9, 5), 5, &[]), Some(at(9, 0)));
        assert_eq!(window_start(at(9, 5), 7, &ledgers), Some(at(8, 2)));
        assert_eq!(window_start(at(9, 5), 9, &ledgers), Some(at(8, 0)));
        assert_eq!(window_start(at(9, 5), 10, &ledgers), Some(at(3, 9)));
        assert_eq!(window_start(at(9, 0), 4, &ledgers), Some(at(8, 0)));
        // Past the first entry: the window stops there, and nothing precedes it.
        assert_eq!(window_start(at(9, 5), 100, &ledgers), Some(at(3, 0)));
        assert_eq!(window_start(at(3, 0), 1, &ledgers), None);
        // Ledgers unknown: the current one only.
        assert_eq!(window_start(at(9, 5), 100, &[]), Some(at(9, 0)));
    }
}
