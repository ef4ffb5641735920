//! One configurable stand-in for a model, for tests (unit, integration and
//! benchmarks alike): it counts its calls, and succeeds with a tiny offline
//! image, fails, runs until dropped (reporting phases like a hosted model), or
//! panics. It is never chosen by the app's settings.

use super::{GeneratedImage, ImageGenerator, ModelError, OfflineGenerator, ProgressReporter};
use async_trait::async_trait;
use lofianime_wire::progress::Phase;
use lofianime_wire::prompt::Prompt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

/// What the fake does when called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// A 16×16 offline picture.
    Succeed,
    /// `ModelError::Failed` before any paid work, as a create the API refused.
    Fail,
    /// Reports `Generating`, then fails: the owner was billed for the run.
    FailWhileProcessing,
    /// Reports `Generating`, then flags the prompt as unsafe (billed too).
    Unsafe,
    /// Reports `Starting`, then `Generating 40%`, then runs until dropped (a minute
    /// at most, then times out).
    RunUntilDropped,
    /// Reports `Starting` (a cold model booting: may bill) and never reaches
    /// processing.
    StartUntilDropped,
    /// Panics inside the generation.
    Panic,
}

/// The percentage a running fake reports.
pub const FAKE_PERCENT: u8 = 40;

pub struct FakeModel {
    behaviour: Behaviour,
    /// Prompts containing this run until dropped, whatever the behaviour.
    slow_marker: Option<&'static str>,
    calls: AtomicUsize,
    stopped: AtomicBool,
}

impl FakeModel {
    pub fn new(behaviour: Behaviour) -> Self {
        Self {
            behaviour,
            slow_marker: None,
            calls: AtomicUsize::new(0),
            stopped: AtomicBool::new(false),
        }
    }

    /// Succeeds, except for prompts containing `marker`, which run until dropped.
    pub fn slow_when_prompt_contains(marker: &'static str) -> Self {
        Self {
            slow_marker: Some(marker),
            ..Self::new(Behaviour::Succeed)
        }
    }

    /// How many generations were asked of it.
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// True once a generation that was running until dropped was dropped.
    pub fn stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }
}

impl Default for FakeModel {
    fn default() -> Self {
        Self::new(Behaviour::Succeed)
    }
}

/// Sets the flag when the running generation is dropped.
struct SetOnDrop<'a>(&'a AtomicBool);

impl Drop for SetOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

#[async_trait]
impl ImageGenerator for FakeModel {
    fn describe(&self) -> String {
        format!("fake model ({:?})", self.behaviour)
    }

    fn is_offline(&self) -> bool {
        true
    }

    async fn generate_with_progress(
        &self,
        prompt: &Prompt,
        progress: &ProgressReporter,
    ) -> Result<GeneratedImage, ModelError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let slow = self
            .slow_marker
            .is_some_and(|marker| prompt.as_str().contains(marker));
        let behaviour = if slow {
            Behaviour::RunUntilDropped
        } else {
            self.behaviour
        };
        match behaviour {
            Behaviour::Succeed => {
                OfflineGenerator::new(16, 16, Duration::ZERO)
                    .generate(prompt)
                    .await
            }
            Behaviour::Fail => Err(ModelError::Failed("the fake model failed".into())),
            Behaviour::FailWhileProcessing => {
                progress.may_bill();
                progress.report(Phase::Generating {
                    percent: Some(FAKE_PERCENT),
                });
                Err(ModelError::Failed(
                    "the fake model failed while drawing".into(),
                ))
            }
            Behaviour::Unsafe => {
                progress.may_bill();
                progress.report(Phase::Generating {
                    percent: Some(FAKE_PERCENT),
                });
                Err(ModelError::Unsafe("the fake model flags everything".into()))
            }
            Behaviour::StartUntilDropped => {
                let _running = SetOnDrop(&self.stopped);
                progress.may_bill();
                progress.report(Phase::Starting);
                tokio::time::sleep(Duration::from_secs(60)).await;
                Err(ModelError::TimedOut)
            }
            Behaviour::RunUntilDropped => {
                let _running = SetOnDrop(&self.stopped);
                progress.may_bill();
                progress.report(Phase::Starting);
                tokio::time::sleep(Duration::from_millis(30)).await;
                progress.report(Phase::Generating {
                    percent: Some(FAKE_PERCENT),
                });
                tokio::time::sleep(Duration::from_secs(60)).await;
                Err(ModelError::TimedOut)
            }
            Behaviour::Panic => panic!("the fake model panicked"),
        }
    }
}
