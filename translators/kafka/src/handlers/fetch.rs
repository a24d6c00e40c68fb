//! Fetch (key 1).
//!
//! Each (connection, partition) keeps a reader positioned at the offset the client will ask for
//! next, so sequential fetches stream without re-seeking; the cache is capped per connection and
//! per instance (`crate::readers`). What a reader may hold ahead of the fetches is bounded in
//! bytes by what they ask for of its partition (`Reader::set_prefetch_bytes`).
//!
//! The records a fetch gathers count against the gateway's in-flight budget
//! (`gateway_core::budget`) until the response is written: each read first gets credit for what
//! it may add. A fetch that holds no credit yet waits for some, at most until its `max_wait_ms`
//! (then it answers with nothing, as a long poll that found no data); one that holds some takes
//! only what is free at once and otherwise answers with what it has, so fetches never wait for
//! each other while holding credit.
//! A fetch honours the total `max_bytes` and each `partition_max_bytes` (always returning at least
//! one entry so a consumer can progress), and long-polls until `min_bytes` arrived or
//! `max_wait_ms` passed.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use futures::stream::{FuturesUnordered, StreamExt};
use gateway_core::budget::Credit;
use gateway_core::{EntryId, Reader, StoredEntry, TopicName};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{FetchRequest, FetchResponse};
use tokio::sync::watch;

use crate::frontend::{backend_error, KafkaFrontend};
use crate::mapping::{has_append_time, message_to_record};
use crate::offsets::{self, entry_offset, to_message_id};
use crate::readers::{CachedReader, ReaderCache};
use crate::record_batch;
use crate::topic_state::base_of;

/// Readers one connection may keep open; beyond it the least recently used is closed.
pub const READERS_PER_CONNECTION: usize = 256;
/// The least a reader may prefetch, whatever a fetch asks of its partition.
const MIN_PREFETCH: usize = 64 << 10;
/// The most a reader may prefetch, whatever a fetch asks of its partition.
const MAX_PREFETCH: usize = 16 << 20;
/// Longest long-poll honoured, whatever the client asks.
const MAX_WAIT_CAP: Duration = Duration::from_secs(30);
/// Entries per read call.
const READ_ENTRIES: usize = 256;
/// How long a fetch reuses a partition's watermarks. On Pulsar each lookup is an admin REST
/// call, too slow for every fetch of every partition. A fetch only reports them (for lag) and
/// checks the offset against them; the high watermark only grows, so an offset at or below a
/// cached one is valid, and one above it is checked against fresh values before being refused.
pub(crate) const WATERMARK_TTL: Duration = Duration::from_secs(1);

/// Per-connection fetch state: its readers live in the instance's cache under its id, and are
/// closed with it.
pub struct FetchState {
    readers: Arc<ReaderCache>,
    connection: u64,
}

impl FetchState {
    pub fn new(readers: Arc<ReaderCache>) -> FetchState {
        let connection = readers.connection();
        FetchState {
            readers,
            connection,
        }
    }
}

impl Drop for FetchState {
    fn drop(&mut self) {
        self.readers.close_connection(self.connection);
    }
}

/// One requested partition while a fetch is assembled.
struct PartitionFetch {
    name: String,
    partition: i32,
    topic: Option<TopicName>,
    error: Option<ResponseError>,
    offset: i64,
    budget: usize,
    /// What the partition's reader may hold ahead of fetches (see `prefetch_bytes`).
    prefetch: usize,
    high_watermark: i64,
    log_start: i64,
    records: BytesMut,
}

/// Encodes entries as Kafka batches, skipping messages before `from_offset`. Returns the offset
/// after the last record written. A message's offset is its entry's plus its batch index, so the
/// messages a compacted view left out are gaps, as in a compacted Kafka log.
///
/// An entry is one batch, except where its messages were stamped with different append times:
/// the backend may store the batches of several produce requests as one entry, and a
/// LogAppendTime batch gives all its records one time, so each time gets a batch of its own.
pub fn encode_entries(
    out: &mut BytesMut,
    entries: &[StoredEntry],
    from_offset: i64,
) -> Result<Option<i64>, offsets::OffsetOutOfRange> {
    let mut next = None;
    let mut records = Vec::new();
    for entry in entries {
        // (offset of the run's first record, its append time if stamped)
        let mut run: Option<(i64, Option<Option<u64>>)> = None;
        for (index, message) in entry.indexed_messages() {
            let offset = offsets::to_offset(entry.id.message(index))?;
            if offset < from_offset {
                continue;
            }
            let stamped = has_append_time(message).then_some(message.event_time);
            if let Some((first, time)) = run {
                if time != stamped {
                    next = Some(flush_run(out, first, &mut records, time.is_some()));
                    run = None;
                }
            }
            let (first, _) = *run.get_or_insert((offset, stamped));
            records.push(message_to_record(
                message,
                (offset - first) as i32,
                entry.publish_time,
            ));
        }
        if let Some((first, time)) = run {
            next = Some(flush_run(out, first, &mut records, time.is_some()));
        }
    }
    Ok(next)
}

