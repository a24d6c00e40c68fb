//! The backend contract (DESIGN.md §4): the operations a translator may ask of Pulsar, in Pulsar's
//! terms. The embedded backend and the Pulsar backend implement the same semantics, checked by one
//! conformance suite (`tests/backend_conformance.rs`).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::error::Result;
use crate::message::{EntryId, EntryToSend, MessageId, ReceivedMessage, StoredEntry};
use crate::topic::TopicName;

pub type BackendRef = Arc<dyn Backend>;

/// Pulsar's subscription types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SubscriptionType {
    /// One consumer at a time; a second one is refused.
    Exclusive,
    /// Many consumers, messages spread across them in any order.
    Shared,
    /// Many consumers, one active; the others take over when it leaves.
    Failover,
    /// Many consumers; all messages with the same key go to the same consumer.
    KeyShared,
}

/// Where a new subscription starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitialPosition {
    Latest,
    Earliest,
}

/// Where to move a subscription or reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeekTarget {
    /// The next message delivered is this one (inclusive).
    Message(MessageId),
    /// The next message delivered is the first published at or after this time (ms since epoch).
    PublishTime(u64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicInfo {
    /// 0 for a non-partitioned topic.
    pub partitions: u32,
}

/// Entries handed to a writer, resolving when they are persisted (or failed).
pub type PendingSend = futures::future::BoxFuture<'static, Result<Vec<SendReceipt>>>;

/// Result of writing one entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendReceipt {
    Persisted(EntryId),
    /// Dropped by deduplication: the producer already wrote this sequence id.
    Duplicate,
}

