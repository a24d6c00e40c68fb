//! A standalone Apache Pulsar a test owns (`compat-suites/pulsar/start` in a state directory of
//! its own, on fixed ports), for tests that stop, freeze or restart it: what a shared Pulsar
//! must not go through. Stopped, and its data deleted, when dropped.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;

use crate::{free_port, TestPulsar};

const SCRIPTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../compat-suites/pulsar");

pub struct OwnPulsar {
    state: PathBuf,
    _dir: tempfile::TempDir,
    /// Options given to `start` (besides the ports).
    options: Vec<String>,
    pub port: u16,
    pub web_port: u16,
    /// What `start` printed: `PULSAR_URL`, `PULSAR_ADMIN_URL`, and more with `--auth`,
    /// `--tls` or `--proxy`.
    printed: HashMap<String, String>,
}

impl OwnPulsar {
    /// Starts a Pulsar with `start`'s `options` (`--auth`, `--tls`, `--proxy`) on free ports.
    pub fn start(options: &[&str]) -> OwnPulsar {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut pulsar = OwnPulsar {
            state: dir.path().join("pulsar"),
            _dir: dir,
            options: options.iter().map(|o| o.to_string()).collect(),
            port: free_port(),
            web_port: free_port(),
            printed: HashMap::new(),
        };
        pulsar.resume();
        pulsar
    }

    /// Starts it again after `stop(true)`, with the same data on the same ports.
    pub fn resume(&mut self) {
        let mut args = self.options.clone();
        args.extend([
            "--port".into(),
            self.port.to_string(),
            "--web-port".into(),
            self.web_port.to_string(),
        ]);
        let printed = self.run("start", &args);
        self.printed = printed
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
    }

    /// A line `start` printed.
    pub fn var(&self, name: &str) -> Option<&str> {
        self.printed.get(name).map(String::as_str)
    }

    /// URLs, token and CA as the other tests take them.
    pub fn access(&self) -> TestPulsar {
        TestPulsar {
            url: self.var("PULSAR_URL").expect("PULSAR_URL").to_owned(),
            admin_url: self
                .var("PULSAR_ADMIN_URL")
                .expect("PULSAR_ADMIN_URL")
                .to_owned(),
            token: self.var("PULSAR_ADMIN_TOKEN").map(str::to_owned),
            trust_certs: self.var("PULSAR_TLS_TRUST_CERTS").map(str::to_owned),
        }
    }

    /// The broker's process (and the Pulsar proxy's, with `--proxy`).
    pub fn pids(&self) -> Vec<u32> {
        ["pid", "proxy.pid"]
            .iter()
            .filter_map(|f| std::fs::read_to_string(self.state.join(f)).ok())
            .filter_map(|p| p.trim().parse().ok())
            .collect()
    }

    /// Sends `signal` (`STOP`, `CONT`) to every Pulsar process: a frozen Pulsar keeps its TCP
    /// connections but answers nothing.
    pub fn signal(&self, signal: &str) {
        for pid in self.pids() {
            let status = Command::new("kill")
                .args([&format!("-{signal}"), &pid.to_string()])
                .status()
                .expect("kill");
            assert!(status.success(), "kill -{signal} {pid}");
        }
    }

    /// Stops it; `keep_data` lets `resume` bring the same data back.
    pub fn stop(&self, keep_data: bool) {
        let args: Vec<String> = if keep_data {
            vec!["--keep-data".into()]
        } else {
            vec![]
        };
        self.run("stop", &args);
    }

    /// The broker's log so far, and the Pulsar proxy's after it.
    pub fn logs(&self) -> String {
        ["pulsar.log", "proxy.log"]
            .iter()
            .filter_map(|f| std::fs::read_to_string(self.state.join(f)).ok())
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn run(&self, script: &str, args: &[String]) -> String {
        let out = Command::new(format!("{SCRIPTS}/{script}"))
            .args(args)
            .env("PULSAR_STATE_DIR", &self.state)
            .output()
            .unwrap_or_else(|e| panic!("run {script}: {e}"));
        assert!(
            out.status.success(),
            "{script} {args:?} failed: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for OwnPulsar {
    fn drop(&mut self) {
        // A frozen Pulsar would not stop.
        for pid in self.pids() {
            let _ = Command::new("kill")
                .args(["-CONT", &pid.to_string()])
                .status();
        }
        let _ = Command::new(format!("{SCRIPTS}/stop"))
            .env("PULSAR_STATE_DIR", &self.state)
            .output();
    }
}
