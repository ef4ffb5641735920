//! One generation, start to finish: validate the prompt, open its record, take
//! the credits, make the image, keep it. The order is the product's promise: bad
//! input is refused before anything is spent, nothing is generated without a
//! credit, and a credit spent on a generation that delivered nothing goes back.
//! The credits are a [`Charge`] and the record a [`JobRecord`]: both settle
//! themselves when dropped, so no exit path (an error, a cancel, the visitor
//! leaving, a panic) can forget a refund.

use super::answers::{FailurePolicy, Generated, LimitScope, StudioError};
use super::parts::Parts;
use crate::charge::{record_budget_left, Charge, Ending, Settled, SpendTicket};
use crate::gallery::RecentEntry;
use crate::generator::Look;
use crate::generator::{ModelError, ProgressReporter};
use crate::jobs::{JobRecord, Presence, Stop};
use crate::ratelimit::{Decision, RateLimiter};
use crate::spend::{micros, next_midnight_ms, p90, utc_day, LeaseInfo, Reservation};
use crate::storage::{ImageKey, ImageRecord, StorageError, Variants};
use crate::store::StoreError;
use lofianime_wire::progress::{JobId, JobState, Phase};
use lofianime_wire::prompt::Prompt;
use lofianime_wire::shape::Choices;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::watch;

/// The identifier of the budget shared by all visitors.
pub const EVERYONE: &str = "global";

/// How a charged generation ended without an image.
enum Spoiled {
    Model(ModelError),
    Storage(StorageError),
    Canceled,
    ServerStopped,
}

impl Spoiled {
    /// Whose doing the ending was, for the charge.
    fn ending(&self) -> Ending {
        match self {
            Self::Model(ModelError::Unsafe(_)) => Ending::Unsafe,
            Self::Model(_) | Self::Storage(_) => Ending::OurFailure,
            Self::Canceled => Ending::VisitorStopped,
            Self::ServerStopped => Ending::ServerStopped,
        }
    }

    fn into_error(self, decision: Option<Decision>, settled: Settled) -> StudioError {
        match self {
            Self::Model(source) => StudioError::Model { source, decision },
            Self::Storage(source) => StudioError::Storage { source, decision },
            Self::Canceled => StudioError::Canceled {
                decision,
                counted: !settled.payer_refunded,
                model_started: settled.model_started,
            },
            Self::ServerStopped => StudioError::ShuttingDown { decision },
        }
    }
}

/// One request to generate.
#[derive(Clone, Copy)]
pub struct Order<'a> {
    /// Whose quota pays: the limiter's identifier (the visitor, or one shared
    /// identifier for everyone).
    pub payer: &'a str,
    /// The quota the payer's credit comes from (signed-out visitors may have
    /// one of their own).
    pub quota: &'a Arc<RateLimiter>,
    /// Who asked: the visitor (their job records and recent images).
    pub visitor: &'a str,
    /// What the owner's deny list may name them by.
    pub names: &'a [String],
    pub prompt: &'a str,
    /// The id the page chose, so it can follow and cancel the generation.
    pub job: Option<&'a JobId>,
    /// The shape, and the seed when the visitor gave one (else a random one).
    pub choices: Choices,
    /// Who waits for the answer on this instance, when the generation may go
    /// on without them for a while (a page that reloads comes back to it);
    /// `None`: it ends with its caller, as an API call does.
    pub presence: Option<&'a Presence>,
    /// When the image's page variants are made: before the answer for a
    /// page, on first request for the JSON API.
    pub variants: Variants,
}

/// One call of the generator, counted and timed (`lofianime_model_calls_total`,
/// `lofianime_model_duration_seconds`) however it ends, when dropped.
struct ModelCall {
    started: Instant,
    generator: &'static str,
}

impl ModelCall {
    fn start(offline: bool) -> Self {
        let generator = if offline { "offline" } else { "model" };
        metrics::counter!("lofianime_model_calls_total", "generator" => generator).increment(1);
        Self {
            started: Instant::now(),
            generator,
        }
    }
}

impl Drop for ModelCall {
    fn drop(&mut self) {
        metrics::histogram!("lofianime_model_duration_seconds", "generator" => self.generator)
            .record(self.started.elapsed().as_secs_f64());
    }
}

/// Where a server's shutdown is: running, draining (no new generations; the
/// running ones may finish), stopping (the running ones are stopped).
#[derive(Clone)]
pub struct Shutdown(Arc<watch::Sender<u8>>);

const DRAINING: u8 = 1;
const STOPPING: u8 = 2;

