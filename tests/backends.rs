//! Backend fixtures for the conformance suite.

use std::sync::Arc;

use async_trait_free::BoxFuture;
use gateway_core::{BackendRef, TopicName};
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
    /// Makes the topic's next entries go to a new ledger, as a broker does when a topic is
    /// loaded again. Holds no handle to the backend across it (the embedded one restarts).
    fn roll_ledger<'a>(&'a mut self, topic: &'a TopicName) -> BoxFuture<'a, ()>;
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

    /// The embedded backend starts a new ledger per topic when it opens.
    fn roll_ledger<'a>(&'a mut self, _topic: &'a TopicName) -> BoxFuture<'a, ()> {
        self.restart()
    }
}

/// The real Pulsar named by `PULSAR_URL` and `PULSAR_ADMIN_URL` (as printed by
/// `compat-suites/pulsar/start`), or `None` when they are not set.
pub fn pulsar_config() -> Option<PulsarConfig> {
    let pulsar = crate::TestPulsar::from_env()?;
    let mut config = PulsarConfig::plain(&pulsar.url, &pulsar.admin_url, pulsar.token.as_deref());
    config.tls.trust_certs_file = pulsar.trust_certs.map(Into::into);
    Some(config)
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

    /// Unloads the topic: the broker closes its ledger and opens a new one when it loads the
    /// topic again (at the next write).
    fn roll_ledger<'a>(&'a mut self, topic: &'a TopicName) -> BoxFuture<'a, ()> {
        let path = format!(
            "/admin/v2/persistent/{}/{}/{}/unload",
            topic.tenant, topic.namespace, topic.local
        );
        Box::pin(async move {
            let pulsar = crate::TestPulsar::from_env().expect("PULSAR_URL and PULSAR_ADMIN_URL");
            let (status, body) =
                tokio::task::spawn_blocking(move || pulsar.admin_call("PUT", &path, ""))
                    .await
                    .expect("admin call");
            assert!(
                (200..300).contains(&status),
                "unloading {topic}: {status} {body}"
            );
        })
    }
}
