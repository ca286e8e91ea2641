//! Venue connectors, one folder each with the same shape (`parse`, `book`).
//!
//! A venue turns raw frames into normalized events and keeps its order
//! books in sync by its own sequencing rules. Adding a venue means adding
//! a folder here.

pub mod binance;
pub mod okx;

use moat_common_types::Decimal;
use moat_common_types::model::parse_decimal;
use serde::Deserialize;

/// Why a frame was not published: a bounded set of metric labels.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {detail}")]
pub struct Reject {
    pub reason: &'static str,
    pub detail: String,
}

impl Reject {
    pub fn new(reason: &'static str, detail: impl Into<String>) -> Reject {
        Reject {
            reason,
            detail: detail.into(),
        }
    }
}

/// What a book sync did with an update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BookOutcome {
    /// Waiting for a snapshot; the update is kept for when it arrives.
    Buffered,
    /// Older than the book; ignored as the venue's rules say.
    Stale,
    Applied,
    /// A sequence gap or a crossed book: the book is invalid until the next
    /// snapshot, which the connector must request.
    Gap {
        reason: &'static str,
        detail: String,
    },
}

// Field parsing shared by the venues: every refusal is a `Reject` whose
// reason is a metric label.

pub(crate) fn json<'a, T: Deserialize<'a>>(text: &'a str) -> Result<T, Reject> {
    serde_json::from_str(text).map_err(|e| Reject::new("json", e.to_string()))
}

pub(crate) fn number(field: &'static str, value: &str) -> Result<Decimal, Reject> {
    parse_decimal(field, value).map_err(|e| Reject::new("number", e.message))
}

pub(crate) fn price(field: &'static str, value: &str) -> Result<Decimal, Reject> {
    let p = number(field, value)?;
    if p <= Decimal::ZERO {
        return Err(Reject::new("price", format!("{field} {value} is not positive")));
    }
    Ok(p)
}

pub(crate) fn qty(field: &'static str, value: &str) -> Result<Decimal, Reject> {
    let q = number(field, value)?;
    if q < Decimal::ZERO {
        return Err(Reject::new("qty", format!("{field} {value} is negative")));
    }
    Ok(q)
}
