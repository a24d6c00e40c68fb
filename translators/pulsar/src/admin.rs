//! A client for Pulsar's admin REST API v2 (`/admin/v2/...`, see
//! <https://pulsar.apache.org/admin-rest-api/>), for what the binary protocol lacks: creating,
//! resizing, listing and deleting topics, and reading topic stats (subscriptions, backlog, ledgers).
//!
//! HTTP/1.1, plain or over TLS (the same TLS settings as the binary protocol). Brokers answer
//! topic operations they do not own with a 307 to the owner, so redirects are followed. Pulsar's
//! error bodies are `{"reason": "..."}`; the reason is kept in the error text. The token is read
//! for every request, so a rotated token file is used at once.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::time::Duration;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use std::sync::Arc;

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
use crate::tls::TlsOptions;

/// `/readyz` must answer quickly even when the broker hangs.
const READY_TIMEOUT: Duration = Duration::from_secs(5);
/// One hop to the owning broker is normal; more means the cluster is moving the bundle around.
const MAX_REDIRECTS: usize = 3;
/// Partition-count lookups `list_topics` runs at once.
const LIST_CONCURRENCY: usize = 16;

pub struct AdminClient {
    base: String,
    token: Option<TokenSource>,
    http: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    /// Deadline of each call, redirects included.
    timeout: Duration,
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
        tls: Option<Arc<rustls::ClientConfig>>,
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
        let tls = match tls {
            Some(tls) => (*tls).clone(),
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
            .client_config()
            .map(|c| (*c).clone())?,
        };
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .build();
        let http = Client::builder(TokioExecutor::new()).build(connector);
        Ok(AdminClient {
            base,
            token,
            http,
            timeout,
        })
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

