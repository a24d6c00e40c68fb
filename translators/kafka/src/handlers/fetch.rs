//! Fetch (key 1).
//!
//! Each (connection, partition) keeps a reader positioned at the offset the client will ask for
//! next, so sequential fetches stream without re-seeking; the cache is capped per connection.
//! A fetch honours the total `max_bytes` and each `partition_max_bytes` (always returning at least
//! one entry so a consumer can progress), and long-polls until `min_bytes` arrived or
//! `max_wait_ms` passed.

use std::collections::HashMap;
use std::time::Duration;

use bytes::BytesMut;
use futures::stream::{FuturesUnordered, StreamExt};
use gateway_core::{EntryId, Reader, StoredEntry, TopicName};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{FetchRequest, FetchResponse};
use tokio::sync::watch;

use crate::frontend::{backend_error, KafkaFrontend};
use crate::mapping::message_to_record;
use crate::offsets::{self, entry_offset, to_message_id};
use crate::record_batch;

/// Readers one connection may keep open; beyond it the least recently used is closed.
const READER_CACHE_CAP: usize = 256;
/// Longest long-poll honoured, whatever the client asks.
const MAX_WAIT_CAP: Duration = Duration::from_secs(30);
/// Entries per read call.
const READ_ENTRIES: usize = 256;
/// How long a fetch reuses a partition's watermarks. On Pulsar each lookup is an admin REST
/// call, too slow for every fetch of every partition. A fetch only reports them (for lag) and
/// checks the offset against them; the high watermark only grows, so an offset at or below a
/// cached one is valid, and one above it is checked against fresh values before being refused.
pub(crate) const WATERMARK_TTL: Duration = Duration::from_secs(1);

/// A reader and the offset the client is expected to fetch next from it.
pub struct CachedReader {
    reader: Box<dyn Reader>,
    next_offset: i64,
    last_used: u64,
}

/// Per-connection fetch state.
#[derive(Default)]
pub struct FetchState {
    readers: HashMap<(String, i32), CachedReader>,
    clock: u64,
}

/// One requested partition while a fetch is assembled.
struct PartitionFetch {
    name: String,
    partition: i32,
    topic: Option<TopicName>,
    error: Option<ResponseError>,
    offset: i64,
    budget: usize,
    high_watermark: i64,
    log_start: i64,
    records: BytesMut,
}

/// Encodes entries as Kafka batches (one per entry), skipping messages before `from_offset`.
/// Returns the offset after the last record written.
pub fn encode_entries(
    out: &mut BytesMut,
    entries: &[StoredEntry],
    from_offset: i64,
) -> Result<Option<i64>, offsets::OffsetOutOfRange> {
    let mut next = None;
    let mut records = Vec::new();
    for entry in entries {
        let base = entry_offset(entry.id)?;
        let skip = if from_offset > base {
            (from_offset - base) as usize
        } else {
            0
        };
        records.clear();
        for (index, message) in entry.messages.iter().enumerate().skip(skip) {
            offsets::to_offset(entry.id.message(index as u32))?;
            records.push(message_to_record(
                message,
                (index - skip) as i32,
                entry.publish_time,
            ));
        }
        if records.is_empty() {
            continue;
        }
        let first = base + skip as i64;
        record_batch::encode(out, first, &records);
        next = Some(first + records.len() as i64);
    }
    Ok(next)
}

