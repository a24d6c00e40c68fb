//! Kafka record batches, magic v2 (Kafka protocol guide, "Record Batch").
//!
//! Written here rather than taken from `kafka-protocol`, because that crate's `Record` keeps headers
//! in a map: Kafka allows repeated header keys, and they must survive the round trip. Decoding is
//! defensive: every length is checked against the bytes actually present before anything is
//! allocated, and decompressed batches are capped.

use std::io::Read;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use thiserror::Error;

/// Bytes before the first record: base offset .. record count.
pub const HEADER_LEN: usize = 61;
/// Smallest possible encoded record: length, attributes, three deltas and two -1 lengths, 0 headers.
const MIN_RECORD_LEN: usize = 7;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum BatchError {
    #[error("record batch is truncated")]
    Truncated,
    #[error("unsupported record batch magic {0} (only v2 batches are accepted)")]
    UnsupportedMagic(i8),
    #[error("record batch checksum mismatch")]
    BadChecksum,
    #[error("corrupt record batch: {0}")]
    Corrupt(&'static str),
    #[error("unknown compression codec {0}")]
    UnknownCodec(u8),
    #[error("decompression failed: {0}")]
    Decompression(String),
    #[error("decompressed batch exceeds {0} bytes")]
    TooLarge(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    None = 0,
    Gzip = 1,
    Snappy = 2,
    Lz4 = 3,
    Zstd = 4,
}

/// The fields of a batch header that the gateway uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    pub codec: Codec,
    pub transactional: bool,
    pub control: bool,
    pub log_append_time: bool,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub record_count: i32,
}

/// One record, with headers in wire order (duplicates kept).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub offset_delta: i32,
    pub timestamp: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<(Bytes, Option<Bytes>)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub header: BatchHeader,
    pub records: Vec<Record>,
}

/// Splits a produce request's record set into its batches and decodes each.
pub fn decode_all(mut data: Bytes, max_decompressed: usize) -> Result<Vec<Batch>, BatchError> {
    let mut out = Vec::new();
    while data.has_remaining() {
        if data.len() < 12 {
            return Err(BatchError::Truncated);
        }
        let batch_len = i32::from_be_bytes(data[8..12].try_into().expect("4 bytes"));
        if batch_len < (HEADER_LEN - 12) as i32 || data.len() < 12 + batch_len as usize {
            return Err(BatchError::Truncated);
        }
        let batch = data.split_to(12 + batch_len as usize);
        out.push(decode(batch, max_decompressed)?);
    }
    Ok(out)
}

/// Decodes one whole batch (exactly its bytes).
pub fn decode(batch: Bytes, max_decompressed: usize) -> Result<Batch, BatchError> {
    if batch.len() < HEADER_LEN {
        return Err(BatchError::Truncated);
    }
    let mut b = batch.clone();
    let base_offset = b.get_i64();
    let _batch_len = b.get_i32();
    let _leader_epoch = b.get_i32();
    let magic = b.get_i8();
    if magic != 2 {
        return Err(BatchError::UnsupportedMagic(magic));
    }
    let crc = b.get_u32();
    if crc32c::crc32c(&batch[21..]) != crc {
        return Err(BatchError::BadChecksum);
    }
    let attributes = b.get_i16();
    let _last_offset_delta = b.get_i32();
    let header = BatchHeader {
        base_offset,
        codec: match attributes & 0x07 {
            0 => Codec::None,
            1 => Codec::Gzip,
            2 => Codec::Snappy,
            3 => Codec::Lz4,
            4 => Codec::Zstd,
            other => return Err(BatchError::UnknownCodec(other as u8)),
        },
        log_append_time: attributes & 0x08 != 0,
        transactional: attributes & 0x10 != 0,
        control: attributes & 0x20 != 0,
        base_timestamp: b.get_i64(),
        max_timestamp: b.get_i64(),
        producer_id: b.get_i64(),
        producer_epoch: b.get_i16(),
        base_sequence: b.get_i32(),
        record_count: b.get_i32(),
    };
    let body = decompress(header.codec, b, max_decompressed)?;
    // A record takes at least MIN_RECORD_LEN bytes, so a count beyond that is a lie: refuse it
    // before reserving room for it.
    if header.record_count < 0 || header.record_count as usize > body.len() / MIN_RECORD_LEN {
        return Err(BatchError::Corrupt("record count does not fit the batch"));
    }
    let mut records = Vec::with_capacity(header.record_count as usize);
    let mut body = body;
    for _ in 0..header.record_count {
        records.push(decode_record(&mut body, header.base_timestamp)?);
    }
    if body.has_remaining() {
        return Err(BatchError::Corrupt("bytes after the last record"));
    }
    Ok(Batch { header, records })
}

