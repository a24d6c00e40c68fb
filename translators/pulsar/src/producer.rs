//! Producers: one per (topic, producer name), sending pre-built batch entries and returning each
//! entry's id from the broker's receipt.

use std::collections::{BTreeSet, VecDeque};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use gateway_core::backend::{SendReceipt, TransactionId, MAX_COALESCED_MESSAGES};
use gateway_core::{BackendError, EntryToSend, Message, MessageId, PendingSend, Result};
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};

use crate::batch;
use crate::connection::{unavailable, Connection, Receipt};
use crate::frame;
use crate::pool::Pool;
use crate::proto::{
    command_type as t, BaseCommand, CommandCloseProducer, CommandProducer, CommandSend,
};

/// `ProducerAccessMode.Exclusive` in PulsarApi.proto.
const ACCESS_EXCLUSIVE: i32 = 1;

/// Flushes of one producer in flight at once. A flush takes every send queued while the one
/// before it waited for its receipts, and coalesces them (`pack`): the broker's and bookies'
/// costs are per entry, and a Kafka producer's pipelined requests carry one small batch per
/// partition each, so under load most of them share an entry, while a lone send goes at once.
const FLUSHES_IN_FLIGHT: usize = 1;
/// Most bytes (before compression, as `Message::approximate_size` counts them) the messages of
/// sends coalesced into one entry may have.
const MAX_COALESCED_BYTES: usize = 1 << 20;
/// Bytes of sends queued and not yet written to the connection, beyond which `submit` waits:
/// it pushes back on a front end while the broker does not take data.
const MAX_QUEUED_BYTES: usize = 16 << 20;

pub struct Producer {
    shared: Arc<Shared>,
    /// When a send last used it (ms since epoch), for closing idle producers.
    pub last_used: AtomicU64,
}

/// What the producer's flushes share with it.
struct Shared {
    connection: Arc<Connection>,
    producer_id: u64,
    name: String,
    /// Next sequence id for entries without their own (deduplication) sequence.
    next_sequence: AtomicU64,
    /// The highest sequence id sent, starting from the broker's last persisted one for this
    /// producer name (-1: none), so a front end can recover its sequence state from it.
    last_sequence: AtomicI64,
    codec: i32,
    state: Mutex<State>,
    queued_bytes: Arc<Semaphore>,
    in_flight: Arc<Semaphore>,
}

impl Drop for Shared {
    /// Closing tells the broker to forget this producer (Pulsar counts producers per topic).
    /// The last flush holds it too, so what was queued is written first.
    fn drop(&mut self) {
        let request_id = self.connection.next_id();
        self.connection.fire(BaseCommand {
            r#type: t::CLOSE_PRODUCER,
            close_producer: Some(CommandCloseProducer {
                producer_id: self.producer_id,
                request_id,
            }),
            ..Default::default()
        });
    }
}

impl Producer {
    /// Creates a producer on the topic's owner. A `name` makes it a named producer, which Pulsar's
    /// deduplication tracks across reconnects; otherwise the broker picks a name.
    pub async fn create(
        pool: &Pool,
        topic: &str,
        name: Option<&str>,
        codec: i32,
    ) -> Result<Producer> {
        Self::create_with_access(pool, topic, name, codec, None).await
    }

    /// Creates the topic's exclusive producer (Pulsar's `Exclusive` access mode): the broker
    /// refuses it while another producer is connected, and refuses every other producer while it
    /// is. Used as a lease.
    pub async fn create_exclusive(
        pool: &Pool,
        topic: &str,
        name: &str,
        codec: i32,
    ) -> Result<Producer> {
        Self::create_with_access(pool, topic, Some(name), codec, Some(ACCESS_EXCLUSIVE)).await
    }

    async fn create_with_access(
        pool: &Pool,
        topic: &str,
        name: Option<&str>,
        codec: i32,
        access_mode: Option<i32>,
    ) -> Result<Producer> {
        let connection = pool.owner_of(topic).await?;
        let (producer_id, request_id) = (connection.next_id(), connection.next_id());
        let answer = connection
            .request(
                request_id,
                BaseCommand {
                    r#type: t::PRODUCER,
                    producer: Some(CommandProducer {
                        topic: topic.to_owned(),
                        producer_id,
                        request_id,
                        producer_name: name.map(str::to_owned),
                        user_provided_producer_name: Some(name.is_some()),
                        producer_access_mode: access_mode,
                    }),
                    ..Default::default()
                },
            )
            .await?;
        let success = answer
            .producer_success
            .ok_or_else(|| unavailable("PRODUCER answered without PRODUCER_SUCCESS"))?;
        let last = success.last_sequence_id.unwrap_or(-1);
        Ok(Producer {
            shared: Arc::new(Shared {
                connection,
                producer_id,
                name: success.producer_name,
                next_sequence: AtomicU64::new((last + 1).max(0) as u64),
                last_sequence: AtomicI64::new(last),
                codec,
                state: Mutex::default(),
                queued_bytes: Arc::new(Semaphore::new(MAX_QUEUED_BYTES)),
                in_flight: Arc::new(Semaphore::new(FLUSHES_IN_FLIGHT)),
            }),
            last_used: AtomicU64::new(batch::now_millis()),
        })
    }

