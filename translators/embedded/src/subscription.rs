//! Durable subscriptions: a persisted cursor (what is acknowledged) plus the in-memory dispatch
//! state (what is out with which consumer), with Pulsar's four subscription types.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use gateway_core::backend::{Acknowledged, InitialPosition, SeekTarget, SubscriptionType};
use gateway_core::{BackendError, Consumer, EntryId, MessageId, ReceivedMessage, Result};
use redb::ReadableDatabase;
use tokio::sync::watch;

use crate::store::{self, storage_error, AckedPart, Cursor, CURSORS, ENTRIES};
use crate::topics::{TopicState, Topics};

/// Entries read from storage per dispatch round.
const DISPATCH_ENTRIES: usize = 64;

pub struct SubscriptionState {
    sub_type: SubscriptionType,
    cursor: Cursor,
    /// The next entry to read from storage for dispatch.
    dispatch_from: EntryId,
    /// Messages to deliver again before reading new ones.
    redeliver: BTreeMap<MessageId, ReceivedMessage>,
    /// Key_Shared: messages read for a consumer other than the one that asked.
    held: HashMap<u64, VecDeque<ReceivedMessage>>,
    /// Delivered and not yet acknowledged: message -> consumer.
    pending: HashMap<MessageId, (u64, ReceivedMessage)>,
    /// Attached consumers in order of arrival; for Failover the first is the active one.
    consumers: Vec<u64>,
    next_consumer: u64,
}

fn load_cursor(topics: &Topics, topic: &TopicState, name: &str) -> Result<Option<Cursor>> {
    let txn = topics.db.begin_read().map_err(storage_error)?;
    let table = txn.open_table(CURSORS).map_err(storage_error)?;
    match table.get((topic.id, name)).map_err(storage_error)? {
        Some(v) => Ok(Some(store::decode_cursor(v.value())?)),
        None => Ok(None),
    }
}

fn save_cursor(topics: &Topics, topic: &TopicState, name: &str, cursor: &Cursor) -> Result<()> {
    let value = store::encode_cursor(cursor)?;
    let txn = topics.db.begin_write().map_err(storage_error)?;
    txn.open_table(CURSORS)
        .map_err(storage_error)?
        .insert((topic.id, name), value.as_slice())
        .map_err(storage_error)?;
    txn.commit().map_err(storage_error)
}

fn after(id: EntryId) -> EntryId {
    EntryId {
        ledger: id.ledger,
        entry: id.entry + 1,
    }
}

/// The first stored entry at or after `from`, with its message count.
fn next_stored_entry(
    topics: &Topics,
    topic: &TopicState,
    from: EntryId,
) -> Result<Option<(EntryId, u32)>> {
    Ok(next_entry_of(topics, topic, from)?.map(|(id, count, _)| (id, count)))
}

/// The first stored entry at or after `from`, with its message count and whether a transaction
/// that wrote it aborted.
fn next_entry_of(
    topics: &Topics,
    topic: &TopicState,
    from: EntryId,
) -> Result<Option<(EntryId, u32, bool)>> {
    let txn = topics.db.begin_read().map_err(storage_error)?;
    let table = txn.open_table(ENTRIES).map_err(storage_error)?;
    let visibility = store::Visibility::new(&txn, topic.id)?;
    let mut range = table
        .range((topic.id, from.ledger, from.entry)..=(topic.id, u64::MAX, u64::MAX))
        .map_err(storage_error)?;
    match range.next() {
        Some(item) => {
            let (key, value) = item.map_err(storage_error)?;
            let (_, ledger, entry) = key.value();
            let id = EntryId { ledger, entry };
            Ok(Some((
                id,
                store::entry_message_count(value.value()),
                visibility.is_aborted(id)?,
            )))
        }
        None => Ok(None),
    }
}

