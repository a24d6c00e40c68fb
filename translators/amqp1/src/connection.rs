//! One AMQP 1.0 connection (core spec §2.4): open, sessions by channel, idle-timeout
//! heartbeats, close. A reader task turns bytes into frames and a writer task writes what the
//! connection queues; both queues are bounded, so a slow client or backend stops socket reads
//! instead of growing memory (DESIGN.md §3). All connection, session and link state lives in
//! this task, with no locks.
//!
//! Errors end the connection with a close frame carrying the spec's condition, after an open if
//! none was sent yet (§2.4.1: close may only follow open); the gateway then waits briefly for
//! the client's close and reads off what it still sends, so the client sees the close rather
//! than a reset.

use std::collections::{HashMap, HashSet};
use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use fe2o3_amqp_types::definitions::Fields;
use fe2o3_amqp_types::definitions::{AmqpError, ConnectionError, Error, ErrorCondition};
use fe2o3_amqp_types::performatives::{
    Begin, ChannelMax, Close, End, MaxFrameSize, Open, Performative,
};
use fe2o3_amqp_types::primitives::{Array, Symbol, Value};
use gateway_core::{MessageId, ReceivedMessage, TopicName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::debug;

use crate::frame::{self, FrameError, RawFrame, MIN_MAX_FRAME_SIZE, TYPE_AMQP};
use crate::frontend::Amqp1Frontend;
use crate::sasl::Login;
use crate::session::Session;

/// The most sessions a connection may have (channels 0..=CHANNEL_MAX).
const CHANNEL_MAX: u16 = 1023;
/// Links one connection may have attached at once, across its sessions: each receiving link
/// holds a Pulsar consumer.
const MAX_LINKS: usize = 1024;
/// How long a client has to send open after the header.
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);
/// Frames waiting to be written, and frames read but not yet handled.
const OUTGOING_QUEUE: usize = 256;
const INCOMING_QUEUE: usize = 16;
/// Events from link tasks (persisted messages, messages read for consumers).
const EVENT_QUEUE: usize = 64;
/// How long the gateway waits for the client's close after its own, and reads off input after.
const CLOSE_WAIT: Duration = Duration::from_secs(1);
/// How long the last frames may take to be written at the end.
const WRITER_WAIT: Duration = Duration::from_secs(5);

/// Why a connection or session stops.
#[derive(Debug)]
pub(crate) enum Fail {
    /// Close the connection with this error.
    Connection(Error),
    /// End the session with this error.
    Session(Error),
    /// The client went away, or the writer did.
    Gone,
}

impl Fail {
    pub fn connection(condition: impl Into<ErrorCondition>, text: impl Into<String>) -> Fail {
        Fail::Connection(Error::new(condition, Some(text.into()), None))
    }

    pub fn session(condition: impl Into<ErrorCondition>, text: impl Into<String>) -> Fail {
        Fail::Session(Error::new(condition, Some(text.into()), None))
    }
}

/// What link tasks tell the connection.
pub(crate) enum Event {
    /// A message from the client is persisted (or failed); `delivery_id` is set when the client
    /// waits for its settlement.
    Persisted {
        channel: u16,
        handle: u32,
        link_id: u64,
        delivery_id: Option<u32>,
        outcome: Result<(), String>,
    },
    /// Messages read from Pulsar for a receiving client.
    Delivered {
        channel: u16,
        handle: u32,
        link_id: u64,
        messages: Vec<ReceivedMessage>,
    },
    /// A receiving link's consumer found nothing more to read after the link asked, so its
    /// drain can be answered.
    NothingMore {
        channel: u16,
        handle: u32,
        link_id: u64,
    },
    /// A link's Pulsar side failed; the link is detached with this error.
    LinkFailed {
        channel: u16,
        handle: u32,
        link_id: u64,
        error: Error,
    },
}

impl Event {
    /// A link task's Pulsar side failed: the link is detached with `amqp:internal-error`.
    pub fn internal_error(channel: u16, handle: u32, link_id: u64, text: String) -> Event {
        Event::LinkFailed {
            channel,
            handle,
            link_id,
            error: Error::new(AmqpError::InternalError, Some(text), None),
        }
    }

