//! AMQP 0-9-1 scenarios with lapin, a Rust client nobody here wrote: routing, declarations and
//! their errors, confirms, returns, transactions, acknowledgements, dead-lettering and limits.
//! The full scenario list, also run against a real RabbitMQ, is in compat-suites/amqp-pika and
//! compat-suites/amqp-java; these run in the workspace tests on the embedded backend, and on
//! Pulsar with GATEWAY_TEST_BACKEND=pulsar.

use std::time::Duration;

use e2e_tests::InProcessGateway;
use futures::StreamExt;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ErrorKind, ExchangeKind};

fn unique(prefix: &str) -> String {
    format!("lapin-{prefix}-{:08x}", rand::random::<u32>())
}

async fn connect(gateway: &InProcessGateway) -> Connection {
    let uri = format!("amqp://guest:guest@{}/%2f", gateway.gateway.amqp_addr());
    Connection::connect(&uri, ConnectionProperties::default())
        .await
        .expect("connect")
}

async fn confirming(connection: &Connection) -> Channel {
    let channel = connection.create_channel().await.unwrap();
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    channel
}

/// The reply code a failed call was closed with.
fn code(error: lapin::Error) -> u16 {
    match error.kind() {
        ErrorKind::ProtocolError(e) => e.get_id(),
        other => panic!("expected a protocol error, got {other:?}"),
    }
}

async fn publish(channel: &Channel, exchange: &str, key: &str, body: &[u8]) -> bool {
    publish_with(channel, exchange, key, body, BasicProperties::default()).await
}

async fn publish_with(
    channel: &Channel,
    exchange: &str,
    key: &str,
    body: &[u8],
    properties: BasicProperties,
) -> bool {
    channel
        .basic_publish(
            exchange.into(),
            key.into(),
            BasicPublishOptions::default(),
            body,
            properties,
        )
        .await
        .unwrap()
        .await
        .unwrap()
        .is_ack()
}

async fn temp_queue(channel: &Channel, arguments: FieldTable) -> String {
    channel
        .queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                ..Default::default()
            },
            arguments,
        )
        .await
        .unwrap()
        .name()
        .to_string()
}

async fn get_all(channel: &Channel, queue: &str) -> Vec<String> {
    let mut got = Vec::new();
    while let Some(m) = channel
        .basic_get(queue.into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
    {
        got.push(String::from_utf8(m.delivery.data.clone()).unwrap());
    }
    got
}

fn table(pairs: &[(&str, AMQPValue)]) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in pairs {
        t.insert(ShortString::from(*k), v.clone());
    }
    t
}

/// A routing case: exchange type, binding key and arguments, then publishes (routing key,
/// headers, whether the binding takes it).
type RoutingCase<'a> = (
    ExchangeKind,
    &'a str,
    FieldTable,
    &'a [(&'a str, FieldTable, bool)],
);

