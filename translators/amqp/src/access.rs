//! What an AMQP session may do inside its vhost (DESIGN.md §8). The gateway keeps the vhost's
//! shared state (topology, deliveries) with its own credential, so it asks Pulsar, with the
//! client's token, before acting for the client on the client's data:
//!
//! - publishing to an exchange (RabbitMQ's write access) needs Pulsar's produce permission on
//!   the exchange's topic;
//! - reading a queue (basic.consume, basic.get) or destroying its messages (queue.purge,
//!   queue.delete), RabbitMQ's read access, needs consume permission in the vhost's namespace,
//!   through a subscription named after the queue.
//!
//! Declaring, binding and deleting exchanges need no more than opening the vhost did. Answers
//! are kept for a few seconds per session, so a revoked permission takes effect within
//! `ANSWER_TTL`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use gateway_core::recent::Recent;
use gateway_core::{BackendRef, TopicName};
use gateway_security::{Principal, Secret, TokenVerifier};

use crate::error::{AmqpError, AmqpResult};
use crate::topology::Vhost;

const ANSWER_TTL: Duration = Duration::from_secs(10);

/// How long a token the gateway signs for a certificate's role lasts.
pub const CERTIFICATE_TOKEN_LIFETIME: Duration = Duration::from_secs(300);

/// Whose rights a session's operations are checked against.
pub enum Credential {
    /// The token the client logged in with, or last gave with connection.update-secret.
    Token(Principal),
    /// The role of a client certificate (SASL EXTERNAL): the gateway signs short-lived tokens
    /// for it, a fresh one before the last expires.
    Certificate {
        role: String,
        verifier: Arc<TokenVerifier>,
    },
}

pub struct Access {
    credential: Mutex<Credential>,
    /// The token last signed for a certificate's role.
    issued: Mutex<Option<Principal>>,
    answers: Recent<bool>,
}

impl Access {
    pub fn new(credential: Credential) -> Access {
        Access {
            credential: Mutex::new(credential),
            issued: Mutex::new(None),
            answers: Recent::new(ANSWER_TTL),
        }
    }

    /// A token for the client's role, valid for a while yet.
    pub fn token(&self) -> Option<Secret> {
        match &*self.credential.lock().expect("credential lock") {
            Credential::Token(principal) => Some(principal.token.clone()),
            Credential::Certificate { role, verifier } => {
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_secs();
                let mut issued = self.issued.lock().expect("issued lock");
                let fresh = issued
                    .as_ref()
                    .and_then(|p| p.expires_at)
                    .is_some_and(|exp| exp > now + CERTIFICATE_TOKEN_LIFETIME.as_secs() / 2);
                if !fresh {
                    *issued = verifier.issue(role, CERTIFICATE_TOKEN_LIFETIME);
                }
                issued.as_ref().map(|p| p.token.clone())
            }
        }
    }

    /// When the client's own token expires (seconds since the epoch), if it does. A
    /// certificate's role has none: the gateway renews the tokens it signs for it.
    pub fn expires_at(&self) -> Option<u64> {
        match &*self.credential.lock().expect("credential lock") {
            Credential::Token(principal) => principal.expires_at,
            Credential::Certificate { .. } => None,
        }
    }

    /// connection.update-secret: the client's new token replaces the old one if it is for the
    /// same role. Answers Pulsar gave for the old token are forgotten.
    pub fn renew(&self, principal: Principal) -> Result<(), &'static str> {
        match &mut *self.credential.lock().expect("credential lock") {
            Credential::Token(current) if current.role == principal.role => *current = principal,
            Credential::Token(_) => return Err("the new token is for another role"),
            Credential::Certificate { .. } => {
                return Err("a certificate login has no secret to update")
            }
        }
        self.answers.forget(|_| true);
        Ok(())
    }

    /// basic.publish to `exchange`, whose messages go to `topic`.
    pub async fn check_write(
        &self,
        backend: &BackendRef,
        vhost: &Vhost,
        user: &str,
        exchange: &str,
        topic: &TopicName,
    ) -> AmqpResult<()> {
        let key = format!("w\0{topic}");
        let topic = topic.clone();
        let allowed = self
            .ask(backend, key, |client| async move {
                client.may_produce(&topic).await
            })
            .await?;
        if allowed {
            return Ok(());
        }
        let name = if exchange.is_empty() {
            "amq.default"
        } else {
            exchange
        };
        Err(AmqpError::access_refused(format!(
            "write access to exchange '{name}' in vhost '{}' refused for user '{user}'",
            vhost.name
        )))
    }

    /// Reading queue `queue`, or destroying its messages.
    pub async fn check_read(
        &self,
        backend: &BackendRef,
        vhost: &Vhost,
        user: &str,
        queue: &str,
    ) -> AmqpResult<()> {
        let key = format!("r\0{queue}");
        let (tenant, namespace) = (vhost.tenant.clone(), vhost.namespace.clone());
        let subscription = format!("amqp.{}", crate::frontend::escape(queue));
        let allowed = self
            .ask(backend, key, |client| async move {
                client
                    .may_subscribe(&tenant, &namespace, &subscription)
                    .await
            })
            .await?;
        if allowed {
            return Ok(());
        }
        Err(AmqpError::access_refused(format!(
            "read access to queue '{queue}' in vhost '{}' refused for user '{user}'",
            vhost.name
        )))
    }

    async fn ask<F, Fut>(&self, backend: &BackendRef, key: String, question: F) -> AmqpResult<bool>
    where
        F: FnOnce(BackendRef) -> Fut,
        Fut: std::future::Future<Output = gateway_core::Result<bool>>,
    {
        if let Some(answer) = self.answers.get(&key) {
            return Ok(answer);
        }
        let Some(token) = self.token() else {
            return Ok(false);
        };
        // A backend that does not authorize (embedded) lets everything through.
        let Some(client) = backend.as_client(token.expose()) else {
            return Ok(true);
        };
        let answer = match question(client).await {
            Ok(answer) => answer,
            Err(e) => return Err(e.into()),
        };
        self.answers.put(key, answer);
        Ok(answer)
    }
}
