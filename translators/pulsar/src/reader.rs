//! Readers: non-durable subscriptions started at an entry, as Kafka fetches read.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use gateway_core::{EntryId, MessageId, Reader, Result, StoredEntry, TopicName};

use crate::connection::unavailable;

use crate::admin::AdminClient;
use crate::batch;
use crate::chunks::{Assembled, Assembler, Limits, Step};
use crate::lookback::{Lookback, Lookup};
use crate::pool::Pool;
use crate::prefetch::{Prefetch, DEFAULT_BUDGET};
use crate::proto::{command_type as t, sub_type, BaseCommand, CommandGetLastMessageId};
use crate::subscription::{after, start_before, Flow, Spec, Subscription};

/// A Pulsar reader. A chunked message is returned whole as an entry of its own at its last
/// chunk's entry (so its Kafka offset is that entry's); entries holding its other chunks return
/// nothing. A reader started at a chunked message's last chunk still returns it: the chunks
/// before its start are looked up.
///
/// What the broker pushes ahead of `read` is bounded in bytes (`crate::prefetch`): by default
/// 1 MiB, or the budget the caller sets (`Reader::set_prefetch_bytes`).
pub struct PulsarReader {
    subscription: Subscription,
    position: EntryId,
    /// Entries taken from the subscription and not yet returned. Kept here, not in a local, so
    /// that `read` is cancel-safe: a fetch that stops waiting drops the future, not the entries.
    taken: VecDeque<StoredEntry>,
    /// The bytes of `taken`.
    taken_bytes: usize,
    prefetch: Prefetch,
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
            flow: Flow::Owner,
        };
        let subscription =
            Subscription::open(pool.clone(), spec, Some(start_before(start))).await?;
        let mut reader = PulsarReader {
            subscription,
            position: start,
            taken: VecDeque::new(),
            taken_bytes: 0,
            prefetch: Prefetch::new(DEFAULT_BUDGET),
            chunks: Assembler::new(&name, Limits::READER),
            lookback: Lookback::new(pool, admin, topic, compacted),
            lookup: None,
        };
        reader.top_up();
        Ok(reader)
    }

    /// Grants the broker the permits the byte budget allows now (see `crate::prefetch`).
    fn top_up(&mut self) {
        if self.subscription.take_reopened() {
            self.prefetch.reopened();
        }
        let held = self.taken_bytes + self.chunks.pending_bytes();
        let starved = self.taken.is_empty() && self.lookup.is_none();
        let permits = self.prefetch.grant(held, starved);
        if permits > 0 {
            self.subscription.flow(permits);
        }
    }

    fn push_taken(&mut self, entry: StoredEntry) {
        self.taken_bytes += entry.approximate_size();
        self.taken.push_back(entry);
    }

    /// Takes one entry from the subscription into `taken` (or into a chunked message); false on
    /// time-out.
    async fn take(&mut self, wait: Duration) -> Result<bool> {
        if self.lookup.is_some() {
            self.finish_lookup().await?;
            return Ok(true);
        }
        self.top_up();
        let reopen_at = Some(start_before(self.position));
        let Some(raw) = self.subscription.next(wait, reopen_at).await? else {
            return Ok(false);
        };
        let permits = raw.metadata.num_messages_in_batch.unwrap_or(1).max(1) as u32;
        self.prefetch.received(permits, raw.payload.len());
        if raw.id < self.position {
            return Ok(true); // before the requested start (the broker may start one entry early)
        }
        let id = raw.id;
        match self.chunks.push(raw, Duration::ZERO) {
            Step::Whole(raw) => {
                let (messages, batch_indexes) =
                    batch::decode_entry_indexed(&raw.metadata, raw.payload)?;
                let entry = StoredEntry {
                    id: raw.id,
                    publish_time: raw.metadata.publish_time,
                    messages,
                    batch_indexes,
                };
                self.position = after(id);
                self.push_taken(entry);
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
            // A chunked message is one message, never batched.
            Ok(messages) => self.push_taken(StoredEntry {
                id: m.id,
                publish_time: m.metadata.publish_time,
                messages,
                batch_indexes: None,
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
        self.taken_bytes = self.taken_bytes.saturating_sub(bytes);
        // Room again: the broker may push the next entries while the caller is busy.
        self.top_up();
        Ok(out)
    }

    fn set_prefetch_bytes(&mut self, bytes: usize) {
        if bytes != self.prefetch.budget() {
            self.prefetch.set_budget(bytes);
            self.top_up();
        }
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
        self.taken_bytes = 0;
        self.chunks.clear();
        self.lookup = None;
        self.subscription.close();
        self.subscription.reopen(Some(start_before(start))).await?;
        self.position = start;
        self.top_up();
        Ok(())
    }
}

/// The id of the last message readers may read (`None`: there is none), from the broker's
/// GET_LAST_MESSAGE_ID on a throwaway non-durable subscription. The admin API's
/// `lastMessageId` is the ledger's last entry, which may be an entry of a transaction still
/// open, an aborted one, or a commit or abort marker. The broker here answers its
/// "last dispatchable position" (Pulsar 4.0): from the topic's `maxReadPosition` (held at the
/// first entry of the oldest open transaction) back past markers and aborted entries, so it
/// names an entry a reader does return.
pub async fn last_message_id(pool: Arc<Pool>, topic: &TopicName) -> Result<Option<MessageId>> {
    let spec = Spec {
        topic: topic.to_string(),
        name: format!("pulsar-gateway-last-{:016x}", rand::random::<u64>()),
        sub_type: sub_type::EXCLUSIVE,
        durable: false,
        initial: 0,
        compacted: false,
        flow: Flow::OnDemand,
    };
    let mut subscription = Subscription::open(pool, spec, None).await?;
    let connection = subscription.connection.clone();
    let request_id = connection.next_id();
    let answer = connection
        .request(
            request_id,
            BaseCommand {
                r#type: t::GET_LAST_MESSAGE_ID,
                get_last_message_id: Some(CommandGetLastMessageId {
                    consumer_id: subscription.consumer_id,
                    request_id,
                }),
                ..Default::default()
            },
        )
        .await;
    subscription.close_and_wait().await;
    let id = answer?
        .get_last_message_id_response
        .ok_or_else(|| unavailable("GET_LAST_MESSAGE_ID answered without its response"))?
        .last_message_id;
    // An empty topic answers entry -1 of its current ledger (or -1:-1).
    if id.ledger_id == u64::MAX || id.entry_id == u64::MAX {
        return Ok(None);
    }
    Ok(Some(MessageId {
        ledger: id.ledger_id,
        entry: id.entry_id,
        // Pulsar's -1 (not a batch) is 0 in the gateway's ids.
        batch_index: id.batch_index.unwrap_or(0).max(0) as u32,
    }))
}
