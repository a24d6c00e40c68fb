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
fn open_transactions(topics: &Topics) -> Result<Vec<(u64, u64)>> {
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

/// At open, for the transactions a previous run left open: aborts those past their deadline
/// now, before any reader comes, and returns the others (with their deadlines) to be aborted
/// when it comes.
pub fn recover(topics: &Topics) -> Result<Vec<(u64, u64)>> {
    let mut open = Vec::new();
    for (key, deadline) in open_transactions(topics)? {
        if deadline > crate::now_millis() {
            open.push((key, deadline));
            continue;
        }
        match end(topics, key, false) {
            Ok(()) | Err(BackendError::TransactionNotOpen(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(open)
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use gateway_core::backend::prelude::*;
    use gateway_core::backend::{
        InitialPosition, SendReceipt, SubscribeOptions, SubscriptionType, TransactionId,
    };
    use gateway_core::{
        BackendError, Consumer, EntryId, EntryToSend, Message, Reader, ReceivedMessage,
        StoredEntry, TopicName,
    };

    use crate::EmbeddedBackend;

    const LONG: Duration = Duration::from_secs(300);

    fn entry(value: &str, dedup: Option<(&str, u64)>) -> EntryToSend {
        EntryToSend {
            messages: vec![Message {
                key: Some(bytes::Bytes::from(format!("key-{value}"))),
                value: Some(bytes::Bytes::from(value.to_owned())),
                ..Default::default()
            }],
            dedup: dedup.map(|(p, s)| (p.to_owned(), s)),
            coalesce: false,
        }
    }

    fn values(entries: &[StoredEntry]) -> Vec<String> {
        entries
            .iter()
            .flat_map(|e| &e.messages)
            .map(|m| String::from_utf8_lossy(m.value.as_deref().unwrap_or_default()).into_owned())
            .collect()
    }

    fn received(messages: &[ReceivedMessage]) -> Vec<String> {
        messages
            .iter()
            .map(|m| String::from_utf8_lossy(m.message.value.as_deref().unwrap_or_default()).into())
            .collect()
    }

    async fn topic(b: &EmbeddedBackend, name: &str) -> TopicName {
        let t = TopicName::new("public", "default", name);
        b.create_topic(&t, 0).await.unwrap();
        t
    }

    async fn send(b: &EmbeddedBackend, t: &TopicName, value: &str) -> EntryId {
        match b.send(t, vec![entry(value, None)]).await.unwrap()[..] {
            [SendReceipt::Persisted(id)] => id.entry_id(),
            ref other => panic!("{other:?}"),
        }
    }

    async fn send_in(
        b: &EmbeddedBackend,
        txn: TransactionId,
        t: &TopicName,
        e: EntryToSend,
    ) -> gateway_core::Result<Vec<SendReceipt>> {
        b.submit_in_transaction(txn, t, vec![e]).await?.await
    }

    /// Everything readable now, from the start.
    async fn read_all(b: &EmbeddedBackend, t: &TopicName) -> Vec<String> {
        let mut reader = b.open_reader(t, EntryId::EARLIEST).await.unwrap();
        values(&reader.read(100, usize::MAX, Duration::ZERO).await.unwrap())
    }

    /// At open, a transaction past its deadline is aborted at once (not left to the timeout
    /// thread), with what it wrote; one within it is kept, and handed to the timeout thread.
    #[test]
    fn recover_aborts_what_is_past_its_deadline() {
        use redb::{ReadableDatabase, ReadableTableMetadata};

        let dir = tempfile::tempdir().unwrap();
        let topics =
            crate::topics::Topics::new(Arc::new(crate::store::open_database(dir.path()).unwrap()));
        let (expired, _) = super::begin(&topics, Duration::ZERO).unwrap();
        let (kept, deadline) = super::begin(&topics, LONG).unwrap();
        let first = EntryId {
            ledger: 1,
            entry: 0,
        };
        super::add(&topics, kept.least_bits, 7).unwrap();
        // What a send before the deadline left (`add` now refuses the expired transaction).
        let write = topics.db.begin_write().unwrap();
        write
            .open_table(super::TRANSACTION_TOPICS)
            .unwrap()
            .insert((expired.least_bits, 7), ())
            .unwrap();
        super::record_append(&write, expired.least_bits, 7, first).unwrap();
        write.commit().unwrap();

        assert_eq!(
            super::recover(&topics).unwrap(),
            [(kept.least_bits, deadline)]
        );
        let read = topics.db.begin_read().unwrap();
        let aborted = read.open_table(crate::store::ABORTED).unwrap();
        assert!(aborted.get((7, 1, 0)).unwrap().is_some());
        assert!(read
            .open_table(crate::store::HELD)
            .unwrap()
            .is_empty()
            .unwrap());
        assert_eq!(
            super::open_transactions(&topics).unwrap(),
            [(kept.least_bits, deadline)]
        );
    }

    /// Drops the backend (it must be the last handle), closing the store.
    async fn close(b: Arc<EmbeddedBackend>) {
        assert_eq!(Arc::strong_count(&b), 1);
        tokio::task::spawn_blocking(move || drop(b)).await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn restart_aborts_an_already_expired_transaction() {
        let dir = tempfile::tempdir().unwrap();
        let b = EmbeddedBackend::open(dir.path()).unwrap();
        let t = topic(&b, "expired").await;
        let txn = b
            .begin_transaction(Duration::from_millis(300))
            .await
            .unwrap();
        b.add_to_transaction(txn, &t).await.unwrap();
        send_in(&b, txn, &t, entry("pending", None)).await.unwrap();
        send(&b, &t, "later").await;
        assert!(read_all(&b, &t).await.is_empty());
        close(b).await;
        // The deadline passes while the backend is down.
        tokio::time::sleep(Duration::from_millis(500)).await;

        let b = EmbeddedBackend::open(dir.path()).unwrap();
        assert_eq!(
            read_all(&b, &t).await,
            ["later"],
            "aborted at open, before any reader comes"
        );
        assert!(matches!(
            b.end_transaction(txn, true).await,
            Err(BackendError::TransactionNotOpen(_))
        ));
        let next = b.begin_transaction(LONG).await.unwrap();
        assert_ne!(next, txn, "transaction ids are unique across restarts");
        b.end_transaction(next, false).await.unwrap();
        close(b).await;

        let b = EmbeddedBackend::open(dir.path()).unwrap();
        assert_eq!(read_all(&b, &t).await, ["later"], "aborted for good");
        close(b).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn timeout_wakes_a_waiting_reader() {
        let dir = tempfile::tempdir().unwrap();
        let b = EmbeddedBackend::open(dir.path()).unwrap();
        let t = topic(&b, "wake").await;
        let txn = b
            .begin_transaction(Duration::from_millis(500))
            .await
            .unwrap();
        b.add_to_transaction(txn, &t).await.unwrap();
        send_in(&b, txn, &t, entry("pending", None)).await.unwrap();
        send(&b, &t, "later").await;
        let mut reader = b.open_reader(&t, EntryId::EARLIEST).await.unwrap();
        let started = std::time::Instant::now();
        let got = reader
            .read(10, usize::MAX, Duration::from_secs(20))
            .await
            .unwrap();
        assert_eq!(values(&got), ["later"]);
        assert!(started.elapsed() < Duration::from_secs(10));
        assert!(matches!(
            b.end_transaction(txn, false).await,
            Err(BackendError::TransactionNotOpen(_))
        ));
        drop(reader);
        close(b).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn consumer_redelivery_around_aborted_entries() {
        let dir = tempfile::tempdir().unwrap();
        let b = EmbeddedBackend::open(dir.path()).unwrap();
        let t = topic(&b, "redelivery").await;
        let options = SubscribeOptions {
            sub_type: SubscriptionType::Shared,
            initial: InitialPosition::Earliest,
            prefetch: None,
        };
        let mut consumer: Box<dyn Consumer> = b.subscribe(&t, "sub", options).await.unwrap();
        send(&b, &t, "a").await;
        let txn = b.begin_transaction(LONG).await.unwrap();
        b.add_to_transaction(txn, &t).await.unwrap();
        send_in(&b, txn, &t, entry("x1", None)).await.unwrap();
        send_in(&b, txn, &t, entry("x2", None)).await.unwrap();
        send(&b, &t, "b").await;
        assert_eq!(
            b.backlog(&t, "sub").await.unwrap(),
            1,
            "only what is readable"
        );
        let first = consumer.receive(10, Duration::ZERO).await.unwrap();
        assert_eq!(received(&first), ["a"]);

        b.end_transaction(txn, false).await.unwrap();
        assert_eq!(
            b.backlog(&t, "sub").await.unwrap(),
            2,
            "aborted entries not counted"
        );
        let second = consumer.receive(10, Duration::from_secs(5)).await.unwrap();
        assert_eq!(received(&second), ["b"]);
        consumer.nack(&[first[0].id]).await.unwrap();
        let again = consumer.receive(10, Duration::from_secs(5)).await.unwrap();
        assert_eq!(received(&again), ["a"]);
        assert_eq!(again[0].redelivery_count, 1);
        assert_eq!(b.ready(&t, "sub").await.unwrap(), 0);

        consumer.ack(&[again[0].id, second[0].id]).await.unwrap();
        assert_eq!(b.backlog(&t, "sub").await.unwrap(), 0);
        let acked = b.acknowledged(&t, "sub").await.unwrap();
        assert_eq!(
            acked.from,
            EntryId {
                ledger: second[0].id.ledger,
                entry: second[0].id.entry + 1
            },
            "the cursor moves past aborted entries"
        );
        assert!(consumer
            .receive(10, Duration::from_millis(300))
            .await
            .unwrap()
            .is_empty());
        consumer.close().await;
        close(b).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn compacted_reader_and_publish_time_see_only_readable_entries() {
        let dir = tempfile::tempdir().unwrap();
        let b = EmbeddedBackend::open(dir.path()).unwrap();
        let t = topic(&b, "compacted").await;
        let before = send(&b, &t, "before").await;
        let txn = b.begin_transaction(LONG).await.unwrap();
        b.add_to_transaction(txn, &t).await.unwrap();
        send_in(&b, txn, &t, entry("t1", None)).await.unwrap();
        send(&b, &t, "after").await;
        let mut compacted: Box<dyn Reader> = b
            .open_compacted_reader(&t, EntryId::EARLIEST)
            .await
            .unwrap();
        let got = compacted
            .read(10, usize::MAX, Duration::from_millis(300))
            .await
            .unwrap();
        assert_eq!(values(&got), ["before"]);
        let future = got[0].publish_time + 1;
        assert_eq!(
            b.find_entry_by_publish_time(&t, got[0].publish_time)
                .await
                .unwrap(),
            Some(before)
        );
        assert_eq!(
            b.find_entry_by_publish_time(&t, future).await.unwrap(),
            None,
            "entries held back are not found by time"
        );
        b.end_transaction(txn, true).await.unwrap();
        let got = compacted
            .read(10, usize::MAX, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(values(&got), ["t1", "after"]);

        let aborted = b.begin_transaction(LONG).await.unwrap();
        b.add_to_transaction(aborted, &t).await.unwrap();
        send_in(&b, aborted, &t, entry("x", None)).await.unwrap();
        b.end_transaction(aborted, false).await.unwrap();
        send(&b, &t, "last").await;
        let got = compacted
            .read(10, usize::MAX, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(values(&got), ["last"]);
        let mut again = b
            .open_compacted_reader(&t, EntryId::EARLIEST)
            .await
            .unwrap();
        let all = again.read(10, usize::MAX, Duration::ZERO).await.unwrap();
        assert_eq!(values(&all), ["before", "t1", "after", "last"]);
        drop((compacted, again));
        close(b).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn deduplication_and_refusals_in_a_transaction() {
        let dir = tempfile::tempdir().unwrap();
        let b = EmbeddedBackend::open(dir.path()).unwrap();
        let t = topic(&b, "dedup").await;
        let u = topic(&b, "not-added").await;
        let txn = b.begin_transaction(LONG).await.unwrap();
        assert!(matches!(
            send_in(&b, txn, &t, entry("early", None)).await,
            Err(BackendError::InvalidArgument(_))
        ));
        b.add_to_transaction(txn, &t).await.unwrap();
        b.add_to_transaction(txn, &t).await.unwrap();
        let first = send_in(&b, txn, &t, entry("one", Some(("p", 1))))
            .await
            .unwrap();
        assert!(matches!(first[..], [SendReceipt::Persisted(_)]));
        let resend = send_in(&b, txn, &t, entry("one", Some(("p", 1))))
            .await
            .unwrap();
        assert_eq!(resend, [SendReceipt::Duplicate]);
        let plain = b
            .send(&t, vec![entry("one", Some(("p", 1)))])
            .await
            .unwrap();
        assert_eq!(
            plain,
            [SendReceipt::Duplicate],
            "the same sequence as plain sends"
        );
        assert_eq!(b.last_sequence(&t, "p").await.unwrap(), Some(1));
        let two = send_in(&b, txn, &t, entry("two", Some(("p", 2))))
            .await
            .unwrap();
        assert!(matches!(two[..], [SendReceipt::Persisted(_)]));
        assert!(matches!(
            send_in(&b, txn, &u, entry("u", None)).await,
            Err(BackendError::InvalidArgument(_))
        ));
        assert_eq!(b.last_message_id(&t).await.unwrap(), None);
        assert_eq!(
            b.first_entry_id(&t).await.unwrap(),
            None,
            "the start does not pass the end"
        );
        b.end_transaction(txn, true).await.unwrap();
        assert_eq!(read_all(&b, &t).await, ["one", "two"]);
        assert!(matches!(
            send_in(&b, txn, &t, entry("late", None)).await,
            Err(BackendError::TransactionNotOpen(_))
        ));
        assert!(matches!(
            b.add_to_transaction(txn, &u).await,
            Err(BackendError::TransactionNotOpen(_))
        ));
        let unknown = TransactionId {
            most_bits: 0,
            least_bits: 9_999,
        };
        assert!(matches!(
            b.end_transaction(unknown, false).await,
            Err(BackendError::TransactionNotOpen(_))
        ));
        close(b).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn deleting_a_written_topic_does_not_break_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let b = EmbeddedBackend::open(dir.path()).unwrap();
        let t = topic(&b, "deleted").await;
        let u = topic(&b, "kept").await;
        let txn = b.begin_transaction(LONG).await.unwrap();
        b.add_to_transaction(txn, &t).await.unwrap();
        b.add_to_transaction(txn, &u).await.unwrap();
        send_in(&b, txn, &t, entry("t", None)).await.unwrap();
        send_in(&b, txn, &u, entry("u", None)).await.unwrap();
        b.delete_topic(&t).await.unwrap();
        b.end_transaction(txn, true).await.unwrap();
        assert_eq!(read_all(&b, &u).await, ["u"]);
        // A topic of the same name starts empty, held back by nothing.
        let t = topic(&b, "deleted").await;
        send(&b, &t, "new").await;
        assert_eq!(read_all(&b, &t).await, ["new"]);
        close(b).await;
    }
}
