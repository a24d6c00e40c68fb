//! Offsets committed in a transaction (`sendOffsetsToTransaction`): TxnOffsetCommit writes them,
//! inside the producer's backend transaction, to the group shard's pending-offsets topic
//! (`<state topic>_txn_offsets-<shard>`), so they become readable exactly when the transaction's
//! records do, and never if it aborts. The shard's coordinator reads that topic (from the timer)
//! and applies what it reads as ordinary commits: offsets and the read position (`["c"]`) are
//! written to the shard's table in one entry, so each is applied once, across restarts.
//!
//! Kafka's coordinator reads its own log uncommitted and tracks each producer's pending offsets;
//! a backend reader sees only committed ones. So after EndTxn the transaction coordinator writes
//! an end marker (`["end", producer id]`, not in the transaction) to the pending-offsets topic of
//! each group in the transaction: read after the committed offsets (or alone, after an abort),
//! it tells the group's coordinator the producer has no offsets pending any more. Until then, an
//! OffsetFetch with `require_stable` (read_committed consumers, KIP-447) is answered
//! UNSTABLE_OFFSET_COMMIT for those partitions, and the consumer retries, as on Kafka.
//!
//! The pending-offsets topic is kept out of the shard's table on purpose: an open transaction
//! holds readers back, and a table load must never stop short of later committed group state.

use std::collections::{BTreeSet, HashSet};

use gateway_core::{EntryToSend, Message, Reader, TransactionId};

use super::*;
use crate::frontend::backend_error;

/// Entries read from a pending-offsets topic per timer pass, at most.
const APPLY_BATCH: usize = 256;

/// Table key of the shard's read position in its pending-offsets topic.
pub(super) const CURSOR_KEY: &str = "[\"c\"]";

/// Reading a shard's pending-offsets topic.
pub(super) struct Applier {
    /// The shard's groups this reader applies to (`Shard::epoch`).
    epoch: u64,
    reader: Option<Box<dyn Reader>>,
    /// The last entry applied.
    cursor: Option<EntryId>,
    /// The last entry readable when the reader was opened: reached, the groups are current.
    target: Option<EntryId>,
}

impl Applier {
    pub(super) fn new(epoch: u64, cursor: Option<EntryId>) -> Self {
        Applier {
            epoch,
            reader: None,
            cursor,
            target: None,
        }
    }
}

/// Offsets the shard's groups have pending in open transactions, per producer id.
#[derive(Default)]
pub(super) struct Pending {
    /// False until the applier has read what was readable when the shard was loaded; until then
    /// every stable fetch is answered UNSTABLE_OFFSET_COMMIT.
    pub(super) caught_up: bool,
    /// Whether the shard's pending-offsets topic is in use: it existed when first looked at
    /// (`looked`), or a transactional commit was written to it since. A shard whose groups never
    /// commit in a transaction has no such topic, and nothing reads it.
    pub(super) used: bool,
    pub(super) looked: bool,
    pub(super) by_producer: HashMap<i64, HashSet<(String, String, i32)>>,
}

/// A message of a pending-offsets topic.
fn offset_message(group: &str, topic: &str, partition: i32, committed: &Committed) -> Message {
    Message {
        key: Some(Bytes::from(
            serde_json::json!(["o", group, topic, partition]).to_string(),
        )),
        value: Some(encode(committed)),
        ..Message::default()
    }
}

fn end_message(producer_id: i64) -> Message {
    Message {
        key: Some(Bytes::from(
            serde_json::json!(["end", producer_id]).to_string(),
        )),
        value: Some(Bytes::new()),
        ..Message::default()
    }
}

impl GroupCoordinator {
    /// The pending-offsets topic of the shard coordinating `group`.
    pub(super) fn txn_offsets_topic(&self, group: &str) -> TopicName {
        let shard = self.shard_of(group);
        let base = &self.settings.state_topic;
        TopicName::new(
            &base.tenant,
            &base.namespace,
            &format!("{}_txn_offsets-{}", base.local, shard.index),
        )
    }

