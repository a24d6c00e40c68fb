//! Consumer group APIs: FindCoordinator (10), JoinGroup (11), Heartbeat (12), LeaveGroup (13),
//! SyncGroup (14), OffsetCommit (8), OffsetFetch (9), DescribeGroups (15), ListGroups (16),
//! DeleteGroups (42) and OffsetDelete (47). This module maps each version's fields to the
//! coordinator (`crate::groups`) and back.

use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{
    ApiKey, BrokerId, DeleteGroupsRequest, DeleteGroupsResponse, DescribeGroupsRequest,
    DescribeGroupsResponse, FindCoordinatorRequest, FindCoordinatorResponse, GroupId,
    HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest,
    LeaveGroupResponse, ListGroupsRequest, ListGroupsResponse, OffsetCommitRequest,
    OffsetCommitResponse, OffsetDeleteRequest, OffsetDeleteResponse, OffsetFetchRequest,
    OffsetFetchResponse, RequestKind, ResponseKind, SyncGroupRequest, SyncGroupResponse,
    TopicName as KafkaTopicName,
};

use kafka_protocol::protocol::StrBytes;

use super::{str_bytes, topic_entry};
use crate::frontend::KafkaFrontend;
use crate::groups::coordinator::{CommitRequest, Owner};
use crate::groups::state::{Committed, JoinParams};

mod routing;
pub(crate) use routing::forward_error;
pub(crate) use routing::{join_not_coordinator, sync_not_coordinator};

/// FindCoordinator key types.
const KEY_GROUP: i8 = 0;
const KEY_TRANSACTION: i8 = 1;
/// DescribeGroups: authorized operations not computed.
const OPERATIONS_NOT_REQUESTED: i32 = i32::MIN;

/// OffsetFetch's topics from the coordinator's answer. Versions before and after 8 use two
/// generated types with the same fields, hence a macro rather than a function.
macro_rules! fetched_topics {
    ($found:expr, $topic:ty, $partition:ty) => {
        group_by_topic($found)
            .into_iter()
            .map(|(name, partitions)| {
                let mut t = <$topic>::default();
                t.name = KafkaTopicName(str_bytes(name));
                t.partitions = partitions
                    .into_iter()
                    .map(|(index, c)| {
                        let (offset, epoch, metadata) = committed_fields(c);
                        let mut p = <$partition>::default();
                        p.partition_index = index;
                        p.committed_offset = offset;
                        p.committed_leader_epoch = epoch;
                        p.metadata = Some(str_bytes(metadata));
                        p
                    })
                    .collect();
                t
            })
            .collect()
    };
}

/// KIP-447: with `require_stable`, partitions whose offsets are pending in an open transaction
/// (all of them while the coordinator has not yet read its pending offsets, `None`) are answered
/// UNSTABLE_OFFSET_COMMIT, which consumers retry. A macro for the same reason as above.
macro_rules! mark_unstable {
    ($coordinator:expr, $group:expr, $topics:expr) => {{
        let unstable = $coordinator.unstable_offsets($group);
        for t in $topics.iter_mut() {
            for p in t.partitions.iter_mut() {
                let pending = unstable
                    .as_ref()
                    .is_none_or(|u| u.contains(&(t.name.0.to_string(), p.partition_index)));
                if pending {
                    p.error_code = ResponseError::UnstableOffsetCommit.code();
                    p.committed_offset = -1;
                }
            }
        }
    }};
}

/// Who sent a request: reported by DescribeGroups for each member.
#[derive(Debug, Clone, Default)]
pub struct ClientInfo {
    pub client_id: String,
    pub host: String,
    /// Arrived on the internal listener: served here, never forwarded again.
    pub internal: bool,
    /// The address this client's listener advertises, when it is not the configured one (a
    /// TLS listener tells its clients to come back to it).
    pub advertised: Option<(String, u16)>,
}

fn millis(ms: i32) -> Option<Duration> {
    (ms >= 0).then(|| Duration::from_millis(ms as u64))
}

