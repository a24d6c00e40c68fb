//! One consumer group's membership state machine: Kafka's classic group protocol as its broker
//! runs it (KIP-62 rebalance timeouts, KIP-345 static membership, KIP-394 member ids required on
//! join, KIP-814 static leader rejoins, and the group states `Empty`, `PreparingRebalance`,
//! `CompletingRebalance`, `Stable`). Assignments are computed by the clients: the coordinator only
//! carries the leader's bytes to the members, so any assignor works, Kafka Streams' included.
//!
//! Committed offsets expire as Kafka's `offsets.retention.minutes` says since KIP-211: never while
//! the group has members; a retention after the group became empty; for a group that never had
//! members (consumers that only commit), a retention after each offset's own last commit.
//!
//! Nothing here does I/O. Delayed answers (a JoinGroup waiting for the other members, a
//! SyncGroup waiting for the leader) are oneshot channels completed by later calls or by `tick`.
//! The caller persists a snapshot whenever `Effects::snapshot` is set, and starts the retention
//! clock (`note_emptied`, wall-clock time) when `Effects::emptied` is.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use bytes::Bytes;
use indexmap::IndexMap;
use kafka_protocol::error::ResponseError;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use super::consumer_group::ConsumerGroup;

mod join;
mod snapshot;

pub use snapshot::{GroupSnapshot, MemberSnapshot};

/// Error code 0.
pub const NONE: i16 = 0;

fn code(e: ResponseError) -> i16 {
    e.code()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
}

impl GroupState {
    /// The names DescribeGroups and ListGroups report, as Kafka spells them.
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
        }
    }
}

/// Timing rules shared by every group of a coordinator.
#[derive(Debug, Clone)]
pub struct Timing {
    /// Kafka's `group.initial.rebalance.delay.ms`: the first rebalance of an empty group waits
    /// this long for more members, so a starting application does not rebalance once per member.
    pub initial_rebalance_delay: Duration,
    /// Kafka's `group.min.session.timeout.ms` and `group.max.session.timeout.ms`.
    pub min_session_timeout: Duration,
    pub max_session_timeout: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            initial_rebalance_delay: Duration::from_secs(3),
            min_session_timeout: Duration::from_secs(6),
            max_session_timeout: Duration::from_secs(30 * 60),
        }
    }
}

/// A committed offset, exactly as the client sent it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Committed {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
    /// Milliseconds since the epoch, when the coordinator accepted it.
    pub commit_time: u64,
    /// The Pulsar topic (partition) whose subscription mirrors this offset.
    pub pulsar_topic: String,
    /// Order of acceptance within the coordinator shard; a later commit wins even when the
    /// earlier one's write completes last.
    #[serde(skip)]
    pub seq: u64,
}

/// What a JoinGroup is answered with.
#[derive(Debug, Clone, Default)]
pub struct JoinOutcome {
    pub error: i16,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    pub member_id: String,
    /// Only for the leader: every member with its metadata for the chosen protocol.
    pub members: Vec<(String, Option<String>, Bytes)>,
    pub skip_assignment: bool,
}

impl JoinOutcome {
    pub fn failed(error: ResponseError, member_id: &str) -> Self {
        JoinOutcome {
            error: code(error),
            generation: -1,
            member_id: member_id.to_owned(),
            ..JoinOutcome::default()
        }
    }
}

/// What a SyncGroup is answered with.
#[derive(Debug, Clone, Default)]
pub struct SyncOutcome {
    pub error: i16,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
}

impl SyncOutcome {
    pub fn failed(error: ResponseError) -> Self {
        SyncOutcome {
            error: code(error),
            ..SyncOutcome::default()
        }
    }
}

/// An answer now, or a channel that a later event completes.
pub enum Reply<T> {
    Now(T),
    Later(oneshot::Receiver<T>),
}

