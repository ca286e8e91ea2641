//! The live last-value cache fed by NATS: latest price per exchange and
//! symbol (BBO mid, else last trade) and order books.
//!
//! It subscribes with core NATS (not a JetStream consumer): the gateway
//! needs the newest values, not every event, and must not hold acks.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use futures::StreamExt;
use moat_common_types::model::{BookDelta, BookSnapshot, Level};
use moat_common_types::proto_conv::decode_message;
use moat_common_types::subject::live;
use moat_common_types::{Decimal, MarketEvent};

/// Latest price seen on one exchange for one symbol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quote {
    /// Shared, so a quote is copied out of the cache without copying text.
    pub exchange: Arc<str>,
    pub symbol: Arc<str>,
    pub price: Decimal,
    /// The venue's timestamp, Unix µs.
    pub ts_us: i64,
    /// `bbo` (mid) or `trade` (last price).
    pub from: &'static str,
}

#[derive(Debug, Clone, Default)]
pub struct Book {
    pub sequence: u64,
    pub bids: BTreeMap<Decimal, Decimal>,
    pub asks: BTreeMap<Decimal, Decimal>,
    /// The venue's timestamp of the last change, Unix µs.
    pub ts_us: i64,
    pub valid: bool,
}

impl Book {
    fn apply(side: &mut BTreeMap<Decimal, Decimal>, levels: &[Level]) {
        for l in levels {
            if l.qty.is_zero() {
                side.remove(&l.price);
            } else {
                side.insert(l.price, l.qty);
            }
        }
    }

    fn snapshot(s: &BookSnapshot) -> Book {
        let mut book = Book {
            sequence: s.sequence,
            ts_us: s.ts_exchange_us,
            valid: true,
            ..Book::default()
        };
        Book::apply(&mut book.bids, &s.bids);
        Book::apply(&mut book.asks, &s.asks);
        book.check_crossed();
        book
    }

    fn delta(&mut self, d: &BookDelta) {
        if d.sequence <= self.sequence {
            return;
        }
        Book::apply(&mut self.bids, &d.bids);
        Book::apply(&mut self.asks, &d.asks);
        self.sequence = d.sequence;
        self.ts_us = d.ts_exchange_us;
        self.check_crossed();
    }

    /// A crossed book is never served as valid.
    fn check_crossed(&mut self) {
        if let (Some((bid, _)), Some((ask, _))) = (self.bids.last_key_value(), self.asks.first_key_value())
            && bid >= ask
        {
            self.valid = false;
        }
    }
}

#[derive(Default)]
struct Inner {
    /// Per symbol, per exchange: a price asks for one symbol on every
    /// venue, so it reads one entry instead of scanning every quote.
    quotes: HashMap<String, BTreeMap<String, Quote>>,
    /// Per exchange, per symbol: an event finds its book by borrowed
    /// names, with no key built for the lookup.
    books: HashMap<String, HashMap<String, Book>>,
}

impl Inner {
    /// Sets the quote of `symbol` on `exchange` in place (no text copied
    /// once the pair is known), or adds it.
    fn set_quote(&mut self, exchange: &str, symbol: &str, price: Decimal, ts_us: i64, from: &'static str) {
        let venues = match self.quotes.get_mut(symbol) {
            Some(venues) => venues,
            None => self.quotes.entry(symbol.to_owned()).or_default(),
        };
        match venues.get_mut(exchange) {
            Some(quote) => {
                quote.price = price;
                quote.ts_us = ts_us;
                quote.from = from;
            }
            None => {
                venues.insert(
                    exchange.to_owned(),
                    Quote {
                        exchange: exchange.into(),
                        symbol: symbol.into(),
                        price,
                        ts_us,
                        from,
                    },
                );
            }
        }
    }

    fn book_mut(&mut self, exchange: &str, symbol: &str) -> Option<&mut Book> {
        self.books.get_mut(exchange)?.get_mut(symbol)
    }

    /// Replaces the book of `symbol` on `exchange`, allocating its names
    /// only the first time the pair is seen.
    fn set_book(&mut self, exchange: &str, symbol: &str, book: Book) {
        let symbols = match self.books.get_mut(exchange) {
            Some(symbols) => symbols,
            None => self.books.entry(exchange.to_owned()).or_default(),
        };
        match symbols.get_mut(symbol) {
            Some(slot) => *slot = book,
            None => {
                symbols.insert(symbol.to_owned(), book);
            }
        }
    }
}

/// Shared, cheaply cloned handle to the cache.
#[derive(Clone, Default)]
pub struct Cache {
    inner: Arc<RwLock<Inner>>,
}

