//! One group of Kafka's consumer group protocol (KIP-848, `group.protocol=consumer`): the
//! coordinator, not a leader member, computes the assignment, and each member moves to it on its
//! own heartbeats, giving partitions up before anyone else gets them.
//!
//! The epochs, as Kafka's coordinator keeps them:
//! - the **group epoch** grows with every change of membership, subscriptions or the subscribed
//!   topics' partition counts;
//! - the **assignment epoch** is the group epoch that the target assignment was computed at
//!   (`assignor`), once a heartbeat finds it behind;
//! - each **member epoch** reaches the assignment epoch when the member owns nothing that the
//!   target gives to others. Until then it is `UnrevokedPartitions` (told to give up partitions,
//!   with its rebalance timeout to do so) or `UnreleasedPartitions` (waiting for partitions
//!   that others still own).
//!
//! A heartbeat is answered at once; nothing waits. Nothing here does I/O either: the caller
//! resolves the subscribed topics' ids and partition counts ([`TopicMeta`]) and persists the
//! group whenever `Effects::snapshot` is set.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use kafka_protocol::error::ResponseError;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::state::Effects;

mod assignor;

pub use assignor::{ASSIGNORS, RANGE, UNIFORM};

/// Member epochs with a meaning of their own in a heartbeat.
pub const JOIN_EPOCH: i32 = 0;
pub const LEAVE_EPOCH: i32 = -1;
/// A static member leaving for a restart: it keeps its partitions until its session lapses.
pub const STATIC_LEAVE_EPOCH: i32 = -2;

/// Partitions by topic id.
pub type Partitions = BTreeMap<Uuid, BTreeSet<i32>>;

/// A subscribed topic as the assignment sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicMeta {
    pub id: Uuid,
    pub partitions: i32,
}

/// Kafka's `group.consumer.*` settings.
#[derive(Debug, Clone)]
pub struct ConsumerGroupSettings {
    /// `group.consumer.session.timeout.ms`.
    pub session_timeout: Duration,
    /// `group.consumer.heartbeat.interval.ms`, told to members in every answer.
    pub heartbeat_interval: Duration,
    /// `group.consumer.max.size`.
    pub max_size: usize,
}

impl Default for ConsumerGroupSettings {
    fn default() -> Self {
        ConsumerGroupSettings {
            session_timeout: Duration::from_secs(45),
            heartbeat_interval: Duration::from_secs(5),
            max_size: i32::MAX as usize,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MemberState {
    Stable,
    /// Told to give up partitions that the target gives to others; its epoch waits.
    UnrevokedPartitions,
    /// At the target's epoch, waiting for partitions that others have not given up yet.
    UnreleasedPartitions,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConsumerMember {
    pub id: String,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub subscribed_names: BTreeSet<String>,
    /// A regular expression (RE2 syntax) over topic names, matched against whole names.
    pub subscribed_regex: Option<String>,
    pub server_assignor: Option<String>,
    pub rebalance_timeout_ms: i32,
    pub epoch: i32,
    pub previous_epoch: i32,
    pub state: MemberState,
    /// What the member has been told it owns.
    pub assigned: Partitions,
    /// What it has been told to give up and has not yet confirmed giving up.
    pub revoking: Partitions,
    /// When its session lapses unless it is heard from (restarted on load).
    #[serde(skip, default = "Instant::now")]
    deadline: Instant,
    /// When it is fenced unless it has given up `revoking`.
    #[serde(skip)]
    revoke_deadline: Option<Instant>,
}

/// The consumer protocol part of a group (its committed offsets live beside it, in `Group`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ConsumerGroup {
    pub group_epoch: i32,
    pub assignment_epoch: i32,
    pub members: BTreeMap<String, ConsumerMember>,
    /// The target assignment at `assignment_epoch`, by member id.
    pub target: BTreeMap<String, Partitions>,
    /// The subscribed topics, as last resolved.
    pub topics: BTreeMap<String, TopicMeta>,
    /// When `topics` was last resolved (not persisted: resolved again after a load).
    #[serde(skip)]
    pub resolved_at: Option<Instant>,
}

/// A ConsumerGroupHeartbeat as the state machine needs it; `None` fields did not change.
#[derive(Debug, Clone, Default)]
pub struct HeartbeatParams {
    pub member_id: String,
    pub member_epoch: i32,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub rebalance_timeout_ms: i32,
    pub subscribed_names: Option<Vec<String>>,
    /// An empty one replaces a regular expression with none.
    pub subscribed_regex: Option<String>,
    pub server_assignor: Option<String>,
    pub owned: Option<Partitions>,
    pub client_id: String,
    pub client_host: String,
}

impl HeartbeatParams {
    /// Kafka answers a full request (a join, or one with every field set) with the assignment
    /// even when it did not change: the member may have lost track of it.
    fn is_full(&self) -> bool {
        self.member_epoch == JOIN_EPOCH
            || ((self.subscribed_names.is_some() || self.subscribed_regex.is_some())
                && self.rebalance_timeout_ms != -1
                && self.owned.is_some())
    }
}

/// What a heartbeat is answered with.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HeartbeatOutcome {
    pub error: i16,
    pub message: Option<String>,
    pub member_id: String,
    pub member_epoch: i32,
    /// The member's whole assignment, when it changed or the request was full.
    pub assignment: Option<Partitions>,
}

impl HeartbeatOutcome {
    pub fn failed(error: ResponseError, message: impl Into<String>, member_id: &str) -> Self {
        HeartbeatOutcome {
            error: error.code(),
            message: Some(message.into()),
            member_id: member_id.to_owned(),
            member_epoch: -1,
            assignment: None,
        }
    }
}

fn contains(p: &Partitions, topic: &Uuid, partition: i32) -> bool {
    p.get(topic).is_some_and(|s| s.contains(&partition))
}

fn flatten(p: &Partitions) -> impl Iterator<Item = (Uuid, i32)> + '_ {
    p.iter()
        .flat_map(|(t, ps)| ps.iter().map(move |&partition| (*t, partition)))
}

fn collect(pairs: impl IntoIterator<Item = (Uuid, i32)>) -> Partitions {
    let mut out = Partitions::new();
    for (t, partition) in pairs {
        out.entry(t).or_default().insert(partition);
    }
    out
}

impl ConsumerGroup {
    /// Kafka's group states, as ConsumerGroupDescribe and ListGroups report them.
    pub fn state_name(&self) -> &'static str {
        if self.members.is_empty() {
            "Empty"
        } else if self.group_epoch > self.assignment_epoch {
            "Assigning"
        } else if self
            .members
            .values()
            .any(|m| m.epoch != self.assignment_epoch || m.state != MemberState::Stable)
        {
            "Reconciling"
        } else {
            "Stable"
        }
    }

