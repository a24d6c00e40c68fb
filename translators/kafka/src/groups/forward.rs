//! Forward mode: behind one load-balancer address a client may reach any instance, so an
//! instance that does not coordinate a group passes the group's requests to the instance that
//! does, on that instance's internal listener, and relays the answer. Internal connections are
//! served locally only, so a request is forwarded at most once; if ownership moved in between,
//! the owner-to-be answers NOT_COORDINATOR and the client looks the coordinator up again.
//!
//! Each new connection first proves the fleet's shared secret (`peer_auth`); an instance
//! configured without one connects without SASL, and a peer requiring it closes the connection.
//!
//! Requests are re-encoded at the version the client used, with its client id, so the owner
//! sees what the client sent (except the peer address, which is the forwarding instance's).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use gateway_security::PeerSecret;
use kafka_protocol::messages::{
    ApiKey, RequestHeader, RequestKind, ResponseHeader, ResponseKind, SaslAuthenticateRequest,
    SaslHandshakeRequest,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::peer_auth;

/// Longest answer to wait for: a JoinGroup may wait a whole rebalance timeout (5 min by default).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(330);
/// Connecting and authenticating to a peer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest answer accepted from a peer.
const MAX_ANSWER: usize = 100 * 1024 * 1024;
/// Idle connections kept per peer.
const IDLE_PER_PEER: usize = 8;
/// Versions of the authentication requests: both known to every instance of this code.
const HANDSHAKE_VERSION: i16 = 1;
const AUTHENTICATE_VERSION: i16 = 1;

#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("peer {0}: {1}")]
    Io(String, std::io::Error),
    #[error("peer {0} sent an answer that does not decode: {1}")]
    Malformed(String, String),
    #[error("peer {0} did not answer within {1:?}")]
    Timeout(String, Duration),
    #[error("peer {0} refused this instance's secret ({1}); every instance of a fleet needs the same kafka.internal_secret")]
    Refused(String, String),
}

/// Connections to peers' internal listeners, one request at a time each.
#[derive(Default)]
pub struct Forwarder {
    idle: Mutex<HashMap<String, Vec<TcpStream>>>,
    /// Proven on each new connection.
    secret: Option<Arc<PeerSecret>>,
}

impl Forwarder {
    /// A forwarder proving `secret` to its peers (none: it connects without authenticating).
    pub fn new(secret: Option<Arc<PeerSecret>>) -> Forwarder {
        Forwarder {
            idle: Mutex::default(),
            secret,
        }
    }

    /// Sends `request` to `peer` as the client sent it and returns the peer's answer.
    pub async fn forward(
        &self,
        peer: &str,
        key: ApiKey,
        version: i16,
        client_id: &str,
        request: &RequestKind,
    ) -> Result<ResponseKind, ForwardError> {
        debug_assert!(
            crate::api_versions::served_internally(key),
            "{key:?} is forwarded but not served on the internal listener"
        );
        let frame = encode_request(key, version, client_id, request)
            .map_err(|e| ForwardError::Malformed(peer.to_owned(), e))?;

        // A pooled connection may have been closed by a peer that restarted: retry once on a
        // fresh one.
        let mut pooled = self.take_idle(peer);
        loop {
            let reused = pooled.is_some();
            let stream = match pooled.take() {
                Some(s) => s,
                None => tokio::time::timeout(CONNECT_TIMEOUT, self.connect(peer))
                    .await
                    .map_err(|_| ForwardError::Timeout(peer.to_owned(), CONNECT_TIMEOUT))??,
            };
            match self.exchange(peer, stream, &frame, key, version).await {
                Err(ForwardError::Io(..)) if reused => continue,
                other => return other,
            }
        }
    }

