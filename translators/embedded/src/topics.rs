//! Topic metadata and the in-memory state of each concrete topic (a partition or a
//! non-partitioned topic).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use gateway_core::backend::TopicInfo;
use gateway_core::{BackendError, EntryId, Result, TopicName};
use redb::{Database, ReadableDatabase, ReadableTable};
use tokio::sync::watch;

use crate::store::{
    self, storage_error, ABORTED, CURSORS, DEDUP, ENTRIES, HELD, PUBLISH_TIMES, SEQUENCES, STORAGE,
    TOPICS, TOPIC_PROPERTIES, TRANSACTION_ENTRIES, TRANSACTION_TOPICS,
};
use crate::subscription::SubscriptionState;

pub struct Topics {
    pub db: Arc<Database>,
    loaded: Mutex<HashMap<String, Arc<TopicState>>>,
}

/// A concrete topic that has been used since the backend opened.
pub struct TopicState {
    pub id: u64,
    pub runtime: Mutex<TopicRuntime>,
    /// Bumped after every write (and subscription change) to wake waiting readers and consumers.
    pub changed: watch::Sender<u64>,
    pub subscriptions: Mutex<HashMap<String, Arc<Mutex<SubscriptionState>>>>,
}

pub struct TopicRuntime {
    /// The ledger this topic writes to; `None` until the first write after opening, which starts
    /// a new ledger as a Pulsar broker does when it loads a topic.
    pub ledger: Option<u64>,
    pub next_entry: u64,
    pub last_publish_time: u64,
}

impl TopicState {
    pub fn notify(&self) {
        self.changed.send_modify(|v| *v += 1);
    }
}

impl Topics {
    pub fn new(db: Arc<Database>) -> Self {
        Topics {
            db,
            loaded: Mutex::new(HashMap::new()),
        }
    }

    pub fn create(&self, topic: &TopicName, partitions: u32) -> Result<()> {
        if topic.partition_of().is_some_and(|(base, _)| {
            self.info(&base)
                .ok()
                .flatten()
                .is_some_and(|i| i.partitions > 0)
        }) {
            return Err(BackendError::InvalidArgument(format!(
                "{topic} names a partition"
            )));
        }
        let name = topic.to_string();
        let txn = self.db.begin_write().map_err(storage_error)?;
        {
            let mut table = txn.open_table(TOPICS).map_err(storage_error)?;
            if table.get(name.as_str()).map_err(storage_error)?.is_some() {
                return Err(BackendError::TopicAlreadyExists(name));
            }
            table
                .insert(name.as_str(), partitions)
                .map_err(storage_error)?;
        }
        txn.commit().map_err(storage_error)
    }

    pub fn update_partitions(&self, topic: &TopicName, partitions: u32) -> Result<()> {
        let name = topic.to_string();
        let txn = self.db.begin_write().map_err(storage_error)?;
        {
            let mut table = txn.open_table(TOPICS).map_err(storage_error)?;
            let current = table
                .get(name.as_str())
                .map_err(storage_error)?
                .map(|v| v.value())
                .ok_or_else(|| BackendError::TopicNotFound(name.clone()))?;
            if current == 0 {
                return Err(BackendError::InvalidArgument(format!(
                    "{name} is not partitioned"
                )));
            }
            if partitions <= current {
                return Err(BackendError::InvalidArgument(format!(
                    "{name} has {current} partitions; the count can only grow"
                )));
            }
            table
                .insert(name.as_str(), partitions)
                .map_err(storage_error)?;
        }
        txn.commit().map_err(storage_error)
    }

    pub fn info(&self, topic: &TopicName) -> Result<Option<TopicInfo>> {
        let txn = self.db.begin_read().map_err(storage_error)?;
        let table = txn.open_table(TOPICS).map_err(storage_error)?;
        let partitions = table
            .get(topic.to_string().as_str())
            .map_err(storage_error)?
            .map(|v| v.value());
        Ok(partitions.map(|partitions| TopicInfo { partitions }))
    }

    pub fn list(&self, tenant: &str, namespace: &str) -> Result<Vec<(TopicName, TopicInfo)>> {
        let prefix = format!("persistent://{tenant}/{namespace}/");
        let txn = self.db.begin_read().map_err(storage_error)?;
        let table = txn.open_table(TOPICS).map_err(storage_error)?;
        let mut out = Vec::new();
        for item in table.range(prefix.as_str()..).map_err(storage_error)? {
            let (name, partitions) = item.map_err(storage_error)?;
            let name = name.value();
            if !name.starts_with(&prefix) {
                break;
            }
            if let Some(topic) = TopicName::parse(name, tenant, namespace) {
                out.push((
                    topic,
                    TopicInfo {
                        partitions: partitions.value(),
                    },
                ));
            }
        }
        Ok(out)
    }

