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

/// The entry of `topic` in a response's list of per-topic results, made by `new` and added at
/// the end the first time the topic comes up.
pub(crate) fn topic_entry<'a, T>(
    list: &'a mut Vec<T>,
    topic: &str,
    name_of: impl Fn(&T) -> &str,
    new: impl FnOnce() -> T,
) -> &'a mut T {
    match list.iter().position(|t| name_of(t) == topic) {
        Some(i) => &mut list[i],
        None => {
            list.push(new());
            list.last_mut().expect("just pushed")
        }
    }
}
