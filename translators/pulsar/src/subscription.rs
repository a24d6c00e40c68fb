//! One subscription handle, shared by readers (non-durable subscriptions) and consumers on
//! durable subscriptions: it subscribes, grants flow permits, and resubscribes when the broker
//! closes it (topic moved, seek) or the connection drops. Also the authorization probe, which is
//! a subscription that cannot succeed.

use std::sync::Arc;
use std::time::Duration;

use gateway_core::{BackendError, EntryId, Result};
use tokio::sync::mpsc;

use crate::chunks::RawEntry;
use crate::connection::{Connection, ConsumerEvent};
use crate::pool::Pool;
use crate::proto::{
    command_type as t, sub_type, BaseCommand, CommandCloseConsumer, CommandFlow, CommandSubscribe,
    KeySharedMeta, MessageIdData,
};

/// Messages the broker may push ahead of what was taken, unless the caller asks for fewer;
/// refilled when half is used.
pub const PERMITS: u32 = 1000;

pub(crate) fn message_id(ledger: u64, entry: u64) -> MessageIdData {
    MessageIdData {
        ledger_id: ledger,
        entry_id: entry,
        ..Default::default()
    }
}

/// What a subscription is: kept so it can be reopened the same way.
#[derive(Clone)]
pub(crate) struct Spec {
    pub(crate) topic: String,
    pub(crate) name: String,
    pub(crate) sub_type: i32,
    pub(crate) durable: bool,
    /// 0 = latest, 1 = earliest (for a new durable subscription).
    pub(crate) initial: i32,
    /// Read the topic's compacted view.
    pub(crate) compacted: bool,
    /// How the broker is given flow permits.
    pub(crate) flow: Flow,
}

/// Who grants a subscription's flow permits, and how many.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Flow {
    /// Nothing ahead of the owner: permits are asked for only while `next` waits, one at a
    /// time, or as many as the owner says it takes now (`want`).
    OnDemand,
    /// The broker may push this many messages ahead of `next`; refilled when half is used.
    Window(u32),
    /// The owner grants permits itself (`flow`), also after the subscription was opened again
    /// (`take_reopened`): a reader's byte budget (`crate::prefetch`).
    Owner,
}

impl Flow {
    /// A window of `permits` messages; 0 is on demand.
    pub(crate) fn messages(permits: u32) -> Flow {
        match permits {
            0 => Flow::OnDemand,
            n => Flow::Window(n),
        }
    }
}

pub(crate) struct Subscription {
    pub(crate) pool: Arc<Pool>,
    spec: Spec,
    pub(crate) connection: Arc<Connection>,
    pub(crate) consumer_id: u64,
    pub(crate) events: mpsc::UnboundedReceiver<ConsumerEvent>,
    used_permits: u32,
    /// On-demand flow: permits granted whose messages have not come yet, counted as the broker
    /// counts them: below zero after a batch entry with more messages than there were permits
    /// (the broker sends a whole entry on any permit left, and owes nothing until the deficit
    /// is granted back).
    asked: i64,
    /// Opened again since the owner last asked (`Flow::Owner`: its permits are gone).
    reopened: bool,
    /// Set once the broker confirmed the close; Drop then has nothing left to do.
    closed: bool,
}

impl Subscription {
    pub(crate) async fn open(
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
            asked: 0,
            reopened: false,
            closed: false,
        }
    }

    /// Closes and waits for the broker's confirmation, so what follows (deleting the
    /// subscription, another Exclusive consumer) does not race with the close.
    pub(crate) async fn close_and_wait(&mut self) {
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
    pub(crate) async fn next(
        &mut self,
        wait: Duration,
        reopen_at: Option<MessageIdData>,
    ) -> Result<Option<RawEntry>> {
        if self.spec.flow == Flow::OnDemand && self.asked <= 0 {
            self.want(1);
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
                let messages = metadata.num_messages_in_batch.unwrap_or(1).max(1) as u32;
                self.used_permits += messages;
                match self.spec.flow {
                    Flow::OnDemand => {
                        self.asked -= i64::from(messages);
                        self.used_permits = 0;
                    }
                    Flow::Window(window) if self.used_permits >= (window / 2).max(1) => {
                        let permits = std::mem::take(&mut self.used_permits);
                        self.flow(permits);
                    }
                    Flow::Window(_) => {}
                    Flow::Owner => self.used_permits = 0,
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

    pub(crate) async fn reopen(&mut self, start: Option<MessageIdData>) -> Result<()> {
        self.connection.forget_consumer(self.consumer_id);
        let (connection, consumer_id, events) = subscribe(&self.pool, &self.spec, start).await?;
        self.connection = connection;
        self.consumer_id = consumer_id;
        self.events = events;
        self.used_permits = 0;
        self.asked = 0;
        self.reopened = true;
        self.closed = false;
        Ok(())
    }

    /// Whether the subscription was opened again since the last call (the broker then holds
    /// none of the permits granted before).
    pub(crate) fn take_reopened(&mut self) -> bool {
        std::mem::take(&mut self.reopened)
    }

    /// On-demand flow: the owner takes `messages` now (a link's credit, say), so that many
    /// are asked for at once rather than one per round trip. Never more than it said.
    pub(crate) fn want(&mut self, messages: u32) {
        let messages = i64::from(messages);
        if self.spec.flow == Flow::OnDemand && self.asked < messages {
            self.flow((messages - self.asked).min(i64::from(u32::MAX)) as u32);
            self.asked = messages;
        }
    }

    pub(crate) fn flow(&self, permits: u32) {
        self.connection.fire(BaseCommand {
            r#type: t::FLOW,
            flow: Some(CommandFlow {
                consumer_id: self.consumer_id,
                message_permits: permits,
            }),
            ..Default::default()
        });
    }

    pub(crate) fn close(&self) {
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

pub(crate) async fn subscribe(
    pool: &Pool,
    spec: &Spec,
    start: Option<MessageIdData>,
) -> Result<Subscribed> {
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
    if let Flow::Window(permits) = spec.flow {
        connection.fire(BaseCommand {
            r#type: t::FLOW,
            flow: Some(CommandFlow {
                consumer_id,
                message_permits: permits,
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
        flow: Flow::OnDemand,
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
pub(crate) fn consumer_name() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("pulsar-gateway-{:x}-{n:016}", std::process::id())
}

/// Where a non-durable subscription must start for `entry` to be the first one delivered: the
/// broker starts after the given position, so give the one before (entry -1 of a ledger is
/// "before its first entry", as Pulsar positions are; (-1, -1) is the earliest position).
pub(crate) fn start_before(entry: EntryId) -> MessageIdData {
    if entry == EntryId::EARLIEST {
        return message_id(u64::MAX, u64::MAX);
    }
    match entry.entry {
        0 => message_id(entry.ledger, u64::MAX),
        e => message_id(entry.ledger, e - 1),
    }
}

/// The entry after `id`.
pub(crate) fn after(id: EntryId) -> EntryId {
    EntryId {
        ledger: id.ledger,
        entry: id.entry + 1,
    }
}
