//! Kafka transactions with librdkafka (the `rdkafka` crate): a transactional producer commits and
//! aborts, a `read_committed` consumer (librdkafka's default isolation) sees exactly the
//! committed records in order, an open transaction holds back what was written after it, a second
//! producer with the same `transactional.id` fences the first, and a transaction left open past
//! `transaction.timeout.ms` is aborted by the coordinator. Runs on the embedded backend, and on a
//! real Pulsar started with `compat-suites/pulsar/start --transactions` when
//! `GATEWAY_TEST_BACKEND=pulsar`.

use std::time::{Duration, Instant};

use e2e_tests::rdkafka_util::*;
use e2e_tests::InProcessGateway;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

/// Hang guard for client calls that talk to the coordinator.
const CALL: Duration = Duration::from_secs(60);

fn transactional(bootstrap: &str, id: &str, extra: &[(&str, &str)]) -> FutureProducer {
    let mut settings = vec![("transactional.id", id)];
    settings.extend_from_slice(extra);
    let producer = producer(bootstrap, &settings);
    producer.init_transactions(CALL).expect("init transactions");
    producer
}

async fn send(producer: &FutureProducer, topic: &str, partition: i32, value: &str) {
    producer
        .send(
            FutureRecord::<str, str>::to(topic)
                .partition(partition)
                .key(value)
                .payload(value),
            CALL,
        )
        .await
        .map_err(|(e, _)| e)
        .expect("send");
}

/// A consumer of `partitions` of `topic` from the beginning, with `isolation`.
fn reader(bootstrap: &str, topic: &str, partitions: i32, isolation: &str) -> BaseConsumer {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", unique("txn-reader"))
        .set("enable.auto.commit", "false")
        .set("isolation.level", isolation)
        .set("fetch.wait.max.ms", "100")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    consumer
}

/// Values read until `want` arrived and then `quiet` brought nothing more (or `limit` passed),
/// as (partition, value) in arrival order.
fn read_values(
    consumer: &BaseConsumer,
    want: usize,
    quiet: Duration,
    limit: Duration,
) -> Vec<(i32, String)> {
    let deadline = Instant::now() + limit;
    let mut got = Vec::new();
    let mut last = Instant::now();
    while Instant::now() < deadline && (got.len() < want || last.elapsed() < quiet) {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                let value = String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned();
                got.push((m.partition(), value));
                last = Instant::now();
            }
            Some(Err(KafkaError::Subscription(_))) | None => {}
            Some(Err(e)) => panic!("consume failed: {e}"),
        }
    }
    got
}

fn values_of(read: &[(i32, String)], partition: i32) -> Vec<String> {
    read.iter()
        .filter(|(p, _)| *p == partition)
        .map(|(_, v)| v.clone())
        .collect()
}

