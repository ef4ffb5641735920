//! The domain's front door: every use case the web side needs, each taking the
//! visitor who asks and returning domain values. The studio owns the policies
//! the HTTP side must not decide: who pays for a generation, the budget shared
//! by all visitors, what happens when the limiter's store is down.

mod answers;
mod controls;
mod generation;
mod ledger;
mod marks;
mod parts;
#[cfg(test)]
mod tests;

pub use answers::{FailurePolicy, Generated, LimitScope, StudioError};
pub use controls::{Limits, Live, LiveLimit};
pub use generation::Shutdown;
pub use parts::{Components, Policy, RemoteStore, SignedOut, SpendPolicy};

use crate::controls::{DenyList, DynamicLimit, PauseSwitch, RemovedImages};
use crate::gallery::RecentEntry;
use crate::generator::ImageFormat;
use crate::jobs::{CancelOutcome, JobBoard, JobSnapshot, Presence, RunningJob};
use crate::ratelimit::{Algorithm, Decision, LimiterStore, RateLimiter};
use crate::spend::{utc_day, OrphanSweep, Reconciler, RefusalTally, RunLeases};
use crate::storage::{ImageKey, ImageRecord, ImageStream, Variants, Writability};
use crate::visitor::{Visitor, WhoPays};
use generation::Order;
use lofianime_wire::progress::{JobId, JobProgress};
use lofianime_wire::shape::Choices;
use lofianime_wire::{ImageId, Variant};
use parts::{Parts, REFUNDS_PREFIX};
use std::sync::Arc;
use std::time::Duration;

pub struct Studio {
    parts: Parts,
    who_pays: WhoPays,
    /// Signed-out visitors' own quota (`auth.mode = "optional"`), if they have one.
    signed_out_quota: Option<Arc<RateLimiter>>,
    /// Signed-out visitors may not generate.
    must_sign_in: bool,
    /// The limiter's store, for readiness checks.
    limiter_store: Arc<dyn LimiterStore>,
    /// Writes the rows of runs nobody settled, from the provider's list.
    reconciler: Option<Reconciler>,
    /// Stops the runs nobody watches (their process died).
    orphans: Option<OrphanSweep>,
    /// The owner's live per-visitor limit.
    dynamic: Arc<DynamicLimit>,
    /// The owner's live limits for signed-out visitors and the shared budget.
    anonymous_limit: Arc<DynamicLimit>,
    global_limit: Arc<DynamicLimit>,
    /// Refused generations not yet added to the day's totals.
    refusals: RefusalTally,
}

/// Where the owner's live limits other than the per-visitor one are kept.
const LIVE_ANONYMOUS_LIMIT: &str = "lofianime:control:anonymous_limit";
const LIVE_GLOBAL_LIMIT: &str = "lofianime:control:global_limit";
const LIVE_DAILY_USD: &str = "lofianime:control:daily_usd";

/// A dependency's answer to a readiness check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readiness {
    /// "limiter store" or "image store".
    pub dependency: &'static str,
    /// `None` when it answered; otherwise what went wrong.
    pub problem: Option<String>,
}

