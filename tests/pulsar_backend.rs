//! Pulsar-only end-to-end tests with librdkafka (all `#[ignore]`: run them with
//! `GATEWAY_TEST_BACKEND=pulsar`, `PULSAR_URL`, `PULSAR_ADMIN_URL` and `--include-ignored`):
//! messages a Java Pulsar producer wrote, read back through the gateway, and the gateway reaching
//! Pulsar through a Pulsar proxy (`PULSAR_PROXY_URL`, from `compat-suites/pulsar/start --proxy`).

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use e2e_tests::rdkafka_util::*;
use e2e_tests::{test_pulsar, InProcessGateway};
use gateway_core::MessageId;
use gateway_kafka::offsets::to_offset;
use rdkafka::consumer::Consumer;

const NEEDS_PULSAR: &str =
    "GATEWAY_TEST_BACKEND=pulsar names the Pulsar (PULSAR_URL, PULSAR_ADMIN_URL) the Java producer writes to";

/// One message of `compat-suites/pulsar-interop-java/produce-fixture`: where it went, the id the
/// Java client's receipt gave, and the Kafka record it must come back as.
#[derive(Debug)]
struct Written {
    partition: i32,
    ledger: u64,
    entry: u64,
    /// -1 for a message sent without batching.
    batch_index: i32,
    record: Expected,
}

/// `x` + hex is bytes (`x` alone is empty), `-` is null.
fn fixture_bytes(field: &str) -> Option<Vec<u8>> {
    if field == "-" {
        return None;
    }
    let hex = field
        .strip_prefix('x')
        .unwrap_or_else(|| panic!("bad fixture field {field}"));
    Some(
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
            .collect(),
    )
}

fn parse_fixture_line(line: &str) -> Written {
    let f: Vec<&str> = line.split(' ').collect();
    assert_eq!(f.len(), 9, "fixture line {line:?}");
    let event_time: Option<i64> = (f[6] != "-").then(|| f[6].parse().unwrap());
    let publish_time: i64 = f[7].parse().unwrap();
    let headers = if f[8] == "-" {
        Vec::new()
    } else {
        f[8].split(',')
            .map(|kv| {
                let (k, v) = kv.split_once('=').expect("key=value");
                let k = String::from_utf8(fixture_bytes(k).unwrap()).expect("UTF-8 property key");
                (k, fixture_bytes(v))
            })
            .collect()
    };
    Written {
        partition: f[0].parse().unwrap(),
        ledger: f[1].parse().unwrap(),
        entry: f[2].parse().unwrap(),
        batch_index: f[3].parse().unwrap(),
        record: Expected {
            key: fixture_bytes(f[4]),
            value: fixture_bytes(f[5]),
            headers,
            // Pulsar's event time is the Kafka timestamp; without one, the publish time.
            timestamp: event_time.unwrap_or(publish_time),
        },
    }
}

/// Runs the Java Pulsar producer (`produce-fixture`) on `topic` and returns what it wrote.
fn java_produce(topic: &str, args: &[&str]) -> Vec<Written> {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../compat-suites/pulsar-interop-java/produce-fixture"
    );
    let out = Command::new(script)
        .args(args)
        .arg(topic)
        .output()
        .expect("run produce-fixture (needs java and mvn)");
    assert!(
        out.status.success(),
        "produce-fixture {args:?} {topic} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("UTF-8 output")
        .lines()
        .map(parse_fixture_line)
        .collect()
}

/// The Kafka offset `offsets.rs` derives from a Java receipt; an unbatched message (-1) is index 0.
fn kafka_offset(w: &Written) -> i64 {
    to_offset(MessageId {
        ledger: w.ledger,
        entry: w.entry,
        batch_index: w.batch_index.max(0) as u32,
    })
    .expect("message id fits offset encoding v1")
}