/// Attaches a new consumer, creating the subscription on first use.
pub fn attach(
    topics: Arc<Topics>,
    topic: Arc<TopicState>,
    name: &str,
    sub_type: SubscriptionType,
    initial: InitialPosition,
) -> Result<Box<dyn Consumer>> {
    let shared = {
        let mut subs = topic.subscriptions.lock().expect("subscriptions lock");
        match subs.get(name) {
            Some(s) => s.clone(),
            None => {
                let cursor = match load_cursor(&topics, &topic, name)? {
                    Some(c) => c,
                    None => {
                        let read_from = match initial {
                            InitialPosition::Earliest => EntryId::EARLIEST,
                            // After what readers may read: an open transaction's entries, once
                            // committed, still reach the new subscription.
                            InitialPosition::Latest => store::last_visible(&topics.db, topic.id)?
                                .map_or(EntryId::EARLIEST, |m| after(m.entry_id())),
                        };
                        let cursor = Cursor {
                            read_from,
                            acked: BTreeMap::new(),
                        };
                        save_cursor(&topics, &topic, name, &cursor)?;
                        cursor
                    }
                };
                let state = Arc::new(Mutex::new(SubscriptionState {
                    sub_type,
                    dispatch_from: cursor.read_from,
                    cursor,
                    redeliver: BTreeMap::new(),
                    held: HashMap::new(),
                    pending: HashMap::new(),
                    consumers: Vec::new(),
                    next_consumer: 1,
                }));
                subs.insert(name.to_owned(), state.clone());
                state
            }
        }
    };
    let id = {
        let mut state = shared.lock().expect("subscription lock");
        if !state.consumers.is_empty()
            && (state.sub_type != sub_type || sub_type == SubscriptionType::Exclusive)
        {
            return Err(BackendError::ConsumerBusy(name.to_owned()));
        }
        state.sub_type = sub_type;
        let id = state.next_consumer;
        state.next_consumer += 1;
        state.consumers.push(id);
        id
    };
    // A new Key_Shared member changes the key ranges; wake the others to re-read.
    topic.notify();
    Ok(Box::new(EmbeddedConsumer {
        changed: topic.changed.subscribe(),
        core: Arc::new(ConsumerCore {
            topics,
            topic,
            name: name.to_owned(),
            state: shared,
            id,
        }),
    }))
}

pub fn delete(topics: &Topics, topic: &TopicState, name: &str) -> Result<()> {
    let mut subs = topic.subscriptions.lock().expect("subscriptions lock");
    if let Some(state) = subs.get(name) {
        if !state
            .lock()
            .expect("subscription lock")
            .consumers
            .is_empty()
        {
            return Err(BackendError::ConsumerBusy(name.to_owned()));
        }
    }
    let txn = topics.db.begin_write().map_err(storage_error)?;
    let existed = txn
        .open_table(CURSORS)
        .map_err(storage_error)?
        .remove((topic.id, name))
        .map_err(storage_error)?
        .is_some();
    txn.commit().map_err(storage_error)?;
    subs.remove(name);
    if existed {
        Ok(())
    } else {
        Err(BackendError::SubscriptionNotFound(name.to_owned()))
    }
}

pub fn list(topics: &Topics, topic: &TopicState) -> Result<Vec<String>> {
    let txn = topics.db.begin_read().map_err(storage_error)?;
    let table = txn.open_table(CURSORS).map_err(storage_error)?;
    let mut names = Vec::new();
    for item in table.range((topic.id, "")..).map_err(storage_error)? {
        let (key, _) = item.map_err(storage_error)?;
        let (id, name) = key.value();
        if id != topic.id {
            break;
        }
        names.push(name.to_owned());
    }
    Ok(names)
}

pub fn backlog(topics: &Topics, topic: &TopicState, name: &str) -> Result<u64> {
    let cursor = match topic
        .subscriptions
        .lock()
        .expect("subscriptions lock")
        .get(name)
    {
        Some(state) => state.lock().expect("subscription lock").cursor.clone(),
        None => load_cursor(topics, topic, name)?
            .ok_or_else(|| BackendError::SubscriptionNotFound(name.to_owned()))?,
    };
    let txn = topics.db.begin_read().map_err(storage_error)?;
    let table = txn.open_table(ENTRIES).map_err(storage_error)?;
    let visibility = store::Visibility::new(&txn, topic.id)?;
    let mut backlog = 0u64;
    let start = cursor.read_from;
    for item in table
        .range((topic.id, start.ledger, start.entry)..=(topic.id, u64::MAX, u64::MAX))
        .map_err(storage_error)?
    {
        let (key, _) = item.map_err(storage_error)?;
        let (_, ledger, entry) = key.value();
        let id = EntryId { ledger, entry };
        // Only what consumers may receive: not what an open transaction holds back, nor
        // aborted entries (Pulsar acknowledges those on the subscription as it skips them).
        if visibility.is_held(id) {
            break;
        }
        if visibility.is_aborted(id)? {
            continue;
        }
        // Like Pulsar's msgBacklog: an entry counts once until all its messages are acknowledged.
        backlog += match cursor.acked.get(&id) {
            Some(AckedPart::Whole) => 0,
            _ => 1,
        };
    }
    Ok(backlog)
}

