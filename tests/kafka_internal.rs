//! The internal listener of a fleet (DESIGN.md §5 "Groups", §8), where instances forward the
//! group requests of groups another instance coordinates: a peer must prove the fleet's shared
//! secret (`kafka.internal_secret`, SASL/PLAIN as `gateway-peer`) before anything is served, and
//! is then served the group APIs only.
//!
//! - a fleet whose instances share the secret runs a librdkafka consumer group through an
//!   instance that does not coordinate it (every group request forwarded);
//! - an instance with another secret gets nothing forwarded;
//! - over a raw socket: requests without authentication, a wrong secret, a wrong user, a client's
//!   token, another mechanism and a silent connection are all refused and closed, and none of
//!   what they sent reaches the coordinator (not even in a tenant's scoped form);
//! - an authenticated peer's Produce, Metadata, Fetch and FindCoordinator are refused (connection
//!   closed) and write or create nothing, and ApiVersions lists the group APIs only.
//! - a gateway at trace level logs peer authentications and refusals, never a secret.
//!
//! On the embedded backend: the instances of a fleet share one backend in this process.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use e2e_tests::backends::{BackendFixture, EmbeddedFixture};
use e2e_tests::kafka_raw::{connect, request, response};
use e2e_tests::rdkafka_util::{poll_payloads, send_numbered, unique};
use gateway_core::TopicName;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, FetchRequest, FindCoordinatorRequest, GroupId,
    JoinGroupRequest, ListGroupsRequest, ListGroupsResponse, MetadataRequest, OffsetCommitRequest,
    OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse, ProduceRequest, ProduceResponse,
    SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse,
    TopicName as KafkaTopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use pulsar_gateway::config::{GroupCoordination, Secret};
use pulsar_gateway::{Config, RunningGateway};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::FutureProducer;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

const SECRET: &str = "internal-listener-test-secret-0123";
const OTHER_SECRET: &str = "a-secret-of-another-fleet-456789";
/// Signs the tenant clients' tokens (HS256, as Pulsar's `tokenSecretKey`).
const TOKEN_KEY: &[u8] = b"internal-listener-token-key-0123456789";

const COMMIT_VERSION: i16 = 8;
const OFFSET_FETCH_VERSION: i16 = 7;

/// Instances in forward mode on one embedded backend, each with an internal listener and the
/// secret given for it.
struct Fleet {
    instances: Vec<RunningGateway>,
    fixture: EmbeddedFixture,
    _data: tempfile::TempDir,
}

impl Fleet {
    async fn start(secrets: &[&str], adjust: impl Fn(&mut Config)) -> Fleet {
        let data = tempfile::tempdir().unwrap();
        let fixture = EmbeddedFixture::new();
        let mut instances = Vec::new();
        for (i, secret) in secrets.iter().enumerate() {
            let mut config = Config::for_tests(data.path().join(i.to_string()));
            config.kafka.group_coordination = GroupCoordination::Forward;
            config.kafka.internal_listen = Some("127.0.0.1:0".parse().unwrap());
            config.kafka.internal_secret = Some(Secret::new(*secret));
            config.kafka.groups.initial_rebalance_delay_ms = 0;
            adjust(&mut config);
            instances.push(
                pulsar_gateway::start_with_backend(config, fixture.backend())
                    .await
                    .expect("gateway starts"),
            );
        }
        Fleet {
            instances,
            fixture,
            _data: data,
        }
    }

    /// Instance `i`'s internal listener, on the loopback address (it may be bound to all).
    fn internal(&self, i: usize) -> SocketAddr {
        let bound = self.instances[i]
            .kafka_internal_addr()
            .expect("an internal listener");
        SocketAddr::from(([127, 0, 0, 1], bound.port()))
    }

    /// The internal address of the instance holding the lease of `group`'s shard.
    async fn coordinator_of(&self, group: &str) -> Option<String> {
        let settings = gateway_kafka::groups::GroupSettings::default();
        let shard =
            gateway_kafka::groups::coordinator::fnv1a(group.as_bytes()) % settings.shards as u64;
        let topic = TopicName::new(
            "public",
            "default",
            &format!("__gateway_kafka_groups-{shard}"),
        );
        let holder = self.fixture.backend().lease_holder(&topic).await.unwrap()?;
        gateway_kafka::groups::coordinator::Instance::parse(&holder)?.internal
    }
}

fn kafka_topic(name: &str) -> KafkaTopicName {
    KafkaTopicName(StrBytes::from_string(name.to_owned()))
}