    fn channel(&self) -> u16 {
        match self {
            Event::Persisted { channel, .. }
            | Event::Delivered { channel, .. }
            | Event::NothingMore { channel, .. }
            | Event::LinkFailed { channel, .. } => *channel,
        }
    }
}

/// Commands to the task that owns a receiving link's Pulsar consumer.
pub(crate) enum Command {
    Ack(Vec<MessageId>),
    Nack(Vec<MessageId>),
    /// Released by the client (not a delivery attempt, core §3.4.4): handed back a moment later,
    /// unless the link goes first (see `outgoing::RELEASE_DELAY`).
    Release(Vec<MessageId>),
}

/// Where performatives go: the writer's queue, split to the client's max-frame-size.
pub(crate) struct Out {
    tx: mpsc::Sender<Bytes>,
    /// The client's max-frame-size (from its open).
    pub max_frame: u32,
}

impl Out {
    pub async fn send(&self, channel: u16, performative: Performative) -> Result<(), Fail> {
        let bytes = frame::encode(TYPE_AMQP, channel, &performative)
            .map_err(|e| Fail::connection(AmqpError::InternalError, e.to_string()))?;
        if bytes.len() > self.max_frame as usize {
            // §2.7.1 / amqp:frame-size-too-small: the performative cannot be sent at all.
            return Err(Fail::connection(
                AmqpError::FrameSizeTooSmall,
                format!(
                    "a {}-byte frame does not fit the client's max-frame-size {}",
                    bytes.len(),
                    self.max_frame
                ),
            ));
        }
        self.raw(bytes).await
    }

    pub async fn raw(&self, bytes: Bytes) -> Result<(), Fail> {
        self.tx.send(bytes).await.map_err(|_| Fail::Gone)
    }
}

/// What session handlers need of the connection.
pub(crate) struct Ctx<'a> {
    pub frontend: &'a Arc<Amqp1Frontend>,
    pub out: &'a Out,
    pub login: &'a Login,
    pub events: &'a mpsc::Sender<Event>,
    /// The client's container id (from its open): the JMS client id when one is set.
    pub container_id: &'a str,
    /// Temporary queues and topics (dynamic nodes) the connection made: deleted when it ends.
    pub temporaries: &'a std::sync::Mutex<Vec<TopicName>>,
    pub origin: &'a Origin,
    pub transactions: &'a std::sync::Mutex<crate::transaction::Transactions>,
}

/// What marks the messages a connection publishes, for its own no-local subscribers (JMS
/// `noLocal`): an id of its own, written as the `JMSConnectionID` property (as Starlight for
/// JMS names it) once the connection has attached a no-local link. Only that connection's links
/// compare it, so messages of connections without one are left as they are.
pub(crate) struct Origin {
    pub id: String,
    pub marking: std::sync::atomic::AtomicBool,
}

/// The property holding a message's `Origin` id.
pub(crate) const ORIGIN_PROPERTY: &str = "JMSConnectionID";

/// Whether `message` was published by the connection whose origin id is `origin`.
pub(crate) fn published_by(origin: &str, message: &gateway_core::Message) -> bool {
    message
        .properties
        .iter()
        .any(|(k, v)| k == ORIGIN_PROPERTY && v == origin)
}

impl Origin {
    fn new() -> Origin {
        Origin {
            id: format!("pulsar-gateway-{}", crate::link::outgoing::random_name()),
            marking: Default::default(),
        }
    }

    /// Marks `message` as this connection's, if its no-local links need it.
    pub fn mark(&self, message: &mut gateway_core::Message) {
        if self.marking.load(std::sync::atomic::Ordering::Acquire) {
            message
                .properties
                .push((ORIGIN_PROPERTY.to_owned(), self.id.clone()));
        }
    }
}

struct Connection {
    frontend: Arc<Amqp1Frontend>,
    login: Login,
    container_id: String,
    /// Held while the connection is open when the client asked to be its container's only one.
    container_claim: Option<crate::frontend::ContainerClaim>,
    temporaries: std::sync::Mutex<Vec<TopicName>>,
    origin: Origin,
    transactions: std::sync::Mutex<crate::transaction::Transactions>,
    out: Out,
    opened: bool,
    sessions: HashMap<u16, Session>,
    /// Channels whose session the gateway ended with an error: frames on them are ignored
    /// until the client's end arrives (§2.5.5).
    ended: HashSet<u16>,
    events_tx: mpsc::Sender<Event>,
    events: mpsc::Receiver<Event>,
    heartbeat: watch::Sender<Option<Duration>>,
    next_link_id: u64,
}

