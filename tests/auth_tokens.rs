//! Token authentication (issue 6, DESIGN.md §8) on the Kafka and AMQP listeners of a gateway
//! started with `--auth-required` and an HS256 secret key, as Pulsar's `tokenSecretKey`.
//!
//! - Kafka: librdkafka with SASL/PLAIN (`token:<jwt>` as password) and SASL/OAUTHBEARER; a
//!   table of refused credentials over a raw socket, each answered SASL_AUTHENTICATION_FAILED
//!   (58) and closed, and requests before authentication closed.
//! - AMQP: lapin with the token as PLAIN password; the same table, each refused with
//!   ACCESS_REFUSED (403).
//!
//! The tokens are signed here with jsonwebtoken, as Pulsar's token tool signs them (HS256,
//! `sub` = role, optional `exp`).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes, BytesMut};
use e2e_tests::kafka_raw::{connect, request, response};
use e2e_tests::rdkafka_util::{poll_payloads, send_numbered, unique, RecordingContext};
use e2e_tests::InProcessGateway;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use kafka_protocol::messages::{
    ApiKey, SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest,
    SaslHandshakeResponse,
};
use kafka_protocol::protocol::{Decodable, StrBytes};
use lapin::{Connection, ConnectionProperties};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientContext, Message};
use serde_json::json;

const SECRET: &[u8] = b"issue-6-test-secret-key-0123456789abcdef";
const OTHER_SECRET: &[u8] = b"some-other-key-nobody-configured-000000";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn sign(claims: serde_json::Value, key: &[u8]) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(key),
    )
    .unwrap()
}

fn valid_token() -> String {
    sign(json!({"sub": "tenant-a-app", "exp": now() + 3600}), SECRET)
}

/// A gateway requiring tokens checked with [`SECRET`], given as Pulsar gives it (a file URL).
async fn secured_gateway() -> InProcessGateway {
    secured_gateway_with(|_| {}).await
}

/// [`secured_gateway`] with more settings.
async fn secured_gateway_with(
    adjust: impl FnOnce(&mut pulsar_gateway::Config) + Send,
) -> InProcessGateway {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("secret.key");
    std::fs::write(&key, SECRET).unwrap();
    let spec = format!("file://{}", key.display());
    let gateway = InProcessGateway::start_with(|c| {
        c.auth.token_secret_key = Some(spec);
        c.auth.required = true;
        adjust(c);
    })
    .await;
    // The key was read at start.
    drop(dir);
    gateway
}

/// Credentials that must be refused, each with what is wrong with it. `None` as the password
/// means the PLAIN password is the text as given (no `token:` prefix added).
fn refused_passwords() -> Vec<(&'static str, String)> {
    let none_alg = {
        // alg "none": no signature at all.
        let b64 = |v: serde_json::Value| {
            use base64::Engine;
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
        };
        format!(
            "{}.{}.",
            b64(json!({"alg": "none"})),
            b64(json!({"sub": "x"}))
        )
    };
    let good = valid_token();
    let tampered = {
        // The payload swapped for another role, the signature kept.
        let parts: Vec<&str> = good.split('.').collect();
        let other = sign(json!({"sub": "admin", "exp": now() + 3600}), SECRET);
        let other_payload = other.split('.').nth(1).unwrap().to_owned();
        format!("{}.{}.{}", parts[0], other_payload, parts[2])
    };
    vec![
        (
            "expired",
            format!(
                "token:{}",
                sign(json!({"sub": "a", "exp": now() - 10}), SECRET)
            ),
        ),
        (
            "signed with another key",
            format!("token:{}", sign(json!({"sub": "a"}), OTHER_SECRET)),
        ),
        ("malformed", "token:not-a-jwt".to_owned()),
        ("three garbage parts", "token:a.b.c".to_owned()),
        ("empty password", String::new()),
        ("empty token", "token:".to_owned()),
        ("alg none", format!("token:{none_alg}")),
        ("tampered payload", format!("token:{tampered}")),
        (
            "no subject",
            format!("token:{}", sign(json!({"exp": now() + 60}), SECRET)),
        ),
        (
            "not valid yet",
            format!(
                "token:{}",
                sign(json!({"sub": "a", "nbf": now() + 3600}), SECRET)
            ),
        ),
        (
            "truncated signature",
            format!("token:{}", &good[..good.len() - 4]),
        ),
    ]
}

// ---- Kafka over a raw socket ------------------------------------------------------------------

fn closed(s: &mut TcpStream) -> bool {
    let mut byte = [0u8; 1];
    matches!(s.read(&mut byte), Ok(0) | Err(_))
}

/// SaslHandshake v1 for `mechanism`, then SaslAuthenticate v2 with `auth_bytes`.
fn sasl(
    addr: SocketAddr,
    mechanism: &str,
    auth_bytes: Vec<u8>,
) -> (TcpStream, SaslAuthenticateResponse) {
    let mut s = connect(addr);
    let answer = sasl_on(&mut s, mechanism, auth_bytes);
    (s, answer)
}

/// SaslHandshake v1 and SaslAuthenticate v2 on an open connection (KIP-368 re-authenticates
/// this way).
fn sasl_on(s: &mut TcpStream, mechanism: &str, auth_bytes: Vec<u8>) -> SaslAuthenticateResponse {
    let mut hs = SaslHandshakeRequest::default();
    hs.mechanism = StrBytes::from_string(mechanism.to_owned());
    s.write_all(&request(ApiKey::SaslHandshake, 1, 1, hs))
        .unwrap();
    let mut body = response(s, ApiKey::SaslHandshake, 1).expect("handshake answered");
    let handshake = SaslHandshakeResponse::decode(&mut body, 1).unwrap();
    assert_eq!(handshake.error_code, 0, "{mechanism} is offered");
    let offered: Vec<&str> = handshake.mechanisms.iter().map(|m| m.as_str()).collect();
    assert_eq!(offered, ["PLAIN", "OAUTHBEARER"]);
    let mut auth = SaslAuthenticateRequest::default();
    auth.auth_bytes = Bytes::from(auth_bytes);
    s.write_all(&request(ApiKey::SaslAuthenticate, 2, 2, auth))
        .unwrap();
    let mut body = response(s, ApiKey::SaslAuthenticate, 2).expect("authenticate answered");
    SaslAuthenticateResponse::decode(&mut body, 2).unwrap()
}

