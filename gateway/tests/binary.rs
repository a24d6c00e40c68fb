//! The `pulsar-gateway` binary as an operator runs it: `--check-config`, and a SIGTERM drain.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const BINARY: &str = env!("CARGO_BIN_EXE_pulsar-gateway");

/// The binary with a clean environment, so the developer's `PULSAR_GATEWAY_*` do not leak in.
fn gateway() -> Command {
    let mut command = Command::new(BINARY);
    command.env_clear();
    command
}

#[test]
fn check_config_prints_the_effective_config() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gateway.toml");
    std::fs::write(&file, "[kafka]\ndefault_partitions = 3\n").unwrap();
    let output = gateway()
        .args([
            "--check-config",
            "--config",
            file.to_str().unwrap(),
            "--kafka-listen",
            "0.0.0.0:19092",
        ])
        .env("PULSAR_GATEWAY_LOG_FORMAT", "json")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    for line in [
        "default_partitions = 3",
        "listen = \"0.0.0.0:19092\"",
        "format = \"json\"",
    ] {
        assert!(stdout.contains(line), "missing {line:?} in:\n{stdout}");
    }
}

#[test]
fn check_config_lists_every_error_and_fails() {
    let output = gateway()
        .args([
            "--check-config",
            "--kafka-listen",
            "bogus",
            "--backend",
            "pulsar",
        ])
        .env("PULSAR_GATEWAY_SHUTDOWN_GRACE_PERIOD", "forever")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(output.stdout.is_empty());
    for expected in [
        "kafka.listen (from flag --kafka-listen)",
        "limits.shutdown_grace_period (from environment variable PULSAR_GATEWAY_SHUTDOWN_GRACE_PERIOD)",
        "backend.pulsar_url: required",
        "backend.pulsar_admin_url: required",
    ] {
        assert!(stderr.contains(expected), "missing {expected:?} in:\n{stderr}");
    }
}

#[cfg(unix)]
#[test]
fn sigterm_drains_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = gateway()
        .args([
            "--kafka-listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ])
        .args([
            "--data-dir",
            dir.path().join("data").to_str().unwrap(),
            "--shutdown-grace-period",
            "5s",
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    // The log says where admin is listening; read stderr on a thread so nothing blocks.
    let (lines_tx, lines) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let mut log = Vec::new();
    let admin = loop {
        let line = lines
            .recv_timeout(Duration::from_secs(30))
            .expect("the gateway logs its admin address");
        log.push(line.clone());
        if line.contains("admin listening") {
            let addr = line
                .split("addr=")
                .nth(1)
                .and_then(|rest| rest.split_whitespace().next());
            break addr.expect("addr field").to_string();
        }
    };
    let livez = std::net::TcpStream::connect(&admin);
    assert!(
        livez.is_ok(),
        "admin at {admin} accepts connections; log: {log:?}"
    );

    let started = Instant::now();
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "the gateway did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "exit status {status:?}");
    let rest: Vec<String> = lines.try_iter().collect();
    assert!(
        rest.iter().any(|l| l.contains("SIGTERM")),
        "logs the signal: {rest:?}"
    );
}
