//! One connection to a Pulsar broker (or to a Pulsar proxy on behalf of a broker), plain TCP or
//! TLS, shared by every producer, reader and consumer the gateway has on that broker.
//!
//! - A writer task sends frames from one queue, in order. Sends (data) take a slot of a bounded
//!   budget first, so a slow broker pushes back on producers; control frames (FLOW, ACK, CLOSE_*,
//!   PONG, AUTH_RESPONSE) take none and are never dropped, since losing one stalls a consumer or
//!   leaks a producer on the broker.
//! - A reader task routes what the broker sends: responses by request id, send receipts by
//!   (producer, sequence), messages by consumer id; it answers PING and AUTH_CHALLENGE.
//! - Liveness: a connection that has heard nothing for [`KEEPALIVE`] sends PING, and one that
//!   stays silent for as long again is closed (TCP keepalive also runs underneath). Every
//!   request is bounded by the operation timeout.
//! - When the connection ends, everything waiting on it fails with a retriable error.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use gateway_core::{BackendError, Result};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::credentials::TokenSource;
use crate::frame::{self, Frame};
use crate::proto::{
    command_type as t, server_error, AuthData, BaseCommand, CommandAuthResponse, CommandConnect,
    CommandPing, CommandPong, FeatureFlags, MessageIdData, MessageMetadata,
};

/// Protocol version 18: broker entry metadata may be sent to us.
const PROTOCOL_VERSION: i32 = 18;
const CLIENT_VERSION: &str = concat!("pulsar-gateway/", env!("CARGO_PKG_VERSION"));
/// TCP connect, TLS handshake and the CONNECT exchange together (Pulsar's
/// `connectionTimeoutMs` is 10 s too).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Silence after which a PING is sent, and after which, again, the connection counts as dead.
pub const KEEPALIVE: Duration = Duration::from_secs(10);
/// Sends queued for the writer before `send_frame` waits.
const OUTBOUND_SENDS: usize = 1024;
/// The writer flushes after this much when more frames keep coming.
const WRITE_BATCH: usize = 256 * 1024;
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

/// Where a connection goes: `host:port`, and whether it speaks TLS.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// How every connection of a pool is made.
#[derive(Clone)]
pub struct ConnectOptions {
    /// TLS toward the brokers (`pulsar+ssl://`); `None`: plain TCP.
    pub tls: Option<Arc<crate::tls::TlsSource>>,
    /// The token presented in CONNECT and in answers to AUTH_CHALLENGE.
    pub token: Option<TokenSource>,
    /// With no token, a TLS client certificate is the credential (Pulsar's `AuthenticationTls`).
    pub client_certificate: bool,
    /// Deadline of every request (Pulsar's `operationTimeoutMs`).
    pub operation_timeout: Duration,
    /// Silence after which a PING goes out, and after which, again, the connection is dropped
    /// ([`KEEPALIVE`] but in tests).
    pub keepalive: Duration,
}

impl std::fmt::Debug for ConnectOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectOptions")
            .field("tls", &self.tls.is_some())
            .field("token", &self.token)
            .field("client_certificate", &self.client_certificate)
            .field("operation_timeout", &self.operation_timeout)
            .field("keepalive", &self.keepalive)
            .finish()
    }
}

impl ConnectOptions {
    /// The credentials for CONNECT or AUTH_RESPONSE: method name and data.
    fn credentials(&self) -> Result<Option<(String, Vec<u8>)>> {
        if let Some(token) = &self.token {
            return Ok(Some(("token".into(), token.current()?.into_bytes())));
        }
        Ok(self.client_certificate.then(|| ("tls".into(), Vec::new())))
    }
}

pub fn unavailable(what: impl std::fmt::Display) -> BackendError {
    BackendError::Unavailable(what.to_string())
}

