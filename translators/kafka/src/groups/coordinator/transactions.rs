//! Kafka's transaction coordinator, on the group shards: a transactional id is hashed to a shard
//! as a group id is, its state (`TxnState`) is a record of that shard's table (`["t", id]`),
//! written under the shard's lease, so the instance coordinating the shard coordinates its
//! transactions and a zombie instance cannot write. The decisions are in `crate::transactions`;
//! here they are persisted and the backend's transactions driven.
//!
//! Operations on one shard's transactions run one at a time (`Shard::txn_ops`): they are rare
//! (a few per Kafka transaction, not per record), and each reads, decides, persists and only
//! then changes memory, so two producers racing for one id (zombie fencing) see each other's
//! outcome.

use gateway_core::TransactionId;

use super::*;
use crate::frontend::backend_error;
use crate::transactions::{fenced, Phase, TxnState, MAX_TIMEOUT_MS};

/// Table key of a transactional id's state.
pub(super) fn txn_key(id: &str) -> String {
    serde_json::json!(["t", id]).to_string()
}

fn new_producer_id() -> i64 {
    rand::random::<i64>() & ((1 << 62) - 1)
}

/// A transactional id as DescribeTransactions and ListTransactions report it.
pub struct TxnSummary {
    pub transactional_id: String,
    pub state: TxnState,
}

impl GroupCoordinator {
    /// Persists a transactional id's state, then makes it the one in memory.
    async fn save_txn(
        self: &Arc<Self>,
        shard: &Shard,
        id: &str,
        mut state: TxnState,
    ) -> Result<(), ResponseError> {
        state.updated_ms = now_ms();
        let records = vec![(txn_key(id), Some(encode(&state)))];
        self.write_txn_records(shard, id, records).await?;
        shard
            .transactions
            .lock()
            .expect("transactions lock")
            .insert(id.to_owned(), state);
        Ok(())
    }

    /// Writes transaction records (a tombstone deletes one) to the shard's table under its
    /// lease; `what` names them in the log if that fails.
    async fn write_txn_records(
        self: &Arc<Self>,
        shard: &Shard,
        what: &str,
        records: Vec<(String, Option<Bytes>)>,
    ) -> Result<(), ResponseError> {
        let lease = self
            .writable(shard)
            .await
            .map_err(|e| e.code(ResponseError::CoordinatorNotAvailable))?;
        let order = self.write_order(shard).await.map_err(|e| e.code())?;
        self.write(shard, lease, order, records).await.map_err(|e| {
            e.log(what, "writing transaction state failed");
            e.code()
        })
    }

    fn txn_state(&self, shard: &Shard, id: &str) -> Option<TxnState> {
        shard
            .transactions
            .lock()
            .expect("transactions lock")
            .get(id)
            .cloned()
    }

    /// InitProducerId with a transactional id: the id's producer id and a new epoch, which
    /// fences every producer holding an older one. An open transaction of the old epoch is
    /// aborted first, and one left half-ended (by a coordinator that died) is ended.
    pub async fn init_transactional_producer(
        self: &Arc<Self>,
        id: &str,
        timeout_ms: i32,
        given: Option<(i64, i16)>,
        knows_producer_fenced: bool,
    ) -> Result<(i64, i16), ResponseError> {
        if timeout_ms <= 0 || timeout_ms > MAX_TIMEOUT_MS {
            return Err(ResponseError::InvalidTransactionTimeout);
        }
        let shard = self.shard_of(id);
        self.serving(shard).await?;
        let _one_at_a_time = shard.txn_ops.lock().await;
        let Some(mut state) = self.txn_state(shard, id) else {
            if given.is_some() {
                // KIP-360: a producer resuming with an id this coordinator never gave out.
                return Err(ResponseError::InvalidProducerIdMapping);
            }
            let state = TxnState::new(new_producer_id(), timeout_ms);
            let answer = (state.producer_id, state.epoch);
            self.save_txn(shard, id, state).await?;
            return Ok(answer);
        };
        if let Some((producer_id, epoch)) = given {
            state.check_producer(producer_id, epoch, knows_producer_fenced)?;
        }
        match state.phase {
            Phase::Ongoing | Phase::PrepareAbort => {
                self.finish(shard, id, &mut state, false).await?;
            }
            Phase::PrepareCommit => {
                self.finish(shard, id, &mut state, true).await?;
            }
            Phase::Empty | Phase::CompleteCommit | Phase::CompleteAbort => {}
        }
        state.bump_epoch(new_producer_id);
        state.timeout_ms = timeout_ms;
        let answer = (state.producer_id, state.epoch);
        self.save_txn(shard, id, state).await?;
        Ok(answer)
    }

