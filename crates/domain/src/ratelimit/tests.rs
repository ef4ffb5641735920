//! The limiter's own behaviour (keys, cache, decisions) over the memory store and
//! a ManualClock. The same behaviours are checked against Redis and Upstash REST
//! in `tests/it/limiter_stores.rs`.

use super::*;
use crate::clock::ManualClock;
use crate::store::MemoryStore;
use std::sync::atomic::AtomicUsize;

const DAY_MS: u64 = 86_400_000;

/// The memory store, watched: counts the calls reaching it, and can be switched
/// off to play an unreachable store.
struct Observed {
    inner: MemoryStore,
    calls: AtomicUsize,
    up: AtomicBool,
}

impl Observed {
    fn new(clock: Arc<ManualClock>) -> Self {
        Self {
            inner: MemoryStore::new(clock),
            calls: AtomicUsize::new(0),
            up: AtomicBool::new(true),
        }
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// Counts the call; fails it when the store is switched off.
    fn enter(&self) -> Result<(), StoreError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.up.load(Ordering::SeqCst) {
            Ok(())
        } else {
            Err(StoreError::Unavailable("connection refused".into()))
        }
    }
}

#[async_trait]
impl LimiterStore for Observed {
    fn describe(&self) -> String {
        "observed memory store".into()
    }
    async fn fixed_window(&self, key: &str, window_ms: u64, rate: i64) -> Result<i64, StoreError> {
        self.enter()?;
        self.inner.fixed_window(key, window_ms, rate).await
    }
    async fn fixed_window_used(&self, key: &str) -> Result<i64, StoreError> {
        self.enter()?;
        self.inner.fixed_window_used(key).await
    }
    async fn sliding_window(
        &self,
        c: &str,
        p: &str,
        l: u64,
        n: u64,
        w: u64,
        r: i64,
    ) -> Result<i64, StoreError> {
        self.enter()?;
        self.inner.sliding_window(c, p, l, n, w, r).await
    }
    async fn sliding_window_remaining(
        &self,
        c: &str,
        p: &str,
        l: u64,
        n: u64,
        w: u64,
    ) -> Result<i64, StoreError> {
        self.enter()?;
        self.inner.sliding_window_remaining(c, p, l, n, w).await
    }
    async fn token_bucket(
        &self,
        k: &str,
        m: u64,
        i: u64,
        f: u64,
        n: u64,
        r: i64,
    ) -> Result<(i64, i64), StoreError> {
        self.enter()?;
        self.inner.token_bucket(k, m, i, f, n, r).await
    }
    async fn token_bucket_remaining(&self, key: &str) -> Result<Option<Bucket>, StoreError> {
        self.enter()?;
        self.inner.token_bucket_remaining(key).await
    }
    async fn counter_refund(&self, key: &str, limit: u64) -> Result<i64, StoreError> {
        self.enter()?;
        self.inner.counter_refund(key, limit).await
    }

    async fn token_bucket_refund(&self, key: &str, max_tokens: u64) -> Result<i64, StoreError> {
        self.enter()?;
        self.inner.token_bucket_refund(key, max_tokens).await
    }

    async fn delete_matching(&self, pattern: &str) -> Result<u64, StoreError> {
        self.enter()?;
        self.inner.delete_matching(pattern).await
    }
}

struct Setup {
    limiter: RateLimiter,
    clock: Arc<ManualClock>,
    store: Arc<Observed>,
}

fn setup(algorithm: Algorithm, now_ms: u64) -> Setup {
    let clock = Arc::new(ManualClock::at(now_ms));
    let store = Arc::new(Observed::new(clock.clone()));
    let limiter = RateLimiter::new(store.clone(), algorithm, DEFAULT_PREFIX, clock.clone());
    Setup {
        limiter,
        clock,
        store,
    }
}

fn fixed(limit: u64, window_ms: u64) -> Algorithm {
    Algorithm::FixedWindow { limit, window_ms }
}

#[test]
fn retry_after_rounds_up_to_whole_seconds() {
    let decision = Decision {
        success: false,
        limit: 5,
        remaining: 0,
        reset_ms: DAY_MS,
        reason: Reason::Store,
    };
    assert_eq!(decision.retry_after_secs(DAY_MS - 1), 1);
    assert_eq!(decision.retry_after_secs(DAY_MS - 1_001), 2);
    assert_eq!(decision.retry_after_secs(0), 86_400);
    assert_eq!(decision.retry_after_secs(DAY_MS + 5), 1);
}