/// The gateway error for a broker's `ServerError`: errors a retry cannot fix are not marked
/// retriable, so clients stop instead of retrying until their own timeouts.
pub fn server_error(code: i32, message: &str) -> BackendError {
    use server_error as e;
    let message = message.to_owned();
    match code {
        e::TOPIC_NOT_FOUND => BackendError::TopicNotFound(message),
        e::SUBSCRIPTION_NOT_FOUND => BackendError::SubscriptionNotFound(message),
        e::CONSUMER_BUSY => BackendError::ConsumerBusy(message),
        e::PRODUCER_BUSY => BackendError::ProducerBusy(message),
        e::PRODUCER_FENCED => BackendError::ProducerFenced(message),
        e::AUTHENTICATION_ERROR | e::AUTHORIZATION_ERROR => BackendError::NotAuthorized(message),
        e::TOPIC_TERMINATED_ERROR => BackendError::TopicTerminated(message),
        e::PRODUCER_BLOCKED_QUOTA_EXCEEDED_ERROR | e::PRODUCER_BLOCKED_QUOTA_EXCEEDED_EXCEPTION => {
            BackendError::QuotaExceeded(message)
        }
        // Only transaction commands (and sends in a transaction) answer these: the transaction
        // is unknown to its coordinator, or already committed or aborted (also by its timeout).
        e::TRANSACTION_NOT_FOUND | e::INVALID_TXN_STATUS => {
            BackendError::TransactionNotOpen(message)
        }
        e::INVALID_TOPIC_NAME
        | e::NOT_ALLOWED_ERROR
        | e::UNSUPPORTED_VERSION_ERROR
        | e::INCOMPATIBLE_SCHEMA => {
            BackendError::InvalidArgument(format!("broker error {code}: {message}"))
        }
        // ServiceNotReady, TooManyRequests, metadata and persistence errors, checksum errors
        // (the entry is resent), and anything new: a fresh attempt may work.
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
        .or(c.partition_metadata_response.as_ref().map(|x| x.request_id))
        .or(c.tc_client_connect_response.as_ref().map(|x| x.request_id))
        .or(c.new_txn_response.as_ref().map(|x| x.request_id))
        .or(c
            .add_partition_to_txn_response
            .as_ref()
            .map(|x| x.request_id))
        .or(c.end_txn_response.as_ref().map(|x| x.request_id))
}

#[derive(Default)]
struct Routes {
    requests: HashMap<u64, oneshot::Sender<BaseCommand>>,
    receipts: HashMap<(u64, u64), oneshot::Sender<Receipt>>,
    consumers: HashMap<u64, mpsc::UnboundedSender<ConsumerEvent>>,
    /// Producers the broker closed; their next send must recreate them.
    closed_producers: std::collections::HashSet<u64>,
    /// Waiting for the next PONG.
    pongs: Vec<oneshot::Sender<()>>,
}

/// A frame for the writer, holding its send slot (if it is a send) until it is written.
type Outbound = (Bytes, Option<OwnedSemaphorePermit>);

/// What the connection's tasks and its handle share.
struct Shared {
    routes: Mutex<Routes>,
    alive: AtomicBool,
    /// Wakes the reader to end the connection (the handle dropped, or the writer failed).
    closing: Notify,
}

impl Shared {
    fn routes(&self) -> std::sync::MutexGuard<'_, Routes> {
        self.routes.lock().expect("routes lock")
    }
}

pub struct Connection {
    endpoint: String,
    outbound: mpsc::UnboundedSender<Outbound>,
    /// Slots for sends queued and not yet written.
    send_slots: Arc<Semaphore>,
    shared: Arc<Shared>,
    next_id: AtomicU64,
    operation_timeout: Duration,
    /// The broker's `maxMessageSize`: no entry may be larger.
    pub max_message_size: usize,
}

impl Drop for Connection {
    /// Nobody uses the connection any more (the pool replaced it, or its backend was dropped).
    fn drop(&mut self) {
        self.shared.closing.notify_one();
    }
}

type Reading = Box<dyn AsyncRead + Send + Unpin>;
type Writing = Box<dyn AsyncWrite + Send + Unpin>;

