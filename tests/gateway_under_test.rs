//! The gateway binary, built inside this package so that end-to-end tests can start it as a child
//! process (Cargo only exposes binaries of the package under test to its tests).

fn main() -> std::process::ExitCode {
    let cli = pulsar_gateway::CliArgs::try_parse_from(std::env::args_os()).unwrap_or_else(|e| e.exit());
    let config = pulsar_gateway::Config::load(&cli, &|name| std::env::var(name).ok()).expect("config");
    pulsar_gateway::telemetry::init_logging(&config.log.level, config.log.format).expect("logging");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(pulsar_gateway::run(config)).expect("run");
    std::process::ExitCode::SUCCESS
}
