//! The Pulsar-shaped message model.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// The position of one entry (one write, possibly a batch) in a topic: Pulsar's ledger and entry ids.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct EntryId {
    pub ledger: u64,
    pub entry: u64,
}

impl EntryId {
    pub const EARLIEST: EntryId = EntryId {
        ledger: 0,
        entry: 0,
    };

    pub fn message(self, batch_index: u32) -> MessageId {
        MessageId {
            ledger: self.ledger,
            entry: self.entry,
            batch_index,
        }
    }
}

/// Pulsar's message id. Messages outside a batch have batch index 0 here (Pulsar's -1 is mapped to 0
/// by the Pulsar backend), so ids order the same way on every backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct MessageId {
    pub ledger: u64,
    pub entry: u64,
    pub batch_index: u32,
}

impl MessageId {
    pub fn entry_id(self) -> EntryId {
        EntryId {
            ledger: self.ledger,
            entry: self.entry,
        }
    }
}

impl std::fmt::Display for MessageId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.ledger, self.entry, self.batch_index)
    }
}

/// One message inside an entry, with the fields of Pulsar's `SingleMessageMetadata`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Message {
    /// Partition key (also used as the ordering key). Binary keys are allowed; the Pulsar backend
    /// stores non-UTF-8 keys base64-encoded with `partition_key_b64_encoded`, as Pulsar clients do.
    pub key: Option<Bytes>,
    /// The payload; `None` is Pulsar's `null_value` flag (a Kafka tombstone).
    pub value: Option<Bytes>,
    /// Properties in order; duplicate names are kept, as Pulsar's wire format allows.
    pub properties: Vec<(String, String)>,
    /// Event time in milliseconds since the epoch, if the producer gave one.
    pub event_time: Option<u64>,
    /// Not to be delivered before this time (ms since the epoch): Pulsar's `deliver_at_time`.
    /// Pulsar keeps it per entry, so an entry's messages share the latest of theirs; its
    /// broker honours it on Shared and Key_Shared subscriptions only, so readers of other
    /// subscriptions (and of the embedded backend) hold such messages back themselves.
    /// Not in the serde form: the embedded backend stores it apart, so its older entries read.
    #[serde(skip)]
    pub deliver_at: Option<u64>,
}

impl Message {
    /// Bytes this message costs, roughly as the wire would count them; used for size budgets.
    pub fn approximate_size(&self) -> usize {
        let props: usize = self.properties.iter().map(|(k, v)| k.len() + v.len()).sum();
        self.key.as_ref().map_or(0, |k| k.len())
            + self.value.as_ref().map_or(0, |v| v.len())
            + props
            + 16
    }
}

/// What a producer hands the backend: one entry, written atomically.
#[derive(Debug, Clone, Default)]
pub struct EntryToSend {
    pub messages: Vec<Message>,
    /// Producer name and sequence id for broker-side deduplication (Pulsar's dedup): an entry whose
    /// sequence id is not above the last one persisted for that producer name is a duplicate.
    pub dedup: Option<(String, u64)>,
    /// Whether the backend may store this entry together with the entries of the sends queued
    /// next to it, as one stored entry (see `SendReceipt::Persisted`). For front ends that find
    /// messages by the receipts' ids (Kafka offsets); not for AMQP queues, whose message counts
    /// come from Pulsar's backlog, which counts entries.
    pub coalesce: bool,
}

/// An entry as stored: the messages plus what the broker stamped on them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredEntry {
    pub id: EntryId,
    /// Broker publish time in milliseconds since the epoch.
    pub publish_time: u64,
    pub messages: Vec<Message>,
    /// The batch index of each message when the entry's messages are not all there (a
    /// compacted view left some out); `None` when message `i` has index `i`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_indexes: Option<Vec<u32>>,
}

impl StoredEntry {
    /// The batch index of the message at `position` in `messages`.
    pub fn batch_index(&self, position: usize) -> u32 {
        match &self.batch_indexes {
            Some(indexes) => indexes[position],
            None => position as u32,
        }
    }

    /// The messages with their batch indexes.
    pub fn indexed_messages(&self) -> impl Iterator<Item = (u32, &Message)> {
        self.messages
            .iter()
            .enumerate()
            .map(|(position, m)| (self.batch_index(position), m))
    }

    pub fn approximate_size(&self) -> usize {
        self.messages
            .iter()
            .map(Message::approximate_size)
            .sum::<usize>()
            + 24
    }
}

/// A message handed to a subscription's consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMessage {
    pub id: MessageId,
    pub publish_time: u64,
    pub message: Message,
    /// How often this message was delivered before and not acknowledged.
    pub redelivery_count: u32,
}
