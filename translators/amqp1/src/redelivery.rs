//! Redelivery counts Pulsar forgot. Pulsar hands a message out again with its redelivery count
//! back at 0 when the consumer holding it closes (apache/pulsar#8722). A message negatively
//! acknowledged as its link goes can be dispatched straight back to that same consumer (it still
//! has permits) just before it closes, and the next consumer then gets it as if it had never
//! been delivered: JMS `JMSRedelivered` false. So each instance remembers, per subscription, the
//! counts above 0 it has seen until the message is acknowledged, and never reports less. Only
//! within one instance: another instance of a fleet does not know what this one saw.
//!
//! The other way round, Pulsar counts every negative acknowledgement, but AMQP does not count a
//! `released` delivery (or one `modified` without `delivery-failed`) as a delivery attempt (core
//! §3.4.4, §3.4.5), nor is a message a selector passed over delivered at all. Those hand-backs
//! are remembered too, and taken off Pulsar's count.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use gateway_core::{MessageId, ReceivedMessage};

/// Messages remembered at once; the oldest are forgotten first.
const CAPACITY: usize = 65_536;

#[derive(Default)]
pub(crate) struct RedeliveryCounts {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    counts: HashMap<(String, MessageId), Count>,
    /// Insertion order, for forgetting the oldest; may name messages already forgotten.
    order: VecDeque<(String, MessageId)>,
}

/// What this instance knows of one message's redeliveries.
#[derive(Clone, Copy, Default)]
struct Count {
    /// The highest count reported for it.
    seen: u32,
    /// Hand-backs Pulsar counted that were not delivery attempts.
    uncounted: u32,
}

impl RedeliveryCounts {
    /// Records the counts of `messages` read from `subscription` (a key naming the topic and
    /// the subscription) and raises those Pulsar reset.
    pub fn observe(&self, subscription: &str, messages: &mut [ReceivedMessage]) {
        let mut inner = self.inner.lock().expect("redelivery counts lock");
        for m in messages {
            let key = (subscription.to_owned(), m.id);
            match inner.counts.get_mut(&key) {
                Some(count) => {
                    count.seen = count
                        .seen
                        .max(m.redelivery_count.saturating_sub(count.uncounted));
                    m.redelivery_count = count.seen;
                }
                None if m.redelivery_count > 0 => {
                    let seen = m.redelivery_count;
                    inner
                        .counts
                        .insert(key.clone(), Count { seen, uncounted: 0 });
                    inner.order.push_back(key);
                }
                None => {}
            }
        }
        inner.trim();
    }

    /// The messages were handed back as not delivered (a negative acknowledgement): each comes
    /// back with its count one higher, whether or not Pulsar counts it (it does not on
    /// Exclusive subscriptions).
    pub fn nacked(&self, subscription: &str, ids: &[MessageId]) {
        self.update(subscription, ids, |count| count.seen += 1);
    }

    /// The messages were handed back without a delivery attempt (released, or passed over by
    /// a selector): they come back with their count unchanged, though Pulsar raises it.
    pub fn released(&self, subscription: &str, ids: &[MessageId]) {
        self.update(subscription, ids, |count| count.uncounted += 1);
    }

    fn update(&self, subscription: &str, ids: &[MessageId], change: impl Fn(&mut Count)) {
        let mut inner = self.inner.lock().expect("redelivery counts lock");
        for id in ids {
            let key = (subscription.to_owned(), *id);
            if !inner.counts.contains_key(&key) {
                inner.order.push_back(key.clone());
            }
            change(inner.counts.entry(key).or_default());
        }
        inner.trim();
    }

    /// The messages were acknowledged: they will not come back.
    pub fn forget(&self, subscription: &str, ids: &[MessageId]) {
        let mut inner = self.inner.lock().expect("redelivery counts lock");
        if inner.counts.is_empty() {
            return;
        }
        for id in ids {
            inner.counts.remove(&(subscription.to_owned(), *id));
        }
        inner.trim();
    }
}

