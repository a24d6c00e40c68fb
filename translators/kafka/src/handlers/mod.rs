//! One module per group of Kafka APIs.

pub mod admin;
pub mod api_versions;
pub mod configs;
pub mod consumer_groups;
pub mod delete_records;
pub mod fetch;
pub mod groups;
pub mod list_offsets;
pub mod metadata;
pub mod produce;
pub mod sasl;
pub mod transactions;

use kafka_protocol::protocol::StrBytes;

pub(crate) fn str_bytes(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}
