//! A link on which the gateway sends (the client attached as receiver) from queue `Q`: a task
//! owns a consumer on the durable Shared subscription `jms-queue` of topic `Q` and asks Pulsar
//! for no more messages than the client has given credit for (its `allowance`), so the other
//! consumers of the queue get the rest. The client's dispositions come back as acks
//! (`accepted`) and redeliveries (`released`, `modified`); messages it never settled are
//! redelivered by Pulsar when the consumer closes (core spec §2.6.7, §3.4).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use fe2o3_amqp_types::definitions::{AmqpError, Handle, Role, SenderSettleMode};
use fe2o3_amqp_types::messaging::{
    DistributionMode, Source, TerminusDurability, TerminusExpiryPolicy,
};
use fe2o3_amqp_types::performatives::{Attach, Flow, Performative, Transfer};
use fe2o3_amqp_types::primitives::{Array, Symbol};
use gateway_core::{InitialPosition, ReceivedMessage, SubscriptionType, TopicName};
use gateway_selector::Selector;
use tokio::sync::{mpsc, oneshot, Notify};

use super::consumer::ConsumerTask;
use super::delay::Held;
use super::incoming::has_capability;
use crate::connection::{Command, Ctx, Fail};
use crate::selector::FilterError;
use crate::session::Session;

/// Most messages a link reads ahead of what it has sent, however much credit the client gives:
/// they wait in the gateway's memory until the socket takes them.
const READ_AHEAD: u32 = 32;
/// The longest an attach waits for the link's consumer, and a detach for its close; a hang
/// guard, as either normally takes milliseconds.
pub(crate) const LIFECYCLE_WAIT: Duration = Duration::from_secs(10);

pub(crate) struct Outgoing {
    pub id: u64,
    pub delivery_count: u32,
    pub credit: u32,
    drain: bool,
    /// A drain the consumer (or browser) task was asked to check: it is answered only once the
    /// task found nothing more to read, not merely nothing read yet (a pulling client, prefetch
    /// 0, asks with credit 1 and drain, and the message it wants may still be on its way from
    /// Pulsar; a browser's drain ends its enumeration).
    drain_asked: Arc<AtomicBool>,
    /// The task reported that nothing more is there since the drain was asked.
    pub nothing_more: bool,
    /// An unsubscribe lookup: no consumer, so a drain is answered at once.
    reads_nothing: bool,
    /// Resolves once the consumer task has its consumer (or failed to get one).
    subscribed: Option<oneshot::Receiver<()>>,
    /// Resolves once the consumer task has ended, its consumer closed.
    ended: Option<oneshot::Receiver<()>>,
    /// Read from Pulsar and not yet sent (credit or the session window ran out meanwhile).
    pub queued: VecDeque<ReceivedMessage>,
    /// The client takes deliveries settled (at most once): acked as they are sent.
    pub presettled: bool,
    /// How many more messages the consumer task may read.
    allowance: Arc<AtomicU32>,
    wake: Arc<Notify>,
    /// Dropping it ends the consumer task, which closes the consumer.
    commands: mpsc::UnboundedSender<Command>,
    /// The link's subscription is its own (a topic subscription), not a queue's.
    owned: bool,
    /// Whether the consumer task deletes the subscription when it ends.
    delete: Arc<AtomicBool>,
}

/// The Pulsar subscription a receiving link reads.
struct Plan {
    name: String,
    kind: SubscriptionType,
    initial: InitialPosition,
    /// A topic subscription (the link's own), not a queue's shared `jms-queue`.
    owned: bool,
    /// Deleted when the link goes (non-durable).
    delete_on_close: bool,
    /// Only looked up (an unsubscribe): the link reads nothing, so no consumer is opened.
    lookup: bool,
    /// A queue browser (distribution mode `copy`): the queue is read, not consumed.
    browse: bool,
    /// The topic's partition count (0: not partitioned): a partitioned topic's subscription
    /// is on each partition, and read as one.
    partitions: u32,
    /// What the link's own connection published is skipped (JMS `noLocal`).
    no_local: bool,
}

