//! One AMQP channel: exchange, queue, basic, confirm and tx methods (spec §1.4-1.9 and RabbitMQ's
//! extensions), run in frame order by the connection task.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use amq_protocol::frame::AMQPFrame;
use amq_protocol::protocol::basic::AMQPProperties;
use amq_protocol::protocol::{
    access, basic, channel, confirm, connection, exchange, queue, tx, AMQPClass,
};
use tokio::sync::{mpsc, oneshot, watch, Semaphore};
use tracing::warn;

use crate::connection::Session;
use crate::deadletter;
use crate::delivery::{
    self, ChannelDeliveries, PushTarget, SourceCommand, SourceHandle, SourceSet, Unacked,
};
use crate::error::{AmqpError, AmqpResult, ReplyCode};
use crate::message::AmqpMessage;
use crate::objects;
use crate::publish::{self, Route};
use crate::topology::{Queue, Vhost};

/// How long basic.get waits on a source that the backlog says has messages.
const GET_WAIT: Duration = Duration::from_millis(500);

pub enum ChannelFlow {
    Open,
    Closed,
}

/// A message being assembled from its method, header and body frames.
struct Incoming {
    publish: basic::Publish,
    properties: Option<AMQPProperties>,
    size: u64,
    body: Vec<u8>,
}

/// What a publish's confirm waits for, in publish order: true for an ack, false for a nack.
enum Pending {
    Persist(futures::future::BoxFuture<'static, bool>),
    Done(bool),
}

struct RunningConsumer {
    queue: String,
    stop: watch::Sender<bool>,
    /// Shared with the consumer's sources: set, nothing more is delivered.
    cancelled: Arc<std::sync::atomic::AtomicBool>,
}

/// A settlement held back by a transaction.
#[derive(Clone, Copy)]
enum Settle {
    Ack,
    Requeue,
    Reject,
}

#[derive(Default)]
struct Transaction {
    publishes: Vec<(basic::Publish, AmqpMessage)>,
    settles: Vec<(u64, Settle, Unacked)>,
}

pub struct Channel {
    id: u16,
    session: Arc<Session>,
    /// channel.close sent; waiting for close-ok, ignoring everything else.
    closing: bool,
    deliveries: Arc<ChannelDeliveries>,
    incoming: Option<Incoming>,
    confirms: Option<(u64, mpsc::UnboundedSender<(u64, Pending)>)>,
    transaction: Option<Transaction>,
    consumers: HashMap<String, RunningConsumer>,
    prefetch: u16,
    global_credit: Option<Arc<Semaphore>>,
    last_queue: Option<String>,
    opened: bool,
    /// Sources this channel sent settlements to since it last counted messages: counts wait
    /// for them, so a get or declare after an ack sees the ack, as on RabbitMQ.
    settled_on: Vec<SourceHandle>,
}

impl RunningConsumer {
    /// Stops the consumer; returns how many consumers of its queue this instance has left,
    /// or `None` when the server had already cancelled it (its queue was deleted).
    fn end(&self, vhost: &Vhost) -> Option<usize> {
        let _ = self.stop.send(true);
        end_consumer(&self.cancelled, vhost, &self.queue)
    }
}

/// Marks a consumer cancelled and unregisters it, once, whoever gets there first: the client's
/// basic.cancel, its channel closing, or the server cancelling it because its queue went.
fn end_consumer(
    cancelled: &std::sync::atomic::AtomicBool,
    vhost: &Vhost,
    queue: &str,
) -> Option<usize> {
    if cancelled.swap(true, std::sync::atomic::Ordering::AcqRel) {
        return None;
    }
    Some(vhost.consumer_left(queue))
}

fn method_ids(class: &AMQPClass) -> (u16, u16) {
    (class.get_amqp_class_id(), class.get_amqp_method_id())
}

impl Channel {
    pub fn new(id: u16, session: Arc<Session>) -> Self {
        Channel {
            id,
            deliveries: ChannelDeliveries::new(id, session.out.clone(), session.frame_max),
            session,
            closing: false,
            incoming: None,
            confirms: None,
            transaction: None,
            consumers: HashMap::new(),
            prefetch: 0,
            global_credit: None,
            last_queue: None,
            opened: false,
            settled_on: Vec::new(),
        }
    }

    fn vhost(&self) -> &Arc<Vhost> {
        &self.session.vhost
    }

    async fn send(&self, method: AMQPClass) {
        let _ = self
            .session
            .out
            .send(vec![AMQPFrame::Method(self.id, method)])
            .await;
    }

    /// Reports a channel error: channel.close goes out, and frames are ignored until close-ok.
    pub async fn fail(&mut self, error: AmqpError) {
        self.shutdown().await;
        self.closing = true;
        self.send(AMQPClass::Channel(channel::AMQPMethod::Close(
            channel::Close {
                reply_code: error.code as u16,
                reply_text: error.reply_text().into(),
                class_id: error.class_id,
                method_id: error.method_id,
            },
        )))
        .await;
    }

