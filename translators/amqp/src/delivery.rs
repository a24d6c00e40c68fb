//! Reading queues: each source of a queue (its own topic, and one subscription per binding) is
//! read by a task that owns the backend consumer. Deliveries take credit (basic.qos) before they
//! are received, so a slow client holds back the backend instead of filling memory. Acks, nacks
//! and gets reach the task as commands, in order.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use amq_protocol::frame::{AMQPContentHeader, AMQPFrame};
use amq_protocol::protocol::{basic, AMQPClass};
use gateway_core::{
    BackendRef, Consumer, InitialPosition, MessageId, ReceivedMessage, SubscribeOptions,
    SubscriptionType, TopicName,
};
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
use tracing::{debug, warn};

use crate::codec::FRAME_OVERHEAD;
use crate::deadletter::{self, DeadLetter};
use crate::frontend::{exchange_subscription, exchange_topic, queue_subscription, queue_topic};
use crate::message::AmqpMessage;
use crate::topology::{Queue, Topology, Vhost};
use crate::watermarks::DeliveredMarks;

/// Frames for one client, written in order; a delivery's frames go as one item so that nothing
/// lands between them.
pub type Outgoing = mpsc::Sender<Vec<AMQPFrame>>;

/// Most messages taken from the backend per receive.
const RECEIVE_BATCH: usize = 64;
/// How long a receive waits before commands are looked at again.
const RECEIVE_WAIT: Duration = Duration::from_millis(100);

/// One place a queue's messages come from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SourceSpec {
    pub topic: TopicName,
    pub subscription: String,
    /// The exchange whose topic this is ("" for the queue's own topic). What it holds is
    /// filtered by the bindings from it to the queue as they are when the message is read.
    pub exchange: String,
    pub initial: InitialPositionSpec,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InitialPositionSpec {
    Earliest,
    Latest,
}

/// Where queue Q's messages come from: its own topic, and one subscription on the topic of each
/// exchange Q is reachable from: those it is bound to, and upwards through exchange-to-exchange
/// bindings.
pub fn sources_of(vhost: &Vhost, topology: &Topology, queue: &Queue) -> Vec<SourceSpec> {
    let mut sources = vec![SourceSpec {
        topic: queue_topic(vhost, &queue.name),
        subscription: queue_subscription(queue),
        exchange: String::new(),
        initial: InitialPositionSpec::Earliest,
    }];
    let mut found: BTreeSet<&str> = BTreeSet::new();
    let mut todo: Vec<&str> = topology
        .bindings_of_queue(&queue.name)
        .map(|b| b.exchange.as_str())
        .collect();
    while let Some(exchange) = todo.pop() {
        if !topology.exchanges.contains_key(exchange) || !found.insert(exchange) {
            continue;
        }
        todo.extend(
            topology
                .bindings_into_exchange(exchange)
                .map(|b| b.exchange.as_str()),
        );
    }
    sources.extend(found.into_iter().map(|exchange| SourceSpec {
        topic: exchange_topic(vhost, exchange),
        subscription: exchange_subscription(queue, exchange),
        exchange: exchange.to_owned(),
        initial: InitialPositionSpec::Latest,
    }));
    sources
}

/// A consumer on the source's subscription that lets the backend hold about `prefetch`
/// messages ahead of it: what is held for one consumer is invisible to the others.
pub async fn attach(
    backend: &BackendRef,
    spec: &SourceSpec,
    prefetch: u32,
) -> gateway_core::Result<Box<dyn Consumer>> {
    let initial = match spec.initial {
        InitialPositionSpec::Earliest => InitialPosition::Earliest,
        InitialPositionSpec::Latest => InitialPosition::Latest,
    };
    let options = SubscribeOptions {
        sub_type: SubscriptionType::Shared,
        initial,
        prefetch: Some(prefetch),
    };
    backend
        .subscribe(&spec.topic, &spec.subscription, options)
        .await
}

