//! AMQP messages <-> Pulsar messages (DESIGN.md §6).
//!
//! The body is the payload and the routing key the partition key, so Kafka and native Pulsar
//! consumers of an exchange's topic see both. The basic properties travel in their own wire
//! encoding (base64 in one property), which keeps every header type (nested tables, arrays,
//! decimals, timestamps) exactly; string headers are also copied as plain properties for other
//! clients. A message from a non-AMQP producer gets its properties as string headers.

use amq_protocol::frame::WriteContext;
use amq_protocol::protocol::basic::{gen_properties, parse_properties, AMQPProperties};
use amq_protocol::types::{AMQPValue, FieldTable, LongString, ShortString};
use base64::Engine;
use bytes::Bytes;
use gateway_core::Message;

pub const PROPERTIES: &str = "amqp.properties";
pub const EXCHANGE: &str = "amqp.exchange";
pub const ROUTING_KEY: &str = "amqp.routing-key";

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

/// A message as AMQP sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct AmqpMessage {
    pub exchange: String,
    pub routing_key: String,
    pub properties: AMQPProperties,
    pub body: Bytes,
}

impl AmqpMessage {
    pub fn to_pulsar(&self) -> Message {
        let mut properties = vec![
            (EXCHANGE.to_owned(), self.exchange.clone()),
            (ROUTING_KEY.to_owned(), self.routing_key.clone()),
            (
                PROPERTIES.to_owned(),
                b64().encode(encode_properties(&self.properties)),
            ),
        ];
        if let Some(headers) = self.properties.headers() {
            for (name, value) in headers {
                if let AMQPValue::LongString(s) = value {
                    if let Ok(text) = std::str::from_utf8(s.as_bytes()) {
                        if !name.as_str().starts_with("amqp.") {
                            properties.push((name.as_str().to_owned(), text.to_owned()));
                        }
                    }
                }
            }
        }
        Message {
            key: Some(Bytes::copy_from_slice(self.routing_key.as_bytes())),
            value: Some(self.body.clone()),
            properties,
            event_time: self.properties.timestamp().map(|t| t.saturating_mul(1000)),
            deliver_at: None,
        }
    }

    /// The AMQP view of a stored message. `exchange` is the exchange whose topic it was read
    /// from, used when the producer was not an AMQP client.
    pub fn from_pulsar(message: &Message, exchange: &str) -> AmqpMessage {
        let property = |name: &str| {
            message
                .properties
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        let body = message.value.clone().unwrap_or_default();
        if let Some(encoded) = property(PROPERTIES) {
            if let Some(properties) = b64()
                .decode(encoded)
                .ok()
                .and_then(|raw| decode_properties(&raw))
            {
                return AmqpMessage {
                    exchange: property(EXCHANGE).unwrap_or(exchange).to_owned(),
                    routing_key: property(ROUTING_KEY).unwrap_or_default().to_owned(),
                    properties,
                    body,
                };
            }
        }
        let mut headers = FieldTable::default();
        for (k, v) in &message.properties {
            if let Ok(name) = ShortString::try_new(k.clone()) {
                headers.insert(
                    name,
                    AMQPValue::LongString(LongString::from(v.as_bytes().to_vec())),
                );
            }
        }
        let routing_key = message
            .key
            .as_ref()
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .unwrap_or_default();
        let mut properties = AMQPProperties::default();
        if !headers.inner().is_empty() {
            properties = properties.with_headers(headers);
        }
        if let Some(ms) = message.event_time {
            properties = properties.with_timestamp(ms / 1000);
        }
        AmqpMessage {
            exchange: exchange.to_owned(),
            routing_key,
            properties,
            body,
        }
    }

    /// The per-message TTL in milliseconds, from the `expiration` property.
    pub fn expiration_ms(&self) -> Option<u64> {
        self.properties
            .expiration()
            .as_ref()
            .and_then(|e| e.as_str().parse().ok())
    }
}

pub fn encode_properties(properties: &AMQPProperties) -> Vec<u8> {
    match gen_properties(properties)(WriteContext::from(Vec::new())) {
        Ok(written) => written.write,
        Err(_) => Vec::new(),
    }
}

pub fn decode_properties(raw: &[u8]) -> Option<AMQPProperties> {
    if !crate::nesting::properties_within_limit(raw) {
        return None;
    }
    parse_properties(raw).ok().map(|(_, p)| p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use amq_protocol::types::{DecimalValue, FieldArray};

    #[test]
    fn every_property_and_header_type_survives() {
        let mut nested = FieldTable::default();
        nested.insert("n".into(), AMQPValue::LongLongInt(-5));
        let mut headers = FieldTable::default();
        headers.insert(
            "text".into(),
            AMQPValue::LongString(LongString::from(b"hello".to_vec())),
        );
        headers.insert("int".into(), AMQPValue::LongInt(7));
        headers.insert("flag".into(), AMQPValue::Boolean(true));
        headers.insert("table".into(), AMQPValue::FieldTable(nested));
        headers.insert(
            "array".into(),
            AMQPValue::FieldArray(FieldArray::from(vec![
                AMQPValue::Double(1.5),
                AMQPValue::Void,
            ])),
        );
        headers.insert(
            "decimal".into(),
            AMQPValue::DecimalValue(DecimalValue {
                scale: 2,
                value: 12345,
            }),
        );
        let properties = AMQPProperties::default()
            .with_content_type("application/json".into())
            .with_headers(headers)
            .with_delivery_mode(2)
            .with_priority(3)
            .with_correlation_id("c".into())
            .with_reply_to("r".into())
            .with_expiration("60000".into())
            .with_message_id("m".into())
            .with_timestamp(1_700_000_000)
            .with_type("t".into())
            .with_user_id("guest".into())
            .with_app_id("a".into());
        let message = AmqpMessage {
            exchange: "x".into(),
            routing_key: "k".into(),
            properties,
            body: Bytes::from_static(b"\x00\x01binary"),
        };
        let stored = message.to_pulsar();
        assert_eq!(stored.key.as_deref(), Some(&b"k"[..]));
        assert!(stored
            .properties
            .contains(&("text".to_owned(), "hello".to_owned())));
        assert_eq!(AmqpMessage::from_pulsar(&stored, "other"), message);
        assert_eq!(message.expiration_ms(), Some(60000));
    }

    #[test]
    fn foreign_messages_get_string_headers() {
        let foreign = Message {
            key: Some(Bytes::from_static(b"order-1")),
            value: Some(Bytes::from_static(b"{}")),
            properties: vec![("source".into(), "kafka".into())],
            event_time: Some(1_700_000_000_123),
            deliver_at: None,
        };
        let m = AmqpMessage::from_pulsar(&foreign, "orders");
        assert_eq!(m.exchange, "orders");
        assert_eq!(m.routing_key, "order-1");
        assert_eq!(
            m.properties
                .headers()
                .as_ref()
                .unwrap()
                .inner()
                .get("source"),
            Some(&AMQPValue::LongString(LongString::from(b"kafka".to_vec())))
        );
        assert_eq!(*m.properties.timestamp(), Some(1_700_000_000));
    }
}
