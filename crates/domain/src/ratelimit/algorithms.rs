//! The arithmetic of `@upstash/ratelimit` v2.0.8, as pure functions. The Lua
//! scripts in `scripts.rs` are their twins for Redis; the memory store calls these
//! directly; the shared store tests check that both agree.

/// The previous window's count, weighted by how much of it still overlaps the
/// sliding window: `floor((1 - (now % window) / window) * previous)`, in the
/// same double-precision arithmetic Lua uses.
pub fn sliding_weighted_previous(now_ms: u64, window_ms: u64, previous: i64) -> i64 {
    let in_current = (now_ms % window_ms) as f64 / window_ms as f64;
    ((1.0 - in_current) * previous as f64).floor() as i64
}

/// One sliding-window call on counters `current` and `previous`. Returns the
/// remaining count (negative or -1 when rejected) and the new value of the current
/// counter, or `None` when nothing is written (a rejection).
pub fn sliding_window_step(
    current: i64,
    previous: i64,
    limit: u64,
    now_ms: u64,
    window_ms: u64,
    rate: i64,
) -> (i64, Option<i64>) {
    let weighted = sliding_weighted_previous(now_ms, window_ms, previous);
    // A refund (rate <= 0) is never rejected.
    if rate > 0 && weighted + current >= limit as i64 {
        return (-1, None);
    }
    let new_current = current + rate;
    (limit as i64 - (new_current + weighted), Some(new_current))
}

/// The expiry the sliding window puts on a new current counter: long enough to
/// serve as the previous window, plus a second.
pub fn sliding_window_expiry_ms(window_ms: u64) -> u64 {
    window_ms * 2 + 1000
}

/// A token bucket as stored in Redis (`refilledAt`, `tokens`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bucket {
    pub refilled_at_ms: i64,
    pub tokens: i64,
}

/// What one token-bucket call decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BucketStep {
    /// Tokens left after this call; -1 when rejected.
    pub remaining: i64,
    /// When the next refill happens, epoch ms.
    pub reset_ms: i64,
    /// The bucket to store and its expiry (`None` expiry: leave it as is), or
    /// `None` when nothing is written (a rejection).
    pub write: Option<(Bucket, Option<u64>)>,
}