    /// Whether this producer can still send (its connection is up and the broker kept it).
    pub fn is_usable(&self) -> bool {
        !self
            .shared
            .connection
            .producer_closed(self.shared.producer_id)
    }

    /// Queues the entries, in call order, and returns the future of their receipts. Entries of
    /// one call become consecutive entries of their own; an entry sent alone may share a stored
    /// entry with the sends queued next to it (see `pack`), and its receipt then names the batch
    /// index its messages start at. Waits while the sends queued hold `MAX_QUEUED_BYTES`.
    pub async fn submit(&self, entries: Vec<EntryToSend>) -> Result<PendingSend> {
        self.submit_in(None, entries).await
    }

    /// `submit`, in transaction `txn` when given. Transactional and plain sends share this
    /// producer, its sequence ids and its order: the broker appends both to the same ledger in
    /// the order they come (readers then see them in that order, the transaction's once it
    /// commits). Pulsar 4.0 checks a send in a transaction against the producer's deduplication
    /// state like any other (`PersistentTopic.publishTxnMessage` calls `isDuplicate` first), so
    /// a resent sequence id is answered as a duplicate (receipt -1:-1) in a transaction too.
    pub async fn submit_in(
        &self,
        txn: Option<TransactionId>,
        entries: Vec<EntryToSend>,
    ) -> Result<PendingSend> {
        self.last_used.store(batch::now_millis(), Ordering::Relaxed);
        if entries.is_empty() {
            return Ok(Box::pin(async { Ok(Vec::new()) }));
        }
        let shared = &self.shared;
        let bytes = entries
            .iter()
            .flat_map(|e| &e.messages)
            .map(Message::approximate_size)
            .sum::<usize>()
            .clamp(1, MAX_QUEUED_BYTES);
        let timeout = shared.connection.operation_timeout();
        let queued = tokio::time::timeout(
            timeout,
            shared.queued_bytes.clone().acquire_many_owned(bytes as u32),
        )
        .await
        .map_err(|_| {
            BackendError::Timeout(format!(
                "the broker took no data from this producer for {timeout:?}"
            ))
        })?
        .map_err(|_| unavailable("producer closed"))?;
        let (done, outcome) = oneshot::channel();
        let start_flush = {
            let mut state = shared.state.lock().expect("producer state lock");
            state.waiting.push_back(Queued {
                send: Send { txn, entries },
                done,
                queued,
            });
            !std::mem::replace(&mut state.flushing, true)
        };
        if start_flush {
            tokio::spawn(flush(shared.clone()));
        }
        Ok(Box::pin(async move {
            outcome
                .await
                .map_err(|_| unavailable("the producer stopped before the send settled"))?
        }))
    }

    /// The highest sequence id this producer sent, or the broker had persisted for its name when
    /// it was created; `None` when there is none.
    pub fn last_sequence(&self) -> Option<u64> {
        u64::try_from(self.shared.last_sequence.load(Ordering::Relaxed)).ok()
    }

    /// Whether a new producer with this one's name may take over from it for a send starting at
    /// `first_sequence` (a deduplication sequence; `None` for unnamed producers, which promise
    /// no order across producers). A named producer's sends persist in order, so a failed send
    /// is resent by the client before any later one. A replacement must not persist a later
    /// sequence first: Pulsar's deduplication would then drop the resend as a duplicate, and an
    /// acknowledged-looking record would be lost. So it waits until the old sends (queued or
    /// written) settle, and then serves only the resend of the first failed one (or a newer
    /// producer epoch).
    pub fn may_replace(&self, first_sequence: Option<u64>) -> Result<()> {
        let state = self.shared.state.lock().expect("producer state lock");
        if !state.waiting.is_empty() || state.packing || !state.pending.is_empty() {
            return Err(unavailable(
                "the previous producer still has sends in flight; retry",
            ));
        }
        let (Some(&failed), Some(next)) = (state.failed.first(), first_sequence) else {
            return Ok(());
        };
        // The Kafka front end puts the producer epoch in the bits from 48 up.
        if next <= failed || next >> 48 > failed >> 48 {
            Ok(())
        } else {
            Err(unavailable(format!(
                "sequence {failed} failed on the previous producer and must be resent before {next}"
            )))
        }
    }
}

