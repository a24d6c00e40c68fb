//! The embedded backend (DESIGN.md §4): Pulsar's topic, message-id and subscription semantics
//! in-process, durable under a data directory. It backs standalone mode and the fast test suite.
//!
//! Writes go through one writer thread that commits everything queued in one transaction (group
//! commit), so concurrent producers share each fsync; a send returns only after its commit.
//! Pulsar's transactions are in `transactions.rs`.

mod reader;
mod store;
mod subscription;
mod topics;
mod transactions;
mod writer;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use gateway_core::backend::{
    Acknowledged, Coordination, Producing, Reading, Retention, SubscribeOptions, Subscriptions,
    TopicAdmin, TopicInfo, TopicPolicies, TransactionId, Transactions, SEQUENCE_LOOKBACK,
};
use gateway_core::{
    Announcement, Backend, BackendError, Consumer, EntryId, EntryToSend, Lease, MessageId,
    PendingSend, Reader, Result, TopicName,
};
use redb::ReadableDatabase;

use crate::store::{storage_error, DEDUP, ENTRIES, PUBLISH_TIMES, SEQUENCES};
use crate::topics::Topics;

pub struct EmbeddedBackend {
    topics: Arc<Topics>,
    writer: Arc<writer::WriterHandle>,
    /// Topic -> holder of its exclusive writer lease. One process owns the store, so a lease is
    /// a plain in-process lock here.
    leases: Arc<Mutex<HashMap<String, String>>>,
    /// Names announced per topic (see `Coordination::announce`), in-process like the leases.
    announced: Arc<Mutex<Announced>>,
    /// Aborts transactions at their deadline.
    timeouts: transactions::Timeouts,
}

type Announced = HashMap<String, Vec<String>>;

/// A name announced on a topic of the embedded store; withdrawn on drop.
struct EmbeddedAnnouncement {
    topic: String,
    name: String,
    announced: Arc<Mutex<Announced>>,
}

impl Drop for EmbeddedAnnouncement {
    fn drop(&mut self) {
        let mut announced = self.announced.lock().expect("announced lock");
        if let Some(names) = announced.get_mut(&self.topic) {
            names.retain(|n| *n != self.name);
        }
    }
}

impl Announcement for EmbeddedAnnouncement {
    fn is_live(&self) -> bool {
        true
    }
}

/// An exclusive writer on one topic of the embedded store.
struct EmbeddedLease {
    topic: TopicName,
    topics: Arc<Topics>,
    writer: Arc<writer::WriterHandle>,
    leases: Arc<Mutex<HashMap<String, String>>>,
}

impl Drop for EmbeddedLease {
    fn drop(&mut self) {
        self.leases
            .lock()
            .expect("leases lock")
            .remove(&self.topic.to_string());
    }
}

#[async_trait]
impl Lease for EmbeddedLease {
    async fn submit(&self, entries: Vec<EntryToSend>) -> Result<PendingSend> {
        let state = self.topics.clone().resolve_async(&self.topic).await?;
        self.writer.submit(state, entries, None).await
    }

    fn is_held(&self) -> bool {
        self.writer.is_running()
    }
}

impl EmbeddedBackend {
    /// Hands entries to the writer, in `transaction` if given.
    async fn submit_to(
        &self,
        topic: &TopicName,
        entries: Vec<EntryToSend>,
        transaction: Option<u64>,
    ) -> Result<PendingSend> {
        if let Some(holder) = self
            .leases
            .lock()
            .expect("leases lock")
            .get(&topic.to_string())
        {
            // As on Pulsar, an exclusive writer keeps every other producer off the topic.
            return Err(BackendError::ProducerBusy(format!(
                "{topic} has an exclusive writer ({holder})"
            )));
        }
        let state = self.topics.clone().resolve_async(topic).await?;
        self.writer.submit(state, entries, transaction).await
    }

    /// Opens (or creates) the store under `dir`.
    pub fn open(dir: &Path) -> Result<Arc<EmbeddedBackend>> {
        let db = Arc::new(store::open_database(dir)?);
        let topics = Arc::new(Topics::new(db));
        let writer = Arc::new(writer::spawn(topics.clone())?);
        let open = transactions::recover(&topics)?;
        let timeouts = transactions::Timeouts::spawn(&topics, open)?;
        Ok(Arc::new(EmbeddedBackend {
            topics,
            writer,
            leases: Arc::default(),
            announced: Arc::default(),
            timeouts,
        }))
    }
}

