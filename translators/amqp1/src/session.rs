//! One session (core spec §2.5): its transfer windows, its links by handle, and the deliveries
//! it sent that the client has not settled yet. Link attach, flow, transfer, disposition and
//! detach (§2.6, §2.7) arrive here and go to `link::incoming` (client → Pulsar) or
//! `link::outgoing` (Pulsar → client).

use std::collections::{BTreeMap, HashMap, HashSet};

use bytes::Bytes;
use fe2o3_amqp_types::definitions::{AmqpError, Error, Handle, Role, SessionError};
use std::sync::Mutex;

use fe2o3_amqp_types::messaging::{DeliveryState, Outcome};
use fe2o3_amqp_types::performatives::{
    Attach, Begin, Detach, Disposition, Flow, Performative, Transfer,
};
use gateway_core::MessageId;

use crate::connection::{Command, Ctx, Event, Fail};
use crate::link::{incoming::Incoming, outgoing::Outgoing, Link};
use crate::transaction::Transactions;

/// Transfer frames the gateway takes before it widens the window again (§2.5.6).
const INCOMING_WINDOW: u32 = 2048;
/// Handles a client may use (0..=HANDLE_MAX).
const HANDLE_MAX: u32 = 1023;

/// A delivery sent to the client and not yet settled by it.
struct Unsettled {
    handle: u32,
    link_id: u64,
    message: MessageId,
}

pub(crate) struct Session {
    pub channel: u16,
    next_incoming_id: u32,
    incoming_window: u32,
    pub next_outgoing_id: u32,
    /// How many more transfer frames the client takes (its incoming window, as last known).
    pub remote_incoming_window: u32,
    pub next_delivery_id: u32,
    links: HashMap<u32, Link>,
    /// Handles the gateway detached (refused, or with an error) whose detach the client has
    /// yet to answer: frames on them are ignored until then (§2.6.5).
    detaching: HashSet<u32>,
    unsettled: BTreeMap<u32, Unsettled>,
}

impl Session {
    /// The session for the client's begin, and the begin that answers it.
    pub fn begin(channel: u16, theirs: &Begin) -> (Session, Begin) {
        let session = Session {
            channel,
            next_incoming_id: theirs.next_outgoing_id,
            incoming_window: INCOMING_WINDOW,
            next_outgoing_id: 0,
            remote_incoming_window: theirs.incoming_window,
            next_delivery_id: 0,
            links: HashMap::new(),
            detaching: HashSet::new(),
            unsettled: BTreeMap::new(),
        };
        let ours = Begin {
            remote_channel: Some(channel),
            next_outgoing_id: 0,
            incoming_window: INCOMING_WINDOW,
            outgoing_window: u32::MAX,
            handle_max: Handle(HANDLE_MAX),
            offered_capabilities: None,
            desired_capabilities: None,
            properties: None,
        };
        (session, ours)
    }

    /// The session's state as flow frames carry it (§2.7.4).
    pub fn session_flow(&self) -> SessionFlow {
        SessionFlow {
            next_incoming_id: self.next_incoming_id,
            incoming_window: self.incoming_window,
            next_outgoing_id: self.next_outgoing_id,
        }
    }

    /// A flow frame with the session's state and, given `(handle, delivery-count, credit)`, a
    /// link's.
    pub fn flow(&self, link: Option<(u32, u32, u32)>, drain: bool) -> Performative {
        self.session_flow().performative(link, drain)
    }

    /// Links attached on this session.
    pub fn links(&self) -> usize {
        self.links.len()
    }

    /// Turns an attach down (§2.6.3) and waits for the client's detach.
    pub async fn refuse(
        &mut self,
        attach: Attach,
        condition: impl Into<fe2o3_amqp_types::definitions::ErrorCondition>,
        text: String,
        ctx: &Ctx<'_>,
    ) -> Result<(), Fail> {
        crate::link::refuse(self.channel, &attach, condition, text, ctx).await?;
        self.detaching.insert(attach.handle.0);
        Ok(())
    }

