//! Malformed and hostile Kafka input: each gets a proper error or a clean close, no allocation of
//! a claimed size, and other connections keep being served.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use e2e_tests::InProcessGateway;

/// An ApiVersions v0 request (header v1: key, version, correlation id, client id).
fn api_versions_request(version: i16, correlation: i32) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&18i16.to_be_bytes());
    body.extend_from_slice(&version.to_be_bytes());
    body.extend_from_slice(&correlation.to_be_bytes());
    body.extend_from_slice(&4i16.to_be_bytes());
    body.extend_from_slice(b"test");
    let mut frame = (body.len() as i32).to_be_bytes().to_vec();
    frame.extend(body);
    frame
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// Reads one response frame: (correlation id, the rest).
fn read_response(s: &mut TcpStream) -> std::io::Result<(i32, Vec<u8>)> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len)?;
    let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
    s.read_exact(&mut body)?;
    Ok((
        i32::from_be_bytes(body[..4].try_into().unwrap()),
        body[4..].to_vec(),
    ))
}

/// The server closed the connection (EOF or reset), rather than hanging.
fn assert_closed(s: &mut TcpStream) {
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Ok(0) => {}
        Ok(n) => panic!("expected a close, got {n} bytes"),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("expected a close, got {e}"),
    }
}

fn assert_still_served(addr: SocketAddr) {
    let mut s = connect(addr);
    s.write_all(&api_versions_request(0, 77)).unwrap();
    let (correlation, body) =
        read_response(&mut s).expect("healthy connections are still answered");
    assert_eq!(correlation, 77);
    assert_eq!(
        i16::from_be_bytes(body[..2].try_into().unwrap()),
        0,
        "no error"
    );
}

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<u64>()
        .unwrap()
        * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_frames_are_closed_and_others_keep_working() {
    let gw = InProcessGateway::start().await;
    let addr = gw.gateway.kafka_addr();
    tokio::task::spawn_blocking(move || {
        // Garbage: the first four bytes read as a nonsense length.
        let mut s = connect(addr);
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        assert_closed(&mut s);
        assert_still_served(addr);

        // A 2 GiB length prefix: refused before anything is allocated.
        let mut s = connect(addr);
        s.write_all(&i32::MAX.to_be_bytes()).unwrap();
        assert_closed(&mut s);
        let mut s = connect(addr);
        s.write_all(&(-5i32).to_be_bytes()).unwrap();
        assert_closed(&mut s);
        assert_still_served(addr);

        // A truncated frame: the client gives up half-way; the gateway just closes its side.
        let mut s = connect(addr);
        let frame = api_versions_request(0, 1);
        s.write_all(&frame[..frame.len() - 3]).unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        assert_closed(&mut s);
        assert_still_served(addr);

        // An unknown API key.
        let mut s = connect(addr);
        let mut frame = api_versions_request(0, 2);
        frame[4..6].copy_from_slice(&999i16.to_be_bytes());
        s.write_all(&frame).unwrap();
        assert_closed(&mut s);

        // A known API at a version we do not serve (Produce v99).
        let mut s = connect(addr);
        let mut frame = api_versions_request(0, 3);
        frame[4..6].copy_from_slice(&0i16.to_be_bytes());
        frame[6..8].copy_from_slice(&99i16.to_be_bytes());
        s.write_all(&frame).unwrap();
        assert_closed(&mut s);

        // A body that does not decode: Metadata v1 whose topic array claims 2^31-1 entries and
        // ends after the count. The protocol crate reserves the claimed capacity first; the
        // gateway's allocator makes that a reservation of address space only (see lib.rs).
        let mut s = connect(addr);
        let mut body = Vec::new();
        body.extend_from_slice(&3i16.to_be_bytes());
        body.extend_from_slice(&1i16.to_be_bytes());
        body.extend_from_slice(&4i32.to_be_bytes());
        body.extend_from_slice(&(-1i16).to_be_bytes());
        body.extend_from_slice(&i32::MAX.to_be_bytes());
        let mut frame = (body.len() as i32).to_be_bytes().to_vec();
        frame.extend(body);
        s.write_all(&frame).unwrap();
        assert_closed(&mut s);
        assert_still_served(addr);

        // ApiVersions at a version newer than ours: Kafka's v0 UNSUPPORTED_VERSION answer.
        let mut s = connect(addr);
        s.write_all(&api_versions_request(99, 9)).unwrap();
        let (correlation, body) = read_response(&mut s).unwrap();
        assert_eq!(correlation, 9);
        assert_eq!(
            i16::from_be_bytes(body[..2].try_into().unwrap()),
            35,
            "UNSUPPORTED_VERSION"
        );
        let entries = i32::from_be_bytes(body[2..6].try_into().unwrap());
        assert!(entries > 0, "the v0 answer still lists the supported APIs");
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claimed_sizes_are_not_allocated_up_front() {
    let gw = InProcessGateway::start().await;
    let addr = gw.gateway.kafka_addr();
    tokio::task::spawn_blocking(move || {
        let before = rss_bytes();
        // 20 connections each announce a request just under the 100 MiB limit and send 10 bytes.
        // Allocating the claimed size would take 2 GB.
        let mut held = Vec::new();
        for _ in 0..20 {
            let mut s = connect(addr);
            s.write_all(&(100 * 1024 * 1024 - 1i32).to_be_bytes())
                .unwrap();
            s.write_all(&[0u8; 10]).unwrap();
            held.push(s);
        }
        std::thread::sleep(Duration::from_millis(300));
        assert_still_served(addr);
        let grown = rss_bytes().saturating_sub(before);
        assert!(
            grown < 200 * 1024 * 1024,
            "memory grew by {grown} bytes for 20 unfinished frames"
        );
    })
    .await
    .unwrap();
}
