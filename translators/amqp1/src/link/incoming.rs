//! A link on which the client sends (it attached as sender): deliveries, possibly over many
//! transfer frames, are put back together, stored in Pulsar, and settled with `accepted` only
//! when Pulsar has persisted them (core spec §2.6.12, §3.4). Credit is a window of messages not
//! yet persisted: it is given back as the backend persists, so a slow backend slows the client
//! instead of filling the gateway's memory.

use bytes::Bytes;
use fe2o3_amqp_types::definitions::{
    AmqpError, Error, ErrorCondition, LinkError, Role, SenderSettleMode,
};
use fe2o3_amqp_types::messaging::annotations::OwnedKey;
use fe2o3_amqp_types::messaging::{
    Accepted, DeliveryState, MessageAnnotations, Outcome, Properties, Rejected, TargetArchetype,
};
use fe2o3_amqp_types::performatives::{Attach, Disposition, Performative, Transfer};
use fe2o3_amqp_types::primitives::Value;
use fe2o3_amqp_types::transaction::TransactionalState;
use gateway_core::{EntryToSend, TopicName};

use crate::connection::{Ctx, Event, Fail};
use crate::session::{Session, SessionFlow};

/// Messages a client may have on their way to Pulsar per link.
const CREDIT: u32 = 256;

/// A delivery whose frames are still arriving.
struct Partial {
    delivery_id: u32,
    settled: bool,
    bytes: Vec<u8>,
    /// The transaction it is sent in (its transfers' transactional state), if any.
    transaction: Option<Vec<u8>>,
}

pub(crate) struct Incoming {
    pub id: u64,
    /// Where messages go; none on the anonymous relay, where each message's `to` says.
    topic: Option<TopicName>,
    /// Which partition of a partitioned destination this link writes to (modulo their count).
    partition_pick: u32,
    pub credit: u32,
    pub delivery_count: u32,
    /// Messages handed to the backend and not yet persisted.
    unpersisted: u32,
    partial: Option<Partial>,
    max_message: u64,
    /// A coordinator link (§4.2): it carries transaction control messages, not messages.
    pub coordinator: bool,
}

impl Incoming {
    /// Attaches the client's sending link to the queue its target names, or refuses it.
    pub async fn attach(
        session: &Session,
        attach: Attach,
        ctx: &Ctx<'_>,
        id: u64,
    ) -> Result<Option<Incoming>, Fail> {
        let channel = session.channel;
        let target = match attach.target.as_deref() {
            Some(TargetArchetype::Target(t)) => t,
            Some(TargetArchetype::Coordinator(_)) => {
                return Ok(Some(Self::unbound(session, &attach, ctx, id, true).await?));
            }
            None => {
                return refuse(
                    channel,
                    &attach,
                    AmqpError::InvalidField,
                    "a sending link needs a target",
                    ctx,
                )
                .await;
            }
        };
        let temporary_name;
        let address = if target.dynamic {
            // A temporary queue or topic (Qpid JMS's temp-queue-creator and
            // temp-topic-creator links), named as Starlight for JMS names them; it lives as long
            // as the connection (lifetime-policy delete-on-close).
            let kind = if has_capability(target.capabilities.as_ref(), "temporary-topic") {
                "topic"
            } else {
                "queue"
            };
            temporary_name = format!("jms-temp-{kind}-{}", super::outgoing::random_name());
            Some(temporary_name.as_str())
        } else {
            target.address.as_deref()
        };
        let Some(address) = address else {
            // The anonymous relay: each message names its destination (its `to`).
            return Ok(Some(Self::unbound(session, &attach, ctx, id, false).await?));
        };
        // A topic is the Pulsar topic of its name, as a queue is (Starlight for JMS maps both
        // the same way); only a queue gets the `jms-queue` subscription.
        let is_topic = has_capability(target.capabilities.as_ref(), "topic")
            || has_capability(target.capabilities.as_ref(), "temporary-topic");
        let dynamic = target.dynamic;
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
        let client = ctx
            .login
            .pulsar_token()
            .and_then(|t| ctx.frontend.backend.as_client(t.expose()));
        let allowed = match client {
            Some(client) => Some(client.may_produce(&topic).await),
            None => None,
        };
        let partitions = match super::admit(
            ctx,
            allowed,
            "no produce permission",
            address,
            &topic,
            is_topic,
        )
        .await
        {
            Ok(partitions) => partitions,
            Err((condition, text)) => return refuse(channel, &attach, condition, text, ctx).await,
        };
        let max_message = ctx.frontend.config.max_message_bytes;
        let mut answer = super::answer(&attach, Role::Receiver);
        answer.max_message_size = Some(max_message);
        if dynamic {
            ctx.temporaries
                .lock()
                .expect("temporaries lock")
                .push(topic.clone());
            // §3.5.3: the answer names the node made.
            if let Some(TargetArchetype::Target(t)) = answer.target.as_deref_mut() {
                t.address = Some(address.to_owned());
            }
        }
        ctx.out.send(channel, Performative::Attach(answer)).await?;
        let partition_pick = rand::random();
        let link = Incoming {
            id,
            topic: Some(one_partition(topic, partitions, partition_pick)),
            partition_pick,
            credit: CREDIT,
            // §2.6.7: the receiver takes the sender's initial delivery-count.
            delivery_count: attach.initial_delivery_count.unwrap_or(0),
            unpersisted: 0,
            partial: None,
            max_message,
            coordinator: false,
        };
        let flow = session.flow(
            Some((attach.handle.0, link.delivery_count, link.credit)),
            false,
        );
        ctx.out.send(channel, flow).await?;
        tracing::debug!(link = %attach.name, queue = %address, presettled = matches!(attach.snd_settle_mode, SenderSettleMode::Settled), "sending link attached");
        Ok(Some(link))
    }

