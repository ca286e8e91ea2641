//! The NATS subject scheme `md.<kind>.<exchange>.<market>.<symbol>` and the
//! deterministic `Nats-Msg-Id` that lets JetStream drop republished events.

use std::fmt;

use crate::error::Error;
use crate::model::{Kind, Market, MarketEvent};

/// Stream that holds every market-data subject.
pub const STREAM: &str = "MARKET_DATA";
/// Subjects captured by [`STREAM`].
pub const STREAM_SUBJECTS: &str = "md.>";
/// Prefix of the live lane. Every event is also published alone, on core
/// NATS and unacknowledged, as `live.<its subject>` the moment the
/// collector has it; [`STREAM`] does not capture it. Live consumers (the
/// gateway's cache, `StreamTrades`, `moat tail`) read it, so they never
/// wait for JetStream to store the batch an event travels in.
pub const LIVE_PREFIX: &str = "live";

/// The live-lane subject of a market-data subject (or filter):
/// `md.trade.>` → `live.md.trade.>`.
pub fn live(subject: &str) -> String {
    format!("{LIVE_PREFIX}.{subject}")
}

/// Prefix of dead-letter subjects: `md.dlq.<reason>`. Kept out of
/// [`STREAM`]'s normal consumers by their `md.<kind>` filters.
pub const DLQ_PREFIX: &str = "md.dlq";

/// A parsed market-data subject.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Subject {
    pub kind: Kind,
    pub exchange: String,
    pub market: Market,
    pub symbol: String,
}

impl Subject {
    pub fn new(kind: Kind, exchange: &str, market: Market, symbol: &str) -> Result<Subject, Error> {
        check_token("exchange", exchange)?;
        check_token("symbol", symbol)?;
        Ok(Subject {
            kind,
            exchange: exchange.to_owned(),
            market,
            symbol: symbol.to_owned(),
        })
    }

    pub fn for_event(event: &MarketEvent) -> Result<Subject, Error> {
        let instrument = event.instrument();
        Subject::new(
            event.kind(),
            &instrument.exchange,
            instrument.market,
            &instrument.symbol,
        )
    }

    pub fn parse(subject: &str) -> Result<Subject, Error> {
        let bad = |why: &str| {
            Error::invalid_argument(format!(
                "subject '{subject}' {why}: expected md.<kind>.<exchange>.<market>.<symbol>"
            ))
        };
        let mut parts = subject.split('.');
        if parts.next() != Some("md") {
            return Err(bad("does not start with 'md'"));
        }
        let (Some(kind), Some(exchange), Some(market), Some(symbol), None) =
            (parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad("does not have five tokens"));
        };
        let kind = kind.parse().map_err(|_| bad(&format!("has unknown kind '{kind}'")))?;
        let market = market
            .parse()
            .map_err(|_| bad(&format!("has unknown market '{market}'")))?;
        Subject::new(kind, exchange, market, symbol)
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "md.{}.{}.{}.{}", self.kind, self.exchange, self.market, self.symbol)
    }
}

/// A subject token must not contain the separator, wildcards or whitespace.
pub fn check_token(what: &str, token: &str) -> Result<(), Error> {
    let ok = !token.is_empty()
        && token.len() <= 64
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid_argument(format!(
            "{what} '{token}' cannot be a subject token: use 1-64 letters, digits, '-' or '_'"
        )))
    }
}

/// Deterministic `Nats-Msg-Id` of an event:
/// `<exchange>:<market>:<symbol>:<kind>:<event key>`. The same event published
/// twice (a reconnect, a replay) gets the same id and JetStream keeps one copy
/// within the stream's duplicate window.
pub fn msg_id(event: &MarketEvent) -> String {
    let i = event.instrument();
    format!(
        "{}:{}:{}:{}:{}",
        i.exchange,
        i.market,
        i.symbol,
        event.kind(),
        event.event_key()
    )
}

