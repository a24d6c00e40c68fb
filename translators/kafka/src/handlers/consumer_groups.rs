//! The consumer group protocol (KIP-848, `group.protocol=consumer`): ConsumerGroupHeartbeat (68)
//! and ConsumerGroupDescribe (69). The coordinator (`groups::consumer_group`) assigns; this
//! module checks each request as Kafka's coordinator does, resolves the subscribed topics to ids
//! and partition counts, and maps the answers back.

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::consumer_group_describe_response::{
    self as describe, DescribedGroup,
};
use kafka_protocol::messages::consumer_group_heartbeat_response::{Assignment, TopicPartitions};
use kafka_protocol::messages::{
    ApiKey, ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse,
    ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse, RequestKind, ResponseKind,
    TopicName as KafkaTopicName,
};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use super::groups::ClientInfo;
use super::str_bytes;
use crate::frontend::KafkaFrontend;
use crate::groups::consumer_group::{
    whole_name, HeartbeatParams, Partitions, TopicMeta, JOIN_EPOCH, STATIC_LEAVE_EPOCH,
};
use crate::groups::coordinator::ConsumerGroupLookup;

/// ConsumerGroupDescribe: authorized operations not computed.
const OPERATIONS_NOT_REQUESTED: i32 = i32::MIN;
/// ConsumerGroupDescribe v1's member type of a consumer protocol member.
const CONSUMER_MEMBER: i8 = 1;

/// Kafka's checks of a heartbeat's fields, with its messages.
fn invalid(r: &ConsumerGroupHeartbeatRequest, version: i16) -> Option<&'static str> {
    let empty = |s: &Option<StrBytes>| s.as_ref().is_some_and(|s| s.is_empty());
    if r.group_id.is_empty() {
        return Some("GroupId can't be empty.");
    }
    if empty(&r.instance_id) {
        return Some("InstanceId can't be empty.");
    }
    if empty(&r.rack_id) {
        return Some("RackId can't be empty.");
    }
    // v1 (KIP-1082): the consumer names itself; before, the coordinator names a joining member.
    if r.member_id.is_empty() && (version >= 1 || r.member_epoch != JOIN_EPOCH) {
        return Some("MemberId can't be empty.");
    }
    match r.member_epoch {
        JOIN_EPOCH => {
            if r.rebalance_timeout_ms == -1 {
                return Some("RebalanceTimeoutMs must be provided in first request.");
            }
            if r.topic_partitions.as_ref().is_none_or(|t| !t.is_empty()) {
                return Some("TopicPartitions must be empty when (re-)joining.");
            }
            if r.subscribed_topic_names.is_none() && r.subscribed_topic_regex.is_none() {
                return Some(
                    "SubscribedTopicNames or SubscribedTopicRegex must be set in first request.",
                );
            }
        }
        STATIC_LEAVE_EPOCH if r.instance_id.is_none() => return Some("InstanceId can't be null."),
        e if e < STATIC_LEAVE_EPOCH => return Some("MemberEpoch is invalid."),
        _ => {}
    }
    None
}

fn assignment(partitions: Partitions) -> Assignment {
    let mut a = Assignment::default();
    a.topic_partitions = partitions
        .into_iter()
        .map(|(id, ps)| {
            let mut t = TopicPartitions::default();
            t.topic_id = id;
            t.partitions = ps.into_iter().collect();
            t
        })
        .collect();
    a
}

fn described(partitions: &Partitions, names: &BTreeMap<Uuid, &str>) -> describe::Assignment {
    let mut a = describe::Assignment::default();
    a.topic_partitions = partitions
        .iter()
        .map(|(id, ps)| {
            let mut t = describe::TopicPartitions::default();
            t.topic_id = *id;
            t.topic_name = KafkaTopicName(str_bytes(names.get(id).copied().unwrap_or_default()));
            t.partitions = ps.iter().copied().collect();
            t
        })
        .collect();
    a
}

