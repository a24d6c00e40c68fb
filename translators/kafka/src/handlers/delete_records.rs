//! DeleteRecords (21): moves a partition's log start offset forward.
//!
//! Pulsar cannot delete single entries, so a partition's new start is stored with the topic, as
//! the topic property `kafka-log-start-offset.<partition>`, and the gateway hides what lies
//! before it: ListOffsets earliest and Fetch report it as the log start, and a fetch below it is
//! answered `OFFSET_OUT_OF_RANGE`, as a Kafka broker answers one below its log start. The
//! storage itself is freed by the topic's retention, not by DeleteRecords.
//!
//! Every instance reads the stored starts through a short-lived cache ([`DELETED_TTL`]): the
//! instance that moved a start serves it at once, the others within that time.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use gateway_core::TopicName;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};

use crate::frontend::{backend_error, KafkaFrontend};

/// How long an instance serves a topic's stored log starts before reading them again.
pub(crate) const DELETED_TTL: Duration = Duration::from_secs(2);

/// Not `kafka.`: those names are the topic's configs, which AlterConfigs replaces as a set.
const PROPERTY_PREFIX: &str = "kafka-log-start-offset.";

/// A topic's stored log starts, by partition.
pub(crate) type LogStarts = Arc<BTreeMap<u32, i64>>;

fn parse(properties: &BTreeMap<String, String>) -> LogStarts {
    Arc::new(
        properties
            .iter()
            .filter_map(|(k, v)| {
                let partition = k.strip_prefix(PROPERTY_PREFIX)?.parse().ok()?;
                Some((partition, v.parse().ok()?))
            })
            .collect(),
    )
}

/// The logical topic and partition index of a concrete topic.
fn base_of(topic: &TopicName) -> (TopicName, u32) {
    topic.partition_of().unwrap_or_else(|| (topic.clone(), 0))
}

impl KafkaFrontend {
    pub(crate) async fn handle_delete_records(
        &self,
        request: DeleteRecordsRequest,
    ) -> DeleteRecordsResponse {
        let mut response = DeleteRecordsResponse::default();
        for topic in request.topics {
            let name = topic.name.0.to_string();
            let mut t = DeleteRecordsTopicResult::default();
            t.name = topic.name;
            for p in topic.partitions {
                let mut r = DeleteRecordsPartitionResult::default();
                r.partition_index = p.partition_index;
                match self
                    .delete_records(&name, p.partition_index, p.offset)
                    .await
                {
                    Ok(low_watermark) => r.low_watermark = low_watermark,
                    Err(e) => {
                        r.error_code = e.code();
                        r.low_watermark = -1;
                    }
                }
                t.partitions.push(r);
            }
            response.topics.push(t);
        }
        response
    }

    /// Moves the partition's start to `offset` (-1: the high watermark) and returns the new log
    /// start. An offset at or before the current start changes nothing.
    async fn delete_records(
        &self,
        name: &str,
        partition: i32,
        offset: i64,
    ) -> Result<i64, ResponseError> {
        let topic = self.partition_topic(name, partition).await?;
        let (high_watermark, log_start) = self.watermarks(&topic).await?;
        let target = if offset == -1 { high_watermark } else { offset };
        if target < 0 || target > high_watermark {
            return Err(ResponseError::OffsetOutOfRange);
        }
        if target <= log_start {
            return Ok(log_start);
        }
        let (base, index) = base_of(&topic);
        let set = BTreeMap::from([(format!("{PROPERTY_PREFIX}{index}"), target.to_string())]);
        self.backend
            .update_topic_properties(&base, &set, &[])
            .await
            .map_err(backend_error)?;
        tracing::info!(%topic, log_start = target, "records deleted");
        // Served at once here; the watermarks cached for fetches are stale now.
        let mut starts = self.log_starts(&base).await;
        Arc::make_mut(&mut starts).insert(index, target);
        self.deleted.put(base.to_string(), starts);
        let key = topic.to_string();
        self.watermark_cache.forget(|k| k == key);
        Ok(target)
    }

    /// The offset before which DeleteRecords removed a concrete topic's records (0 if never).
    pub(crate) async fn deleted_before(&self, topic: &TopicName) -> i64 {
        let (base, index) = base_of(topic);
        let starts = self.log_starts(&base).await;
        starts.get(&index).copied().unwrap_or(0)
    }

    /// A topic's stored log starts: from the cache, refreshed in the background once expired
    /// (they only grow, so a stale answer hides less, never more); read at once the first time.
    async fn log_starts(&self, base: &TopicName) -> LogStarts {
        let key = base.to_string();
        if let Some((starts, expired)) = self.deleted.get_or_stale(&key) {
            if expired {
                let (backend, cache, base) =
                    (self.backend.clone(), self.deleted.clone(), base.clone());
                tokio::spawn(async move {
                    match backend.topic_properties(&base).await {
                        Ok(properties) => cache.put(key, parse(&properties)),
                        Err(e) => {
                            tracing::debug!(topic = %base, error = %e, "refreshing log starts")
                        }
                    }
                });
            }
            return starts;
        }
        // A fetch must not fail for want of them: when they cannot be read (Pulsar does not
        // answer, or the client's token may not read topic metadata), nothing counts as deleted
        // until the next read, a time-to-live later.
        let properties = match self.backend.topic_properties(base).await {
            Ok(p) => p,
            Err(gateway_core::BackendError::TopicNotFound(_)) => BTreeMap::new(),
            Err(e) => {
                tracing::debug!(topic = %base, error = %e, "log starts unknown");
                BTreeMap::new()
            }
        };
        let starts = parse(&properties);
        self.deleted.put(key, starts.clone());
        starts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_starts_are_read_by_partition_and_configs_are_not() {
        let properties = BTreeMap::from([
            ("kafka-log-start-offset.0".to_owned(), "42".to_owned()),
            ("kafka-log-start-offset.3".to_owned(), "7".to_owned()),
            ("kafka.retention.ms".to_owned(), "1000".to_owned()),
            ("kafka-log-start-offset.x".to_owned(), "1".to_owned()),
        ]);
        assert_eq!(*parse(&properties), BTreeMap::from([(0, 42), (3, 7)]));
    }
}
