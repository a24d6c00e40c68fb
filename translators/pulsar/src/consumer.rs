//! Readers (non-durable subscriptions) and consumers on durable subscriptions, over one
//! subscription handle that subscribes, grants flow permits, and resubscribes when the broker
//! closes it (topic moved, seek) or the connection drops. Both put chunked messages back
//! together (`chunks.rs`), looking chunks they did not see up in the entries before a message's
//! last chunk (`Lookback`).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use gateway_core::backend::{InitialPosition, SeekTarget, SubscriptionType};
use gateway_core::{
    BackendError, Consumer, EntryId, MessageId, Reader, ReceivedMessage, Result, StoredEntry,
    TopicName,
};
use tokio::sync::mpsc;

use crate::admin::AdminClient;
use crate::batch;
use crate::chunks::{self, Assembled, Assembler, Finish, Limits, Missing, RawEntry, Step};
use crate::connection::{unavailable, Connection, ConsumerEvent};
use crate::pool::Pool;
use crate::proto::{
    ack_type, command_type as t, sub_type, BaseCommand, CommandAck, CommandCloseConsumer,
    CommandFlow, CommandRedeliverUnacknowledgedMessages, CommandSeek, CommandSubscribe,
    KeySharedMeta, MessageIdData,
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

/// The entry after `id`.
fn after(id: EntryId) -> EntryId {
    EntryId {
        ledger: id.ledger,
        entry: id.entry + 1,
    }
}

/// How long a look-back waits for its next entry: they exist, so this only runs out when the
/// broker does not answer, or the topic lost them.
const LOOKBACK_WAIT: Duration = Duration::from_secs(10);
/// Look-backs of one message that may fail before the message is dropped, so that a topic that
/// lost its entries does not stop the reader or consumer for good.
const LOOKBACK_ATTEMPTS: u32 = 3;

/// Reads the entries before a chunked message's last chunk, for the chunks a reader or consumer
/// did not see (`chunks::Missing`): it started inside the message, sought to it, or a Shared
/// subscription gave them to another consumer.
pub struct Lookback {
    pool: Arc<Pool>,
    admin: Arc<AdminClient>,
    topic: TopicName,
    compacted: bool,
}

impl Lookback {
    pub fn new(
        pool: Arc<Pool>,
        admin: Arc<AdminClient>,
        topic: &TopicName,
        compacted: bool,
    ) -> Lookback {
        Lookback {
            pool,
            admin,
            topic: topic.clone(),
            compacted,
        }
    }

    /// Hands every entry in `[lo, hi)` to `visit`, through a reader of its own.
    async fn read(
        &self,
        lo: EntryId,
        hi: EntryId,
        span: u64,
        mut visit: impl FnMut(RawEntry),
    ) -> Result<()> {
        metrics::counter!("pulsar_chunk_lookbacks_total").increment(1);
        let spec = Spec {
            topic: self.topic.to_string(),
            name: format!("pulsar-gateway-lookback-{:016x}", rand::random::<u64>()),
            sub_type: sub_type::EXCLUSIVE,
            durable: false,
            initial: 1,
            compacted: self.compacted,
            permits: span.clamp(1, PERMITS as u64) as u32,
        };
        let mut subscription =
            Subscription::open(self.pool.clone(), spec, Some(start_before(lo))).await?;
        let mut next = lo;
        let mut deadline = tokio::time::Instant::now() + LOOKBACK_WAIT;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return Err(unavailable(format!(
                    "no entry from {}:{} within {LOOKBACK_WAIT:?} while looking for chunks",
                    next.ledger, next.entry
                )));
            }
            let Some(raw) = subscription.next(left, Some(start_before(next))).await? else {
                continue;
            };
            if raw.id >= hi {
                return Ok(());
            }
            if raw.id < next {
                continue;
            }
            next = after(raw.id);
            deadline = tokio::time::Instant::now() + LOOKBACK_WAIT;
            visit(raw);
        }
    }
}

/// A look-back under way; kept across a cancelled read, which resumes it.
struct Lookup {
    missing: Missing,
    /// Entries before this one are still to be read.
    hi: EntryId,
    /// The next window's size: each window reaches twice as far back as the one before.
    span: u64,
    /// Entries covered so far.
    read: u64,
    /// The topic's ledgers, once a window reaches before the last chunk's ledger.
    ledgers: Option<Vec<(u64, u64)>>,
    failures: u32,
}

impl Lookup {
    fn new(missing: Missing) -> Lookup {
        Lookup {
            hi: missing.last,
            span: u64::from(missing.num_chunks),
            read: 0,
            ledgers: None,
            failures: 0,
            missing,
        }
    }

