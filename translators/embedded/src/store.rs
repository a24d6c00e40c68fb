//! On-disk layout of the embedded backend, on redb (an embedded, transactional, pure-Rust B-tree
//! store), so that we write no file format of our own.
//!
//! Tables:
//! - `topics`: logical topic name -> partition count (0 = non-partitioned);
//! - `storage`: concrete topic (a partition or a non-partitioned topic) -> its numeric id;
//! - `entries`: (topic id, ledger, entry) -> encoded entry;
//! - `publish_times`: (topic id, publish time, ledger, entry) -> (), to seek by time;
//! - `dedup`: (topic id, producer name) -> last persisted sequence id;
//! - `sequences`: (topic id, ledger, entry) -> (producer name, sequence id) of each entry written
//!   with a deduplication sequence id, to find where a resend's original went;
//! - `cursors`: (topic id, subscription) -> encoded cursor (what is acknowledged);
//! - `counters`: named counters (next topic id, next ledger id);
//! - `topic_properties`: (logical topic name, key) -> value;
//! - `transactions`: open transaction -> its deadline (unix millis), so that a restart still
//!   aborts it on time;
//! - `transaction_topics`: (transaction, topic id) -> (), the topics added to an open transaction;
//! - `transaction_entries`: (transaction, topic id, ledger, entry) -> (), what an open
//!   transaction wrote, to mark it aborted if it aborts;
//! - `held`: (topic id, transaction) -> (ledger, entry), the first entry of each open transaction
//!   on a topic: readers stop before the lowest (Pulsar's `maxReadPosition`);
//! - `aborted`: (topic id, ledger, entry) -> (), entries of aborted transactions, never read.
//!
//! Like BookKeeper, ledger ids come from one global counter, and each topic starts a new ledger
//! when the backend opens and after `MAX_ENTRIES_PER_LEDGER` entries, as a Pulsar broker rolls
//! ledgers. Entry ids restart at 0 in each ledger.

use std::path::Path;

use gateway_core::{BackendError, EntryId, Message, MessageId, Result, StoredEntry};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

pub const TOPICS: TableDefinition<&str, u32> = TableDefinition::new("topics");
pub const STORAGE: TableDefinition<&str, u64> = TableDefinition::new("storage");
pub const ENTRIES: TableDefinition<(u64, u64, u64), &[u8]> = TableDefinition::new("entries");
pub const PUBLISH_TIMES: TableDefinition<(u64, u64, u64, u64), ()> =
    TableDefinition::new("publish_times");
pub const DEDUP: TableDefinition<(u64, &str), u64> = TableDefinition::new("dedup");
pub const SEQUENCES: TableDefinition<(u64, u64, u64), (&str, u64)> =
    TableDefinition::new("sequences");
pub const CURSORS: TableDefinition<(u64, &str), &[u8]> = TableDefinition::new("cursors");
pub const COUNTERS: TableDefinition<&str, u64> = TableDefinition::new("counters");
pub const TOPIC_PROPERTIES: TableDefinition<(&str, &str), &str> =
    TableDefinition::new("topic_properties");
pub const TRANSACTIONS: TableDefinition<u64, u64> = TableDefinition::new("transactions");
pub const TRANSACTION_TOPICS: TableDefinition<(u64, u64), ()> =
    TableDefinition::new("transaction_topics");
pub const TRANSACTION_ENTRIES: TableDefinition<(u64, u64, u64, u64), ()> =
    TableDefinition::new("transaction_entries");
pub const HELD: TableDefinition<(u64, u64), (u64, u64)> = TableDefinition::new("held");
pub const ABORTED: TableDefinition<(u64, u64, u64), ()> = TableDefinition::new("aborted");

/// Pulsar's default `managedLedgerMaxEntriesPerLedger`; also keeps entry ids inside the 20 bits
/// the Kafka offset encoding gives them.
pub const MAX_ENTRIES_PER_LEDGER: u64 = 50_000;

pub fn storage_error(e: impl std::fmt::Display) -> BackendError {
    BackendError::Storage(e.to_string())
}

pub fn open_database(dir: &Path) -> Result<Database> {
    std::fs::create_dir_all(dir).map_err(storage_error)?;
    let db = Database::create(dir.join("embedded.redb")).map_err(storage_error)?;
    // Create every table up front so read transactions never meet a missing table.
    let txn = db.begin_write().map_err(storage_error)?;
    {
        txn.open_table(TOPICS).map_err(storage_error)?;
        txn.open_table(STORAGE).map_err(storage_error)?;
        txn.open_table(ENTRIES).map_err(storage_error)?;
        txn.open_table(PUBLISH_TIMES).map_err(storage_error)?;
        txn.open_table(DEDUP).map_err(storage_error)?;
        txn.open_table(SEQUENCES).map_err(storage_error)?;
        txn.open_table(CURSORS).map_err(storage_error)?;
        txn.open_table(COUNTERS).map_err(storage_error)?;
        txn.open_table(TOPIC_PROPERTIES).map_err(storage_error)?;
        txn.open_table(TRANSACTIONS).map_err(storage_error)?;
        txn.open_table(TRANSACTION_TOPICS).map_err(storage_error)?;
        txn.open_table(TRANSACTION_ENTRIES).map_err(storage_error)?;
        txn.open_table(HELD).map_err(storage_error)?;
        txn.open_table(ABORTED).map_err(storage_error)?;
    }
    txn.commit().map_err(storage_error)?;
    Ok(db)
}

