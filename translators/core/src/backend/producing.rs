//! Writing entries to a topic, with Pulsar's producer deduplication.

use async_trait::async_trait;

use crate::error::Result;
use crate::message::{EntryId, EntryToSend};
use crate::topic::TopicName;

/// How many entries back from the end of a topic `Producing::find_sequence` looks, at most.
pub const SEQUENCE_LOOKBACK: u64 = 1_000;

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
pub trait Producing: Send + Sync {
    /// Whether the principal this backend acts for may write to `topic`, an existing topic
    /// (Pulsar's produce permission). Writes nothing. Always true on a backend that does not
    /// authorize.
    async fn may_produce(&self, topic: &TopicName) -> Result<bool> {
        let _ = topic;
        Ok(true)
    }

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

    /// The entry `producer_name` wrote with deduplication sequence id `sequence` (an entry's
    /// own id, as `EntryToSend::dedup` gives it: the first of its messages), among the last
    /// [`SEQUENCE_LOOKBACK`] entries of the topic, across ledgers; the latest such entry if there
    /// are several, `None` if there is none among them. Deduplication answers a resend with
    /// `SendReceipt::Duplicate` and no id; a front end that owes its client the original
    /// position finds it here. A resend normally comes right after its original (the producer
    /// resends in order once its connection is back), so the search is bounded rather than
    /// reading the whole topic.
    async fn find_sequence(
        &self,
        topic: &TopicName,
        producer_name: &str,
        sequence: u64,
    ) -> Result<Option<EntryId>>;
}