    /// Ends the channel's consumers; unacknowledged deliveries go back to their queues.
    pub async fn close(&mut self) {
        self.shutdown().await;
    }

    async fn shutdown(&mut self) {
        self.incoming = None;
        self.transaction = None;
        self.confirms = None;
        for (_, consumer) in self.consumers.drain() {
            consumer.end(&self.session.vhost);
        }
        for unacked in self.deliveries.take_all() {
            let _ = unacked.source.send(SourceCommand::Requeue(unacked.id));
            let _ = unacked.source.send(SourceCommand::Close);
        }
    }

    pub async fn handle(&mut self, frame: AMQPFrame) -> AmqpResult<ChannelFlow> {
        if self.closing {
            // Spec §2.2.4: after channel.close, only close and close-ok count.
            return Ok(match frame {
                AMQPFrame::Method(_, AMQPClass::Channel(channel::AMQPMethod::CloseOk(_))) => {
                    ChannelFlow::Closed
                }
                AMQPFrame::Method(_, AMQPClass::Channel(channel::AMQPMethod::Close(_))) => {
                    self.send(AMQPClass::Channel(channel::AMQPMethod::CloseOk(
                        channel::CloseOk {},
                    )))
                    .await;
                    ChannelFlow::Closed
                }
                _ => ChannelFlow::Open,
            });
        }
        match frame {
            AMQPFrame::Method(_, method) => {
                if self.incoming.is_some() {
                    return Err(AmqpError::connection(
                        ReplyCode::UnexpectedFrame,
                        "a method arrived while message content was expected",
                    ));
                }
                let (class_id, method_id) = method_ids(&method);
                self.method(method).await.map_err(|e| {
                    if e.class_id == 0 {
                        e.on_method(class_id, method_id)
                    } else {
                        e
                    }
                })
            }
            AMQPFrame::Header(_, header) => {
                let Some(incoming) = self.incoming.as_mut().filter(|i| i.properties.is_none())
                else {
                    return Err(AmqpError::connection(
                        ReplyCode::UnexpectedFrame,
                        "content header without basic.publish",
                    ));
                };
                if header.class_id != 60 {
                    return Err(AmqpError::connection(
                        ReplyCode::FrameError,
                        "content header class is not basic",
                    ));
                }
                if header.body_size > self.session.frontend.config.max_message_bytes {
                    self.incoming = None;
                    return Err(AmqpError::precondition(format!(
                        "message size {} is larger than the configured maximum {}",
                        header.body_size, self.session.frontend.config.max_message_bytes
                    ))
                    .on_method(60, 40));
                }
                incoming.size = header.body_size;
                incoming.properties = Some(header.properties);
                if incoming.size == 0 {
                    self.publish_complete().await?;
                }
                Ok(ChannelFlow::Open)
            }
            AMQPFrame::Body(_, bytes) => {
                let Some(incoming) = self.incoming.as_mut().filter(|i| i.properties.is_some())
                else {
                    return Err(AmqpError::connection(
                        ReplyCode::UnexpectedFrame,
                        "content body without a content header",
                    ));
                };
                incoming.body.extend_from_slice(&bytes);
                if incoming.body.len() as u64 > incoming.size {
                    return Err(AmqpError::connection(
                        ReplyCode::FrameError,
                        "content body is longer than its header said",
                    ));
                }
                if incoming.body.len() as u64 == incoming.size {
                    self.publish_complete().await?;
                }
                Ok(ChannelFlow::Open)
            }
            _ => Ok(ChannelFlow::Open),
        }
    }

    async fn method(&mut self, method: AMQPClass) -> AmqpResult<ChannelFlow> {
        match method {
            AMQPClass::Channel(m) => return self.channel_method(m).await,
            AMQPClass::Access(access::AMQPMethod::Request(_)) => {
                self.send(AMQPClass::Access(access::AMQPMethod::RequestOk(
                    access::RequestOk {},
                )))
                .await
            }
            AMQPClass::Exchange(m) => self.exchange_method(m).await?,
            AMQPClass::Queue(m) => self.queue_method(m).await?,
            AMQPClass::Basic(m) => self.basic_method(m).await?,
            AMQPClass::Confirm(confirm::AMQPMethod::Select(m)) => {
                if self.transaction.is_some() {
                    return Err(AmqpError::precondition(
                        "cannot switch from tx to confirm mode",
                    ));
                }
                if self.confirms.is_none() {
                    self.confirms = Some((1, spawn_confirmer(self.id, self.session.out.clone())));
                }
                if !m.nowait {
                    self.send(AMQPClass::Confirm(confirm::AMQPMethod::SelectOk(
                        confirm::SelectOk {},
                    )))
                    .await;
                }
            }
            AMQPClass::Tx(m) => self.tx_method(m).await?,
            other => {
                return Err(AmqpError::connection(
                    ReplyCode::CommandInvalid,
                    "a client may not send this method",
                )
                .on_method(other.get_amqp_class_id(), other.get_amqp_method_id()))
            }
        }
        Ok(ChannelFlow::Open)
    }

