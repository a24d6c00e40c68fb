//! Shared helpers for the end-to-end tests: start a gateway (in-process or as a child process)
//! and reach it with real clients. Gateways run on the embedded backend, or on the real Pulsar
//! named by `PULSAR_URL`/`PULSAR_ADMIN_URL` when `GATEWAY_TEST_BACKEND=pulsar` (as `.ci/run`
//! does after `compat-suites/pulsar/start`).

pub mod backends;
pub mod fault_proxy;
pub mod kafka_raw;
pub mod own_pulsar;
pub mod pki;
pub mod rdkafka_util;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use pulsar_gateway::config::BackendKind;
use pulsar_gateway::{Config, RunningGateway};

/// A real Pulsar for the tests, as `compat-suites/pulsar/start` describes it: its URLs (plain or
/// TLS), and with `--auth` the superuser's token, with `--tls` the CA that signed its certificate.
#[derive(Debug, Clone)]
pub struct TestPulsar {
    pub url: String,
    pub admin_url: String,
    /// `PULSAR_ADMIN_TOKEN`: the gateway's own credential and the admin calls'.
    pub token: Option<String>,
    /// `PULSAR_TLS_TRUST_CERTS`: the CA file for `pulsar+ssl://` and `https://`.
    pub trust_certs: Option<String>,
}

impl TestPulsar {
    /// The Pulsar named by `PULSAR_URL` and `PULSAR_ADMIN_URL` (and `PULSAR_ADMIN_TOKEN`,
    /// `PULSAR_TLS_TRUST_CERTS` when set), if those are set.
    pub fn from_env() -> Option<TestPulsar> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        Some(TestPulsar {
            url: var("PULSAR_URL")?,
            admin_url: var("PULSAR_ADMIN_URL")?,
            token: var("PULSAR_ADMIN_TOKEN"),
            trust_certs: var("PULSAR_TLS_TRUST_CERTS"),
        })
    }

    /// A gateway's settings to run on this Pulsar.
    pub fn configure(&self, config: &mut Config) {
        config.backend.kind = BackendKind::Pulsar;
        config.backend.pulsar_url = Some(self.url.clone());
        config.backend.pulsar_admin_url = Some(self.admin_url.clone());
        config.backend.pulsar_token = self.token.clone();
        config.backend.pulsar_tls_trust_certs_file = self.trust_certs.clone().map(Into::into);
    }

    /// The same, as the gateway binary's command-line options.
    pub fn gateway_args(&self) -> Vec<String> {
        let mut args = vec![
            "--backend".into(),
            "pulsar".into(),
            "--pulsar-url".into(),
            self.url.clone(),
            "--pulsar-admin-url".into(),
            self.admin_url.clone(),
        ];
        if let Some(token) = &self.token {
            args.extend(["--pulsar-token".into(), token.clone()]);
        }
        if let Some(ca) = &self.trust_certs {
            args.extend(["--pulsar-tls-trust-certs-file".into(), ca.clone()]);
        }
        args
    }

    /// One admin REST call (`path` from `/admin/...`), as the superuser when there is a token;
    /// returns the status and the body.
    pub fn admin_call(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        let mut curl = Command::new("curl");
        curl.args([
            "-s",
            "-m",
            "60",
            "-o",
            "-",
            "-w",
            "\n%{http_code}",
            "-X",
            method,
        ]);
        if let Some(ca) = &self.trust_certs {
            curl.args(["--cacert", ca]);
        }
        if let Some(token) = &self.token {
            curl.args(["-H", &format!("Authorization: Bearer {token}")]);
        }
        if !body.is_empty() {
            curl.args(["-H", "Content-Type: application/json", "--data", body]);
        }
        let out = curl
            .arg(format!("{}{path}", self.admin_url))
            .output()
            .expect("curl");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, status) = text.rsplit_once('\n').unwrap_or(("", &text));
        (status.trim().parse().unwrap_or(0), body.to_owned())
    }
}

/// The real Pulsar the tests must run against (`GATEWAY_TEST_BACKEND=pulsar`), or `None` for
/// the embedded backend.
pub fn test_pulsar() -> Option<TestPulsar> {
    if std::env::var("GATEWAY_TEST_BACKEND").as_deref() != Ok("pulsar") {
        return None;
    }
    Some(
        TestPulsar::from_env()
            .expect("GATEWAY_TEST_BACKEND=pulsar needs PULSAR_URL and PULSAR_ADMIN_URL"),
    )
}

