//! Kafka consumer groups (DESIGN.md §5 "Groups"): the classic group protocol run faithfully, with
//! committed offsets durable in the backend and mirrored to Pulsar subscriptions.
//!
//! - `state`: one group's membership state machine (join, sync, heartbeat, leave, timeouts);
//! - `consumer_group`: the same for Kafka's consumer group protocol (KIP-848), whose
//!   coordinator assigns the partitions;
//! - `coordinator`: groups hashed to shards whose state lives in table topics;
//! - `mirror`: committed offsets copied to a subscription named after the group;
//! - `forward`: passing group requests to the coordinating instance (forward mode);
//! - `peer_auth`: the shared secret a forwarding instance proves on the internal listener;
//! - `consumer_protocol`: reading the consumer protocol's subscription bytes;
//! - `scope`: group ids inside the principal's tenant/namespace when authentication is required;
//! - `access`: whether Pulsar lets the client use a group (its subscription permission).

pub mod access;
pub mod consumer_group;
pub mod consumer_protocol;
pub mod coordinator;
#[cfg(test)]
pub(crate) mod faulty;
pub mod forward;
pub mod mirror;
pub mod peer_auth;
pub mod scope;
pub mod state;

pub use coordinator::{GroupCoordinator, GroupSettings, INTERNAL_TOPIC_PREFIX};
