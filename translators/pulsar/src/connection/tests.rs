//! The connection's own mechanics, against a scripted peer on a local socket that speaks
//! just enough of the protocol (the behaviour with real brokers is in the end-to-end tests).

use super::*;
use crate::proto::{CommandAuthChallenge, CommandConnected, CommandFlow, CommandSend};
use tokio::net::{TcpListener, TcpStream};

const LIMIT: usize = 8 * 1024 * 1024;

fn options(token: Option<TokenSource>, keepalive: Duration) -> ConnectOptions {
    ConnectOptions {
        tls: None,
        token,
        client_certificate: false,
        operation_timeout: Duration::from_secs(5),
        keepalive,
    }
}

/// A peer that accepts one connection and answers CONNECT.
struct Peer {
    stream: TcpStream,
    buf: BytesMut,
    /// The CONNECT it was sent.
    connect: BaseCommand,
}

impl Peer {
    async fn next(&mut self) -> Frame {
        loop {
            if let Some(frame) = frame::decode(&mut self.buf, LIMIT).unwrap() {
                return frame;
            }
            assert!(
                self.stream.read_buf(&mut self.buf).await.unwrap() > 0,
                "closed"
            );
        }
    }

    async fn send(&mut self, command: &BaseCommand) {
        self.stream
            .write_all(&frame::encode_command(command))
            .await
            .unwrap();
    }
}

async fn connect(options: ConnectOptions) -> (Arc<Connection>, Peer) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = Endpoint {
        host: "127.0.0.1".into(),
        port: listener.local_addr().unwrap().port(),
    };
    let peer = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let mut peer = Peer {
            stream,
            buf: BytesMut::new(),
            connect: BaseCommand::default(),
        };
        peer.connect = peer.next().await.command;
        peer.send(&BaseCommand {
            r#type: t::CONNECTED,
            connected: Some(CommandConnected {
                server_version: "scripted".into(),
                protocol_version: Some(PROTOCOL_VERSION),
                max_message_size: Some(LIMIT as i32 - 128 * 1024),
            }),
            ..Default::default()
        })
        .await;
        peer
    });
    let connection = Connection::open(&endpoint, None, &options).await.unwrap();
    (connection, peer.await.unwrap())
}

fn flow(consumer_id: u64) -> BaseCommand {
    BaseCommand {
        r#type: t::FLOW,
        flow: Some(CommandFlow {
            consumer_id,
            message_permits: 1,
        }),
        ..Default::default()
    }
}

fn send(sequence_id: u64, payload: &[u8]) -> Bytes {
    let command = BaseCommand {
        r#type: t::SEND,
        send: Some(CommandSend {
            producer_id: 1,
            sequence_id,
            num_messages: Some(1),
            txnid_least_bits: None,
            txnid_most_bits: None,
            highest_sequence_id: None,
        }),
        ..Default::default()
    };
    frame::encode_with_payload(&command, &MessageMetadata::default(), payload)
}