    async fn channel_method(&mut self, method: channel::AMQPMethod) -> AmqpResult<ChannelFlow> {
        match method {
            channel::AMQPMethod::Open(_) if self.opened => Err(AmqpError::connection(
                ReplyCode::ChannelError,
                format!("second 'channel.open' seen on channel {}", self.id),
            )),
            channel::AMQPMethod::Open(_) => {
                self.opened = true;
                self.send(AMQPClass::Channel(channel::AMQPMethod::OpenOk(
                    channel::OpenOk {},
                )))
                .await;
                Ok(ChannelFlow::Open)
            }
            channel::AMQPMethod::Close(_) => {
                self.shutdown().await;
                self.send(AMQPClass::Channel(channel::AMQPMethod::CloseOk(
                    channel::CloseOk {},
                )))
                .await;
                Ok(ChannelFlow::Closed)
            }
            channel::AMQPMethod::CloseOk(_) => Ok(ChannelFlow::Closed),
            channel::AMQPMethod::Flow(f) => {
                if !f.active {
                    return Err(AmqpError::connection(
                        ReplyCode::NotImplemented,
                        "channel.flow active=false is not supported",
                    ));
                }
                self.send(AMQPClass::Channel(channel::AMQPMethod::FlowOk(
                    channel::FlowOk { active: true },
                )))
                .await;
                Ok(ChannelFlow::Open)
            }
            channel::AMQPMethod::FlowOk(_) => Ok(ChannelFlow::Open),
            channel::AMQPMethod::OpenOk(_) => Err(AmqpError::command_invalid(
                "channel.open-ok is sent by servers",
            )),
        }
    }

    // ---- exchanges and queues ----------------------------------------------------------------

    async fn exchange_method(&mut self, method: exchange::AMQPMethod) -> AmqpResult<()> {
        let session = self.session.clone();
        let ok = match method {
            exchange::AMQPMethod::Declare(m) => {
                objects::exchange_declare(&session, &m).await?;
                (!m.nowait).then_some(exchange::AMQPMethod::DeclareOk(exchange::DeclareOk {}))
            }
            exchange::AMQPMethod::Delete(m) => {
                objects::exchange_delete(&session, m.exchange.as_str(), m.if_unused).await?;
                (!m.nowait).then_some(exchange::AMQPMethod::DeleteOk(exchange::DeleteOk {}))
            }
            exchange::AMQPMethod::Bind(m) => {
                let (destination, source) = (m.destination.as_str(), m.source.as_str());
                objects::bind(
                    &session,
                    destination,
                    true,
                    source,
                    m.routing_key.as_str(),
                    &m.arguments,
                )
                .await?;
                (!m.nowait).then_some(exchange::AMQPMethod::BindOk(exchange::BindOk {}))
            }
            exchange::AMQPMethod::Unbind(m) => {
                let (destination, source) = (m.destination.as_str(), m.source.as_str());
                objects::unbind(
                    &session,
                    destination,
                    true,
                    source,
                    m.routing_key.as_str(),
                    &m.arguments,
                )
                .await?;
                (!m.nowait).then_some(exchange::AMQPMethod::UnbindOk(exchange::UnbindOk {}))
            }
            _ => {
                return Err(AmqpError::command_invalid(
                    "a client may not send this method",
                ))
            }
        };
        if let Some(ok) = ok {
            self.send(AMQPClass::Exchange(ok)).await;
        }
        Ok(())
    }

    async fn queue_method(&mut self, method: queue::AMQPMethod) -> AmqpResult<()> {
        let session = self.session.clone();
        let ok = match method {
            queue::AMQPMethod::Declare(m) => {
                self.flush_settlements().await;
                let declared = objects::queue_declare(&session, &m).await?;
                self.last_queue = Some(declared.name.clone());
                (!m.nowait).then(|| {
                    queue::AMQPMethod::DeclareOk(queue::DeclareOk {
                        queue: declared.name.into(),
                        message_count: declared.messages,
                        consumer_count: declared.consumers,
                    })
                })
            }
            queue::AMQPMethod::Bind(m) => {
                let queue = self.queue_name(m.queue.as_str())?;
                let (source, key) = (m.exchange.as_str(), m.routing_key.as_str());
                objects::bind(&session, &queue, false, source, key, &m.arguments).await?;
                (!m.nowait).then_some(queue::AMQPMethod::BindOk(queue::BindOk {}))
            }
            queue::AMQPMethod::Unbind(m) => {
                let queue = self.queue_name(m.queue.as_str())?;
                let (source, key) = (m.exchange.as_str(), m.routing_key.as_str());
                objects::unbind(&session, &queue, false, source, key, &m.arguments).await?;
                Some(queue::AMQPMethod::UnbindOk(queue::UnbindOk {}))
            }
            queue::AMQPMethod::Purge(m) => {
                let queue = self.queue_name(m.queue.as_str())?;
                self.check_read(&queue).await?;
                let count = objects::queue_purge(&session, &queue).await?;
                (!m.nowait).then_some(queue::AMQPMethod::PurgeOk(queue::PurgeOk {
                    message_count: count,
                }))
            }
            queue::AMQPMethod::Delete(m) => {
                let queue = self.queue_name(m.queue.as_str())?;
                self.check_read(&queue).await?;
                let count =
                    objects::queue_delete(&session, &queue, m.if_unused, m.if_empty).await?;
                (!m.nowait).then_some(queue::AMQPMethod::DeleteOk(queue::DeleteOk {
                    message_count: count,
                }))
            }
            _ => {
                return Err(AmqpError::command_invalid(
                    "a client may not send this method",
                ))
            }
        };
        if let Some(ok) = ok {
            self.send(AMQPClass::Queue(ok)).await;
        }
        Ok(())
    }

