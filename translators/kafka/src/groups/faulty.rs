//! A test backend: the embedded backend with the faults a Pulsar outage brings to the group
//! coordinator's shard leases. While `stall` is on, table writes through a lease are queued but
//! not confirmed (they land, in order, once it is off); while `fail_writes` is on they are
//! refused; `lose_leases` takes every lease away, as when the broker drops the exclusive
//! producer, so that the topic can be claimed again; while `cut_off` is on, this instance cannot
//! reach the backend for leases and tables at all (its connection to Pulsar is down), while
//! another `Faulty` over the same backend (another instance) still can; while `stall_lookups` is
//! on, asking for a topic's partitions waits (as Pulsar's admin API does when it cannot answer).
//! `stall_submits` holds topic writes the way `stall` holds table writes, as a Pulsar that does
//! not confirm them.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use async_trait::async_trait;
use gateway_core::backend::prelude::*;
use gateway_core::backend::{SubscribeOptions, TopicInfo};
use gateway_core::{
    Announcement, BackendError, BackendRef, Consumer, EntryId, EntryToSend, Lease, MessageId,
    PendingSend, Reader, Result, SendReceipt, TopicName,
};
use tokio::sync::{mpsc, oneshot, watch};

/// A lease handed out: the real one, until it is lost.
type Real = Mutex<Option<Arc<dyn Lease>>>;
type Slot = Arc<Real>;
type Queued = (Vec<EntryToSend>, oneshot::Sender<Result<Vec<SendReceipt>>>);

pub struct Faulty {
    inner: BackendRef,
    stalled: watch::Sender<bool>,
    failing: Arc<AtomicBool>,
    cut: Arc<AtomicBool>,
    lookups: watch::Sender<bool>,
    /// The leases handed out (each lives as long as its holder keeps it).
    issued: Mutex<Vec<Weak<Real>>>,
    /// Topic writes are handed over but not persisted while on.
    submits_stalled: watch::Sender<bool>,
    submitted: AtomicUsize,
}

impl Faulty {
    pub fn new(inner: BackendRef) -> Arc<Faulty> {
        Arc::new(Faulty {
            inner,
            stalled: watch::channel(false).0,
            failing: Arc::default(),
            cut: Arc::default(),
            lookups: watch::channel(false).0,
            issued: Mutex::default(),
            submits_stalled: watch::channel(false).0,
            submitted: AtomicUsize::new(0),
        })
    }

    /// Topic writes (`Producing::submit`) are accepted but not persisted while `on`; they are
    /// written once it is off.
    pub fn stall_submits(&self, on: bool) {
        self.submits_stalled.send_replace(on);
    }

    /// Topic writes handed to this backend so far.
    pub fn submitted(&self) -> usize {
        self.submitted.load(Ordering::SeqCst)
    }

    /// Writes through leases wait (unconfirmed) while `on`, and go through in order after.
    pub fn stall(&self, on: bool) {
        self.stalled.send_replace(on);
    }

    /// Writes through leases fail while `on`.
    pub fn fail_writes(&self, on: bool) {
        self.failing.store(on, Ordering::Relaxed);
    }

    /// While `on`, claiming leases, asking who holds one, reading tables, their last ids and
    /// writing through leases fail, as when this instance's connection to Pulsar is down.
    pub fn cut_off(&self, on: bool) {
        self.cut.store(on, Ordering::Relaxed);
    }

    fn reachable(&self) -> Result<()> {
        match self.cut.load(Ordering::Relaxed) {
            true => Err(BackendError::Unavailable(
                "cut off from the backend (test)".into(),
            )),
            false => Ok(()),
        }
    }

    /// Topic lookups (`topic_info`) wait while `on`.
    pub fn stall_lookups(&self, on: bool) {
        self.lookups.send_replace(on);
    }

    /// Every lease handed out so far is lost: it reports so, refuses writes, and its topic is
    /// free to be claimed again.
    pub fn lose_leases(&self) {
        for slot in self.issued.lock().unwrap().drain(..) {
            if let Some(slot) = slot.upgrade() {
                slot.lock().unwrap().take();
            }
        }
    }
}

