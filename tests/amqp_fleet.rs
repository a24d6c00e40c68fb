//! AMQP across gateway processes: a fleet sharing one Pulsar (topology declared through one
//! instance is used at once through another), and a SIGKILLed gateway restarted mid-stream (no
//! confirmed message lost, unacknowledged ones back with `redelivered=true`). Clients are lapin.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use e2e_tests::{free_port, test_pulsar, GatewayProcess};
use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};

const GATEWAY_BIN: &str = env!("CARGO_BIN_EXE_gateway-under-test");

fn unique(prefix: &str) -> String {
    format!("{prefix}-{:08x}", rand::random::<u32>())
}

async fn connect(addr: SocketAddr) -> Connection {
    let uri = format!("amqp://guest:guest@{addr}/%2f");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match Connection::connect(&uri, ConnectionProperties::default()).await {
            Ok(c) => return c,
            Err(e) if tokio::time::Instant::now() < deadline => {
                eprintln!("connecting to {addr}: {e}; retrying");
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            Err(e) => panic!("cannot connect to the gateway's AMQP listener {addr}: {e}"),
        }
    }
}

async fn confirming_channel(connection: &Connection) -> Channel {
    let channel = connection.create_channel().await.expect("channel");
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirm.select");
    channel
}

/// Publishes and waits for the broker's confirm; true when it was an ack.
async fn publish_confirmed(channel: &Channel, exchange: &str, key: &str, body: &[u8]) -> bool {
    let properties = BasicProperties::default().with_delivery_mode(2);
    match channel
        .basic_publish(
            exchange.into(),
            key.into(),
            BasicPublishOptions::default(),
            body,
            properties,
        )
        .await
    {
        Ok(confirm) => matches!(confirm.await, Ok(c) if c.is_ack()),
        Err(_) => false,
    }
}