impl Plan {
    fn queue(name: String) -> Plan {
        Plan {
            name,
            kind: SubscriptionType::Shared,
            initial: InitialPosition::Earliest,
            owned: false,
            delete_on_close: false,
            lookup: false,
            browse: false,
            partitions: 0,
            no_local: false,
        }
    }
}

/// The subscription of a topic subscriber, named as Starlight for JMS names it: a plain
/// non-durable subscriber gets a non-durable Exclusive subscription of a random name; a
/// durable or shared one `<client id>_<name>`, where Qpid JMS sends the client id as the
/// container id and the subscription name as the link name (`name|global` and
/// `name|global-volatile1` for shared ones without a client id, which are named `name`).
/// Shared ones (capability `shared`) are Shared subscriptions; all start at the end.
fn topic_subscription(attach: &Attach, durable: bool, container_id: &str) -> Plan {
    let capabilities = attach
        .source
        .as_deref()
        .and_then(|s| s.capabilities.as_ref())
        .or(attach.desired_capabilities.as_ref());
    let shared = has_capability(capabilities, "shared");
    let global = has_capability(capabilities, "global");
    let base = attach.name.split('|').next().unwrap_or(&attach.name);
    let name = if !durable && !shared {
        random_name()
    } else if global || container_id.is_empty() {
        base.to_owned()
    } else {
        format!("{container_id}_{base}")
    };
    Plan {
        name,
        kind: if shared {
            SubscriptionType::Shared
        } else {
            SubscriptionType::Exclusive
        },
        initial: InitialPosition::Latest,
        owned: true,
        delete_on_close: !durable,
        lookup: false,
        browse: false,
        partitions: 0,
        no_local: false,
    }
}

/// A random UUID (version 4) in its usual text form.
pub(crate) fn random_name() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

