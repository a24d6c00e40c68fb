//! Pulsar frames (Pulsar binary protocol, "Framing"):
//!
//! - simple command: `[total size][command size][BaseCommand]`
//! - with payload: `... [0x0e01][crc32c][metadata size][MessageMetadata][payload]`, where the
//!   checksum covers everything after it. A broker that adds broker entry metadata puts
//!   `[0x0e02][size][BrokerEntryMetadata]` before the `0x0e01` part.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use prost::Message;

use crate::proto::{BaseCommand, MessageMetadata};

const MAGIC_CHECKSUM: u16 = 0x0e01;
const MAGIC_BROKER_ENTRY_METADATA: u16 = 0x0e02;
/// Pulsar's default `maxMessageSize`, used until the broker names its own in CONNECTED.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 5 * 1024 * 1024;

/// The largest frame a broker with this `maxMessageSize` sends: the entry plus the command,
/// metadata and broker entry metadata around it (Pulsar pads its own limit by 10 KiB).
pub fn frame_limit(max_message_size: usize) -> usize {
    max_message_size.max(DEFAULT_MAX_MESSAGE_SIZE) + 64 * 1024
}

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {0} bytes exceeds the limit")]
    TooLarge(usize),
    #[error("malformed frame: {0}")]
    Malformed(&'static str),
    #[error("payload checksum mismatch")]
    Checksum,
    #[error("protobuf: {0}")]
    Decode(#[from] prost::DecodeError),
}

/// A decoded frame: the command and, for MESSAGE frames, the entry's metadata and payload.
#[derive(Debug)]
pub struct Frame {
    pub command: BaseCommand,
    pub payload: Option<(MessageMetadata, Bytes)>,
}

pub fn encode_command(command: &BaseCommand) -> Bytes {
    let size = command.encoded_len();
    let mut out = BytesMut::with_capacity(8 + size);
    out.put_u32((4 + size) as u32);
    out.put_u32(size as u32);
    command.encode(&mut out).expect("buffer has room");
    out.freeze()
}

pub fn encode_with_payload(
    command: &BaseCommand,
    metadata: &MessageMetadata,
    payload: &[u8],
) -> Bytes {
    let (cmd_size, meta_size) = (command.encoded_len(), metadata.encoded_len());
    let total = 4 + cmd_size + 2 + 4 + 4 + meta_size + payload.len();
    let mut out = BytesMut::with_capacity(4 + total);
    out.put_u32(total as u32);
    out.put_u32(cmd_size as u32);
    command.encode(&mut out).expect("buffer has room");
    out.put_u16(MAGIC_CHECKSUM);
    let checksum_at = out.len();
    out.put_u32(0);
    out.put_u32(meta_size as u32);
    metadata.encode(&mut out).expect("buffer has room");
    out.put_slice(payload);
    let crc = crc32c::crc32c(&out[checksum_at + 4..]);
    out[checksum_at..checksum_at + 4].copy_from_slice(&crc.to_be_bytes());
    out.freeze()
}

/// If `buf` starts with a whole frame, removes and decodes it. The size is checked against
/// `limit` before anything is allocated for the frame.
pub fn decode(buf: &mut BytesMut, limit: usize) -> Result<Option<Frame>, FrameError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let total = u32::from_be_bytes(buf[..4].try_into().expect("4 bytes")) as usize;
    if total > limit {
        return Err(FrameError::TooLarge(total));
    }
    if buf.len() < 4 + total {
        buf.reserve(4 + total - buf.len());
        return Ok(None);
    }
    buf.advance(4);
    let mut frame = buf.split_to(total).freeze();
    if frame.len() < 4 {
        return Err(FrameError::Malformed("no command size"));
    }
    let cmd_size = frame.get_u32() as usize;
    if cmd_size > frame.len() {
        return Err(FrameError::Malformed("command size beyond the frame"));
    }
    let command = BaseCommand::decode(frame.split_to(cmd_size))?;
    if !frame.has_remaining() {
        return Ok(Some(Frame {
            command,
            payload: None,
        }));
    }
    if frame.len() >= 6
        && u16::from_be_bytes(frame[..2].try_into().expect("2 bytes"))
            == MAGIC_BROKER_ENTRY_METADATA
    {
        frame.advance(2);
        let size = frame.get_u32() as usize;
        if size > frame.len() {
            return Err(FrameError::Malformed(
                "broker entry metadata beyond the frame",
            ));
        }
        frame.advance(size);
    }
    if frame.len() < 10 || frame.get_u16() != MAGIC_CHECKSUM {
        return Err(FrameError::Malformed("payload without checksum magic"));
    }
    let crc = frame.get_u32();
    if crc32c::crc32c(&frame) != crc {
        return Err(FrameError::Checksum);
    }
    let meta_size = frame.get_u32() as usize;
    if meta_size > frame.len() {
        return Err(FrameError::Malformed("metadata size beyond the frame"));
    }
    let metadata = MessageMetadata::decode(frame.split_to(meta_size))?;
    Ok(Some(Frame {
        command,
        payload: Some((metadata, frame)),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{command_type, CommandSend};

    const LIMIT: usize = 1024 * 1024;

    #[test]
    fn the_size_limit_is_checked_before_the_frame_arrives() {
        let mut buf = BytesMut::from(&((LIMIT + 1) as u32).to_be_bytes()[..]);
        assert!(matches!(
            decode(&mut buf, LIMIT),
            Err(FrameError::TooLarge(n)) if n == LIMIT + 1
        ));
        assert!(frame_limit(10 * 1024 * 1024) > 10 * 1024 * 1024);
        assert!(frame_limit(1024) > DEFAULT_MAX_MESSAGE_SIZE);
    }

    #[test]
    fn payload_frames_round_trip_and_checksums_are_checked() {
        let command = BaseCommand {
            r#type: command_type::SEND,
            send: Some(CommandSend {
                producer_id: 1,
                sequence_id: 7,
                num_messages: Some(2),
                txnid_least_bits: None,
                txnid_most_bits: None,
                highest_sequence_id: None,
            }),
            ..Default::default()
        };
        let metadata = MessageMetadata {
            producer_name: "p".into(),
            sequence_id: 7,
            publish_time: 1,
            ..Default::default()
        };
        let bytes = encode_with_payload(&command, &metadata, b"payload");
        let mut buf = BytesMut::from(&bytes[..bytes.len() - 1]);
        assert!(
            decode(&mut buf, LIMIT).unwrap().is_none(),
            "a partial frame waits"
        );
        let mut buf = BytesMut::from(&bytes[..]);
        let frame = decode(&mut buf, LIMIT).unwrap().unwrap();
        assert_eq!(frame.command, command);
        assert_eq!(
            frame.payload,
            Some((metadata, Bytes::from_static(b"payload")))
        );
        let mut corrupt = BytesMut::from(&bytes[..]);
        let last = corrupt.len() - 1;
        corrupt[last] ^= 1;
        assert!(matches!(
            decode(&mut corrupt, LIMIT),
            Err(FrameError::Checksum)
        ));
    }
}
