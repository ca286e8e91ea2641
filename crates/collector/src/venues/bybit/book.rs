//! Bybit book sync: a snapshot replaces the book (the venue sends one after
//! subscribing, and again after a restart on its side, `u` = 1); each delta
//! must carry the update id after the last one. A skipped id or a crossed
//! book invalidates the book until a new snapshot (the connector
//! resubscribes).

use super::parse::BookMessage;
use crate::book::L2Book;
use crate::venues::BookOutcome;

#[derive(Debug, Clone, Default)]
pub struct BybitBook {
    pub book: L2Book,
    /// The update id of the last applied message; `None` until a snapshot.
    last: Option<u64>,
}

impl BybitBook {
    pub fn is_synced(&self) -> bool {
        self.last.is_some()
    }

    pub fn sequence(&self) -> u64 {
        self.last.unwrap_or_default()
    }

    fn invalidate(&mut self, reason: &'static str, detail: String) -> BookOutcome {
        self.book.clear();
        self.last = None;
        BookOutcome::Gap { reason, detail }
    }

    pub fn on_message(&mut self, message: &BookMessage) -> BookOutcome {
        if message.snapshot {
            self.book.clear();
        } else {
            match self.last {
                // Deltas before the snapshot a resubscription brings.
                None => return BookOutcome::Stale,
                Some(last) if message.update_id <= last => return BookOutcome::Stale,
                Some(last) if message.update_id != last + 1 => {
                    return self.invalidate("sequence_gap", format!("update {} after {last}", message.update_id));
                }
                Some(_) => {}
            }
        }
        self.book.apply(&message.bids, &message.asks);
        if self.book.is_crossed() {
            return self.invalidate(
                "crossed",
                format!("{:?} over {:?}", self.book.best_bid(), self.book.best_ask()),
            );
        }
        self.last = Some(message.update_id);
        BookOutcome::Applied
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use moat_common_types::model::Level;
    use moat_common_types::{Decimal, Instrument, Market};

    fn message(snapshot: bool, update_id: u64, bids: &[(&str, &str)], asks: &[(&str, &str)]) -> BookMessage {
        let level = |(p, q): &(&str, &str)| Level {
            price: p.parse::<Decimal>().unwrap(),
            qty: q.parse::<Decimal>().unwrap(),
        };
        BookMessage {
            instrument: Instrument::new("bybit", Market::Perp, "BTC-USDT-PERP", "BTCUSDT"),
            snapshot,
            bids: bids.iter().map(level).collect(),
            asks: asks.iter().map(level).collect(),
            update_id,
            ts_exchange_us: 0,
        }
    }

    #[test]
    fn deltas_chain_by_update_id_and_a_snapshot_starts_over() {
        let mut book = BybitBook::default();
        assert_eq!(book.on_message(&message(false, 9, &[], &[])), BookOutcome::Stale);
        assert_eq!(
            book.on_message(&message(true, 10, &[("100", "1")], &[("101", "1")])),
            BookOutcome::Applied
        );
        assert_eq!(
            book.on_message(&message(false, 11, &[("100", "0"), ("99", "2")], &[])),
            BookOutcome::Applied
        );
        assert_eq!(book.book.best_bid().map(|(p, _)| p.to_string()), Some("99".into()));
        assert_eq!(book.on_message(&message(false, 11, &[], &[])), BookOutcome::Stale);
        let gap = book.on_message(&message(false, 13, &[], &[]));
        assert!(
            matches!(
                gap,
                BookOutcome::Gap {
                    reason: "sequence_gap",
                    ..
                }
            ),
            "{gap:?}"
        );
        assert!(!book.is_synced());
        // A restart on Bybit's side sends a snapshot with u = 1.
        assert_eq!(
            book.on_message(&message(true, 1, &[("100", "1")], &[("101", "1")])),
            BookOutcome::Applied
        );
        let crossed = book.on_message(&message(false, 2, &[("102", "1")], &[]));
        assert!(
            matches!(crossed, BookOutcome::Gap { reason: "crossed", .. }),
            "{crossed:?}"
        );
    }
}
