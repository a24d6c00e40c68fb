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
        }
    }

    /// This instance stops coordinating the group: every waiting request is told to find the
    /// coordinator again.
    pub fn abandon(&mut self) {
        for member in self.members.values_mut() {
            member.fail_waiters(ResponseError::NotCoordinator);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty() && self.pending.is_empty()
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

    pub fn join(
        &mut self,
        p: JoinParams,
        now: Instant,
        timing: &Timing,
        fx: &mut Effects,
    ) -> Reply<JoinOutcome> {
        if !self.supports(&p.protocol_type, &p.protocols) {
            return Reply::Now(JoinOutcome::failed(
                ResponseError::InconsistentGroupProtocol,
                &p.member_id,
            ));
        }
        if p.member_id.is_empty() {
            let prefix = p.instance_id.as_deref().unwrap_or(&p.client_id).to_owned();
            let id = Self::new_member_id(&prefix);
            if let Some(instance) = &p.instance_id {
                if let Some(old) = self.static_members.get(instance).cloned() {
                    return self.replace_static_member(&old, id, p, now, timing, fx);
                }
                return self.add_member(id, p, now, timing, fx);
            }
            if p.require_known_member_id {
                self.pending.insert(id.clone(), now + p.session_timeout);
                return Reply::Now(JoinOutcome::failed(ResponseError::MemberIdRequired, &id));
            }
            return self.add_member(id, p, now, timing, fx);
        }
        if self.pending.remove(&p.member_id).is_some() {
            let id = p.member_id.clone();
            return self.add_member(id, p, now, timing, fx);
        }
        if self.is_fenced(&p.member_id, p.instance_id.as_deref()) {
            return Reply::Now(JoinOutcome::failed(
                ResponseError::FencedInstanceId,
                &p.member_id,
            ));
        }
        let Some(member) = self.members.get(&p.member_id) else {
            return Reply::Now(JoinOutcome::failed(
                ResponseError::UnknownMemberId,
                &p.member_id,
            ));
        };
        let unchanged = member.protocols == p.protocols;
        let is_leader = self.leader.as_deref() == Some(p.member_id.as_str());
        match self.state {
            GroupState::Empty => Reply::Now(JoinOutcome::failed(
                ResponseError::UnknownMemberId,
                &p.member_id,
            )),
            GroupState::CompletingRebalance if unchanged => {
                // The member missed its JoinGroup answer: give it again.
                let outcome = self.join_outcome(&p.member_id, is_leader, false);
                Reply::Now(outcome)
            }
            GroupState::Stable if unchanged && !is_leader => {
                let outcome = self.join_outcome(&p.member_id, false, false);
                self.touch(&p.member_id, now);
                Reply::Now(outcome)
            }
            _ => {
                let rx = self.await_join(&p, now);
                if self.state != GroupState::PreparingRebalance {
                    self.prepare_rebalance(now, timing);
                }
                self.maybe_complete_join(now, fx);
                Reply::Later(rx)
            }
        }
    }

    /// Updates a known member from its JoinGroup and parks the request until the join completes.
    fn await_join(&mut self, p: &JoinParams, now: Instant) -> oneshot::Receiver<JoinOutcome> {
        let (tx, rx) = oneshot::channel();
        let member = self.members.get_mut(&p.member_id).expect("checked");
        member.protocols = p.protocols.clone();
        member.session_timeout = p.session_timeout;
        member.rebalance_timeout = p.rebalance_timeout;
        member.client_id = p.client_id.clone();
        member.client_host = p.client_host.clone();
        member.deadline = now + p.session_timeout;
        if let Some(old) = member.awaiting_join.replace(tx) {
            // The same member joined again (e.g. after a reconnect); the older request is moot.
            let _ = old.send(JoinOutcome::failed(
                ResponseError::RebalanceInProgress,
                &p.member_id,
            ));
        }
        rx
    }

    fn add_member(
        &mut self,
        id: String,
        p: JoinParams,
        now: Instant,
        timing: &Timing,
        fx: &mut Effects,
    ) -> Reply<JoinOutcome> {
        let (tx, rx) = oneshot::channel();
        if let Some(instance) = &p.instance_id {
            self.static_members.insert(instance.clone(), id.clone());
        }
        if self.members.is_empty() {
            self.protocol_type = Some(p.protocol_type.clone());
        }
        self.members.insert(
            id.clone(),
            Member {
                id,
                instance_id: p.instance_id,
                client_id: p.client_id,
                client_host: p.client_host,
                session_timeout: p.session_timeout,
                rebalance_timeout: p.rebalance_timeout,
                protocol_type: p.protocol_type,
                protocols: p.protocols,
                assignment: Bytes::new(),
                deadline: now + p.session_timeout,
                awaiting_join: Some(tx),
                awaiting_sync: None,
            },
        );
        match self.state {
            GroupState::PreparingRebalance => {
                // A member arriving during the initial delay extends it, up to the rebalance
                // timeout, as Kafka's InitialDelayedJoin does.
                if let Some(until) = self.initial_delay_until {
                    if now < until {
                        self.initial_delay_until = Some(
                            (now + timing.initial_rebalance_delay).min(self.rebalance_deadline),
                        );
                    }
                }
            }
            _ => self.prepare_rebalance(now, timing),
        }
        self.maybe_complete_join(now, fx);
        Reply::Later(rx)
    }

    /// KIP-345: a static member rejoining with a new member id takes the old one's place; the
    /// old id is fenced. When nothing changed the group does not rebalance.
    fn replace_static_member(
        &mut self,
        old_id: &str,
        new_id: String,
        p: JoinParams,
        now: Instant,
        timing: &Timing,
        fx: &mut Effects,
    ) -> Reply<JoinOutcome> {
        let Some(mut member) = self.members.shift_remove(old_id) else {
            self.static_members
                .remove(p.instance_id.as_deref().unwrap_or_default());
            return self.add_member(new_id, p, now, timing, fx);
        };
        member.fail_waiters(ResponseError::FencedInstanceId);
        let unchanged = member.protocols == p.protocols;
        member.id = new_id.clone();
        member.client_id = p.client_id.clone();
        member.client_host = p.client_host.clone();
        member.session_timeout = p.session_timeout;
        member.rebalance_timeout = p.rebalance_timeout;
        member.deadline = now + p.session_timeout;
        let instance = p.instance_id.clone().expect("static member");
        self.static_members.insert(instance, new_id.clone());
        if self.leader.as_deref() == Some(old_id) {
            self.leader = Some(new_id.clone());
        }
        self.members.insert(new_id.clone(), member);
        if self.state == GroupState::Stable && unchanged {
            fx.snapshot = true;
            let is_leader = self.leader.as_deref() == Some(new_id.as_str());
            let skip = is_leader && p.supports_skip_assignment;
            return Reply::Now(self.join_outcome(&new_id, skip, skip));
        }
        let p = JoinParams {
            member_id: new_id,
            ..p
        };
        let rx = self.await_join(&p, now);
        if self.state != GroupState::PreparingRebalance {
            self.prepare_rebalance(now, timing);
        }
        self.maybe_complete_join(now, fx);
        Reply::Later(rx)
    }

    fn join_outcome(&self, member_id: &str, with_members: bool, skip: bool) -> JoinOutcome {
        let protocol = self.protocol.clone().unwrap_or_default();
        JoinOutcome {
            error: NONE,
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol.clone(),
            leader: self.leader.clone().unwrap_or_default(),
            member_id: member_id.to_owned(),
            members: if with_members {
                self.members
                    .values()
                    .map(|m| {
                        (
                            m.id.clone(),
                            m.instance_id.clone(),
                            m.metadata_for(&protocol),
                        )
                    })
                    .collect()
            } else {
                Vec::new()
            },
            skip_assignment: skip,
        }
    }

    fn prepare_rebalance(&mut self, now: Instant, timing: &Timing) {
        if self.state == GroupState::CompletingRebalance {
            for member in self.members.values_mut() {
                member.assignment = Bytes::new();
                if let Some(tx) = member.awaiting_sync.take() {
                    let _ = tx.send(SyncOutcome::failed(ResponseError::RebalanceInProgress));
                }
            }
        }
        let was_empty = self.state == GroupState::Empty;
        self.state = GroupState::PreparingRebalance;
        let timeout = self
            .members
            .values()
            .map(|m| m.rebalance_timeout)
            .max()
            .unwrap_or_default();
        self.rebalance_deadline = now + timeout;
        self.initial_delay_until =
            was_empty.then(|| now + timing.initial_rebalance_delay.min(timeout));
    }

    fn maybe_complete_join(&mut self, now: Instant, fx: &mut Effects) {
        if self.state != GroupState::PreparingRebalance {
            return;
        }
        let all_joined =
            self.pending.is_empty() && self.members.values().all(|m| m.awaiting_join.is_some());
        let delaying = self.initial_delay_until.is_some_and(|until| now < until);
        if (all_joined && !delaying) || now >= self.rebalance_deadline {
            self.complete_join(now, fx);
        }
    }

    fn complete_join(&mut self, now: Instant, fx: &mut Effects) {
        // Dynamic members that did not rejoin in time are gone; static ones keep their place
        // until their session lapses.
        let missing: Vec<String> = self
            .members
            .values()
            .filter(|m| m.awaiting_join.is_none() && m.instance_id.is_none())
            .map(|m| m.id.clone())
            .collect();
        for id in missing {
            self.remove_member(&id, ResponseError::UnknownMemberId);
        }
        self.initial_delay_until = None;
        self.generation += 1;
        if self.members.is_empty() {
            self.state = GroupState::Empty;
            self.protocol = None;
            self.leader = None;
            fx.snapshot = true;
            fx.emptied = true;
            return;
        }
        self.protocol = self.select_protocol();
        self.state = GroupState::CompletingRebalance;
        if !self
            .leader
            .as_ref()
            .is_some_and(|l| self.members.contains_key(l))
        {
            self.leader = self
                .members
                .values()
                .find(|m| m.awaiting_join.is_some())
                .or_else(|| self.members.values().next())
                .map(|m| m.id.clone());
        }
        let timeout = self
            .members
            .values()
            .map(|m| m.rebalance_timeout)
            .max()
            .unwrap_or_default();
        self.sync_deadline = now + timeout;
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            let is_leader = self.leader.as_deref() == Some(id.as_str());
            let outcome = self.join_outcome(&id, is_leader, false);
            let member = self.members.get_mut(&id).expect("listed");
            member.deadline = now + member.session_timeout;
            if let Some(tx) = member.awaiting_join.take() {
                let _ = tx.send(outcome);
            }
        }
    }

    /// Each member votes for the first of its protocols that every member supports; the most
    /// voted wins (Kafka's rule).
    fn select_protocol(&self) -> Option<String> {
        let first = self.members.values().next()?;
        let candidates: Vec<&String> = first
            .protocols
            .iter()
            .map(|(n, _)| n)
            .filter(|n| {
                self.members
                    .values()
                    .all(|m| m.protocols.iter().any(|(x, _)| x == *n))
            })
            .collect();
        let mut votes: Vec<(usize, &String)> = candidates.iter().map(|c| (0, *c)).collect();
        for member in self.members.values() {
            if let Some((name, _)) = member
                .protocols
                .iter()
                .find(|(n, _)| candidates.contains(&n))
            {
                if let Some(v) = votes.iter_mut().find(|(_, c)| *c == name) {
                    v.0 += 1;
                }
            }
        }
        // Ties go to the earlier candidate.
        votes
            .iter()
            .rev()
            .max_by_key(|(count, _)| *count)
            .map(|(_, name)| (*name).clone())
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
        let emptied = self.empty_since_ms.filter(|_| self.protocol_type.is_some());
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

    pub fn snapshot(&self) -> GroupSnapshot {
        GroupSnapshot {
            protocol_type: self.protocol_type.clone(),
            protocol: self.protocol.clone(),
            generation: self.generation,
            leader: self.leader.clone(),
            stable: self.state == GroupState::Stable,
            members: self
                .members
                .values()
                .map(|m| MemberSnapshot {
                    id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    session_timeout_ms: m.session_timeout.as_millis() as u64,
                    rebalance_timeout_ms: m.rebalance_timeout.as_millis() as u64,
                    protocol_type: m.protocol_type.clone(),
                    protocols: m.protocols.clone(),
                    assignment: m.assignment.clone(),
                })
                .collect(),
            empty_since_ms: self.empty_since_ms,
        }
    }

    /// The group as persisted. A stable generation resumes with fresh sessions, so members that
    /// keep heartbeating carry on without a rebalance; any other state starts a rebalance.
    pub fn restore(id: &str, s: GroupSnapshot, now: Instant, timing: &Timing) -> Group {
        let mut group = Group::new(id, now);
        group.protocol_type = s.protocol_type;
        group.protocol = s.protocol;
        group.generation = s.generation;
        group.leader = s.leader;
        group.empty_since_ms = s.empty_since_ms;
        for m in s.members {
            if let Some(instance) = &m.instance_id {
                group.static_members.insert(instance.clone(), m.id.clone());
            }
            let session_timeout = Duration::from_millis(m.session_timeout_ms);
            group.members.insert(
                m.id.clone(),
                Member {
                    id: m.id,
                    instance_id: m.instance_id,
                    client_id: m.client_id,
                    client_host: m.client_host,
                    session_timeout,
                    rebalance_timeout: Duration::from_millis(m.rebalance_timeout_ms),
                    protocol_type: m.protocol_type,
                    protocols: m.protocols,
                    assignment: m.assignment,
                    deadline: now + session_timeout,
                    awaiting_join: None,
                    awaiting_sync: None,
                },
            );
        }
        if group.members.is_empty() {
            group.protocol = None;
            group.leader = None;
        } else if s.stable {
            group.state = GroupState::Stable;
        } else {
            group.state = GroupState::Stable;
            group.prepare_rebalance(now, timing);
        }
        group
    }
}

/// The persisted form of a group's membership (postcard). Fields are only ever added at the
/// end: an older gateway reading a newer snapshot stops after the fields it knows (postcard
/// ignores what follows), and `decode` reads snapshots written before a field existed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GroupSnapshot {
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub generation: i32,
    pub leader: Option<String>,
    pub stable: bool,
    pub members: Vec<MemberSnapshot>,
    /// See `Group::empty_since_ms`.
    #[serde(default)]
    pub empty_since_ms: Option<u64>,
}

