//! The shapes of the admin REST API's JSON answers that the gateway reads (Pulsar's
//! `PartitionedTopicMetadata`, `TopicStats`, `PersistentTopicInternalStats` and the last
//! message id), and what it derives from them.

use std::collections::HashMap;

use gateway_core::backend::Acknowledged;
use gateway_core::{EntryId, MessageId};
use serde::Deserialize;

#[derive(Deserialize)]
pub(super) struct PartitionedMetadata {
    pub(super) partitions: u32,
}

#[derive(Deserialize)]
pub(super) struct TopicStats {
    #[serde(default)]
    pub(super) subscriptions: HashMap<String, SubscriptionStats>,
    #[serde(default)]
    pub(super) publishers: Vec<PublisherStats>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct PublisherStats {
    #[serde(default)]
    pub(super) producer_name: Option<String>,
    #[serde(default)]
    pub(super) access_mode: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct SubscriptionStats {
    pub(super) msg_backlog: u64,
    /// Messages dispatched to the subscription's consumers and not acknowledged.
    #[serde(default)]
    pub(super) unacked_messages: u64,
}

/// Pulsar's `MessageIdImpl`, or `BatchMessageIdImpl` when the last entry is a batch.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct LastMessageId {
    pub(super) ledger_id: i64,
    pub(super) entry_id: i64,
    pub(super) batch_index: Option<i32>,
}

impl LastMessageId {
    pub(super) fn to_message_id(&self) -> Option<MessageId> {
        // An empty topic answers its current ledger with entry -1 (or -1:-1, "earliest").
        if self.ledger_id < 0 || self.entry_id < 0 {
            return None;
        }
        Some(MessageId {
            ledger: self.ledger_id as u64,
            entry: self.entry_id as u64,
            // Pulsar's -1 (not a batch) is 0 in the gateway's ids.
            batch_index: self.batch_index.unwrap_or(0).max(0) as u32,
        })
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct InternalStats {
    #[serde(default)]
    pub(super) ledgers: Vec<LedgerStats>,
    #[serde(default)]
    pub(super) current_ledger_entries: u64,
    #[serde(default)]
    pub(super) cursors: HashMap<String, CursorStats>,
}

/// A subscription's cursor in the internal stats: positions as `ledger:entry` text.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct CursorStats {
    pub(super) mark_delete_position: String,
    /// Ranges open below and closed above, as `[(3:5..3:7],(3:8..3:10]]`.
    #[serde(default)]
    pub(super) individually_deleted_messages: String,
}

/// `ledger:entry`, where the entry may be -1 (before the ledger's first entry).
fn position(text: &str) -> Option<(u64, i64)> {
    let (ledger, entry) = text.trim().split_once(':')?;
    Some((ledger.parse().ok()?, entry.parse().ok()?))
}

/// The entry after a position.
fn after((ledger, entry): (u64, i64)) -> EntryId {
    EntryId {
        ledger,
        entry: (entry + 1).max(0) as u64,
    }
}

impl CursorStats {
    /// The entries the cursor acknowledged; `None` if Pulsar's text does not parse.
    pub(super) fn acknowledged(&self) -> Option<Acknowledged> {
        let from = after(position(&self.mark_delete_position)?);
        let mut ranges = Vec::new();
        for range in self.individually_deleted_messages.split('(').skip(1) {
            let (open, closed) = range.split_once("..")?;
            let closed = closed.split(']').next()?;
            let (ledger, entry) = position(closed)?;
            if entry < 0 {
                continue;
            }
            ranges.push((
                after(position(open)?),
                EntryId {
                    ledger,
                    entry: entry as u64,
                },
            ));
        }
        Some(Acknowledged { from, ranges })
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct LedgerStats {
    pub(super) ledger_id: u64,
    #[serde(default)]
    pub(super) entries: u64,
}

impl InternalStats {
    /// Each ledger's entry count: the ledger being written reports 0 entries until it is
    /// closed; its count is `currentLedgerEntries`.
    pub(super) fn entries(&self, index: usize) -> u64 {
        let l = &self.ledgers[index];
        if index + 1 == self.ledgers.len() {
            l.entries.max(self.current_ledger_entries)
        } else {
            l.entries
        }
    }

    pub(super) fn ledgers(&self) -> Vec<(u64, u64)> {
        (0..self.ledgers.len())
            .map(|i| (self.ledgers[i].ledger_id, self.entries(i)))
            .collect()
    }

    pub(super) fn first_entry(&self) -> Option<EntryId> {
        self.ledgers()
            .into_iter()
            .find(|(_, entries)| *entries > 0)
            .map(|(ledger, _)| EntryId { ledger, entry: 0 })
    }
}
