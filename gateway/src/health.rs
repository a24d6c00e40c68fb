//! The backend's health, checked in the background so that `/readyz` answers at once from the
//! last check (a probe never waits on a hung broker), and so that an operator gets one log line
//! when the backend stops being usable, naming the cause, and one when it is usable again,
//! whether or not anything probes `/readyz`.

use std::time::Duration;

use gateway_core::BackendRef;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{info, warn};

/// Checks run this often while the backend is ready, and more often while it is not, so that
/// recovery shows quickly (the first check runs at once).
const CHECK_EVERY_READY: Duration = Duration::from_secs(2);
const CHECK_EVERY_NOT_READY: Duration = Duration::from_millis(500);
/// A check that takes longer counts as failed.
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);
/// The same failure, with a different cause, is logged again at most this often.
const RELOG_AFTER: Duration = Duration::from_secs(60);

/// The result of the last check: `None` before the first one.
pub type Health = Option<Result<(), String>>;

/// Starts the checks; they stop when every receiver is gone.
pub fn monitor(backend: BackendRef) -> watch::Receiver<Health> {
    let (tx, rx) = watch::channel(None);
    tokio::spawn(async move {
        let mut log = Log::default();
        loop {
            let result = match tokio::time::timeout(CHECK_TIMEOUT, backend.readiness()).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(format!(
                    "the {} backend did not answer a health check within {CHECK_TIMEOUT:?}",
                    backend.kind()
                )),
            };
            log.note(backend.kind(), &result);
            let pause = if result.is_ok() {
                CHECK_EVERY_READY
            } else {
                CHECK_EVERY_NOT_READY
            };
            tx.send_replace(Some(result));
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = tx.closed() => return,
            }
        }
    });
    rx
}

/// Logs changes only.
#[derive(Default)]
struct Log {
    /// The cause logged last (`None`: ready, or nothing logged yet), and when.
    failing: Option<(String, Instant)>,
    checked: bool,
}

impl Log {
    fn note(&mut self, kind: &str, result: &Result<(), String>) {
        match (result, &self.failing) {
            (Ok(()), Some(_)) => {
                info!(backend = kind, "backend ready again");
                self.failing = None;
            }
            (Ok(()), None) if !self.checked => info!(backend = kind, "backend ready"),
            (Ok(()), None) => {}
            (Err(cause), Some((logged, at))) if logged == cause || at.elapsed() < RELOG_AFTER => {}
            (Err(cause), _) => {
                warn!(backend = kind, %cause, "backend not ready");
                self.failing = Some((cause.clone(), Instant::now()));
            }
        }
        self.checked = true;
    }
}
