//! Graceful shutdown (DESIGN.md §9, §11): one `watch` drain signal for the whole gateway.
//!
//! When it turns true: the listeners stop accepting and close their sockets, `/readyz` answers
//! 503, sessions finish the requests they have read and return, and the gateway waits for them
//! up to the grace period before closing whatever is left. The admin server goes last, so a load
//! balancer sees "not ready" for the whole drain.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

/// Starts the drain of a running gateway; cheap to clone, e.g. into a signal task.
#[derive(Clone, Debug)]
pub struct ShutdownTrigger(pub(crate) Arc<watch::Sender<bool>>);

impl ShutdownTrigger {
    /// Begins the drain. Calling it again does nothing.
    pub fn trigger(&self) {
        self.0.send_replace(true);
    }

    pub fn is_triggered(&self) -> bool {
        *self.0.borrow()
    }
}

/// How a drain went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Sessions still open when the grace period ran out, and closed without finishing.
    pub aborted_sessions: usize,
    /// From the drain signal until everything stopped.
    pub drain_time: Duration,
}

/// Progress of a gateway through its life; `RunningGateway::stop_accepting` waits on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Phase {
    Running,
    /// The drain began and every protocol listener socket is closed.
    ListenersClosed,
    Stopped,
}

/// The process signals that start a drain: SIGTERM (orchestrators) and SIGINT (Ctrl-C).
/// Install them before the gateway reports ready, so an early SIGTERM is not lost to the
/// default action.
pub struct Signals {
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
}

impl Signals {
    pub fn install() -> io::Result<Signals> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(Signals {
                terminate: signal(SignalKind::terminate())?,
                interrupt: signal(SignalKind::interrupt())?,
            })
        }
        #[cfg(not(unix))]
        Ok(Signals {})
    }

    /// Waits for the next signal and returns its name.
    pub async fn recv(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.terminate.recv() => "SIGTERM",
                _ = self.interrupt.recv() => "SIGINT",
            }
        }
        #[cfg(not(unix))]
        {
            if tokio::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await;
            }
            "Ctrl-C"
        }
    }
}
