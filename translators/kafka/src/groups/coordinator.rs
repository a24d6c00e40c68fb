//! The group coordinator: groups hashed to shards, each shard's state kept in a table topic
//! (`<state topic>-<shard>`) in the backend, so that it survives restarts and any instance can
//! take a shard over. A shard is loaded once, on first use; requests wait for the load instead
//! of being told "coordinator is loading".
//!
//! Writes to a shard's table are ordered by a per-shard lock held only while the write is
//! queued, so that commits pipeline without reordering. An answer that depends on a write (an
//! OffsetCommit) is sent only once the write is persisted.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use gateway_core::retry_log::RetryLog;
use gateway_core::{table, Announcement, BackendError, BackendRef, Lease, TopicName};
use kafka_protocol::error::ResponseError;

use super::mirror::Mirror;
use super::state::{
    Committed, Effects, Group, GroupSnapshot, GroupState, JoinOutcome, JoinParams, Reply,
    SyncOutcome, Timing,
};

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
    /// How often committed offsets are copied to the groups' Pulsar subscriptions.
    pub mirror_interval: Duration,
    /// Kafka's `offset.metadata.max.bytes`.
    pub max_metadata_bytes: usize,
    /// Group ids carry their tenant/namespace scope (authentication is required); the mirrored
    /// subscriptions are named without it.
    pub scoped_groups: bool,
    /// How other instances reach this one, published as the name of the shard leases it holds.
    pub instance: Instance,
}

/// How a gateway instance is reached: its Kafka node id and advertised address, the address of
/// its Kafka TLS listener, and the internal address peers forward group requests to (each when
/// it has one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    pub node_id: i32,
    pub host: String,
    pub port: u16,
    pub internal: Option<String>,
    /// `host:port` that TLS clients are given, so FindCoordinator keeps them on TLS.
    pub tls: Option<String>,
}

impl Instance {
    /// The lease holder name that carries this instance's addresses to its peers.
    pub fn holder_name(&self) -> String {
        format!(
            "kafka-coordinator;node={};kafka={}:{};internal={};tls={}",
            self.node_id,
            self.host,
            self.port,
            self.internal.as_deref().unwrap_or("-"),
            self.tls.as_deref().unwrap_or("-")
        )
    }

    pub fn parse(holder: &str) -> Option<Instance> {
        let mut parts = holder.split(';');
        if parts.next()? != "kafka-coordinator" {
            return None;
        }
        let mut fields = HashMap::new();
        for part in parts {
            let (k, v) = part.split_once('=')?;
            fields.insert(k, v);
        }
        let (host, port) = fields.get("kafka")?.rsplit_once(':')?;
        Some(Instance {
            node_id: fields.get("node")?.parse().ok()?,
            host: host.to_owned(),
            port: port.parse().ok()?,
            internal: fields
                .get("internal")
                .filter(|i| **i != "-")
                .map(|i| i.to_string()),
            // Absent in the names of instances from before TLS listeners.
            tls: fields
                .get("tls")
                .filter(|t| **t != "-")
                .map(|t| t.to_string()),
        })
    }

    /// The address to give a client: the TLS listener's to a TLS client, when there is one.
    pub fn address_for(&self, tls_client: bool) -> (String, u16) {
        if tls_client {
            let tls = self.tls.as_deref().and_then(|t| t.rsplit_once(':'));
            if let Some((host, port)) = tls.and_then(|(h, p)| Some((h, p.parse().ok()?))) {
                return (host.to_owned(), port);
            }
        }
        (self.host.clone(), self.port)
    }
}

/// Where a group is coordinated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    Local,
    Remote(Instance),
}