#[tokio::test]
async fn fixed_window_admits_exactly_the_limit_and_resets_at_the_bucket_end() {
    // 2025-11-27T13:00:00Z lies in day 20_419 since the epoch.
    let s = setup(fixed(5, DAY_MS), 1_764_248_400_000);
    for expected in (0..5).rev() {
        let d = s.limiter.limit("v", 1).await.unwrap();
        assert!(d.success);
        assert_eq!((d.remaining, d.reset_ms), (expected, 20_420 * DAY_MS));
    }
    let denied = s.limiter.limit("v", 1).await.unwrap();
    assert!(!denied.success);
    assert_eq!((denied.remaining, denied.limit), (0, 5));
}

#[tokio::test]
async fn fixed_window_starts_fresh_at_the_bucket_boundary() {
    let s = setup(fixed(2, 10_000), 19_999);
    s.limiter.limit("v", 1).await.unwrap();
    s.limiter.limit("v", 1).await.unwrap();
    assert!(!s.limiter.limit("v", 1).await.unwrap().success);
    // As in the JS library, the cache blocks through the reset millisecond itself.
    s.clock.set(20_000);
    assert_eq!(
        s.limiter.limit("v", 1).await.unwrap().reason,
        Reason::CacheBlock
    );
    s.clock.set(20_001);
    let d = s.limiter.limit("v", 1).await.unwrap();
    assert!(d.success);
    assert_eq!((d.remaining, d.reset_ms), (1, 30_000));
}

#[tokio::test]
async fn a_denied_identifier_is_answered_from_the_cache_until_its_reset() {
    let s = setup(fixed(1, 10_000), 5_000);
    s.limiter.limit("v", 1).await.unwrap();
    let denied = s.limiter.limit("v", 1).await.unwrap();
    assert_eq!(denied.reason, Reason::Store);
    let calls = s.store.calls();
    for _ in 0..10 {
        let cached = s.limiter.limit("v", 1).await.unwrap();
        assert_eq!(cached.reason, Reason::CacheBlock);
        assert_eq!(
            (cached.success, cached.remaining, cached.reset_ms),
            (false, 0, 10_000)
        );
    }
    assert_eq!(
        s.store.calls(),
        calls,
        "cache-blocked calls never reach the store"
    );
    // Past the reset the store is asked again, and the new window admits.
    s.clock.set(10_001);
    let d = s.limiter.limit("v", 1).await.unwrap();
    assert!(d.success && d.reason == Reason::Store);
}

#[tokio::test]
async fn a_refund_clears_the_block_and_is_not_eaten_by_refused_calls() {
    let s = setup(fixed(1, 10_000), 5_000);
    let taken = s.limiter.limit("v", 1).await.unwrap();
    for _ in 0..3 {
        assert!(!s.limiter.limit("v", 1).await.unwrap().success);
    }
    // Without the cache the refused calls would have counted past the limit;
    // either way one refund gives the one credit back.
    let refunded = s.limiter.refund("v", &taken).await.unwrap();
    assert_eq!(refunded.remaining, 1);
    let d = s.limiter.limit("v", 1).await.unwrap();
    assert!(d.success && d.reason == Reason::Store);
}

#[tokio::test]
async fn refused_calls_counted_past_the_limit_do_not_eat_a_refund() {
    let mut s = setup(fixed(5, 10_000), 1_000);
    s.limiter = s.limiter.without_cache();
    let mut taken = Vec::new();
    for _ in 0..5 {
        taken.push(s.limiter.limit("v", 1).await.unwrap());
    }
    for _ in 0..4 {
        assert!(!s.limiter.limit("v", 1).await.unwrap().success);
    }
    let after = s.limiter.refund("v", &taken[4]).await.unwrap();
    assert_eq!(after.remaining, 1, "one refund is one generation back");
}

#[tokio::test]
async fn refunds_never_go_above_the_limit() {
    let s = setup(fixed(2, 10_000), 1_000);
    let taken = s.limiter.limit("v", 1).await.unwrap();
    assert_eq!(s.limiter.refund("v", &taken).await.unwrap().remaining, 2);
    // A second refund of the same credit gives nothing more.
    assert_eq!(s.limiter.refund("v", &taken).await.unwrap().remaining, 2);
    assert_eq!(s.limiter.remaining("v").await.unwrap().remaining, 2);
}