#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// A short name for logs and metrics ("embedded", "pulsar").
    fn kind(&self) -> &'static str;

    /// This backend as the client holding `token` sees it, when the backend authorizes
    /// operations itself (Pulsar): everything done through the result runs with that client's
    /// rights, never the gateway's. `None` when it does not (the embedded backend).
    fn as_client(&self, token: &str) -> Option<BackendRef> {
        let _ = token;
        None
    }

    /// Whether the principal this backend acts for may consume in `tenant/namespace` through a
    /// subscription named `subscription` (Pulsar's consume permission, narrowed by the
    /// subscription's own role list if it has one). Creates nothing. Always true on a backend
    /// that does not authorize (the embedded backend).
    async fn may_subscribe(
        &self,
        tenant: &str,
        namespace: &str,
        subscription: &str,
    ) -> Result<bool> {
        let _ = (tenant, namespace, subscription);
        Ok(true)
    }

    /// Whether the principal this backend acts for may write to `topic`, an existing topic
    /// (Pulsar's produce permission). Writes nothing. Always true on a backend that does not
    /// authorize.
    async fn may_produce(&self, topic: &TopicName) -> Result<bool> {
        let _ = topic;
        Ok(true)
    }

    /// Whether the backend can serve requests now (used by `/readyz`); the error says why not,
    /// for operators (it never holds a secret).
    async fn readiness(&self) -> Result<()>;

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

    /// Hands entries for one topic or partition to its writer and returns once they are queued, in
    /// call order: entries of a later call land after those of an earlier one. The returned
    /// future resolves when they are persisted. This lets a front end pipeline writes (Pulsar's
    /// round trip is longer than a Kafka broker's) without reordering them.
    /// Entries of one call get consecutive entry ids when they fit the current ledger.
    async fn submit(&self, topic: &TopicName, entries: Vec<EntryToSend>) -> Result<PendingSend>;

    /// Appends entries and returns when they are persisted.
    async fn send(&self, topic: &TopicName, entries: Vec<EntryToSend>) -> Result<Vec<SendReceipt>> {
        self.submit(topic, entries).await?.await
    }

    /// The highest deduplication sequence id persisted (or already handed to the backend) for
    /// `producer_name` on `topic`, or `None` if the backend knows none (the name never wrote
    /// there, or deduplication is off). Front ends whose sequence state is in memory recover
    /// from it after a restart, or when another instance served the producer before.
    async fn last_sequence(&self, topic: &TopicName, producer_name: &str) -> Result<Option<u64>>;

    /// The id of the last message written, or `None` for an empty topic.
    async fn last_message_id(&self, topic: &TopicName) -> Result<Option<MessageId>>;

    /// The first entry still stored, or `None` for an empty topic.
    async fn first_entry_id(&self, topic: &TopicName) -> Result<Option<EntryId>>;

    /// The first entry published at or after `publish_time`, or `None` if there is none.
    async fn find_entry_by_publish_time(
        &self,
        topic: &TopicName,
        publish_time: u64,
    ) -> Result<Option<EntryId>>;

    /// A non-durable reader starting at `start` (inclusive).
    async fn open_reader(&self, topic: &TopicName, start: EntryId) -> Result<Box<dyn Reader>>;

    /// A reader of the topic's compacted view: for each key only its latest message (older ones,
    /// and keys whose latest value is null, may be left out), as far as compaction has run, then
    /// everything after. A backend without compaction reads everything.
    async fn open_compacted_reader(
        &self,
        topic: &TopicName,
        start: EntryId,
    ) -> Result<Box<dyn Reader>> {
        self.open_reader(topic, start).await
    }

    /// Starts compacting a keyed topic in the background (Pulsar's topic compaction); a no-op on
    /// a backend without compaction.
    async fn compact(&self, _topic: &TopicName) -> Result<()> {
        Ok(())
    }

    /// Attaches a consumer to a durable subscription, creating the subscription if needed.
    async fn subscribe(
        &self,
        topic: &TopicName,
        subscription: &str,
        sub_type: SubscriptionType,
        initial: InitialPosition,
    ) -> Result<Box<dyn Consumer>>;

    /// `subscribe`, with the backend holding at most about `prefetch` messages for this consumer
    /// ahead of `receive` (Pulsar's receiver queue), so that on a Shared subscription the other
    /// consumers get the rest; 0 holds none (a message is asked for only while `receive`
    /// waits). A backend that only hands messages out on `receive` ignores it.
    async fn subscribe_with_prefetch(
        &self,
        topic: &TopicName,
        subscription: &str,
        sub_type: SubscriptionType,
        initial: InitialPosition,
        _prefetch: u32,
    ) -> Result<Box<dyn Consumer>> {
        self.subscribe(topic, subscription, sub_type, initial).await
    }

    /// Moves a durable subscription, creating it if needed, so that `next` is the first message
    /// it has not acknowledged: everything before is acknowledged, everything from `next` on is
    /// backlog. It needs no consumer of the caller's and may move backwards. Used to mirror Kafka
    /// committed offsets, so that Pulsar tooling shows a group's backlog. A backend may round a
    /// position inside a batch entry down to the entry (the backlog is then one entry high).
    async fn position_subscription(
        &self,
        topic: &TopicName,
        subscription: &str,
        next: MessageId,
    ) -> Result<()> {
        let mut consumer = self
            .subscribe(
                topic,
                subscription,
                SubscriptionType::Failover,
                InitialPosition::Latest,
            )
            .await?;
        let moved = consumer.seek(SeekTarget::Message(next)).await;
        consumer.close().await;
        moved
    }

    /// Tries to take a topic's single exclusive writer slot, a lease that also fences: while it is
    /// held nobody else can write to the topic (Pulsar's exclusive producer access mode), and a
    /// holder that lost it can no longer write. `Ok(None)` when another holder has it. `holder`
    /// names the holder; `lease_holder` reports it to others.
    async fn try_lease(&self, topic: &TopicName, holder: &str) -> Result<Option<Box<dyn Lease>>>;

    /// The name of whoever holds the topic's lease, if anyone.
    async fn lease_holder(&self, topic: &TopicName) -> Result<Option<String>>;

    /// Announces `name` on `topic` while the returned guard lives and its connection holds (a
    /// named producer that writes nothing): `announced` lists it to everyone. A process that
    /// dies drops out when its connection does, so this is how gateway instances find each
    /// other without any state of their own.
    async fn announce(&self, topic: &TopicName, name: &str) -> Result<Box<dyn Announcement>>;

    /// The names announced on `topic` and still live.
    async fn announced(&self, topic: &TopicName) -> Result<Vec<String>>;

    /// Deletes a durable subscription. Fails while it has connected consumers.
    async fn unsubscribe(&self, topic: &TopicName, subscription: &str) -> Result<()>;

    /// The durable subscriptions of a topic or partition.
    async fn subscriptions(&self, topic: &TopicName) -> Result<Vec<String>>;

    /// Entries not yet fully acknowledged on a subscription: Pulsar's `msgBacklog`, which counts
    /// a batch entry once however many messages it holds, until all of them are acknowledged.
    async fn backlog(&self, topic: &TopicName, subscription: &str) -> Result<u64>;

    /// Of the backlog, the messages not handed to any consumer yet (RabbitMQ's "ready"
    /// messages): delivered but unacknowledged ones are left out. A backend that cannot tell
    /// answers the backlog.
    async fn ready(&self, topic: &TopicName, subscription: &str) -> Result<u64> {
        self.backlog(topic, subscription).await
    }
}

