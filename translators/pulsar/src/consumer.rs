//! Readers (non-durable subscriptions) and consumers on durable subscriptions, over one
//! subscription handle that subscribes, grants flow permits, and resubscribes when the broker
//! closes it (topic moved, seek) or the connection drops.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use gateway_core::backend::{InitialPosition, SeekTarget, SubscriptionType};
use gateway_core::{
    BackendError, Consumer, EntryId, MessageId, Reader, ReceivedMessage, Result, StoredEntry,
};
use tokio::sync::mpsc;

use crate::batch;
use crate::connection::{unavailable, Connection, ConsumerEvent};
use crate::pool::Pool;
use crate::proto::{
    ack_type, command_type as t, sub_type, BaseCommand, CommandAck, CommandCloseConsumer,
    CommandFlow, CommandRedeliverUnacknowledgedMessages, CommandSeek, CommandSubscribe,
    KeySharedMeta, MessageIdData, MessageMetadata,
};

/// Messages the broker may push ahead of what was taken, unless the caller asks for fewer;
/// refilled when half is used.
pub const PERMITS: u32 = 1000;

fn message_id(ledger: u64, entry: u64) -> MessageIdData {
    MessageIdData {
        ledger_id: ledger,
        entry_id: entry,
        ..Default::default()
    }
}

/// An entry as the broker pushed it.
struct RawEntry {
    id: EntryId,
    redelivery_count: u32,
    metadata: Box<MessageMetadata>,
    payload: bytes::Bytes,
}

/// What a subscription is: kept so it can be reopened the same way.
#[derive(Clone)]
struct Spec {
    topic: String,
    name: String,
    sub_type: i32,
    durable: bool,
    /// 0 = latest, 1 = earliest (for a new durable subscription).
    initial: i32,
    /// Read the topic's compacted view.
    compacted: bool,
    /// Flow permits: how many messages the broker may push ahead of `receive`. 0 asks for one
    /// message at a time, only while a `receive` waits.
    permits: u32,
}

struct Subscription {
    pool: Arc<Pool>,
    spec: Spec,
    connection: Arc<Connection>,
    consumer_id: u64,
    events: mpsc::UnboundedReceiver<ConsumerEvent>,
    used_permits: u32,
    /// On-demand flow (`permits` 0): a permit for one message is out.
    asked: bool,
    /// Set once the broker confirmed the close; Drop then has nothing left to do.
    closed: bool,
}

impl Subscription {
    async fn open(
        pool: Arc<Pool>,
        spec: Spec,
        start: Option<MessageIdData>,
    ) -> Result<Subscription> {
        let subscribed = subscribe(&pool, &spec, start).await?;
        Ok(Subscription::subscribed(pool, spec, subscribed))
    }

    fn subscribed(
        pool: Arc<Pool>,
        spec: Spec,
        (connection, consumer_id, events): Subscribed,
    ) -> Subscription {
        Subscription {
            pool,
            spec,
            connection,
            consumer_id,
            events,
            used_permits: 0,
            asked: false,
            closed: false,
        }
    }

    /// Closes and waits for the broker's confirmation, so what follows (deleting the
    /// subscription, another Exclusive consumer) does not race with the close.
    async fn close_and_wait(&mut self) {
        let request_id = self.connection.next_id();
        self.connection.forget_consumer(self.consumer_id);
        let close = BaseCommand {
            r#type: t::CLOSE_CONSUMER,
            close_consumer: Some(CommandCloseConsumer {
                consumer_id: self.consumer_id,
                request_id,
            }),
            ..Default::default()
        };
        if let Err(e) = self.connection.request(request_id, close).await {
            tracing::debug!(error = %e, "closing a Pulsar consumer");
        }
        self.closed = true;
    }

    /// The next entry, waiting up to `wait`. `Ok(None)` on time-out; a closed subscription is
    /// reopened (`reopen_at` gives a non-durable one its position back).
    async fn next(
        &mut self,
        wait: Duration,
        reopen_at: Option<MessageIdData>,
    ) -> Result<Option<RawEntry>> {
        if self.spec.permits == 0 && !self.asked {
            self.flow(1);
            self.asked = true;
        }
        let event = match tokio::time::timeout(wait, self.events.recv()).await {
            Err(_) => return Ok(None),
            Ok(event) => event,
        };
        match event {
            Some(ConsumerEvent::Message {
                id,
                redelivery_count,
                metadata,
                payload,
            }) => {
                self.used_permits += metadata.num_messages_in_batch.unwrap_or(1).max(1) as u32;
                if self.spec.permits == 0 {
                    self.asked = false;
                    self.used_permits = 0;
                } else if self.used_permits >= (self.spec.permits / 2).max(1) {
                    let permits = std::mem::take(&mut self.used_permits);
                    self.flow(permits);
                }
                Ok(Some(RawEntry {
                    id: EntryId {
                        ledger: id.ledger_id,
                        entry: id.entry_id,
                    },
                    redelivery_count,
                    metadata,
                    payload,
                }))
            }
            Some(ConsumerEvent::Closed) | None => {
                self.reopen(reopen_at).await?;
                Ok(None)
            }
        }
    }