#[tokio::test]
async fn a_refund_for_a_window_that_has_ended_is_dropped() {
    for algorithm in [
        fixed(5, 10_000),
        Algorithm::SlidingWindow {
            limit: 5,
            window_ms: 10_000,
        },
    ] {
        let s = setup(algorithm, 9_000);
        let mut taken = Vec::new();
        for _ in 0..5 {
            taken.push(s.limiter.limit("v", 1).await.unwrap());
        }
        s.clock.set(10_500);
        let before = s.limiter.remaining("v").await.unwrap().remaining;
        for ticket in &taken {
            s.limiter.refund("v", ticket).await.unwrap();
        }
        assert_eq!(
            s.limiter.remaining("v").await.unwrap().remaining,
            before,
            "{algorithm}: refunds of the last window do not feed the new one"
        );
    }
}

#[tokio::test]
async fn a_token_bucket_refund_never_overflows_the_bucket() {
    let s = setup(
        Algorithm::TokenBucket {
            refill_rate: 2,
            interval_ms: 10_000,
            max_tokens: 2,
        },
        1_000,
    );
    let taken = s.limiter.limit("v", 1).await.unwrap();
    assert_eq!(taken.remaining, 1);
    // The same credit refunded twice: the bucket is full after the first.
    s.limiter.refund("v", &taken).await.unwrap();
    s.limiter.refund("v", &taken).await.unwrap();
    assert_eq!(s.limiter.limit("v", 1).await.unwrap().remaining, 1);
    assert_eq!(s.limiter.limit("v", 1).await.unwrap().remaining, 0);
    assert!(!s.limiter.limit("v", 1).await.unwrap().success);
}

#[tokio::test]
async fn without_the_cache_every_call_reaches_the_store() {
    let mut s = setup(fixed(1, 10_000), 5_000);
    s.limiter = s.limiter.without_cache();
    for _ in 0..4 {
        s.limiter.limit("v", 1).await.unwrap();
    }
    assert_eq!(s.store.calls(), 4);
}

#[tokio::test]
async fn remaining_reads_without_consuming() {
    for algorithm in [
        fixed(3, DAY_MS),
        Algorithm::SlidingWindow {
            limit: 3,
            window_ms: DAY_MS,
        },
        Algorithm::TokenBucket {
            refill_rate: 1,
            interval_ms: DAY_MS,
            max_tokens: 3,
        },
    ] {
        let s = setup(algorithm, 42);
        assert_eq!(
            s.limiter.remaining("v").await.unwrap().remaining,
            3,
            "{algorithm}"
        );
        s.limiter.limit("v", 1).await.unwrap();
        for _ in 0..3 {
            assert_eq!(
                s.limiter.remaining("v").await.unwrap().remaining,
                2,
                "{algorithm}"
            );
        }
    }
}

#[tokio::test]
async fn token_bucket_remaining_on_a_fresh_identifier_resets_one_interval_from_now() {
    let s = setup(
        Algorithm::TokenBucket {
            refill_rate: 1,
            interval_ms: 1000,
            max_tokens: 3,
        },
        5_500,
    );
    let d = s.limiter.remaining("v").await.unwrap();
    assert_eq!((d.remaining, d.reset_ms), (3, 6_500));
}

#[tokio::test]
async fn sliding_window_counts_the_overlapping_part_of_the_previous_window() {
    let s = setup(
        Algorithm::SlidingWindow {
            limit: 4,
            window_ms: 1000,
        },
        10_000,
    );
    for _ in 0..4 {
        assert!(s.limiter.limit("v", 1).await.unwrap().success);
    }
    // A quarter into the next window, 3 of the previous 4 still count.
    s.clock.set(11_250);
    let d = s.limiter.limit("v", 1).await.unwrap();
    assert!(d.success);
    assert_eq!((d.remaining, d.reset_ms), (0, 12_000));
    assert!(!s.limiter.limit("v", 1).await.unwrap().success);
    // Halfway, only 2 count: one more fits (2 + 1 current + 1 = 4).
    s.clock.set(11_500);
    let after_cache = s.limiter.limit("v", 1).await.unwrap();
    assert_eq!(
        after_cache.reason,
        Reason::CacheBlock,
        "blocked until 12 000"
    );
}