fn plain_bytes(user: &str, password: &str) -> Vec<u8> {
    format!("\0{user}\0{password}").into_bytes()
}

fn metadata_request() -> Vec<u8> {
    request(
        ApiKey::Metadata,
        9,
        7,
        kafka_protocol::messages::MetadataRequest::default(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_refuses_every_bad_credential_with_sasl_authentication_failed_and_closes() {
    let gateway = secured_gateway().await;
    let addr = gateway.gateway.kafka_addr();
    let mut cases: Vec<(String, Vec<u8>)> = refused_passwords()
        .into_iter()
        .map(|(what, password)| {
            (
                format!("PLAIN, {what}"),
                plain_bytes("public/default", &password),
            )
        })
        .collect();
    cases.push((
        "PLAIN, token without the token: prefix".into(),
        plain_bytes("public/default", &valid_token()),
    ));
    cases.push(("PLAIN, no separators".into(), b"garbage".to_vec()));
    cases.push((
        "OAUTHBEARER, expired".into(),
        format!(
            "n,,\x01auth=Bearer {}\x01\x01",
            sign(json!({"sub": "a", "exp": now() - 10}), SECRET)
        )
        .into_bytes(),
    ));
    cases.push((
        "OAUTHBEARER, another key".into(),
        format!(
            "n,,\x01auth=Bearer {}\x01\x01",
            sign(json!({"sub": "a"}), OTHER_SECRET)
        )
        .into_bytes(),
    ));
    cases.push(("OAUTHBEARER, no token".into(), b"n,,\x01\x01".to_vec()));
    for (what, bytes) in cases {
        let mechanism = if what.starts_with("OAUTHBEARER") {
            "OAUTHBEARER"
        } else {
            "PLAIN"
        };
        let (mut s, answer) = tokio::task::spawn_blocking(move || sasl(addr, mechanism, bytes))
            .await
            .unwrap();
        assert_eq!(answer.error_code, 58, "{what}: SASL_AUTHENTICATION_FAILED");
        let message = answer
            .error_message
            .map(|m| m.to_string())
            .unwrap_or_default();
        // A reason, and never the token (every JWT starts with `eyJ`, the encoded `{"`).
        assert!(
            !message.is_empty() && !message.contains("eyJ"),
            "{what}: {message}"
        );
        assert!(
            tokio::task::spawn_blocking(move || closed(&mut s))
                .await
                .unwrap(),
            "{what}: the connection is closed after the refusal"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_requests_before_authentication_close_the_connection() {
    let gateway = secured_gateway().await;
    let addr = gateway.gateway.kafka_addr();
    tokio::task::spawn_blocking(move || {
        // ApiVersions is allowed first (clients ask before SASL), and lists the SASL APIs.
        let mut s = connect(addr);
        s.write_all(&request(
            ApiKey::ApiVersions,
            3,
            1,
            kafka_protocol::messages::ApiVersionsRequest::default(),
        ))
        .unwrap();
        let mut body = response(&mut s, ApiKey::ApiVersions, 0).expect("ApiVersions answered");
        let versions = kafka_protocol::messages::ApiVersionsResponse::decode(&mut body, 3).unwrap();
        let keys: Vec<i16> = versions.api_keys.iter().map(|k| k.api_key).collect();
        assert!(keys.contains(&(ApiKey::SaslHandshake as i16)));
        assert!(keys.contains(&(ApiKey::SaslAuthenticate as i16)));
        // Metadata before SASL: closed without an answer.
        s.write_all(&metadata_request()).unwrap();
        assert!(response(&mut s, ApiKey::Metadata, 9).is_none());
        // An unknown mechanism is refused with the list of offered ones.
        let mut s = connect(addr);
        let mut hs = SaslHandshakeRequest::default();
        hs.mechanism = StrBytes::from_static_str("SCRAM-SHA-256");
        s.write_all(&request(ApiKey::SaslHandshake, 1, 1, hs))
            .unwrap();
        let mut body = response(&mut s, ApiKey::SaslHandshake, 1).unwrap();
        let answer = SaslHandshakeResponse::decode(&mut body, 1).unwrap();
        assert_eq!(answer.error_code, 33, "UNSUPPORTED_SASL_MECHANISM");
        assert_eq!(answer.mechanisms.len(), 2);
        // OAUTHBEARER with a valid token.
        let bearer = format!("n,,\x01auth=Bearer {}\x01\x01", valid_token());
        let (_, answer) = sasl(addr, "OAUTHBEARER", bearer.into_bytes());
        assert_eq!(answer.error_code, 0, "{:?}", answer.error_message);
        // A valid token authenticates; then Metadata is answered.
        let (mut s, answer) = sasl(
            addr,
            "PLAIN",
            plain_bytes("public", &format!("token:{}", valid_token())),
        );
        assert_eq!(answer.error_code, 0, "{:?}", answer.error_message);
        let lifetime = answer.session_lifetime_ms;
        assert!(
            (3_500_000..=3_600_000).contains(&lifetime),
            "the session lasts until the token expires (KIP-368): {lifetime} ms"
        );
        s.write_all(&metadata_request()).unwrap();
        assert!(response(&mut s, ApiKey::Metadata, 9).is_some());
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_v0_handshake_takes_a_raw_plain_token() {
    let gateway = secured_gateway().await;
    let addr = gateway.gateway.kafka_addr();
    tokio::task::spawn_blocking(move || {
        for (token, accepted) in [(valid_token(), true), ("not-a-jwt".to_owned(), false)] {
            let mut s = connect(addr);
            let mut hs = SaslHandshakeRequest::default();
            hs.mechanism = StrBytes::from_static_str("PLAIN");
            s.write_all(&request(ApiKey::SaslHandshake, 0, 1, hs))
                .unwrap();
            let mut body = response(&mut s, ApiKey::SaslHandshake, 0).unwrap();
            assert_eq!(
                SaslHandshakeResponse::decode(&mut body, 0)
                    .unwrap()
                    .error_code,
                0
            );
            let raw = plain_bytes("public", &format!("token:{token}"));
            let mut framed = BytesMut::new();
            framed.put_i32(raw.len() as i32);
            framed.put_slice(&raw);
            s.write_all(&framed).unwrap();
            let mut len = [0u8; 4];
            if accepted {
                s.read_exact(&mut len).unwrap();
                assert_eq!(i32::from_be_bytes(len), 0, "an empty server token");
                s.write_all(&metadata_request()).unwrap();
                assert!(response(&mut s, ApiKey::Metadata, 9).is_some());
            } else {
                assert!(closed(&mut s), "a bad raw token closes the connection");
            }
        }
    })
    .await
    .unwrap();
}

// ---- Kafka with librdkafka --------------------------------------------------------------------

fn sasl_plain(bootstrap: &str, password: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set("security.protocol", "SASL_PLAINTEXT")
        .set("sasl.mechanisms", "PLAIN")
        .set("sasl.username", "public/default")
        .set("sasl.password", password)
        .set("message.timeout.ms", "10000");
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rdkafka_produces_and_consumes_with_sasl_plain_and_a_token() {
    let gateway = secured_gateway().await;
    let topic = unique("auth-plain");
    let password = format!("token:{}", valid_token());
    let producer: FutureProducer = sasl_plain(&gateway.bootstrap(), &password)
        .create()
        .unwrap();
    send_numbered(&producer, &topic, 5).await;
    let consumer: BaseConsumer = sasl_plain(&gateway.bootstrap(), &password)
        .set("group.id", unique("auth-group"))
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&[&topic]).unwrap();
    let (_consumer, got) = poll_payloads(consumer, 5, Duration::from_secs(30)).await;
    assert_eq!(got, ["m0", "m1", "m2", "m3", "m4"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rdkafka_with_an_expired_token_gets_an_authentication_error() {
    let gateway = secured_gateway().await;
    let expired = format!(
        "token:{}",
        sign(json!({"sub": "a", "exp": now() - 10}), SECRET)
    );
    let client: BaseConsumer<RecordingContext> = sasl_plain(&gateway.bootstrap(), &expired)
        .create_with_context(RecordingContext::default())
        .unwrap();
    let (mut client, metadata) = e2e_tests::blocking(client, |c| {
        c.fetch_metadata(None, Duration::from_secs(3)).map(|_| ())
    })
    .await;
    assert!(
        metadata.is_err(),
        "nothing is served without authentication"
    );
    // Error callbacks are served by polls.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while client.context().0.lock().unwrap().is_empty() && std::time::Instant::now() < deadline {
        (client, _) =
            e2e_tests::blocking(client, |c| c.poll(Duration::from_millis(100)).is_some()).await;
    }
    // librdkafka reports the broker's refusal, with its message, as an authentication error.
    let errors = client.context().0.lock().unwrap().clone();
    assert!(
        errors
            .iter()
            .any(|e| e.contains("Authentication") && e.contains("expired")),
        "{errors:?}"
    );
    assert!(
        errors.iter().all(|e| !e.contains("eyJ")),
        "no token in errors"
    );
}

/// Hands librdkafka a token for OAUTHBEARER (its callback for custom token sources).
struct BearerContext(String);

impl ClientContext for BearerContext {
    const ENABLE_REFRESH_OAUTH_TOKEN: bool = true;

    fn generate_oauth_token(
        &self,
        _config: Option<&str>,
    ) -> Result<rdkafka::client::OAuthToken, Box<dyn std::error::Error>> {
        Ok(rdkafka::client::OAuthToken {
            token: self.0.clone(),
            principal_name: "tenant-a-app".into(),
            lifetime_ms: ((now() + 3600) * 1000) as i64,
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rdkafka_authenticates_with_oauthbearer() {
    let gateway = secured_gateway().await;
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", gateway.bootstrap())
        .set("security.protocol", "SASL_PLAINTEXT")
        .set("sasl.mechanisms", "OAUTHBEARER")
        .set("message.timeout.ms", "10000");
    let producer: FutureProducer<BearerContext> = config
        .create_with_context(BearerContext(valid_token()))
        .unwrap();
    producer
        .send(
            FutureRecord::<(), _>::to(&unique("auth-bearer")).payload("via-bearer"),
            Duration::from_secs(10),
        )
        .await
        .expect("acknowledged");
}

// ---- AMQP with lapin --------------------------------------------------------------------------

async fn amqp_connect(
    gateway: &InProcessGateway,
    user: &str,
    password: &str,
) -> lapin::Result<Connection> {
    let uri = format!(
        "amqp://{user}:{}@{}/%2f",
        percent(password),
        gateway.gateway.amqp_addr()
    );
    tokio::time::timeout(
        Duration::from_secs(10),
        Connection::connect(&uri, ConnectionProperties::default()),
    )
    .await
    .expect("an answer within 10 s")
}

/// URI userinfo escaping for the characters a JWT or these passwords hold.
fn percent(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqp_accepts_a_token_as_the_plain_password() {
    let gateway = secured_gateway().await;
    for password in [valid_token(), format!("token:{}", valid_token())] {
        let connection = amqp_connect(&gateway, "any-user", &password)
            .await
            .expect("a valid token logs in");
        let channel = connection.create_channel().await.unwrap();
        channel
            .queue_declare(
                "auth-q".into(),
                lapin::options::QueueDeclareOptions {
                    exclusive: true,
                    ..Default::default()
                },
                Default::default(),
            )
            .await
            .unwrap();
        connection.close(200, "bye".into()).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqp_refuses_every_bad_credential_with_access_refused() {
    let gateway = secured_gateway().await;
    let mut cases = refused_passwords();
    // The configured users are not accepted once tokens are required.
    cases.push((
        "guest's password while tokens are required",
        "guest".to_owned(),
    ));
    for (what, password) in cases {
        let user = if what.starts_with("guest") {
            "guest"
        } else {
            "app"
        };
        let err = amqp_connect(&gateway, user, &password)
            .await
            .expect_err(what);
        let text = format!("{err:?}");
        assert!(
            text.contains("ACCESS_REFUSED") || text.contains("403"),
            "{what}: {text}"
        );
    }
    // And the listener still serves.
    amqp_connect(&gateway, "app", &valid_token())
        .await
        .expect("still serving");
}

/// A token's `exp` ends its AMQP connection (403 ACCESS_REFUSED), unless the client renews it
/// with connection.update-secret, RabbitMQ's method for tokens that expire; a new token for
/// another role or signed with another key is refused (530 NOT_ALLOWED) and closes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqp_connections_end_when_their_token_expires_unless_renewed() {
    use futures::StreamExt;
    let gateway = secured_gateway().await;
    let short = || sign(json!({"sub": "tenant-a-app", "exp": now() + 2}), SECRET);
    let renewed = amqp_connect(&gateway, "app", &short())
        .await
        .expect("logs in");
    renewed
        .update_secret(valid_token().into(), "refresh".into())
        .await
        .expect("update-secret-ok");
    let expiring = amqp_connect(&gateway, "app", &short())
        .await
        .expect("logs in");
    let mut events = expiring.events_listener();
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match events.next().await {
                Some(lapin::Event::Error(e)) => break format!("{e:?}"),
                Some(_) => continue,
                None => break "events ended without an error".to_owned(),
            }
        }
    })
    .await
    .expect("closed within 10 s of its token's exp");
    assert!(
        closed.contains("ACCESS_REFUSED") || closed.contains("403"),
        "{closed}"
    );
    assert!(!expiring.status().connected());
    // The renewed connection outlived the first token and still serves.
    let channel = renewed.create_channel().await.expect("still open");
    channel
        .queue_declare(
            "renewed-q".into(),
            lapin::options::QueueDeclareOptions {
                exclusive: true,
                ..Default::default()
            },
            Default::default(),
        )
        .await
        .expect("served after the first token's exp");
    renewed.close(200, "bye".into()).await.unwrap();
    for (what, new_secret) in [
        (
            "another role",
            sign(json!({"sub": "someone-else", "exp": now() + 3600}), SECRET),
        ),
        (
            "another key",
            sign(
                json!({"sub": "tenant-a-app", "exp": now() + 3600}),
                OTHER_SECRET,
            ),
        ),
        ("not a token", "garbage".to_owned()),
    ] {
        let connection = amqp_connect(&gateway, "app", &valid_token()).await.unwrap();
        let err = connection
            .update_secret(new_secret.into(), "swap".into())
            .await
            .expect_err(what);
        let text = format!("{err:?}");
        assert!(
            text.contains("NOT_ALLOWED") || text.contains("530"),
            "{what}: {text}"
        );
    }
}

// ---- secrets never reach the log --------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_token_or_key_appears_in_a_trace_level_log() {
    use base64::Engine;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("gateway.log");
    let inline_key = base64::engine::general_purpose::STANDARD.encode(SECRET);
    let kafka = SocketAddr::from(([127, 0, 0, 1], e2e_tests::free_port()));
    let admin = SocketAddr::from(([127, 0, 0, 1], e2e_tests::free_port()));
    let gateway = e2e_tests::GatewayProcess::start_with_args(
        env!("CARGO_BIN_EXE_gateway-under-test"),
        &dir.path().join("data"),
        kafka,
        admin,
        Some(&log),
        &[
            "--log-level".into(),
            "trace".into(),
            "--auth-required".into(),
            "--auth-token-secret-key".into(),
            format!("data:;base64,{inline_key}"),
        ],
    );
    let good = valid_token();
    let bad: Vec<String> = refused_passwords().into_iter().map(|(_, p)| p).collect();
    // Kafka: a session that works, and every refused credential.
    let producer: FutureProducer = sasl_plain(&kafka.to_string(), &format!("token:{good}"))
        .create()
        .unwrap();
    producer
        .send(
            FutureRecord::<(), _>::to(&unique("auth-log")).payload("x"),
            Duration::from_secs(10),
        )
        .await
        .expect("acknowledged");
    for password in &bad {
        let bytes = plain_bytes("public", password);
        tokio::task::spawn_blocking(move || sasl(kafka, "PLAIN", bytes))
            .await
            .unwrap();
    }
    // AMQP: the same.
    let uri = |password: &str| format!("amqp://app:{}@{}/%2f", percent(password), gateway.amqp);
    let connection = Connection::connect(&uri(&good), ConnectionProperties::default())
        .await
        .expect("a valid token logs in");
    connection.close(200, "bye".into()).await.unwrap();
    for password in &bad {
        let _ = Connection::connect(&uri(password), ConnectionProperties::default()).await;
    }
    drop(producer);
    gateway.kill();
    let text = std::fs::read_to_string(&log).unwrap();
    // The log holds the authentication events (the success is logged at debug level).
    for event in [
        "Kafka client authenticated",
        "Kafka authentication refused",
        "AMQP login refused",
    ] {
        assert!(text.contains(event), "the log has '{event}'");
    }
    let mut secrets: Vec<String> = vec![good.clone(), inline_key];
    for password in bad.iter().chain([&good]) {
        let token = password.strip_prefix("token:").unwrap_or(password);
        // Each signature, and each whole token, on its own (a token may be split in a log).
        secrets.extend(
            token
                .split('.')
                .filter(|part| part.len() >= 16)
                .map(str::to_owned),
        );
    }
    for secret in secrets {
        assert!(!text.contains(&secret), "the log holds a secret: {secret}");
    }
    assert!(!text.contains(std::str::from_utf8(SECRET).unwrap()));
}

// ---- tenancy ----------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_tenant_sees_only_its_own_groups_and_topics() {
    let gateway = secured_gateway().await;
    let bootstrap = gateway.bootstrap();
    let password = format!("token:{}", valid_token());
    let as_tenant = |namespace: &str| {
        let mut c = sasl_plain(&bootstrap, &password);
        c.set("sasl.username", namespace);
        c
    };
    let (topic, group) = (unique("orders"), unique("billing"));
    // Two namespaces; on Pulsar they must exist first (the gateway creates topics, not
    // namespaces).
    let (ns_a, ns_b) = (
        format!("public/{}", unique("a")),
        format!("public/{}", unique("b")),
    );
    for ns in [&ns_a, &ns_b] {
        e2e_tests::create_pulsar_namespace(ns);
    }
    // Namespace a produces to `orders` (its own) and commits as group `billing`.
    let producer: FutureProducer = as_tenant(&ns_a).create().unwrap();
    producer
        .send(
            FutureRecord::<(), _>::to(&topic).payload("a-1"),
            Duration::from_secs(10),
        )
        .await
        .expect("acknowledged");
    let mut consumer: BaseConsumer = as_tenant(&ns_a)
        .set("group.id", &group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    consumer.subscribe(&[&topic]).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let message = loop {
        assert!(std::time::Instant::now() < deadline, "no message");
        let polled;
        (consumer, polled) = e2e_tests::blocking(consumer, |c| {
            c.poll(Duration::from_millis(200))
                .map(|r| r.map(|m| m.detach()))
        })
        .await;
        if let Some(Ok(m)) = polled {
            break m;
        }
    };
    assert_eq!(message.payload(), Some(&b"a-1"[..]));
    let (_consumer, committed) = e2e_tests::blocking(consumer, |c| {
        c.commit_consumer_state(rdkafka::consumer::CommitMode::Sync)
    })
    .await;
    committed.expect("committed");
    let groups_seen_by = |namespace: &str| {
        let client: BaseConsumer = as_tenant(namespace).create().unwrap();
        async move {
            let (_, names) = e2e_tests::blocking(client, |c| {
                c.fetch_group_list(None, Duration::from_secs(10))
                    .map(|list| {
                        list.groups()
                            .iter()
                            .map(|g| g.name().to_owned())
                            .collect::<Vec<_>>()
                    })
            })
            .await;
            names.expect("ListGroups")
        }
    };
    assert!(
        groups_seen_by(&ns_a).await.contains(&group),
        "tenant-a sees its group by its name"
    );
    let seen_by_b = groups_seen_by(&ns_b).await;
    assert!(
        seen_by_b.iter().all(|g| !g.contains(&group)),
        "tenant-b sees none of tenant-a's groups: {seen_by_b:?}"
    );
    // tenant-b's `orders` is another topic: tenant-a's record is not there.
    let b_consumer: BaseConsumer = as_tenant(&ns_b)
        .set("group.id", &group)
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    let (_, names) = e2e_tests::blocking(b_consumer, |c| {
        c.fetch_metadata(None, Duration::from_secs(10)).map(|m| {
            m.topics()
                .iter()
                .map(|t| t.name().to_owned())
                .collect::<Vec<_>>()
        })
    })
    .await;
    assert!(
        names.expect("Metadata").iter().all(|t| *t != topic),
        "tenant-b's Metadata does not list tenant-a's topic"
    );
}

/// Commits a group's offset for partition 0 of `topic` through `bootstrap`.
async fn commit_offset(
    config: ClientConfig,
    topic: &str,
    offset: i64,
) -> rdkafka::error::KafkaResult<()> {
    let consumer: BaseConsumer = config.create().unwrap();
    let mut position = rdkafka::TopicPartitionList::new();
    position
        .add_partition_offset(topic, 0, rdkafka::Offset::Offset(offset))
        .unwrap();
    let (_, committed) = e2e_tests::blocking(consumer, move |c| {
        c.commit(&position, rdkafka::consumer::CommitMode::Sync)
    })
    .await;
    committed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarded_commit_resolves_topics_in_the_clients_namespace() {
    // A forward-mode fleet of two instances on one backend: B coordinates the group, the client
    // commits through A, which passes the request to B over the internal listener.
    use e2e_tests::backends::BackendFixture;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("secret.key");
    std::fs::write(&key, SECRET).unwrap();
    let fixture = e2e_tests::backends::EmbeddedFixture::new();
    let mut instances = Vec::new();
    for i in 0..2 {
        let mut config = pulsar_gateway::Config::for_tests(dir.path().join(i.to_string()));
        config.auth.token_secret_key = Some(format!("file://{}", key.display()));
        config.auth.required = true;
        config.kafka.group_coordination = pulsar_gateway::config::GroupCoordination::Forward;
        config.kafka.internal_listen = Some("127.0.0.1:0".parse().unwrap());
        config.kafka.internal_secret = Some(pulsar_gateway::config::Secret::new(
            "auth-tokens-fleet-secret-0123",
        ));
        instances.push(
            pulsar_gateway::start_with_backend(config, fixture.backend())
                .await
                .unwrap(),
        );
    }
    let (a, b) = (
        instances[0].kafka_addr().to_string(),
        instances[1].kafka_addr().to_string(),
    );
    // A namespace other than the default: a short name means a topic there.
    let namespace = format!("public/{}", unique("fwd"));
    let password = format!("token:{}", valid_token());
    let client = |bootstrap: &str| {
        let mut c = sasl_plain(bootstrap, &password);
        c.set("sasl.username", &namespace);
        c
    };
    let (topic, group) = (unique("fwd-orders"), unique("fwd-group"));
    let producer: FutureProducer = client(&a).create().unwrap();
    producer
        .send(
            FutureRecord::<(), _>::to(&topic).payload("x"),
            Duration::from_secs(10),
        )
        .await
        .expect("acknowledged");
    let member = |bootstrap: &str| {
        let mut c = client(bootstrap);
        c.set("group.id", &group);
        c
    };
    commit_offset(member(&b), &topic, 1)
        .await
        .expect("the first commit, through B, makes B the coordinator");
    commit_offset(member(&a), &topic, 2)
        .await
        .expect("a commit forwarded from A resolves the topic in the client's namespace");
    let reader: BaseConsumer = member(&a).create().unwrap();
    let (_, committed) = e2e_tests::blocking(reader, {
        let topic = topic.clone();
        move |c| {
            let mut partition = rdkafka::TopicPartitionList::new();
            partition.add_partition(&topic, 0);
            c.committed_offsets(partition, Duration::from_secs(10))
        }
    })
    .await;
    let committed = committed.expect("OffsetFetch, forwarded too");
    let element = &committed.elements()[0];
    assert_eq!(
        element.topic(),
        topic,
        "the client's own name for the topic"
    );
    assert_eq!(element.offset(), rdkafka::Offset::Offset(2));
}

// ---- limits -----------------------------------------------------------------------------------

/// Whether the gateway closes `s` within `limit` (reading nothing but the close).
fn closed_within(s: &mut TcpStream, limit: Duration) -> bool {
    s.set_read_timeout(Some(limit)).unwrap();
    let mut byte = [0u8; 1];
    matches!(s.read(&mut byte), Ok(0))
        || matches!(s.read(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_closes_clients_that_do_not_authenticate_in_time_and_idle_sessions() {
    let gateway = secured_gateway_with(|c| {
        c.limits.auth_timeout = Duration::from_millis(500);
        c.limits.idle_timeout = Duration::from_secs(2);
    })
    .await;
    let addr = gateway.gateway.kafka_addr();
    tokio::task::spawn_blocking(move || {
        // Connected, silent: closed after the authentication timeout.
        let mut silent = connect(addr);
        let started = std::time::Instant::now();
        assert!(closed_within(&mut silent, Duration::from_secs(5)));
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
        // Authenticated, then idle: closed after the idle timeout, not before.
        let (mut idle, answer) = sasl(
            addr,
            "PLAIN",
            plain_bytes("public", &format!("token:{}", valid_token())),
        );
        assert_eq!(answer.error_code, 0);
        std::thread::sleep(Duration::from_secs(1));
        idle.write_all(&metadata_request()).unwrap();
        assert!(
            response(&mut idle, ApiKey::Metadata, 9).is_some(),
            "still open after 1 s"
        );
        let started = std::time::Instant::now();
        assert!(closed_within(&mut idle, Duration::from_secs(6)));
        assert!(
            started.elapsed() >= Duration::from_millis(1500),
            "{:?}",
            started.elapsed()
        );
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_principal_holds_at_most_its_connection_limit_across_listeners() {
    let gateway = secured_gateway_with(|c| c.limits.max_connections_per_principal = 2).await;
    let kafka = gateway.gateway.kafka_addr();
    let token = valid_token();
    let password = format!("token:{token}");
    // One Kafka connection and one AMQP connection of the same role.
    let (held_kafka, answer) = {
        let bytes = plain_bytes("public", &password);
        tokio::task::spawn_blocking(move || sasl(kafka, "PLAIN", bytes))
            .await
            .unwrap()
    };
    assert_eq!(answer.error_code, 0);
    let held_amqp = amqp_connect(&gateway, "app", &token)
        .await
        .expect("second connection");
    // A third, on either protocol, is refused.
    let bytes = plain_bytes("public", &password);
    let (mut third, answer) = tokio::task::spawn_blocking(move || sasl(kafka, "PLAIN", bytes))
        .await
        .unwrap();
    assert_eq!(answer.error_code, 58, "SASL_AUTHENTICATION_FAILED");
    let message = answer
        .error_message
        .map(|m| m.to_string())
        .unwrap_or_default();
    assert!(message.contains("too many connections"), "{message}");
    assert!(tokio::task::spawn_blocking(move || closed(&mut third))
        .await
        .unwrap());
    let err = amqp_connect(&gateway, "app", &token)
        .await
        .expect_err("a third connection");
    let text = format!("{err:?}");
    assert!(
        text.contains("NOT_ALLOWED") || text.contains("530"),
        "{text}"
    );
    // Another role is not affected.
    let other = sign(json!({"sub": "another-role"}), SECRET);
    amqp_connect(&gateway, "app", &other)
        .await
        .expect("another role");
    // Closing one frees its place.
    held_amqp.close(200, "bye".into()).await.unwrap();
    drop(held_kafka);
    tokio::time::sleep(Duration::from_millis(300)).await;
    amqp_connect(&gateway, "app", &token)
        .await
        .expect("a place was freed");
}

// ---- the authentication matrix ----------------------------------------------------------------

/// Tokens of every kind a client may present, each with whether it must be accepted.
fn token_cases() -> Vec<(&'static str, String, bool)> {
    use base64::Engine;
    let b64 = |v: &serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let with = |alg: Algorithm, claims: serde_json::Value| {
        encode(
            &Header::new(alg),
            &claims,
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap()
    };
    let rsa_private = include_bytes!("../security/tests/fixtures/rsa-private.pem");
    let good = valid_token();
    let parts: Vec<&str> = good.split('.').collect();
    let other = sign(json!({"sub": "someone-else"}), SECRET);
    let other_sig = other.rsplit('.').next().unwrap();
    vec![
        ("no exp", sign(json!({"sub": "r"}), SECRET), true),
        ("exp in an hour", good.clone(), true),
        ("HS384", with(Algorithm::HS384, json!({"sub": "r"})), true),
        ("HS512", with(Algorithm::HS512, json!({"sub": "r"})), true),
        (
            "extra claims (iss, aud, iat)",
            sign(
                json!({"sub": "r", "iss": "x", "aud": "y", "iat": now()}),
                SECRET,
            ),
            true,
        ),
        (
            "nbf in the past",
            sign(json!({"sub": "r", "nbf": now() - 60}), SECRET),
            true,
        ),
        (
            "expired an hour ago",
            sign(json!({"sub": "r", "exp": now() - 3600}), SECRET),
            false,
        ),
        (
            "expired a second ago",
            sign(json!({"sub": "r", "exp": now() - 1}), SECRET),
            false,
        ),
        (
            "nbf in an hour",
            sign(json!({"sub": "r", "nbf": now() + 3600}), SECRET),
            false,
        ),
        (
            "signed with another key",
            sign(json!({"sub": "r"}), OTHER_SECRET),
            false,
        ),
        (
            "RS256 where HS256 is configured",
            encode(
                &Header::new(Algorithm::RS256),
                &json!({"sub": "r"}),
                &EncodingKey::from_rsa_pem(rsa_private).unwrap(),
            )
            .unwrap(),
            false,
        ),
        (
            "alg none",
            format!(
                "{}.{}.",
                b64(&json!({"alg": "none"})),
                b64(&json!({"sub": "r"}))
            ),
            false,
        ),
        (
            "payload swapped, signature kept",
            format!(
                "{}.{}.{}",
                parts[0],
                b64(&json!({"sub": "admin"})),
                parts[2]
            ),
            false,
        ),
        (
            "another token's signature",
            format!("{}.{}.{other_sig}", parts[0], parts[1]),
            false,
        ),
        (
            "truncated signature",
            good[..good.len() - 4].to_owned(),
            false,
        ),
        (
            "no subject",
            sign(json!({"exp": now() + 60}), SECRET),
            false,
        ),
        ("empty subject", sign(json!({"sub": ""}), SECRET), false),
        (
            "subject not a string",
            sign(json!({"sub": 42}), SECRET),
            false,
        ),
        (
            "exp not a number",
            sign(json!({"sub": "r", "exp": "tomorrow"}), SECRET),
            false,
        ),
        ("two parts", format!("{}.{}", parts[0], parts[1]), false),
        ("four parts", format!("{good}.x"), false),
        ("not base64", "!!!.@@@.###".to_owned(), false),
        (
            "header not JSON",
            format!("{}.{}.{}", b64(&json!("x")), parts[1], parts[2]),
            false,
        ),
        ("empty", String::new(), false),
        ("whitespace", "   ".to_owned(), false),
    ]
}

/// What a Kafka client gets for `auth_bytes`: accepted (and then served), or refused with
/// SASL_AUTHENTICATION_FAILED and closed. Anything else fails the case.
fn kafka_outcome(addr: SocketAddr, mechanism: &str, auth_bytes: Vec<u8>) -> Result<bool, String> {
    let (mut s, answer) = sasl(addr, mechanism, auth_bytes);
    match answer.error_code {
        0 => {
            s.write_all(&metadata_request()).unwrap();
            response(&mut s, ApiKey::Metadata, 9)
                .map(|_| true)
                .ok_or_else(|| "accepted, then not served".to_owned())
        }
        58 if closed(&mut s) => Ok(false),
        58 => Err("refused but left open".into()),
        code => Err(format!("error code {code}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_authentication_matrix() {
    let gateway = secured_gateway().await;
    let addr = gateway.gateway.kafka_addr();
    let results = tokio::task::spawn_blocking(move || {
        let mut results = Vec::new();
        for (what, token, accept) in token_cases() {
            let plain = plain_bytes("public", &format!("token:{token}"));
            results.push((
                format!("PLAIN token:<{what}>"),
                accept,
                kafka_outcome(addr, "PLAIN", plain),
            ));
            let bearer = format!("n,,\x01auth=Bearer {token}\x01\x01").into_bytes();
            results.push((
                format!("OAUTHBEARER <{what}>"),
                accept,
                kafka_outcome(addr, "OAUTHBEARER", bearer),
            ));
        }
        let good = valid_token();
        let flows: Vec<(&str, &str, Vec<u8>, bool)> = vec![
            (
                "PLAIN, valid token without token:",
                "PLAIN",
                plain_bytes("public", &good),
                false,
            ),
            (
                "PLAIN, empty password",
                "PLAIN",
                plain_bytes("public", ""),
                false,
            ),
            (
                "PLAIN, no NUL separators",
                "PLAIN",
                b"public token:x".to_vec(),
                false,
            ),
            (
                "PLAIN, four fields",
                "PLAIN",
                format!("\0a\0token:{good}\0x").into_bytes(),
                false,
            ),
            (
                "PLAIN, tenant/namespace username",
                "PLAIN",
                plain_bytes("public/default", &format!("token:{good}")),
                true,
            ),
            (
                "PLAIN, empty username",
                "PLAIN",
                plain_bytes("", &format!("token:{good}")),
                true,
            ),
            (
                "OAUTHBEARER, no auth key",
                "OAUTHBEARER",
                b"n,,\x01host=x\x01\x01".to_vec(),
                false,
            ),
            (
                "OAUTHBEARER, not a GS2 header",
                "OAUTHBEARER",
                format!("auth=Bearer {good}").into_bytes(),
                false,
            ),
        ];
        for (what, mechanism, bytes, accept) in flows {
            results.push((
                what.to_owned(),
                accept,
                kafka_outcome(addr, mechanism, bytes),
            ));
        }
        results
    })
    .await
    .unwrap();
    e2e_tests::assert_matrix(&results, ("accepted", "refused"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_sasl_protocol_misuse_and_reauthentication() {
    let gateway = secured_gateway().await;
    let addr = gateway.gateway.kafka_addr();
    tokio::task::spawn_blocking(move || {
        // SaslAuthenticate without a handshake: ILLEGAL_SASL_STATE.
        let mut s = connect(addr);
        let mut auth = SaslAuthenticateRequest::default();
        auth.auth_bytes = Bytes::from(plain_bytes("public", &format!("token:{}", valid_token())));
        s.write_all(&request(ApiKey::SaslAuthenticate, 2, 1, auth))
            .unwrap();
        let mut body = response(&mut s, ApiKey::SaslAuthenticate, 2).expect("answered");
        assert_eq!(
            SaslAuthenticateResponse::decode(&mut body, 2)
                .unwrap()
                .error_code,
            34
        );
        // Re-authentication (KIP-368) with the same role: accepted, the session goes on.
        let role = |r: &str| sign(json!({"sub": r, "exp": now() + 600}), SECRET);
        let (mut s, answer) = sasl(
            addr,
            "PLAIN",
            plain_bytes("public", &format!("token:{}", role("app"))),
        );
        assert_eq!(answer.error_code, 0);
        let again = sasl_on(
            &mut s,
            "OAUTHBEARER",
            format!("n,,\x01auth=Bearer {}\x01\x01", role("app")).into_bytes(),
        );
        assert_eq!(again.error_code, 0, "{:?}", again.error_message);
        assert!(again.session_lifetime_ms > 0, "the new token's lifetime");
        s.write_all(&metadata_request()).unwrap();
        assert!(response(&mut s, ApiKey::Metadata, 9).is_some());
        // Re-authenticating as another role is refused, and the connection closed.
        let other = sasl_on(
            &mut s,
            "PLAIN",
            plain_bytes("public", &format!("token:{}", role("intruder"))),
        );
        assert_eq!(other.error_code, 58);
        assert!(closed(&mut s));
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqp_authentication_matrix() {
    let gateway = secured_gateway().await;
    let addr = gateway.gateway.amqp_addr();
    let outcome = |user: &str, password: &str, mechanism: &str| {
        let uri = format!(
            "amqp://{user}:{}@{addr}/%2f?auth_mechanism={mechanism}",
            percent(password)
        );
        async move {
            match tokio::time::timeout(
                Duration::from_secs(10),
                Connection::connect(&uri, ConnectionProperties::default()),
            )
            .await
            {
                Err(_) => Err("no answer within 10 s".to_owned()),
                Ok(Ok(connection)) => {
                    let served =
                        tokio::time::timeout(Duration::from_secs(10), connection.create_channel())
                            .await
                            .is_ok_and(|channel| channel.is_ok());
                    // Hang guard: once in CI (2026-12-07) this test waited forever with no AMQP
                    // socket left open, so on a close whose connection had already ended. The
                    // close is not what this matrix checks.
                    if tokio::time::timeout(
                        Duration::from_secs(10),
                        connection.close(200, "bye".into()),
                    )
                    .await
                    .is_err()
                    {
                        eprintln!("close-ok not seen within 10 s");
                    }
                    if served {
                        Ok(true)
                    } else {
                        Err("accepted, then not served".into())
                    }
                }
                Ok(Err(e)) => {
                    let text = format!("{e:?}");
                    if text.contains("ACCESS_REFUSED") || text.contains("403") {
                        Ok(false)
                    } else {
                        Err(format!("refused without 403: {text}"))
                    }
                }
            }
        }
    };
    let mut results = Vec::new();
    for (what, token, accept) in token_cases() {
        results.push((
            format!("PLAIN <{what}>"),
            accept,
            outcome("app", &token, "plain").await,
        ));
        results.push((
            format!("PLAIN token:<{what}>"),
            accept,
            outcome("app", &format!("token:{token}"), "plain").await,
        ));
    }
    let good = valid_token();
    let expired = sign(json!({"sub": "r", "exp": now() - 60}), SECRET);
    for (what, user, password, mechanism, accept) in [
        (
            "AMQPLAIN, valid token",
            "app",
            good.as_str(),
            "amqplain",
            true,
        ),
        (
            "AMQPLAIN, expired token",
            "app",
            expired.as_str(),
            "amqplain",
            false,
        ),
        (
            "PLAIN, guest's password while tokens are required",
            "guest",
            "guest",
            "plain",
            false,
        ),
        ("PLAIN, empty password", "app", "", "plain", false),
        (
            "PLAIN, empty user and a valid token",
            "",
            good.as_str(),
            "plain",
            true,
        ),
    ] {
        results.push((
            what.to_owned(),
            accept,
            outcome(user, password, mechanism).await,
        ));
    }
    e2e_tests::assert_matrix(&results, ("accepted", "refused"));
}
