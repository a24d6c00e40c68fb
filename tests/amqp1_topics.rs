//! Topics and subscriptions in the AMQP 1.0 front end (issue 14 §3), driven by the
//! `fe2o3-amqp` client with the terminus capabilities Qpid JMS sends: a topic (`topic`
//! capability) fans out to every subscriber; a non-durable subscriber only gets what is
//! published while it is attached; a durable subscription (durable source, link name =
//! subscription name, container id = client id) keeps messages across a detach with
//! closed=false and is deleted by a detach with closed=true (unsubscribe), or by Qpid JMS's
//! unsubscribe (a lookup with a null source, in raw frames as fe2o3 cannot send one).
//! Runs on the embedded backend, and on Pulsar with GATEWAY_TEST_BACKEND=pulsar.

use std::future::Future;
use std::time::Duration;

use e2e_tests::InProcessGateway;
use fe2o3_amqp::connection::ConnectionHandle;
use fe2o3_amqp::session::SessionHandle;
use fe2o3_amqp::types::definitions::{AmqpError, ErrorCondition, Handle, Role};
use fe2o3_amqp::types::messaging::{
    Outcome, Source, Target, TerminusDurability, TerminusExpiryPolicy,
};
use fe2o3_amqp::types::performatives::{Attach, Begin, Detach, Open, Performative};
use fe2o3_amqp::types::primitives::Symbol;
use fe2o3_amqp::{Connection, Receiver, Sender, Session};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const WAIT: Duration = Duration::from_secs(10);
const TEST_LIMIT: Duration = Duration::from_secs(60);

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

async fn connect(gateway: &InProcessGateway, container_id: &str) -> ConnectionHandle<()> {
    let url = format!("amqp://guest:guest@{}", gateway.gateway.amqp_addr());
    within("open", Connection::open(container_id.to_string(), &url[..]))
        .await
        .expect("open")
}

async fn session(connection: &mut ConnectionHandle<()>) -> SessionHandle<()> {
    within("begin", Session::begin(connection))
        .await
        .expect("begin")
}

fn topic_caps() -> Vec<Symbol> {
    vec![Symbol::from("topic")]
}

async fn publisher(session: &mut SessionHandle<()>, topic: &str) -> Sender {
    let target = Target::builder()
        .address(topic.to_string())
        .capabilities(topic_caps())
        .build();
    within(
        "attach sender",
        Sender::builder()
            .name(unique("sender"))
            .target(target)
            .attach(session),
    )
    .await
    .expect("sender attached")
}

