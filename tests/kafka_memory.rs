//! The gateway's memory bounds, end to end (issue 13): a Kafka consumer reading large records
//! from many partitions must not make the gateway hold more than its fetch asks for, whatever the
//! backend pushes ahead. Also a throughput measurement of sequential fetches (ignored: a
//! benchmark, not a timed test), so that the bounds can be checked not to slow reading down.
//!
//! Runs on the embedded backend, or on a real Pulsar with `GATEWAY_TEST_BACKEND=pulsar`, where
//! readers are Pulsar non-durable subscriptions that the broker pushes entries to.
//! `GATEWAY_UNDER_TEST_BIN` runs another gateway binary (e.g. one built before a change).

use std::time::{Duration, Instant};

use e2e_tests::rdkafka_util::*;
use e2e_tests::{free_port, test_pulsar, GatewayProcess, TestPulsar};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::FutureRecord;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

const GATEWAY_BIN: &str = env!("CARGO_BIN_EXE_gateway-under-test");

fn gateway_bin() -> String {
    std::env::var("GATEWAY_UNDER_TEST_BIN").unwrap_or_else(|_| GATEWAY_BIN.to_owned())
}

/// A `kB` field of `/proc/<pid>/status` (`VmRSS`, `VmHWM`), in KiB.
fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("process status");
    status
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{field}:")))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// SIGTERM, and waits for the drain to finish.
fn stop(gateway: &mut GatewayProcess) {
    let status = std::process::Command::new("kill")
        .args(["-TERM", &gateway.pid().to_string()])
        .status()
        .expect("kill -TERM");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    while gateway.is_running() {
        assert!(Instant::now() < deadline, "the gateway did not stop");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn addresses() -> (std::net::SocketAddr, std::net::SocketAddr) {
    let kafka = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let admin = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    (kafka, admin)
}

/// Writes `count` records of `value` round-robin over `partitions`.
async fn fill(bootstrap: &str, topic: &str, partitions: i32, count: usize, value: &[u8]) {
    let producer = producer(
        bootstrap,
        &[("linger.ms", "5"), ("message.timeout.ms", "120000")],
    );
    let mut pending = Vec::new();
    for i in 0..count {
        let record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic)
            .partition(i as i32 % partitions)
            .payload(value);
        let mut record = record;
        let delivery = loop {
            match producer.send_result(record) {
                Ok(delivery) => break delivery,
                Err((_, back)) => {
                    record = back;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        };
        pending.push(delivery);
        if pending.len() >= 5_000 {
            for d in pending.drain(..) {
                d.await.unwrap().expect("record delivered");
            }
        }
    }
    for d in pending {
        d.await.unwrap().expect("record delivered");
    }
}

fn reader(bootstrap: &str, extra: &[(&str, &str)]) -> BaseConsumer {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("group.id", unique("memory"))
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "100");
    for (k, v) in extra {
        config.set(*k, *v);
    }
    config.create().expect("consumer")
}

fn assign_from_start(consumer: &BaseConsumer, topic: &str, partitions: i32) {
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
}

/// The next record, skipping librdkafka's "no group" notice; panics on any fetch error.
fn next_record(consumer: &BaseConsumer) -> Option<usize> {
    match consumer.poll(Duration::from_millis(200)) {
        None => None,
        Some(Ok(m)) => Some(m.payload().map_or(0, <[u8]>::len)),
        Some(Err(rdkafka::error::KafkaError::Subscription(_))) => None,
        Some(Err(e)) => panic!("consume failed: {e}"),
    }
}

/// 16 partitions of 512 KiB records, read by a consumer that asks for little at a time
/// (`fetch.max.bytes` 1 MiB) and pauses for 5 s a quarter of the way, as a slow application
/// does (by then every partition has a reader). Whatever the backend would push ahead, the
/// gateway holds about what the fetches ask for: a fresh gateway's peak RSS while reading the
/// 256 MiB stays within 128 MiB of its RSS before. Before readers' prefetch was bounded in
/// bytes, each Pulsar reader was granted 1,000 message permits, and the broker pushed the rest
/// of every partition into the gateway while the consumer paused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reading_large_records_from_many_partitions_keeps_memory_bounded() {
    const PARTITIONS: i32 = 16;
    const PER_PARTITION: usize = 32;
    const SIZE: usize = 512 * 1024;
    let total = PARTITIONS as usize * PER_PARTITION;
    let data = tempfile::tempdir().unwrap();
    let (kafka, admin) = addresses();
    let bootstrap = kafka.to_string();
    let topic: &'static str = unique("large-records").leak();
    {
        let mut writer = GatewayProcess::start(&gateway_bin(), data.path(), kafka, admin);
        create_topic(&bootstrap, topic, PARTITIONS).await;
        fill(&bootstrap, topic, PARTITIONS, total, &vec![0x5a; SIZE]).await;
        // Stopped cleanly: after a SIGKILL the embedded store's recovery on the next start
        // would read everything, and weigh on the next process's peak.
        stop(&mut writer);
    }
    // A fresh process: its peak RSS is only what reading took.
    let gateway = GatewayProcess::start(&gateway_bin(), data.path(), kafka, admin);
    let pid = gateway.pid();
    let before = status_kib(pid, "VmRSS");
    let consumer = reader(
        &bootstrap,
        &[
            ("fetch.max.bytes", "1048576"),
            ("max.partition.fetch.bytes", "1048576"),
            // librdkafka's own read-ahead, so that it stops fetching while the application
            // pauses.
            ("queued.max.messages.kbytes", "1024"),
            // ... and fetches again soon after the application took from its queue.
            ("fetch.queue.backoff.ms", "10"),
        ],
    );
    let (read, paused_rss) = tokio::task::spawn_blocking(move || {
        assign_from_start(&consumer, topic, PARTITIONS);
        let deadline = Instant::now() + Duration::from_secs(180);
        let mut read = 0usize;
        let mut paused_rss = None;
        while read < total && Instant::now() < deadline {
            let Some(len) = next_record(&consumer) else {
                continue;
            };
            assert_eq!(len, SIZE, "a record came back whole");
            read += 1;
            if read == total / 4 {
                // The application is busy: the readers stay open with nothing taken.
                std::thread::sleep(Duration::from_secs(5));
                paused_rss = Some(status_kib(pid, "VmRSS"));
            }
        }
        (read, paused_rss.unwrap_or(0))
    })
    .await
    .unwrap();
    let peak = status_kib(pid, "VmHWM");
    eprintln!(
        "RSS before reading {} MiB, after a 5 s pause a quarter in {} MiB, peak {} MiB ({} records of {} KiB on {} partitions)",
        before / 1024,
        paused_rss / 1024,
        peak / 1024,
        total,
        SIZE / 1024,
        PARTITIONS
    );
    assert_eq!(read, total, "every record was read");
    assert!(
        peak.saturating_sub(before) < 128 * 1024,
        "the gateway's peak RSS grew by {} MiB while reading",
        peak.saturating_sub(before) / 1024
    );
}

/// The reader subscriptions (`pulsar-gateway-reader-*`, non-durable: they go with their
/// consumer) on the partitions of `topic` in the default namespace.
fn reader_subscriptions(pulsar: &TestPulsar, topic: &str, partitions: i32) -> usize {
    (0..partitions)
        .map(|p| {
            let path = format!("/admin/v2/persistent/public/default/{topic}-partition-{p}/stats");
            let (status, body) = pulsar.admin_call("GET", &path, "");
            assert_eq!(status, 200, "{path}: {body}");
            let stats: serde_json::Value = serde_json::from_str(&body).unwrap();
            stats["subscriptions"]
                .as_object()
                .map_or(0, |subscriptions| {
                    subscriptions
                        .keys()
                        .filter(|name| name.starts_with("pulsar-gateway-reader-"))
                        .count()
                })
        })
        .sum()
}

/// With `kafka.max_cached_readers` 2, a consumer of 6 partitions that pauses them leaves at
/// most 2 readers, so at most 2 Pulsar reader subscriptions: the readers the cache drops close
/// their consumers. When the consumer goes, so do the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a real Pulsar: GATEWAY_TEST_BACKEND=pulsar with PULSAR_URL/PULSAR_ADMIN_URL, run with --include-ignored"]
async fn readers_beyond_the_instance_cap_close_their_pulsar_subscriptions() {
    let pulsar = test_pulsar().expect("GATEWAY_TEST_BACKEND=pulsar");
    const PARTITIONS: i32 = 6;
    let data = tempfile::tempdir().unwrap();
    let (kafka, admin) = addresses();
    let bootstrap = kafka.to_string();
    let _gateway = GatewayProcess::start_with_args(
        &gateway_bin(),
        data.path(),
        kafka,
        admin,
        None,
        &["--kafka-max-cached-readers".into(), "2".into()],
    );
    let topic: &'static str = unique("reader-cap").leak();
    create_topic(&bootstrap, topic, PARTITIONS).await;
    fill(&bootstrap, topic, PARTITIONS, 600, &[0x62; 100]).await;
    let consumer = reader(&bootstrap, &[]);
    let consumer = tokio::task::spawn_blocking(move || {
        assign_from_start(&consumer, topic, PARTITIONS);
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut read = 0;
        while read < 600 && Instant::now() < deadline {
            read += usize::from(next_record(&consumer).is_some());
        }
        assert_eq!(read, 600, "every record was read");
        let assignment = consumer.assignment().unwrap();
        consumer.pause(&assignment).unwrap();
        // Fetches already sent come back; then the connection is idle.
        let quiet = Instant::now() + Duration::from_secs(2);
        while Instant::now() < quiet {
            let _ = next_record(&consumer);
        }
        consumer
    })
    .await
    .unwrap();
    let cached = reader_subscriptions(&pulsar, topic, PARTITIONS);
    eprintln!("reader subscriptions while paused: {cached}");
    assert!(cached <= 2, "{cached} readers open with a cap of 2");
    drop(consumer);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left = reader_subscriptions(&pulsar, topic, PARTITIONS);
        if left == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{left} reader subscriptions left after the consumer closed"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Sequential fetch throughput (a benchmark: run with `--ignored --nocapture`): 200,000 records
/// of 100 bytes on one partition (`THROUGHPUT_RECORDS`, `THROUGHPUT_BYTES`), read three times
/// from the start by fresh consumers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark; prints records per second"]
async fn sequential_fetch_throughput() {
    let total: usize = std::env::var("THROUGHPUT_RECORDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(200_000);
    let size: usize = std::env::var("THROUGHPUT_BYTES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(100);
    let data = tempfile::tempdir().unwrap();
    let (kafka, admin) = addresses();
    let bootstrap = kafka.to_string();
    let gateway = GatewayProcess::start(&gateway_bin(), data.path(), kafka, admin);
    let topic: &'static str = unique("throughput").leak();
    create_topic(&bootstrap, topic, 1).await;
    let started = Instant::now();
    fill(&bootstrap, topic, 1, total, &vec![0x61; size]).await;
    eprintln!(
        "produced {total} records of {size} bytes in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    for run in 0..3 {
        let consumer = reader(&bootstrap, &[]);
        let (read, took) = tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            assign_from_start(&consumer, topic, 1);
            let deadline = started + Duration::from_secs(300);
            let mut read = 0usize;
            while read < total && Instant::now() < deadline {
                if next_record(&consumer).is_some() {
                    read += 1;
                }
            }
            (read, started.elapsed())
        })
        .await
        .unwrap();
        assert_eq!(read, total, "every record was read");
        eprintln!(
            "run {run}: read {read} records in {:.2} s: {:.0} records/s; gateway peak RSS {} MiB",
            took.as_secs_f64(),
            read as f64 / took.as_secs_f64(),
            status_kib(gateway.pid(), "VmHWM") / 1024
        );
    }
}
