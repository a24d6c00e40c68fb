//! State shared by every Kafka connection of a gateway instance.

use std::sync::Arc;

use gateway_core::{BackendError, BackendRef, TopicName};
use kafka_protocol::error::ResponseError;

use crate::config::KafkaConfig;

/// The Kafka front end shared by all connections of a listener.
pub struct KafkaFrontend {
    pub config: KafkaConfig,
    pub backend: BackendRef,
    /// Idempotent producers' sequence state, per (producer id, topic, partition).
    pub(crate) sequences: Arc<crate::sequences::Sequences>,
    /// Fetch readers kept between fetches, across all connections.
    pub(crate) readers: Arc<crate::readers::ReaderCache>,
    /// Recent (high watermark, log start) per concrete topic, for fetches.
    pub(crate) watermark_cache: gateway_core::recent::Recent<(i64, i64)>,
    /// What each logical topic's stored properties say (log starts, produce rules), shared by
    /// every client's view.
    pub(crate) topic_states: Arc<gateway_core::recent::Recent<Arc<crate::topic_state::TopicState>>>,
    /// Consumer groups and their committed offsets.
    pub(crate) groups: Arc<crate::groups::GroupCoordinator>,
    /// Connections to the instances coordinating other groups (forward mode).
    pub(crate) forwarder: Arc<crate::groups::forward::Forwarder>,
    /// Set when this front end acts for one client on a backend that authorizes: its group
    /// requests are checked against Pulsar's permissions first.
    pub(crate) group_access: Option<Arc<crate::groups::access::GroupAccess>>,
}

impl KafkaFrontend {
    pub fn new(config: KafkaConfig, backend: BackendRef) -> Arc<Self> {
        let groups = crate::groups::GroupCoordinator::new(config.groups.clone(), backend.clone());
        let forwarder = crate::groups::forward::Forwarder::new(config.peer_secret.clone());
        let readers = Arc::new(crate::readers::ReaderCache::new(
            crate::handlers::fetch::READERS_PER_CONNECTION,
            config.max_cached_readers,
        ));
        Arc::new(KafkaFrontend {
            readers,
            config,
            groups,
            forwarder: Arc::new(forwarder),
            group_access: None,
            backend,
            sequences: Default::default(),
            watermark_cache: gateway_core::recent::Recent::new(
                crate::handlers::fetch::WATERMARK_TTL,
            ),
            topic_states: Arc::new(gateway_core::recent::Recent::new(
                crate::topic_state::STATE_TTL,
            )),
        })
    }

    /// Starts the background work of a running instance: in an addressable fleet, announcing
    /// itself to its peers and reading theirs (Metadata lists them). Needs a Tokio runtime.
    pub fn start(&self) {
        if !self.config.forward_groups {
            self.groups.start_fleet();
        }
    }

    /// This front end acting for one client: topics and records go through `backend` (the
    /// backend as that client, so Pulsar's authorization decides); groups, sequences and the
    /// forwarder stay shared with every other connection.
    pub(crate) fn for_client(&self, backend: BackendRef) -> KafkaFrontend {
        KafkaFrontend {
            config: self.config.clone(),
            backend,
            sequences: self.sequences.clone(),
            readers: self.readers.clone(),
            watermark_cache: gateway_core::recent::Recent::new(
                crate::handlers::fetch::WATERMARK_TTL,
            ),
            topic_states: self.topic_states.clone(),
            groups: self.groups.clone(),
            forwarder: self.forwarder.clone(),
            group_access: None,
        }
    }

    /// The address to give `client` for this instance: its listener's, else the configured one.
    pub(crate) fn advertised_for(
        &self,
        client: &crate::handlers::groups::ClientInfo,
    ) -> (String, i32) {
        match &client.advertised {
            Some((host, port)) => (host.clone(), i32::from(*port)),
            None => (
                self.config.advertised_host.clone(),
                i32::from(self.config.advertised_port),
            ),
        }
    }

