//! The backend contract (DESIGN.md §4): the operations a translator may ask of Pulsar, in Pulsar's
//! terms. The embedded backend and the Pulsar backend implement the same semantics, checked by one
//! conformance suite (`tests/backend_conformance.rs`).
//!
//! The operations are split by role, one trait each: [`TopicAdmin`] (creating, listing and
//! compacting topics), [`Producing`] (writing entries), [`Reading`] (non-durable readers),
//! [`Subscriptions`] (durable subscriptions and their consumers), [`Transactions`] (writes that
//! become readable together, or never) and [`Coordination`] (leases and
//! announcements between gateway instances). [`Backend`] combines them, so a translator holds one
//! [`BackendRef`], whose methods need no import; code that holds a concrete backend brings the
//! traits into scope with `use gateway_core::backend::prelude::*`.

use std::sync::Arc;

use crate::error::Result;

mod admin;
mod coordination;
mod producing;
mod reading;
mod subscriptions;
mod transactions;

pub use admin::{Retention, TopicAdmin, TopicInfo, TopicPolicies};
pub use coordination::{Announcement, Coordination, Lease};
pub use producing::{
    PendingSend, Producing, SendReceipt, MAX_COALESCED_MESSAGES, SEQUENCE_LOOKBACK,
};
pub use reading::{Reader, Reading};
pub use subscriptions::{
    Acknowledged, Consumer, InitialPosition, SeekTarget, SubscribeOptions, SubscriptionType,
    Subscriptions,
};
pub use transactions::{TransactionId, Transactions};

/// The backend traits, for their methods: `use gateway_core::backend::prelude::*`.
pub mod prelude {
    pub use super::{
        Backend, Coordination, Producing, Reading, Subscriptions, TopicAdmin, Transactions,
    };
}

pub type BackendRef = Arc<dyn Backend>;

/// A whole backend: every role, plus what concerns the backend as such.
#[async_trait::async_trait]
pub trait Backend:
    TopicAdmin
    + Producing
    + Reading
    + Subscriptions
    + Transactions
    + Coordination
    + Send
    + Sync
    + 'static
{
    /// A short name for logs and metrics ("embedded", "pulsar").
    fn kind(&self) -> &'static str;

    /// This backend as the client holding `token` sees it, when the backend authorizes
    /// operations itself (Pulsar): everything done through the result runs with that client's
    /// rights, never the gateway's. `None` when it does not (the embedded backend).
    fn as_client(&self, token: &str) -> Option<BackendRef> {
        let _ = token;
        None
    }

    /// Whether the backend can serve requests now (used by `/readyz`); the error says why not,
    /// for operators (it never holds a secret).
    async fn readiness(&self) -> Result<()>;
}
