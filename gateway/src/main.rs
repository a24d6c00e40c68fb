//! The `pulsar-gateway` binary: parse the command line, set up logging, run the library.

use std::process::ExitCode;

use anyhow::Context;
use pulsar_gateway::{telemetry, CliArgs, Config};

fn main() -> ExitCode {
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
    let report = runtime.block_on(pulsar_gateway::run(config))?;
    tracing::info!(aborted_sessions = report.aborted_sessions, "exiting");
    Ok(())
}