    /// The brokers Metadata and DescribeCluster list for `client`, as (node id, host, port): this
    /// instance first, then, in an addressable fleet, its live peers (a client is sent to them by
    /// FindCoordinator and must keep finding them in Metadata).
    pub(crate) async fn brokers_for(
        &self,
        client: &crate::handlers::groups::ClientInfo,
    ) -> Vec<(i32, String, i32)> {
        let (host, port) = self.advertised_for(client);
        let mut brokers = vec![(self.config.node_id, host, port)];
        if !self.config.forward_groups {
            for peer in self.groups.peers() {
                let (host, port) = peer.address_for(client.advertised.is_some());
                brokers.push((peer.node_id, host, i32::from(port)));
            }
        }
        brokers
    }

    /// The Pulsar topic a Kafka topic name maps to: short names live in the default namespace;
    /// `tenant/ns/topic` and `persistent://...` are taken as they are.
    pub(crate) fn pulsar_topic(&self, kafka_name: &str) -> Option<TopicName> {
        if kafka_name.is_empty() || kafka_name.len() > 249 {
            return None;
        }
        TopicName::parse(
            kafka_name,
            &self.config.default_tenant,
            &self.config.default_namespace,
        )
    }

    /// The Kafka name of a Pulsar topic: short inside the default namespace.
    pub(crate) fn kafka_name(&self, topic: &TopicName) -> String {
        if topic.persistent
            && topic.tenant == self.config.default_tenant
            && topic.namespace == self.config.default_namespace
        {
            topic.local.clone()
        } else {
            topic.to_string()
        }
    }

    /// The concrete Pulsar topic holding Kafka partition `partition` of `topic`, or the Kafka error
    /// for a topic or partition that does not exist.
    pub(crate) async fn partition_topic(
        &self,
        kafka_name: &str,
        partition: i32,
    ) -> Result<TopicName, ResponseError> {
        let topic = self
            .pulsar_topic(kafka_name)
            .ok_or(ResponseError::UnknownTopicOrPartition)?;
        let info = self
            .backend
            .topic_info(&topic)
            .await
            .map_err(backend_error)?
            .ok_or(ResponseError::UnknownTopicOrPartition)?;
        match info.partitions {
            // A non-partitioned Pulsar topic is Kafka partition 0.
            0 if partition == 0 => Ok(topic),
            n if partition >= 0 && (partition as u32) < n => Ok(topic.partition(partition as u32)),
            _ => Err(ResponseError::UnknownTopicOrPartition),
        }
    }
}

/// The Kafka error code for a backend failure.
pub(crate) fn backend_error(e: BackendError) -> ResponseError {
    match e {
        BackendError::TopicNotFound(_) => ResponseError::UnknownTopicOrPartition,
        BackendError::TopicAlreadyExists(_) => ResponseError::TopicAlreadyExists,
        BackendError::InvalidArgument(_) => ResponseError::InvalidRequest,
        BackendError::OutOfRange(_) => ResponseError::OffsetOutOfRange,
        // Retriable: the client refreshes its metadata and resends.
        BackendError::Unavailable(_)
        | BackendError::Closed
        | BackendError::ConsumerBusy(_)
        | BackendError::ProducerBusy(_)
        | BackendError::ProducerFenced(_) => ResponseError::NotLeaderOrFollower,
        BackendError::Timeout(_) => ResponseError::RequestTimedOut,
        // Retriable too: Kafka clients back off and retry until their delivery timeout.
        BackendError::QuotaExceeded(_) => ResponseError::ThrottlingQuotaExceeded,
        // Never writable again; Kafka's closest refusal that clients do not retry.
        BackendError::TopicTerminated(_) => ResponseError::InvalidTopicException,
        BackendError::SubscriptionNotFound(_) => ResponseError::UnknownServerError,
        BackendError::Storage(_) => ResponseError::KafkaStorageError,
        BackendError::NotAuthorized(_) => ResponseError::TopicAuthorizationFailed,
        BackendError::TransactionNotOpen(_) => ResponseError::InvalidTxnState,
    }
}
