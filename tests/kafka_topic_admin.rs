//! Topic administration with librdkafka (the `rdkafka` crate): topic configs and DeleteRecords.
//!
//! Configs given at creation are
//! stored and reported, AlterConfigs replaces them, and on a real Pulsar they become the topic's
//! policies (retention, compaction threshold, no inactive-topic deletion), checked through
//! Pulsar's admin API. Also on Pulsar: a topic the gateway created keeps its records when no one
//! consumes them, past the point where a stock Pulsar deletes an unused topic.

use std::time::{Duration, Instant};

use e2e_tests::rdkafka_util::*;
use e2e_tests::{test_pulsar, InProcessGateway, TestPulsar};
use rdkafka::admin::{
    AdminClient, AdminOptions, AlterConfig, NewTopic, ResourceSpecifier, TopicReplication,
};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::FromClientConfig;
use rdkafka::consumer::Consumer;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde_json::Value;

fn admin(bootstrap: &str) -> AdminClient<DefaultClientContext> {
    AdminClient::from_config(ClientConfig::new().set("bootstrap.servers", bootstrap))
        .expect("admin")
}

/// (value, is it the default) of each named config.
async fn described(
    admin: &AdminClient<DefaultClientContext>,
    topic: &str,
    names: &[&str],
) -> Vec<(String, bool)> {
    let configs = admin
        .describe_configs(&[ResourceSpecifier::Topic(topic)], &AdminOptions::new())
        .await
        .expect("describe configs");
    let config = configs[0].as_ref().expect("the topic's configs");
    names
        .iter()
        .map(|n| {
            let e = config.get(n).unwrap_or_else(|| panic!("{n} not described"));
            (e.value.clone().unwrap_or_default(), e.is_default)
        })
        .collect()
}

