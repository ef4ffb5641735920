//! Image generators: something that turns a validated prompt into image bytes.
//! The offline generator is the zero-configuration default; a hosted model
//! (Replicate) plugs in behind the same trait.

mod cog;
pub mod fake;
mod offline;
mod replicate;

pub use cog::{CogGenerator, CogServer, CogSettings, CogWebhook, CogWebhooks};
pub use offline::{render as render_offline, OfflineGenerator};
pub use replicate::{
    CallLimits, ReplicateGenerator, ReplicateSettings, ReplicateWebhooks, WebhookOutcome,
    WebhookRefusal, WebhookSettings,
};

use async_trait::async_trait;
use bytes::Bytes;
use lofianime_wire::progress::Phase;
use lofianime_wire::prompt::Prompt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::sync::watch;

/// The image formats the app stores and serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ImageFormat {
    Png,
    Jpeg,
    Webp,
}

impl ImageFormat {
    pub fn extension(self) -> &'static str {
        match self {
            Self::Png => "png",
            Self::Jpeg => "jpg",
            Self::Webp => "webp",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Self::Png => "image/png",
            Self::Jpeg => "image/jpeg",
            Self::Webp => "image/webp",
        }
    }

    pub fn from_extension(extension: &str) -> Option<Self> {
        match extension {
            "png" => Some(Self::Png),
            "jpg" => Some(Self::Jpeg),
            "webp" => Some(Self::Webp),
            _ => None,
        }
    }
}

/// Encoded image bytes and their format; and the pixels, when the generator
/// has them (the offline painter), so they are not decoded again.
#[derive(Debug, Clone)]
pub struct GeneratedImage {
    pub bytes: Bytes,
    pub format: ImageFormat,
    pub pixels: Option<std::sync::Arc<image::RgbImage>>,
    /// The seed it was made with, when the generator was given one.
    pub seed: Option<u32>,
    /// Who asked for it (a visitor's tag), kept in its record so only they
    /// may delete it; set by the studio.
    pub owner: Option<String>,
}

/// How a picture is asked for besides its prompt: its shape, and the seed
/// (the same prompt, shape and seed give the same picture from the offline
/// painter, and nearly the same from the model).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Look {
    pub aspect: lofianime_wire::shape::Aspect,
    pub seed: u32,
}

impl GeneratedImage {
    /// Bytes from elsewhere (a model's output), to be decoded when needed.
    pub fn encoded(bytes: Bytes, format: ImageFormat) -> Self {
        Self {
            bytes,
            format,
            pixels: None,
            seed: None,
            owner: None,
        }
    }
}

/// A model's inputs for one run: the owner's (`[model.input]`), the shape's
/// `width` and `height` and the seed when given, and the prompt after its
/// prefix. The same for Replicate and for the owner's Cog servers.
pub(crate) fn model_input(
    owner_inputs: &serde_json::Map<String, serde_json::Value>,
    prefix: &str,
    prompt: &Prompt,
    look: Option<Look>,
) -> serde_json::Map<String, serde_json::Value> {
    let mut input = owner_inputs.clone();
    if let Some(look) = look {
        let (width, height) = look.aspect.model_size();
        input.insert("width".into(), width.into());
        input.insert("height".into(), height.into());
        input.insert("seed".into(), look.seed.into());
    }
    input.insert(
        "prompt".into(),
        format!("{prefix}{}", prompt.as_str()).into(),
    );
    input
}

/// Why the model (or the offline painter) could not make the image. Details are
/// for the log, never for the visitor; the server chooses what the visitor is
/// told from the variant.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("the offline renderer failed: {0}")]
    Render(String),
    /// The model's safety filter refused the picture.
    #[error("the model flagged the output as unsafe: {0}")]
    Unsafe(String),
    /// No result before the deadline (the prediction was cancelled).
    #[error("the model did not finish in time")]
    TimedOut,
    /// The model service is throttling us.
    #[error("the model service is throttling requests")]
    Busy {
        retry_after: Option<std::time::Duration>,
    },
    /// The prediction was cancelled on the model's side.
    #[error("the prediction was cancelled")]
    Canceled,
    /// The model ran and failed (out of memory, a bug in the model…).
    #[error("the model failed: {0}")]
    Failed(String),
    /// Something the owner must fix: the token, billing, the model version or inputs.
    #[error("configuration problem: {0}")]
    Owner(String),
    /// The model service could not be reached or answered with a server error.
    #[error("the model service is unavailable: {0}")]
    Unavailable(String),
    /// None of the owner's model servers could take the run (all down, or
    /// refusing): nothing ran.
    #[error("no model server can take the run: {0}")]
    NoServer(String),
    /// The model answered, but its output was missing, expired, too big or not an image.
    #[error("unusable output: {0}")]
    BadOutput(String),
}