/// Consumes until `idle` passes without a delivery; returns body -> redelivered, acking all.
async fn drain(channel: &Channel, queue: &str, idle: Duration) -> BTreeMap<String, bool> {
    channel
        .basic_qos(100, BasicQosOptions::default())
        .await
        .expect("qos");
    let mut consumer = channel
        .basic_consume(
            queue.into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume");
    let mut seen = BTreeMap::new();
    while let Ok(Some(delivery)) = tokio::time::timeout(idle, consumer.next()).await {
        let delivery = delivery.expect("delivery");
        let body = String::from_utf8(delivery.data.clone()).expect("utf-8 body");
        let again = seen.insert(body.clone(), delivery.redelivered);
        assert!(again.is_none(), "{body} delivered twice after the restart");
        delivery.ack(BasicAckOptions::default()).await.expect("ack");
    }
    seen
}

fn start_gateway(data: &std::path::Path, amqp: SocketAddr) -> GatewayProcess {
    let kafka = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let admin = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    GatewayProcess::start_with_args(
        GATEWAY_BIN,
        data,
        kafka,
        admin,
        None,
        &["--amqp-listen".into(), amqp.to_string()],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a real Pulsar: GATEWAY_TEST_BACKEND=pulsar with PULSAR_URL/PULSAR_ADMIN_URL, run with --include-ignored"]
async fn fleet_topology_declared_on_one_instance_is_used_at_once_on_another() {
    assert!(test_pulsar().is_some(), "a fleet shares a real Pulsar");
    let (data_a, data_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let amqp_a: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let amqp_b: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let _a = start_gateway(data_a.path(), amqp_a);
    let _b = start_gateway(data_b.path(), amqp_b);
    let on_a = connect(amqp_a).await;
    let on_b = connect(amqp_b).await;
    let publisher = confirming_channel(&on_a).await;
    let declarer = on_b.create_channel().await.unwrap();

    // Many rounds of "declare through B, publish through A in the very next instant".
    let rounds = 25;
    let mut names = Vec::new();
    for round in 0..rounds {
        let exchange = unique("fleet-x");
        let queue = unique("fleet-q");
        declarer
            .exchange_declare(
                exchange.as_str().into(),
                ExchangeKind::Direct,
                ExchangeDeclareOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap();
        declarer
            .queue_declare(
                queue.as_str().into(),
                QueueDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap();
        declarer
            .queue_bind(
                queue.as_str().into(),
                exchange.as_str().into(),
                "k".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap();
        // Through the exchange (a binding made on B) and straight to the queue (declared on B).
        assert!(
            publish_confirmed(&publisher, &exchange, "k", format!("x-{round}").as_bytes()).await,
            "round {round}: publish through the exchange confirmed"
        );
        assert!(
            publish_confirmed(&publisher, "", &queue, format!("q-{round}").as_bytes()).await,
            "round {round}: publish to the queue confirmed"
        );
        names.push((queue, round));
    }

    // Every message is delivered, read through either instance.
    let reader_a = on_a.create_channel().await.unwrap();
    let reader_b = on_b.create_channel().await.unwrap();
    for (queue, round) in names {
        let reader = if round % 2 == 0 { &reader_a } else { &reader_b };
        let got: BTreeSet<String> = drain(reader, &queue, Duration::from_secs(2))
            .await
            .into_keys()
            .collect();
        let want: BTreeSet<String> = [format!("x-{round}"), format!("q-{round}")].into();
        assert_eq!(got, want, "queue {queue}: what was published through A");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_stream_loses_no_confirmed_message_and_flags_unacked_redelivered() {
    let data = tempfile::tempdir().unwrap();
    let amqp: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let gateway = start_gateway(data.path(), amqp);
    let queue = unique("crash-q");

    let connection = connect(amqp).await;
    let channel = confirming_channel(&connection).await;
    channel
        .queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let mut confirmed = BTreeSet::new();
    for i in 0..300 {
        let body = format!("m{i:06}");
        assert!(publish_confirmed(&channel, "", &queue, body.as_bytes()).await);
        confirmed.insert(body);
    }

    // A consumer takes 60, acknowledges 40, and holds 20 unacknowledged.
    let consuming = connection.create_channel().await.unwrap();
    consuming
        .basic_qos(60, BasicQosOptions::default())
        .await
        .unwrap();
    let mut consumer = consuming
        .basic_consume(
            queue.as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let (mut acked, mut held) = (BTreeSet::new(), BTreeSet::new());
    while acked.len() + held.len() < 60 {
        let delivery = tokio::time::timeout(Duration::from_secs(10), consumer.next())
            .await
            .expect("deliveries before the crash")
            .expect("consumer open")
            .expect("delivery");
        let body = String::from_utf8(delivery.data.clone()).unwrap();
        assert!(!delivery.redelivered, "{body}: first delivery");
        if acked.len() < 40 {
            delivery.ack(BasicAckOptions::default()).await.unwrap();
            acked.insert(body);
        } else {
            held.insert(body);
        }
    }

    // Keep publishing while the gateway is killed; remember what was confirmed.
    let (started, running) = tokio::sync::oneshot::channel();
    let publisher = {
        let (channel, queue) = (channel.clone(), queue.clone());
        tokio::spawn(async move {
            let mut confirmed = BTreeSet::new();
            let mut started = Some(started);
            for i in 300..1_000_000 {
                let body = format!("m{i:06}");
                if !publish_confirmed(&channel, "", &queue, body.as_bytes()).await {
                    break;
                }
                confirmed.insert(body);
                if confirmed.len() == 50 {
                    let _ = started.take().map(|s| s.send(()));
                }
            }
            confirmed
        })
    };
    running.await.expect("publishing runs");
    // Acks are sent without a reply; give them a moment to reach the backend.
    tokio::time::sleep(Duration::from_secs(1)).await;
    gateway.kill();
    let during = publisher.await.expect("publisher task");
    eprintln!("{} more messages confirmed before the kill", during.len());
    confirmed.extend(during);
    drop(connection);
    let _gateway = start_gateway(data.path(), amqp);

    let connection = connect(amqp).await;
    let channel = connection.create_channel().await.unwrap();
    let after = drain(&channel, &queue, Duration::from_secs(5)).await;
    for body in &held {
        assert_eq!(
            after.get(body),
            Some(&true),
            "{body}: unacknowledged at the crash, so back with redelivered=true"
        );
    }
    for body in confirmed.difference(&acked) {
        assert!(
            after.contains_key(body),
            "{body}: confirmed and never acked, so not lost"
        );
    }
    for body in &acked {
        assert!(
            !after.contains_key(body),
            "{body}: acknowledged before the crash"
        );
    }
}
