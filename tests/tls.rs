//! TLS listeners (issue 6): a gateway with `--kafka-tls-listen` and `--amqp-tls-listen`, a
//! certificate issued by a test CA, and tokens required.
//!
//! - librdkafka with SASL_SSL + PLAIN produces and consumes; told to trust nothing but the
//!   system roots, it refuses the gateway's certificate.
//! - lapin over amqps with the token as password, and with SASL EXTERNAL (the client
//!   certificate's common name as the role).
//! - A plaintext client on either TLS port is closed promptly, and the gateway keeps serving.
//! - A certificate replaced on disk is served to the next connection, without a restart.
//! - With a client CA, a client without a certificate is refused.
//! - The plaintext listeners can be off (admin then over HTTPS), and in a fleet FindCoordinator
//!   sends a TLS client to the coordinating peer's TLS listener, which Metadata lists too.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use e2e_tests::pki::Pki;
use e2e_tests::rdkafka_util::{poll_payloads, send_numbered, unique, RecordingContext};
use e2e_tests::InProcessGateway;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use lapin::Connection;
use pulsar_gateway::config::Config;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};

const SECRET: &[u8] = b"tls-test-secret-key-0123456789abcdef";

fn token() -> String {
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    encode(
        &Header::new(Algorithm::HS256),
        &serde_json::json!({"sub": "tls-client", "exp": exp}),
        &EncodingKey::from_secret(SECRET),
    )
    .unwrap()
}

async fn tls_gateway(pki: &Pki, client_ca: bool) -> InProcessGateway {
    tls_gateway_with(pki, client_ca, |_| {}).await
}

async fn tls_gateway_with(
    pki: &Pki,
    client_ca: bool,
    more: impl FnOnce(&mut Config) + Send + 'static,
) -> InProcessGateway {
    let tls = tls_settings(pki, client_ca);
    InProcessGateway::start_with(move |c| {
        tls(c);
        more(c);
    })
    .await
}

/// Kafka and AMQP TLS listeners with a server certificate from `pki` (and its CA for client
/// certificates when `client_ca`), and tokens required.
fn tls_settings(pki: &Pki, client_ca: bool) -> impl Fn(&mut Config) + Send + 'static {
    pki.issue("server", &["127.0.0.1", "localhost"]);
    let secret = pki.path("secret.key");
    std::fs::write(&secret, SECRET).unwrap();
    let (cert, key, ca) = (
        pki.path("server.pem"),
        pki.path("server.key"),
        pki.path("ca.pem"),
    );
    move |c| {
        c.tls.kafka_listen = Some("127.0.0.1:0".parse().unwrap());
        c.tls.amqp_listen = Some("127.0.0.1:0".parse().unwrap());
        c.tls.cert_file = Some(cert.clone());
        c.tls.key_file = Some(key.clone());
        c.tls.client_ca_file = client_ca.then(|| ca.clone());
        c.auth.token_secret_key = Some(format!("file://{}", secret.display()));
        c.auth.required = true;
    }
}

fn sasl_ssl(bootstrap: SocketAddr, ca: Option<&Path>) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap.to_string())
        .set("security.protocol", "SASL_SSL")
        .set("sasl.mechanisms", "PLAIN")
        .set("sasl.username", "public/default")
        .set("sasl.password", format!("token:{}", token()))
        .set("message.timeout.ms", "10000");
    if let Some(ca) = ca {
        c.set("ssl.ca.location", ca.display().to_string());
    }
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rdkafka_produces_and_consumes_over_sasl_ssl() {
    let pki = Pki::new();
    let gateway = tls_gateway(&pki, false).await;
    let tls = gateway
        .gateway
        .kafka_tls_addr()
        .expect("a Kafka TLS listener");
    produce_and_consume_over_tls(tls, &pki.path("ca.pem")).await;
}

