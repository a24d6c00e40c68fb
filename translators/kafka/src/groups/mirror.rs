//! Copies committed offsets to a durable Pulsar subscription named after the group, on each
//! partition (DESIGN.md §5). Pulsar tooling then shows a group's backlog, and retention keeps
//! what the group has not consumed. Commits arrive far more often than anyone reads a backlog,
//! so the latest offset per (group, partition) is kept and applied once per interval; a failed
//! update is retried on the next round unless a newer commit replaced it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use gateway_core::{BackendError, BackendRef, TopicName};

use crate::offsets::to_message_id;

/// Subscription updates in flight at once.
const CONCURRENCY: usize = 8;

pub struct Mirror {
    backend: BackendRef,
    interval: Duration,
    /// Group ids carry a tenant/namespace scope, left out of the subscription name.
    scoped: bool,
    /// (group, Pulsar partition topic) -> the committed offset, or `None` to remove the
    /// subscription.
    pending: Mutex<HashMap<(String, String), Option<i64>>>,
}

impl Mirror {
    pub fn new(backend: BackendRef, interval: Duration, scoped: bool) -> Arc<Mirror> {
        Arc::new(Mirror {
            backend,
            interval,
            scoped,
            pending: Mutex::new(HashMap::new()),
        })
    }

    pub fn record(&self, group: &str, pulsar_topic: &str, offset: Option<i64>) {
        self.pending
            .lock()
            .expect("mirror lock")
            .insert((group.to_owned(), pulsar_topic.to_owned()), offset);
    }

    pub fn start(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        let interval = self.interval;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(interval).await;
                let Some(mirror) = weak.upgrade() else {
                    return;
                };
                mirror.apply().await;
            }
        });
    }

    async fn apply(&self) {
        let batch: Vec<((String, String), Option<i64>)> =
            self.pending.lock().expect("mirror lock").drain().collect();
        if batch.is_empty() {
            return;
        }
        let failed: Vec<((String, String), Option<i64>)> = futures::stream::iter(batch)
            .map(|(key, offset)| async move {
                match self.update(&key.0, &key.1, offset).await {
                    Ok(()) => None,
                    Err(e) => {
                        metrics::counter!("kafka_group_mirror_failures_total").increment(1);
                        tracing::debug!(group = %key.0, topic = %key.1, error = %e, "mirroring a committed offset failed; retrying");
                        Some((key, offset))
                    }
                }
            })
            .buffer_unordered(CONCURRENCY)
            .filter_map(|x| async move { x })
            .collect()
            .await;
        let mut pending = self.pending.lock().expect("mirror lock");
        for (key, offset) in failed {
            pending.entry(key).or_insert(offset);
        }
    }

    async fn update(
        &self,
        group: &str,
        pulsar_topic: &str,
        offset: Option<i64>,
    ) -> Result<(), BackendError> {
        let Some(topic) = TopicName::parse(pulsar_topic, "public", "default") else {
            return Ok(());
        };
        let group = super::scope::subscription_name(group, self.scoped);
        match offset {
            Some(offset) => {
                self.backend
                    .position_subscription(&topic, group, to_message_id(offset))
                    .await
            }
            None => match self.backend.unsubscribe(&topic, group).await {
                Err(BackendError::SubscriptionNotFound(_) | BackendError::TopicNotFound(_)) => {
                    Ok(())
                }
                other => other,
            },
        }
    }
}
