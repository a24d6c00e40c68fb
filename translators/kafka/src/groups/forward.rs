//! Forward mode: behind one load-balancer address a client may reach any instance, so an
//! instance that does not coordinate a group passes the group's requests to the instance that
//! does, on that instance's internal listener, and relays the answer. Internal connections are
//! served locally only, so a request is forwarded at most once; if ownership moved in between,
//! the owner-to-be answers NOT_COORDINATOR and the client looks the coordinator up again.
//!
//! Requests are re-encoded at the version the client used, with its client id, so the owner
//! sees what the client sent (except the peer address, which is the forwarding instance's).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Longest answer to wait for: a JoinGroup may wait a whole rebalance timeout (5 min by default).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(330);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest answer accepted from a peer.
const MAX_ANSWER: usize = 100 * 1024 * 1024;
/// Idle connections kept per peer.
const IDLE_PER_PEER: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("peer {0}: {1}")]
    Io(String, std::io::Error),
    #[error("peer {0} sent an answer that does not decode: {1}")]
    Malformed(String, String),
    #[error("peer {0} did not answer within {1:?}")]
    Timeout(String, Duration),
}

/// Connections to peers' internal listeners, one request at a time each.
#[derive(Default)]
pub struct Forwarder {
    idle: Mutex<HashMap<String, Vec<TcpStream>>>,
}

impl Forwarder {
    /// Sends `request` to `peer` as the client sent it and returns the peer's answer.
    pub async fn forward(
        &self,
        peer: &str,
        key: ApiKey,
        version: i16,
        client_id: &str,
        request: &RequestKind,
    ) -> Result<ResponseKind, ForwardError> {
        let mut frame = BytesMut::with_capacity(256);
        frame.put_i32(0);
        let mut header = RequestHeader::default();
        header.request_api_key = key as i16;
        header.request_api_version = version;
        header.correlation_id = 1;
        header.client_id = Some(StrBytes::from_string(client_id.to_owned()));
        header
            .encode(&mut frame, key.request_header_version(version))
            .and_then(|_| request.encode(&mut frame, version))
            .map_err(|e| ForwardError::Malformed(peer.to_owned(), e.to_string()))?;
        let len = (frame.len() - 4) as i32;
        frame[..4].copy_from_slice(&len.to_be_bytes());

        // A pooled connection may have been closed by a peer that restarted: retry once on a
        // fresh one.
        let mut pooled = self.take_idle(peer);
        loop {
            let reused = pooled.is_some();
            let stream = match pooled.take() {
                Some(s) => s,
                None => tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(peer))
                    .await
                    .map_err(|_| ForwardError::Timeout(peer.to_owned(), CONNECT_TIMEOUT))?
                    .map_err(|e| ForwardError::Io(peer.to_owned(), e))?,
            };
            match self.exchange(peer, stream, &frame, key, version).await {
                Err(ForwardError::Io(..)) if reused => continue,
                other => return other,
            }
        }
    }

    async fn exchange(
        &self,
        peer: &str,
        mut stream: TcpStream,
        frame: &[u8],
        key: ApiKey,
        version: i16,
    ) -> Result<ResponseKind, ForwardError> {
        let exchange = async {
            stream.write_all(frame).await?;
            let len = stream.read_i32().await?;
            if len < 0 || len as usize > MAX_ANSWER {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("answer length {len}"),
                ));
            }
            let mut body = vec![0u8; len as usize];
            stream.read_exact(&mut body).await?;
            Ok(Bytes::from(body))
        };
        let mut body = tokio::time::timeout(ANSWER_TIMEOUT, exchange)
            .await
            .map_err(|_| ForwardError::Timeout(peer.to_owned(), ANSWER_TIMEOUT))?
            .map_err(|e| ForwardError::Io(peer.to_owned(), e))?;
        ResponseHeader::decode(&mut body, key.response_header_version(version))
            .map_err(|e| ForwardError::Malformed(peer.to_owned(), e.to_string()))?;
        let response = ResponseKind::decode(key, &mut body, version)
            .map_err(|e| ForwardError::Malformed(peer.to_owned(), e.to_string()))?;
        if !body.has_remaining() {
            self.put_idle(peer, stream);
        }
        Ok(response)
    }

    fn take_idle(&self, peer: &str) -> Option<TcpStream> {
        self.idle.lock().expect("idle lock").get_mut(peer)?.pop()
    }

    fn put_idle(&self, peer: &str, stream: TcpStream) {
        let mut idle = self.idle.lock().expect("idle lock");
        let list = idle.entry(peer.to_owned()).or_default();
        if list.len() < IDLE_PER_PEER {
            list.push(stream);
        }
    }
}
