use super::*;

fn timing() -> Timing {
    Timing {
        initial_rebalance_delay: Duration::ZERO,
        ..Timing::default()
    }
}

fn params(member_id: &str, instance: Option<&str>, metadata: &'static [u8]) -> JoinParams {
    JoinParams {
        member_id: member_id.to_owned(),
        instance_id: instance.map(str::to_owned),
        client_id: "client".into(),
        client_host: "/127.0.0.1".into(),
        session_timeout: Duration::from_secs(10),
        rebalance_timeout: Duration::from_secs(30),
        protocol_type: "consumer".into(),
        protocols: vec![("range".into(), Bytes::from_static(metadata))],
        require_known_member_id: true,
        supports_skip_assignment: false,
    }
}

fn now_value<T>(reply: Reply<T>) -> T {
    match reply {
        Reply::Now(v) => v,
        Reply::Later(_) => panic!("expected an immediate answer"),
    }
}

fn later<T>(reply: Reply<T>) -> oneshot::Receiver<T> {
    match reply {
        Reply::Later(rx) => rx,
        Reply::Now(_) => panic!("expected a delayed answer"),
    }
}

/// Two dynamic members join (each first getting its id), the first leads, and the leader's
/// assignment reaches both.
fn stable_pair(g: &mut Group, t0: Instant) -> (String, String) {
    let mut fx = Effects::default();
    let a = now_value(g.join(params("", None, b"a"), t0, &timing(), &mut fx));
    assert_eq!(a.error, ResponseError::MemberIdRequired.code());
    let b = now_value(g.join(params("", None, b"b"), t0, &timing(), &mut fx));
    let mut rx_a = later(g.join(params(&a.member_id, None, b"a"), t0, &timing(), &mut fx));
    // B's id is still pending, so the join waits for it.
    assert!(rx_a.try_recv().is_err());
    let mut rx_b = later(g.join(params(&b.member_id, None, b"b"), t0, &timing(), &mut fx));
    let (ja, jb) = (rx_a.try_recv().unwrap(), rx_b.try_recv().unwrap());
    assert_eq!((ja.generation, jb.generation), (1, 1));
    assert_eq!(ja.leader, a.member_id);
    assert_eq!(ja.members.len(), 2, "the leader sees every member");
    assert!(jb.members.is_empty());
    assert_eq!(
        ja.members[1].2,
        Bytes::from_static(b"b"),
        "metadata passed through"
    );
    let mut sync_b = later(g.sync(1, &b.member_id, None, None, None, vec![], t0, &mut fx));
    let assignments = vec![
        (a.member_id.clone(), Bytes::from_static(b"to-a")),
        (b.member_id.clone(), Bytes::from_static(b"to-b")),
    ];
    let mut sync_a = later(g.sync(1, &a.member_id, None, None, None, assignments, t0, &mut fx));
    assert_eq!(
        sync_b.try_recv().unwrap().assignment,
        Bytes::from_static(b"to-b")
    );
    assert_eq!(
        sync_a.try_recv().unwrap().assignment,
        Bytes::from_static(b"to-a")
    );
    assert_eq!(g.state, GroupState::Stable);
    assert!(fx.snapshot);
    (a.member_id, b.member_id)
}

#[test]
fn members_join_sync_and_get_the_leaders_assignment() {
    let t0 = Instant::now();
    let mut g = Group::new("g", t0);
    stable_pair(&mut g, t0);
}

#[test]
fn a_silent_member_is_removed_and_the_group_rebalances() {
    let t0 = Instant::now();
    let mut g = Group::new("g", t0);
    let (a, b) = stable_pair(&mut g, t0);
    let t1 = t0 + Duration::from_secs(8);
    assert_eq!(g.heartbeat(1, &a, None, t1), NONE);
    let t2 = t0 + Duration::from_secs(11);
    let mut fx = Effects::default();
    g.tick(t2, &timing(), &mut fx);
    assert!(!g.members.contains_key(&b), "b's session lapsed");
    assert_eq!(g.state, GroupState::PreparingRebalance);
    assert_eq!(
        g.heartbeat(1, &a, None, t2),
        ResponseError::RebalanceInProgress.code()
    );
    assert_eq!(
        g.heartbeat(1, &b, None, t2),
        ResponseError::UnknownMemberId.code()
    );
    // A commit of the old generation is still accepted while preparing (eager revocation).
    assert!(g.check_commit(1, &a, None, t2).is_ok());
    let rx = later(g.join(params(&a, None, b"a"), t2, &timing(), &mut fx));
    let joined = rx.blocking_recv().unwrap();
    assert_eq!((joined.generation, joined.members.len()), (2, 1));
    assert_eq!(
        g.check_commit(2, &a, None, t2),
        Err(ResponseError::RebalanceInProgress),
        "no commits between join and sync"
    );
    assert_eq!(
        g.check_commit(1, &a, None, t2),
        Err(ResponseError::IllegalGeneration)
    );
}