impl Cache {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn apply(&self, event: &MarketEvent) {
        let i = event.instrument();
        // A snapshot's book is built before the lock is taken.
        let snapshot = match event {
            MarketEvent::BookSnapshot(s) => Some(Book::snapshot(s)),
            _ => None,
        };
        let mut inner = self.write();
        match event {
            MarketEvent::Bbo(b) => {
                let mid = (b.bid.price + b.ask.price) / Decimal::TWO;
                inner.set_quote(&i.exchange, &i.symbol, mid.normalize(), b.ts_exchange_us, "bbo");
            }
            MarketEvent::Trade(t) => {
                // A BBO mid is the better estimate; use the trade only when
                // it is newer than the last BBO.
                let newer = inner
                    .quotes
                    .get(i.symbol.as_str())
                    .and_then(|venues| venues.get(i.exchange.as_str()))
                    .is_none_or(|q| q.from == "trade" || t.ts_exchange_us > q.ts_us);
                if newer {
                    inner.set_quote(&i.exchange, &i.symbol, t.price, t.ts_exchange_us, "trade");
                }
            }
            MarketEvent::BookSnapshot(_) => {
                if let Some(book) = snapshot {
                    inner.set_book(&i.exchange, &i.symbol, book);
                }
            }
            MarketEvent::BookDelta(d) => {
                if let Some(book) = inner.book_mut(&i.exchange, &i.symbol) {
                    book.delta(d);
                }
            }
            MarketEvent::Gap(g) if g.invalidates_book() => {
                if let Some(book) = inner.book_mut(&i.exchange, &i.symbol) {
                    book.valid = false;
                }
            }
            _ => {}
        }
    }

    /// Every venue's quote of each of `symbols`, by exchange then symbol:
    /// copies that share their text with the cache, so the read lock is
    /// held only while they are gathered.
    pub fn quotes(&self, symbols: &[String]) -> Vec<Quote> {
        let inner = self.read();
        let mut quotes: Vec<Quote> = symbols
            .iter()
            .filter_map(|symbol| inner.quotes.get(symbol))
            .flat_map(|venues| venues.values().cloned())
            .collect();
        drop(inner);
        if symbols.len() > 1 {
            quotes.sort_by(|a, b| (&a.exchange, &a.symbol).cmp(&(&b.exchange, &b.symbol)));
        }
        quotes
    }

    /// What `f` makes of the book of `symbol` on `exchange`, read in place
    /// (a deep book is not copied to answer for its top levels).
    pub fn with_book<T>(&self, exchange: &str, symbol: &str, f: impl FnOnce(&Book) -> T) -> Option<T> {
        self.read().books.get(exchange)?.get(symbol).map(f)
    }

    /// Per exchange with books, how many of them are invalid now (a gap
    /// broke them, or they crossed) and wait for the next snapshot.
    pub fn invalid_books(&self) -> Vec<(String, usize)> {
        let mut counts: Vec<(String, usize)> = self
            .read()
            .books
            .iter()
            .filter(|(_, symbols)| !symbols.is_empty())
            .map(|(exchange, symbols)| (exchange.clone(), symbols.values().filter(|b| !b.valid).count()))
            .collect();
        counts.sort();
        counts
    }

    /// Number of (exchange, symbol) pairs with a price.
    pub fn len(&self) -> usize {
        self.read().quotes.values().map(BTreeMap::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Feeds the cache from the live lane (`live.md.…`, each event the moment
/// the collector has it) until the subscription ends.
///
/// `age` observes, for every event, how long ago the collector received the
/// frame it came from (both clocks are the host's in one deployment; NTP
/// skew between hosts shows here too).
pub async fn feed(
    client: async_nats::Client,
    cache: Cache,
    age: prometheus::Histogram,
) -> Result<(), async_nats::SubscribeError> {
    let mut subs = futures::stream::select_all([
        client.subscribe(live("md.bbo.>")).await?,
        client.subscribe(live("md.trade.>")).await?,
        client.subscribe(live("md.book.>")).await?,
        client.subscribe(live("md.gap.>")).await?,
    ]);
    while let Some(message) = subs.next().await {
        match decode_message(message.headers.as_ref(), &message.payload) {
            Ok(events) => {
                for event in &events {
                    cache.apply(event);
                }
                let now = moat_common_types::now_us();
                for event in &events {
                    age.observe((now - event.ts_recv_us()).max(0) as f64 / 1e6);
                }
            }
            Err(error) => tracing::debug!(subject = %message.subject, %error, "undecodable market event ignored"),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use moat_common_types::model::{BookSnapshot, Gap, Instrument, Level};
    use moat_common_types::{Market, MarketEvent};

    use super::*;

    fn instrument() -> Instrument {
        Instrument::new("binance", Market::Spot, "BTC-USDT", "BTCUSDT")
    }

    fn gap(reason: &str) -> MarketEvent {
        MarketEvent::Gap(Gap {
            instrument: instrument(),
            reason: reason.into(),
            last_sequence: 7,
            ts_recv_us: 1,
        })
    }

    #[test]
    fn a_book_gap_invalidates_the_book_and_missed_trades_do_not() {
        let cache = Cache::default();
        let level = |p: i64| Level {
            price: Decimal::new(p, 0),
            qty: Decimal::ONE,
        };
        cache.apply(&MarketEvent::BookSnapshot(BookSnapshot {
            instrument: instrument(),
            sequence: 7,
            bids: vec![level(99)],
            asks: vec![level(101)],
            ts_exchange_us: 1,
            ts_recv_us: 1,
        }));
        assert!(cache.with_book("binance", "BTC-USDT", |b| b.valid).unwrap());
        cache.apply(&gap(Gap::TRADES));
        assert!(
            cache.with_book("binance", "BTC-USDT", |b| b.valid).unwrap(),
            "missed trades leave the book valid"
        );
        cache.apply(&gap("sequence"));
        assert!(!cache.with_book("binance", "BTC-USDT", |b| b.valid).unwrap());
        assert_eq!(cache.invalid_books(), vec![("binance".to_owned(), 1)]);
    }
}