/// Encodes `records` as one batch at `first` and empties them; returns the offset after it.
fn flush_run(
    out: &mut BytesMut,
    first: i64,
    records: &mut Vec<record_batch::Record>,
    log_append_time: bool,
) -> i64 {
    record_batch::encode_with(out, first, records, log_append_time);
    let last = records.last().map_or(0, |r| r.offset_delta as i64);
    records.clear();
    first + last + 1
}

impl KafkaFrontend {
    pub(crate) async fn handle_fetch(
        &self,
        state: &mut FetchState,
        request: FetchRequest,
    ) -> (FetchResponse, Credit) {
        let wait = Duration::from_millis(request.max_wait_ms.max(0) as u64).min(MAX_WAIT_CAP);
        let deadline = tokio::time::Instant::now() + wait;
        let min_bytes = request.min_bytes.max(0) as usize;
        let mut total_budget = if request.max_bytes > 0 {
            request.max_bytes as usize
        } else {
            usize::MAX
        };
        let request_max = total_budget;

        let mut parts = Vec::new();
        let mut shape: Vec<(kafka_protocol::messages::TopicName, usize)> = Vec::new();
        for topic in request.topics {
            let name = topic.topic.0.to_string();
            shape.push((topic.topic.clone(), topic.partitions.len()));
            for p in topic.partitions {
                parts.push(
                    self.prepare_partition(
                        &name,
                        p.partition,
                        p.fetch_offset,
                        p.partition_max_bytes,
                        request_max,
                    )
                    .await,
                );
            }
        }

        let mut gathered = 0usize;
        let mut credit = self.config.budget.none();
        'gather: loop {
            for part in parts.iter_mut().filter(|p| p.error.is_none()) {
                if total_budget == 0 || part.budget == 0 {
                    continue;
                }
                let want = part.budget.min(total_budget);
                let Some(reserved) = self.reserve(&credit, want, deadline).await else {
                    metrics::counter!("kafka_fetch_budget_exhausted_total").increment(1);
                    break 'gather;
                };
                gathered += self
                    .read_partition(state, part, &mut total_budget, reserved, &mut credit)
                    .await;
            }
            let now = tokio::time::Instant::now();
            if gathered >= min_bytes.max(1)
                || now >= deadline
                || parts.iter().all(|p| p.error.is_some())
            {
                break;
            }
            // Nothing (or not enough) yet: wait until any partition has new data.
            match self
                .wait_for_data(state, &mut parts, deadline, &mut total_budget)
                .await
            {
                Some(added) => {
                    gathered += added;
                    // Counted as it came (the waits hold no credit): what is free of it.
                    credit.merge(self.config.budget.take_available(added));
                }
                None => break, // no partition can take more data
            }
            if tokio::time::Instant::now() >= deadline {
                break;
            }
        }

