//! Pulsar-only end-to-end tests with librdkafka (all `#[ignore]`: run them with
//! `GATEWAY_TEST_BACKEND=pulsar`, `PULSAR_URL`, `PULSAR_ADMIN_URL` and `--include-ignored`):
//! messages a Java Pulsar producer wrote (batched, unbatched, chunked), read back through the
//! gateway, and the gateway reaching Pulsar through a Pulsar proxy (`PULSAR_PROXY_URL`, from
//! `compat-suites/pulsar/start --proxy`).

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use e2e_tests::rdkafka_util::*;
use e2e_tests::{test_pulsar, InProcessGateway};
use gateway_core::backend::prelude::*;
use gateway_core::backend::{InitialPosition, SubscribeOptions, SubscriptionType};
use gateway_core::{MessageId, ReceivedMessage, TopicName};
use gateway_kafka::offsets::to_offset;
use rdkafka::consumer::Consumer;
use rdkafka::message::{Headers, Message as _};
use rdkafka::{Offset, TopicPartitionList};

const NEEDS_PULSAR: &str =
    "GATEWAY_TEST_BACKEND=pulsar names the Pulsar (PULSAR_URL, PULSAR_ADMIN_URL) the Java producer writes to";

/// One message of `compat-suites/pulsar-interop-java/produce-fixture`: where it went, the id the
/// Java client's receipt gave, and the Kafka record it must come back as.
#[derive(Debug)]
struct Written {
    partition: i32,
    ledger: u64,
    /// For a chunked message, its last chunk's entry (the receipt's `ChunkMessageIdImpl`).
    entry: u64,
    /// -1 for a message sent without batching.
    batch_index: i32,
    /// A chunked message's first chunk (ledger, entry).
    first_chunk: Option<(u64, u64)>,
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
    assert_eq!(f.len(), 10, "fixture line {line:?}");
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
    let first_chunk = (f[9] != "-").then(|| {
        let (ledger, entry) = f[9].split_once(':').expect("ledger:entry");
        (ledger.parse().unwrap(), entry.parse().unwrap())
    });
    Written {
        partition: f[0].parse().unwrap(),
        ledger: f[1].parse().unwrap(),
        entry: f[2].parse().unwrap(),
        batch_index: f[3].parse().unwrap(),
        first_chunk,
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

/// Runs `produce-fixture` with `args` on a fresh topic named after `name`, in a thread of its
/// own (the JVMs spend most of their time starting up, so several run at once).
fn java_produce_in_background(
    name: &str,
    args: Vec<String>,
) -> (String, std::thread::JoinHandle<Vec<Written>>) {
    let topic = unique(&format!("java-{name}"));
    let t = topic.clone();
    let run = std::thread::spawn(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        java_produce(&t, &args)
    });
    (topic, run)
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

/// librdkafka (`assign`, no group) reads every message of `written` through the gateway, each
/// partition in offset order, at the offset derived from its Pulsar message id, with its key,
/// value, properties as headers and event (or publish) time as timestamp; the high watermark is
/// the last offset + 1.
async fn assert_read_back(
    bootstrap: &str,
    name: &str,
    topic: &str,
    partitions: i32,
    written: &[Written],
) {
    let mut want: BTreeMap<i32, Vec<&Written>> = BTreeMap::new();
    for w in written {
        want.entry(w.partition).or_default().push(w);
    }
    // In the order of the log: several producers of one partition interleave.
    for ws in want.values_mut() {
        ws.sort_by_key(|w| kafka_offset(w));
    }
    assert_eq!(
        want.len(),
        partitions as usize,
        "{name}: every partition written"
    );

    let (b, t) = (bootstrap.to_owned(), topic.to_owned());
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
            let (topic, run) = java_produce_in_background(name, args);
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
        assert!(written.iter().all(|w| w.first_chunk.is_none()));
        assert_read_back(&bootstrap, name, &topic, partitions, &written).await;
        eprintln!(
            "{name}: {} messages over {partitions} partition(s) read back, largest batch index {}",
            written.len(),
            written.iter().map(|w| w.batch_index).max().unwrap()
        );
    }
}

/// Whether another message's chunk or entry lies between a chunked message's first and last
/// chunk: the producers' entries interleaved.
fn interleaved(written: &[Written]) -> bool {
    written.iter().any(|m| {
        let Some((ledger, first)) = m.first_chunk else {
            return false;
        };
        let inside = |l: u64, e: u64| l == ledger && l == m.ledger && first < e && e < m.entry;
        written.iter().any(|w| {
            w.partition == m.partition
                && (inside(w.ledger, w.entry) || w.first_chunk.is_some_and(|(l, e)| inside(l, e)))
        })
    })
}

/// One record read by librdkafka: (partition, offset, record).
fn read_record(m: &rdkafka::message::BorrowedMessage<'_>) -> (i32, i64, Expected) {
    let headers = m
        .headers()
        .map(|h| {
            h.iter()
                .map(|h| (h.key.to_owned(), h.value.map(|v| v.to_vec())))
                .collect()
        })
        .unwrap_or_default();
    (
        m.partition(),
        m.offset(),
        Expected {
            key: m.key().map(|k| k.to_vec()),
            value: m.payload().map(|v| v.to_vec()),
            headers,
            timestamp: m.timestamp().to_millis().unwrap_or(-1),
        },
    )
}

/// The first record `consumer` polls within 30 s.
fn first_record(consumer: &rdkafka::consumer::BaseConsumer) -> (i32, i64, Expected) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            None | Some(Err(rdkafka::error::KafkaError::Subscription(_))) => continue,
            Some(Ok(m)) => return read_record(&m),
            Some(Err(e)) => panic!("consume failed: {e}"),
        }
    }
    panic!("no record within 30 s");
}

