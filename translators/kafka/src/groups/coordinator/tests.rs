use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use gateway_core::backend::prelude::*;
use gateway_core::TopicName;
use kafka_protocol::error::ResponseError;

use super::{CommitRequest, GroupCoordinator, GroupSettings, Instance, Owner};
use crate::groups::faulty::Faulty;
use crate::groups::state::{JoinParams, Timing, NONE};

/// Sessions short enough to outlast in a test.
const SESSION: Duration = Duration::from_millis(800);

fn settings(node_id: i32) -> GroupSettings {
    GroupSettings {
        shards: 1,
        timing: Timing {
            initial_rebalance_delay: Duration::ZERO,
            min_session_timeout: Duration::from_millis(100),
            ..Timing::default()
        },
        commit_timeout: Duration::from_millis(300),
        instance: Instance {
            node_id,
            ..GroupSettings::default().instance
        },
        ..GroupSettings::default()
    }
}

fn faulty() -> (Arc<Faulty>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let embedded = gateway_embedded::EmbeddedBackend::open(dir.path()).unwrap();
    (Faulty::new(embedded), dir)
}

/// A consumer's JoinGroup for group `g`.
fn join_params(member_id: &str) -> JoinParams {
    JoinParams {
        member_id: member_id.to_owned(),
        instance_id: None,
        client_id: "client".into(),
        client_host: "/127.0.0.1".into(),
        session_timeout: SESSION,
        rebalance_timeout: Duration::from_secs(5),
        protocol_type: "consumer".into(),
        protocols: vec![("range".into(), Bytes::from_static(b"m"))],
        require_known_member_id: false,
        supports_skip_assignment: false,
    }
}

/// A member alone in group `g`, stable in its first generation with partition "p0".
async fn stable_member(c: &Arc<GroupCoordinator>) -> (String, i32) {
    let joined = c.join("g", join_params("")).await;
    assert_eq!((joined.error, joined.generation), (NONE, 1));
    let assignment = vec![(joined.member_id.clone(), Bytes::from_static(b"p0"))];
    let synced = c
        .sync("g", 1, &joined.member_id, None, None, None, assignment)
        .await;
    assert_eq!(synced.error, NONE);
    (joined.member_id, joined.generation)
}