    async fn reopen(&mut self, start: Option<MessageIdData>) -> Result<()> {
        self.connection.forget_consumer(self.consumer_id);
        let (connection, consumer_id, events) = subscribe(&self.pool, &self.spec, start).await?;
        self.connection = connection;
        self.consumer_id = consumer_id;
        self.events = events;
        self.used_permits = 0;
        self.asked = false;
        self.closed = false;
        Ok(())
    }

    fn flow(&self, permits: u32) {
        self.connection.fire(BaseCommand {
            r#type: t::FLOW,
            flow: Some(CommandFlow {
                consumer_id: self.consumer_id,
                message_permits: permits,
            }),
            ..Default::default()
        });
    }

    fn close(&self) {
        let request_id = self.connection.next_id();
        self.connection.forget_consumer(self.consumer_id);
        self.connection.fire(BaseCommand {
            r#type: t::CLOSE_CONSUMER,
            close_consumer: Some(CommandCloseConsumer {
                consumer_id: self.consumer_id,
                request_id,
            }),
            ..Default::default()
        });
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if !self.closed {
            self.close();
        }
    }
}

/// A consumer the broker accepted: its connection, id, and the events the connection routes to it.
type Subscribed = (Arc<Connection>, u64, mpsc::UnboundedReceiver<ConsumerEvent>);

async fn subscribe(pool: &Pool, spec: &Spec, start: Option<MessageIdData>) -> Result<Subscribed> {
    let connection = pool.owner_of(&spec.topic).await?;
    subscribe_on(connection, spec, start).await
}

async fn subscribe_on(
    connection: Arc<Connection>,
    spec: &Spec,
    start: Option<MessageIdData>,
) -> Result<Subscribed> {
    let (consumer_id, request_id) = (connection.next_id(), connection.next_id());
    let events = connection.register_consumer(consumer_id);
    let command = BaseCommand {
        r#type: t::SUBSCRIBE,
        subscribe: Some(CommandSubscribe {
            topic: spec.topic.clone(),
            subscription: spec.name.clone(),
            sub_type: spec.sub_type,
            consumer_id,
            request_id,
            consumer_name: Some(consumer_name()),
            durable: Some(spec.durable),
            start_message_id: start,
            read_compacted: spec.compacted.then_some(true),
            initial_position: Some(spec.initial),
            force_topic_creation: Some(false),
            key_shared_meta: (spec.sub_type == sub_type::KEY_SHARED)
                .then_some(KeySharedMeta { key_shared_mode: 0 }),
        }),
        ..Default::default()
    };
    if let Err(e) = connection.request(request_id, command).await {
        connection.forget_consumer(consumer_id);
        return Err(e);
    }
    if spec.permits > 0 {
        connection.fire(BaseCommand {
            r#type: t::FLOW,
            flow: Some(CommandFlow {
                consumer_id,
                message_permits: spec.permits,
            }),
            ..Default::default()
        });
    }
    Ok((connection, consumer_id, events))
}

/// A topic nobody creates: the authorization probe subscribes to it with topic creation off.
const PROBE_TOPIC: &str = "__pulsar_gateway_authorization_probe";

