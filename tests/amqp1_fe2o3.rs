//! The AMQP 1.0 front end (issue 14) on the shared AMQP port, driven by the `fe2o3-amqp` client
//! (its client side, a code path the gateway does not use), and by raw bytes for bad input.
//!
//! What is checked: the protocol header picks the front end (0-9-1 still works next to 1.0);
//! SASL PLAIN and ANONYMOUS, and tokens when the gateway requires them; sending to a queue and
//! receiving from it through the Shared subscription `jms-queue`; two receivers sharing a
//! queue; a message larger than a frame in both directions; released messages coming back;
//! selectors (matching messages taken, the others left on the queue) and time to live;
//! and bad input getting the spec's answer and a clean close while the gateway keeps serving.
//! Runs on the embedded backend, and on Pulsar with GATEWAY_TEST_BACKEND=pulsar.

use std::collections::HashSet;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use e2e_tests::InProcessGateway;
use fe2o3_amqp::connection::ConnectionHandle;
use fe2o3_amqp::sasl_profile::SaslProfile;
use fe2o3_amqp::session::SessionHandle;
use fe2o3_amqp::types::definitions::{
    AmqpError, ConnectionError, ErrorCondition, Handle, SessionError,
};
use fe2o3_amqp::types::messaging::{Body, Data, Message, Outcome};
use fe2o3_amqp::types::performatives::{Begin, Open, Performative, Transfer};
use fe2o3_amqp::types::primitives::{Binary, SimpleValue, Value};
use fe2o3_amqp::{Connection, Receiver, Sender, Session};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const WAIT: Duration = Duration::from_secs(10);
const TEST_LIMIT: Duration = Duration::from_secs(60);
const HEADER_AMQP: &[u8; 8] = b"AMQP\x00\x01\x00\x00";
const HEADER_SASL: &[u8; 8] = b"AMQP\x03\x01\x00\x00";

async fn bounded(body: impl Future<Output = ()>) {
    tokio::time::timeout(TEST_LIMIT, body)
        .await
        .expect("the test finished within its time limit");
}

async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, fut)
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer within {WAIT:?}"))
}

fn unique(prefix: &str) -> String {
    format!("amqp1-{prefix}-{:08x}", rand::random::<u32>())
}

fn addr(gateway: &InProcessGateway) -> SocketAddr {
    gateway.gateway.amqp_addr()
}

/// A connection logged in as guest with SASL PLAIN.
async fn connect(gateway: &InProcessGateway) -> ConnectionHandle<()> {
    let url = format!("amqp://guest:guest@{}", addr(gateway));
    within("open", Connection::open(unique("client"), &url[..]))
        .await
        .expect("open")
}

async fn session(connection: &mut ConnectionHandle<()>) -> SessionHandle<()> {
    within("begin", Session::begin(connection))
        .await
        .expect("begin")
}

async fn sender(session: &mut SessionHandle<()>, queue: &str) -> Sender {
    within(
        "attach sender",
        Sender::attach(session, unique("sender"), queue),
    )
    .await
    .expect("sender attached")
}

async fn receiver(session: &mut SessionHandle<()>, queue: &str) -> Receiver {
    within(
        "attach receiver",
        Receiver::attach(session, unique("receiver"), queue),
    )
    .await
    .expect("receiver attached")
}

async fn send_text(sender: &mut Sender, text: &str) {
    let outcome = within("send", sender.send(text.to_string()))
        .await
        .expect("send");
    assert!(
        matches!(outcome, Outcome::Accepted(_)),
        "outcome {outcome:?}"
    );
}

