//! SASL authentication: SaslHandshake (KIP-43: v0 is followed by raw SASL tokens, v1 by
//! SaslAuthenticate requests, KIP-152), and re-authentication on a live connection (KIP-368).
//!
//! The credentials are Pulsar tokens (DESIGN.md §8):
//! - PLAIN: username `tenant` or `tenant/namespace`, password `token:<jwt>`;
//! - OAUTHBEARER: the client's initial response carries the JWT as its bearer token.
//!
//! A failed authentication is answered SASL_AUTHENTICATION_FAILED and the connection closed, as
//! a Kafka broker does. Neither the token nor the password is ever logged.
//!
//! On the internal listener the only credentials are a peer's: PLAIN with the fleet's shared
//! secret (`groups::peer_auth`); tokens are not accepted there.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use gateway_security::{AuthError, Principal};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{
    SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse,
};
use tracing::{debug, info, warn};

use super::str_bytes;
use crate::frontend::KafkaFrontend;
use crate::groups::scope::GroupScope;

/// Mechanisms offered, in the order SaslHandshake lists them.
pub const MECHANISMS: &[&str] = &["PLAIN", "OAUTHBEARER"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    Plain,
    OAuthBearer,
}

/// A client that has authenticated.
#[derive(Debug, Clone)]
pub struct KafkaPrincipal {
    pub principal: Principal,
    /// The tenant and namespace named in a PLAIN username, if any: short topic names resolve
    /// there (the namespace defaults to the configured one).
    pub tenant: Option<String>,
    pub namespace: Option<String>,
}

/// A connection's progress through SASL.
#[derive(Debug, Default)]
pub struct SaslState {
    /// Chosen by SaslHandshake; the next authentication uses it.
    pub mechanism: Option<Mechanism>,
    /// After a v0 handshake the next frame is a raw SASL token, not a Kafka request.
    pub raw_next: bool,
    pub authenticated: Option<KafkaPrincipal>,
    /// When the session ends unless the client re-authenticates (the token's `exp`).
    pub session_end: Option<Instant>,
    /// This connection's place in its principal's connection count.
    pub slot: Option<gateway_security::ConnectionSlot>,
    /// The connection came in on the internal listener: only peers authenticate there.
    pub internal: bool,
    /// A peer proved the fleet's shared secret on this (internal) connection.
    pub peer: bool,
}

impl SaslState {
    /// Whether the session has outlived its token (KIP-368: the client had to re-authenticate).
    pub fn expired(&self) -> bool {
        self.session_end.is_some_and(|end| Instant::now() >= end)
    }
}

impl KafkaFrontend {
    pub(crate) fn handle_sasl_handshake(
        &self,
        state: &mut SaslState,
        request: SaslHandshakeRequest,
        version: i16,
    ) -> SaslHandshakeResponse {
        let mut response = SaslHandshakeResponse::default();
        if state.internal {
            // Peers prove the fleet's secret with PLAIN; nothing else is offered there.
            response.mechanisms = vec![str_bytes("PLAIN")];
            state.mechanism = (request.mechanism.as_str() == "PLAIN").then_some(Mechanism::Plain);
            if state.mechanism.is_none() {
                response.error_code = ResponseError::UnsupportedSaslMechanism.code();
            } else {
                state.raw_next = version == 0;
            }
            return response;
        }
        if self.config.auth.is_none() {
            // Kafka's answer on a listener without SASL.
            response.error_code = ResponseError::IllegalSaslState.code();
            return response;
        }
        response.mechanisms = MECHANISMS.iter().map(|m| str_bytes(*m)).collect();
        state.mechanism = match request.mechanism.as_str() {
            "PLAIN" => Some(Mechanism::Plain),
            "OAUTHBEARER" => Some(Mechanism::OAuthBearer),
            _ => None,
        };
        if state.mechanism.is_none() {
            response.error_code = ResponseError::UnsupportedSaslMechanism.code();
        } else {
            state.raw_next = version == 0;
        }
        response
    }

    /// The front end to serve an authenticated client with: short topic names resolve in the
    /// tenant and namespace its PLAIN username named, and, when the backend authorizes on its
    /// own (Pulsar), everything runs with the client's token. `None`: this one serves as it is.
    pub(crate) fn acting_for(&self, state: &SaslState) -> Option<std::sync::Arc<KafkaFrontend>> {
        let authenticated = state.authenticated.as_ref()?;
        let backend = self
            .backend
            .as_client(authenticated.principal.token.expose());
        if backend.is_none() && authenticated.tenant.is_none() && !self.config.auth_required {
            return None;
        }
        let authorizes = backend.is_some();
        let mut frontend = self.for_client(backend.unwrap_or_else(|| self.backend.clone()));
        if authorizes {
            frontend.group_access = Some(Default::default());
        }
        let config = &mut frontend.config;
        if let Some(tenant) = &authenticated.tenant {
            config.default_tenant = tenant.clone();
            if let Some(namespace) = &authenticated.namespace {
                config.default_namespace = namespace.clone();
            }
        }
        // With authentication required, every session's groups are its namespace's.
        if self.config.auth_required {
            config.group_scope = Some(GroupScope::new(
                &config.default_tenant,
                &config.default_namespace,
            ));
        }
        Some(std::sync::Arc::new(frontend))
    }

