//! The zero-configuration store: counters in this process's memory. Correct for a
//! single app process only; several processes each keep their own counts.

use super::{LimiterStore, StoreError};
use crate::domain::clock::Clock;
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// How many writes pass between sweeps of expired counters.
const SWEEP_EVERY: u32 = 1024;

struct Counter {
    value: i64,
    expires_at_ms: Option<u64>,
}

#[derive(Default)]
struct Counters {
    entries: HashMap<String, Counter>,
    writes_since_sweep: u32,
}

/// Counters with Redis-like expiry, behind one mutex: each operation is a few map
/// look-ups with no await inside, so a plain mutex is both atomic and cheap.
pub struct MemoryStore {
    counters: Mutex<Counters>,
    clock: Arc<dyn Clock>,
}

impl MemoryStore {
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            counters: Mutex::new(Counters::default()),
            clock,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counters> {
        // A panic while holding the lock cannot leave a counter half-written (each
        // update is a single assignment), so the data is still good.
        self.counters.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Counter {
    fn live_value(&self, now_ms: u64) -> Option<i64> {
        match self.expires_at_ms {
            Some(at) if at <= now_ms => None,
            _ => Some(self.value),
        }
    }
}

#[async_trait]
impl LimiterStore for MemoryStore {
    fn describe(&self) -> String {
        "in-memory (counts live in this process only: correct for a single app instance, and reset when it restarts)".into()
    }

    async fn fixed_window_increment(
        &self,
        key: &str,
        rate: i64,
        window_ms: u64,
    ) -> Result<i64, StoreError> {
        let now = self.clock.now_ms();
        let mut counters = self.lock();
        counters.writes_since_sweep += 1;
        if counters.writes_since_sweep >= SWEEP_EVERY {
            counters.writes_since_sweep = 0;
            counters
                .entries
                .retain(|_, counter| counter.live_value(now).is_some());
        }
        let current = counters
            .entries
            .get(key)
            .and_then(|counter| counter.live_value(now));
        let value = current.unwrap_or(0) + rate;
        let expires_at_ms = match current {
            // Same rule as the Lua script: expiry is set when the increment created the key.
            None => Some(now + window_ms),
            Some(_) => counters.entries.get(key).and_then(|c| c.expires_at_ms),
        };
        counters.entries.insert(
            key.to_owned(),
            Counter {
                value,
                expires_at_ms,
            },
        );
        Ok(value)
    }

    async fn read_counter(&self, key: &str) -> Result<i64, StoreError> {
        let now = self.clock.now_ms();
        Ok(self
            .lock()
            .entries
            .get(key)
            .and_then(|counter| counter.live_value(now))
            .unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::clock::ManualClock;

    #[tokio::test]
    async fn counters_expire_after_the_window_set_by_the_first_write() {
        let clock = Arc::new(ManualClock::at(1_000));
        let store = MemoryStore::new(clock.clone());
        assert_eq!(store.fixed_window_increment("k", 1, 500).await.unwrap(), 1);
        clock.set(1_400);
        // A later write does not extend the expiry.
        assert_eq!(store.fixed_window_increment("k", 1, 500).await.unwrap(), 2);
        clock.set(1_499);
        assert_eq!(store.read_counter("k").await.unwrap(), 2);
        clock.set(1_500);
        assert_eq!(store.read_counter("k").await.unwrap(), 0);
        assert_eq!(store.fixed_window_increment("k", 1, 500).await.unwrap(), 1);
    }

    #[tokio::test]
    async fn expired_counters_are_swept_from_memory() {
        let clock = Arc::new(ManualClock::at(0));
        let store = MemoryStore::new(clock.clone());
        for i in 0..SWEEP_EVERY - 1 {
            store
                .fixed_window_increment(&format!("old:{i}"), 1, 10)
                .await
                .unwrap();
        }
        assert_eq!(store.lock().entries.len(), SWEEP_EVERY as usize - 1);
        clock.set(100);
        // This write is the one that triggers the sweep.
        store.fixed_window_increment("new", 1, 10).await.unwrap();
        assert_eq!(store.lock().entries.len(), 1);
    }
}
