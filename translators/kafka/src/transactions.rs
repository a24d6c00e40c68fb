//! Kafka transactions (KIP-98) as one transactional id's state machine, the part of Kafka's
//! transaction coordinator that decides; `groups::coordinator::transactions` keeps the state in
//! the group shards' table topics and drives the backend's transactions (ADR 0003).
//!
//! Each Kafka transaction is one backend (Pulsar) transaction, begun by the first
//! AddPartitionsToTxn and committed or aborted by EndTxn, or aborted by the coordinator when the
//! producer's `transaction.timeout.ms` passes. The backend transaction's own timeout is longer
//! by [`BACKEND_TIMEOUT_MARGIN`], so that Pulsar aborts it by itself only when no gateway is left
//! to do so.

use std::collections::BTreeSet;
use std::time::Duration;

use gateway_core::TransactionId;
use kafka_protocol::error::ResponseError;
use serde::{Deserialize, Serialize};

/// Kafka's `transaction.max.timeout.ms` default: a producer asking for more is refused.
pub const MAX_TIMEOUT_MS: i32 = 900_000;

/// How much longer than the producer's timeout the backend transaction lives (see module doc).
pub const BACKEND_TIMEOUT_MARGIN: Duration = Duration::from_secs(30);

/// A transactional id's phase, named as Kafka's DescribeTransactions and ListTransactions
/// report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    Empty,
    Ongoing,
    PrepareCommit,
    PrepareAbort,
    CompleteCommit,
    CompleteAbort,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::Empty => "Empty",
            Phase::Ongoing => "Ongoing",
            Phase::PrepareCommit => "PrepareCommit",
            Phase::PrepareAbort => "PrepareAbort",
            Phase::CompleteCommit => "CompleteCommit",
            Phase::CompleteAbort => "CompleteAbort",
        }
    }

    /// Whether a new transaction may begin (no transaction is open or ending).
    pub fn is_idle(self) -> bool {
        matches!(
            self,
            Phase::Empty | Phase::CompleteCommit | Phase::CompleteAbort
        )
    }
}

/// One transactional id's state, as kept in the table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnState {
    pub producer_id: i64,
    pub epoch: i16,
    pub timeout_ms: i32,
    pub phase: Phase,
    /// The backend transaction of the open (or ending) Kafka transaction.
    pub backend_txn: Option<TransactionId>,
    /// Partitions added to the open transaction: (topic, partition).
    pub partitions: BTreeSet<(String, i32)>,
    /// Groups whose offsets were added to the open transaction.
    pub groups: BTreeSet<String>,
    /// When the open transaction began (wall clock, ms); 0 when none is open.
    pub started_ms: u64,
    /// When the state was last written (ms since the epoch): an idle id expires
    /// `transactional.id.expiration.ms` after it.
    pub updated_ms: u64,
}

/// Which error a stale epoch gets: PRODUCER_FENCED from the request versions of KIP-588 on,
/// INVALID_PRODUCER_EPOCH before (older clients do not know the newer code).
pub fn fenced(knows_producer_fenced: bool) -> ResponseError {
    if knows_producer_fenced {
        ResponseError::ProducerFenced
    } else {
        ResponseError::InvalidProducerEpoch
    }
}

impl TxnState {
    pub fn new(producer_id: i64, timeout_ms: i32) -> Self {
        TxnState {
            producer_id,
            epoch: 0,
            timeout_ms,
            phase: Phase::Empty,
            backend_txn: None,
            partitions: BTreeSet::new(),
            groups: BTreeSet::new(),
            started_ms: 0,
            updated_ms: 0,
        }
    }

    /// Checks a request's producer id and epoch against the current ones.
    pub fn check_producer(
        &self,
        producer_id: i64,
        epoch: i16,
        knows_producer_fenced: bool,
    ) -> Result<(), ResponseError> {
        if producer_id != self.producer_id {
            return Err(ResponseError::InvalidProducerIdMapping);
        }
        if epoch != self.epoch {
            return Err(fenced(knows_producer_fenced));
        }
        Ok(())
    }

    /// The next epoch for InitProducerId or a timeout abort; a producer id whose epochs ran out
    /// gets a fresh id (`new_id`), as Kafka's coordinator does.
    pub fn bump_epoch(&mut self, new_id: impl FnOnce() -> i64) {
        if self.epoch >= i16::MAX - 1 {
            self.producer_id = new_id();
            self.epoch = 0;
        } else {
            self.epoch += 1;
        }
    }

    /// The transaction is over (its backend transaction ended): back to idle.
    pub fn complete(&mut self, committed: bool) {
        self.phase = if committed {
            Phase::CompleteCommit
        } else {
            Phase::CompleteAbort
        };
        self.backend_txn = None;
        self.partitions.clear();
        self.groups.clear();
        self.started_ms = 0;
    }

    /// Whether the open transaction has outlived the producer's timeout at `now_ms`.
    pub fn timed_out(&self, now_ms: u64) -> bool {
        self.phase == Phase::Ongoing
            && now_ms.saturating_sub(self.started_ms) > self.timeout_ms.max(0) as u64
    }

    /// The backend transaction's timeout for a transaction of this producer.
    pub fn backend_timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms.max(0) as u64) + BACKEND_TIMEOUT_MARGIN
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_epochs_are_fenced_with_the_code_the_client_knows() {
        let mut s = TxnState::new(7, 60_000);
        s.bump_epoch(|| unreachable!());
        assert_eq!(s.check_producer(7, 1, true), Ok(()));
        assert_eq!(
            s.check_producer(7, 0, true),
            Err(ResponseError::ProducerFenced)
        );
        assert_eq!(
            s.check_producer(7, 0, false),
            Err(ResponseError::InvalidProducerEpoch)
        );
        assert_eq!(
            s.check_producer(8, 1, true),
            Err(ResponseError::InvalidProducerIdMapping)
        );
    }

    #[test]
    fn exhausted_epochs_take_a_new_producer_id() {
        let mut s = TxnState::new(7, 60_000);
        s.epoch = i16::MAX - 1;
        s.bump_epoch(|| 9);
        assert_eq!((s.producer_id, s.epoch), (9, 0));
    }

    #[test]
    fn timeouts_count_from_the_start_of_the_open_transaction() {
        let mut s = TxnState::new(7, 1_000);
        assert!(!s.timed_out(u64::MAX), "nothing open, nothing to time out");
        s.phase = Phase::Ongoing;
        s.started_ms = 10_000;
        assert!(!s.timed_out(11_000));
        assert!(s.timed_out(11_001));
        s.complete(false);
        assert_eq!(s.phase, Phase::CompleteAbort);
        assert!(s.backend_txn.is_none() && s.partitions.is_empty());
    }
}