/// A broker that stops reading fills the send queue; control frames fired meanwhile must
/// all arrive once it reads again (a FLOW lost here stalls a consumer for good).
#[tokio::test]
async fn control_frames_are_never_dropped_when_the_send_queue_is_full() {
    let (connection, mut peer) = connect(options(None, KEEPALIVE)).await;
    assert_eq!(connection.max_message_size, LIMIT - 128 * 1024);
    let payload = vec![7u8; 64 * 1024];
    let sending = {
        let connection = connection.clone();
        tokio::spawn(async move {
            for sequence in 0..(OUTBOUND_SENDS as u64 + 100) {
                connection
                    .send_frame(send(sequence, &payload))
                    .await
                    .unwrap();
            }
        })
    };
    // The peer reads nothing: the socket's buffers fill, then the queue's slots run out.
    tokio::time::timeout(Duration::from_secs(30), async {
        while connection.send_slots.available_permits() > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the send queue fills while the peer does not read");
    const FIRED: u64 = 500;
    for consumer in 0..FIRED {
        connection.fire(flow(consumer));
    }
    let (mut sends, mut flows) = (0u64, Vec::new());
    tokio::time::timeout(Duration::from_secs(60), async {
        while sends < OUTBOUND_SENDS as u64 + 100 || (flows.len() as u64) < FIRED {
            let frame = peer.next().await;
            match frame.command.r#type {
                t::SEND => {
                    assert_eq!(frame.command.send.unwrap().sequence_id, sends, "in order");
                    sends += 1;
                }
                t::FLOW => flows.push(frame.command.flow.unwrap().consumer_id),
                t::PING => {}
                other => panic!("unexpected command {other}"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{sends} sends and {} FLOWs arrived", flows.len()));
    assert_eq!(flows, (0..FIRED).collect::<Vec<_>>());
    sending.await.unwrap();
}

/// A peer that stops answering (a half-open connection): PING after the keepalive
/// interval, and the connection is dropped when that gets no answer either; requests
/// waiting on it fail at once instead of at their deadline.
#[tokio::test]
async fn a_silent_broker_is_dropped_after_an_unanswered_ping() {
    let keepalive = Duration::from_millis(300);
    let (connection, mut peer) = connect(options(None, keepalive)).await;
    let waiting = {
        let connection = connection.clone();
        tokio::spawn(async move {
            let request_id = connection.next_id();
            let lookup = BaseCommand {
                r#type: t::LOOKUP,
                lookup_topic: Some(crate::proto::CommandLookupTopic {
                    topic: "t".into(),
                    request_id,
                    authoritative: None,
                }),
                ..Default::default()
            };
            connection.request(request_id, lookup).await
        })
    };
    // The peer reads the request and then the keepalive's PING, and answers neither.
    let mut pinged = false;
    let started = Instant::now();
    while !pinged {
        pinged = peer.next().await.command.r#type == t::PING;
    }
    assert!(
        started.elapsed() >= keepalive / 2,
        "PING only after silence"
    );
    let outcome = tokio::time::timeout(Duration::from_secs(4), waiting)
        .await
        .expect("the waiting request fails when the connection is dropped")
        .unwrap();
    assert!(
        matches!(outcome, Err(BackendError::Unavailable(_))),
        "{outcome:?}"
    );
    assert!(!connection.is_alive());
}

/// A broker that answers PINGs keeps the connection; `ping` proves it hears us.
#[tokio::test]
async fn an_answering_broker_keeps_the_connection() {
    let keepalive = Duration::from_millis(200);
    let (connection, mut peer) = connect(options(None, keepalive)).await;
    let answering = tokio::spawn(async move {
        loop {
            if peer.next().await.command.r#type == t::PING {
                peer.send(&BaseCommand {
                    r#type: t::PONG,
                    pong: Some(CommandPong {}),
                    ..Default::default()
                })
                .await;
            }
        }
    });
    tokio::time::sleep(keepalive * 6).await;
    assert!(connection.is_alive());
    connection.ping(Duration::from_secs(2)).await.unwrap();
    answering.abort();
}

/// The token goes into CONNECT, and every AUTH_CHALLENGE is answered with the token as it
/// is now, read again from its file after a rotation.
#[tokio::test]
async fn challenges_are_answered_with_the_current_token() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("token");
    std::fs::write(&path, "first-token").unwrap();
    let source = TokenSource::parse(&format!("file://{}", path.display())).unwrap();
    let (_connection, mut peer) = connect(options(Some(source), KEEPALIVE)).await;
    let connect = peer.connect.connect.clone().unwrap();
    assert_eq!(connect.auth_method_name.as_deref(), Some("token"));
    assert_eq!(connect.auth_data.as_deref(), Some(&b"first-token"[..]));
    assert_eq!(
        connect.feature_flags.and_then(|f| f.supports_auth_refresh),
        Some(true)
    );
    let challenge = BaseCommand {
        r#type: t::AUTH_CHALLENGE,
        auth_challenge: Some(CommandAuthChallenge {
            server_version: Some("scripted".into()),
            challenge: Some(AuthData {
                auth_method_name: Some("token".into()),
                auth_data: Some(b"PulsarAuthRefresh".to_vec()),
            }),
            protocol_version: Some(PROTOCOL_VERSION),
        }),
        ..Default::default()
    };
    for expected in ["first-token", "rotated-token"] {
        if expected == "rotated-token" {
            let next = dir.path().join("next");
            std::fs::write(&next, "rotated-token\n").unwrap();
            std::fs::rename(&next, &path).unwrap();
        }
        peer.send(&challenge).await;
        let answer = loop {
            let frame = peer.next().await;
            if frame.command.r#type == t::AUTH_RESPONSE {
                break frame.command.auth_response.unwrap();
            }
        };
        let response = answer.response.unwrap();
        assert_eq!(response.auth_method_name.as_deref(), Some("token"));
        assert_eq!(response.auth_data.as_deref(), Some(expected.as_bytes()));
    }
}