impl Default for Shutdown {
    fn default() -> Self {
        Self(Arc::new(watch::channel(0).0))
    }
}

impl Shutdown {
    /// No new generations from now on.
    pub fn drain(&self) {
        self.0.send_if_modified(|stage| {
            let was = *stage;
            *stage = (*stage).max(DRAINING);
            was != *stage
        });
    }

    /// Stops the generations still running.
    pub fn stop(&self) {
        self.0.send_replace(STOPPING);
    }

    pub fn is_draining(&self) -> bool {
        *self.0.borrow() >= DRAINING
    }

    /// Resolves once the running generations are to stop.
    async fn stopped(&self) {
        let mut stage = self.0.subscribe();
        let _ = stage.wait_for(|stage| *stage >= STOPPING).await;
    }
}

impl Parts {
    /// Runs one generation. Nothing is written for a request the limits refuse:
    /// the record the page follows is opened only after admission.
    pub async fn run(&self, order: Order<'_>) -> Result<Generated, StudioError> {
        let prompt = Prompt::parse(order.prompt, self.max_prompt_chars)?;
        if self.pause.is_paused().await {
            return Err(StudioError::Paused);
        }
        // A deny list that cannot be read lets the limiter decide (it meets
        // the same outage, and by default refuses).
        let names: Vec<&str> = order.names.iter().map(String::as_str).collect();
        if let Ok(true) = self.deny.blocks(&names).await {
            tracing::info!(visitor = %crate::visitor::tag(order.visitor), "generation refused: the visitor is on the deny list");
            return Err(StudioError::Blocked);
        }
        if self.shutdown.is_draining() {
            return Err(StudioError::ShuttingDown { decision: None });
        }
        // Nothing is paid for that could not be kept.
        if let Err(problem) = self.writable.check().await {
            return Err(StudioError::ImagesUnwritable(problem));
        }
        let (mut charge, decision) = self.take_credits(order.payer, order.quota).await?;
        let lease = match self.spend_ticket(order.visitor, prompt.as_str()).await {
            Ok(ticket) => {
                let lease = LeaseInfo {
                    who: ticket.who.clone(),
                    day: ticket.day.clone(),
                    reservation: ticket.reservation.clone(),
                };
                charge.accounted_by(ticket);
                lease
            }
            Err(refused) => {
                charge.settle(Ending::NothingRan).await;
                return Err(refused);
            }
        };
        let record = match order.job {
            Some(id) => match self
                .open_record(id, order.visitor, prompt.as_str(), order.presence)
                .await
            {
                Ok(record) => record,
                Err(taken) => {
                    charge.settle(Ending::NothingRan).await;
                    return Err(taken);
                }
            },
            None => None,
        };
        let look = Look {
            aspect: order.choices.aspect,
            seed: order.choices.seed.unwrap_or_else(rand::random),
        };
        let result = self
            .deliver(
                order.visitor,
                (prompt, look, order.variants),
                (charge, lease),
                decision,
                record.as_ref(),
            )
            .await;
        if let Some(record) = record {
            record
                .end(match &result {
                    Ok(_) => JobState::Finished,
                    Err(StudioError::Canceled { .. } | StudioError::ShuttingDown { .. }) => {
                        JobState::Canceled
                    }
                    Err(_) => JobState::Failed,
                })
                .await;
        }
        result
    }

    /// The record the page follows; a store that cannot keep it costs the
    /// visitor the progress line, not the generation.
    async fn open_record(
        &self,
        id: &JobId,
        visitor: &str,
        prompt: &str,
        presence: Option<&Presence>,
    ) -> Result<Option<JobRecord>, StudioError> {
        match self.jobs.open(id, visitor, prompt, presence.cloned()).await {
            Ok(Some(record)) => Ok(Some(record)),
            Ok(None) => Err(StudioError::JobIdTaken),
            Err(error) => {
                tracing::warn!(%error, "could not record the generation; its progress cannot be followed");
                Ok(None)
            }
        }
    }

