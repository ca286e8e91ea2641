//! Bearer-token authentication and the per-peer failure lockout.
//!
//! Tokens are kept only as SHA-256 digests ([`crate::tokens`]) and never
//! logged. The strategy id of a call comes from its token alone. The
//! table of tokens is replaced whole when the tokens file changes.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use moat_common_types::{Error, ErrorCode};

use crate::config::{AuthConfig, LimitsConfig};
pub use crate::tokens::{Changes, Policy, Strategy};
use crate::tokens::{Table, digest};

pub struct Auth {
    table: RwLock<Arc<Table>>,
    /// What the table is built from, for reloads.
    config: AuthConfig,
    limits: LimitsConfig,
    /// The digest of the tokens file's text the table was built from.
    file_digest: Mutex<Option<[u8; 32]>>,
    failures: Mutex<HashMap<IpAddr, VecDeque<Instant>>>,
    /// Failures seen here since the last [`Auth::take_failures`], per peer.
    unreported: Mutex<HashMap<IpAddr, u32>>,
    max_failures: usize,
    window: Duration,
    lockout: Duration,
}

/// The token of a request: `authorization: Bearer <t>` or `x-auth-token: <t>`.
pub fn token_from<'a>(get: impl Fn(&str) -> Option<&'a str>) -> Option<&'a str> {
    if let Some(value) = get("authorization") {
        let (scheme, token) = value.trim().split_once(' ')?;
        return scheme.eq_ignore_ascii_case("bearer").then_some(token.trim());
    }
    get("x-auth-token").map(str::trim)
}

/// How long a changed tokens file must stay the same before it is read.
const SETTLE: Duration = Duration::from_millis(50);

/// The text of `auth.tokens_file`, when one is set.
fn read_tokens_file(config: &AuthConfig) -> anyhow::Result<Option<String>> {
    if config.tokens_file.is_empty() {
        return Ok(None);
    }
    std::fs::read_to_string(&config.tokens_file)
        .map(Some)
        .map_err(|e| anyhow::anyhow!("reading auth.tokens_file {}: {e}", config.tokens_file))
}

/// A reload of the tokens file that changed something.
#[derive(Debug)]
pub struct Reloaded {
    pub changes: Changes,
    pub strategies: usize,
    pub tokens: usize,
}

impl Auth {
    pub fn new(config: &AuthConfig, limits: &LimitsConfig) -> anyhow::Result<Auth> {
        let text = read_tokens_file(config)?;
        let table = Table::build(config, limits, text.as_deref()).map_err(anyhow::Error::msg)?;
        Ok(Auth {
            table: RwLock::new(Arc::new(table)),
            config: config.clone(),
            limits: limits.clone(),
            file_digest: Mutex::new(text.as_deref().map(digest)),
            failures: Mutex::new(HashMap::new()),
            unreported: Mutex::new(HashMap::new()),
            max_failures: config.max_failures.get() as usize,
            window: config.failure_window,
            lockout: config.lockout,
        })
    }

