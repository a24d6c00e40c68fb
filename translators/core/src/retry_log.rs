//! Logging for loops that retry in the background (announcements, log tailing, consumers):
//! while the backend is down they fail every second or so, and an operator needs the first
//! failure and the recovery, not a line per attempt. `/readyz` and its log line already say
//! that the backend is down.

/// Remembers whether the last attempt failed.
#[derive(Debug, Default)]
pub struct RetryLog {
    failing: bool,
}

impl RetryLog {
    /// A failed attempt: at `warn` the first time after a success, at `debug` after that.
    pub fn failed(&mut self, what: impl std::fmt::Display, error: &dyn std::fmt::Display) {
        if self.failing {
            tracing::debug!(%error, "{what} failed again; retrying");
        } else {
            tracing::warn!(%error, "{what} failed; retrying");
            self.failing = true;
        }
    }

    /// A successful attempt: says so once after failures (cheap otherwise: `what` is only
    /// formatted when logged).
    pub fn succeeded(&mut self, what: impl std::fmt::Display) {
        if std::mem::take(&mut self.failing) {
            tracing::info!("{what} works again");
        }
    }
}
