//! Exchanges, queues and bindings: declare, bind, purge and delete (spec classes exchange and
//! queue). Every change goes through [`apply`]: the subscriptions the new topology needs are
//! created before it is written, so a binding catches every message published after its
//! bind-ok on any instance; subscriptions it no longer needs are removed after.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use amq_protocol::protocol::{exchange, queue};
use amq_protocol::types::FieldTable;
use gateway_core::{BackendError, TopicName};
use tracing::warn;

use crate::arguments::{equivalent_exchange, equivalent_queue, validate_queue_arguments};
use crate::connection::Session;
use crate::delivery::{self, SourceSpec};
use crate::error::{AmqpError, AmqpResult, ReplyCode};
use crate::frontend::exchange_topic;
use crate::routing::ExchangeType;
use crate::topology::{Binding, Change, Exchange, Queue, Topology, Vhost};
use crate::watermarks::DeliveredMarks;

/// Every subscription the topology's queues read.
fn all_sources(vhost: &Vhost, topology: &Topology) -> HashSet<SourceSpec> {
    topology
        .queues
        .values()
        .flat_map(|q| delivery::sources_of(vhost, topology, q))
        .collect()
}

/// Writes `changes` with the subscriptions they imply. Call with the vhost's write lock held.
async fn apply(vhost: &Arc<Vhost>, changes: Vec<Change>) -> AmqpResult<()> {
    let (added, removed) = {
        let now = vhost.snapshot().await;
        let before = all_sources(vhost, &now);
        let after = all_sources(vhost, &now.with(&changes));
        let added: Vec<SourceSpec> = after.difference(&before).cloned().collect();
        let removed: Vec<SourceSpec> = before.difference(&after).cloned().collect();
        (added, removed)
    };
    for source in &added {
        ensure_topic(vhost, &source.topic).await?;
        delivery::attach(vhost.backend(), source, 0)
            .await?
            .close()
            .await;
    }
    vhost.write(changes).await?;
    remove_subscriptions(vhost, removed);
    Ok(())
}