    /// Makes and keeps the image, and settles the charge by how that ended.
    async fn deliver(
        &self,
        visitor: &str,
        (prompt, look, variants): (Prompt, Look, Variants),
        (charge, lease): (Charge, LeaseInfo),
        decision: Option<Decision>,
        record: Option<&JobRecord>,
    ) -> Result<Generated, StudioError> {
        let started = Instant::now();
        let (progress, phases) = ProgressReporter::channel();
        let mut charge = charge.metered_by(progress.meter());
        if !self.generator.is_offline() {
            // Until the run's record is in: a crash leaves a lapsing lease
            // that another instance (or this one, restarted) finds.
            let bound = self.spend.run_deadline + crate::generator::RECORD_WAIT;
            self.leases.hold(progress.meter(), lease, bound);
        }
        let owner = crate::visitor::tag(visitor);
        let (key, stored) = match self
            .produce((&prompt, look, &owner), variants, &progress, phases, record)
            .await
        {
            Ok(stored) => stored,
            Err(spoiled) => {
                let settled = charge.settle(spoiled.ending()).await;
                if matches!(spoiled, Spoiled::Canceled) {
                    tracing::info!(
                        elapsed_ms = started.elapsed().as_millis() as u64,
                        counted = !settled.payer_refunded,
                        "the visitor cancelled the generation"
                    );
                }
                let after = settled.payer_after.or(decision);
                return Err(spoiled.into_error(after, settled));
            }
        };
        charge.delivered(key.to_string());
        charge.settle(Ending::Delivered).await;
        let kept = RecentEntry {
            image: key.clone(),
            prompt: prompt.to_string(),
            created_ms: stored.created_ms,
            width: stored.width,
            height: stored.height,
        };
        if let Err(error) = self.gallery.add(visitor, &kept).await {
            tracing::warn!(%error, "could not add the image to the visitor's recent images");
        }
        tracing::info!(
            image = %key,
            elapsed_ms = started.elapsed().as_millis() as u64,
            remaining = decision.map(|d| d.remaining),
            "generated image"
        );
        Ok(Generated {
            prompt,
            image: key,
            record: stored,
            decision,
        })
    }

    /// One credit from the payer, then one from the shared budget. A refusal or
    /// an outage of the second gives the first back before answering.
    async fn take_credits(
        &self,
        payer: &str,
        quota: &Arc<RateLimiter>,
    ) -> Result<(Charge, Option<Decision>), StudioError> {
        let mut charge = Charge::default().with_allowance(self.refund_allowance.clone());
        let decision = match quota.limit(payer, 1).await {
            Ok(decision) if decision.success => {
                charge.payer(quota.clone(), payer, decision);
                Some(decision)
            }
            Ok(decision) => {
                tracing::debug!(reset_ms = decision.reset_ms, reason = ?decision.reason, "generation denied: no generations remaining");
                return Err(StudioError::Denied {
                    decision,
                    scope: LimitScope::Visitor,
                });
            }
            Err(error) => self.uncounted(error)?,
        };
        let Some(budget) = &self.budget else {
            return Ok((charge, decision));
        };
        let refused = match budget.limit(EVERYONE, 1).await {
            Ok(spent) if spent.success => {
                charge.budget(budget.clone(), EVERYONE, spent);
                return Ok((charge, decision));
            }
            Ok(spent) => {
                tracing::warn!(
                    reset_ms = spent.reset_ms,
                    "generation denied: the budget for all visitors is spent"
                );
                StudioError::Denied {
                    decision: spent,
                    scope: LimitScope::Everyone,
                }
            }
            Err(error) => match self.uncounted(error) {
                Ok(_) => return Ok((charge, decision)),
                Err(unavailable) => unavailable,
            },
        };
        // The payer's credit was not used: it goes back before the answer.
        charge.settle(Ending::NothingRan).await;
        Err(refused)
    }

    /// Where this run's row goes; with a daily dollar budget, a reservation of
    /// the run's expected cost first, refused when the day's spent and held
    /// dollars would pass the budget.
    async fn spend_ticket(&self, visitor: &str, prompt: &str) -> Result<SpendTicket, StudioError> {
        let now_ms = self.limiter.now_ms();
        let mut ticket = SpendTicket {
            ledger: self.ledger.clone(),
            policy: self.spend.clone(),
            clock: self.clock.clone(),
            day: utc_day(now_ms),
            reservation: None,
            who: if visitor.contains('@') {
                visitor.to_owned()
            } else {
                crate::visitor::tag(visitor)
            },
            prompt: Some(prompt.to_owned()),
            image: None,
        };
        // The owner's live budget, else the settings'.
        let Some(budget) = self
            .daily_usd
            .current()
            .await
            .or(self.spend.budget_micros())
        else {
            return Ok(ticket);
        };
        let expected = match self.expected_cost().await {
            Ok(expected) => expected,
            Err(error) => return self.uncounted(error).map(|_| ticket),
        };
        let reservation = Reservation {
            day: ticket.day.clone(),
            id: uuid::Uuid::new_v4().simple().to_string(),
            micros: expected,
            budget_micros: budget,
            now_ms,
            expires_ms: now_ms + self.spend.run_deadline.as_millis() as u64 + 60_000,
            keep_ms: self.spend.keep_ms(),
        };
        match self.ledger.reserve(&reservation).await {
            Ok(reserved) if reserved.admitted => {
                record_budget_left(budget, reserved.committed_micros);
                ticket.reservation = Some(reservation.id);
                Ok(ticket)
            }
            Ok(reserved) => {
                record_budget_left(budget, reserved.committed_micros);
                tracing::warn!(
                    spent_and_held_usd = reserved.committed_micros as f64 / 1e6,
                    budget_usd = budget as f64 / 1e6,
                    "generation denied: today's dollar budget is used up"
                );
                let cents = |micros: u64| micros / 10_000;
                Err(StudioError::Denied {
                    decision: Decision {
                        success: false,
                        limit: cents(budget),
                        remaining: cents(budget.saturating_sub(reserved.committed_micros)),
                        reset_ms: next_midnight_ms(now_ms),
                        reason: crate::ratelimit::Reason::Store,
                    },
                    scope: LimitScope::Dollars,
                })
            }
            Err(error) => self.uncounted(error).map(|_| ticket),
        }
    }

