//! Pulsar batch entries <-> gateway messages (DESIGN.md §4-5).
//!
//! A batch entry's payload is, after decompression, one `[size][SingleMessageMetadata][payload]`
//! per message. Keys: a UTF-8 key is stored as the partition key as it is; any other key base64
//! with `partition_key_b64_encoded`, which Pulsar clients decode back to bytes; the key bytes are
//! also the ordering key. Compression codecs are the ones Java clients read: LZ4 and SNAPPY as raw
//! blocks, ZLIB with the zlib wrapper, ZSTD frames.

use std::io::Write;

use base64::Engine;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use gateway_core::{BackendError, Message, Result};
use prost::Message as _;

use crate::proto::{compression, KeyValue, MessageMetadata, SingleMessageMetadata};

/// Largest uncompressed entry accepted from the broker.
const MAX_UNCOMPRESSED: usize = 64 * 1024 * 1024;

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

fn corrupt(what: &str) -> BackendError {
    BackendError::Storage(format!("unreadable entry from Pulsar: {what}"))
}

/// The partition key fields for a key.
fn key_fields(key: &Option<Bytes>) -> (Option<String>, Option<bool>, Option<Bytes>) {
    match key {
        None => (None, None, None),
        Some(k) => match std::str::from_utf8(k) {
            Ok(s) => (Some(s.to_owned()), None, Some(k.clone())),
            Err(_) => (Some(b64().encode(k)), Some(true), Some(k.clone())),
        },
    }
}

fn key_from(
    partition_key: Option<String>,
    b64_encoded: Option<bool>,
    ordering_key: Option<Bytes>,
) -> Option<Bytes> {
    match partition_key {
        Some(k) if b64_encoded == Some(true) => b64()
            .decode(&k)
            .ok()
            .map(Bytes::from)
            .or(Some(Bytes::from(k))),
        Some(k) => Some(Bytes::from(k)),
        None => ordering_key,
    }
}

fn properties(kv: Vec<KeyValue>) -> Vec<(String, String)> {
    kv.into_iter().map(|p| (p.key, p.value)).collect()
}

fn key_values(props: &[(String, String)]) -> Vec<KeyValue> {
    props
        .iter()
        .map(|(k, v)| KeyValue {
            key: k.clone(),
            value: v.clone(),
        })
        .collect()
}

/// Builds the metadata and payload of one batch entry.
pub fn encode_entry(
    messages: &[Message],
    producer_name: &str,
    sequence_id: u64,
    codec: i32,
) -> Result<(MessageMetadata, Bytes)> {
    let mut raw = BytesMut::new();
    for m in messages {
        let (partition_key, b64, ordering_key) = key_fields(&m.key);
        let value = m.value.as_deref().unwrap_or_default();
        let single = SingleMessageMetadata {
            properties: key_values(&m.properties),
            partition_key,
            payload_size: value.len() as i32,
            event_time: m.event_time.filter(|t| *t > 0),
            partition_key_b64_encoded: b64,
            ordering_key,
            null_value: m.value.is_none().then_some(true),
            ..Default::default()
        };
        raw.put_u32(single.encoded_len() as u32);
        single.encode(&mut raw).expect("buffer grows");
        raw.put_slice(value);
    }
    let uncompressed_size = raw.len() as u32;
    let payload = compress(codec, &raw)?;
    let metadata = MessageMetadata {
        producer_name: producer_name.to_owned(),
        sequence_id,
        publish_time: now_millis(),
        compression: (codec != compression::NONE).then_some(codec),
        uncompressed_size: Some(uncompressed_size),
        num_messages_in_batch: Some(messages.len() as i32),
        // Pulsar delays whole entries: the entry waits for its latest message.
        deliver_at_time: messages
            .iter()
            .filter_map(|m| m.deliver_at)
            .max()
            .map(|t| t.min(i64::MAX as u64) as i64),
        ..Default::default()
    };
    Ok((metadata, payload))
}

/// The messages of an entry, batched or not.
pub fn decode_entry(metadata: &MessageMetadata, payload: Bytes) -> Result<Vec<Message>> {
    decode_entry_indexed(metadata, payload).map(|(messages, _)| messages)
}