/// A topic policy as Pulsar's admin API answers it, polled until `ok` holds: topic policies
/// travel through a system topic, so a read right after a write may not see it yet.
fn pulsar_policy(
    pulsar: &TestPulsar,
    topic: &str,
    policy: &str,
    ok: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = pulsar.admin_call(
            "GET",
            &format!("/admin/v2/persistent/public/default/{topic}/{policy}"),
            "",
        );
        let value = if status == 200 {
            serde_json::from_str(&body).unwrap_or(Value::Null)
        } else {
            Value::Null
        };
        if ok(&value) {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "{topic} {policy}: {status} {body}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The Kafka broker at KAFKA_REFERENCE_BOOTSTRAP, against which a test's expectations are
/// proved, else a gateway of the test's own (kept running by the returned handle).
async fn gateway_or_reference() -> (Option<InProcessGateway>, String) {
    match std::env::var("KAFKA_REFERENCE_BOOTSTRAP") {
        Ok(kafka) => (None, kafka),
        Err(_) => {
            let gw = InProcessGateway::start().await;
            let bootstrap = gw.bootstrap();
            (Some(gw), bootstrap)
        }
    }
}

/// Creates a one-partition topic with these configs.
async fn create_with_configs(bootstrap: &str, topic: &str, configs: &[(&str, &str)]) {
    let new = configs.iter().fold(
        NewTopic::new(topic, 1, TopicReplication::Fixed(1)),
        |t, (k, v)| t.set(k, v),
    );
    let created = admin(bootstrap)
        .create_topics(&[new], &AdminOptions::new())
        .await
        .expect("create");
    created[0].as_ref().expect("created");
}

fn retention_is(minutes: i64, megabytes: i64) -> impl Fn(&Value) -> bool {
    move |v| {
        v["retentionTimeInMinutes"].as_i64() == Some(minutes)
            && v["retentionSizeInMB"].as_i64() == Some(megabytes)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configs_are_stored_reported_and_applied() {
    let gw = InProcessGateway::start().await;
    let admin = admin(&gw.bootstrap());
    let topic = unique("configs");
    let opts = AdminOptions::new();
    let created = admin
        .create_topics(
            &[NewTopic::new(&topic, 2, TopicReplication::Fixed(1))
                .set("cleanup.policy", "compact,delete")
                .set("retention.ms", "3600000")
                .set("retention.bytes", "1073741824")
                .set("segment.bytes", "52428800")],
            &opts,
        )
        .await
        .unwrap();
    created[0].as_ref().expect("created");
    let names = [
        "cleanup.policy",
        "retention.ms",
        "retention.bytes",
        "segment.bytes",
        "segment.ms",
    ];
    assert_eq!(
        described(&admin, &topic, &names).await,
        vec![
            ("compact,delete".into(), false),
            ("3600000".into(), false),
            ("1073741824".into(), false),
            ("52428800".into(), false),
            ("604800000".into(), true),
        ]
    );
    if let Some(pulsar) = test_pulsar() {
        pulsar_policy(&pulsar, &topic, "retention", retention_is(60, 1024));
        pulsar_policy(&pulsar, &topic, "compactionThreshold", |v| {
            v.as_i64() == Some(52_428_800)
        });
        pulsar_policy(&pulsar, &topic, "inactiveTopicPolicies", |v| {
            v["deleteWhileInactive"] == Value::Bool(false)
        });
        let properties = pulsar_policy(&pulsar, &topic, "properties", |v| v.is_object());
        assert_eq!(properties["kafka.retention.ms"], "3600000", "{properties}");
    }

    // AlterConfigs replaces the whole set: what it leaves out returns to its default.
    let altered = admin
        .alter_configs(
            &[AlterConfig::new(ResourceSpecifier::Topic(&topic)).set("retention.ms", "7200000")],
            &opts,
        )
        .await
        .unwrap();
    altered[0].as_ref().expect("altered");
    assert_eq!(
        described(&admin, &topic, &names[..4]).await,
        vec![
            ("delete".into(), true),
            ("7200000".into(), false),
            ("-1".into(), true),
            ("1073741824".into(), true),
        ]
    );
    if let Some(pulsar) = test_pulsar() {
        pulsar_policy(&pulsar, &topic, "retention", retention_is(120, -1));
        // No longer compacted.
        pulsar_policy(&pulsar, &topic, "compactionThreshold", |v| {
            v.is_null() || v.as_i64() == Some(0)
        });
    }

    // Refused, so nothing changes (the rdkafka crate drops AlterConfigs' per-resource errors,
    // so the refusal shows in what is described afterwards; the Java suite checks the error).
    admin
        .alter_configs(
            &[AlterConfig::new(ResourceSpecifier::Topic(&topic))
                .set("retention.ms", "60000")
                .set("remote.storage.enable", "true")],
            &opts,
        )
        .await
        .unwrap();
    let bad = admin
        .create_topics(
            &[NewTopic::new(&unique("bad"), 1, TopicReplication::Fixed(1))
                .set("no.such.config", "1")],
            &opts,
        )
        .await
        .unwrap();
    assert_eq!(
        bad[0].as_ref().unwrap_err().1,
        rdkafka::types::RDKafkaErrorCode::InvalidConfig
    );
    assert_eq!(
        described(&admin, &topic, &["retention.ms"]).await,
        vec![("7200000".into(), false)]
    );
}

/// A topic created by a produce to an unknown name gets Kafka's default retention, a week.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_created_topics_keep_a_week() {
    let gw = InProcessGateway::start().await;
    let topic = unique("auto");
    let p = producer(&gw.bootstrap(), &[]);
    send_numbered(&p, &topic, 3).await;
    assert_eq!(
        described(
            &admin(&gw.bootstrap()),
            &topic,
            &["retention.ms", "retention.bytes"]
        )
        .await,
        vec![("604800000".into(), true), ("-1".into(), true)]
    );
    if let Some(pulsar) = test_pulsar() {
        pulsar_policy(&pulsar, &topic, "retention", retention_is(10_080, -1));
    }
}

/// On a stock Pulsar an unused topic is deleted: with no subscription and no producer, the
/// broker's inactive-topic check removes it and its data. Here the namespace deletes inactive
/// topics after 5 s; a topic created natively there is gone at the broker's next check (at most
/// a minute), while one created through the gateway keeps all its records. (With the gateway's
/// retention and inactive-topic policies removed by hand, the Kafka topic was gone too:
/// UnknownTopicOrPartition on the read.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a real Pulsar: GATEWAY_TEST_BACKEND=pulsar, run with --include-ignored"]
async fn records_outlive_pulsars_inactive_topic_deletion() {
    let pulsar = test_pulsar().expect("GATEWAY_TEST_BACKEND=pulsar");
    let namespace = unique("inactive");
    e2e_tests::create_pulsar_namespace(&format!("public/{namespace}"));
    let (status, body) = pulsar.admin_call(
        "POST",
        &format!("/admin/v2/namespaces/public/{namespace}/inactiveTopicPolicies"),
        r#"{"inactiveTopicDeleteMode":"delete_when_no_subscriptions","maxInactiveDurationSeconds":5,"deleteWhileInactive":true}"#,
    );
    assert_eq!(status, 204, "{body}");

    let gw = InProcessGateway::start().await;
    let bootstrap = gw.bootstrap();
    let kafka_topic = format!("public/{namespace}/kept");
    create_topic(&bootstrap, &kafka_topic, 2).await;
    let p = producer(&bootstrap, &[]);
    send_numbered(&p, &kafka_topic, 200).await;
    drop(p);
    // The gateway's own Pulsar producers would keep the topic in use: it goes, and with it every
    // producer and reader of the topic.
    let _ = gw.gateway.shutdown().await;

    let native = format!("/admin/v2/persistent/public/{namespace}/native");
    let (status, body) = pulsar.admin_call("PUT", &native, "");
    assert_eq!(status, 204, "{body}");

    // Wait until the broker's check has deleted the native topic (its first run is up to a
    // minute away), so the gateway's topic has been through it too.
    let started = Instant::now();
    loop {
        let (status, _) = pulsar.admin_call("GET", &format!("{native}/stats"), "");
        if status == 404 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(180),
            "the native topic was never deleted: is the inactive-topic check off?"
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    eprintln!("native topic deleted after {:?}", started.elapsed());
    let gw = InProcessGateway::start().await;
    let bootstrap = gw.bootstrap();
    let got = tokio::task::spawn_blocking(move || {
        consume_partitions(&bootstrap, &kafka_topic, 2, 200, Duration::from_secs(60))
    })
    .await
    .unwrap();
    assert_eq!(
        got.len(),
        200,
        "records of the gateway's topic after the check"
    );
}

/// DeleteRecords moves the low watermark: ListOffsets earliest reports it, a consumer reading
/// from the beginning starts there, and it never moves back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_records_moves_the_low_watermark() {
    let gw = InProcessGateway::start().await;
    let bootstrap = gw.bootstrap();
    let topic: &'static str = unique("delete-records").leak();
    create_topic(&bootstrap, topic, 1).await;
    let p = producer(&bootstrap, &[]);
    let mut offsets = Vec::new();
    for i in 0..50 {
        let delivery = p
            .send(
                rdkafka::producer::FutureRecord::<(), _>::to(topic)
                    .partition(0)
                    .payload(&format!("m{i}")),
                Duration::from_secs(10),
            )
            .await
            .unwrap_or_else(|(e, _)| panic!("m{i}: {e}"));
        offsets.push(delivery.offset);
    }
    let admin = admin(&bootstrap);
    let delete = |offset: i64| {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, 0, Offset::Offset(offset))
            .unwrap();
        let admin = &admin;
        async move {
            let done = admin
                .delete_records(&tpl, &AdminOptions::new())
                .await
                .expect("delete records");
            let p = done.find_partition(topic, 0).unwrap();
            (p.error(), p.offset())
        }
    };
    assert_eq!(
        delete(offsets[20]).await,
        (Ok(()), Offset::Offset(offsets[20]))
    );
    // Never back.
    assert_eq!(
        delete(offsets[5]).await,
        (Ok(()), Offset::Offset(offsets[20]))
    );

    let b = bootstrap.clone();
    let (low, high, rest) = tokio::task::spawn_blocking(move || {
        let c = consumer(&b);
        let (low, high) = c
            .fetch_watermarks(topic, 0, Duration::from_secs(10))
            .unwrap();
        (
            low,
            high,
            consume_partitions(&b, topic, 1, 30, Duration::from_secs(60)),
        )
    })
    .await
    .unwrap();
    assert_eq!((low, high), (offsets[20], offsets[49] + 1));
    assert_eq!(rest.len(), 30);
    assert_eq!(rest[0].1, offsets[20]);
    assert_eq!(rest[0].2.value.as_deref(), Some(&b"m20"[..]));
}

/// `message.timestamp.type=LogAppendTime` and `max.message.bytes` with librdkafka: the delivery
/// report and the consumer both get the append time, not the producer's timestamp, as
/// `LogAppendTime`; a record above the topic's limit fails with `MSG_SIZE_TOO_LARGE` (librdkafka
/// does not split batches) while smaller ones land. With `KAFKA_REFERENCE_BOOTSTRAP` set, it runs
/// against that Kafka broker instead of a gateway (how its expectations were proved).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn append_time_and_batch_limit_apply_to_produce() {
    use rdkafka::message::{Message, Timestamp};
    use rdkafka::producer::FutureRecord;

    let (_gw, bootstrap) = gateway_or_reference().await;
    let topic: &'static str = unique("append-time").leak();
    create_with_configs(
        &bootstrap,
        topic,
        &[
            ("message.timestamp.type", "LogAppendTime"),
            ("max.message.bytes", "2000"),
        ],
    )
    .await;

    let p = producer(&bootstrap, &[("linger.ms", "0")]);
    let hour_ago = rdkafka::util::millis_to_epoch(std::time::SystemTime::now()) - 3_600_000;
    let before = hour_ago + 3_600_000;
    let mut delivered = Vec::new();
    for i in 0..3 {
        let d = p
            .send(
                FutureRecord::<(), _>::to(topic)
                    .partition(0)
                    .payload(&format!("m{i}"))
                    .timestamp(hour_ago),
                Duration::from_secs(30),
            )
            .await
            .unwrap_or_else(|(e, _)| panic!("m{i}: {e}"));
        delivered.push(d);
    }
    let after = rdkafka::util::millis_to_epoch(std::time::SystemTime::now());
    for d in &delivered {
        match d.timestamp {
            Timestamp::LogAppendTime(t) => assert!(
                (before - 1000..=after + 1000).contains(&t),
                "append time {t} not in [{before}, {after}]"
            ),
            other => panic!("delivery report timestamp {other:?}"),
        }
    }
    let refused = p
        .send(
            FutureRecord::<(), _>::to(topic)
                .partition(0)
                .payload(&vec![7u8; 5000]),
            Duration::from_secs(30),
        )
        .await
        .expect_err("a 5,000-byte record over a 2,000-byte limit");
    assert_eq!(
        refused.0.rdkafka_error_code(),
        Some(rdkafka::types::RDKafkaErrorCode::MessageSizeTooLarge)
    );

    let b = bootstrap.clone();
    let read = tokio::task::spawn_blocking(move || {
        let c = consumer(&b);
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, 0, Offset::Beginning)
            .unwrap();
        c.assign(&tpl).unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut read = Vec::new();
        while read.len() < 3 && Instant::now() < deadline {
            match c.poll(Duration::from_millis(200)) {
                Some(Ok(m)) => read.push((m.offset(), m.timestamp())),
                Some(Err(rdkafka::error::KafkaError::Subscription(_))) | None => {}
                Some(Err(e)) => panic!("consume failed: {e}"),
            }
        }
        read
    })
    .await
    .unwrap();
    let expected: Vec<_> = delivered.iter().map(|d| (d.offset, d.timestamp)).collect();
    assert_eq!(read, expected);
}

