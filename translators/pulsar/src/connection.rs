//! One TCP connection to a Pulsar broker (or to a Pulsar proxy on behalf of a broker), shared by
//! every producer, reader and consumer the gateway has on that broker.
//!
//! A writer task sends frames from a bounded queue; a reader task routes what the broker sends:
//! responses by request id, send receipts by (producer, sequence), messages by consumer id.
//! When the connection drops, everything waiting on it fails with a retriable error.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use gateway_core::{BackendError, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

use crate::frame::{self, Frame};
use crate::proto::{
    command_type as t, server_error, BaseCommand, CommandConnect, CommandPong, FeatureFlags,
    MessageIdData, MessageMetadata,
};

/// Protocol version 18: broker entry metadata may be sent to us.
const PROTOCOL_VERSION: i32 = 18;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const OUTBOUND_QUEUE: usize = 1024;
/// How long receipts of a producer the broker closed are still awaited (see CLOSE_PRODUCER).
const CLOSED_PRODUCER_GRACE: Duration = Duration::from_secs(2);

/// What the broker sends a consumer.
#[derive(Debug)]
pub enum ConsumerEvent {
    Message {
        id: MessageIdData,
        redelivery_count: u32,
        metadata: Box<MessageMetadata>,
        payload: Bytes,
    },
    /// The broker closed the consumer (topic unloaded, seek) or the connection dropped.
    Closed,
}

/// The outcome of one send: the entry's id, or `None` when deduplication dropped it.
pub type Receipt = Result<Option<MessageIdData>>;

#[derive(Default)]
struct Routes {
    requests: HashMap<u64, oneshot::Sender<BaseCommand>>,
    receipts: HashMap<(u64, u64), oneshot::Sender<Receipt>>,
    consumers: HashMap<u64, mpsc::UnboundedSender<ConsumerEvent>>,
    /// Producers the broker closed; their next send must recreate them.
    closed_producers: std::collections::HashSet<u64>,
}

pub struct Connection {
    outbound: mpsc::Sender<Bytes>,
    routes: Arc<Mutex<Routes>>,
    next_id: AtomicU64,
    alive: Arc<AtomicBool>,
    pub max_message_size: usize,
}

/// Credentials sent in CONNECT. `Debug` never shows the token.
#[derive(Clone, Default)]
pub struct Auth {
    pub token: Option<String>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

pub fn unavailable(what: impl std::fmt::Display) -> BackendError {
    BackendError::Unavailable(what.to_string())
}

/// The gateway error for a broker's `ServerError`.
pub fn server_error(code: i32, message: &str) -> BackendError {
    match code {
        server_error::TOPIC_NOT_FOUND => BackendError::TopicNotFound(message.to_owned()),
        server_error::SUBSCRIPTION_NOT_FOUND => {
            BackendError::SubscriptionNotFound(message.to_owned())
        }
        server_error::CONSUMER_BUSY
        | server_error::PRODUCER_BUSY
        | server_error::PRODUCER_FENCED => BackendError::ConsumerBusy(message.to_owned()),
        server_error::AUTHENTICATION_ERROR | server_error::AUTHORIZATION_ERROR => {
            BackendError::NotAuthorized(message.to_owned())
        }
        _ => BackendError::Unavailable(format!("broker error {code}: {message}")),
    }
}

/// The request id a response answers, if it answers one.
fn answered_request(c: &BaseCommand) -> Option<u64> {
    c.success
        .as_ref()
        .map(|x| x.request_id)
        .or(c.error.as_ref().map(|x| x.request_id))
        .or(c.producer_success.as_ref().map(|x| x.request_id))
        .or(c.lookup_topic_response.as_ref().map(|x| x.request_id))
        .or(c
            .get_last_message_id_response
            .as_ref()
            .map(|x| x.request_id))
        .or(c.ack_response.as_ref().and_then(|x| x.request_id))
}

impl Connection {
    /// Connects to `address` (`host:port`) and completes the CONNECT handshake. With a Pulsar
    /// proxy, `address` is the proxy and `proxy_to` the broker's `host:port`.
    pub async fn open(
        address: &str,
        proxy_to: Option<&str>,
        auth: &Auth,
    ) -> Result<Arc<Connection>> {
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(address))
            .await
            .map_err(|_| unavailable(format!("connecting to {address} timed out")))?
            .map_err(|e| unavailable(format!("cannot connect to {address}: {e}")))?;
        stream.set_nodelay(true).ok();
        let (mut read, mut write) = stream.into_split();
        let connect = BaseCommand {
            r#type: t::CONNECT,
            connect: Some(CommandConnect {
                client_version: concat!("pulsar-gateway/", env!("CARGO_PKG_VERSION")).to_owned(),
                auth_method_name: auth.token.as_ref().map(|_| "token".to_owned()),
                auth_data: auth.token.as_ref().map(|t| t.as_bytes().to_vec()),
                protocol_version: Some(PROTOCOL_VERSION),
                proxy_to_broker_url: proxy_to.map(str::to_owned),
                feature_flags: Some(FeatureFlags {
                    supports_auth_refresh: Some(false),
                    supports_broker_entry_metadata: Some(true),
                    supports_partial_producer: Some(false),
                }),
            }),
            ..Default::default()
        };
        write
            .write_all(&frame::encode_command(&connect))
            .await
            .map_err(|e| unavailable(format!("{address}: {e}")))?;
        let mut buf = BytesMut::with_capacity(64 * 1024);
        let first = tokio::time::timeout(CONNECT_TIMEOUT, read_frame(&mut read, &mut buf))
            .await
            .map_err(|_| unavailable(format!("{address}: no answer to CONNECT")))??;
        let max_message_size = match first.command.r#type {
            t::CONNECTED => first
                .command
                .connected
                .and_then(|c| c.max_message_size)
                .unwrap_or(5 * 1024 * 1024) as usize,
            t::ERROR => {
                let e = first.command.error.unwrap_or_default();
                return Err(server_error(e.error, &e.message));
            }
            other => {
                return Err(unavailable(format!(
                    "{address}: unexpected answer {other} to CONNECT"
                )))
            }
        };

