//! Topic administration and cluster description: CreateTopics (19), DeleteTopics (20),
//! CreatePartitions (37), DescribeConfigs (32) and DescribeCluster (60).

use gateway_core::BackendError;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult,
};
use kafka_protocol::messages::{
    BrokerId, CreatePartitionsRequest, CreatePartitionsResponse, CreateTopicsRequest,
    CreateTopicsResponse, DeleteTopicsRequest, DeleteTopicsResponse, DescribeClusterResponse,
    DescribeConfigsRequest, DescribeConfigsResponse, TopicName as KafkaTopicName,
};

use super::str_bytes;
use crate::frontend::{backend_error, KafkaFrontend};

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
/// DescribeConfigs source: the broker's default.
const SOURCE_DEFAULT: i8 = 5;

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
            let outcome = match self.pulsar_topic(&name) {
                None => Err((
                    ResponseError::InvalidTopicException,
                    format!("invalid topic name '{name}'"),
                )),
                Some(_) if partitions < 1 => Err((
                    ResponseError::InvalidPartitions,
                    "partition count must be at least 1".into(),
                )),
                Some(_) if topic.replication_factor == 0 || topic.replication_factor < -1 => Err((
                    ResponseError::InvalidReplicationFactor,
                    "replication factor must be positive or -1".into(),
                )),
                Some(pulsar) => {
                    let exists = self.backend.topic_info(&pulsar).await.map(|i| i.is_some());
                    match exists {
                        Ok(true) => Err((
                            ResponseError::TopicAlreadyExists,
                            format!("topic '{name}' already exists"),
                        )),
                        Ok(false) if request.validate_only => Ok(()),
                        Ok(false) => self
                            .backend
                            .create_topic(&pulsar, partitions as u32)
                            .await
                            .map_err(|e| (backend_error_for_create(&e), e.to_string())),
                        Err(e) => Err((backend_error(e), "backend unavailable".into())),
                    }
                }
            };
            match outcome {
                Ok(()) => {
                    result.num_partitions = partitions;
                    result.replication_factor = REPORTED_REPLICATION;
                    result.configs = Some(Vec::new());
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

    pub(crate) async fn handle_describe_configs(
        &self,
        request: DescribeConfigsRequest,
    ) -> DescribeConfigsResponse {
        let mut response = DescribeConfigsResponse::default();
        for resource in request.resources {
            let mut result = DescribeConfigsResult::default();
            result.resource_type = resource.resource_type;
            result.resource_name = resource.resource_name.clone();
            let defaults: Vec<(&str, String)> = match resource.resource_type {
                RESOURCE_TOPIC => {
                    let name = resource.resource_name.to_string();
                    let exists = match self.pulsar_topic(&name) {
                        Some(t) => self.backend.topic_info(&t).await.ok().flatten().is_some(),
                        None => false,
                    };
                    if !exists {
                        result.error_code = ResponseError::UnknownTopicOrPartition.code();
                        response.results.push(result);
                        continue;
                    }
                    self.topic_configs()
                }
                RESOURCE_BROKER => self.broker_configs(),
                _ => {
                    result.error_code = ResponseError::InvalidRequest.code();
                    result.error_message =
                        Some(str_bytes("only topic and broker configs can be described"));
                    response.results.push(result);
                    continue;
                }
            };
            let wanted = resource
                .configuration_keys
                .map(|keys| keys.iter().map(|k| k.to_string()).collect::<Vec<_>>());
            for (name, value) in defaults {
                if wanted
                    .as_ref()
                    .is_some_and(|w| !w.iter().any(|k| k == name))
                {
                    continue;
                }
                let mut config = DescribeConfigsResourceResult::default();
                config.name = str_bytes(name);
                config.value = Some(str_bytes(value));
                config.read_only = true;
                config.config_source = SOURCE_DEFAULT;
                result.configs.push(config);
            }
            response.results.push(result);
        }
        response
    }

    fn topic_configs(&self) -> Vec<(&'static str, String)> {
        vec![
            ("cleanup.policy", "delete".into()),
            ("compression.type", "producer".into()),
            ("max.message.bytes", self.config.max_frame_bytes.to_string()),
            ("message.timestamp.type", "CreateTime".into()),
            ("min.insync.replicas", "1".into()),
            ("retention.bytes", "-1".into()),
            ("retention.ms", "-1".into()),
        ]
    }

    fn broker_configs(&self) -> Vec<(&'static str, String)> {
        vec![
            (
                "auto.create.topics.enable",
                self.config.auto_create_topics.to_string(),
            ),
            ("default.replication.factor", "1".into()),
            ("message.max.bytes", self.config.max_frame_bytes.to_string()),
            ("min.insync.replicas", "1".into()),
            ("num.partitions", self.config.default_partitions.to_string()),
        ]
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