/// Whether the pool's role may consume in `tenant/namespace` through a subscription named
/// `subscription`: the namespace's (or tenant's) consume permission, and the subscription's own
/// role list when an admin set one (`grant-subscription-permission`). A broker checks
/// authorization before it looks for the topic, so a subscribe to a topic that does not exist,
/// with topic creation off, answers exactly that question and leaves nothing behind.
pub async fn may_subscribe(
    pool: Arc<Pool>,
    tenant: &str,
    namespace: &str,
    subscription: &str,
) -> Result<bool> {
    let spec = Spec {
        topic: format!("persistent://{tenant}/{namespace}/{PROBE_TOPIC}"),
        name: subscription.to_owned(),
        sub_type: sub_type::SHARED,
        durable: false,
        initial: 0,
        compacted: false,
        permits: 0,
    };
    let connection = match pool.owner_of(&spec.topic).await {
        Ok(connection) => connection,
        // A namespace without topic auto-creation answers the lookup of a missing topic with
        // TopicNotFound before any consume check; then any broker can check it.
        Err(BackendError::TopicNotFound(_)) => pool.service_connection().await?,
        Err(e) => return refused_or(e),
    };
    match subscribe_on(connection.clone(), &spec, None).await {
        Ok(subscribed) => {
            // Someone made the topic after all: the non-durable subscription goes with its
            // only consumer.
            let mut probe = Subscription::subscribed(pool, spec, subscribed);
            probe.close_and_wait().await;
            Ok(true)
        }
        Err(e) => refused_or(e),
    }
}

/// A probe's failure: a refusal is the answer `false`; a broker error that comes only after
/// the authorization check (no such topic, a busy subscription) means the check passed.
fn refused_or(e: BackendError) -> Result<bool> {
    match e {
        BackendError::NotAuthorized(_) => Ok(false),
        BackendError::TopicNotFound(_)
        | BackendError::SubscriptionNotFound(_)
        | BackendError::ConsumerBusy(_) => Ok(true),
        e => Err(e),
    }
}

/// A name that sorts in creation order: Pulsar makes the first consumer by name the active one
/// of a Failover subscription, and the gateway's contract is "first attached is active".
fn consumer_name() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("pulsar-gateway-{:x}-{n:016}", std::process::id())
}

/// Where a non-durable subscription must start for `entry` to be the first one delivered: the
/// broker starts after the given position, so give the one before (entry -1 of a ledger is
/// "before its first entry", as Pulsar positions are; (-1, -1) is the earliest position).
fn start_before(entry: EntryId) -> MessageIdData {
    if entry == EntryId::EARLIEST {
        return message_id(u64::MAX, u64::MAX);
    }
    match entry.entry {
        0 => message_id(entry.ledger, u64::MAX),
        e => message_id(entry.ledger, e - 1),
    }
}

pub struct PulsarReader {
    subscription: Subscription,
    position: EntryId,
    /// Entries taken from the subscription and not yet returned. Kept here, not in a local, so
    /// that `read` is cancel-safe: a fetch that stops waiting drops the future, not the entries.
    taken: VecDeque<StoredEntry>,
}

impl PulsarReader {
    pub async fn open(
        pool: Arc<Pool>,
        topic: &str,
        start: EntryId,
        compacted: bool,
    ) -> Result<PulsarReader> {
        let spec = Spec {
            topic: topic.to_owned(),
            name: format!("pulsar-gateway-reader-{:016x}", rand::random::<u64>()),
            sub_type: sub_type::EXCLUSIVE,
            durable: false,
            initial: 1,
            compacted,
            permits: PERMITS,
        };
        let subscription = Subscription::open(pool, spec, Some(start_before(start))).await?;
        Ok(PulsarReader {
            subscription,
            position: start,
            taken: VecDeque::new(),
        })
    }

    /// Takes one entry from the subscription into `taken`; false on time-out.
    async fn take(&mut self, wait: Duration) -> Result<bool> {
        let reopen_at = Some(start_before(self.position));
        let Some(raw) = self.subscription.next(wait, reopen_at).await? else {
            return Ok(false);
        };
        if raw.id < self.position {
            return Ok(true); // before the requested start (the broker may start one entry early)
        }
        let entry = StoredEntry {
            id: raw.id,
            publish_time: raw.metadata.publish_time,
            messages: batch::decode_entry(&raw.metadata, raw.payload)?,
        };
        self.position = EntryId {
            ledger: raw.id.ledger,
            entry: raw.id.entry + 1,
        };
        self.taken.push_back(entry);
        Ok(true)
    }
}

#[async_trait]
impl Reader for PulsarReader {
    async fn read(
        &mut self,
        max_entries: usize,
        max_bytes: usize,
        wait: Duration,
    ) -> Result<Vec<StoredEntry>> {
        let deadline = tokio::time::Instant::now() + wait;
        let max_entries = max_entries.max(1);
        // Wait for the first entry; after it, take only what has already arrived.
        while self.taken.is_empty() {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if !self.take(left).await? && tokio::time::Instant::now() >= deadline {
                return Ok(Vec::new());
            }
        }
        while self.taken.len() < max_entries && self.take(Duration::ZERO).await? {}
        let mut out = Vec::new();
        let mut bytes = 0usize;
        while let Some(entry) = self.taken.front() {
            if out.len() >= max_entries
                || (!out.is_empty() && bytes + entry.approximate_size() > max_bytes)
            {
                break;
            }
            bytes += entry.approximate_size();
            out.push(self.taken.pop_front().expect("front exists"));
        }
        Ok(out)
    }

