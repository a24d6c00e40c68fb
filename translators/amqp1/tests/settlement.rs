//! Sending links against a backend whose write confirmations are held back by a gate:
//!
//! - a message is settled to its sender only once the backend has persisted it (issue 14): the
//!   `fe2o3-amqp` client's send must not complete until the gate opens (settling when the
//!   message is handed to the backend fails this test);
//! - credit is a window of unpersisted messages, so with nothing persisted a client that sends
//!   past it (raw frames: real clients respect credit) gets the link detached with
//!   `amqp:link:transfer-limit-exceeded`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use fe2o3_amqp::types::messaging::Outcome;
use fe2o3_amqp::types::performatives::Performative;
use fe2o3_amqp::{Connection, Sender, Session};
use gateway_amqp1::{Amqp1Config, Amqp1Frontend};
use gateway_core::backend::prelude::*;
use gateway_core::backend::{SubscribeOptions, TopicInfo};
use gateway_core::{
    Announcement, BackendRef, Consumer, EntryId, EntryToSend, Lease, MessageId, PendingSend,
    Reader, Result, TopicName,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

/// The embedded backend, with write confirmations held while the gate is closed.
struct Gated {
    inner: BackendRef,
    open: watch::Sender<bool>,
}

#[async_trait]
impl Backend for Gated {
    fn kind(&self) -> &'static str {
        "gated"
    }
    async fn readiness(&self) -> Result<()> {
        self.inner.readiness().await
    }
}

#[async_trait]
impl TopicAdmin for Gated {
    async fn create_topic(&self, topic: &TopicName, partitions: u32) -> Result<()> {
        self.inner.create_topic(topic, partitions).await
    }
    async fn delete_topic(&self, topic: &TopicName) -> Result<()> {
        self.inner.delete_topic(topic).await
    }
    async fn update_partitions(&self, topic: &TopicName, partitions: u32) -> Result<()> {
        self.inner.update_partitions(topic, partitions).await
    }
    async fn topic_info(&self, topic: &TopicName) -> Result<Option<TopicInfo>> {
        self.inner.topic_info(topic).await
    }
    async fn list_topics(
        &self,
        tenant: &str,
        namespace: &str,
    ) -> Result<Vec<(TopicName, TopicInfo)>> {
        self.inner.list_topics(tenant, namespace).await
    }
    async fn topic_properties(
        &self,
        topic: &TopicName,
    ) -> Result<std::collections::BTreeMap<String, String>> {
        self.inner.topic_properties(topic).await
    }

    async fn update_topic_properties(
        &self,
        topic: &TopicName,
        set: &std::collections::BTreeMap<String, String>,
        remove: &[String],
    ) -> Result<()> {
        self.inner.update_topic_properties(topic, set, remove).await
    }

    async fn set_topic_policies(
        &self,
        topic: &TopicName,
        policies: &gateway_core::backend::TopicPolicies,
    ) -> Result<()> {
        self.inner.set_topic_policies(topic, policies).await
    }

    async fn applied_retention(
        &self,
        topic: &TopicName,
    ) -> Result<gateway_core::backend::Retention> {
        self.inner.applied_retention(topic).await
    }

    async fn compact(&self, topic: &TopicName) -> Result<()> {
        self.inner.compact(topic).await
    }
}

#[async_trait]
impl Producing for Gated {
    async fn submit(&self, topic: &TopicName, entries: Vec<EntryToSend>) -> Result<PendingSend> {
        let written = self.inner.submit(topic, entries).await?;
        let mut open = self.open.subscribe();
        Ok(Box::pin(async move {
            let _ = open.wait_for(|open| *open).await;
            written.await
        }))
    }
    async fn last_sequence(&self, topic: &TopicName, producer: &str) -> Result<Option<u64>> {
        self.inner.last_sequence(topic, producer).await
    }
    async fn find_sequence(
        &self,
        topic: &TopicName,
        producer: &str,
        sequence: u64,
    ) -> Result<Option<gateway_core::MessageId>> {
        self.inner.find_sequence(topic, producer, sequence).await
    }
}

