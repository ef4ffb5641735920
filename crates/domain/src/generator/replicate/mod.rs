//! The hosted model: Replicate's HTTP API. Creates a prediction (by default
//! without `Prefer: wait`, so its id is known at once), polls it to a terminal
//! state within an overall deadline, cancels it when nobody will use the
//! result, and copies the output bytes at once (Replicate deletes API outputs
//! after about an hour). However a run ends, Replicate's own record of it
//! (`started_at`, `metrics.predict_time`) is published on the generation's
//! meter: that record, not what this client happened to see, settles it.
//!
//! Retries follow what the API allows: a create that was throttled (429) or
//! refused with a problem body was not accepted and may be sent again; a create
//! whose connection broke or timed out may have started a paid prediction and is
//! never repeated. Reads and cancels are safe to repeat.

mod api;
mod budget;
mod history;
pub(in crate::generator) mod prediction;
#[cfg(test)]
mod tests;
mod webhooks;

pub use budget::CallLimits;
pub use webhooks::{WebhookOutcome, WebhookRefusal, WebhookSettings};

use super::{GeneratedImage, ImageGenerator, Look, Meter, ModelError, ProgressReporter};
use crate::on_drop::SpawnOnDrop;
use crate::shared::SharedState;
use async_trait::async_trait;
use budget::CallBudget;
use lofianime_wire::progress::Phase;
use lofianime_wire::prompt::Prompt;
use prediction::Prediction;
use secrecy::SecretString;
use serde_json::{Map, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};
use webhooks::Inbox;

/// How many times one request is tried before giving up.
const ATTEMPTS: u32 = 4;
/// The longest `Prefer: wait` the API accepts.
const MAX_WAIT_SECS: u64 = 60;
/// The longest pause between two tries of a patient request.
const MAX_PAUSE: Duration = Duration::from_secs(5);
/// How long a cancel is retried before it is given up (and logged).
const CANCEL_PATIENCE: Duration = Duration::from_secs(20);
/// How long a run's webhook record outlives its deadline.
const RECORD_KEPT: Duration = Duration::from_secs(600);
/// How long a stopped run's final record is looked for (well within
/// [`super::RECORD_WAIT`]).
const RECORD_SEARCH: Duration = Duration::from_secs(25);

/// Everything the Replicate generator needs; the token only from the environment.
#[derive(Clone)]
pub struct ReplicateSettings {
    /// `https://api.replicate.com` unless `REPLICATE_BASE_URL` says otherwise.
    pub base_url: url::Url,
    pub token: SecretString,
    /// `owner/name`, for logs.
    pub model: String,
    /// The 64-hex version id (community models are addressed by version).
    pub version: String,
    pub prompt_prefix: String,
    /// The model's other inputs (size, scheduler, steps…); `prompt` is set per call.
    pub input: Map<String, Value>,
    /// Overall bound from create to a usable result.
    pub deadline: Duration,
    /// Sent as `Cancel-After`: Replicate stops the run on its own this long
    /// after its creation (aborted, unbilled, if it had not started), even
    /// when every process of the app is gone. At most the deadline.
    pub cancel_after: Duration,
    /// Seconds the create request is held open (`Prefer: wait`), at most 60;
    /// zero: none (the create answers at once with the prediction's id).
    pub wait: Duration,
    pub poll_interval: Duration,
    /// The largest output accepted, in bytes.
    pub max_image_bytes: usize,
    /// First delay of the exponential back-off between retries.
    pub backoff: Duration,
    /// The account's call limits, shared by every instance through the store.
    pub limits: CallLimits,
    /// Replicate calls the app back (`None`: the app polls each prediction).
    pub webhooks: Option<WebhookSettings>,
}

pub struct ReplicateGenerator {
    api: Arc<Api>,
}

/// The HTTP side, shared with the tasks a generation spawns.
struct Api {
    client: reqwest::Client,
    settings: ReplicateSettings,
    /// Predictions this process is polling now: polls slow down as they grow,
    /// to keep the account under Replicate's read limit.
    polling: std::sync::atomic::AtomicUsize,
    /// Every API call takes a slot from the account's budget first.
    budget: CallBudget,
    /// Webhook events of this account's runs, when Replicate calls back.
    inbox: Option<Inbox>,
}

