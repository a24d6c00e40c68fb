//! Delivery delay on the AMQP 1.0 front end (issue 14 §3, "Timing"), driven by the `fe2o3-amqp`
//! client sending the message annotation Qpid JMS sends for `setDeliveryDelay`,
//! `x-opt-delivery-time` (ms since the epoch), which it only does when the connection offers
//! `DELAYED_DELIVERY`. A delayed message is not received before its time, on a queue (whose
//! Shared subscription Pulsar's broker delays itself) nor on a topic subscription (which only
//! the gateway delays), and is received after it; one held back when its durable subscriber
//! detaches is still there for the next. Runs on the embedded backend, and on Pulsar with
//! GATEWAY_TEST_BACKEND=pulsar.

use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use e2e_tests::InProcessGateway;
use fe2o3_amqp::connection::ConnectionHandle;
use fe2o3_amqp::session::SessionHandle;
use fe2o3_amqp::types::messaging::{
    Message, MessageAnnotations, Outcome, Source, Target, TerminusDurability, TerminusExpiryPolicy,
};
use fe2o3_amqp::types::performatives::{Open, Performative};
use fe2o3_amqp::types::primitives::{Symbol, Value};
use fe2o3_amqp::{Connection, Receiver, Sender, Session};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const WAIT: Duration = Duration::from_secs(10);
const TEST_LIMIT: Duration = Duration::from_secs(60);
const DELAY: u64 = 2_000;

async fn bounded(body: impl Future<Output = ()>) {
    tokio::time::timeout(TEST_LIMIT, body)
        .await
        .expect("the test finished within its time limit");
}

async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, fut)
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer within {WAIT:?}"))
}

fn unique(prefix: &str) -> String {
    format!("amqp1-{prefix}-{:08x}", rand::random::<u32>())
}

fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

async fn connect(gateway: &InProcessGateway) -> ConnectionHandle<()> {
    let url = format!("amqp://guest:guest@{}", gateway.gateway.amqp_addr());
    within("open", Connection::open(unique("client"), &url[..]))
        .await
        .expect("open")
}

async fn session(connection: &mut ConnectionHandle<()>) -> SessionHandle<()> {
    within("begin", Session::begin(connection))
        .await
        .expect("begin")
}

/// A sending link to a queue, or to a topic (capability `topic`, as Qpid JMS attaches).
async fn sender(session: &mut SessionHandle<()>, address: &str, topic: bool) -> Sender {
    let mut target = Target::builder().address(address.to_string());
    if topic {
        target = target.capabilities(vec![Symbol::from("topic")]);
    }
    within(
        "attach sender",
        Sender::builder()
            .name(unique("sender"))
            .target(target.build())
            .attach(session),
    )
    .await
    .expect("sender attached")
}

/// A receiving link from a queue, or a topic subscriber: non-durable, or durable named `name`.
async fn receiver(
    session: &mut SessionHandle<()>,
    address: &str,
    topic: bool,
    durable: Option<&str>,
) -> Receiver {
    let mut source = Source::builder().address(address.to_string());
    if topic {
        source = source.capabilities(vec![Symbol::from("topic")]);
    }
    if durable.is_some() {
        source = source
            .durable(TerminusDurability::UnsettledState)
            .expiry_policy(TerminusExpiryPolicy::Never);
    }
    let name = durable.map(str::to_owned).unwrap_or_else(|| unique("rx"));
    within(
        "attach receiver",
        Receiver::builder()
            .name(name)
            .source(source.build())
            .attach(session),
    )
    .await
    .expect("receiver attached")
}

/// Sends `text`, not to be delivered before `deliver_at` if one is given.
async fn send(sender: &mut Sender, text: &str, deliver_at: Option<u64>) {
    let mut message = Message::builder().value(text.to_string());
    if let Some(at) = deliver_at {
        message = message.message_annotations(
            MessageAnnotations::builder()
                .insert("x-opt-delivery-time", Value::Long(at as i64))
                .build(),
        );
    }
    let outcome = within("send", sender.send(message.build()))
        .await
        .expect("send");
    assert!(
        matches!(outcome, Outcome::Accepted(_)),
        "outcome {outcome:?}"
    );
}

async fn recv_text(receiver: &mut Receiver) -> String {
    let delivery = within("recv", receiver.recv::<String>())
        .await
        .expect("recv");
    receiver.accept(&delivery).await.expect("accept");
    delivery.into_body()
}

/// Nothing arrives until shortly before `deliver_at`.
async fn nothing_until(receiver: &mut Receiver, deliver_at: u64) {
    let quiet = Duration::from_millis(deliver_at.saturating_sub(now_millis() + 200));
    let got = tokio::time::timeout(quiet, receiver.recv::<String>()).await;
    assert!(got.is_err(), "delivered before its time: {got:?}");
}

