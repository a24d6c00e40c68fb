//! Where a group request is answered: here, or, in forward mode, by the instance coordinating
//! its group; and the answers for a request that cannot be routed.

use super::*;

/// How long a forwarding instance waits, after its peer could not be reached, before asking
/// again who coordinates: time for Pulsar to see the dead peer's connection close.
pub(super) const OWNER_RECHECK_DELAY: std::time::Duration = std::time::Duration::from_millis(200);

impl KafkaFrontend {
    /// Forward mode: the answer of the instance coordinating `group`, or `None` when this
    /// instance coordinates it (or is not in forward mode, or the request came from a peer).
    pub(crate) async fn forwarded(
        &self,
        client: &ClientInfo,
        group: &str,
        key: ApiKey,
        version: i16,
        request: &RequestKind,
    ) -> Option<Result<ResponseKind, ResponseError>> {
        if !self.config.forward_groups || client.internal {
            return None;
        }
        let mut tried: Option<String> = None;
        loop {
            let peer = match self.groups.owner_of(group).await {
                Ok(Owner::Local) => return None,
                Ok(Owner::Remote(owner)) => match owner.internal {
                    Some(peer) if tried.as_ref() != Some(&peer) => peer,
                    _ => return Some(Err(ResponseError::CoordinatorNotAvailable)),
                },
                Err(e) => return Some(Err(e)),
            };
            match self
                .forwarder
                .forward(&peer, key, version, &client.client_id, request)
                .await
            {
                Ok(answer) => return Some(Ok(answer)),
                // An owner that cannot be reached has most likely just died: its lease comes
                // free as soon as Pulsar sees its connection close. Look once more, so the
                // group moves here (or to whoever took it) without the client seeing an error.
                Err(e @ crate::groups::forward::ForwardError::Io(..)) if tried.is_none() => {
                    tracing::warn!(%peer, error = %e, "forwarding a group request failed; looking for the coordinator again");
                    tokio::time::sleep(OWNER_RECHECK_DELAY).await;
                    tried = Some(peer);
                }
                Err(e) => {
                    tracing::warn!(%peer, error = %e, "forwarding a group request failed");
                    return Some(Err(ResponseError::CoordinatorNotAvailable));
                }
            }
        }
    }

    /// For requests about one group: the refusal when the client may not use the group, else
    /// (forward mode) the coordinating instance's answer, or `None` to answer here.
    pub(crate) async fn route_group_request(
        &self,
        client: &ClientInfo,
        key: ApiKey,
        version: i16,
        request: &RequestKind,
    ) -> Option<ResponseKind> {
        let group = single_group(request, version)?;
        if let Err(e) = self.authorize_group(&group).await {
            return Some(group_error(request, version, e.code()));
        }
        match self
            .forwarded(client, &group, key, version, request)
            .await?
        {
            Ok(response) => Some(response),
            Err(e) => Some(group_error(request, version, e.code())),
        }
    }
}

/// The group a request is about, for the APIs that name exactly one.
pub(super) fn single_group(request: &RequestKind, version: i16) -> Option<String> {
    let id = match request {
        RequestKind::JoinGroup(r) => &r.group_id,
        RequestKind::SyncGroup(r) => &r.group_id,
        RequestKind::Heartbeat(r) => &r.group_id,
        RequestKind::LeaveGroup(r) => &r.group_id,
        RequestKind::OffsetCommit(r) => &r.group_id,
        RequestKind::OffsetDelete(r) => &r.group_id,
        RequestKind::OffsetFetch(r) if version < 8 => &r.group_id,
        RequestKind::ConsumerGroupHeartbeat(r) => &r.group_id,
        _ => return None,
    };
    Some(id.0.to_string())
}

/// The answer to a one-group request that failed as a whole.
pub(super) fn group_error(request: &RequestKind, version: i16, code: i16) -> ResponseKind {
    match request {
        RequestKind::JoinGroup(r) => {
            let mut a = join_not_coordinator(r.member_id.clone(), version);
            a.error_code = code;
            ResponseKind::JoinGroup(a)
        }
        RequestKind::SyncGroup(_) => {
            let mut a = SyncGroupResponse::default();
            a.error_code = code;
            ResponseKind::SyncGroup(a)
        }
        RequestKind::Heartbeat(_) => {
            let mut a = HeartbeatResponse::default();
            a.error_code = code;
            ResponseKind::Heartbeat(a)
        }
        RequestKind::ConsumerGroupHeartbeat(r) => {
            let mut a = kafka_protocol::messages::ConsumerGroupHeartbeatResponse::default();
            a.error_code = code;
            a.member_id = Some(r.member_id.clone());
            a.member_epoch = -1;
            ResponseKind::ConsumerGroupHeartbeat(a)
        }
        RequestKind::LeaveGroup(_) => {
            let mut a = LeaveGroupResponse::default();
            a.error_code = code;
            ResponseKind::LeaveGroup(a)
        }
        RequestKind::OffsetCommit(r) => {
            let mut a = OffsetCommitResponse::default();
            a.topics = r
                .topics
                .iter()
                .map(|t| {
                    let mut topic = OffsetCommitResponseTopic::default();
                    topic.name = t.name.clone();
                    topic.partitions = t
                        .partitions
                        .iter()
                        .map(|p| {
                            let mut partition = OffsetCommitResponsePartition::default();
                            partition.partition_index = p.partition_index;
                            partition.error_code = code;
                            partition
                        })
                        .collect();
                    topic
                })
                .collect();
            ResponseKind::OffsetCommit(a)
        }
        RequestKind::OffsetFetch(r) => {
            let mut a = OffsetFetchResponse::default();
            a.error_code = code;
            // v1 has no group-level error: each requested partition carries it.
            a.topics = r
                .topics
                .iter()
                .flatten()
                .map(|t| {
                    let mut topic = OffsetFetchResponseTopic::default();
                    topic.name = t.name.clone();
                    topic.partitions = t
                        .partition_indexes
                        .iter()
                        .map(|p| {
                            let mut partition = OffsetFetchResponsePartition::default();
                            partition.partition_index = *p;
                            partition.committed_offset = -1;
                            partition.committed_leader_epoch = -1;
                            partition.metadata = Some(str_bytes(""));
                            partition.error_code = code;
                            partition
                        })
                        .collect();
                    topic
                })
                .collect();
            ResponseKind::OffsetFetch(a)
        }
        _ => {
            let mut a = OffsetDeleteResponse::default();
            a.error_code = code;
            ResponseKind::OffsetDelete(a)
        }
    }
}

/// A JoinGroup answered NOT_COORDINATOR (the gateway is draining).
pub(crate) fn join_not_coordinator(member_id: StrBytes, version: i16) -> JoinGroupResponse {
    let mut a = JoinGroupResponse::default();
    a.error_code = ResponseError::NotCoordinator.code();
    a.generation_id = -1;
    a.member_id = member_id;
    a.protocol_name = (version < 7).then(|| str_bytes(""));
    a
}

/// A SyncGroup answered NOT_COORDINATOR (the gateway is draining).
pub(crate) fn sync_not_coordinator() -> SyncGroupResponse {
    let mut a = SyncGroupResponse::default();
    a.error_code = ResponseError::NotCoordinator.code();
    a
}

/// The error code for a forwarded per-group answer that did not come back as expected.
pub(crate) fn forward_error(answer: Result<ResponseKind, ResponseError>) -> i16 {
    match answer {
        Err(e) => e.code(),
        Ok(_) => ResponseError::CoordinatorNotAvailable.code(),
    }
}
