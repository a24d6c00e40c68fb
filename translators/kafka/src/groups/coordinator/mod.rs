//! The group coordinator: groups hashed to shards, each shard's state kept in a table topic
//! (`<state topic>-<shard>`) in the backend, so that it survives restarts and any instance can
//! take a shard over. A shard is loaded once, on first use; requests wait for the load instead
//! of being told "coordinator is loading".
//!
//! Writes to a shard's table are ordered by a per-shard lock held only while the write is
//! queued, so that commits pipeline without reordering. An answer that depends on a write (an
//! OffsetCommit) is sent only once the write is persisted, or as REQUEST_TIMED_OUT once the
//! commit timeout has passed without Pulsar confirming it.
//!
//! A shard loaded here (on first use, or on taking it over) starts every member's session at the
//! load: this instance could not hear them before, as Kafka's coordinator starts all session
//! timers when it loads a group.
//!
//! A lost lease is not a lost group. Kafka's coordinator serves heartbeats from memory and needs
//! its log only for changes; so does this one. When a shard's lease is lost (its connection to
//! Pulsar died, or the producer was closed), its groups stay in memory and a background task
//! claims the lease again. Meanwhile heartbeats, OffsetFetch, DescribeGroups and ListGroups are
//! answered from memory (a heartbeat still counts as hearing the member), sessions expire from
//! the times members were last heard, and requests that must be persisted wait for the lease at
//! most the commit timeout. Regained with the table as this instance last wrote it, the shard
//! keeps its memory (members, generations, last-heard times) and writes what was left unsaved;
//! if someone else wrote the table meanwhile, it is loaded again; if another instance holds the
//! lease, the groups are dropped and their clients told NOT_COORDINATOR.
//!
//! Here: the coordinator, its settings and its timer. `requests.rs` answers the group requests,
//! `shards.rs` holds, loads and writes shards, `fleet.rs` knows the other instances.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use gateway_core::retry_log::RetryLog;
use gateway_core::{
    table, Announcement, BackendError, BackendRef, EntryId, Lease, SendReceipt, TopicName,
};
use kafka_protocol::error::ResponseError;
use tokio::sync::{watch, OwnedMutexGuard};

use super::consumer_group::{ConsumerGroup, ConsumerGroupSettings};
use super::mirror::Mirror;
use super::state::{
    Committed, Effects, Group, GroupSnapshot, GroupState, JoinOutcome, JoinParams, Reply,
    SyncOutcome, Timing,
};

mod consumer_groups;
mod fleet;
mod requests;
mod shards;
mod transactions;
mod txn_offsets;

use consumer_groups::consumer_key;
pub use consumer_groups::ConsumerGroupLookup;
pub use fleet::{Instance, Owner};
use shards::*;
pub use transactions::TxnSummary;

/// How often sessions, rebalance deadlines and the initial delay are checked.
const TICK: Duration = Duration::from_millis(100);

/// Settings of the group coordinator.
#[derive(Debug, Clone)]
pub struct GroupSettings {
    /// Shards groups are hashed over; each is one table topic.
    pub shards: u32,
    /// Base name of the shards' table topics; shard `i` is `<local name>-<i>`.
    pub state_topic: TopicName,
    pub timing: Timing,
    /// The consumer group protocol's (KIP-848) session and heartbeat times.
    pub consumer: ConsumerGroupSettings,
    /// How often committed offsets are copied to the groups' Pulsar subscriptions.
    pub mirror_interval: Duration,
    /// Kafka's `offset.metadata.max.bytes`.
    pub max_metadata_bytes: usize,
    /// Kafka's `offsets.commit.timeout.ms`: how long a request waits for its write to the shard's
    /// table. A write Pulsar has not confirmed by then is answered REQUEST_TIMED_OUT (as Kafka
    /// answers a commit whose append timed out) and goes on in the background. Requests on a
    /// Kafka connection are answered in order, so an unbounded wait would hold up the member's
    /// heartbeats behind its commit for as long as Pulsar cannot be reached.
    pub commit_timeout: Duration,
    /// Kafka's `offsets.retention.minutes` (KIP-211): committed offsets of a group without
    /// members are deleted this long after it became empty (or, for consumers that only
    /// commit, after each offset's last commit), with their mirrored subscriptions; a group left
    /// with neither members nor offsets goes too.
    pub offsets_retention: Duration,
    /// Kafka's `offsets.retention.check.interval.ms`: how often expired offsets (and expired
    /// transactional ids) are looked for.
    pub offsets_retention_check_interval: Duration,
    /// Kafka's `transactional.id.expiration.ms`: the state of a transactional id with no
    /// transaction open is deleted once it has not changed for this long, so ids that are used
    /// once (Flink's and Spring's generated ones) do not pile up in the table.
    pub transactional_id_expiration: Duration,
    /// Group ids carry their tenant/namespace scope (authentication is required); the mirrored
    /// subscriptions are named without it.
    pub scoped_groups: bool,
    /// How other instances reach this one, published as the name of the shard leases it holds.
    pub instance: Instance,
}

