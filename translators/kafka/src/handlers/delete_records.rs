//! DeleteRecords (21): moves a partition's log start offset forward.
//!
//! Pulsar cannot delete single entries, so a partition's new start is stored with the topic, as
//! the topic property `kafka-log-start-offset.<partition>`, and the gateway hides what lies
//! before it: ListOffsets earliest and Fetch report it as the log start, and a fetch below it is
//! answered `OFFSET_OUT_OF_RANGE`, as a Kafka broker answers one below its log start. The
//! storage itself is freed by the topic's retention, not by DeleteRecords.
//!
//! Every instance reads the stored starts through the topic state cache (`crate::topic_state`):
//! the instance that moved a start serves it at once, the others within its time-to-live.

use std::collections::BTreeMap;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};

use crate::frontend::{backend_error, KafkaFrontend};
use crate::topic_state::base_of;
use gateway_core::TopicName;

/// Not `kafka.`: those names are the topic's configs, which AlterConfigs replaces as a set.
const PROPERTY_PREFIX: &str = "kafka-log-start-offset.";

/// A topic's stored log starts, by partition.
pub(crate) fn log_starts(properties: &BTreeMap<String, String>) -> BTreeMap<u32, i64> {
    properties
        .iter()
        .filter_map(|(k, v)| {
            let partition = k.strip_prefix(PROPERTY_PREFIX)?.parse().ok()?;
            Some((partition, v.parse().ok()?))
        })
        .collect()
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
        let mut state = (*self.topic_state(&base).await).clone();
        state.log_starts.insert(index, target);
        self.set_topic_state(&base, state);
        let key = topic.to_string();
        self.watermark_cache.forget(|k| k == key);
        Ok(target)
    }

    /// The offset before which DeleteRecords removed a concrete topic's records (0 if never).
    pub(crate) async fn deleted_before(&self, topic: &TopicName) -> i64 {
        let (base, index) = base_of(topic);
        let state = self.topic_state(&base).await;
        state.log_starts.get(&index).copied().unwrap_or(0)
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
        assert_eq!(log_starts(&properties), BTreeMap::from([(0, 42), (3, 7)]));
    }
}