fn decompress(codec: Codec, data: Bytes, limit: usize) -> Result<Bytes, BatchError> {
    let capped = |reader: &mut dyn Read| -> Result<Bytes, BatchError> {
        let mut out = Vec::new();
        let read = reader
            .take(limit as u64 + 1)
            .read_to_end(&mut out)
            .map_err(|e| BatchError::Decompression(e.to_string()))?;
        if read > limit {
            return Err(BatchError::TooLarge(limit));
        }
        Ok(Bytes::from(out))
    };
    match codec {
        Codec::None => Ok(data),
        Codec::Gzip => capped(&mut flate2::read::GzDecoder::new(&data[..])),
        Codec::Lz4 => capped(
            &mut lz4::Decoder::new(&data[..])
                .map_err(|e| BatchError::Decompression(e.to_string()))?,
        ),
        Codec::Zstd => capped(
            &mut zstd::stream::read::Decoder::new(&data[..])
                .map_err(|e| BatchError::Decompression(e.to_string()))?,
        ),
        Codec::Snappy => snappy_decompress(&data, limit),
    }
}

/// Java clients frame snappy the "xerial" way (a magic header, then length-prefixed blocks);
/// librdkafka may send raw snappy. Accept both.
fn snappy_decompress(data: &[u8], limit: usize) -> Result<Bytes, BatchError> {
    const XERIAL_MAGIC: &[u8] = b"\x82SNAPPY\x00";
    let raw = |block: &[u8], out: &mut Vec<u8>| -> Result<(), BatchError> {
        let len = snap::raw::decompress_len(block)
            .map_err(|e| BatchError::Decompression(e.to_string()))?;
        if out.len() + len > limit {
            return Err(BatchError::TooLarge(limit));
        }
        let start = out.len();
        out.resize(start + len, 0);
        snap::raw::Decoder::new()
            .decompress(block, &mut out[start..])
            .map_err(|e| BatchError::Decompression(e.to_string()))?;
        Ok(())
    };
    let mut out = Vec::new();
    if let Some(mut rest) = data.strip_prefix(XERIAL_MAGIC) {
        if rest.len() < 8 {
            return Err(BatchError::Truncated);
        }
        rest = &rest[8..]; // version and compatible version
        while !rest.is_empty() {
            if rest.len() < 4 {
                return Err(BatchError::Truncated);
            }
            let len = u32::from_be_bytes(rest[..4].try_into().expect("4 bytes")) as usize;
            rest = &rest[4..];
            if rest.len() < len {
                return Err(BatchError::Truncated);
            }
            raw(&rest[..len], &mut out)?;
            rest = &rest[len..];
        }
    } else {
        raw(data, &mut out)?;
    }
    Ok(Bytes::from(out))
}

fn get_varlong(b: &mut Bytes) -> Result<i64, BatchError> {
    let mut value: u64 = 0;
    for shift in (0..70).step_by(7) {
        if !b.has_remaining() {
            return Err(BatchError::Truncated);
        }
        let byte = b.get_u8();
        if shift == 63 && byte > 1 {
            return Err(BatchError::Corrupt("varint too long"));
        }
        value |= ((byte & 0x7f) as u64) << shift;
        if byte & 0x80 == 0 {
            return Ok(((value >> 1) as i64) ^ -((value & 1) as i64));
        }
    }
    Err(BatchError::Corrupt("varint too long"))
}

