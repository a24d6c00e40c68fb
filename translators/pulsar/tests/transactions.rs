//! What Pulsar 4.0 does around transactions, measured on a real one (`compat-suites/pulsar/start
//! --transactions`; set PULSAR_URL and PULSAR_ADMIN_URL, run with `--include-ignored
//! --nocapture` to see the numbers). These pin the facts the backend's comments rely on.

use std::time::{Duration, Instant};

use bytes::Bytes;
use gateway_core::backend::prelude::*;
use gateway_core::backend::SendReceipt;
use gateway_core::{BackendError, EntryId, EntryToSend, Message, MessageId, TopicName};
use gateway_pulsar::{AdminClient, PulsarBackend, PulsarConfig, TokenSource};

const NEEDS_PULSAR: &str = "needs a real Pulsar with transactions: compat-suites/pulsar/start --transactions, PULSAR_URL, PULSAR_ADMIN_URL";

/// The test Pulsar's configuration: plaintext, or TLS with PULSAR_TLS_TRUST_CERTS (a Pulsar
/// started with `--tls`).
fn config(url: &str, admin_url: &str, token: Option<&str>) -> PulsarConfig {
    let mut config = PulsarConfig::plain(url, admin_url, token);
    config.tls.trust_certs_file = std::env::var_os("PULSAR_TLS_TRUST_CERTS").map(Into::into);
    config
}

fn setup() -> (std::sync::Arc<PulsarBackend>, AdminClient) {
    let url = std::env::var("PULSAR_URL").expect(NEEDS_PULSAR);
    let admin_url = std::env::var("PULSAR_ADMIN_URL").expect(NEEDS_PULSAR);
    // The superuser's token on a Pulsar started with --auth.
    let token = std::env::var("PULSAR_ADMIN_TOKEN").ok();
    let backend = PulsarBackend::new(config(&url, &admin_url, token.as_deref())).unwrap();
    let admin = AdminClient::new(
        &admin_url,
        token.as_deref().map(TokenSource::literal),
        None,
        Duration::from_secs(30),
    )
    .unwrap();
    (backend, admin)
}

fn topic(name: &str) -> TopicName {
    TopicName::new(
        "public",
        "default",
        &format!("{name}-{}", rand::random::<u32>()),
    )
}

fn entry(value: &str, dedup: Option<(&str, u64)>) -> EntryToSend {
    EntryToSend {
        messages: vec![Message {
            key: None,
            value: Some(Bytes::from(value.to_owned())),
            properties: vec![],
            event_time: None,
            deliver_at: None,
        }],
        dedup: dedup.map(|(n, s)| (n.to_owned(), s)),
        coalesce: false,
    }
}

fn id(e: EntryId) -> MessageId {
    e.message(0)
}

async fn persisted(receipts: Vec<SendReceipt>) -> EntryId {
    match receipts[..] {
        [SendReceipt::Persisted(id)] => id.entry_id(),
        ref other => panic!("expected one persisted entry, got {other:?}"),
    }
}

async fn values(b: &PulsarBackend, t: &TopicName) -> Vec<String> {
    let mut reader = b.open_reader(t, EntryId::EARLIEST).await.unwrap();
    let mut seen = Vec::new();
    loop {
        let got = reader
            .read(100, usize::MAX, Duration::from_millis(1500))
            .await
            .unwrap();
        if got.is_empty() {
            return seen;
        }
        for e in got {
            for m in e.messages {
                seen.push(String::from_utf8_lossy(m.value.as_deref().unwrap_or_default()).into());
            }
        }
    }
}

