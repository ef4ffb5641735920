//! Rate limiting with the semantics and Redis key layout of `@upstash/ratelimit`
//! v2.0.8, so a Rust server and a Node server can share one set of counters.
//!
//! The split follows the JS library: a [`LimiterStore`] performs one atomic step
//! (in Redis, one Lua script), and [`RateLimiter`] builds the keys, keeps the
//! ephemeral block cache and turns the store's numbers into a [`Decision`].

pub mod algorithms;
mod cache;
mod memory_store;
mod scripted_store;
pub mod scripts;
mod window;

pub use algorithms::Bucket;
pub use cache::BlockCache;
pub use window::{parse_window, WindowError};

use crate::clock::Clock;
use crate::store::StoreError;
use async_trait::async_trait;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// The key prefix `@upstash/ratelimit` uses unless told otherwise.
pub const DEFAULT_PREFIX: &str = "@upstash/ratelimit";

/// The three algorithms of `@upstash/ratelimit`, with their numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// At most `limit` per window; windows aligned to the Unix epoch.
    FixedWindow { limit: u64, window_ms: u64 },
    /// Like the fixed window, but the previous window still counts in proportion
    /// to how much of it overlaps the last `window_ms`.
    SlidingWindow { limit: u64, window_ms: u64 },
    /// A bucket of `max_tokens`, refilled by `refill_rate` every `interval_ms`.
    TokenBucket {
        refill_rate: u64,
        interval_ms: u64,
        max_tokens: u64,
    },
}

impl Algorithm {
    /// The window length (token bucket: the refill interval), in milliseconds.
    pub fn window_ms(&self) -> u64 {
        match *self {
            Self::FixedWindow { window_ms, .. } | Self::SlidingWindow { window_ms, .. } => {
                window_ms
            }
            Self::TokenBucket { interval_ms, .. } => interval_ms,
        }
    }

    /// The most requests a fresh identifier gets.
    pub fn limit(&self) -> u64 {
        match *self {
            Self::FixedWindow { limit, .. } | Self::SlidingWindow { limit, .. } => limit,
            Self::TokenBucket { max_tokens, .. } => max_tokens,
        }
    }

    /// The same algorithm with another limit (a token bucket: its size), as
    /// `@upstash/ratelimit` applies a dynamic limit.
    pub fn with_limit(self, new: u64) -> Self {
        match self {
            Self::FixedWindow { window_ms, .. } => Self::FixedWindow {
                limit: new,
                window_ms,
            },
            Self::SlidingWindow { window_ms, .. } => Self::SlidingWindow {
                limit: new,
                window_ms,
            },
            Self::TokenBucket {
                refill_rate,
                interval_ms,
                ..
            } => Self::TokenBucket {
                refill_rate,
                interval_ms,
                max_tokens: new,
            },
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::FixedWindow { limit, window_ms } => {
                write!(f, "fixed window, {limit} per {window_ms} ms")
            }
            Self::SlidingWindow { limit, window_ms } => {
                write!(f, "sliding window, {limit} per {window_ms} ms")
            }
            Self::TokenBucket {
                refill_rate,
                interval_ms,
                max_tokens,
            } => write!(
                f,
                "token bucket of {max_tokens}, {refill_rate} added every {interval_ms} ms"
            ),
        }
    }
}

/// Why a decision came out as it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The store was asked.
    Store,
    /// The ephemeral cache already knew the identifier was blocked; the store was
    /// not asked.
    CacheBlock,
}

/// The outcome of one limiter call, with everything a 429 or a quota display needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request may go ahead.
    pub success: bool,
    /// The most requests the policy admits.
    pub limit: u64,
    /// Requests left, never negative.
    pub remaining: u64,
    /// When the identifier gets more (window end, or next refill), epoch ms.
    pub reset_ms: u64,
    pub reason: Reason,
}

impl Decision {
    /// Whole seconds until the reset, rounded up and at least 1, as `Retry-After` wants.
    pub fn retry_after_secs(&self, now_ms: u64) -> u64 {
        self.reset_ms.saturating_sub(now_ms).div_ceil(1000).max(1)
    }
}

