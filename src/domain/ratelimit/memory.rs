//! The zero-configuration store: counters in this process's memory, with the same
//! keys, expiries and arithmetic as the Redis scripts. Correct for a single app
//! process only; several processes each keep their own counts.

use super::algorithms::{self, Bucket};
use super::{LimiterStore, StoreError};
use crate::domain::clock::Clock;
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// How many writes pass between sweeps of expired entries.
const SWEEP_EVERY: u32 = 1024;

#[derive(Debug, Clone, Copy)]
enum Value {
    Counter(i64),
    Bucket(Bucket),
}

#[derive(Debug)]
struct Entry {
    value: Value,
    expires_at_ms: Option<u64>,
}

#[derive(Default)]
struct Entries {
    map: HashMap<String, Entry>,
    writes_since_sweep: u32,
}

impl Entries {
    /// The live value at `key` (expired entries count as absent, like Redis).
    fn get(&self, key: &str, now_ms: u64) -> Option<Value> {
        self.map
            .get(key)
            .filter(|entry| entry.expires_at_ms.is_none_or(|at| at > now_ms))
            .map(|entry| entry.value)
    }

    fn counter(&self, key: &str, now_ms: u64) -> i64 {
        match self.get(key, now_ms) {
            Some(Value::Counter(n)) => n,
            _ => 0,
        }
    }

    /// `INCRBY`; returns the new value and whether this call created the key.
    fn increment(&mut self, key: &str, by: i64, now_ms: u64) -> (i64, bool) {
        let existing = match self.get(key, now_ms) {
            Some(Value::Counter(n)) => Some(n),
            _ => None,
        };
        let value = existing.unwrap_or(0) + by;
        let expires_at_ms = existing.and_then(|_| self.map.get(key).and_then(|e| e.expires_at_ms));
        self.put(key, Value::Counter(value), expires_at_ms, now_ms);
        (value, existing.is_none())
    }

    fn put(&mut self, key: &str, value: Value, expires_at_ms: Option<u64>, now_ms: u64) {
        self.writes_since_sweep += 1;
        if self.writes_since_sweep >= SWEEP_EVERY {
            self.writes_since_sweep = 0;
            self.map
                .retain(|_, entry| entry.expires_at_ms.is_none_or(|at| at > now_ms));
        }
        self.map.insert(
            key.to_owned(),
            Entry {
                value,
                expires_at_ms,
            },
        );
    }

    fn expire(&mut self, key: &str, at_ms: u64) {
        if let Some(entry) = self.map.get_mut(key) {
            entry.expires_at_ms = Some(at_ms);
        }
    }
}

/// Counters with Redis-like expiry behind one mutex: each operation is a few map
/// look-ups with no await inside, so a plain mutex is both atomic and cheap.
pub struct MemoryStore {
    entries: Mutex<Entries>,
    clock: Arc<dyn Clock>,
}

impl MemoryStore {
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            entries: Mutex::new(Entries::default()),
            clock,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Entries> {
        // Each update is a single insert; a panic elsewhere cannot leave one half-done.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().map.len()
    }
}

#[async_trait]
impl LimiterStore for MemoryStore {
    fn describe(&self) -> String {
        "in-memory (counts live in this process only: correct for a single app instance, and reset when it restarts)".into()
    }

    async fn fixed_window(&self, key: &str, window_ms: u64, rate: i64) -> Result<i64, StoreError> {
        let now = self.clock.now_ms();
        let mut entries = self.lock();
        let (count, created) = entries.increment(key, rate, now);
        if created {
            entries.expire(key, now + window_ms);
        }
        Ok(count)
    }

    async fn fixed_window_used(&self, key: &str) -> Result<i64, StoreError> {
        Ok(self.lock().counter(key, self.clock.now_ms()))
    }

    async fn sliding_window(
        &self,
        current_key: &str,
        previous_key: &str,
        limit: u64,
        now_ms: u64,
        window_ms: u64,
        rate: i64,
    ) -> Result<i64, StoreError> {
        let clock_now = self.clock.now_ms();
        let mut entries = self.lock();
        let current = entries.counter(current_key, clock_now);
        let previous = entries.counter(previous_key, clock_now);
        let (remaining, write) =
            algorithms::sliding_window_step(current, previous, limit, now_ms, window_ms, rate);
        if write.is_some() {
            let (_, created) = entries.increment(current_key, rate, clock_now);
            if created {
                entries.expire(
                    current_key,
                    clock_now + algorithms::sliding_window_expiry_ms(window_ms),
                );
            }
        }
        Ok(remaining)
    }

