//! `x-max-length` with `x-overflow` (RabbitMQ's queue length limit). A queue's length is the
//! backlog of its subscriptions, read from the backend when a message for a limited queue is
//! published: a full `reject-publish` queue refuses the message (the publisher gets a nack) and
//! a `drop-head` queue drops (or dead-letters) its oldest messages once the new one is stored.
//! The check is made by the publishing instance, so two instances publishing to one full queue
//! at the same moment can each let one message past the limit.

use std::time::Duration;

use gateway_core::MessageId;
use tracing::warn;

use crate::connection::Session;
use crate::deadletter;
use crate::delivery::{self, Overflow, QueuePolicy};
use crate::error::AmqpResult;
use crate::message::AmqpMessage;
use crate::objects;
use crate::topology::Queue;

/// What the length limits of a message's destination queues decide.
#[derive(Default)]
pub struct Decision {
    /// Queues that refuse the message (full, `reject-publish*`), by incarnation.
    pub refused: Vec<u64>,
    /// Every destination refused it: nothing is written.
    pub refused_everywhere: bool,
    /// `drop-head` queues to trim once the message is stored.
    pub trim: Vec<(Queue, QueuePolicy)>,
}

/// Applies the limits of the queues a message reaches.
pub async fn decide(
    session: &Session,
    destinations: &[String],
    message: &AmqpMessage,
) -> AmqpResult<Decision> {
    let limited: Vec<(Queue, QueuePolicy)> = {
        let topology = session.vhost.snapshot().await;
        destinations
            .iter()
            .filter_map(|name| topology.queues.get(name))
            .map(|q| (q.clone(), crate::arguments::policy_of(q)))
            .filter(|(_, p)| p.max_length.is_some())
            .collect()
    };
    let mut decision = Decision::default();
    for (queue, policy) in limited {
        let max = policy.max_length.unwrap_or(u64::MAX);
        match policy.overflow {
            Overflow::DropHead => decision.trim.push((queue, policy)),
            Overflow::RejectPublish | Overflow::RejectPublishDlx => {
                if u64::from(objects::message_count(session, &queue).await?) < max {
                    continue;
                }
                if policy.overflow == Overflow::RejectPublishDlx {
                    if let Some(dl) = &policy.dead_letter {
                        let backend = &session.frontend.backend;
                        deadletter::publish(
                            backend,
                            &session.vhost,
                            dl,
                            &queue.name,
                            "maxlen",
                            message,
                        )
                        .await?;
                    }
                }
                decision.refused.push(queue.incarnation);
            }
        }
    }
    decision.refused_everywhere =
        !destinations.is_empty() && decision.refused.len() == destinations.len();
    Ok(decision)
}

/// Drops the oldest ready messages of a `drop-head` queue beyond its limit (dead-lettered with
/// reason `maxlen` when it has a dead-letter exchange). Runs under the vhost's trim lock, so one
/// instance's publishes never drop the same excess twice.
pub async fn trim_head(session: &Session, queue: &Queue, policy: &QueuePolicy) {
    let Some(max) = policy.max_length else { return };
    let _guard = session.vhost.trim_lock.lock().await;
    let backlogs = match objects::source_backlogs(session, queue).await {
        Ok(b) => b,
        Err(e) => {
            warn!(queue = %queue.name, error = %e.text, "cannot read the queue length to apply x-max-length");
            return;
        }
    };
    let mut excess = backlogs
        .iter()
        .map(|(_, n)| n)
        .sum::<u64>()
        .saturating_sub(max);
    let backend = &session.frontend.backend;
    for (source, backlog) in backlogs {
        if excess == 0 {
            break;
        }
        if backlog == 0 {
            continue;
        }
        let take = excess.min(backlog);
        let Ok(mut consumer) = delivery::attach(backend, &source, 0).await else {
            continue;
        };
        let mut taken = 0;
        while taken < take {
            let Ok(batch) = consumer
                .receive((take - taken) as usize, Duration::from_secs(1))
                .await
            else {
                break;
            };
            if batch.is_empty() {
                break;
            }
            let mut drop_ids: Vec<MessageId> = Vec::with_capacity(batch.len());
            for received in batch {
                let message = AmqpMessage::from_pulsar(&received.message, &source.exchange);
                if let Some(dl) = &policy.dead_letter {
                    let matched = delivery::reaches_queue(
                        &session.vhost,
                        &source,
                        policy,
                        &message,
                        &received,
                    )
                    .await;
                    if matched {
                        let dead = deadletter::publish(
                            backend,
                            &session.vhost,
                            dl,
                            &queue.name,
                            "maxlen",
                            &message,
                        )
                        .await;
                        if dead.is_err() {
                            // Kept rather than lost; the next publish tries again.
                            let _ = consumer.nack(&[received.id]).await;
                            continue;
                        }
                    }
                }
                drop_ids.push(received.id);
                taken += 1;
            }
            if let Err(e) = consumer.ack(&drop_ids).await {
                warn!(queue = %queue.name, error = %e, "dropping the head of a full queue failed");
                break;
            }
        }
        excess = excess.saturating_sub(taken);
        consumer.close().await;
    }
}
