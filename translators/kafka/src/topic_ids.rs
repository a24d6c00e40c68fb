//! Kafka topic ids (KIP-516). The consumer group protocol (KIP-848) names partitions by topic id,
//! so Metadata must give every topic one, and every instance of a fleet the same one.
//!
//! Pulsar has no topic ids, and the gateway keeps no state of its own, so the id is a name-based
//! (version 5) UUID of the full Pulsar topic name: the same on every instance and across restarts
//! with nothing stored, and different for the same short name in two namespaces. Unlike Kafka,
//! a topic deleted and created again under the same name gets the same id.
//!
//! Clients also ask for topics by id (librdkafka's Metadata for the topics a consumer group
//! assigned it). A hash cannot be inverted, so each instance remembers the ids it has handed
//! out; an id it has not seen is looked for among the namespace's topics.

use std::sync::LazyLock;

use dashmap::DashMap;
use gateway_core::TopicName;
use uuid::Uuid;

/// Every id this process has computed, with its topic (the mapping never changes, so there is
/// nothing to invalidate; it holds one entry per topic the instance has served).
static KNOWN: LazyLock<DashMap<Uuid, TopicName>> = LazyLock::new(DashMap::new);

/// The name space of the gateway's topic ids (a fixed, random UUID).
const TOPIC_IDS: Uuid = Uuid::from_u128(0x6b1f_3c2e_9a4d_4e57_b0c8_52f1_d7a3_e914);

/// The Kafka topic id of a (logical, unpartitioned-name) Pulsar topic.
pub fn topic_id(topic: &TopicName) -> Uuid {
    let id = Uuid::new_v5(&TOPIC_IDS, topic.to_string().as_bytes());
    if !KNOWN.contains_key(&id) {
        KNOWN.insert(id, topic.clone());
    }
    id
}

/// The topic of an id this process has computed.
pub fn known_topic(id: &Uuid) -> Option<TopicName> {
    KNOWN.get(id).map(|t| t.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_fixed_by_the_full_name() {
        let a = TopicName::new("public", "default", "orders");
        assert_eq!(topic_id(&a), topic_id(&a.clone()));
        assert_ne!(
            topic_id(&a),
            topic_id(&TopicName::new("t2", "default", "orders"))
        );
        assert_ne!(topic_id(&a), Uuid::nil());
        assert_eq!(known_topic(&topic_id(&a)), Some(a));
    }
}
