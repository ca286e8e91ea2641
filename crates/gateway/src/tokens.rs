//! The table of strategies: who each token names and what that strategy
//! may do, built from `auth.tokens`, `auth.policies` and `auth.tokens_file`
//! afresh at start and at every change of the file.
//!
//! Tokens are kept only as SHA-256 digests. No message built here quotes
//! a token: errors name the file, the line and the strategy instead.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use moat_common_types::{Error, ErrorCode};
use sha2::{Digest, Sha256};

use crate::config::{AuthConfig, LimitsConfig, PolicyConfig};
use crate::ratelimit::Limit;

/// Shortest token accepted, from config or file.
pub const MIN_TOKEN_LEN: usize = 16;

/// The authenticated caller.
#[derive(Debug, Clone, PartialEq)]
pub struct Strategy {
    pub id: String,
    pub policy: Arc<Policy>,
}

/// What one strategy may do, within the gateway-wide allowlists: `None`
/// leaves a part to the gateway's own settings.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Policy {
    pub chains: Option<BTreeSet<String>>,
    pub methods: Option<BTreeSet<String>>,
    /// The strategy's bucket over every call.
    pub limit: Option<Limit>,
    /// The strategy's bucket per chain over RPC calls.
    pub rpc_limit: Option<Limit>,
}

impl Policy {
    /// Refuses an RPC call to `chain` or `method` outside the policy.
    pub fn permits(&self, strategy: &str, chain: &str, method: &str) -> Result<(), Error> {
        let refuse = |what: &str, name: &str, allowed: &BTreeSet<String>| {
            let allowed = if allowed.is_empty() {
                "none".to_owned()
            } else {
                allowed.iter().cloned().collect::<Vec<_>>().join(", ")
            };
            Err(Error::new(
                ErrorCode::PermissionDenied,
                format!(
                    "strategy '{strategy}' may not use {what} '{}' (its policy allows: {allowed})",
                    name.chars().take(64).collect::<String>()
                ),
            ))
        };
        if let Some(chains) = &self.chains
            && !chains.contains(chain)
        {
            return refuse("chain", chain, chains);
        }
        if let Some(methods) = &self.methods
            && !methods.contains(method)
        {
            return refuse("method", method, methods);
        }
        Ok(())
    }

    /// The policy a [`PolicyConfig`] describes. A rate without a burst
    /// gets a burst of two seconds' calls, as the defaults do.
    pub fn from_config(config: &PolicyConfig, limits: &LimitsConfig) -> Result<Policy, PolicyError> {
        let limit = |rate: Option<f64>, burst: Option<f64>, rate_key, burst_key, default: Limit| {
            if let Some(rate) = rate
                && !(rate.is_finite() && rate > 0.0)
            {
                return Err(PolicyError {
                    key: rate_key,
                    value: rate,
                    expected: "a rate above 0",
                });
            }
            if let Some(burst) = burst
                && !(burst.is_finite() && burst >= 1.0)
            {
                return Err(PolicyError {
                    key: burst_key,
                    value: burst,
                    expected: "a burst of at least 1",
                });
            }
            Ok(match (rate, burst) {
                (None, None) => None,
                (Some(rate), None) => Some(Limit {
                    rate,
                    burst: (2.0 * rate).max(1.0),
                }),
                (None, Some(burst)) => Some(Limit {
                    rate: default.rate,
                    burst,
                }),
                (Some(rate), Some(burst)) => Some(Limit { rate, burst }),
            })
        };
        let set = |list: &Option<Vec<String>>| list.as_ref().map(|l| l.iter().cloned().collect::<BTreeSet<_>>());
        Ok(Policy {
            chains: set(&config.chains),
            methods: set(&config.methods),
            limit: limit(
                config.requests_per_second,
                config.burst,
                "requests_per_second",
                "burst",
                Limit::of(limits.requests_per_second, limits.burst),
            )?,
            rpc_limit: limit(
                config.rpc_requests_per_second,
                config.rpc_burst,
                "rpc_requests_per_second",
                "rpc_burst",
                Limit::of(limits.rpc_requests_per_second, limits.rpc_burst),
            )?,
        })
    }
}

