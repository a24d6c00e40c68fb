//! The Backend for a real Apache Pulsar cluster (DESIGN.md §4): produce, read and subscribe over
//! the Pulsar binary protocol, and the admin REST API for what that protocol lacks (creating,
//! listing and deleting topics, partition counts, stats).

mod admin;
mod batch;
mod chunks;
mod connection;
mod consumer;
pub mod credentials;
mod frame;
mod lookback;
mod pool;
mod prefetch;
mod producer;
pub mod proto;
mod reader;
mod subscription;
mod tls;
mod txn;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use dashmap::DashMap;
use gateway_core::backend::{
    Coordination, Producing, Reading, Retention, SubscribeOptions, Subscriptions, TopicAdmin,
    TopicInfo, TopicPolicies, TransactionId, Transactions, SEQUENCE_LOOKBACK,
};
use gateway_core::recent::Recent;
use gateway_core::{
    Announcement, Backend, BackendError, Consumer, EntryId, EntryToSend, Lease, MessageId,
    PendingSend, Reader, Result, TopicName,
};
use tokio::sync::Mutex;

pub use admin::AdminClient;
pub use credentials::TokenSource;
pub use tls::{TlsOptions, TlsSource};

use crate::connection::ConnectOptions;
use crate::pool::Pool;
use crate::producer::Producer;

/// A lease is the topic's exclusive producer; it is lost when the broker closes it (fenced, or
/// the topic moved) or its connection drops, and a replacement must be created.
struct PulsarLease(Producer);

#[async_trait]
impl Lease for PulsarLease {
    async fn submit(&self, entries: Vec<EntryToSend>) -> Result<PendingSend> {
        if !self.0.is_usable() {
            return Err(BackendError::Closed);
        }
        self.0.submit(entries).await
    }

    fn is_held(&self) -> bool {
        self.0.is_usable()
    }
}

/// A name announced on a topic: a named producer that writes nothing (see
/// `Coordination::announce`).
struct PulsarAnnouncement(Producer);

impl Announcement for PulsarAnnouncement {
    fn is_live(&self) -> bool {
        self.0.is_usable()
    }
}

/// Producers kept before idle ones are looked for, and how long unused makes one idle.
const PRODUCERS_BEFORE_SWEEP: usize = 1024;
const PRODUCER_IDLE: std::time::Duration = std::time::Duration::from_secs(600);

/// How long a topic's first entry is taken from the cache.
const FIRST_ENTRY_TTL: std::time::Duration = std::time::Duration::from_secs(10);

/// How long an existing topic's partition count is taken from the cache. Every Kafka produce
/// and fetch names partitions, and asking the admin REST API each time costs a round trip. The
/// count only grows, so a stale answer at worst refuses a brand-new partition for this long
/// (a retriable error); this gateway's own create, delete and update drop the entry at once.
const TOPIC_INFO_TTL: std::time::Duration = std::time::Duration::from_secs(5);

/// How long to wait for an entry known to exist to reach a reader.
const LOOKUP_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// How long the readiness check waits for the broker to answer a PING.
const READY_PING_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// How the gateway reaches Pulsar. `Debug` never shows the token.
#[derive(Clone, Debug)]
pub struct PulsarConfig {
    /// `pulsar://host:port` or `pulsar+ssl://host:port` of a broker, a proxy or a load balancer
    /// in front of brokers (several hosts separated by commas).
    pub service_url: String,
    /// `http://host:port` or `https://host:port` of the admin REST API.
    pub admin_url: String,
    /// Token for both, if the cluster requires authentication.
    pub token: Option<TokenSource>,
    /// TLS settings, used when either URL is a TLS one.
    pub tls: TlsOptions,
    /// Deadline of every operation: lookups, producer and consumer creation, send receipts,
    /// admin calls (Pulsar's `operationTimeoutMs`).
    pub operation_timeout: std::time::Duration,
    /// Codec for written entries: `proto::compression::{NONE, LZ4, ZLIB, ZSTD}`.
    pub compression: i32,
}