/// Creates `tenant/namespace` on the test Pulsar (the gateway creates topics, not namespaces);
/// nothing on the embedded backend, which needs none.
pub fn create_pulsar_namespace(namespace: &str) {
    let Some(pulsar) = test_pulsar() else {
        return;
    };
    let (status, body) = pulsar.admin_call("PUT", &format!("/admin/v2/namespaces/{namespace}"), "");
    assert_eq!(status, 204, "creating namespace {namespace}: {body}");
}

/// A gateway running in this process with its own data directory.
pub struct InProcessGateway {
    pub gateway: RunningGateway,
    pub data: tempfile::TempDir,
}

impl InProcessGateway {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> Self {
        let data = tempfile::tempdir().expect("temp dir");
        let mut config = Config::for_tests(data.path());
        if let Some(pulsar) = test_pulsar() {
            pulsar.configure(&mut config);
        }
        let default_state_topic = config.kafka.groups.state_topic.clone();
        adjust(&mut config);
        // On a Pulsar shared by many tests, group state of its own, unless the test named some.
        if config.backend.kind == BackendKind::Pulsar
            && config.kafka.groups.state_topic == default_state_topic
        {
            config.kafka.groups.state_topic = own_group_state(data.path());
        }
        let gateway = pulsar_gateway::start(config).await.expect("gateway starts");
        InProcessGateway { gateway, data }
    }

    pub fn bootstrap(&self) -> String {
        self.gateway.kafka_addr().to_string()
    }
}

/// Group state of a test gateway's own on the shared test Pulsar, named after its data directory
/// (so a restart on the same directory finds it again). Gateways sharing group state are one
/// fleet: a test's consumer could otherwise be sent to another test's gateway as its group
/// coordinator, and lose it when that test ends (seen in CI as BrokerTransportFailure).
/// Fleet tests name one state topic for all their instances.
pub fn own_group_state(data_dir: &Path) -> String {
    let hash = gateway_kafka::groups::coordinator::fnv1a(data_dir.as_os_str().as_encoded_bytes());
    format!("__gateway_kafka_groups_test_{hash:016x}")
}

/// A free loopback port (bound then released), for child processes that must keep a fixed port
/// across restarts. It is picked below Linux's ephemeral range (32768 and up): a port the kernel
/// handed out for port 0 can be taken by any outgoing connection (to Pulsar, say) before the
/// child binds it, which made gateways fail to start now and then. Ports are not handed out
/// twice in one test process.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap();
    for _ in 0..1000 {
        let port = rand::random_range(20_000..32_000);
        if given.contains(&port) {
            continue;
        }
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            given.push(port);
            return port;
        }
    }
    panic!("no free port between 20000 and 32000")
}

/// The gateway as a separate process, so a test can SIGKILL it.
pub struct GatewayProcess {
    child: Child,
    pub kafka: SocketAddr,
    pub admin: SocketAddr,
    /// The AMQP listener, on a free port picked at start (`extra` may name its own).
    pub amqp: SocketAddr,
}

impl GatewayProcess {
    /// Starts the gateway binary (tests pass `env!("CARGO_BIN_EXE_gateway-under-test")`, which
    /// Cargo only defines for test targets) and waits until `/readyz` says ready.
    pub fn start(binary: &str, data_dir: &Path, kafka: SocketAddr, admin: SocketAddr) -> Self {
        Self::start_logged(binary, data_dir, kafka, admin, None)
    }

    /// As `start`, with the gateway's output (its log, and any panic message) in `log`.
    pub fn start_logged(
        binary: &str,
        data_dir: &Path,
        kafka: SocketAddr,
        admin: SocketAddr,
        log: Option<&Path>,
    ) -> Self {
        Self::start_with_args(binary, data_dir, kafka, admin, log, &[])
    }

    /// As `start_logged`, with more command-line options.
    pub fn start_with_args(
        binary: &str,
        data_dir: &Path,
        kafka: SocketAddr,
        admin: SocketAddr,
        log: Option<&Path>,
        extra: &[String],
    ) -> Self {
        let process = Self::launch(binary, data_dir, kafka, admin, log, extra);
        process.wait_ready(Duration::from_secs(30));
        process
    }

