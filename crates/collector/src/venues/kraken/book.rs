//! Kraken book sync (WebSocket v1): a snapshot, then updates, each checked
//! against `c`, the CRC32 of the top 10 asks and bids after it. The book is
//! kept to the subscribed depth, since Kraken sends no delete for a level
//! that falls out of it. A checksum mismatch or a crossed book invalidates
//! the book until a new snapshot (the connector resubscribes).

use super::parse::BookMessage;
use crate::book::L2Book;
use crate::venues::BookOutcome;

/// Levels per side covered by the checksum.
const CHECKSUM_DEPTH: usize = 10;

#[derive(Debug, Clone, Default)]
pub struct KrakenBook {
    pub book: L2Book,
    synced: bool,
    /// Messages applied since the snapshot: v1 books carry no sequence.
    applied: u64,
}

/// Kraken's checksum of `book`: CRC32 (IEEE) of the top 10 asks, best
/// first, then the top 10 bids, each level written as its price and
/// volume with the decimal point and the leading zeros taken out.
pub fn checksum(book: &L2Book) -> u32 {
    let (bids, asks) = book.top(CHECKSUM_DEPTH);
    let mut text = String::with_capacity(CHECKSUM_DEPTH * 2 * 24);
    for level in asks.iter().chain(&bids) {
        for value in [level.price, level.qty] {
            let digits: String = value.to_string().chars().filter(|c| *c != '.').collect();
            text.push_str(digits.trim_start_matches('0'));
        }
    }
    crc32fast::hash(text.as_bytes())
}

impl KrakenBook {
    pub fn is_synced(&self) -> bool {
        self.synced
    }

    pub fn sequence(&self) -> u64 {
        self.applied
    }

    fn invalidate(&mut self, reason: &'static str, detail: String) -> BookOutcome {
        self.book.clear();
        self.synced = false;
        BookOutcome::Gap { reason, detail }
    }

    pub fn on_message(&mut self, message: &BookMessage) -> BookOutcome {
        if message.snapshot {
            self.book.clear();
            self.synced = true;
            self.applied = 0;
        } else if !self.synced {
            // Updates before the snapshot a resubscription brings.
            return BookOutcome::Stale;
        }
        self.book.apply(&message.bids, &message.asks);
        self.book.truncate(message.depth);
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
        self.applied += 1;
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

    fn message(snapshot: bool, bids: Vec<Level>, asks: Vec<Level>, checksum: Option<u32>) -> BookMessage {
        BookMessage {
            instrument: Instrument::new("kraken", Market::Spot, "BTC-USD", "XBT/USD"),
            snapshot,
            bids,
            asks,
            checksum,
            depth: 3,
            ts_exchange_us: 0,
        }
    }

    #[test]
    fn the_checksum_is_the_one_kraken_documents() {
        // The worked example of Kraken's WebSocket v1 book checksum guide:
        // its top ten asks and bids give 974947235.
        let asks = [
            ("0.05005", "0.00000500"),
            ("0.05010", "0.00000500"),
            ("0.05015", "0.00000500"),
            ("0.05020", "0.00000500"),
            ("0.05025", "0.00000500"),
            ("0.05030", "0.00000500"),
            ("0.05035", "0.00000500"),
            ("0.05040", "0.00000500"),
            ("0.05045", "0.00000500"),
            ("0.05050", "0.00000500"),
        ];
        let bids = [
            ("0.05000", "0.00000500"),
            ("0.04995", "0.00000500"),
            ("0.04990", "0.00000500"),
            ("0.04980", "0.00000500"),
            ("0.04975", "0.00000500"),
            ("0.04970", "0.00000500"),
            ("0.04965", "0.00000500"),
            ("0.04960", "0.00000500"),
            ("0.04955", "0.00000500"),
            ("0.04950", "0.00000500"),
        ];
        let mut book = L2Book::default();
        let levels = |side: &[(&str, &str)]| side.iter().map(|(p, q)| level(p, q)).collect::<Vec<_>>();
        book.apply(&levels(&bids), &levels(&asks));
        assert_eq!(checksum(&book), 974_947_235);
    }

    #[test]
    fn updates_are_checked_kept_to_depth_and_a_mismatch_invalidates() {
        let mut sync = KrakenBook::default();
        let update = message(false, vec![level("99", "1")], vec![], None);
        assert_eq!(sync.on_message(&update), BookOutcome::Stale);
        let snapshot = message(
            true,
            vec![level("100", "1"), level("99", "1"), level("98", "1")],
            vec![level("101", "1")],
            None,
        );
        assert_eq!(sync.on_message(&snapshot), BookOutcome::Applied);
        // A better bid pushes the worst out of the subscribed depth (3).
        let mut better = message(false, vec![level("100.5", "2")], vec![], None);
        let mut expected = sync.book.clone();
        expected.apply(&better.bids, &[]);
        expected.truncate(3);
        better.checksum = Some(checksum(&expected));
        assert_eq!(sync.on_message(&better), BookOutcome::Applied);
        assert_eq!(sync.book.bids.len(), 3);
        assert!(!sync.book.bids.contains_key(&"98".parse::<Decimal>().unwrap()));
        let wrong = message(false, vec![level("97", "1")], vec![], Some(1));
        assert!(matches!(
            sync.on_message(&wrong),
            BookOutcome::Gap { reason: "checksum", .. }
        ));
        assert!(!sync.is_synced());
    }
}
