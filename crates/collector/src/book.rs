//! An L2 order book: price levels per side in exact decimals.

use std::collections::BTreeMap;

use moat_common_types::Decimal;
use moat_common_types::model::Level;

use crate::venues::BookOutcome;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct L2Book {
    pub bids: BTreeMap<Decimal, Decimal>,
    pub asks: BTreeMap<Decimal, Decimal>,
}

impl L2Book {
    pub fn clear(&mut self) {
        self.bids.clear();
        self.asks.clear();
    }

    /// Applies levels; a zero quantity removes the level.
    pub fn apply(&mut self, bids: &[Level], asks: &[Level]) {
        for (side, levels) in [(&mut self.bids, bids), (&mut self.asks, asks)] {
            for l in levels {
                if l.qty.is_zero() {
                    side.remove(&l.price);
                } else {
                    side.insert(l.price, l.qty);
                }
            }
        }
    }

    pub fn best_bid(&self) -> Option<(Decimal, Decimal)> {
        self.bids.last_key_value().map(|(p, q)| (*p, *q))
    }

    pub fn best_ask(&self) -> Option<(Decimal, Decimal)> {
        self.asks.first_key_value().map(|(p, q)| (*p, *q))
    }

    /// Best bid at or above best ask: the book is wrong and must not be served.
    pub fn is_crossed(&self) -> bool {
        matches!((self.best_bid(), self.best_ask()), (Some((b, _)), Some((a, _))) if b >= a)
    }

    /// Keeps the best `depth` levels per side: venues that send a book of
    /// a fixed depth do not delete the levels that fall out of it.
    pub fn truncate(&mut self, depth: usize) {
        while self.bids.len() > depth {
            self.bids.pop_first();
        }
        while self.asks.len() > depth {
            self.asks.pop_last();
        }
    }

    /// Top `depth` levels per side, best first.
    pub fn top(&self, depth: usize) -> (Vec<Level>, Vec<Level>) {
        let level = |(p, q): (&Decimal, &Decimal)| Level { price: *p, qty: *q };
        (
            self.bids.iter().rev().take(depth).map(level).collect(),
            self.asks.iter().take(depth).map(level).collect(),
        )
    }
}

/// A venue's book of one instrument as the periodic whole-book snapshots
/// see it: the book and its sequence while it is valid.
pub trait SyncedBook {
    fn synced(&self) -> Option<(&L2Book, u64)>;
}

/// The valid books of a connection, by venue id (`Venue::books`).
pub fn synced_books<B: SyncedBook>(books: &std::collections::HashMap<String, B>) -> Vec<(&str, &L2Book, u64)> {
    books
        .iter()
        .filter_map(|(id, sync)| sync.synced().map(|(book, sequence)| (id.as_str(), book, sequence)))
        .collect()
}

impl SyncedBook for UnsequencedBook {
    fn synced(&self) -> Option<(&L2Book, u64)> {
        self.is_synced().then_some((&self.book, self.sequence()))
    }
}

impl SyncedBook for SequencedBook {
    fn synced(&self) -> Option<(&L2Book, u64)> {
        self.is_synced().then_some((&self.book, self.sequence()))
    }
}

/// The book of a venue that sends a snapshot, then updates, with no
/// sequence number (Coinbase's Exchange feed, Gemini): a crossed book is
/// the sign of a lost update, and the book is invalid until the snapshot
/// a resubscription brings.
#[derive(Debug, Clone, Default)]
pub struct UnsequencedBook {
    pub book: L2Book,
    synced: bool,
    /// Messages applied since the snapshot: the published sequence.
    applied: u64,
}

impl UnsequencedBook {
    pub fn is_synced(&self) -> bool {
        self.synced
    }

    pub fn sequence(&self) -> u64 {
        self.applied
    }

