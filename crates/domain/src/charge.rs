//! What one generation cost: the credit taken from the payer's quota and the one
//! taken from the budget shared by all visitors. A [`Charge`] is a value that is
//! settled once, by how the generation ended, and that settles itself when it is
//! dropped (the visitor left, a panic), so no exit path can forget it.
//!
//! The rules follow the owner's bill, not the images delivered (the generator's
//! [`Meter`] says what may have been billed):
//! - the shared budget counts every model run that may have been billed: it is
//!   given back only when no request that can start paid work was sent (a
//!   create that could not be sent, a refusal before the model);
//! - the payer's credit comes back for failures that are not the visitor's doing
//!   (the model failing, timeouts, provider errors, our own outages), at most
//!   `max_refunds_per_window` times per window;
//! - a visitor who cancels or leaves gets the credit back only if the model had
//!   not started processing, within the same allowance, and when the provider
//!   keeps a record of the run, only if that record says so (the settlement
//!   waits for it: nothing is refunded first and taken back later); a prompt
//!   the model flags unsafe always counts;
//! - a request refused before anything ran (a reused generation id) gives both
//!   back.
//!
//! Every refund goes back to the window or bucket it was taken from
//! ([`RateLimiter::refund`]).

use crate::clock::Clock;
use crate::generator::Meter;
use crate::ratelimit::{Decision, RateLimiter};
use crate::spend::{micros, SpendLedger, SpendRow};
use crate::studio::SpendPolicy;
use std::sync::Arc;

/// The longest a visitor's Cancel waits for the provider's record before its
/// answer (normally the cancel's own answer, one round trip); a record that
/// has not come by then counts as billed.
const CANCEL_ANSWER_WAIT: std::time::Duration = std::time::Duration::from_secs(8);

/// How a charged generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// The image was delivered: everything stays spent.
    Delivered,
    /// The model, its provider or the app failed: not the visitor's doing.
    OurFailure,
    /// The visitor cancelled, or left.
    VisitorStopped,
    /// The model flagged the prompt as unsafe.
    Unsafe,
    /// Refused before anything ran.
    NothingRan,
    /// The server stopped it while shutting down: never the visitor's doing,
    /// so their credit always comes back (outside the refund allowance).
    ServerStopped,
}

/// One credit taken from one limiter for one identifier, and the limiter's answer
/// then (which window or bucket it came from).
struct Credit {
    limiter: Arc<RateLimiter>,
    identifier: String,
    taken: Decision,
}

impl Credit {
    /// Gives the credit back; the identifier's standing after it, when the store answered.
    async fn give_back(self) -> Option<Decision> {
        match self.limiter.refund(&self.identifier, &self.taken).await {
            Ok(decision) => {
                tracing::debug!(identifier = %crate::visitor::tag(&self.identifier), remaining = decision.remaining, "refunded a credit");
                Some(decision)
            }
            Err(error) => {
                tracing::error!(identifier = %crate::visitor::tag(&self.identifier), %error, "could not refund a credit");
                None
            }
        }
    }
}

/// What settling a charge did for the payer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settled {
    /// The payer's quota afterwards, when the limiter answered.
    pub payer_after: Option<Decision>,
    /// False when the payer's credit stayed spent (the generation counted).
    pub payer_refunded: bool,
    /// The model had started processing (billing) when it ended.
    pub model_started: bool,
}

/// Credits taken for one generation.
#[derive(Default)]
pub struct Charge {
    payer: Option<Credit>,
    budget: Option<Credit>,
    /// Bounds how many failures per window give the payer's credit back.
    allowance: Option<Arc<RateLimiter>>,
    /// What the model may have cost so far.
    meter: Arc<Meter>,
    /// Where the run's row goes once the provider's record is in.
    spend: Option<SpendTicket>,
}