    /// A new connection to `peer`, authenticated with the fleet's secret when there is one.
    async fn connect(&self, peer: &str) -> Result<TcpStream, ForwardError> {
        let io = |e| ForwardError::Io(peer.to_owned(), e);
        let mut stream = TcpStream::connect(peer).await.map_err(io)?;
        let Some(secret) = &self.secret else {
            return Ok(stream);
        };
        let mut handshake = SaslHandshakeRequest::default();
        handshake.mechanism = StrBytes::from_static_str("PLAIN");
        let answer = round_trip(
            peer,
            &mut stream,
            ApiKey::SaslHandshake,
            HANDSHAKE_VERSION,
            &RequestKind::SaslHandshake(handshake),
        )
        .await?;
        match answer {
            ResponseKind::SaslHandshake(a) if a.error_code == 0 => {}
            ResponseKind::SaslHandshake(a) => {
                return Err(ForwardError::Refused(
                    peer.to_owned(),
                    format!("SaslHandshake error {}", a.error_code),
                ))
            }
            other => {
                return Err(ForwardError::Malformed(
                    peer.to_owned(),
                    format!("{other:?} for a SaslHandshake"),
                ))
            }
        }
        let mut authenticate = SaslAuthenticateRequest::default();
        authenticate.auth_bytes = peer_auth::credentials(secret);
        let answer = round_trip(
            peer,
            &mut stream,
            ApiKey::SaslAuthenticate,
            AUTHENTICATE_VERSION,
            &RequestKind::SaslAuthenticate(authenticate),
        )
        .await?;
        match answer {
            ResponseKind::SaslAuthenticate(a) if a.error_code == 0 => Ok(stream),
            ResponseKind::SaslAuthenticate(a) => Err(ForwardError::Refused(
                peer.to_owned(),
                a.error_message
                    .map(|m| m.to_string())
                    .unwrap_or_else(|| format!("SaslAuthenticate error {}", a.error_code)),
            )),
            other => Err(ForwardError::Malformed(
                peer.to_owned(),
                format!("{other:?} for a SaslAuthenticate"),
            )),
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
            read_answer(&mut stream).await
        };
        let body = tokio::time::timeout(ANSWER_TIMEOUT, exchange)
            .await
            .map_err(|_| ForwardError::Timeout(peer.to_owned(), ANSWER_TIMEOUT))?
            .map_err(|e| ForwardError::Io(peer.to_owned(), e))?;
        let (response, whole) = decode_answer(peer, body, key, version)?;
        if whole {
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

/// A framed request: length, header, body.
fn encode_request(
    key: ApiKey,
    version: i16,
    client_id: &str,
    request: &RequestKind,
) -> Result<BytesMut, String> {
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
        .map_err(|e| e.to_string())?;
    let len = (frame.len() - 4) as i32;
    frame[..4].copy_from_slice(&len.to_be_bytes());
    Ok(frame)
}

/// One framed answer's bytes, its length checked before anything is allocated.
async fn read_answer(stream: &mut TcpStream) -> std::io::Result<Bytes> {
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
}

/// The decoded answer, and whether it took the whole frame (the connection can be reused).
fn decode_answer(
    peer: &str,
    mut body: Bytes,
    key: ApiKey,
    version: i16,
) -> Result<(ResponseKind, bool), ForwardError> {
    let malformed = |e: String| ForwardError::Malformed(peer.to_owned(), e);
    ResponseHeader::decode(&mut body, key.response_header_version(version))
        .map_err(|e| malformed(e.to_string()))?;
    let response =
        ResponseKind::decode(key, &mut body, version).map_err(|e| malformed(e.to_string()))?;
    Ok((response, !body.has_remaining()))
}

/// One request and its answer on a fresh connection (authentication).
async fn round_trip(
    peer: &str,
    stream: &mut TcpStream,
    key: ApiKey,
    version: i16,
    request: &RequestKind,
) -> Result<ResponseKind, ForwardError> {
    let frame = encode_request(key, version, "gateway-peer", request)
        .map_err(|e| ForwardError::Malformed(peer.to_owned(), e))?;
    let io = |e| ForwardError::Io(peer.to_owned(), e);
    stream.write_all(&frame).await.map_err(io)?;
    let body = read_answer(stream).await.map_err(io)?;
    decode_answer(peer, body, key, version).map(|(response, _)| response)
}
