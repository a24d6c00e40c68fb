//! A virtual host's topology (DESIGN.md §6): exchanges, queues and bindings, kept in a compacted
//! table topic `__amqp_topology` in the vhost's namespace. Every instance tails that topic and
//! folds it into the same state, so a declaration made through one instance is seen by all, and
//! a restart keeps it. Local state is only ever derived from the log: a write returns once this
//! instance has read it back, so what a client was told is what the log says.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use amq_protocol::types::FieldTable;
use bytes::Bytes;
use gateway_core::{table, BackendRef, EntryId, SendReceipt, TopicName};
use serde::{Deserialize, Serialize};
use tokio::sync::{watch, Mutex, RwLock};

use crate::error::{AmqpError, AmqpResult, ReplyCode};
use crate::expiry::now_ms;
use crate::routing::ExchangeType;

pub(crate) const TOPOLOGY_TOPIC: &str = "__amqp_topology";
/// How long a read-your-writes wait may take before the client gets an error.
const SYNC_TIMEOUT: Duration = Duration::from_secs(15);
/// How far apart the clocks of a fleet's instances may be: a message's publish time (the
/// publishing instance's clock) is compared with this instance's last sync.
const CLOCK_SLACK_MS: u64 = 2_000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Exchange {
    pub name: String,
    pub kind: ExchangeType,
    pub durable: bool,
    pub auto_delete: bool,
    pub internal: bool,
    pub arguments: FieldTable,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Queue {
    pub name: String,
    /// Distinguishes a queue from an earlier one of the same name: subscriptions carry it, so a
    /// redeclared queue never sees what its deleted namesake left behind.
    pub incarnation: u64,
    pub durable: bool,
    pub auto_delete: bool,
    /// The connection that owns an exclusive queue.
    pub exclusive_owner: Option<String>,
    pub arguments: FieldTable,
}

/// A binding: messages of `exchange` that match `routing_key`/`arguments` go to `queue`, or, for
/// an exchange-to-exchange binding, on to the destination exchange named by `queue`'s place
/// (see [`Binding::to_exchange`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Binding {
    /// The destination: a queue, or an exchange when `to_exchange` is set.
    pub queue: String,
    pub exchange: String,
    pub routing_key: String,
    pub arguments: FieldTable,
    #[serde(default)]
    pub to_exchange: bool,
}

