//! A shard of groups: this instance's hold on it (its lease, lost and claimed again), loading
//! its table into groups, and the ordered writes that keep the table current.

use super::*;

/// How long a failed claim of a shard is trusted before trying again.
pub(super) const CLAIM_RETRY: Duration = Duration::from_millis(500);

/// Back-off between attempts to claim a lost lease again: short at first (a broker closing the
/// producer is over in a moment), at most `RECLAIM_MAX` (members wait for it to commit).
pub(super) const RECLAIM_FIRST: Duration = Duration::from_millis(200);
pub(super) const RECLAIM_MAX: Duration = Duration::from_secs(2);

/// This instance's hold on a shard.
#[derive(Clone)]
pub(super) enum Hold {
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
pub(super) enum Unready {
    /// This instance does not coordinate the shard (or cannot claim it).
    Refused(ResponseError),
    /// The lease has been lost this long and is not back yet.
    Lost(Duration),
}

impl Unready {
    /// The answer: `when_lost` while the lease is being claimed again.
    pub(super) fn code(&self, when_lost: ResponseError) -> ResponseError {
        match self {
            Unready::Refused(e) => *e,
            Unready::Lost(_) => when_lost,
        }
    }
}

pub(super) struct Shard {
    pub(super) index: usize,
    pub(super) topic: TopicName,
    /// Whether this instance coordinates the shard, and through which lease.
    pub(super) hold: Mutex<Hold>,
    /// Bumped whenever a lost lease's reclaim ends (regained or given up), for the requests
    /// waiting for it.
    pub(super) reclaimed: watch::Sender<()>,
    /// One claim (lease, then load) at a time.
    pub(super) claiming: tokio::sync::Mutex<()>,
    /// When a claim last found another holder.
    pub(super) refused_at: Mutex<Option<Instant>>,
    pub(super) groups: Mutex<HashMap<String, Group>>,
    /// The transactional ids hashed to this shard (`transactions.rs`).
    pub(super) transactions: Mutex<HashMap<String, crate::transactions::TxnState>>,
    /// Held by each operation on the shard's transactions, start to end.
    pub(super) txn_ops: tokio::sync::Mutex<()>,
    /// Reads the shard's pending-offsets topic (`txn_offsets.rs`); taken while a pass runs.
    pub(super) applier: Mutex<Option<super::txn_offsets::Applier>>,
    /// Offsets of the shard's groups pending in open transactions.
    pub(super) pending_txn: Mutex<super::txn_offsets::Pending>,
    /// Groups whose membership in memory may be newer than in the table (a write failed or was
    /// not confirmed in time); the timer writes them again while the lease is held.
    pub(super) unsaved: Mutex<HashSet<String>>,
    /// Writes handed to the table and not yet confirmed or refused, with when each started.
    pub(super) unconfirmed: Arc<Mutex<BTreeMap<u64, Instant>>>,
    /// Groups with commits written but not yet applied, and how many: their offsets are not
    /// expired meanwhile (a tombstone must not follow a commit it has not seen).
    pub(super) committing: Arc<Mutex<HashMap<String, usize>>>,
    /// The table's last entry as this instance knows it: the entry its load read up to, then
    /// each write of its own that Pulsar confirmed. Equal to the topic's last message id when
    /// the lease is regained, nobody else wrote meanwhile and the groups in memory are current.
    pub(super) tail: Arc<Mutex<Option<EntryId>>>,
    /// Bumped whenever the groups in memory are replaced (a load) or dropped: a write confirmed
    /// later is applied to them only if they are still the ones it was accepted into.
    pub(super) epoch: Arc<AtomicU64>,
    /// Held while a write is queued, so table order is acceptance order.
    pub(super) writes: Arc<tokio::sync::Mutex<()>>,
    /// Table writes since compaction was last started.
    pub(super) uncompacted: AtomicU64,
}

/// A table write under way: its outcome once Pulsar confirms or refuses it.
pub(super) type Written = tokio::task::JoinHandle<Result<(), BackendError>>;

/// A shard's table as read into groups.
pub(super) struct LoadedShard {
    pub(super) groups: HashMap<String, Group>,
    pub(super) transactions: HashMap<String, crate::transactions::TxnState>,
    /// The last entry of the pending-offsets topic applied to the groups.
    pub(super) txn_cursor: Option<EntryId>,
    /// The entry the read went up to.
    pub(super) last: Option<EntryId>,
}

/// Why a request's table write did not succeed.
#[derive(Debug, thiserror::Error)]
pub(super) enum WriteError {
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
    pub(super) fn code(&self) -> ResponseError {
        match self {
            WriteError::NotConfirmed(_) | WriteError::Stalled(_) => ResponseError::RequestTimedOut,
            WriteError::Failed(_) => ResponseError::CoordinatorNotAvailable,
        }
    }

