//! Queue and exchange arguments: which are supported, their validation, what declaring an
//! existing object again must match, and the per-queue behaviour they configure.

use amq_protocol::types::{AMQPValue, FieldTable};

use crate::deadletter::DeadLetter;
use crate::delivery::{Overflow, QueuePolicy};
use crate::error::{AmqpError, AmqpResult};
use crate::topology::{Exchange, Queue};

/// Queue arguments the gateway implements; any other `x-` argument is refused.
pub const QUEUE_ARGUMENTS: &[&str] = &[
    "x-message-ttl",
    "x-dead-letter-exchange",
    "x-dead-letter-routing-key",
    "x-queue-type",
    "x-max-length",
    "x-overflow",
    "x-expires",
];

pub fn policy_of(queue: &Queue) -> QueuePolicy {
    let args = queue.arguments.inner();
    let dead_letter = args
        .get("x-dead-letter-exchange")
        .and_then(text_value)
        .map(|exchange| DeadLetter {
            exchange,
            routing_key: args.get("x-dead-letter-routing-key").and_then(text_value),
        });
    let overflow = match args.get("x-overflow").and_then(text_value).as_deref() {
        Some("reject-publish") => Overflow::RejectPublish,
        Some("reject-publish-dlx") => Overflow::RejectPublishDlx,
        _ => Overflow::DropHead,
    };
    QueuePolicy {
        queue: queue.name.clone(),
        incarnation: queue.incarnation,
        message_ttl: args
            .get("x-message-ttl")
            .and_then(int_value)
            .and_then(|v| u64::try_from(v).ok()),
        dead_letter,
        max_length: args
            .get("x-max-length")
            .and_then(int_value)
            .and_then(|v| u64::try_from(v).ok()),
        overflow,
    }
}

pub fn text_value(v: &AMQPValue) -> Option<String> {
    match v {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        _ => None,
    }
}

pub fn int_value(v: &AMQPValue) -> Option<i64> {
    match *v {
        AMQPValue::ShortShortInt(n) => Some(n.into()),
        AMQPValue::ShortShortUInt(n) => Some(n.into()),
        AMQPValue::ShortInt(n) => Some(n.into()),
        AMQPValue::ShortUInt(n) => Some(n.into()),
        AMQPValue::LongInt(n) => Some(n.into()),
        AMQPValue::LongUInt(n) => Some(n.into()),
        AMQPValue::LongLongInt(n) => Some(n),
        _ => None,
    }
}

pub fn validate_queue_arguments(arguments: &FieldTable) -> AmqpResult<()> {
    for (key, value) in arguments.inner() {
        let key = key.as_str();
        if !key.starts_with("x-") {
            continue;
        }
        if !QUEUE_ARGUMENTS.contains(&key) {
            return Err(AmqpError::precondition(format!(
                "queue argument '{key}' is not supported by this gateway (docs/amqp.md)"
            )));
        }
        let bad = |why: &str| {
            Err(AmqpError::precondition(format!(
                "invalid arg '{key}' for queue: {why}"
            )))
        };
        match key {
            "x-message-ttl" | "x-max-length" => match int_value(value) {
                Some(n) if n >= 0 => {}
                _ => return bad("must be a non-negative integer"),
            },
            "x-expires" => match int_value(value) {
                Some(n) if n > 0 => {}
                _ => return bad("must be a positive integer"),
            },
            "x-overflow"
                if !matches!(
                    text_value(value).as_deref(),
                    Some("drop-head" | "reject-publish" | "reject-publish-dlx")
                ) =>
            {
                return bad("must be drop-head, reject-publish or reject-publish-dlx")
            }
            "x-dead-letter-exchange" | "x-dead-letter-routing-key"
                if text_value(value).is_none() =>
            {
                return bad("must be a string")
            }
            "x-queue-type" if text_value(value).as_deref() != Some("classic") => {
                return bad("only 'classic' queues are available")
            }
            _ => {}
        }
    }
    Ok(())
}

pub fn equivalent_exchange(
    existing: &Exchange,
    declared: &Exchange,
    vhost: &str,
) -> AmqpResult<()> {
    let field = |name: &str, current: String, received: String| {
        Err(AmqpError::precondition(format!(
            "inequivalent arg '{name}' for exchange '{}' in vhost '{vhost}': received '{received}' but current is '{current}'",
            existing.name
        )))
    };
    if existing.kind != declared.kind {
        return field(
            "type",
            existing.kind.name().into(),
            declared.kind.name().into(),
        );
    }
    if existing.durable != declared.durable {
        return field(
            "durable",
            existing.durable.to_string(),
            declared.durable.to_string(),
        );
    }
    if existing.auto_delete != declared.auto_delete {
        return field(
            "auto_delete",
            existing.auto_delete.to_string(),
            declared.auto_delete.to_string(),
        );
    }
    if existing.internal != declared.internal {
        return field(
            "internal",
            existing.internal.to_string(),
            declared.internal.to_string(),
        );
    }
    Ok(())
}

pub fn equivalent_queue(existing: &Queue, declared: &Queue, vhost: &str) -> AmqpResult<()> {
    let field = |name: &str, current: String, received: String| {
        Err(AmqpError::precondition(format!(
            "inequivalent arg '{name}' for queue '{}' in vhost '{vhost}': received '{received}' but current is '{current}'",
            existing.name
        )))
    };
    if existing.durable != declared.durable {
        return field(
            "durable",
            existing.durable.to_string(),
            declared.durable.to_string(),
        );
    }
    if existing.auto_delete != declared.auto_delete {
        return field(
            "auto_delete",
            existing.auto_delete.to_string(),
            declared.auto_delete.to_string(),
        );
    }
    if existing.exclusive_owner.is_some() != declared.exclusive_owner.is_some() {
        return field(
            "exclusive",
            existing.exclusive_owner.is_some().to_string(),
            declared.exclusive_owner.is_some().to_string(),
        );
    }
    for key in QUEUE_ARGUMENTS {
        let a = existing.arguments.inner().get(*key);
        let b = declared.arguments.inner().get(*key);
        let same = match (a, b) {
            (Some(x), Some(y)) => int_value(x)
                .zip(int_value(y))
                .map(|(x, y)| x == y)
                .unwrap_or_else(|| text_value(x) == text_value(y)),
            (None, None) => true,
            _ => false,
        };
        if !same {
            return field(key, format!("{a:?}"), format!("{b:?}"));
        }
    }
    Ok(())
}
