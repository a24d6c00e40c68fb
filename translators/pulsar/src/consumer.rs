//! Consumers on durable subscriptions, as AMQP queues and Kafka groups' mirrors use them.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use gateway_core::backend::{InitialPosition, SeekTarget, SubscriptionType};
use gateway_core::{
    BackendError, Consumer, EntryId, MessageId, ReceivedMessage, Result, TopicName,
};

use crate::admin::AdminClient;
use crate::batch;
use crate::chunks::{Assembled, Assembler, Limits, RawEntry, Step};
use crate::connection::{unavailable, ConsumerEvent};
use crate::lookback::{Lookback, Lookup};
use crate::pool::Pool;
use crate::proto::{
    ack_type, command_type as t, sub_type, BaseCommand, CommandAck,
    CommandRedeliverUnacknowledgedMessages, CommandSeek,
};
use crate::subscription::{after, message_id, Flow, Spec, Subscription};

/// A consumer on a durable subscription. Pulsar brokers only acknowledge batch indexes when
/// configured to, so acknowledgements of single messages in a batch are kept here until the whole
/// entry is acknowledged, as Pulsar's own clients do; a restart redelivers a partly acknowledged
/// batch (at-least-once).
///
/// A chunked message is delivered whole with its last chunk's id, and acknowledging it (or
/// negatively) acknowledges every chunk's entry; no chunk is acknowledged before that. Entries of
/// messages the gateway drops (`chunks.rs`: too large, unassemblable, expired) are acknowledged,
/// as Java's consumer does, so they do not hold the backlog.
pub struct PulsarConsumer {
    subscription: Subscription,
    sub_type: SubscriptionType,
    /// Delivered entries: message count and the batch indexes acknowledged so far.
    delivered: BTreeMap<EntryId, (u32, BTreeSet<u32>)>,
    /// Delivered chunked messages, by last chunk: every chunk's entry.
    chunked: BTreeMap<EntryId, Vec<EntryId>>,
    ready: VecDeque<ReceivedMessage>,
    /// After a seek into a batch, its messages before the target are not delivered (the broker
    /// seeks to whole entries).
    seek_skip: Option<MessageId>,
    chunks: Assembler,
    lookback: Lookback,
    lookup: Option<Lookup>,
    /// Receipts of the ACKs sent and not answered yet, oldest first.
    receipts: VecDeque<tokio::sync::oneshot::Receiver<BaseCommand>>,
    /// Time spent waiting for entries: the clock incomplete chunked messages expire on, so that
    /// a slow application does not make them expire while their chunks wait to be taken.
    waited: Duration,
}

impl PulsarConsumer {
    pub async fn open(
        pool: Arc<Pool>,
        admin: Arc<AdminClient>,
        topic: &TopicName,
        name: &str,
        sub_type: SubscriptionType,
        initial: InitialPosition,
        permits: u32,
    ) -> Result<PulsarConsumer> {
        let wire_type = match sub_type {
            SubscriptionType::Exclusive => sub_type::EXCLUSIVE,
            SubscriptionType::Shared => sub_type::SHARED,
            SubscriptionType::Failover => sub_type::FAILOVER,
            SubscriptionType::KeyShared => sub_type::KEY_SHARED,
        };
        let initial = match initial {
            InitialPosition::Latest => 0,
            InitialPosition::Earliest => 1,
        };
        let subscription = Subscription::open(
            pool.clone(),
            Spec {
                topic: topic.to_string(),
                name: name.to_owned(),
                sub_type: wire_type,
                durable: true,
                compacted: false,
                initial,
                flow: Flow::messages(permits),
            },
            None,
        )
        .await?;
        Ok(PulsarConsumer {
            subscription,
            sub_type,
            delivered: BTreeMap::new(),
            chunked: BTreeMap::new(),
            ready: VecDeque::new(),
            seek_skip: None,
            chunks: Assembler::new(&topic.to_string(), Limits::CONSUMER),
            lookback: Lookback::new(pool, admin, topic, false),
            lookup: None,
            receipts: VecDeque::new(),
            waited: Duration::ZERO,
        })
    }

