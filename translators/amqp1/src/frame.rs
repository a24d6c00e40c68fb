//! AMQP 1.0 frames (core spec §2.3): the 8-byte header (size, data offset, type, channel), then
//! a performative and, for transfers, the payload. The size is checked against the limit before
//! anything is allocated, and a short or malformed header is an error, never a panic.

use bytes::{BufMut, Bytes, BytesMut};
use fe2o3_amqp_types::performatives::{Performative, Transfer};
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt};

/// Frame type of AMQP frames (§2.3.2) and of SASL frames (§5.3.1).
pub const TYPE_AMQP: u8 = 0x00;
pub const TYPE_SASL: u8 = 0x01;
/// The smallest max-frame-size a peer may set, and the limit before open (§2.7.1).
pub const MIN_MAX_FRAME_SIZE: u32 = 512;
const HEADER_LEN: usize = 8;

/// The protocol headers (§2.2, §5.2.1).
pub const HEADER_AMQP: [u8; 8] = *b"AMQP\x00\x01\x00\x00";
pub const HEADER_SASL: [u8; 8] = *b"AMQP\x03\x01\x00\x00";

/// One frame off the wire; `body` starts after any extended header.
#[derive(Debug)]
pub struct RawFrame {
    pub kind: u8,
    pub channel: u16,
    pub body: Bytes,
}

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("connection closed")]
    Closed,
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("frame of {size} bytes is over the maximum frame size {max}")]
    TooLarge { size: u32, max: u32 },
    #[error("frame size {0} is below the 8-byte frame header")]
    TooShort(u32),
    #[error("data offset {doff} is outside the frame of {size} bytes")]
    BadOffset { doff: u8, size: u32 },
}

/// Reads one frame no larger than `max`.
pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R, max: u32) -> Result<RawFrame, FrameError> {
    let mut header = [0u8; HEADER_LEN];
    match r.read_exact(&mut header).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(FrameError::Closed),
        Err(e) => return Err(e.into()),
    }
    let size = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
    if size < HEADER_LEN as u32 {
        return Err(FrameError::TooShort(size));
    }
    if size > max {
        return Err(FrameError::TooLarge { size, max });
    }
    let doff = header[4];
    // doff counts 4-byte words; below 2 it would point into the header (§2.3.1).
    let offset = doff as u32 * 4;
    if doff < 2 || offset > size {
        return Err(FrameError::BadOffset { doff, size });
    }
    let mut rest = vec![0u8; size as usize - HEADER_LEN];
    r.read_exact(&mut rest).await?;
    let mut body = Bytes::from(rest);
    // An extended header is for extensions we do not know; the spec has the receiver skip it.
    let _ = body.split_to(offset as usize - HEADER_LEN);
    Ok(RawFrame {
        kind: header[5],
        channel: u16::from_be_bytes([header[6], header[7]]),
        body,
    })
}

/// Decodes the performative at the start of an AMQP frame body; the rest is a transfer's payload.
/// The performative is measured (and every length in it checked) before `serde_amqp` sees it.
pub fn decode_performative(body: Bytes) -> Result<(Performative, Bytes), serde_amqp::Error> {
    let len = measured(&body)?;
    let performative = serde_amqp::from_slice(&body[..len])?;
    Ok((performative, body.slice(len..)))
}

/// Decodes a whole SASL frame body as `T`.
pub fn decode_sasl<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, serde_amqp::Error> {
    let len = measured(body)?;
    serde_amqp::from_slice(&body[..len])
}

fn measured(body: &[u8]) -> Result<usize, serde_amqp::Error> {
    crate::encoding::value_len(body)
        .ok_or_else(|| serde_amqp::Error::Message("malformed, or longer than its frame".into()))
}

fn start(buf: &mut BytesMut, kind: u8, channel: u16) -> usize {
    let at = buf.len();
    buf.put_u32(0); // size, filled in by `finish`
    buf.put_u8(2);
    buf.put_u8(kind);
    buf.put_u16(channel);
    at
}

fn finish(buf: &mut BytesMut, at: usize) {
    let size = (buf.len() - at) as u32;
    buf[at..at + 4].copy_from_slice(&size.to_be_bytes());
}

