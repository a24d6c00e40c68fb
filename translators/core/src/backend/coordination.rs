//! Coordination between gateway instances through the backend: exclusive writer leases and
//! announced names, so that the gateway keeps no state of its own.

use async_trait::async_trait;

use crate::error::Result;
use crate::message::EntryToSend;
use crate::topic::TopicName;

use super::PendingSend;

#[async_trait]
pub trait Coordination: Send + Sync {
    /// Tries to take a topic's single exclusive writer slot, a lease that also fences: while it is
    /// held nobody else can write to the topic (Pulsar's exclusive producer access mode), and a
    /// holder that lost it can no longer write. `Ok(None)` when another holder has it. `holder`
    /// names the holder; `lease_holder` reports it to others.
    async fn try_lease(&self, topic: &TopicName, holder: &str) -> Result<Option<Box<dyn Lease>>>;

    /// The name of whoever holds the topic's lease, if anyone.
    async fn lease_holder(&self, topic: &TopicName) -> Result<Option<String>>;

    /// Announces `name` on `topic` while the returned guard lives and its connection holds (a
    /// named producer that writes nothing): `announced` lists it to everyone. A process that
    /// dies drops out when its connection does, so this is how gateway instances find each
    /// other without any state of their own.
    async fn announce(&self, topic: &TopicName, name: &str) -> Result<Box<dyn Announcement>>;

    /// The names announced on `topic` and still live.
    async fn announced(&self, topic: &TopicName) -> Result<Vec<String>>;
}

/// A name announced on a topic (see `Coordination::announce`); dropping it withdraws the name.
pub trait Announcement: Send + Sync {
    /// False once the announcement is gone (its connection ended); announce again.
    fn is_live(&self) -> bool;
}

/// An exclusive writer on a topic (see `Coordination::try_lease`). Dropping it releases the topic.
#[async_trait]
pub trait Lease: Send + Sync {
    /// Queues entries like `Producing::submit`; fails once the lease is lost.
    async fn submit(&self, entries: Vec<EntryToSend>) -> Result<PendingSend>;

    /// False once the lease is lost (another holder fenced it, or its connection ended); it does
    /// not come back: take a new one.
    fn is_held(&self) -> bool;
}
