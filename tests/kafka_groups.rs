//! Consumer groups with librdkafka, each member its own process (`kafka-group-member`) so it can
//! be SIGKILLed like a crashed application: three members share six partitions and 60,000
//! records; midway one is killed (no LeaveGroup) and a fourth joins. Every record must be
//! consumed, and a record may be consumed twice only if an earlier delivery of it was never
//! covered by a successful commit (the uncommitted window); a redelivery of a committed record
//! means the coordinator handed out a stale offset. Runs with the eager range assignor, the
//! cooperative-sticky assignor and static membership, then across a gateway SIGKILL; committed
//! offsets are also checked against the group's mirrored subscription in the backend.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use e2e_tests::rdkafka_util::*;
use e2e_tests::{free_port, GatewayProcess, InProcessGateway};
use gateway_core::{BackendRef, TopicName};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

const MEMBER_BIN: &str = env!("CARGO_BIN_EXE_kafka-group-member");
const GATEWAY_BIN: &str = env!("CARGO_BIN_EXE_gateway-under-test");
const RECORDS: usize = 60_000;
/// The forward-mode fleet's shared secret (`--kafka-internal-secret`).
const FLEET_SECRET: &str = "kafka-groups-fleet-secret-0123456789";

struct Member {
    child: Child,
    log: PathBuf,
}

impl Member {
    fn spawn(
        bootstrap: &str,
        group: &str,
        topic: &str,
        dir: &Path,
        n: usize,
        assignor: &str,
        instance: Option<&str>,
    ) -> Member {
        let log = dir.join(format!("member-{n}.log"));
        let mut cmd = Command::new(MEMBER_BIN);
        cmd.args([
            bootstrap,
            group,
            topic,
            &log.display().to_string(),
            assignor,
        ]);
        if let Some(i) = instance {
            cmd.arg(i);
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn group member");
        Member { child, log }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One line of a member's log.
enum Event {
    Record(i32, i64),
    Commit(i32, i64),
}

fn read_log(path: &Path) -> Vec<Event> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let mut parts = line.split(' ');
            let kind = parts.next()?;
            let p: i32 = parts.next()?.parse().ok()?;
            let o: i64 = parts.next()?.parse().ok()?;
            match kind {
                "r" => Some(Event::Record(p, o)),
                "c" => Some(Event::Commit(p, o)),
                _ => None,
            }
        })
        .collect()
}

fn records_consumed(members: &[Member]) -> usize {
    members
        .iter()
        .map(|m| {
            read_log(&m.log)
                .iter()
                .filter(|e| matches!(e, Event::Record(..)))
                .count()
        })
        .sum()
}

fn unique_consumed(members: &[Member]) -> HashSet<(i32, i64)> {
    members
        .iter()
        .flat_map(|m| read_log(&m.log))
        .filter_map(|e| match e {
            Event::Record(p, o) => Some((p, o)),
            Event::Commit(..) => None,
        })
        .collect()
}

/// What the logs show.
#[derive(Debug, Default)]
struct Tally {
    deliveries: usize,
    unique: usize,
    duplicates: usize,
    /// Deliveries never covered by a commit of the member that consumed them.
    uncommitted: usize,
    /// Records delivered again although every earlier delivery had been committed.
    stale: Vec<(i32, i64)>,
}

