//! One AMQP connection (spec §2.2.4 and §4.2): the protocol header, the start/tune/open
//! handshake, heartbeats, then frames dispatched to channels until connection.close.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use amq_protocol::frame::AMQPFrame;
use amq_protocol::protocol::{connection, AMQPClass};
use amq_protocol::types::{AMQPValue, FieldTable, LongString};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch};
use tracing::{debug, info};

use crate::access::Credential;
use crate::channel::Channel;
use crate::codec::{self, ReadError, PROTOCOL_HEADER};
use crate::error::{AmqpError, ReplyCode, Scope};
use crate::frontend::AmqpFrontend;
use crate::topology::Vhost;

/// The smallest frame_max a peer may ask for (spec: frame-min-size).
const FRAME_MIN: u32 = 4096;
/// How long a client has to complete the handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Frames waiting to be written before senders wait (backpressure on consumers).
const OUTGOING_QUEUE: usize = 256;

/// What the opening handshake settled.
struct Handshake {
    user: String,
    access: Option<crate::access::Access>,
    vhost: Arc<Vhost>,
    frame_max: u32,
    channel_max: u16,
    heartbeat: u16,
    accepts_blocked: bool,
    /// Held for the connection's life: its place in its principal's connection count.
    slot: Option<gateway_security::ConnectionSlot>,
}

pub struct Session {
    pub frontend: Arc<AmqpFrontend>,
    pub vhost: Arc<Vhost>,
    pub user: String,
    /// Whose rights publishes and reads are checked against (a token-authenticated client);
    /// `None` for the configured users, whom the gateway trusts with its own rights.
    pub access: Option<crate::access::Access>,
    /// Identifies this connection as an exclusive-queue owner.
    pub name: String,
    pub frame_max: u32,
    pub channel_max: u16,
    pub out: mpsc::Sender<Vec<AMQPFrame>>,
    /// The client understands connection.blocked (its `capabilities` say so).
    pub accepts_blocked: bool,
}