/// A Java Pulsar producer (4.0.7), batched and unbatched, on partitioned and non-partitioned
/// topics, with several codecs: librdkafka reads every message through the gateway, in order, at
/// the offset derived from its Pulsar message id, with its key, value (tombstones included),
/// properties as headers and event (or publish) time as timestamp; the high watermark is the
/// last offset + 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a real Pulsar, java and mvn: GATEWAY_TEST_BACKEND=pulsar with PULSAR_URL/PULSAR_ADMIN_URL, run with --include-ignored"]
async fn java_pulsar_producer_read_by_rdkafka() {
    test_pulsar().expect(NEEDS_PULSAR);
    let gw = InProcessGateway::start().await;
    let bootstrap = gw.bootstrap();
    // (name, partitions, batched, codec); 0 partitions = a non-partitioned topic (Kafka partition 0).
    let cases: [(&str, i32, bool, &str); 5] = [
        ("batched-partitioned", 3, true, "LZ4"),
        ("unbatched-partitioned", 2, false, "ZLIB"),
        ("batched-single", 0, true, "ZSTD"),
        ("unbatched-single", 0, false, "NONE"),
        ("batched-zlib", 2, true, "ZLIB"),
    ];
    // The JVMs start at the same time: they spend most of their time starting up.
    let runs: Vec<_> = cases
        .iter()
        .map(|&(name, partitions, batched, codec)| {
            let topic = unique(&format!("java-{name}"));
            let mut args = vec![
                "--partitions".to_owned(),
                partitions.to_string(),
                "--compression".to_owned(),
                codec.to_owned(),
                "--messages".to_owned(),
                "400".to_owned(),
            ];
            if !batched {
                args.push("--unbatched".to_owned());
            }
            let t = topic.clone();
            let run = std::thread::spawn(move || {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                java_produce(&t, &args)
            });
            (name, partitions.max(1), batched, topic, run)
        })
        .collect();
    for (name, partitions, batched, topic, run) in runs {
        let written = run.join().expect("fixture thread");
        assert_eq!(written.len(), 400, "{name}: fixture output");
        // The fixture must really have written what this case is about.
        if batched {
            assert!(
                written.iter().any(|w| w.batch_index > 0),
                "{name}: no message landed inside a batch"
            );
        } else {
            assert!(
                written.iter().all(|w| w.batch_index == -1),
                "{name}: unbatched messages carry batch indexes"
            );
        }
        assert!(written.iter().any(|w| w.record.value.is_none()));
        assert!(written.iter().any(|w| w.record.key.is_none()));

        let mut want: BTreeMap<i32, Vec<&Written>> = BTreeMap::new();
        for w in &written {
            want.entry(w.partition).or_default().push(w);
        }
        assert_eq!(
            want.len(),
            partitions as usize,
            "{name}: every partition written"
        );

        let (b, t) = (bootstrap.clone(), topic.clone());
        let total = written.len();
        let (got, watermarks) = tokio::task::spawn_blocking(move || {
            let got = consume_partitions(&b, &t, partitions, total, Duration::from_secs(60));
            let c = consumer(&b);
            let watermarks: Vec<(i64, i64)> = (0..partitions)
                .map(|p| {
                    e2e_tests::rdkafka_util::retry_retired_broker(|| {
                        c.fetch_watermarks(&t, p, Duration::from_secs(10))
                    })
                    .expect("watermarks")
                })
                .collect();
            (got, watermarks)
        })
        .await
        .unwrap();
        let mut got_by_partition: BTreeMap<i32, Vec<(i64, Expected)>> = BTreeMap::new();
        for (p, offset, record) in got {
            got_by_partition
                .entry(p)
                .or_default()
                .push((offset, record));
        }
        for (p, want) in &want {
            let got = got_by_partition.remove(p).unwrap_or_default();
            assert_eq!(
                got.len(),
                want.len(),
                "{name}: partition {p} consumed {} of {} messages",
                got.len(),
                want.len()
            );
            let mut previous = -1;
            for ((offset, record), w) in got.iter().zip(want) {
                let where_ = format!(
                    "{name} partition {p}, message id {}:{}:{}",
                    w.ledger, w.entry, w.batch_index
                );
                assert_eq!(*offset, kafka_offset(w), "{where_}: offset");
                assert!(*offset > previous, "{where_}: offsets must increase");
                previous = *offset;
                assert_eq!(record, &w.record, "{where_}: record");
            }
            let last = kafka_offset(want.last().unwrap());
            assert_eq!(
                watermarks[*p as usize].1,
                last + 1,
                "{name}: partition {p} high watermark"
            );
        }
        assert!(got_by_partition.is_empty(), "{name}: unexpected partitions");
        eprintln!(
            "{name}: {total} messages over {partitions} partition(s) read back, largest batch index {}",
            written.iter().map(|w| w.batch_index).max().unwrap()
        );
    }
}