/// TCP (keepalive on, Nagle off), then TLS when configured.
async fn transport(endpoint: &Endpoint, options: &ConnectOptions) -> Result<(Reading, Writing)> {
    let stream = TcpStream::connect((endpoint.host.as_str(), endpoint.port))
        .await
        .map_err(|e| unavailable(format!("cannot connect to {endpoint}: {e}")))?;
    stream.set_nodelay(true).ok();
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(options.keepalive * 3)
        .with_interval(options.keepalive);
    if let Err(e) = socket2::SockRef::from(&stream).set_tcp_keepalive(&keepalive) {
        tracing::debug!(error = %e, "TCP keepalive not set");
    }
    let Some(tls) = &options.tls else {
        let (read, write) = stream.into_split();
        return Ok((Box::new(read), Box::new(write)));
    };
    let name = crate::tls::server_name(&endpoint.host)?;
    let stream = tokio_rustls::TlsConnector::from(tls.current())
        .connect(name, stream)
        .await
        .map_err(|e| tls_failure(endpoint, &e))?;
    let (read, write) = tokio::io::split(stream);
    Ok((Box::new(read), Box::new(write)))
}

/// A failed handshake, said so that the operator can act on it.
pub fn tls_failure(endpoint: &Endpoint, e: &std::io::Error) -> BackendError {
    let hint = match e.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()) {
        Some(rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer)) => {
            " (is --pulsar-tls-trust-certs-file the CA that signed the broker's certificate?)"
        }
        Some(rustls::Error::InvalidCertificate(_)) => " (the broker's certificate was refused)",
        Some(rustls::Error::InvalidMessage(_)) | None
            if e.kind() == std::io::ErrorKind::InvalidData =>
        {
            " (does this port speak TLS?)"
        }
        _ => "",
    };
    unavailable(format!("TLS handshake with {endpoint} failed: {e}{hint}"))
}

impl Connection {
    /// Connects to `endpoint` and completes the CONNECT handshake. With a Pulsar proxy,
    /// `endpoint` is the proxy and `proxy_to` the broker's `host:port`.
    pub async fn open(
        endpoint: &Endpoint,
        proxy_to: Option<&str>,
        options: &ConnectOptions,
    ) -> Result<Arc<Connection>> {
        let opening = async {
            let (mut read, mut write) = transport(endpoint, options).await?;
            let mut buf = BytesMut::with_capacity(64 * 1024);
            let max_message_size =
                handshake(endpoint, proxy_to, options, &mut read, &mut write, &mut buf).await?;
            Ok::<_, BackendError>((read, write, buf, max_message_size))
        };
        let (read, write, buf, max_message_size) = tokio::time::timeout(CONNECT_TIMEOUT, opening)
            .await
            .map_err(|_| {
                BackendError::Timeout(format!(
                    "connecting to {endpoint}: no answer within {CONNECT_TIMEOUT:?}"
                ))
            })??;

        let (outbound, queue) = mpsc::unbounded_channel::<Outbound>();
        let shared = Arc::new(Shared {
            routes: Mutex::new(Routes::default()),
            alive: AtomicBool::new(true),
            closing: Notify::new(),
        });
        let send_slots = Arc::new(Semaphore::new(OUTBOUND_SENDS));
        let writer = tokio::spawn(write_frames(write, queue, shared.clone()));
        let reader = Reader {
            endpoint: endpoint.to_string(),
            shared: shared.clone(),
            outbound: outbound.clone(),
            options: options.clone(),
        };
        let limit = frame::frame_limit(max_message_size);
        tokio::spawn(reader.run(read, buf, limit, writer, send_slots.clone()));
        Ok(Arc::new(Connection {
            endpoint: endpoint.to_string(),
            outbound,
            send_slots,
            shared,
            next_id: AtomicU64::new(1),
            operation_timeout: options.operation_timeout,
            max_message_size,
        }))
    }

    pub fn is_alive(&self) -> bool {
        self.shared.alive.load(Ordering::Relaxed)
    }

    pub fn operation_timeout(&self) -> Duration {
        self.operation_timeout
    }

    /// A fresh id for a request, producer or consumer on this connection.
    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Queues a send, waiting while the broker is behind (up to the operation timeout).
    pub async fn send_frame(&self, frame: Bytes) -> Result<()> {
        let slot = tokio::time::timeout(
            self.operation_timeout,
            self.send_slots.clone().acquire_owned(),
        )
        .await
        .map_err(|_| {
            BackendError::Timeout(format!(
                "{}: the broker took no data for {:?}",
                self.endpoint, self.operation_timeout
            ))
        })?
        .map_err(|_| unavailable("Pulsar connection closed"))?;
        self.outbound
            .send((frame, Some(slot)))
            .map_err(|_| unavailable("Pulsar connection closed"))
    }

