//! Settings of the Kafka front end, filled in by the gateway's configuration.

/// How the Kafka front end presents itself and maps names.
#[derive(Debug, Clone)]
pub struct KafkaConfig {
    /// Host and port that Metadata advertises as the leader of every partition.
    pub advertised_host: String,
    pub advertised_port: u16,
    /// Broker id reported for this gateway.
    pub node_id: i32,
    /// Cluster id reported in Metadata and DescribeCluster.
    pub cluster_id: String,
    /// Tenant and namespace that short topic names resolve in.
    pub default_tenant: String,
    pub default_namespace: String,
    /// Create topics on first produce or metadata request, as Kafka's `auto.create.topics.enable`.
    pub auto_create_topics: bool,
    /// Partitions of auto-created topics (Kafka's `num.partitions`).
    pub default_partitions: u32,
    /// Largest request accepted, checked before the request is read into memory.
    pub max_frame_bytes: usize,
    /// Requests of one connection that may be in flight at once before reads pause.
    pub max_in_flight: usize,
    /// Fetch readers kept open between fetches across all connections; beyond it the least
    /// recently used is closed.
    pub max_cached_readers: usize,
    /// Bytes in flight across the gateway (produce requests until persisted, fetch responses
    /// being assembled), shared with the other front ends.
    pub budget: std::sync::Arc<gateway_core::budget::MemoryBudget>,
    /// The group coordinator's settings.
    pub groups: crate::groups::GroupSettings,
    /// Forward mode: clients reach every instance through one address, so group requests for
    /// groups coordinated elsewhere are forwarded to that instance's internal listener, and
    /// FindCoordinator always names this address.
    pub forward_groups: bool,
    /// Checks the tokens of SASL authentication; without it SASL is refused.
    pub auth: Option<std::sync::Arc<gateway_security::TokenVerifier>>,
    /// Every client must authenticate before any other request.
    pub auth_required: bool,
    /// Set for an authenticated session when authentication is required: its group ids live
    /// inside its tenant/namespace.
    pub group_scope: Option<crate::groups::scope::GroupScope>,
    /// How long a client has to authenticate when authentication is required.
    pub auth_timeout: std::time::Duration,
    /// A connection without requests for this long is closed (`connections.max.idle.ms`).
    pub idle_timeout: std::time::Duration,
    /// Authenticated connections per principal, shared with the other listeners.
    pub principal_connections: Option<std::sync::Arc<gateway_security::PrincipalConnections>>,
    /// The fleet's shared secret: peers must prove it on the internal listener, and this
    /// instance proves it to the peers it forwards to. Without it the internal listener lets
    /// no peer in.
    pub peer_secret: Option<std::sync::Arc<gateway_security::PeerSecret>>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            advertised_host: "127.0.0.1".into(),
            advertised_port: 9092,
            node_id: 0,
            cluster_id: "pulsar-gateway".into(),
            default_tenant: "public".into(),
            default_namespace: "default".into(),
            auto_create_topics: true,
            default_partitions: 1,
            max_frame_bytes: 100 * 1024 * 1024,
            max_in_flight: 16,
            max_cached_readers: 4096,
            budget: gateway_core::budget::MemoryBudget::new(256 << 20),
            groups: crate::groups::GroupSettings::default(),
            forward_groups: false,
            auth: None,
            auth_required: false,
            group_scope: None,
            auth_timeout: std::time::Duration::from_secs(10),
            idle_timeout: std::time::Duration::from_secs(600),
            principal_connections: None,
            peer_secret: None,
        }
    }
}