        self.remember_watermarks(&parts);
        tracing::debug!(
            partitions = parts.len(),
            errors = ?parts.iter().filter_map(|p| p.error).collect::<Vec<_>>(),
            bytes = gathered,
            waited_ms = (wait.saturating_sub(deadline.saturating_duration_since(tokio::time::Instant::now()))).as_millis() as u64,
            max_wait_ms = wait.as_millis() as u64,
            "fetch answered"
        );
        let mut response = FetchResponse::default();
        let mut parts = parts.into_iter();
        for (topic_name, count) in shape {
            let mut topic = FetchableTopicResponse::default();
            topic.topic = topic_name;
            for part in parts.by_ref().take(count) {
                let mut data = PartitionData::default();
                data.partition_index = part.partition;
                data.error_code = part.error.map_or(0, partition_error_code);
                data.high_watermark = part.high_watermark;
                data.last_stable_offset = part.high_watermark;
                data.log_start_offset = part.log_start;
                data.aborted_transactions = None;
                data.records = Some(part.records.freeze());
                topic.partitions.push(data);
            }
            response.responses.push(topic);
        }
        (response, credit)
    }

    /// Credit for a read of up to `want` bytes (see the module documentation); `None` when
    /// there is none to be had.
    async fn reserve(
        &self,
        held: &Credit,
        want: usize,
        deadline: tokio::time::Instant,
    ) -> Option<Credit> {
        let budget = &self.config.budget;
        if held.bytes() > 0 {
            let some = budget.take_available(want);
            return (some.bytes() > 0).then_some(some);
        }
        tokio::time::timeout_at(deadline, budget.acquire(want))
            .await
            .ok()
    }

    async fn prepare_partition(
        &self,
        name: &str,
        partition: i32,
        offset: i64,
        max_bytes: i32,
        request_max: usize,
    ) -> PartitionFetch {
        let budget = max_bytes.max(0) as usize;
        let mut part = PartitionFetch {
            name: name.to_owned(),
            partition,
            topic: None,
            error: None,
            offset,
            budget,
            prefetch: prefetch_bytes(budget, request_max),
            high_watermark: -1,
            log_start: -1,
            records: BytesMut::new(),
        };
        let result = async {
            let topic = self.partition_topic(name, partition).await?;
            let (high_watermark, log_start) = self.fetch_watermarks(&topic, offset).await?;
            Ok::<_, ResponseError>((topic, high_watermark, log_start))
        }
        .await;
        match result {
            Ok((topic, high_watermark, log_start)) => {
                part.topic = Some(topic);
                part.high_watermark = high_watermark;
                part.log_start = log_start;
                // Offsets below the log start are served from the start: offsets have gaps, and
                // a consumer positioned on an empty topic must not be reset when data arrives.
                // Below a start that DeleteRecords moved, they are out of range, as on Kafka.
                let out_of_range = offset > high_watermark
                    || offset < 0
                    || (offset < log_start
                        && offset
                            < self
                                .deleted_before(part.topic.as_ref().expect("set above"))
                                .await);
                if out_of_range {
                    part.error = Some(ResponseError::OffsetOutOfRange);
                }
            }
            Err(e) => part.error = Some(e),
        }
        part
    }

    /// Watermarks for a fetch at `offset`: cached ones while they are fresh and cover the offset.
    async fn fetch_watermarks(
        &self,
        topic: &TopicName,
        offset: i64,
    ) -> Result<(i64, i64), ResponseError> {
        let key = topic.to_string();
        if let Some((high_watermark, log_start)) = self.watermark_cache.get(&key) {
            if offset <= high_watermark {
                return Ok((high_watermark, log_start));
            }
        }
        metrics::counter!("kafka_fetch_watermark_lookups_total").increment(1);
        let fresh = self.watermarks(topic).await?;
        self.watermark_cache.put(key, fresh);
        Ok(fresh)
    }

    /// Raises the cached high watermarks to what this fetch read, so that the next fetch of a
    /// consumer that keeps up with its producers finds its offset covered and asks Pulsar again
    /// only when the cache expires, not after every read that found new data. The cache keeps its
    /// age: the watermarks reported for lag are never staler than `WATERMARK_TTL`.
    fn remember_watermarks(&self, parts: &[PartitionFetch]) {
        for part in parts.iter().filter(|p| p.error.is_none()) {
            if let Some(topic) = &part.topic {
                self.watermark_cache
                    .update_fresh(&topic.to_string(), |(high_watermark, _)| {
                        *high_watermark = (*high_watermark).max(part.high_watermark)
                    });
            }
        }
    }

    /// (high watermark, log start offset) of a concrete topic.
    pub(crate) async fn watermarks(&self, topic: &TopicName) -> Result<(i64, i64), ResponseError> {
        let last = self
            .backend
            .last_message_id(topic)
            .await
            .map_err(backend_error)?;
        let high_watermark = match last {
            Some(id) => offsets::to_offset(id).map_err(|_| ResponseError::UnknownServerError)? + 1,
            None => 0,
        };
        let first = self
            .backend
            .first_entry_id(topic)
            .await
            .map_err(backend_error)?;
        let log_start = match first {
            Some(id) => entry_offset(id).map_err(|_| ResponseError::UnknownServerError)?,
            None => high_watermark,
        };
        // DeleteRecords moves the start on; it never passes the high watermark.
        let deleted_before = self.deleted_before(topic).await;
        Ok((
            high_watermark,
            log_start.max(deleted_before.min(high_watermark)),
        ))
    }

    /// Takes this partition's cached reader, or opens one at the requested offset.
    async fn take_reader(
        &self,
        state: &mut FetchState,
        part: &PartitionFetch,
    ) -> Result<Box<dyn Reader>, ResponseError> {
        let mut reader = match state
            .readers
            .take(state.connection, &part.name, part.partition)
        {
            Some(cached) if cached.next_offset == part.offset => cached.reader,
            Some(cached) => {
                tracing::debug!(
                    topic = part.name,
                    partition = part.partition,
                    offset = part.offset,
                    cached = cached.next_offset,
                    "fetch offset differs from the cached reader's; seeking"
                );
                let mut reader = cached.reader;
                reader
                    .seek(start_entry(part.offset))
                    .await
                    .map_err(backend_error)?;
                reader
            }
            None => {
                let topic = part
                    .topic
                    .as_ref()
                    .ok_or(ResponseError::UnknownTopicOrPartition)?;
                metrics::counter!("kafka_fetch_readers_opened_total").increment(1);
                tracing::debug!(
                    topic = part.name,
                    partition = part.partition,
                    offset = part.offset,
                    "opening a reader"
                );
                // As on Kafka, a compacted topic is read compacted: one value per key as far
                // as compaction has run (at the keys' original offsets), then everything after.
                let start = start_entry(part.offset);
                let opened = if self.topic_state(&base_of(topic).0).await.compacted {
                    self.backend.open_compacted_reader(topic, start).await
                } else {
                    self.backend.open_reader(topic, start).await
                };
                opened.map_err(backend_error)?
            }
        };
        reader.set_prefetch_bytes(part.prefetch);
        Ok(reader)
    }

    /// Caches the partition's reader, positioned at the partition's next offset.
    fn put_reader(&self, state: &mut FetchState, part: &PartitionFetch, reader: Box<dyn Reader>) {
        state.readers.put(
            state.connection,
            part.name.clone(),
            part.partition,
            CachedReader {
                reader,
                next_offset: part.offset,
            },
        );
    }

    /// Reads what the partition has now, up to the bytes `reserved` allows, and adds what it
    /// keeps of that credit to `credit`; returns the bytes added.
    async fn read_partition(
        &self,
        state: &mut FetchState,
        part: &mut PartitionFetch,
        total_budget: &mut usize,
        mut reserved: Credit,
        credit: &mut Credit,
    ) -> usize {
        let mut reader = match self.take_reader(state, part).await {
            Ok(r) => r,
            Err(e) => {
                part.error = Some(e);
                return 0;
            }
        };
        let budget = part.budget.min(*total_budget).min(reserved.bytes());
        let added = match reader.read(READ_ENTRIES, budget, Duration::ZERO).await {
            Ok(entries) => self.append(part, &entries, total_budget),
            Err(e) => {
                part.error = Some(backend_error(e));
                0
            }
        };
        self.put_reader(state, part, reader);
        let reserved_bytes = reserved.bytes();
        if added < reserved_bytes {
            reserved.release(reserved_bytes - added);
        } else if added > reserved_bytes {
            // At least one entry is returned, whatever its size: count what is free of it.
            reserved.merge(self.config.budget.take_available(added - reserved_bytes));
        }
        credit.merge(reserved);
        added
    }

    /// Encodes entries into the partition's records and advances its offset; returns the bytes
    /// added.
    fn append(
        &self,
        part: &mut PartitionFetch,
        entries: &[StoredEntry],
        total_budget: &mut usize,
    ) -> usize {
        let before = part.records.len();
        match encode_entries(&mut part.records, entries, part.offset) {
            Ok(Some(next)) => part.offset = next,
            Ok(None) => {}
            Err(e) => {
                tracing::error!(error = %e, "cannot express offset");
                part.error = Some(ResponseError::UnknownServerError);
            }
        }
        if let Some(last) = entries.last() {
            if let Ok(high) = offsets::to_offset(
                last.id
                    .message(last.batch_index(last.messages.len().saturating_sub(1))),
            ) {
                part.high_watermark = part.high_watermark.max(high + 1);
            }
        }
        let added = part.records.len() - before;
        part.budget = part.budget.saturating_sub(added);
        *total_budget = total_budget.saturating_sub(added);
        added
    }

    /// Waits until any partition yields data or the deadline passes; returns the bytes added, or
    /// `None` when no partition has budget left to wait for.
    async fn wait_for_data(
        &self,
        state: &mut FetchState,
        parts: &mut [PartitionFetch],
        deadline: tokio::time::Instant,
        total_budget: &mut usize,
    ) -> Option<usize> {
        if *total_budget == 0 {
            return None;
        }
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        // A watch, not a Notify: a waiter polled after the first result still sees the stop.
        let (stop, stopped) = watch::channel(false);
        let mut waiting = FuturesUnordered::new();
        for (index, part) in parts.iter_mut().enumerate() {
            if part.error.is_some() || part.budget == 0 {
                continue;
            }
            let reader = match self.take_reader(state, part).await {
                Ok(r) => r,
                Err(e) => {
                    part.error = Some(e);
                    continue;
                }
            };
            let (mut stopped, budget) = (stopped.clone(), part.budget.min(*total_budget));
            waiting.push(async move {
                let mut reader = reader;
                let result = tokio::select! {
                    r = reader.read(READ_ENTRIES, budget, remaining) => r,
                    _ = stopped.wait_for(|s| *s) => Ok(Vec::new()),
                };
                (index, reader, result)
            });
        }
        if waiting.is_empty() {
            return None;
        }
        let mut results = Vec::new();
        while let Some((index, reader, result)) = waiting.next().await {
            let got_data = matches!(&result, Ok(e) if !e.is_empty());
            results.push((index, reader, result));
            if got_data {
                let _ = stop.send(true);
            }
        }
        let mut added = 0;
        for (index, reader, result) in results {
            let part = &mut parts[index];
            match result {
                Ok(entries) => added += self.append(part, &entries, total_budget),
                Err(e) => part.error = Some(backend_error(e)),
            }
            self.put_reader(state, part, reader);
        }
        Some(added)
    }
}

