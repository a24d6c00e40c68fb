//! A network outage between the gateway and Pulsar, seen by a consumer group: the gateway's
//! connections to Pulsar (binary protocol and admin API) pass through fault proxies
//! (`e2e_tests::fault_proxy`) that blackhole them (no byte passes either way and nobody is told, as when packets are
//! dropped), while the Kafka client still reaches the gateway. After the outage ends, the group's
//! live member must carry on with its assignment: it was never silent, the gateway was.
//!
//! Before the fix, the member was expelled twice: during the outage, because its heartbeats
//! waited on its connection behind a commit whose write Pulsar never confirmed, and 45 s after
//! the outage, when the reloaded state had brought it back beside its new incarnation (librdkafka
//! had timed its own session out and rejoined under a new id). The group read nothing for 45 s
//! after Pulsar was back.
//!
//! Only when asked: `GATEWAY_TEST_PULSAR_OUTAGE=1`, `PULSAR_ADMIN_URL` and `PULSAR_PROXY_URL`
//! (from `compat-suites/pulsar/start --proxy`: the gateway's lookups through a Pulsar proxy
//! answer "connect through the service URL", so every binary connection passes the blackhole),
//! and `--include-ignored`. It takes about 80 s; `OUTAGE_DEBUG=1` prints librdkafka's group and
//! protocol debug log.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use e2e_tests::fault_proxy::FaultProxy;
use e2e_tests::rdkafka_util::*;
use e2e_tests::{free_port, GatewayProcess};
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::Message;
use rdkafka::producer::FutureRecord;
use rdkafka::{ClientConfig, ClientContext};

fn address(url: &str) -> SocketAddr {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    rest.trim_end_matches('/').parse().expect("host:port")
}

/// What the consumer saw, with times since the test began.
#[derive(Default)]
struct Seen {
    events: Vec<(Duration, String)>,
    records: Vec<(Duration, i32, i64, Vec<u8>)>,
}

struct Recorder {
    began: Instant,
    seen: Arc<Mutex<Seen>>,
}

impl Recorder {
    fn note(&self, what: String) {
        let at = self.began.elapsed();
        eprintln!("[{:6.1}s] consumer: {what}", at.as_secs_f64());
        self.seen.lock().unwrap().events.push((at, what));
    }
}

impl ClientContext for Recorder {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        if (level as i32) <= (RDKafkaLogLevel::Warning as i32) {
            self.note(format!("log {fac}: {message}"));
        } else if std::env::var("OUTAGE_DEBUG").is_ok() {
            eprintln!(
                "[{:6.1}s] debug {fac}: {message}",
                self.began.elapsed().as_secs_f64()
            );
        }
    }
}

impl ConsumerContext for Recorder {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let what = match rebalance {
            Rebalance::Assign(tpl) => format!("assigned {} partitions", tpl.count()),
            Rebalance::Revoke(tpl) => format!("revoked {} partitions", tpl.count()),
            Rebalance::Error(e) => format!("rebalance error {e}"),
        };
        self.note(what);
    }
}

