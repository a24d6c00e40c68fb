//! Writing entries to a topic, with Pulsar's producer deduplication.

use async_trait::async_trait;

use crate::error::Result;
use crate::message::{EntryToSend, MessageId};
use crate::topic::TopicName;

/// How many entries back from the end of a topic `Producing::find_sequence` looks, at most.
pub const SEQUENCE_LOOKBACK: u64 = 1_000;

/// The most messages a backend puts in one stored entry when it coalesces the entries of
/// several sends (see `SendReceipt`), so that a message's place in its entry fits 12 bits.
pub const MAX_COALESCED_MESSAGES: usize = 4096;

/// Entries handed to a writer, resolving when they are persisted (or failed).
pub type PendingSend = futures::future::BoxFuture<'static, Result<Vec<SendReceipt>>>;

/// Result of writing one entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendReceipt {
    /// Where the entry's first message was stored. A backend may store the entries of
    /// consecutive sends to one topic together, as one stored entry (up to
    /// [`MAX_COALESCED_MESSAGES`] messages, never the entries of one call, which stay
    /// consecutive entries of their own): the entry's messages then start at this batch index,
    /// in order. Otherwise the batch index is 0.
    Persisted(MessageId),
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

    /// Where `producer_name` wrote the entry with deduplication sequence id `sequence` (an
    /// entry's own id, as `EntryToSend::dedup` gives it: the first of its messages; the position
    /// of that message, as `SendReceipt::Persisted` gave it), among the last
    /// [`SEQUENCE_LOOKBACK`] entries of the topic, across ledgers; the latest such entry if there
    /// are several, `None` if there is none among them. Deduplication answers a resend with
    /// `SendReceipt::Duplicate` and no id; a front end that owes its client the original
    /// position finds it here. A resend normally comes right after its original (the producer
    /// resends in order once its connection is back), so the search is bounded rather than
    /// reading the whole topic. Within a stored entry that coalesced several sends, a backend
    /// may also find the sequence ids of the messages after a send's first.
    async fn find_sequence(
        &self,
        topic: &TopicName,
        producer_name: &str,
        sequence: u64,
    ) -> Result<Option<MessageId>>;
}
