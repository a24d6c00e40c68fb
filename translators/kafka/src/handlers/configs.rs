//! Topic and broker configs: DescribeConfigs (32), AlterConfigs (33) and
//! IncrementalAlterConfigs (44); CreateTopics applies a new topic's configs through here too.
//! What each topic config means on the gateway is in `crate::topic_configs`.

use std::collections::BTreeMap;

use gateway_core::backend::Retention;
use gateway_core::TopicName;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_topics_response::CreatableTopicConfigs;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{
    alter_configs_response, incremental_alter_configs_response, AlterConfigsRequest,
    AlterConfigsResponse, DescribeConfigsRequest, DescribeConfigsResponse,
    IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::str_bytes;
use crate::frontend::{backend_error, KafkaFrontend};
use crate::topic_configs::{
    keeps_at_least, retention_values, Invalid, Limits, Op, TopicConfigs, DEFINITIONS,
};

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
/// DescribeConfigs sources: set on the topic; a cluster-wide default (here: the retention that
/// Pulsar applies from its namespace or broker settings); the built-in default.
const SOURCE_TOPIC: i8 = 1;
const SOURCE_CLUSTER_DEFAULT: i8 = 3;
const SOURCE_DEFAULT: i8 = 5;

/// A failed config request: the error code and its message.
type Refusal = (ResponseError, String);

fn invalid(i: Invalid) -> Refusal {
    (ResponseError::InvalidConfig, i.0)
}

/// One config as DescribeConfigs and CreateTopics report it.
struct Described {
    name: &'static str,
    value: String,
    source: i8,
    value_type: i8,
}

impl KafkaFrontend {
    pub(crate) fn config_limits(&self) -> Limits {
        Limits {
            max_message_bytes: self.config.max_frame_bytes,
        }
    }

    /// Stores a topic's configs and sets the backend policies they ask for. `stored` is what the
    /// topic's properties held before (to remove configs no longer set).
    pub(crate) async fn apply_configs(
        &self,
        topic: &TopicName,
        configs: &TopicConfigs,
        stored: &BTreeMap<String, String>,
    ) -> Result<(), Refusal> {
        let refused = |what: &str, e: gateway_core::BackendError| {
            tracing::warn!(%topic, error = %e, "could not apply the topic's {what}");
            match e {
                gateway_core::BackendError::NotAuthorized(_) => {
                    (ResponseError::TopicAuthorizationFailed, e.to_string())
                }
                gateway_core::BackendError::InvalidArgument(_) => (
                    ResponseError::InvalidConfig,
                    format!("the backend refused the topic's {what}: {e}"),
                ),
                other => {
                    let text = other.to_string();
                    (backend_error(other), text)
                }
            }
        };
        self.backend
            .set_topic_policies(topic, &configs.policies())
            .await
            .map_err(|e| refused("policies", e))?;
        let (set, remove) = configs.properties(stored);
        let updated = self
            .backend
            .update_topic_properties(topic, &set, &remove)
            .await
            .map_err(|e| refused("configs", e));
        // Produce applies the new configs here at once (other instances within the state's
        // time-to-live).
        self.forget_topic_state(topic);
        updated
    }

    /// A topic's configs as stored with it, and the raw properties they came from.
    async fn stored_configs(
        &self,
        topic: &TopicName,
    ) -> Result<(TopicConfigs, BTreeMap<String, String>), Refusal> {
        match self.backend.topic_properties(topic).await {
            Ok(properties) => Ok((TopicConfigs::from_properties(&properties), properties)),
            Err(gateway_core::BackendError::TopicNotFound(_)) => Err((
                ResponseError::UnknownTopicOrPartition,
                format!("topic {topic} does not exist"),
            )),
            Err(e) => {
                let text = e.to_string();
                Err((backend_error(e), text))
            }
        }
    }

    /// Every topic config with its value and source. `applied` is the retention the backend
    /// applies: the configured one is reported only when the backend keeps at least that much,
    /// otherwise what it really keeps, so a client is never told data is kept that is not.
    fn describe_topic_configs(
        &self,
        configs: &TopicConfigs,
        applied: Option<Retention>,
    ) -> Vec<Described> {
        let limits = self.config_limits();
        let reported = applied
            .filter(|a| !keeps_at_least(*a, configs.retention()))
            .map(retention_values);
        DEFINITIONS
            .iter()
            .map(|d| {
                let (mut value, mut source) = match configs.set.get(d.name) {
                    Some(v) => (v.clone(), SOURCE_TOPIC),
                    None => (configs.value(d.name, &limits), SOURCE_DEFAULT),
                };
                if let Some((ms, bytes)) = &reported {
                    let real = match d.name {
                        "retention.ms" => Some(ms),
                        "retention.bytes" => Some(bytes),
                        _ => None,
                    };
                    if let Some(real) = real.filter(|r| **r != value) {
                        value = real.clone();
                        source = SOURCE_CLUSTER_DEFAULT;
                    }
                }
                Described {
                    name: d.name,
                    value,
                    source,
                    value_type: d.value_type as i8,
                }
            })
            .collect()
    }

    /// CreateTopics' report of a new topic's configs (v5+).
    pub(crate) fn created_topic_configs(
        &self,
        configs: &TopicConfigs,
    ) -> Vec<CreatableTopicConfigs> {
        self.describe_topic_configs(configs, None)
            .into_iter()
            .map(|d| {
                let mut c = CreatableTopicConfigs::default();
                c.name = str_bytes(d.name);
                c.value = Some(str_bytes(d.value));
                c.config_source = d.source;
                c
            })
            .collect()
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
            let described = match resource.resource_type {
                RESOURCE_TOPIC => {
                    self.describe_topic_configs_of(&resource.resource_name)
                        .await
                }
                RESOURCE_BROKER => Ok(self.broker_configs()),
                _ => Err((
                    ResponseError::InvalidRequest,
                    "only topic and broker configs can be described".into(),
                )),
            };
            let described = match described {
                Ok(d) => d,
                Err((code, message)) => {
                    result.error_code = code.code();
                    result.error_message = Some(str_bytes(message));
                    response.results.push(result);
                    continue;
                }
            };
            let wanted = resource.configuration_keys.as_ref();
            for d in described {
                if wanted.is_some_and(|w| !w.iter().any(|k| k.as_str() == d.name)) {
                    continue;
                }
                let mut config = DescribeConfigsResourceResult::default();
                config.name = str_bytes(d.name);
                config.value = Some(str_bytes(d.value.clone()));
                config.read_only = resource.resource_type == RESOURCE_BROKER;
                config.config_source = d.source;
                config.config_type = d.value_type;
                if request.include_synonyms {
                    let mut synonym = DescribeConfigsSynonym::default();
                    synonym.name = str_bytes(d.name);
                    synonym.value = Some(str_bytes(d.value));
                    synonym.source = d.source;
                    config.synonyms.push(synonym);
                }
                result.configs.push(config);
            }
            response.results.push(result);
        }
        response
    }

    async fn describe_topic_configs_of(&self, name: &StrBytes) -> Result<Vec<Described>, Refusal> {
        let topic = self.pulsar_topic(name).ok_or((
            ResponseError::UnknownTopicOrPartition,
            format!("invalid topic name '{name}'"),
        ))?;
        let (configs, _) = self.stored_configs(&topic).await?;
        // Reading Pulsar's retention policy needs tenant-admin rights, which a client's own token
        // (with authorization on Pulsar) usually lacks; the topic's configs are then reported as
        // set, as they are when the gateway created the topic.
        let applied = match self.backend.applied_retention(&topic).await {
            Ok(applied) => Some(applied),
            Err(e) => {
                tracing::debug!(%topic, error = %e, "applied retention unknown; configured one reported");
                None
            }
        };
        Ok(self.describe_topic_configs(&configs, applied))
    }

    fn broker_configs(&self) -> Vec<Described> {
        let string = |name, value: String, value_type| Described {
            name,
            value,
            source: SOURCE_DEFAULT,
            value_type,
        };
        vec![
            string(
                "auto.create.topics.enable",
                self.config.auto_create_topics.to_string(),
                1,
            ),
            string("default.replication.factor", "1".into(), 4),
            string(
                "message.max.bytes",
                self.config.max_frame_bytes.to_string(),
                3,
            ),
            string("min.insync.replicas", "1".into(), 3),
            string(
                "num.partitions",
                self.config.default_partitions.to_string(),
                3,
            ),
        ]
    }

    /// AlterConfigs: each topic's configs become exactly those given (the others return to their
    /// defaults), as on a Kafka broker.
    pub(crate) async fn handle_alter_configs(
        &self,
        request: AlterConfigsRequest,
    ) -> AlterConfigsResponse {
        let mut response = AlterConfigsResponse::default();
        for resource in request.resources {
            let pairs: Vec<(String, Option<String>)> = resource
                .configs
                .iter()
                .map(|c| (c.name.to_string(), c.value.as_ref().map(|v| v.to_string())))
                .collect();
            let limits = self.config_limits();
            let outcome = self
                .alter(
                    resource.resource_type,
                    &resource.resource_name,
                    request.validate_only,
                    |_| {
                        TopicConfigs::parse(
                            pairs.iter().map(|(k, v)| (k.as_str(), v.as_deref())),
                            &limits,
                        )
                    },
                )
                .await;
            let mut result = alter_configs_response::AlterConfigsResourceResponse::default();
            result.resource_type = resource.resource_type;
            result.resource_name = resource.resource_name;
            if let Err((code, message)) = outcome {
                result.error_code = code.code();
                result.error_message = Some(str_bytes(message));
            }
            response.responses.push(result);
        }
        response
    }

    /// IncrementalAlterConfigs: SET, DELETE (back to the default), APPEND and SUBTRACT (list
    /// configs) applied to each topic's configs; all of a resource's changes or none.
    pub(crate) async fn handle_incremental_alter_configs(
        &self,
        request: IncrementalAlterConfigsRequest,
    ) -> IncrementalAlterConfigsResponse {
        let mut response = IncrementalAlterConfigsResponse::default();
        for resource in request.resources {
            let changes: Result<Vec<(String, Op, Option<String>)>, Refusal> = resource
                .configs
                .iter()
                .map(|c| {
                    let op = Op::from_code(c.config_operation).ok_or_else(|| {
                        (
                            ResponseError::InvalidRequest,
                            format!("unknown config operation {}", c.config_operation),
                        )
                    })?;
                    Ok((
                        c.name.to_string(),
                        op,
                        c.value.as_ref().map(|v| v.to_string()),
                    ))
                })
                .collect();
            let limits = self.config_limits();
            let outcome = match changes {
                Ok(changes) => {
                    self.alter(
                        resource.resource_type,
                        &resource.resource_name,
                        request.validate_only,
                        |current| current.altered(&changes, &limits),
                    )
                    .await
                }
                Err(refusal) => Err(refusal),
            };
            let mut result =
                incremental_alter_configs_response::AlterConfigsResourceResponse::default();
            result.resource_type = resource.resource_type;
            result.resource_name = resource.resource_name;
            if let Err((code, message)) = outcome {
                result.error_code = code.code();
                result.error_message = Some(str_bytes(message));
            }
            response.responses.push(result);
        }
        response
    }

    /// One resource of an alter request: the topic's new configs from its current ones, checked,
    /// then stored and applied unless only validating.
    async fn alter(
        &self,
        resource_type: i8,
        name: &StrBytes,
        validate_only: bool,
        change: impl FnOnce(&TopicConfigs) -> Result<TopicConfigs, Invalid>,
    ) -> Result<(), Refusal> {
        match resource_type {
            RESOURCE_TOPIC => {}
            RESOURCE_BROKER => {
                return Err((
                    ResponseError::InvalidConfig,
                    "broker configs are the gateway's own settings (its configuration file, \
                     environment or flags) and cannot be changed through Kafka"
                        .into(),
                ))
            }
            _ => {
                return Err((
                    ResponseError::InvalidRequest,
                    "only topic configs can be altered".into(),
                ))
            }
        }
        let topic = self.pulsar_topic(name).ok_or((
            ResponseError::UnknownTopicOrPartition,
            format!("invalid topic name '{name}'"),
        ))?;
        let (current, stored) = self.stored_configs(&topic).await?;
        let altered = change(&current).map_err(invalid)?;
        if validate_only {
            return Ok(());
        }
        self.apply_configs(&topic, &altered, &stored).await
    }
}

/// CreateTopics' configs, checked.
pub(crate) fn creation_configs(
    configs: &[kafka_protocol::messages::create_topics_request::CreatableTopicConfig],
    limits: &Limits,
) -> Result<TopicConfigs, Refusal> {
    TopicConfigs::parse(
        configs
            .iter()
            .map(|c| (c.name.as_str(), c.value.as_ref().map(|v| v.as_str()))),
        limits,
    )
    .map_err(invalid)
}