impl KafkaFrontend {
    pub(crate) async fn handle_find_coordinator(
        &self,
        request: FindCoordinatorRequest,
        version: i16,
        client: &ClientInfo,
    ) -> FindCoordinatorResponse {
        let (host, port) = self.advertised_for(client);
        let keys = if version >= 4 {
            request.coordinator_keys
        } else {
            vec![request.key]
        };
        let mut coordinators = Vec::with_capacity(keys.len());
        for key in keys {
            let mut c = Coordinator::default();
            c.node_id = BrokerId(-1);
            c.host = str_bytes("");
            c.port = -1;
            let refused = match request.key_type {
                KEY_GROUP => self.authorize_group(&key).await.err(),
                KEY_TRANSACTION => self.authorize_transactional_id(&key).await.err(),
                _ => None,
            };
            match request.key_type {
                _ if refused.is_some() => {
                    c.error_code = refused.map(|e| e.code()).unwrap_or_default();
                }
                // Forward mode: every instance answers for every group.
                KEY_GROUP if self.config.forward_groups => {
                    c.node_id = BrokerId(self.config.node_id);
                    c.host = str_bytes(host.clone());
                    c.port = port;
                }
                KEY_GROUP | KEY_TRANSACTION => {
                    self.name_owner(&mut c, &key, client, (&host, port)).await
                }
                other => {
                    c.error_code = ResponseError::InvalidRequest.code();
                    c.error_message =
                        Some(str_bytes(format!("unknown coordinator key type {other}")));
                }
            }
            c.key = key;
            coordinators.push(c);
        }
        let mut response = FindCoordinatorResponse::default();
        if version >= 4 {
            response.coordinators = coordinators;
        } else if let Some(c) = coordinators.into_iter().next() {
            response.error_code = c.error_code;
            response.error_message = c.error_message;
            response.node_id = c.node_id;
            response.host = c.host;
            response.port = c.port;
        }
        response
    }

    /// Names the instance coordinating `key`'s shard in `c`. Transactional ids are always
    /// served by that instance itself: transaction requests are not forwarded (yet), so in a
    /// forward-mode fleet, too, the client is sent to the owner.
    async fn name_owner(
        &self,
        c: &mut Coordinator,
        key: &str,
        client: &ClientInfo,
        (host, port): (&str, i32),
    ) {
        match self.groups.owner_of(key).await {
            Ok(Owner::Local) => {
                c.node_id = BrokerId(self.config.node_id);
                c.host = str_bytes(host);
                c.port = port;
            }
            Ok(Owner::Remote(owner)) => {
                let (host, port) = owner.address_for(client.advertised.is_some());
                c.node_id = BrokerId(owner.node_id);
                c.host = str_bytes(host);
                c.port = i32::from(port);
            }
            Err(e) => c.error_code = e.code(),
        }
    }

    pub(crate) async fn handle_join_group(
        &self,
        request: JoinGroupRequest,
        version: i16,
        client: &ClientInfo,
    ) -> JoinGroupResponse {
        let mut response = JoinGroupResponse::default();
        let session = millis(request.session_timeout_ms);
        let rebalance = if version >= 1 {
            millis(request.rebalance_timeout_ms)
        } else {
            session
        };
        let outcome = match (session, rebalance) {
            (Some(session_timeout), Some(rebalance_timeout)) => {
                let params = JoinParams {
                    member_id: request.member_id.to_string(),
                    instance_id: request.group_instance_id.map(|i| i.to_string()),
                    client_id: client.client_id.clone(),
                    client_host: client.host.clone(),
                    session_timeout,
                    rebalance_timeout,
                    protocol_type: request.protocol_type.to_string(),
                    protocols: request
                        .protocols
                        .into_iter()
                        .map(|p| (p.name.to_string(), p.metadata))
                        .collect(),
                    require_known_member_id: version >= 4,
                    supports_skip_assignment: version >= 9,
                };
                self.groups.join(&request.group_id.0, params).await
            }
            _ => {
                response.error_code = ResponseError::InvalidSessionTimeout.code();
                response.generation_id = -1;
                response.member_id = request.member_id;
                response.protocol_name = (version < 7).then(|| str_bytes(""));
                return response;
            }
        };
        response.error_code = outcome.error;
        response.generation_id = outcome.generation;
        response.protocol_type = outcome.protocol_type.map(str_bytes);
        // Before v7 the protocol name is not nullable.
        response.protocol_name = match outcome.protocol_name {
            Some(n) => Some(str_bytes(n)),
            None if version < 7 => Some(str_bytes("")),
            None => None,
        };
        response.leader = str_bytes(outcome.leader);
        response.member_id = str_bytes(outcome.member_id);
        response.skip_assignment = outcome.skip_assignment;
        response.members = outcome
            .members
            .into_iter()
            .map(|(id, instance, metadata)| {
                let mut m = JoinGroupResponseMember::default();
                m.member_id = str_bytes(id);
                m.group_instance_id = instance.map(str_bytes);
                m.metadata = metadata;
                m
            })
            .collect();
        response
    }