#[test]
fn a_static_member_returning_unchanged_keeps_its_assignment_and_fences_the_old_id() {
    let t0 = Instant::now();
    let mut g = Group::new("g", t0);
    let mut fx = Effects::default();
    let rx = later(g.join(params("", Some("i1"), b"m"), t0, &timing(), &mut fx));
    let first = rx.blocking_recv().unwrap();
    let assignment = vec![(first.member_id.clone(), Bytes::from_static(b"p0"))];
    let rx = later(g.sync(
        1,
        &first.member_id,
        Some("i1"),
        None,
        None,
        assignment,
        t0,
        &mut fx,
    ));
    assert_eq!(
        rx.blocking_recv().unwrap().assignment,
        Bytes::from_static(b"p0")
    );
    // The process restarts: same instance id, no member id.
    let again = now_value(g.join(params("", Some("i1"), b"m"), t0, &timing(), &mut fx));
    assert_eq!(again.error, NONE);
    assert_eq!(again.generation, 1, "no rebalance");
    assert_ne!(again.member_id, first.member_id);
    assert_eq!(g.state, GroupState::Stable);
    let synced = now_value(g.sync(
        1,
        &again.member_id,
        Some("i1"),
        None,
        None,
        vec![],
        t0,
        &mut fx,
    ));
    assert_eq!(synced.assignment, Bytes::from_static(b"p0"));
    assert_eq!(
        g.heartbeat(1, &first.member_id, Some("i1"), t0),
        ResponseError::FencedInstanceId.code()
    );
}

/// A restarted consumer sends different subscription metadata (no owned partitions, generation
/// -1); with the same protocols the group still does not rebalance, and keeps the new metadata.
#[test]
fn a_static_member_returning_with_new_metadata_does_not_rebalance() {
    let t0 = Instant::now();
    let mut g = Group::new("g", t0);
    let mut fx = Effects::default();
    let rx = later(g.join(
        params("", Some("i1"), b"owned p0, gen 0"),
        t0,
        &timing(),
        &mut fx,
    ));
    let first = rx.blocking_recv().unwrap();
    let assignment = vec![(first.member_id.clone(), Bytes::from_static(b"p0"))];
    let rx = later(g.sync(
        1,
        &first.member_id,
        Some("i1"),
        None,
        None,
        assignment,
        t0,
        &mut fx,
    ));
    rx.blocking_recv().unwrap();
    let again = now_value(g.join(params("", Some("i1"), b"fresh"), t0, &timing(), &mut fx));
    assert_eq!((again.error, again.generation), (NONE, 1), "no rebalance");
    assert_eq!(g.state, GroupState::Stable);
    assert_eq!(
        g.members[&again.member_id].protocols[0].1,
        Bytes::from_static(b"fresh")
    );
    // A different protocol would change the group's choice: that does rebalance.
    let mut other = params("", Some("i1"), b"fresh");
    other
        .protocols
        .insert(0, ("sticky".into(), Bytes::from_static(b"fresh")));
    let _rx = later(g.join(other, t0, &timing(), &mut fx));
    assert_eq!(g.state, GroupState::CompletingRebalance);
}

#[test]
fn commits_outside_a_generation_need_an_empty_group() {
    let t0 = Instant::now();
    let mut g = Group::new("g", t0);
    assert!(g.check_commit(-1, "", None, t0).is_ok());
    stable_pair(&mut g, t0);
    assert_eq!(
        g.check_commit(-1, "", None, t0),
        Err(ResponseError::UnknownMemberId)
    );
}

