//! Looking up the chunks of a chunked message that a reader or consumer did not see, in the
//! entries before the message's last chunk (`chunks::Missing`).

use std::sync::Arc;
use std::time::Duration;

use gateway_core::{EntryId, Result, TopicName};

use crate::admin::AdminClient;
use crate::chunks::{self, Assembled, Assembler, Finish, Missing, RawEntry};
use crate::connection::unavailable;
use crate::pool::Pool;
use crate::proto::sub_type;
use crate::subscription::{after, start_before, Flow, Spec, Subscription, PERMITS};

/// How long a look-back waits for its next entry: they exist, so this only runs out when the
/// broker does not answer, or the topic lost them.
const LOOKBACK_WAIT: Duration = Duration::from_secs(10);
/// Look-backs of one message that may fail before the message is dropped, so that a topic that
/// lost its entries does not stop the reader or consumer for good.
const LOOKBACK_ATTEMPTS: u32 = 3;

/// Reads the entries before a chunked message's last chunk, for the chunks a reader or consumer
/// did not see (`chunks::Missing`): it started inside the message, sought to it, or a Shared
/// subscription gave them to another consumer.
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

    /// Hands every entry in `[lo, hi)` to `visit`, through a reader of its own.
    pub(crate) async fn read(
        &self,
        lo: EntryId,
        hi: EntryId,
        span: u64,
        mut visit: impl FnMut(RawEntry),
    ) -> Result<()> {
        metrics::counter!("pulsar_chunk_lookbacks_total").increment(1);
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
                    "no entry from {}:{} within {LOOKBACK_WAIT:?} while looking for chunks",
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
        }
    }
}

/// A look-back under way; kept across a cancelled read, which resumes it.
pub(crate) struct Lookup {
    pub(crate) missing: Missing,
    /// Entries before this one are still to be read.
    hi: EntryId,
    /// The next window's size: each window reaches twice as far back as the one before.
    span: u64,
    /// Entries covered so far.
    pub(crate) read: u64,
    /// The topic's ledgers, once a window reaches before the last chunk's ledger.
    pub(crate) ledgers: Option<Vec<(u64, u64)>>,
    failures: u32,
}

impl Lookup {
    pub(crate) fn new(missing: Missing) -> Lookup {
        Lookup {
            hi: missing.last,
            span: u64::from(missing.num_chunks),
            read: 0,
            ledgers: None,
            failures: 0,
            missing,
        }
    }

    /// How far back to look at most: chunks interleaved with other producers' entries spread
    /// over more entries than their count, but not without bound.
    pub(crate) fn budget(&self) -> u64 {
        16 * u64::from(self.missing.num_chunks) + 1024
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
            if self.read >= self.budget() {
                let why = format!(
                    "earlier chunks not in the {} entries before the last one",
                    self.read
                );
                chunks.give_up(&uuid, &why);
                return Ok(None);
            }
            let span = self.span.min(self.budget() - self.read);
            let window = async {
                if self.hi.entry < span && self.ledgers.is_none() {
                    self.ledgers = Some(source.admin.ledgers(&source.topic).await?);
                }
                let ledgers = self.ledgers.as_deref().unwrap_or_default();
                let Some(lo) = chunks::window_start(self.hi, span, ledgers) else {
                    return Ok(None);
                };
                let missing = &self.missing;
                source
                    .read(lo, self.hi, span, |raw| chunks.offer(missing, raw))
                    .await?;
                Ok(Some(lo))
            };
            match window.await {
                Ok(Some(lo)) => {
                    self.hi = lo;
                    self.read += span;
                    self.span = span * 2;
                    self.failures = 0;
                }
                Ok(None) => {
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
