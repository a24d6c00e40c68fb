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

mod consuming;
mod publishing;

use publishing::*;

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