    /// Answers SaslAuthenticate; `false` when the connection must close after the response.
    pub(crate) fn handle_sasl_authenticate(
        &self,
        state: &mut SaslState,
        request: SaslAuthenticateRequest,
        version: i16,
    ) -> (SaslAuthenticateResponse, bool) {
        let mut response = SaslAuthenticateResponse::default();
        let Some(mechanism) = state.mechanism.take() else {
            response.error_code = ResponseError::IllegalSaslState.code();
            response.error_message = Some(str_bytes("SaslAuthenticate without a SaslHandshake"));
            return (response, false);
        };
        match self.authenticate(state, mechanism, &request.auth_bytes) {
            Ok(lifetime) => {
                if version >= 1 {
                    response.session_lifetime_ms = lifetime.map_or(0, |d| d.as_millis() as i64);
                }
                (response, true)
            }
            Err(reason) => {
                response.error_code = ResponseError::SaslAuthenticationFailed.code();
                response.error_message = Some(str_bytes(reason));
                (response, false)
            }
        }
    }

    /// A raw SASL token after a v0 handshake: the (empty) server token on success, `None` when
    /// the connection must close.
    pub(crate) fn handle_raw_sasl(&self, state: &mut SaslState, token: &[u8]) -> Option<Bytes> {
        state.raw_next = false;
        let mechanism = state.mechanism.take()?;
        self.authenticate(state, mechanism, token).ok()?;
        Some(Bytes::new())
    }

    /// Checks the credentials; on success records the principal and returns how long the
    /// session may last (until the token expires).
    fn authenticate(
        &self,
        state: &mut SaslState,
        mechanism: Mechanism,
        auth_bytes: &[u8],
    ) -> Result<Option<Duration>, String> {
        if state.internal {
            return self.authenticate_peer(state, mechanism, auth_bytes);
        }
        let verifier = self
            .config
            .auth
            .as_ref()
            .ok_or("authentication is not enabled on this listener")?;
        let outcome = match mechanism {
            Mechanism::Plain => plain(auth_bytes).and_then(|(user, token)| {
                let principal = verifier.verify(&token).map_err(|e| refusal(&e))?;
                let (tenant, namespace) = scope_of(&user);
                Ok(KafkaPrincipal {
                    principal,
                    tenant,
                    namespace,
                })
            }),
            // The SASL extension `namespace` (KIP-342) plays the part of PLAIN's username.
            Mechanism::OAuthBearer => oauth_bearer(auth_bytes).and_then(|(token, namespace)| {
                let principal = verifier.verify(&token).map_err(|e| refusal(&e))?;
                let (tenant, namespace) = scope_of(namespace.as_deref().unwrap_or_default());
                Ok(KafkaPrincipal {
                    principal,
                    tenant,
                    namespace,
                })
            }),
        };
        let authenticated = match outcome {
            Ok(p) => p,
            Err(reason) => {
                metrics::counter!("kafka_authentication_failures_total").increment(1);
                info!(?mechanism, %reason, "Kafka authentication refused");
                return Err(reason);
            }
        };
        // A re-authentication must keep the identity (KIP-368).
        if let Some(before) = &state.authenticated {
            if before.principal.role != authenticated.principal.role {
                return Err("re-authentication must not change the principal".into());
            }
        }
        let lifetime = authenticated.principal.expires_at.map(|exp| {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default();
            Duration::from_secs(exp).saturating_sub(now)
        });
        if state.slot.is_none() {
            if let Some(counter) = &self.config.principal_connections {
                let role = &authenticated.principal.role;
                state.slot = Some(counter.acquire(role).ok_or_else(|| {
                    metrics::counter!("kafka_authentication_failures_total").increment(1);
                    info!(%role, max = counter.max(), "Kafka connection refused: the principal's connection limit is reached");
                    format!("too many connections for this principal (at most {})", counter.max())
                })?);
            }
        }
        debug!(role = %authenticated.principal.role, ?mechanism, "Kafka client authenticated");
        state.session_end = lifetime.map(|l| Instant::now() + l);
        state.authenticated = Some(authenticated);
        Ok(lifetime)
    }
}

impl KafkaFrontend {
    /// A peer on the internal listener proving the fleet's secret. Its sessions do not expire:
    /// the secret has no lifetime.
    fn authenticate_peer(
        &self,
        state: &mut SaslState,
        mechanism: Mechanism,
        auth_bytes: &[u8],
    ) -> Result<Option<Duration>, String> {
        let outcome = match mechanism {
            Mechanism::Plain => {
                crate::groups::peer_auth::check(self.config.peer_secret.as_deref(), auth_bytes)
            }
            Mechanism::OAuthBearer => Err("peers authenticate with PLAIN"),
        };
        state.peer = outcome.is_ok();
        match outcome {
            Ok(()) => {
                debug!("peer authenticated on the internal listener");
                Ok(None)
            }
            Err(reason) => {
                metrics::counter!("kafka_peer_authentication_failures_total").increment(1);
                warn!(%reason, "peer authentication refused on the internal listener");
                Err(reason.to_owned())
            }
        }
    }
}

