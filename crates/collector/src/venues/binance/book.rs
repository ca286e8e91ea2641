//! Binance book sync: a REST snapshot plus the diff stream, by the
//! official rules.
//!
//! Spot: drop diffs with `u <= lastUpdateId`; the first applied diff has
//! `U <= lastUpdateId + 1 <= u`; after it each `U` is the previous `u + 1`.
//! Futures (USDⓈ-M and COIN-M): drop `u < lastUpdateId`; the first applied diff has
//! `U <= lastUpdateId <= u`; after it each `pu` is the previous `u`.
//! Any violation, or a crossed book, invalidates the book until a new
//! snapshot.

use std::collections::VecDeque;

use super::Flavor;
use super::parse::{DepthDiff, Snapshot};
use crate::book::L2Book;
use crate::venues::BookOutcome;

/// Diffs kept while waiting for a snapshot; older ones are dropped (the
/// snapshot will be newer than them anyway).
const BUFFER: usize = 2_000;

#[derive(Debug, Clone)]
enum State {
    Waiting { buffer: VecDeque<DepthDiff> },
    Synced { last: u64, first_applied: bool },
}

#[derive(Debug, Clone)]
pub struct BookSync {
    flavor: Flavor,
    pub book: L2Book,
    state: State,
}

impl BookSync {
    pub fn new(flavor: Flavor) -> BookSync {
        BookSync {
            flavor,
            book: L2Book::default(),
            state: State::Waiting {
                buffer: VecDeque::new(),
            },
        }
    }

    pub fn is_synced(&self) -> bool {
        matches!(self.state, State::Synced { .. })
    }

    /// Last applied update id, once synced.
    pub fn sequence(&self) -> Option<u64> {
        match self.state {
            State::Synced { last, .. } => Some(last),
            State::Waiting { .. } => None,
        }
    }

    /// Installs a snapshot and replays the buffered diffs; returns what
    /// happened to each (a gap among them means another snapshot is needed).
    pub fn on_snapshot(&mut self, snapshot: &Snapshot) -> Vec<(DepthDiff, BookOutcome)> {
        let mut outcomes = Vec::new();
        for diff in self.install(snapshot) {
            let outcome = self.on_diff(&diff);
            let gap = matches!(outcome, BookOutcome::Gap { .. });
            outcomes.push((diff, outcome));
            if gap {
                break;
            }
        }
        outcomes
    }

    /// Installs a snapshot and hands back the diffs buffered while it was
    /// fetched, for the caller to apply with [`BookSync::on_diff`] one by
    /// one (publishing the book after each), stopping at a gap.
    pub fn install(&mut self, snapshot: &Snapshot) -> VecDeque<DepthDiff> {
        let buffered = match std::mem::replace(
            &mut self.state,
            State::Synced {
                last: snapshot.last_update_id,
                first_applied: false,
            },
        ) {
            State::Waiting { buffer } => buffer,
            State::Synced { .. } => VecDeque::new(),
        };
        self.book.clear();
        self.book.apply(&snapshot.bids, &snapshot.asks);
        buffered
    }

    /// Applies one diff, or buffers it before the first snapshot.
    pub fn on_diff(&mut self, diff: &DepthDiff) -> BookOutcome {
        let (last, first_applied) = match &mut self.state {
            State::Waiting { buffer } => {
                if buffer.len() == BUFFER {
                    buffer.pop_front();
                }
                buffer.push_back(diff.clone());
                return BookOutcome::Buffered;
            }
            State::Synced { last, first_applied } => (*last, *first_applied),
        };
        let stale = match self.flavor {
            Flavor::Spot => diff.last <= last,
            Flavor::Futures | Flavor::Delivery => diff.last < last,
        };
        if stale {
            return BookOutcome::Stale;
        }
        let in_sequence = match (self.flavor, first_applied) {
            // U <= lastUpdateId + 1 <= u
            (Flavor::Spot, false) => diff.first <= last + 1 && last < diff.last,
            (Flavor::Spot, true) => diff.first == last + 1,
            (Flavor::Futures | Flavor::Delivery, false) => diff.first <= last && last <= diff.last,
            (Flavor::Futures | Flavor::Delivery, true) => diff.prev == Some(last),
        };
        if !in_sequence {
            let detail = match self.flavor {
                Flavor::Futures | Flavor::Delivery if first_applied => {
                    format!("pu {:?} does not follow u {last}", diff.prev)
                }
                _ => format!("diff U={} u={} does not follow update id {last}", diff.first, diff.last),
            };
            return self.invalidate("sequence_gap", detail);
        }
        self.book.apply(&diff.bids, &diff.asks);
        self.state = State::Synced {
            last: diff.last,
            first_applied: true,
        };
        if self.book.is_crossed() {
            let detail = format!(
                "best bid {:?} >= best ask {:?}",
                self.book.best_bid(),
                self.book.best_ask()
            );
            return self.invalidate("crossed_book", detail);
        }
        BookOutcome::Applied
    }

