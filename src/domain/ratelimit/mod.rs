//! Rate limiting with the semantics and Redis key layout of `@upstash/ratelimit`
//! v2.0.8, so a Rust server and a Node server can share one set of counters.
//!
//! The split follows the JS library: a [`LimiterStore`] performs the atomic
//! step against its storage (in Redis, one Lua script), and [`RateLimiter`] turns
//! the numbers it returns into a [`Decision`] with the same arithmetic as the JS code.

mod memory;
mod window;

pub use memory::MemoryStore;
pub use window::{parse_window, WindowError};

use crate::domain::clock::Clock;
use async_trait::async_trait;
use std::sync::Arc;

/// The key prefix `@upstash/ratelimit` uses unless told otherwise.
pub const DEFAULT_PREFIX: &str = "@upstash/ratelimit";

/// The outcome of one limiter call, with everything a 429 or the quota display needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request may go ahead.
    pub success: bool,
    /// The most requests the window admits.
    pub limit: u64,
    /// Requests left in the current window, never negative.
    pub remaining: u64,
    /// When the current window ends, in epoch milliseconds.
    pub reset_ms: u64,
}

impl Decision {
    /// Whole seconds until the window resets, rounded up and at least 1, as
    /// `Retry-After` wants.
    pub fn retry_after_secs(&self, now_ms: u64) -> u64 {
        self.reset_ms.saturating_sub(now_ms).div_ceil(1000).max(1)
    }
}

/// A fixed window: at most `limit` requests per `window_ms`, windows aligned to the
/// Unix epoch (a "1440 m" window resets at 00:00 UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FixedWindow {
    pub limit: u64,
    pub window_ms: u64,
}

impl FixedWindow {
    /// The number of the window that contains `now_ms`.
    pub fn bucket(&self, now_ms: u64) -> u64 {
        now_ms / self.window_ms
    }

    /// The Redis key of one visitor's counter in one window.
    pub fn key(prefix: &str, identifier: &str, bucket: u64) -> String {
        format!("{prefix}:{identifier}:{bucket}")
    }

    /// Turns the counter value after an increment into a decision. The counter
    /// grows even for rejected requests, exactly as in the JS library.
    pub fn decide(&self, count: i64, bucket: u64) -> Decision {
        Decision {
            success: count <= self.limit as i64,
            limit: self.limit,
            remaining: self.remaining(count),
            reset_ms: (bucket + 1) * self.window_ms,
        }
    }

    /// What is left for a counter value, clamped at zero (a refund can push the
    /// counter below zero; more than `limit` is never shown).
    pub fn remaining(&self, count: i64) -> u64 {
        (self.limit as i64 - count).clamp(0, self.limit as i64) as u64
    }
}

/// Why a store could not answer. The limiter guards a paid API, so callers treat
/// this as "do not spend".
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the rate-limit store is unavailable: {0}")]
    Unavailable(String),
    #[error("the rate-limit store answered something unexpected: {0}")]
    Protocol(String),
}

/// Storage for counters. Each method is one atomic step, matching one Lua script
/// of `@upstash/ratelimit` so the Redis-backed stores can run the same scripts.
#[async_trait]
pub trait LimiterStore: Send + Sync + 'static {
    /// Says what the store is, for start-up logs.
    fn describe(&self) -> String;

    /// The fixed-window script: `INCRBY key rate`; when the result equals `rate`
    /// (this call created the key) `PEXPIRE key window_ms`. Returns the new count.
    async fn fixed_window_increment(
        &self,
        key: &str,
        rate: i64,
        window_ms: u64,
    ) -> Result<i64, StoreError>;

    /// The counter at `key`, or 0 when it does not exist. Never writes.
    async fn read_counter(&self, key: &str) -> Result<i64, StoreError>;
}

/// Decides, per identifier, whether another request may spend money.
pub struct RateLimiter {
    store: Arc<dyn LimiterStore>,
    window: FixedWindow,
    prefix: String,
    clock: Arc<dyn Clock>,
}