/// What the subscription acknowledged: its cursor, less the entries acknowledged in part.
pub fn acknowledged(topics: &Topics, topic: &TopicState, name: &str) -> Result<Acknowledged> {
    let cursor = match topic
        .subscriptions
        .lock()
        .expect("subscriptions lock")
        .get(name)
    {
        Some(state) => state.lock().expect("subscription lock").cursor.clone(),
        None => load_cursor(topics, topic, name)?
            .ok_or_else(|| BackendError::SubscriptionNotFound(name.to_owned()))?,
    };
    let mut ranges: Vec<(EntryId, EntryId)> = Vec::new();
    for (id, part) in &cursor.acked {
        if *part != AckedPart::Whole {
            continue;
        }
        match ranges.last_mut() {
            Some((_, last)) if after(*last) == *id => *last = *id,
            _ => ranges.push((*id, *id)),
        }
    }
    Ok(Acknowledged {
        from: cursor.read_from,
        ranges,
    })
}

/// The backlog less the messages delivered to consumers and not yet acknowledged.
pub fn ready(topics: &Topics, topic: &TopicState, name: &str) -> Result<u64> {
    let backlog = backlog(topics, topic, name)?;
    let delivered = topic
        .subscriptions
        .lock()
        .expect("subscriptions lock")
        .get(name)
        .map_or(0, |state| {
            state.lock().expect("subscription lock").pending.len() as u64
        });
    Ok(backlog.saturating_sub(delivered))
}

impl SubscriptionState {
    fn is_acked(&self, id: MessageId) -> bool {
        if id.entry_id() < self.cursor.read_from {
            return true;
        }
        match self.cursor.acked.get(&id.entry_id()) {
            Some(AckedPart::Whole) => true,
            Some(AckedPart::Indexes { acked, .. }) => acked.contains(&id.batch_index),
            None => false,
        }
    }

    /// The consumer that a message belongs to, under the subscription type.
    fn owner(&self, asking: u64, message: &ReceivedMessage) -> u64 {
        match self.sub_type {
            SubscriptionType::Shared => asking,
            SubscriptionType::Exclusive | SubscriptionType::Failover => self.consumers[0],
            SubscriptionType::KeyShared => {
                let mut sorted = self.consumers.clone();
                sorted.sort_unstable();
                let mut hasher = DefaultHasher::new();
                message.message.key.hash(&mut hasher);
                sorted[(hasher.finish() % sorted.len() as u64) as usize]
            }
        }
    }

    fn is_active(&self, consumer: u64) -> bool {
        match self.sub_type {
            SubscriptionType::Exclusive | SubscriptionType::Failover => {
                self.consumers.first() == Some(&consumer)
            }
            SubscriptionType::Shared | SubscriptionType::KeyShared => true,
        }
    }

    /// Marks one message acknowledged; `count` is the number of messages in its entry.
    fn mark_acked(&mut self, id: MessageId, count: u32) {
        if self.is_acked(id) {
            return;
        }
        let part = self
            .cursor
            .acked
            .entry(id.entry_id())
            .or_insert_with(|| AckedPart::Indexes {
                of: count,
                acked: Default::default(),
            });
        if let AckedPart::Indexes { of, acked } = part {
            acked.insert(id.batch_index);
            if acked.len() as u32 >= *of {
                *part = AckedPart::Whole;
            }
        }
    }

    /// Moves `read_from` past the acknowledged prefix. Aborted entries count as acknowledged:
    /// no consumer will ever receive them (Pulsar's dispatcher acknowledges them as it skips).
    fn advance(&mut self, topics: &Topics, topic: &TopicState) -> Result<()> {
        while let Some((next, _, aborted)) = next_entry_of(topics, topic, self.cursor.read_from)? {
            if !aborted && self.cursor.acked.get(&next) != Some(&AckedPart::Whole) {
                break;
            }
            self.cursor.acked.remove(&next);
            self.cursor.read_from = after(next);
        }
        Ok(())
    }