/// Stored entry value: message count and publish time in a fixed header, so that backlog counts
/// and scans need not decode the messages, then the messages, then, only if one of them has a
/// deliver-at time, each message's (`DeliverAt`); an entry without that trailer (all entries
/// written before it existed) has none.
#[derive(Serialize, Deserialize)]
struct EncodedMessages<'a> {
    #[serde(borrow)]
    messages: std::borrow::Cow<'a, [Message]>,
}

#[derive(Serialize, Deserialize)]
struct DeliverAt(Vec<Option<u64>>);

pub fn encode_entry(publish_time: u64, messages: &[Message]) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(
        12 + messages
            .iter()
            .map(Message::approximate_size)
            .sum::<usize>(),
    );
    out.extend_from_slice(&(messages.len() as u32).to_le_bytes());
    out.extend_from_slice(&publish_time.to_le_bytes());
    let mut body = postcard::to_extend(
        &EncodedMessages {
            messages: std::borrow::Cow::Borrowed(messages),
        },
        out,
    )
    .map_err(storage_error)?;
    if messages.iter().any(|m| m.deliver_at.is_some()) {
        let times = DeliverAt(messages.iter().map(|m| m.deliver_at).collect());
        body = postcard::to_extend(&times, body).map_err(storage_error)?;
    }
    Ok(body)
}

pub fn entry_message_count(value: &[u8]) -> u32 {
    u32::from_le_bytes(value[0..4].try_into().expect("entry header is 12 bytes"))
}

