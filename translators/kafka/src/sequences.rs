//! Idempotent producers' sequence numbers, per (producer id, topic, partition), as a Kafka broker
//! checks them: a batch must follow the last one handed over, a retry of a recent batch gets its
//! original offset back, and an older epoch is fenced.
//!
//! Batches are counted when they are handed to the backend, not when persisted, because a
//! connection pipelines several. A batch that fails rewinds the state to itself: the client
//! resends it and every later one, in order. The state is only a fast check; Pulsar's
//! deduplication (producer name and sequence id) is what keeps a resend from being written twice,
//! also across gateway restarts, where this state starts empty.

use std::collections::VecDeque;

use dashmap::DashMap;
use kafka_protocol::error::ResponseError;

/// How many recent batches per partition an idempotent producer may retry and get the original
/// offset back (Kafka keeps five, matching `max.in.flight.requests.per.connection` <= 5).
const RECENT_BATCHES: usize = 5;

/// (producer id, topic, partition).
pub type ProducerPartition = (i64, String, i32);

#[derive(Default)]
pub struct Sequences {
    states: DashMap<ProducerPartition, State>,
}

struct State {
    epoch: i16,
    /// Last sequence handed to the backend.
    last_sequence: i32,
    /// First sequences of batches handed over and not settled yet, oldest first.
    in_flight: VecDeque<i32>,
    /// (first sequence, base offset) of recent persisted batches.
    recent: VecDeque<(i32, i64)>,
}

/// A batch handed to the backend, to be settled.
pub struct BatchSequence {
    key: ProducerPartition,
    epoch: i16,
    first: i32,
}

/// What to do with an incoming batch.
pub enum Verdict {
    /// Next in sequence: write it, then settle it.
    Write(BatchSequence),
    /// A retry of a recent persisted batch: answer with its offset, write nothing.
    Repeat(i64),
}

impl Sequences {
    /// Checks a batch of `count` records starting at sequence `first`.
    pub fn accept(
        &self,
        key: ProducerPartition,
        epoch: i16,
        first: i32,
        count: usize,
    ) -> Result<Verdict, ResponseError> {
        let last = wrap(first as i64 + count as i64 - 1);
        let mut state = self.states.entry(key.clone()).or_insert_with(|| State {
            // Unknown here (new producer, or state lost with a restart): accept and learn it.
            epoch,
            last_sequence: wrap(first as i64 - 1),
            in_flight: VecDeque::new(),
            recent: VecDeque::new(),
        });
        if epoch < state.epoch {
            return Err(ResponseError::InvalidProducerEpoch);
        }
        if epoch > state.epoch {
            if first != 0 {
                return Err(ResponseError::OutOfOrderSequenceNumber);
            }
            state.epoch = epoch;
            state.in_flight.clear();
            state.recent.clear();
        } else {
            if let Some((_, offset)) = state.recent.iter().find(|(f, _)| *f == first) {
                return Ok(Verdict::Repeat(*offset));
            }
            if first != wrap(state.last_sequence as i64 + 1) {
                return Err(ResponseError::OutOfOrderSequenceNumber);
            }
        }
        state.last_sequence = last;
        state.in_flight.push_back(first);
        Ok(Verdict::Write(BatchSequence { key, epoch, first }))
    }

    /// Records how a handed-over batch ended. A failed batch, and every later one in flight
    /// (they fail with it, or the client resends them after it anyway), is expected again.
    pub fn settle(&self, batch: BatchSequence, outcome: &Result<i64, ResponseError>) {
        let Some(mut state) = self.states.get_mut(&batch.key) else {
            return;
        };
        if state.epoch != batch.epoch {
            return;
        }
        let Some(position) = state.in_flight.iter().position(|f| *f == batch.first) else {
            return; // already rewound by an earlier failure
        };
        match outcome {
            Ok(offset) => {
                state.in_flight.remove(position);
                state.recent.push_back((batch.first, *offset));
                if state.recent.len() > RECENT_BATCHES {
                    state.recent.pop_front();
                }
            }
            // Written before: nothing to resend, and its offset is unknown here.
            Err(ResponseError::DuplicateSequenceNumber) => {
                state.in_flight.remove(position);
            }
            Err(_) => {
                state.last_sequence = wrap(batch.first as i64 - 1);
                state.in_flight.truncate(position);
            }
        }
    }
}