/// Sends queued, flushed and awaiting receipts, and those that failed.
#[derive(Default)]
struct State {
    waiting: VecDeque<Queued>,
    /// A flush task runs (it stops when it finds nothing queued).
    flushing: bool,
    /// A flush took sends from `waiting` and has not put their frames in `pending` yet.
    packing: bool,
    /// Sequence ids of frames written that have no receipt yet.
    pending: BTreeSet<u64>,
    failed: BTreeSet<u64>,
}

/// One `submit` call.
struct Send {
    txn: Option<TransactionId>,
    entries: Vec<EntryToSend>,
}

struct Queued {
    send: Send,
    done: oneshot::Sender<Result<Vec<SendReceipt>>>,
    /// Its part of `MAX_QUEUED_BYTES`, given back once its frames are written.
    queued: OwnedSemaphorePermit,
}

/// Where one entry of a send landed in a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Member {
    send: usize,
    entry: usize,
    /// The batch index of the entry's first message in the frame.
    first_index: u32,
}

/// One stored entry to write: the entries of one or more sends.
#[derive(Debug)]
struct Frame {
    txn: Option<TransactionId>,
    messages: Vec<Message>,
    /// (sequence id of the first message, of the last member's first message) for entries
    /// with a deduplication sequence; the frame takes the next plain sequence id otherwise.
    dedup: Option<(u64, u64)>,
    members: Vec<Member>,
    /// Whether the next send may join it.
    open: bool,
    bytes: usize,
}

impl Frame {
    /// The deduplication sequence a send must start at to join this frame: the members'
    /// messages keep consecutive ids, so `first + batch index` names each message.
    fn next_sequence(&self) -> Option<u64> {
        self.dedup
            .map(|(first, _)| first + self.messages.len() as u64)
    }
}

/// Packs queued sends into frames, in order. A send of one entry that allows it
/// (`EntryToSend::coalesce`) may join the frame before it when both have the same transaction, neither holds a delayed message (Pulsar delays whole
/// entries), the deduplication sequences continue each other (or neither has one), and the
/// frame stays within `MAX_COALESCED_MESSAGES` messages and `MAX_COALESCED_BYTES`. A resend (a
/// sequence not above `last_sent`) goes alone: the broker judges a frame by its first sequence
/// id, so a resend sharing a frame with new entries would have the new ones dropped as
/// duplicates. The entries of a send of several entries stay consecutive frames of their own.
fn pack(sends: Vec<Send>, last_sent: Option<u64>) -> Vec<Frame> {
    let mut frames: Vec<Frame> = Vec::new();
    let mut last_sent = last_sent;
    for (send_index, send) in sends.into_iter().enumerate() {
        let alone = send.entries.len() > 1;
        for (entry_index, entry) in send.entries.into_iter().enumerate() {
            let sequence = entry.dedup.as_ref().map(|(_, s)| *s);
            let resend = matches!((sequence, last_sent), (Some(s), Some(l)) if s <= l);
            let delayed = entry.messages.iter().any(|m| m.deliver_at.is_some());
            let bytes: usize = entry.messages.iter().map(Message::approximate_size).sum();
            let joinable = entry.coalesce && !alone && !resend && !delayed;
            if let Some(sequence) = sequence {
                last_sent = Some(last_sent.map_or(sequence, |l| l.max(sequence)));
            }
            let joins = joinable
                && frames.last().is_some_and(|f| {
                    f.open
                        && f.txn == send.txn
                        && f.next_sequence() == sequence
                        && f.messages.len() + entry.messages.len() <= MAX_COALESCED_MESSAGES
                        && f.bytes + bytes <= MAX_COALESCED_BYTES
                });
            if joins {
                let frame = frames.last_mut().expect("checked above");
                frame.members.push(Member {
                    send: send_index,
                    entry: entry_index,
                    first_index: frame.messages.len() as u32,
                });
                if let (Some((_, last)), Some(s)) = (frame.dedup.as_mut(), sequence) {
                    *last = s;
                }
                frame.messages.extend(entry.messages);
                frame.bytes += bytes;
                metrics::counter!("pulsar_producer_entries_coalesced_total").increment(1);
            } else {
                frames.push(Frame {
                    txn: send.txn,
                    messages: entry.messages,
                    dedup: sequence.map(|s| (s, s)),
                    members: vec![Member {
                        send: send_index,
                        entry: entry_index,
                        first_index: 0,
                    }],
                    open: joinable,
                    bytes,
                });
            }
        }
    }
    frames
}