impl Studio {
    pub fn new(policy: Policy, components: Components) -> Self {
        let limiter = |algorithm, prefix: &str, cache: bool| {
            let limiter = RateLimiter::new(
                components.limiter_store.clone(),
                algorithm,
                prefix,
                components.clock.clone(),
            );
            if cache {
                limiter
            } else {
                limiter.without_cache()
            }
        };
        let quota = |algorithm| limiter(algorithm, &policy.prefix, policy.ephemeral_cache);
        // Without the cache: a used-up allowance must not hide a reset.
        let refund_allowance = policy.max_refunds_per_window.map(|limit| {
            let window = Algorithm::FixedWindow {
                limit,
                window_ms: policy.algorithm.window_ms(),
            };
            Arc::new(limiter(window, REFUNDS_PREFIX, false))
        });
        let live_count = |key: &str| {
            Arc::new(DynamicLimit::count_at(
                components.controls.clone(),
                key.into(),
            ))
        };
        let anonymous_limit = live_count(LIVE_ANONYMOUS_LIMIT);
        let global_limit = live_count(LIVE_GLOBAL_LIMIT);
        let shared_budget = policy
            .budget
            .map(|budget| Arc::new(quota(budget).with_dynamic_limit(global_limit.clone())));
        let signed_out_quota = match policy.signed_out {
            SignedOut::OwnQuota(algorithm) => Some(Arc::new(
                quota(algorithm).with_dynamic_limit(anonymous_limit.clone()),
            )),
            SignedOut::SameQuota | SignedOut::MustSignIn => None,
        };
        let leases = Arc::new(RunLeases::new(
            components.shared.clone(),
            components.clock.clone(),
        ));
        let orphans = components.history.clone().map(|history| OrphanSweep {
            ledger: components.ledger.clone(),
            history,
            leases: leases.clone(),
            usd_per_second: policy.spend.usd_per_second,
            keep_ms: policy.spend.keep_ms(),
            run_deadline_ms: policy.spend.run_deadline.as_millis() as u64,
            started_ms: components.clock.now_ms(),
            takeover_after_ms: policy.spend.takeover_after.as_millis() as u64,
            leases_outlive_process: components.shared.outlives_process(),
        });
        // The per-visitor limit only: the shared budget's counter lives under
        // the same prefix and keeps its own limit.
        let dynamic = Arc::new(DynamicLimit::new(
            components.controls.clone(),
            &policy.prefix,
        ));
        Self {
            dynamic: dynamic.clone(),
            anonymous_limit,
            global_limit,
            parts: Parts {
                limiter: Arc::new(quota(policy.algorithm).with_dynamic_limit(dynamic)),
                budget: shared_budget,
                daily_usd: Arc::new(crate::controls::LiveValue::dollars_at(
                    components.controls.clone(),
                    LIVE_DAILY_USD.into(),
                )),
                deny: Arc::new(DenyList::new(components.controls.clone(), &policy.prefix)),
                pause: Arc::new(PauseSwitch::new(components.controls.clone())),
                removed: Arc::new(RemovedImages::new(components.controls.clone())),
                deleted: Arc::new(RemovedImages::deleted(components.controls.clone())),
                generator: components.generator,
                writable: Arc::new(Writability::new(components.images.clone())),
                images: components.images,
                max_prompt_chars: policy.max_prompt_chars,
                on_store_failure: policy.on_store_failure,
                shared: components.shared.clone(),
                leases,
                jobs: Arc::new(
                    JobBoard::new(
                        components.shared,
                        components.clock.clone(),
                        policy.job_ttl_ms,
                    )
                    .with_grace(policy.return_grace.as_millis() as u64),
                ),
                gallery: Arc::new(crate::gallery::Queued::new(components.gallery)),
                cancel_check: policy.cancel_check,
                refund_allowance,
                shutdown: Shutdown::default(),
                ledger: components.ledger.clone(),
                spend: policy.spend.clone(),
                clock: components.clock.clone(),
            },
            who_pays: policy.who_pays,
            signed_out_quota,
            must_sign_in: policy.signed_out == SignedOut::MustSignIn,
            limiter_store: components.limiter_store,
            reconciler: components
                .history
                .map(|history| Reconciler::new(components.ledger, history, &policy.spend)),
            orphans,
            refusals: RefusalTally::default(),
        }
    }

    /// Whether `visitor` may generate at all (signed-out visitors may have to sign in).
    pub fn may_generate(&self, visitor: &Visitor) -> bool {
        visitor.is_signed_in() || !self.must_sign_in
    }

    /// Generations per window of a signed-out visitor's own quota, when they
    /// have one (under [`WhoPays::Everyone`] everyone spends the one quota).
    pub fn signed_out_limit(&self) -> Option<u64> {
        self.signed_out_own_quota()
            .map(|own| own.algorithm().limit())
    }

    fn signed_out_own_quota(&self) -> Option<&Arc<RateLimiter>> {
        self.signed_out_quota
            .as_ref()
            .filter(|_| self.who_pays == WhoPays::EachVisitor)
    }

    /// The quota `visitor`'s generations come from: a signed-out visitor's own
    /// when they have one, else the one quota (shared by everyone under
    /// [`WhoPays::Everyone`]).
    fn quota_of(&self, visitor: &Visitor) -> &Arc<RateLimiter> {
        match self.signed_out_own_quota() {
            Some(own) if !visitor.is_signed_in() => own,
            _ => &self.parts.limiter,
        }
    }

