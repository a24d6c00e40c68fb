//! The Backend for a real Apache Pulsar cluster (DESIGN.md §4): produce, read and subscribe over
//! the Pulsar binary protocol, and the admin REST API for what that protocol lacks (creating,
//! listing and deleting topics, partition counts, stats).

mod admin;
mod batch;
mod connection;
mod consumer;
mod frame;
mod pool;
mod producer;
pub mod proto;

use std::sync::Arc;

use async_trait::async_trait;
use dashmap::DashMap;
use gateway_core::backend::{InitialPosition, SendReceipt, SubscriptionType, TopicInfo};
use gateway_core::{
    Backend, BackendError, Consumer, EntryId, EntryToSend, MessageId, Reader, Result, TopicName,
};
use tokio::sync::Mutex;

pub use admin::AdminClient;
pub use connection::Auth;

use crate::pool::Pool;
use crate::producer::Producer;

/// Producers kept before idle ones are looked for, and how long unused makes one idle.
const PRODUCERS_BEFORE_SWEEP: usize = 1024;
const PRODUCER_IDLE: std::time::Duration = std::time::Duration::from_secs(600);

/// How long a topic's first entry is taken from the cache.
const FIRST_ENTRY_TTL: std::time::Duration = std::time::Duration::from_secs(10);

/// How long to wait for an entry known to exist to reach a reader.
const LOOKUP_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// How the gateway reaches Pulsar.
#[derive(Debug, Clone)]
pub struct PulsarConfig {
    /// `pulsar://host:port` of a broker, a proxy or a load balancer in front of brokers.
    pub service_url: String,
    /// `http://host:port` of the admin REST API.
    pub admin_url: String,
    /// Token for both, if the cluster requires authentication.
    pub token: Option<String>,
    /// Codec for written entries: `proto::compression::{NONE, LZ4, ZLIB, ZSTD}`.
    pub compression: i32,
}

type ProducerSlot = Arc<Mutex<Option<Arc<Producer>>>>;

pub struct PulsarBackend {
    pool: Arc<Pool>,
    admin: AdminClient,
    compression: i32,
    /// Producers by (topic, producer name); a lock per slot so one producer is created at a time.
    producers: DashMap<(String, Option<String>), ProducerSlot>,
    /// First stored entry per topic, and when it was asked.
    first_entries: DashMap<String, (std::time::Instant, EntryId)>,
}

impl PulsarBackend {
    pub fn new(config: PulsarConfig) -> Result<Arc<PulsarBackend>> {
        let auth = Auth {
            token: config.token.clone(),
        };
        Ok(Arc::new(PulsarBackend {
            pool: Arc::new(Pool::new(&config.service_url, auth)?),
            admin: AdminClient::new(&config.admin_url, config.token)?,
            compression: config.compression,
            producers: DashMap::new(),
            first_entries: DashMap::new(),
        }))
    }

    async fn producer(&self, topic: &str, name: Option<&str>) -> Result<Arc<Producer>> {
        if self.producers.len() > PRODUCERS_BEFORE_SWEEP {
            self.close_idle_producers();
        }
        let slot = self
            .producers
            .entry((topic.to_owned(), name.map(str::to_owned)))
            .or_default()
            .clone();
        let mut slot = slot.lock().await;
        if let Some(p) = slot.as_ref().filter(|p| p.is_usable()) {
            return Ok(p.clone());
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

    async fn is_ready(&self) -> bool {
        self.admin.is_ready().await && self.pool.service_connection().await.is_ok()
    }

    async fn create_topic(&self, topic: &TopicName, partitions: u32) -> Result<()> {
        if partitions == 0 {
            self.admin.create_non_partitioned_topic(topic).await
        } else {
            self.admin.create_partitioned_topic(topic, partitions).await
        }
    }

    async fn delete_topic(&self, topic: &TopicName) -> Result<()> {
        let (name, partitions) = (topic.to_string(), format!("{topic}-partition-"));
        self.first_entries
            .retain(|k, _| k != &name && !k.starts_with(&partitions));
        self.admin.delete_topic(topic).await
    }

    async fn update_partitions(&self, topic: &TopicName, partitions: u32) -> Result<()> {
        self.admin.update_partitions(topic, partitions).await
    }

    async fn topic_info(&self, topic: &TopicName) -> Result<Option<TopicInfo>> {
        self.admin.topic_info(topic).await
    }

    async fn list_topics(
        &self,
        tenant: &str,
        namespace: &str,
    ) -> Result<Vec<(TopicName, TopicInfo)>> {
        self.admin.list_topics(tenant, namespace).await
    }

    async fn send(&self, topic: &TopicName, entries: Vec<EntryToSend>) -> Result<Vec<SendReceipt>> {
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
        let producer = self.producer(&topic.to_string(), name.as_deref()).await?;
        producer.send(entries).await
    }

    async fn last_message_id(&self, topic: &TopicName) -> Result<Option<MessageId>> {
        self.admin.last_message_id(topic).await
    }

    async fn first_entry_id(&self, topic: &TopicName) -> Result<Option<EntryId>> {
        // Kafka fetches ask for the log start every time; it only moves when retention drops
        // ledgers, and a stale (lower) answer is harmless, so a short cache saves a REST call.
        let key = topic.to_string();
        if let Some(hit) = self
            .first_entries
            .get(&key)
            .filter(|h| h.0.elapsed() < FIRST_ENTRY_TTL)
        {
            return Ok(Some(hit.1));
        }
        let first = self.admin.first_entry(topic).await?;
        if let Some(id) = first {
            self.first_entries
                .insert(key, (std::time::Instant::now(), id));
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
        let mut reader = self.open_reader(topic, found).await?;
        let entries = reader.read(1, 1, LOOKUP_WAIT).await?;
        Ok(entries
            .first()
            .filter(|e| e.id == found && e.publish_time >= publish_time)
            .map(|e| e.id))
    }

    async fn open_reader(&self, topic: &TopicName, start: EntryId) -> Result<Box<dyn Reader>> {
        Ok(Box::new(
            consumer::PulsarReader::open(self.pool.clone(), &topic.to_string(), start).await?,
        ))
    }

    async fn subscribe(
        &self,
        topic: &TopicName,
        subscription: &str,
        sub_type: SubscriptionType,
        initial: InitialPosition,
    ) -> Result<Box<dyn Consumer>> {
        Ok(Box::new(
            consumer::PulsarConsumer::open(
                self.pool.clone(),
                &topic.to_string(),
                subscription,
                sub_type,
                initial,
            )
            .await?,
        ))
    }

    async fn unsubscribe(&self, topic: &TopicName, subscription: &str) -> Result<()> {
        self.admin.delete_subscription(topic, subscription).await
    }

    async fn subscriptions(&self, topic: &TopicName) -> Result<Vec<String>> {
        self.admin.subscriptions(topic).await
    }

    async fn backlog(&self, topic: &TopicName, subscription: &str) -> Result<u64> {
        self.admin.backlog(topic, subscription).await
    }
}