#[async_trait]
impl Backend for EmbeddedBackend {
    fn kind(&self) -> &'static str {
        "embedded"
    }

    async fn readiness(&self) -> Result<()> {
        if self.writer.is_running() {
            Ok(())
        } else {
            Err(BackendError::Storage(
                "the embedded store's writer stopped".into(),
            ))
        }
    }
}

#[async_trait]
impl TopicAdmin for EmbeddedBackend {
    async fn create_topic(&self, topic: &TopicName, partitions: u32) -> Result<()> {
        let (topics, topic) = (self.topics.clone(), topic.clone());
        blocking(move || topics.create(&topic, partitions)).await
    }

    async fn delete_topic(&self, topic: &TopicName) -> Result<()> {
        let (topics, topic) = (self.topics.clone(), topic.clone());
        blocking(move || topics.delete(&topic)).await
    }

    async fn update_partitions(&self, topic: &TopicName, partitions: u32) -> Result<()> {
        let (topics, topic) = (self.topics.clone(), topic.clone());
        blocking(move || topics.update_partitions(&topic, partitions)).await
    }

    async fn topic_info(&self, topic: &TopicName) -> Result<Option<TopicInfo>> {
        let (topics, topic) = (self.topics.clone(), topic.clone());
        blocking(move || topics.info(&topic)).await
    }

    async fn list_topics(
        &self,
        tenant: &str,
        namespace: &str,
    ) -> Result<Vec<(TopicName, TopicInfo)>> {
        let (topics, tenant, namespace) =
            (self.topics.clone(), tenant.to_owned(), namespace.to_owned());
        blocking(move || topics.list(&tenant, &namespace)).await
    }
    async fn topic_properties(&self, topic: &TopicName) -> Result<BTreeMap<String, String>> {
        let (topics, topic) = (self.topics.clone(), topic.clone());
        blocking(move || topics.properties(&topic)).await
    }

    async fn update_topic_properties(
        &self,
        topic: &TopicName,
        set: &BTreeMap<String, String>,
        remove: &[String],
    ) -> Result<()> {
        let (topics, topic, set, remove) = (
            self.topics.clone(),
            topic.clone(),
            set.clone(),
            remove.to_vec(),
        );
        blocking(move || topics.update_properties(&topic, &set, &remove)).await
    }

    /// Accepted as is: this backend keeps every entry of every topic until the topic is deleted,
    /// and never deletes a topic on its own, which keeps at least what any policy asks to keep.
    /// It does not compact, so a compacted topic's readers see every value (as a Kafka consumer
    /// may, before the log cleaner has run).
    async fn set_topic_policies(&self, topic: &TopicName, _: &TopicPolicies) -> Result<()> {
        match self.topic_info(topic).await? {
            Some(_) => Ok(()),
            None => Err(BackendError::TopicNotFound(topic.to_string())),
        }
    }

    async fn applied_retention(&self, topic: &TopicName) -> Result<Retention> {
        match self.topic_info(topic).await? {
            Some(_) => Ok(Retention::FOREVER),
            None => Err(BackendError::TopicNotFound(topic.to_string())),
        }
    }
}

#[async_trait]
impl Producing for EmbeddedBackend {
    async fn submit(&self, topic: &TopicName, entries: Vec<EntryToSend>) -> Result<PendingSend> {
        self.submit_to(topic, entries, None).await
    }

    async fn last_sequence(&self, topic: &TopicName, producer_name: &str) -> Result<Option<u64>> {
        let state = self.topics.clone().resolve_async(topic).await?;
        let (topics, name) = (self.topics.clone(), producer_name.to_owned());
        blocking(move || {
            let txn = topics.db.begin_read().map_err(storage_error)?;
            let dedup = txn.open_table(DEDUP).map_err(storage_error)?;
            Ok(dedup
                .get((state.id, name.as_str()))
                .map_err(storage_error)?
                .map(|v| v.value()))
        })
        .await
    }

