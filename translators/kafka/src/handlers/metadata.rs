//! Metadata (key 3): the gateway advertises itself as the leader and only replica of every
//! partition, so clients send everything here. In an addressable fleet it also lists the peers
//! coordinating groups, so that clients keep their coordinator connections.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{
    BrokerId, MetadataRequest, MetadataResponse, TopicName as KafkaTopicName,
};

use super::str_bytes;
use crate::frontend::{backend_error, KafkaFrontend};

impl KafkaFrontend {
    pub(crate) async fn handle_metadata(
        &self,
        request: MetadataRequest,
        version: i16,
        client: &crate::handlers::groups::ClientInfo,
    ) -> MetadataResponse {
        let config = &self.config;
        let node = BrokerId(config.node_id);
        let mut response = MetadataResponse::default();
        for (node_id, host, port) in self.brokers_for(client).await {
            let mut broker = MetadataResponseBroker::default();
            broker.node_id = BrokerId(node_id);
            broker.host = str_bytes(host);
            broker.port = port;
            response.brokers.push(broker);
        }
        response.cluster_id = Some(str_bytes(config.cluster_id.clone()));
        response.controller_id = node;

        // v1+: null means every topic; auto-creation is a request flag from v4 on.
        let allow_create =
            config.auto_create_topics && (version < 4 || request.allow_auto_topic_creation);
        let names: Vec<String> = match request.topics {
            Some(topics) => {
                let mut names = Vec::with_capacity(topics.len());
                for t in topics {
                    // v10+: by topic id alone, with a null name (librdkafka) or an empty one
                    // (the Java client).
                    match t.name.filter(|n| !n.is_empty() || t.topic_id.is_nil()) {
                        Some(name) => names.push(name.0.to_string()),
                        None => match self.topic_by_id(&t.topic_id).await {
                            Some(name) => names.push(name),
                            None => {
                                let mut unknown = MetadataResponseTopic::default();
                                unknown.topic_id = t.topic_id;
                                unknown.error_code = ResponseError::UnknownTopicId.code();
                                response.topics.push(unknown);
                            }
                        },
                    }
                }
                names
            }
            None => match self
                .backend
                .list_topics(&config.default_tenant, &config.default_namespace)
                .await
            {
                // The gateway's own state topics (group shards) are not Kafka topics.
                Ok(list) => list
                    .iter()
                    .filter(|(t, _)| !t.local.starts_with(crate::groups::INTERNAL_TOPIC_PREFIX))
                    .map(|(t, _)| self.kafka_name(t))
                    .collect(),
                Err(e) => {
                    tracing::warn!(error = %e, "listing topics failed");
                    Vec::new()
                }
            },
        };
        for name in names {
            response
                .topics
                .push(self.describe_topic(&name, allow_create).await);
        }
        response
    }

    /// The Kafka name of a topic id: one this instance handed out, or one of the default
    /// namespace's topics.
    async fn topic_by_id(&self, id: &uuid::Uuid) -> Option<String> {
        if let Some(topic) = crate::topic_ids::known_topic(id) {
            return Some(self.kafka_name(&topic));
        }
        let config = &self.config;
        let topics = self
            .backend
            .list_topics(&config.default_tenant, &config.default_namespace)
            .await
            .ok()?;
        topics
            .iter()
            .find(|(t, _)| crate::topic_ids::topic_id(t) == *id)
            .map(|(t, _)| self.kafka_name(t))
    }

    async fn describe_topic(&self, name: &str, allow_create: bool) -> MetadataResponseTopic {
        let mut topic = MetadataResponseTopic::default();
        topic.name = Some(KafkaTopicName(str_bytes(name)));
        let Some(pulsar) = self.pulsar_topic(name) else {
            topic.error_code = ResponseError::InvalidTopicException.code();
            return topic;
        };
        let mut info = self.backend.topic_info(&pulsar).await;
        if matches!(info, Ok(None)) && allow_create {
            let partitions = self.config.default_partitions;
            match self.backend.create_topic(&pulsar, partitions).await {
                Ok(()) => {
                    tracing::info!(topic = %pulsar, partitions, "auto-created topic");
                    // Kafka's default configs: a week's retention, and no deletion for
                    // want of consumers (a stock Pulsar deletes such topics after a minute).
                    let defaults = crate::topic_configs::TopicConfigs::default();
                    if let Err((_, why)) = self
                        .apply_configs(&pulsar, &defaults, &Default::default())
                        .await
                    {
                        tracing::warn!(topic = %pulsar, error = %why, "auto-created topic keeps the namespace's retention");
                    }
                }
                Err(e) => {
                    tracing::debug!(topic = %pulsar, error = %e, "auto-create raced or failed")
                }
            }
            info = self.backend.topic_info(&pulsar).await;
        }
        let count = match info {
            Ok(Some(info)) => info.partitions.max(1),
            Ok(None) => {
                topic.error_code = ResponseError::UnknownTopicOrPartition.code();
                return topic;
            }
            Err(e) => {
                topic.error_code = backend_error(e).code();
                return topic;
            }
        };
        // v10+: the consumer group protocol names partitions by topic id.
        topic.topic_id = crate::topic_ids::topic_id(&pulsar);
        let node = BrokerId(self.config.node_id);
        topic.partitions = (0..count as i32)
            .map(|index| {
                let mut p = MetadataResponsePartition::default();
                p.partition_index = index;
                p.leader_id = node;
                // No leader epochs: clients then skip epoch validation (OffsetsForLeaderEpoch).
                p.leader_epoch = -1;
                p.replica_nodes = vec![node];
                p.isr_nodes = vec![node];
                p
            })
            .collect();
        topic
    }
}
