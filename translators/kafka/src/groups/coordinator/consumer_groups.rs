//! The consumer group protocol's requests (KIP-848): ConsumerGroupHeartbeat and
//! ConsumerGroupDescribe, on the same shards, tables and leases as the classic groups. A group's
//! consumer protocol part is persisted beside its classic snapshot, under its own key.
//!
//! While the shard's lease is lost, a heartbeat that changes nothing is answered from memory, as
//! classic heartbeats are; one that would change the group is answered COORDINATOR_NOT_AVAILABLE
//! (the member is still heard), which the consumer retries after finding the coordinator again.

use std::collections::{BTreeMap, BTreeSet};

use super::*;
use crate::groups::consumer_group::{ConsumerGroup, HeartbeatOutcome, HeartbeatParams, TopicMeta};

/// How long a group's subscribed topics, as last resolved, are used before a heartbeat resolves
/// them again: partitions added to a subscribed topic are assigned within about this long.
const TOPICS_REFRESH: Duration = Duration::from_secs(10);

/// A group as ConsumerGroupDescribe finds it.
pub enum ConsumerGroupLookup {
    Found(Box<ConsumerGroup>),
    /// A group of the classic protocol.
    Classic,
    Missing,
}

pub(super) fn consumer_key(group: &str) -> String {
    serde_json::json!(["cg", group]).to_string()
}

impl GroupCoordinator {
    /// The topic names and regexes whose topics' ids and partition counts a heartbeat needs,
    /// or `None` when those the group holds will do: all that the group and the request
    /// subscribe to when the member joins, subscribes to something new, or the group's are
    /// older than [`TOPICS_REFRESH`].
    pub fn consumer_topics_to_resolve(
        &self,
        group_id: &str,
        p: &HeartbeatParams,
    ) -> Option<(BTreeSet<String>, BTreeSet<String>)> {
        let shard = self.shard_of(group_id);
        let groups = shard.groups.lock().expect("groups lock");
        let consumer = groups.get(group_id).and_then(|g| g.consumer.as_ref());
        let mut names = consumer.map(|c| c.subscribed_names()).unwrap_or_default();
        let mut regexes = consumer.map(|c| c.subscribed_regexes()).unwrap_or_default();
        let stale = consumer
            .and_then(|c| c.resolved_at)
            .is_none_or(|at| at.elapsed() >= TOPICS_REFRESH);
        let mut new = false;
        for name in p.subscribed_names.iter().flatten() {
            new |= names.insert(name.clone());
        }
        if let Some(regex) = p.subscribed_regex.as_ref().filter(|r| !r.is_empty()) {
            new |= regexes.insert(regex.clone());
        }
        (stale || new || p.member_epoch == 0).then_some((names, regexes))
    }

    pub async fn consumer_heartbeat(
        self: &Arc<Self>,
        group_id: &str,
        params: HeartbeatParams,
        resolved: Option<BTreeMap<String, TopicMeta>>,
    ) -> HeartbeatOutcome {
        let member_id = params.member_id.clone();
        let settings = &self.settings.consumer;
        let shard = self.shard_of(group_id);
        let lost = match self.writable(shard).await {
            Ok(_) => false,
            Err(Unready::Lost(_)) => true,
            Err(Unready::Refused(e)) => {
                return HeartbeatOutcome::failed(
                    e,
                    "This instance does not coordinate the group.",
                    &member_id,
                )
            }
        };
        let mut fx = Effects::default();
        let now = Instant::now();
        let outcome = {
            let mut groups = match self.served(shard) {
                Ok(groups) => groups,
                Err(e) => {
                    return HeartbeatOutcome::failed(
                        e,
                        "This instance does not coordinate the group.",
                        &member_id,
                    )
                }
            };
            if !groups.contains_key(group_id) {
                if params.member_epoch != 0 {
                    return HeartbeatOutcome::failed(
                        ResponseError::UnknownMemberId,
                        format!("Member {member_id} is not a member of the group."),
                        &member_id,
                    );
                }
                groups.insert(group_id.to_owned(), Group::new(group_id, now));
            }
            let group = groups.get_mut(group_id).expect("inserted");
            if !group.members.is_empty() || group.state != GroupState::Empty {
                return HeartbeatOutcome::failed(
                    ResponseError::GroupIdNotFound,
                    format!("Group {group_id} is not a consumer group."),
                    &member_id,
                );
            }
            let consumer = group.consumer.get_or_insert_with(ConsumerGroup::default);
            let outcome = if lost {
                let mut trial = consumer.clone();
                let outcome = trial.heartbeat(params, resolved.as_ref(), now, settings, &mut fx);
                if fx.snapshot {
                    consumer.heard(&member_id, now, settings);
                    return HeartbeatOutcome::failed(
                        MEMBERSHIP_NOT_WRITTEN,
                        "The group's state cannot be written at the moment.",
                        &member_id,
                    );
                }
                *consumer = trial;
                outcome
            } else {
                consumer.heartbeat(params, resolved.as_ref(), now, settings, &mut fx)
            };
            group.note_emptied(&fx, now_ms());
            if outcome.error != 0 && group.is_dead() && !fx.snapshot {
                // A refused first join leaves no group behind.
                groups.remove(group_id);
            }
            outcome
        };
        if fx.snapshot {
            self.persist(shard, group_id).await;
        }
        outcome
    }

    /// OffsetFetch v9 naming a member: a member of the group's consumer protocol part at its
    /// current epoch (Kafka's check); anything goes for a group without such members.
    pub async fn check_fetching_member(
        self: &Arc<Self>,
        group_id: &str,
        member_id: &str,
        epoch: i32,
    ) -> Result<(), ResponseError> {
        let shard = self.shard_of(group_id);
        self.serving(shard).await?;
        let groups = self.served(shard)?;
        match groups.get(group_id).and_then(|g| g.consumer_members()) {
            Some(consumer) => consumer.check_member(member_id, epoch),
            None => Ok(()),
        }
    }

    pub async fn consumer_describe(
        self: &Arc<Self>,
        group_id: &str,
    ) -> Result<ConsumerGroupLookup, ResponseError> {
        let shard = self.shard_of(group_id);
        self.serving(shard).await?;
        let groups = self.served(shard)?;
        Ok(match groups.get(group_id) {
            None => ConsumerGroupLookup::Missing,
            Some(g) => match &g.consumer {
                Some(c) if g.members.is_empty() => ConsumerGroupLookup::Found(Box::new(c.clone())),
                _ => ConsumerGroupLookup::Classic,
            },
        })
    }
}