    /// An empty queue name means the last queue declared on this channel (spec §1.7.2).
    fn queue_name(&self, name: &str) -> AmqpResult<String> {
        if !name.is_empty() {
            return Ok(name.to_owned());
        }
        self.last_queue
            .clone()
            .ok_or_else(|| AmqpError::not_found("no previously declared queue on this channel"))
    }

    async fn usable_queue(&self, name: &str) -> AmqpResult<Queue> {
        objects::usable_queue(&self.session, name).await
    }

    /// Read access to a queue, for a client whose rights Pulsar decides (see `access`).
    async fn check_read(&self, queue: &str) -> AmqpResult<()> {
        let session = &self.session;
        match &session.access {
            Some(access) => {
                access
                    .check_read(
                        &session.frontend.backend,
                        &session.vhost,
                        &session.user,
                        queue,
                    )
                    .await
            }
            None => Ok(()),
        }
    }

    // ---- basic -----------------------------------------------------------------------------

    async fn basic_method(&mut self, method: basic::AMQPMethod) -> AmqpResult<()> {
        match method {
            basic::AMQPMethod::Qos(m) => {
                if m.global {
                    self.global_credit = (m.prefetch_count > 0)
                        .then(|| Arc::new(Semaphore::new(m.prefetch_count.into())));
                } else {
                    self.prefetch = m.prefetch_count;
                }
                self.send(AMQPClass::Basic(basic::AMQPMethod::QosOk(basic::QosOk {})))
                    .await;
            }
            basic::AMQPMethod::Publish(m) => {
                if m.immediate {
                    return Err(AmqpError::connection(
                        ReplyCode::NotImplemented,
                        "immediate=true is not supported",
                    ));
                }
                self.incoming = Some(Incoming {
                    publish: m,
                    properties: None,
                    size: 0,
                    body: Vec::new(),
                });
            }
            basic::AMQPMethod::Consume(m) => self.consume(m).await?,
            basic::AMQPMethod::Cancel(m) => {
                let tag = m.consumer_tag.as_str().to_owned();
                if let Some(consumer) = self.consumers.remove(&tag) {
                    let vhost = self.vhost().clone();
                    if consumer.end(&vhost) == Some(0) {
                        self.auto_delete(&consumer.queue).await;
                    }
                }
                if !m.nowait {
                    self.send(AMQPClass::Basic(basic::AMQPMethod::CancelOk(
                        basic::CancelOk {
                            consumer_tag: tag.into(),
                        },
                    )))
                    .await;
                }
            }
            basic::AMQPMethod::Get(m) => self.get(m).await?,
            basic::AMQPMethod::Ack(m) => {
                self.settle(m.delivery_tag, m.multiple, Settle::Ack).await?
            }
            basic::AMQPMethod::Nack(m) => {
                let how = if m.requeue {
                    Settle::Requeue
                } else {
                    Settle::Reject
                };
                self.settle(m.delivery_tag, m.multiple, how).await?
            }
            basic::AMQPMethod::Reject(m) => {
                let how = if m.requeue {
                    Settle::Requeue
                } else {
                    Settle::Reject
                };
                self.settle(m.delivery_tag, false, how).await?
            }
            basic::AMQPMethod::Recover(m) => {
                self.recover(m.requeue)?;
                self.send(AMQPClass::Basic(basic::AMQPMethod::RecoverOk(
                    basic::RecoverOk {},
                )))
                .await;
            }
            basic::AMQPMethod::RecoverAsync(m) => self.recover(m.requeue)?,
            _ => {
                return Err(AmqpError::command_invalid(
                    "a client may not send this method",
                ))
            }
        }
        Ok(())
    }

    fn recover(&mut self, requeue: bool) -> AmqpResult<()> {
        if !requeue {
            return Err(AmqpError::connection(
                ReplyCode::NotImplemented,
                "basic.recover with requeue=false is not supported",
            ));
        }
        for unacked in self.deliveries.take_all() {
            let _ = unacked.source.send(SourceCommand::Requeue(unacked.id));
        }
        Ok(())
    }