/// One token-bucket call. A missing bucket is full as of `now`.
pub fn token_bucket_step(
    stored: Option<Bucket>,
    max_tokens: u64,
    interval_ms: u64,
    refill_rate: u64,
    now_ms: u64,
    rate: i64,
) -> BucketStep {
    let (now, interval, max) = (now_ms as i64, interval_ms as i64, max_tokens as i64);
    let mut bucket = stored.unwrap_or(Bucket {
        refilled_at_ms: now,
        tokens: max,
    });
    if now >= bucket.refilled_at_ms + interval {
        let refills = (now - bucket.refilled_at_ms) / interval;
        bucket.tokens = max.min(bucket.tokens + refills * refill_rate as i64);
        bucket.refilled_at_ms += refills * interval;
    }
    let reset_ms = bucket.refilled_at_ms + interval;
    if bucket.tokens == 0 && rate > 0 {
        return BucketStep {
            remaining: -1,
            reset_ms,
            write: None,
        };
    }
    let remaining = bucket.tokens - rate;
    // ceil((max - remaining) / refillRate) * interval, as the Lua computes it.
    let expire = ((max - remaining) as f64 / refill_rate as f64).ceil() as i64 * interval;
    BucketStep {
        remaining,
        reset_ms,
        write: Some((
            Bucket {
                refilled_at_ms: bucket.refilled_at_ms,
                tokens: remaining,
            },
            (expire > 0).then_some(expire as u64),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_previous_window_weighs_less_as_the_current_one_advances() {
        assert_eq!(sliding_weighted_previous(1000, 1000, 10), 10);
        assert_eq!(sliding_weighted_previous(1250, 1000, 10), 7); // floor(7.5)
        assert_eq!(sliding_weighted_previous(1500, 1000, 10), 5);
        assert_eq!(sliding_weighted_previous(1999, 1000, 10), 0); // floor(0.01)
        assert_eq!(sliding_weighted_previous(1999, 1000, 0), 0);
    }

    #[test]
    fn sliding_window_first_request_leaves_limit_minus_one() {
        assert_eq!(sliding_window_step(0, 0, 5, 1000, 1000, 1), (4, Some(1)));
    }

    #[test]
    fn sliding_window_rejects_without_writing_once_the_weighted_sum_reaches_the_limit() {
        // 3 in the previous window at 50% overlap count as 1; with 4 current, 5 >= 5.
        assert_eq!(sliding_window_step(4, 3, 5, 1500, 1000, 1), (-1, None));
        // The request that makes it exactly 5 is still allowed.
        assert_eq!(sliding_window_step(3, 3, 5, 1500, 1000, 1), (0, Some(4)));
    }

    #[test]
    fn sliding_window_refunds_are_never_rejected() {
        assert_eq!(sliding_window_step(9, 9, 5, 1000, 1000, -1), (-12, Some(8)));
    }

    #[test]
    fn sliding_window_costs_can_exceed_one() {
        assert_eq!(sliding_window_step(1, 0, 5, 0, 1000, 3), (1, Some(4)));
        // Not rejected up front even when the cost overshoots: remaining goes negative.
        assert_eq!(sliding_window_step(4, 0, 5, 0, 1000, 3), (-2, Some(7)));
    }

    #[test]
    fn a_missing_bucket_is_full() {
        let step = token_bucket_step(None, 5, 1000, 1, 10_000, 1);
        assert_eq!(step.remaining, 4);
        assert_eq!(step.reset_ms, 11_000);
        assert_eq!(
            step.write,
            Some((
                Bucket {
                    refilled_at_ms: 10_000,
                    tokens: 4
                },
                Some(1000)
            ))
        );
    }

    #[test]
    fn an_empty_bucket_rejects_without_writing() {
        let empty = Bucket {
            refilled_at_ms: 10_000,
            tokens: 0,
        };
        let step = token_bucket_step(Some(empty), 5, 1000, 1, 10_999, 1);
        assert_eq!(
            (step.remaining, step.reset_ms, step.write),
            (-1, 11_000, None)
        );
    }

    #[test]
    fn the_bucket_refills_after_whole_intervals_only() {
        let empty = Bucket {
            refilled_at_ms: 10_000,
            tokens: 0,
        };
        // 2.5 intervals later: two refills of 2 tokens, refilledAt moves by 2 intervals.
        let step = token_bucket_step(Some(empty), 5, 1000, 2, 12_500, 1);
        assert_eq!(step.remaining, 3);
        assert_eq!(step.reset_ms, 13_000);
        assert_eq!(step.write.unwrap().0.refilled_at_ms, 12_000);
    }

    #[test]
    fn refills_never_exceed_the_maximum() {
        let low = Bucket {
            refilled_at_ms: 0,
            tokens: 1,
        };
        let step = token_bucket_step(Some(low), 5, 1000, 1, 100_000, 1);
        assert_eq!(step.remaining, 4);
    }

    #[test]
    fn a_full_bucket_after_a_refund_sets_no_expiry() {
        let full = Bucket {
            refilled_at_ms: 0,
            tokens: 4,
        };
        let step = token_bucket_step(Some(full), 5, 1000, 1, 500, -1);
        assert_eq!(step.remaining, 5);
        assert_eq!(step.write.unwrap().1, None);
    }

    #[test]
    fn a_costly_request_may_overdraw_the_bucket() {
        let bucket = Bucket {
            refilled_at_ms: 0,
            tokens: 1,
        };
        let step = token_bucket_step(Some(bucket), 5, 1000, 2, 0, 3);
        assert_eq!(step.remaining, -2);
        // ceil((5 - -2) / 2) = 4 intervals until full again.
        assert_eq!(step.write.unwrap().1, Some(4000));
    }
}
