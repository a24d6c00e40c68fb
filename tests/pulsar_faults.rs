//! Faults between the gateway and Pulsar, under load from real clients (issue 13): Pulsar
//! frozen (SIGSTOP), the connection blackholed, 200 ms of latency, connections reset every 5 s,
//! and the gateway's token file rotated.
//!
//! Each test runs a Pulsar of its own (`compat-suites/pulsar/start --proxy`): the gateway's
//! service URL is a fault proxy (`e2e_tests::fault_proxy`) in front of the Pulsar proxy, so that
//! every binary-protocol connection goes through it; the admin REST API is reached directly.
//! Under load: an idempotent rdkafka producer and a consumer group, a lapin publisher waiting for
//! confirms and a lapin consumer. Every test checks that nothing acknowledged is lost (every
//! acknowledged record is read back at its offset, every confirmed message is delivered), that
//! whatever is read was sent, and how soon each client resumes once the fault ends; the timings
//! are printed for `docs/pulsar.md`.
//!
//! They take minutes each: `GATEWAY_TEST_FAULTS=1 cargo test -p e2e-tests --test pulsar_faults
//! -- --include-ignored --test-threads=1` (what `scripts/fault-runs` does).

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use e2e_tests::fault_proxy::FaultProxy;
use e2e_tests::own_pulsar::OwnPulsar;
use e2e_tests::rdkafka_util::{create_topic, producer, unique};
use e2e_tests::{http_status, GatewayProcess, InProcessGateway};
use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties, ExchangeKind};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::FutureRecord;
use rdkafka::ClientConfig;

const PARTITIONS: i32 = 4;
/// The group consumer's session timeout: it must read again within this once a fault ends.
const SESSION_TIMEOUT: Duration = Duration::from_secs(20);
/// AMQP consumers and publishers must be back within this once a fault ends.
const AMQP_RESUME: Duration = Duration::from_secs(30);
/// The gateway's operation timeout (the default): a confirm answers within it, plus room.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(30);

fn asked() {
    assert_eq!(
        std::env::var("GATEWAY_TEST_FAULTS").as_deref(),
        Ok("1"),
        "set GATEWAY_TEST_FAULTS=1 to run the fault tests: each runs a Pulsar of its own for minutes"
    );
}

/// When something happened, since the rig started.
type Stamp = Duration;

#[derive(Clone, Copy)]
struct Clock(Instant);

impl Clock {
    fn now(self) -> Stamp {
        self.0.elapsed()
    }
}

/// What the clients saw, with times.
#[derive(Default)]
struct Seen {
    /// Kafka: record id → (partition, offset, when acknowledged).
    kafka_acked: HashMap<usize, (i32, i64, Stamp)>,
    kafka_failed: usize,
    /// Kafka group consumer: (when, record id).
    kafka_read: Vec<(Stamp, usize)>,
    kafka_consumer_errors: Vec<String>,
    /// AMQP publisher: message id → (published, answered, acked); `None` answer: waiting.
    amqp_published: HashMap<usize, (Stamp, Option<(Stamp, bool)>)>,
    amqp_publisher_errors: Vec<String>,
    /// AMQP consumer: (when, message id).
    amqp_read: Vec<(Stamp, usize)>,
    amqp_consumer_errors: Vec<String>,
}

/// The gateway under test: in this process, or (to measure its memory) a process of its own.
enum Gateway {
    InProcess(InProcessGateway),
    /// With its data directory, which lives as long as it does.
    Process(GatewayProcess, #[allow(dead_code)] tempfile::TempDir),
}

impl Gateway {
    fn bootstrap(&self) -> String {
        match self {
            Gateway::InProcess(g) => g.bootstrap(),
            Gateway::Process(g, _) => g.kafka.to_string(),
        }
    }

    fn amqp(&self) -> SocketAddr {
        match self {
            Gateway::InProcess(g) => g.gateway.amqp_addr(),
            Gateway::Process(g, _) => g.amqp,
        }
    }

    fn admin(&self) -> SocketAddr {
        match self {
            Gateway::InProcess(g) => g.gateway.admin_addr(),
            Gateway::Process(g, _) => g.admin,
        }
    }
}

struct Rig {
    started: Instant,
    pulsar: OwnPulsar,
    faults: FaultProxy,
    gateway: Gateway,
    topic: &'static str,
    exchange: String,
    queue: String,
    seen: Arc<Mutex<Seen>>,
    /// Cleared to stop the producers, then the consumers.
    producing: Arc<AtomicBool>,
    consuming: Arc<AtomicBool>,
    producers: Vec<tokio::task::JoinHandle<()>>,
    consumers: Vec<tokio::task::JoinHandle<()>>,
}

impl Rig {
    /// A Pulsar of its own started with `options` (besides `--proxy`), a fault proxy in front
    /// of the Pulsar proxy, a gateway through it (`adjust` changes its settings), and the load.
    async fn start(options: &[&str], adjust: impl FnOnce(&mut pulsar_gateway::Config)) -> Rig {
        Self::start_then(options, |_, c| adjust(c)).await
    }