    /// Queues a control frame (FLOW, ACK, CLOSE_*, ...) without waiting. It is never dropped
    /// while the connection lives; on a dead connection the broker has forgotten its subject.
    pub fn fire(&self, command: BaseCommand) {
        let _ = self.outbound.send((frame::encode_command(&command), None));
    }

    /// Queues a command carrying `request_id` without waiting; its answer comes on the receiver,
    /// which sees the sender dropped if the connection dies first.
    pub fn fire_request(
        &self,
        request_id: u64,
        command: BaseCommand,
    ) -> oneshot::Receiver<BaseCommand> {
        let (tx, rx) = oneshot::channel();
        self.shared.routes().requests.insert(request_id, tx);
        // Requests go in the control lane: they are few, and their answers are awaited anyway.
        self.fire(command);
        rx
    }

    /// Sends a command carrying `request_id` and waits for its answer, up to the operation
    /// timeout; a broker ERROR becomes the matching gateway error.
    pub async fn request(&self, request_id: u64, command: BaseCommand) -> Result<BaseCommand> {
        let rx = self.fire_request(request_id, command);
        let answer = tokio::time::timeout(self.operation_timeout, rx).await;
        self.shared.routes().requests.remove(&request_id);
        let answer = answer
            .map_err(|_| {
                BackendError::Timeout(format!(
                    "{}: no answer within {:?}",
                    self.endpoint, self.operation_timeout
                ))
            })?
            .map_err(|_| unavailable("Pulsar connection closed"))?;
        match answer.error {
            Some(e) => Err(server_error(e.error, &e.message)),
            None => Ok(answer),
        }
    }

    /// A PING answered by a PONG within `timeout`: proof that the broker hears this connection.
    pub async fn ping(&self, timeout: Duration) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        self.shared.routes().pongs.push(tx);
        self.fire(ping());
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(unavailable(format!("{}: connection closed", self.endpoint))),
            Err(_) => Err(BackendError::Timeout(format!(
                "{}: no PONG within {timeout:?}",
                self.endpoint
            ))),
        }
    }

    /// Registers interest in the receipt of one send, before the send is written.
    pub fn expect_receipt(&self, producer_id: u64, sequence_id: u64) -> oneshot::Receiver<Receipt> {
        let (tx, rx) = oneshot::channel();
        self.shared
            .routes()
            .receipts
            .insert((producer_id, sequence_id), tx);
        rx
    }

    /// Stops waiting for a receipt (its deadline passed).
    pub fn forget_receipt(&self, producer_id: u64, sequence_id: u64) {
        self.shared
            .routes()
            .receipts
            .remove(&(producer_id, sequence_id));
    }

    pub fn producer_closed(&self, producer_id: u64) -> bool {
        !self.is_alive() || self.shared.routes().closed_producers.contains(&producer_id)
    }

    pub fn register_consumer(&self, consumer_id: u64) -> mpsc::UnboundedReceiver<ConsumerEvent> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.shared.routes().consumers.insert(consumer_id, tx);
        rx
    }

    pub fn forget_consumer(&self, consumer_id: u64) {
        self.shared.routes().consumers.remove(&consumer_id);
    }
}

fn ping() -> BaseCommand {
    BaseCommand {
        r#type: t::PING,
        ping: Some(CommandPing {}),
        ..Default::default()
    }
}