impl PulsarConfig {
    /// A plaintext configuration with Pulsar's default timeouts (tests and tools).
    pub fn plain(service_url: &str, admin_url: &str, token: Option<&str>) -> PulsarConfig {
        PulsarConfig {
            service_url: service_url.to_owned(),
            admin_url: admin_url.to_owned(),
            token: token.map(TokenSource::literal),
            tls: TlsOptions::default(),
            operation_timeout: std::time::Duration::from_secs(30),
            compression: proto::compression::LZ4,
        }
    }

    fn uses_tls(&self) -> bool {
        self.service_url.starts_with("pulsar+ssl://") || self.admin_url.starts_with("https://")
    }
}

type ProducerSlot = Arc<Mutex<Option<Arc<Producer>>>>;

pub struct PulsarBackend {
    config: PulsarConfig,
    /// Read from `config.tls` (and again when its files change), shared with the backends
    /// acting for clients.
    tls: Option<Arc<TlsSource>>,
    /// The backends acting for clients, by token; each holds its own connections, made with
    /// that client's token, so Pulsar authorizes what it does (see `as_client`).
    clients: std::sync::Mutex<std::collections::HashMap<String, std::sync::Weak<PulsarBackend>>>,
    pool: Arc<Pool>,
    admin: Arc<AdminClient>,
    compression: i32,
    /// Producers by (topic, producer name); a lock per slot so one producer is created at a time.
    producers: DashMap<(String, Option<String>), ProducerSlot>,
    /// First stored entry per topic, and when it was asked.
    first_entries: Recent<EntryId>,
    /// Partition counts of existing topics, and when they were asked.
    topic_infos: Arc<Recent<TopicInfo>>,
    /// The transaction coordinators, reached on this backend's connections (its token).
    coordinators: txn::Coordinators,
}

impl PulsarBackend {
    /// Reads the TLS files now: unusable ones are a configuration error. Nothing connects yet.
    pub fn new(config: PulsarConfig) -> Result<Arc<PulsarBackend>> {
        let tls = if config.uses_tls() {
            Some(TlsSource::new(config.tls.clone())?)
        } else {
            None
        };
        Self::with_tls(config, tls, None)
    }

    fn with_tls(
        config: PulsarConfig,
        tls: Option<Arc<TlsSource>>,
        open_transactions: Option<txn::OpenTransactions>,
    ) -> Result<Arc<PulsarBackend>> {
        let options = ConnectOptions {
            tls: tls
                .clone()
                .filter(|_| config.service_url.starts_with("pulsar+ssl://")),
            token: config.token.clone(),
            client_certificate: config.tls.has_client_certificate(),
            operation_timeout: config.operation_timeout,
            keepalive: connection::KEEPALIVE,
        };
        let admin = AdminClient::new(
            &config.admin_url,
            config.token.clone(),
            tls.clone(),
            config.operation_timeout,
        )?;
        let pool = Arc::new(Pool::new(&config.service_url, options)?);
        Ok(Arc::new(PulsarBackend {
            config: config.clone(),
            tls,
            clients: Default::default(),
            coordinators: txn::Coordinators::new(pool.clone(), open_transactions),
            pool,
            admin: Arc::new(admin),
            compression: config.compression,
            producers: DashMap::new(),
            first_entries: Recent::new(FIRST_ENTRY_TTL),
            topic_infos: Arc::new(Recent::new(TOPIC_INFO_TTL)),
        }))
    }

    async fn producer(
        &self,
        topic: &str,
        name: Option<&str>,
        first_sequence: Option<u64>,
    ) -> Result<Arc<Producer>> {
        if self.producers.len() > PRODUCERS_BEFORE_SWEEP {
            self.close_idle_producers();
        }
        let slot = self
            .producers
            .entry((topic.to_owned(), name.map(str::to_owned)))
            .or_default()
            .clone();
        let mut slot = slot.lock().await;
        if let Some(p) = slot.as_ref() {
            if p.is_usable() {
                return Ok(p.clone());
            }
            p.may_replace(first_sequence)?;
        }
        let p = Arc::new(Producer::create(&self.pool, topic, name, self.compression).await?);
        *slot = Some(p.clone());
        Ok(p)
    }
}

