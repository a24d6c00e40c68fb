//! A JMS QueueBrowser: a receiving link on a queue whose source asks for distribution mode
//! `copy`. It is given copies of the queue's messages, in order, without consuming or locking
//! them: a task reads the topic with a reader (no subscription of its own) from where the
//! queue's `jms-queue` subscription stands, and leaves out what that subscription acknowledged,
//! what has expired and what the link's selector does not select. The client's settlements
//! change nothing on the queue.
//!
//! Qpid JMS finds the end of the enumeration by draining: the link answers a drain only once its
//! task has read up to the last message the topic holds at that moment. The task says so with
//! an event (`NothingMore`), which the link handles after the deliveries sent before it; a flag
//! the link read directly could let it answer while those deliveries were still on their way,
//! and the client would see an empty queue.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use gateway_core::backend::Acknowledged;
use gateway_core::{BackendRef, EntryId, ReceivedMessage, StoredEntry, TopicName};
use gateway_selector::Selector;
use tokio::sync::{mpsc, Notify};

use crate::connection::{Command, Event};

/// Most entries read at once, and how long a read waits for the first.
const READ_ENTRIES: u32 = 64;
const READ_BYTES: usize = 1 << 20;
const READ_WAIT: Duration = Duration::from_millis(200);

pub(crate) struct BrowserTask {
    pub backend: BackendRef,
    pub topic: TopicName,
    /// The queue's subscription, whose acknowledged messages are not shown.
    pub subscription: String,
    pub selector: Option<Arc<Selector>>,
    /// How many more messages the link may take (as for a consumer).
    pub allowance: Arc<AtomicU32>,
    pub wake: Arc<Notify>,
    /// Set by the link while a drain waits for this task to look again (answered with
    /// `NothingMore` once everything the topic holds then was read).
    pub drain_asked: Arc<AtomicBool>,
    /// Settlements of the client: ignored, a browser consumes nothing. Closed when the link goes.
    pub commands: mpsc::UnboundedReceiver<Command>,
    pub events: mpsc::Sender<Event>,
    pub channel: u16,
    pub handle: u32,
    pub link_id: u64,
}

impl BrowserTask {
    pub async fn run(mut self) {
        let acked = match self
            .backend
            .acknowledged(&self.topic, &self.subscription)
            .await
        {
            Ok(acked) => acked,
            Err(e) => return self.fail(format!("cannot browse: {e}")).await,
        };
        let mut next = acked.from;
        // The last entry the topic was last seen to hold: up to it there is more to read.
        let mut known_last: Option<EntryId> = None;
        // Everything was read when last looked: new messages are shown as they come, and the
        // topic is looked at again only for a drain.
        let mut idle = false;
        let mut reader = match self.backend.open_reader(&self.topic, next).await {
            Ok(reader) => reader,
            Err(e) => return self.fail(format!("cannot browse: {e}")).await,
        };
        loop {
            // Settlements change nothing; the channel closing means the link went.
            loop {
                match self.commands.try_recv() {
                    Ok(_) => {}
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => return,
                }
            }
            let wanted = self.allowance.load(Ordering::Acquire);
            if wanted == 0 {
                tokio::select! {
                    _ = self.wake.notified() => {}
                    command = self.commands.recv() => if command.is_none() { return },
                }
                continue;
            }
            let draining = self.drain_asked.load(Ordering::Acquire);
            if known_last.is_none_or(|l| l < next) && (draining || !idle) {
                known_last = match self.backend.last_message_id(&self.topic).await {
                    Ok(last) => last.map(|l| l.entry_id()),
                    Err(e) => return self.fail(format!("browsing: {e}")).await,
                };
                idle = known_last.is_none_or(|l| l < next);
                if idle && draining {
                    // A drain asked after the look stays asked, and is looked at again.
                    self.drain_asked.store(false, Ordering::Release);
                    let event = Event::NothingMore {
                        channel: self.channel,
                        handle: self.handle,
                        link_id: self.link_id,
                    };
                    if self.events.send(event).await.is_err() {
                        return;
                    }
                }
            }
            let entries = match reader
                .read(wanted.min(READ_ENTRIES) as usize, READ_BYTES, READ_WAIT)
                .await
            {
                Ok(entries) => entries,
                Err(e) => return self.fail(format!("browsing: {e}")).await,
            };
            let Some(last) = entries.last() else {
                continue;
            };
            idle = false;
            next = EntryId {
                ledger: last.id.ledger,
                entry: last.id.entry + 1,
            };
            let messages = self.shown(entries, &acked);
            if messages.is_empty() {
                continue;
            }
            let n = messages.len() as u32;
            let _ = self
                .allowance
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |a| {
                    Some(a.saturating_sub(n))
                });
            if !self.deliver(messages).await {
                return;
            }
        }
    }

    /// The messages of `entries` a browser shows: not acknowledged on the queue (as of when the
    /// browser opened), not expired, and selected.
    fn shown(&self, entries: Vec<StoredEntry>, acked: &Acknowledged) -> Vec<ReceivedMessage> {
        let now = crate::message::now_millis();
        entries
            .into_iter()
            .filter(|entry| !acked.contains(entry.id))
            .flat_map(|entry| {
                let (id, publish_time) = (entry.id, entry.publish_time);
                entry
                    .messages
                    .into_iter()
                    .enumerate()
                    .map(move |(i, message)| ReceivedMessage {
                        id: id.message(i as u32),
                        publish_time,
                        message,
                        redelivery_count: 0,
                    })
            })
            .filter(|m| crate::message::expiration(&m.message).is_none_or(|at| at > now))
            .filter(|m| {
                self.selector
                    .as_ref()
                    .is_none_or(|s| crate::selector::matches(s, m))
            })
            .collect()
    }

    /// Hands messages to the link; false once the connection is gone.
    async fn deliver(&self, messages: Vec<ReceivedMessage>) -> bool {
        let event = Event::Delivered {
            channel: self.channel,
            handle: self.handle,
            link_id: self.link_id,
            messages,
        };
        self.events.send(event).await.is_ok()
    }

    async fn fail(&self, text: String) {
        let _ = self
            .events
            .send(Event::internal_error(
                self.channel,
                self.handle,
                self.link_id,
                text,
            ))
            .await;
    }
}
