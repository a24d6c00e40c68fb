//! A group's membership as persisted in its shard's table, and a group restored from it.

use super::*;

impl Group {
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
