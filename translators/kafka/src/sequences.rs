//! Idempotent producers' sequence numbers, per (producer id, topic, partition), as a Kafka broker
//! checks them: a batch must follow the last one handed over, a retry of a recent batch gets its
//! original offset back, and an older epoch is fenced.
//!
//! Batches are counted when they are handed to the backend, not when persisted, because a
//! connection pipelines several. A batch that fails rewinds the state to itself: the client
//! resends it and every later one, in order. The state is only a fast check; Pulsar's
//! deduplication (producer name and sequence id) is what keeps a resend from being written twice,
//! also across gateway restarts, where this state starts empty.
//!
//! Deduplication drops every entry whose sequence id is not above the last one persisted, so the
//! id must only grow, while Kafka sequences wrap from `i32::MAX` to 0. The state therefore counts
//! the wraps, and the id is `epoch << 48 | wraps << 31 | sequence` (see `dedup_sequence`). With
//! epoch 0 and no wrap that is the Kafka sequence, as the earlier `epoch << 32 | sequence` layout
//! had it, and any later epoch is above every id of that layout. The wrap count of a producer
//! this state does not know is recovered from the backend's last persisted id (`accept`'s
//! `persisted`).
//!
//! State is bounded (issue 13): a (producer, partition) idle for `IDLE` (1 h) is dropped, and at
//! most `MAX_ENTRIES` are kept (beyond it the longest idle go first), but never one with a batch
//! in flight. Dropping is safe because the state can be recovered: the next batch of a dropped
//! producer is handled as after a restart, from the backend's last persisted id. (Kafka keeps
//! a producer's state for `producer.id.expiration.ms`, a day, because it has nothing to recover
//! it from.)

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use dashmap::mapref::entry::Entry;
use dashmap::DashMap;
use kafka_protocol::error::ResponseError;

/// How many recent batches per partition an idempotent producer may retry and get the original
/// offset back (Kafka keeps five, matching `max.in.flight.requests.per.connection` <= 5).
const RECENT_BATCHES: usize = 5;

/// Kafka sequences count from 0 to `i32::MAX`, then wrap.
const SEQUENCE_SPAN: i64 = 1 << 31;

/// Where the epoch starts in a deduplication sequence id; below it, `wraps << 31 | sequence`.
const EPOCH_SHIFT: u32 = 48;

/// The highest sequence counting wraps (2^17 wraps, 2^48 records) that fits below the epoch.
const MAX_UNWRAPPED: i64 = (1 << EPOCH_SHIFT) - 1;

/// How long a producer's state on a partition is kept without a batch.
pub const IDLE: Duration = Duration::from_secs(3600);

/// The most (producer, partition) states kept.
pub const MAX_ENTRIES: usize = 100_000;

/// (producer id, topic, partition).
pub type ProducerPartition = (i64, String, i32);

pub struct Sequences {
    states: DashMap<ProducerPartition, State>,
    idle: Duration,
    max_entries: usize,
    /// When idle states are next looked for.
    next_sweep: Mutex<Option<Instant>>,
}

impl Default for Sequences {
    fn default() -> Self {
        Sequences::new(IDLE, MAX_ENTRIES)
    }
}

/// Sequences here count wraps (`wraps << 31 | sequence`), so they only grow within an epoch.
struct State {
    epoch: i16,
    /// Last sequence handed to the backend; -1 before the first.
    last_sequence: i64,
    /// First sequences of batches handed over and not settled yet, oldest first.
    in_flight: VecDeque<i64>,
    /// (first sequence, base offset) of recent persisted batches.
    recent: VecDeque<(i64, i64)>,
    /// The last batch accepted or settled.
    last_used: Instant,
}

/// A batch handed to the backend, to be settled.
pub struct BatchSequence {
    key: ProducerPartition,
    epoch: i16,
    /// The batch's first sequence, counting wraps.
    first: i64,
}

impl BatchSequence {
    /// The deduplication sequence id of the batch's first record.
    pub fn dedup_sequence(&self) -> u64 {
        dedup_sequence(self.epoch, self.first)
    }
}