/// A coordinator that loads a group (taking a shard over, or regaining it after an outage)
/// could not hear anyone before: every session counts from the load, as Kafka's coordinator
/// starts all members' session timers when it loads a group from `__consumer_offsets`.
#[test]
fn sessions_of_a_loaded_group_count_from_the_load() {
    let t0 = Instant::now();
    let mut g = Group::new("g", t0);
    let (a, b) = stable_pair(&mut g, t0);
    // Loaded long after the members were last heard: their sessions are 10 s.
    let load = t0 + Duration::from_secs(100);
    let mut g = Group::restore("g", g.snapshot(), load, &timing());
    let mut fx = Effects::default();
    g.tick(load + Duration::from_secs(9), &timing(), &mut fx);
    assert_eq!(g.members.len(), 2);
    assert_eq!((g.state, g.generation), (GroupState::Stable, 1));
    assert_eq!(
        g.heartbeat(1, &a, None, load + Duration::from_secs(9)),
        NONE
    );
    assert_eq!(g.members[&b].assignment, Bytes::from_static(b"to-b"));
    g.tick(load + Duration::from_secs(11), &timing(), &mut fx);
    assert!(g.members.contains_key(&a), "heard since the load");
    assert!(
        !g.members.contains_key(&b),
        "silent for a session since the load"
    );
}

/// A group persisted in the middle of a rebalance is loaded rebalancing, with the members'
/// rebalance timeout counted from the load: members that rejoin get the next generation.
#[test]
fn a_group_loaded_mid_rebalance_gives_members_time_from_the_load() {
    let t0 = Instant::now();
    let mut g = Group::new("g", t0);
    let (a, b) = stable_pair(&mut g, t0);
    let mut fx = Effects::default();
    let _waiting = later(g.join(params(&b, None, b"b2"), t0, &timing(), &mut fx));
    assert_eq!(g.state, GroupState::PreparingRebalance);
    let load = t0 + Duration::from_secs(100);
    let mut g = Group::restore("g", g.snapshot(), load, &timing());
    assert_eq!(g.state, GroupState::PreparingRebalance);
    let heard = load + Duration::from_secs(5);
    assert_eq!(
        g.heartbeat(1, &a, None, heard),
        ResponseError::RebalanceInProgress.code()
    );
    let rejoined_a = later(g.join(params(&a, None, b"a"), heard, &timing(), &mut fx));
    g.tick(load + Duration::from_secs(8), &timing(), &mut fx);
    assert_eq!(
        g.members.len(),
        2,
        "b has until its session, counted from the load"
    );
    let rejoined_b = later(g.join(params(&b, None, b"b2"), heard, &timing(), &mut fx));
    let (ja, jb) = (
        rejoined_a.blocking_recv().unwrap(),
        rejoined_b.blocking_recv().unwrap(),
    );
    assert_eq!((ja.generation, jb.generation), (2, 2));
}

const DAY_MS: u64 = 24 * 3600 * 1000;
/// A retention of a week, as Kafka's default `offsets.retention.minutes`.
const RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

fn committed_at(commit_time: u64) -> Committed {
    Committed {
        offset: 10,
        leader_epoch: -1,
        metadata: None,
        commit_time,
        pulsar_topic: "persistent://public/default/t".into(),
        seq: 0,
    }
}

fn expired(g: &mut Group, now_ms: u64) -> Vec<(String, i32)> {
    let mut keys: Vec<(String, i32)> = g
        .expire_offsets(now_ms, RETENTION)
        .into_iter()
        .map(|(key, _)| key)
        .collect();
    keys.sort();
    keys
}

#[test]
fn offsets_of_a_group_with_members_never_expire() {
    let t0 = Instant::now();
    let mut g = Group::new("g", t0);
    stable_pair(&mut g, t0);
    g.offsets.insert(("t".into(), 0), committed_at(0));
    assert!(expired(&mut g, 365 * DAY_MS).is_empty());
    assert!(!g.is_dead());
}

/// A group whose members left but that has just handed a joiner its member id is not
/// without members: its offsets stay.
#[test]
fn offsets_stay_while_a_joiner_holds_a_member_id() {
    let t0 = Instant::now();
    let mut g = Group::new("g", t0);
    let (a, b) = stable_pair(&mut g, t0);
    g.offsets.insert(("t".into(), 0), committed_at(0));
    let mut fx = Effects::default();
    g.leave(&[(a, None), (b, None)], t0, &timing(), &mut fx);
    g.note_emptied(&fx, DAY_MS);
    let joiner = now_value(g.join(params("", None, b"c"), t0, &timing(), &mut fx));
    assert_eq!(joiner.error, ResponseError::MemberIdRequired.code());
    assert!(expired(&mut g, 365 * DAY_MS).is_empty());
    assert!(!g.is_dead());
}

