//! Produce (key 0) and InitProducerId (key 22).
//!
//! One Kafka record batch becomes Pulsar entries of at most 4096 messages (the batch index has 12
//! bits in offset encoding v1), appended in one backend call so their entry ids are consecutive
//! and the records' offsets are contiguous, as the producer assumes (`base_offset + i`). A response
//! is sent only after the backend has persisted the entries.
//!
//! A request is handled in two steps so that one connection can have several produce requests in
//! flight (a Pulsar write takes milliseconds, and a Kafka producer sends one batch per partition
//! per request): `dispatch_produce` runs in request order and hands the batches to the backend,
//! which keeps that order; the future it returns waits for persistence and builds the response.
//! That future is dropped when the client's connection drops, so an idempotent batch's sequence
//! state is settled by a task of its own (`outcome_of`), not by the response.
//!
//! An idempotent batch that the backend's deduplication drops (written before: a resend after a
//! lost receipt, or after a restart of this instance, whose sequence state is in memory) is
//! answered with its original offset, as a Kafka broker answers a retry of a recent batch: the
//! settling task asks the backend where the producer name wrote the batch's first sequence id
//! (`Producing::find_sequence`, among the partition's last 1,000 entries). Only when it is not
//! found there is it answered `DUPLICATE_SEQUENCE_NUMBER`, which clients take as success with
//! offset -1.

use std::sync::Arc;
use std::time::Duration;

use futures::future::{join_all, BoxFuture, FutureExt};
use gateway_core::backend::{PendingSend, SendReceipt};
use gateway_core::{BackendRef, EntryToSend, MessageId, TopicName};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::produce_request::PartitionProduceData;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{
    InitProducerIdRequest, InitProducerIdResponse, ProduceRequest, ProduceResponse, ProducerId,
};

use crate::frontend::{backend_error, KafkaFrontend};
use crate::mapping::{record_to_message, stamp_append_time};
use crate::offsets::{self, MAX_BATCH_MESSAGES};
use crate::record_batch::{self, Batch, BatchError};
use crate::sequences::{BatchSequence, Sequences, Verdict};
use crate::topic_configs::ProduceRules;
use crate::topic_state::base_of;

/// How long looking up a deduplicated batch's original entry may take before the batch is
/// answered `DUPLICATE_SEQUENCE_NUMBER` anyway (it normally takes a few round trips).
const FIND_ORIGINAL_TIMEOUT: Duration = Duration::from_secs(5);

/// An idempotent batch handed to the backend: its sequence state, to settle, and where to look
/// for its original entry if deduplication drops it.
struct IdempotentBatch {
    sequence: BatchSequence,
    backend: BackendRef,
    topic: TopicName,
    producer_name: String,
}

/// One partition of a produce request after dispatch.
enum Dispatched {
    /// Answered without a write: an error, or the original offset of a retried batch.
    Answered(Result<i64, ResponseError>),
    /// Handed to the backend: its outcome once persisted (see `outcome_of`), and the time its
    /// records were stamped with on a LogAppendTime topic.
    Written(BoxFuture<'static, Result<i64, ResponseError>>, Option<i64>),
}

/// Splits a Kafka batch into Pulsar entries of at most 4096 messages each. `producer` names an
/// idempotent producer's Pulsar producer and the deduplication sequence id of the batch's first
/// record (`crate::sequences::dedup_sequence`).
pub fn batch_to_entries(
    batch: &Batch,
    producer: Option<(&str, u64)>,
) -> Result<Vec<EntryToSend>, &'static str> {
    let mut entries = Vec::with_capacity(batch.records.len().div_ceil(MAX_BATCH_MESSAGES));
    for chunk in batch.records.chunks(MAX_BATCH_MESSAGES) {
        let messages = chunk
            .iter()
            .map(record_to_message)
            .collect::<Result<Vec<_>, _>>()?;
        entries.push(EntryToSend {
            messages,
            dedup: None,
            // Offsets come from the receipts, so pipelined batches may share a Pulsar entry.
            coalesce: true,
        });
    }
    if let Some((name, first)) = producer {
        set_dedup(&mut entries, name, first);
    }
    Ok(entries)
}