    pub(crate) async fn handle_sync_group(&self, request: SyncGroupRequest) -> SyncGroupResponse {
        let assignments = request
            .assignments
            .into_iter()
            .map(|a| (a.member_id.to_string(), a.assignment))
            .collect();
        let outcome = self
            .groups
            .sync(
                &request.group_id.0,
                request.generation_id,
                &request.member_id,
                request.group_instance_id.as_deref(),
                request.protocol_type.as_deref(),
                request.protocol_name.as_deref(),
                assignments,
            )
            .await;
        let mut response = SyncGroupResponse::default();
        response.error_code = outcome.error;
        response.protocol_type = outcome.protocol_type.map(str_bytes);
        response.protocol_name = outcome.protocol_name.map(str_bytes);
        response.assignment = outcome.assignment;
        response
    }

    pub(crate) async fn handle_heartbeat(&self, request: HeartbeatRequest) -> HeartbeatResponse {
        let mut response = HeartbeatResponse::default();
        response.error_code = self
            .groups
            .heartbeat(
                &request.group_id.0,
                request.generation_id,
                &request.member_id,
                request.group_instance_id.as_deref(),
            )
            .await;
        response
    }

    pub(crate) async fn handle_leave_group(
        &self,
        request: LeaveGroupRequest,
        version: i16,
    ) -> LeaveGroupResponse {
        let leaving: Vec<(String, Option<String>)> = if version >= 3 {
            request
                .members
                .into_iter()
                .map(|m| {
                    (
                        m.member_id.to_string(),
                        m.group_instance_id.map(|i| i.to_string()),
                    )
                })
                .collect()
        } else {
            vec![(request.member_id.to_string(), None)]
        };
        let mut response = LeaveGroupResponse::default();
        match self.groups.leave(&request.group_id.0, &leaving).await {
            Err(e) => response.error_code = e.code(),
            Ok(results) if version >= 3 => {
                response.members = results
                    .into_iter()
                    .zip(leaving)
                    .map(|((member_id, error), (_, instance))| {
                        let mut m = MemberResponse::default();
                        m.member_id = str_bytes(member_id);
                        m.group_instance_id = instance.map(str_bytes);
                        m.error_code = error;
                        m
                    })
                    .collect();
            }
            Ok(results) => {
                response.error_code = results.first().map(|(_, e)| *e).unwrap_or_default();
            }
        }
        response
    }