    /// Ends the open (or half-ended) transaction of `state`: the decision is persisted first
    /// (PrepareCommit / PrepareAbort), so that whoever coordinates the shard next finishes it
    /// the same way, then the backend transaction is ended, then the outcome persisted.
    /// `Ok(false)` when a commit found its backend transaction already aborted (its backend
    /// timeout passed): the transaction is recorded as aborted.
    async fn finish(
        self: &Arc<Self>,
        shard: &Shard,
        id: &str,
        state: &mut TxnState,
        commit: bool,
    ) -> Result<bool, ResponseError> {
        let prepared = if commit {
            Phase::PrepareCommit
        } else {
            Phase::PrepareAbort
        };
        if state.phase != prepared {
            state.phase = prepared;
            self.save_txn(shard, id, state.clone()).await?;
        }
        let mut committed = commit;
        if let Some(txn) = state.backend_txn {
            match self.backend.end_transaction(txn, commit).await {
                Ok(()) => {}
                // Ended already: by an earlier attempt of this same decision (the coordinator
                // died before recording it), or aborted by the backend's timeout. A commit
                // cannot tell the two apart here; Pulsar decided, and its readers show which.
                Err(BackendError::TransactionNotOpen(_)) if !commit => {}
                Err(BackendError::TransactionNotOpen(_)) => {
                    tracing::warn!(transactional_id = id, %txn, "committing a transaction the backend no longer has open; recorded as aborted");
                    committed = false;
                }
                Err(e) => {
                    tracing::warn!(transactional_id = id, %txn, error = %e, "ending a transaction failed; the client retries");
                    return Err(backend_error(e));
                }
            }
        }
        if !state.groups.is_empty() {
            self.write_end_markers(state.producer_id, &state.groups)
                .await?;
        }
        state.complete(committed);
        self.save_txn(shard, id, state.clone()).await?;
        Ok(committed)
    }

    /// AddPartitionsToTxn: begins the transaction on its first call (a backend transaction
    /// with the producer's timeout plus a margin) and adds the partitions to it. Partitions
    /// whose topic could not be resolved fail with their own error, and then, as on Kafka, the
    /// others are not attempted.
    pub async fn add_partitions_to_txn(
        self: &Arc<Self>,
        id: &str,
        producer: (i64, i16),
        knows_producer_fenced: bool,
        partitions: Vec<(String, i32, Result<TopicName, ResponseError>)>,
    ) -> Result<Vec<(String, i32, ResponseError)>, ResponseError> {
        let shard = self.shard_of(id);
        self.serving(shard).await?;
        let _one_at_a_time = shard.txn_ops.lock().await;
        let mut state = self
            .txn_state(shard, id)
            .ok_or(ResponseError::InvalidProducerIdMapping)?;
        state.check_producer(producer.0, producer.1, knows_producer_fenced)?;
        if matches!(state.phase, Phase::PrepareCommit | Phase::PrepareAbort) {
            return Err(ResponseError::ConcurrentTransactions);
        }
        if partitions.iter().any(|(_, _, t)| t.is_err()) {
            return Ok(partitions
                .into_iter()
                .map(|(topic, p, t)| {
                    let error = t.err().unwrap_or(ResponseError::OperationNotAttempted);
                    (topic, p, error)
                })
                .collect());
        }
        let txn = self.open_backend_txn(&mut state).await?;
        for (topic, partition, pulsar) in &partitions {
            if state.partitions.contains(&(topic.clone(), *partition)) {
                continue;
            }
            let pulsar = pulsar.as_ref().expect("checked above");
            if let Err(e) = self.backend.add_to_transaction(txn, pulsar).await {
                tracing::warn!(transactional_id = id, topic, partition, error = %e, "adding a partition to a transaction failed");
                return Err(backend_error(e));
            }
            state.partitions.insert((topic.clone(), *partition));
        }
        self.save_txn(shard, id, state).await?;
        Ok(Vec::new())
    }

    /// AddOffsetsToTxn: begins the transaction if need be and adds the group's offsets to it
    /// (its shard's pending-offsets topic, `txn_offsets.rs`).
    pub async fn add_offsets_to_txn(
        self: &Arc<Self>,
        id: &str,
        producer: (i64, i16),
        knows_producer_fenced: bool,
        group: &str,
    ) -> Result<(), ResponseError> {
        let shard = self.shard_of(id);
        self.serving(shard).await?;
        let _one_at_a_time = shard.txn_ops.lock().await;
        let mut state = self
            .txn_state(shard, id)
            .ok_or(ResponseError::InvalidProducerIdMapping)?;
        state.check_producer(producer.0, producer.1, knows_producer_fenced)?;
        if matches!(state.phase, Phase::PrepareCommit | Phase::PrepareAbort) {
            return Err(ResponseError::ConcurrentTransactions);
        }
        let txn = self.open_backend_txn(&mut state).await?;
        if !state.groups.contains(group) {
            self.add_offsets_topic(txn, group).await?;
            state.groups.insert(group.to_owned());
        }
        self.save_txn(shard, id, state).await
    }

