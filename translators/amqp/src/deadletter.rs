//! Dead-lettering (RabbitMQ's `x-dead-letter-exchange`): a rejected or expired message is
//! republished to the queue's dead-letter exchange with an `x-death` record, and only then
//! removed from the queue, so a failure leaves it where it was.

use amq_protocol::types::{AMQPValue, FieldArray, FieldTable, LongString};
use gateway_core::BackendRef;

use crate::error::AmqpResult;
use crate::message::AmqpMessage;
use crate::publish::{self, Route};
use crate::topology::Vhost;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub exchange: String,
    /// Replaces the message's routing key when set.
    pub routing_key: Option<String>,
}

fn text(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s.as_bytes().to_vec()))
}

/// Publishes `message` to the dead-letter exchange and waits until it is persisted.
pub async fn publish(
    backend: &BackendRef,
    vhost: &Vhost,
    dead_letter: &DeadLetter,
    queue: &str,
    reason: &str,
    message: &AmqpMessage,
) -> AmqpResult<()> {
    let routing_key = dead_letter
        .routing_key
        .clone()
        .unwrap_or_else(|| message.routing_key.clone());
    let dead = with_death(message, queue, reason, &dead_letter.exchange, &routing_key);
    match publish::route(
        vhost,
        &dead_letter.exchange,
        &routing_key,
        dead.properties.headers().as_ref(),
    )
    .await
    {
        Ok(Route::Topic(topic)) => {
            publish::submit(backend, &topic, &dead).await?.await?;
            Ok(())
        }
        // Nowhere to go (or the exchange is gone): RabbitMQ drops it too.
        Ok(Route::Unroutable) | Err(_) => Ok(()),
    }
}

/// The message as it is dead-lettered: `x-death` gains (or counts up) the entry for this queue
/// and reason, the `x-first-death-*` headers are set once, and an expiration is moved to
/// `original-expiration` so the message does not expire again. It is delivered as coming from
/// the dead-letter exchange, as RabbitMQ does; `x-death` keeps where it was first published.
fn with_death(
    message: &AmqpMessage,
    queue: &str,
    reason: &str,
    exchange: &str,
    routing_key: &str,
) -> AmqpMessage {
    let mut headers = message.properties.headers().clone().unwrap_or_default();
    let mut deaths: Vec<AMQPValue> = match headers.inner().get("x-death") {
        Some(AMQPValue::FieldArray(a)) => a.as_slice().to_vec(),
        _ => Vec::new(),
    };
    let same = |d: &AMQPValue| match d {
        AMQPValue::FieldTable(t) => {
            t.inner().get("queue") == Some(&text(queue))
                && t.inner().get("reason") == Some(&text(reason))
        }
        _ => false,
    };
    let previous = deaths.iter().position(same).map(|i| deaths.remove(i));
    let count = match &previous {
        Some(AMQPValue::FieldTable(t)) => match t.inner().get("count") {
            Some(AMQPValue::LongLongInt(n)) => n + 1,
            _ => 1,
        },
        _ => 1,
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut death = FieldTable::default();
    death.insert("count".into(), AMQPValue::LongLongInt(count));
    death.insert("reason".into(), text(reason));
    death.insert("queue".into(), text(queue));
    death.insert("time".into(), AMQPValue::Timestamp(now));
    death.insert("exchange".into(), text(&message.exchange));
    death.insert(
        "routing-keys".into(),
        AMQPValue::FieldArray(FieldArray::from(vec![text(&message.routing_key)])),
    );
    if let Some(expiration) = message.properties.expiration() {
        death.insert("original-expiration".into(), text(expiration.as_str()));
    }
    // The most recent death comes first.
    deaths.insert(0, AMQPValue::FieldTable(death));
    headers.insert(
        "x-death".into(),
        AMQPValue::FieldArray(FieldArray::from(deaths)),
    );
    if !headers.inner().contains_key("x-first-death-reason") {
        headers.insert("x-first-death-reason".into(), text(reason));
        headers.insert("x-first-death-queue".into(), text(queue));
        headers.insert("x-first-death-exchange".into(), text(&message.exchange));
    }
    let mut properties = message.properties.clone().with_headers(headers);
    if message.properties.expiration().is_some() {
        properties = without_expiration(properties);
    }
    AmqpMessage {
        exchange: exchange.to_owned(),
        routing_key: routing_key.to_owned(),
        properties,
        body: message.body.clone(),
    }
}

/// amq-protocol's properties have setters only; clear `expiration` through their serde form.
fn without_expiration(
    properties: amq_protocol::protocol::basic::AMQPProperties,
) -> amq_protocol::protocol::basic::AMQPProperties {
    let Ok(mut json) = serde_json::to_value(&properties) else {
        return properties;
    };
    if let Some(fields) = json.as_object_mut() {
        fields.insert("expiration".into(), serde_json::Value::Null);
    }
    serde_json::from_value(json).unwrap_or(properties)
}
