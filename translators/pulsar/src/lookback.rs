//! Reading a topic backwards from a position, across ledgers: windows of entries, each reaching
//! twice as far back as the one before, each read forwards through a non-durable subscription of
//! its own, up to a budget of entries (`Backwards`). Two things are looked for that way: the
//! chunks of a chunked message that a reader or consumer did not see, in the entries before the
//! message's last chunk (`Lookup`, for `chunks::Missing`), and the entry a named producer wrote
//! with a given sequence id (`find_sequence`, for `Producing::find_sequence`).

use std::sync::Arc;
use std::time::Duration;

use gateway_core::{EntryId, MessageId, Result, TopicName};

use crate::admin::AdminClient;
use crate::chunks::{Assembled, Assembler, Finish, Missing, RawEntry};
use crate::connection::unavailable;
use crate::pool::Pool;
use crate::proto::{sub_type, MessageMetadata};
use crate::subscription::{after, start_before, Flow, Spec, Subscription, PERMITS};

/// How long a look-back waits for its next entry: they exist, so this only runs out when the
/// broker does not answer, or the topic lost them.
const LOOKBACK_WAIT: Duration = Duration::from_secs(10);
/// Look-backs of one message that may fail before the message is dropped, so that a topic that
/// lost its entries does not stop the reader or consumer for good.
const LOOKBACK_ATTEMPTS: u32 = 3;
/// The first window of a sequence look-up: a resend normally comes right after its original.
const SEQUENCE_FIRST_WINDOW: u64 = 16;

/// Where look-backs read a topic from.
pub struct Lookback {
    pub(crate) pool: Arc<Pool>,
    pub(crate) admin: Arc<AdminClient>,
    pub(crate) topic: TopicName,
    pub(crate) compacted: bool,
}

impl Lookback {
    pub fn new(
        pool: Arc<Pool>,
        admin: Arc<AdminClient>,
        topic: &TopicName,
        compacted: bool,
    ) -> Lookback {
        Lookback {
            pool,
            admin,
            topic: topic.clone(),
            compacted,
        }
    }

    /// Hands every entry in `[lo, hi)` to `visit`, in order, through a reader of its own. `hi`
    /// may be just past the topic's last entry: the window ends with the entry before `hi` in
    /// `hi`'s ledger, or at the first entry at or after `hi`.
    pub(crate) async fn read(
        &self,
        lo: EntryId,
        hi: EntryId,
        span: u64,
        mut visit: impl FnMut(RawEntry),
    ) -> Result<()> {
        let spec = Spec {
            topic: self.topic.to_string(),
            name: format!("pulsar-gateway-lookback-{:016x}", rand::random::<u64>()),
            sub_type: sub_type::EXCLUSIVE,
            durable: false,
            initial: 1,
            compacted: self.compacted,
            flow: Flow::Window(span.clamp(1, PERMITS as u64) as u32),
        };
        let mut subscription =
            Subscription::open(self.pool.clone(), spec, Some(start_before(lo))).await?;
        let mut next = lo;
        let mut deadline = tokio::time::Instant::now() + LOOKBACK_WAIT;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return Err(unavailable(format!(
                    "no entry from {}:{} within {LOOKBACK_WAIT:?} while looking back",
                    next.ledger, next.entry
                )));
            }
            let Some(raw) = subscription.next(left, Some(start_before(next))).await? else {
                continue;
            };
            if raw.id >= hi {
                return Ok(());
            }
            if raw.id < next {
                continue;
            }
            next = after(raw.id);
            deadline = tokio::time::Instant::now() + LOOKBACK_WAIT;
            visit(raw);
            if next >= hi {
                return Ok(());
            }
        }
    }
}

/// A walk backwards from a position, one window at a time; kept across a cancelled read, which
/// resumes it.
pub(crate) struct Backwards {
    /// Entries before this one are still to be read.
    hi: EntryId,
    /// The next window's size: each window reaches twice as far back as the one before.
    span: u64,
    /// Entries covered so far.
    covered: u64,
    /// Entries to cover at most.
    budget: u64,
    /// The topic's ledgers, once a window reaches before `hi`'s ledger.
    ledgers: Option<Vec<(u64, u64)>>,
}

