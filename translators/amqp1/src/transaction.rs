//! Local transactions (core spec §4; JMS transacted sessions). A client declares a transaction
//! on its coordinator link; messages it then sends in it are kept here, not written, and
//! deliveries it accepts in it are not acknowledged yet. Discharging it writes the messages
//! and acknowledges the deliveries (commit), or drops the messages and hands the deliveries
//! back as redelivered (rollback). The AMQP 0-9-1 front end's channel transactions work the same
//! way. Not atomic when something fails midway: a commit whose second write fails leaves the
//! first written, and a gateway that dies before a commit's acknowledgements reach Pulsar has
//! them delivered again (docs/jms.md "Transactions").

use std::collections::HashMap;

use fe2o3_amqp_types::definitions::{AmqpError, Error};
use fe2o3_amqp_types::messaging::{Accepted, AmqpValue, DeliveryState, Rejected};
use fe2o3_amqp_types::transaction::{Declare, Declared, Discharge, TransactionError};
use gateway_core::{BackendRef, EntryToSend, Message, MessageId, TopicName};
use tokio::sync::mpsc;

use crate::connection::{Command, Ctx};

/// The most message bytes one transaction may hold before its commit.
pub const MAX_TRANSACTION_BYTES: usize = 64 << 20;

/// The transactions of one connection, by id.
#[derive(Default)]
pub(crate) struct Transactions {
    next: u64,
    open: HashMap<Vec<u8>, Transaction>,
}

#[derive(Default)]
pub(crate) struct Transaction {
    /// The coordinator link that declared it: it is rolled back when that link goes.
    coordinator: u64,
    /// Messages sent in it, in the order sent, with their topics.
    sends: Vec<(TopicName, Message)>,
    bytes: usize,
    /// Deliveries settled in it: the consumer task of each one's link (weakly: a link that
    /// goes closes its consumer, and Pulsar hands back what it had not acknowledged), the
    /// message, and whether it was accepted (acknowledged at commit) or not (handed back).
    settled: Vec<(mpsc::WeakUnboundedSender<Command>, MessageId, bool)>,
}

/// Why a transactional transfer or settlement is refused.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    UnknownId,
    TooLarge,
}

impl Refused {
    pub fn error(&self) -> Error {
        match self {
            Refused::UnknownId => Error::new(
                TransactionError::UnknownId,
                Some("no such transaction".to_string()),
                None,
            ),
            Refused::TooLarge => Error::new(
                AmqpError::ResourceLimitExceeded,
                Some(format!(
                    "a transaction may hold {MAX_TRANSACTION_BYTES} bytes of messages"
                )),
                None,
            ),
        }
    }
}

/// What a coordinator link's message asks (§4.3): declare a transaction, or discharge one. The
/// delivery state that answers it.
pub(crate) async fn control(payload: &[u8], coordinator: u64, ctx: &Ctx<'_>) -> DeliveryState {
    // The control message is the amqp-value body; other sections (a header, properties) may
    // come before it.
    let mut rest = payload;
    while let Some(len) = crate::encoding::value_len(rest) {
        let (raw, next) = rest.split_at(len);
        rest = next;
        if let Ok(AmqpValue(Declare { .. })) = serde_amqp::from_slice::<AmqpValue<Declare>>(raw) {
            let id = ctx
                .transactions
                .lock()
                .expect("transactions lock")
                .declare(coordinator);
            return DeliveryState::Declared(Declared { txn_id: id.into() });
        }
        if let Ok(AmqpValue(discharge)) = serde_amqp::from_slice::<AmqpValue<Discharge>>(raw) {
            return discharge_one(discharge, ctx).await;
        }
        if rest.is_empty() {
            break;
        }
    }
    rejected(Error::new(
        AmqpError::DecodeError,
        Some("a coordinator takes declare and discharge messages".to_string()),
        None,
    ))
}

async fn discharge_one(discharge: Discharge, ctx: &Ctx<'_>) -> DeliveryState {
    let transaction = ctx
        .transactions
        .lock()
        .expect("transactions lock")
        .discharge(&discharge.txn_id);
    let Some(transaction) = transaction else {
        return rejected(Refused::UnknownId.error());
    };
    if discharge.fail.unwrap_or(false) {
        transaction.roll_back();
        return DeliveryState::Accepted(Accepted {});
    }
    // The connection waits for the writes (a commit takes a Pulsar round trip): its client
    // waits for the commit's answer anyway.
    match transaction.commit(&ctx.frontend.backend).await {
        Ok(()) => DeliveryState::Accepted(Accepted {}),
        Err(e) => rejected(Error::new(
            TransactionError::Rollback,
            Some(format!("not committed: {e}")),
            None,
        )),
    }
}

fn rejected(error: Error) -> DeliveryState {
    DeliveryState::Rejected(Rejected { error: Some(error) })
}

impl Transactions {
    /// A new transaction for coordinator link `coordinator`; its id.
    pub fn declare(&mut self, coordinator: u64) -> Vec<u8> {
        self.next += 1;
        let id = self.next.to_be_bytes().to_vec();
        let transaction = Transaction {
            coordinator,
            ..Default::default()
        };
        self.open.insert(id.clone(), transaction);
        id
    }

