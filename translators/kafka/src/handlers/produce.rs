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

use std::sync::Arc;

use futures::future::{join_all, BoxFuture, FutureExt};
use gateway_core::backend::{PendingSend, SendReceipt};
use gateway_core::EntryToSend;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::produce_request::PartitionProduceData;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{
    InitProducerIdRequest, InitProducerIdResponse, ProduceRequest, ProduceResponse, ProducerId,
};

use crate::frontend::{backend_error, KafkaFrontend};
use crate::mapping::record_to_message;
use crate::offsets::{self, MAX_BATCH_MESSAGES};
use crate::record_batch::{self, Batch, BatchError};
use crate::sequences::{BatchSequence, Sequences, Verdict};

/// One partition of a produce request after dispatch.
enum Dispatched {
    /// Answered without a write: an error, or the original offset of a retried batch.
    Answered(Result<i64, ResponseError>),
    /// Handed to the backend: its outcome once persisted (see `outcome_of`).
    Written(BoxFuture<'static, Result<i64, ResponseError>>),
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
/// flight would make the client's resend (on a new connection) out of order forever.
fn outcome_of(
    sequences: &Arc<Sequences>,
    topic: String,
    pending: PendingSend,
    sequence: Option<BatchSequence>,
) -> BoxFuture<'static, Result<i64, ResponseError>> {
    let Some(sequence) = sequence else {
        return Box::pin(async move { base_offset_of(&topic, pending.await) });
    };
    let sequences = sequences.clone();
    let settled = tokio::spawn(async move {
        let outcome = base_offset_of(&topic, pending.await);
        sequences.settle(sequence, &outcome);
        outcome
    });
    // Dropping a JoinHandle leaves the task running.
    settled
        .map(|joined| joined.unwrap_or(Err(ResponseError::UnknownServerError)))
        .boxed()
}

/// The Kafka base offset of a written batch, from its entries' receipts.
fn base_offset_of(
    topic: &str,
    receipts: gateway_core::Result<Vec<SendReceipt>>,
) -> Result<i64, ResponseError> {
    let receipts = receipts.map_err(backend_error)?;
    let persisted: Vec<_> = receipts
        .iter()
        .filter_map(|r| match r {
            SendReceipt::Persisted(id) => Some(*id),
            SendReceipt::Duplicate => None,
        })
        .collect();
    let Some(first) = persisted.first() else {
        // Pulsar deduplication dropped it: written before, and its offset is not known here.
        return Err(ResponseError::DuplicateSequenceNumber);
    };
    let contiguous = persisted
        .windows(2)
        .all(|w| w[1].ledger == w[0].ledger && w[1].entry == w[0].entry + 1);
    if !contiguous || persisted.len() != receipts.len() {
        metrics::counter!("kafka_produce_noncontiguous_total").increment(1);
        tracing::error!(topic, "entries of one batch are not consecutive; record offsets after the first entry differ from base_offset + i");
    }
    offsets::entry_offset(*first).map_err(|e| {
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
        if request.transactional_id.is_some() {
            tracing::debug!("transactional produce refused: transactions are not supported");
        }
        let transactional = request.transactional_id.is_some();
        let mut topics = Vec::with_capacity(request.topic_data.len());
        for topic in request.topic_data {
            let name = topic.name.0.to_string();
            let partitions = join_all(topic.partition_data.into_iter().map(|p| async {
                let index = p.index;
                (
                    index,
                    self.dispatch_partition(&name, p, transactional).await,
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
        let outcome = match dispatched {
            Dispatched::Answered(outcome) => outcome,
            Dispatched::Written(outcome) => outcome.await,
        };
        match outcome {
            Ok(offset) => response.base_offset = offset,
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
        transactional: bool,
    ) -> Dispatched {
        if transactional {
            return Dispatched::Answered(Err(ResponseError::TransactionalIdAuthorizationFailed));
        }
        let topic = match self.partition_topic(name, data.index).await {
            Ok(topic) => topic,
            Err(e) => return Dispatched::Answered(Err(e)),
        };
        let index = data.index;
        let batch = match self.decode_batch(name, data) {
            Ok(batch) => batch,
            Err(e) => return Dispatched::Answered(Err(e)),
        };
        let mut entries = match batch_to_entries(&batch, None) {
            Ok(entries) => entries,
            Err(e) => {
                tracing::debug!(topic = name, error = e, "refused record");
                return Dispatched::Answered(Err(ResponseError::InvalidRecord));
            }
        };
        let header = &batch.header;
        let sequence = if header.producer_id >= 0 {
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
                    Some(sequence)
                }
                Err(e) => return Dispatched::Answered(Err(e)),
            }
        } else {
            None
        };
        match self.backend.submit(&topic, entries).await {
            Ok(pending) => Dispatched::Written(outcome_of(
                &self.sequences,
                name.to_owned(),
                pending,
                sequence,
            )),
            Err(e) => {
                let error = backend_error(e);
                if let Some(sequence) = sequence {
                    self.sequences.settle(sequence, &Err(error));
                }
                Dispatched::Answered(Err(error))
            }
        }
    }

    /// The partition's one record batch, checked.
    fn decode_batch(&self, name: &str, data: PartitionProduceData) -> Result<Batch, ResponseError> {
        let records = data.records.ok_or(ResponseError::InvalidRecord)?;
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
        if batch.records.is_empty() || batch.header.transactional || batch.header.control {
            return Err(ResponseError::InvalidRecord);
        }
        Ok(batch)
    }

    /// Gives an idempotent producer an id. Ids are random 62-bit numbers, so instances of a fleet
    /// hand out distinct ids without coordinating. Transactions are not supported yet.
    pub(crate) fn handle_init_producer_id(
        &self,
        request: InitProducerIdRequest,
    ) -> InitProducerIdResponse {
        let mut response = InitProducerIdResponse::default();
        if request.transactional_id.is_some() {
            response.error_code = ResponseError::TransactionalIdAuthorizationFailed.code();
            response.producer_id = ProducerId(-1);
            response.producer_epoch = -1;
            return response;
        }
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use gateway_core::{BackendError, EntryId};
    use tokio::sync::oneshot;

    use super::*;

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
        drop(outcome_of(&sequences, "t".into(), pending, Some(batch)));
        let id = EntryId {
            ledger: 3,
            entry: 7,
        };
        // The backend persists it whether or not anyone still awaits the receipt.
        let _ = persist.send(Ok(vec![SendReceipt::Persisted(id)]));
        let offset = offsets::entry_offset(id).unwrap();
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
