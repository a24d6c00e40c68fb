//! Kafka records <-> Pulsar messages (DESIGN.md §5, "Produce").
//!
//! key -> partition key (bytes kept exactly); value -> payload, null value -> Pulsar's null-value
//! flag; timestamp -> event time; headers -> properties in order, duplicates kept. Pulsar
//! properties are strings, so header values that are not UTF-8 (or are null) are stored base64 (or
//! empty) and marked in one extra property, [`HEADER_ENCODING`], holding one letter per header:
//! `s` string, `b` base64, `n` null. Messages from native Pulsar producers have no marker, and all
//! their properties become string headers.

use base64::Engine;
use bytes::Bytes;
use gateway_core::Message;

use crate::record_batch::Record;

pub const HEADER_ENCODING: &str = "__kafka_header_encoding";

/// Marks a message whose event time is the time the gateway appended it, on a topic with
/// `message.timestamp.type=LogAppendTime`: a fetch reports its batch's timestamps as such, as a
/// Kafka broker reports batches appended under that config, even after it changes.
pub const TIMESTAMP_TYPE: &str = "__kafka_timestamp_type";
const LOG_APPEND_TIME: &str = "LogAppendTime";

/// Stamps a message with its append time, replacing the producer's timestamp.
pub fn stamp_append_time(message: &mut Message, append_time: u64) {
    message.event_time = Some(append_time);
    message
        .properties
        .push((TIMESTAMP_TYPE.to_owned(), LOG_APPEND_TIME.to_owned()));
}

/// Whether the message was stamped by [`stamp_append_time`].
pub fn has_append_time(message: &Message) -> bool {
    message
        .properties
        .iter()
        .rev()
        .any(|(k, v)| k == TIMESTAMP_TYPE && v == LOG_APPEND_TIME)
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

/// Header keys must be strings in Pulsar; Kafka clients send them as UTF-8 strings too.
pub fn record_to_message(record: &Record) -> Result<Message, &'static str> {
    let mut properties = Vec::with_capacity(record.headers.len());
    let mut encoding = String::with_capacity(record.headers.len());
    for (key, value) in &record.headers {
        let key = std::str::from_utf8(key).map_err(|_| "header key is not UTF-8")?;
        let (letter, value) = match value {
            None => ('n', String::new()),
            Some(v) => match std::str::from_utf8(v) {
                Ok(s) => ('s', s.to_owned()),
                Err(_) => ('b', b64().encode(v)),
            },
        };
        encoding.push(letter);
        properties.push((key.to_owned(), value));
    }
    if encoding.bytes().any(|c| c != b's') {
        properties.push((HEADER_ENCODING.to_owned(), encoding));
    }
    Ok(Message {
        key: record.key.clone(),
        value: record.value.clone(),
        properties,
        event_time: u64::try_from(record.timestamp).ok(),
        deliver_at: None,
    })
}

/// The record for a message at `offset_delta` within its batch.
pub fn message_to_record(message: &Message, offset_delta: i32, publish_time: u64) -> Record {
    let encoding = message
        .properties
        .iter()
        .rev()
        .find(|(k, _)| k == HEADER_ENCODING)
        .map(|(_, v)| v.as_bytes());
    let headers = message
        .properties
        .iter()
        .filter(|(k, _)| k != HEADER_ENCODING && k != TIMESTAMP_TYPE)
        .enumerate()
        .map(|(i, (k, v))| {
            let value = match encoding.and_then(|e| e.get(i)) {
                Some(b'n') => None,
                Some(b'b') => Some(
                    b64()
                        .decode(v)
                        .map(Bytes::from)
                        .unwrap_or_else(|_| Bytes::from(v.clone())),
                ),
                _ => Some(Bytes::from(v.clone())),
            };
            (Bytes::from(k.clone()), value)
        })
        .collect();
    Record {
        offset_delta,
        timestamp: message.event_time.unwrap_or(publish_time) as i64,
        key: message.key.clone(),
        value: message.value.clone(),
        headers,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_of_every_kind_round_trip() {
        let record = Record {
            offset_delta: 3,
            timestamp: 1_700_000_000_000,
            key: Some(Bytes::from_static(b"\x00\xffkey")),
            value: None,
            headers: vec![
                (Bytes::from_static(b"a"), Some(Bytes::from_static(b"text"))),
                (
                    Bytes::from_static(b"a"),
                    Some(Bytes::from_static(b"\xff\xfe")),
                ),
                (Bytes::from_static(b"b"), None),
                (Bytes::from_static(b"c"), Some(Bytes::new())),
            ],
        };
        let message = record_to_message(&record).unwrap();
        assert_eq!(
            message.properties.last().unwrap(),
            &(HEADER_ENCODING.to_owned(), "sbns".to_owned())
        );
        assert_eq!(message_to_record(&message, 3, 0), record);
    }

    #[test]
    fn an_append_time_replaces_the_timestamp_and_is_no_header() {
        let record = Record {
            offset_delta: 0,
            timestamp: 5,
            key: None,
            value: Some(Bytes::from_static(b"v")),
            headers: vec![(Bytes::from_static(b"h"), Some(Bytes::from_static(b"\xff")))],
        };
        let mut message = record_to_message(&record).unwrap();
        assert!(!has_append_time(&message));
        stamp_append_time(&mut message, 1_700_000_000_000);
        assert!(has_append_time(&message));
        let read = message_to_record(&message, 0, 42);
        assert_eq!(read.timestamp, 1_700_000_000_000);
        assert_eq!(read.headers, record.headers);
    }

    #[test]
    fn plain_pulsar_properties_become_headers() {
        let message = Message {
            properties: vec![("k".into(), "v".into())],
            value: Some(Bytes::from_static(b"x")),
            ..Message::default()
        };
        let record = message_to_record(&message, 0, 42);
        assert_eq!(record.timestamp, 42);
        assert_eq!(
            record.headers,
            vec![(Bytes::from_static(b"k"), Some(Bytes::from_static(b"v")))]
        );
    }
}