/// Where a generation's row in the spend ledger goes, and the reservation
/// against the daily dollar budget it releases.
pub struct SpendTicket {
    pub ledger: Arc<dyn SpendLedger>,
    pub policy: SpendPolicy,
    pub clock: Arc<dyn Clock>,
    /// The UTC day the run was admitted on (its reservation's day).
    pub day: String,
    pub reservation: Option<String>,
    /// Whose run it is: the visitor's tag or the account's e-mail.
    pub who: String,
    /// The prompt it was asked for.
    pub prompt: Option<String>,
    /// The image it delivered.
    pub image: Option<String>,
}

impl SpendTicket {
    /// Writes the run's row in the background once the provider's record of
    /// it is in (a run that never started paid work only releases its
    /// reservation; a provider run whose id never reached us is left to
    /// reconciliation).
    fn account(self, meter: Arc<Meter>, ending: Ending) {
        let spawned = crate::on_drop::spawn_cleanup(async move {
            let outcome = match ending {
                Ending::Delivered => "delivered",
                Ending::OurFailure => "failed",
                Ending::VisitorStopped => "stopped",
                Ending::Unsafe => "unsafe",
                Ending::ServerStopped => "shutdown",
                Ending::NothingRan => return self.release().await,
            };
            let record = meter.settled_record().await;
            let run_id = match (
                record.as_ref().and_then(|r| r.run_id.clone()),
                meter.by_record(),
            ) {
                (Some(id), _) => id,
                (None, true) => return self.release().await,
                (None, false) => uuid::Uuid::new_v4().simple().to_string(),
            };
            let billed_ms = record.map_or(0, |r| (r.billed_secs.max(0.0) * 1000.0).round() as u64);
            self.write(SpendRow {
                run_id,
                day: self.day.clone(),
                time_ms: self.clock.now_ms(),
                outcome: outcome.into(),
                billed_ms,
                usd_micros: micros(billed_ms, self.policy.usd_per_second),
                who: self.who.clone(),
                prompt: self.prompt.clone(),
                image: self.image.clone(),
            })
            .await;
        });
        if !spawned {
            tracing::error!("a generation ended outside the runtime; its row was not written");
        }
    }

    async fn release(self) {
        if let Some(id) = &self.reservation {
            if let Err(error) = self.ledger.release(&self.day, id).await {
                tracing::warn!(%error, "could not release a reservation of the dollar budget (it lapses by itself)");
            }
        }
    }

    async fn write(&self, row: SpendRow) {
        let keep_ms = self.policy.keep_ms();
        match self
            .ledger
            .record(&row, self.reservation.as_deref(), keep_ms)
            .await
        {
            Ok(true) => {
                let seconds = row.billed_ms as f64 / 1000.0;
                metrics::gauge!("lofianime_model_billed_seconds_total").increment(seconds);
                metrics::gauge!("lofianime_spend_usd_total").increment(row.usd());
                tracing::info!(run = %row.run_id, outcome = %row.outcome, billed_secs = seconds, usd = row.usd(), "the run's cost is in the ledger");
            }
            Ok(false) => tracing::debug!(run = %row.run_id, "the run was in the ledger already"),
            Err(error) => {
                tracing::error!(run = %row.run_id, %error, "could not write the run's row in the ledger")
            }
        }
        if let Some(budget) = self.policy.budget_micros() {
            if let Ok(day) = self.ledger.day(&self.day, self.clock.now_ms()).await {
                record_budget_left(budget, day.usd_micros + day.reserved_micros);
            }
        }
    }
}

/// `lofianime_spend_budget_remaining_usd`: today's dollars left.
pub fn record_budget_left(budget_micros: u64, committed_micros: u64) {
    let left = budget_micros.saturating_sub(committed_micros) as f64 / 1e6;
    metrics::gauge!("lofianime_spend_budget_remaining_usd").set(left);
}

impl Charge {
    /// Records the credit just taken from the payer's quota.
    pub fn payer(&mut self, limiter: Arc<RateLimiter>, identifier: &str, taken: Decision) {
        self.payer = Some(Credit {
            limiter,
            identifier: identifier.to_owned(),
            taken,
        });
    }

