//! Test doubles: a backend whose readiness the test controls, and a minimal HTTP client.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use gateway_core::{
    Backend, BackendError, Consumer, EntryId, EntryToSend, InitialPosition, MessageId, Reader,
    Result, SendReceipt, SubscriptionType, TopicInfo, TopicName,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A backend that only answers readiness; everything else is "unavailable".
#[derive(Default)]
pub struct FakeBackend {
    pub ready: AtomicBool,
}

impl FakeBackend {
    pub fn new(ready: bool) -> Arc<FakeBackend> {
        Arc::new(FakeBackend {
            ready: AtomicBool::new(ready),
        })
    }
}

fn unavailable<T>() -> Result<T> {
    Err(BackendError::Unavailable("fake backend".into()))
}

#[async_trait]
impl Backend for FakeBackend {
    fn kind(&self) -> &'static str {
        "fake"
    }
    async fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }
    async fn create_topic(&self, _: &TopicName, _: u32) -> Result<()> {
        unavailable()
    }
    async fn delete_topic(&self, _: &TopicName) -> Result<()> {
        unavailable()
    }
    async fn update_partitions(&self, _: &TopicName, _: u32) -> Result<()> {
        unavailable()
    }
    async fn topic_info(&self, _: &TopicName) -> Result<Option<TopicInfo>> {
        unavailable()
    }
    async fn list_topics(&self, _: &str, _: &str) -> Result<Vec<(TopicName, TopicInfo)>> {
        unavailable()
    }
    async fn send(&self, _: &TopicName, _: Vec<EntryToSend>) -> Result<Vec<SendReceipt>> {
        unavailable()
    }
    async fn last_message_id(&self, _: &TopicName) -> Result<Option<MessageId>> {
        unavailable()
    }
    async fn first_entry_id(&self, _: &TopicName) -> Result<Option<EntryId>> {
        unavailable()
    }
    async fn find_entry_by_publish_time(&self, _: &TopicName, _: u64) -> Result<Option<EntryId>> {
        unavailable()
    }
    async fn open_reader(&self, _: &TopicName, _: EntryId) -> Result<Box<dyn Reader>> {
        unavailable()
    }
    async fn subscribe(
        &self,
        _: &TopicName,
        _: &str,
        _: SubscriptionType,
        _: InitialPosition,
    ) -> Result<Box<dyn Consumer>> {
        unavailable()
    }
    async fn unsubscribe(&self, _: &TopicName, _: &str) -> Result<()> {
        unavailable()
    }
    async fn subscriptions(&self, _: &TopicName) -> Result<Vec<String>> {
        unavailable()
    }
    async fn backlog(&self, _: &TopicName, _: &str) -> Result<u64> {
        unavailable()
    }
}

/// `GET path` over a fresh connection; returns the status code and body.
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    http_request(addr, "GET", path).await
}

pub async fn http_request(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await.expect("connect to admin");
        let request =
            format!("{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
        stream
            .write_all(request.as_bytes())
            .await
            .expect("send request");
        let mut response = String::new();
        stream
            .read_to_string(&mut response)
            .await
            .expect("read response");
        response
    };
    let response = tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .expect("admin answers in time");
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {response:?}"));
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default();
    (status, body)
}
