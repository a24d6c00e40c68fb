//! Logs (`tracing` to stderr, text or JSON) and the process-wide Prometheus recorder.
//!
//! Both are global, and tests start several gateways in one process, so installing either twice
//! is harmless: the second call keeps what is there.

use std::io::IsTerminal;
use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Metric names of the gateway runtime (protocol metrics live in the translators).
pub mod names {
    /// Counter, label `listener`.
    pub const CONNECTIONS_ACCEPTED: &str = "pulsar_gateway_connections_accepted_total";
    /// Gauge, label `listener`.
    pub const CONNECTIONS_ACTIVE: &str = "pulsar_gateway_connections_active";
    /// Counter, labels `listener` and `reason` (`limit`).
    pub const CONNECTIONS_REFUSED: &str = "pulsar_gateway_connections_refused_total";
    /// Counter, label `listener`.
    pub const ACCEPT_ERRORS: &str = "pulsar_gateway_accept_errors_total";
    /// Counter, label `listener`: sessions still open when the shutdown grace period ran out.
    pub const CONNECTIONS_ABORTED: &str = "pulsar_gateway_connections_aborted_total";
    /// Gauge set to 1, label `version`.
    pub const BUILD_INFO: &str = "pulsar_gateway_build_info";
}

/// Installs the global `tracing` subscriber writing to stderr. `filter` is a level or a full
/// `EnvFilter` directive. Returns `Ok(false)` if a subscriber was already installed.
pub fn init_logging(
    filter: &str,
    format: LogFormat,
) -> Result<bool, tracing_subscriber::filter::ParseError> {
    let filter = EnvFilter::try_new(filter)?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let installed = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    Ok(installed.is_ok())
}

/// The handle that renders `/metrics`. The first call installs the Prometheus recorder globally
/// (without its own HTTP listener: the admin server serves it) and describes the gateway metrics.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let handle = match PrometheusBuilder::new().install_recorder() {
                Ok(handle) => handle,
                Err(e) => {
                    // Someone else (an embedding program) installed a recorder: serve an empty
                    // registry rather than fail.
                    tracing::warn!(error = %e, "metrics recorder already installed; /metrics will be empty");
                    PrometheusBuilder::new().build_recorder().handle()
                }
            };
            describe_metrics();
            metrics::gauge!(names::BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
            handle
        })
        .clone()
}

fn describe_metrics() {
    use metrics::{describe_counter, describe_gauge};
    describe_counter!(
        names::CONNECTIONS_ACCEPTED,
        "Connections accepted, per listener"
    );
    describe_gauge!(
        names::CONNECTIONS_ACTIVE,
        "Connections open now, per listener"
    );
    describe_counter!(
        names::CONNECTIONS_REFUSED,
        "Connections closed right after accept, per listener and reason"
    );
    describe_counter!(names::ACCEPT_ERRORS, "Failed accept calls, per listener");
    describe_counter!(
        names::CONNECTIONS_ABORTED,
        "Sessions closed because the shutdown grace period ran out"
    );
    describe_gauge!(
        names::BUILD_INFO,
        "Always 1; the label carries the gateway version"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logging_can_be_installed_twice_and_rejects_bad_filters() {
        // "off" keeps the test output clean; installing is what is under test.
        assert!(init_logging("off", LogFormat::Text).is_ok());
        assert_eq!(
            init_logging("off", LogFormat::Json).ok(),
            Some(false),
            "second install is a no-op"
        );
        assert!(init_logging("info,gateway_kafka=loud", LogFormat::Text).is_err());
    }

    #[test]
    fn metrics_handle_is_shared() {
        let handle = metrics_handle();
        metrics::counter!("pulsar_gateway_test_total").increment(3);
        let rendered = handle.render();
        assert!(rendered.contains("pulsar_gateway_build_info"), "{rendered}");
        assert!(metrics_handle()
            .render()
            .contains("pulsar_gateway_test_total 3"));
    }
}
