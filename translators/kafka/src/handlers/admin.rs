//! Topic administration and cluster description: CreateTopics (19), DeleteTopics (20),
//! CreatePartitions (37) and DescribeCluster (60). Configs are in `configs`.

use gateway_core::BackendError;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{
    BrokerId, CreatePartitionsRequest, CreatePartitionsResponse, CreateTopicsRequest,
    CreateTopicsResponse, DeleteTopicsRequest, DeleteTopicsResponse, DescribeClusterResponse,
    TopicName as KafkaTopicName,
};

use super::configs::creation_configs;
use super::str_bytes;
use crate::frontend::{backend_error, KafkaFrontend};
use crate::topic_configs::TopicConfigs;

/// Pulsar replicates on its own (BookKeeper ensembles), so any replication factor a Kafka tool
/// asks for is accepted and the topic reports 1.
const REPORTED_REPLICATION: i16 = 1;

impl KafkaFrontend {
    pub(crate) async fn handle_create_topics(
        &self,
        request: CreateTopicsRequest,
    ) -> CreateTopicsResponse {
        let mut response = CreateTopicsResponse::default();
        for topic in request.topics {
            let mut result = CreatableTopicResult::default();
            let name = topic.name.0.to_string();
            result.name = topic.name;
            result.num_partitions = -1;
            result.replication_factor = -1;
            let partitions = if topic.num_partitions == -1 {
                self.config.default_partitions as i32
            } else {
                topic.num_partitions
            };
            let configs = creation_configs(&topic.configs, &self.config_limits());
            let outcome = match (self.pulsar_topic(&name), configs) {
                (None, _) => Err((
                    ResponseError::InvalidTopicException,
                    format!("invalid topic name '{name}'"),
                )),
                (Some(_), _) if partitions < 1 => Err((
                    ResponseError::InvalidPartitions,
                    "partition count must be at least 1".into(),
                )),
                (Some(_), _) if topic.replication_factor == 0 || topic.replication_factor < -1 => {
                    Err((
                        ResponseError::InvalidReplicationFactor,
                        "replication factor must be positive or -1".into(),
                    ))
                }
                (Some(_), Err(refusal)) => Err(refusal),
                (Some(pulsar), Ok(configs)) => self
                    .create_with_configs(
                        &pulsar,
                        partitions as u32,
                        &configs,
                        request.validate_only,
                    )
                    .await
                    .map(|()| (configs, crate::topic_ids::topic_id(&pulsar))),
            };
            match outcome {
                Ok((configs, topic_id)) => {
                    // v7+ (KIP-516).
                    result.topic_id = topic_id;
                    result.num_partitions = partitions;
                    result.replication_factor = REPORTED_REPLICATION;
                    result.configs = Some(self.created_topic_configs(&configs));
                }
                Err((code, message)) => {
                    result.error_code = code.code();
                    result.error_message = Some(str_bytes(message));
                }
            }
            response.topics.push(result);
        }
        response
    }

    /// Creates a topic and gives it its configs. A topic whose configs cannot be applied is
    /// deleted again, so that creation succeeds or fails as a whole, as on Kafka.
    async fn create_with_configs(
        &self,
        pulsar: &gateway_core::TopicName,
        partitions: u32,
        configs: &TopicConfigs,
        validate_only: bool,
    ) -> Result<(), (ResponseError, String)> {
        match self.backend.topic_info(pulsar).await {
            Ok(Some(_)) => {
                return Err((
                    ResponseError::TopicAlreadyExists,
                    format!("topic '{pulsar}' already exists"),
                ))
            }
            Ok(None) if validate_only => return Ok(()),
            Ok(None) => {}
            Err(e) => return Err((backend_error(e), "backend unavailable".into())),
        }
        self.backend
            .create_topic(pulsar, partitions)
            .await
            .map_err(|e| (backend_error_for_create(&e), e.to_string()))?;
        if let Err(refusal) = self
            .apply_configs(pulsar, configs, &Default::default())
            .await
        {
            if let Err(e) = self.backend.delete_topic(pulsar).await {
                tracing::warn!(topic = %pulsar, error = %e, "could not delete a topic whose configs failed");
            }
            return Err(refusal);
        }
        Ok(())
    }

    pub(crate) async fn handle_delete_topics(
        &self,
        request: DeleteTopicsRequest,
        version: i16,
    ) -> DeleteTopicsResponse {
        let names: Vec<KafkaTopicName> = if version >= 6 {
            request.topics.into_iter().filter_map(|t| t.name).collect()
        } else {
            request.topic_names
        };
        let mut response = DeleteTopicsResponse::default();
        for name in names {
            let mut result = DeletableTopicResult::default();
            let text = name.0.to_string();
            result.name = Some(name);
            let outcome = match self.pulsar_topic(&text) {
                None => Err(ResponseError::UnknownTopicOrPartition),
                Some(topic) => self
                    .backend
                    .delete_topic(&topic)
                    .await
                    .map_err(backend_error),
            };
            if let Err(code) = outcome {
                result.error_code = code.code();
            }
            response.responses.push(result);
        }
        response
    }

    pub(crate) async fn handle_create_partitions(
        &self,
        request: CreatePartitionsRequest,
    ) -> CreatePartitionsResponse {
        let mut response = CreatePartitionsResponse::default();
        for topic in request.topics {
            let mut result = CreatePartitionsTopicResult::default();
            let name = topic.name.0.to_string();
            result.name = topic.name;
            let outcome = async {
                let pulsar = self
                    .pulsar_topic(&name)
                    .ok_or(ResponseError::UnknownTopicOrPartition)?;
                let info = self
                    .backend
                    .topic_info(&pulsar)
                    .await
                    .map_err(backend_error)?
                    .ok_or(ResponseError::UnknownTopicOrPartition)?;
                if topic.count <= info.partitions.max(1) as i32 || info.partitions == 0 {
                    return Err(ResponseError::InvalidPartitions);
                }
                if request.validate_only {
                    return Ok(());
                }
                self.backend
                    .update_partitions(&pulsar, topic.count as u32)
                    .await
                    .map_err(|e| match e {
                        BackendError::InvalidArgument(_) => ResponseError::InvalidPartitions,
                        other => backend_error(other),
                    })
            }
            .await;
            if let Err(code) = outcome {
                result.error_code = code.code();
                result.error_message = Some(str_bytes(format!("{code:?}")));
            }
            response.results.push(result);
        }
        response
    }

    pub(crate) async fn handle_describe_cluster(
        &self,
        client: &crate::handlers::groups::ClientInfo,
    ) -> DescribeClusterResponse {
        let mut response = DescribeClusterResponse::default();
        response.cluster_id = str_bytes(self.config.cluster_id.clone());
        response.controller_id = BrokerId(self.config.node_id);
        for (node_id, host, port) in self.brokers_for(client).await {
            let mut broker = DescribeClusterBroker::default();
            broker.broker_id = BrokerId(node_id);
            broker.host = str_bytes(host);
            broker.port = port;
            response.brokers.push(broker);
        }
        response
    }
}

fn backend_error_for_create(e: &BackendError) -> ResponseError {
    match e {
        BackendError::TopicAlreadyExists(_) => ResponseError::TopicAlreadyExists,
        BackendError::InvalidArgument(_) => ResponseError::InvalidTopicException,
        // Kafka's answer without CREATE permission (Pulsar wants a tenant admin).
        BackendError::NotAuthorized(_) => ResponseError::TopicAuthorizationFailed,
        _ => ResponseError::UnknownServerError,
    }
}