/// `text` arrives, and not before `deliver_at`.
async fn arrives_at(receiver: &mut Receiver, text: &str, deliver_at: u64) {
    assert_eq!(recv_text(receiver).await, text);
    let now = now_millis();
    assert!(now >= deliver_at, "delivered {} ms early", deliver_at - now);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_open_offers_delayed_delivery() {
    bounded(async {
        let gateway = InProcessGateway::start().await;
        let mut s = TcpStream::connect(gateway.gateway.amqp_addr())
            .await
            .unwrap();
        s.write_all(b"AMQP\x00\x01\x00\x00").await.unwrap();
        let open = Open {
            container_id: "raw".into(),
            hostname: None,
            max_frame_size: 65536.into(),
            channel_max: 8.into(),
            idle_time_out: None,
            outgoing_locales: None,
            incoming_locales: None,
            offered_capabilities: None,
            desired_capabilities: None,
            properties: None,
        };
        let body = serde_amqp::to_vec(&Performative::Open(open)).unwrap();
        let mut frame = ((body.len() + 8) as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(&[2, 0, 0, 0]);
        frame.extend_from_slice(&body);
        s.write_all(&frame).await.unwrap();
        let mut header = [0u8; 12];
        within("header", s.read_exact(&mut header)).await.unwrap();
        assert_eq!(&header[..8], b"AMQP\x00\x01\x00\x00");
        let size = u32::from_be_bytes(header[8..].try_into().unwrap()) as usize;
        let mut rest = vec![0u8; size - 4];
        within("open", s.read_exact(&mut rest)).await.unwrap();
        let doff = rest[0] as usize * 4;
        let Performative::Open(answer) = serde_amqp::from_slice(&rest[doff - 4..]).unwrap() else {
            panic!("the gateway's first frame is not an open");
        };
        let offered = answer.offered_capabilities.expect("capabilities offered");
        assert!(
            offered.0.contains(&Symbol::from("DELAYED_DELIVERY")),
            "offered {offered:?}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delayed_message_on_a_queue_comes_after_its_time_and_others_pass_it() {
    bounded(async {
        let gateway = InProcessGateway::start().await;
        let queue = unique("q");
        let mut connection = connect(&gateway).await;
        let mut session = session(&mut connection).await;
        let mut tx = sender(&mut session, &queue, false).await;
        let deliver_at = now_millis() + DELAY;
        send(&mut tx, "delayed", Some(deliver_at)).await;
        // A delivery time already past holds nothing back.
        send(&mut tx, "now", Some(now_millis() - 1_000)).await;
        let mut rx = receiver(&mut session, &queue, false, None).await;
        assert_eq!(recv_text(&mut rx).await, "now");
        nothing_until(&mut rx, deliver_at).await;
        arrives_at(&mut rx, "delayed", deliver_at).await;
        connection.close().await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delayed_message_on_a_topic_subscription_comes_after_its_time() {
    bounded(async {
        let gateway = InProcessGateway::start().await;
        let topic = unique("t");
        let mut connection = connect(&gateway).await;
        let mut session = session(&mut connection).await;
        let mut rx = receiver(&mut session, &topic, true, None).await;
        let mut tx = sender(&mut session, &topic, true).await;
        let deliver_at = now_millis() + DELAY;
        send(&mut tx, "delayed", Some(deliver_at)).await;
        send(&mut tx, "now", None).await;
        assert_eq!(recv_text(&mut rx).await, "now");
        nothing_until(&mut rx, deliver_at).await;
        arrives_at(&mut rx, "delayed", deliver_at).await;
        connection.close().await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_held_back_when_its_subscriber_detaches_is_kept_for_the_next() {
    bounded(async {
        let gateway = InProcessGateway::start().await;
        let topic = unique("t");
        let name = unique("durable");
        let mut connection = connect(&gateway).await;
        let mut session = session(&mut connection).await;
        let first = receiver(&mut session, &topic, true, Some(&name)).await;
        let mut tx = sender(&mut session, &topic, true).await;
        let deliver_at = now_millis() + DELAY;
        send(&mut tx, "delayed", Some(deliver_at)).await;
        // Long enough for the link to have read it and held it back.
        tokio::time::sleep(Duration::from_millis(500)).await;
        first.detach().await.expect("detach");
        let mut again = receiver(&mut session, &topic, true, Some(&name)).await;
        nothing_until(&mut again, deliver_at).await;
        arrives_at(&mut again, "delayed", deliver_at).await;
        again.close().await.expect("close (unsubscribe)");
        connection.close().await.unwrap();
    })
    .await;
}
