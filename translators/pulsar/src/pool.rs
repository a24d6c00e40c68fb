//! Connections by broker, and topic lookup (Pulsar binary protocol, "Topic lookup"): ask the
//! service URL who owns a topic, follow redirects, and connect to the owner, directly or through
//! the Pulsar proxy when the answer says so.
//!
//! Each broker address has a slot of its own, so connecting to one broker (which may hang until
//! its timeout) never holds up lookups and connections to the others. A connection that died is
//! replaced on its next use, and dead ones are dropped from the pool. Lookups that fail for a
//! passing reason are retried with backoff until the operation timeout.

use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use gateway_core::{BackendError, Result};
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::connection::{server_error, unavailable, ConnectOptions, Connection, Endpoint};
use crate::proto::{
    command_type as t, lookup_type, BaseCommand, CommandLookupTopic, CommandLookupTopicResponse,
};

/// Redirects followed before giving up on a lookup.
const MAX_REDIRECTS: usize = 8;
/// First and longest pause between lookup attempts.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// (physical address, broker `host:port` reached through it when proxied).
type ConnectionKey = (Endpoint, Option<String>);
type Slot = Arc<Mutex<Option<Arc<Connection>>>>;

pub struct Pool {
    /// The service URL's hosts (brokers, proxies or load balancers), tried in turn.
    service: Vec<Endpoint>,
    tls: bool,
    options: ConnectOptions,
    connections: DashMap<ConnectionKey, Slot>,
}

