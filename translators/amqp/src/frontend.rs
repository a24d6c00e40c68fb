//! State shared by every AMQP connection of a gateway instance, and the names AMQP objects get
//! in Pulsar (DESIGN.md §6).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use gateway_core::{BackendRef, TopicName};
use tokio::sync::Mutex;

use crate::error::{AmqpError, AmqpResult, ReplyCode};
use crate::topology::{Queue, Vhost};

#[derive(Debug, Clone)]
pub struct AmqpConfig {
    /// Where vhost `/` lives, and the tenant of a single-word vhost.
    pub default_tenant: String,
    pub default_namespace: String,
    /// Accepted PLAIN credentials (user, password), unless authentication is required.
    pub users: Vec<(String, String)>,
    /// Checks Pulsar tokens given as the PLAIN password.
    pub auth: Option<std::sync::Arc<gateway_security::TokenVerifier>>,
    /// Only tokens are accepted.
    pub auth_required: bool,
    /// Token-authenticated connections per principal, shared with the other listeners.
    pub principal_connections: Option<std::sync::Arc<gateway_security::PrincipalConnections>>,
    /// What the server proposes in connection.tune.
    pub frame_max: u32,
    pub channel_max: u16,
    pub heartbeat_secs: u16,
    /// The largest message body accepted.
    pub max_message_bytes: u64,
    /// Message bytes published and not yet persisted, across all connections, before
    /// publishers are blocked (connection.blocked) until the backend catches up.
    pub max_unpersisted_bytes: usize,
    /// The budget those bytes come from, when it is shared with other front ends (the
    /// gateway's `limits.max_in_flight_bytes`); else one of `max_unpersisted_bytes`.
    pub budget: Option<std::sync::Arc<gateway_core::budget::MemoryBudget>>,
}

impl Default for AmqpConfig {
    fn default() -> Self {
        AmqpConfig {
            default_tenant: "public".into(),
            default_namespace: "default".into(),
            users: vec![("guest".into(), "guest".into())],
            auth: None,
            auth_required: false,
            principal_connections: None,
            frame_max: 131_072,
            channel_max: 2047,
            heartbeat_secs: 60,
            max_message_bytes: 64 << 20,
            max_unpersisted_bytes: 256 << 20,
            budget: None,
        }
    }
}

/// The AMQP front end shared by all connections of a listener.
pub struct AmqpFrontend {
    pub config: AmqpConfig,
    pub backend: BackendRef,
    vhosts: Mutex<HashMap<String, Arc<Vhost>>>,
    /// Names this instance in exclusive-queue owners.
    pub instance: String,
    next_connection: AtomicU64,
    /// Credit for message bytes on their way to the backend (flow control).
    pub unpersisted: Arc<gateway_core::budget::MemoryBudget>,
}

impl AmqpFrontend {
    pub fn new(config: AmqpConfig, backend: BackendRef) -> Arc<Self> {
        Arc::new(AmqpFrontend {
            backend,
            vhosts: Mutex::new(HashMap::new()),
            instance: format!("{:016x}", rand::random::<u64>()),
            next_connection: AtomicU64::new(1),
            unpersisted: config.budget.clone().unwrap_or_else(|| {
                gateway_core::budget::MemoryBudget::new(config.max_unpersisted_bytes)
            }),
            config,
        })
    }

    pub(crate) fn connection_name(&self) -> String {
        let n = self.next_connection.fetch_add(1, Ordering::Relaxed);
        format!("{}-{n}", self.instance)
    }

    /// The vhost's topology, loaded on first use. `/` is the default namespace, `t/ns` is that
    /// namespace, and a single word `x` is the namespace `x` of the default tenant.
    pub async fn vhost(&self, name: &str) -> AmqpResult<Arc<Vhost>> {
        let mut vhosts = self.vhosts.lock().await;
        if let Some(v) = vhosts.get(name) {
            return Ok(v.clone());
        }
        let (tenant, namespace) = self.vhost_namespace(name)?;
        let vhost = Vhost::open(self.backend.clone(), name, &tenant, &namespace)
            .await
            .map_err(|e| {
                AmqpError::connection(
                    ReplyCode::NotAllowed,
                    format!("vhost '{name}' not found or not available: {}", e.text),
                )
            })?;
        crate::expiry::start(&vhost);
        vhosts.insert(name.to_owned(), vhost.clone());
        Ok(vhost)
    }

    /// The Pulsar tenant and namespace of a vhost name.
    fn vhost_namespace(&self, name: &str) -> AmqpResult<(String, String)> {
        let (tenant, namespace) = match name {
            "/" | "" => (
                self.config.default_tenant.clone(),
                self.config.default_namespace.clone(),
            ),
            other => match other.trim_matches('/').split_once('/') {
                Some((t, ns)) => (t.to_owned(), ns.to_owned()),
                None => (
                    self.config.default_tenant.clone(),
                    other.trim_matches('/').to_owned(),
                ),
            },
        };
        let valid = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        };
        if !valid(&tenant) || !valid(&namespace) {
            return Err(AmqpError::connection(
                ReplyCode::NotAllowed,
                format!("vhost '{name}' not found"),
            ));
        }
        Ok((tenant, namespace))
    }

    /// Whether the client holding `token` may use the vhost: asked of Pulsar with the client's
    /// own token (may it look up the vhost's topology topic?), before the gateway touches the
    /// vhost for it. Always true on a backend that does not authorize (embedded).
    pub async fn may_use_vhost(&self, name: &str, token: &str) -> AmqpResult<bool> {
        let Some(client) = self.backend.as_client(token) else {
            return Ok(true);
        };
        let (tenant, namespace) = self.vhost_namespace(name)?;
        let topic = TopicName::new(&tenant, &namespace, crate::topology::TOPOLOGY_TOPIC);
        match client.topic_info(&topic).await {
            Ok(_) => Ok(true),
            Err(gateway_core::BackendError::NotAuthorized(_)) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
}

/// A Pulsar-safe rendering of an AMQP name (`gateway_core::topic::escape`).
pub use gateway_core::topic::escape;

/// Exchange X is the topic X of the vhost's namespace (escaped where Pulsar needs it).
pub fn exchange_topic(vhost: &Vhost, exchange: &str) -> TopicName {
    TopicName::new(&vhost.tenant, &vhost.namespace, &escape(exchange))
}

/// Messages published to the default exchange for queue Q go to Q's own topic.
pub fn queue_topic(vhost: &Vhost, queue: &str) -> TopicName {
    TopicName::new(
        &vhost.tenant,
        &vhost.namespace,
        &format!("amqp.queue.{}", escape(queue)),
    )
}

/// The subscription through which queue Q reads its own topic.
pub fn queue_subscription(queue: &Queue) -> String {
    format!("amqp.queue.{:x}", queue.incarnation)
}

/// The subscription through which queue Q reads the topic of an exchange it is reachable from
/// (bound to it, or to an exchange bound to it): one per exchange, however many bindings, so a
/// message comes once and in publish order. The exchange is hashed to keep the name short.
pub fn exchange_subscription(queue: &Queue, exchange: &str) -> String {
    format!(
        "amqp.{}.{:x}.x{:016x}",
        escape(&queue.name),
        queue.incarnation,
        crate::topology::fnv64(&[exchange.as_bytes()])
    )
}