/// Work for the caller after a state change.
#[derive(Debug, Default)]
pub struct Effects {
    /// The group's membership changed in a way worth persisting (a new generation became stable,
    /// the group emptied, a static member was replaced).
    pub snapshot: bool,
    /// The group has just become empty: its offsets' retention starts now.
    pub emptied: bool,
}

/// A JoinGroup as the state machine needs it.
#[derive(Debug, Clone)]
pub struct JoinParams {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    /// JoinGroup v4+: a new dynamic member first gets its id with MEMBER_ID_REQUIRED.
    pub require_known_member_id: bool,
    /// JoinGroup v9+ (KIP-814): a rejoining static leader is told to skip the assignment.
    pub supports_skip_assignment: bool,
}

#[derive(Debug)]
pub struct Member {
    pub id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    pub assignment: Bytes,
    /// When the session expires unless the member is heard from.
    deadline: Instant,
    awaiting_join: Option<oneshot::Sender<JoinOutcome>>,
    awaiting_sync: Option<oneshot::Sender<SyncOutcome>>,
}

impl Member {
    fn metadata_for(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(name, _)| name == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }

    fn fail_waiters(&mut self, error: ResponseError) {
        if let Some(tx) = self.awaiting_join.take() {
            let _ = tx.send(JoinOutcome::failed(error, &self.id));
        }
        if let Some(tx) = self.awaiting_sync.take() {
            let _ = tx.send(SyncOutcome::failed(error));
        }
    }
}

pub struct Group {
    pub id: String,
    pub state: GroupState,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub generation: i32,
    pub leader: Option<String>,
    /// In join order, so the first to join leads a new generation.
    pub members: IndexMap<String, Member>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, until they join or their session lapses.
    pending: HashMap<String, Instant>,
    /// `group.instance.id` -> the member id currently holding it.
    static_members: HashMap<String, String>,
    rebalance_deadline: Instant,
    initial_delay_until: Option<Instant>,
    sync_deadline: Instant,
    /// (Kafka topic, partition) -> committed offset.
    pub offsets: BTreeMap<(String, i32), Committed>,
    /// When the group last became empty (ms since the epoch; persisted, since the retention of
    /// its offsets counts from then), read only while it is empty. `None` for a group that never
    /// had members and for groups persisted before it was kept.
    pub empty_since_ms: Option<u64>,
    /// The group's members under the consumer group protocol (KIP-848), once one has joined.
    /// A group has members of one protocol at a time.
    pub consumer: Option<ConsumerGroup>,
}

impl Group {
    pub fn new(id: &str, now: Instant) -> Group {
        Group {
            id: id.to_owned(),
            state: GroupState::Empty,
            protocol_type: None,
            protocol: None,
            generation: 0,
            leader: None,
            members: IndexMap::new(),
            pending: HashMap::new(),
            static_members: HashMap::new(),
            rebalance_deadline: now,
            initial_delay_until: None,
            sync_deadline: now,
            offsets: BTreeMap::new(),
            empty_since_ms: None,
            consumer: None,
        }
    }

    /// The consumer group protocol's part, when it has members.
    pub fn consumer_members(&self) -> Option<&ConsumerGroup> {
        self.consumer.as_ref().filter(|c| !c.members.is_empty())
    }

