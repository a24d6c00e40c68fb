//! The backend conformance suite (DESIGN.md §4): the same checks against every backend, so that
//! translators can rely on one set of semantics. Each test runs on the embedded backend, and on
//! the real Pulsar named by `PULSAR_URL` and `PULSAR_ADMIN_URL` when they are set
//! (`compat-suites/pulsar/start` prints them; `.ci/run` sets them). The `pulsar::` tests are
//! ignored by a plain `cargo test`; run them with `-- --include-ignored`, and then they fail,
//! rather than pass, when no Pulsar is named.

use std::time::Duration;

use bytes::Bytes;
use e2e_tests::backends::{pulsar_config, BackendFixture, EmbeddedFixture, PulsarFixture};
use gateway_core::backend::{
    InitialPosition, SeekTarget, SendReceipt, SubscribeOptions, SubscriptionType, SEQUENCE_LOOKBACK,
};
use gateway_core::{
    table, Backend, BackendError, EntryId, EntryToSend, Message, TopicName, TransactionId,
};

fn topic(name: &str) -> TopicName {
    TopicName::new(
        "public",
        "default",
        &format!("{name}-{}", rand::random::<u32>()),
    )
}

fn message(value: &str) -> Message {
    Message {
        key: Some(Bytes::from(format!("key-{value}"))),
        value: Some(Bytes::from(value.to_owned())),
        properties: vec![("p".into(), "1".into()), ("p".into(), "2".into())],
        event_time: Some(1_000),
        deliver_at: None,
    }
}

fn entry(values: &[&str]) -> EntryToSend {
    EntryToSend {
        messages: values.iter().map(|v| message(v)).collect(),
        dedup: None,
        coalesce: false,
    }
}

async fn persisted(
    backend: &dyn Backend,
    topic: &TopicName,
    entries: Vec<EntryToSend>,
) -> Vec<EntryId> {
    backend
        .send(topic, entries)
        .await
        .unwrap()
        .into_iter()
        .map(|r| match r {
            // Sends awaited one at a time are never coalesced: each starts its own entry.
            SendReceipt::Persisted(id) if id.batch_index == 0 => id.entry_id(),
            other => panic!("unexpected receipt {other:?}"),
        })
        .collect()
}

fn values(messages: &[gateway_core::ReceivedMessage]) -> Vec<String> {
    messages
        .iter()
        .map(|m| String::from_utf8(m.message.value.clone().unwrap().to_vec()).unwrap())
        .collect()
}

/// A consumer on a subscription that must be granted.
async fn attach(
    b: &dyn Backend,
    topic: &TopicName,
    subscription: &str,
    sub_type: SubscriptionType,
    initial: InitialPosition,
) -> Box<dyn gateway_core::Consumer> {
    let options = SubscribeOptions {
        sub_type,
        initial,
        prefetch: None,
    };
    b.subscribe(topic, subscription, options)
        .await
        .unwrap_or_else(|e| panic!("subscribe {subscription}: {e}"))
}

/// How long something that must arrive may take (calls return as soon as it does).
const ARRIVES: Duration = Duration::from_secs(10);
/// How long to watch for something that must not arrive.
const QUIET: Duration = Duration::from_millis(1500);

/// Receives until `n` messages arrived, or a wait of [`ARRIVES`] brings nothing more.
async fn receive_n(
    c: &mut Box<dyn gateway_core::Consumer>,
    n: usize,
) -> Vec<gateway_core::ReceivedMessage> {
    let mut got = Vec::new();
    while got.len() < n {
        let more = c.receive(n - got.len(), ARRIVES).await.unwrap();
        if more.is_empty() {
            break;
        }
        got.extend(more);
    }
    got
}