    /// How far back to look at most: chunks interleaved with other producers' entries spread
    /// over more entries than their count, but not without bound.
    fn budget(&self) -> u64 {
        16 * u64::from(self.missing.num_chunks) + 1024
    }

    /// Reads windows before the last chunk until the message is whole (`Some`) or dropped.
    /// An error leaves the look-back to be resumed.
    async fn run(
        &mut self,
        source: &Lookback,
        chunks: &mut Assembler,
    ) -> Result<Option<Assembled>> {
        let uuid = self.missing.uuid.clone();
        loop {
            match chunks.finish(&uuid) {
                Finish::Done(m) => return Ok(Some(m)),
                Finish::Gone => return Ok(None),
                Finish::Missing => {}
            }
            if self.read >= self.budget() {
                let why = format!(
                    "earlier chunks not in the {} entries before the last one",
                    self.read
                );
                chunks.give_up(&uuid, &why);
                return Ok(None);
            }
            let span = self.span.min(self.budget() - self.read);
            let window = async {
                if self.hi.entry < span && self.ledgers.is_none() {
                    self.ledgers = Some(source.admin.ledgers(&source.topic).await?);
                }
                let ledgers = self.ledgers.as_deref().unwrap_or_default();
                let Some(lo) = chunks::window_start(self.hi, span, ledgers) else {
                    return Ok(None);
                };
                let missing = &self.missing;
                source
                    .read(lo, self.hi, span, |raw| chunks.offer(missing, raw))
                    .await?;
                Ok(Some(lo))
            };
            match window.await {
                Ok(Some(lo)) => {
                    self.hi = lo;
                    self.read += span;
                    self.span = span * 2;
                    self.failures = 0;
                }
                Ok(None) => {
                    chunks.give_up(&uuid, "earlier chunks are not in the topic");
                    return Ok(None);
                }
                Err(e) => {
                    self.failures += 1;
                    if self.failures >= LOOKBACK_ATTEMPTS {
                        chunks.give_up(&uuid, &format!("looking for earlier chunks: {e}"));
                        return Ok(None);
                    }
                    return Err(e);
                }
            }
        }
    }
}

/// A Pulsar reader. A chunked message is returned whole as an entry of its own at its last
/// chunk's entry (so its Kafka offset is that entry's); entries holding its other chunks return
/// nothing. A reader started at a chunked message's last chunk still returns it: the chunks
/// before its start are looked up.
pub struct PulsarReader {
    subscription: Subscription,
    position: EntryId,
    /// Entries taken from the subscription and not yet returned. Kept here, not in a local, so
    /// that `read` is cancel-safe: a fetch that stops waiting drops the future, not the entries.
    taken: VecDeque<StoredEntry>,
    chunks: Assembler,
    lookback: Lookback,
    /// A chunked message whose earlier chunks are being looked up; returned before anything
    /// after it.
    lookup: Option<Lookup>,
}

impl PulsarReader {
    pub async fn open(
        pool: Arc<Pool>,
        admin: Arc<AdminClient>,
        topic: &TopicName,
        start: EntryId,
        compacted: bool,
    ) -> Result<PulsarReader> {
        let name = topic.to_string();
        let spec = Spec {
            topic: name.clone(),
            name: format!("pulsar-gateway-reader-{:016x}", rand::random::<u64>()),
            sub_type: sub_type::EXCLUSIVE,
            durable: false,
            initial: 1,
            compacted,
            permits: PERMITS,
        };
        let subscription =
            Subscription::open(pool.clone(), spec, Some(start_before(start))).await?;
        Ok(PulsarReader {
            subscription,
            position: start,
            taken: VecDeque::new(),
            chunks: Assembler::new(&name, Limits::READER),
            lookback: Lookback::new(pool, admin, topic, compacted),
            lookup: None,
        })
    }

    /// Takes one entry from the subscription into `taken` (or into a chunked message); false on
    /// time-out.
    async fn take(&mut self, wait: Duration) -> Result<bool> {
        if self.lookup.is_some() {
            self.finish_lookup().await?;
            return Ok(true);
        }
        let reopen_at = Some(start_before(self.position));
        let Some(raw) = self.subscription.next(wait, reopen_at).await? else {
            return Ok(false);
        };
        if raw.id < self.position {
            return Ok(true); // before the requested start (the broker may start one entry early)
        }
        let id = raw.id;
        match self.chunks.push(raw, Duration::ZERO) {
            Step::Whole(raw) => {
                let entry = StoredEntry {
                    id: raw.id,
                    publish_time: raw.metadata.publish_time,
                    messages: batch::decode_entry(&raw.metadata, raw.payload)?,
                };
                self.position = after(id);
                self.taken.push_back(entry);
            }
            Step::Nothing => self.position = after(id),
            Step::Complete(m) => {
                self.position = after(id);
                self.deliver(m);
            }
            Step::Missing(missing) => {
                self.position = after(id);
                self.lookup = Some(Lookup::new(missing));
                self.finish_lookup().await?;
            }
        }
        // A reader acknowledges nothing.
        self.chunks.take_discarded();
        Ok(true)
    }