    /// One request, following redirects, under one timeout for the whole exchange.
    async fn send(
        &self,
        method: Method,
        url: &str,
        body: Option<Bytes>,
        timeout: Duration,
    ) -> Result<Reply> {
        let auth = self.authorization()?;
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
                let response = self.http.request(request).await.map_err(|e| {
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

#[derive(Deserialize)]
struct PartitionedMetadata {
    partitions: u32,
}

#[derive(Deserialize)]
struct TopicStats {
    #[serde(default)]
    subscriptions: HashMap<String, SubscriptionStats>,
    #[serde(default)]
    publishers: Vec<PublisherStats>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PublisherStats {
    #[serde(default)]
    producer_name: Option<String>,
    #[serde(default)]
    access_mode: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SubscriptionStats {
    msg_backlog: u64,
    /// Messages dispatched to the subscription's consumers and not acknowledged.
    #[serde(default)]
    unacked_messages: u64,
}

/// Pulsar's `MessageIdImpl`, or `BatchMessageIdImpl` when the last entry is a batch.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LastMessageId {
    ledger_id: i64,
    entry_id: i64,
    batch_index: Option<i32>,
}

impl LastMessageId {
    fn to_message_id(&self) -> Option<MessageId> {
        // An empty topic answers its current ledger with entry -1 (or -1:-1, "earliest").
        if self.ledger_id < 0 || self.entry_id < 0 {
            return None;
        }
        Some(MessageId {
            ledger: self.ledger_id as u64,
            entry: self.entry_id as u64,
            // Pulsar's -1 (not a batch) is 0 in the gateway's ids.
            batch_index: self.batch_index.unwrap_or(0).max(0) as u32,
        })
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct InternalStats {
    #[serde(default)]
    ledgers: Vec<LedgerStats>,
    #[serde(default)]
    current_ledger_entries: u64,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LedgerStats {
    ledger_id: u64,
    #[serde(default)]
    entries: u64,
}

impl InternalStats {
    /// Each ledger's entry count: the ledger being written reports 0 entries until it is
    /// closed; its count is `currentLedgerEntries`.
    fn entries(&self, index: usize) -> u64 {
        let l = &self.ledgers[index];
        if index + 1 == self.ledgers.len() {
            l.entries.max(self.current_ledger_entries)
        } else {
            l.entries
        }
    }

    fn ledgers(&self) -> Vec<(u64, u64)> {
        (0..self.ledgers.len())
            .map(|i| (self.ledgers[i].ledger_id, self.entries(i)))
            .collect()
    }

    fn first_entry(&self) -> Option<EntryId> {
        self.ledgers()
            .into_iter()
            .find(|(_, entries)| *entries > 0)
            .map(|(ledger, _)| EntryId { ledger, entry: 0 })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(local: &str) -> TopicName {
        TopicName::new("public", "default", local)
    }

    fn id(ledger: u64, entry: u64, batch_index: u32) -> MessageId {
        MessageId {
            ledger,
            entry,
            batch_index,
        }
    }

    fn entry(ledger: u64, entry: u64) -> EntryId {
        EntryId { ledger, entry }
    }

    #[test]
    fn urls_encode_each_segment() {
        let t = TopicName::parse("persistent://acme/sales/or:ders=1", "x", "y").unwrap();
        assert_eq!(
            topic_url("http://h:8080", &t, "/partitions"),
            "http://h:8080/admin/v2/persistent/acme/sales/or%3Aders%3D1/partitions"
        );
        let t = TopicName::parse("non-persistent://a/b/c", "x", "y").unwrap();
        assert_eq!(
            topic_url("http://h", &t, ""),
            "http://h/admin/v2/non-persistent/a/b/c"
        );
        assert_eq!(encode("my sub/1"), "my%20sub%2F1");
    }

    const TIMEOUT: Duration = Duration::from_secs(30);

    /// A client as the tests make them: TLS (trusting `PULSAR_TLS_TRUST_CERTS`) for https URLs.
    fn client(base: &str, token: Option<&str>) -> Result<AdminClient> {
        let tls = base.starts_with("https://").then(|| {
            TlsOptions {
                trust_certs_file: std::env::var_os("PULSAR_TLS_TRUST_CERTS").map(Into::into),
                ..Default::default()
            }
            .client_config()
            .expect("TLS settings")
        });
        AdminClient::new(base, token.map(TokenSource::literal), tls, TIMEOUT)
    }

    #[tokio::test]
    async fn new_accepts_only_http_and_https_urls() {
        assert!(client("http://127.0.0.1:8080/", None).is_ok());
        assert!(AdminClient::new("https://127.0.0.1:8443", None, None, TIMEOUT).is_err());
        assert!(client("127.0.0.1:8080", None).is_err());
        assert!(client("ftp://h:1", None).is_err());
        let bad_token = client("http://h:1", Some("bad\ntoken")).unwrap();
        assert!(matches!(
            bad_token.topic_info(&topic("t")).await,
            Err(BackendError::InvalidArgument(_))
        ));
    }

    /// Sample answers are the shapes Pulsar 4.0.7 gave for `lastMessageId` and `messageid/{t}`.
    #[test]
    fn message_ids_map_empty_plain_and_batch_entries() {
        let parse = |s: &str| {
            serde_json::from_str::<LastMessageId>(s)
                .unwrap()
                .to_message_id()
        };
        let empty =
            r#"{"ledgerId":14,"entryId":-1,"partitionIndex":-1,"batchIndex":-1,"batchSize":0}"#;
        assert_eq!(parse(empty), None);
        assert_eq!(
            parse(r#"{"ledgerId":-1,"entryId":-1,"partitionIndex":-1}"#),
            None
        );
        let plain =
            r#"{"ledgerId":14,"entryId":3,"partitionIndex":-1,"batchIndex":-1,"batchSize":0}"#;
        assert_eq!(parse(plain), Some(id(14, 3, 0)));
        // The last entry is a batch of 5: Pulsar names its last message.
        let batch = r#"{"ledgerId":33,"entryId":0,"partitionIndex":-1,"batchIndex":4,"batchSize":0,
            "outstandingAcksInSameBatch":0,"originalBatchSize":0}"#;
        assert_eq!(parse(batch), Some(id(33, 0, 4)));
        assert_eq!(parse(r#"{"ledgerId":12,"entryId":4}"#), Some(id(12, 4, 0)));
    }

    #[test]
    fn first_entry_skips_empty_ledgers_and_counts_the_open_one() {
        let first = |s: &str| {
            serde_json::from_str::<InternalStats>(s)
                .unwrap()
                .first_entry()
        };
        assert_eq!(first(r#"{"ledgers":[],"currentLedgerEntries":0}"#), None);
        let empty = r#"{"entriesAddedCounter":0,"numberOfEntries":0,"currentLedgerEntries":0,
            "lastConfirmedEntry":"14:-1","ledgers":[{"ledgerId":14,"entries":0,"size":0}]}"#;
        assert_eq!(first(empty), None);
        // The ledger being written lists 0 entries; currentLedgerEntries has the real count.
        let open = r#"{"numberOfEntries":4,"currentLedgerEntries":4,"lastConfirmedEntry":"14:3",
            "ledgers":[{"ledgerId":14,"entries":0,"size":0,"offloaded":false}]}"#;
        assert_eq!(first(open), Some(entry(14, 0)));
        let rolled = r#"{"numberOfEntries":5,"currentLedgerEntries":1,"lastConfirmedEntry":"33:0",
            "ledgers":[{"ledgerId":9,"entries":0},{"ledgerId":14,"entries":4},
                       {"ledgerId":33,"entries":0}]}"#;
        assert_eq!(first(rolled), Some(entry(14, 0)));
    }

    #[test]
    fn backlog_comes_from_subscription_stats() {
        let stats: TopicStats = serde_json::from_str(
            r#"{"msgRateIn":0.0,"publishers":[],
                "subscriptions":{"s1":{"msgBacklog":5,"backlogSize":259,"type":"None","consumers":[]}}}"#,
        )
        .unwrap();
        assert_eq!(stats.subscriptions["s1"].msg_backlog, 5);
    }

    #[test]
    fn listing_hides_partitions_and_system_topics() {
        let names = |v: &[&str]| -> Vec<String> {
            v.iter()
                .map(|x| format!("persistent://public/default/{x}"))
                .collect()
        };
        let (partitioned, plain) = split_listing(
            &names(&["orders", "__change_events"]),
            &names(&[
                "orders-partition-0",
                "orders-partition-1",
                "plain",
                "lonely-partition-0",
                "__change_events-partition-0",
                "__transaction_buffer_snapshot",
                "plain-sub__transaction_pending_ack",
                "__gateway_offsets",
            ]),
            "public",
            "default",
        );
        assert_eq!(partitioned, [topic("orders")]);
        let mut plain: Vec<String> = plain.into_iter().map(|t| t.local).collect();
        plain.sort();
        assert_eq!(plain, ["__gateway_offsets", "lonely-partition-0", "plain"]);
    }

    #[test]
    fn statuses_map_to_backend_errors() {
        let reply = |status: u16, body: &str| Reply {
            status: StatusCode::from_u16(status).unwrap(),
            body: Bytes::from(body.to_owned()),
        };
        let t = topic("t");
        // Jetty answers 401 with an HTML page, which is left out of the message.
        let page =
            "<html>\n<head>\n<title>Error 401 Authentication required</title>\n</head></html>";
        let e = reply(401, page).error(&t);
        assert_eq!(
            e.to_string(),
            "not authorized: the Pulsar admin API for \
             persistent://public/default/t: 401 Unauthorized"
        );
        // Over TLS it answers with JSON of its own; its message is kept.
        let json = r#"{"servlet":"jersey","message":"Authentication required","status":"401"}"#;
        assert_eq!(
            reply(401, json).error(&t).to_string(),
            "not authorized: the Pulsar admin API for \
             persistent://public/default/t: 401 Unauthorized: Authentication required"
        );
        let e = reply(403, "").error(&t);
        assert!(matches!(&e, BackendError::NotAuthorized(m) if m.contains("403")));
        assert!(matches!(
            reply(404, "").error(&t),
            BackendError::TopicNotFound(_)
        ));
        assert!(matches!(
            reply(409, "").error(&t),
            BackendError::TopicAlreadyExists(_)
        ));
        assert!(matches!(
            reply(412, "").error(&t),
            BackendError::InvalidArgument(_)
        ));
        let e = reply(503, "busy").error(&t);
        assert!(matches!(&e, BackendError::Unavailable(m) if m.contains("busy")));
        let bad: Result<PartitionedMetadata> = reply(200, "<html>").json(&t);
        assert!(matches!(bad, Err(BackendError::Storage(_))));
    }

    /// A stand-in broker that records each request and redirects `/redirect/...` to `/...`.
    mod fake {
        use super::*;
        use hyper::body::Incoming;
        use hyper::server::conn::http1;
        use hyper::service::service_fn;
        use hyper::Response;
        use hyper_util::rt::TokioIo;
        use std::sync::{Arc, Mutex};

        pub type Seen = Arc<Mutex<Vec<String>>>;
        type Answer = fn(&Method, &str) -> (u16, &'static str);

        /// Serves `answer(method, path)` and records "METHOD path authorization body".
        pub async fn serve(answer: Answer) -> (String, Seen) {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let base = format!("http://{}", listener.local_addr().unwrap());
            let seen = Seen::default();
            let (seen2, base2) = (seen.clone(), base.clone());
            tokio::spawn(async move {
                loop {
                    let (stream, _) = listener.accept().await.unwrap();
                    let (seen, base) = (seen2.clone(), base2.clone());
                    let service =
                        service_fn(move |req| handle(req, answer, seen.clone(), base.clone()));
                    tokio::spawn(
                        http1::Builder::new().serve_connection(TokioIo::new(stream), service),
                    );
                }
            });
            (base, seen)
        }

        async fn handle(
            req: Request<Incoming>,
            answer: Answer,
            seen: Seen,
            base: String,
        ) -> std::result::Result<Response<Full<Bytes>>, std::convert::Infallible> {
            let (method, path) = (req.method().clone(), req.uri().to_string());
            let auth = req
                .headers()
                .get(AUTHORIZATION)
                .map(|v| v.to_str().unwrap().to_owned());
            let body = req.into_body().collect().await.unwrap().to_bytes();
            seen.lock().unwrap().push(format!(
                "{method} {path} {} {}",
                auth.unwrap_or_default(),
                String::from_utf8_lossy(&body)
            ));
            let mut response = Response::builder();
            let (status, text) = match path.strip_prefix("/redirect") {
                Some(rest) => {
                    response = response.header(LOCATION, format!("{base}{rest}"));
                    (307, "")
                }
                None => answer(&method, &path),
            };
            Ok(response
                .status(status)
                .body(Full::new(Bytes::from_static(text.as_bytes())))
                .unwrap())
        }
    }

    #[tokio::test]
    async fn requests_carry_token_and_body_and_follow_redirects() {
        const T: &str = "/admin/v2/persistent/public/default/t/partitions";
        let (base, seen) = fake::serve(|method, path| match (method.as_str(), path) {
            ("PUT", "/admin/v2/persistent/public/default/exists/partitions") => {
                (409, r#"{"reason":"This topic already exists"}"#)
            }
            ("PUT", _) => (204, ""),
            ("GET", T) => (200, r#"{"partitions":3,"deleted":false}"#),
            ("GET", "/admin/v2/clusters") => (401, ""),
            _ => (500, "unexpected"),
        })
        .await;
        let admin = client(&base, Some("tok")).unwrap();
        admin
            .create_partitioned_topic(&topic("t"), 3)
            .await
            .unwrap();
        let exists = admin.create_partitioned_topic(&topic("exists"), 1).await;
        assert!(matches!(exists, Err(BackendError::TopicAlreadyExists(_))));
        assert!(!admin.is_ready().await);
        let seen_now = |from: usize| seen.lock().unwrap()[from..].to_vec();
        assert_eq!(
            seen_now(0),
            [
                format!("PUT {T} Bearer tok 3"),
                "PUT /admin/v2/persistent/public/default/exists/partitions Bearer tok 1".into(),
                "GET /admin/v2/clusters Bearer tok ".into(),
            ]
        );

        // A redirect to the owning broker is followed with the same method, token and body.
        let redirected = AdminClient {
            base: format!("{base}/redirect"),
            ..admin
        };
        let info = redirected.topic_info(&topic("t")).await.unwrap();
        assert_eq!(info, Some(TopicInfo { partitions: 3 }));
        assert!(redirected.update_partitions(&topic("t"), 4).await.is_err());
        assert_eq!(
            seen_now(3),
            [
                format!("GET /redirect{T} Bearer tok "),
                format!("GET {T} Bearer tok "),
                format!("GET /redirect{T} Bearer tok "),
                format!("GET {T} Bearer tok "),
                format!("POST /redirect{T} Bearer tok 4"),
                format!("POST {T} Bearer tok 4"),
            ]
        );
    }

    #[tokio::test]
    async fn unreachable_broker_is_unavailable() {
        // Bind and drop to find a port nothing listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let admin = client(&format!("http://127.0.0.1:{port}"), None).unwrap();
        assert!(!admin.is_ready().await);
        let info = admin.topic_info(&topic("t")).await;
        assert!(
            matches!(&info, Err(BackendError::Unavailable(m)) if m.contains("onnection refused")),
            "{info:?}"
        );
    }

    /// INTEGRATION TESTS against a real Pulsar, ignored by a plain `cargo test`: run them with
    /// `-- --include-ignored` and `PULSAR_ADMIN_URL` set (for example after
    /// `eval "$(compat-suites/pulsar/start)"`; `PULSAR_ADMIN_TOKEN` too if it needs auth). Without
    /// the variable they fail. They make uniquely named topics in public/default and delete them.
    mod live {
        use super::*;
        use std::time::{SystemTime, UNIX_EPOCH};

        fn admin() -> AdminClient {
            let url = std::env::var("PULSAR_ADMIN_URL")
                .expect("PULSAR_ADMIN_URL names the Pulsar to test (compat-suites/pulsar/start)");
            let token = std::env::var("PULSAR_ADMIN_TOKEN").ok();
            client(&url, token.as_deref()).expect("PULSAR_ADMIN_URL")
        }

        fn now_millis() -> u64 {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_millis() as u64
        }

        fn unique(kind: &str) -> TopicName {
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_nanos();
            topic(&format!("admin-rs-{kind}-{nanos}"))
        }

        /// Any request, for what `AdminClient` has no method for.
        async fn raw(admin: &AdminClient, method: Method, url: &str, body: &str) -> Reply {
            let body = (!body.is_empty()).then(|| Bytes::from(body.to_owned()));
            let reply = admin
                .send(method.clone(), url, body, TIMEOUT)
                .await
                .unwrap();
            assert!(reply.status.is_success(), "{method} {url}: {reply:?}");
            reply
        }

        /// Publishes `n` messages, one entry each, with Pulsar's REST producer (`POST /topics/...`).
        /// That producer fails (NullPointerException) under broker deduplication, so the topic's
        /// deduplication is turned off first; the policy takes a moment to reach the topic.
        async fn produce(admin: &AdminClient, topic: &TopicName, n: usize) -> Vec<MessageId> {
            #[derive(Deserialize)]
            #[serde(rename_all = "camelCase")]
            struct Published {
                message_publish_results: Vec<Result_>,
            }
            #[derive(Deserialize)]
            #[serde(rename_all = "camelCase")]
            struct Result_ {
                message_id: String,
                error_code: i32,
            }
            let url = topic_url(&admin.base, topic, "").replace("/admin/v2/", "/topics/");
            let messages: Vec<_> = (0..n)
                .map(|i| serde_json::json!({ "payload": format!("m{i}") }))
                .collect();
            let body = serde_json::json!({ "messages": messages }).to_string();
            let dedup = admin.topic_url(topic, "/deduplicationEnabled");
            raw(admin, Method::POST, &dedup, "false").await;
            let mut attempts = 0;
            let (reply, published) = loop {
                let reply = raw(admin, Method::POST, &url, &body).await;
                let published: Published = reply.json(topic).unwrap();
                attempts += 1;
                let refused = published
                    .message_publish_results
                    .iter()
                    .all(|r| r.error_code != 0);
                if !refused || attempts == 40 {
                    break (reply, published);
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            };
            published
                .message_publish_results
                .iter()
                .map(|r| {
                    assert_eq!(r.error_code, 0, "{}", String::from_utf8_lossy(&reply.body));
                    // "ledger:entry:-1": no batch.
                    let parts: Vec<i64> = r
                        .message_id
                        .split(':')
                        .map(|p| p.parse().unwrap())
                        .collect();
                    assert_eq!(parts[2], -1, "the REST producer does not batch");
                    id(parts[0] as u64, parts[1] as u64, 0)
                })
                .collect()
        }

        #[tokio::test]
        #[ignore = "needs a real Pulsar: set PULSAR_ADMIN_URL, run with --include-ignored"]
        async fn topic_lifecycle_against_real_pulsar() {
            let admin = admin();
            assert!(admin.is_ready().await);
            let (p, np, missing) = (unique("p"), unique("np"), unique("missing"));

            admin.create_partitioned_topic(&p, 2).await.unwrap();
            admin.create_non_partitioned_topic(&np).await.unwrap();
            for again in [
                admin.create_partitioned_topic(&p, 2).await,
                admin.create_non_partitioned_topic(&p).await,
                admin.create_non_partitioned_topic(&np).await,
                admin.create_partitioned_topic(&np, 2).await,
            ] {
                assert!(
                    matches!(again, Err(BackendError::TopicAlreadyExists(_))),
                    "{again:?}"
                );
            }

            let info = |partitions| Some(TopicInfo { partitions });
            assert_eq!(admin.topic_info(&p).await.unwrap(), info(2));
            assert_eq!(admin.topic_info(&np).await.unwrap(), info(0));
            assert_eq!(admin.topic_info(&p.partition(1)).await.unwrap(), info(0));
            assert_eq!(admin.topic_info(&missing).await.unwrap(), None);

            let listed = admin.list_topics("public", "default").await.unwrap();
            assert!(
                listed.contains(&(p.clone(), TopicInfo { partitions: 2 })),
                "{listed:?}"
            );
            assert!(
                listed.contains(&(np.clone(), TopicInfo { partitions: 0 })),
                "{listed:?}"
            );
            assert!(!listed
                .iter()
                .any(|(t, _)| t.partition_of().is_some_and(|(b, _)| b == p)));
            assert!(!listed
                .iter()
                .any(|(t, _)| t.local.starts_with("__change_events")));
            let nowhere = admin.list_topics("public", &missing.local).await.unwrap();
            assert!(nowhere.is_empty());

            admin.update_partitions(&p, 3).await.unwrap();
            assert_eq!(admin.topic_info(&p).await.unwrap(), info(3));
            for (t, n) in [(&p, 3), (&p, 1), (&np, 3)] {
                let refused = admin.update_partitions(t, n).await;
                assert!(
                    matches!(refused, Err(BackendError::InvalidArgument(_))),
                    "{refused:?}"
                );
            }
            let refused = admin.update_partitions(&missing, 3).await;
            assert!(
                matches!(refused, Err(BackendError::TopicNotFound(_))),
                "{refused:?}"
            );

            admin.delete_topic(&p).await.unwrap();
            admin.delete_topic(&np).await.unwrap();
            assert_eq!(admin.topic_info(&p).await.unwrap(), None);
            assert_eq!(admin.topic_info(&np).await.unwrap(), None);
            for gone in [&p, &np, &missing] {
                let again = admin.delete_topic(gone).await;
                assert!(
                    matches!(again, Err(BackendError::TopicNotFound(_))),
                    "{again:?}"
                );
            }
            let listed = admin.list_topics("public", "default").await.unwrap();
            assert!(
                !listed.iter().any(|(t, _)| *t == p || *t == np),
                "{listed:?}"
            );
        }

        #[tokio::test]
        #[ignore = "needs a real Pulsar: set PULSAR_ADMIN_URL, run with --include-ignored"]
        async fn empty_topics_against_real_pulsar() {
            let admin = admin();
            let (p, np, missing) = (unique("p"), unique("np"), unique("missing"));
            admin.create_partitioned_topic(&p, 1).await.unwrap();
            admin.create_non_partitioned_topic(&np).await.unwrap();

            for t in [&np, &p.partition(0)] {
                assert_eq!(admin.last_message_id(t).await.unwrap(), None);
                assert_eq!(admin.first_entry(t).await.unwrap(), None);
                assert_eq!(admin.entry_by_publish_time(t, 0).await.unwrap(), None);
                assert!(admin.subscriptions(t).await.unwrap().is_empty());
            }
            let e = admin.backlog(&np, "nope").await;
            assert!(
                matches!(e, Err(BackendError::SubscriptionNotFound(_))),
                "{e:?}"
            );
            let e = admin.delete_subscription(&np, "nope").await;
            assert!(
                matches!(e, Err(BackendError::SubscriptionNotFound(_))),
                "{e:?}"
            );
            let e = admin.last_message_id(&missing).await;
            assert!(matches!(e, Err(BackendError::TopicNotFound(_))), "{e:?}");
            let e = admin.subscriptions(&missing).await;
            assert!(matches!(e, Err(BackendError::TopicNotFound(_))), "{e:?}");

            admin.delete_topic(&p).await.unwrap();
            admin.delete_topic(&np).await.unwrap();
        }

        /// Only for a broker started with `start --auth`: requests without the token are refused.
        #[tokio::test]
        #[ignore = "needs a Pulsar started with --auth, and PULSAR_ADMIN_URL/PULSAR_ADMIN_TOKEN"]
        async fn missing_token_against_real_pulsar() {
            let with_token = admin();
            assert!(
                with_token.token.is_some(),
                "needs PULSAR_ADMIN_TOKEN for a broker started with --auth"
            );
            assert!(with_token.is_ready().await);
            let without = client(&with_token.base, None).unwrap();
            assert!(!without.is_ready().await);
            let e = without.topic_info(&unique("any")).await;
            assert!(
                matches!(&e, Err(BackendError::NotAuthorized(m)) if m.contains("401")),
                "{e:?}"
            );
        }

        /// Needs messages, written with Pulsar's REST producer: one entry per message, never a
        /// batch, so batch indexes are covered only by the unit test's recorded sample.
        #[tokio::test]
        #[ignore = "needs a real Pulsar: set PULSAR_ADMIN_URL, run with --include-ignored"]
        async fn messages_and_subscriptions_against_real_pulsar() {
            let admin = admin();
            let t = unique("msgs");
            admin.create_non_partitioned_topic(&t).await.unwrap();
            let sub_url = admin.topic_url(&t, "/subscription/from-start");
            let earliest = r#"{"ledgerId":-1,"entryId":-1,"partitionIndex":-1}"#;
            raw(&admin, Method::PUT, &sub_url, earliest).await;

            let first = produce(&admin, &t, 3).await;
            tokio::time::sleep(Duration::from_millis(50)).await;
            let between = now_millis();
            tokio::time::sleep(Duration::from_millis(50)).await;
            let second = produce(&admin, &t, 2).await;

            assert_eq!(first[0].entry, 0);
            assert_eq!(admin.last_message_id(&t).await.unwrap(), Some(second[1]));
            assert_eq!(
                admin.first_entry(&t).await.unwrap(),
                Some(entry(first[0].ledger, 0))
            );
            let found = |at| admin.entry_by_publish_time(&t, at);
            assert_eq!(found(0).await.unwrap(), Some(first[0].entry_id()));
            assert_eq!(found(between).await.unwrap(), Some(second[0].entry_id()));
            assert_eq!(found(now_millis() + 3_600_000).await.unwrap(), None);

            assert_eq!(admin.subscriptions(&t).await.unwrap(), ["from-start"]);
            assert_eq!(admin.backlog(&t, "from-start").await.unwrap(), 5);

            // Reloading the topic rolls to a new, empty ledger; the answers must not change.
            raw(&admin, Method::PUT, &admin.topic_url(&t, "/unload"), "").await;
            assert_eq!(admin.last_message_id(&t).await.unwrap(), Some(second[1]));
            assert_eq!(
                admin.first_entry(&t).await.unwrap(),
                Some(entry(first[0].ledger, 0))
            );
            assert_eq!(found(now_millis() + 3_600_000).await.unwrap(), None);

            admin.delete_subscription(&t, "from-start").await.unwrap();
            assert!(admin.subscriptions(&t).await.unwrap().is_empty());
            // ConsumerBusy (412 while a consumer is connected) needs a binary-protocol consumer;
            // it was checked by hand with the Java client, not here.
            admin.delete_topic(&t).await.unwrap();
        }
    }
}
