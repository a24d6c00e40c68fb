use super::*;

const T1: Uuid = Uuid::from_u128(1);
const T2: Uuid = Uuid::from_u128(2);

fn topics(list: &[(&str, Uuid, i32)]) -> BTreeMap<String, TopicMeta> {
    list.iter()
        .map(|(n, id, p)| {
            (
                n.to_string(),
                TopicMeta {
                    id: *id,
                    partitions: *p,
                },
            )
        })
        .collect()
}

fn parts(list: &[(Uuid, &[i32])]) -> Partitions {
    list.iter()
        .map(|(t, ps)| (*t, ps.iter().copied().collect()))
        .collect()
}

fn join(id: &str, names: &[&str]) -> HeartbeatParams {
    HeartbeatParams {
        member_id: id.into(),
        member_epoch: 0,
        rebalance_timeout_ms: 30_000,
        subscribed_names: Some(names.iter().map(|n| n.to_string()).collect()),
        owned: Some(Partitions::new()),
        client_id: "c".into(),
        client_host: "/127.0.0.1".into(),
        ..HeartbeatParams::default()
    }
}

fn beat(id: &str, epoch: i32, owned: Option<Partitions>) -> HeartbeatParams {
    HeartbeatParams {
        member_id: id.into(),
        member_epoch: epoch,
        rebalance_timeout_ms: -1,
        owned,
        ..HeartbeatParams::default()
    }
}

struct Fixture {
    group: ConsumerGroup,
    settings: ConsumerGroupSettings,
    now: Instant,
    topics: BTreeMap<String, TopicMeta>,
}

impl Fixture {
    fn new(topics: BTreeMap<String, TopicMeta>) -> Self {
        Fixture {
            group: ConsumerGroup::default(),
            settings: ConsumerGroupSettings::default(),
            now: Instant::now(),
            topics,
        }
    }

    fn send(&mut self, p: HeartbeatParams) -> (HeartbeatOutcome, Effects) {
        let mut fx = Effects::default();
        let out = self
            .group
            .heartbeat(p, Some(&self.topics), self.now, &self.settings, &mut fx);
        (out, fx)
    }
}

#[test]
fn a_lone_member_gets_every_partition_at_the_first_epoch() {
    let mut f = Fixture::new(topics(&[("a", T1, 3)]));
    let (out, fx) = f.send(join("m1", &["a"]));
    assert_eq!(out.error, 0);
    assert_eq!(out.member_epoch, 1);
    assert_eq!(out.assignment, Some(parts(&[(T1, &[0, 1, 2])])));
    assert!(fx.snapshot);
    assert_eq!(f.group.state_name(), "Stable");
    // Nothing changed: no assignment in the answer, nothing to persist.
    let (out, fx) = f.send(beat("m1", 1, None));
    assert_eq!((out.member_epoch, out.assignment), (1, None));
    assert!(!fx.snapshot);
}

#[test]
fn partitions_move_only_after_their_owner_gives_them_up() {
    let mut f = Fixture::new(topics(&[("a", T1, 4)]));
    f.send(join("m1", &["a"]));
    // m2 joins: its half of the target is still m1's, so it waits at the new epoch with nothing.
    let (out, _) = f.send(join("m2", &["a"]));
    assert_eq!(out.member_epoch, 2);
    assert_eq!(out.assignment, Some(Partitions::new()));
    assert_eq!(
        f.group.members["m2"].state,
        MemberState::UnreleasedPartitions
    );
    assert_eq!(f.group.state_name(), "Reconciling");
    // m1 is told to keep two; its epoch waits for it to give up the others.
    let (out, _) = f.send(beat("m1", 1, Some(parts(&[(T1, &[0, 1, 2, 3])]))));
    let kept = out.assignment.clone().expect("changed");
    assert_eq!(kept.values().map(|s| s.len()).sum::<usize>(), 2);
    assert_eq!(out.member_epoch, 1);
    // m2 still waits while m1 has not confirmed.
    let (out, _) = f.send(beat("m2", 2, Some(Partitions::new())));
    assert_eq!(out.assignment, None);
    // m1 confirms: it reaches epoch 2; then m2 gets the other two.
    let (out, _) = f.send(beat("m1", 1, Some(kept.clone())));
    assert_eq!(
        (out.member_epoch, out.assignment.as_ref()),
        (2, Some(&kept))
    );
    let (out, _) = f.send(beat("m2", 2, Some(Partitions::new())));
    let given = out.assignment.expect("released");
    assert_eq!(given.values().map(|s| s.len()).sum::<usize>(), 2);
    assert!(flatten(&given).all(|(t, p)| !contains(&kept, &t, p)));
    assert_eq!(f.group.state_name(), "Stable");
}

