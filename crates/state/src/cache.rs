//! The latest version of each strategy's state, kept in memory when the
//! service is the database's only writer (SQLite: one replica, which the
//! Helm chart enforces), so that loading it needs no database round trip.
//!
//! A save puts its version here once it is committed, a delete removes the
//! strategy, and a load that misses reads the database and fills the entry.
//! Entries are evicted oldest-first when the total size would pass the
//! budget. With PostgreSQL several replicas write, so there is no cache.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use crate::store::Stored;

pub struct LatestCache {
    budget: usize,
    inner: Mutex<Inner>,
    /// Held across a database write (or a load that fills an entry) and
    /// the cache update that follows it, so a delete can never be followed
    /// by a save's or load's late update. SQLite takes one writer at a
    /// time anyway, so this costs saves no concurrency.
    pub writes: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<String, Arc<Stored>>,
    /// Strategy ids in the order they were (re)filled, oldest first; an id
    /// may appear more than once, and only its last place counts.
    order: VecDeque<String>,
    bytes: usize,
}

impl LatestCache {
    /// A cache of at most `budget` bytes of state.
    pub fn new(budget: usize) -> LatestCache {
        LatestCache {
            budget,
            inner: Mutex::new(Inner::default()),
            writes: tokio::sync::Mutex::new(()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn get(&self, strategy_id: &str) -> Option<Arc<Stored>> {
        self.lock().entries.get(strategy_id).cloned()
    }

    /// Keeps `stored` as the latest version of `strategy_id`, unless a
    /// newer one is already here. The cache holds its own copy of the data,
    /// of exactly its size: a save's data is a slice of the request's
    /// receive buffer, which may be many times larger, and the budget
    /// counts what is held.
    pub fn put(&self, strategy_id: &str, stored: Stored) {
        let size = stored.data.len();
        if size > self.budget {
            self.remove(strategy_id);
            return;
        }
        let stored = Stored {
            data: bytes::Bytes::copy_from_slice(&stored.data),
            ..stored
        };
        let mut inner = self.lock();
        if inner
            .entries
            .get(strategy_id)
            .is_some_and(|s| s.version > stored.version)
        {
            return;
        }
        if let Some(old) = inner.entries.insert(strategy_id.to_owned(), Arc::new(stored)) {
            inner.bytes -= old.data.len();
        }
        inner.bytes += size;
        inner.order.push_back(strategy_id.to_owned());
        while inner.bytes > self.budget {
            let Some(oldest) = inner.order.pop_front() else { break };
            // Evict only at an id's last place in the order.
            if inner.order.contains(&oldest) {
                continue;
            }
            if let Some(evicted) = inner.entries.remove(&oldest) {
                inner.bytes -= evicted.data.len();
            }
        }
        // Keep the order from growing without bound on repeated saves.
        if inner.order.len() > 4 * inner.entries.len() + 64 {
            let entries = &inner.entries;
            let mut seen = std::collections::HashSet::new();
            let mut order: Vec<String> = inner
                .order
                .iter()
                .rev()
                .filter(|id| entries.contains_key(*id) && seen.insert((*id).clone()))
                .cloned()
                .collect();
            order.reverse();
            inner.order = order.into();
        }
    }

    pub fn remove(&self, strategy_id: &str) {
        let mut inner = self.lock();
        if let Some(old) = inner.entries.remove(strategy_id) {
            inner.bytes -= old.data.len();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(version: u64, size: usize) -> Stored {
        Stored {
            version,
            data: vec![0; size].into(),
            sha256: String::new(),
            saved_at_ms: 0,
            content_type: String::new(),
        }
    }

    #[test]
    fn keeps_the_newest_version_within_the_budget() {
        let cache = LatestCache::new(100);
        cache.put("a", stored(1, 40));
        cache.put("a", stored(2, 40));
        cache.put("a", stored(1, 40));
        assert_eq!(
            cache.get("a").unwrap().version,
            2,
            "an older version never replaces a newer one"
        );
        cache.put("b", stored(1, 40));
        cache.put("c", stored(1, 40));
        assert!(cache.get("a").is_none(), "the oldest entry makes room");
        assert_eq!(cache.get("c").unwrap().version, 1);
        cache.put("d", stored(1, 101));
        assert!(cache.get("d").is_none(), "a state above the budget is not kept");
        cache.remove("c");
        assert!(cache.get("c").is_none());
        for v in 2..1_000 {
            cache.put("b", stored(v, 40));
        }
        assert_eq!(cache.get("b").unwrap().version, 999);
        // A state cut from a larger buffer is kept as its own copy, so the
        // buffer is not held beyond the budget.
        let buffer = bytes::Bytes::from(vec![1u8; 8192]);
        let slice = buffer.slice(..10);
        cache.put(
            "e",
            Stored {
                data: slice.clone(),
                ..stored(1, 0)
            },
        );
        let kept = cache.get("e").unwrap();
        assert_eq!(kept.data, slice);
        assert!(
            !std::ptr::eq(kept.data.as_ptr(), slice.as_ptr()),
            "the cache keeps a copy"
        );
        let inner = cache.lock();
        assert!(
            inner.order.len() <= 4 * inner.entries.len() + 65,
            "{}",
            inner.order.len()
        );
    }
}
