//! Shared types for pulsar-gateway.
//!
//! Everything here is expressed in Apache Pulsar's terms (see `PulsarApi.proto`): message ids are
//! `(ledger, entry, batch index)`, an entry is a batch of messages written at once, and subscriptions
//! have Pulsar's types and acknowledgement modes. Protocol translators only talk to a [`Backend`], so
//! their logic is the same on the embedded backend and on a real Pulsar cluster.

pub mod backend;
pub mod budget;
pub mod error;
pub mod message;
pub mod partitioned;
pub mod recent;
pub mod retry_log;
pub mod table;
pub mod topic;

pub use backend::{
    Announcement, Backend, BackendRef, Consumer, Coordination, InitialPosition, Lease, PendingSend,
    Producing, Reader, Reading, SeekTarget, SendReceipt, SubscribeOptions, SubscriptionType,
    Subscriptions, TopicAdmin, TopicInfo, TransactionId, Transactions,
};
pub use error::{BackendError, ErrorSource, Result};
pub use message::{EntryId, EntryToSend, Message, MessageId, ReceivedMessage, StoredEntry};
pub use topic::TopicName;