fn numbered(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_records_are_read_and_aborted_ones_never() {
    let gw = InProcessGateway::start().await;
    let bootstrap = gw.gateway.kafka_addr().to_string();
    let topic = unique("txn-commit");
    create_topic(&bootstrap, &topic, 2).await;
    let producer = transactional(&bootstrap, &unique("txn-id"), &[]);

    producer.begin_transaction().unwrap();
    for v in numbered("c", 10) {
        send(&producer, &topic, 0, &v).await;
    }
    send(&producer, &topic, 1, "c-p1").await;
    producer.commit_transaction(CALL).expect("commit");

    producer.begin_transaction().unwrap();
    for v in numbered("a", 5) {
        send(&producer, &topic, 0, &v).await;
    }
    send(&producer, &topic, 1, "a-p1").await;
    producer.abort_transaction(CALL).expect("abort");

    producer.begin_transaction().unwrap();
    for v in numbered("d", 3) {
        send(&producer, &topic, 0, &v).await;
    }
    producer.commit_transaction(CALL).expect("commit");

    let consumer = reader(&bootstrap, &topic, 2, "read_committed");
    let read = read_values(&consumer, 14, Duration::from_secs(3), CALL);
    let mut expected = numbered("c", 10);
    expected.extend(numbered("d", 3));
    assert_eq!(values_of(&read, 0), expected, "partition 0, in order");
    assert_eq!(values_of(&read, 1), ["c-p1"], "partition 1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_transaction_holds_back_later_records() {
    let gw = InProcessGateway::start().await;
    let bootstrap = gw.gateway.kafka_addr().to_string();
    let topic = unique("txn-open");
    create_topic(&bootstrap, &topic, 1).await;
    let plain = producer(&bootstrap, &[]);
    send(&plain, &topic, 0, "before").await;
    let producer = transactional(&bootstrap, &unique("txn-id"), &[]);
    producer.begin_transaction().unwrap();
    send(&producer, &topic, 0, "inside").await;
    send(&plain, &topic, 0, "after").await;

    let consumer = reader(&bootstrap, &topic, 1, "read_committed");
    let read = read_values(&consumer, 1, Duration::from_secs(3), CALL);
    assert_eq!(
        values_of(&read, 0),
        ["before"],
        "nothing past the open transaction's first record"
    );
    producer.commit_transaction(CALL).expect("commit");
    let read = read_values(&consumer, 2, Duration::from_secs(1), CALL);
    assert_eq!(values_of(&read, 0), ["inside", "after"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_producer_with_the_same_id_fences_the_first() {
    let gw = InProcessGateway::start().await;
    let bootstrap = gw.gateway.kafka_addr().to_string();
    let topic = unique("txn-fence");
    create_topic(&bootstrap, &topic, 1).await;
    let id = unique("txn-id");
    let zombie = transactional(&bootstrap, &id, &[]);
    zombie.begin_transaction().unwrap();
    send(&zombie, &topic, 0, "zombie").await;

    let successor = transactional(&bootstrap, &id, &[]);
    let refused = zombie
        .commit_transaction(CALL)
        .expect_err("the fenced producer cannot commit");
    match &refused {
        KafkaError::Transaction(e) => assert!(
            e.is_fatal(),
            "fencing is fatal to the old producer: {refused}"
        ),
        other => panic!("unexpected error {other}"),
    }
    successor.begin_transaction().unwrap();
    send(&successor, &topic, 0, "successor").await;
    successor.commit_transaction(CALL).expect("commit");

    let consumer = reader(&bootstrap, &topic, 1, "read_committed");
    let read = read_values(&consumer, 1, Duration::from_secs(3), CALL);
    assert_eq!(
        values_of(&read, 0),
        ["successor"],
        "the fenced producer's transaction was aborted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_past_its_timeout_is_aborted() {
    let gw = InProcessGateway::start().await;
    let bootstrap = gw.gateway.kafka_addr().to_string();
    let topic = unique("txn-timeout");
    create_topic(&bootstrap, &topic, 1).await;
    let producer = transactional(
        &bootstrap,
        &unique("txn-id"),
        &[
            ("transaction.timeout.ms", "3000"),
            ("message.timeout.ms", "3000"),
        ],
    );
    producer.begin_transaction().unwrap();
    send(&producer, &topic, 0, "timed-out").await;
    let plain = e2e_tests::rdkafka_util::producer(&bootstrap, &[]);
    send(&plain, &topic, 0, "later").await;

    let consumer = reader(&bootstrap, &topic, 1, "read_committed");
    let started = Instant::now();
    let read = read_values(&consumer, 1, Duration::from_secs(2), CALL);
    assert_eq!(
        values_of(&read, 0),
        ["later"],
        "the coordinator aborted the transaction, which then no longer held readers back"
    );
    eprintln!(
        "timed-out transaction released readers after {:?}",
        started.elapsed()
    );
    assert!(
        producer.commit_transaction(CALL).is_err(),
        "a transaction aborted by its timeout cannot be committed"
    );
}

/// Consume-transform-produce: each batch's output and its consumed offsets commit in one
/// transaction (`send_offsets_to_transaction`); an aborted batch leaves neither, and is
/// processed again from the committed offset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_commit_with_the_transaction() {
    let gw = InProcessGateway::start().await;
    let bootstrap = gw.gateway.kafka_addr().to_string();
    let input = unique("txn-in");
    let output = unique("txn-out");
    create_topic(&bootstrap, &input, 1).await;
    create_topic(&bootstrap, &output, 1).await;
    let plain = e2e_tests::rdkafka_util::producer(&bootstrap, &[]);
    for v in numbered("in", 20) {
        send(&plain, &input, 0, &v).await;
    }
    let group = unique("txn-group");
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", &group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .set("fetch.wait.max.ms", "100")
        .create()
        .expect("consumer");
    consumer.subscribe(&[&input]).unwrap();
    let producer = transactional(&bootstrap, &unique("txn-id"), &[]);

    let mut done = 0;
    let mut batches = 0;
    let deadline = Instant::now() + CALL;
    while done < 20 {
        assert!(Instant::now() < deadline, "processed {done} of 20");
        let mut batch = Vec::new();
        while batch.len() < 5 && Instant::now() < deadline {
            match consumer.poll(Duration::from_millis(200)) {
                Some(Ok(m)) => batch.push((
                    m.offset(),
                    String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned(),
                )),
                Some(Err(e)) => panic!("consume failed: {e}"),
                None if !batch.is_empty() => break,
                None => {}
            }
        }
        batches += 1;
        producer.begin_transaction().unwrap();
        for (_, v) in &batch {
            send(&producer, &output, 0, &v.to_uppercase()).await;
        }
        let next = batch.last().expect("a batch").0 + 1;
        let mut offsets = TopicPartitionList::new();
        offsets
            .add_partition_offset(&input, 0, Offset::Offset(next))
            .unwrap();
        let metadata = consumer.group_metadata().expect("group metadata");
        producer
            .send_offsets_to_transaction(&offsets, &metadata, CALL)
            .expect("send offsets");
        if batches == 2 {
            // Abort the second batch, and read it again from the committed offset.
            producer.abort_transaction(CALL).expect("abort");
            let committed = consumer
                .committed(CALL)
                .expect("committed offsets")
                .find_partition(&input, 0)
                .map(|p| p.offset());
            let from = match committed {
                Some(Offset::Offset(o)) => Offset::Offset(o),
                _ => Offset::Beginning,
            };
            consumer.seek(&input, 0, from, CALL).expect("seek");
            continue;
        }
        producer.commit_transaction(CALL).expect("commit");
        done += batch.len();
    }

    let reader = reader(&bootstrap, &output, 1, "read_committed");
    let read = read_values(&reader, 20, Duration::from_secs(3), CALL);
    let expected: Vec<String> = numbered("in", 20)
        .iter()
        .map(|v| v.to_uppercase())
        .collect();
    assert_eq!(
        values_of(&read, 0),
        expected,
        "each input exactly once in the output"
    );
    // A new member of the group resumes after the last input.
    let end = consumer
        .fetch_watermarks(&input, 0, CALL)
        .expect("watermarks")
        .1;
    let committed = consumer.committed(CALL).expect("committed offsets");
    assert_eq!(
        committed.find_partition(&input, 0).map(|p| p.offset()),
        Some(Offset::Offset(end)),
        "the group's committed offset is the input's end"
    );
}

/// One pass of consume-transform-produce: the batch's output and its consumed offsets in one
/// transaction. `Err` when the transaction did not commit (the batch is then read again from
/// the committed offset).
async fn process_batch(
    producer: &FutureProducer,
    consumer: &BaseConsumer,
    input: &str,
    output: &str,
    batch: &[(i64, String)],
    before_commit: impl FnOnce(),
) -> Result<(), KafkaError> {
    producer.begin_transaction()?;
    for (_, v) in batch {
        producer
            .send(
                FutureRecord::<str, str>::to(output)
                    .partition(0)
                    .payload(&v.to_uppercase()),
                CALL,
            )
            .await
            .map_err(|(e, _)| e)?;
    }
    let mut offsets = TopicPartitionList::new();
    let next = batch.last().expect("a batch").0 + 1;
    offsets.add_partition_offset(input, 0, Offset::Offset(next))?;
    let metadata = consumer.group_metadata().expect("group metadata");
    producer.send_offsets_to_transaction(&offsets, &metadata, CALL)?;
    before_commit();
    producer.commit_transaction(CALL)
}

/// Consume-transform-produce through a gateway that is SIGKILLed in the middle of a
/// transaction (its records sent and its offsets added, not yet committed) and restarted on the
/// same data: the output read with `read_committed` holds each input exactly once, and the
/// group's committed offset ends at the input's end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_across_a_gateway_sigkill() {
    use e2e_tests::{free_port, GatewayProcess};
    use std::net::SocketAddr;

    const INPUTS: usize = 120;
    let binary = env!("CARGO_BIN_EXE_gateway-under-test");
    let data = tempfile::tempdir().expect("temp dir");
    let kafka = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let admin = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mut gateway = Some(GatewayProcess::start(binary, data.path(), kafka, admin));
    let bootstrap = kafka.to_string();
    let input = unique("eos-in");
    let output = unique("eos-out");
    create_topic(&bootstrap, &input, 1).await;
    create_topic(&bootstrap, &output, 1).await;
    let plain = e2e_tests::rdkafka_util::producer(&bootstrap, &[]);
    for v in numbered("in", INPUTS) {
        send(&plain, &input, 0, &v).await;
    }
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", unique("eos-group"))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .set("fetch.wait.max.ms", "100")
        .create()
        .expect("consumer");
    consumer.subscribe(&[&input]).unwrap();
    let id = unique("eos-id");
    let mut producer = transactional(&bootstrap, &id, &[]);

    let mut done = 0;
    let mut batches = 0;
    let mut failed = 0;
    let deadline = Instant::now() + Duration::from_secs(300);
    while done < INPUTS {
        assert!(
            Instant::now() < deadline,
            "processed {done} of {INPUTS} ({failed} failed transactions)"
        );
        let mut batch = Vec::new();
        while batch.len() < 10 && Instant::now() < deadline {
            match consumer.poll(Duration::from_millis(200)) {
                Some(Ok(m)) => batch.push((
                    m.offset(),
                    String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned(),
                )),
                // The gateway is restarting: the consumer reconnects.
                Some(Err(e)) => eprintln!("consumer: {e}"),
                None if !batch.is_empty() => break,
                None => {}
            }
        }
        if batch.is_empty() {
            continue;
        }
        batches += 1;
        let kill_now = batches == 4;
        let outcome = process_batch(&producer, &consumer, &input, &output, &batch, || {
            if kill_now {
                gateway.take().expect("running").kill();
                gateway = Some(GatewayProcess::start(binary, data.path(), kafka, admin));
            }
        })
        .await;
        match outcome {
            Ok(()) => done += batch.len(),
            Err(e) => {
                failed += 1;
                eprintln!("transaction of batch {batches} failed: {e}");
                let fatal = matches!(&e, KafkaError::Transaction(t) if t.is_fatal());
                if fatal || producer.abort_transaction(CALL).is_err() {
                    producer = transactional(&bootstrap, &id, &[]);
                }
                // Read the batch again from the group's committed offset.
                let committed = consumer
                    .committed(CALL)
                    .expect("committed offsets")
                    .find_partition(&input, 0)
                    .map(|p| p.offset());
                let from = match committed {
                    Some(Offset::Offset(o)) => Offset::Offset(o),
                    _ => Offset::Beginning,
                };
                consumer.seek(&input, 0, from, CALL).expect("seek");
            }
        }
    }
    eprintln!("{batches} transactions, {failed} failed");

    let reader = reader(&bootstrap, &output, 1, "read_committed");
    let read = read_values(&reader, INPUTS, Duration::from_secs(3), CALL);
    let expected: Vec<String> = numbered("in", INPUTS)
        .iter()
        .map(|v| v.to_uppercase())
        .collect();
    assert_eq!(
        values_of(&read, 0),
        expected,
        "each input exactly once in the output, in order"
    );
    let end = consumer
        .fetch_watermarks(&input, 0, CALL)
        .expect("watermarks")
        .1;
    assert_eq!(
        consumer
            .committed(CALL)
            .expect("committed offsets")
            .find_partition(&input, 0)
            .map(|p| p.offset()),
        Some(Offset::Offset(end)),
        "the group's committed offset is the input's end"
    );
}