/// What `Backwards::next` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Window {
    /// Read one more window.
    Read,
    /// The budget is spent: nothing read.
    Spent,
    /// Nothing precedes the walk's position in the topic: nothing read.
    Start,
}

impl Backwards {
    /// A walk over at most `budget` entries before `hi`, its first window `first_span` long.
    pub(crate) fn new(hi: EntryId, first_span: u64, budget: u64) -> Backwards {
        Backwards {
            hi,
            span: first_span.max(1),
            covered: 0,
            budget,
            ledgers: None,
        }
    }

    /// Entries covered so far.
    pub(crate) fn covered(&self) -> u64 {
        self.covered
    }

    /// Reads the next window back, handing its entries to `visit` in order (oldest first). An
    /// error leaves the walk where it was, to be resumed.
    pub(crate) async fn next(
        &mut self,
        source: &Lookback,
        visit: impl FnMut(RawEntry),
    ) -> Result<Window> {
        if self.covered >= self.budget {
            return Ok(Window::Spent);
        }
        let span = self.span.min(self.budget - self.covered);
        if self.hi.entry < span && self.ledgers.is_none() {
            self.ledgers = Some(source.admin.ledgers(&source.topic).await?);
        }
        let ledgers = self.ledgers.as_deref().unwrap_or_default();
        let Some(lo) = window_start(self.hi, span, ledgers) else {
            return Ok(Window::Start);
        };
        source.read(lo, self.hi, span, visit).await?;
        self.hi = lo;
        self.covered += span;
        self.span = span * 2;
        Ok(Window::Read)
    }
}

/// A chunk look-back under way; kept across a cancelled read, which resumes it.
pub(crate) struct Lookup {
    pub(crate) missing: Missing,
    walk: Backwards,
    failures: u32,
}

impl Lookup {
    /// A look-up of `missing`'s earlier chunks, over at most `16 × chunks + 1024` entries:
    /// chunks interleaved with other producers' entries spread over more entries than their
    /// count, but not without bound.
    pub(crate) fn new(missing: Missing) -> Lookup {
        let chunks = u64::from(missing.num_chunks);
        Lookup {
            walk: Backwards::new(missing.last, chunks, 16 * chunks + 1024),
            failures: 0,
            missing,
        }
    }

    /// Reads windows before the last chunk until the message is whole (`Some`) or dropped.
    /// An error leaves the look-back to be resumed.
    pub(crate) async fn run(
        &mut self,
        source: &Lookback,
        chunks: &mut Assembler,
    ) -> Result<Option<Assembled>> {
        let uuid = self.missing.uuid.clone();
        loop {
            match chunks.finish(&uuid) {
                Finish::Done(m) => return Ok(Some(m)),
                Finish::Gone => return Ok(None),
                Finish::Missing => {}
            }
            let missing = &self.missing;
            let window = self
                .walk
                .next(source, |raw| chunks.offer(missing, raw))
                .await;
            match window {
                Ok(Window::Read) => {
                    metrics::counter!("pulsar_chunk_lookbacks_total").increment(1);
                    self.failures = 0;
                }
                Ok(Window::Spent) => {
                    let why = format!(
                        "earlier chunks not in the {} entries before the last one",
                        self.walk.covered()
                    );
                    chunks.give_up(&uuid, &why);
                    return Ok(None);
                }
                Ok(Window::Start) => {
                    chunks.give_up(&uuid, "earlier chunks are not in the topic");
                    return Ok(None);
                }
                Err(e) => {
                    self.failures += 1;
                    if self.failures >= LOOKBACK_ATTEMPTS {
                        chunks.give_up(&uuid, &format!("looking for earlier chunks: {e}"));
                        return Ok(None);
                    }
                    return Err(e);
                }
            }
        }
    }
}