/// A subscriber as Qpid JMS attaches one: non-durable, or durable named `name`.
async fn subscriber(
    session: &mut SessionHandle<()>,
    topic: &str,
    durable: Option<&str>,
) -> Receiver {
    let mut source = Source::builder()
        .address(topic.to_string())
        .capabilities(topic_caps());
    source = match durable {
        Some(_) => source
            .durable(TerminusDurability::UnsettledState)
            .expiry_policy(TerminusExpiryPolicy::Never),
        None => source.expiry_policy(TerminusExpiryPolicy::LinkDetach),
    };
    let name = durable.map(str::to_owned).unwrap_or_else(|| unique("sub"));
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

async fn send_text(sender: &mut Sender, text: &str) {
    let outcome = within("send", sender.send(text.to_string()))
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

async fn nothing_for(receiver: &mut Receiver) {
    let got = tokio::time::timeout(Duration::from_millis(700), receiver.recv::<String>()).await;
    assert!(got.is_err(), "expected nothing, got {got:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_fans_out_to_every_subscriber_and_keeps_nothing_for_later_ones() {
    bounded(async {
        let gateway = InProcessGateway::start().await;
        let topic = unique("t");
        let mut connection = connect(&gateway, &unique("client")).await;
        let mut session = session(&mut connection).await;
        let mut sender = publisher(&mut session, &topic).await;
        // Published before any subscriber: for nobody.
        send_text(&mut sender, "early").await;
        let mut a = subscriber(&mut session, &topic, None).await;
        let mut b = subscriber(&mut session, &topic, None).await;
        for text in ["one", "two"] {
            send_text(&mut sender, text).await;
        }
        for r in [&mut a, &mut b] {
            assert_eq!(recv_text(r).await, "one");
            assert_eq!(recv_text(r).await, "two");
        }
        a.close().await.unwrap();
        send_text(&mut sender, "three").await;
        assert_eq!(recv_text(&mut b).await, "three");
        // A new non-durable subscriber starts at the end.
        let mut c = subscriber(&mut session, &topic, None).await;
        nothing_for(&mut c).await;
        c.close().await.unwrap();
        b.close().await.unwrap();
        sender.close().await.unwrap();
        connection.close().await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_durable_subscription_survives_a_detach_and_closing_it_unsubscribes() {
    bounded(async {
        let gateway = InProcessGateway::start().await;
        let topic = unique("t");
        let client_id = unique("client");
        let name = unique("durable");
        let mut connection = connect(&gateway, &client_id).await;
        let mut session = session(&mut connection).await;
        let mut sender = publisher(&mut session, &topic).await;
        let subscription = subscriber(&mut session, &topic, Some(&name)).await;
        // Detached with closed=false: the subscription stays and keeps what is published.
        subscription.detach().await.expect("detach");
        send_text(&mut sender, "kept").await;
        let mut again = subscriber(&mut session, &topic, Some(&name)).await;
        assert_eq!(recv_text(&mut again).await, "kept");
        // Detached with closed=true: the subscription is deleted (JMS unsubscribe).
        again.close().await.expect("close");
        // The gateway deletes it once the link's consumer has closed.
        tokio::time::sleep(Duration::from_millis(500)).await;
        send_text(&mut sender, "for nobody").await;
        let mut fresh = subscriber(&mut session, &topic, Some(&name)).await;
        nothing_for(&mut fresh).await;
        send_text(&mut sender, "new").await;
        assert_eq!(recv_text(&mut fresh).await, "new");
        fresh.close().await.unwrap();
        sender.close().await.unwrap();
        connection.close().await.unwrap();
    })
    .await;
}

/// Reads frames into `buf` until `want` performatives (heartbeats left out) have come after
/// the header, and returns them all.
async fn read_performatives(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    want: usize,
) -> Vec<Performative> {
    let mut chunk = [0u8; 4096];
    loop {
        if buf.len() >= 8 {
            let found = performatives(&buf[8..]);
            if found.len() >= want {
                return found;
            }
        }
        let n = within("frames", stream.read(&mut chunk))
            .await
            .expect("read");
        assert!(n > 0, "the gateway closed the connection");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// The performatives in `bytes` (whole frames one after another), heartbeats left out.
fn performatives(mut bytes: &[u8]) -> Vec<Performative> {
    let mut out = Vec::new();
    while bytes.len() >= 8 {
        let size = u32::from_be_bytes(bytes[..4].try_into().unwrap()) as usize;
        if bytes.len() < size {
            break;
        }
        let doff = bytes[4] as usize * 4;
        if size > 8 {
            out.push(serde_amqp::from_slice(&bytes[doff..size]).expect("a performative"));
        }
        bytes = &bytes[size..];
    }
    out
}

fn frame(channel: u16, body: &Performative) -> Vec<u8> {
    let body = serde_amqp::to_vec(body).unwrap();
    let mut out = ((body.len() + 8) as u32).to_be_bytes().to_vec();
    out.extend_from_slice(&[2, 0]);
    out.extend_from_slice(&channel.to_be_bytes());
    out.extend_from_slice(&body);
    out
}

/// Qpid JMS's unsubscribe, in raw frames: a receiving link named as the subscription with a
/// null source (a lookup), then a detach with `closed`. Returns the gateway's answers to the
/// attach: its attach and, for an unknown subscription, its detach.
async fn unsubscribe(
    gateway: &InProcessGateway,
    container_id: &str,
    name: &str,
) -> Vec<Performative> {
    let mut s = TcpStream::connect(gateway.gateway.amqp_addr())
        .await
        .unwrap();
    s.write_all(b"AMQP\x00\x01\x00\x00").await.unwrap();
    let open = Open {
        container_id: container_id.into(),
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
    let begin = Begin {
        remote_channel: None,
        next_outgoing_id: 0,
        incoming_window: 100,
        outgoing_window: 100,
        handle_max: Default::default(),
        offered_capabilities: None,
        desired_capabilities: None,
        properties: None,
    };
    let attach = Attach {
        name: name.into(),
        handle: Handle(0),
        role: Role::Receiver,
        snd_settle_mode: Default::default(),
        rcv_settle_mode: Default::default(),
        source: None,
        target: Some(Box::new(Target::builder().build().into())),
        unsettled: None,
        incomplete_unsettled: false,
        initial_delivery_count: None,
        max_message_size: None,
        offered_capabilities: None,
        desired_capabilities: None,
        properties: None,
    };
    for p in [
        Performative::Open(open),
        Performative::Begin(begin),
        Performative::Attach(attach),
    ] {
        s.write_all(&frame(0, &p)).await.unwrap();
    }
    // open, begin, attach, and maybe a detach.
    let mut buf = Vec::new();
    let got = read_performatives(&mut s, &mut buf, 3).await;
    let mut answers: Vec<Performative> = got.into_iter().skip(2).collect();
    let found = matches!(&answers[0], Performative::Attach(a) if a.source.is_some());
    if found {
        let detach = Detach {
            handle: Handle(0),
            closed: true,
            error: None,
        };
        s.write_all(&frame(0, &Performative::Detach(detach)))
            .await
            .unwrap();
        read_performatives(&mut s, &mut buf, 4).await;
    } else if answers.len() < 2 {
        answers = read_performatives(&mut s, &mut buf, 4)
            .await
            .into_iter()
            .skip(2)
            .collect();
    }
    answers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsubscribe_looks_the_subscription_up_and_deletes_it() {
    bounded(async {
        let gateway = InProcessGateway::start().await;
        let topic = unique("t");
        let client_id = unique("client");
        let name = unique("durable");
        let mut connection = connect(&gateway, &client_id).await;
        let mut session = session(&mut connection).await;
        let mut sender = publisher(&mut session, &topic).await;
        subscriber(&mut session, &topic, Some(&name))
            .await
            .detach()
            .await
            .expect("detach");
        send_text(&mut sender, "kept").await;

        let answers = unsubscribe(&gateway, &client_id, &name).await;
        match &answers[0] {
            Performative::Attach(a) => {
                let source = a.source.as_deref().expect("the subscription's source");
                assert_eq!(source.address.as_deref(), Some(topic.as_str()));
                assert_eq!(source.durable, TerminusDurability::UnsettledState);
            }
            other => panic!("answer {other:?}"),
        }
        // Deleted: a new subscription of the name starts empty.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut fresh = subscriber(&mut session, &topic, Some(&name)).await;
        nothing_for(&mut fresh).await;
        fresh.close().await.unwrap();

        // An unknown subscription: a null source, then amqp:not-found.
        let answers = unsubscribe(&gateway, &client_id, &unique("unknown")).await;
        assert!(matches!(&answers[0], Performative::Attach(a) if a.source.is_none()));
        match &answers[1] {
            Performative::Detach(d) => assert_eq!(
                d.error.as_ref().map(|e| e.condition.clone()),
                Some(ErrorCondition::AmqpError(AmqpError::NotFound))
            ),
            other => panic!("answer {other:?}"),
        }
        sender.close().await.unwrap();
        connection.close().await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_id_is_held_by_one_connection_when_it_asks_to_be_the_only_one() {
    bounded(async {
        let gateway = InProcessGateway::start().await;
        let client_id = unique("client");
        let url = format!("amqp://guest:guest@{}", gateway.gateway.amqp_addr());
        let sole = || {
            Connection::builder()
                .container_id(client_id.clone())
                .add_desired_capabilities("sole-connection-for-container")
        };
        let mut first = within("open", sole().open(&url[..]))
            .await
            .expect("the first connection opens");
        // A second one gets an open, then a close with amqp:invalid-field (container-id).
        if let Ok(mut second) = within("open", sole().open(&url[..])).await {
            let closed = within("close", second.on_close()).await;
            let text = format!("{closed:?}");
            assert!(text.contains("InvalidField"), "closed with {text}");
        }
        // Without the capability the id is not checked.
        let mut other = connect(&gateway, &client_id).await;
        other.close().await.unwrap();
        first.close().await.unwrap();
        // Free again once the first connection closed.
        let mut again = within("open", sole().open(&url[..]))
            .await
            .expect("the id is free again");
        again.close().await.unwrap();
    })
    .await;
}