impl Inner {
    fn trim(&mut self) {
        while self.counts.len() > CAPACITY {
            match self.order.pop_front() {
                Some(key) => {
                    self.counts.remove(&key);
                }
                None => break,
            }
        }
        // Forgotten messages leave their keys in `order`; drop them once they outnumber the rest.
        if self.order.len() > 2 * self.counts.len() + 1024 {
            let counts = &self.counts;
            self.order.retain(|k| counts.contains_key(k));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gateway_core::Message;

    fn received(entry: u64, redelivery_count: u32) -> ReceivedMessage {
        ReceivedMessage {
            id: MessageId {
                ledger: 1,
                entry,
                batch_index: 0,
            },
            publish_time: 0,
            message: Message::default(),
            redelivery_count,
        }
    }

    #[test]
    fn a_negative_ack_counts_even_where_pulsar_does_not() {
        let counts = RedeliveryCounts::default();
        let mut first = [received(7, 0)];
        counts.observe("t/s", &mut first);
        counts.nacked("t/s", &[first[0].id]);
        // An Exclusive subscription: Pulsar says 0.
        let mut again = [received(7, 0)];
        counts.observe("t/s", &mut again);
        assert_eq!(again[0].redelivery_count, 1);
        counts.nacked("t/s", &[again[0].id]);
        // A Shared one counts too: the same number.
        let mut third = [received(7, 2)];
        counts.observe("t/s", &mut third);
        assert_eq!(third[0].redelivery_count, 2);
    }

    #[test]
    fn a_release_is_not_a_delivery_attempt() {
        let counts = RedeliveryCounts::default();
        let mut first = [received(7, 0)];
        counts.observe("t/s", &mut first);
        counts.nacked("t/s", &[first[0].id]);
        // Shared: Pulsar counts the failed attempt, as this instance does.
        let mut second = [received(7, 1)];
        counts.observe("t/s", &mut second);
        assert_eq!(second[0].redelivery_count, 1);
        counts.released("t/s", &[second[0].id]);
        // Pulsar counts the release too; it is taken off.
        let mut third = [received(7, 2)];
        counts.observe("t/s", &mut third);
        assert_eq!(third[0].redelivery_count, 1);
        // Exclusive: Pulsar counts nothing, and a release leaves the count where it was.
        counts.released("t/x", &[received(8, 0).id]);
        let mut exclusive = [received(8, 0)];
        counts.observe("t/x", &mut exclusive);
        assert_eq!(exclusive[0].redelivery_count, 0);
        counts.nacked("t/x", &[exclusive[0].id]);
        let mut failed = [received(8, 0)];
        counts.observe("t/x", &mut failed);
        assert_eq!(failed[0].redelivery_count, 1);
    }

    #[test]
    fn a_count_pulsar_reset_is_raised_back_until_the_message_is_acked() {
        let counts = RedeliveryCounts::default();
        let mut first = [received(7, 1), received(8, 0)];
        counts.observe("t/s", &mut first);
        // Back from a closed consumer: Pulsar says 0 again.
        let mut again = [received(7, 0), received(8, 0)];
        counts.observe("t/s", &mut again);
        assert_eq!(
            (again[0].redelivery_count, again[1].redelivery_count),
            (1, 0)
        );
        // Another subscription of the topic has its own counts.
        let mut other = [received(7, 0)];
        counts.observe("t/other", &mut other);
        assert_eq!(other[0].redelivery_count, 0);
        // A higher count from Pulsar wins, and an ack forgets the message.
        let mut higher = [received(7, 3)];
        counts.observe("t/s", &mut higher);
        assert_eq!(higher[0].redelivery_count, 3);
        counts.forget("t/s", &[higher[0].id]);
        let mut after = [received(7, 0)];
        counts.observe("t/s", &mut after);
        assert_eq!(after[0].redelivery_count, 0);
    }

    #[test]
    fn it_remembers_a_bounded_number_of_messages() {
        let counts = RedeliveryCounts::default();
        for entry in 0..(CAPACITY as u64 + 10) {
            counts.observe("t/s", &mut [received(entry, 1)]);
        }
        let inner = counts.inner.lock().unwrap();
        assert_eq!(inner.counts.len(), CAPACITY);
        assert!(!inner
            .counts
            .contains_key(&("t/s".to_owned(), received(0, 0).id)));
    }
}
