//! One budget of calls to the provider for the whole account: Replicate
//! allows an account 600 creates and 3,000 other API calls (reads, cancels,
//! lists) a minute, all instances together. Every call takes a slot from a
//! sliding-window log in the store the instances share (memory for one
//! instance), so the account stays under its limits however many instances
//! run; a call that finds no slot waits until one frees instead of being
//! sent to meet a 429.
//!
//! Written here rather than with the app's rate limiter: that one counts
//! Upstash-style windows, which may let up to twice the limit through across a
//! window's edge; a log of the instants slots were taken never does.

use crate::shared::SharedState;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// The account's call limits (Replicate's by default).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallLimits {
    /// Creates per window.
    pub creates: u32,
    /// Every other API call (read, cancel, list, the webhook secret) per window.
    pub others: u32,
    pub window: Duration,
}

impl Default for CallLimits {
    fn default() -> Self {
        Self {
            creates: 600,
            others: 3_000,
            window: Duration::from_secs(60),
        }
    }
}

/// Which of the account's limits a call counts against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Call {
    Create,
    Other,
}

impl Call {
    fn key(self) -> &'static str {
        match self {
            Self::Create => "lofianime:provider:creates",
            Self::Other => "lofianime:provider:calls",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Other => "other",
        }
    }
}

/// Added to the window: the provider counts a call when it arrives, a little
/// after this process took its slot, and instances' clocks differ a little.
const MARGIN: Duration = Duration::from_millis(500);

pub(super) struct CallBudget {
    state: Arc<dyn SharedState>,
    limits: CallLimits,
    /// A store failure is logged once, then calls go out unbudgeted (the
    /// provider's own 429s still hold them back).
    warned: AtomicBool,
}

impl CallBudget {
    pub(super) fn new(state: Arc<dyn SharedState>, limits: CallLimits) -> Self {
        Self {
            state,
            limits,
            warned: AtomicBool::new(false),
        }
    }

    /// Waits for a slot for `call` until `deadline`; false when none freed in time.
    pub(super) async fn take(&self, call: Call, deadline: Instant) -> bool {
        let limit = match call {
            Call::Create => self.limits.creates,
            Call::Other => self.limits.others,
        };
        let window = self.limits.window + MARGIN;
        loop {
            let now_ms = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default()
                .as_millis() as u64;
            let taken = self
                .state
                .take_slot(call.key(), limit, window.as_millis() as u64, now_ms)
                .await;
            let wait = match taken {
                Ok(None) => {
                    self.warned.store(false, Ordering::Relaxed);
                    return true;
                }
                Ok(Some(wait_ms)) => Duration::from_millis(wait_ms),
                Err(error) => {
                    if !self.warned.swap(true, Ordering::Relaxed) {
                        tracing::warn!(%error, "the provider call budget could not be read; calling without it");
                    }
                    return true;
                }
            };
            // Waiters woken together spread out a little.
            let wait = wait + Duration::from_millis(rand::random_range(0..50));
            if Instant::now() + wait > deadline {
                metrics::counter!("lofianime_provider_budget_exhausted_total", "call" => call.label())
                    .increment(1);
                return false;
            }
            metrics::counter!("lofianime_provider_budget_waits_total", "call" => call.label())
                .increment(1);
            tracing::debug!(
                call = call.label(),
                wait_ms = wait.as_millis() as u64,
                "the account's provider call budget is spent; waiting"
            );
            tokio::time::sleep(wait).await;
        }
    }
}
