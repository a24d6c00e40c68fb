//! A client for Pulsar's admin REST API v2 (`/admin/v2/...`, see
//! <https://pulsar.apache.org/admin-rest-api/>), for what the binary protocol lacks: creating,
//! resizing, listing and deleting topics, and reading topic stats (subscriptions, backlog, ledgers).
//!
//! HTTP/1.1, plain or over TLS (the same TLS settings as the binary protocol). Brokers answer
//! topic operations they do not own with a 307 to the owner, so redirects are followed. Pulsar's
//! error bodies are `{"reason": "..."}`; the reason is kept in the error text. The token is read
//! for every request, so a rotated token file is used at once.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::time::Duration;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use std::sync::{Arc, Mutex};

use gateway_core::{BackendError, EntryId, MessageId, Result, TopicInfo, TopicName};
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, LOCATION};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::credentials::TokenSource;
use crate::tls::{TlsOptions, TlsSource};

/// `/readyz` must answer quickly even when the broker hangs.
const READY_TIMEOUT: Duration = Duration::from_secs(5);
/// One hop to the owning broker is normal; more means the cluster is moving the bundle around.
const MAX_REDIRECTS: usize = 3;
/// Partition-count lookups `list_topics` runs at once.
const LIST_CONCURRENCY: usize = 16;

pub struct AdminClient {
    base: String,
    token: Option<TokenSource>,
    http: Mutex<Http>,
    /// Where `http`'s TLS settings come from; the client is built again when they change.
    tls: Option<Arc<TlsSource>>,
    /// Deadline of each call, redirects included.
    timeout: Duration,
}

type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// The admin client's HTTP client and the TLS settings it was built with.
struct Http {
    config: Arc<rustls::ClientConfig>,
    client: HttpClient,
}

impl Http {
    fn new(config: Arc<rustls::ClientConfig>) -> Http {
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config((*config).clone())
            .https_or_http()
            .enable_http1()
            .build();
        Http {
            config,
            client: Client::builder(TokioExecutor::new()).build(connector),
        }
    }
}

/// A broker's answer to one request.
#[derive(Debug)]
struct Reply {
    status: StatusCode,
    body: Bytes,
}