    /// Sends an ACK without waiting for it; its receipt (the broker answers an ACK that carries
    /// a request id once it has applied it) is kept for `flush`.
    fn send_acks(&mut self, kind: i32, entries: &[EntryId]) {
        if entries.is_empty() {
            return;
        }
        let connection = &self.subscription.connection;
        let request_id = connection.next_id();
        let receipt = connection.fire_request(
            request_id,
            BaseCommand {
                r#type: t::ACK,
                ack: Some(CommandAck {
                    consumer_id: self.subscription.consumer_id,
                    ack_type: kind,
                    message_id: entries
                        .iter()
                        .map(|e| message_id(e.ledger, e.entry))
                        .collect(),
                    request_id: Some(request_id),
                }),
                ..Default::default()
            },
        );
        // The broker answers in order: receipts already in are dropped, so few are ever kept.
        while let Some(front) = self.receipts.front_mut() {
            match front.try_recv() {
                Err(tokio::sync::oneshot::error::TryRecvError::Empty) => break,
                _ => {
                    self.receipts.pop_front();
                }
            }
        }
        self.receipts.push_back(receipt);
    }

    fn send_ack(&mut self, kind: i32, entry: EntryId) {
        self.send_acks(kind, &[entry]);
    }

    /// Acknowledges the entries of dropped chunked messages and duplicate chunks.
    fn ack_discarded(&mut self) {
        let discarded = self.chunks.take_discarded();
        self.send_acks(ack_type::INDIVIDUAL, &discarded);
    }

    fn mark(&mut self, id: MessageId) {
        let entry = id.entry_id();
        if let Some(entries) = self.chunked.remove(&entry) {
            self.send_acks(ack_type::INDIVIDUAL, &entries);
            return;
        }
        let complete = match self.delivered.get_mut(&entry) {
            Some((count, acked)) => {
                acked.insert(id.batch_index);
                acked.len() as u32 >= *count
            }
            // Not delivered through this consumer: acknowledge the entry as Pulsar clients do.
            None => true,
        };
        if complete {
            self.delivered.remove(&entry);
            self.send_ack(ack_type::INDIVIDUAL, entry);
        }
    }

    /// After a seek into a batch: how many of `entry`'s first messages to skip (all for an
    /// entry before the target).
    fn skip_below(&mut self, entry: EntryId) -> u32 {
        match self.seek_skip.take() {
            Some(target) if target.entry_id() == entry => target.batch_index,
            Some(target) if entry < target.entry_id() => {
                self.seek_skip = Some(target);
                u32::MAX
            }
            _ => 0,
        }
    }

    /// An entry that is not a chunk: its messages that are still to be acknowledged are ready.
    fn accept(&mut self, raw: RawEntry) -> Result<()> {
        let messages = batch::decode_entry(&raw.metadata, raw.payload)?;
        let (_, acked) = self
            .delivered
            .entry(raw.id)
            .or_insert_with(|| (messages.len() as u32, BTreeSet::new()))
            .clone();
        let skip_below = self.skip_below(raw.id);
        if skip_below > 0 {
            // Sought past: those messages count as acknowledged, so the entry can complete.
            let count = messages.len() as u32;
            if let Some((_, acked)) = self.delivered.get_mut(&raw.id) {
                acked.extend(0..skip_below.min(count));
            }
        }
        for (index, message) in messages.into_iter().enumerate() {
            // A redelivered batch also carries the messages already acknowledged here.
            if acked.contains(&(index as u32)) || (index as u32) < skip_below {
                continue;
            }
            self.ready.push_back(ReceivedMessage {
                id: raw.id.message(index as u32),
                publish_time: raw.metadata.publish_time,
                message,
                redelivery_count: raw.redelivery_count,
            });
        }
        Ok(())
    }