/// Storage for the limiter's state. Each method is one atomic step that matches
/// one Lua script in `scripts.rs`, so the Redis-backed stores are one round trip
/// per call.
#[async_trait]
pub trait LimiterStore: Send + Sync + 'static {
    /// Says what the store is, for start-up logs (never with credentials).
    fn describe(&self) -> String;

    /// Fixed window: `INCRBY key rate`, `PEXPIRE key window_ms` when that created
    /// the key. Returns the count after the increment.
    async fn fixed_window(&self, key: &str, window_ms: u64, rate: i64) -> Result<i64, StoreError>;

    /// Fixed window: the count at `key` (0 when absent). Never writes.
    async fn fixed_window_used(&self, key: &str) -> Result<i64, StoreError>;

    /// Sliding window: see [`algorithms::sliding_window_step`]. Returns what
    /// remains, -1 when rejected.
    async fn sliding_window(
        &self,
        current_key: &str,
        previous_key: &str,
        limit: u64,
        now_ms: u64,
        window_ms: u64,
        rate: i64,
    ) -> Result<i64, StoreError>;

    /// Sliding window: what remains, without writing.
    async fn sliding_window_remaining(
        &self,
        current_key: &str,
        previous_key: &str,
        limit: u64,
        now_ms: u64,
        window_ms: u64,
    ) -> Result<i64, StoreError>;

    /// Token bucket: see [`algorithms::token_bucket_step`]. Returns (remaining,
    /// reset ms); remaining is -1 when rejected.
    async fn token_bucket(
        &self,
        key: &str,
        max_tokens: u64,
        interval_ms: u64,
        refill_rate: u64,
        now_ms: u64,
        rate: i64,
    ) -> Result<(i64, i64), StoreError>;

    /// Token bucket: the stored bucket, without refilling or writing.
    async fn token_bucket_remaining(&self, key: &str) -> Result<Option<Bucket>, StoreError>;

    /// Deletes every key matching a Redis glob pattern; returns how many.
    async fn delete_matching(&self, pattern: &str) -> Result<u64, StoreError>;

    /// Gives one unit back to a window's counter: to at most `limit - 1` (so
    /// refused requests counted past the limit do not eat it), never under 0,
    /// nothing when the counter is gone. Returns the count after.
    async fn counter_refund(&self, key: &str, limit: u64) -> Result<i64, StoreError>;

    /// Puts one token back in a bucket, never above `max_tokens`; nothing when the
    /// bucket is absent (it is full). Returns the tokens after (-1: absent).
    async fn token_bucket_refund(&self, key: &str, max_tokens: u64) -> Result<i64, StoreError>;
}

/// Tracks whether the store is failing, so an outage is logged once when it
/// starts and once when it ends, not on every request.
#[derive(Debug, Default)]
struct StoreHealth {
    failing: AtomicBool,
}

/// Most decisions kept for compensation while the store does not answer.
const MAX_PENDING: usize = 10_000;

/// A credit to give back once the store answers: a spend whose request timed
/// out (the store may have counted it after all), or a refund it could not take.
#[derive(Debug, Clone)]
struct Pending {
    identifier: String,
    /// Where the spend would have landed (its window's reset).
    taken: Decision,
}

impl StoreHealth {
    /// Notes the outcome of one store call; logs only when the state changes.
    /// True when this call found the store answering again after an outage.
    fn observe<T>(&self, store: &dyn LimiterStore, result: &Result<T, StoreError>) -> bool {
        match result {
            Ok(_) => {
                let recovered = self.failing.swap(false, Ordering::SeqCst);
                if recovered {
                    tracing::info!(store = %store.describe(), "the rate-limit store answers again");
                }
                recovered
            }
            Err(error) => {
                metrics::counter!("lofianime_store_errors_total").increment(1);
                if !self.failing.swap(true, Ordering::SeqCst) {
                    tracing::error!(store = %store.describe(), %error, "the rate-limit store is failing");
                } else {
                    tracing::debug!(%error, "the rate-limit store is still failing");
                }
                false
            }
        }
    }
}