    async fn publish_complete(&mut self) -> AmqpResult<()> {
        let incoming = self.incoming.take().expect("called with a message in hand");
        let properties = incoming.properties.unwrap_or_default();
        if let Some(user) = properties.user_id() {
            if user.as_str() != self.session.user {
                return Err(AmqpError::precondition(format!(
                    "user_id property set to '{user}' but authenticated user was '{}'",
                    self.session.user
                ))
                .on_method(60, 40));
            }
        }
        let message = AmqpMessage {
            exchange: incoming.publish.exchange.as_str().to_owned(),
            routing_key: incoming.publish.routing_key.as_str().to_owned(),
            properties,
            body: incoming.body.into(),
        };
        if let Some(tx) = self.transaction.as_mut() {
            // Checked now, as RabbitMQ does, so a bad exchange fails the publish, not the commit.
            publish::route(
                &self.session.vhost,
                &message.exchange,
                &message.routing_key,
                message.properties.headers().as_ref(),
            )
            .await
            .map_err(|e| e.on_method(60, 40))?;
            tx.publishes.push((incoming.publish, message));
            return Ok(());
        }
        let credit = self.publish_credit(message.body.len()).await;
        let pending = match self.publish(&incoming.publish, &message).await? {
            // The credit comes back once the backend has the message.
            Pending::Persist(future) => Pending::Persist(Box::pin(async move {
                let persisted = future.await;
                drop(credit);
                persisted
            })),
            done => done,
        };
        if let Some((next, confirmer)) = self.confirms.as_mut() {
            let _ = confirmer.send((*next, pending));
            *next += 1;
        } else if let Pending::Persist(future) = pending {
            tokio::spawn(future);
        }
        Ok(())
    }

    /// Takes credit for a message's bytes on their way to the backend. When the backend falls
    /// behind and the credit runs out, the client is told (connection.blocked) and this
    /// connection stops reading until the backend catches up (connection.unblocked).
    async fn publish_credit(&self, bytes: usize) -> gateway_core::budget::Credit {
        let credit = &self.session.frontend.unpersisted;
        if let Some(permit) = credit.try_acquire(bytes) {
            return permit;
        }
        let blocked = self.session.accepts_blocked;
        if blocked {
            let _ = self
                .session
                .out
                .send(vec![AMQPFrame::Method(
                    0,
                    AMQPClass::Connection(connection::AMQPMethod::Blocked(connection::Blocked {
                        reason: "the message store is behind; publishing paused".into(),
                    })),
                )])
                .await;
        }
        let permit = credit.acquire(bytes).await;
        if blocked {
            let _ = self
                .session
                .out
                .send(vec![AMQPFrame::Method(
                    0,
                    AMQPClass::Connection(connection::AMQPMethod::Unblocked(
                        connection::Unblocked {},
                    )),
                )])
                .await;
        }
        permit
    }

    /// Routes and queues one message; returns what its confirm waits for.
    async fn publish(&self, method: &basic::Publish, message: &AmqpMessage) -> AmqpResult<Pending> {
        let route = publish::route(
            &self.session.vhost,
            &message.exchange,
            &message.routing_key,
            message.properties.headers().as_ref(),
        )
        .await
        .map_err(|e| e.on_method(60, 40))?;
        match route {
            Route::Topic(topic) => self.store(topic, message).await,
            Route::Unroutable => {
                if method.mandatory {
                    let frames = delivery::content_frames(
                        self.id,
                        basic::AMQPMethod::Return(basic::Return {
                            reply_code: ReplyCode::NoRoute as u16,
                            reply_text: "NO_ROUTE".into(),
                            exchange: message.exchange.as_str().into(),
                            routing_key: message.routing_key.as_str().into(),
                        }),
                        message,
                        self.session.frame_max,
                    );
                    let _ = self.session.out.send(frames).await;
                }
                Ok(Pending::Done(true))
            }
        }
    }

