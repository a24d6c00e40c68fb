//! TLS for the listeners (DESIGN.md §8), with rustls on the ring provider.
//!
//! - The certificate chain and key are PEM files; when either file changes on disk, the next
//!   connection gets the new ones (a failed reload keeps the old ones and logs why), so
//!   certificates rotate without a restart.
//! - With a client CA, every client must present a certificate that chains to it.
//! - The handshake runs in the connection's own task, under a timeout, so a client that never
//!   finishes it (a plaintext client on a TLS port) is closed instead of held.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tracing::{info, warn};

/// How long a client has to complete the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the listeners' certificate, key and (optionally) client CA come from.
#[derive(Debug, Clone, PartialEq)]
pub struct TlsFiles {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub client_ca_file: Option<PathBuf>,
}

/// Builds the TLS acceptor from the files, and rebuilds it when they change.
pub struct ReloadingAcceptor {
    files: TlsFiles,
    current: Mutex<Loaded>,
}

struct Loaded {
    acceptor: TlsAcceptor,
    /// Modification times the acceptor was built from.
    stamps: Vec<Option<SystemTime>>,
}

impl ReloadingAcceptor {
    /// Loads the files now: a gateway with unusable TLS files does not start.
    pub fn new(files: TlsFiles) -> Result<Arc<ReloadingAcceptor>, String> {
        let stamps = stamps(&files);
        let acceptor = build(&files)?;
        Ok(Arc::new(ReloadingAcceptor {
            files,
            current: Mutex::new(Loaded { acceptor, stamps }),
        }))
    }

    /// The acceptor for a new connection, rebuilt first if a file changed.
    pub fn acceptor(&self) -> TlsAcceptor {
        let now = stamps(&self.files);
        let mut current = self.current.lock().expect("tls lock");
        if now != current.stamps {
            match build(&self.files) {
                Ok(acceptor) => {
                    info!(cert = %self.files.cert_file.display(), "TLS certificate reloaded");
                    current.acceptor = acceptor;
                }
                Err(e) => {
                    warn!(error = %e, "TLS files changed but do not load; keeping the previous ones")
                }
            }
            // Tried once per change, not on every connection.
            current.stamps = now;
        }
        current.acceptor.clone()
    }

    /// Completes the server side of the handshake, bounded by [`HANDSHAKE_TIMEOUT`].
    pub async fn accept(&self, stream: TcpStream) -> io::Result<TlsStream<TcpStream>> {
        let acceptor = self.acceptor();
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
            Ok(result) => result,
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the TLS handshake did not finish in time",
            )),
        }
    }
}

fn stamps(files: &TlsFiles) -> Vec<Option<SystemTime>> {
    let paths = [
        Some(&files.cert_file),
        Some(&files.key_file),
        files.client_ca_file.as_ref(),
    ];
    paths
        .into_iter()
        .flatten()
        .map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
        .collect()
}

fn build(files: &TlsFiles) -> Result<TlsAcceptor, String> {
    let certs = certificates(&files.cert_file)?;
    let key = PrivateKeyDer::from_pem_file(&files.key_file)
        .map_err(|e| format!("no private key in {}: {e}", files.key_file.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = match &files.client_ca_file {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for cert in certificates(ca)? {
                roots
                    .add(cert)
                    .map_err(|e| format!("bad CA certificate in {}: {e}", ca.display()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| e.to_string())?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let config = builder.with_single_cert(certs, key).map_err(|e| {
        format!(
            "{} and {} do not form a usable certificate: {e}",
            files.cert_file.display(),
            files.key_file.display()
        )
    })?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("bad PEM in {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("no certificate in {}", path.display()));
    }
    Ok(certs)
}