/// What the provider recorded of one run once it ended: whether it processed
/// (Replicate's `started_at`), and the seconds it billed
/// (`metrics.predict_time`).
#[derive(Debug, Clone, PartialEq)]
pub struct RunRecord {
    /// The provider's id of the run, when it is known (a create that failed
    /// may have started a run whose id never reached us).
    pub run_id: Option<String>,
    pub processed: bool,
    pub billed_secs: f64,
}

impl RunRecord {
    /// What run `run_id` costs the owner when its record cannot be had:
    /// billed, for as long as it was allowed to run.
    pub fn assumed_billed(run_id: Option<String>, deadline: std::time::Duration) -> Self {
        Self {
            run_id,
            processed: true,
            billed_secs: deadline.as_secs_f64(),
        }
    }
}

/// The longest a settlement waits for the provider's record of a run that
/// ended without an image. The generator bounds its own search for the record
/// well within this; past it the run counts as billed.
pub const RECORD_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// What a generation may have cost the owner, as its generator tells it:
/// `may_bill` once a request that can start paid work was sent (a Replicate
/// create), `processing` once the model reported drawing. A generator whose
/// provider keeps a record of each run says so before it sends the request
/// ([`ProgressReporter::settled_by_record`]) and publishes that record when the
/// run ends; the refund rules then follow the record, never what the app
/// happened to see.
#[derive(Debug)]
pub struct Meter {
    may_bill: AtomicBool,
    processing: AtomicBool,
    by_record: AtomicBool,
    record: watch::Sender<Option<RunRecord>>,
    /// The provider's id of the run, once its create answered.
    run_id: watch::Sender<Option<String>>,
}

impl Default for Meter {
    fn default() -> Self {
        Self {
            may_bill: AtomicBool::new(false),
            processing: AtomicBool::new(false),
            by_record: AtomicBool::new(false),
            record: watch::channel(None).0,
            run_id: watch::channel(None).0,
        }
    }
}

impl Meter {
    pub fn may_bill(&self) -> bool {
        self.may_bill.load(Ordering::SeqCst)
    }

    pub fn processing(&self) -> bool {
        self.processing.load(Ordering::SeqCst)
    }

    /// The provider's record of the run, once published.
    pub fn record(&self) -> Option<RunRecord> {
        self.record.borrow().clone()
    }

    /// Says the provider created run `id` (its create answered): from here on
    /// the run can be read and stopped by its id, by this process or, after
    /// a crash, by another.
    pub fn created(&self, id: &str) {
        self.run_id.send_if_modified(|known| {
            let first = known.is_none();
            if first {
                *known = Some(id.to_owned());
            }
            first
        });
    }

    /// The provider's id of the run once it was created; `None` when the run
    /// ended (its record published) without one.
    pub async fn created_run(&self) -> Option<String> {
        let mut id = self.run_id.subscribe();
        let mut record = self.record.subscribe();
        tokio::select! {
            known = id.wait_for(Option::is_some) => known.ok().and_then(|id| id.clone()),
            _ = record.wait_for(Option::is_some) => self.run_id.borrow().clone(),
        }
    }

    /// Resolves once the provider's record of the run is published.
    pub async fn ended(&self) {
        let mut record = self.record.subscribe();
        let _ = record.wait_for(Option::is_some).await;
    }

    /// Publishes the provider's record of the run (the first one counts).
    pub fn publish(&self, record: RunRecord) {
        self.record.send_if_modified(|known| {
            let first = known.is_none();
            if first {
                *known = Some(record);
            }
            first
        });
    }

    /// Whether the model processed (was billed): by the provider's record when
    /// the generator promised one, waiting for it up to [`RECORD_WAIT`] (a
    /// record that does not come counts as processed); otherwise by what the
    /// generator reported.
    pub async fn processed(&self) -> bool {
        self.processed_within(RECORD_WAIT).await
    }

    /// [`Meter::processed`], waiting at most `bound` for the record (a
    /// visitor waiting for their Cancel's answer is not kept long; a record
    /// that has not come by then counts as billed).
    pub async fn processed_within(&self, bound: std::time::Duration) -> bool {
        if !self.by_record() {
            return self.processing();
        }
        match self.settled_record_within(bound).await {
            Some(record) => record.processed,
            None => {
                tracing::warn!("no record of the run came from the provider: it counts as billed");
                true
            }
        }
    }

    /// Whether the provider's record settles this run.
    pub fn by_record(&self) -> bool {
        self.by_record.load(Ordering::SeqCst)
    }

    /// The provider's record of the run: waited for (up to [`RECORD_WAIT`])
    /// when the generator promised one; `None` when it did not, or the record
    /// did not come.
    pub async fn settled_record(&self) -> Option<RunRecord> {
        self.settled_record_within(RECORD_WAIT).await
    }