    fn deliver(&mut self, m: Assembled) {
        let messages = match batch::decode_entry(&m.metadata, m.payload.clone()) {
            Ok(messages) => messages,
            Err(e) => {
                self.chunks.undecodable(&m, &e.to_string());
                self.ack_discarded();
                return;
            }
        };
        if self.skip_below(m.id) > 0 {
            return; // sought past
        }
        for message in messages {
            self.ready.push_back(ReceivedMessage {
                id: m.id.message(0),
                publish_time: m.metadata.publish_time,
                message,
                redelivery_count: m.redelivery_count,
            });
        }
        self.chunked.insert(m.id, m.entries);
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
        self.ack_discarded();
        Ok(())
    }
}

#[async_trait]
impl Consumer for PulsarConsumer {
    async fn receive(&mut self, max: usize, wait: Duration) -> Result<Vec<ReceivedMessage>> {
        let deadline = tokio::time::Instant::now() + wait;
        // Without prefetch, as many as the caller takes now are asked for together.
        let missing = max.max(1).saturating_sub(self.ready.len());
        self.subscription
            .want(missing.min(u32::MAX as usize) as u32);
        while self.ready.len() < max.max(1) {
            if self.lookup.is_some() {
                self.finish_lookup().await?;
                continue;
            }
            let wait = if self.ready.is_empty() {
                deadline.saturating_duration_since(tokio::time::Instant::now())
            } else {
                Duration::ZERO
            };
            let started = tokio::time::Instant::now();
            let next = self.subscription.next(wait, None).await;
            self.waited += started.elapsed();
            self.chunks.expire(self.waited);
            self.ack_discarded();
            let Some(raw) = next? else {
                if self.ready.is_empty() && tokio::time::Instant::now() < deadline {
                    continue;
                }
                break;
            };
            match self.chunks.push(raw, self.waited) {
                Step::Whole(raw) => self.accept(raw)?,
                Step::Nothing => {}
                Step::Complete(m) => self.deliver(m),
                Step::Missing(missing) => {
                    self.lookup = Some(Lookup::new(missing));
                    self.finish_lookup().await?;
                }
            }
            self.ack_discarded();
        }
        let take = self.ready.len().min(max.max(1));
        Ok(self.ready.drain(..take).collect())
    }

    async fn ack(&mut self, ids: &[MessageId]) -> Result<()> {
        for id in ids {
            self.mark(*id);
        }
        Ok(())
    }

