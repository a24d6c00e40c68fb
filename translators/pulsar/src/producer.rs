//! Producers: one per (topic, producer name), sending pre-built batch entries and returning each
//! entry's id from the broker's receipt.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use gateway_core::backend::{SendReceipt, TransactionId};
use gateway_core::{BackendError, EntryId, EntryToSend, PendingSend, Result};
use tokio::sync::oneshot;

use crate::batch;
use crate::connection::{unavailable, Connection, Receipt};
use crate::frame;
use crate::pool::Pool;
use crate::proto::{
    command_type as t, BaseCommand, CommandCloseProducer, CommandProducer, CommandSend,
};

/// `ProducerAccessMode.Exclusive` in PulsarApi.proto.
const ACCESS_EXCLUSIVE: i32 = 1;

pub struct Producer {
    connection: Arc<Connection>,
    producer_id: u64,
    name: String,
    /// Next sequence id for entries without their own (deduplication) sequence.
    next_sequence: AtomicU64,
    /// The highest sequence id sent, starting from the broker's last persisted one for this
    /// producer name (-1: none), so a front end can recover its sequence state from it.
    last_sequence: AtomicI64,
    codec: i32,
    /// When a send last used it (ms since epoch), for closing idle producers.
    pub last_used: AtomicU64,
    unsettled: Arc<Mutex<Unsettled>>,
    /// Held from taking sequence ids to writing the frames: concurrent submits must reach the
    /// broker in sequence order, or its deduplication refuses the lower one ("cannot determine
    /// whether the message is a duplicate").
    send_order: tokio::sync::Mutex<()>,
}

