//! Kafka wire protocol front end (DESIGN.md §5): decodes Kafka requests, turns them into
//! [`gateway_core::Backend`] operations and encodes Kafka responses.

pub mod api_versions;
pub mod config;
mod frontend;
pub mod groups;
mod handlers;
pub mod mapping;
pub mod offsets;
mod readers;
pub mod record_batch;
mod sequences;
mod session;
pub mod topic_configs;
pub mod topic_ids;
mod topic_state;

pub use config::KafkaConfig;
pub use frontend::KafkaFrontend;
pub use handlers::fetch::encode_entries;
pub use handlers::groups::ClientInfo;
pub use handlers::produce::batch_to_entries;
pub mod transactions;