    /// Every topic name a member subscribes to by name.
    pub fn subscribed_names(&self) -> BTreeSet<String> {
        self.members
            .values()
            .flat_map(|m| m.subscribed_names.iter().cloned())
            .collect()
    }

    /// Every regular expression a member subscribes with.
    pub fn subscribed_regexes(&self) -> BTreeSet<String> {
        self.members
            .values()
            .filter_map(|m| m.subscribed_regex.clone())
            .collect()
    }

    /// Each member's topics among `topics`: those it names and those its regex matches.
    pub fn subscriptions(
        members: &BTreeMap<String, ConsumerMember>,
        topics: &BTreeMap<String, TopicMeta>,
    ) -> BTreeMap<String, BTreeSet<String>> {
        members
            .values()
            .map(|m| {
                let regex = m
                    .subscribed_regex
                    .as_deref()
                    .and_then(|r| whole_name(r).ok());
                let mine = topics
                    .keys()
                    .filter(|t| {
                        m.subscribed_names.contains(*t)
                            || regex.as_ref().is_some_and(|r| r.is_match(t))
                    })
                    .cloned()
                    .collect();
                (m.id.clone(), mine)
            })
            .collect()
    }

    /// The assignor the group uses: the one most members ask for (Kafka's rule), else the
    /// first configured.
    pub fn assignor(&self) -> &'static str {
        let votes = |name: &str| {
            self.members
                .values()
                .filter(|m| m.server_assignor.as_deref() == Some(name))
                .count()
        };
        ASSIGNORS
            .iter()
            .copied()
            .max_by_key(|a| (votes(a), a == &UNIFORM))
            .unwrap_or(UNIFORM)
    }

    /// Sessions restart at a load: this instance could not hear the members before.
    pub fn restart_sessions(&mut self, now: Instant, settings: &ConsumerGroupSettings) {
        for m in self.members.values_mut() {
            m.deadline = now + settings.session_timeout;
            if m.state == MemberState::UnrevokedPartitions {
                m.revoke_deadline = Some(now + rebalance_timeout(m));
            }
        }
    }

    pub fn heard(&mut self, member_id: &str, now: Instant, settings: &ConsumerGroupSettings) {
        if let Some(m) = self.members.get_mut(member_id) {
            m.deadline = now + settings.session_timeout;
        }
    }

    /// A heartbeat. `resolved` holds the ids and partition counts of the subscribed topics when
    /// the caller looked them up for this request (topics that do not exist are absent).
    pub fn heartbeat(
        &mut self,
        p: HeartbeatParams,
        resolved: Option<&BTreeMap<String, TopicMeta>>,
        now: Instant,
        settings: &ConsumerGroupSettings,
        fx: &mut Effects,
    ) -> HeartbeatOutcome {
        if let Some(name) = &p.server_assignor {
            if !ASSIGNORS.contains(&name.as_str()) {
                return HeartbeatOutcome::failed(
                    ResponseError::UnsupportedAssignor,
                    format!("ServerAssignor {name} is not supported. Supported assignors: {ASSIGNORS:?}."),
                    &p.member_id,
                );
            }
        }
        let joined = match p.member_epoch {
            LEAVE_EPOCH | STATIC_LEAVE_EPOCH => return self.leave(&p, fx),
            JOIN_EPOCH => match self.join(&p, now, settings, fx) {
                Ok(joined) => joined,
                Err(refused) => return refused,
            },
            _ => match self.check_epoch(&p) {
                Ok(()) => false,
                Err(refused) => return refused,
            },
        };
        let member = self
            .members
            .get_mut(&p.member_id)
            .expect("joined or checked");
        member.deadline = now + settings.session_timeout;
        let before = (member.epoch, member.state, member.assigned.clone());
        // A new member is a new group epoch.
        let mut changed = joined;
        if p.rebalance_timeout_ms >= 0 && p.rebalance_timeout_ms != member.rebalance_timeout_ms {
            member.rebalance_timeout_ms = p.rebalance_timeout_ms;
            fx.snapshot = true;
        }
        if let Some(names) = &p.subscribed_names {
            let names: BTreeSet<String> = names.iter().cloned().collect();
            if names != member.subscribed_names {
                member.subscribed_names = names;
                changed = true;
            }
        }
        if let Some(regex) = &p.subscribed_regex {
            let regex = (!regex.is_empty()).then(|| regex.clone());
            if regex != member.subscribed_regex {
                member.subscribed_regex = regex;
                changed = true;
            }
        }
        if p.server_assignor.is_some() && p.server_assignor != member.server_assignor {
            member.server_assignor = p.server_assignor.clone();
            changed = true;
        }
        if p.rack_id.is_some() && p.rack_id != member.rack_id {
            member.rack_id = p.rack_id.clone();
            fx.snapshot = true;
        }
        if let Some(resolved) = resolved {
            changed |= self.refresh_topics(resolved, now);
        }
        if changed {
            self.group_epoch += 1;
            fx.snapshot = true;
        }
        if self.group_epoch > self.assignment_epoch {
            self.target =
                assignor::assign(self.assignor(), &self.members, &self.topics, &self.target);
            self.assignment_epoch = self.group_epoch;
            fx.snapshot = true;
        }
        self.reconcile(&p.member_id, p.owned.as_ref(), now);
        let member = &self.members[&p.member_id];
        let moved =
            (before.0, before.1) != (member.epoch, member.state) || before.2 != member.assigned;
        fx.snapshot |= moved;
        HeartbeatOutcome {
            error: 0,
            message: None,
            member_id: member.id.clone(),
            member_epoch: member.epoch,
            assignment: (moved || p.is_full()).then(|| member.assigned.clone()),
        }
    }

    /// Epoch 0: a new member, a member rejoining after it was fenced (its old state goes), or a
    /// static member taking back its place after a restart. Whether a member was added.
    fn join(
        &mut self,
        p: &HeartbeatParams,
        now: Instant,
        settings: &ConsumerGroupSettings,
        fx: &mut Effects,
    ) -> Result<bool, HeartbeatOutcome> {
        if let Some(instance) = &p.instance_id {
            let holder = self
                .members
                .values()
                .find(|m| m.instance_id.as_ref() == Some(instance) && m.id != p.member_id)
                .map(|m| (m.id.clone(), m.epoch));
            if let Some((old_id, epoch)) = holder {
                if epoch != STATIC_LEAVE_EPOCH {
                    return Err(HeartbeatOutcome::failed(
                        ResponseError::UnreleasedInstanceId,
                        format!("Static member {old_id} with instance id {instance} is not released yet."),
                        &p.member_id,
                    ));
                }
                // KIP-848: the restarted static member takes over its predecessor's
                // partitions and epoch, so that the group does not rebalance.
                let mut member = self.members.remove(&old_id).expect("found");
                member.id = p.member_id.clone();
                member.epoch = member.previous_epoch;
                member.client_id = p.client_id.clone();
                member.client_host = p.client_host.clone();
                if let Some(target) = self.target.remove(&old_id) {
                    self.target.insert(p.member_id.clone(), target);
                }
                self.members.insert(p.member_id.clone(), member);
                fx.snapshot = true;
                return Ok(false);
            }
        }
        if self.members.remove(&p.member_id).is_some() {
            self.target.remove(&p.member_id);
        } else if self.members.len() >= settings.max_size {
            return Err(HeartbeatOutcome::failed(
                ResponseError::GroupMaxSizeReached,
                format!(
                    "The consumer group has reached its maximum capacity of {} members.",
                    settings.max_size
                ),
                &p.member_id,
            ));
        }
        self.members.insert(
            p.member_id.clone(),
            ConsumerMember {
                id: p.member_id.clone(),
                instance_id: p.instance_id.clone(),
                rack_id: p.rack_id.clone(),
                client_id: p.client_id.clone(),
                client_host: p.client_host.clone(),
                subscribed_names: BTreeSet::new(),
                subscribed_regex: None,
                server_assignor: None,
                rebalance_timeout_ms: p.rebalance_timeout_ms,
                epoch: JOIN_EPOCH,
                previous_epoch: JOIN_EPOCH,
                state: MemberState::Stable,
                assigned: Partitions::new(),
                revoking: Partitions::new(),
                deadline: now + settings.session_timeout,
                revoke_deadline: None,
            },
        );
        fx.snapshot = true;
        Ok(true)
    }

    /// A heartbeat of a known member must carry its epoch. The previous one is accepted when
    /// the member only missed the answer that moved it on (what it owns is still assigned).
    fn check_epoch(&self, p: &HeartbeatParams) -> Result<(), HeartbeatOutcome> {
        let Some(member) = self.members.get(&p.member_id) else {
            return Err(HeartbeatOutcome::failed(
                ResponseError::UnknownMemberId,
                format!("Member {} is not a member of the group.", p.member_id),
                &p.member_id,
            ));
        };
        if let Some(instance) = &p.instance_id {
            if member.instance_id.as_ref() != Some(instance) {
                return Err(HeartbeatOutcome::failed(
                    ResponseError::FencedInstanceId,
                    format!(
                        "Instance id {instance} does not belong to member {}.",
                        p.member_id
                    ),
                    &p.member_id,
                ));
            }
        }
        let fenced = || {
            Err(HeartbeatOutcome::failed(
                ResponseError::FencedMemberEpoch,
                format!(
                    "The member epoch {} does not match the expected member epoch {}.",
                    p.member_epoch, member.epoch
                ),
                &p.member_id,
            ))
        };
        if p.member_epoch > member.epoch {
            return fenced();
        }
        if p.member_epoch < member.epoch {
            let caught_up = p.member_epoch == member.previous_epoch
                && p.owned.as_ref().is_some_and(|owned| {
                    flatten(owned).all(|(t, partition)| contains(&member.assigned, &t, partition))
                });
            if !caught_up {
                return fenced();
            }
        }
        Ok(())
    }

    fn leave(&mut self, p: &HeartbeatParams, fx: &mut Effects) -> HeartbeatOutcome {
        let known = self
            .members
            .get(&p.member_id)
            .map(|m| m.instance_id.clone());
        let Some(instance) = known else {
            return HeartbeatOutcome::failed(
                ResponseError::UnknownMemberId,
                format!("Member {} is not a member of the group.", p.member_id),
                &p.member_id,
            );
        };
        if p.member_epoch == STATIC_LEAVE_EPOCH && instance.is_some() {
            // Kept, partitions and all, until its session lapses or it comes back.
            let member = self.members.get_mut(&p.member_id).expect("known");
            if member.epoch != STATIC_LEAVE_EPOCH {
                member.previous_epoch = member.epoch;
                member.epoch = STATIC_LEAVE_EPOCH;
                fx.snapshot = true;
            }
        } else {
            self.remove_member(&p.member_id, fx);
        }
        HeartbeatOutcome {
            member_id: p.member_id.clone(),
            member_epoch: p.member_epoch,
            ..HeartbeatOutcome::default()
        }
    }

    fn remove_member(&mut self, member_id: &str, fx: &mut Effects) {
        if self.members.remove(member_id).is_some() {
            self.target.remove(member_id);
            self.group_epoch += 1;
            fx.snapshot = true;
            if self.members.is_empty() {
                fx.emptied = true;
            }
        }
    }

    /// Takes the resolved metadata of the subscribed topics; whether it changed the assignment's
    /// input.
    fn refresh_topics(&mut self, resolved: &BTreeMap<String, TopicMeta>, now: Instant) -> bool {
        self.resolved_at = Some(now);
        let subscribed: BTreeSet<String> = Self::subscriptions(&self.members, resolved)
            .into_values()
            .flatten()
            .collect();
        let topics: BTreeMap<String, TopicMeta> = resolved
            .iter()
            .filter(|(name, _)| subscribed.contains(*name))
            .map(|(name, meta)| (name.clone(), meta.clone()))
            .collect();
        let changed = topics != self.topics;
        self.topics = topics;
        changed
    }

    /// Moves a member toward its target assignment (Kafka's `CurrentAssignmentBuilder`).
    fn reconcile(&mut self, member_id: &str, owned: Option<&Partitions>, now: Instant) {
        let mut member = self.members.remove(member_id).expect("known");
        let next = match member.state {
            MemberState::UnrevokedPartitions => {
                let gave_up = owned.is_some_and(|owned| {
                    !flatten(&member.revoking).any(|(t, partition)| contains(owned, &t, partition))
                });
                if gave_up {
                    member.revoking.clear();
                    member.revoke_deadline = None;
                }
                gave_up
            }
            MemberState::UnreleasedPartitions => true,
            MemberState::Stable => member.epoch != self.assignment_epoch,
        };
        if next && member.epoch != STATIC_LEAVE_EPOCH {
            let target = self.target.get(member_id).cloned().unwrap_or_default();
            let kept = collect(flatten(&member.assigned).filter(|(t, p)| contains(&target, t, *p)));
            let revoke: Partitions =
                collect(flatten(&member.assigned).filter(|(t, p)| !contains(&target, t, *p)));
            if !revoke.is_empty() {
                member.assigned = kept;
                member.revoking = revoke;
                member.state = MemberState::UnrevokedPartitions;
                member.revoke_deadline = Some(now + rebalance_timeout(&member));
            } else {
                // Only here, not on every heartbeat: what the other members still hold.
                let owned_by_others: BTreeSet<(Uuid, i32)> = self
                    .members
                    .values()
                    .flat_map(|m| flatten(&m.assigned).chain(flatten(&m.revoking)))
                    .collect();
                let mut unreleased = false;
                let mut assigned = kept;
                for (t, partition) in flatten(&target) {
                    if contains(&assigned, &t, partition) {
                        continue;
                    }
                    if owned_by_others.contains(&(t, partition)) {
                        unreleased = true;
                    } else {
                        assigned.entry(t).or_default().insert(partition);
                    }
                }
                member.assigned = assigned;
                if member.epoch != self.assignment_epoch {
                    member.previous_epoch = member.epoch;
                    member.epoch = self.assignment_epoch;
                }
                member.state = if unreleased {
                    MemberState::UnreleasedPartitions
                } else {
                    MemberState::Stable
                };
            }
        }
        self.members.insert(member_id.to_owned(), member);
    }

    /// Removes members whose session lapsed and members that did not give up their partitions
    /// within their rebalance timeout (Kafka fences both).
    pub fn tick(&mut self, now: Instant, fx: &mut Effects) {
        let gone: Vec<(String, &'static str)> = self
            .members
            .values()
            .filter_map(|m| {
                if m.deadline <= now {
                    Some((m.id.clone(), "session timed out"))
                } else if m.revoke_deadline.is_some_and(|d| d <= now) {
                    Some((
                        m.id.clone(),
                        "did not revoke its partitions within the rebalance timeout",
                    ))
                } else {
                    None
                }
            })
            .collect();
        for (id, why) in gone {
            tracing::info!(member = %id, why, "removing consumer group member");
            self.remove_member(&id, fx);
        }
    }

    /// Whether an OffsetCommit (or an OffsetFetch naming a member) may go ahead: from outside
    /// the group when it has no members, else from a member at its current epoch.
    pub fn check_member(&self, member_id: &str, epoch: i32) -> Result<(), ResponseError> {
        if epoch < 0 && self.members.is_empty() {
            return Ok(());
        }
        let member = self
            .members
            .get(member_id)
            .ok_or(ResponseError::UnknownMemberId)?;
        if epoch != member.epoch {
            return Err(ResponseError::StaleMemberEpoch);
        }
        Ok(())
    }
}

/// A subscription regex as Kafka applies it: to whole topic names.
pub fn whole_name(regex: &str) -> Result<regex::Regex, regex::Error> {
    regex::Regex::new(&format!("^(?:{regex})$"))
}

fn rebalance_timeout(m: &ConsumerMember) -> Duration {
    Duration::from_millis(m.rebalance_timeout_ms.max(0) as u64)
}

#[cfg(test)]
mod tests;