    /// Records the credit just taken from the shared budget.
    pub fn budget(&mut self, limiter: Arc<RateLimiter>, identifier: &str, taken: Decision) {
        self.budget = Some(Credit {
            limiter,
            identifier: identifier.to_owned(),
            taken,
        });
    }

    /// Failures give the payer's credit back only while this allows.
    pub fn with_allowance(mut self, allowance: Option<Arc<RateLimiter>>) -> Self {
        self.allowance = allowance;
        self
    }

    /// The meter the generator reports what it may have cost on.
    pub fn metered_by(mut self, meter: Arc<Meter>) -> Self {
        self.meter = meter;
        self
    }

    /// The run's row goes to the ledger on `ticket` once it is settled.
    pub fn accounted_by(&mut self, ticket: SpendTicket) {
        self.spend = Some(ticket);
    }

    /// The image the run delivered, for its row.
    pub fn delivered(&mut self, image: String) {
        if let Some(ticket) = &mut self.spend {
            ticket.image = Some(image);
        }
    }

    /// Settles the charge by how the generation ended (see the module's rules).
    pub async fn settle(mut self, ending: Ending) -> Settled {
        // A stop is judged by the provider's record of the run when there is
        // one (it may take a moment to arrive); every other ending by what
        // the generator reported.
        let model_started = match ending {
            Ending::VisitorStopped => self.meter.processed_within(CANCEL_ANSWER_WAIT).await,
            _ => self.meter.processing(),
        };
        let refund_budget = match ending {
            Ending::Delivered => false,
            Ending::NothingRan => true,
            _ => !self.meter.may_bill(),
        };
        let refund_payer = match (ending, &self.payer) {
            (_, None) | (Ending::Delivered | Ending::Unsafe, _) => false,
            (Ending::NothingRan | Ending::ServerStopped, _) => true,
            (Ending::VisitorStopped, _) if model_started => false,
            (Ending::VisitorStopped | Ending::OurFailure, Some(payer)) => {
                allowance_permits(self.allowance.as_ref(), &payer.identifier).await
            }
        };
        if let Some(ticket) = self.spend.take() {
            ticket.account(self.meter.clone(), ending);
        }
        let budget = self.budget.take();
        let payer = self.payer.take();
        if let (true, Some(budget)) = (refund_budget, budget) {
            metrics::counter!("lofianime_refunds_total", "to" => "budget").increment(1);
            budget.give_back().await;
        }
        if refund_payer && payer.is_some() {
            metrics::counter!("lofianime_refunds_total", "to" => "visitor").increment(1);
        }
        let taken = payer.as_ref().map(|credit| credit.taken);
        let payer_after = match (refund_payer, payer) {
            (true, Some(payer)) => payer.give_back().await.or(taken),
            _ => taken,
        };
        Settled {
            payer_after,
            payer_refunded: refund_payer,
            model_started,
        }
    }
}

/// True while the allowance lets one more failure or stop be refunded.
async fn allowance_permits(allowance: Option<&Arc<RateLimiter>>, identifier: &str) -> bool {
    let Some(allowance) = allowance else {
        return true;
    };
    match allowance.limit(identifier, 1).await {
        Ok(decision) if decision.success => true,
        Ok(_) => {
            tracing::info!(identifier = %crate::visitor::tag(identifier), "refund allowance used up for this window: this one counts");
            false
        }
        Err(error) => {
            tracing::warn!(identifier = %crate::visitor::tag(identifier), %error, "could not read the refund allowance: this one counts");
            false
        }
    }
}

