//! How a forwarding instance proves the fleet's shared secret (`kafka.internal_secret`) to the
//! internal listener of the instance it forwards to (DESIGN.md §5 "Groups", §8).
//!
//! The forward path already speaks Kafka, so it authenticates as a Kafka client would: a
//! SaslHandshake for PLAIN, then a SaslAuthenticate (KIP-43, KIP-152) whose PLAIN credentials
//! (RFC 4616) are the user [`PEER_USER`] and the secret as password. The internal listener
//! answers a wrong user or secret SASL_AUTHENTICATION_FAILED and closes the connection, as a
//! Kafka broker does; until a peer has authenticated it serves nothing but ApiVersions and SASL.

use bytes::Bytes;
use gateway_security::PeerSecret;

/// The PLAIN user a peer authenticates as. Tokens' roles can never be mistaken for it: the
/// internal listener checks no tokens, and client listeners no shared secret.
pub const PEER_USER: &str = "gateway-peer";

/// The PLAIN credentials a forwarding instance presents.
pub fn credentials(secret: &PeerSecret) -> Bytes {
    Bytes::from(format!("\0{PEER_USER}\0{}", secret.presented().expose()))
}

/// Checks PLAIN credentials presented on the internal listener. The reason never contains
/// what was presented.
pub fn check(secret: Option<&PeerSecret>, plain: &[u8]) -> Result<(), &'static str> {
    const REFUSED: &str = "peer authentication failed";
    // Without a secret no peer can prove anything (the gateway's configuration requires one
    // wherever there is an internal listener, so this only guards hand-built configurations).
    let secret = secret.ok_or(REFUSED)?;
    let mut parts = plain.split(|b| *b == 0);
    let (Some(authzid), Some(user), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("malformed PLAIN credentials");
    };
    // The password is compared even when the user is wrong, so the time taken shows neither.
    let accepted = secret.accepts(password);
    let user_ok = user == PEER_USER.as_bytes() && (authzid.is_empty() || authzid == user);
    if accepted && user_ok {
        Ok(())
    } else {
        Err(REFUSED)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "fleet-secret-0123456789";

    #[test]
    fn only_the_peer_user_with_an_accepted_secret_passes() {
        let secret = PeerSecret::load(SECRET).unwrap();
        assert_eq!(check(Some(&secret), &credentials(&secret)), Ok(()));
        let plain = |s: &str| s.as_bytes().to_vec();
        assert_eq!(
            check(
                Some(&secret),
                &plain(&format!("gateway-peer\0gateway-peer\0{SECRET}"))
            ),
            Ok(())
        );
        for refused in [
            format!("\0gateway-peer\0{SECRET}x"),
            "\0gateway-peer\0fleet-secret-012345678".to_owned(),
            "\0gateway-peer\0".to_owned(),
            format!("\0tenant-a/ns\0{SECRET}"),
            format!("\0gateway-peer\0token:{SECRET}"),
            format!("other\0gateway-peer\0{SECRET}"),
            format!("\0gateway-peer\0{SECRET}\0extra"),
            format!("gateway-peer{SECRET}"),
        ] {
            let err = check(Some(&secret), refused.as_bytes()).unwrap_err();
            assert!(!err.contains(SECRET), "{err}");
        }
        assert!(
            check(None, &credentials(&secret)).is_err(),
            "no secret configured: nothing passes"
        );
    }
}