/// The deduplication (Pulsar) sequence id of a record: `epoch << 48 | wraps << 31 | sequence`,
/// from its sequence counting wraps. Ids of later records of a batch are this plus their index.
pub fn dedup_sequence(epoch: i16, unwrapped: i64) -> u64 {
    ((epoch.max(0) as u64) << EPOCH_SHIFT) | unwrapped as u64
}

/// What to do with an incoming batch.
pub enum Verdict {
    /// Next in sequence: write it, then settle it.
    Write(BatchSequence),
    /// A retry of a recent persisted batch: answer with its offset, write nothing.
    Repeat(i64),
    /// No state for the producer on this partition (new, dropped when idle, or lost with a
    /// restart): ask again with the backend's last persisted deduplication id.
    Unknown,
}

impl Sequences {
    pub fn new(idle: Duration, max_entries: usize) -> Sequences {
        Sequences {
            states: DashMap::new(),
            idle,
            max_entries: max_entries.max(1),
            next_sweep: Mutex::new(None),
        }
    }

    /// Checks a batch of `count` records starting at sequence `first`. `persisted` is the
    /// backend's answer for the producer's last deduplication id on this partition, `None` when
    /// it was not asked: it is only needed when there is no state, to recover the wrap count,
    /// and then `Verdict::Unknown` says to ask.
    pub fn accept(
        &self,
        key: ProducerPartition,
        epoch: i16,
        first: i32,
        count: usize,
        persisted: Option<Option<u64>>,
    ) -> Result<Verdict, ResponseError> {
        self.accept_at(key, epoch, first, count, persisted, Instant::now())
    }

    fn accept_at(
        &self,
        key: ProducerPartition,
        epoch: i16,
        first: i32,
        count: usize,
        persisted: Option<Option<u64>>,
        now: Instant,
    ) -> Result<Verdict, ResponseError> {
        // Before taking the entry: both lock the map's shards.
        self.sweep(now);
        if !self.states.contains_key(&key) && self.states.len() >= self.max_entries {
            self.evict_longest_idle();
        }
        let mut state = match self.states.entry(key.clone()) {
            Entry::Occupied(known) => known.into_ref(),
            Entry::Vacant(_) if persisted.is_none() => return Ok(Verdict::Unknown),
            // Unknown here (new producer, or state dropped or lost): accept and learn it.
            Entry::Vacant(unknown) => {
                let start = recovered_start(epoch, first, persisted.flatten())?;
                unknown.insert(State {
                    epoch,
                    last_sequence: start - 1,
                    in_flight: VecDeque::new(),
                    recent: VecDeque::new(),
                    last_used: now,
                })
            }
        };
        state.last_used = now;
        if epoch < state.epoch {
            return Err(ResponseError::InvalidProducerEpoch);
        }
        if epoch > state.epoch {
            if first != 0 {
                return Err(ResponseError::OutOfOrderSequenceNumber);
            }
            state.epoch = epoch;
            state.last_sequence = -1;
            state.in_flight.clear();
            state.recent.clear();
        }
        let next = state.last_sequence + 1;
        let start = nearest(first, next);
        if let Some((_, offset)) = state.recent.iter().find(|(f, _)| *f == start) {
            return Ok(Verdict::Repeat(*offset));
        }
        if start != next {
            return Err(ResponseError::OutOfOrderSequenceNumber);
        }
        let last = start + count as i64 - 1;
        if last > MAX_UNWRAPPED {
            // 2^48 records in one epoch: the id would run into the epoch's bits.
            tracing::error!(
                producer_id = key.0,
                "idempotent producer's sequence ids exhausted; it must bump its epoch"
            );
            return Err(ResponseError::OutOfOrderSequenceNumber);
        }
        state.last_sequence = last;
        state.in_flight.push_back(start);
        drop(state);
        metrics::gauge!("kafka_idempotence_states").set(self.states.len() as f64);
        Ok(Verdict::Write(BatchSequence {
            key,
            epoch,
            first: start,
        }))
    }