impl Drop for Charge {
    /// Dropped unsettled: the visitor left (or a panic ended the generation).
    /// Settled as a stop, in the background.
    fn drop(&mut self) {
        if let Some(ticket) = self.spend.take() {
            ticket.account(self.meter.clone(), Ending::VisitorStopped);
        }
        let refund_budget = !self.meter.may_bill();
        let payer = self.payer.take();
        let budget = self.budget.take().filter(|_| refund_budget);
        if payer.is_none() && budget.is_none() {
            return;
        }
        let allowance = self.allowance.take();
        let meter = self.meter.clone();
        tracing::info!("a generation ended without an image; settling its credits");
        let spawned = crate::on_drop::spawn_cleanup(async move {
            if let Some(budget) = budget {
                metrics::counter!("lofianime_refunds_total", "to" => "budget").increment(1);
                budget.give_back().await;
            }
            // The provider's record (when it keeps one) says whether the run
            // was billed; the credit comes back only if it was not.
            let processed = meter.processed().await;
            if let Some(payer) = payer.filter(|_| !processed) {
                if allowance_permits(allowance.as_ref(), &payer.identifier).await {
                    metrics::counter!("lofianime_refunds_total", "to" => "visitor").increment(1);
                    payer.give_back().await;
                }
            }
        });
        if !spawned {
            tracing::error!(
                "a generation ended outside the runtime; its credits could not be given back"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::ratelimit::Algorithm;
    use crate::store::MemoryStore;
    use std::time::Duration;

    fn limiter(limit: u64, prefix: &str, store: &Arc<MemoryStore>) -> Arc<RateLimiter> {
        Arc::new(RateLimiter::new(
            store.clone(),
            Algorithm::FixedWindow {
                limit,
                window_ms: 60_000,
            },
            prefix,
            store.clock().clone(),
        ))
    }

    struct Setup {
        payer: Arc<RateLimiter>,
        budget: Arc<RateLimiter>,
        allowance: Arc<RateLimiter>,
    }

    fn setup(allowance: u64) -> Setup {
        let store = Arc::new(MemoryStore::new(Arc::new(ManualClock::at(1_000))));
        Setup {
            payer: limiter(3, "payer", &store),
            budget: limiter(10, "budget", &store),
            allowance: limiter(allowance, "allowance", &store),
        }
    }

    impl Setup {
        async fn charge(&self, meter: Arc<Meter>) -> Charge {
            let mut charge = Charge::default().with_allowance(Some(self.allowance.clone()));
            let taken = self.payer.limit("v", 1).await.unwrap();
            charge.payer(self.payer.clone(), "v", taken);
            let taken = self.budget.limit("all", 1).await.unwrap();
            charge.budget(self.budget.clone(), "all", taken);
            charge.metered_by(meter)
        }

        async fn left(&self) -> (u64, u64) {
            (
                self.payer.remaining("v").await.unwrap().remaining,
                self.budget.remaining("all").await.unwrap().remaining,
            )
        }
    }

    const NOTHING_SENT: (bool, bool) = (false, false);
    const BOOTING: (bool, bool) = (true, false);
    const PROCESSING: (bool, bool) = (true, true);

    fn meter((may_bill, processing): (bool, bool)) -> Arc<Meter> {
        Meter::reading(may_bill, processing)
    }

    #[tokio::test]
    async fn each_ending_settles_by_the_bill() {
        // (ending, meter, payer left after, budget left after, refunded?)
        let cases = [
            (Ending::Delivered, PROCESSING, 2, 9, false),
            (Ending::OurFailure, PROCESSING, 3, 9, true),
            (Ending::OurFailure, BOOTING, 3, 9, true),
            (Ending::OurFailure, NOTHING_SENT, 3, 10, true),
            (Ending::VisitorStopped, PROCESSING, 2, 9, false),
            (Ending::VisitorStopped, BOOTING, 3, 9, true),
            (Ending::VisitorStopped, NOTHING_SENT, 3, 10, true),
            (Ending::Unsafe, PROCESSING, 2, 9, false),
            (Ending::NothingRan, NOTHING_SENT, 3, 10, true),
        ];
        for (ending, reading, payer, budget, refunded) in cases {
            let s = setup(5);
            let settled = s.charge(meter(reading)).await.settle(ending).await;
            assert_eq!(settled.payer_refunded, refunded, "{ending:?} {reading:?}");
            assert_eq!(settled.model_started, reading.1);
            assert_eq!(settled.payer_after.unwrap().remaining, payer, "{ending:?}");
            assert_eq!(s.left().await, (payer, budget), "{ending:?} {reading:?}");
        }
    }

    #[tokio::test]
    async fn failures_and_stops_are_refunded_only_within_the_allowance() {
        let s = setup(2);
        let failed = s
            .charge(meter(PROCESSING))
            .await
            .settle(Ending::OurFailure)
            .await;
        assert!(failed.payer_refunded);
        let stopped = s
            .charge(meter(BOOTING))
            .await
            .settle(Ending::VisitorStopped)
            .await;
        assert!(stopped.payer_refunded);
        let again = s
            .charge(meter(BOOTING))
            .await
            .settle(Ending::VisitorStopped)
            .await;
        assert!(!again.payer_refunded, "the allowance is used up");
        assert_eq!(s.left().await, (2, 7));
    }

    async fn wait_for(s: &Setup, want: (u64, u64)) {
        for _ in 0..100 {
            if s.left().await == want {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(s.left().await, want);
    }

    #[tokio::test]
    async fn a_charge_dropped_before_anything_was_sent_gives_everything_back() {
        let s = setup(5);
        drop(s.charge(meter(NOTHING_SENT)).await);
        wait_for(&s, (3, 10)).await;
    }

    #[tokio::test]
    async fn a_charge_dropped_while_the_model_booted_keeps_the_budget() {
        let s = setup(5);
        drop(s.charge(meter(BOOTING)).await);
        wait_for(&s, (3, 9)).await;
    }

    #[tokio::test]
    async fn a_charge_dropped_after_the_model_started_counts() {
        let s = setup(5);
        drop(s.charge(meter(PROCESSING)).await);
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert_eq!(s.left().await, (2, 9));
    }

    fn record(processed: bool) -> crate::generator::RunRecord {
        crate::generator::RunRecord {
            run_id: Some("p1".into()),
            processed,
            billed_secs: if processed { 1.5 } else { 0.0 },
        }
    }

    #[tokio::test]
    async fn a_stop_is_settled_by_the_providers_record_not_by_what_was_seen() {
        // Nothing reported "processing" (the create was still open), yet the
        // provider's record says the run processed: the stop counts.
        let s = setup(5);
        let meter = Meter::awaiting_record();
        let charge = s.charge(meter.clone()).await;
        let later = meter.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            later.publish(record(true));
        });
        let settled = charge.settle(Ending::VisitorStopped).await;
        assert!(!settled.payer_refunded && settled.model_started);
        assert_eq!(s.left().await, (2, 9));
        // A record that says it never processed gives the credit back.
        let meter = Meter::awaiting_record();
        meter.publish(record(false));
        let settled = s.charge(meter).await.settle(Ending::VisitorStopped).await;
        assert!(settled.payer_refunded && !settled.model_started);
        assert_eq!(s.left().await, (2, 8));
    }

    #[tokio::test]
    async fn a_dropped_charge_waits_for_the_record_before_refunding() {
        let s = setup(5);
        let meter = Meter::awaiting_record();
        drop(s.charge(meter.clone()).await);
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert_eq!(s.left().await, (2, 9), "nothing refunded before the record");
        meter.publish(record(false));
        wait_for(&s, (3, 9)).await;
        let meter = Meter::awaiting_record();
        drop(s.charge(meter.clone()).await);
        meter.publish(record(true));
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert_eq!(s.left().await, (2, 8), "a billed run counts");
    }

    #[tokio::test(start_paused = true)]
    async fn a_record_that_never_comes_counts_as_billed() {
        let s = setup(5);
        let settled = s
            .charge(Meter::awaiting_record())
            .await
            .settle(Ending::VisitorStopped)
            .await;
        assert!(!settled.payer_refunded, "counted after the wait ran out");
        assert_eq!(s.left().await, (2, 9));
    }
}
