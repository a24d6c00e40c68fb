//! Reading a topic with no durable state: where it starts and ends, and readers.

use std::time::Duration;

use async_trait::async_trait;

use crate::error::Result;
use crate::message::{EntryId, MessageId, StoredEntry};
use crate::topic::TopicName;

#[async_trait]
pub trait Reading: Send + Sync {
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