/// Serves a connection after the AMQP header was exchanged, until it closes.
pub(crate) async fn run<R, W>(
    frontend: Arc<Amqp1Frontend>,
    login: Login,
    reader: R,
    writer: W,
    mut drain: watch::Receiver<bool>,
) -> io::Result<()>
where
    R: AsyncRead + Send + Unpin + 'static,
    W: AsyncWrite + Send + Unpin + 'static,
{
    let (tx, outgoing) = mpsc::channel(OUTGOING_QUEUE);
    let (heartbeat, heartbeat_rx) = watch::channel(None);
    let writer_task = tokio::spawn(write_loop(writer, outgoing, heartbeat_rx));
    let (frames_tx, mut frames) = mpsc::channel(INCOMING_QUEUE);
    let max = frontend.config.max_frame_size;
    let reader_task = tokio::spawn(read_loop(reader, max, frames_tx));
    let (events_tx, events) = mpsc::channel(EVENT_QUEUE);
    let mut conn = Connection {
        frontend,
        login,
        container_id: String::new(),
        container_claim: None,
        temporaries: std::sync::Mutex::new(Vec::new()),
        origin: Origin::new(),
        transactions: Default::default(),
        out: Out {
            tx,
            max_frame: MIN_MAX_FRAME_SIZE,
        },
        opened: false,
        sessions: HashMap::new(),
        ended: HashSet::new(),
        events_tx,
        events,
        heartbeat,
        next_link_id: 1,
    };
    let result = conn.serve(&mut frames, &mut drain).await;
    // Transactions left open are rolled back, before the consumers their deliveries came from
    // close, so those come back redelivered.
    let open = conn.transactions.lock().expect("transactions lock").all();
    for transaction in open {
        transaction.roll_back();
    }
    // Dropping the sessions closes their consumers; Pulsar redelivers what was not settled.
    conn.sessions.clear();
    // Temporary destinations live as long as their connection (lifetime-policy delete-on-close).
    let temporaries = std::mem::take(&mut *conn.temporaries.lock().expect("temporaries lock"));
    if !temporaries.is_empty() {
        let frontend = conn.frontend.clone();
        tokio::spawn(async move {
            for topic in temporaries {
                frontend.delete_temporary(&topic).await;
            }
        });
    }
    if let Err(Fail::Connection(error)) | Err(Fail::Session(error)) = result {
        debug!(?error, "closing AMQP 1.0 connection with an error");
        let condition = condition_name(&error.condition);
        metrics::counter!("amqp1_connection_errors_total", "condition" => condition).increment(1);
        if !conn.opened {
            let _ = conn.out.send(0, Performative::Open(conn.open())).await;
        }
        let close = Close { error: Some(error) };
        if conn.out.send(0, Performative::Close(close)).await.is_ok() {
            let _ = tokio::time::timeout(CLOSE_WAIT, async {
                while let Some(Ok(f)) = frames.recv().await {
                    if let Ok((Performative::Close(_), _)) = frame::decode_performative(f.body) {
                        break;
                    }
                }
            })
            .await;
        }
    }
    drop(conn);
    drop(frames);
    // The writer ends once its queue is empty and closed, shutting down its half; a client that
    // reads nothing cannot hold the connection open.
    let mut writer_task = writer_task;
    if tokio::time::timeout(WRITER_WAIT, &mut writer_task)
        .await
        .is_err()
    {
        writer_task.abort();
    }
    let mut reader_task = reader_task;
    match tokio::time::timeout(CLOSE_WAIT, &mut reader_task).await {
        Ok(Ok(Some(mut reader))) => {
            // Read off what the client still sends, so closing does not reset the connection
            // before it has read our close.
            let mut sink = [0u8; 8192];
            let _ = tokio::time::timeout(CLOSE_WAIT, async {
                while matches!(reader.read(&mut sink).await, Ok(n) if n > 0) {}
            })
            .await;
        }
        Ok(_) => {}
        Err(_) => reader_task.abort(),
    }
    Ok(())
}

