//! The gateway on a Pulsar that takes only TLS and tokens, as managed Pulsars do
//! (`compat-suites/pulsar/start --tls --auth`; CI starts one): what goes wrong in such a setup
//! must leave the gateway running but not ready, saying why in one log line and never showing a
//! secret; a client certificate can be the gateway's credential; a rotated token file is used.
//!
//! Needs the variables `start --tls --auth` prints; ignored otherwise. The end-to-end suites
//! (`kafka_rdkafka`, `amqp_lapin`) run on the same Pulsar with `GATEWAY_TEST_BACKEND=pulsar`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use e2e_tests::fault_proxy::FaultProxy;
use e2e_tests::rdkafka_util::{poll_payloads, unique};
use e2e_tests::{free_port, GatewayProcess, InProcessGateway, TestPulsar};
use rdkafka::consumer::Consumer;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;

const GATEWAY_BIN: &str = env!("CARGO_BIN_EXE_gateway-under-test");

struct TlsPulsar {
    access: TestPulsar,
    /// The certificates `start --tls` made.
    tls_dir: PathBuf,
    secret_key: String,
}

fn tls_pulsar() -> TlsPulsar {
    let var = |k: &str| {
        std::env::var(k).unwrap_or_else(|_| {
            panic!("needs {k} (eval \"$(compat-suites/pulsar/start --tls --auth)\")")
        })
    };
    let access = TestPulsar::from_env().expect("PULSAR_URL and PULSAR_ADMIN_URL");
    assert!(
        access.url.starts_with("pulsar+ssl://") && access.admin_url.starts_with("https://"),
        "needs a Pulsar started with --tls"
    );
    assert!(access.token.is_some(), "needs a Pulsar started with --auth");
    TlsPulsar {
        access,
        tls_dir: var("PULSAR_TLS_DIR").into(),
        secret_key: var("PULSAR_TOKEN_SECRET_KEY"),
    }
}

/// A token from Pulsar's own tool.
fn pulsar_token(pulsar: &TlsPulsar, subject: &str, expiry: Option<&str>) -> String {
    e2e_tests::pulsar_token(&pulsar.secret_key, subject, expiry)
}

/// `host:port` of a URL.
fn hostport(url: &str) -> SocketAddr {
    url.split_once("://")
        .unwrap()
        .1
        .trim_end_matches('/')
        .parse()
        .expect("an IP:port URL")
}