/// CONNECT, answering AUTH_CHALLENGEs until CONNECTED; returns the broker's `maxMessageSize`.
async fn handshake(
    endpoint: &Endpoint,
    proxy_to: Option<&str>,
    options: &ConnectOptions,
    read: &mut Reading,
    write: &mut Writing,
    buf: &mut BytesMut,
) -> Result<usize> {
    let credentials = options.credentials()?;
    let connect = BaseCommand {
        r#type: t::CONNECT,
        connect: Some(CommandConnect {
            client_version: CLIENT_VERSION.to_owned(),
            auth_method_name: credentials.as_ref().map(|(method, _)| method.clone()),
            auth_data: credentials.map(|(_, data)| data),
            protocol_version: Some(PROTOCOL_VERSION),
            proxy_to_broker_url: proxy_to.map(str::to_owned),
            feature_flags: Some(FeatureFlags {
                supports_auth_refresh: Some(true),
                supports_broker_entry_metadata: Some(true),
                supports_partial_producer: Some(false),
            }),
        }),
        ..Default::default()
    };
    let mut next = frame::encode_command(&connect);
    // A multi-step authentication method would challenge a few times; a token needs none.
    for _ in 0..4 {
        write
            .write_all(&next)
            .await
            .and(write.flush().await)
            .map_err(|e| unavailable(format!("{endpoint}: {e}")))?;
        let limit = frame::frame_limit(frame::DEFAULT_MAX_MESSAGE_SIZE);
        let answer = read_frame(read, buf, limit).await?.command;
        match answer.r#type {
            t::CONNECTED => {
                let size = answer.connected.and_then(|c| c.max_message_size);
                return Ok(size.map_or(frame::DEFAULT_MAX_MESSAGE_SIZE, |s| s.max(0) as usize));
            }
            t::AUTH_CHALLENGE => next = frame::encode_command(&auth_response(options)?),
            t::ERROR => {
                let e = answer.error.unwrap_or_default();
                return Err(match server_error(e.error, &e.message) {
                    BackendError::NotAuthorized(m) => BackendError::NotAuthorized(format!(
                        "{endpoint} refused the gateway's credentials: {m}"
                    )),
                    other => other,
                });
            }
            other => {
                return Err(unavailable(format!(
                    "{endpoint}: unexpected answer {other} to CONNECT"
                )))
            }
        }
    }
    Err(unavailable(format!(
        "{endpoint}: authentication did not finish"
    )))
}

/// The answer to an AUTH_CHALLENGE: the current credentials (a token file may have changed).
fn auth_response(options: &ConnectOptions) -> Result<BaseCommand> {
    let (method, data) = options
        .credentials()?
        .unwrap_or_else(|| ("none".into(), Vec::new()));
    Ok(BaseCommand {
        r#type: t::AUTH_RESPONSE,
        auth_response: Some(CommandAuthResponse {
            client_version: Some(CLIENT_VERSION.to_owned()),
            response: Some(AuthData {
                auth_method_name: Some(method),
                auth_data: Some(data),
            }),
            protocol_version: Some(PROTOCOL_VERSION),
        }),
        ..Default::default()
    })
}