    /// Writes a routed message, applying its queues' length limits; the confirm is a nack when
    /// a full queue refused it.
    async fn store(
        &self,
        topic: gateway_core::TopicName,
        message: &AmqpMessage,
    ) -> AmqpResult<Pending> {
        let session = &self.session;
        let destinations = publish::destinations(
            &*session.vhost.snapshot().await,
            &message.exchange,
            &message.routing_key,
            message.properties.headers().as_ref(),
        );
        if let Some(access) = &session.access {
            access
                .check_write(
                    &session.frontend.backend,
                    &session.vhost,
                    &session.user,
                    &message.exchange,
                    &topic,
                )
                .await
                .map_err(|e| e.on_method(60, 40))?;
        }
        let decision = crate::limits::decide(session, &destinations, message).await?;
        if decision.refused_everywhere {
            return Ok(Pending::Done(false));
        }
        let marks = if decision.refused.is_empty() {
            Vec::new()
        } else {
            let refused: Vec<String> = decision.refused.iter().map(|i| format!("{i:x}")).collect();
            vec![(delivery::REJECTED_BY.to_owned(), refused.join(","))]
        };
        let persisted = match publish::submit_marked(
            &session.frontend.backend,
            &topic,
            message,
            marks,
        )
        .await
        {
            Ok(persisted) => persisted,
            // A publisher waiting for confirms learns of a passing backend failure (a time-out,
            // a lost connection) from a nack, as RabbitMQ tells it; without confirms, only
            // closing the connection can tell it.
            // Per message at debug: during an outage every publish fails, and the backend's own
            // health line already says why.
            Err(e) if e.is_retriable() && self.confirms.is_some() => {
                tracing::debug!(error = %e, "a published message could not be handed to the backend; nack");
                metrics::counter!("amqp_publish_failures_total", "stage" => "submit").increment(1);
                return Ok(Pending::Done(false));
            }
            Err(e) => return Err(e.into()),
        };
        let accepted_everywhere = decision.refused.is_empty();
        let session = session.clone();
        Ok(Pending::Persist(Box::pin(async move {
            match persisted.await {
                Ok(_) => {
                    for (queue, policy) in &decision.trim {
                        crate::limits::trim_head(&session, queue, policy).await;
                    }
                    accepted_everywhere
                }
                Err(e) => {
                    tracing::debug!(error = %e, "a published message was not persisted");
                    metrics::counter!("amqp_publish_failures_total", "stage" => "persist")
                        .increment(1);
                    false
                }
            }
        })))
    }

    async fn consume(&mut self, m: basic::Consume) -> AmqpResult<()> {
        let vhost = self.vhost().clone();
        let name = self.queue_name(m.queue.as_str())?;
        let queue = self.usable_queue(&name).await?;
        self.check_read(&queue.name).await?;
        let tag = match m.consumer_tag.as_str() {
            "" => format!("amq.ctag-{}", objects::random_token()),
            t => t.to_owned(),
        };
        if self.consumers.contains_key(&tag) {
            return Err(AmqpError::connection(
                ReplyCode::NotAllowed,
                format!("attempt to reuse consumer tag '{tag}'"),
            ));
        }
        if !vhost.consumer_joins(&queue.name, m.exclusive) {
            return Err(AmqpError::access_refused(format!(
                "queue '{}' in vhost '{}' in exclusive use",
                queue.name, vhost.name
            )));
        }
        let (stop, stopped) = watch::channel(false);
        let cancelled = Arc::new(std::sync::atomic::AtomicBool::new(false));
        self.consumers.insert(
            tag.clone(),
            RunningConsumer {
                queue: queue.name.clone(),
                stop,
                cancelled: cancelled.clone(),
            },
        );
        if !m.nowait {
            self.send(AMQPClass::Basic(basic::AMQPMethod::ConsumeOk(
                basic::ConsumeOk {
                    consumer_tag: tag.as_str().into(),
                },
            )))
            .await;
        }
        let mut credit = Vec::new();
        if !m.no_ack {
            if self.prefetch > 0 {
                credit.push(Arc::new(Semaphore::new(self.prefetch.into())));
            }
            if let Some(global) = &self.global_credit {
                credit.push(global.clone());
            }
        }
        let prefetch = credit
            .iter()
            .map(|c| c.available_permits() as u32)
            .min()
            .unwrap_or(0);
        let target = ConsumerTarget {
            deliveries: self.deliveries.clone(),
            tag,
            no_ack: m.no_ack,
            credit,
            prefetch,
            cancelled,
        };
        tokio::spawn(run_consumer(self.session.clone(), queue, target, stopped));
        Ok(())
    }