    fn position(&self) -> EntryId {
        self.taken.front().map_or(self.position, |e| e.id)
    }

    async fn seek(&mut self, start: EntryId) -> Result<()> {
        self.taken.clear();
        self.subscription.close();
        self.subscription.reopen(Some(start_before(start))).await?;
        self.position = start;
        Ok(())
    }
}

/// A consumer on a durable subscription. Pulsar brokers only acknowledge batch indexes when
/// configured to, so acknowledgements of single messages in a batch are kept here until the whole
/// entry is acknowledged, as Pulsar's own clients do; a restart redelivers a partly acknowledged
/// batch (at-least-once).
pub struct PulsarConsumer {
    subscription: Subscription,
    sub_type: SubscriptionType,
    /// Delivered entries: message count and the batch indexes acknowledged so far.
    delivered: BTreeMap<EntryId, (u32, BTreeSet<u32>)>,
    ready: VecDeque<ReceivedMessage>,
    /// After a seek into a batch, its messages before the target are not delivered (the broker
    /// seeks to whole entries).
    seek_skip: Option<MessageId>,
}

impl PulsarConsumer {
    pub async fn open(
        pool: Arc<Pool>,
        topic: &str,
        name: &str,
        sub_type: SubscriptionType,
        initial: InitialPosition,
        permits: u32,
    ) -> Result<PulsarConsumer> {
        let wire_type = match sub_type {
            SubscriptionType::Exclusive => sub_type::EXCLUSIVE,
            SubscriptionType::Shared => sub_type::SHARED,
            SubscriptionType::Failover => sub_type::FAILOVER,
            SubscriptionType::KeyShared => sub_type::KEY_SHARED,
        };
        let initial = match initial {
            InitialPosition::Latest => 0,
            InitialPosition::Earliest => 1,
        };
        let subscription = Subscription::open(
            pool,
            Spec {
                topic: topic.to_owned(),
                name: name.to_owned(),
                sub_type: wire_type,
                durable: true,
                compacted: false,
                initial,
                permits,
            },
            None,
        )
        .await?;
        Ok(PulsarConsumer {
            subscription,
            sub_type,
            delivered: BTreeMap::new(),
            ready: VecDeque::new(),
            seek_skip: None,
        })
    }

    fn send_ack(&self, kind: i32, entry: EntryId) {
        self.subscription.connection.fire(BaseCommand {
            r#type: t::ACK,
            ack: Some(CommandAck {
                consumer_id: self.subscription.consumer_id,
                ack_type: kind,
                message_id: vec![message_id(entry.ledger, entry.entry)],
                request_id: None,
            }),
            ..Default::default()
        });
    }

    fn mark(&mut self, id: MessageId) {
        let entry = id.entry_id();
        let complete = match self.delivered.get_mut(&entry) {
            Some((count, acked)) => {
                acked.insert(id.batch_index);
                acked.len() as u32 >= *count
            }
            // Not delivered through this consumer: acknowledge the entry as Pulsar clients do.
            None => true,
        };
        if complete {
            self.delivered.remove(&entry);
            self.send_ack(ack_type::INDIVIDUAL, entry);
        }
    }
}