/// Reads frames until an error; hands the reader back when the frames were malformed, so the
/// connection can read off the rest while it closes.
async fn read_loop<R: AsyncRead + Unpin>(
    mut reader: R,
    max: u32,
    frames: mpsc::Sender<Result<RawFrame, FrameError>>,
) -> Option<R> {
    loop {
        let result = frame::read_frame(&mut reader, max).await;
        let malformed = matches!(
            result,
            Err(FrameError::TooLarge { .. }
                | FrameError::TooShort(_)
                | FrameError::BadOffset { .. })
        );
        let stop = result.is_err();
        if frames.send(result).await.is_err() || stop {
            return malformed.then_some(reader);
        }
    }
}

/// Writes queued frames; an empty frame when nothing was written for the heartbeat interval
/// (half the client's idle-time-out, §2.4.5).
async fn write_loop<W: AsyncWrite + Unpin>(
    mut writer: W,
    mut frames: mpsc::Receiver<Bytes>,
    heartbeat: watch::Receiver<Option<Duration>>,
) -> io::Result<()> {
    loop {
        let interval = *heartbeat.borrow();
        let next = match interval {
            Some(interval) => match tokio::time::timeout(interval, frames.recv()).await {
                Ok(next) => next,
                Err(_) => {
                    writer.write_all(&frame::empty()).await?;
                    writer.flush().await?;
                    continue;
                }
            },
            None => frames.recv().await,
        };
        let Some(bytes) = next else { break };
        writer.write_all(&bytes).await?;
        while let Ok(more) = frames.try_recv() {
            writer.write_all(&more).await?;
        }
        writer.flush().await?;
    }
    writer.shutdown().await
}

fn frame_failure(e: FrameError) -> Fail {
    match e {
        FrameError::Closed | FrameError::Io(_) => Fail::Gone,
        other => Fail::connection(ConnectionError::FramingError, other.to_string()),
    }
}

impl Connection {
    fn open(&self) -> Open {
        let idle = self.frontend.config.idle_timeout.as_millis() as u32;
        Open {
            container_id: self.frontend.container_id.clone(),
            hostname: None,
            max_frame_size: MaxFrameSize(self.frontend.config.max_frame_size),
            channel_max: ChannelMax(CHANNEL_MAX),
            idle_time_out: (idle > 0).then_some(idle),
            outgoing_locales: None,
            incoming_locales: None,
            // Qpid JMS uses one anonymous producer link, creates shared subscriptions and sends
            // with a delivery delay (x-opt-delivery-time) only when these are offered.
            offered_capabilities: Some(Array(vec![
                Symbol::from("ANONYMOUS-RELAY"),
                Symbol::from("SHARED-SUBS"),
                Symbol::from("DELAYED_DELIVERY"),
                Symbol::from("sole-connection-for-container"),
            ])),
            desired_capabilities: None,
            properties: None,
        }
    }

    async fn serve(
        &mut self,
        frames: &mut mpsc::Receiver<Result<RawFrame, FrameError>>,
        drain: &mut watch::Receiver<bool>,
    ) -> Result<(), Fail> {
        let first = match tokio::time::timeout(OPEN_TIMEOUT, frames.recv()).await {
            Ok(Some(first)) => first.map_err(frame_failure)?,
            _ => return Err(Fail::Gone),
        };
        match self.decode(first)? {
            Some((0, Performative::Open(open), _)) => self.on_open(open).await?,
            _ => {
                return Err(Fail::connection(
                    AmqpError::IllegalState,
                    "the first frame after the header must be open",
                ))
            }
        }
        let idle = self.frontend.config.idle_timeout;
        let mut deadline = Instant::now() + idle;
        loop {
            tokio::select! {
                frame = frames.recv() => {
                    let frame = frame.ok_or(Fail::Gone)?.map_err(frame_failure)?;
                    deadline = Instant::now() + idle;
                    if let Some((channel, performative, payload)) = self.decode(frame)? {
                        if self.on_frame(channel, performative, payload).await? {
                            return Ok(());
                        }
                    }
                }
                Some(event) = self.events.recv() => self.on_event(event).await?,
                _ = tokio::time::sleep_until(deadline), if !idle.is_zero() => {
                    return Err(Fail::connection(
                        AmqpError::ResourceLimitExceeded,
                        format!("no frame from the client for the idle-time-out of {} ms", idle.as_millis()),
                    ));
                }
                // Mapped to (), so the select holds no watch guard across its awaits; with the
                // sender gone there is no drain to wait for.
                _ = async {
                    if drain.wait_for(|draining| *draining).await.is_err() {
                        std::future::pending::<()>().await;
                    }
                } => {
                    return Err(Fail::connection(
                        ConnectionError::ConnectionForced,
                        "the gateway is shutting down",
                    ));
                }
            }
        }
    }