#[async_trait]
impl Reading for Gated {
    async fn last_message_id(&self, topic: &TopicName) -> Result<Option<MessageId>> {
        self.inner.last_message_id(topic).await
    }
    async fn first_entry_id(&self, topic: &TopicName) -> Result<Option<EntryId>> {
        self.inner.first_entry_id(topic).await
    }
    async fn find_entry_by_publish_time(
        &self,
        topic: &TopicName,
        time: u64,
    ) -> Result<Option<EntryId>> {
        self.inner.find_entry_by_publish_time(topic, time).await
    }
    async fn open_reader(&self, topic: &TopicName, start: EntryId) -> Result<Box<dyn Reader>> {
        self.inner.open_reader(topic, start).await
    }
}

#[async_trait]
impl Subscriptions for Gated {
    async fn subscribe(
        &self,
        topic: &TopicName,
        subscription: &str,
        options: SubscribeOptions,
    ) -> Result<Box<dyn Consumer>> {
        self.inner.subscribe(topic, subscription, options).await
    }
    async fn unsubscribe(&self, topic: &TopicName, subscription: &str) -> Result<()> {
        self.inner.unsubscribe(topic, subscription).await
    }
    async fn subscriptions(&self, topic: &TopicName) -> Result<Vec<String>> {
        self.inner.subscriptions(topic).await
    }
    async fn backlog(&self, topic: &TopicName, subscription: &str) -> Result<u64> {
        self.inner.backlog(topic, subscription).await
    }
}

#[async_trait]
impl gateway_core::backend::Transactions for Gated {}

#[async_trait]
impl Coordination for Gated {
    async fn try_lease(&self, topic: &TopicName, holder: &str) -> Result<Option<Box<dyn Lease>>> {
        self.inner.try_lease(topic, holder).await
    }
    async fn lease_holder(&self, topic: &TopicName) -> Result<Option<String>> {
        self.inner.lease_holder(topic).await
    }
    async fn announce(&self, topic: &TopicName, name: &str) -> Result<Box<dyn Announcement>> {
        self.inner.announce(topic, name).await
    }
    async fn announced(&self, topic: &TopicName) -> Result<Vec<String>> {
        self.inner.announced(topic).await
    }
}

/// Serves the front end on a loopback port, reading the header as the gateway's listener does.
async fn serve(frontend: Arc<Amqp1Frontend>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (_drain_tx, drain) = watch::channel(false);
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            let frontend = frontend.clone();
            let drain = drain.clone();
            tokio::spawn(async move {
                let mut header = [0u8; 8];
                if stream.read_exact(&mut header).await.is_ok() {
                    let _ = frontend.serve_connection(header, stream, None, drain).await;
                }
            });
        }
    });
    addr
}