/// Decides, per identifier, whether another request may spend money.
pub struct RateLimiter {
    store: Arc<dyn LimiterStore>,
    algorithm: Algorithm,
    prefix: String,
    clock: Arc<dyn Clock>,
    /// `None` when the ephemeral cache is turned off.
    cache: Option<BlockCache>,
    health: StoreHealth,
    /// Spends that timed out, given back once the store answers again.
    pending: std::sync::Mutex<Vec<Pending>>,
    /// The owner's live limit, when this limiter obeys one.
    dynamic: Option<Arc<crate::controls::DynamicLimit>>,
    /// The limit the last call decided by (a change clears the cache).
    last_limit: std::sync::atomic::AtomicU64,
}

impl RateLimiter {
    pub fn new(
        store: Arc<dyn LimiterStore>,
        algorithm: Algorithm,
        prefix: impl Into<String>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            store,
            algorithm,
            prefix: prefix.into(),
            clock,
            cache: Some(BlockCache::default()),
            health: StoreHealth::default(),
            pending: std::sync::Mutex::new(Vec::new()),
            dynamic: None,
            last_limit: std::sync::atomic::AtomicU64::new(algorithm.limit()),
        }
    }

    /// Obeys `dynamic` (the owner's live limit, `{prefix}:dynamic:global`)
    /// over the configured limit while it is set.
    pub fn with_dynamic_limit(mut self, dynamic: Arc<crate::controls::DynamicLimit>) -> Self {
        self.dynamic = Some(dynamic);
        self
    }

    /// The algorithm with the limit in force now.
    pub async fn in_force(&self) -> Algorithm {
        let Some(dynamic) = &self.dynamic else {
            return self.algorithm;
        };
        let algorithm = match dynamic.current().await {
            Some(limit) => self.algorithm.with_limit(limit),
            None => self.algorithm,
        };
        let limit = algorithm.limit();
        let before = self
            .last_limit
            .swap(limit, std::sync::atomic::Ordering::Relaxed);
        if before != limit {
            tracing::info!(
                from = before,
                to = limit,
                "the per-visitor limit in force changed"
            );
            if let Some(cache) = &self.cache {
                // Blocks decided under the old limit.
                cache.clear();
            }
        }
        algorithm
    }

    /// Turns the ephemeral block cache off (every call asks the store).
    pub fn without_cache(mut self) -> Self {
        self.cache = None;
        self
    }

    /// `{prefix}:{identifier}`: the cache key, and the base of every store key.
    fn base_key(&self, identifier: &str) -> String {
        format!("{}:{identifier}", self.prefix)
    }

    /// A spend that timed out may still be counted when the store resumes (a
    /// frozen Redis runs what was queued): it is given back then, so an outage
    /// costs visitors nothing. At most one credit per timed-out request.
    fn remember_timed_out(&self, identifier: &str, now: u64) {
        let window_ms = self.algorithm.window_ms();
        let taken = Decision {
            success: true,
            limit: self.algorithm.limit(),
            remaining: 0,
            reset_ms: (now / window_ms + 1) * window_ms,
            reason: Reason::Store,
        };
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if pending.len() < MAX_PENDING {
            pending.push(Pending {
                identifier: identifier.to_owned(),
                taken,
            });
        }
    }

    /// A refund the store could not take, to give back when it answers again.
    fn remember_refund(&self, identifier: &str, taken: &Decision) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if pending.len() < MAX_PENDING {
            pending.push(Pending {
                identifier: identifier.to_owned(),
                taken: *taken,
            });
        }
    }

    /// Gives back the spends that timed out, and the refunds that could not be
    /// made, during the outage that just ended; true when there were any.
    async fn compensate(&self) -> bool {
        let pending = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()));
        if pending.is_empty() {
            return false;
        }
        tracing::info!(
            count = pending.len(),
            "giving back spends that timed out during the store outage"
        );
        for spend in pending {
            if let Err(error) = self.refund(&spend.identifier, &spend.taken).await {
                tracing::warn!(%error, "could not give back a spend that timed out");
            }
        }
        true
    }

    /// Gives back the unit `identifier` spent when the limiter answered `taken`
    /// (a generation that delivered nothing), into the window or bucket it was
    /// taken from: a refund for a window that has ended is dropped, and none goes
    /// above the limit or the bucket's size. Says where the identifier stands after.
    pub async fn refund(&self, identifier: &str, taken: &Decision) -> Result<Decision, StoreError> {
        let base = self.base_key(identifier);
        let now = self.clock.now_ms();
        let algorithm = self.in_force().await;
        let result = match algorithm {
            Algorithm::FixedWindow { limit, window_ms }
            | Algorithm::SlidingWindow { limit, window_ms } => {
                let bucket = now / window_ms;
                if taken.reset_ms != (bucket + 1) * window_ms {
                    tracing::debug!(identifier = %crate::visitor::tag(identifier), "the window the credit was taken in has ended; nothing to refund");
                    return self.remaining(identifier).await;
                }
                self.store
                    .counter_refund(&format!("{base}:{bucket}"), limit)
                    .await
            }
            Algorithm::TokenBucket { max_tokens, .. } => {
                self.store.token_bucket_refund(&base, max_tokens).await
            }
        };
        self.health.observe(&*self.store, &result);
        if let Err(StoreError::Unavailable(_)) = &result {
            // Never sent: given back once the store answers again, so an
            // outage costs the visitor nothing. (A refund that timed out may
            // have been applied, and is not repeated.)
            self.remember_refund(identifier, taken);
        }
        let after = result?;
        if let Some(cache) = &self.cache {
            cache.unblock(&base);
        }
        match algorithm {
            // The count after the refund is the whole answer.
            Algorithm::FixedWindow { limit, .. } => {
                let remaining = (limit as i64 - after).max(0) as u64;
                Ok(Decision {
                    success: remaining > 0,
                    limit,
                    remaining,
                    reset_ms: taken.reset_ms,
                    reason: Reason::Store,
                })
            }
            // The previous window's weight, or the bucket's refill time, need a read.
            _ => self.remaining(identifier).await,
        }
    }

    /// Spends `rate` units for `identifier` (1 per generation; a negative rate is a
    /// refund) and says whether the request may proceed.
    pub async fn limit(&self, identifier: &str, rate: i64) -> Result<Decision, StoreError> {
        let base = self.base_key(identifier);
        let now = self.clock.now_ms();
        let algorithm = self.in_force().await;
        if rate > 0 {
            if let Some(reset_ms) = self.cache.as_ref().and_then(|c| c.blocked(&base, now)) {
                metrics::counter!("lofianime_limiter_decisions_total", "result" => "refused")
                    .increment(1);
                return Ok(Decision {
                    success: false,
                    limit: algorithm.limit(),
                    remaining: 0,
                    reset_ms,
                    reason: Reason::CacheBlock,
                });
            }
        }
        let result = self.limit_in_store(&base, now, rate, algorithm).await;
        if let (Err(StoreError::TimedOut(_)), true) = (&result, rate > 0) {
            self.remember_timed_out(identifier, now);
        }
        let recovered = self.health.observe(&*self.store, &result);
        if recovered && self.compensate().await && rate > 0 {
            if let Ok(Decision { success: false, .. }) = result {
                // The outage's spends are back: decide again on the counts now.
                return Box::pin(self.limit(identifier, rate)).await;
            }
        }
        let decision = result?;
        if let Some(cache) = &self.cache {
            if !decision.success {
                cache.block_until(&base, decision.reset_ms, now);
            } else if rate < 0 {
                cache.unblock(&base);
            }
        }
        if rate > 0 {
            let result = if decision.success {
                "allowed"
            } else {
                "refused"
            };
            metrics::counter!("lofianime_limiter_decisions_total", "result" => result).increment(1);
        }
        Ok(decision)
    }

    async fn limit_in_store(
        &self,
        base: &str,
        now: u64,
        rate: i64,
        algorithm: Algorithm,
    ) -> Result<Decision, StoreError> {
        let decision = |remaining: i64, limit: u64, reset_ms: u64| Decision {
            success: remaining >= 0,
            limit,
            remaining: remaining.max(0) as u64,
            reset_ms,
            reason: Reason::Store,
        };
        Ok(match algorithm {
            Algorithm::FixedWindow { limit, window_ms } => {
                let bucket = now / window_ms;
                let key = format!("{base}:{bucket}");
                let count = self.store.fixed_window(&key, window_ms, rate).await?;
                decision(limit as i64 - count, limit, (bucket + 1) * window_ms)
            }
            Algorithm::SlidingWindow { limit, window_ms } => {
                let bucket = now / window_ms;
                let current = format!("{base}:{bucket}");
                let previous = format!("{base}:{}", bucket.wrapping_sub(1));
                let remaining = self
                    .store
                    .sliding_window(&current, &previous, limit, now, window_ms, rate)
                    .await?;
                decision(remaining, limit, (bucket + 1) * window_ms)
            }
            Algorithm::TokenBucket {
                refill_rate,
                interval_ms,
                max_tokens,
            } => {
                let (remaining, reset) = self
                    .store
                    .token_bucket(base, max_tokens, interval_ms, refill_rate, now, rate)
                    .await?;
                decision(remaining, max_tokens, reset.max(0) as u64)
            }
        })
    }

    /// What `identifier` has left right now, without consuming anything.
    pub async fn remaining(&self, identifier: &str) -> Result<Decision, StoreError> {
        let base = self.base_key(identifier);
        let now = self.clock.now_ms();
        let algorithm = self.in_force().await;
        let result = self.remaining_in_store(&base, now, algorithm).await;
        if self.health.observe(&*self.store, &result) {
            Box::pin(self.compensate()).await;
        }
        let (remaining, reset_ms) = result?;
        Ok(Decision {
            success: remaining > 0,
            limit: algorithm.limit(),
            remaining: remaining.max(0) as u64,
            reset_ms,
            reason: Reason::Store,
        })
    }

    async fn remaining_in_store(
        &self,
        base: &str,
        now: u64,
        algorithm: Algorithm,
    ) -> Result<(i64, u64), StoreError> {
        Ok(match algorithm {
            Algorithm::FixedWindow { limit, window_ms } => {
                let bucket = now / window_ms;
                let used = self
                    .store
                    .fixed_window_used(&format!("{base}:{bucket}"))
                    .await?;
                (limit as i64 - used, (bucket + 1) * window_ms)
            }
            Algorithm::SlidingWindow { limit, window_ms } => {
                let bucket = now / window_ms;
                let remaining = self
                    .store
                    .sliding_window_remaining(
                        &format!("{base}:{bucket}"),
                        &format!("{base}:{}", bucket.wrapping_sub(1)),
                        limit,
                        now,
                        window_ms,
                    )
                    .await?;
                (remaining, (bucket + 1) * window_ms)
            }
            Algorithm::TokenBucket {
                interval_ms,
                max_tokens,
                ..
            } => match self.store.token_bucket_remaining(base).await? {
                Some(bucket) => (
                    bucket.tokens,
                    (bucket.refilled_at_ms + interval_ms as i64).max(0) as u64,
                ),
                None => (max_tokens as i64, now + interval_ms),
            },
        })
    }

    /// Forgets everything `identifier` has used (all windows, or the bucket).
    pub async fn reset(&self, identifier: &str) -> Result<(), StoreError> {
        let base = self.base_key(identifier);
        if let Some(cache) = &self.cache {
            cache.unblock(&base);
        }
        let pattern = match self.algorithm {
            Algorithm::FixedWindow { .. } | Algorithm::SlidingWindow { .. } => format!("{base}:*"),
            Algorithm::TokenBucket { .. } => base,
        };
        let result = self.store.delete_matching(&pattern).await;
        self.health.observe(&*self.store, &result);
        result.map(|_| ())
    }

    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The clock the limiter decides by (the `Retry-After` arithmetic uses it too).
    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }
}

#[cfg(test)]
mod tests;