    /// What the next run is expected to cost, in micro-dollars: the 90th
    /// percentile of the last 100 billed runs, or `spend.expected_seconds`
    /// until there are 20.
    async fn expected_cost(&self) -> Result<u64, StoreError> {
        let recent = self.ledger.recent_billed_ms().await?;
        let expected_ms = match p90(&recent) {
            Some(p90) if recent.len() >= 20 => p90,
            _ => (self.spend.expected_seconds * 1000.0).round() as u64,
        };
        Ok(micros(expected_ms, self.spend.usd_per_second))
    }

    /// The failure policy's answer to a store outage: refuse, or go on uncounted.
    fn uncounted(&self, error: StoreError) -> Result<Option<Decision>, StudioError> {
        match self.on_store_failure {
            FailurePolicy::Deny => Err(StudioError::LimiterUnavailable(error)),
            FailurePolicy::Allow => {
                tracing::warn!(%error, "rate-limit store unavailable; going on uncounted (on_store_failure = allow)");
                Ok(None)
            }
        }
    }

    /// Makes the image while watching for a cancel, then keeps it.
    async fn produce(
        &self,
        (prompt, look, owner_tag): (&Prompt, Look, &str),
        variants: Variants,
        progress: &ProgressReporter,
        phases: watch::Receiver<Phase>,
        record: Option<&JobRecord>,
    ) -> Result<(ImageKey, ImageRecord), Spoiled> {
        let call = ModelCall::start(self.generator.is_offline());
        let mut image = tokio::select! {
            made = self.generator.generate_look(prompt, look, progress) => made.map_err(Spoiled::Model)?,
            // Dropping the generator's future stops it (a hosted model's
            // prediction is cancelled on its side).
            stop = self.watch(record, phases) => {
                if stop == Stop::Abandoned {
                    tracing::info!("nobody came back to the generation: stopping it");
                }
                return Err(Spoiled::Canceled);
            }
            // Past the shutdown's grace period: dropping the generator's future
            // cancels the model run; the visitor's credit comes back.
            () = self.shutdown.stopped() => return Err(Spoiled::ServerStopped),
        };
        drop(call);
        image.owner = Some(owner_tag.to_owned());
        if let Some(record) = record {
            record.report(JobState::Running(Phase::Saving)).await;
        }
        let stored = self
            .images
            .put_with(&image, prompt.as_str(), self.limiter.now_ms(), variants)
            .await
            .map_err(Spoiled::Storage)?;
        tracing::debug!(image = %stored.0, bytes = image.bytes.len(), "stored the image and its variants");
        Ok(stored)
    }

    /// Reports `phases` to the record and returns when a cancel was requested
    /// or nobody watched the generation for the grace period (never, without
    /// a record).
    async fn watch(&self, record: Option<&JobRecord>, mut phases: watch::Receiver<Phase>) -> Stop {
        let Some(record) = record else {
            return std::future::pending().await;
        };
        let mut check = tokio::time::interval(self.cancel_check);
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut reporting = true;
        loop {
            tokio::select! {
                changed = phases.changed(), if reporting => {
                    if changed.is_err() {
                        reporting = false;
                        continue;
                    }
                    let phase = *phases.borrow_and_update();
                    record.report(JobState::Running(phase)).await;
                }
                _ = check.tick() => if let Some(stop) = record.should_stop().await {
                    return stop;
                },
            }
        }
    }
}
