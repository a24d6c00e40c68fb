//! One AMQP port for both protocols (DESIGN.md §3 step 1, issue 14), as RabbitMQ 4 and ActiveMQ
//! Artemis do it: the 8-byte protocol header picks the front end.
//!
//! - `AMQP 0 1 0 0` and `AMQP 3 1 0 0` (SASL), and other 1.x headers, go to AMQP 1.0, which
//!   answers the ones it does not speak with its own header;
//! - everything else goes to the 0-9-1 front end with the header put back in front of the
//!   stream, so it sees the connection exactly as before (and answers a wrong header with
//!   `AMQP 0 0 9 1`).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use gateway_amqp::AmqpFrontend;
use gateway_amqp1::Amqp1Frontend;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

use crate::listener::{ClientStream, ConnectionFuture};

/// How long a client has to send its protocol header (as the 0-9-1 handshake allowed before).
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves one connection of the AMQP listeners.
pub(crate) fn serve(
    v091: Arc<AmqpFrontend>,
    v10: Arc<Amqp1Frontend>,
    mut stream: ClientStream,
    drain: tokio::sync::watch::Receiver<bool>,
) -> ConnectionFuture {
    Box::pin(async move {
        let client_certificate = stream.client_certificate_name();
        let mut header = [0u8; 8];
        match tokio::time::timeout(HEADER_TIMEOUT, stream.read_exact(&mut header)).await {
            Ok(Ok(_)) => {}
            // Gone or silent before a whole header: nothing to answer.
            _ => return Ok(()),
        }
        if Amqp1Frontend::speaks(&header) || Amqp1Frontend::asks_for_1x(&header) {
            v10.serve_connection(header, stream, client_certificate, drain)
                .await
        } else {
            let replayed = Replay {
                head: header,
                at: 0,
                inner: stream,
            };
            v091.serve_connection(replayed, client_certificate, drain)
                .await
        }
    })
}

/// A stream whose first bytes are `head` (already read off `inner`), then `inner`'s.
struct Replay<S> {
    head: [u8; 8],
    at: usize,
    inner: S,
}

impl<S: AsyncRead + Unpin> AsyncRead for Replay<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.at < this.head.len() {
            let n = (this.head.len() - this.at).min(buf.remaining());
            buf.put_slice(&this.head[this.at..this.at + n]);
            this.at += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Replay<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_header_is_read_again_before_the_rest() {
        let (mut client, server) = tokio::io::duplex(64);
        tokio::io::AsyncWriteExt::write_all(&mut client, b"rest")
            .await
            .unwrap();
        drop(client);
        let mut replay = Replay {
            head: *b"AMQP\x00\x00\x09\x01",
            at: 0,
            inner: server,
        };
        let mut all = Vec::new();
        replay.read_to_end(&mut all).await.unwrap();
        assert_eq!(all, b"AMQP\x00\x00\x09\x01rest");
    }
}