/// GET_LAST_MESSAGE_ID (the backend's `last_message_id`) against the admin API's
/// `lastMessageId` while a transaction is open, after its commit, and after an abort.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a real Pulsar with transactions"]
async fn last_message_id_around_transactions() {
    let (b, admin) = setup();
    let t = topic("txn-last");
    b.create_topic(&t, 0).await.unwrap();
    let before = persisted(b.send(&t, vec![entry("before", None)]).await.unwrap()).await;

    let txn = b.begin_transaction(Duration::from_secs(60)).await.unwrap();
    b.add_to_transaction(txn, &t).await.unwrap();
    let pending = persisted(
        b.submit_in_transaction(txn, &t, vec![entry("t1", None)])
            .await
            .unwrap()
            .await
            .unwrap(),
    )
    .await;
    let after = persisted(b.send(&t, vec![entry("after", None)]).await.unwrap()).await;
    let rest_open = admin.last_message_id(&t).await.unwrap();
    eprintln!("open: binary {:?}, admin {rest_open:?} (before {before:?}, txn entry {pending:?}, after {after:?})",
        b.last_message_id(&t).await.unwrap());
    assert_eq!(b.last_message_id(&t).await.unwrap(), Some(id(before)));
    assert_eq!(
        rest_open,
        Some(id(after)),
        "the admin API names the ledger's last entry"
    );

    b.end_transaction(txn, true).await.unwrap();
    let rest_committed = admin.last_message_id(&t).await.unwrap().unwrap();
    eprintln!(
        "committed: binary {:?}, admin {rest_committed:?}",
        b.last_message_id(&t).await.unwrap()
    );
    assert_eq!(b.last_message_id(&t).await.unwrap(), Some(id(after)));
    assert_eq!(
        rest_committed.entry,
        after.entry + 1,
        "the commit marker is the ledger's last entry"
    );

    let aborted = b.begin_transaction(Duration::from_secs(60)).await.unwrap();
    b.submit_in_transaction(aborted, &t, vec![entry("x1", None)])
        .await
        .unwrap()
        .await
        .unwrap();
    b.end_transaction(aborted, false).await.unwrap();
    let rest_aborted = admin.last_message_id(&t).await.unwrap().unwrap();
    eprintln!(
        "aborted: binary {:?}, admin {rest_aborted:?}",
        b.last_message_id(&t).await.unwrap()
    );
    assert_eq!(
        b.last_message_id(&t).await.unwrap(),
        Some(id(after)),
        "aborted entries and markers are skipped"
    );
    assert_eq!(
        rest_aborted.entry,
        after.entry + 3,
        "x1, then the abort marker"
    );
    assert_eq!(values(&b, &t).await, ["before", "t1", "after"]);
}

/// A send in a transaction goes through the producer's deduplication like any other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a real Pulsar with transactions"]
async fn deduplication_in_transactions() {
    let (b, _) = setup();
    let t = topic("txn-dedup");
    b.create_topic(&t, 0).await.unwrap();
    let p = "txn-dedup-producer";
    let send_in = |txn, value: &'static str, seq| {
        let (b, t) = (b.clone(), t.clone());
        async move {
            b.submit_in_transaction(txn, &t, vec![entry(value, Some((p, seq)))])
                .await
                .unwrap()
                .await
                .unwrap()
        }
    };
    let txn = b.begin_transaction(Duration::from_secs(60)).await.unwrap();
    assert!(matches!(
        send_in(txn, "a", 1).await[..],
        [SendReceipt::Persisted(_)]
    ));
    assert_eq!(send_in(txn, "a-again", 1).await, [SendReceipt::Duplicate]);
    let plain = b
        .send(&t, vec![entry("a-plain", Some((p, 1)))])
        .await
        .unwrap();
    assert_eq!(
        plain,
        [SendReceipt::Duplicate],
        "a plain resend of a sequence sent in a transaction"
    );
    b.end_transaction(txn, false).await.unwrap();

    // The aborted transaction used sequence 1 up: a later resend of it is still a duplicate.
    let next = b.begin_transaction(Duration::from_secs(60)).await.unwrap();
    assert_eq!(
        send_in(next, "a-after-abort", 1).await,
        [SendReceipt::Duplicate]
    );
    assert!(matches!(
        send_in(next, "b", 2).await[..],
        [SendReceipt::Persisted(_)]
    ));
    b.end_transaction(next, true).await.unwrap();
    assert_eq!(b.last_sequence(&t, p).await.unwrap(), Some(2));
    assert_eq!(values(&b, &t).await, ["b"]);
}

/// How long after its timeout Pulsar aborts an abandoned transaction, and what ending it then
/// answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a real Pulsar with transactions"]
async fn timeout_abort_delay() {
    let (b, _) = setup();
    let t = topic("txn-ttl");
    b.create_topic(&t, 0).await.unwrap();
    let ttl = Duration::from_secs(2);
    let began = Instant::now();
    let txn = b.begin_transaction(ttl).await.unwrap();
    b.submit_in_transaction(txn, &t, vec![entry("pending", None)])
        .await
        .unwrap()
        .await
        .unwrap();
    b.send(&t, vec![entry("later", None)]).await.unwrap();
    let mut reader = b.open_reader(&t, EntryId::EARLIEST).await.unwrap();
    let got = loop {
        let got = reader
            .read(10, usize::MAX, Duration::from_millis(50))
            .await
            .unwrap();
        if !got.is_empty() {
            break got;
        }
        assert!(began.elapsed() < Duration::from_secs(120), "never aborted");
    };
    eprintln!(
        "readable {:?} after begin (timeout {ttl:?})",
        began.elapsed()
    );
    assert_eq!(got.len(), 1);
    // Pulsar itself acknowledges a send in the aborted transaction (and drops it: readers get
    // only what follows); the backend refuses it once the timeout it asked for has passed.
    let late = b
        .submit_in_transaction(txn, &t, vec![entry("late", None)])
        .await
        .map(|_| ());
    assert!(
        matches!(late, Err(BackendError::TransactionNotOpen(_))),
        "{late:?}"
    );
    assert!(matches!(
        b.end_transaction(txn, true).await,
        Err(BackendError::TransactionNotOpen(_))
    ));
    let unknown = gateway_core::backend::TransactionId {
        most_bits: txn.most_bits,
        least_bits: u64::MAX / 2,
    };
    assert!(matches!(
        b.end_transaction(unknown, false).await,
        Err(BackendError::TransactionNotOpen(_))
    ));
    assert!(matches!(
        b.add_to_transaction(unknown, &t).await,
        Err(BackendError::TransactionNotOpen(_))
    ));
}