/// A front end on the gated embedded backend (gate closed).
async fn gated() -> (tempfile::TempDir, Arc<Gated>, SocketAddr) {
    let dir = tempfile::tempdir().unwrap();
    let embedded = gateway_embedded::EmbeddedBackend::open(dir.path()).unwrap();
    let backend = Arc::new(Gated {
        inner: embedded,
        open: watch::channel(false).0,
    });
    let frontend = Amqp1Frontend::new(Amqp1Config::default(), backend.clone());
    let addr = serve(frontend).await;
    (dir, backend, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_is_settled_only_after_the_backend_persisted_it() {
    let (_dir, backend, addr) = gated().await;

    let url = format!("amqp://guest:guest@{addr}");
    let mut connection = Connection::open("settlement", &url[..]).await.unwrap();
    let mut session = Session::begin(&mut connection).await.unwrap();
    let mut sender = Sender::attach(&mut session, "s", "settle-q").await.unwrap();
    let mut sending = Box::pin(sender.send("kept".to_string()));
    assert!(
        tokio::time::timeout(Duration::from_millis(700), &mut sending)
            .await
            .is_err(),
        "the send was settled before the backend confirmed it"
    );
    backend.open.send_replace(true);
    let outcome = tokio::time::timeout(Duration::from_secs(5), sending)
        .await
        .expect("settled once persisted")
        .unwrap();
    assert!(matches!(outcome, Outcome::Accepted(_)), "{outcome:?}");
    connection.close().await.unwrap();
}

fn frame(channel: u16, p: &Performative, payload: &[u8]) -> Vec<u8> {
    let body = serde_amqp::to_vec(p).unwrap();
    let mut out = ((body.len() + payload.len() + 8) as u32)
        .to_be_bytes()
        .to_vec();
    out.extend_from_slice(&[2, 0]);
    out.extend_from_slice(&channel.to_be_bytes());
    out.extend_from_slice(&body);
    out.extend_from_slice(payload);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sending_past_the_credit_detaches_the_link() {
    use fe2o3_amqp::types::definitions::{Handle, LinkError, Role, SenderSettleMode};
    use fe2o3_amqp::types::messaging::{Data, Target};
    use fe2o3_amqp::types::performatives::{Attach, Begin, Open, Transfer};

    let (_dir, _backend, addr) = gated().await;
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"AMQP\x00\x01\x00\x00").await.unwrap();
    let open = Open {
        container_id: "credit".into(),
        hostname: None,
        max_frame_size: 65536.into(),
        channel_max: 1.into(),
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
        incoming_window: 10_000,
        outgoing_window: 10_000,
        handle_max: Handle(1),
        offered_capabilities: None,
        desired_capabilities: None,
        properties: None,
    };
    let attach = Attach {
        name: "past-credit".into(),
        handle: Handle(0),
        role: Role::Sender,
        snd_settle_mode: SenderSettleMode::Settled,
        rcv_settle_mode: Default::default(),
        source: None,
        target: Some(Box::new(
            Target::builder().address("credit-q").build().into(),
        )),
        unsettled: None,
        incomplete_unsettled: false,
        initial_delivery_count: Some(0),
        max_message_size: None,
        offered_capabilities: None,
        desired_capabilities: None,
        properties: None,
    };
    let mut out = frame(0, &Performative::Open(open), &[]);
    out.extend(frame(0, &Performative::Begin(begin), &[]));
    out.extend(frame(0, &Performative::Attach(attach), &[]));
    let message = serde_amqp::to_vec(&Data(vec![1, 2, 3].into())).unwrap();
    // The gateway's credit is 256; none comes back while nothing is persisted.
    for id in 0..300u32 {
        let transfer = Transfer {
            handle: Handle(0),
            delivery_id: Some(id),
            delivery_tag: Some(id.to_be_bytes().to_vec().into()),
            message_format: Some(0),
            settled: Some(true),
            more: false,
            rcv_settle_mode: None,
            state: None,
            resume: false,
            aborted: false,
            batchable: false,
        };
        out.extend(frame(0, &Performative::Transfer(transfer), &message));
    }
    s.write_all(&out).await.unwrap();

    let mut got = Vec::new();
    let detach = tokio::time::timeout(Duration::from_secs(10), async {
        let mut buf = [0u8; 4096];
        loop {
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed before the detach");
            got.extend_from_slice(&buf[..n]);
            let mut rest = got.get(8..).unwrap_or_default();
            while rest.len() >= 8 {
                let size = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
                if rest.len() < size {
                    break;
                }
                if size > 8 {
                    if let Ok(Performative::Detach(d)) = serde_amqp::from_slice(&rest[8..size]) {
                        return d;
                    }
                }
                rest = &rest[size..];
            }
        }
    })
    .await
    .expect("a detach within 10 s");
    assert!(detach.closed);
    assert_eq!(
        detach.error.expect("the detach says why").condition,
        LinkError::TransferLimitExceeded.into()
    );
}
