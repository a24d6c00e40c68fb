//! librdkafka helpers shared by the end-to-end tests: a deterministic data set, producers and
//! consumers, and the checks that every acknowledged record is there as it was sent.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

pub const PARTITIONS: i32 = 6;

/// A topic name no earlier run used (a real Pulsar outlives test runs).
pub fn unique(name: &str) -> String {
    format!("{name}-{:08x}", rand::random::<u32>())
}

/// What record `i` of a run looks like: keys (some null), values of many sizes (some null,
/// binary), headers with repeated keys and binary values, explicit timestamps.
#[derive(Debug, Clone, PartialEq)]
pub struct Expected {
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    pub timestamp: i64,
}

pub fn record(i: usize, base_ts: i64) -> Expected {
    let key = (!i.is_multiple_of(7)).then(|| format!("key-{}", i % 100).into_bytes());
    let value =
        (!i.is_multiple_of(11)).then(|| (0..(i * 37) % 300).map(|j| (i + j) as u8).collect());
    let headers = match i % 3 {
        0 => vec![
            ("h".to_owned(), Some(b"first".to_vec())),
            ("h".to_owned(), Some(vec![0xff, 0x00, i as u8])),
            ("trace".to_owned(), Some(format!("t{i}").into_bytes())),
        ],
        1 => vec![],
        _ => vec![("only".to_owned(), Some(Vec::new()))],
    };
    Expected {
        key,
        value,
        headers,
        timestamp: base_ts + i as i64,
    }
}

pub fn producer(bootstrap: &str, extra: &[(&str, &str)]) -> FutureProducer {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "5")
        .set("acks", "all");
    for (k, v) in extra {
        config.set(*k, *v);
    }
    config.create().expect("producer")
}

pub fn consumer(bootstrap: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        // librdkafka needs a group id even for hand-assigned partitions; nothing is committed.
        // Unique, so that concurrent tests' gateways on one Pulsar don't share its coordinator.
        .set("group.id", unique("rdkafka-e2e"))
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "100")
        .create()
        .expect("consumer")
}

