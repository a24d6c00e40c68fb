//! Readers: non-durable subscriptions started at an entry, as Kafka fetches read.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use gateway_core::{EntryId, Reader, Result, StoredEntry, TopicName};

use crate::admin::AdminClient;
use crate::batch;
use crate::chunks::{Assembled, Assembler, Limits, Step};
use crate::lookback::{Lookback, Lookup};
use crate::pool::Pool;
use crate::proto::sub_type;
use crate::subscription::{after, start_before, Spec, Subscription, PERMITS};

/// A Pulsar reader. A chunked message is returned whole as an entry of its own at its last
/// chunk's entry (so its Kafka offset is that entry's); entries holding its other chunks return
/// nothing. A reader started at a chunked message's last chunk still returns it: the chunks
/// before its start are looked up.
pub struct PulsarReader {
    subscription: Subscription,
    position: EntryId,
    /// Entries taken from the subscription and not yet returned. Kept here, not in a local, so
    /// that `read` is cancel-safe: a fetch that stops waiting drops the future, not the entries.
    taken: VecDeque<StoredEntry>,
    chunks: Assembler,
    lookback: Lookback,
    /// A chunked message whose earlier chunks are being looked up; returned before anything
    /// after it.
    lookup: Option<Lookup>,
}

impl PulsarReader {
    pub async fn open(
        pool: Arc<Pool>,
        admin: Arc<AdminClient>,
        topic: &TopicName,
        start: EntryId,
        compacted: bool,
    ) -> Result<PulsarReader> {
        let name = topic.to_string();
        let spec = Spec {
            topic: name.clone(),
            name: format!("pulsar-gateway-reader-{:016x}", rand::random::<u64>()),
            sub_type: sub_type::EXCLUSIVE,
            durable: false,
            initial: 1,
            compacted,
            permits: PERMITS,
        };
        let subscription =
            Subscription::open(pool.clone(), spec, Some(start_before(start))).await?;
        Ok(PulsarReader {
            subscription,
            position: start,
            taken: VecDeque::new(),
            chunks: Assembler::new(&name, Limits::READER),
            lookback: Lookback::new(pool, admin, topic, compacted),
            lookup: None,
        })
    }

    /// Takes one entry from the subscription into `taken` (or into a chunked message); false on
    /// time-out.
    async fn take(&mut self, wait: Duration) -> Result<bool> {
        if self.lookup.is_some() {
            self.finish_lookup().await?;
            return Ok(true);
        }
        let reopen_at = Some(start_before(self.position));
        let Some(raw) = self.subscription.next(wait, reopen_at).await? else {
            return Ok(false);
        };
        if raw.id < self.position {
            return Ok(true); // before the requested start (the broker may start one entry early)
        }
        let id = raw.id;
        match self.chunks.push(raw, Duration::ZERO) {
            Step::Whole(raw) => {
                let entry = StoredEntry {
                    id: raw.id,
                    publish_time: raw.metadata.publish_time,
                    messages: batch::decode_entry(&raw.metadata, raw.payload)?,
                };
                self.position = after(id);
                self.taken.push_back(entry);
            }
            Step::Nothing => self.position = after(id),
            Step::Complete(m) => {
                self.position = after(id);
                self.deliver(m);
            }
            Step::Missing(missing) => {
                self.position = after(id);
                self.lookup = Some(Lookup::new(missing));
                self.finish_lookup().await?;
            }
        }
        // A reader acknowledges nothing.
        self.chunks.take_discarded();
        Ok(true)
    }

    async fn finish_lookup(&mut self) -> Result<()> {
        let Some(lookup) = self.lookup.as_mut() else {
            return Ok(());
        };
        let found = lookup.run(&self.lookback, &mut self.chunks).await?;
        self.lookup = None;
        if let Some(m) = found {
            self.deliver(m);
        }
        self.chunks.take_discarded();
        Ok(())
    }

    fn deliver(&mut self, m: Assembled) {
        match batch::decode_entry(&m.metadata, m.payload.clone()) {
            Ok(messages) => self.taken.push_back(StoredEntry {
                id: m.id,
                publish_time: m.metadata.publish_time,
                messages,
            }),
            Err(e) => self.chunks.undecodable(&m, &e.to_string()),
        }
    }
}

#[async_trait]
impl Reader for PulsarReader {
    async fn read(
        &mut self,
        max_entries: usize,
        max_bytes: usize,
        wait: Duration,
    ) -> Result<Vec<StoredEntry>> {
        let deadline = tokio::time::Instant::now() + wait;
        let max_entries = max_entries.max(1);
        // Wait for the first entry; after it, take only what has already arrived.
        while self.taken.is_empty() {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if !self.take(left).await? && tokio::time::Instant::now() >= deadline {
                return Ok(Vec::new());
            }
        }
        while self.taken.len() < max_entries && self.take(Duration::ZERO).await? {}
        let mut out = Vec::new();
        let mut bytes = 0usize;
        while let Some(entry) = self.taken.front() {
            if out.len() >= max_entries
                || (!out.is_empty() && bytes + entry.approximate_size() > max_bytes)
            {
                break;
            }
            bytes += entry.approximate_size();
            out.push(self.taken.pop_front().expect("front exists"));
        }
        Ok(out)
    }

    fn position(&self) -> EntryId {
        match (self.taken.front(), &self.lookup) {
            (Some(entry), _) => entry.id,
            (None, Some(lookup)) => lookup.missing.last,
            (None, None) => self.position,
        }
    }

    async fn seek(&mut self, start: EntryId) -> Result<()> {
        self.taken.clear();
        self.chunks.clear();
        self.lookup = None;
        self.subscription.close();
        self.subscription.reopen(Some(start_before(start))).await?;
        self.position = start;
        Ok(())
    }
}
