//! OKX book sync: a snapshot, then updates, each validated by the CRC32
//! checksum of the top 25 levels (and `seqId`/`prevSeqId` where the venue
//! sends them). A mismatch, a sequence gap or a crossed book invalidates
//! the book until a new snapshot (the connector resubscribes).

use std::fmt::Write;

use super::parse::BookMessage;
use crate::book::L2Book;
use crate::venues::BookOutcome;

/// Levels per side covered by the checksum.
const CHECKSUM_DEPTH: usize = 25;

#[derive(Debug, Clone, Default)]
pub struct OkxBook {
    pub book: L2Book,
    synced: bool,
    last_seq: Option<i64>,
    /// Exchange time of the last applied message: the published sequence
    /// when the venue sends no `seqId`.
    last_ts: i64,
}

/// OKX's checksum of `book`: CRC32 (IEEE) of `bid:size:ask:size:…` over the
/// top 25 levels, alternating sides while both have levels, as a signed
/// 32-bit integer.
pub fn checksum(book: &L2Book) -> i32 {
    let (bids, asks) = book.top(CHECKSUM_DEPTH);
    let mut text = String::with_capacity(CHECKSUM_DEPTH * 2 * 24);
    for i in 0..bids.len().max(asks.len()) {
        for level in [bids.get(i), asks.get(i)].into_iter().flatten() {
            if !text.is_empty() {
                text.push(':');
            }
            let _ = write!(text, "{}:{}", level.price, level.qty);
        }
    }
    crc32fast::hash(text.as_bytes()) as i32
}

impl OkxBook {
    pub fn is_synced(&self) -> bool {
        self.synced
    }

    /// The sequence to publish with the book: `seqId` when the venue sends
    /// it, else the exchange timestamp (µs) of the last applied message.
    pub fn sequence(&self) -> u64 {
        self.last_seq.map_or(self.last_ts, |s| s) as u64
    }

    fn invalidate(&mut self, reason: &'static str, detail: String) -> BookOutcome {
        self.book.clear();
        self.synced = false;
        self.last_seq = None;
        BookOutcome::Gap { reason, detail }
    }

    pub fn on_message(&mut self, message: &BookMessage) -> BookOutcome {
        if message.snapshot {
            self.book.clear();
            self.synced = true;
        } else if !self.synced {
            // Updates before the snapshot that a resubscription brings.
            return BookOutcome::Stale;
        } else if let (Some(prev), Some(last)) = (message.prev_seq_id, self.last_seq)
            && prev != last
        {
            return self.invalidate("sequence_gap", format!("prevSeqId {prev} after seqId {last}"));
        }
        self.book.apply(&message.bids, &message.asks);
        if self.book.is_crossed() {
            return self.invalidate(
                "crossed",
                format!("{:?} over {:?}", self.book.best_bid(), self.book.best_ask()),
            );
        }
        if let Some(expected) = message.checksum {
            let actual = checksum(&self.book);
            if actual != expected {
                return self.invalidate("checksum", format!("venue {expected}, book {actual}"));
            }
        }
        self.last_seq = message.seq_id.or(self.last_seq);
        self.last_ts = message.ts_exchange_us;
        BookOutcome::Applied
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use moat_common_types::model::Level;
    use moat_common_types::{Decimal, Instrument, Market};

    fn level(p: &str, q: &str) -> Level {
        Level {
            price: p.parse::<Decimal>().unwrap(),
            qty: q.parse::<Decimal>().unwrap(),
        }
    }

    fn message(snapshot: bool, bids: Vec<Level>, asks: Vec<Level>, checksum: Option<i32>) -> BookMessage {
        BookMessage {
            instrument: Instrument::new("okx", Market::Spot, "BTC-USDT", "BTC-USDT"),
            snapshot,
            bids,
            asks,
            checksum,
            seq_id: None,
            prev_seq_id: None,
            ts_exchange_us: 1,
        }
    }

    #[test]
    fn checksum_alternates_sides_and_keeps_the_venue_spelling() {
        let mut book = L2Book::default();
        book.apply(
            &[level("3366.1", "7"), level("3366", "6")],
            &[level("3366.8", "9"), level("3368", "8"), level("3372", "8")],
        );
        // The string OKX's documentation builds for this book.
        let expected = crc32fast::hash(b"3366.1:7:3366.8:9:3366:6:3368:8:3372:8") as i32;
        assert_eq!(checksum(&book), expected);
    }

    #[test]
    fn a_wrong_checksum_invalidates_until_the_next_snapshot() {
        let mut sync = OkxBook::default();
        let bids = vec![level("100", "1")];
        let asks = vec![level("101", "2")];
        let mut book = L2Book::default();
        book.apply(&bids, &asks);
        let good = checksum(&book);
        assert_eq!(
            sync.on_message(&message(true, bids.clone(), asks.clone(), Some(good))),
            BookOutcome::Applied
        );
        let outcome = sync.on_message(&message(false, vec![level("100", "3")], vec![], Some(good)));
        assert!(
            matches!(outcome, BookOutcome::Gap { reason: "checksum", .. }),
            "{outcome:?}"
        );
        assert!(!sync.is_synced() && sync.book.bids.is_empty());
        assert_eq!(
            sync.on_message(&message(false, bids.clone(), vec![], None)),
            BookOutcome::Stale
        );
        assert_eq!(
            sync.on_message(&message(true, bids, asks, Some(good))),
            BookOutcome::Applied
        );
    }

    #[test]
    fn sequence_gaps_and_crossed_books_invalidate() {
        let mut sync = OkxBook::default();
        let mut snapshot = message(true, vec![level("100", "1")], vec![level("101", "1")], None);
        snapshot.seq_id = Some(10);
        snapshot.prev_seq_id = Some(-1);
        assert_eq!(sync.on_message(&snapshot), BookOutcome::Applied);
        let mut next = message(false, vec![level("99", "1")], vec![], None);
        next.seq_id = Some(12);
        next.prev_seq_id = Some(10);
        assert_eq!(sync.on_message(&next), BookOutcome::Applied);
        let mut gap = next.clone();
        gap.seq_id = Some(20);
        gap.prev_seq_id = Some(15);
        assert!(matches!(
            sync.on_message(&gap),
            BookOutcome::Gap {
                reason: "sequence_gap",
                ..
            }
        ));
        assert_eq!(sync.on_message(&snapshot), BookOutcome::Applied);
        let crossed = message(false, vec![level("102", "1")], vec![], None);
        assert!(matches!(
            sync.on_message(&crossed),
            BookOutcome::Gap { reason: "crossed", .. }
        ));
    }
}