pub async fn create_topic(bootstrap: &str, name: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("admin");
    let results = admin
        .create_topics(
            &[NewTopic::new(name, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        )
        .await
        .expect("create topics");
    for r in results {
        r.expect("topic created");
    }
}

/// Queues one record (librdkafka copies it), waiting while the local queue is full.
pub async fn enqueue(
    producer: &FutureProducer,
    topic: &str,
    partition: i32,
    r: &Expected,
) -> rdkafka::producer::DeliveryFuture {
    let mut headers = OwnedHeaders::new();
    for (k, v) in &r.headers {
        headers = headers.insert(Header {
            key: k,
            value: v.as_deref(),
        });
    }
    let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic)
        .partition(partition)
        .timestamp(r.timestamp)
        .headers(headers);
    if let Some(k) = &r.key {
        record = record.key(k.as_slice());
    }
    if let Some(v) = &r.value {
        record = record.payload(v.as_slice());
    }
    loop {
        match producer.send_result(record) {
            Ok(delivery) => return delivery,
            Err((
                rdkafka::error::KafkaError::MessageProduction(
                    rdkafka::types::RDKafkaErrorCode::QueueFull,
                ),
                back,
            )) => {
                record = back;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err((e, _)) => panic!("cannot queue record: {e}"),
        }
    }
}

/// Sends records `range` round-robin over the partitions; returns (partition, offset) -> index.
pub async fn produce(
    producer: &FutureProducer,
    topic: &str,
    range: std::ops::Range<usize>,
    base_ts: i64,
) -> HashMap<(i32, i64), usize> {
    let mut delivered = HashMap::new();
    for chunk in range.collect::<Vec<_>>().chunks(2_000) {
        let mut pending = Vec::with_capacity(chunk.len());
        for &i in chunk {
            pending.push((
                i,
                enqueue(producer, topic, i as i32 % PARTITIONS, &record(i, base_ts)).await,
            ));
        }
        for (i, delivery) in pending {
            let d = delivery
                .await
                .expect("delivery channel")
                .unwrap_or_else(|(e, _)| panic!("record {i} not delivered: {e}"));
            assert!(
                delivered.insert((d.partition, d.offset), i).is_none(),
                "offset {} reported twice",
                d.offset
            );
        }
    }
    delivered
}

/// Reads every partition from the beginning until `expected` records arrived.
pub fn consume_all(
    bootstrap: &str,
    topic: &str,
    expected: usize,
    limit: Duration,
) -> Vec<(i32, i64, Expected)> {
    consume_partitions(bootstrap, topic, PARTITIONS, expected, limit)
}

/// Reads partitions `0..partitions` from the beginning (with `assign`, no group) until `expected`
/// records arrived or `limit` passed; returns (partition, offset, record) in arrival order.
pub fn consume_partitions(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    expected: usize,
    limit: Duration,
) -> Vec<(i32, i64, Expected)> {
    let consumer = consumer(bootstrap);
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let deadline = Instant::now() + limit;
    let mut got = Vec::with_capacity(expected);
    while got.len() < expected && Instant::now() < deadline {
        let m = match consumer.poll(Duration::from_millis(200)) {
            None => continue,
            Some(Ok(m)) => m,
            // librdkafka reports "unknown group" once when a consumer has no group.id; that is
            // expected here (partitions are assigned by hand) and not a fetch failure.
            Some(Err(rdkafka::error::KafkaError::Subscription(_))) => continue,
            Some(Err(e)) => panic!("consume failed: {e}"),
        };
        let headers = m
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| (h.key.to_owned(), h.value.map(|v| v.to_vec())))
                    .collect()
            })
            .unwrap_or_default();
        got.push((
            m.partition(),
            m.offset(),
            Expected {
                key: m.key().map(|k| k.to_vec()),
                value: m.payload().map(|v| v.to_vec()),
                headers,
                timestamp: m.timestamp().to_millis().unwrap_or(-1),
            },
        ));
    }
    got
}

pub fn assert_round_trip(
    delivered: &HashMap<(i32, i64), usize>,
    got: &[(i32, i64, Expected)],
    base_ts: i64,
) {
    assert_eq!(got.len(), delivered.len(), "every record comes back once");
    let mut last_per_partition: BTreeMap<i32, (i64, usize)> = BTreeMap::new();
    for (partition, offset, record_got) in got {
        let i = *delivered
            .get(&(*partition, *offset))
            .unwrap_or_else(|| panic!("consumed offset {offset} on partition {partition} was never reported by the producer"));
        assert_eq!(record_got, &record(i, base_ts), "record {i} differs");
        if let Some((prev_offset, prev_i)) = last_per_partition.insert(*partition, (*offset, i)) {
            assert!(
                prev_offset < *offset && prev_i < i,
                "partition {partition} out of order"
            );
        }
    }
}

/// Records acknowledged by (partition, offset), and how many sends failed.
pub type Acknowledged = (HashMap<(i32, i64), usize>, usize);

/// Produces records `0..total` in chunks while the test disturbs the gateway or Pulsar; the
/// receiver fires once `signal_after` records are acknowledged.
pub fn produce_in_background(
    producer: FutureProducer,
    topic: &'static str,
    total: usize,
    chunk: usize,
    signal_after: usize,
    base_ts: i64,
) -> (
    tokio::task::JoinHandle<Acknowledged>,
    tokio::sync::oneshot::Receiver<()>,
) {
    let (signal, reached) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        let mut acked = HashMap::new();
        let mut failed = 0usize;
        let mut signal = Some(signal);
        for records in (0..total).collect::<Vec<_>>().chunks(chunk) {
            let mut pending = Vec::new();
            for &i in records {
                pending.push((
                    i,
                    enqueue(&producer, topic, i as i32 % PARTITIONS, &record(i, base_ts)).await,
                ));
            }
            for (i, d) in pending {
                match d.await.expect("delivery channel") {
                    Ok(d) => {
                        acked.insert((d.partition, d.offset), i);
                    }
                    Err(_) => failed += 1,
                }
            }
            if acked.len() >= signal_after {
                if let Some(tx) = signal.take() {
                    let _ = tx.send(());
                }
            }
        }
        (acked, failed)
    });
    (task, reached)
}

