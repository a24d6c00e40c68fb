//! ListOffsets (key 2): earliest (-2), latest (-1), max timestamp (-3) and by timestamp.
//!
//! By timestamp, Kafka answers the first record (in log order, from the log start) whose
//! timestamp is at or after the target. Records carry the producer's timestamps, which may lie
//! far in the past, so Pulsar's publish time alone cannot answer. But produce refuses records
//! more than [`MAX_AHEAD_MS`] in the future (Kafka 4's `message.timestamp.after.max.ms`), so no
//! record published before `target - MAX_AHEAD_MS` qualifies: the search seeks there by publish
//! time (Pulsar's own index) and reads forward to the first record at or after the target.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};

use std::time::{Duration, Instant};

use gateway_core::TopicName;

use crate::frontend::{backend_error, KafkaFrontend};
use crate::offsets;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
/// How long to wait for an entry known to exist.
const ENTRY_WAIT: Duration = Duration::from_secs(10);
/// How far in the future a record's timestamp may be when it is produced (Kafka 4's default
/// `message.timestamp.after.max.ms`).
pub(crate) const MAX_AHEAD_MS: i64 = 3_600_000;
/// How long one search may read. Beyond it the answer is where the search got to: every record
/// before it is older than the target, so a consumer starting there misses none that is not.
const SEARCH_LIMIT: Duration = Duration::from_secs(20);
/// What a search reads at a time.
const SEARCH_BATCH: usize = 1_000;
const SEARCH_BYTES: usize = 4 << 20;

impl KafkaFrontend {
    pub(crate) async fn handle_list_offsets(
        &self,
        request: ListOffsetsRequest,
    ) -> ListOffsetsResponse {
        let mut response = ListOffsetsResponse::default();
        for topic in request.topics {
            let name = topic.name.0.to_string();
            let mut t = ListOffsetsTopicResponse::default();
            t.name = topic.name;
            for p in topic.partitions {
                let mut r = ListOffsetsPartitionResponse::default();
                r.partition_index = p.partition_index;
                r.leader_epoch = -1;
                match self
                    .list_offset(&name, p.partition_index, p.timestamp)
                    .await
                {
                    Ok((offset, timestamp)) => {
                        r.offset = offset;
                        r.timestamp = timestamp;
                    }
                    Err(e) => {
                        r.error_code = e.code();
                        r.offset = -1;
                        r.timestamp = -1;
                    }
                }
                t.partitions.push(r);
            }
            response.topics.push(t);
        }
        response
    }

    /// (offset, timestamp) answering one partition's query.
    async fn list_offset(
        &self,
        name: &str,
        partition: i32,
        timestamp: i64,
    ) -> Result<(i64, i64), ResponseError> {
        let topic = self.partition_topic(name, partition).await?;
        let (high_watermark, log_start) = self.watermarks(&topic).await?;
        match timestamp {
            LATEST => Ok((high_watermark, -1)),
            EARLIEST => Ok((log_start, -1)),
            MAX_TIMESTAMP => Ok(((high_watermark - 1).max(log_start), -1)),
            t if t >= 0 => {
                self.offset_for_time(&topic, t, high_watermark, log_start)
                    .await
            }
            _ => Err(ResponseError::InvalidRequest),
        }
    }

    /// The first record from the log start whose timestamp is at or after `target`:
    /// (offset, timestamp), or (-1, -1) when there is none.
    async fn offset_for_time(
        &self,
        topic: &TopicName,
        target: i64,
        high_watermark: i64,
        log_start: i64,
    ) -> Result<(i64, i64), ResponseError> {
        if high_watermark <= log_start {
            return Ok((-1, -1));
        }
        let from = (target - MAX_AHEAD_MS).max(0) as u64;
        let found = self
            .backend
            .find_entry_by_publish_time(topic, from)
            .await
            .map_err(backend_error)?;
        let Some(start) = found else {
            return Ok((-1, -1));
        };
        let mut reader = self
            .backend
            .open_reader(topic, start)
            .await
            .map_err(backend_error)?;
        reader.set_prefetch_bytes(SEARCH_BYTES);
        let deadline = Instant::now() + SEARCH_LIMIT;
        let mut next =
            offsets::entry_offset(start).map_err(|_| ResponseError::UnknownServerError)?;
        loop {
            let entries = reader
                .read(SEARCH_BATCH, SEARCH_BYTES, ENTRY_WAIT)
                .await
                .map_err(backend_error)?;
            for entry in &entries {
                for (index, message) in entry.messages.iter().enumerate() {
                    let offset = offsets::to_offset(entry.id.message(index as u32))
                        .map_err(|_| ResponseError::UnknownServerError)?;
                    next = offset + 1;
                    if offset < log_start {
                        continue;
                    }
                    let timestamp = message.event_time.unwrap_or(entry.publish_time) as i64;
                    if timestamp >= target {
                        return Ok((offset, timestamp));
                    }
                }
            }
            if next >= high_watermark {
                return Ok((-1, -1));
            }
            if Instant::now() >= deadline {
                tracing::info!(%topic, target, at = next, "time search stopped at its limit");
                return Ok((next.max(log_start), -1));
            }
        }
    }
}