impl PulsarBackend {
    /// Drops producers no send used for a while (each Kafka idempotent producer gets its own
    /// Pulsar producer per partition, so they would pile up on the brokers otherwise).
    fn close_idle_producers(&self) {
        let cutoff = batch::now_millis().saturating_sub(PRODUCER_IDLE.as_millis() as u64);
        self.producers.retain(|_, slot| match slot.try_lock() {
            Ok(guard) => guard
                .as_ref()
                .is_some_and(|p| p.last_used.load(std::sync::atomic::Ordering::Relaxed) >= cutoff),
            Err(_) => true, // being created or used right now
        });
    }
}

#[async_trait]
impl Backend for PulsarBackend {
    fn kind(&self) -> &'static str {
        "pulsar"
    }

    /// Connections made with the client's own token (one set per token, shared by that
    /// client's sessions while any is open), the way a Pulsar client of its own would connect:
    /// Pulsar authenticates and authorizes the client itself, with no proxy role to configure.
    fn as_client(&self, token: &str) -> Option<gateway_core::BackendRef> {
        let mut clients = self.clients.lock().expect("clients lock");
        if let Some(backend) = clients.get(token).and_then(|w| w.upgrade()) {
            return Some(backend);
        }
        clients.retain(|_, w| w.strong_count() > 0);
        let backend = PulsarBackend::with_tls(
            PulsarConfig {
                token: Some(TokenSource::literal(token)),
                ..self.config.clone()
            },
            self.tls.clone(),
            Some(self.coordinators.open_transactions()),
        )
        .ok()?;
        clients.insert(token.to_owned(), Arc::downgrade(&backend));
        Some(backend)
    }

    /// The gateway's token (when it has one) has not expired, the admin API answers it, and a
    /// broker answers a PING on the service connection: a half-open connection is caught here,
    /// not only by the keepalive.
    async fn readiness(&self) -> Result<()> {
        if let Some(token) = &self.config.token {
            credentials::check_not_expired(token, &token.current()?)?;
        }
        self.admin.readiness().await?;
        let connection = self.pool.service_connection().await?;
        connection.ping(READY_PING_TIMEOUT).await
    }
}

#[async_trait]
impl TopicAdmin for PulsarBackend {
    async fn create_topic(&self, topic: &TopicName, partitions: u32) -> Result<()> {
        let name = topic.to_string();
        self.topic_infos.forget(|k| k == name);
        if partitions == 0 {
            self.admin.create_non_partitioned_topic(topic).await
        } else {
            self.admin.create_partitioned_topic(topic, partitions).await
        }
    }

    async fn delete_topic(&self, topic: &TopicName) -> Result<()> {
        let (name, partitions) = (topic.to_string(), format!("{topic}-partition-"));
        self.first_entries
            .forget(|k| k == name || k.starts_with(&partitions));
        self.topic_infos.forget(|k| k == name);
        let deleted = self.admin.delete_topic(topic).await;
        // Again: a produce or fetch may have cached it while the delete was under way.
        self.topic_infos.forget(|k| k == name);
        deleted
    }

    async fn update_partitions(&self, topic: &TopicName, partitions: u32) -> Result<()> {
        let updated = self.admin.update_partitions(topic, partitions).await;
        let name = topic.to_string();
        self.topic_infos.forget(|k| k == name);
        updated
    }