/// Through `as_client` on a Pulsar with authorization (`start --auth --transactions`; skipped
/// without PULSAR_ADMIN_TOKEN and PULSAR_TOKEN_SECRET_KEY): a role needs lookup rights on
/// `pulsar/system` to find the coordinators, and a transaction belongs to the role that opened it
/// (only it adds topics and ends it), while any role may send in it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a real Pulsar with transactions and --auth"]
async fn transactions_of_a_client_token() {
    let (Ok(admin_token), Ok(_)) = (
        std::env::var("PULSAR_ADMIN_TOKEN"),
        std::env::var("PULSAR_TOKEN_SECRET_KEY"),
    ) else {
        eprintln!("skipped: no PULSAR_ADMIN_TOKEN and PULSAR_TOKEN_SECRET_KEY (start --auth)");
        return;
    };
    let url = std::env::var("PULSAR_URL").expect(NEEDS_PULSAR);
    let admin_url = std::env::var("PULSAR_ADMIN_URL").expect(NEEDS_PULSAR);
    let b = PulsarBackend::new(config(&url, &admin_url, Some(&admin_token))).unwrap();
    let token = |role: &str| {
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../compat-suites/pulsar/token"
        );
        let out = std::process::Command::new(script)
            .arg(role)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    let grant = |namespace: &str, role: &str, actions: &str| {
        let mut curl = std::process::Command::new("curl");
        if let Some(ca) = std::env::var_os("PULSAR_TLS_TRUST_CERTS") {
            curl.arg("--cacert").arg(ca);
        }
        let status = curl
            .args(["-sf", "-X", "POST", "-H", "Content-Type: application/json"])
            .arg("-H")
            .arg(format!("Authorization: Bearer {admin_token}"))
            .args(["--data", actions])
            .arg(format!(
                "{admin_url}/admin/v2/namespaces/{namespace}/permissions/{role}"
            ))
            .status()
            .unwrap();
        assert!(status.success());
    };
    let (alice, bob) = (
        format!("alice{}", rand::random::<u32>()),
        format!("bob{}", rand::random::<u32>()),
    );
    for role in [&alice, &bob] {
        grant("public/default", role, r#"["produce","consume"]"#);
    }
    let t = topic("txn-client");
    b.create_topic(&t, 0).await.unwrap();
    let (a, o) = (
        b.as_client(&token(&alice)).unwrap(),
        b.as_client(&token(&bob)).unwrap(),
    );
    assert!(matches!(
        a.begin_transaction(Duration::from_secs(60)).await,
        Err(BackendError::NotAuthorized(_))
    ));
    for role in [&alice, &bob] {
        grant("pulsar/system", role, r#"["consume"]"#);
    }
    let txn = a.begin_transaction(Duration::from_secs(60)).await.unwrap();
    a.add_to_transaction(txn, &t).await.unwrap();
    a.submit_in_transaction(txn, &t, vec![entry("a1", None)])
        .await
        .unwrap()
        .await
        .unwrap();
    // Pulsar answers TransactionNotFound to another role, as if there were no such transaction.
    assert!(matches!(
        o.end_transaction(txn, false).await,
        Err(BackendError::TransactionNotOpen(_))
    ));
    assert_eq!(a.last_message_id(&t).await.unwrap(), None);
    a.end_transaction(txn, true).await.unwrap();
    assert!(a.last_message_id(&t).await.unwrap().is_some());

    // A transaction the gateway's own role opened and added the topic to: a client's role may
    // send in it (Pulsar checks the owner when a topic is added and at the end, not on sends),
    // and what it sent is committed or aborted with it. Adding a topic itself is refused.
    let t2 = topic("txn-gateway-role");
    b.create_topic(&t2, 0).await.unwrap();
    for commit in [false, true] {
        let txn = b.begin_transaction(Duration::from_secs(60)).await.unwrap();
        b.add_to_transaction(txn, &t2).await.unwrap();
        a.submit_in_transaction(txn, &t2, vec![entry(&format!("commit={commit}"), None)])
            .await
            .unwrap()
            .await
            .unwrap();
        let refused = a.add_to_transaction(txn, &t).await;
        assert!(
            matches!(&refused, Err(BackendError::TransactionNotOpen(m)) if m.contains("neither the owner")),
            "{refused:?}"
        );
        b.end_transaction(txn, commit).await.unwrap();
    }
    assert_eq!(values(&b, &t2).await, ["commit=true"]);
}