/// One frame carrying `body` (a performative or a SASL frame).
pub fn encode<T: Serialize>(kind: u8, channel: u16, body: &T) -> Result<Bytes, serde_amqp::Error> {
    let mut buf = BytesMut::new();
    let at = start(&mut buf, kind, channel);
    let mut ser = serde_amqp::ser::Serializer::from((&mut buf).writer());
    body.serialize(&mut ser)?;
    finish(&mut buf, at);
    Ok(buf.freeze())
}

/// An empty frame: the heartbeat of §2.4.5.
pub fn empty() -> Bytes {
    let mut buf = BytesMut::with_capacity(HEADER_LEN);
    let at = start(&mut buf, TYPE_AMQP, 0);
    finish(&mut buf, at);
    buf.freeze()
}

/// A delivery as transfer frames of at most `max_frame` bytes each (§2.6.14): every frame but
/// the last has `more` set. Continuations repeat the delivery id and tag, which the spec allows.
pub fn encode_transfer(
    channel: u16,
    mut transfer: Transfer,
    payload: &[u8],
    max_frame: u32,
) -> Result<Vec<Bytes>, serde_amqp::Error> {
    transfer.more = true;
    let performative = serde_amqp::to_vec(&Performative::Transfer(transfer.clone()))?;
    let room = (max_frame as usize).saturating_sub(HEADER_LEN + performative.len());
    if room == 0 {
        return Err(serde_amqp::Error::Message(
            "transfer performative does not fit the frame size".into(),
        ));
    }
    let mut frames = Vec::with_capacity(payload.len() / room + 1);
    let mut chunks = payload.chunks(room).peekable();
    if chunks.peek().is_none() {
        transfer.more = false;
        frames.push(transfer_frame(channel, &transfer, &[])?);
    }
    while let Some(chunk) = chunks.next() {
        transfer.more = chunks.peek().is_some();
        frames.push(transfer_frame(channel, &transfer, chunk)?);
    }
    Ok(frames)
}

