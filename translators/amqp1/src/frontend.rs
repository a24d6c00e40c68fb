//! State shared by every AMQP 1.0 connection of a gateway instance, and where a connection
//! starts once the listener has read its protocol header (core spec §2.2, security §5.1).

use std::collections::{HashMap, HashSet};
use std::io;
use std::sync::Arc;
use std::time::Duration;

use gateway_core::budget::MemoryBudget;
use gateway_core::{BackendRef, InitialPosition, SubscribeOptions, SubscriptionType, TopicName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{watch, Mutex};
use tracing::debug;

use crate::frame::{HEADER_AMQP, HEADER_SASL};
use crate::sasl::{self, Login};

/// How long a client has to get through the headers and SASL.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a claim of a container id waits for its fleet-wide lease: the last connection
/// with that id may still be letting it go (it is released as that connection closes).
const CONTAINER_LEASE_WAIT: Duration = Duration::from_secs(2);

#[derive(Debug, Clone)]
pub struct Amqp1Config {
    /// Where short addresses (`Q`) live.
    pub default_tenant: String,
    pub default_namespace: String,
    /// Accepted PLAIN credentials (user, password), unless authentication is required.
    pub users: Vec<(String, String)>,
    /// Checks Pulsar tokens given as the PLAIN password (as on the 0-9-1 side).
    pub auth: Option<Arc<gateway_security::TokenVerifier>>,
    /// Only tokens are accepted; ANONYMOUS and a bare `AMQP 0 1 0 0` header are refused.
    pub auth_required: bool,
    /// Token-authenticated connections per principal, shared with the other listeners.
    pub principal_connections: Option<Arc<gateway_security::PrincipalConnections>>,
    /// The max-frame-size the gateway offers in open.
    pub max_frame_size: u32,
    /// The idle-time-out the gateway asks of clients in open (§2.4.5); zero for none.
    pub idle_timeout: Duration,
    /// The largest message accepted on a link (its max-message-size).
    pub max_message_bytes: u64,
    /// The durable Shared subscription through which a queue's consumers read its topic
    /// (Starlight for JMS's `jms.queueSubscriptionName`).
    pub queue_subscription: String,
    /// The gateway-wide budget for bytes in flight (`limits.max_in_flight_bytes`), shared with
    /// the other front ends; a budget of its own (256 MiB) when not given.
    pub budget: Option<Arc<MemoryBudget>>,
}

impl Default for Amqp1Config {
    fn default() -> Self {
        Amqp1Config {
            default_tenant: "public".into(),
            default_namespace: "default".into(),
            users: vec![("guest".into(), "guest".into())],
            auth: None,
            auth_required: false,
            principal_connections: None,
            max_frame_size: 128 * 1024,
            idle_timeout: Duration::from_secs(60),
            max_message_bytes: 64 << 20,
            queue_subscription: "jms-queue".into(),
            budget: None,
        }
    }
}

/// The AMQP 1.0 front end shared by all connections of the AMQP listeners.
pub struct Amqp1Frontend {
    pub config: Amqp1Config,
    pub backend: BackendRef,
    /// Names the gateway in open (container-id).
    pub container_id: String,
    /// Queues whose subscription this instance has made sure of (see `ensure_queue`), with
    /// their partition counts.
    queues: Mutex<HashMap<TopicName, u32>>,
    /// Durable subscriptions attached through this instance, by Pulsar subscription name: an
    /// unsubscribe names only the subscription, not its topic (see `find_subscription`).
    durable: Mutex<HashMap<String, TopicName>>,
    /// Container ids (JMS client ids) held by a connection of this instance that asked to be
    /// the only one (`sole-connection-for-container`); across the fleet, see `claim_container`.
    containers: std::sync::Mutex<HashSet<String>>,
    /// Message bytes received and not yet persisted hold credit from it.
    pub budget: Arc<MemoryBudget>,
    /// Redelivery counts above 0 seen on this instance, which Pulsar may forget.
    pub(crate) redeliveries: crate::redelivery::RedeliveryCounts,
}

impl Amqp1Frontend {
    pub fn new(config: Amqp1Config, backend: BackendRef) -> Arc<Self> {
        Arc::new(Amqp1Frontend {
            budget: config
                .budget
                .clone()
                .unwrap_or_else(|| MemoryBudget::new(256 << 20)),
            config,
            backend,
            container_id: format!("pulsar-gateway-{:016x}", rand::random::<u64>()),
            queues: Mutex::new(HashMap::new()),
            durable: Mutex::new(HashMap::new()),
            containers: std::sync::Mutex::new(HashSet::new()),
            redeliveries: Default::default(),
        })
    }

    /// Whether `header` is one this front end answers (both 1.0 headers). Any other header
    /// starting with `AMQP` and a 1.x version gets [`Amqp1Frontend::supported_header`].
    pub fn speaks(header: &[u8; 8]) -> bool {
        *header == HEADER_AMQP || *header == HEADER_SASL
    }

    /// Whether an unsupported header asks for an AMQP 1.x layer: protocol id 0 (AMQP), 2 (TLS)
    /// or 3 (SASL) with major version 1 and minor 0 (§2.2, §5.2.1), which is answered with a 1.0
    /// header rather than the 0-9-1 one. (`AMQP 1 1 0 10`, 0-10's header, is not one.)
    pub fn asks_for_1x(header: &[u8; 8]) -> bool {
        header.starts_with(b"AMQP")
            && matches!(header[4], 0 | 2 | 3)
            && header[5] == 1
            && header[6] == 0
    }

    /// The header a client must start with: SASL when logins are required (§5.1).
    pub fn supported_header(&self) -> [u8; 8] {
        if self.config.auth_required {
            HEADER_SASL
        } else {
            HEADER_AMQP
        }
    }

    /// Serves one connection whose 8-byte protocol header the listener has read.
    pub async fn serve_connection<S>(
        self: Arc<Self>,
        header: [u8; 8],
        stream: S,
        client_certificate: Option<String>,
        drain: watch::Receiver<bool>,
    ) -> io::Result<()>
    where
        S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let (mut reader, mut writer) = tokio::io::split(stream);
        let login = match header {
            HEADER_SASL => {
                writer.write_all(&HEADER_SASL).await?;
                let login = tokio::time::timeout(
                    HANDSHAKE_TIMEOUT,
                    sasl::negotiate(
                        &self.config,
                        client_certificate.as_deref(),
                        &mut reader,
                        &mut writer,
                    ),
                )
                .await;
                let Ok(Ok(Some(login))) = login else {
                    let _ = writer.shutdown().await;
                    return Ok(());
                };
                // After SASL the client starts AMQP with its own header (§5.3.2).
                let mut next = [0u8; 8];
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, reader.read_exact(&mut next)).await {
                    Ok(Ok(_)) if next == HEADER_AMQP => login,
                    Ok(Ok(_)) => {
                        writer.write_all(&HEADER_AMQP).await?;
                        writer.shutdown().await?;
                        return Ok(());
                    }
                    _ => return Ok(()),
                }
            }
            HEADER_AMQP if !self.config.auth_required => Login::anonymous(),
            _ => {
                // §2.2: answer with the header we support, then close.
                debug!(?header, "AMQP 1.0 header not supported");
                writer.write_all(&self.supported_header()).await?;
                writer.shutdown().await?;
                return Ok(());
            }
        };
        writer.write_all(&HEADER_AMQP).await?;
        crate::connection::run(self, login, reader, writer, drain).await
    }

    /// The Pulsar topic of address `address`: short names in the default namespace,
    /// `tenant/ns/name` and `persistent://…` as they are.
    pub fn topic(&self, address: &str) -> Option<TopicName> {
        TopicName::parse(
            address,
            &self.config.default_tenant,
            &self.config.default_namespace,
        )
    }

    /// Makes sure queue `topic` has its Shared subscription (on each partition of a
    /// partitioned topic), so messages sent before its first consumer are kept for it (Pulsar
    /// keeps nothing for a topic without subscriptions). Returns its partition count, 0 when
    /// it is not partitioned.
    pub async fn ensure_queue(&self, topic: &TopicName) -> gateway_core::Result<u32> {
        if let Some(partitions) = self.queues.lock().await.get(topic) {
            return Ok(*partitions);
        }
        let partitions = self.ensure_topic(topic).await?;
        let options = SubscribeOptions {
            sub_type: SubscriptionType::Shared,
            initial: InitialPosition::Earliest,
            prefetch: Some(0),
        };
        let consumer = gateway_core::partitioned::subscribe_either(
            self.backend.as_ref(),
            topic,
            partitions,
            &self.config.queue_subscription,
            options,
        )
        .await?;
        consumer.close().await;
        self.queues.lock().await.insert(topic.clone(), partitions);
        Ok(partitions)
    }

    /// Makes sure topic `topic` exists, and returns its partition count (0: not partitioned).
    /// Unlike a queue it gets no subscription: what is published while no subscription exists
    /// is for nobody (JMS topics, as Starlight for JMS). Destinations are created on first use
    /// (JMS expects it, as Artemis does), unpartitioned; a topic Kafka created is partitioned.
    pub async fn ensure_topic(&self, topic: &TopicName) -> gateway_core::Result<u32> {
        if let Some(info) = self.backend.topic_info(topic).await? {
            return Ok(info.partitions);
        }
        match self.backend.create_topic(topic, 0).await {
            Ok(()) => Ok(0),
            // Made by someone else meanwhile, perhaps partitioned.
            Err(gateway_core::BackendError::TopicAlreadyExists(_)) => Ok(self
                .backend
                .topic_info(topic)
                .await?
                .map_or(0, |info| info.partitions)),
            Err(e) => Err(e),
        }
    }

    /// Remembers that durable subscription `subscription` is on `topic`.
    pub async fn remember_subscription(&self, subscription: &str, topic: &TopicName) {
        self.durable
            .lock()
            .await
            .insert(subscription.to_owned(), topic.clone());
    }

    /// Forgets durable subscription `subscription` (it was deleted).
    pub async fn forget_subscription(&self, subscription: &str) {
        self.durable.lock().await.remove(subscription);
    }

    /// The topic of durable subscription `subscription`: the one this instance saw it on, else
    /// the first topic of the default namespace that has a subscription of that name (as
    /// Starlight for JMS's unsubscribe looks in its system namespace).
    pub async fn find_subscription(
        &self,
        subscription: &str,
    ) -> gateway_core::Result<Option<TopicName>> {
        if let Some(topic) = self.durable.lock().await.get(subscription) {
            if self
                .backend
                .subscriptions(topic)
                .await?
                .iter()
                .any(|s| s == subscription)
            {
                return Ok(Some(topic.clone()));
            }
        }
        let topics = self
            .backend
            .list_topics(&self.config.default_tenant, &self.config.default_namespace)
            .await?;
        for (topic, _) in topics {
            if let Ok(subs) = self.backend.subscriptions(&topic).await {
                if subs.iter().any(|s| s == subscription) {
                    return Ok(Some(topic));
                }
            }
        }
        Ok(None)
    }

    /// Deletes a temporary queue or topic whose connection ended. The consumers of its links
    /// may still be closing, which Pulsar refuses to delete under: that is waited for a little.
    pub async fn delete_temporary(&self, topic: &TopicName) {
        self.queues.lock().await.remove(topic);
        for attempt in 0..20 {
            match self.backend.delete_topic(topic).await {
                Ok(()) | Err(gateway_core::BackendError::TopicNotFound(_)) => return,
                Err(e) if attempt == 19 => {
                    tracing::warn!(error = %e, %topic, "temporary destination not deleted");
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        }
    }

    /// Takes container id `id` for one connection (`holder` names it), or `None` when another
    /// connection holds it, on this instance or on another of the fleet. Across the fleet the
    /// id is a lease (`Coordination::try_lease`: on Pulsar an exclusive producer) on topic
    /// `__jms-client-id-<id>` of the default namespace. Where the lease cannot be had at all
    /// (Pulsar unreachable, or no topic may be made there), the id is unique on this instance
    /// only, and a warning says so. Dropping the claim gives it back.
    pub async fn claim_container(
        self: &Arc<Self>,
        id: &str,
        holder: &str,
    ) -> Option<ContainerClaim> {
        let fresh = self
            .containers
            .lock()
            .expect("containers lock")
            .insert(id.to_owned());
        if !fresh {
            return None;
        }
        let mut claim = ContainerClaim {
            frontend: self.clone(),
            id: id.to_owned(),
            _lease: None,
        };
        if generated_client_id(id) {
            // Unique by construction: no lease (each would cost a Pulsar topic and producer).
            return Some(claim);
        }
        let topic = TopicName::new(
            &self.config.default_tenant,
            &self.config.default_namespace,
            &format!("__jms-client-id-{}", gateway_core::topic::escape(id)),
        );
        let deadline = tokio::time::Instant::now() + CONTAINER_LEASE_WAIT;
        loop {
            match self.backend.try_lease(&topic, holder).await {
                Ok(Some(lease)) => {
                    claim._lease = Some(lease);
                    return Some(claim);
                }
                Ok(None) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                // Held elsewhere: dropping the claim frees the id here again.
                Ok(None) => return None,
                Err(e) => {
                    tracing::warn!(error = %e, client_id = id, "cannot lease a client id across the fleet; it is unique on this instance only");
                    return Some(claim);
                }
            }
        }
    }
}

/// Whether `id` is a client id Qpid JMS made up itself (`ID:<uuid>:<n>`, its `clientIDPrefix`
/// and a random UUID) because the application set none: Qpid JMS asks every connection to be
/// the only one with its id, but only an application's own client id can be used twice.
fn generated_client_id(id: &str) -> bool {
    let Some(rest) = id.strip_prefix("ID:") else {
        return false;
    };
    let uuid = rest.as_bytes().get(..36);
    uuid.is_some_and(|u| {
        u.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
    })
}

/// A connection's hold on its container id (see [`Amqp1Frontend::claim_container`]).
pub struct ContainerClaim {
    frontend: Arc<Amqp1Frontend>,
    id: String,
    /// The fleet-wide lease, released with the claim.
    _lease: Option<Box<dyn gateway_core::backend::Lease>>,
}

impl Drop for ContainerClaim {
    fn drop(&mut self) {
        if let Ok(mut held) = self.frontend.containers.lock() {
            held.remove(&self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::generated_client_id;

    #[test]
    fn qpid_jms_generated_client_ids_are_told_apart() {
        assert!(generated_client_id(
            "ID:6e9a9e1a-02d0-4905-9f69-35dbf541efbf:1"
        ));
        assert!(!generated_client_id("orders-service"));
        assert!(!generated_client_id("ID:orders"));
        assert!(!generated_client_id("ID:6e9a9e1a-02d0-4905-9f69"));
    }
}