    pub(crate) async fn handle_offset_commit(
        &self,
        request: OffsetCommitRequest,
    ) -> OffsetCommitResponse {
        // Partitions that fail on their own, and those that go to the coordinator.
        let mut answers: Vec<(KafkaTopicName, Vec<PartitionAnswer>)> = Vec::new();
        let mut commits = Vec::new();
        let max_metadata = self.groups.settings().max_metadata_bytes;
        // Looking partitions up takes no longer than the commit itself may: while Pulsar cannot
        // be reached, a lookup waits for its operation timeout (30 s), and the member's
        // heartbeats wait behind it on its connection, longer than its session.
        let lookups_until = tokio::time::Instant::now() + self.groups.settings().commit_timeout;
        for topic in request.topics {
            let name = topic.name.0.to_string();
            let mut partitions = Vec::new();
            for p in topic.partitions {
                let metadata = p.committed_metadata.map(|m| m.to_string());
                if metadata.as_ref().is_some_and(|m| m.len() > max_metadata) {
                    partitions.push((
                        p.partition_index,
                        Some(ResponseError::OffsetMetadataTooLarge.code()),
                    ));
                    continue;
                }
                // A partition the group committed before needs no lookup: its topic's partition
                // count is asked of Pulsar's admin API, and while Pulsar cannot be reached that
                // takes up to its timeout, with the member's heartbeats waiting behind.
                let known =
                    self.groups
                        .committed_topic(&request.group_id.0, &name, p.partition_index);
                let resolve = async {
                    let t = match known {
                        Some(t) => t,
                        None => self.partition_topic(&name, p.partition_index).await?,
                    };
                    self.authorize_commit(&request.group_id.0, &t).await?;
                    Ok(t)
                };
                let topic = tokio::time::timeout_at(lookups_until, resolve)
                    .await
                    .unwrap_or(Err(ResponseError::RequestTimedOut));
                match topic {
                    Err(e) => partitions.push((p.partition_index, Some(e.code()))),
                    Ok(pulsar_topic) => {
                        partitions.push((p.partition_index, None));
                        commits.push(CommitRequest {
                            topic: name.clone(),
                            partition: p.partition_index,
                            offset: p.committed_offset,
                            leader_epoch: p.committed_leader_epoch,
                            metadata,
                            pulsar_topic,
                        });
                    }
                }
            }
            answers.push((topic.name, partitions));
        }
        let group_error = if commits.is_empty() {
            0
        } else {
            match self
                .groups
                .commit(
                    &request.group_id.0,
                    request.generation_id_or_member_epoch,
                    &request.member_id,
                    request.group_instance_id.as_deref(),
                    commits,
                )
                .await
            {
                Ok(()) => 0,
                Err(e) => e.code(),
            }
        };
        let mut response = OffsetCommitResponse::default();
        response.topics = answers
            .into_iter()
            .map(|(name, partitions)| {
                let mut t = OffsetCommitResponseTopic::default();
                t.name = name;
                t.partitions = partitions
                    .into_iter()
                    .map(|(index, error)| {
                        let mut p = OffsetCommitResponsePartition::default();
                        p.partition_index = index;
                        p.error_code = error.unwrap_or(group_error);
                        p
                    })
                    .collect();
                t
            })
            .collect();
        response
    }

    pub(crate) async fn handle_offset_fetch(
        &self,
        request: OffsetFetchRequest,
        version: i16,
        client: &ClientInfo,
    ) -> OffsetFetchResponse {
        let mut response = OffsetFetchResponse::default();
        if version >= 8 {
            for group in request.groups {
                if let Err(e) = self.authorize_group(&group.group_id.0).await {
                    let mut refused = OffsetFetchResponseGroup::default();
                    refused.group_id = group.group_id;
                    refused.error_code = e.code();
                    response.groups.push(refused);
                    continue;
                }
                let single = {
                    let mut r = OffsetFetchRequest::default();
                    r.require_stable = request.require_stable;
                    r.groups = vec![group.clone()];
                    RequestKind::OffsetFetch(r)
                };
                match self
                    .forwarded(
                        client,
                        &group.group_id.0,
                        ApiKey::OffsetFetch,
                        version,
                        &single,
                    )
                    .await
                {
                    Some(Ok(ResponseKind::OffsetFetch(mut r))) if r.groups.len() == 1 => {
                        response.groups.push(r.groups.remove(0));
                        continue;
                    }
                    Some(answer) => {
                        let mut failed = OffsetFetchResponseGroup::default();
                        failed.group_id = group.group_id;
                        failed.error_code = forward_error(answer);
                        response.groups.push(failed);
                        continue;
                    }
                    None => {}
                }
                let wanted = group.topics.map(|topics| {
                    topics
                        .into_iter()
                        .map(|t| (t.name.0.to_string(), t.partition_indexes))
                        .collect()
                });
                let mut answer = OffsetFetchResponseGroup::default();
                // v9: a consumer of the consumer group protocol names itself and its epoch.
                let member_checked = match &group.member_id {
                    Some(member) => {
                        self.groups
                            .check_fetching_member(&group.group_id.0, member, group.member_epoch)
                            .await
                    }
                    None => Ok(()),
                };
                let fetched = match member_checked {
                    Ok(()) => self.groups.fetch_offsets(&group.group_id.0, wanted).await,
                    Err(e) => Err(e),
                };
                match fetched {
                    Err(e) => answer.error_code = e.code(),
                    Ok(found) => {
                        answer.topics = fetched_topics!(
                            found,
                            OffsetFetchResponseTopics,
                            OffsetFetchResponsePartitions
                        );
                        if request.require_stable {
                            mark_unstable!(self.groups, &group.group_id.0, answer.topics);
                        }
                    }
                }
                answer.group_id = group.group_id;
                response.groups.push(answer);
            }
            return response;
        }
        let wanted = request.topics.map(|topics| {
            topics
                .into_iter()
                .map(|t| (t.name.0.to_string(), t.partition_indexes))
                .collect()
        });
        match self.groups.fetch_offsets(&request.group_id.0, wanted).await {
            Err(e) => {
                response.error_code = e.code();
            }
            Ok(found) => {
                response.topics = fetched_topics!(
                    found,
                    OffsetFetchResponseTopic,
                    OffsetFetchResponsePartition
                );
                if request.require_stable {
                    mark_unstable!(self.groups, &request.group_id.0, response.topics);
                }
            }
        }
        response
    }