    fn invalidate(&mut self, reason: &'static str, detail: String) -> BookOutcome {
        self.book.clear();
        self.state = State::Waiting {
            buffer: VecDeque::new(),
        };
        BookOutcome::Gap { reason, detail }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use moat_common_types::model::Level;
    use moat_common_types::{Decimal, Instrument, Market};

    fn diff(first: u64, last: u64, prev: Option<u64>, bid: i64) -> DepthDiff {
        DepthDiff {
            instrument: Instrument::new("binance", Market::Spot, "X-Y", "XY"),
            first,
            last,
            prev,
            bids: vec![Level {
                price: Decimal::from(bid),
                qty: Decimal::ONE,
            }],
            asks: vec![],
            ts_exchange_us: 0,
        }
    }

    fn snapshot(id: u64) -> Snapshot {
        Snapshot {
            last_update_id: id,
            bids: vec![Level {
                price: Decimal::from(90),
                qty: Decimal::ONE,
            }],
            asks: vec![Level {
                price: Decimal::from(110),
                qty: Decimal::ONE,
            }],
            ts_exchange_us: None,
        }
    }

    #[test]
    fn spot_rules() {
        let mut sync = BookSync::new(Flavor::Spot);
        assert_eq!(sync.on_diff(&diff(95, 100, None, 91)), BookOutcome::Buffered);
        assert_eq!(sync.on_diff(&diff(101, 104, None, 92)), BookOutcome::Buffered);
        let outcomes = sync.on_snapshot(&snapshot(102));
        let kinds: Vec<_> = outcomes.iter().map(|(_, o)| o.clone()).collect();
        // u=100 <= 102 is dropped; 101..=104 straddles 103 and applies.
        assert_eq!(kinds, [BookOutcome::Stale, BookOutcome::Applied]);
        assert_eq!(sync.sequence(), Some(104));
        assert_eq!(sync.on_diff(&diff(105, 107, None, 93)), BookOutcome::Applied);
        assert_eq!(sync.book.best_bid().unwrap().0, Decimal::from(93));
        // 108 is missing.
        let gap = sync.on_diff(&diff(109, 110, None, 94));
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
        assert!(!sync.is_synced());
        assert!(sync.book.bids.is_empty(), "an invalid book is not kept");
    }

    #[test]
    fn futures_rules_follow_pu() {
        let mut sync = BookSync::new(Flavor::Futures);
        sync.on_snapshot(&snapshot(200));
        assert_eq!(sync.on_diff(&diff(150, 190, Some(140), 91)), BookOutcome::Stale);
        assert_eq!(sync.on_diff(&diff(195, 205, Some(190), 91)), BookOutcome::Applied);
        assert_eq!(sync.on_diff(&diff(206, 210, Some(205), 92)), BookOutcome::Applied);
        let gap = sync.on_diff(&diff(215, 220, Some(212), 93));
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
    }

    #[test]
    fn a_crossed_book_is_never_valid() {
        let mut sync = BookSync::new(Flavor::Spot);
        sync.on_snapshot(&snapshot(10));
        let gap = sync.on_diff(&diff(11, 11, None, 120));
        assert!(
            matches!(
                gap,
                BookOutcome::Gap {
                    reason: "crossed_book",
                    ..
                }
            ),
            "{gap:?}"
        );
    }
}
