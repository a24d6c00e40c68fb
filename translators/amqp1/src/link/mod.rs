//! Links (core spec §2.6), by the direction messages flow:
//!
//! - `incoming`: the client sends, the gateway publishes to Pulsar and settles each delivery
//!   once Pulsar persisted it;
//! - `outgoing`: the gateway reads a Pulsar subscription and sends, as far as the client's
//!   credit goes; the client's dispositions become acks and redeliveries;
//! - `consumer`: the task that owns an outgoing link's Pulsar consumer;
//! - `delay`: how an outgoing link holds back messages whose delivery time is still ahead.
//! - `browser`: a queue browser's outgoing link, which reads the queue without consuming it.
//!
//! `refuse` is how either side turns an attach down (§2.6.3).

pub mod browser;
mod consumer;
mod delay;
pub mod incoming;
pub mod outgoing;

use fe2o3_amqp_types::definitions::{Error, ErrorCondition, Handle, ReceiverSettleMode, Role};
use fe2o3_amqp_types::performatives::{Attach, Detach, Performative};

use crate::connection::{Ctx, Fail};

pub(crate) enum Link {
    Incoming(incoming::Incoming),
    Outgoing(outgoing::Outgoing),
}

impl Link {
    pub fn id(&self) -> u64 {
        match self {
            Link::Incoming(l) => l.id,
            Link::Outgoing(l) => l.id,
        }
    }
}

/// The attach answering the client's: the other role, its terminus echoed, settlement as the
/// gateway does it (it always settles first: a receiver-settle-mode of second is answered with
/// first, which §2.6.3 lets the client accept or detach on).
/// What stands between an attach and its link, for both directions: Pulsar's answer on the
/// client's permission (`allowed`, asked with the client's own token, DESIGN.md §8; `None`
/// without one), then the node made to exist. Its partition count (0: not partitioned), or the
/// condition and text to refuse it with.
pub(crate) async fn admit(
    ctx: &Ctx<'_>,
    allowed: Option<gateway_core::Result<bool>>,
    denied: &str,
    address: &str,
    topic: &gateway_core::TopicName,
    is_topic: bool,
) -> Result<u32, (fe2o3_amqp_types::definitions::AmqpError, String)> {
    use fe2o3_amqp_types::definitions::AmqpError;
    match allowed {
        None | Some(Ok(true)) => {}
        Some(Ok(false)) => {
            return Err((
                AmqpError::UnauthorizedAccess,
                format!("{denied} on '{address}'"),
            ))
        }
        Some(Err(e)) => return Err((AmqpError::InternalError, e.to_string())),
    }
    let ensured = if is_topic {
        ctx.frontend.ensure_topic(topic).await
    } else {
        ctx.frontend.ensure_queue(topic).await
    };
    ensured.map_err(|e| (AmqpError::InternalError, format!("'{address}': {e}")))
}

pub(crate) fn answer(theirs: &Attach, ours: Role) -> Attach {
    Attach {
        name: theirs.name.clone(),
        handle: theirs.handle.clone(),
        role: ours,
        snd_settle_mode: theirs.snd_settle_mode.clone(),
        rcv_settle_mode: ReceiverSettleMode::First,
        source: theirs.source.clone(),
        target: theirs.target.clone(),
        unsettled: None,
        incomplete_unsettled: false,
        initial_delivery_count: None,
        max_message_size: None,
        offered_capabilities: None,
        desired_capabilities: None,
        properties: None,
    }
}

/// Turns an attach down: an attach without the terminus the client asked for, then a detach
/// with the reason (§2.6.3).
pub(crate) async fn refuse(
    channel: u16,
    theirs: &Attach,
    condition: impl Into<ErrorCondition>,
    text: impl Into<String>,
    ctx: &Ctx<'_>,
) -> Result<(), Fail> {
    let ours = match theirs.role {
        Role::Sender => Role::Receiver,
        Role::Receiver => Role::Sender,
    };
    let mut attach = answer(theirs, ours.clone());
    match ours {
        Role::Receiver => attach.target = None,
        Role::Sender => {
            attach.source = None;
            attach.initial_delivery_count = Some(0);
        }
    }
    ctx.out.send(channel, Performative::Attach(attach)).await?;
    let detach = Detach {
        handle: Handle(theirs.handle.0),
        closed: true,
        error: Some(Error::new(condition, Some(text.into()), None)),
    };
    ctx.out.send(channel, Performative::Detach(detach)).await
}
