//! The fault proxy of `e2e_tests::fault_proxy` as a program, for long scripted runs (soak tests).
//!
//! Usage: fault-proxy --listen 127.0.0.1:PORT --target HOST:PORT --control 127.0.0.1:PORT
//!
//! The control port takes one command per line and answers each with one line, `ok`, the
//! status, or `error: ...`: `blackhole`, `heal`, `latency MS`, `bandwidth BYTES_PER_SEC|off`,
//! `reset`, `refuse on|off`, `status`. For example: `echo blackhole | nc -q1 127.0.0.1 PORT`.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use e2e_tests::fault_proxy::FaultProxy;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

const USAGE: &str =
    "usage: fault-proxy --listen 127.0.0.1:PORT --target HOST:PORT --control 127.0.0.1:PORT";
/// Longest control line taken; a longer one ends the control session.
const MAX_LINE: u64 = 1024;

#[tokio::main]
async fn main() -> ExitCode {
    let Some((listen, target, control)) = options(std::env::args().skip(1)) else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let (Ok(listen), Ok(control_addr)) = (listen.parse(), control.parse::<SocketAddr>()) else {
        eprintln!("fault-proxy: --listen and --control take IP:PORT\n{USAGE}");
        return ExitCode::from(2);
    };
    let target = match tokio::net::lookup_host(&target).await.map(|mut a| a.next()) {
        Ok(Some(target)) => target,
        _ => {
            eprintln!("fault-proxy: cannot resolve --target {target}");
            return ExitCode::from(2);
        }
    };
    let proxy = match FaultProxy::bind(listen, target).await {
        Ok(proxy) => Arc::new(proxy),
        Err(e) => {
            eprintln!("fault-proxy: cannot listen on {listen}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let control = match TcpListener::bind(control_addr).await {
        Ok(control) => control,
        Err(e) => {
            eprintln!("fault-proxy: cannot listen on {control_addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!(
        "fault-proxy: {} -> {target}, control on {}",
        proxy.addr(),
        control.local_addr().unwrap_or(control_addr)
    );
    loop {
        match control.accept().await {
            Ok((session, _)) => {
                tokio::spawn(control_session(session, Arc::clone(&proxy)));
            }
            // E.g. out of file descriptors: the proxy goes on; try again shortly.
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// `(listen, target, control)` from `--listen A --target B --control C`, in any order.
fn options(mut args: impl Iterator<Item = String>) -> Option<(String, String, String)> {
    let (mut listen, mut target, mut control) = (None, None, None);
    while let Some(flag) = args.next() {
        let slot = match flag.as_str() {
            "--listen" => &mut listen,
            "--target" => &mut target,
            "--control" => &mut control,
            _ => return None,
        };
        *slot = Some(args.next()?);
    }
    Some((listen?, target?, control?))
}

/// Answers control lines until the peer closes, errs or sends an overlong line.
async fn control_session(session: TcpStream, proxy: Arc<FaultProxy>) {
    let (read, mut write) = session.into_split();
    let mut read = BufReader::new(read);
    loop {
        let mut line = Vec::new();
        match (&mut read)
            .take(MAX_LINE)
            .read_until(b'\n', &mut line)
            .await
        {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        // Without a newline, the line is the last one (e.g. `printf status | nc`) or too long.
        let last = line.last() != Some(&b'\n');
        let answer = if last && line.len() as u64 >= MAX_LINE {
            "error: line too long".to_string()
        } else {
            proxy.control(&String::from_utf8_lossy(&line))
        };
        if write
            .write_all(format!("{answer}\n").as_bytes())
            .await
            .is_err()
            || last
        {
            return;
        }
    }
}