impl Default for GroupSettings {
    fn default() -> Self {
        GroupSettings {
            shards: 16,
            state_topic: TopicName::new("public", "default", "__gateway_kafka_groups"),
            timing: Timing::default(),
            consumer: ConsumerGroupSettings::default(),
            mirror_interval: Duration::from_secs(1),
            max_metadata_bytes: 4096,
            commit_timeout: Duration::from_secs(5),
            offsets_retention: Duration::from_secs(7 * 24 * 3600),
            offsets_retention_check_interval: Duration::from_secs(600),
            transactional_id_expiration: Duration::from_secs(7 * 24 * 3600),
            scoped_groups: false,
            instance: Instance {
                node_id: 0,
                host: "127.0.0.1".into(),
                port: 9092,
                internal: None,
                tls: None,
            },
        }
    }
}

/// Local names of topics the gateway keeps for itself; Metadata does not list them.
pub const INTERNAL_TOPIC_PREFIX: &str = "__gateway_";

/// The answer to a JoinGroup, SyncGroup or LeaveGroup while the shard's lease is lost and not
/// back within the commit timeout (the membership change could not be written).
///
/// Kafka 4's group coordinator (the KIP-848 runtime, which runs classic groups too) handles a
/// JoinGroup or SyncGroup as a write bounded by `offsets.commit.timeout.ms`, and answers one
/// whose append timed out or failed COORDINATOR_NOT_AVAILABLE (`handleOperationException`); the
/// older classic coordinator answered a SyncGroup whose append timed out REBALANCE_IN_PROGRESS.
/// Both clients retry COORDINATOR_NOT_AVAILABLE quietly: librdkafka looks the coordinator up
/// again (this instance) and rejoins after its join back-off; the Java client marks the
/// coordinator unknown, finds it again and rejoins. REQUEST_TIMED_OUT, what a commit gets, is an
/// "unexpected error" to the Java client's JoinGroup and SyncGroup handlers (an exception from
/// `poll`), and librdkafka reports a JoinGroup's REBALANCE_IN_PROGRESS to the application as a
/// consumer error.
const MEMBERSHIP_NOT_WRITTEN: ResponseError = ResponseError::CoordinatorNotAvailable;

pub struct GroupCoordinator {
    settings: GroupSettings,
    backend: BackendRef,
    /// This coordinator, for the background tasks it starts.
    me: Weak<GroupCoordinator>,
    /// The name its leases are held under: the instance's addresses (`Instance::holder_name`)
    /// and a token of this run, so that a lease still held by one of its own lost producers
    /// (the broker has not yet seen that connection die) is told from another instance's.
    holder: String,
    /// When the timer last ran (rebalance deadlines of shards whose lease is lost do not run).
    last_tick: Mutex<Instant>,
    shards: Vec<Shard>,
    mirror: Arc<Mirror>,
    seq: AtomicU64,
    ticking: AtomicBool,
    /// When expired offsets were last looked for.
    retention_checked: Mutex<Instant>,
    /// The fleet's other live instances, as Metadata lists them (see `peers`).
    peers: Mutex<Vec<Instance>>,
}

/// A partition's commit as the handler resolved it.
pub struct CommitRequest {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
    pub pulsar_topic: TopicName,
}

/// A group as DescribeGroups and ListGroups report it.
pub struct GroupSummary {
    pub state: &'static str,
    pub protocol_type: String,
    pub protocol: String,
    pub members: Vec<MemberSummary>,
}

/// A group as ListGroups reports it.
pub struct ListedGroup {
    pub id: String,
    pub state: &'static str,
    pub protocol_type: String,
    /// `classic` or `consumer` (KIP-848).
    pub group_type: &'static str,
}

