//! The task behind a sending link (`outgoing`): it owns the link's Pulsar consumer, reads as far
//! as the link's allowance goes, leaves out what has expired, what the selector does not select
//! and (no-local) what the link's own connection published, holds back what is not due yet,
//! and turns the client's settlements into acks and redeliveries.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use gateway_core::{
    BackendError, BackendRef, InitialPosition, MessageId, SubscribeOptions, SubscriptionType,
    TopicName,
};
use gateway_selector::Selector;
use tokio::sync::{mpsc, oneshot, Notify};

use super::delay::Held;
use crate::connection::{Command, Event};
use crate::frontend::Amqp1Frontend;

/// Most messages asked of Pulsar at once, and how long one ask waits before commands are seen.
const RECEIVE_BATCH: u32 = 64;
const RECEIVE_WAIT: Duration = Duration::from_millis(200);
/// Messages a link's selector did not select are held back (unacked) this long, then released
/// together, so that a queue's other consumers get them without this one reading them again
/// and again; and at most `PARK_MAX` at once.
const PARK_DELAY: Duration = Duration::from_secs(1);
const PARK_MAX: usize = 10_000;
/// Messages the client released go back to the queue this much later. Qpid JMS releases what it
/// prefetched as it closes a consumer, just before the detach: a link that goes first lets its
/// consumer's close return them, in order and uncounted. Handed back at once, Pulsar would
/// dispatch them straight back to the closing consumer, and the next consumer would get them
/// after later messages.
const RELEASE_DELAY: Duration = Duration::from_millis(100);

/// Deletes `subscription` of `topic` (one topic, or one partition); false if it stays.
async fn unsubscribe(
    backend: &dyn gateway_core::Backend,
    topic: &TopicName,
    subscription: &str,
) -> bool {
    for attempt in 0..20 {
        match backend.unsubscribe(topic, subscription).await {
            Ok(()) | Err(BackendError::SubscriptionNotFound(_)) => return true,
            Err(BackendError::ConsumerBusy(_)) if attempt < 19 => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => {
                tracing::debug!(error = %e, %subscription, "subscription not deleted");
                return false;
            }
        }
    }
    false
}

pub(crate) struct ConsumerTask {
    /// Told once the consumer exists (or could not be made).
    pub(super) subscribed: Option<oneshot::Sender<()>>,
    /// Dropped with the task, after its consumer closed: the link's detach is answered then.
    pub(super) _ended: oneshot::Sender<()>,
    /// Names the topic and subscription among the redelivery counts this instance remembers.
    pub(super) counts_key: String,
    /// Set by the link when it waits to answer a drain: report when a read finds nothing.
    pub(super) drain_asked: Arc<AtomicBool>,
    pub(super) backend: BackendRef,
    pub(super) topic: TopicName,
    pub(super) subscription: String,
    pub(super) kind: SubscriptionType,
    pub(super) initial: InitialPosition,
    /// The topic's partition count (0: not partitioned).
    pub(super) partitions: u32,
    /// The link's connection's origin id, when what it published is skipped (no-local).
    pub(super) no_local: Option<String>,
    pub(super) lookup: bool,
    pub(super) delete: Arc<AtomicBool>,
    pub(super) frontend: Arc<Amqp1Frontend>,
    pub(super) allowance: Arc<AtomicU32>,
    pub(super) wake: Arc<Notify>,
    pub(super) commands: mpsc::UnboundedReceiver<Command>,
    pub(super) events: mpsc::Sender<Event>,
    pub(super) channel: u16,
    pub(super) handle: u32,
    pub(super) link_id: u64,
    pub(super) selector: Option<Arc<Selector>>,
    /// The link's own topic subscription: what its selector does not select is skipped
    /// (acked), as JMS says of topic subscribers; on a queue it stays for other consumers.
    pub(super) skip_unselected: bool,
    /// Messages the selector did not select, not acked, to be released at `parked_since`
    /// + `PARK_DELAY`.
    pub(super) parked: Vec<MessageId>,
    pub(super) parked_since: Option<tokio::time::Instant>,
    /// Messages the client released, handed back at `released_since` + `RELEASE_DELAY`.
    pub(super) released: Vec<MessageId>,
    pub(super) released_since: Option<tokio::time::Instant>,
    /// Messages read before their delivery time, sent when due (`delay`).
    pub(super) delayed: Held,
}

impl ConsumerTask {
    /// When the parked messages are to be released, if any are parked.
    fn park_deadline(&self) -> Option<tokio::time::Instant> {
        let parked = self.parked_since.map(|t| t + PARK_DELAY);
        let released = self.released_since.map(|t| t + RELEASE_DELAY);
        parked.into_iter().chain(released).min()
    }

