//! Coinbase book sync: a `snapshot`, then `l2update`s. The feed carries no
//! sequence numbers, so a crossed book is the sign of a lost update: the
//! book is invalid until the snapshot a resubscription brings.

use super::parse::BookMessage;
use crate::book::L2Book;
use crate::venues::BookOutcome;

#[derive(Debug, Clone, Default)]
pub struct CoinbaseBook {
    pub book: L2Book,
    synced: bool,
    /// Messages applied since the snapshot: the published sequence.
    applied: u64,
}

impl CoinbaseBook {
    pub fn is_synced(&self) -> bool {
        self.synced
    }

    pub fn sequence(&self) -> u64 {
        self.applied
    }

    pub fn on_message(&mut self, message: &BookMessage) -> BookOutcome {
        if message.snapshot {
            self.book.clear();
            self.synced = true;
        } else if !self.synced {
            return BookOutcome::Stale;
        }
        self.book.apply(&message.bids, &message.asks);
        if self.book.is_crossed() {
            let detail = format!("{:?} over {:?}", self.book.best_bid(), self.book.best_ask());
            self.book.clear();
            self.synced = false;
            return BookOutcome::Gap {
                reason: "crossed",
                detail,
            };
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

    fn message(snapshot: bool, bids: &[(i64, i64)], asks: &[(i64, i64)]) -> BookMessage {
        let levels = |l: &[(i64, i64)]| {
            l.iter()
                .map(|(p, q)| Level {
                    price: Decimal::from(*p),
                    qty: Decimal::from(*q),
                })
                .collect()
        };
        BookMessage {
            instrument: Instrument::new("coinbase", Market::Spot, "BTC-USD", "BTC-USD"),
            snapshot,
            bids: levels(bids),
            asks: levels(asks),
            ts_exchange_us: 0,
        }
    }

    #[test]
    fn updates_wait_for_a_snapshot_and_a_crossed_book_resyncs() {
        let mut sync = CoinbaseBook::default();
        assert_eq!(sync.on_message(&message(false, &[(99, 1)], &[])), BookOutcome::Stale);
        assert_eq!(
            sync.on_message(&message(true, &[(99, 1)], &[(101, 1)])),
            BookOutcome::Applied
        );
        assert_eq!(sync.on_message(&message(false, &[(100, 2)], &[])), BookOutcome::Applied);
        assert_eq!(sync.book.best_bid().unwrap().0, Decimal::from(100));
        let outcome = sync.on_message(&message(false, &[(102, 1)], &[]));
        assert!(
            matches!(outcome, BookOutcome::Gap { reason: "crossed", .. }),
            "{outcome:?}"
        );
        assert!(!sync.is_synced() && sync.book.bids.is_empty());
    }
}