/// The failure text a client sees: the reason, never the token.
fn refusal(e: &AuthError) -> String {
    format!("authentication failed: {e}")
}

/// PLAIN (RFC 4616): `[authzid] NUL authcid NUL passwd`; the password must be `token:<jwt>`.
fn plain(bytes: &[u8]) -> Result<(String, String), String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "PLAIN credentials are not UTF-8")?;
    let mut parts = text.split('\0');
    let (Some(_authzid), Some(user), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("malformed PLAIN credentials".into());
    };
    let token = password
        .strip_prefix("token:")
        .ok_or("the password must be token:<jwt>")?;
    if token.is_empty() {
        return Err(refusal(&AuthError::Missing));
    }
    Ok((user.to_owned(), token.to_owned()))
}

/// `tenant` or `tenant/namespace` (a PLAIN username, an OAUTHBEARER `namespace` extension): where
/// short topic names resolve. Empty: the configured defaults.
fn scope_of(name: &str) -> (Option<String>, Option<String>) {
    match name.split_once('/') {
        Some((t, n)) => (Some(t.to_owned()), Some(n.to_owned())),
        None if name.is_empty() => (None, None),
        None => (Some(name.to_owned()), None),
    }
}

/// OAUTHBEARER's initial client response (RFC 7628 §3.1): a GS2 header, then `key=value`
/// pairs separated by ^A, one of which is `auth=Bearer <token>`; the others are SASL extensions
/// (KIP-342). Returns the token and the `namespace` extension, if given.
fn oauth_bearer(bytes: &[u8]) -> Result<(String, Option<String>), String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "OAUTHBEARER response is not UTF-8")?;
    let (gs2, rest) = text
        .split_once('\x01')
        .ok_or("malformed OAUTHBEARER response")?;
    if !gs2.starts_with("n,") && !gs2.starts_with("y,") {
        return Err("malformed OAUTHBEARER response".into());
    }
    let token = rest
        .split('\x01')
        .find_map(|kv| kv.strip_prefix("auth="))
        .and_then(|auth| {
            auth.strip_prefix("Bearer ")
                .or_else(|| auth.strip_prefix("bearer "))
        })
        .ok_or("the OAUTHBEARER response has no bearer token")?;
    let namespace = rest
        .split('\x01')
        .find_map(|kv| kv.strip_prefix("namespace="))
        .map(str::to_owned);
    Ok((token.trim().to_owned(), namespace))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_takes_the_token_from_the_password() {
        assert_eq!(
            plain(b"\0tenant-a/ns\0token:abc.def.ghi").unwrap(),
            ("tenant-a/ns".to_owned(), "abc.def.ghi".to_owned())
        );
        assert_eq!(
            plain(b"authz\0tenant-a\0token:x").unwrap(),
            ("tenant-a".to_owned(), "x".to_owned())
        );
        assert!(
            plain(b"\0tenant-a\0abc.def.ghi").is_err(),
            "no token: prefix"
        );
        assert!(plain(b"\0tenant-a\0token:").is_err(), "empty token");
        assert!(plain(b"\0tenant-a\0").is_err(), "empty password");
        assert!(plain(b"tenant-a").is_err());
        assert!(plain(b"\0a\0b\0c").is_err());
        assert!(plain(&[0xff, 0, 0]).is_err());
    }

    #[test]
    fn oauthbearer_finds_the_bearer_token() {
        assert_eq!(
            oauth_bearer(b"n,,\x01auth=Bearer abc.def.ghi\x01\x01").unwrap(),
            ("abc.def.ghi".to_owned(), None)
        );
        assert_eq!(
            oauth_bearer(b"n,a=user,\x01host=h\x01auth=Bearer t\x01\x01").unwrap(),
            ("t".to_owned(), None)
        );
        // Extensions (KIP-342) come in any order around auth.
        assert_eq!(
            oauth_bearer(b"n,,\x01namespace=tenant-a/ns\x01auth=Bearer t\x01\x01").unwrap(),
            ("t".to_owned(), Some("tenant-a/ns".to_owned()))
        );
        assert_eq!(
            scope_of("tenant-a/ns"),
            (Some("tenant-a".into()), Some("ns".into()))
        );
        assert_eq!(scope_of("tenant-a"), (Some("tenant-a".into()), None));
        assert_eq!(scope_of(""), (None, None));
        assert!(oauth_bearer(b"n,,\x01host=h\x01\x01").is_err());
        assert!(oauth_bearer(b"garbage").is_err());
        assert!(oauth_bearer(b"").is_err());
    }
}
