//! Non-durable readers.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use gateway_core::{EntryId, Reader, Result, StoredEntry};
use tokio::sync::watch;

use crate::topics::{TopicState, Topics};

pub struct EmbeddedReader {
    topics: Arc<Topics>,
    topic: Arc<TopicState>,
    position: EntryId,
    changed: watch::Receiver<u64>,
}

impl EmbeddedReader {
    pub fn new(topics: Arc<Topics>, topic: Arc<TopicState>, start: EntryId) -> Self {
        let changed = topic.changed.subscribe();
        EmbeddedReader {
            topics,
            topic,
            position: start,
            changed,
        }
    }
}

#[async_trait]
impl Reader for EmbeddedReader {
    async fn read(
        &mut self,
        max_entries: usize,
        max_bytes: usize,
        wait: Duration,
    ) -> Result<Vec<StoredEntry>> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Mark the current version seen before reading, so a write racing with the read wakes us.
            self.changed.borrow_and_update();
            let (topics, id, start) = (self.topics.clone(), self.topic.id, self.position);
            let entries = crate::blocking(move || {
                crate::store::read_entries(&topics.db, id, start, max_entries.max(1), max_bytes)
            })
            .await?;
            if let Some(last) = entries.last() {
                self.position = EntryId {
                    ledger: last.id.ledger,
                    entry: last.id.entry + 1,
                };
                return Ok(entries);
            }
            if tokio::time::timeout_at(deadline, self.changed.changed())
                .await
                .is_err()
            {
                return Ok(Vec::new());
            }
        }
    }

    fn position(&self) -> EntryId {
        self.position
    }

    async fn seek(&mut self, start: EntryId) -> Result<()> {
        self.position = start;
        Ok(())
    }
}
