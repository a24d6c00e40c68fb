//! A TCP proxy that injects network faults, for tests that put it between the gateway and a real
//! broker (Pulsar's binary port, or its admin HTTP port): blackhole, latency, a bandwidth cap,
//! resets (RST) and refused connections, switched on and off while traffic flows.
//!
//! The faults are one value in a `watch` channel. The accept loop and every forwarding task
//! watch it, so a change takes effect at once, also on bytes the proxy already holds. Dropping
//! the proxy drops the sender, which is the shutdown signal for all of them.
//!
//! Each direction of a connection is a reader and a writer joined by a bounded queue of
//! timestamped chunks: the reader stops reading while blackholed (so the sender's TCP window
//! fills, as behind a real blackhole), the writer sends a chunk once it is `latency` old (so
//! delays overlap instead of adding up) and paces itself to the bandwidth cap. An end of stream
//! travels through the queue too and is passed on as a half-close; a read or write error resets
//! both sides, as the RST would have on a direct link.
//!
//! Unlike a real blackhole, the kernels at the proxy still complete handshakes and acknowledge
//! what they buffer: connects succeed, TCP keepalives are answered and retransmission timeouts
//! never fire, so peers notice only through their own timeouts (Pulsar's ping, Kafka's request
//! timeout). A sender can still write a few MiB (its send buffer and the proxy's receive
//! buffer) before it blocks.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// Most bytes read from a socket at once.
const CHUNK: usize = 16 * 1024;
/// Chunks held per direction (at most 4 MiB): beyond that the proxy stops reading, and the
/// sender is held back as by a TCP window. It also caps throughput under latency, at about
/// 4 MiB per `latency`, like a real bandwidth-delay product.
const HELD_CHUNKS: usize = 256;
/// Pause after a failed accept (e.g. out of file descriptors), so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// The faults in force; `Default` is clean forwarding.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Faults {
    blackhole: bool,
    latency: Duration,
    /// Bytes per second, per direction and connection; at least 1.
    bandwidth: Option<u64>,
    refuse: bool,
    /// Bumped by `reset_all`: a connection resets when it differs from the value at its accept.
    resets: u64,
}

#[derive(Default)]
struct Counts {
    open: AtomicUsize,
    accepted: AtomicUsize,
}

/// A fault-injecting TCP proxy to one target. Dropping it stops accepting and closes every
/// connection through it.
pub struct FaultProxy {
    addr: SocketAddr,
    faults: watch::Sender<Faults>,
    counts: Arc<Counts>,
}

impl FaultProxy {
    /// Listens on 127.0.0.1:0 and forwards every accepted connection to `target`.
    pub async fn start(target: SocketAddr) -> FaultProxy {
        let any_port = SocketAddr::from(([127, 0, 0, 1], 0));
        FaultProxy::bind(any_port, target)
            .await
            .expect("fault proxy listens")
    }