impl Outgoing {
    /// Attaches the client's receiving link to the queue its source names, or refuses it.
    pub async fn attach(
        session: &Session,
        attach: Attach,
        ctx: &Ctx<'_>,
        id: u64,
    ) -> Result<Option<Outgoing>, Fail> {
        let channel = session.channel;
        let Some(source) = attach.source.as_deref() else {
            return Self::lookup(session, attach, ctx, id).await;
        };
        if source.dynamic {
            return refuse(
                channel,
                &attach,
                AmqpError::NotImplemented,
                "dynamic sources are not supported yet",
                ctx,
            )
            .await;
        }
        // Selectors and no-local are served; the answer's source echoes them (docs/jms.md).
        let filters = match source.filter.as_ref().map(crate::selector::from_filters) {
            None => Default::default(),
            Some(Ok(filters)) => filters,
            Some(Err(FilterError::Invalid(e))) => {
                return refuse(channel, &attach, AmqpError::InvalidField, e, ctx).await;
            }
            Some(Err(FilterError::Unsupported(name))) => {
                return refuse(
                    channel,
                    &attach,
                    AmqpError::NotImplemented,
                    format!("the filter '{name}' is not supported, only selectors and no-local"),
                    ctx,
                )
                .await;
            }
        };
        let Some(address) = source.address.as_deref() else {
            return refuse(
                channel,
                &attach,
                AmqpError::InvalidField,
                "a receiving link needs a source address",
                ctx,
            )
            .await;
        };
        let Some(topic) = ctx.frontend.topic(address) else {
            return refuse(
                channel,
                &attach,
                AmqpError::InvalidField,
                format!("'{address}' is not a valid queue name"),
                ctx,
            )
            .await;
        };
        let on_topic = has_capability(source.capabilities.as_ref(), "topic")
            || has_capability(source.capabilities.as_ref(), "temporary-topic");
        let mut plan = if on_topic {
            let durable = !matches!(source.durable, TerminusDurability::None);
            topic_subscription(&attach, durable, ctx.container_id)
        } else {
            let mut plan = Plan::queue(ctx.frontend.config.queue_subscription.clone());
            plan.browse = matches!(source.distribution_mode, Some(DistributionMode::Copy));
            plan
        };
        let subscription = plan.name.clone();
        let client = ctx
            .login
            .pulsar_token()
            .and_then(|t| ctx.frontend.backend.as_client(t.expose()));
        let allowed = match client {
            Some(client) => Some(
                client
                    .may_subscribe(&topic.tenant, &topic.namespace, &subscription)
                    .await,
            ),
            None => None,
        };
        plan.partitions = match super::admit(
            ctx,
            allowed,
            "no consume permission",
            address,
            &topic,
            on_topic,
        )
        .await
        {
            Ok(partitions) => partitions,
            Err((condition, text)) => return refuse(channel, &attach, condition, text, ctx).await,
        };
        if plan.browse && plan.partitions > 0 {
            return refuse(
                channel,
                &attach,
                AmqpError::NotImplemented,
                format!("'{address}' is partitioned: browsing it is not supported yet"),
                ctx,
            )
            .await;
        }
        if plan.owned && !plan.delete_on_close {
            ctx.frontend
                .remember_subscription(&subscription, &topic)
                .await;
        }
        // The subscription exists before the client hears the link is attached, so a topic
        // subscriber gets what is published once its attach is answered.
        // JMS: no-local means something on a topic only.
        plan.no_local = filters.no_local && on_topic;
        if plan.no_local {
            ctx.origin.marking.store(true, Ordering::Release);
        }
        let selector = filters.selector.map(Arc::new);
        let mut link = Self::start(channel, &attach, ctx, id, topic, plan, selector);
        link.subscribed().await;
        let mut answer = super::answer(&attach, Role::Sender);
        answer.initial_delivery_count = Some(0);
        ctx.out.send(channel, Performative::Attach(answer)).await?;
        tracing::debug!(link = %attach.name, address = %address, subscription = %subscription, "receiving link attached");
        Ok(Some(link))
    }

    /// A receiving link with a null source: Qpid JMS's unsubscribe looks the durable
    /// subscription named by the link up this way, then detaches with `closed`, which deletes
    /// it. An unknown one is answered with a null source and `amqp:not-found`.
    async fn lookup(
        session: &Session,
        attach: Attach,
        ctx: &Ctx<'_>,
        id: u64,
    ) -> Result<Option<Outgoing>, Fail> {
        let channel = session.channel;
        let mut plan = topic_subscription(&attach, true, ctx.container_id);
        plan.lookup = true;
        let found = match ctx.frontend.find_subscription(&plan.name).await {
            Ok(found) => found,
            Err(e) => {
                return refuse(
                    channel,
                    &attach,
                    AmqpError::InternalError,
                    e.to_string(),
                    ctx,
                )
                .await
            }
        };
        let Some(topic) = found else {
            return refuse(
                channel,
                &attach,
                AmqpError::NotFound,
                format!("Unknown subscription link '{}'", attach.name),
                ctx,
            )
            .await;
        };
        plan.partitions = match ctx.frontend.backend.topic_info(&topic).await {
            Ok(info) => info.map_or(0, |info| info.partitions),
            Err(e) => {
                return refuse(
                    channel,
                    &attach,
                    AmqpError::InternalError,
                    e.to_string(),
                    ctx,
                )
                .await
            }
        };
        let mut capabilities = vec![Symbol::from("topic")];
        if plan.kind == SubscriptionType::Shared {
            capabilities.push(Symbol::from("shared"));
        }
        let source = Source {
            address: Some(topic.local.clone()),
            durable: TerminusDurability::UnsettledState,
            expiry_policy: TerminusExpiryPolicy::Never,
            distribution_mode: Some(DistributionMode::Copy),
            capabilities: Some(Array(capabilities)),
            ..Default::default()
        };
        let mut answer = super::answer(&attach, Role::Sender);
        answer.source = Some(Box::new(source));
        answer.initial_delivery_count = Some(0);
        ctx.out.send(channel, Performative::Attach(answer)).await?;
        tracing::debug!(link = %attach.name, subscription = %plan.name, "durable subscription looked up");
        Ok(Some(Self::start(
            channel, &attach, ctx, id, topic, plan, None,
        )))
    }

