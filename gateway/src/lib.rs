//! pulsar-gateway's runtime: configuration, listeners, admin HTTP and graceful shutdown
//! (DESIGN.md §3, §9, §11). `main.rs` only parses the command line and calls [`run`]; tests start
//! gateways in-process with [`start`].
//!
//! ```no_run
//! # async fn example() -> Result<(), pulsar_gateway::StartError> {
//! let gateway = pulsar_gateway::start(pulsar_gateway::Config::for_tests("/tmp/gw-data")).await?;
//! println!("kafka on {}, admin on {}", gateway.kafka_addr(), gateway.admin_addr());
//! let report = gateway.shutdown().await;
//! assert_eq!(report.aborted_sessions, 0);
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]

mod admin;
pub mod config;
mod gateway;
mod listener;
pub mod shutdown;
pub mod telemetry;

#[cfg(test)]
mod test_support;

pub use config::{check_config, CliArgs, Config, ConfigErrors};
pub use gateway::{start, start_with_backend, RunningGateway, StartError};
pub use shutdown::{ShutdownReport, ShutdownTrigger};

use tracing::info;

/// Runs a gateway until SIGTERM or Ctrl-C, then drains it; what the binary does after parsing
/// its configuration. Logging is the caller's business (see [`telemetry::init_logging`]).
pub async fn run(config: Config) -> Result<ShutdownReport, StartError> {
    let mut signals = shutdown::Signals::install().map_err(StartError::Signals)?;
    let gateway = start(config).await?;
    let trigger = gateway.shutdown_trigger();
    tokio::spawn(async move {
        let signal = signals.recv().await;
        info!(signal, "shutdown requested");
        trigger.trigger();
    });
    Ok(gateway.wait().await)
}