    /// A sending link bound to no queue: with a null target (the anonymous relay, offered as
    /// `ANONYMOUS-RELAY`), or a coordinator target (transactions, §4.2).
    async fn unbound(
        session: &Session,
        attach: &Attach,
        ctx: &Ctx<'_>,
        id: u64,
        coordinator: bool,
    ) -> Result<Incoming, Fail> {
        let channel = session.channel;
        let max_message = ctx.frontend.config.max_message_bytes;
        let mut answer = super::answer(attach, Role::Receiver);
        answer.max_message_size = Some(max_message);
        ctx.out.send(channel, Performative::Attach(answer)).await?;
        let link = Incoming {
            id,
            topic: None,
            partition_pick: rand::random(),
            credit: CREDIT,
            delivery_count: attach.initial_delivery_count.unwrap_or(0),
            unpersisted: 0,
            partial: None,
            max_message,
            coordinator,
        };
        let flow = session.flow(
            Some((attach.handle.0, link.delivery_count, link.credit)),
            false,
        );
        ctx.out.send(channel, flow).await?;
        tracing::debug!(link = %attach.name, coordinator, "unbound sending link attached");
        Ok(link)
    }

    /// One transfer frame. `Ok(Err(error))`: the link must be detached with that error.
    pub async fn on_transfer(
        &mut self,
        transfer: Transfer,
        payload: Bytes,
        channel: u16,
        ctx: &Ctx<'_>,
    ) -> Result<Result<(), Error>, Fail> {
        if self.partial.is_none() {
            let Some(delivery_id) = transfer.delivery_id else {
                return Err(Fail::session(
                    AmqpError::InvalidField,
                    "the first transfer of a delivery has no delivery-id",
                ));
            };
            if self.credit == 0 {
                return Ok(Err(Error::new(
                    LinkError::TransferLimitExceeded,
                    Some("transfer beyond the link credit".to_string()),
                    None,
                )));
            }
            self.credit -= 1;
            self.delivery_count = self.delivery_count.wrapping_add(1);
            self.partial = Some(Partial {
                delivery_id,
                settled: false,
                bytes: Vec::new(),
                transaction: None,
            });
        }
        let partial = self.partial.as_mut().expect("set above");
        if transfer.aborted {
            // §2.6.14: an aborted delivery is dropped, and it needs no settling.
            self.partial = None;
            return Ok(Ok(()));
        }
        partial.settled |= transfer.settled.unwrap_or(false);
        if let Some(DeliveryState::TransactionalState(state)) = &transfer.state {
            partial.transaction = Some(state.txn_id.to_vec());
        }
        if (partial.bytes.len() + payload.len()) as u64 > self.max_message {
            self.partial = None;
            return Ok(Err(Error::new(
                LinkError::MessageSizeExceeded,
                Some(format!(
                    "a message is larger than the link's max-message-size {}",
                    self.max_message
                )),
                None,
            )));
        }
        partial.bytes.extend_from_slice(&payload);
        if transfer.more {
            return Ok(Ok(()));
        }
        let Partial {
            delivery_id,
            settled,
            bytes,
            transaction,
        } = self.partial.take().expect("set above");
        let handle = transfer.handle.0;
        if self.coordinator {
            let state = crate::transaction::control(&bytes, self.id, ctx).await;
            if !settled {
                settle(channel, delivery_id, state, ctx).await?;
            }
            self.give_back(channel, handle, ctx);
            return Ok(Ok(()));
        }
        let message = match crate::message::to_pulsar(&bytes, &|a| ctx.frontend.topic(a)) {
            Ok(mut m) => {
                ctx.origin.mark(&mut m);
                m
            }
            Err(reason) => {
                // A malformed message is rejected; the link and the session go on (§3.4.2).
                if !settled {
                    let error = Error::new(AmqpError::DecodeError, Some(reason), None);
                    settle(
                        channel,
                        delivery_id,
                        DeliveryState::Rejected(Rejected { error: Some(error) }),
                        ctx,
                    )
                    .await?;
                }
                self.credit += 1;
                return Ok(Ok(()));
            }
        };
        // Handing over waits while the backend is behind, which stops this connection's reads.
        let topic = match &self.topic {
            Some(topic) => topic.clone(),
            None => match relay_destination(&bytes, ctx).await {
                Ok((topic, partitions)) => one_partition(topic, partitions, self.partition_pick),
                Err((condition, text)) => {
                    if !settled {
                        let error = Error::new(condition, Some(text), None);
                        settle(
                            channel,
                            delivery_id,
                            DeliveryState::Rejected(Rejected { error: Some(error) }),
                            ctx,
                        )
                        .await?;
                    }
                    self.credit += 1;
                    return Ok(Ok(()));
                }
            },
        };
        if let Some(id) = transaction {
            // Kept until the transaction is discharged, bounded by the transaction's own limit.
            let kept = ctx
                .transactions
                .lock()
                .expect("transactions lock")
                .send(&id, topic, message);
            // The outcome goes in the transactional state (§4.4.1), refusals too.
            let outcome = match kept {
                Ok(()) => Outcome::Accepted(Accepted {}),
                Err(refused) => Outcome::Rejected(Rejected {
                    error: Some(refused.error()),
                }),
            };
            let state = DeliveryState::TransactionalState(TransactionalState {
                txn_id: id.into(),
                outcome: Some(outcome),
            });
            if !settled {
                settle(channel, delivery_id, state, ctx).await?;
            }
            self.give_back(channel, handle, ctx);
            return Ok(Ok(()));
        }
        // The message's bytes hold credit of the gateway-wide budget until persisted; without
        // any free, this connection waits (and stops reading) until others give theirs back.
        let credit = ctx.frontend.budget.acquire(bytes.len()).await;
        let entry = EntryToSend {
            messages: vec![message],
            dedup: None,
            coalesce: false,
        };
        let pending = match ctx.frontend.backend.submit(&topic, vec![entry]).await {
            Ok(pending) => pending,
            Err(e) => {
                metrics::counter!("amqp1_publish_failures_total", "stage" => "submit").increment(1);
                if !settled {
                    let error = Error::new(
                        AmqpError::InternalError,
                        Some(format!("not stored: {e}")),
                        None,
                    );
                    settle(
                        channel,
                        delivery_id,
                        DeliveryState::Rejected(Rejected { error: Some(error) }),
                        ctx,
                    )
                    .await?;
                }
                self.credit += 1;
                return Ok(Ok(()));
            }
        };
        self.unpersisted += 1;
        let events = ctx.events.clone();
        let link_id = self.id;
        tokio::spawn(async move {
            let outcome = pending.await.map(|_| ()).map_err(|e| e.to_string());
            drop(credit);
            if outcome.is_ok() {
                metrics::counter!("amqp1_messages_received_total").increment(1);
            }
            let _ = events
                .send(Event::Persisted {
                    channel,
                    handle,
                    link_id,
                    delivery_id: (!settled).then_some(delivery_id),
                    outcome,
                })
                .await;
        });
        Ok(Ok(()))
    }