struct FaultyLease {
    real: Slot,
    failing: Arc<AtomicBool>,
    cut: Arc<AtomicBool>,
    queue: mpsc::UnboundedSender<Queued>,
}

impl FaultyLease {
    fn new(
        real: Slot,
        failing: Arc<AtomicBool>,
        cut: Arc<AtomicBool>,
        mut stalled: watch::Receiver<bool>,
    ) -> Self {
        let (queue, mut writes) = mpsc::unbounded_channel::<Queued>();
        let slot = real.clone();
        // One write at a time, in submission order, as a Pulsar producer persists them.
        tokio::spawn(async move {
            while let Some((entries, done)) = writes.recv().await {
                let _ = stalled.wait_for(|s| !*s).await;
                let lease = slot.lock().unwrap().clone();
                let outcome = match lease {
                    Some(lease) => match lease.submit(entries).await {
                        Ok(pending) => pending.await,
                        Err(e) => Err(e),
                    },
                    None => Err(BackendError::Closed),
                };
                let _ = done.send(outcome);
            }
        });
        FaultyLease {
            real,
            failing,
            cut,
            queue,
        }
    }
}

#[async_trait]
impl Lease for FaultyLease {
    async fn submit(&self, entries: Vec<EntryToSend>) -> Result<PendingSend> {
        if self.real.lock().unwrap().is_none() {
            return Err(BackendError::Closed);
        }
        if self.failing.load(Ordering::Relaxed) || self.cut.load(Ordering::Relaxed) {
            return Err(BackendError::Unavailable("writes fail (test)".into()));
        }
        let (done, outcome) = oneshot::channel();
        self.queue
            .send((entries, done))
            .map_err(|_| BackendError::Closed)?;
        Ok(Box::pin(async move {
            outcome.await.unwrap_or(Err(BackendError::Closed))
        }))
    }

    fn is_held(&self) -> bool {
        self.real
            .lock()
            .unwrap()
            .as_ref()
            .is_some_and(|l| l.is_held())
    }
}

#[async_trait]
impl Backend for Faulty {
    fn kind(&self) -> &'static str {
        "faulty"
    }

    async fn readiness(&self) -> Result<()> {
        self.inner.readiness().await
    }
}

#[async_trait]
impl TopicAdmin for Faulty {
    async fn create_topic(&self, topic: &TopicName, partitions: u32) -> Result<()> {
        self.reachable()?;
        self.inner.create_topic(topic, partitions).await
    }

    async fn delete_topic(&self, topic: &TopicName) -> Result<()> {
        self.inner.delete_topic(topic).await
    }

    async fn update_partitions(&self, topic: &TopicName, partitions: u32) -> Result<()> {
        self.inner.update_partitions(topic, partitions).await
    }

    async fn topic_info(&self, topic: &TopicName) -> Result<Option<TopicInfo>> {
        let _ = self.lookups.subscribe().wait_for(|stalled| !*stalled).await;
        self.inner.topic_info(topic).await
    }

    async fn list_topics(
        &self,
        tenant: &str,
        namespace: &str,
    ) -> Result<Vec<(TopicName, TopicInfo)>> {
        self.inner.list_topics(tenant, namespace).await
    }

    async fn compact(&self, topic: &TopicName) -> Result<()> {
        self.inner.compact(topic).await
    }
    async fn topic_properties(
        &self,
        topic: &TopicName,
    ) -> Result<std::collections::BTreeMap<String, String>> {
        self.inner.topic_properties(topic).await
    }

    async fn update_topic_properties(
        &self,
        topic: &TopicName,
        set: &std::collections::BTreeMap<String, String>,
        remove: &[String],
    ) -> Result<()> {
        self.inner.update_topic_properties(topic, set, remove).await
    }

    async fn set_topic_policies(
        &self,
        topic: &TopicName,
        policies: &gateway_core::backend::TopicPolicies,
    ) -> Result<()> {
        self.inner.set_topic_policies(topic, policies).await
    }

    async fn applied_retention(
        &self,
        topic: &TopicName,
    ) -> Result<gateway_core::backend::Retention> {
        self.inner.applied_retention(topic).await
    }
}

