//! The `redelivered` flag across a crash. Pulsar counts a redelivery only on a negative ack, so a
//! message that went back to its subscription because the gateway died would look new. Before a
//! batch is delivered, the highest message id delivered on its subscription is persisted in a
//! table topic (`__amqp_delivered`, one key per subscription); after a restart, a message at or
//! below that mark may have been seen by a client and is delivered with `redelivered=true`.

use std::collections::HashMap;
use std::sync::Mutex;

use bytes::Bytes;
use gateway_core::{table, BackendRef, MessageId, TopicName};

use crate::error::AmqpResult;

const DELIVERED_TOPIC: &str = "__amqp_delivered";
/// A mark is written this many entries ahead of what is delivered, so a subscription costs one
/// write per that many entries, not one per batch. After a crash, at most this many messages
/// that had not reached a client yet also come back flagged `redelivered` (which AMQP allows:
/// the flag means "may have been delivered before").
pub const MARK_HEADROOM: u64 = 512;

pub struct DeliveredMarks {
    backend: BackendRef,
    topic: TopicName,
    marks: Mutex<HashMap<String, MessageId>>,
    /// Orders this instance's writes, so a later (higher) mark is never overwritten by an
    /// earlier one.
    write_lock: tokio::sync::Mutex<()>,
}

impl DeliveredMarks {
    /// Loads the marks written so far (by any instance).
    pub async fn open(backend: BackendRef, tenant: &str, namespace: &str) -> AmqpResult<Self> {
        let topic = TopicName::new(tenant, namespace, DELIVERED_TOPIC);
        let mut marks = HashMap::new();
        if backend.topic_info(&topic).await?.is_none() {
            match backend.create_topic(&topic, 0).await {
                Ok(()) | Err(gateway_core::BackendError::TopicAlreadyExists(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        for (key, value) in table::load(backend.as_ref(), &topic).await? {
            if let Ok(id) = serde_json::from_slice::<MessageId>(&value) {
                marks.insert(key, id);
            }
        }
        Ok(DeliveredMarks {
            backend,
            topic,
            marks: Mutex::new(marks),
            write_lock: tokio::sync::Mutex::new(()),
        })
    }

    pub fn key(topic: &TopicName, subscription: &str) -> String {
        format!("{}/{subscription}", topic.local)
    }

    /// The highest id recorded as delivered on this subscription.
    pub fn get(&self, key: &str) -> Option<MessageId> {
        self.marks.lock().expect("marks lock").get(key).copied()
    }

    /// Records `id` as delivered, returning once persisted; a no-op when the mark covers it.
    /// The mark written runs [`MARK_HEADROOM`] entries ahead.
    pub async fn raise(&self, key: &str, id: MessageId) -> AmqpResult<()> {
        if self.get(key).is_some_and(|mark| mark >= id) {
            return Ok(());
        }
        let _guard = self.write_lock.lock().await;
        if self.get(key).is_some_and(|mark| mark >= id) {
            return Ok(());
        }
        let id = MessageId {
            ledger: id.ledger,
            entry: id.entry.saturating_add(MARK_HEADROOM),
            batch_index: u32::MAX,
        };
        let value = Bytes::from(serde_json::to_vec(&id).unwrap_or_default());
        table::put(self.backend.as_ref(), &self.topic, key, Some(value)).await?;
        self.marks
            .lock()
            .expect("marks lock")
            .insert(key.to_owned(), id);
        Ok(())
    }

    /// Forgets a subscription's mark (its queue or binding is gone).
    pub async fn forget(&self, key: &str) {
        if self.marks.lock().expect("marks lock").remove(key).is_some() {
            let _ = table::put(self.backend.as_ref(), &self.topic, key, None).await;
        }
    }
}