    /// A delivery that writes nothing now (a transaction's message, or a control message) is
    /// done with: its credit comes back as a persisted message's does.
    fn give_back(&mut self, channel: u16, handle: u32, ctx: &Ctx<'_>) {
        self.unpersisted += 1;
        let (events, link_id) = (ctx.events.clone(), self.id);
        // Through the connection's own event queue, which this task must not wait on.
        tokio::spawn(async move {
            let _ = events
                .send(Event::Persisted {
                    channel,
                    handle,
                    link_id,
                    delivery_id: None,
                    outcome: Ok(()),
                })
                .await;
        });
    }
}

/// A message is persisted (or failed): settle it if the client waits for that, and give back
/// credit once half of it is used.
pub(crate) async fn persisted(
    channel: u16,
    handle: u32,
    link: Option<&mut Incoming>,
    delivery_id: Option<u32>,
    outcome: Result<(), String>,
    flow: SessionFlow,
    ctx: &Ctx<'_>,
) -> Result<(), Fail> {
    if let Some(delivery_id) = delivery_id {
        let state = match &outcome {
            Ok(()) => DeliveryState::Accepted(Accepted {}),
            Err(e) => {
                let error = Error::new(
                    AmqpError::InternalError,
                    Some(format!("not stored: {e}")),
                    None,
                );
                DeliveryState::Rejected(Rejected { error: Some(error) })
            }
        };
        settle(channel, delivery_id, state, ctx).await?;
    }
    if let Err(e) = &outcome {
        metrics::counter!("amqp1_publish_failures_total", "stage" => "persist").increment(1);
        tracing::debug!(error = %e, "AMQP 1.0 message not stored");
    }
    let Some(link) = link else { return Ok(()) };
    link.unpersisted = link.unpersisted.saturating_sub(1);
    if link.credit + link.unpersisted <= CREDIT / 2 {
        link.credit = CREDIT - link.unpersisted;
        let flow = flow.performative(Some((handle, link.delivery_count, link.credit)), false);
        ctx.out.send(channel, flow).await?;
    }
    Ok(())
}