    /// Starts the task that owns the link's consumer.
    fn start(
        channel: u16,
        attach: &Attach,
        ctx: &Ctx<'_>,
        id: u64,
        topic: TopicName,
        plan: Plan,
        selector: Option<Arc<Selector>>,
    ) -> Outgoing {
        let presettled = matches!(attach.snd_settle_mode, SenderSettleMode::Settled);
        let delete = Arc::new(AtomicBool::new(plan.delete_on_close));

        let (commands, commands_rx) = mpsc::unbounded_channel();
        let allowance = Arc::new(AtomicU32::new(0));
        let wake = Arc::new(Notify::new());
        let drain_asked = Arc::new(AtomicBool::new(false));
        if plan.browse {
            let task = super::browser::BrowserTask {
                backend: ctx.frontend.backend.clone(),
                topic,
                subscription: plan.name,
                selector,
                allowance: allowance.clone(),
                wake: wake.clone(),
                drain_asked: drain_asked.clone(),
                commands: commands_rx,
                events: ctx.events.clone(),
                channel,
                handle: attach.handle.0,
                link_id: id,
            };
            tokio::spawn(task.run());
            return Outgoing {
                id,
                delivery_count: 0,
                credit: 0,
                drain: false,
                queued: VecDeque::new(),
                presettled,
                allowance,
                wake,
                commands,
                owned: false,
                delete,
                drain_asked,
                nothing_more: false,
                reads_nothing: false,
                subscribed: None,
                ended: None,
            };
        }
        let (subscribed, subscribed_rx) = oneshot::channel();
        let (ended, ended_rx) = oneshot::channel();
        let task = ConsumerTask {
            subscribed: Some(subscribed),
            _ended: ended,
            counts_key: format!("{topic}|{}", plan.name),
            drain_asked: drain_asked.clone(),
            backend: ctx.frontend.backend.clone(),
            topic,
            subscription: plan.name,
            kind: plan.kind,
            initial: plan.initial,
            partitions: plan.partitions,
            no_local: plan.no_local.then(|| ctx.origin.id.clone()),
            lookup: plan.lookup,
            delete: delete.clone(),
            frontend: ctx.frontend.clone(),
            allowance: allowance.clone(),
            wake: wake.clone(),
            commands: commands_rx,
            events: ctx.events.clone(),
            channel,
            handle: attach.handle.0,
            link_id: id,
            selector,
            skip_unselected: plan.owned,
            parked: Vec::new(),
            parked_since: None,
            released: Vec::new(),
            released_since: None,
            delayed: Held::default(),
        };
        tokio::spawn(task.run());
        Outgoing {
            id,
            delivery_count: 0,
            credit: 0,
            drain: false,
            drain_asked,
            nothing_more: false,
            reads_nothing: plan.lookup,
            subscribed: Some(subscribed_rx),
            ended: Some(ended_rx),
            queued: VecDeque::new(),
            presettled,
            allowance,
            wake,
            commands,
            owned: plan.owned,
            delete,
        }
    }

    /// Waits (within a hang guard) until the link's consumer exists, or failed to.
    async fn subscribed(&mut self) {
        if let Some(rx) = self.subscribed.take() {
            let _ = tokio::time::timeout(LIFECYCLE_WAIT, rx).await;
        }
    }

    /// What resolves once the link's consumer task ended, its consumer closed; the link is to
    /// be dropped before waiting for it.
    pub fn ended(&mut self) -> Option<oneshot::Receiver<()>> {
        self.ended.take()
    }