    /// Keeps `message` for `topic` until the transaction ends.
    pub fn send(&mut self, id: &[u8], topic: TopicName, message: Message) -> Result<(), Refused> {
        let transaction = self.open.get_mut(id).ok_or(Refused::UnknownId)?;
        let size = message.value.as_ref().map_or(0, |v| v.len())
            + message
                .properties
                .iter()
                .map(|(k, v)| k.len() + v.len())
                .sum::<usize>();
        if transaction.bytes + size > MAX_TRANSACTION_BYTES {
            return Err(Refused::TooLarge);
        }
        transaction.bytes += size;
        transaction.sends.push((topic, message));
        Ok(())
    }

    /// Records a delivery the client settled in the transaction.
    pub fn settle(
        &mut self,
        id: &[u8],
        link: mpsc::WeakUnboundedSender<Command>,
        message: MessageId,
        accepted: bool,
    ) -> Result<(), Refused> {
        let transaction = self.open.get_mut(id).ok_or(Refused::UnknownId)?;
        transaction.settled.push((link, message, accepted));
        Ok(())
    }

    /// Ends transaction `id`: it is the caller's to commit or roll back.
    pub fn discharge(&mut self, id: &[u8]) -> Option<Transaction> {
        self.open.remove(id)
    }

    /// The transactions coordinator link `coordinator` declared and did not discharge: it went,
    /// so they are to be rolled back.
    pub fn orphaned(&mut self, coordinator: u64) -> Vec<Transaction> {
        let ids: Vec<Vec<u8>> = self
            .open
            .iter()
            .filter(|(_, t)| t.coordinator == coordinator)
            .map(|(id, _)| id.clone())
            .collect();
        ids.iter().filter_map(|id| self.open.remove(id)).collect()
    }

    /// Every open transaction (the connection is closing).
    pub fn all(&mut self) -> Vec<Transaction> {
        self.open.drain().map(|(_, t)| t).collect()
    }
}

impl Transaction {
    /// Drops the messages and hands the deliveries back: each one counts as a delivery attempt,
    /// so it comes back redelivered.
    pub fn roll_back(self) {
        for (link, message, _) in self.settled {
            if let Some(link) = link.upgrade() {
                let _ = link.send(Command::Nack(vec![message]));
            }
        }
    }

    /// Writes the messages, in order, and once all are persisted acknowledges the accepted
    /// deliveries. A failed write rolls the deliveries back and is the error.
    pub async fn commit(self, backend: &BackendRef) -> Result<(), String> {
        let mut pending = Vec::new();
        let mut failed = None;
        for (topic, message) in self.sends {
            let entry = EntryToSend {
                messages: vec![message],
                dedup: None,
                coalesce: false,
            };
            match backend.submit(&topic, vec![entry]).await {
                Ok(p) => pending.push(p),
                Err(e) => {
                    failed = Some(e.to_string());
                    break;
                }
            }
        }
        let written = pending.len();
        for p in pending {
            if let Err(e) = p.await {
                failed.get_or_insert(e.to_string());
            }
        }
        metrics::counter!("amqp1_messages_received_total").increment(written as u64);
        if let Some(e) = failed {
            let undone = Transaction {
                settled: self.settled,
                ..Default::default()
            };
            undone.roll_back();
            return Err(e);
        }
        for (link, message, accepted) in self.settled {
            let command = if accepted {
                Command::Ack(vec![message])
            } else {
                Command::Nack(vec![message])
            };
            if let Some(link) = link.upgrade() {
                let _ = link.send(command);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(text: &str) -> Message {
        Message {
            key: None,
            value: Some(bytes::Bytes::from(text.to_owned())),
            properties: Vec::new(),
            event_time: None,
            deliver_at: None,
        }
    }

    #[test]
    fn transactions_are_by_id_and_orphaned_with_their_coordinator() {
        let mut t = Transactions::default();
        let a = t.declare(1);
        let b = t.declare(2);
        assert_ne!(a, b);
        let topic = TopicName::new("public", "default", "q");
        t.send(&a, topic.clone(), message("x")).unwrap();
        assert_eq!(
            t.send(b"nope", topic.clone(), message("y")),
            Err(Refused::UnknownId)
        );
        let (link, mut commands) = mpsc::unbounded_channel();
        let id = MessageId {
            ledger: 1,
            entry: 2,
            batch_index: 0,
        };
        t.settle(&b, link.downgrade(), id, true).unwrap();
        let orphans = t.orphaned(2);
        assert_eq!(orphans.len(), 1);
        for o in orphans {
            o.roll_back();
        }
        assert!(matches!(commands.try_recv(), Ok(Command::Nack(ids)) if ids == vec![id]));
        drop(link);
        assert!(
            t.discharge(&b).is_none(),
            "rolled back with its coordinator"
        );
        assert_eq!(t.discharge(&a).map(|x| x.sends.len()), Some(1));
    }

    #[test]
    fn a_transaction_holds_a_bounded_number_of_bytes() {
        let mut t = Transactions::default();
        let a = t.declare(1);
        let topic = TopicName::new("public", "default", "q");
        let big = Message {
            value: Some(bytes::Bytes::from(vec![0u8; MAX_TRANSACTION_BYTES / 2 + 1])),
            ..message("")
        };
        t.send(&a, topic.clone(), big.clone()).unwrap();
        assert_eq!(t.send(&a, topic, big), Err(Refused::TooLarge));
    }
}