    pub async fn on_performative(
        &mut self,
        p: Performative,
        payload: Bytes,
        ctx: &Ctx<'_>,
        next_link_id: &mut u64,
    ) -> Result<(), Fail> {
        match p {
            Performative::Attach(attach) => {
                *next_link_id += 1;
                self.on_attach(attach, ctx, *next_link_id).await
            }
            Performative::Flow(flow) => self.on_flow(flow, ctx).await,
            Performative::Transfer(transfer) => self.on_transfer(transfer, payload, ctx).await,
            Performative::Disposition(d) => self.on_disposition(d, ctx).await,
            Performative::Detach(detach) => self.on_detach(detach, ctx).await,
            other => Err(Fail::connection(
                AmqpError::NotAllowed,
                format!("{other:?} is not a session performative"),
            )),
        }
    }

    async fn on_attach(&mut self, attach: Attach, ctx: &Ctx<'_>, link_id: u64) -> Result<(), Fail> {
        let handle = attach.handle.0;
        if handle > HANDLE_MAX {
            return Err(Fail::connection(
                AmqpError::NotAllowed,
                format!("handle {handle} is above handle-max {HANDLE_MAX}"),
            ));
        }
        self.detaching.remove(&handle);
        if self.links.contains_key(&handle) {
            return Err(Fail::session(
                SessionError::HandleInUse,
                format!("handle {handle} is attached"),
            ));
        }
        // The client's role names its end: a sender publishes to us, a receiver reads.
        let link = match attach.role {
            Role::Sender => Incoming::attach(self, attach, ctx, link_id)
                .await?
                .map(Link::Incoming),
            Role::Receiver => Outgoing::attach(self, attach, ctx, link_id)
                .await?
                .map(Link::Outgoing),
        };
        match link {
            Some(link) => {
                self.links.insert(handle, link);
            }
            None => {
                self.detaching.insert(handle);
            }
        }
        Ok(())
    }

    async fn on_flow(&mut self, flow: Flow, ctx: &Ctx<'_>) -> Result<(), Fail> {
        // §2.5.6: the client's window, counted from what we have sent.
        self.remote_incoming_window = match flow.next_incoming_id {
            Some(next) => next
                .wrapping_add(flow.incoming_window)
                .wrapping_sub(self.next_outgoing_id),
            None => flow.incoming_window,
        };
        if let Some(handle) = flow
            .handle
            .as_ref()
            .map(|h| h.0)
            .filter(|h| !self.detaching.contains(h))
        {
            match self.links.get_mut(&handle) {
                Some(Link::Outgoing(link)) => link.on_flow(&flow),
                Some(Link::Incoming(_)) => {}
                None => return Err(unattached(handle)),
            }
            if flow.echo {
                let state = match self.links.get(&handle) {
                    Some(Link::Outgoing(l)) => (l.delivery_count, l.credit),
                    Some(Link::Incoming(l)) => (l.delivery_count, l.credit),
                    None => (0, 0),
                };
                let reply = self.flow(Some((handle, state.0, state.1)), false);
                ctx.out.send(self.channel, reply).await?;
            }
        } else if flow.echo {
            ctx.out.send(self.channel, self.flow(None, false)).await?;
        }
        // A wider window or more credit may let queued messages go.
        let handles: Vec<u32> = self.links.keys().copied().collect();
        for handle in handles {
            self.pump(handle, ctx).await?;
        }
        Ok(())
    }