fn group_id(name: &str) -> GroupId {
    GroupId(StrBytes::from_string(name.to_owned()))
}

// ---- raw requests -----------------------------------------------------------------------------

/// SaslHandshake v1 for `mechanism`: (error code, mechanisms offered).
fn handshake(s: &mut TcpStream, mechanism: &str) -> Option<(i16, Vec<String>)> {
    let mut hs = SaslHandshakeRequest::default();
    hs.mechanism = StrBytes::from_string(mechanism.to_owned());
    s.write_all(&request(ApiKey::SaslHandshake, 1, 1, hs))
        .ok()?;
    let mut body = response(s, ApiKey::SaslHandshake, 1)?;
    let answer = SaslHandshakeResponse::decode(&mut body, 1).unwrap();
    let offered = answer.mechanisms.iter().map(|m| m.to_string()).collect();
    Some((answer.error_code, offered))
}

/// SaslAuthenticate v2 with PLAIN credentials `user` and `password`: the error code.
fn authenticate(s: &mut TcpStream, user: &str, password: &str) -> Option<i16> {
    let mut auth = SaslAuthenticateRequest::default();
    auth.auth_bytes = Bytes::from(format!("\0{user}\0{password}"));
    s.write_all(&request(ApiKey::SaslAuthenticate, 2, 2, auth))
        .ok()?;
    let mut body = response(s, ApiKey::SaslAuthenticate, 2)?;
    Some(
        SaslAuthenticateResponse::decode(&mut body, 2)
            .unwrap()
            .error_code,
    )
}

/// A connection to `addr` on which a peer proved `secret`.
fn peer(addr: SocketAddr, secret: &str) -> TcpStream {
    let mut s = connect(addr);
    assert_eq!(handshake(&mut s, "PLAIN").expect("handshake answered").0, 0);
    assert_eq!(
        authenticate(&mut s, "gateway-peer", secret),
        Some(0),
        "the peer authenticates"
    );
    s
}

/// OffsetCommit of `offset` for partition 0 of `topic` in `group` (no generation, as a
/// standalone consumer commits): the partition's error code, or `None` when the connection
/// was closed instead.
fn commit(s: &mut TcpStream, group: &str, topic: &str, offset: i64) -> Option<i16> {
    let mut p = OffsetCommitRequestPartition::default();
    p.partition_index = 0;
    p.committed_offset = offset;
    let mut t = OffsetCommitRequestTopic::default();
    t.name = kafka_topic(topic);
    t.partitions = vec![p];
    let mut r = OffsetCommitRequest::default();
    r.group_id = group_id(group);
    r.generation_id_or_member_epoch = -1;
    r.topics = vec![t];
    s.write_all(&request(ApiKey::OffsetCommit, COMMIT_VERSION, 3, r))
        .ok()?;
    let mut body = response(s, ApiKey::OffsetCommit, COMMIT_VERSION)?;
    let answer = OffsetCommitResponse::decode(&mut body, COMMIT_VERSION).unwrap();
    Some(answer.topics[0].partitions[0].error_code)
}

/// The committed offset of partition 0 of `topic` in `group` (-1: none).
fn committed(s: &mut TcpStream, group: &str, topic: &str) -> i64 {
    let mut t = OffsetFetchRequestTopic::default();
    t.name = kafka_topic(topic);
    t.partition_indexes = vec![0];
    let mut r = OffsetFetchRequest::default();
    r.group_id = group_id(group);
    r.topics = Some(vec![t]);
    s.write_all(&request(ApiKey::OffsetFetch, OFFSET_FETCH_VERSION, 4, r))
        .unwrap();
    let mut body = response(s, ApiKey::OffsetFetch, OFFSET_FETCH_VERSION).expect("answered");
    let answer = OffsetFetchResponse::decode(&mut body, OFFSET_FETCH_VERSION).unwrap();
    assert_eq!(answer.error_code, 0);
    let p = &answer.topics[0].partitions[0];
    assert_eq!(p.error_code, 0);
    p.committed_offset
}

/// The group ids ListGroups names.
fn listed_groups(s: &mut TcpStream) -> Vec<String> {
    s.write_all(&request(
        ApiKey::ListGroups,
        4,
        5,
        ListGroupsRequest::default(),
    ))
    .unwrap();
    let mut body = response(s, ApiKey::ListGroups, 4).expect("answered");
    let answer = ListGroupsResponse::decode(&mut body, 4).unwrap();
    answer
        .groups
        .iter()
        .map(|g| g.group_id.to_string())
        .collect()
}