    /// Releases the parked and released messages whose time has come to the queue's consumers
    /// (this one included).
    async fn release_parked(&mut self, consumer: &mut dyn gateway_core::Consumer) {
        let now = tokio::time::Instant::now();
        let mut ids = Vec::new();
        if self.parked_since.is_some_and(|t| t + PARK_DELAY <= now) {
            self.parked_since = None;
            ids.append(&mut self.parked);
        }
        if self
            .released_since
            .is_some_and(|t| t + RELEASE_DELAY <= now)
        {
            self.released_since = None;
            ids.append(&mut self.released);
        }
        if ids.is_empty() {
            return;
        }
        // Neither was a delivery attempt.
        self.frontend.redeliveries.released(&self.counts_key, &ids);
        if let Err(e) = consumer.nack(&ids).await {
            tracing::debug!(error = %e, "release of unselected or released messages failed");
        }
    }

    pub(super) async fn run(mut self) {
        let (backend, topic, subscription) = (
            self.backend.clone(),
            self.topic.clone(),
            self.subscription.clone(),
        );
        let (delete, frontend) = (self.delete.clone(), self.frontend.clone());
        let topics: Vec<TopicName> = match self.partitions {
            0 => vec![topic.clone()],
            n => (0..n).map(|i| topic.partition(i)).collect(),
        };
        if self.lookup {
            // Nothing to read: wait for the link to go.
            drop(self.subscribed.take());
            let mut commands = self.commands;
            while commands.recv().await.is_some() {}
        } else {
            self.serve().await;
        }
        if !delete.load(Ordering::Acquire) {
            return;
        }
        // Pulsar refuses while consumers are attached: other members of a shared subscription
        // (the last one to go deletes it), or a subscriber's consumer still closing just before
        // an unsubscribe, which is waited for a little.
        for topic in &topics {
            if !unsubscribe(backend.as_ref(), topic, &subscription).await {
                return;
            }
        }
        frontend.forget_subscription(&subscription).await;
    }