    async fn sliding_window_remaining(
        &self,
        current_key: &str,
        previous_key: &str,
        limit: u64,
        now_ms: u64,
        window_ms: u64,
    ) -> Result<i64, StoreError> {
        let clock_now = self.clock.now_ms();
        let entries = self.lock();
        let current = entries.counter(current_key, clock_now);
        let previous = entries.counter(previous_key, clock_now);
        Ok(limit as i64
            - (algorithms::sliding_weighted_previous(now_ms, window_ms, previous) + current))
    }

    async fn token_bucket(
        &self,
        key: &str,
        max_tokens: u64,
        interval_ms: u64,
        refill_rate: u64,
        now_ms: u64,
        rate: i64,
    ) -> Result<(i64, i64), StoreError> {
        let clock_now = self.clock.now_ms();
        let mut entries = self.lock();
        let stored = match entries.get(key, clock_now) {
            Some(Value::Bucket(bucket)) => Some(bucket),
            _ => None,
        };
        let step = algorithms::token_bucket_step(
            stored,
            max_tokens,
            interval_ms,
            refill_rate,
            now_ms,
            rate,
        );
        if let Some((bucket, expire_ms)) = step.write {
            // HSET keeps an existing expiry; PEXPIRE replaces it when there is one.
            let kept = entries
                .map
                .get(key)
                .and_then(|e| e.expires_at_ms)
                .filter(|_| stored.is_some());
            let expires_at = expire_ms.map(|ms| clock_now + ms).or(kept);
            entries.put(key, Value::Bucket(bucket), expires_at, clock_now);
        }
        Ok((step.remaining, step.reset_ms))
    }

    async fn token_bucket_remaining(&self, key: &str) -> Result<Option<Bucket>, StoreError> {
        match self.lock().get(key, self.clock.now_ms()) {
            Some(Value::Bucket(bucket)) => Ok(Some(bucket)),
            _ => Ok(None),
        }
    }

    async fn delete_matching(&self, pattern: &str) -> Result<u64, StoreError> {
        let mut entries = self.lock();
        let before = entries.map.len();
        entries.map.retain(|key, _| !glob_matches(pattern, key));
        Ok((before - entries.map.len()) as u64)
    }
}

/// Redis `MATCH` globbing for the patterns the limiter uses: `*` any run, `?` one
/// character, everything else literal (`[…]` classes are not needed here).
fn glob_matches(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    let mut backtrack: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some('*') => {
                backtrack = Some((pi, ti));
                pi += 1;
            }
            Some('?') => {
                pi += 1;
                ti += 1;
            }
            Some(&c) if c == t[ti] => {
                pi += 1;
                ti += 1;
            }
            _ => match backtrack {
                Some((star, matched)) => {
                    pi = star + 1;
                    ti = matched + 1;
                    backtrack = Some((star, matched + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::clock::ManualClock;

    #[tokio::test]
    async fn counters_expire_after_the_window_set_by_the_first_write() {
        let clock = Arc::new(ManualClock::at(1_000));
        let store = MemoryStore::new(clock.clone());
        assert_eq!(store.fixed_window("k", 500, 1).await.unwrap(), 1);
        clock.set(1_400);
        // A later write does not extend the expiry.
        assert_eq!(store.fixed_window("k", 500, 1).await.unwrap(), 2);
        clock.set(1_499);
        assert_eq!(store.fixed_window_used("k").await.unwrap(), 2);
        clock.set(1_500);
        assert_eq!(store.fixed_window_used("k").await.unwrap(), 0);
        assert_eq!(store.fixed_window("k", 500, 1).await.unwrap(), 1);
    }

    #[tokio::test]
    async fn expired_entries_are_swept_from_memory() {
        let clock = Arc::new(ManualClock::at(0));
        let store = MemoryStore::new(clock.clone());
        for i in 0..SWEEP_EVERY - 1 {
            store
                .fixed_window(&format!("old:{i}"), 10, 1)
                .await
                .unwrap();
        }
        assert_eq!(store.len(), SWEEP_EVERY as usize - 1);
        clock.set(100);
        // This write is the one that triggers the sweep.
        store.fixed_window("new", 10, 1).await.unwrap();
        assert_eq!(store.len(), 1);
    }

    #[test]
    fn globs_match_like_redis_for_the_limiter_patterns() {
        assert!(glob_matches(
            "@upstash/ratelimit:v:*",
            "@upstash/ratelimit:v:20419"
        ));
        assert!(!glob_matches(
            "@upstash/ratelimit:v:*",
            "@upstash/ratelimit:vv:20419"
        ));
        assert!(glob_matches("a*c", "abbbc"));
        assert!(glob_matches("a?c", "abc"));
        assert!(!glob_matches("a?c", "abbc"));
        assert!(glob_matches("exact", "exact"));
        assert!(!glob_matches("exact", "exactly"));
    }
}