    /// Refusals while writes are stalled come often (clients resend); the stall's first
    /// timeout was logged already.
    pub(super) fn log(&self, group: &str, what: &str) {
        match self {
            WriteError::Stalled(_) => tracing::debug!(group, error = %self, "{what}"),
            _ => tracing::warn!(group, error = %self, "{what}"),
        }
    }
}

/// Records per table entry (one Pulsar batch); a write of more (expired offsets of many groups)
/// is several entries, queued together.
pub(super) const RECORDS_PER_ENTRY: usize = 1000;

/// Table writes after which the shard's topic is compacted, so that a takeover reads about one
/// message per key instead of every commit ever made.
pub(super) const COMPACT_EVERY: u64 = 10_000;

impl GroupCoordinator {
    /// This instance's hold on the shard. A lease found lost turns the hold to `Lost` (the
    /// groups stay in memory) and starts claiming it again in the background.
    pub(super) fn hold(&self, shard: &Shard) -> Hold {
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
    pub(super) fn held(&self, shard: &Shard) -> Option<Arc<dyn Lease>> {
        match self.hold(shard) {
            Hold::Held(lease) => Some(lease),
            Hold::Free | Hold::Lost(_) => None,
        }
    }

    /// The shard's groups, when this instance still serves them (it may have given the shard
    /// up since the caller last looked): clients of a group that moved must hear
    /// NOT_COORDINATOR, not that their member is unknown.
    pub(super) fn served<'a>(
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
    pub(super) async fn serving(self: &Arc<Self>, shard: &Shard) -> Result<(), ResponseError> {
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
    pub(super) async fn writable(
        self: &Arc<Self>,
        shard: &Shard,
    ) -> Result<Arc<dyn Lease>, Unready> {
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
    pub(super) fn hear(&self, shard: &Shard, group_id: &str, member_id: &str, why: &Unready) {
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
    pub(super) async fn claim(self: &Arc<Self>, shard: &Shard) -> Result<(), ResponseError> {
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
    pub(super) async fn reclaim_once(&self, shard: &Shard) -> Result<(), BackendError> {
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
    pub(super) fn give_up(&self, shard: &Shard, holder: &str) {
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

    /// Reads the shard's table (under its lease, so that no one else writes what this misses)
    /// into groups whose sessions start now.
    pub(super) async fn read_table(&self, shard: &Shard) -> Result<LoadedShard, BackendError> {
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
        let mut consumer_groups: HashMap<String, ConsumerGroup> = HashMap::new();
        let mut offsets: Vec<(String, String, i32, Committed)> = Vec::new();
        let mut transactions = HashMap::new();
        let mut txn_cursor = None;
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
                [kind, group] if kind == "cg" => {
                    if let (Some(group), Ok(c)) = (
                        group.as_str(),
                        postcard::from_bytes::<ConsumerGroup>(&value),
                    ) {
                        consumer_groups.insert(group.to_owned(), c);
                    }
                }
                [kind] if kind == "c" => txn_cursor = postcard::from_bytes::<EntryId>(&value).ok(),
                [kind, id] if kind == "t" => {
                    if let (Some(id), Ok(state)) = (
                        id.as_str(),
                        postcard::from_bytes::<crate::transactions::TxnState>(&value),
                    ) {
                        transactions.insert(id.to_owned(), state);
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
        for (id, mut consumer) in consumer_groups {
            consumer.restart_sessions(now, &self.settings.consumer);
            groups
                .entry(id.clone())
                .or_insert_with(|| Group::new(&id, now))
                .consumer = Some(consumer);
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
            transactions,
            txn_cursor,
            last: loaded.last,
        })
    }

    /// Coordinates the shard through `lease` with the groups just read, in place of any in
    /// memory (whose waiting requests are told NOT_COORDINATOR).
    pub(super) fn install(&self, shard: &Shard, loaded: LoadedShard, lease: Arc<dyn Lease>) {
        let mut groups = shard.groups.lock().expect("groups lock");
        for group in groups.values_mut() {
            group.abandon();
        }
        *groups = loaded.groups;
        *shard.transactions.lock().expect("transactions lock") = loaded.transactions;
        let epoch = shard.epoch.fetch_add(1, Ordering::AcqRel) + 1;
        *shard.applier.lock().expect("applier lock") =
            Some(super::txn_offsets::Applier::new(epoch, loaded.txn_cursor));
        *shard.pending_txn.lock().expect("pending lock") = Default::default();
        shard.unsaved.lock().expect("unsaved lock").clear();
        // Writes still pending through a lost lease say nothing about the new one.
        shard.unconfirmed.lock().expect("unconfirmed lock").clear();
        *shard.tail.lock().expect("tail lock") = loaded.last;
        *shard.hold.lock().expect("hold lock") = Hold::Held(lease);
    }

    /// Starts compacting the shard's table topic in the background.
    pub(super) fn compact(&self, shard: &Shard) {
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
    pub(super) async fn write_order(
        &self,
        shard: &Shard,
    ) -> Result<OwnedMutexGuard<()>, WriteError> {
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
    pub(super) fn start_write(
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
                        SendReceipt::Persisted(at) => Some(at.entry_id()),
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
    pub(super) async fn written(&self, write: Written) -> Result<(), WriteError> {
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
    pub(super) async fn write(
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
    pub(super) async fn persist(&self, shard: &Shard, group_id: &str) {
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
                let (classic, consumer) = {
                    let groups = shard.groups.lock().expect("groups lock");
                    let group = groups.get(group_id);
                    (
                        group.map(|g| encode(&g.snapshot())),
                        group.and_then(|g| g.consumer.as_ref()).map(encode),
                    )
                };
                let records = vec![
                    (group_key(group_id), classic),
                    (consumer_key(group_id), consumer),
                ];
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
}

/// Claims a shard's lost lease again, with back-off, until it is regained or another instance
/// is found holding it, or the coordinator is dropped. Never inside a client's request: clients
/// are served from memory meanwhile.
pub(super) async fn reclaim(coordinator: Weak<GroupCoordinator>, index: usize) {
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
