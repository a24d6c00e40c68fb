//! The one table of what this gateway implements: ApiVersions advertises exactly this, and requests
//! outside it are refused.
//!
//! Checklist when adding an API or raising a version:
//! 1. read the version's changes in the Kafka protocol guide (new fields, changed semantics);
//! 2. make the handler fill every field that the new version adds;
//! 3. drive it with a real client that negotiates that version (rdkafka, Java, kafka-python);
//! 4. update the row in `docs/kafka.md`;
//! 5. if forwarding sends it to a peer (forward mode, `groups::forward`), add it to [`INTERNAL`].

use kafka_protocol::messages::ApiKey;

/// (API, lowest version, highest version) served.
pub const SUPPORTED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 9),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::ListOffsets, 1, 7),
    (ApiKey::Metadata, 1, 12),
    (ApiKey::ApiVersions, 0, 3),
    // SASL (KIP-43, KIP-152); v1 of SaslAuthenticate adds the session lifetime (KIP-368).
    (ApiKey::SaslHandshake, 0, 1),
    (ApiKey::SaslAuthenticate, 0, 2),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::InitProducerId, 0, 4),
    // Transactions (KIP-98), coordinated with the groups. AddPartitionsToTxn v4+ is between
    // brokers (KIP-890); EndTxn v5 and Produce's implicit adds need transaction.version 2.
    (ApiKey::AddPartitionsToTxn, 0, 3),
    (ApiKey::AddOffsetsToTxn, 0, 3),
    (ApiKey::EndTxn, 0, 4),
    // v3 adds the member's generation (KIP-447); v5 belongs to transaction.version 2.
    (ApiKey::TxnOffsetCommit, 0, 3),
    (ApiKey::DescribeTransactions, 0, 0),
    (ApiKey::ListTransactions, 0, 1),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::DeleteRecords, 0, 2),
    (ApiKey::AlterConfigs, 0, 2),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::DescribeCluster, 0, 1),
    // Consumer groups (the classic protocol). OffsetCommit v10 and OffsetFetch v10 name topics by
    // id, which the gateway does not assign; FindCoordinator v6 adds share groups.
    (ApiKey::FindCoordinator, 0, 5),
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::OffsetCommit, 2, 9),
    (ApiKey::OffsetFetch, 1, 9),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::ListGroups, 0, 5),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::OffsetDelete, 0, 0),
    // The consumer group protocol (KIP-848); Heartbeat v1 has the consumer name itself
    // (KIP-1082) and subscribe by regular expression.
    (ApiKey::ConsumerGroupHeartbeat, 0, 1),
    (ApiKey::ConsumerGroupDescribe, 0, 1),
];

/// What the internal listener serves (DESIGN.md §5 "Groups", §8): what a peer needs to forward
/// the group requests of the groups this instance coordinates, and to authenticate first; at the
/// versions of [`SUPPORTED`]. Anything else closes the connection, as a Kafka broker closes one
/// that sends an API its listener does not enable; ApiVersions there lists only these.
pub const INTERNAL: &[ApiKey] = &[
    ApiKey::ApiVersions,
    ApiKey::SaslHandshake,
    ApiKey::SaslAuthenticate,
    ApiKey::JoinGroup,
    ApiKey::SyncGroup,
    ApiKey::Heartbeat,
    ApiKey::LeaveGroup,
    ApiKey::OffsetCommit,
    ApiKey::OffsetFetch,
    ApiKey::OffsetDelete,
    ApiKey::DescribeGroups,
    ApiKey::ListGroups,
    ApiKey::DeleteGroups,
    ApiKey::ConsumerGroupHeartbeat,
    ApiKey::ConsumerGroupDescribe,
];

/// Whether the internal listener serves `key`.
pub fn served_internally(key: ApiKey) -> bool {
    INTERNAL.contains(&key)
}

/// The supported version range of an API, if it is served at all.
pub fn range(key: ApiKey) -> Option<(i16, i16)> {
    SUPPORTED
        .iter()
        .find(|(k, _, _)| *k == key)
        .map(|(_, min, max)| (*min, *max))
}

pub fn is_supported(key: ApiKey, version: i16) -> bool {
    range(key).is_some_and(|(min, max)| (min..=max).contains(&version))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_row_is_decodable_by_the_protocol_crate() {
        for (key, min, max) in SUPPORTED {
            let valid = key.valid_versions();
            assert!(
                valid.min <= *min && *max <= valid.max,
                "{key:?} {min}..={max} outside {valid:?}"
            );
        }
    }

    #[test]
    fn the_internal_listener_serves_group_apis_of_the_table_only() {
        for key in INTERNAL {
            assert!(range(*key).is_some(), "{key:?} is not in SUPPORTED");
        }
        for key in [
            ApiKey::Produce,
            ApiKey::Fetch,
            ApiKey::Metadata,
            ApiKey::ListOffsets,
            ApiKey::FindCoordinator,
            ApiKey::InitProducerId,
            ApiKey::CreateTopics,
            ApiKey::DeleteTopics,
            ApiKey::CreatePartitions,
            ApiKey::DescribeConfigs,
            ApiKey::AlterConfigs,
            ApiKey::IncrementalAlterConfigs,
            ApiKey::DeleteRecords,
            ApiKey::DescribeCluster,
        ] {
            assert!(!served_internally(key), "{key:?}");
        }
    }
}