    async fn serve(mut self) {
        // Prefetch 0: Pulsar hands this consumer a message only while it asks, so a queue's
        // consumers share its messages by the credit their clients give.
        let mut attempt = 0;
        let consumer = loop {
            let options = SubscribeOptions {
                sub_type: self.kind,
                initial: self.initial,
                prefetch: Some(0),
            };
            let consumer = gateway_core::partitioned::subscribe_either(
                self.backend.as_ref(),
                &self.topic,
                self.partitions,
                &self.subscription,
                options,
            )
            .await;
            // A durable subscriber back right after it left: its old consumer may still be
            // closing (the link went with its connection a moment ago).
            match consumer {
                Err(BackendError::ConsumerBusy(_))
                    if self.kind == SubscriptionType::Exclusive && attempt < 20 =>
                {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                other => break other,
            }
        };
        if let Some(subscribed) = self.subscribed.take() {
            let _ = subscribed.send(());
        }
        let mut consumer = match consumer {
            Ok(c) => c,
            Err(e) => {
                self.fail(format!("cannot read queue '{}': {e}", self.topic.local))
                    .await;
                return;
            }
        };
        loop {
            // Acks and redeliveries first, so settled messages never wait behind a read.
            loop {
                match self.commands.try_recv() {
                    Ok(command) => {
                        if let Err(e) = self.apply(consumer.as_mut(), command).await {
                            tracing::debug!(error = %e, "ack or redelivery failed");
                        }
                    }
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => {
                        consumer.close().await;
                        return;
                    }
                }
            }
            let deadline = self.park_deadline();
            if deadline.is_some_and(|d| d <= tokio::time::Instant::now()) {
                self.release_parked(consumer.as_mut()).await;
                continue;
            }
            let allowance = self.allowance.load(Ordering::Acquire);
            // Held-back messages now due go first, as far as the credit goes.
            let now = crate::message::now_millis();
            let due = self.delayed.take_due(now, allowance as usize);
            let until_due = self.delayed.until_due(now).filter(|_| allowance > 0);
            let mut wanted = allowance;
            if self.parked.len() >= PARK_MAX || self.delayed.is_full() {
                wanted = 0;
            }
            if wanted == 0 && due.is_empty() {
                // Nothing may be read now: a drain waiting on this task gets its answer.
                self.nothing_more().await;
                let park = async {
                    match deadline {
                        Some(d) => tokio::time::sleep_until(d).await,
                        None => std::future::pending().await,
                    }
                };
                let held = async {
                    match until_due {
                        Some(wait) => tokio::time::sleep(wait).await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    _ = self.wake.notified() => {}
                    _ = park => {}
                    _ = held => {}
                    command = self.commands.recv() => match command {
                        Some(command) => {
                            if let Err(e) = self.apply(consumer.as_mut(), command).await {
                                tracing::debug!(error = %e, "ack or redelivery failed");
                            }
                        }
                        None => {
                            consumer.close().await;
                            return;
                        }
                    },
                }
                continue;
            }
            let wait = until_due.map_or(RECEIVE_WAIT, |d| d.min(RECEIVE_WAIT));
            let read = if due.is_empty() {
                consumer
                    .receive(wanted.min(RECEIVE_BATCH) as usize, wait)
                    .await
            } else {
                Ok(due)
            };
            let messages = match read {
                Ok(m) => m,
                Err(e) => {
                    self.fail(format!("reading queue '{}': {e}", self.topic.local))
                        .await;
                    self.finish(consumer).await;
                    return;
                }
            };
            if messages.is_empty() {
                self.nothing_more().await;
            }
            let mut messages = messages;
            self.frontend
                .redeliveries
                .observe(&self.counts_key, &mut messages);
            // Time to live: an expired message is never delivered; it is acked and dropped.
            let now = crate::message::now_millis();
            let (expired, messages): (Vec<_>, Vec<_>) = messages
                .into_iter()
                .partition(|m| crate::message::expiration(&m.message).is_some_and(|at| at <= now));
            if !expired.is_empty() {
                metrics::counter!("amqp1_messages_expired_total").increment(expired.len() as u64);
                let ids: Vec<_> = expired.iter().map(|m| m.id).collect();
                if let Err(e) = consumer.ack(&ids).await {
                    tracing::debug!(error = %e, "ack of expired messages failed");
                }
            }
            // No-local: what this connection published is skipped (acked); only a topic
            // subscription, the link's own, has it.
            let messages = match &self.no_local {
                None => messages,
                Some(origin) => {
                    let (local, others): (Vec<_>, Vec<_>) = messages
                        .into_iter()
                        .partition(|m| crate::connection::published_by(origin, &m.message));
                    if !local.is_empty() {
                        let ids: Vec<_> = local.iter().map(|m| m.id).collect();
                        if let Err(e) = consumer.ack(&ids).await {
                            tracing::debug!(error = %e, "ack of no-local messages failed");
                        }
                    }
                    others
                }
            };
            // A selector's non-matching messages stay on a queue for other consumers, and are
            // skipped on a topic subscription.
            let messages = match &self.selector {
                None => messages,
                Some(selector) => {
                    let (selected, unselected): (Vec<_>, Vec<_>) = messages
                        .into_iter()
                        .partition(|m| crate::selector::matches(selector, m));
                    if !unselected.is_empty() && self.skip_unselected {
                        let ids: Vec<_> = unselected.iter().map(|m| m.id).collect();
                        if let Err(e) = consumer.ack(&ids).await {
                            tracing::debug!(error = %e, "ack of unselected messages failed");
                        }
                    } else if !unselected.is_empty() {
                        self.parked.extend(unselected.iter().map(|m| m.id));
                        self.parked_since
                            .get_or_insert_with(tokio::time::Instant::now);
                    }
                    selected
                }
            };
            // Delivery delay: what is not due yet waits in the link (`delay`).
            let messages = self
                .delayed
                .hold_back(messages, crate::message::now_millis());
            if messages.is_empty() {
                continue;
            }
            let n = messages.len() as u32;
            let _ = self
                .allowance
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |a| {
                    Some(a.saturating_sub(n))
                });
            let event = Event::Delivered {
                channel: self.channel,
                handle: self.handle,
                link_id: self.link_id,
                messages,
            };
            if self.events.send(event).await.is_err() {
                self.finish(consumer).await;
                return;
            }
        }
    }

    /// Closes the consumer once the acks and redeliveries already asked for are done: the link
    /// may have gone while a read was under way, right after the client settled.
    async fn finish(mut self, mut consumer: Box<dyn gateway_core::Consumer>) {
        while let Ok(command) = self.commands.try_recv() {
            if let Err(e) = self.apply(consumer.as_mut(), command).await {
                tracing::debug!(error = %e, "ack or redelivery failed");
            }
        }
        consumer.close().await;
    }

    async fn apply(
        &mut self,
        consumer: &mut dyn gateway_core::Consumer,
        command: Command,
    ) -> gateway_core::Result<()> {
        match command {
            Command::Ack(ids) => {
                self.frontend.redeliveries.forget(&self.counts_key, &ids);
                consumer.ack(&ids).await
            }
            Command::Nack(ids) => {
                self.frontend.redeliveries.nacked(&self.counts_key, &ids);
                consumer.nack(&ids).await
            }
            Command::Release(ids) => {
                self.released.extend(ids);
                self.released_since
                    .get_or_insert_with(tokio::time::Instant::now);
                Ok(())
            }
        }
    }

    /// Tells the link that nothing more is there to read, if it waits to answer a drain.
    async fn nothing_more(&self) {
        if self.drain_asked.swap(false, Ordering::AcqRel) {
            let _ = self
                .events
                .send(Event::NothingMore {
                    channel: self.channel,
                    handle: self.handle,
                    link_id: self.link_id,
                })
                .await;
        }
    }

    async fn fail(&self, text: String) {
        let _ = self
            .events
            .send(Event::internal_error(
                self.channel,
                self.handle,
                self.link_id,
                text,
            ))
            .await;
    }
}