    /// From the `sequences` table, walking the topic's last entries backwards (their keys only:
    /// a resend's original is normally among the last few, so the walk stops early).
    async fn find_sequence(
        &self,
        topic: &TopicName,
        producer_name: &str,
        sequence: u64,
    ) -> Result<Option<MessageId>> {
        let state = self.topics.clone().resolve_async(topic).await?;
        let (topics, name) = (self.topics.clone(), producer_name.to_owned());
        blocking(move || {
            let txn = topics.db.begin_read().map_err(storage_error)?;
            let entries = txn.open_table(ENTRIES).map_err(storage_error)?;
            let sequences = txn.open_table(SEQUENCES).map_err(storage_error)?;
            let last = entries
                .range((state.id, 0, 0)..=(state.id, u64::MAX, u64::MAX))
                .map_err(storage_error)?
                .rev()
                .take(SEQUENCE_LOOKBACK as usize);
            for item in last {
                let key = item.map_err(storage_error)?.0.value();
                let Some(written) = sequences.get(key).map_err(storage_error)? else {
                    continue;
                };
                if written.value() == (name.as_str(), sequence) {
                    let (_, ledger, entry) = key;
                    return Ok(Some(EntryId { ledger, entry }.message(0)));
                }
            }
            Ok(None)
        })
        .await
    }
}

#[async_trait]
impl Reading for EmbeddedBackend {
    /// No further than readers may read: an open transaction holds it back (see `store::Visibility`).
    async fn last_message_id(&self, topic: &TopicName) -> Result<Option<MessageId>> {
        let state = self.topics.clone().resolve_async(topic).await?;
        let topics = self.topics.clone();
        blocking(move || store::last_visible(&topics.db, state.id)).await
    }

    /// The first entry stored, aborted or not (a log may start with an aborted record), unless
    /// an open transaction holds it back: then, as for `last_message_id`, there is none yet, so
    /// the start never passes the end.
    async fn first_entry_id(&self, topic: &TopicName) -> Result<Option<EntryId>> {
        let state = self.topics.clone().resolve_async(topic).await?;
        let topics = self.topics.clone();
        blocking(move || {
            let txn = topics.db.begin_read().map_err(storage_error)?;
            let entries = txn.open_table(ENTRIES).map_err(storage_error)?;
            let visibility = store::Visibility::new(&txn, state.id)?;
            let mut range = entries
                .range((state.id, 0, 0)..=(state.id, u64::MAX, u64::MAX))
                .map_err(storage_error)?;
            match range.next() {
                Some(item) => {
                    let (_, ledger, entry) = item.map_err(storage_error)?.0.value();
                    let id = EntryId { ledger, entry };
                    Ok((!visibility.is_held(id)).then_some(id))
                }
                None => Ok(None),
            }
        })
        .await
    }

    async fn find_entry_by_publish_time(
        &self,
        topic: &TopicName,
        publish_time: u64,
    ) -> Result<Option<EntryId>> {
        let state = self.topics.clone().resolve_async(topic).await?;
        let topics = self.topics.clone();
        blocking(move || {
            let txn = topics.db.begin_read().map_err(storage_error)?;
            let index = txn.open_table(PUBLISH_TIMES).map_err(storage_error)?;
            let visibility = store::Visibility::new(&txn, state.id)?;
            let range = index
                .range((state.id, publish_time, 0, 0)..=(state.id, u64::MAX, u64::MAX, u64::MAX))
                .map_err(storage_error)?;
            // Publish times follow entry order, so once one entry is held back all later ones are.
            for item in range {
                let (_, _, ledger, entry) = item.map_err(storage_error)?.0.value();
                let id = EntryId { ledger, entry };
                if visibility.is_held(id) {
                    break;
                }
                if !visibility.is_aborted(id)? {
                    return Ok(Some(id));
                }
            }
            Ok(None)
        })
        .await
    }

    async fn open_reader(&self, topic: &TopicName, start: EntryId) -> Result<Box<dyn Reader>> {
        let state = self.topics.clone().resolve_async(topic).await?;
        Ok(Box::new(reader::EmbeddedReader::new(
            self.topics.clone(),
            state,
            start,
        )))
    }
}

#[async_trait]
impl Subscriptions for EmbeddedBackend {
    /// Messages are handed out only on `receive`, so there is no prefetch to bound.
    async fn subscribe(
        &self,
        topic: &TopicName,
        subscription: &str,
        options: SubscribeOptions,
    ) -> Result<Box<dyn Consumer>> {
        let state = self.topics.clone().resolve_async(topic).await?;
        let (topics, name) = (self.topics.clone(), subscription.to_owned());
        let (sub_type, initial) = (options.sub_type, options.initial);
        blocking(move || subscription::attach(topics, state, &name, sub_type, initial)).await
    }

    async fn unsubscribe(&self, topic: &TopicName, subscription: &str) -> Result<()> {
        let state = self.topics.clone().resolve_async(topic).await?;
        let (topics, name) = (self.topics.clone(), subscription.to_owned());
        blocking(move || subscription::delete(&topics, &state, &name)).await
    }