/// Writes what is queued, one flush at a time (`FLUSHES_IN_FLIGHT`), until nothing is.
async fn flush(shared: Arc<Shared>) {
    loop {
        let in_flight = shared
            .in_flight
            .clone()
            .acquire_owned()
            .await
            .expect("never closed");
        let queued: Vec<Queued> = {
            let mut state = shared.state.lock().expect("producer state lock");
            if state.waiting.is_empty() {
                state.flushing = false;
                return;
            }
            state.packing = true;
            state.waiting.drain(..).collect()
        };
        let mut sends = Vec::with_capacity(queued.len());
        let mut waiters = Vec::with_capacity(queued.len());
        let mut permits = Vec::with_capacity(queued.len());
        for q in queued {
            waiters.push((q.done, q.send.entries.len()));
            sends.push(q.send);
            permits.push(q.queued);
        }
        let last_sent = u64::try_from(shared.last_sequence.load(Ordering::Relaxed)).ok();
        let frames = pack(sends, last_sent);
        let written = write_frames(&shared, frames).await;
        drop(permits);
        let deadline = tokio::time::Instant::now() + shared.connection.operation_timeout();
        tokio::spawn(settle(
            shared.clone(),
            written,
            waiters,
            deadline,
            in_flight,
        ));
    }
}

/// A frame handed to the connection (its receipt to come), or why it was not.
type Written = (
    Vec<Member>,
    std::result::Result<(u64, oneshot::Receiver<Receipt>), BackendError>,
);

/// Writes the frames in order. After a write fails, the rest are not written: a later sequence
/// persisted before the resend of an earlier one would have the resend dropped. A frame refused
/// before it was written (too large) fails only its own sends, unless it carries deduplication
/// sequences, which the later ones must not overtake.
async fn write_frames(shared: &Shared, frames: Vec<Frame>) -> Vec<Written> {
    let mut written = Vec::with_capacity(frames.len());
    let mut failure: Option<BackendError> = None;
    for frame in frames {
        if failure.is_none() && shared.connection.producer_closed(shared.producer_id) {
            failure = Some(unavailable("the broker closed the producer"));
        }
        let outcome = match &failure {
            Some(e) => Err(e.clone()),
            None => match encode_frame(shared, &frame) {
                Ok(encoded) => write_frame(shared, encoded).await.inspect_err(|e| {
                    failure = Some(e.clone());
                }),
                Err(e) => {
                    if frame.dedup.is_some() {
                        failure = Some(e.clone());
                    }
                    Err(e)
                }
            },
        };
        if outcome.is_err() {
            if let Some((first, _)) = frame.dedup {
                let mut state = shared.state.lock().expect("producer state lock");
                state.failed.insert(first);
            }
        }
        written.push((frame.members, outcome));
    }
    shared.state.lock().expect("producer state lock").packing = false;
    written
}

/// A frame ready to write: its sequence id, the highest sequence id it covers, and its bytes.
struct Encoded {
    sequence_id: u64,
    highest: Option<u64>,
    bytes: bytes::Bytes,
}

/// Encodes one frame as a batch entry with its SEND command.
fn encode_frame(shared: &Shared, frame: &Frame) -> Result<Encoded> {
    let (sequence_id, highest) = match frame.dedup {
        Some((first, last)) => (first, (last > first).then_some(last)),
        None => (shared.next_sequence.fetch_add(1, Ordering::Relaxed), None),
    };
    let (mut metadata, payload) =
        batch::encode_entry(&frame.messages, &shared.name, sequence_id, shared.codec)?;
    let txn = frame.txn;
    // As the Java client does; the broker goes by the SEND command's ids.
    metadata.txnid_least_bits = txn.map(|t| t.least_bits);
    metadata.txnid_most_bits = txn.map(|t| t.most_bits);
    metadata.highest_sequence_id = highest;
    if payload.len() > shared.connection.max_message_size {
        return Err(BackendError::InvalidArgument(format!(
            "an entry of {} bytes exceeds the broker's maxMessageSize of {}",
            payload.len(),
            shared.connection.max_message_size
        )));
    }
    let command = BaseCommand {
        r#type: t::SEND,
        send: Some(CommandSend {
            producer_id: shared.producer_id,
            sequence_id,
            num_messages: Some(frame.messages.len() as i32),
            txnid_least_bits: txn.map(|t| t.least_bits),
            txnid_most_bits: txn.map(|t| t.most_bits),
            highest_sequence_id: highest,
        }),
        ..Default::default()
    };
    Ok(Encoded {
        sequence_id,
        highest,
        bytes: frame::encode_with_payload(&command, &metadata, &payload),
    })
}