/// What a source task is asked to do.
pub enum SourceCommand {
    Ack(MessageId),
    /// Hand back for redelivery (the count Pulsar keeps makes it `redelivered`).
    Requeue(MessageId),
    /// basic.get: one message that passes the filter and is not expired, if any comes in time.
    Get(
        Duration,
        oneshot::Sender<Option<(MessageId, AmqpMessage, bool)>>,
    ),
    /// Answers once the backend has applied every settlement sent before it.
    Flush(oneshot::Sender<()>),
    /// Stop receiving; finish once every delivered message is settled.
    Drain,
    /// Close now (after the commands already queued).
    Close,
}

pub type SourceHandle = mpsc::UnboundedSender<SourceCommand>;

/// Per-queue behaviour a source applies to what it reads.
#[derive(Clone)]
pub struct QueuePolicy {
    pub queue: String,
    pub incarnation: u64,
    pub message_ttl: Option<u64>,
    pub dead_letter: Option<DeadLetter>,
    /// `x-max-length` and what happens beyond it.
    pub max_length: Option<u64>,
    pub overflow: Overflow,
}

/// `x-overflow`: what a queue at its `x-max-length` does with one more message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overflow {
    /// Drop (or dead-letter) the oldest.
    DropHead,
    /// Refuse the new one (the publisher's confirm is a nack).
    RejectPublish,
    /// Refuse it and dead-letter it.
    RejectPublishDlx,
}

/// A message property naming the queues (by incarnation) that refused it for being full; their
/// sources skip it, the exchange's other queues take it.
pub const REJECTED_BY: &str = "amqp.rejected-by";

/// A delivery not yet settled by the client.
pub struct Unacked {
    pub source: SourceHandle,
    pub id: MessageId,
    /// basic.qos credit, held until the delivery is settled (released on drop).
    pub _credit: Vec<OwnedSemaphorePermit>,
    pub message: Arc<AmqpMessage>,
    pub policy: Arc<QueuePolicy>,
}

/// A channel's side of deliveries, shared with its consumers' tasks.
pub struct ChannelDeliveries {
    pub channel: u16,
    pub out: Outgoing,
    pub frame_max: u32,
    next_tag: AtomicU64,
    pub unacked: Mutex<BTreeMap<u64, Unacked>>,
}

impl ChannelDeliveries {
    pub fn new(channel: u16, out: Outgoing, frame_max: u32) -> Arc<Self> {
        Arc::new(ChannelDeliveries {
            channel,
            out,
            frame_max,
            next_tag: AtomicU64::new(1),
            unacked: Mutex::new(BTreeMap::new()),
        })
    }

    pub fn next_tag(&self) -> u64 {
        self.next_tag.fetch_add(1, Ordering::Relaxed)
    }

    /// Takes the deliveries `tag` names (with `multiple`, every one up to it). `Err` when the
    /// tag is unknown (a channel error, PRECONDITION_FAILED). Tag 0 with multiple is "all".
    pub fn settle(&self, tag: u64, multiple: bool) -> Result<Vec<(u64, Unacked)>, u64> {
        let mut unacked = self.unacked.lock().expect("unacked lock");
        if multiple {
            let keep = unacked.split_off(&(if tag == 0 { u64::MAX } else { tag + 1 }));
            let taken = std::mem::replace(&mut *unacked, keep);
            if taken.is_empty() && tag != 0 {
                return Err(tag);
            }
            Ok(taken.into_iter().collect())
        } else {
            unacked.remove(&tag).map(|u| vec![(tag, u)]).ok_or(tag)
        }
    }

    pub fn take_all(&self) -> Vec<Unacked> {
        std::mem::take(&mut *self.unacked.lock().expect("unacked lock"))
            .into_values()
            .collect()
    }
}

/// The frames of one message: the method, its content header, and body frames cut to frame_max.
pub fn content_frames(
    channel: u16,
    method: basic::AMQPMethod,
    message: &AmqpMessage,
    frame_max: u32,
) -> Vec<AMQPFrame> {
    let mut frames = vec![
        AMQPFrame::Method(channel, AMQPClass::Basic(method)),
        AMQPFrame::Header(
            channel,
            AMQPContentHeader {
                class_id: 60,
                body_size: message.body.len() as u64,
                properties: message.properties.clone(),
            },
        ),
    ];
    let chunk = (frame_max.saturating_sub(FRAME_OVERHEAD) as usize).max(1);
    for piece in message.body.chunks(chunk) {
        frames.push(AMQPFrame::Body(channel, piece.to_vec()));
    }
    frames
}