    /// The server's shutdown, which the studio's generations follow.
    pub fn shutdown(&self) -> &Shutdown {
        &self.parts.shutdown
    }

    /// Whether the limiter's store and the image store answer, each within
    /// `bound` (one read each: a counter and a missing image record).
    pub async fn readiness(&self, bound: Duration) -> [Readiness; 2] {
        let limiter = tokio::time::timeout(
            bound,
            self.limiter_store.fixed_window_used("lofianime:readyz"),
        );
        // A small write (probed at most every few seconds): a store that
        // answers reads but cannot save images is not ready.
        let images = tokio::time::timeout(bound, self.parts.writable.check());
        let (limiter, images) = tokio::join!(limiter, images);
        /// What went wrong with one check, if anything.
        fn problem<T, E: std::fmt::Display>(
            answer: Result<Result<T, E>, tokio::time::error::Elapsed>,
            bound: Duration,
        ) -> Option<String> {
            match answer {
                Ok(Ok(_)) => None,
                Ok(Err(error)) => Some(error.to_string()),
                Err(_) => Some(format!("no answer within {} ms", bound.as_millis())),
            }
        }
        [
            Readiness {
                dependency: "limiter store",
                problem: problem(limiter, bound),
            },
            Readiness {
                dependency: "image store",
                problem: problem(images, bound),
            },
        ]
    }

    /// What each part is, for the start-up log (never with credentials).
    pub fn describe(&self) -> Vec<(&'static str, String)> {
        let parts = &self.parts;
        vec![
            ("generator", parts.generator.describe()),
            ("image storage", parts.images.describe()),
            ("generations in flight", parts.jobs.describe()),
            ("recent images", parts.gallery.describe()),
        ]
    }

    /// True when no hosted model is involved.
    pub fn is_offline(&self) -> bool {
        self.parts.generator.is_offline()
    }

    /// The owner's model servers' webhooks (Cog), when they call back.
    pub fn cog_webhooks(&self) -> Option<crate::generator::CogWebhooks> {
        self.parts.generator.cog_webhooks()
    }

    /// How many of the owner's model servers are up, of how many (`None`
    /// without servers of its own).
    pub async fn model_servers(&self) -> Option<(usize, usize)> {
        self.parts.generator.model_servers().await
    }

    /// Each of the owner's model servers and what its health check says.
    pub async fn model_server_health(&self) -> Vec<(String, String)> {
        self.parts.generator.server_health().await
    }

    /// How many model servers of its own the generator has, without asking them.
    pub fn model_servers_known(&self) -> Option<usize> {
        self.parts.generator.model_servers_count()
    }

    /// Whether the model provider calls back (its webhooks are taken).
    pub fn takes_model_webhooks(&self) -> bool {
        self.parts.generator.webhooks().is_some()
    }

    /// One delivery of the model provider's webhooks (`run`: the `?run=` of
    /// the address it came to), verified and recorded; a refusal changes
    /// nothing. When it says a run is over whose instance is gone without
    /// seeing it end, the run's row is written by the provider's record.
    pub async fn receive_model_webhook(
        &self,
        run: Option<&str>,
        headers: &reqwest::header::HeaderMap,
        body: &[u8],
    ) -> Result<crate::generator::WebhookOutcome, crate::generator::WebhookRefusal> {
        let Some(webhooks) = self.parts.generator.webhooks() else {
            return Err(crate::generator::WebhookRefusal::Unverified(
                "webhooks are off for this app".into(),
            ));
        };
        let (outcome, over) = webhooks.receive(run, headers, body).await?;
        if let Some(crate::generator::RunRecord {
            run_id: Some(run_id),
            billed_secs,
            ..
        }) = over
        {
            let rows = crate::spend::OrphanRows {
                ledger: self.parts.ledger.clone(),
                usd_per_second: self.parts.spend.usd_per_second,
                keep_ms: self.parts.spend.keep_ms(),
            };
            let leases = self.parts.leases.clone();
            tokio::spawn(async move {
                rows.settle_if_abandoned(&leases, &run_id, billed_secs)
                    .await;
            });
        }
        Ok(outcome)
    }

    /// The clock the limits are decided by (`Retry-After` arithmetic uses it too).
    pub fn now_ms(&self) -> u64 {
        self.parts.limiter.now_ms()
    }