fn get_varint(b: &mut Bytes) -> Result<i32, BatchError> {
    i32::try_from(get_varlong(b)?).map_err(|_| BatchError::Corrupt("varint out of range"))
}

/// A length-prefixed byte string; length -1 is null.
fn get_nullable_bytes(b: &mut Bytes) -> Result<Option<Bytes>, BatchError> {
    match get_varint(b)? {
        -1 => Ok(None),
        n if n < 0 => Err(BatchError::Corrupt("negative length")),
        n if n as usize > b.len() => Err(BatchError::Truncated),
        n => Ok(Some(b.split_to(n as usize))),
    }
}

fn decode_record(body: &mut Bytes, base_timestamp: i64) -> Result<Record, BatchError> {
    let len = get_varint(body)?;
    if len < 0 || len as usize > body.len() {
        return Err(BatchError::Truncated);
    }
    let mut r = body.split_to(len as usize);
    if !r.has_remaining() {
        return Err(BatchError::Truncated);
    }
    let _attributes = r.get_i8();
    let timestamp = base_timestamp.wrapping_add(get_varlong(&mut r)?);
    let offset_delta = get_varint(&mut r)?;
    let key = get_nullable_bytes(&mut r)?;
    let value = get_nullable_bytes(&mut r)?;
    let count = get_varint(&mut r)?;
    // Each header needs at least two bytes.
    if count < 0 || count as usize > r.len() / 2 {
        return Err(BatchError::Corrupt("header count does not fit the record"));
    }
    let mut headers = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let key = get_nullable_bytes(&mut r)?.ok_or(BatchError::Corrupt("null header key"))?;
        headers.push((key, get_nullable_bytes(&mut r)?));
    }
    if r.has_remaining() {
        return Err(BatchError::Corrupt("bytes after the record's headers"));
    }
    Ok(Record {
        offset_delta,
        timestamp,
        key,
        value,
        headers,
    })
}