#[async_trait]
impl Producing for Faulty {
    async fn last_sequence(&self, topic: &TopicName, producer_name: &str) -> Result<Option<u64>> {
        self.inner.last_sequence(topic, producer_name).await
    }

    async fn find_sequence(
        &self,
        topic: &TopicName,
        producer_name: &str,
        sequence: u64,
    ) -> Result<Option<MessageId>> {
        self.inner
            .find_sequence(topic, producer_name, sequence)
            .await
    }

    async fn submit(&self, topic: &TopicName, entries: Vec<EntryToSend>) -> Result<PendingSend> {
        self.submitted.fetch_add(1, Ordering::SeqCst);
        let mut stalled = self.submits_stalled.subscribe();
        if !*stalled.borrow() {
            return self.inner.submit(topic, entries).await;
        }
        let (inner, topic) = (self.inner.clone(), topic.clone());
        Ok(Box::pin(async move {
            let _ = stalled.wait_for(|s| !*s).await;
            inner.submit(&topic, entries).await?.await
        }))
    }
}

#[async_trait]
impl Reading for Faulty {
    async fn last_message_id(&self, topic: &TopicName) -> Result<Option<MessageId>> {
        self.reachable()?;
        self.inner.last_message_id(topic).await
    }

    async fn first_entry_id(&self, topic: &TopicName) -> Result<Option<EntryId>> {
        self.inner.first_entry_id(topic).await
    }

    async fn find_entry_by_publish_time(
        &self,
        topic: &TopicName,
        publish_time: u64,
    ) -> Result<Option<EntryId>> {
        self.inner
            .find_entry_by_publish_time(topic, publish_time)
            .await
    }

    async fn open_reader(&self, topic: &TopicName, start: EntryId) -> Result<Box<dyn Reader>> {
        self.reachable()?;
        self.inner.open_reader(topic, start).await
    }

    async fn open_compacted_reader(
        &self,
        topic: &TopicName,
        start: EntryId,
    ) -> Result<Box<dyn Reader>> {
        self.reachable()?;
        self.inner.open_compacted_reader(topic, start).await
    }
}

#[async_trait]
impl Subscriptions for Faulty {
    async fn subscribe(
        &self,
        topic: &TopicName,
        subscription: &str,
        options: SubscribeOptions,
    ) -> Result<Box<dyn Consumer>> {
        self.inner.subscribe(topic, subscription, options).await
    }

    async fn position_subscription(
        &self,
        topic: &TopicName,
        subscription: &str,
        next: MessageId,
    ) -> Result<()> {
        self.inner
            .position_subscription(topic, subscription, next)
            .await
    }

    async fn unsubscribe(&self, topic: &TopicName, subscription: &str) -> Result<()> {
        self.inner.unsubscribe(topic, subscription).await
    }

    async fn subscriptions(&self, topic: &TopicName) -> Result<Vec<String>> {
        self.inner.subscriptions(topic).await
    }

    async fn backlog(&self, topic: &TopicName, subscription: &str) -> Result<u64> {
        self.inner.backlog(topic, subscription).await
    }
}

#[async_trait]
impl gateway_core::backend::Transactions for Faulty {}

#[async_trait]
impl Coordination for Faulty {
    async fn try_lease(&self, topic: &TopicName, holder: &str) -> Result<Option<Box<dyn Lease>>> {
        self.reachable()?;
        let Some(real) = self.inner.try_lease(topic, holder).await? else {
            return Ok(None);
        };
        let slot: Slot = Arc::new(Mutex::new(Some(Arc::from(real))));
        self.issued.lock().unwrap().push(Arc::downgrade(&slot));
        Ok(Some(Box::new(FaultyLease::new(
            slot,
            self.failing.clone(),
            self.cut.clone(),
            self.stalled.subscribe(),
        ))))
    }

    async fn lease_holder(&self, topic: &TopicName) -> Result<Option<String>> {
        self.reachable()?;
        self.inner.lease_holder(topic).await
    }

    async fn announce(&self, topic: &TopicName, name: &str) -> Result<Box<dyn Announcement>> {
        self.inner.announce(topic, name).await
    }

    async fn announced(&self, topic: &TopicName) -> Result<Vec<String>> {
        self.inner.announced(topic).await
    }
}