/// FNV-1a over several parts, for stable short ids in subscription names.
pub fn fnv64(parts: &[&[u8]]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in *part {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        hash ^= 0xff;
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

impl Binding {
    /// A stable id for the binding's identity (exchange, key, arguments).
    pub fn id(&self) -> String {
        let arguments = serde_json::to_string(&self.arguments).unwrap_or_default();
        format!(
            "{:016x}",
            fnv64(&[
                self.exchange.as_bytes(),
                self.routing_key.as_bytes(),
                arguments.as_bytes()
            ])
        )
    }

    fn key(&self) -> String {
        let kind = if self.to_exchange {
            "xbinding"
        } else {
            "binding"
        };
        format!("{kind}/{}/{}/{}", self.queue, self.exchange, self.id())
    }
}

/// The folded state of a vhost's topology log.
#[derive(Debug, Default, Clone)]
pub struct Topology {
    pub exchanges: BTreeMap<String, Exchange>,
    pub queues: BTreeMap<String, Queue>,
    /// By binding key (`binding/queue/exchange/id`).
    pub bindings: BTreeMap<String, Binding>,
    /// When each queue with `x-expires` was last used (ms since the epoch), by any instance.
    pub used: BTreeMap<String, u64>,
}

impl Topology {
    fn apply(&mut self, key: &str, value: Option<&[u8]>) {
        fn parsed<T: serde::de::DeserializeOwned>(v: &[u8]) -> Option<T> {
            serde_json::from_slice(v).ok()
        }
        if let Some(name) = key.strip_prefix("exchange/") {
            match value.and_then(parsed) {
                Some(x) => self.exchanges.insert(name.to_owned(), x),
                None => self.exchanges.remove(name),
            };
        } else if let Some(name) = key.strip_prefix("queue/") {
            match value.and_then(parsed) {
                Some(q) => self.queues.insert(name.to_owned(), q),
                None => self.queues.remove(name),
            };
        } else if let Some(name) = key.strip_prefix("used/") {
            match value.and_then(parsed) {
                Some(ms) => self.used.insert(name.to_owned(), ms),
                None => self.used.remove(name),
            };
        } else if key.starts_with("binding/") || key.starts_with("xbinding/") {
            match value.and_then(parsed) {
                Some(b) => self.bindings.insert(key.to_owned(), b),
                None => self.bindings.remove(key),
            };
        }
    }

    /// Bindings whose destination is this queue.
    pub fn bindings_of_queue<'a>(&'a self, queue: &'a str) -> impl Iterator<Item = &'a Binding> {
        self.bindings
            .values()
            .filter(move |b| !b.to_exchange && b.queue == queue)
    }

    /// Exchange-to-exchange bindings whose destination is this exchange.
    pub fn bindings_into_exchange<'a>(
        &'a self,
        exchange: &'a str,
    ) -> impl Iterator<Item = &'a Binding> {
        self.bindings
            .values()
            .filter(move |b| b.to_exchange && b.queue == exchange)
    }

    /// Every binding (to a queue or an exchange) whose source is this exchange.
    pub fn bindings_of_exchange<'a>(
        &'a self,
        exchange: &'a str,
    ) -> impl Iterator<Item = &'a Binding> {
        self.bindings
            .values()
            .filter(move |b| b.exchange == exchange)
    }

    /// The topology as it will be once `changes` are written.
    pub fn with(&self, changes: &[Change]) -> Topology {
        let mut next = self.clone();
        for change in changes {
            let (key, value) = change.record();
            next.apply(&key, value.as_deref());
        }
        next
    }
}

/// A record to write: its key and value (`None` deletes).
pub enum Change {
    Exchange(String, Option<Exchange>),
    Queue(String, Option<Queue>),
    Binding(Binding, bool),
    /// A queue with `x-expires` was used at this time (ms since the epoch).
    Used(String, Option<u64>),
}

impl Change {
    fn record(&self) -> (String, Option<Bytes>) {
        fn json(value: &impl Serialize) -> Bytes {
            Bytes::from(serde_json::to_vec(value).unwrap_or_default())
        }
        match self {
            Change::Exchange(name, x) => (format!("exchange/{name}"), x.as_ref().map(json)),
            Change::Queue(name, q) => (format!("queue/{name}"), q.as_ref().map(json)),
            Change::Binding(b, keep) => (b.key(), keep.then(|| json(b))),
            Change::Used(name, ms) => (format!("used/{name}"), ms.as_ref().map(json)),
        }
    }
}

/// One vhost as this instance sees it.
pub struct Vhost {
    pub name: String,
    pub tenant: String,
    pub namespace: String,
    backend: BackendRef,
    topic: TopicName,
    state: RwLock<Topology>,
    /// The last log entry folded into `state`.
    applied: watch::Sender<Option<EntryId>>,
    /// Orders this instance's writes (check-then-write sequences) with each other.
    pub write_lock: Mutex<()>,
    /// Orders this instance's trims of full queues (x-max-length drop-head).
    pub trim_lock: Mutex<()>,
    /// Bumped on every applied change, so consumers can follow their queue's bindings.
    pub changes: watch::Sender<u64>,
    /// What has been delivered on each subscription, for `redelivered` after a crash.
    pub delivered: crate::watermarks::DeliveredMarks,
    /// This instance's consumers per queue, and whether one of them is exclusive.
    local_consumers: std::sync::Mutex<std::collections::HashMap<String, (usize, bool)>>,
    /// Wall-clock ms: every change written to the log before then is folded in (set by `sync`).
    synced_before: AtomicU64,
}