    /// The client detached the link with `closed`: a topic subscription the link owns is
    /// deleted with it (a durable one's unsubscribe), a queue's subscription never is.
    pub fn closed(&self) {
        if self.owned {
            self.delete.store(true, Ordering::Release);
        }
    }

    /// The client's flow for this link: its credit, counted from our delivery-count (§2.6.7).
    pub fn on_flow(&mut self, flow: &Flow) {
        // A new flow is a new question: what the task said of an earlier one is stale (a drain
        // still open is asked again in `after_pump`).
        self.nothing_more = false;
        let theirs = flow.delivery_count.unwrap_or(0);
        let credit = flow.link_credit.unwrap_or(0);
        self.credit = theirs
            .wrapping_add(credit)
            .wrapping_sub(self.delivery_count);
        // A delivery-count ahead of ours would wrap to a huge credit; take it as none.
        if self.credit > credit {
            self.credit = 0;
        }
        self.drain = flow.drain;
    }

    pub fn command(&self, command: Command) {
        let _ = self.commands.send(command);
    }

    /// Where commands for the link's consumer task go (a transaction keeps it for its end).
    pub fn commands(&self) -> mpsc::UnboundedSender<Command> {
        self.commands.clone()
    }

    /// The transfer frames of one delivery; it uses one credit.
    pub fn transfer(
        &mut self,
        channel: u16,
        handle: u32,
        delivery_id: u32,
        message: &ReceivedMessage,
        max_frame: u32,
    ) -> Result<Vec<Bytes>, Fail> {
        let payload = crate::message::from_pulsar(&message.message, message.redelivery_count);
        let transfer = Transfer {
            handle: Handle(handle),
            delivery_id: Some(delivery_id),
            delivery_tag: Some(delivery_id.to_be_bytes().to_vec().into()),
            message_format: Some(0),
            settled: Some(self.presettled),
            more: false,
            rcv_settle_mode: None,
            state: None,
            resume: false,
            aborted: false,
            batchable: false,
        };
        let frames = crate::frame::encode_transfer(channel, transfer, &payload, max_frame)
            .map_err(|e| Fail::connection(AmqpError::FrameSizeTooSmall, e.to_string()))?;
        self.credit -= 1;
        self.delivery_count = self.delivery_count.wrapping_add(1);
        if self.credit == 0 {
            // A drain ends when the credit is used up: nothing is left for the task to answer.
            self.drain = false;
            self.drain_asked.store(false, Ordering::Release);
        }
        Ok(frames)
    }

    /// After sending what could be sent: tells the consumer task how much more to read, and
    /// when the client asked to drain and nothing is left to send, uses the credit up.
    /// Returns the (delivery-count, credit) to report when it drained.
    pub fn after_pump(&mut self) -> Option<(u32, u32)> {
        let mut drained = None;
        if self.drain && self.credit > 0 && self.queued.is_empty() {
            // It waits for the task to find nothing more (see `drain_asked`); a browser's task
            // reads up to the end of the queue.
            if self.nothing_more || self.reads_nothing {
                self.delivery_count = self.delivery_count.wrapping_add(self.credit);
                self.credit = 0;
                self.drain = false;
                self.nothing_more = false;
                drained = Some((self.delivery_count, 0));
            } else {
                self.drain_asked.store(true, Ordering::Release);
            }
        }
        let wanted = self
            .credit
            .saturating_sub(self.queued.len() as u32)
            .min(READ_AHEAD.saturating_sub(self.queued.len() as u32));
        self.allowance.store(wanted, Ordering::Release);
        if wanted > 0 {
            self.wake.notify_one();
        }
        drained
    }
}

async fn refuse(
    channel: u16,
    attach: &Attach,
    condition: impl Into<fe2o3_amqp_types::definitions::ErrorCondition>,
    text: impl Into<String>,
    ctx: &Ctx<'_>,
) -> Result<Option<Outgoing>, Fail> {
    super::refuse(channel, attach, condition, text, ctx).await?;
    Ok(None)
}