    /// The performative of an AMQP frame; `None` for an empty frame (a heartbeat).
    fn decode(&self, frame: RawFrame) -> Result<Option<(u16, Performative, Bytes)>, Fail> {
        if frame.kind != TYPE_AMQP {
            return Err(Fail::connection(
                ConnectionError::FramingError,
                format!(
                    "frame type {} after open; only AMQP frames (0) are allowed",
                    frame.kind
                ),
            ));
        }
        if frame.body.is_empty() {
            return Ok(None);
        }
        let (performative, payload) = frame::decode_performative(frame.body)
            .map_err(|e| Fail::connection(AmqpError::DecodeError, format!("frame body: {e}")))?;
        Ok(Some((frame.channel, performative, payload)))
    }

    async fn on_open(&mut self, open: Open) -> Result<(), Fail> {
        self.opened = true;
        let mut ours = self.open();
        let sole = open.desired_capabilities.as_ref().is_some_and(|c| {
            c.0.iter()
                .any(|s| s.as_str() == "sole-connection-for-container")
        });
        if sole {
            match self
                .frontend
                .claim_container(&open.container_id, &self.origin.id)
                .await
            {
                Some(claim) => self.container_claim = Some(claim),
                None => {
                    // As Artemis answers (Qpid JMS raises InvalidClientIDException): an open
                    // saying the connection failed, then a close naming the field.
                    let mut failed = Fields::new();
                    failed.insert(
                        Symbol::from("amqp:connection-establishment-failed"),
                        Value::Bool(true),
                    );
                    ours.properties = Some(failed);
                    self.out.send(0, Performative::Open(ours)).await?;
                    let mut info = Fields::new();
                    info.insert(
                        Symbol::from("invalid-field"),
                        Value::Symbol(Symbol::from("container-id")),
                    );
                    return Err(Fail::Connection(Error::new(
                        AmqpError::InvalidField,
                        Some(format!(
                            "container id (client id) '{}' is in use by another connection",
                            open.container_id
                        )),
                        Some(info),
                    )));
                }
            }
        }
        self.out.send(0, Performative::Open(ours)).await?;
        if open.max_frame_size.0 < MIN_MAX_FRAME_SIZE {
            return Err(Fail::connection(
                AmqpError::InvalidField,
                format!(
                    "max-frame-size {} is below the minimum of {MIN_MAX_FRAME_SIZE}",
                    open.max_frame_size.0
                ),
            ));
        }
        self.out.max_frame = open.max_frame_size.0;
        if let Some(ms) = open.idle_time_out.filter(|ms| *ms > 0) {
            // Half the client's timeout, so one late heartbeat is not fatal.
            let every = Duration::from_millis(ms as u64 / 2).max(Duration::from_millis(100));
            self.heartbeat.send_replace(Some(every));
        }
        self.container_id = open.container_id.clone();
        debug!(container = %open.container_id, user = %self.login.user, "AMQP 1.0 connection open");
        Ok(())
    }