/// One member with librdkafka's defaults (45 s session, 3 s heartbeats, auto-commit every 5 s)
/// keeps consuming through a 60 s outage between the gateway and Pulsar; once Pulsar can be
/// reached again it must read new records within seconds, without losing its assignment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "blackholes the gateway's connections to a real Pulsar for 60 s: GATEWAY_TEST_PULSAR_OUTAGE=1 with PULSAR_PROXY_URL and PULSAR_ADMIN_URL, run with --include-ignored"]
async fn a_live_member_keeps_its_assignment_through_a_pulsar_outage() {
    assert_eq!(
        std::env::var("GATEWAY_TEST_PULSAR_OUTAGE").as_deref(),
        Ok("1"),
        "set GATEWAY_TEST_PULSAR_OUTAGE=1 to run this test: it needs a Pulsar with a proxy"
    );
    let pulsar = std::env::var("PULSAR_PROXY_URL").expect("PULSAR_PROXY_URL (start --proxy)");
    let admin = std::env::var("PULSAR_ADMIN_URL").expect("PULSAR_ADMIN_URL");
    let binary_hole = FaultProxy::start(address(&pulsar)).await;
    let admin_hole = FaultProxy::start(address(&admin)).await;

    let data = tempfile::tempdir().unwrap();
    let log = data.path().join("gateway.log");
    let kafka = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let admin_listen = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let state_topic = e2e_tests::own_group_state(data.path());
    let extra: Vec<String> = [
        "--backend",
        "pulsar",
        "--pulsar-url",
        &format!("pulsar://{}", binary_hole.addr()),
        "--pulsar-admin-url",
        &format!("http://{}", admin_hole.addr()),
        "--kafka-group-state-topic",
        &state_topic,
        "--log-level",
        "info",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let gateway = GatewayProcess::start_with_args(
        env!("CARGO_BIN_EXE_gateway-under-test"),
        data.path(),
        kafka,
        admin_listen,
        Some(&log),
        &extra,
    );
    let bootstrap = gateway.kafka.to_string();
    let topic: &'static str = unique("outage").leak();
    create_topic(&bootstrap, topic, 2).await;

    // A record every 100 ms, whose value is the time it was sent (ms since the test began).
    let began = Instant::now();
    let p = producer(&bootstrap, &[("message.timeout.ms", "300000")]);
    let producing = tokio::spawn(async move {
        for i in 0.. {
            let sent = began.elapsed().as_millis().to_string();
            let key = i.to_string();
            let record = FutureRecord::to(topic).key(&key).payload(&sent);
            // Queued without waiting for delivery, so sending goes on through the outage.
            let _ = p.send_result(record);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });

    let seen = Arc::new(Mutex::new(Seen::default()));
    let recorder = Recorder {
        began,
        seen: seen.clone(),
    };
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let consuming = {
        let (bootstrap, seen, stop) = (bootstrap.clone(), seen.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut config = ClientConfig::new();
            config
                .set("bootstrap.servers", &bootstrap)
                .set("group.id", unique("outage-group"))
                .set("auto.offset.reset", "earliest")
                .set_log_level(RDKafkaLogLevel::Debug);
            if std::env::var("OUTAGE_DEBUG").is_ok() {
                config.set("debug", "cgrp,protocol");
            }
            let consumer: BaseConsumer<Recorder> =
                config.create_with_context(recorder).expect("consumer");
            consumer.subscribe(&[topic]).expect("subscribe");
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match consumer.poll(Duration::from_millis(100)) {
                    Some(Ok(m)) => {
                        let value = m.payload().unwrap_or_default().to_vec();
                        seen.lock().unwrap().records.push((
                            began.elapsed(),
                            m.partition(),
                            m.offset(),
                            value,
                        ));
                    }
                    Some(Err(e)) => consumer.context().note(format!("error {e}")),
                    None => {}
                }
            }
        })
    };

    let records = |seen: &Arc<Mutex<Seen>>| seen.lock().unwrap().records.len();
    let warm = Instant::now();
    while records(&seen) < 100 {
        assert!(
            warm.elapsed() < Duration::from_secs(60),
            "the member consumes before the outage"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(5)).await;

    let cut_at = began.elapsed();
    eprintln!("[{:6.1}s] outage begins", cut_at.as_secs_f64());
    binary_hole.blackhole();
    admin_hole.blackhole();
    tokio::time::sleep(Duration::from_secs(60)).await;
    binary_hole.heal();
    admin_hole.heal();
    let healed_at = began.elapsed();
    eprintln!("[{:6.1}s] outage ends", healed_at.as_secs_f64());

    // The first record sent after the outage that the member reads, and when.
    let sent_after = healed_at.as_millis();
    let resumed = loop {
        let found = seen
            .lock()
            .unwrap()
            .records
            .iter()
            .find(|(_, _, _, v)| {
                std::str::from_utf8(v)
                    .ok()
                    .and_then(|s| s.parse::<u128>().ok())
                    .is_some_and(|sent| sent >= sent_after)
            })
            .map(|(at, ..)| *at);
        if let Some(at) = found {
            break Some(at);
        }
        if began.elapsed() > healed_at + Duration::from_secs(120) {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // Closing the consumer revokes its partitions too: only what came before counts.
    let stopped_at = began.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    consuming.join().unwrap();
    producing.abort();
    drop(gateway);

    let gateway_log = std::fs::read_to_string(&log).unwrap_or_default();
    eprintln!("---- gateway log (groups and leases) ----");
    for line in gateway_log.lines().filter(|l| {
        ["group", "lease", "member", "coordinat", "offsets", "Pulsar"]
            .iter()
            .any(|w| l.contains(w))
    }) {
        eprintln!("{line}");
    }
    let seen = seen.lock().unwrap();
    let lost: Vec<&String> = seen
        .events
        .iter()
        .filter(|(at, what)| {
            *at > cut_at
                && *at < stopped_at
                && (what.contains("SESSTMOUT") || what.contains("revoked") || what.contains("lost"))
        })
        .map(|(_, what)| what)
        .collect();
    let expelled: Vec<&str> = gateway_log
        .lines()
        .filter(|l| l.contains("removing member"))
        .collect();
    let resumed_after = resumed.map(|at| at - healed_at);
    eprintln!("new records read {resumed_after:?} after the outage; lost: {lost:?}");
    assert!(
        expelled.is_empty(),
        "the gateway expels no member: {expelled:?}"
    );
    assert!(
        resumed_after.is_some_and(|d| d < Duration::from_secs(20)),
        "the member reads new records within 20 s of the outage's end (took {resumed_after:?})"
    );
    assert!(
        lost.is_empty(),
        "the member keeps its assignment through the outage: {lost:?}"
    );
}
