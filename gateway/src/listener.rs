//! TCP accept loops (DESIGN.md §11, "The accept loop").
//!
//! - The connection limit is a semaphore; each connection task owns its permit, so the slot is
//!   freed however the task ends, panics included. At the limit a connection is accepted and
//!   closed at once, which tells the client sooner than leaving it in the kernel's backlog.
//! - Accept errors never end the loop: they are retried with capped exponential backoff, and
//!   with a longer pause when the process is out of file descriptors.
//! - Each connection runs in its own task, in a span carrying its id, peer and listener, so one
//!   connection's failure never reaches the listener.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use std::task::{Context, Poll};

use metrics::{counter, gauge};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info_span, warn, Instrument};

use crate::telemetry::names;
use crate::tls::ReloadingAcceptor;

/// The future serving one connection.
pub(crate) type ConnectionFuture = Pin<Box<dyn Future<Output = io::Result<()>> + Send>>;

/// Serves one accepted connection. The `watch` turns `true` when the gateway drains: the session
/// should finish the requests it has read and return.
pub(crate) type Handler =
    Arc<dyn Fn(ClientStream, watch::Receiver<bool>) -> ConnectionFuture + Send + Sync>;

/// An accepted connection: plain TCP, or TLS over it (after the handshake).
pub(crate) enum ClientStream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl ClientStream {
    fn tcp(&self) -> &TcpStream {
        match self {
            ClientStream::Plain(s) => s,
            ClientStream::Tls(s) => s.get_ref().0,
        }
    }

    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.tcp().peer_addr()
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.tcp().local_addr()
    }

    pub fn is_tls(&self) -> bool {
        matches!(self, ClientStream::Tls(_))
    }

    /// The subject common name of the certificate the client presented, when the listener
    /// verified one against its client CA (rustls only keeps certificates it verified).
    pub fn client_certificate_name(&self) -> Option<String> {
        let ClientStream::Tls(s) = self else {
            return None;
        };
        let der = s.get_ref().1.peer_certificates()?.first()?;
        let (_, certificate) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
        let name = certificate
            .subject()
            .iter_common_name()
            .next()?
            .as_str()
            .ok()?
            .to_owned();
        Some(name)
    }
}

impl AsyncRead for ClientStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ClientStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_flush(cx),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

const MIN_BACKOFF: Duration = Duration::from_millis(5);
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// Out of descriptors, retrying quickly only spins; give open connections time to close.
const FD_EXHAUSTED_PAUSE: Duration = Duration::from_secs(2);

/// Ids are unique across listeners, so log lines of one connection can be grepped.
static NEXT_CONNECTION_ID: AtomicU64 = AtomicU64::new(1);

/// The connection tasks of one listener, and the switch that cuts them off when the shutdown
/// grace period runs out.
#[derive(Clone, Default)]
pub(crate) struct Sessions {
    pub tracker: TaskTracker,
    pub abort: CancellationToken,
}

pub(crate) struct Listener {
    name: &'static str,
    socket: TcpListener,
    addr: SocketAddr,
    permits: Arc<Semaphore>,
    max_connections: usize,
    /// Set on a TLS listener: connections are handed over after the handshake.
    tls: Option<Arc<ReloadingAcceptor>>,
}

impl Listener {
    /// Makes this a TLS listener.
    pub fn with_tls(mut self, tls: Arc<ReloadingAcceptor>) -> Listener {
        self.tls = Some(tls);
        self
    }

    pub async fn bind(
        name: &'static str,
        addr: SocketAddr,
        max_connections: usize,
    ) -> io::Result<Listener> {
        let socket = TcpListener::bind(addr).await?;
        let addr = socket.local_addr()?;
        // Register the series at zero so dashboards see them before the first connection.
        counter!(names::CONNECTIONS_ACCEPTED, "listener" => name).increment(0);
        counter!(names::CONNECTIONS_REFUSED, "listener" => name, "reason" => "limit").increment(0);
        gauge!(names::CONNECTIONS_ACTIVE, "listener" => name).increment(0.0);
        Ok(Listener {
            name,
            socket,
            addr,
            permits: Arc::new(Semaphore::new(max_connections)),
            max_connections,
            tls: None,
        })
    }