    pub fn properties(&self, topic: &TopicName) -> Result<BTreeMap<String, String>> {
        let name = topic.to_string();
        let txn = self.db.begin_read().map_err(storage_error)?;
        if txn
            .open_table(TOPICS)
            .map_err(storage_error)?
            .get(name.as_str())
            .map_err(storage_error)?
            .is_none()
        {
            return Err(BackendError::TopicNotFound(name));
        }
        let table = txn.open_table(TOPIC_PROPERTIES).map_err(storage_error)?;
        let mut out = BTreeMap::new();
        for item in table
            .range((name.as_str(), "")..(name.as_str(), "\u{10FFFF}"))
            .map_err(storage_error)?
        {
            let (key, value) = item.map_err(storage_error)?;
            out.insert(key.value().1.to_owned(), value.value().to_owned());
        }
        Ok(out)
    }

    pub fn update_properties(
        &self,
        topic: &TopicName,
        set: &BTreeMap<String, String>,
        remove: &[String],
    ) -> Result<()> {
        let name = topic.to_string();
        let txn = self.db.begin_write().map_err(storage_error)?;
        {
            if txn
                .open_table(TOPICS)
                .map_err(storage_error)?
                .get(name.as_str())
                .map_err(storage_error)?
                .is_none()
            {
                return Err(BackendError::TopicNotFound(name));
            }
            let mut table = txn.open_table(TOPIC_PROPERTIES).map_err(storage_error)?;
            for (key, value) in set {
                table
                    .insert((name.as_str(), key.as_str()), value.as_str())
                    .map_err(storage_error)?;
            }
            for key in remove {
                table
                    .remove((name.as_str(), key.as_str()))
                    .map_err(storage_error)?;
            }
        }
        txn.commit().map_err(storage_error)
    }

    /// Deletes a topic, its partitions, their entries, cursors and dedup state.
    pub fn delete(&self, topic: &TopicName) -> Result<()> {
        let info = self
            .info(topic)?
            .ok_or_else(|| BackendError::TopicNotFound(topic.to_string()))?;
        let concrete: Vec<String> = if info.partitions == 0 {
            vec![topic.to_string()]
        } else {
            (0..info.partitions)
                .map(|i| topic.partition(i).to_string())
                .collect()
        };
        let txn = self.db.begin_write().map_err(storage_error)?;
        {
            let name = topic.to_string();
            txn.open_table(TOPICS)
                .map_err(storage_error)?
                .remove(name.as_str())
                .map_err(storage_error)?;
            txn.open_table(TOPIC_PROPERTIES)
                .map_err(storage_error)?
                .retain_in(
                    (name.as_str(), "")..(name.as_str(), "\u{10FFFF}"),
                    |_, _| false,
                )
                .map_err(storage_error)?;
            let mut storage = txn.open_table(STORAGE).map_err(storage_error)?;
            for name in &concrete {
                let Some(id) = storage
                    .remove(name.as_str())
                    .map_err(storage_error)?
                    .map(|v| v.value())
                else {
                    continue;
                };
                txn.open_table(ENTRIES)
                    .map_err(storage_error)?
                    .retain_in((id, 0, 0)..=(id, u64::MAX, u64::MAX), |_, _| false)
                    .map_err(storage_error)?;
                txn.open_table(PUBLISH_TIMES)
                    .map_err(storage_error)?
                    .retain_in(
                        (id, 0, 0, 0)..=(id, u64::MAX, u64::MAX, u64::MAX),
                        |_, _| false,
                    )
                    .map_err(storage_error)?;
                txn.open_table(SEQUENCES)
                    .map_err(storage_error)?
                    .retain_in((id, 0, 0)..=(id, u64::MAX, u64::MAX), |_, _| false)
                    .map_err(storage_error)?;
                txn.open_table(CURSORS)
                    .map_err(storage_error)?
                    .retain(|(topic_id, _), _| topic_id != id)
                    .map_err(storage_error)?;
                txn.open_table(DEDUP)
                    .map_err(storage_error)?
                    .retain(|(topic_id, _), _| topic_id != id)
                    .map_err(storage_error)?;
                // An open transaction that wrote here ends as if it never had.
                txn.open_table(TRANSACTION_TOPICS)
                    .map_err(storage_error)?
                    .retain(|(_, topic_id), _| topic_id != id)
                    .map_err(storage_error)?;
                txn.open_table(TRANSACTION_ENTRIES)
                    .map_err(storage_error)?
                    .retain(|(_, topic_id, _, _), _| topic_id != id)
                    .map_err(storage_error)?;
                txn.open_table(HELD)
                    .map_err(storage_error)?
                    .retain_in((id, 0)..=(id, u64::MAX), |_, _| false)
                    .map_err(storage_error)?;
                txn.open_table(ABORTED)
                    .map_err(storage_error)?
                    .retain_in((id, 0, 0)..=(id, u64::MAX, u64::MAX), |_, _| false)
                    .map_err(storage_error)?;
            }
        }
        txn.commit().map_err(storage_error)?;
        let mut loaded = self.loaded.lock().expect("topics lock");
        for name in &concrete {
            if let Some(state) = loaded.remove(name) {
                state.notify();
            }
        }
        Ok(())
    }

