//! Offset encoding v1 (DESIGN.md §5): a Kafka offset is computed from the Pulsar message id with
//! no stored state, `ledger << 32 | entry << 12 | batch_index`.
//!
//! Offsets grow strictly within a partition (ledger ids only grow), records of one entry are
//! contiguous, and there are gaps between entries, which Kafka clients accept as they do for
//! compacted topics. Ids that do not fit are an explicit error, never a wrong offset.

use gateway_core::{EntryId, MessageId};

pub const LEDGER_BITS: u32 = 31;
pub const ENTRY_BITS: u32 = 20;
pub const BATCH_BITS: u32 = 12;
/// Messages one entry may hold for its offsets to stay distinct.
pub const MAX_BATCH_MESSAGES: usize = 1 << BATCH_BITS;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("message id {0} does not fit offset encoding v1 (ledger < 2^31, entry < 2^20, batch index < 2^12)")]
pub struct OffsetOutOfRange(pub MessageId);

pub fn to_offset(id: MessageId) -> Result<i64, OffsetOutOfRange> {
    if id.ledger >= 1 << LEDGER_BITS
        || id.entry >= 1 << ENTRY_BITS
        || id.batch_index >= 1 << BATCH_BITS
    {
        metrics::counter!("kafka_offset_out_of_range_total").increment(1);
        return Err(OffsetOutOfRange(id));
    }
    Ok(((id.ledger << 32) | (id.entry << BATCH_BITS) | id.batch_index as u64) as i64)
}

/// The message id an offset names. Negative offsets have no meaning here and map to the start.
pub fn to_message_id(offset: i64) -> MessageId {
    let o = offset.max(0) as u64;
    MessageId {
        ledger: o >> 32,
        entry: (o >> BATCH_BITS) & ((1 << ENTRY_BITS) - 1),
        batch_index: (o & ((1 << BATCH_BITS) - 1)) as u32,
    }
}

/// The offset of the first message of an entry.
pub fn entry_offset(id: EntryId) -> Result<i64, OffsetOutOfRange> {
    to_offset(id.message(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trips(ledger in 0u64..1 << 31, entry in 0u64..1 << 20, batch_index in 0u32..1 << 12) {
            let id = MessageId { ledger, entry, batch_index };
            prop_assert_eq!(to_message_id(to_offset(id).unwrap()), id);
        }

        #[test]
        fn order_is_kept(a in (0u64..1 << 31, 0u64..1 << 20, 0u32..1 << 12), b in (0u64..1 << 31, 0u64..1 << 20, 0u32..1 << 12)) {
            let a = MessageId { ledger: a.0, entry: a.1, batch_index: a.2 };
            let b = MessageId { ledger: b.0, entry: b.1, batch_index: b.2 };
            prop_assert_eq!(a.cmp(&b), to_offset(a).unwrap().cmp(&to_offset(b).unwrap()));
        }
    }

    #[test]
    fn out_of_range_is_an_error() {
        assert!(to_offset(MessageId {
            ledger: 1 << 31,
            entry: 0,
            batch_index: 0
        })
        .is_err());
        assert!(to_offset(MessageId {
            ledger: 0,
            entry: 1 << 20,
            batch_index: 0
        })
        .is_err());
        assert!(to_offset(MessageId {
            ledger: 0,
            entry: 0,
            batch_index: 1 << 12
        })
        .is_err());
        assert_eq!(
            to_offset(MessageId {
                ledger: 1,
                entry: 2,
                batch_index: 3
            }),
            Ok((1 << 32) | (2 << 12) | 3)
        );
    }
}