impl RateLimiter {
    pub fn new(
        store: Arc<dyn LimiterStore>,
        window: FixedWindow,
        prefix: impl Into<String>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            store,
            window,
            prefix: prefix.into(),
            clock,
        }
    }

    /// Spends `rate` units for `identifier` (1 per generation; a negative rate is a
    /// refund) and says whether the request may proceed.
    pub async fn limit(&self, identifier: &str, rate: i64) -> Result<Decision, StoreError> {
        let bucket = self.window.bucket(self.clock.now_ms());
        let key = FixedWindow::key(&self.prefix, identifier, bucket);
        let count = self
            .store
            .fixed_window_increment(&key, rate, self.window.window_ms)
            .await?;
        Ok(self.window.decide(count, bucket))
    }

    /// What `identifier` has left right now, without consuming anything.
    pub async fn remaining(&self, identifier: &str) -> Result<Decision, StoreError> {
        let bucket = self.window.bucket(self.clock.now_ms());
        let key = FixedWindow::key(&self.prefix, identifier, bucket);
        let count = self.store.read_counter(&key).await?;
        let remaining = self.window.remaining(count);
        Ok(Decision {
            success: remaining > 0,
            ..self.window.decide(count, bucket)
        })
    }

    /// The policy, for display.
    pub fn window(&self) -> FixedWindow {
        self.window
    }

    /// The clock the limiter decides by (the `Retry-After` arithmetic uses it too).
    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    pub fn describe_store(&self) -> String {
        self.store.describe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::clock::ManualClock;

    const DAY_MS: u64 = 86_400_000;

    fn five_a_day() -> FixedWindow {
        FixedWindow {
            limit: 5,
            window_ms: DAY_MS,
        }
    }

    #[test]
    fn buckets_are_aligned_to_the_unix_epoch() {
        let window = five_a_day();
        assert_eq!(window.bucket(0), 0);
        assert_eq!(window.bucket(DAY_MS - 1), 0);
        assert_eq!(window.bucket(DAY_MS), 1);
        // 2025-11-27T13:00:00Z lies in day 20_419 since the epoch.
        assert_eq!(window.bucket(1_764_248_400_000), 20_419);
    }

    #[test]
    fn keys_follow_the_upstash_layout() {
        assert_eq!(
            FixedWindow::key(DEFAULT_PREFIX, "203.0.113.9", 20_419),
            "@upstash/ratelimit:203.0.113.9:20419"
        );
    }

    #[test]
    fn the_first_request_leaves_limit_minus_one() {
        let decision = five_a_day().decide(1, 20_419);
        assert_eq!(
            decision,
            Decision {
                success: true,
                limit: 5,
                remaining: 4,
                reset_ms: 20_420 * DAY_MS,
            }
        );
    }

    #[test]
    fn the_request_that_reaches_the_limit_succeeds_and_the_next_fails() {
        let window = five_a_day();
        let at_limit = window.decide(5, 3);
        assert!(at_limit.success);
        assert_eq!(at_limit.remaining, 0);
        let over = window.decide(6, 3);
        assert!(!over.success);
        assert_eq!(over.remaining, 0);
    }

    #[test]
    fn a_refund_below_zero_never_shows_more_than_the_limit() {
        assert_eq!(five_a_day().remaining(-1), 5);
    }

    #[test]
    fn the_reset_is_the_end_of_the_current_window() {
        let window = FixedWindow {
            limit: 2,
            window_ms: 10_000,
        };
        assert_eq!(window.decide(1, window.bucket(25_000)).reset_ms, 30_000);
        assert_eq!(window.decide(1, window.bucket(29_999)).reset_ms, 30_000);
        assert_eq!(window.decide(1, window.bucket(30_000)).reset_ms, 40_000);
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        let decision = five_a_day().decide(6, 0);
        assert_eq!(decision.retry_after_secs(DAY_MS - 1), 1);
        assert_eq!(decision.retry_after_secs(DAY_MS - 1_001), 2);
        assert_eq!(decision.retry_after_secs(0), 86_400);
        // Past the reset (a slow request) still asks for at least one second.
        assert_eq!(decision.retry_after_secs(DAY_MS + 5), 1);
    }

    fn limiter_at(now_ms: u64) -> (RateLimiter, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock::at(now_ms));
        let store = Arc::new(MemoryStore::new(clock.clone()));
        let limiter = RateLimiter::new(store, five_a_day(), DEFAULT_PREFIX, clock.clone());
        (limiter, clock)
    }

    #[tokio::test]
    async fn admits_exactly_the_limit_then_denies() {
        let (limiter, _clock) = limiter_at(5 * DAY_MS + 123);
        for expected_remaining in (0..5).rev() {
            let decision = limiter.limit("v", 1).await.unwrap();
            assert!(decision.success);
            assert_eq!(decision.remaining, expected_remaining);
        }
        let denied = limiter.limit("v", 1).await.unwrap();
        assert!(!denied.success);
        assert_eq!(denied.reset_ms, 6 * DAY_MS);
    }

    #[tokio::test]
    async fn a_new_window_starts_fresh() {
        let (limiter, clock) = limiter_at(DAY_MS - 10);
        for _ in 0..6 {
            limiter.limit("v", 1).await.unwrap();
        }
        clock.set(DAY_MS);
        let decision = limiter.limit("v", 1).await.unwrap();
        assert!(decision.success);
        assert_eq!(decision.remaining, 4);
    }

    #[tokio::test]
    async fn visitors_do_not_share_counters() {
        let (limiter, _clock) = limiter_at(42);
        for _ in 0..5 {
            limiter.limit("a", 1).await.unwrap();
        }
        assert!(!limiter.limit("a", 1).await.unwrap().success);
        assert_eq!(limiter.limit("b", 1).await.unwrap().remaining, 4);
    }

    #[tokio::test]
    async fn remaining_reads_without_consuming() {
        let (limiter, _clock) = limiter_at(42);
        assert_eq!(limiter.remaining("v").await.unwrap().remaining, 5);
        limiter.limit("v", 1).await.unwrap();
        for _ in 0..3 {
            assert_eq!(limiter.remaining("v").await.unwrap().remaining, 4);
        }
    }

    #[tokio::test]
    async fn a_negative_rate_refunds() {
        let (limiter, _clock) = limiter_at(42);
        limiter.limit("v", 1).await.unwrap();
        limiter.limit("v", 1).await.unwrap();
        let refunded = limiter.limit("v", -1).await.unwrap();
        assert_eq!(refunded.remaining, 4);
        assert_eq!(limiter.remaining("v").await.unwrap().remaining, 4);
    }

    #[tokio::test]
    async fn concurrent_callers_never_get_more_than_the_limit() {
        let (limiter, _clock) = limiter_at(42);
        let limiter = Arc::new(limiter);
        let tasks: Vec<_> = (0..500)
            .map(|_| {
                let limiter = limiter.clone();
                tokio::spawn(async move { limiter.limit("crowd", 1).await.unwrap().success })
            })
            .collect();
        let mut admitted = 0;
        for task in tasks {
            if task.await.unwrap() {
                admitted += 1;
            }
        }
        assert_eq!(admitted, 5);
    }
}
