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
    /// Kafka's `offsets.retention.check.interval.ms`: how often expired offsets are looked for.
    pub offsets_retention_check_interval: Duration,
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
            commit_timeout: Duration::from_secs(5),
            offsets_retention: Duration::from_secs(7 * 24 * 3600),
            offsets_retention_check_interval: Duration::from_secs(600),
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

/// How long a failed claim of a shard is trusted before trying again.
const CLAIM_RETRY: Duration = Duration::from_millis(500);

/// Back-off between attempts to claim a lost lease again: short at first (a broker closing the
/// producer is over in a moment), at most `RECLAIM_MAX` (members wait for it to commit).
const RECLAIM_FIRST: Duration = Duration::from_millis(200);
const RECLAIM_MAX: Duration = Duration::from_secs(2);

/// This instance's hold on a shard.
#[derive(Clone)]
enum Hold {
    /// Not coordinating it: no groups in memory.
    Free,
    /// Coordinating it through its lease.
    Held(Arc<dyn Lease>),
    /// Its lease was lost at that time (its connection to Pulsar died, or the broker closed the
    /// producer); its groups are served from memory while a background task claims it again.
    Lost(Instant),
}

/// Why a request that writes cannot have the shard's lease.
#[derive(Debug)]
enum Unready {
    /// This instance does not coordinate the shard (or cannot claim it).
    Refused(ResponseError),
    /// The lease has been lost this long and is not back yet.
    Lost(Duration),
}

impl Unready {
    /// The answer: `when_lost` while the lease is being claimed again.
    fn code(&self, when_lost: ResponseError) -> ResponseError {
        match self {
            Unready::Refused(e) => *e,
            Unready::Lost(_) => when_lost,
        }
    }
}

struct Shard {
    index: usize,
    topic: TopicName,
    /// Whether this instance coordinates the shard, and through which lease.
    hold: Mutex<Hold>,
    /// Bumped whenever a lost lease's reclaim ends (regained or given up), for the requests
    /// waiting for it.
    reclaimed: watch::Sender<()>,
    /// One claim (lease, then load) at a time.
    claiming: tokio::sync::Mutex<()>,
    /// When a claim last found another holder.
    refused_at: Mutex<Option<Instant>>,
    groups: Mutex<HashMap<String, Group>>,
    /// Groups whose membership in memory may be newer than in the table (a write failed or was
    /// not confirmed in time); the timer writes them again while the lease is held.
    unsaved: Mutex<HashSet<String>>,
    /// Writes handed to the table and not yet confirmed or refused, with when each started.
    unconfirmed: Arc<Mutex<BTreeMap<u64, Instant>>>,
    /// Groups with commits written but not yet applied, and how many: their offsets are not
    /// expired meanwhile (a tombstone must not follow a commit it has not seen).
    committing: Arc<Mutex<HashMap<String, usize>>>,
    /// The table's last entry as this instance knows it: the entry its load read up to, then
    /// each write of its own that Pulsar confirmed. Equal to the topic's last message id when
    /// the lease is regained, nobody else wrote meanwhile and the groups in memory are current.
    tail: Arc<Mutex<Option<EntryId>>>,
    /// Bumped whenever the groups in memory are replaced (a load) or dropped: a write confirmed
    /// later is applied to them only if they are still the ones it was accepted into.
    epoch: Arc<AtomicU64>,
    /// Held while a write is queued, so table order is acceptance order.
    writes: Arc<tokio::sync::Mutex<()>>,
    /// Table writes since compaction was last started.
    uncompacted: AtomicU64,
}

/// A table write under way: its outcome once Pulsar confirms or refuses it.
type Written = tokio::task::JoinHandle<Result<(), BackendError>>;

/// A shard's table as read into groups.
struct LoadedShard {
    groups: HashMap<String, Group>,
    /// The entry the read went up to.
    last: Option<EntryId>,
}

/// Why a request's table write did not succeed.
#[derive(Debug, thiserror::Error)]
enum WriteError {
    /// Not confirmed within the commit timeout; it may still be persisted later.
    #[error("group state not confirmed within {0:?}")]
    NotConfirmed(Duration),
    /// Not tried: an earlier write has waited this long for Pulsar.
    #[error("group state writes have waited {0:?} for Pulsar")]
    Stalled(Duration),
    #[error(transparent)]
    Failed(BackendError),
}

impl WriteError {
    /// The answer to the request: REQUEST_TIMED_OUT when the write timed out, as Kafka's classic
    /// coordinator answers a commit whose append timed out (clients retry it and keep their
    /// coordinator; librdkafka treats COORDINATOR_NOT_AVAILABLE as a dead coordinator and stops
    /// heartbeating until FindCoordinator answers); COORDINATOR_NOT_AVAILABLE when it failed.
    fn code(&self) -> ResponseError {
        match self {
            WriteError::NotConfirmed(_) | WriteError::Stalled(_) => ResponseError::RequestTimedOut,
            WriteError::Failed(_) => ResponseError::CoordinatorNotAvailable,
        }
    }

    /// Refusals while writes are stalled come often (clients resend); the stall's first
    /// timeout was logged already.
    fn log(&self, group: &str, what: &str) {
        match self {
            WriteError::Stalled(_) => tracing::debug!(group, error = %self, "{what}"),
            _ => tracing::warn!(group, error = %self, "{what}"),
        }
    }
}

/// Records per table entry (one Pulsar batch); a write of more (expired offsets of many groups)
/// is several entries, queued together.
const RECORDS_PER_ENTRY: usize = 1000;