fn transfer_frame(channel: u16, t: &Transfer, chunk: &[u8]) -> Result<Bytes, serde_amqp::Error> {
    let mut buf = BytesMut::with_capacity(HEADER_LEN + 64 + chunk.len());
    let at = start(&mut buf, TYPE_AMQP, channel);
    let mut ser = serde_amqp::ser::Serializer::from((&mut buf).writer());
    Performative::Transfer(t.clone()).serialize(&mut ser)?;
    buf.put_slice(chunk);
    finish(&mut buf, at);
    Ok(buf.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;
    use fe2o3_amqp_types::definitions::Handle;
    use fe2o3_amqp_types::performatives::Close;

    async fn read(bytes: &[u8], max: u32) -> Result<RawFrame, FrameError> {
        let mut r = bytes;
        read_frame(&mut r, max).await
    }

    #[tokio::test]
    async fn short_oversized_and_misplaced_frames_are_errors() {
        assert!(matches!(
            read(&[0, 0, 0, 5, 2, 0, 0, 0], 512).await,
            Err(FrameError::TooShort(5))
        ));
        assert!(matches!(
            read(&[0, 1, 0, 0, 2, 0, 0, 0], 512).await,
            Err(FrameError::TooLarge { size: 65536, .. })
        ));
        assert!(matches!(
            read(&[0, 0, 0, 8, 1, 0, 0, 0], 512).await,
            Err(FrameError::BadOffset { .. })
        ));
        assert!(matches!(
            read(&[0, 0, 0, 8, 3, 0, 0, 0], 512).await,
            Err(FrameError::BadOffset { .. })
        ));
        assert!(matches!(
            read(&[0, 0, 0], 512).await,
            Err(FrameError::Closed)
        ));
    }

    #[tokio::test]
    async fn an_extended_header_is_skipped() {
        let close = encode(TYPE_AMQP, 3, &Performative::Close(Close { error: None })).unwrap();
        let mut framed = vec![0, 0, 0, 0, 3, 0, 0, 3, 9, 9, 9, 9];
        framed.extend_from_slice(&close[8..]);
        let size = framed.len() as u32;
        framed[..4].copy_from_slice(&size.to_be_bytes());
        let frame = read(&framed, 512).await.unwrap();
        assert_eq!(frame.channel, 3);
        let (p, payload) = decode_performative(frame.body).unwrap();
        assert!(matches!(p, Performative::Close(_)));
        assert!(payload.is_empty());
    }

    fn transfer() -> Transfer {
        Transfer {
            handle: Handle(1),
            delivery_id: Some(7),
            delivery_tag: Some(vec![7].into()),
            message_format: Some(0),
            settled: Some(false),
            more: false,
            rcv_settle_mode: None,
            state: None,
            resume: false,
            aborted: false,
            batchable: false,
        }
    }

    #[tokio::test]
    async fn a_large_delivery_is_split_and_put_back_together() {
        let payload: Vec<u8> = (0..5000u32).map(|i| i as u8).collect();
        let frames = encode_transfer(2, transfer(), &payload, 512).unwrap();
        assert!(frames.len() > 9, "{} frames", frames.len());
        let mut joined = Vec::new();
        for (i, f) in frames.iter().enumerate() {
            assert!(f.len() <= 512);
            let frame = read(f, 512).await.unwrap();
            let (p, chunk) = decode_performative(frame.body).unwrap();
            let Performative::Transfer(t) = p else {
                panic!("not a transfer")
            };
            assert_eq!(t.more, i + 1 < frames.len());
            joined.extend_from_slice(&chunk);
        }
        assert_eq!(joined, payload);
    }

    #[test]
    fn every_truncation_of_a_performative_is_a_decode_error() {
        use fe2o3_amqp_types::definitions::Role;
        use fe2o3_amqp_types::messaging::Target;
        use fe2o3_amqp_types::performatives::Attach;
        let attach = Attach {
            name: "cut".into(),
            handle: Handle(0),
            role: Role::Sender,
            snd_settle_mode: Default::default(),
            rcv_settle_mode: Default::default(),
            source: None,
            target: Some(Box::new(Target::builder().address("q").build().into())),
            unsettled: None,
            incomplete_unsettled: false,
            initial_delivery_count: Some(0),
            max_message_size: None,
            offered_capabilities: None,
            desired_capabilities: None,
            properties: None,
        };
        let whole = serde_amqp::to_vec(&Performative::Attach(attach)).unwrap();
        assert!(decode_performative(Bytes::from(whole.clone())).is_ok());
        for cut in 1..whole.len() {
            let cut_short = Bytes::copy_from_slice(&whole[..cut]);
            assert!(
                decode_performative(cut_short).is_err(),
                "cut at {cut} of {}",
                whole.len()
            );
        }
    }

    #[test]
    fn garbage_is_a_decode_error() {
        assert!(decode_performative(Bytes::from_static(&[0x00, 0x53, 0x99, 0x45])).is_err());
        assert!(decode_performative(Bytes::from_static(&[0xff, 0xff])).is_err());
        assert!(decode_performative(Bytes::new()).is_err());
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_are_a_frame_or_an_error_never_a_panic(bytes: Vec<u8>) {
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            if let Ok(frame) = rt.block_on(read(&bytes, 512)) {
                let _ = decode_performative(frame.body);
            }
            let _ = decode_performative(Bytes::from(bytes));
        }

        #[test]
        fn flows_round_trip(
            next_incoming_id: Option<u32>,
            incoming_window: u32,
            next_outgoing_id: u32,
            handle: Option<u32>,
            credit: Option<u32>,
            drain: bool,
            channel: u16,
        ) {
            let flow = fe2o3_amqp_types::performatives::Flow {
                next_incoming_id,
                incoming_window,
                next_outgoing_id,
                outgoing_window: u32::MAX,
                handle: handle.map(Handle),
                delivery_count: handle.map(|_| 7),
                link_credit: credit,
                available: None,
                drain,
                echo: false,
                properties: None,
            };
            let bytes = encode(TYPE_AMQP, channel, &Performative::Flow(flow.clone())).unwrap();
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let frame = rt.block_on(read(&bytes, 512)).unwrap();
            proptest::prop_assert_eq!(frame.channel, channel);
            let (decoded, payload) = decode_performative(frame.body).unwrap();
            proptest::prop_assert_eq!(decoded, Performative::Flow(flow));
            proptest::prop_assert!(payload.is_empty());
        }
    }
}
