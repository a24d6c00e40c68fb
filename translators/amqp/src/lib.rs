//! AMQP 0-9-1 front end (DESIGN.md §6): RabbitMQ clients' connections, channels, exchanges,
//! queues and deliveries, turned into [`gateway_core::Backend`] operations.
//!
//! - `codec`: frames on the wire; `connection`: handshake, heartbeats, dispatch.
//! - `channel`: the methods of one channel; `delivery`: reading queues for consumers and gets.
//! - `topology`: exchanges, queues and bindings, kept in a table topic per vhost.
//! - `publish`, `routing`, `deadletter`, `message`: where messages go and how they are stored.

mod access;
mod arguments;
mod channel;
pub mod codec;
mod connection;
mod deadletter;
mod delivery;
pub mod error;
mod expiry;
mod frontend;
mod limits;
pub mod message;
mod nesting;
mod objects;
mod publish;
pub mod routing;
pub mod topology;
mod watermarks;

pub use frontend::{AmqpConfig, AmqpFrontend};