    async fn settled_record_within(&self, bound: std::time::Duration) -> Option<RunRecord> {
        if !self.by_record() {
            return self.record();
        }
        let mut record = self.record.subscribe();
        let found = tokio::time::timeout(bound, record.wait_for(Option::is_some)).await;
        found
            .ok()
            .and_then(|seen| seen.ok().and_then(|record| record.clone()))
    }

    /// A meter with both readings set as given (tests).
    pub fn reading(may_bill: bool, processing: bool) -> Arc<Self> {
        let meter = Self::default();
        meter
            .may_bill
            .store(may_bill || processing, Ordering::SeqCst);
        meter.processing.store(processing, Ordering::SeqCst);
        Arc::new(meter)
    }

    /// A meter settled by a provider's record (tests): `record`, once published.
    pub fn awaiting_record() -> Arc<Self> {
        let meter = Self::default();
        meter.may_bill.store(true, Ordering::SeqCst);
        meter.by_record.store(true, Ordering::SeqCst);
        Arc::new(meter)
    }
}

/// Where a generator tells the generation flow which [`Phase`] it is in, and
/// what it may have cost ([`Meter`]). Reports never block and never fail: the
/// latest phase is what a watcher sees.
pub struct ProgressReporter {
    phases: watch::Sender<Phase>,
    meter: Arc<Meter>,
}

impl ProgressReporter {
    fn new(phases: watch::Sender<Phase>) -> Self {
        Self {
            phases,
            meter: Arc::default(),
        }
    }

    /// A reporter and the receiver that watches it (starting at `Waiting`).
    pub fn channel() -> (Self, watch::Receiver<Phase>) {
        let (sender, receiver) = watch::channel(Phase::Waiting);
        (Self::new(sender), receiver)
    }

    /// A reporter nobody watches.
    pub fn unwatched() -> Self {
        Self::new(watch::channel(Phase::Waiting).0)
    }

    pub fn report(&self, phase: Phase) {
        if matches!(phase, Phase::Generating { .. }) {
            self.meter.may_bill.store(true, Ordering::SeqCst);
            self.meter.processing.store(true, Ordering::SeqCst);
        }
        self.phases.send_if_modified(|current| {
            let changed = *current != phase;
            *current = phase;
            changed
        });
    }

    /// Said just before sending a request that can start paid work: from here
    /// on the owner may be billed, even if the answer never arrives.
    pub fn may_bill(&self) {
        self.meter.may_bill.store(true, Ordering::SeqCst);
    }

    /// Said before sending the request that starts a run whose provider keeps
    /// a record of it: the run will be settled by that record, which the
    /// generator publishes on the meter however the run ends.
    pub fn settled_by_record(&self) {
        self.meter.may_bill.store(true, Ordering::SeqCst);
        self.meter.by_record.store(true, Ordering::SeqCst);
    }

    pub fn meter(&self) -> Arc<Meter> {
        self.meter.clone()
    }
}

#[async_trait]
pub trait ImageGenerator: Send + Sync + 'static {
    /// Says what the generator is, for logs and the page.
    fn describe(&self) -> String;

    /// True when no hosted model is involved (the page says so).
    fn is_offline(&self) -> bool;

    /// Makes the image, telling `progress` which phase it is in (a generator
    /// that cannot tell may report nothing: the page then shows "Waiting…").
    async fn generate_with_progress(
        &self,
        prompt: &Prompt,
        progress: &ProgressReporter,
    ) -> Result<GeneratedImage, ModelError>;

    /// Makes the image in `look`'s shape from its seed. A generator that
    /// cannot choose either makes it as [`Self::generate_with_progress`] does.
    async fn generate_look(
        &self,
        prompt: &Prompt,
        look: Look,
        progress: &ProgressReporter,
    ) -> Result<GeneratedImage, ModelError> {
        let _ = look;
        self.generate_with_progress(prompt, progress).await
    }

    /// The endpoint for the model provider's webhooks, when it calls back.
    fn webhooks(&self) -> Option<ReplicateWebhooks> {
        None
    }

    /// The endpoint for the owner's model servers' webhooks (Cog).
    fn cog_webhooks(&self) -> Option<CogWebhooks> {
        None
    }

    /// How many of the owner's model servers are up, of how many (`None`: the
    /// generator has none of its own).
    async fn model_servers(&self) -> Option<(usize, usize)> {
        None
    }

    /// Each of its own model servers' origin and health (empty: none).
    async fn server_health(&self) -> Vec<(String, String)> {
        Vec::new()
    }

    /// How many model servers of its own it has (`None`: none).
    fn model_servers_count(&self) -> Option<usize> {
        None
    }

    /// Makes the image with nobody watching its progress.
    async fn generate(&self, prompt: &Prompt) -> Result<GeneratedImage, ModelError> {
        self.generate_with_progress(prompt, &ProgressReporter::unwatched())
            .await
    }
}