fn put_varlong(out: &mut BytesMut, value: i64) {
    let mut v = ((value << 1) ^ (value >> 63)) as u64;
    while v >= 0x80 {
        out.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    out.put_u8(v as u8);
}

fn put_nullable_bytes(out: &mut BytesMut, value: Option<&[u8]>) {
    match value {
        None => put_varlong(out, -1),
        Some(v) => {
            put_varlong(out, v.len() as i64);
            out.put_slice(v);
        }
    }
}

/// Appends one uncompressed v2 batch holding `records` at `base_offset`. Offsets in a batch are
/// `base_offset + offset_delta`.
pub fn encode(out: &mut BytesMut, base_offset: i64, records: &[Record]) {
    encode_with(out, base_offset, records, false)
}

/// [`encode`], marking the batch's timestamps as the log append time when `log_append_time`:
/// clients then give every record the batch's maximum timestamp.
pub fn encode_with(
    out: &mut BytesMut,
    base_offset: i64,
    records: &[Record],
    log_append_time: bool,
) {
    let start = out.len();
    let base_timestamp = records.first().map_or(-1, |r| r.timestamp);
    let max_timestamp = records.iter().map(|r| r.timestamp).max().unwrap_or(-1);
    let last_offset_delta = records.iter().map(|r| r.offset_delta).max().unwrap_or(0);
    out.put_i64(base_offset);
    out.put_i32(0); // batch length, patched below
    out.put_i32(-1); // partition leader epoch
    out.put_i8(2);
    out.put_u32(0); // crc, patched below
                    // Attributes: uncompressed; bit 3 is the timestamp type.
    out.put_i16(if log_append_time { 0x08 } else { 0 });
    out.put_i32(last_offset_delta);
    out.put_i64(base_timestamp);
    out.put_i64(max_timestamp);
    out.put_i64(-1); // producer id
    out.put_i16(-1); // producer epoch
    out.put_i32(-1); // base sequence
    out.put_i32(records.len() as i32);
    let mut record = BytesMut::new();
    for r in records {
        record.clear();
        record.put_i8(0);
        put_varlong(&mut record, r.timestamp.wrapping_sub(base_timestamp));
        put_varlong(&mut record, r.offset_delta as i64);
        put_nullable_bytes(&mut record, r.key.as_deref());
        put_nullable_bytes(&mut record, r.value.as_deref());
        put_varlong(&mut record, r.headers.len() as i64);
        for (k, v) in &r.headers {
            put_nullable_bytes(&mut record, Some(k));
            put_nullable_bytes(&mut record, v.as_deref());
        }
        put_varlong(out, record.len() as i64);
        out.put_slice(&record);
    }
    let batch_len = (out.len() - start - 12) as i32;
    out[start + 8..start + 12].copy_from_slice(&batch_len.to_be_bytes());
    let crc = crc32c::crc32c(&out[start + 21..]);
    out[start + 17..start + 21].copy_from_slice(&crc.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_record() -> impl Strategy<Value = Record> {
        let bytes = || {
            proptest::option::of(
                proptest::collection::vec(any::<u8>(), 0..64).prop_map(Bytes::from),
            )
        };
        (
            0i32..4096,
            any::<i64>(),
            bytes(),
            bytes(),
            proptest::collection::vec(
                (
                    "[a-z]{0,4}".prop_map(|s| Bytes::from(s.into_bytes())),
                    bytes(),
                ),
                0..4,
            ),
        )
            .prop_map(|(offset_delta, timestamp, key, value, headers)| Record {
                offset_delta,
                timestamp,
                key,
                value,
                headers,
            })
    }

    proptest! {
        #[test]
        fn encode_then_decode_is_identity(base in 0i64..1 << 62, records in proptest::collection::vec(arb_record(), 1..20)) {
            let mut buf = BytesMut::new();
            encode(&mut buf, base, &records);
            let batches = decode_all(buf.freeze(), 1 << 20).unwrap();
            prop_assert_eq!(batches.len(), 1);
            prop_assert_eq!(batches[0].header.base_offset, base);
            prop_assert_eq!(&batches[0].records, &records);
        }

        #[test]
        fn garbage_never_panics(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode_all(Bytes::from(data), 1 << 20);
        }
    }

    #[test]
    fn duplicate_header_keys_survive() {
        let record = Record {
            offset_delta: 0,
            timestamp: 5,
            key: None,
            value: Some(Bytes::from_static(b"v")),
            headers: vec![
                (Bytes::from_static(b"h"), Some(Bytes::from_static(b"1"))),
                (
                    Bytes::from_static(b"h"),
                    Some(Bytes::from_static(b"\xff\x00")),
                ),
                (Bytes::from_static(b"h"), None),
            ],
        };
        let mut buf = BytesMut::new();
        encode(&mut buf, 7, std::slice::from_ref(&record));
        assert_eq!(
            decode_all(buf.freeze(), 1 << 20).unwrap()[0].records[0],
            record
        );
    }

    #[test]
    fn lying_record_count_is_refused_without_allocating() {
        let mut buf = BytesMut::new();
        encode(&mut buf, 0, &[]);
        let mut bytes = buf.to_vec();
        bytes[57..61].copy_from_slice(&i32::MAX.to_be_bytes());
        let crc = crc32c::crc32c(&bytes[21..]);
        bytes[17..21].copy_from_slice(&crc.to_be_bytes());
        assert_eq!(
            decode_all(Bytes::from(bytes), 1 << 20),
            Err(BatchError::Corrupt("record count does not fit the batch"))
        );
    }

    #[test]
    fn bad_checksum_is_refused() {
        let mut buf = BytesMut::new();
        encode(
            &mut buf,
            0,
            &[Record {
                offset_delta: 0,
                timestamp: 1,
                key: None,
                value: None,
                headers: vec![],
            }],
        );
        let last = buf.len() - 1;
        buf[last] ^= 0xff;
        assert_eq!(
            decode_all(buf.freeze(), 1 << 20),
            Err(BatchError::BadChecksum)
        );
    }
}