    async fn on_transfer(
        &mut self,
        transfer: Transfer,
        payload: Bytes,
        ctx: &Ctx<'_>,
    ) -> Result<(), Fail> {
        if self.incoming_window == 0 {
            return Err(Fail::session(
                SessionError::WindowViolation,
                "transfer beyond the session's incoming window",
            ));
        }
        self.next_incoming_id = self.next_incoming_id.wrapping_add(1);
        self.incoming_window -= 1;
        if self.incoming_window <= INCOMING_WINDOW / 2 {
            self.incoming_window = INCOMING_WINDOW;
            ctx.out.send(self.channel, self.flow(None, false)).await?;
        }
        let handle = transfer.handle.0;
        if self.detaching.contains(&handle) {
            return Ok(());
        }
        let link = match self.links.get_mut(&handle) {
            Some(Link::Incoming(link)) => link,
            Some(Link::Outgoing(_)) => {
                return Err(Fail::session(
                    AmqpError::NotAllowed,
                    format!("transfer on link {handle}, on which the gateway is the sender"),
                ))
            }
            None => return Err(unattached(handle)),
        };
        if let Err(error) = link
            .on_transfer(transfer, payload, self.channel, ctx)
            .await?
        {
            self.detach_with(handle, error, ctx).await?;
        }
        Ok(())
    }

    async fn on_disposition(&mut self, d: Disposition, ctx: &Ctx<'_>) -> Result<(), Fail> {
        // Dispositions from the client as sender settle our accepts, which are always settled.
        if d.role != Role::Receiver {
            return Ok(());
        }
        let last = d.last.unwrap_or(d.first);
        let terminal = !matches!(d.state, None | Some(DeliveryState::Received(_)));
        if !d.settled && !terminal {
            return Ok(());
        }
        let ids: Vec<u32> = self
            .unsettled
            .range(d.first..=last.max(d.first))
            .map(|(id, _)| *id)
            .collect();
        let mut commands: HashMap<(u32, u64), [Vec<MessageId>; 3]> = HashMap::new();
        for id in ids {
            let Some(u) = self.unsettled.remove(&id) else {
                continue;
            };
            if let Some(DeliveryState::TransactionalState(state)) = &d.state {
                // Settled in a transaction: acknowledged (or handed back) when it ends.
                if let Some(Link::Outgoing(link)) = self.links.get(&u.handle) {
                    let accepted = matches!(state.outcome, Some(Outcome::Accepted(_)));
                    let kept = ctx.transactions.lock().expect("transactions lock").settle(
                        &state.txn_id,
                        link.commands().downgrade(),
                        u.message,
                        accepted,
                    );
                    if kept.is_ok() {
                        continue;
                    }
                }
            }
            let [acks, nacks, releases] = commands.entry((u.handle, u.link_id)).or_default();
            match &d.state {
                // Rejected: discarded, as no dead-letter queue is kept yet (docs/jms.md).
                Some(DeliveryState::Accepted(_)) | Some(DeliveryState::Rejected(_)) => {
                    acks.push(u.message)
                }
                Some(DeliveryState::Released(_)) => releases.push(u.message),
                // Modified without delivery-failed is no delivery attempt either (§3.4.5).
                Some(DeliveryState::Modified(m)) if m.delivery_failed != Some(true) => {
                    releases.push(u.message)
                }
                // In a transaction that is not there (any more): as outside one.
                Some(DeliveryState::TransactionalState(state)) => match &state.outcome {
                    Some(Outcome::Accepted(_)) | Some(Outcome::Rejected(_)) => acks.push(u.message),
                    Some(Outcome::Released(_)) => releases.push(u.message),
                    Some(Outcome::Modified(m)) if m.delivery_failed != Some(true) => {
                        releases.push(u.message)
                    }
                    _ => nacks.push(u.message),
                },
                // Modified, or settled with no outcome: delivered again.
                _ => nacks.push(u.message),
            }
        }
        for ((handle, link_id), [acks, nacks, releases]) in commands {
            if let Some(Link::Outgoing(link)) = self.links.get(&handle) {
                if link.id == link_id {
                    for (ids, command) in [
                        (acks, Command::Ack as fn(Vec<MessageId>) -> Command),
                        (nacks, Command::Nack),
                        (releases, Command::Release),
                    ] {
                        if !ids.is_empty() {
                            link.command(command(ids));
                        }
                    }
                }
            }
        }
        if !d.settled && terminal {
            // The client waits for us to settle (receiver-settle-mode second, §2.6.12).
            let settle = Disposition {
                role: Role::Sender,
                first: d.first,
                last: d.last,
                settled: true,
                state: d.state,
                batchable: false,
            };
            ctx.out
                .send(self.channel, Performative::Disposition(settle))
                .await?;
        }
        Ok(())
    }