impl AmqpFrontend {
    /// Serves one client connection until it closes. Errors are logged by the caller.
    /// `client_certificate`: the common name of the certificate the client presented on a TLS
    /// listener that verifies them, which SASL EXTERNAL logs in as.
    pub async fn serve_connection<S>(
        self: Arc<Self>,
        stream: S,
        client_certificate: Option<String>,
        mut drain: watch::Receiver<bool>,
    ) -> std::io::Result<()>
    where
        S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let (mut reader, mut writer) = tokio::io::split(stream);
        let mut header = [0u8; 8];
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, reader.read_exact(&mut header)).await {
            Ok(Ok(_)) => {}
            _ => return Ok(()),
        }
        if header != PROTOCOL_HEADER {
            // Spec §4.2.2: answer with the version we speak, then close.
            writer.write_all(&PROTOCOL_HEADER).await?;
            writer.shutdown().await?;
            return Ok(());
        }
        let mut buf = Vec::new();
        let handshake = tokio::time::timeout(
            HANDSHAKE_TIMEOUT,
            self.handshake(&mut reader, &mut writer, &mut buf, client_certificate),
        )
        .await;
        let Handshake {
            user,
            access,
            vhost,
            frame_max,
            channel_max,
            heartbeat,
            accepts_blocked,
            slot: _slot,
        } = match handshake {
            Ok(Ok(done)) => done,
            Ok(Err(Some(error))) => {
                send_close(&mut writer, &error).await;
                // Give the client a moment to read the close before the socket goes.
                let _ = tokio::time::timeout(Duration::from_secs(1), reader.read(&mut buf)).await;
                return Ok(());
            }
            Ok(Err(None)) | Err(_) => return Ok(()),
        };
        let (out, outgoing) = mpsc::channel(OUTGOING_QUEUE);
        let writer_task = tokio::spawn(write_loop(writer, outgoing, heartbeat));
        let session = Arc::new(Session {
            name: self.connection_name(),
            frontend: self.clone(),
            vhost,
            user,
            access,
            frame_max,
            channel_max,
            out: out.clone(),
            accepts_blocked,
        });
        debug!(connection = %session.name, user = %session.user, vhost = %session.vhost.name, "AMQP connection open");
        let result = run(&session, &mut reader, heartbeat, &mut drain).await;
        let mut channels = result.channels;
        for (_, channel) in channels.iter_mut() {
            channel.close().await;
        }
        crate::objects::release_exclusive_queues(&session).await;
        if let Some(error) = result.error {
            let _ = out.send(vec![close_frame(&error)]).await;
            // Wait for close-ok, briefly; the socket closes either way.
            let _ = tokio::time::timeout(Duration::from_secs(1), async {
                loop {
                    match codec::read_frame(&mut reader, frame_max, &mut buf).await {
                        Ok(AMQPFrame::Method(
                            0,
                            AMQPClass::Connection(connection::AMQPMethod::CloseOk(_)),
                        ))
                        | Err(_) => break,
                        Ok(_) => continue,
                    }
                }
            })
            .await;
        }
        // The writer ends once every sender is gone (channels and their tasks hold some): give
        // it a moment to flush the close, then stop it, which closes the socket either way.
        drop(channels);
        drop(out);
        drop(session);
        let mut writer_task = writer_task;
        if tokio::time::timeout(Duration::from_secs(2), &mut writer_task)
            .await
            .is_err()
        {
            writer_task.abort();
        }
        Ok(())
    }

    /// start → start-ok → tune → tune-ok → open. `Err(Some(e))` is answered with
    /// connection.close; `Err(None)` means the peer went away.
    async fn handshake<R, W>(
        &self,
        reader: &mut R,
        writer: &mut W,
        buf: &mut Vec<u8>,
        client_certificate: Option<String>,
    ) -> Result<Handshake, Option<AmqpError>>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let config = &self.config;
        send(writer, &start_frame(client_certificate.is_some()))
            .await
            .map_err(|_| None)?;
        let start_ok = match read_method(reader, FRAME_MIN, buf).await? {
            AMQPClass::Connection(connection::AMQPMethod::StartOk(m)) => m,
            other => return Err(Some(unexpected(&other))),
        };
        let accepts_blocked = match start_ok.client_properties.inner().get("capabilities") {
            Some(AMQPValue::FieldTable(c)) => {
                matches!(
                    c.inner().get("connection.blocked"),
                    Some(AMQPValue::Boolean(true))
                )
            }
            _ => false,
        };
        let (user, credential) = authenticate(
            start_ok.mechanism.as_str(),
            start_ok.response.as_bytes(),
            client_certificate.as_deref(),
            config,
        )
        .map_err(Some)?;
        let tune = AMQPFrame::Method(
            0,
            AMQPClass::Connection(connection::AMQPMethod::Tune(connection::Tune {
                channel_max: config.channel_max,
                frame_max: config.frame_max,
                heartbeat: config.heartbeat_secs,
            })),
        );
        send(writer, &tune).await.map_err(|_| None)?;
        let tune_ok = match read_method(reader, FRAME_MIN, buf).await? {
            AMQPClass::Connection(connection::AMQPMethod::TuneOk(m)) => m,
            other => return Err(Some(unexpected(&other))),
        };
        // The client may lower the limits, never raise them (0 means "no limit" from its side).
        let frame_max = match tune_ok.frame_max {
            0 => config.frame_max,
            f => f.min(config.frame_max),
        };
        if frame_max < FRAME_MIN {
            return Err(Some(AmqpError::connection(
                ReplyCode::SyntaxError,
                format!("frame_max {frame_max} is below the minimum {FRAME_MIN}"),
            )));
        }
        let channel_max = match tune_ok.channel_max {
            0 => config.channel_max,
            c => c.min(config.channel_max),
        };
        let open = match read_method(reader, frame_max, buf).await? {
            AMQPClass::Connection(connection::AMQPMethod::Open(m)) => m,
            other => return Err(Some(unexpected(&other))),
        };
        let name = open.virtual_host.as_str();
        let access = credential.map(crate::access::Access::new);
        if let Some(token) = access.as_ref().and_then(|a| a.token()) {
            // Pulsar decides, with the client's own token, before anything is done there.
            if !self
                .may_use_vhost(name, token.expose())
                .await
                .map_err(Some)?
            {
                tracing::info!(%user, vhost = name, "AMQP vhost access refused by Pulsar");
                return Err(Some(AmqpError::connection(
                    ReplyCode::NotAllowed,
                    format!("access to vhost '{name}' refused for user '{user}'"),
                )));
            }
        }
        // A token's role holds at most so many connections across the listeners.
        let slot = match (&access, &config.principal_connections) {
            (Some(_), Some(counter)) => Some(counter.acquire(&user).ok_or_else(|| {
                tracing::info!(%user, max = counter.max(), "AMQP connection refused: the principal's connection limit is reached");
                Some(AmqpError::connection(
                    ReplyCode::NotAllowed,
                    format!(
                        "connection refused for user '{user}': its limit of {} connections is reached",
                        counter.max()
                    ),
                ))
            })?),
            _ => None,
        };
        let vhost = self.vhost(name).await.map_err(Some)?;
        let open_ok = AMQPFrame::Method(
            0,
            AMQPClass::Connection(connection::AMQPMethod::OpenOk(connection::OpenOk {})),
        );
        send(writer, &open_ok).await.map_err(|_| None)?;
        Ok(Handshake {
            user,
            access,
            vhost,
            frame_max,
            channel_max,
            heartbeat: tune_ok.heartbeat,
            accepts_blocked,
            slot,
        })
    }
}