/// Kafka sequences wrap from i32::MAX to 0.
fn wrap(sequence: i64) -> i32 {
    sequence.rem_euclid(i32::MAX as i64 + 1) as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> ProducerPartition {
        (7, "t".into(), 0)
    }

    fn write(s: &Sequences, epoch: i16, first: i32, count: usize) -> BatchSequence {
        match s.accept(key(), epoch, first, count) {
            Ok(Verdict::Write(b)) => b,
            Ok(Verdict::Repeat(o)) => panic!("batch at {first} taken as a repeat of offset {o}"),
            Err(e) => panic!("batch at {first} refused: {e:?}"),
        }
    }

    fn refused(s: &Sequences, epoch: i16, first: i32, count: usize) -> ResponseError {
        match s.accept(key(), epoch, first, count) {
            Err(e) => e,
            Ok(_) => panic!("batch at {first} accepted"),
        }
    }

    #[test]
    fn pipelined_batches_must_follow_each_other() {
        let s = Sequences::default();
        let a = write(&s, 0, 0, 10);
        let b = write(&s, 0, 10, 5); // before `a` settled
        assert_eq!(
            refused(&s, 0, 20, 1),
            ResponseError::OutOfOrderSequenceNumber
        );
        s.settle(a, &Ok(100));
        s.settle(b, &Ok(200));
        write(&s, 0, 15, 1);
    }

    #[test]
    fn a_retry_of_a_persisted_batch_gets_its_offset() {
        let s = Sequences::default();
        let a = write(&s, 0, 0, 10);
        s.settle(a, &Ok(4096));
        assert!(matches!(
            s.accept(key(), 0, 0, 10),
            Ok(Verdict::Repeat(4096))
        ));
    }

    #[test]
    fn a_failure_rewinds_to_the_failed_batch_and_drops_later_ones() {
        let s = Sequences::default();
        let a = write(&s, 0, 0, 10);
        let b = write(&s, 0, 10, 10);
        let c = write(&s, 0, 20, 10);
        s.settle(a, &Ok(1));
        s.settle(b, &Err(ResponseError::NotLeaderOrFollower));
        // `c` failed with it; settling it later must not move the state again.
        s.settle(c, &Err(ResponseError::NotLeaderOrFollower));
        assert_eq!(
            refused(&s, 0, 20, 10),
            ResponseError::OutOfOrderSequenceNumber
        );
        let b = write(&s, 0, 10, 10);
        write(&s, 0, 20, 10);
        s.settle(b, &Ok(2));
    }

    #[test]
    fn epochs_fence_and_restart_at_zero() {
        let s = Sequences::default();
        let a = write(&s, 1, 0, 3);
        s.settle(a, &Ok(1));
        assert_eq!(refused(&s, 0, 3, 1), ResponseError::InvalidProducerEpoch);
        assert_eq!(
            refused(&s, 2, 5, 1),
            ResponseError::OutOfOrderSequenceNumber
        );
        write(&s, 2, 0, 1);
    }

    #[test]
    fn sequences_wrap_after_i32_max() {
        let s = Sequences::default();
        write(&s, 0, i32::MAX - 1, 3); // MAX-1, MAX, 0
        write(&s, 0, 1, 1);
    }

    #[test]
    fn an_unknown_producer_is_learned_from_its_first_batch() {
        let s = Sequences::default();
        write(&s, 3, 500, 10);
        write(&s, 3, 510, 1);
    }
}