    /// basic.get: a consumer is attached, for this one get, to each source that has messages
    /// (the queue's own topic first); one that handed out a message stays until it is settled.
    /// Holding consumers between gets would hide messages from the queue's other consumers.
    async fn get(&mut self, m: basic::Get) -> AmqpResult<()> {
        self.flush_settlements().await;
        let name = self.queue_name(m.queue.as_str())?;
        let queue = self.usable_queue(&name).await?;
        self.check_read(&queue.name).await?;
        crate::expiry::mark_used(self.vhost(), &queue).await;
        let backlogs = objects::source_backlogs(&self.session, &queue).await?;
        let count: u64 = backlogs.iter().map(|(_, n)| n).sum();
        let vhost = self.vhost().clone();
        let backend = self.session.frontend.backend.clone();
        let policy = Arc::new(crate::arguments::policy_of(&queue));
        for (spec, _) in backlogs.into_iter().filter(|(_, n)| *n > 0) {
            let mut set = SourceSet::default();
            set.reconcile(&backend, &vhost, vec![spec], &policy, || None)
                .await?;
            let Some(handle) = set.running.values().next().cloned() else {
                continue;
            };
            let (reply, answer) = tokio::sync::oneshot::channel();
            let asked = handle.send(SourceCommand::Get(GET_WAIT, reply));
            // After the get: the source ends once what it handed out is settled.
            set.drain_all();
            if asked.is_err() {
                continue;
            }
            let Ok(Some((id, message, redelivered))) = answer.await else {
                continue;
            };
            let tag = self.deliveries.next_tag();
            let left = count.saturating_sub(1).min(u64::from(u32::MAX)) as u32;
            let frames = delivery::content_frames(
                self.id,
                basic::AMQPMethod::GetOk(basic::GetOk {
                    delivery_tag: tag,
                    redelivered,
                    exchange: message.exchange.as_str().into(),
                    routing_key: message.routing_key.as_str().into(),
                    message_count: left,
                }),
                &message,
                self.session.frame_max,
            );
            if m.no_ack {
                let _ = handle.send(SourceCommand::Ack(id));
                self.note_settled(&handle);
            } else {
                let unacked = Unacked {
                    source: handle,
                    id,
                    _credit: Vec::new(),
                    message: Arc::new(message),
                    policy,
                };
                self.deliveries
                    .unacked
                    .lock()
                    .expect("unacked lock")
                    .insert(tag, unacked);
            }
            let _ = self.session.out.send(frames).await;
            return Ok(());
        }
        self.send(AMQPClass::Basic(basic::AMQPMethod::GetEmpty(
            basic::GetEmpty {},
        )))
        .await;
        Ok(())
    }

    async fn settle(&mut self, tag: u64, multiple: bool, how: Settle) -> AmqpResult<()> {
        let settled = self
            .deliveries
            .settle(tag, multiple)
            .map_err(|tag| AmqpError::precondition(format!("unknown delivery tag {tag}")))?;
        if let Some(tx) = self.transaction.as_mut() {
            for (tag, unacked) in settled {
                tx.settles.push((tag, how, unacked));
            }
            return Ok(());
        }
        for (_, unacked) in settled {
            self.apply_settle(&how, unacked).await;
        }
        Ok(())
    }

    fn note_settled(&mut self, source: &SourceHandle) {
        if !self.settled_on.iter().any(|s| s.same_channel(source)) {
            self.settled_on.push(source.clone());
        }
    }

    /// Waits until the settlements this channel sent have reached the backend (bounded: a
    /// source that is gone has settled everything it had).
    async fn flush_settlements(&mut self) {
        for source in std::mem::take(&mut self.settled_on) {
            let (reply, done) = oneshot::channel();
            if source.send(SourceCommand::Flush(reply)).is_ok() {
                let _ = tokio::time::timeout(Duration::from_secs(5), done).await;
            }
        }
    }

    async fn apply_settle(&mut self, how: &Settle, unacked: Unacked) {
        self.note_settled(&unacked.source);
        match how {
            Settle::Ack => {
                let _ = unacked.source.send(SourceCommand::Ack(unacked.id));
            }
            Settle::Requeue => {
                let _ = unacked.source.send(SourceCommand::Requeue(unacked.id));
            }
            Settle::Reject => {
                if let Some(dl) = &unacked.policy.dead_letter {
                    let dead = deadletter::publish(
                        &self.session.frontend.backend,
                        &self.session.vhost,
                        dl,
                        &unacked.policy.queue,
                        "rejected",
                        &unacked.message,
                    )
                    .await;
                    if let Err(e) = dead {
                        // Kept in the queue rather than lost.
                        warn!(error = %e.text, "dead-lettering a rejected message failed; requeued");
                        let _ = unacked.source.send(SourceCommand::Requeue(unacked.id));
                        return;
                    }
                }
                let _ = unacked.source.send(SourceCommand::Ack(unacked.id));
            }
        }
    }

    async fn auto_delete(&mut self, name: &str) {
        let queue = self.vhost().snapshot().await.queues.get(name).cloned();
        if let Some(queue) = queue.filter(|q| q.auto_delete) {
            if let Err(e) = objects::delete_queue(&self.session.vhost, &queue).await {
                warn!(queue = name, error = %e.text, "deleting an auto-delete queue failed");
            }
        }
    }

    // ---- transactions ----------------------------------------------------------------------

