//! AMQP 0-9-1 framing (spec §4.2.3): `type:u8 channel:u16 size:u32 payload frame-end(0xCE)`.
//!
//! amq-protocol parses and generates frames; the frame header is read here first so that an
//! oversized frame is refused before its payload is buffered, and so that an unknown class or
//! method can be told apart from a malformed one (they get different close codes).

use amq_protocol::frame::{gen_frame, parse_frame, AMQPFrame, WriteContext};
use amq_protocol::protocol::constants;
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::error::{AmqpError, ReplyCode};

/// Frame header bytes plus the frame-end byte: what frame_max counts besides the payload.
pub const FRAME_OVERHEAD: u32 = 8;
const FRAME_END: u8 = 0xCE;

/// The 8 bytes a client opens with: "AMQP" 0 0 9 1.
pub const PROTOCOL_HEADER: [u8; 8] = *b"AMQP\x00\x00\x09\x01";

/// Serialises a frame.
pub fn encode(frame: &AMQPFrame, out: &mut Vec<u8>) {
    let buffer = std::mem::take(out);
    match gen_frame(frame)(WriteContext::from(buffer)) {
        Ok(written) => *out = written.write,
        // Only a frame built with out-of-range values fails; every frame here comes from typed
        // methods, so this is a bug worth a loud log, not a reason to kill the connection.
        Err(e) => tracing::error!(error = %e, frame = %frame, "cannot encode an AMQP frame"),
    }
}

/// Reads one frame. `frame_max` is the negotiated limit (whole frame), 0 meaning none beyond
/// `hard_max`.
pub async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    frame_max: u32,
    buf: &mut Vec<u8>,
) -> Result<AMQPFrame, ReadError> {
    let mut header = [0u8; 7];
    match reader.read_exact(&mut header).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(ReadError::Eof),
        Err(e) => return Err(ReadError::Io(e)),
    }
    let frame_type = header[0];
    let size = u32::from_be_bytes([header[3], header[4], header[5], header[6]]);
    if !matches!(
        frame_type,
        constants::FRAME_METHOD
            | constants::FRAME_HEADER
            | constants::FRAME_BODY
            | constants::FRAME_HEARTBEAT
    ) {
        return Err(ReadError::Protocol(AmqpError::connection(
            ReplyCode::FrameError,
            format!("unknown frame type {frame_type}"),
        )));
    }
    if size.saturating_add(FRAME_OVERHEAD) > frame_max {
        return Err(ReadError::Protocol(AmqpError::connection(
            ReplyCode::FrameError,
            format!(
                "frame size {} is larger than the negotiated frame_max {frame_max}",
                size as u64 + FRAME_OVERHEAD as u64
            ),
        )));
    }
    buf.clear();
    buf.extend_from_slice(&header);
    buf.resize(7 + size as usize + 1, 0);
    match reader.read_exact(&mut buf[7..]).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(ReadError::Eof),
        Err(e) => return Err(ReadError::Io(e)),
    }
    if buf[buf.len() - 1] != FRAME_END {
        return Err(ReadError::Protocol(AmqpError::connection(
            ReplyCode::FrameError,
            "frame does not end with 0xCE",
        )));
    }
    let payload = &buf[7..buf.len() - 1];
    let nesting_ok = match frame_type {
        constants::FRAME_METHOD => crate::nesting::method_within_limit(payload),
        constants::FRAME_HEADER => crate::nesting::header_within_limit(payload),
        _ => true,
    };
    if !nesting_ok {
        return Err(ReadError::Protocol(AmqpError::connection(
            ReplyCode::SyntaxError,
            format!(
                "field tables nested deeper than {} levels",
                crate::nesting::MAX_NESTING
            ),
        )));
    }
    match parse_frame(&buf[..]) {
        Ok((_, frame)) => Ok(frame),
        Err(_) if frame_type == constants::FRAME_METHOD => Err(ReadError::Protocol(
            method_parse_error(&buf[7..buf.len() - 1]),
        )),
        Err(_) => Err(ReadError::Protocol(AmqpError::connection(
            ReplyCode::FrameError,
            "malformed frame",
        ))),
    }
}

/// A method payload amq-protocol refused: an id it does not know is NOT_IMPLEMENTED (540), bad
/// arguments of a known method are a SYNTAX_ERROR (502).
fn method_parse_error(payload: &[u8]) -> AmqpError {
    if payload.len() < 4 {
        return AmqpError::connection(ReplyCode::FrameError, "method frame too short");
    }
    let class_id = u16::from_be_bytes([payload[0], payload[1]]);
    let method_id = u16::from_be_bytes([payload[2], payload[3]]);
    if known_method(class_id, method_id) {
        AmqpError::connection(
            ReplyCode::SyntaxError,
            format!("malformed arguments for method {class_id}.{method_id}"),
        )
        .on_method(class_id, method_id)
    } else {
        AmqpError::connection(
            ReplyCode::NotImplemented,
            format!("unknown method {class_id}.{method_id}"),
        )
        .on_method(class_id, method_id)
    }
}

/// The methods of AMQP 0-9-1 with RabbitMQ's extensions (confirm, basic.nack).
fn known_method(class_id: u16, method_id: u16) -> bool {
    let methods: &[u16] = match class_id {
        10 => &[10, 11, 20, 21, 30, 31, 40, 41, 50, 51, 60, 61, 70, 71],
        20 => &[10, 11, 20, 21, 40, 41],
        30 => &[10, 11],
        40 => &[10, 11, 20, 21, 30, 31, 40, 51],
        50 => &[10, 11, 20, 21, 30, 31, 40, 41, 50, 51],
        60 => &[
            10, 11, 20, 21, 30, 31, 40, 50, 60, 70, 71, 72, 80, 90, 100, 110, 111, 120,
        ],
        85 => &[10, 11],
        90 => &[10, 11, 20, 21, 30, 31],
        _ => &[],
    };
    methods.contains(&method_id)
}

