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

#[cfg(test)]
mod tests;
