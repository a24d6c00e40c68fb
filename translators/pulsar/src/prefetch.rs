//! A reader's flow control in bytes. Pulsar's flow permits count messages (a batch entry uses
//! one per message), so a fixed window of permits holds anything from kilobytes to gigabytes
//! depending on the messages' size. A reader instead keeps the bytes it holds (taken from the
//! subscription and not yet returned) plus an estimate of what is on its way (permits granted
//! and not yet used, times the average bytes per permit seen so far) under a byte budget, which
//! the Kafka front end derives from what its fetches ask for. Java clients bound memory the same
//! way in spirit: a receiver queue in messages plus a client-wide `memoryLimit`.
//!
//! A new reader knows nothing of its topic's message size, so it starts with one permit, and
//! its window grows at most as fast as messages arrive (it doubles per round trip), so a few
//! small messages followed by large ones cannot open a window sized for the small ones. Whatever
//! the budget, a reader with nothing to return keeps at least one message coming, so a message
//! larger than the budget is still read.

/// The budget of a reader nobody set one for: Kafka's default `max.partition.fetch.bytes`.
pub const DEFAULT_BUDGET: usize = 1 << 20;

/// Permits granted before any message's size is known.
const INITIAL_PERMITS: i64 = 1;

/// Most permits out at once, however small the messages: an entry of many tiny messages costs
/// more in memory than its bytes, and the broker reads ahead for a consumer up to this.
const MAX_PERMITS: i64 = 10_000;

/// See the module documentation.
#[derive(Debug)]
pub(crate) struct Prefetch {
    budget: usize,
    /// Permits granted and not yet used by the messages received, counted as the broker counts
    /// them: below zero after a batch entry with more messages than there were permits.
    outstanding: i64,
    /// Bytes and permits of every message received, for the average size of a permit.
    seen_bytes: u64,
    seen_permits: u64,
}

impl Prefetch {
    pub(crate) fn new(budget: usize) -> Prefetch {
        Prefetch {
            budget: budget.max(1),
            outstanding: 0,
            seen_bytes: 0,
            seen_permits: 0,
        }
    }

    pub(crate) fn set_budget(&mut self, budget: usize) {
        self.budget = budget.max(1);
    }

    pub(crate) fn budget(&self) -> usize {
        self.budget
    }

    /// The subscription was opened again: the broker forgot the permits it had.
    pub(crate) fn reopened(&mut self) {
        self.outstanding = 0;
    }

    /// A message arrived: `permits` of them used (the messages in its entry), `bytes` long.
    pub(crate) fn received(&mut self, permits: u32, bytes: usize) {
        self.outstanding -= i64::from(permits);
        self.seen_permits += u64::from(permits);
        self.seen_bytes += bytes as u64;
    }

    /// The bytes still expected for the permits out (0 when none are).
    #[cfg(test)]
    fn in_flight(&self) -> usize {
        match self.per_permit() {
            Some(size) if self.outstanding > 0 => self.outstanding as usize * size,
            _ => 0,
        }
    }

    fn per_permit(&self) -> Option<usize> {
        (self.seen_permits > 0).then(|| ((self.seen_bytes / self.seen_permits) as usize).max(1))
    }