fn unexpected(method: &AMQPClass) -> AmqpError {
    AmqpError::connection(
        ReplyCode::CommandInvalid,
        "unexpected method during the connection handshake",
    )
    .on_method(method.get_amqp_class_id(), method.get_amqp_method_id())
}

async fn read_method<R: AsyncRead + Unpin>(
    reader: &mut R,
    frame_max: u32,
    buf: &mut Vec<u8>,
) -> Result<AMQPClass, Option<AmqpError>> {
    loop {
        match codec::read_frame(reader, frame_max, buf).await {
            Ok(AMQPFrame::Method(0, method)) => return Ok(method),
            Ok(AMQPFrame::Heartbeat) => continue,
            Ok(_) => {
                return Err(Some(AmqpError::connection(
                    ReplyCode::UnexpectedFrame,
                    "expected a method on channel 0 during the handshake",
                )))
            }
            Err(ReadError::Protocol(e)) => return Err(Some(e)),
            Err(_) => return Err(None),
        }
    }
}

/// PLAIN (`\0user\0password`) and AMQPLAIN (a field table with LOGIN and PASSWORD). With token
/// authentication the password is a Pulsar token (optionally `token:<jwt>`) and the user name is
/// informational; the configured users are accepted only while authentication is not required.
/// EXTERNAL logs in as the common name of the verified client certificate.
/// Returns the user (the token's role with a token) and, for a token or certificate login, the
/// credential its operations are checked with.
fn authenticate(
    mechanism: &str,
    response: &[u8],
    client_certificate: Option<&str>,
    config: &crate::frontend::AmqpConfig,
) -> Result<(String, Option<Credential>), AmqpError> {
    let refused = |user: &str| {
        AmqpError::connection(
            ReplyCode::AccessRefused,
            format!(
                "Login was refused using authentication mechanism {mechanism}. For details see the gateway log. (user '{user}')"
            ),
        )
    };
    let (user, password) = match mechanism {
        "EXTERNAL" => return authenticate_certificate(client_certificate, config),
        "PLAIN" => {
            let mut parts = response.split(|b| *b == 0);
            let _authzid = parts.next();
            let user = parts.next().unwrap_or_default();
            let password = parts.next().unwrap_or_default();
            (
                String::from_utf8_lossy(user).into_owned(),
                String::from_utf8_lossy(password).into_owned(),
            )
        }
        "AMQPLAIN" => {
            // The response is a field table's contents without its length prefix (as RabbitMQ
            // and its clients send it); put the prefix back to parse it.
            let mut table_bytes = (response.len() as u32).to_be_bytes().to_vec();
            table_bytes.extend_from_slice(response);
            let response = table_bytes.as_slice();
            let table = if crate::nesting::table_within_limit(response, 0) {
                amq_protocol::types::parsing::parse_field_table(response)
                    .map(|(_, t)| t)
                    .unwrap_or_default()
            } else {
                FieldTable::default()
            };
            let get = |k: &str| match table.inner().get(k) {
                Some(AMQPValue::LongString(s)) => {
                    String::from_utf8_lossy(s.as_bytes()).into_owned()
                }
                Some(AMQPValue::ShortString(s)) => s.as_str().to_owned(),
                _ => String::new(),
            };
            (get("LOGIN"), get("PASSWORD"))
        }
        other => {
            return Err(AmqpError::connection(
                ReplyCode::AccessRefused,
                format!("authentication mechanism {other} is not supported"),
            ))
        }
    };
    if !config.auth_required
        && config
            .users
            .iter()
            .any(|(u, p)| *u == user && *p == password)
    {
        return Ok((user, None));
    }
    let Some(verifier) = &config.auth else {
        tracing::info!(%user, "AMQP login refused: unknown user or wrong password");
        return Err(refused(&user));
    };
    let token = password.strip_prefix("token:").unwrap_or(&password);
    match verifier.verify(token) {
        Ok(principal) => Ok((principal.role.clone(), Some(Credential::Token(principal)))),
        Err(reason) => {
            metrics::counter!("amqp_authentication_failures_total").increment(1);
            tracing::info!(%user, %reason, "AMQP login refused");
            Err(refused(&user))
        }
    }
}