#[derive(Debug)]
pub enum ReadError {
    /// The peer closed the socket.
    Eof,
    Io(std::io::Error),
    /// Bytes that break the protocol; the connection must be closed with this error.
    Protocol(AmqpError),
}

#[cfg(test)]
mod tests {
    use super::*;
    use amq_protocol::protocol::{basic, AMQPClass};

    fn bytes(frame: &AMQPFrame) -> Vec<u8> {
        let mut out = Vec::new();
        encode(frame, &mut out);
        out
    }

    #[tokio::test]
    async fn round_trips_a_method_frame() {
        let frame = AMQPFrame::Method(
            3,
            AMQPClass::Basic(basic::AMQPMethod::Ack(basic::Ack {
                delivery_tag: 42,
                multiple: true,
            })),
        );
        let wire = bytes(&frame);
        let mut buf = Vec::new();
        let got = read_frame(&mut &wire[..], 131072, &mut buf).await.unwrap();
        assert_eq!(got, frame);
    }

    #[tokio::test]
    async fn refuses_an_oversized_frame_before_reading_it() {
        let mut wire = vec![3u8, 0, 1];
        wire.extend_from_slice(&(1_000_000u32).to_be_bytes());
        let mut buf = Vec::new();
        match read_frame(&mut &wire[..], 4096, &mut buf).await {
            Err(ReadError::Protocol(e)) => assert_eq!(e.code, ReplyCode::FrameError),
            other => panic!("expected a frame error, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn tells_unknown_methods_from_malformed_ones() {
        // class 60 method 99 does not exist
        let wire = [1u8, 0, 1, 0, 0, 0, 4, 0, 60, 0, 99, 0xCE];
        let mut buf = Vec::new();
        match read_frame(&mut &wire[..], 4096, &mut buf).await {
            Err(ReadError::Protocol(e)) => assert_eq!(e.code, ReplyCode::NotImplemented),
            other => panic!("expected not-implemented, got {other:?}"),
        }
        // basic.ack (60.80) with a truncated argument list
        let wire = [1u8, 0, 1, 0, 0, 0, 6, 0, 60, 0, 80, 0, 1, 0xCE];
        match read_frame(&mut &wire[..], 4096, &mut buf).await {
            Err(ReadError::Protocol(e)) => assert_eq!(e.code, ReplyCode::SyntaxError),
            other => panic!("expected a syntax error, got {other:?}"),
        }
        // a bad frame-end byte
        let wire = [8u8, 0, 0, 0, 0, 0, 0, 0x00];
        match read_frame(&mut &wire[..], 4096, &mut buf).await {
            Err(ReadError::Protocol(e)) => assert_eq!(e.code, ReplyCode::FrameError),
            other => panic!("expected a frame error, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn deeply_nested_tables_are_refused_without_overflowing_the_stack() {
        // queue.declare (50.10) whose arguments nest tables 20,000 deep: 'F' + size + name...
        let depth = 20_000usize;
        let mut table = Vec::new();
        for _ in 0..depth {
            // key "a", type 'F', then the nested table's length (filled in below)
            table.extend_from_slice(&[1, b'a', b'F', 0, 0, 0, 0]);
        }
        // Each level's length covers every level inside it.
        for level in 0..depth {
            let at = level * 7 + 3;
            let inner = ((depth - level - 1) * 7) as u32;
            table[at..at + 4].copy_from_slice(&inner.to_be_bytes());
        }
        let mut payload = vec![0, 50, 0, 10, 0, 0, 1, b'q', 0];
        payload.extend_from_slice(&(table.len() as u32).to_be_bytes());
        payload.extend_from_slice(&table);
        let mut wire = vec![1u8, 0, 1];
        wire.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        wire.extend_from_slice(&payload);
        wire.push(0xCE);
        let mut buf = Vec::new();
        let got = read_frame(&mut &wire[..], 1 << 20, &mut buf).await;
        match got {
            Err(ReadError::Protocol(e)) => assert_eq!(e.code, ReplyCode::SyntaxError),
            other => panic!("a 20,000-deep table must be refused, got {other:?}"),
        }
    }

    proptest::proptest! {
        /// Whatever the bytes, reading a frame returns a frame or an error; it never panics.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
            runtime.block_on(async {
                let mut reader = &bytes[..];
                let mut buf = Vec::new();
                for _ in 0..8 {
                    if read_frame(&mut reader, 4096, &mut buf).await.is_err() {
                        break;
                    }
                }
            });
        }

        /// Valid frame headers around random payloads: the method parser sees arbitrary bytes.
        #[test]
        fn arbitrary_method_payloads_never_panic(
            class_id in 0u16..100, method_id in 0u16..130,
            rest in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256),
        ) {
            let mut payload = class_id.to_be_bytes().to_vec();
            payload.extend_from_slice(&method_id.to_be_bytes());
            payload.extend_from_slice(&rest);
            let mut wire = vec![1u8, 0, 1];
            wire.extend_from_slice(&(payload.len() as u32).to_be_bytes());
            wire.extend_from_slice(&payload);
            wire.push(0xCE);
            let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
            runtime.block_on(async {
                let mut buf = Vec::new();
                let _ = read_frame(&mut &wire[..], 131072, &mut buf).await;
            });
        }
    }
}
