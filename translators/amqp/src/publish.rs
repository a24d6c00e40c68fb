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
    if let Some(AMQPValue::LongString(ae)) = x.arguments.inner().get("alternate-exchange") {
        let ae = String::from_utf8_lossy(ae.as_bytes()).into_owned();
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
    let mut visited = Vec::new();
    routes_from(topology, exchange, routing_key, headers, &mut visited)
}

fn routes_from<'a>(
    topology: &'a Topology,
    exchange: &'a str,
    routing_key: &str,
    headers: Option<&FieldTable>,
    visited: &mut Vec<&'a str>,
) -> bool {
    let Some(x) = topology.exchanges.get(exchange) else {
        return false;
    };
    if visited.contains(&exchange) {
        return false;
    }
    visited.push(exchange);
    topology.bindings_of_exchange(exchange).any(|b| {
        routing::matches(x.kind, &b.routing_key, &b.arguments, routing_key, headers)
            && (!b.to_exchange || routes_from(topology, &b.queue, routing_key, headers, visited))
    })
}

/// Queues the message on its topic (in call order); the future resolves once persisted.
pub async fn submit(
    backend: &BackendRef,
    topic: &TopicName,
    message: &AmqpMessage,
) -> AmqpResult<PendingSend> {
    Ok(backend
        .submit(
            topic,
            vec![EntryToSend {
                messages: vec![message.to_pulsar()],
                dedup: None,
            }],
        )
        .await?)
}