/// librdkafka over SASL_SSL: five records produced, then consumed in a group.
async fn produce_and_consume_over_tls(tls: SocketAddr, ca: &Path) {
    let topic = unique("tls");
    let producer: FutureProducer = sasl_ssl(tls, Some(ca)).create().unwrap();
    send_numbered(&producer, &topic, 5).await;
    // Metadata sent the client back to the TLS listener (a plaintext address would fail here).
    let consumer: BaseConsumer = sasl_ssl(tls, Some(ca))
        .set("group.id", unique("tls-group"))
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&[&topic]).unwrap();
    let (_consumer, got) = poll_payloads(consumer, 5, Duration::from_secs(30)).await;
    assert_eq!(got, ["m0", "m1", "m2", "m3", "m4"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rdkafka_that_does_not_trust_the_certificate_fails() {
    let pki = Pki::new();
    let gateway = tls_gateway(&pki, false).await;
    let tls = gateway.gateway.kafka_tls_addr().unwrap();
    // Only the system's roots: the test CA is not among them.
    let client: BaseConsumer<RecordingContext> = sasl_ssl(tls, None)
        .create_with_context(RecordingContext::default())
        .unwrap();
    let (mut client, metadata) = e2e_tests::blocking(client, |c| {
        c.fetch_metadata(None, Duration::from_secs(3)).map(|_| ())
    })
    .await;
    assert!(metadata.is_err(), "no metadata from an untrusted server");
    let deadline = Instant::now() + Duration::from_secs(10);
    while client.context().0.lock().unwrap().is_empty() && Instant::now() < deadline {
        (client, _) =
            e2e_tests::blocking(client, |c| c.poll(Duration::from_millis(100)).is_some()).await;
    }
    let errors = client.context().0.lock().unwrap().clone();
    assert!(
        errors
            .iter()
            .any(|e| e.contains("SSL") && e.contains("certificate verify failed")),
        "{errors:?}"
    );
}

/// Connects without TLS, sends `hello`, and says whether the gateway closed the connection
/// within 5 s (an answer or silence past then is a failure).
fn plaintext_is_closed(addr: SocketAddr, hello: &[u8]) -> bool {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let started = Instant::now();
    let _ = s.write_all(hello);
    let mut buf = [0u8; 256];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return started.elapsed() < Duration::from_secs(5),
            // A TLS alert may come before the close.
            Ok(_) => continue,
            Err(e) => {
                return matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted
                )
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_clients_on_tls_ports_are_closed_promptly() {
    let pki = Pki::new();
    let gateway = tls_gateway(&pki, false).await;
    let kafka_tls = gateway.gateway.kafka_tls_addr().unwrap();
    let amqp_tls = gateway.gateway.amqp_tls_addr().unwrap();
    // A Kafka ApiVersions v0 request, and the AMQP 0-9-1 protocol header.
    let api_versions = [0, 0, 0, 10, 0, 18, 0, 0, 0, 0, 0, 1, 0xff, 0xff];
    let amqp_header = *b"AMQP\x00\x00\x09\x01";
    let closed = tokio::task::spawn_blocking(move || {
        (
            plaintext_is_closed(kafka_tls, &api_versions),
            plaintext_is_closed(amqp_tls, &amqp_header),
        )
    })
    .await
    .unwrap();
    assert_eq!(closed, (true, true), "both closed, neither hung");
    // The TLS listeners still serve.
    let ca = pki.path("ca.pem");
    let producer: FutureProducer = sasl_ssl(kafka_tls, Some(&ca)).create().unwrap();
    producer
        .send(
            FutureRecord::<(), _>::to(&unique("tls-after")).payload("x"),
            Duration::from_secs(10),
        )
        .await
        .expect("acknowledged");
}

async fn amqps(addr: SocketAddr, ca_pem: Option<String>) -> lapin::Result<Connection> {
    amqps_as(addr, ca_pem, None).await
}

/// amqps, presenting the client certificate `<stem>.pem`/`<stem>.key` of `pki` when given.
async fn amqps_as(
    addr: SocketAddr,
    ca_pem: Option<String>,
    client: Option<(&Pki, &str)>,
) -> lapin::Result<Connection> {
    let uri = format!("amqps://app:{}@localhost:{}/%2f", token(), addr.port());
    e2e_tests::pki::amqps(&uri, ca_pem, client).await
}

/// amqps with SASL EXTERNAL: the client certificate is the only credential.
async fn amqps_external(
    addr: SocketAddr,
    ca_pem: Option<String>,
    client: Option<(&Pki, &str)>,
) -> lapin::Result<Connection> {
    let uri = format!(
        "amqps://localhost:{}/%2f?auth_mechanism=external",
        addr.port()
    );
    e2e_tests::pki::amqps(&uri, ca_pem, client).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lapin_publishes_and_gets_over_amqps_with_a_token() {
    let pki = Pki::new();
    let gateway = tls_gateway(&pki, false).await;
    let addr = gateway.gateway.amqp_tls_addr().unwrap();
    let ca = std::fs::read_to_string(pki.path("ca.pem")).unwrap();
    let connection = amqps(addr, Some(ca)).await.expect("amqps with the CA");
    let channel = connection.create_channel().await.unwrap();
    let queue = unique("tls-q");
    channel
        .queue_declare(
            queue.as_str().into(),
            Default::default(),
            Default::default(),
        )
        .await
        .unwrap();
    channel.confirm_select(Default::default()).await.unwrap();
    let confirm = channel
        .basic_publish(
            "".into(),
            queue.as_str().into(),
            Default::default(),
            b"over tls",
            Default::default(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    assert!(confirm.is_ack());
    let got = channel
        .basic_get(
            queue.as_str().into(),
            lapin::options::BasicGetOptions { no_ack: true },
        )
        .await
        .unwrap()
        .expect("the message");
    assert_eq!(got.delivery.data, b"over tls");
    // Without the CA, lapin refuses the certificate.
    assert!(amqps(addr, None).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_replaced_on_disk_is_served_without_a_restart() {
    let pki = Pki::new();
    let gateway = tls_gateway(&pki, false).await;
    let addr = gateway.gateway.amqp_tls_addr().unwrap();
    let ca = std::fs::read_to_string(pki.path("ca.pem")).unwrap();
    amqps(addr, Some(ca.clone()))
        .await
        .expect("the first certificate");
    // A new certificate from another CA: clients trusting only the old CA now fail, clients
    // trusting the new one succeed.
    let other = Pki::new();
    other.issue("server", &["127.0.0.1", "localhost"]);
    // The modification time must differ from the first files' (coarse clocks).
    std::thread::sleep(Duration::from_millis(20));
    std::fs::copy(other.path("server.key"), pki.path("server.key")).unwrap();
    std::fs::copy(other.path("server.pem"), pki.path("server.pem")).unwrap();
    let new_ca = std::fs::read_to_string(other.path("ca.pem")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if amqps(addr, Some(new_ca.clone())).await.is_ok() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new certificate was never served"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        amqps(addr, Some(ca)).await.is_err(),
        "the old CA no longer matches"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_client_ca_a_client_without_a_certificate_is_refused() {
    let pki = Pki::new();
    let gateway = tls_gateway(&pki, true).await;
    let addr = gateway.gateway.amqp_tls_addr().unwrap();
    let ca = std::fs::read_to_string(pki.path("ca.pem")).unwrap();
    assert!(
        amqps(addr, Some(ca.clone())).await.is_err(),
        "no client certificate"
    );
    // One issued by another CA is refused; one issued by the configured CA is accepted.
    let stranger = Pki::new();
    stranger.issue("client", &["app"]);
    assert!(
        amqps_as(addr, Some(ca.clone()), Some((&stranger, "client")))
            .await
            .is_err(),
        "a certificate from another CA"
    );
    pki.issue("client", &["app"]);
    amqps_as(addr, Some(ca), Some((&pki, "client")))
        .await
        .expect("a certificate from the configured CA");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqp_external_logs_in_as_the_client_certificate() {
    let pki = Pki::new();
    // One connection per role: a second EXTERNAL login as the same common name shows the
    // certificate's name is the role.
    let gateway =
        tls_gateway_with(&pki, true, |c| c.limits.max_connections_per_principal = 1).await;
    let addr = gateway.gateway.amqp_tls_addr().unwrap();
    let ca = std::fs::read_to_string(pki.path("ca.pem")).unwrap();
    pki.issue_client("alice", "alice-role");
    pki.issue_client("bob", "bob-role");
    let alice = amqps_external(addr, Some(ca.clone()), Some((&pki, "alice")))
        .await
        .expect("EXTERNAL with a certificate from the configured CA");
    let channel = alice.create_channel().await.unwrap();
    let queue = unique("external-q");
    channel
        .queue_declare(
            queue.as_str().into(),
            Default::default(),
            Default::default(),
        )
        .await
        .expect("alice works in the vhost");
    let again = amqps_external(addr, Some(ca.clone()), Some((&pki, "alice"))).await;
    let text = format!(
        "{:?}",
        again.expect_err("alice-role's one connection is taken")
    );
    assert!(
        text.contains("530") || text.contains("NOT_ALLOWED"),
        "{text}"
    );
    amqps_external(addr, Some(ca.clone()), Some((&pki, "bob")))
        .await
        .expect("bob-role is another principal");
    // PLAIN with a token still works on the same listener, with a certificate presented.
    amqps_as(addr, Some(ca), Some((&pki, "bob")))
        .await
        .expect("PLAIN beside EXTERNAL");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqp_external_without_a_verified_certificate_is_refused() {
    let pki = Pki::new();
    // No client CA: the listener asks for no certificate, so EXTERNAL has nothing to go by.
    let gateway = tls_gateway(&pki, false).await;
    let addr = gateway.gateway.amqp_tls_addr().unwrap();
    let ca = std::fs::read_to_string(pki.path("ca.pem")).unwrap();
    pki.issue_client("alice", "alice-role");
    let refused = amqps_external(addr, Some(ca), Some((&pki, "alice"))).await;
    let text = format!("{:?}", refused.expect_err("EXTERNAL is refused"));
    assert!(
        text.contains("ACCESS_REFUSED") && text.contains("EXTERNAL"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_plaintext_listeners_off_everything_runs_over_tls() {
    let pki = Pki::new();
    let gateway = tls_gateway_with(&pki, false, |c| {
        c.kafka.listen = None;
        c.amqp.listen = None;
        c.admin.listen = None;
        c.tls.admin_listen = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    let running = &gateway.gateway;
    // Kafka: Metadata and FindCoordinator can only name the TLS listener.
    let kafka = running.kafka_tls_addr().unwrap();
    assert_eq!(running.kafka_advertised().port, kafka.port());
    produce_and_consume_over_tls(kafka, &pki.path("ca.pem")).await;
    // AMQP over amqps.
    let ca = std::fs::read_to_string(pki.path("ca.pem")).unwrap();
    let connection = amqps(running.amqp_tls_addr().unwrap(), Some(ca))
        .await
        .expect("amqps");
    connection.close(200, "bye".into()).await.unwrap();
    // Admin over HTTPS, verified against the CA (curl, a client nobody here wrote).
    let admin = running.admin_tls_addr().expect("an admin TLS listener");
    for path in ["/livez", "/readyz"] {
        let out = std::process::Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
            .arg(pki.path("ca.pem"))
            .arg(format!("https://localhost:{}{path}", admin.port()))
            .output()
            .expect("curl");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "200", "{path}");
    }
    let metrics = std::process::Command::new("curl")
        .args(["-s", "--cacert"])
        .arg(pki.path("ca.pem"))
        .arg(format!("https://localhost:{}/metrics", admin.port()))
        .output()
        .expect("curl");
    assert!(
        String::from_utf8_lossy(&metrics.stdout)
            .contains("pulsar_gateway_connections_accepted_total"),
        "metrics over HTTPS"
    );
    // Plain HTTP on the admin TLS port is closed, not answered.
    let out = std::process::Command::new("curl")
        .args(["-s", "-m", "5", "-o", "/dev/null", "-w", "%{http_code}"])
        .arg(format!("http://127.0.0.1:{}/livez", admin.port()))
        .output()
        .expect("curl");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "000");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn find_coordinator_sends_a_tls_client_to_the_peers_tls_listener() {
    // Two instances of an addressable fleet on one backend, each with plaintext and TLS Kafka
    // listeners. B starts first and takes the group (its first commit claims the group's
    // shard); A starts after, so the group cannot be A's.
    use e2e_tests::backends::BackendFixture;
    let pki = Pki::new();
    let tls = tls_settings(&pki, false);
    let fixture = e2e_tests::backends::EmbeddedFixture::new();
    let dir = tempfile::tempdir().unwrap();
    let launch = |config: Config| pulsar_gateway::start_with_backend(config, fixture.backend());
    let mut config = Config::for_tests(dir.path());
    tls(&mut config);
    let b = launch(config.clone()).await.unwrap();
    let ca = pki.path("ca.pem");
    let topic = unique("fleet-tls");
    let group = unique("fleet-tls-group");
    // B coordinates the group: the first commit for it goes through B, which claims it.
    let producer: FutureProducer = sasl_ssl(b.kafka_tls_addr().unwrap(), Some(&ca))
        .create()
        .unwrap();
    send_numbered(&producer, &topic, 3).await;
    let claim: BaseConsumer = sasl_ssl(b.kafka_tls_addr().unwrap(), Some(&ca))
        .set("group.id", &group)
        .create()
        .unwrap();
    let mut start = rdkafka::TopicPartitionList::new();
    start
        .add_partition_offset(&topic, 0, rdkafka::Offset::Offset(0))
        .unwrap();
    let (claim, committed) = e2e_tests::blocking(claim, move |c| {
        c.commit(&start, rdkafka::consumer::CommitMode::Sync)
    })
    .await;
    committed.expect("committed through B");
    drop(claim);
    let a = launch(config).await.unwrap();
    // Each instance's Metadata lists the whole fleet, itself first, once it has read the
    // other's announcement (within seconds): librdkafka drops a broker that one Metadata answer
    // leaves out, with any request in flight to it.
    let (a_plain, b_plain) = (a.kafka_addr(), b.kafka_addr());
    let token = token();
    let plain = Some(("public/default", format!("token:{token}")));
    let brokers = |at: SocketAddr| {
        let plain = plain.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                let (user, password) = plain.unwrap();
                e2e_tests::kafka_raw::metadata_brokers(at, Some((user, &password)))
                    .into_iter()
                    .map(|(_, port)| port)
                    .collect::<Vec<_>>()
            })
            .await
            .unwrap()
        }
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (from_a, from_b) = (brokers(a_plain).await, brokers(b_plain).await);
        if from_a == [a_plain.port(), b_plain.port()] && from_b == [b_plain.port(), a_plain.port()]
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the fleet did not converge: A lists {from_a:?}, B lists {from_b:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A TLS client is given the TLS listeners.
    let probe: BaseConsumer = sasl_ssl(a.kafka_tls_addr().unwrap(), Some(&ca))
        .create()
        .unwrap();
    let (_probe, listed) = e2e_tests::blocking(probe, |p| {
        p.fetch_metadata(None, Duration::from_secs(10)).map(|m| {
            m.brokers()
                .iter()
                .map(|b| b.port() as u16)
                .collect::<Vec<_>>()
        })
    })
    .await;
    let mut listed = listed.expect("metadata");
    listed.sort();
    let mut tls_ports = [
        a.kafka_tls_addr().unwrap().port(),
        b.kafka_tls_addr().unwrap().port(),
    ];
    tls_ports.sort();
    assert_eq!(listed, tls_ports, "TLS Metadata lists the TLS listeners");
    // A TLS client of A is sent to B's TLS listener (B's plaintext port would fail the TLS
    // handshake, and the group would never be joined).
    let consumer: BaseConsumer = sasl_ssl(a.kafka_tls_addr().unwrap(), Some(&ca))
        .set("group.id", &group)
        .create()
        .unwrap();
    consumer.subscribe(&[&topic]).unwrap();
    let (_consumer, got) = poll_payloads(consumer, 3, Duration::from_secs(30)).await;
    assert_eq!(got, ["m0", "m1", "m2"], "consumed through B's coordinator");
}