/// A limit of a policy out of range.
#[derive(Debug, PartialEq)]
pub struct PolicyError {
    pub key: &'static str,
    pub value: f64,
    pub expected: &'static str,
}

impl std::fmt::Display for PolicyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} = {}: expected {}", self.key, self.value, self.expected)
    }
}

/// The SHA-256 digest under which a token is kept.
pub fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Every token the gateway accepts, by digest.
#[derive(Debug, Default)]
pub struct Table {
    by_digest: HashMap<[u8; 32], Strategy>,
}

/// What a reload changed, by strategy id (never by token).
#[derive(Debug, Default, PartialEq)]
pub struct Changes {
    /// Strategies that had no token before.
    pub added: Vec<String>,
    /// Strategies that have no token any more.
    pub removed: Vec<String>,
    /// Strategies whose tokens or policy changed.
    pub changed: Vec<String>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

/// One token as read, before the policies are settled.
struct Entry {
    digest: [u8; 32],
    strategy: String,
    /// Where it was read, for messages: `auth.tokens[2]` or `<file> line 7`.
    place: String,
}

impl Table {
    /// The table of `auth` and, when given, the text of its tokens file.
    pub fn build(auth: &AuthConfig, limits: &LimitsConfig, file: Option<&str>) -> Result<Table, String> {
        let mut entries = Vec::new();
        for (i, t) in auth.tokens.iter().enumerate() {
            entries.push(Entry {
                digest: digest(&t.token),
                strategy: t.strategy_id.clone(),
                place: format!("auth.tokens[{i}]"),
            });
        }
        let mut policies: BTreeMap<String, PolicyConfig> = auth.policies.clone();
        if let Some(text) = file {
            let name = &auth.tokens_file;
            for (n, line) in text.lines().enumerate() {
                let place = format!("{name} line {}", n + 1);
                let Some((strategy, token, policy)) = parse_line(line).map_err(|e| format!("{place}: {e}"))? else {
                    continue;
                };
                if token.len() < MIN_TOKEN_LEN {
                    return Err(format!(
                        "{place}: the token of strategy '{strategy}' is shorter than {MIN_TOKEN_LEN} characters"
                    ));
                }
                if let Some(policy) = policy {
                    // The file's settings override the config's, key by key.
                    let merged = policies.entry(strategy.to_owned()).or_default();
                    merged.override_with(policy);
                }
                entries.push(Entry {
                    digest: digest(token),
                    strategy: strategy.to_owned(),
                    place,
                });
            }
        }
        let mut resolved = BTreeMap::new();
        for (strategy, config) in &policies {
            let policy = Policy::from_config(config, limits).map_err(|e| format!("policy of '{strategy}': {e}"))?;
            resolved.insert(strategy.clone(), Arc::new(policy));
        }
        let open = Arc::new(Policy::default());
        let mut by_digest: HashMap<[u8; 32], (Strategy, String)> = HashMap::new();
        for entry in entries {
            let policy = resolved.get(&entry.strategy).cloned().unwrap_or_else(|| open.clone());
            if let Some((other, place)) = by_digest.get(&entry.digest)
                && other.id != entry.strategy
            {
                return Err(format!(
                    "{} gives strategy '{}' the same token as {place} gives '{}'",
                    entry.place, entry.strategy, other.id
                ));
            }
            by_digest.insert(
                entry.digest,
                (
                    Strategy {
                        id: entry.strategy,
                        policy,
                    },
                    entry.place,
                ),
            );
        }
        Ok(Table {
            by_digest: by_digest.into_iter().map(|(d, (s, _))| (d, s)).collect(),
        })
    }

    pub fn get(&self, digest: &[u8; 32]) -> Option<&Strategy> {
        self.by_digest.get(digest)
    }

    /// Tokens accepted.
    pub fn tokens(&self) -> usize {
        self.by_digest.len()
    }

    /// Strategies that have at least one token.
    pub fn strategies(&self) -> usize {
        self.by_strategy().len()
    }

    /// Per strategy: its token digests, sorted, and its policy.
    fn by_strategy(&self) -> BTreeMap<&str, (Vec<[u8; 32]>, &Policy)> {
        let mut out: BTreeMap<&str, (Vec<[u8; 32]>, &Policy)> = BTreeMap::new();
        for (digest, strategy) in &self.by_digest {
            out.entry(strategy.id.as_str())
                .or_insert_with(|| (Vec::new(), &strategy.policy))
                .0
                .push(*digest);
        }
        for (digests, _) in out.values_mut() {
            digests.sort_unstable();
        }
        out
    }