pub struct MemberSummary {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub metadata: Bytes,
    pub assignment: Bytes,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

/// Table keys: JSON arrays, so group and topic names need no escaping.
fn group_key(group: &str) -> String {
    serde_json::json!(["g", group]).to_string()
}

fn offset_key(group: &str, topic: &str, partition: i32) -> String {
    serde_json::json!(["o", group, topic, partition]).to_string()
}

fn encode<T: serde::Serialize>(value: &T) -> Bytes {
    Bytes::from(postcard::to_stdvec(value).expect("plain data serializes"))
}

impl GroupCoordinator {
    pub fn new(settings: GroupSettings, backend: BackendRef) -> Arc<Self> {
        let shards = (0..settings.shards.max(1))
            .map(|i| {
                let base = &settings.state_topic;
                Shard {
                    index: i as usize,
                    topic: TopicName::new(
                        &base.tenant,
                        &base.namespace,
                        &format!("{}-{i}", base.local),
                    ),
                    hold: Mutex::new(Hold::Free),
                    reclaimed: watch::channel(()).0,
                    claiming: tokio::sync::Mutex::new(()),
                    refused_at: Mutex::new(None),
                    uncompacted: AtomicU64::new(0),
                    groups: Mutex::new(HashMap::new()),
                    transactions: Mutex::new(HashMap::new()),
                    txn_ops: tokio::sync::Mutex::new(()),
                    applier: Mutex::new(None),
                    pending_txn: Mutex::default(),
                    unsaved: Mutex::new(HashSet::new()),
                    unconfirmed: Arc::default(),
                    committing: Arc::default(),
                    tail: Arc::default(),
                    epoch: Arc::default(),
                    writes: Arc::new(tokio::sync::Mutex::new(())),
                }
            })
            .collect();
        let mirror = Mirror::new(
            backend.clone(),
            settings.mirror_interval,
            settings.scoped_groups,
        );
        let holder = format!(
            "{};run={:016x}",
            settings.instance.holder_name(),
            rand::random::<u64>()
        );
        Arc::new_cyclic(|me| GroupCoordinator {
            settings,
            backend,
            me: me.clone(),
            holder,
            last_tick: Mutex::new(Instant::now()),
            shards,
            mirror,
            seq: AtomicU64::new(1),
            ticking: AtomicBool::new(false),
            retention_checked: Mutex::new(Instant::now()),
            peers: Mutex::default(),
        })
    }

    pub fn settings(&self) -> &GroupSettings {
        &self.settings
    }

    fn shard_of(&self, group: &str) -> &Shard {
        let index = fnv1a(group.as_bytes()) % self.shards.len() as u64;
        &self.shards[index as usize]
    }

    /// Starts the timer task on first use (a runtime exists by then).
    fn ensure_ticking(self: &Arc<Self>) {
        if self.ticking.swap(true, Ordering::AcqRel) {
            return;
        }
        let weak = Arc::downgrade(self);
        tokio::spawn(tick_loop(weak));
        self.mirror.start();
    }