    /// Generates an image for `visitor` if their quota and the shared budget allow.
    pub async fn generate(
        &self,
        visitor: &Visitor,
        prompt: &str,
        job: Option<&JobId>,
    ) -> Result<Generated, StudioError> {
        self.generate_with(visitor, prompt, job, Choices::default())
            .await
    }

    /// [`Studio::generate`] in the visitor's chosen shape, from their seed
    /// when they gave one (else a random one).
    pub async fn generate_with(
        &self,
        visitor: &Visitor,
        prompt: &str,
        job: Option<&JobId>,
        choices: Choices,
    ) -> Result<Generated, StudioError> {
        self.generate_watched(visitor, prompt, job, choices, None, Variants::First)
            .await
    }

    /// [`Studio::generate_with`] for the JSON API, whose answer is the
    /// original's URL: the image's page variants are made when first asked
    /// for, not before the answer.
    pub async fn generate_for_api(
        &self,
        visitor: &Visitor,
        prompt: &str,
        choices: Choices,
    ) -> Result<Generated, StudioError> {
        self.generate_watched(visitor, prompt, None, choices, None, Variants::WhenAsked)
            .await
    }

    /// [`Studio::generate_with`] for a page that may go away and come back:
    /// when `presence` says its request left, the generation goes on for the
    /// grace period, and for as long as someone follows `job`
    /// ([`Studio::follow`], [`Studio::running`]).
    pub async fn generate_watched(
        &self,
        visitor: &Visitor,
        prompt: &str,
        job: Option<&JobId>,
        choices: Choices,
        presence: Option<&Presence>,
        variants: Variants,
    ) -> Result<Generated, StudioError> {
        let result = if self.may_generate(visitor) {
            self.parts
                .run(Order {
                    payer: self.who_pays.payer(visitor),
                    quota: self.quota_of(visitor),
                    visitor: visitor.id(),
                    names: &visitor.deny_list_names(),
                    prompt,
                    job,
                    choices,
                    presence,
                    variants,
                })
                .await
        } else {
            Err(StudioError::SignInRequired)
        };
        if let Some(scope) = result.as_ref().err().and_then(StudioError::refused_by) {
            self.refusals.add(utc_day(self.now_ms()), scope);
        }
        result
    }

    /// What `visitor` has left, without spending anything.
    pub async fn quota(&self, visitor: &Visitor) -> Result<Decision, StudioError> {
        if !self.may_generate(visitor) {
            return Err(StudioError::SignInRequired);
        }
        self.quota_of(visitor)
            .remaining(self.who_pays.payer(visitor))
            .await
            .map_err(StudioError::LimiterUnavailable)
    }

    /// Where `visitor`'s generation `job` is (`None`: no such generation of theirs).
    pub async fn progress(
        &self,
        visitor: &Visitor,
        job: &JobId,
    ) -> Result<Option<JobProgress>, StudioError> {
        self.parts
            .jobs
            .read(job, visitor.id())
            .await
            .map_err(StudioError::JobBoard)
    }

    /// `visitor`'s generation `job` for a page following it (`None`: no such
    /// generation of theirs); it counts as being watched, by a page that looks
    /// again within `next_look`.
    pub async fn follow(
        &self,
        visitor: &Visitor,
        job: &JobId,
        next_look: Duration,
    ) -> Result<Option<JobSnapshot>, StudioError> {
        let jobs = &self.parts.jobs;
        let seen = jobs
            .snapshot(job, visitor.id())
            .await
            .map_err(StudioError::JobBoard)?;
        if seen
            .as_ref()
            .is_some_and(|seen| seen.progress.state.is_running())
        {
            jobs.touch(job, next_look)
                .await
                .map_err(StudioError::JobBoard)?;
        }
        Ok(seen)
    }

    /// `visitor`'s generations still running (same address, or same account
    /// when signed in), newest first; each counts as being watched.
    pub async fn running(&self, visitor: &Visitor) -> Result<Vec<RunningJob>, StudioError> {
        self.parts
            .jobs
            .running(visitor.id())
            .await
            .map_err(StudioError::JobBoard)
    }

    /// The one waiting on this instance for a generation (`presence`) left.
    pub fn left(&self, presence: &Presence) {
        presence.left(self.parts.clock.now_ms());
    }