    /// What changes from `self` to `next`.
    pub fn changes(&self, next: &Table) -> Changes {
        let (before, after) = (self.by_strategy(), next.by_strategy());
        let mut changes = Changes::default();
        for (id, old) in &before {
            match after.get(id) {
                None => changes.removed.push((*id).to_owned()),
                Some(new) if new != old => changes.changed.push((*id).to_owned()),
                Some(_) => {}
            }
        }
        changes.added = after
            .keys()
            .filter(|id| !before.contains_key(*id))
            .map(|id| (*id).to_owned())
            .collect();
        changes
    }
}

/// A tokens-file line: strategy id, token, and its policy settings.
type Line<'a> = (&'a str, &'a str, Option<PolicyConfig>);

/// Keys a tokens-file line may set after `strategy_id token`.
const LINE_KEYS: &str = "chains, methods, requests_per_second, burst, rpc_requests_per_second, rpc_burst";

/// One line of a tokens file: `strategy_id token [key=value …]`, where
/// `#` starts a comment and lists are comma-separated. `None` for a line
/// without a token.
fn parse_line(line: &str) -> Result<Option<Line<'_>>, String> {
    let line = line.split('#').next().unwrap_or("").trim();
    let mut words = line.split_whitespace();
    let Some(strategy) = words.next() else {
        return Ok(None);
    };
    let Some(token) = words.next() else {
        return Err("expected `strategy_id token [key=value …]`".to_owned());
    };
    if token.contains('=') {
        // Most likely the token was left out and a setting took its place.
        return Err(format!(
            "expected `strategy_id token [key=value …]`: the second word of strategy '{strategy}' looks like a setting, not a token"
        ));
    }
    let mut policy: Option<PolicyConfig> = None;
    for word in words {
        let Some((key, value)) = word.split_once('=') else {
            return Err(format!(
                "'{}' after the token of '{strategy}' is not `key=value` (keys: {LINE_KEYS})",
                word.chars().take(32).collect::<String>()
            ));
        };
        let p = policy.get_or_insert_with(PolicyConfig::default);
        let list = || {
            value
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect::<Vec<_>>()
        };
        let number = || {
            value
                .parse::<f64>()
                .map_err(|_| format!("{key} = '{value}': expected a number"))
        };
        match key {
            "chains" => p.chains = Some(list()),
            "methods" => p.methods = Some(list()),
            "requests_per_second" => p.requests_per_second = Some(number()?),
            "burst" => p.burst = Some(number()?),
            "rpc_requests_per_second" => p.rpc_requests_per_second = Some(number()?),
            "rpc_burst" => p.rpc_burst = Some(number()?),
            other => {
                return Err(format!(
                    "unknown key '{}' (keys: {LINE_KEYS})",
                    other.chars().take(32).collect::<String>()
                ));
            }
        }
    }
    Ok(Some((strategy, token, policy)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TokenConfig;

    fn build(config: &AuthConfig, file: &str) -> Result<Table, String> {
        Table::build(config, &LimitsConfig::default(), Some(file))
    }

    fn with_file() -> AuthConfig {
        AuthConfig {
            tokens_file: "tokens".into(),
            ..AuthConfig::default()
        }
    }

    #[test]
    fn lines_carry_tokens_and_policies() {
        let table = build(
            &with_file(),
            "# comment\n\nalpha aaaaaaaaaaaaaaaaaaaa chains=ethereum,base methods=eth_call rpc_requests_per_second=5\n\
             beta bbbbbbbbbbbbbbbbbbbb   # trailing comment\n",
        )
        .unwrap();
        assert_eq!((table.tokens(), table.strategies()), (2, 2));
        let alpha = table.get(&digest("aaaaaaaaaaaaaaaaaaaa")).unwrap();
        assert_eq!(alpha.id, "alpha");
        assert_eq!(
            alpha.policy.rpc_limit,
            Some(Limit { rate: 5.0, burst: 10.0 }),
            "burst defaults to two seconds of the rate"
        );
        assert!(alpha.policy.permits("alpha", "base", "eth_call").is_ok());
        let err = alpha.policy.permits("alpha", "arbitrum", "eth_call").unwrap_err();
        assert_eq!(err.code, ErrorCode::PermissionDenied);
        assert_eq!(
            err.message,
            "strategy 'alpha' may not use chain 'arbitrum' (its policy allows: base, ethereum)"
        );
        let err = alpha.policy.permits("alpha", "base", "eth_getLogs").unwrap_err();
        assert_eq!(
            err.message,
            "strategy 'alpha' may not use method 'eth_getLogs' (its policy allows: eth_call)"
        );
        let beta = table.get(&digest("bbbbbbbbbbbbbbbbbbbb")).unwrap();
        assert_eq!(*beta.policy, Policy::default());
    }

    #[test]
    fn config_policies_apply_to_file_tokens_and_the_file_overrides_them() {
        let mut config = with_file();
        config.policies.insert(
            "alpha".into(),
            PolicyConfig {
                chains: Some(vec!["ethereum".into()]),
                requests_per_second: Some(3.0),
                burst: Some(4.0),
                ..PolicyConfig::default()
            },
        );
        config.tokens.push(TokenConfig {
            strategy_id: "alpha".into(),
            token: "cccccccccccccccccccc".into(),
        });
        let table = build(&config, "alpha aaaaaaaaaaaaaaaaaaaa chains=base\n").unwrap();
        for token in ["aaaaaaaaaaaaaaaaaaaa", "cccccccccccccccccccc"] {
            let policy = &table.get(&digest(token)).unwrap().policy;
            assert_eq!(policy.chains, Some(BTreeSet::from(["base".to_owned()])), "{token}");
            assert_eq!(policy.limit, Some(Limit { rate: 3.0, burst: 4.0 }), "{token}");
        }
    }

    #[test]
    fn bad_lines_name_the_place_and_never_the_token() {
        let secret = "s3cr3t-s3cr3t-s3cr3t";
        for (file, expected) in [
            (
                "alpha\n".to_owned(),
                "tokens line 1: expected `strategy_id token [key=value …]`",
            ),
            (
                format!("\nalpha {secret} colour=blue\n"),
                "tokens line 2: unknown key 'colour' (keys: chains, methods, requests_per_second, burst, rpc_requests_per_second, rpc_burst)",
            ),
            (
                format!("alpha {secret} requests_per_second=fast\n"),
                "tokens line 1: requests_per_second = 'fast': expected a number",
            ),
            (
                format!("alpha {secret} rpc_burst=0.5\n"),
                "policy of 'alpha': rpc_burst = 0.5: expected a burst of at least 1",
            ),
            (
                "alpha short-token\n".to_owned(),
                "tokens line 1: the token of strategy 'alpha' is shorter than 16 characters",
            ),
            (
                format!("alpha {secret}\nbeta {secret}\n"),
                "tokens line 2 gives strategy 'beta' the same token as tokens line 1 gives 'alpha'",
            ),
            (
                "alpha chains=base\n".to_owned(),
                "tokens line 1: expected `strategy_id token [key=value …]`: the second word of strategy 'alpha' looks like a setting, not a token",
            ),
        ] {
            let err = build(&with_file(), &file).unwrap_err();
            assert_eq!(err, expected);
            assert!(!err.contains(secret));
        }
    }

    #[test]
    fn changes_are_named_by_strategy() {
        let config = with_file();
        let before = build(
            &config,
            "alpha aaaaaaaaaaaaaaaaaaaa\nbeta bbbbbbbbbbbbbbbbbbbb\ngamma gggggggggggggggggggg\n",
        )
        .unwrap();
        let after = build(
            &config,
            "alpha aaaaaaaaaaaaaaaaaaaa\nbeta bbbbbbbbbbbbbbbbbbbb methods=eth_call\ndelta dddddddddddddddddddd\n",
        )
        .unwrap();
        assert_eq!(
            before.changes(&after),
            Changes {
                added: vec!["delta".into()],
                removed: vec!["gamma".into()],
                changed: vec!["beta".into()],
            }
        );
        assert!(after.changes(&after).is_empty());
    }
}