    /// Drops the states idle for longer than the limit, at most once per hundredth of it.
    fn sweep(&self, now: Instant) {
        {
            let Ok(mut next) = self.next_sweep.try_lock() else {
                return; // someone else is sweeping
            };
            if next.is_some_and(|next| now < next) {
                return;
            }
            *next = Some(now + self.idle / 100);
        }
        let idle = self.idle;
        self.states.retain(|_, state| {
            !state.in_flight.is_empty() || now.saturating_duration_since(state.last_used) < idle
        });
        metrics::gauge!("kafka_idempotence_states").set(self.states.len() as f64);
    }

    /// At the cap: drops the longest idle tenth of the states without batches in flight.
    fn evict_longest_idle(&self) {
        let mut idle: Vec<(Instant, ProducerPartition)> = self
            .states
            .iter()
            .filter(|s| s.in_flight.is_empty())
            .map(|s| (s.last_used, s.key().clone()))
            .collect();
        let drop = (self.max_entries / 10).max(1).min(idle.len());
        if drop == 0 {
            return;
        }
        if drop < idle.len() {
            idle.select_nth_unstable_by_key(drop - 1, |(used, _)| *used);
        }
        for (_, key) in idle.into_iter().take(drop) {
            // Checked again under the entry's lock: a batch may have arrived meanwhile.
            self.states.remove_if(&key, |_, s| s.in_flight.is_empty());
        }
        metrics::counter!("kafka_idempotence_states_evicted_total").increment(drop as u64);
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
        state.last_used = Instant::now();
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
                state.last_sequence = batch.first - 1;
                state.in_flight.truncate(position);
            }
        }
    }
}

/// The sequence, counting wraps, that the first batch of a producer unknown here starts at.
/// The backend's last persisted id names the epoch and wrap count it wrote at last; a batch of
/// that epoch continues there (or repeats something just before), so it takes the wrap count
/// that puts it nearest after that id. A later epoch starts over without wraps, and an earlier
/// one is fenced: its ids would all be dropped as duplicates.
fn recovered_start(epoch: i16, first: i32, persisted: Option<u64>) -> Result<i64, ResponseError> {
    let Some(persisted) = persisted else {
        return Ok(first as i64);
    };
    let persisted_epoch = persisted >> EPOCH_SHIFT;
    let epoch = epoch.max(0) as u64;
    if persisted_epoch > epoch {
        return Err(ResponseError::InvalidProducerEpoch);
    }
    if persisted_epoch < epoch {
        return Ok(first as i64);
    }
    let start = nearest(first, (persisted & MAX_UNWRAPPED as u64) as i64 + 1);
    // Before the first wrap: a sequence from before the start of everything persisted.
    Ok(if start < 0 { first as i64 } else { start })
}