#[tokio::test]
async fn token_bucket_refills_after_whole_intervals() {
    let s = setup(
        Algorithm::TokenBucket {
            refill_rate: 2,
            interval_ms: 1000,
            max_tokens: 3,
        },
        0,
    );
    for _ in 0..3 {
        assert!(s.limiter.limit("v", 1).await.unwrap().success);
    }
    let denied = s.limiter.limit("v", 1).await.unwrap();
    assert_eq!((denied.success, denied.reset_ms), (false, 1000));
    s.clock.set(1_500);
    let d = s.limiter.limit("v", 1).await.unwrap();
    // One interval passed: 0 + 2 tokens, minus this one; refilledAt moved to 1000.
    assert_eq!((d.success, d.remaining, d.reset_ms), (true, 1, 2000));
    // The bucket's key expires when it would be full again (here at 1500 +
    // ceil((3 - 1) / 2) * 1000); after that a fresh, full bucket starts.
    s.clock.set(2_600);
    let d = s.limiter.limit("v", 1).await.unwrap();
    assert_eq!((d.success, d.remaining, d.reset_ms), (true, 2, 3_600));
}

#[tokio::test]
async fn reset_forgets_all_windows_of_one_identifier_only() {
    let s = setup(fixed(1, 10_000), 5_000);
    s.limiter.limit("v", 1).await.unwrap();
    s.limiter.limit("w", 1).await.unwrap();
    assert!(!s.limiter.limit("v", 1).await.unwrap().success);
    s.limiter.reset("v").await.unwrap();
    assert!(s.limiter.limit("v", 1).await.unwrap().success);
    assert!(!s.limiter.limit("w", 1).await.unwrap().success);
}

#[tokio::test]
async fn a_costly_request_counts_its_cost() {
    let s = setup(fixed(5, 10_000), 0);
    let d = s.limiter.limit("v", 3).await.unwrap();
    assert_eq!(d.remaining, 2);
    let d = s.limiter.limit("v", 3).await.unwrap();
    assert!(!d.success);
}

#[tokio::test]
async fn concurrent_callers_never_get_more_than_the_limit() {
    let s = setup(fixed(5, DAY_MS), 42);
    let limiter = Arc::new(s.limiter);
    let tasks: Vec<_> = (0..500)
        .map(|_| {
            let limiter = limiter.clone();
            tokio::spawn(async move { limiter.limit("crowd", 1).await.unwrap().success })
        })
        .collect();
    let mut admitted = 0;
    for task in tasks {
        admitted += usize::from(task.await.unwrap());
    }
    assert_eq!(admitted, 5);
}

#[tokio::test]
async fn a_store_failure_is_an_error_not_a_decision() {
    let s = setup(fixed(5, DAY_MS), 0);
    s.store.up.store(false, Ordering::SeqCst);
    assert!(matches!(
        s.limiter.limit("v", 1).await,
        Err(StoreError::Unavailable(_))
    ));
    assert!(s.limiter.remaining("v").await.is_err());
}

#[tokio::test]
async fn a_refund_the_store_could_not_take_is_given_back_when_it_answers() {
    let s = setup(fixed(5, DAY_MS), 0);
    let taken = s.limiter.limit("v", 1).await.unwrap();
    assert_eq!(taken.remaining, 4);
    s.store.up.store(false, Ordering::SeqCst);
    assert!(
        s.limiter.refund("v", &taken).await.is_err(),
        "the store is down"
    );
    s.store.up.store(true, Ordering::SeqCst);
    // The first call after the outage gives it back (this call spends one).
    assert!(s.limiter.limit("v", 1).await.unwrap().success);
    assert_eq!(
        s.limiter.remaining("v").await.unwrap().remaining,
        4,
        "one spent in all: the failed refund was made"
    );
}

/// Collects what the limiter logs.
#[derive(Clone, Default)]
struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[tokio::test(flavor = "current_thread")]
async fn an_outage_is_logged_once_when_it_starts_and_once_when_it_ends() {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(captured.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let Setup { limiter, store, .. } = setup(fixed(100, DAY_MS), 0);
    limiter.limit("v", 1).await.unwrap();
    store.up.store(false, Ordering::SeqCst);
    for _ in 0..20 {
        assert!(limiter.limit("v", 1).await.is_err());
    }
    store.up.store(true, Ordering::SeqCst);
    for _ in 0..5 {
        limiter.limit("v", 1).await.unwrap();
    }
    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert_eq!(
        log.matches("the rate-limit store is failing").count(),
        1,
        "{log}"
    );
    assert!(log.contains("connection refused"), "{log}");
    assert_eq!(
        log.matches("the rate-limit store answers again").count(),
        1,
        "{log}"
    );
}
