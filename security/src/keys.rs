//! Keys named the way Pulsar names them in `tokenSecretKey` and `tokenPublicKey`:
//! `file:///path/to/key` (the file's bytes) or `data:;base64,<base64>` (inline, any media type
//! before the `;base64`). A secret key is raw bytes, as `pulsar tokens create-secret-key` writes
//! it; a public key is X.509 SubjectPublicKeyInfo DER, as `pulsar tokens create-key-pair` writes
//! it, or the same in PEM.

use base64::Engine;
use jsonwebtoken::DecodingKey;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("a key must be given as file:///path or data:;base64,... (got '{0}')")]
    BadForm(String),
    #[error("cannot read the key file {0}: {1}")]
    Unreadable(String, String),
    #[error("the key is not valid: {0}")]
    Invalid(String),
}

/// The bytes of a key given as `file:` or `data:` URL. Errors name the file, never the key.
pub fn read_key(spec: &str) -> Result<Vec<u8>, KeyError> {
    let spec = spec.trim();
    if let Some(path) = spec.strip_prefix("file://").or(spec.strip_prefix("file:")) {
        return std::fs::read(path)
            .map_err(|e| KeyError::Unreadable(path.to_owned(), e.to_string()));
    }
    if let Some(rest) = spec.strip_prefix("data:") {
        let Some((media, data)) = rest.split_once(',') else {
            return Err(KeyError::BadForm("data: without a comma".into()));
        };
        if !media.ends_with(";base64") {
            return Err(KeyError::BadForm("data: that is not ;base64".into()));
        }
        return base64::engine::general_purpose::STANDARD
            .decode(data.trim())
            .map_err(|_| KeyError::Invalid("data: with invalid base64".into()));
    }
    // Show the form only: the text may be the key itself, pasted in the wrong place.
    let shown: String = spec.chars().take(5).collect();
    Err(KeyError::BadForm(format!("{shown}...")))
}

/// An RSA public key from SPKI DER, PKCS#1 DER, or PEM of either.
pub(crate) fn rsa_public_key(bytes: &[u8]) -> Result<DecodingKey, KeyError> {
    if bytes.starts_with(b"-----BEGIN") {
        return DecodingKey::from_rsa_pem(bytes).map_err(|e| KeyError::Invalid(e.to_string()));
    }
    // jsonwebtoken reads SPKI from PEM only; DER as Pulsar writes it is wrapped into PEM.
    let pem = format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    );
    DecodingKey::from_rsa_pem(pem.as_bytes())
        .or_else(|_| Ok::<_, KeyError>(DecodingKey::from_rsa_der(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_come_from_files_and_data_urls() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret.key");
        std::fs::write(&path, b"\x01\x02raw").unwrap();
        assert_eq!(
            read_key(&format!("file://{}", path.display())).unwrap(),
            b"\x01\x02raw"
        );
        assert_eq!(
            read_key(&format!("file:{}", path.display())).unwrap(),
            b"\x01\x02raw"
        );
        assert_eq!(read_key("data:;base64,AQJyYXc=").unwrap(), b"\x01\x02raw");
        assert_eq!(
            read_key("data:application/octet-stream;base64,AQJyYXc=").unwrap(),
            b"\x01\x02raw"
        );
    }

    #[test]
    fn bad_key_specs_are_refused_without_echoing_them() {
        assert!(matches!(
            read_key("file:///nonexistent/key"),
            Err(KeyError::Unreadable(..))
        ));
        assert!(matches!(
            read_key("data:;base64,!!!"),
            Err(KeyError::Invalid(_))
        ));
        assert!(matches!(
            read_key("data:text/plain,abc"),
            Err(KeyError::BadForm(_))
        ));
        let err = read_key("my-very-secret-key-text").unwrap_err().to_string();
        assert!(!err.contains("secret-key-text"), "{err}");
    }
}