    async fn tx_method(&mut self, method: tx::AMQPMethod) -> AmqpResult<()> {
        match method {
            tx::AMQPMethod::Select(_) => {
                if self.confirms.is_some() {
                    return Err(AmqpError::precondition(
                        "cannot switch from confirm to tx mode",
                    ));
                }
                self.transaction.get_or_insert_with(Transaction::default);
                self.send(AMQPClass::Tx(tx::AMQPMethod::SelectOk(tx::SelectOk {})))
                    .await;
            }
            tx::AMQPMethod::Commit(_) => {
                let Some(tx) = self.transaction.replace(Transaction::default()) else {
                    return Err(AmqpError::precondition("channel is not transactional"));
                };
                let mut persisted = Vec::new();
                for (method, message) in &tx.publishes {
                    if let Pending::Persist(p) = self.publish(method, message).await? {
                        persisted.push(p);
                    }
                }
                for p in persisted {
                    if !p.await {
                        return Err(AmqpError::connection(
                            ReplyCode::InternalError,
                            "a message of the transaction could not be stored",
                        ));
                    }
                }
                for (_, how, unacked) in tx.settles {
                    self.apply_settle(&how, unacked).await;
                }
                self.send(AMQPClass::Tx(tx::AMQPMethod::CommitOk(tx::CommitOk {})))
                    .await;
            }
            tx::AMQPMethod::Rollback(_) => {
                let Some(tx) = self.transaction.replace(Transaction::default()) else {
                    return Err(AmqpError::precondition("channel is not transactional"));
                };
                // Acks made in the transaction are undone: those deliveries are unacked again,
                // under their own tags.
                {
                    let mut unacked = self.deliveries.unacked.lock().expect("unacked lock");
                    for (tag, _, u) in tx.settles {
                        unacked.insert(tag, u);
                    }
                }
                self.send(AMQPClass::Tx(tx::AMQPMethod::RollbackOk(tx::RollbackOk {})))
                    .await;
            }
            _ => {
                return Err(AmqpError::command_invalid(
                    "a client may not send this method",
                ))
            }
        }
        Ok(())
    }
}

/// Sends confirms in publish order as each publish is persisted (a failed one is nacked).
fn spawn_confirmer(
    channel: u16,
    out: mpsc::Sender<Vec<AMQPFrame>>,
) -> mpsc::UnboundedSender<(u64, Pending)> {
    let (tx, mut rx) = mpsc::unbounded_channel::<(u64, Pending)>();
    tokio::spawn(async move {
        while let Some((seq, pending)) = rx.recv().await {
            let ok = match pending {
                Pending::Done(ok) => ok,
                Pending::Persist(future) => future.await,
            };
            let method = if ok {
                basic::AMQPMethod::Ack(basic::Ack {
                    delivery_tag: seq,
                    multiple: false,
                })
            } else {
                basic::AMQPMethod::Nack(basic::Nack {
                    delivery_tag: seq,
                    multiple: false,
                    requeue: false,
                })
            };
            if out
                .send(vec![AMQPFrame::Method(channel, AMQPClass::Basic(method))])
                .await
                .is_err()
            {
                return;
            }
        }
    });
    tx
}

struct ConsumerTarget {
    deliveries: Arc<ChannelDeliveries>,
    tag: String,
    no_ack: bool,
    credit: Vec<Arc<Semaphore>>,
    prefetch: u32,
    cancelled: Arc<std::sync::atomic::AtomicBool>,
}

/// Keeps a consumer's sources in step with its queue's bindings, and tells the client when the
/// queue is deleted (consumer_cancel_notify).
async fn run_consumer(
    session: Arc<Session>,
    queue: Queue,
    target: ConsumerTarget,
    mut stopped: watch::Receiver<bool>,
) {
    let vhost = session.vhost.clone();
    let backend = session.frontend.backend.clone();
    let policy = Arc::new(crate::arguments::policy_of(&queue));
    let mut changes = vhost.changes.subscribe();
    let mut sources = SourceSet::default();
    let stop_signal = stopped.clone();
    let push = || {
        Some(PushTarget {
            deliveries: target.deliveries.clone(),
            consumer_tag: target.tag.clone(),
            no_ack: target.no_ack,
            credit: target.credit.clone(),
            prefetch: target.prefetch,
            cancelled: target.cancelled.clone(),
            stopped: stop_signal.clone(),
        })
    };
    let mut attaching = gateway_core::retry_log::RetryLog::default();
    loop {
        let current = vhost.snapshot().await.queues.get(&queue.name).cloned();
        match current {
            Some(q) if q.incarnation == queue.incarnation => {
                let wanted = delivery::sources_of(&vhost, &*vhost.snapshot().await, &q);
                match sources
                    .reconcile(&backend, &vhost, wanted, &policy, push)
                    .await
                {
                    Ok(()) => {
                        attaching.succeeded(format_args!("attaching to queue {}", queue.name))
                    }
                    Err(e) => {
                        attaching.failed(format_args!("attaching to queue {}", queue.name), &e);
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                }
            }
            _ => {
                // The queue is gone: a server-sent cancel (RabbitMQ's consumer_cancel_notify).
                if end_consumer(&target.cancelled, &vhost, &queue.name).is_none() {
                    break;
                }
                let cancel = AMQPFrame::Method(
                    target.deliveries.channel,
                    AMQPClass::Basic(basic::AMQPMethod::Cancel(basic::Cancel {
                        consumer_tag: target.tag.as_str().into(),
                        nowait: true,
                    })),
                );
                let _ = session.out.send(vec![cancel]).await;
                break;
            }
        }
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { break },
            _ = stopped.wait_for(|s| *s) => break,
        }
    }
    sources.drain_all();
}