/// A parsed service URL: `pulsar://host:port[,host:port...]` or `pulsar+ssl://...`. The port
/// defaults to 6650 (6651 with TLS), as in Pulsar's clients.
pub fn parse_service_url(url: &str) -> Result<(Vec<Endpoint>, bool)> {
    let (rest, tls) = if let Some(rest) = url.strip_prefix("pulsar+ssl://") {
        (rest, true)
    } else if let Some(rest) = url.strip_prefix("pulsar://") {
        (rest, false)
    } else {
        return Err(BackendError::InvalidArgument(format!(
            "unsupported Pulsar URL {url:?}: expected pulsar:// or pulsar+ssl://"
        )));
    };
    let default_port = if tls { 6651 } else { 6650 };
    let endpoints = rest
        .trim_end_matches('/')
        .split(',')
        .map(|hostport| endpoint_of(hostport.trim(), default_port))
        .collect::<Result<Vec<_>>>()?;
    Ok((endpoints, tls))
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`.
fn endpoint_of(hostport: &str, default_port: u16) -> Result<Endpoint> {
    let bad = || BackendError::InvalidArgument(format!("bad Pulsar address {hostport:?}"));
    let (host, port) = match hostport.strip_prefix('[') {
        Some(v6) => {
            let (host, after) = v6.split_once(']').ok_or_else(bad)?;
            (host, after.strip_prefix(':'))
        }
        None => match hostport.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (hostport, None),
        },
    };
    let port = match port {
        Some(p) => p.parse().map_err(|_| bad())?,
        None => default_port,
    };
    if host.is_empty() {
        return Err(bad());
    }
    Ok(Endpoint {
        host: host.to_owned(),
        port,
    })
}

impl Pool {
    pub fn new(service_url: &str, options: ConnectOptions) -> Result<Pool> {
        let (service, tls) = parse_service_url(service_url)?;
        if tls && options.tls.is_none() {
            return Err(BackendError::InvalidArgument(format!(
                "{service_url} needs TLS settings"
            )));
        }
        Ok(Pool {
            service,
            tls,
            options,
            connections: DashMap::new(),
        })
    }

    pub fn operation_timeout(&self) -> Duration {
        self.options.operation_timeout
    }

    /// A live connection to `endpoint`, reaching `proxy_to` through it when set.
    pub async fn connection(
        &self,
        endpoint: &Endpoint,
        proxy_to: Option<&str>,
    ) -> Result<Arc<Connection>> {
        let key = (endpoint.clone(), proxy_to.map(str::to_owned));
        // Clone the slot out so the map is not locked while connecting.
        let slot = self.connections.entry(key).or_default().clone();
        let mut slot = slot.lock().await;
        if let Some(c) = slot.as_ref() {
            if c.is_alive() {
                return Ok(c.clone());
            }
        }
        *slot = None;
        let opened = Connection::open(endpoint, proxy_to, &self.options).await;
        self.forget_dead();
        let c = opened?;
        *slot = Some(c.clone());
        Ok(c)
    }

    /// Drops slots whose connection died (and that nobody is connecting right now).
    fn forget_dead(&self) {
        self.connections.retain(|_, slot| match slot.try_lock() {
            Ok(c) => c.as_ref().is_some_and(|c| c.is_alive()),
            Err(_) => true,
        });
    }

    /// A connection to the service URL: its hosts in turn, until one answers.
    pub async fn service_connection(&self) -> Result<Arc<Connection>> {
        let mut failure = None;
        for endpoint in &self.service {
            match self.connection(endpoint, None).await {
                Ok(c) => return Ok(c),
                Err(e) => failure = Some(e),
            }
        }
        Err(failure.unwrap_or_else(|| unavailable("no Pulsar service address")))
    }

    /// The connection to the broker that owns `topic` (a concrete topic or partition). Passing
    /// failures (no connection, a broker not ready, too many requests) are retried with
    /// backoff until the operation timeout; definite answers (not found, not authorized) are not.
    pub async fn owner_of(&self, topic: &str) -> Result<Arc<Connection>> {
        let deadline = Instant::now() + self.options.operation_timeout;
        let mut backoff = FIRST_BACKOFF;
        loop {
            let failure = match self.look_up(topic).await {
                Ok(c) => return Ok(c),
                Err(e) if e.is_retriable() && !matches!(e, BackendError::Timeout(_)) => e,
                Err(e) => return Err(e),
            };
            let pause = backoff.mul_f64(0.5 + rand::random::<f64>() / 2.0);
            if Instant::now() + pause >= deadline {
                return Err(failure);
            }
            tracing::debug!(topic, error = %failure, ?pause, "lookup failed; retrying");
            tokio::time::sleep(pause).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    async fn look_up(&self, topic: &str) -> Result<Arc<Connection>> {
        let mut asking = self.service_connection().await?;
        let mut authoritative = false;
        for _ in 0..MAX_REDIRECTS {
            let request_id = asking.next_id();
            let command = BaseCommand {
                r#type: t::LOOKUP,
                lookup_topic: Some(CommandLookupTopic {
                    topic: topic.to_owned(),
                    request_id,
                    authoritative: Some(authoritative),
                }),
                ..Default::default()
            };
            let answer = asking.request(request_id, command).await?;
            let r = answer
                .lookup_topic_response
                .ok_or_else(|| unavailable("lookup answered without a lookup response"))?;
            let next = match r.response.unwrap_or(lookup_type::FAILED) {
                lookup_type::CONNECT | lookup_type::REDIRECT => {
                    let broker = broker_endpoint(self.broker_url(topic, &r)?)?;
                    // A proxy wants the broker as `host:port` in CONNECT's proxy_to_broker_url
                    // (it resolves the string as a host name), not as the lookup's URL.
                    if r.proxy_through_service_url == Some(true) {
                        let service = self.service_connection_endpoint().await?;
                        self.connection(&service, Some(&broker.to_string())).await?
                    } else {
                        self.connection(&broker, None).await?
                    }
                }
                _ => {
                    return Err(server_error(
                        r.error.unwrap_or(0),
                        r.message.as_deref().unwrap_or("lookup failed"),
                    ))
                }
            };
            if r.response == Some(lookup_type::CONNECT) {
                return Ok(next);
            }
            authoritative = r.authoritative.unwrap_or(false);
            asking = next;
        }
        Err(unavailable(format!(
            "lookup of {topic} redirected too often"
        )))
    }

    /// The broker URL of a lookup answer: over TLS, the broker's TLS address (a broker without
    /// one cannot be reached).
    fn broker_url<'a>(&self, topic: &str, r: &'a CommandLookupTopicResponse) -> Result<&'a str> {
        let url = if self.tls {
            r.broker_service_url_tls.as_deref()
        } else {
            r.broker_service_url.as_deref()
        };
        url.ok_or_else(|| {
            unavailable(if self.tls {
                format!("the broker owning {topic} has no TLS address (brokerServicePortTls)")
            } else {
                format!("the lookup of {topic} named no broker")
            })
        })
    }

    /// The service host to go through for a proxied broker: the first that has a live
    /// connection, else the first.
    async fn service_connection_endpoint(&self) -> Result<Endpoint> {
        for endpoint in &self.service {
            let live = match self.connections.get(&(endpoint.clone(), None)) {
                Some(slot) => slot
                    .try_lock()
                    .is_ok_and(|c| c.as_ref().is_some_and(|c| c.is_alive())),
                None => false,
            };
            if live {
                return Ok(endpoint.clone());
            }
        }
        self.service
            .first()
            .cloned()
            .ok_or_else(|| unavailable("no Pulsar service address"))
    }
}

/// A broker URL from a lookup answer, as an endpoint.
fn broker_endpoint(url: &str) -> Result<Endpoint> {
    let (mut endpoints, _) = parse_service_url(url)?;
    endpoints
        .pop()
        .ok_or_else(|| unavailable(format!("lookup answered a bad broker URL {url:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(host: &str, port: u16) -> Endpoint {
        Endpoint {
            host: host.into(),
            port,
        }
    }

    #[test]
    fn service_urls_parse_like_pulsar_clients() {
        assert_eq!(
            parse_service_url("pulsar://b1:6650").unwrap(),
            (vec![ep("b1", 6650)], false)
        );
        assert_eq!(
            parse_service_url("pulsar+ssl://a.example.com/").unwrap(),
            (vec![ep("a.example.com", 6651)], true)
        );
        assert_eq!(
            parse_service_url("pulsar://h1:1,h2,[::1]:3").unwrap().0,
            vec![ep("h1", 1), ep("h2", 6650), ep("::1", 3)]
        );
        assert_eq!(ep("::1", 3).to_string(), "[::1]:3");
        assert!(parse_service_url("http://x:1").is_err());
        assert!(parse_service_url("pulsar://x:port").is_err());
        assert!(parse_service_url("pulsar://:1").is_err());
    }
}