/// SASL EXTERNAL (RabbitMQ's rabbitmq_auth_mechanism_ssl): the client is who its certificate,
/// verified against the configured client CA during the TLS handshake, names. Its common name is
/// the role. With token authentication configured, Pulsar still decides what that role may do:
/// the gateway signs a short-lived token for it with the secret key (it holds that key to check
/// tokens anyway); with only a public key it cannot, and EXTERNAL is refused.
fn authenticate_certificate(
    client_certificate: Option<&str>,
    config: &crate::frontend::AmqpConfig,
) -> Result<(String, Option<Credential>), AmqpError> {
    let refused = |reason: &str| {
        tracing::info!(reason, "AMQP EXTERNAL login refused");
        AmqpError::connection(
            ReplyCode::AccessRefused,
            format!("Login was refused using authentication mechanism EXTERNAL: {reason}"),
        )
    };
    let Some(role) = client_certificate.filter(|r| !r.is_empty()) else {
        return Err(refused(
            "no verified client certificate with a common name on this connection",
        ));
    };
    match &config.auth {
        None => Ok((role.to_owned(), None)),
        Some(verifier) if verifier.can_issue() => Ok((
            role.to_owned(),
            Some(Credential::Certificate {
                role: role.to_owned(),
                verifier: verifier.clone(),
            }),
        )),
        Some(_) => Err(refused(
            "the gateway checks tokens with a public key and cannot vouch for a certificate's role",
        )),
    }
}

fn start_frame(external: bool) -> AMQPFrame {
    let mut capabilities = FieldTable::default();
    for name in [
        "publisher_confirms",
        "exchange_exchange_bindings",
        "basic.nack",
        "consumer_cancel_notify",
        "connection.blocked",
        "authentication_failure_close",
        "per_consumer_qos",
        "consumer_priorities",
    ] {
        capabilities.insert(name.into(), AMQPValue::Boolean(true));
    }
    let text = |s: &str| AMQPValue::LongString(LongString::from(s.as_bytes().to_vec()));
    let mut properties = FieldTable::default();
    properties.insert("product".into(), text("pulsar-gateway"));
    properties.insert("version".into(), text(env!("CARGO_PKG_VERSION")));
    properties.insert("platform".into(), text("Rust"));
    properties.insert(
        "information".into(),
        text("AMQP 0-9-1 on Apache Pulsar; see docs/amqp.md"),
    );
    properties.insert("capabilities".into(), AMQPValue::FieldTable(capabilities));
    AMQPFrame::Method(
        0,
        AMQPClass::Connection(connection::AMQPMethod::Start(connection::Start {
            version_major: 0,
            version_minor: 9,
            server_properties: properties,
            mechanisms: LongString::from(if external {
                b"PLAIN AMQPLAIN EXTERNAL".to_vec()
            } else {
                b"PLAIN AMQPLAIN".to_vec()
            }),
            locales: LongString::from(b"en_US".to_vec()),
        })),
    )
}

fn close_frame(error: &AmqpError) -> AMQPFrame {
    AMQPFrame::Method(
        0,
        AMQPClass::Connection(connection::AMQPMethod::Close(connection::Close {
            reply_code: error.code as u16,
            reply_text: error.reply_text().into(),
            class_id: error.class_id,
            method_id: error.method_id,
        })),
    )
}

async fn send<W: AsyncWrite + Unpin>(writer: &mut W, frame: &AMQPFrame) -> std::io::Result<()> {
    let mut bytes = Vec::new();
    codec::encode(frame, &mut bytes);
    writer.write_all(&bytes).await
}

async fn send_close<W: AsyncWrite + Unpin>(writer: &mut W, error: &AmqpError) {
    let _ = send(writer, &close_frame(error)).await;
}