fn text(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s.as_bytes().to_vec()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_topic_fanout_and_headers_route_as_rabbitmq_does() {
    let gateway = InProcessGateway::start().await;
    let connection = connect(&gateway).await;
    let ch = confirming(&connection).await;
    let cases: [RoutingCase; 4] = [
        (
            ExchangeKind::Direct,
            "a",
            FieldTable::default(),
            &[
                ("a", FieldTable::default(), true),
                ("b", FieldTable::default(), false),
            ],
        ),
        (
            ExchangeKind::Topic,
            "a.#.z",
            FieldTable::default(),
            &[
                ("a.b.c.z", FieldTable::default(), true),
                ("a.z", FieldTable::default(), true),
                ("a.b", FieldTable::default(), false),
            ],
        ),
        (
            ExchangeKind::Fanout,
            "",
            FieldTable::default(),
            &[("anything", FieldTable::default(), true)],
        ),
        (
            ExchangeKind::Headers,
            "",
            table(&[("x-match", text("any")), ("k", text("v"))]),
            &[
                ("", table(&[("k", text("v"))]), true),
                ("", table(&[("k", text("w"))]), false),
            ],
        ),
    ];
    for (kind, binding_key, arguments, publishes) in cases {
        let exchange = unique("x");
        ch.exchange_declare(
            exchange.as_str().into(),
            kind.clone(),
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
        let queue = temp_queue(&ch, FieldTable::default()).await;
        ch.queue_bind(
            queue.as_str().into(),
            exchange.as_str().into(),
            binding_key.into(),
            QueueBindOptions::default(),
            arguments,
        )
        .await
        .unwrap();
        let mut want = Vec::new();
        for (i, (key, headers, routed)) in publishes.iter().enumerate() {
            let body = format!("{kind:?}-{i}");
            let props = BasicProperties::default().with_headers(headers.clone());
            assert!(publish_with(&ch, &exchange, key, body.as_bytes(), props).await);
            if *routed {
                want.push(body);
            }
        }
        assert_eq!(get_all(&ch, &queue).await, want, "{kind:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declarations_fail_with_the_spec_codes_and_only_close_their_channel() {
    let gateway = InProcessGateway::start().await;
    let connection = connect(&gateway).await;
    let missing = unique("missing");
    let ch = connection.create_channel().await.unwrap();
    let passive = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    let err = ch
        .queue_declare(missing.as_str().into(), passive, FieldTable::default())
        .await
        .unwrap_err();
    assert_eq!(code(err), 404);

    let ch = connection.create_channel().await.unwrap();
    let x = unique("x");
    ch.exchange_declare(
        x.as_str().into(),
        ExchangeKind::Direct,
        ExchangeDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    let err = ch
        .exchange_declare(
            x.as_str().into(),
            ExchangeKind::Fanout,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(code(err), 406);

    let ch = connection.create_channel().await.unwrap();
    let err = ch
        .exchange_declare(
            "amq.mine".into(),
            ExchangeKind::Direct,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(code(err), 403);

    let ch = connection.create_channel().await.unwrap();
    let err = ch
        .queue_declare(
            unique("bad").as_str().into(),
            QueueDeclareOptions::default(),
            table(&[("x-max-priority", AMQPValue::LongInt(10))]),
        )
        .await
        .unwrap_err();
    assert_eq!(
        code(err),
        406,
        "an x- argument the gateway cannot honour is refused"
    );

    // The connection is fine.
    let ch = connection.create_channel().await.unwrap();
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
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exclusive_queues_belong_to_their_connection() {
    let gateway = InProcessGateway::start().await;
    let owner = connect(&gateway).await;
    let name = unique("excl");
    owner
        .create_channel()
        .await
        .unwrap()
        .queue_declare(
            name.as_str().into(),
            QueueDeclareOptions {
                exclusive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let other = connect(&gateway).await;
    let passive = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    let err = other
        .create_channel()
        .await
        .unwrap()
        .queue_declare(name.as_str().into(), passive, FieldTable::default())
        .await
        .unwrap_err();
    assert_eq!(code(err), 405);
    owner.close(200, "bye".into()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let err = other
        .create_channel()
        .await
        .unwrap()
        .queue_declare(name.as_str().into(), passive, FieldTable::default())
        .await
        .unwrap_err();
    assert_eq!(code(err), 404, "gone with its connection");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mandatory_unroutable_messages_are_returned_and_confirmed() {
    let gateway = InProcessGateway::start().await;
    let connection = connect(&gateway).await;
    let ch = confirming(&connection).await;
    let x = unique("x");
    ch.exchange_declare(
        x.as_str().into(),
        ExchangeKind::Direct,
        ExchangeDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    let confirmation = ch
        .basic_publish(
            x.as_str().into(),
            "nobody".into(),
            BasicPublishOptions {
                mandatory: true,
                ..Default::default()
            },
            b"lost?",
            BasicProperties::default(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    assert!(confirmation.is_ack());
    let returned = confirmation.take_message().expect("the message came back");
    assert_eq!(returned.reply_code, 312);
    assert_eq!(returned.delivery.data, b"lost?");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn properties_headers_and_large_bodies_survive() {
    let gateway = InProcessGateway::start().await;
    let connection = connect(&gateway).await;
    let ch = confirming(&connection).await;
    let queue = temp_queue(&ch, FieldTable::default()).await;
    let headers = table(&[
        ("text", text("hello")),
        ("int", AMQPValue::LongInt(-7)),
        ("flag", AMQPValue::Boolean(true)),
        (
            "nested",
            AMQPValue::FieldTable(table(&[("n", AMQPValue::LongLongInt(1 << 40))])),
        ),
    ]);
    let props = BasicProperties::default()
        .with_content_type("application/octet-stream".into())
        .with_headers(headers.clone())
        .with_delivery_mode(2)
        .with_correlation_id("c-1".into())
        .with_message_id("m-1".into())
        .with_timestamp(1_700_000_000)
        .with_user_id("guest".into());
    // Larger than frame_max (128 KiB): it spans several body frames both ways.
    let body: Vec<u8> = (0..400_000u32).map(|i| (i % 251) as u8).collect();
    assert!(publish_with(&ch, "", &queue, &body, props.clone()).await);
    let got = ch
        .basic_get(queue.as_str().into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.delivery.data, body);
    assert_eq!(got.delivery.properties.headers(), &Some(headers));
    assert_eq!(
        got.delivery.properties.correlation_id(),
        props.correlation_id()
    );
    assert_eq!(got.delivery.properties.timestamp(), props.timestamp());
    assert_eq!(got.delivery.properties.delivery_mode(), &Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_confirms_are_all_acks() {
    let gateway = InProcessGateway::start().await;
    let connection = connect(&gateway).await;
    let ch = confirming(&connection).await;
    let queue = temp_queue(&ch, FieldTable::default()).await;
    let mut pending = Vec::new();
    for i in 0..1000 {
        pending.push(
            ch.basic_publish(
                "".into(),
                queue.as_str().into(),
                BasicPublishOptions::default(),
                format!("{i}").as_bytes(),
                BasicProperties::default(),
            )
            .await
            .unwrap(),
        );
    }
    for confirm in pending {
        assert!(confirm.await.unwrap().is_ack());
    }
    let count = ch
        .queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap()
        .message_count();
    assert_eq!(count, 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_hold_publishes_until_commit_and_rollback_discards_them() {
    let gateway = InProcessGateway::start().await;
    let connection = connect(&gateway).await;
    let ch = connection.create_channel().await.unwrap();
    let queue = temp_queue(&ch, FieldTable::default()).await;
    ch.tx_select().await.unwrap();
    for body in ["a", "b"] {
        ch.basic_publish(
            "".into(),
            queue.as_str().into(),
            BasicPublishOptions::default(),
            body.as_bytes(),
            BasicProperties::default(),
        )
        .await
        .unwrap();
    }
    let observer = connection.create_channel().await.unwrap();
    let passive = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    assert_eq!(
        observer
            .queue_declare(queue.as_str().into(), passive, FieldTable::default())
            .await
            .unwrap()
            .message_count(),
        0
    );
    ch.tx_commit().await.unwrap();
    assert_eq!(
        observer
            .queue_declare(queue.as_str().into(), passive, FieldTable::default())
            .await
            .unwrap()
            .message_count(),
        2
    );
    ch.basic_publish(
        "".into(),
        queue.as_str().into(),
        BasicPublishOptions::default(),
        b"rolled back",
        BasicProperties::default(),
    )
    .await
    .unwrap();
    ch.tx_rollback().await.unwrap();
    let mut bodies = get_all(&observer, &queue).await;
    bodies.sort();
    assert_eq!(bodies, ["a", "b"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requeued_messages_come_back_redelivered_and_rejected_ones_are_dead_lettered() {
    let gateway = InProcessGateway::start().await;
    let connection = connect(&gateway).await;
    let ch = confirming(&connection).await;
    let dlx = unique("dlx");
    ch.exchange_declare(
        dlx.as_str().into(),
        ExchangeKind::Fanout,
        ExchangeDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    let dead = temp_queue(&ch, FieldTable::default()).await;
    ch.queue_bind(
        dead.as_str().into(),
        dlx.as_str().into(),
        "".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    let queue = temp_queue(&ch, table(&[("x-dead-letter-exchange", text(&dlx))])).await;
    assert!(publish(&ch, "", &queue, b"m").await);

    let first = ch
        .basic_get(queue.as_str().into(), BasicGetOptions::default())
        .await
        .unwrap()
        .unwrap();
    assert!(!first.delivery.redelivered);
    first
        .delivery
        .nack(BasicNackOptions {
            requeue: true,
            ..Default::default()
        })
        .await
        .unwrap();
    let again = loop {
        if let Some(m) = ch
            .basic_get(queue.as_str().into(), BasicGetOptions::default())
            .await
            .unwrap()
        {
            break m;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(again.delivery.redelivered);
    again
        .delivery
        .reject(BasicRejectOptions { requeue: false })
        .await
        .unwrap();

    let dead_letter = loop {
        if let Some(m) = ch
            .basic_get(dead.as_str().into(), BasicGetOptions { no_ack: true })
            .await
            .unwrap()
        {
            break m;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let headers = dead_letter.delivery.properties.headers().clone().unwrap();
    let Some(AMQPValue::FieldArray(deaths)) = headers.inner().get("x-death") else {
        panic!("x-death header: {headers:?}")
    };
    let Some(AMQPValue::FieldTable(death)) = deaths.as_slice().first() else {
        panic!("an x-death entry")
    };
    assert_eq!(death.inner().get("reason"), Some(&text("rejected")));
    assert_eq!(death.inner().get("queue"), Some(&text(&queue)));
    assert_eq!(death.inner().get("count"), Some(&AMQPValue::LongLongInt(1)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefetch_limits_unacknowledged_deliveries() {
    let gateway = InProcessGateway::start().await;
    let connection = connect(&gateway).await;
    let ch = confirming(&connection).await;
    let queue = temp_queue(&ch, FieldTable::default()).await;
    for i in 0..10 {
        assert!(publish(&ch, "", &queue, format!("{i}").as_bytes()).await);
    }
    ch.basic_qos(3, BasicQosOptions::default()).await.unwrap();
    let mut consumer = ch
        .basic_consume(
            queue.as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let mut held = Vec::new();
    while let Ok(Some(delivery)) =
        tokio::time::timeout(Duration::from_millis(1500), consumer.next()).await
    {
        held.push(delivery.unwrap());
    }
    assert_eq!(held.len(), 3, "no acks, so no more than the prefetch");
    held.last()
        .unwrap()
        .ack(BasicAckOptions { multiple: true })
        .await
        .unwrap();
    let mut more = 0;
    while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(1500), consumer.next()).await
    {
        more += 1;
    }
    assert_eq!(more, 3, "three acked, three more");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn length_limits_drop_the_head_or_refuse_the_publish() {
    let gateway = InProcessGateway::start().await;
    let connection = connect(&gateway).await;
    let ch = confirming(&connection).await;
    let drop_head = temp_queue(&ch, table(&[("x-max-length", AMQPValue::LongInt(2))])).await;
    for i in 0..4 {
        assert!(publish(&ch, "", &drop_head, format!("d{i}").as_bytes()).await);
    }
    assert_eq!(get_all(&ch, &drop_head).await, ["d2", "d3"]);
    let refuse = temp_queue(
        &ch,
        table(&[
            ("x-max-length", AMQPValue::LongInt(1)),
            ("x-overflow", text("reject-publish")),
        ]),
    )
    .await;
    assert!(publish(&ch, "", &refuse, b"r0").await);
    assert!(
        !publish(&ch, "", &refuse, b"r1").await,
        "a full queue nacks the publish"
    );
    assert_eq!(get_all(&ch, &refuse).await, ["r0"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_queue_cancels_its_consumers() {
    let gateway = InProcessGateway::start().await;
    let connection = connect(&gateway).await;
    let ch = connection.create_channel().await.unwrap();
    let queue = unique("q");
    ch.queue_declare(
        queue.as_str().into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    let mut consumer = ch
        .basic_consume(
            queue.as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    connection
        .create_channel()
        .await
        .unwrap()
        .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
        .await
        .unwrap();
    // The server's basic.cancel ends the consumer's stream.
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(Ok(_)) = consumer.next().await {}
    })
    .await;
    assert!(ended.is_ok(), "the consumer was cancelled by the server");
}