    async fn ack_cumulative(&mut self, id: MessageId) -> Result<()> {
        if matches!(
            self.sub_type,
            SubscriptionType::Shared | SubscriptionType::KeyShared
        ) {
            return Err(BackendError::InvalidArgument(
                "cumulative acknowledgement is not allowed on Shared or Key_Shared subscriptions"
                    .into(),
            ));
        }
        let entry = id.entry_id();
        // Chunks up to this entry of messages that end after it: a cumulative ack would take
        // them along, and a restart could then never put those messages together.
        let held: Vec<EntryId> = self
            .chunks
            .held()
            .chain(
                self.chunked
                    .range(after(entry)..)
                    .flat_map(|(_, entries)| entries.iter().copied()),
            )
            .filter(|e| *e <= entry)
            .collect();
        if !held.is_empty() {
            // One by one instead, everything delivered up to this message but those chunks.
            let before: Vec<EntryId> = self.delivered.range(..entry).map(|(e, _)| *e).collect();
            for e in &before {
                self.delivered.remove(e);
            }
            self.send_acks(ack_type::INDIVIDUAL, &before);
            let done: Vec<EntryId> = self.chunked.range(..=entry).map(|(e, _)| *e).collect();
            for last in &done {
                self.mark(last.message(0));
            }
            if self.delivered.contains_key(&entry) {
                for index in 0..=id.batch_index {
                    self.mark(entry.message(index));
                }
            } else if !done.contains(&entry) {
                self.send_ack(ack_type::INDIVIDUAL, entry);
            }
            return Ok(());
        }
        self.chunked = self.chunked.split_off(&after(entry));
        let whole = self
            .delivered
            .get(&entry)
            .is_none_or(|(count, _)| id.batch_index + 1 >= *count);
        if whole {
            self.send_ack(ack_type::CUMULATIVE, entry);
            self.delivered = self.delivered.split_off(&after(entry));
        } else {
            // Everything before this entry cumulatively, then this entry's prefix one by one.
            if let Some(previous) = self.delivered.range(..entry).next_back().map(|(e, _)| *e) {
                self.send_ack(ack_type::CUMULATIVE, previous);
            }
            self.delivered = self.delivered.split_off(&entry);
            for index in 0..=id.batch_index {
                self.mark(entry.message(index));
            }
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<()> {
        let deadline =
            tokio::time::Instant::now() + self.subscription.connection.operation_timeout();
        while let Some(receipt) = self.receipts.pop_front() {
            match tokio::time::timeout_at(deadline, receipt).await {
                // An ACK the broker refused (an unknown message) leaves nothing to wait for.
                Ok(Ok(_)) => {}
                Ok(Err(_)) => {
                    self.receipts.clear();
                    return Err(unavailable(
                        "the Pulsar connection closed before it answered the acknowledgements",
                    ));
                }
                Err(_) => {
                    self.receipts.clear();
                    return Err(BackendError::Timeout(
                        "Pulsar did not answer the acknowledgements in time".into(),
                    ));
                }
            }
        }
        Ok(())
    }

    async fn nack(&mut self, ids: &[MessageId]) -> Result<()> {
        // A chunked message is redelivered whole: every chunk's entry.
        let mut entries = BTreeSet::new();
        for id in ids {
            let entry = id.entry_id();
            match self.chunked.get(&entry) {
                Some(chunks) => entries.extend(chunks.iter().copied()),
                None => {
                    entries.insert(entry);
                }
            }
        }
        self.subscription.connection.fire(BaseCommand {
            r#type: t::REDELIVER_UNACKNOWLEDGED_MESSAGES,
            redeliver_unacknowledged_messages: Some(CommandRedeliverUnacknowledgedMessages {
                consumer_id: self.subscription.consumer_id,
                message_ids: entries
                    .iter()
                    .map(|e| message_id(e.ledger, e.entry))
                    .collect(),
            }),
            ..Default::default()
        });
        Ok(())
    }

    async fn seek(&mut self, target: SeekTarget) -> Result<()> {
        let request_id = self.subscription.connection.next_id();
        let (message, publish_time) = match target {
            SeekTarget::Message(id) => (Some(message_id(id.ledger, id.entry)), None),
            SeekTarget::PublishTime(time) => (None, Some(time)),
        };
        self.subscription
            .connection
            .request(
                request_id,
                BaseCommand {
                    r#type: t::SEEK,
                    seek: Some(CommandSeek {
                        consumer_id: self.subscription.consumer_id,
                        request_id,
                        message_id: message,
                        message_publish_time: publish_time,
                    }),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| unavailable(format!("seek failed: {e}")))?;
        self.delivered.clear();
        self.chunked.clear();
        self.chunks.clear();
        self.lookup = None;
        self.ready.clear();
        self.seek_skip = match target {
            SeekTarget::Message(id) if id.batch_index > 0 => Some(id),
            _ => None,
        };
        // The broker disconnects the consumer after a seek; wait for that (dropping what was
        // pushed before it), then resubscribe, which picks up the new position.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while let Ok(Some(event)) =
            tokio::time::timeout_at(deadline, self.subscription.events.recv()).await
        {
            if matches!(event, ConsumerEvent::Closed) {
                break;
            }
        }
        self.subscription.reopen(None).await
    }

    async fn close(mut self: Box<Self>) {
        self.subscription.close_and_wait().await;
    }
}