impl Default for GroupSettings {
    fn default() -> Self {
        GroupSettings {
            shards: 16,
            state_topic: TopicName::new("public", "default", "__gateway_kafka_groups"),
            timing: Timing::default(),
            mirror_interval: Duration::from_secs(1),
            max_metadata_bytes: 4096,
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

/// How long a failed claim of a shard is trusted before trying again.
const CLAIM_RETRY: Duration = Duration::from_millis(500);

struct Shard {
    topic: TopicName,
    /// The shard's lease while this instance coordinates it; its groups are loaded then.
    lease: Mutex<Option<Arc<dyn Lease>>>,
    /// One claim (lease, then load) at a time.
    claiming: tokio::sync::Mutex<()>,
    /// When a claim last found another holder.
    refused_at: Mutex<Option<Instant>>,
    groups: Mutex<HashMap<String, Group>>,
    /// Held while a write is queued, so table order is acceptance order.
    writes: tokio::sync::Mutex<()>,
    /// Table writes since compaction was last started.
    uncompacted: AtomicU64,
}

/// Table writes after which the shard's topic is compacted, so that a takeover reads about one
/// message per key instead of every commit ever made.
const COMPACT_EVERY: u64 = 10_000;

pub struct GroupCoordinator {
    settings: GroupSettings,
    backend: BackendRef,
    shards: Vec<Shard>,
    mirror: Arc<Mirror>,
    seq: AtomicU64,
    ticking: AtomicBool,
    /// The fleet's other live instances, as Metadata lists them (see `peers`).
    peers: Mutex<Vec<Instance>>,
}

/// How often an instance renews its announcement to the fleet and reads everyone else's.
const FLEET_REFRESH: Duration = Duration::from_secs(2);

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
                    topic: TopicName::new(
                        &base.tenant,
                        &base.namespace,
                        &format!("{}-{i}", base.local),
                    ),
                    lease: Mutex::new(None),
                    claiming: tokio::sync::Mutex::new(()),
                    refused_at: Mutex::new(None),
                    uncompacted: AtomicU64::new(0),
                    groups: Mutex::new(HashMap::new()),
                    writes: tokio::sync::Mutex::new(()),
                }
            })
            .collect();
        let mirror = Mirror::new(
            backend.clone(),
            settings.mirror_interval,
            settings.scoped_groups,
        );
        Arc::new(GroupCoordinator {
            settings,
            backend,
            shards,
            mirror,
            seq: AtomicU64::new(1),
            ticking: AtomicBool::new(false),
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

    /// The shard's lease while this instance still holds it. A lost lease means another
    /// instance may be writing: the groups in memory are dropped and their waiters told
    /// NOT_COORDINATOR, so the clients find the new owner.
    fn held(&self, shard: &Shard) -> Option<Arc<dyn Lease>> {
        let mut lease = shard.lease.lock().expect("lease lock");
        match lease.as_ref() {
            Some(l) if l.is_held() => return Some(l.clone()),
            Some(_) => {}
            None => return None,
        }
        *lease = None;
        drop(lease);
        tracing::warn!(topic = %shard.topic, "lost the lease of a group coordinator shard");
        let mut groups = shard.groups.lock().expect("groups lock");
        for group in groups.values_mut() {
            group.abandon();
        }
        groups.clear();
        None
    }

    /// Coordinates the shard here: holds its lease, with its state loaded. Claims it when no one
    /// holds it; `NOT_COORDINATOR` when another instance does. Concurrent callers wait for the
    /// same claim (there is no "coordinator is loading").
    async fn ready(self: &Arc<Self>, shard: &Shard) -> Result<Arc<dyn Lease>, ResponseError> {
        self.ensure_ticking();
        if let Some(lease) = self.held(shard) {
            return Ok(lease);
        }
        let _claim = shard.claiming.lock().await;
        if let Some(lease) = self.held(shard) {
            return Ok(lease);
        }
        let refused = *shard.refused_at.lock().expect("refused lock");
        if refused.is_some_and(|at| at.elapsed() < CLAIM_RETRY) {
            return Err(ResponseError::NotCoordinator);
        }
        let unavailable = |e: BackendError| {
            tracing::warn!(topic = %shard.topic, error = %e, "claiming a group coordinator shard failed");
            ResponseError::CoordinatorNotAvailable
        };
        match self.backend.create_topic(&shard.topic, 0).await {
            Ok(()) | Err(BackendError::TopicAlreadyExists(_)) => {}
            Err(e) => return Err(unavailable(e)),
        }
        let holder = self.settings.instance.holder_name();
        let lease: Arc<dyn Lease> = match self.backend.try_lease(&shard.topic, &holder).await {
            Ok(Some(lease)) => Arc::from(lease),
            Ok(None) => {
                *shard.refused_at.lock().expect("refused lock") = Some(Instant::now());
                return Err(ResponseError::NotCoordinator);
            }
            Err(e) => return Err(unavailable(e)),
        };
        // Loaded after the lease is taken, so no other owner can write what this load misses.
        self.load(shard).await.map_err(unavailable)?;
        *shard.lease.lock().expect("lease lock") = Some(lease.clone());
        tracing::info!(topic = %shard.topic, "coordinating a group shard");
        Ok(lease)
    }

    /// Where a group is coordinated: here (claiming its shard if it is free) or at the instance
    /// holding the shard's lease.
    ///
    /// A lease found free after a refused claim (its holder just died) is claimed at once
    /// rather than answered COORDINATOR_NOT_AVAILABLE: librdkafka drops its coordinator
    /// connection on that error and backs off further each time, so a few such answers in a row
    /// kept a group's members from heartbeating until their sessions expired (seen in the forward
    /// fleet test: commits resumed 20 s after the coordinator died instead of within 3 s).
    pub async fn owner_of(self: &Arc<Self>, group: &str) -> Result<Owner, ResponseError> {
        let shard = self.shard_of(group);
        for _ in 0..2 {
            match self.ready(shard).await {
                Ok(_) => return Ok(Owner::Local),
                Err(ResponseError::NotCoordinator) => {}
                Err(e) => return Err(e),
            }
            match self.backend.lease_holder(&shard.topic).await {
                Ok(Some(holder)) => {
                    let owner =
                        Instance::parse(&holder).ok_or(ResponseError::CoordinatorNotAvailable)?;
                    self.note_peer(&owner);
                    return Ok(Owner::Remote(owner));
                }
                // Released since the claim was refused: claim it now.
                Ok(None) => *shard.refused_at.lock().expect("refused lock") = None,
                Err(_) => return Err(ResponseError::CoordinatorNotAvailable),
            }
        }
        Err(ResponseError::CoordinatorNotAvailable)
    }

    /// The fleet's other instances, for Metadata to list beside this one: a client told by
    /// FindCoordinator that a peer coordinates its group must also find that peer in Metadata,
    /// and Metadata from any instance must list the same brokers. librdkafka (2.10 and later)
    /// drops a broker that a Metadata answer leaves out, and a request in flight to it is lost
    /// (seen: a consumer's topic metadata request, after which it never joined its group).
    /// Empty until `start_fleet` has read the fleet once.
    pub fn peers(&self) -> Vec<Instance> {
        self.peers.lock().expect("peers lock").clone()
    }

    /// Announces this instance on the fleet topic (beside the shards' topics) and reads every
    /// live announcement every `FLEET_REFRESH`, until the coordinator is dropped. An instance
    /// that dies drops out when Pulsar sees its connection close. For addressable fleets.
    pub fn start_fleet(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut announcement: Option<Box<dyn Announcement>> = None;
            let (mut announcing, mut reading) = (RetryLog::default(), RetryLog::default());
            loop {
                let Some(this) = weak.upgrade() else {
                    return;
                };
                let topic = this.fleet_topic();
                if !announcement.as_ref().is_some_and(|a| a.is_live()) {
                    // Created first, like the shards' topics: a broker may not auto-create.
                    match this.backend.create_topic(&topic, 0).await {
                        Ok(()) | Err(BackendError::TopicAlreadyExists(_)) => {}
                        Err(e) => tracing::debug!(%topic, error = %e, "creating the fleet topic"),
                    }
                    let holder = this.settings.instance.holder_name();
                    announcement = match this.backend.announce(&topic, &holder).await {
                        Ok(a) => {
                            announcing.succeeded("announcing this instance to the fleet");
                            Some(a)
                        }
                        Err(e) => {
                            announcing.failed("announcing this instance to the fleet", &e);
                            None
                        }
                    };
                }
                match this.backend.announced(&topic).await {
                    Ok(names) => {
                        reading.succeeded("reading the fleet");
                        this.set_peers(&names);
                    }
                    Err(e) => reading.failed("reading the fleet", &e),
                }
                drop(this);
                tokio::time::sleep(FLEET_REFRESH).await;
            }
        });
    }

    fn fleet_topic(&self) -> TopicName {
        let base = &self.settings.state_topic;
        TopicName::new(
            &base.tenant,
            &base.namespace,
            &format!("{}-fleet", base.local),
        )
    }

    fn set_peers(&self, names: &[String]) {
        let me = self.settings.instance.node_id;
        let mut instances: Vec<Instance> = Vec::new();
        for instance in names.iter().filter_map(|n| Instance::parse(n)) {
            if instance.node_id != me && !instances.iter().any(|i| i.node_id == instance.node_id) {
                instances.push(instance);
            }
        }
        instances.sort_by_key(|i| i.node_id);
        *self.peers.lock().expect("peers lock") = instances;
    }

    /// A peer FindCoordinator just named is listed at once, before the next read.
    fn note_peer(&self, owner: &Instance) {
        if owner.node_id == self.settings.instance.node_id {
            return;
        }
        let mut peers = self.peers.lock().expect("peers lock");
        if !peers.iter().any(|i| i == owner) {
            peers.retain(|i| i.node_id != owner.node_id);
            peers.push(owner.clone());
            peers.sort_by_key(|i| i.node_id);
        }
    }

    async fn load(&self, shard: &Shard) -> Result<(), BackendError> {
        let started = Instant::now();
        let (table, read) = table::load_counted(self.backend.as_ref(), &shard.topic).await?;
        if read > 2 * table.len() + 1000 {
            self.compact(shard);
        } else {
            shard.uncompacted.store(read as u64, Ordering::Relaxed);
        }
        let now = Instant::now();
        let mut snapshots: HashMap<String, GroupSnapshot> = HashMap::new();
        let mut offsets: Vec<(String, String, i32, Committed)> = Vec::new();
        for (key, value) in table {
            let Ok(parts) = serde_json::from_str::<Vec<serde_json::Value>>(&key) else {
                continue;
            };
            match parts.as_slice() {
                [kind, group] if kind == "g" => {
                    if let (Some(group), Ok(s)) = (group.as_str(), postcard::from_bytes(&value)) {
                        snapshots.insert(group.to_owned(), s);
                    }
                }
                [kind, group, topic, partition] if kind == "o" => {
                    if let (Some(group), Some(topic), Some(partition), Ok(c)) = (
                        group.as_str(),
                        topic.as_str(),
                        partition.as_i64(),
                        postcard::from_bytes::<Committed>(&value),
                    ) {
                        offsets.push((group.to_owned(), topic.to_owned(), partition as i32, c));
                    }
                }
                _ => {}
            }
        }
        let mut groups = shard.groups.lock().expect("groups lock");
        groups.clear();
        for (id, snapshot) in snapshots {
            groups.insert(
                id.clone(),
                Group::restore(&id, snapshot, now, &self.settings.timing),
            );
        }
        for (group, topic, partition, committed) in offsets {
            groups
                .entry(group.clone())
                .or_insert_with(|| Group::new(&group, now))
                .offsets
                .insert((topic, partition), committed);
        }
        tracing::info!(topic = %shard.topic, groups = groups.len(), messages = read, elapsed_ms = started.elapsed().as_millis() as u64, "group state loaded");
        Ok(())
    }

    /// Starts compacting the shard's table topic in the background.
    fn compact(&self, shard: &Shard) {
        shard.uncompacted.store(0, Ordering::Relaxed);
        let (backend, topic) = (self.backend.clone(), shard.topic.clone());
        tokio::spawn(async move {
            if let Err(e) = backend.compact(&topic).await {
                tracing::warn!(%topic, error = %e, "starting compaction of group state failed");
            }
        });
    }

    /// Queues records on the shard's table through its lease while `order` (the shard's write
    /// lock) is held, releases it, and waits until they are persisted. Compacts every
    /// `COMPACT_EVERY` writes.
    async fn write(
        &self,
        shard: &Shard,
        lease: &Arc<dyn Lease>,
        order: tokio::sync::MutexGuard<'_, ()>,
        records: Vec<(String, Option<Bytes>)>,
    ) -> Result<(), BackendError> {
        let pending = lease.submit(vec![table::entry(records)]).await;
        drop(order);
        if shard.uncompacted.fetch_add(1, Ordering::Relaxed) + 1 >= COMPACT_EVERY {
            self.compact(shard);
        }
        pending?.await.map(|_| ())
    }

    /// Writes a group's snapshot (or removes it when the group is gone), in shard order.
    async fn persist(&self, shard: &Shard, group_id: &str) {
        let Some(lease) = self.held(shard) else {
            return;
        };
        let order = shard.writes.lock().await;
        let value = {
            let groups = shard.groups.lock().expect("groups lock");
            groups.get(group_id).map(|g| encode(&g.snapshot()))
        };
        let records = vec![(group_key(group_id), value)];
        if let Err(e) = self.write(shard, &lease, order, records).await {
            // Membership is rebuilt by rejoining; committed offsets are written separately.
            tracing::warn!(group = group_id, error = %e, "persisting group membership failed");
        }
    }

    pub async fn join(self: &Arc<Self>, group_id: &str, params: JoinParams) -> JoinOutcome {
        let member_id = params.member_id.clone();
        if group_id.is_empty() {
            return JoinOutcome::failed(ResponseError::InvalidGroupId, &member_id);
        }
        let timing = &self.settings.timing;
        if params.session_timeout < timing.min_session_timeout
            || params.session_timeout > timing.max_session_timeout
        {
            return JoinOutcome::failed(ResponseError::InvalidSessionTimeout, &member_id);
        }
        let shard = self.shard_of(group_id);
        if let Err(e) = self.ready(shard).await {
            return JoinOutcome::failed(e, &member_id);
        }
        let mut fx = Effects::default();
        let reply = {
            let mut groups = shard.groups.lock().expect("groups lock");
            if !groups.contains_key(group_id) {
                if !member_id.is_empty() {
                    return JoinOutcome::failed(ResponseError::UnknownMemberId, &member_id);
                }
                groups.insert(group_id.to_owned(), Group::new(group_id, Instant::now()));
            }
            let group = groups.get_mut(group_id).expect("inserted");
            group.join(params, Instant::now(), timing, &mut fx)
        };
        if fx.snapshot {
            self.persist(shard, group_id).await;
        }
        match reply {
            Reply::Now(outcome) => outcome,
            Reply::Later(rx) => rx.await.unwrap_or_else(|_| {
                JoinOutcome::failed(ResponseError::CoordinatorNotAvailable, &member_id)
            }),
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub async fn sync(
        self: &Arc<Self>,
        group_id: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
        protocol_type: Option<&str>,
        protocol_name: Option<&str>,
        assignments: Vec<(String, Bytes)>,
    ) -> SyncOutcome {
        let shard = self.shard_of(group_id);
        if let Err(e) = self.ready(shard).await {
            return SyncOutcome::failed(e);
        }
        let mut fx = Effects::default();
        let reply = {
            let mut groups = shard.groups.lock().expect("groups lock");
            let Some(group) = groups.get_mut(group_id) else {
                return SyncOutcome::failed(ResponseError::UnknownMemberId);
            };
            group.sync(
                generation,
                member_id,
                instance_id,
                protocol_type,
                protocol_name,
                assignments,
                Instant::now(),
                &mut fx,
            )
        };
        if fx.snapshot {
            self.persist(shard, group_id).await;
        }
        match reply {
            Reply::Now(outcome) => outcome,
            Reply::Later(rx) => rx
                .await
                .unwrap_or_else(|_| SyncOutcome::failed(ResponseError::CoordinatorNotAvailable)),
        }
    }

    pub async fn heartbeat(
        self: &Arc<Self>,
        group_id: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> i16 {
        let shard = self.shard_of(group_id);
        if let Err(e) = self.ready(shard).await {
            return e.code();
        }
        let mut groups = shard.groups.lock().expect("groups lock");
        match groups.get_mut(group_id) {
            Some(group) => group.heartbeat(generation, member_id, instance_id, Instant::now()),
            None => ResponseError::UnknownMemberId.code(),
        }
    }

    /// LeaveGroup; `Err` is a group-level error.
    pub async fn leave(
        self: &Arc<Self>,
        group_id: &str,
        members: &[(String, Option<String>)],
    ) -> Result<Vec<(String, i16)>, ResponseError> {
        let shard = self.shard_of(group_id);
        self.ready(shard).await?;
        let mut fx = Effects::default();
        let results = {
            let mut groups = shard.groups.lock().expect("groups lock");
            let Some(group) = groups.get_mut(group_id) else {
                return Err(ResponseError::UnknownMemberId);
            };
            group.leave(members, Instant::now(), &self.settings.timing, &mut fx)
        };
        if fx.snapshot {
            self.persist(shard, group_id).await;
        }
        Ok(results)
    }

    /// OffsetCommit: every partition is accepted or none; `Err` applies to all of them.
    pub async fn commit(
        self: &Arc<Self>,
        group_id: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
        commits: Vec<CommitRequest>,
    ) -> Result<(), ResponseError> {
        if group_id.is_empty() {
            return Err(ResponseError::InvalidGroupId);
        }
        let shard = self.shard_of(group_id);
        let lease = self.ready(shard).await?;
        let order = shard.writes.lock().await;
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        {
            let mut groups = shard.groups.lock().expect("groups lock");
            let now = Instant::now();
            match groups.get_mut(group_id) {
                Some(group) => group.check_commit(generation, member_id, instance_id, now)?,
                // Kafka: a commit outside any generation creates the group; one claiming a
                // generation of a group that does not exist is stale.
                None if generation < 0 => {
                    groups.insert(group_id.to_owned(), Group::new(group_id, now));
                }
                None => return Err(ResponseError::IllegalGeneration),
            }
        }
        let commit_time = now_ms();
        let accepted: Vec<(String, i32, Committed)> = commits
            .into_iter()
            .map(|c| {
                (
                    c.topic,
                    c.partition,
                    Committed {
                        offset: c.offset,
                        leader_epoch: c.leader_epoch,
                        metadata: c.metadata,
                        commit_time,
                        pulsar_topic: c.pulsar_topic.to_string(),
                        seq,
                    },
                )
            })
            .collect();
        let records = accepted
            .iter()
            .map(|(t, p, c)| (offset_key(group_id, t, *p), Some(encode(c))))
            .collect();
        if let Err(e) = self.write(shard, &lease, order, records).await {
            tracing::warn!(group = group_id, error = %e, "committing offsets failed");
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        let mut groups = shard.groups.lock().expect("groups lock");
        let group = groups
            .entry(group_id.to_owned())
            .or_insert_with(|| Group::new(group_id, Instant::now()));
        for (topic, partition, committed) in accepted {
            let newer = group
                .offsets
                .get(&(topic.clone(), partition))
                .is_none_or(|old| old.seq <= committed.seq);
            if newer {
                self.mirror
                    .record(group_id, &committed.pulsar_topic, Some(committed.offset));
                group.offsets.insert((topic, partition), committed);
            }
        }
        Ok(())
    }

    /// Committed offsets of a group: of the listed partitions, or all of them for `None`.
    pub async fn fetch_offsets(
        self: &Arc<Self>,
        group_id: &str,
        wanted: Option<Vec<(String, Vec<i32>)>>,
    ) -> Result<Vec<(String, i32, Option<Committed>)>, ResponseError> {
        let shard = self.shard_of(group_id);
        self.ready(shard).await?;
        let groups = shard.groups.lock().expect("groups lock");
        let offsets = groups.get(group_id).map(|g| &g.offsets);
        Ok(match wanted {
            Some(topics) => topics
                .into_iter()
                .flat_map(|(topic, partitions)| {
                    partitions.into_iter().map(move |p| (topic.clone(), p))
                })
                .map(|(topic, p)| {
                    let found = offsets.and_then(|o| o.get(&(topic.clone(), p)).cloned());
                    (topic, p, found)
                })
                .collect(),
            None => offsets
                .into_iter()
                .flatten()
                .map(|((t, p), c)| (t.clone(), *p, Some(c.clone())))
                .collect(),
        })
    }

    pub async fn describe(
        self: &Arc<Self>,
        group_id: &str,
    ) -> Result<Option<GroupSummary>, ResponseError> {
        let shard = self.shard_of(group_id);
        self.ready(shard).await?;
        let groups = shard.groups.lock().expect("groups lock");
        Ok(groups.get(group_id).map(summarize))
    }

    /// Every group coordinated here, with its state and protocol type, and the other instances
    /// coordinating shards (whose groups the caller may ask them for). Free shards are claimed.
    pub async fn list(
        self: &Arc<Self>,
    ) -> Result<(Vec<(String, &'static str, String)>, Vec<Instance>), ResponseError> {
        let mut out = Vec::new();
        let mut others: Vec<Instance> = Vec::new();
        for shard in &self.shards {
            match self.ready(shard).await {
                Ok(_) => {}
                Err(ResponseError::NotCoordinator) => {
                    let holder = self.backend.lease_holder(&shard.topic).await;
                    if let Some(owner) = holder.ok().flatten().and_then(|h| Instance::parse(&h)) {
                        if !others.contains(&owner) {
                            others.push(owner);
                        }
                    }
                    continue;
                }
                Err(e) => return Err(e),
            }
            let groups = shard.groups.lock().expect("groups lock");
            out.extend(groups.values().map(|g| {
                (
                    g.id.clone(),
                    g.state.name(),
                    g.protocol_type.clone().unwrap_or_default(),
                )
            }));
        }
        Ok((out, others))
    }

    /// DeleteGroups for one group: only an empty group can go; its offsets and its mirrored
    /// subscriptions go with it.
    pub async fn delete_group(self: &Arc<Self>, group_id: &str) -> Result<(), ResponseError> {
        let shard = self.shard_of(group_id);
        let lease = self.ready(shard).await?;
        let order = shard.writes.lock().await;
        let keys = {
            let groups = shard.groups.lock().expect("groups lock");
            let Some(group) = groups.get(group_id) else {
                return Err(ResponseError::GroupIdNotFound);
            };
            if !group.is_empty() || group.state != GroupState::Empty {
                return Err(ResponseError::NonEmptyGroup);
            }
            let mut keys = vec![(group_key(group_id), None)];
            keys.extend(
                group
                    .offsets
                    .keys()
                    .map(|(t, p)| (offset_key(group_id, t, *p), None)),
            );
            keys
        };
        self.write(shard, &lease, order, keys)
            .await
            .map_err(|_| ResponseError::CoordinatorNotAvailable)?;
        let removed = shard.groups.lock().expect("groups lock").remove(group_id);
        for committed in removed.iter().flat_map(|g| g.offsets.values()) {
            self.mirror.record(group_id, &committed.pulsar_topic, None);
        }
        Ok(())
    }

    /// OffsetDelete: removes committed offsets of partitions the group no longer subscribes to.
    /// Returns a per-partition error code.
    pub async fn delete_offsets(
        self: &Arc<Self>,
        group_id: &str,
        partitions: Vec<(String, i32)>,
    ) -> Result<Vec<(String, i32, i16)>, ResponseError> {
        let shard = self.shard_of(group_id);
        let lease = self.ready(shard).await?;
        let order = shard.writes.lock().await;
        let (results, keys, mirrored) = {
            let groups = shard.groups.lock().expect("groups lock");
            let Some(group) = groups.get(group_id) else {
                return Err(ResponseError::GroupIdNotFound);
            };
            let subscribed = match group.state {
                GroupState::Empty => Vec::new(),
                _ => match group.subscribed_topics() {
                    Some(t) => t,
                    None => return Err(ResponseError::NonEmptyGroup),
                },
            };
            let mut results = Vec::new();
            let mut keys = Vec::new();
            let mut mirrored = Vec::new();
            for (topic, p) in partitions {
                if subscribed.contains(&topic) {
                    results.push((topic, p, ResponseError::GroupSubscribedToTopic.code()));
                    continue;
                }
                if let Some(c) = group.offsets.get(&(topic.clone(), p)) {
                    keys.push((offset_key(group_id, &topic, p), None));
                    mirrored.push((topic.clone(), p, c.pulsar_topic.clone()));
                }
                results.push((topic, p, 0));
            }
            (results, keys, mirrored)
        };
        if !keys.is_empty() {
            self.write(shard, &lease, order, keys)
                .await
                .map_err(|_| ResponseError::CoordinatorNotAvailable)?;
            let mut groups = shard.groups.lock().expect("groups lock");
            if let Some(group) = groups.get_mut(group_id) {
                for (topic, p, pulsar_topic) in mirrored {
                    group.offsets.remove(&(topic, p));
                    self.mirror.record(group_id, &pulsar_topic, None);
                }
            }
        }
        Ok(results)
    }

    /// One pass of the timer over every loaded shard.
    async fn tick(&self) {
        let now = Instant::now();
        for shard in &self.shards {
            if self.held(shard).is_none() {
                continue;
            }
            let changed: Vec<String> = {
                let mut groups = shard.groups.lock().expect("groups lock");
                groups
                    .values_mut()
                    .filter_map(|g| {
                        let mut fx = Effects::default();
                        g.tick(now, &self.settings.timing, &mut fx);
                        fx.snapshot.then(|| g.id.clone())
                    })
                    .collect()
            };
            for group in changed {
                self.persist(shard, &group).await;
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
mod tests {
    use super::{GroupCoordinator, GroupSettings, Instance, Owner};

    /// An instance that just saw another hold the lease takes the group over as soon as that
    /// holder is gone, instead of answering COORDINATOR_NOT_AVAILABLE until its claim back-off
    /// ends (librdkafka drops its coordinator connection on each such answer).
    #[tokio::test]
    async fn a_lease_freed_by_a_dead_holder_is_claimed_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let backend: gateway_core::BackendRef =
            gateway_embedded::EmbeddedBackend::open(dir.path()).unwrap();
        let instance = |node_id| GroupSettings {
            shards: 1,
            instance: Instance {
                node_id,
                ..GroupSettings::default().instance
            },
            ..GroupSettings::default()
        };
        let a = GroupCoordinator::new(instance(1), backend.clone());
        let b = GroupCoordinator::new(instance(2), backend.clone());
        assert_eq!(a.owner_of("g").await, Ok(Owner::Local));
        match b.owner_of("g").await {
            Ok(Owner::Remote(owner)) => assert_eq!(owner.node_id, 1),
            other => panic!("B should be sent to A, got {other:?}"),
        }
        drop(a);
        assert_eq!(b.owner_of("g").await, Ok(Owner::Local));
    }

    #[test]
    fn an_instance_name_carries_its_addresses_and_tls_clients_get_the_tls_one() {
        let instance = Instance {
            node_id: 7,
            host: "gw-1.example".into(),
            port: 9092,
            internal: Some("10.0.0.1:9094".into()),
            tls: Some("gw-1.example:9093".into()),
        };
        let parsed = Instance::parse(&instance.holder_name()).unwrap();
        assert_eq!(parsed, instance);
        assert_eq!(parsed.address_for(true), ("gw-1.example".into(), 9093));
        assert_eq!(parsed.address_for(false), ("gw-1.example".into(), 9092));
        // A name from an instance without TLS (or from before TLS): TLS clients get the only
        // address there is.
        let old = Instance::parse("kafka-coordinator;node=1;kafka=h:9092;internal=-").unwrap();
        assert_eq!(old.tls, None);
        assert_eq!(old.address_for(true), ("h".into(), 9092));
    }
}