    async fn on_detach(&mut self, detach: Detach, ctx: &Ctx<'_>) -> Result<(), Fail> {
        let handle = detach.handle.0;
        if self.detaching.remove(&handle) {
            // The client's answer to our detach.
            return Ok(());
        }
        let Some(mut link) = self.links.remove(&handle) else {
            return Err(unattached(handle));
        };
        self.forget(handle, &link, ctx.transactions);
        let mut ended = None;
        if let Link::Outgoing(l) = &mut link {
            if detach.closed {
                l.closed();
            }
            ended = l.ended();
        }
        // The detach is answered once the link's consumer closed: a client closing a consumer
        // and opening another must not have the new one read while the old one still holds
        // messages, or it would get later messages before those.
        drop(link);
        if let Some(ended) = ended {
            let _ = tokio::time::timeout(crate::link::outgoing::LIFECYCLE_WAIT, ended).await;
        }
        if let Some(error) = detach.error {
            tracing::debug!(?error, handle, "client detached a link with an error");
        }
        let reply = Detach {
            handle: Handle(handle),
            closed: detach.closed,
            error: None,
        };
        ctx.out
            .send(self.channel, Performative::Detach(reply))
            .await
    }

    /// Drops what the session holds for a link that is going; its consumer closes when the link
    /// is dropped, and Pulsar hands what the client had not settled to the next consumer, in
    /// order and not counted as delivered: as Artemis does when Qpid JMS closes a consumer and
    /// leaves what it had prefetched unsettled.
    fn forget(&mut self, handle: u32, link: &Link, transactions: &Mutex<Transactions>) {
        match link {
            Link::Outgoing(l) => self
                .unsettled
                .retain(|_, u| !(u.handle == handle && u.link_id == l.id)),
            // A coordinator that goes rolls back what it declared and did not discharge.
            Link::Incoming(l) if l.coordinator => {
                let orphaned = transactions
                    .lock()
                    .expect("transactions lock")
                    .orphaned(l.id);
                for transaction in orphaned {
                    transaction.roll_back();
                }
            }
            Link::Incoming(_) => {}
        }
    }

    /// The session ends: its coordinators' transactions are rolled back while the links their
    /// deliveries came from are still there to hand them back.
    pub fn end(&mut self, transactions: &Mutex<Transactions>) {
        let links: Vec<(u32, Link)> = self.links.drain().collect();
        for (handle, link) in &links {
            self.forget(*handle, link, transactions);
        }
    }

    /// Detaches a link with an error (closing it, §2.6.5).
    pub async fn detach_with(
        &mut self,
        handle: u32,
        error: Error,
        ctx: &Ctx<'_>,
    ) -> Result<(), Fail> {
        if let Some(link) = self.links.remove(&handle) {
            self.forget(handle, &link, ctx.transactions);
        }
        self.detaching.insert(handle);
        let detach = Detach {
            handle: Handle(handle),
            closed: true,
            error: Some(error),
        };
        ctx.out
            .send(self.channel, Performative::Detach(detach))
            .await
    }

