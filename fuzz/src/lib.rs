//! What every frame-parser target checks besides "no panic": a rejected
//! frame names its reason, and every event a frame yields survives the
//! protobuf round trip the collector publishes it through, unchanged.

use moat_common_types::MarketEvent;
use moat_common_types::proto_conv::{decode, encode};

/// The instruments of the recordings, so seeded inputs reach the deep paths.
pub const BINANCE_SPOT: &[&str] = &["NKNUSDT", "BLZETH", "LRCBTC", "RUNEEUR", "BTCUSDT"];
pub const BINANCE_FUTURES: &[&str] = &["SUSHIUSDT", "AKROUSDT", "KEEPUSDT", "CTKUSDT", "BTCUSDT"];
pub const BINANCE_DELIVERY: &[&str] = &["LINKUSD_PERP", "BTCUSD_211231", "BCHUSD_210924", "ETHUSD_210924"];
pub const OKX: &[&str] = &["BTC-USD-220527", "UNI-USD-SWAP", "BTC-USDT", "BTC-USD-241013-70000-P"];
pub const BYBIT: &[&str] = &["linear:BTCUSDT", "linear:ETHUSDT", "linear:SOLUSDT", "linear:DOGEUSDT"];
pub const KRAKEN: &[&str] = &[
    "WAVES/EUR",
    "XMR/USD",
    "KSM/XBT",
    "GRT/ETH",
    "SC/EUR",
    "ETH/CHF",
    "OCEAN/XBT",
    "OMG/USD",
    "XBT/CHF",
    "ADA/XBT",
];
pub const GEMINI: &[&str] = &[
    "BTCGBP", "LINKETH", "FILUSD", "ZECLTC", "BATBTC", "ETHEUR", "LTCETH", "GRTUSD", "ANKRUSD", "ALCXUSD",
];
pub const BITSTAMP: &[&str] = &[
    "sgbeur", "ethusd", "xrpeur", "bateur", "usdteur", "usdtusd", "xlmgbp", "adaeur", "batbtc", "galaeur",
];
pub const KRAKEN_FUTURES: &[&str] = &[
    "FI_ETHUSD_211231",
    "PI_XRPUSD",
    "PI_LTCUSD",
    "FI_BCHUSD_210730",
    "PI_ETHUSD",
    "FI_XBTUSD_210924",
    "FI_ETHUSD_210730",
    "FI_BCHUSD_210924",
    "FI_XRPUSD_210924",
    "FI_XBTUSD_210730",
];
pub const DERIBIT: &[&str] = &[
    "BTC-24SEP21-8000-P",
    "BTC-30JUL21-24000-P",
    "ETH-30JUL21-2800-C",
    "BTC-31DEC21-34000-P",
    "BTC-24SEP21-34000-P",
    "BTC-24JUN22-15000-C",
    "BTC-31DEC21-300000-C",
    "ETH-27AUG21-4000-P",
    "BTC-25MAR22-30000-C",
    "ETH-23JUL21-2300-C",
    "BTC-PERPETUAL",
];
pub const BITMEX: &[&str] = &[
    "XRPU21",
    "UNIUSDT",
    "XBTUSD",
    "ADAUSDT",
    "SOLUSDT",
    "TRXU21",
    "EOSUSDT",
    "TRXUSDT",
    "BCHUSD",
    "MATICUSDT",
];
pub const COINBASE: &[&str] = &[
    "SKL-USD", "SKL-BTC", "BAND-GBP", "NMR-EUR", "BAND-BTC", "YFI-BTC", "DASH-BTC", "NU-GBP", "CRV-EUR", "SKL-GBP",
];

/// Frames arrive as WebSocket text, which is UTF-8 by the protocol.
pub fn text(data: &[u8]) -> Option<&str> {
    std::str::from_utf8(data).ok()
}

/// Panics (a finding) unless `event` decodes from its own encoding unchanged.
pub fn round_trips(event: MarketEvent) {
    let decoded = decode(&encode(&event)).unwrap_or_else(|e| panic!("{event:?} does not decode: {e}"));
    assert_eq!(decoded, event, "protobuf round trip changed the event");
}

/// Panics unless a reject names a reason.
pub fn names_reason(reason: &str) {
    assert!(
        !reason.is_empty() && reason.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
        "reject reason {reason:?} is not a metric label"
    );
}
