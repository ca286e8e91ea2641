//! An L2 order book: price levels per side in exact decimals.

use std::collections::BTreeMap;

use moat_common_types::Decimal;
use moat_common_types::model::Level;

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
}
