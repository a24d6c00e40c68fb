//! The SASL layer (security spec §5.3): mechanisms, init, outcome. PLAIN checks the configured
//! users or, as on the 0-9-1 side, a Pulsar token given as the password (`token:` prefix
//! optional); EXTERNAL logs in as the verified client certificate's common name, as on the 0-9-1
//! side; ANONYMOUS only when the gateway does not require logins.

use fe2o3_amqp_types::primitives::{Array, Symbol};
use fe2o3_amqp_types::sasl::{SaslCode, SaslInit, SaslMechanisms, SaslOutcome};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use gateway_security::{ConnectionSlot, Principal, Secret, TokenVerifier};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tracing::info;

use crate::frame::{self, TYPE_SASL};
use crate::frontend::Amqp1Config;

/// SASL frames are small, but a JWT in sasl-init can be larger than the 512 bytes the spec
/// allows before open; RS256 tokens often are.
const SASL_MAX_FRAME: u32 = 64 * 1024;

/// How long a token the gateway signs for a certificate login lives; it is signed again when
/// half of that has passed (as on the 0-9-1 side).
const CERTIFICATE_TOKEN_LIFETIME: Duration = Duration::from_secs(300);

/// Who a connection logged in as.
pub struct Login {
    pub user: String,
    credential: Option<Credential>,
    /// Held for the connection's life: its place in its principal's connection count.
    _slot: Option<ConnectionSlot>,
}

/// What Pulsar is asked with before the gateway acts for the client.
enum Credential {
    /// The client's own token (PLAIN).
    Token(Secret),
    /// A verified client certificate (EXTERNAL): the gateway signs short-lived tokens for its
    /// role with the secret key it checks tokens with.
    Certificate {
        role: String,
        verifier: Arc<TokenVerifier>,
        issued: Mutex<Option<Principal>>,
    },
}

impl Login {
    pub fn anonymous() -> Login {
        Login {
            user: "anonymous".into(),
            credential: None,
            _slot: None,
        }
    }