    /// The backend transaction a TxnOffsetCommit for `group` writes in: the producer's open
    /// transaction, to which the group was added. Served where the transactional id is
    /// coordinated; a group coordinated elsewhere is not reached yet (no forwarding).
    pub(super) async fn txn_for_offsets(
        self: &Arc<Self>,
        id: &str,
        producer: (i64, i16),
        group: &str,
    ) -> Result<TransactionId, ResponseError> {
        let shard = self.shard_of(id);
        self.serving(shard).await?;
        let state = self
            .txn_state(shard, id)
            .ok_or(ResponseError::InvalidProducerIdMapping)?;
        state.check_producer(producer.0, producer.1, true)?;
        match state.backend_txn {
            Some(txn) if state.phase == Phase::Ongoing && state.groups.contains(group) => Ok(txn),
            _ => Err(ResponseError::InvalidTxnState),
        }
    }

    /// The open transaction's backend transaction, begun now if none is open.
    async fn open_backend_txn(&self, state: &mut TxnState) -> Result<TransactionId, ResponseError> {
        if let (Phase::Ongoing, Some(txn)) = (state.phase, state.backend_txn) {
            return Ok(txn);
        }
        let txn = self
            .backend
            .begin_transaction(state.backend_timeout())
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "beginning a backend transaction failed");
                match e {
                    // No transaction coordinator: retriable for the client, as on Kafka while
                    // the transaction state log is not available.
                    BackendError::Unavailable(_) => ResponseError::CoordinatorNotAvailable,
                    other => backend_error(other),
                }
            })?;
        state.phase = Phase::Ongoing;
        state.backend_txn = Some(txn);
        state.started_ms = now_ms();
        state.partitions.clear();
        state.groups.clear();
        Ok(txn)
    }

    /// EndTxn: commits or aborts the open transaction. A retry of an ending that completed is
    /// answered as it was.
    pub async fn end_txn(
        self: &Arc<Self>,
        id: &str,
        producer: (i64, i16),
        knows_producer_fenced: bool,
        commit: bool,
    ) -> Result<(), ResponseError> {
        let shard = self.shard_of(id);
        self.serving(shard).await?;
        let _one_at_a_time = shard.txn_ops.lock().await;
        let mut state = self
            .txn_state(shard, id)
            .ok_or(ResponseError::InvalidProducerIdMapping)?;
        state.check_producer(producer.0, producer.1, knows_producer_fenced)?;
        match (state.phase, commit) {
            (Phase::Ongoing, _) | (Phase::PrepareCommit, true) | (Phase::PrepareAbort, false) => {
                if self.finish(shard, id, &mut state, commit).await? == commit {
                    Ok(())
                } else {
                    // The backend aborted it when its timeout passed: as Kafka after a timeout
                    // abort, the producer's epoch is over.
                    state.bump_epoch(new_producer_id);
                    self.save_txn(shard, id, state).await?;
                    Err(fenced(knows_producer_fenced))
                }
            }
            (Phase::CompleteCommit, true) | (Phase::CompleteAbort, false) => Ok(()),
            _ => Err(ResponseError::InvalidTxnState),
        }
    }

    /// The backend transaction a transactional Produce to `topic`/`partition` writes in: the
    /// producer's open transaction, to which the partition was added.
    pub async fn txn_for_produce(
        self: &Arc<Self>,
        id: &str,
        producer: (i64, i16),
        topic: &str,
        partition: i32,
    ) -> Result<TransactionId, ResponseError> {
        let shard = self.shard_of(id);
        self.serving(shard).await?;
        let state = self
            .txn_state(shard, id)
            .ok_or(ResponseError::InvalidProducerIdMapping)?;
        // Produce answers a stale epoch INVALID_PRODUCER_EPOCH in every version, as Kafka does.
        state.check_producer(producer.0, producer.1, false)?;
        match state.backend_txn {
            Some(txn)
                if state.phase == Phase::Ongoing
                    && state.partitions.contains(&(topic.to_owned(), partition)) =>
            {
                Ok(txn)
            }
            _ => Err(ResponseError::InvalidTxnState),
        }
    }

    /// DescribeTransactions: each id's state, or its error.
    pub async fn describe_transactions(
        self: &Arc<Self>,
        ids: &[String],
    ) -> Vec<(String, Result<TxnState, ResponseError>)> {
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let shard = self.shard_of(id);
            let found = match self.serving(shard).await {
                Ok(()) => self
                    .txn_state(shard, id)
                    .ok_or(ResponseError::TransactionalIdNotFound),
                Err(e) => Err(e),
            };
            out.push((id.clone(), found));
        }
        out
    }

    /// ListTransactions: every transactional id of the shards coordinated here.
    pub async fn list_transactions(self: &Arc<Self>) -> Vec<TxnSummary> {
        for shard in &self.shards {
            let _ = self.serving(shard).await;
        }
        let mut out = Vec::new();
        for shard in &self.shards {
            if matches!(self.hold(shard), Hold::Free) {
                continue;
            }
            let transactions = shard.transactions.lock().expect("transactions lock");
            out.extend(transactions.iter().map(|(id, state)| TxnSummary {
                transactional_id: id.clone(),
                state: state.clone(),
            }));
        }
        out
    }

    /// Deletes the state of transactional ids idle for `transactional_id_expiration`, as Kafka
    /// does: a producer that comes back with one later starts afresh (a new producer id).
    pub(super) async fn expire_transactional_ids(self: &Arc<Self>, shard: &Shard) {
        let expiration = self.settings.transactional_id_expiration.as_millis() as u64;
        let expired = |s: &TxnState, now: u64| {
            s.phase.is_idle() && now.saturating_sub(s.updated_ms) > expiration
        };
        let expired_ids = || -> Vec<String> {
            let now = now_ms();
            let transactions = shard.transactions.lock().expect("transactions lock");
            transactions
                .iter()
                .filter(|(_, s)| expired(s, now))
                .map(|(id, _)| id.clone())
                .collect()
        };
        if expired_ids().is_empty() || self.held(shard).is_none() {
            return;
        }
        // Never held up behind a transaction's request: the next check comes soon enough.
        let Ok(_one_at_a_time) = shard.txn_ops.try_lock() else {
            return;
        };
        // Again under the lock: a request may have used an id meanwhile.
        let ids = expired_ids();
        if ids.is_empty() {
            return;
        }
        let records = ids.iter().map(|id| (txn_key(id), None)).collect();
        if self
            .write_txn_records(shard, "expired transactional ids", records)
            .await
            .is_err()
        {
            return;
        }
        let mut transactions = shard.transactions.lock().expect("transactions lock");
        for id in &ids {
            transactions.remove(id);
        }
        tracing::info!(topic = %shard.topic, count = ids.len(), "deleted expired transactional ids");
    }

    /// From the timer: aborts open transactions whose producer's timeout passed (bumping the
    /// epoch, as Kafka does, so the late producer is fenced), and finishes half-ended ones
    /// left by a coordinator that died. Skips a shard whose transactions are busy.
    pub(super) async fn expire_transactions(self: &Arc<Self>, shard: &Shard) {
        let now = now_ms();
        let due: Vec<String> = shard
            .transactions
            .lock()
            .expect("transactions lock")
            .iter()
            .filter(|(_, s)| {
                s.timed_out(now) || matches!(s.phase, Phase::PrepareCommit | Phase::PrepareAbort)
            })
            .map(|(id, _)| id.clone())
            .collect();
        if due.is_empty() || self.held(shard).is_none() {
            return;
        }
        let Ok(_one_at_a_time) = shard.txn_ops.try_lock() else {
            return;
        };
        for id in due {
            let Some(mut state) = self.txn_state(shard, &id) else {
                continue;
            };
            let outcome = match state.phase {
                Phase::Ongoing if state.timed_out(now) => {
                    tracing::info!(
                        transactional_id = id,
                        timeout_ms = state.timeout_ms,
                        "aborting a transaction whose timeout passed"
                    );
                    match self.finish(shard, &id, &mut state, false).await {
                        Ok(_) => {
                            state.bump_epoch(new_producer_id);
                            self.save_txn(shard, &id, state).await
                        }
                        Err(e) => Err(e),
                    }
                }
                Phase::PrepareCommit => self.finish(shard, &id, &mut state, true).await.map(drop),
                Phase::PrepareAbort => self.finish(shard, &id, &mut state, false).await.map(drop),
                _ => Ok(()),
            };
            if let Err(e) = outcome {
                tracing::warn!(transactional_id = id, error = ?e, "ending a transaction from the timer failed; will retry");
            }
        }
    }
}
