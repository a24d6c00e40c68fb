//! Transactions (Pulsar's PIP-31) on the embedded store.
//!
//! A transactional entry is written to its topic like any other, at its place in writing order;
//! what makes it unreadable until the transaction ends is the `held` table: the first entry of
//! each open transaction on each topic, before which readers stop (Pulsar's `maxReadPosition`,
//! see `store::Visibility`). A commit just drops those rows; an abort also lists the
//! transaction's entries in `aborted`, which readers skip for good. All of it is in redb, so an
//! open transaction survives a restart and is still aborted at its deadline: at open if that
//! passed, else by the timeout thread.
//!
//! Every decision (is it open? was the topic added?) is taken inside the redb write transaction
//! that acts on it, so a send racing with the end of its transaction is either in it or refused.

use std::collections::BTreeSet;
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::Duration;

use gateway_core::backend::TransactionId;
use gateway_core::{BackendError, EntryId, Result};
use redb::{ReadableTable, WriteTransaction};

use crate::store::{
    self, storage_error, ABORTED, HELD, TRANSACTIONS, TRANSACTION_ENTRIES, TRANSACTION_TOPICS,
};
use crate::topics::Topics;

/// The coordinator id in every transaction id (Pulsar's `TxnID.mostSigBits`): one process, one
/// coordinator. The least significant bits come from a persisted counter, so ids are unique
/// across restarts.
const COORDINATOR: u64 = 0;

fn not_open(txn: TransactionId) -> BackendError {
    BackendError::TransactionNotOpen(txn.to_string())
}

/// The key of `txn` in the tables, if it is one of ours.
pub fn key(txn: TransactionId) -> Result<u64> {
    if txn.most_bits == COORDINATOR {
        Ok(txn.least_bits)
    } else {
        Err(not_open(txn))
    }
}

fn id_of(key: u64) -> TransactionId {
    TransactionId {
        most_bits: COORDINATOR,
        least_bits: key,
    }
}

/// Opens a transaction; returns it with its deadline (unix millis).
pub fn begin(topics: &Topics, timeout: Duration) -> Result<(TransactionId, u64)> {
    let deadline = crate::now_millis().saturating_add(timeout.as_millis() as u64);
    let txn = topics.db.begin_write().map_err(storage_error)?;
    let key = store::next_counter(&txn, "transaction_id")?;
    txn.open_table(TRANSACTIONS)
        .map_err(storage_error)?
        .insert(key, deadline)
        .map_err(storage_error)?;
    txn.commit().map_err(storage_error)?;
    Ok((id_of(key), deadline))
}

/// Refuses unless `key` is open and within its deadline (one past it is as good as aborted:
/// the timeout thread is about to abort it).
pub fn check_open(txn: &WriteTransaction, key: u64) -> Result<()> {
    let deadline = txn
        .open_table(TRANSACTIONS)
        .map_err(storage_error)?
        .get(key)
        .map_err(storage_error)?
        .map(|v| v.value());
    match deadline {
        Some(deadline) if deadline > crate::now_millis() => Ok(()),
        _ => Err(not_open(id_of(key))),
    }
}

/// Registers topic `topic_id` as written by `key`; harmless when repeated.
pub fn add(topics: &Topics, key: u64, topic_id: u64) -> Result<()> {
    let txn = topics.db.begin_write().map_err(storage_error)?;
    check_open(&txn, key)?;
    txn.open_table(TRANSACTION_TOPICS)
        .map_err(storage_error)?
        .insert((key, topic_id), ())
        .map_err(storage_error)?;
    txn.commit().map_err(storage_error)
}

/// Run by the writer, in its write transaction, before a transactional append: refuses a send
/// to a transaction that is not open, or to a topic not added to it (as Pulsar's broker does).
pub fn check_append(txn: &WriteTransaction, key: u64, topic_id: u64) -> Result<()> {
    check_open(txn, key)?;
    let added = txn
        .open_table(TRANSACTION_TOPICS)
        .map_err(storage_error)?
        .get((key, topic_id))
        .map_err(storage_error)?
        .is_some();
    if added {
        Ok(())
    } else {
        Err(BackendError::InvalidArgument(format!(
            "the topic was not added to transaction {} before sending in it",
            id_of(key)
        )))
    }
}

/// Run by the writer for each entry a transaction wrote: remembers it for an abort, and holds
/// readers back from the transaction's first entry on the topic.
pub fn record_append(txn: &WriteTransaction, key: u64, topic_id: u64, id: EntryId) -> Result<()> {
    txn.open_table(TRANSACTION_ENTRIES)
        .map_err(storage_error)?
        .insert((key, topic_id, id.ledger, id.entry), ())
        .map_err(storage_error)?;
    let mut held = txn.open_table(HELD).map_err(storage_error)?;
    if held.get((topic_id, key)).map_err(storage_error)?.is_none() {
        held.insert((topic_id, key), (id.ledger, id.entry))
            .map_err(storage_error)?;
    }
    Ok(())
}

