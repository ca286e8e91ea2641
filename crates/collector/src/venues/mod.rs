//! Venue connectors, one folder each with the same shape (`parse`, `book`).
//!
//! A venue turns raw frames into normalized events and keeps its order
//! books in sync by its own sequencing rules. Adding a venue means adding
//! a folder here.

pub mod binance;

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