/// A name announced on a topic (see `Backend::announce`); dropping it withdraws the name.
pub trait Announcement: Send + Sync {
    /// False once the announcement is gone (its connection ended); announce again.
    fn is_live(&self) -> bool;
}

/// An exclusive writer on a topic (see `Backend::try_lease`). Dropping it releases the topic.
#[async_trait]
pub trait Lease: Send + Sync {
    /// Queues entries like `Backend::submit`; fails once the lease is lost.
    async fn submit(&self, entries: Vec<EntryToSend>) -> Result<PendingSend>;

    /// False once the lease is lost (another holder fenced it, or its connection ended); it does
    /// not come back: take a new one.
    fn is_held(&self) -> bool;
}

/// A Pulsar reader: reads entries in order from a position, with no durable state.
#[async_trait]
pub trait Reader: Send {
    /// Up to `max_entries` entries and roughly `max_bytes` (always at least one entry when one is
    /// available), waiting up to `wait` for the first to arrive. With `wait` zero it returns what
    /// has already reached the gateway, which on Pulsar may be nothing yet although the topic
    /// holds more: callers that need everything wait, or read up to a known last id.
    async fn read(
        &mut self,
        max_entries: usize,
        max_bytes: usize,
        wait: Duration,
    ) -> Result<Vec<StoredEntry>>;

    /// The entry the next `read` starts at, or after.
    fn position(&self) -> EntryId;

    /// Bounds what the backend may hold for this reader ahead of `read`, in bytes, about:
    /// entries it prefetched plus those it expects for what it asked for (a Pulsar reader's flow
    /// permits; see the Pulsar backend's `prefetch.rs`). At least one entry is always fetched
    /// when nothing is held, so an entry larger than the budget is still read. A backend that
    /// reads only inside `read` (the embedded one) holds nothing ahead and ignores it.
    fn set_prefetch_bytes(&mut self, bytes: usize) {
        let _ = bytes;
    }

    async fn seek(&mut self, start: EntryId) -> Result<()>;
}

/// A consumer on a durable subscription.
#[async_trait]
pub trait Consumer: Send {
    /// Up to `max` messages, waiting up to `wait` for the first.
    async fn receive(&mut self, max: usize, wait: Duration) -> Result<Vec<ReceivedMessage>>;

    /// Individual acknowledgement, at batch-index granularity.
    async fn ack(&mut self, ids: &[MessageId]) -> Result<()>;

    /// Acknowledges everything up to and including `id`.
    async fn ack_cumulative(&mut self, id: MessageId) -> Result<()>;

    /// Negative acknowledgement: the messages are redelivered with a higher redelivery count.
    async fn nack(&mut self, ids: &[MessageId]) -> Result<()>;

    /// Moves the subscription: messages from the target on are delivered again.
    async fn seek(&mut self, target: SeekTarget) -> Result<()>;

    /// Detaches; unacknowledged messages go back to the subscription for redelivery.
    async fn close(self: Box<Self>);
}