    pub(crate) async fn handle_describe_groups(
        &self,
        request: DescribeGroupsRequest,
        version: i16,
        client: &ClientInfo,
    ) -> DescribeGroupsResponse {
        let mut response = DescribeGroupsResponse::default();
        for group_id in request.groups {
            let single = {
                let mut r = DescribeGroupsRequest::default();
                r.groups = vec![group_id.clone()];
                r.include_authorized_operations = request.include_authorized_operations;
                RequestKind::DescribeGroups(r)
            };
            let mut described = DescribedGroup::default();
            if let Err(e) = self.authorize_group(&group_id.0).await {
                described.group_id = group_id;
                described.error_code = e.code();
                described.authorized_operations = OPERATIONS_NOT_REQUESTED;
                response.groups.push(described);
                continue;
            }
            match self
                .forwarded(
                    client,
                    &group_id.0,
                    ApiKey::DescribeGroups,
                    version,
                    &single,
                )
                .await
            {
                Some(Ok(ResponseKind::DescribeGroups(mut r))) if r.groups.len() == 1 => {
                    response.groups.push(r.groups.remove(0));
                    continue;
                }
                Some(answer) => {
                    described.group_id = group_id;
                    described.error_code = forward_error(answer);
                    response.groups.push(described);
                    continue;
                }
                None => {}
            }
            described.authorized_operations = OPERATIONS_NOT_REQUESTED;
            match self.groups.describe(&group_id.0).await {
                Err(e) => described.error_code = e.code(),
                // Kafka describes an unknown group as Dead, without an error.
                Ok(None) => described.group_state = str_bytes("Dead"),
                Ok(Some(summary)) => {
                    described.group_state = str_bytes(summary.state);
                    described.protocol_type = str_bytes(summary.protocol_type);
                    described.protocol_data = str_bytes(summary.protocol);
                    described.members = summary
                        .members
                        .into_iter()
                        .map(|m| {
                            let mut d = DescribedGroupMember::default();
                            d.member_id = str_bytes(m.member_id);
                            d.group_instance_id = m.instance_id.map(str_bytes);
                            d.client_id = str_bytes(m.client_id);
                            d.client_host = str_bytes(m.client_host);
                            d.member_metadata = m.metadata;
                            d.member_assignment = m.assignment;
                            d
                        })
                        .collect();
                }
            }
            described.group_id = group_id;
            response.groups.push(described);
        }
        response
    }

    pub(crate) async fn handle_list_groups(
        &self,
        request: ListGroupsRequest,
        version: i16,
        client: &ClientInfo,
    ) -> ListGroupsResponse {
        let mut response = ListGroupsResponse::default();
        let states: Vec<String> = request
            .states_filter
            .iter()
            .map(|s| s.to_lowercase())
            .collect();
        let types: Vec<String> = request
            .types_filter
            .iter()
            .map(|s| s.to_lowercase())
            .collect();
        match self.groups.list().await {
            Err(e) => response.error_code = e.code(),
            Ok((groups, others)) => {
                // Groups coordinated elsewhere: asked of each coordinating instance, unless this
                // request is itself such a question.
                if !client.internal {
                    for owner in others {
                        let Some(peer) = owner.internal else {
                            continue;
                        };
                        let ask = RequestKind::ListGroups(request.clone());
                        match self
                            .forwarder
                            .forward(&peer, ApiKey::ListGroups, version, &client.client_id, &ask)
                            .await
                        {
                            Ok(ResponseKind::ListGroups(r)) => response.groups.extend(r.groups),
                            Ok(_) => {}
                            Err(e) => {
                                tracing::warn!(%peer, error = %e, "listing a peer's groups failed");
                                response.error_code = ResponseError::CoordinatorNotAvailable.code();
                            }
                        }
                    }
                }
                response.groups.extend(
                    groups
                        .into_iter()
                        .filter(|g| states.is_empty() || states.contains(&g.state.to_lowercase()))
                        .filter(|g| types.is_empty() || types.iter().any(|t| t == g.group_type))
                        .map(|listed| {
                            let mut g = ListedGroup::default();
                            g.group_id = GroupId(str_bytes(listed.id));
                            g.protocol_type = str_bytes(listed.protocol_type);
                            g.group_state = str_bytes(listed.state);
                            g.group_type = str_bytes(listed.group_type);
                            g
                        }),
                );
            }
        }
        // Kafka lists only the groups the client may describe.
        if self.group_access.is_some() {
            let mut listed = Vec::with_capacity(response.groups.len());
            for g in std::mem::take(&mut response.groups) {
                if self.authorize_group(g.group_id.as_str()).await.is_ok() {
                    listed.push(g);
                }
            }
            response.groups = listed;
        }
        response
    }

