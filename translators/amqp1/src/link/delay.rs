//! Delivery delay on the gateway's sending links (docs/jms.md, "Delivery delay").
//!
//! A message with a deliver-at time still ahead (JMS `setDeliveryDelay`, which Qpid JMS sends
//! as `x-opt-delivery-time`) is not sent when read: the link's consumer task holds it here,
//! neither delivered nor acknowledged, and sends it once due. Pulsar's broker holds such
//! messages back itself on Shared subscriptions (a queue's `jms-queue`), but not on the
//! Exclusive subscriptions of topic subscribers, and the embedded backend never does; this
//! covers all of them.
//!
//! Held messages take memory, so a link holds at most `HOLD_MAX` of them or `HOLD_MAX_BYTES`;
//! when full its task reads no more until one is due. Nothing is lost if the link goes first:
//! held messages were never acknowledged, so the subscription delivers them again.

use std::collections::BTreeMap;
use std::time::Duration;

use gateway_core::ReceivedMessage;

/// Most messages, and bytes, one link holds back.
const HOLD_MAX: usize = 10_000;
const HOLD_MAX_BYTES: usize = 32 * 1024 * 1024;

#[derive(Default)]
pub(crate) struct Held {
    /// By due time, then arrival order.
    messages: BTreeMap<(u64, u64), ReceivedMessage>,
    arrivals: u64,
    bytes: usize,
}

impl Held {
    /// Keeps the messages not yet due at `now` (ms since the epoch); returns the others.
    pub fn hold_back(&mut self, messages: Vec<ReceivedMessage>, now: u64) -> Vec<ReceivedMessage> {
        let before = messages.len();
        let mut ready = Vec::with_capacity(before);
        for m in messages {
            match m.message.deliver_at {
                Some(at) if at > now => {
                    self.bytes += m.message.approximate_size();
                    self.arrivals += 1;
                    self.messages.insert((at, self.arrivals), m);
                }
                _ => ready.push(m),
            }
        }
        metrics::gauge!("amqp1_messages_delayed").increment((before - ready.len()) as f64);
        ready
    }

    /// Up to `max` held messages due at `now`, earliest first.
    pub fn take_due(&mut self, now: u64, max: usize) -> Vec<ReceivedMessage> {
        let mut due = Vec::new();
        while due.len() < max {
            match self.messages.first_entry() {
                Some(entry) if entry.key().0 <= now => {
                    let m = entry.remove();
                    self.bytes -= m.message.approximate_size();
                    due.push(m);
                }
                _ => break,
            }
        }
        metrics::gauge!("amqp1_messages_delayed").decrement(due.len() as f64);
        due
    }

    /// Whether the link must stop reading until a held message is due.
    pub fn is_full(&self) -> bool {
        self.messages.len() >= HOLD_MAX || self.bytes >= HOLD_MAX_BYTES
    }

    /// How long until the next held message is due at `now`, if one is held.
    pub fn until_due(&self, now: u64) -> Option<Duration> {
        let ((at, _), _) = self.messages.first_key_value()?;
        Some(Duration::from_millis(at.saturating_sub(now)))
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        metrics::gauge!("amqp1_messages_delayed").decrement(self.messages.len() as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gateway_core::{Message, MessageId};

    fn received(entry: u64, deliver_at: Option<u64>) -> ReceivedMessage {
        ReceivedMessage {
            id: MessageId {
                ledger: 1,
                entry,
                batch_index: 0,
            },
            publish_time: 0,
            message: Message {
                deliver_at,
                ..Default::default()
            },
            redelivery_count: 0,
        }
    }

    fn entries(messages: &[ReceivedMessage]) -> Vec<u64> {
        messages.iter().map(|m| m.id.entry).collect()
    }

    #[test]
    fn messages_wait_until_due_then_go_earliest_first() {
        let mut held = Held::default();
        let ready = held.hold_back(
            vec![
                received(0, Some(3_000)),
                received(1, None),
                received(2, Some(1_000)),
                received(3, Some(2_000)),
                received(4, Some(2_000)),
            ],
            1_000,
        );
        assert_eq!(entries(&ready), [1, 2]);
        assert_eq!(held.until_due(1_000), Some(Duration::from_millis(1_000)));
        assert!(held.take_due(1_999, 10).is_empty());
        // Equal due times keep their order; `max` is the link's credit.
        assert_eq!(entries(&held.take_due(2_500, 1)), [3]);
        assert_eq!(entries(&held.take_due(2_500, 10)), [4]);
        assert_eq!(entries(&held.take_due(5_000, 10)), [0]);
        assert_eq!(held.until_due(5_000), None);
        assert_eq!(held.bytes, 0);
    }

    #[test]
    fn a_full_hold_stops_reading() {
        let mut held = Held::default();
        let many: Vec<_> = (0..HOLD_MAX as u64)
            .map(|i| received(i, Some(10_000)))
            .collect();
        assert!(held.hold_back(many, 0).is_empty());
        assert!(held.is_full());
        held.take_due(10_000, 1);
        assert!(!held.is_full());
    }
}