    /// This instance stops coordinating the group: every waiting request is told to find the
    /// coordinator again.
    pub fn abandon(&mut self) {
        for member in self.members.values_mut() {
            member.fail_waiters(ResponseError::NotCoordinator);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty() && self.pending.is_empty() && self.consumer_members().is_none()
    }

    /// A new member's id: its `group.instance.id` or client id plus a random suffix, as Kafka.
    fn new_member_id(prefix: &str) -> String {
        format!("{prefix}-{:032x}", rand::random::<u128>())
    }

    /// Whether a member with these protocols can join: its protocol type matches and one of its
    /// protocols is supported by every current member.
    fn supports(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if protocol_type.is_empty() || protocols.is_empty() {
            return false;
        }
        if self.members.is_empty() {
            return true;
        }
        self.protocol_type.as_deref() == Some(protocol_type)
            && protocols.iter().any(|(name, _)| {
                self.members
                    .values()
                    .all(|m| m.protocols.iter().any(|(n, _)| n == name))
            })
    }

    /// A static member whose instance id now belongs to another member id is a zombie.
    fn is_fenced(&self, member_id: &str, instance_id: Option<&str>) -> bool {
        instance_id.is_some_and(|i| {
            self.static_members
                .get(i)
                .is_some_and(|holder| holder != member_id)
        })
    }

    fn remove_member(&mut self, id: &str, error: ResponseError) {
        if let Some(mut member) = self.members.shift_remove(id) {
            member.fail_waiters(error);
            if let Some(instance) = &member.instance_id {
                if self.static_members.get(instance).map(String::as_str) == Some(id) {
                    self.static_members.remove(instance);
                }
            }
        }
        if self.leader.as_deref() == Some(id) {
            self.leader = None;
        }
    }

    fn touch(&mut self, member_id: &str, now: Instant) {
        if let Some(m) = self.members.get_mut(member_id) {
            m.deadline = now + m.session_timeout;
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub fn sync(
        &mut self,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
        protocol_type: Option<&str>,
        protocol_name: Option<&str>,
        assignments: Vec<(String, Bytes)>,
        now: Instant,
        fx: &mut Effects,
    ) -> Reply<SyncOutcome> {
        if self.is_fenced(member_id, instance_id) {
            return Reply::Now(SyncOutcome::failed(ResponseError::FencedInstanceId));
        }
        if !self.members.contains_key(member_id) {
            return Reply::Now(SyncOutcome::failed(ResponseError::UnknownMemberId));
        }
        if generation != self.generation {
            return Reply::Now(SyncOutcome::failed(ResponseError::IllegalGeneration));
        }
        if protocol_type.is_some_and(|t| Some(t) != self.protocol_type.as_deref())
            || protocol_name.is_some_and(|n| Some(n) != self.protocol.as_deref())
        {
            return Reply::Now(SyncOutcome::failed(
                ResponseError::InconsistentGroupProtocol,
            ));
        }
        match self.state {
            GroupState::Empty => Reply::Now(SyncOutcome::failed(ResponseError::UnknownMemberId)),
            GroupState::PreparingRebalance => {
                Reply::Now(SyncOutcome::failed(ResponseError::RebalanceInProgress))
            }
            GroupState::Stable => {
                self.touch(member_id, now);
                Reply::Now(self.sync_outcome(member_id))
            }
            GroupState::CompletingRebalance => {
                let (tx, rx) = oneshot::channel();
                let member = self.members.get_mut(member_id).expect("checked");
                member.deadline = now + member.session_timeout;
                if let Some(old) = member.awaiting_sync.replace(tx) {
                    let _ = old.send(SyncOutcome::failed(ResponseError::RebalanceInProgress));
                }
                if self.leader.as_deref() == Some(member_id) {
                    let mut given: HashMap<String, Bytes> = assignments.into_iter().collect();
                    for m in self.members.values_mut() {
                        m.assignment = given.remove(&m.id).unwrap_or_default();
                    }
                    self.state = GroupState::Stable;
                    fx.snapshot = true;
                    let ids: Vec<String> = self.members.keys().cloned().collect();
                    for id in ids {
                        let outcome = self.sync_outcome(&id);
                        let waiter = self
                            .members
                            .get_mut(&id)
                            .and_then(|m| m.awaiting_sync.take());
                        if let Some(tx) = waiter {
                            let _ = tx.send(outcome);
                        }
                    }
                }
                Reply::Later(rx)
            }
        }
    }

    fn sync_outcome(&self, member_id: &str) -> SyncOutcome {
        SyncOutcome {
            error: NONE,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol.clone(),
            assignment: self.members[member_id].assignment.clone(),
        }
    }

    pub fn heartbeat(
        &mut self,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
        now: Instant,
    ) -> i16 {
        if self.is_fenced(member_id, instance_id) {
            return code(ResponseError::FencedInstanceId);
        }
        if !self.members.contains_key(member_id) {
            return code(ResponseError::UnknownMemberId);
        }
        match self.state {
            GroupState::Empty => code(ResponseError::UnknownMemberId),
            _ if generation != self.generation => code(ResponseError::IllegalGeneration),
            GroupState::PreparingRebalance => {
                self.touch(member_id, now);
                code(ResponseError::RebalanceInProgress)
            }
            GroupState::CompletingRebalance | GroupState::Stable => {
                self.touch(member_id, now);
                NONE
            }
        }
    }

    /// LeaveGroup for a batch of members (KIP-345): each by member id, or by instance id alone.
    pub fn leave(
        &mut self,
        leaving: &[(String, Option<String>)],
        now: Instant,
        timing: &Timing,
        fx: &mut Effects,
    ) -> Vec<(String, i16)> {
        let mut results = Vec::with_capacity(leaving.len());
        let mut removed = false;
        for (member_id, instance_id) in leaving {
            let id = match (member_id.is_empty(), instance_id) {
                (true, Some(instance)) => match self.static_members.get(instance) {
                    Some(id) => id.clone(),
                    None => {
                        results.push((member_id.clone(), code(ResponseError::UnknownMemberId)));
                        continue;
                    }
                },
                _ => member_id.clone(),
            };
            if self.is_fenced(&id, instance_id.as_deref()) {
                results.push((id, code(ResponseError::FencedInstanceId)));
            } else if self.pending.remove(&id).is_some() {
                results.push((id, NONE));
            } else if self.members.contains_key(&id) {
                self.remove_member(&id, ResponseError::UnknownMemberId);
                removed = true;
                results.push((id, NONE));
            } else {
                results.push((id, code(ResponseError::UnknownMemberId)));
            }
        }
        if removed {
            self.after_removal(now, timing, fx);
        }
        results
    }

    fn after_removal(&mut self, now: Instant, timing: &Timing, fx: &mut Effects) {
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                self.prepare_rebalance(now, timing)
            }
            GroupState::PreparingRebalance | GroupState::Empty => {}
        }
        self.maybe_complete_join(now, fx);
    }

    /// Whether an OffsetCommit from this member may be accepted (and it counts as a heartbeat).
    pub fn check_commit(
        &mut self,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
        now: Instant,
    ) -> Result<(), ResponseError> {
        if let Some(consumer) = self.consumer_members() {
            return consumer.check_member(member_id, generation);
        }
        if generation < 0 && member_id.is_empty() && self.members.is_empty() {
            // A commit from outside any generation: admin tools, or consumers with assign().
            return Ok(());
        }
        if self.is_fenced(member_id, instance_id) {
            return Err(ResponseError::FencedInstanceId);
        }
        if !self.members.contains_key(member_id) {
            return Err(ResponseError::UnknownMemberId);
        }
        if generation != self.generation {
            return Err(ResponseError::IllegalGeneration);
        }
        if self.state == GroupState::CompletingRebalance {
            return Err(ResponseError::RebalanceInProgress);
        }
        self.touch(member_id, now);
        Ok(())
    }

    /// A request from a member that could not be served (its coordinator could not write
    /// group state) still shows the member is alive: its session counts from now.
    pub fn heard(&mut self, member_id: &str, now: Instant) {
        self.touch(member_id, now);
    }

    /// Moves the rebalance's deadlines (and those of member ids handed out) `by` later: while
    /// the coordinator cannot write group state, members cannot rejoin or sync, so the time
    /// they get for it does not run. Sessions are not moved: members that can heartbeat do.
    pub fn postpone_deadlines(&mut self, by: Duration) {
        self.rebalance_deadline += by;
        self.sync_deadline += by;
        if let Some(until) = self.initial_delay_until.as_mut() {
            *until += by;
        }
        for deadline in self.pending.values_mut() {
            *deadline += by;
        }
    }

    /// Expires sessions, pending member ids and overdue rebalances.
    pub fn tick(&mut self, now: Instant, timing: &Timing, fx: &mut Effects) {
        if let Some(consumer) = self.consumer.as_mut() {
            consumer.tick(now, fx);
        }
        self.pending.retain(|_, deadline| *deadline > now);
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| m.awaiting_join.is_none() && m.awaiting_sync.is_none() && m.deadline <= now)
            .map(|m| m.id.clone())
            .collect();
        let mut removed = !expired.is_empty();
        for id in expired {
            tracing::info!(group = %self.id, member = %id, "session timed out; removing member");
            self.remove_member(&id, ResponseError::UnknownMemberId);
        }
        if self.state == GroupState::CompletingRebalance && now >= self.sync_deadline {
            let late: Vec<String> = self
                .members
                .values()
                .filter(|m| m.awaiting_sync.is_none())
                .map(|m| m.id.clone())
                .collect();
            for id in late {
                tracing::info!(group = %self.id, member = %id, "no SyncGroup within the rebalance timeout; removing member");
                self.remove_member(&id, ResponseError::UnknownMemberId);
                removed = true;
            }
        }
        if removed {
            self.after_removal(now, timing, fx);
        } else {
            self.maybe_complete_join(now, fx);
        }
    }

