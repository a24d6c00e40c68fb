//! The gateway binary, built inside this package so that end-to-end tests can start it as a child
//! process (Cargo only exposes binaries of the package under test to its tests).

fn main() -> std::process::ExitCode {
    pulsar_gateway::cli_main()
}
