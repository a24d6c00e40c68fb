//! Kafka requests over a raw socket, for tests that must ask one particular instance (a client
//! library picks the broker itself) or send what no client library would.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, MetadataRequest, MetadataResponse, RequestHeader, SaslAuthenticateRequest,
    SaslAuthenticateResponse, SaslHandshakeRequest,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

/// A framed request: length, header, body.
pub fn request(key: ApiKey, version: i16, correlation: i32, body: impl Encodable) -> Vec<u8> {
    let mut header = RequestHeader::default();
    header.request_api_key = key as i16;
    header.request_api_version = version;
    header.correlation_id = correlation;
    header.client_id = Some(StrBytes::from_static_str("raw-test"));
    let mut buf = BytesMut::new();
    header
        .encode(&mut buf, key.request_header_version(version))
        .unwrap();
    body.encode(&mut buf, version).unwrap();
    let mut framed = (buf.len() as i32).to_be_bytes().to_vec();
    framed.extend_from_slice(&buf);
    framed
}

pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// One response body (after the correlation id, and the header's tagged fields for flexible
/// versions), or `None` when the gateway closed the connection.
pub fn response(s: &mut TcpStream, key: ApiKey, version: i16) -> Option<Bytes> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).ok()?;
    let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
    s.read_exact(&mut body).ok()?;
    let mut body = Bytes::from(body);
    body.advance(4); // correlation id
    if key.response_header_version(version) >= 1 {
        // Tagged fields of a flexible header: none are sent.
        body.advance(1);
    }
    Some(body)
}

/// SASL/PLAIN on an open connection (SaslHandshake v1, SaslAuthenticate v2).
pub fn authenticate_plain(s: &mut TcpStream, username: &str, password: &str) {
    let mut hs = SaslHandshakeRequest::default();
    hs.mechanism = StrBytes::from_static_str("PLAIN");
    s.write_all(&request(ApiKey::SaslHandshake, 1, 1, hs))
        .unwrap();
    response(s, ApiKey::SaslHandshake, 1).expect("handshake answered");
    let mut auth = SaslAuthenticateRequest::default();
    auth.auth_bytes = Bytes::from(format!("\0{username}\0{password}"));
    s.write_all(&request(ApiKey::SaslAuthenticate, 2, 2, auth))
        .unwrap();
    let mut body = response(s, ApiKey::SaslAuthenticate, 2).expect("authenticate answered");
    let answer = SaslAuthenticateResponse::decode(&mut body, 2).unwrap();
    assert_eq!(answer.error_code, 0, "authenticated");
}

/// The brokers (node id, port) that the instance at `addr` lists in Metadata, asked over
/// plaintext, with SASL/PLAIN when `plain` gives a username and password.
pub fn metadata_brokers(addr: SocketAddr, plain: Option<(&str, &str)>) -> Vec<(i32, u16)> {
    let mut s = connect(addr);
    if let Some((username, password)) = plain {
        authenticate_plain(&mut s, username, password);
    }
    s.write_all(&request(ApiKey::Metadata, 9, 3, MetadataRequest::default()))
        .unwrap();
    let mut body = response(&mut s, ApiKey::Metadata, 9).expect("metadata answered");
    let metadata = MetadataResponse::decode(&mut body, 9).unwrap();
    metadata
        .brokers
        .iter()
        .map(|b| (b.node_id.0, b.port as u16))
        .collect()
}