    /// As `start_with_args`, without waiting for `/readyz` (for gateways that must not get
    /// ready). On the test Pulsar with `GATEWAY_TEST_BACKEND=pulsar`, unless `extra` names
    /// `--backend` itself.
    pub fn launch(
        binary: &str,
        data_dir: &Path,
        kafka: SocketAddr,
        admin: SocketAddr,
        log: Option<&Path>,
        extra: &[String],
    ) -> Self {
        let (stdout, stderr) = match log {
            Some(path) => {
                let file = std::fs::File::create(path).expect("gateway log file");
                let copy = file.try_clone().expect("gateway log file");
                (Stdio::from(file), Stdio::from(copy))
            }
            None => (Stdio::null(), Stdio::inherit()),
        };
        let named = extra
            .iter()
            .position(|a| a == "--amqp-listen")
            .and_then(|i| extra.get(i + 1))
            .and_then(|a| a.parse().ok());
        let amqp = named.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], free_port())));
        let own_amqp = match named {
            Some(_) => vec![],
            None => vec!["--amqp-listen".to_owned(), amqp.to_string()],
        };
        let child = Command::new(binary)
            .args(["--data-dir", &data_dir.display().to_string()])
            .args(["--kafka-listen", &kafka.to_string()])
            .args(own_amqp)
            .args(["--admin-listen", &admin.to_string()])
            .args(if extra.iter().any(|a| a == "--log-level") {
                vec![]
            } else {
                vec!["--log-level", "warn"]
            })
            .args(
                match test_pulsar().filter(|_| !extra.iter().any(|a| a == "--backend")) {
                    Some(pulsar) => {
                        let mut pulsar = pulsar.gateway_args();
                        if !extra.iter().any(|a| a == "--kafka-group-state-topic") {
                            pulsar.push("--kafka-group-state-topic".into());
                            pulsar.push(own_group_state(data_dir));
                        }
                        pulsar
                    }
                    None => vec![],
                },
            )
            .args(extra)
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .expect("spawn gateway");
        GatewayProcess {
            child,
            kafka,
            admin,
            amqp,
        }
    }

    /// The process id, e.g. to read `/proc/<pid>/status`.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process still runs (`false` once it exited).
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    fn wait_ready(&self, limit: Duration) {
        let deadline = std::time::Instant::now() + limit;
        while std::time::Instant::now() < deadline {
            if http_status(self.admin, "/readyz") == Some(200) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("gateway on {} not ready within {limit:?}", self.kafka);
    }

    /// SIGKILL: no drain, no flush; what was acknowledged must already be durable.
    pub fn kill(mut self) {
        self.child.kill().expect("kill gateway");
        self.child.wait().expect("reap gateway");
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `/readyz` until it answers `want`; returns how long that took.
pub async fn wait_readyz(admin: std::net::SocketAddr, want: u16, limit: Duration) -> Duration {
    let started = std::time::Instant::now();
    loop {
        let status = tokio::task::spawn_blocking(move || http_status(admin, "/readyz"))
            .await
            .unwrap();
        if status == Some(want) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < limit,
            "/readyz still {status:?} after {limit:?}, want {want}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The status code of a plain HTTP GET, or `None` if the server does not answer.
pub fn http_status(addr: SocketAddr, path: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let mut stream =
        std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response.split_whitespace().nth(1)?.parse().ok()
}

/// Runs a blocking call on `client` (librdkafka's `BaseConsumer` polls and metadata requests) on
/// a blocking thread, and hands the client back with the result.
pub async fn blocking<C, T>(client: C, call: impl FnOnce(&C) -> T + Send + 'static) -> (C, T)
where
    C: Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(move || {
        let result = call(&client);
        (client, result)
    })
    .await
    .expect("the blocking call finished")
}

/// Checks an authentication or authorization matrix: each case (what it is, whether it should
/// be let through, what it got: `Ok(let through?)` or an unexpected failure) against its
/// expected outcome. Fails listing every case that did not match; a matrix has at least 30
/// cases. `words` name the two outcomes ("accepted"/"refused", "allowed"/"refused").
pub fn assert_matrix(results: &[(String, bool, Result<bool, String>)], words: (&str, &str)) {
    let word = |through: bool| if through { words.0 } else { words.1 };
    let failures: Vec<String> = results
        .iter()
        .filter_map(|(case, expected, got)| match got {
            Ok(through) if through == expected => None,
            Ok(through) => Some(format!(
                "{case}: expected {}, got {}",
                word(*expected),
                word(*through)
            )),
            Err(e) => Some(format!("{case}: {e}")),
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        results.len(),
        failures.join("\n")
    );
    assert!(results.len() >= 30, "{} cases", results.len());
}