/// The sequence counting wraps whose Kafka sequence is `sequence` and that is nearest to
/// `reference` (serial number arithmetic: within 2^30 either way).
fn nearest(sequence: i32, reference: i64) -> i64 {
    let ahead = (sequence as i64 - reference).rem_euclid(SEQUENCE_SPAN);
    if ahead < SEQUENCE_SPAN / 2 {
        reference + ahead
    } else {
        reference + ahead - SEQUENCE_SPAN
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> ProducerPartition {
        (7, "t".into(), 0)
    }

    fn write(s: &Sequences, epoch: i16, first: i32, count: usize) -> BatchSequence {
        recovering(s, epoch, first, count, None)
    }

    /// `write` with the backend's last persisted id, as the produce handler passes it.
    fn recovering(
        s: &Sequences,
        epoch: i16,
        first: i32,
        count: usize,
        persisted: Option<u64>,
    ) -> BatchSequence {
        match s.accept(key(), epoch, first, count, Some(persisted)) {
            Ok(Verdict::Write(b)) => b,
            Ok(Verdict::Repeat(o)) => panic!("batch at {first} taken as a repeat of offset {o}"),
            Ok(Verdict::Unknown) => panic!("batch at {first}: asked for the backend's id"),
            Err(e) => panic!("batch at {first} refused: {e:?}"),
        }
    }

    fn refused(s: &Sequences, epoch: i16, first: i32, count: usize) -> ResponseError {
        match s.accept(key(), epoch, first, count, None) {
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
            s.accept(key(), 0, 0, 10, None),
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

    const WRAP: u64 = 1 << 31;

    #[test]
    fn a_producer_crossing_i32_max_keeps_growing_64_bit_sequences() {
        let s = Sequences::default();
        let mut ids = Vec::new();
        let a = write(&s, 0, i32::MAX - 4, 3);
        ids.push(a.dedup_sequence());
        s.settle(a, &Ok(1));
        let b = write(&s, 0, i32::MAX - 1, 3); // MAX-1, MAX, then 0 of the first wrap
        ids.push(b.dedup_sequence());
        s.settle(b, &Ok(2));
        for first in [1, 2, 3] {
            let c = write(&s, 0, first, 1);
            ids.push(c.dedup_sequence());
            s.settle(c, &Ok(3));
        }
        assert_eq!(
            ids,
            [
                i32::MAX as u64 - 4,
                i32::MAX as u64 - 1,
                WRAP + 1,
                WRAP + 2,
                WRAP + 3
            ]
        );
        // A retry from before the wrap is still recognised as one.
        assert!(matches!(
            s.accept(key(), 0, i32::MAX - 1, 3, None),
            Ok(Verdict::Repeat(2))
        ));
        // A second wrap, in a later epoch: above everything of the earlier epochs.
        let s = Sequences::default();
        let d = write(&s, 5, 0, 1);
        assert_eq!(d.dedup_sequence(), 5 << 48);
        s.settle(d, &Ok(1));
        let mut last = 0;
        for (first, count) in [(1, i32::MAX as usize), (0, 1 << 31), (0, 2)] {
            let e = write(&s, 5, first, count);
            assert!(e.dedup_sequence() > last);
            last = e.dedup_sequence();
            s.settle(e, &Ok(2));
        }
        assert_eq!(last, (5 << 48) | (2 * WRAP));
    }

    #[test]
    fn a_restart_after_a_wrap_recovers_the_wrap_count_from_the_backend() {
        // The backend persisted up to sequence 9 of the first wrap; this state starts empty.
        let persisted = Some(WRAP + 9);
        let s = Sequences::default();
        let next = recovering(&s, 0, 10, 5, persisted);
        assert_eq!(next.dedup_sequence(), WRAP + 10, "after the last persisted");
        s.settle(next, &Ok(1));
        write(&s, 0, 15, 1);

        // A resend of the last persisted batch gets its old id, so deduplication drops it.
        let s = Sequences::default();
        let resend = recovering(&s, 0, 5, 5, persisted);
        assert_eq!(resend.dedup_sequence(), WRAP + 5);

        // Persisted just before a wrap, and the client has wrapped since.
        let s = Sequences::default();
        let wrapped = recovering(&s, 0, 2, 1, Some(7 * WRAP + i32::MAX as u64 - 3));
        assert_eq!(wrapped.dedup_sequence(), 8 * WRAP + 2);
        // Persisted just after a wrap, and a resend from before it comes first.
        let s = Sequences::default();
        let resend = recovering(&s, 0, i32::MAX - 1, 2, Some(8 * WRAP + 3));
        assert_eq!(resend.dedup_sequence(), 7 * WRAP + i32::MAX as u64 - 1);

        // The wrap count belongs to its epoch: a bumped epoch starts over.
        let s = Sequences::default();
        let bumped = recovering(&s, 3, 0, 1, Some((2 << 48) | (4 * WRAP + 100)));
        assert_eq!(bumped.dedup_sequence(), 3 << 48);
        // An epoch older than the persisted one is fenced: its ids would all be duplicates.
        let s = Sequences::default();
        assert!(matches!(
            s.accept(key(), 1, 0, 1, Some(Some(2 << 48 | 5))),
            Err(ResponseError::InvalidProducerEpoch)
        ));
        // Ids of the old `epoch << 32 | sequence` layout: epoch 0 reads the same.
        let s = Sequences::default();
        let old = recovering(&s, 0, 43, 1, Some(42));
        assert_eq!(old.dedup_sequence(), 43);
    }

    #[test]
    fn the_backend_value_is_only_used_without_state() {
        let s = Sequences::default();
        let a = write(&s, 0, 100, 1);
        s.settle(a, &Ok(1));
        let b = recovering(&s, 0, 101, 1, Some(5 * WRAP));
        assert_eq!(b.dedup_sequence(), 101);
    }

    /// A batch of producer `id` on partition 0 at `now`, with the backend's id when there is no
    /// state; `None` when it is refused or a repeat.
    fn batch_at(
        s: &Sequences,
        id: i64,
        first: i32,
        now: Instant,
        persisted: Option<u64>,
    ) -> Option<BatchSequence> {
        let key = (id, "t".to_owned(), 0);
        match s.accept_at(key.clone(), 0, first, 1, None, now) {
            Ok(Verdict::Unknown) => match s.accept_at(key, 0, first, 1, Some(persisted), now) {
                Ok(Verdict::Write(b)) => Some(b),
                _ => None,
            },
            Ok(Verdict::Write(b)) => Some(b),
            _ => None,
        }
    }

    fn known(s: &Sequences, id: i64) -> bool {
        s.states.contains_key(&(id, "t".to_owned(), 0))
    }

    #[test]
    fn idle_state_is_dropped_and_then_recovered_from_the_backend() {
        let s = Sequences::new(IDLE, MAX_ENTRIES);
        let t0 = Instant::now();
        let a = batch_at(&s, 1, 0, t0, None).unwrap();
        s.settle(a, &Ok(100));
        // Another producer's batch an hour later: the sweep drops the idle one.
        batch_at(&s, 2, 0, t0 + IDLE - Duration::from_secs(1), None).unwrap();
        assert!(known(&s, 1), "not idle for an hour yet");
        batch_at(&s, 2, 1, t0 + IDLE + Duration::from_secs(60), None).unwrap();
        assert!(!known(&s, 1), "idle for an hour: dropped");
        assert!(known(&s, 2));
        // Its next batch asks for the backend's id and carries on from it, wraps included.
        let key = (1, "t".to_owned(), 0);
        let later = t0 + IDLE + Duration::from_secs(120);
        assert!(matches!(
            s.accept_at(key.clone(), 0, 1, 1, None, later),
            Ok(Verdict::Unknown)
        ));
        let Ok(Verdict::Write(b)) = s.accept_at(key, 0, 1, 1, Some(Some(WRAP)), later) else {
            panic!("the batch after the last persisted one is written");
        };
        assert_eq!(b.dedup_sequence(), WRAP + 1);
    }

    #[test]
    fn a_producer_with_a_batch_in_flight_is_never_dropped() {
        let s = Sequences::new(IDLE, 2);
        let t0 = Instant::now();
        let pending = batch_at(&s, 1, 0, t0, None).unwrap();
        // Hours later, and at the entry cap: the producer with a batch in flight stays.
        for id in 2..6 {
            let b = batch_at(&s, id, 0, t0 + 3 * IDLE, None).unwrap();
            s.settle(b, &Ok(1));
        }
        assert!(known(&s, 1), "dropped with a batch in flight");
        s.settle(pending, &Ok(7));
        // Settled, its resend still gets its offset back.
        assert!(matches!(
            s.accept_at((1, "t".to_owned(), 0), 0, 0, 1, None, t0 + 3 * IDLE),
            Ok(Verdict::Repeat(7))
        ));
    }

    #[test]
    fn beyond_the_entry_cap_the_longest_idle_state_goes_first() {
        let s = Sequences::new(IDLE, 3);
        let t0 = Instant::now();
        for id in 1..=3 {
            let b = batch_at(&s, id, 0, t0 + Duration::from_secs(id as u64), None).unwrap();
            s.settle(b, &Ok(1));
        }
        // Producer 1 writes again: producer 2 is now the longest idle.
        let b = batch_at(&s, 1, 1, t0 + Duration::from_secs(10), None).unwrap();
        s.settle(b, &Ok(2));
        batch_at(&s, 4, 0, t0 + Duration::from_secs(11), None).unwrap();
        assert!(!known(&s, 2), "the longest idle went");
        assert!(known(&s, 1) && known(&s, 3) && known(&s, 4));
        assert_eq!(s.states.len(), 3);
    }

    #[test]
    fn an_unknown_producer_is_learned_from_its_first_batch() {
        let s = Sequences::default();
        write(&s, 3, 500, 10);
        write(&s, 3, 510, 1);
    }
}