async fn read_frame(read: &mut Reading, buf: &mut BytesMut, limit: usize) -> Result<Frame> {
    loop {
        if let Some(frame) = frame::decode(buf, limit)
            .map_err(|e| unavailable(format!("bad frame from Pulsar: {e}")))?
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

/// Writes queued frames in order, flushing when the queue runs dry (or after a large batch).
async fn write_frames(
    write: Writing,
    mut queue: mpsc::UnboundedReceiver<Outbound>,
    shared: Arc<Shared>,
) {
    let mut write = tokio::io::BufWriter::with_capacity(64 * 1024, write);
    'frames: while let Some((frame, _slot)) = queue.recv().await {
        let mut batch = frame.len();
        if write.write_all(&frame).await.is_err() {
            break;
        }
        while batch < WRITE_BATCH {
            let Ok((frame, _slot)) = queue.try_recv() else {
                break;
            };
            batch += frame.len();
            if write.write_all(&frame).await.is_err() {
                break 'frames;
            }
        }
        if write.flush().await.is_err() {
            break;
        }
    }
    shared.alive.store(false, Ordering::Relaxed);
    shared.closing.notify_one();
}

/// The reading side of a connection, which also keeps it alive and ends it.
struct Reader {
    endpoint: String,
    shared: Arc<Shared>,
    outbound: mpsc::UnboundedSender<Outbound>,
    options: ConnectOptions,
}

impl Reader {
    async fn run(
        self,
        mut read: Reading,
        mut buf: BytesMut,
        limit: usize,
        writer: tokio::task::JoinHandle<()>,
        send_slots: Arc<Semaphore>,
    ) {
        let mut last_heard = Instant::now();
        let mut pinged = false;
        let keepalive = self.options.keepalive;
        let mut ticks = tokio::time::interval(keepalive / 2);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let reason = loop {
            tokio::select! {
                // `read_frame` keeps partial frames in `buf`, so losing the race loses nothing.
                frame = read_frame(&mut read, &mut buf, limit) => match frame {
                    Ok(frame) => {
                        last_heard = Instant::now();
                        pinged = false;
                        self.route(frame);
                    }
                    Err(e) => break e.to_string(),
                },
                _ = ticks.tick() => {
                    if last_heard.elapsed() < keepalive {
                        continue;
                    }
                    if pinged {
                        break format!("no answer to PING for {:?}", last_heard.elapsed());
                    }
                    let _ = self.outbound.send((frame::encode_command(&ping()), None));
                    pinged = true;
                }
                _ = self.shared.closing.notified() => break "closed by the gateway".into(),
            }
        };
        self.shared.alive.store(false, Ordering::Relaxed);
        writer.abort();
        send_slots.close();
        if reason != "closed by the gateway" {
            tracing::info!(broker = %self.endpoint, %reason, "Pulsar connection closed");
        }
        self.fail_all(&reason);
    }

    fn control(&self, command: &BaseCommand) {
        let _ = self.outbound.send((frame::encode_command(command), None));
    }

    fn route(&self, frame: Frame) {
        let command = frame.command;
        let routes = &self.shared;
        match command.r#type {
            t::PING => self.control(&BaseCommand {
                r#type: t::PONG,
                pong: Some(CommandPong {}),
                ..Default::default()
            }),
            t::PONG => {
                for waiter in routes.routes().pongs.drain(..) {
                    let _ = waiter.send(());
                }
            }
            // The broker re-checks credentials (`authenticationRefreshCheckSeconds`): answer
            // with the current ones, re-read if they come from a file.
            t::AUTH_CHALLENGE => match auth_response(&self.options) {
                Ok(answer) => self.control(&answer),
                Err(e) => tracing::warn!(broker = %self.endpoint, error = %e,
                    "cannot answer Pulsar's authentication challenge; the broker will close the connection"),
            },
            t::SEND_RECEIPT => {
                let Some(r) = command.send_receipt else {
                    return;
                };
                let waiter = routes
                    .routes()
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
                    .routes()
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
                if let Some(consumer) = routes.routes().consumers.get(&m.consumer_id) {
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
                routes.routes().closed_producers.insert(c.producer_id);
                // A broker unloading a topic closes its producers first and sends the receipts
                // of the writes it already had in hand afterwards. Waiting for them spares the
                // client a resend that deduplication would answer without the entry's id. Sends
                // with no receipt by then may or may not be persisted; the client resends them.
                let shared = self.shared.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(CLOSED_PRODUCER_GRACE).await;
                    let mut routes = shared.routes();
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
                if let Some(consumer) = routes.routes().consumers.remove(&c.consumer_id) {
                    let _ = consumer.send(ConsumerEvent::Closed);
                }
            }
            t::ACTIVE_CONSUMER_CHANGE | t::REACHED_END_OF_TOPIC => {}
            _ => {
                if let Some(request_id) = answered_request(&command) {
                    if let Some(w) = routes.routes().requests.remove(&request_id) {
                        let _ = w.send(command);
                    }
                } else {
                    tracing::debug!(command = command.r#type, "unhandled command from Pulsar");
                }
            }
        }
    }

    fn fail_all(&self, reason: &str) {
        let mut routes = self.shared.routes();
        routes.requests.clear(); // dropping the senders wakes the waiters with "closed"
        routes.pongs.clear();
        for (_, w) in routes.receipts.drain() {
            let _ = w.send(Err(unavailable(format!(
                "Pulsar connection lost: {reason}"
            ))));
        }
        for (_, c) in routes.consumers.drain() {
            let _ = c.send(ConsumerEvent::Closed);
        }
    }
}

#[cfg(test)]
mod tests;