/// Reads a second this process allows itself while polling (Replicate allows an
/// account 3,000 non-create calls a minute, 50 a second).
const READS_PER_SECOND: f64 = 40.0;

/// Whom a read request goes to: its 4xx answers mean different things.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    /// Replicate's API (predictions, cancels): a 4xx is the owner's to fix.
    Api,
    /// A prediction's output file: a 4xx means it expired or is missing.
    OutputFile,
    /// The account's list of predictions (reconciliation): a 4xx says the
    /// list cannot be read, nothing about the model.
    RunList,
}

/// The app's side of Replicate's webhooks: hands each delivery to the inbox.
#[derive(Clone)]
pub struct ReplicateWebhooks {
    api: Arc<Api>,
}

impl ReplicateWebhooks {
    /// Verifies one delivery (`run`: the `?run=` of the address it came to)
    /// and records what it says; a refusal changes nothing. With the
    /// provider's record of the run when the event says it is over.
    pub(crate) async fn receive(
        &self,
        run: Option<&str>,
        headers: &reqwest::header::HeaderMap,
        body: &[u8],
    ) -> Result<(WebhookOutcome, Option<super::RunRecord>), WebhookRefusal> {
        match &self.api.inbox {
            Some(inbox) => inbox.receive(&self.api, run, headers, body).await,
            None => Err(WebhookRefusal::Unverified(
                "webhooks are off for this app".into(),
            )),
        }
    }
}

impl ReplicateGenerator {
    /// The generator with its call budget and webhook records in this
    /// process's memory (one instance).
    pub fn new(settings: ReplicateSettings) -> Result<Self, ModelError> {
        let memory = crate::store::MemoryStore::new(Arc::new(crate::clock::SystemClock));
        Self::on_store(settings, Arc::new(memory))
    }