impl AdminClient {
    /// `base_url` like `http://127.0.0.1:8080` or `https://...` (which needs `tls`); `token` is
    /// sent as `Authorization: Bearer <token>`.
    pub fn new(
        base_url: &str,
        token: Option<TokenSource>,
        tls: Option<Arc<TlsSource>>,
        timeout: Duration,
    ) -> Result<AdminClient> {
        let base = base_url.trim_end_matches('/').to_owned();
        let uri: Uri = base
            .parse()
            .map_err(|e| BackendError::InvalidArgument(format!("admin URL {base_url:?}: {e}")))?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => {
                return Err(BackendError::InvalidArgument(format!(
                    "admin URL {base_url:?}: expected http://host:port or https://host:port"
                )))
            }
        };
        if uri.host().is_none() {
            return Err(BackendError::InvalidArgument(format!(
                "admin URL {base_url:?}: no host"
            )));
        }
        let tls = tls.filter(|_| https);
        let config = match &tls {
            Some(tls) => tls.current(),
            None if https => {
                return Err(BackendError::InvalidArgument(format!(
                    "admin URL {base_url:?} needs TLS settings"
                )))
            }
            // Never used for http:// URLs, but the connector wants one.
            None => TlsOptions {
                allow_insecure: true,
                ..Default::default()
            }
            .client_config()?,
        };
        Ok(AdminClient {
            base,
            token,
            http: Mutex::new(Http::new(config)),
            tls,
            timeout,
        })
    }

    /// The HTTP client to send with: built again when the TLS files changed, so that new
    /// connections use the new certificates (pooled ones keep theirs until they close).
    fn http(&self) -> HttpClient {
        let mut http = self.http.lock().expect("admin http lock");
        if let Some(tls) = &self.tls {
            let config = tls.current();
            if !Arc::ptr_eq(&config, &http.config) {
                *http = Http::new(config);
            }
        }
        http.client.clone()
    }

    /// `Ok` when the broker answers an authenticated request; the error says why not. Listing
    /// clusters is cheap and needs no superuser role, unlike `brokers/health`, which also
    /// produces and consumes a message.
    pub async fn readiness(&self) -> Result<()> {
        let url = format!("{}/admin/v2/clusters", self.base);
        let reply = self.send(Method::GET, &url, None, READY_TIMEOUT).await?;
        match reply.status {
            s if s.is_success() => Ok(()),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                Err(BackendError::NotAuthorized(format!(
                    "the Pulsar admin API at {} refused the gateway's credentials ({})",
                    self.base, reply.status
                )))
            }
            status => Err(BackendError::Unavailable(format!(
                "the Pulsar admin API at {} answered {status} {}",
                self.base,
                reply.reason()
            ))),
        }
    }

    /// `readiness`, as a yes or no.
    pub async fn is_ready(&self) -> bool {
        match self.readiness().await {
            Ok(()) => true,
            Err(e) => {
                tracing::debug!(error = %e, "Pulsar admin API not ready");
                false
            }
        }
    }

    /// The `Authorization` header for the current token.
    fn authorization(&self) -> Result<Option<HeaderValue>> {
        let Some(token) = &self.token else {
            return Ok(None);
        };
        let mut value =
            HeaderValue::from_str(&format!("Bearer {}", token.current()?)).map_err(|_| {
                BackendError::InvalidArgument("the Pulsar token is not a valid header value".into())
            })?;
        value.set_sensitive(true);
        Ok(Some(value))
    }

    pub async fn create_partitioned_topic(&self, topic: &TopicName, partitions: u32) -> Result<()> {
        if partitions == 0 {
            return Err(BackendError::InvalidArgument(format!(
                "{topic}: a partitioned topic needs at least one partition"
            )));
        }
        let url = self.topic_url(topic, "/partitions");
        let reply = self.call(Method::PUT, &url, Some(partitions)).await?;
        match reply.status {
            s if s.is_success() => Ok(()),
            StatusCode::CONFLICT => Err(BackendError::TopicAlreadyExists(topic.to_string())),
            _ => Err(reply.error(topic)),
        }
    }

    pub async fn create_non_partitioned_topic(&self, topic: &TopicName) -> Result<()> {
        let reply = self
            .call(Method::PUT, &self.topic_url(topic, ""), None)
            .await?;
        match reply.status {
            s if s.is_success() => Ok(()),
            StatusCode::CONFLICT => Err(BackendError::TopicAlreadyExists(topic.to_string())),
            _ => Err(reply.error(topic)),
        }
    }

    /// Deletes a topic with its data and subscriptions, even while clients are connected.
    pub async fn delete_topic(&self, topic: &TopicName) -> Result<()> {
        // The two kinds have different endpoints, and each refuses the other kind with a 409.
        let suffix = match self.partition_count(topic).await? {
            None => return Err(BackendError::TopicNotFound(topic.to_string())),
            Some(0) => "?force=true",
            Some(_) => "/partitions?force=true",
        };
        let reply = self
            .call(Method::DELETE, &self.topic_url(topic, suffix), None)
            .await?;
        match reply.status {
            s if s.is_success() => Ok(()),
            _ => Err(reply.error(topic)),
        }
    }

    /// Raises the partition count of a partitioned topic.
    pub async fn update_partitions(&self, topic: &TopicName, partitions: u32) -> Result<()> {
        // Pulsar accepts an unchanged count and calls a missing topic "not partitioned" (409);
        // the backend contract wants growth and TopicNotFound.
        match self.partition_count(topic).await? {
            None => return Err(BackendError::TopicNotFound(topic.to_string())),
            Some(0) => {
                return Err(BackendError::InvalidArgument(format!(
                    "{topic} is not partitioned"
                )))
            }
            Some(current) if partitions <= current => {
                return Err(BackendError::InvalidArgument(format!(
                    "{topic} has {current} partitions; the count can only grow"
                )))
            }
            Some(_) => {}
        }
        let url = self.topic_url(topic, "/partitions");
        let reply = self.call(Method::POST, &url, Some(partitions)).await?;
        match reply.status {
            s if s.is_success() => Ok(()),
            StatusCode::CONFLICT | StatusCode::UNPROCESSABLE_ENTITY => Err(
                BackendError::InvalidArgument(format!("{topic}: {}", reply.reason())),
            ),
            _ => Err(reply.error(topic)),
        }
    }

    /// `Some{partitions: N}` for a partitioned topic, `Some{0}` for a non-partitioned topic (or one
    /// partition), `None` when the topic does not exist.
    pub async fn topic_info(&self, topic: &TopicName) -> Result<Option<TopicInfo>> {
        match self.partition_count(topic).await? {
            None => return Ok(None),
            Some(0) => {}
            Some(partitions) => return Ok(Some(TopicInfo { partitions })),
        }
        // Brokers before Pulsar 3.3 also answer 0 for missing topics; stats tells the two apart
        // without auto-creating the topic.
        let reply = self
            .call(Method::GET, &self.topic_url(topic, "/stats"), None)
            .await?;
        match reply.status {
            s if s.is_success() => Ok(Some(TopicInfo { partitions: 0 })),
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(reply.error(topic)),
        }
    }

    /// Partitioned topics once each, then non-partitioned persistent topics, without the
    /// partitions of partitioned topics and without Pulsar's own system topics. A namespace that
    /// does not exist has no topics.
    pub async fn list_topics(
        &self,
        tenant: &str,
        namespace: &str,
    ) -> Result<Vec<(TopicName, TopicInfo)>> {
        let ns = format!(
            "{}/admin/v2/persistent/{}/{}",
            self.base,
            encode(tenant),
            encode(namespace)
        );
        let subject = format!("{tenant}/{namespace}");
        let Some(partitioned) = self.names(&format!("{ns}/partitioned"), &subject).await? else {
            return Ok(Vec::new());
        };
        let all = self.names(&ns, &subject).await?.unwrap_or_default();
        let (partitioned, plain) = split_listing(&partitioned, &all, tenant, namespace);

        let mut out: Vec<(TopicName, TopicInfo)> = futures::stream::iter(partitioned)
            .map(|topic| async move {
                let partitions = self.partition_count(&topic).await?.unwrap_or(0);
                Ok::<_, BackendError>((topic, TopicInfo { partitions }))
            })
            .buffered(LIST_CONCURRENCY)
            // Deleted between the two calls.
            .try_filter(|(_, info)| std::future::ready(info.partitions > 0))
            .try_collect()
            .await?;
        out.extend(plain.into_iter().map(|t| (t, TopicInfo { partitions: 0 })));
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// The durable subscriptions of a topic (of all partitions, for a partitioned topic).
    pub async fn subscriptions(&self, topic: &TopicName) -> Result<Vec<String>> {
        let reply = self
            .call(Method::GET, &self.topic_url(topic, "/subscriptions"), None)
            .await?;
        match reply.status {
            s if s.is_success() => reply.json(topic),
            _ => Err(reply.error(topic)),
        }
    }

    /// Pulsar's `msgBacklog` of one subscription of a topic or partition. Pulsar counts it in
    /// entries, so a batch counts once.
    pub async fn backlog(&self, topic: &TopicName, subscription: &str) -> Result<u64> {
        Ok(self
            .subscription_stats(topic, subscription)
            .await?
            .msg_backlog)
    }

    /// The backlog less what is dispatched to consumers and not acknowledged.
    pub async fn ready(&self, topic: &TopicName, subscription: &str) -> Result<u64> {
        let stats = self.subscription_stats(topic, subscription).await?;
        Ok(stats.msg_backlog.saturating_sub(stats.unacked_messages))
    }

    async fn subscription_stats(
        &self,
        topic: &TopicName,
        subscription: &str,
    ) -> Result<SubscriptionStats> {
        let reply = self
            .call(Method::GET, &self.topic_url(topic, "/stats"), None)
            .await?;
        if !reply.status.is_success() {
            return Err(reply.error(topic));
        }
        let mut stats: TopicStats = reply.json(topic)?;
        stats
            .subscriptions
            .remove(subscription)
            .ok_or_else(|| BackendError::SubscriptionNotFound(subscription.to_owned()))
    }

    /// Starts Pulsar's compaction of a topic (the latest message per key is kept; a null value
    /// removes its key). Already running counts as started.
    pub async fn compact(&self, topic: &TopicName) -> Result<()> {
        let reply = self
            .call(Method::PUT, &self.topic_url(topic, "/compaction"), None)
            .await?;
        match reply.status {
            s if s.is_success() => Ok(()),
            StatusCode::CONFLICT => Ok(()),
            _ => Err(reply.error(topic)),
        }
    }

    /// Whether the last compaction of a topic finished ("SUCCESS"), is running, or failed.
    pub async fn compaction_status(&self, topic: &TopicName) -> Result<String> {
        #[derive(Deserialize)]
        struct Status {
            status: String,
        }
        let reply = self
            .call(Method::GET, &self.topic_url(topic, "/compaction"), None)
            .await?;
        if !reply.status.is_success() {
            return Err(reply.error(topic));
        }
        Ok(reply.json::<Status>(topic)?.status)
    }

    /// The name of the topic's exclusive producer, if one is connected.
    pub async fn exclusive_producer(&self, topic: &TopicName) -> Result<Option<String>> {
        Ok(self
            .publishers(topic)
            .await?
            .into_iter()
            .find(|p| p.access_mode.as_deref() == Some("Exclusive"))
            .and_then(|p| p.producer_name))
    }

    /// The names of the producers connected to a topic (none when it does not exist).
    pub async fn producer_names(&self, topic: &TopicName) -> Result<Vec<String>> {
        Ok(self
            .publishers(topic)
            .await?
            .into_iter()
            .filter_map(|p| p.producer_name)
            .collect())
    }

    async fn publishers(&self, topic: &TopicName) -> Result<Vec<PublisherStats>> {
        let reply = self
            .call(Method::GET, &self.topic_url(topic, "/stats"), None)
            .await?;
        match reply.status {
            StatusCode::NOT_FOUND => return Ok(Vec::new()),
            s if !s.is_success() => return Err(reply.error(topic)),
            _ => {}
        }
        let stats: TopicStats = reply.json(topic)?;
        Ok(stats.publishers)
    }

    /// Deletes a durable subscription; refused while consumers are connected. A missing topic is
    /// reported as a missing subscription, since Pulsar answers both with 404.
    pub async fn delete_subscription(&self, topic: &TopicName, subscription: &str) -> Result<()> {
        let url = self.topic_url(topic, &format!("/subscription/{}", encode(subscription)));
        let reply = self.call(Method::DELETE, &url, None).await?;
        match reply.status {
            s if s.is_success() => Ok(()),
            StatusCode::PRECONDITION_FAILED => {
                Err(BackendError::ConsumerBusy(subscription.to_owned()))
            }
            StatusCode::NOT_FOUND => {
                Err(BackendError::SubscriptionNotFound(subscription.to_owned()))
            }
            _ => Err(reply.error(topic)),
        }
    }

    /// Moves a subscription so that `next` is its first unacknowledged message, creating it when
    /// missing (REST `resetcursor`, which needs no consumer and may move backwards). Pulsar resets
    /// to whole entries: a position inside a batch keeps that entry in the backlog, except past
    /// the last message, which acknowledges everything.
    pub async fn position_subscription(
        &self,
        topic: &TopicName,
        subscription: &str,
        next: MessageId,
    ) -> Result<()> {
        let last = self.last_message_id(topic).await?;
        // Past the last message, the position is the entry after the last one (Pulsar accepts
        // it; `isExcluded` on the last entry is not honoured by resetcursor).
        let (ledger, entry) = match last {
            Some(last) if next > last => (last.ledger, last.entry + 1),
            _ => (next.ledger, next.entry),
        };
        let body = format!(r#"{{"ledgerId":{ledger},"entryId":{entry}}}"#);
        let sub = format!("/subscription/{}", encode(subscription));
        let reset = self.topic_url(topic, &format!("{sub}/resetcursor"));
        for attempt in 0..2 {
            let reply = self
                .send(
                    Method::POST,
                    &reset,
                    Some(Bytes::from(body.clone())),
                    self.timeout,
                )
                .await?;
            match reply.status {
                s if s.is_success() => return Ok(()),
                StatusCode::NOT_FOUND if attempt == 0 => {
                    // A new subscription starts at the end; the reset then moves it.
                    let latest = Bytes::from_static(
                        br#"{"ledgerId":9223372036854775807,"entryId":9223372036854775807}"#,
                    );
                    let create = self.topic_url(topic, &sub);
                    let reply = self
                        .send(Method::PUT, &create, Some(latest), self.timeout)
                        .await?;
                    if !reply.status.is_success() && reply.status != StatusCode::CONFLICT {
                        return Err(reply.error(topic));
                    }
                }
                _ => return Err(reply.error(topic)),
            }
        }
        Err(BackendError::SubscriptionNotFound(subscription.to_owned()))
    }

    /// The id of the last message of a topic or partition, `None` when it is empty.
    pub async fn last_message_id(&self, topic: &TopicName) -> Result<Option<MessageId>> {
        let reply = self
            .call(Method::GET, &self.topic_url(topic, "/lastMessageId"), None)
            .await?;
        if !reply.status.is_success() {
            return Err(reply.error(topic));
        }
        Ok(reply.json::<LastMessageId>(topic)?.to_message_id())
    }

    /// The first entry still stored in a topic or partition, `None` when it holds no entries.
    pub async fn first_entry(&self, topic: &TopicName) -> Result<Option<EntryId>> {
        let reply = self
            .call(Method::GET, &self.topic_url(topic, "/internalStats"), None)
            .await?;
        if !reply.status.is_success() {
            return Err(reply.error(topic));
        }
        Ok(reply.json::<InternalStats>(topic)?.first_entry())
    }

    /// What a subscription's cursor acknowledged (from the topic's internal stats).
    pub async fn acknowledged(
        &self,
        topic: &TopicName,
        subscription: &str,
    ) -> Result<gateway_core::backend::Acknowledged> {
        let reply = self
            .call(Method::GET, &self.topic_url(topic, "/internalStats"), None)
            .await?;
        if !reply.status.is_success() {
            return Err(reply.error(topic));
        }
        let mut stats: InternalStats = reply.json(topic)?;
        let cursor = stats
            .cursors
            .remove(subscription)
            .ok_or_else(|| BackendError::SubscriptionNotFound(subscription.to_owned()))?;
        cursor.acknowledged().ok_or_else(|| {
            BackendError::Storage(format!(
                "unexpected cursor of '{subscription}' in the Pulsar admin API: {cursor:?}"
            ))
        })
    }

    /// The ledgers of a topic or partition, oldest first: id and entry count (the open one's
    /// count included).
    pub async fn ledgers(&self, topic: &TopicName) -> Result<Vec<(u64, u64)>> {
        let reply = self
            .call(Method::GET, &self.topic_url(topic, "/internalStats"), None)
            .await?;
        if !reply.status.is_success() {
            return Err(reply.error(topic));
        }
        Ok(reply.json::<InternalStats>(topic)?.ledgers())
    }

    /// The first entry of a topic or partition published at or after `publish_time` (ms), `None`
    /// if there is none.
    pub async fn entry_by_publish_time(
        &self,
        topic: &TopicName,
        publish_time: u64,
    ) -> Result<Option<EntryId>> {
        let url = self.topic_url(topic, &format!("/messageid/{publish_time}"));
        let reply = self.call(Method::GET, &url, None).await?;
        if !reply.status.is_success() {
            return Err(reply.error(topic));
        }
        let Some(found) = reply.json::<LastMessageId>(topic)?.to_message_id() else {
            return Ok(None);
        };
        // When no entry is that recent, Pulsar answers the position after the last entry (or
        // entry 0 of the current ledger), which holds nothing yet.
        let last = self.last_message_id(topic).await?;
        Ok(last
            .filter(|last| found.entry_id() <= last.entry_id())
            .map(|_| found.entry_id()))
    }

    /// The partition count from the topic's metadata: 0 for a non-partitioned topic, `None` for a
    /// missing one (before Pulsar 3.3, 0 for a missing one too).
    async fn partition_count(&self, topic: &TopicName) -> Result<Option<u32>> {
        let reply = self
            .call(Method::GET, &self.topic_url(topic, "/partitions"), None)
            .await?;
        match reply.status {
            s if s.is_success() => Ok(Some(reply.json::<PartitionedMetadata>(topic)?.partitions)),
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(reply.error(topic)),
        }
    }

    /// A JSON list of topic names, or `None` when the namespace does not exist.
    async fn names(&self, url: &str, subject: &str) -> Result<Option<Vec<String>>> {
        let reply = self.call(Method::GET, url, None).await?;
        match reply.status {
            s if s.is_success() => reply.json(subject).map(Some),
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(reply.error(subject)),
        }
    }

    fn topic_url(&self, topic: &TopicName, suffix: &str) -> String {
        topic_url(&self.base, topic, suffix)
    }

    async fn call(&self, method: Method, url: &str, body: Option<u32>) -> Result<Reply> {
        let body = body.map(|n| Bytes::from(n.to_string()));
        self.send(method, url, body, self.timeout).await
    }

    async fn call_json(
        &self,
        method: Method,
        url: &str,
        body: &impl serde::Serialize,
    ) -> Result<Reply> {
        let body = serde_json::to_vec(body)
            .map_err(|e| BackendError::InvalidArgument(format!("{method} {url}: {e}")))?;
        self.send(method, url, Some(Bytes::from(body)), self.timeout)
            .await
    }

    /// One request, following redirects, under one timeout for the whole exchange.
    async fn send(
        &self,
        method: Method,
        url: &str,
        body: Option<Bytes>,
        timeout: Duration,
    ) -> Result<Reply> {
        let auth = self.authorization()?;
        let http = self.http();
        let exchange = async {
            let mut url = url.to_owned();
            for _ in 0..=MAX_REDIRECTS {
                let mut request = Request::builder()
                    .method(method.clone())
                    .uri(&url)
                    .header(ACCEPT, "application/json");
                if let Some(auth) = &auth {
                    request = request.header(AUTHORIZATION, auth.clone());
                }
                if body.is_some() {
                    request = request.header(CONTENT_TYPE, "application/json");
                }
                let request = request
                    .body(Full::new(body.clone().unwrap_or_default()))
                    .map_err(|e| BackendError::InvalidArgument(format!("{method} {url}: {e}")))?;
                let response = http.request(request).await.map_err(|e| {
                    BackendError::Unavailable(format!(
                        "Pulsar admin API {method} {url}: {}",
                        causes(&e)
                    ))
                })?;
                let status = response.status();
                let location = response.headers().get(LOCATION).cloned();
                let body = response.into_body().collect().await.map_err(|e| {
                    BackendError::Unavailable(format!("Pulsar admin API {method} {url}: {e}"))
                })?;
                match (status, location) {
                    (StatusCode::TEMPORARY_REDIRECT | StatusCode::PERMANENT_REDIRECT, Some(to)) => {
                        url = to
                            .to_str()
                            .map_err(|_| {
                                BackendError::Unavailable(format!("{url}: bad redirect location"))
                            })?
                            .to_owned();
                    }
                    _ => {
                        return Ok(Reply {
                            status,
                            body: body.to_bytes(),
                        })
                    }
                }
            }
            Err(BackendError::Unavailable(format!(
                "Pulsar admin API {method} {url}: more than {MAX_REDIRECTS} redirects"
            )))
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .unwrap_or_else(|_| {
                Err(BackendError::Timeout(format!(
                    "Pulsar admin API {method} {url}: no answer within {timeout:?}"
                )))
            })
    }
}

impl Reply {
    /// Pulsar's `{"reason": ...}`, else the start of the body.
    fn reason(&self) -> String {
        /// Pulsar's own `{"reason"}`, or Jetty's `{"message", "servlet", ...}` (a 401).
        #[derive(Deserialize)]
        struct Failure {
            #[serde(alias = "message")]
            reason: String,
        }
        match serde_json::from_slice::<Failure>(&self.body) {
            Ok(f) => f.reason,
            // Jetty's own error pages (401 among them) are HTML.
            Err(_) if self.body.starts_with(b"<") => String::new(),
            Err(_) => String::from_utf8_lossy(&self.body)
                .trim()
                .chars()
                .take(200)
                .collect(),
        }
    }

    fn json<T: DeserializeOwned>(&self, subject: impl std::fmt::Display) -> Result<T> {
        serde_json::from_slice(&self.body).map_err(|e| {
            BackendError::Storage(format!(
                "unexpected answer from the Pulsar admin API for {subject}: {e}: {}",
                String::from_utf8_lossy(&self.body)
                    .chars()
                    .take(200)
                    .collect::<String>()
            ))
        })
    }

    /// The error for a status the caller has no special meaning for.
    fn error(&self, subject: impl std::fmt::Display) -> BackendError {
        let (status, reason) = (self.status, self.reason());
        // "404 Not Found: Topic ... not found", or only the status when there is no reason.
        let detail = format!("{status}: {reason}");
        let detail = detail.trim_end_matches([':', ' ']);
        match status.as_u16() {
            401 | 403 => {
                BackendError::NotAuthorized(format!("the Pulsar admin API for {subject}: {detail}"))
            }
            404 => BackendError::TopicNotFound(subject.to_string()),
            409 => BackendError::TopicAlreadyExists(subject.to_string()),
            400 | 405 | 406 | 412 | 422 => {
                BackendError::InvalidArgument(format!("{subject}: {detail}"))
            }
            _ => BackendError::Unavailable(format!("Pulsar admin API for {subject}: {detail}")),
        }
    }
}

/// An error with its sources: hyper's own text ("client error (Connect)") hides the cause.
fn causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let _ = write!(text, ": {cause}");
        source = cause.source();
    }
    text
}