    /// TxnOffsetCommit: the offsets go into the producer's open transaction, to which the group
    /// was added (AddOffsetsToTxn); the member is checked as for OffsetCommit.
    #[allow(clippy::too_many_arguments)]
    pub async fn txn_offset_commit(
        self: &Arc<Self>,
        transactional_id: &str,
        producer: (i64, i16),
        group_id: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
        commits: Vec<CommitRequest>,
    ) -> Result<(), ResponseError> {
        let txn = self
            .txn_for_offsets(transactional_id, producer, group_id)
            .await?;
        let shard = self.shard_of(group_id);
        self.serving(shard).await?;
        {
            let mut groups = self.served(shard)?;
            if let Some(group) = groups.get_mut(group_id) {
                group.check_commit(generation, member_id, instance_id, Instant::now())?;
            } else if generation >= 0 {
                return Err(ResponseError::IllegalGeneration);
            }
        }
        let commit_time = now_ms();
        let messages = commits
            .iter()
            .map(|c| {
                let committed = Committed {
                    offset: c.offset,
                    leader_epoch: c.leader_epoch,
                    metadata: c.metadata.clone(),
                    commit_time,
                    pulsar_topic: c.pulsar_topic.to_string(),
                    seq: 0,
                };
                offset_message(group_id, &c.topic, c.partition, &committed)
            })
            .collect();
        {
            let mut pending = shard.pending_txn.lock().expect("pending lock");
            pending.used = true;
            let marks = pending.by_producer.entry(producer.0).or_default();
            for c in &commits {
                marks.insert((group_id.to_owned(), c.topic.clone(), c.partition));
            }
        }
        let topic = self.txn_offsets_topic(group_id);
        let entry = EntryToSend {
            messages,
            dedup: None,
            coalesce: false,
        };
        let written = match self
            .backend
            .submit_in_transaction(txn, &topic, vec![entry])
            .await
        {
            Ok(pending) => pending.await,
            Err(e) => Err(e),
        };
        written.map(drop).map_err(|e| {
            tracing::warn!(group = group_id, error = %e, "writing transactional offsets failed");
            backend_error(e)
        })
    }

    /// Writes the end markers of a transaction that ended (see the module doc), to the
    /// pending-offsets topic of each of its groups.
    pub(super) async fn write_end_markers(
        &self,
        producer_id: i64,
        groups: &BTreeSet<String>,
    ) -> Result<(), ResponseError> {
        let topics: BTreeSet<TopicName> =
            groups.iter().map(|g| self.txn_offsets_topic(g)).collect();
        for topic in topics {
            let entry = EntryToSend {
                messages: vec![end_message(producer_id)],
                dedup: None,
                coalesce: false,
            };
            self.backend.send(&topic, vec![entry]).await.map_err(|e| {
                tracing::warn!(%topic, error = %e, "writing a transaction's end marker failed");
                backend_error(e)
            })?;
        }
        Ok(())
    }

    /// Creates the pending-offsets topic of `group`'s shard if need be and adds it to `txn`.
    pub(super) async fn add_offsets_topic(
        &self,
        txn: TransactionId,
        group: &str,
    ) -> Result<(), ResponseError> {
        let topic = self.txn_offsets_topic(group);
        match self.backend.create_topic(&topic, 0).await {
            Ok(()) | Err(BackendError::TopicAlreadyExists(_)) => {}
            Err(e) => return Err(backend_error(e)),
        }
        self.backend
            .add_to_transaction(txn, &topic)
            .await
            .map_err(backend_error)
    }

    /// The partitions of `group` whose committed offsets are not stable: pending in an open
    /// transaction, or any of them while the shard's pending offsets are not yet read.
    pub fn unstable_offsets(&self, group: &str) -> Option<HashSet<(String, i32)>> {
        let shard = self.shard_of(group);
        let pending = shard.pending_txn.lock().expect("pending lock");
        if !pending.caught_up {
            return None;
        }
        Some(
            pending
                .by_producer
                .values()
                .flatten()
                .filter(|(g, _, _)| g == group)
                .map(|(_, t, p)| (t.clone(), *p))
                .collect(),
        )
    }

    /// From the timer: applies what the shard's pending-offsets topic has to read.
    pub(super) async fn apply_txn_offsets(self: &Arc<Self>, shard: &Shard) {
        let Some(lease) = self.held(shard) else {
            return;
        };
        let Some(mut applier) = shard.applier.lock().expect("applier lock").take() else {
            return;
        };
        let epoch = shard.epoch.load(Ordering::Acquire);
        if applier.epoch != epoch {
            return;
        }
        if let Err(e) = self.apply_once(shard, lease, &mut applier).await {
            tracing::warn!(topic = %shard.topic, error = %e, "applying transactional offsets failed; will retry");
            applier.reader = None;
        }
        let mut slot = shard.applier.lock().expect("applier lock");
        if slot.is_none() && shard.epoch.load(Ordering::Acquire) == applier.epoch {
            *slot = Some(applier);
        }
    }