/// A snapshot as written before `empty_since_ms` existed. postcard is not self-describing, so a
/// missing trailing field is an error rather than its default: such bytes decode as this.
#[derive(Deserialize)]
struct GroupSnapshotV1 {
    protocol_type: Option<String>,
    protocol: Option<String>,
    generation: i32,
    leader: Option<String>,
    stable: bool,
    members: Vec<MemberSnapshot>,
}

impl GroupSnapshot {
    pub fn decode(bytes: &[u8]) -> Option<GroupSnapshot> {
        if let Ok(s) = postcard::from_bytes::<GroupSnapshot>(bytes) {
            return Some(s);
        }
        let v1: GroupSnapshotV1 = postcard::from_bytes(bytes).ok()?;
        Some(GroupSnapshot {
            protocol_type: v1.protocol_type,
            protocol: v1.protocol,
            generation: v1.generation,
            leader: v1.leader,
            stable: v1.stable,
            members: v1.members,
            empty_since_ms: None,
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MemberSnapshot {
    pub id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: u64,
    pub rebalance_timeout_ms: u64,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    pub assignment: Bytes,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timing() -> Timing {
        Timing {
            initial_rebalance_delay: Duration::ZERO,
            ..Timing::default()
        }
    }

    fn params(member_id: &str, instance: Option<&str>, metadata: &'static [u8]) -> JoinParams {
        JoinParams {
            member_id: member_id.to_owned(),
            instance_id: instance.map(str::to_owned),
            client_id: "client".into(),
            client_host: "/127.0.0.1".into(),
            session_timeout: Duration::from_secs(10),
            rebalance_timeout: Duration::from_secs(30),
            protocol_type: "consumer".into(),
            protocols: vec![("range".into(), Bytes::from_static(metadata))],
            require_known_member_id: true,
            supports_skip_assignment: false,
        }
    }

    fn now_value<T>(reply: Reply<T>) -> T {
        match reply {
            Reply::Now(v) => v,
            Reply::Later(_) => panic!("expected an immediate answer"),
        }
    }

    fn later<T>(reply: Reply<T>) -> oneshot::Receiver<T> {
        match reply {
            Reply::Later(rx) => rx,
            Reply::Now(_) => panic!("expected a delayed answer"),
        }
    }

    /// Two dynamic members join (each first getting its id), the first leads, and the leader's
    /// assignment reaches both.
    fn stable_pair(g: &mut Group, t0: Instant) -> (String, String) {
        let mut fx = Effects::default();
        let a = now_value(g.join(params("", None, b"a"), t0, &timing(), &mut fx));
        assert_eq!(a.error, ResponseError::MemberIdRequired.code());
        let b = now_value(g.join(params("", None, b"b"), t0, &timing(), &mut fx));
        let mut rx_a = later(g.join(params(&a.member_id, None, b"a"), t0, &timing(), &mut fx));
        // B's id is still pending, so the join waits for it.
        assert!(rx_a.try_recv().is_err());
        let mut rx_b = later(g.join(params(&b.member_id, None, b"b"), t0, &timing(), &mut fx));
        let (ja, jb) = (rx_a.try_recv().unwrap(), rx_b.try_recv().unwrap());
        assert_eq!((ja.generation, jb.generation), (1, 1));
        assert_eq!(ja.leader, a.member_id);
        assert_eq!(ja.members.len(), 2, "the leader sees every member");
        assert!(jb.members.is_empty());
        assert_eq!(
            ja.members[1].2,
            Bytes::from_static(b"b"),
            "metadata passed through"
        );
        let mut sync_b = later(g.sync(1, &b.member_id, None, None, None, vec![], t0, &mut fx));
        let assignments = vec![
            (a.member_id.clone(), Bytes::from_static(b"to-a")),
            (b.member_id.clone(), Bytes::from_static(b"to-b")),
        ];
        let mut sync_a = later(g.sync(1, &a.member_id, None, None, None, assignments, t0, &mut fx));
        assert_eq!(
            sync_b.try_recv().unwrap().assignment,
            Bytes::from_static(b"to-b")
        );
        assert_eq!(
            sync_a.try_recv().unwrap().assignment,
            Bytes::from_static(b"to-a")
        );
        assert_eq!(g.state, GroupState::Stable);
        assert!(fx.snapshot);
        (a.member_id, b.member_id)
    }

    #[test]
    fn members_join_sync_and_get_the_leaders_assignment() {
        let t0 = Instant::now();
        let mut g = Group::new("g", t0);
        stable_pair(&mut g, t0);
    }

    #[test]
    fn a_silent_member_is_removed_and_the_group_rebalances() {
        let t0 = Instant::now();
        let mut g = Group::new("g", t0);
        let (a, b) = stable_pair(&mut g, t0);
        let t1 = t0 + Duration::from_secs(8);
        assert_eq!(g.heartbeat(1, &a, None, t1), NONE);
        let t2 = t0 + Duration::from_secs(11);
        let mut fx = Effects::default();
        g.tick(t2, &timing(), &mut fx);
        assert!(!g.members.contains_key(&b), "b's session lapsed");
        assert_eq!(g.state, GroupState::PreparingRebalance);
        assert_eq!(
            g.heartbeat(1, &a, None, t2),
            ResponseError::RebalanceInProgress.code()
        );
        assert_eq!(
            g.heartbeat(1, &b, None, t2),
            ResponseError::UnknownMemberId.code()
        );
        // A commit of the old generation is still accepted while preparing (eager revocation).
        assert!(g.check_commit(1, &a, None, t2).is_ok());
        let rx = later(g.join(params(&a, None, b"a"), t2, &timing(), &mut fx));
        let joined = rx.blocking_recv().unwrap();
        assert_eq!((joined.generation, joined.members.len()), (2, 1));
        assert_eq!(
            g.check_commit(2, &a, None, t2),
            Err(ResponseError::RebalanceInProgress),
            "no commits between join and sync"
        );
        assert_eq!(
            g.check_commit(1, &a, None, t2),
            Err(ResponseError::IllegalGeneration)
        );
    }

    #[test]
    fn a_static_member_returning_unchanged_keeps_its_assignment_and_fences_the_old_id() {
        let t0 = Instant::now();
        let mut g = Group::new("g", t0);
        let mut fx = Effects::default();
        let rx = later(g.join(params("", Some("i1"), b"m"), t0, &timing(), &mut fx));
        let first = rx.blocking_recv().unwrap();
        let assignment = vec![(first.member_id.clone(), Bytes::from_static(b"p0"))];
        let rx = later(g.sync(
            1,
            &first.member_id,
            Some("i1"),
            None,
            None,
            assignment,
            t0,
            &mut fx,
        ));
        assert_eq!(
            rx.blocking_recv().unwrap().assignment,
            Bytes::from_static(b"p0")
        );
        // The process restarts: same instance id, no member id.
        let again = now_value(g.join(params("", Some("i1"), b"m"), t0, &timing(), &mut fx));
        assert_eq!(again.error, NONE);
        assert_eq!(again.generation, 1, "no rebalance");
        assert_ne!(again.member_id, first.member_id);
        assert_eq!(g.state, GroupState::Stable);
        let synced = now_value(g.sync(
            1,
            &again.member_id,
            Some("i1"),
            None,
            None,
            vec![],
            t0,
            &mut fx,
        ));
        assert_eq!(synced.assignment, Bytes::from_static(b"p0"));
        assert_eq!(
            g.heartbeat(1, &first.member_id, Some("i1"), t0),
            ResponseError::FencedInstanceId.code()
        );
    }

    #[test]
    fn commits_outside_a_generation_need_an_empty_group() {
        let t0 = Instant::now();
        let mut g = Group::new("g", t0);
        assert!(g.check_commit(-1, "", None, t0).is_ok());
        stable_pair(&mut g, t0);
        assert_eq!(
            g.check_commit(-1, "", None, t0),
            Err(ResponseError::UnknownMemberId)
        );
    }

    /// A coordinator that loads a group (taking a shard over, or regaining it after an outage)
    /// could not hear anyone before: every session counts from the load, as Kafka's coordinator
    /// starts all members' session timers when it loads a group from `__consumer_offsets`.
    #[test]
    fn sessions_of_a_loaded_group_count_from_the_load() {
        let t0 = Instant::now();
        let mut g = Group::new("g", t0);
        let (a, b) = stable_pair(&mut g, t0);
        // Loaded long after the members were last heard: their sessions are 10 s.
        let load = t0 + Duration::from_secs(100);
        let mut g = Group::restore("g", g.snapshot(), load, &timing());
        let mut fx = Effects::default();
        g.tick(load + Duration::from_secs(9), &timing(), &mut fx);
        assert_eq!(g.members.len(), 2);
        assert_eq!((g.state, g.generation), (GroupState::Stable, 1));
        assert_eq!(
            g.heartbeat(1, &a, None, load + Duration::from_secs(9)),
            NONE
        );
        assert_eq!(g.members[&b].assignment, Bytes::from_static(b"to-b"));
        g.tick(load + Duration::from_secs(11), &timing(), &mut fx);
        assert!(g.members.contains_key(&a), "heard since the load");
        assert!(
            !g.members.contains_key(&b),
            "silent for a session since the load"
        );
    }

    /// A group persisted in the middle of a rebalance is loaded rebalancing, with the members'
    /// rebalance timeout counted from the load: members that rejoin get the next generation.
    #[test]
    fn a_group_loaded_mid_rebalance_gives_members_time_from_the_load() {
        let t0 = Instant::now();
        let mut g = Group::new("g", t0);
        let (a, b) = stable_pair(&mut g, t0);
        let mut fx = Effects::default();
        let _waiting = later(g.join(params(&b, None, b"b2"), t0, &timing(), &mut fx));
        assert_eq!(g.state, GroupState::PreparingRebalance);
        let load = t0 + Duration::from_secs(100);
        let mut g = Group::restore("g", g.snapshot(), load, &timing());
        assert_eq!(g.state, GroupState::PreparingRebalance);
        let heard = load + Duration::from_secs(5);
        assert_eq!(
            g.heartbeat(1, &a, None, heard),
            ResponseError::RebalanceInProgress.code()
        );
        let rejoined_a = later(g.join(params(&a, None, b"a"), heard, &timing(), &mut fx));
        g.tick(load + Duration::from_secs(8), &timing(), &mut fx);
        assert_eq!(
            g.members.len(),
            2,
            "b has until its session, counted from the load"
        );
        let rejoined_b = later(g.join(params(&b, None, b"b2"), heard, &timing(), &mut fx));
        let (ja, jb) = (
            rejoined_a.blocking_recv().unwrap(),
            rejoined_b.blocking_recv().unwrap(),
        );
        assert_eq!((ja.generation, jb.generation), (2, 2));
    }

    const DAY_MS: u64 = 24 * 3600 * 1000;
    /// A retention of a week, as Kafka's default `offsets.retention.minutes`.
    const RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

    fn committed_at(commit_time: u64) -> Committed {
        Committed {
            offset: 10,
            leader_epoch: -1,
            metadata: None,
            commit_time,
            pulsar_topic: "persistent://public/default/t".into(),
            seq: 0,
        }
    }

    fn expired(g: &mut Group, now_ms: u64) -> Vec<(String, i32)> {
        let mut keys: Vec<(String, i32)> = g
            .expire_offsets(now_ms, RETENTION)
            .into_iter()
            .map(|(key, _)| key)
            .collect();
        keys.sort();
        keys
    }

    #[test]
    fn offsets_of_a_group_with_members_never_expire() {
        let t0 = Instant::now();
        let mut g = Group::new("g", t0);
        stable_pair(&mut g, t0);
        g.offsets.insert(("t".into(), 0), committed_at(0));
        assert!(expired(&mut g, 365 * DAY_MS).is_empty());
        assert!(!g.is_dead());
    }

    /// A group whose members left but that has just handed a joiner its member id is not
    /// without members: its offsets stay.
    #[test]
    fn offsets_stay_while_a_joiner_holds_a_member_id() {
        let t0 = Instant::now();
        let mut g = Group::new("g", t0);
        let (a, b) = stable_pair(&mut g, t0);
        g.offsets.insert(("t".into(), 0), committed_at(0));
        let mut fx = Effects::default();
        g.leave(&[(a, None), (b, None)], t0, &timing(), &mut fx);
        g.note_emptied(&fx, DAY_MS);
        let joiner = now_value(g.join(params("", None, b"c"), t0, &timing(), &mut fx));
        assert_eq!(joiner.error, ResponseError::MemberIdRequired.code());
        assert!(expired(&mut g, 365 * DAY_MS).is_empty());
        assert!(!g.is_dead());
    }

    /// KIP-211: the clock starts when the group becomes empty, however old its commits are.
    #[test]
    fn offsets_expire_a_retention_after_the_group_became_empty() {
        let t0 = Instant::now();
        let mut g = Group::new("g", t0);
        let (a, b) = stable_pair(&mut g, t0);
        g.offsets.insert(("t".into(), 0), committed_at(DAY_MS));
        g.offsets.insert(("t".into(), 1), committed_at(DAY_MS));
        let emptied_ms = 30 * DAY_MS;
        let mut fx = Effects::default();
        let left = g.leave(
            &[(a.clone(), None), (b.clone(), None)],
            t0,
            &timing(),
            &mut fx,
        );
        assert!(left.iter().all(|(_, e)| *e == NONE));
        assert_eq!(g.state, GroupState::Empty);
        assert!(fx.emptied && fx.snapshot);
        g.note_emptied(&fx, emptied_ms);
        let retention_ms = RETENTION.as_millis() as u64;
        assert!(expired(&mut g, emptied_ms + retention_ms - 1).is_empty());
        assert!(!g.is_dead(), "its offsets keep the group");
        assert_eq!(
            expired(&mut g, emptied_ms + retention_ms),
            [("t".to_owned(), 0), ("t".to_owned(), 1)]
        );
        assert!(g.is_dead(), "no members and no offsets: the group goes");
        // The clock is persisted with the group.
        let restored = Group::restore("g", g.snapshot(), t0, &timing());
        assert_eq!(restored.empty_since_ms, Some(emptied_ms));
    }

    /// A group that never had members (consumers that only commit, with assign()): each offset
    /// expires a retention after its own last commit, so committing again keeps it.
    #[test]
    fn offsets_of_a_group_without_members_expire_by_their_last_commit() {
        let t0 = Instant::now();
        let mut g = Group::new("g", t0);
        assert!(g.check_commit(-1, "", None, t0).is_ok());
        g.offsets.insert(("t".into(), 0), committed_at(DAY_MS));
        g.offsets.insert(("t".into(), 1), committed_at(DAY_MS));
        // Partition 0 is committed again five days later.
        g.offsets.insert(("t".into(), 0), committed_at(6 * DAY_MS));
        assert!(expired(&mut g, 8 * DAY_MS - 1).is_empty());
        assert_eq!(expired(&mut g, 8 * DAY_MS), [("t".to_owned(), 1)]);
        assert!(!g.is_dead());
        assert!(expired(&mut g, 13 * DAY_MS - 1).is_empty());
        assert_eq!(expired(&mut g, 13 * DAY_MS), [("t".to_owned(), 0)]);
        assert!(g.is_dead());
    }

    /// Snapshots written before the emptying time was kept still load (postcard does not fill
    /// in a missing trailing field by itself); their offsets then expire by commit time, as
    /// Kafka treats group metadata without a state timestamp.
    #[test]
    fn snapshots_from_before_the_emptying_time_still_load() {
        #[derive(Serialize)]
        struct Before {
            protocol_type: Option<String>,
            protocol: Option<String>,
            generation: i32,
            leader: Option<String>,
            stable: bool,
            members: Vec<MemberSnapshot>,
        }
        let bytes = postcard::to_stdvec(&Before {
            protocol_type: Some("consumer".into()),
            protocol: None,
            generation: 4,
            leader: None,
            stable: false,
            members: Vec::new(),
        })
        .unwrap();
        let s = GroupSnapshot::decode(&bytes).expect("an older snapshot decodes");
        assert_eq!((s.generation, s.empty_since_ms), (4, None));
        let t0 = Instant::now();
        let mut g = Group::restore("g", s, t0, &timing());
        g.offsets.insert(("t".into(), 0), committed_at(DAY_MS));
        assert!(expired(&mut g, 8 * DAY_MS - 1).is_empty());
        assert_eq!(expired(&mut g, 8 * DAY_MS), [("t".to_owned(), 0)]);
        // And a snapshot of today's layout round-trips, the emptying time included.
        let mut today = g.snapshot();
        today.empty_since_ms = Some(DAY_MS);
        let decoded = GroupSnapshot::decode(&postcard::to_stdvec(&today).unwrap()).unwrap();
        assert_eq!(decoded.empty_since_ms, Some(DAY_MS));
    }

    #[test]
    fn a_member_with_no_common_protocol_is_refused() {
        let t0 = Instant::now();
        let mut g = Group::new("g", t0);
        stable_pair(&mut g, t0);
        let mut p = params("", None, b"x");
        p.protocols = vec![("roundrobin".into(), Bytes::new())];
        let mut fx = Effects::default();
        let refused = now_value(g.join(p, t0, &timing(), &mut fx));
        assert_eq!(
            refused.error,
            ResponseError::InconsistentGroupProtocol.code()
        );
    }
}
