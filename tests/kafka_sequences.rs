//! An idempotent producer whose sequence wraps from `i32::MAX` to 0, and a gateway restart after
//! the wrap: nothing may be dropped as a duplicate. And a batch resent to a new gateway instance
//! (no sequence state): it is answered with the offset it was written at. Pulsar's deduplication drops every entry whose
//! sequence id is not above the last one of that producer name, and Kafka clients take
//! DUPLICATE_SEQUENCE_NUMBER as success, so a sequence id that went backwards would lose records
//! silently. No client can be driven past 2^31 records in a test, so the batches are built here
//! and sent over a raw socket. On the embedded backend, or on the real Pulsar named by
//! `PULSAR_URL` when `GATEWAY_TEST_BACKEND=pulsar`.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use e2e_tests::backends::pulsar_config;
use e2e_tests::kafka_raw::{connect, request, response};
use e2e_tests::{own_group_state, test_pulsar};
use gateway_core::{BackendRef, EntryId, TopicName};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ApiKey, ProduceRequest, ProduceResponse};
use kafka_protocol::protocol::{Decodable, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use pulsar_gateway::{Config, RunningGateway};

const PRODUCE_VERSION: i16 = 8;

/// One record batch of `values` from an idempotent producer, its first record at `sequence`
/// (later ones follow it, wrapping after `i32::MAX` as Kafka's sequences do).
fn batch(producer_id: i64, epoch: i16, sequence: i32, values: &[&str]) -> Bytes {
    let records: Vec<Record> = values
        .iter()
        .enumerate()
        .map(|(i, value)| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id,
            producer_epoch: epoch,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // The encoder keeps records in one batch while offset - sequence stays the same
            // (in i32 arithmetic); only the base sequence goes on the wire.
            sequence: sequence.wrapping_add(i as i32),
            timestamp: 1_700_000_000_000,
            key: None,
            value: Some(Bytes::from(value.to_string())),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut buf, &records, &options).unwrap();
    buf.freeze()
}

/// Produces one batch to partition 0 of `topic` and returns (error code, base offset).
async fn produce(gateway: &RunningGateway, topic: &str, records: Bytes) -> (i16, i64) {
    let addr = gateway.kafka_addr();
    let mut partition = PartitionProduceData::default();
    partition.index = 0;
    partition.records = Some(records);
    let mut data = TopicProduceData::default();
    data.name = StrBytes::from_string(topic.to_owned()).into();
    data.partition_data = vec![partition];
    let mut produce = ProduceRequest::default();
    produce.acks = -1;
    produce.timeout_ms = 10_000;
    produce.topic_data = vec![data];
    tokio::task::spawn_blocking(move || {
        let mut s = connect(addr);
        s.write_all(&request(ApiKey::Produce, PRODUCE_VERSION, 1, produce))
            .unwrap();
        let mut body = response(&mut s, ApiKey::Produce, PRODUCE_VERSION).expect("answered");
        let answer = ProduceResponse::decode(&mut body, PRODUCE_VERSION).unwrap();
        let p = &answer.responses[0].partition_responses[0];
        (p.error_code, p.base_offset)
    })
    .await
    .unwrap()
}

/// The backend the tests write to: the Pulsar named by `PULSAR_URL` with
/// `GATEWAY_TEST_BACKEND=pulsar`, else an embedded one under `data`.
fn test_backend(data: &Path) -> BackendRef {
    match test_pulsar() {
        Some(_) => gateway_pulsar::PulsarBackend::new(pulsar_config().expect("PULSAR_URL"))
            .expect("pulsar backend"),
        None => gateway_embedded::EmbeddedBackend::open(&data.join("embedded"))
            .expect("embedded backend"),
    }
}

async fn gateway_on(backend: BackendRef, data: &Path) -> RunningGateway {
    let mut config = Config::for_tests(data);
    // On a Pulsar shared by many tests, group state of its own (see `own_group_state`).
    config.kafka.groups.state_topic = own_group_state(data);
    pulsar_gateway::start_with_backend(config, backend)
        .await
        .expect("gateway starts")
}

/// Every message value stored in `topic`, in order.
async fn stored_values(backend: &BackendRef, topic: &TopicName, expected: usize) -> Vec<String> {
    let mut reader = backend.open_reader(topic, EntryId::EARLIEST).await.unwrap();
    let mut values = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while values.len() < expected && tokio::time::Instant::now() < deadline {
        for entry in reader
            .read(100, 1 << 20, Duration::from_millis(500))
            .await
            .unwrap()
        {
            for m in entry.messages {
                values.push(String::from_utf8(m.value.unwrap().to_vec()).unwrap());
            }
        }
    }
    // Anything written twice would show up behind the expected records.
    values.extend(
        reader
            .read(100, 1 << 20, Duration::from_millis(500))
            .await
            .unwrap()
            .into_iter()
            .flat_map(|e| e.messages)
            .map(|m| String::from_utf8(m.value.unwrap().to_vec()).unwrap()),
    );
    values
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrapped_sequence_loses_nothing_across_a_gateway_restart() {
    let data = tempfile::tempdir().unwrap();
    let backend = test_backend(data.path());
    let name = format!("wrap-{}", rand::random::<u32>());
    let topic = TopicName::new("public", "default", &name);
    backend.create_topic(&topic, 0).await.unwrap();
    let producer = rand::random::<i64>() & ((1 << 62) - 1);

    let first = gateway_on(backend.clone(), data.path()).await;
    let mut offsets = Vec::new();
    for (sequence, values) in [
        (i32::MAX - 3, &["a", "b"][..]),
        (i32::MAX - 1, &["c", "d", "e"][..]), // MAX-1, MAX, then 0 of the first wrap
        (1, &["f", "g"][..]),
    ] {
        let (error, offset) = produce(&first, &name, batch(producer, 0, sequence, values)).await;
        assert_eq!(
            error,
            0,
            "batch at sequence {sequence} answered {:?}",
            ResponseError::try_from_code(error)
        );
        offsets.push(offset);
    }
    first.shutdown().await;

    // A new instance: no sequence state, so the wrap count comes from the backend.
    let second = gateway_on(backend.clone(), data.path()).await;
    let resent = produce(&second, &name, batch(producer, 0, 1, &["f", "g"])).await;
    assert_eq!(
        resent,
        (0, offsets[2]),
        "a resend of the last batch is recognised as written, at its offset"
    );
    for (sequence, values) in [(3, &["h"][..]), (4, &["i", "j"][..])] {
        let (error, offset) = produce(&second, &name, batch(producer, 0, sequence, values)).await;
        assert_eq!(
            error,
            0,
            "after the restart, batch at sequence {sequence} answered {:?}",
            ResponseError::try_from_code(error)
        );
        offsets.push(offset);
    }
    second.shutdown().await;

    assert!(
        offsets.windows(2).all(|w| w[0] < w[1]),
        "offsets grow: {offsets:?}"
    );
    assert_eq!(
        stored_values(&backend, &topic, 10).await,
        ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"]
    );
}

/// A batch whose receipt the client never got is resent, and reaches an instance with no
/// sequence state for its producer (as after a gateway restart, or when the producer reconnects
/// elsewhere): the backend's deduplication drops it, and the answer is the offset the first
/// send was written at, as a Kafka broker answers a retry of a recent batch. Before, it was
/// DUPLICATE_SEQUENCE_NUMBER with offset -1, which librdkafka reports as -1, 0, 1, ... for the
/// batch's records. Also for a batch of more than 4,096 records (two entries): the first
/// entry's offset. Nothing is written twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_resent_to_a_new_instance_gets_its_original_offset() {
    let data = tempfile::tempdir().unwrap();
    let backend = test_backend(data.path());
    let name = format!("resend-{}", rand::random::<u32>());
    let topic = TopicName::new("public", "default", &name);
    backend.create_topic(&topic, 0).await.unwrap();
    let producer = rand::random::<i64>() & ((1 << 62) - 1);
    let large: Vec<String> = (0..5_000).map(|i| format!("large-{i}")).collect();
    let large: Vec<&str> = large.iter().map(String::as_str).collect();
    let batches = [
        (0, &["a", "b", "c"][..]),
        (3, &large[..]),
        (5_003, &["d"][..]),
    ];

    let first = gateway_on(backend.clone(), data.path()).await;
    let mut offsets = Vec::new();
    for (sequence, values) in batches {
        let (error, offset) = produce(&first, &name, batch(producer, 0, sequence, values)).await;
        assert_eq!(error, 0, "batch at {sequence}");
        offsets.push(offset);
    }
    first.shutdown().await;

    for (i, (sequence, values)) in batches.into_iter().enumerate() {
        let fresh = gateway_on(backend.clone(), data.path()).await;
        let resent = produce(&fresh, &name, batch(producer, 0, sequence, values)).await;
        assert_eq!(
            resent,
            (0, offsets[i]),
            "the resend of the batch at {sequence} (error {:?})",
            ResponseError::try_from_code(resent.0)
        );
        fresh.shutdown().await;
    }

    // The producer carries on after the resends.
    let last = gateway_on(backend.clone(), data.path()).await;
    let (error, offset) = produce(&last, &name, batch(producer, 0, 5_004, &["e"])).await;
    assert_eq!(error, 0);
    assert!(offset > offsets[2]);
    last.shutdown().await;

    let mut expected = vec!["a", "b", "c"];
    expected.extend(&large);
    expected.extend(["d", "e"]);
    assert_eq!(
        stored_values(&backend, &topic, expected.len()).await,
        expected,
        "everything once, in order"
    );
}