/// A gateway process on `pulsar_url`/`admin_url` with `extra` options, logging to a file.
struct Misconfigured {
    what: &'static str,
    /// Text the log line and `/readyz` must carry.
    cause: &'static str,
    process: GatewayProcess,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

fn launch(what: &'static str, cause: &'static str, args: Vec<String>) -> Misconfigured {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("gateway.log");
    let (kafka, admin) = (
        SocketAddr::from(([127, 0, 0, 1], free_port())),
        SocketAddr::from(([127, 0, 0, 1], free_port())),
    );
    let mut args = args;
    args.extend([
        "--backend".into(),
        "pulsar".into(),
        "--log-level".into(),
        "info".into(),
    ]);
    let process = GatewayProcess::launch(
        GATEWAY_BIN,
        &dir.path().join("data"),
        kafka,
        admin,
        Some(&log),
        &args,
    );
    Misconfigured {
        what,
        cause,
        process,
        log,
        _dir: dir,
    }
}

/// `/readyz`'s status and body.
fn readyz(admin: SocketAddr) -> (Option<u16>, String) {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect_timeout(&admin, Duration::from_millis(500))
    else {
        return (None, String::new());
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let _ = write!(
        stream,
        "GET /readyz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    );
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok());
    let body = response
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    (status, body)
}

/// A wrong CA, a certificate for another name, an expired token: each gateway keeps running,
/// is never ready, says why in `/readyz` and in exactly one log line, and logs no token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Pulsar started with compat-suites/pulsar/start --tls --auth"]
async fn misconfigured_tls_or_credentials_leave_the_gateway_not_ready_saying_why() {
    let pulsar = tls_pulsar();
    let token = pulsar.access.token.clone().unwrap();
    let ca = pulsar.access.trust_certs.clone().unwrap();
    let expired = pulsar_token(&pulsar, "admin", Some("1s"));
    let urls = |url: &str, admin: &str| {
        vec![
            "--pulsar-url".to_owned(),
            url.to_owned(),
            "--pulsar-admin-url".to_owned(),
            admin.to_owned(),
        ]
    };
    // Another name for the broker: 127.0.0.2 reaches it through a forwarder, and its
    // certificate names 127.0.0.1 and localhost only.
    let other_name = SocketAddr::from(([127, 0, 0, 2], 0));
    let binary = FaultProxy::bind(other_name, hostport(&pulsar.access.url))
        .await
        .unwrap();
    let web = FaultProxy::bind(other_name, hostport(&pulsar.access.admin_url))
        .await
        .unwrap();
    let (url, admin) = (pulsar.access.url.clone(), pulsar.access.admin_url.clone());
    let with = |mut args: Vec<String>, more: &[&str]| {
        args.extend(more.iter().map(|s| s.to_string()));
        args
    };
    let other_ca = pulsar
        .tls_dir
        .join("other-ca.cert.pem")
        .display()
        .to_string();
    std::thread::sleep(Duration::from_secs(2)); // the short token expires
    let mut cases = [
        launch(
            "a CA that did not sign the broker's certificate",
            "UnknownIssuer",
            with(
                urls(&url, &admin),
                &[
                    "--pulsar-token",
                    &token,
                    "--pulsar-tls-trust-certs-file",
                    &other_ca,
                ],
            ),
        ),
        launch(
            "a broker reached by a name its certificate lacks",
            "not valid for name",
            with(
                urls(
                    &format!("pulsar+ssl://{}", binary.addr()),
                    &format!("https://{}", web.addr()),
                ),
                &[
                    "--pulsar-token",
                    &token,
                    "--pulsar-tls-trust-certs-file",
                    &ca,
                ],
            ),
        ),
        launch(
            "an expired token",
            "expired",
            with(
                urls(&url, &admin),
                &[
                    "--pulsar-token",
                    &expired,
                    "--pulsar-tls-trust-certs-file",
                    &ca,
                ],
            ),
        ),
    ];
    // Watched for 15 s: never ready, and still running at the end.
    let until = Instant::now() + Duration::from_secs(15);
    let mut bodies = vec![String::new(); cases.len()];
    while Instant::now() < until {
        for (case, body) in cases.iter().zip(bodies.iter_mut()) {
            let (status, text) = readyz(case.process.admin);
            assert_ne!(
                status,
                Some(200),
                "{}: the gateway said it was ready",
                case.what
            );
            if status == Some(503) {
                *body = text;
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for (case, body) in cases.iter_mut().zip(bodies) {
        assert!(
            case.process.is_running(),
            "{}: the gateway exited",
            case.what
        );
        let log = std::fs::read_to_string(&case.log).unwrap();
        eprintln!("--- {}: /readyz said: {body}--- log:\n{log}", case.what);
        assert!(
            body.contains(case.cause),
            "{}: /readyz does not say {:?}",
            case.what,
            case.cause
        );
        let lines: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("backend not ready"))
            .collect();
        assert_eq!(
            lines.len(),
            1,
            "{}: one log line for the cause, got {lines:#?}",
            case.what
        );
        assert!(
            lines[0].contains(case.cause),
            "{}: the log line does not say {:?}",
            case.what,
            case.cause
        );
        // Components that retry in the background say so once, not on every attempt.
        let warnings = log
            .lines()
            .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
            .count();
        assert!(
            warnings <= 5,
            "{}: {warnings} warnings in 15 s: the log is flooded",
            case.what
        );
        for secret in [&token, &expired] {
            assert!(
                !log.contains(secret.as_str()),
                "{}: a token is in the log",
                case.what
            );
        }
    }
}

/// With no token, the client certificate is the gateway's credential (Pulsar's
/// `AuthenticationTls`, role = its common name): refused before Pulsar grants that role
/// anything, working after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Pulsar started with compat-suites/pulsar/start --tls --auth"]
async fn a_client_certificate_is_the_gateways_credential() {
    let pulsar = tls_pulsar();
    let namespace = unique("mtls");
    let topic = unique("t");
    // Made by the superuser: creating topics takes more than produce permission (tenant admin).
    for (path, body) in [
        (format!("/admin/v2/namespaces/public/{namespace}"), ""),
        (
            format!("/admin/v2/persistent/public/{namespace}/{topic}/partitions"),
            "1",
        ),
    ] {
        let (status, answer) = pulsar.access.admin_call("PUT", &path, body);
        assert_eq!(status, 204, "{path}: {answer}");
    }
    let (cert, key) = (
        pulsar.tls_dir.join("client.cert.pem"),
        pulsar.tls_dir.join("client.key.pem"),
    );
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("gateway.log");
    let mut args = pulsar.access.gateway_args();
    let token = args.iter().position(|a| a == "--pulsar-token").unwrap();
    args.drain(token..token + 2);
    args.extend([
        "--pulsar-tls-cert-file".into(),
        cert.display().to_string(),
        "--pulsar-tls-key-file".into(),
        key.display().to_string(),
        "--kafka-default-namespace".into(),
        namespace.clone(),
        "--log-level".into(),
        "info,gateway_pulsar=debug,gateway_kafka=debug".into(),
    ]);
    let (kafka, admin) = (
        SocketAddr::from(([127, 0, 0, 1], free_port())),
        SocketAddr::from(([127, 0, 0, 1], free_port())),
    );
    let _gw = GatewayProcess::launch(
        GATEWAY_BIN,
        &dir.path().join("data"),
        kafka,
        admin,
        Some(&log),
        &args,
    );
    let shown = log.clone();
    let _show_log_on_failure = scopeguard(move || {
        if std::thread::panicking() {
            eprintln!(
                "--- gateway log:\n{}",
                std::fs::read_to_string(&shown).unwrap_or_default()
            );
        }
    });
    e2e_tests::wait_readyz(admin, 200, Duration::from_secs(30)).await;
    let bootstrap = kafka.to_string();
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("message.timeout.ms", "10000")
        .create()
        .unwrap();
    let refused = producer
        .send(
            FutureRecord::<(), _>::to(&topic).payload("before"),
            Duration::from_secs(10),
        )
        .await;
    assert!(
        refused.is_err(),
        "role gateway-client has no permission yet: {refused:?}"
    );
    let (status, body) = pulsar.access.admin_call(
        "POST",
        &format!("/admin/v2/namespaces/public/{namespace}/permissions/gateway-client"),
        r#"["produce","consume"]"#,
    );
    assert_eq!(status, 204, "{body}");
    // Permissions reach the broker's cache within a few seconds.
    let limit = Instant::now() + Duration::from_secs(30);
    loop {
        let sent = producer
            .send(
                FutureRecord::<(), _>::to(&topic).payload("after"),
                Duration::from_secs(10),
            )
            .await;
        if sent.is_ok() {
            break;
        }
        assert!(
            Instant::now() < limit,
            "still refused after the grant: {sent:?}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let consumer = e2e_tests::rdkafka_util::consumer(&bootstrap);
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset(&topic, 0, rdkafka::Offset::Beginning)
        .unwrap();
    consumer.assign(&tpl).unwrap();
    let (_, got) = poll_payloads(consumer, 1, Duration::from_secs(30)).await;
    assert_eq!(got, ["after"]);
}

/// The token file is read again when it changes: a refused token turns `/readyz` 503 within
/// 15 s, a valid one turns it back, and the gateway works with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Pulsar started with compat-suites/pulsar/start --tls --auth"]
async fn a_rotated_token_file_is_used() {
    let pulsar = tls_pulsar();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    let rotate = |token: &str| {
        let next = dir.path().join("token.next");
        std::fs::write(&next, token).unwrap();
        std::fs::rename(&next, &file).unwrap();
    };
    rotate(pulsar.access.token.as_deref().unwrap());
    let access = pulsar.access.clone();
    let spec = format!("file://{}", file.display());
    let gw = InProcessGateway::start_with(move |c| {
        access.configure(c);
        c.backend.pulsar_token = Some(spec);
    })
    .await;
    let admin = gw.gateway.admin_addr();
    e2e_tests::wait_readyz(admin, 200, Duration::from_secs(15)).await;
    // The same token with another signature: Pulsar refuses it.
    let valid = pulsar_token(&pulsar, "admin", None);
    let (unsigned, _) = valid.rsplit_once('.').unwrap();
    rotate(&format!("{unsigned}.c2lnbmF0dXJlLW9mLWFub3RoZXIta2V5"));
    let refused = e2e_tests::wait_readyz(admin, 503, Duration::from_secs(15)).await;
    let (_, body) = readyz(admin);
    assert!(body.contains("refused"), "{body}");
    rotate(&valid);
    let back = e2e_tests::wait_readyz(admin, 200, Duration::from_secs(15)).await;
    eprintln!("a refused token: /readyz 503 after {refused:?}; a valid one: 200 after {back:?}");
    produce_one(&gw.bootstrap(), "rotated").await;
}

/// The trust file is read again when it changes, as the token file is: a gateway started
/// with a CA that did not sign the broker's certificate is not ready, and becomes ready
/// without a restart once the right CA is renamed into place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Pulsar started with compat-suites/pulsar/start --tls --auth"]
async fn a_replaced_trust_file_is_used_without_a_restart() {
    let pulsar = tls_pulsar();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ca.pem");
    let replace = |from: &std::path::Path| {
        let next = dir.path().join("ca.pem.next");
        std::fs::copy(from, &next).unwrap();
        std::fs::rename(&next, &file).unwrap();
    };
    replace(&pulsar.tls_dir.join("other-ca.cert.pem"));
    let access = pulsar.access.clone();
    let trust = file.clone();
    let gw = InProcessGateway::start_with(move |c| {
        access.configure(c);
        c.backend.pulsar_tls_trust_certs_file = Some(trust);
    })
    .await;
    let admin = gw.gateway.admin_addr();
    e2e_tests::wait_readyz(admin, 503, Duration::from_secs(15)).await;
    let (_, body) = readyz(admin);
    assert!(body.contains("UnknownIssuer"), "{body}");
    replace(std::path::Path::new(
        pulsar.access.trust_certs.as_deref().unwrap(),
    ));
    let ready = e2e_tests::wait_readyz(admin, 200, Duration::from_secs(15)).await;
    eprintln!("the right CA renamed into place: /readyz 200 after {ready:?}");
    produce_one(&gw.bootstrap(), "new-ca").await;
}

/// One record through the gateway at `bootstrap`: it works with its current credentials.
async fn produce_one(bootstrap: &str, prefix: &str) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("message.timeout.ms", "20000")
        .create()
        .unwrap();
    producer
        .send(
            FutureRecord::<(), _>::to(&unique(prefix)).payload("x"),
            Duration::from_secs(20),
        )
        .await
        .expect("the gateway works with its new credentials");
}

/// Runs `f` when dropped (to show a gateway's log when a test fails).
fn scopeguard(f: impl FnOnce()) -> impl Drop {
    struct Guard<F: FnOnce()>(Option<F>);
    impl<F: FnOnce()> Drop for Guard<F> {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f();
            }
        }
    }
    Guard(Some(f))
}