/// Splits each member's log into ownership stints per partition (a stint ends when the
/// partition is delivered again from an offset at or below one already seen) and counts the
/// deliveries that no commit of that stint covered. Each redelivery needs one such delivery.
fn tally(members: &[Member]) -> Tally {
    let mut deliveries: HashMap<(i32, i64), usize> = HashMap::new();
    let mut uncommitted: HashMap<(i32, i64), usize> = HashMap::new();
    for member in members {
        // partition -> (offsets delivered in the current stint, highest commit in it)
        let mut stints: HashMap<i32, (Vec<i64>, i64)> = HashMap::new();
        let close = |stint: (Vec<i64>, i64), p: i32, out: &mut HashMap<(i32, i64), usize>| {
            for o in stint.0.into_iter().filter(|o| *o >= stint.1) {
                *out.entry((p, o)).or_default() += 1;
            }
        };
        for event in read_log(&member.log) {
            match event {
                Event::Record(p, o) => {
                    *deliveries.entry((p, o)).or_default() += 1;
                    let restarted = stints
                        .get(&p)
                        .is_some_and(|(seen, _)| seen.last().is_some_and(|last| o <= *last));
                    if restarted {
                        let old = stints.remove(&p).expect("present");
                        close(old, p, &mut uncommitted);
                    }
                    stints.entry(p).or_insert((Vec::new(), -1)).0.push(o);
                }
                Event::Commit(p, next) => {
                    let stint = stints.entry(p).or_insert((Vec::new(), -1));
                    stint.1 = stint.1.max(next);
                }
            }
        }
        for (p, stint) in stints {
            close(stint, p, &mut uncommitted);
        }
    }
    let mut t = Tally {
        deliveries: deliveries.values().sum(),
        unique: deliveries.len(),
        uncommitted: uncommitted.values().sum(),
        ..Tally::default()
    };
    for (key, n) in &deliveries {
        t.duplicates += n - 1;
        if n - 1 > uncommitted.get(key).copied().unwrap_or(0) {
            t.stale.push(*key);
        }
    }
    t.stale.sort();
    t
}