    /// The generator with its call budget and webhook records in `store`,
    /// shared with every instance that uses it.
    pub fn on_store(
        settings: ReplicateSettings,
        store: Arc<dyn crate::studio::RemoteStore>,
    ) -> Result<Self, ModelError> {
        let state: Arc<dyn SharedState> = store;
        let client = reqwest::Client::builder()
            .user_agent(concat!("lofianime/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| ModelError::Owner(format!("could not build the HTTP client: {e}")))?;
        let budget = CallBudget::new(state.clone(), settings.limits.clone());
        let inbox = settings
            .webhooks
            .clone()
            .map(|webhooks| Inbox::new(webhooks, state));
        Ok(Self {
            api: Arc::new(Api {
                client,
                settings,
                polling: Default::default(),
                budget,
                inbox,
            }),
        })
    }

    /// The webhook endpoint's handle, when Replicate calls back.
    pub fn webhooks(&self) -> Option<ReplicateWebhooks> {
        self.api.inbox.as_ref().map(|_| ReplicateWebhooks {
            api: self.api.clone(),
        })
    }

    /// Sends the create request from a task of its own: if the visitor goes away
    /// (or cancels) while it is held open, the task still learns the prediction's
    /// id and cancels it, so nothing runs on, billed, for nobody.
    async fn create_detached(
        &self,
        prompt: &Prompt,
        deadline: Instant,
        meter: Arc<Meter>,
        run: Option<String>,
        look: Option<Look>,
    ) -> Result<Prediction, ModelError> {
        let (answer, created) = tokio::sync::oneshot::channel();
        let api = self.api.clone();
        let prompt = prompt.clone();
        crate::on_drop::spawn_cleanup(async move {
            let result = api
                .create(&prompt, deadline, run.as_deref(), look)
                .await
                .map_err(|failed| {
                    meter.publish(failed.record(api.settings.deadline));
                    failed.error
                });
            if let Ok(prediction) = &result {
                meter.created(&prediction.id);
            }
            if let Err(Ok(prediction)) = answer.send(result) {
                tracing::warn!(prediction = %prediction.id, "the generation was abandoned while the prediction was being created; stopping it");
                match prediction.record() {
                    Some(record) => meter.publish(record),
                    None => api.stop_and_record(&prediction.id, &meter).await,
                }
            }
        });
        created.await.map_err(|_| {
            ModelError::Unavailable("the create request's task stopped unexpectedly".into())
        })?
    }
}

#[async_trait]
impl ImageGenerator for ReplicateGenerator {
    fn describe(&self) -> String {
        let settings = &self.api.settings;
        // Only the origin: a base URL may carry credentials (user:password@).
        let progress = match &settings.webhooks {
            Some(webhooks) => format!("webhooks to {}", webhooks.url),
            None => format!("polled every {} ms", settings.poll_interval.as_millis()),
        };
        format!(
            "Replicate model {} (version {}…) at {}, {progress}",
            settings.model,
            &settings.version[..settings.version.len().min(12)],
            settings.base_url.origin().ascii_serialization()
        )
    }

    fn is_offline(&self) -> bool {
        false
    }

    fn webhooks(&self) -> Option<ReplicateWebhooks> {
        ReplicateGenerator::webhooks(self)
    }

    async fn generate_with_progress(
        &self,
        prompt: &Prompt,
        progress: &ProgressReporter,
    ) -> Result<GeneratedImage, ModelError> {
        self.run(prompt, None, progress).await
    }

    /// The shape's size and the seed go to the model as its `width`,
    /// `height` and `seed` inputs.
    async fn generate_look(
        &self,
        prompt: &Prompt,
        look: Look,
        progress: &ProgressReporter,
    ) -> Result<GeneratedImage, ModelError> {
        let mut image = self.run(prompt, Some(look), progress).await?;
        image.seed = Some(look.seed);
        Ok(image)
    }
}

impl ReplicateGenerator {
    async fn run(
        &self,
        prompt: &Prompt,
        look: Option<Look>,
        progress: &ProgressReporter,
    ) -> Result<GeneratedImage, ModelError> {
        let api = &self.api;
        let started = Instant::now();
        let deadline = started + api.settings.deadline;
        progress.report(Phase::Waiting);
        // From the create on, a prediction may run (and bill) even if its answer
        // never reaches us; however it ends, Replicate's record of it settles it.
        progress.settled_by_record();
        let meter = progress.meter();
        // With webhooks, the run's record is opened before the create: its
        // events may come before the create's answer.
        let mailbox = match &api.inbox {
            Some(inbox) => inbox.open(api.settings.deadline + RECORD_KEPT).await,
            None => None,
        };
        let run = mailbox.as_ref().map(|mailbox| mailbox.run.clone());
        let created = self
            .create_detached(prompt, deadline, meter.clone(), run, look)
            .await?;
        progress.report(created.phase());
        let id = created.id.clone();
        if let (Some(inbox), Some(mailbox)) = (&api.inbox, &mailbox) {
            inbox.started(&mailbox.run, &id).await;
        }
        tracing::info!(prediction = %id, status = %created.status, webhooks = mailbox.is_some(), "created a Replicate prediction");
        // If the visitor goes away or cancels (this future is dropped) while the
        // model runs, cancel the prediction: nobody will use the result.
        let mut guard = {
            let (api, id, meter) = (api.clone(), id.clone(), meter.clone());
            SpawnOnDrop::new(async move {
                tracing::warn!(prediction = %id, "the generation was abandoned before the prediction finished; cancelling it");
                api.stop_and_record(&id, &meter).await;
            })
        };
        let finished = match (&api.inbox, &mailbox) {
            (Some(inbox), Some(mailbox)) => {
                api.wait_for_events(inbox, mailbox, created, deadline, progress)
                    .await
            }
            _ => api.wait_until_done(created, deadline, progress).await,
        };
        let prediction = match finished {
            Ok(prediction) => prediction,
            Err(error) => {
                guard.disarm();
                api.stop_and_record(&id, &meter).await;
                return Err(error);
            }
        };
        guard.disarm();
        api.publish_record(&prediction, meter);
        tracing::info!(prediction = %id, status = %prediction.status, elapsed_ms = started.elapsed().as_millis() as u64, "prediction finished");
        api.outcome(&prediction, deadline, progress).await
    }
}
