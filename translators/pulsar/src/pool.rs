//! Connections by broker, and topic lookup (Pulsar binary protocol, "Topic lookup"): ask the
//! service URL who owns a topic, follow redirects, and connect to the owner, directly or through
//! the Pulsar proxy when the answer says so.

use std::collections::HashMap;
use std::sync::Arc;

use gateway_core::{BackendError, Result};
use tokio::sync::Mutex;

use crate::connection::{server_error, unavailable, Auth, Connection};
use crate::proto::{command_type as t, lookup_type, BaseCommand, CommandLookupTopic};

/// Redirects followed before giving up on a lookup.
const MAX_REDIRECTS: usize = 8;

/// (physical address, broker URL reached through it when proxied).
type ConnectionKey = (String, Option<String>);

pub struct Pool {
    /// `host:port` of the service URL (a broker, a proxy or a load balancer).
    service: String,
    auth: Auth,
    connections: Mutex<HashMap<ConnectionKey, Arc<Connection>>>,
}

/// `pulsar://host:port` -> `host:port`.
pub fn address_of(url: &str) -> Result<String> {
    let rest = url.strip_prefix("pulsar://").ok_or_else(|| {
        BackendError::InvalidArgument(format!(
            "unsupported Pulsar URL {url} (pulsar:// only for now)"
        ))
    })?;
    Ok(rest.trim_end_matches('/').to_owned())
}

impl Pool {
    pub fn new(service_url: &str, auth: Auth) -> Result<Pool> {
        Ok(Pool {
            service: address_of(service_url)?,
            auth,
            connections: Mutex::new(HashMap::new()),
        })
    }

    /// A live connection to `address`, reaching `proxy_to` through it when set.
    pub async fn connection(
        &self,
        address: &str,
        proxy_to: Option<&str>,
    ) -> Result<Arc<Connection>> {
        let key = (address.to_owned(), proxy_to.map(str::to_owned));
        let mut connections = self.connections.lock().await;
        if let Some(c) = connections.get(&key) {
            if c.is_alive() {
                return Ok(c.clone());
            }
        }
        let c = Connection::open(address, proxy_to, &self.auth).await?;
        connections.insert(key, c.clone());
        Ok(c)
    }

    pub async fn service_connection(&self) -> Result<Arc<Connection>> {
        let service = self.service.clone();
        self.connection(&service, None).await
    }

    /// The connection to the broker that owns `topic` (a concrete topic or partition).
    pub async fn owner_of(&self, topic: &str) -> Result<Arc<Connection>> {
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
            let broker_url = r.broker_service_url.clone().unwrap_or_default();
            match r.response.unwrap_or(lookup_type::FAILED) {
                lookup_type::CONNECT => {
                    // A proxy wants the broker as `host:port` in CONNECT's proxy_to_broker_url
                    // (it resolves the string as a host name), not as the lookup's URL.
                    return if r.proxy_through_service_url == Some(true) {
                        let service = self.service.clone();
                        self.connection(&service, Some(&address_of(&broker_url)?))
                            .await
                    } else {
                        self.connection(&address_of(&broker_url)?, None).await
                    };
                }
                lookup_type::REDIRECT => {
                    authoritative = r.authoritative.unwrap_or(false);
                    asking = if r.proxy_through_service_url == Some(true) {
                        let service = self.service.clone();
                        self.connection(&service, Some(&address_of(&broker_url)?))
                            .await?
                    } else {
                        self.connection(&address_of(&broker_url)?, None).await?
                    };
                }
                _ => {
                    return Err(server_error(
                        r.error.unwrap_or(0),
                        r.message.as_deref().unwrap_or("lookup failed"),
                    ))
                }
            }
        }
        Err(unavailable(format!(
            "lookup of {topic} redirected too often"
        )))
    }
}
