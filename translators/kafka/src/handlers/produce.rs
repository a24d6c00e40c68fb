//! Produce (key 0) and InitProducerId (key 22).
//!
//! One Kafka record batch becomes Pulsar entries of at most 4096 messages (the batch index has 12
//! bits in offset encoding v1), appended in one backend call so their entry ids are consecutive
//! and the records' offsets are contiguous, as the producer assumes (`base_offset + i`). A response
//! is sent only after the backend has persisted the entries.

use std::collections::VecDeque;

use gateway_core::backend::SendReceipt;
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

/// How many recent batches per partition an idempotent producer may retry and get the original
/// offset back (Kafka keeps five, matching `max.in.flight.requests.per.connection` <= 5).
const RECENT_BATCHES: usize = 5;

/// What the gateway remembers of an idempotent producer on one partition.
#[derive(Debug, Clone)]
pub struct SequenceState {
    epoch: i16,
    last_sequence: i32,
    /// (first sequence, base offset) of recent batches.
    recent: VecDeque<(i32, i64)>,
}

/// Splits a Kafka batch into Pulsar entries of at most 4096 messages each.
pub fn batch_to_entries(
    batch: &Batch,
    producer: Option<&str>,
) -> Result<Vec<EntryToSend>, &'static str> {
    let mut entries = Vec::with_capacity(batch.records.len().div_ceil(MAX_BATCH_MESSAGES));
    for (chunk_index, chunk) in batch.records.chunks(MAX_BATCH_MESSAGES).enumerate() {
        let messages = chunk
            .iter()
            .map(record_to_message)
            .collect::<Result<Vec<_>, _>>()?;
        // Pulsar deduplication needs a growing sequence id per producer name: the epoch in the
        // high bits, then the Kafka sequence of the chunk's first record.
        let dedup = producer.map(|name| {
            let sequence =
                batch.header.base_sequence as u64 + (chunk_index * MAX_BATCH_MESSAGES) as u64;
            (
                name.to_owned(),
                ((batch.header.producer_epoch as u16 as u64) << 32) | sequence,
            )
        });
        entries.push(EntryToSend { messages, dedup });
    }
    Ok(entries)
}

impl KafkaFrontend {
    /// `None` for acks=0, which gets no response at all.
    pub(crate) async fn handle_produce(&self, request: ProduceRequest) -> Option<ProduceResponse> {
        if request.transactional_id.is_some() {
            tracing::debug!("transactional produce refused: transactions are not supported");
        }
        let transactional = request.transactional_id.is_some();
        let mut response = ProduceResponse::default();
        for topic in request.topic_data {
            let name = topic.name.0.to_string();
            let partitions = futures::future::join_all(
                topic
                    .partition_data
                    .into_iter()
                    .map(|p| self.produce_partition(&name, p, transactional)),
            )
            .await;
            let mut t = TopicProduceResponse::default();
            t.name = topic.name;
            t.partition_responses = partitions;
            response.responses.push(t);
        }
        (request.acks != 0).then_some(response)
    }

    async fn produce_partition(
        &self,
        name: &str,
        data: PartitionProduceData,
        transactional: bool,
    ) -> PartitionProduceResponse {
        let mut response = PartitionProduceResponse::default();
        response.index = data.index;
        response.base_offset = -1;
        response.log_append_time_ms = -1;
        response.log_start_offset = -1;
        if let Err(error) = self
            .try_produce(name, data, transactional)
            .await
            .map(|o| response.base_offset = o)
        {
            response.error_code = error.code();
            metrics::counter!("kafka_produce_errors_total", "error" => format!("{error:?}"))
                .increment(1);
        }
        response
    }

    async fn try_produce(
        &self,
        name: &str,
        data: PartitionProduceData,
        transactional: bool,
    ) -> Result<i64, ResponseError> {
        if transactional {
            return Err(ResponseError::TransactionalIdAuthorizationFailed);
        }
        let topic = self.partition_topic(name, data.index).await?;
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
        let [batch] = batches.as_slice() else {
            return Err(ResponseError::InvalidRecord);
        };
        if batch.records.is_empty() || batch.header.transactional || batch.header.control {
            return Err(ResponseError::InvalidRecord);
        }
        let header = &batch.header;
        let idempotent = header.producer_id >= 0;
        let key = (header.producer_id, name.to_owned(), data.index);
        if idempotent {
            if let Some(known) = self.check_sequence(&key, batch)? {
                return Ok(known);
            }
        }
        let producer_name = idempotent.then(|| format!("kafka-{}", header.producer_id));
        let entries = batch_to_entries(batch, producer_name.as_deref()).map_err(|e| {
            tracing::debug!(topic = name, error = e, "refused record");
            ResponseError::InvalidRecord
        })?;
        let receipts = self
            .backend
            .send(&topic, entries)
            .await
            .map_err(backend_error)?;
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
            tracing::error!(topic = name, "entries of one batch are not consecutive; record offsets after the first entry differ from base_offset + i");
        }
        let base_offset = offsets::entry_offset(*first).map_err(|e| {
            tracing::error!(error = %e, "offset out of range");
            ResponseError::UnknownServerError
        })?;
        if idempotent {
            self.remember_sequence(key, batch, base_offset);
        }
        Ok(base_offset)
    }

    /// `Some(offset)` when the batch repeats a recent one (a retry), `None` when it is next in
    /// sequence, an error when it is out of order or from an old epoch.
    fn check_sequence(
        &self,
        key: &(i64, String, i32),
        batch: &Batch,
    ) -> Result<Option<i64>, ResponseError> {
        let Some(state) = self.sequences.get(key) else {
            // Unknown here (new producer, or state lost with a restart): accept and learn it.
            return Ok(None);
        };
        let (epoch, sequence) = (batch.header.producer_epoch, batch.header.base_sequence);
        if epoch < state.epoch {
            return Err(ResponseError::InvalidProducerEpoch);
        }
        if epoch > state.epoch {
            return if sequence == 0 {
                Ok(None)
            } else {
                Err(ResponseError::OutOfOrderSequenceNumber)
            };
        }
        if let Some((_, offset)) = state.recent.iter().find(|(first, _)| *first == sequence) {
            return Ok(Some(*offset));
        }
        let expected = if state.last_sequence == i32::MAX {
            0
        } else {
            state.last_sequence + 1
        };
        if sequence != expected {
            return Err(ResponseError::OutOfOrderSequenceNumber);
        }
        Ok(None)
    }

    fn remember_sequence(&self, key: (i64, String, i32), batch: &Batch, base_offset: i64) {
        let first = batch.header.base_sequence;
        let last = first.wrapping_add(batch.records.len() as i32 - 1);
        let last = if last < 0 { last - i32::MIN } else { last };
        let mut state = self.sequences.entry(key).or_insert_with(|| SequenceState {
            epoch: batch.header.producer_epoch,
            last_sequence: last,
            recent: VecDeque::new(),
        });
        if state.epoch != batch.header.producer_epoch {
            state.epoch = batch.header.producer_epoch;
            state.recent.clear();
        }
        state.last_sequence = last;
        state.recent.push_back((first, base_offset));
        if state.recent.len() > RECENT_BATCHES {
            state.recent.pop_front();
        }
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