impl KafkaFrontend {
    pub(crate) async fn handle_consumer_group_heartbeat(
        &self,
        request: ConsumerGroupHeartbeatRequest,
        version: i16,
        client: &ClientInfo,
    ) -> ConsumerGroupHeartbeatResponse {
        tracing::debug!(?request, "consumer group heartbeat request");
        let mut response = ConsumerGroupHeartbeatResponse::default();
        let settings = &self.groups.settings().consumer;
        response.heartbeat_interval_ms = settings.heartbeat_interval.as_millis() as i32;
        response.member_epoch = -1;
        if let Some(why) = invalid(&request, version) {
            response.error_code = ResponseError::InvalidRequest.code();
            response.error_message = Some(str_bytes(why));
            return response;
        }
        // An empty regex is none (librdkafka sends one beside its topic names).
        if let Some(regex) = request
            .subscribed_topic_regex
            .as_deref()
            .filter(|r| !r.is_empty())
        {
            if let Err(e) = whole_name(regex) {
                response.error_code = ResponseError::InvalidRegularExpression.code();
                response.error_message = Some(str_bytes(format!(
                    "SubscribedTopicRegex `{regex}` is not a valid regular expression: {e}."
                )));
                return response;
            }
        }
        let member_id = if request.member_id.is_empty() {
            uuid::Builder::from_random_bytes(rand::random())
                .into_uuid()
                .to_string()
        } else {
            request.member_id.to_string()
        };
        let params = HeartbeatParams {
            member_id,
            member_epoch: request.member_epoch,
            instance_id: request.instance_id.map(|i| i.to_string()),
            rack_id: request.rack_id.map(|r| r.to_string()),
            rebalance_timeout_ms: request.rebalance_timeout_ms,
            subscribed_names: request
                .subscribed_topic_names
                .map(|names| names.into_iter().map(|n| n.0.to_string()).collect()),
            subscribed_regex: request.subscribed_topic_regex.map(|r| r.to_string()),
            server_assignor: request.server_assignor.map(|a| a.to_string()),
            owned: request.topic_partitions.map(|topics| {
                topics
                    .into_iter()
                    .map(|t| (t.topic_id, t.partitions.into_iter().collect()))
                    .collect()
            }),
            client_id: client.client_id.clone(),
            client_host: client.host.clone(),
        };
        let group = request.group_id.0.as_str();
        let resolved = match self.groups.consumer_topics_to_resolve(group, &params) {
            Some((names, regexes)) => self.resolve_topics(names, regexes).await,
            None => None,
        };
        let (member, epoch) = (params.member_id.clone(), params.member_epoch);
        let outcome = self
            .groups
            .consumer_heartbeat(group, params, resolved)
            .await;
        tracing::debug!(group, member, epoch, error = outcome.error, answered_epoch = outcome.member_epoch, assignment = ?outcome.assignment, "consumer group heartbeat");
        response.error_code = outcome.error;
        response.error_message = outcome.message.map(str_bytes);
        response.member_id = Some(str_bytes(outcome.member_id));
        response.member_epoch = outcome.member_epoch;
        response.assignment = outcome.assignment.map(assignment);
        response
    }

    /// The ids and partition counts of the topics that exist among `names`, and of the default
    /// namespace's topics that a regex matches; `None` when any could not be looked up (the
    /// group keeps what it had rather than losing the topics' partitions to a passing error).
    async fn resolve_topics(
        &self,
        mut names: BTreeSet<String>,
        regexes: BTreeSet<String>,
    ) -> Option<BTreeMap<String, TopicMeta>> {
        let until = tokio::time::Instant::now() + self.groups.settings().commit_timeout;
        let mut topics = BTreeMap::new();
        if !regexes.is_empty() {
            let regexes: Vec<regex::Regex> =
                regexes.iter().filter_map(|r| whole_name(r).ok()).collect();
            let config = &self.config;
            let listed = self
                .backend
                .list_topics(&config.default_tenant, &config.default_namespace);
            let listed = match tokio::time::timeout_at(until, listed).await {
                Ok(Ok(listed)) => listed,
                _ => return None,
            };
            for (topic, info) in listed {
                if topic
                    .local
                    .starts_with(crate::groups::INTERNAL_TOPIC_PREFIX)
                {
                    continue;
                }
                let name = self.kafka_name(&topic);
                if regexes.iter().any(|r| r.is_match(&name)) {
                    names.remove(&name);
                    let meta = TopicMeta {
                        id: crate::topic_ids::topic_id(&topic),
                        partitions: info.partitions.max(1) as i32,
                    };
                    topics.insert(name, meta);
                }
            }
        }
        let lookups = names.into_iter().map(|name| async move {
            let Some(pulsar) = self.pulsar_topic(&name) else {
                return Ok((name, None));
            };
            match self.backend.topic_info(&pulsar).await {
                Ok(Some(info)) => {
                    let meta = TopicMeta {
                        id: crate::topic_ids::topic_id(&pulsar),
                        partitions: info.partitions.max(1) as i32,
                    };
                    Ok((name, Some(meta)))
                }
                Ok(None) => Ok((name, None)),
                Err(e) => Err(e),
            }
        });
        let found = tokio::time::timeout_at(until, futures::future::join_all(lookups))
            .await
            .ok()?;
        for lookup in found {
            match lookup {
                Ok((name, Some(meta))) => {
                    topics.insert(name, meta);
                }
                Ok((_, None)) => {}
                Err(e) => {
                    tracing::debug!(error = %e, "resolving a consumer group's topics failed");
                    return None;
                }
            }
        }
        Some(topics)
    }