/// Java producers with chunking (10 KiB chunks, batching off) write 50 kB and 1.1 MB messages
/// among small ones, two producers on one partition at once so that their chunks interleave:
/// librdkafka reads each message whole, in order, at the offset derived from its receipt (the
/// last chunk's id), and a consumer that starts at a chunked message's offset (a new reader,
/// whose start is that message's last chunk, or a seek) gets that message first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a real Pulsar, java and mvn: GATEWAY_TEST_BACKEND=pulsar with PULSAR_URL/PULSAR_ADMIN_URL, run with --include-ignored"]
async fn java_chunked_messages_read_by_rdkafka() {
    test_pulsar().expect(NEEDS_PULSAR);
    let gw = InProcessGateway::start().await;
    let bootstrap = gw.bootstrap();
    // (name, partitions, producers per partition, codec, messages)
    let cases: [(&str, i32, u32, &str, u32); 2] = [
        ("chunked-two-producers", 0, 2, "LZ4", 60),
        ("chunked-partitioned", 2, 1, "ZLIB", 40),
    ];
    let runs: Vec<_> = cases
        .iter()
        .map(|&(name, partitions, producers, codec, messages)| {
            let args = [
                "--chunked",
                "--partitions",
                &partitions.to_string(),
                "--producers",
                &producers.to_string(),
                "--compression",
                codec,
                "--messages",
                &messages.to_string(),
            ]
            .map(str::to_owned)
            .to_vec();
            let (topic, run) = java_produce_in_background(name, args);
            (name, partitions.max(1), producers, messages, topic, run)
        })
        .collect();
    for (name, partitions, producers, messages, topic, run) in runs {
        let written = run.join().expect("fixture thread");
        assert_eq!(written.len(), messages as usize, "{name}: fixture output");
        let chunked: Vec<&Written> = written.iter().filter(|w| w.first_chunk.is_some()).collect();
        // Every value over 10 KiB was chunked, the 1.1 MB ones into more than 100 chunks.
        for w in &written {
            let len = w.record.value.as_ref().map_or(0, Vec::len);
            assert_eq!(
                w.first_chunk.is_some(),
                len > 10 * 1024,
                "{name}: a {len}-byte value chunked or not"
            );
        }
        assert!(
            chunked.iter().any(|w| {
                let (ledger, first) = w.first_chunk.unwrap();
                ledger == w.ledger && w.entry - first >= 100
            }),
            "{name}: no message of 100 chunks or more"
        );
        if producers > 1 {
            assert!(
                interleaved(&written),
                "{name}: the two producers' chunks did not interleave"
            );
        }
        assert_read_back(&bootstrap, name, &topic, partitions, &written).await;

        // A consumer that starts exactly at a chunked message's offset gets it, whole.
        let (b, t) = (bootstrap.clone(), topic.clone());
        let starts: Vec<(i32, i64, Expected)> = chunked
            .iter()
            .map(|w| (w.partition, kafka_offset(w), w.record.clone()))
            .collect();
        tokio::task::spawn_blocking(move || {
            for (p, offset, want) in &starts {
                let c = consumer(&b);
                let mut tpl = TopicPartitionList::new();
                tpl.add_partition_offset(&t, *p, Offset::Offset(*offset))
                    .unwrap();
                c.assign(&tpl).unwrap();
                let got = first_record(&c);
                assert_eq!(got, (*p, *offset, want.clone()), "{t}: read from {offset}");
            }
            // And one whose reader is already open elsewhere: a seek.
            let (p, offset, want) = starts.last().expect("chunked messages");
            let c = consumer(&b);
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition_offset(&t, *p, Offset::Beginning).unwrap();
            c.assign(&tpl).unwrap();
            first_record(&c);
            c.seek(&t, *p, Offset::Offset(*offset), Duration::from_secs(10))
                .expect("seek");
            let got = first_record(&c);
            assert_eq!(got, (*p, *offset, want.clone()), "{t}: read after a seek");
        })
        .await
        .unwrap();
        eprintln!(
            "{name}: {} messages, {} chunked, read back whole, and from each chunked one's offset",
            written.len(),
            chunked.len()
        );
    }
}