    fn table(&self) -> Arc<Table> {
        self.table
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Reads `auth.tokens_file` again (blocking: run it off the async
    /// workers). When its text changed, the new
    /// table replaces the old one at once; a file that cannot be read or
    /// parsed leaves the old table in place and is an error.
    pub fn reload(&self) -> anyhow::Result<Option<Reloaded>> {
        let Some(text) = read_tokens_file(&self.config)? else {
            return Ok(None);
        };
        let mut last = self
            .file_digest
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = digest(&text);
        if *last == Some(now) {
            return Ok(None);
        }
        // A file rewritten in place may be read half-written: take it only
        // once it reads the same twice, 50 ms apart.
        std::thread::sleep(SETTLE);
        if read_tokens_file(&self.config)?.as_deref().map(digest) != Some(now) {
            return Ok(None);
        }
        let next = Table::build(&self.config, &self.limits, Some(&text)).map_err(anyhow::Error::msg)?;
        *last = Some(now);
        let reloaded = Reloaded {
            changes: self.table().changes(&next),
            strategies: next.strategies(),
            tokens: next.tokens(),
        };
        *self.table.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(next);
        Ok(Some(reloaded))
    }

    /// Strategies that have at least one token.
    pub fn strategies(&self) -> usize {
        self.table().strategies()
    }

    /// The failed authentications per peer since the last time, for the
    /// other replicas; the counts start again from zero.
    pub fn take_failures(&self) -> Vec<(IpAddr, u32)> {
        let mut unreported = self
            .unreported
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        unreported.drain().collect()
    }

    /// Counts `count` failures that `peer` had at another replica, as if
    /// they happened here now, so a lockout holds across replicas.
    pub fn record_remote_failures(&self, peer: IpAddr, count: u32) {
        let now = Instant::now();
        let mut failures = self.failures.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let list = failures.entry(peer).or_default();
        while list.front().is_some_and(|t| now.duration_since(*t) > self.window) {
            list.pop_front();
        }
        // More than the lockout threshold changes nothing, so keep the list short.
        for _ in 0..count.min(self.max_failures as u32) {
            list.push_back(now);
        }
    }

    /// Authenticates `token` from `peer`; failures are counted per peer.
    pub fn authenticate(&self, token: Option<&str>, peer: Option<IpAddr>) -> Result<Strategy, Error> {
        self.authenticate_at(token, peer, Instant::now())
    }

    /// [`Auth::authenticate`] at the instant `now`.
    fn authenticate_at(&self, token: Option<&str>, peer: Option<IpAddr>, now: Instant) -> Result<Strategy, Error> {
        if let Some(peer) = peer {
            let mut failures = self.failures.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(list) = failures.get_mut(&peer) {
                while list
                    .front()
                    .is_some_and(|t| now.duration_since(*t) > self.window.max(self.lockout))
                {
                    list.pop_front();
                }
                if let Some(&last) = list.back()
                    && list.len() >= self.max_failures
                {
                    let left = self.lockout.saturating_sub(now.duration_since(last));
                    if !left.is_zero() {
                        return Err(Error::new(
                            ErrorCode::ResourceExhausted,
                            format!(
                                "too many failed authentication attempts from {peer}; retry after {:.2}s",
                                left.as_secs_f64()
                            ),
                        ));
                    }
                }
            }
        }
        let found = token.and_then(|t| self.table().get(&digest(t)).cloned());
        match found {
            Some(strategy) => Ok(strategy),
            None => {
                if let Some(peer) = peer {
                    let mut failures = self.failures.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    let list = failures.entry(peer).or_default();
                    while list.front().is_some_and(|t| now.duration_since(*t) > self.window) {
                        list.pop_front();
                    }
                    list.push_back(now);
                    drop(failures);
                    let mut unreported = self
                        .unreported
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    *unreported.entry(peer).or_default() += 1;
                }
                let message = if token.is_none() {
                    "missing token: send `authorization: Bearer <token>` or `x-auth-token`"
                } else {
                    "invalid token"
                };
                Err(Error::new(ErrorCode::Unauthenticated, message))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TokenConfig;

    fn auth(max_failures: u32) -> Auth {
        Auth::new(
            &AuthConfig {
                tokens: vec![TokenConfig {
                    strategy_id: "alpha".into(),
                    token: "alpha-token-0123456789".into(),
                }],
                max_failures: max_failures.try_into().unwrap(),
                ..AuthConfig::default()
            },
            &LimitsConfig::default(),
        )
        .unwrap()
    }

    #[test]
    fn failures_that_aged_out_neither_lock_out_nor_panic() {
        let a = auth(1);
        let peer: IpAddr = "10.0.0.9".parse().unwrap();
        let start = Instant::now();
        assert!(a.authenticate_at(Some("bad"), Some(peer), start).is_err());
        // Within the lockout the peer is refused even with a good token.
        let locked = a.authenticate_at(Some("alpha-token-0123456789"), Some(peer), start);
        assert_eq!(locked.unwrap_err().code, ErrorCode::ResourceExhausted);
        // Once window and lockout have passed, the old failure is dropped
        // and the peer is let in.
        let later = start + a.window.max(a.lockout) + Duration::from_millis(1);
        assert_eq!(
            a.authenticate_at(Some("alpha-token-0123456789"), Some(peer), later)
                .unwrap()
                .id,
            "alpha"
        );
    }

    #[test]
    fn a_changed_tokens_file_replaces_the_table_and_a_broken_one_does_not() {
        let dir = std::env::temp_dir().join(format!("moat-auth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("tokens");
        std::fs::write(&file, "alpha alpha-token-0123456789\n").unwrap();
        let a = Auth::new(
            &AuthConfig {
                tokens_file: file.display().to_string(),
                ..AuthConfig::default()
            },
            &LimitsConfig::default(),
        )
        .unwrap();
        assert!(a.reload().unwrap().is_none(), "unchanged");
        std::fs::write(&file, "beta beta-token-0123456789\n").unwrap();
        let reloaded = a.reload().unwrap().unwrap();
        assert_eq!(
            (reloaded.changes.added, reloaded.changes.removed),
            (vec!["beta".to_owned()], vec!["alpha".to_owned()])
        );
        assert_eq!(a.authenticate(Some("beta-token-0123456789"), None).unwrap().id, "beta");
        assert!(a.authenticate(Some("alpha-token-0123456789"), None).is_err());
        // A broken file is an error and the last good table stays.
        std::fs::write(&file, "gamma\n").unwrap();
        let err = a.reload().unwrap_err().to_string();
        assert!(
            err.ends_with("line 1: expected `strategy_id token [key=value …]`"),
            "{err}"
        );
        assert_eq!(a.authenticate(Some("beta-token-0123456789"), None).unwrap().id, "beta");
        std::fs::remove_file(&file).unwrap();
        assert!(
            a.reload()
                .unwrap_err()
                .to_string()
                .starts_with("reading auth.tokens_file")
        );
        assert_eq!(a.authenticate(Some("beta-token-0123456789"), None).unwrap().id, "beta");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn tokens_come_from_either_header() {
        let bearer = |k: &str| (k == "authorization").then_some("Bearer abc");
        assert_eq!(token_from(bearer), Some("abc"));
        let lower = |k: &str| (k == "authorization").then_some("bearer abc");
        assert_eq!(token_from(lower), Some("abc"));
        let basic = |k: &str| (k == "authorization").then_some("Basic abc");
        assert_eq!(token_from(basic), None);
        let custom = |k: &str| (k == "x-auth-token").then_some(" abc ");
        assert_eq!(token_from(custom), Some("abc"));
    }

    #[test]
    fn the_token_names_the_strategy() {
        let a = auth(10);
        assert_eq!(
            a.authenticate(Some("alpha-token-0123456789"), None).unwrap().id,
            "alpha"
        );
        let err = a.authenticate(Some("nope"), None).unwrap_err();
        assert_eq!(
            (err.code, err.message.as_str()),
            (ErrorCode::Unauthenticated, "invalid token")
        );
        assert!(
            a.authenticate(None, None)
                .unwrap_err()
                .message
                .starts_with("missing token")
        );
    }

    #[test]
    fn repeated_failures_lock_the_peer_out() {
        let a = auth(3);
        let peer: IpAddr = "10.0.0.7".parse().unwrap();
        for _ in 0..3 {
            assert_eq!(
                a.authenticate(Some("bad"), Some(peer)).unwrap_err().code,
                ErrorCode::Unauthenticated
            );
        }
        let err = a.authenticate(Some("alpha-token-0123456789"), Some(peer)).unwrap_err();
        assert_eq!(err.code, ErrorCode::ResourceExhausted);
        assert!(err.message.contains("retry after"), "{}", err.message);
        // Another peer is unaffected.
        let other: IpAddr = "10.0.0.8".parse().unwrap();
        assert!(a.authenticate(Some("alpha-token-0123456789"), Some(other)).is_ok());
    }

    #[test]
    fn failures_at_another_replica_count_here() {
        let (here, there) = (auth(3), auth(3));
        let peer: IpAddr = "10.0.0.9".parse().unwrap();
        for _ in 0..2 {
            assert!(there.authenticate(Some("bad"), Some(peer)).is_err());
        }
        let reported = there.take_failures();
        assert_eq!(reported, [(peer, 2)]);
        assert!(there.take_failures().is_empty(), "reported once");
        for (peer, count) in reported {
            here.record_remote_failures(peer, count);
        }
        assert!(here.authenticate(Some("bad"), Some(peer)).is_err());
        let err = here
            .authenticate(Some("alpha-token-0123456789"), Some(peer))
            .unwrap_err();
        assert_eq!(
            err.code,
            ErrorCode::ResourceExhausted,
            "2 failures there and 1 here lock it out"
        );
        assert_eq!(
            here.take_failures(),
            [(peer, 1)],
            "only the local failure is reported on"
        );
    }
}