/// Sends `body` as `key` and returns whether the gateway answered (rather than closing).
fn answered(s: &mut TcpStream, key: ApiKey, version: i16, body: impl Encodable) -> bool {
    if s.write_all(&request(key, version, 9, body)).is_err() {
        return false;
    }
    response(s, key, version).is_some()
}

/// Whether the gateway closes `s` within `limit`, reading nothing but the close.
fn closed_within(s: &mut TcpStream, limit: Duration) -> bool {
    s.set_read_timeout(Some(limit)).unwrap();
    let mut byte = [0u8; 1];
    matches!(s.read(&mut byte), Ok(0))
        || matches!(s.read(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset)
}

/// A Produce v8 of one record to partition 0 of `topic`, as a client sends it.
fn produce_request(topic: &str) -> ProduceRequest {
    let record = Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: -1,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence: -1,
        timestamp: 1_700_000_000_000,
        key: None,
        value: Some(Bytes::from_static(b"must not be written")),
        headers: Default::default(),
    };
    let mut records = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut records, &[record], &options).unwrap();
    let mut partition = PartitionProduceData::default();
    partition.index = 0;
    partition.records = Some(records.freeze());
    let mut data = TopicProduceData::default();
    data.name = kafka_topic(topic);
    data.partition_data = vec![partition];
    let mut produce = ProduceRequest::default();
    produce.acks = -1;
    produce.timeout_ms = 10_000;
    produce.topic_data = vec![data];
    produce
}

fn token(role: &str) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &serde_json::json!({"sub": role, "exp": now + 3600}),
        &jsonwebtoken::EncodingKey::from_secret(TOKEN_KEY),
    )
    .unwrap()
}

/// Runs raw-socket steps off the runtime's workers, which serve the gateways.
async fn raw<T: Send + 'static>(steps: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(steps).await.unwrap()
}