        let (outbound, mut queue) = mpsc::channel::<Bytes>(OUTBOUND_QUEUE);
        let routes = Arc::new(Mutex::new(Routes::default()));
        let alive = Arc::new(AtomicBool::new(true));
        let connection = Arc::new(Connection {
            outbound: outbound.clone(),
            routes: routes.clone(),
            next_id: AtomicU64::new(1),
            alive: alive.clone(),
            max_message_size,
        });
        let writer_alive = alive.clone();
        tokio::spawn(async move {
            while let Some(frame) = queue.recv().await {
                if write.write_all(&frame).await.is_err() {
                    break;
                }
            }
            writer_alive.store(false, Ordering::Relaxed);
        });
        let address = address.to_owned();
        tokio::spawn(async move {
            let reason = loop {
                match read_frame(&mut read, &mut buf).await {
                    Ok(frame) => route(frame, &routes, &outbound),
                    Err(e) => break e,
                }
            };
            tracing::info!(broker = %address, reason = %reason, "Pulsar connection closed");
            alive.store(false, Ordering::Relaxed);
            fail_all(&routes, &reason.to_string());
        });
        Ok(connection)
    }

    pub fn is_alive(&self) -> bool {
        self.alive.load(Ordering::Relaxed)
    }

    /// A fresh id for a request, producer or consumer on this connection.
    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    pub async fn send_frame(&self, frame: Bytes) -> Result<()> {
        self.outbound
            .send(frame)
            .await
            .map_err(|_| unavailable("Pulsar connection closed"))
    }

    /// Sends a command carrying `request_id` and waits for its answer; a broker ERROR becomes
    /// the matching gateway error.
    pub async fn request(&self, request_id: u64, command: BaseCommand) -> Result<BaseCommand> {
        let (tx, rx) = oneshot::channel();
        self.routes
            .lock()
            .expect("routes lock")
            .requests
            .insert(request_id, tx);
        if let Err(e) = self.send_frame(frame::encode_command(&command)).await {
            self.routes
                .lock()
                .expect("routes lock")
                .requests
                .remove(&request_id);
            return Err(e);
        }
        let answer = tokio::time::timeout(REQUEST_TIMEOUT, rx).await;
        self.routes
            .lock()
            .expect("routes lock")
            .requests
            .remove(&request_id);
        let answer = answer
            .map_err(|_| unavailable("Pulsar request timed out"))?
            .map_err(|_| unavailable("Pulsar connection closed"))?;
        match answer.error {
            Some(e) => Err(server_error(e.error, &e.message)),
            None => Ok(answer),
        }
    }

    /// Registers interest in the receipt of one send, before the send is written.
    pub fn expect_receipt(&self, producer_id: u64, sequence_id: u64) -> oneshot::Receiver<Receipt> {
        let (tx, rx) = oneshot::channel();
        self.routes
            .lock()
            .expect("routes lock")
            .receipts
            .insert((producer_id, sequence_id), tx);
        rx
    }

    pub fn producer_closed(&self, producer_id: u64) -> bool {
        !self.is_alive()
            || self
                .routes
                .lock()
                .expect("routes lock")
                .closed_producers
                .contains(&producer_id)
    }

    pub fn register_consumer(&self, consumer_id: u64) -> mpsc::UnboundedReceiver<ConsumerEvent> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.routes
            .lock()
            .expect("routes lock")
            .consumers
            .insert(consumer_id, tx);
        rx
    }

    pub fn forget_consumer(&self, consumer_id: u64) {
        self.routes
            .lock()
            .expect("routes lock")
            .consumers
            .remove(&consumer_id);
    }

    /// Queues a command without waiting (FLOW, ACK, CLOSE_*); drops it if the queue is full of a
    /// dead connection's frames.
    pub fn fire(&self, command: BaseCommand) {
        let _ = self.outbound.try_send(frame::encode_command(&command));
    }
}