    /// `start`, with `adjust` seeing the Pulsar it started (its keys, say).
    async fn start_then(
        options: &[&str],
        adjust: impl FnOnce(&OwnPulsar, &mut pulsar_gateway::Config),
    ) -> Rig {
        let (pulsar, faults, access) = Self::pulsar(options).await;
        let gateway = InProcessGateway::start_with(|c| {
            access.configure(c);
            adjust(&pulsar, c);
        })
        .await;
        Self::load(pulsar, faults, Gateway::InProcess(gateway)).await
    }

    /// `start` with the gateway binary in a process of its own, logging to `gateway.log` in its
    /// data directory.
    async fn start_process(options: &[&str]) -> Rig {
        let (pulsar, faults, access) = Self::pulsar(options).await;
        let dir = tempfile::tempdir().unwrap();
        let (kafka, admin) = (
            SocketAddr::from(([127, 0, 0, 1], e2e_tests::free_port())),
            SocketAddr::from(([127, 0, 0, 1], e2e_tests::free_port())),
        );
        let mut args = access.gateway_args();
        args.extend(["--log-level".into(), "info".into()]);
        let gateway = GatewayProcess::launch(
            env!("CARGO_BIN_EXE_gateway-under-test"),
            &dir.path().join("data"),
            kafka,
            admin,
            Some(&dir.path().join("gateway.log")),
            &args,
        );
        Self::load(pulsar, faults, Gateway::Process(gateway, dir)).await
    }

    /// A Pulsar of its own (with its proxy, unless `options` has `--direct`), and a fault proxy
    /// in front of the Pulsar proxy; the access for a gateway goes through the fault proxy.
    /// With `--direct` the fault proxy is in front of the broker, and carries only the lookups
    /// (their answers name the broker's own address).
    async fn pulsar(options: &[&str]) -> (OwnPulsar, FaultProxy, e2e_tests::TestPulsar) {
        // To see what an in-process gateway does: FAULTS_LOG=info,gateway_kafka=debug.
        if let Ok(filter) = std::env::var("FAULTS_LOG") {
            let text = pulsar_gateway::config::LogFormat::Text;
            let _ = pulsar_gateway::telemetry::init_logging(&filter, text);
        }
        let direct = options.contains(&"--direct");
        let mut options: Vec<String> = options
            .iter()
            .filter(|o| **o != "--direct")
            .map(|o| o.to_string())
            .collect();
        if !direct {
            options.push("--proxy".into());
        }
        let pulsar = tokio::task::spawn_blocking(move || {
            let options: Vec<&str> = options.iter().map(String::as_str).collect();
            OwnPulsar::start(&options)
        })
        .await
        .unwrap();
        let service = pulsar
            .var(if direct {
                "PULSAR_URL"
            } else {
                "PULSAR_PROXY_URL"
            })
            .expect("start printed the URL")
            .to_owned();
        let (scheme, hostport) = service.split_once("://").unwrap();
        let faults = FaultProxy::start(hostport.parse::<SocketAddr>().unwrap()).await;
        let mut access = pulsar.access();
        access.url = format!("{scheme}://{}", faults.addr());
        (pulsar, faults, access)
    }

    /// Waits for the gateway, makes the topic, exchange and queue, and starts the load.
    async fn load(pulsar: OwnPulsar, faults: FaultProxy, gateway: Gateway) -> Rig {
        e2e_tests::wait_readyz(gateway.admin(), 200, Duration::from_secs(60)).await;
        let mut rig = Rig {
            started: Instant::now(),
            pulsar,
            faults,
            gateway,
            topic: unique("faults").leak(),
            exchange: unique("faults-x"),
            queue: unique("faults-q"),
            seen: Arc::default(),
            producing: Arc::new(AtomicBool::new(true)),
            consuming: Arc::new(AtomicBool::new(true)),
            producers: Vec::new(),
            consumers: Vec::new(),
        };
        create_topic(&rig.gateway.bootstrap(), rig.topic, PARTITIONS).await;
        rig.declare_amqp().await;
        rig.start_load();
        rig.wait_flowing().await;
        assert!(
            rig.faults.accepted() > 0,
            "the gateway reaches Pulsar through the fault proxy"
        );
        rig
    }

    fn now(&self) -> Stamp {
        self.started.elapsed()
    }

    fn amqp_uri(&self) -> String {
        format!("amqp://guest:guest@{}/%2f", self.gateway.amqp())
    }