/// Hands an encoded frame to the connection; returns its sequence id and the receipt to wait
/// for.
async fn write_frame(
    shared: &Shared,
    encoded: Encoded,
) -> Result<(u64, oneshot::Receiver<Receipt>)> {
    let sequence_id = encoded.sequence_id;
    let receipt = shared
        .connection
        .expect_receipt(shared.producer_id, sequence_id);
    shared
        .state
        .lock()
        .expect("producer state lock")
        .pending
        .insert(sequence_id);
    if let Err(e) = shared.connection.send_frame(encoded.bytes).await {
        shared
            .state
            .lock()
            .expect("producer state lock")
            .pending
            .remove(&sequence_id);
        shared
            .connection
            .forget_receipt(shared.producer_id, sequence_id);
        return Err(e);
    }
    shared.last_sequence.fetch_max(
        encoded.highest.unwrap_or(sequence_id) as i64,
        Ordering::Relaxed,
    );
    Ok((sequence_id, receipt))
}

/// Collects the receipts of one flush, records each outcome, and answers each send with its
/// entries' receipts (or the first failure among them). A receipt that has not come by
/// `deadline` fails with a time-out: the entry may still be persisted, and the client's resend
/// is then answered by deduplication (named producers) or stored twice (at-least-once). The
/// next flush waits for this one (`in_flight`), so what is queued meanwhile is coalesced.
async fn settle(
    shared: Arc<Shared>,
    written: Vec<Written>,
    waiters: Vec<(oneshot::Sender<Result<Vec<SendReceipt>>>, usize)>,
    deadline: tokio::time::Instant,
    in_flight: OwnedSemaphorePermit,
) {
    let mut outcomes: Vec<Result<Vec<Option<SendReceipt>>>> = waiters
        .iter()
        .map(|(_, entries)| Ok(vec![None; *entries]))
        .collect();
    for (members, sent) in written {
        let outcome = match sent {
            Err(e) => Err(e),
            Ok((sequence_id, receipt)) => {
                let outcome = match tokio::time::timeout_at(deadline, receipt).await {
                    Ok(Ok(outcome)) => outcome,
                    Ok(Err(_)) => Err(unavailable("Pulsar connection closed")),
                    Err(_) => {
                        shared
                            .connection
                            .forget_receipt(shared.producer_id, sequence_id);
                        Err(BackendError::Timeout(format!(
                            "no receipt from Pulsar within {:?}",
                            shared.connection.operation_timeout()
                        )))
                    }
                };
                let mut state = shared.state.lock().expect("producer state lock");
                state.pending.remove(&sequence_id);
                if outcome.is_err() {
                    state.failed.insert(sequence_id);
                }
                outcome
            }
        };
        for member in members {
            let slot = &mut outcomes[member.send];
            match (&outcome, slot.as_mut()) {
                (Ok(id), Ok(receipts)) => {
                    receipts[member.entry] = Some(match id {
                        Some(m) => SendReceipt::Persisted(MessageId {
                            ledger: m.ledger_id,
                            entry: m.entry_id,
                            batch_index: member.first_index,
                        }),
                        None => SendReceipt::Duplicate,
                    })
                }
                (Err(e), Ok(_)) => *slot = Err(e.clone()),
                (_, Err(_)) => {}
            }
        }
    }
    drop(in_flight);
    for ((done, _), outcome) in waiters.into_iter().zip(outcomes) {
        let receipts = outcome.map(|r| {
            r.into_iter()
                .map(|r| r.expect("every entry is in a frame"))
                .collect()
        });
        let _ = done.send(receipts);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn send(sequence: Option<u64>, messages: usize) -> Send {
        Send {
            txn: None,
            entries: vec![entry(sequence, messages)],
        }
    }

    fn entry(sequence: Option<u64>, messages: usize) -> EntryToSend {
        EntryToSend {
            messages: vec![
                Message {
                    value: Some(bytes::Bytes::from_static(b"v")),
                    ..Message::default()
                };
                messages
            ],
            dedup: sequence.map(|s| ("p".to_owned(), s)),
            coalesce: true,
        }
    }

    /// A frame's (first sequence, highest) and its members' (send, entry, first index).
    type Shape = (Option<(u64, u64)>, Vec<(usize, usize, u32)>);

    fn shape(frames: &[Frame]) -> Vec<Shape> {
        frames
            .iter()
            .map(|f| {
                (
                    f.dedup,
                    f.members
                        .iter()
                        .map(|m| (m.send, m.entry, m.first_index))
                        .collect(),
                )
            })
            .collect()
    }

    #[test]
    fn consecutive_sends_share_an_entry_at_their_batch_indexes() {
        let frames = pack(
            vec![send(Some(10), 3), send(Some(13), 2), send(Some(15), 1)],
            Some(9),
        );
        assert_eq!(
            shape(&frames),
            [(Some((10, 15)), vec![(0, 0, 0), (1, 0, 3), (2, 0, 5)])]
        );
        assert_eq!(frames[0].messages.len(), 6);
        // Without deduplication sequences too.
        let frames = pack(vec![send(None, 2), send(None, 2)], None);
        assert_eq!(shape(&frames), [(None, vec![(0, 0, 0), (1, 0, 2)])]);
    }

    #[test]
    fn what_cannot_share_an_entry_goes_in_its_own() {
        // A gap in the sequences, and plain after deduplicated.
        let frames = pack(
            vec![send(Some(10), 3), send(Some(20), 1), send(None, 1)],
            None,
        );
        assert_eq!(frames.len(), 3);
        // A resend (at or below what was sent) goes alone, and nothing joins it: the broker
        // would judge the whole entry a duplicate by its first id.
        let frames = pack(vec![send(Some(5), 2), send(Some(7), 1)], Some(6));
        assert_eq!(
            shape(&frames),
            [
                (Some((5, 5)), vec![(0, 0, 0)]),
                (Some((7, 7)), vec![(1, 0, 0)])
            ]
        );
        // Another transaction.
        let mut other = send(Some(13), 1);
        other.txn = Some(TransactionId {
            most_bits: 1,
            least_bits: 2,
        });
        assert_eq!(pack(vec![send(Some(10), 3), other], None).len(), 2);
        // An entry that does not allow it (an AMQP message: queues count entries).
        let mut counted = send(Some(13), 1);
        counted.entries[0].coalesce = false;
        assert_eq!(pack(vec![send(Some(10), 3), counted], None).len(), 2);
        let mut first = send(Some(10), 3);
        first.entries[0].coalesce = false;
        assert_eq!(pack(vec![first, send(Some(13), 1)], None).len(), 2);
        // A delayed message: Pulsar delays whole entries.
        let mut delayed = send(Some(13), 1);
        delayed.entries[0].messages[0].deliver_at = Some(1);
        assert_eq!(pack(vec![send(Some(10), 3), delayed], None).len(), 2);
        // A send of several entries keeps them as consecutive entries of their own.
        let several = Send {
            txn: None,
            entries: vec![entry(Some(13), 2), entry(Some(15), 1)],
        };
        let frames = pack(vec![send(Some(10), 3), several, send(Some(16), 1)], None);
        assert_eq!(
            shape(&frames),
            [
                (Some((10, 10)), vec![(0, 0, 0)]),
                (Some((13, 13)), vec![(1, 0, 0)]),
                (Some((15, 15)), vec![(1, 1, 0)]),
                (Some((16, 16)), vec![(2, 0, 0)])
            ]
        );
    }

    #[test]
    fn a_shared_entry_stays_within_its_limits() {
        let full = MAX_COALESCED_MESSAGES - 1;
        let frames = pack(vec![send(None, full), send(None, 1), send(None, 1)], None);
        assert_eq!(
            shape(&frames),
            [
                (None, vec![(0, 0, 0), (1, 0, full as u32)]),
                (None, vec![(2, 0, 0)])
            ]
        );
        let big = |s| Send {
            txn: None,
            entries: vec![EntryToSend {
                messages: vec![Message {
                    value: Some(bytes::Bytes::from(vec![0u8; MAX_COALESCED_BYTES / 2])),
                    ..Message::default()
                }],
                dedup: Some(("p".to_owned(), s)),
                coalesce: true,
            }],
        };
        assert_eq!(pack(vec![big(1), big(2)], None).len(), 2);
    }
}