    pub(crate) async fn handle_consumer_group_describe(
        &self,
        request: ConsumerGroupDescribeRequest,
        version: i16,
        client: &ClientInfo,
    ) -> ConsumerGroupDescribeResponse {
        let mut response = ConsumerGroupDescribeResponse::default();
        for group_id in request.group_ids {
            let mut d = DescribedGroup::default();
            d.authorized_operations = OPERATIONS_NOT_REQUESTED;
            if let Err(e) = self.authorize_group(&group_id.0).await {
                d.group_id = group_id;
                d.error_code = e.code();
                response.groups.push(d);
                continue;
            }
            let single = {
                let mut r = ConsumerGroupDescribeRequest::default();
                r.group_ids = vec![group_id.clone()];
                r.include_authorized_operations = request.include_authorized_operations;
                RequestKind::ConsumerGroupDescribe(r)
            };
            match self
                .forwarded(
                    client,
                    &group_id.0,
                    ApiKey::ConsumerGroupDescribe,
                    version,
                    &single,
                )
                .await
            {
                Some(Ok(ResponseKind::ConsumerGroupDescribe(mut r))) if r.groups.len() == 1 => {
                    response.groups.push(r.groups.remove(0));
                    continue;
                }
                Some(answer) => {
                    d.group_id = group_id;
                    d.error_code = super::groups::forward_error(answer);
                    response.groups.push(d);
                    continue;
                }
                None => {}
            }
            match self.groups.consumer_describe(&group_id.0).await {
                Err(e) => d.error_code = e.code(),
                Ok(ConsumerGroupLookup::Missing) => {
                    d.error_code = ResponseError::GroupIdNotFound.code();
                    d.error_message = Some(str_bytes(format!("Group {} not found.", group_id.0)));
                }
                Ok(ConsumerGroupLookup::Classic) => {
                    d.error_code = ResponseError::GroupIdNotFound.code();
                    d.error_message = Some(str_bytes(format!(
                        "Group {} is not a consumer group.",
                        group_id.0
                    )));
                }
                Ok(ConsumerGroupLookup::Found(g)) => {
                    let names: BTreeMap<Uuid, &str> =
                        g.topics.iter().map(|(n, m)| (m.id, n.as_str())).collect();
                    d.group_state = str_bytes(g.state_name());
                    d.group_epoch = g.group_epoch;
                    d.assignment_epoch = g.assignment_epoch;
                    d.assignor_name = str_bytes(g.assignor());
                    d.members = g
                        .members
                        .values()
                        .map(|m| {
                            let mut member = describe::Member::default();
                            member.member_id = str_bytes(m.id.clone());
                            member.instance_id = m.instance_id.clone().map(str_bytes);
                            member.rack_id = m.rack_id.clone().map(str_bytes);
                            member.member_epoch = m.epoch;
                            member.client_id = str_bytes(m.client_id.clone());
                            member.client_host = str_bytes(m.client_host.clone());
                            member.subscribed_topic_regex =
                                m.subscribed_regex.clone().map(str_bytes);
                            member.subscribed_topic_names = m
                                .subscribed_names
                                .iter()
                                .map(|n| KafkaTopicName(str_bytes(n.clone())))
                                .collect();
                            member.assignment = described(&m.assigned, &names);
                            member.target_assignment = described(
                                g.target.get(&m.id).unwrap_or(&Partitions::new()),
                                &names,
                            );
                            member.member_type = CONSUMER_MEMBER;
                            member
                        })
                        .collect();
                }
            }
            d.group_id = group_id;
            response.groups.push(d);
        }
        response
    }
}