    async fn subscriptions(&self, topic: &TopicName) -> Result<Vec<String>> {
        let state = self.topics.clone().resolve_async(topic).await?;
        let topics = self.topics.clone();
        blocking(move || subscription::list(&topics, &state)).await
    }

    async fn backlog(&self, topic: &TopicName, subscription: &str) -> Result<u64> {
        let state = self.topics.clone().resolve_async(topic).await?;
        let (topics, name) = (self.topics.clone(), subscription.to_owned());
        blocking(move || subscription::backlog(&topics, &state, &name)).await
    }

    async fn acknowledged(&self, topic: &TopicName, subscription: &str) -> Result<Acknowledged> {
        let state = self.topics.clone().resolve_async(topic).await?;
        let (topics, name) = (self.topics.clone(), subscription.to_owned());
        blocking(move || subscription::acknowledged(&topics, &state, &name)).await
    }

    async fn ready(&self, topic: &TopicName, subscription: &str) -> Result<u64> {
        let state = self.topics.clone().resolve_async(topic).await?;
        let (topics, name) = (self.topics.clone(), subscription.to_owned());
        blocking(move || subscription::ready(&topics, &state, &name)).await
    }
}

/// Pulsar's transactions (PIP-31); see `transactions.rs` for how they are stored.
#[async_trait]
impl Transactions for EmbeddedBackend {
    async fn begin_transaction(&self, timeout: Duration) -> Result<TransactionId> {
        let topics = self.topics.clone();
        let (txn, deadline) = blocking(move || transactions::begin(&topics, timeout)).await?;
        self.timeouts.schedule(txn.least_bits, deadline);
        Ok(txn)
    }

    async fn add_to_transaction(&self, txn: TransactionId, topic: &TopicName) -> Result<()> {
        let key = transactions::key(txn)?;
        let state = self.topics.clone().resolve_async(topic).await?;
        let topics = self.topics.clone();
        blocking(move || transactions::add(&topics, key, state.id)).await
    }

    async fn submit_in_transaction(
        &self,
        txn: TransactionId,
        topic: &TopicName,
        entries: Vec<EntryToSend>,
    ) -> Result<PendingSend> {
        let key = transactions::key(txn)?;
        self.submit_to(topic, entries, Some(key)).await
    }

    async fn end_transaction(&self, txn: TransactionId, commit: bool) -> Result<()> {
        let key = transactions::key(txn)?;
        let topics = self.topics.clone();
        blocking(move || transactions::end(&topics, key, commit)).await
    }
}

#[async_trait]
impl Coordination for EmbeddedBackend {
    async fn try_lease(&self, topic: &TopicName, holder: &str) -> Result<Option<Box<dyn Lease>>> {
        let mut leases = self.leases.lock().expect("leases lock");
        let key = topic.to_string();
        if leases.contains_key(&key) {
            return Ok(None);
        }
        leases.insert(key, holder.to_owned());
        Ok(Some(Box::new(EmbeddedLease {
            topic: topic.clone(),
            topics: self.topics.clone(),
            writer: self.writer.clone(),
            leases: self.leases.clone(),
        })))
    }

    async fn lease_holder(&self, topic: &TopicName) -> Result<Option<String>> {
        Ok(self
            .leases
            .lock()
            .expect("leases lock")
            .get(&topic.to_string())
            .cloned())
    }

    async fn announce(&self, topic: &TopicName, name: &str) -> Result<Box<dyn Announcement>> {
        let mut announced = self.announced.lock().expect("announced lock");
        let names = announced.entry(topic.to_string()).or_default();
        // As Pulsar refuses a second producer with a name already connected.
        if names.iter().any(|n| n == name) {
            return Err(BackendError::ProducerBusy(format!(
                "{name} is already announced on {topic}"
            )));
        }
        names.push(name.to_owned());
        Ok(Box::new(EmbeddedAnnouncement {
            topic: topic.to_string(),
            name: name.to_owned(),
            announced: self.announced.clone(),
        }))
    }

    async fn announced(&self, topic: &TopicName) -> Result<Vec<String>> {
        let announced = self.announced.lock().expect("announced lock");
        Ok(announced
            .get(&topic.to_string())
            .cloned()
            .unwrap_or_default())
    }
}

/// Runs storage work off the async threads; redb calls block on disk.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| BackendError::Storage(format!("storage task failed: {e}")))?
}

pub(crate) fn now_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