async fn recv_text(receiver: &mut Receiver) -> String {
    let delivery = within("recv", receiver.recv::<String>())
        .await
        .expect("recv");
    receiver.accept(&delivery).await.expect("accept");
    delivery.into_body()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_sent_to_a_queue_is_received_from_it() {
    bounded(async {
        let gateway = InProcessGateway::start().await;
        let queue = unique("q");
        let mut connection = connect(&gateway).await;
        let mut session = session(&mut connection).await;
        // Sent before any receiver: the queue keeps it.
        let mut sender = sender(&mut session, &queue).await;
        send_text(&mut sender, "hello").await;
        // A data body with application properties.
        let message = Message::builder()
            .application_properties(
                fe2o3_amqp::types::messaging::ApplicationProperties::builder()
                    .insert("n", SimpleValue::Int(7))
                    .insert("s", SimpleValue::String("x".into()))
                    .build(),
            )
            .data(Binary::from(vec![0u8, 1, 2, 255]))
            .build();
        let outcome = within("send data", sender.send(message))
            .await
            .expect("send");
        assert!(matches!(outcome, Outcome::Accepted(_)));

        let mut receiver = receiver(&mut session, &queue).await;
        assert_eq!(recv_text(&mut receiver).await, "hello");
        let delivery = within("recv data", receiver.recv::<Body<Value>>())
            .await
            .expect("recv");
        receiver.accept(&delivery).await.unwrap();
        let props = delivery
            .message()
            .application_properties
            .as_ref()
            .expect("application properties kept");
        assert_eq!(props.0.get("n"), Some(&SimpleValue::Int(7)));
        assert_eq!(props.0.get("s"), Some(&SimpleValue::String("x".into())));
        match delivery.body() {
            Body::Data(batch) => assert_eq!(
                batch.iter().collect::<Vec<&Data>>()[0].0.as_slice(),
                &[0u8, 1, 2, 255][..]
            ),
            other => panic!("body {other:?}"),
        }
        sender.close().await.unwrap();
        receiver.close().await.unwrap();
        session.end().await.unwrap();
        connection.close().await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_released_message_is_delivered_again_and_an_accepted_one_is_not() {
    bounded(async {
        let gateway = InProcessGateway::start().await;
        let queue = unique("release");
        let mut connection = connect(&gateway).await;
        let mut session = session(&mut connection).await;
        let mut sender = sender(&mut session, &queue).await;
        send_text(&mut sender, "once").await;
        let mut receiver = receiver(&mut session, &queue).await;
        let delivery_count = |d: &fe2o3_amqp::link::delivery::Delivery<String>| {
            d.message().header.as_ref().map_or(0, |h| h.delivery_count)
        };
        let first = within("recv", receiver.recv::<String>()).await.unwrap();
        // Released is no delivery attempt (core §3.4.4): the count stays.
        receiver.release(&first).await.unwrap();
        let again = within("recv again", receiver.recv::<String>())
            .await
            .unwrap();
        assert_eq!(again.body(), "once");
        assert_eq!(delivery_count(&again), 0);
        // Modified with delivery-failed is one (§3.4.5).
        let failed = fe2o3_amqp::types::messaging::Modified {
            delivery_failed: Some(true),
            undeliverable_here: None,
            message_annotations: None,
        };
        receiver.modify(&again, failed).await.unwrap();
        let third = within("recv a third time", receiver.recv::<String>())
            .await
            .unwrap();
        assert_eq!(third.body(), "once");
        assert_eq!(delivery_count(&third), 1);
        receiver.accept(&third).await.unwrap();
        receiver.close().await.unwrap();

        // A new receiver finds nothing: the accept was an ack.
        send_text(&mut sender, "next").await;
        let mut other = self::receiver(&mut session, &queue).await;
        assert_eq!(recv_text(&mut other).await, "next");
        connection.close().await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_receivers_share_a_queue() {
    bounded(async {
        let gateway = InProcessGateway::start().await;
        let queue = unique("shared");
        let mut connection = connect(&gateway).await;
        let mut session = session(&mut connection).await;
        let mut one = receiver(&mut session, &queue).await;
        let mut two = receiver(&mut session, &queue).await;
        let mut sender = sender(&mut session, &queue).await;
        const N: usize = 40;
        for i in 0..N {
            send_text(&mut sender, &format!("m{i}")).await;
        }
        let mut seen = Vec::new();
        let (mut from_one, mut from_two) = (0, 0);
        while seen.len() < N {
            tokio::select! {
                d = one.recv::<String>() => { let d = d.unwrap(); one.accept(&d).await.unwrap(); from_one += 1; seen.push(d.into_body()); }
                d = two.recv::<String>() => { let d = d.unwrap(); two.accept(&d).await.unwrap(); from_two += 1; seen.push(d.into_body()); }
                _ = tokio::time::sleep(WAIT) => panic!("only {} of {N} messages arrived", seen.len()),
            }
        }
        let distinct: HashSet<&String> = seen.iter().collect();
        assert_eq!(distinct.len(), N, "each message once: {seen:?}");
        assert!(from_one > 0 && from_two > 0, "both receivers got some: {from_one} and {from_two}");
        connection.close().await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_larger_than_a_frame_goes_both_ways() {
    bounded(async {
        let gateway = InProcessGateway::start().await;
        let queue = unique("large");
        let url = format!("amqp://guest:guest@{}", addr(&gateway));
        // A small frame size of the client's, so the gateway must split what it sends too.
        let mut connection = within(
            "open",
            Connection::builder()
                .container_id(unique("client"))
                .max_frame_size(4096)
                .open(&url[..]),
        )
        .await
        .expect("open");
        let mut session = session(&mut connection).await;
        let mut sender = sender(&mut session, &queue).await;
        let big: String = (0..1_000_000)
            .map(|i| char::from(b'a' + (i % 26) as u8))
            .collect();
        send_text(&mut sender, &big).await;
        let mut receiver = receiver(&mut session, &queue).await;
        let got = recv_text(&mut receiver).await;
        assert_eq!(got.len(), big.len());
        assert!(got == big, "the body came back unchanged");
        connection.close().await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_and_no_sasl_work_without_auth_and_0_9_1_still_does() {
    bounded(async {
        let gateway = InProcessGateway::start().await;
        let queue = unique("anon");
        // No SASL layer at all: AMQP 0 1 0 0 straight away.
        let url = format!("amqp://{}", addr(&gateway));
        let mut plain = within("open", Connection::open(unique("c"), &url[..]))
            .await
            .expect("open without SASL");
        let mut s = session(&mut plain).await;
        let mut tx = sender(&mut s, &queue).await;
        send_text(&mut tx, "no-sasl").await;
        plain.close().await.unwrap();
        // SASL ANONYMOUS.
        let mut anonymous = within(
            "open",
            Connection::builder()
                .container_id(unique("c"))
                .sasl_profile(SaslProfile::Anonymous)
                .open(&url[..]),
        )
        .await
        .expect("open with ANONYMOUS");
        let mut s = session(&mut anonymous).await;
        let mut rx = receiver(&mut s, &queue).await;
        assert_eq!(recv_text(&mut rx).await, "no-sasl");
        anonymous.close().await.unwrap();

        // The same port still serves AMQP 0-9-1.
        let uri = format!("amqp://guest:guest@{}/%2f", addr(&gateway));
        let lapin = within(
            "lapin",
            lapin::Connection::connect(&uri, lapin::ConnectionProperties::default()),
        )
        .await
        .expect("0-9-1 connects on the same port");
        lapin.close(200, "bye".into()).await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_auth_required_only_a_token_logs_in() {
    bounded(async {
        const SECRET: &[u8] = b"issue-14-test-secret-key-0123456789abcdef";
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("secret.key");
        std::fs::write(&key, SECRET).unwrap();
        let gateway = InProcessGateway::start_with(|c| {
            c.auth.token_secret_key = Some(format!("file://{}", key.display()));
            c.auth.required = true;
            c.limits.max_connections_per_principal = 2;
        })
        .await;
        let a = addr(&gateway);
        // Wrong password, and the configured guest user, which only counts without auth.
        for url in [
            format!("amqp://guest:guest@{a}"),
            format!("amqp://user:not-a-jwt@{a}"),
        ] {
            let refused = within("open", Connection::open(unique("c"), &url[..])).await;
            assert!(refused.is_err(), "{url} was let in");
        }
        // ANONYMOUS is not offered, and a bare AMQP header gets the SASL header back.
        let anonymous = within(
            "open",
            Connection::builder()
                .container_id(unique("c"))
                .sasl_profile(SaslProfile::Anonymous)
                .open(&format!("amqp://{a}")[..]),
        )
        .await;
        assert!(anonymous.is_err(), "ANONYMOUS was let in");
        let mut raw = TcpStream::connect(a).await.unwrap();
        raw.write_all(HEADER_AMQP).await.unwrap();
        assert_eq!(read_to_close(&mut raw).await, HEADER_SASL);

        // Signed as Pulsar's token tool signs them (HS256, `sub`).
        let token = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &serde_json::json!({"sub": "amqp1-role"}),
            &jsonwebtoken::EncodingKey::from_secret(SECRET),
        )
        .unwrap();
        let url = format!("amqp://amqp1-role:{token}@{a}");
        let mut ok = within("open", Connection::open(unique("c"), &url[..]))
            .await
            .expect("a valid token logs in");
        // The role's connections are counted with the other listeners' (the limit is 2 here).
        let mut second = within("open", Connection::open(unique("c"), &url[..]))
            .await
            .expect("a second connection of the role");
        let third = within("open", Connection::open(unique("c"), &url[..])).await;
        assert!(third.is_err(), "a third connection of the role was let in");
        second.close().await.unwrap();
        let mut s = session(&mut ok).await;
        let queue = unique("auth");
        let mut tx = sender(&mut s, &queue).await;
        send_text(&mut tx, "with a token").await;
        ok.close().await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tls_listener_serves_amqp_1_0_too() {
    bounded(async {
        const SECRET: &[u8] = b"issue-14-tls-secret-key-0123456789abcdef";
        let pki = e2e_tests::pki::Pki::new();
        pki.issue("server", &["127.0.0.1", "localhost"]);
        std::fs::write(pki.path("secret.key"), SECRET).unwrap();
        let (cert, key, secret) = (
            pki.path("server.pem"),
            pki.path("server.key"),
            pki.path("secret.key"),
        );
        let gateway = InProcessGateway::start_with(move |c| {
            c.tls.amqp_listen = Some("127.0.0.1:0".parse().unwrap());
            c.tls.cert_file = Some(cert);
            c.tls.key_file = Some(key);
            c.auth.token_secret_key = Some(format!("file://{}", secret.display()));
            c.auth.required = true;
        })
        .await;
        let tls_addr = gateway.gateway.amqp_tls_addr().expect("amqps listener");
        let tls = tls_connect(&pki, tls_addr, None).await;

        let token = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &serde_json::json!({"sub": "tls-role"}),
            &jsonwebtoken::EncodingKey::from_secret(SECRET),
        )
        .unwrap();
        let mut connection = within(
            "open over TLS",
            Connection::builder()
                .container_id(unique("tls"))
                .sasl_profile(SaslProfile::Plain {
                    username: "tls-role".into(),
                    password: token,
                })
                .open_with_stream(tls),
        )
        .await
        .expect("AMQP 1.0 over TLS with a token");
        let mut s = session(&mut connection).await;
        let queue = unique("tls");
        let mut tx = sender(&mut s, &queue).await;
        send_text(&mut tx, "over tls").await;
        let mut rx = receiver(&mut s, &queue).await;
        assert_eq!(recv_text(&mut rx).await, "over tls");
        connection.close().await.unwrap();
    })
    .await;
}

/// A TLS connection to `addr` trusting the test CA, presenting the client certificate `client`
/// (a stem issued by `pki`) if given.
async fn tls_connect(
    pki: &e2e_tests::pki::Pki,
    addr: SocketAddr,
    client: Option<&str>,
) -> tokio_rustls::client::TlsStream<TcpStream> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(pki.path("ca.pem")).unwrap())
        .unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    let config = match client {
        None => builder.with_no_client_auth(),
        Some(stem) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_file(pki.path(&format!("{stem}.pem"))).unwrap()],
                PrivateKeyDer::from_pem_file(pki.path(&format!("{stem}.key"))).unwrap(),
            )
            .unwrap(),
    };
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    within("TLS handshake", connector.connect(name, tcp))
        .await
        .expect("TLS")
}

/// The SASL exchange by hand (fe2o3-amqp has no EXTERNAL): the mechanisms offered, then the
/// outcome code of a sasl-init with `mechanism` and no response.
async fn sasl_by_hand<S>(stream: &mut S, mechanism: &str) -> (Vec<String>, u8)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use fe2o3_amqp::types::sasl::{SaslCode, SaslInit, SaslMechanisms, SaslOutcome};
    async fn read_frame<S: tokio::io::AsyncRead + Unpin>(stream: &mut S) -> Vec<u8> {
        let mut size = [0u8; 4];
        within("a SASL frame", stream.read_exact(&mut size))
            .await
            .unwrap();
        let mut rest = vec![0u8; u32::from_be_bytes(size) as usize - 4];
        stream.read_exact(&mut rest).await.unwrap();
        rest.split_off(rest[0] as usize * 4 - 4)
    }
    stream.write_all(HEADER_SASL).await.unwrap();
    let mut header = [0u8; 8];
    within("the SASL header", stream.read_exact(&mut header))
        .await
        .unwrap();
    assert_eq!(&header, HEADER_SASL);
    let offer: SaslMechanisms = serde_amqp::from_slice(&read_frame(stream).await).unwrap();
    let offered = offer
        .sasl_server_mechanisms
        .0
        .iter()
        .map(|m| m.to_string())
        .collect();
    let init = SaslInit {
        mechanism: mechanism.into(),
        initial_response: None,
        hostname: None,
    };
    let body = serde_amqp::to_vec(&init).unwrap();
    stream.write_all(&raw_frame(1, 0, &body)).await.unwrap();
    let outcome: SaslOutcome = serde_amqp::from_slice(&read_frame(stream).await).unwrap();
    let code = match outcome.code {
        SaslCode::Ok => 0,
        SaslCode::Auth => 1,
        SaslCode::Sys => 2,
        SaslCode::SysPerm => 3,
        SaslCode::SysTemp => 4,
    };
    (offered, code)
}

/// SASL EXTERNAL on a TLS listener that verifies client certificates: the certificate's common
/// name is the login, offered only when a certificate was verified, and refused without one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sasl_external_logs_in_as_the_client_certificate() {
    bounded(async {
        const SECRET: &[u8] = b"issue-14-external-secret-key-0123456789ab";
        let pki = e2e_tests::pki::Pki::new();
        pki.issue("server", &["127.0.0.1", "localhost"]);
        pki.issue_client("client", "cert-role");
        std::fs::write(pki.path("secret.key"), SECRET).unwrap();
        let (cert, key, ca, secret) = (
            pki.path("server.pem"),
            pki.path("server.key"),
            pki.path("ca.pem"),
            pki.path("secret.key"),
        );
        let start = |client_ca: Option<std::path::PathBuf>| {
            let (cert, key, secret) = (cert.clone(), key.clone(), secret.clone());
            InProcessGateway::start_with(move |c| {
                c.tls.amqp_listen = Some("127.0.0.1:0".parse().unwrap());
                c.tls.cert_file = Some(cert);
                c.tls.key_file = Some(key);
                c.tls.client_ca_file = client_ca;
                c.auth.token_secret_key = Some(format!("file://{}", secret.display()));
                c.auth.required = true;
            })
        };
        let gateway = start(Some(ca)).await;
        let tls_addr = gateway.gateway.amqp_tls_addr().expect("amqps listener");

        let mut tls = tls_connect(&pki, tls_addr, Some("client")).await;
        let (offered, code) = sasl_by_hand(&mut tls, "EXTERNAL").await;
        assert_eq!(offered, ["EXTERNAL", "PLAIN"]);
        assert_eq!(code, 0, "EXTERNAL with a verified certificate logs in");
        // Then AMQP as usual, acting as the certificate's role.
        let mut connection = within(
            "open after EXTERNAL",
            Connection::builder()
                .container_id(unique("ext"))
                .open_with_stream(tls),
        )
        .await
        .expect("open");
        let mut s = session(&mut connection).await;
        let queue = unique("external");
        let mut tx = sender(&mut s, &queue).await;
        send_text(&mut tx, "as cert-role").await;
        let mut rx = receiver(&mut s, &queue).await;
        assert_eq!(recv_text(&mut rx).await, "as cert-role");
        connection.close().await.unwrap();

        // A listener without a client CA verifies no certificate: EXTERNAL is not offered, and
        // asking for it anyway is refused.
        let unverified = start(None).await;
        let addr = unverified.gateway.amqp_tls_addr().expect("amqps listener");
        let mut tls = tls_connect(&pki, addr, Some("client")).await;
        let (offered, code) = sasl_by_hand(&mut tls, "EXTERNAL").await;
        assert_eq!(offered, ["PLAIN"]);
        assert_eq!(code, 1, "auth");
        let mut rest = Vec::new();
        let _ = within("the refused socket closes", tls.read_to_end(&mut rest)).await;
        assert!(rest.is_empty(), "{rest:?}");
    })
    .await;
}

// ---- raw bytes: headers and bad frames ----------------------------------------------------------

async fn read_to_close(stream: &mut TcpStream) -> Vec<u8> {
    let mut answer = Vec::new();
    within("close", stream.read_to_end(&mut answer))
        .await
        .expect("read");
    answer
}

fn frame<T: serde::Serialize>(channel: u16, body: &T) -> Vec<u8> {
    let body = serde_amqp::to_vec(body).unwrap();
    raw_frame(0, channel, &body)
}

fn raw_frame(kind: u8, channel: u16, body: &[u8]) -> Vec<u8> {
    let mut out = ((body.len() + 8) as u32).to_be_bytes().to_vec();
    out.extend_from_slice(&[2, kind]);
    out.extend_from_slice(&channel.to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// The performatives in `bytes` (frames one after another), heartbeats left out.
fn performatives(mut bytes: &[u8]) -> Vec<Performative> {
    let mut out = Vec::new();
    while bytes.len() >= 8 {
        let size = u32::from_be_bytes(bytes[..4].try_into().unwrap()) as usize;
        let doff = bytes[4] as usize * 4;
        if size > 8 {
            out.push(serde_amqp::from_slice(&bytes[doff..size]).expect("a performative"));
        }
        bytes = &bytes[size..];
    }
    out
}

/// A raw connection past the header and open, without SASL.
async fn opened(gateway: &InProcessGateway) -> TcpStream {
    let mut s = TcpStream::connect(addr(gateway)).await.unwrap();
    s.write_all(HEADER_AMQP).await.unwrap();
    let open = Open {
        container_id: "raw".into(),
        hostname: None,
        max_frame_size: 65536.into(),
        channel_max: 8.into(),
        idle_time_out: None,
        outgoing_locales: None,
        incoming_locales: None,
        offered_capabilities: None,
        desired_capabilities: None,
        properties: None,
    };
    s.write_all(&frame(0, &Performative::Open(open)))
        .await
        .unwrap();
    s
}

/// The condition of the close that ends what the gateway sent.
fn close_condition(answer: &[u8]) -> ErrorCondition {
    assert_eq!(&answer[..8], HEADER_AMQP, "the header comes first");
    match performatives(&answer[8..]).pop() {
        Some(Performative::Close(close)) => close.error.expect("the close says why").condition,
        other => panic!("last frame is {other:?}, not a close"),
    }
}

/// A fresh client still gets through: one connection's bad input never reaches others.
async fn still_serving(gateway: &InProcessGateway) {
    let mut connection = connect(gateway).await;
    let mut s = session(&mut connection).await;
    let queue = unique("still");
    let mut tx = sender(&mut s, &queue).await;
    send_text(&mut tx, "still here").await;
    connection.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsupported_headers_are_answered_with_ours_and_closed() {
    bounded(async {
        let gateway = InProcessGateway::start().await;
        for (header, expected) in [
            (&b"AMQP\x00\x01\x00\x01"[..], &HEADER_AMQP[..]), // another 1.0 revision
            (b"AMQP\x02\x01\x00\x00", HEADER_AMQP),           // in-band TLS
            (b"AMQP\x00\x00\x09\x00", b"AMQP\x00\x00\x09\x01"), // not 1.x: the 0-9-1 side answers
        ] {
            let mut s = TcpStream::connect(addr(&gateway)).await.unwrap();
            s.write_all(header).await.unwrap();
            assert_eq!(
                read_to_close(&mut s).await,
                expected,
                "answer to {header:?}"
            );
        }
        // After SASL, anything but the AMQP header.
        let mut s = TcpStream::connect(addr(&gateway)).await.unwrap();
        s.write_all(HEADER_SASL).await.unwrap();
        let init = fe2o3_amqp::types::sasl::SaslInit {
            mechanism: "ANONYMOUS".into(),
            initial_response: None,
            hostname: None,
        };
        s.write_all(&raw_frame(1, 0, &serde_amqp::to_vec(&init).unwrap()))
            .await
            .unwrap();
        s.write_all(b"AMQP\x00\x00\x09\x01").await.unwrap();
        let answer = read_to_close(&mut s).await;
        assert!(
            answer.starts_with(HEADER_SASL) && answer.ends_with(HEADER_AMQP),
            "{answer:?}"
        );
        still_serving(&gateway).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frames_get_the_spec_errors_and_a_clean_close() {
    bounded(async {
        let gateway = InProcessGateway::start().await;
        // A frame over the gateway's max-frame-size, refused from its header alone.
        let mut s = opened(&gateway).await;
        s.write_all(&[0x10, 0, 0, 0, 2, 0, 0, 0]).await.unwrap();
        let answer = read_to_close(&mut s).await;
        assert_eq!(
            close_condition(&answer),
            ErrorCondition::ConnectionError(ConnectionError::FramingError)
        );

        // Garbage where a performative belongs.
        let mut s = opened(&gateway).await;
        s.write_all(&raw_frame(0, 0, &[0x00, 0x53, 0x99, 0xde, 0xad]))
            .await
            .unwrap();
        let answer = read_to_close(&mut s).await;
        assert_eq!(
            close_condition(&answer),
            ErrorCondition::AmqpError(AmqpError::DecodeError)
        );

        // A frame size below the frame header.
        let mut s = opened(&gateway).await;
        s.write_all(&[0, 0, 0, 4, 2, 0, 0, 0]).await.unwrap();
        let answer = read_to_close(&mut s).await;
        assert_eq!(
            close_condition(&answer),
            ErrorCondition::ConnectionError(ConnectionError::FramingError)
        );

        // Something other than open first: an open (the spec allows close only after one),
        // then the close.
        let mut s = TcpStream::connect(addr(&gateway)).await.unwrap();
        s.write_all(HEADER_AMQP).await.unwrap();
        s.write_all(&frame(0, &Performative::Begin(begin())))
            .await
            .unwrap();
        let answer = read_to_close(&mut s).await;
        assert!(matches!(
            performatives(&answer[8..])[0],
            Performative::Open(_)
        ));
        assert_eq!(
            close_condition(&answer),
            ErrorCondition::AmqpError(AmqpError::IllegalState)
        );

        // A session beyond the gateway's channel-max (1023).
        let mut s = opened(&gateway).await;
        s.write_all(&frame(2000, &Performative::Begin(begin())))
            .await
            .unwrap();
        let answer = read_to_close(&mut s).await;
        assert_eq!(
            close_condition(&answer),
            ErrorCondition::ConnectionError(ConnectionError::FramingError)
        );

        // A max-frame-size below the spec's minimum of 512.
        let mut s = TcpStream::connect(addr(&gateway)).await.unwrap();
        s.write_all(HEADER_AMQP).await.unwrap();
        let open = Open {
            container_id: "tiny".into(),
            hostname: None,
            max_frame_size: 100.into(),
            channel_max: 8.into(),
            idle_time_out: None,
            outgoing_locales: None,
            incoming_locales: None,
            offered_capabilities: None,
            desired_capabilities: None,
            properties: None,
        };
        s.write_all(&frame(0, &Performative::Open(open)))
            .await
            .unwrap();
        let answer = read_to_close(&mut s).await;
        assert_eq!(
            close_condition(&answer),
            ErrorCondition::AmqpError(AmqpError::InvalidField)
        );

        // A frame on a channel with no session.
        let mut s = opened(&gateway).await;
        s.write_all(&frame(
            5,
            &Performative::End(fe2o3_amqp::types::performatives::End { error: None }),
        ))
        .await
        .unwrap();
        let answer = read_to_close(&mut s).await;
        assert_eq!(
            close_condition(&answer),
            ErrorCondition::AmqpError(AmqpError::NotAllowed)
        );

        // A transfer on a handle no link is attached to ends the session, not the connection.
        let mut s = opened(&gateway).await;
        s.write_all(&frame(0, &Performative::Begin(begin())))
            .await
            .unwrap();
        let transfer = Transfer {
            handle: Handle(3),
            delivery_id: Some(0),
            delivery_tag: Some(vec![0].into()),
            message_format: Some(0),
            settled: Some(true),
            more: false,
            rcv_settle_mode: None,
            state: None,
            resume: false,
            aborted: false,
            batchable: false,
        };
        s.write_all(&frame(0, &Performative::Transfer(transfer)))
            .await
            .unwrap();
        let mut got = Vec::new();
        let ended = within("end", async {
            loop {
                let mut buf = [0u8; 4096];
                let n = s.read(&mut buf).await.unwrap();
                assert!(n > 0, "the connection stays open");
                got.extend_from_slice(&buf[..n]);
                if got.len() <= 8 {
                    continue;
                }
                if let Some(Performative::End(end)) = performatives(&got[8..]).pop() {
                    return end;
                }
            }
        })
        .await;
        assert_eq!(
            ended.error.expect("the end says why").condition,
            ErrorCondition::SessionError(SessionError::UnattachedHandle)
        );

        still_serving(&gateway).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_are_sent_and_a_silent_client_is_closed() {
    bounded(async {
        let gateway = InProcessGateway::start_with(|c| c.amqp.heartbeat_secs = 1).await;
        let mut s = TcpStream::connect(addr(&gateway)).await.unwrap();
        s.write_all(HEADER_AMQP).await.unwrap();
        let open = Open {
            container_id: "silent".into(),
            hostname: None,
            max_frame_size: 65536.into(),
            channel_max: 8.into(),
            // The gateway must send something every 200 ms.
            idle_time_out: Some(400),
            outgoing_locales: None,
            incoming_locales: None,
            offered_capabilities: None,
            desired_capabilities: None,
            properties: None,
        };
        s.write_all(&frame(0, &Performative::Open(open)))
            .await
            .unwrap();
        // Then nothing from the client: closed after the gateway's idle-time-out (1 s).
        let started = std::time::Instant::now();
        let answer = read_to_close(&mut s).await;
        let waited = started.elapsed();
        let mut empty = 0;
        let mut rest = &answer[8..];
        while rest.len() >= 8 {
            let size = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
            empty += usize::from(size == 8);
            rest = &rest[size..];
        }
        assert!(empty >= 2, "{empty} heartbeats in {waited:?}");
        match performatives(&answer[8..]).as_slice() {
            [Performative::Open(theirs), Performative::Close(close)] => {
                assert_eq!(theirs.idle_time_out, Some(1000));
                assert_eq!(
                    close.error.as_ref().expect("the close says why").condition,
                    ErrorCondition::AmqpError(AmqpError::ResourceLimitExceeded)
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(
            waited >= Duration::from_millis(900),
            "closed after {waited:?}"
        );
        still_serving(&gateway).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_and_fuzzed_frames_close_the_connection_and_nothing_else() {
    bounded(async {
        let gateway = InProcessGateway::start().await;
        let attach = fe2o3_amqp::types::performatives::Attach {
            name: "fuzz".into(),
            handle: Handle(0),
            role: fe2o3_amqp::types::definitions::Role::Sender,
            snd_settle_mode: Default::default(),
            rcv_settle_mode: Default::default(),
            source: None,
            target: Some(Box::new(
                fe2o3_amqp::types::messaging::Target::builder()
                    .address("fuzz-q")
                    .build()
                    .into(),
            )),
            unsettled: None,
            incomplete_unsettled: false,
            initial_delivery_count: Some(0),
            max_message_size: None,
            offered_capabilities: None,
            desired_capabilities: None,
            properties: None,
        };
        let whole = serde_amqp::to_vec(&Performative::Attach(attach)).unwrap();
        // Every truncation of a valid performative, and bytes flipped in it: each is answered
        // with a close (or, for a flip that still decodes, anything) and never a hang or panic.
        for cut in (1..whole.len()).step_by(3) {
            let mut s = opened(&gateway).await;
            s.write_all(&frame(0, &Performative::Begin(begin())))
                .await
                .unwrap();
            s.write_all(&raw_frame(0, 0, &whole[..cut])).await.unwrap();
            let answer = read_to_close(&mut s).await;
            assert_eq!(
                close_condition(&answer),
                ErrorCondition::AmqpError(AmqpError::DecodeError),
                "cut at {cut}"
            );
        }
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..20 {
            let mut fuzzed = whole.clone();
            for _ in 0..3 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let at = (seed % fuzzed.len() as u64) as usize;
                fuzzed[at] = (seed >> 32) as u8;
            }
            let mut s = opened(&gateway).await;
            s.write_all(&frame(0, &Performative::Begin(begin())))
                .await
                .unwrap();
            s.write_all(&raw_frame(0, 0, &fuzzed)).await.unwrap();
            // Whatever it decodes to, closing our side must end the connection cleanly.
            s.shutdown().await.unwrap();
            read_to_close(&mut s).await;
        }
        // A frame cut off by the client going away.
        let mut s = opened(&gateway).await;
        s.write_all(&[0, 0, 0, 100, 2, 0, 0, 0, 1, 2, 3])
            .await
            .unwrap();
        s.shutdown().await.unwrap();
        let answer = read_to_close(&mut s).await;
        assert!(matches!(
            performatives(&answer[8..]).as_slice(),
            [Performative::Open(_)]
        ));
        still_serving(&gateway).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_gateway_closes_connections_with_connection_forced() {
    bounded(async {
        let gateway = InProcessGateway::start().await;
        let mut s = opened(&gateway).await;
        // The open has been answered before the drain starts.
        let mut got = Vec::new();
        within("open", async {
            let mut buf = [0u8; 1024];
            while got.len() < 9 || performatives(&got[8..]).is_empty() {
                let n = s.read(&mut buf).await.unwrap();
                assert!(n > 0);
                got.extend_from_slice(&buf[..n]);
            }
        })
        .await;
        let started = std::time::Instant::now();
        let report = tokio::spawn(gateway.gateway.shutdown());
        let mut rest = Vec::new();
        within("close", s.read_to_end(&mut rest)).await.unwrap();
        got.extend(rest);
        assert_eq!(
            close_condition(&got),
            ErrorCondition::ConnectionError(ConnectionError::ConnectionForced)
        );
        let report = within("drained", report).await.unwrap();
        assert_eq!(
            report.aborted_sessions, 0,
            "the session ended within the grace period"
        );
        assert!(started.elapsed() < Duration::from_secs(5));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sasl_init_declaring_gigabytes_is_refused_at_once() {
    bounded(async {
        let gateway = InProcessGateway::start().await;
        let mut s = TcpStream::connect(addr(&gateway)).await.unwrap();
        s.write_all(HEADER_SASL).await.unwrap();
        // sasl-init whose initial-response (vbin32) says it is 4 GiB long; 17 bytes in all.
        let body = [
            0x00, 0x53, 0x41, 0xc0, 0x0c, 0x02, 0xa3, 0x05, b'P', b'L', b'A', b'I', b'N', 0xb0,
            0xff, 0xff, 0xff, 0xff,
        ];
        s.write_all(&raw_frame(1, 0, &body)).await.unwrap();
        let started = std::time::Instant::now();
        let answer = read_to_close(&mut s).await;
        assert!(answer.starts_with(HEADER_SASL), "{answer:?}");
        // The outcome: sys-perm (3), the last byte of its frame.
        assert_eq!(answer.last(), Some(&3), "{answer:?}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "took {:?}",
            started.elapsed()
        );
        still_serving(&gateway).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_may_attach_1024_links_and_no_more() {
    bounded(async {
        let gateway = InProcessGateway::start().await;
        let mut s = opened(&gateway).await;
        let mut out = Vec::new();
        for channel in 0..2u16 {
            let mut b = begin();
            b.handle_max = Handle(1023);
            out.extend(frame(channel, &Performative::Begin(b)));
        }
        // 1023 links on channel 0, two on channel 1: the 1025th is refused.
        for (channel, handle) in (0..1023u32).map(|h| (0u16, h)).chain([(1, 0), (1, 1)]) {
            let attach = fe2o3_amqp::types::performatives::Attach {
                name: format!("link-{channel}-{handle}"),
                handle: Handle(handle),
                role: fe2o3_amqp::types::definitions::Role::Sender,
                snd_settle_mode: Default::default(),
                rcv_settle_mode: Default::default(),
                source: None,
                target: Some(Box::new(
                    fe2o3_amqp::types::messaging::Target::builder()
                        .address("many-links")
                        .build()
                        .into(),
                )),
                unsettled: None,
                incomplete_unsettled: false,
                initial_delivery_count: Some(0),
                max_message_size: None,
                offered_capabilities: None,
                desired_capabilities: None,
                properties: None,
            };
            out.extend(frame(channel, &Performative::Attach(attach)));
        }
        s.write_all(&out).await.unwrap();
        let mut got = Vec::new();
        let (channel, detach) = within("the refusal", async {
            let mut buf = vec![0u8; 65536];
            loop {
                let n = s.read(&mut buf).await.unwrap();
                assert!(n > 0, "closed before the refusal");
                got.extend_from_slice(&buf[..n]);
                let mut rest = got.get(8..).unwrap_or_default();
                while rest.len() >= 8 {
                    let size = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
                    if rest.len() < size {
                        break;
                    }
                    let channel = u16::from_be_bytes([rest[6], rest[7]]);
                    if size > 8 {
                        if let Ok(Performative::Detach(d)) = serde_amqp::from_slice(&rest[8..size])
                        {
                            return (channel, d);
                        }
                    }
                    rest = &rest[size..];
                }
            }
        })
        .await;
        assert_eq!(
            (channel, detach.handle.0),
            (1, 1),
            "the 1025th link is the one refused"
        );
        assert_eq!(
            detach.error.expect("the detach says why").condition,
            ErrorCondition::AmqpError(AmqpError::ResourceLimitExceeded)
        );
    })
    .await;
}

fn begin() -> Begin {
    Begin {
        remote_channel: None,
        next_outgoing_id: 0,
        incoming_window: 100,
        outgoing_window: 100,
        handle_max: Handle(10),
        offered_capabilities: None,
        desired_capabilities: None,
        properties: None,
    }
}

/// A receiver on `queue` with the JMS selector `selector`, as Qpid JMS sends it.
async fn selecting_receiver(
    session: &mut SessionHandle<()>,
    queue: &str,
    selector: &str,
) -> Result<Receiver, fe2o3_amqp::link::ReceiverAttachError> {
    use fe2o3_amqp::types::messaging::{FilterSet, Source};
    use fe2o3_amqp::types::primitives::Symbol;
    use serde_amqp::described::Described;
    use serde_amqp::descriptor::Descriptor;
    let mut filters = FilterSet::new();
    filters.insert(
        Symbol::from("jms-selector"),
        Value::Described(Box::new(Described {
            descriptor: Descriptor::Code(0x0000_468C_0000_0004),
            value: Value::String(selector.into()),
        })),
    );
    within(
        "attach selecting receiver",
        Receiver::builder()
            .name(unique("selecting"))
            .source(Source::builder().address(queue).filter(filters).build())
            .attach(session),
    )
    .await
}

async fn send_with(sender: &mut Sender, text: &str, n: i32) {
    let message = Message::builder()
        .application_properties(
            fe2o3_amqp::types::messaging::ApplicationProperties::builder()
                .insert("n", SimpleValue::Int(n))
                .build(),
        )
        .value(text.to_string())
        .build();
    let outcome = within("send", sender.send(message)).await.expect("send");
    assert!(matches!(outcome, Outcome::Accepted(_)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_selector_picks_messages_and_leaves_the_others_on_the_queue() {
    bounded(async {
        let gateway = InProcessGateway::start().await;
        let queue = unique("selector");
        let mut connection = connect(&gateway).await;
        let mut session = session(&mut connection).await;
        let mut sender = sender(&mut session, &queue).await;
        for (text, n) in [("one", 1), ("two", 2), ("three", 3), ("four", 4)] {
            send_with(&mut sender, text, n).await;
        }
        // An invalid selector is refused (on a session of its own: fe2o3 leaves the session
        // of a refused attach unusable).
        let mut other = self::session(&mut connection).await;
        assert!(selecting_receiver(&mut other, &queue, "n = ")
            .await
            .is_err());
        let mut even = selecting_receiver(&mut session, &queue, "n = 2 OR n = 4")
            .await
            .expect("attached");
        let echoed = even
            .source()
            .as_ref()
            .and_then(|s| s.filter.as_ref())
            .map(|f| f.len());
        assert_eq!(echoed, Some(1), "the selector is echoed");
        assert_eq!(recv_text(&mut even).await, "two");
        assert_eq!(recv_text(&mut even).await, "four");
        even.close().await.unwrap();
        // The others stayed for a receiver without a selector.
        let mut all = receiver(&mut session, &queue).await;
        let mut rest = vec![recv_text(&mut all).await, recv_text(&mut all).await];
        rest.sort();
        assert_eq!(rest, ["one", "three"]);
        all.close().await.unwrap();
        connection.close().await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_message_is_never_delivered() {
    bounded(async {
        let gateway = InProcessGateway::start().await;
        let queue = unique("ttl");
        let mut connection = connect(&gateway).await;
        let mut session = session(&mut connection).await;
        let mut sender = sender(&mut session, &queue).await;
        let expiring = Message::builder()
            .header(
                fe2o3_amqp::types::messaging::Header::builder()
                    .ttl(Some(100))
                    .build(),
            )
            .value("gone".to_string())
            .build();
        let outcome = within("send", sender.send(expiring)).await.unwrap();
        assert!(matches!(outcome, Outcome::Accepted(_)));
        send_text(&mut sender, "kept").await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut receiver = receiver(&mut session, &queue).await;
        assert_eq!(recv_text(&mut receiver).await, "kept");
        receiver.close().await.unwrap();
        connection.close().await.unwrap();
    })
    .await;
}

/// Whether nothing arrives on `receiver` for a while.
async fn nothing(receiver: &mut Receiver) -> bool {
    tokio::time::timeout(Duration::from_millis(1500), receiver.recv::<String>())
        .await
        .is_err()
}

/// Local transactions (core §4): what is sent in one is not seen before commit and never after
/// rollback; a delivery accepted in one comes back, redelivered, after rollback and is gone
/// after commit; a transaction of another connection is unknown here, and one left open when
/// its coordinator goes is rolled back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_commit_or_roll_back_sends_and_acceptances() {
    use fe2o3_amqp::transaction::{
        Controller, Transaction, TransactionDischarge, TransactionPosting, TransactionRetirement,
    };
    use fe2o3_amqp::types::transaction::TransactionError;
    bounded(async {
        let gateway = InProcessGateway::start().await;
        let (jobs, results) = (unique("jobs"), unique("results"));
        let mut connection = connect(&gateway).await;
        let mut session = session(&mut connection).await;
        let mut plain = sender(&mut session, &jobs).await;
        send_text(&mut plain, "job").await;
        let controller = within(
            "attach coordinator",
            Controller::attach(&mut session, unique("coordinator")),
        )
        .await
        .expect("coordinator attached");
        let mut job_receiver = receiver(&mut session, &jobs).await;
        let mut result_sender = sender(&mut session, &results).await;
        let mut watcher_connection = connect(&gateway).await;
        let mut watcher_session = self::session(&mut watcher_connection).await;
        let mut watcher = receiver(&mut watcher_session, &results).await;

        // Rolled back: the result is never seen, the job comes back redelivered.
        let txn = within("declare", Transaction::declare(&controller, None))
            .await
            .expect("declared");
        let job = within("recv", job_receiver.recv::<String>()).await.unwrap();
        txn.accept(&mut job_receiver, &job)
            .await
            .expect("accepted in txn");
        let posted = within("post", txn.post(&mut result_sender, "result".to_string()))
            .await
            .expect("posted");
        assert!(matches!(posted, Outcome::Accepted(_)), "{posted:?}");
        assert!(
            nothing(&mut watcher).await,
            "a transaction's send is seen before commit"
        );
        within("rollback", txn.rollback())
            .await
            .expect("rolled back");
        let again = within("recv again", job_receiver.recv::<String>())
            .await
            .unwrap();
        assert_eq!(again.body(), "job");
        let count = again
            .message()
            .header
            .as_ref()
            .map_or(0, |h| h.delivery_count);
        assert_eq!(
            count, 1,
            "a rolled-back acceptance counts as a delivery attempt"
        );
        assert!(nothing(&mut watcher).await, "a rolled-back send is seen");

        // Committed: the result arrives, the job is gone.
        let txn = within("declare", Transaction::declare(&controller, None))
            .await
            .expect("declared");
        txn.accept(&mut job_receiver, &again)
            .await
            .expect("accepted in txn");
        let posted = within("post", txn.post(&mut result_sender, "result".to_string()))
            .await
            .expect("posted");
        assert!(matches!(posted, Outcome::Accepted(_)), "{posted:?}");
        within("commit", txn.commit()).await.expect("committed");
        assert_eq!(recv_text(&mut watcher).await, "result");
        job_receiver.close().await.unwrap();
        let mut later = receiver(&mut watcher_session, &jobs).await;
        assert!(
            nothing(&mut later).await,
            "a committed acceptance came back"
        );

        // A transaction of this connection is unknown on another one.
        let txn = within("declare", Transaction::declare(&controller, None))
            .await
            .expect("declared");
        let mut elsewhere = sender(&mut watcher_session, &results).await;
        let posted = within("post elsewhere", txn.post(&mut elsewhere, "x".to_string())).await;
        match posted {
            Ok(Outcome::Rejected(r)) => assert_eq!(
                r.error.map(|e| e.condition),
                Some(ErrorCondition::TransactionError(
                    TransactionError::UnknownId
                ))
            ),
            other => panic!("a transaction of another connection: {other:?}"),
        }
        // Left open as its coordinator goes: rolled back.
        within("post", txn.post(&mut result_sender, "orphan".to_string()))
            .await
            .expect("posted");
        std::mem::forget(txn);
        controller.close().await.expect("coordinator detached");
        assert!(
            nothing(&mut watcher).await,
            "an orphaned transaction's send is seen"
        );
        connection.close().await.unwrap();
        watcher_connection.close().await.unwrap();
    })
    .await;
}