/// Deterministic `Nats-Msg-Id` of a message carrying `count` events of one
/// subject, from the event whose id ([`msg_id`]) is `first_id` to the one
/// whose id is `last_id`, in order: the event's own id for a single event,
/// so collector replicas publishing one event per message still
/// deduplicate each other, and `<first id>..<last event's key>` for a
/// batch. A batch sent again after a failed ack keeps its events, so its
/// id.
pub fn batch_msg_id(first_id: &str, last_id: &str, count: usize) -> String {
    if count <= 1 {
        return first_id.to_owned();
    }
    // The key is everything after the four subject tokens, which hold no ':'.
    let last_key = last_id.splitn(5, ':').nth(4).unwrap_or(last_id);
    format!("{first_id}..{last_key}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Decimal, Instrument, Side, Trade};

    #[test]
    fn subjects_round_trip() {
        for kind in Kind::ALL {
            for market in Market::ALL {
                let s = Subject::new(kind, "binance", market, "BTC-USDT").unwrap();
                let text = s.to_string();
                assert_eq!(Subject::parse(&text).unwrap(), s, "{text}");
            }
        }
        assert_eq!(
            Subject::new(Kind::Trade, "binance", Market::Spot, "BTC-USDT")
                .unwrap()
                .to_string(),
            "md.trade.binance.spot.BTC-USDT"
        );
    }

    #[test]
    fn bad_subjects_say_why() {
        let cases = [
            ("nd.trade.binance.spot.BTC-USDT", "does not start with 'md'"),
            ("md.trade.binance.spot", "five tokens"),
            ("md.trade.binance.spot.BTC.USDT", "five tokens"),
            ("md.quote.binance.spot.BTC-USDT", "unknown kind 'quote'"),
            ("md.trade.binance.swap.BTC-USDT", "unknown market 'swap'"),
            ("md.trade.binance.spot.*", "cannot be a subject token"),
        ];
        for (subject, why) in cases {
            let err = Subject::parse(subject).unwrap_err();
            assert!(err.message.contains(why), "{subject}: {}", err.message);
        }
        assert!(Subject::new(Kind::Trade, "bin ance", Market::Spot, "X-Y").is_err());
    }

    #[test]
    fn msg_id_is_deterministic_and_distinguishes_events() {
        let trade = |id: &str| {
            MarketEvent::Trade(Trade {
                instrument: Instrument::new("binance", Market::Spot, "BTC-USDT", "BTCUSDT"),
                trade_id: id.into(),
                price: Decimal::ONE,
                qty: Decimal::ONE,
                side: Side::Buy,
                ts_exchange_us: 1,
                ts_recv_us: 2,
            })
        };
        assert_eq!(msg_id(&trade("7")), "binance:spot:BTC-USDT:trade:7");
        let mut later = trade("7");
        if let MarketEvent::Trade(t) = &mut later {
            t.ts_recv_us = 99;
        }
        assert_eq!(
            msg_id(&trade("7")),
            msg_id(&later),
            "receive time must not change the id"
        );
        assert_ne!(msg_id(&trade("7")), msg_id(&trade("8")));
        let id = msg_id(&trade("7"));
        assert_eq!(batch_msg_id(&id, &id, 1), id);
        assert_eq!(
            batch_msg_id(&id, &msg_id(&trade("9")), 3),
            "binance:spot:BTC-USDT:trade:7..9"
        );
        // A key may itself hold ':' (a venue's id); it is kept whole.
        assert_eq!(
            batch_msg_id(&id, &msg_id(&trade("a:b")), 2),
            "binance:spot:BTC-USDT:trade:7..a:b"
        );
        assert_ne!(
            batch_msg_id(&id, &msg_id(&trade("8")), 2),
            batch_msg_id(&id, &msg_id(&trade("9")), 3)
        );
        assert_eq!(live("md.trade.>"), "live.md.trade.>");
    }
}
