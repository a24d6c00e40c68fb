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
mod amqp_port;
pub mod config;
mod gateway;
mod health;
mod listener;
pub mod shutdown;
pub mod telemetry;
mod tls;

#[cfg(test)]
mod test_support;

pub use config::{check_config, CliArgs, Config, ConfigErrors};
pub use gateway::{start, start_with_backend, RunningGateway, StartError};
pub use shutdown::{ShutdownReport, ShutdownTrigger};

use std::process::ExitCode;

use anyhow::Context;
use tracing::info;

/// mimalloc reserves large allocations with `MAP_NORESERVE`: when a decoder reserves room for an
/// array count read off the wire (the `kafka-protocol` crate does, before decoding the elements),
/// a false count of billions costs address space, not memory, instead of aborting the process
/// under the default overcommit policy. `tests/kafka_bad_input.rs` checks this. It is also fast.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The whole command-line program: parse flags, load and check the configuration, set up
/// logging, run until a signal. Both `main.rs` and the test harness's binary call it.
pub fn cli_main() -> ExitCode {
    let cli = CliArgs::try_parse_from(std::env::args_os()).unwrap_or_else(|e| e.exit());
    let config = match Config::load(&cli, &|name| std::env::var(name).ok()) {
        Ok(config) => config,
        Err(errors) => {
            eprintln!("invalid configuration:\n{errors}");
            return ExitCode::from(2);
        }
    };
    if cli.check_config {
        #[allow(
            clippy::print_stdout,
            reason = "--check-config prints the effective config for the user"
        )]
        {
            print!("{}", config.to_toml());
        }
        return ExitCode::SUCCESS;
    }
    match serve(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn serve(config: Config) -> anyhow::Result<()> {
    telemetry::init_logging(&config.log.level, config.log.format).context("invalid log filter")?;
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let report = runtime.block_on(run(config))?;
    info!(aborted_sessions = report.aborted_sessions, "exiting");
    Ok(())
}

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
