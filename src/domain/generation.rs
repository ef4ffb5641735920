//! One generation, start to finish: validate the prompt, spend a credit, make the
//! image, keep it. The order is the product's promise: bad input is refused before
//! anything is spent, nothing is generated without a credit, and a credit spent on
//! a failed generation is given back.

use crate::domain::generator::{GeneratorError, ImageGenerator};
use crate::domain::ratelimit::{Decision, RateLimiter, StoreError};
use crate::domain::storage::{ImageKey, ImageStore, StorageError};
use crate::prompt::{Prompt, PromptError};
use std::sync::Arc;
use std::time::Instant;

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
    Denied(Decision),
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
}

impl GenerationError {
    /// The quota to report with this failure, when the limiter answered.
    pub fn decision(&self) -> Option<Decision> {
        match self {
            Self::Denied(decision) => Some(*decision),
            Self::Generator { decision, .. } | Self::Storage { decision, .. } => *decision,
            Self::InvalidPrompt(_) | Self::LimiterUnavailable(_) => None,
        }
    }
}

/// Gives a credit back from `Drop` when a generation is abandoned mid-way.
struct RefundOnDrop {
    limiter: Arc<RateLimiter>,
    visitor: String,
    armed: bool,
}

impl Drop for RefundOnDrop {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let limiter = self.limiter.clone();
        let visitor = std::mem::take(&mut self.visitor);
        runtime.spawn(async move {
            match limiter.limit(&visitor, -1).await {
                Ok(_) => tracing::info!(%visitor, "refunded the credit of an abandoned generation"),
                Err(error) => {
                    tracing::error!(%visitor, %error, "could not refund an abandoned generation")
                }
            }
        });
    }
}

/// The parts a generation needs.
pub struct Generation {
    pub limiter: Arc<RateLimiter>,
    pub generator: Arc<dyn ImageGenerator>,
    pub images: Arc<dyn ImageStore>,
    pub max_prompt_chars: usize,
    pub on_store_failure: FailurePolicy,
}

impl Generation {
    /// Runs one generation for `visitor` (the limiter's identifier).
    pub async fn run(&self, visitor: &str, raw_prompt: &str) -> Result<Generated, GenerationError> {
        let prompt = Prompt::parse(raw_prompt, self.max_prompt_chars)?;
        let decision = match self.limiter.limit(visitor, 1).await {
            Ok(decision) if decision.success => Some(decision),
            Ok(decision) => {
                tracing::info!(%visitor, reset_ms = decision.reset_ms, reason = ?decision.reason, "generation denied: no generations remaining");
                return Err(GenerationError::Denied(decision));
            }
            Err(error) => match self.on_store_failure {
                FailurePolicy::Deny => return Err(GenerationError::LimiterUnavailable(error)),
                FailurePolicy::Allow => {
                    tracing::warn!(%visitor, "rate-limit store unavailable; generating uncounted (on_store_failure = allow)");
                    None
                }
            },
        };
        let started = Instant::now();
        // If the visitor goes away (this future is dropped) before the image is
        // kept, the credit goes back: nobody received anything for it.
        let mut refund_if_abandoned = RefundOnDrop {
            limiter: self.limiter.clone(),
            visitor: visitor.to_owned(),
            armed: decision.is_some(),
        };
        let image = match self.generator.generate(&prompt).await {
            Ok(image) => image,
            Err(source) => {
                refund_if_abandoned.armed = false;
                let decision = self.refund(visitor, decision).await;
                return Err(GenerationError::Generator { source, decision });
            }
        };
        let key = match self.images.put(&image).await {
            Ok(key) => key,
            Err(source) => {
                refund_if_abandoned.armed = false;
                let decision = self.refund(visitor, decision).await;
                return Err(GenerationError::Storage { source, decision });
            }
        };
        refund_if_abandoned.armed = false;
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

    /// Gives back the credit of a failed generation and returns the quota after it.
    async fn refund(&self, visitor: &str, spent: Option<Decision>) -> Option<Decision> {
        // Nothing was counted when the store was down.
        spent?;
        match self.limiter.limit(visitor, -1).await {
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
    use crate::domain::generator::{GeneratedImage, ImageFormat, OfflineGenerator};
    use crate::domain::ratelimit::{Algorithm, MemoryStore, DEFAULT_PREFIX};
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
        async fn generate(&self, _: &Prompt) -> Result<GeneratedImage, GeneratorError> {
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
        async fn generate(&self, prompt: &Prompt) -> Result<GeneratedImage, GeneratorError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            OfflineGenerator::new(16, 16, Duration::ZERO)
                .generate(prompt)
                .await
        }
    }

    fn generation(generator: Arc<dyn ImageGenerator>, limit: u64) -> Generation {
        let clock = Arc::new(ManualClock::at(1_000));
        let limiter = RateLimiter::new(
            Arc::new(MemoryStore::new(clock.clone())),
            Algorithm::FixedWindow {
                limit,
                window_ms: 60_000,
            },
            DEFAULT_PREFIX,
            clock,
        );
        Generation {
            limiter: Arc::new(limiter),
            generator,
            images: Arc::new(ObjectImageStore::in_memory()),
            max_prompt_chars: 20,
            on_store_failure: FailurePolicy::Deny,
        }
    }

    #[tokio::test]
    async fn a_bad_prompt_spends_nothing_and_calls_no_model() {
        let model = Arc::new(CountingModel::default());
        let generation = generation(model.clone(), 1);
        for bad in ["", "   ", "this prompt is far too long"] {
            assert!(matches!(
                generation.run("v", bad).await,
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
        generation.run("v", "one").await.unwrap();
        generation.run("v", "two").await.unwrap();
        let denied = generation.run("v", "three").await.unwrap_err();
        assert!(matches!(denied, GenerationError::Denied(d) if d.remaining == 0 && !d.success));
        assert_eq!(model.calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn refunds_the_credit_when_the_model_fails() {
        let model = Arc::new(BrokenModel::default());
        let generation = generation(model.clone(), 3);
        let failure = generation.run("v", "sunset").await.unwrap_err();
        assert!(
            matches!(failure, GenerationError::Generator { decision, .. } if decision.unwrap().remaining == 3)
        );
        assert_eq!(
            generation.limiter.remaining("v").await.unwrap().remaining,
            3
        );
        assert_eq!(model.calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_success_stores_the_image_under_a_new_key() {
        let generation = generation(Arc::new(CountingModel::default()), 5);
        let generated = generation.run("v", "  a cat  ").await.unwrap();
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
}