/// KIP-211: the clock starts when the group becomes empty, however old its commits are.
#[test]
fn offsets_expire_a_retention_after_the_group_became_empty() {
    let t0 = Instant::now();
    let mut g = Group::new("g", t0);
    let (a, b) = stable_pair(&mut g, t0);
    g.offsets.insert(("t".into(), 0), committed_at(DAY_MS));
    g.offsets.insert(("t".into(), 1), committed_at(DAY_MS));
    let emptied_ms = 30 * DAY_MS;
    let mut fx = Effects::default();
    let left = g.leave(
        &[(a.clone(), None), (b.clone(), None)],
        t0,
        &timing(),
        &mut fx,
    );
    assert!(left.iter().all(|(_, e)| *e == NONE));
    assert_eq!(g.state, GroupState::Empty);
    assert!(fx.emptied && fx.snapshot);
    g.note_emptied(&fx, emptied_ms);
    let retention_ms = RETENTION.as_millis() as u64;
    assert!(expired(&mut g, emptied_ms + retention_ms - 1).is_empty());
    assert!(!g.is_dead(), "its offsets keep the group");
    assert_eq!(
        expired(&mut g, emptied_ms + retention_ms),
        [("t".to_owned(), 0), ("t".to_owned(), 1)]
    );
    assert!(g.is_dead(), "no members and no offsets: the group goes");
    // The clock is persisted with the group.
    let restored = Group::restore("g", g.snapshot(), t0, &timing());
    assert_eq!(restored.empty_since_ms, Some(emptied_ms));
}

/// A group that never had members (consumers that only commit, with assign()): each offset
/// expires a retention after its own last commit, so committing again keeps it.
#[test]
fn offsets_of_a_group_without_members_expire_by_their_last_commit() {
    let t0 = Instant::now();
    let mut g = Group::new("g", t0);
    assert!(g.check_commit(-1, "", None, t0).is_ok());
    g.offsets.insert(("t".into(), 0), committed_at(DAY_MS));
    g.offsets.insert(("t".into(), 1), committed_at(DAY_MS));
    // Partition 0 is committed again five days later.
    g.offsets.insert(("t".into(), 0), committed_at(6 * DAY_MS));
    assert!(expired(&mut g, 8 * DAY_MS - 1).is_empty());
    assert_eq!(expired(&mut g, 8 * DAY_MS), [("t".to_owned(), 1)]);
    assert!(!g.is_dead());
    assert!(expired(&mut g, 13 * DAY_MS - 1).is_empty());
    assert_eq!(expired(&mut g, 13 * DAY_MS), [("t".to_owned(), 0)]);
    assert!(g.is_dead());
}

/// Snapshots written before the emptying time was kept still load (postcard does not fill
/// in a missing trailing field by itself); their offsets then expire by commit time, as
/// Kafka treats group metadata without a state timestamp.
#[test]
fn snapshots_from_before_the_emptying_time_still_load() {
    #[derive(Serialize)]
    struct Before {
        protocol_type: Option<String>,
        protocol: Option<String>,
        generation: i32,
        leader: Option<String>,
        stable: bool,
        members: Vec<MemberSnapshot>,
    }
    let bytes = postcard::to_stdvec(&Before {
        protocol_type: Some("consumer".into()),
        protocol: None,
        generation: 4,
        leader: None,
        stable: false,
        members: Vec::new(),
    })
    .unwrap();
    let s = GroupSnapshot::decode(&bytes).expect("an older snapshot decodes");
    assert_eq!((s.generation, s.empty_since_ms), (4, None));
    let t0 = Instant::now();
    let mut g = Group::restore("g", s, t0, &timing());
    g.offsets.insert(("t".into(), 0), committed_at(DAY_MS));
    assert!(expired(&mut g, 8 * DAY_MS - 1).is_empty());
    assert_eq!(expired(&mut g, 8 * DAY_MS), [("t".to_owned(), 0)]);
    // And a snapshot of today's layout round-trips, the emptying time included.
    let mut today = g.snapshot();
    today.empty_since_ms = Some(DAY_MS);
    let decoded = GroupSnapshot::decode(&postcard::to_stdvec(&today).unwrap()).unwrap();
    assert_eq!(decoded.empty_since_ms, Some(DAY_MS));
}

#[test]
fn a_member_with_no_common_protocol_is_refused() {
    let t0 = Instant::now();
    let mut g = Group::new("g", t0);
    stable_pair(&mut g, t0);
    let mut p = params("", None, b"x");
    p.protocols = vec![("roundrobin".into(), Bytes::new())];
    let mut fx = Effects::default();
    let refused = now_value(g.join(p, t0, &timing(), &mut fx));
    assert_eq!(
        refused.error,
        ResponseError::InconsistentGroupProtocol.code()
    );
}
