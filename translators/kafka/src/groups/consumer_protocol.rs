//! Reading the "consumer" embedded protocol (the bytes Java, librdkafka and kafka-python put in
//! JoinGroup metadata). The coordinator otherwise passes those bytes through untouched; it only
//! looks inside to tell which topics a group subscribes to (OffsetDelete's
//! GROUP_SUBSCRIBED_TO_TOPIC and the describe tools).

use bytes::{Buf, Bytes};
use kafka_protocol::messages::ConsumerProtocolSubscription;
use kafka_protocol::protocol::Decodable;

/// Highest ConsumerProtocolSubscription version the protocol crate knows; newer versions only
/// append fields, so they are read as this one, as Kafka does.
const MAX_KNOWN_VERSION: i16 = 3;

/// The topics a member subscribes to, or `None` when the bytes are not a consumer subscription.
pub fn subscribed_topics(metadata: &Bytes) -> Option<Vec<String>> {
    let mut buf = metadata.clone();
    if buf.remaining() < 2 {
        return None;
    }
    let version = buf.get_i16();
    if version < 0 {
        return None;
    }
    let subscription =
        ConsumerProtocolSubscription::decode(&mut buf, version.min(MAX_KNOWN_VERSION)).ok()?;
    Some(
        subscription
            .topics
            .into_iter()
            .map(|t| t.to_string())
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BufMut;
    use kafka_protocol::protocol::{Encodable, StrBytes};

    #[test]
    fn reads_topics_of_every_known_version() {
        for version in 0..=MAX_KNOWN_VERSION {
            let subscription = ConsumerProtocolSubscription::default().with_topics(vec![
                StrBytes::from_static_str("orders"),
                StrBytes::from_static_str("payments"),
            ]);
            let mut out = bytes::BytesMut::new();
            out.put_i16(version);
            subscription.encode(&mut out, version).unwrap();
            assert_eq!(
                subscribed_topics(&out.freeze()),
                Some(vec!["orders".to_string(), "payments".to_string()]),
                "version {version}"
            );
        }
    }

    #[test]
    fn garbage_is_not_a_subscription() {
        assert_eq!(subscribed_topics(&Bytes::from_static(b"\x00")), None);
        assert_eq!(
            subscribed_topics(&Bytes::from_static(b"\xff\xff\x00")),
            None
        );
        assert_eq!(
            subscribed_topics(&Bytes::from_static(b"\x00\x00\x00\x00\x00\x09ab")),
            None
        );
    }
}