/// Every acknowledged record is there, at the offset its acknowledgement gave. `want` may exceed
/// the acknowledged count when retried records may appear twice.
pub async fn assert_acknowledged_present(
    bootstrap: &str,
    topic: &'static str,
    acked: &HashMap<(i32, i64), usize>,
    want: usize,
    limit: Duration,
    base_ts: i64,
) {
    let bootstrap = bootstrap.to_owned();
    let got = tokio::task::spawn_blocking(move || consume_all(&bootstrap, topic, want, limit))
        .await
        .unwrap();
    let by_offset: HashMap<(i32, i64), &Expected> =
        got.iter().map(|(p, o, e)| ((*p, *o), e)).collect();
    for ((partition, offset), i) in acked {
        let found = by_offset
            .get(&(*partition, *offset))
            .unwrap_or_else(|| panic!("acknowledged record {i} at {partition}/{offset} was lost"));
        assert_eq!(*found, &record(*i, base_ts));
    }
}

/// Sends `m0`, `m1`, ... (`count` records, no key) to `topic`, each acknowledged before the
/// next is sent.
pub async fn send_numbered(producer: &FutureProducer, topic: &str, count: usize) {
    for i in 0..count {
        producer
            .send(
                FutureRecord::<(), _>::to(topic).payload(&format!("m{i}")),
                Duration::from_secs(10),
            )
            .await
            .unwrap_or_else(|(e, _)| panic!("record m{i} not acknowledged: {e}"));
    }
}

/// Polls a subscribed `consumer` (on a blocking thread) until it has read `count` records or
/// `within` has passed; returns it with the payloads read, as text, in order.
pub async fn poll_payloads<C>(
    mut consumer: BaseConsumer<C>,
    count: usize,
    within: Duration,
) -> (BaseConsumer<C>, Vec<String>)
where
    C: rdkafka::consumer::ConsumerContext + 'static,
{
    let mut got = Vec::new();
    let deadline = Instant::now() + within;
    while got.len() < count && Instant::now() < deadline {
        let polled;
        (consumer, polled) = crate::blocking(consumer, |c| {
            c.poll(Duration::from_millis(200))
                .map(|r| r.map(|m| m.detach()))
        })
        .await;
        if let Some(Ok(m)) = polled {
            got.push(String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned());
        }
    }
    (consumer, got)
}

/// Keeps the errors librdkafka reports through its error callback.
#[derive(Default)]
pub struct RecordingContext(pub std::sync::Mutex<Vec<String>>);

impl rdkafka::ClientContext for RecordingContext {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        self.0.lock().unwrap().push(format!("{error:?}: {reason}"));
    }
}

impl rdkafka::consumer::ConsumerContext for RecordingContext {}

/// Runs a one-shot librdkafka call (watermarks, offsets for times) again when it failed only
/// because librdkafka retired the broker handle carrying it: since 2.10 a client drops brokers
/// Metadata no longer names, its bootstrap broker among them, and a request in flight there
/// fails with `DestroyBroker` ("Broker handle destroyed without termination"). An application
/// would retry it; so do the tests, at most three times. Any other error is returned at once.
pub fn retry_retired_broker<T>(
    mut call: impl FnMut() -> rdkafka::error::KafkaResult<T>,
) -> rdkafka::error::KafkaResult<T> {
    let mut attempts = 0;
    loop {
        match call() {
            Err(e)
                if attempts < 3
                    && e.rdkafka_error_code()
                        == Some(rdkafka::types::RDKafkaErrorCode::DestroyBroker) =>
            {
                attempts += 1;
            }
            other => return other,
        }
    }
}