async fn ensure_topic(vhost: &Vhost, topic: &TopicName) -> AmqpResult<()> {
    let backend = vhost.backend();
    if backend.topic_info(topic).await?.is_some() {
        return Ok(());
    }
    match backend.create_topic(topic, 0).await {
        Ok(()) | Err(BackendError::TopicAlreadyExists(_)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Deletes subscriptions once their consumers have left (they see the topology change and go),
/// retrying for a while, in the background.
fn remove_subscriptions(vhost: &Arc<Vhost>, removed: Vec<SourceSpec>) {
    if removed.is_empty() {
        return;
    }
    let backend = vhost.backend().clone();
    let vhost = vhost.clone();
    tokio::spawn(async move {
        for source in removed {
            let key = DeliveredMarks::key(&source.topic, &source.subscription);
            vhost.delivered.forget(&key).await;
            for attempt in 0..40u32 {
                match backend
                    .unsubscribe(&source.topic, &source.subscription)
                    .await
                {
                    Ok(())
                    | Err(BackendError::SubscriptionNotFound(_))
                    | Err(BackendError::TopicNotFound(_)) => break,
                    Err(e) if attempt == 39 => {
                        warn!(topic = %source.topic, subscription = %source.subscription, error = %e,
                            "could not delete the subscription of a deleted queue or binding");
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
                }
            }
        }
    });
}

/// The queue, if it exists and this connection may use it (an exclusive queue belongs to the
/// connection that declared it).
pub async fn usable_queue(session: &Session, name: &str) -> AmqpResult<Queue> {
    let vhost = &session.vhost;
    let found = vhost.snapshot().await.queues.get(name).cloned();
    let queue = match found {
        Some(q) => q,
        None => {
            vhost.sync().await?;
            vhost
                .snapshot()
                .await
                .queues
                .get(name)
                .cloned()
                .ok_or_else(|| {
                    AmqpError::not_found(format!("no queue '{name}' in vhost '{}'", vhost.name))
                })?
        }
    };
    if queue
        .exclusive_owner
        .as_ref()
        .is_some_and(|owner| *owner != session.name)
    {
        return Err(AmqpError::channel(
            ReplyCode::ResourceLocked,
            format!(
                "cannot obtain exclusive access to locked queue '{name}' in vhost '{}'",
                vhost.name
            ),
        ));
    }
    Ok(queue)
}

/// Messages ready in a queue (RabbitMQ's message count: delivered and unacknowledged ones are
/// not counted): the ready backlog of each of its subscriptions.
pub async fn message_count(session: &Session, queue: &Queue) -> AmqpResult<u32> {
    let total: u64 = source_backlogs(session, queue)
        .await?
        .iter()
        .map(|(_, n)| n)
        .sum();
    Ok(total.min(u64::from(u32::MAX)) as u32)
}

/// Each source of the queue (its own topic first) with its ready messages.
pub async fn source_backlogs(
    session: &Session,
    queue: &Queue,
) -> AmqpResult<Vec<(SourceSpec, u64)>> {
    let vhost = &session.vhost;
    let sources = delivery::sources_of(vhost, &*vhost.snapshot().await, queue);
    let mut backlogs = Vec::with_capacity(sources.len());
    for source in sources {
        let backlog = session
            .frontend
            .backend
            .ready(&source.topic, &source.subscription)
            .await;
        match backlog {
            Ok(n) => backlogs.push((source, n)),
            Err(BackendError::SubscriptionNotFound(_)) | Err(BackendError::TopicNotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(backlogs)
}

pub async fn exchange_declare(session: &Session, m: &exchange::Declare) -> AmqpResult<()> {
    let name = m.exchange.as_str();
    let vhost = &session.vhost;
    if name.is_empty() {
        return Err(AmqpError::access_refused(
            "operation not permitted on the default exchange",
        ));
    }
    if m.passive {
        vhost.sync().await?;
        return match vhost.snapshot().await.exchanges.get(name) {
            Some(_) => Ok(()),
            None => Err(AmqpError::not_found(format!(
                "no exchange '{name}' in vhost '{}'",
                vhost.name
            ))),
        };
    }
    let Some(kind) = ExchangeType::parse(m.kind.as_str()) else {
        return Err(AmqpError::command_invalid(format!(
            "unknown exchange type '{}'",
            m.kind
        )));
    };
    for key in m.arguments.inner().keys() {
        let key = key.as_str();
        if key.starts_with("x-") {
            return Err(AmqpError::precondition(format!(
                "exchange argument '{key}' is not supported"
            )));
        }
    }
    let declared = Exchange {
        name: name.to_owned(),
        kind,
        durable: m.durable,
        auto_delete: m.auto_delete,
        internal: m.internal,
        arguments: m.arguments.clone(),
    };
    let _guard = vhost.write_lock.lock().await;
    vhost.sync().await?;
    if let Some(existing) = vhost.snapshot().await.exchanges.get(name) {
        return equivalent_exchange(existing, &declared, &vhost.name);
    }
    // A built-in may be redeclared as it is; no new name may take the reserved prefix.
    if name.starts_with("amq.") {
        return Err(AmqpError::access_refused(format!(
            "exchange name '{name}' contains reserved prefix 'amq.*'"
        )));
    }
    ensure_topic(vhost, &exchange_topic(vhost, name)).await?;
    apply(
        &session.vhost,
        vec![Change::Exchange(name.to_owned(), Some(declared))],
    )
    .await
}

/// Exchanges that auto-delete once `topology` leaves them without bindings from them.
fn auto_deleted(before: &Topology, after: &Topology) -> Vec<Change> {
    before
        .exchanges
        .values()
        .filter(|x| {
            x.auto_delete
                && before.bindings_of_exchange(&x.name).next().is_some()
                && after.bindings_of_exchange(&x.name).next().is_none()
        })
        .map(|x| Change::Exchange(x.name.clone(), None))
        .collect()
}

/// The removals of bindings (either direction) that touch `exchange`.
fn bindings_touching(topology: &Topology, exchange: &str) -> Vec<Change> {
    topology
        .bindings
        .values()
        .filter(|b| b.exchange == exchange || (b.to_exchange && b.queue == exchange))
        .map(|b| Change::Binding(b.clone(), false))
        .collect()
}

pub async fn exchange_delete(session: &Session, name: &str, if_unused: bool) -> AmqpResult<()> {
    let vhost = &session.vhost;
    if name.is_empty() || name.starts_with("amq.") {
        return Err(AmqpError::access_refused(format!(
            "operation not permitted on exchange '{name}'"
        )));
    }
    let _guard = vhost.write_lock.lock().await;
    vhost.sync().await?;
    let changes = {
        let topology = vhost.snapshot().await;
        if !topology.exchanges.contains_key(name) {
            return Ok(());
        }
        if if_unused && topology.bindings_of_exchange(name).next().is_some() {
            return Err(AmqpError::precondition(format!(
                "exchange '{name}' in vhost '{}' in use",
                vhost.name
            )));
        }
        let mut changes = vec![Change::Exchange(name.to_owned(), None)];
        changes.extend(bindings_touching(&topology, name));
        changes
    };
    apply(&session.vhost, changes).await
}

pub struct QueueDeclared {
    pub name: String,
    pub messages: u32,
    pub consumers: u32,
}

pub async fn queue_declare(session: &Session, m: &queue::Declare) -> AmqpResult<QueueDeclared> {
    let vhost = &session.vhost;
    let mut name = m.queue.as_str().to_owned();
    if m.passive {
        let queue = usable_queue(session, &name).await?;
        crate::expiry::mark_used(vhost, &queue).await;
        return Ok(QueueDeclared {
            messages: message_count(session, &queue).await?,
            consumers: vhost.consumers_of(&queue.name) as u32,
            name,
        });
    }
    if name.is_empty() {
        name = format!("amq.gen-{}", random_token());
    } else if name.starts_with("amq.") {
        return Err(AmqpError::access_refused(format!(
            "queue name '{name}' contains reserved prefix 'amq.*'"
        )));
    }
    validate_queue_arguments(&m.arguments)?;
    let declared = Queue {
        name: name.clone(),
        incarnation: rand::random(),
        durable: m.durable,
        auto_delete: m.auto_delete,
        exclusive_owner: m.exclusive.then(|| session.name.clone()),
        arguments: m.arguments.clone(),
    };
    let _guard = vhost.write_lock.lock().await;
    vhost.sync().await?;
    let existing = vhost.snapshot().await.queues.get(&name).cloned();
    if let Some(existing) = existing {
        let queue = usable_queue(session, &name).await?;
        equivalent_queue(&existing, &declared, &vhost.name)?;
        crate::expiry::mark_used(vhost, &queue).await;
        return Ok(QueueDeclared {
            messages: message_count(session, &queue).await?,
            consumers: vhost.consumers_of(&name) as u32,
            name,
        });
    }
    // The queue's own subscription exists before declare-ok, so nothing sent to it is missed.
    let mut changes = Vec::new();
    if crate::expiry::expires_ms(&declared).is_some() {
        changes.push(Change::Used(name.clone(), Some(crate::expiry::now_ms())));
    }
    changes.push(Change::Queue(name.clone(), Some(declared)));
    apply(&session.vhost, changes).await?;
    Ok(QueueDeclared {
        name,
        messages: 0,
        consumers: 0,
    })
}

/// Binds a queue (`to_exchange` false) or an exchange to `source`.
pub async fn bind(
    session: &Session,
    destination: &str,
    to_exchange: bool,
    source: &str,
    routing_key: &str,
    arguments: &FieldTable,
) -> AmqpResult<()> {
    let vhost = &session.vhost;
    if source.is_empty() || (to_exchange && destination.is_empty()) {
        return Err(AmqpError::access_refused(
            "operation not permitted on the default exchange",
        ));
    }
    if !to_exchange {
        usable_queue(session, destination).await?;
    }
    let _guard = vhost.write_lock.lock().await;
    vhost.sync().await?;
    let binding = Binding {
        queue: destination.to_owned(),
        exchange: source.to_owned(),
        routing_key: routing_key.to_owned(),
        arguments: arguments.clone(),
        to_exchange,
    };
    {
        let topology = vhost.snapshot().await;
        for exchange in [Some(source), to_exchange.then_some(destination)]
            .into_iter()
            .flatten()
        {
            if !topology.exchanges.contains_key(exchange) {
                return Err(AmqpError::not_found(format!(
                    "no exchange '{exchange}' in vhost '{}'",
                    vhost.name
                )));
            }
        }
        if topology.bindings.values().any(|b| *b == binding) {
            return Ok(());
        }
    }
    apply(&session.vhost, vec![Change::Binding(binding, true)]).await
}

pub async fn unbind(
    session: &Session,
    destination: &str,
    to_exchange: bool,
    source: &str,
    routing_key: &str,
    arguments: &FieldTable,
) -> AmqpResult<()> {
    let vhost = &session.vhost;
    if !to_exchange {
        usable_queue(session, destination).await?;
    }
    let _guard = vhost.write_lock.lock().await;
    vhost.sync().await?;
    let binding = Binding {
        queue: destination.to_owned(),
        exchange: source.to_owned(),
        routing_key: routing_key.to_owned(),
        arguments: arguments.clone(),
        to_exchange,
    };
    let changes = {
        let topology = vhost.snapshot().await;
        if !topology.bindings.values().any(|b| *b == binding) {
            return Ok(());
        }
        let mut changes = vec![Change::Binding(binding, false)];
        changes.extend(auto_deleted(&topology, &topology.with(&changes)));
        changes
    };
    apply(&session.vhost, changes).await
}

pub async fn queue_purge(session: &Session, name: &str) -> AmqpResult<u32> {
    let queue = usable_queue(session, name).await?;
    let count = message_count(session, &queue).await?;
    let vhost = &session.vhost;
    let backend = &session.frontend.backend;
    let sources = delivery::sources_of(vhost, &*vhost.snapshot().await, &queue);
    for source in sources {
        // Moving the subscription past the last message leaves nothing ready.
        if let Some(last) = backend.last_message_id(&source.topic).await? {
            let end = gateway_core::MessageId {
                ledger: last.ledger,
                entry: last.entry + 1,
                batch_index: 0,
            };
            backend
                .position_subscription(&source.topic, &source.subscription, end)
                .await?;
        }
    }
    Ok(count)
}

pub async fn queue_delete(
    session: &Session,
    name: &str,
    if_unused: bool,
    if_empty: bool,
) -> AmqpResult<u32> {
    let vhost = &session.vhost;
    vhost.sync().await?;
    if !vhost.snapshot().await.queues.contains_key(name) {
        return Ok(0);
    }
    let queue = usable_queue(session, name).await?;
    if if_unused && vhost.consumers_of(name) > 0 {
        return Err(AmqpError::precondition(format!(
            "queue '{name}' in vhost '{}' in use",
            vhost.name
        )));
    }
    let count = message_count(session, &queue).await?;
    if if_empty && count > 0 {
        return Err(AmqpError::precondition(format!(
            "queue '{name}' in vhost '{}' is not empty",
            vhost.name
        )));
    }
    delete_queue(&session.vhost, &queue).await?;
    Ok(count)
}

/// Removes a queue, its bindings, and exchanges that auto-delete with them.
pub async fn delete_queue(vhost: &Arc<Vhost>, queue: &Queue) -> AmqpResult<()> {
    let _guard = vhost.write_lock.lock().await;
    let changes = {
        let topology = vhost.snapshot().await;
        if topology.queues.get(&queue.name) != Some(queue) {
            return Ok(());
        }
        let mut changes = vec![Change::Queue(queue.name.clone(), None)];
        if topology.used.contains_key(&queue.name) {
            changes.push(Change::Used(queue.name.clone(), None));
        }
        changes.extend(
            topology
                .bindings_of_queue(&queue.name)
                .map(|b| Change::Binding(b.clone(), false)),
        );
        changes.extend(auto_deleted(&topology, &topology.with(&changes)));
        changes
    };
    apply(vhost, changes).await
}

/// Exclusive queues go with the connection that declared them.
pub async fn release_exclusive_queues(session: &Session) {
    let owned: Vec<Queue> = session
        .vhost
        .snapshot()
        .await
        .queues
        .values()
        .filter(|q| q.exclusive_owner.as_deref() == Some(session.name.as_str()))
        .cloned()
        .collect();
    for queue in owned {
        if let Err(e) = delete_queue(&session.vhost, &queue).await {
            warn!(queue = %queue.name, error = %e.text, "deleting an exclusive queue failed");
        }
    }
}

pub fn random_token() -> String {
    use base64::Engine;
    let bytes: [u8; 16] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}
