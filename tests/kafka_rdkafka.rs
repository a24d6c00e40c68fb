//! librdkafka (the `rdkafka` crate) against the gateway on the embedded backend: the Kafka round
//! trip with every codec, ListOffsets by time, and no loss of acknowledged messages across SIGKILL.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use e2e_tests::rdkafka_util::*;
use e2e_tests::{free_port, test_pulsar, GatewayProcess, InProcessGateway};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::FutureRecord;
use rdkafka::util::Timeout;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

const GATEWAY_BIN: &str = env!("CARGO_BIN_EXE_gateway-under-test");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_with_every_codec() {
    let gw = InProcessGateway::start().await;
    let bootstrap = gw.bootstrap();
    let base_ts = 1_700_000_000_000;
    // 100,000 records in all, 20,000 per codec.
    let per_codec = 20_000;
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
        let topic = unique(&format!("codec-{codec}"));
        create_topic(&bootstrap, &topic, PARTITIONS).await;
        // zstd also runs with the idempotent producer (InitProducerId and sequence numbers).
        let idempotent = if codec == "zstd" { "true" } else { "false" };
        let p = producer(
            &bootstrap,
            &[
                ("compression.type", codec),
                ("batch.num.messages", "10000"),
                ("enable.idempotence", idempotent),
            ],
        );
        let delivered = produce(&p, &topic, 0..per_codec, base_ts).await;
        assert_eq!(delivered.len(), per_codec);
        let bootstrap = bootstrap.clone();
        let got = tokio::task::spawn_blocking(move || {
            consume_all(&bootstrap, &topic, per_codec, Duration::from_secs(120))
        })
        .await
        .unwrap();
        assert_round_trip(&delivered, &got, base_ts);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_offsets_by_timestamp_finds_the_first_later_record() {
    let gw = InProcessGateway::start().await;
    let bootstrap = gw.bootstrap();
    let topic: &'static str = unique("by-time").leak();
    create_topic(&bootstrap, topic, 1).await;
    let p = producer(&bootstrap, &[]);
    let send = |v: String| {
        let p = p.clone();
        async move {
            p.send(
                FutureRecord::<(), _>::to(topic).partition(0).payload(&v),
                Timeout::After(Duration::from_secs(10)),
            )
            .await
            .expect("delivered")
            .offset
        }
    };
    for i in 0..10 {
        send(format!("early-{i}")).await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    tokio::time::sleep(Duration::from_millis(5)).await;
    let first_late = send("late-0".into()).await;
    for i in 1..10 {
        send(format!("late-{i}")).await;
    }
    let bootstrap2 = bootstrap.clone();
    let (found, low, high) = tokio::task::spawn_blocking(move || {
        let c = consumer(&bootstrap2);
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, 0, Offset::Offset(t))
            .unwrap();
        let found =
            retry_retired_broker(|| c.offsets_for_times(tpl.clone(), Duration::from_secs(10)))
                .expect("offsets_for_times");
        let (low, high) =
            retry_retired_broker(|| c.fetch_watermarks(topic, 0, Duration::from_secs(10)))
                .expect("watermarks");
        (found.find_partition(topic, 0).unwrap().offset(), low, high)
    })
    .await
    .unwrap();
    assert_eq!(found, Offset::Offset(first_late));
    assert!(
        low < first_late && first_late < high,
        "watermarks {low}..{high} must surround {first_late}"
    );
    // A time after everything has no answer: Kafka's -1 (rdkafka's End).
    let bootstrap3 = bootstrap.clone();
    let none = tokio::task::spawn_blocking(move || {
        let c = consumer(&bootstrap3);
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, 0, Offset::Offset(t + 3_600_000))
            .unwrap();
        retry_retired_broker(|| c.offsets_for_times(tpl.clone(), Duration::from_secs(10)))
            .unwrap()
            .find_partition(topic, 0)
            .unwrap()
            .offset()
    })
    .await
    .unwrap();
    assert_eq!(none, Offset::End);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_stream_loses_no_acknowledged_record() {
    let data = tempfile::tempdir().unwrap();
    let kafka = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let admin = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let gateway = GatewayProcess::start(GATEWAY_BIN, data.path(), kafka, admin);
    let bootstrap = kafka.to_string();
    let topic: &'static str = unique("crash").leak();
    create_topic(&bootstrap, topic, PARTITIONS).await;
    let base_ts = 1_700_000_000_000;
    let p = producer(
        &bootstrap,
        &[
            ("message.timeout.ms", "60000"),
            ("reconnect.backoff.max.ms", "500"),
        ],
    );

    // Keep producing while the gateway is killed and restarted; keep what was acknowledged.
    let total = 6_000;
    let (producing, killed_rx) =
        produce_in_background(p.clone(), topic, total, 200, 2_000, base_ts);
    killed_rx.await.expect("producer reached 2,000 acks");
    gateway.kill();
    let gateway = GatewayProcess::start(GATEWAY_BIN, data.path(), kafka, admin);
    let (acked, failed) = producing.await.unwrap();
    assert!(
        acked.len() > 2_000,
        "production continued after the restart"
    );
    eprintln!(
        "acknowledged {} records, {} failed around the crash",
        acked.len(),
        failed
    );

    // Every acknowledged record is there, at the offset its acknowledgement gave. Records that
    // were retried around the crash may appear twice; nothing else may.
    let expected = acked.len();
    assert_acknowledged_present(
        &bootstrap,
        topic,
        &acked,
        expected + 1_000,
        Duration::from_secs(20),
        base_ts,
    )
    .await;
    drop(gateway);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_zero_records_arrive() {
    let gw = InProcessGateway::start().await;
    let bootstrap = gw.bootstrap();
    let topic: &'static str = unique("fire-and-forget").leak();
    create_topic(&bootstrap, topic, PARTITIONS).await;
    let p = producer(&bootstrap, &[("acks", "0")]);
    let mut pending = Vec::new();
    for i in 0..600 {
        pending.push(
            enqueue(
                &p,
                topic,
                i as i32 % PARTITIONS,
                &record(i, 1_700_000_000_000),
            )
            .await,
        );
    }
    for d in pending {
        // With acks=0 the delivery report comes from the client alone, with no offset.
        d.await.expect("delivery channel").expect("sent");
    }
    let got = tokio::task::spawn_blocking(move || {
        consume_all(&bootstrap, topic, 600, Duration::from_secs(30))
    })
    .await
    .unwrap();
    assert_eq!(got.len(), 600);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_poll_wakes_when_data_arrives() {
    let gw = InProcessGateway::start().await;
    let bootstrap = gw.bootstrap();
    let topic: &'static str = unique("long-poll").leak();
    create_topic(&bootstrap, topic, 1).await;
    let waiting = {
        let bootstrap = bootstrap.clone();
        tokio::task::spawn_blocking(move || {
            let c: BaseConsumer = ClientConfig::new()
                .set("bootstrap.servers", &bootstrap)
                .set("group.id", "rdkafka-e2e")
                .set("enable.auto.commit", "false")
                // The fetch waits up to 20 s for data; it must return as soon as data arrives.
                .set("fetch.wait.max.ms", "20000")
                .create()
                .unwrap();
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition_offset(topic, 0, Offset::Beginning)
                .unwrap();
            c.assign(&tpl).unwrap();
            let started = Instant::now();
            loop {
                match c.poll(Duration::from_millis(100)) {
                    Some(Ok(m)) => return (m.payload().map(|p| p.to_vec()), started.elapsed()),
                    Some(Err(rdkafka::error::KafkaError::Subscription(_))) | None => {}
                    Some(Err(e)) => panic!("{e}"),
                }
                assert!(
                    started.elapsed() < Duration::from_secs(60),
                    "nothing arrived"
                );
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    let p = producer(&bootstrap, &[]);
    p.send(
        FutureRecord::<(), _>::to(topic)
            .partition(0)
            .payload("wake up"),
        Timeout::After(Duration::from_secs(10)),
    )
    .await
    .expect("delivered");
    let (payload, waited) = waiting.await.unwrap();
    assert_eq!(payload.as_deref(), Some(&b"wake up"[..]));
    assert!(
        waited < Duration::from_secs(15),
        "the fetch waited {waited:?}: it must end when data arrives, not at max wait"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_apis_with_the_rdkafka_admin_client() {
    use rdkafka::admin::{NewPartitions, ResourceSpecifier};
    let gw = InProcessGateway::start_with(|c| c.kafka.auto_create_topics = false).await;
    let bootstrap = gw.bootstrap();
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .unwrap();
    let opts = AdminOptions::new();
    let topic: &'static str = unique("admin-t").leak();
    create_topic(&bootstrap, topic, 3).await;
    let again = admin
        .create_topics(
            &[NewTopic::new(topic, 3, TopicReplication::Fixed(1))],
            &opts,
        )
        .await
        .unwrap();
    assert_eq!(
        again[0].as_ref().unwrap_err().1,
        rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists
    );

    let grown = admin
        .create_partitions(&[NewPartitions::new(topic, 5)], &opts)
        .await
        .unwrap();
    grown[0].as_ref().expect("partitions added");
    let shrunk = admin
        .create_partitions(&[NewPartitions::new(topic, 2)], &opts)
        .await
        .unwrap();
    assert_eq!(
        shrunk[0].as_ref().unwrap_err().1,
        rdkafka::types::RDKafkaErrorCode::InvalidPartitions
    );
    assert_eq!(partition_count(&bootstrap, topic).await, Ok(5));

    let configs = admin
        .describe_configs(&[ResourceSpecifier::Topic(topic)], &opts)
        .await
        .unwrap();
    let config = configs[0].as_ref().expect("topic configs");
    assert_eq!(
        config
            .get("cleanup.policy")
            .and_then(|e| e.value.as_deref()),
        Some("delete")
    );

    let deleted = admin.delete_topics(&[topic], &opts).await.unwrap();
    deleted[0].as_ref().expect("deleted");
    assert_eq!(
        partition_count(&bootstrap, topic).await,
        Err(rdkafka::types::RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART)
    );
}

/// The partition count Metadata reports for a topic, or its error.
async fn partition_count(
    bootstrap: &str,
    topic: &'static str,
) -> Result<usize, rdkafka::types::RDKafkaRespErr> {
    let bootstrap = bootstrap.to_owned();
    tokio::task::spawn_blocking(move || {
        let md = consumer(&bootstrap)
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .expect("metadata");
        let t = &md.topics()[0];
        match t.error() {
            Some(e) => Err(e),
            None => Ok(t.partitions().len()),
        }
    })
    .await
    .unwrap()
}

/// Pulsar moves topics between brokers (bundle unloads, rebalancing): the broker closes the
/// gateway's producers, readers and consumers. The acceptance: unload the topic every 2 s
/// for 60 s while a producer and a consumer run. Clients see at most retriable errors (the
/// producer never gives up on a record, the consumer reports nothing), the consumer reads every
/// acknowledged record at its offset, in order, and the gateway never panics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a real Pulsar: GATEWAY_TEST_BACKEND=pulsar with PULSAR_URL/PULSAR_ADMIN_URL, run with --include-ignored"]
async fn topic_unloads_every_2s_for_60s_lose_nothing() {
    const ROUNDS: usize = 30;
    let pulsar =
        test_pulsar().expect("GATEWAY_TEST_BACKEND=pulsar names the Pulsar to unload topics on");
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("gateway.log");
    let (kafka, admin) = (
        format!("127.0.0.1:{}", free_port()).parse().unwrap(),
        format!("127.0.0.1:{}", free_port()).parse().unwrap(),
    );
    let gw = GatewayProcess::start_logged(
        GATEWAY_BIN,
        &dir.path().join("data"),
        kafka,
        admin,
        Some(&log),
    );
    let bootstrap = gw.kafka.to_string();
    let topic: &'static str = unique("unload").leak();
    create_topic(&bootstrap, topic, PARTITIONS).await;
    let base_ts = 1_700_000_000_000;
    let stop = Arc::new(AtomicBool::new(false));

    // A paced idempotent producer, so that production spans every unload.
    let p = producer(
        &bootstrap,
        &[
            ("enable.idempotence", "true"),
            ("message.timeout.ms", "120000"),
        ],
    );
    let producing = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let (mut acked, mut failed, mut next) = (HashMap::new(), 0usize, 0usize);
            while !stop.load(Ordering::Relaxed) {
                let mut pending = Vec::new();
                for i in next..next + 50 {
                    let d = enqueue(&p, topic, i as i32 % PARTITIONS, &record(i, base_ts)).await;
                    pending.push((i, d));
                }
                next += 50;
                for (i, d) in pending {
                    match d.await.expect("delivery channel") {
                        Ok(d) => {
                            acked.insert((d.partition, d.offset), i);
                        }
                        Err(_) => failed += 1,
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            (acked, failed)
        })
    };

    // A consumer reading along from the beginning until told to stop; what it read is shared so
    // the test can tell when it has caught up.
    type ValueAndKey = (Option<Vec<u8>>, Option<Vec<u8>>);
    type Read = (i32, i64, Option<Vec<u8>>, Option<Vec<u8>>);
    let read: Arc<Mutex<Vec<Read>>> = Arc::default();
    let consumer_stop = Arc::new(AtomicBool::new(false));
    let consuming = {
        let (bootstrap, stop, read) = (bootstrap.clone(), consumer_stop.clone(), read.clone());
        tokio::task::spawn_blocking(move || {
            let consumer = consumer(&bootstrap);
            let mut tpl = TopicPartitionList::new();
            for p in 0..PARTITIONS {
                tpl.add_partition_offset(topic, p, Offset::Beginning)
                    .unwrap();
            }
            consumer.assign(&tpl).unwrap();
            let mut errors = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                match consumer.poll(Duration::from_millis(200)) {
                    None => {}
                    Some(Ok(m)) => read.lock().unwrap().push((
                        m.partition(),
                        m.offset(),
                        m.payload().map(|v| v.to_vec()),
                        m.key().map(|k| k.to_vec()),
                    )),
                    // Reported once for a group-less consumer; not a fetch failure.
                    Some(Err(rdkafka::error::KafkaError::Subscription(_))) => {}
                    Some(Err(e)) => errors.push(e.to_string()),
                }
            }
            errors
        })
    };

    let unload = format!("/admin/v2/persistent/public/default/{topic}/unload");
    for round in 0..ROUNDS {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (pulsar, path) = (pulsar.clone(), unload.clone());
        let (status, body) =
            tokio::task::spawn_blocking(move || pulsar.admin_call("PUT", &path, ""))
                .await
                .unwrap();
        assert_eq!(status, 204, "unload round {round}: {body}");
    }
    stop.store(true, Ordering::Relaxed);
    let (acked, failed) = producing.await.unwrap();
    assert_eq!(
        failed, 0,
        "the producer gave up on records (non-retriable errors)"
    );
    assert!(
        acked.len() > 10_000,
        "production went on through the unloads ({} acknowledged)",
        acked.len()
    );

    // Let the consumer catch up with everything acknowledged, then stop it.
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let caught_up = {
            let read = read.lock().unwrap();
            let positions: HashSet<(i32, i64)> = read.iter().map(|r| (r.0, r.1)).collect();
            acked.keys().all(|k| positions.contains(k))
        };
        if caught_up {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    consumer_stop.store(true, Ordering::Relaxed);
    let errors = consuming.await.unwrap();
    assert!(errors.is_empty(), "the consumer saw errors: {errors:?}");
    let got = std::mem::take(&mut *read.lock().unwrap());

    let mut last: HashMap<i32, i64> = HashMap::new();
    let mut seen: HashMap<(i32, i64), ValueAndKey> = HashMap::new();
    for (partition, offset, value, key) in got {
        if let Some(prev) = last.insert(partition, offset) {
            assert!(
                prev < offset,
                "partition {partition}: offset {offset} after {prev}"
            );
        }
        seen.insert((partition, offset), (value, key));
    }
    // Every acknowledged record missing at its offset, and where it was read instead if it was
    // (a wrong offset in the produce answer rather than a lost record), with the gateway's
    // warnings: what tells the two apart when this fails.
    let mut missing = Vec::new();
    for ((partition, offset), i) in &acked {
        let expected = record(*i, base_ts);
        let expected = (expected.value, expected.key);
        match seen.get(&(*partition, *offset)) {
            Some(found) => assert_eq!(found, &expected, "record {i} differs"),
            None => {
                let elsewhere: Vec<_> = seen
                    .iter()
                    .filter(|(_, v)| **v == expected)
                    .map(|(k, _)| *k)
                    .collect();
                missing.push(format!(
                    "record {i} (partition {partition}, offset {offset}), read at {elsewhere:?}"
                ));
            }
        }
    }
    if !missing.is_empty() {
        let output = std::fs::read_to_string(&log).unwrap_or_default();
        let warnings: Vec<&str> = output
            .lines()
            .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
            .collect();
        panic!(
            "{} acknowledged records were not consumed at their offsets: {:?}\ngateway warnings (last 40 of {}):\n{}",
            missing.len(),
            &missing[..missing.len().min(20)],
            warnings.len(),
            warnings[warnings.len().saturating_sub(40)..].join("\n")
        );
    }
    drop(gw);
    let output = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        !output.contains("panicked"),
        "the gateway panicked:\n{output}"
    );
}