    fn detach(&mut self, consumer: u64) {
        self.consumers.retain(|c| *c != consumer);
        let mine: Vec<MessageId> = self
            .pending
            .iter()
            .filter(|(_, (owner, _))| *owner == consumer)
            .map(|(id, _)| *id)
            .collect();
        // As in Pulsar, messages handed back by a leaving consumer keep their redelivery count;
        // only negative acknowledgements raise it.
        for id in mine {
            if let Some((_, m)) = self.pending.remove(&id) {
                self.redeliver.insert(id, m);
            }
        }
        for m in self.held.remove(&consumer).unwrap_or_default() {
            self.redeliver.insert(m.id, m);
        }
    }
}

pub struct EmbeddedConsumer {
    core: Arc<ConsumerCore>,
    changed: watch::Receiver<u64>,
}

/// What storage work of a consumer needs; shared with the blocking threads that run it.
struct ConsumerCore {
    topics: Arc<Topics>,
    topic: Arc<TopicState>,
    name: String,
    state: Arc<Mutex<SubscriptionState>>,
    id: u64,
}

impl EmbeddedConsumer {
    /// Runs storage work for this consumer on a blocking thread.
    async fn with_core<T: Send + 'static>(
        &self,
        work: impl FnOnce(&ConsumerCore) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let core = self.core.clone();
        crate::blocking(move || work(&core)).await
    }
}

