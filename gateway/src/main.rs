//! The `pulsar-gateway` binary; everything it does lives in the library so tests can run it too.

fn main() -> std::process::ExitCode {
    pulsar_gateway::cli_main()
}