impl KafkaFrontend {
    pub(crate) async fn handle_fetch(
        &self,
        state: &mut FetchState,
        request: FetchRequest,
    ) -> FetchResponse {
        let wait = Duration::from_millis(request.max_wait_ms.max(0) as u64).min(MAX_WAIT_CAP);
        let deadline = tokio::time::Instant::now() + wait;
        let min_bytes = request.min_bytes.max(0) as usize;
        let mut total_budget = if request.max_bytes > 0 {
            request.max_bytes as usize
        } else {
            usize::MAX
        };

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
                    )
                    .await,
                );
            }
        }

        let mut gathered = 0usize;
        loop {
            for part in parts.iter_mut().filter(|p| p.error.is_none()) {
                if total_budget == 0 || part.budget == 0 {
                    continue;
                }
                let entries = self
                    .read_partition(state, part, total_budget, Duration::ZERO)
                    .await;
                gathered += self.append(state, part, &entries, &mut total_budget);
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
                Some(added) => gathered += added,
                None => break, // no partition can take more data
            }
            if tokio::time::Instant::now() >= deadline {
                break;
            }
        }

        let mut response = FetchResponse::default();
        let mut parts = parts.into_iter();
        for (topic_name, count) in shape {
            let mut topic = FetchableTopicResponse::default();
            topic.topic = topic_name;
            for part in parts.by_ref().take(count) {
                let mut data = PartitionData::default();
                data.partition_index = part.partition;
                data.error_code = part.error.map_or(0, |e| e.code());
                data.high_watermark = part.high_watermark;
                data.last_stable_offset = part.high_watermark;
                data.log_start_offset = part.log_start;
                data.aborted_transactions = None;
                data.records = Some(part.records.freeze());
                topic.partitions.push(data);
            }
            response.responses.push(topic);
        }
        response
    }

    async fn prepare_partition(
        &self,
        name: &str,
        partition: i32,
        offset: i64,
        max_bytes: i32,
    ) -> PartitionFetch {
        let mut part = PartitionFetch {
            name: name.to_owned(),
            partition,
            topic: None,
            error: None,
            offset,
            budget: max_bytes.max(0) as usize,
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
                if offset > high_watermark || offset < 0 {
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
        let fresh = self.watermarks(topic).await?;
        self.watermark_cache.put(key, fresh);
        Ok(fresh)
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
        Ok((high_watermark, log_start))
    }

    /// Takes this partition's cached reader, or opens one at the requested offset.
    async fn take_reader(
        &self,
        state: &mut FetchState,
        part: &PartitionFetch,
    ) -> Result<Box<dyn Reader>, ResponseError> {
        let key = (part.name.clone(), part.partition);
        if let Some(cached) = state.readers.remove(&key) {
            if cached.next_offset == part.offset {
                return Ok(cached.reader);
            }
            let mut reader = cached.reader;
            reader
                .seek(start_entry(part.offset))
                .await
                .map_err(backend_error)?;
            return Ok(reader);
        }
        let topic = part
            .topic
            .as_ref()
            .ok_or(ResponseError::UnknownTopicOrPartition)?;
        metrics::counter!("kafka_fetch_readers_opened_total").increment(1);
        self.backend
            .open_reader(topic, start_entry(part.offset))
            .await
            .map_err(backend_error)
    }

    fn put_reader(&self, state: &mut FetchState, part: &PartitionFetch, reader: Box<dyn Reader>) {
        state.clock += 1;
        if state.readers.len() >= READER_CACHE_CAP {
            if let Some(oldest) = state
                .readers
                .iter()
                .min_by_key(|(_, r)| r.last_used)
                .map(|(k, _)| k.clone())
            {
                state.readers.remove(&oldest);
            }
        }
        state.readers.insert(
            (part.name.clone(), part.partition),
            CachedReader {
                reader,
                next_offset: part.offset,
                last_used: state.clock,
            },
        );
        metrics::gauge!("kafka_fetch_reader_cache_size").set(state.readers.len() as f64);
    }

    async fn read_partition(
        &self,
        state: &mut FetchState,
        part: &mut PartitionFetch,
        total_budget: usize,
        wait: Duration,
    ) -> Vec<StoredEntry> {
        let mut reader = match self.take_reader(state, part).await {
            Ok(r) => r,
            Err(e) => {
                part.error = Some(e);
                return Vec::new();
            }
        };
        let budget = part.budget.min(total_budget);
        let entries = match reader.read(READ_ENTRIES, budget, wait).await {
            Ok(entries) => entries,
            Err(e) => {
                part.error = Some(backend_error(e));
                return Vec::new();
            }
        };
        self.put_reader(state, part, reader);
        entries
    }

    /// Encodes entries into the partition's records and advances its offset; returns the bytes
    /// added. The reader's cached position moves with the offset.
    fn append(
        &self,
        state: &mut FetchState,
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
                    .message(last.messages.len().saturating_sub(1) as u32),
            ) {
                part.high_watermark = part.high_watermark.max(high + 1);
            }
        }
        if let Some(cached) = state.readers.get_mut(&(part.name.clone(), part.partition)) {
            cached.next_offset = part.offset;
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
            self.put_reader(state, part, reader);
            match result {
                Ok(entries) => added += self.append(state, part, &entries, total_budget),
                Err(e) => part.error = Some(backend_error(e)),
            }
        }
        Some(added)
    }
}

/// The entry to start reading at for a fetch offset.
fn start_entry(offset: i64) -> EntryId {
    to_message_id(offset).entry_id()
}