/// What a partition's reader may hold ahead of the fetches: what one fetch takes from the
/// partition (its `partition_max_bytes`, within the request's `max_bytes`), so the next fetch
/// finds it ready while the client handles this one; within 64 KiB and 16 MiB.
fn prefetch_bytes(partition_max: usize, request_max: usize) -> usize {
    partition_max
        .min(request_max)
        .clamp(MIN_PREFETCH, MAX_PREFETCH)
}

/// A partition's error code in a Fetch answer. Kafka never answers a partition with
/// REQUEST_TIMED_OUT: the Java consumer throws on it and librdkafka hands it to the application.
/// A Pulsar call that timed out (typically a topic moving between brokers) is answered as a moved
/// leader instead, which both clients retry quietly after refreshing their metadata.
fn partition_error_code(error: ResponseError) -> i16 {
    match error {
        ResponseError::RequestTimedOut => ResponseError::NotLeaderOrFollower.code(),
        other => other.code(),
    }
}

/// The entry to start reading at for a fetch offset.
fn start_entry(offset: i64) -> EntryId {
    to_message_id(offset).entry_id()
}

#[cfg(test)]
mod tests {
    use gateway_core::backend::prelude::*;
    use gateway_core::budget::MemoryBudget;
    use gateway_core::{EntryToSend, Message};
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use kafka_protocol::protocol::StrBytes;