impl ConsumerCore {
    /// One dispatch round for this consumer: its held messages, then redeliveries, then new
    /// entries from storage.
    fn dispatch(&self, max: usize) -> Result<Vec<ReceivedMessage>> {
        let mut state = self.state.lock().expect("subscription lock");
        if !state.is_active(self.id) {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        if let Some(held) = state.held.get_mut(&self.id) {
            while out.len() < max {
                match held.pop_front() {
                    Some(m) => out.push(m),
                    None => break,
                }
            }
        }
        let redeliverable: Vec<MessageId> = state
            .redeliver
            .values()
            .filter(|m| state.owner(self.id, m) == self.id)
            .map(|m| m.id)
            .take(max.saturating_sub(out.len()))
            .collect();
        for id in redeliverable {
            if let Some(m) = state.redeliver.remove(&id) {
                if !state.is_acked(id) {
                    out.push(m);
                }
            }
        }
        while out.len() < max {
            let entries = store::read_entries(
                &self.topics.db,
                self.topic.id,
                state.dispatch_from,
                DISPATCH_ENTRIES,
                4 << 20,
            )?;
            let Some(last) = entries.last() else { break };
            state.dispatch_from = after(last.id);
            for entry in entries {
                for (index, message) in entry.messages.into_iter().enumerate() {
                    let received = ReceivedMessage {
                        id: entry.id.message(index as u32),
                        publish_time: entry.publish_time,
                        message,
                        redelivery_count: 0,
                    };
                    if state.is_acked(received.id) {
                        continue;
                    }
                    let owner = state.owner(self.id, &received);
                    if owner == self.id && out.len() < max {
                        out.push(received);
                    } else if state.sub_type == SubscriptionType::Shared {
                        // Any consumer of a Shared subscription may take what this one left.
                        state.redeliver.insert(received.id, received);
                    } else {
                        state.held.entry(owner).or_default().push_back(received);
                    }
                }
            }
        }
        for m in &out {
            state.pending.insert(m.id, (self.id, m.clone()));
        }
        Ok(out)
    }

    fn ack_many(&self, ids: &[MessageId]) -> Result<()> {
        let mut state = self.state.lock().expect("subscription lock");
        for id in ids {
            let count = match state.pending.remove(id) {
                Some(_) | None => match state.cursor.acked.get(&id.entry_id()) {
                    Some(AckedPart::Indexes { of, .. }) => *of,
                    _ => match next_stored_entry(&self.topics, &self.topic, id.entry_id())? {
                        Some((found, count)) if found == id.entry_id() => count,
                        _ => continue,
                    },
                },
            };
            state.mark_acked(*id, count);
        }
        state.advance(&self.topics, &self.topic)?;
        save_cursor(&self.topics, &self.topic, &self.name, &state.cursor)
    }
}

#[async_trait]
impl Consumer for EmbeddedConsumer {
    async fn receive(&mut self, max: usize, wait: Duration) -> Result<Vec<ReceivedMessage>> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            self.changed.borrow_and_update();
            let got = self
                .with_core(move |core| core.dispatch(max.max(1)))
                .await?;
            if !got.is_empty() {
                return Ok(got);
            }
            if tokio::time::timeout_at(deadline, self.changed.changed())
                .await
                .is_err()
            {
                return Ok(Vec::new());
            }
        }
    }

    async fn ack(&mut self, ids: &[MessageId]) -> Result<()> {
        let ids = ids.to_vec();
        self.with_core(move |core| core.ack_many(&ids)).await
    }

    async fn ack_cumulative(&mut self, id: MessageId) -> Result<()> {
        let sub_type = self.core.state.lock().expect("subscription lock").sub_type;
        if matches!(
            sub_type,
            SubscriptionType::Shared | SubscriptionType::KeyShared
        ) {
            return Err(BackendError::InvalidArgument(
                "cumulative acknowledgement is not allowed on Shared or Key_Shared subscriptions"
                    .into(),
            ));
        }
        self.with_core(move |core| {
            let mut state = core.state.lock().expect("subscription lock");
            let mut from = state.cursor.read_from;
            while let Some((entry, count)) = next_stored_entry(&core.topics, &core.topic, from)? {
                if entry > id.entry_id() {
                    break;
                }
                let last_index = if entry == id.entry_id() {
                    id.batch_index
                } else {
                    count.saturating_sub(1)
                };
                for index in 0..=last_index.min(count.saturating_sub(1)) {
                    state.pending.remove(&entry.message(index));
                    state.mark_acked(entry.message(index), count);
                }
                from = after(entry);
            }
            state.advance(&core.topics, &core.topic)?;
            save_cursor(&core.topics, &core.topic, &core.name, &state.cursor)
        })
        .await
    }

    async fn nack(&mut self, ids: &[MessageId]) -> Result<()> {
        {
            let mut state = self.core.state.lock().expect("subscription lock");
            for id in ids {
                if let Some((_, mut m)) = state.pending.remove(id) {
                    m.redelivery_count += 1;
                    state.redeliver.insert(*id, m);
                }
            }
        }
        self.core.topic.notify();
        Ok(())
    }

    async fn seek(&mut self, target: SeekTarget) -> Result<()> {
        let start = match target {
            SeekTarget::Message(id) => id,
            SeekTarget::PublishTime(time) => {
                let topics = self.core.topics.clone();
                let topic_id = self.core.topic.id;
                let found = crate::blocking(move || {
                    let txn = topics.db.begin_read().map_err(storage_error)?;
                    let index = txn
                        .open_table(crate::store::PUBLISH_TIMES)
                        .map_err(storage_error)?;
                    let mut range = index
                        .range((topic_id, time, 0, 0)..=(topic_id, u64::MAX, u64::MAX, u64::MAX))
                        .map_err(storage_error)?;
                    Ok(match range.next() {
                        Some(item) => {
                            let (key, _) = item.map_err(storage_error)?;
                            let (_, _, ledger, entry) = key.value();
                            Some(EntryId { ledger, entry })
                        }
                        None => None,
                    })
                })
                .await?;
                let (topics, topic_id) = (self.core.topics.clone(), self.core.topic.id);
                let last =
                    crate::blocking(move || store::last_visible(&topics.db, topic_id)).await?;
                match (found, last) {
                    (Some(entry), _) => entry.message(0),
                    (None, Some(last)) => after(last.entry_id()).message(0),
                    (None, None) => EntryId::EARLIEST.message(0),
                }
            }
        };
        self.with_core(move |core| {
            let mut state = core.state.lock().expect("subscription lock");
            state.cursor = Cursor {
                read_from: start.entry_id(),
                acked: BTreeMap::new(),
            };
            if start.batch_index > 0 {
                if let Some((entry, count)) =
                    next_stored_entry(&core.topics, &core.topic, start.entry_id())?
                {
                    if entry == start.entry_id() {
                        for index in 0..start.batch_index.min(count) {
                            state.mark_acked(entry.message(index), count);
                        }
                    }
                }
            }
            state.dispatch_from = start.entry_id();
            state.redeliver.clear();
            state.held.clear();
            state.pending.clear();
            save_cursor(&core.topics, &core.topic, &core.name, &state.cursor)
        })
        .await?;
        self.core.topic.notify();
        Ok(())
    }

    async fn close(self: Box<Self>) {
        drop(self);
    }
}

impl Drop for EmbeddedConsumer {
    fn drop(&mut self) {
        if let Ok(mut state) = self.core.state.lock() {
            state.detach(self.core.id);
        }
        self.core.topic.notify();
    }
}