/// Table writes after which the shard's topic is compacted, so that a takeover reads about one
/// message per key instead of every commit ever made.
const COMPACT_EVERY: u64 = 10_000;

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

    /// This instance's hold on the shard. A lease found lost turns the hold to `Lost` (the
    /// groups stay in memory) and starts claiming it again in the background.
    fn hold(&self, shard: &Shard) -> Hold {
        let mut hold = shard.hold.lock().expect("hold lock");
        match &*hold {
            Hold::Held(lease) if !lease.is_held() => {}
            other => return other.clone(),
        }
        let since = Instant::now();
        *hold = Hold::Lost(since);
        drop(hold);
        tracing::warn!(topic = %shard.topic, "lost the lease of a group coordinator shard; serving its groups from memory while claiming it again");
        tokio::spawn(reclaim(self.me.clone(), shard.index));
        Hold::Lost(since)
    }

    /// The shard's lease while this instance holds it.
    fn held(&self, shard: &Shard) -> Option<Arc<dyn Lease>> {
        match self.hold(shard) {
            Hold::Held(lease) => Some(lease),
            Hold::Free | Hold::Lost(_) => None,
        }
    }

    /// The shard's groups, when this instance still serves them (it may have given the shard
    /// up since the caller last looked): clients of a group that moved must hear
    /// NOT_COORDINATOR, not that their member is unknown.
    fn served<'a>(
        &self,
        shard: &'a Shard,
    ) -> Result<std::sync::MutexGuard<'a, HashMap<String, Group>>, ResponseError> {
        let groups = shard.groups.lock().expect("groups lock");
        match *shard.hold.lock().expect("hold lock") {
            Hold::Free => Err(ResponseError::NotCoordinator),
            Hold::Held(_) | Hold::Lost(_) => Ok(groups),
        }
    }

    /// Serves the shard's groups here, from memory while its lease is being claimed again.
    /// Claims a free shard; `NOT_COORDINATOR` when another instance holds it.
    async fn serving(self: &Arc<Self>, shard: &Shard) -> Result<(), ResponseError> {
        self.ensure_ticking();
        match self.hold(shard) {
            Hold::Held(_) | Hold::Lost(_) => Ok(()),
            Hold::Free => self.claim(shard).await,
        }
    }

    /// The shard's lease, for a request that writes. While the lease is lost, waits for it to be
    /// claimed again, until it has been lost for the commit timeout: a client's requests are
    /// answered in order, and its heartbeats must not wait behind each of its commits for as
    /// long as Pulsar cannot be reached (as `write_order` refuses writes while one is stalled).
    async fn writable(self: &Arc<Self>, shard: &Shard) -> Result<Arc<dyn Lease>, Unready> {
        self.ensure_ticking();
        let mut reclaimed = shard.reclaimed.subscribe();
        loop {
            match self.hold(shard) {
                Hold::Held(lease) => return Ok(lease),
                Hold::Free => self.claim(shard).await.map_err(Unready::Refused)?,
                Hold::Lost(since) => {
                    let until =
                        tokio::time::Instant::from_std(since + self.settings.commit_timeout);
                    if tokio::time::timeout_at(until, reclaimed.changed())
                        .await
                        .is_err()
                    {
                        return Err(Unready::Lost(since.elapsed()));
                    }
                }
            }
        }
    }

    /// A request refused because the shard's lease is lost still shows its member is alive.
    fn hear(&self, shard: &Shard, group_id: &str, member_id: &str, why: &Unready) {
        if let Unready::Lost(lost) = why {
            tracing::debug!(
                group = group_id,
                member = member_id,
                lost_ms = lost.as_millis() as u64,
                "the group's shard has no lease yet; refused a request that writes"
            );
            let now = Instant::now();
            if let Ok(mut groups) = self.served(shard) {
                if let Some(group) = groups.get_mut(group_id) {
                    group.heard(member_id, now);
                }
            }
        }
    }

    /// Claims a shard no one coordinates here: takes its lease if no one holds it, then loads
    /// its state. `NOT_COORDINATOR` when another instance holds it. Concurrent callers wait for
    /// the same claim (there is no "coordinator is loading"). Ends at once if the shard is
    /// coordinated here by then.
    async fn claim(self: &Arc<Self>, shard: &Shard) -> Result<(), ResponseError> {
        let _claim = shard.claiming.lock().await;
        if !matches!(self.hold(shard), Hold::Free) {
            return Ok(());
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
        let lease: Arc<dyn Lease> = match self.backend.try_lease(&shard.topic, &self.holder).await {
            Ok(Some(lease)) => Arc::from(lease),
            Ok(None) => {
                *shard.refused_at.lock().expect("refused lock") = Some(Instant::now());
                return Err(ResponseError::NotCoordinator);
            }
            Err(e) => return Err(unavailable(e)),
        };
        // Loaded after the lease is taken, so no other owner can write what this load misses.
        let loaded = self.read_table(shard).await.map_err(unavailable)?;
        self.install(shard, loaded, lease);
        tracing::info!(topic = %shard.topic, "coordinating a group shard");
        Ok(())
    }

    /// One attempt to claim a lost lease again; `Ok` when it is over: regained (keeping the
    /// groups in memory when nobody wrote the table since this instance's last confirmed write,
    /// else loading it again), or given up because another instance holds it.
    async fn reclaim_once(&self, shard: &Shard) -> Result<(), BackendError> {
        let _claim = shard.claiming.lock().await;
        let Hold::Lost(since) = self.hold(shard) else {
            return Ok(());
        };
        let lease: Arc<dyn Lease> = match self.backend.try_lease(&shard.topic, &self.holder).await?
        {
            Some(lease) => Arc::from(lease),
            None => {
                return match self.backend.lease_holder(&shard.topic).await? {
                    // The broker has not yet seen this instance's old connection die.
                    Some(holder) if holder == self.holder => Err(BackendError::Unavailable(
                        "the lease is still held by this instance's lost producer".into(),
                    )),
                    Some(holder) => {
                        self.give_up(shard, &holder);
                        Ok(())
                    }
                    None => Err(BackendError::Unavailable(
                        "the lease came free meanwhile".into(),
                    )),
                };
            }
        };
        let last = self
            .backend
            .last_message_id(&shard.topic)
            .await?
            .map(|id| id.entry_id());
        let known = *shard.tail.lock().expect("tail lock");
        let lost_ms = since.elapsed().as_millis() as u64;
        if last == known {
            // Nothing was written but what the groups in memory hold: carry on with them, and
            // write what could not be written meanwhile (the timer writes `unsaved`).
            shard.unconfirmed.lock().expect("unconfirmed lock").clear();
            *shard.hold.lock().expect("hold lock") = Hold::Held(lease);
            tracing::info!(topic = %shard.topic, lost_ms, "regained the lease of a group coordinator shard; nobody wrote its state meanwhile, so its groups carry on as they are in memory");
        } else {
            let loaded = self.read_table(shard).await?;
            tracing::warn!(topic = %shard.topic, lost_ms, ?known, ?last, "regained the lease of a group coordinator shard after another instance wrote its state; loaded it again");
            self.install(shard, loaded, lease);
        }
        shard.reclaimed.send_replace(());
        Ok(())
    }

    /// Another instance took the shard while its lease was lost here: its groups are dropped
    /// and their waiting requests told NOT_COORDINATOR, so the clients find the new owner.
    fn give_up(&self, shard: &Shard, holder: &str) {
        let owner = Instance::parse(holder);
        if let Some(owner) = &owner {
            self.note_peer(owner);
        }
        tracing::warn!(topic = %shard.topic, holder, "another instance took a group coordinator shard while its lease was lost here; dropping its groups");
        {
            let mut groups = shard.groups.lock().expect("groups lock");
            *shard.hold.lock().expect("hold lock") = Hold::Free;
            for group in groups.values_mut() {
                group.abandon();
            }
            groups.clear();
            shard.epoch.fetch_add(1, Ordering::AcqRel);
        }
        shard.unsaved.lock().expect("unsaved lock").clear();
        *shard.refused_at.lock().expect("refused lock") = Some(Instant::now());
        shard.reclaimed.send_replace(());
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
            match self.serving(shard).await {
                Ok(()) => return Ok(Owner::Local),
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

    /// Reads the shard's table (under its lease, so that no one else writes what this misses)
    /// into groups whose sessions start now.
    async fn read_table(&self, shard: &Shard) -> Result<LoadedShard, BackendError> {
        let started = Instant::now();
        let loaded = table::load_to_end(self.backend.as_ref(), &shard.topic).await?;
        let read = loaded.read;
        if read > 2 * loaded.table.len() + 1000 {
            self.compact(shard);
        } else {
            shard.uncompacted.store(read as u64, Ordering::Relaxed);
        }
        let now = Instant::now();
        let mut snapshots: HashMap<String, GroupSnapshot> = HashMap::new();
        let mut offsets: Vec<(String, String, i32, Committed)> = Vec::new();
        for (key, value) in loaded.table {
            let Ok(parts) = serde_json::from_str::<Vec<serde_json::Value>>(&key) else {
                continue;
            };
            match parts.as_slice() {
                [kind, group] if kind == "g" => {
                    if let (Some(group), Some(s)) = (group.as_str(), GroupSnapshot::decode(&value))
                    {
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
        let mut groups = HashMap::new();
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
        Ok(LoadedShard {
            groups,
            last: loaded.last,
        })
    }

    /// Coordinates the shard through `lease` with the groups just read, in place of any in
    /// memory (whose waiting requests are told NOT_COORDINATOR).
    fn install(&self, shard: &Shard, loaded: LoadedShard, lease: Arc<dyn Lease>) {
        let mut groups = shard.groups.lock().expect("groups lock");
        for group in groups.values_mut() {
            group.abandon();
        }
        *groups = loaded.groups;
        shard.epoch.fetch_add(1, Ordering::AcqRel);
        shard.unsaved.lock().expect("unsaved lock").clear();
        // Writes still pending through a lost lease say nothing about the new one.
        shard.unconfirmed.lock().expect("unconfirmed lock").clear();
        *shard.tail.lock().expect("tail lock") = loaded.last;
        *shard.hold.lock().expect("hold lock") = Hold::Held(lease);
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

    /// The shard's write lock, which orders its table writes; waited for at most the commit
    /// timeout (a write whose queueing is stuck holds it).
    ///
    /// While an earlier write has gone unconfirmed for longer than the commit timeout, Pulsar
    /// cannot be reached, and a new write is refused at once instead of waiting out the timeout
    /// too: otherwise each commit a client sends (and resends) during an outage would hold up
    /// everything behind it on that client's connection, heartbeats included, for the timeout.
    async fn write_order(&self, shard: &Shard) -> Result<OwnedMutexGuard<()>, WriteError> {
        let timeout = self.settings.commit_timeout;
        let oldest = shard
            .unconfirmed
            .lock()
            .expect("unconfirmed lock")
            .values()
            .next()
            .copied();
        if let Some(since) = oldest.filter(|since| since.elapsed() >= timeout) {
            return Err(WriteError::Stalled(since.elapsed()));
        }
        tokio::time::timeout(timeout, shard.writes.clone().lock_owned())
            .await
            .map_err(|_| WriteError::NotConfirmed(timeout))
    }

    /// Starts writing records to the shard's table through its lease: they are queued while
    /// `order` (the shard's write lock) is held, so table order is acceptance order. The write
    /// runs to its end even when nobody waits for it any more; `then` sees its outcome. Compacts
    /// every `COMPACT_EVERY` writes.
    fn start_write(
        &self,
        shard: &Shard,
        lease: Arc<dyn Lease>,
        order: OwnedMutexGuard<()>,
        records: Vec<(String, Option<Bytes>)>,
        then: impl FnOnce(&Result<(), BackendError>) + Send + 'static,
    ) -> Written {
        if shard.uncompacted.fetch_add(1, Ordering::Relaxed) + 1 >= COMPACT_EVERY {
            self.compact(shard);
        }
        let id = self.seq.fetch_add(1, Ordering::Relaxed);
        let unconfirmed = shard.unconfirmed.clone();
        unconfirmed
            .lock()
            .expect("unconfirmed lock")
            .insert(id, Instant::now());
        let tail = shard.tail.clone();
        let entries = records
            .chunks(RECORDS_PER_ENTRY)
            .map(|chunk| table::entry(chunk.to_vec()))
            .collect();
        tokio::spawn(async move {
            let pending = lease.submit(entries).await;
            drop(order);
            let outcome = match pending {
                Ok(pending) => pending.await.map(|receipts| {
                    let written = receipts.iter().filter_map(|r| match r {
                        SendReceipt::Persisted(entry) => Some(*entry),
                        SendReceipt::Duplicate => None,
                    });
                    let mut tail = tail.lock().expect("tail lock");
                    *tail = (*tail).max(written.max());
                }),
                Err(e) => Err(e),
            };
            unconfirmed.lock().expect("unconfirmed lock").remove(&id);
            then(&outcome);
            outcome
        })
    }

    /// Waits for a write for at most the commit timeout.
    async fn written(&self, write: Written) -> Result<(), WriteError> {
        let timeout = self.settings.commit_timeout;
        match tokio::time::timeout(timeout, write).await {
            Ok(Ok(outcome)) => outcome.map_err(WriteError::Failed),
            Ok(Err(e)) => Err(WriteError::Failed(BackendError::Unavailable(format!(
                "writing group state stopped: {e}"
            )))),
            Err(_) => Err(WriteError::NotConfirmed(timeout)),
        }
    }

    /// Writes records to the shard's table, queued under `order`, and waits for them for at
    /// most the commit timeout.
    async fn write(
        &self,
        shard: &Shard,
        lease: Arc<dyn Lease>,
        order: OwnedMutexGuard<()>,
        records: Vec<(String, Option<Bytes>)>,
    ) -> Result<(), WriteError> {
        let write = self.start_write(shard, lease, order, records, |_| {});
        self.written(write).await
    }

    /// Writes a group's snapshot (or removes it when the group is gone), in shard order. A
    /// snapshot not known to be written is written again by the timer, so that the table does
    /// not keep an older generation than the members have: whoever loads the shard next would
    /// otherwise restore members that have left, or miss those that joined.
    async fn persist(&self, shard: &Shard, group_id: &str) {
        let Some(lease) = self.held(shard) else {
            // Lost meanwhile: written once the lease is regained (or moot if it is not).
            shard
                .unsaved
                .lock()
                .expect("unsaved lock")
                .insert(group_id.to_owned());
            return;
        };
        let written = match self.write_order(shard).await {
            Ok(order) => {
                let value = {
                    let groups = shard.groups.lock().expect("groups lock");
                    groups.get(group_id).map(|g| encode(&g.snapshot()))
                };
                let records = vec![(group_key(group_id), value)];
                self.write(shard, lease, order, records).await
            }
            Err(e) => Err(e),
        };
        if let Err(e) = written {
            e.log(group_id, "persisting group membership failed; will retry");
            shard
                .unsaved
                .lock()
                .expect("unsaved lock")
                .insert(group_id.to_owned());
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
        if let Err(e) = self.writable(shard).await {
            self.hear(shard, group_id, &member_id, &e);
            return JoinOutcome::failed(e.code(MEMBERSHIP_NOT_WRITTEN), &member_id);
        }
        let mut fx = Effects::default();
        let reply = {
            let mut groups = match self.served(shard) {
                Ok(groups) => groups,
                Err(e) => return JoinOutcome::failed(e, &member_id),
            };
            if !groups.contains_key(group_id) {
                if !member_id.is_empty() {
                    return JoinOutcome::failed(ResponseError::UnknownMemberId, &member_id);
                }
                groups.insert(group_id.to_owned(), Group::new(group_id, Instant::now()));
            }
            let group = groups.get_mut(group_id).expect("inserted");
            let reply = group.join(params, Instant::now(), timing, &mut fx);
            group.note_emptied(&fx, now_ms());
            reply
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
        if let Err(e) = self.writable(shard).await {
            self.hear(shard, group_id, member_id, &e);
            return SyncOutcome::failed(e.code(MEMBERSHIP_NOT_WRITTEN));
        }
        let mut fx = Effects::default();
        let reply = {
            let mut groups = match self.served(shard) {
                Ok(groups) => groups,
                Err(e) => return SyncOutcome::failed(e),
            };
            let Some(group) = groups.get_mut(group_id) else {
                return SyncOutcome::failed(ResponseError::UnknownMemberId);
            };
            let reply = group.sync(
                generation,
                member_id,
                instance_id,
                protocol_type,
                protocol_name,
                assignments,
                Instant::now(),
                &mut fx,
            );
            group.note_emptied(&fx, now_ms());
            reply
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
        if let Err(e) = self.serving(shard).await {
            return e.code();
        }
        // Answered from memory, also while the shard's lease is being claimed again: hearing
        // a member needs no write, as with Kafka's coordinator.
        let mut groups = match self.served(shard) {
            Ok(groups) => groups,
            Err(e) => return e.code(),
        };
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
        self.writable(shard)
            .await
            .map_err(|e| e.code(MEMBERSHIP_NOT_WRITTEN))?;
        let mut fx = Effects::default();
        let results = {
            let mut groups = self.served(shard)?;
            let Some(group) = groups.get_mut(group_id) else {
                return Err(ResponseError::UnknownMemberId);
            };
            let results = group.leave(members, Instant::now(), &self.settings.timing, &mut fx);
            group.note_emptied(&fx, now_ms());
            results
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
        let lease = match self.writable(shard).await {
            Ok(lease) => lease,
            Err(e) => {
                self.hear(shard, group_id, member_id, &e);
                return Err(e.code(ResponseError::RequestTimedOut));
            }
        };
        let order = self.write_order(shard).await.map_err(|e| {
            e.log(group_id, "committing offsets failed");
            e.code()
        })?;
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let epoch = shard.epoch.load(Ordering::Acquire);
        {
            let mut groups = self.served(shard)?;
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
        // The offsets are applied once persisted, even if that is after the answer went out
        // (REQUEST_TIMED_OUT on a timeout), so that memory never lags the table.
        let (coordinator, group) = (Arc::downgrade(self), group_id.to_owned());
        let committing = shard.committing.clone();
        *committing
            .lock()
            .expect("committing lock")
            .entry(group.clone())
            .or_default() += 1;
        let write = self.start_write(shard, lease, order, records, move |outcome| {
            if outcome.is_ok() {
                if let Some(c) = coordinator.upgrade() {
                    c.apply_commits(&group, epoch, accepted);
                }
            }
            let mut committing = committing.lock().expect("committing lock");
            if let Some(n) = committing.get_mut(&group) {
                *n -= 1;
                if *n == 0 {
                    committing.remove(&group);
                }
            }
        });
        if let Err(e) = self.written(write).await {
            e.log(group_id, "committing offsets failed");
            return Err(e.code());
        }
        Ok(())
    }

    /// Persisted commits into the group's state, unless the groups in memory were replaced or
    /// dropped meanwhile (whoever loads the shard next reads them from the table). Applied also
    /// while the lease is lost: the table has them, and the groups kept in memory must not lag
    /// it if this instance regains the lease.
    fn apply_commits(&self, group_id: &str, epoch: u64, accepted: Vec<(String, i32, Committed)>) {
        let shard = self.shard_of(group_id);
        let mut groups = shard.groups.lock().expect("groups lock");
        if shard.epoch.load(Ordering::Acquire) != epoch {
            return;
        }
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
    }

    /// The Pulsar topic that the group's committed offset of a partition is mirrored to, when
    /// this instance coordinates the group and the group has committed that partition before.
    pub fn committed_topic(
        &self,
        group_id: &str,
        topic: &str,
        partition: i32,
    ) -> Option<TopicName> {
        let shard = self.shard_of(group_id);
        let groups = shard.groups.lock().expect("groups lock");
        let committed = groups
            .get(group_id)?
            .offsets
            .get(&(topic.to_owned(), partition))?;
        TopicName::parse(&committed.pulsar_topic, "public", "default")
    }

    /// Committed offsets of a group: of the listed partitions, or all of them for `None`.
    pub async fn fetch_offsets(
        self: &Arc<Self>,
        group_id: &str,
        wanted: Option<Vec<(String, Vec<i32>)>>,
    ) -> Result<Vec<(String, i32, Option<Committed>)>, ResponseError> {
        let shard = self.shard_of(group_id);
        self.serving(shard).await?;
        let groups = self.served(shard)?;
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
        self.serving(shard).await?;
        let groups = self.served(shard)?;
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
            match self.serving(shard).await {
                Ok(()) => {}
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
            let Ok(groups) = self.served(shard) else {
                continue;
            };
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
        let lease = self
            .writable(shard)
            .await
            .map_err(|e| e.code(ResponseError::RequestTimedOut))?;
        let order = self.write_order(shard).await.map_err(|e| e.code())?;
        let epoch = shard.epoch.load(Ordering::Acquire);
        let keys = {
            let groups = self.served(shard)?;
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
        // Applied once persisted, even after the answer went out (the groups in memory must
        // not lag the table: they are kept if this instance regains a lost lease).
        let (coordinator, group) = (Arc::downgrade(self), group_id.to_owned());
        let write = self.start_write(shard, lease, order, keys, move |outcome| {
            let Some(c) = coordinator.upgrade().filter(|_| outcome.is_ok()) else {
                return;
            };
            let shard = c.shard_of(&group);
            let removed = {
                let mut groups = shard.groups.lock().expect("groups lock");
                if shard.epoch.load(Ordering::Acquire) != epoch {
                    return;
                }
                groups.remove(&group)
            };
            for committed in removed.iter().flat_map(|g| g.offsets.values()) {
                c.mirror.record(&group, &committed.pulsar_topic, None);
            }
        });
        self.written(write).await.map_err(|e| e.code())
    }

    /// OffsetDelete: removes committed offsets of partitions the group no longer subscribes to.
    /// Returns a per-partition error code.
    pub async fn delete_offsets(
        self: &Arc<Self>,
        group_id: &str,
        partitions: Vec<(String, i32)>,
    ) -> Result<Vec<(String, i32, i16)>, ResponseError> {
        let shard = self.shard_of(group_id);
        let lease = self
            .writable(shard)
            .await
            .map_err(|e| e.code(ResponseError::RequestTimedOut))?;
        let order = self.write_order(shard).await.map_err(|e| e.code())?;
        let epoch = shard.epoch.load(Ordering::Acquire);
        let (results, keys, mirrored) = {
            let groups = self.served(shard)?;
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
            // Applied once persisted, as in `delete_group`.
            let (coordinator, group) = (Arc::downgrade(self), group_id.to_owned());
            let write = self.start_write(shard, lease, order, keys, move |outcome| {
                let Some(c) = coordinator.upgrade().filter(|_| outcome.is_ok()) else {
                    return;
                };
                let shard = c.shard_of(&group);
                let mut groups = shard.groups.lock().expect("groups lock");
                if shard.epoch.load(Ordering::Acquire) != epoch {
                    return;
                }
                if let Some(g) = groups.get_mut(&group) {
                    for (topic, p, pulsar_topic) in mirrored {
                        g.offsets.remove(&(topic, p));
                        c.mirror.record(&group, &pulsar_topic, None);
                    }
                }
            });
            self.written(write).await.map_err(|e| e.code())?;
        }
        Ok(results)
    }

    /// One pass of the timer over every loaded shard.
    async fn tick(&self) {
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

/// Claims a shard's lost lease again, with back-off, until it is regained or another instance
/// is found holding it, or the coordinator is dropped. Never inside a client's request: clients
/// are served from memory meanwhile.
async fn reclaim(coordinator: Weak<GroupCoordinator>, index: usize) {
    let mut backoff = RECLAIM_FIRST;
    let mut log = RetryLog::default();
    loop {
        tokio::time::sleep(backoff).await;
        let Some(c) = coordinator.upgrade() else {
            return;
        };
        let shard = &c.shards[index];
        let what = format!(
            "claiming the lost lease of group shard {} again",
            shard.topic
        );
        match c.reclaim_once(shard).await {
            Ok(()) => {
                log.succeeded(&what);
                return;
            }
            Err(e) => log.failed(&what, &e),
        }
        drop(c);
        backoff = (backoff * 2).min(RECLAIM_MAX);
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
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use bytes::Bytes;
    use gateway_core::{Backend, TopicName};
    use kafka_protocol::error::ResponseError;

    use super::{CommitRequest, GroupCoordinator, GroupSettings, Instance, Owner};
    use crate::groups::faulty::Faulty;
    use crate::groups::state::{JoinParams, Timing, NONE};

    /// Sessions short enough to outlast in a test.
    const SESSION: Duration = Duration::from_millis(800);

    fn settings(node_id: i32) -> GroupSettings {
        GroupSettings {
            shards: 1,
            timing: Timing {
                initial_rebalance_delay: Duration::ZERO,
                min_session_timeout: Duration::from_millis(100),
                ..Timing::default()
            },
            commit_timeout: Duration::from_millis(300),
            instance: Instance {
                node_id,
                ..GroupSettings::default().instance
            },
            ..GroupSettings::default()
        }
    }

    fn faulty() -> (Arc<Faulty>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let embedded = gateway_embedded::EmbeddedBackend::open(dir.path()).unwrap();
        (Faulty::new(embedded), dir)
    }

    /// A consumer's JoinGroup for group `g`.
    fn join_params(member_id: &str) -> JoinParams {
        JoinParams {
            member_id: member_id.to_owned(),
            instance_id: None,
            client_id: "client".into(),
            client_host: "/127.0.0.1".into(),
            session_timeout: SESSION,
            rebalance_timeout: Duration::from_secs(5),
            protocol_type: "consumer".into(),
            protocols: vec![("range".into(), Bytes::from_static(b"m"))],
            require_known_member_id: false,
            supports_skip_assignment: false,
        }
    }

    /// A member alone in group `g`, stable in its first generation with partition "p0".
    async fn stable_member(c: &Arc<GroupCoordinator>) -> (String, i32) {
        let joined = c.join("g", join_params("")).await;
        assert_eq!((joined.error, joined.generation), (NONE, 1));
        let assignment = vec![(joined.member_id.clone(), Bytes::from_static(b"p0"))];
        let synced = c
            .sync("g", 1, &joined.member_id, None, None, None, assignment)
            .await;
        assert_eq!(synced.error, NONE);
        (joined.member_id, joined.generation)
    }

    /// The member heartbeats every 200 ms for `how_long`; each must be answered NONE.
    async fn keep_heartbeating(
        c: &Arc<GroupCoordinator>,
        member: &str,
        generation: i32,
        how_long: Duration,
    ) {
        let until = Instant::now() + how_long;
        while Instant::now() < until {
            assert_eq!(c.heartbeat("g", generation, member, None).await, NONE);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits until `c` coordinates group `g`: a dropped coordinator's timer may still be
    /// finishing a pass, holding its lease a moment longer.
    async fn claimed(c: &Arc<GroupCoordinator>) {
        let until = Instant::now() + Duration::from_secs(3);
        while c.owner_of("g").await != Ok(Owner::Local) {
            assert!(Instant::now() < until, "the shard's lease is free again");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn commit_of(offset: i64) -> Vec<CommitRequest> {
        vec![CommitRequest {
            topic: "t".into(),
            partition: 0,
            offset,
            leader_epoch: -1,
            metadata: None,
            pulsar_topic: TopicName::new("public", "default", "t"),
        }]
    }

    async fn committed(c: &Arc<GroupCoordinator>) -> Option<i64> {
        let found = c.fetch_offsets("g", None).await.unwrap();
        found
            .first()
            .and_then(|(_, _, c)| c.as_ref().map(|c| c.offset))
    }

    /// The outage measured on Pulsar: a commit whose write Pulsar never confirmed held up the
    /// member's heartbeats behind it on its connection until its session lapsed. A commit is
    /// answered REQUEST_TIMED_OUT after the commit timeout instead, later ones at once while
    /// the write is still unconfirmed, and the member, heard all along, stays.
    #[tokio::test]
    async fn a_commit_pulsar_does_not_confirm_is_answered_in_time_and_the_member_stays() {
        let (backend, _dir) = faulty();
        let c = GroupCoordinator::new(settings(1), backend.clone());
        let (member, generation) = stable_member(&c).await;
        assert_eq!(
            c.commit("g", generation, &member, None, commit_of(1)).await,
            Ok(())
        );

        backend.stall(true);
        let first = tokio::time::timeout(
            Duration::from_secs(3),
            c.commit("g", generation, &member, None, commit_of(42)),
        )
        .await
        .expect("answered after the commit timeout, not when Pulsar answers");
        assert_eq!(first, Err(ResponseError::RequestTimedOut));
        let started = Instant::now();
        let second = c
            .commit("g", generation, &member, None, commit_of(43))
            .await;
        assert_eq!(second, Err(ResponseError::RequestTimedOut));
        assert!(
            started.elapsed() < Duration::from_millis(200),
            "refused at once while an earlier write waits for Pulsar"
        );
        keep_heartbeating(&c, &member, generation, 2 * SESSION).await;
        assert_eq!(committed(&c).await, Some(1), "not persisted yet");

        // Pulsar confirms the write after all: the offset the client was told timed out is
        // the group's now, as it is the table's.
        backend.stall(false);
        let until = Instant::now() + Duration::from_secs(3);
        while committed(&c).await != Some(42) && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(committed(&c).await, Some(42));
        assert_eq!(
            c.commit("g", generation, &member, None, commit_of(44))
                .await,
            Ok(())
        );
    }

    /// A commit handler resolves a partition the group has committed before from the group's
    /// state, without asking Pulsar for the topic's partitions.
    #[tokio::test]
    async fn a_committed_partition_names_its_pulsar_topic() {
        let (backend, _dir) = faulty();
        let c = GroupCoordinator::new(settings(1), backend);
        assert_eq!(c.committed_topic("g", "t", 0), None);
        assert_eq!(c.commit("g", -1, "", None, commit_of(5)).await, Ok(()));
        let topic = TopicName::new("public", "default", "t");
        assert_eq!(c.committed_topic("g", "t", 0), Some(topic));
        assert_eq!(c.committed_topic("g", "t", 1), None);
        assert_eq!(c.committed_topic("other", "t", 0), None);
    }

    /// Settings with a retention short enough to pass in a test, looked at every 50 ms.
    fn retaining(node_id: i32, retention: Duration) -> GroupSettings {
        GroupSettings {
            offsets_retention: retention,
            offsets_retention_check_interval: Duration::from_millis(50),
            mirror_interval: Duration::from_millis(50),
            ..settings(node_id)
        }
    }

    async fn listed(c: &Arc<GroupCoordinator>) -> Vec<String> {
        let (groups, _) = c.list().await.unwrap();
        groups.into_iter().map(|(id, ..)| id).collect()
    }

    async fn wait_for<F: std::future::Future<Output = bool>>(what: &str, check: impl Fn() -> F) {
        let until = Instant::now() + Duration::from_secs(5);
        while !check().await {
            assert!(Instant::now() < until, "{what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Offsets of consumers that only commit expire a retention after their commit: they are
    /// deleted from the table with the group's mirrored subscription, and the group, left with
    /// nothing, disappears (ListGroups, and for whoever loads the shard next).
    #[tokio::test]
    async fn expired_offsets_go_with_their_subscription_and_the_group_with_them() {
        let (backend, _dir) = faulty();
        let topic = TopicName::new("public", "default", "t");
        backend.create_topic(&topic, 0).await.unwrap();
        let c = GroupCoordinator::new(retaining(1, Duration::from_millis(600)), backend.clone());
        assert_eq!(c.commit("g", -1, "", None, commit_of(0)).await, Ok(()));
        let subscribed = || async {
            let subscriptions = backend.subscriptions(&topic).await.unwrap();
            subscriptions.iter().any(|s| s == "g")
        };
        wait_for("the commit is mirrored to subscription g", subscribed).await;
        assert_eq!(listed(&c).await, ["g"]);

        wait_for("the offset expires", || async {
            committed(&c).await.is_none()
        })
        .await;
        assert!(listed(&c).await.is_empty(), "the group is gone");
        assert!(c.describe("g").await.unwrap().is_none());
        wait_for("the subscription is deleted", || async {
            !subscribed().await
        })
        .await;

        drop(c);
        let b = GroupCoordinator::new(retaining(2, Duration::from_secs(3600)), backend.clone());
        claimed(&b).await;
        assert!(listed(&b).await.is_empty(), "deleted in the table too");
        assert_eq!(committed(&b).await, None);
    }

    /// A group with a member keeps its offsets however old they are.
    #[tokio::test]
    async fn offsets_of_a_group_with_a_member_stay() {
        let (backend, _dir) = faulty();
        let c = GroupCoordinator::new(retaining(1, Duration::from_millis(300)), backend);
        let (member, generation) = stable_member(&c).await;
        assert_eq!(
            c.commit("g", generation, &member, None, commit_of(7)).await,
            Ok(())
        );
        keep_heartbeating(&c, &member, generation, Duration::from_millis(1200)).await;
        assert_eq!(committed(&c).await, Some(7));
        // Once it leaves, the clock starts.
        let left = c.leave("g", &[(member, None)]).await.unwrap();
        assert_eq!(left[0].1, NONE);
        assert_eq!(committed(&c).await, Some(7), "not at once");
        wait_for("the offset expires", || async {
            committed(&c).await.is_none()
        })
        .await;
        assert!(listed(&c).await.is_empty());
    }

    /// A new generation whose snapshot could not be written is written again once Pulsar
    /// takes writes: whoever loads the shard next knows the member, instead of an older
    /// generation (or none) that would make it rejoin.
    #[tokio::test]
    async fn membership_that_could_not_be_written_is_written_again() {
        let (backend, _dir) = faulty();
        let a = GroupCoordinator::new(settings(1), backend.clone());
        backend.fail_writes(true);
        let (member, generation) = stable_member(&a).await;
        backend.fail_writes(false);
        tokio::time::sleep(Duration::from_millis(500)).await;
        drop(a);
        let b = GroupCoordinator::new(settings(2), backend.clone());
        claimed(&b).await;
        assert_eq!(b.heartbeat("g", generation, &member, None).await, NONE);
    }

    /// The outage measured on Pulsar: the shard's lease lost (its connection to Pulsar died)
    /// for longer than the member's session. Kafka's coordinator hears heartbeats without its
    /// log, and so does this one: the member is answered from memory all along, a commit is
    /// refused within the commit timeout, and once the lease is back the member carries on
    /// with its member id and generation, and commits again.
    #[tokio::test]
    async fn a_member_heartbeats_through_a_lease_loss_longer_than_its_session() {
        let (backend, _dir) = faulty();
        let c = GroupCoordinator::new(settings(1), backend.clone());
        let (member, generation) = stable_member(&c).await;
        assert_eq!(
            c.commit("g", generation, &member, None, commit_of(1)).await,
            Ok(())
        );

        backend.cut_off(true);
        backend.lose_leases();
        keep_heartbeating(&c, &member, generation, 2 * SESSION).await;
        let started = Instant::now();
        assert_eq!(
            c.commit("g", generation, &member, None, commit_of(2)).await,
            Err(ResponseError::RequestTimedOut)
        );
        assert!(
            started.elapsed() <= settings(1).commit_timeout + Duration::from_millis(200),
            "refused within the commit timeout, took {:?}",
            started.elapsed()
        );
        keep_heartbeating(&c, &member, generation, SESSION).await;
        assert_eq!(committed(&c).await, Some(1), "served from memory");
        let described = c.describe("g").await.unwrap().unwrap();
        assert_eq!((described.state, described.members.len()), ("Stable", 1));

        backend.cut_off(false);
        let until = Instant::now() + Duration::from_secs(5);
        while c.commit("g", generation, &member, None, commit_of(3)).await != Ok(()) {
            assert!(Instant::now() < until, "the lease is never regained");
            assert_eq!(c.heartbeat("g", generation, &member, None).await, NONE);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        keep_heartbeating(&c, &member, generation, SESSION).await;
        assert_eq!(committed(&c).await, Some(3));
        let described = c.describe("g").await.unwrap().unwrap();
        assert_eq!(described.members[0].member_id, member);
        assert_eq!(described.members[0].assignment, Bytes::from_static(b"p0"));
    }

    /// Sessions still expire while the lease is lost, from when each member was last heard:
    /// a silent member is expelled for its own missed session. Regained with the table as this
    /// instance left it, the shard keeps its memory (the group emptied, not the member the
    /// table still has) and writes what it could not write meanwhile.
    #[tokio::test]
    async fn a_silent_member_is_expelled_while_the_lease_is_lost_and_that_is_written_after() {
        let (backend, _dir) = faulty();
        let c = GroupCoordinator::new(settings(1), backend.clone());
        let (member, generation) = stable_member(&c).await;
        backend.cut_off(true);
        backend.lose_leases();
        assert_eq!(c.heartbeat("g", generation, &member, None).await, NONE);
        tokio::time::sleep(SESSION + Duration::from_millis(300)).await;
        assert_eq!(
            c.heartbeat("g", generation, &member, None).await,
            ResponseError::UnknownMemberId.code()
        );

        backend.cut_off(false);
        let until = Instant::now() + Duration::from_secs(5);
        while c.owner_of("g").await != Ok(Owner::Local) || c.held(c.shard_of("g")).is_none() {
            assert!(Instant::now() < until, "the lease is never regained");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let described = c.describe("g").await.unwrap().unwrap();
        assert_eq!(
            (described.state, described.members.len()),
            ("Empty", 0),
            "kept in memory, not loaded again from the table"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        drop(c);
        let b = GroupCoordinator::new(settings(2), backend.clone());
        claimed(&b).await;
        let described = b.describe("g").await.unwrap().unwrap();
        assert_eq!(
            (described.state, described.members.len()),
            ("Empty", 0),
            "the expulsion was written once the lease was back"
        );
    }

    /// A member waiting for a rebalance cannot rejoin while the lease is lost (a join must be
    /// written): the rebalance's time stands still meanwhile, so it is not expelled for a
    /// JoinGroup the coordinator refused, however long the loss. It rejoins once the lease is
    /// back, and the rebalance completes with both members.
    #[tokio::test]
    async fn a_member_that_cannot_rejoin_while_the_lease_is_lost_is_not_expelled_for_it() {
        let (backend, _dir) = faulty();
        let c = GroupCoordinator::new(settings(1), backend.clone());
        let first = |member_id: &str| JoinParams {
            rebalance_timeout: Duration::from_millis(600),
            ..join_params(member_id)
        };
        let joined = c.join("g", first("")).await;
        let m1 = joined.member_id.clone();
        let assignment = vec![(m1.clone(), Bytes::from_static(b"p0"))];
        let synced = c.sync("g", 1, &m1, None, None, None, assignment).await;
        assert_eq!(synced.error, NONE);
        // A second member arrives: the group prepares a rebalance that m1 must rejoin.
        let c2 = c.clone();
        let second = tokio::spawn(async move { c2.join("g", first("")).await });
        let rebalancing = ResponseError::RebalanceInProgress.code();
        let until = Instant::now() + Duration::from_secs(3);
        while c.heartbeat("g", 1, &m1, None).await != rebalancing {
            assert!(Instant::now() < until, "the rebalance never starts");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        backend.cut_off(true);
        backend.lose_leases();
        let until = Instant::now() + 3 * SESSION;
        while Instant::now() < until {
            assert_eq!(c.heartbeat("g", 1, &m1, None).await, rebalancing);
            let rejoined = c.join("g", first(&m1)).await;
            assert_eq!(
                rejoined.error,
                ResponseError::CoordinatorNotAvailable.code(),
                "the join cannot be written"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }

        backend.cut_off(false);
        let until = Instant::now() + Duration::from_secs(5);
        let rejoined = loop {
            let rejoined = c.join("g", first(&m1)).await;
            if rejoined.error == NONE {
                break rejoined;
            }
            assert!(
                Instant::now() < until,
                "m1 cannot rejoin: {}",
                rejoined.error
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let other = second.await.unwrap();
        assert_eq!((rejoined.generation, other.generation), (2, 2));
        assert_eq!((rejoined.error, other.error), (NONE, NONE));
        assert_eq!(rejoined.member_id, m1);
    }

    /// Two instances over one backend, each with a connection of its own that can be cut.
    fn two_instances() -> (
        Arc<Faulty>,
        Arc<Faulty>,
        gateway_core::BackendRef,
        tempfile::TempDir,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let embedded: gateway_core::BackendRef =
            gateway_embedded::EmbeddedBackend::open(dir.path()).unwrap();
        let (a, b) = (Faulty::new(embedded.clone()), Faulty::new(embedded.clone()));
        (a, b, embedded, dir)
    }

    /// Waits until nobody holds the shard's lease.
    async fn lease_free(backend: &gateway_core::BackendRef) {
        let topic = TopicName::new("public", "default", "__gateway_kafka_groups-0");
        wait_for("the lease comes free", || async {
            backend.lease_holder(&topic).await.unwrap().is_none()
        })
        .await;
    }

    /// An instance cut off from Pulsar keeps answering its members from memory; another
    /// instance takes the shard over meanwhile and writes to its table, then goes. When the
    /// first regains the lease, the table is not as it left it: it loads it again (and so has
    /// the other instance's commit) instead of carrying on with what it had in memory.
    #[tokio::test]
    async fn a_regained_shard_is_loaded_again_when_another_instance_wrote_meanwhile() {
        let (fa, fb, backend, _dir) = two_instances();
        let a = GroupCoordinator::new(settings(1), fa.clone());
        let (member, generation) = stable_member(&a).await;
        assert_eq!(
            a.commit("g", generation, &member, None, commit_of(1)).await,
            Ok(())
        );
        fa.cut_off(true);
        fa.lose_leases();
        assert_eq!(a.heartbeat("g", generation, &member, None).await, NONE);

        let b = GroupCoordinator::new(settings(2), fb.clone());
        claimed(&b).await;
        assert_eq!(
            b.commit("g", generation, &member, None, commit_of(7)).await,
            Ok(())
        );
        assert_eq!(a.heartbeat("g", generation, &member, None).await, NONE);
        assert_eq!(committed(&a).await, Some(1), "A answers from memory");
        drop(b);
        lease_free(&backend).await;

        fa.cut_off(false);
        wait_for("A loads the table again", || async {
            committed(&a).await == Some(7)
        })
        .await;
        assert_eq!(a.owner_of("g").await, Ok(Owner::Local));
        assert_eq!(a.heartbeat("g", generation, &member, None).await, NONE);
        assert_eq!(
            a.commit("g", generation, &member, None, commit_of(8)).await,
            Ok(())
        );
    }

    /// An instance cut off from Pulsar keeps answering heartbeats until it learns that another
    /// instance took the shard (as a partitioned Kafka coordinator does until it learns it lost
    /// leadership): then it drops the groups and answers NOT_COORDINATOR, so that the clients
    /// find the new coordinator.
    #[tokio::test]
    async fn a_refused_reclaim_answers_not_coordinator() {
        let (fa, fb, _backend, _dir) = two_instances();
        let a = GroupCoordinator::new(settings(1), fa.clone());
        let (member, generation) = stable_member(&a).await;
        fa.cut_off(true);
        fa.lose_leases();
        let b = GroupCoordinator::new(settings(2), fb.clone());
        claimed(&b).await;
        keep_heartbeating(&a, &member, generation, SESSION).await;

        fa.cut_off(false);
        wait_for("A hears that B coordinates the group", || async {
            a.heartbeat("g", generation, &member, None).await
                == ResponseError::NotCoordinator.code()
        })
        .await;
        match a.owner_of("g").await {
            Ok(Owner::Remote(owner)) => assert_eq!(owner.node_id, 2),
            other => panic!("A should send clients to B, got {other:?}"),
        }
        assert_eq!(
            a.commit("g", generation, &member, None, commit_of(5)).await,
            Err(ResponseError::NotCoordinator)
        );
        // The trade-off: B could not hear the member while it talked to A, so its session
        // there lapsed and it rejoins at B. Its commits meanwhile failed: nothing is lost.
        assert_eq!(
            b.heartbeat("g", generation, &member, None).await,
            ResponseError::UnknownMemberId.code()
        );
    }

    /// A member keeps its generation when the lease moves to another instance after its holder
    /// is gone.
    #[tokio::test]
    async fn a_member_keeps_its_generation_when_another_instance_takes_the_shard_over() {
        let (backend, _dir) = faulty();
        let a = GroupCoordinator::new(settings(1), backend.clone());
        let (member, generation) = stable_member(&a).await;
        drop(a);
        tokio::time::sleep(2 * SESSION).await;
        let b = GroupCoordinator::new(settings(2), backend.clone());
        claimed(&b).await;
        keep_heartbeating(&b, &member, generation, 2 * SESSION).await;
        let described = b.describe("g").await.unwrap().unwrap();
        assert_eq!((described.state, described.members.len()), ("Stable", 1));
    }

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