    /// The token Pulsar authorizes the client's operations with; `None` when the gateway acts
    /// with its own credentials (no token authentication).
    pub fn pulsar_token(&self) -> Option<Secret> {
        match self.credential.as_ref()? {
            Credential::Token(token) => Some(token.clone()),
            Credential::Certificate {
                role,
                verifier,
                issued,
            } => {
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_secs();
                let mut issued = issued.lock().expect("issued token lock");
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
}

/// Runs the SASL exchange after the SASL header. `None`: refused (the outcome was sent) or the
/// client sent something else; the caller closes the socket.
/// `client_certificate` is the common name of the certificate the TLS listener verified, if any:
/// only then is EXTERNAL offered.
pub async fn negotiate<R, W>(
    config: &Amqp1Config,
    client_certificate: Option<&str>,
    reader: &mut R,
    writer: &mut W,
) -> std::io::Result<Option<Login>>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut mechanisms = Vec::new();
    if client_certificate.is_some() {
        mechanisms.push(Symbol::from("EXTERNAL"));
    }
    mechanisms.push(Symbol::from("PLAIN"));
    if !config.auth_required {
        mechanisms.push(Symbol::from("ANONYMOUS"));
    }
    let offer = SaslMechanisms {
        sasl_server_mechanisms: Array::from(mechanisms),
    };
    writer.write_all(&encode(&offer)?).await?;
    let init = match frame::read_frame(reader, SASL_MAX_FRAME).await {
        Ok(f) if f.kind == TYPE_SASL => frame::decode_sasl::<SaslInit>(&f.body).ok(),
        _ => None,
    };
    let Some(init) = init else {
        // Not a sasl-init: the exchange cannot go on (§5.3.2); say so and close.
        writer
            .write_all(&encode(&outcome(SaslCode::SysPerm))?)
            .await?;
        return Ok(None);
    };
    let response = init
        .initial_response
        .map(|b| b.into_vec())
        .unwrap_or_default();
    let login = authenticate(
        config,
        init.mechanism.as_str(),
        &response,
        client_certificate,
    );
    let code = match &login {
        Ok(_) => SaslCode::Ok,
        Err(code) => {
            metrics::counter!("amqp1_authentication_failures_total").increment(1);
            code.clone()
        }
    };
    writer.write_all(&encode(&outcome(code))?).await?;
    Ok(login.ok())
}

fn outcome(code: SaslCode) -> SaslOutcome {
    SaslOutcome {
        code,
        additional_data: None,
    }
}

fn encode<T: serde::Serialize>(body: &T) -> std::io::Result<bytes::Bytes> {
    frame::encode(TYPE_SASL, 0, body).map_err(std::io::Error::other)
}

/// The login for `mechanism` and its initial response, or the outcome code refusing it.
pub fn authenticate(
    config: &Amqp1Config,
    mechanism: &str,
    response: &[u8],
    client_certificate: Option<&str>,
) -> Result<Login, SaslCode> {
    match mechanism {
        "ANONYMOUS" if !config.auth_required => return Ok(Login::anonymous()),
        "EXTERNAL" => return authenticate_certificate(config, client_certificate),
        "PLAIN" => {}
        other => {
            info!(
                mechanism = other,
                "AMQP 1.0 login refused: mechanism not offered"
            );
            return Err(SaslCode::Auth);
        }
    }
    // PLAIN (RFC 4616): authzid NUL authcid NUL passwd.
    let mut parts = response.split(|b| *b == 0);
    let _authzid = parts.next();
    let user = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let password = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    if !config.auth_required
        && config
            .users
            .iter()
            .any(|(u, p)| *u == user && *p == password)
    {
        return Ok(Login {
            user,
            credential: None,
            _slot: None,
        });
    }
    let Some(verifier) = &config.auth else {
        info!(%user, "AMQP 1.0 login refused: unknown user or wrong password");
        return Err(SaslCode::Auth);
    };
    let token = password.strip_prefix("token:").unwrap_or(&password);
    let principal = match verifier.verify(token) {
        Ok(principal) => principal,
        Err(reason) => {
            info!(%user, %reason, "AMQP 1.0 login refused");
            return Err(SaslCode::Auth);
        }
    };
    Ok(Login {
        _slot: connection_slot(config, &principal.role)?,
        user: principal.role,
        credential: Some(Credential::Token(principal.token)),
    })
}

/// EXTERNAL: the client is the common name of the certificate the TLS listener verified against
/// its client CA. With token authentication Pulsar still decides what that role may do, asked
/// with tokens the gateway signs; with only a public key it cannot sign, and EXTERNAL is refused.
fn authenticate_certificate(
    config: &Amqp1Config,
    client_certificate: Option<&str>,
) -> Result<Login, SaslCode> {
    let Some(role) = client_certificate.filter(|r| !r.is_empty()) else {
        info!("AMQP 1.0 EXTERNAL login refused: no verified client certificate with a common name");
        return Err(SaslCode::Auth);
    };
    let credential = match &config.auth {
        None => None,
        Some(verifier) if verifier.can_issue() => Some(Credential::Certificate {
            role: role.to_owned(),
            verifier: verifier.clone(),
            issued: Mutex::new(None),
        }),
        Some(_) => {
            info!(
                role,
                "AMQP 1.0 EXTERNAL login refused: the gateway checks tokens with a public key and cannot sign one for a certificate"
            );
            return Err(SaslCode::Auth);
        }
    };
    Ok(Login {
        _slot: connection_slot(config, role)?,
        user: role.to_owned(),
        credential,
    })
}

/// The login's place in its role's connection count (`limits.max_connections_per_principal`).
fn connection_slot(config: &Amqp1Config, role: &str) -> Result<Option<ConnectionSlot>, SaslCode> {
    let Some(limit) = &config.principal_connections else {
        return Ok(None);
    };
    match limit.acquire(role) {
        Some(slot) => Ok(Some(slot)),
        None => {
            info!(role, "AMQP 1.0 login refused: connection limit of the role");
            Err(SaslCode::SysTemp)
        }
    }
}
