//! A JMS QueueBrowser over AMQP 1.0, driven by the `fe2o3-amqp` client: a receiving link whose
//! source asks for distribution mode `copy` is given the queue's messages in order without
//! consuming them, and leaves out what a consumer of the queue already acknowledged; settling
//! the browser's deliveries (even `accepted`) acknowledges nothing.
//! Runs on the embedded backend, and on Pulsar with GATEWAY_TEST_BACKEND=pulsar.

use std::future::Future;
use std::time::Duration;

use e2e_tests::InProcessGateway;
use fe2o3_amqp::connection::ConnectionHandle;
use fe2o3_amqp::session::SessionHandle;
use fe2o3_amqp::types::messaging::{DistributionMode, Outcome, Source};
use fe2o3_amqp::{Connection, Receiver, Sender, Session};

const WAIT: Duration = Duration::from_secs(10);
/// How long a browse waits for one more message before taking the enumeration as ended.
const QUIET: Duration = Duration::from_secs(1);
const TEST_LIMIT: Duration = Duration::from_secs(90);

async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, fut)
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer within {WAIT:?}"))
}

fn unique(prefix: &str) -> String {
    format!("amqp1-{prefix}-{:08x}", rand::random::<u32>())
}

async fn connect(gateway: &InProcessGateway) -> ConnectionHandle<()> {
    let url = format!("amqp://guest:guest@{}", gateway.gateway.amqp_addr());
    within("open", Connection::open(unique("client"), &url[..]))
        .await
        .expect("open")
}

/// Every message a new browser of `queue` shows, settling each as `accepted`.
async fn browse(session: &mut SessionHandle<()>, queue: &str) -> Vec<String> {
    let mut browser = within(
        "attach browser",
        Receiver::builder()
            .name(unique("browser"))
            .source(
                Source::builder()
                    .address(queue)
                    .distribution_mode(DistributionMode::Copy)
                    .build(),
            )
            .attach(session),
    )
    .await
    .expect("browser attached");
    let mut seen = Vec::new();
    while let Ok(delivery) = tokio::time::timeout(QUIET, browser.recv::<String>()).await {
        let delivery = delivery.expect("browsed");
        browser.accept(&delivery).await.expect("settled");
        seen.push(delivery.into_body());
    }
    within("detach browser", browser.close())
        .await
        .expect("browser closed");
    seen
}

/// Browses until the browser shows `want`. Meanwhile acknowledgements are being applied one by
/// one: a browse shows all of `want` and only messages of `before`, in the order of `before`.
async fn browse_until(
    session: &mut SessionHandle<()>,
    queue: &str,
    want: &[&str],
    before: &[&str],
) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let seen = browse(session, queue).await;
        if seen == want {
            return;
        }
        let expected: Vec<&str> = before
            .iter()
            .copied()
            .filter(|m| want.contains(m) || seen.iter().any(|s| s == m))
            .collect();
        assert_eq!(seen, expected, "browsed while acknowledgements are applied");
        assert!(
            tokio::time::Instant::now() < deadline,
            "acknowledged messages are still browsed: {seen:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_shows_what_is_not_acknowledged_and_consumes_nothing() {
    tokio::time::timeout(TEST_LIMIT, async {
        let gateway = InProcessGateway::start().await;
        let queue = unique("browse");
        let mut connection = connect(&gateway).await;
        let mut session = within("begin", Session::begin(&mut connection))
            .await
            .expect("begin");
        let mut sender = within(
            "attach sender",
            Sender::attach(&mut session, unique("s"), &queue[..]),
        )
        .await
        .expect("sender");
        for text in ["a", "b", "c"] {
            let outcome = within("send", sender.send(text.to_string())).await.unwrap();
            assert!(matches!(outcome, Outcome::Accepted(_)), "{outcome:?}");
        }
        assert_eq!(browse(&mut session, &queue).await, ["a", "b", "c"]);

        // A consumer takes "a" (accepted: acknowledged), and leaves "b" and "c" unsettled,
        // which go back to the queue when it detaches.
        let mut consumer = within(
            "attach",
            Receiver::attach(&mut session, unique("r"), &queue[..]),
        )
        .await
        .expect("consumer");
        let a = within("recv", consumer.recv::<String>()).await.unwrap();
        assert_eq!(a.body(), "a");
        consumer.accept(&a).await.unwrap();
        within("detach", consumer.close()).await.unwrap();

        // Acknowledgements reach the subscription asynchronously: until they have, a browser may
        // still show "a"; it must show "b" and "c" all along.
        browse_until(&mut session, &queue, &["b", "c"], &["a", "b", "c"]).await;

        // Browsing (and settling what was browsed) consumed nothing.
        let mut consumer = within(
            "attach",
            Receiver::attach(&mut session, unique("r"), &queue[..]),
        )
        .await
        .expect("consumer");
        for want in ["b", "c"] {
            let got = within("recv", consumer.recv::<String>()).await.unwrap();
            assert_eq!(got.body(), want);
            consumer.accept(&got).await.unwrap();
        }
        within("detach", consumer.close()).await.unwrap();
        // Everything consumed: an empty browse.
        browse_until(&mut session, &queue, &[], &["b", "c"]).await;
        connection.close().await.unwrap();
    })
    .await
    .expect("the test finished within its time limit");
}