async fn settle(
    channel: u16,
    delivery_id: u32,
    state: DeliveryState,
    ctx: &Ctx<'_>,
) -> Result<(), Fail> {
    let d = Disposition {
        role: Role::Receiver,
        first: delivery_id,
        last: None,
        settled: true,
        state: Some(state),
        batchable: false,
    };
    ctx.out.send(channel, Performative::Disposition(d)).await
}

async fn refuse(
    channel: u16,
    attach: &Attach,
    condition: impl Into<fe2o3_amqp_types::definitions::ErrorCondition>,
    text: impl Into<String>,
    ctx: &Ctx<'_>,
) -> Result<Option<Incoming>, Fail> {
    super::refuse(channel, attach, condition, text, ctx).await?;
    Ok(None)
}

pub(crate) fn has_capability(
    capabilities: Option<
        &fe2o3_amqp_types::primitives::Array<fe2o3_amqp_types::primitives::Symbol>,
    >,
    wanted: &str,
) -> bool {
    capabilities.is_some_and(|c| c.0.iter().any(|s| s.as_str() == wanted))
}

/// Where a link writes to `topic`: the topic, or when it has partitions, one of them for the
/// link's whole life. Messages carry no key here, and one partition keeps a producer's messages
/// in the order sent, which JMS promises (Pulsar's clients route unkeyed messages the same way,
/// `SinglePartition`).
fn one_partition(topic: TopicName, partitions: u32, pick: u32) -> TopicName {
    match partitions {
        0 => topic,
        n => topic.partition(pick % n),
    }
}

/// The destination of a message on the anonymous relay, with its partition count: its
/// properties' `to`, a queue or a
/// topic by the `x-opt-jms-dest` annotation Qpid JMS adds (0 queue, 1 topic, 2 temporary
/// queue, 3 temporary topic; none: a queue). Both are the Pulsar topic of that name; a queue
/// gets its `jms-queue` subscription made sure of.
async fn relay_destination(
    payload: &[u8],
    ctx: &Ctx<'_>,
) -> Result<(TopicName, u32), (ErrorCondition, String)> {
    let mut to = None;
    let mut is_topic = false;
    let mut rest = payload;
    while let Some(len) = crate::encoding::value_len(rest) {
        let (raw, next) = rest.split_at(len);
        rest = next;
        if let Ok(properties) = serde_amqp::from_slice::<Properties>(raw) {
            to = properties.to;
        } else if let Ok(annotations) = serde_amqp::from_slice::<MessageAnnotations>(raw) {
            let dest = annotations
                .0
                .iter()
                .find(|(k, _)| matches!(k, OwnedKey::Symbol(s) if s.as_str() == "x-opt-jms-dest"))
                .map(|(_, v)| v);
            is_topic = matches!(dest, Some(Value::Byte(1 | 3)) | Some(Value::Ubyte(1 | 3)));
        }
        if rest.is_empty() {
            break;
        }
    }
    let Some(address) = to else {
        return Err((
            AmqpError::InvalidField.into(),
            "a message on the anonymous relay needs a `to`".into(),
        ));
    };
    let Some(topic) = ctx.frontend.topic(&address) else {
        return Err((
            AmqpError::InvalidField.into(),
            format!("'{address}' is not a valid destination name"),
        ));
    };
    if let Some(client) = ctx
        .login
        .pulsar_token()
        .and_then(|t| ctx.frontend.backend.as_client(t.expose()))
    {
        match client.may_produce(&topic).await {
            Ok(true) => {}
            Ok(false) => {
                return Err((
                    AmqpError::UnauthorizedAccess.into(),
                    format!("no produce permission on '{address}'"),
                ))
            }
            Err(e) => return Err((AmqpError::InternalError.into(), e.to_string())),
        }
    }
    let ensured = if is_topic {
        ctx.frontend.ensure_topic(&topic).await
    } else {
        ctx.frontend.ensure_queue(&topic).await
    };
    let partitions =
        ensured.map_err(|e| (AmqpError::InternalError.into(), format!("'{address}': {e}")))?;
    Ok((topic, partitions))
}