/// The member heartbeats every 200 ms for `how_long`; each must be answered NONE.
async fn keep_heartbeating(
    c: &Arc<GroupCoordinator>,
    member: &str,
    generation: i32,
    how_long: Duration,
) {
    let until = Instant::now() + how_long;
    while Instant::now() < until {
        assert_eq!(c.heartbeat("g", generation, member, None).await, NONE);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until `c` coordinates group `g`: a dropped coordinator's timer may still be
/// finishing a pass, holding its lease a moment longer.
async fn claimed(c: &Arc<GroupCoordinator>) {
    let until = Instant::now() + Duration::from_secs(3);
    while c.owner_of("g").await != Ok(Owner::Local) {
        assert!(Instant::now() < until, "the shard's lease is free again");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn commit_of(offset: i64) -> Vec<CommitRequest> {
    vec![CommitRequest {
        topic: "t".into(),
        partition: 0,
        offset,
        leader_epoch: -1,
        metadata: None,
        pulsar_topic: TopicName::new("public", "default", "t"),
    }]
}

async fn committed(c: &Arc<GroupCoordinator>) -> Option<i64> {
    let found = c.fetch_offsets("g", None).await.unwrap();
    found
        .first()
        .and_then(|(_, _, c)| c.as_ref().map(|c| c.offset))
}

/// The outage measured on Pulsar: a commit whose write Pulsar never confirmed held up the
/// member's heartbeats behind it on its connection until its session lapsed. A commit is
/// answered REQUEST_TIMED_OUT after the commit timeout instead, later ones at once while
/// the write is still unconfirmed, and the member, heard all along, stays.
#[tokio::test]
async fn a_commit_pulsar_does_not_confirm_is_answered_in_time_and_the_member_stays() {
    let (backend, _dir) = faulty();
    let c = GroupCoordinator::new(settings(1), backend.clone());
    let (member, generation) = stable_member(&c).await;
    assert_eq!(
        c.commit("g", generation, &member, None, commit_of(1)).await,
        Ok(())
    );

    backend.stall(true);
    let first = tokio::time::timeout(
        Duration::from_secs(3),
        c.commit("g", generation, &member, None, commit_of(42)),
    )
    .await
    .expect("answered after the commit timeout, not when Pulsar answers");
    assert_eq!(first, Err(ResponseError::RequestTimedOut));
    let started = Instant::now();
    let second = c
        .commit("g", generation, &member, None, commit_of(43))
        .await;
    assert_eq!(second, Err(ResponseError::RequestTimedOut));
    assert!(
        started.elapsed() < Duration::from_millis(200),
        "refused at once while an earlier write waits for Pulsar"
    );
    keep_heartbeating(&c, &member, generation, 2 * SESSION).await;
    assert_eq!(committed(&c).await, Some(1), "not persisted yet");

    // Pulsar confirms the write after all: the offset the client was told timed out is
    // the group's now, as it is the table's.
    backend.stall(false);
    let until = Instant::now() + Duration::from_secs(3);
    while committed(&c).await != Some(42) && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(committed(&c).await, Some(42));
    assert_eq!(
        c.commit("g", generation, &member, None, commit_of(44))
            .await,
        Ok(())
    );
}

/// A commit handler resolves a partition the group has committed before from the group's
/// state, without asking Pulsar for the topic's partitions.
#[tokio::test]
async fn a_committed_partition_names_its_pulsar_topic() {
    let (backend, _dir) = faulty();
    let c = GroupCoordinator::new(settings(1), backend);
    assert_eq!(c.committed_topic("g", "t", 0), None);
    assert_eq!(c.commit("g", -1, "", None, commit_of(5)).await, Ok(()));
    let topic = TopicName::new("public", "default", "t");
    assert_eq!(c.committed_topic("g", "t", 0), Some(topic));
    assert_eq!(c.committed_topic("g", "t", 1), None);
    assert_eq!(c.committed_topic("other", "t", 0), None);
}

/// Settings with a retention short enough to pass in a test, looked at every 50 ms.
fn retaining(node_id: i32, retention: Duration) -> GroupSettings {
    GroupSettings {
        offsets_retention: retention,
        offsets_retention_check_interval: Duration::from_millis(50),
        mirror_interval: Duration::from_millis(50),
        ..settings(node_id)
    }
}

async fn listed(c: &Arc<GroupCoordinator>) -> Vec<String> {
    let (groups, _) = c.list().await.unwrap();
    groups.into_iter().map(|g| g.id).collect()
}

async fn wait_for<F: std::future::Future<Output = bool>>(what: &str, check: impl Fn() -> F) {
    let until = Instant::now() + Duration::from_secs(5);
    while !check().await {
        assert!(Instant::now() < until, "{what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Offsets of consumers that only commit expire a retention after their commit: they are
/// deleted from the table with the group's mirrored subscription, and the group, left with
/// nothing, disappears (ListGroups, and for whoever loads the shard next).
#[tokio::test]
async fn expired_offsets_go_with_their_subscription_and_the_group_with_them() {
    let (backend, _dir) = faulty();
    let topic = TopicName::new("public", "default", "t");
    backend.create_topic(&topic, 0).await.unwrap();
    let c = GroupCoordinator::new(retaining(1, Duration::from_millis(600)), backend.clone());
    assert_eq!(c.commit("g", -1, "", None, commit_of(0)).await, Ok(()));
    let subscribed = || async {
        let subscriptions = backend.subscriptions(&topic).await.unwrap();
        subscriptions.iter().any(|s| s == "g")
    };
    wait_for("the commit is mirrored to subscription g", subscribed).await;
    assert_eq!(listed(&c).await, ["g"]);

    wait_for("the offset expires", || async {
        committed(&c).await.is_none()
    })
    .await;
    assert!(listed(&c).await.is_empty(), "the group is gone");
    assert!(c.describe("g").await.unwrap().is_none());
    wait_for("the subscription is deleted", || async {
        !subscribed().await
    })
    .await;

    drop(c);
    let b = GroupCoordinator::new(retaining(2, Duration::from_secs(3600)), backend.clone());
    claimed(&b).await;
    assert!(listed(&b).await.is_empty(), "deleted in the table too");
    assert_eq!(committed(&b).await, None);
}

/// A group with a member keeps its offsets however old they are.
#[tokio::test]
async fn offsets_of_a_group_with_a_member_stay() {
    let (backend, _dir) = faulty();
    let c = GroupCoordinator::new(retaining(1, Duration::from_millis(300)), backend);
    let (member, generation) = stable_member(&c).await;
    assert_eq!(
        c.commit("g", generation, &member, None, commit_of(7)).await,
        Ok(())
    );
    keep_heartbeating(&c, &member, generation, Duration::from_millis(1200)).await;
    assert_eq!(committed(&c).await, Some(7));
    // Once it leaves, the clock starts.
    let left = c.leave("g", &[(member, None)]).await.unwrap();
    assert_eq!(left[0].1, NONE);
    assert_eq!(committed(&c).await, Some(7), "not at once");
    wait_for("the offset expires", || async {
        committed(&c).await.is_none()
    })
    .await;
    assert!(listed(&c).await.is_empty());
}

/// A new generation whose snapshot could not be written is written again once Pulsar
/// takes writes: whoever loads the shard next knows the member, instead of an older
/// generation (or none) that would make it rejoin.
#[tokio::test]
async fn membership_that_could_not_be_written_is_written_again() {
    let (backend, _dir) = faulty();
    let a = GroupCoordinator::new(settings(1), backend.clone());
    backend.fail_writes(true);
    let (member, generation) = stable_member(&a).await;
    backend.fail_writes(false);
    tokio::time::sleep(Duration::from_millis(500)).await;
    drop(a);
    let b = GroupCoordinator::new(settings(2), backend.clone());
    claimed(&b).await;
    assert_eq!(b.heartbeat("g", generation, &member, None).await, NONE);
}

/// The outage measured on Pulsar: the shard's lease lost (its connection to Pulsar died)
/// for longer than the member's session. Kafka's coordinator hears heartbeats without its
/// log, and so does this one: the member is answered from memory all along, a commit is
/// refused within the commit timeout, and once the lease is back the member carries on
/// with its member id and generation, and commits again.
#[tokio::test]
async fn a_member_heartbeats_through_a_lease_loss_longer_than_its_session() {
    let (backend, _dir) = faulty();
    let c = GroupCoordinator::new(settings(1), backend.clone());
    let (member, generation) = stable_member(&c).await;
    assert_eq!(
        c.commit("g", generation, &member, None, commit_of(1)).await,
        Ok(())
    );

    backend.cut_off(true);
    backend.lose_leases();
    keep_heartbeating(&c, &member, generation, 2 * SESSION).await;
    let started = Instant::now();
    assert_eq!(
        c.commit("g", generation, &member, None, commit_of(2)).await,
        Err(ResponseError::RequestTimedOut)
    );
    assert!(
        started.elapsed() <= settings(1).commit_timeout + Duration::from_millis(200),
        "refused within the commit timeout, took {:?}",
        started.elapsed()
    );
    keep_heartbeating(&c, &member, generation, SESSION).await;
    assert_eq!(committed(&c).await, Some(1), "served from memory");
    let described = c.describe("g").await.unwrap().unwrap();
    assert_eq!((described.state, described.members.len()), ("Stable", 1));

    backend.cut_off(false);
    let until = Instant::now() + Duration::from_secs(5);
    while c.commit("g", generation, &member, None, commit_of(3)).await != Ok(()) {
        assert!(Instant::now() < until, "the lease is never regained");
        assert_eq!(c.heartbeat("g", generation, &member, None).await, NONE);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    keep_heartbeating(&c, &member, generation, SESSION).await;
    assert_eq!(committed(&c).await, Some(3));
    let described = c.describe("g").await.unwrap().unwrap();
    assert_eq!(described.members[0].member_id, member);
    assert_eq!(described.members[0].assignment, Bytes::from_static(b"p0"));
}

/// Sessions still expire while the lease is lost, from when each member was last heard:
/// a silent member is expelled for its own missed session. Regained with the table as this
/// instance left it, the shard keeps its memory (the group emptied, not the member the
/// table still has) and writes what it could not write meanwhile.
#[tokio::test]
async fn a_silent_member_is_expelled_while_the_lease_is_lost_and_that_is_written_after() {
    let (backend, _dir) = faulty();
    let c = GroupCoordinator::new(settings(1), backend.clone());
    let (member, generation) = stable_member(&c).await;
    backend.cut_off(true);
    backend.lose_leases();
    assert_eq!(c.heartbeat("g", generation, &member, None).await, NONE);
    tokio::time::sleep(SESSION + Duration::from_millis(300)).await;
    assert_eq!(
        c.heartbeat("g", generation, &member, None).await,
        ResponseError::UnknownMemberId.code()
    );

    backend.cut_off(false);
    let until = Instant::now() + Duration::from_secs(5);
    while c.owner_of("g").await != Ok(Owner::Local) || c.held(c.shard_of("g")).is_none() {
        assert!(Instant::now() < until, "the lease is never regained");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let described = c.describe("g").await.unwrap().unwrap();
    assert_eq!(
        (described.state, described.members.len()),
        ("Empty", 0),
        "kept in memory, not loaded again from the table"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    drop(c);
    let b = GroupCoordinator::new(settings(2), backend.clone());
    claimed(&b).await;
    let described = b.describe("g").await.unwrap().unwrap();
    assert_eq!(
        (described.state, described.members.len()),
        ("Empty", 0),
        "the expulsion was written once the lease was back"
    );
}

/// A member waiting for a rebalance cannot rejoin while the lease is lost (a join must be
/// written): the rebalance's time stands still meanwhile, so it is not expelled for a
/// JoinGroup the coordinator refused, however long the loss. It rejoins once the lease is
/// back, and the rebalance completes with both members.
#[tokio::test]
async fn a_member_that_cannot_rejoin_while_the_lease_is_lost_is_not_expelled_for_it() {
    let (backend, _dir) = faulty();
    let c = GroupCoordinator::new(settings(1), backend.clone());
    let first = |member_id: &str| JoinParams {
        rebalance_timeout: Duration::from_millis(600),
        ..join_params(member_id)
    };
    let joined = c.join("g", first("")).await;
    let m1 = joined.member_id.clone();
    let assignment = vec![(m1.clone(), Bytes::from_static(b"p0"))];
    let synced = c.sync("g", 1, &m1, None, None, None, assignment).await;
    assert_eq!(synced.error, NONE);
    // A second member arrives: the group prepares a rebalance that m1 must rejoin.
    let c2 = c.clone();
    let second = tokio::spawn(async move { c2.join("g", first("")).await });
    let rebalancing = ResponseError::RebalanceInProgress.code();
    let until = Instant::now() + Duration::from_secs(3);
    while c.heartbeat("g", 1, &m1, None).await != rebalancing {
        assert!(Instant::now() < until, "the rebalance never starts");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    backend.cut_off(true);
    backend.lose_leases();
    let until = Instant::now() + 3 * SESSION;
    while Instant::now() < until {
        assert_eq!(c.heartbeat("g", 1, &m1, None).await, rebalancing);
        let rejoined = c.join("g", first(&m1)).await;
        assert_eq!(
            rejoined.error,
            ResponseError::CoordinatorNotAvailable.code(),
            "the join cannot be written"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    backend.cut_off(false);
    let until = Instant::now() + Duration::from_secs(5);
    let rejoined = loop {
        let rejoined = c.join("g", first(&m1)).await;
        if rejoined.error == NONE {
            break rejoined;
        }
        assert!(
            Instant::now() < until,
            "m1 cannot rejoin: {}",
            rejoined.error
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let other = second.await.unwrap();
    assert_eq!((rejoined.generation, other.generation), (2, 2));
    assert_eq!((rejoined.error, other.error), (NONE, NONE));
    assert_eq!(rejoined.member_id, m1);
}

/// Two instances over one backend, each with a connection of its own that can be cut.
fn two_instances() -> (
    Arc<Faulty>,
    Arc<Faulty>,
    gateway_core::BackendRef,
    tempfile::TempDir,
) {
    let dir = tempfile::tempdir().unwrap();
    let embedded: gateway_core::BackendRef =
        gateway_embedded::EmbeddedBackend::open(dir.path()).unwrap();
    let (a, b) = (Faulty::new(embedded.clone()), Faulty::new(embedded.clone()));
    (a, b, embedded, dir)
}

/// Waits until nobody holds the shard's lease.
async fn lease_free(backend: &gateway_core::BackendRef) {
    let topic = TopicName::new("public", "default", "__gateway_kafka_groups-0");
    wait_for("the lease comes free", || async {
        backend.lease_holder(&topic).await.unwrap().is_none()
    })
    .await;
}

/// An instance cut off from Pulsar keeps answering its members from memory; another
/// instance takes the shard over meanwhile and writes to its table, then goes. When the
/// first regains the lease, the table is not as it left it: it loads it again (and so has
/// the other instance's commit) instead of carrying on with what it had in memory.
#[tokio::test]
async fn a_regained_shard_is_loaded_again_when_another_instance_wrote_meanwhile() {
    let (fa, fb, backend, _dir) = two_instances();
    let a = GroupCoordinator::new(settings(1), fa.clone());
    let (member, generation) = stable_member(&a).await;
    assert_eq!(
        a.commit("g", generation, &member, None, commit_of(1)).await,
        Ok(())
    );
    fa.cut_off(true);
    fa.lose_leases();
    assert_eq!(a.heartbeat("g", generation, &member, None).await, NONE);

    let b = GroupCoordinator::new(settings(2), fb.clone());
    claimed(&b).await;
    assert_eq!(
        b.commit("g", generation, &member, None, commit_of(7)).await,
        Ok(())
    );
    assert_eq!(a.heartbeat("g", generation, &member, None).await, NONE);
    assert_eq!(committed(&a).await, Some(1), "A answers from memory");
    drop(b);
    lease_free(&backend).await;

    fa.cut_off(false);
    wait_for("A loads the table again", || async {
        committed(&a).await == Some(7)
    })
    .await;
    assert_eq!(a.owner_of("g").await, Ok(Owner::Local));
    assert_eq!(a.heartbeat("g", generation, &member, None).await, NONE);
    assert_eq!(
        a.commit("g", generation, &member, None, commit_of(8)).await,
        Ok(())
    );
}

/// An instance cut off from Pulsar keeps answering heartbeats until it learns that another
/// instance took the shard (as a partitioned Kafka coordinator does until it learns it lost
/// leadership): then it drops the groups and answers NOT_COORDINATOR, so that the clients
/// find the new coordinator.
#[tokio::test]
async fn a_refused_reclaim_answers_not_coordinator() {
    let (fa, fb, _backend, _dir) = two_instances();
    let a = GroupCoordinator::new(settings(1), fa.clone());
    let (member, generation) = stable_member(&a).await;
    fa.cut_off(true);
    fa.lose_leases();
    let b = GroupCoordinator::new(settings(2), fb.clone());
    claimed(&b).await;
    keep_heartbeating(&a, &member, generation, SESSION).await;

    fa.cut_off(false);
    wait_for("A hears that B coordinates the group", || async {
        a.heartbeat("g", generation, &member, None).await == ResponseError::NotCoordinator.code()
    })
    .await;
    match a.owner_of("g").await {
        Ok(Owner::Remote(owner)) => assert_eq!(owner.node_id, 2),
        other => panic!("A should send clients to B, got {other:?}"),
    }
    assert_eq!(
        a.commit("g", generation, &member, None, commit_of(5)).await,
        Err(ResponseError::NotCoordinator)
    );
    // The trade-off: B could not hear the member while it talked to A, so its session
    // there lapsed and it rejoins at B. Its commits meanwhile failed: nothing is lost.
    assert_eq!(
        b.heartbeat("g", generation, &member, None).await,
        ResponseError::UnknownMemberId.code()
    );
}

/// A member keeps its generation when the lease moves to another instance after its holder
/// is gone.
#[tokio::test]
async fn a_member_keeps_its_generation_when_another_instance_takes_the_shard_over() {
    let (backend, _dir) = faulty();
    let a = GroupCoordinator::new(settings(1), backend.clone());
    let (member, generation) = stable_member(&a).await;
    drop(a);
    tokio::time::sleep(2 * SESSION).await;
    let b = GroupCoordinator::new(settings(2), backend.clone());
    claimed(&b).await;
    keep_heartbeating(&b, &member, generation, 2 * SESSION).await;
    let described = b.describe("g").await.unwrap().unwrap();
    assert_eq!((described.state, described.members.len()), ("Stable", 1));
}

/// An instance that just saw another hold the lease takes the group over as soon as that
/// holder is gone, instead of answering COORDINATOR_NOT_AVAILABLE until its claim back-off
/// ends (librdkafka drops its coordinator connection on each such answer).
#[tokio::test]
async fn a_lease_freed_by_a_dead_holder_is_claimed_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let backend: gateway_core::BackendRef =
        gateway_embedded::EmbeddedBackend::open(dir.path()).unwrap();
    let instance = |node_id| GroupSettings {
        shards: 1,
        instance: Instance {
            node_id,
            ..GroupSettings::default().instance
        },
        ..GroupSettings::default()
    };
    let a = GroupCoordinator::new(instance(1), backend.clone());
    let b = GroupCoordinator::new(instance(2), backend.clone());
    assert_eq!(a.owner_of("g").await, Ok(Owner::Local));
    match b.owner_of("g").await {
        Ok(Owner::Remote(owner)) => assert_eq!(owner.node_id, 1),
        other => panic!("B should be sent to A, got {other:?}"),
    }
    drop(a);
    assert_eq!(b.owner_of("g").await, Ok(Owner::Local));
}

#[test]
fn an_instance_name_carries_its_addresses_and_tls_clients_get_the_tls_one() {
    let instance = Instance {
        node_id: 7,
        host: "gw-1.example".into(),
        port: 9092,
        internal: Some("10.0.0.1:9094".into()),
        tls: Some("gw-1.example:9093".into()),
    };
    let parsed = Instance::parse(&instance.holder_name()).unwrap();
    assert_eq!(parsed, instance);
    assert_eq!(parsed.address_for(true), ("gw-1.example".into(), 9093));
    assert_eq!(parsed.address_for(false), ("gw-1.example".into(), 9092));
    // A name from an instance without TLS (or from before TLS): TLS clients get the only
    // address there is.
    let old = Instance::parse("kafka-coordinator;node=1;kafka=h:9092;internal=-").unwrap();
    assert_eq!(old.tls, None);
    assert_eq!(old.address_for(true), ("h".into(), 9092));
}

/// Transactional ids idle for `transactional.id.expiration.ms` are deleted, in the table too,
/// and a producer coming back with one starts afresh with a new producer id, as on Kafka; an id
/// with a transaction open stays however old.
#[tokio::test]
async fn idle_transactional_ids_expire_and_open_ones_stay() {
    let dir = tempfile::tempdir().unwrap();
    let backend: gateway_core::BackendRef =
        gateway_embedded::EmbeddedBackend::open(dir.path()).unwrap();
    let topic = TopicName::new("public", "default", "t");
    backend.create_topic(&topic, 0).await.unwrap();
    let expiring = |node_id, expiration| GroupSettings {
        transactional_id_expiration: expiration,
        offsets_retention_check_interval: Duration::from_millis(50),
        ..settings(node_id)
    };
    let c = GroupCoordinator::new(expiring(1, Duration::from_millis(400)), backend.clone());
    let (idle, _) = c
        .init_transactional_producer("idle", 60_000, None, true)
        .await
        .unwrap();
    let (busy, epoch) = c
        .init_transactional_producer("busy", 60_000, None, true)
        .await
        .unwrap();
    let failed = c
        .add_partitions_to_txn(
            "busy",
            (busy, epoch),
            true,
            vec![("t".into(), 0, Ok(topic))],
        )
        .await
        .unwrap();
    assert!(failed.is_empty(), "{failed:?}");
    let known = |c: Arc<GroupCoordinator>, id: &'static str| async move {
        c.describe_transactions(&[id.to_owned()]).await[0].1.is_ok()
    };
    wait_for("the idle id expires", || {
        let c = c.clone();
        async move { !known(c, "idle").await }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        known(c.clone(), "busy").await,
        "an open transaction's id stays"
    );

    drop(c);
    let b = GroupCoordinator::new(expiring(2, Duration::from_secs(3600)), backend.clone());
    let (again, epoch) = b
        .init_transactional_producer("idle", 60_000, None, true)
        .await
        .unwrap();
    assert_ne!(again, idle, "deleted in the table: a new producer id");
    assert_eq!(epoch, 0);
    assert!(known(b.clone(), "busy").await);
}