async fn read_frame(
    read: &mut tokio::net::tcp::OwnedReadHalf,
    buf: &mut BytesMut,
) -> Result<Frame> {
    loop {
        if let Some(frame) =
            frame::decode(buf).map_err(|e| unavailable(format!("bad frame from Pulsar: {e}")))?
        {
            return Ok(frame);
        }
        let n = read
            .read_buf(buf)
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        if n == 0 {
            return Err(unavailable("the broker closed the connection"));
        }
    }
}

fn route(frame: Frame, routes: &Arc<Mutex<Routes>>, outbound: &mpsc::Sender<Bytes>) {
    let command = frame.command;
    match command.r#type {
        t::PING => {
            let pong = BaseCommand {
                r#type: t::PONG,
                pong: Some(CommandPong {}),
                ..Default::default()
            };
            let _ = outbound.try_send(frame::encode_command(&pong));
        }
        t::PONG => {}
        t::SEND_RECEIPT => {
            let Some(r) = command.send_receipt else {
                return;
            };
            let waiter = routes
                .lock()
                .expect("routes lock")
                .receipts
                .remove(&(r.producer_id, r.sequence_id));
            if let Some(w) = waiter {
                // Deduplication answers with a negative (all ones) id: nothing was written.
                let dropped = r
                    .message_id
                    .as_ref()
                    .is_none_or(|m| m.ledger_id == u64::MAX || m.entry_id == u64::MAX);
                let _ = w.send(Ok(if dropped { None } else { r.message_id }));
            }
        }
        t::SEND_ERROR => {
            let Some(e) = command.send_error else { return };
            let waiter = routes
                .lock()
                .expect("routes lock")
                .receipts
                .remove(&(e.producer_id, e.sequence_id));
            if let Some(w) = waiter {
                let _ = w.send(Err(server_error(e.error, &e.message)));
            }
        }
        t::MESSAGE => {
            let (Some(m), Some((metadata, payload))) = (command.message, frame.payload) else {
                return;
            };
            let routes = routes.lock().expect("routes lock");
            if let Some(consumer) = routes.consumers.get(&m.consumer_id) {
                let _ = consumer.send(ConsumerEvent::Message {
                    id: m.message_id,
                    redelivery_count: m.redelivery_count.unwrap_or(0),
                    metadata: Box::new(metadata),
                    payload,
                });
            }
        }
        t::CLOSE_PRODUCER => {
            let Some(c) = command.close_producer else {
                return;
            };
            routes
                .lock()
                .expect("routes lock")
                .closed_producers
                .insert(c.producer_id);
            // A broker unloading a topic closes its producers first and sends the receipts of the
            // writes it already had in hand afterwards. Waiting for them spares the client a
            // resend that deduplication would answer without the entry's id. Sends with no
            // receipt by then may or may not be persisted; the client resends them.
            let routes = routes.clone();
            tokio::spawn(async move {
                tokio::time::sleep(CLOSED_PRODUCER_GRACE).await;
                let mut routes = routes.lock().expect("routes lock");
                let failed: Vec<_> = routes
                    .receipts
                    .keys()
                    .filter(|(p, _)| *p == c.producer_id)
                    .copied()
                    .collect();
                for key in failed {
                    if let Some(w) = routes.receipts.remove(&key) {
                        let _ = w.send(Err(unavailable(
                            "the broker closed the producer (topic moved?)",
                        )));
                    }
                }
            });
        }
        t::CLOSE_CONSUMER => {
            let Some(c) = command.close_consumer else {
                return;
            };
            if let Some(consumer) = routes
                .lock()
                .expect("routes lock")
                .consumers
                .remove(&c.consumer_id)
            {
                let _ = consumer.send(ConsumerEvent::Closed);
            }
        }
        t::ACTIVE_CONSUMER_CHANGE | t::REACHED_END_OF_TOPIC => {}
        _ => {
            if let Some(request_id) = answered_request(&command) {
                if let Some(w) = routes
                    .lock()
                    .expect("routes lock")
                    .requests
                    .remove(&request_id)
                {
                    let _ = w.send(command);
                }
            } else {
                tracing::debug!(command = command.r#type, "unhandled command from Pulsar");
            }
        }
    }
}

fn fail_all(routes: &Mutex<Routes>, reason: &str) {
    let mut routes = routes.lock().expect("routes lock");
    routes.requests.clear(); // dropping the senders wakes the waiters with "closed"
    for (_, w) in routes.receipts.drain() {
        let _ = w.send(Err(unavailable(format!(
            "Pulsar connection lost: {reason}"
        ))));
    }
    for (_, c) in routes.consumers.drain() {
        let _ = c.send(ConsumerEvent::Closed);
    }
}