    pub async fn on_event(&mut self, event: Event, ctx: &Ctx<'_>) -> Result<(), Fail> {
        match event {
            Event::Persisted {
                handle,
                link_id,
                delivery_id,
                outcome,
                ..
            } => {
                let flow = self.session_flow();
                let link = match self.links.get_mut(&handle) {
                    Some(Link::Incoming(link)) if link.id == link_id => Some(link),
                    _ => None,
                };
                crate::link::incoming::persisted(
                    self.channel,
                    handle,
                    link,
                    delivery_id,
                    outcome,
                    flow,
                    ctx,
                )
                .await
            }
            Event::Delivered {
                handle,
                link_id,
                messages,
                ..
            } => {
                match self.links.get_mut(&handle) {
                    Some(Link::Outgoing(link)) if link.id == link_id => {
                        link.queued.extend(messages)
                    }
                    // The link is gone: its consumer is closing, and Pulsar redelivers these.
                    _ => return Ok(()),
                }
                self.pump(handle, ctx).await
            }
            Event::NothingMore {
                handle, link_id, ..
            } => {
                match self.links.get_mut(&handle) {
                    Some(Link::Outgoing(link)) if link.id == link_id => link.nothing_more = true,
                    _ => return Ok(()),
                }
                self.pump(handle, ctx).await
            }
            Event::LinkFailed {
                handle,
                link_id,
                error,
                ..
            } => match self.links.get(&handle) {
                Some(link) if link.id() == link_id => self.detach_with(handle, error, ctx).await,
                _ => Ok(()),
            },
        }
    }

    /// Sends an outgoing link's queued messages as far as its credit and the session window go.
    async fn pump(&mut self, handle: u32, ctx: &Ctx<'_>) -> Result<(), Fail> {
        let Some(Link::Outgoing(link)) = self.links.get_mut(&handle) else {
            return Ok(());
        };
        while link.credit > 0 && self.remote_incoming_window > 0 {
            let Some(message) = link.queued.pop_front() else {
                break;
            };
            let delivery_id = self.next_delivery_id;
            self.next_delivery_id = self.next_delivery_id.wrapping_add(1);
            let frames = link.transfer(
                self.channel,
                handle,
                delivery_id,
                &message,
                ctx.out.max_frame,
            )?;
            let n = frames.len() as u32;
            self.next_outgoing_id = self.next_outgoing_id.wrapping_add(n);
            // A delivery starts only with window left, and is sent whole (docs/jms.md).
            self.remote_incoming_window = self.remote_incoming_window.saturating_sub(n);
            for f in frames {
                ctx.out.raw(f).await?;
            }
            metrics::counter!("amqp1_messages_delivered_total").increment(1);
            if link.presettled {
                link.command(Command::Ack(vec![message.id]));
            } else {
                self.unsettled.insert(
                    delivery_id,
                    Unsettled {
                        handle,
                        link_id: link.id,
                        message: message.id,
                    },
                );
            }
        }
        if let Some((delivery_count, credit)) = link.after_pump() {
            // §2.6.7: a drained link reports its credit used up, with drain still set.
            let flow = SessionFlow {
                next_incoming_id: self.next_incoming_id,
                incoming_window: self.incoming_window,
                next_outgoing_id: self.next_outgoing_id,
            };
            let flow = flow.performative(Some((handle, delivery_count, credit)), true);
            ctx.out.send(self.channel, flow).await?;
        }
        Ok(())
    }
}

/// The session fields a flow frame carries, taken while a link is borrowed.
pub(crate) struct SessionFlow {
    next_incoming_id: u32,
    incoming_window: u32,
    next_outgoing_id: u32,
}

impl SessionFlow {
    pub fn performative(&self, link: Option<(u32, u32, u32)>, drain: bool) -> Performative {
        let (handle, delivery_count, link_credit) = match link {
            Some((h, d, c)) => (Some(Handle(h)), Some(d), Some(c)),
            None => (None, None, None),
        };
        Performative::Flow(Flow {
            next_incoming_id: Some(self.next_incoming_id),
            incoming_window: self.incoming_window,
            next_outgoing_id: self.next_outgoing_id,
            outgoing_window: u32::MAX,
            handle,
            delivery_count,
            link_credit,
            available: None,
            drain,
            echo: false,
            properties: None,
        })
    }
}

fn unattached(handle: u32) -> Fail {
    Fail::session(
        SessionError::UnattachedHandle,
        format!("no link is attached on handle {handle}"),
    )
}