/// Waits until the backlog is `n` (acknowledgements reach Pulsar asynchronously).
async fn backlog_becomes(b: &dyn Backend, t: &TopicName, sub: &str, n: u64) {
    let deadline = tokio::time::Instant::now() + ARRIVES;
    loop {
        let now = b.backlog(t, sub).await.unwrap();
        if now == n {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "backlog stays {now}, expected {n}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Reads until `n` entries arrived, or a wait of [`ARRIVES`] brings nothing more.
async fn read_n(
    r: &mut Box<dyn gateway_core::Reader>,
    n: usize,
    max_bytes: usize,
) -> Vec<gateway_core::StoredEntry> {
    let mut got = Vec::new();
    while got.len() < n {
        let more = r.read(n - got.len(), max_bytes, ARRIVES).await.unwrap();
        if more.is_empty() {
            break;
        }
        got.extend(more);
    }
    got
}

async fn topic_lifecycle(f: &dyn BackendFixture) {
    let b = f.backend();
    let t = topic("lifecycle");
    assert_eq!(b.topic_info(&t).await.unwrap(), None);
    b.create_topic(&t, 3).await.unwrap();
    assert_eq!(b.topic_info(&t).await.unwrap().unwrap().partitions, 3);
    assert!(
        b.create_topic(&t, 3).await.is_err(),
        "creating twice must fail"
    );
    assert!(b
        .list_topics("public", "default")
        .await
        .unwrap()
        .iter()
        .any(|(n, i)| n == &t && i.partitions == 3));
    persisted(b.as_ref(), &t.partition(2), vec![entry(&["a"])]).await;
    assert!(
        b.send(&t.partition(3), vec![entry(&["x"])]).await.is_err(),
        "partition 3 of 3 does not exist"
    );
    assert!(
        b.update_partitions(&t, 2).await.is_err(),
        "partition count cannot shrink"
    );
    b.update_partitions(&t, 5).await.unwrap();
    persisted(b.as_ref(), &t.partition(4), vec![entry(&["b"])]).await;
    b.delete_topic(&t).await.unwrap();
    assert_eq!(b.topic_info(&t).await.unwrap(), None);
    assert!(
        b.delete_topic(&t).await.is_err(),
        "deleting twice must fail"
    );
    // Deleted means the data is gone: the same name created again starts empty. (Whether a
    // producer may then write to a missing topic is the broker's auto-creation policy on Pulsar;
    // the translators always check topic_info first.)
    b.create_topic(&t, 3).await.unwrap();
    assert_eq!(b.last_message_id(&t.partition(2)).await.unwrap(), None);
    b.delete_topic(&t).await.unwrap();

    let plain = topic("plain");
    b.create_topic(&plain, 0).await.unwrap();
    persisted(b.as_ref(), &plain, vec![entry(&["a"])]).await;
    assert_eq!(
        b.topic_info(&plain).await.unwrap().unwrap().partitions,
        0,
        "non-partitioned"
    );
    b.delete_topic(&plain).await.unwrap();
}

async fn send_and_read(f: &dyn BackendFixture) {
    let b = f.backend();
    let t = topic("read");
    b.create_topic(&t, 0).await.unwrap();
    assert_eq!(b.last_message_id(&t).await.unwrap(), None);
    assert_eq!(b.first_entry_id(&t).await.unwrap(), None);
    let ids = persisted(
        b.as_ref(),
        &t,
        vec![entry(&["a", "b"]), entry(&["c"]), entry(&["d", "e", "f"])],
    )
    .await;
    // One call's entries are consecutive in one ledger.
    assert_eq!(ids[1].ledger, ids[0].ledger);
    assert_eq!(ids[1].entry, ids[0].entry + 1);
    assert_eq!(ids[2].entry, ids[0].entry + 2);
    assert_eq!(
        b.last_message_id(&t).await.unwrap(),
        Some(ids[2].message(2))
    );
    assert_eq!(b.first_entry_id(&t).await.unwrap(), Some(ids[0]));

    let mut reader = b.open_reader(&t, EntryId::EARLIEST).await.unwrap();
    let entries = read_n(&mut reader, 3, usize::MAX).await;
    assert_eq!(entries.iter().map(|e| e.id).collect::<Vec<_>>(), ids);
    assert_eq!(
        entries[0].messages,
        vec![message("a"), message("b")],
        "messages come back exactly"
    );
    assert!(entries
        .windows(2)
        .all(|w| w[0].publish_time <= w[1].publish_time));
    assert!(reader.read(10, usize::MAX, QUIET).await.unwrap().is_empty());

    // A reader started mid-topic, and byte budgets that still return at least one entry.
    let mut reader = b.open_reader(&t, ids[1]).await.unwrap();
    let entries = reader.read(10, 1, ARRIVES).await.unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].id, ids[1]);
    reader.seek(ids[0]).await.unwrap();
    assert_eq!(
        reader.read(1, usize::MAX, ARRIVES).await.unwrap()[0].id,
        ids[0]
    );

    // Long poll: a waiting read wakes when data arrives.
    let mut reader = b.open_reader(&t, reader_after(ids[2])).await.unwrap();
    let waiting = tokio::spawn(async move {
        reader
            .read(10, usize::MAX, Duration::from_secs(10))
            .await
            .unwrap()
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let late = persisted(b.as_ref(), &t, vec![entry(&["late"])]).await;
    let woke = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("reader must wake")
        .unwrap();
    assert_eq!(woke[0].id, late[0]);
}

fn reader_after(id: EntryId) -> EntryId {
    EntryId {
        ledger: id.ledger,
        entry: id.entry + 1,
    }
}

async fn seek_by_publish_time(f: &dyn BackendFixture) {
    let b = f.backend();
    let t = topic("time");
    b.create_topic(&t, 0).await.unwrap();
    persisted(b.as_ref(), &t, vec![entry(&["early"])]).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let middle = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let later = persisted(b.as_ref(), &t, vec![entry(&["later"])]).await;
    assert_eq!(
        b.find_entry_by_publish_time(&t, middle).await.unwrap(),
        Some(later[0])
    );
    assert_eq!(
        b.find_entry_by_publish_time(&t, middle + 3_600_000)
            .await
            .unwrap(),
        None
    );
}

async fn deduplication(f: &dyn BackendFixture) {
    let b = f.backend();
    let t = topic("dedup");
    b.create_topic(&t, 0).await.unwrap();
    let with_seq = |seq: u64| EntryToSend {
        messages: vec![message("m")],
        dedup: Some(("producer-1".into(), seq)),
        coalesce: false,
    };
    let first = b.send(&t, vec![with_seq(1), with_seq(2)]).await.unwrap();
    assert!(matches!(
        first[..],
        [SendReceipt::Persisted(_), SendReceipt::Persisted(_)]
    ));
    let again = b.send(&t, vec![with_seq(2), with_seq(3)]).await.unwrap();
    assert!(matches!(
        again[..],
        [SendReceipt::Duplicate, SendReceipt::Persisted(_)]
    ));
}

/// `last_sequence`: the highest deduplication id of a producer name on a topic, duplicates
/// aside, also for a backend that starts afresh (as a front end recovers its state from it).
async fn last_sequence(f: &mut dyn BackendFixture) {
    let t = topic("last-sequence");
    let with_seq = |name: &str, seq: u64| EntryToSend {
        messages: vec![message("m")],
        dedup: Some((name.into(), seq)),
        coalesce: false,
    };
    {
        let b = f.backend();
        b.create_topic(&t, 0).await.unwrap();
        assert_eq!(b.last_sequence(&t, "kafka-1").await.unwrap(), None);
        let high = 7 << 48 | 3 << 31 | 5;
        b.send(
            &t,
            vec![with_seq("kafka-1", high - 1), with_seq("kafka-1", high)],
        )
        .await
        .unwrap();
        b.send(&t, vec![with_seq("kafka-2", 9)]).await.unwrap();
        let dropped = b.send(&t, vec![with_seq("kafka-1", 12)]).await.unwrap();
        assert_eq!(dropped, [SendReceipt::Duplicate]);
        assert_eq!(b.last_sequence(&t, "kafka-1").await.unwrap(), Some(high));
    }
    f.restart().await;
    let b = f.backend();
    assert_eq!(
        b.last_sequence(&t, "kafka-1").await.unwrap(),
        Some(7 << 48 | 3 << 31 | 5)
    );
    assert_eq!(b.last_sequence(&t, "kafka-2").await.unwrap(), Some(9));
    assert_eq!(b.last_sequence(&t, "kafka-3").await.unwrap(), None);
}

/// `find_sequence`: the entry a producer name wrote with a sequence id (an entry's own, the
/// first of its messages), across ledgers and after a restart, among the topic's last
/// `SEQUENCE_LOOKBACK` entries exactly; `None` for anything else.
async fn find_sequence(f: &mut dyn BackendFixture) {
    let t = topic("find-sequence");
    let with_seq = |name: &str, seq: u64, values: &[&str]| EntryToSend {
        messages: values.iter().map(|v| message(v)).collect(),
        dedup: Some((name.into(), seq)),
        coalesce: false,
    };
    let early = {
        let b = f.backend();
        b.create_topic(&t, 0).await.unwrap();
        assert_eq!(b.find_sequence(&t, "kafka-1", 0).await.unwrap(), None);
        persisted(
            b.as_ref(),
            &t,
            vec![
                with_seq("kafka-1", 0, &["a", "b"]),
                with_seq("kafka-1", 2, &["c"]),
            ],
        )
        .await
    };
    f.roll_ledger(&t).await;
    let b = f.backend();
    persisted(b.as_ref(), &t, vec![entry(&["x"]), entry(&["y"])]).await;
    let recent = persisted(
        b.as_ref(),
        &t,
        vec![
            with_seq("kafka-1", 3, &["d", "e"]),
            with_seq("kafka-1", 5, &["f"]),
        ],
    )
    .await;
    let other = persisted(b.as_ref(), &t, vec![with_seq("kafka-2", 3, &["o"])]).await;
    assert_ne!(early[0].ledger, recent[0].ledger, "a new ledger");
    for (seq, id) in [(0, early[0]), (2, early[1]), (3, recent[0]), (5, recent[1])] {
        assert_eq!(
            b.find_sequence(&t, "kafka-1", seq).await.unwrap(),
            Some(id.message(0)),
            "sequence {seq}"
        );
    }
    assert_eq!(
        b.find_sequence(&t, "kafka-2", 3).await.unwrap(),
        Some(other[0].message(0))
    );
    // Inside an entry (not its first message), never written, another name.
    for (name, seq) in [
        ("kafka-1", 1),
        ("kafka-1", 4),
        ("kafka-1", 99),
        ("kafka-3", 0),
    ] {
        assert_eq!(
            b.find_sequence(&t, name, seq).await.unwrap(),
            None,
            "{name} {seq}"
        );
    }
    // A resend that deduplication drops leaves the original to be found.
    let resent = b
        .send(&t, vec![with_seq("kafka-1", 5, &["f"])])
        .await
        .unwrap();
    assert_eq!(resent, [SendReceipt::Duplicate]);
    assert_eq!(
        b.find_sequence(&t, "kafka-1", 5).await.unwrap(),
        Some(recent[1].message(0))
    );
    // The bound: found as the SEQUENCE_LOOKBACK-th entry from the end, not one further back.
    let last = persisted(b.as_ref(), &t, vec![with_seq("kafka-1", 10, &["z"])]).await;
    let fillers = |n: u64| -> Vec<_> { (0..n).map(|i| entry(&[&format!("filler-{i}")])).collect() };
    persisted(b.as_ref(), &t, fillers(SEQUENCE_LOOKBACK - 1)).await;
    assert_eq!(
        b.find_sequence(&t, "kafka-1", 10).await.unwrap(),
        Some(last[0].message(0)),
        "the last entry of the bound"
    );
    persisted(b.as_ref(), &t, fillers(1)).await;
    assert_eq!(
        b.find_sequence(&t, "kafka-1", 10).await.unwrap(),
        None,
        "beyond the bound"
    );
}

async fn exclusive_subscription(f: &dyn BackendFixture) {
    let b = f.backend();
    let t = topic("exclusive");
    b.create_topic(&t, 0).await.unwrap();
    persisted(b.as_ref(), &t, vec![entry(&["before"])]).await;
    let mut latest = attach(
        b.as_ref(),
        &t,
        "from-latest",
        SubscriptionType::Exclusive,
        InitialPosition::Latest,
    )
    .await;
    let mut c = attach(
        b.as_ref(),
        &t,
        "sub",
        SubscriptionType::Exclusive,
        InitialPosition::Earliest,
    )
    .await;
    assert!(
        b.subscribe(
            &t,
            "sub",
            SubscribeOptions {
                sub_type: SubscriptionType::Exclusive,
                initial: InitialPosition::Earliest,
                prefetch: None,
            }
        )
        .await
        .is_err(),
        "second exclusive consumer must be refused"
    );
    persisted(b.as_ref(), &t, vec![entry(&["a", "b"]), entry(&["c"])]).await;
    assert_eq!(values(&receive_n(&mut latest, 3).await), ["a", "b", "c"]);
    let got = receive_n(&mut c, 4).await;
    assert_eq!(values(&got), ["before", "a", "b", "c"]);
    // The backlog counts entries, as Pulsar's msgBacklog does: "before", "a"+"b", "c".
    backlog_becomes(b.as_ref(), &t, "sub", 3).await;
    // Acking one message of a batch leaves its entry in the backlog.
    c.ack(&[got[0].id, got[1].id]).await.unwrap();
    backlog_becomes(b.as_ref(), &t, "sub", 2).await;
    c.ack_cumulative(got[3].id).await.unwrap();
    backlog_becomes(b.as_ref(), &t, "sub", 0).await;
    assert!(b
        .subscriptions(&t)
        .await
        .unwrap()
        .contains(&"sub".to_owned()));
    assert!(
        b.unsubscribe(&t, "sub").await.is_err(),
        "a subscription with consumers cannot be deleted"
    );
    c.close().await;
    latest.close().await;
    b.unsubscribe(&t, "sub").await.unwrap();
    assert!(!b
        .subscriptions(&t)
        .await
        .unwrap()
        .contains(&"sub".to_owned()));
}

async fn shared_subscription_redelivery(f: &dyn BackendFixture) {
    let b = f.backend();
    let t = topic("shared");
    b.create_topic(&t, 0).await.unwrap();
    let mut one = attach(
        b.as_ref(),
        &t,
        "s",
        SubscriptionType::Shared,
        InitialPosition::Earliest,
    )
    .await;
    let mut two = attach(
        b.as_ref(),
        &t,
        "s",
        SubscriptionType::Shared,
        InitialPosition::Earliest,
    )
    .await;
    persisted(
        b.as_ref(),
        &t,
        vec![entry(&["a"]), entry(&["b"]), entry(&["c"]), entry(&["d"])],
    )
    .await;
    // How entries spread over the consumers is the dispatcher's business; each goes to one.
    let mut first = one.receive(4, ARRIVES).await.unwrap();
    first.extend(one.receive(4, QUIET).await.unwrap());
    let second = two.receive(4, QUIET).await.unwrap();
    let mut all = values(&first);
    all.extend(values(&second));
    all.sort();
    assert_eq!(
        all,
        ["a", "b", "c", "d"],
        "each message goes to exactly one consumer"
    );
    assert!(
        one.ack_cumulative(first[0].id).await.is_err(),
        "no cumulative acks on Shared"
    );

    // Negative ack: redelivered, with a higher count, to a consumer of the subscription.
    one.nack(&[first[0].id]).await.unwrap();
    let again = match one.receive(1, ARRIVES).await.unwrap() {
        got if !got.is_empty() => got,
        _ => two.receive(1, ARRIVES).await.unwrap(),
    };
    assert_eq!(again[0].id, first[0].id);
    assert_eq!(again[0].redelivery_count, 1);
    one.ack(&[first[0].id]).await.unwrap();
    two.ack(&[first[0].id]).await.unwrap();
    two.ack(&second.iter().map(|m| m.id).collect::<Vec<_>>())
        .await
        .unwrap();

    // A consumer that leaves with unacknowledged messages hands them back; as in Pulsar, that
    // is not a redelivery that counts (only negative acks do).
    let unacked: Vec<_> = first[1..].iter().map(|m| m.id).collect();
    one.close().await;
    let handed = receive_n(&mut two, unacked.len()).await;
    assert_eq!(handed.iter().map(|m| m.id).collect::<Vec<_>>(), unacked);
    assert!(handed.iter().all(|m| m.redelivery_count == 0));
}

async fn failover_and_key_shared(f: &dyn BackendFixture) {
    let b = f.backend();
    let t = topic("failover");
    b.create_topic(&t, 0).await.unwrap();
    // Which consumer is active is the broker's choice (Pulsar hashes consumer names for
    // non-partitioned topics); exactly one gets the messages, and the other takes over.
    let first = attach(
        b.as_ref(),
        &t,
        "f",
        SubscriptionType::Failover,
        InitialPosition::Earliest,
    )
    .await;
    let second = attach(
        b.as_ref(),
        &t,
        "f",
        SubscriptionType::Failover,
        InitialPosition::Earliest,
    )
    .await;
    persisted(b.as_ref(), &t, vec![entry(&["a"])]).await;
    let mut consumers = [first, second];
    let mut got = Vec::new();
    for c in consumers.iter_mut() {
        got.push(values(&c.receive(10, QUIET).await.unwrap()));
    }
    let active = got
        .iter()
        .position(|g| g == &["a"])
        .expect("one consumer is active");
    assert!(
        got[1 - active].is_empty(),
        "the standby gets nothing while the active one is there"
    );
    let [first, second] = consumers;
    let (active, mut standby) = if active == 0 {
        (first, second)
    } else {
        (second, first)
    };
    active.close().await;
    assert_eq!(
        values(&standby.receive(10, ARRIVES).await.unwrap()),
        ["a"],
        "the unacked message moves to the new active consumer"
    );

    let k = topic("keyshared");
    b.create_topic(&k, 0).await.unwrap();
    let mut x = attach(
        b.as_ref(),
        &k,
        "k",
        SubscriptionType::KeyShared,
        InitialPosition::Earliest,
    )
    .await;
    let mut y = attach(
        b.as_ref(),
        &k,
        "k",
        SubscriptionType::KeyShared,
        InitialPosition::Earliest,
    )
    .await;
    let keyed = |key: &str, value: &str| Message {
        key: Some(Bytes::from(key.to_owned())),
        value: Some(Bytes::from(value.to_owned())),
        ..Message::default()
    };
    let messages: Vec<Message> = (0..40)
        .map(|i| keyed(&format!("k{}", i % 8), &i.to_string()))
        .collect();
    b.send(
        &k,
        vec![EntryToSend {
            messages,
            dedup: None,
            coalesce: false,
        }],
    )
    .await
    .unwrap();
    let mut got_x = x.receive(100, ARRIVES).await.unwrap();
    got_x.extend(x.receive(100, QUIET).await.unwrap());
    let mut got_y = y.receive(100, QUIET).await.unwrap();
    got_y.extend(y.receive(100, QUIET).await.unwrap());
    assert_eq!(got_x.len() + got_y.len(), 40);
    let keys = |m: &[gateway_core::ReceivedMessage]| {
        m.iter()
            .map(|m| m.message.key.clone())
            .collect::<std::collections::HashSet<_>>()
    };
    assert!(
        keys(&got_x).is_disjoint(&keys(&got_y)),
        "a key belongs to one consumer"
    );
}

async fn seek_subscription(f: &dyn BackendFixture) {
    let b = f.backend();
    let t = topic("seek");
    b.create_topic(&t, 0).await.unwrap();
    let mut c = attach(
        b.as_ref(),
        &t,
        "s",
        SubscriptionType::Exclusive,
        InitialPosition::Earliest,
    )
    .await;
    let ids = persisted(b.as_ref(), &t, vec![entry(&["a", "b"]), entry(&["c"])]).await;
    let all = receive_n(&mut c, 3).await;
    c.ack_cumulative(all[2].id).await.unwrap();
    c.seek(SeekTarget::Message(ids[0].message(1)))
        .await
        .unwrap();
    assert_eq!(values(&receive_n(&mut c, 2).await), ["b", "c"]);
    c.seek(SeekTarget::PublishTime(0)).await.unwrap();
    assert_eq!(values(&receive_n(&mut c, 3).await), ["a", "b", "c"]);
    c.seek(SeekTarget::PublishTime(u64::MAX / 2)).await.unwrap();
    assert!(c.receive(10, QUIET).await.unwrap().is_empty());
}

async fn table_topic(f: &dyn BackendFixture) {
    let b = f.backend();
    let t = topic("table");
    b.create_topic(&t, 0).await.unwrap();
    assert!(table::load(b.as_ref(), &t).await.unwrap().is_empty());
    table::put(b.as_ref(), &t, "a", Some(Bytes::from_static(b"1")))
        .await
        .unwrap();
    table::put(b.as_ref(), &t, "b", Some(Bytes::from_static(b"2")))
        .await
        .unwrap();
    table::put(b.as_ref(), &t, "a", Some(Bytes::from_static(b"3")))
        .await
        .unwrap();
    table::put(b.as_ref(), &t, "b", None).await.unwrap();
    let state = table::load(b.as_ref(), &t).await.unwrap();
    assert_eq!(state.len(), 1);
    assert_eq!(state["a"], Bytes::from_static(b"3"));
}

/// A table topic read through its compacted view: the same state, and after compaction on a
/// backend that compacts, far fewer messages read.
async fn table_compaction(f: &dyn BackendFixture) {
    let b = f.backend();
    let t = topic("compaction");
    b.create_topic(&t, 0).await.unwrap();
    for i in 0..200 {
        table::put(b.as_ref(), &t, "a", Some(Bytes::from(i.to_string())))
            .await
            .unwrap();
    }
    table::put(b.as_ref(), &t, "b", Some(Bytes::from_static(b"x")))
        .await
        .unwrap();
    table::put(b.as_ref(), &t, "b", None).await.unwrap();
    b.compact(&t).await.unwrap();
    table::put(b.as_ref(), &t, "c", Some(Bytes::from_static(b"after")))
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (state, read) = table::load_counted(b.as_ref(), &t).await.unwrap();
        assert_eq!(state.len(), 2, "{state:?}");
        assert_eq!(state["a"], Bytes::from_static(b"199"));
        assert_eq!(state["c"], Bytes::from_static(b"after"));
        if b.kind() != "pulsar" {
            assert_eq!(read, 203, "without compaction every message is read");
            return;
        }
        if read <= 5 {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "compaction never shrank the table topic ({read} messages read)"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Announcements (how gateway instances find each other): every live name is listed, a name
/// cannot be announced twice at once, and a dropped announcement drops out.
async fn announcements(f: &dyn BackendFixture) {
    let b = f.backend();
    let t = topic("fleet");
    assert!(b.announced(&t).await.unwrap().is_empty(), "nobody yet");
    let first = b.announce(&t, "instance-a").await.expect("announced");
    let second = b.announce(&t, "instance-b").await.expect("announced");
    assert!(first.is_live() && second.is_live());
    let mut names = b.announced(&t).await.unwrap();
    names.sort();
    assert_eq!(names, ["instance-a", "instance-b"]);
    assert!(
        b.announce(&t, "instance-a").await.is_err(),
        "a live name is not announced twice"
    );
    drop(first);
    // Withdrawing reaches the broker asynchronously.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let names = b.announced(&t).await.unwrap();
        if names == ["instance-b"] {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "a dropped announcement is still listed: {names:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(second);
}

/// An exclusive writer lease: one holder at a time, other writers kept off, released on drop.
async fn exclusive_lease(f: &dyn BackendFixture) {
    let b = f.backend();
    let t = topic("lease");
    b.create_topic(&t, 0).await.unwrap();
    let lease = b
        .try_lease(&t, "holder-a")
        .await
        .unwrap()
        .expect("a free topic's lease is granted");
    assert!(lease.is_held());
    assert!(
        b.try_lease(&t, "holder-b").await.unwrap().is_none(),
        "a second holder is refused"
    );
    assert!(
        b.send(&t, vec![entry(&["intruder"])]).await.is_err(),
        "other writers are kept off"
    );
    lease
        .submit(vec![entry(&["by-lease"])])
        .await
        .unwrap()
        .await
        .unwrap();
    assert_eq!(
        b.lease_holder(&t).await.unwrap().as_deref(),
        Some("holder-a")
    );
    drop(lease);
    // Releasing reaches the broker asynchronously.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let second = loop {
        if let Some(l) = b.try_lease(&t, "holder-b").await.unwrap() {
            break l;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the lease never came free"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        b.lease_holder(&t).await.unwrap().as_deref(),
        Some("holder-b")
    );
    second
        .submit(vec![entry(&["by-b"])])
        .await
        .unwrap()
        .await
        .unwrap();
    let mut reader = b.open_reader(&t, EntryId::EARLIEST).await.unwrap();
    let mut got = Vec::new();
    while got.len() < 2 {
        let entries = reader
            .read(10, 1 << 20, Duration::from_secs(5))
            .await
            .unwrap();
        assert!(
            !entries.is_empty(),
            "entries written under the leases are readable"
        );
        got.extend(entries.into_iter().flat_map(|e| e.messages));
    }
    let values: Vec<_> = got.iter().map(|m| m.value.clone().unwrap()).collect();
    assert_eq!(
        values,
        [Bytes::from_static(b"by-lease"), Bytes::from_static(b"by-b")]
    );
}

async fn survives_restart(f: &mut dyn BackendFixture) {
    let t = topic("restart");
    let (ids, acked) = {
        let b = f.backend();
        b.create_topic(&t, 2).await.unwrap();
        let p = t.partition(1);
        let ids = persisted(b.as_ref(), &p, vec![entry(&["a"]), entry(&["b"])]).await;
        let mut c = attach(
            b.as_ref(),
            &p,
            "durable",
            SubscriptionType::Exclusive,
            InitialPosition::Earliest,
        )
        .await;
        let got = receive_n(&mut c, 2).await;
        c.ack(&[got[0].id]).await.unwrap();
        c.close().await;
        (ids, got[0].id)
    };
    f.restart().await;
    let b = f.backend();
    let p = t.partition(1);
    assert_eq!(b.topic_info(&t).await.unwrap().unwrap().partitions, 2);
    assert_eq!(
        b.last_message_id(&p).await.unwrap(),
        Some(ids[1].message(0))
    );
    let after = persisted(b.as_ref(), &p, vec![entry(&["c"])]).await;
    assert!(after[0] > ids[1], "ids keep growing across restarts");
    let mut c = attach(
        b.as_ref(),
        &p,
        "durable",
        SubscriptionType::Exclusive,
        InitialPosition::Earliest,
    )
    .await;
    let got = receive_n(&mut c, 2).await;
    assert!(
        got.iter().all(|m| m.id != acked),
        "acknowledged messages stay acknowledged"
    );
    assert_eq!(values(&got), ["b", "c"]);
}

/// A deliver-at time is stored with the message and comes back to readers and consumers. On a
/// non-shared subscription neither backend holds the message back (Pulsar's broker delays only
/// on Shared and Key_Shared subscriptions), so the translators' readers do.
async fn deliver_at_round_trips(f: &mut dyn BackendFixture) {
    let b = f.backend();
    let t = topic("deliver-at");
    b.create_topic(&t, 0).await.unwrap();
    let mut c = attach(
        b.as_ref(),
        &t,
        "s",
        SubscriptionType::Exclusive,
        InitialPosition::Earliest,
    )
    .await;
    let later = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
        + 60_000;
    let mut delayed = message("delayed");
    delayed.deliver_at = Some(later);
    let ids = persisted(
        b.as_ref(),
        &t,
        vec![
            EntryToSend {
                messages: vec![delayed.clone()],
                dedup: None,
                coalesce: false,
            },
            entry(&["now"]),
        ],
    )
    .await;
    let got = receive_n(&mut c, 2).await;
    assert_eq!(values(&got), ["delayed", "now"]);
    assert_eq!(got[0].message, delayed);
    assert_eq!(got[1].message.deliver_at, None);
    c.close().await;

    let mut reader = b.open_reader(&t, ids[0]).await.unwrap();
    let entries = read_n(&mut reader, 2, usize::MAX).await;
    assert_eq!(entries[0].messages, vec![delayed.clone()]);
    assert_eq!(entries[1].messages, vec![message("now")]);
    drop((reader, b));

    // And after a restart (the embedded backend reads its file again).
    f.restart().await;
    let b = f.backend();
    let mut reader = b.open_reader(&t, ids[0]).await.unwrap();
    let entries = read_n(&mut reader, 1, usize::MAX).await;
    assert_eq!(entries[0].messages, vec![delayed]);
}

/// Topic properties are set, replaced and removed per key, kept with the topic (partitioned or
/// not), and gone with it; policies can be set and the applied retention read back, keeping at
/// least what was asked for.
async fn topic_properties_and_policies(f: &dyn BackendFixture) {
    use gateway_core::backend::{Retention, TopicPolicies};
    use std::collections::BTreeMap;
    let b = f.backend();
    for partitions in [0, 2] {
        let t = topic("properties");
        assert!(matches!(
            b.topic_properties(&t).await,
            Err(gateway_core::BackendError::TopicNotFound(_))
        ));
        b.create_topic(&t, partitions).await.unwrap();
        assert_eq!(b.topic_properties(&t).await.unwrap(), BTreeMap::new());
        let set = BTreeMap::from([
            ("kafka.retention.ms".to_owned(), "3600000".to_owned()),
            (
                "kafka.cleanup.policy".to_owned(),
                "compact,delete".to_owned(),
            ),
        ]);
        b.update_topic_properties(&t, &set, &[]).await.unwrap();
        assert_eq!(b.topic_properties(&t).await.unwrap(), set);
        let change = BTreeMap::from([("kafka.retention.ms".to_owned(), "60000".to_owned())]);
        b.update_topic_properties(&t, &change, &["kafka.cleanup.policy".to_owned()])
            .await
            .unwrap();
        assert_eq!(b.topic_properties(&t).await.unwrap(), change);

        let hour = Retention {
            time: Some(Duration::from_secs(3600)),
            bytes: None,
        };
        let policies = TopicPolicies {
            retention: hour,
            compaction_threshold: Some(1 << 20),
            keep_while_inactive: true,
        };
        b.set_topic_policies(&t, &policies).await.unwrap();
        // Pulsar applies topic policies through a system topic: a read may lag the write.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let applied = b.applied_retention(&t).await.unwrap();
            let keeps_an_hour = applied.time.is_none_or(|t| t >= Duration::from_secs(3600))
                && applied.bytes.is_none();
            if keeps_an_hour {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "applied retention {applied:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }

        b.delete_topic(&t).await.unwrap();
        b.create_topic(&t, partitions).await.unwrap();
        assert_eq!(
            b.topic_properties(&t).await.unwrap(),
            BTreeMap::new(),
            "a topic created again has none of the old one's properties"
        );
        b.delete_topic(&t).await.unwrap();
    }
}

/// The values of entries as read, in order.
fn entry_values(entries: &[gateway_core::StoredEntry]) -> Vec<String> {
    entries
        .iter()
        .flat_map(|e| &e.messages)
        .map(|m| String::from_utf8_lossy(m.value.as_deref().unwrap_or_default()).into_owned())
        .collect()
}

/// Sends `values` in `txn`, one entry each, and waits until they are persisted.
async fn send_in(b: &dyn Backend, txn: TransactionId, t: &TopicName, values: &[&str]) {
    let entries = values.iter().map(|v| entry(&[v])).collect();
    let receipts = b
        .submit_in_transaction(txn, t, entries)
        .await
        .unwrap()
        .await
        .unwrap();
    assert!(receipts
        .iter()
        .all(|r| matches!(r, SendReceipt::Persisted(_))));
}

/// Transactions: what an open transaction wrote is read by nobody, and holds back what was
/// written after it; a commit makes it readable, across topics, in writing order; an abort
/// drops it for good.
async fn transaction_commit_and_abort(f: &dyn BackendFixture) {
    let b = f.backend();
    let t = topic("txn");
    let u = topic("txn-other");
    b.create_topic(&t, 0).await.unwrap();
    b.create_topic(&u, 0).await.unwrap();
    let before = persisted(b.as_ref(), &t, vec![entry(&["before"])]).await;
    let mut consumer = attach(
        b.as_ref(),
        &t,
        "txn-sub",
        SubscriptionType::Exclusive,
        InitialPosition::Earliest,
    )
    .await;
    assert_eq!(values(&receive_n(&mut consumer, 1).await), ["before"]);

    let txn = b.begin_transaction(Duration::from_secs(300)).await.unwrap();
    b.add_to_transaction(txn, &t).await.unwrap();
    b.add_to_transaction(txn, &u).await.unwrap();
    b.add_to_transaction(txn, &t).await.unwrap();
    send_in(b.as_ref(), txn, &t, &["t1", "t2"]).await;
    send_in(b.as_ref(), txn, &u, &["u1"]).await;
    let after = persisted(b.as_ref(), &t, vec![entry(&["after"])]).await;

    let mut reader = b.open_reader(&t, EntryId::EARLIEST).await.unwrap();
    assert_eq!(
        entry_values(&read_n(&mut reader, 4, usize::MAX).await),
        ["before"],
        "an open transaction holds back its own entries and everything written after them"
    );
    assert_eq!(
        b.last_message_id(&t).await.unwrap(),
        Some(before[0].message(0)),
        "the last message id goes no further than readers may read"
    );
    let mut other = b.open_reader(&u, EntryId::EARLIEST).await.unwrap();
    assert!(other.read(10, usize::MAX, QUIET).await.unwrap().is_empty());
    assert!(consumer.receive(10, QUIET).await.unwrap().is_empty());

    b.end_transaction(txn, true).await.unwrap();
    assert_eq!(
        entry_values(&read_n(&mut reader, 3, usize::MAX).await),
        ["t1", "t2", "after"]
    );
    assert_eq!(
        entry_values(&read_n(&mut other, 1, usize::MAX).await),
        ["u1"]
    );
    assert_eq!(
        values(&receive_n(&mut consumer, 3).await),
        ["t1", "t2", "after"]
    );
    let last = b.last_message_id(&t).await.unwrap().unwrap();
    assert!(
        last >= after[0].message(0),
        "{last:?} reaches the committed entries"
    );
    assert!(matches!(
        b.end_transaction(txn, true).await,
        Err(BackendError::TransactionNotOpen(_))
    ));

    let aborted = b.begin_transaction(Duration::from_secs(300)).await.unwrap();
    b.add_to_transaction(aborted, &t).await.unwrap();
    send_in(b.as_ref(), aborted, &t, &["x1", "x2"]).await;
    persisted(b.as_ref(), &t, vec![entry(&["after-abort"])]).await;
    b.end_transaction(aborted, false).await.unwrap();
    assert_eq!(
        entry_values(&read_n(&mut reader, 3, usize::MAX).await),
        ["after-abort"],
        "aborted entries are never read"
    );
    assert_eq!(values(&receive_n(&mut consumer, 1).await), ["after-abort"]);
    assert!(consumer.receive(10, QUIET).await.unwrap().is_empty());
    let mut again = b.open_reader(&t, EntryId::EARLIEST).await.unwrap();
    assert_eq!(
        entry_values(&read_n(&mut again, 10, usize::MAX).await),
        ["before", "t1", "t2", "after", "after-abort"]
    );
    consumer.close().await;
}

/// A transaction whose owner went away (here: the backend client restarted, as when a gateway
/// dies) is aborted by the backend once its timeout passes, and stops holding readers back.
async fn transaction_timeout_aborts(f: &mut dyn BackendFixture) {
    let t = topic("txn-timeout");
    {
        let b = f.backend();
        b.create_topic(&t, 0).await.unwrap();
        let txn = b.begin_transaction(Duration::from_secs(3)).await.unwrap();
        b.add_to_transaction(txn, &t).await.unwrap();
        send_in(b.as_ref(), txn, &t, &["pending"]).await;
        persisted(b.as_ref(), &t, vec![entry(&["later"])]).await;
    }
    f.restart().await;
    let b = f.backend();
    let mut reader = b.open_reader(&t, EntryId::EARLIEST).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    let mut seen = Vec::new();
    while seen.is_empty() && tokio::time::Instant::now() < deadline {
        seen = reader.read(10, usize::MAX, QUIET).await.unwrap();
    }
    assert_eq!(
        entry_values(&seen),
        ["later"],
        "the timed-out transaction is aborted and no longer holds readers back"
    );
}

/// Runs every conformance check on a fresh fixture of each backend.
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod embedded {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let mut fixture = EmbeddedFixture::new();
                    super::$name(&mut fixture).await;
                }
            )*
        }
        mod pulsar {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                #[ignore = "needs a real Pulsar: set PULSAR_URL and PULSAR_ADMIN_URL, run with --include-ignored"]
                async fn $name() {
                    let config = pulsar_config()
                        .expect("PULSAR_URL and PULSAR_ADMIN_URL name the Pulsar to test (compat-suites/pulsar/start)");
                    let mut fixture = PulsarFixture::new(config);
                    super::$name(&mut fixture).await;
                }
            )*
        }
    };
}

/// `ready`: the backlog less what consumers hold unacknowledged; a consumer attached with a
/// small prefetch leaves the rest to the others.
async fn ready_and_prefetch(f: &dyn BackendFixture) {
    let b = f.backend();
    let t = topic("ready");
    b.create_topic(&t, 0).await.unwrap();
    let mut first = b
        .subscribe(
            &t,
            "s",
            SubscribeOptions {
                sub_type: SubscriptionType::Shared,
                initial: InitialPosition::Earliest,
                prefetch: Some(1),
            },
        )
        .await
        .unwrap();
    persisted(
        b.as_ref(),
        &t,
        (0..6).map(|i| entry(&[&format!("m{i}")])).collect(),
    )
    .await;
    let got = first.receive(1, ARRIVES).await.unwrap();
    assert_eq!(got.len(), 1);
    // Stats catch up with dispatch asynchronously on Pulsar.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(b.backlog(&t, "s").await.unwrap(), 6);
    let ready = b.ready(&t, "s").await.unwrap();
    assert!(
        (3..=5).contains(&ready),
        "one delivered, at most a prefetch of one more held back: ready {ready}"
    );
    // A second consumer gets messages the first one's small prefetch left alone.
    let mut second = b
        .subscribe(
            &t,
            "s",
            SubscribeOptions {
                sub_type: SubscriptionType::Shared,
                initial: InitialPosition::Earliest,
                prefetch: Some(10),
            },
        )
        .await
        .unwrap();
    let other = second.receive(4, ARRIVES).await.unwrap();
    assert!(!other.is_empty(), "the second consumer is not starved");
    first.ack(&[got[0].id]).await.unwrap();
    first.close().await;
    second.close().await;
    let deadline = tokio::time::Instant::now() + ARRIVES;
    loop {
        let (backlog, ready) = (
            b.backlog(&t, "s").await.unwrap(),
            b.ready(&t, "s").await.unwrap(),
        );
        if backlog == 5 && ready == 5 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "with no consumers every unacknowledged message is ready again: backlog {backlog}, ready {ready}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `acknowledged`: what a subscription acknowledged, by entries (a queue browser skips them):
/// a prefix up to `from`, then ranges; delivered but unacknowledged messages are not in it.
async fn acknowledged_entries(f: &dyn BackendFixture) {
    let b = f.backend();
    let t = topic("acked");
    b.create_topic(&t, 0).await.unwrap();
    let mut c = attach(
        b.as_ref(),
        &t,
        "s",
        SubscriptionType::Shared,
        InitialPosition::Earliest,
    )
    .await;
    let ids = persisted(
        b.as_ref(),
        &t,
        ["a", "b", "c", "d", "e", "f"]
            .iter()
            .map(|v| entry(&[v]))
            .collect(),
    )
    .await;
    let before = b.acknowledged(&t, "s").await.unwrap();
    assert!(
        ids.iter().all(|id| !before.contains(*id)),
        "nothing acknowledged yet: {before:?}"
    );
    let got = receive_n(&mut c, 6).await;
    assert_eq!(values(&got), ["a", "b", "c", "d", "e", "f"]);
    // a and b (a prefix), d and e (a range); c and f delivered, not acknowledged.
    let acked = [got[0].id, got[1].id, got[3].id, got[4].id];
    c.ack(&acked).await.unwrap();
    let deadline = tokio::time::Instant::now() + ARRIVES;
    let now = loop {
        // Acknowledgements reach Pulsar's cursor asynchronously.
        let now = b.acknowledged(&t, "s").await.unwrap();
        if now.from == ids[2] || tokio::time::Instant::now() > deadline {
            break now;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        now.from, ids[2],
        "a and b are the acknowledged prefix: {now:?}"
    );
    assert_eq!(now.ranges, [(ids[3], ids[4])], "{now:?}");
    let shown: Vec<bool> = ids.iter().map(|id| now.contains(*id)).collect();
    assert_eq!(shown, [true, true, false, true, true, false]);
    c.close().await;
    // It is the subscription's, not the consumer's.
    assert_eq!(b.acknowledged(&t, "s").await.unwrap(), now);
    assert!(matches!(
        b.acknowledged(&t, "nobody").await,
        Err(gateway_core::BackendError::SubscriptionNotFound(_))
    ));
}

/// A partitioned topic read as one (`gateway_core::partitioned`): every message once, each
/// partition in order; acknowledgements and negative acknowledgements reach the partition that
/// delivered the message; what is not acknowledged comes back after a close.
async fn partitioned_consumer(f: &dyn BackendFixture) {
    let b = f.backend();
    let t = topic("parted");
    b.create_topic(&t, 3).await.unwrap();
    let subscribe = || {
        gateway_core::partitioned::subscribe(
            b.as_ref(),
            &t,
            3,
            "s",
            SubscribeOptions {
                sub_type: SubscriptionType::Shared,
                initial: InitialPosition::Earliest,
                prefetch: Some(0),
            },
        )
    };
    let mut c = subscribe().await.unwrap();
    assert!(
        c.receive(10, Duration::from_millis(300))
            .await
            .unwrap()
            .is_empty(),
        "an empty topic has nothing"
    );
    let sent = [("a", 0), ("b", 1), ("c", 2), ("d", 0), ("e", 2), ("f", 0)];
    for (value, partition) in sent {
        persisted(b.as_ref(), &t.partition(partition), vec![entry(&[value])]).await;
    }
    let got = receive_n(&mut c, 6).await;
    let mut all = values(&got);
    let order = all.clone();
    all.sort();
    assert_eq!(all, ["a", "b", "c", "d", "e", "f"], "each message once");
    let position = |v: &str| order.iter().position(|o| o == v).unwrap();
    assert!(
        position("a") < position("d") && position("d") < position("f"),
        "partition 0 in order: {order:?}"
    );
    assert!(
        position("c") < position("e"),
        "partition 2 in order: {order:?}"
    );
    assert!(
        c.receive(1, QUIET).await.unwrap().is_empty(),
        "nothing more"
    );

    // b (partition 1) back with a higher count; a, c and d acknowledged; e and f left.
    let id = |v: &str| got[position(v)].id;
    c.nack(&[id("b")]).await.unwrap();
    let again = receive_n(&mut c, 1).await;
    assert_eq!(values(&again), ["b"]);
    assert_eq!(again[0].redelivery_count, 1);
    c.ack(&[id("a"), id("b"), id("c"), id("d")]).await.unwrap();
    c.close().await;
    let mut c = subscribe().await.unwrap();
    let mut left = values(&receive_n(&mut c, 2).await);
    left.sort();
    assert_eq!(
        left,
        ["e", "f"],
        "only what was not acknowledged comes back"
    );
    assert!(c.receive(1, QUIET).await.unwrap().is_empty());
    c.close().await;
}

/// Sends submitted one after another without waiting for the one before (as the Kafka front
/// end pipelines produce requests) persist in order, and each receipt names where its messages
/// are: a backend may store several sends that allow it (`coalesce`) as one entry (the Pulsar
/// backend coalesces what queues while a write is in flight), each send's messages then
/// starting at the batch index its receipt names. `find_sequence` finds each send there, and a
/// resend of one is a duplicate. Sends that do not allow it stay one entry each.
async fn pipelined_sends(f: &mut dyn BackendFixture) {
    let b = f.backend();
    let t = topic("pipelined");
    b.create_topic(&t, 0).await.unwrap();
    // Three rounds of 20 sends, each round awaited before the next: several entries.
    let (mut sends, mut sequence) = (Vec::new(), 0u64);
    for round in 0..3 {
        let mut pending = Vec::new();
        for i in round * 20..round * 20 + 20 {
            let values: Vec<String> = (0..i % 3 + 1).map(|j| format!("{i}-{j}")).collect();
            let send = EntryToSend {
                messages: values.iter().map(|v| message(v)).collect(),
                dedup: Some(("pipelined".into(), sequence)),
                coalesce: true,
            };
            let receipt = b.submit(&t, vec![send]).await.unwrap();
            pending.push((sequence, values.clone(), receipt));
            sequence += values.len() as u64;
        }
        for (sequence, values, receipt) in pending {
            let receipts = receipt.await.unwrap();
            let [SendReceipt::Persisted(id)] = receipts[..] else {
                panic!("send at {sequence}: {receipts:?}");
            };
            sends.push((sequence, values, id));
        }
    }
    assert!(
        sends.windows(2).all(|w| w[0].2 < w[1].2),
        "positions ascend in send order"
    );

    let total: usize = sends.iter().map(|s| s.1.len()).sum();
    let mut reader = b.open_reader(&t, EntryId::EARLIEST).await.unwrap();
    let mut stored = std::collections::HashMap::new();
    let mut entries = 0;
    while stored.len() < total {
        let read = reader.read(256, usize::MAX, ARRIVES).await.unwrap();
        assert!(
            !read.is_empty(),
            "{} of {total} messages read",
            stored.len()
        );
        for e in read {
            entries += 1;
            for (index, m) in e.indexed_messages() {
                stored.insert(e.id.message(index), m.clone());
            }
        }
    }
    for (sequence, values, id) in &sends {
        for (j, value) in values.iter().enumerate() {
            let at = gateway_core::MessageId {
                batch_index: id.batch_index + j as u32,
                ..*id
            };
            assert_eq!(
                stored.get(&at),
                Some(&message(value)),
                "send at {sequence}, message {j}, expected at {at}"
            );
        }
        assert_eq!(
            b.find_sequence(&t, "pipelined", *sequence).await.unwrap(),
            Some(*id),
            "found where its receipt said"
        );
    }
    eprintln!("{}: 60 sends stored as {entries} entries", b.kind());

    // A consumer that holds nothing ahead (prefetch 0) and takes fewer messages at a time than
    // an entry may hold gets each message once, and its acknowledgements complete every entry.
    // (On Pulsar the broker hands out a whole entry on any permit left and then counts the
    // permits it overdrew; a consumer that forgot the deficit stalled after about 100.)
    let subscribe = || async {
        b.subscribe(
            &t,
            "pipelined",
            SubscribeOptions {
                sub_type: SubscriptionType::Shared,
                initial: InitialPosition::Earliest,
                prefetch: Some(0),
            },
        )
        .await
        .unwrap()
    };
    let mut c = subscribe().await;
    let mut received = Vec::new();
    while received.len() < total {
        let got = c.receive(7, ARRIVES).await.unwrap();
        assert!(
            !got.is_empty(),
            "{} of {total} messages received",
            received.len()
        );
        c.ack(&got.iter().map(|m| m.id).collect::<Vec<_>>())
            .await
            .unwrap();
        received.extend(values(&got));
    }
    let expected: Vec<String> = sends.iter().flat_map(|s| s.1.clone()).collect();
    assert_eq!(received, expected, "each message once, in order");
    c.close().await;
    let mut c = subscribe().await;
    assert!(
        c.receive(1, QUIET).await.unwrap().is_empty(),
        "every entry was acknowledged"
    );
    c.close().await;
    let (sequence, values, _) = &sends[30];
    let resend = EntryToSend {
        messages: values.iter().map(|v| message(v)).collect(),
        dedup: Some(("pipelined".into(), *sequence)),
        coalesce: false,
    };
    assert_eq!(
        b.send(&t, vec![resend]).await.unwrap(),
        [SendReceipt::Duplicate]
    );

    // Pipelined sends that do not allow it keep an entry each.
    let mut pending = Vec::new();
    for i in 0..20 {
        let receipt = b
            .submit(&t, vec![entry(&[&format!("alone-{i}")])])
            .await
            .unwrap();
        pending.push(receipt);
    }
    let mut entries = std::collections::HashSet::new();
    for receipt in pending {
        let receipts = receipt.await.unwrap();
        let [SendReceipt::Persisted(id)] = receipts[..] else {
            panic!("{receipts:?}");
        };
        assert_eq!(id.batch_index, 0, "an entry of its own");
        assert!(entries.insert(id.entry_id()), "an entry of its own");
    }
}

conformance!(
    partitioned_consumer,
    topic_properties_and_policies,
    topic_lifecycle,
    acknowledged_entries,
    ready_and_prefetch,
    send_and_read,
    seek_by_publish_time,
    deduplication,
    last_sequence,
    find_sequence,
    pipelined_sends,
    exclusive_subscription,
    shared_subscription_redelivery,
    failover_and_key_shared,
    seek_subscription,
    table_topic,
    exclusive_lease,
    announcements,
    table_compaction,
    survives_restart,
    deliver_at_round_trips,
    transaction_commit_and_abort,
    transaction_timeout_aborts,
);
