//! AMQP 1.0 front end (DESIGN.md §7, issue 14): the connections, sessions and links of AMQP 1.0
//! clients (Qpid JMS, python-qpid-proton, ...) turned into [`gateway_core::Backend`]
//! operations. The types and their encoding come from `fe2o3-amqp-types` and `serde_amqp`; the
//! layers above are ours (docs/adr/0002-amqp1-codec.md).
//!
//! - `frame`: frames on the wire (core spec §2.3); `encoding`: values measured and checked before
//!   they are decoded (§1.6); `sasl`: the SASL layer (§5.3);
//! - `connection`: open, channels, heartbeats, close (§2.4); `session`: windows, handles (§2.5);
//! - `link`: attach, credit, transfers and dispositions (§2.6), one module per direction;
//! - `message`: how an AMQP message is kept in a Pulsar message (docs/jms.md); `selector`: JMS
//!   selectors on receiving links.

mod connection;
mod encoding;
pub mod frame;
mod frontend;
mod link;
pub mod message;
mod redelivery;
mod sasl;
pub mod selector;
mod session;
mod transaction;

pub use frontend::{Amqp1Config, Amqp1Frontend};