    /// The bound address (with the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    #[cfg(test)]
    pub fn permits(&self) -> Arc<Semaphore> {
        self.permits.clone()
    }

    /// Accepts connections until `drain` turns true (or its sender is dropped), then closes the
    /// socket. Connection tasks are spawned on `sessions.tracker`; they are not waited for here.
    pub async fn run(self, handler: Handler, mut drain: watch::Receiver<bool>, sessions: Sessions) {
        let name = self.name;
        let mut backoff = MIN_BACKOFF;
        loop {
            let accepted = tokio::select! {
                biased;
                _ = drain.wait_for(|draining| *draining) => break,
                accepted = self.socket.accept() => accepted,
            };
            let (stream, peer) = match accepted {
                Ok(pair) => {
                    backoff = MIN_BACKOFF;
                    pair
                }
                // The peer gave up before we accepted; nothing is wrong with the listener.
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
                    ) =>
                {
                    debug!(listener = name, error = %e, "peer left before accept");
                    continue;
                }
                Err(e) => {
                    counter!(names::ACCEPT_ERRORS, "listener" => name).increment(1);
                    let pause = if too_many_open_files(&e) {
                        FD_EXHAUSTED_PAUSE
                    } else {
                        backoff
                    };
                    warn!(listener = name, error = %e, pause_ms = pause.as_millis() as u64, "accept failed; retrying");
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    tokio::select! {
                        _ = drain.wait_for(|draining| *draining) => break,
                        _ = tokio::time::sleep(pause) => continue,
                    }
                }
            };

            let Ok(permit) = self.permits.clone().try_acquire_owned() else {
                counter!(names::CONNECTIONS_REFUSED, "listener" => name, "reason" => "limit")
                    .increment(1);
                warn!(listener = name, %peer, limit = self.max_connections, "connection limit reached; closing new connection");
                drop(stream);
                continue;
            };
            // Requests and responses are small and latency matters more than packet count.
            if let Err(e) = stream.set_nodelay(true) {
                debug!(listener = name, %peer, error = %e, "cannot set TCP_NODELAY");
            }

            let id = NEXT_CONNECTION_ID.fetch_add(1, Ordering::Relaxed);
            let span = info_span!("connection", id, %peer, listener = name);
            let guard = ActiveConnection::new(name, permit);
            let handler = handler.clone();
            let session_drain = drain.clone();
            let abort = sessions.abort.clone();
            let tls = self.tls.clone();
            sessions.tracker.spawn(
                async move {
                    let _guard = guard;
                    debug!("connection accepted");
                    let stream = match tls {
                        None => ClientStream::Plain(stream),
                        Some(tls) => match tls.accept(stream).await {
                            Ok(secured) => ClientStream::Tls(Box::new(secured)),
                            Err(e) => {
                                counter!(names::CONNECTIONS_REFUSED, "listener" => name, "reason" => "tls").increment(1);
                                debug!(error = %e, "TLS handshake failed; connection closed");
                                return;
                            }
                        },
                    };
                    tokio::select! {
                        result = handler(stream, session_drain) => match result {
                            Ok(()) => debug!("connection closed"),
                            // Client disconnects and protocol errors are routine at this level.
                            Err(e) => debug!(error = %e, "connection ended with an error"),
                        },
                        _ = abort.cancelled() => {
                            counter!(names::CONNECTIONS_ABORTED, "listener" => name).increment(1);
                            warn!("connection closed: shutdown grace period ran out");
                        }
                    }
                }
                .instrument(span),
            );
        }
        debug!(listener = name, addr = %self.addr, "listener closed");
    }
}

/// Held by a connection task: keeps its semaphore permit and the active-connections gauge right
/// however the task ends.
struct ActiveConnection {
    listener: &'static str,
    _permit: OwnedSemaphorePermit,
}

