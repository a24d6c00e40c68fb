//! Producers: one per (topic, producer name), sending pre-built batch entries and returning each
//! entry's id from the broker's receipt.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use gateway_core::backend::SendReceipt;
use gateway_core::{BackendError, EntryId, EntryToSend, Result};

use crate::batch;
use crate::connection::{unavailable, Connection};
use crate::frame;
use crate::pool::Pool;
use crate::proto::{
    command_type as t, BaseCommand, CommandCloseProducer, CommandProducer, CommandSend,
};

pub struct Producer {
    connection: Arc<Connection>,
    producer_id: u64,
    name: String,
    /// Next sequence id for entries without their own (deduplication) sequence.
    next_sequence: AtomicU64,
    codec: i32,
    /// When a send last used it (ms since epoch), for closing idle producers.
    pub last_used: AtomicU64,
}

impl Drop for Producer {
    /// Closing tells the broker to forget this producer (Pulsar counts producers per topic).
    fn drop(&mut self) {
        let request_id = self.connection.next_id();
        self.connection.fire(BaseCommand {
            r#type: t::CLOSE_PRODUCER,
            close_producer: Some(CommandCloseProducer {
                producer_id: self.producer_id,
                request_id,
            }),
            ..Default::default()
        });
    }
}

impl Producer {
    /// Creates a producer on the topic's owner. A `name` makes it a named producer, which Pulsar's
    /// deduplication tracks across reconnects; otherwise the broker picks a name.
    pub async fn create(
        pool: &Pool,
        topic: &str,
        name: Option<&str>,
        codec: i32,
    ) -> Result<Producer> {
        let connection = pool.owner_of(topic).await?;
        let (producer_id, request_id) = (connection.next_id(), connection.next_id());
        let answer = connection
            .request(
                request_id,
                BaseCommand {
                    r#type: t::PRODUCER,
                    producer: Some(CommandProducer {
                        topic: topic.to_owned(),
                        producer_id,
                        request_id,
                        producer_name: name.map(str::to_owned),
                        user_provided_producer_name: Some(name.is_some()),
                        producer_access_mode: None,
                    }),
                    ..Default::default()
                },
            )
            .await?;
        let success = answer
            .producer_success
            .ok_or_else(|| unavailable("PRODUCER answered without PRODUCER_SUCCESS"))?;
        let last = success.last_sequence_id.unwrap_or(-1);
        Ok(Producer {
            connection,
            producer_id,
            name: success.producer_name,
            next_sequence: AtomicU64::new((last + 1).max(0) as u64),
            codec,
            last_used: AtomicU64::new(batch::now_millis()),
        })
    }

    /// Whether this producer can still send (its connection is up and the broker kept it).
    pub fn is_usable(&self) -> bool {
        !self.connection.producer_closed(self.producer_id)
    }

    /// Writes the entries in order, pipelined, and waits for every receipt.
    pub async fn send(&self, entries: Vec<EntryToSend>) -> Result<Vec<SendReceipt>> {
        self.last_used.store(batch::now_millis(), Ordering::Relaxed);
        let mut waiting = Vec::with_capacity(entries.len());
        for entry in &entries {
            let sequence_id = match &entry.dedup {
                Some((_, sequence)) => *sequence,
                None => self.next_sequence.fetch_add(1, Ordering::Relaxed),
            };
            let (metadata, payload) =
                batch::encode_entry(&entry.messages, &self.name, sequence_id, self.codec)?;
            if payload.len() > self.connection.max_message_size {
                return Err(BackendError::InvalidArgument(format!(
                    "an entry of {} bytes exceeds the broker's maxMessageSize of {}",
                    payload.len(),
                    self.connection.max_message_size
                )));
            }
            let command = BaseCommand {
                r#type: t::SEND,
                send: Some(CommandSend {
                    producer_id: self.producer_id,
                    sequence_id,
                    num_messages: Some(entry.messages.len() as i32),
                    highest_sequence_id: None,
                }),
                ..Default::default()
            };
            let receipt = self
                .connection
                .expect_receipt(self.producer_id, sequence_id);
            self.connection
                .send_frame(frame::encode_with_payload(&command, &metadata, &payload))
                .await?;
            waiting.push(receipt);
        }
        let mut receipts = Vec::with_capacity(waiting.len());
        for w in waiting {
            let id = w
                .await
                .map_err(|_| unavailable("Pulsar connection closed"))??;
            receipts.push(match id {
                Some(m) => SendReceipt::Persisted(EntryId {
                    ledger: m.ledger_id,
                    entry: m.entry_id,
                }),
                None => SendReceipt::Duplicate,
            });
        }
        Ok(receipts)
    }
}