/// How a pushing source delivers.
pub struct PushTarget {
    pub deliveries: Arc<ChannelDeliveries>,
    pub consumer_tag: String,
    pub no_ack: bool,
    /// basic.qos credit: the consumer's own limit and the channel's global one, when set.
    pub credit: Vec<Arc<Semaphore>>,
    /// The smallest of those limits (0 when there is none).
    pub prefetch: u32,
    /// Set by basic.cancel before cancel-ok goes out: nothing is delivered after it.
    pub cancelled: Arc<std::sync::atomic::AtomicBool>,
    /// Turns true when the consumer stops (cancel, channel close).
    pub stopped: tokio::sync::watch::Receiver<bool>,
}

/// One source's task: what it reads and for whom.
pub struct SourceTask {
    pub backend: BackendRef,
    pub vhost: Arc<Vhost>,
    pub spec: SourceSpec,
    pub policy: Arc<QueuePolicy>,
    /// With a target it delivers to a consumer; without, it only answers `Get`.
    pub push: Option<PushTarget>,
    /// Its own command queue, for commands read while waiting.
    pub handle: SourceHandle,
}

/// Runs one source until closed.
pub async fn run_source(
    task: SourceTask,
    mut consumer: Box<dyn Consumer>,
    mut commands: mpsc::UnboundedReceiver<SourceCommand>,
) {
    let SourceTask {
        backend,
        vhost,
        spec,
        policy,
        push,
        handle,
    } = task;
    let mut outstanding: HashSet<MessageId> = HashSet::new();
    let mark_key = DeliveredMarks::key(&spec.topic, &spec.subscription);
    // Messages at or below this mark may have reached a client before this source started.
    let seen_before = vhost.delivered.get(&mark_key);
    // Drain asked for: receive no more, and end once every delivered message is settled.
    let mut draining = false;
    let mut receiving = gateway_core::retry_log::RetryLog::default();
    let mut closing = false;
    loop {
        // Commands first: they settle credit and may end the task.
        // Settlements go to the backend in batches: one call per turn, not per message.
        let (mut acks, mut requeues) = (Vec::new(), Vec::new());
        let mut flushed = Vec::new();
        while let Ok(command) = commands.try_recv() {
            match command {
                SourceCommand::Ack(id) => {
                    outstanding.remove(&id);
                    acks.push(id);
                }
                SourceCommand::Requeue(id) => {
                    outstanding.remove(&id);
                    requeues.push(id);
                }
                SourceCommand::Get(wait, reply) => {
                    settle(consumer.as_mut(), &mut acks, &mut requeues).await;
                    let mut got =
                        pull_one(&backend, &vhost, &spec, &policy, consumer.as_mut(), wait).await;
                    if let Some((id, _, redelivered)) = &mut got {
                        *redelivered |= seen_before.is_some_and(|mark| *id <= mark);
                        // Recorded before the client sees it, as for pushed deliveries.
                        if vhost.delivered.raise(&mark_key, *id).await.is_err() {
                            let _ = consumer.nack(&[*id]).await;
                            got = None;
                        }
                    }
                    if let Some((id, _, _)) = &got {
                        outstanding.insert(*id);
                    }
                    let _ = reply.send(got);
                }
                SourceCommand::Flush(reply) => flushed.push(reply),
                SourceCommand::Drain => draining = true,
                SourceCommand::Close => closing = true,
            }
        }
        settle(consumer.as_mut(), &mut acks, &mut requeues).await;
        if !flushed.is_empty() {
            if let Err(e) = consumer.flush().await {
                warn!(error = %e, "acknowledgements may not have reached the backend");
            }
        }
        for reply in flushed {
            let _ = reply.send(());
        }
        if closing || (draining && outstanding.is_empty()) {
            break;
        }
        let Some(target) = push.as_ref().filter(|_| !draining) else {
            match commands.recv().await {
                Some(command) => {
                    // Put it back in front by handling it on the next turn.
                    requeue_command(&handle, command);
                    continue;
                }
                None => break,
            }
        };
        // Take credit for at least one delivery, or wait for a command.
        let mut permits = Vec::new();
        if !target.no_ack {
            tokio::select! {
                biased;
                command = commands.recv() => {
                    match command {
                        Some(command) => requeue_command(&handle, command),
                        None => break,
                    }
                    continue;
                }
                first = acquire_all(&target.credit) => permits.push(first),
            }
            while permits.len() < RECEIVE_BATCH {
                match try_acquire_all(&target.credit) {
                    Some(p) => permits.push(p),
                    None => break,
                }
            }
        }
        let want = if target.no_ack {
            RECEIVE_BATCH
        } else {
            permits.len()
        };
        // A cancel interrupts the wait, so a cancelled consumer takes nothing more: what a
        // dropped receive had already taken goes back when the source closes.
        let mut stopped = target.stopped.clone();
        let received = tokio::select! {
            received = consumer.receive(want, RECEIVE_WAIT) => received,
            _ = stopped.wait_for(|s| *s) => {
                draining = true;
                continue;
            }
        };
        let received = match received {
            Ok(received) => {
                receiving.succeeded(format_args!("receiving from {}", spec.topic));
                received
            }
            Err(e) => {
                receiving.failed(format_args!("receiving from {}", spec.topic), &e);
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        let mut admitted = Vec::with_capacity(received.len());
        for received in received {
            if let Some(message) = admit(
                &backend,
                &vhost,
                &spec,
                &policy,
                consumer.as_mut(),
                &received,
            )
            .await
            {
                admitted.push((received, message));
            }
        }
        if let Some(last) = admitted.iter().map(|(r, _)| r.id).max() {
            if let Err(e) = vhost.delivered.raise(&mark_key, last).await {
                // Not delivered, so nothing can be lost: they go back and come again.
                warn!(error = %e.text, "recording deliveries failed; handing the messages back");
                let ids: Vec<MessageId> = admitted.iter().map(|(r, _)| r.id).collect();
                let _ = consumer.nack(&ids).await;
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        }
        if target.no_ack && !admitted.is_empty() {
            let ids: Vec<MessageId> = admitted.iter().map(|(r, _)| r.id).collect();
            if target.cancelled.load(Ordering::Acquire) {
                // Cancelled while these were on their way: they go back to the queue.
                let _ = consumer.nack(&ids).await;
                draining = true;
                continue;
            }
            // At most once, as RabbitMQ: a no-ack delivery leaves the queue when it is sent. So
            // the backend has applied the ack before the client sees the message, and a message
            // count read after the delivery never counts it.
            let acked = match consumer.ack(&ids).await {
                Ok(()) => consumer.flush().await,
                Err(e) => Err(e),
            };
            if let Err(e) = acked {
                // Not delivered, and they come again (a nack of an applied ack does nothing).
                warn!(error = %e, "acknowledging no-ack deliveries failed; they come again");
                let _ = consumer.nack(&ids).await;
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        }
        let mut admitted = admitted.into_iter();
        while let Some((received, message)) = admitted.next() {
            // Acknowledged no-ack deliveries are sent even if a cancel came meanwhile: they
            // have left the queue.
            if !target.no_ack && target.cancelled.load(Ordering::Acquire) {
                // Cancelled while these were on their way: they go back to the queue.
                let back: Vec<MessageId> = std::iter::once(received.id)
                    .chain(admitted.by_ref().map(|(r, _)| r.id))
                    .collect();
                debug!(
                    count = back.len(),
                    "consumer cancelled; handing messages back"
                );
                let _ = consumer.nack(&back).await;
                draining = true;
                break;
            }
            let redelivered = received.redelivery_count > 0
                || seen_before.is_some_and(|mark| received.id <= mark);
            if target.no_ack {
                let frames = deliver_frames(target, 0, redelivered, &message);
                if target.deliveries.out.send(frames).await.is_err() {
                    closing = true;
                    break;
                }
                continue;
            }
            let tag = target.deliveries.next_tag();
            let frames = deliver_frames(target, tag, redelivered, &message);
            let credit = permits.pop().unwrap_or_default();
            outstanding.insert(received.id);
            target
                .deliveries
                .unacked
                .lock()
                .expect("unacked lock")
                .insert(
                    tag,
                    Unacked {
                        source: handle.clone(),
                        id: received.id,
                        _credit: credit,
                        message: Arc::new(message),
                        policy: policy.clone(),
                    },
                );
            if target.deliveries.out.send(frames).await.is_err() {
                closing = true;
                break;
            }
        }
        if closing {
            break;
        }
    }
    debug!(topic = %spec.topic, subscription = %spec.subscription, "source closed");
    consumer.close().await;
}

/// Hands a turn's acks and requeues to the backend.
async fn settle(
    consumer: &mut dyn Consumer,
    acks: &mut Vec<MessageId>,
    requeues: &mut Vec<MessageId>,
) {
    if !acks.is_empty() {
        if let Err(e) = consumer.ack(acks).await {
            warn!(error = %e, "ack to the backend failed");
        }
        acks.clear();
    }
    if !requeues.is_empty() {
        if let Err(e) = consumer.nack(requeues).await {
            warn!(error = %e, "requeue to the backend failed");
        }
        requeues.clear();
    }
}

fn deliver_frames(
    target: &PushTarget,
    tag: u64,
    redelivered: bool,
    message: &AmqpMessage,
) -> Vec<AMQPFrame> {
    content_frames(
        target.deliveries.channel,
        basic::AMQPMethod::Deliver(basic::Deliver {
            consumer_tag: target.consumer_tag.as_str().into(),
            delivery_tag: tag,
            redelivered,
            exchange: message.exchange.as_str().into(),
            routing_key: message.routing_key.as_str().into(),
        }),
        message,
        target.deliveries.frame_max,
    )
}

/// A command read while waiting goes back into the queue; it is handled at the top of the loop,
/// where every command is handled, so there is one place that does it.
fn requeue_command(handle: &SourceHandle, command: SourceCommand) {
    let _ = handle.send(command);
}

async fn acquire_all(credit: &[Arc<Semaphore>]) -> Vec<OwnedSemaphorePermit> {
    let mut permits = Vec::with_capacity(credit.len());
    for semaphore in credit {
        match semaphore.clone().acquire_owned().await {
            Ok(p) => permits.push(p),
            Err(_) => return permits,
        }
    }
    permits
}

fn try_acquire_all(credit: &[Arc<Semaphore>]) -> Option<Vec<OwnedSemaphorePermit>> {
    let mut permits = Vec::with_capacity(credit.len());
    for semaphore in credit {
        permits.push(semaphore.clone().try_acquire_owned().ok()?);
    }
    Some(permits)
}

/// Whether a received message goes to the client: messages the binding does not match are
/// acknowledged away, expired ones are dead-lettered or dropped.
async fn admit(
    backend: &BackendRef,
    vhost: &Arc<Vhost>,
    spec: &SourceSpec,
    policy: &QueuePolicy,
    consumer: &mut dyn Consumer,
    received: &ReceivedMessage,
) -> Option<AmqpMessage> {
    let message = AmqpMessage::from_pulsar(&received.message, &spec.exchange);
    let refused = received
        .message
        .properties
        .iter()
        .find(|(k, _)| k == REJECTED_BY)
        .is_some_and(|(_, v)| {
            v.split(',')
                .any(|q| q == format!("{:x}", policy.incarnation))
        });
    if refused || !reaches_queue(vhost, spec, policy, &message, received).await {
        let _ = consumer.ack(&[received.id]).await;
        return None;
    }
    let ttl = match (policy.message_ttl, message.expiration_ms()) {
        (Some(q), Some(m)) => Some(q.min(m)),
        (q, m) => q.or(m),
    };
    if let Some(ttl) = ttl {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        if received.publish_time.saturating_add(ttl) <= now {
            if let Some(dl) = &policy.dead_letter {
                if let Err(e) =
                    deadletter::publish(backend, vhost, dl, &policy.queue, "expired", &message)
                        .await
                {
                    // Not acknowledged: it comes back and is tried again.
                    warn!(error = %e.text, "dead-lettering an expired message failed");
                    let _ = consumer.nack(&[received.id]).await;
                    return None;
                }
            }
            let _ = consumer.ack(&[received.id]).await;
            return None;
        }
    }
    Some(message)
}

/// Whether a message read from `spec` is the queue's: anything from its own topic is; one from
/// an exchange's topic is when some binding path from that exchange takes it to the queue.
pub async fn reaches_queue(
    vhost: &Vhost,
    spec: &SourceSpec,
    policy: &QueuePolicy,
    message: &AmqpMessage,
    received: &ReceivedMessage,
) -> bool {
    spec.exchange.is_empty()
        || vhost
            .routes_to(
                &spec.exchange,
                &message.routing_key,
                message.properties.headers().as_ref(),
                &policy.queue,
                received.publish_time,
            )
            .await
}

/// Takes expired messages off the head of a source (dead-lettering or dropping them, as
/// `admit` does), up to the first live one, which is left where it was. RabbitMQ removes
/// expired messages of a TTL queue promptly even when nobody reads it; the delayed-retry
/// pattern (a TTL queue without consumers, dead-lettering back) depends on it.
pub async fn sweep_expired(
    backend: &BackendRef,
    vhost: &Arc<Vhost>,
    spec: &SourceSpec,
    policy: &QueuePolicy,
) -> gateway_core::Result<()> {
    let mut consumer = attach(backend, spec, 0).await?;
    loop {
        let received = consumer.receive(1, Duration::from_millis(300)).await?;
        let Some(received) = received.into_iter().next() else {
            break;
        };
        if admit(backend, vhost, spec, policy, consumer.as_mut(), &received)
            .await
            .is_some()
        {
            // Live: closing without an ack hands it back untouched (not counted as redelivered).
            break;
        }
    }
    consumer.close().await;
    Ok(())
}

async fn pull_one(
    backend: &BackendRef,
    vhost: &Arc<Vhost>,
    spec: &SourceSpec,
    policy: &QueuePolicy,
    consumer: &mut dyn Consumer,
    wait: Duration,
) -> Option<(MessageId, AmqpMessage, bool)> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let received = consumer.receive(1, left).await.ok()?;
        let received = received.into_iter().next()?;
        if let Some(message) = admit(backend, vhost, spec, policy, consumer, &received).await {
            return Some((received.id, message, received.redelivery_count > 0));
        }
        if left.is_zero() {
            return None;
        }
    }
}

/// The running sources of one queue for one purpose (a consumer, or a channel's gets), kept in
/// step with the queue's bindings.
#[derive(Default)]
pub struct SourceSet {
    pub running: HashMap<SourceSpec, SourceHandle>,
}

impl SourceSet {
    /// Starts sources that are missing and drains those no longer wanted.
    pub async fn reconcile(
        &mut self,
        backend: &BackendRef,
        vhost: &Arc<Vhost>,
        wanted: Vec<SourceSpec>,
        policy: &Arc<QueuePolicy>,
        push: impl Fn() -> Option<PushTarget>,
    ) -> gateway_core::Result<()> {
        let wanted_set: HashSet<&SourceSpec> = wanted.iter().collect();
        self.running.retain(|spec, handle| {
            let keep = wanted_set.contains(spec);
            if !keep {
                let _ = handle.send(SourceCommand::Drain);
            }
            keep
        });
        for spec in wanted {
            if self.running.contains_key(&spec) {
                continue;
            }
            let target = push();
            // A pushing source may be held its consumer's prefetch ahead; a source that only
            // answers basic.get holds nothing beyond what it takes, so others see the rest.
            let prefetch = match &target {
                Some(t) if t.prefetch > 0 => t.prefetch,
                Some(_) => RECEIVE_BATCH as u32 * 4,
                None => 0,
            };
            let consumer = attach(backend, &spec, prefetch).await?;
            let (handle, commands) = mpsc::unbounded_channel();
            let task = SourceTask {
                backend: backend.clone(),
                vhost: vhost.clone(),
                spec: spec.clone(),
                policy: policy.clone(),
                push: target,
                handle: handle.clone(),
            };
            tokio::spawn(run_source(task, consumer, commands));
            self.running.insert(spec, handle);
        }
        Ok(())
    }

    pub fn drain_all(&mut self) {
        for (_, handle) in self.running.drain() {
            let _ = handle.send(SourceCommand::Drain);
        }
    }
}