/// The value of an unlabelled-or-labelled Prometheus sample `name` (first match), from a Pulsar
/// proxy's `/metrics/`.
fn proxy_metric(web_url: &str, name: &str) -> f64 {
    let out = Command::new("curl")
        .args(["-sf", "-m", "10", &format!("{web_url}/metrics/")])
        .output()
        .expect("curl");
    assert!(out.status.success(), "GET {web_url}/metrics/ failed");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .and_then(|l| l.rsplit(' ').next())
        .map(|v| v.parse().expect("metric value"))
        .unwrap_or(0.0)
}

/// The gateway's service URL is a Pulsar proxy (`compat-suites/pulsar/start --proxy`): lookups go
/// to the proxy, which answers "connect through me", and every producer and reader then talks to
/// the broker through it. The admin REST URL stays the broker's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a real Pulsar with a proxy: GATEWAY_TEST_BACKEND=pulsar with PULSAR_URL/PULSAR_ADMIN_URL and PULSAR_PROXY_URL/PULSAR_PROXY_WEB_URL (start --proxy), run with --include-ignored"]
async fn round_trip_through_a_pulsar_proxy() {
    test_pulsar().expect(NEEDS_PULSAR);
    let proxy = std::env::var("PULSAR_PROXY_URL")
        .expect("PULSAR_PROXY_URL names the Pulsar proxy (compat-suites/pulsar/start --proxy)");
    let proxy_web = std::env::var("PULSAR_PROXY_WEB_URL")
        .expect("PULSAR_PROXY_WEB_URL: the proxy's metrics show the traffic went through it");
    let lookups_before = proxy_metric(&proxy_web, "pulsar_proxy_lookup_requests_total");

    let gw = InProcessGateway::start_with(|c| c.backend.pulsar_url = Some(proxy.clone())).await;
    let bootstrap = gw.bootstrap();
    let topic = unique("via-proxy");
    create_topic(&bootstrap, &topic, PARTITIONS).await;
    let base_ts = 1_700_000_000_000;
    let total = 3_000;
    let p = producer(
        &bootstrap,
        &[("compression.type", "lz4"), ("message.timeout.ms", "60000")],
    );
    let delivered = produce(&p, &topic, 0..total, base_ts).await;
    assert_eq!(delivered.len(), total);
    let (b, t) = (bootstrap.clone(), topic.clone());
    let got =
        tokio::task::spawn_blocking(move || consume_all(&b, &t, total, Duration::from_secs(120)))
            .await
            .unwrap();
    assert_round_trip(&delivered, &got, base_ts);
    assert_eq!(
        got.iter()
            .map(|(p, _, _)| *p)
            .collect::<std::collections::BTreeSet<_>>()
            .len(),
        PARTITIONS as usize,
        "every partition carried records"
    );

    // The proxy answered the lookups and holds, besides the lookup connection, a connection it
    // forwards to the broker (its byte counter stays near 0 in zero-copy mode, so count
    // connections). Had the gateway ignored "connect through the service URL" and gone straight
    // to the broker, only the lookup connection would be there.
    let lookups = proxy_metric(&proxy_web, "pulsar_proxy_lookup_requests_total") - lookups_before;
    let active = proxy_metric(&proxy_web, "pulsar_proxy_active_connections");
    eprintln!("through the proxy: {lookups} lookups, {active} active proxy connections");
    assert!(
        lookups >= PARTITIONS as f64,
        "{lookups} lookups went to the proxy"
    );
    assert!(
        active >= 2.0,
        "{active} connections through the proxy: the gateway's producers and readers bypassed it"
    );
}