/// Writes queued frames, and a heartbeat whenever nothing was written for half the interval.
async fn write_loop<W: AsyncWrite + Unpin>(
    mut writer: W,
    mut outgoing: mpsc::Receiver<Vec<AMQPFrame>>,
    heartbeat: u16,
) {
    let idle = if heartbeat == 0 {
        Duration::from_secs(3600 * 24)
    } else {
        Duration::from_millis(u64::from(heartbeat) * 500)
    };
    let mut bytes = Vec::with_capacity(64 * 1024);
    loop {
        bytes.clear();
        match tokio::time::timeout(idle, outgoing.recv()).await {
            Ok(Some(frames)) => {
                for frame in &frames {
                    codec::encode(frame, &mut bytes);
                }
                // Coalesce whatever else is ready into one write.
                while bytes.len() < 256 * 1024 {
                    match outgoing.try_recv() {
                        Ok(more) => more.iter().for_each(|f| codec::encode(f, &mut bytes)),
                        Err(_) => break,
                    }
                }
            }
            Ok(None) => break,
            Err(_) => codec::encode(&AMQPFrame::Heartbeat, &mut bytes),
        }
        if writer.write_all(&bytes).await.is_err() {
            break;
        }
    }
    let _ = writer.flush().await;
    let _ = writer.shutdown().await;
}

/// How the frame loop ended.
struct Ended {
    channels: HashMap<u16, Channel>,
    /// A connection error to report with connection.close.
    error: Option<AmqpError>,
}

/// The frame loop: reads frames (a missing heartbeat ends it), hands them to channels, and
/// turns channel-scoped errors into channel.close and the rest into connection.close.
async fn run<R: AsyncRead + Unpin>(
    session: &Arc<Session>,
    reader: &mut R,
    heartbeat: u16,
    drain: &mut watch::Receiver<bool>,
) -> Ended {
    let mut channels: HashMap<u16, Channel> = HashMap::new();
    let mut buf = Vec::new();
    // Spec §4.2.7: a peer that sends nothing for two intervals is gone.
    let silence = if heartbeat == 0 {
        Duration::from_secs(3600 * 24 * 365)
    } else {
        Duration::from_secs(u64::from(heartbeat) * 2)
    };
    loop {
        let frame = tokio::select! {
            read = tokio::time::timeout(silence, codec::read_frame(reader, session.frame_max, &mut buf)) => read,
            _ = drain.wait_for(|d| *d) => {
                return Ended {
                    channels,
                    error: Some(AmqpError::connection(ReplyCode::ConnectionForced, "the gateway is shutting down")),
                };
            }
            // A token's `exp` ends its connection, as RabbitMQ ends a connection whose OAuth 2
            // token expired; connection.update-secret moves it.
            _ = tokio::time::sleep_until(token_deadline(session)) => {
                info!(connection = %session.name, user = %session.user, "the client's token expired; closing the connection");
                return Ended {
                    channels,
                    error: Some(AmqpError::connection(
                        ReplyCode::AccessRefused,
                        "the token expired (renew it with connection.update-secret before it does)",
                    )),
                };
            }
        };
        let frame = match frame {
            Err(_) => {
                info!(connection = %session.name, "missed heartbeats; closing the connection");
                return Ended {
                    channels,
                    error: None,
                };
            }
            Ok(Err(ReadError::Protocol(e))) => {
                return Ended {
                    channels,
                    error: Some(e),
                }
            }
            Ok(Err(_)) => {
                return Ended {
                    channels,
                    error: None,
                }
            }
            Ok(Ok(frame)) => frame,
        };
        match handle_frame(session, &mut channels, frame).await {
            Ok(Flow::Continue) => {}
            Ok(Flow::Closed) => {
                return Ended {
                    channels,
                    error: None,
                }
            }
            Err(e) => {
                return Ended {
                    channels,
                    error: Some(e),
                }
            }
        }
    }
}

/// When the session's token expires, as a Tokio instant; far off when it never does.
fn token_deadline(session: &Session) -> tokio::time::Instant {
    let now = tokio::time::Instant::now();
    let Some(exp) = session.access.as_ref().and_then(|a| a.expires_at()) else {
        return now + Duration::from_secs(3600 * 24 * 365);
    };
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    now + Duration::from_secs(exp).saturating_sub(since_epoch)
}