/// Where `producer_name` wrote sequence id `sequence`, among the `budget` entries up to and
/// including `last`; the latest if there are several. An entry's metadata names its first
/// sequence id and, when the producer coalesced several sends into it, the first sequence id of
/// the last one (`highest_sequence_id`); its messages have consecutive ids from the first
/// (`producer::pack`), so the sequence is the message at `sequence - first`. A chunked message's
/// chunks share its sequence id, so it is found at its last chunk, where it is read.
pub(crate) async fn find_sequence(
    source: &Lookback,
    last: EntryId,
    producer_name: &str,
    sequence: u64,
    budget: u64,
) -> Result<Option<MessageId>> {
    let mut walk = Backwards::new(after(last), SEQUENCE_FIRST_WINDOW, budget);
    loop {
        let mut found = None;
        let window = walk
            .next(source, |raw| {
                if raw.metadata.producer_name == producer_name {
                    if let Some(index) = index_of(&raw.metadata, sequence) {
                        found = Some(raw.id.message(index));
                    }
                }
            })
            .await?;
        if window != Window::Read {
            return Ok(None);
        }
        metrics::counter!("pulsar_sequence_lookback_windows_total").increment(1);
        if found.is_some() {
            return Ok(found);
        }
    }
}

/// The batch index at which an entry with this metadata holds the send that started at
/// `sequence`, if it holds one.
fn index_of(metadata: &MessageMetadata, sequence: u64) -> Option<u32> {
    let first = metadata.sequence_id;
    let last = metadata.highest_sequence_id.unwrap_or(first).max(first);
    (first..=last)
        .contains(&sequence)
        .then(|| u32::try_from(sequence - first).ok())
        .flatten()
}

/// Where a look-back window of `span` entries that ends just before `hi` starts, given the
/// topic's ledgers (id and entry count, oldest first); `None` when nothing precedes `hi`. A
/// window that reaches the topic's first entry is shorter.
pub fn window_start(hi: EntryId, span: u64, ledgers: &[(u64, u64)]) -> Option<EntryId> {
    if hi.entry >= span {
        return Some(EntryId {
            ledger: hi.ledger,
            entry: hi.entry - span,
        });
    }
    let mut left = span - hi.entry;
    let mut start = (hi.entry > 0).then_some(EntryId {
        ledger: hi.ledger,
        entry: 0,
    });
    for &(ledger, entries) in ledgers.iter().rev() {
        if ledger >= hi.ledger || entries == 0 {
            continue;
        }
        if entries >= left {
            return Some(EntryId {
                ledger,
                entry: entries - left,
            });
        }
        left -= entries;
        start = Some(EntryId { ledger, entry: 0 });
    }
    start
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sequence_is_found_where_its_send_starts_in_a_coalesced_entry() {
        let metadata = |first, highest| MessageMetadata {
            sequence_id: first,
            highest_sequence_id: highest,
            ..Default::default()
        };
        // One send of 3 messages at sequence 10.
        assert_eq!(index_of(&metadata(10, None), 10), Some(0));
        assert_eq!(index_of(&metadata(10, None), 11), None);
        // Sends at 10 (3 messages), 13 and 15 coalesced: 15 starts at batch index 5.
        assert_eq!(index_of(&metadata(10, Some(15)), 13), Some(3));
        assert_eq!(index_of(&metadata(10, Some(15)), 15), Some(5));
        assert_eq!(index_of(&metadata(10, Some(15)), 16), None);
        assert_eq!(index_of(&metadata(10, Some(15)), 9), None);
    }

    #[test]
    fn windows_reach_back_across_ledgers() {
        let at = |ledger, entry| EntryId { ledger, entry };
        let ledgers = [(3, 10), (5, 0), (8, 4), (9, 6)];
        assert_eq!(window_start(at(9, 5), 3, &[]), Some(at(9, 2)));
        assert_eq!(window_start(at(9, 5), 5, &[]), Some(at(9, 0)));
        assert_eq!(window_start(at(9, 5), 7, &ledgers), Some(at(8, 2)));
        assert_eq!(window_start(at(9, 5), 9, &ledgers), Some(at(8, 0)));
        assert_eq!(window_start(at(9, 5), 10, &ledgers), Some(at(3, 9)));
        assert_eq!(window_start(at(9, 0), 4, &ledgers), Some(at(8, 0)));
        // Past the first entry: the window stops there, and nothing precedes it.
        assert_eq!(window_start(at(9, 5), 100, &ledgers), Some(at(3, 0)));
        assert_eq!(window_start(at(3, 0), 1, &ledgers), None);
        // Ledgers unknown: the current one only.
        assert_eq!(window_start(at(9, 5), 100, &[]), Some(at(9, 0)));
    }
}