    async fn finish_lookup(&mut self) -> Result<()> {
        let Some(lookup) = self.lookup.as_mut() else {
            return Ok(());
        };
        let found = lookup.run(&self.lookback, &mut self.chunks).await?;
        self.lookup = None;
        if let Some(m) = found {
            self.deliver(m);
        }
        self.chunks.take_discarded();
        Ok(())
    }

    fn deliver(&mut self, m: Assembled) {
        match batch::decode_entry(&m.metadata, m.payload.clone()) {
            Ok(messages) => self.taken.push_back(StoredEntry {
                id: m.id,
                publish_time: m.metadata.publish_time,
                messages,
            }),
            Err(e) => self.chunks.undecodable(&m, &e.to_string()),
        }
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
        match (self.taken.front(), &self.lookup) {
            (Some(entry), _) => entry.id,
            (None, Some(lookup)) => lookup.missing.last,
            (None, None) => self.position,
        }
    }

    async fn seek(&mut self, start: EntryId) -> Result<()> {
        self.taken.clear();
        self.chunks.clear();
        self.lookup = None;
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
///
/// A chunked message is delivered whole with its last chunk's id, and acknowledging it (or
/// negatively) acknowledges every chunk's entry; no chunk is acknowledged before that. Entries of
/// messages the gateway drops (`chunks.rs`: too large, unassemblable, expired) are acknowledged,
/// as Java's consumer does, so they do not hold the backlog.
pub struct PulsarConsumer {
    subscription: Subscription,
    sub_type: SubscriptionType,
    /// Delivered entries: message count and the batch indexes acknowledged so far.
    delivered: BTreeMap<EntryId, (u32, BTreeSet<u32>)>,
    /// Delivered chunked messages, by last chunk: every chunk's entry.
    chunked: BTreeMap<EntryId, Vec<EntryId>>,
    ready: VecDeque<ReceivedMessage>,
    /// After a seek into a batch, its messages before the target are not delivered (the broker
    /// seeks to whole entries).
    seek_skip: Option<MessageId>,
    chunks: Assembler,
    lookback: Lookback,
    lookup: Option<Lookup>,
    /// Time spent waiting for entries: the clock incomplete chunked messages expire on, so that
    /// a slow application does not make them expire while their chunks wait to be taken.
    waited: Duration,
}

impl PulsarConsumer {
    pub async fn open(
        pool: Arc<Pool>,
        admin: Arc<AdminClient>,
        topic: &TopicName,
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
            pool.clone(),
            Spec {
                topic: topic.to_string(),
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
            chunked: BTreeMap::new(),
            ready: VecDeque::new(),
            seek_skip: None,
            chunks: Assembler::new(&topic.to_string(), Limits::CONSUMER),
            lookback: Lookback::new(pool, admin, topic, false),
            lookup: None,
            waited: Duration::ZERO,
        })
    }

    fn send_acks(&self, kind: i32, entries: &[EntryId]) {
        if entries.is_empty() {
            return;
        }
        self.subscription.connection.fire(BaseCommand {
            r#type: t::ACK,
            ack: Some(CommandAck {
                consumer_id: self.subscription.consumer_id,
                ack_type: kind,
                message_id: entries
                    .iter()
                    .map(|e| message_id(e.ledger, e.entry))
                    .collect(),
                request_id: None,
            }),
            ..Default::default()
        });
    }

    fn send_ack(&self, kind: i32, entry: EntryId) {
        self.send_acks(kind, &[entry]);
    }

    /// Acknowledges the entries of dropped chunked messages and duplicate chunks.
    fn ack_discarded(&mut self) {
        let discarded = self.chunks.take_discarded();
        self.send_acks(ack_type::INDIVIDUAL, &discarded);
    }

    fn mark(&mut self, id: MessageId) {
        let entry = id.entry_id();
        if let Some(entries) = self.chunked.remove(&entry) {
            self.send_acks(ack_type::INDIVIDUAL, &entries);
            return;
        }
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

    /// After a seek into a batch: how many of `entry`'s first messages to skip (all for an
    /// entry before the target).
    fn skip_below(&mut self, entry: EntryId) -> u32 {
        match self.seek_skip.take() {
            Some(target) if target.entry_id() == entry => target.batch_index,
            Some(target) if entry < target.entry_id() => {
                self.seek_skip = Some(target);
                u32::MAX
            }
            _ => 0,
        }
    }

    /// An entry that is not a chunk: its messages that are still to be acknowledged are ready.
    fn accept(&mut self, raw: RawEntry) -> Result<()> {
        let messages = batch::decode_entry(&raw.metadata, raw.payload)?;
        let (_, acked) = self
            .delivered
            .entry(raw.id)
            .or_insert_with(|| (messages.len() as u32, BTreeSet::new()))
            .clone();
        let skip_below = self.skip_below(raw.id);
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
        Ok(())
    }

    fn deliver(&mut self, m: Assembled) {
        let messages = match batch::decode_entry(&m.metadata, m.payload.clone()) {
            Ok(messages) => messages,
            Err(e) => {
                self.chunks.undecodable(&m, &e.to_string());
                self.ack_discarded();
                return;
            }
        };
        if self.skip_below(m.id) > 0 {
            return; // sought past
        }
        for message in messages {
            self.ready.push_back(ReceivedMessage {
                id: m.id.message(0),
                publish_time: m.metadata.publish_time,
                message,
                redelivery_count: m.redelivery_count,
            });
        }
        self.chunked.insert(m.id, m.entries);
    }

    async fn finish_lookup(&mut self) -> Result<()> {
        let Some(lookup) = self.lookup.as_mut() else {
            return Ok(());
        };
        let found = lookup.run(&self.lookback, &mut self.chunks).await?;
        self.lookup = None;
        if let Some(m) = found {
            self.deliver(m);
        }
        self.ack_discarded();
        Ok(())
    }
}

#[async_trait]
impl Consumer for PulsarConsumer {
    async fn receive(&mut self, max: usize, wait: Duration) -> Result<Vec<ReceivedMessage>> {
        let deadline = tokio::time::Instant::now() + wait;
        while self.ready.len() < max.max(1) {
            if self.lookup.is_some() {
                self.finish_lookup().await?;
                continue;
            }
            let wait = if self.ready.is_empty() {
                deadline.saturating_duration_since(tokio::time::Instant::now())
            } else {
                Duration::ZERO
            };
            let started = tokio::time::Instant::now();
            let next = self.subscription.next(wait, None).await;
            self.waited += started.elapsed();
            self.chunks.expire(self.waited);
            self.ack_discarded();
            let Some(raw) = next? else {
                if self.ready.is_empty() && tokio::time::Instant::now() < deadline {
                    continue;
                }
                break;
            };
            match self.chunks.push(raw, self.waited) {
                Step::Whole(raw) => self.accept(raw)?,
                Step::Nothing => {}
                Step::Complete(m) => self.deliver(m),
                Step::Missing(missing) => {
                    self.lookup = Some(Lookup::new(missing));
                    self.finish_lookup().await?;
                }
            }
            self.ack_discarded();
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
        // Chunks up to this entry of messages that end after it: a cumulative ack would take
        // them along, and a restart could then never put those messages together.
        let held: Vec<EntryId> = self
            .chunks
            .held()
            .chain(
                self.chunked
                    .range(after(entry)..)
                    .flat_map(|(_, entries)| entries.iter().copied()),
            )
            .filter(|e| *e <= entry)
            .collect();
        if !held.is_empty() {
            // One by one instead, everything delivered up to this message but those chunks.
            let before: Vec<EntryId> = self.delivered.range(..entry).map(|(e, _)| *e).collect();
            for e in &before {
                self.delivered.remove(e);
            }
            self.send_acks(ack_type::INDIVIDUAL, &before);
            let done: Vec<EntryId> = self.chunked.range(..=entry).map(|(e, _)| *e).collect();
            for last in &done {
                self.mark(last.message(0));
            }
            if self.delivered.contains_key(&entry) {
                for index in 0..=id.batch_index {
                    self.mark(entry.message(index));
                }
            } else if !done.contains(&entry) {
                self.send_ack(ack_type::INDIVIDUAL, entry);
            }
            return Ok(());
        }
        self.chunked = self.chunked.split_off(&after(entry));
        let whole = self
            .delivered
            .get(&entry)
            .is_none_or(|(count, _)| id.batch_index + 1 >= *count);
        if whole {
            self.send_ack(ack_type::CUMULATIVE, entry);
            self.delivered = self.delivered.split_off(&after(entry));
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
        // A chunked message is redelivered whole: every chunk's entry.
        let mut entries = BTreeSet::new();
        for id in ids {
            let entry = id.entry_id();
            match self.chunked.get(&entry) {
                Some(chunks) => entries.extend(chunks.iter().copied()),
                None => {
                    entries.insert(entry);
                }
            }
        }
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
        self.chunked.clear();
        self.chunks.clear();
        self.lookup = None;
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