/// A compacted topic is read compacted, as on Kafka: once compaction has run, a consumer reading
/// from the beginning gets each key's latest value only, at the offset it was acknowledged with,
/// then what came after. A record without a key is refused there (`INVALID_RECORD`). On Pulsar
/// the test starts Pulsar's compaction through its admin API; against a Kafka broker
/// (`KAFKA_REFERENCE_BOOTSTRAP`, how the expectations were proved) short segments let its log
/// cleaner do it. The embedded backend does not compact, so it runs on those two only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a real Pulsar (GATEWAY_TEST_BACKEND=pulsar) or KAFKA_REFERENCE_BOOTSTRAP, run with --include-ignored"]
async fn compacted_topics_are_read_compacted() {
    use rdkafka::message::Message;
    use rdkafka::producer::FutureRecord;
    use std::collections::BTreeMap;

    let reference = std::env::var("KAFKA_REFERENCE_BOOTSTRAP").ok();
    let pulsar = test_pulsar();
    assert!(
        reference.is_some() || pulsar.is_some(),
        "needs GATEWAY_TEST_BACKEND=pulsar or KAFKA_REFERENCE_BOOTSTRAP"
    );
    let (_gw, bootstrap) = gateway_or_reference().await;
    let topic: &'static str = unique("compacted").leak();
    create_with_configs(
        &bootstrap,
        topic,
        &[
            ("cleanup.policy", "compact"),
            ("segment.ms", "100"),
            ("min.cleanable.dirty.ratio", "0.01"),
        ],
    )
    .await;

    // Ten keys written five times each, in batches that mix keys.
    let p = producer(&bootstrap, &[("linger.ms", "20")]);
    let mut latest = BTreeMap::new();
    for round in 0..5 {
        let sends: Vec<_> = (0..10)
            .map(|k| {
                let (key, value) = (format!("k{k}"), format!("k{k}-round{round}"));
                let delivery = p
                    .send_result(
                        FutureRecord::to(topic)
                            .partition(0)
                            .key(&key)
                            .payload(&value),
                    )
                    .map_err(|(e, _)| e)
                    .expect("queued");
                (key, value, delivery)
            })
            .collect();
        for (key, value, delivery) in sends {
            let d = delivery.await.expect("delivered").expect("acknowledged");
            latest.insert(key, (d.offset, value));
        }
    }
    let refused = p
        .send(
            FutureRecord::<(), _>::to(topic)
                .partition(0)
                .payload("no key"),
            Duration::from_secs(30),
        )
        .await
        .expect_err("a record without a key on a compacted topic");
    assert_eq!(
        refused.0.rdkafka_error_code(),
        Some(rdkafka::types::RDKafkaErrorCode::InvalidRecord)
    );
    // On Kafka a later record rolls the segment (segment.ms), so the cleaner may compact
    // everything before it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let tail = p
        .send(
            FutureRecord::to(topic)
                .partition(0)
                .key("tail")
                .payload("tail"),
            Duration::from_secs(30),
        )
        .await
        .expect("tail");
    latest.insert("tail".to_owned(), (tail.offset, "tail".to_owned()));
    drop(p);

    if let (None, Some(pulsar)) = (&reference, &pulsar) {
        let path = format!("/admin/v2/persistent/public/default/{topic}-partition-0/compaction");
        let (status, body) = pulsar.admin_call("PUT", &path, "");
        assert_eq!(status, 204, "{body}");
    }

    let expected: Vec<(i64, String, String)> = {
        let mut v: Vec<_> = latest
            .iter()
            .map(|(k, (offset, value))| (*offset, k.clone(), value.clone()))
            .collect();
        v.sort();
        v
    };
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut attempts = 0;
    loop {
        attempts += 1;
        let b = bootstrap.clone();
        let end = tail.offset + 1;
        let read = tokio::task::spawn_blocking(move || {
            let c = consumer(&b);
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition_offset(topic, 0, Offset::Beginning)
                .unwrap();
            c.assign(&tpl).unwrap();
            let until = Instant::now() + Duration::from_secs(30);
            let mut read = Vec::new();
            while Instant::now() < until {
                match c.poll(Duration::from_millis(200)) {
                    Some(Ok(m)) => {
                        let key = String::from_utf8_lossy(m.key().unwrap_or_default()).into();
                        let value = String::from_utf8_lossy(m.payload().unwrap_or_default());
                        read.push((m.offset(), key, value.into_owned()));
                        if m.offset() + 1 >= end {
                            break;
                        }
                    }
                    Some(Err(rdkafka::error::KafkaError::Subscription(_))) | None => {}
                    Some(Err(e)) => panic!("consume failed: {e}"),
                }
            }
            read
        })
        .await
        .unwrap();
        if read == expected {
            eprintln!(
                "read compacted after {attempts} reads: {} records",
                read.len()
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not compacted: read {} records, expected {}: {read:?}",
            read.len(),
            expected.len()
        );
        assert_eq!(read.last(), expected.last(), "the read ends at the tail");
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}