    /// Listens on `listen` and forwards every accepted connection to `target`.
    pub async fn bind(listen: SocketAddr, target: SocketAddr) -> std::io::Result<FaultProxy> {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let (faults, watching) = watch::channel(Faults::default());
        let counts = Arc::new(Counts::default());
        tokio::spawn(accept_loop(listener, target, watching, Arc::clone(&counts)));
        Ok(FaultProxy {
            addr,
            faults,
            counts,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops forwarding both ways without closing anything, until `heal`: the proxy stops
    /// reading from both sockets and holds what it has already read. New connections are
    /// accepted (and connected to the target) but get no bytes through either.
    pub fn blackhole(&self) {
        self.faults.send_modify(|f| f.blackhole = true);
    }

    /// Delays every chunk, both ways, by `d` after the proxy read it; order is kept and the
    /// delays overlap, so a stream flows at full rate, `d` late. A round trip takes `2 * d` more.
    pub fn set_latency(&self, d: Duration) {
        self.faults.send_modify(|f| f.latency = d);
    }

    /// Limits each direction of each connection to about `bytes_per_sec` (None: unlimited).
    pub fn set_bandwidth(&self, bytes_per_sec: Option<u64>) {
        self.faults
            .send_modify(|f| f.bandwidth = bytes_per_sec.map(|rate| rate.max(1)));
    }

    /// Resets every open connection now: both of its sockets are closed with `SO_LINGER` 0, so
    /// both peers get an RST, not a FIN. New connections are still accepted.
    pub fn reset_all(&self) {
        self.faults.send_modify(|f| f.resets += 1);
    }

    /// While true, new connections are accepted and reset at once, never reaching the target.
    pub fn set_refuse(&self, refuse: bool) {
        self.faults.send_modify(|f| f.refuse = refuse);
    }

    /// Back to clean forwarding: ends the blackhole, latency, bandwidth cap and refusal. Held
    /// bytes flow on in order, and blackholed connections continue where they were.
    pub fn heal(&self) {
        self.faults.send_modify(|f| {
            *f = Faults {
                resets: f.resets,
                ..Faults::default()
            }
        });
    }

    /// Connections currently open through the proxy (from accept until both sockets close).
    pub fn open_connections(&self) -> usize {
        self.counts.open.load(Ordering::SeqCst)
    }

    /// Connections accepted so far, refused ones included.
    pub fn accepted(&self) -> usize {
        self.counts.accepted.load(Ordering::SeqCst)
    }

    /// Carries out one line of the `fault-proxy` program's control protocol and returns the
    /// answer: `ok`, the status line for `status`, or `error: ...`.
    pub fn control(&self, line: &str) -> String {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words[..] {
            ["blackhole"] => self.blackhole(),
            ["heal"] => self.heal(),
            ["reset"] => self.reset_all(),
            ["refuse", "on"] => self.set_refuse(true),
            ["refuse", "off"] => self.set_refuse(false),
            ["latency", ms] => match ms.parse() {
                Ok(ms) => self.set_latency(Duration::from_millis(ms)),
                Err(_) => return format!("error: latency takes milliseconds, not {ms:?}"),
            },
            ["bandwidth", "off"] => self.set_bandwidth(None),
            ["bandwidth", rate] => match rate.parse() {
                Ok(rate) => self.set_bandwidth(Some(rate)),
                Err(_) => return format!("error: bandwidth takes bytes/s or off, not {rate:?}"),
            },
            ["status"] => return self.status(),
            _ => {
                return format!(
                    "error: unknown command {:?} (blackhole, heal, latency MS, \
                     bandwidth BYTES_PER_SEC|off, reset, refuse on|off, status)",
                    line.trim()
                );
            }
        }
        "ok".to_string()
    }

    fn status(&self) -> String {
        let f = *self.faults.borrow();
        let bandwidth = f
            .bandwidth
            .map_or("off".to_string(), |rate| rate.to_string());
        format!(
            "blackhole={} latency_ms={} bandwidth={bandwidth} refuse={} open={} accepted={}",
            f.blackhole,
            f.latency.as_millis(),
            f.refuse,
            self.open_connections(),
            self.accepted()
        )
    }
}

async fn accept_loop(
    listener: TcpListener,
    target: SocketAddr,
    mut faults: watch::Receiver<Faults>,
    counts: Arc<Counts>,
) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            changed = faults.changed() => match changed {
                Ok(()) => continue,
                Err(_) => return, // the proxy was dropped
            },
        };
        let Ok((client, _peer)) = accepted else {
            tokio::time::sleep(ACCEPT_BACKOFF).await;
            continue;
        };
        counts.accepted.fetch_add(1, Ordering::SeqCst);
        let now = *faults.borrow();
        if now.refuse {
            abort(client);
            continue;
        }
        counts.open.fetch_add(1, Ordering::SeqCst);
        let open = OpenGuard(Arc::clone(&counts));
        tokio::spawn(connection(client, target, faults.clone(), now.resets, open));
    }
}