#[async_trait]
impl Consumer for PulsarConsumer {
    async fn receive(&mut self, max: usize, wait: Duration) -> Result<Vec<ReceivedMessage>> {
        let deadline = tokio::time::Instant::now() + wait;
        while self.ready.len() < max.max(1) {
            let wait = if self.ready.is_empty() {
                deadline.saturating_duration_since(tokio::time::Instant::now())
            } else {
                Duration::ZERO
            };
            let Some(raw) = self.subscription.next(wait, None).await? else {
                if self.ready.is_empty() && tokio::time::Instant::now() < deadline {
                    continue;
                }
                break;
            };
            let messages = batch::decode_entry(&raw.metadata, raw.payload)?;
            let (_, acked) = self
                .delivered
                .entry(raw.id)
                .or_insert_with(|| (messages.len() as u32, BTreeSet::new()))
                .clone();
            let skip_below = match self.seek_skip.take() {
                Some(target) if target.entry_id() == raw.id => target.batch_index,
                Some(target) if raw.id < target.entry_id() => {
                    self.seek_skip = Some(target);
                    u32::MAX
                }
                _ => 0,
            };
            if skip_below > 0 {
                // Sought past: those messages count as acknowledged, so the entry can complete.
                let count = messages.len() as u32;
                if let Some((_, acked)) = self.delivered.get_mut(&raw.id) {
                    acked.extend(0..skip_below.min(count));
                }
            }
            for (index, message) in messages.into_iter().enumerate() {
                // A redelivered batch also carries the messages already acknowledged here.
                if acked.contains(&(index as u32)) || (index as u32) < skip_below {
                    continue;
                }
                self.ready.push_back(ReceivedMessage {
                    id: raw.id.message(index as u32),
                    publish_time: raw.metadata.publish_time,
                    message,
                    redelivery_count: raw.redelivery_count,
                });
            }
        }
        let take = self.ready.len().min(max.max(1));
        Ok(self.ready.drain(..take).collect())
    }

    async fn ack(&mut self, ids: &[MessageId]) -> Result<()> {
        for id in ids {
            self.mark(*id);
        }
        Ok(())
    }

    async fn ack_cumulative(&mut self, id: MessageId) -> Result<()> {
        if matches!(
            self.sub_type,
            SubscriptionType::Shared | SubscriptionType::KeyShared
        ) {
            return Err(BackendError::InvalidArgument(
                "cumulative acknowledgement is not allowed on Shared or Key_Shared subscriptions"
                    .into(),
            ));
        }
        let entry = id.entry_id();
        let whole = self
            .delivered
            .get(&entry)
            .is_none_or(|(count, _)| id.batch_index + 1 >= *count);
        if whole {
            self.send_ack(ack_type::CUMULATIVE, entry);
            self.delivered = self.delivered.split_off(&EntryId {
                ledger: entry.ledger,
                entry: entry.entry + 1,
            });
        } else {
            // Everything before this entry cumulatively, then this entry's prefix one by one.
            if let Some(previous) = self.delivered.range(..entry).next_back().map(|(e, _)| *e) {
                self.send_ack(ack_type::CUMULATIVE, previous);
            }
            self.delivered = self.delivered.split_off(&entry);
            for index in 0..=id.batch_index {
                self.mark(entry.message(index));
            }
        }
        Ok(())
    }

    async fn nack(&mut self, ids: &[MessageId]) -> Result<()> {
        let entries: BTreeSet<EntryId> = ids.iter().map(|id| id.entry_id()).collect();
        self.subscription.connection.fire(BaseCommand {
            r#type: t::REDELIVER_UNACKNOWLEDGED_MESSAGES,
            redeliver_unacknowledged_messages: Some(CommandRedeliverUnacknowledgedMessages {
                consumer_id: self.subscription.consumer_id,
                message_ids: entries
                    .iter()
                    .map(|e| message_id(e.ledger, e.entry))
                    .collect(),
            }),
            ..Default::default()
        });
        Ok(())
    }

    async fn seek(&mut self, target: SeekTarget) -> Result<()> {
        let request_id = self.subscription.connection.next_id();
        let (message, publish_time) = match target {
            SeekTarget::Message(id) => (Some(message_id(id.ledger, id.entry)), None),
            SeekTarget::PublishTime(time) => (None, Some(time)),
        };
        self.subscription
            .connection
            .request(
                request_id,
                BaseCommand {
                    r#type: t::SEEK,
                    seek: Some(CommandSeek {
                        consumer_id: self.subscription.consumer_id,
                        request_id,
                        message_id: message,
                        message_publish_time: publish_time,
                    }),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| unavailable(format!("seek failed: {e}")))?;
        self.delivered.clear();
        self.ready.clear();
        self.seek_skip = match target {
            SeekTarget::Message(id) if id.batch_index > 0 => Some(id),
            _ => None,
        };
        // The broker disconnects the consumer after a seek; wait for that (dropping what was
        // pushed before it), then resubscribe, which picks up the new position.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while let Ok(Some(event)) =
            tokio::time::timeout_at(deadline, self.subscription.events.recv()).await
        {
            if matches!(event, ConsumerEvent::Closed) {
                break;
            }
        }
        self.subscription.reopen(None).await
    }

    async fn close(mut self: Box<Self>) {
        self.subscription.close_and_wait().await;
    }
}