pub fn decode_entry(id: EntryId, value: &[u8]) -> Result<StoredEntry> {
    if value.len() < 12 {
        return Err(storage_error(format!("entry {id:?} is truncated")));
    }
    let publish_time = u64::from_le_bytes(value[4..12].try_into().expect("checked length"));
    let (decoded, rest): (EncodedMessages<'_>, _) =
        postcard::take_from_bytes(&value[12..]).map_err(storage_error)?;
    let mut messages = decoded.messages.into_owned();
    if !rest.is_empty() {
        let DeliverAt(times) = postcard::from_bytes(rest).map_err(storage_error)?;
        for (m, at) in messages.iter_mut().zip(times) {
            m.deliver_at = at;
        }
    }
    Ok(StoredEntry {
        id,
        publish_time,
        messages,
        batch_indexes: None,
    })
}

/// What a subscription has acknowledged: everything before `read_from`, plus individually
/// acknowledged messages after it (whole entries, or batch indexes of partly acknowledged ones).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    pub read_from: EntryId,
    pub acked: std::collections::BTreeMap<EntryId, AckedPart>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AckedPart {
    Whole,
    /// Acknowledged batch indexes of an entry holding `of` messages.
    Indexes {
        of: u32,
        acked: std::collections::BTreeSet<u32>,
    },
}

pub fn encode_cursor(cursor: &Cursor) -> Result<Vec<u8>> {
    postcard::to_stdvec(cursor).map_err(storage_error)
}

pub fn decode_cursor(value: &[u8]) -> Result<Cursor> {
    postcard::from_bytes(value).map_err(storage_error)
}

/// Reads a named counter's next value and stores the one after it.
pub fn next_counter(txn: &redb::WriteTransaction, name: &str) -> Result<u64> {
    let mut counters = txn.open_table(COUNTERS).map_err(storage_error)?;
    let next = counters
        .get(name)
        .map_err(storage_error)?
        .map_or(1, |v| v.value());
    counters.insert(name, next + 1).map_err(storage_error)?;
    Ok(next)
}

/// What readers of one topic may read, as of one read transaction (so that the limit and the
/// entries are seen at the same instant): entries before the first entry of the oldest open
/// transaction that wrote to it, less those of aborted transactions.
pub struct Visibility {
    topic_id: u64,
    /// The first entry readers may not read yet, if an open transaction holds the topic back.
    limit: Option<EntryId>,
    aborted: redb::ReadOnlyTable<(u64, u64, u64), ()>,
}

impl Visibility {
    pub fn new(txn: &redb::ReadTransaction, topic_id: u64) -> Result<Visibility> {
        let held = txn.open_table(HELD).map_err(storage_error)?;
        let mut limit = None;
        for item in held
            .range((topic_id, 0)..=(topic_id, u64::MAX))
            .map_err(storage_error)?
        {
            let (ledger, entry) = item.map_err(storage_error)?.1.value();
            let first = EntryId { ledger, entry };
            limit = Some(limit.map_or(first, |l: EntryId| l.min(first)));
        }
        Ok(Visibility {
            topic_id,
            limit,
            aborted: txn.open_table(ABORTED).map_err(storage_error)?,
        })
    }

    /// Whether `id` is at or past where an open transaction holds the topic back.
    pub fn is_held(&self, id: EntryId) -> bool {
        self.limit.is_some_and(|limit| id >= limit)
    }

    pub fn is_aborted(&self, id: EntryId) -> Result<bool> {
        Ok(self
            .aborted
            .get((self.topic_id, id.ledger, id.entry))
            .map_err(storage_error)?
            .is_some())
    }

    /// The last message readers may reach: that of the last entry before the limit (aborted or
    /// not: a position readers pass), or `None` if there is none.
    pub fn last_message(
        &self,
        entries: &impl ReadableTable<(u64, u64, u64), &'static [u8]>,
    ) -> Result<Option<MessageId>> {
        let end = match self.limit {
            Some(limit) => std::ops::Bound::Excluded((self.topic_id, limit.ledger, limit.entry)),
            None => std::ops::Bound::Included((self.topic_id, u64::MAX, u64::MAX)),
        };
        let mut range = entries
            .range::<(u64, u64, u64)>((std::ops::Bound::Included((self.topic_id, 0, 0)), end))
            .map_err(storage_error)?;
        match range.next_back() {
            Some(item) => {
                let (key, value) = item.map_err(storage_error)?;
                let (_, ledger, entry) = key.value();
                let count = entry_message_count(value.value()).max(1);
                Ok(Some(EntryId { ledger, entry }.message(count - 1)))
            }
            None => Ok(None),
        }
    }
}

/// The last message readers of a topic may reach (see [`Visibility::last_message`]).
pub fn last_visible(db: &Database, topic_id: u64) -> Result<Option<MessageId>> {
    let txn = db.begin_read().map_err(storage_error)?;
    let entries = txn.open_table(ENTRIES).map_err(storage_error)?;
    Visibility::new(&txn, topic_id)?.last_message(&entries)
}

/// The readable entries of a topic from `start` on (see [`Visibility`]), bounded by count and
/// (after the first) bytes.
pub fn read_entries(
    db: &Database,
    topic_id: u64,
    start: EntryId,
    max_entries: usize,
    max_bytes: usize,
) -> Result<Vec<StoredEntry>> {
    let txn = db.begin_read().map_err(storage_error)?;
    let table = txn.open_table(ENTRIES).map_err(storage_error)?;
    let visibility = Visibility::new(&txn, topic_id)?;
    let mut out = Vec::new();
    let mut bytes = 0usize;
    let range = table
        .range((topic_id, start.ledger, start.entry)..=(topic_id, u64::MAX, u64::MAX))
        .map_err(storage_error)?;
    for item in range {
        let (key, value) = item.map_err(storage_error)?;
        let (_, ledger, entry) = key.value();
        let id = EntryId { ledger, entry };
        if visibility.is_held(id) {
            break;
        }
        if visibility.is_aborted(id)? {
            continue;
        }
        let value = value.value();
        if !out.is_empty() && bytes + value.len() > max_bytes {
            break;
        }
        bytes += value.len();
        out.push(decode_entry(id, value)?);
        if out.len() >= max_entries {
            break;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(value: &'static str, deliver_at: Option<u64>) -> Message {
        Message {
            value: Some(bytes::Bytes::from_static(value.as_bytes())),
            properties: vec![("k".into(), "v".into())],
            deliver_at,
            ..Default::default()
        }
    }

    #[test]
    fn deliver_at_times_round_trip() {
        let id = EntryId {
            ledger: 1,
            entry: 2,
        };
        let messages = vec![message("a", Some(1_700_000_000_000)), message("b", None)];
        let raw = encode_entry(7, &messages).unwrap();
        let entry = decode_entry(id, &raw).unwrap();
        assert_eq!(entry.messages, messages);
        assert_eq!(entry.publish_time, 7);
    }

    #[test]
    fn entries_without_deliver_at_have_no_trailer_and_read_as_before() {
        let id = EntryId::EARLIEST;
        let messages = vec![message("a", None)];
        let raw = encode_entry(7, &messages).unwrap();
        // The layout of entries written before deliver-at times existed.
        let mut old = Vec::new();
        old.extend_from_slice(&1u32.to_le_bytes());
        old.extend_from_slice(&7u64.to_le_bytes());
        let old = postcard::to_extend(
            &EncodedMessages {
                messages: std::borrow::Cow::Borrowed(&messages),
            },
            old,
        )
        .unwrap();
        assert_eq!(raw, old);
        assert_eq!(decode_entry(id, &old).unwrap().messages, messages);
    }
}
