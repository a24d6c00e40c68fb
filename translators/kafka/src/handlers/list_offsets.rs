//! ListOffsets (key 2): earliest (-2), latest (-1), max timestamp (-3) and by timestamp, which
//! seeks by Pulsar publish time.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};

use crate::frontend::{backend_error, KafkaFrontend};
use crate::offsets;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
/// How long to wait for an entry known to exist.
const ENTRY_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

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
                let found = self
                    .backend
                    .find_entry_by_publish_time(&topic, t as u64)
                    .await
                    .map_err(backend_error)?;
                let Some(entry) = found else {
                    // Kafka's answer when no record is that recent.
                    return Ok((-1, -1));
                };
                let offset =
                    offsets::entry_offset(entry).map_err(|_| ResponseError::UnknownServerError)?;
                let mut reader = self
                    .backend
                    .open_reader(&topic, entry)
                    .await
                    .map_err(backend_error)?;
                // The entry exists; on Pulsar it still has to reach the reader.
                let entries = reader.read(1, 1, ENTRY_WAIT).await.map_err(backend_error)?;
                let stamp = entries
                    .first()
                    .and_then(|e| {
                        e.messages
                            .first()
                            .map(|m| m.event_time.unwrap_or(e.publish_time))
                    })
                    .map_or(-1, |t| t as i64);
                Ok((offset, stamp))
            }
            _ => Err(ResponseError::InvalidRequest),
        }
    }
}