/// Counts a connection as open while alive.
struct OpenGuard(Arc<Counts>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Closes `stream` with an RST.
fn abort(stream: TcpStream) {
    let _ = stream.set_zero_linger();
}

#[derive(PartialEq, Eq)]
enum End {
    /// Both directions ended with a half-close: drop the sockets (FIN).
    Closed,
    /// `reset_all`, or an error on either side: reset both sockets.
    Reset,
    /// The proxy was dropped.
    Shutdown,
}

/// Forwards one accepted connection to `target` until it ends or is reset.
async fn connection(
    mut client: TcpStream,
    target: SocketAddr,
    faults: watch::Receiver<Faults>,
    resets: u64,
    open: OpenGuard,
) {
    let mut watcher = faults.clone();
    // Resolves true on `reset_all`, false when the proxy is dropped.
    let reset = async move { watcher.wait_for(|f| f.resets != resets).await.is_ok() };
    tokio::pin!(reset);
    let connect = TcpStream::connect(target);
    tokio::pin!(connect);
    let mut server = tokio::select! {
        server = &mut connect => match server {
            Ok(server) => server,
            // The target refused or is unreachable: so is the proxy.
            Err(_) => return abort(client),
        },
        reset = &mut reset => {
            abort(client);
            drop(open);
            // The target may have taken the connection already (the future just not polled
            // yet): reset that side too, once connected.
            if reset {
                if let Ok(server) = connect.await {
                    abort(server);
                }
            }
            return;
        }
    };
    // The proxy adds only the delays it is told to, none of Nagle's.
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let end = {
        let (client_read, client_write) = client.split();
        let (server_read, server_write) = server.split();
        let forward = async {
            tokio::try_join!(
                pump(client_read, server_write, faults.clone()),
                pump(server_read, client_write, faults.clone()),
            )
        };
        tokio::select! {
            forwarded = forward => match forwarded {
                Ok(_) => End::Closed,
                Err(_) => End::Reset,
            },
            reset = &mut reset => if reset { End::Reset } else { End::Shutdown },
        }
    };
    if end == End::Reset {
        abort(client);
        abort(server);
    }
}

/// What a reader took in, stamped with when.
struct Held {
    at: Instant,
    piece: Piece,
}

enum Piece {
    Bytes(Vec<u8>),
    /// End of stream: pass on as a half-close.
    Eof,
    /// The read failed (typically an RST): reset the connection.
    Failed,
}

/// Forwards one direction; an error means the connection must be reset.
async fn pump(
    from: ReadHalf<'_>,
    to: WriteHalf<'_>,
    faults: watch::Receiver<Faults>,
) -> std::io::Result<()> {
    let (held, holding) = mpsc::channel(HELD_CHUNKS);
    let ((), passed) = tokio::join!(
        take_in(from, held, faults.clone()),
        pass_on(holding, to, faults)
    );
    passed
}

/// Reads chunks into the queue, except while blackholed.
async fn take_in(
    mut from: ReadHalf<'_>,
    held: mpsc::Sender<Held>,
    mut faults: watch::Receiver<Faults>,
) {
    loop {
        if faults.wait_for(|f| !f.blackhole).await.is_err() {
            return;
        }
        let mut buf = vec![0; CHUNK];
        let piece = tokio::select! {
            read = from.read(&mut buf) => match read {
                Ok(0) => Piece::Eof,
                Ok(n) => {
                    buf.truncate(n);
                    Piece::Bytes(buf)
                }
                Err(_) => Piece::Failed,
            },
            // A blackhole may have begun: look again before reading.
            changed = faults.changed() => match changed {
                Ok(()) => continue,
                Err(_) => return,
            },
            // The writer gave up (its side failed).
            () = held.closed() => return,
        };
        let last = !matches!(piece, Piece::Bytes(_));
        let at = Instant::now();
        if held.send(Held { at, piece }).await.is_err() || last {
            return;
        }
    }
}

/// Writes the queued chunks out as the faults allow, then passes on the end of stream.
async fn pass_on(
    mut holding: mpsc::Receiver<Held>,
    mut to: WriteHalf<'_>,
    mut faults: watch::Receiver<Faults>,
) -> std::io::Result<()> {
    // Bandwidth pacing: when the next bytes may go.
    let mut next_send = Instant::now();
    while let Some(Held { at, piece }) = holding.recv().await {
        let bytes = match piece {
            Piece::Bytes(bytes) => bytes,
            // An end waits its turn under the faults, as bytes do.
            end => {
                if passable(at, next_send, &mut faults).await.is_none() {
                    return Ok(());
                }
                return match end {
                    Piece::Eof => to.shutdown().await,
                    _ => Err(std::io::ErrorKind::ConnectionReset.into()),
                };
            }
        };
        let mut sent = 0;
        while sent < bytes.len() {
            let Some(now) = passable(at, next_send, &mut faults).await else {
                return Ok(());
            };
            let slice = match now.bandwidth {
                // About 20 writes a second, so the rate holds over short spans too.
                Some(rate) => usize::try_from(rate / 20).unwrap_or(CHUNK).clamp(1, CHUNK),
                None => bytes.len(),
            };
            let end = bytes.len().min(sent + slice);
            // A write waiting on a full peer window is abandoned (nothing written) when the
            // faults change, so a blackhole stops it too.
            tokio::select! {
                written = to.write(&bytes[sent..end]) => {
                    let n = written?;
                    if n == 0 {
                        return Err(std::io::ErrorKind::WriteZero.into());
                    }
                    sent += n;
                    if let Some(rate) = now.bandwidth {
                        let start = next_send.max(Instant::now());
                        next_send = start + Duration::from_secs_f64(n as f64 / rate as f64);
                    }
                }
                changed = faults.changed() => {
                    if changed.is_err() {
                        return Ok(());
                    }
                }
            }
        }
    }
    Ok(())
}

/// Waits until the faults let through a piece read at `at`, with pacing allowing bytes from
/// `next_send` on, and returns them; None when the proxy was dropped.
async fn passable(
    at: Instant,
    next_send: Instant,
    faults: &mut watch::Receiver<Faults>,
) -> Option<Faults> {
    loop {
        let now = *faults.borrow_and_update();
        let mut due = at
            .checked_add(now.latency)
            .unwrap_or_else(|| at + Duration::from_secs(365 * 24 * 3600));
        if now.bandwidth.is_some() {
            due = due.max(next_send);
        }
        if !now.blackhole && due <= Instant::now() {
            return Some(now);
        }
        tokio::select! {
            () = tokio::time::sleep_until(due), if !now.blackhole => return Some(now),
            changed = faults.changed() => changed.ok()?,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::ErrorKind;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::time::timeout;

    use super::*;

    /// Hang guard for steps that should take milliseconds; never a timing assertion.
    const GUARD: Duration = Duration::from_secs(30);

    /// An echo server; also counts the connections it accepted.
    async fn echo_server() -> (SocketAddr, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&accepted);
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let (mut read, mut write) = stream.split();
                    let _ = tokio::io::copy(&mut read, &mut write).await;
                    let _ = write.shutdown().await;
                });
            }
        });
        (addr, accepted)
    }

    /// A connection through `proxy` and, accepted from `upstream`, its far end.
    async fn pair(proxy: &FaultProxy, upstream: &TcpListener) -> (TcpStream, TcpStream) {
        let client = TcpStream::connect(proxy.addr()).await.unwrap();
        let (server, _) = timeout(GUARD, upstream.accept()).await.unwrap().unwrap();
        (client, server)
    }

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8).collect()
    }

    async fn read_exactly(stream: &mut TcpStream, len: usize) -> Vec<u8> {
        let mut buf = vec![0; len];
        timeout(GUARD, stream.read_exact(&mut buf))
            .await
            .expect("bytes arrive")
            .expect("read");
        buf
    }

    async fn round_trip(stream: &mut TcpStream, message: &[u8]) {
        stream.write_all(message).await.unwrap();
        assert_eq!(read_exactly(stream, message.len()).await, message);
    }

    /// Asserts that nothing arrives on `stream` within 500 ms, and that it is still open.
    async fn assert_quiet(stream: &mut TcpStream, what: &str) {
        let mut buf = [0; 64];
        match timeout(Duration::from_millis(500), stream.read(&mut buf)).await {
            Err(_elapsed) => {}
            Ok(Ok(0)) => panic!("{what}: closed"),
            Ok(Ok(n)) => panic!("{what}: got {:?}", &buf[..n]),
            Ok(Err(e)) => panic!("{what}: {e}"),
        }
    }

    async fn eventually(what: &str, condition: impl Fn() -> bool) {
        let deadline = Instant::now() + GUARD;
        while !condition() {
            assert!(Instant::now() < deadline, "never: {what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Sends `data` and half-closes while reading the echo to its end.
    async fn echo_through(stream: TcpStream, data: Vec<u8>) -> Vec<u8> {
        let (mut read, mut write) = stream.into_split();
        let writer = tokio::spawn(async move {
            write.write_all(&data).await.unwrap();
            write.shutdown().await.unwrap();
        });
        let mut echoed = Vec::new();
        timeout(GUARD, read.read_to_end(&mut echoed))
            .await
            .expect("echo ends")
            .expect("echo read");
        writer.await.unwrap();
        echoed
    }

    #[tokio::test]
    async fn forwards_a_mebibyte_both_ways_and_passes_half_close_on() {
        let (echo, _) = echo_server().await;
        let proxy = FaultProxy::start(echo).await;
        let client = TcpStream::connect(proxy.addr()).await.unwrap();
        let data = pattern(1024 * 1024);
        // read_to_end ends only if our FIN reached the echo server and its FIN came back.
        assert!(echo_through(client, data.clone()).await == data);
        eventually("connection closed", || proxy.open_connections() == 0).await;
        assert_eq!(proxy.accepted(), 1);
    }

    #[tokio::test]
    async fn blackhole_holds_bytes_both_ways_without_closing_until_heal() {
        let upstream = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy = FaultProxy::start(upstream.local_addr().unwrap()).await;
        let (mut client, mut server) = pair(&proxy, &upstream).await;
        client.write_all(b"c0").await.unwrap();
        assert_eq!(read_exactly(&mut server, 2).await, b"c0");

        // Bytes the proxy has read but not yet sent are held too: "c1" waits out a long
        // latency inside the proxy when the blackhole begins, and is then due at once.
        proxy.set_latency(Duration::from_secs(60));
        client.write_all(b"c1").await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        proxy.blackhole();
        proxy.set_latency(Duration::ZERO);
        client.write_all(b"c2").await.unwrap();
        server.write_all(b"s1").await.unwrap();
        assert_quiet(&mut server, "server during blackhole").await;
        assert_quiet(&mut client, "client during blackhole").await;

        // A connection opened during the blackhole is accepted but carries nothing either.
        let (mut late_client, mut late_server) = pair(&proxy, &upstream).await;
        late_client.write_all(b"late").await.unwrap();
        assert_quiet(&mut late_server, "new connection during blackhole").await;

        proxy.heal();
        assert_eq!(read_exactly(&mut server, 4).await, b"c1c2");
        assert_eq!(read_exactly(&mut client, 2).await, b"s1");
        assert_eq!(read_exactly(&mut late_server, 4).await, b"late");
        round_trip_via(&mut late_client, &mut late_server, b"fine").await;
    }

    #[tokio::test]
    async fn blackhole_fills_the_senders_window_and_heal_delivers_it_all() {
        let (echo, _) = echo_server().await;
        let proxy = FaultProxy::start(echo).await;
        let mut client = TcpStream::connect(proxy.addr()).await.unwrap();
        round_trip(&mut client, b"warm up").await;
        proxy.blackhole();
        // The echo is read as it comes, so nothing but the blackhole holds the writer back.
        let (mut read, mut write) = client.into_split();
        let echoed = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&echoed);
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            let mut buf = vec![0; CHUNK];
            loop {
                let n = read.read(&mut buf).await.expect("echo read");
                if n == 0 {
                    return got;
                }
                got.extend_from_slice(&buf[..n]);
                counter.store(got.len(), Ordering::SeqCst);
            }
        });
        // Write until a write stalls for a second: the socket buffers on the way are full.
        let limit = 64 * 1024 * 1024;
        let data = pattern(limit);
        let mut written = 0;
        while written < limit {
            match timeout(Duration::from_secs(1), write.write(&data[written..])).await {
                Ok(n) => written += n.expect("write during blackhole"),
                Err(_stalled) => break,
            }
        }
        assert!(written < limit, "the sender was never held back");
        assert_eq!(
            echoed.load(Ordering::SeqCst),
            0,
            "echo through the blackhole"
        );
        proxy.heal();
        write.shutdown().await.unwrap();
        let got = timeout(GUARD, reader).await.expect("echo ends").unwrap();
        assert!(got == data[..written]);
    }

    #[tokio::test]
    async fn latency_delays_each_direction_without_adding_up() {
        let (echo, _) = echo_server().await;
        let proxy = FaultProxy::start(echo).await;
        let mut client = TcpStream::connect(proxy.addr()).await.unwrap();
        let latency = Duration::from_millis(200);
        proxy.set_latency(latency);

        let start = Instant::now();
        round_trip(&mut client, b"ping").await;
        assert!(start.elapsed() >= 2 * latency, "{:?}", start.elapsed());

        // 100 messages, sent 5 ms apart so each is a chunk of its own: delays taken one after
        // another would add up to 100 * 200 ms each way.
        let (mut read, mut write) = client.into_split();
        let start = Instant::now();
        let writer = tokio::spawn(async move {
            for i in 0..100u64 {
                write.write_all(&i.to_be_bytes()).await.unwrap();
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        let mut echoed = vec![0; 800];
        timeout(GUARD, read.read_exact(&mut echoed))
            .await
            .unwrap()
            .unwrap();
        let elapsed = start.elapsed();
        writer.await.unwrap();
        let expected: Vec<u8> = (0..100u64).flat_map(u64::to_be_bytes).collect();
        assert_eq!(echoed, expected);
        assert!(elapsed >= 2 * latency, "{elapsed:?}");
        assert!(
            elapsed < Duration::from_secs(5),
            "delays add up: {elapsed:?}"
        );
    }

    #[tokio::test]
    async fn bandwidth_limit_slows_a_transfer() {
        let (echo, _) = echo_server().await;
        let proxy = FaultProxy::start(echo).await;
        proxy.set_bandwidth(Some(256 * 1024));
        let client = TcpStream::connect(proxy.addr()).await.unwrap();
        let data = pattern(512 * 1024);
        let start = Instant::now();
        assert!(echo_through(client, data.clone()).await == data);
        // About 2 s at 256 KiB/s each way (the directions overlap).
        assert!(
            start.elapsed() >= Duration::from_millis(1500),
            "{:?}",
            start.elapsed()
        );
    }

    #[tokio::test]
    async fn reset_all_resets_open_connections_blackholed_too_and_keeps_accepting() {
        let upstream = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy = FaultProxy::start(upstream.local_addr().unwrap()).await;
        let (mut client, mut server) = pair(&proxy, &upstream).await;
        round_trip_via(&mut client, &mut server, b"before").await;
        let (mut held_client, mut held_server) = pair(&proxy, &upstream).await;
        proxy.blackhole();
        held_client.write_all(b"held").await.unwrap();
        assert_eq!(proxy.open_connections(), 2);

        proxy.reset_all();
        for (stream, what) in [
            (&mut client, "client"),
            (&mut server, "server"),
            (&mut held_client, "blackholed client"),
            (&mut held_server, "blackholed server"),
        ] {
            let mut buf = [0; 16];
            let read = timeout(GUARD, stream.read(&mut buf)).await.expect("reset");
            assert_eq!(
                read.map_err(|e| e.kind()).err(),
                Some(ErrorKind::ConnectionReset),
                "{what}"
            );
        }
        eventually("connections closed", || proxy.open_connections() == 0).await;

        proxy.heal();
        let (mut client, mut server) = pair(&proxy, &upstream).await;
        round_trip_via(&mut client, &mut server, b"after").await;
        assert_eq!(proxy.accepted(), 3);
    }

    /// Sends `message` from client to server and back.
    async fn round_trip_via(client: &mut TcpStream, server: &mut TcpStream, message: &[u8]) {
        client.write_all(message).await.unwrap();
        assert_eq!(read_exactly(server, message.len()).await, message);
        server.write_all(message).await.unwrap();
        assert_eq!(read_exactly(client, message.len()).await, message);
    }

    #[tokio::test]
    async fn refused_connections_carry_nothing_and_are_closed() {
        let (echo, echo_accepted) = echo_server().await;
        let proxy = FaultProxy::start(echo).await;
        proxy.set_refuse(true);
        let mut connected = 0;
        for _ in 0..3 {
            // The kernel may complete the handshake before the proxy resets it, or not.
            let Ok(mut client) = TcpStream::connect(proxy.addr()).await else {
                continue;
            };
            connected += 1;
            let _ = client.write_all(b"anyone?").await;
            let mut buf = [0; 16];
            match timeout(GUARD, client.read(&mut buf)).await.expect("closed") {
                Ok(0) | Err(_) => {}
                Ok(n) => panic!("refused connection carried {:?}", &buf[..n]),
            }
        }
        eventually("refused connections counted", || {
            proxy.accepted() == connected
        })
        .await;
        assert_eq!(echo_accepted.load(Ordering::SeqCst), 0);

        proxy.set_refuse(false);
        let mut client = TcpStream::connect(proxy.addr()).await.unwrap();
        round_trip(&mut client, b"welcome back").await;
        assert_eq!(echo_accepted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn an_unreachable_target_resets_the_client() {
        let gone = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = gone.local_addr().unwrap();
        drop(gone);
        let proxy = FaultProxy::start(target).await;
        let mut client = TcpStream::connect(proxy.addr()).await.unwrap();
        let mut buf = [0; 16];
        let read = timeout(GUARD, client.read(&mut buf)).await.expect("closed");
        assert_eq!(
            read.map_err(|e| e.kind()).err(),
            Some(ErrorKind::ConnectionReset)
        );
        eventually("connection closed", || proxy.open_connections() == 0).await;
    }

    #[tokio::test]
    async fn dropping_the_proxy_closes_connections_and_the_listener() {
        let (echo, _) = echo_server().await;
        let proxy = FaultProxy::start(echo).await;
        let addr = proxy.addr();
        let mut client = TcpStream::connect(addr).await.unwrap();
        round_trip(&mut client, b"hello").await;
        drop(proxy);
        let mut buf = [0; 16];
        let read = timeout(GUARD, client.read(&mut buf)).await.expect("closed");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
        // Until the accept loop has ended, connects succeed (or hang, the backlog full).
        let deadline = Instant::now() + GUARD;
        loop {
            let connect = timeout(Duration::from_secs(1), TcpStream::connect(addr)).await;
            if let Ok(Err(e)) = connect {
                assert_eq!(e.kind(), ErrorKind::ConnectionRefused);
                break;
            }
            assert!(Instant::now() < deadline, "still listening");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn control_lines_set_and_report_the_faults() {
        let (echo, _) = echo_server().await;
        let proxy = FaultProxy::start(echo).await;
        for line in ["blackhole", "latency 200", "bandwidth 100000", "refuse on"] {
            assert_eq!(proxy.control(line), "ok", "{line}");
        }
        assert_eq!(
            proxy.control("status"),
            "blackhole=true latency_ms=200 bandwidth=100000 refuse=true open=0 accepted=0"
        );
        assert_eq!(proxy.control("refuse off"), "ok");
        assert_eq!(proxy.control("bandwidth off"), "ok");
        assert_eq!(proxy.control("latency 0"), "ok");
        assert_eq!(proxy.control(" heal "), "ok");
        assert_eq!(
            proxy.control("status"),
            "blackhole=false latency_ms=0 bandwidth=off refuse=false open=0 accepted=0"
        );
        let mut client = TcpStream::connect(proxy.addr()).await.unwrap();
        round_trip(&mut client, b"clean").await;
        assert!(proxy.control("status").ends_with("open=1 accepted=1"));
        for bad in [
            "",
            "latency",
            "latency soon",
            "bandwidth -1",
            "refuse maybe",
            "rest",
        ] {
            assert!(proxy.control(bad).starts_with("error: "), "{bad:?}");
        }
        assert_eq!(proxy.control("reset"), "ok");
        let mut buf = [0; 1];
        let read = timeout(GUARD, client.read(&mut buf)).await.expect("reset");
        assert!(read.is_err(), "{read:?}");
    }
}