    use super::*;
    use crate::config::KafkaConfig;

    fn fetch(topic: &str, max_wait_ms: i32) -> FetchRequest {
        let mut partition = FetchPartition::default();
        partition.partition = 0;
        partition.fetch_offset = 0;
        partition.partition_max_bytes = 1 << 20;
        let mut t = FetchTopic::default();
        t.topic = kafka_protocol::messages::TopicName(StrBytes::from_string(topic.to_owned()));
        t.partitions = vec![partition];
        let mut request = FetchRequest::default();
        request.max_wait_ms = max_wait_ms;
        request.min_bytes = 1;
        request.max_bytes = 1 << 20;
        request.topics = vec![t];
        request
    }

    fn records(response: &FetchResponse) -> usize {
        response.responses[0].partitions[0]
            .records
            .as_ref()
            .map_or(0, |r| r.len())
    }

    /// A fetch's records count against the gateway's in-flight budget until its response is
    /// written: with the budget used up elsewhere, a fetch waits for its `max_wait_ms` and
    /// answers with nothing (as a long poll that found no data); once there is room, it returns
    /// the records and holds credit for exactly their bytes. (Before, it returned them whatever
    /// the budget.)
    #[tokio::test]
    async fn a_fetch_waits_for_the_budget_and_holds_credit_for_its_records() {
        let dir = tempfile::tempdir().unwrap();
        let backend = gateway_embedded::EmbeddedBackend::open(dir.path()).unwrap();
        let topic = TopicName::new("public", "default", "f");
        backend.create_topic(&topic, 0).await.unwrap();
        let message = Message {
            value: Some(bytes::Bytes::from(vec![7u8; 10_000])),
            ..Message::default()
        };
        backend
            .send(
                &topic,
                vec![EntryToSend {
                    messages: vec![message],
                    dedup: None,
                    coalesce: false,
                }],
            )
            .await
            .unwrap();
        let budget = MemoryBudget::new(50_000);
        let frontend = KafkaFrontend::new(
            KafkaConfig {
                budget: budget.clone(),
                ..KafkaConfig::default()
            },
            backend,
        );
        let mut state = FetchState::new(frontend.readers.clone());

        let hog = budget.acquire(50_000).await;
        let started = tokio::time::Instant::now();
        let (response, credit) = frontend.handle_fetch(&mut state, fetch("f", 200)).await;
        assert_eq!(records(&response), 0, "records fetched beyond the budget");
        assert_eq!(credit.bytes(), 0);
        assert!(started.elapsed() >= Duration::from_millis(200), "it waited");

        drop(hog);
        let (response, credit) = frontend.handle_fetch(&mut state, fetch("f", 200)).await;
        assert!(records(&response) > 10_000);
        assert_eq!(credit.bytes(), records(&response));
        assert_eq!(budget.in_use(), credit.bytes());
        drop(credit);
        assert_eq!(budget.in_use(), 0);
    }