impl Drop for Producer {
    /// Closing tells the broker to forget this producer (Pulsar counts producers per topic).
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
            connection,
            producer_id,
            name: success.producer_name,
            next_sequence: AtomicU64::new((last + 1).max(0) as u64),
            last_sequence: AtomicI64::new(last),
            codec,
            last_used: AtomicU64::new(batch::now_millis()),
            unsettled: Arc::default(),
            send_order: tokio::sync::Mutex::new(()),
        })
    }

    /// Whether this producer can still send (its connection is up and the broker kept it).
    pub fn is_usable(&self) -> bool {
        !self.connection.producer_closed(self.producer_id)
    }

    /// Writes the entries in order and returns once they are on the connection; the returned
    /// future resolves with their receipts. Receipts are collected by a task of their own, so
    /// `may_replace` knows which sends settled even when nobody polls that future yet.
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
        let in_order = self.send_order.lock().await;
        let mut waiting = Vec::with_capacity(entries.len());
        let mut written = Ok(());
        for entry in &entries {
            let sequence_id = match &entry.dedup {
                Some((_, sequence)) => *sequence,
                None => self.next_sequence.fetch_add(1, Ordering::Relaxed),
            };
            let (mut metadata, payload) =
                batch::encode_entry(&entry.messages, &self.name, sequence_id, self.codec)?;
            // As the Java client does; the broker goes by the SEND command's ids.
            metadata.txnid_least_bits = txn.map(|t| t.least_bits);
            metadata.txnid_most_bits = txn.map(|t| t.most_bits);
            if payload.len() > self.connection.max_message_size {
                written = Err(BackendError::InvalidArgument(format!(
                    "an entry of {} bytes exceeds the broker's maxMessageSize of {}",
                    payload.len(),
                    self.connection.max_message_size
                )));
                break;
            }
            let command = BaseCommand {
                r#type: t::SEND,
                send: Some(CommandSend {
                    producer_id: self.producer_id,
                    sequence_id,
                    num_messages: Some(entry.messages.len() as i32),
                    txnid_least_bits: txn.map(|t| t.least_bits),
                    txnid_most_bits: txn.map(|t| t.most_bits),
                    highest_sequence_id: None,
                }),
                ..Default::default()
            };
            let receipt = self
                .connection
                .expect_receipt(self.producer_id, sequence_id);
            self.unsettled
                .lock()
                .expect("unsettled lock")
                .pending
                .insert(sequence_id);
            waiting.push((sequence_id, receipt));
            if let Err(e) = self
                .connection
                .send_frame(frame::encode_with_payload(&command, &metadata, &payload))
                .await
            {
                written = Err(e);
                break;
            }
            self.last_sequence
                .fetch_max(sequence_id as i64, Ordering::Relaxed);
        }
        drop(in_order);
        // Even after a failed write, the entries already handed over must settle.
        let deadline = tokio::time::Instant::now() + self.connection.operation_timeout();
        let receipts = settle(
            waiting,
            self.unsettled.clone(),
            self.connection.clone(),
            self.producer_id,
            deadline,
        );
        written?;
        Ok(Box::pin(async move {
            receipts
                .await
                .map_err(|_| unavailable("receipt collector stopped"))?
        }))
    }

    /// The highest sequence id this producer sent, or the broker had persisted for its name when
    /// it was created; `None` when there is none.
    pub fn last_sequence(&self) -> Option<u64> {
        u64::try_from(self.last_sequence.load(Ordering::Relaxed)).ok()
    }

    /// Whether a new producer with this one's name may take over from it for a send starting at
    /// `first_sequence` (a deduplication sequence; `None` for unnamed producers, which promise
    /// no order across producers). A named producer's sends persist in order, so a failed send
    /// is resent by the client before any later one. A replacement must not persist a later
    /// sequence first: Pulsar's deduplication would then drop the resend as a duplicate, and an
    /// acknowledged-looking record would be lost. So it waits until the old sends settle, and
    /// then serves only the resend of the first failed one (or a newer producer epoch).
    pub fn may_replace(&self, first_sequence: Option<u64>) -> Result<()> {
        let unsettled = self.unsettled.lock().expect("unsettled lock");
        if !unsettled.pending.is_empty() {
            return Err(unavailable(
                "the previous producer still has sends in flight; retry",
            ));
        }
        let (Some(&failed), Some(next)) = (unsettled.failed.first(), first_sequence) else {
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

/// Sends handed to the broker that have no receipt yet, and those that failed.
#[derive(Default)]
struct Unsettled {
    pending: BTreeSet<u64>,
    failed: BTreeSet<u64>,
}

/// Collects the receipts of one submit in a task of its own, recording each outcome. A receipt
/// that has not come by `deadline` fails with a time-out: the entry may still be persisted, and
/// the client's resend is then answered by deduplication (named producers) or stored twice
/// (at-least-once).
fn settle(
    waiting: Vec<(u64, oneshot::Receiver<Receipt>)>,
    unsettled: Arc<Mutex<Unsettled>>,
    connection: Arc<Connection>,
    producer_id: u64,
    deadline: tokio::time::Instant,
) -> oneshot::Receiver<Result<Vec<SendReceipt>>> {
    let (done, result) = oneshot::channel();
    tokio::spawn(async move {
        let mut receipts = Ok(Vec::with_capacity(waiting.len()));
        for (sequence_id, receipt) in waiting {
            let outcome = match tokio::time::timeout_at(deadline, receipt).await {
                Ok(Ok(outcome)) => outcome,
                Ok(Err(_)) => Err(unavailable("Pulsar connection closed")),
                Err(_) => {
                    connection.forget_receipt(producer_id, sequence_id);
                    Err(BackendError::Timeout(format!(
                        "no receipt from Pulsar within {:?}",
                        connection.operation_timeout()
                    )))
                }
            };
            let mut state = unsettled.lock().expect("unsettled lock");
            state.pending.remove(&sequence_id);
            match (outcome, &mut receipts) {
                (Ok(id), Ok(list)) => list.push(match id {
                    Some(m) => SendReceipt::Persisted(EntryId {
                        ledger: m.ledger_id,
                        entry: m.entry_id,
                    }),
                    None => SendReceipt::Duplicate,
                }),
                (Ok(_), Err(_)) => {}
                (Err(e), _) => {
                    state.failed.insert(sequence_id);
                    if receipts.is_ok() {
                        receipts = Err(e);
                    }
                }
            }
        }
        let _ = done.send(receipts);
    });
    result
}
