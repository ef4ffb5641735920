//! One generation, start to finish: validate the prompt, spend a credit, make the
//! image, keep it. The order is the product's promise: bad input is refused before
//! anything is spent, nothing is generated without a credit, and a credit spent on
//! a failed generation is given back.

use crate::domain::gallery::{Gallery, Kept};
use crate::domain::generator::{GeneratorError, ImageGenerator, ProgressReporter};
use crate::domain::jobs::JobBoard;
use crate::domain::on_drop::SpawnOnDrop;
use crate::domain::ratelimit::{Decision, RateLimiter, StoreError};
use crate::domain::storage::{ImageKey, ImageStore, StorageError};
use crate::progress::{JobId, JobState, Phase};
use crate::prompt::{Prompt, PromptError};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// What to do when the limiter's store cannot answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailurePolicy {
    /// Refuse to generate (the default: nothing is spent that was not counted).
    #[default]
    Deny,
    /// Generate without counting (the owner prefers availability to cost control).
    Allow,
}

/// A finished generation.
#[derive(Debug, Clone)]
pub struct Generated {
    pub prompt: Prompt,
    pub image: ImageKey,
    /// The limiter's answer when the credit was spent; `None` when the store was
    /// down and the failure policy let the generation through uncounted.
    pub decision: Option<Decision>,
}

/// Why a generation did not happen. Each variant says whether a credit was spent.
#[derive(Debug, thiserror::Error)]
pub enum GenerationError {
    #[error("invalid prompt: {0}")]
    InvalidPrompt(#[from] PromptError),
    #[error("rate limit reached")]
    Denied {
        /// The refusing limiter's answer.
        decision: Decision,
        scope: LimitScope,
    },
    #[error("rate limiter unavailable")]
    LimiterUnavailable(#[source] StoreError),
    #[error("image generation failed")]
    Generator {
        #[source]
        source: GeneratorError,
        /// The visitor's quota after the refund.
        decision: Option<Decision>,
    },
    #[error("storing the image failed")]
    Storage {
        #[source]
        source: StorageError,
        decision: Option<Decision>,
    },
    /// The visitor cancelled it; the credit was given back.
    #[error("cancelled by the visitor")]
    Canceled { decision: Option<Decision> },
    /// The page sent a generation id that is already in use.
    #[error("the generation id is already in use")]
    JobIdTaken,
}

impl GenerationError {
    /// The quota to report with this failure, when the limiter answered.
    pub fn decision(&self) -> Option<Decision> {
        match self {
            Self::Denied { decision, .. } => Some(*decision),
            Self::Generator { decision, .. }
            | Self::Storage { decision, .. }
            | Self::Canceled { decision } => *decision,
            Self::InvalidPrompt(_) | Self::LimiterUnavailable(_) | Self::JobIdTaken => None,
        }
    }
}

/// Which limit refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitScope {
    /// The visitor's own quota.
    Visitor,
    /// The budget shared by all visitors.
    Everyone,
}

/// The identifier of the budget shared by all visitors.
pub const EVERYONE: &str = "global";

/// Credits spent for one generation: (limiter, identifier) pairs to give back if
/// it fails.
type Credits = Vec<(Arc<RateLimiter>, String)>;

async fn give_back(credits: &[(Arc<RateLimiter>, String)]) {
    for (limiter, identifier) in credits {
        match limiter.limit(identifier, -1).await {
            Ok(_) => tracing::info!(%identifier, "refunded a credit"),
            Err(error) => tracing::error!(%identifier, %error, "could not refund a credit"),
        }
    }
}

/// The parts a generation needs.
pub struct Generation {
    pub limiter: Arc<RateLimiter>,
    pub generator: Arc<dyn ImageGenerator>,
    pub images: Arc<dyn ImageStore>,
    pub max_prompt_chars: usize,
    pub on_store_failure: FailurePolicy,
    /// The budget shared by all visitors, if the owner set one.
    pub everyone: Option<Arc<RateLimiter>>,
    /// Generations in flight: their phases and cancel requests.
    pub jobs: Arc<JobBoard>,
    /// Each visitor's recent images.
    pub gallery: Arc<dyn Gallery>,
    /// How often a running generation checks whether it was cancelled.
    pub cancel_check: Duration,
}

/// One request to generate.
#[derive(Debug, Clone, Copy)]
pub struct Submission<'a> {
    /// Whose quota pays: the limiter's identifier (the visitor, or one shared
    /// identifier for everyone).
    pub payer: &'a str,
    /// Who asked: the visitor (their job records and recent images).
    pub visitor: &'a str,
    pub prompt: &'a str,
    /// The id the page chose, so it can follow and cancel the generation.
    pub job: Option<&'a JobId>,
}