/// connection.update-secret (RabbitMQ's method for tokens that expire): a valid token for the
/// same role replaces the connection's, which then lives until the new one expires. A refusal
/// closes the connection with NOT_ALLOWED, as RabbitMQ does.
fn update_secret(session: &Session, new_secret: &[u8]) -> Result<(), AmqpError> {
    let refused = |reason: &str| {
        info!(connection = %session.name, user = %session.user, %reason, "secret update refused");
        AmqpError::connection(
            ReplyCode::NotAllowed,
            format!("the new secret was refused: {reason}"),
        )
    };
    let (Some(access), Some(verifier)) = (&session.access, &session.frontend.config.auth) else {
        return Err(refused("this connection did not log in with a token"));
    };
    let secret = String::from_utf8_lossy(new_secret);
    let token = secret.strip_prefix("token:").unwrap_or(&secret);
    let principal = verifier
        .verify(token)
        .map_err(|e| refused(&e.to_string()))?;
    access.renew(principal).map_err(refused)?;
    info!(connection = %session.name, user = %session.user, "secret updated");
    Ok(())
}

enum Flow {
    Continue,
    /// The client closed the connection (close-ok sent).
    Closed,
}

async fn handle_frame(
    session: &Arc<Session>,
    channels: &mut HashMap<u16, Channel>,
    frame: AMQPFrame,
) -> Result<Flow, AmqpError> {
    let id = frame.channel_id();
    match frame {
        AMQPFrame::Heartbeat => return Ok(Flow::Continue),
        AMQPFrame::InvalidHeartbeat(_) => {
            return Err(AmqpError::connection(
                ReplyCode::CommandInvalid,
                "heartbeat on a channel other than 0",
            ))
        }
        AMQPFrame::ProtocolHeader(_) => {
            return Err(AmqpError::connection(
                ReplyCode::CommandInvalid,
                "protocol header inside a connection",
            ))
        }
        AMQPFrame::Method(0, AMQPClass::Connection(method)) => {
            return match method {
                connection::AMQPMethod::Close(_) => {
                    for (_, channel) in channels.iter_mut() {
                        channel.close().await;
                    }
                    channels.clear();
                    let ok = AMQPFrame::Method(
                        0,
                        AMQPClass::Connection(connection::AMQPMethod::CloseOk(
                            connection::CloseOk {},
                        )),
                    );
                    let _ = session.out.send(vec![ok]).await;
                    Ok(Flow::Closed)
                }
                connection::AMQPMethod::UpdateSecret(update) => {
                    update_secret(session, update.new_secret.as_bytes())?;
                    let ok = AMQPFrame::Method(
                        0,
                        AMQPClass::Connection(connection::AMQPMethod::UpdateSecretOk(
                            connection::UpdateSecretOk {},
                        )),
                    );
                    let _ = session.out.send(vec![ok]).await;
                    Ok(Flow::Continue)
                }
                // A client answering connection.blocked-style server methods, or misusing the
                // handshake methods, is a hard error.
                other => Err(unexpected(&AMQPClass::Connection(other))),
            };
        }
        AMQPFrame::Method(0, other) => {
            return Err(AmqpError::connection(
                ReplyCode::CommandInvalid,
                "channel 0 carries only connection methods",
            )
            .on_method(other.get_amqp_class_id(), other.get_amqp_method_id()));
        }
        AMQPFrame::Header(0, _) | AMQPFrame::Body(0, _) => {
            return Err(AmqpError::connection(
                ReplyCode::CommandInvalid,
                "content on channel 0",
            ))
        }
        _ => {}
    }
    if id > session.channel_max {
        // RabbitMQ's answer (NOT_ALLOWED), which clients expect.
        return Err(AmqpError::connection(
            ReplyCode::NotAllowed,
            format!(
                "channel {id} is above the negotiated channel_max {}",
                session.channel_max
            ),
        ));
    }
    if let std::collections::hash_map::Entry::Vacant(slot) = channels.entry(id) {
        // Only channel.open may address a channel that is not open.
        if !matches!(
            &frame,
            AMQPFrame::Method(
                _,
                AMQPClass::Channel(amq_protocol::protocol::channel::AMQPMethod::Open(_))
            )
        ) {
            return Err(AmqpError::connection(
                ReplyCode::ChannelError,
                format!("channel {id} is not open"),
            ));
        }
        slot.insert(Channel::new(id, session.clone()));
    }
    let channel = channels.get_mut(&id).expect("inserted above");
    match channel.handle(frame).await {
        Ok(crate::channel::ChannelFlow::Open) => Ok(Flow::Continue),
        Ok(crate::channel::ChannelFlow::Closed) => {
            channels.remove(&id);
            Ok(Flow::Continue)
        }
        Err(e) if e.scope == Scope::Channel => {
            channel.fail(e).await;
            Ok(Flow::Continue)
        }
        Err(e) => Err(e),
    }
}