    /// Keeps how generation `job` was answered, for a page that comes back to
    /// it (an encoding of the caller's choosing).
    pub async fn keep_answer(&self, job: &JobId, answer: &str) {
        if let Err(error) = self.parts.jobs.keep_answer(job, answer).await {
            tracing::warn!(%error, %job, "could not keep a generation's answer for its page");
        }
    }

    /// Asks whichever instance runs `visitor`'s generation `job` to stop it.
    pub async fn cancel(
        &self,
        visitor: &Visitor,
        job: &JobId,
    ) -> Result<CancelOutcome, StudioError> {
        let outcome = self
            .parts
            .jobs
            .request_cancel(job, visitor.id())
            .await
            .map_err(StudioError::JobBoard)?;
        if outcome == CancelOutcome::Requested {
            tracing::info!(%job, "the visitor asked to cancel a generation");
        }
        Ok(outcome)
    }

    /// `visitor`'s recent images, newest first (without those the owner removed).
    pub async fn recent(&self, visitor: &Visitor) -> Result<Vec<RecentEntry>, StudioError> {
        let mut list = self
            .parts
            .gallery
            .list(visitor.id())
            .await
            .map_err(StudioError::Gallery)?;
        for gone in [&self.parts.removed, &self.parts.deleted] {
            let ids = gone.ids().await;
            if !ids.is_empty() {
                list.retain(|entry| !ids.contains(entry.image.id().as_str()));
            }
        }
        Ok(list)
    }

    /// Whether image `record` was made by `visitor` (the same visitor, or the
    /// same account when signed in).
    pub fn made_by(&self, record: &ImageRecord, visitor: &Visitor) -> bool {
        record.owner.as_deref() == Some(visitor.tag().as_str())
    }

    /// Deletes image `id` for the visitor who made it: its original, variants
    /// and record leave the storage, and on every instance its page and files
    /// answer "deleted" and it leaves the recent-images lists.
    pub async fn delete_image(&self, visitor: &Visitor, id: &ImageId) -> Result<(), StudioError> {
        let Some(record) = self.image_record(id).await? else {
            return Err(StudioError::NoSuchImage);
        };
        if !self.made_by(&record, visitor) {
            return Err(StudioError::NotYourImage);
        }
        // Marked first: an instance that still has a copy stops serving it
        // even if removing the files fails half-way.
        self.parts
            .deleted
            .add(id.as_str())
            .await
            .map_err(StudioError::LimiterUnavailable)?;
        self.parts
            .images
            .delete(id)
            .await
            .map_err(StudioError::ImageStore)?;
        tracing::info!(image = %id, visitor = %visitor.tag(), "an image was deleted by the visitor who made it");
        Ok(())
    }

    /// A stored image as a stream, to serve it without holding it whole.
    pub async fn open_image(&self, key: &ImageKey) -> Result<Option<ImageStream>, StudioError> {
        self.gone(key.id()).await?;
        self.parts
            .images
            .open(key)
            .await
            .map_err(StudioError::ImageStore)
    }

    /// What the page of image `id` shows (`None`: no such image). An image
    /// stored before records were kept gets one (and its variants) now.
    pub async fn image_record(&self, id: &ImageId) -> Result<Option<ImageRecord>, StudioError> {
        self.gone(id).await?;
        let images = &self.parts.images;
        if let Some(record) = images.record(id).await.map_err(StudioError::ImageStore)? {
            return Ok(Some(record));
        }
        let original = ImageKey::original(id, ImageFormat::Png);
        // Asking for a variant makes the missing ones, and the record.
        let made = images
            .get(&original.variant(Variant::Thumb))
            .await
            .map_err(StudioError::ImageStore)?;
        if made.is_none() {
            return Ok(None);
        }
        images.record(id).await.map_err(StudioError::ImageStore)
    }

    /// Refuses image `id` when the owner removed it or its maker deleted it.
    async fn gone(&self, id: &ImageId) -> Result<(), StudioError> {
        if self.parts.removed.contains(id.as_str()).await {
            return Err(StudioError::ImageRemoved);
        }
        if self.parts.deleted.contains(id.as_str()).await {
            return Err(StudioError::ImageDeleted);
        }
        Ok(())
    }
}