/// Names the producer on each entry, with the deduplication sequence id of the entry's first
/// record: Pulsar deduplication needs them to grow per producer name.
fn set_dedup(entries: &mut [EntryToSend], name: &str, first: u64) {
    let mut sequence = first;
    for entry in entries {
        entry.dedup = Some((name.to_owned(), sequence));
        sequence += entry.messages.len() as u64;
    }
}

/// The outcome of a batch handed to the backend, once persisted. An idempotent batch's
/// sequence state is settled by a task that owns the pending send: the returned future is part
/// of the response, which is dropped if the client's connection drops, and a batch left in
/// flight would make the client's resend (on a new connection) out of order forever. The same
/// task looks up the original of a batch that deduplication dropped, so that the state records
/// its offset as for any batch written.
fn outcome_of(
    sequences: &Arc<Sequences>,
    topic: String,
    pending: PendingSend,
    batch: Option<IdempotentBatch>,
) -> BoxFuture<'static, Result<i64, ResponseError>> {
    let Some(batch) = batch else {
        return Box::pin(async move { base_offset_of(&topic, pending.await, None) });
    };
    let sequences = sequences.clone();
    let settled = tokio::spawn(async move {
        let receipts = pending.await;
        let original = match receipts.as_deref() {
            Ok([SendReceipt::Duplicate, ..]) => find_original(&batch).await,
            _ => None,
        };
        let outcome = base_offset_of(&topic, receipts, original);
        sequences.settle(batch.sequence, &outcome);
        outcome
    });
    // Dropping a JoinHandle leaves the task running.
    settled
        .map(|joined| joined.unwrap_or(Err(ResponseError::UnknownServerError)))
        .boxed()
}

/// Where the batch's first entry was written before, when deduplication dropped it now; `None`
/// when the backend does not find it (among the partition's last entries) or cannot say.
async fn find_original(batch: &IdempotentBatch) -> Option<MessageId> {
    let sequence = batch.sequence.dedup_sequence();
    let found = tokio::time::timeout(
        FIND_ORIGINAL_TIMEOUT,
        batch
            .backend
            .find_sequence(&batch.topic, &batch.producer_name, sequence),
    )
    .await;
    let (outcome, original) = match found {
        Ok(Ok(Some(id))) => ("found", Some(id)),
        Ok(Ok(None)) => ("not_found", None),
        Ok(Err(e)) => {
            tracing::warn!(topic = %batch.topic, producer = batch.producer_name, sequence, error = %e, "looking up a deduplicated batch's original entry failed; answering DUPLICATE_SEQUENCE_NUMBER");
            ("failed", None)
        }
        Err(_) => {
            tracing::warn!(topic = %batch.topic, producer = batch.producer_name, sequence, "looking up a deduplicated batch's original entry took over {FIND_ORIGINAL_TIMEOUT:?}; answering DUPLICATE_SEQUENCE_NUMBER");
            ("failed", None)
        }
    };
    metrics::counter!("kafka_produce_duplicates_total", "original" => outcome).increment(1);
    original
}

/// The Kafka base offset of a written batch, from its entries' receipts. `original` is where
/// the batch was written before, when deduplication dropped it (`find_original`).
fn base_offset_of(
    topic: &str,
    receipts: gateway_core::Result<Vec<SendReceipt>>,
    original: Option<MessageId>,
) -> Result<i64, ResponseError> {
    let receipts = receipts.map_err(backend_error)?;
    let ids: Vec<MessageId> = receipts
        .iter()
        .enumerate()
        .filter_map(|(i, r)| match r {
            SendReceipt::Persisted(id) => Some(*id),
            SendReceipt::Duplicate if i == 0 => original,
            SendReceipt::Duplicate => None,
        })
        .collect();
    let Some(first) = ids.first() else {
        // Dropped by deduplication: written before, and its offset is not known here.
        return Err(ResponseError::DuplicateSequenceNumber);
    };
    // A batch dropped whole was written whole before, by one call: consecutive entries. A batch
    // of several entries is never coalesced with others, so each starts its own entry.
    let written_before = receipts.iter().all(|r| *r == SendReceipt::Duplicate);
    let contiguous = ids.len() == 1
        || ids.windows(2).all(|w| {
            w[1].ledger == w[0].ledger && w[1].entry == w[0].entry + 1 && w[1].batch_index == 0
        });
    if !written_before && (!contiguous || ids.len() != receipts.len()) {
        metrics::counter!("kafka_produce_noncontiguous_total").increment(1);
        tracing::error!(topic, "entries of one batch are not consecutive; record offsets after the first entry differ from base_offset + i");
    }
    offsets::to_offset(*first).map_err(|e| {
        tracing::error!(error = %e, "offset out of range");
        ResponseError::UnknownServerError
    })
}