// ---- tests ------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_group_runs_through_a_fleet_whose_peers_prove_the_secret() {
    let fleet = Fleet::start(&[SECRET, SECRET], |_| {}).await;
    let (a, b) = (
        fleet.instances[0].kafka_addr(),
        fleet.instances[1].kafka_addr(),
    );
    let (topic, group) = (unique("internal-fleet"), unique("internal-fleet-group"));
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", a.to_string())
        .create()
        .unwrap();
    send_numbered(&producer, &topic, 5).await;
    // A first commit through B makes B the group's coordinator.
    let first = {
        let (group, topic) = (group.clone(), topic.clone());
        raw(move || commit(&mut connect(b), &group, &topic, 0)).await
    };
    assert_eq!(first, Some(0), "committed through B");
    assert_eq!(
        fleet.coordinator_of(&group).await,
        Some(fleet.internal(1).to_string()),
        "B coordinates the group"
    );

    // A member that only knows A: its joins, syncs, heartbeats, commits and offset fetches are
    // all forwarded to B's internal listener.
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", a.to_string())
        .set("group.id", &group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .create()
        .unwrap();
    consumer.subscribe(&[&topic]).unwrap();
    let (consumer, got) = poll_payloads(consumer, 5, Duration::from_secs(60)).await;
    assert_eq!(got, ["m0", "m1", "m2", "m3", "m4"], "resumed from offset 0");
    let (consumer, commit_result) =
        e2e_tests::blocking(consumer, |c| c.commit_consumer_state(CommitMode::Sync)).await;
    commit_result.expect("a commit forwarded to B");
    let (consumer, offsets) = e2e_tests::blocking(consumer, {
        let topic = topic.clone();
        move |c| {
            let mut partition = TopicPartitionList::new();
            partition.add_partition(&topic, 0);
            c.committed_offsets(partition, Duration::from_secs(10))
        }
    })
    .await;
    // Closing sends a LeaveGroup, forwarded too; librdkafka waits for its answer.
    raw(move || drop(consumer)).await;
    let offsets = offsets.expect("an offset fetch forwarded to B");
    let Offset::Offset(next) = offsets.elements()[0].offset() else {
        panic!("no committed offset: {offsets:?}");
    };
    assert!(
        next > 0,
        "the commit after the five records moved past 0: {next}"
    );
    // Stored by B, the coordinator.
    let stored = {
        let (group, topic) = (group.clone(), topic.clone());
        let b_internal = fleet.internal(1);
        raw(move || committed(&mut peer(b_internal, SECRET), &group, &topic)).await
    };
    assert_eq!(stored, next);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_with_another_secret_gets_nothing_forwarded() {
    let fleet = Fleet::start(&[OTHER_SECRET, SECRET], |_| {}).await;
    let (a, b) = (
        fleet.instances[0].kafka_addr(),
        fleet.instances[1].kafka_addr(),
    );
    let (topic, group) = (unique("internal-other"), unique("internal-other-group"));
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", b.to_string())
        .create()
        .unwrap();
    send_numbered(&producer, &topic, 1).await;
    let (through_b, through_a, stored) = {
        let (group, topic) = (group.clone(), topic.clone());
        raw(move || {
            let through_b = commit(&mut connect(b), &group, &topic, 1);
            let through_a = commit(&mut connect(a), &group, &topic, 9);
            (
                through_b,
                through_a,
                committed(&mut connect(b), &group, &topic),
            )
        })
        .await
    };
    assert_eq!(through_b, Some(0), "B coordinates the group");
    assert_eq!(
        fleet.coordinator_of(&group).await,
        Some(fleet.internal(1).to_string())
    );
    assert_eq!(
        through_a,
        Some(ResponseError::CoordinatorNotAvailable.code()),
        "B refuses A's secret, so A cannot pass the commit on"
    );
    assert_eq!(stored, 1, "A's commit never reached B");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_internal_listener_refuses_peers_without_the_secret() {
    let key = format!("data:;base64,{}", {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(TOKEN_KEY)
    });
    let fleet = Fleet::start(&[SECRET], |c| {
        c.auth.required = true;
        c.auth.token_secret_key = Some(key.clone());
        c.limits.auth_timeout = Duration::from_secs(1);
    })
    .await;
    let internal = fleet.internal(0);
    let client_token = token("tenant-a-app");
    let (topic, group) = (unique("internal-refused"), unique("internal-refused-group"));
    // A tenant client of `public/default`: its group is coordinated as `public/default/<group>`,
    // its topic named `public/default/<topic>` in commits; that is what a peer would forward.
    let client = |group: &str| {
        let mut c = ClientConfig::new();
        c.set(
            "bootstrap.servers",
            fleet.instances[0].kafka_addr().to_string(),
        )
        .set("security.protocol", "SASL_PLAINTEXT")
        .set("sasl.mechanisms", "PLAIN")
        .set("sasl.username", "public/default")
        .set("sasl.password", format!("token:{client_token}"))
        .set("group.id", group);
        c
    };
    let producer: FutureProducer = client(&group).create().unwrap();
    send_numbered(&producer, &topic, 1).await;
    let (scoped_group, scoped_topic) = (
        format!("public/default/{group}"),
        format!("public/default/{topic}"),
    );

    let outcomes = {
        let (g, t, token) = (
            scoped_group.clone(),
            scoped_topic.clone(),
            client_token.clone(),
        );
        raw(move || {
            let mut outcomes = Vec::new();
            // No authentication: the commit, and a join, close the connection unanswered.
            let mut s = connect(internal);
            outcomes.push(("commit without SASL", commit(&mut s, &g, &t, 42)));
            let mut join = JoinGroupRequest::default();
            join.group_id = group_id(&g);
            join.session_timeout_ms = 10_000;
            join.rebalance_timeout_ms = 10_000;
            join.protocol_type = StrBytes::from_static_str("consumer");
            let mut s = connect(internal);
            let joined = answered(&mut s, ApiKey::JoinGroup, 5, join);
            outcomes.push(("join without SASL", joined.then_some(0)));
            // Wrong credentials: SASL_AUTHENTICATION_FAILED, then the connection is closed.
            let token_password = format!("token:{token}");
            for (case, user, password) in [
                ("a wrong secret", "gateway-peer", OTHER_SECRET),
                ("a secret with a byte missing", "gateway-peer", &SECRET[1..]),
                ("an empty password", "gateway-peer", ""),
                ("the secret as another user", "public/default", SECRET),
                (
                    "a client's valid token",
                    "public/default",
                    token_password.as_str(),
                ),
            ] {
                let mut s = connect(internal);
                assert_eq!(
                    handshake(&mut s, "PLAIN"),
                    Some((0, vec!["PLAIN".to_owned()])),
                    "{case}: only PLAIN is offered"
                );
                assert_eq!(
                    authenticate(&mut s, user, password),
                    Some(ResponseError::SaslAuthenticationFailed.code()),
                    "{case}"
                );
                outcomes.push((case, commit(&mut s, &g, &t, 42)));
            }
            // Another mechanism is not offered; what follows is unauthenticated.
            let mut s = connect(internal);
            assert_eq!(
                handshake(&mut s, "OAUTHBEARER"),
                Some((
                    ResponseError::UnsupportedSaslMechanism.code(),
                    vec!["PLAIN".to_owned()]
                ))
            );
            outcomes.push(("commit after OAUTHBEARER", commit(&mut s, &g, &t, 42)));
            // A connection that never authenticates is closed after the auth timeout (1 s).
            let mut silent = connect(internal);
            assert!(
                closed_within(&mut silent, Duration::from_secs(5)),
                "a silent connection is closed"
            );
            outcomes
        })
        .await
    };
    for (case, outcome) in &outcomes {
        assert_eq!(*outcome, None, "{case}: the connection closes unanswered");
    }

    // Nothing reached the coordinator: the tenant's group has no offset, and no member.
    let read_committed = |group: String, topic: String| async move {
        let consumer: BaseConsumer = client(&group).create().unwrap();
        let (_, offsets) = e2e_tests::blocking(consumer, move |c| {
            let mut partition = TopicPartitionList::new();
            partition.add_partition(&topic, 0);
            c.committed_offsets(partition, Duration::from_secs(10))
        })
        .await;
        offsets.expect("OffsetFetch").elements()[0].offset()
    };
    assert_eq!(
        read_committed(group.clone(), topic.clone()).await,
        Offset::Invalid,
        "the tenant's group has no committed offset"
    );
    let listed = {
        let g = scoped_group.clone();
        raw(move || {
            let mut s = peer(internal, SECRET);
            let listed = listed_groups(&mut s);
            (listed.contains(&g), listed)
        })
        .await
    };
    assert!(!listed.0, "no group was created: {:?}", listed.1);

    // The same commit from a peer that proved the secret is stored, and the tenant sees it:
    // the checks above would have seen the refused ones.
    let stored = {
        let (g, t) = (scoped_group.clone(), scoped_topic.clone());
        raw(move || commit(&mut peer(internal, SECRET), &g, &t, 1)).await
    };
    assert_eq!(stored, Some(0));
    assert_eq!(read_committed(group, topic).await, Offset::Offset(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_authenticated_peer_is_served_the_group_apis_only() {
    // Bound to every address, as in a container: connections arrive on an address other than
    // the bound one, and must still be taken for peers'.
    let fleet = Fleet::start(&[SECRET], |c| {
        c.kafka.internal_listen = Some("0.0.0.0:0".parse().unwrap());
        c.kafka.internal_advertised = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    let (internal, public) = (fleet.internal(0), fleet.instances[0].kafka_addr());
    let backend = fleet.fixture.backend();
    let existing = unique("internal-produce");
    let existing_topic = TopicName::new("public", "default", &existing);
    backend.create_topic(&existing_topic, 0).await.unwrap();
    let fresh = unique("internal-metadata");
    let group = unique("internal-apis-group");

    let (advertised, refused, group_commit) = {
        let (existing, fresh, group) = (existing.clone(), fresh.clone(), group.clone());
        raw(move || {
            let mut s = peer(internal, SECRET);
            s.write_all(&request(
                ApiKey::ApiVersions,
                3,
                1,
                ApiVersionsRequest::default(),
            ))
            .unwrap();
            let mut body = response(&mut s, ApiKey::ApiVersions, 3).expect("answered");
            let versions = ApiVersionsResponse::decode(&mut body, 3).unwrap();
            let advertised: BTreeSet<i16> = versions.api_keys.iter().map(|k| k.api_key).collect();

            let mut refused = Vec::new();
            let mut s = peer(internal, SECRET);
            refused.push((
                "Produce",
                answered(&mut s, ApiKey::Produce, 8, produce_request(&existing)),
            ));
            let mut metadata = MetadataRequest::default();
            let mut wanted = MetadataRequestTopic::default();
            wanted.name = Some(kafka_topic(&fresh));
            metadata.topics = Some(vec![wanted]);
            metadata.allow_auto_topic_creation = true;
            let mut s = peer(internal, SECRET);
            refused.push(("Metadata", answered(&mut s, ApiKey::Metadata, 9, metadata)));
            let mut fetch_partition = FetchPartition::default();
            fetch_partition.partition = 0;
            fetch_partition.partition_max_bytes = 1 << 20;
            let mut fetch_topic = FetchTopic::default();
            fetch_topic.topic = kafka_topic(&existing);
            fetch_topic.partitions = vec![fetch_partition];
            let mut fetch = FetchRequest::default();
            fetch.replica_id = (-1).into();
            fetch.max_wait_ms = 100;
            fetch.max_bytes = 1 << 20;
            fetch.topics = vec![fetch_topic];
            let mut s = peer(internal, SECRET);
            refused.push(("Fetch", answered(&mut s, ApiKey::Fetch, 12, fetch)));
            let mut find = FindCoordinatorRequest::default();
            find.key = StrBytes::from_string(group.clone());
            let mut s = peer(internal, SECRET);
            refused.push((
                "FindCoordinator",
                answered(&mut s, ApiKey::FindCoordinator, 3, find),
            ));
            // A group API on an authenticated connection is served.
            let group_commit = commit(&mut peer(internal, SECRET), &group, &existing, 0);
            (advertised, refused, group_commit)
        })
        .await
    };
    let internal_keys: BTreeSet<i16> = gateway_kafka::api_versions::INTERNAL
        .iter()
        .map(|k| *k as i16)
        .collect();
    assert_eq!(
        advertised, internal_keys,
        "ApiVersions lists the group APIs"
    );
    for key in [ApiKey::JoinGroup, ApiKey::OffsetCommit, ApiKey::ListGroups] {
        assert!(advertised.contains(&(key as i16)), "{key:?}");
    }
    for key in [ApiKey::Produce, ApiKey::Fetch, ApiKey::Metadata] {
        assert!(!advertised.contains(&(key as i16)), "{key:?}");
    }
    for (api, was_answered) in &refused {
        assert!(!was_answered, "{api} on the internal listener is refused");
    }
    assert_eq!(group_commit, Some(0), "OffsetCommit is served");
    assert_eq!(
        backend.last_message_id(&existing_topic).await.unwrap(),
        None,
        "the refused Produce wrote nothing"
    );
    assert!(
        backend
            .topic_info(&TopicName::new("public", "default", &fresh))
            .await
            .unwrap()
            .is_none(),
        "the refused Metadata created no topic"
    );
    // The same Produce on the client listener is written: the check above would have seen it.
    let acknowledged = {
        let existing = existing.clone();
        raw(move || {
            let mut s = connect(public);
            s.write_all(&request(ApiKey::Produce, 8, 1, produce_request(&existing)))
                .unwrap();
            let mut body = response(&mut s, ApiKey::Produce, 8).expect("answered");
            let answer = ProduceResponse::decode(&mut body, 8).unwrap();
            answer.responses[0].partition_responses[0].error_code
        })
        .await
    };
    assert_eq!(acknowledged, 0);
    assert!(backend
        .last_message_id(&existing_topic)
        .await
        .unwrap()
        .is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_peer_secret_appears_in_a_trace_level_log() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("gateway.log");
    let (kafka, admin, internal) = (
        SocketAddr::from(([127, 0, 0, 1], e2e_tests::free_port())),
        SocketAddr::from(([127, 0, 0, 1], e2e_tests::free_port())),
        SocketAddr::from(([127, 0, 0, 1], e2e_tests::free_port())),
    );
    let gateway = e2e_tests::GatewayProcess::start_with_args(
        env!("CARGO_BIN_EXE_gateway-under-test"),
        &dir.path().join("data"),
        kafka,
        admin,
        Some(&log),
        &[
            "--log-level".into(),
            "trace".into(),
            "--kafka-group-coordination".into(),
            "forward".into(),
            "--kafka-internal-listen".into(),
            internal.to_string(),
            "--kafka-internal-secret".into(),
            SECRET.into(),
        ],
    );
    let group = unique("internal-log-group");
    raw(move || {
        // A peer that proves the secret and commits, and one that presents another.
        let answer = commit(&mut peer(internal, SECRET), &group, "some-topic", 0);
        assert!(answer.is_some(), "the authenticated peer is answered");
        let mut s = connect(internal);
        handshake(&mut s, "PLAIN").unwrap();
        assert_eq!(
            authenticate(&mut s, "gateway-peer", OTHER_SECRET),
            Some(ResponseError::SaslAuthenticationFailed.code())
        );
    })
    .await;
    gateway.kill();
    let text = std::fs::read_to_string(&log).unwrap();
    for event in [
        "peer authenticated on the internal listener",
        "peer authentication refused on the internal listener",
    ] {
        assert!(text.contains(event), "the log has '{event}'");
    }
    for secret in [SECRET, OTHER_SECRET] {
        assert!(!text.contains(secret), "the log holds a secret: {secret}");
    }
}