#[test]
fn wrong_epochs_are_fenced_and_a_lost_answer_is_forgiven() {
    let mut f = Fixture::new(topics(&[("a", T1, 2)]));
    f.send(join("m1", &["a"]));
    let (out, _) = f.send(beat("m1", 7, None));
    assert_eq!(out.error, ResponseError::FencedMemberEpoch.code());
    let (out, _) = f.send(beat("nobody", 1, None));
    assert_eq!(out.error, ResponseError::UnknownMemberId.code());
    // The previous epoch with owned partitions inside the assignment: the member missed the
    // answer that moved it on, and is answered again.
    f.topics = topics(&[("a", T1, 3)]);
    let (out, _) = f.send(beat("m1", 1, None));
    assert_eq!(out.member_epoch, 2);
    let (out, _) = f.send(beat("m1", 1, Some(parts(&[(T1, &[0, 1])]))));
    assert_eq!((out.error, out.member_epoch), (0, 2));
    let (out, _) = f.send(beat("m1", 1, None));
    assert_eq!(out.error, ResponseError::FencedMemberEpoch.code());
}

#[test]
fn leaving_and_lapsed_sessions_free_partitions_for_the_others() {
    let mut f = Fixture::new(topics(&[("a", T1, 2)]));
    f.send(join("m1", &["a"]));
    f.send(join("m2", &["a"]));
    f.send(beat("m1", 1, Some(parts(&[(T1, &[0, 1])]))));
    let (out, _) = f.send(beat("m1", 1, Some(parts(&[(T1, &[0])]))));
    assert_eq!(out.member_epoch, 2);
    f.send(beat("m2", 2, Some(Partitions::new())));
    let (out, fx) = f.send(beat("m1", LEAVE_EPOCH, None));
    assert_eq!((out.error, out.member_epoch), (0, LEAVE_EPOCH));
    assert!(fx.snapshot && !fx.emptied);
    let (out, _) = f.send(beat("m2", 2, Some(parts(&[(T1, &[1])]))));
    assert_eq!(out.assignment, Some(parts(&[(T1, &[0, 1])])));
    // Unheard for a session: removed, and the group is empty.
    let mut fx = Effects::default();
    f.group.tick(f.now + f.settings.session_timeout, &mut fx);
    assert!(fx.snapshot && fx.emptied);
    assert_eq!(f.group.state_name(), "Empty");
}

#[test]
fn a_member_that_does_not_revoke_in_time_is_removed() {
    let mut f = Fixture::new(topics(&[("a", T1, 2)]));
    f.send(join("m1", &["a"]));
    f.send(join("m2", &["a"]));
    f.send(beat("m1", 1, Some(parts(&[(T1, &[0, 1])]))));
    assert_eq!(
        f.group.members["m1"].state,
        MemberState::UnrevokedPartitions
    );
    let mut fx = Effects::default();
    f.group.tick(f.now + Duration::from_secs(31), &mut fx);
    assert!(!f.group.members.contains_key("m1"));
    f.now += Duration::from_secs(31);
    let (out, _) = f.send(beat("m2", 2, Some(Partitions::new())));
    assert_eq!(out.assignment, Some(parts(&[(T1, &[0, 1])])));
}

#[test]
fn a_restarted_static_member_takes_its_place_back_without_a_rebalance() {
    let mut f = Fixture::new(topics(&[("a", T1, 2)]));
    let mut first = join("m1", &["a"]);
    first.instance_id = Some("i1".into());
    f.send(first);
    let epoch = f.group.group_epoch;
    let mut leave = beat("m1", STATIC_LEAVE_EPOCH, None);
    leave.instance_id = Some("i1".into());
    f.send(leave);
    let mut other = join("m9", &["a"]);
    other.instance_id = Some("i1".into());
    let mut again = other.clone();
    again.member_id = "m2".into();
    let (out, _) = f.send(again);
    assert_eq!(out.error, 0);
    assert_eq!(out.member_epoch, 1);
    assert_eq!(out.assignment, Some(parts(&[(T1, &[0, 1])])));
    assert_eq!(f.group.group_epoch, epoch);
    // The instance id is now held by an active member.
    let (out, _) = f.send(other);
    assert_eq!(out.error, ResponseError::UnreleasedInstanceId.code());
}

