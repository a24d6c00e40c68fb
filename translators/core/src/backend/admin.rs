//! Topics themselves: creating, deleting, partitioning, listing and compacting them.

use async_trait::async_trait;

use crate::error::Result;
use crate::topic::TopicName;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicInfo {
    /// 0 for a non-partitioned topic.
    pub partitions: u32,
}

#[async_trait]
pub trait TopicAdmin: Send + Sync {
    /// Creates a topic. `partitions == 0` makes a non-partitioned topic, otherwise a partitioned
    /// topic whose partitions are `topic.partition(i)`.
    async fn create_topic(&self, topic: &TopicName, partitions: u32) -> Result<()>;

    /// Deletes a topic (all partitions), its data and its subscriptions.
    async fn delete_topic(&self, topic: &TopicName) -> Result<()>;

    /// Raises the partition count of a partitioned topic.
    async fn update_partitions(&self, topic: &TopicName, partitions: u32) -> Result<()>;

    /// `None` when the topic does not exist.
    async fn topic_info(&self, topic: &TopicName) -> Result<Option<TopicInfo>>;

    /// Every topic in a namespace (partitioned topics once, not per partition).
    async fn list_topics(
        &self,
        tenant: &str,
        namespace: &str,
    ) -> Result<Vec<(TopicName, TopicInfo)>>;

    /// Starts compacting a keyed topic in the background (Pulsar's topic compaction); a no-op on
    /// a backend without compaction.
    async fn compact(&self, _topic: &TopicName) -> Result<()> {
        Ok(())
    }
}
