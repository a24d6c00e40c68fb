//! TLS toward Pulsar (brokers, proxies and the admin REST API), with rustls on the ring
//! provider, as on the gateway's own listeners.
//!
//! - The server's certificate is verified against the system's roots, or against the CA bundle
//!   the operator names (Pulsar's `tlsTrustCertsFilePath`), and its name against the host the
//!   gateway connects to; SNI carries that host.
//! - A client certificate and key make it mutual TLS; with Pulsar's `AuthenticationTls` the
//!   certificate is the gateway's credential.
//! - `allow_insecure` accepts any certificate (Pulsar's `tlsAllowInsecureConnection`): the
//!   connection is encrypted but anyone in the path can read it. For tests only.
//! - The files are read again when they change (`TlsSource`): certificates toward Pulsar are
//!   rotated like the token, often short-lived ones issued by cert-manager or Vault.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use gateway_core::{BackendError, Result};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// Where the gateway's TLS settings toward Pulsar come from.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TlsOptions {
    /// PEM CA certificates that sign the brokers' certificates; `None`: the system's roots.
    pub trust_certs_file: Option<PathBuf>,
    /// PEM certificate chain and key the gateway presents (mutual TLS).
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// Accept any server certificate. Unsafe.
    pub allow_insecure: bool,
}

impl TlsOptions {
    /// The client configuration these options describe, read from the files now.
    pub fn client_config(&self) -> Result<Arc<ClientConfig>> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| invalid(e.to_string()))?;
        let builder = if self.allow_insecure {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnything(provider)))
        } else {
            builder.with_root_certificates(self.roots()?)
        };
        let config = match (&self.cert_file, &self.key_file) {
            (Some(cert), Some(key)) => {
                let key = PrivateKeyDer::from_pem_file(key)
                    .map_err(|e| invalid(format!("no private key in {}: {e}", key.display())))?;
                builder
                    .with_client_auth_cert(certificates(cert)?, key)
                    .map_err(|e| invalid(format!("client certificate {}: {e}", cert.display())))?
            }
            (None, None) => builder.with_no_client_auth(),
            _ => {
                return Err(invalid(
                    "a client certificate needs both its certificate and its key file".into(),
                ))
            }
        };
        Ok(Arc::new(config))
    }

    /// Whether a client certificate is configured (Pulsar's `AuthenticationTls`).
    pub fn has_client_certificate(&self) -> bool {
        self.cert_file.is_some()
    }

    fn roots(&self) -> Result<RootCertStore> {
        let mut roots = RootCertStore::empty();
        match &self.trust_certs_file {
            Some(file) => {
                for cert in certificates(file)? {
                    roots.add(cert).map_err(|e| {
                        invalid(format!("bad CA certificate in {}: {e}", file.display()))
                    })?;
                }
            }
            None => {
                let found = rustls_native_certs::load_native_certs();
                for error in &found.errors {
                    tracing::debug!(%error, "a system CA certificate could not be read");
                }
                let (added, _ignored) = roots.add_parsable_certificates(found.certs);
                if added == 0 {
                    return Err(invalid(
                        "no system CA certificates found; name the CA that signs the brokers' \
                         certificates with --pulsar-tls-trust-certs-file"
                            .into(),
                    ));
                }
            }
        }
        Ok(roots)
    }
}

/// How often `TlsSource::current` looks at the files at most.
const RECHECK: Duration = Duration::from_secs(1);

/// The client configuration of a set of `TlsOptions`, built again when one of its files
/// changes; connections made after that use the new certificates, established ones keep theirs
/// (as the broker's own `tlsCertRefreshCheckDurationSec` does). Files that no longer make a
/// usable configuration (a rotation caught halfway, a bad file) leave the last good one in use,
/// with one warning until they do again.
pub struct TlsSource {
    options: TlsOptions,
    state: Mutex<Loaded>,
}

struct Loaded {
    config: Arc<ClientConfig>,
    /// What the files looked like when `config` was built (or last failed to build).
    stamps: Vec<Option<(SystemTime, u64)>>,
    checked: Instant,
}

impl TlsSource {
    /// Reads the files now: unusable ones are a configuration error.
    pub fn new(options: TlsOptions) -> Result<Arc<TlsSource>> {
        let stamps = options.stamps();
        let config = options.client_config()?;
        Ok(Arc::new(TlsSource {
            options,
            state: Mutex::new(Loaded {
                config,
                stamps,
                checked: Instant::now(),
            }),
        }))
    }

    /// The configuration to connect with now.
    pub fn current(&self) -> Arc<ClientConfig> {
        let mut state = self.state.lock().expect("tls source lock");
        if state.checked.elapsed() < RECHECK {
            return state.config.clone();
        }
        state.checked = Instant::now();
        let stamps = self.options.stamps();
        if stamps != state.stamps {
            state.stamps = stamps;
            match self.options.client_config() {
                Ok(config) => {
                    tracing::info!("TLS files toward Pulsar changed; new connections use them");
                    state.config = config;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "TLS files toward Pulsar changed but cannot be used; connections keep the previous ones")
                }
            }
        }
        state.config.clone()
    }

    pub fn options(&self) -> &TlsOptions {
        &self.options
    }
}

impl TlsOptions {
    /// Modification time and length of each configured file (`None`: unreadable), to notice
    /// a change. A CA bundle replaced within the same second by one of the same length goes
    /// unnoticed; rotations rename a new file into place, which changes both in practice.
    fn stamps(&self) -> Vec<Option<(SystemTime, u64)>> {
        [&self.trust_certs_file, &self.cert_file, &self.key_file]
            .into_iter()
            .flatten()
            .map(|path| {
                let meta = std::fs::metadata(path).ok()?;
                Some((meta.modified().ok()?, meta.len()))
            })
            .collect()
    }
}

fn invalid(message: String) -> BackendError {
    BackendError::InvalidArgument(message)
}

/// The certificates of a PEM file, at least one.
pub fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| invalid(format!("cannot read {}: {e}", path.display())))?
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| invalid(format!("bad PEM in {}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(invalid(format!("no certificate in {}", path.display())));
    }
    Ok(certs)
}

/// The name a TLS connection to `host` verifies and sends as SNI (an IP address is checked
/// against the certificate's IP addresses, and sends no SNI).
pub fn server_name(host: &str) -> Result<ServerName<'static>> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_owned())
        .map_err(|_| invalid(format!("{host:?} is not a valid TLS server name")))
}

/// `--pulsar-tls-allow-insecure`: signatures are still checked, the certificate's issuer and
/// name are not.
#[derive(Debug)]
struct AcceptAnything(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAnything {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