fn topic_url(base: &str, topic: &TopicName, suffix: &str) -> String {
    let domain = if topic.persistent {
        "persistent"
    } else {
        "non-persistent"
    };
    format!(
        "{base}/admin/v2/{domain}/{}/{}/{}{suffix}",
        encode(&topic.tenant),
        encode(&topic.namespace),
        encode(&topic.local)
    )
}

/// Percent-encodes one path segment (RFC 3986: everything but the unreserved characters).
fn encode(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// Splits a namespace's listings into partitioned topics and the non-partitioned topics that are
/// neither partitions of those nor Pulsar system topics.
fn split_listing(
    partitioned: &[String],
    all: &[String],
    tenant: &str,
    namespace: &str,
) -> (Vec<TopicName>, Vec<TopicName>) {
    let parse = |name: &String| TopicName::parse(name, tenant, namespace).filter(|t| t.persistent);
    let partitioned: Vec<TopicName> = partitioned
        .iter()
        .filter_map(parse)
        .filter(|t| !is_system_topic(t))
        .collect();
    let parents: HashSet<&TopicName> = partitioned.iter().collect();
    let plain = all
        .iter()
        .filter_map(parse)
        .filter(|t| !is_system_topic(t))
        .filter(|t| {
            !t.partition_of()
                .is_some_and(|(base, _)| parents.contains(&base))
        })
        .collect::<HashSet<_>>()
        .into_iter()
        .filter(|t| !parents.contains(t))
        .collect();
    (partitioned, plain)
}

/// Topics Pulsar creates for itself (topic policies, transactions). Other `__` names may be the
/// gateway's own, so only Pulsar's names are hidden.
fn is_system_topic(topic: &TopicName) -> bool {
    let local = match topic.partition_of() {
        Some((base, _)) => base.local,
        None => topic.local.clone(),
    };
    local == "__change_events"
        || local.starts_with("__transaction_buffer_snapshot")
        || local.starts_with("__transaction_log_")
        || local.ends_with("__transaction_pending_ack")
}

mod policies;
mod stats;
use stats::*;

#[cfg(test)]
mod tests;