impl Vhost {
    /// Loads the vhost's topology and starts tailing its log.
    pub async fn open(
        backend: BackendRef,
        name: &str,
        tenant: &str,
        namespace: &str,
    ) -> AmqpResult<Arc<Vhost>> {
        let topic = TopicName::new(tenant, namespace, TOPOLOGY_TOPIC);
        if backend.topic_info(&topic).await?.is_none() {
            match backend.create_topic(&topic, 0).await {
                Ok(()) | Err(gateway_core::BackendError::TopicAlreadyExists(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let delivered =
            crate::watermarks::DeliveredMarks::open(backend.clone(), tenant, namespace).await?;
        let vhost = Arc::new(Vhost {
            delivered,
            name: name.to_owned(),
            tenant: tenant.to_owned(),
            namespace: namespace.to_owned(),
            backend: backend.clone(),
            topic: topic.clone(),
            state: RwLock::new(Topology::default()),
            applied: watch::channel(None).0,
            write_lock: Mutex::new(()),
            trim_lock: Mutex::new(()),
            changes: watch::channel(0).0,
            local_consumers: Default::default(),
            synced_before: AtomicU64::new(0),
        });
        let reader = backend
            .open_compacted_reader(&topic, EntryId::EARLIEST)
            .await?;
        tokio::spawn(tail(Arc::downgrade(&vhost), reader));
        vhost.sync().await?;
        vhost.declare_builtins().await?;
        Ok(vhost)
    }

    /// Registers a consumer; false when the queue has an exclusive consumer, or when an
    /// exclusive one is asked for while others exist.
    pub fn consumer_joins(&self, queue: &str, exclusive: bool) -> bool {
        let mut consumers = self.local_consumers.lock().expect("consumers lock");
        let entry = consumers.entry(queue.to_owned()).or_default();
        if entry.1 || (exclusive && entry.0 > 0) {
            return false;
        }
        *entry = (entry.0 + 1, exclusive);
        true
    }

    /// Unregisters a consumer; returns how many are left.
    pub fn consumer_left(&self, queue: &str) -> usize {
        let mut consumers = self.local_consumers.lock().expect("consumers lock");
        let Some(entry) = consumers.get_mut(queue) else {
            return 0;
        };
        entry.0 = entry.0.saturating_sub(1);
        entry.1 = false;
        let left = entry.0;
        if left == 0 {
            consumers.remove(queue);
        }
        left
    }

    /// Consumers of the queue on this instance.
    pub fn consumers_of(&self, queue: &str) -> usize {
        self.local_consumers
            .lock()
            .expect("consumers lock")
            .get(queue)
            .map_or(0, |e| e.0)
    }

    /// The backend the vhost's topics live on.
    pub fn backend(&self) -> &BackendRef {
        &self.backend
    }

    /// A snapshot of the topology as far as this instance has read it.
    pub async fn snapshot(&self) -> tokio::sync::RwLockReadGuard<'_, Topology> {
        self.state.read().await
    }

    /// Waits until everything written to the log so far (by any instance) is folded in.
    pub async fn sync(&self) -> AmqpResult<()> {
        let started = now_ms();
        if let Some(last) = self.backend.last_message_id(&self.topic).await? {
            self.wait_applied(last.entry_id()).await?;
        }
        self.synced_before.fetch_max(started, Ordering::Relaxed);
        Ok(())
    }

    /// Whether a message published to `exchange` at `published_ms` reaches `queue`. The
    /// topology is read up to date first when the local copy might predate the publish: a
    /// binding made through another instance just before the publish must count.
    pub async fn routes_to(
        &self,
        exchange: &str,
        routing_key: &str,
        headers: Option<&FieldTable>,
        queue: &str,
        published_ms: u64,
    ) -> bool {
        let reaches = |t: &Topology| {
            crate::publish::destinations_via(t, exchange, routing_key, headers)
                .iter()
                .any(|q| q == queue)
        };
        if reaches(&*self.snapshot().await) {
            return true;
        }
        let recent = published_ms.saturating_add(CLOCK_SLACK_MS)
            >= self.synced_before.load(Ordering::Relaxed);
        if recent && self.sync().await.is_ok() {
            return reaches(&*self.snapshot().await);
        }
        false
    }

    async fn wait_applied(&self, id: EntryId) -> AmqpResult<()> {
        let mut applied = self.applied.subscribe();
        let reached = tokio::time::timeout(SYNC_TIMEOUT, async {
            applied
                .wait_for(|a| a.is_some_and(|a| a >= id))
                .await
                .is_ok()
        })
        .await;
        match reached {
            Ok(true) => Ok(()),
            _ => Err(AmqpError::connection(
                ReplyCode::InternalError,
                "the topology log could not be read back in time",
            )),
        }
    }

    /// Writes changes as one entry and returns once they are folded into local state.
    pub async fn write(&self, changes: Vec<Change>) -> AmqpResult<()> {
        let records = changes.iter().map(Change::record).collect();
        let receipts = table::submit_all(self.backend.as_ref(), &self.topic, records)
            .await?
            .await?;
        match receipts.first() {
            Some(SendReceipt::Persisted(id)) => self.wait_applied(id.entry_id()).await,
            _ => self.sync().await,
        }
    }

    /// The exchanges every vhost has (spec §3.1.3 and RabbitMQ's `amq.*` set).
    async fn declare_builtins(&self) -> AmqpResult<()> {
        let builtins = [
            ("amq.direct", ExchangeType::Direct),
            ("amq.fanout", ExchangeType::Fanout),
            ("amq.topic", ExchangeType::Topic),
            ("amq.headers", ExchangeType::Headers),
            ("amq.match", ExchangeType::Headers),
        ];
        let _guard = self.write_lock.lock().await;
        let missing: Vec<Change> = {
            let state = self.state.read().await;
            builtins
                .iter()
                .filter(|(name, _)| !state.exchanges.contains_key(*name))
                .map(|(name, kind)| {
                    Change::Exchange(
                        (*name).to_owned(),
                        Some(Exchange {
                            name: (*name).to_owned(),
                            kind: *kind,
                            durable: true,
                            auto_delete: false,
                            internal: false,
                            arguments: FieldTable::default(),
                        }),
                    )
                })
                .collect()
        };
        if missing.is_empty() {
            return Ok(());
        }
        self.write(missing).await
    }
}

/// Folds the log into the vhost's state for as long as the vhost is in use.
async fn tail(vhost: std::sync::Weak<Vhost>, mut reader: Box<dyn gateway_core::Reader>) {
    let mut reading = gateway_core::retry_log::RetryLog::default();
    loop {
        let entries = match reader.read(256, 1 << 20, Duration::from_millis(500)).await {
            Ok(entries) => {
                reading.succeeded("reading the AMQP topology log");
                entries
            }
            Err(e) => {
                reading.failed("reading the AMQP topology log", &e);
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let Some(vhost) = vhost.upgrade() else { return };
        if entries.is_empty() {
            // An empty topic has nothing to wait for: mark it read.
            if vhost.applied.borrow().is_none()
                && matches!(vhost.backend.last_message_id(&vhost.topic).await, Ok(None))
            {
                vhost.applied.send_replace(Some(EntryId::EARLIEST));
            }
            continue;
        }
        let mut state = vhost.state.write().await;
        let mut last = None;
        for entry in entries {
            for m in &entry.messages {
                let Some(key) = &m.key else { continue };
                state.apply(&String::from_utf8_lossy(key), m.value.as_deref());
            }
            last = Some(entry.id);
        }
        drop(state);
        vhost.changes.send_modify(|v| *v += 1);
        vhost.applied.send_replace(last);
    }
}
