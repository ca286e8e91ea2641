//! What the registry knows of each venue ([`Spec`]) and the `venues!`
//! macro that lists them, one line per venue folder, in `venues/mod.rs`.

use moat_localvenue::replay::Recording;

use super::Kind;
use super::driver::Connector;
use super::limits::VenueLimits;
use super::{Connection, Instruments};
use crate::config::VenueConfig;

/// What the collector knows of a venue protocol besides its frames.
pub struct Spec {
    /// The exchange name events carry unless configured otherwise
    /// (`binance` for both Binance APIs).
    pub exchange: &'static str,
    /// The public endpoints: WebSocket and REST base URLs.
    pub ws_url: &'static str,
    pub rest_url: &'static str,
    /// The WebSocket path on a local replay server (`/ws/v5/public`).
    pub replay_path: &'static str,
    pub limits: VenueLimits,
    /// The configured ids split by the connection each needs (Bybit's
    /// spot and linear markets are served on separate endpoints); most
    /// venues serve all on one ([`one_group`]).
    pub groups: fn(&[String]) -> Vec<Vec<String>>,
    /// The instruments of venue ids (`BTCUSDT`, `UNI-USD-SWAP`); ids that
    /// cannot be normalized are kept aside as skipped.
    pub instruments: fn(exchange: &str, ids: &[&str]) -> Instruments,
    /// The connector of a configured venue whose symbols fit one connection.
    pub connector: fn(&VenueConfig, Instruments, Connection) -> Box<dyn Connector>,
    /// The venue ids a recorded session subscribed to.
    pub recorded_symbols: fn(&Recording) -> Vec<String>,
}

/// Every id on the same kind of connection.
pub fn one_group(ids: &[String]) -> Vec<Vec<String>> {
    vec![ids.to_vec()]
}

/// Declares every venue module and generates [`Kind`] from one line per
/// module: `module { Variant => "name", SPEC; … }` (a module may speak
/// several protocols, as `binance` does).
macro_rules! venues {
    ($($module:ident { $($variant:ident => $name:literal, $spec:ident;)+ })+) => {
        $(pub mod $module;)+

        /// A venue protocol, as `venues[].kind` and `--exchange` name it.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        pub enum Kind {
            $($(#[serde(rename = $name)] $variant,)+)+
        }

        impl Kind {
            pub const ALL: &'static [Kind] = &[$($(Kind::$variant,)+)+];

            pub fn name(self) -> &'static str {
                match self {
                    $($(Kind::$variant => $name,)+)+
                }
            }

            pub fn spec(self) -> &'static registry::Spec {
                match self {
                    $($(Kind::$variant => &$module::$spec,)+)+
                }
            }
        }
    };
}

pub(crate) use venues;

impl Kind {
    pub fn limits(self) -> VenueLimits {
        self.spec().limits
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Kind {
    type Err = String;

    fn from_str(name: &str) -> Result<Kind, String> {
        Kind::ALL.iter().copied().find(|k| k.name() == name).ok_or_else(|| {
            let names: Vec<&str> = Kind::ALL.iter().map(|k| k.name()).collect();
            format!("unknown venue {name:?}; the venues are {}", names.join(", "))
        })
    }
}

impl clap::ValueEnum for Kind {
    fn value_variants<'a>() -> &'a [Kind] {
        Kind::ALL
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(clap::builder::PossibleValue::new(self.name()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_config_and_command_line() {
        for &kind in Kind::ALL {
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(json, format!("\"{}\"", kind.name()));
            assert_eq!(serde_json::from_str::<Kind>(&json).unwrap(), kind);
            assert_eq!(kind.name().parse::<Kind>().unwrap(), kind);
        }
        let unknown = "kraken-spot".parse::<Kind>().unwrap_err();
        assert!(
            unknown.contains("kraken-spot") && unknown.contains("binance-futures"),
            "{unknown}"
        );
    }
}
