//! The gateway's own token for Pulsar, taken the way Pulsar's clients take it
//! (`AuthenticationToken`): the token itself, `token:<jwt>`, or `file:///path`. Tokens are
//! rotated by replacing the file, so a file is read again whenever it changes; the current token
//! goes into every new connection, every answer to a broker's AUTH_CHALLENGE and every admin
//! request. Nothing here ever prints a token.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use base64::Engine as _;
use gateway_core::{BackendError, Result};

#[derive(Clone)]
pub struct TokenSource(Arc<Source>);

enum Source {
    Literal(String),
    File {
        path: PathBuf,
        /// The token read last, and the file's stamp when it was read.
        read: Mutex<Option<(Stamp, String)>>,
    },
}

/// What tells a changed file apart: modification time, length and (on Unix) inode, since a
/// rotation that renames a new file into place may keep the time and length.
type Stamp = (Option<SystemTime>, u64, u64);

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl TokenSource {
    /// `eyJ...`, `token:eyJ...` or `file:///path/to/token`.
    pub fn parse(spec: &str) -> Result<TokenSource> {
        let spec = spec.trim();
        let source = if let Some(path) = spec.strip_prefix("file://") {
            if !path.starts_with('/') {
                return Err(BackendError::InvalidArgument(format!(
                    "token file {spec:?}: expected file:///absolute/path"
                )));
            }
            Source::File {
                path: PathBuf::from(path),
                read: Mutex::new(None),
            }
        } else {
            let token = spec.strip_prefix("token:").unwrap_or(spec);
            if token.is_empty() {
                return Err(BackendError::InvalidArgument(
                    "the Pulsar token is empty".into(),
                ));
            }
            Source::Literal(token.to_owned())
        };
        Ok(TokenSource(Arc::new(source)))
    }

    /// A token given as is (a client's own token).
    pub fn literal(token: &str) -> TokenSource {
        TokenSource(Arc::new(Source::Literal(token.to_owned())))
    }

    /// The token to present now. A file is read again when it changed; a file that cannot be
    /// read, or holds nothing, is an error that names the file.
    pub fn current(&self) -> Result<String> {
        match &*self.0 {
            Source::Literal(token) => Ok(token.clone()),
            Source::File { path, read } => {
                let stamp = stamp(path);
                let mut read = read.lock().expect("token lock");
                if let Some((seen, token)) = read.as_ref() {
                    if stamp.as_ref() == Some(seen) {
                        return Ok(token.clone());
                    }
                }
                let text = std::fs::read_to_string(path).map_err(|e| {
                    BackendError::NotAuthorized(format!(
                        "cannot read the Pulsar token file {}: {e}",
                        path.display()
                    ))
                })?;
                let token = text.trim();
                let token = token.strip_prefix("token:").unwrap_or(token).to_owned();
                if token.is_empty() {
                    return Err(BackendError::NotAuthorized(format!(
                        "the Pulsar token file {} is empty",
                        path.display()
                    )));
                }
                if read.is_some() {
                    tracing::info!(file = %path.display(), "Pulsar token file changed; using the new token");
                }
                if let Some(stamp) = stamp {
                    *read = Some((stamp, token.clone()));
                }
                Ok(token)
            }
        }
    }

    /// Names the token without showing it, for logs.
    pub fn describe(&self) -> String {
        match &*self.0 {
            Source::Literal(_) => "the configured Pulsar token".into(),
            Source::File { path, .. } => format!("the Pulsar token in {}", path.display()),
        }
    }
}

fn stamp(path: &std::path::Path) -> Option<Stamp> {
    let meta = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&meta);
    #[cfg(not(unix))]
    let inode = 0;
    Some((meta.modified().ok(), meta.len(), inode))
}

/// The `exp` claim of a JWT (seconds since the epoch), read without checking the signature:
/// the gateway may not hold the key, and only wants to say early that its token has expired.
/// `None` when the token has no `exp` (Pulsar accepts those) or is not a JWT.
pub fn expiry(token: &str) -> Option<u64> {
    let payload = token.split('.').nth(1)?;
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&json).ok()?;
    claims.get("exp")?.as_f64().map(|exp| exp.max(0.0) as u64)
}

/// `Err` naming the problem when the token's `exp` has passed.
pub fn check_not_expired(source: &TokenSource, token: &str) -> Result<()> {
    let Some(exp) = expiry(token) else {
        return Ok(());
    };
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    if exp <= now {
        return Err(BackendError::NotAuthorized(format!(
            "{} expired {} s ago (exp {exp}); Pulsar will refuse it",
            source.describe(),
            now - exp
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(claims: &str) -> String {
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        format!("{}.{}.c2ln", b64(r#"{"alg":"HS256"}"#), b64(claims))
    }

    #[test]
    fn literal_and_prefixed_tokens() {
        assert_eq!(TokenSource::parse("abc").unwrap().current().unwrap(), "abc");
        assert_eq!(
            TokenSource::parse("token:abc").unwrap().current().unwrap(),
            "abc"
        );
        assert!(TokenSource::parse("token:").is_err());
        assert!(TokenSource::parse("file://relative").is_err());
        assert!(!format!("{:?}", TokenSource::parse("secret").unwrap()).contains("secret"));
    }

    #[test]
    fn a_token_file_is_read_again_when_it_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "first\n").unwrap();
        let source = TokenSource::parse(&format!("file://{}", path.display())).unwrap();
        assert_eq!(source.current().unwrap(), "first");
        // Rotation as operators do it: a new file renamed into place.
        let next = dir.path().join("token.new");
        std::fs::write(&next, "token:second-token").unwrap();
        std::fs::rename(&next, &path).unwrap();
        assert_eq!(source.current().unwrap(), "second-token");
        std::fs::write(&path, "  ").unwrap();
        let e = source.current().unwrap_err().to_string();
        assert!(e.contains("is empty") && e.contains("token"), "{e}");
        std::fs::remove_file(&path).unwrap();
        assert!(source.current().is_err());
    }

    #[test]
    fn expiry_is_read_without_the_key() {
        assert_eq!(
            expiry(&jwt(r#"{"sub":"a","exp":1700000000}"#)),
            Some(1_700_000_000)
        );
        assert_eq!(expiry(&jwt(r#"{"sub":"a"}"#)), None);
        assert_eq!(expiry("not-a-jwt"), None);
        let source = TokenSource::literal("x");
        let expired = jwt(r#"{"sub":"a","exp":1000}"#);
        let e = check_not_expired(&source, &expired)
            .unwrap_err()
            .to_string();
        assert!(e.contains("expired") && !e.contains(&expired), "{e}");
        let later = jwt(r#"{"sub":"a","exp":99999999999}"#);
        assert!(check_not_expired(&source, &later).is_ok());
    }
}
