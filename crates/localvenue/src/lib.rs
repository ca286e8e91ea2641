//! Venues that run here: the stand-ins for exchanges that moat's tests,
//! benchmarks and network-less stacks connect to with the real connectors.
//!
//! - [`exchange`]: a generated exchange speaking Binance's spot protocol
//!   (trades, depth diffs with update ids, book tickers, REST snapshots),
//!   with controls to pause, speed up, cut connections and rate-limit.
//! - [`replay`]: a server that plays a recording back in the venue's own
//!   protocol, frames and REST answers.
//! - [`sim`]: the generated exchange on a loopback port, as the collector's
//!   `[sim]` venue.
//! - [`recording`]: the recording line format, shared with
//!   `shared/fixtures/exchanges` and `moat-collector record`.
//!
//! Nothing here talks to NATS or knows moat's events: the collector
//! depends on this crate, never the other way.

pub mod exchange;
pub mod recording;
pub mod replay;
pub mod sim;
