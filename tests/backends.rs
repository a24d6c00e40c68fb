//! Backend fixtures for the conformance suite.

use std::sync::Arc;

use async_trait_free::BoxFuture;
use gateway_core::BackendRef;
use gateway_embedded::EmbeddedBackend;
use gateway_pulsar::{PulsarBackend, PulsarConfig};

/// Local stand-in for `async fn` in a dyn-compatible trait.
mod async_trait_free {
    pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;
}

/// A backend under test that can be restarted in place (same data, new process state).
pub trait BackendFixture: Send {
    fn backend(&self) -> BackendRef;
    fn restart(&mut self) -> BoxFuture<'_, ()>;
}

pub struct EmbeddedFixture {
    dir: tempfile::TempDir,
    backend: Option<Arc<EmbeddedBackend>>,
}

impl EmbeddedFixture {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let backend = EmbeddedBackend::open(dir.path()).expect("open embedded backend");
        EmbeddedFixture {
            dir,
            backend: Some(backend),
        }
    }
}

impl Default for EmbeddedFixture {
    fn default() -> Self {
        Self::new()
    }
}

impl BackendFixture for EmbeddedFixture {
    fn backend(&self) -> BackendRef {
        self.backend.clone().expect("backend is open")
    }

    fn restart(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let old = self.backend.take().expect("backend is open");
            // Dropping the last handle closes the store; it must be the last one.
            assert_eq!(
                Arc::strong_count(&old),
                1,
                "a handle to the old backend is still alive"
            );
            tokio::task::spawn_blocking(move || drop(old))
                .await
                .expect("close");
            self.backend =
                Some(EmbeddedBackend::open(self.dir.path()).expect("reopen embedded backend"));
        })
    }
}

/// The real Pulsar named by `PULSAR_URL` and `PULSAR_ADMIN_URL` (as printed by
/// `compat-suites/pulsar/start`), or `None` when they are not set.
pub fn pulsar_config() -> Option<PulsarConfig> {
    Some(PulsarConfig {
        service_url: std::env::var("PULSAR_URL").ok()?,
        admin_url: std::env::var("PULSAR_ADMIN_URL").ok()?,
        token: std::env::var("PULSAR_ADMIN_TOKEN").ok(),
        compression: gateway_pulsar::proto::compression::LZ4,
    })
}

/// A real Pulsar; restarting it means a new gateway-side backend (new connections, no state).
pub struct PulsarFixture {
    config: PulsarConfig,
    backend: Arc<PulsarBackend>,
}

impl PulsarFixture {
    pub fn new(config: PulsarConfig) -> Self {
        let backend = PulsarBackend::new(config.clone()).expect("pulsar backend");
        PulsarFixture { config, backend }
    }
}

impl BackendFixture for PulsarFixture {
    fn backend(&self) -> BackendRef {
        self.backend.clone()
    }

    fn restart(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            self.backend = PulsarBackend::new(self.config.clone()).expect("pulsar backend");
        })
    }
}