impl KafkaFrontend {
    /// Hands the request's batches to the backend, in request order, and returns the future
    /// response, complete once they are persisted. It yields `None` for acks=0, which gets no
    /// response at all.
    pub(crate) async fn dispatch_produce(
        self: &Arc<Self>,
        request: ProduceRequest,
    ) -> BoxFuture<'static, Option<ProduceResponse>> {
        let transactional = request.transactional_id.as_ref().map(|id| id.0.to_string());
        let mut topics = Vec::with_capacity(request.topic_data.len());
        for topic in request.topic_data {
            let name = topic.name.0.to_string();
            let partitions = join_all(topic.partition_data.into_iter().map(|p| async {
                let index = p.index;
                (
                    index,
                    self.dispatch_partition(&name, p, transactional.as_deref())
                        .await,
                )
            }))
            .await;
            topics.push((topic.name, partitions));
        }
        let frontend = self.clone();
        Box::pin(async move {
            let mut response = ProduceResponse::default();
            for (name, partitions) in topics {
                let mut t = TopicProduceResponse::default();
                t.name = name;
                t.partition_responses = join_all(
                    partitions
                        .into_iter()
                        .map(|(index, d)| frontend.complete_partition(index, d)),
                )
                .await;
                response.responses.push(t);
            }
            (request.acks != 0).then_some(response)
        })
    }

    async fn complete_partition(
        &self,
        index: i32,
        dispatched: Dispatched,
    ) -> PartitionProduceResponse {
        let mut response = PartitionProduceResponse::default();
        response.index = index;
        response.base_offset = -1;
        response.log_append_time_ms = -1;
        response.log_start_offset = -1;
        let (outcome, log_append_time) = match dispatched {
            Dispatched::Answered(outcome) => (outcome, None),
            Dispatched::Written(outcome, time) => (outcome.await, time),
        };
        match outcome {
            Ok(offset) => {
                response.base_offset = offset;
                response.log_append_time_ms = log_append_time.unwrap_or(-1);
            }
            Err(error) => {
                response.error_code = error.code();
                metrics::counter!("kafka_produce_errors_total", "error" => format!("{error:?}"))
                    .increment(1);
            }
        }
        response
    }

    async fn dispatch_partition(
        &self,
        name: &str,
        data: PartitionProduceData,
        transactional_id: Option<&str>,
    ) -> Dispatched {
        let topic = match self.partition_topic(name, data.index).await {
            Ok(topic) => topic,
            Err(e) => return Dispatched::Answered(Err(e)),
        };
        let index = data.index;
        let rules = self.topic_state(&base_of(&topic).0).await.produce;
        let batch = match self.decode_batch(name, data, transactional_id.is_some(), &rules) {
            Ok(batch) => batch,
            Err(e) => return Dispatched::Answered(Err(e)),
        };
        // A transactional batch is written in its producer's open transaction, to a partition
        // added to it first (AddPartitionsToTxn), as a Kafka broker checks.
        let txn = match transactional_id {
            None => None,
            Some(id) => {
                let producer = (batch.header.producer_id, batch.header.producer_epoch);
                match self.groups.txn_for_produce(id, producer, name, index).await {
                    Ok(txn) => Some(txn),
                    Err(e) => return Dispatched::Answered(Err(e)),
                }
            }
        };
        let mut entries = match batch_to_entries(&batch, None) {
            Ok(entries) => entries,
            Err(e) => {
                tracing::debug!(topic = name, error = e, "refused record");
                return Dispatched::Answered(Err(ResponseError::InvalidRecord));
            }
        };
        // The gateway's clock stands for the broker's: Pulsar's publish time is not returned
        // with the receipt, and the produce response must carry the time consumers will see.
        let log_append_time = rules.log_append_time.then(now_ms);
        if let Some(time) = log_append_time {
            for message in entries.iter_mut().flat_map(|e| e.messages.iter_mut()) {
                stamp_append_time(message, time as u64);
            }
        }
        let header = &batch.header;
        let idempotent = if header.producer_id >= 0 {
            let key = (header.producer_id, name.to_owned(), index);
            let producer_name = format!("kafka-{}", header.producer_id);
            let count = batch.records.len();
            let mut persisted = None;
            let verdict = loop {
                let verdict = self.sequences.accept(
                    key.clone(),
                    header.producer_epoch,
                    header.base_sequence,
                    count,
                    persisted,
                );
                if !matches!(verdict, Ok(Verdict::Unknown)) || persisted.is_some() {
                    break verdict;
                }
                // No state here (a restart, another instance served the producer, or it was
                // idle): the backend knows where its sequence ids got to, and so how often its
                // sequences wrapped.
                match self.backend.last_sequence(&topic, &producer_name).await {
                    Ok(last) => persisted = Some(last),
                    Err(e) => return Dispatched::Answered(Err(backend_error(e))),
                }
            };
            match verdict {
                // Not answered when asked with the backend's answer.
                Ok(Verdict::Unknown) => {
                    return Dispatched::Answered(Err(ResponseError::UnknownServerError))
                }
                Ok(Verdict::Repeat(offset)) => return Dispatched::Answered(Ok(offset)),
                Ok(Verdict::Write(sequence)) => {
                    set_dedup(&mut entries, &producer_name, sequence.dedup_sequence());
                    Some(IdempotentBatch {
                        sequence,
                        backend: self.backend.clone(),
                        topic: topic.clone(),
                        producer_name,
                    })
                }
                Err(e) => return Dispatched::Answered(Err(e)),
            }
        } else {
            None
        };
        let submitted = match txn {
            Some(txn) => {
                self.backend
                    .submit_in_transaction(txn, &topic, entries)
                    .await
            }
            None => self.backend.submit(&topic, entries).await,
        };
        match submitted {
            Ok(pending) => Dispatched::Written(
                outcome_of(&self.sequences, name.to_owned(), pending, idempotent),
                log_append_time,
            ),
            Err(e) => {
                let error = backend_error(e);
                if let Some(batch) = idempotent {
                    self.sequences.settle(batch.sequence, &Err(error));
                }
                Dispatched::Answered(Err(error))
            }
        }
    }

    /// The partition's one record batch, checked against the topic's `rules`.
    fn decode_batch(
        &self,
        name: &str,
        data: PartitionProduceData,
        transactional: bool,
        rules: &ProduceRules,
    ) -> Result<Batch, ResponseError> {
        let records = data.records.ok_or(ResponseError::InvalidRecord)?;
        // As a Kafka broker: the batch as sent (compressed) against `max.message.bytes`.
        if records.len() > rules.max_batch_bytes {
            tracing::debug!(
                topic = name,
                bytes = records.len(),
                max = rules.max_batch_bytes,
                "refused a batch over the topic's max.message.bytes"
            );
            return Err(ResponseError::MessageTooLarge);
        }
        let batches =
            record_batch::decode_all(records, self.config.max_frame_bytes).map_err(|e| {
                tracing::debug!(topic = name, error = %e, "refused record batch");
                match e {
                    BatchError::BadChecksum => ResponseError::CorruptMessage,
                    BatchError::UnsupportedMagic(_) => ResponseError::UnsupportedForMessageFormat,
                    _ => ResponseError::InvalidRecord,
                }
            })?;
        // Kafka accepts exactly one batch per partition in v3+ produce requests.
        let Ok([batch]) = <[Batch; 1]>::try_from(batches) else {
            return Err(ResponseError::InvalidRecord);
        };
        // Transactional batches come in transactional requests only; control batches (commit
        // and abort markers) are written by brokers, never by clients.
        if batch.records.is_empty()
            || batch.header.transactional != transactional
            || batch.header.control
        {
            return Err(ResponseError::InvalidRecord);
        }
        // As on Kafka: a compacted topic keeps one record per key, so each needs one.
        if rules.requires_keys && batch.records.iter().any(|r| r.key.is_none()) {
            tracing::debug!(
                topic = name,
                "refused a record without a key on a compacted topic"
            );
            return Err(ResponseError::InvalidRecord);
        }
        // As Kafka 4 by default (`message.timestamp.after.max.ms`); searches by time rely on it.
        // A LogAppendTime topic replaces the timestamps, so Kafka does not check them there.
        let latest = now_ms().saturating_add(crate::handlers::list_offsets::MAX_AHEAD_MS);
        if !rules.log_append_time && batch.records.iter().any(|r| r.timestamp > latest) {
            tracing::debug!(
                topic = name,
                "refused a batch with a timestamp over an hour ahead"
            );
            return Err(ResponseError::InvalidTimestamp);
        }
        Ok(batch)
    }

    /// Gives an idempotent producer an id. Ids are random 62-bit numbers, so instances of a fleet
    /// hand out distinct ids without coordinating. Transactional producers are served by
    /// `handle_init_transactional_producer`.
    pub(crate) fn handle_init_producer_id(
        &self,
        request: InitProducerIdRequest,
    ) -> InitProducerIdResponse {
        let mut response = InitProducerIdResponse::default();
        if request.producer_id.0 >= 0 && request.producer_epoch >= 0 {
            // KIP-360: a producer that lost track of its sequence asks for a bumped epoch.
            response.producer_id = request.producer_id;
            response.producer_epoch = request.producer_epoch.saturating_add(1);
        } else {
            response.producer_id = ProducerId(rand::random::<i64>() & ((1 << 62) - 1));
            response.producer_epoch = 0;
        }
        response
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::{Bytes, BytesMut};
    use gateway_core::{BackendError, Message};
    use kafka_protocol::messages::produce_request::TopicProduceData;
    use kafka_protocol::protocol::StrBytes;
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };
    use tokio::sync::oneshot;

    use super::*;
    use crate::config::KafkaConfig;

    fn embedded(dir: &tempfile::TempDir) -> BackendRef {
        gateway_embedded::EmbeddedBackend::open(dir.path()).unwrap()
    }

    fn idempotent(backend: &BackendRef, sequence: BatchSequence) -> IdempotentBatch {
        IdempotentBatch {
            sequence,
            backend: backend.clone(),
            topic: TopicName::new("public", "default", "t"),
            producer_name: "kafka-1".into(),
        }
    }

    /// Entries of producer `kafka-1` as the handler writes them, `counts[i]` messages each,
    /// their sequence ids following from `first`.
    fn entries(first: u64, counts: &[usize]) -> Vec<EntryToSend> {
        let mut entries: Vec<_> = counts
            .iter()
            .map(|&n| EntryToSend {
                messages: (0..n)
                    .map(|i| Message {
                        value: Some(Bytes::from(i.to_string())),
                        ..Default::default()
                    })
                    .collect(),
                dedup: None,
                coalesce: false,
            })
            .collect();
        set_dedup(&mut entries, "kafka-1", first);
        entries
    }

    /// Settles batch `(first, count)` of producer 1 on a fresh state, with `receipts` as the
    /// backend's answer, and returns the answer and what the state then says of a retry.
    async fn settle_with(
        backend: &BackendRef,
        first: i32,
        count: usize,
        persisted: u64,
        receipts: Vec<SendReceipt>,
    ) -> (Result<i64, ResponseError>, Option<i64>) {
        let sequences = Arc::new(Sequences::default());
        let key = (1, "t".to_owned(), 0);
        let Ok(Verdict::Write(batch)) =
            sequences.accept(key.clone(), 0, first, count, Some(Some(persisted)))
        else {
            panic!("a batch unknown here is written");
        };
        let pending: PendingSend = Box::pin(async move { Ok(receipts) });
        let outcome = outcome_of(
            &sequences,
            "t".into(),
            pending,
            Some(idempotent(backend, batch)),
        )
        .await;
        let retry = match sequences.accept(key, 0, first, count, None) {
            Ok(Verdict::Repeat(offset)) => Some(offset),
            _ => None,
        };
        (outcome, retry)
    }

    /// Deduplication drops a batch written before (its receipt was lost, or another instance
    /// wrote it): the answer is the offset it was written at, found by producer name and
    /// sequence id, and a later retry gets it from the sequence state. Before, the answer was
    /// DUPLICATE_SEQUENCE_NUMBER, which clients report as offset -1 (librdkafka: -1 + index).
    #[tokio::test]
    async fn a_deduplicated_batch_is_answered_with_its_original_offset() {
        let dir = tempfile::tempdir().unwrap();
        let backend = embedded(&dir);
        let t = TopicName::new("public", "default", "t");
        backend.create_topic(&t, 0).await.unwrap();
        let written = backend.send(&t, entries(0, &[3])).await.unwrap();
        let [SendReceipt::Persisted(original)] = written[..] else {
            panic!("written: {written:?}");
        };
        backend.send(&t, entries(3, &[1])).await.unwrap();
        let offset = offsets::to_offset(original).unwrap();

        let resent = backend.send(&t, entries(0, &[3])).await.unwrap();
        assert_eq!(resent, [SendReceipt::Duplicate]);
        let (answer, retry) = settle_with(&backend, 0, 3, 3, resent).await;
        assert_eq!(answer, Ok(offset));
        assert_eq!(retry, Some(offset), "recorded among the recent batches");

        // Not found (never written where it is looked for): DUPLICATE_SEQUENCE_NUMBER as before.
        let (answer, retry) = settle_with(&backend, 1, 2, 3, vec![SendReceipt::Duplicate]).await;
        assert_eq!(answer, Err(ResponseError::DuplicateSequenceNumber));
        assert_eq!(retry, None);
    }

    /// A batch of more than 4,096 records is several entries: its base offset is the first
    /// entry's, also when only the first was dropped as written before (the rest were lost
    /// and are written now, so their offsets do not follow; that is logged).
    #[tokio::test]
    async fn a_split_batch_written_before_is_answered_with_its_first_entrys_offset() {
        let dir = tempfile::tempdir().unwrap();
        let backend = embedded(&dir);
        let t = TopicName::new("public", "default", "t");
        backend.create_topic(&t, 0).await.unwrap();
        let counts = [MAX_BATCH_MESSAGES, 4];
        let written = backend.send(&t, entries(0, &counts)).await.unwrap();
        let [SendReceipt::Persisted(first), SendReceipt::Persisted(_)] = written[..] else {
            panic!("written: {written:?}");
        };
        let offset = offsets::to_offset(first).unwrap();
        let count = MAX_BATCH_MESSAGES + 4;
        let last = MAX_BATCH_MESSAGES as u64;

        let resent = backend.send(&t, entries(0, &counts)).await.unwrap();
        assert_eq!(resent, [SendReceipt::Duplicate, SendReceipt::Duplicate]);
        assert_eq!(
            settle_with(&backend, 0, count, last, resent).await,
            (Ok(offset), Some(offset))
        );

        let later = MessageId {
            entry: first.entry + 7,
            ..first
        };
        let partly = vec![SendReceipt::Duplicate, SendReceipt::Persisted(later)];
        assert_eq!(
            settle_with(&backend, 0, count, last, partly).await,
            (Ok(offset), Some(offset))
        );
    }

    /// An idempotent producer's batch of `count` records at `sequence`, to partition 0 of `t`.
    fn produce_request(producer_id: i64, sequence: i32, count: usize) -> ProduceRequest {
        let records: Vec<Record> = (0..count)
            .map(|i| Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id,
                producer_epoch: 0,
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                sequence: sequence + i as i32,
                timestamp: 1_700_000_000_000,
                key: None,
                value: Some(Bytes::from(format!("v{i}"))),
                headers: Default::default(),
            })
            .collect();
        let mut buf = BytesMut::new();
        let options = RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        };
        RecordBatchEncoder::encode(&mut buf, &records, &options).unwrap();
        let mut partition = PartitionProduceData::default();
        partition.index = 0;
        partition.records = Some(buf.freeze());
        let mut data = TopicProduceData::default();
        data.name = kafka_protocol::messages::TopicName(StrBytes::from_static_str("t"));
        data.partition_data = vec![partition];
        let mut request = ProduceRequest::default();
        request.acks = -1;
        request.timeout_ms = 10_000;
        request.topic_data = vec![data];
        request
    }

    async fn produce(frontend: &Arc<KafkaFrontend>, request: ProduceRequest) -> (i16, i64) {
        let response = frontend.dispatch_produce(request).await.await.unwrap();
        let p = &response.responses[0].partition_responses[0];
        (p.error_code, p.base_offset)
    }

    /// A batch resent to an instance that has no sequence state for its producer (a restart,
    /// or the producer moved to another instance after losing its connection): the answer is
    /// the first send's offset, for a batch of one entry and for one split into two.
    #[tokio::test]
    async fn a_resend_to_a_fresh_instance_gets_the_first_sends_offset() {
        let dir = tempfile::tempdir().unwrap();
        let backend = embedded(&dir);
        backend
            .create_topic(&TopicName::new("public", "default", "t"), 0)
            .await
            .unwrap();
        let first = KafkaFrontend::new(KafkaConfig::default(), backend.clone());
        let batches = [(0, 3), (3, MAX_BATCH_MESSAGES + 10)];
        let mut answers = Vec::new();
        for (sequence, count) in batches {
            let (error, offset) = produce(&first, produce_request(7, sequence, count)).await;
            assert_eq!(error, 0);
            answers.push(offset);
        }
        for (i, (sequence, count)) in batches.into_iter().enumerate() {
            let fresh = KafkaFrontend::new(KafkaConfig::default(), backend.clone());
            let resent = produce(&fresh, produce_request(7, sequence, count)).await;
            assert_eq!(resent, (0, answers[i]), "batch at {sequence}");
            // Recorded: a second retry is answered from the state.
            let again = produce(&fresh, produce_request(7, sequence, count)).await;
            assert_eq!(again, (0, answers[i]), "batch at {sequence}, again");
        }
    }

    /// The client's connection drops while its batch is being written: the response future is
    /// dropped, and the write then succeeds. The client resends the batch on a new connection and
    /// must get its offset back, not OUT_OF_ORDER_SEQUENCE_NUMBER (the batch left in flight).
    #[tokio::test]
    async fn a_batch_settles_when_its_response_is_dropped() {
        let sequences = Arc::new(Sequences::default());
        let key = (1, "t".to_owned(), 0);
        let Ok(Verdict::Write(batch)) = sequences.accept(key.clone(), 0, 0, 10, Some(None)) else {
            panic!("a new producer's first batch is written");
        };
        let (persist, persisted) = oneshot::channel();
        let pending: PendingSend =
            Box::pin(async move { persisted.await.map_err(|_| BackendError::Closed)? });
        let dir = tempfile::tempdir().unwrap();
        let backend = embedded(&dir);
        drop(outcome_of(
            &sequences,
            "t".into(),
            pending,
            Some(idempotent(&backend, batch)),
        ));
        let id = MessageId {
            ledger: 3,
            entry: 7,
            batch_index: 0,
        };
        // The backend persists it whether or not anyone still awaits the receipt.
        let _ = persist.send(Ok(vec![SendReceipt::Persisted(id)]));
        let offset = offsets::to_offset(id).unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            match sequences.accept(key.clone(), 0, 0, 10, None) {
                Ok(Verdict::Repeat(o)) => {
                    assert_eq!(o, offset);
                    break;
                }
                Ok(Verdict::Write(_)) => panic!("the persisted batch would be written again"),
                Ok(Verdict::Unknown) => panic!("the producer's state was dropped"),
                Err(e) => assert!(
                    tokio::time::Instant::now() < deadline,
                    "the resend is still refused: {e:?}"
                ),
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[test]
    fn entries_of_a_batch_get_consecutive_dedup_sequences() {
        let records = (0..MAX_BATCH_MESSAGES + 2)
            .map(|i| crate::record_batch::Record {
                offset_delta: i as i32,
                timestamp: 0,
                key: None,
                value: Some(bytes::Bytes::from(i.to_string())),
                headers: Vec::new(),
            })
            .collect::<Vec<_>>();
        let batch = Batch {
            header: crate::record_batch::BatchHeader {
                base_offset: 0,
                codec: crate::record_batch::Codec::None,
                transactional: false,
                control: false,
                log_append_time: false,
                base_timestamp: 0,
                max_timestamp: 0,
                producer_id: 9,
                producer_epoch: 0,
                base_sequence: i32::MAX,
                record_count: records.len() as i32,
            },
            records,
        };
        let first = (1u64 << 31) - 1;
        let entries = batch_to_entries(&batch, Some(("kafka-9", first))).unwrap();
        let dedup: Vec<_> = entries.iter().map(|e| e.dedup.clone().unwrap()).collect();
        assert_eq!(
            dedup,
            [
                ("kafka-9".to_owned(), first),
                ("kafka-9".to_owned(), first + MAX_BATCH_MESSAGES as u64)
            ]
        );
    }
}