/// Commits or aborts `key`. A transaction past its deadline is aborted whatever was asked, and
/// the caller told `TransactionNotOpen`, as if the timeout had come first (which it did).
pub fn end(topics: &Topics, key: u64, commit: bool) -> Result<()> {
    let txn = topics.db.begin_write().map_err(storage_error)?;
    let deadline = txn
        .open_table(TRANSACTIONS)
        .map_err(storage_error)?
        .remove(key)
        .map_err(storage_error)?
        .map(|v| v.value())
        .ok_or_else(|| not_open(id_of(key)))?;
    let expired = deadline <= crate::now_millis();
    let commit = commit && !expired;
    let mut written = Vec::new();
    {
        let mut added = txn.open_table(TRANSACTION_TOPICS).map_err(storage_error)?;
        for item in added
            .extract_from_if((key, 0)..=(key, u64::MAX), |_, _| true)
            .map_err(storage_error)?
        {
            written.push(item.map_err(storage_error)?.0.value().1);
        }
        let mut entries = txn.open_table(TRANSACTION_ENTRIES).map_err(storage_error)?;
        let mut held = txn.open_table(HELD).map_err(storage_error)?;
        let mut aborted = txn.open_table(ABORTED).map_err(storage_error)?;
        for &topic_id in &written {
            // A deleted topic's rows are already gone (`Topics::delete`): nothing to do there.
            for item in entries
                .extract_from_if(
                    (key, topic_id, 0, 0)..=(key, topic_id, u64::MAX, u64::MAX),
                    |_, _| true,
                )
                .map_err(storage_error)?
            {
                let (_, _, ledger, entry) = item.map_err(storage_error)?.0.value();
                if !commit {
                    aborted
                        .insert((topic_id, ledger, entry), ())
                        .map_err(storage_error)?;
                }
            }
            held.remove((topic_id, key)).map_err(storage_error)?;
        }
    }
    txn.commit().map_err(storage_error)?;
    // Readers and consumers waiting on these topics may read further now.
    for topic_id in written {
        topics.notify_id(topic_id);
    }
    if expired {
        Err(not_open(id_of(key)))
    } else {
        Ok(())
    }
}

/// Open transactions and their deadlines, as stored.
pub fn open_transactions(topics: &Topics) -> Result<Vec<(u64, u64)>> {
    use redb::ReadableDatabase;
    let txn = topics.db.begin_read().map_err(storage_error)?;
    let table = txn.open_table(TRANSACTIONS).map_err(storage_error)?;
    let mut out = Vec::new();
    for item in table.iter().map_err(storage_error)? {
        let (key, deadline) = item.map_err(storage_error)?;
        out.push((key.value(), deadline.value()));
    }
    Ok(out)
}

/// Aborts transactions at their deadline, on a thread of its own (the backend may be opened
/// outside an async runtime). It holds the store only weakly, so dropping the backend closes it.
pub struct Timeouts {
    shared: Arc<(Mutex<TimerState>, Condvar)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

#[derive(Default)]
struct TimerState {
    /// (deadline in unix millis, transaction); ended transactions stay until their deadline,
    /// when aborting them finds them already gone.
    deadlines: BTreeSet<(u64, u64)>,
    stopped: bool,
}

impl Timeouts {
    pub fn spawn(topics: &Arc<Topics>, deadlines: Vec<(u64, u64)>) -> Result<Timeouts> {
        let shared = Arc::new((
            Mutex::new(TimerState {
                deadlines: deadlines.into_iter().map(|(k, d)| (d, k)).collect(),
                stopped: false,
            }),
            Condvar::new(),
        ));
        let (state, topics) = (shared.clone(), Arc::downgrade(topics));
        let thread = std::thread::Builder::new()
            .name("embedded-txn-timeouts".into())
            .spawn(move || run_timeouts(&state, &topics))
            .map_err(storage_error)?;
        Ok(Timeouts {
            shared,
            thread: Some(thread),
        })
    }

    pub fn schedule(&self, key: u64, deadline: u64) {
        let (state, wake) = &*self.shared;
        state
            .lock()
            .expect("timeouts lock")
            .deadlines
            .insert((deadline, key));
        wake.notify_one();
    }
}

impl Drop for Timeouts {
    fn drop(&mut self) {
        let (state, wake) = &*self.shared;
        state.lock().expect("timeouts lock").stopped = true;
        wake.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run_timeouts(shared: &(Mutex<TimerState>, Condvar), topics: &Weak<Topics>) {
    let (state, wake) = shared;
    let mut guard = state.lock().expect("timeouts lock");
    while !guard.stopped {
        let now = crate::now_millis();
        match guard.deadlines.first().copied() {
            Some((deadline, key)) if deadline <= now => {
                guard.deadlines.remove(&(deadline, key));
                drop(guard);
                if let Some(topics) = topics.upgrade() {
                    match end(&topics, key, false) {
                        Ok(()) | Err(BackendError::TransactionNotOpen(_)) => {}
                        Err(e) => tracing::error!(error = %e, "aborting a timed-out transaction"),
                    }
                }
                guard = state.lock().expect("timeouts lock");
            }
            Some((deadline, _)) => {
                let wait = Duration::from_millis(deadline - now);
                guard = wake.wait_timeout(guard, wait).expect("timeouts lock").0;
            }
            None => guard = wake.wait(guard).expect("timeouts lock"),
        }
    }
}
