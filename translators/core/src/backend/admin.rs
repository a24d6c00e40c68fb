//! Topics themselves: creating, deleting, partitioning, listing and compacting them.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;

use crate::error::Result;
use crate::topic::TopicName;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicInfo {
    /// 0 for a non-partitioned topic.
    pub partitions: u32,
}

/// How long a topic keeps data that every subscription has consumed (Pulsar's retention policy;
/// data a subscription has yet to consume is always kept). `None` means without limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub time: Option<Duration>,
    pub bytes: Option<u64>,
}

impl Retention {
    /// Keeps everything.
    pub const FOREVER: Retention = Retention {
        time: None,
        bytes: None,
    };
}

/// The policies a protocol front end sets on a topic it creates or reconfigures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicPolicies {
    pub retention: Retention,
    /// Compact the topic (keep the last message per key) each time this many bytes have been
    /// written since the last compaction; `None` never compacts on its own.
    pub compaction_threshold: Option<u64>,
    /// Keep the topic while no one uses it (a stock Pulsar deletes topics with no subscription
    /// after a minute without producers).
    pub keep_while_inactive: bool,
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

    /// The string properties stored with a topic (for a partitioned topic, with the topic, not per
    /// partition). `TopicNotFound` when it does not exist.
    async fn topic_properties(&self, topic: &TopicName) -> Result<BTreeMap<String, String>>;

    /// Sets the properties in `set` and removes those named in `remove`, leaving the others.
    async fn update_topic_properties(
        &self,
        topic: &TopicName,
        set: &BTreeMap<String, String>,
        remove: &[String],
    ) -> Result<()>;

    /// Sets a topic's policies, replacing those it had.
    async fn set_topic_policies(&self, topic: &TopicName, policies: &TopicPolicies) -> Result<()>;

    /// The retention the backend applies to the topic now, wherever it comes from (the topic's
    /// own policy, its namespace's, the backend's default).
    async fn applied_retention(&self, topic: &TopicName) -> Result<Retention>;

    /// Starts compacting a keyed topic in the background (Pulsar's topic compaction); a no-op on
    /// a backend without compaction.
    async fn compact(&self, _topic: &TopicName) -> Result<()> {
        Ok(())
    }
}
