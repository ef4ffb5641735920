//! The limiter in this process's memory: the same keys, expiries and arithmetic
//! as the Redis scripts, over the store layer's [`MemoryStore`]. A token bucket
//! is a hash with `refilledAt` and `tokens`, as in Redis.

use super::algorithms::{self, Bucket};
use super::LimiterStore;
use crate::store::{Entries, MemoryStore, StoreError, Value};
use async_trait::async_trait;
use std::collections::HashMap;

fn bucket(entries: &Entries, key: &str) -> Option<Bucket> {
    let Some(Value::Hash(hash)) = entries.get(key) else {
        return None;
    };
    let field = |name: &str| hash.get(name)?.parse::<i64>().ok();
    Some(Bucket {
        refilled_at_ms: field("refilledAt")?,
        tokens: field("tokens")?,
    })
}

fn bucket_value(bucket: Bucket) -> Value {
    Value::Hash(HashMap::from([
        ("refilledAt".to_owned(), bucket.refilled_at_ms.to_string()),
        ("tokens".to_owned(), bucket.tokens.to_string()),
    ]))
}

#[async_trait]
impl LimiterStore for MemoryStore {
    fn describe(&self) -> String {
        MemoryStore::describe(self)
    }

    async fn fixed_window(&self, key: &str, window_ms: u64, rate: i64) -> Result<i64, StoreError> {
        Ok(self.with(|entries| {
            let (count, created) = entries.increment(key, rate);
            if created {
                entries.expire_at(key, entries.now_ms() + window_ms);
            }
            count
        }))
    }

    async fn fixed_window_used(&self, key: &str) -> Result<i64, StoreError> {
        Ok(self.with(|entries| entries.counter(key)))
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
        Ok(self.with(|entries| {
            let current = entries.counter(current_key);
            let previous = entries.counter(previous_key);
            let (remaining, write) =
                algorithms::sliding_window_step(current, previous, limit, now_ms, window_ms, rate);
            if write.is_some() {
                let (_, created) = entries.increment(current_key, rate);
                if created {
                    entries.expire_at(
                        current_key,
                        entries.now_ms() + algorithms::sliding_window_expiry_ms(window_ms),
                    );
                }
            }
            remaining
        }))
    }

    async fn sliding_window_remaining(
        &self,
        current_key: &str,
        previous_key: &str,
        limit: u64,
        now_ms: u64,
        window_ms: u64,
    ) -> Result<i64, StoreError> {
        Ok(self.with(|entries| {
            let current = entries.counter(current_key);
            let previous = entries.counter(previous_key);
            limit as i64
                - (algorithms::sliding_weighted_previous(now_ms, window_ms, previous) + current)
        }))
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
        Ok(self.with(|entries| {
            let stored = bucket(entries, key);
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
                let kept = entries.expires_at(key).filter(|_| stored.is_some());
                let expires_at = expire_ms.map(|ms| entries.now_ms() + ms).or(kept);
                entries.set(key, bucket_value(bucket), expires_at);
            }
            (step.remaining, step.reset_ms)
        }))
    }

    async fn token_bucket_remaining(&self, key: &str) -> Result<Option<Bucket>, StoreError> {
        Ok(self.with(|entries| bucket(entries, key)))
    }

    async fn delete_matching(&self, pattern: &str) -> Result<u64, StoreError> {
        Ok(self.with(|entries| entries.delete_matching(pattern)))
    }

    async fn counter_refund(&self, key: &str, limit: u64) -> Result<i64, StoreError> {
        Ok(self.with(|entries| {
            let count = entries.counter(key);
            if count <= 0 {
                return 0;
            }
            let target = count.min(limit as i64) - 1;
            entries.increment(key, target - count);
            target
        }))
    }

    async fn token_bucket_refund(&self, key: &str, max_tokens: u64) -> Result<i64, StoreError> {
        Ok(self.with(|entries| {
            let Some(mut stored) = bucket(entries, key) else {
                return -1;
            };
            if stored.tokens < max_tokens as i64 {
                stored.tokens += 1;
                let expires_at = entries.expires_at(key);
                entries.set(key, bucket_value(stored), expires_at);
            }
            stored.tokens
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use std::sync::Arc;

    #[tokio::test]
    async fn fixed_window_counters_expire_after_the_window_set_by_the_first_write() {
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
    async fn a_bucket_is_stored_as_redis_stores_it() {
        let store = MemoryStore::new(Arc::new(ManualClock::at(1_000)));
        store
            .token_bucket("b", 3, 1_000, 1, 1_000, 1)
            .await
            .unwrap();
        let stored = store.token_bucket_remaining("b").await.unwrap().unwrap();
        assert_eq!(stored.tokens, 2);
        assert_eq!(stored.refilled_at_ms, 1_000);
        let fields = store.with(|e| match e.get("b") {
            Some(Value::Hash(hash)) => hash.keys().cloned().collect::<Vec<_>>(),
            _ => Vec::new(),
        });
        assert!(fields.contains(&"refilledAt".to_owned()) && fields.contains(&"tokens".to_owned()));
    }
}