    async fn apply_once(
        self: &Arc<Self>,
        shard: &Shard,
        lease: Arc<dyn Lease>,
        applier: &mut Applier,
    ) -> Result<(), WriteError> {
        let base = &self.settings.state_topic;
        let topic = TopicName::new(
            &base.tenant,
            &base.namespace,
            &format!("{}_txn_offsets-{}", base.local, shard.index),
        );
        let (used, looked) = {
            let pending = shard.pending_txn.lock().expect("pending lock");
            (pending.used, pending.looked)
        };
        if !used {
            let exists = !looked
                && self
                    .backend
                    .topic_info(&topic)
                    .await
                    .map_err(WriteError::Failed)?
                    .is_some();
            let mut pending = shard.pending_txn.lock().expect("pending lock");
            pending.looked = true;
            // A commit written meanwhile set `used` itself.
            pending.used |= exists;
            if !pending.used {
                pending.caught_up = true;
                return Ok(());
            }
        }
        if applier.reader.is_none() {
            match self.backend.create_topic(&topic, 0).await {
                Ok(()) | Err(BackendError::TopicAlreadyExists(_)) => {}
                Err(e) => return Err(WriteError::Failed(e)),
            }
            let start = applier.cursor.map_or(EntryId::EARLIEST, |c| EntryId {
                ledger: c.ledger,
                entry: c.entry + 1,
            });
            applier.target = self
                .backend
                .last_message_id(&topic)
                .await
                .map_err(WriteError::Failed)?
                .map(|id| id.entry_id());
            applier.reader = Some(
                self.backend
                    .open_reader(&topic, start)
                    .await
                    .map_err(WriteError::Failed)?,
            );
        }
        let reader = applier.reader.as_mut().expect("opened above");
        let entries = reader
            .read(APPLY_BATCH, 1 << 20, Duration::ZERO)
            .await
            .map_err(WriteError::Failed)?;
        let Some(last) = entries.last().map(|e| e.id) else {
            if applier.target.is_none_or(|t| applier.cursor >= Some(t)) {
                shard.pending_txn.lock().expect("pending lock").caught_up = true;
            }
            return Ok(());
        };
        let mut offsets: BTreeMap<String, Vec<(String, i32, Committed)>> = BTreeMap::new();
        let mut ended = Vec::new();
        for message in entries.iter().flat_map(|e| &e.messages) {
            let Some(parts) = message
                .key
                .as_deref()
                .and_then(|k| serde_json::from_slice::<Vec<serde_json::Value>>(k).ok())
            else {
                continue;
            };
            match parts.as_slice() {
                [kind, group, topic, partition] if kind == "o" => {
                    let committed = message
                        .value
                        .as_deref()
                        .and_then(|v| postcard::from_bytes::<Committed>(v).ok());
                    if let (Some(group), Some(topic), Some(partition), Some(mut c)) = (
                        group.as_str(),
                        topic.as_str(),
                        partition.as_i64(),
                        committed,
                    ) {
                        c.seq = self.seq.fetch_add(1, Ordering::Relaxed);
                        offsets.entry(group.to_owned()).or_default().push((
                            topic.to_owned(),
                            partition as i32,
                            c,
                        ));
                    }
                }
                [kind, producer] if kind == "end" => ended.extend(producer.as_i64()),
                _ => {}
            }
        }
        let mut records: Vec<(String, Option<Bytes>)> = offsets
            .iter()
            .flat_map(|(g, list)| {
                list.iter()
                    .map(move |(t, p, c)| (offset_key(g, t, *p), Some(encode(c))))
            })
            .collect();
        records.push((CURSOR_KEY.to_owned(), Some(encode(&last))));
        let order = self.write_order(shard).await?;
        let (coordinator, epoch) = (Arc::downgrade(self), applier.epoch);
        let write = self.start_write(shard, lease, order, records, move |outcome| {
            if outcome.is_ok() {
                if let Some(c) = coordinator.upgrade() {
                    for (group, accepted) in offsets {
                        c.apply_commits(&group, epoch, accepted);
                    }
                }
            }
        });
        self.written(write).await?;
        applier.cursor = Some(last);
        let mut pending = shard.pending_txn.lock().expect("pending lock");
        for producer in ended {
            pending.by_producer.remove(&producer);
        }
        if applier.target.is_none_or(|t| last >= t) {
            pending.caught_up = true;
        }
        Ok(())
    }
}
