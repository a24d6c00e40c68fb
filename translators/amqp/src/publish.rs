//! Where a published message goes. A message for exchange X is appended to X's topic when some
//! binding (or X's alternate exchange) would take it; the bindings themselves are subscriptions
//! on that topic, so a binding made through any instance sees every message published after its
//! bind-ok. A message for the default exchange goes to the named queue's own topic.

use amq_protocol::types::{AMQPValue, FieldTable};
use gateway_core::{BackendRef, EntryToSend, PendingSend, TopicName};

use crate::error::{AmqpError, AmqpResult};
use crate::frontend::{exchange_topic, queue_topic};
use crate::message::AmqpMessage;
use crate::routing;
use crate::topology::{Topology, Vhost};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Append to this topic.
    Topic(TopicName),
    /// Nothing takes it: dropped, or returned when mandatory.
    Unroutable,
}

/// Decides the route, reading the topology log up to date before calling a message unroutable
/// (a binding just made through another instance must not be missed).
pub async fn route(
    vhost: &Vhost,
    exchange: &str,
    routing_key: &str,
    headers: Option<&FieldTable>,
) -> AmqpResult<Route> {
    let first = decide(
        vhost,
        &*vhost.snapshot().await,
        exchange,
        routing_key,
        headers,
    );
    match first {
        Ok(Route::Topic(t)) => Ok(Route::Topic(t)),
        _ => {
            vhost.sync().await?;
            decide(
                vhost,
                &*vhost.snapshot().await,
                exchange,
                routing_key,
                headers,
            )
        }
    }
}

fn decide(
    vhost: &Vhost,
    topology: &Topology,
    exchange: &str,
    routing_key: &str,
    headers: Option<&FieldTable>,
) -> AmqpResult<Route> {
    if exchange.is_empty() {
        return Ok(if topology.queues.contains_key(routing_key) {
            Route::Topic(queue_topic(vhost, routing_key))
        } else {
            Route::Unroutable
        });
    }
    let Some(x) = topology.exchanges.get(exchange) else {
        return Err(AmqpError::not_found(format!(
            "no exchange '{exchange}' in vhost '{}'",
            vhost.name
        )));
    };
    if x.internal {
        return Err(AmqpError::access_refused(format!(
            "cannot publish to internal exchange '{exchange}' in vhost '{}'",
            vhost.name
        )));
    }
    if routes_somewhere(topology, exchange, routing_key, headers) {
        return Ok(Route::Topic(exchange_topic(vhost, exchange)));
    }
    // An alternate exchange takes what its exchange cannot route (one level, as configured).
    if let Some(ae) = alternate_exchange(&x.arguments) {
        if topology.exchanges.contains_key(&ae)
            && routes_somewhere(topology, &ae, routing_key, headers)
        {
            return Ok(Route::Topic(exchange_topic(vhost, &ae)));
        }
    }
    Ok(Route::Unroutable)
}

/// Whether some binding of `exchange` takes the message to a queue, directly or through
/// exchange-to-exchange bindings.
fn routes_somewhere(
    topology: &Topology,
    exchange: &str,
    routing_key: &str,
    headers: Option<&FieldTable>,
) -> bool {
    !destinations_via(topology, exchange, routing_key, headers).is_empty()
}

/// The queues a message in `exchange`'s topic reaches through bindings (the alternate exchange
/// is not consulted: a message its exchange could not route was written to the AE's topic).
pub fn destinations_via(
    topology: &Topology,
    exchange: &str,
    routing_key: &str,
    headers: Option<&FieldTable>,
) -> Vec<String> {
    let mut queues = Vec::new();
    collect_queues(
        topology,
        exchange,
        routing_key,
        headers,
        &mut Vec::new(),
        &mut queues,
    );
    queues
}

/// The queues a message published to `exchange` reaches (through its alternate exchange when
/// nothing else takes it).
pub fn destinations(
    topology: &Topology,
    exchange: &str,
    routing_key: &str,
    headers: Option<&FieldTable>,
) -> Vec<String> {
    if exchange.is_empty() {
        return vec![routing_key.to_owned()];
    }
    let mut queues = destinations_via(topology, exchange, routing_key, headers);
    if queues.is_empty() {
        if let Some(ae) = topology
            .exchanges
            .get(exchange)
            .and_then(|x| alternate_exchange(&x.arguments))
        {
            queues = destinations_via(topology, &ae, routing_key, headers);
        }
    }
    queues.sort();
    queues.dedup();
    queues
}

fn alternate_exchange(arguments: &FieldTable) -> Option<String> {
    match arguments.inner().get("alternate-exchange") {
        Some(AMQPValue::LongString(ae)) => {
            Some(String::from_utf8_lossy(ae.as_bytes()).into_owned())
        }
        _ => None,
    }
}

fn collect_queues<'a>(
    topology: &'a Topology,
    exchange: &'a str,
    routing_key: &str,
    headers: Option<&FieldTable>,
    visited: &mut Vec<&'a str>,
    queues: &mut Vec<String>,
) {
    let Some(x) = topology.exchanges.get(exchange) else {
        return;
    };
    if visited.contains(&exchange) {
        return;
    }
    visited.push(exchange);
    for b in topology.bindings_of_exchange(exchange) {
        if !routing::matches(x.kind, &b.routing_key, &b.arguments, routing_key, headers) {
            continue;
        }
        if b.to_exchange {
            collect_queues(topology, &b.queue, routing_key, headers, visited, queues);
        } else {
            queues.push(b.queue.clone());
        }
    }
}

/// Queues the message on its topic (in call order); the future resolves once persisted.
pub async fn submit(
    backend: &BackendRef,
    topic: &TopicName,
    message: &AmqpMessage,
) -> AmqpResult<PendingSend> {
    Ok(submit_marked(backend, topic, message, Vec::new()).await?)
}

/// `submit`, with extra Pulsar properties on the stored message.
pub async fn submit_marked(
    backend: &BackendRef,
    topic: &TopicName,
    message: &AmqpMessage,
    marks: Vec<(String, String)>,
) -> gateway_core::Result<PendingSend> {
    let mut stored = message.to_pulsar();
    stored.properties.extend(marks);
    backend
        .submit(
            topic,
            vec![EntryToSend {
                messages: vec![stored],
                dedup: None,
                coalesce: false,
            }],
        )
        .await
}