    /// Applies a snapshot (which replaces the book) or an update.
    pub fn on_update(&mut self, snapshot: bool, bids: &[Level], asks: &[Level]) -> BookOutcome {
        if snapshot {
            self.book.clear();
            self.synced = true;
        } else if !self.synced {
            return BookOutcome::Stale;
        }
        self.book.apply(bids, asks);
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

/// The book of a venue whose updates carry a sequence chained to the one
/// before: Bybit's update id and Kraken Futures' `seq` count up by one,
/// Deribit's `change_id` names the change it follows. A snapshot starts
/// over; an update before it, or not newer than the book, is stale; a break
/// in the chain or a crossed book invalidates the book until the snapshot a
/// resubscription brings.
#[derive(Debug, Clone, Default)]
pub struct SequencedBook {
    pub book: L2Book,
    /// The sequence of the last applied message; `None` until a snapshot.
    last: Option<u64>,
}

impl SequencedBook {
    pub fn is_synced(&self) -> bool {
        self.last.is_some()
    }

    /// The last applied sequence (0 before a snapshot).
    pub fn sequence(&self) -> u64 {
        self.last.unwrap_or_default()
    }

    /// Applies a snapshot or an update with sequence `seq`; `follows` is
    /// the sequence the update names as the one before it, or `None` when
    /// the venue's sequences count up by one.
    pub fn on_update(
        &mut self,
        snapshot: bool,
        seq: u64,
        follows: Option<u64>,
        bids: &[Level],
        asks: &[Level],
    ) -> BookOutcome {
        if !snapshot {
            let Some(last) = self.last else {
                return BookOutcome::Stale;
            };
            if seq <= last {
                return BookOutcome::Stale;
            }
            let expected = follows.unwrap_or(seq - 1);
            if expected != last {
                return self.invalidate(
                    "sequence_gap",
                    format!("update {seq} follows {expected}, the book is at {last}"),
                );
            }
        } else {
            self.book.clear();
        }
        self.book.apply(bids, asks);
        if self.book.is_crossed() {
            let detail = format!("{:?} over {:?}", self.book.best_bid(), self.book.best_ask());
            return self.invalidate("crossed", detail);
        }
        self.last = Some(seq);
        BookOutcome::Applied
    }

    fn invalidate(&mut self, reason: &'static str, detail: String) -> BookOutcome {
        self.book.clear();
        self.last = None;
        BookOutcome::Gap { reason, detail }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(p: i64, q: i64) -> Level {
        Level {
            price: Decimal::from(p),
            qty: Decimal::from(q),
        }
    }

    #[test]
    fn levels_update_remove_and_detect_crossing() {
        let mut book = L2Book::default();
        book.apply(&[l(99, 1), l(98, 2)], &[l(101, 1), l(102, 3)]);
        assert_eq!(book.best_bid(), Some((Decimal::from(99), Decimal::ONE)));
        assert_eq!(book.best_ask(), Some((Decimal::from(101), Decimal::ONE)));
        book.apply(&[l(99, 0)], &[]);
        assert_eq!(book.best_bid().unwrap().0, Decimal::from(98));
        assert!(!book.is_crossed());
        book.apply(&[l(103, 1)], &[]);
        assert!(book.is_crossed());
        let (bids, asks) = book.top(1);
        assert_eq!((bids.len(), asks.len()), (1, 1));
        book.truncate(1);
        assert_eq!(
            book.bids.keys().collect::<Vec<_>>(),
            [&Decimal::from(103)],
            "the best bid stays"
        );
        assert_eq!(
            book.asks.keys().collect::<Vec<_>>(),
            [&Decimal::from(101)],
            "the best ask stays"
        );
    }

    #[test]
    fn unsequenced_updates_wait_for_a_snapshot_and_a_crossed_book_resyncs() {
        let mut sync = UnsequencedBook::default();
        assert_eq!(sync.on_update(false, &[l(99, 1)], &[]), BookOutcome::Stale);
        assert_eq!(sync.on_update(true, &[l(99, 1)], &[l(101, 1)]), BookOutcome::Applied);
        assert_eq!(sync.on_update(false, &[l(100, 2)], &[]), BookOutcome::Applied);
        assert_eq!(sync.book.best_bid().unwrap().0, Decimal::from(100));
        assert_eq!(sync.sequence(), 2);
        let outcome = sync.on_update(false, &[l(102, 1)], &[]);
        assert!(
            matches!(outcome, BookOutcome::Gap { reason: "crossed", .. }),
            "{outcome:?}"
        );
        assert!(!sync.is_synced() && sync.book.bids.is_empty());
    }

    #[test]
    fn sequenced_updates_chain_and_a_break_invalidates() {
        let mut sync = SequencedBook::default();
        assert_eq!(sync.on_update(false, 9, None, &[l(99, 1)], &[]), BookOutcome::Stale);
        assert_eq!(
            sync.on_update(true, 10, None, &[l(100, 1)], &[l(101, 1)]),
            BookOutcome::Applied
        );
        assert_eq!(
            sync.on_update(false, 11, None, &[l(100, 0), l(99, 2)], &[]),
            BookOutcome::Applied
        );
        assert_eq!(sync.book.best_bid(), Some((Decimal::from(99), Decimal::from(2))));
        assert_eq!(sync.on_update(false, 11, None, &[], &[]), BookOutcome::Stale);
        let gap = sync.on_update(false, 13, None, &[], &[]);
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
        assert!(!sync.is_synced() && sync.book.bids.is_empty());
        // A venue that names the change before: ids need not be consecutive.
        assert_eq!(sync.on_update(true, 100, None, &[l(99, 1)], &[]), BookOutcome::Applied);
        assert_eq!(
            sync.on_update(false, 170, Some(100), &[l(98, 1)], &[]),
            BookOutcome::Applied
        );
        let gap = sync.on_update(false, 300, Some(200), &[], &[]);
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
        assert_eq!(
            sync.on_update(true, 1, None, &[l(100, 1)], &[l(101, 1)]),
            BookOutcome::Applied
        );
        let crossed = sync.on_update(false, 2, None, &[l(102, 1)], &[]);
        assert!(
            matches!(crossed, BookOutcome::Gap { reason: "crossed", .. }),
            "{crossed:?}"
        );
    }
}
