//! Client authentication shared by every listener (DESIGN.md §8): the JWTs Apache Pulsar issues,
//! checked the way Pulsar's token provider checks them, so one token works against Pulsar and
//! through the gateway.
//!
//! - HS256 with a secret key, or RS256 with a public key, configured as Pulsar configures them
//!   (`file:///path` or `data:;base64,...`).
//! - `sub` is the role. `exp` is enforced when present; a token without it never expires, as in
//!   Pulsar (and no clock skew is allowed, Pulsar's default).
//!
//! Tokens and keys are wrapped in [`Secret`], whose `Debug` and `Display` never show them.
//!
//! Instances of a fleet prove a shared [`PeerSecret`] to each other on their internal listeners.

mod keys;
mod limits;
mod peer;
mod secret;

pub use keys::{read_key, KeyError};
pub use limits::{ConnectionSlot, PrincipalConnections};
pub use peer::{PeerSecret, PeerSecretError, MIN_PEER_SECRET_LEN};
pub use secret::Secret;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::Deserialize;

/// Who a client proved to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The token's `sub`: the role Pulsar authorizes.
    pub role: String,
    /// The token itself, for passing the client's identity on to Pulsar.
    pub token: Secret,
    /// When the token expires (seconds since the epoch), if it does.
    pub expires_at: Option<u64>,
}

/// Why a token was refused. The texts never contain the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no token was given")]
    Missing,
    #[error("the token is malformed")]
    Malformed,
    #[error("the token's signature does not verify")]
    BadSignature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token has no subject (role)")]
    NoRole,
    #[error("the token is signed with {0:?}, which this gateway is not configured for")]
    WrongAlgorithm(Algorithm),
}

/// Which key checks tokens.
#[derive(Clone)]
pub enum TokenKey {
    /// HS256 (also HS384 and HS512) with Pulsar's `tokenSecretKey` (raw bytes).
    Secret(Vec<u8>),
    /// RS256 (also RS384 and RS512) with Pulsar's `tokenPublicKey` (DER or PEM).
    Public(Vec<u8>),
}

/// Checks tokens against one key.
pub struct TokenVerifier {
    key: DecodingKey,
    algorithms: Vec<Algorithm>,
    /// With a secret key the gateway can also sign: it vouches for a client it authenticated
    /// another way (a client certificate) with a short-lived token Pulsar checks as any other.
    signing: Option<EncodingKey>,
}

impl std::fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenVerifier")
            .field("algorithms", &self.algorithms)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct Claims {
    sub: Option<String>,
    exp: Option<u64>,
}

impl TokenVerifier {
    pub fn new(key: TokenKey) -> Result<TokenVerifier, KeyError> {
        Ok(match key {
            TokenKey::Secret(secret) => {
                if secret.is_empty() {
                    return Err(KeyError::Invalid("the secret key is empty".into()));
                }
                TokenVerifier {
                    key: DecodingKey::from_secret(&secret),
                    algorithms: vec![Algorithm::HS256, Algorithm::HS384, Algorithm::HS512],
                    signing: Some(EncodingKey::from_secret(&secret)),
                }
            }
            TokenKey::Public(bytes) => TokenVerifier {
                key: keys::rsa_public_key(&bytes)?,
                algorithms: vec![Algorithm::RS256, Algorithm::RS384, Algorithm::RS512],
                signing: None,
            },
        })
    }

    /// Whether this verifier can sign tokens (it holds a secret key).
    pub fn can_issue(&self) -> bool {
        self.signing.is_some()
    }

