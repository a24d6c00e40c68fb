//! `x-expires`: a queue nobody uses for that long is deleted. "Used" is a consumer attached, a
//! basic.get, or a declare, on any instance: each instance records uses in the topology log
//! (at most every quarter period per queue, and periodically while it has consumers), so every
//! instance sees the latest use and any of them may delete a queue that has gone unused.

use std::sync::{Arc, Weak};
use std::time::Duration;

use tracing::{info, warn};

use crate::arguments::int_value;
use crate::objects;
use crate::topology::{Change, Queue, Vhost};

/// How often each instance looks for expired queues.
const CHECK_EVERY: Duration = Duration::from_secs(1);

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The queue's `x-expires`, in milliseconds.
pub fn expires_ms(queue: &Queue) -> Option<u64> {
    queue
        .arguments
        .inner()
        .get("x-expires")
        .and_then(int_value)
        .and_then(|v| u64::try_from(v).ok())
}

/// Records a use of the queue, unless a recent one is already recorded.
pub async fn mark_used(vhost: &Vhost, queue: &Queue) {
    let Some(expires) = expires_ms(queue) else {
        return;
    };
    let now = now_ms();
    let last = vhost.snapshot().await.used.get(&queue.name).copied();
    if last.is_some_and(|last| now.saturating_sub(last) < expires / 4) {
        return;
    }
    if let Err(e) = vhost
        .write(vec![Change::Used(queue.name.clone(), Some(now))])
        .await
    {
        warn!(queue = %queue.name, error = %e.text, "recording a use of an expiring queue failed");
    }
}

/// Deletes the vhost's expired queues, for as long as the vhost is in use.
pub async fn run(vhost: Weak<Vhost>) {
    loop {
        tokio::time::sleep(CHECK_EVERY).await;
        let Some(vhost) = vhost.upgrade() else { return };
        let now = now_ms();
        let candidates: Vec<(Queue, u64, u64)> = {
            let topology = vhost.snapshot().await;
            topology
                .queues
                .values()
                .filter_map(|q| {
                    let expires = expires_ms(q)?;
                    let last = topology.used.get(&q.name).copied().unwrap_or(now);
                    Some((q.clone(), expires, last))
                })
                .collect()
        };
        sweep_ttl_queues(&vhost).await;
        for (queue, expires, last) in candidates {
            if vhost.consumers_of(&queue.name) > 0 {
                // In use here: tell the other instances.
                mark_used(&vhost, &queue).await;
            } else if now.saturating_sub(last) > expires {
                info!(queue = %queue.name, expires, "deleting a queue unused for its x-expires");
                if let Err(e) = objects::delete_queue(&vhost, &queue).await {
                    warn!(queue = %queue.name, error = %e.text, "deleting an expired queue failed");
                }
            }
        }
    }
}

/// Dead-letters (or drops) the expired heads of queues with `x-message-ttl` that no consumer on
/// this instance is reading (a consumer expires what it reads on its own).
async fn sweep_ttl_queues(vhost: &Arc<Vhost>) {
    let queues: Vec<Queue> = vhost
        .snapshot()
        .await
        .queues
        .values()
        .filter(|q| q.arguments.inner().contains_key("x-message-ttl"))
        .cloned()
        .collect();
    for queue in queues {
        if vhost.consumers_of(&queue.name) > 0 {
            continue;
        }
        let policy = crate::arguments::policy_of(&queue);
        let sources = {
            let topology = vhost.snapshot().await;
            crate::delivery::sources_of(vhost, &topology, &queue)
        };
        for source in sources {
            match vhost
                .backend()
                .ready(&source.topic, &source.subscription)
                .await
            {
                Ok(0) | Err(_) => continue,
                Ok(_) => {}
            }
            if let Err(e) =
                crate::delivery::sweep_expired(vhost.backend(), vhost, &source, &policy).await
            {
                warn!(queue = %queue.name, error = %e, "expiring messages failed");
            }
        }
    }
}

/// Starts the expiry task of a freshly opened vhost.
pub fn start(vhost: &Arc<Vhost>) {
    tokio::spawn(run(Arc::downgrade(vhost)));
}
