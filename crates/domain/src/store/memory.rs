//! The zero-configuration store: Redis-like keys with expiry in this process's
//! memory. One keyspace behind one mutex serves the limiter's counters and
//! buckets and the shared state's hashes and lists alike; each operation is a few
//! map look-ups with no await inside, so a plain mutex is both atomic and cheap.
//! Correct for a single app process only; several processes each keep their own.

use crate::clock::Clock;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex};

/// How many writes pass between sweeps of expired entries.
pub(crate) const SWEEP_EVERY: u32 = 1024;

/// What a key holds, as in Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Counter(i64),
    Hash(HashMap<String, String>),
    List(VecDeque<String>),
    Text(String),
    Set(BTreeSet<String>),
}

#[derive(Debug)]
struct Entry {
    value: Value,
    expires_at_ms: Option<u64>,
}

/// The keyspace as one operation sees it: expired keys read as absent (like
/// Redis), and are swept out every [`SWEEP_EVERY`] writes.
#[derive(Debug, Default)]
pub struct Entries {
    map: HashMap<String, Entry>,
    writes_since_sweep: u32,
    now_ms: u64,
}

impl Entries {
    /// The clock reading this operation runs at.
    pub fn now_ms(&self) -> u64 {
        self.now_ms
    }

    fn live(&self, key: &str) -> Option<&Entry> {
        let now = self.now_ms;
        self.map
            .get(key)
            .filter(|entry| entry.expires_at_ms.is_none_or(|at| at > now))
    }

    /// The live value at `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.live(key).map(|entry| &entry.value)
    }

    /// The live value at `key`, to change in place (its expiry is kept).
    pub fn get_mut(&mut self, key: &str) -> Option<&mut Value> {
        self.live(key)?;
        self.map.get_mut(key).map(|entry| &mut entry.value)
    }

    /// When the live key at `key` expires (`None`: absent or no expiry).
    pub fn expires_at(&self, key: &str) -> Option<u64> {
        self.live(key).and_then(|entry| entry.expires_at_ms)
    }

    /// The counter at `key` (0 when absent or not a counter), like `GET`.
    pub fn counter(&self, key: &str) -> i64 {
        match self.get(key) {
            Some(Value::Counter(n)) => *n,
            _ => 0,
        }
    }

    /// `INCRBY`: returns the new value and whether this call created the key
    /// (an existing key keeps its expiry).
    pub fn increment(&mut self, key: &str, by: i64) -> (i64, bool) {
        let existing = match self.live(key) {
            Some(Entry {
                value: Value::Counter(n),
                expires_at_ms,
            }) => Some((*n, *expires_at_ms)),
            _ => None,
        };
        let (value, expires_at_ms) = match existing {
            Some((n, expires_at_ms)) => (n + by, expires_at_ms),
            None => (by, None),
        };
        self.set(key, Value::Counter(value), expires_at_ms);
        (value, existing.is_none())
    }

    /// Replaces whatever is at `key`.
    pub fn set(&mut self, key: &str, value: Value, expires_at_ms: Option<u64>) {
        self.writes_since_sweep += 1;
        if self.writes_since_sweep >= SWEEP_EVERY {
            self.writes_since_sweep = 0;
            let now = self.now_ms;
            self.map
                .retain(|_, entry| entry.expires_at_ms.is_none_or(|at| at > now));
        }
        self.map.insert(
            key.to_owned(),
            Entry {
                value,
                expires_at_ms,
            },
        );
    }

    /// `PEXPIREAT`: sets when a live key expires.
    pub fn expire_at(&mut self, key: &str, at_ms: u64) {
        if self.live(key).is_some() {
            if let Some(entry) = self.map.get_mut(key) {
                entry.expires_at_ms = Some(at_ms);
            }
        }
    }

    /// `DEL`: true when a live key was there.
    pub fn delete(&mut self, key: &str) -> bool {
        let live = self.live(key).is_some();
        self.map.remove(key);
        live
    }

    /// Deletes every key matching a Redis glob pattern; returns how many.
    pub fn delete_matching(&mut self, pattern: &str) -> u64 {
        let before = self.map.len();
        self.map.retain(|key, _| !glob_matches(pattern, key));
        (before - self.map.len()) as u64
    }
}

/// The keyspace behind its mutex, with the clock that decides expiry.
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

    /// Runs one operation on the keyspace, atomically, at the clock's time.
    pub fn with<T>(&self, operation: impl FnOnce(&mut Entries) -> T) -> T {
        let now = self.clock.now_ms();
        // Each operation finishes its writes before it can panic; a panic elsewhere
        // cannot leave one half-done.
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.now_ms = now;
        operation(&mut entries)
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// How many keys are held, expired ones not yet swept included.
    pub fn len(&self) -> usize {
        self.with(|entries| entries.map.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn describe(&self) -> String {
        "in-memory (this process only: correct for a single app instance, and forgotten when it restarts)".into()
    }
}

/// Redis `MATCH` globbing for the patterns the app uses: `*` any run, `?` one
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
    use crate::clock::ManualClock;

    #[test]
    fn counters_keep_the_expiry_set_when_they_were_created() {
        let clock = Arc::new(ManualClock::at(1_000));
        let store = MemoryStore::new(clock.clone());
        store.with(|e| {
            assert_eq!(e.increment("k", 1), (1, true));
            e.expire_at("k", 1_500);
        });
        clock.set(1_400);
        assert_eq!(store.with(|e| e.increment("k", 1)), (2, false));
        clock.set(1_499);
        assert_eq!(store.with(|e| e.counter("k")), 2);
        clock.set(1_500);
        assert_eq!(store.with(|e| e.counter("k")), 0);
        assert_eq!(store.with(|e| e.increment("k", 1)), (1, true));
    }

    #[test]
    fn expired_entries_are_swept_from_memory() {
        let clock = Arc::new(ManualClock::at(0));
        let store = MemoryStore::new(clock.clone());
        for i in 0..SWEEP_EVERY - 1 {
            store.with(|e| e.set(&format!("old:{i}"), Value::Counter(1), Some(10)));
        }
        assert_eq!(store.len(), SWEEP_EVERY as usize - 1);
        clock.set(100);
        // This write is the one that triggers the sweep.
        store.with(|e| e.set("new", Value::Counter(1), None));
        assert_eq!(store.len(), 1);
    }

    #[test]
    fn globs_match_like_redis_for_the_app_patterns() {
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
