//! A compacted "table" topic: a key-value map kept as a topic where the latest message for a key
//! wins and a null value deletes it (Pulsar's topic compaction and TableView semantics). Gateway
//! metadata (topology, group state) is stored this way so that every instance can rebuild it.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;

use crate::backend::Backend;
use crate::error::Result;
use crate::message::{EntryId, EntryToSend, Message};
use crate::topic::TopicName;

/// How long to wait for entries known to exist before giving up on a table load.
const LOAD_WAIT: Duration = Duration::from_secs(10);

/// Writes `key = value` (or deletes `key` when `value` is `None`) to a table topic.
pub async fn put(
    backend: &dyn Backend,
    topic: &TopicName,
    key: &str,
    value: Option<Bytes>,
) -> Result<()> {
    let message = Message {
        key: Some(Bytes::copy_from_slice(key.as_bytes())),
        value,
        ..Message::default()
    };
    backend
        .send(
            topic,
            vec![EntryToSend {
                messages: vec![message],
                dedup: None,
                coalesce: false,
            }],
        )
        .await?;
    Ok(())
}

/// Writes several keys in one entry, so they are persisted together or not at all, and returns
/// once persisted. Call order is write order, so later calls win on load.
pub async fn put_all(
    backend: &dyn Backend,
    topic: &TopicName,
    records: Vec<(String, Option<Bytes>)>,
) -> Result<()> {
    submit_all(backend, topic, records).await?.await?;
    Ok(())
}

/// Like `put_all`, but returns once the entry is queued (in call order); the returned future
/// resolves when it is persisted. Holding a lock across this call, and not across the wait,
/// orders writes without serialising their round trips.
pub async fn submit_all(
    backend: &dyn Backend,
    topic: &TopicName,
    records: Vec<(String, Option<Bytes>)>,
) -> Result<crate::backend::PendingSend> {
    backend.submit(topic, vec![entry(records)]).await
}

/// One entry holding these key/value records (a `None` value deletes its key), for writers that
/// hold the table's lease.
pub fn entry(records: Vec<(String, Option<Bytes>)>) -> EntryToSend {
    let messages = records
        .into_iter()
        .map(|(key, value)| Message {
            key: Some(Bytes::from(key.into_bytes())),
            value,
            ..Message::default()
        })
        .collect();
    EntryToSend {
        messages,
        dedup: None,
        coalesce: false,
    }
}

/// Reads a table topic from the start and folds it into its current state.
pub async fn load(backend: &dyn Backend, topic: &TopicName) -> Result<BTreeMap<String, Bytes>> {
    Ok(load_counted(backend, topic).await?.0)
}

/// `load`, also telling how many messages were read (against the number of keys, a measure of
/// how much compaction would save).
pub async fn load_counted(
    backend: &dyn Backend,
    topic: &TopicName,
) -> Result<(BTreeMap<String, Bytes>, usize)> {
    let loaded = load_to_end(backend, topic).await?;
    Ok((loaded.table, loaded.read))
}

/// A table as `load_to_end` read it.
#[derive(Debug, Default)]
pub struct Loaded {
    pub table: BTreeMap<String, Bytes>,
    /// Messages read (against the number of keys, a measure of how much compaction would save).
    pub read: usize,
    /// The topic's last entry when the load began, which the load read up to (`None`: empty). A
    /// writer holding the table's lease knows from it whether anyone wrote after it.
    pub last: Option<EntryId>,
}

/// `load`, also telling how many messages were read and up to which entry.
pub async fn load_to_end(backend: &dyn Backend, topic: &TopicName) -> Result<Loaded> {
    let mut table = BTreeMap::new();
    let mut read = 0;
    let Some(last) = backend.last_message_id(topic).await? else {
        return Ok(Loaded::default());
    };
    let mut reader = backend
        .open_compacted_reader(topic, EntryId::EARLIEST)
        .await?;
    loop {
        // Entries up to `last` exist, so waiting only covers their way to us.
        let entries = reader.read(1024, 4 << 20, LOAD_WAIT).await?;
        let done = entries.is_empty() || entries.last().is_some_and(|e| e.id >= last.entry_id());
        for entry in entries {
            read += entry.messages.len();
            for m in entry.messages {
                let Some(key) = m.key else { continue };
                let key = String::from_utf8_lossy(&key).into_owned();
                match m.value {
                    Some(v) => table.insert(key, v),
                    None => table.remove(&key),
                };
            }
        }
        if done {
            return Ok(Loaded {
                table,
                read,
                last: Some(last.entry_id()),
            });
        }
    }
}
