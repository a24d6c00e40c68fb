//! The shared secret the instances of a fleet prove to each other on their internal listeners
//! (DESIGN.md §5 "Groups", forward mode; §8).
//!
//! Given as the secret itself or as `file:///path`. A file may hold several secrets, one a line:
//! the first is the one this instance presents, and every one is accepted, so that a fleet can
//! change its secret with two rolling restarts and no refused peer (add the new secret as a
//! second line everywhere, then make it the first and drop the old one).
//!
//! Candidates are compared in constant time, and every accepted secret is compared, so the time
//! a check takes says nothing about how much of a guess was right, nor which secret matched.

use std::fmt;

use subtle::ConstantTimeEq;

use crate::Secret;

/// Shortest secret accepted: anything shorter could be guessed by anyone who reaches the port.
pub const MIN_PEER_SECRET_LEN: usize = 16;

/// Why a secret cannot be used. The texts never contain the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerSecretError {
    #[error("cannot read {0}: {1}")]
    Unreadable(String, String),
    #[error("{0} holds no secret")]
    Empty(String),
    #[error("secret {0} has {1} bytes; at least {MIN_PEER_SECRET_LEN} are needed")]
    TooShort(String, usize),
}

/// The fleet's shared secret(s). Not `PartialEq`: compare candidates with [`PeerSecret::accepts`].
#[derive(Clone)]
pub struct PeerSecret {
    /// What this instance presents to its peers.
    presented: Secret,
    /// What this instance accepts from its peers (`presented` among them).
    accepted: Vec<Secret>,
}

impl fmt::Debug for PeerSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerSecret")
            .field("accepted", &self.accepted.len())
            .finish_non_exhaustive()
    }
}

impl PeerSecret {
    /// Reads `spec`: the secret itself, or `file:///path` (also `file:/path`) to a file holding
    /// one secret a line (blank lines and surrounding whitespace are ignored).
    pub fn load(spec: &str) -> Result<PeerSecret, PeerSecretError> {
        let spec = spec.trim();
        let (lines, origin): (Vec<String>, String) =
            match spec.strip_prefix("file://").or(spec.strip_prefix("file:")) {
                Some(path) => {
                    let text = std::fs::read_to_string(path)
                        .map_err(|e| PeerSecretError::Unreadable(path.to_owned(), e.to_string()))?;
                    (
                        text.lines().map(|l| l.trim().to_owned()).collect(),
                        path.to_owned(),
                    )
                }
                None => (vec![spec.to_owned()], "the given value".to_owned()),
            };
        let accepted: Vec<Secret> = lines
            .into_iter()
            .filter(|l| !l.is_empty())
            .map(Secret::new)
            .collect();
        let Some(presented) = accepted.first().cloned() else {
            return Err(PeerSecretError::Empty(origin));
        };
        for (i, s) in accepted.iter().enumerate() {
            if s.expose().len() < MIN_PEER_SECRET_LEN {
                let which = if accepted.len() == 1 {
                    "the secret".to_owned()
                } else {
                    format!("on line {} of {origin}", i + 1)
                };
                return Err(PeerSecretError::TooShort(which, s.expose().len()));
            }
        }
        Ok(PeerSecret {
            presented,
            accepted,
        })
    }

    /// The secret this instance presents to its peers.
    pub fn presented(&self) -> &Secret {
        &self.presented
    }

    /// Whether `candidate` is one of the accepted secrets; in constant time for a candidate of
    /// a given length (only the lengths of the secrets can show).
    pub fn accepts(&self, candidate: &[u8]) -> bool {
        let mut matched = subtle::Choice::from(0);
        for secret in &self.accepted {
            matched |= secret.expose().as_bytes().ct_eq(candidate);
        }
        matched.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "first-secret-0123456789";
    const B: &str = "second-secret-abcdefghij";

    #[test]
    fn a_literal_secret_is_presented_and_accepted() {
        let s = PeerSecret::load(&format!("  {A}\n")).unwrap();
        assert_eq!(s.presented().expose(), A);
        assert!(s.accepts(A.as_bytes()));
        assert!(!s.accepts(B.as_bytes()));
        assert!(!s.accepts(&A.as_bytes()[..A.len() - 1]), "a prefix");
        assert!(!s.accepts(format!("{A}x").as_bytes()), "a longer guess");
        assert!(!s.accepts(b""));
    }

    #[test]
    fn a_file_may_hold_the_next_secret_too() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("peer.secret");
        std::fs::write(&path, format!("\n{A}\n  {B}  \n\n")).unwrap();
        for spec in [
            format!("file://{}", path.display()),
            format!("file:{}", path.display()),
        ] {
            let s = PeerSecret::load(&spec).unwrap();
            assert_eq!(s.presented().expose(), A, "the first line is presented");
            assert!(s.accepts(A.as_bytes()) && s.accepts(B.as_bytes()));
            assert!(!s.accepts(b"first-secret-0123456789\nsecond"));
        }
    }

    #[test]
    fn unusable_secrets_are_refused_without_showing_them() {
        let short = "short-secret";
        let err = PeerSecret::load(short).unwrap_err();
        assert!(matches!(err, PeerSecretError::TooShort(_, 12)), "{err}");
        assert!(!err.to_string().contains(short), "{err}");
        assert!(matches!(
            PeerSecret::load("   ").unwrap_err(),
            PeerSecretError::Empty(_)
        ));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("peer.secret");
        std::fs::write(&path, format!("{A}\ntoo-short\n")).unwrap();
        let err = PeerSecret::load(&format!("file://{}", path.display())).unwrap_err();
        assert!(err.to_string().contains("line 2"), "{err}");
        assert!(!err.to_string().contains("too-short"), "{err}");
        std::fs::write(&path, "\n \n").unwrap();
        assert!(matches!(
            PeerSecret::load(&format!("file://{}", path.display())).unwrap_err(),
            PeerSecretError::Empty(_)
        ));
        let missing = dir.path().join("missing");
        assert!(matches!(
            PeerSecret::load(&format!("file://{}", missing.display())).unwrap_err(),
            PeerSecretError::Unreadable(..)
        ));
    }

    #[test]
    fn debug_never_shows_a_secret() {
        let s = PeerSecret::load(A).unwrap();
        let shown = format!("{s:?} {:?} {}", s.presented(), s.presented());
        assert!(!shown.contains(A), "{shown}");
    }
}