    pub(crate) async fn handle_delete_groups(
        &self,
        request: DeleteGroupsRequest,
        version: i16,
        client: &ClientInfo,
    ) -> DeleteGroupsResponse {
        let mut response = DeleteGroupsResponse::default();
        for group_id in request.groups_names {
            let single = {
                let mut r = DeleteGroupsRequest::default();
                r.groups_names = vec![group_id.clone()];
                RequestKind::DeleteGroups(r)
            };
            let mut result = DeletableGroupResult::default();
            if let Err(e) = self.authorize_group(&group_id.0).await {
                result.group_id = group_id;
                result.error_code = e.code();
                response.results.push(result);
                continue;
            }
            match self
                .forwarded(client, &group_id.0, ApiKey::DeleteGroups, version, &single)
                .await
            {
                Some(Ok(ResponseKind::DeleteGroups(mut r))) if r.results.len() == 1 => {
                    response.results.push(r.results.remove(0));
                    continue;
                }
                Some(answer) => {
                    result.group_id = group_id;
                    result.error_code = forward_error(answer);
                    response.results.push(result);
                    continue;
                }
                None => {}
            }
            result.error_code = match self.groups.delete_group(&group_id.0).await {
                Ok(()) => 0,
                Err(e) => e.code(),
            };
            result.group_id = group_id;
            response.results.push(result);
        }
        response
    }

    pub(crate) async fn handle_offset_delete(
        &self,
        request: OffsetDeleteRequest,
    ) -> OffsetDeleteResponse {
        let partitions: Vec<(String, i32)> = request
            .topics
            .iter()
            .flat_map(|t| {
                t.partitions
                    .iter()
                    .map(|p| (t.name.0.to_string(), p.partition_index))
            })
            .collect();
        let mut response = OffsetDeleteResponse::default();
        match self
            .groups
            .delete_offsets(&request.group_id.0, partitions)
            .await
        {
            Err(e) => response.error_code = e.code(),
            Ok(results) => {
                for (name, partition, error) in results {
                    let topic = topic_entry(
                        &mut response.topics,
                        &name,
                        |t| t.name.0.as_str(),
                        || {
                            let mut t = OffsetDeleteResponseTopic::default();
                            t.name = KafkaTopicName(str_bytes(name.clone()));
                            t
                        },
                    );
                    let mut p = OffsetDeleteResponsePartition::default();
                    p.partition_index = partition;
                    p.error_code = error;
                    topic.partitions.push(p);
                }
            }
        }
        response
    }
}

/// Offset, leader epoch and metadata as OffsetFetch reports them; -1 and "" when none.
fn committed_fields(c: Option<Committed>) -> (i64, i32, String) {
    match c {
        Some(c) => (c.offset, c.leader_epoch, c.metadata.unwrap_or_default()),
        None => (-1, -1, String::new()),
    }
}

/// A partition's index and its own error, if it failed before reaching the coordinator.
type PartitionAnswer = (i32, Option<i16>);

type ByTopic = Vec<(String, Vec<(i32, Option<Committed>)>)>;

fn group_by_topic(found: Vec<(String, i32, Option<Committed>)>) -> ByTopic {
    let mut out: ByTopic = Vec::new();
    for (topic, partition, committed) in found {
        match out.iter_mut().find(|(t, _)| *t == topic) {
            Some((_, partitions)) => partitions.push((partition, committed)),
            None => out.push((topic, vec![(partition, committed)])),
        }
    }
    out
}

#[cfg(test)]
mod tests;