    /// The permits to grant now (0: none), given the bytes the reader holds. `starved`: it holds
    /// nothing it could return, so at least one message must be on its way whatever the budget.
    pub(crate) fn grant(&mut self, held: usize, starved: bool) -> u32 {
        let target = match self.per_permit() {
            None => INITIAL_PERMITS,
            Some(size) => ((self.budget.saturating_sub(held) / size) as i64)
                .min(MAX_PERMITS)
                // Grow no faster than messages arrive (at most doubling per round trip).
                .min((self.seen_permits as i64).max(INITIAL_PERMITS)),
        };
        let mut want = target - self.outstanding;
        if starved && self.outstanding <= 0 {
            want = want.max(1 - self.outstanding);
        }
        if want <= 0 {
            return 0;
        }
        // Refill in steps of half the window, as Pulsar clients do, not a FLOW per message.
        if self.outstanding > 0 && want < (target / 2).max(1) {
            return 0;
        }
        let want = want.min(i64::from(u32::MAX));
        self.outstanding += want;
        want as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Plays a broker that delivers one message per permit, `size` bytes each, and a reader
    /// that never returns anything: what it ends up holding must stay near the budget.
    fn held_after_flooding(budget: usize, size: usize, messages: usize) -> usize {
        let mut p = Prefetch::new(budget);
        let (mut held, mut permits) = (0usize, 0i64);
        permits += i64::from(p.grant(held, true));
        for _ in 0..messages {
            if permits == 0 {
                permits += i64::from(p.grant(held, false));
                if permits == 0 {
                    break;
                }
            }
            permits -= 1;
            p.received(1, size);
            held += size;
            permits += i64::from(p.grant(held, false));
        }
        held + p.in_flight()
    }

    #[test]
    fn what_a_reader_holds_stays_within_its_budget_whatever_the_message_size() {
        for size in [100, 10 << 10, 512 << 10] {
            let held = held_after_flooding(1 << 20, size, 100_000);
            assert!(
                held <= (1 << 20) + size,
                "{held} bytes held with {size}-byte messages"
            );
        }
    }

    #[test]
    fn a_message_larger_than_the_budget_is_still_read() {
        let mut p = Prefetch::new(1000);
        assert_eq!(p.grant(0, true), 1);
        p.received(1, 1 << 20);
        // Holding it: nothing more.
        assert_eq!(p.grant(1 << 20, false), 0);
        // Returned: the next one is asked for.
        assert_eq!(p.grant(0, true), 1);
    }

    #[test]
    fn a_new_reader_starts_with_one_permit_and_grows_as_messages_arrive() {
        let mut p = Prefetch::new(1 << 20);
        assert_eq!(p.grant(0, true), 1);
        p.received(1, 100);
        assert_eq!(p.grant(0, false), 1, "one seen, one more");
        p.received(1, 100);
        assert_eq!(p.grant(0, false), 2);
        p.received(2, 200);
        assert_eq!(p.grant(0, false), 4);
        // Small messages: the window ends at MAX_PERMITS, not at budget / size.
        for _ in 0..20 {
            let out = p.outstanding;
            p.received(out as u32, out as usize * 100);
            p.grant(0, false);
        }
        assert_eq!(p.outstanding, MAX_PERMITS);
    }

    #[test]
    fn small_messages_then_large_ones_do_not_open_a_window_for_the_small() {
        let mut p = Prefetch::new(1 << 20);
        p.grant(0, true);
        p.received(1, 10);
        let granted = p.grant(0, false);
        assert!(granted <= 1, "{granted} permits after one message");
        p.received(1, 1 << 20);
        assert_eq!(p.grant(1 << 20, false), 0);
    }

    #[test]
    fn a_batch_entry_larger_than_the_window_is_made_up_for() {
        let mut p = Prefetch::new(1 << 20);
        assert_eq!(p.grant(0, true), 1);
        // One entry of 4,096 messages, 400 KiB: the broker's count is now -4,095.
        p.received(4096, 400 << 10);
        // Holding it, the remaining 624 KiB buy 6,389 permits of 100 bytes; growth caps the
        // window at the 4,096 seen. Granted: the debt plus that window.
        assert_eq!(p.grant(400 << 10, false), 4095 + 4096);
    }

    #[test]
    fn a_reopened_subscription_is_granted_again() {
        let mut p = Prefetch::new(1 << 20);
        assert_eq!(p.grant(0, true), 1);
        assert_eq!(p.grant(0, true), 0, "one is out");
        p.reopened();
        assert_eq!(p.grant(0, true), 1);
    }
}