    /// A partition whose Pulsar call timed out is answered NOT_LEADER_OR_FOLLOWER, which clients
    /// retry quietly, never REQUEST_TIMED_OUT, which librdkafka reported to the application
    /// while a topic was unloaded every 2 s (CI, 2026-12-07).
    #[test]
    fn a_timed_out_partition_is_answered_as_a_moved_leader() {
        assert_eq!(
            partition_error_code(backend_error(gateway_core::BackendError::Timeout(
                "no answer".into()
            ))),
            ResponseError::NotLeaderOrFollower.code()
        );
        assert_eq!(
            partition_error_code(ResponseError::OffsetOutOfRange),
            ResponseError::OffsetOutOfRange.code()
        );
    }

    /// Two produce batches stamped with different append times, stored as one entry (the Pulsar
    /// backend coalesces pipelined sends), come back as two LogAppendTime batches, each with
    /// its own time and offsets; an entry of one time stays one batch.
    #[test]
    fn an_entry_with_two_append_times_is_fetched_as_two_batches() {
        let stamped = |time| {
            let mut m = Message {
                value: Some(bytes::Bytes::from_static(b"v")),
                ..Message::default()
            };
            crate::mapping::stamp_append_time(&mut m, time);
            m
        };
        let entry = StoredEntry {
            id: gateway_core::EntryId {
                ledger: 5,
                entry: 2,
            },
            publish_time: 7,
            messages: vec![stamped(100), stamped(100), stamped(200)],
            batch_indexes: None,
        };
        let base = offsets::entry_offset(entry.id).unwrap();
        let mut out = BytesMut::new();
        let next = encode_entries(&mut out, std::slice::from_ref(&entry), base).unwrap();
        assert_eq!(next, Some(base + 3));
        let batches = record_batch::decode_all(out.freeze(), 1 << 20).unwrap();
        let shape: Vec<_> = batches
            .iter()
            .map(|b| {
                (
                    b.header.base_offset,
                    b.records.len(),
                    b.header.log_append_time,
                    b.header.max_timestamp,
                )
            })
            .collect();
        assert_eq!(shape, [(base, 2, true, 100), (base + 2, 1, true, 200)]);

        // From the middle: only the later batch.
        let mut out = BytesMut::new();
        encode_entries(&mut out, std::slice::from_ref(&entry), base + 2).unwrap();
        let batches = record_batch::decode_all(out.freeze(), 1 << 20).unwrap();
        assert_eq!(batches.len(), 1);
        assert_eq!(batches[0].header.base_offset, base + 2);
    }
}
