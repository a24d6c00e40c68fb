//! The AMQP 0-9-1 front end driven by lapin, a Rust client nobody here wrote, one test per
//! behaviour a RabbitMQ user relies on: connecting, routing by every exchange type, declarations
//! and their errors, queue arguments (TTL, dead-lettering, limits), publishing (properties,
//! headers, bodies, returns, confirms, transactions) and consuming (acks, requeues, prefetch,
//! cancels). Bad input goes over a raw TCP socket instead, framed with amq-protocol, and each of
//! those tests ends by checking that a fresh lapin connection still works.
//!
//! RabbitMQ is the reference: the reply codes are the spec's (AMQP 0-9-1 §1.1 "Constants") as
//! RabbitMQ uses them. The tests run on the embedded backend, and on Pulsar with
//! GATEWAY_TEST_BACKEND=pulsar (the harness picks the backend). Every wait is bounded.

use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use amq_protocol::frame::{gen_frame, parse_frame, AMQPContentHeader, AMQPFrame, WriteContext};
use amq_protocol::protocol::{channel as amqp_channel, connection as amqp_connection, AMQPClass};
use e2e_tests::InProcessGateway;
use futures::StreamExt;
use lapin::message::{BasicGetMessage, Delivery};
use lapin::options::*;
use lapin::types::{
    AMQPValue, ByteArray, DecimalValue, FieldArray, FieldTable, LongString, ShortString,
};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, Consumer, ErrorKind};
use lapin::{ExchangeKind, Queue};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long anything expected may take (a Pulsar round trip included).
const WAIT: Duration = Duration::from_secs(10);
/// How long to watch for something that must not happen.
const QUIET: Duration = Duration::from_millis(800);
/// No test may run longer than this.
const TEST_LIMIT: Duration = Duration::from_secs(45);

// ---- helpers: gateway, connections, channels --------------------------------------------------

/// Runs a test body under [`TEST_LIMIT`], so a gateway that stops answering fails the test
/// instead of hanging it.
async fn bounded(body: impl Future<Output = ()>) {
    tokio::time::timeout(TEST_LIMIT, body)
        .await
        .expect("the test finished within its time limit");
}

/// `fut`, which must complete within [`WAIT`].
async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, fut)
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer within {WAIT:?}"))
}

fn unique(prefix: &str) -> String {
    format!("lapin-{prefix}-{:08x}", rand::random::<u32>())
}

fn addr(gateway: &InProcessGateway) -> SocketAddr {
    gateway.gateway.amqp_addr()
}

async fn connect_as(
    gateway: &InProcessGateway,
    user: &str,
    password: &str,
) -> lapin::Result<Connection> {
    let uri = format!("amqp://{user}:{password}@{}/%2f", addr(gateway));
    within(
        "connect",
        Connection::connect(&uri, ConnectionProperties::default()),
    )
    .await
}

async fn connect(gateway: &InProcessGateway) -> Connection {
    connect_as(gateway, "guest", "guest")
        .await
        .expect("connect")
}

async fn channel(connection: &Connection) -> Channel {
    within("channel.open", connection.create_channel())
        .await
        .expect("channel.open")
}

async fn confirming(connection: &Connection) -> Channel {
    let ch = channel(connection).await;
    within(
        "confirm.select",
        ch.confirm_select(ConfirmSelectOptions::default()),
    )
    .await
    .expect("confirm.select");
    ch
}

/// A gateway, a connection to it and a channel in confirm mode: what most tests start with.
async fn setup() -> (InProcessGateway, Connection, Channel) {
    let gateway = InProcessGateway::start().await;
    let connection = connect(&gateway).await;
    let ch = confirming(&connection).await;
    (gateway, connection, ch)
}

/// The reply code the server closed the channel (or connection) with.
fn code(error: lapin::Error) -> u16 {
    match error.kind() {
        ErrorKind::ProtocolError(e) => e.get_id(),
        other => panic!("expected an AMQP error with a reply code, got {other:?}"),
    }
}