/// [`decode_entry`], with the batch index of each message when some were left out: a batch read
/// from a compacted ledger keeps its compacted-out messages as empty places (Pulsar's
/// `compacted_out`), so the ones kept have their original indexes. `None` when none was left
/// out (message `i` has index `i`).
pub fn decode_entry_indexed(
    metadata: &MessageMetadata,
    payload: Bytes,
) -> Result<(Vec<Message>, Option<Vec<u32>>)> {
    let raw = decompress(metadata, payload)?;
    let deliver_at = metadata
        .deliver_at_time
        .filter(|t| *t > 0)
        .map(|t| t as u64);
    let Some(count) = metadata
        .num_messages_in_batch
        .filter(|_| is_batch(metadata))
    else {
        // A message outside a batch carries its fields in the entry's metadata.
        return Ok((
            vec![Message {
                key: key_from(
                    metadata.partition_key.clone(),
                    metadata.partition_key_b64_encoded,
                    metadata.ordering_key.clone(),
                ),
                value: if metadata.null_value == Some(true) {
                    None
                } else {
                    Some(raw)
                },
                properties: properties(metadata.properties.clone()),
                event_time: metadata.event_time.filter(|t| *t > 0),
                deliver_at,
            }],
            None,
        ));
    };
    let mut raw = raw;
    let mut out = Vec::with_capacity((count.max(0) as usize).min(raw.len() / 4 + 1));
    // Filled in once a message is left out: the indexes of those kept before it, then each.
    let mut indexes: Option<Vec<u32>> = None;
    for index in 0..count.max(0) as u32 {
        if raw.len() < 4 {
            return Err(corrupt("batch shorter than its count"));
        }
        let size = raw.get_u32() as usize;
        if size > raw.len() {
            return Err(corrupt("single message metadata beyond the batch"));
        }
        let single = SingleMessageMetadata::decode(raw.split_to(size))
            .map_err(|e| corrupt(&e.to_string()))?;
        let payload_size = single.payload_size.max(0) as usize;
        if payload_size > raw.len() {
            return Err(corrupt("payload beyond the batch"));
        }
        let value = raw.split_to(payload_size);
        if single.compacted_out == Some(true) {
            indexes.get_or_insert_with(|| (0..index).collect());
            continue;
        }
        if let Some(indexes) = indexes.as_mut() {
            indexes.push(index);
        }
        out.push(Message {
            key: key_from(
                single.partition_key,
                single.partition_key_b64_encoded,
                single.ordering_key,
            ),
            value: if single.null_value == Some(true) {
                None
            } else {
                Some(value)
            },
            properties: properties(single.properties),
            event_time: single.event_time.filter(|t| *t > 0),
            deliver_at,
        });
    }
    Ok((out, indexes))
}

/// Java clients mark batches by setting `num_messages_in_batch`; our producer always batches.
fn is_batch(metadata: &MessageMetadata) -> bool {
    metadata.num_messages_in_batch.is_some()
}

fn compress(codec: i32, raw: &[u8]) -> Result<Bytes> {
    let failed = |e: std::io::Error| BackendError::Storage(format!("compression failed: {e}"));
    Ok(Bytes::from(match codec {
        compression::NONE => raw.to_vec(),
        compression::LZ4 => lz4::block::compress(raw, None, false).map_err(failed)?,
        compression::ZLIB => {
            let mut enc =
                flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
            enc.write_all(raw).map_err(failed)?;
            enc.finish().map_err(failed)?
        }
        compression::ZSTD => zstd::bulk::compress(raw, 3).map_err(failed)?,
        compression::SNAPPY => snap::raw::Encoder::new()
            .compress_vec(raw)
            .map_err(|e| BackendError::Storage(e.to_string()))?,
        other => {
            return Err(BackendError::InvalidArgument(format!(
                "unknown Pulsar codec {other}"
            )))
        }
    }))
}

fn decompress(metadata: &MessageMetadata, payload: Bytes) -> Result<Bytes> {
    let codec = metadata.compression.unwrap_or(compression::NONE);
    if codec == compression::NONE {
        return Ok(payload);
    }
    let size = metadata.uncompressed_size.unwrap_or(0) as usize;
    if size > MAX_UNCOMPRESSED {
        return Err(corrupt("uncompressed size too large"));
    }
    let out = match codec {
        compression::LZ4 => lz4::block::decompress(&payload, Some(size as i32))
            .map_err(|e| corrupt(&e.to_string()))?,
        compression::ZLIB => {
            // Java clients deflate with SYNC_FLUSH and never finish the stream (no final block,
            // no checksum), so read up to the declared size instead of to the stream's end.
            let mut out = Vec::with_capacity(size);
            flate2::Decompress::new(true)
                .decompress_vec(&payload, &mut out, flate2::FlushDecompress::Sync)
                .map_err(|e| corrupt(&e.to_string()))?;
            if out.len() != size {
                return Err(corrupt("zlib data shorter than its uncompressed size"));
            }
            out
        }
        compression::ZSTD => {
            zstd::bulk::decompress(&payload, size).map_err(|e| corrupt(&e.to_string()))?
        }
        compression::SNAPPY => snap::raw::Decoder::new()
            .decompress_vec(&payload)
            .map_err(|e| corrupt(&e.to_string()))?,
        _ => return Err(corrupt("unknown compression codec")),
    };
    Ok(Bytes::from(out))
}

