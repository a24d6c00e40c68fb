//! Transactions (Pulsar's PIP-31): entries written by several sends, to several topics, that
//! become readable together when the transaction commits and never when it aborts.

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::{BackendError, Result};
use crate::message::EntryToSend;
use crate::topic::TopicName;

use super::PendingSend;

/// A transaction's id, as Pulsar's transaction coordinator hands it out (`TxnID`: the
/// coordinator's id in the most significant bits, a sequence in the least).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TransactionId {
    pub most_bits: u64,
    pub least_bits: u64,
}

impl std::fmt::Display for TransactionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "({},{})", self.most_bits, self.least_bits)
    }
}

/// The contract, on every backend:
/// - entries sent in an open transaction are read by nobody (readers, consumers, compacted
///   readers) until it commits, and never if it aborts;
/// - while a transaction is open, readers stop before its first entry on each topic it wrote,
///   so entries written after it (in a transaction or not) wait for it to end: reading order is
///   writing order, with aborted entries left out (Pulsar's `maxReadPosition`);
/// - `Reading::last_message_id` reports no further than what readers may read;
/// - a transaction neither committed nor aborted within its timeout is aborted by the backend
///   itself, so a gateway that dies mid-transaction leaves nothing open.
#[async_trait]
pub trait Transactions: Send + Sync {
    /// Opens a transaction that the backend aborts by itself once `timeout` has passed without a
    /// commit or an abort. Fails `Unavailable` when the backend has no transaction coordinator
    /// (a Pulsar without `transactionCoordinatorEnabled`).
    async fn begin_transaction(&self, timeout: Duration) -> Result<TransactionId> {
        let _ = timeout;
        Err(BackendError::Unavailable(
            "this backend does not serve transactions".into(),
        ))
    }

    /// Registers `topic` (a partition, or a non-partitioned topic) as written by `txn`; the
    /// first call for a topic must come before `submit_in_transaction` to it. Calling it again
    /// for the same topic is harmless.
    async fn add_to_transaction(&self, txn: TransactionId, topic: &TopicName) -> Result<()> {
        let _ = (txn, topic);
        Err(BackendError::TransactionNotOpen(txn.to_string()))
    }

    /// Like `Producing::submit` (same ordering, same deduplication), but the entries belong to
    /// `txn`. The returned future resolves when they are persisted (still invisible to readers).
    async fn submit_in_transaction(
        &self,
        txn: TransactionId,
        topic: &TopicName,
        entries: Vec<EntryToSend>,
    ) -> Result<PendingSend> {
        let _ = (topic, entries);
        Err(BackendError::TransactionNotOpen(txn.to_string()))
    }

    /// Commits (`commit`) or aborts `txn`, returning once the outcome is final. Entries of its
    /// sends that were still pending are part of it only if they were persisted; call it after
    /// those futures resolved. Fails `TransactionNotOpen` when the transaction is unknown or
    /// already ended (for example aborted by its timeout).
    async fn end_transaction(&self, txn: TransactionId, commit: bool) -> Result<()> {
        let _ = commit;
        Err(BackendError::TransactionNotOpen(txn.to_string()))
    }
}
