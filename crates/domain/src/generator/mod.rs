//! Image generators: something that turns a validated prompt into image bytes.
//! The offline generator is the zero-configuration default; a hosted model
//! (Replicate) plugs in behind the same trait.

pub mod fake;
mod offline;
mod replicate;

pub use offline::OfflineGenerator;
pub use replicate::{ReplicateGenerator, ReplicateSettings};

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

/// Encoded image bytes and their format.
#[derive(Debug, Clone)]
pub struct GeneratedImage {
    pub bytes: Bytes,
    pub format: ImageFormat,
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
    /// The model answered, but its output was missing, expired, too big or not an image.
    #[error("unusable output: {0}")]
    BadOutput(String),
}

/// What a generation may have cost the owner, as its generator tells it:
/// `may_bill` once a request that can start paid work was sent (a Replicate
/// create), `processing` once the model reported drawing (when Replicate bills).
/// The flow's refund rules read it.
#[derive(Debug, Default)]
pub struct Meter {
    may_bill: AtomicBool,
    processing: AtomicBool,
}

impl Meter {
    pub fn may_bill(&self) -> bool {
        self.may_bill.load(Ordering::SeqCst)
    }

    pub fn processing(&self) -> bool {
        self.processing.load(Ordering::SeqCst)
    }

    /// A meter with both readings set as given (tests).
    pub fn reading(may_bill: bool, processing: bool) -> Arc<Self> {
        Arc::new(Self {
            may_bill: AtomicBool::new(may_bill || processing),
            processing: AtomicBool::new(processing),
        })
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

    /// Makes the image with nobody watching its progress.
    async fn generate(&self, prompt: &Prompt) -> Result<GeneratedImage, ModelError> {
        self.generate_with_progress(prompt, &ProgressReporter::unwatched())
            .await
    }
}