    async fn declare_amqp(&self) {
        let connection = Connection::connect(&self.amqp_uri(), ConnectionProperties::default())
            .await
            .expect("AMQP connect");
        let ch = connection.create_channel().await.unwrap();
        ch.exchange_declare(
            self.exchange.as_str().into(),
            ExchangeKind::Fanout,
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
        ch.queue_declare(
            self.queue.as_str().into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
        ch.queue_bind(
            self.queue.as_str().into(),
            self.exchange.as_str().into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
        let _ = connection.close(200, "declared".into()).await;
    }

    fn start_load(&mut self) {
        let bootstrap = self.gateway.bootstrap();
        let clock = Clock(self.started);
        let (seen, producing, consuming) = (&self.seen, &self.producing, &self.consuming);
        self.producers = vec![
            tokio::spawn(kafka_producer(
                bootstrap.clone(),
                self.topic,
                seen.clone(),
                producing.clone(),
                clock,
            )),
            tokio::spawn(amqp_publisher(
                self.amqp_uri(),
                self.exchange.clone(),
                seen.clone(),
                producing.clone(),
                clock,
            )),
        ];
        let (topic, seen_k, consuming_k) = (self.topic, seen.clone(), consuming.clone());
        self.consumers = vec![
            tokio::task::spawn_blocking(move || {
                kafka_group_member(&bootstrap, topic, &seen_k, &consuming_k, clock)
            }),
            tokio::spawn(amqp_consumer(
                self.amqp_uri(),
                self.queue.clone(),
                seen.clone(),
                consuming.clone(),
                clock,
            )),
        ];
    }

    /// Waits until all four clients have done something, so a fault hits a running system.
    async fn wait_flowing(&self) {
        let flowing = || {
            let s = self.seen.lock().unwrap();
            !s.kafka_acked.is_empty()
                && !s.kafka_read.is_empty()
                && s.amqp_published
                    .values()
                    .any(|(_, a)| matches!(a, Some((_, true))))
                && !s.amqp_read.is_empty()
        };
        let limit = Instant::now() + Duration::from_secs(120);
        while !flowing() {
            assert!(Instant::now() < limit, "the load never started flowing");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn readyz(&self) -> Option<u16> {
        http_status(self.gateway.admin(), "/readyz")
    }

    /// How long after `from` the gateway said `/readyz` `want`, polling up to `limit`.
    async fn readyz_turns(&self, want: u16, limit: Duration) -> Option<Duration> {
        let from = Instant::now();
        while from.elapsed() < limit {
            let admin = self.gateway.admin();
            if tokio::task::spawn_blocking(move || http_status(admin, "/readyz"))
                .await
                .unwrap()
                == Some(want)
            {
                return Some(from.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        None
    }

    /// How soon after `healed` each client made progress with something new, waiting up to a
    /// minute: (Kafka producer, group consumer, AMQP publisher, AMQP consumer).
    async fn resumed(&self, healed: Stamp) -> Resumption {
        let limit = Instant::now() + Duration::from_secs(90);
        loop {
            let r = {
                let s = self.seen.lock().unwrap();
                let max_before = |reads: &Vec<(Stamp, usize)>| {
                    reads
                        .iter()
                        .filter(|(t, _)| *t < healed)
                        .map(|(_, i)| *i)
                        .max()
                };
                let first_new = |reads: &Vec<(Stamp, usize)>| {
                    let before = max_before(reads);
                    reads
                        .iter()
                        .filter(|(t, i)| *t >= healed && before.is_none_or(|b| *i > b))
                        .map(|(t, _)| *t - healed)
                        .min()
                };
                Resumption {
                    kafka_producer: s
                        .kafka_acked
                        .values()
                        .filter(|(_, _, t)| *t >= healed)
                        .map(|(_, _, t)| *t - healed)
                        .min(),
                    kafka_consumer: first_new(&s.kafka_read),
                    amqp_publisher: s
                        .amqp_published
                        .values()
                        .filter(|(p, a)| *p >= healed && matches!(a, Some((_, true))))
                        .map(|(_, a)| a.unwrap().0 - healed)
                        .min(),
                    amqp_consumer: first_new(&s.amqp_read),
                }
            };
            if r.complete() || Instant::now() > limit {
                return r;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Stops the load, lets the consumers catch up, and checks that nothing acknowledged is lost.
    async fn finish(mut self, scenario: &str) -> Seen {
        tokio::time::sleep(Duration::from_secs(5)).await;
        self.producing.store(false, Ordering::Relaxed);
        for task in std::mem::take(&mut self.producers) {
            tokio::time::timeout(Duration::from_secs(180), task)
                .await
                .expect("the producers end")
                .unwrap();
        }
        // The consumers must read everything acknowledged or confirmed.
        let (kafka_want, amqp_want): (BTreeSet<usize>, BTreeSet<usize>) = {
            let s = self.seen.lock().unwrap();
            (
                s.kafka_acked.keys().copied().collect(),
                s.amqp_published
                    .iter()
                    .filter(|(_, (_, a))| matches!(a, Some((_, true))))
                    .map(|(i, _)| *i)
                    .collect(),
            )
        };
        let limit = Instant::now() + Duration::from_secs(120);
        loop {
            let (kafka_missing, amqp_missing) = {
                let s = self.seen.lock().unwrap();
                let kafka: BTreeSet<usize> = s.kafka_read.iter().map(|(_, i)| *i).collect();
                let amqp: BTreeSet<usize> = s.amqp_read.iter().map(|(_, i)| *i).collect();
                (
                    kafka_want.difference(&kafka).count(),
                    amqp_want.difference(&amqp).count(),
                )
            };
            if kafka_missing == 0 && amqp_missing == 0 {
                break;
            }
            assert!(
                Instant::now() < limit,
                "{scenario}: the consumers never read {kafka_missing} acknowledged Kafka records and {amqp_missing} confirmed AMQP messages"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        self.consuming.store(false, Ordering::Relaxed);
        for task in std::mem::take(&mut self.consumers) {
            let _ = tokio::time::timeout(Duration::from_secs(30), task).await;
        }
        let seen = std::mem::take(&mut *self.seen.lock().unwrap());
        // Every acknowledged record is stored at the offset its acknowledgement gave. A retry
        // that Pulsar's deduplication answered (DUPLICATE_SEQUENCE_NUMBER: written before) is
        // acknowledged without an offset; those must be stored somewhere.
        let (known, unknown): (Vec<_>, Vec<_>) =
            seen.kafka_acked.iter().partition(|(_, (_, o, _))| *o >= 0);
        let expected: HashMap<(i32, i64), usize> =
            known.iter().map(|(i, (p, o, _))| ((*p, *o), **i)).collect();
        let without_offset: BTreeSet<usize> = unknown.iter().map(|(i, _)| **i).collect();
        let bootstrap = self.gateway.bootstrap();
        let topic = self.topic;
        let stored = tokio::task::spawn_blocking(move || {
            read_back(&bootstrap, topic, &expected, &without_offset)
        })
        .await
        .unwrap();
        eprintln!(
            "{scenario}: {} Kafka records acknowledged without an offset (deduplicated retries)",
            unknown.len()
        );
        let kafka_duplicates = seen.kafka_read.len()
            - seen
                .kafka_read
                .iter()
                .map(|(_, i)| *i)
                .collect::<BTreeSet<_>>()
                .len();
        let amqp_duplicates = seen.amqp_read.len()
            - seen
                .amqp_read
                .iter()
                .map(|(_, i)| *i)
                .collect::<BTreeSet<_>>()
                .len();
        let nacked = seen
            .amqp_published
            .values()
            .filter(|(_, a)| matches!(a, Some((_, false))))
            .count();
        // Whatever was read was sent.
        assert!(seen
            .amqp_read
            .iter()
            .all(|(_, i)| seen.amqp_published.contains_key(i)));
        eprintln!(
            "{scenario}: Kafka {} acknowledged ({} failed), {stored} stored, group read {} ({kafka_duplicates} again); \
             AMQP {} confirmed ({nacked} nacked), consumer read {} ({amqp_duplicates} again); \
             client errors: kafka consumer {}, amqp publisher {}, amqp consumer {}",
            seen.kafka_acked.len(),
            seen.kafka_failed,
            seen.kafka_read.len(),
            amqp_want.len(),
            seen.amqp_read.len(),
            seen.kafka_consumer_errors.len(),
            seen.amqp_publisher_errors.len(),
            seen.amqp_consumer_errors.len(),
        );
        seen
    }
}

impl Drop for Rig {
    /// A failed test's clients stop too (the group member is a blocking thread, which the test's
    /// runtime would wait for forever).
    fn drop(&mut self) {
        self.producing.store(false, Ordering::Relaxed);
        self.consuming.store(false, Ordering::Relaxed);
    }
}

/// Reads the whole topic without a group and checks every acknowledged record is at its offset,
/// and that those acknowledged without one are somewhere; returns how many records it holds.
fn read_back(
    bootstrap: &str,
    topic: &str,
    expected: &HashMap<(i32, i64), usize>,
    without_offset: &BTreeSet<usize>,
) -> usize {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("group.id", unique("faults-read-back"))
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "100");
    if let Ok(debug) = std::env::var("FAULTS_RDKAFKA_DEBUG") {
        config.set("debug", debug);
    }
    let consumer: BaseConsumer = config.create().expect("read-back consumer");
    let mut tpl = rdkafka::TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(topic, p, rdkafka::Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut found: HashMap<(i32, i64), usize> = HashMap::new();
    // What is still to be seen, kept up to date (not counted again per record).
    let mut unseen: std::collections::HashSet<(i32, i64)> = expected.keys().copied().collect();
    let mut unseen_ids = without_offset.clone();
    let started = Instant::now();
    let limit = started + Duration::from_secs(120);
    while !unseen.is_empty() || !unseen_ids.is_empty() {
        if Instant::now() >= limit {
            // Where each partition got to, against what was acknowledged there.
            for p in 0..PARTITIONS {
                let read = found.keys().filter(|(q, _)| *q == p).map(|(_, o)| *o);
                let acked = expected.keys().filter(|(q, _)| *q == p).map(|(_, o)| *o);
                eprintln!(
                    "partition {p}: read {} up to offset {:?}; acknowledged {} up to {:?}",
                    read.clone().count(),
                    read.max(),
                    acked.clone().count(),
                    acked.max()
                );
            }
            let mut some: Vec<_> = unseen.iter().take(10).map(|k| (k, expected[k])).collect();
            some.sort();
            panic!(
                "reading the topic back: {} acknowledged records not found at their (partition, \
                 offset), e.g. {some:?} (record ids), and {} acknowledged without an offset",
                unseen.len(),
                unseen_ids.len()
            );
        }
        match consumer.poll(Duration::from_millis(500)) {
            Some(Ok(m)) => {
                let id = number(m.payload(), 'r');
                found.insert((m.partition(), m.offset()), id);
                unseen.remove(&(m.partition(), m.offset()));
                unseen_ids.remove(&id);
            }
            Some(Err(e)) => eprintln!("read-back: {e}"),
            None => {}
        }
    }
    for (at, id) in expected {
        assert_eq!(
            found[at], *id,
            "acknowledged record {id} at {at:?} holds another record"
        );
    }
    eprintln!(
        "read {} records back in {:?}",
        found.len(),
        started.elapsed()
    );
    found.len()
}

#[derive(Debug)]
struct Resumption {
    kafka_producer: Option<Duration>,
    kafka_consumer: Option<Duration>,
    amqp_publisher: Option<Duration>,
    amqp_consumer: Option<Duration>,
}

impl Resumption {
    fn complete(&self) -> bool {
        self.kafka_producer.is_some()
            && self.kafka_consumer.is_some()
            && self.amqp_publisher.is_some()
            && self.amqp_consumer.is_some()
    }

    /// Group consumers within a session timeout, AMQP clients within 30 s.
    fn assert_within_bounds(&self, scenario: &str) {
        eprintln!("{scenario}: resumed after the fault {self:?}");
        let within = |what: &str, got: Option<Duration>, bound: Duration| {
            let got = got.unwrap_or_else(|| panic!("{scenario}: the {what} never resumed"));
            assert!(
                got <= bound,
                "{scenario}: the {what} resumed only after {got:?} (bound {bound:?})"
            );
        };
        within("Kafka producer", self.kafka_producer, AMQP_RESUME);
        within("Kafka group consumer", self.kafka_consumer, SESSION_TIMEOUT);
        within("AMQP publisher", self.amqp_publisher, AMQP_RESUME);
        within("AMQP consumer", self.amqp_consumer, AMQP_RESUME);
    }
}

/// Pulsar (broker and proxy) frozen for 40 s: `/readyz` turns 503 within 15 s, every AMQP
/// publish made meanwhile is answered (ack or nack) within the operation timeout instead of
/// waiting for Pulsar, and all clients resume within 30 s of SIGCONT.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "a Pulsar of its own for minutes: GATEWAY_TEST_FAULTS=1, --include-ignored"]
async fn pulsar_frozen_for_40s() {
    asked();
    let rig = Rig::start(&[], |_| {}).await;
    let frozen = rig.now();
    let pulsar = &rig.pulsar;
    pulsar.signal("STOP");
    let not_ready = rig.readyz_turns(503, Duration::from_secs(40)).await;
    let left = Duration::from_secs(40).saturating_sub(rig.now() - frozen);
    tokio::time::sleep(left).await;
    pulsar.signal("CONT");
    let thawed = rig.now();
    let ready = rig.readyz_turns(200, Duration::from_secs(60)).await;
    eprintln!("frozen: /readyz 503 after {not_ready:?}, 200 again {ready:?} after SIGCONT");
    let not_ready = not_ready.expect("/readyz turns 503 while Pulsar is frozen");
    assert!(
        not_ready <= Duration::from_secs(15),
        "/readyz 503 only after {not_ready:?}"
    );
    assert!(ready.is_some(), "/readyz 200 again after SIGCONT");
    rig.resumed(thawed)
        .await
        .assert_within_bounds("frozen 40 s");
    let seen = rig.finish("frozen 40 s").await;
    // Publishes made while Pulsar was frozen were answered within the operation timeout (a
    // nack at worst), not when Pulsar came back.
    let slowest = seen
        .amqp_published
        .values()
        .filter(|(p, _)| *p >= frozen && *p < thawed)
        .map(|(p, a)| a.map_or(Duration::MAX, |(t, _)| t - *p))
        .max()
        .expect("publishes while frozen");
    eprintln!("frozen: slowest AMQP confirm for a publish made while frozen: {slowest:?}");
    assert!(
        slowest <= OPERATION_TIMEOUT + Duration::from_secs(10),
        "an AMQP publish made while Pulsar was frozen waited {slowest:?} for its confirm"
    );
}

/// The connection to Pulsar blackholed for 60 s (bytes stop both ways, nothing closes):
/// the keepalive drops it, `/readyz` turns 503 within 15 s, and everything resumes after.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "a Pulsar of its own for minutes: GATEWAY_TEST_FAULTS=1, --include-ignored"]
async fn connection_blackholed_for_60s() {
    asked();
    let rig = Rig::start(&[], |_| {}).await;
    let from = rig.now();
    rig.faults.blackhole();
    let not_ready = rig.readyz_turns(503, Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_secs(60).saturating_sub(rig.now() - from)).await;
    rig.faults.heal();
    let healed = rig.now();
    let ready = rig.readyz_turns(200, Duration::from_secs(60)).await;
    eprintln!("blackhole: /readyz 503 after {not_ready:?}, 200 again {ready:?} after healing");
    let not_ready = not_ready.expect("/readyz turns 503 while the connection is blackholed");
    assert!(
        not_ready <= Duration::from_secs(15),
        "/readyz 503 only after {not_ready:?}"
    );
    assert!(ready.is_some(), "/readyz 200 again after healing");
    rig.resumed(healed)
        .await
        .assert_within_bounds("blackhole 60 s");
    rig.finish("blackhole 60 s").await;
}

/// 200 ms added to every chunk in each direction for 2 minutes: slower, but nothing fails
/// for good and nothing is lost; `/readyz` stays 200.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "a Pulsar of its own for minutes: GATEWAY_TEST_FAULTS=1, --include-ignored"]
async fn latency_200ms_for_2_minutes() {
    asked();
    let rig = Rig::start(&[], |_| {}).await;
    rig.faults.set_latency(Duration::from_millis(200));
    let until = Instant::now() + Duration::from_secs(120);
    let mut not_ready = 0;
    while Instant::now() < until {
        if rig.readyz() != Some(200) {
            not_ready += 1;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    rig.faults.heal();
    let healed = rig.now();
    eprintln!("latency: /readyz was not 200 in {not_ready} of about 120 probes");
    rig.resumed(healed)
        .await
        .assert_within_bounds("latency 200 ms");
    rig.finish("latency 200 ms").await;
}

/// Every connection to Pulsar reset every 5 s for 2 minutes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "a Pulsar of its own for minutes: GATEWAY_TEST_FAULTS=1, --include-ignored"]
async fn connections_reset_every_5s_for_2_minutes() {
    asked();
    let rig = Rig::start(&[], |_| {}).await;
    let accepted = rig.faults.accepted();
    for _ in 0..24 {
        tokio::time::sleep(Duration::from_secs(5)).await;
        rig.faults.reset_all();
    }
    let healed = rig.now();
    eprintln!(
        "resets: the gateway opened {} connections during the resets",
        rig.faults.accepted() - accepted
    );
    assert!(
        rig.faults.accepted() - accepted >= 20,
        "the gateway reconnected after the resets"
    );
    rig.resumed(healed)
        .await
        .assert_within_bounds("resets every 5 s");
    rig.finish("resets every 5 s").await;
}

/// An idempotent producer: 20 records every 100 ms over the partitions, each delivery awaited
/// apart so that a slow one never holds up the next sends.
async fn kafka_producer(
    bootstrap: String,
    topic: &'static str,
    seen: Arc<Mutex<Seen>>,
    producing: Arc<AtomicBool>,
    clock: Clock,
) {
    let p = producer(&bootstrap, &[("enable.idempotence", "true")]);
    let mut next = 0usize;
    while producing.load(Ordering::Relaxed) {
        for _ in 0..20 {
            let i = next;
            next += 1;
            let payload = format!("r{i}");
            let Ok(delivery) = p.send_result(
                FutureRecord::to(topic)
                    .partition(i as i32 % PARTITIONS)
                    .key(payload.as_bytes())
                    .payload(payload.as_bytes()),
            ) else {
                seen.lock().unwrap().kafka_failed += 1;
                continue;
            };
            let seen = seen.clone();
            tokio::spawn(async move {
                let outcome = delivery.await.expect("delivery channel");
                let mut seen = seen.lock().unwrap();
                match outcome {
                    Ok(d) => {
                        seen.kafka_acked
                            .insert(i, (d.partition, d.offset, clock.now()));
                    }
                    Err(_) => seen.kafka_failed += 1,
                }
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // What is still in flight is delivered or failed before the producer goes.
    tokio::task::spawn_blocking(move || {
        rdkafka::producer::Producer::flush(&p, Duration::from_secs(150))
    })
    .await
    .unwrap()
    .expect("the producer's last records settle");
}

/// A consumer group member reading from the start.
fn kafka_group_member(
    bootstrap: &str,
    topic: &str,
    seen: &Mutex<Seen>,
    consuming: &AtomicBool,
    clock: Clock,
) {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("group.id", unique("faults-group"))
        .set("auto.offset.reset", "earliest")
        .set(
            "session.timeout.ms",
            SESSION_TIMEOUT.as_millis().to_string(),
        )
        .set("heartbeat.interval.ms", "2000");
    // FAULTS_RDKAFKA_DEBUG=cgrp,fetch shows what the group member does.
    if let Ok(debug) = std::env::var("FAULTS_RDKAFKA_DEBUG") {
        config.set("debug", debug);
    }
    let consumer: BaseConsumer = config.create().expect("group consumer");
    consumer.subscribe(&[topic]).unwrap();
    while consuming.load(Ordering::Relaxed) {
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Ok(m)) => {
                let id = number(m.payload(), 'r');
                seen.lock().unwrap().kafka_read.push((clock.now(), id));
            }
            Some(Err(e)) => seen
                .lock()
                .unwrap()
                .kafka_consumer_errors
                .push(e.to_string()),
        }
    }
}

/// A publisher with confirms, a message every 20 ms, reconnecting as clients do when their
/// connection ends.
async fn amqp_publisher(
    uri: String,
    exchange: String,
    seen: Arc<Mutex<Seen>>,
    producing: Arc<AtomicBool>,
    clock: Clock,
) {
    let mut next = 0usize;
    while producing.load(Ordering::Relaxed) {
        let published = async {
            let connection = Connection::connect(&uri, ConnectionProperties::default()).await?;
            let ch = connection.create_channel().await?;
            ch.confirm_select(ConfirmSelectOptions::default()).await?;
            while producing.load(Ordering::Relaxed) {
                let i = next;
                next += 1;
                seen.lock()
                    .unwrap()
                    .amqp_published
                    .insert(i, (clock.now(), None));
                let confirm = ch
                    .basic_publish(
                        exchange.as_str().into(),
                        "".into(),
                        BasicPublishOptions::default(),
                        format!("m{i}").as_bytes(),
                        BasicProperties::default().with_delivery_mode(2),
                    )
                    .await?;
                let seen = seen.clone();
                tokio::spawn(async move {
                    let acked = matches!(confirm.await, Ok(c) if c.is_ack());
                    if let Some(entry) = seen.lock().unwrap().amqp_published.get_mut(&i) {
                        entry.1 = Some((clock.now(), acked));
                    }
                });
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let _ = connection.close(200, "done".into()).await;
            Ok::<_, lapin::Error>(())
        }
        .await;
        if let Err(e) = published {
            seen.lock()
                .unwrap()
                .amqp_publisher_errors
                .push(e.to_string());
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

/// A consumer on the queue acknowledging each delivery, reconnecting likewise.
async fn amqp_consumer(
    uri: String,
    queue: String,
    seen: Arc<Mutex<Seen>>,
    consuming: Arc<AtomicBool>,
    clock: Clock,
) {
    while consuming.load(Ordering::Relaxed) {
        let consumed = async {
            let connection = Connection::connect(&uri, ConnectionProperties::default())
                .await
                .map_err(|e| e.to_string())?;
            let ch = connection
                .create_channel()
                .await
                .map_err(|e| e.to_string())?;
            ch.basic_qos(200, BasicQosOptions::default())
                .await
                .map_err(|e| e.to_string())?;
            let mut deliveries = ch
                .basic_consume(
                    queue.as_str().into(),
                    "".into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await
                .map_err(|e| e.to_string())?;
            while consuming.load(Ordering::Relaxed) {
                let delivery =
                    match tokio::time::timeout(Duration::from_millis(500), deliveries.next()).await
                    {
                        Err(_) => continue,
                        Ok(None) => return Err("the consumer was cancelled".to_owned()),
                        Ok(Some(d)) => d.map_err(|e| e.to_string())?,
                    };
                let id = number(Some(&delivery.data), 'm');
                delivery
                    .ack(BasicAckOptions::default())
                    .await
                    .map_err(|e| e.to_string())?;
                seen.lock().unwrap().amqp_read.push((clock.now(), id));
            }
            let _ = connection.close(200, "done".into()).await;
            Ok(())
        }
        .await;
        if let Err(e) = consumed {
            seen.lock().unwrap().amqp_consumer_errors.push(e);
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

/// The number in a payload `r17` or `m17`.
fn number(payload: Option<&[u8]>, prefix: char) -> usize {
    payload
        .and_then(|p| std::str::from_utf8(p).ok())
        .and_then(|p| p.strip_prefix(prefix))
        .and_then(|n| n.parse().ok())
        .expect("a payload of this test")
}

/// The gateway's token file replaced mid-run. Its first token expires after 45 s; it is
/// replaced by a valid one before that, and when Pulsar re-checks the expired credentials of
/// the open connections (`authenticationRefreshCheckSeconds`, 60 s), the gateway answers the
/// challenge with the new token: no connection is dropped and no client sees an error. Then a
/// refused token turns `/readyz` 503 within 15 s and a valid one turns it back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "a Pulsar of its own for minutes: GATEWAY_TEST_FAULTS=1, --include-ignored"]
async fn token_file_rotated_mid_run() {
    asked();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    let rotate = |token: &str| {
        let next = dir.path().join("token.next");
        std::fs::write(&next, token).unwrap();
        std::fs::rename(&next, &file).unwrap();
    };
    // Made with the key of the Pulsar started below, so it is made after it.
    let spec = format!("file://{}", file.display());
    let started = Instant::now();
    let pulsar_key = Arc::new(Mutex::new(None::<String>));
    let rig = {
        let key = pulsar_key.clone();
        let file = file.clone();
        // Straight to the broker: it is the broker that re-checks credentials.
        Rig::start_then(&["--auth", "--direct"], move |pulsar, c| {
            let secret = pulsar.var("PULSAR_TOKEN_SECRET_KEY").unwrap().to_owned();
            std::fs::write(&file, token_for(&secret, Some("45s"))).unwrap();
            *key.lock().unwrap() = Some(secret);
            c.backend.pulsar_token = Some(spec);
        })
        .await
    };
    let secret = pulsar_key.lock().unwrap().clone().unwrap();
    tokio::time::sleep(Duration::from_secs(10)).await;
    rotate(&token_for(&secret, None));
    let closed_before = rig.pulsar.logs().matches("Closed connection from").count();
    // Past the first token's expiry and a refresh check of Pulsar's.
    let refreshed_by = started + Duration::from_secs(45 + 60 + 15);
    tokio::time::sleep(refreshed_by.saturating_duration_since(Instant::now())).await;
    let logs = rig.pulsar.logs();
    let refreshed = logs.matches("Refreshed authentication credentials").count();
    let closed = logs.matches("Closed connection from").count() - closed_before;
    eprintln!("token: Pulsar re-authenticated {refreshed} connections with the new token; {closed} connections closed meanwhile");
    assert!(refreshed > 0, "Pulsar re-checked the gateway's credentials");
    assert_eq!(
        closed, 0,
        "no connection was dropped when the first token expired"
    );
    assert_eq!(rig.readyz(), Some(200));
    // Refused, then valid again.
    let valid = token_for(&secret, None);
    let (unsigned, _) = valid.rsplit_once('.').unwrap();
    rotate(&format!("{unsigned}.c2lnbmF0dXJlLW9mLWFub3RoZXIta2V5"));
    let not_ready = rig.readyz_turns(503, Duration::from_secs(30)).await;
    rotate(&valid);
    let ready = rig.readyz_turns(200, Duration::from_secs(30)).await;
    eprintln!("token: refused: /readyz 503 after {not_ready:?}; valid again: 200 after {ready:?}");
    assert!(
        not_ready.is_some_and(|d| d <= Duration::from_secs(15)),
        "a refused token turns /readyz 503 within 15 s"
    );
    assert!(
        ready.is_some_and(|d| d <= Duration::from_secs(15)),
        "a valid token turns /readyz 200 within 15 s"
    );
    let seen = rig.finish("token rotation").await;
    assert_eq!(seen.kafka_failed, 0, "no Kafka record failed");
    assert!(
        seen.amqp_published
            .values()
            .all(|(_, a)| !matches!(a, Some((_, false)))),
        "no AMQP message was nacked"
    );
}

/// A token for the superuser `admin` from Pulsar's own tool, signed with `secret`.
fn token_for(secret: &str, expiry: Option<&str>) -> String {
    e2e_tests::pulsar_token(secret, "admin", expiry)
}

/// A soak: `GATEWAY_TEST_SOAK_MINUTES` (30 by default) of the mixed load on a healthy Pulsar,
/// the gateway in a process of its own. Its resident memory is sampled every 30 s, written to
/// `target/soak-rss.csv`, and must level off: the last third's peak at most 10 % (plus 16 MiB)
/// above the middle third's. Nothing acknowledged may be lost. `scripts/soak` runs it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "a Pulsar of its own for 30 minutes: GATEWAY_TEST_SOAK_MINUTES, --include-ignored"]
async fn soak() {
    let minutes: u64 = std::env::var("GATEWAY_TEST_SOAK_MINUTES")
        .expect("set GATEWAY_TEST_SOAK_MINUTES to run the soak")
        .parse()
        .expect("GATEWAY_TEST_SOAK_MINUTES is a number of minutes");
    let rig = Rig::start_process(&[]).await;
    let Gateway::Process(process, _) = &rig.gateway else {
        unreachable!("the soak measures a gateway process")
    };
    let mut samples = Vec::new();
    let mut csv = String::from("seconds,rss_kib,kafka_acknowledged,amqp_confirmed\n");
    let until = Instant::now() + Duration::from_secs(minutes * 60);
    while Instant::now() < until {
        let rss = process.rss_kib().expect("the gateway runs");
        let (kafka, amqp) = {
            let s = rig.seen.lock().unwrap();
            let confirmed = s
                .amqp_published
                .values()
                .filter(|(_, a)| matches!(a, Some((_, true))))
                .count();
            (s.kafka_acked.len(), confirmed)
        };
        let at = rig.now().as_secs();
        csv.push_str(&format!("{at},{rss},{kafka},{amqp}\n"));
        eprintln!("soak: {at:>5} s  RSS {:>7.1} MiB  Kafka {kafka:>8} acknowledged  AMQP {amqp:>8} confirmed", rss as f64 / 1024.0);
        samples.push(rss);
        tokio::time::sleep(Duration::from_secs(30)).await;
    }
    let out = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/soak-rss.csv");
    std::fs::write(out, &csv).unwrap();
    let third = samples.len() / 3;
    assert!(third > 0, "too short a soak to judge");
    let peak = |part: &[u64]| part.iter().copied().max().unwrap();
    let (middle, last) = (
        peak(&samples[third..2 * third]),
        peak(&samples[2 * third..]),
    );
    eprintln!(
        "soak: peak RSS {} MiB in the middle third, {} MiB in the last",
        middle / 1024,
        last / 1024
    );
    assert!(
        last as f64 <= middle as f64 * 1.10 + 16.0 * 1024.0,
        "the gateway's memory kept growing: {} MiB, then {} MiB",
        middle / 1024,
        last / 1024
    );
    rig.finish("soak").await;
}