    /// From the cache while fresh. An expired count is answered at once and refreshed in the
    /// background: the admin API is slow to answer, and while Pulsar cannot be reached a lookup
    /// would wait its whole timeout, holding up every produce, fetch and commit naming the topic
    /// (commits hold up heartbeats on their connection). Counts only grow, and this gateway's
    /// own changes drop the entry.
    async fn topic_info(&self, topic: &TopicName) -> Result<Option<TopicInfo>> {
        let key = topic.to_string();
        if let Some((hit, expired)) = self.topic_infos.get_or_stale(&key) {
            if expired {
                let (admin, infos, topic) =
                    (self.admin.clone(), self.topic_infos.clone(), topic.clone());
                tokio::spawn(async move {
                    match admin.topic_info(&topic).await {
                        Ok(Some(info)) => infos.put(key, info),
                        Ok(None) => infos.forget(|k| k == key),
                        Err(e) => {
                            tracing::debug!(%topic, error = %e, "refreshing a partition count")
                        }
                    }
                });
            }
            return Ok(Some(hit));
        }
        // Only existing topics are cached, so a topic created elsewhere shows up at once.
        let info = self.admin.topic_info(topic).await?;
        if let Some(info) = info {
            self.topic_infos.put(key, info);
        }
        Ok(info)
    }

    async fn list_topics(
        &self,
        tenant: &str,
        namespace: &str,
    ) -> Result<Vec<(TopicName, TopicInfo)>> {
        self.admin.list_topics(tenant, namespace).await
    }

    async fn topic_properties(&self, topic: &TopicName) -> Result<BTreeMap<String, String>> {
        self.admin.topic_properties(topic).await
    }

    async fn update_topic_properties(
        &self,
        topic: &TopicName,
        set: &BTreeMap<String, String>,
        remove: &[String],
    ) -> Result<()> {
        self.admin.update_topic_properties(topic, set, remove).await
    }

    async fn set_topic_policies(&self, topic: &TopicName, policies: &TopicPolicies) -> Result<()> {
        self.admin.set_topic_policies(topic, policies).await
    }

    async fn applied_retention(&self, topic: &TopicName) -> Result<Retention> {
        self.admin.applied_retention(topic).await
    }

    async fn compact(&self, topic: &TopicName) -> Result<()> {
        self.admin.compact(topic).await
    }
}

impl PulsarBackend {
    /// A send, in a transaction or not, on the topic's producer for the entries' producer name:
    /// the same producer either way, so plain and transactional sends of one name keep their
    /// order and share one deduplication sequence (see `Producer::submit_in`).
    async fn submit_in(
        &self,
        txn: Option<TransactionId>,
        topic: &TopicName,
        entries: Vec<EntryToSend>,
    ) -> Result<PendingSend> {
        let name = entries
            .first()
            .and_then(|e| e.dedup.as_ref().map(|(n, _)| n.clone()));
        if entries
            .iter()
            .any(|e| e.dedup.as_ref().map(|(n, _)| n) != name.as_ref())
        {
            return Err(BackendError::InvalidArgument(
                "entries of one send need one producer name".into(),
            ));
        }
        let first_sequence = entries
            .first()
            .and_then(|e| e.dedup.as_ref().map(|(_, s)| *s));
        let producer = self
            .producer(&topic.to_string(), name.as_deref(), first_sequence)
            .await?;
        producer.submit_in(txn, entries).await
    }
}