    /// One pass of the timer over every loaded shard.
    async fn tick(self: &Arc<Self>) {
        let due = {
            let mut checked = self.retention_checked.lock().expect("retention lock");
            let due = checked.elapsed() >= self.settings.offsets_retention_check_interval;
            if due {
                *checked = Instant::now();
            }
            due
        };
        if due {
            for shard in &self.shards {
                self.expire_offsets(shard).await;
                self.expire_transactional_ids(shard).await;
            }
        }
        let now = Instant::now();
        let since_last = now.saturating_duration_since(std::mem::replace(
            &mut *self.last_tick.lock().expect("tick lock"),
            now,
        ));
        for shard in &self.shards {
            // While the lease is lost, sessions still expire (members that heartbeat are heard),
            // but members cannot rejoin or sync, so the rebalance's time stands still; changes
            // are written once the lease is back.
            self.expire_transactions(shard).await;
            self.apply_txn_offsets(shard).await;
            let lost = match self.hold(shard) {
                Hold::Free => continue,
                Hold::Held(_) => false,
                Hold::Lost(_) => true,
            };
            let mut changed: HashSet<String> = if lost {
                HashSet::new()
            } else {
                std::mem::take(&mut *shard.unsaved.lock().expect("unsaved lock"))
            };
            {
                let Ok(mut groups) = self.served(shard) else {
                    continue;
                };
                let wall = now_ms();
                changed.extend(groups.values_mut().filter_map(|g| {
                    let mut fx = Effects::default();
                    if lost {
                        g.postpone_deadlines(since_last);
                    }
                    g.tick(now, &self.settings.timing, &mut fx);
                    g.note_emptied(&fx, wall);
                    fx.snapshot.then(|| g.id.clone())
                }));
            }
            if lost {
                shard.unsaved.lock().expect("unsaved lock").extend(changed);
                continue;
            }
            for group in changed {
                self.persist(shard, &group).await;
            }
        }
    }
}

impl GroupCoordinator {
    /// Deletes the shard's committed offsets whose retention has passed (`Group::expire_offsets`)
    /// and the groups left with neither members nor offsets, as Kafka's coordinator does every
    /// `offsets.retention.check.interval.ms`: tombstones in the table, and the groups'
    /// subscriptions on those partitions, as DeleteGroups and OffsetDelete delete them.
    ///
    /// The shard's write lock is held from the choice to the write, so a commit accepted after
    /// the choice is written after the tombstones; groups with commits still being written are
    /// left for the next pass.
    async fn expire_offsets(&self, shard: &Shard) {
        let Some(lease) = self.held(shard) else {
            return;
        };
        let Ok(order) = self.write_order(shard).await else {
            return;
        };
        let retention = self.settings.offsets_retention;
        let now = now_ms();
        let mut records = Vec::new();
        let mut mirrored = Vec::new();
        let mut gone = Vec::new();
        {
            let committing = shard.committing.lock().expect("committing lock");
            let mut groups = shard.groups.lock().expect("groups lock");
            for group in groups.values_mut() {
                if committing.contains_key(&group.id) {
                    continue;
                }
                for ((topic, partition), committed) in group.expire_offsets(now, retention) {
                    records.push((offset_key(&group.id, &topic, partition), None));
                    mirrored.push((group.id.clone(), committed.pulsar_topic));
                }
                if group.is_dead() {
                    gone.push(group.id.clone());
                }
            }
            for id in &gone {
                groups.remove(id);
                shard.unsaved.lock().expect("unsaved lock").remove(id);
                records.push((group_key(id), None));
                records.push((consumer_key(id), None));
            }
        }
        if records.is_empty() {
            return;
        }
        let offsets = mirrored.len();
        match self.write(shard, lease, order, records).await {
            Ok(()) => {
                tracing::info!(topic = %shard.topic, offsets, groups = gone.len(), "deleted expired committed offsets and empty groups");
                for (group, pulsar_topic) in mirrored {
                    self.mirror.record(&group, &pulsar_topic, None);
                }
            }
            // They are gone from memory; the table still has them until a later load, which
            // finds them expired again.
            Err(e) => {
                tracing::warn!(topic = %shard.topic, error = %e, "deleting expired offsets failed")
            }
        }
    }
}

async fn tick_loop(coordinator: Weak<GroupCoordinator>) {
    let mut interval = tokio::time::interval(TICK);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let Some(c) = coordinator.upgrade() else {
            return;
        };
        c.tick().await;
    }
}

fn summarize(g: &Group) -> GroupSummary {
    let stable = g.state == GroupState::Stable;
    let protocol = g.protocol.clone().unwrap_or_default();
    GroupSummary {
        state: g.state.name(),
        protocol_type: g.protocol_type.clone().unwrap_or_default(),
        protocol: if stable {
            protocol.clone()
        } else {
            String::new()
        },
        members: g
            .members
            .values()
            .map(|m| MemberSummary {
                member_id: m.id.clone(),
                instance_id: m.instance_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                // Kafka shows metadata and assignments only for a stable group.
                metadata: if stable {
                    m.protocols
                        .iter()
                        .find(|(n, _)| *n == protocol)
                        .map(|(_, b)| b.clone())
                        .unwrap_or_default()
                } else {
                    Bytes::new()
                },
                assignment: if stable {
                    m.assignment.clone()
                } else {
                    Bytes::new()
                },
            })
            .collect(),
    }
}

/// FNV-1a: a fixed hash, so a group maps to the same shard in every build and on every instance.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        hash ^= *b as u64;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests;