pub fn now_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<Message> {
        vec![
            Message {
                key: Some(Bytes::from_static(b"text-key")),
                value: Some(Bytes::from_static(b"one")),
                properties: vec![("a".into(), "1".into()), ("a".into(), "2".into())],
                event_time: Some(42),
                deliver_at: None,
            },
            Message {
                key: Some(Bytes::from_static(b"\xff\x00binary")),
                value: None,
                properties: vec![],
                event_time: None,
                deliver_at: None,
            },
            Message::default(),
        ]
    }

    #[test]
    fn batches_round_trip_with_every_codec() {
        for codec in [
            compression::NONE,
            compression::LZ4,
            compression::ZLIB,
            compression::ZSTD,
            compression::SNAPPY,
        ] {
            let (metadata, payload) = encode_entry(&sample(), "p", 1, codec).unwrap();
            assert_eq!(metadata.num_messages_in_batch, Some(3));
            assert_eq!(
                decode_entry(&metadata, payload).unwrap(),
                sample(),
                "codec {codec}"
            );
        }
    }

    #[test]
    fn compacted_out_messages_keep_the_others_indexes() {
        let mut raw = BytesMut::new();
        for (i, out) in [false, true, false, true].into_iter().enumerate() {
            let value = format!("v{i}");
            let single = SingleMessageMetadata {
                payload_size: value.len() as i32,
                compacted_out: out.then_some(true),
                partition_key: Some(format!("k{i}")),
                ..Default::default()
            };
            let encoded = single.encode_to_vec();
            raw.put_u32(encoded.len() as u32);
            raw.put_slice(&encoded);
            raw.put_slice(value.as_bytes());
        }
        let metadata = MessageMetadata {
            num_messages_in_batch: Some(4),
            ..Default::default()
        };
        let (messages, indexes) = decode_entry_indexed(&metadata, raw.freeze()).unwrap();
        assert_eq!(indexes, Some(vec![0, 2]));
        let values: Vec<_> = messages.iter().map(|m| m.value.clone().unwrap()).collect();
        assert_eq!(values, [&b"v0"[..], &b"v2"[..]]);
        // Nothing left out: no indexes.
        let (metadata, payload) = encode_entry(&sample(), "p", 1, compression::NONE).unwrap();
        assert_eq!(decode_entry_indexed(&metadata, payload).unwrap().1, None);
    }

    #[test]
    fn an_entry_is_delivered_at_its_latest_message_time() {
        let mut messages = sample();
        messages[0].deliver_at = Some(1_700_000_000_500);
        messages[1].deliver_at = Some(1_700_000_000_000);
        let (metadata, payload) = encode_entry(&messages, "p", 1, compression::NONE).unwrap();
        assert_eq!(metadata.deliver_at_time, Some(1_700_000_000_500));
        let decoded = decode_entry(&metadata, payload).unwrap();
        assert!(decoded
            .iter()
            .all(|m| m.deliver_at == Some(1_700_000_000_500)));
        let (metadata, _) = encode_entry(&sample(), "p", 1, compression::NONE).unwrap();
        assert_eq!(metadata.deliver_at_time, None);
    }

    #[test]
    fn zlib_as_java_clients_write_it() {
        // Java's CompressionCodecZLib: SYNC_FLUSH, the stream never finished.
        let raw = b"a message outside a batch, deflated the Java way".repeat(20);
        let mut deflated = Vec::with_capacity(raw.len() + 64);
        flate2::Compress::new(flate2::Compression::default(), true)
            .compress_vec(&raw, &mut deflated, flate2::FlushCompress::Sync)
            .unwrap();
        let metadata = MessageMetadata {
            compression: Some(compression::ZLIB),
            uncompressed_size: Some(raw.len() as u32),
            ..Default::default()
        };
        let messages = decode_entry(&metadata, Bytes::from(deflated)).unwrap();
        assert_eq!(messages[0].value.as_deref(), Some(&raw[..]));
    }

    #[test]
    fn binary_keys_are_base64_in_pulsar() {
        let (partition_key, b64, _) = key_fields(&Some(Bytes::from_static(b"\xff")));
        assert_eq!((partition_key.as_deref(), b64), (Some("/w=="), Some(true)));
    }
}
