//! The one place where a domain failure becomes what a visitor is told: the
//! mapping to [`ApiError`] (pure), and the log line with the detail that the
//! visitor never sees (one per failure, at a level that says who must act).

use crate::wire::{ApiError, Quota};
use lofianime_domain::Decision;
use lofianime_domain::ModelError;
use lofianime_domain::{LimitScope, StudioError};
use std::sync::atomic::{AtomicU64, Ordering};

/// Requests refused since the last summary: by the visitor's own limit, and by
/// the budget shared by all visitors. Counted, not logged one by one.
static REFUSED_BY_LIMIT: AtomicU64 = AtomicU64::new(0);
static REFUSED_BY_BUDGET: AtomicU64 = AtomicU64::new(0);

/// The refusals counted since the last call (limit, budget), and a fresh count.
pub fn take_refusals() -> (u64, u64) {
    (
        REFUSED_BY_LIMIT.swap(0, Ordering::Relaxed),
        REFUSED_BY_BUDGET.swap(0, Ordering::Relaxed),
    )
}

/// Logs one summary line of the refusals counted since the last one, if any.
pub fn log_refusal_summary(period_secs: u64) {
    let (limit, budget) = take_refusals();
    if limit + budget > 0 {
        tracing::info!(
            by_visitor_limit = limit,
            by_shared_budget = budget,
            "refused {} generation requests in the last {period_secs} s",
            limit + budget
        );
    }
}

pub fn quota(decision: &Decision) -> Quota {
    Quota {
        limit: decision.limit,
        remaining: decision.remaining,
        reset_ms: decision.reset_ms,
    }
}

impl From<&StudioError> for ApiError {
    fn from(failure: &StudioError) -> Self {
        match failure {
            StudioError::InvalidPrompt(reason) => Self::InvalidPrompt(reason.clone()),
            StudioError::Denied {
                decision,
                scope: LimitScope::Visitor,
            } => Self::RateLimited(quota(decision)),
            StudioError::Denied {
                decision,
                scope: LimitScope::Everyone,
            } => Self::BudgetSpent(quota(decision)),
            StudioError::Denied {
                decision,
                scope: LimitScope::Dollars,
            } => Self::DailyBudgetSpent(quota(decision)),
            StudioError::LimiterUnavailable(_) => Self::LimiterUnavailable,
            StudioError::Model { source, .. } => match source {
                ModelError::Unsafe(_) => Self::Unsafe,
                ModelError::TimedOut => Self::ModelTimedOut,
                ModelError::Busy { retry_after } => Self::ModelBusy {
                    retry_after_secs: retry_after.map_or(30, |d| d.as_secs().max(1)),
                },
                ModelError::NoServer(_) => Self::ModelUnavailable,
                _ => Self::Internal,
            },
            StudioError::Storage { .. } | StudioError::ImageStore(_) | StudioError::Ledger(_) => {
                Self::Internal
            }
            StudioError::Canceled {
                counted,
                model_started,
                ..
            } => Self::Canceled {
                counted: *counted,
                model_started: *model_started,
            },
            StudioError::JobIdTaken => Self::JobIdTaken,
            StudioError::JobBoard(_) => Self::JobBoardUnavailable,
            StudioError::ImagesUnwritable(_) => Self::ImagesUnavailable,
            StudioError::Gallery(_) => Self::RecentImagesUnavailable,
            StudioError::ShuttingDown { .. } => Self::ShuttingDown,
            StudioError::SignInRequired => Self::SignInRequired,
            StudioError::Paused => Self::Paused,
            StudioError::Blocked => Self::Blocked,
            StudioError::ImageRemoved => Self::ImageRemoved,
            StudioError::ImageDeleted => Self::ImageDeleted,
            StudioError::NoSuchImage => Self::NoSuchImage,
            StudioError::NotYourImage => Self::NotYourImage,
        }
    }
}