#[test]
fn range_gives_co_partitioned_topics_the_same_numbers() {
    let mut f = Fixture::new(topics(&[("a", T1, 4), ("b", T2, 4)]));
    let mut p = join("m1", &["a", "b"]);
    p.server_assignor = Some(RANGE.into());
    f.send(p.clone());
    p.member_id = "m2".into();
    f.send(p);
    let target = &f.group.target;
    assert_eq!(target["m1"], parts(&[(T1, &[0, 1]), (T2, &[0, 1])]));
    assert_eq!(target["m2"], parts(&[(T1, &[2, 3]), (T2, &[2, 3])]));
    let mut bad = join("m3", &["a"]);
    bad.server_assignor = Some("sticky".into());
    let (out, _) = f.send(bad);
    assert_eq!(out.error, ResponseError::UnsupportedAssignor.code());
}

#[test]
fn uniform_is_balanced_and_moves_only_what_it_must() {
    let mut f = Fixture::new(topics(&[("a", T1, 6), ("b", T2, 3)]));
    for id in ["m1", "m2"] {
        f.send(join(id, &["a", "b"]));
    }
    let before = f.group.target.clone();
    assert!(before
        .values()
        .all(|p| flatten(p).count() == 4 || flatten(p).count() == 5));
    f.send(join("m3", &["a", "b"]));
    let after = &f.group.target;
    assert!(after.values().all(|p| flatten(p).count() == 3));
    // m1 and m2 each keep three of what they had.
    for id in ["m1", "m2"] {
        let kept = flatten(&after[id])
            .filter(|(t, p)| contains(&before[id], t, *p))
            .count();
        assert_eq!(kept, 3, "{id}");
    }
    // A member subscribed to one topic only gets partitions of that topic.
    f.send(join("m4", &["b"]));
    assert!(f.group.target["m4"].keys().all(|t| *t == T2));
    let total: usize = f.group.target.values().map(|p| flatten(p).count()).sum();
    assert_eq!(total, 9);
}

#[test]
fn a_new_partition_count_is_a_new_group_epoch() {
    let mut f = Fixture::new(topics(&[("a", T1, 1)]));
    f.send(join("m1", &["a"]));
    f.topics = topics(&[("a", T1, 2)]);
    let (out, _) = f.send(beat("m1", 1, None));
    assert_eq!(out.member_epoch, 2);
    assert_eq!(out.assignment, Some(parts(&[(T1, &[0, 1])])));
}

#[test]
fn commits_need_the_current_member_epoch() {
    let mut f = Fixture::new(topics(&[("a", T1, 1)]));
    assert_eq!(f.group.check_member("", -1), Ok(()));
    f.send(join("m1", &["a"]));
    assert_eq!(f.group.check_member("m1", 1), Ok(()));
    assert_eq!(
        f.group.check_member("m1", 0),
        Err(ResponseError::StaleMemberEpoch)
    );
    assert_eq!(
        f.group.check_member("", -1),
        Err(ResponseError::UnknownMemberId)
    );
}

#[test]
fn a_regex_subscribes_to_the_whole_names_it_matches() {
    const T3: Uuid = Uuid::from_u128(3);
    let mut f = Fixture::new(topics(&[
        ("orders-eu", T1, 1),
        ("orders-us", T2, 1),
        ("x-orders-eu", T3, 1),
    ]));
    let mut p = join("m1", &[]);
    p.subscribed_regex = Some("orders-.*".into());
    let (out, _) = f.send(p);
    assert_eq!(out.assignment, Some(parts(&[(T1, &[0]), (T2, &[0])])));
    // The empty regex librdkafka sends beside names is no regex.
    let mut names = join("m2", &["x-orders-eu"]);
    names.subscribed_regex = Some(String::new());
    let (out, _) = f.send(names);
    assert_eq!(out.assignment, Some(parts(&[(T3, &[0])])));
    assert_eq!(f.group.members["m2"].subscribed_regex, None);
}