impl ActiveConnection {
    fn new(listener: &'static str, permit: OwnedSemaphorePermit) -> Self {
        counter!(names::CONNECTIONS_ACCEPTED, "listener" => listener).increment(1);
        gauge!(names::CONNECTIONS_ACTIVE, "listener" => listener).increment(1.0);
        ActiveConnection {
            listener,
            _permit: permit,
        }
    }
}

impl Drop for ActiveConnection {
    fn drop(&mut self) {
        gauge!(names::CONNECTIONS_ACTIVE, "listener" => self.listener).decrement(1.0);
    }
}

/// EMFILE (process) or ENFILE (system): out of file descriptors. std has no `ErrorKind` for
/// them; the numbers are the same on Linux, macOS and the BSDs.
fn too_many_open_files(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(23 | 24))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Greets, then holds the connection until the client closes it.
    fn greeter() -> Handler {
        Arc::new(|mut stream, _drain| {
            Box::pin(async move {
                stream.write_all(b"hi").await?;
                let mut rest = Vec::new();
                stream.read_to_end(&mut rest).await?;
                Ok(())
            })
        })
    }

    async fn read_all(stream: &mut TcpStream) -> Vec<u8> {
        let mut buf = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut buf))
            .await
            .expect("server closes in time")
            .expect("read");
        buf
    }

    async fn greeting(stream: &mut TcpStream) -> [u8; 2] {
        let mut buf = [0; 2];
        stream.read_exact(&mut buf).await.expect("greeting");
        buf
    }

    async fn wait_for_permits(permits: &Semaphore, n: usize) {
        tokio::time::timeout(Duration::from_secs(5), async {
            while permits.available_permits() != n {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
        .await
        .expect("permits returned");
    }

    #[tokio::test]
    async fn connections_over_the_limit_are_closed_and_slots_come_back() {
        let listener = Listener::bind("test", "127.0.0.1:0".parse().unwrap(), 1)
            .await
            .unwrap();
        let addr = listener.local_addr();
        let permits = listener.permits();
        let (drain_tx, drain_rx) = watch::channel(false);
        let sessions = Sessions::default();
        let task = tokio::spawn(listener.run(greeter(), drain_rx, sessions.clone()));

        let mut first = TcpStream::connect(addr).await.unwrap();
        assert_eq!(&greeting(&mut first).await, b"hi");

        // Over the limit: accepted, then closed without a greeting.
        let mut second = TcpStream::connect(addr).await.unwrap();
        assert!(read_all(&mut second).await.is_empty());

        drop(first);
        wait_for_permits(&permits, 1).await;
        let mut third = TcpStream::connect(addr).await.unwrap();
        assert_eq!(&greeting(&mut third).await, b"hi");

        drain_tx.send_replace(true);
        task.await.unwrap();
        assert!(
            TcpStream::connect(addr).await.is_err(),
            "socket is closed after drain"
        );
    }

    #[tokio::test]
    async fn a_panicking_connection_does_not_stop_the_listener() {
        let listener = Listener::bind("test", "127.0.0.1:0".parse().unwrap(), 10)
            .await
            .unwrap();
        let addr = listener.local_addr();
        let permits = listener.permits();
        let calls = Arc::new(AtomicU64::new(0));
        let seen = calls.clone();
        let handler: Handler = Arc::new(move |mut stream, _drain| {
            let n = seen.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move {
                if n == 0 {
                    panic!("first connection fails");
                }
                stream.write_all(b"ok").await
            })
        });
        let (_drain_tx, drain_rx) = watch::channel(false);
        tokio::spawn(listener.run(handler, drain_rx, Sessions::default()));

        let mut first = TcpStream::connect(addr).await.unwrap();
        assert!(read_all(&mut first).await.is_empty());
        wait_for_permits(&permits, 10).await;
        let mut second = TcpStream::connect(addr).await.unwrap();
        assert_eq!(read_all(&mut second).await, b"ok");
    }

    #[test]
    fn fd_exhaustion_is_recognised() {
        assert!(too_many_open_files(&io::Error::from_raw_os_error(24)));
        assert!(too_many_open_files(&io::Error::from_raw_os_error(23)));
        assert!(!too_many_open_files(&io::Error::from_raw_os_error(104)));
    }
}