/// Logs what went wrong, with the detail: errors the owner must look at, warnings
/// for outages of a dependency, nothing for the visitor's own doing (a refusal, a
/// bad prompt, a cancel: those are counted, not logged one by one).
pub fn log(failure: &StudioError) {
    match failure {
        StudioError::Denied { scope, .. } => {
            let (counter, label) = match scope {
                LimitScope::Visitor => (&REFUSED_BY_LIMIT, "visitor_limit"),
                LimitScope::Everyone => (&REFUSED_BY_BUDGET, "shared_budget"),
                LimitScope::Dollars => (&REFUSED_BY_BUDGET, "dollar_budget"),
            };
            counter.fetch_add(1, Ordering::Relaxed);
            // A metric for whichever recorder the process installs.
            metrics::counter!("lofianime_refusals_total", "scope" => label).increment(1);
        }
        StudioError::InvalidPrompt(_)
        | StudioError::Canceled { .. }
        | StudioError::JobIdTaken
        | StudioError::SignInRequired
        | StudioError::Paused
        | StudioError::Blocked
        | StudioError::ImageRemoved
        | StudioError::ImageDeleted
        | StudioError::NoSuchImage
        | StudioError::NotYourImage => {
            tracing::debug!(%failure, "request refused")
        }
        StudioError::ShuttingDown { .. } => {
            tracing::info!("a generation was stopped or refused: the server is shutting down")
        }
        StudioError::Model {
            source: ModelError::Unsafe(_) | ModelError::Busy { .. },
            ..
        } => tracing::info!(%failure, "generation refused by the model service"),
        StudioError::LimiterUnavailable(_) => {
            tracing::warn!(%failure, "refusing to generate: the rate limiter is unavailable")
        }
        StudioError::JobBoard(_)
        | StudioError::Gallery(_)
        | StudioError::Ledger(_)
        | StudioError::ImagesUnwritable(_) => {
            tracing::warn!(%failure)
        }
        StudioError::ImageStore(_) => {
            tracing::warn!(%failure, "a stored image could not be read")
        }
        StudioError::Model { .. } | StudioError::Storage { .. } => {
            tracing::error!(%failure, "generation failed")
        }
    }
}

/// A generation's outcome as `lofianime_generations_total` labels it.
pub fn outcome_label<T>(outcome: &Result<T, ApiError>) -> &'static str {
    match outcome {
        Ok(_) => "ok",
        Err(ApiError::RateLimited(_)) => "denied",
        Err(ApiError::BudgetSpent(_) | ApiError::DailyBudgetSpent(_)) => "budget",
        Err(ApiError::Unsafe) => "unsafe",
        Err(ApiError::ModelTimedOut) => "timeout",
        Err(ApiError::Canceled { .. }) => "cancelled",
        Err(
            ApiError::InvalidPrompt(_)
            | ApiError::MalformedRequest(_)
            | ApiError::BadJobId
            | ApiError::JobIdTaken,
        ) => "invalid",
        Err(ApiError::LimiterUnavailable | ApiError::ImagesUnavailable) => "unavailable",
        Err(ApiError::ShuttingDown) => "shutdown",
        Err(ApiError::SignInRequired) => "sign_in_required",
        Err(ApiError::Paused) => "paused",
        Err(ApiError::Blocked) => "blocked",
        Err(_) => "failed",
    }
}

/// Counts one generation request in `lofianime_generations_total` when
/// dropped: with the outcome it was given, or as `left` (the visitor went away
/// before the answer).
pub struct OutcomeCounter(Option<&'static str>);

impl OutcomeCounter {
    pub fn start() -> Self {
        Self(None)
    }

    pub fn set<T>(&mut self, outcome: &Result<T, ApiError>) {
        self.0 = Some(outcome_label(outcome));
    }
}

impl Drop for OutcomeCounter {
    fn drop(&mut self) {
        let outcome = self.0.unwrap_or("left");
        metrics::counter!("lofianime_generations_total", "outcome" => outcome).increment(1);
    }
}

/// Logs a failure and says what the visitor is told.
pub fn answer(failure: &StudioError) -> ApiError {
    log(failure);
    ApiError::from(failure)
}

#[cfg(test)]
mod tests {
    use super::*;
    use lofianime_domain::{Decision, Reason};

    #[test]
    fn refusals_are_counted_not_logged_one_by_one() {
        let denied = |scope| StudioError::Denied {
            decision: Decision {
                success: false,
                limit: 5,
                remaining: 0,
                reset_ms: 1,
                reason: Reason::CacheBlock,
            },
            scope,
        };
        take_refusals();
        for _ in 0..3 {
            assert_eq!(
                answer(&denied(LimitScope::Visitor)),
                ApiError::RateLimited(Quota {
                    limit: 5,
                    remaining: 0,
                    reset_ms: 1
                })
            );
        }
        answer(&denied(LimitScope::Everyone));
        assert_eq!(take_refusals(), (3, 1));
        assert_eq!(take_refusals(), (0, 0), "each summary starts afresh");
        // (In the same test: the counters are process-wide.)
        refusals_are_a_metric();
        take_refusals();
    }

    fn refusals_are_a_metric() {
        let recorder = metrics_util::debugging::DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        metrics::with_local_recorder(&recorder, || {
            log(&StudioError::Denied {
                decision: Decision {
                    success: false,
                    limit: 5,
                    remaining: 0,
                    reset_ms: 1,
                    reason: Reason::Store,
                },
                scope: LimitScope::Everyone,
            });
        });
        let counted: Vec<_> = snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .map(|(key, _, _, value)| (key.key().name().to_owned(), format!("{value:?}")))
            .collect();
        assert_eq!(
            counted,
            [(
                "lofianime_refusals_total".to_owned(),
                "Counter(1)".to_owned()
            )]
        );
    }
}
