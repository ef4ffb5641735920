//! What one generation cost: the credits taken from the payer's quota and from
//! the budget shared by all visitors. A [`Charge`] is a value that gives its
//! credits back when it is dropped, unless the generation delivered and
//! [`Charge::keep`] said so. Every way a generation can end without an image (an
//! error, a cancel, the visitor leaving, a panic in a generator) therefore
//! refunds, without each exit path having to remember it.

use crate::domain::ratelimit::{Decision, RateLimiter};
use std::sync::Arc;

/// One credit taken from one limiter for one identifier.
struct Credit {
    limiter: Arc<RateLimiter>,
    identifier: String,
}

impl Credit {
    /// Gives the credit back; the identifier's standing after it, when the store answered.
    async fn give_back(self) -> Option<Decision> {
        match self.limiter.refund(&self.identifier).await {
            Ok(decision) => {
                tracing::info!(identifier = %self.identifier, remaining = decision.remaining, "refunded a credit");
                Some(decision)
            }
            Err(error) => {
                tracing::error!(identifier = %self.identifier, %error, "could not refund a credit");
                None
            }
        }
    }
}

/// Credits taken for one generation, the payer's first.
#[derive(Default)]
pub struct Charge {
    credits: Vec<Credit>,
}

impl Charge {
    /// Records a credit just taken from `limiter` for `identifier`.
    pub fn add(&mut self, limiter: Arc<RateLimiter>, identifier: impl Into<String>) {
        self.credits.push(Credit {
            limiter,
            identifier: identifier.into(),
        });
    }

    /// How many credits this charge holds.
    pub fn len(&self) -> usize {
        self.credits.len()
    }

    pub fn is_empty(&self) -> bool {
        self.credits.is_empty()
    }

    /// The generation delivered: the credits stay spent.
    pub fn keep(mut self) {
        self.credits.clear();
    }

    /// Gives every credit back now and returns the first one's (the payer's)
    /// standing after it. Credits not yet given back when this future is dropped
    /// are given back by the drop.
    pub async fn refund(mut self) -> Option<Decision> {
        let mut payer = None;
        let mut first = true;
        while !self.credits.is_empty() {
            let after = self.credits.remove(0).give_back().await;
            if std::mem::take(&mut first) {
                payer = after;
            }
        }
        payer
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        if self.credits.is_empty() {
            return;
        }
        let credits = std::mem::take(&mut self.credits);
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                tracing::info!(
                    credits = credits.len(),
                    "a generation ended without an image; giving its credits back"
                );
                runtime.spawn(async move {
                    for credit in credits {
                        credit.give_back().await;
                    }
                });
            }
            Err(_) => tracing::error!(
                credits = credits.len(),
                "a generation ended outside the runtime; its credits could not be given back"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::clock::ManualClock;
    use crate::domain::ratelimit::Algorithm;
    use crate::domain::store::MemoryStore;
    use std::time::Duration;

    fn limiter() -> Arc<RateLimiter> {
        let clock = Arc::new(ManualClock::at(1_000));
        Arc::new(RateLimiter::new(
            Arc::new(MemoryStore::new(clock.clone())),
            Algorithm::FixedWindow {
                limit: 3,
                window_ms: 60_000,
            },
            "test",
            clock,
        ))
    }

    async fn charged(limiter: &Arc<RateLimiter>) -> Charge {
        assert!(limiter.limit("v", 1).await.unwrap().success);
        let mut charge = Charge::default();
        charge.add(limiter.clone(), "v");
        charge
    }

    async fn remaining(limiter: &RateLimiter) -> u64 {
        limiter.remaining("v").await.unwrap().remaining
    }

    #[tokio::test]
    async fn a_kept_charge_stays_spent() {
        let limiter = limiter();
        charged(&limiter).await.keep();
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(remaining(&limiter).await, 2);
    }

    #[tokio::test]
    async fn a_refund_gives_back_and_reports_the_payer() {
        let limiter = limiter();
        let after = charged(&limiter).await.refund().await.unwrap();
        assert_eq!(after.remaining, 3);
        assert_eq!(remaining(&limiter).await, 3);
    }

    #[tokio::test]
    async fn a_dropped_charge_gives_its_credits_back() {
        let limiter = limiter();
        drop(charged(&limiter).await);
        for _ in 0..100 {
            if remaining(&limiter).await == 3 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("the dropped charge was not refunded");
    }
}