    /// Which topics the members subscribe to, when they use the consumer protocol.
    pub fn subscribed_topics(&self) -> Option<Vec<String>> {
        if let Some(consumer) = self.consumer_members() {
            return Some(consumer.subscribed_names().into_iter().collect());
        }
        if self.protocol_type.as_deref() != Some("consumer") || self.members.is_empty() {
            return None;
        }
        let protocol = self.protocol.clone().unwrap_or_default();
        let mut topics = Vec::new();
        for member in self.members.values() {
            let metadata = member.metadata_for(&protocol);
            topics.extend(crate::groups::consumer_protocol::subscribed_topics(
                &metadata,
            )?);
        }
        Some(topics)
    }

    /// Starts the retention clock of the group's offsets when it has just become empty.
    pub fn note_emptied(&mut self, fx: &Effects, now_ms: u64) {
        if fx.emptied {
            self.empty_since_ms = Some(now_ms);
        }
    }

    /// Removes and returns the committed offsets whose retention has passed at `now_ms` (ms
    /// since the epoch), as Kafka's `offsets.retention.minutes` (KIP-211): none while the group
    /// has members (or a member id handed out); all of them a retention after the group became
    /// empty; for a group that never had members, or whose emptying was not recorded, each a
    /// retention after its own last commit.
    pub fn expire_offsets(
        &mut self,
        now_ms: u64,
        retention: Duration,
    ) -> Vec<((String, i32), Committed)> {
        if self.state != GroupState::Empty || !self.is_empty() {
            return Vec::new();
        }
        let retention = retention.as_millis() as u64;
        let had_members = self.protocol_type.is_some() || self.consumer.is_some();
        let emptied = self.empty_since_ms.filter(|_| had_members);
        let expired: Vec<(String, i32)> = self
            .offsets
            .iter()
            .filter(|(_, c)| now_ms.saturating_sub(emptied.unwrap_or(c.commit_time)) >= retention)
            .map(|(key, _)| key.clone())
            .collect();
        expired
            .into_iter()
            .filter_map(|key| self.offsets.remove_entry(&key))
            .collect()
    }

    /// No members, no member ids handed out and no offsets: Kafka's coordinator drops such a
    /// group when it looks for expired offsets (`Dead`), and ListGroups no longer shows it.
    pub fn is_dead(&self) -> bool {
        self.state == GroupState::Empty && self.is_empty() && self.offsets.is_empty()
    }
}

#[cfg(test)]
mod tests;