#[async_trait]
impl Producing for PulsarBackend {
    /// A producer opened with this backend's token and closed again: the broker checks the
    /// produce permission when the producer is created.
    async fn may_produce(&self, topic: &TopicName) -> Result<bool> {
        match Producer::create(
            &self.pool,
            &topic.to_string(),
            None,
            proto::compression::NONE,
        )
        .await
        {
            Ok(_closed_on_drop) => Ok(true),
            Err(BackendError::NotAuthorized(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn submit(&self, topic: &TopicName, entries: Vec<EntryToSend>) -> Result<PendingSend> {
        self.submit_in(None, topic, entries).await
    }

    /// From the named producer: the broker tells a new one the highest sequence id persisted for
    /// its name, and it counts what it sends from there. One that exists already is asked as it
    /// is, usable or not (replacing it is `submit`'s decision, see `Producer::may_replace`).
    async fn last_sequence(&self, topic: &TopicName, producer_name: &str) -> Result<Option<u64>> {
        let topic = topic.to_string();
        let existing = self
            .producers
            .get(&(topic.clone(), Some(producer_name.to_owned())))
            .map(|slot| slot.clone());
        if let Some(slot) = existing {
            if let Some(p) = slot.lock().await.as_ref() {
                return Ok(p.last_sequence());
            }
        }
        let producer = self.producer(&topic, Some(producer_name), None).await?;
        Ok(producer.last_sequence())
    }

    /// Reads the topic's last entries backwards from its last message id (`lookback.rs`); each
    /// entry's metadata names its producer and sequence id. An entry of a transaction still
    /// open or aborted is not found.
    async fn find_sequence(
        &self,
        topic: &TopicName,
        producer_name: &str,
        sequence: u64,
    ) -> Result<Option<MessageId>> {
        // From the last entry readers may read: the look-back reads forwards through readers,
        // which wait at an open transaction's first entry (and never return aborted ones).
        let Some(last) = reader::last_message_id(self.pool.clone(), topic).await? else {
            return Ok(None);
        };
        let source = lookback::Lookback::new(self.pool.clone(), self.admin.clone(), topic, false);
        lookback::find_sequence(
            &source,
            last.entry_id(),
            producer_name,
            sequence,
            SEQUENCE_LOOKBACK,
        )
        .await
    }
}

#[async_trait]
impl Reading for PulsarBackend {
    /// What readers may read: not the admin API's last entry, which may be a transaction's
    /// (see `reader::last_message_id`).
    async fn last_message_id(&self, topic: &TopicName) -> Result<Option<MessageId>> {
        reader::last_message_id(self.pool.clone(), topic).await
    }

    async fn first_entry_id(&self, topic: &TopicName) -> Result<Option<EntryId>> {
        // Kafka fetches ask for the log start every time; it only moves when retention drops
        // ledgers, and a stale (lower) answer is harmless, so a short cache saves a REST call.
        let key = topic.to_string();
        if let Some(hit) = self.first_entries.get(&key) {
            return Ok(Some(hit));
        }
        let first = self.admin.first_entry(topic).await?;
        if let Some(id) = first {
            self.first_entries.put(key, id);
        }
        Ok(first)
    }

    async fn find_entry_by_publish_time(
        &self,
        topic: &TopicName,
        publish_time: u64,
    ) -> Result<Option<EntryId>> {
        let Some(found) = self
            .admin
            .entry_by_publish_time(topic, publish_time)
            .await?
        else {
            return Ok(None);
        };
        // Pulsar answers with the last entry when none is that recent: check the entry itself.
        // The first readable one may come later: a chunked message is read at its last chunk.
        let mut reader = self.open_reader(topic, found).await?;
        let entries = reader.read(1, 1, LOOKUP_WAIT).await?;
        Ok(entries
            .first()
            .filter(|e| e.id >= found && e.publish_time >= publish_time)
            .map(|e| e.id))
    }

    async fn open_reader(&self, topic: &TopicName, start: EntryId) -> Result<Box<dyn Reader>> {
        Ok(Box::new(
            reader::PulsarReader::open(self.pool.clone(), self.admin.clone(), topic, start, false)
                .await?,
        ))
    }

    async fn open_compacted_reader(
        &self,
        topic: &TopicName,
        start: EntryId,
    ) -> Result<Box<dyn Reader>> {
        Ok(Box::new(
            reader::PulsarReader::open(self.pool.clone(), self.admin.clone(), topic, start, true)
                .await?,
        ))
    }
}

#[async_trait]
impl Subscriptions for PulsarBackend {
    async fn may_subscribe(
        &self,
        tenant: &str,
        namespace: &str,
        subscription: &str,
    ) -> Result<bool> {
        subscription::may_subscribe(self.pool.clone(), tenant, namespace, subscription).await
    }

    /// Without a prefetch, the consumer's usual receiver queue (`subscription::PERMITS`); a
    /// prefetch never raises it.
    async fn subscribe(
        &self,
        topic: &TopicName,
        subscription: &str,
        options: SubscribeOptions,
    ) -> Result<Box<dyn Consumer>> {
        let permits = options
            .prefetch
            .map_or(subscription::PERMITS, |p| p.min(subscription::PERMITS));
        Ok(Box::new(
            consumer::PulsarConsumer::open(
                self.pool.clone(),
                self.admin.clone(),
                topic,
                subscription,
                options.sub_type,
                options.initial,
                permits,
            )
            .await?,
        ))
    }

    async fn unsubscribe(&self, topic: &TopicName, subscription: &str) -> Result<()> {
        self.admin.delete_subscription(topic, subscription).await
    }

    async fn position_subscription(
        &self,
        topic: &TopicName,
        subscription: &str,
        next: MessageId,
    ) -> Result<()> {
        self.admin
            .position_subscription(topic, subscription, next)
            .await
    }

    async fn subscriptions(&self, topic: &TopicName) -> Result<Vec<String>> {
        self.admin.subscriptions(topic).await
    }

    async fn backlog(&self, topic: &TopicName, subscription: &str) -> Result<u64> {
        self.admin.backlog(topic, subscription).await
    }

    async fn acknowledged(
        &self,
        topic: &TopicName,
        subscription: &str,
    ) -> Result<gateway_core::backend::Acknowledged> {
        self.admin.acknowledged(topic, subscription).await
    }

    async fn ready(&self, topic: &TopicName, subscription: &str) -> Result<u64> {
        self.admin.ready(topic, subscription).await
    }
}

/// Pulsar's transactions (PIP-31), which the contract follows: entries sent in a transaction go
/// to the topic's ledger at once but stay in its transaction buffer, unread, until a commit
/// marker follows; the broker holds every reader and consumer at the first entry of a
/// transaction still open (`maxReadPosition`), and skips aborted entries and the markers.
#[async_trait]
impl Transactions for PulsarBackend {
    /// Fails `Unavailable` when the brokers run without `transactionCoordinatorEnabled`.
    async fn begin_transaction(&self, timeout: std::time::Duration) -> Result<TransactionId> {
        self.coordinators.begin(timeout).await
    }

    async fn add_to_transaction(&self, txn: TransactionId, topic: &TopicName) -> Result<()> {
        self.coordinators.add(txn, &topic.to_string()).await
    }

    /// The coordinator must know the topic before the broker takes a send in the transaction
    /// for it (it ends the transaction only on the topics it knows), so an unknown topic is
    /// added first.
    async fn submit_in_transaction(
        &self,
        txn: TransactionId,
        topic: &TopicName,
        entries: Vec<EntryToSend>,
    ) -> Result<PendingSend> {
        self.coordinators.add(txn, &topic.to_string()).await?;
        self.submit_in(Some(txn), topic, entries).await
    }

    async fn end_transaction(&self, txn: TransactionId, commit: bool) -> Result<()> {
        self.coordinators.end(txn, commit).await
    }
}

#[async_trait]
impl Coordination for PulsarBackend {
    async fn try_lease(&self, topic: &TopicName, holder: &str) -> Result<Option<Box<dyn Lease>>> {
        match Producer::create_exclusive(&self.pool, &topic.to_string(), holder, self.compression)
            .await
        {
            Ok(producer) => Ok(Some(Box::new(PulsarLease(producer)))),
            // Someone else holds it.
            Err(BackendError::ProducerBusy(_) | BackendError::ProducerFenced(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn lease_holder(&self, topic: &TopicName) -> Result<Option<String>> {
        self.admin.exclusive_producer(topic).await
    }

    async fn announce(&self, topic: &TopicName, name: &str) -> Result<Box<dyn Announcement>> {
        let producer =
            Producer::create(&self.pool, &topic.to_string(), Some(name), self.compression).await?;
        Ok(Box::new(PulsarAnnouncement(producer)))
    }

    async fn announced(&self, topic: &TopicName) -> Result<Vec<String>> {
        self.admin.producer_names(topic).await
    }
}