    /// A token for `role` that expires after `lifetime`, signed (HS256) with the secret key;
    /// `None` with a public key, which cannot sign.
    pub fn issue(&self, role: &str, lifetime: std::time::Duration) -> Option<Principal> {
        let signing = self.signing.as_ref()?;
        let expires_at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .ok()?
            .as_secs()
            + lifetime.as_secs().max(1);
        let claims = serde_json::json!({ "sub": role, "exp": expires_at });
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, signing).ok()?;
        Some(Principal {
            role: role.to_owned(),
            token: Secret::new(token),
            expires_at: Some(expires_at),
        })
    }

    /// The principal a token names, if its signature and times check out.
    pub fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        let token = token.trim();
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::Malformed)?;
        if !self.algorithms.contains(&header.alg) {
            return Err(AuthError::WrongAlgorithm(header.alg));
        }
        let mut validation = Validation::new(header.alg);
        validation.algorithms = self.algorithms.clone();
        // Pulsar requires no claim but `sub`, checks no audience unless configured to, and
        // allows no clock skew.
        validation.required_spec_claims.clear();
        validation.validate_aud = false;
        validation.validate_nbf = true;
        validation.leeway = 0;
        let claims = jsonwebtoken::decode::<Claims>(token, &self.key, &validation)
            .map_err(|e| {
                use jsonwebtoken::errors::ErrorKind as K;
                match e.kind() {
                    K::InvalidSignature => AuthError::BadSignature,
                    K::ExpiredSignature => AuthError::Expired,
                    K::ImmatureSignature => AuthError::NotYetValid,
                    K::InvalidAlgorithm => AuthError::WrongAlgorithm(header.alg),
                    _ => AuthError::Malformed,
                }
            })?
            .claims;
        let role = claims
            .sub
            .filter(|s| !s.is_empty())
            .ok_or(AuthError::NoRole)?;
        Ok(Principal {
            role,
            token: Secret::new(token),
            expires_at: claims.exp,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::encode;
    use serde_json::json;

    const SECRET: &str = "a-secret-of-some-length-0123456789";
    const RSA_PRIVATE: &[u8] = include_bytes!("../tests/fixtures/rsa-private.pem");
    const OTHER_PRIVATE: &[u8] = include_bytes!("../tests/fixtures/other-private.pem");
    const RSA_PUBLIC_DER: &[u8] = include_bytes!("../tests/fixtures/rsa-public.der");
    const RSA_PUBLIC_PEM: &[u8] = include_bytes!("../tests/fixtures/rsa-public.pem");

    fn now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    fn hs(claims: serde_json::Value, secret: &str) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    fn rs(claims: serde_json::Value, private: &[u8]) -> String {
        encode(
            &Header::new(Algorithm::RS256),
            &claims,
            &EncodingKey::from_rsa_pem(private).unwrap(),
        )
        .unwrap()
    }

    fn secret_verifier() -> TokenVerifier {
        TokenVerifier::new(TokenKey::Secret(SECRET.as_bytes().to_vec())).unwrap()
    }

    #[test]
    fn a_secret_key_token_names_its_role() {
        let token = hs(json!({"sub": "tenant-a-client"}), SECRET);
        let principal = secret_verifier().verify(&token).unwrap();
        assert_eq!(principal.role, "tenant-a-client");
        assert_eq!(principal.expires_at, None, "no exp: it never expires");
        assert_eq!(principal.token.expose(), token);
    }

    #[test]
    fn exp_is_enforced_when_present() {
        let v = secret_verifier();
        let live = hs(json!({"sub": "r", "exp": now() + 600}), SECRET);
        assert_eq!(v.verify(&live).unwrap().expires_at, Some(now() + 600));
        let dead = hs(json!({"sub": "r", "exp": now() - 1}), SECRET);
        assert_eq!(v.verify(&dead), Err(AuthError::Expired));
        let early = hs(json!({"sub": "r", "nbf": now() + 600}), SECRET);
        assert_eq!(v.verify(&early), Err(AuthError::NotYetValid));
    }

    #[test]
    fn bad_tokens_are_refused_with_their_reason() {
        let v = secret_verifier();
        assert_eq!(
            v.verify(&hs(json!({"sub": "r"}), "another-secret")),
            Err(AuthError::BadSignature)
        );
        assert_eq!(v.verify(""), Err(AuthError::Missing));
        assert_eq!(v.verify("  "), Err(AuthError::Missing));
        assert_eq!(v.verify("not-a-token"), Err(AuthError::Malformed));
        assert_eq!(v.verify("a.b.c"), Err(AuthError::Malformed));
        assert_eq!(
            v.verify(&hs(json!({"role": "r"}), SECRET)),
            Err(AuthError::NoRole)
        );
        assert_eq!(
            v.verify(&hs(json!({"sub": ""}), SECRET)),
            Err(AuthError::NoRole)
        );
        // An RS256 token where HS256 is configured is refused before any key is tried.
        assert_eq!(
            v.verify(&rs(json!({"sub": "r"}), RSA_PRIVATE)),
            Err(AuthError::WrongAlgorithm(Algorithm::RS256))
        );
        // A token whose signature part was cut off.
        let token = hs(json!({"sub": "r"}), SECRET);
        let unsigned = &token[..token.rfind('.').unwrap() + 1];
        assert!(v.verify(unsigned).is_err());
    }

    #[test]
    fn a_public_key_checks_rs256_tokens_in_der_and_pem() {
        for public in [RSA_PUBLIC_DER, RSA_PUBLIC_PEM] {
            let v = TokenVerifier::new(TokenKey::Public(public.to_vec())).unwrap();
            let token = rs(json!({"sub": "rsa-role"}), RSA_PRIVATE);
            assert_eq!(v.verify(&token).unwrap().role, "rsa-role");
            assert_eq!(
                v.verify(&rs(json!({"sub": "rsa-role"}), OTHER_PRIVATE)),
                Err(AuthError::BadSignature)
            );
            // The HS256 trick (signing with the public key as a secret) is refused.
            let forged = encode(
                &Header::new(Algorithm::HS256),
                &json!({"sub": "admin"}),
                &EncodingKey::from_secret(public),
            )
            .unwrap();
            assert_eq!(
                v.verify(&forged),
                Err(AuthError::WrongAlgorithm(Algorithm::HS256))
            );
        }
    }

    #[test]
    fn errors_never_show_the_token() {
        let token = hs(json!({"sub": "r", "exp": 1}), SECRET);
        let err = secret_verifier().verify(&token).unwrap_err();
        assert!(!format!("{err} {err:?}").contains(&token));
        let principal = secret_verifier()
            .verify(&hs(json!({"sub": "r"}), SECRET))
            .unwrap();
        assert!(!format!("{principal:?}").contains(principal.token.expose()));
    }

    #[test]
    fn an_issued_token_verifies_as_its_role_and_expires() {
        let verifier = TokenVerifier::new(TokenKey::Secret(SECRET.as_bytes().to_vec())).unwrap();
        let issued = verifier
            .issue("cert-role", std::time::Duration::from_secs(60))
            .expect("a secret key signs");
        let checked = verifier.verify(issued.token.expose()).unwrap();
        assert_eq!(checked.role, "cert-role");
        let exp = checked.expires_at.unwrap();
        assert!(exp > now() && exp <= now() + 60, "{exp}");
        let public = TokenVerifier::new(TokenKey::Public(RSA_PUBLIC_PEM.to_vec())).unwrap();
        assert!(
            public
                .issue("cert-role", std::time::Duration::from_secs(60))
                .is_none(),
            "a public key cannot sign"
        );
    }
}