    /// Wakes the readers and consumers of the loaded topic stored as `id`, if any.
    pub fn notify_id(&self, id: u64) {
        let loaded = self.loaded.lock().expect("topics lock");
        if let Some(state) = loaded.values().find(|s| s.id == id) {
            state.notify();
        }
    }

    pub async fn resolve_async(self: Arc<Self>, topic: &TopicName) -> Result<Arc<TopicState>> {
        if let Some(state) = self
            .loaded
            .lock()
            .expect("topics lock")
            .get(&topic.to_string())
        {
            return Ok(state.clone());
        }
        let topic = topic.clone();
        tokio::task::spawn_blocking(move || self.resolve(&topic))
            .await
            .map_err(|e| BackendError::Storage(e.to_string()))?
    }

    /// The state of a concrete topic: an existing non-partitioned topic, or a partition of an
    /// existing partitioned topic within its partition count.
    pub fn resolve(&self, topic: &TopicName) -> Result<Arc<TopicState>> {
        let name = topic.to_string();
        if let Some(state) = self.loaded.lock().expect("topics lock").get(&name) {
            return Ok(state.clone());
        }
        let exists = match self.info(topic)? {
            Some(info) => info.partitions == 0,
            None => match topic.partition_of() {
                Some((base, index)) => self.info(&base)?.is_some_and(|i| index < i.partitions),
                None => false,
            },
        };
        if !exists {
            return Err(BackendError::TopicNotFound(name));
        }
        let id = self.storage_id(&name)?;
        let last_publish_time = self.load_last_publish_time(id)?;
        let state = Arc::new(TopicState {
            id,
            runtime: Mutex::new(TopicRuntime {
                ledger: None,
                next_entry: 0,
                last_publish_time,
            }),
            changed: watch::channel(0).0,
            subscriptions: Mutex::new(HashMap::new()),
        });
        let mut loaded = self.loaded.lock().expect("topics lock");
        Ok(loaded.entry(name).or_insert(state).clone())
    }

    fn storage_id(&self, name: &str) -> Result<u64> {
        {
            let txn = self.db.begin_read().map_err(storage_error)?;
            let table = txn.open_table(STORAGE).map_err(storage_error)?;
            if let Some(id) = table.get(name).map_err(storage_error)? {
                return Ok(id.value());
            }
        }
        let txn = self.db.begin_write().map_err(storage_error)?;
        let id = {
            let mut table = txn.open_table(STORAGE).map_err(storage_error)?;
            let existing = table.get(name).map_err(storage_error)?.map(|v| v.value());
            match existing {
                Some(id) => id,
                None => {
                    let id = store::next_counter(&txn, "topic_id")?;
                    table.insert(name, id).map_err(storage_error)?;
                    id
                }
            }
        };
        txn.commit().map_err(storage_error)?;
        Ok(id)
    }

    fn load_last_publish_time(&self, id: u64) -> Result<u64> {
        let txn = self.db.begin_read().map_err(storage_error)?;
        let table = txn.open_table(ENTRIES).map_err(storage_error)?;
        let mut range = table
            .range((id, 0, 0)..=(id, u64::MAX, u64::MAX))
            .map_err(storage_error)?;
        match range.next_back() {
            Some(item) => {
                let (key, value) = item.map_err(storage_error)?;
                let (_, ledger, entry) = key.value();
                let stored = store::decode_entry(EntryId { ledger, entry }, value.value())?;
                Ok(stored.publish_time)
            }
            None => Ok(0),
        }
    }
}