    /// Handles one performative; `true` once the connection is closed.
    async fn on_frame(
        &mut self,
        channel: u16,
        p: Performative,
        payload: Bytes,
    ) -> Result<bool, Fail> {
        match p {
            Performative::Open(_) => Err(Fail::connection(
                AmqpError::IllegalState,
                "open was already received",
            )),
            Performative::Close(close) => {
                if let Some(error) = close.error {
                    debug!(?error, "client closed the connection with an error");
                }
                self.sessions.clear();
                // The client id is free again before the client hears the connection closed.
                self.container_claim = None;
                self.out
                    .send(0, Performative::Close(Close { error: None }))
                    .await?;
                Ok(true)
            }
            Performative::Begin(begin) => {
                self.on_begin(channel, begin).await?;
                Ok(false)
            }
            Performative::End(_) if self.ended.remove(&channel) => Ok(false),
            _ if self.ended.contains(&channel) => Ok(false),
            Performative::End(end) => {
                let Some(mut session) = self.sessions.remove(&channel) else {
                    return Err(no_session(channel));
                };
                session.end(&self.transactions);
                if let Some(error) = end.error {
                    debug!(?error, channel, "client ended a session with an error");
                }
                self.out
                    .send(channel, Performative::End(End { error: None }))
                    .await?;
                Ok(false)
            }
            other => {
                let links: usize = self.sessions.values().map(Session::links).sum();
                let Some(session) = self.sessions.get_mut(&channel) else {
                    return Err(no_session(channel));
                };
                let ctx = Ctx {
                    frontend: &self.frontend,
                    out: &self.out,
                    login: &self.login,
                    events: &self.events_tx,
                    container_id: &self.container_id,
                    temporaries: &self.temporaries,
                    origin: &self.origin,
                    transactions: &self.transactions,
                };
                let result = match other {
                    Performative::Attach(attach) if links >= MAX_LINKS => {
                        let text = format!("a connection may have {MAX_LINKS} links attached");
                        session
                            .refuse(attach, AmqpError::ResourceLimitExceeded, text, &ctx)
                            .await
                    }
                    other => {
                        session
                            .on_performative(other, payload, &ctx, &mut self.next_link_id)
                            .await
                    }
                };
                self.session_result(channel, result).await?;
                Ok(false)
            }
        }
    }

    async fn on_begin(&mut self, channel: u16, begin: Begin) -> Result<(), Fail> {
        if channel > CHANNEL_MAX {
            return Err(Fail::connection(
                ConnectionError::FramingError,
                format!("channel {channel} is above channel-max {CHANNEL_MAX}"),
            ));
        }
        self.ended.remove(&channel);
        if self.sessions.contains_key(&channel) {
            return Err(Fail::connection(
                AmqpError::NotAllowed,
                format!("channel {channel} already has a session"),
            ));
        }
        if begin.remote_channel.is_some() {
            return Err(Fail::connection(
                AmqpError::NotAllowed,
                "the gateway begins no sessions, so there is none to answer",
            ));
        }
        let (session, ours) = Session::begin(channel, &begin);
        self.sessions.insert(channel, session);
        self.out.send(channel, Performative::Begin(ours)).await
    }

    async fn on_event(&mut self, event: Event) -> Result<(), Fail> {
        let channel = event.channel();
        // The session may have ended since; its links' work is then moot.
        let Some(session) = self.sessions.get_mut(&channel) else {
            return Ok(());
        };
        let ctx = Ctx {
            frontend: &self.frontend,
            out: &self.out,
            login: &self.login,
            events: &self.events_tx,
            container_id: &self.container_id,
            temporaries: &self.temporaries,
            origin: &self.origin,
            transactions: &self.transactions,
        };
        let result = session.on_event(event, &ctx).await;
        self.session_result(channel, result).await
    }

    /// A session error ends that session only (§2.5.x); anything else goes up.
    async fn session_result(&mut self, channel: u16, result: Result<(), Fail>) -> Result<(), Fail> {
        match result {
            Err(Fail::Session(error)) => {
                debug!(?error, channel, "ending session with an error");
                if let Some(mut session) = self.sessions.remove(&channel) {
                    session.end(&self.transactions);
                }
                self.ended.insert(channel);
                let end = End { error: Some(error) };
                self.out.send(channel, Performative::End(end)).await
            }
            other => other,
        }
    }
}

/// The spec's symbol for a condition, as a metric label.
fn condition_name(condition: &ErrorCondition) -> String {
    match serde_amqp::to_value(condition) {
        Ok(serde_amqp::Value::Symbol(s)) => s.0,
        _ => "other".into(),
    }
}

fn no_session(channel: u16) -> Fail {
    Fail::connection(
        AmqpError::NotAllowed,
        format!("frame on channel {channel}, which has no session"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_are_labelled_with_the_spec_symbols() {
        assert_eq!(
            condition_name(&AmqpError::DecodeError.into()),
            "amqp:decode-error"
        );
        assert_eq!(
            condition_name(&ConnectionError::FramingError.into()),
            "amqp:connection:framing-error"
        );
    }
}
