//! The single writer thread: group commit of entry appends.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use gateway_core::backend::SendReceipt;
use gateway_core::{BackendError, EntryId, EntryToSend, PendingSend, Result};
use redb::ReadableTable;
use tokio::sync::{mpsc, oneshot};

use crate::store::{
    self, storage_error, DEDUP, ENTRIES, MAX_ENTRIES_PER_LEDGER, PUBLISH_TIMES, SEQUENCES,
};
use crate::topics::{TopicState, Topics};
use crate::transactions;

/// Appends waiting for the writer; bounded so a slow disk pushes back on producers.
const QUEUE_DEPTH: usize = 1024;
/// Jobs committed together at most.
const GROUP_COMMIT_MAX: usize = 256;

struct Job {
    topic: Arc<TopicState>,
    entries: Vec<EntryToSend>,
    /// The transaction the entries belong to (its key in the tables), if any.
    transaction: Option<u64>,
    reply: oneshot::Sender<Result<Vec<SendReceipt>>>,
}

pub struct WriterHandle {
    queue: Option<mpsc::Sender<Job>>,
    thread: Option<std::thread::JoinHandle<()>>,
    running: Arc<AtomicBool>,
}

impl Drop for WriterHandle {
    /// Lets queued writes finish and waits for the thread, so the store is closed (and its file
    /// lock released) when the backend is dropped.
    fn drop(&mut self) {
        self.queue.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl WriterHandle {
    /// Queues the entries (jobs are written in queue order) and returns their pending receipts.
    /// With a `transaction`, they are written in it (see `transactions.rs`).
    pub async fn submit(
        &self,
        topic: Arc<TopicState>,
        entries: Vec<EntryToSend>,
        transaction: Option<u64>,
    ) -> Result<PendingSend> {
        let (reply, receipt) = oneshot::channel();
        self.queue
            .as_ref()
            .ok_or(BackendError::Closed)?
            .send(Job {
                topic,
                entries,
                transaction,
                reply,
            })
            .await
            .map_err(|_| BackendError::Closed)?;
        Ok(Box::pin(async move {
            receipt.await.map_err(|_| BackendError::Closed)?
        }))
    }

    pub fn is_running(&self) -> bool {
        self.running.load(Ordering::Relaxed)
    }
}

pub fn spawn(topics: Arc<Topics>) -> Result<WriterHandle> {
    let (queue, mut jobs) = mpsc::channel::<Job>(QUEUE_DEPTH);
    let running = Arc::new(AtomicBool::new(true));
    let flag = running.clone();
    let thread = std::thread::Builder::new()
        .name("embedded-writer".into())
        .spawn(move || {
            while let Some(first) = jobs.blocking_recv() {
                let mut batch = vec![first];
                while batch.len() < GROUP_COMMIT_MAX {
                    match jobs.try_recv() {
                        Ok(job) => batch.push(job),
                        Err(_) => break,
                    }
                }
                commit_batch(&topics, batch);
            }
            flag.store(false, Ordering::Relaxed);
        })
        .map_err(storage_error)?;
    Ok(WriterHandle {
        queue: Some(queue),
        thread: Some(thread),
        running,
    })
}

/// Writes every job of the batch in one transaction. On failure every job gets the error and the
/// topics involved start a new ledger, so that no entry id is ever handed out twice. A job
/// refused before writing anything (a send in a transaction that is not open) fails alone.
fn commit_batch(topics: &Topics, batch: Vec<Job>) {
    type Outcome = Result<(Vec<SendReceipt>, PendingUpdate)>;
    let result = (|| -> Result<Vec<Outcome>> {
        let txn = topics.db.begin_write().map_err(storage_error)?;
        let mut outcomes = Vec::with_capacity(batch.len());
        for job in &batch {
            if let Some(key) = job.transaction {
                if let Err(refused) = transactions::check_append(&txn, key, job.topic.id) {
                    outcomes.push(Err(refused));
                    continue;
                }
            }
            outcomes.push(Ok(append(&txn, &job.topic, &job.entries, job.transaction)?));
        }
        txn.commit().map_err(storage_error)?;
        Ok(outcomes)
    })();
    match result {
        Ok(outcomes) => {
            for (job, outcome) in batch.into_iter().zip(outcomes) {
                let reply = outcome.map(|(receipts, update)| {
                    update.apply(&job.topic);
                    job.topic.notify();
                    receipts
                });
                let _ = job.reply.send(reply);
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "embedded backend commit failed");
            for job in batch {
                job.topic.runtime.lock().expect("topic lock").ledger = None;
                let _ = job.reply.send(Err(BackendError::Storage(e.to_string())));
            }
        }
    }
}

/// The in-memory changes a committed append makes visible.
struct PendingUpdate {
    last_publish_time: u64,
}

impl PendingUpdate {
    fn apply(self, topic: &TopicState) {
        let mut rt = topic.runtime.lock().expect("topic lock");
        rt.last_publish_time = rt.last_publish_time.max(self.last_publish_time);
    }
}

fn append(
    txn: &redb::WriteTransaction,
    topic: &TopicState,
    entries: &[EntryToSend],
    transaction: Option<u64>,
) -> Result<(Vec<SendReceipt>, PendingUpdate)> {
    let mut rt = topic.runtime.lock().expect("topic lock");
    let mut entries_table = txn.open_table(ENTRIES).map_err(storage_error)?;
    let mut times = txn.open_table(PUBLISH_TIMES).map_err(storage_error)?;
    let mut dedup = txn.open_table(DEDUP).map_err(storage_error)?;
    let mut sequences = txn.open_table(SEQUENCES).map_err(storage_error)?;
    // Roll the ledger now if this call would not fit, so its entries stay consecutive.
    let needed = entries.len() as u64;
    if rt.ledger.is_none() || rt.next_entry + needed > MAX_ENTRIES_PER_LEDGER {
        rt.ledger = Some(store::next_counter(txn, "ledger_id")?);
        rt.next_entry = 0;
    }
    let ledger = rt.ledger.expect("set above");
    // Publish times never go backwards within a topic, so seeking by time is well defined.
    let publish_time = crate::now_millis().max(rt.last_publish_time);
    let mut receipts = Vec::with_capacity(entries.len());
    for entry in entries {
        if entry.messages.is_empty() {
            return Err(BackendError::InvalidArgument(
                "an entry needs at least one message".into(),
            ));
        }
        if let Some((producer, sequence)) = &entry.dedup {
            let previous = dedup
                .get((topic.id, producer.as_str()))
                .map_err(storage_error)?
                .map(|v| v.value());
            if previous.is_some_and(|p| *sequence <= p) {
                receipts.push(SendReceipt::Duplicate);
                continue;
            }
            dedup
                .insert((topic.id, producer.as_str()), *sequence)
                .map_err(storage_error)?;
        }
        let id = EntryId {
            ledger,
            entry: rt.next_entry,
        };
        let value = store::encode_entry(publish_time, &entry.messages)?;
        entries_table
            .insert((topic.id, id.ledger, id.entry), value.as_slice())
            .map_err(storage_error)?;
        times
            .insert((topic.id, publish_time, id.ledger, id.entry), ())
            .map_err(storage_error)?;
        if let Some((producer, sequence)) = &entry.dedup {
            sequences
                .insert(
                    (topic.id, id.ledger, id.entry),
                    (producer.as_str(), *sequence),
                )
                .map_err(storage_error)?;
        }
        if let Some(key) = transaction {
            transactions::record_append(txn, key, topic.id, id)?;
        }
        rt.next_entry += 1;
        receipts.push(SendReceipt::Persisted(id.message(0)));
    }
    Ok((
        receipts,
        PendingUpdate {
            last_publish_time: publish_time,
        },
    ))
}