impl Generation {
    /// Runs one generation for a visitor.
    pub async fn run(&self, submission: Submission<'_>) -> Result<Generated, GenerationError> {
        let prompt = Prompt::parse(submission.prompt, self.max_prompt_chars)?;
        let job = match submission.job {
            Some(id) => match self.jobs.open(id, submission.visitor).await {
                Ok(true) => Some(id),
                Ok(false) => return Err(GenerationError::JobIdTaken),
                Err(error) => {
                    tracing::warn!(%error, "could not record the generation; its progress cannot be followed");
                    None
                }
            },
            None => None,
        };
        let result = self.run_job(submission, prompt, job).await;
        if let Some(id) = job {
            let ended = match &result {
                Ok(_) => JobState::Finished,
                Err(GenerationError::Canceled { .. }) => JobState::Canceled,
                Err(_) => JobState::Failed,
            };
            self.report(id, ended).await;
        }
        result
    }

    async fn report(&self, job: &JobId, state: JobState) {
        if let Err(error) = self.jobs.report(job, state).await {
            tracing::warn!(%error, %job, "could not record a generation's progress");
        }
    }

    /// Reports `phases` to the job board and returns when a cancel was requested
    /// (never, without a job).
    async fn watch(&self, job: Option<&JobId>, mut phases: watch::Receiver<Phase>) {
        let Some(job) = job else {
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
                    self.report(job, JobState::Running(phase)).await;
                }
                _ = check.tick() => match self.jobs.cancel_requested(job).await {
                    Ok(true) => return,
                    Ok(false) => {}
                    Err(error) => tracing::warn!(%error, %job, "could not check for a cancel request"),
                },
            }
        }
    }

    async fn run_job(
        &self,
        submission: Submission<'_>,
        prompt: Prompt,
        job: Option<&JobId>,
    ) -> Result<Generated, GenerationError> {
        let visitor = submission.payer;
        let mut credits: Credits = Vec::new();
        let decision = match self.limiter.limit(visitor, 1).await {
            Ok(decision) if decision.success => {
                credits.push((self.limiter.clone(), visitor.to_owned()));
                Some(decision)
            }
            Ok(decision) => {
                tracing::info!(%visitor, reset_ms = decision.reset_ms, reason = ?decision.reason, "generation denied: no generations remaining");
                return Err(GenerationError::Denied {
                    decision,
                    scope: LimitScope::Visitor,
                });
            }
            Err(error) => match self.on_store_failure {
                FailurePolicy::Deny => return Err(GenerationError::LimiterUnavailable(error)),
                FailurePolicy::Allow => {
                    tracing::warn!(%visitor, "rate-limit store unavailable; generating uncounted (on_store_failure = allow)");
                    None
                }
            },
        };
        if let Some(everyone) = &self.everyone {
            match everyone.limit(EVERYONE, 1).await {
                Ok(budget) if budget.success => {
                    credits.push((everyone.clone(), EVERYONE.to_owned()))
                }
                Ok(budget) => {
                    // The visitor's credit was not used: it goes back.
                    give_back(&credits).await;
                    tracing::warn!(
                        reset_ms = budget.reset_ms,
                        "generation denied: the budget for all visitors is spent"
                    );
                    return Err(GenerationError::Denied {
                        decision: budget,
                        scope: LimitScope::Everyone,
                    });
                }
                Err(error) => match self.on_store_failure {
                    FailurePolicy::Deny => {
                        give_back(&credits).await;
                        return Err(GenerationError::LimiterUnavailable(error));
                    }
                    FailurePolicy::Allow => {
                        tracing::warn!("rate-limit store unavailable; the shared budget is not counted (on_store_failure = allow)")
                    }
                },
            }
        }
        let started = Instant::now();
        // If the visitor goes away (this future is dropped) before the image is
        // kept, the credits go back: nobody received anything for them.
        let mut refund_if_abandoned = {
            let credits = credits.clone();
            let record = job.map(|id| (self.jobs.clone(), id.clone()));
            SpawnOnDrop::new(async move {
                if !credits.is_empty() {
                    tracing::info!("a generation was abandoned; giving its credits back");
                    give_back(&credits).await;
                }
                if let Some((jobs, id)) = record {
                    if let Err(error) = jobs.report(&id, JobState::Canceled).await {
                        tracing::warn!(%error, job = %id, "could not record an abandoned generation");
                    }
                }
            })
        };
        let (progress, phases) = ProgressReporter::channel();
        let outcome = tokio::select! {
            generated = self.generator.generate_with_progress(&prompt, &progress) => Some(generated),
            () = self.watch(job, phases) => None,
        };
        let image = match outcome {
            Some(Ok(image)) => image,
            Some(Err(source)) => {
                refund_if_abandoned.disarm();
                let decision = self.refund(decision, &credits).await;
                return Err(GenerationError::Generator { source, decision });
            }
            None => {
                // Dropping the generator's future stopped it (a hosted model's
                // prediction is cancelled on its side).
                refund_if_abandoned.disarm();
                tracing::info!(%visitor, elapsed_ms = started.elapsed().as_millis() as u64, "the visitor cancelled the generation");
                let decision = self.refund(decision, &credits).await;
                return Err(GenerationError::Canceled { decision });
            }
        };
        if let Some(id) = job {
            self.report(id, JobState::Running(Phase::Saving)).await;
        }
        let key = match self.images.put(&image).await {
            Ok(key) => key,
            Err(source) => {
                refund_if_abandoned.disarm();
                let decision = self.refund(decision, &credits).await;
                return Err(GenerationError::Storage { source, decision });
            }
        };
        refund_if_abandoned.disarm();
        let kept = Kept {
            image: key.to_string(),
            prompt: prompt.to_string(),
            created_ms: self.limiter.now_ms(),
        };
        if let Err(error) = self.gallery.add(submission.visitor, &kept).await {
            tracing::warn!(%error, "could not add the image to the visitor's recent images");
        }
        tracing::info!(
            %visitor,
            image = %key,
            bytes = image.bytes.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            remaining = decision.map(|d| d.remaining),
            "generated image"
        );
        Ok(Generated {
            prompt,
            image: key,
            decision,
        })
    }

    /// Gives back the credits of a failed generation and returns the visitor's
    /// quota after it.
    async fn refund(
        &self,
        spent: Option<Decision>,
        credits: &[(Arc<RateLimiter>, String)],
    ) -> Option<Decision> {
        // Nothing was counted when the store was down.
        let Some(((limiter, visitor), others)) = credits.split_first() else {
            return spent;
        };
        give_back(others).await;
        match limiter.limit(visitor, -1).await {
            Ok(decision) => {
                tracing::info!(%visitor, remaining = decision.remaining, "refunded the credit of a failed generation");
                Some(decision)
            }
            Err(error) => {
                tracing::error!(%visitor, %error, "could not refund the credit of a failed generation");
                spent
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::clock::ManualClock;
    use crate::domain::gallery::SharedGallery;
    use crate::domain::generator::{GeneratedImage, ImageFormat, OfflineGenerator};
    use crate::domain::ratelimit::{Algorithm, MemoryStore, DEFAULT_PREFIX};
    use crate::domain::shared::MemoryState;
    use crate::domain::storage::ObjectImageStore;
    use async_trait::async_trait;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    /// Counts calls and fails every one of them.
    #[derive(Default)]
    struct BrokenModel {
        calls: AtomicUsize,
    }

    #[async_trait]
    impl ImageGenerator for BrokenModel {
        fn describe(&self) -> String {
            "broken".into()
        }
        fn is_offline(&self) -> bool {
            true
        }
        async fn generate_with_progress(
            &self,
            _: &Prompt,
            _: &ProgressReporter,
        ) -> Result<GeneratedImage, GeneratorError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            Err(GeneratorError::Render("boom".into()))
        }
    }

    /// Counts calls and succeeds.
    #[derive(Default)]
    struct CountingModel {
        calls: AtomicUsize,
    }

    #[async_trait]
    impl ImageGenerator for CountingModel {
        fn describe(&self) -> String {
            "counting".into()
        }
        fn is_offline(&self) -> bool {
            true
        }
        async fn generate_with_progress(
            &self,
            prompt: &Prompt,
            _: &ProgressReporter,
        ) -> Result<GeneratedImage, GeneratorError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            OfflineGenerator::new(16, 16, Duration::ZERO)
                .generate(prompt)
                .await
        }
    }

    /// A submission without a job id, paid by the visitor.
    fn plain<'a>(visitor: &'a str, prompt: &'a str) -> Submission<'a> {
        Submission {
            payer: visitor,
            visitor,
            prompt,
            job: None,
        }
    }

    fn generation(generator: Arc<dyn ImageGenerator>, limit: u64) -> Generation {
        let clock = Arc::new(ManualClock::at(1_000));
        let shared = Arc::new(MemoryState::new(clock.clone()));
        let limiter = RateLimiter::new(
            Arc::new(MemoryStore::new(clock.clone())),
            Algorithm::FixedWindow {
                limit,
                window_ms: 60_000,
            },
            DEFAULT_PREFIX,
            clock.clone(),
        );
        Generation {
            limiter: Arc::new(limiter),
            generator,
            images: Arc::new(ObjectImageStore::in_memory()),
            max_prompt_chars: 20,
            on_store_failure: FailurePolicy::Deny,
            everyone: None,
            jobs: Arc::new(JobBoard::new(shared.clone(), clock.clone(), 600_000)),
            gallery: Arc::new(SharedGallery::new(shared)),
            cancel_check: Duration::from_millis(10),
        }
    }

    #[tokio::test]
    async fn a_bad_prompt_spends_nothing_and_calls_no_model() {
        let model = Arc::new(CountingModel::default());
        let generation = generation(model.clone(), 1);
        for bad in ["", "   ", "this prompt is far too long"] {
            assert!(matches!(
                generation.run(plain("v", bad)).await,
                Err(GenerationError::InvalidPrompt(_))
            ));
        }
        assert_eq!(model.calls.load(Ordering::SeqCst), 0);
        assert_eq!(
            generation.limiter.remaining("v").await.unwrap().remaining,
            1
        );
    }

    #[tokio::test]
    async fn a_denied_request_calls_no_model() {
        let model = Arc::new(CountingModel::default());
        let generation = generation(model.clone(), 2);
        generation.run(plain("v", "one")).await.unwrap();
        generation.run(plain("v", "two")).await.unwrap();
        let denied = generation.run(plain("v", "three")).await.unwrap_err();
        assert!(
            matches!(denied, GenerationError::Denied { decision: d, scope: LimitScope::Visitor } if d.remaining == 0 && !d.success)
        );
        assert_eq!(model.calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn refunds_the_credit_when_the_model_fails() {
        let model = Arc::new(BrokenModel::default());
        let generation = generation(model.clone(), 3);
        let failure = generation.run(plain("v", "sunset")).await.unwrap_err();
        assert!(
            matches!(failure, GenerationError::Generator { decision, .. } if decision.unwrap().remaining == 3)
        );
        assert_eq!(
            generation.limiter.remaining("v").await.unwrap().remaining,
            3
        );
        assert_eq!(model.calls.load(Ordering::SeqCst), 1);
    }

    fn with_budget(mut generation: Generation, budget: u64) -> Generation {
        let clock = Arc::new(ManualClock::at(1_000));
        generation.everyone = Some(Arc::new(RateLimiter::new(
            Arc::new(MemoryStore::new(clock.clone())),
            Algorithm::FixedWindow {
                limit: budget,
                window_ms: 60_000,
            },
            DEFAULT_PREFIX,
            clock,
        )));
        generation
    }

    #[tokio::test]
    async fn the_shared_budget_refuses_and_the_visitor_keeps_their_credit() {
        let model = Arc::new(CountingModel::default());
        let generation = with_budget(generation(model.clone(), 5), 1);
        generation.run(plain("a", "one")).await.unwrap();
        let refused = generation.run(plain("b", "two")).await.unwrap_err();
        assert!(
            matches!(refused, GenerationError::Denied { scope: LimitScope::Everyone, decision } if decision.limit == 1),
            "{refused:?}"
        );
        assert_eq!(
            generation.limiter.remaining("b").await.unwrap().remaining,
            5
        );
        assert_eq!(model.calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_visitor_refusal_spends_nothing_of_the_shared_budget() {
        let generation = with_budget(generation(Arc::new(CountingModel::default()), 1), 10);
        generation.run(plain("a", "one")).await.unwrap();
        assert!(generation.run(plain("a", "two")).await.is_err());
        let budget = generation.everyone.as_ref().unwrap();
        assert_eq!(budget.remaining(EVERYONE).await.unwrap().remaining, 9);
    }

    #[tokio::test]
    async fn a_failure_refunds_the_shared_budget_too() {
        let model = Arc::new(BrokenModel::default());
        let generation = with_budget(generation(model.clone(), 5), 1);
        for _ in 0..3 {
            assert!(matches!(
                generation.run(plain("a", "sunset")).await,
                Err(GenerationError::Generator { .. })
            ));
        }
        assert_eq!(
            model.calls.load(Ordering::SeqCst),
            3,
            "each failure gave the budget back"
        );
        let budget = generation.everyone.as_ref().unwrap();
        assert_eq!(budget.remaining(EVERYONE).await.unwrap().remaining, 1);
    }

    #[tokio::test]
    async fn a_success_stores_the_image_under_a_new_key() {
        let generation = generation(Arc::new(CountingModel::default()), 5);
        let generated = generation.run(plain("v", "  a cat  ")).await.unwrap();
        assert_eq!(generated.prompt.as_str(), "a cat");
        assert_eq!(generated.decision.unwrap().remaining, 4);
        let bytes = generation
            .images
            .get(&generated.image)
            .await
            .unwrap()
            .unwrap();
        assert!(bytes.starts_with(b"\x89PNG"));
        assert_eq!(generated.image.format(), ImageFormat::Png);
    }

    /// Reports its phases, then waits far longer than any test; counts drops.
    #[derive(Default)]
    struct SlowModel {
        stopped: std::sync::atomic::AtomicBool,
    }

    struct SetOnDrop<'a>(&'a std::sync::atomic::AtomicBool);
    impl Drop for SetOnDrop<'_> {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    #[async_trait]
    impl ImageGenerator for SlowModel {
        fn describe(&self) -> String {
            "slow".into()
        }
        fn is_offline(&self) -> bool {
            true
        }
        async fn generate_with_progress(
            &self,
            _: &Prompt,
            progress: &ProgressReporter,
        ) -> Result<GeneratedImage, GeneratorError> {
            let _stopped = SetOnDrop(&self.stopped);
            progress.report(Phase::Starting);
            tokio::time::sleep(Duration::from_millis(30)).await;
            progress.report(Phase::Generating { percent: Some(40) });
            tokio::time::sleep(Duration::from_secs(60)).await;
            Err(GeneratorError::TimedOut)
        }
    }

    async fn wait_for_state(generation: &Generation, job: &JobId, want: JobState) {
        for _ in 0..500 {
            let seen = generation
                .jobs
                .read(job, "v")
                .await
                .unwrap()
                .map(|p| p.state);
            if seen == Some(want) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("the job never reached {want:?}");
    }

    type Running = tokio::task::JoinHandle<Result<Generated, GenerationError>>;

    /// A generation with a job id on the slow model, started in the background
    /// and already generating (its credit spent; limit 2).
    async fn slow_generation_under_way(
        id: u8,
    ) -> (Arc<SlowModel>, Arc<Generation>, JobId, Running) {
        let model = Arc::new(SlowModel::default());
        let generation = Arc::new(generation(model.clone(), 2));
        let job = JobId::from_bytes([id; 16]);
        let running = {
            let (generation, job) = (generation.clone(), job.clone());
            tokio::spawn(async move {
                generation
                    .run(Submission {
                        job: Some(&job),
                        ..plain("v", "slow")
                    })
                    .await
            })
        };
        wait_for_state(
            &generation,
            &job,
            JobState::Running(Phase::Generating { percent: Some(40) }),
        )
        .await;
        (model, generation, job, running)
    }

    #[tokio::test]
    async fn a_cancelled_generation_stops_the_model_and_refunds_the_credit() {
        let (model, generation, job, running) = slow_generation_under_way(7).await;
        assert_eq!(
            generation.limiter.remaining("v").await.unwrap().remaining,
            1,
            "the credit is spent while it runs"
        );
        assert_eq!(
            generation.jobs.request_cancel(&job, "v").await.unwrap(),
            crate::domain::jobs::CancelOutcome::Requested
        );
        let outcome = running.await.unwrap();
        assert!(
            matches!(outcome, Err(GenerationError::Canceled { decision: Some(d) }) if d.remaining == 2),
            "{outcome:?}"
        );
        assert!(
            model.stopped.load(Ordering::SeqCst),
            "the model run was dropped"
        );
        assert_eq!(
            generation.limiter.remaining("v").await.unwrap().remaining,
            2
        );
        wait_for_state(&generation, &job, JobState::Canceled).await;
    }

    #[tokio::test]
    async fn an_abandoned_generation_is_refunded_and_recorded_as_cancelled() {
        let (model, generation, job, running) = slow_generation_under_way(6).await;
        // The visitor closed the page: the request's future is dropped.
        running.abort();
        let _ = running.await;
        wait_for_state(&generation, &job, JobState::Canceled).await;
        assert!(model.stopped.load(Ordering::SeqCst));
        assert_eq!(
            generation.limiter.remaining("v").await.unwrap().remaining,
            2
        );
    }

    #[tokio::test]
    async fn a_reused_generation_id_is_refused_before_anything_is_spent() {
        let model = Arc::new(CountingModel::default());
        let generation = generation(model.clone(), 5);
        let job = JobId::from_bytes([8; 16]);
        let with_job = Submission {
            job: Some(&job),
            ..plain("v", "a cat")
        };
        generation.run(with_job).await.unwrap();
        wait_for_state(&generation, &job, JobState::Finished).await;
        assert!(matches!(
            generation.run(with_job).await,
            Err(GenerationError::JobIdTaken)
        ));
        assert_eq!(model.calls.load(Ordering::SeqCst), 1);
        assert_eq!(
            generation.limiter.remaining("v").await.unwrap().remaining,
            4
        );
    }

    #[tokio::test]
    async fn a_finished_generation_joins_the_visitors_recent_images() {
        let generation = generation(Arc::new(CountingModel::default()), 5);
        let first = generation.run(plain("v", "first")).await.unwrap();
        let second = generation.run(plain("v", "second")).await.unwrap();
        let recent = generation.gallery.list("v").await.unwrap();
        let names: Vec<_> = recent.iter().map(|k| k.image.clone()).collect();
        assert_eq!(names, [second.image.to_string(), first.image.to_string()]);
        assert_eq!(recent[0].prompt, "second");
        assert!(generation.gallery.list("w").await.unwrap().is_empty());
    }
}