/// A synchronous method that always succeeds on a healthy channel.
async fn probe(ch: &Channel) -> lapin::Result<()> {
    ch.exchange_declare(
        "amq.direct".into(),
        ExchangeKind::Direct,
        ExchangeDeclareOptions {
            passive: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
}

/// Runs an asynchronous method (one without a reply, such as basic.ack) that must make the server
/// close the channel, and returns the reply code. A probe is queued right behind it on the same
/// frame queue, so the channel.close rejects the probe with the server's reply code. (Publishes
/// travel on another lapin queue; see [`publish_closes_channel`].)
/// `None` when lapin had already taken the channel.close in before the probe was queued (seen
/// once in CI on a busy machine): the probe then fails with no reply code, and that attempt says
/// nothing either way.
async fn channel_closed_by<T>(ch: &Channel, op: impl Future<Output = T>) -> Option<u16> {
    let (_, probed) = within("channel.close", async { futures::join!(op, probe(ch)) }).await;
    match probed.expect_err("the server closed the channel") {
        e if matches!(e.kind(), ErrorKind::InvalidChannelState(..)) => None,
        e => Some(code(e)),
    }
}

/// Publishes on a confirm channel a message the server must refuse by closing the channel, and
/// returns the reply code: lapin fails the pending confirm with the channel.close.
async fn publish_closes_channel(
    ch: &Channel,
    exchange: &str,
    key: &str,
    properties: BasicProperties,
) -> u16 {
    let confirm = within(
        "basic.publish",
        ch.basic_publish(
            exchange.into(),
            key.into(),
            BasicPublishOptions::default(),
            b"refused",
            properties,
        ),
    )
    .await
    .expect("basic.publish");
    match within("channel.close", confirm).await {
        Err(e) => code(e),
        Ok(confirmation) => panic!("expected channel.close, got {confirmation:?}"),
    }
}

/// Waits until lapin has seen the channel closed.
async fn wait_channel_closed(ch: &Channel) {
    let deadline = Instant::now() + WAIT;
    while ch.status().connected() {
        assert!(
            Instant::now() < deadline,
            "channel still open after {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---- helpers: declarations ---------------------------------------------------------------------

fn passive() -> QueueDeclareOptions {
    QueueDeclareOptions {
        passive: true,
        ..Default::default()
    }
}

async fn declare_exchange(ch: &Channel, name: &str, kind: ExchangeKind, arguments: FieldTable) {
    within(
        "exchange.declare",
        ch.exchange_declare(
            name.into(),
            kind,
            ExchangeDeclareOptions::default(),
            arguments,
        ),
    )
    .await
    .expect("exchange.declare");
}

/// A named, non-exclusive queue (other connections may use it).
async fn declare_queue(ch: &Channel, name: &str, arguments: FieldTable) -> Queue {
    within(
        "queue.declare",
        ch.queue_declare(name.into(), QueueDeclareOptions::default(), arguments),
    )
    .await
    .expect("queue.declare")
}

/// A server-named exclusive queue.
async fn temp_queue(ch: &Channel, arguments: FieldTable) -> String {
    within(
        "queue.declare",
        ch.queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                ..Default::default()
            },
            arguments,
        ),
    )
    .await
    .expect("queue.declare")
    .name()
    .to_string()
}

async fn bind(ch: &Channel, queue: &str, exchange: &str, key: &str, arguments: FieldTable) {
    within(
        "queue.bind",
        ch.queue_bind(
            queue.into(),
            exchange.into(),
            key.into(),
            QueueBindOptions::default(),
            arguments,
        ),
    )
    .await
    .expect("queue.bind");
}

/// The queue's ready messages, as a passive declare reports them.
async fn message_count(ch: &Channel, queue: &str) -> u32 {
    within(
        "queue.declare passive",
        ch.queue_declare(queue.into(), passive(), FieldTable::default()),
    )
    .await
    .expect("the queue exists")
    .message_count()
}

/// Waits until the queue reports `want` ready messages.
async fn wait_message_count(ch: &Channel, queue: &str, want: u32) {
    let deadline = Instant::now() + WAIT;
    loop {
        let count = message_count(ch, queue).await;
        if count == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "queue {queue}: {count} ready messages, expected {want}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until a passive declare of `queue` fails with 404 (each try on a fresh channel, since
/// the failure closes it). An exclusive queue whose owner just closed may answer 405 (still
/// locked) until it is deleted, as on RabbitMQ, where the deletion follows the close too.
async fn wait_queue_gone(connection: &Connection, queue: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        let ch = channel(connection).await;
        match within(
            "queue.declare passive",
            ch.queue_declare(queue.into(), passive(), FieldTable::default()),
        )
        .await
        {
            Err(e) => match code(e) {
                404 => return,
                405 if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                other => panic!("queue {queue} is gone: expected 404, got {other}"),
            },
            Ok(_) => {
                assert!(Instant::now() < deadline, "queue {queue} still exists");
                let _ = ch.close(200, "retry".into()).await;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

// ---- helpers: messages -------------------------------------------------------------------------

fn table(pairs: &[(&str, AMQPValue)]) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in pairs {
        t.insert(ShortString::from(*k), v.clone());
    }
    t
}

fn text(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s.as_bytes().to_vec()))
}

fn body_text(data: &[u8]) -> String {
    String::from_utf8(data.to_vec()).expect("utf-8 body")
}

/// Publishes on a confirm channel; true when the broker acked it.
async fn publish_with(
    ch: &Channel,
    exchange: &str,
    key: &str,
    body: &[u8],
    properties: BasicProperties,
) -> bool {
    let confirm = within(
        "basic.publish",
        ch.basic_publish(
            exchange.into(),
            key.into(),
            BasicPublishOptions::default(),
            body,
            properties,
        ),
    )
    .await
    .expect("basic.publish");
    within("publisher confirm", confirm)
        .await
        .expect("confirm")
        .is_ack()
}

async fn publish(ch: &Channel, exchange: &str, key: &str, body: &[u8]) -> bool {
    publish_with(ch, exchange, key, body, BasicProperties::default()).await
}

/// Publishes on a channel without confirms (tx channels); returns once the frames are out.
async fn publish_unconfirmed(ch: &Channel, exchange: &str, key: &str, body: &[u8]) {
    within(
        "basic.publish",
        ch.basic_publish(
            exchange.into(),
            key.into(),
            BasicPublishOptions::default(),
            body,
            BasicProperties::default(),
        ),
    )
    .await
    .expect("basic.publish");
}

async fn get(ch: &Channel, queue: &str, no_ack: bool) -> Option<BasicGetMessage> {
    within(
        "basic.get",
        ch.basic_get(queue.into(), BasicGetOptions { no_ack }),
    )
    .await
    .expect("basic.get")
}

/// basic.get, retried until a message comes.
async fn get_eventually(ch: &Channel, queue: &str, no_ack: bool) -> BasicGetMessage {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(m) = get(ch, queue, no_ack).await {
            return m;
        }
        assert!(Instant::now() < deadline, "no message in {queue}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every body basic.get finds (no-ack), in order, until get-empty.
async fn get_all(ch: &Channel, queue: &str) -> Vec<String> {
    let mut got = Vec::new();
    while let Some(m) = get(ch, queue, true).await {
        got.push(body_text(&m.delivery.data));
    }
    got
}

async fn consume(
    ch: &Channel,
    queue: &str,
    options: BasicConsumeOptions,
) -> lapin::Result<Consumer> {
    within(
        "basic.consume",
        ch.basic_consume(queue.into(), "".into(), options, FieldTable::default()),
    )
    .await
}

async fn next_delivery(consumer: &mut Consumer) -> Delivery {
    within("basic.deliver", consumer.next())
        .await
        .expect("the consumer is still running")
        .expect("a delivery")
}

/// Deliveries that arrive within [`QUIET`].
async fn deliveries_within_quiet(consumer: &mut Consumer) -> Vec<Delivery> {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + QUIET;
    while let Ok(Some(d)) = tokio::time::timeout_at(deadline, consumer.next()).await {
        got.push(d.expect("a delivery"));
    }
    got
}

/// The most recent `x-death` entry of a dead-lettered message.
fn last_death(delivery: &Delivery) -> FieldTable {
    let headers = delivery
        .properties
        .headers()
        .clone()
        .expect("a dead-lettered message has headers");
    let Some(AMQPValue::FieldArray(deaths)) = headers.inner().get("x-death") else {
        panic!("no x-death array in {headers:?}")
    };
    match deaths.as_slice().first() {
        Some(AMQPValue::FieldTable(death)) => death.clone(),
        other => panic!("x-death entry: {other:?}"),
    }
}

/// The gateway still serves: a new connection declares a queue, publishes and gets it back.
async fn still_serving(gateway: &InProcessGateway) {
    let connection = connect(gateway).await;
    let ch = confirming(&connection).await;
    let queue = temp_queue(&ch, FieldTable::default()).await;
    assert!(publish(&ch, "", &queue, b"alive").await);
    let got = get_eventually(&ch, &queue, true).await;
    assert_eq!(got.delivery.data, b"alive");
    within("connection.close", connection.close(200, "bye".into()))
        .await
        .expect("clean close");
}

// ---- connection --------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_negotiates_and_the_server_announces_its_capabilities() {
    bounded(async {
        let gateway = InProcessGateway::start().await;
        // What connection.start says, read off the wire.
        let (raw, start, tune) = Raw::handshake(addr(&gateway), 0).await;
        drop(raw);
        assert_eq!((start.version_major, start.version_minor), (0, 9));
        let mechanisms = String::from_utf8_lossy(start.mechanisms.as_bytes()).into_owned();
        assert!(mechanisms.split(' ').any(|m| m == "PLAIN"), "{mechanisms}");
        let locales = String::from_utf8_lossy(start.locales.as_bytes()).into_owned();
        assert!(locales.split(' ').any(|l| l == "en_US"), "{locales}");
        let properties = start.server_properties.inner();
        assert!(
            matches!(properties.get("product"), Some(AMQPValue::LongString(_))),
            "product in {properties:?}"
        );
        let Some(AMQPValue::FieldTable(capabilities)) = properties.get("capabilities") else {
            panic!("no capabilities table in {properties:?}")
        };
        // What RabbitMQ clients look for before using an extension.
        for capability in [
            "publisher_confirms",
            "exchange_exchange_bindings",
            "basic.nack",
            "consumer_cancel_notify",
            "connection.blocked",
            "authentication_failure_close",
            "per_consumer_qos",
        ] {
            assert_eq!(
                capabilities.inner().get(capability),
                Some(&AMQPValue::Boolean(true)),
                "capability {capability}"
            );
        }
        assert!(tune.frame_max >= 4096, "frame_max {}", tune.frame_max);
        assert!(tune.channel_max > 0);

        // lapin connects and takes what the server proposed.
        let connection = connect(&gateway).await;
        assert!(connection.status().connected());
        assert_eq!(connection.status().username(), "guest");
        assert_eq!(connection.status().vhost().as_str(), "/");
        let config = connection.configuration();
        assert_eq!(config.frame_max(), tune.frame_max);
        assert_eq!(config.channel_max(), tune.channel_max);
        assert_eq!(config.heartbeat(), tune.heartbeat);
        let ch = channel(&connection).await;
        probe(&ch).await.expect("a working channel");
        within("connection.close", connection.close(200, "bye".into()))
            .await
            .expect("clean close");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_refused_with_access_refused() {
    bounded(async {
        let gateway = InProcessGateway::start().await;
        // RabbitMQ (authentication_failure_close): connection.close 403 ACCESS_REFUSED.
        let err = connect_as(&gateway, "guest", "not-the-password")
            .await
            .expect_err("a wrong password is refused");
        assert_eq!(code(err), 403);
        let err = connect_as(&gateway, "nobody", "guest")
            .await
            .expect_err("an unknown user is refused");
        assert_eq!(code(err), 403);
        still_serving(&gateway).await;
    })
    .await;
}

// ---- routing -----------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_exchange_routes_by_exact_key() {
    bounded(async {
        let (_gw, _conn, ch) = setup().await;
        let x = unique("direct");
        declare_exchange(&ch, &x, ExchangeKind::Direct, FieldTable::default()).await;
        let red = temp_queue(&ch, FieldTable::default()).await;
        let green_blue = temp_queue(&ch, FieldTable::default()).await;
        let red_too = temp_queue(&ch, FieldTable::default()).await;
        bind(&ch, &red, &x, "red", FieldTable::default()).await;
        bind(&ch, &green_blue, &x, "green", FieldTable::default()).await;
        bind(&ch, &green_blue, &x, "blue", FieldTable::default()).await;
        bind(&ch, &red_too, &x, "red", FieldTable::default()).await;
        for key in ["red", "green", "blue", "black", "Red", "red.x"] {
            assert!(publish(&ch, &x, key, key.as_bytes()).await);
        }
        assert_eq!(get_all(&ch, &red).await, ["red"]);
        assert_eq!(get_all(&ch, &green_blue).await, ["green", "blue"]);
        assert_eq!(get_all(&ch, &red_too).await, ["red"]);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_exchange_copies_every_message_to_every_bound_queue() {
    bounded(async {
        let (_gw, _conn, ch) = setup().await;
        let x = unique("fanout");
        declare_exchange(&ch, &x, ExchangeKind::Fanout, FieldTable::default()).await;
        let a = temp_queue(&ch, FieldTable::default()).await;
        let b = temp_queue(&ch, FieldTable::default()).await;
        // Binding keys mean nothing to a fanout exchange.
        bind(&ch, &a, &x, "", FieldTable::default()).await;
        bind(&ch, &b, &x, "some.key", FieldTable::default()).await;
        for key in ["", "one", "two.three"] {
            assert!(publish(&ch, &x, key, format!("m-{key}").as_bytes()).await);
        }
        let want = ["m-", "m-one", "m-two.three"];
        assert_eq!(get_all(&ch, &a).await, want);
        assert_eq!(get_all(&ch, &b).await, want);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_exchange_matches_star_and_hash_wildcards() {
    bounded(async {
        let (_gw, _conn, ch) = setup().await;
        let x = unique("topic");
        declare_exchange(&ch, &x, ExchangeKind::Topic, FieldTable::default()).await;
        // RabbitMQ's tutorial 5: `*` is exactly one word, `#` zero or more.
        let q1 = temp_queue(&ch, FieldTable::default()).await;
        let q2 = temp_queue(&ch, FieldTable::default()).await;
        let all = temp_queue(&ch, FieldTable::default()).await;
        let a_z = temp_queue(&ch, FieldTable::default()).await;
        bind(&ch, &q1, &x, "*.orange.*", FieldTable::default()).await;
        bind(&ch, &q2, &x, "*.*.rabbit", FieldTable::default()).await;
        bind(&ch, &q2, &x, "lazy.#", FieldTable::default()).await;
        bind(&ch, &all, &x, "#", FieldTable::default()).await;
        bind(&ch, &a_z, &x, "a.#.z", FieldTable::default()).await;
        let keys = [
            "quick.orange.rabbit",
            "lazy.orange.elephant",
            "quick.orange.fox",
            "lazy.brown.fox",
            "lazy.pink.rabbit",
            "quick.brown.fox",
            "orange",
            "quick.orange.male.rabbit",
            "lazy.orange.male.rabbit",
            "lazy",
            "a.z",
            "a.b.c.z",
            "a.b",
        ];
        for key in keys {
            assert!(publish(&ch, &x, key, key.as_bytes()).await);
        }
        assert_eq!(
            get_all(&ch, &q1).await,
            [
                "quick.orange.rabbit",
                "lazy.orange.elephant",
                "quick.orange.fox"
            ]
        );
        // lazy.pink.rabbit matches both of q2's bindings and still arrives once, and a queue
        // gets one publisher's messages in publish order (RabbitMQ's ordering guarantee).
        let got = get_all(&ch, &q2).await;
        let lazy_pink = got.iter().filter(|k| *k == "lazy.pink.rabbit").count();
        assert_eq!(
            lazy_pink, 1,
            "delivered once however many bindings match: {got:?}"
        );
        assert_eq!(
            got,
            [
                "quick.orange.rabbit",
                "lazy.orange.elephant",
                "lazy.brown.fox",
                "lazy.pink.rabbit",
                "lazy.orange.male.rabbit",
                "lazy",
            ]
        );
        assert_eq!(get_all(&ch, &all).await, keys);
        assert_eq!(get_all(&ch, &a_z).await, ["a.z", "a.b.c.z"]);
    })
    .await;
}

/// Publishes a message with `headers` for each case and checks which reached the queue bound
/// with `binding`.
async fn headers_case(binding: FieldTable, cases: &[(&str, FieldTable, bool)]) {
    let (_gw, _conn, ch) = setup().await;
    let x = unique("headers");
    declare_exchange(&ch, &x, ExchangeKind::Headers, FieldTable::default()).await;
    let queue = temp_queue(&ch, FieldTable::default()).await;
    bind(&ch, &queue, &x, "", binding).await;
    let mut want = Vec::new();
    for (name, headers, routed) in cases {
        let props = BasicProperties::default().with_headers(headers.clone());
        assert!(publish_with(&ch, &x, "ignored", name.as_bytes(), props).await);
        if *routed {
            want.push(name.to_string());
        }
    }
    assert_eq!(get_all(&ch, &queue).await, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_exchange_x_match_all_needs_every_header() {
    bounded(headers_case(
        table(&[
            ("x-match", text("all")),
            ("k1", text("v1")),
            ("k2", text("v2")),
        ]),
        &[
            (
                "both",
                table(&[("k1", text("v1")), ("k2", text("v2"))]),
                true,
            ),
            (
                "both-and-more",
                table(&[("k1", text("v1")), ("k2", text("v2")), ("k3", text("v3"))]),
                true,
            ),
            ("one", table(&[("k1", text("v1"))]), false),
            (
                "one-wrong",
                table(&[("k1", text("v1")), ("k2", text("other"))]),
                false,
            ),
            ("none", FieldTable::default(), false),
        ],
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_exchange_x_match_any_needs_one_header() {
    bounded(headers_case(
        table(&[
            ("x-match", text("any")),
            ("k1", text("v1")),
            ("k2", text("v2")),
        ]),
        &[
            ("first", table(&[("k1", text("v1"))]), true),
            (
                "second",
                table(&[("k2", text("v2")), ("k9", text("v9"))]),
                true,
            ),
            (
                "wrong-values",
                table(&[("k1", text("v2")), ("k2", text("v1"))]),
                false,
            ),
            ("none", FieldTable::default(), false),
        ],
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_exchange_routes_to_the_queue_named_by_the_key() {
    bounded(async {
        let (_gw, _conn, ch) = setup().await;
        let queue = unique("default");
        declare_queue(&ch, &queue, FieldTable::default()).await;
        assert!(publish(&ch, "", &queue, b"direct to the queue").await);
        let got = get_eventually(&ch, &queue, true).await;
        assert_eq!(got.delivery.data, b"direct to the queue");
        assert_eq!(got.delivery.exchange.as_str(), "");
        assert_eq!(got.delivery.routing_key.as_str(), queue);
        // A key that names no queue routes nowhere.
        let confirm = within(
            "basic.publish",
            ch.basic_publish(
                "".into(),
                unique("no-such-queue").as_str().into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                },
                b"nowhere",
                BasicProperties::default(),
            ),
        )
        .await
        .unwrap();
        let returned = within("confirm", confirm)
            .await
            .unwrap()
            .take_message()
            .expect("returned");
        assert_eq!(returned.reply_code, 312);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binding_a_queue_to_the_default_exchange_is_refused_403() {
    bounded(async {
        let (_gw, connection, ch) = setup().await;
        let queue = temp_queue(&ch, FieldTable::default()).await;
        // RabbitMQ: "ACCESS_REFUSED - operation not permitted on the default exchange".
        let err = within(
            "queue.bind",
            ch.queue_bind(
                queue.as_str().into(),
                "".into(),
                "k".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            ),
        )
        .await
        .unwrap_err();
        assert_eq!(code(err), 403);
        probe(&channel(&connection).await).await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_amq_builtin_exchanges_exist_and_route() {
    bounded(async {
        let (_gw, _conn, ch) = setup().await;
        for (name, kind) in [
            ("amq.direct", ExchangeKind::Direct),
            ("amq.fanout", ExchangeKind::Fanout),
            ("amq.topic", ExchangeKind::Topic),
            ("amq.headers", ExchangeKind::Headers),
            ("amq.match", ExchangeKind::Headers),
        ] {
            within(
                "exchange.declare passive",
                ch.exchange_declare(
                    name.into(),
                    kind,
                    ExchangeDeclareOptions {
                        passive: true,
                        ..Default::default()
                    },
                    FieldTable::default(),
                ),
            )
            .await
            .unwrap_or_else(|e| panic!("{name} exists: {e}"));
        }
        let direct = temp_queue(&ch, FieldTable::default()).await;
        let topic = temp_queue(&ch, FieldTable::default()).await;
        let fanout = temp_queue(&ch, FieldTable::default()).await;
        let key = unique("k");
        bind(&ch, &direct, "amq.direct", &key, FieldTable::default()).await;
        bind(
            &ch,
            &topic,
            "amq.topic",
            &format!("{key}.*"),
            FieldTable::default(),
        )
        .await;
        bind(&ch, &fanout, "amq.fanout", "", FieldTable::default()).await;
        assert!(publish(&ch, "amq.direct", &key, b"d").await);
        assert!(publish(&ch, "amq.topic", &format!("{key}.t"), b"t").await);
        assert!(publish(&ch, "amq.fanout", "", b"f").await);
        assert_eq!(get_all(&ch, &direct).await, ["d"]);
        assert_eq!(get_all(&ch, &topic).await, ["t"]);
        // amq.fanout is shared by the vhost: only this test's message matters.
        assert!(get_all(&ch, &fanout).await.contains(&"f".to_owned()));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declaring_an_exchange_with_the_amq_prefix_is_refused_403() {
    bounded(async {
        let (_gw, connection, ch) = setup().await;
        // RabbitMQ: "ACCESS_REFUSED - exchange name 'amq.mine' contains reserved prefix 'amq.*'".
        let err = within(
            "exchange.declare",
            ch.exchange_declare(
                "amq.mine".into(),
                ExchangeKind::Direct,
                ExchangeDeclareOptions::default(),
                FieldTable::default(),
            ),
        )
        .await
        .unwrap_err();
        assert_eq!(code(err), 403);
        probe(&channel(&connection).await).await.unwrap();
    })
    .await;
}

// ---- exchanges ---------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passive_declare_of_a_missing_exchange_closes_the_channel_not_the_connection() {
    bounded(async {
        let gateway = InProcessGateway::start().await;
        let connection = connect(&gateway).await;
        let bystander = channel(&connection).await;
        let ch = channel(&connection).await;
        let err = within(
            "exchange.declare passive",
            ch.exchange_declare(
                unique("missing").as_str().into(),
                ExchangeKind::Direct,
                ExchangeDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            ),
        )
        .await
        .unwrap_err();
        assert_eq!(code(err), 404);
        wait_channel_closed(&ch).await;
        assert!(connection.status().connected(), "the connection stays open");
        probe(&bystander)
            .await
            .expect("the other channel still works");
        probe(&channel(&connection).await)
            .await
            .expect("a new channel works");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redeclaring_an_exchange_with_another_type_fails_406() {
    bounded(async {
        let (_gw, connection, ch) = setup().await;
        let x = unique("x");
        declare_exchange(&ch, &x, ExchangeKind::Direct, FieldTable::default()).await;
        // The same declaration again is fine.
        declare_exchange(&ch, &x, ExchangeKind::Direct, FieldTable::default()).await;
        let err = within(
            "exchange.declare",
            ch.exchange_declare(
                x.as_str().into(),
                ExchangeKind::Fanout,
                ExchangeDeclareOptions::default(),
                FieldTable::default(),
            ),
        )
        .await
        .unwrap_err();
        assert_eq!(code(err), 406);
        assert!(connection.status().connected());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exchange_delete_if_unused_with_a_binding_fails_406() {
    bounded(async {
        let (_gw, connection, ch) = setup().await;
        let x = unique("x");
        declare_exchange(&ch, &x, ExchangeKind::Direct, FieldTable::default()).await;
        let queue = temp_queue(&ch, FieldTable::default()).await;
        bind(&ch, &queue, &x, "k", FieldTable::default()).await;
        let if_unused = ExchangeDeleteOptions {
            if_unused: true,
            ..Default::default()
        };
        let err = within(
            "exchange.delete",
            ch.exchange_delete(x.as_str().into(), if_unused),
        )
        .await
        .unwrap_err();
        assert_eq!(code(err), 406);
        // It is still there, and a plain delete works.
        let ch = channel(&connection).await;
        assert!(publish_unconfirmed_routes(&ch, &x, &queue).await);
        within(
            "exchange.delete",
            ch.exchange_delete(x.as_str().into(), ExchangeDeleteOptions::default()),
        )
        .await
        .expect("exchange.delete");
        let err = within(
            "exchange.declare passive",
            ch.exchange_declare(
                x.as_str().into(),
                ExchangeKind::Direct,
                ExchangeDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            ),
        )
        .await
        .unwrap_err();
        assert_eq!(code(err), 404, "deleted");
    })
    .await;
}

/// Publishes "still-bound" to `exchange` with key "k" and checks it reaches `queue`.
async fn publish_unconfirmed_routes(ch: &Channel, exchange: &str, queue: &str) -> bool {
    publish_unconfirmed(ch, exchange, "k", b"still-bound").await;
    get_eventually(ch, queue, true).await.delivery.data == b"still-bound"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_to_a_missing_exchange_fails_404() {
    bounded(async {
        let (_gw, connection, ch) = setup().await;
        let missing = unique("missing");
        // RabbitMQ: channel.close 404 "NOT_FOUND - no exchange '...' in vhost '/'".
        let code = publish_closes_channel(&ch, &missing, "k", BasicProperties::default()).await;
        assert_eq!(code, 404);
        assert!(connection.status().connected());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_to_an_internal_exchange_fails_403() {
    bounded(async {
        let (_gw, connection, setup_ch) = setup().await;
        let x = unique("internal");
        within(
            "exchange.declare",
            setup_ch.exchange_declare(
                x.as_str().into(),
                ExchangeKind::Fanout,
                ExchangeDeclareOptions {
                    internal: true,
                    ..Default::default()
                },
                FieldTable::default(),
            ),
        )
        .await
        .unwrap();
        let queue = temp_queue(&setup_ch, FieldTable::default()).await;
        bind(&setup_ch, &queue, &x, "", FieldTable::default()).await;
        let ch = confirming(&connection).await;
        // RabbitMQ: "ACCESS_REFUSED - cannot publish to internal exchange '...'".
        let code = publish_closes_channel(&ch, &x, "", BasicProperties::default()).await;
        assert_eq!(code, 403);
        assert_eq!(message_count(&setup_ch, &queue).await, 0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exchange_to_exchange_bindings_route_through_an_internal_exchange() {
    bounded(async {
        let (_gw, _conn, ch) = setup().await;
        let front = unique("front");
        let inner = unique("inner");
        declare_exchange(&ch, &front, ExchangeKind::Topic, FieldTable::default()).await;
        within(
            "exchange.declare",
            ch.exchange_declare(
                inner.as_str().into(),
                ExchangeKind::Direct,
                ExchangeDeclareOptions {
                    internal: true,
                    ..Default::default()
                },
                FieldTable::default(),
            ),
        )
        .await
        .unwrap();
        within(
            "exchange.bind",
            ch.exchange_bind(
                inner.as_str().into(),
                front.as_str().into(),
                "orders.*".into(),
                ExchangeBindOptions::default(),
                FieldTable::default(),
            ),
        )
        .await
        .unwrap();
        let queue = temp_queue(&ch, FieldTable::default()).await;
        bind(&ch, &queue, &inner, "orders.new", FieldTable::default()).await;
        for key in ["orders.new", "orders.old", "payments.new"] {
            assert!(publish(&ch, &front, key, key.as_bytes()).await);
        }
        assert_eq!(get_all(&ch, &queue).await, ["orders.new"]);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alternate_exchange_takes_what_its_exchange_cannot_route() {
    bounded(async {
        let (_gw, _conn, ch) = setup().await;
        let ae = unique("ae");
        let x = unique("with-ae");
        declare_exchange(&ch, &ae, ExchangeKind::Fanout, FieldTable::default()).await;
        declare_exchange(
            &ch,
            &x,
            ExchangeKind::Direct,
            table(&[("alternate-exchange", text(&ae))]),
        )
        .await;
        let routed = temp_queue(&ch, FieldTable::default()).await;
        let unrouted = temp_queue(&ch, FieldTable::default()).await;
        bind(&ch, &routed, &x, "known", FieldTable::default()).await;
        bind(&ch, &unrouted, &ae, "", FieldTable::default()).await;
        assert!(publish(&ch, &x, "known", b"to-known").await);
        assert!(publish(&ch, &x, "unknown", b"to-ae").await);
        // Routed by the alternate exchange: a mandatory publish is not returned.
        let confirm = within(
            "basic.publish",
            ch.basic_publish(
                x.as_str().into(),
                "also-unknown".into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                },
                b"mandatory-to-ae",
                BasicProperties::default(),
            ),
        )
        .await
        .unwrap();
        let confirmation = within("confirm", confirm).await.unwrap();
        assert!(confirmation.is_ack());
        assert!(confirmation.take_message().is_none(), "not returned");
        assert_eq!(get_all(&ch, &routed).await, ["to-known"]);
        assert_eq!(get_all(&ch, &unrouted).await, ["to-ae", "mandatory-to-ae"]);
    })
    .await;
}

// ---- queues ------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_named_queues_get_unique_generated_names() {
    bounded(async {
        let (_gw, _conn, ch) = setup().await;
        let a = temp_queue(&ch, FieldTable::default()).await;
        let b = temp_queue(&ch, FieldTable::default()).await;
        assert!(a.starts_with("amq.gen-"), "{a}");
        assert!(b.starts_with("amq.gen-"), "{b}");
        assert_ne!(a, b);
        assert!(publish(&ch, "", &a, b"to-a").await);
        assert_eq!(get_all(&ch, &a).await, ["to-a"]);
        assert!(get_all(&ch, &b).await.is_empty());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passive_declare_of_a_missing_queue_fails_404() {
    bounded(async {
        let (_gw, connection, ch) = setup().await;
        let err = within(
            "queue.declare passive",
            ch.queue_declare(
                unique("missing").as_str().into(),
                passive(),
                FieldTable::default(),
            ),
        )
        .await
        .unwrap_err();
        assert_eq!(code(err), 404);
        wait_channel_closed(&ch).await;
        assert!(connection.status().connected());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declare_ok_reports_ready_messages_and_consumers() {
    bounded(async {
        let (_gw, connection, ch) = setup().await;
        let queue = unique("counted");
        let declared = declare_queue(&ch, &queue, FieldTable::default()).await;
        assert_eq!(
            (declared.message_count(), declared.consumer_count()),
            (0, 0)
        );
        for i in 0..3 {
            assert!(publish(&ch, "", &queue, format!("{i}").as_bytes()).await);
        }
        wait_message_count(&ch, &queue, 3).await;
        let again = declare_queue(&ch, &queue, FieldTable::default()).await;
        assert_eq!((again.message_count(), again.consumer_count()), (3, 0));
        // A consumer holding all three unacknowledged: none ready, one consumer.
        let consumer_ch = channel(&connection).await;
        let mut consumer = consume(&consumer_ch, &queue, BasicConsumeOptions::default())
            .await
            .unwrap();
        for _ in 0..3 {
            next_delivery(&mut consumer).await;
        }
        let held = declare_queue(&ch, &queue, FieldTable::default()).await;
        assert_eq!((held.message_count(), held.consumer_count()), (0, 1));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redeclaring_a_queue_with_other_arguments_fails_406() {
    bounded(async {
        let (_gw, _conn, ch) = setup().await;
        let queue = unique("args");
        let ttl = |ms: i32| table(&[("x-message-ttl", AMQPValue::LongInt(ms))]);
        declare_queue(&ch, &queue, ttl(60_000)).await;
        declare_queue(&ch, &queue, ttl(60_000)).await;
        // RabbitMQ: "PRECONDITION_FAILED - inequivalent arg 'x-message-ttl' for queue ...".
        let err = within(
            "queue.declare",
            ch.queue_declare(
                queue.as_str().into(),
                QueueDeclareOptions::default(),
                ttl(1_000),
            ),
        )
        .await
        .unwrap_err();
        assert_eq!(code(err), 406);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exclusive_queue_is_locked_to_its_connection_405() {
    bounded(async {
        let gateway = InProcessGateway::start().await;
        let owner = connect(&gateway).await;
        let owner_ch = confirming(&owner).await;
        let queue = unique("exclusive");
        within(
            "queue.declare",
            owner_ch.queue_declare(
                queue.as_str().into(),
                QueueDeclareOptions {
                    exclusive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            ),
        )
        .await
        .unwrap();
        let other = connect(&gateway).await;
        // RabbitMQ: "RESOURCE_LOCKED - cannot obtain exclusive access to locked queue".
        let err = within(
            "queue.declare passive",
            channel(&other).await.queue_declare(
                queue.as_str().into(),
                passive(),
                FieldTable::default(),
            ),
        )
        .await
        .unwrap_err();
        assert_eq!(code(err), 405, "passive declare from another connection");
        let err = consume(
            &channel(&other).await,
            &queue,
            BasicConsumeOptions::default(),
        )
        .await
        .unwrap_err();
        assert_eq!(code(err), 405, "consume from another connection");
        let err = within(
            "basic.get",
            channel(&other)
                .await
                .basic_get(queue.as_str().into(), BasicGetOptions::default()),
        )
        .await
        .unwrap_err();
        assert_eq!(code(err), 405, "get from another connection");
        // The owner uses it as usual.
        assert!(publish(&owner_ch, "", &queue, b"mine").await);
        assert_eq!(get_all(&owner_ch, &queue).await, ["mine"]);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exclusive_queue_is_deleted_when_its_connection_closes() {
    bounded(async {
        let gateway = InProcessGateway::start().await;
        let owner = connect(&gateway).await;
        let queue = unique("exclusive");
        let owner_ch = channel(&owner).await;
        within(
            "queue.declare",
            owner_ch.queue_declare(
                queue.as_str().into(),
                QueueDeclareOptions {
                    exclusive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            ),
        )
        .await
        .unwrap();
        within("connection.close", owner.close(200, "bye".into()))
            .await
            .unwrap();
        let other = connect(&gateway).await;
        wait_queue_gone(&other, &queue).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_auto_delete_queue_goes_when_its_last_consumer_cancels() {
    bounded(async {
        let (_gw, connection, ch) = setup().await;
        let queue = unique("auto-delete");
        within(
            "queue.declare",
            ch.queue_declare(
                queue.as_str().into(),
                QueueDeclareOptions {
                    auto_delete: true,
                    ..Default::default()
                },
                FieldTable::default(),
            ),
        )
        .await
        .unwrap();
        let first = consume(&ch, &queue, BasicConsumeOptions::default())
            .await
            .unwrap();
        let second = consume(&ch, &queue, BasicConsumeOptions::default())
            .await
            .unwrap();
        within(
            "basic.cancel",
            ch.basic_cancel(first.tag(), BasicCancelOptions::default()),
        )
        .await
        .unwrap();
        // One consumer left: the queue stays.
        assert_eq!(message_count(&ch, &queue).await, 0);
        within(
            "basic.cancel",
            ch.basic_cancel(second.tag(), BasicCancelOptions::default()),
        )
        .await
        .unwrap();
        wait_queue_gone(&connection, &queue).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_removes_the_ready_messages_and_reports_how_many() {
    bounded(async {
        let (_gw, _conn, ch) = setup().await;
        let queue = temp_queue(&ch, FieldTable::default()).await;
        for i in 0..5 {
            assert!(publish(&ch, "", &queue, format!("{i}").as_bytes()).await);
        }
        wait_message_count(&ch, &queue, 5).await;
        let purged = within(
            "queue.purge",
            ch.queue_purge(queue.as_str().into(), QueuePurgeOptions::default()),
        )
        .await
        .unwrap();
        assert_eq!(purged, 5);
        assert!(get(&ch, &queue, true).await.is_none());
        assert_eq!(message_count(&ch, &queue).await, 0);
        // The queue works on.
        assert!(publish(&ch, "", &queue, b"after").await);
        assert_eq!(get_all(&ch, &queue).await, ["after"]);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_delete_if_unused_with_a_consumer_fails_406() {
    bounded(async {
        let (_gw, connection, ch) = setup().await;
        let queue = unique("in-use");
        declare_queue(&ch, &queue, FieldTable::default()).await;
        let _consumer = consume(&ch, &queue, BasicConsumeOptions::default())
            .await
            .unwrap();
        let deleter = channel(&connection).await;
        let err = within(
            "queue.delete",
            deleter.queue_delete(
                queue.as_str().into(),
                QueueDeleteOptions {
                    if_unused: true,
                    ..Default::default()
                },
            ),
        )
        .await
        .unwrap_err();
        assert_eq!(code(err), 406);
        assert_eq!(
            message_count(&ch, &queue).await,
            0,
            "the queue is still there"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_delete_if_empty_with_messages_fails_406() {
    bounded(async {
        let (_gw, connection, ch) = setup().await;
        let queue = unique("not-empty");
        declare_queue(&ch, &queue, FieldTable::default()).await;
        assert!(publish(&ch, "", &queue, b"keep me").await);
        wait_message_count(&ch, &queue, 1).await;
        let deleter = channel(&connection).await;
        let err = within(
            "queue.delete",
            deleter.queue_delete(
                queue.as_str().into(),
                QueueDeleteOptions {
                    if_empty: true,
                    ..Default::default()
                },
            ),
        )
        .await
        .unwrap_err();
        assert_eq!(code(err), 406);
        assert_eq!(get_all(&ch, &queue).await, ["keep me"]);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_delete_reports_the_messages_it_dropped() {
    bounded(async {
        let (_gw, connection, ch) = setup().await;
        let queue = unique("deleted");
        declare_queue(&ch, &queue, FieldTable::default()).await;
        for i in 0..2 {
            assert!(publish(&ch, "", &queue, format!("{i}").as_bytes()).await);
        }
        wait_message_count(&ch, &queue, 2).await;
        let dropped = within(
            "queue.delete",
            ch.queue_delete(queue.as_str().into(), QueueDeleteOptions::default()),
        )
        .await
        .unwrap();
        assert_eq!(dropped, 2);
        wait_queue_gone(&connection, &queue).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_older_than_x_message_ttl_are_not_delivered() {
    bounded(async {
        let (_gw, _conn, ch) = setup().await;
        let queue = temp_queue(&ch, table(&[("x-message-ttl", AMQPValue::LongInt(200))])).await;
        assert!(publish(&ch, "", &queue, b"stale").await);
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert!(publish(&ch, "", &queue, b"fresh").await);
        assert_eq!(get_all(&ch, &queue).await, ["fresh"]);
        // Nor to a consumer.
        assert!(publish(&ch, "", &queue, b"stale too").await);
        tokio::time::sleep(Duration::from_millis(700)).await;
        let mut consumer = consume(
            &ch,
            &queue,
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
        assert!(deliveries_within_quiet(&mut consumer).await.is_empty());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_past_their_expiration_property_are_not_delivered() {
    bounded(async {
        let (_gw, _conn, ch) = setup().await;
        let queue = temp_queue(&ch, FieldTable::default()).await;
        let short = BasicProperties::default().with_expiration("200".into());
        let long = BasicProperties::default().with_expiration("60000".into());
        assert!(publish_with(&ch, "", &queue, b"short-lived", short).await);
        assert!(publish_with(&ch, "", &queue, b"long-lived", long).await);
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert_eq!(get_all(&ch, &queue).await, ["long-lived"]);
    })
    .await;
}

/// A fanout dead-letter exchange, a queue bound to it, and a queue dead-lettering to it with
/// `extra` arguments. Returns (dead-letter exchange, dead queue, source queue).
async fn dead_letter_setup(ch: &Channel, extra: &[(&str, AMQPValue)]) -> (String, String, String) {
    let dlx = unique("dlx");
    declare_exchange(ch, &dlx, ExchangeKind::Fanout, FieldTable::default()).await;
    let dead = temp_queue(ch, FieldTable::default()).await;
    bind(ch, &dead, &dlx, "", FieldTable::default()).await;
    let mut arguments = vec![("x-dead-letter-exchange", text(&dlx))];
    arguments.extend(extra.iter().cloned());
    let source = temp_queue(ch, table(&arguments)).await;
    (dlx, dead, source)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_messages_are_dead_lettered_with_x_death() {
    bounded(async {
        let (_gw, _conn, ch) = setup().await;
        let (dlx, dead, queue) = dead_letter_setup(&ch, &[]).await;
        let props = BasicProperties::default().with_headers(table(&[("mine", text("kept"))]));
        assert!(publish_with(&ch, "", &queue, b"bad", props).await);
        let m = get_eventually(&ch, &queue, false).await;
        within(
            "basic.reject",
            m.delivery.reject(BasicRejectOptions { requeue: false }),
        )
        .await
        .unwrap();
        let dead_letter = get_eventually(&ch, &dead, true).await.delivery;
        assert_eq!(dead_letter.data, b"bad");
        assert_eq!(dead_letter.exchange.as_str(), dlx);
        assert_eq!(dead_letter.routing_key.as_str(), queue, "the original key");
        let death = last_death(&dead_letter);
        assert_eq!(death.inner().get("count"), Some(&AMQPValue::LongLongInt(1)));
        assert_eq!(death.inner().get("reason"), Some(&text("rejected")));
        assert_eq!(death.inner().get("queue"), Some(&text(&queue)));
        assert_eq!(death.inner().get("exchange"), Some(&text("")));
        assert_eq!(
            death.inner().get("routing-keys"),
            Some(&AMQPValue::FieldArray(FieldArray::from(vec![text(&queue)])))
        );
        let headers = dead_letter.properties.headers().clone().unwrap();
        assert_eq!(headers.inner().get("mine"), Some(&text("kept")));
        assert!(
            get(&ch, &queue, true).await.is_none(),
            "gone from its queue"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_messages_are_dead_lettered_with_x_death() {
    bounded(async {
        let (_gw, _conn, ch) = setup().await;
        // Nobody reads the source queue: RabbitMQ dead-letters its expired head on its own.
        let (_dlx, dead, queue) =
            dead_letter_setup(&ch, &[("x-message-ttl", AMQPValue::LongInt(100))]).await;
        assert!(publish(&ch, "", &queue, b"too late").await);
        let dead_letter = get_eventually(&ch, &dead, true).await.delivery;
        assert_eq!(dead_letter.data, b"too late");
        let death = last_death(&dead_letter);
        assert_eq!(death.inner().get("count"), Some(&AMQPValue::LongLongInt(1)));
        assert_eq!(death.inner().get("reason"), Some(&text("expired")));
        assert_eq!(death.inner().get("queue"), Some(&text(&queue)));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_dead_letter_routing_key_replaces_the_routing_key() {
    bounded(async {
        let (_gw, _conn, ch) = setup().await;
        let dlx = unique("dlx-direct");
        declare_exchange(&ch, &dlx, ExchangeKind::Direct, FieldTable::default()).await;
        let dead = temp_queue(&ch, FieldTable::default()).await;
        let elsewhere = temp_queue(&ch, FieldTable::default()).await;
        bind(&ch, &dead, &dlx, "dead-key", FieldTable::default()).await;
        let queue = unique("source");
        declare_queue(
            &ch,
            &queue,
            table(&[
                ("x-dead-letter-exchange", text(&dlx)),
                ("x-dead-letter-routing-key", text("dead-key")),
            ]),
        )
        .await;
        // A binding under the original key, which dead-lettering must not use.
        bind(&ch, &elsewhere, &dlx, &queue, FieldTable::default()).await;
        assert!(publish(&ch, "", &queue, b"rerouted").await);
        let m = get_eventually(&ch, &queue, false).await;
        within(
            "basic.nack",
            m.delivery.nack(BasicNackOptions {
                requeue: false,
                ..Default::default()
            }),
        )
        .await
        .unwrap();
        let dead_letter = get_eventually(&ch, &dead, true).await.delivery;
        assert_eq!(dead_letter.data, b"rerouted");
        assert_eq!(dead_letter.routing_key.as_str(), "dead-key");
        let death = last_death(&dead_letter);
        assert_eq!(
            death.inner().get("routing-keys"),
            Some(&AMQPValue::FieldArray(FieldArray::from(vec![text(&queue)]))),
            "x-death keeps the original key"
        );
        assert!(get(&ch, &elsewhere, true).await.is_none());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsupported_queue_argument_is_refused_406() {
    bounded(async {
        let (_gw, connection, ch) = setup().await;
        // RabbitMQ supports priority queues; the gateway cannot, and refuses the argument rather
        // than ignoring it (docs/amqp.md, "Queue arguments") with PRECONDITION_FAILED, the code
        // RabbitMQ gives an argument it rejects.
        let err = within(
            "queue.declare",
            ch.queue_declare(
                unique("priority").as_str().into(),
                QueueDeclareOptions::default(),
                table(&[("x-max-priority", AMQPValue::LongInt(10))]),
            ),
        )
        .await
        .unwrap_err();
        assert_eq!(code(err), 406);
        assert!(connection.status().connected());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_max_length_drops_the_oldest_messages() {
    bounded(async {
        let (_gw, _conn, ch) = setup().await;
        let queue = temp_queue(&ch, table(&[("x-max-length", AMQPValue::LongInt(2))])).await;
        for i in 0..4 {
            assert!(publish(&ch, "", &queue, format!("d{i}").as_bytes()).await);
        }
        assert_eq!(get_all(&ch, &queue).await, ["d2", "d3"]);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_overflow_reject_publish_nacks_when_full() {
    bounded(async {
        let (_gw, _conn, ch) = setup().await;
        let queue = temp_queue(
            &ch,
            table(&[
                ("x-max-length", AMQPValue::LongInt(1)),
                ("x-overflow", text("reject-publish")),
            ]),
        )
        .await;
        assert!(publish(&ch, "", &queue, b"r0").await);
        assert!(!publish(&ch, "", &queue, b"r1").await, "nacked");
        assert_eq!(get_all(&ch, &queue).await, ["r0"]);
    })
    .await;
}

// ---- publishing --------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_basic_property_is_delivered_as_published() {
    bounded(async {
        let (_gw, _conn, ch) = setup().await;
        let queue = temp_queue(&ch, FieldTable::default()).await;
        let props = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_content_encoding("gzip".into())
            .with_headers(table(&[("h", text("v"))]))
            .with_delivery_mode(2)
            .with_priority(7)
            .with_correlation_id("corr-1".into())
            .with_reply_to("reply-queue".into())
            .with_expiration("600000".into())
            .with_message_id("msg-1".into())
            .with_timestamp(1_700_000_000)
            .with_type("order.created".into())
            .with_user_id("guest".into())
            .with_app_id("lapin-tests".into())
            .with_cluster_id("cluster-a".into());
        assert!(publish_with(&ch, "", &queue, b"{}", props.clone()).await);
        let got = get_eventually(&ch, &queue, true).await;
        assert_eq!(got.delivery.properties, props, "through basic.get");
        assert!(publish_with(&ch, "", &queue, b"{}", props.clone()).await);
        let mut consumer = consume(
            &ch,
            &queue,
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
        let delivered = next_delivery(&mut consumer).await;
        assert_eq!(delivered.properties, props, "through basic.deliver");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_values_of_every_type_are_delivered_as_published() {
    bounded(async {
        let (_gw, _conn, ch) = setup().await;
        let queue = temp_queue(&ch, FieldTable::default()).await;
        let nested = table(&[
            (
                "deeper",
                AMQPValue::FieldTable(table(&[("n", AMQPValue::LongInt(1))])),
            ),
            ("s", text("inner")),
        ]);
        let headers = table(&[
            ("bool-true", AMQPValue::Boolean(true)),
            ("bool-false", AMQPValue::Boolean(false)),
            ("i8", AMQPValue::ShortShortInt(-8)),
            ("u8", AMQPValue::ShortShortUInt(200)),
            ("i16", AMQPValue::ShortInt(-1600)),
            ("u16", AMQPValue::ShortUInt(60_000)),
            ("i32", AMQPValue::LongInt(-320_000)),
            ("u32", AMQPValue::LongUInt(4_000_000_000)),
            ("i64", AMQPValue::LongLongInt(-(1 << 40))),
            ("f32", AMQPValue::Float(1.5)),
            ("f64", AMQPValue::Double(-2.25)),
            (
                "decimal",
                AMQPValue::DecimalValue(DecimalValue {
                    scale: 2,
                    value: 12345,
                }),
            ),
            ("text", text("héllo")),
            ("empty-text", text("")),
            (
                "bytes",
                AMQPValue::ByteArray(ByteArray::from(vec![0u8, 1, 0xCE, 0xFF])),
            ),
            ("timestamp", AMQPValue::Timestamp(1_700_000_000)),
            ("void", AMQPValue::Void),
            (
                "array",
                AMQPValue::FieldArray(FieldArray::from(vec![
                    text("a"),
                    AMQPValue::LongInt(2),
                    AMQPValue::Boolean(false),
                    AMQPValue::FieldArray(FieldArray::from(vec![AMQPValue::LongInt(3)])),
                    AMQPValue::FieldTable(table(&[("k", text("v"))])),
                ])),
            ),
            ("empty-array", AMQPValue::FieldArray(FieldArray::default())),
            ("nested", AMQPValue::FieldTable(nested)),
            ("empty-table", AMQPValue::FieldTable(FieldTable::default())),
        ]);
        let props = BasicProperties::default().with_headers(headers.clone());
        assert!(publish_with(&ch, "", &queue, b"typed", props).await);
        let got = get_eventually(&ch, &queue, true).await;
        assert_eq!(got.delivery.properties.headers(), &Some(headers));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_body_is_delivered_empty() {
    bounded(async {
        let (_gw, _conn, ch) = setup().await;
        let queue = temp_queue(&ch, FieldTable::default()).await;
        let props = BasicProperties::default().with_message_id("empty".into());
        assert!(publish_with(&ch, "", &queue, b"", props.clone()).await);
        assert!(publish_with(&ch, "", &queue, b"", props).await);
        let got = get_eventually(&ch, &queue, true).await;
        assert!(got.delivery.data.is_empty());
        assert_eq!(
            got.delivery
                .properties
                .message_id()
                .as_ref()
                .unwrap()
                .as_str(),
            "empty"
        );
        let mut consumer = consume(
            &ch,
            &queue,
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
        assert!(next_delivery(&mut consumer).await.data.is_empty());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_binary_body_is_delivered_byte_for_byte() {
    bounded(async {
        let (_gw, _conn, ch) = setup().await;
        let queue = temp_queue(&ch, FieldTable::default()).await;
        // Every byte value, the frame-end octet and NULs included, twice over.
        let body: Vec<u8> = (0..=255u8).chain((0..=255u8).rev()).collect();
        assert!(publish(&ch, "", &queue, &body).await);
        let got = get_eventually(&ch, &queue, true).await;
        assert_eq!(got.delivery.data, body);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_larger_than_frame_max_spans_body_frames_both_ways() {
    bounded(async {
        let (_gw, connection, ch) = setup().await;
        let frame_max = connection.configuration().frame_max() as usize;
        let queue = temp_queue(&ch, FieldTable::default()).await;
        // Three frames and a bit, so it is split on the way in and on the way out.
        let body: Vec<u8> = (0..3 * frame_max + 1234).map(|i| (i % 251) as u8).collect();
        assert!(publish(&ch, "", &queue, &body).await);
        assert!(publish(&ch, "", &queue, &body).await);
        let got = get_eventually(&ch, &queue, true).await;
        assert_eq!(got.delivery.data.len(), body.len());
        assert!(got.delivery.data == body, "basic.get body differs");
        let mut consumer = consume(
            &ch,
            &queue,
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
        let delivered = next_delivery(&mut consumer).await;
        assert!(delivered.data == body, "basic.deliver body differs");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mandatory_unroutable_message_is_returned_with_312() {
    bounded(async {
        let (_gw, _conn, ch) = setup().await;
        let x = unique("x");
        declare_exchange(&ch, &x, ExchangeKind::Direct, FieldTable::default()).await;
        let props = BasicProperties::default().with_correlation_id("c-9".into());
        let confirm = within(
            "basic.publish",
            ch.basic_publish(
                x.as_str().into(),
                "nobody".into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                },
                b"lost?",
                props.clone(),
            ),
        )
        .await
        .unwrap();
        let confirmation = within("confirm", confirm).await.unwrap();
        // RabbitMQ returns it, then acks it (it was handled: there was nowhere to put it).
        assert!(confirmation.is_ack());
        let returned = confirmation.take_message().expect("basic.return");
        assert_eq!(returned.reply_code, 312);
        assert!(returned.reply_text.as_str().contains("NO_ROUTE"));
        assert_eq!(returned.delivery.exchange.as_str(), x);
        assert_eq!(returned.delivery.routing_key.as_str(), "nobody");
        assert_eq!(returned.delivery.data, b"lost?");
        assert_eq!(returned.delivery.properties, props);
        // Without mandatory it is dropped silently, and still acked.
        let confirm = within(
            "basic.publish",
            ch.basic_publish(
                x.as_str().into(),
                "nobody".into(),
                BasicPublishOptions::default(),
                b"dropped",
                BasicProperties::default(),
            ),
        )
        .await
        .unwrap();
        let confirmation = within("confirm", confirm).await.unwrap();
        assert!(confirmation.is_ack());
        assert!(confirmation.take_message().is_none());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publisher_confirms_ack_every_message() {
    bounded(async {
        let (_gw, _conn, ch) = setup().await;
        let queue = temp_queue(&ch, FieldTable::default()).await;
        let mut pending = Vec::new();
        for i in 0..1000 {
            pending.push(
                within(
                    "basic.publish",
                    ch.basic_publish(
                        "".into(),
                        queue.as_str().into(),
                        BasicPublishOptions::default(),
                        format!("{i}").as_bytes(),
                        BasicProperties::default(),
                    ),
                )
                .await
                .unwrap(),
            );
        }
        let (mut acks, mut nacks) = (0, 0);
        for confirm in pending {
            let confirmation = within("confirm", confirm).await.unwrap();
            if confirmation.is_ack() {
                acks += 1;
            } else {
                nacks += 1;
            }
        }
        assert_eq!((acks, nacks), (1000, 0));
        wait_message_count(&ch, &queue, 1000).await;
        let bodies = get_all(&ch, &queue).await;
        let want: Vec<String> = (0..1000).map(|i| i.to_string()).collect();
        assert_eq!(bodies, want, "all there, in publish order");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_publishes_on_commit_and_discards_on_rollback() {
    bounded(async {
        let (_gw, connection, observer) = setup().await;
        let queue = temp_queue(&observer, FieldTable::default()).await;
        let ch = channel(&connection).await;
        within("tx.select", ch.tx_select()).await.unwrap();
        publish_unconfirmed(&ch, "", &queue, b"a").await;
        publish_unconfirmed(&ch, "", &queue, b"b").await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(
            message_count(&observer, &queue).await,
            0,
            "not before commit"
        );
        within("tx.commit", ch.tx_commit()).await.unwrap();
        assert_eq!(message_count(&observer, &queue).await, 2, "on commit");
        publish_unconfirmed(&ch, "", &queue, b"rolled back").await;
        within("tx.rollback", ch.tx_rollback()).await.unwrap();
        // The channel stays transactional: this one goes with the next commit.
        publish_unconfirmed(&ch, "", &queue, b"c").await;
        within("tx.commit", ch.tx_commit()).await.unwrap();
        assert_eq!(get_all(&observer, &queue).await, ["a", "b", "c"]);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_applies_acks_on_commit_and_forgets_them_on_rollback() {
    bounded(async {
        let (_gw, connection, observer) = setup().await;
        let queue = unique("tx-acks");
        declare_queue(&observer, &queue, FieldTable::default()).await;
        assert!(publish(&observer, "", &queue, b"one").await);
        assert!(publish(&observer, "", &queue, b"two").await);
        let ch = channel(&connection).await;
        within("tx.select", ch.tx_select()).await.unwrap();
        let one = get_eventually(&ch, &queue, false).await.delivery;
        let two = get_eventually(&ch, &queue, false).await.delivery;
        assert_eq!(
            (one.data.as_slice(), two.data.as_slice()),
            (&b"one"[..], &b"two"[..])
        );
        within(
            "basic.ack",
            ch.basic_ack(one.delivery_tag, BasicAckOptions::default()),
        )
        .await
        .unwrap();
        within("tx.rollback", ch.tx_rollback()).await.unwrap();
        within(
            "basic.ack",
            ch.basic_ack(two.delivery_tag, BasicAckOptions::default()),
        )
        .await
        .unwrap();
        within("tx.commit", ch.tx_commit()).await.unwrap();
        // "one"'s ack was rolled back: it is still unacknowledged, and comes back when the
        // channel closes; "two"'s was committed.
        within("channel.close", ch.close(200, "done".into()))
            .await
            .unwrap();
        let back = get_eventually(&observer, &queue, true).await;
        assert_eq!(back.delivery.data, b"one");
        assert!(back.delivery.redelivered);
        assert!(
            get(&observer, &queue, true).await.is_none(),
            "two was acked"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_id_other_than_the_connections_user_fails_406() {
    bounded(async {
        let (_gw, connection, ch) = setup().await;
        let queue = temp_queue(&ch, FieldTable::default()).await;
        // RabbitMQ validates user_id: "PRECONDITION_FAILED - user_id property set to 'someone'
        // but authenticated user was 'guest'".
        let spoofed = BasicProperties::default().with_user_id("someone".into());
        let code = publish_closes_channel(&ch, "", &queue, spoofed).await;
        assert_eq!(code, 406);
        assert!(connection.status().connected());
    })
    .await;
}

// ---- consuming ---------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_auto_ack_consumer_gets_every_message_in_order_and_nothing_returns() {
    bounded(async {
        let (_gw, connection, ch) = setup().await;
        let queue = unique("auto-ack");
        declare_queue(&ch, &queue, FieldTable::default()).await;
        for i in 0..5 {
            assert!(publish(&ch, "", &queue, format!("{i}").as_bytes()).await);
        }
        let consumer_ch = channel(&connection).await;
        let mut consumer = consume(
            &consumer_ch,
            &queue,
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
        let mut got = Vec::new();
        for _ in 0..5 {
            let d = next_delivery(&mut consumer).await;
            assert!(!d.redelivered);
            assert_eq!(d.routing_key.as_str(), queue);
            got.push(body_text(&d.data));
        }
        assert_eq!(got, ["0", "1", "2", "3", "4"]);
        within("channel.close", consumer_ch.close(200, "done".into()))
            .await
            .unwrap();
        tokio::time::sleep(QUIET).await;
        assert_eq!(
            message_count(&ch, &queue).await,
            0,
            "auto-acked: nothing requeued"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manually_acked_messages_are_gone_for_good() {
    bounded(async {
        let (_gw, connection, ch) = setup().await;
        let queue = unique("manual");
        declare_queue(&ch, &queue, FieldTable::default()).await;
        for i in 0..3 {
            assert!(publish(&ch, "", &queue, format!("{i}").as_bytes()).await);
        }
        let consumer_ch = channel(&connection).await;
        let mut consumer = consume(&consumer_ch, &queue, BasicConsumeOptions::default())
            .await
            .unwrap();
        for _ in 0..3 {
            let d = next_delivery(&mut consumer).await;
            assert!(within("basic.ack", d.ack(BasicAckOptions::default()))
                .await
                .unwrap());
        }
        within("channel.close", consumer_ch.close(200, "done".into()))
            .await
            .unwrap();
        tokio::time::sleep(QUIET).await;
        assert_eq!(message_count(&ch, &queue).await, 0);
        assert!(get(&ch, &queue, true).await.is_none());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unacked_deliveries_return_redelivered_when_the_channel_closes() {
    bounded(async {
        let (_gw, connection, ch) = setup().await;
        let queue = unique("unacked");
        declare_queue(&ch, &queue, FieldTable::default()).await;
        for i in 0..3 {
            assert!(publish(&ch, "", &queue, format!("{i}").as_bytes()).await);
        }
        let consumer_ch = channel(&connection).await;
        let mut consumer = consume(&consumer_ch, &queue, BasicConsumeOptions::default())
            .await
            .unwrap();
        for _ in 0..3 {
            next_delivery(&mut consumer).await;
        }
        within("channel.close", consumer_ch.close(200, "done".into()))
            .await
            .unwrap();
        wait_message_count(&ch, &queue, 3).await;
        let mut bodies = Vec::new();
        for _ in 0..3 {
            let m = get_eventually(&ch, &queue, true).await;
            assert!(m.delivery.redelivered);
            bodies.push(body_text(&m.delivery.data));
        }
        bodies.sort();
        assert_eq!(bodies, ["0", "1", "2"]);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exclusive_consumer_shuts_out_a_second_consumer_403() {
    bounded(async {
        let (_gw, connection, ch) = setup().await;
        let queue = unique("excl-consumer");
        declare_queue(&ch, &queue, FieldTable::default()).await;
        let _exclusive = consume(
            &ch,
            &queue,
            BasicConsumeOptions {
                exclusive: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
        // RabbitMQ: "ACCESS_REFUSED - queue '...' in vhost '/' in exclusive use".
        let err = consume(
            &channel(&connection).await,
            &queue,
            BasicConsumeOptions::default(),
        )
        .await
        .unwrap_err();
        assert_eq!(code(err), 403);
        assert!(connection.status().connected());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exclusive_consume_on_a_queue_with_consumers_fails_403() {
    bounded(async {
        let (_gw, connection, ch) = setup().await;
        let queue = unique("shared-consumer");
        declare_queue(&ch, &queue, FieldTable::default()).await;
        let _shared = consume(&ch, &queue, BasicConsumeOptions::default())
            .await
            .unwrap();
        let err = consume(
            &channel(&connection).await,
            &queue,
            BasicConsumeOptions {
                exclusive: true,
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
        assert_eq!(code(err), 403);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_consumer_gets_nothing_more() {
    bounded(async {
        let (_gw, connection, ch) = setup().await;
        let queue = unique("cancel");
        declare_queue(&ch, &queue, FieldTable::default()).await;
        let consumer_ch = channel(&connection).await;
        let mut consumer = consume(
            &consumer_ch,
            &queue,
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
        assert!(publish(&ch, "", &queue, b"before").await);
        assert_eq!(next_delivery(&mut consumer).await.data, b"before");
        within(
            "basic.cancel",
            consumer_ch.basic_cancel(consumer.tag(), BasicCancelOptions::default()),
        )
        .await
        .unwrap();
        assert!(publish(&ch, "", &queue, b"after").await);
        let more = tokio::time::timeout(QUIET, consumer.next()).await;
        assert!(
            matches!(more, Ok(None) | Err(_)),
            "nothing after cancel-ok: {more:?}"
        );
        wait_message_count(&ch, &queue, 1).await;
        assert_eq!(get_all(&ch, &queue).await, ["after"]);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_queue_from_another_channel_cancels_its_consumers() {
    bounded(async {
        let (_gw, connection, ch) = setup().await;
        let queue = unique("deleted-under");
        declare_queue(&ch, &queue, FieldTable::default()).await;
        let consumer_ch = channel(&connection).await;
        let mut consumer = consume(&consumer_ch, &queue, BasicConsumeOptions::default())
            .await
            .unwrap();
        within(
            "queue.delete",
            ch.queue_delete(queue.as_str().into(), QueueDeleteOptions::default()),
        )
        .await
        .unwrap();
        // RabbitMQ's consumer_cancel_notify: a basic.cancel from the server ends the consumer.
        let ended = tokio::time::timeout(WAIT, async {
            while let Some(Ok(_)) = consumer.next().await {}
        })
        .await;
        assert!(ended.is_ok(), "the server cancelled the consumer");
        probe(&consumer_ch).await.expect("its channel stays open");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_get_answers_get_ok_with_the_count_left_then_get_empty() {
    bounded(async {
        let (_gw, _conn, ch) = setup().await;
        let queue = temp_queue(&ch, FieldTable::default()).await;
        assert!(get(&ch, &queue, true).await.is_none(), "get-empty");
        for body in ["first", "second"] {
            assert!(publish(&ch, "", &queue, body.as_bytes()).await);
        }
        wait_message_count(&ch, &queue, 2).await;
        let first = get(&ch, &queue, false).await.expect("get-ok");
        assert_eq!(first.delivery.data, b"first");
        assert_eq!(first.message_count, 1, "one left");
        assert!(!first.delivery.redelivered);
        within("basic.ack", first.delivery.ack(BasicAckOptions::default()))
            .await
            .unwrap();
        let second = get(&ch, &queue, true).await.expect("get-ok");
        assert_eq!(second.delivery.data, b"second");
        assert_eq!(second.message_count, 0);
        assert!(get(&ch, &queue, true).await.is_none(), "get-empty");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ack_multiple_settles_every_delivery_up_to_its_tag() {
    bounded(async {
        let (_gw, connection, ch) = setup().await;
        let queue = unique("ack-multiple");
        declare_queue(&ch, &queue, FieldTable::default()).await;
        for i in 0..5 {
            assert!(publish(&ch, "", &queue, format!("{i}").as_bytes()).await);
        }
        let consumer_ch = channel(&connection).await;
        let mut consumer = consume(&consumer_ch, &queue, BasicConsumeOptions::default())
            .await
            .unwrap();
        let mut deliveries = Vec::new();
        for _ in 0..5 {
            deliveries.push(next_delivery(&mut consumer).await);
        }
        // Acks the first three in one go; the last two stay unacknowledged.
        within(
            "basic.ack",
            consumer_ch.basic_ack(
                deliveries[2].delivery_tag,
                BasicAckOptions { multiple: true },
            ),
        )
        .await
        .unwrap();
        within("channel.close", consumer_ch.close(200, "done".into()))
            .await
            .unwrap();
        wait_message_count(&ch, &queue, 2).await;
        let mut left = get_all(&ch, &queue).await;
        left.sort();
        assert_eq!(left, ["3", "4"]);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nack_with_requeue_redelivers_with_the_redelivered_flag() {
    bounded(async {
        let (_gw, _conn, ch) = setup().await;
        let queue = temp_queue(&ch, FieldTable::default()).await;
        assert!(publish(&ch, "", &queue, b"again").await);
        let mut consumer = consume(&ch, &queue, BasicConsumeOptions::default())
            .await
            .unwrap();
        let first = next_delivery(&mut consumer).await;
        assert!(!first.redelivered);
        within(
            "basic.nack",
            first.nack(BasicNackOptions {
                requeue: true,
                ..Default::default()
            }),
        )
        .await
        .unwrap();
        let second = next_delivery(&mut consumer).await;
        assert_eq!(second.data, b"again");
        assert!(second.redelivered);
        within("basic.ack", second.ack(BasicAckOptions::default()))
            .await
            .unwrap();
        assert!(deliveries_within_quiet(&mut consumer).await.is_empty());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reject_without_requeue_drops_the_message() {
    bounded(async {
        let (_gw, _conn, ch) = setup().await;
        let queue = temp_queue(&ch, FieldTable::default()).await;
        assert!(publish(&ch, "", &queue, b"dropped").await);
        assert!(publish(&ch, "", &queue, b"kept").await);
        let m = get_eventually(&ch, &queue, false).await;
        assert_eq!(m.delivery.data, b"dropped");
        within(
            "basic.reject",
            m.delivery.reject(BasicRejectOptions { requeue: false }),
        )
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(get_all(&ch, &queue).await, ["kept"]);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acking_an_unknown_delivery_tag_fails_406() {
    bounded(async {
        let (_gw, connection, _ch) = setup().await;
        // RabbitMQ: channel.close "PRECONDITION_FAILED - unknown delivery tag 42". A few
        // attempts, each on a new channel, in case lapin wins the race with the probe.
        let mut code = None;
        for _ in 0..5 {
            let ch = channel(&connection).await;
            code = channel_closed_by(&ch, ch.basic_ack(42, BasicAckOptions::default())).await;
            if code.is_some() {
                break;
            }
        }
        assert_eq!(code, Some(406));
        assert!(connection.status().connected());
        probe(&channel(&connection).await).await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_recover_requeues_unacked_deliveries() {
    bounded(async {
        let (_gw, _conn, ch) = setup().await;
        let queue = temp_queue(&ch, FieldTable::default()).await;
        for body in ["r1", "r2"] {
            assert!(publish(&ch, "", &queue, body.as_bytes()).await);
        }
        let mut consumer = consume(&ch, &queue, BasicConsumeOptions::default())
            .await
            .unwrap();
        let first = [
            next_delivery(&mut consumer).await,
            next_delivery(&mut consumer).await,
        ];
        assert!(first.iter().all(|d| !d.redelivered));
        within(
            "basic.recover",
            ch.basic_recover(BasicRecoverOptions { requeue: true }),
        )
        .await
        .unwrap();
        let mut again = Vec::new();
        for _ in 0..2 {
            let d = next_delivery(&mut consumer).await;
            assert!(d.redelivered, "redelivered after recover");
            again.push(body_text(&d.data));
            within("basic.ack", d.ack(BasicAckOptions::default()))
                .await
                .unwrap();
        }
        again.sort();
        assert_eq!(again, ["r1", "r2"]);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefetch_two_without_acks_delivers_exactly_two() {
    bounded(async {
        let (_gw, _conn, ch) = setup().await;
        let queue = temp_queue(&ch, FieldTable::default()).await;
        for i in 0..6 {
            assert!(publish(&ch, "", &queue, format!("{i}").as_bytes()).await);
        }
        within("basic.qos", ch.basic_qos(2, BasicQosOptions::default()))
            .await
            .unwrap();
        let mut consumer = consume(&ch, &queue, BasicConsumeOptions::default())
            .await
            .unwrap();
        let mut held = vec![next_delivery(&mut consumer).await];
        held.extend(deliveries_within_quiet(&mut consumer).await);
        assert_eq!(held.len(), 2, "no acks, so no more than the prefetch");
        within("basic.ack", held[0].ack(BasicAckOptions::default()))
            .await
            .unwrap();
        let mut more = vec![next_delivery(&mut consumer).await];
        more.extend(deliveries_within_quiet(&mut consumer).await);
        assert_eq!(more.len(), 1, "one acked, one more");
    })
    .await;
}

// ---- bad input over raw TCP ------------------------------------------------------------------

/// A client that speaks frames directly, with amq-protocol's generator and parser.
struct Raw {
    stream: TcpStream,
}

impl Raw {
    async fn connect(addr: SocketAddr) -> Raw {
        let stream = within("tcp connect", TcpStream::connect(addr))
            .await
            .expect("tcp connect");
        Raw { stream }
    }

    /// Protocol header, start/start-ok, tune/tune-ok (asking for `heartbeat`), open/open-ok.
    async fn handshake(
        addr: SocketAddr,
        heartbeat: u16,
    ) -> (Raw, amqp_connection::Start, amqp_connection::Tune) {
        let mut raw = Raw::connect(addr).await;
        raw.write(b"AMQP\x00\x00\x09\x01").await;
        let start = match raw.recv().await {
            Some(AMQPFrame::Method(
                0,
                AMQPClass::Connection(amqp_connection::AMQPMethod::Start(start)),
            )) => start,
            other => panic!("expected connection.start, got {other:?}"),
        };
        raw.send(&connection_method(amqp_connection::AMQPMethod::StartOk(
            amqp_connection::StartOk {
                client_properties: FieldTable::default(),
                mechanism: "PLAIN".into(),
                response: LongString::from(b"\0guest\0guest".to_vec()),
                locale: "en_US".into(),
            },
        )))
        .await;
        let tune = match raw.recv().await {
            Some(AMQPFrame::Method(
                0,
                AMQPClass::Connection(amqp_connection::AMQPMethod::Tune(tune)),
            )) => tune,
            other => panic!("expected connection.tune, got {other:?}"),
        };
        raw.send(&connection_method(amqp_connection::AMQPMethod::TuneOk(
            amqp_connection::TuneOk {
                channel_max: tune.channel_max,
                frame_max: tune.frame_max,
                heartbeat,
            },
        )))
        .await;
        raw.send(&connection_method(amqp_connection::AMQPMethod::Open(
            amqp_connection::Open {
                virtual_host: "/".into(),
            },
        )))
        .await;
        match raw.recv().await {
            Some(AMQPFrame::Method(
                0,
                AMQPClass::Connection(amqp_connection::AMQPMethod::OpenOk(_)),
            )) => {}
            other => panic!("expected connection.open-ok, got {other:?}"),
        }
        (raw, start, tune)
    }

    async fn write(&mut self, bytes: &[u8]) {
        within("write", self.stream.write_all(bytes))
            .await
            .expect("write");
    }

    async fn send(&mut self, frame: &AMQPFrame) {
        let written = gen_frame(frame)(WriteContext::from(Vec::new())).expect("frame encodes");
        self.write(&written.write).await;
    }

    /// The next frame, or `None` when the server closed the socket.
    async fn recv(&mut self) -> Option<AMQPFrame> {
        within("a frame", async {
            let mut header = [0u8; 7];
            if self.stream.read_exact(&mut header).await.is_err() {
                return None;
            }
            let size = u32::from_be_bytes([header[3], header[4], header[5], header[6]]) as usize;
            let mut frame = header.to_vec();
            frame.resize(7 + size + 1, 0);
            if self.stream.read_exact(&mut frame[7..]).await.is_err() {
                return None;
            }
            match parse_frame(frame.as_slice()) {
                Ok((_, parsed)) => Some(parsed),
                Err(e) => panic!("the server sent a frame amq-protocol cannot parse: {e:?}"),
            }
        })
        .await
    }

    async fn open_channel(&mut self, id: u16) {
        self.send(&AMQPFrame::Method(
            id,
            AMQPClass::Channel(amqp_channel::AMQPMethod::Open(amqp_channel::Open {})),
        ))
        .await;
        match self.recv().await {
            Some(AMQPFrame::Method(c, AMQPClass::Channel(amqp_channel::AMQPMethod::OpenOk(_))))
                if c == id => {}
            other => panic!("expected channel.open-ok, got {other:?}"),
        }
    }

    /// Reads up to connection.close (skipping heartbeats), answers close-ok, and checks that
    /// the server then closes the socket. Returns the close.
    async fn expect_connection_close(mut self) -> amqp_connection::Close {
        let close = loop {
            match self.recv().await {
                Some(AMQPFrame::Method(
                    0,
                    AMQPClass::Connection(amqp_connection::AMQPMethod::Close(close)),
                )) => break close,
                Some(AMQPFrame::Heartbeat) => continue,
                other => panic!("expected connection.close, got {other:?}"),
            }
        };
        // The server may already have closed the socket (it need not wait for close-ok after
        // a framing error), so a failed write is fine here.
        let close_ok = connection_method(amqp_connection::AMQPMethod::CloseOk(
            amqp_connection::CloseOk {},
        ));
        let bytes = gen_frame(&close_ok)(WriteContext::from(Vec::new()))
            .expect("frame encodes")
            .write;
        let _ = self.stream.write_all(&bytes).await;
        self.expect_eof().await;
        close
    }

    async fn expect_eof(mut self) {
        let mut rest = Vec::new();
        let read = tokio::time::timeout(WAIT, self.stream.read_to_end(&mut rest)).await;
        assert!(read.is_ok(), "the server closes the socket");
    }
}

fn connection_method(method: amqp_connection::AMQPMethod) -> AMQPFrame {
    AMQPFrame::Method(0, AMQPClass::Connection(method))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_protocol_header_is_answered_with_amqp_0_9_1_and_closed() {
    bounded(async {
        let gateway = InProcessGateway::start().await;
        // Spec §4.2.2: the server answers with the header it speaks and closes the socket.
        // (AMQP 1.0's headers go to the 1.0 front end on this port: tests/amqp1_fe2o3.rs.)
        for header in [
            &b"AMQP\x00\x00\x08\x00"[..],
            b"AMQP\x01\x01\x00\x0a",
            b"HELLO!!!",
        ] {
            let mut raw = Raw::connect(addr(&gateway)).await;
            raw.write(header).await;
            let mut answer = Vec::new();
            within("close", raw.stream.read_to_end(&mut answer))
                .await
                .expect("read");
            assert_eq!(answer, b"AMQP\x00\x00\x09\x01", "answer to {header:?}");
        }
        still_serving(&gateway).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_after_the_handshake_gets_a_connection_close() {
    bounded(async {
        let gateway = InProcessGateway::start().await;
        let (mut raw, _, _) = Raw::handshake(addr(&gateway), 0).await;
        raw.write(b"\xde\xad\xbe\xef this is not a frame \xce")
            .await;
        let close = raw.expect_connection_close().await;
        // FRAME_ERROR (501) for an unknown frame type; the spec leaves room for 502/505.
        assert!(
            [501, 502, 505].contains(&close.reply_code),
            "close code {} ({})",
            close.reply_code,
            close.reply_text
        );
        still_serving(&gateway).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_larger_than_frame_max_is_a_frame_error_501() {
    bounded(async {
        let gateway = InProcessGateway::start().await;
        let (mut raw, _, tune) = Raw::handshake(addr(&gateway), 0).await;
        raw.open_channel(1).await;
        // A body frame one byte over the negotiated frame_max (8 bytes of framing included).
        let payload = tune.frame_max as usize - 8 + 1;
        let mut frame = vec![3u8, 0, 1];
        frame.extend_from_slice(&(payload as u32).to_be_bytes());
        frame.resize(7 + payload, b'x');
        frame.push(0xCE);
        // The server may close before it has read everything: a failed write is fine.
        let _ = raw.stream.write_all(&frame).await;
        let close = raw.expect_connection_close().await;
        assert_eq!(close.reply_code, 501, "{}", close.reply_text);
        still_serving(&gateway).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_method_on_a_channel_never_opened_is_a_channel_error_504() {
    bounded(async {
        let gateway = InProcessGateway::start().await;
        let (mut raw, _, _) = Raw::handshake(addr(&gateway), 0).await;
        raw.send(&AMQPFrame::Method(
            7,
            AMQPClass::Queue(amq_protocol::protocol::queue::AMQPMethod::Declare(
                amq_protocol::protocol::queue::Declare {
                    queue: "".into(),
                    passive: false,
                    durable: false,
                    exclusive: true,
                    auto_delete: false,
                    nowait: false,
                    arguments: FieldTable::default(),
                },
            )),
        ))
        .await;
        let close = raw.expect_connection_close().await;
        assert_eq!(close.reply_code, 504, "{}", close.reply_text);
        still_serving(&gateway).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_content_body_without_a_header_is_unexpected_frame_505() {
    bounded(async {
        let gateway = InProcessGateway::start().await;
        let (mut raw, _, _) = Raw::handshake(addr(&gateway), 0).await;
        raw.open_channel(1).await;
        raw.send(&AMQPFrame::Body(1, b"orphan body".to_vec())).await;
        let close = raw.expect_connection_close().await;
        assert_eq!(close.reply_code, 505, "{}", close.reply_text);
        still_serving(&gateway).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_content_header_without_a_publish_is_unexpected_frame_505() {
    bounded(async {
        let gateway = InProcessGateway::start().await;
        let (mut raw, _, _) = Raw::handshake(addr(&gateway), 0).await;
        raw.open_channel(1).await;
        raw.send(&AMQPFrame::Header(
            1,
            AMQPContentHeader {
                class_id: 60,
                body_size: 3,
                properties: BasicProperties::default(),
            },
        ))
        .await;
        let close = raw.expect_connection_close().await;
        assert_eq!(close.reply_code, 505, "{}", close.reply_text);
        still_serving(&gateway).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_class_and_method_is_not_implemented_540() {
    bounded(async {
        let gateway = InProcessGateway::start().await;
        let (mut raw, _, _) = Raw::handshake(addr(&gateway), 0).await;
        raw.open_channel(1).await;
        // A method frame for class 77, method 99: neither exists in 0-9-1.
        raw.write(&[1, 0, 1, 0, 0, 0, 4, 0, 77, 0, 99, 0xCE]).await;
        let close = raw.expect_connection_close().await;
        assert_eq!(close.reply_code, 540, "{}", close.reply_text);
        assert_eq!((close.class_id, close.method_id), (77, 99));
        still_serving(&gateway).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_heartbeating_is_disconnected() {
    bounded(async {
        let gateway = InProcessGateway::start().await;
        let (mut raw, _, _) = Raw::handshake(addr(&gateway), 1).await;
        let silent_since = Instant::now();
        // Read what the server sends (its heartbeats, maybe a close) and never answer.
        let mut heartbeats = 0;
        let ended = tokio::time::timeout(Duration::from_secs(6), async {
            loop {
                match raw.recv().await {
                    None => return,
                    Some(AMQPFrame::Heartbeat) => heartbeats += 1,
                    Some(AMQPFrame::Method(
                        0,
                        AMQPClass::Connection(amqp_connection::AMQPMethod::Close(_)),
                    )) => {}
                    Some(other) => panic!("unexpected frame {other:?}"),
                }
            }
        })
        .await;
        let after = silent_since.elapsed();
        assert!(ended.is_ok(), "still connected after 6 s of silence");
        // RabbitMQ disconnects after two missed heartbeat intervals.
        assert!(
            after >= Duration::from_millis(1000) && after <= Duration::from_millis(3500),
            "disconnected after {after:?}"
        );
        assert!(heartbeats >= 1, "the server heartbeats too");
        still_serving(&gateway).await;
    })
    .await;
}
