//! Coinbase book sync: a `snapshot`, then `l2update`s. The feed carries no
//! sequence numbers, so a crossed book is the sign of a lost update: the
//! book is invalid until the snapshot a resubscription brings
//! ([`crate::book::UnsequencedBook`]).

pub type CoinbaseBook = crate::book::UnsequencedBook;