async fn wait_until(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Produces the records; returns every (partition, offset) acknowledged.
async fn fill(bootstrap: &str, topic: &str) -> HashSet<(i32, i64)> {
    create_topic(bootstrap, topic, PARTITIONS).await;
    let producer = producer(bootstrap, &[("linger.ms", "5")]);
    produce(&producer, topic, 0..RECORDS, 1_700_000_000_000)
        .await
        .into_keys()
        .collect()
}

/// Kills all members and checks the logs against what was produced.
fn verify(label: &str, members: &mut [Member], produced: &HashSet<(i32, i64)>) {
    for m in members.iter_mut() {
        m.kill();
    }
    let consumed = unique_consumed(members);
    let missing: Vec<_> = produced.difference(&consumed).take(5).collect();
    let unknown: Vec<_> = consumed.difference(produced).take(5).collect();
    let t = tally(members);
    eprintln!(
        "[{label}] produced {}, deliveries {}, unique {}, duplicates {}, uncommitted window {}, stale redeliveries {}",
        produced.len(),
        t.deliveries,
        t.unique,
        t.duplicates,
        t.uncommitted,
        t.stale.len()
    );
    assert!(
        missing.is_empty(),
        "[{label}] records never consumed, e.g. {missing:?}"
    );
    assert!(
        unknown.is_empty(),
        "[{label}] consumed offsets never produced, e.g. {unknown:?}"
    );
    assert!(
        t.stale.is_empty(),
        "[{label}] {} records were delivered again after a commit covered them, e.g. {:?}",
        t.stale.len(),
        &t.stale[..t.stale.len().min(5)]
    );
}

/// Three members, one killed after a third of the records, a fourth joining.
async fn kill_one_add_one(label: &str, gw: &InProcessGateway, assignor: &str, statics: bool) {
    let bootstrap = gw.bootstrap();
    let topic = unique("group-run");
    let group = unique("group");
    let produced = fill(&bootstrap, &topic).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let instance = |n: usize| statics.then(|| format!("member-{n}"));
    let mut members: Vec<Member> = (0..3)
        .map(|n| {
            Member::spawn(
                &bootstrap,
                &group,
                &topic,
                dir.path(),
                n,
                assignor,
                instance(n).as_deref(),
            )
        })
        .collect();
    wait_until(Duration::from_secs(120), "a third of the records", || {
        records_consumed(&members) >= RECORDS / 3
    })
    .await;
    members[0].kill();
    let killed_at = Instant::now();
    members.push(Member::spawn(
        &bootstrap,
        &group,
        &topic,
        dir.path(),
        3,
        assignor,
        instance(3).as_deref(),
    ));
    wait_until(Duration::from_secs(240), "every record", || {
        produced.is_subset(&unique_consumed(&members))
    })
    .await;
    eprintln!(
        "[{label}] all records consumed {:.1}s after the kill",
        killed_at.elapsed().as_secs_f64()
    );
    // Let the last batches' commits land before the members go.
    tokio::time::sleep(Duration::from_secs(1)).await;
    verify(label, &mut members, &produced);
    check_mirror(label, gw.gateway.backend(), &bootstrap, &topic, &group).await;
}

/// The group's committed offsets (OffsetFetch) against its subscription on each partition in
/// the backend: the backlog must match the lag, to within one entry.
async fn check_mirror(
    label: &str,
    backend: &BackendRef,
    bootstrap: &str,
    topic: &str,
    group: &str,
) {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .create()
        .expect("consumer");
    let mut wanted = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        wanted.add_partition(topic, p);
    }
    let committed = consumer
        .committed_offsets(wanted, Duration::from_secs(10))
        .expect("OffsetFetch");
    // The mirror applies commits once a second.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let base = TopicName::new("public", "default", topic);
    for p in 0..PARTITIONS {
        let Offset::Offset(next) = committed
            .find_partition(topic, p)
            .expect("partition")
            .offset()
        else {
            panic!("[{label}] partition {p} has no committed offset");
        };
        let (_, high) = e2e_tests::rdkafka_util::retry_retired_broker(|| {
            consumer.fetch_watermarks(topic, p, Duration::from_secs(10))
        })
        .expect("watermarks");
        let backlog = backend
            .backlog(&base.partition(p as u32), group)
            .await
            .unwrap_or_else(|e| panic!("[{label}] no subscription {group} on partition {p}: {e}"));
        eprintln!("[{label}] partition {p}: committed {next}, high watermark {high}, backlog {backlog} entries");
        if next >= high {
            assert!(
                backlog <= 1,
                "[{label}] partition {p}: lag 0 but backlog {backlog}"
            );
        } else {
            assert!(
                backlog >= 1,
                "[{label}] partition {p}: lag but empty backlog"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eager_range_group_survives_a_killed_member() {
    let gw = InProcessGateway::start().await;
    kill_one_add_one("range", &gw, "range", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cooperative_sticky_group_survives_a_killed_member() {
    let gw = InProcessGateway::start().await;
    kill_one_add_one("cooperative-sticky", &gw, "cooperative-sticky", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_members_survive_a_killed_member() {
    let gw = InProcessGateway::start().await;
    kill_one_add_one("static", &gw, "range", true).await;
}

/// A subscription positioned from a commit in the middle of the data has that much backlog.
/// The consumer group protocol (KIP-848): the coordinator assigns; a killed member's partitions
/// move once its session (10 s here, 45 s by default) lapses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_protocol_group_survives_a_killed_member() {
    let gw = InProcessGateway::start_with(|c| {
        c.kafka.groups.consumer_session_timeout_ms = 10_000;
        c.kafka.groups.consumer_heartbeat_interval_ms = 1_000;
    })
    .await;
    kill_one_add_one("consumer-uniform", &gw, "consumer:uniform", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_offsets_position_the_mirrored_subscription() {
    let gw = InProcessGateway::start().await;
    let bootstrap = gw.bootstrap();
    let topic = unique("mirror");
    create_topic(&bootstrap, &topic, 1).await;
    // One record per request, so each record is its own entry and backlog counts records.
    let producer = producer(
        &bootstrap,
        &[("linger.ms", "0"), ("batch.num.messages", "1")],
    );
    let mut offsets = Vec::new();
    for i in 0..20 {
        let d = enqueue(&producer, &topic, 0, &record(i, 1_700_000_000_000))
            .await
            .await
            .expect("delivery")
            .expect("delivered");
        offsets.push(d.offset);
    }
    let group = unique("mirror-group");
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", &group)
        .create()
        .expect("consumer");
    let backend = gw.gateway.backend();
    let partition = TopicName::new("public", "default", &topic).partition(0);
    for (next, expected_backlog) in [(offsets[12], 8u64), (offsets[19] + 1, 0), (offsets[0], 20)] {
        let mut commit = TopicPartitionList::new();
        commit
            .add_partition_offset(&topic, 0, Offset::Offset(next))
            .unwrap();
        consumer
            .commit(&commit, rdkafka::consumer::CommitMode::Sync)
            .expect("commit");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let backlog = backend
                .backlog(&partition, &group)
                .await
                .unwrap_or(u64::MAX);
            if backlog == expected_backlog {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "commit of offset {next}: backlog {backlog}, expected {expected_backlog}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// The gateway is SIGKILLed while the group consumes and started again on the same data: the
/// members resume from their committed offsets (no committed record is delivered again).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_resume_from_committed_offsets_after_gateway_sigkill() {
    let data = tempfile::tempdir().expect("temp dir");
    let kafka: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let admin: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let gateway = GatewayProcess::start(GATEWAY_BIN, data.path(), kafka, admin);
    let bootstrap = kafka.to_string();
    let topic = unique("group-sigkill");
    let group = unique("group");
    let produced = fill(&bootstrap, &topic).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let mut members: Vec<Member> = (0..3)
        .map(|n| Member::spawn(&bootstrap, &group, &topic, dir.path(), n, "range", None))
        .collect();
    wait_until(Duration::from_secs(120), "a third of the records", || {
        records_consumed(&members) >= RECORDS / 3
    })
    .await;
    gateway.kill();
    let _gateway = GatewayProcess::start(GATEWAY_BIN, data.path(), kafka, admin);
    wait_until(Duration::from_secs(240), "every record", || {
        produced.is_subset(&unique_consumed(&members))
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    verify("gateway-sigkill", &mut members, &produced);
}

/// How clients reach a fleet's instances.
#[derive(Clone, Copy, PartialEq)]
enum Fleet {
    /// Each instance at its own address with its own node id; FindCoordinator names the owner.
    Addressable,
    /// All instances behind one balancer address; instances forward to the owner.
    Forward,
}

/// Three gateways on one Pulsar. Three members whose connections land on different instances
/// read 60,000 records; a quarter in, one member is SIGKILLed and another joins (a rebalance
/// across instances); half-way, the instance coordinating the group is SIGKILLed. The shard's
/// lease comes free, another instance claims it and loads the group, commits resume within the
/// session timeout, every record is consumed and none is delivered again after a commit
/// covered it.
///
/// Each fleet has a namespace of its own: gateways sharing a namespace share its group shards,
/// so they are one fleet (the tests run in parallel on one Pulsar).
async fn fleet_run(label: &str, fleet: Fleet, assignor: &str) {
    // One state topic for the three instances: that makes them one fleet.
    const STATE_TOPIC: &str = "__gateway_kafka_groups";
    let backend: BackendRef = gateway_pulsar::PulsarBackend::new(
        e2e_tests::backends::pulsar_config().expect("GATEWAY_TEST_BACKEND=pulsar and PULSAR_URL"),
    )
    .expect("pulsar backend");
    let namespace = unique(label);
    e2e_tests::create_pulsar_namespace(&format!("public/{namespace}"));
    let balancer = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let balanced = balancer.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut gateways = Vec::new();
    let mut internals = Vec::new();
    let mut kafka_addrs = Vec::new();
    for n in 0..3 {
        let kafka: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let admin: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let internal = format!("127.0.0.1:{}", free_port());
        let mut extra: Vec<String> = vec![
            "--kafka-default-namespace".into(),
            namespace.clone(),
            "--kafka-group-state-topic".into(),
            STATE_TOPIC.into(),
            // The logs are shown when recovery is slow (see below).
            "--log-level".into(),
            "info".into(),
            // Sessions of the consumer group protocol as short as the classic members' own.
            "--kafka-consumer-group-session-timeout-ms".into(),
            "10000".into(),
            "--kafka-consumer-group-heartbeat-interval-ms".into(),
            "1000".into(),
        ];
        extra.extend(match fleet {
            Fleet::Addressable => vec!["--kafka-node-id".into(), (n + 1).to_string()],
            Fleet::Forward => vec![
                "--kafka-advertised".into(),
                balanced.clone(),
                "--kafka-group-coordination".into(),
                "forward".into(),
                "--kafka-internal-listen".into(),
                internal.clone(),
                "--kafka-internal-secret".into(),
                FLEET_SECRET.into(),
            ],
        });
        gateways.push(Some(GatewayProcess::start_with_args(
            GATEWAY_BIN,
            &dir.path().join(format!("gw{n}")),
            kafka,
            admin,
            Some(&dir.path().join(format!("gw{n}.log"))),
            &extra,
        )));
        internals.push(internal);
        kafka_addrs.push(kafka);
    }
    // Addressable: each member lists a different instance first. Forward: the balancer sends
    // each connection to the next instance.
    let bootstrap = |n: usize| match fleet {
        Fleet::Addressable => {
            let mut order: Vec<String> = kafka_addrs.iter().map(|a| a.to_string()).collect();
            order.rotate_left(n % 3);
            order.join(",")
        }
        Fleet::Forward => balanced.clone(),
    };
    tokio::spawn(round_robin(balancer, kafka_addrs.clone()));
    let topic = unique(label);
    let group = unique(&format!("{label}-group"));
    let produced = fill(&bootstrap(0), &topic).await;
    let members_dir = tempfile::tempdir().expect("temp dir");
    let spawn = |n: usize| {
        Member::spawn(
            &bootstrap(n),
            &group,
            &topic,
            members_dir.path(),
            n,
            assignor,
            None,
        )
    };
    let mut members: Vec<Member> = (0..3).map(spawn).collect();
    wait_until(Duration::from_secs(120), "a quarter of the records", || {
        records_consumed(&members) >= RECORDS / 4
    })
    .await;
    members[0].kill();
    members.push(spawn(3));
    wait_until(Duration::from_secs(120), "half of the records", || {
        records_consumed(&members) >= RECORDS / 2
    })
    .await;
    // The coordinator is the holder of the group's shard lease.
    let settings = gateway_kafka::groups::GroupSettings::default();
    let shard =
        gateway_kafka::groups::coordinator::fnv1a(group.as_bytes()) % settings.shards as u64;
    let shard_topic = TopicName::new("public", &namespace, &format!("{STATE_TOPIC}-{shard}"));
    let holder = backend
        .lease_holder(&shard_topic)
        .await
        .expect("lease holder")
        .expect("the group's shard has an owner");
    let owner = gateway_kafka::groups::coordinator::Instance::parse(&holder).expect("holder name");
    let index = match fleet {
        Fleet::Addressable => (owner.node_id - 1) as usize,
        Fleet::Forward => {
            assert_eq!(
                owner.port.to_string(),
                balanced.rsplit(':').next().unwrap(),
                "instances advertise the balancer"
            );
            internals
                .iter()
                .position(|i| Some(i) == owner.internal.as_ref())
                .expect("the holder names one of the instances' internal listeners")
        }
    };
    eprintln!("[{label}] coordinator is instance {index}: {holder}");
    let commits_before = commits(&members);
    gateways[index].take().expect("running").kill();
    let killed_at = Instant::now();
    wait_until(
        Duration::from_secs(60),
        "a commit after the coordinator died",
        || commits(&members) > commits_before + 6,
    )
    .await;
    let recovered = killed_at.elapsed();
    let new_holder = backend
        .lease_holder(&shard_topic)
        .await
        .expect("lease holder");
    eprintln!(
        "[{label}] commits resumed {:.1}s after the kill; the shard is now held by {new_holder:?}",
        recovered.as_secs_f64()
    );
    if recovered >= Duration::from_secs(15) {
        for n in 0..3 {
            let log =
                std::fs::read_to_string(dir.path().join(format!("gw{n}.log"))).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(60)..];
            eprintln!(
                "--- [{label}] gw{n}.log, last lines ---\n{}",
                tail.join("\n")
            );
        }
    }
    assert!(
        recovered < Duration::from_secs(15),
        "[{label}] the group took {recovered:?} to commit again (session timeout 10 s)"
    );
    assert_ne!(
        new_holder.as_deref(),
        Some(holder.as_str()),
        "[{label}] another instance took the shard over"
    );
    wait_until(Duration::from_secs(240), "every record", || {
        produced.is_subset(&unique_consumed(&members))
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    verify(label, &mut members, &produced);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a real Pulsar: GATEWAY_TEST_BACKEND=pulsar with PULSAR_URL/PULSAR_ADMIN_URL, run with --include-ignored"]
async fn fleet_of_three_rebalances_and_survives_losing_the_coordinator() {
    fleet_run("fleet", Fleet::Addressable, "range").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a real Pulsar: GATEWAY_TEST_BACKEND=pulsar with PULSAR_URL/PULSAR_ADMIN_URL, run with --include-ignored"]
async fn fleet_behind_one_address_forwards_to_the_coordinator() {
    fleet_run("fleet-lb", Fleet::Forward, "range").await;
}

/// The same with the consumer group protocol (KIP-848): heartbeats, commits and the Metadata
/// lookups of assigned topic ids land on any instance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a real Pulsar: GATEWAY_TEST_BACKEND=pulsar with PULSAR_URL/PULSAR_ADMIN_URL, run with --include-ignored"]
async fn fleet_behind_one_address_serves_the_consumer_group_protocol() {
    fleet_run("fleet-848", Fleet::Forward, "consumer:uniform").await;
}

fn commits(members: &[Member]) -> usize {
    members
        .iter()
        .map(|m| {
            read_log(&m.log)
                .iter()
                .filter(|e| matches!(e, Event::Commit(..)))
                .count()
        })
        .sum()
}

/// A small TCP round-robin balancer, as a load balancer in front of a fleet: each connection
/// goes to the next backend that accepts it.
async fn round_robin(listener: tokio::net::TcpListener, backends: Vec<std::net::SocketAddr>) {
    let mut next = 0usize;
    loop {
        let Ok((mut client, _)) = listener.accept().await else {
            return;
        };
        let start = next;
        next += 1;
        let backends = backends.clone();
        tokio::spawn(async move {
            for i in 0..backends.len() {
                let backend = backends[(start + i) % backends.len()];
                if let Ok(mut server) = tokio::net::TcpStream::connect(backend).await {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    return;
                }
            }
        });
    }
}

/// A JoinGroup waiting for a rebalance is answered NOT_COORDINATOR as soon as the gateway starts
/// draining, so the member moves on instead of waiting out the drain's grace period.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_gateway_answers_a_waiting_join() {
    use kafka_protocol::error::ResponseError;
    use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
    use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
    use kafka_protocol::messages::{
        ApiKey, GroupId, JoinGroupRequest, RequestKind, ResponseKind, SyncGroupRequest,
    };
    use kafka_protocol::protocol::StrBytes;

    let gw = InProcessGateway::start_with(|c| c.kafka.groups.initial_rebalance_delay_ms = 0).await;
    let addr = gw.bootstrap();
    let client = std::sync::Arc::new(gateway_kafka::groups::forward::Forwarder::default());
    let group = unique("drain-group");
    let join = {
        let (client, addr, group) = (client.clone(), addr.clone(), group.clone());
        move |member_id: String| {
            let (client, addr, group) = (client.clone(), addr.clone(), group.clone());
            async move {
                let mut protocol = JoinGroupRequestProtocol::default();
                protocol.name = StrBytes::from_static_str("range");
                let mut r = JoinGroupRequest::default();
                r.group_id = GroupId(StrBytes::from_string(group));
                r.session_timeout_ms = 10_000;
                r.rebalance_timeout_ms = 60_000;
                r.member_id = StrBytes::from_string(member_id);
                r.protocol_type = StrBytes::from_static_str("consumer");
                r.protocols = vec![protocol];
                match client
                    .forward(
                        &addr,
                        ApiKey::JoinGroup,
                        5,
                        "drain-test",
                        &RequestKind::JoinGroup(r),
                    )
                    .await
                    .expect("JoinGroup answered")
                {
                    ResponseKind::JoinGroup(a) => a,
                    other => panic!("unexpected answer {other:?}"),
                }
            }
        }
    };
    // Member A joins (first learning its id) and the group becomes stable with it alone.
    let a_id = join(String::new()).await.member_id.to_string();
    let a = join(a_id.clone()).await;
    assert_eq!((a.error_code, a.generation_id), (0, 1));
    let mut sync = SyncGroupRequest::default();
    sync.group_id = GroupId(StrBytes::from_string(group.clone()));
    sync.generation_id = 1;
    sync.member_id = StrBytes::from_string(a_id.clone());
    let mut assignment = SyncGroupRequestAssignment::default();
    assignment.member_id = StrBytes::from_string(a_id.clone());
    sync.assignments = vec![assignment];
    client
        .forward(
            &addr,
            ApiKey::SyncGroup,
            3,
            "drain-test",
            &RequestKind::SyncGroup(sync),
        )
        .await
        .expect("SyncGroup answered");
    // Member B's join starts a rebalance that waits for A to rejoin (up to 60 s).
    let b_id = join(String::new()).await.member_id.to_string();
    let waiting = tokio::spawn(join(b_id));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!waiting.is_finished(), "B's join waits for the rebalance");
    let drain_started = Instant::now();
    gw.gateway.shutdown_trigger().trigger();
    let answer = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("the waiting join is answered once the drain starts")
        .unwrap();
    assert_eq!(answer.error_code, ResponseError::NotCoordinator.code());
    eprintln!(
        "waiting JoinGroup answered NOT_COORDINATOR {:?} after the drain started",
        drain_started.elapsed()
    );
}

/// Answers already due go out before a request that waits: a member's heartbeat answered
/// while the next request on its connection (a commit Pulsar does not confirm, here a join
/// waiting for its rebalance) still waits must reach the member at once. Held back behind a
/// stream of slow commits during a Pulsar outage, heartbeat answers came too late and the
/// member's own session timed out in the client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_already_due_is_not_held_back_by_a_slow_request_behind_it() {
    use std::io::Write;

    use e2e_tests::kafka_raw::{connect, request, response};
    use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
    use kafka_protocol::messages::{
        ApiKey, ApiVersionsRequest, DescribeGroupsRequest, GroupId, JoinGroupRequest,
    };
    use kafka_protocol::protocol::StrBytes;

    // JoinGroup v3 (no MEMBER_ID_REQUIRED) of a new group waits for the initial rebalance
    // delay, 3 s, capped by the member's rebalance timeout.
    let gw = InProcessGateway::start().await;
    let (quick_group, slow_group) = (unique("quick-join"), unique("slow-join"));
    let join = |group: &str, rebalance_timeout_ms: i32, correlation: i32| {
        let mut protocol = JoinGroupRequestProtocol::default();
        protocol.name = StrBytes::from_static_str("range");
        let mut r = JoinGroupRequest::default();
        r.group_id = GroupId(StrBytes::from_string(group.to_owned()));
        r.session_timeout_ms = 10_000;
        r.rebalance_timeout_ms = rebalance_timeout_ms;
        r.protocol_type = StrBytes::from_static_str("consumer");
        r.protocols = vec![protocol];
        request(ApiKey::JoinGroup, 3, correlation, r)
    };
    let mut pipelined = join(&quick_group, 300, 1);
    pipelined.extend(request(
        ApiKey::ApiVersions,
        0,
        2,
        ApiVersionsRequest::default(),
    ));
    pipelined.extend(join(&slow_group, 10_000, 3));
    let mut s = connect(gw.gateway.kafka_addr());
    // A hang guard only: on a busy Pulsar (CI, 2 cores, other work beside it) the slow join once
    // went unanswered for the default 10 s.
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    // The groups' shards are claimed first (on Pulsar a topic and a lease each, over a second on
    // a fresh broker), so that the times below are the requests' own.
    let mut describe = DescribeGroupsRequest::default();
    describe.groups = [&quick_group, &slow_group]
        .map(|g| GroupId(StrBytes::from_string(g.clone())))
        .to_vec();
    s.write_all(&request(ApiKey::DescribeGroups, 0, 0, describe))
        .unwrap();
    response(&mut s, ApiKey::DescribeGroups, 0).expect("groups described");
    let sent = Instant::now();
    s.write_all(&pipelined).unwrap();
    let (quick, answers) = tokio::task::spawn_blocking(move || {
        response(&mut s, ApiKey::JoinGroup, 3).expect("quick join answered");
        response(&mut s, ApiKey::ApiVersions, 0).expect("ApiVersions answered");
        let quick = sent.elapsed();
        response(&mut s, ApiKey::JoinGroup, 3).expect("slow join answered");
        (quick, sent.elapsed())
    })
    .await
    .unwrap();
    eprintln!("first two answers after {quick:?}, the slow join's after {answers:?}");
    assert!(
        answers >= Duration::from_millis(2_500),
        "the slow join waits for its rebalance ({answers:?})"
    );
    assert!(
        quick < Duration::from_millis(1_500),
        "the answers due before the slow join are not held back by it ({quick:?})"
    );
}
