//! Durable subscriptions: attaching consumers, moving and inspecting subscriptions.

use std::time::Duration;

use async_trait::async_trait;

use crate::error::Result;
use crate::message::{EntryId, MessageId, ReceivedMessage};
use crate::topic::TopicName;

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

/// How `Subscriptions::subscribe` attaches a consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubscribeOptions {
    pub sub_type: SubscriptionType,
    /// Where the subscription starts if it does not exist yet.
    pub initial: InitialPosition,
    /// The backend holds at most about this many messages for the consumer ahead of `receive`
    /// (Pulsar's receiver queue), so that on a Shared subscription the other consumers get the
    /// rest; 0 holds none (a message is asked for only while `receive` waits). `None` leaves it
    /// to the backend. A backend that only hands messages out on `receive` ignores it.
    pub prefetch: Option<u32>,
}

impl Default for SubscribeOptions {
    /// Pulsar's defaults: an exclusive subscription starting at the latest message, with the
    /// backend's own prefetch.
    fn default() -> Self {
        SubscribeOptions {
            sub_type: SubscriptionType::Exclusive,
            initial: InitialPosition::Latest,
            prefetch: None,
        }
    }
}

/// What a durable subscription has acknowledged, by whole entries (see
/// `Subscriptions::acknowledged`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Acknowledged {
    /// The first entry not acknowledged: every entry before it is (Pulsar's mark-delete
    /// position, plus one).
    pub from: EntryId,
    /// Entries after `from` acknowledged whole, as inclusive ranges in order (Pulsar's
    /// individually deleted messages).
    pub ranges: Vec<(EntryId, EntryId)>,
}

impl Acknowledged {
    pub fn contains(&self, id: EntryId) -> bool {
        if id < self.from {
            return true;
        }
        let i = self.ranges.partition_point(|(_, last)| *last < id);
        self.ranges.get(i).is_some_and(|(first, _)| *first <= id)
    }
}

#[async_trait]
pub trait Subscriptions: Send + Sync {
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

    /// Attaches a consumer to a durable subscription, creating the subscription if needed.
    async fn subscribe(
        &self,
        topic: &TopicName,
        subscription: &str,
        options: SubscribeOptions,
    ) -> Result<Box<dyn Consumer>>;

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
        let options = SubscribeOptions {
            sub_type: SubscriptionType::Failover,
            initial: InitialPosition::Latest,
            prefetch: None,
        };
        let mut consumer = self.subscribe(topic, subscription, options).await?;
        let moved = consumer.seek(SeekTarget::Message(next)).await;
        consumer.close().await;
        moved
    }

    /// Deletes a durable subscription. Fails while it has connected consumers.
    async fn unsubscribe(&self, topic: &TopicName, subscription: &str) -> Result<()>;

    /// The durable subscriptions of a topic or partition.
    async fn subscriptions(&self, topic: &TopicName) -> Result<Vec<String>>;

    /// Entries not yet fully acknowledged on a subscription: Pulsar's `msgBacklog`, which counts
    /// a batch entry once however many messages it holds, until all of them are acknowledged.
    async fn backlog(&self, topic: &TopicName, subscription: &str) -> Result<u64>;

    /// What `subscription` has acknowledged, so that its backlog can be read without consuming
    /// it (a JMS QueueBrowser reads the queue's subscription this way, with a reader). An entry
    /// of which only some messages are acknowledged counts as not acknowledged.
    async fn acknowledged(&self, topic: &TopicName, subscription: &str) -> Result<Acknowledged> {
        let _ = (topic, subscription);
        Err(crate::BackendError::Unavailable(
            "this backend cannot tell what a subscription acknowledged".into(),
        ))
    }

    /// Of the backlog, the messages not handed to any consumer yet (RabbitMQ's "ready"
    /// messages): delivered but unacknowledged ones are left out. A backend that cannot tell
    /// answers the backlog.
    async fn ready(&self, topic: &TopicName, subscription: &str) -> Result<u64> {
        self.backlog(topic, subscription).await
    }
}

/// A consumer on a durable subscription.
#[async_trait]
pub trait Consumer: Send {
    /// Up to `max` messages, waiting up to `wait` for the first.
    async fn receive(&mut self, max: usize, wait: Duration) -> Result<Vec<ReceivedMessage>>;

    /// Individual acknowledgement, at batch-index granularity. Returns once sent: the backend
    /// may apply it later (see `flush`).
    async fn ack(&mut self, ids: &[MessageId]) -> Result<()>;

    /// Acknowledges everything up to and including `id`; returns once sent, like `ack`.
    async fn ack_cumulative(&mut self, id: MessageId) -> Result<()>;

    /// Returns once the backend has applied every acknowledgement sent before, so that what
    /// reads the subscription next (a backlog count) sees them. An error means some may be lost:
    /// their messages come again.
    async fn flush(&mut self) -> Result<()> {
        Ok(())
    }

    /// Negative acknowledgement: the messages are redelivered with a higher redelivery count.
    async fn nack(&mut self, ids: &[MessageId]) -> Result<()>;

    /// Moves the subscription: messages from the target on are delivered again.
    async fn seek(&mut self, target: SeekTarget) -> Result<()>;

    /// Detaches; unacknowledged messages go back to the subscription for redelivery.
    async fn close(self: Box<Self>);
}