/// Up to `n` messages from `consumer`, waiting up to 60 s.
async fn receive(consumer: &mut dyn gateway_core::Consumer, n: usize) -> Vec<ReceivedMessage> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut got: Vec<ReceivedMessage> = Vec::new();
    while got.len() < n && Instant::now() < deadline {
        got.extend(
            consumer
                .receive(n - got.len(), Duration::from_secs(1))
                .await
                .expect("receive"),
        );
    }
    got
}

/// The same kind of chunked messages through a durable consumer (Shared, as AMQP queues use),
/// the backend API the AMQP front end reads with: each message whole, in order, with its last
/// chunk's id; a negative ack redelivers one whole; once all are acknowledged the subscription
/// has no backlog, so every chunk's entry was acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a real Pulsar, java and mvn: GATEWAY_TEST_BACKEND=pulsar with PULSAR_URL/PULSAR_ADMIN_URL, run with --include-ignored"]
async fn java_chunked_messages_through_a_durable_consumer() {
    test_pulsar().expect(NEEDS_PULSAR);
    let args = [
        "--chunked",
        "--producers",
        "2",
        "--compression",
        "LZ4",
        "--messages",
        "30",
    ];
    let (topic, run) =
        java_produce_in_background("chunked-durable", args.map(str::to_owned).to_vec());
    let mut written = tokio::task::spawn_blocking(move || run.join().expect("fixture thread"))
        .await
        .unwrap();
    written.sort_by_key(kafka_offset);
    assert!(written.iter().any(|w| w.first_chunk.is_some()));

    let config = e2e_tests::backends::pulsar_config().expect(NEEDS_PULSAR);
    let backend = gateway_pulsar::PulsarBackend::new(config).expect("backend");
    let name = TopicName::parse(&topic, "public", "default").expect("topic name");
    let subscription = "chunks";
    let mut consumer = backend
        .subscribe(
            &name,
            subscription,
            SubscribeOptions {
                sub_type: SubscriptionType::Shared,
                initial: InitialPosition::Earliest,
                prefetch: None,
            },
        )
        .await
        .expect("subscribe");
    let check = |m: &ReceivedMessage, w: &Written| {
        let where_ = format!("message {}:{}", w.ledger, w.entry);
        let id = MessageId {
            ledger: w.ledger,
            entry: w.entry,
            batch_index: 0,
        };
        assert_eq!(m.id, id, "{where_}: id");
        let value = m.message.value.as_ref().map(|v| v.to_vec());
        assert_eq!(value, w.record.value, "{where_}: value");
        let key = m.message.key.as_ref().map(|k| k.to_vec());
        assert_eq!(key, w.record.key, "{where_}: key");
        let properties: Vec<(String, Option<Vec<u8>>)> = m
            .message
            .properties
            .iter()
            .map(|(k, v)| (k.clone(), Some(v.clone().into_bytes())))
            .collect();
        assert_eq!(properties, w.record.headers, "{where_}: properties");
        let time = m.message.event_time.unwrap_or(m.publish_time) as i64;
        assert_eq!(time, w.record.timestamp, "{where_}: event or publish time");
    };

    let got = receive(consumer.as_mut(), written.len()).await;
    assert_eq!(got.len(), written.len(), "every message, once");
    for (m, w) in got.iter().zip(&written) {
        check(m, w);
    }
    // Nothing more: no chunk came as a message of its own.
    let extra = consumer
        .receive(10, Duration::from_secs(2))
        .await
        .expect("receive");
    assert!(
        extra.is_empty(),
        "more messages than were written: {extra:?}"
    );

    // A negative ack hands back every chunk, and the message comes back whole.
    let (biggest, w) = got
        .iter()
        .zip(&written)
        .max_by_key(|(m, _)| m.message.value.as_ref().map_or(0, |v| v.len()))
        .unwrap();
    assert!(w.first_chunk.is_some(), "the biggest message is chunked");
    consumer.nack(&[biggest.id]).await.expect("nack");
    let again = receive(consumer.as_mut(), 1).await;
    assert_eq!(again.len(), 1, "the nacked message comes back");
    check(&again[0], w);
    assert!(again[0].redelivery_count >= 1, "redelivered");

    let ids: Vec<MessageId> = got.iter().chain(&again).map(|m| m.id).collect();
    consumer.ack(&ids).await.expect("ack");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut backlog = u64::MAX;
    while Instant::now() < deadline {
        backlog = backend.backlog(&name, subscription).await.expect("backlog");
        if backlog == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(backlog, 0, "entries left unacknowledged");
    consumer.close().await;
    backend
        .unsubscribe(&name, subscription)
        .await
        .expect("unsubscribe");
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
